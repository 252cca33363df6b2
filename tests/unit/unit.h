/*
 * unit.h: the unit test harness (in the spirit of curl's unitcheck and
 * Redis' test helpers) and what the test files share.
 *
 * A test is a function in the table of unit.c. CHECK* macros record the
 * file, line and failing expression and let the test go on; a test with a
 * failed check counts as failed. They return whether the check held, so a
 * test can stop early: `if (!CHECK(db)) return;`.
 *
 * Store tests are written once against a struct fx (a fresh database on one
 * backend) and listed once per backend. PostgreSQL cases need
 * TOKEND_TEST_PG (see tests/with-postgres.sh); without it they are skipped.
 */
#ifndef TK_UNIT_H
#define TK_UNIT_H

#include "../../src/common/tk.h"
#include "../../src/store/store.h"

#include <stdbool.h>
#include <stddef.h>

bool unit_check(bool ok, const char *file, int line, const char *expr);
bool unit_eq_int(long long got, long long want, const char *egot, const char *ewant,
                 const char *file, int line);
bool unit_eq_str(const char *got, const char *want, const char *egot, const char *ewant,
                 const char *file, int line);
/* Record a failure with a printf message (for loops that count mistakes). */
void unit_fail(const char *file, int line, const char *fmt, ...) TK_PRINTF(3, 4);

