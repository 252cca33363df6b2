/* keyring_api.c: /v1/sys: init, unseal, seal, seal-status, rotate, rewrap; the
 * gate that answers 503 "sealed" while the keyring is closed; and the hooks
 * through which the keyring's actions record their events. */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"

#include <stdio.h>
#include <string.h>

static json_t *status_json(const struct tk_seal_status *st)
{
    json_t *held = json_array();
    for (int i = 0; i < st->progress && i < TK_SHARES_MAX; i++)
        json_array_append_new(held, json_integer(st->held[i]));
    json_t *o = json_pack("{s:b, s:b, s:i, s:i, s:i, s:o, s:b, s:I}", "initialized",
                          st->initialized, "sealed", st->sealed, "t", st->threshold, "n",
                          st->shares, "progress", st->progress, "shares_held", held, "auto_unseal",
                          st->auto_unseal, "data_version", (json_int_t)st->data_version);
    if (st->corrupt) json_object_set_new(o, "keyring_corrupt", json_true());
    return o;
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
    else if (st.corrupt)
        tk_err_set(&e, TK_EUNAVAIL, "sealed",
                   "tokend is sealed: the keyring in the store is damaged or was altered "
                   "(keyring_corrupt); restore the keyring tables from a backup");
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

/* A refused init or unseal (no token needed): repeats of one reason from one
 * address within a minute are coalesced into one event with a count. */
static void denied_event(struct tk_app *app, struct tk_db *db, const char *action,
                         const struct tk_err *e, const char *addr)
{
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    json_t *d = status_json(&st);
    json_object_set_new(d, "reason", json_string(e->code));
    json_object_set_new(d, "remote", json_string(addr));
    struct tk_event ev = {.tenant_id = app->default_tenant, .kind = "keyring", .source = "api",
                          .action = action, .outcome = "denied", .subject_type = "node",
                          .subject_id = app->node, .message = e->msg, .detail = d,
                          .latency_us = -1};
    char key[128];
    snprintf(key, sizeof key, "%s %s", e->code, addr);
    struct tk_err ee;
    if (tk_event_emit_coalesced(db, &ev, key, 60000, NULL, &ee) != TK_OK)
        tk_warn("events: could not record keyring %s denied: %s", action, ee.msg);
    json_decref(d);
}

/* ---- the keyring's hooks: its actions do not take effect without their event ---- */

static tk_rc change_hook(void *arg, struct tk_db *db, const struct tk_keyring_change *c,
                         struct tk_err *e)
{
    struct tk_api_keyring_ctx *x = arg;
    struct tk_app *app = x->app;
    char msg[160];
    if (!strcmp(c->action, "init"))
        snprintf(msg, sizeof msg, "keyring initialized with %d shares, threshold %d%s%s",
                 c->shares, c->threshold, c->auto_unseal ? ", auto-unseal key file" : "",
                 app->cfg && app->cfg->dev ? " (dev mode)" : "");
    else if (!strcmp(c->action, "unseal"))
        snprintf(msg, sizeof msg, "unsealed with %s",
                 c->how && !strcmp(c->how, "key_file") ? "the auto-unseal key file" : "shares");
    else
        snprintf(msg, sizeof msg, "data key version %lld is now active",
                 (long long)c->data_version);
    json_t *d = json_pack("{s:i, s:i, s:b, s:I}", "n", c->shares, "t", c->threshold,
                          "auto_unseal", c->auto_unseal, "data_version",
                          (json_int_t)c->data_version);
    if (c->how) json_object_set_new(d, "how", json_string(c->how));
    const struct tk_principal *p = x->r ? tk_api_principal(x->r) : NULL;
    if (p) json_object_set_new(d, "operator_token", json_string(p->id));
    if (x->remote[0]) json_object_set_new(d, "remote", json_string(x->remote));
    struct tk_event ev = {.tenant_id = app->default_tenant,
                          .trace_id = x->r ? x->r->request_id : NULL, .kind = "keyring",
                          .source = x->r ? "api" : "node", .action = c->action, .outcome = "ok",
                          .subject_type = "node", .subject_id = app->node, .message = msg,
                          .detail = d, .latency_us = -1};
    /* init and rotate: in the action's own transaction; unseal (in memory):
     * committed before the node unseals */
    tk_rc rc = c->in_tx ? tk_event_emit_in(db, &ev, e) : tk_event_emit(db, &ev, e);
    json_decref(d);
    if (rc != TK_OK) {
        x->hook_failed = true;
        tk_error("keyring: %s refused: its event could not be recorded: %s", c->action,
                 e ? e->msg : "");
    }
    return rc;
}

static tk_rc open_failed_hook(void *arg, struct tk_db *db, const struct tk_seal_ad *ad,
                              const struct tk_open_failure *f, const char *message,
                              struct tk_err *e)
{
    (void)arg;
    if (!ad->tenant_id || !ad->tenant_id[0]) return TK_OK;
    json_t *d = json_pack("{s:s, s:s, s:s, s:I}", "table", ad->table ? ad->table : "", "column",
                          ad->column ? ad->column : "", "row_id", ad->row_id ? ad->row_id : "",
                          "key_version", (json_int_t)f->key_version);
    struct tk_event ev = {.tenant_id = ad->tenant_id, .kind = "keyring", .source = "keyring",
                          .action = "decrypt_failed", .outcome = "error",
                          .subject_type = ad->table, .subject_id = ad->row_id,
                          .message = message, .detail = d, .latency_us = -1};
    tk_rc rc = tk_event_emit_in(db, &ev, e);
    json_decref(d);
    return rc;
}

struct tk_keyring_hook tk_api_keyring_hook(struct tk_api_keyring_ctx *ctx)
{
    struct tk_keyring_hook h = {.change = change_hook, .open_failed = open_failed_hook,
                                .arg = ctx};
    return h;
}

/* The hook failed: the action did not happen, because the store cannot
 * record its event (503 event_unrecorded, with Retry-After). */
static void event_refusal(struct tk_req *r, struct tk_err *e, const char *action,
                          const char *what)
{
    char why[sizeof e->msg];
    snprintf(why, sizeof why, "%s", e->msg);
    tk_err_set(e, TK_EUNAVAIL, "event_unrecorded",
               "%s was not done because its event could not be recorded (%s); %s", action, why,
               what);
    tk_reply_header(r, "Retry-After", "5");
}

/* ---- failed unseal attempts, limited per source address ----
 *
 * Each attempt started, each refused share, each attempt that the shares did not open, and each
 * reset without the attempt's nonce counts as one failure in
 * app->unseal_limit (a ratelimit.h table of its own); past
 * TK_API_UNSEAL_FAILS_MAX in a window of TK_API_UNSEAL_WINDOW_S, the
 * address gets 429 rate_limited until the window ends. */

static void unseal_failed(struct tk_app *app, const char *addr)
{
    struct tk_ratelimit_verdict v; /* the refusal comes at the next attempt */
    (void)tk_ratelimit_fail(app->unseal_limit, addr, 0, tk_now_ms(), &v);
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
    struct tk_api_keyring_ctx ctx = {.app = app, .r = r};
    tk_req_remote(r, ctx.remote, sizeof ctx.remote);
    struct tk_keyring_hook hook = tk_api_keyring_hook(&ctx);
    tk_rc rc = tk_keyring_init(app->keyring, db, n, t,
                               auto_unseal ? app->cfg->unseal_key_file : NULL, shares, &hook, &e);
    if (rc != TK_OK) {
        if (ctx.hook_failed)
            event_refusal(r, &e, "init", "nothing was changed; make the store writable and retry");
        else
            denied_event(app, db, "init", &e, ctx.remote);
        tk_reply_error(r, &e, NULL);
        return;
    }
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1];
    rc = tk_optoken_create(db, app->keyring, app->default_tenant, "root", "admin", 0, tok, id, &e);
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

/* Reply 429 when the caller's address is over its budget of failures. */
static bool unseal_limited(struct tk_req *r, const char *addr)
{
    struct tk_app *app = r->app;
    int wait = 0;
    if (!tk_ratelimit_blocked(app->unseal_limit, addr, tk_now_ms(), &wait)) return false;
    struct tk_err e;
    tk_err_set(&e, TK_ERATE, "rate_limited",
               "too many unseal attempts started or failed from this address (%d per %d s); "
               "retry in %d s",
               TK_API_UNSEAL_FAILS_MAX, TK_API_UNSEAL_WINDOW_S, wait);
    char ra[16];
    snprintf(ra, sizeof ra, "%d", wait);
    tk_reply_header(r, "Retry-After", ra);
    tk_reply_error(r, &e, NULL);
    return true;
}

void tk_h_sys_unseal(struct tk_req *r)
{
    struct tk_app *app = r->app;
    char addr[TK_ADDR_MAX];
    tk_req_remote(r, addr, sizeof addr);
    if (unseal_limited(r, addr)) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"share", "nonce", "reset", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    json_t *sv = json_object_get(body, "share"), *nv = json_object_get(body, "nonce"),
           *rv = json_object_get(body, "reset");
    struct tk_err e;
    const char *bad = NULL;
    if (rv && !json_is_boolean(rv))
        bad = "reset must be true or false";
    else if (nv && !json_is_string(nv))
        bad = "nonce must be a string (the one the first share of the attempt returned)";
    else if (json_is_true(rv) && sv)
        bad = "give either reset or a share, not both";
    else if (!json_is_true(rv) && !json_is_string(sv))
        bad = "share (a string tks1-...) is required";
    if (bad) {
        const char *field = rv && !json_is_boolean(rv) ? "reset"
                            : nv && !json_is_string(nv) ? "nonce"
                                                        : "share";
        tk_err_field(&e, TK_EINVAL, sv || !strcmp(field, "reset") || !strcmp(field, "nonce")
                                        ? "invalid_field"
                                        : "missing_field",
                     field, "%s", bad);
        json_decref(body);
        tk_reply_error(r, &e, NULL);
        return;
    }
    const char *nonce = json_string_value(nv);
    struct tk_seal_status st;
    if (json_is_true(rv)) {
        bool nonce_ok = false;
        bool had = tk_keyring_unseal_reset(app->keyring, nonce, &nonce_ok);
        json_decref(body);
        if (had && !nonce_ok) unseal_failed(app, addr); /* a reset by a stranger costs */
        if (had) tk_warn("keyring: unseal attempt reset from %s%s", addr,
                         nonce_ok ? "" : " (without its nonce)");
        tk_keyring_status(app->keyring, &st);
        json_t *o = status_json(&st);
        json_object_set_new(o, "reset", json_boolean(had));
        tk_reply_json(r, 200, o);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    bool was_sealed = tk_keyring_sealed(app->keyring);
    struct tk_api_keyring_ctx ctx = {.app = app, .r = r};
    snprintf(ctx.remote, sizeof ctx.remote, "%s", addr);
    struct tk_keyring_hook hook = tk_api_keyring_hook(&ctx);
    char started[TK_UNSEAL_NONCE];
    tk_rc rc = tk_keyring_unseal_share(app->keyring, db, json_string_value(sv), nonce, started,
                                       &hook, &st, &e);
    /* jansson frees without wiping: wipe the share in place first */
    tk_wipe((void *)(uintptr_t)json_string_value(sv), json_string_length(sv));
    json_decref(body);
    if (rc != TK_OK) {
        if (ctx.hook_failed)
            event_refusal(r, &e, "unseal",
                          "the node stays sealed: make the store writable and give the shares "
                          "again");
        else if (rc != TK_EUNAVAIL && rc != TK_EINTERNAL)
            unseal_failed(app, addr);
        if (!ctx.hook_failed) denied_event(app, db, "unseal", &e, addr);
        json_t *x = status_json(&st);
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    if (was_sealed && !st.sealed) {
        tk_info("keyring: unsealed with shares");
        tk_api_rewrap_kick(app); /* a job paused while sealed resumes now */
    } else if (was_sealed) {
        char msg[80];
        snprintf(msg, sizeof msg, "unseal progress %d/%d", st.progress, st.threshold);
        tk_api_keyring_event(app, db, "unseal", "progress", msg);
    }
    /* Starting an attempt costs too: it is free to undo (a reset with its
     * nonce) and records an event, so a loop of start and reset from one
     * address was an unlimited, unauthenticated stream of writes. */
    if (started[0]) unseal_failed(app, addr);
    json_t *o = status_json(&st);
    if (started[0]) json_object_set_new(o, "nonce", json_string(started));
    tk_wipe(started, sizeof started);
    tk_reply_json(r, 200, o);
}

void tk_h_sys_seal(struct tk_req *r)
{
    struct tk_app *app = r->app;
    const struct tk_principal *p = tk_api_principal(r);
    /* Sealing never waits for the store: seal first (fail closed), then record. */
    tk_keyring_seal(app->keyring);
    tk_warn("keyring: sealed by operator token %s", p->id);
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = TK_EUNAVAIL;
    /* the connection authentication took, else one of our own (never a 503 reply) */
    struct tk_db *db = r->db, *own = db ? NULL : tk_store_get(app->store, &e);
    if (!db) db = own;
    if (db) {
        json_t *d = json_pack("{s:s}", "operator_token", p->id);
        struct tk_event ev = {.tenant_id = p->tenant_id, .trace_id = r->request_id,
                              .kind = "keyring", .source = "api", .action = "seal",
                              .outcome = "ok", .subject_type = "node", .subject_id = app->node,
                              .message = "keyring sealed", .detail = d, .latency_us = -1};
        rc = tk_event_emit(db, &ev, &e);
        json_decref(d);
    }
    if (own) tk_store_put(own);
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    json_t *o = status_json(&st);
    json_object_set_new(o, "event_recorded", json_boolean(rc == TK_OK));
    if (rc != TK_OK) {
        tk_error("keyring: sealed, but the seal event could not be recorded: %s", e.msg);
        char w[sizeof e.msg + 80];
        snprintf(w, sizeof w, "the node is sealed, but the event could not be recorded: %s",
                 e.msg);
        json_object_set_new(o, "warning", json_string(w));
    }
    tk_reply_json(r, 200, o);
}

void tk_h_sys_rotate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    int64_t v;
    struct tk_err e;
    struct tk_api_keyring_ctx ctx = {.app = app, .r = r};
    struct tk_keyring_hook hook = tk_api_keyring_hook(&ctx);
    if (tk_keyring_rotate(app->keyring, db, &v, &hook, &e) != TK_OK) {
        if (ctx.hook_failed)
            event_refusal(r, &e, "rotate", "nothing was changed; make the store writable and retry");
        tk_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, json_pack("{s:I}", "data_version", (json_int_t)v));
}

void tk_h_sys_rewrap(struct tk_req *r)
{
    struct tk_app *app = r->app;
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
