/* users_api.c: a tenant's end users over /v1/users (create, list, show,
 * update: status and password), the pool that hashes their passwords off
 * the HTTP workers (requests wait parked for their hash), the session
 * lookup of the login and consent pages (tk_api_user_session), and the
 * users part's start, stop and metrics. The pages are oauth_login_api.c. */
#include "users_internal.h"

#include "../common/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the pool ---- */

bool tk_users_submit(struct tk_app *app, struct tk_pwjob *j)
{
    return app->pwhash && app->pwhash->pool && tk_pwpool_submit(app->pwhash->pool, j);
}

bool tk_users_secure(struct tk_app *app)
{
    return app->tls != NULL || !strncmp(tk_api_public_url(app), "https://", 8);
}

static struct tk_pwhash *state(struct tk_app *app)
{
    if (!app->pwhash) app->pwhash = tk_calloc(1, sizeof *app->pwhash);
    return app->pwhash;
}

static const char *const hash_outcomes[] = {"hashed", "match", "mismatch", "error", "refused"};

static double m_hashes(void *arg, size_t idx)
{
    struct tk_app *app = arg;
    struct tk_pwpool_stats st;
    tk_pwpool_stats(app->pwhash ? app->pwhash->pool : NULL, &st);
    long long v[] = {st.hashed, st.verified_ok, st.verified_mismatch, st.errors, st.refused};
    return idx < TK_NELEM(v) ? (double)v[idx] : NAN;
}

static double m_queue(void *arg, size_t idx)
{
    struct tk_app *app = arg;
    struct tk_pwpool_stats st;
    tk_pwpool_stats(app->pwhash ? app->pwhash->pool : NULL, &st);
    return idx == 0 ? (double)st.waiting : (double)st.running;
}

tk_rc tk_api_users_metrics(struct tk_app *app, struct tk_err *e)
{
    struct tk_pwhash *s = state(app);
    static const struct tk_dim od = {"outcome", hash_outcomes, TK_NELEM(hash_outcomes), NULL, NULL};
    static const char *const qs[] = {"waiting", "running"};
    static const struct tk_dim qd = {"state", qs, TK_NELEM(qs), NULL, NULL};
    s->m_hashes = tk_metric_counter_fn(
        app->metrics, "tokend_users_password_hashes_total",
        "End-user password hashes by outcome: hashed (a new password), match and mismatch (a "
        "login's verify, unknown emails' dummy verify included), error, refused (the queue was "
        "full: 503).",
        &od, 1, m_hashes, app, e);
    if (!s->m_hashes) return e->rc ? e->rc : TK_EINTERNAL;
    s->m_queue = tk_metric_gauge_fn(app->metrics, "tokend_users_hash_queue",
                                    "End-user password hashes waiting for a thread and running "
                                    "now (users_hash_queue, users_hash_concurrency).",
                                    &qd, 1, m_queue, app, e);
    return s->m_queue ? TK_OK : (e->rc ? e->rc : TK_EINTERNAL);
}

tk_rc tk_api_users_start(struct tk_app *app, struct tk_err *e)
{
    struct tk_pwhash *s = state(app);
    const struct tk_config *c = app->cfg;
    struct tk_pwhash_params p = {.memory_kib = (uint32_t)c->users_argon2_memory_kib,
                                 .iterations = (uint32_t)c->users_argon2_iterations};
    /* the dummy an unknown email is verified against costs what a real one does */
    char pw[33];
    tk_random(pw, 32);
    pw[32] = '\0';
    tk_rc rc = tk_pwhash_hash(&p, pw, 32, s->dummy, e);
    tk_wipe(pw, sizeof pw);
    if (rc != TK_OK) return rc;
    s->pool = tk_pwpool_new(c->users_hash_concurrency, c->users_hash_queue, &p);
    if (!s->pool) return tk_err_set(e, TK_EINTERNAL, "internal", "cannot start the hash threads");
    s->fail_addr = tk_ratelimit_new(c->users_login_fail_limit, TK_USERS_FAIL_WINDOW_S);
    s->fail_user = tk_ratelimit_new(c->users_login_fail_limit, TK_USERS_FAIL_WINDOW_S);
    return TK_OK;
}

void tk_api_users_stop(struct tk_app *app)
{
    struct tk_pwhash *s = app->pwhash;
    if (!s) return;
    tk_pwpool_free(s->pool); /* every queued job's callback runs (the requests are answered) */
    tk_ratelimit_free(s->fail_addr);
    tk_ratelimit_free(s->fail_user);
    free(s);
    app->pwhash = NULL;
}

/* ---- sessions ---- */

