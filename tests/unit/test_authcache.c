/* test_authcache.c: src/common/authcache.h (hit and miss, the size bound,
 * epoch invalidation and the race of a fill with it, the trust window when
 * polls fail, concurrent readers with invalidations) and the store half of
 * the auth epochs in src/operators (bump in the writing transaction,
 * changes in commit order, revoke and role change bump) on both backends. */
#include "unit.h"

#include "../../src/common/authcache.h"
#include "../../src/operators/operators.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const char T1[] = "01900000-0000-7000-8000-000000000001";
static const char T2[] = "01900000-0000-7000-8000-000000000002";

/* A key derived from n (spread over its bytes, as an HMAC would be). */
static void key_of(unsigned n, unsigned char k[TK_AUTHCACHE_KEY])
{
    uint64_t x = n * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < TK_AUTHCACHE_KEY; i++) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ULL;
        k[i] = (unsigned char)(x >> 56);
    }
}

static struct tk_authcache_entry entry(unsigned n, const char *tenant, int64_t epoch)
{
    struct tk_authcache_entry v;
    memset(&v, 0, sizeof v);
    v.kind = TK_PRINCIPAL_OPERATOR_TOKEN;
    snprintf(v.id, sizeof v.id, "01900000-0000-7000-8000-%012u", n);
    snprintf(v.tenant_id, sizeof v.tenant_id, "%s", tenant);
    snprintf(v.name, sizeof v.name, "token-%u", n);
    snprintf(v.role, sizeof v.role, "%s", n % 2 ? "viewer" : "admin");
    v.epoch = epoch;
    return v;
}

static bool get(struct tk_authcache *c, unsigned n, int64_t mono, struct tk_authcache_entry *out)
{
    unsigned char k[TK_AUTHCACHE_KEY];
    key_of(n, k);
    return tk_authcache_get(c, k, TK_PRINCIPAL_OPERATOR_TOKEN, tk_now_ms(), mono, out);
}

static bool put(struct tk_authcache *c, unsigned n, const char *tenant, int64_t epoch)
{
    unsigned char k[TK_AUTHCACHE_KEY];
    key_of(n, k);
    struct tk_authcache_entry v = entry(n, tenant, epoch);
    return tk_authcache_put(c, k, &v, tk_authcache_gen(c));
}

void test_authcache_hit_miss(void)
{
    /* 0 disables: no cache, every call a no-op */
    CHECK(tk_authcache_new(0) == NULL);
    struct tk_authcache_stats st;
    tk_authcache_stats(NULL, &st);
    CHECK(!st.enabled);
    struct tk_authcache_entry v;
    CHECK(!get(NULL, 1, 0, &v));
    CHECK(!put(NULL, 1, T1, 1));

    struct tk_authcache *c = tk_authcache_new(100);
    if (!CHECK(c)) return;
    int64_t now = 1000000;
    CHECK(put(c, 1, T1, 3));
    /* never polled: nothing is trusted, the store decides */
    CHECK(!get(c, 1, now, &v));
    tk_authcache_polled(c, now);
    CHECK(!get(c, 2, now, &v)); /* not cached */
    if (CHECK(get(c, 1, now, &v))) {
        CHECK_EQ_STR(v.id, "01900000-0000-7000-8000-000000000001");
        CHECK_EQ_STR(v.tenant_id, T1);
        CHECK_EQ_STR(v.name, "token-1");
        CHECK_EQ_STR(v.role, "viewer");
        CHECK_EQ_INT(v.epoch, 3);
    }
    /* another kind of principal never matches (the hash covers the prefix
     * anyway; this is the second lock) */
    unsigned char k[TK_AUTHCACHE_KEY];
    key_of(1, k);
    CHECK(!tk_authcache_get(c, k, TK_PRINCIPAL_CLIENT_TOKEN, tk_now_ms(), now, &v));
    /* replace: the newer fill wins */
    struct tk_authcache_entry w = entry(1, T1, 4);
    snprintf(w.role, sizeof w.role, "operator");
    CHECK(tk_authcache_put(c, k, &w, tk_authcache_gen(c)));
    CHECK(get(c, 1, now, &v) && !strcmp(v.role, "operator"));
    /* an expired entry misses and leaves */
    w.expires_at = tk_now_ms() - 1;
    CHECK(tk_authcache_put(c, k, &w, tk_authcache_gen(c)));
    CHECK(!get(c, 1, now, &v));
    w.expires_at = tk_now_ms() + 60000;
    CHECK(tk_authcache_put(c, k, &w, tk_authcache_gen(c)));
    CHECK(get(c, 1, now, &v));
    tk_authcache_stats(c, &st);
    CHECK(st.enabled);
    CHECK_EQ_INT(st.capacity, 100);
    CHECK_EQ_INT(st.entries, 1);
    CHECK_EQ_INT(st.hits, 3);
    CHECK_EQ_INT(st.misses, 4); /* untrusted, not cached, other kind, expired */
    CHECK_EQ_INT(st.untrusted, 1);
    tk_authcache_free(c);
    tk_authcache_free(NULL);
}

