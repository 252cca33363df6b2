/*
 * unit.c: the harness and the table of tests. Usage:
 *
 *   build/test/unit [FILTER]
 *
 * runs every test whose name contains FILTER (all without one) and ends with
 * the line "N passed, N failed, N skipped", which CI parses; the exit status
 * is 1 when a test failed. Each test has a time budget (UNIT_TIMEOUT s): a
 * hang is reported as a failure instead of stalling CI.
 *
 * Tests marked isolated run in a child process, so that a crash (a
 * sanitizer report) fails that test alone and the run goes on.
 */
#include "unit.h"

#include "../../src/common/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#define UNIT_TIMEOUT 90
#define TMP_PREFIX "tokend-unit."

/* ---- checks ---- */

static int cur_failed;            /* checks failed in the current test */
static const char *cur_name = ""; /* the current test */

bool unit_check(bool ok, const char *file, int line, const char *expr)
{
    if (!ok) {
        cur_failed++;
        printf("    %s:%d: CHECK(%s) failed\n", file, line, expr);
    }
    return ok;
}

bool unit_eq_int(long long got, long long want, const char *egot, const char *ewant,
                 const char *file, int line)
{
    if (got == want) return true;
    cur_failed++;
    printf("    %s:%d: %s == %s failed: got %lld, want %lld\n", file, line, egot, ewant, got, want);
    return false;
}

bool unit_eq_str(const char *got, const char *want, const char *egot, const char *ewant,
                 const char *file, int line)
{
    if (got && want && strcmp(got, want) == 0) return true;
    if (!got && !want) return true;
    cur_failed++;
    printf("    %s:%d: %s == %s failed: got %s%s%s, want %s%s%s\n", file, line, egot, ewant,
           got ? "\"" : "", got ? got : "NULL", got ? "\"" : "", want ? "\"" : "",
           want ? want : "NULL", want ? "\"" : "");
    return false;
}

