/* auth.c: the authenticate hook for /v1 routes, and the per-request store
 * connection. A refused operator token leaves an event with its reason. */
#include "api.h"
#include "../console/console.h"

#include "../clients/clients.h"
#include "../common/log.h"
#include "../events/events.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>

bool tk_api_started(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (atomic_load(&app->started)) return true;
    struct tk_err e;
    tk_err_set(&e, TK_EUNAVAIL, "not_ready", "tokend is starting (opening the store and keyring)");
    json_t *x = json_pack("{s:s}", "reason", "starting");
    tk_reply_header(r, "Retry-After", "1");
    tk_reply_error(r, &e, x);
    json_decref(x);
    return false;
}

void tk_api_reply_error(struct tk_req *r, const struct tk_err *e, json_t *extra)
{
    /* store_busy, store_unreachable: worth another try in a moment */
    if (e->rc == TK_EUNAVAIL) tk_reply_header(r, "Retry-After", "1");
    tk_reply_error(r, e, extra);
}

/* True if the store probe says the store hangs (a ping unanswered for
 * seconds) or cannot be reached: then a request does not try it, so that it
 * does not hold one of the few HTTP workers (which /health, /ready and
 * /metrics share) for the store's whole deadline. */
static bool store_down(struct tk_app *app, struct tk_err *e)
{
    char why[200];
    const char *state = tk_api_store_state(app, why, sizeof why);
    if (!state || (strcmp(state, "store_stalled") != 0 && strcmp(state, "store_unreachable") != 0))
        return false;
    tk_err_set(e, TK_EUNAVAIL, state, "%s; not trying it for this request (see /ready)", why);
    return true;
}

struct tk_db *tk_api_db(struct tk_req *r)
{
    if (r->db) return r->db;
    if (!tk_api_started(r)) return NULL;
    struct tk_app *app = r->app;
    struct tk_err e;
    if (store_down(app, &e)) {
        tk_api_reply_error(r, &e, NULL);
        return NULL;
    }
    r->db = tk_store_get(app->store, &e);
    if (!r->db) tk_api_reply_error(r, &e, NULL); /* store_busy or unreachable */
    return r->db;
}

void tk_api_finish(struct tk_req *r)
{
    if (r->db) tk_store_put(r->db);
    r->db = NULL;
}

const struct tk_principal *tk_api_principal(const struct tk_req *r)
{
    return r->principal;
}

/* Failure reasons, as bits of the rate limiter's "recorded" set. */
enum { R_MISSING, R_MALFORMED, R_UNKNOWN, R_REVOKED, R_EXPIRED, R_INIT, R_OTHER };

static unsigned reason_bit(const char *code)
{
    static const char *const names[] = {"missing", "malformed", "unknown", "revoked", "expired"};
    for (unsigned i = 0; i < TK_NELEM(names); i++)
        if (!strcmp(code, names[i])) return i;
    return R_OTHER;
}

static void reply_limited(struct tk_req *r, int retry_s, const char *what)
{
    struct tk_app *app = r->app;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry_s);
    tk_reply_header(r, "Retry-After", ra);
    struct tk_err e;
    tk_err_set(&e, TK_ERATE, "rate_limited",
               "too many %s from this address (more than %d in %d s); try again in %d s", what,
               app->cfg->auth_fail_limit, app->cfg->auth_fail_window, retry_s);
    json_t *x = json_pack("{s:i}", "retry_after", retry_s);
    tk_reply_error(r, &e, x);
    json_decref(x);
}

bool tk_api_rate_count(struct tk_req *r)
{
    struct tk_app *app = r->app;
    char addr[TK_ADDR_MAX];
    tk_req_remote(r, addr, sizeof addr);
    struct tk_ratelimit_verdict v;
    if (tk_ratelimit_fail(app->auth_limit, addr, R_INIT, tk_now_ms(), &v)) return true;
    reply_limited(r, v.retry_s, "calls of this route");
    return false;
}

/* An authentication failure that could not be recorded (the event queue
 * full: a storm from many addresses against a slow store) is logged once
 * a second at most, with how many were not logged since: one line per
 * refused request would flood the log as fast as the attacker sends. */