void test_authcache_eviction_bound(void)
{
    int64_t sizes[] = {1, 7, 8, 9, 100, 10000};
    for (size_t s = 0; s < TK_NELEM(sizes); s++) {
        struct tk_authcache *c = tk_authcache_new(sizes[s]);
        if (!CHECK(c)) return;
        for (unsigned n = 0; n < 5 * (unsigned)sizes[s] + 50; n++)
            put(c, n, T1, 1);
        struct tk_authcache_stats st;
        tk_authcache_stats(c, &st);
        if (st.entries > sizes[s] || st.capacity > sizes[s] || st.entries != st.capacity)
            FAILF("size %lld: %lld entries, capacity %lld", (long long)sizes[s],
                  (long long)st.entries, (long long)st.capacity);
        CHECK_EQ_INT(st.evictions, 5 * sizes[s] + 50 - st.entries);
        tk_authcache_free(c);
    }
    /* Within a bucket the least recently used goes: one bucket of 8, key 0
     * used between fills survives 100 other keys. */
    struct tk_authcache *c = tk_authcache_new(8);
    if (!CHECK(c)) return;
    tk_authcache_polled(c, 0);
    struct tk_authcache_entry v;
    put(c, 0, T1, 1);
    for (unsigned n = 1; n <= 100; n++) {
        put(c, n, T1, 1);
        if (!get(c, 0, 0, &v)) FAILF("key 0 was evicted at fill %u", n);
    }
    CHECK(get(c, 100, 0, &v)); /* the newest is there */
    CHECK(!get(c, 1, 0, &v));  /* an old one is gone */
    tk_authcache_free(c);
}

void test_authcache_epoch_invalidation(void)
{
    struct tk_authcache *c = tk_authcache_new(1000);
    if (!CHECK(c)) return;
    tk_authcache_polled(c, 0);
    struct tk_authcache_entry v;
    for (unsigned n = 0; n < 10; n++)
        put(c, n, n < 5 ? T1 : T2, 3);
    put(c, 20, T1, 7); /* filled after T1's epoch moved to 7 */
    /* T1's epoch moves to 7: its entries of epoch 3 go, T2's stay */
    CHECK_EQ_INT(tk_authcache_invalidate(c, T1, 7), 5);
    for (unsigned n = 0; n < 10; n++)
        if (get(c, n, 0, &v) != (n >= 5)) FAILF("entry %u after T1 moved", n);
    CHECK(get(c, 20, 0, &v));
    /* seen again (the poller after the writer's own call): nothing more */
    CHECK_EQ_INT(tk_authcache_invalidate(c, T1, 7), 0);
    CHECK(get(c, 20, 0, &v));

    /* The race: a fill read the row (epoch 7) before T1 moved to 8; the
     * poller dropped T1's entries; then the fill arrives: refused. */
    uint64_t gen = tk_authcache_gen(c);
    tk_authcache_invalidate(c, T1, 8);
    unsigned char k[TK_AUTHCACHE_KEY];
    key_of(30, k);
    struct tk_authcache_entry stale = entry(30, T1, 7);
    CHECK(!tk_authcache_put(c, k, &stale, gen));
    CHECK(!get(c, 30, 0, &v));
    /* a fill that began after: accepted */
    CHECK(tk_authcache_put(c, k, &stale, tk_authcache_gen(c)));
    /* clear drops everything */
    tk_authcache_clear(c);
    struct tk_authcache_stats st;
    tk_authcache_stats(c, &st);
    CHECK_EQ_INT(st.entries, 0);
    CHECK_EQ_INT(st.invalidations, 5 + 1 + 6); /* T1's five; 20 at epoch 8; T2's five and 30 */
    CHECK_EQ_INT(st.refused_fills, 1);
    tk_authcache_free(c);
}

