/* authpoll.c: authentication off the disk (issue 16 item 3): issued-secret
 * lookups through the cache of common/authcache.h, and the worker that
 * polls the tenants' auth epochs every TK_API_AUTHPOLL_MS and drops the
 * entries of every tenant whose epoch moved.
 *
 * Why a revoke or a role change reaches every node within a second: the
 * writer bumps its tenant's epoch in its own transaction
 * (tk_tenant_auth_bump); each node's poller asks for the tenants whose
 * epoch is above the highest it has seen, which misses no commit (see
 * operators.h); and a node trusts its cache only while its last
 * successful poll began at most TK_AUTHCACHE_TRUST_MS ago. A poll that
 * fails or hangs (a stalled store) therefore stops the cache from
 * answering one second after the snapshot it last read: requests then go
 * to the store, and fail there like any other store read (fail closed). */
#include "api.h"

#include "../clients/clients.h"
#include "../common/log.h"
#include "../oauth/oclients.h"

#include <math.h>
#include <string.h>

/* The store half of a lookup, per principal kind: the row of a keyed hash
 * (its outcome as in tk_optoken_lookup), with its expiry and its tenant's
 * auth epoch on success. Client tokens add their function here. */
typedef tk_rc (*issued_lookup_fn)(struct tk_db *db, const char *hash, struct tk_principal *p,
                                  int64_t *expires_at, int64_t *epoch, struct tk_err *e);