static void warn_unrecorded(const struct tk_err *e)
{
    static atomic_llong next_ms, skipped;
    int64_t now = tk_mono_ms();
    long long due = atomic_load(&next_ms);
    if (now < due || !atomic_compare_exchange_strong(&next_ms, &due, now + 1000)) {
        atomic_fetch_add(&skipped, 1);
        return;
    }
    long long n = atomic_exchange(&skipped, 0);
    if (n)
        tk_warn("events: could not record an authentication failure: %s (and %lld more since "
                "the last such line; tokend_events_dropped_total counts them)",
                e->msg, n);
    else
        tk_warn("events: could not record an authentication failure: %s", e->msg);
}

/* Record an authentication failure in the token's tenant when the token
 * is known, else the default tenant. With coalesce, through the event
 * log's coalescing: the first of a reason from an address in a window is
 * written, repeats are counted in memory and written later as one event
 * with detail.count. */
static void auth_event(struct tk_req *r, const struct tk_err *e, const struct tk_principal *p,
                       const char *addr, int window_s, bool coalesce)
{
    struct tk_app *app = r->app;
    json_t *detail = json_pack("{s:s, s:s, s:s, s:s}", "reason", e->code, "method", r->method,
                               "route", r->route->pattern, "remote", addr);
    /* a client token's refusal is a validation failure (issue 14): kind
     * validate, the action the route does */
    bool client = p->kind == TK_PRINCIPAL_CLIENT_TOKEN;
    const char *action = "authenticate";
    if (client) {
        const struct tk_api_client_auth *v = (const struct tk_api_client_auth *)p;
        if (v->preview[0]) json_object_set_new(detail, "preview", json_string(v->preview));
        if (v->p.client_id[0]) json_object_set_new(detail, "client_id", json_string(v->p.client_id));
        if (v->warnings) json_object_set_new(detail, "warnings", tk_client_warnings_json(v->warnings));
        action = strstr(r->route->pattern, "/heartbeat")  ? "heartbeat"
                 : strstr(r->route->pattern, "/register") ? "register"
                                                          : "validate";
    }
    struct tk_event ev = {
        .tenant_id = p->tenant_id[0] ? p->tenant_id : app->default_tenant,
        .trace_id = r->request_id,
        .kind = client ? "validate" : "operator",
        .source = "api",
        .action = action,
        .outcome = "denied",
        .subject_type = client ? "client_token" : "operator_token",
        .subject_id = p->id[0] ? p->id : NULL,
        .message = e->msg,
        .detail = detail,
        .latency_us = -1,
    };
    char key[TK_ADDR_MAX + 200];
    if (client) window_s = 1; /* a storm of one failure: one event a second with its count */
    if (client)
        snprintf(key, sizeof key, "client %s %s %s %s %s", e->code, r->route->pattern,
                 p->tenant_id, p->id, addr);
    else
        snprintf(key, sizeof key, "%s %s", e->code, addr);
    /* A repeat is only counted, in memory: no store connection for it. */
    if (coalesce && tk_event_coalesce(&ev, key, (int64_t)window_s * 1000)) {
        json_decref(detail);
        return;
    }
    /* Posted: a refusal never waits for the store (the 401 goes out all the
     * same, and an attacker's storm costs queue slots, not connections). */
    struct tk_err ee;
    if (tk_event_post(&ev, &ee) != TK_OK) warn_unrecorded(&ee);
    json_decref(detail);
}

void tk_api_client_refused(struct tk_req *r, const struct tk_api_client_auth *v,
                           const char *tenant_id)
{
    struct tk_api_client_auth c = *v;
    c.p.kind = TK_PRINCIPAL_CLIENT_TOKEN;
    if (tenant_id) snprintf(c.p.tenant_id, sizeof c.p.tenant_id, "%s", tenant_id);
    char addr[TK_ADDR_MAX];
    tk_req_remote(r, addr, sizeof addr);
    auth_event(r, &c.e, &c.p, addr, 1, true);
}