void test_authcache_trust_window(void)
{
    struct tk_authcache *c = tk_authcache_new(10);
    if (!CHECK(c)) return;
    struct tk_authcache_entry v;
    put(c, 1, T1, 1);
    tk_authcache_polled(c, 5000);
    CHECK(get(c, 1, 5000, &v));
    CHECK(get(c, 1, 5000 + TK_AUTHCACHE_TRUST_MS, &v));
    /* the polls fail from here: the entry stays, but is not trusted */
    tk_authcache_poll_failed(c);
    tk_authcache_poll_failed(c);
    CHECK(!get(c, 1, 5000 + TK_AUTHCACHE_TRUST_MS + 1, &v));
    CHECK(!get(c, 1, 60000, &v));
    /* a good poll again: trusted again */
    tk_authcache_polled(c, 60000);
    CHECK(get(c, 1, 60010, &v));
    struct tk_authcache_stats st;
    tk_authcache_stats(c, &st);
    CHECK_EQ_INT(st.poll_failures, 2);
    CHECK_EQ_INT(st.untrusted, 2);
    CHECK_EQ_INT(st.entries, 1);
    tk_authcache_free(c);
}

/* ---- concurrency: readers while a writer fills and invalidates ---- */

#define CKEYS 256

struct conc {
    struct tk_authcache *c;
    atomic_bool stop;
    atomic_long hits, bad;
};

static void *reader(void *arg)
{
    struct conc *x = arg;
    unsigned n = 0;
    while (!atomic_load(&x->stop)) {
        struct tk_authcache_entry v;
        unsigned k = n++ % CKEYS;
        if (!get(x->c, k, tk_mono_ms(), &v)) continue;
        atomic_fetch_add(&x->hits, 1);
        /* a hit is a whole entry of this key, never a torn one */
        struct tk_authcache_entry want = entry(k, k % 2 ? T2 : T1, v.epoch);
        if (v.kind != want.kind || strcmp(v.id, want.id) || strcmp(v.tenant_id, want.tenant_id) ||
            strcmp(v.name, want.name) || strcmp(v.role, want.role) || v.expires_at)
            atomic_fetch_add(&x->bad, 1);
    }
    return NULL;
}

void test_authcache_concurrent(void)
{
    struct conc x = {.c = tk_authcache_new(CKEYS / 2)};
    if (!CHECK(x.c)) return;
    atomic_init(&x.stop, false);
    atomic_init(&x.hits, 0);
    atomic_init(&x.bad, 0);
    tk_authcache_polled(x.c, tk_mono_ms() + 60000);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, reader, &x) == 0);
    /* the writer: fills (with the gen read first, as authentication does),
     * and every 50 fills a tenant's epoch moves */
    int64_t epoch = 1;
    /* at least 40000 rounds, and on until the readers have had hits (a
     * loaded machine may not schedule them at first), 20 s at most */
    int64_t until = tk_mono_ms() + 20000;
    for (unsigned n = 0; n < 40000 || (atomic_load(&x.hits) < 100 && tk_mono_ms() < until);
         n++) {
        unsigned k = n % CKEYS;
        unsigned char key[TK_AUTHCACHE_KEY];
        key_of(k, key);
        uint64_t gen = tk_authcache_gen(x.c);
        struct tk_authcache_entry v = entry(k, k % 2 ? T2 : T1, epoch);
        tk_authcache_put(x.c, key, &v, gen);
        if (n % 50 == 49) tk_authcache_invalidate(x.c, n % 100 == 49 ? T1 : T2, ++epoch);
    }
    atomic_store(&x.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&x.bad), 0);
    CHECK(atomic_load(&x.hits) >= 100);
    /* after the last invalidation of each tenant no older entry is left */
    tk_authcache_invalidate(x.c, T1, epoch + 1);
    tk_authcache_invalidate(x.c, T2, epoch + 1);
    struct tk_authcache_stats st;
    tk_authcache_stats(x.c, &st);
    CHECK_EQ_INT(st.entries, 0);
    CHECK(st.entries <= st.capacity);
    tk_authcache_free(x.c);
}

/* ---- the store half: auth epochs ---- */

static bool open_keyring(const char *dir, struct tk_db *db, struct tk_keyring **k)
{
    struct tk_err e;
    char shares[1][TK_SHARE_MAX];
    *k = NULL;
    if (!CHECK_OK(tk_keyring_new(dir, k, &e), &e)) return false;
    bool ok = CHECK_OK(tk_keyring_init(*k, db, 1, 1, NULL, shares, NULL, &e), &e);
    tk_wipe(shares, sizeof shares);
    return ok;
}

static int64_t tenant_seq(struct tk_db *db, const char *tenant)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t s = -1;
    if (tk_db_exec(db, "SELECT auth_seq FROM tenants WHERE id = ?", TK_ARGS(TK_TEXT(tenant)), &r,
                   &e) == TK_OK &&
        tk_rows_count(r) == 1)
        s = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return s;
}

