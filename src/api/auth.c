/* auth.c: the authenticate hook for /v1 routes, and the per-request store
 * connection. A refused operator token leaves an event with its reason. */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"

#include <stdio.h>
#include <string.h>

struct tk_db *tk_api_db(struct tk_req *r)
{
    if (r->db) return r->db;
    struct tk_app *app = r->app;
    struct tk_err e;
    r->db = tk_store_get(app->store, &e);
    if (!r->db) tk_reply_error(r, &e, NULL);
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

tk_rc tk_api_authenticate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_db *db = tk_api_db(r);
    if (!db) return TK_EUNAVAIL;
    struct tk_principal *p = tk_pool_alloc(r->pool, sizeof *p);
    struct tk_err e;
    tk_rc rc = tk_optoken_authenticate(db, app->keyring, tk_req_header(r, "Authorization"), p, &e);
    if (rc == TK_OK) {
        r->principal = p;
        return TK_OK;
    }
    if (rc != TK_EAUTH) {
        tk_reply_error(r, &e, NULL);
        return rc;
    }
    json_t *detail = json_pack("{s:s, s:s, s:s}", "reason", e.code, "method", r->method, "route",
                               r->route->pattern);
    struct tk_event ev = {
        .tenant_id = app->default_tenant,
        .trace_id = r->request_id,
        .kind = "operator",
        .source = "api",
        .action = "authenticate",
        .outcome = "denied",
        .subject_type = "operator_token",
        .message = e.msg,
        .detail = detail,
        .latency_us = -1,
    };
    struct tk_err ee;
    if (tk_event_emit(db, &ev, &ee) != TK_OK)
        tk_warn("events: could not record an authentication failure: %s", ee.msg);
    json_decref(detail);
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

bool tk_api_require_role(struct tk_req *r, const char *allowed)
{
    const struct tk_principal *p = tk_api_principal(r);
    size_t n = strlen(p->role);
    for (const char *a = allowed; *a;) {
        const char *comma = strchr(a, ',');
        size_t len = comma ? (size_t)(comma - a) : strlen(a);
        if (len == n && !memcmp(a, p->role, n)) return true;
        if (!comma) break;
        a = comma + 1;
    }
    struct tk_err e;
    tk_err_set(&e, TK_EFORBIDDEN, "forbidden", "this needs the role %s; the token '%s' has role %s",
               allowed, p->name, p->role);
    tk_reply_error(r, &e, NULL);
    return false;
}

void tk_api_event(struct tk_req *r, const char *kind, const char *action, const char *outcome,
                  const char *subject_type, const char *subject_id, const char *message,
                  json_t *detail)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_db *db = r->db;
    if (!p || !db) return;
    json_t *d = detail ? json_incref(detail) : json_object();
    json_object_set_new(d, "operator_token", json_string(p->token_id));
    struct tk_event ev = {.tenant_id = p->tenant_id, .trace_id = r->request_id, .kind = kind,
                          .source = "api", .action = action, .outcome = outcome,
                          .subject_type = subject_type, .subject_id = subject_id,
                          .message = message, .detail = d, .latency_us = -1};
    struct tk_err e;
    if (tk_event_emit(db, &ev, &e) != TK_OK)
        tk_warn("events: could not record %s %s: %s", kind, action, e.msg);
    json_decref(d);
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

bool tk_api_require_node_admin(struct tk_req *r)
{
    if (!tk_api_require_role(r, "admin")) return false;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_app *app = r->app;
    if (!strcmp(p->tenant_id, app->default_tenant)) return true;
    struct tk_err e;
    tk_err_set(&e, TK_EFORBIDDEN, "forbidden",
               "this acts on the whole node, for every tenant: it needs an admin of the "
               "default tenant");
    tk_reply_error(r, &e, NULL);
    return false;
}
