/* clients_api.c: /v1/clients (machine clients: create, list, show, update),
 * their tokens (issue, list, revoke, rotate) and validation
 * (POST /v1/tokens/validate for an operator, GET /v1/tokens/validate for
 * the client token itself). See clients/clients.h for the domain. */
#include "api.h"

#include "../clients/clients.h"
#include "../common/log.h"
#include "../common/text.h"

#include <stdio.h>
#include <string.h>


/* ---- validation, shared with the authenticate hook ---- */

tk_rc tk_api_client_verify(struct tk_req *r, const char *text, size_t n,
                           struct tk_api_client_auth *v)
{
    memset(v, 0, sizeof *v);
    const char *tok;
    size_t len;
    /* the form first: a damaged token never reaches the store */
    if (tk_client_token_scan(text, n, &tok, &len, &v->warnings, &v->e) != TK_OK) {
        if (!strcmp(v->e.code, "missing"))
            snprintf(v->e.msg, sizeof v->e.msg,
                     "no client token was presented: send Authorization: Bearer tkc_...");
        return TK_OK;
    }
    char tmp[TK_ISSUED_MAX];
    snprintf(tmp, sizeof tmp, "%.*s", (int)len, tok);
    tk_issued_preview(tmp, v->preview);
    tk_wipe(tmp, sizeof tmp);
    tk_rc rc = tk_api_issued_lookup(r, TK_PRINCIPAL_CLIENT_TOKEN, tok, len, &v->p, &v->e);
    if (rc == TK_OK) {
        v->ok = true;
        return TK_OK;
    }
    return rc == TK_EAUTH ? TK_OK : rc; /* else replied (sealed, store) */
}

json_t *tk_api_client_verdict_json(const struct tk_api_client_auth *v)
{
    json_t *w = tk_client_warnings_json(v->warnings);
    if (!v->ok)
        return json_pack("{s:b, s:s, s:s, s:s, s:o}", "valid", 0, "error", "invalid_token",
                         "reason", v->e.code, "message", v->e.msg, "warnings", w);
    json_t *o = json_pack("{s:b, s:s, s:s}", "valid", 1, "client_id", v->p.client_id, "name",
                          v->p.name);
    json_object_set_new(o, "email", v->p.email[0] ? json_string(v->p.email) : json_null());
    json_object_set_new(o, "token_id", json_string(v->p.id));
    if (v->p.expires_at) {
        char at[32];
        tk_time_fmt(v->p.expires_at, at, sizeof at);
        json_object_set_new(o, "expires_at", json_string(at));
    } else {
        json_object_set_new(o, "expires_at", json_null());
    }
    json_object_set_new(o, "warnings", w);
    return o;
}

/* GET /v1/tokens/validate: the authenticate hook left its verdict on the
 * token of the Authorization header (valid or not) as the principal. */
void tk_h_tokens_validate_self(struct tk_req *r)
{
    const struct tk_api_client_auth *v = r->principal;
    tk_reply_json(r, 200, tk_api_client_verdict_json(v));
}

/* POST /v1/tokens/validate {"token"}: an operator checks any token of its
 * tenant; another tenant's is unknown. */
void tk_h_tokens_validate(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"token", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    json_t *t = json_object_get(body, "token");
    if (t && !json_is_string(t) && !json_is_null(t)) {
        json_decref(body);
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_field", "token", "token must be a string");
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    const struct tk_principal *op = tk_api_principal(r);
    struct tk_api_client_auth *v = tk_pool_alloc(r->pool, sizeof *v);
    const char *text = json_is_string(t) ? json_string_value(t) : "";
    size_t n = json_is_string(t) ? json_string_length(t) : 0;
    tk_rc rc = tk_api_client_verify(r, text, n, v);
    if (json_is_string(t)) tk_wipe((char *)json_string_value(t), json_string_length(t));
    json_decref(body);
    if (rc != TK_OK) return; /* replied */
    if (v->p.tenant_id[0] && strcmp(v->p.tenant_id, op->tenant_id) != 0) {
        /* another tenant's token says nothing of itself here */
        unsigned w = v->warnings;
        char preview[24];
        memcpy(preview, v->preview, sizeof preview);
        memset(v, 0, sizeof *v);
        v->warnings = w;
        memcpy(v->preview, preview, sizeof preview);
        tk_err_set(&v->e, TK_EAUTH, "unknown",
                   "the client token is well-formed but unknown here (never issued by this "
                   "installation, or of another tenant)");
    }
    if (!v->ok) tk_api_client_refused(r, v, op->tenant_id);
    tk_api_client_count(r->app, v);
    tk_reply_json(r, 200, tk_api_client_verdict_json(v));
}

/* ---- clients ---- */

static const char *const client_members[] = {"name", "email", "status", "metadata", NULL};

/* The {id} of the path, or NULL after replying 404. */
static const char *path_id(struct tk_req *r, const char *param, const char *what)
{
    const char *id = tk_req_param(r, param);
    if (tk_uuid_valid(id)) return id;
    struct tk_err e;
    tk_err_field(&e, TK_ENOTFOUND, "not_found", param, "no %s with id %.40s", what, id);
    tk_api_reply_error(r, &e, NULL);
    return NULL;
}

static json_t *client_event_detail(json_t *c, json_t *body)
{
    json_t *given = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) json_array_append_new(given, json_string(k));
    return json_pack("{s:O?, s:O?, s:o}", "name", json_object_get(c, "name"), "status",
                     json_object_get(c, "status"), "members", given);
}