#define CHECK(cond) unit_check((cond) ? true : false, __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(got, want)                                                                    \
    unit_eq_int((long long)(got), (long long)(want), #got, #want, __FILE__, __LINE__)
#define CHECK_EQ_STR(got, want) unit_eq_str((got), (want), #got, #want, __FILE__, __LINE__)
#define FAILF(...) unit_fail(__FILE__, __LINE__, __VA_ARGS__)
/* rc must be TK_OK; on failure the error's code and message are shown. */
#define CHECK_OK(rc, e) unit_ok((rc), (e), #rc, __FILE__, __LINE__)
bool unit_ok(tk_rc rc, const struct tk_err *e, const char *expr, const char *file, int line);

/* ---- temporary directories ---- */

/* mkdtemp under $TMPDIR or /tmp into out (>= 256 bytes); false on failure. */
bool unit_tmpdir(char *out, size_t n);
/* rm -rf, refusing anything outside the temp directories made above. */
void unit_rmtree(const char *dir);
/* Write n bytes to path with mode; false on failure. */
bool unit_write_file(const char *path, const void *p, size_t n, int mode);

/* ---- store fixtures ---- */

struct fx {
    const char *backend; /* "sqlite" or "postgres" */
    char dir[256];       /* temp dir (both backends: files, keys) */
    char url[1024];      /* store URL of this test's own database */
    char dbname[64];     /* PostgreSQL: the database made for this test */
    struct tk_store *st; /* open, migrated; NULL after fx_close_store */
    int pool;
};

/* The PostgreSQL URL from TOKEND_TEST_PG, or NULL. */
const char *unit_pg_url(void);
/* Open a store on the fixture's URL with migrations, pool connections. */
tk_rc fx_open_store(struct fx *f, int pool, struct tk_err *e);
void fx_close_store(struct fx *f);
/* Open a connection or record a failure; NULL on failure. */
/* Run one statement on the PostgreSQL server's admin database. */
tk_rc unit_pg_admin(const char *sql, struct tk_err *e);
struct tk_db *fx_db(struct fx *f);

/* Replace the database of a libpq URL: out = url with path "/dbname". */
bool unit_pg_url_with_db(const char *url, const char *dbname, char *out, size_t n);

/* ---- tests ---- */

/* test_common.c */
void test_time_parse_valid(void);
void test_time_parse_invalid(void);
void test_time_parse_calendar(void);
void test_time_fmt_roundtrip(void);
void test_uuid7(void);
void test_parse_int(void);
void test_buf_max(void);
void test_json_str(void);
void test_json_str_hostile(void);
void test_pool_alignment(void);
void test_err_and_rc(void);

/* test_catalog.c */
void test_catalog_builtin(void);
void test_catalog_urls(void);
void test_catalog_hostile(void);
void test_catalog_dir(void);
void test_catalog_effective(void);
/* test_connections.c */
void test_conn_request_auth(void);
void test_conn_classify(void);
void test_conn_parse_answer(void);
void test_conn_schedule(void);
void test_apps_store(struct fx *f);

/* test_oauth_authorize.c */
void test_oauth_redirect_match(void);
void test_oauth_redirect_explain(void);
void test_oauth_scopes(void);
void test_oauth_pkce(void);
void test_oauth_resource_params(void);
void test_oauth_flows_store(struct fx *f); /* both backends */
/* test_oauth_attack.c */
void test_oauth_flows_purge(struct fx *f); /* both backends */
/* test_diagnosis.c */
void test_diag_ok(void);
void test_diag_reconnect(void);
void test_diag_key_fault(void);
void test_diag_transient(void);

/* test_connect.c */
void test_connect_pkce(void);
void test_connect_urls(void);
void test_connect_exchange(void);
void test_connect_store(struct fx *f);

/* test_text.c */
void test_text_check_name(void);

/* test_issued.c */
void test_issued_new_valid(void);
void test_issued_preview(void);
void test_issued_lengths(void);
void test_issued_substitution(void);
void test_issued_surroundings(void);
void test_issued_prefix_and_chars(void);
void test_issued_no_echo(void);

/* test_config.c */
void test_config_defaults(void);
void test_config_set_errors(void);
void test_config_precedence(void);
void test_config_file_errors(void);
void test_config_hostile_ini(void);
void test_config_long_line_split(void);
void test_config_validate(void);
void test_config_dir_as_file(void);
void test_config_help(void);

/* test_router.c */
void test_router_params(void);
void test_router_methods(void);
void test_router_odd_paths(void);
void test_router_bad_patterns(void);
void test_router_trailing_slash(void);
void test_router_tail(void);

/* test_http_parse.c */
void test_http_panic_policy(void);
void test_http_form(void);
void test_http_cookie(void);
void test_http_xff(void);

/* test_http_server.c */
void test_http_server_additions(void);

/* test_http.c */
void test_http_utf8(void);
void test_http_jline(void);
void test_http_log_lines(void);
void test_http_host_parse(void);
void test_http_host_policy(void);
void test_http_origin_media(void);

/* test_store.c (each runs on both backends) */
void test_store_migrate(struct fx *f);
void test_store_reopen(struct fx *f);
void test_store_schema_too_new(struct fx *f);
void test_store_exec_args(struct fx *f);
void test_store_null(struct fx *f);
void test_store_arg_count(struct fx *f);
void test_store_unique(struct fx *f);
void test_store_tx(struct fx *f);
void test_store_changes(struct fx *f);
void test_store_changes_after_select(struct fx *f);
void test_store_wide_row(struct fx *f);
void test_store_pool_threads(struct fx *f);
void test_store_pg_unreachable(void);
void test_store_nested_begin(struct fx *f);
void test_store_acquire_timeout(struct fx *f);
void test_store_created(struct fx *f);
void test_store_corrupt_sqlite(void);
void test_store_busy_kept(void);
void test_store_pg_stalled(void);
void test_store_durable_commit(struct fx *f);
void test_store_migration_timeouts(struct fx *f);
void test_store_bad_url(void);

/* test_lease.c (both backends) */
void test_lease_processes(struct fx *f);
void test_lease_rules(struct fx *f);
void test_lease_order(struct fx *f);
void test_lease_by_id(struct fx *f);
void test_lease_fence(struct fx *f);
void test_lease_id_race(struct fx *f);
void test_lease_release_many(struct fx *f);

/* test_engine.c */
void test_engine_schedule(void);
void test_engine_counts(struct fx *f);

/* test_events.c (both backends) */
void test_events_list_paging(struct fx *f);
void test_events_filters(struct fx *f);
void test_events_verify_tamper(struct fx *f);
void test_events_verify_truncated(struct fx *f);
void test_events_concurrent(struct fx *f);
void test_events_emit_in(struct fx *f);

/* test_events_chain.c (both backends) */
void test_events_hostile_utf8(struct fx *f);
void test_events_keyed_chain(struct fx *f);
void test_events_coalesce(struct fx *f);
void test_events_prune(struct fx *f);
void test_events_housekeeper(struct fx *f);
void test_events_filter_indexes(struct fx *f);

/* test_events_writer.c (both backends) */
void test_events_writer_batches(struct fx *f);
void test_events_writer_emit(struct fx *f);
void test_events_writer_queue_full(struct fx *f);
void test_events_writer_queue_bytes(struct fx *f);
void test_events_writer_timeout(struct fx *f);
void test_events_writer_stop_drains(struct fx *f);
void test_events_writer_threads(struct fx *f);
void test_events_writer_canonical(struct fx *f);

/* test_keyring.c (most run on both backends) */
void test_keyring_restart_sealed(struct fx *f);
void test_keyring_unseal_subsets(struct fx *f);
void test_keyring_share_errors(struct fx *f);
void test_keyring_init_errors(struct fx *f);
void test_keyring_auto_unseal(struct fx *f);
void test_keyring_hash_import(struct fx *f);
void test_keyring_hash_random(struct fx *f);
void test_keyring_known_answer(void);
void test_keyring_sealed_values(struct fx *f);
/* test_oauth_keys.c */
void test_oauth_jwt_algs(void);
void test_oauth_jwt_confusion(void);
void test_oauth_jwt_hostile(void);
void test_oauth_jwt_known(void);
void test_oauth_jwt_node(void);
void test_oauth_keys_store(struct fx *f);
void test_oauth_keys_race(struct fx *f);
void test_oauth_keys_node(struct fx *f);
void test_keyring_rotate(struct fx *f);
void test_keyring_seal(struct fx *f);
void test_keyring_store_scan(struct fx *f);
void test_keyring_threads(struct fx *f);
void test_keyring_reload_store_error(struct fx *f);
void test_keyring_secret_types(void);
void test_keyring_secret_heap(void);

/* test_rewrap.c (both backends) */
void test_rewrap_register(void);
void test_rewrap_all(struct fx *f);
void test_rewrap_crash(struct fx *f);
void test_rewrap_two_processes(struct fx *f);
void test_rewrap_seal_race(struct fx *f);
void test_rewrap_rotate_race(struct fx *f);
/* test_keyring_hardening.c */
void test_keyring_corrupt_rows(struct fx *f);
void test_keyring_unseal_nonce(struct fx *f);
void test_keyring_rewrap_behind(struct fx *f);
void test_keyring_lock_store_stall(struct fx *f);
void test_keyring_event_or_nothing(struct fx *f);
void test_keyring_key_file_mode(struct fx *f);

/* test_crypto.c */
void test_crypto_aead_vectors(void);
void test_crypto_aead_tamper(void);
void test_crypto_b64url(void);
void test_crypto_shamir(void);
void test_crypto_share_damage(void);

/* test_operators.c (both backends) */
void test_optoken_authenticate(struct fx *f);
void test_optoken_reasons(struct fx *f);
void test_optoken_revoke_tenant(struct fx *f);
void test_optoken_parse_and_admins(struct fx *f);
void test_optoken_last_used(struct fx *f);
/* test_clients.c */
void test_clients_scan(void);
void test_clients_check(void);
void test_clients_reasons(struct fx *f); /* both backends */
void test_clients_beats(struct fx *f);   /* both backends */
/* test_users.c */
void test_users_pwhash(void);
void test_users_email(void);
void test_users_login_form(void);
void test_users_pool(void);
void test_users_store(struct fx *f); /* both backends */
/* test_oauth_clients.c */
void test_oauth_scope_names(void);
void test_oauth_redirect_uris(void);
void test_oauth_client_spec(void);
void test_oauth_basic_parse(void);
void test_oauth_clients_store(struct fx *f); /* both backends */
/* test_routes.c */
void test_routes_declared(void);
void test_routes_walk(void);
void test_routes_dispatch(void);
/* test_ratelimit.c */
void test_ratelimit_budget(void);
void test_ratelimit_bounded(void);
/* test_outbound.c */
void test_outbound_basic(void);
void test_outbound_html(void);
void test_outbound_timeout(void);
void test_outbound_slowloris(void);
void test_outbound_too_large(void);
void test_outbound_redirect(void);
void test_outbound_connect_failed(void);
void test_outbound_bad_input(void);
void test_outbound_public_only(void);
void test_outbound_cancel(void);
void test_outbound_stop(void);
void test_outbound_concurrency(void);
void test_outbound_queue_timeout(void);
void test_outbound_done_submits(void);
void test_outbound_record_masks(void);
void test_outbound_settings(void);
void test_outbound_tls(void);
void test_outbound_stress(void);
void test_outbound_metrics(void);
/* test_authcache.c */
void test_authcache_hit_miss(void);
void test_authcache_eviction_bound(void);
void test_authcache_epoch_invalidation(void);
void test_authcache_trust_window(void);
void test_authcache_concurrent(void);
void test_authcache_store_epochs(struct fx *f);

/* test_metrics.c */
void test_metrics_register_rules(void);
void test_metrics_hostile_names(void);
void test_metrics_label_bounds(void);
void test_metrics_strict_aborts(void);
void test_metrics_threads(void);
void test_metrics_histogram_edges(void);
void test_metrics_render_format(void);
void test_metrics_http_series(void);
/* test_tls.c */
void test_tls_open(void);
void test_tls_mismatch(void);
void test_tls_validity(void);
void test_tls_garbage(void);
void test_tls_reload(void);
void test_tls_priorities(void);
void test_tls_https(void);
void test_tls_public_url(void);
/* test_http_park.c */
void test_http_park_resume(void);
void test_http_park_many_and_stop(void);
void test_http_park_race(void);
void test_http_park_cap(void);
void test_http_streams(void);
void test_http_sse_parse(void);
/* test_worker.c */
void test_worker_deadline(void);
void test_worker_wait_kick_stop(void);
void test_worker_stop_stuck(void);
void test_worker_threads_block_signals(void);

/* test_oauth_grants.c */
void test_oauth_grants_pkce(void);
void test_oauth_grants_revset(void);
void test_oauth_grants_params(void);
void test_oauth_grants_codes(struct fx *f);
void test_oauth_grants_code_race(struct fx *f);
void test_oauth_grants_refresh(struct fx *f);
void test_oauth_grants_revocations(struct fx *f);

/* test_console_chart.c */
void test_console_chart_bars(void);
void test_console_chart_refuses_bad_input(void);
void test_console_htmlf(void);

#endif
