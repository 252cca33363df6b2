/* serve.c: tokend serve, from start to a clean exit. */
#include "api.h"
#include "../console/console.h"

#include "../common/log.h"
#include "../events/events.h"
#include "../upstream/connections.h"
#include "../upstream/connect.h"
#include "../upstream/engine.h"
#include "../upstream/upstream.h"
#include "../tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void node_event(struct tk_app *app, const char *action, const char *msg)
{
    struct tk_err e;
    struct tk_db *db = tk_store_get(app->store, &e);
    if (!db) {
        tk_warn("events: cannot record %s: %s", action, e.msg);
        return;
    }
    json_t *d = json_pack("{s:s, s:s, s:s}", "version", TK_VERSION, "store",
                          tk_store_backend(app->store), "listen", app->cfg->listen);
    struct tk_event ev = {.tenant_id = app->default_tenant, .kind = "node", .source = "node",
                          .action = action, .outcome = "ok", .subject_type = "node",
                          .subject_id = app->node, .message = msg, .detail = d,
                          .latency_us = -1};
    if (tk_event_emit(db, &ev, &e) != TK_OK) tk_warn("events: cannot record %s: %s", action, e.msg);
    json_decref(d);
    tk_store_put(db);
}

/* ---- TLS and the public address ---- */

const char *tk_api_public_url(const struct tk_app *app)
{
    return app->public_url;
}

/* public_url as set (validated and normalized by the config), else
 * scheme://<listen host>:<port bound>; a wildcard listen host (0.0.0.0,
 * ::) says nothing about the name clients use: localhost, with a warning. */
static void derive_public_url(struct tk_app *app)
{
    const struct tk_config *cfg = app->cfg;
    if (cfg->public_url[0]) {
        snprintf(app->public_url, sizeof app->public_url, "%s", cfg->public_url);
        return;
    }
    char host[128];
    const char *colon = strrchr(cfg->listen, ':');
    size_t hl = colon ? (size_t)(colon - cfg->listen) : 0;
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, cfg->listen, hl);
    host[hl] = '\0';
    bool wildcard = !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "[::]") ||
                    !strcmp(host, "::") || !strcmp(host, "*");
    if (wildcard) snprintf(host, sizeof host, "localhost");
    const char *scheme = app->tls ? "https" : "http";
    int port = tk_http_port(app->http);
    char url[sizeof app->public_url], why[160];
    snprintf(url, sizeof url, "%s://%s:%d", scheme, host, port);
    if (tk_config_public_url(url, app->public_url, sizeof app->public_url, why, sizeof why) !=
        TK_OK)
        snprintf(app->public_url, sizeof app->public_url, "%s://localhost:%d", scheme, port);
    if (wildcard)
        tk_warn("public_url is not set and listen %s names no host: using %s in redirects, OAuth "
                "metadata and iss; set public_url to the URL clients use",
                cfg->listen, app->public_url);
}

/* The detail of a tls_reload event: which files and, when one is in use,
 * which certificate (never the key). */
static json_t *tls_detail(struct tk_app *app, const struct tk_err *err)
{
    struct tk_tls_info in;
    tk_tls_info(app->tls, &in);
    char after[40];
    tk_time_fmt(in.not_after_ms, after, sizeof after);
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s}", "cert_file", in.cert_file, "key_file",
                          in.key_file, "subject", in.subject, "fingerprint_sha256", in.fingerprint,
                          "not_after", after);
    if (err) {
        json_object_set_new(d, "error", json_string(err->code));
        json_object_set_new(d, "reason", json_string(err->msg));
    }
    return d;
}

/* SIGHUP: load the certificate and key files again; a pair that does not
 * pass keeps the old one serving. Logged and recorded as node/tls_reload. */
static void tls_reload(struct tk_app *app)
{
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_tls_reload(app->tls, &e);
    struct tk_tls_info in;
    tk_tls_info(app->tls, &in);
    char msg[480];
    if (rc == TK_OK) {
        char after[40];
        tk_time_fmt(in.not_after_ms, after, sizeof after);
        snprintf(msg, sizeof msg, "TLS certificate reloaded: %.160s, valid until %s", in.subject,
                 after);
        tk_info("tls: reloaded %s and %s: %s (sha256 %.16s...), valid until %s", in.cert_file,
                in.key_file, in.subject, in.fingerprint, after);
    } else {
        snprintf(msg, sizeof msg, "TLS reload failed, the previous certificate still serves: %s",
                 e.msg);
        tk_error("tls: reload failed; still serving the previous certificate (sha256 %.16s...): "
                 "%s",
                 in.fingerprint, e.msg);
    }
    struct tk_err ee;
    struct tk_db *db = tk_store_get(app->store, &ee);
    if (!db) {
        tk_warn("events: cannot record tls_reload: %s", ee.msg);
        return;
    }
    json_t *d = tls_detail(app, rc == TK_OK ? NULL : &e);
    struct tk_event ev = {.tenant_id = app->default_tenant, .kind = "node", .source = "signal",
                          .action = "tls_reload", .outcome = rc == TK_OK ? "ok" : "error",
                          .subject_type = "node", .subject_id = app->node, .message = msg,
                          .detail = d, .latency_us = -1};
    if (tk_event_emit(db, &ev, &ee) != TK_OK) tk_warn("events: cannot record tls_reload: %s", ee.msg);
    json_decref(d);
    tk_store_put(db);
}

