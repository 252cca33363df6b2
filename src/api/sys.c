/* sys.c: /health, /ready, /metrics and /v1/whoami. */
#include "api.h"

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
                  json_pack("{s:s, s:s, s:i, s:s}", "status", "ready", "store",
                            tk_store_backend(app->store), "schema_version",
                            tk_store_schema_version(app->store), "node", app->node));
}

void tk_h_metrics(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_buf b;
    tk_buf_init(&b, 4 << 20);
    bool started = atomic_load(&app->started);
    tk_buf_printf(&b,
                  "# HELP tokend_build_info Build of this node.\n# TYPE tokend_build_info gauge\n"
                  "tokend_build_info{version=\"%s\",store=\"%s\"} 1\n",
                  TK_VERSION, started ? tk_store_backend(app->store) : "starting");
    tk_buf_printf(&b,
                  "# HELP tokend_start_time_seconds When this node started.\n# TYPE "
                  "tokend_start_time_seconds gauge\ntokend_start_time_seconds %lld\n",
                  (long long)(app->started_ms / 1000));
    char why[320];
    int up = tk_api_store_state(app, why, sizeof why) == NULL;
    tk_buf_printf(&b,
                  "# HELP tokend_store_up Whether the store answered the last probe (every "
                  "second).\n# TYPE "
                  "tokend_store_up gauge\ntokend_store_up{store=\"%s\"} %d\n"
                  "# HELP tokend_store_schema_version Schema version of the store.\n# TYPE "
                  "tokend_store_schema_version gauge\ntokend_store_schema_version %d\n",
                  started ? tk_store_backend(app->store) : "starting", up,
                  started ? tk_store_schema_version(app->store) : 0);
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    tk_buf_printf(&b,
                  "# HELP tokend_sealed Whether this node's keyring is sealed.\n# TYPE "
                  "tokend_sealed gauge\ntokend_sealed %d\n"
                  "# HELP tokend_keyring_initialized Whether the keyring exists.\n# TYPE "
                  "tokend_keyring_initialized gauge\ntokend_keyring_initialized %d\n"
                  "# HELP tokend_keyring_data_version Active data key version (0 while sealed).\n"
                  "# TYPE tokend_keyring_data_version gauge\ntokend_keyring_data_version %lld\n",
                  st.sealed, st.initialized, (long long)st.data_version);
    if (started) tk_http_metrics(app->http, &b);
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
