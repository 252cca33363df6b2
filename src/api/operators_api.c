/* operators_api.c: /v1/operator-tokens: list, issue, change the role, revoke. */
#include "api.h"

#include "../common/text.h"

#include <stdio.h>
#include <string.h>

void tk_h_optokens_list(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    struct tk_err e;
    if (tk_optoken_list(db, p->tenant_id, &a, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, json_pack("{s:o}", "tokens", a));
}

void tk_h_optokens_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"name", "role", "expires_in", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    struct tk_err e;
    const char *key;
    json_t *v;
    const char *name = NULL, *role = "operator";
    json_int_t expires_in = 0;
    tk_err_clear(&e);
    json_object_foreach(body, key, v)
    {
        if (!strcmp(key, "name")) {
            if (!json_is_string(v))
                tk_err_field(&e, TK_EINVAL, "invalid_field", "name",
                             "name must be a string of 1 to 64 bytes");
            else if (json_string_length(v) != strlen(json_string_value(v)))
                tk_err_field(&e, TK_EINVAL, "invalid_field", "name",
                             "name contains U+0000 (a control character)");
            else if (tk_text_check_name("name", json_string_value(v), 64, &e) == TK_OK)
                name = json_string_value(v);
        } else if (!strcmp(key, "role")) {
            if (!json_is_string(v) || !tk_role_valid(json_string_value(v)))
                tk_err_field(&e, TK_EINVAL, "invalid_field", "role",
                             "role must be one of admin, operator, viewer");
            else
                role = json_string_value(v);
        } else { /* expires_in */
            if (!json_is_integer(v) || json_integer_value(v) < 60 ||
                json_integer_value(v) > 10LL * 365 * 86400)
                tk_err_field(&e, TK_EINVAL, "invalid_field", "expires_in",
                             "expires_in must be whole seconds from 60 to 315360000 (10 years)");
            else
                expires_in = json_integer_value(v);
        }
        if (e.rc != TK_OK) break;
    }
    if (e.rc == TK_OK && !name)
        tk_err_field(&e, TK_EINVAL, "missing_field", "name", "name is required");
    if (e.rc != TK_OK) {
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
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1], preview[24];
    int64_t expires_at = expires_in ? tk_now_ms() + expires_in * 1000 : 0;
    /* The token and its event commit together, or neither does. */
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_optoken_create(db, ((struct tk_app *)r->app)->keyring, p->tenant_id, name, role,
                               expires_at, tok, id, &e);
    if (rc == TK_OK) {
        tk_issued_preview(tok, preview);
        json_t *d = json_pack("{s:s, s:s, s:s}", "name", name, "role", role, "preview", preview);
        rc = tk_api_event_in(r, "operator", "token_create", "ok", "operator_token", id,
                             "operator token issued", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(tok, sizeof tok);
        json_decref(body);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "token", tok, "name", name,
                          "role", role, "preview", preview);
    if (expires_at) {
        char at[32];
        tk_time_fmt(expires_at, at, sizeof at);
        json_object_set_new(o, "expires_at", json_string(at));
    } else {
        json_object_set_new(o, "expires_at", json_null());
    }
    tk_wipe(tok, sizeof tok);
    json_decref(body);
    tk_reply_json(r, 201, o);
}

void tk_h_optokens_revoke(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    struct tk_err e;
    if (!tk_uuid_valid(id)) {
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no operator token with id %.40s", id);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    /* The revocation and its event commit together. The tenant's row is
     * locked first, so that two admins revoking each other cannot both
     * pass the last-admin check. */
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "tenants", p->tenant_id, &e);
    int64_t before = 0, after = 0;
    if (rc == TK_OK) rc = tk_optoken_count_admins(db, p->tenant_id, &before, &e);
    int64_t seq = 0;
    if (rc == TK_OK) rc = tk_optoken_revoke(db, p->tenant_id, id, &seq, &e);
    if (rc == TK_OK) rc = tk_optoken_count_admins(db, p->tenant_id, &after, &e);
    if (rc == TK_OK && before > 0 && after == 0)
        rc = tk_err_set(&e, TK_ECONFLICT, "last_admin",
                        "operator token %s is the last active admin token of this tenant; "
                        "issue another admin token before revoking it",
                        id);
    if (rc == TK_OK)
        rc = tk_api_event_in(r, "operator", "token_revoke", "ok", "operator_token", id,
                             "operator token revoked", NULL, &e);
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    /* this node at once; the others at their next poll of the epochs */
    tk_api_authcache_changed(r->app, p->tenant_id, seq);
    tk_reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
}

void tk_h_optokens_patch(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    struct tk_err e;
    if (!tk_uuid_valid(id)) {
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no operator token with id %.40s", id);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"role", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    json_t *v = json_object_get(body, "role");
    char role[16] = "";
    if (!v)
        tk_err_field(&e, TK_EINVAL, "missing_field", "role",
                     "role is required (the only attribute that can change)");
    else if (!json_is_string(v) || !tk_role_valid(json_string_value(v)))
        tk_err_field(&e, TK_EINVAL, "invalid_field", "role",
                     "role must be one of admin, operator, viewer");
    else
        snprintf(role, sizeof role, "%s", json_string_value(v));
    json_decref(body);
    if (!role[0]) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    /* As revoke: the tenant's row first (two admins demoting each other
     * cannot both pass the last-admin check), the change, its event and
     * the auth epoch in one transaction. */
    char old_role[16] = "";
    int64_t before = 0, after = 0, seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "tenants", p->tenant_id, &e);
    if (rc == TK_OK) rc = tk_optoken_count_admins(db, p->tenant_id, &before, &e);
    if (rc == TK_OK) rc = tk_optoken_set_role(db, p->tenant_id, id, role, old_role, &seq, &e);
    if (rc == TK_OK) rc = tk_optoken_count_admins(db, p->tenant_id, &after, &e);
    if (rc == TK_OK && before > 0 && after == 0)
        rc = tk_err_field(&e, TK_ECONFLICT, "last_admin", "role",
                          "operator token %s is the last active admin token of this tenant; "
                          "issue another admin token before changing its role",
                          id);
    if (rc == TK_OK && seq) {
        json_t *d = json_pack("{s:s, s:s}", "role", role, "previous_role", old_role);
        rc = tk_api_event_in(r, "operator", "token_role_change", "ok", "operator_token", id,
                             "operator token role changed", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    if (seq) tk_api_authcache_changed(r->app, p->tenant_id, seq);
    json_t *o = NULL;
    if (tk_optoken_get(db, p->tenant_id, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}
