/* oauth_authorize_api.c: GET /oauth2/authorize, the flows' stages and
 * failures (oauth_api.h), and the flow trace routes (/v1/oauth/flows).
 *
 * The authorization endpoint is public. Until the client and its redirect
 * URI are known to be valid, every refusal is an HTML page (400, escaped,
 * CSP, no-store): never a redirect, so tokend is no open redirector. Once
 * they are, refusals go to the redirect URI with error, error_description,
 * state and iss (RFC 9207). Each request that named a known client is a
 * flow row (active, or failed at authorize_received with the RFC error and
 * the sentence); an unknown client_id leaves a coalesced event in the
 * default tenant. Each stage and failure is an event of kind oauth,
 * subject the flow, committed with the row. */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"
#include "../oauth/authorize.h"
#include "ratelimit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tk_oauth_flows {
    struct tk_metric *m_flows;       /* tokend_oauth_flows_total{stage, outcome} */
    struct tk_ratelimit *flow_limit; /* oauth_authorize_rate: flows per address */
};

static const char *const outcomes[] = {"ok", "failed"};

static void count(struct tk_app *app, const char *stage, bool ok)
{
    if (!app || !app->oauth_flows) return;
    for (size_t i = 0; i < TK_NELEM(tk_oauth_stages); i++)
        if (stage && !strcmp(stage, tk_oauth_stages[i]))
            tk_metric_inc(app->oauth_flows->m_flows, i * 2 + (ok ? 0 : 1));
}

tk_rc tk_api_oauth_flows_metrics(struct tk_app *app, struct tk_err *e)
{
    if (!app->oauth_flows) app->oauth_flows = tk_calloc(1, sizeof *app->oauth_flows);
    static const struct tk_dim dims[] = {{"stage", tk_oauth_stages, 6, NULL, NULL},
                                         {"outcome", outcomes, 2, NULL, NULL}};
    app->oauth_flows->m_flows = tk_metric_counter(
        app->metrics, "tokend_oauth_flows_total",
        "Authorization flows that reached a stage (ok) or failed at it (failed).", dims, 2, 0, e);
    return app->oauth_flows->m_flows ? TK_OK : TK_EINTERNAL;
}

tk_rc tk_api_oauth_flows_start(struct tk_app *app, struct tk_err *e)
{
    (void)e;
    if (!app->oauth_flows) app->oauth_flows = tk_calloc(1, sizeof *app->oauth_flows);
    if (!app->oauth_flows->flow_limit)
        app->oauth_flows->flow_limit = tk_ratelimit_new(app->cfg->oauth_authorize_rate, 60);
    return TK_OK;
}

void tk_api_oauth_flows_stop(struct tk_app *app)
{
    if (app->oauth_flows) tk_ratelimit_free(app->oauth_flows->flow_limit);
    free(app->oauth_flows);
    app->oauth_flows = NULL;
}

/* ---- events ---- */

static json_t *flow_detail(struct tk_req *r, const struct tk_oauth_flow *f)
{
    json_t *d = json_object();
    if (f) {
        json_object_set_new(d, "client_id", json_string(f->client_id));
        if (f->redirect_uri[0])
            json_object_set_new(d, "redirect_uri", json_string(f->redirect_uri));
        if (f->scopes) json_object_set(d, "scopes", f->scopes);
    }
    if (r) {
        char remote[64];
        tk_req_remote(r, remote, sizeof remote);
        json_object_set_new(d, "remote", json_string(remote));
    }
    return d;
}

static tk_rc event_in(struct tk_req *r, struct tk_db *db, const char *tenant_id,
                      const char *flow_id, const char *action, const char *outcome,
                      const char *message, json_t *detail, struct tk_err *e)
{
    struct tk_event ev = {.tenant_id = tenant_id,
                          .trace_id = r ? r->request_id : NULL,
                          .kind = "oauth",
                          .source = "oauth",
                          .action = action,
                          .outcome = outcome,
                          .subject_type = "oauth_flow",
                          .subject_id = flow_id,
                          .message = message,
                          .detail = detail,
                          .latency_us = -1};
    return tk_event_emit_in(db, &ev, e);
}

/* Run fn in a transaction of its own: on the request's connection when it
 * holds one outside a transaction, else on one of the store's (the caller
 * may be inside a transaction of its own on the request's). */
static tk_rc own_tx(struct tk_req *r, tk_rc (*fn)(struct tk_db *, void *, struct tk_err *),
                    void *arg, struct tk_err *e)
{
    struct tk_app *app = r->app;
    struct tk_db *mine = r->db && !tk_db_in_tx(r->db) ? r->db : NULL;
    struct tk_db *db = mine ? mine : tk_store_get(app->store, e);
    if (!db) return e->rc;
    tk_rc rc = tk_db_begin(db, e);
    if (rc == TK_OK) rc = fn(db, arg, e);
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    if (!mine) tk_store_put(db);
    return rc;
}

