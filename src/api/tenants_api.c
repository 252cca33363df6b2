/* tenants_api.c: /v1/tenants: create (with the tenant's first admin
 * operator token), list, show. Node administration: an admin of the default
 * tenant only. */
#include "api.h"

#include "../events/events.h"

#include <stdio.h>
#include <string.h>


/* POST /v1/tenants {"name"} -> 201 {tenant, token, token_id}.
 *
 * The tenant row, its first admin token and the events commit in one
 * transaction: if an event cannot be written, nothing is created. The
 * creation is recorded twice, in two chains:
 *  - in the caller's (the default tenant's) chain, with the caller's token
 *    id: the node's audit trail of who created which tenant;
 *  - as the first event of the new tenant's own chain, without anything of
 *    the default tenant (no caller token id): the tenant's admins see how
 *    their tenant and its first token came to be, and its chain starts at
 *    seq 1 with its genesis.
 * Locks: the new row and its name (unique index) first, then the default
 * tenant's row (its event); the new row is seen by no other transaction
 * before the commit, so two creations cannot wait on each other in a cycle:
 * the same name twice waits on the index and then fails with 409. */
void tk_h_tenants_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"name", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    struct tk_err e;
    tk_err_clear(&e);
    json_t *v = json_object_get(body, "name");
    if (!v)
        tk_err_field(&e, TK_EINVAL, "missing_field", "name", "name is required");
    else if (!json_is_string(v) ||
             !tk_tenant_name_valid(json_string_value(v), json_string_length(v)))
        tk_err_field(&e, TK_EINVAL, "invalid_field", "name",
                     "name must be a string of 1 to %d of the characters a-z 0-9 and -, starting "
                     "with a letter or a digit",
                     TK_TENANT_NAME_MAX);
    if (e.rc != TK_OK) {
        json_decref(body);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    char name[TK_TENANT_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", json_string_value(v));
    json_decref(body);

    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    char id[TK_UUID_LEN + 1], tok[TK_ISSUED_MAX], tok_id[TK_UUID_LEN + 1], preview[24];
    int64_t created_at = 0;
    tok[0] = '\0';
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_tenant_create(db, name, id, &created_at, &e);
    if (rc == TK_OK)
        rc = tk_optoken_create(db, ((struct tk_app *)r->app)->keyring, id, "admin", "admin", 0, tok,
                               tok_id, &e);
    if (rc == TK_OK) {
        tk_issued_preview(tok, preview);
        /* tk_api_event_in adds the caller's token id to the detail it is
         * given: the new tenant's event gets a detail of its own */
        json_t *mine = json_pack("{s:s, s:s, s:s}", "name", name, "admin_token_id", tok_id,
                                 "admin_token_preview", preview);
        rc = tk_api_event_in(r, "tenant", "create", "ok", "tenant", id,
                             "tenant created with its first admin operator token", mine, &e);
        json_decref(mine);
    }
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:s, s:s, s:s}", "name", name, "admin_token_id", tok_id,
                              "admin_token_preview", preview);
        struct tk_event ev = {.tenant_id = id,
                              .trace_id = r->request_id,
                              .kind = "tenant",
                              .source = "api",
                              .action = "create",
                              .outcome = "ok",
                              .subject_type = "tenant",
                              .subject_id = id,
                              .message = "tenant created by a node admin with its first admin "
                                         "operator token",
                              .detail = d,
                              .latency_us = -1};
        rc = tk_event_emit_in(db, &ev, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(tok, sizeof tok);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_t *o = json_pack("{s:o, s:s, s:s}", "tenant", tk_tenant_json(id, name, created_at),
                          "token", tok, "token_id", tok_id);
    tk_wipe(tok, sizeof tok);
    tk_reply_json(r, 201, o);
}

/* GET /v1/tenants?limit&cursor -> {tenants, next_cursor}, newest first. */
void tk_h_tenants_list(struct tk_req *r)
{
    struct tk_err e;
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_tenant_list(db, cursor, (int)limit, &a, next, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "tenants", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

/* GET /v1/tenants/{id} -> the tenant. */
void tk_h_tenants_get(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    struct tk_err e;
    if (!tk_uuid_valid(id)) {
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no tenant with id %.40s", id);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *o;
    if (tk_tenant_get(db, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}