/* The data dir holds the store, the root token and key files: create it
 * 0700, and refuse one that others could write into or that belongs to
 * another user. */
static tk_rc make_data_dir(const char *dir, struct tk_err *e)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tk_err_field(e, TK_EINVAL, "data_dir_unusable", "data_dir",
                            "cannot create data_dir %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tk_err_field(e, TK_EINVAL, "data_dir_unusable", "data_dir",
                            "data_dir %s is not a directory", dir);
    if (st.st_uid != geteuid())
        return tk_err_field(e, TK_EINVAL, "data_dir_unsafe", "data_dir",
                            "data_dir %s belongs to user id %d, not to the user tokend runs as "
                            "(%d): whoever owns it can replace the store and key files; chown "
                            "it or use another data_dir",
                            dir, (int)st.st_uid, (int)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return tk_err_field(e, TK_EINVAL, "data_dir_unsafe", "data_dir",
                            "data_dir %s is writable by %s (mode %03o): others could replace the "
                            "store and key files; chmod 700 it",
                            dir, (st.st_mode & S_IWOTH) ? "every user" : "its group",
                            (unsigned)(st.st_mode & 0777));
    return TK_OK;
}

/* ---- the installation marker ----
 *
 * The first start writes <data_dir>/installation with the installation's
 * id (the id of the store's default tenant, made once per store). Later
 * starts compare: a data dir that shows an installation whose store is now
 * empty, or another store's, is a lost store, not a new installation (an
 * uninitialized node hands a root token to whoever calls init first). */

#define MARKER "installation"

/* The store URL without a password, for messages. */
static void store_redacted(const char *url, char *out, size_t n)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = scheme ? memchr(scheme + 3, ':', at ? (size_t)(at - scheme - 3) : 0) : NULL;
    if (colon && at)
        snprintf(out, n, "%.*s:***%s", (int)(colon - url), url, at);
    else
        snprintf(out, n, "%s", url);
}

/* Read the marker's id into id ("" when there is no marker). */
static tk_rc read_marker(const char *dir, char id[TK_UUID_LEN + 1], struct tk_err *e)
{
    char path[600], buf[128];
    id[0] = '\0';
    snprintf(path, sizeof path, "%s/" MARKER, dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return TK_OK;
        return tk_err_field(e, TK_EINVAL, "data_dir_unusable", "data_dir", "cannot read %s: %s",
                            path, strerror(errno));
    }
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[got > 0 ? got : 0] = '\0';
    const char *p = strncmp(buf, "tokend installation ", 20) ? NULL : buf + 20;
    if (p && strlen(p) >= TK_UUID_LEN) {
        memcpy(id, p, TK_UUID_LEN);
        id[TK_UUID_LEN] = '\0';
    }
    if (!p || !tk_uuid_valid(id)) {
        id[0] = '\0';
        return tk_err_field(e, TK_EINVAL, "data_dir_unusable", "data_dir",
                            "%s is not an installation marker ('tokend installation <id>'); "
                            "remove it only if this data dir never held an installation",
                            path);
    }
    return TK_OK;
}

static tk_rc write_marker(const char *dir, const char *id, struct tk_err *e)
{
    char path[600], tmp[620], line[80];
    snprintf(path, sizeof path, "%s/" MARKER, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(line, sizeof line, "tokend installation %s\n", id);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        int err = errno;
        unlink(tmp);
        return tk_err_field(e, TK_EINTERNAL, "data_dir_unusable", "data_dir",
                            "cannot write the installation marker %s: %s", path, strerror(err));
    }
    return TK_OK;
}

/* The default tenant's id, or "" when the store has none (empty). */
static tk_rc store_installation(struct tk_db *db, char id[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r = NULL;
    id[0] = '\0';
    tk_rc rc = tk_db_exec(db, "SELECT id FROM tenants WHERE name = 'default'", NULL, 0, &r, e);
    if (rc == TK_OK && tk_rows_count(r) == 1)
        snprintf(id, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 0));
    tk_rows_free(r);
    return rc;
}

static tk_rc refuse_new_store(const struct tk_config *cfg, const char *marker, const char *found,
                              struct tk_err *e)
{
    char store[sizeof cfg->store];
    store_redacted(cfg->store, store, sizeof store);
    char what[160];
    if (found && found[0])
        snprintf(what, sizeof what, "belongs to another installation, %s", found);
    else
        snprintf(what, sizeof what, "is empty (or missing)");
    /* the flag first: paths may fill the rest of the sentence */
    return tk_err_field(e, TK_EINVAL, "installation_mismatch", "store",
                        "refusing to start (override: --allow-new-store): the data dir %s belongs "
                        "to installation %s, but the store %s %s; restore the store, or a new "
                        "installation's init hands its first caller a root token",
                        cfg->data_dir, marker, store, what);
}

/* Before the store opens: a SQLite file that vanished from a data dir
 * with a marker, or was emptied (0 bytes, no WAL beside it), is refused
 * before anything creates a new one. */
