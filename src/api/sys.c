/* sys.c: /health, /ready, /metrics (and the node's own series) and /v1/whoami. */
#include "api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void tk_h_health(struct tk_req *r)
{
    /* a constant: no JSON tree to build and serialize on the probe path */
    static const char ok[] = "{\"status\":\"ok\"}\n";
    tk_reply_text(r, 200, "application/json", ok, sizeof ok - 1);
}

void tk_h_ready(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_err e;
    if (atomic_load(&app->stopping)) {
        tk_err_set(&e, TK_EUNAVAIL, "not_ready", "tokend is shutting down");
        json_t *x = json_pack("{s:s}", "reason", "shutting_down");
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    char why[320];
    const char *store_state = tk_api_store_state(app, why, sizeof why);
    if (store_state && !strcmp(store_state, "starting")) {
        tk_err_set(&e, TK_EUNAVAIL, "not_ready", "%s", why);
        json_t *x = json_pack("{s:s}", "reason", store_state);
        tk_reply_header(r, "Retry-After", "1");
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    if (st.sealed) {
        const char *sw = st.initialized ? "sealed" : "uninitialized";
        tk_err_set(&e, TK_EUNAVAIL, "not_ready",
                   st.initialized ? "tokend is sealed (%d of %d unseal shares given to this node)"
                                  : "tokend is not initialized: run 'tokend operator init'",
                   st.progress, st.threshold);
        json_t *x = json_pack("{s:s}", "reason", sw);
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    if (store_state) {
        /* the probe's last result: /ready never waits on the store */
        json_t *x = json_pack("{s:s, s:s}", "reason", store_state, "store",
                              tk_store_backend(app->store));
        tk_err_set(&e, TK_EUNAVAIL, "not_ready", "%s", why);
        tk_reply_header(r, "Retry-After", "1");
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:i, s:s, s:s}", "status", "ready", "store",
                            tk_store_backend(app->store), "schema_version",
                            tk_store_schema_version(app->store), "node", app->node, "public_url",
                            tk_api_public_url(app)));
}

/* ---- the node's series (registered by serve, read at render time) ---- */

static const char *const store_names[] = {"sqlite", "postgres", "starting"};

/* Which of store_names this node's store is ("starting" until start-up is
 * done: app->store is not to be read before). */
static size_t store_pos(struct tk_app *app)
{
    const char *b = atomic_load(&app->started) ? tk_store_backend(app->store) : "starting";
    for (size_t i = 0; i < TK_NELEM(store_names); i++)
        if (!strcmp(store_names[i], b)) return i;
    return TK_METRIC_NOIDX;
}

static double m_build_info(void *arg, size_t idx)
{
    return idx == store_pos(arg) ? 1 : NAN; /* idx: version (one value) x store */
}

static double m_start_time(void *arg, size_t idx)
{
    (void)idx;
    return (double)(((struct tk_app *)arg)->started_ms / 1000);
}

static double m_store_up(void *arg, size_t idx)
{
    char why[320];
    if (idx != store_pos(arg)) return NAN;
    return tk_api_store_state(arg, why, sizeof why) == NULL;
}

static double m_schema_version(void *arg, size_t idx)
{
    (void)idx;
    struct tk_app *app = arg;
    return atomic_load(&app->started) ? tk_store_schema_version(app->store) : 0;
}

static double m_keyring(void *arg, size_t which)
{
    struct tk_seal_status st;
    tk_keyring_status(((struct tk_app *)arg)->keyring, &st);
    return which == 0 ? st.sealed : which == 1 ? st.initialized : (double)st.data_version;
}

static double m_sealed(void *arg, size_t idx)
{
    (void)idx;
    return m_keyring(arg, 0);
}

static double m_initialized(void *arg, size_t idx)
{
    (void)idx;
    return m_keyring(arg, 1);
}

static double m_data_version(void *arg, size_t idx)
{
    (void)idx;
    return m_keyring(arg, 2);
}

tk_rc tk_api_metrics_register(struct tk_app *app, struct tk_err *e)
{
    struct tk_metrics *m = app->metrics;
    static const char *const version[] = {TK_VERSION};
    const struct tk_dim build[] = {{"version", version, 1, NULL, NULL},
                                   {"store", store_names, TK_NELEM(store_names), NULL, NULL}};
    bool ok = tk_metric_gauge_fn(m, "tokend_build_info", "Build of this node.", build, 2,
                                 m_build_info, app, e) &&
              tk_metric_gauge_fn(m, "tokend_start_time_seconds", "When this node started.", NULL,
                                 0, m_start_time, app, e) &&
              tk_metric_gauge_fn(m, "tokend_store_up",
                                 "Whether the store answered the last probe (every second).",
                                 &build[1], 1, m_store_up, app, e) &&
              tk_metric_gauge_fn(m, "tokend_store_schema_version", "Schema version of the store.",
                                 NULL, 0, m_schema_version, app, e) &&
              tk_metric_gauge_fn(m, "tokend_sealed", "Whether this node's keyring is sealed.",
                                 NULL, 0, m_sealed, app, e) &&
              tk_metric_gauge_fn(m, "tokend_keyring_initialized", "Whether the keyring exists.",
                                 NULL, 0, m_initialized, app, e) &&
              tk_metric_gauge_fn(m, "tokend_keyring_data_version",
                                 "Active data key version (0 while sealed).", NULL, 0,
                                 m_data_version, app, e) &&
              tk_out_metrics_register(m, &app->outbound, e) == TK_OK;
    if (ok && tk_api_authcache_metrics(app, e) != TK_OK) ok = false; /* authpoll.c */
    if (ok && tk_api_events_metrics(app, e) != TK_OK) ok = false;    /* events_api.c */
    return ok ? TK_OK : TK_EINTERNAL;
}

void tk_h_metrics(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_buf b;
    tk_buf_init(&b, 4 << 20);
    if (tk_metrics_render(app->metrics, &b) != TK_OK) {
        tk_buf_free(&b);
        struct tk_err e;
        tk_err_set(&e, TK_EINTERNAL, "internal", "the metrics are larger than 4 MiB");
        tk_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
    tk_buf_free(&b);
}

void tk_h_whoami(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:s, s:s}", "tenant_id", p->tenant_id, "token_id", p->id,
                            "name", p->name, "role", p->role));
}