void test_authcache_store_epochs(struct fx *f)
{
    struct tk_err e;
    struct tk_keyring *k = NULL;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char def[TK_UUID_LEN + 1], other[TK_UUID_LEN + 1];
    int64_t at = 0, seq = -1, clock = -1;
    if (!open_keyring(f->dir, db, &k) || !CHECK_OK(tk_tenant_default(db, def, &e), &e) ||
        !CHECK_OK(tk_tenant_create(db, "other", other, &at, &e), &e))
        goto out;
    CHECK_OK(tk_tenant_auth_clock(db, &clock, &e), &e);
    CHECK_EQ_INT(clock, 0);
    /* outside a transaction: refused, nothing changes */
    CHECK_EQ_INT(tk_tenant_auth_bump(db, def, &seq, &e), TK_EINTERNAL);
    CHECK_EQ_INT(tenant_seq(db, def), 0);

    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1], hash[TK_HASH_HEX];
    if (!CHECK_OK(tk_optoken_create(db, k, def, "ci", "admin", 0, tok, id, &e), &e)) goto out;
    CHECK_OK(tk_keyring_hash(k, tok, strlen(tok), hash, NULL, &e), &e);
    struct tk_principal p;
    int64_t exp = -1, epoch = -1;
    CHECK_OK(tk_optoken_lookup_hash(db, hash, &p, &exp, &epoch, &e), &e);
    CHECK_EQ_INT(exp, 0);
    CHECK_EQ_INT(epoch, 0);

    /* a role change bumps the tenant to the next clock value */
    char old[16] = "";
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_optoken_set_role(db, def, id, "viewer", old, &seq, &e), &e);
    CHECK_OK(tk_db_commit(db, &e), &e);
    CHECK_EQ_STR(old, "admin");
    CHECK_EQ_INT(seq, 1);
    CHECK_EQ_INT(tenant_seq(db, def), 1);
    CHECK_OK(tk_optoken_lookup_hash(db, hash, &p, &exp, &epoch, &e), &e);
    CHECK_EQ_STR(p.role, "viewer");
    CHECK_EQ_INT(epoch, 1);
    /* the same role again: nothing written, no bump */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_optoken_set_role(db, def, id, "viewer", old, &seq, &e), &e);
    CHECK_OK(tk_db_commit(db, &e), &e);
    CHECK_EQ_INT(seq, 0);
    CHECK_EQ_INT(tenant_seq(db, def), 1);
    /* another tenant's token: not found, and a rolled-back bump leaves nothing */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_EQ_INT(tk_optoken_set_role(db, other, id, "admin", old, &seq, &e), TK_ENOTFOUND);
    CHECK_OK(tk_tenant_auth_bump(db, other, &seq, &e), &e);
    tk_db_rollback(db);
    CHECK_EQ_INT(tenant_seq(db, other), 0);
    CHECK_OK(tk_tenant_auth_clock(db, &clock, &e), &e);
    CHECK_EQ_INT(clock, 1);

    /* a bump of the other tenant, then a revoke in the default one */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_tenant_auth_bump(db, other, &seq, &e), &e);
    CHECK_OK(tk_db_commit(db, &e), &e);
    CHECK_EQ_INT(seq, 2);
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_optoken_revoke(db, def, id, &seq, &e), &e);
    CHECK_OK(tk_db_commit(db, &e), &e);
    CHECK_EQ_INT(seq, 3);

    /* the changes, lowest first, from a cursor */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_tenant_auth_changes(db, 0, 10, &r, &e), &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 2)) {
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), other);
        CHECK_EQ_INT(tk_rows_int(r, 0, 1), 2);
        CHECK_EQ_STR(tk_rows_text(r, 1, 0), def);
        CHECK_EQ_INT(tk_rows_int(r, 1, 1), 3);
    }
    tk_rows_free(r);
    r = NULL;
    if (CHECK_OK(tk_tenant_auth_changes(db, 2, 10, &r, &e), &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 1))
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), def);
    tk_rows_free(r);
    r = NULL;
    if (CHECK_OK(tk_tenant_auth_changes(db, 3, 10, &r, &e), &e)) CHECK_EQ_INT(tk_rows_count(r), 0);
    tk_rows_free(r);
    /* an unknown tenant: the bump says so */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_EQ_INT(tk_tenant_auth_bump(db, T1, &seq, &e), TK_ENOTFOUND);
    tk_db_rollback(db);
out:
    tk_store_put(db);
    tk_keyring_free(k);
}