void tk_api_client_warned(struct tk_req *r, const struct tk_api_client_auth *v)
{
    struct tk_app *app = r->app;
    char addr[TK_ADDR_MAX];
    tk_req_remote(r, addr, sizeof addr);
    json_t *w = tk_client_warnings_json(v->warnings);
    char msg[200] = "validated with warnings:";
    for (size_t i = 0; i < json_array_size(w); i++) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof msg - n, "%s %s", i ? "," : "",
                 json_string_value(json_array_get(w, i)));
    }
    json_t *detail = json_pack("{s:o, s:s, s:s, s:s, s:s, s:s}", "warnings", w, "preview",
                               v->preview, "client_id", v->p.client_id, "route",
                               r->route->pattern, "method", r->method, "remote", addr);
    struct tk_event ev = {
        .tenant_id = v->p.tenant_id[0] ? v->p.tenant_id : app->default_tenant,
        .trace_id = r->request_id,
        .kind = "validate",
        .source = "api",
        .action = "validate",
        .outcome = "ok",
        .subject_type = "client_token",
        .subject_id = v->p.id,
        .message = msg,
        .detail = detail,
        .latency_us = -1,
    };
    char key[TK_UUID_LEN + 32];
    snprintf(key, sizeof key, "warned %s %u", v->p.id, v->warnings);
    /* the first of an hour is written, the rest counted in memory */
    if (!tk_event_coalesce(&ev, key, 3600 * 1000LL)) {
        struct tk_err e;
        if (tk_event_post(&ev, &e) != TK_OK)
            tk_warn("events: could not record a validation with warnings: %s", e.msg);
    }
    json_decref(detail);
}

/* tokend_validations_total{outcome, reason}: reason "none" when valid. */
static const char *const v_outcomes[] = {"valid", "invalid"};
static const char *const v_reasons[] = {"none",    "missing", "malformed",       "unknown",
                                        "revoked", "expired", "client_inactive", "client_suspended"};

void tk_api_client_count(struct tk_app *app, const struct tk_api_client_auth *v)
{
    if (!app->m_validations) return;
    size_t reason = 0;
    if (!v->ok)
        for (size_t i = 1; i < TK_NELEM(v_reasons); i++)
            if (!strcmp(v->e.code, v_reasons[i])) reason = i;
    size_t pos[2] = {v->ok ? 0 : 1, reason};
    size_t idx = tk_metric_index(app->m_validations, pos);
    if (idx != TK_METRIC_NOIDX) tk_metric_inc(app->m_validations, idx);
}

static double m_agents(void *arg, size_t idx)
{
    struct tk_app *app = arg;
    long long v = idx == 0 ? atomic_load(&app->agents_online) : atomic_load(&app->agents_stale);
    return v < 0 ? NAN : (double)v;
}

tk_rc tk_api_clients_metrics(struct tk_app *app, struct tk_err *e)
{
    static const struct tk_dim dims[] = {
        {"outcome", v_outcomes, TK_NELEM(v_outcomes), NULL, NULL},
        {"reason", v_reasons, TK_NELEM(v_reasons), NULL, NULL},
    };
    app->m_validations = tk_metric_counter(
        app->metrics, "tokend_validations_total",
        "Client token validations (GET and POST /v1/tokens/validate, routes of agents) by "
        "outcome and reason (none when valid).",
        dims, 2, TK_METRIC_SPARSE, e);
    static const char *const hb[] = {"ok", "denied", "not_found", "invalid"};
    static const struct tk_dim hb_dim = {"outcome", hb, TK_NELEM(hb), NULL, NULL};
    static const char *const st[] = {"online", "stale"};
    static const struct tk_dim st_dim = {"status", st, TK_NELEM(st), NULL, NULL};
    atomic_store(&app->agents_online, -1);
    atomic_store(&app->agents_stale, -1);
    if (app->m_validations)
        app->m_heartbeats = tk_metric_counter(
            app->metrics, "tokend_heartbeats_total",
            "Agent heartbeats by outcome: ok, denied (the client token refused), not_found "
            "(another client's or an unknown agent), invalid (the body).",
            &hb_dim, 1, 0, e);
    static const char *const hf[] = {"batch", "direct"};
    static const struct tk_dim hf_dim = {"kind", hf, TK_NELEM(hf), NULL, NULL};
    if (app->m_heartbeats)
        app->m_hb_flushes = tk_metric_counter(
            app->metrics, "tokend_heartbeat_flushes_total",
            "Store writes of agent heartbeats: batch (one transaction of the heartbeats noted "
            "in memory, about every second) or direct (a heartbeat written at once: first seen, "
            "maybe stale, or the table full).",
            &hf_dim, 1, 0, e);
    bool ok = app->m_hb_flushes &&
              tk_metric_gauge_fn(app->metrics, "tokend_agents",
                                 "Agents in the store by status (online, stale), as of the "
                                 "stale sweep's last count (every second).",
                                 &st_dim, 1, m_agents, app, e);
    return ok ? TK_OK : TK_EINTERNAL;
}

