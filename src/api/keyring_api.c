/* keyring_api.c: /v1/sys: init, unseal, seal, seal-status, rotate, rewrap; and the
 * gate that answers 503 "sealed" while the keyring is closed. */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"

#include <stdio.h>
#include <string.h>

static json_t *status_json(const struct tk_seal_status *st)
{
    return json_pack("{s:b, s:b, s:i, s:i, s:i, s:b, s:I}", "initialized", st->initialized,
                     "sealed", st->sealed, "t", st->threshold, "n", st->shares, "progress",
                     st->progress, "auto_unseal", st->auto_unseal, "data_version",
                     (json_int_t)st->data_version);
}

tk_rc tk_api_gate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!tk_keyring_sealed(app->keyring)) return TK_OK;
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    struct tk_err e;
    if (!st.initialized)
        tk_err_set(&e, TK_EUNAVAIL, "sealed",
                   "tokend is not initialized: run 'tokend operator init'");
    else
        tk_err_set(&e, TK_EUNAVAIL, "sealed",
                   "tokend is sealed: unseal it with 'tokend operator unseal' (%d of %d shares "
                   "given to this node)",
                   st.progress, st.threshold);
    json_t *x = status_json(&st);
    tk_reply_header(r, "Retry-After", "5");
    tk_reply_error(r, &e, x);
    json_decref(x);
    return TK_EUNAVAIL;
}

void tk_api_keyring_event(struct tk_app *app, struct tk_db *db, const char *action,
                          const char *outcome, const char *message)
{
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    json_t *d = status_json(&st);
    struct tk_event ev = {.tenant_id = app->default_tenant, .kind = "keyring", .source = "api",
                          .action = action, .outcome = outcome, .subject_type = "node",
                          .subject_id = app->node, .message = message, .detail = d,
                          .latency_us = -1};
    struct tk_err e;
    if (tk_event_emit(db, &ev, &e) != TK_OK)
        tk_warn("events: could not record keyring %s: %s", action, e.msg);
    json_decref(d);
}

static json_t *rewrap_json(const struct tk_rewrap_status *rs)
{
    if (!rs->exists) return json_null();
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "state", rs->state, "target_version",
                          (json_int_t)rs->target_version, "done", (json_int_t)rs->done, "total",
                          (json_int_t)rs->total, "rewrapped", (json_int_t)rs->rewrapped, "failed",
                          (json_int_t)rs->failed);
    json_object_set_new(o, "first_failed_row", rs->first_failed_row[0]
                                                   ? json_string(rs->first_failed_row)
                                                   : json_null());
    return o;
}

void tk_h_sys_seal_status(struct tk_req *r)
{
    struct tk_app *app = r->app;
    /* The rewrap job's progress; null when there never was one (or the
     * store does not answer: seal-status works without it). */
    struct tk_rewrap_status rs;
    memset(&rs, 0, sizeof rs);
    struct tk_err e;
    struct tk_db *db = tk_store_get(app->store, &e);
    if (db) {
        tk_keyring_sync(app->keyring, db, &e); /* initialized or rotated elsewhere? */
        if (tk_keyring_rewrap_status(db, &rs, &e) != TK_OK) rs.exists = false;
        tk_store_put(db);
    }
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    json_t *o = status_json(&st);
    json_object_set_new(o, "node", json_string(app->node));
    json_object_set_new(o, "rewrap", rewrap_json(&rs));
    tk_reply_json(r, 200, o);
}