/* POST /v1/clients -> 201 the client. */
void tk_h_clients_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    struct tk_err e;
    if (!tk_api_only_members(r, body, client_members)) {
        json_decref(body);
        return;
    }
    if (tk_client_check(body, true, &e) != TK_OK) {
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
    char id[TK_UUID_LEN + 1];
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_client_create(db, p->tenant_id, body, id, &o, &e);
    if (rc == TK_OK) {
        json_t *d = client_event_detail(o, body);
        rc = tk_api_event_in(r, "client", "create", "ok", "client", id, "client created", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(body);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 201, o);
}

/* GET /v1/clients?status&limit&cursor -> {clients, next_cursor}. */
void tk_h_clients_list(struct tk_req *r)
{
    struct tk_err e;
    if (!tk_req_query_unique(r, "status") || !tk_req_query_unique(r, "limit") ||
        !tk_req_query_unique(r, "cursor"))
        return;
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    const char *status = tk_req_query(r, "status");
    if (status && !tk_client_status_valid(status)) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "status",
                     "status must be one of active, suspended, disabled");
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_client_list(db, tk_api_principal(r)->tenant_id, status, cursor, (int)limit, &a, next,
                       &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "clients", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

/* GET /v1/clients/{id} -> the client. */
void tk_h_clients_get(struct tk_req *r)
{
    const char *id = path_id(r, "id", "client");
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *o;
    struct tk_err e;
    if (tk_client_get(db, tk_api_principal(r)->tenant_id, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}

/* PATCH /v1/clients/{id} -> the client. A status change takes effect on
 * every node within a second (the auth epoch). */
void tk_h_clients_update(struct tk_req *r)
{
    const char *id = path_id(r, "id", "client");
    if (!id) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    struct tk_err e;
    if (!tk_api_only_members(r, body, client_members)) {
        json_decref(body);
        return;
    }
    if (tk_client_check(body, false, &e) != TK_OK) {
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
    char old_status[16] = "";
    int64_t seq = 0;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_client_update(db, p->tenant_id, id, body, old_status, &seq, &o, &e);
    if (rc == TK_OK && seq) {
        const char *st = json_string_value(json_object_get(o, "status"));
        bool status_changed = st && strcmp(st, old_status) != 0;
        json_t *d = client_event_detail(o, body);
        if (status_changed) json_object_set_new(d, "previous_status", json_string(old_status));
        char msg[96];
        if (status_changed)
            snprintf(msg, sizeof msg, "client status changed from %s to %s", old_status, st);
        else
            snprintf(msg, sizeof msg, "client updated");
        rc = tk_api_event_in(r, "client", status_changed ? "status_change" : "update", "ok",
                             "client", id, msg, d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(body);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    if (seq) tk_api_authcache_changed(r->app, p->tenant_id, seq);
    tk_reply_json(r, 200, o);
}

/* ---- client tokens ---- */

/* GET /v1/clients/{id}/tokens -> {tokens, next_cursor: null}. */
void tk_h_client_tokens_list(struct tk_req *r)
{
    const char *id = path_id(r, "id", "client");
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    struct tk_err e;
    if (tk_client_token_list(db, tk_api_principal(r)->tenant_id, id, &a, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, json_pack("{s:o, s:n}", "tokens", a, "next_cursor"));
}

/* POST /v1/clients/{id}/tokens {name, expires_in?} -> 201 with the token, once. */
void tk_h_client_tokens_create(struct tk_req *r)
{
    const char *cid = path_id(r, "id", "client");
    if (!cid) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"name", "expires_in", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    struct tk_err e;
    tk_err_clear(&e);
    json_t *v = json_object_get(body, "name");
    char name[TK_CLIENT_TOKEN_NAME_MAX + 1] = "";
    if (!v)
        tk_err_field(&e, TK_EINVAL, "missing_field", "name", "name is required");
    else if (!json_is_string(v))
        tk_err_field(&e, TK_EINVAL, "invalid_field", "name",
                     "name must be a string of 1 to %d bytes", TK_CLIENT_TOKEN_NAME_MAX);
    else if (json_string_length(v) != strlen(json_string_value(v)))
        tk_err_field(&e, TK_EINVAL, "invalid_field", "name",
                     "name contains U+0000 (a control character)");
    else if (tk_text_check_name("name", json_string_value(v), TK_CLIENT_TOKEN_NAME_MAX, &e) ==
             TK_OK)
        snprintf(name, sizeof name, "%s", json_string_value(v));
    json_t *x = json_object_get(body, "expires_in");
    int64_t expires_in = 0;
    if (e.rc == TK_OK && x) {
        if (!json_is_integer(x) || json_integer_value(x) < 60 ||
            json_integer_value(x) > 10LL * 365 * 86400)
            tk_err_field(&e, TK_EINVAL, "invalid_field", "expires_in",
                         "expires_in must be whole seconds from 60 to 315360000 (10 years)");
        else
            expires_in = json_integer_value(x);
    }
    json_decref(body);
    if (e.rc != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_app *app = r->app;
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1];
    json_t *o = NULL;
    int64_t expires_at = expires_in ? tk_now_ms() + expires_in * 1000 : 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_client_token_create(db, app->keyring, p->tenant_id, cid, name, expires_at, tok, id,
                                    &o, &e);
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:s, s:s, s:O}", "client_id", cid, "name", name, "preview",
                              json_object_get(o, "preview"));
        rc = tk_api_event_in(r, "client", "token_create", "ok", "client_token", id,
                             "client token issued", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(tok, sizeof tok);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_object_set_new(o, "token", json_string(tok));
    tk_wipe(tok, sizeof tok);
    tk_reply_json(r, 201, o);
}

/* DELETE /v1/clients/{id}/tokens/{token_id} -> {id, revoked: true}. */
void tk_h_client_tokens_revoke(struct tk_req *r)
{
    const char *cid = path_id(r, "id", "client");
    if (!cid) return;
    const char *tid = path_id(r, "token_id", "client token");
    if (!tid) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_client_token_revoke(db, p->tenant_id, cid, tid, &seq, &e);
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:s}", "client_id", cid);
        rc = tk_api_event_in(r, "client", "token_revoke", "ok", "client_token", tid,
                             "client token revoked", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_api_authcache_changed(r->app, p->tenant_id, seq);
    tk_reply_json(r, 200, json_pack("{s:s, s:b}", "id", tid, "revoked", 1));
}

/* POST /v1/clients/{id}/tokens/{token_id}/rotate {grace?, expires_in?}
 * -> 201 the new token with replaces and grace_ends_at. */
void tk_h_client_tokens_rotate(struct tk_req *r)
{
    const char *cid = path_id(r, "id", "client");
    if (!cid) return;
    const char *tid = path_id(r, "token_id", "client token");
    if (!tid) return;
    json_t *body = r->body_len == 0 ? json_object() : tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"grace", "expires_in", NULL};
    int grace = 0, expires_in = 0;
    bool ok = tk_api_only_members(r, body, allowed) &&
              tk_api_int_member(r, body, "grace", 0, TK_CLIENT_GRACE_MAX, 0, &grace) &&
              tk_api_int_member(r, body, "expires_in", 60, 315360000, 0, &expires_in);
    json_decref(body);
    if (!ok) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_app *app = r->app;
    struct tk_err e;
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1];
    json_t *o = NULL;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_client_token_rotate(db, app->keyring, p->tenant_id, cid, tid, grace, expires_in,
                                    tok, id, &seq, &o, &e);
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:s, s:s, s:i, s:O}", "client_id", cid, "replaces", tid,
                              "grace", grace, "preview", json_object_get(o, "preview"));
        rc = tk_api_event_in(r, "client", "token_rotate", "ok", "client_token", id,
                             "client token rotated", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(tok, sizeof tok);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    /* the old token's cached entry goes: it is read again with its grace */
    tk_api_authcache_changed(r->app, p->tenant_id, seq);
    json_object_set_new(o, "token", json_string(tok));
    tk_wipe(tok, sizeof tok);
    tk_reply_json(r, 201, o);
}

/* GET /v1/clients/{id}/report -> the client's state, tokens, agents, the
 * last hour's failures and warnings, and the conclusion (clients.h). */
void tk_h_clients_report(struct tk_req *r)
{
    const char *id = path_id(r, "id", "client");
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *o;
    struct tk_err e;
    if (tk_client_report(db, tk_api_principal(r)->tenant_id, id, tk_now_ms(), &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}
