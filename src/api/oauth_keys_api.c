/*
 * oauth_keys_api.c: the authorization server's signing keys on a node.
 *
 * The node keeps in memory the keys of oauth_signing_keys that are
 * published (their public JWK, imported once as an EVP_PKEY, for the JWKS
 * and for verifying) and, while the keyring is unsealed, the private key of
 * each key that signs now or will (opened from its sealed column). Signing
 * and verifying read this snapshot under a read lock and never touch the
 * store. One worker thread keeps the snapshot current: every second (and
 * when kicked: an unknown kid, at most once a second; no key to sign with;
 * a rotation on this node) it reads the table, makes the first key when
 * there is none, rotates when the newest key is oauth_signing_rotate_every
 * old, opens the private keys it lacks, and drops every private key while
 * the keyring is sealed. Keys made on other nodes therefore reach this one
 * within a second; the JWKS answers while sealed.
 *
 * The key that signs is the one with the latest active_at <= now whose
 * retired_at is not reached. A node that has not yet opened a key that just
 * became active (an immediate rotation on another node) keeps signing with
 * the previous key for at most SIGN_GRACE_MS after its retirement: its
 * tokens still expire before that key leaves the JWKS (KEEP_SKEW_MS).
 */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"

#include <openssl/evp.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define POLL_MS 1000
#define SIGN_GRACE_MS 10000
#define KEEP_SKEW_MS 60000 /* a retired key stays published ttl + this */
#define JWKS_MAX_AGE 60

struct okey {
    struct tk_oauth_key k; /* owns k.jwk */
    EVP_PKEY *pub, *priv;  /* priv: only while unsealed, only a key that may sign */
};

struct tk_oauth_keys {
    pthread_rwlock_t lock; /* guards keys, n */
    struct okey *keys;
    int n;
    struct tk_worker worker;
    atomic_bool worker_started;
    bool stuck; /* the worker did not stop in time: ks is left to the process's exit */
    atomic_llong last_miss_kick;  /* mono ms of the last kick for an unknown kid */
    struct tk_metric *m_signed;   /* tokend_oauth_jwt_signed_total{alg} */
    struct tk_metric *m_verified; /* tokend_oauth_jwt_verified_total{result} */
    int64_t warned_ms;            /* the worker's last logged failure (its thread only) */
};

static struct tk_oauth_keys *ks_get(struct tk_app *app)
{
    if (!app->oauth_keys) {
        struct tk_oauth_keys *ks = tk_calloc(1, sizeof *ks);
        pthread_rwlock_init(&ks->lock, NULL);
        app->oauth_keys = ks;
    }
    return app->oauth_keys;
}

static void okeys_free(struct okey *a, int n)
{
    for (int i = 0; i < n; i++) {
        EVP_PKEY_free(a[i].pub);
        EVP_PKEY_free(a[i].priv);
        tk_oauth_key_clear(&a[i].k);
    }
    free(a);
}

static void kick(struct tk_oauth_keys *ks)
{
    if (atomic_load(&ks->worker_started)) tk_worker_kick(&ks->worker);
}

/* ---- the worker ---- */

/* Log a failure of the worker, at most once a minute; true when logged. */
static bool warn_limited(struct tk_oauth_keys *ks, const char *what, const struct tk_err *e)
{
    int64_t now = tk_mono_ms();
    if (ks->warned_ms && now - ks->warned_ms < 60000) return false;
    ks->warned_ms = now;
    tk_warn("oauth signing keys: %s: %s", what, e->msg);
    return true;
}

struct rot_ctx {
    struct tk_app *app;
    struct tk_req *r; /* NULL: the scheduler */
    const char *why;  /* "initial", "scheduled", "manual", "immediate" */
};

