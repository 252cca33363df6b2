/* connect_api.c: the connect flow's two routes.
 *
 * POST /v1/connect/{app_id}/start (operator token, admin or operator)
 * makes a single-use state and answers the provider's authorization URL.
 * GET /connect/callback is public: the browser comes back from the
 * provider with code and state; the tenant and the app come from the state
 * row it redeems, never from the request. The code is exchanged at the
 * token endpoint through the outbound client while the request is parked
 * (no HTTP worker and no store connection held across the call), the
 * connection is stored through tk_conn_create_ctx (the node's refresh
 * settings) with its event in one transaction, and the browser is sent to
 * the return_url with connection_id (or error) appended, or shown a small
 * page.
 *
 * Every failure is one event of kind connect naming the stage (state,
 * provider, callback, app, token_exchange, store) and the reason, so that
 * `tokend events --kind connect` shows where a connect failed. */
#include "api.h"

#include "../common/log.h"
#include "../common/text.h"
#include "../events/events.h"
#include "../upstream/connect.h"
#include "../upstream/connections.h"
#include "../upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- start ---- */

static const char *const start_members[] = {"label", "return_url", NULL};

void tk_h_connect_start(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_err e;
    const char *app_id = tk_req_param(r, "app_id");
    if (!tk_uuid_valid(app_id)) {
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "app_id", "no provider app with id %.40s",
                     app_id);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_t *body = tk_req_json(r);
    if (!body) return;
    if (!tk_api_only_members(r, body, start_members)) {
        json_decref(body);
        return;
    }
    json_t *lv = json_object_get(body, "label");
    json_t *uv = json_object_get(body, "return_url");
    tk_rc rc = TK_OK;
    if (!lv)
        rc = tk_err_field(&e, TK_EINVAL, "missing_field", "label",
                          "label is required: the name of the connection to be made");
    else if (!json_is_string(lv) || strlen(json_string_value(lv)) != json_string_length(lv))
        rc = tk_err_field(&e, TK_EINVAL, "invalid_field", "label",
                          "label must be a string without NUL characters");
    else
        rc = tk_text_check_name("label", json_string_value(lv), TK_CONN_LABEL_MAX, &e);
    const char *return_url = NULL;
    if (rc == TK_OK && uv && !json_is_null(uv)) {
        if (!json_is_string(uv) || strlen(json_string_value(uv)) != json_string_length(uv))
            rc = tk_err_field(&e, TK_EINVAL, "invalid_field", "return_url",
                              "return_url must be a URL string or null");
        else
            rc = tk_connect_return_url_check(json_string_value(uv), &e);
        return_url = json_string_value(uv);
    }
    if (rc != TK_OK) {
        json_decref(body);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    const struct tk_principal *p = tk_api_principal(r);
    json_t *ap = NULL;
    rc = tk_app_get(db, app->catalog, p->tenant_id, app_id, &ap, &e);
    if (rc == TK_ENOTFOUND)
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "app_id", "no provider app with id %s", app_id);
    char redirect_uri[600];
    snprintf(redirect_uri, sizeof redirect_uri, "%s/connect/callback", tk_api_public_url(app));
    struct tk_connect_started st = {0};
    if (rc == TK_OK) rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_connect_start(db, app->keyring, p->tenant_id, ap, json_string_value(lv), return_url,
                              redirect_uri, tk_now_ms(), &st, &e);
    char expires[32] = "";
    if (rc == TK_OK) {
        tk_time_fmt(st.expires_at, expires, sizeof expires);
        json_t *d =
            json_pack("{s:s, s:O?, s:s, s:O?, s:s?, s:b, s:s}", "state_id", st.id, "provider",
                      json_object_get(ap, "provider"), "label", json_string_value(lv), "app_name",
                      json_object_get(ap, "name"), "return_url", return_url, "pkce", st.pkce,
                      "state_expires_at", expires);
        rc =
            tk_api_event_in(r, "connect", "start", "ok", "provider_app", app_id,
                            "connect flow started: waiting for the browser at the provider", d, &e);
        json_decref(d);
    }
    /* rows a day past their expiry go as new ones come (indexed, bounded
     * by the rate of starts) */
    int64_t pruned = 0;
    if (rc == TK_OK) rc = tk_connect_prune(db, tk_now_ms(), &pruned, &e);
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(body);
    json_decref(ap);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_connect_started_clear(&st);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:s, s:b, s:s}", "authorize_url", st.authorize_url,
                            "state_expires_at", expires, "state_id", st.id, "pkce", st.pkce,
                            "redirect_uri", redirect_uri));
    tk_connect_started_clear(&st);
}