void tk_api_heartbeat_count(struct tk_app *app, int outcome)
{
    if (app->m_heartbeats) tk_metric_inc(app->m_heartbeats, (size_t)outcome);
}

const char *tk_api_role_name(unsigned role)
{
    switch (role) {
    case TK_ROLE_ANY:
        return "any";
    case TK_ROLE_WRITE:
        return "write";
    case TK_ROLE_ADMIN:
        return "admin";
    case TK_ROLE_NODE_ADMIN:
        return "node_admin";
    default:
        return "none";
    }
}

enum tk_principal_kind tk_api_presented_kind(const char *h)
{
    if (!h) return TK_PRINCIPAL_NONE;
    if (!strncasecmp(h, "Basic ", 6)) return TK_PRINCIPAL_OAUTH_CLIENT;
    if (strncasecmp(h, "Bearer ", 7)) return TK_PRINCIPAL_NONE;
    h += 7;
    while (*h == ' ')
        h++;
    if (!strncmp(h, "tko_", 4)) return TK_PRINCIPAL_OPERATOR_TOKEN;
    if (!strncmp(h, "tkc_", 4)) return TK_PRINCIPAL_CLIENT_TOKEN;
    return TK_PRINCIPAL_NONE;
}

/* "operator tokens (tko_)" or "operator tokens (tko_) or client tokens (tkc_)". */
static void kinds_sentence(unsigned kinds, char *out, size_t n)
{
    static const char *const plural[TK_PRINCIPAL_KINDS] = {
        [TK_PRINCIPAL_OPERATOR_TOKEN] = "operator tokens (Bearer tko_)",
        [TK_PRINCIPAL_CLIENT_TOKEN] = "client tokens (Bearer tkc_)",
        [TK_PRINCIPAL_SESSION] = "sessions",
        [TK_PRINCIPAL_OAUTH_CLIENT] = "OAuth clients",
    };
    size_t w = 0;
    out[0] = '\0';
    for (int k = 1; k < TK_PRINCIPAL_KINDS; k++) {
        if (!(kinds & TK_P_KIND(k)) || w >= n) continue;
        int m = snprintf(out + w, n - w, "%s%s", w ? " or " : "", plural[k]);
        if (m > 0) w += (size_t)m;
    }
    if (!out[0]) snprintf(out, n, "no principal");
}

static bool role_in(const char *role, unsigned need)
{
    switch (need) {
    case TK_ROLE_ANY:
        return tk_role_valid(role);
    case TK_ROLE_WRITE:
        return !strcmp(role, "admin") || !strcmp(role, "operator");
    case TK_ROLE_ADMIN:
    case TK_ROLE_NODE_ADMIN:
        return !strcmp(role, "admin");
    default:
        return false;
    }
}