static tk_rc rotated_event(void *arg, struct tk_db *db, const struct tk_oauth_key *k,
                           struct tk_err *e)
{
    struct rot_ctx *c = arg;
    char at[40], msg[256];
    tk_time_fmt(k->active_at, at, sizeof at);
    snprintf(msg, sizeof msg, "signing key %s (%s) created (%s); in the JWKS now, signs from %s",
             k->kid, tk_jwt_alg_name(k->alg), c->why, at);
    json_t *d =
        json_pack("{s:s, s:s, s:s, s:s, s:I}", "kid", k->kid, "alg", tk_jwt_alg_name(k->alg),
                  "reason", c->why, "active_at", at, "generation", (json_int_t)k->generation);
    tk_rc rc;
    if (c->r) {
        rc = tk_api_event_in(c->r, "oauth", "signing_key_rotate", "ok", "signing_key", k->id, msg,
                             d, e);
    } else {
        struct tk_event ev = {.tenant_id = c->app->default_tenant,
                              .kind = "oauth",
                              .source = "scheduler",
                              .action = "signing_key_rotate",
                              .outcome = "ok",
                              .subject_type = "signing_key",
                              .subject_id = k->id,
                              .message = msg,
                              .detail = d,
                              .latency_us = -1};
        rc = tk_event_emit_in(db, &ev, e);
    }
    json_decref(d);
    return rc;
}

static tk_rc do_rotate(struct tk_app *app, struct tk_db *db, struct rot_ctx *c, int64_t due_before,
                       bool immediate, struct tk_oauth_key *out, struct tk_err *e)
{
    const struct tk_config *cfg = app->cfg;
    int64_t now = tk_now_ms();
    enum tk_jwt_alg alg = tk_jwt_alg_from_name(cfg->oauth_signing_alg);
    if (alg == TK_JWT_ALG_NONE) alg = TK_JWT_ES256;
    struct tk_oauth_rotate o = {
        .alg = alg,
        .now = now,
        .active_at = immediate ? now : now + (int64_t)cfg->oauth_signing_publish_ahead * 1000,
        .keep_ms = (int64_t)cfg->oauth_access_token_ttl * 1000 + KEEP_SKEW_MS,
        .due_before = due_before,
        .in_tx = rotated_event,
        .arg = c,
    };
    return tk_oauth_keys_rotate(db, app->keyring, app->default_tenant, &o, out, e);
}

/* One round: read the table, make or rotate a key when due, open what
 * may sign, swap the snapshot in. */