bool tk_api_user_session(struct tk_req *r, const char *tenant_id, char user_id[TK_UUID_LEN + 1])
{
    user_id[0] = '\0';
    struct tk_app *app = r->app;
    const char *tok = tk_req_cookie(r, TK_USERS_SESSION_COOKIE);
    if (!tok) return false;
    struct tk_err e;
    size_t n = strlen(tok);
    if (tk_issued_check(TK_KIND_USER_SESSION, tok, n, &e) != TK_OK) return false;
    /* the request's connection, or one of our own: never a reply here */
    struct tk_db *db = r->db ? r->db : tk_store_get(app->store, &e);
    if (!db) return false;
    struct tk_user_session s;
    tk_rc rc = tk_user_session_find(db, app->keyring, tok, n, &s, &e);
    if (db != r->db) tk_store_put(db);
    if (rc != TK_OK || strcmp(s.tenant_id, tenant_id) != 0) return false;
    snprintf(user_id, TK_UUID_LEN + 1, "%s", s.user_id);
    return true;
}

/* ---- /v1/users ---- */

static const char *path_id(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    if (tk_uuid_valid(id)) return id;
    struct tk_err e;
    tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no user with id %.40s", id);
    tk_api_reply_error(r, &e, NULL);
    return NULL;
}

static void reply_busy(struct tk_req *r)
{
    struct tk_err e;
    tk_err_set(&e, TK_EUNAVAIL, "hash_busy",
               "too many password hashes are waiting (users_hash_queue); try again in a moment");
    tk_reply_header(r, "Retry-After", "1");
    tk_reply_error(r, &e, NULL);
}

static void busy_resumed(struct tk_req *r, void *arg)
{
    (void)arg;
    reply_busy(r);
}

/* A write waiting for its hash: what to do once it is there. */
struct user_write {
    struct tk_app *app;
    struct tk_parked *parked;
    bool create;
    char tenant_id[TK_UUID_LEN + 1];
    char id[TK_UUID_LEN + 1];          /* update */
    char email[TK_USER_EMAIL_MAX + 1]; /* create */
    char status[16];                   /* update: "" unchanged */
    struct tk_pwjob job;
};

static void write_free(struct user_write *w)
{
    tk_wipe(w->job.encoded, sizeof w->job.encoded);
    free(w);
}

static json_t *user_detail(const char *email, const char *status, bool password)
{
    json_t *d = json_object();
    if (email) json_object_set_new(d, "email", json_string(email));
    if (status && status[0]) json_object_set_new(d, "status", json_string(status));
    json_object_set_new(d, "password_changed", json_boolean(password));
    return d;
}

/* Commit the write (w->job.encoded: the new hash, or "" for none) and reply. */
static void write_commit(struct tk_req *r, struct user_write *w)
{
    struct tk_err e;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const char *hash = w->job.encoded[0] ? w->job.encoded : NULL;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) {
        if (w->create)
            rc = tk_user_create(db, w->tenant_id, w->email, hash, w->id, &o, &e);
        else
            rc = tk_user_update(db, w->tenant_id, w->id, w->status[0] ? w->status : NULL, hash, &o,
                                &e);
    }
    /* a disabled user keeps no grant: its refresh families are revoked,
     * and with them the access tokens issued from them (revocation rows) */
    if (rc == TK_OK && !w->create && !strcmp(w->status, "disabled")) {
        struct tk_app *app = r->app;
        int64_t now = tk_now_ms(), n = 0;
        rc = tk_oauth_revoke_user(db, w->tenant_id, w->id, now,
                                  now + (int64_t)app->cfg->oauth_access_token_ttl * 1000, &n, &e);
    }
    if (rc == TK_OK) {
        json_t *d = user_detail(w->create ? w->email : NULL, w->status, hash != NULL);
        rc = tk_api_event_in(r, "user", w->create ? "create" : "update", "ok", "user", w->id,
                             w->create ? "user created" : "user updated", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, w->create ? 201 : 200, o);
}

static void write_resumed(struct tk_req *r, void *arg)
{
    struct user_write *w = arg;
    if (w->job.rc != TK_OK)
        tk_api_reply_error(r, &w->job.e, NULL);
    else
        write_commit(r, w);
    write_free(w);
}

static void write_hashed(struct tk_pwjob *j)
{
    struct user_write *w = j->arg;
    if (!tk_parked_resume_with(w->parked, write_resumed, w)) write_free(w);
}

/* Park r and hash pw (checked) in the pool, then write_commit; a full
 * queue answers 503 hash_busy. Takes w. */