static tk_rc check_sqlite_file(const struct tk_config *cfg, const char *marker, struct tk_err *e)
{
    if (!marker[0] || cfg->allow_new_store || strncmp(cfg->store, "sqlite:", 7) != 0)
        return TK_OK;
    struct stat st, wal;
    if (stat(cfg->store + 7, &st) != 0)
        return errno == ENOENT ? refuse_new_store(cfg, marker, NULL, e) : TK_OK;
    char walpath[sizeof cfg->store + 8];
    snprintf(walpath, sizeof walpath, "%s-wal", cfg->store + 7);
    if (S_ISREG(st.st_mode) && st.st_size == 0 && (stat(walpath, &wal) != 0 || wal.st_size == 0))
        return refuse_new_store(cfg, marker, NULL, e);
    return TK_OK;
}

/* Before the migrations: with a marker, look at the store as it is (no
 * migration, no check) and refuse one without tokend's schema (an empty
 * PostgreSQL database, a SQLite file without tables) or another
 * installation's, so that a refused start leaves the store untouched. */
static tk_rc check_store_before_migrating(const struct tk_config *cfg, const char *marker,
                                          struct tk_err *e)
{
    if (!marker[0] || cfg->allow_new_store) return TK_OK;
    struct tk_store_opts so = {.pool_size = 1, .busy_timeout_ms = 5000, .migrate = false,
                               .check = TK_STORE_CHECK_OFF};
    struct tk_store *st = NULL;
    tk_rc rc = tk_store_open(cfg->store, &so, &st, e);
    if (rc != TK_OK) return rc;
    char found[TK_UUID_LEN + 1] = "";
    if (tk_store_schema_version(st) > 0) {
        struct tk_db *db = tk_store_get(st, e);
        rc = db ? store_installation(db, found, e) : TK_EUNAVAIL;
        tk_store_put(db);
    }
    tk_store_close(st);
    if (rc == TK_OK && strcmp(marker, found) != 0) rc = refuse_new_store(cfg, marker, found, e);
    return rc;
}

/* ---- the rewrap worker ----
 *
 * While unsealed and a job is running, step it a batch at a time; between
 * batches, and while there is nothing to do, wait (worker.h: 200 ms when a
 * job runs, 5 s otherwise), so that a kick from POST /v1/sys/rewrap starts
 * work at once and shutdown is prompt. */

#define REWRAP_BATCH 200
#define REWRAP_PAUSE_MS 200
#define REWRAP_IDLE_MS 5000

void tk_api_rewrap_kick(struct tk_app *app)
{
    tk_worker_kick(&app->rewrap);
}

static void rewrap_worker(struct tk_worker *w, void *arg)
{
    struct tk_app *app = arg;
    int64_t wait_ms = 0;
    while (tk_worker_wait(w, wait_ms)) {
        wait_ms = REWRAP_IDLE_MS;
        struct tk_err e;
        struct tk_db *db = tk_store_get(app->store, &e);
        if (!db) continue;
        /* Follow other nodes: init elsewhere, rotations (at most REWRAP_IDLE_MS late). */
        if (tk_keyring_sync(app->keyring, db, &e) != TK_OK)
            tk_debug("keyring: sync failed: %s", e.msg);
        if (tk_keyring_sealed(app->keyring)) { /* background work pauses while sealed */
            tk_store_put(db);
            continue;
        }
        struct tk_rewrap_progress p;
        struct tk_api_keyring_ctx ctx = {.app = app};
        struct tk_keyring_hook hook = tk_api_keyring_hook(&ctx);
        tk_rc rc =
            tk_keyring_rewrap_step(app->keyring, db, app->node, REWRAP_BATCH, &hook, &p, &e);
        if (rc != TK_OK && rc != TK_EUNAVAIL) {
            tk_warn("keyring: rewrap step failed (retrying): %s", e.msg);
        } else if (rc == TK_OK && p.finished) {
            char msg[160];
            snprintf(msg, sizeof msg, "rewrap done: %lld value(s)", (long long)p.done);
            tk_api_keyring_event(app, db, "rewrap_done", "ok", msg);
        }
        tk_store_put(db);
        if (rc == TK_OK && p.running) wait_ms = p.held && p.processed > 0 ? 0 : REWRAP_PAUSE_MS;
        if (rc != TK_OK && rc != TK_EUNAVAIL) wait_ms = REWRAP_PAUSE_MS * 5;
    }
}

static void rewrap_worker_start(struct tk_app *app)
{
    struct tk_err e;
    if (tk_worker_start(&app->rewrap, "rewrap worker", rewrap_worker, app, &e) != TK_OK)
        tk_error("keyring: %s", e.msg);
}

/* ---- the refresh engine (src/upstream/engine.h) ---- */

void tk_api_engine_kick(struct tk_app *app)
{
    tk_engine_kick(app->engine);
}