static void refresh(struct tk_app *app)
{
    struct tk_oauth_keys *ks = app->oauth_keys;
    struct tk_err e;
    struct tk_db *db = tk_store_get(app->store, &e);
    if (!db) {
        warn_limited(ks, "cannot reach the store", &e);
        return;
    }
    struct tk_oauth_key *rows = NULL;
    int n = 0;
    tk_rc rc = tk_oauth_keys_list(db, &rows, &n, &e);
    bool sealed = tk_keyring_sealed(app->keyring);
    int64_t now = tk_now_ms();
    if (rc == TK_OK && !sealed) {
        int every = app->cfg->oauth_signing_rotate_every;
        struct rot_ctx c = {.app = app, .why = n == 0 ? "initial" : "scheduled"};
        int64_t due = 0;
        if (n == 0)
            due = -1; /* the first key signs at once: nothing else can */
        else if (every > 0 && rows[0].created_at <= now - (int64_t)every * 1000)
            due = now - (int64_t)every * 1000 + 1;
        if (due != 0) {
            struct tk_oauth_key made;
            tk_rc r2 = do_rotate(app, db, &c, due, n == 0, &made, &e);
            if (r2 == TK_OK) {
                tk_info("oauth: signing key %s (%s) created (%s)", made.kid,
                        tk_jwt_alg_name(made.alg), c.why);
                tk_oauth_key_clear(&made);
                for (int i = 0; i < n; i++)
                    tk_oauth_key_clear(&rows[i]);
                free(rows);
                rc = tk_oauth_keys_list(db, &rows, &n, &e);
                now = tk_now_ms();
            } else if (r2 != TK_ECONFLICT) {
                warn_limited(ks, "cannot make a signing key", &e);
            }
        }
    }
    if (rc != TK_OK) {
        warn_limited(ks, "cannot read the signing keys", &e);
        tk_store_put(db);
        return;
    }
    struct okey *nk = tk_calloc((size_t)(n ? n : 1), sizeof *nk);
    int m = 0;
    for (int i = 0; i < n; i++) {
        struct tk_oauth_key *k = &rows[i];
        if (!strcmp(tk_oauth_key_status(k, now), "unpublished")) {
            tk_oauth_key_clear(k);
            continue;
        }
        struct okey *o = &nk[m];
        o->k = *k;
        memset(k, 0, sizeof *k); /* moved */
        pthread_rwlock_rdlock(&ks->lock);
        for (int j = 0; j < ks->n; j++) {
            if (strcmp(ks->keys[j].k.id, o->k.id)) continue;
            if (ks->keys[j].pub && EVP_PKEY_up_ref(ks->keys[j].pub)) o->pub = ks->keys[j].pub;
            if (!sealed && ks->keys[j].priv && EVP_PKEY_up_ref(ks->keys[j].priv))
                o->priv = ks->keys[j].priv;
            break;
        }
        pthread_rwlock_unlock(&ks->lock);
        if (!o->pub && tk_jwt_key_from_jwk(o->k.jwk, o->k.alg, &o->pub, &e) != TK_OK) {
            warn_limited(ks, "a published key's JWK does not import", &e);
            tk_oauth_key_clear(&o->k);
            continue;
        }
        bool may_sign = !o->k.retired_at || now < o->k.retired_at + SIGN_GRACE_MS;
        if (!sealed && may_sign && !o->priv &&
            tk_oauth_key_private(db, app->keyring, app->default_tenant, o->k.id, o->k.alg, &o->priv,
                                 &e) != TK_OK &&
            warn_limited(ks, "cannot open a signing key", &e) &&
            !strcmp(e.code, "decrypt_failed")) /* a key/data fault: on the record */
            tk_api_keyring_event(app, db, "decrypt_failed", "error", e.msg);
        if (!may_sign && o->priv) { /* retired: its private key is of no more use here */
            EVP_PKEY_free(o->priv);
            o->priv = NULL;
        }
        m++;
    }
    free(rows);
    tk_store_put(db);
    pthread_rwlock_wrlock(&ks->lock);
    struct okey *old = ks->keys;
    int oldn = ks->n;
    ks->keys = nk;
    ks->n = m;
    pthread_rwlock_unlock(&ks->lock);
    okeys_free(old, oldn);
}

static void run(struct tk_worker *w, void *arg)
{
    struct tk_app *app = arg;
    int64_t ms = 0;
    while (tk_worker_wait(w, ms)) {
        ms = POLL_MS;
        refresh(app);
    }
}

/* ---- start, stop, metrics ---- */

static double keys_by_status(void *arg, size_t idx)
{
    static const char *const st[] = {"pending", "active", "retired"};
    struct tk_app *app = arg;
    struct tk_oauth_keys *ks = app->oauth_keys;
    if (!ks || idx >= TK_NELEM(st)) return NAN;
    int64_t now = tk_now_ms();
    double c = 0;
    pthread_rwlock_rdlock(&ks->lock);
    for (int i = 0; i < ks->n; i++)
        if (!strcmp(tk_oauth_key_status(&ks->keys[i].k, now), st[idx])) c++;
    pthread_rwlock_unlock(&ks->lock);
    return c;
}

tk_rc tk_api_oauth_keys_metrics(struct tk_app *app, struct tk_err *e)
{
    struct tk_oauth_keys *ks = ks_get(app);
    static const char *const statuses[] = {"pending", "active", "retired"};
    static const struct tk_dim status_dim = {"status", statuses, 3, NULL, NULL};
    static const char *const algs[] = {"ES256", "RS256", "EdDSA"};
    static const struct tk_dim alg_dim = {"alg", algs, 3, NULL, NULL};
    static const char *const results[] = {"ok", "invalid", "unknown_kid"};
    static const struct tk_dim result_dim = {"result", results, 3, NULL, NULL};
    if (!tk_metric_gauge_fn(app->metrics, "tokend_oauth_signing_keys",
                            "Signing keys in this node's JWKS, by status (pending: published, "
                            "not signing yet).",
                            &status_dim, 1, keys_by_status, app, e))
        return TK_EINTERNAL;
    ks->m_signed = tk_metric_counter(app->metrics, "tokend_oauth_jwt_signed_total",
                                     "JWTs signed by this node, by alg.", &alg_dim, 1, 0, e);
    if (!ks->m_signed) return TK_EINTERNAL;
    ks->m_verified =
        tk_metric_counter(app->metrics, "tokend_oauth_jwt_verified_total",
                          "JWTs checked by this node, by result.", &result_dim, 1, 0, e);
    return ks->m_verified ? TK_OK : TK_EINTERNAL;
}