struct stage_args {
    struct tk_req *r;
    const char *tenant_id, *flow_id, *stage, *user_id;
    json_t *detail;
    /* failures */
    const char *error, *reason, *next_step;
};

static tk_rc stage_fn(struct tk_db *db, void *arg, struct tk_err *e)
{
    struct stage_args *a = arg;
    tk_rc rc =
        tk_oauth_flow_set_stage(db, a->tenant_id, a->flow_id, a->stage, a->user_id, tk_now_ms(), e);
    if (rc != TK_OK) return rc;
    json_t *d = a->detail ? json_incref(a->detail) : flow_detail(a->r, NULL);
    json_object_set_new(d, "stage", json_string(a->stage));
    if (a->user_id) json_object_set_new(d, "user_id", json_string(a->user_id));
    char msg[160];
    snprintf(msg, sizeof msg, "authorization flow reached %s", a->stage);
    rc = event_in(a->r, db, a->tenant_id, a->flow_id, a->stage, "ok", msg, d, e);
    json_decref(d);
    return rc;
}

static tk_rc failed_fn(struct tk_db *db, void *arg, struct tk_err *e)
{
    struct stage_args *a = arg;
    tk_rc rc = tk_oauth_flow_set_failed(db, a->tenant_id, a->flow_id, a->stage, a->error, a->reason,
                                        a->next_step, tk_now_ms(), e);
    if (rc != TK_OK) return rc;
    json_t *d = a->detail ? json_incref(a->detail) : flow_detail(a->r, NULL);
    json_object_set_new(d, "stage", json_string(a->stage));
    json_object_set_new(d, "error", json_string(a->error));
    json_object_set_new(d, "reason", json_string(a->reason));
    if (a->next_step && *a->next_step)
        json_object_set_new(d, "next_step", json_string(a->next_step));
    char msg[TK_OAUTH_REASON_MAX + 128];
    snprintf(msg, sizeof msg, "authorization flow failed at %s (%s): %s", a->stage, a->error,
             a->reason);
    rc = event_in(a->r, db, a->tenant_id, a->flow_id, a->stage, "denied", msg, d, e);
    json_decref(d);
    return rc;
}

tk_rc tk_api_oauth_flow_stage(struct tk_req *r, struct tk_db *db, const char *tenant_id,
                              const char *flow_id, const char *stage, const char *user_id,
                              struct tk_err *e)
{
    struct stage_args a = {
        .r = r, .tenant_id = tenant_id, .flow_id = flow_id, .stage = stage, .user_id = user_id};
    tk_rc rc = db ? stage_fn(db, &a, e) : own_tx(r, stage_fn, &a, e);
    if (rc == TK_OK) count(r ? r->app : NULL, stage, true);
    return rc;
}

static void flow_failed(struct tk_req *r, const char *tenant_id, const char *flow_id,
                        const char *stage, const char *error, const char *reason,
                        const char *next_step)
{
    struct tk_err e;
    struct stage_args a = {.r = r,
                           .tenant_id = tenant_id,
                           .flow_id = flow_id,
                           .stage = stage,
                           .error = error,
                           .reason = reason ? reason : error,
                           .next_step = next_step};
    if (own_tx(r, failed_fn, &a, &e) != TK_OK)
        tk_log_write(TK_LOG_WARN, "oauth: could not record that flow %s failed at %s (%s): %s",
                     flow_id, stage, error, e.msg);
    count(r->app, stage, false);
}

void tk_api_oauth_flow_failed(struct tk_req *r, const char *tenant_id, const char *flow_id,
                              const char *stage, const char *error, const char *reason)
{
    flow_failed(r, tenant_id, flow_id, stage, error, reason, NULL);
}

/* ---- replies ---- */

static void html_escape(struct tk_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            tk_buf_addstr(b, "&lt;");
            break;
        case '>':
            tk_buf_addstr(b, "&gt;");
            break;
        case '&':
            tk_buf_addstr(b, "&amp;");
            break;
        case '"':
            tk_buf_addstr(b, "&quot;");
            break;
        case '\'':
            tk_buf_addstr(b, "&#39;");
            break;
        default:
            tk_buf_add(b, s, 1);
        }
    }
}

/* The error page: for a request whose client or redirect URI is not
 * known to be good (never a redirect). */