static tk_rc engine_start(struct tk_app *app, struct tk_err *e)
{
    const struct tk_config *cfg = app->cfg;
    struct tk_refresh_ctx ctx = *app->refresh_ctx; /* the connections' settings */
    ctx.backoff_max_s = cfg->refresh_backoff_max;
    app->refresh_ctx->backoff_max_s = cfg->refresh_backoff_max; /* API-triggered ones too */
    char owner[96];
    snprintf(owner, sizeof owner, "%s/engine", app->node);
    /* a refresh thread per 4 store connections (1..4): the rest serve requests */
    int threads = cfg->store_pool / 4;
    struct tk_engine_opts o = {.owner = owner,
                               .concurrency = cfg->refresh_concurrency,
                               .per_provider = cfg->refresh_per_provider,
                               .threads = threads < 1 ? 1 : threads > 4 ? 4 : threads};
    return tk_engine_start(app->engine, &ctx, &o, e);
}

/* ---- the last-used worker ----
 *
 * Authentication notes token uses in memory (app->uses); this worker
 * writes them as last_used_at every LAST_USED_EVERY_MS (a token at most
 * once per TK_OPTOKEN_LAST_USED_MS), and everything pending once more when
 * it stops. A held write lock delays this thread, never a request. */

#define LAST_USED_EVERY_MS 5000

static void last_used_flush(struct tk_app *app, bool all)
{
    struct tk_err e;
    struct tk_db *db = tk_store_get(app->store, &e);
    if (db && tk_optoken_uses_flush(app->uses, db, tk_now_ms(), all, NULL, &e) == TK_OK &&
        tk_optoken_uses_flush(app->client_uses, db, tk_now_ms(), all, NULL, &e) == TK_OK) {
        tk_store_put(db);
        return;
    }
    tk_store_put(db);
    tk_debug("operators: last_used_at not written yet (next try in %d s): %s",
             LAST_USED_EVERY_MS / 1000, e.msg);
}

static void last_used_worker(struct tk_worker *w, void *arg)
{
    while (tk_worker_wait(w, LAST_USED_EVERY_MS)) last_used_flush(arg, false);
    last_used_flush(arg, true); /* stopping: what is pending */
}

static void last_used_start(struct tk_app *app)
{
    struct tk_err e;
    if (tk_worker_start(&app->last_used, "last-used worker", last_used_worker, app, &e) != TK_OK)
        tk_error("operators: %s; last_used_at will not be updated", e.msg);
}

/* ---- the store probe ----
 *
 * A worker pings the store every PROBE_EVERY_MS; /ready and /metrics
 * answer from its last result, so that no request for them ever waits on
 * the store. A ping that has not returned after PROBE_OVERDUE_MS (a
 * stalled server, a lost network) makes the store "stalled". */

#define PROBE_EVERY_MS 1000
#define PROBE_OVERDUE_MS 3000

/* One ping; its result for /ready and /metrics. */
static void probe_once(struct tk_app *app)
{
    atomic_store(&app->probe_began_ms, tk_mono_ms());
    struct tk_err e;
    tk_err_clear(&e);
    bool ok = tk_store_ping(app->store, &e) == TK_OK;
    pthread_mutex_lock(&app->probe_mu);
    snprintf(app->probe_error, sizeof app->probe_error, "%s", ok ? "" : e.msg);
    atomic_store(&app->probe_busy, !ok && !strcmp(e.code, "store_busy"));
    atomic_store(&app->probe_ok, ok);
    atomic_store(&app->probe_done_ms, tk_mono_ms());
    atomic_store(&app->probe_began_ms, 0);
    pthread_mutex_unlock(&app->probe_mu);
}

static void probe_worker(struct tk_worker *w, void *arg)
{
    while (tk_worker_wait(w, PROBE_EVERY_MS)) probe_once(arg);
}

static void probe_start(struct tk_app *app)
{
    pthread_mutex_init(&app->probe_mu, NULL);
    probe_once(app); /* /ready has a result from the moment the node answers */
    struct tk_err e;
    if (tk_worker_start(&app->probe, "store probe", probe_worker, app, &e) != TK_OK)
        tk_error("store: %s; /ready will say the store is stalled", e.msg);
}

/* Stop the probe; false when it is stuck in a ping (then the store must
 * not be closed under it: it is left to the process's exit). A stalled
 * store fails a statement in about 3 s. */
static bool probe_stop(struct tk_app *app)
{
    if (tk_worker_stop(&app->probe, 5000)) return true;
    tk_warn("store: the probe is stuck in a ping; leaving the store to the process's exit");
    return false;
}

const char *tk_api_store_state(struct tk_app *app, char *msg, size_t n)
{
    if (!atomic_load(&app->started)) {
        snprintf(msg, n, "tokend is starting (opening the store and keyring)");
        return "starting";
    }
    int64_t now = tk_mono_ms(), began = atomic_load(&app->probe_began_ms),
            done = atomic_load(&app->probe_done_ms);
    if (began && now - began > PROBE_OVERDUE_MS) {
        snprintf(msg, n, "the store has not answered a ping for %lld ms",
                 (long long)(now - began));
        return "store_stalled";
    }
    if (now - done > PROBE_EVERY_MS + PROBE_OVERDUE_MS) { /* the probe thread is gone */
        snprintf(msg, n, "the store probe has not reported for %lld ms", (long long)(now - done));
        return "store_stalled";
    }
    if (!atomic_load(&app->probe_ok)) {
        bool busy = atomic_load(&app->probe_busy);
        pthread_mutex_lock(&app->probe_mu);
        snprintf(msg, n, "%s: %s",
                 busy ? "every store connection is in use" : "the store is unreachable",
                 app->probe_error);
        pthread_mutex_unlock(&app->probe_mu);
        return busy ? "store_busy" : "store_unreachable";
    }
    return NULL;
}