tk_rc tk_api_oauth_keys_start(struct tk_app *app, struct tk_err *e)
{
    struct tk_oauth_keys *ks = ks_get(app);
    refresh(app); /* the first key before the node answers, when unsealed */
    if (tk_worker_start(&ks->worker, "signing keys", run, app, e) != TK_OK) return TK_EINTERNAL;
    atomic_store(&ks->worker_started, true);
    return TK_OK;
}

void tk_api_oauth_keys_stop(struct tk_app *app)
{
    struct tk_oauth_keys *ks = app->oauth_keys;
    if (!ks || ks->stuck) return;
    if (atomic_exchange(&ks->worker_started, false) && !tk_worker_stop(&ks->worker, 10000)) {
        ks->stuck = true; /* in a store call: left to the process's exit */
        return;
    }
    okeys_free(ks->keys, ks->n);
    pthread_rwlock_destroy(&ks->lock);
    free(ks);
    app->oauth_keys = NULL;
}

/* ---- signing and verifying (no store) ---- */

static size_t alg_idx(enum tk_jwt_alg a)
{
    return a == TK_JWT_RS256 ? 1 : a == TK_JWT_EDDSA ? 2 : 0;
}

/* The key that signs now (under the read lock), or NULL. */
static struct okey *signing_key(struct tk_oauth_keys *ks, int64_t now)
{
    struct okey *best = NULL, *grace = NULL;
    for (int i = 0; i < ks->n; i++) {
        struct okey *o = &ks->keys[i];
        if (!o->priv || now < o->k.active_at) continue;
        if (!o->k.retired_at || now < o->k.retired_at) {
            if (!best || o->k.active_at > best->k.active_at) best = o;
        } else if (now < o->k.retired_at + SIGN_GRACE_MS && o->k.retired_at > o->k.active_at) {
            if (!grace || o->k.retired_at > grace->k.retired_at) grace = o;
        }
    }
    return best ? best : grace;
}

tk_rc tk_api_oauth_sign(struct tk_app *app, const char *typ, json_t *claims, char **jwt_out,
                        struct tk_err *e)
{
    *jwt_out = NULL;
    struct tk_oauth_keys *ks = app->oauth_keys;
    if (!ks) return tk_err_set(e, TK_EUNAVAIL, "not_ready", "the signing keys are not loaded");
    if (tk_keyring_sealed(app->keyring)) {
        kick(ks); /* drop the private keys now */
        return tk_err_set(e, TK_EUNAVAIL, "sealed", "the keyring is sealed: nothing is signed");
    }
    int64_t now = tk_now_ms();
    pthread_rwlock_rdlock(&ks->lock);
    struct okey *o = signing_key(ks, now);
    tk_rc rc;
    enum tk_jwt_alg alg = TK_JWT_ALG_NONE;
    bool stale = o && o->k.retired_at && now >= o->k.retired_at;
    if (!o) {
        rc = tk_err_set(e, TK_EUNAVAIL, "no_signing_key",
                        "no signing key is active on this node yet; retry in a second");
    } else {
        alg = o->k.alg;
        rc = tk_jwt_sign(o->priv, alg, o->k.kid, typ, claims, jwt_out, e);
    }
    pthread_rwlock_unlock(&ks->lock);
    if (!o || stale) kick(ks);
    if (rc == TK_OK) tk_metric_inc(ks->m_signed, alg_idx(alg));
    return rc;
}