/* ---- callback ---- */

/* What a callback knows when it ends. */
struct cb {
    struct tk_app *app;
    char trace_id[72];
    char remote[64];
    int64_t t0_us;
    struct tk_connect_state st; /* st.found: the row is known */
    json_t *ap;                 /* the app (tk_app_get), or NULL */
    /* the exchange */
    char *code;
    struct tk_secret *secret, *verifier;
    struct tk_connect_exchange x;
    struct tk_out_req req;
    struct tk_out_result res;
    bool have_res;
    struct tk_err submit_err;
    struct tk_parked *parked;
};

static void cb_free(struct cb *c)
{
    if (!c) return;
    tk_connect_state_clear(&c->st);
    json_decref(c->ap);
    if (c->code) {
        tk_wipe(c->code, strlen(c->code));
        free(c->code);
    }
    tk_secret_free(c->secret);
    tk_secret_free(c->verifier);
    tk_connect_exchange_free(&c->x);
    if (c->have_res && c->res.body) tk_wipe((void *)c->res.body, c->res.body_len);
    if (c->have_res) tk_out_result_free(&c->res);
    free(c);
}

static const char *app_provider(const struct cb *c)
{
    return json_string_value(json_object_get(c->ap, "provider"));
}

/* Record the callback's one event (posted: it may not hold the request
 * up). Without a known row the tenant is the default one and repeats from
 * one address are coalesced. */
static void cb_event(struct cb *c, const char *outcome, const char *stage, const char *reason,
                     const char *subject_type, const char *subject_id, const char *message,
                     json_t *extra)
{
    json_t *d = extra ? json_incref(extra) : json_object();
    if (stage) json_object_set_new(d, "stage", json_string(stage));
    if (reason) json_object_set_new(d, "reason", json_string(reason));
    json_object_set_new(d, "remote", json_string(c->remote));
    if (c->st.found) {
        json_object_set_new(d, "state_id", json_string(c->st.id));
        json_object_set_new(d, "app_id", json_string(c->st.app_id));
        if (c->st.label) json_object_set_new(d, "label", json_string(c->st.label));
    }
    if (app_provider(c)) json_object_set_new(d, "provider", json_string(app_provider(c)));
    struct tk_event ev = {.tenant_id = c->st.found ? c->st.tenant_id : c->app->default_tenant,
                          .trace_id = c->trace_id,
                          .kind = "connect",
                          .source = "callback",
                          .action = "callback",
                          .outcome = outcome,
                          .subject_type = subject_type,
                          .subject_id = subject_id,
                          .message = message,
                          .detail = d,
                          .latency_us = tk_mono_us() - c->t0_us};
    struct tk_err e;
    bool skip = false;
    if (!c->st.found) {
        char key[128];
        snprintf(key, sizeof key, "%s %s", reason ? reason : "", c->remote);
        skip = tk_event_coalesce(&ev, key, 60000);
    }
    if (!skip && tk_event_post(&ev, &e) != TK_OK)
        tk_warn("connect: could not record the callback's event (%s): %s", reason ? reason : "ok",
                e.msg);
    json_decref(d);
}