tk_rc tk_api_route_allows(const struct tk_route *route, const struct tk_principal *p,
                          const char *default_tenant, struct tk_err *e)
{
    if (!route->kinds || route->role == TK_ROLE_UNSET || route->role > TK_ROLE_NODE_ADMIN)
        return tk_err_set(e, TK_EINTERNAL, "internal",
                          "the route %s %s declares no principal kinds or no role", route->method,
                          route->pattern);
    char accepted[160];
    kinds_sentence(route->kinds, accepted, sizeof accepted);
    if (p->kind <= TK_PRINCIPAL_NONE || p->kind >= TK_PRINCIPAL_KINDS)
        return tk_err_set(e, TK_EAUTH, "missing", "this route needs %s", accepted);
    if (!(route->kinds & TK_P_KIND(p->kind)))
        return tk_err_set(e, TK_EAUTH, "kind_not_accepted",
                          "this route accepts %s; the request presented a %s", accepted,
                          tk_principal_kind_name(p->kind));
    static const char *const needs[] = {
        [TK_ROLE_ANY] = "the role admin, operator or viewer",
        [TK_ROLE_WRITE] = "the role admin or operator",
        [TK_ROLE_ADMIN] = "the role admin",
        [TK_ROLE_NODE_ADMIN] = "the role admin in the default tenant",
    };
    bool client_any = p->kind == TK_PRINCIPAL_CLIENT_TOKEN && route->role == TK_ROLE_ANY &&
                      !strcmp(p->role, "client");
    if (!client_any && !role_in(p->role, route->role))
        return tk_err_set(e, TK_EFORBIDDEN, "forbidden", "this needs %s; the %s '%s' has role %s",
                          needs[route->role], tk_principal_kind_name(p->kind), p->name, p->role);
    if (route->role == TK_ROLE_NODE_ADMIN && strcmp(p->tenant_id, default_tenant) != 0)
        return tk_err_set(e, TK_EFORBIDDEN, "forbidden",
                          "this acts on the whole node, for every tenant: it needs an admin of "
                          "the default tenant; the %s '%s' is an admin of another tenant",
                          tk_principal_kind_name(p->kind), p->name);
    return TK_OK;
}

/* The presented kind has no authentication yet (client tokens, sessions,
 * OAuth clients come with their issues), or the route does not accept it:
 * refused from the header's form alone, without the store. */
static tk_rc kind_refusal(const struct tk_route *route, enum tk_principal_kind k, struct tk_err *e)
{
    if (k == TK_PRINCIPAL_NONE || k == TK_PRINCIPAL_OPERATOR_TOKEN ||
        k == TK_PRINCIPAL_CLIENT_TOKEN)
        return TK_OK;
    char accepted[160];
    kinds_sentence(route->kinds, accepted, sizeof accepted);
    return tk_err_set(e, TK_EAUTH, "unsupported",
                      "%ss are not supported by this version of tokend; this route accepts %s",
                      tk_principal_kind_name(k), accepted);
}

static tk_rc refuse(struct tk_req *r, struct tk_principal *p, struct tk_err e);

tk_rc tk_api_refuse(struct tk_req *r, struct tk_principal *p, struct tk_err e)
{
    return refuse(r, p, e);
}

/* A route that accepts client tokens, presented one (or nothing, or a
 * Bearer value that is no other kind): validated leniently (whitespace and
 * quotes around it are warnings), through the cache. The verdict is the
 * principal; GET /v1/tokens/validate answers a refusal itself (200). */
static tk_rc client_authenticate(struct tk_req *r, const char *authz)
{
    struct tk_app *app = r->app;
    struct tk_api_client_auth *v = tk_pool_alloc(r->pool, sizeof *v);
    tk_rc rc = TK_OK;
    if (authz && authz[0] && strncasecmp(authz, "Bearer ", 7) != 0) {
        /* "Bearer" alone, another scheme, garbage: decided from the form */
        memset(v, 0, sizeof *v);
        if (!strcasecmp(authz, "Bearer"))
            tk_err_set(&v->e, TK_EAUTH, "missing",
                       "no client token was presented: send Authorization: Bearer tkc_...");
        else
            tk_err_set(&v->e, TK_EAUTH, "malformed",
                       "the Authorization header must be 'Bearer <client token>'");
    } else {
        const char *text = authz && authz[0] ? authz + 7 : "";
        rc = tk_api_client_verify(r, text, strlen(text), v);
        if (rc != TK_OK) return rc; /* replied */
    }
    bool verdict_route = r->route->handler == tk_h_tokens_validate_self;
    tk_api_client_count(app, v);
    if (v->ok) {
        /* in memory; the last-used worker writes last_used_at (serve.c) */
        tk_optoken_use(app->client_uses, v->p.id, tk_now_ms());
        if (v->warnings) tk_api_client_warned(r, v);
        r->principal = v;
        struct tk_err e;
        rc = tk_api_route_allows(r->route, &v->p, app->default_tenant, &e);
        if (rc != TK_OK) tk_reply_error(r, &e, NULL);
        return rc;
    }
    if (verdict_route) {
        tk_api_client_refused(r, v, NULL);
        r->principal = v;
        return TK_OK;
    }
    if (strstr(r->route->pattern, "/heartbeat")) tk_api_heartbeat_count(app, TK_HB_DENIED);
    v->p.kind = TK_PRINCIPAL_CLIENT_TOKEN; /* for the event: a client token's refusal */
    return refuse(r, &v->p, v->e);
}