tk_rc tk_api_oauth_verify(struct tk_app *app, const char *jwt, size_t n, const char *typ,
                          json_t **claims_out, struct tk_err *e)
{
    *claims_out = NULL;
    struct tk_oauth_keys *ks = app->oauth_keys;
    if (!ks) return tk_err_set(e, TK_EUNAVAIL, "not_ready", "the signing keys are not loaded");
    struct tk_jwt t;
    tk_rc rc = tk_jwt_parse(jwt, n, typ, &t, e);
    if (rc != TK_OK) {
        tk_metric_inc(ks->m_verified, 1);
        return rc;
    }
    int64_t now = tk_now_ms();
    bool found = false;
    pthread_rwlock_rdlock(&ks->lock);
    for (int i = 0; i < ks->n; i++) {
        struct okey *o = &ks->keys[i];
        if (strcmp(o->k.kid, t.kid) || !strcmp(tk_oauth_key_status(&o->k, now), "unpublished"))
            continue;
        found = true;
        rc = tk_jwt_check(&t, jwt, o->pub, o->k.alg, e);
        break;
    }
    pthread_rwlock_unlock(&ks->lock);
    if (!found) {
        rc = tk_err_set(e, TK_EINVAL, "invalid_token",
                        "jwt header: kid '%s' is not a published signing key", t.kid);
        int64_t m = tk_mono_ms(), last = atomic_load(&ks->last_miss_kick);
        if (m - last >= POLL_MS && atomic_compare_exchange_strong(&ks->last_miss_kick, &last, m))
            kick(ks); /* perhaps made on another node a moment ago */
    }
    tk_metric_inc(ks->m_verified, rc == TK_OK ? 0 : found ? 1 : 2);
    if (rc == TK_OK) *claims_out = json_incref(t.claims);
    tk_jwt_clear(&t);
    return rc;
}

json_t *tk_api_oauth_jwks(struct tk_app *app)
{
    json_t *a = json_array();
    struct tk_oauth_keys *ks = app->oauth_keys;
    if (ks) {
        int64_t now = tk_now_ms();
        pthread_rwlock_rdlock(&ks->lock);
        for (int i = 0; i < ks->n; i++)
            if (strcmp(tk_oauth_key_status(&ks->keys[i].k, now), "unpublished"))
                json_array_append_new(a, json_deep_copy(ks->keys[i].k.jwk));
        pthread_rwlock_unlock(&ks->lock);
    }
    return json_pack("{s:o}", "keys", a);
}

const char *tk_api_oauth_signing_alg(struct tk_app *app)
{
    struct tk_oauth_keys *ks = app->oauth_keys;
    enum tk_jwt_alg alg = TK_JWT_ALG_NONE;
    if (ks) {
        int64_t now = tk_now_ms();
        pthread_rwlock_rdlock(&ks->lock);
        const struct okey *best = NULL;
        for (int i = 0; i < ks->n; i++) {
            const struct okey *o = &ks->keys[i];
            if (strcmp(tk_oauth_key_status(&o->k, now), "active")) continue;
            if (!best || o->k.active_at > best->k.active_at) best = o;
        }
        if (best) alg = best->k.alg;
        pthread_rwlock_unlock(&ks->lock);
    }
    if (alg == TK_JWT_ALG_NONE) alg = tk_jwt_alg_from_name(app->cfg->oauth_signing_alg);
    return alg == TK_JWT_ALG_NONE ? "ES256" : tk_jwt_alg_name(alg);
}

int tk_api_oauth_keys_opened(struct tk_app *app)
{
    struct tk_oauth_keys *ks = app->oauth_keys;
    int c = 0;
    if (!ks) return 0;
    pthread_rwlock_rdlock(&ks->lock);
    for (int i = 0; i < ks->n; i++)
        c += ks->keys[i].priv != NULL;
    pthread_rwlock_unlock(&ks->lock);
    return c;
}

/* ---- routes ---- */

void tk_h_oauth_jwks(struct tk_req *r)
{
    struct tk_app *app = r->app;
    char cc[64];
    int age = app->cfg->oauth_signing_publish_ahead / 2;
    if (age > JWKS_MAX_AGE) age = JWKS_MAX_AGE;
    snprintf(cc, sizeof cc, "public, max-age=%d", age);
    tk_reply_header(r, "Cache-Control", cc);
    tk_reply_json(r, 200, tk_api_oauth_jwks(app));
}