/* Stop the event writer (it drains the queue); false when it is stuck in
 * the store, which must then be left to the process's exit. */
static bool events_writer_stop(struct tk_app *app)
{
    if (tk_events_writer_stop((app->cfg->events_timeout + 15) * 1000)) return true;
    tk_warn("events: the event writer is stuck in the store; leaving the store to the process's "
            "exit");
    return false;
}

/* Write the root operator token to <data_dir>/root-token, mode 0600: a
 * file or symlink already there is removed first, and the new file is
 * created exclusively without following links. */
static tk_rc write_root_token(const struct tk_app *app, const char *tok, struct tk_err *e)
{
    char path[600];
    snprintf(path, sizeof path, "%s/root-token", app->cfg->data_dir);
    /* a stop signal during start waits until the file is whole */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    int fd = -1;
    bool ok = unlink(path) == 0 || errno == ENOENT;
    if (ok) fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    size_t len = strlen(tok);
    ok = fd >= 0 && fchmod(fd, 0600) == 0 && write(fd, tok, len) == (ssize_t)len &&
         write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int err = errno;
    if (fd >= 0) close(fd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ok)
        return tk_err_set(e, TK_EINTERNAL, "root_token_unwritable", "cannot write %s: %s", path,
                          strerror(err));
    tk_warn("dev: the root operator token is in %s (mode 0600)", path);
    return TK_OK;
}

/* The keyring at start: auto-unseal from the key file when the keyring has
 * one; with --dev, initialize an empty one (1 share, auto-unseal) and make
 * a root operator token on a store without any. An auto-unseal key file
 * that is there but unusable (damaged, another installation's, readable by
 * others, not ours, a symlink) stops the start with "key_file_*", which
 * tk_serve turns into exit status 2: the operator learns it now, not from a
 * node that runs sealed. A missing key file starts sealed (moving the file
 * away is the way to start sealed and unseal with shares). A keyring row
 * that is not valid ("keyring_corrupt") also starts sealed, and says so. */
static tk_rc start_keyring(struct tk_app *app, struct tk_err *e)
{
    const struct tk_config *cfg = app->cfg;
    struct tk_db *db = tk_store_get(app->store, e);
    if (!db) return TK_EUNAVAIL;
    struct tk_api_keyring_ctx ctx = {.app = app};
    struct tk_keyring_hook hook = tk_api_keyring_hook(&ctx);
    tk_rc rc = tk_keyring_load(app->keyring, db, e);
    if (rc != TK_OK && !strcmp(e->code, "keyring_corrupt")) {
        tk_error("keyring: %s", e->msg);
        tk_store_put(db);
        return TK_OK; /* sealed; seal-status and the 503s say why */
    }
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    if (rc == TK_OK && !st.initialized && cfg->dev) {
        char shares[1][TK_SHARE_MAX];
        rc = tk_keyring_init(app->keyring, db, 1, 1, cfg->unseal_key_file, shares, &hook, e);
        tk_wipe(shares, sizeof shares);
        if (rc == TK_OK)
            tk_warn("DEV MODE: initialized the keyring with no unseal shares; its master key is "
                    "wrapped by %s, and whoever reads that file reads every secret. Use "
                    "'tokend operator init' for anything real.",
                    cfg->unseal_key_file);
    } else if (rc == TK_OK && st.initialized && st.auto_unseal) {
        struct tk_err ue;
        tk_rc urc = tk_keyring_unseal_file(app->keyring, db, cfg->unseal_key_file, &hook, &ue);
        if (urc == TK_OK) {
            tk_info("keyring: unsealed with the auto-unseal key file %s", cfg->unseal_key_file);
        } else if (!strcmp(ue.code, "key_file_missing")) {
            tk_warn("keyring: the auto-unseal key file %s is not there: starting sealed; unseal "
                    "with 'tokend operator unseal' and the shares",
                    cfg->unseal_key_file);
        } else if (!strncmp(ue.code, "key_file", 8) || !strcmp(ue.code, "wrong_key_file")) {
            rc = tk_err_set(e, TK_EINVAL, "key_file_unusable",
                            "%s. To start sealed and unseal with shares instead, move the file "
                            "away (mv %s %s.bad)",
                            ue.msg, cfg->unseal_key_file, cfg->unseal_key_file);
        } else {
            tk_error("keyring: auto-unseal failed, staying sealed: %s", ue.msg);
            if (!ctx.hook_failed) tk_api_keyring_event(app, db, "unseal", "error", ue.msg);
        }
    }
    if (rc == TK_OK && !st.initialized && !cfg->dev)
        tk_warn("keyring: not initialized; run 'tokend operator init' (everything but /health, "
                "/ready, /metrics and /v1/sys answers 503 until then)");
    if (rc == TK_OK && cfg->dev && !tk_keyring_sealed(app->keyring)) {
        int64_t n = 0;
        rc = tk_optoken_count_active(db, &n, e);
        if (rc == TK_OK && n == 0) {
            char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1];
            rc = tk_optoken_create(db, app->keyring, app->default_tenant, "root", "admin", 0, tok,
                                   id, e);
            if (rc == TK_OK) rc = write_root_token(app, tok, e);
            tk_wipe(tok, sizeof tok);
        }
    }
    tk_store_put(db);
    return rc;
}

