/* connections_api.c: /v1/connections (import, list, show, delete) and the
 * token routes: GET /{id}/token, POST /{id}/unauthorized, POST /{id}/refresh.
 *
 * Tokens come in only through import (taken out of the body, wiped) and go
 * out only through the token routes; no other reply and no event holds one.
 *
 * Single flight: a refresh asked for by API calls runs on the refresh pool
 * (src/upstream/connections.h); the first caller for a connection starts
 * it, later callers for the same connection on this node join its flight.
 * Every caller is parked (no HTTP thread, no store connection held) and all
 * are resumed with the same answer when the refresh ends, at most
 * refresh_timeout (+5 s) later. */
#include "api.h"

#include "../events/events.h"
#include "../upstream/connections.h"
#include "../upstream/diagnosis.h"
#include "../upstream/engine.h"
#include "../upstream/upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_TTL_MAX 86400
#define RECENT_REFRESH_MS 5000

static struct tk_refresh_ctx g_ctx;

tk_rc tk_api_conn_start(struct tk_app *app, struct tk_err *e)
{
    const struct tk_config *c = app->cfg;
    g_ctx = (struct tk_refresh_ctx){
        .store = app->store,
        .keyring = app->keyring,
        .catalog = app->catalog,
        .out = app->outbound,
        .timeout_ms = (int64_t)c->refresh_timeout * 1000,
        .ahead_s = c->refresh_ahead,
        .ahead_percent = c->refresh_ahead_percent,
        .max_idle_s = c->refresh_max_idle,
    };
    app->refresh_ctx = &g_ctx;
    return tk_conn_pool_start(&g_ctx, c->refresh_workers, &app->conn_pool, e);
}

void tk_api_conn_stop(struct tk_app *app)
{
    tk_conn_pool_stop(app->conn_pool);
    app->conn_pool = NULL;
}

static struct tk_app *APP(struct tk_req *r)
{
    return r->app;
}

static const char *path_id(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    if (tk_uuid_valid(id)) return id;
    struct tk_err e;
    tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no connection with id %.40s", id);
    tk_api_reply_error(r, &e, NULL);
    return NULL;
}

static void bad(struct tk_req *r, const char *field, const char *msg)
{
    struct tk_err e;
    tk_err_field(&e, TK_EINVAL, "invalid_field", field, "%s", msg);
    tk_api_reply_error(r, &e, NULL);
}

/* A time member: an RFC 3339 string or seconds since the epoch. -1 absent,
 * -2 invalid. */
static int64_t time_member(json_t *body, const char *name)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return -1;
    if (json_is_integer(v)) {
        json_int_t s = json_integer_value(v);
        return s > 0 && s < 253402300800LL ? (int64_t)s * 1000 : -2;
    }
    int64_t ms;
    if (json_is_string(v) && tk_time_parse(json_string_value(v), &ms) == TK_OK && ms > 0) return ms;
    return -2;
}

static void wipe_member(json_t *body, const char *name)
{
    json_t *v = json_object_get(body, name);
    if (json_is_string(v)) tk_wipe((char *)json_string_value(v), json_string_length(v));
}

static const char *const create_members[] = {"app_id",        "label",      "access_token",
                                             "refresh_token", "expires_at", "refresh_expires_at",
                                             "scopes",        "token_type", NULL};