tk_rc tk_api_authenticate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!tk_api_started(r)) return TK_EUNAVAIL;
    /* the console's pages: a session cookie, refusals as pages */
    if (r->route->kinds & TK_P_SESSION) return tk_console_authenticate(r);
    struct tk_principal *p = tk_pool_alloc(r->pool, sizeof *p);
    memset(p, 0, sizeof *p);
    struct tk_err e;
    tk_err_clear(&e);
    const char *tok = NULL;
    size_t len = 0;
    /* The form of the header is decided without the store: a client that
     * sends nothing or garbage never takes a store connection. */
    const char *authz = tk_req_header(r, "Authorization");
    enum tk_principal_kind kind = tk_api_presented_kind(authz);
    /* A route of client tokens takes anything but another known kind as a
     * client token (lenient: what agents get wrong is reported, not guessed) */
    if ((r->route->kinds & TK_P_CLIENT) && !(r->route->kinds & TK_P_OPERATOR) &&
        (kind == TK_PRINCIPAL_CLIENT_TOKEN || kind == TK_PRINCIPAL_NONE))
        return client_authenticate(r, authz);
    tk_rc rc = kind_refusal(r->route, kind, &e);
    if (rc == TK_OK && kind != TK_PRINCIPAL_NONE && !(r->route->kinds & TK_P_KIND(kind))) {
        struct tk_principal shown = {.kind = kind};
        rc = tk_api_route_allows(r->route, &shown, app->default_tenant, &e);
    }
    if (rc == TK_OK) rc = tk_optoken_parse(authz, &tok, &len, &e);
    if (rc == TK_OK) {
        /* the cache first: a hit takes no store connection (authpoll.c) */
        rc = tk_api_issued_lookup(r, TK_PRINCIPAL_OPERATOR_TOKEN, tok, len, p, &e);
        if (rc != TK_OK && rc != TK_EAUTH) return rc; /* replied */
    }
    if (rc == TK_OK) {
        /* in memory; the last-used worker writes last_used_at (serve.c) */
        tk_optoken_use(app->uses, p->id, tk_now_ms());
        r->principal = p;
        /* the route's declarations: kinds and role (403 forbidden) */
        rc = tk_api_route_allows(r->route, p, app->default_tenant, &e);
        if (rc != TK_OK) tk_reply_error(r, &e, NULL);
        return rc;
    }
    if (rc != TK_EAUTH) {
        tk_api_reply_error(r, &e, NULL);
        return rc;
    }
    return refuse(r, p, e);
}

/* A refused credential (e.rc TK_EAUTH): counted against the address's
 * failure budget, recorded (coalesced), answered 401 with the reason and
 * WWW-Authenticate, or 429 past the budget. */
static tk_rc refuse(struct tk_req *r, struct tk_principal *p, struct tk_err e)
{
    struct tk_app *app = r->app;
    char addr[TK_ADDR_MAX];
    tk_req_remote(r, addr, sizeof addr);
    struct tk_ratelimit_verdict v;
    if (!tk_ratelimit_fail(app->auth_limit, addr, reason_bit(e.code), tk_now_ms(), &v)) {
        if (v.record) {
            struct tk_err le;
            tk_err_set(&le, TK_ERATE, "rate_limited",
                       "more than %d failed authentications from %s in %d s: further failures "
                       "from there answer 429 for the rest of the window, unrecorded",
                       app->cfg->auth_fail_limit, addr, app->cfg->auth_fail_window);
            auth_event(r, &le, p, addr, tk_ratelimit_window_s(app->auth_limit), false);
        }
        reply_limited(r, v.retry_s, "failed authentications");
        return TK_ERATE;
    }
    /* Within the budget: every failure goes to the event log's coalescing
     * (the first of a window is written, repeats are counted without a
     * store connection). Beyond it, nothing. */
    auth_event(r, &e, p, addr, tk_ratelimit_window_s(app->auth_limit), true);
    char www[160];
    if (!strcmp(e.code, "missing"))
        snprintf(www, sizeof www, "Bearer realm=\"tokend\"");
    else
        snprintf(www, sizeof www, "Bearer realm=\"tokend\", error=\"invalid_token\"");
    tk_reply_header(r, "WWW-Authenticate", www);
    json_t *extra = json_pack("{s:s}", "reason", e.code);
    struct tk_err out = e;
    snprintf(out.code, sizeof out.code, "unauthenticated");
    tk_reply_error(r, &out, extra);
    json_decref(extra);
    return TK_EAUTH;
}