/* ---- signals ----
 *
 * SIGTERM, SIGINT and SIGHUP are blocked in every thread; the main thread
 * waits for them with sigwait once the node runs. While the store opens
 * and the keyring starts (a connect that hangs, a migration waiting on a
 * lock) the main thread takes SIGTERM and SIGINT with a handler that ends
 * the process at once, as a kill -9 would: nothing is acknowledged yet,
 * and every store write is a transaction. */

static void on_stop_while_starting(int sig)
{
    static const char msg[] = "tokend: stop signal received while starting: exiting\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    (void)sig;
    _exit(1);
}

static void start_signals_interrupt(bool on)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_stop_while_starting : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (on) {
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    } else {
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }
}

static tk_rc gate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    bool closed = !tk_api_started(r) || tk_keyring_sealed(app->keyring);
    /* the console's pages: to the unseal page, not a JSON 503 */
    if (closed && tk_console_gate_refused(r)) return TK_EUNAVAIL;
    if (!tk_api_started(r)) return TK_EUNAVAIL;
    return tk_api_gate(r);
}

/* Open the store and check it against the data dir's installation marker;
 * fills app->default_tenant. */
static tk_rc open_store(struct tk_app *app, struct tk_err *e)
{
    const struct tk_config *cfg = app->cfg;
    char marker[TK_UUID_LEN + 1], found[TK_UUID_LEN + 1] = "";
    tk_rc rc = read_marker(cfg->data_dir, marker, e);
    if (rc == TK_OK) rc = check_sqlite_file(cfg, marker, e);
    if (rc == TK_OK) rc = check_store_before_migrating(cfg, marker, e);
    struct tk_store_opts so = {.pool_size = cfg->store_pool, .busy_timeout_ms = 5000,
                               .migrate = true,
                               .check = !strcmp(cfg->store_check, "full")  ? TK_STORE_CHECK_FULL
                                        : !strcmp(cfg->store_check, "off") ? TK_STORE_CHECK_OFF
                                                                           : TK_STORE_CHECK_QUICK};
    if (rc == TK_OK) rc = tk_store_open(cfg->store, &so, &app->store, e);
    if (rc != TK_OK) return rc;
    struct tk_db *db = tk_store_get(app->store, e);
    if (!db) return TK_EUNAVAIL;
    rc = store_installation(db, found, e);
    if (rc == TK_OK && marker[0] && strcmp(marker, found) != 0) {
        if (!cfg->allow_new_store) {
            rc = refuse_new_store(cfg, marker, found, e);
        } else {
            char store[sizeof cfg->store];
            store_redacted(cfg->store, store, sizeof store);
            tk_warn("allow_new_store: the data dir %s belonged to installation %s; the store %s "
                    "%s%s: going on as told",
                    cfg->data_dir, marker, store, found[0] ? "is installation " : "is empty",
                    found);
        }
    }
    if (rc == TK_OK) rc = tk_tenant_default(db, app->default_tenant, e);
    if (rc == TK_OK && strcmp(marker, app->default_tenant) != 0)
        rc = write_marker(cfg->data_dir, app->default_tenant, e);
    tk_store_put(db);
    return rc;
}