/* POST /v1/connections -> 201 the connection (never a token). */
void tk_h_conn_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    struct tk_app *app = APP(r);
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_conn_tokens tok = {0};
    int64_t exp = time_member(body, "expires_at"), rexp = time_member(body, "refresh_expires_at");
    json_t *at = json_object_get(body, "access_token"),
           *rt = json_object_get(body, "refresh_token");
    json_t *label = json_object_get(body, "label"), *app_id = json_object_get(body, "app_id");
    json_t *tt = json_object_get(body, "token_type");
    if (!tk_api_only_members(r, body, create_members)) goto done;
    if (!json_is_string(app_id)) {
        bad(r, "app_id", "app_id is required: the id of one of this tenant's provider apps");
        goto done;
    }
    if (!json_is_string(label)) {
        bad(r, "label", "label is required: a string of 1 to 128 characters");
        goto done;
    }
    if (!json_is_string(at)) {
        bad(r, "access_token", "access_token is required: a string");
        goto done;
    }
    if (rt && !json_is_null(rt) && !json_is_string(rt)) {
        bad(r, "refresh_token", "refresh_token must be a string or null");
        goto done;
    }
    if (tt && !json_is_string(tt)) {
        bad(r, "token_type", "token_type must be a string");
        goto done;
    }
    if (exp == -2) {
        bad(r, "expires_at", "expires_at must be an RFC 3339 time or seconds since the epoch");
        goto done;
    }
    if (rexp == -2) {
        bad(r, "refresh_expires_at",
            "refresh_expires_at must be an RFC 3339 time or seconds since the epoch");
        goto done;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) goto done;
    struct tk_err e;
    json_t *appj = NULL, *o = NULL;
    tk_rc rc = TK_OK;
    if (exp < 0) {
        /* unknown expiry: the provider's default lifetime from now */
        if (tk_app_get(db, app->catalog, p->tenant_id, json_string_value(app_id), &appj, &e) ==
            TK_OK) {
            json_t *life = json_object_get(json_object_get(appj, "effective"), "default_lifetime");
            exp = tk_now_ms() + (json_is_integer(life) ? json_integer_value(life) : 3600) * 1000;
        } else {
            exp = tk_now_ms() + 3600 * 1000; /* the app check below names the field */
        }
    }
    tok.access_token = json_string_value(at);
    tok.refresh_token = json_is_string(rt) ? json_string_value(rt) : NULL;
    tok.expires_at = exp;
    tok.refresh_expires_at = rexp > 0 ? rexp : 0;
    tok.scopes = json_object_get(body, "scopes");
    tok.token_type = tt ? json_string_value(tt) : NULL;
    char id[TK_UUID_LEN + 1];
    rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_conn_create_ctx(db, app->refresh_ctx, p->tenant_id, json_string_value(app_id),
                                json_string_value(label), &tok, id, &e);
    if (rc == TK_OK) rc = tk_conn_get(db, app->refresh_ctx, p->tenant_id, id, &o, &e);
    if (rc == TK_OK) {
        json_t *d =
            json_pack("{s:O?, s:O?, s:O?, s:b, s:O?}", "app_id", json_object_get(o, "app_id"),
                      "provider", json_object_get(o, "provider"), "label",
                      json_object_get(o, "label"), "has_refresh_token", tok.refresh_token != NULL,
                      "expires_at", json_object_get(o, "expires_at"));
        rc = tk_api_event_in(r, "connection", "import", "ok", "connection", id,
                             "connection imported", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(appj);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        goto done;
    }
    tk_api_engine_kick(app); /* a token that expires soon is refreshed now, not next poll */
    tk_reply_json(r, 201, o);
done:
    wipe_member(body, "access_token");
    wipe_member(body, "refresh_token");
    json_decref(body);
}

static const char *const list_statuses[] = {
    "ok", "expiring_soon", "refresh_error", "needs_reconnect", "disabled", NULL};

