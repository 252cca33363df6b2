/* serve.c: tokend serve, from start to a clean exit. */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"

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

static tk_rc make_data_dir(const char *dir, struct tk_err *e)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tk_err_field(e, TK_EINTERNAL, "data_dir_unusable", "data_dir",
                            "cannot create data_dir %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tk_err_field(e, TK_EINTERNAL, "data_dir_unusable", "data_dir",
                            "data_dir %s is not a directory", dir);
    return TK_OK;
}

/* ---- the rewrap worker ----
 *
 * While unsealed and a job is running, step it a batch at a time; between
 * batches, and while there is nothing to do, wait on a condition variable
 * (200 ms when a job runs, 5 s otherwise), so that a kick from POST
 * /v1/sys/rewrap starts work at once and shutdown is prompt. */

#define REWRAP_BATCH 200
#define REWRAP_PAUSE_MS 200
#define REWRAP_IDLE_MS 5000

void tk_api_rewrap_kick(struct tk_app *app)
{
    pthread_mutex_lock(&app->rewrap_mu);
    app->rewrap_kick = true;
    pthread_cond_signal(&app->rewrap_cv);
    pthread_mutex_unlock(&app->rewrap_mu);
}

/* Wait up to ms or until kicked or stopped; true while not stopping. */
static bool rewrap_wait(struct tk_app *app, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&app->rewrap_mu);
    while (!app->rewrap_stop && !app->rewrap_kick)
        if (pthread_cond_timedwait(&app->rewrap_cv, &app->rewrap_mu, &until) != 0) break;
    app->rewrap_kick = false;
    bool go = !app->rewrap_stop;
    pthread_mutex_unlock(&app->rewrap_mu);
    return go;
}

static void *rewrap_worker(void *arg)
{
    struct tk_app *app = arg;
    int64_t wait_ms = 0;
    while (rewrap_wait(app, wait_ms)) {
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
        tk_rc rc = tk_keyring_rewrap_step(app->keyring, db, app->node, REWRAP_BATCH, &p, &e);
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
    return NULL;
}

static void rewrap_worker_start(struct tk_app *app)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&app->rewrap_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&app->rewrap_mu, NULL);
    if (pthread_create(&app->rewrap_thread, NULL, rewrap_worker, app) == 0)
        app->rewrap_started = true;
    else
        tk_error("keyring: cannot start the rewrap worker thread");
}

static void rewrap_worker_stop(struct tk_app *app)
{
    if (!app->rewrap_started) return;
    pthread_mutex_lock(&app->rewrap_mu);
    app->rewrap_stop = true;
    pthread_cond_signal(&app->rewrap_cv);
    pthread_mutex_unlock(&app->rewrap_mu);
    pthread_join(app->rewrap_thread, NULL);
    app->rewrap_started = false;
    pthread_cond_destroy(&app->rewrap_cv);
    pthread_mutex_destroy(&app->rewrap_mu);
}