bool unit_ok(tk_rc rc, const struct tk_err *e, const char *expr, const char *file, int line)
{
    if (rc == TK_OK) return true;
    cur_failed++;
    printf("    %s:%d: %s failed: rc %d (%s)", file, line, expr, (int)rc, tk_rc_name(rc));
    if (e) printf(" code=%s msg=%s", e->code, e->msg);
    printf("\n");
    return false;
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    cur_failed++;
    printf("    %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* ---- temporary directories and files ---- */

static const char *tmp_root(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

bool unit_tmpdir(char *out, size_t n)
{
    int w = snprintf(out, n, "%s/" TMP_PREFIX "XXXXXX", tmp_root());
    if (w < 0 || (size_t)w >= n) return false;
    return mkdtemp(out) != NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void unit_rmtree(const char *dir)
{
    if (!dir || !*dir) return;
    /* Only what unit_tmpdir made: a slip here must not remove anything else. */
    const char *base = strrchr(dir, '/');
    if (!base || strncmp(base + 1, TMP_PREFIX, strlen(TMP_PREFIX)) != 0) {
        printf("    unit_rmtree: refusing to remove %s\n", dir);
        return;
    }
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

bool unit_write_file(const char *path, const void *p, size_t n, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return false;
    bool ok = write(fd, p, n) == (ssize_t)n && fchmod(fd, (mode_t)mode) == 0;
    return close(fd) == 0 && ok;
}

/* ---- store fixtures ---- */

const char *unit_pg_url(void)
{
    const char *u = getenv("TOKEND_TEST_PG");
    return u && *u ? u : NULL;
}

bool unit_pg_url_with_db(const char *url, const char *dbname, char *out, size_t n)
{
    /* scheme://authority/path?query: keep scheme, authority and query. */
    const char *auth = strstr(url, "://");
    if (!auth) return false;
    auth += 3;
    const char *slash = strchr(auth, '/');
    const char *query = strchr(auth, '?');
    if (query && slash && slash > query) slash = NULL;
    size_t head = slash ? (size_t)(slash - url) : query ? (size_t)(query - url) : strlen(url);
    int w = snprintf(out, n, "%.*s/%s%s", (int)head, url, dbname, query ? query : "");
    return w > 0 && (size_t)w < n;
}

tk_rc fx_open_store(struct fx *f, int pool, struct tk_err *e)
{
    struct tk_store_opts o = {.pool_size = pool, .busy_timeout_ms = 10000, .migrate = true};
    f->pool = pool;
    return tk_store_open(f->url, &o, &f->st, e);
}

void fx_close_store(struct fx *f)
{
    tk_store_close(f->st);
    f->st = NULL;
}

struct tk_db *fx_db(struct fx *f)
{
    struct tk_err e;
    tk_err_clear(&e);
    struct tk_db *db = f->st ? tk_store_get(f->st, &e) : NULL;
    if (!db) FAILF("tk_store_get: %s %s", e.code, e.msg);
    return db;
}

/* Run a statement on the server's admin database (CREATE/DROP DATABASE). */
tk_rc unit_pg_admin(const char *sql, struct tk_err *e)
{
    struct tk_store_opts o = {.pool_size = 1, .busy_timeout_ms = 5000, .migrate = false};
    struct tk_store *st = NULL;
    tk_rc rc = tk_store_open(unit_pg_url(), &o, &st, e);
    if (rc != TK_OK) return rc;
    struct tk_db *db = tk_store_get(st, e);
    rc = db ? tk_db_exec(db, sql, NULL, 0, NULL, e) : TK_EUNAVAIL;
    tk_store_put(db);
    tk_store_close(st);
    return rc;
}

enum { FX_OK, FX_SKIP, FX_FAIL };

/* Make the fixture's directory and database; the store is opened by
 * fx_start, in the process that runs the test. */
static int fx_setup(struct fx *f, const char *backend)
{
    static int counter;
    struct tk_err e;
    tk_err_clear(&e);
    memset(f, 0, sizeof *f);
    f->backend = backend;
    if (!strcmp(backend, "postgres") && !unit_pg_url()) return FX_SKIP;
    if (!unit_tmpdir(f->dir, sizeof f->dir)) {
        FAILF("mkdtemp: %s", strerror(errno));
        return FX_FAIL;
    }
    if (!strcmp(backend, "sqlite")) {
        snprintf(f->url, sizeof f->url, "sqlite:%s/tokend.db", f->dir);
    } else {
        char sql[128];
        snprintf(f->dbname, sizeof f->dbname, "tk_unit_%d_%d", (int)getpid(), ++counter);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->dbname);
        tk_rc rc = unit_pg_admin(sql, &e);
        if (rc != TK_OK) {
            FAILF("PostgreSQL at TOKEND_TEST_PG: %s: %s", e.code, e.msg);
            f->dbname[0] = '\0';
            return FX_FAIL;
        }
        if (!unit_pg_url_with_db(unit_pg_url(), f->dbname, f->url, sizeof f->url)) {
            FAILF("cannot make a URL from TOKEND_TEST_PG");
            return FX_FAIL;
        }
    }
    return FX_OK;
}

static int fx_start(struct fx *f)
{
    struct tk_err e;
    tk_err_clear(&e);
    return CHECK_OK(fx_open_store(f, 4, &e), &e) ? FX_OK : FX_FAIL;
}

static void fx_teardown(struct fx *f)
{
    fx_close_store(f);
    if (f->dbname[0]) {
        char sql[128];
        struct tk_err e;
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbname);
        if (unit_pg_admin(sql, &e) != TK_OK) printf("    note: cannot drop %s: %s\n", f->dbname, e.msg);
    }
    if (f->dir[0]) unit_rmtree(f->dir);
}

/* ---- the table ---- */

struct unit_test {
    const char *name;
    void (*fn)(void);
    void (*bfn)(struct fx *);
    const char *backend;
    bool isolated; /* run in a child process */
};

#define T(name, fn)                                                                                \
    {                                                                                              \
        name, fn, NULL, NULL, false                                                                \
    }
#define B(name, fn)                                                                                \
    {name "/sqlite", NULL, fn, "sqlite", false},                                                   \
    {                                                                                              \
        name "/postgres", NULL, fn, "postgres", false                                              \
    }
#define BI(name, fn)                                                                               \
    {name "/sqlite", NULL, fn, "sqlite", true},                                                    \
    {                                                                                              \
        name "/postgres", NULL, fn, "postgres", true                                               \
    }

static const struct unit_test tests[] = {
    T("common/time_parse_valid", test_time_parse_valid),
    T("common/time_parse_invalid", test_time_parse_invalid),
    T("common/time_parse_calendar", test_time_parse_calendar),
    T("common/time_fmt_roundtrip", test_time_fmt_roundtrip),
    T("common/uuid7", test_uuid7),
    T("common/parse_int", test_parse_int),
    T("common/buf_max", test_buf_max),
    T("common/json_str", test_json_str),
    T("common/json_str_hostile", test_json_str_hostile),
    T("common/text_check_name", test_text_check_name),
    T("catalog/builtin", test_catalog_builtin),
    T("catalog/urls", test_catalog_urls),
    T("catalog/hostile", test_catalog_hostile),
    T("catalog/dir", test_catalog_dir),
    T("catalog/effective", test_catalog_effective),
    T("connections/request_auth", test_conn_request_auth),
    T("connections/classify", test_conn_classify),
    T("connections/parse_answer", test_conn_parse_answer),
    T("connections/schedule", test_conn_schedule),
    T("oauth_authorize/redirect_match", test_oauth_redirect_match),
    T("oauth_authorize/redirect_explain", test_oauth_redirect_explain),
    T("oauth_authorize/scopes", test_oauth_scopes),
    T("oauth_authorize/pkce", test_oauth_pkce),
    T("oauth_authorize/resource_params", test_oauth_resource_params),
    B("oauth_authorize/flows", test_oauth_flows_store),
    B("oauth_attack/flows_purge", test_oauth_flows_purge),
    T("diagnosis/ok", test_diag_ok),
    T("diagnosis/reconnect", test_diag_reconnect),
    T("diagnosis/key_fault", test_diag_key_fault),
    T("diagnosis/transient", test_diag_transient),
    T("common/pool_alignment", test_pool_alignment),
    T("common/err_and_rc", test_err_and_rc),

    T("issued/new_valid", test_issued_new_valid),
    T("issued/preview", test_issued_preview),
    T("issued/lengths", test_issued_lengths),
    T("issued/substitution", test_issued_substitution),
    T("issued/surroundings", test_issued_surroundings),
    T("issued/prefix_and_chars", test_issued_prefix_and_chars),
    T("issued/no_echo", test_issued_no_echo),

    T("config/defaults", test_config_defaults),
    T("config/set_errors", test_config_set_errors),
    T("config/precedence", test_config_precedence),
    T("config/file_errors", test_config_file_errors),
    T("config/hostile_ini", test_config_hostile_ini),
    T("config/long_line_split", test_config_long_line_split),
    T("config/validate", test_config_validate),
    T("config/dir_as_file", test_config_dir_as_file),
    T("config/help", test_config_help),
    T("routes/declared", test_routes_declared),
    T("routes/walk", test_routes_walk),
    T("routes/dispatch", test_routes_dispatch),
    T("ratelimit/budget", test_ratelimit_budget),
    T("ratelimit/bounded", test_ratelimit_bounded),
    T("outbound/basic", test_outbound_basic),
    T("outbound/html", test_outbound_html),
    T("outbound/timeout", test_outbound_timeout),
    T("outbound/slowloris", test_outbound_slowloris),
    T("outbound/too_large", test_outbound_too_large),
    T("outbound/redirect", test_outbound_redirect),
    T("outbound/connect_failed", test_outbound_connect_failed),
    T("outbound/bad_input", test_outbound_bad_input),
    T("outbound/public_only", test_outbound_public_only),
    T("outbound/cancel", test_outbound_cancel),
    T("outbound/stop", test_outbound_stop),
    T("outbound/concurrency", test_outbound_concurrency),
    T("outbound/queue_timeout", test_outbound_queue_timeout),
    T("outbound/done_submits", test_outbound_done_submits),
    T("outbound/record_masks", test_outbound_record_masks),
    T("outbound/settings", test_outbound_settings),
    T("outbound/tls", test_outbound_tls),
    T("outbound/stress", test_outbound_stress),
    T("outbound/metrics", test_outbound_metrics),
    T("metrics/register_rules", test_metrics_register_rules),
    T("metrics/hostile_names", test_metrics_hostile_names),
    T("metrics/label_bounds", test_metrics_label_bounds),
    T("metrics/strict_aborts", test_metrics_strict_aborts),
    T("metrics/threads", test_metrics_threads),
    T("metrics/histogram_edges", test_metrics_histogram_edges),
    T("metrics/render_format", test_metrics_render_format),
    T("metrics/http_series", test_metrics_http_series),
    T("tls/open", test_tls_open),
    T("tls/mismatch", test_tls_mismatch),
    T("tls/validity", test_tls_validity),
    T("tls/garbage", test_tls_garbage),
    T("tls/reload", test_tls_reload),
    T("tls/priorities", test_tls_priorities),
    T("tls/https", test_tls_https),
    T("tls/public_url", test_tls_public_url),
    T("http_park/resume", test_http_park_resume),
    T("http_park/many_and_stop", test_http_park_many_and_stop),
    T("http_park/race", test_http_park_race),
    T("http_park/cap", test_http_park_cap),
    T("http_park/streams", test_http_streams),
    T("http_park/sse_parse", test_http_sse_parse),
    T("worker/deadline", test_worker_deadline),
    T("worker/wait_kick_stop", test_worker_wait_kick_stop),
    T("worker/stop_stuck", test_worker_stop_stuck),
    T("worker/threads_block_signals", test_worker_threads_block_signals),

    T("router/params", test_router_params),
    T("router/methods", test_router_methods),
    T("router/odd_paths", test_router_odd_paths),
    T("router/bad_patterns", test_router_bad_patterns),
    T("router/trailing_slash", test_router_trailing_slash),
    T("router/tail", test_router_tail),
    T("http/panic_policy", test_http_panic_policy),
    T("http/form", test_http_form),
    T("http/cookie", test_http_cookie),
    T("http/xff", test_http_xff),
    T("http/server_additions", test_http_server_additions),

    T("http/utf8", test_http_utf8),
    T("http/jline", test_http_jline),
    T("http/log_lines", test_http_log_lines),
    T("http/host_parse", test_http_host_parse),
    T("http/host_policy", test_http_host_policy),
    T("http/origin_media", test_http_origin_media),

    B("upstream/apps_store", test_apps_store),
    T("connect/pkce", test_connect_pkce),
    T("connect/urls", test_connect_urls),
    T("connect/exchange", test_connect_exchange),
    B("connect/store", test_connect_store),
    B("store/migrate", test_store_migrate),
    B("store/reopen", test_store_reopen),
    B("store/schema_too_new", test_store_schema_too_new),
    B("store/exec_args", test_store_exec_args),
    B("store/null", test_store_null),
    B("store/arg_count", test_store_arg_count),
    B("store/unique", test_store_unique),
    B("store/tx", test_store_tx),
    B("store/changes", test_store_changes),
    B("store/changes_after_select", test_store_changes_after_select),
    BI("store/wide_row", test_store_wide_row),
    B("store/pool_threads", test_store_pool_threads),
    T("store/bad_url", test_store_bad_url),
    T("store/pg_unreachable", test_store_pg_unreachable),
    B("store/nested_begin", test_store_nested_begin),
    B("store/acquire_timeout", test_store_acquire_timeout),
    B("store/created", test_store_created),
    T("store/corrupt_sqlite", test_store_corrupt_sqlite),
    T("store/busy_kept", test_store_busy_kept),
    T("store/pg_stalled", test_store_pg_stalled),
    B("store/durable_commit", test_store_durable_commit),
    B("store/migration_timeouts", test_store_migration_timeouts),

    B("lease/processes", test_lease_processes),
    B("lease/rules", test_lease_rules),
    B("lease/order", test_lease_order),
    B("lease/by_id", test_lease_by_id),
    B("lease/fence", test_lease_fence),
    B("lease/id_race", test_lease_id_race),
    B("lease/release_many", test_lease_release_many),
    T("engine/schedule", test_engine_schedule),
    B("engine/counts", test_engine_counts),

    B("events/list_paging", test_events_list_paging),
    B("events/filters", test_events_filters),
    B("events/verify_tamper", test_events_verify_tamper),
    B("events/verify_truncated", test_events_verify_truncated),
    B("events/concurrent", test_events_concurrent),
    B("events/emit_in", test_events_emit_in),
    B("events/hostile_utf8", test_events_hostile_utf8),
    B("events/keyed_chain", test_events_keyed_chain),
    B("events/coalesce", test_events_coalesce),
    B("events/prune", test_events_prune),
    B("events/housekeeper", test_events_housekeeper),
    B("events/filter_indexes", test_events_filter_indexes),
    B("events/writer_batches", test_events_writer_batches),
    B("events/writer_emit", test_events_writer_emit),
    B("events/writer_queue_full", test_events_writer_queue_full),
    B("events/writer_queue_bytes", test_events_writer_queue_bytes),
    B("events/writer_timeout", test_events_writer_timeout),
    B("events/writer_stop_drains", test_events_writer_stop_drains),
    B("events/writer_threads", test_events_writer_threads),
    B("events/writer_canonical", test_events_writer_canonical),

    B("keyring/restart_sealed", test_keyring_restart_sealed),
    B("keyring/unseal_subsets", test_keyring_unseal_subsets),
    B("keyring/share_errors", test_keyring_share_errors),
    B("keyring/init_errors", test_keyring_init_errors),
    B("keyring/auto_unseal", test_keyring_auto_unseal),
    B("keyring/hash_import", test_keyring_hash_import),
    B("keyring/hash_random", test_keyring_hash_random),
    T("keyring/known_answer", test_keyring_known_answer),
    B("keyring/sealed_values", test_keyring_sealed_values),
    T("oauth/jwt_algs", test_oauth_jwt_algs),
    T("oauth/jwt_confusion", test_oauth_jwt_confusion),
    T("oauth/jwt_hostile", test_oauth_jwt_hostile),
    T("oauth/jwt_known", test_oauth_jwt_known),
    T("oauth/jwt_node", test_oauth_jwt_node),
    B("oauth/keys_store", test_oauth_keys_store),
    B("oauth/keys_race", test_oauth_keys_race),
    B("oauth/keys_node", test_oauth_keys_node),
    B("keyring/rotate", test_keyring_rotate),
    B("keyring/seal", test_keyring_seal),
    B("keyring/store_scan", test_keyring_store_scan),
    B("keyring/threads", test_keyring_threads),
    B("keyring/reload_store_error", test_keyring_reload_store_error),
    T("keyring/secret_types", test_keyring_secret_types),
    T("keyring/secret_heap", test_keyring_secret_heap),
    T("keyring/rewrap_register", test_rewrap_register),
    B("keyring/rewrap_all", test_rewrap_all),
    B("keyring/rewrap_crash", test_rewrap_crash),
    B("keyring/rewrap_two_processes", test_rewrap_two_processes),
    B("keyring/rewrap_seal_race", test_rewrap_seal_race),
    B("keyring/rewrap_rotate_race", test_rewrap_rotate_race),
    B("keyring/corrupt_rows", test_keyring_corrupt_rows),
    B("keyring/unseal_nonce", test_keyring_unseal_nonce),
    B("keyring/rewrap_behind", test_keyring_rewrap_behind),
    B("keyring/lock_store_stall", test_keyring_lock_store_stall),
    B("keyring/event_or_nothing", test_keyring_event_or_nothing),
    B("keyring/key_file_mode", test_keyring_key_file_mode),
    T("keyring/aead_vectors", test_crypto_aead_vectors),
    T("keyring/aead_tamper", test_crypto_aead_tamper),
    T("keyring/b64url", test_crypto_b64url),
    T("keyring/shamir", test_crypto_shamir),
    T("keyring/share_damage", test_crypto_share_damage),

    B("operators/authenticate", test_optoken_authenticate),
    B("operators/reasons", test_optoken_reasons),
    B("operators/revoke_tenant", test_optoken_revoke_tenant),
    B("operators/parse_and_admins", test_optoken_parse_and_admins),
    B("operators/last_used", test_optoken_last_used),
    T("clients/scan", test_clients_scan),
    T("clients/check", test_clients_check),
    B("clients/reasons", test_clients_reasons),
    T("oauth_grants/pkce", test_oauth_grants_pkce),
    T("oauth_grants/revset", test_oauth_grants_revset),
    T("oauth_grants/params", test_oauth_grants_params),
    B("oauth_grants/codes", test_oauth_grants_codes),
    B("oauth_grants/code_race", test_oauth_grants_code_race),
    B("oauth_grants/refresh", test_oauth_grants_refresh),
    B("oauth_grants/revocations", test_oauth_grants_revocations),
    B("clients/beats", test_clients_beats),
    T("users/pwhash", test_users_pwhash),
    T("users/email", test_users_email),
    T("users/login_form", test_users_login_form),
    T("users/pool", test_users_pool),
    B("users/store", test_users_store),
    T("oauth_clients/scope_names", test_oauth_scope_names),
    T("oauth_clients/redirect_uris", test_oauth_redirect_uris),
    T("oauth_clients/spec", test_oauth_client_spec),
    T("oauth_clients/basic", test_oauth_basic_parse),
    B("oauth_clients/store", test_oauth_clients_store),

    T("authcache/hit_miss", test_authcache_hit_miss),
    T("authcache/eviction_bound", test_authcache_eviction_bound),
    T("authcache/epoch_invalidation", test_authcache_epoch_invalidation),
    T("authcache/trust_window", test_authcache_trust_window),
    T("authcache/concurrent", test_authcache_concurrent),
    B("authcache/store_epochs", test_authcache_store_epochs),

    T("console/chart_bars", test_console_chart_bars),
    T("console/chart_refuses_bad_input", test_console_chart_refuses_bad_input),
    T("console/htmlf", test_console_htmlf),
};

/* ---- running ---- */

static int n_passed, n_failed, n_skipped;

static void on_alarm(int sig)
{
    (void)sig;
    char line[512];
    int n = snprintf(line, sizeof line,
                     "FAIL %s: no result after %d s (deadlock or hang)\n%d passed, %d failed, "
                     "%d skipped\n",
                     cur_name, UNIT_TIMEOUT, n_passed, n_failed + 1, n_skipped);
    if (n > 0) (void)!write(STDOUT_FILENO, line, (size_t)n);
    _exit(1);
}

enum { R_PASS, R_FAIL, R_SKIP };

/* Run t's body with the fixture f (NULL for plain tests) in this process. */
static void run_body(const struct unit_test *t, struct fx *f)
{
    if (t->fn) {
        t->fn();
        return;
    }
    if (fx_start(f) == FX_OK) t->bfn(f);
    fx_close_store(f);
}

#define CHILD_FAILED 77

/* Run t in a child process, so that a crash fails this test alone. */
static void run_child(const struct unit_test *t, struct fx *f)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        FAILF("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        alarm(0);
        run_body(t, f);
        fflush(stdout);
        _exit(cur_failed ? CHILD_FAILED : 0); /* not 1: that is a sanitizer's exit status */
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return;
    if (WIFEXITED(st) && WEXITSTATUS(st) == CHILD_FAILED) {
        cur_failed++;
        return;
    }
    FAILF("the test's process crashed (%s %d); the sanitizer report is on stderr",
          WIFSIGNALED(st) ? "signal" : "exit status",
          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* R_PASS, R_FAIL or R_SKIP. The fixture is made and removed here, in the
 * harness's process, also when an isolated test crashes. */
static int run(const struct unit_test *t)
{
    cur_failed = 0;
    struct fx f;
    memset(&f, 0, sizeof f);
    int s = FX_OK;
    if (t->bfn) s = fx_setup(&f, t->backend);
    if (s == FX_SKIP) return R_SKIP;
    if (s == FX_OK) {
        if (t->isolated)
            run_child(t, &f);
        else
            run_body(t, &f);
    }
    if (t->bfn) fx_teardown(&f);
    return cur_failed || s == FX_FAIL ? R_FAIL : R_PASS;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    tk_log_setup(TK_LOG_WARN, TK_LOG_TEXT);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread (outbound tests) */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    for (size_t i = 0; i < TK_NELEM(tests); i++) {
        const struct unit_test *t = &tests[i];
        if (filter && !strstr(t->name, filter)) continue;
        cur_name = t->name;
        int64_t t0 = tk_mono_us();
        alarm(UNIT_TIMEOUT);
        int r = run(t);
        alarm(0);
        long ms = (long)((tk_mono_us() - t0) / 1000);
        if (r == R_SKIP) {
            n_skipped++;
            printf("skipped %s: TOKEND_TEST_PG is not set\n", t->name);
        } else if (r == R_PASS) {
            n_passed++;
            printf("ok   %s (%ld ms)\n", t->name, ms);
        } else {
            n_failed++;
            printf("FAIL %s (%ld ms)\n", t->name, ms);
        }
    }
    printf("%d passed, %d failed, %d skipped\n", n_passed, n_failed, n_skipped);
    return n_failed ? 1 : 0;
}