/* GET /v1/connections?status&app_id&limit&cursor -> {connections, next_cursor}. */
void tk_h_conn_list(struct tk_req *r)
{
    struct tk_err e;
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    const char *status = tk_req_query(r, "status");
    if (status) {
        bool ok = false;
        for (size_t i = 0; list_statuses[i]; i++)
            if (!strcmp(status, list_statuses[i])) ok = true;
        if (!ok) {
            tk_err_field(&e, TK_EINVAL, "invalid_parameter", "status",
                         "status must be one of ok, expiring_soon, refresh_error, "
                         "needs_reconnect, disabled");
            tk_reply_error(r, &e, NULL);
            return;
        }
    }
    const char *app_id = tk_req_query(r, "app_id");
    if (app_id && !tk_uuid_valid(app_id)) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "app_id",
                     "app_id must be a provider app's id");
        tk_reply_error(r, &e, NULL);
        return;
    }
    if (!tk_req_query_unique(r, "status") || !tk_req_query_unique(r, "app_id") ||
        !tk_req_query_unique(r, "limit") || !tk_req_query_unique(r, "cursor"))
        return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_conn_list(db, APP(r)->refresh_ctx, tk_api_principal(r)->tenant_id, status, app_id,
                     cursor, (int)limit, &a, next, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "connections", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

/* GET /v1/connections/{id} */
void tk_h_conn_get(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *o;
    struct tk_err e;
    if (tk_conn_get(db, APP(r)->refresh_ctx, tk_api_principal(r)->tenant_id, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}

/* DELETE /v1/connections/{id} -> {id, deleted: true} */
void tk_h_conn_delete(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_conn_get(db, APP(r)->refresh_ctx, p->tenant_id, id, &o, &e);
    if (rc == TK_OK) rc = tk_conn_delete(db, p->tenant_id, id, &e);
    if (rc == TK_OK) {
        json_t *d =
            json_pack("{s:O?, s:O?, s:O?}", "app_id", json_object_get(o, "app_id"), "provider",
                      json_object_get(o, "provider"), "label", json_object_get(o, "label"));
        rc = tk_api_event_in(r, "connection", "delete", "ok", "connection", id,
                             "connection deleted", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(o);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "deleted", true));
}

/* ---- the token routes ---- */

static json_t *token_json(const char *id, const struct tk_conn_token *t)
{
    char exp[40];
    tk_time_fmt(t->expires_at, exp, sizeof exp);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:O, s:I}", "connection_id", id, "access_token",
        (const char *)t->access_token->p, "token_type", t->token_type, "expires_at", exp,
        "expires_in",
        (json_int_t)((t->expires_at - tk_now_ms()) > 0 ? (t->expires_at - tk_now_ms()) / 1000 : 0),
        "scopes", t->scopes, "version", (json_int_t)t->version);
}

static json_t *error_json(const struct tk_err *e)
{
    json_t *o = json_pack("{s:s, s:s}", "error", e->code[0] ? e->code : tk_rc_name(e->rc),
                          "message", e->msg);
    if (e->field[0]) json_object_set_new(o, "field", json_string(e->field));
    return o;
}

struct waiter {
    struct waiter *next;
    struct tk_parked *p;
};

struct flight {
    struct flight *next;
    char tenant[TK_UUID_LEN + 1], id[TK_UUID_LEN + 1];
    struct waiter *waiters;
    struct tk_app *app;
};

static pthread_mutex_t flights_mu = PTHREAD_MUTEX_INITIALIZER;
static struct flight *flights;

/* The answer every waiter of a refresh gets: the token after it, or why
 * there is none. status and body out. */
static void answer_of(struct tk_app *app, const char *tenant, const char *id,
                      const struct tk_refresh_result *res, int *status, json_t **body)
{
    struct tk_err e;
    tk_err_clear(&e);
    if (res->outcome == TK_REFRESH_OK ||
        (res->outcome == TK_REFRESH_NONE && (res->rc == TK_OK || res->rc == TK_ECONFLICT) &&
         strcmp(res->err.code, "needs_reconnect") && strcmp(res->err.code, "disabled"))) {
        /* refreshed, or somebody else did: the token now stored */
        struct tk_db *db = tk_store_get(app->store, &e);
        struct tk_conn_token t;
        tk_rc rc = db ? tk_conn_token(db, app->keyring, tenant, id, &t, NULL, &e) : e.rc;
        tk_store_put(db);
        if (rc == TK_OK) {
            *status = 200;
            *body = token_json(id, &t);
            tk_conn_token_free(&t);
            return;
        }
        *status = tk_rc_status(rc);
        *body = error_json(&e);
        return;
    }
    *status = tk_rc_status(res->rc == TK_OK ? res->err.rc : res->rc);
    if (res->outcome == TK_REFRESH_ERROR) *status = 502;
    if (res->outcome == TK_REFRESH_FAILED) *status = 409;
    *body = error_json(&res->err);
    if (res->reason[0]) json_object_set_new(*body, "reason", json_string(res->reason));
    if (res->outcome == TK_REFRESH_ERROR && res->next_attempt_at) {
        char b[40];
        tk_time_fmt(res->next_attempt_at, b, sizeof b);
        json_object_set_new(*body, "next_attempt_at", json_string(b));
    }
    if (res->upstream) json_object_set(*body, "upstream", res->upstream);
}

static void flight_done(const struct tk_refresh_result *res, void *arg)
{
    struct flight *f = arg;
    pthread_mutex_lock(&flights_mu);
    for (struct flight **pp = &flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    pthread_mutex_unlock(&flights_mu);
    tk_engine_note(f->app->engine, res->provider, res->outcome, res->latency_us);
    int status;
    json_t *body;
    answer_of(f->app, f->tenant, f->id, res, &status, &body);
    for (struct waiter *w = f->waiters, *n; w; w = n) {
        n = w->next;
        tk_parked_resume(w->p, status, n ? json_deep_copy(body) : json_incref(body));
        free(w);
    }
    json_decref(body);
    free(f);
}

/* Park r and join the connection's flight, or start one (source, fenced
 * by if_version: a refresh committed since the caller read the row makes
 * this one a no-op that answers the new token). */
static void join_or_start(struct tk_req *r, const char *tenant, const char *id,
                          enum tk_refresh_source source, int64_t if_version)
{
    struct tk_app *app = APP(r);
    int64_t bound = (int64_t)app->cfg->refresh_timeout * 1000 + 5000;
    struct waiter *w = tk_calloc(1, sizeof *w);
    pthread_mutex_lock(&flights_mu);
    struct flight *f = flights;
    while (f && (strcmp(f->id, id) || strcmp(f->tenant, tenant)))
        f = f->next;
    bool start = !f;
    if (start) {
        f = tk_calloc(1, sizeof *f);
        snprintf(f->tenant, sizeof f->tenant, "%s", tenant);
        snprintf(f->id, sizeof f->id, "%s", id);
        f->app = app;
    }
    char trace[sizeof r->request_id];
    snprintf(trace, sizeof trace, "%s", r->request_id);
    w->p = tk_req_park(r, bound);
    if (!w->p) {
        pthread_mutex_unlock(&flights_mu);
        free(w);
        if (start) free(f);
        return;
    }
    w->next = f->waiters;
    f->waiters = w;
    if (start) {
        f->next = flights;
        flights = f;
    }
    pthread_mutex_unlock(&flights_mu);
    if (!start) return;
    struct tk_refresh_opts o = {.trace_id = trace, .if_version = if_version};
    struct tk_err e;
    if (tk_conn_refresh_async(app->conn_pool, tenant, id, source, &o, flight_done, f, &e) !=
        TK_OK) {
        struct tk_refresh_result res = {.outcome = TK_REFRESH_NONE, .rc = e.rc, .err = e};
        flight_done(&res, f);
    }
}

static bool reply_not_refreshable(struct tk_req *r, const struct tk_conn_token *t)
{
    if (t->status != TK_CONN_NEEDS_RECONNECT && t->status != TK_CONN_DISABLED) return false;
    struct tk_err e;
    if (t->status == TK_CONN_DISABLED)
        tk_err_set(&e, TK_ECONFLICT, "disabled", "the connection is disabled");
    else
        tk_err_set(&e, TK_ECONFLICT, "needs_reconnect",
                   "the connection needs a reconnect (%s): %.200s",
                   t->reason[0] ? t->reason : "unknown", t->last_error);
    json_t *x = json_pack("{s:s}", "reason", t->reason[0] ? t->reason : "unknown");
    tk_api_reply_error(r, &e, x);
    json_decref(x);
    return true;
}

/* GET /v1/connections/{id}/token?min_ttl=60 */
void tk_h_conn_token(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    if (!tk_req_query_unique(r, "min_ttl")) return;
    int64_t min_ttl = 60;
    const char *mv = tk_req_query(r, "min_ttl");
    struct tk_err e;
    if (mv && tk_parse_int(mv, 0, MIN_TTL_MAX, &min_ttl) != TK_OK) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "min_ttl",
                     "min_ttl must be an integer number of seconds from 0 to %d", MIN_TTL_MAX);
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_app *app = APP(r);
    const char *tenant = tk_api_principal(r)->tenant_id;
    struct tk_conn_token t;
    if (tk_conn_token(db, app->keyring, tenant, id, &t, NULL, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    if (t.expires_at - tk_now_ms() >= min_ttl * 1000) {
        tk_reply_json(r, 200, token_json(id, &t));
        tk_conn_token_free(&t);
        return;
    }
    int64_t version = t.version;
    bool stop = reply_not_refreshable(r, &t);
    tk_conn_token_free(&t);
    if (stop) return;
    join_or_start(r, tenant, id, TK_REFRESH_ON_DEMAND, version);
}

/* POST /v1/connections/{id}/unauthorized  body: empty, {} or {"access_token"} */
void tk_h_conn_unauthorized(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    json_t *body = NULL;
    const char *reported = NULL;
    if (r->body_len > 0) {
        body = tk_req_json(r);
        if (!body) return;
        static const char *const members[] = {"access_token", NULL};
        if (!tk_api_only_members(r, body, members)) {
            json_decref(body);
            return;
        }
        json_t *v = json_object_get(body, "access_token");
        if (v && !json_is_string(v)) {
            bad(r, "access_token", "access_token must be the token the upstream refused");
            json_decref(body);
            return;
        }
        reported = json_string_value(v);
    }
    struct tk_db *db = tk_api_db(r);
    struct tk_app *app = APP(r);
    const char *tenant = tk_api_principal(r)->tenant_id;
    struct tk_conn_token t;
    struct tk_err e;
    if (!db) goto out;
    if (tk_conn_token(db, app->keyring, tenant, id, &t, NULL, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        goto out;
    }
    bool newer;
    if (reported)
        newer = strlen(reported) != t.access_token->len ||
                !tk_ct_equal(reported, t.access_token->p, t.access_token->len);
    else
        newer = t.last_refresh_at > 0 && tk_now_ms() - t.last_refresh_at < RECENT_REFRESH_MS;
    if (newer) {
        tk_reply_json(r, 200, token_json(id, &t));
        tk_conn_token_free(&t);
        goto out;
    }
    int64_t version = t.version;
    bool stop = reply_not_refreshable(r, &t);
    tk_conn_token_free(&t);
    if (!stop) join_or_start(r, tenant, id, TK_REFRESH_REACTIVE, version);
out:
    if (reported) tk_wipe((char *)reported, strlen(reported));
    json_decref(body);
}

struct manual {
    struct tk_parked *p;
    struct tk_app *app;
    char tenant[TK_UUID_LEN + 1], id[TK_UUID_LEN + 1];
};

static void manual_done(const struct tk_refresh_result *res, void *arg)
{
    struct manual *m = arg;
    struct tk_app *app = m->app;
    tk_engine_note(app->engine, res->provider, res->outcome, res->latency_us);
    int status;
    json_t *body;
    if (res->outcome == TK_REFRESH_OK) {
        struct tk_err e;
        json_t *c = NULL;
        struct tk_db *db = tk_store_get(app->store, &e);
        if (db) tk_conn_get(db, app->refresh_ctx, m->tenant, m->id, &c, &e);
        tk_store_put(db);
        status = 200;
        body = json_pack("{s:s, s:b, s:o}", "outcome", "ok", "rotated", res->rotated, "connection",
                         c ? c : json_null());
    } else {
        answer_of(app, m->tenant, m->id, res, &status, &body);
        if (res->outcome == TK_REFRESH_NONE && status == 200) {
            /* nothing attempted (should not happen without if_version) */
            json_decref(body);
            body = json_pack("{s:s}", "outcome", "none");
        } else {
            json_object_set_new(body, "outcome",
                                json_string(tk_refresh_outcome_name(res->outcome)));
        }
    }
    if (res->debug) json_object_set(body, "debug", res->debug);
    tk_parked_resume(m->p, status, body);
    free(m);
}

/* POST /v1/connections/{id}/refresh[?debug=1] */
void tk_h_conn_refresh(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    if (!tk_req_query_unique(r, "debug")) return;
    const char *dv = tk_req_query(r, "debug");
    struct tk_err e;
    if (dv && strcmp(dv, "0") && strcmp(dv, "1") && strcmp(dv, "true") && strcmp(dv, "false")) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "debug", "debug must be 1 or 0");
        tk_reply_error(r, &e, NULL);
        return;
    }
    bool debug = dv && (!strcmp(dv, "1") || !strcmp(dv, "true"));
    if (r->body_len > 0) { /* an action route: an empty body or {} */
        json_t *body = tk_req_json(r);
        if (!body) return;
        static const char *const none[] = {NULL};
        bool ok = tk_api_only_members(r, body, none);
        json_decref(body);
        if (!ok) return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_app *app = APP(r);
    const char *tenant = tk_api_principal(r)->tenant_id;
    json_t *o;
    if (tk_conn_get(db, app->refresh_ctx, tenant, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_decref(o);
    struct manual *m = tk_calloc(1, sizeof *m);
    m->app = app;
    snprintf(m->tenant, sizeof m->tenant, "%s", tenant);
    snprintf(m->id, sizeof m->id, "%s", id);
    char trace[sizeof r->request_id];
    snprintf(trace, sizeof trace, "%s", r->request_id);
    m->p = tk_req_park(r, (int64_t)app->cfg->refresh_timeout * 1000 + 5000);
    if (!m->p) {
        free(m);
        return;
    }
    struct tk_refresh_opts opts = {.trace_id = trace, .debug = debug};
    if (tk_conn_refresh_async(app->conn_pool, tenant, id,
                              debug ? TK_REFRESH_DEBUG : TK_REFRESH_MANUAL, &opts, manual_done, m,
                              &e) != TK_OK) {
        tk_parked_resume(m->p, tk_rc_status(e.rc), error_json(&e));
        free(m);
    }
}

/* ---- diagnosis (issue 18 item 8) ---- */

static int64_t jtime(const json_t *o, const char *name)
{
    int64_t ms;
    const char *s = json_string_value(json_object_get(o, name));
    return s && tk_time_parse(s, &ms) == TK_OK ? ms : 0;
}

static const char *jstr_or_null(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* GET /v1/connections/{id}/diagnosis -> {connection, token: {expires_at,
 * expires_in, refresh_expires_at}, attempts (the last 10 refresh events,
 * newest first), cause, conclusion, next_step}: never a token. */
void tk_h_conn_diagnosis(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const char *tenant = tk_api_principal(r)->tenant_id;
    json_t *conn = NULL, *events = NULL;
    struct tk_err e;
    if (tk_conn_get(db, APP(r)->refresh_ctx, tenant, id, &conn, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_event_query q = {
        .tenant_id = tenant, .kind = "refresh", .subject = id, .limit = TK_DIAG_ATTEMPTS_MAX};
    int64_t next = 0;
    if (tk_events_list(db, &q, &events, &next, &e) != TK_OK) {
        json_decref(conn);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_diag_attempt at[TK_DIAG_ATTEMPTS_MAX];
    size_t n = 0, i;
    json_t *ev, *attempts = json_array();
    json_array_foreach(events, i, ev)
    {
        if (n == TK_DIAG_ATTEMPTS_MAX) break;
        json_t *d = json_object_get(ev, "detail");
        if (!json_is_object(d)) d = NULL;
        struct tk_diag_attempt *a = &at[n++];
        *a = (struct tk_diag_attempt){
            .at = json_integer_value(json_object_get(ev, "at_ms")),
            .source = jstr_or_null(ev, "source"),
            .outcome = jstr_or_null(ev, "outcome"),
            .reason = jstr_or_null(d, "reason"),
            .http_status = (long)json_integer_value(json_object_get(d, "status")),
            .content_type = jstr_or_null(d, "content_type"),
            .refresh_token_sent = jstr_or_null(d, "refresh_token_sent"),
            .refresh_token_new = jstr_or_null(d, "refresh_token_new"),
            .next_attempt_at = jtime(d, "next_attempt_at"),
        };
        json_array_append_new(
            attempts,
            json_pack(
                "{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "at", json_object_get(ev, "at"),
                "source", json_object_get(ev, "source"), "outcome", json_object_get(ev, "outcome"),
                "status", json_object_get(d, "status"), "error_code", json_object_get(d, "reason"),
                "content_type", json_object_get(d, "content_type"), "next_attempt_at",
                json_object_get(d, "next_attempt_at"), "message", json_object_get(ev, "message")));
    }
    int64_t now = tk_now_ms();
    struct tk_diag_input in = {
        .status = jstr_or_null(conn, "status"),
        .last_error_code = jstr_or_null(conn, "last_error_code"),
        .last_error = jstr_or_null(conn, "last_error"),
        .now = now,
        .expires_at = jtime(conn, "expires_at"),
        .next_refresh_at = jtime(conn, "next_refresh_at"),
        .refresh_expires_at = jtime(conn, "refresh_expires_at"),
        .last_refresh_at = jtime(conn, "last_refresh_at"),
        .has_refresh_token = json_is_true(json_object_get(conn, "has_refresh_token")),
        .attempts = at,
        .n_attempts = n,
    };
    char concl[TK_DIAG_TEXT_MAX], step[TK_DIAG_TEXT_MAX];
    const char *cause = tk_diagnose(&in, concl, step);
    int64_t left = in.expires_at > now ? (in.expires_at - now) / 1000 : 0;
    json_t *tok = json_pack("{s:O?, s:I, s:O?}", "expires_at", json_object_get(conn, "expires_at"),
                            "expires_in", (json_int_t)left, "refresh_expires_at",
                            json_object_get(conn, "refresh_expires_at"));
    json_t *o =
        json_pack("{s:o, s:o, s:o, s:s, s:s, s:s}", "connection", conn, "token", tok, "attempts",
                  attempts, "cause", cause, "conclusion", concl, "next_step", step);
    json_decref(events);
    tk_reply_json(r, 200, o);
}