int tk_serve(const struct tk_config *cfg)
{
    struct tk_app app;
    memset(&app, 0, sizeof app);
    app.cfg = cfg;
    app.started_ms = tk_now_ms();
    struct tk_err e;
    tk_err_clear(&e);
    int status = 1;
    bool store_closable = true;

    /* Secrets live in this process's memory: no core dumps, no ptrace by
     * other users' processes. */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals (and SIGHUP) in every thread; the main thread
     * waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    if (cfg->node_name[0]) {
        snprintf(app.node, sizeof app.node, "%s", cfg->node_name);
    } else {
        char host[48] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(app.node, sizeof app.node, "%s:%d", host, (int)getpid());
    }
    tk_events_set_node(app.node);
    app.auth_limit = tk_ratelimit_new(cfg->auth_fail_limit, cfg->auth_fail_window);
    app.unseal_limit = tk_ratelimit_new(TK_API_UNSEAL_FAILS_MAX, TK_API_UNSEAL_WINDOW_S);
    app.uses = tk_optoken_uses_new();
    app.client_uses = tk_optoken_uses_new_for("client_tokens");

    /* The listen socket first: a port in use changes nothing (no data dir,
     * no store file, no keyring, no root token). Until start-up is done,
     * /health answers, /ready and every other route say "starting". */
    struct tk_housekeeper *housekeeper = NULL;
    /* The catalogue first: a bad providers_dir file is a local fix (exit 2),
     * told before anything else happens. */
    tk_rc rc = tk_catalog_load(cfg->providers_dir, &app.catalog, &e);
    if (rc != TK_OK) status = 2;
    if (rc == TK_OK && tk_app_register_sealed() != TK_OK)
        rc = tk_err_set(&e, TK_EINTERNAL, "internal", "cannot register the sealed columns");
    if (rc == TK_OK && tk_conn_register_sealed() != TK_OK) /* after provider_apps */
        rc = tk_err_set(&e, TK_EINTERNAL, "internal", "cannot register the sealed columns");
    /* connect_states.code_verifier: after the connections' columns */
    if (rc == TK_OK && tk_connect_register_sealed() != TK_OK)
        rc = tk_err_set(&e, TK_EINTERNAL, "internal", "cannot register the sealed columns");
    /* oauth_signing_keys.private_key: after connect_states' */
    if (rc == TK_OK && tk_oauth_keys_register_sealed() != TK_OK)
        rc = tk_err_set(&e, TK_EINTERNAL, "internal", "cannot register the sealed columns");
    if (rc == TK_OK) rc = tk_secret_heap_init(1 << 20, &e);
    if (rc == TK_OK) rc = tk_keyring_new(cfg->data_dir, &app.keyring, &e);
    if (rc == TK_OK) tk_events_use_keyring(app.keyring); /* key the event chain */
    /* Every series is registered here, before the HTTP server answers
     * /metrics; the registry is frozen once it does (metrics.h). */
    app.metrics = tk_metrics_new();
    if (rc == TK_OK) rc = tk_api_metrics_register(&app, &e);
    if (rc == TK_OK) rc = tk_engine_new(app.catalog, app.metrics, &app.engine, &e);
    if (rc == TK_OK && cfg->tls_cert_file[0])
        rc = tk_tls_open(cfg->tls_cert_file, cfg->tls_key_file, &app.tls, &e);
    if (rc == TK_OK) {
        size_t nroutes;
        const struct tk_route *routes = tk_api_routes(&nroutes);
        struct tk_http_opts ho = {
            .listen = cfg->listen,
            .threads = cfg->threads,
            .handler_threads = cfg->handler_threads,
            .max_body = (size_t)cfg->max_body,
            .max_header = (size_t)cfg->max_header,
            .max_connections = cfg->max_connections,
            .max_connections_per_ip = cfg->max_connections_per_ip,
            .idle_timeout = cfg->idle_timeout,
            .header_timeout = cfg->header_timeout,
            .min_body_rate = cfg->min_body_rate,
            .allowed_hosts = cfg->allowed_hosts,
            .trusted_proxies = cfg->trusted_proxies,
            .access_log = cfg->access_log,
            .access_log_refusals_per_s = cfg->access_log_refusals_per_s,
            .routes = routes,
            .nroutes = nroutes,
            .app = &app,
            .gate = gate,
            .authenticate = tk_api_authenticate,
            .finish = tk_api_finish,
            .metrics = app.metrics,
            .tls = app.tls,
            .stream_buffer = (size_t)cfg->stream_buffer,
            .max_streams = cfg->max_streams,
            .max_parked = cfg->max_parked,
        };
        rc = tk_http_start(&ho, &app.http, &e);
        tk_metrics_freeze(app.metrics);
    }
    if (rc == TK_OK) {
        tk_info("listen socket bound on port %d; opening the store", tk_http_port(app.http));
        derive_public_url(&app);
        rc = make_data_dir(cfg->data_dir, &e);
        if (rc != TK_OK) status = 2;
    }
    if (rc == TK_OK) {
        /* a store that hangs (connect, migration lock, keyring rows) must
         * not keep a stop signal waiting */
        start_signals_interrupt(true);
        rc = open_store(&app, &e);
        if (rc != TK_OK && (!strcmp(e.code, "installation_mismatch") ||
                            !strcmp(e.code, "data_dir_unusable")))
            status = 2; /* a local fix */
        if (rc == TK_OK) { /* the event writer: group commits (events.h) */
            struct tk_events_writer_opts wo = {.queue = cfg->events_queue,
                                               .timeout_ms = cfg->events_timeout * 1000};
            rc = tk_events_writer_start(app.store, &wo, &e);
        }
        if (rc == TK_OK) rc = start_keyring(&app, &e);
        start_signals_interrupt(false);
    }
    if (rc == TK_OK) {
        struct tk_housekeeper_opts hk = {.retention_days = cfg->events_retention_days};
        rc = tk_housekeeper_start(app.store, &hk, &housekeeper, &e);
    }
    if (rc == TK_OK) {
        struct tk_out_opts oo = {.connect_timeout_ms = cfg->outbound_connect_timeout * 1000,
                                 .timeout_ms = cfg->outbound_timeout * 1000,
                                 .max_response = (size_t)cfg->outbound_max_response,
                                 .max_concurrent = cfg->outbound_max_concurrent,
                                 .ca_file = cfg->outbound_ca_file,
                                 .proxy = cfg->outbound_proxy};
        rc = tk_out_start(&oo, &app.outbound, &e);
        if (rc != TK_OK) status = 2; /* a setting to fix */
    }
    if (rc == TK_OK) rc = tk_api_conn_start(&app, &e);
    if (rc == TK_OK) rc = engine_start(&app, &e);
    if (rc == TK_OK) rc = tk_api_oauth_start(&app, &e);
    if (rc == TK_OK) {
        probe_start(&app);
        rewrap_worker_start(&app);
        last_used_start(&app);
        tk_api_agents_start(&app);
        if (tk_evpump_start(&app, &app.evpump, &e) != TK_OK) rc = TK_EINTERNAL;
        tk_api_authcache_start(&app); /* before any authentication */
        atomic_store(&app.started, true);
    }
    if (rc != TK_OK) {
        if (!strncmp(e.code, "tls_", 4)) { /* the code names which file is wrong */
            tk_error("cannot start: %s: %s", e.code, e.msg);
            status = 2; /* a local fix */
        } else {
            tk_error("cannot start: %s", e.msg);
        }
        if (!strcmp(e.code, "key_file_unusable")) status = 2; /* unseal.key: a local fix */
        goto out;
    }
    node_event(&app, "start", "tokend started");
    tk_info("tokend %s listening on port %d (listen=%s, %s, public_url %s), store %s schema %d, "
            "node %s%s",
            TK_VERSION, tk_http_port(app.http), cfg->listen, app.tls ? "HTTPS" : "plain HTTP",
            app.public_url, tk_store_backend(app.store), tk_store_schema_version(app.store),
            app.node, cfg->dev ? ", DEV MODE" : "");
    /* A line the tests and scripts can wait for: the port actually bound,
     * once the node answers. */
    fprintf(stdout, "tokend: listening on port %d\n", tk_http_port(app.http));
    fflush(stdout);

    int sig = 0;
    for (;;) {
        if (sigwait(&stop, &sig) != 0) continue;
        if (sig != SIGHUP) break;
        if (app.tls) {
            tls_reload(&app);
            continue;
        }
        tk_info("received SIGHUP: ignored (tokend writes its logs to stderr and has nothing to "
                "reopen; settings change with a restart)");
    }
    tk_info("received %s: stopping (in-flight requests get %d s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            cfg->shutdown_timeout);
    atomic_store(&app.stopping, true);
    tk_http_quiesce(app.http);
    bool drained = tk_http_drain(app.http, cfg->shutdown_timeout * 1000);
    if (!drained) tk_warn("requests still in flight after %d s; closing them", cfg->shutdown_timeout);
    /* the engine's refreshes in flight commit their answers (or their leases run out) */
    tk_engine_stop(app.engine, cfg->shutdown_timeout * 1000);
    tk_out_stop(app.outbound); /* what is still out ends "stopping" while HTTP can answer */
    tk_api_conn_stop(&app);    /* its callers are answered while HTTP can answer */
    tk_http_stop(app.http);
    app.http = NULL;
    tk_evpump_stop(app.evpump); /* the HTTP server has ended its streams */
    app.evpump = NULL;
    tk_worker_stop(&app.rewrap, 0); /* before the store closes; a batch in hand commits first */
    tk_worker_stop(&app.last_used, 0); /* after the HTTP server (no more uses); writes the rest */
    tk_api_agents_stop(&app);
    tk_api_oauth_stop(&app);
    store_closable = probe_stop(&app);
    if (!tk_api_authcache_stop(&app)) store_closable = false;
    if (store_closable) { /* else the store hangs: nothing more can be written */
        tk_housekeeper_stop(housekeeper); /* writes what it counted */
        housekeeper = NULL;
        node_event(&app, "stop", drained ? "tokend stopped" : "tokend stopped; some requests were cut off");
        /* after everything that records events, before the store closes */
        store_closable = events_writer_stop(&app);
    }
    tk_info("stopped");
    status = 0;
out:
    tk_engine_stop(app.engine, 0);
    tk_out_stop(app.outbound);
    tk_api_conn_stop(&app);
    tk_http_stop(app.http);
    tk_evpump_stop(app.evpump);
    tk_worker_stop(&app.rewrap, 0);
    tk_worker_stop(&app.last_used, 0);
    tk_api_agents_stop(&app);
    tk_api_oauth_stop(&app);
    tk_out_free(app.outbound); /* after everything that may submit */
    app.outbound = NULL;
    if (!probe_stop(&app)) store_closable = false;
    if (!tk_api_authcache_stop(&app)) store_closable = false;
    if (store_closable) {
        tk_housekeeper_stop(housekeeper);
        if (events_writer_stop(&app)) tk_store_close(app.store);
        tk_authcache_free(app.authcache); /* the poller is gone */
    }
    tk_events_use_keyring(NULL);
    tk_keyring_free(app.keyring);
    tk_ratelimit_free(app.auth_limit);
    tk_ratelimit_free(app.unseal_limit);
    tk_optoken_uses_free(app.uses);
    tk_optoken_uses_free(app.client_uses);
    tk_metrics_free(app.metrics); /* after the HTTP server: nothing renders any more */
    tk_engine_free(app.engine);   /* after the registry (its gauges) and tk_out_stop */
    tk_catalog_free(app.catalog);
    tk_tls_free(app.tls); /* after the HTTP server: handshakes use it */
    return status;
}