static void hash_then_write(struct tk_req *r, struct user_write *w, json_t *pw)
{
    w->job.op = TK_PWJOB_HASH;
    w->job.pw_len = json_string_length(pw);
    w->job.pw = tk_malloc(w->job.pw_len + 1);
    memcpy(w->job.pw, json_string_value(pw), w->job.pw_len + 1);
    w->job.done = write_hashed;
    w->job.arg = w;
    w->parked = tk_req_park(r, TK_USERS_PARK_MS);
    if (!w->parked) { /* already answered: a bug, logged */
        tk_wipe(w->job.pw, w->job.pw_len);
        free(w->job.pw);
        write_free(w);
        return;
    }
    if (!tk_users_submit(w->app, &w->job)) {
        tk_wipe(w->job.pw, w->job.pw_len);
        free(w->job.pw);
        w->job.pw = NULL;
        tk_parked_resume_with(w->parked, busy_resumed, NULL);
        write_free(w);
    }
}

static bool email_of(struct tk_req *r, json_t *v, char out[TK_USER_EMAIL_MAX + 1])
{
    struct tk_err e;
    if (!json_is_string(v)) {
        tk_err_field(&e, TK_EINVAL, v ? "invalid_field" : "missing_field", "email",
                     v ? "email must be a string" : "email is required");
        tk_api_reply_error(r, &e, NULL);
        return false;
    }
    if (tk_user_email_norm(json_string_value(v), json_string_length(v), out, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return false;
    }
    return true;
}

static bool password_ok(struct tk_req *r, json_t *v)
{
    struct tk_err e;
    if (!json_is_string(v)) {
        tk_err_field(&e, TK_EINVAL, v ? "invalid_field" : "missing_field", "password",
                     v ? "password must be a string" : "password is required");
        tk_api_reply_error(r, &e, NULL);
        return false;
    }
    if (tk_user_password_check(json_string_value(v), json_string_length(v), &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return false;
    }
    return true;
}

static void wipe_password(json_t *body)
{
    json_t *pw = json_object_get(body, "password");
    if (json_is_string(pw)) tk_wipe((char *)json_string_value(pw), json_string_length(pw));
}

/* POST /v1/users {email, password} -> 201 the user (never the hash). */
void tk_h_users_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"email", "password", NULL};
    struct user_write *w = tk_calloc(1, sizeof *w);
    w->app = r->app;
    w->create = true;
    if (tk_api_only_members(r, body, allowed) &&
        email_of(r, json_object_get(body, "email"), w->email) &&
        password_ok(r, json_object_get(body, "password"))) {
        snprintf(w->tenant_id, sizeof w->tenant_id, "%s", tk_api_principal(r)->tenant_id);
        hash_then_write(r, w, json_object_get(body, "password"));
    } else {
        write_free(w);
    }
    wipe_password(body);
    json_decref(body);
}

/* PATCH /v1/users/{id} {status?, password?} -> 200 the user. */
void tk_h_users_update(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"status", "password", NULL};
    struct tk_err e;
    struct user_write *w = tk_calloc(1, sizeof *w);
    w->app = r->app;
    snprintf(w->id, sizeof w->id, "%s", id);
    snprintf(w->tenant_id, sizeof w->tenant_id, "%s", tk_api_principal(r)->tenant_id);
    json_t *st = json_object_get(body, "status"), *pw = json_object_get(body, "password");
    bool ok = tk_api_only_members(r, body, allowed);
    if (ok && st && (!json_is_string(st) || !tk_user_status_valid(json_string_value(st)))) {
        tk_err_field(&e, TK_EINVAL, "invalid_field", "status",
                     "status must be one of active, disabled");
        tk_api_reply_error(r, &e, NULL);
        ok = false;
    }
    if (ok && pw && !password_ok(r, pw)) ok = false;
    if (ok && st) snprintf(w->status, sizeof w->status, "%s", json_string_value(st));
    if (!ok) {
        write_free(w);
    } else if (pw) {
        hash_then_write(r, w, pw);
    } else {
        write_commit(r, w);
        write_free(w);
    }
    wipe_password(body);
    json_decref(body);
}

/* GET /v1/users/{id} */
void tk_h_users_get(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    json_t *o;
    if (tk_user_get(db, tk_api_principal(r)->tenant_id, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}

/* GET /v1/users?status&limit&cursor -> {users, next_cursor} */
void tk_h_users_list(struct tk_req *r)
{
    struct tk_err e;
    if (!tk_req_query_unique(r, "status") || !tk_req_query_unique(r, "limit") ||
        !tk_req_query_unique(r, "cursor"))
        return;
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    const char *status = tk_req_query(r, "status");
    if (status && !tk_user_status_valid(status)) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "status",
                     "status must be one of active, disabled");
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_user_list(db, tk_api_principal(r)->tenant_id, status, cursor, (int)limit, &a, next,
                     &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "users", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}