static void page_headers(struct tk_req *r)
{
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    tk_reply_header(r, "X-Content-Type-Options", "nosniff");
    tk_reply_header(r, "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
}

/* A small page: no script, every text escaped. */
static void page(struct tk_req *r, int status, const char *title, const char *line1,
                 const char *line2)
{
    struct tk_buf b;
    tk_buf_init(&b, 16384);
    tk_buf_addstr(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>tokend: ");
    tk_connect_html_escape(&b, title);
    tk_buf_addstr(&b, "</title></head>\n<body style=\"font-family:sans-serif;max-width:40em;"
                      "margin:3em auto\"><h1>");
    tk_connect_html_escape(&b, title);
    tk_buf_addstr(&b, "</h1>\n<p>");
    tk_connect_html_escape(&b, line1);
    tk_buf_addstr(&b, "</p>\n");
    if (line2) {
        tk_buf_addstr(&b, "<p>");
        tk_connect_html_escape(&b, line2);
        tk_buf_addstr(&b, "</p>\n");
    }
    tk_buf_addstr(&b, "</body></html>\n");
    page_headers(r);
    tk_reply_text(r, status, "text/html; charset=utf-8", b.data, b.len);
    tk_buf_free(&b);
}

/* 303 to return_url with name=value (and name2=value2) appended. */
static void back(struct tk_req *r, const char *return_url, const char *name, const char *value,
                 const char *name2, const char *value2)
{
    char *esc = tk_pool_strdup(r->pool, value),
         *esc2 = value2 ? tk_pool_strdup(r->pool, value2) : NULL;
    /* values are ids and error codes; codes of the provider are checked
     * (tk_connect_error_code_valid) but may hold characters a URL cannot */
    struct tk_buf b;
    tk_buf_init(&b, TK_CONNECT_RETURN_URL_MAX + 512);
    tk_buf_addstr(&b, return_url);
    tk_buf_addstr(&b, strchr(return_url, '?') ? "&" : "?");
    const char *names[2] = {name, name2};
    const char *vals[2] = {esc, esc2};
    for (int i = 0; i < 2 && names[i]; i++) {
        if (i) tk_buf_addstr(&b, "&");
        tk_buf_addstr(&b, names[i]);
        tk_buf_addstr(&b, "=");
        for (const char *s = vals[i]; *s; s++) {
            unsigned char ch = (unsigned char)*s;
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '-' || ch == '_' || ch == '.' || ch == '~')
                tk_buf_add(&b, s, 1);
            else
                tk_buf_printf(&b, "%%%02X", ch);
        }
    }
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    tk_reply_redirect(r, 303, b.data);
    tk_buf_free(&b);
}

/* End a failed callback: the event, then the browser back to return_url
 * with error=code (the row's, when known), or a page with status. */
static void cb_fail(struct tk_req *r, struct cb *c, int status, const char *outcome,
                    const char *stage, const char *reason, const char *code, const char *why,
                    json_t *extra)
{
    char msg[400];
    snprintf(msg, sizeof msg, "connect failed at stage %s (%s): %s", stage, reason, why);
    cb_event(c, outcome, stage, reason, c->st.found ? "provider_app" : NULL,
             c->st.found ? c->st.app_id : NULL, msg, extra);
    if (c->st.found && c->st.return_url) {
        bool provider_code = !strcmp(code, "provider_error");
        back(r, c->st.return_url, "error", code, provider_code ? "provider_error" : NULL,
             provider_code ? reason : NULL);
        return;
    }
    char line2[200];
    snprintf(line2, sizeof line2, "Stage: %s. Reason: %s. Request id: %s.", stage, reason,
             c->trace_id);
    page(r, status, "Connection failed", msg, line2);
}

/* The connection is stored: event and answer. */
static void cb_connected(struct tk_req *r, struct cb *c, const char *conn_id)
{
    if (c->st.return_url) {
        back(r, c->st.return_url, "connection_id", conn_id, NULL, NULL);
        return;
    }
    char line[400];
    snprintf(line, sizeof line,
             "The connection '%s' to %s is ready (id %s). You can close this page.",
             c->st.label ? c->st.label : "", app_provider(c) ? app_provider(c) : "the provider",
             conn_id);
    page(r, 200, "Connected", line, NULL);
}

/* On an HTTP worker: the exchange ended (or could not start). */
static void exchange_finish(struct tk_req *r, void *arg)
{
    struct cb *c = arg;
    struct tk_err e;
    json_t *rec = c->have_res ? tk_out_record(&c->req, &c->res) : NULL;
    json_t *extra = rec ? json_pack("{s:o}", "exchange", rec) : json_object();
    json_t *eff = json_object_get(c->ap, "effective");
    if (!c->have_res) {
        cb_fail(r, c, 503, "error", "token_exchange", c->submit_err.code, "token_exchange_failed",
                c->submit_err.msg, extra);
        goto out;
    }
    if (c->res.error != TK_OUT_OK) {
        cb_fail(r, c, 502, "error", "token_exchange", tk_out_error_name(c->res.error),
                "token_exchange_failed", c->res.message, extra);
        goto out;
    }
    if (c->res.status < 200 || c->res.status > 299) {
        char reason[40];
        tk_connect_refusal_reason(c->res.status, c->res.body, c->res.body_len, reason);
        char why[200];
        snprintf(why, sizeof why, "the token endpoint refused the code with HTTP %ld (%s)",
                 c->res.status, reason);
        cb_fail(r, c, 502, c->res.status >= 500 ? "error" : "failed", "token_exchange", reason,
                "token_exchange_failed", why, extra);
        goto out;
    }
    struct tk_conn_tokens tok;
    json_t *holder = NULL;
    tk_rc rc =
        tk_conn_parse_answer(c->res.body, c->res.body_len, eff, tk_now_ms(), &tok, &holder, &e);
    if (rc != TK_OK) {
        cb_fail(r, c, 502, "failed", "token_exchange", e.code, "token_exchange_failed", e.msg,
                extra);
        json_decref(holder);
        goto out;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) { /* replied 503; the tokens are dropped: record why */
        cb_event(c, "error", "store", "store_unavailable", "provider_app", c->st.app_id,
                 "connect failed at stage store: the store was unreachable after the exchange",
                 extra);
        json_decref(holder);
        goto out;
    }
    char conn_id[TK_UUID_LEN + 1] = "";
    rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_conn_create_ctx(db, c->app->refresh_ctx, c->st.tenant_id, c->st.app_id, c->st.label,
                                &tok, conn_id, &e);
    if (rc == TK_OK) {
        char exp[32];
        tk_time_fmt(tok.expires_at, exp, sizeof exp);
        json_t *d =
            json_pack("{s:s, s:s, s:s?, s:s, s:s, s:b, s:s}", "state_id", c->st.id, "app_id",
                      c->st.app_id, "provider", app_provider(c), "label", c->st.label, "remote",
                      c->remote, "has_refresh_token", tok.refresh_token != NULL, "expires_at", exp);
        struct tk_event ev = {.tenant_id = c->st.tenant_id,
                              .trace_id = c->trace_id,
                              .kind = "connect",
                              .source = "callback",
                              .action = "callback",
                              .outcome = "ok",
                              .subject_type = "connection",
                              .subject_id = conn_id,
                              .message = "connected: the code was exchanged and the connection "
                                         "stored",
                              .detail = d,
                              .latency_us = tk_mono_us() - c->t0_us};
        rc = tk_event_emit_in(db, &ev, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(holder);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        cb_fail(r, c, rc == TK_EUNAVAIL ? 503 : 500, "error", "store", e.code, "store_failed",
                e.msg, NULL);
        goto out;
    }
    tk_api_engine_kick(c->app);
    cb_connected(r, c, conn_id);
out:
    json_decref(extra);
    cb_free(c);
}

/* On the outbound thread: keep the answer, hand the rest to a worker. */
static void exchange_done(const struct tk_out_result *res, void *arg)
{
    struct cb *c = arg;
    tk_out_result_copy(&c->res, res);
    c->have_res = true;
    if (tk_parked_resume_with(c->parked, exchange_finish, c)) return;
    /* the browser's request was answered meanwhile (deadline, node
     * stopping): nothing is stored; say so */
    cb_event(c, "error", "token_exchange", "callback_gone", "provider_app", c->st.app_id,
             "connect failed at stage token_exchange: the browser's request ended before the "
             "token endpoint answered; nothing was stored",
             NULL);
    cb_free(c);
}

/* A query parameter given at most once, at most max bytes; NULL when
 * absent. false after failing the callback. */
static bool cb_param(struct tk_req *r, struct cb *c, const char *name, size_t max, const char **out)
{
    *out = NULL;
    if (tk_req_query_count(r, name) > 1) {
        char why[120];
        snprintf(why, sizeof why, "the parameter %s was given more than once", name);
        cb_fail(r, c, 400, "denied", "callback", "duplicate_parameter", "invalid_request", why,
                NULL);
        return false;
    }
    const char *v = tk_req_query(r, name);
    if (v && strlen(v) > max) {
        char why[120];
        snprintf(why, sizeof why, "the parameter %s is longer than %zu bytes", name, max);
        cb_fail(r, c, 400, "denied", "callback", "parameter_too_long", "invalid_request", why,
                NULL);
        return false;
    }
    *out = v;
    return true;
}

void tk_h_connect_callback(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct cb *c = tk_calloc(1, sizeof *c);
    c->app = app;
    c->t0_us = tk_mono_us();
    snprintf(c->trace_id, sizeof c->trace_id, "%s", r->request_id);
    tk_req_remote(r, c->remote, sizeof c->remote);
    struct tk_err e;

    const char *state, *code, *error, *desc;
    if (!cb_param(r, c, "state", TK_CONNECT_STATE_MAX, &state)) goto done;
    if (!state) {
        cb_fail(r, c, 400, "denied", "state", "missing_state", "invalid_request",
                "the callback has no state parameter: open the authorization URL that "
                "POST /v1/connect/{app_id}/start gave",
                NULL);
        goto done;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) goto done;
    tk_rc rc = tk_connect_redeem(db, app->keyring, state, strlen(state), tk_now_ms(), &c->st, &e);
    if (rc != TK_OK) {
        if (c->st.found || rc == TK_EINVAL || rc == TK_ENOTFOUND)
            cb_fail(r, c, 400, "denied", "state", e.code, e.code, e.msg, NULL);
        else
            cb_fail(r, c, tk_rc_status(rc), "error", "state", e.code, "internal", e.msg, NULL);
        goto done;
    }
    /* the state is spent from here on, whatever follows */
    if (tk_app_get(db, app->catalog, c->st.tenant_id, c->st.app_id, &c->ap, &e) != TK_OK) {
        cb_fail(r, c, 409, "error", "app", "app_unavailable", "app_unavailable", e.msg, NULL);
        goto done;
    }
    if (!cb_param(r, c, "error", 256, &error) ||
        !cb_param(r, c, "error_description", 1024, &desc) ||
        !cb_param(r, c, "code", TK_CONNECT_CODE_MAX, &code))
        goto done;
    if (error) {
        const char *reason = tk_connect_error_code_valid(error) ? error : "invalid_error_code";
        char why[400];
        char *d = desc ? tk_utf8_fix(desc) : NULL;
        snprintf(why, sizeof why, "the provider answered error=%s%s%.200s", reason, d ? ": " : "",
                 d ? d : "");
        free(d);
        cb_fail(r, c, 400, "failed", "provider", reason,
                !strcmp(reason, "access_denied") ? "access_denied" : "provider_error", why, NULL);
        goto done;
    }
    if (!code || !code[0]) {
        cb_fail(r, c, 400, "denied", "callback", "missing_code", "invalid_request",
                "the callback has neither code nor error", NULL);
        goto done;
    }
    /* the client secret (none: a public client) and the PKCE verifier */
    struct tk_open_failure f;
    rc = tk_app_client_secret(db, app->keyring, c->st.tenant_id, c->st.app_id, &c->secret, &f, &e);
    if (rc == TK_ENOTFOUND && !strcmp(e.code, "no_client_secret")) rc = TK_OK;
    if (rc == TK_OK) rc = tk_connect_verifier(db, app->keyring, &c->st, &c->verifier, &f, &e);
    if (rc != TK_OK) {
        cb_fail(r, c, tk_rc_status(rc), "error", "app", e.code,
                rc == TK_EUNAVAIL ? "sealed" : "internal", e.msg, NULL);
        goto done;
    }
    c->code = tk_strdup(code);
    rc = tk_connect_exchange_build(json_object_get(c->ap, "effective"),
                                   json_string_value(json_object_get(c->ap, "client_id")),
                                   c->secret, c->code, c->st.redirect_uri, c->verifier, &c->x, &e);
    if (rc != TK_OK) {
        cb_fail(r, c, 409, "error", "app", e.code, "app_unavailable", e.msg, NULL);
        goto done;
    }
    int timeout_ms = app->cfg->outbound_timeout * 1000;
    c->req = (struct tk_out_req){.method = c->x.method,
                                 .url = c->x.url,
                                 .headers = (const char *const *)c->x.headers,
                                 .nheaders = c->x.nheaders,
                                 .body = c->x.body,
                                 .body_len = c->x.body_len,
                                 .timeout_ms = timeout_ms,
                                 .mask = c->x.mask,
                                 .nmask = c->x.nmask};
    /* park: the exchange runs on the outbound thread; this handler
     * returns and gives its store connection back */
    c->parked = tk_req_park(r, timeout_ms + 5000);
    if (!c->parked) goto done;
    if (tk_out_submit(app->outbound, &c->req, exchange_done, c, NULL, &c->submit_err) != TK_OK &&
        !tk_parked_resume_with(c->parked, exchange_finish, c))
        goto done;
    return;
done:
    cb_free(c);
}