static const issued_lookup_fn lookups[TK_PRINCIPAL_KINDS] = {
    [TK_PRINCIPAL_OPERATOR_TOKEN] = tk_optoken_lookup_hash,
    [TK_PRINCIPAL_CLIENT_TOKEN] = tk_client_token_lookup_hash,
    [TK_PRINCIPAL_OAUTH_CLIENT] = tk_oauth_client_lookup_hash,
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool unhex(const char *hex, unsigned char out[TK_AUTHCACHE_KEY])
{
    for (size_t i = 0; i < TK_AUTHCACHE_KEY; i++) {
        int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

tk_rc tk_api_issued_lookup(struct tk_req *r, enum tk_principal_kind kind, const char *tok,
                           size_t len, struct tk_principal *p, struct tk_err *e)
{
    struct tk_app *app = r->app;
    memset(p, 0, sizeof *p);
    tk_rc rc;
    if (kind <= TK_PRINCIPAL_NONE || kind >= TK_PRINCIPAL_KINDS || !lookups[kind]) {
        rc = tk_err_set(e, TK_EINTERNAL, "internal", "no lookup for %ss",
                        tk_principal_kind_name(kind));
        tk_api_reply_error(r, e, NULL);
        return rc;
    }
    char hash[TK_HASH_HEX];
    unsigned char key[TK_AUTHCACHE_KEY];
    rc = tk_keyring_hash(app->keyring, tok, len, hash, NULL, e);
    if (rc == TK_OK && !unhex(hash, key))
        rc = tk_err_set(e, TK_EINTERNAL, "internal", "the keyed hash is not hex");
    if (rc != TK_OK) {
        tk_api_reply_error(r, e, NULL);
        return rc;
    }
    struct tk_authcache_entry v;
    if (tk_authcache_get(app->authcache, key, (int)kind, tk_now_ms(), tk_mono_ms(), &v)) {
        p->kind = kind;
        memcpy(p->id, v.id, sizeof p->id);
        memcpy(p->tenant_id, v.tenant_id, sizeof p->tenant_id);
        memcpy(p->name, v.name, sizeof p->name);
        memcpy(p->role, v.role, sizeof p->role);
        memcpy(p->client_id, v.client_id, sizeof p->client_id);
        memcpy(p->email, v.email, sizeof p->email);
        p->expires_at = v.expires_at;
        return TK_OK;
    }
    /* Read before the store read: an invalidation in between refuses the fill. */
    uint64_t gen = tk_authcache_gen(app->authcache);
    struct tk_db *db = tk_api_db(r);
    if (!db) return TK_EUNAVAIL; /* replied */
    int64_t expires_at = 0, epoch = 0;
    rc = lookups[kind](db, hash, p, &expires_at, &epoch, e);
    if (rc == TK_OK) p->expires_at = expires_at;
    if (rc == TK_OK && app->authcache) {
        memset(&v, 0, sizeof v);
        v.kind = (int)kind;
        memcpy(v.id, p->id, sizeof v.id);
        memcpy(v.tenant_id, p->tenant_id, sizeof v.tenant_id);
        memcpy(v.name, p->name, sizeof v.name);
        memcpy(v.role, p->role, sizeof v.role);
        memcpy(v.client_id, p->client_id, sizeof v.client_id);
        memcpy(v.email, p->email, sizeof v.email);
        v.expires_at = expires_at;
        v.epoch = epoch;
        tk_authcache_put(app->authcache, key, &v, gen);
    } else if (rc != TK_OK && rc != TK_EAUTH) {
        tk_api_reply_error(r, e, NULL);
    }
    return rc;
}

void tk_api_authcache_changed(struct tk_app *app, const char *tenant_id, int64_t seq)
{
    tk_authcache_invalidate(app->authcache, tenant_id, seq);
}

/* ---- the poller ---- */

#define POLL_BATCH 1000

/* One round: true when the epochs were read. The first round (no epoch
 * seen yet) takes the clock as its starting point and drops every entry,
 * since entries filled before it cannot be checked against older changes. */
static bool poll_once(struct tk_app *app, bool *have_cursor, struct tk_err *e)
{
    int64_t began = tk_mono_ms();
    struct tk_db *db = tk_store_get(app->store, e);
    if (!db) return false;
    tk_rc rc = TK_OK;
    int64_t cursor = atomic_load(&app->authpoll_seq);
    if (!*have_cursor) {
        rc = tk_tenant_auth_clock(db, &cursor, e);
        if (rc == TK_OK) {
            tk_authcache_clear(app->authcache);
            *have_cursor = true;
        }
    }
    for (int round = 0; rc == TK_OK && round < 100; round++) {
        struct tk_rows *rows = NULL;
        rc = tk_tenant_auth_changes(db, cursor, POLL_BATCH, &rows, e);
        int n = rc == TK_OK ? tk_rows_count(rows) : 0;
        for (int i = 0; i < n; i++) {
            int64_t seq = tk_rows_int(rows, i, 1);
            tk_authcache_invalidate(app->authcache, tk_rows_text(rows, i, 0), seq);
            if (seq > cursor) cursor = seq;
        }
        tk_rows_free(rows);
        if (n < POLL_BATCH) break;
    }
    tk_store_put(db);
    if (rc != TK_OK) return false;
    atomic_store(&app->authpoll_seq, cursor);
    /* trusted from when this round's reads began, not when they ended */
    tk_authcache_polled(app->authcache, began);
    return true;
}

static void authpoll_worker(struct tk_worker *w, void *arg)
{
    struct tk_app *app = arg;
    bool have_cursor = false, failing = false;
    int64_t ms = 0;
    while (tk_worker_wait(w, ms)) {
        ms = TK_API_AUTHPOLL_MS;
        struct tk_err e;
        tk_err_clear(&e);
        if (poll_once(app, &have_cursor, &e)) {
            if (failing) tk_info("auth cache: the auth epochs are read again");
            failing = false;
            continue;
        }
        tk_authcache_poll_failed(app->authcache);
        if (!failing)
            tk_warn("auth cache: cannot read the auth epochs (%s); cached authentications "
                    "are trusted for %d ms after the last good read, then the store decides",
                    e.msg, TK_AUTHCACHE_TRUST_MS);
        failing = true;
    }
}

/* ---- metrics: callback series over tk_authcache_stats ---- */

enum { M_LOOKUPS, M_EVICTIONS, M_INVALIDATIONS, M_POLL_FAILURES, M_ENTRIES };

static double stat_of(struct tk_app *app, int which, size_t idx)
{
    struct tk_authcache_stats st;
    tk_authcache_stats(app->authcache, &st);
    if (!st.enabled) return NAN; /* auth_cache_size 0: no samples */
    switch (which) {
    case M_LOOKUPS: /* hit, miss (cached nowhere or expired), untrusted */
        return idx == 0   ? (double)st.hits
               : idx == 1 ? (double)(st.misses - st.untrusted)
                          : (double)st.untrusted;
    case M_EVICTIONS:
        return (double)st.evictions;
    case M_INVALIDATIONS:
        return (double)st.invalidations;
    case M_POLL_FAILURES:
        return (double)st.poll_failures;
    default:
        return (double)st.entries;
    }
}

static double m_lookups(void *arg, size_t idx)
{
    return stat_of(arg, M_LOOKUPS, idx);
}
static double m_evictions(void *arg, size_t idx)
{
    return stat_of(arg, M_EVICTIONS, idx);
}
static double m_invalidations(void *arg, size_t idx)
{
    return stat_of(arg, M_INVALIDATIONS, idx);
}
static double m_poll_failures(void *arg, size_t idx)
{
    return stat_of(arg, M_POLL_FAILURES, idx);
}
static double m_entries(void *arg, size_t idx)
{
    return stat_of(arg, M_ENTRIES, idx);
}

tk_rc tk_api_authcache_metrics(struct tk_app *app, struct tk_err *e)
{
    /* made here, before the HTTP server can render /metrics, so that the
     * callbacks never see the pointer change; the poller starts later */
    if (!app->authcache) app->authcache = tk_authcache_new(app->cfg->auth_cache_size);
    struct tk_metrics *m = app->metrics;
    static const char *const results[] = {"hit", "miss", "untrusted"};
    static const struct tk_dim result_dim = {"result", results, 3, NULL, NULL};
    bool ok =
        tk_metric_counter_fn(m, "tokend_auth_cache_lookups_total",
                             "Authentication cache lookups: hit, miss (not cached or expired), "
                             "untrusted (the last good poll of the auth epochs is over 1 s old).",
                             &result_dim, 1, m_lookups, app, e) &&
        tk_metric_counter_fn(m, "tokend_auth_cache_evictions_total",
                             "Authentication cache entries pushed out by a fill.", NULL, 0,
                             m_evictions, app, e) &&
        tk_metric_counter_fn(m, "tokend_auth_cache_invalidations_total",
                             "Authentication cache entries dropped because their tenant's auth "
                             "epoch moved (revoke, role change).",
                             NULL, 0, m_invalidations, app, e) &&
        tk_metric_counter_fn(m, "tokend_auth_cache_poll_failures_total",
                             "Failed reads of the tenants' auth epochs.", NULL, 0,
                             m_poll_failures, app, e) &&
        tk_metric_gauge_fn(m, "tokend_auth_cache_entries", "Authentication cache entries now.",
                           NULL, 0, m_entries, app, e);
    return ok ? TK_OK : TK_EINTERNAL;
}

void tk_api_authcache_start(struct tk_app *app)
{
    if (!app->authcache) app->authcache = tk_authcache_new(app->cfg->auth_cache_size);
    if (!app->authcache) {
        tk_info("auth cache: off (auth_cache_size 0): every authentication reads the store");
        return;
    }
    struct tk_err e;
    if (tk_worker_start(&app->authpoll, "auth epoch poller", authpoll_worker, app, &e) != TK_OK) {
        /* without the poller nothing is ever trusted: the cache is inert */
        tk_error("auth cache: %s; every authentication reads the store", e.msg);
    }
}

bool tk_api_authcache_stop(struct tk_app *app)
{
    if (tk_worker_stop(&app->authpoll, 5000)) return true;
    tk_warn("auth cache: the epoch poller is stuck in a store read; leaving the store to the "
            "process's exit");
    return false;
}