/* Write the root operator token, once, to <data_dir>/root-token (0600). */
static tk_rc write_root_token(const struct tk_app *app, const char *tok, struct tk_err *e)
{
    char path[600];
    snprintf(path, sizeof path, "%s/root-token", app->cfg->data_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(tok);
    bool ok = fd >= 0 && write(fd, tok, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    if (fd >= 0) close(fd);
    if (!ok)
        return tk_err_set(e, TK_EINTERNAL, "root_token_unwritable", "cannot write %s: %s", path,
                          strerror(errno));
    tk_warn("dev: the root operator token is in %s (mode 0600)", path);
    return TK_OK;
}

/* The keyring at start: auto-unseal from the key file when the keyring has
 * one; with --dev, initialize an empty one (1 share, auto-unseal) and make
 * a root operator token on a store without any. */
static tk_rc start_keyring(struct tk_app *app, struct tk_err *e)
{
    const struct tk_config *cfg = app->cfg;
    struct tk_db *db = tk_store_get(app->store, e);
    if (!db) return TK_EUNAVAIL;
    tk_rc rc = tk_keyring_load(app->keyring, db, e);
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    if (rc == TK_OK && !st.initialized && cfg->dev) {
        char shares[1][TK_SHARE_MAX];
        rc = tk_keyring_init(app->keyring, db, 1, 1, cfg->unseal_key_file, shares, e);
        tk_wipe(shares, sizeof shares);
        if (rc == TK_OK) {
            tk_warn("DEV MODE: initialized the keyring with no unseal shares; its master key is "
                    "wrapped by %s, and whoever reads that file reads every secret. Use "
                    "'tokend operator init' for anything real.",
                    cfg->unseal_key_file);
            tk_api_keyring_event(app, db, "init", "ok", "keyring initialized (dev mode)");
        }
    } else if (rc == TK_OK && st.initialized && st.auto_unseal) {
        struct tk_err ue;
        if (tk_keyring_unseal_file(app->keyring, db, cfg->unseal_key_file, &ue) == TK_OK) {
            tk_info("keyring: unsealed with the auto-unseal key file %s", cfg->unseal_key_file);
            tk_api_keyring_event(app, db, "unseal", "ok", "unsealed with the auto-unseal key file");
        } else {
            tk_error("keyring: auto-unseal failed, staying sealed: %s", ue.msg);
            tk_api_keyring_event(app, db, "unseal", "error", ue.msg);
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

int tk_serve(const struct tk_config *cfg)
{
    struct tk_app app;
    memset(&app, 0, sizeof app);
    app.cfg = cfg;
    app.started_ms = tk_now_ms();
    struct tk_err e;
    tk_err_clear(&e);
    int status = 1;

    /* Secrets live in this process's memory: no core dumps, no ptrace by
     * other users' processes. */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals in every thread; the main thread waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    if (cfg->node_name[0]) {
        snprintf(app.node, sizeof app.node, "%s", cfg->node_name);
    } else {
        char host[48] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(app.node, sizeof app.node, "%s:%d", host, (int)getpid());
    }
    tk_events_set_node(app.node);

    struct tk_store_opts so = {.pool_size = cfg->store_pool, .busy_timeout_ms = 5000, .migrate = true};
    tk_rc rc = tk_secret_heap_init(1 << 20, &e);
    if (rc == TK_OK) rc = make_data_dir(cfg->data_dir, &e);
    if (rc == TK_OK) rc = tk_keyring_new(cfg->data_dir, &app.keyring, &e);
    if (rc == TK_OK) rc = tk_store_open(cfg->store, &so, &app.store, &e);
    if (rc == TK_OK) {
        struct tk_db *db = tk_store_get(app.store, &e);
        rc = db ? tk_tenant_default(db, app.default_tenant, &e) : TK_EUNAVAIL;
        tk_store_put(db);
    }
    if (rc == TK_OK) rc = start_keyring(&app, &e);
    if (rc == TK_OK) rewrap_worker_start(&app);
    if (rc == TK_OK) {
        size_t nroutes;
        const struct tk_route *routes = tk_api_routes(&nroutes);
        struct tk_http_opts ho = {
            .listen = cfg->listen,
            .threads = cfg->threads,
            .max_body = (size_t)cfg->max_body,
            .max_header = (size_t)cfg->max_header,
            .max_connections = cfg->max_connections,
            .max_connections_per_ip = cfg->max_connections_per_ip,
            .idle_timeout = cfg->idle_timeout,
            .header_timeout = cfg->header_timeout,
            .min_body_rate = cfg->min_body_rate,
            .allowed_hosts = cfg->allowed_hosts,
            .access_log = cfg->access_log,
            .routes = routes,
            .nroutes = nroutes,
            .app = &app,
            .gate = tk_api_gate,
            .authenticate = tk_api_authenticate,
            .finish = tk_api_finish,
        };
        rc = tk_http_start(&ho, &app.http, &e);
    }
    if (rc != TK_OK) {
        tk_error("cannot start: %s", e.msg);
        goto out;
    }
    node_event(&app, "start", "tokend started");
    tk_info("tokend %s listening on port %d (listen=%s), store %s schema %d, node %s%s",
            TK_VERSION, tk_http_port(app.http), cfg->listen, tk_store_backend(app.store),
            tk_store_schema_version(app.store), app.node, cfg->dev ? ", DEV MODE" : "");
    /* A line the tests and scripts can wait for: the port actually bound. */
    fprintf(stdout, "tokend: listening on port %d\n", tk_http_port(app.http));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {
    }
    tk_info("received %s: stopping (in-flight requests get %d s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            cfg->shutdown_timeout);
    atomic_store(&app.stopping, true);
    tk_http_quiesce(app.http);
    bool drained = tk_http_drain(app.http, cfg->shutdown_timeout * 1000);
    if (!drained) tk_warn("requests still in flight after %d s; closing them", cfg->shutdown_timeout);
    tk_http_stop(app.http);
    app.http = NULL;
    rewrap_worker_stop(&app); /* before the store closes; a batch in hand commits first */
    node_event(&app, "stop", drained ? "tokend stopped" : "tokend stopped; some requests were cut off");
    tk_info("stopped");
    status = 0;
out:
    tk_http_stop(app.http);
    rewrap_worker_stop(&app);
    tk_store_close(app.store);
    tk_keyring_free(app.keyring);
    return status;
}