static tk_rc api_event(struct tk_req *r, bool in_tx, const char *kind, const char *action,
                       const char *outcome, const char *subject_type, const char *subject_id,
                       const char *message, json_t *detail, struct tk_err *e)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_db *db = r->db;
    if (!p || !db)
        return tk_err_set(e, TK_EINTERNAL, "internal", "an event of %s %s had no principal",
                          kind, action);
    json_t *d = detail ? json_incref(detail) : json_object();
    json_object_set_new(d, "operator_token", json_string(p->id));
    struct tk_event ev = {.tenant_id = p->tenant_id, .trace_id = r->request_id, .kind = kind,
                          .source = "api", .action = action, .outcome = outcome,
                          .subject_type = subject_type, .subject_id = subject_id,
                          .message = message, .detail = d, .latency_us = -1};
    /* in the request's transaction, or posted (best effort, log-like) */
    tk_rc rc = in_tx ? tk_event_emit_in(db, &ev, e) : tk_event_post(&ev, e);
    json_decref(d);
    return rc;
}

void tk_api_event(struct tk_req *r, const char *kind, const char *action, const char *outcome,
                  const char *subject_type, const char *subject_id, const char *message,
                  json_t *detail)
{
    struct tk_err e;
    if (api_event(r, false, kind, action, outcome, subject_type, subject_id, message, detail,
                  &e) != TK_OK)
        tk_warn("events: could not record %s %s: %s", kind, action, e.msg);
}

tk_rc tk_api_event_in(struct tk_req *r, const char *kind, const char *action,
                      const char *outcome, const char *subject_type, const char *subject_id,
                      const char *message, json_t *detail, struct tk_err *e)
{
    return api_event(r, true, kind, action, outcome, subject_type, subject_id, message, detail,
                     e);
}

bool tk_api_page(struct tk_req *r, int64_t *limit, const char **cursor)
{
    struct tk_err e;
    *limit = 50;
    *cursor = NULL;
    if (!tk_req_query_unique(r, "limit") || !tk_req_query_unique(r, "cursor")) return false;
    const char *lv = tk_req_query(r, "limit");
    if (lv && tk_parse_int(lv, 1, TK_API_MAX_LIMIT, limit) != TK_OK) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "limit",
                     "limit must be an integer from 1 to %d", TK_API_MAX_LIMIT);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    const char *c = tk_req_query(r, "cursor");
    if (c && !tk_uuid_valid(c)) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "cursor",
                     "cursor must be the next_cursor of a previous page");
        tk_reply_error(r, &e, NULL);
        return false;
    }
    *cursor = c;
    return true;
}

bool tk_api_only_members(struct tk_req *r, json_t *body, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++) ok |= !strcmp(*a, key);
        if (!ok) {
            char list[160] = "";
            size_t n = 0;
            for (const char *const *a = allowed; *a && n < sizeof list; a++) {
                int w = snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *a);
                if (w > 0) n += (size_t)w;
            }
            struct tk_err e;
            tk_err_field(&e, TK_EINVAL, "unknown_field", key,
                         "unknown field '%.64s'; allowed: %s", key, list);
            tk_reply_error(r, &e, NULL);
            return false;
        }
    }
    return true;
}

bool tk_api_int_member(struct tk_req *r, json_t *body, const char *name, int min, int max,
                       int def, int *out)
{
    json_t *v = json_object_get(body, name);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_field", name, "%s must be an integer from %d to %d",
                     name, min, max);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    *out = (int)json_integer_value(v);
    return true;
}