void tk_h_sys_init(struct tk_req *r)
{
    struct tk_app *app = r->app;
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"shares", "threshold", "auto_unseal", NULL};
    int n, t;
    json_t *au = json_object_get(body, "auto_unseal");
    if (!tk_api_only_members(r, body, allowed) ||
        !tk_api_int_member(r, body, "shares", 1, TK_SHARES_MAX, 5, &n) ||
        !tk_api_int_member(r, body, "threshold", 1, TK_SHARES_MAX, n < 3 ? n : 3, &t)) {
        json_decref(body);
        return;
    }
    struct tk_err e;
    if (au && !json_is_boolean(au)) {
        json_decref(body);
        tk_err_field(&e, TK_EINVAL, "invalid_field", "auto_unseal", "auto_unseal must be true or false");
        tk_reply_error(r, &e, NULL);
        return;
    }
    bool auto_unseal = au && json_is_true(au);
    json_decref(body);
    if (t > n) {
        tk_err_field(&e, TK_EINVAL, "invalid_field", "threshold",
                     "threshold (%d) cannot be more than shares (%d)", t, n);
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    char shares[TK_SHARES_MAX][TK_SHARE_MAX];
    tk_rc rc = tk_keyring_init(app->keyring, db, n, t,
                               auto_unseal ? app->cfg->unseal_key_file : NULL, shares, &e);
    if (rc != TK_OK) {
        tk_api_keyring_event(app, db, "init", "denied", e.msg);
        tk_reply_error(r, &e, NULL);
        return;
    }
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1];
    rc = tk_optoken_create(db, app->keyring, app->default_tenant, "root", "admin", 0, tok, id, &e);
    tk_api_keyring_event(app, db, "init", "ok", "keyring initialized");
    json_t *sh = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(sh, json_string(shares[i]));
    tk_wipe(shares, sizeof shares);
    json_t *o = json_pack("{s:o, s:i, s:i}", "shares", sh, "threshold", t, "n", n);
    json_object_set_new(o, "root_token", rc == TK_OK ? json_string(tok) : json_null());
    json_object_set_new(o, "root_token_id", rc == TK_OK ? json_string(id) : json_null());
    json_object_set_new(o, "auto_unseal_file",
                        auto_unseal ? json_string(app->cfg->unseal_key_file) : json_null());
    tk_wipe(tok, sizeof tok);
    tk_info("keyring: initialized with %d shares, threshold %d%s", n, t,
            auto_unseal ? ", auto-unseal key file" : "");
    tk_reply_json(r, 200, o);
}

void tk_h_sys_unseal(struct tk_req *r)
{
    struct tk_app *app = r->app;
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"share", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    json_t *sv = json_object_get(body, "share");
    struct tk_err e;
    if (!json_is_string(sv)) {
        json_decref(body);
        tk_err_field(&e, TK_EINVAL, "missing_field", "share", "share (a string tks1-...) is required");
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    struct tk_seal_status st;
    bool was_sealed = tk_keyring_sealed(app->keyring);
    tk_rc rc = tk_keyring_unseal_share(app->keyring, db, json_string_value(sv), &st, &e);
    json_decref(body); /* the share is wiped with the JSON: jansson frees, not wipes; short-lived */
    if (rc != TK_OK) {
        tk_api_keyring_event(app, db, "unseal", "denied", e.msg);
        json_t *x = status_json(&st);
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    if (was_sealed && !st.sealed) {
        tk_info("keyring: unsealed with shares");
        tk_api_rewrap_kick(app); /* a job paused while sealed resumes now */
        tk_api_keyring_event(app, db, "unseal", "ok", "unsealed with shares");
    } else if (was_sealed) {
        char msg[80];
        snprintf(msg, sizeof msg, "unseal progress %d/%d", st.progress, st.threshold);
        tk_api_keyring_event(app, db, "unseal", "progress", msg);
    }
    tk_reply_json(r, 200, status_json(&st));
}

void tk_h_sys_seal(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!tk_api_require_node_admin(r)) return;
    tk_keyring_seal(app->keyring);
    tk_warn("keyring: sealed by operator token %s", ((const struct tk_principal *)r->principal)->token_id);
    tk_api_event(r, "keyring", "seal", "ok", "node", app->node, "keyring sealed", NULL);
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    tk_reply_json(r, 200, status_json(&st));
}

void tk_h_sys_rotate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!tk_api_require_node_admin(r)) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    int64_t v;
    struct tk_err e;
    if (tk_keyring_rotate(app->keyring, db, &v, &e) != TK_OK) {
        tk_reply_error(r, &e, NULL);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "data key version %lld is now active", (long long)v);
    tk_api_event(r, "keyring", "rotate", "ok", "node", app->node, msg, NULL);
    tk_reply_json(r, 200, json_pack("{s:I}", "data_version", (json_int_t)v));
}

void tk_h_sys_rewrap(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (!tk_api_require_node_admin(r)) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_rewrap_status rs;
    struct tk_err e;
    if (tk_keyring_rewrap_start(app->keyring, db, &rs, &e) != TK_OK) {
        tk_reply_error(r, &e, NULL);
        return;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "rewrap started toward data key version %lld, %lld value(s)",
             (long long)rs.target_version, (long long)rs.total);
    tk_api_event(r, "keyring", "rewrap_start", "ok", "node", app->node, msg, NULL);
    tk_api_rewrap_kick(app);
    tk_reply_json(r, 202, rewrap_json(&rs));
}