static json_t *key_json(const struct tk_oauth_key *k, int64_t now)
{
    char c[40], a[40], ret[40], un[40];
    tk_time_fmt(k->created_at, c, sizeof c);
    tk_time_fmt(k->active_at, a, sizeof a);
    if (k->retired_at) tk_time_fmt(k->retired_at, ret, sizeof ret);
    if (k->unpublish_at) tk_time_fmt(k->unpublish_at, un, sizeof un);
    return json_pack("{s:s, s:s, s:s, s:s, s:O, s:I, s:s, s:s, s:s?, s:s?}", "id", k->id, "kid",
                     k->kid, "alg", tk_jwt_alg_name(k->alg), "status", tk_oauth_key_status(k, now),
                     "public_jwk", k->jwk, "generation", (json_int_t)k->generation, "created_at", c,
                     "active_at", a, "retired_at", k->retired_at ? ret : NULL, "unpublish_at",
                     k->unpublish_at ? un : NULL);
}

/* GET /v1/sys/signing-keys: the rows, newest first, paged over the at most
 * TK_OAUTH_KEYS_MAX the store gives (rows leave at the rotation after they
 * are unpublished, so there are few). No private material. */
void tk_h_signing_keys_list(struct tk_req *r)
{
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_oauth_key *rows = NULL;
    int n = 0;
    struct tk_err e;
    if (tk_oauth_keys_list(db, &rows, &n, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    int64_t now = tk_now_ms();
    json_t *a = json_array();
    const char *next = NULL;
    bool after = cursor == NULL; /* rows come newest first; the cursor is the last id shown */
    for (int i = 0; i < n; i++) {
        if (after && (int64_t)json_array_size(a) < limit) {
            json_array_append_new(a, key_json(&rows[i], now));
            if ((int64_t)json_array_size(a) == limit && i + 1 < n) next = rows[i].id;
        }
        if (cursor && !strcmp(rows[i].id, cursor)) after = true;
    }
    json_t *o = json_pack("{s:o, s:s?}", "signing_keys", a, "next_cursor", next);
    if (!next) json_object_set_new(o, "next_cursor", json_null());
    for (int i = 0; i < n; i++)
        tk_oauth_key_clear(&rows[i]);
    free(rows);
    tk_reply_json(r, 200, o);
}

/* POST /v1/sys/signing-keys/rotate {"immediate"?: bool}: a new key of
 * oauth_signing_alg, published now, signing after oauth_signing_publish_ahead
 * seconds (immediate: at once, for a key believed compromised; resource
 * servers that cached the JWKS refuse its tokens until they refetch). */
void tk_h_signing_keys_rotate(struct tk_req *r)
{
    json_t *body = r->body_len == 0 ? json_object() : tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"immediate", NULL};
    struct tk_err e;
    bool ok = tk_api_only_members(r, body, allowed);
    json_t *im = json_object_get(body, "immediate");
    if (ok && im && !json_is_boolean(im)) {
        tk_err_field(&e, TK_EINVAL, "invalid_field", "immediate",
                     "immediate must be true or false");
        tk_reply_error(r, &e, NULL);
        ok = false;
    }
    bool immediate = json_is_true(im);
    json_decref(body);
    if (!ok) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_app *app = r->app;
    struct rot_ctx c = {.app = app, .r = r, .why = immediate ? "immediate" : "manual"};
    struct tk_oauth_key k;
    tk_rc rc = do_rotate(app, db, &c, 0, immediate, &k, &e);
    if (rc == TK_ECONFLICT && !strcmp(e.code, "rotate_race"))
        rc = do_rotate(app, db, &c, 0, immediate, &k, &e); /* the other node's key is older */
    if (rc != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    kick(app->oauth_keys);
    tk_reply_json(r, 201, key_json(&k, tk_now_ms()));
    tk_oauth_key_clear(&k);
}