static void error_page_status(struct tk_req *r, int status, const char *error, const char *sentence)
{
    char *clean = tk_utf8_fix(sentence);
    struct tk_buf b;
    tk_buf_init(&b, 16384);
    tk_buf_addstr(&b, "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                      "<title>tokend: authorization request refused</title></head>\n"
                      "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
                      "<h1>Authorization request refused</h1>\n<p>");
    html_escape(&b, clean);
    tk_buf_addstr(&b, "</p>\n<p>Error: ");
    html_escape(&b, error);
    tk_buf_addstr(&b, ". Request id: ");
    html_escape(&b, r->request_id);
    tk_buf_addstr(&b, ". Go back to the application and tell its developer.</p>\n"
                      "</body></html>\n");
    free(clean);
    /* the server adds Cache-Control: no-store and nosniff to every answer */
    tk_reply_header(r, "Pragma", "no-cache");
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    tk_reply_header(r, "X-Frame-Options", "DENY");
    tk_reply_header(r, "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
    tk_reply_text(r, status, "text/html; charset=utf-8", b.data, b.len);
    tk_buf_free(&b);
}

static void error_page(struct tk_req *r, const char *error, const char *sentence)
{
    error_page_status(r, 400, error, sentence);
}

static void add_param(struct tk_buf *b, bool *first, const char *name, const char *value)
{
    if (!value) return;
    if (!*first) tk_buf_addstr(b, "&");
    *first = false;
    tk_buf_addstr(b, name);
    tk_buf_addstr(b, "=");
    for (const char *s = value; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~')
            tk_buf_add(b, s, 1);
        else
            tk_buf_printf(b, "%%%02X", ch);
    }
}

/* 303 to the (valid) redirect URI with the parameters, URL-encoded. */
static void redirect_to(struct tk_req *r, const char *uri, const char *const *names,
                        const char *const *values, size_t n)
{
    struct tk_buf b;
    tk_buf_init(&b, TK_OAUTH_URI_MAX + 8192);
    tk_buf_addstr(&b, uri);
    size_t len = strlen(uri);
    bool first = true;
    if (!strchr(uri, '?'))
        tk_buf_addstr(&b, "?");
    else if (len && uri[len - 1] != '?' && uri[len - 1] != '&')
        first = false;
    for (size_t i = 0; i < n; i++)
        add_param(&b, &first, names[i], values[i]);
    tk_reply_header(r, "Pragma", "no-cache"); /* Cache-Control: no-store is the server's */
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    tk_reply_redirect(r, 303, b.data);
    tk_buf_free_wipe(&b); /* it may hold a code */
}

static void redirect_error(struct tk_req *r, const char *uri, const char *state, const char *error,
                           const char *description)
{
    struct tk_app *app = r->app;
    const char *names[] = {"error", "error_description", "state", "iss"};
    /* error_description: RFC 6749 allows %x20-21 / %x23-5B / %x5D-7E only */
    char desc[512];
    size_t k = 0;
    for (const char *s = description ? description : ""; *s && k + 1 < sizeof desc; s++) {
        unsigned char ch = (unsigned char)*s;
        desc[k++] = (ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\') ? (char)ch : '?';
    }
    desc[k] = '\0';
    const char *values[] = {error, desc, state && *state ? state : NULL, tk_api_public_url(app)};
    redirect_to(r, uri, names, values, TK_NELEM(names));
}

void tk_api_oauth_redirect_error(struct tk_req *r, const struct tk_oauth_flow *f, const char *error,
                                 const char *description)
{
    flow_failed(r, f->tenant_id, f->id, f->stage[0] ? f->stage : "authorize_received", error,
                description, NULL);
    redirect_error(r, f->redirect_uri, f->oauth_state, error, description);
}

/* ---- code issue ---- */

struct issue_args {
    struct tk_req *r;
    const struct tk_oauth_flow *f;
    char code[TK_ISSUED_MAX];
};

void tk_api_oauth_authorized(struct tk_req *r, const struct tk_oauth_flow *f)
{
    struct tk_app *app = r->app;
    int64_t now = tk_now_ms();
    if (strcmp(f->status, "active") != 0) {
        error_page(r, "invalid_request",
                   "This authorization request is finished already; start again at the "
                   "application.");
        return;
    }
    if (f->expires_at && now >= f->expires_at) {
        char why[200];
        snprintf(why, sizeof why,
                 "the flow expired %lld s ago (oauth_flow_ttl %d s): start again at the client",
                 (long long)((now - f->expires_at) / 1000), app->cfg->oauth_flow_ttl);
        flow_failed(r, f->tenant_id, f->id, "code_issued", "access_denied", why,
                    "sign in and consent within oauth_flow_ttl of the authorization request, or "
                    "raise oauth_flow_ttl");
        redirect_error(r, f->redirect_uri, f->oauth_state, "access_denied",
                       "the authorization request expired; start again");
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    char code[TK_ISSUED_MAX] = "";
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_oauth_code_issue(db, app->keyring, f, code, &e);
    if (rc == TK_OK) {
        json_t *d = flow_detail(r, f);
        struct stage_args a = {.r = r,
                               .tenant_id = f->tenant_id,
                               .flow_id = f->id,
                               .stage = "code_issued",
                               .detail = d};
        rc = stage_fn(db, &a, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(code, sizeof code);
        const char *error = e.rc == TK_EUNAVAIL ? "temporarily_unavailable" : "server_error";
        char why[400];
        snprintf(why, sizeof why, "the code could not be issued (%s): %s", e.code, e.msg);
        flow_failed(r, f->tenant_id, f->id, "code_issued", error, why, NULL);
        redirect_error(r, f->redirect_uri, f->oauth_state, error,
                       "the authorization code could not be issued; try again");
        return;
    }
    count(app, "code_issued", true);
    const char *names[] = {"code", "state", "iss"};
    const char *values[] = {code, f->oauth_state[0] ? f->oauth_state : NULL,
                            tk_api_public_url(app)};
    redirect_to(r, f->redirect_uri, names, values, TK_NELEM(names));
    tk_wipe(code, sizeof code);
}

/* ---- GET /oauth2/authorize ---- */

enum {
    P_CLIENT_ID,
    P_REDIRECT_URI,
    P_RESPONSE_TYPE,
    P_SCOPE,
    P_STATE,
    P_CHALLENGE,
    P_METHOD,
    P_RESOURCE,
    P_NONCE,
    P_N
};
static const struct {
    const char *name;
    size_t max;
} params[P_N] = {
    {"client_id", TK_OAUTH_CLIENT_ID_MAX - 1},
    {"redirect_uri", TK_OAUTH_URI_MAX - 1},
    {"response_type", 64},
    {"scope", TK_OAUTH_SCOPE_PARAM_MAX},
    {"state", TK_OAUTH_STATE_MAX - 1},
    {"code_challenge", 512},
    {"code_challenge_method", 32},
    {"resource", TK_OAUTH_URI_MAX - 1},
    {"nonce", TK_OAUTH_STATE_MAX - 1},
};

struct authz {
    const char *v[P_N]; /* NULL: absent */
    int count[P_N];
    bool ok[P_N]; /* bytes acceptable */
    char why[P_N][200];
};

/* An unknown or unusable client: an event in the default tenant, repeats
 * from one address coalesced for a minute. */
static void unknown_client_event(struct tk_req *r, const char *client_id, const char *reason,
                                 const char *sentence)
{
    struct tk_app *app = r->app;
    char remote[64];
    tk_req_remote(r, remote, sizeof remote);
    json_t *d = json_pack("{s:s, s:s}", "reason", reason, "remote", remote);
    if (client_id) {
        char *c = tk_utf8_fix(client_id);
        if (strlen(c) > 200) c[200] = '\0';
        json_object_set_new(d, "client_id", json_string(c));
        free(c);
    }
    struct tk_event ev = {.tenant_id = app->default_tenant,
                          .trace_id = r->request_id,
                          .kind = "oauth",
                          .source = "oauth",
                          .action = "authorize_received",
                          .outcome = "denied",
                          .subject_type = "oauth_client",
                          .message = sentence,
                          .detail = d,
                          .latency_us = -1};
    char key[160];
    snprintf(key, sizeof key, "%s %s", reason, remote);
    struct tk_err e;
    if (!tk_event_coalesce(&ev, key, 60000) && tk_event_post(&ev, &e) != TK_OK)
        tk_log_write(TK_LOG_WARN, "oauth: could not record a refused authorization request: %s",
                     e.msg);
    json_decref(d);
    count(app, "authorize_received", false);
}

/* Every authorization request of a known client is a flow row and an
 * event, and anybody may send one: past oauth_authorize_rate flows a
 * minute from one address, a 429 page (never a redirect) and one
 * coalesced event instead of a row per request. false when replied. */
static void flow_limited(struct tk_req *r, const char *remote, int retry_s)
{
    struct tk_app *app = r->app;
    json_t *d = json_pack("{s:s, s:s}", "reason", "rate_limited", "remote", remote);
    char msg[160];
    snprintf(msg, sizeof msg,
             "authorization requests refused: more than %d flows a minute from one address "
             "(oauth_authorize_rate)",
             app->cfg->oauth_authorize_rate);
    struct tk_event ev = {.tenant_id = app->default_tenant,
                          .trace_id = r->request_id,
                          .kind = "oauth",
                          .source = "oauth",
                          .action = "authorize_received",
                          .outcome = "denied",
                          .message = msg,
                          .detail = d,
                          .latency_us = -1};
    char key[TK_ADDR_MAX + 32];
    snprintf(key, sizeof key, "rate_limited %s", remote);
    struct tk_err e;
    if (!tk_event_coalesce(&ev, key, 60000) && tk_event_post(&ev, &e) != TK_OK)
        tk_log_write(TK_LOG_WARN, "oauth: could not record a rate-limited authorization: %s",
                     e.msg);
    json_decref(d);
    count(app, "authorize_received", false);
    char retry[16];
    snprintf(retry, sizeof retry, "%d", retry_s > 0 ? retry_s : 1);
    tk_reply_header(r, "Retry-After", retry);
    error_page_status(r, 429, "temporarily_unavailable",
                      "Too many authorization requests from this address; wait a minute and "
                      "try again.");
}

/* Spend one flow of the address's budget; false (replied 429) past it. */
static bool flow_budget_ok(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!app->oauth_flows || !app->oauth_flows->flow_limit) return true;
    char remote[TK_ADDR_MAX];
    tk_req_remote(r, remote, sizeof remote);
    struct tk_ratelimit_verdict v;
    if (tk_ratelimit_fail(app->oauth_flows->flow_limit, remote, 0, tk_now_ms(), &v)) return true;
    flow_limited(r, remote, v.retry_s);
    return false;
}

/* Before any work (a client lookup, a metadata document fetch and its
 * client row): an address past its budget is answered 429 at once. */
static bool flow_budget_left(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!app->oauth_flows || !app->oauth_flows->flow_limit) return true;
    char remote[TK_ADDR_MAX];
    tk_req_remote(r, remote, sizeof remote);
    int retry = 0;
    if (!tk_ratelimit_blocked(app->oauth_flows->flow_limit, remote, tk_now_ms(), &retry))
        return true;
    flow_limited(r, remote, retry);
    return false;
}

/* Insert flow f, failed at authorize_received with rf, or active (rf
 * NULL), with its event, in one transaction. */
static tk_rc record_flow(struct tk_req *r, struct tk_oauth_flow *f,
                         const struct tk_oauth_refusal *rf, struct tk_err *e)
{
    if (!flow_budget_ok(r))
        return tk_err_set(e, TK_EUNAVAIL, "replied", "too many flows from this address (replied)");
    struct tk_db *db = tk_api_db(r);
    if (!db) return tk_err_set(e, TK_EUNAVAIL, "replied", "the store is unavailable (replied)");
    tk_rc rc = tk_db_begin(db, e);
    if (rc == TK_OK) rc = tk_oauth_flow_insert(db, f, rf, e);
    if (rc == TK_OK) {
        json_t *d = flow_detail(r, f);
        char msg[TK_OAUTH_REASON_MAX + 128];
        if (rf) {
            json_object_set_new(d, "stage", json_string("authorize_received"));
            json_object_set_new(d, "error", json_string(rf->error));
            json_object_set_new(d, "reason", json_string(rf->reason));
            if (rf->next_step[0]) json_object_set_new(d, "next_step", json_string(rf->next_step));
            snprintf(msg, sizeof msg, "authorization flow failed at authorize_received (%s): %s",
                     rf->error, rf->reason);
        } else {
            if (f->resource[0]) json_object_set_new(d, "resource", json_string(f->resource));
            json_object_set_new(d, "pkce", json_boolean(f->code_challenge[0] != '\0'));
            snprintf(msg, sizeof msg, "authorization request accepted from client '%.200s'",
                     f->client_id);
        }
        rc = event_in(r, db, f->tenant_id, f->id, "authorize_received", rf ? "denied" : "ok", msg,
                      d, e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    if (rc == TK_OK) count(r->app, "authorize_received", rf == NULL);
    return rc;
}

static void reply_store_error(struct tk_req *r, const struct tk_err *e)
{
    if (e->rc == TK_EUNAVAIL) tk_reply_header(r, "Retry-After", "1");
    tk_oauth_reply_error(r, e->rc == TK_EUNAVAIL ? 503 : 500,
                         e->rc == TK_EUNAVAIL ? "temporarily_unavailable" : "server_error",
                         "the request could not be recorded; try again");
}

/* Refuse before the redirect URI is known good: the flow row (when the
 * client is known) and the page. */
static void refuse_page(struct tk_req *r, struct tk_oauth_flow *f,
                        const struct tk_oauth_refusal *rf)
{
    struct tk_err e;
    if (f && record_flow(r, f, rf, &e) != TK_OK) {
        if (strcmp(e.code, "replied")) reply_store_error(r, &e);
        return;
    }
    error_page(r, rf->error, rf->reason);
}

/* Refuse after: the flow row and the redirect with the error. */
static void refuse_redirect(struct tk_req *r, struct tk_oauth_flow *f,
                            const struct tk_oauth_refusal *rf)
{
    struct tk_err e;
    if (record_flow(r, f, rf, &e) != TK_OK) {
        if (strcmp(e.code, "replied")) reply_store_error(r, &e);
        return;
    }
    redirect_error(r, f->redirect_uri, f->oauth_state, rf->error, rf->reason);
}

static void refusal(struct tk_oauth_refusal *rf, const char *error, const char *next,
                    const char *fmt, ...) TK_PRINTF(4, 5);
static void refusal(struct tk_oauth_refusal *rf, const char *error, const char *next,
                    const char *fmt, ...)
{
    memset(rf, 0, sizeof *rf);
    snprintf(rf->error, sizeof rf->error, "%s", error);
    snprintf(rf->next_step, sizeof rf->next_step, "%s", next ? next : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rf->reason, sizeof rf->reason, fmt, ap);
    va_end(ap);
}

static void read_params(struct tk_req *r, struct authz *a)
{
    for (int i = 0; i < P_N; i++) {
        a->count[i] = tk_req_query_count(r, params[i].name);
        /* %00 is never decoded (http.c): a value holds no NUL, so strlen
         * is its length */
        a->v[i] = tk_req_query(r, params[i].name);
        size_t n = a->v[i] ? strlen(a->v[i]) : 0;
        a->ok[i] = !a->v[i] || tk_oauth_param_ok(params[i].name, a->v[i], n, params[i].max,
                                                 a->why[i], sizeof a->why[i]);
        if (a->count[i] > 1) {
            a->ok[i] = false;
            snprintf(a->why[i], sizeof a->why[i], "%s is given more than once", params[i].name);
        }
    }
}

static void check_and_start(struct tk_req *r, struct tk_oauth_client *c, struct authz *a);

void tk_h_oauth_authorize(struct tk_req *r)
{
    struct authz a;
    memset(&a, 0, sizeof a);
    read_params(r, &a);
    if (!flow_budget_left(r)) return;
    struct tk_oauth_refusal rf;
    const char *cid = a.v[P_CLIENT_ID];
    if (!cid || !*cid) {
        unknown_client_event(r, NULL, "missing_client_id",
                             "an authorization request without client_id");
        refusal(&rf, "invalid_request", NULL, "client_id is missing");
        refuse_page(r, NULL, &rf);
        return;
    }
    if (!a.ok[P_CLIENT_ID]) {
        unknown_client_event(r, NULL, "invalid_client_id", a.why[P_CLIENT_ID]);
        refusal(&rf, "invalid_request", NULL, "%s", a.why[P_CLIENT_ID]);
        refuse_page(r, NULL, &rf);
        return;
    }
    struct tk_oauth_client c;
    memset(&c, 0, sizeof c);
    struct tk_err e;
    tk_rc rc = tk_api_oauth_client_resolve(r, cid, &c, &e);
    if (rc == TK_EUNAVAIL && !strcmp(e.code, "parked")) return; /* run again later */
    if (rc == TK_ENOTFOUND || rc == TK_EINVAL) {
        char msg[400];
        snprintf(msg, sizeof msg, "client_id '%.100s' is not a registered client%s%.200s", cid,
                 e.msg[0] ? ": " : "", e.msg);
        unknown_client_event(r, cid, "unknown_client", msg);
        refusal(&rf, "invalid_client", NULL, "%s", msg);
        refuse_page(r, NULL, &rf);
        tk_oauth_client_clear(&c);
        return;
    }
    if (rc != TK_OK) {
        tk_oauth_client_clear(&c);
        if (!r->db || rc != TK_EUNAVAIL) reply_store_error(r, &e);
        return;
    }
    check_and_start(r, &c, &a);
    tk_oauth_client_clear(&c);
}

static void check_and_start(struct tk_req *r, struct tk_oauth_client *c, struct authz *a)
{
    struct tk_app *app = r->app;
    struct tk_oauth_refusal rf;
    struct tk_oauth_flow f;
    memset(&f, 0, sizeof f);
    snprintf(f.tenant_id, sizeof f.tenant_id, "%s", c->tenant_id);
    snprintf(f.oauth_client_id, sizeof f.oauth_client_id, "%s", c->id);
    snprintf(f.client_id, sizeof f.client_id, "%s", c->client_id);
    f.created_at = tk_now_ms();
    f.expires_at = f.created_at + (int64_t)app->cfg->oauth_flow_ttl * 1000;

    /* the redirect URI first: until it is good, no redirect */
    const char *ru = a->v[P_REDIRECT_URI];
    if (!a->ok[P_REDIRECT_URI]) {
        refusal(&rf, "invalid_request", "make the client send its registered redirect_uri once",
                "%s", a->why[P_REDIRECT_URI]);
        refuse_page(r, &f, &rf);
        return;
    }
    if (!ru || !*ru) {
        if (json_array_size(c->redirect_uris) != 1) {
            refusal(&rf, "invalid_request", "make the client send redirect_uri",
                    "redirect_uri is missing, and the client registers %zu redirect URIs "
                    "(it may be left out only when there is exactly one)",
                    json_array_size(c->redirect_uris));
            refuse_page(r, &f, &rf);
            return;
        }
        ru = json_string_value(json_array_get(c->redirect_uris, 0));
    }
    snprintf(f.redirect_uri, sizeof f.redirect_uri, "%s", ru);
    if (!tk_oauth_redirect_match(c, ru)) {
        tk_oauth_redirect_explain(c, ru, &rf);
        refuse_page(r, &f, &rf);
        return;
    }
    /* state next: echoed on every later error, so it must be acceptable */
    if (!a->ok[P_STATE]) {
        refusal(&rf, "invalid_request", "make the client send one state of at most 512 bytes", "%s",
                a->why[P_STATE]);
        refuse_redirect(r, &f, &rf);
        return;
    }
    if (a->v[P_STATE]) snprintf(f.oauth_state, sizeof f.oauth_state, "%s", a->v[P_STATE]);
    for (int i = 0; i < P_N; i++) {
        if (a->ok[i]) continue;
        refusal(&rf, i == P_RESOURCE && a->count[i] > 1 ? "invalid_target" : "invalid_request",
                i == P_RESOURCE && a->count[i] > 1
                    ? "make the client send one resource: tokend issues a token for one audience"
                    : NULL,
                "%s", a->why[i]);
        refuse_redirect(r, &f, &rf);
        return;
    }
    const char *rt = a->v[P_RESPONSE_TYPE];
    if (!rt || !*rt) {
        refusal(&rf, "invalid_request", "make the client send response_type=code",
                "response_type is missing; use code");
        refuse_redirect(r, &f, &rf);
        return;
    }
    if (strcmp(rt, "code")) {
        refusal(&rf, "unsupported_response_type", "make the client send response_type=code",
                "response_type '%.60s' is not supported; use code (the authorization code "
                "flow with PKCE)",
                rt);
        refuse_redirect(r, &f, &rf);
        return;
    }
    if (strcmp(c->status, "active")) {
        refusal(&rf, "unauthorized_client", "activate the client (tokend oauth clients update)",
                "the client is %.16s", c->status);
        refuse_redirect(r, &f, &rf);
        return;
    }
    if (!tk_oauth_json_has(c->grant_types, "authorization_code")) {
        char *g = json_dumps(c->grant_types, JSON_COMPACT);
        refusal(&rf, "unauthorized_client", "add authorization_code to the client's grant_types",
                "the client may not use the authorization_code grant; its grant types: %.200s",
                g ? g : "[]");
        free(g);
        refuse_redirect(r, &f, &rf);
        return;
    }
    bool pkce_required = !c->confidential || app->cfg->oauth_pkce_confidential;
    if (tk_oauth_pkce_check(a->v[P_CHALLENGE], a->v[P_METHOD], pkce_required, &rf) != TK_OK) {
        refuse_redirect(r, &f, &rf);
        return;
    }
    if (a->v[P_CHALLENGE]) {
        snprintf(f.code_challenge, sizeof f.code_challenge, "%s", a->v[P_CHALLENGE]);
        snprintf(f.code_challenge_method, sizeof f.code_challenge_method, "S256");
    }
    json_t *granted = NULL;
    if (tk_oauth_scopes_resolve(c, a->v[P_SCOPE], &granted, &rf) != TK_OK) {
        refuse_redirect(r, &f, &rf);
        return;
    }
    f.scopes = granted;
    if (a->v[P_RESOURCE] && *a->v[P_RESOURCE]) {
        if (tk_oauth_resource_check(a->v[P_RESOURCE], &rf) != TK_OK) {
            refuse_redirect(r, &f, &rf);
            tk_oauth_flow_clear(&f);
            return;
        }
        snprintf(f.resource, sizeof f.resource, "%s", a->v[P_RESOURCE]);
    }
    if (a->v[P_NONCE]) snprintf(f.nonce, sizeof f.nonce, "%s", a->v[P_NONCE]);

    struct tk_err e;
    if (record_flow(r, &f, NULL, &e) != TK_OK) {
        if (strcmp(e.code, "replied")) reply_store_error(r, &e);
        tk_oauth_flow_clear(&f);
        return;
    }
    snprintf(f.status, sizeof f.status, "active");
    /* signed in on this browser, and consented to these scopes before:
     * login and consent are recorded as done (detail.remembered) */
    char user_id[TK_UUID_LEN + 1] = "";
    bool covered = false;
    if (tk_api_user_session(r, f.tenant_id, user_id) && user_id[0]) {
        struct tk_db *db = tk_api_db(r);
        if (!db) {
            tk_oauth_flow_clear(&f);
            return;
        }
        if (tk_oauth_consent_covers(db, f.tenant_id, user_id, f.oauth_client_id, f.scopes, &covered,
                                    &e) != TK_OK)
            covered = false;
    }
    if (covered) {
        struct tk_db *db = r->db;
        json_t *d = flow_detail(r, &f);
        json_object_set_new(d, "remembered", json_true());
        struct stage_args s1 = {.r = r,
                                .tenant_id = f.tenant_id,
                                .flow_id = f.id,
                                .stage = "login",
                                .user_id = user_id,
                                .detail = d};
        struct stage_args s2 = s1;
        s2.stage = "consent";
        tk_rc rc = tk_db_begin(db, &e);
        if (rc == TK_OK) rc = stage_fn(db, &s1, &e);
        if (rc == TK_OK) rc = stage_fn(db, &s2, &e);
        if (rc == TK_OK) rc = tk_db_commit(db, &e);
        json_decref(d);
        if (rc != TK_OK) {
            if (tk_db_in_tx(db)) tk_db_rollback(db);
            reply_store_error(r, &e);
            tk_oauth_flow_clear(&f);
            return;
        }
        count(app, "login", true);
        count(app, "consent", true);
        snprintf(f.user_id, sizeof f.user_id, "%s", user_id);
        snprintf(f.stage, sizeof f.stage, "consent");
        tk_api_oauth_authorized(r, &f);
        tk_oauth_flow_clear(&f);
        return;
    }
    char loc[700];
    snprintf(loc, sizeof loc, "%s%s?flow=%s", tk_api_public_url(app), TK_OAUTH_LOGIN_PATH, f.id);
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    tk_reply_redirect(r, 303, loc);
    tk_oauth_flow_clear(&f);
}

/* ---- /v1/oauth/flows ---- */

static const char *const statuses[] = {"active", "stuck", "failed", "completed", NULL};

void tk_h_oauth_flows_list(struct tk_req *r)
{
    struct tk_err e;
    if (!tk_req_query_unique(r, "status") || !tk_req_query_unique(r, "client_id")) return;
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    const char *status = tk_req_query(r, "status");
    if (status) {
        bool ok = false;
        for (int i = 0; statuses[i]; i++)
            ok |= !strcmp(status, statuses[i]);
        if (!ok) {
            tk_err_field(&e, TK_EINVAL, "invalid_parameter", "status",
                         "status must be one of active, stuck, failed, completed");
            tk_reply_error(r, &e, NULL);
            return;
        }
    }
    const char *client_id = tk_req_query(r, "client_id");
    size_t n = client_id ? strlen(client_id) : 0;
    char why[200];
    if (client_id && !tk_oauth_param_ok("client_id", client_id, n, TK_OAUTH_CLIENT_ID_MAX - 1, why,
                                        sizeof why)) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "client_id", "%s", why);
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *list;
    char next[TK_UUID_LEN + 1];
    if (tk_oauth_flow_list(db, tk_api_principal(r)->tenant_id, client_id, status, cursor,
                           (int)limit, tk_now_ms(), &list, next, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "flows", list, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

static json_t *show(struct tk_req *r)
{
    struct tk_err e;
    const char *id = tk_req_param(r, "id");
    if (!id || !tk_uuid_valid(id)) {
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no flow with id %.40s", id ? id : "");
        tk_reply_error(r, &e, NULL);
        return NULL;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return NULL;
    json_t *o;
    if (tk_oauth_flow_show(db, tk_api_principal(r)->tenant_id, id, tk_now_ms(), &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return NULL;
    }
    return o;
}

void tk_h_oauth_flows_get(struct tk_req *r)
{
    json_t *o = show(r);
    if (o) tk_reply_json(r, 200, o);
}

void tk_h_oauth_flows_diagnosis(struct tk_req *r)
{
    json_t *o = show(r);
    if (!o) return;
    json_t *d = tk_oauth_flow_diagnose(o, tk_now_ms());
    json_object_set_new(d, "flow", o);
    tk_reply_json(r, 200, d);
}
