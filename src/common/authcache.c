/* authcache.c: see authcache.h. */
#include "authcache.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 8
#define SHARDS 16

struct slot {
    bool used;
    uint64_t stamp; /* the shard's tick at the last hit or fill: LRU within a bucket */
    unsigned char key[TK_AUTHCACHE_KEY];
    struct tk_authcache_entry v;
};

/* Padded to a cache line so that two threads on two shards do not share
 * one (padding rather than an alignment attribute: malloc does not promise
 * 64-byte alignment). */
struct shard {
    pthread_mutex_t mu;
    uint64_t tick;
    char pad[64 - (sizeof(pthread_mutex_t) + sizeof(uint64_t)) % 64];
};

struct tk_authcache {
    size_t nbuckets;
    size_t base, extra; /* bucket b holds base + (b < extra) entries: max_entries in all */
    int64_t capacity;
    struct slot *slots; /* nbuckets * WAYS; bucket b is slots[b * WAYS ..] */
    struct shard shard[SHARDS];
    atomic_uint_fast64_t gen;
    atomic_llong last_ok; /* mono ms of the last good poll */
    atomic_llong entries;
    atomic_uint_fast64_t hits, misses, untrusted, evictions, invalidations, refused, poll_failures;
};

#define BUMP(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

struct tk_authcache *tk_authcache_new(int64_t max_entries)
{
    if (max_entries <= 0) return NULL;
    struct tk_authcache *c = tk_calloc(1, sizeof *c);
    c->nbuckets = (size_t)(max_entries + WAYS - 1) / WAYS;
    c->base = (size_t)max_entries / c->nbuckets;
    c->extra = (size_t)max_entries % c->nbuckets;
    c->capacity = max_entries;
    c->slots = tk_calloc(c->nbuckets * WAYS, sizeof *c->slots);
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_init(&c->shard[i].mu, NULL);
    atomic_init(&c->gen, 1);
    atomic_init(&c->last_ok, LLONG_MIN / 2); /* never polled: nothing trusted */
    return c;
}

void tk_authcache_free(struct tk_authcache *c)
{
    if (!c) return;
    for (int i = 0; i < SHARDS; i++)
        pthread_mutex_destroy(&c->shard[i].mu);
    /* the entries name principals, not secrets; wiped all the same */
    tk_wipe(c->slots, c->nbuckets * WAYS * sizeof *c->slots);
    free(c->slots);
    free(c);
}

static size_t bucket_of(const struct tk_authcache *c, const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* an HMAC output: already uniform */
    return (size_t)(h % c->nbuckets);
}

static struct shard *shard_of(struct tk_authcache *c, size_t b)
{
    return &c->shard[b % SHARDS];
}

static size_t ways(const struct tk_authcache *c, size_t b)
{
    return c->base + (b < c->extra);
}

static struct slot *find(struct tk_authcache *c, size_t b, const unsigned char *key)
{
    struct slot *s = &c->slots[b * WAYS];
    for (size_t i = 0; i < ways(c, b); i++)
        if (s[i].used && memcmp(s[i].key, key, TK_AUTHCACHE_KEY) == 0) return &s[i];
    return NULL;
}

static void drop(struct tk_authcache *c, struct slot *s)
{
    tk_wipe(s, sizeof *s);
    atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
}

bool tk_authcache_get(struct tk_authcache *c, const unsigned char key[TK_AUTHCACHE_KEY], int kind,
                      int64_t now_ms, int64_t mono_ms, struct tk_authcache_entry *out)
{
    if (!c) return false;
    if (mono_ms - atomic_load(&c->last_ok) > TK_AUTHCACHE_TRUST_MS) {
        BUMP(c->misses);
        BUMP(c->untrusted);
        return false;
    }
    size_t b = bucket_of(c, key);
    struct shard *sh = shard_of(c, b);
    bool hit = false;
    pthread_mutex_lock(&sh->mu);
    struct slot *s = find(c, b, key);
    if (s && s->v.kind == kind) {
        if (s->v.expires_at && s->v.expires_at <= now_ms) {
            drop(c, s); /* the store says "expired" and records it */
        } else {
            s->stamp = ++sh->tick;
            *out = s->v;
            hit = true;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    BUMP(*(hit ? &c->hits : &c->misses));
    return hit;
}

uint64_t tk_authcache_gen(const struct tk_authcache *c)
{
    return c ? atomic_load(&c->gen) : 0;
}

bool tk_authcache_put(struct tk_authcache *c, const unsigned char key[TK_AUTHCACHE_KEY],
                      const struct tk_authcache_entry *v, uint64_t gen)
{
    if (!c) return false;
    size_t b = bucket_of(c, key);
    struct shard *sh = shard_of(c, b);
    pthread_mutex_lock(&sh->mu);
    /* The invalidation bumps gen before it scans the shards, and takes this
     * shard's lock to scan it: an insert that sees the old gen here is
     * either scanned (and dropped if stale) or was read after the change. */
    if (atomic_load(&c->gen) != gen) {
        pthread_mutex_unlock(&sh->mu);
        BUMP(c->refused);
        return false;
    }
    struct slot *s = find(c, b, key);
    if (!s) {
        struct slot *row = &c->slots[b * WAYS], *lru = NULL;
        for (size_t i = 0; i < ways(c, b) && !s; i++) {
            if (!row[i].used)
                s = &row[i];
            else if (!lru || row[i].stamp < lru->stamp)
                lru = &row[i];
        }
        if (!s) {
            s = lru;
            drop(c, s);
            BUMP(c->evictions);
        }
        s->used = true;
        memcpy(s->key, key, TK_AUTHCACHE_KEY);
        atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
    }
    s->v = *v;
    s->stamp = ++sh->tick;
    pthread_mutex_unlock(&sh->mu);
    return true;
}

int64_t tk_authcache_invalidate(struct tk_authcache *c, const char *tenant_id, int64_t seq)
{
    if (!c) return 0;
    atomic_fetch_add(&c->gen, 1); /* first: fills read before this are refused */
    int64_t n = 0;
    /* one pass per shard: its buckets are b = shard, shard + SHARDS, ... */
    for (size_t k = 0; k < SHARDS && k < c->nbuckets; k++) {
        struct shard *sh = &c->shard[k];
        pthread_mutex_lock(&sh->mu);
        for (size_t b = k; b < c->nbuckets; b += SHARDS) {
            struct slot *row = &c->slots[b * WAYS];
            for (size_t i = 0; i < ways(c, b); i++) {
                if (!row[i].used) continue;
                if (tenant_id && strcmp(row[i].v.tenant_id, tenant_id) != 0) continue;
                if (seq > 0 && row[i].v.epoch >= seq) continue;
                drop(c, &row[i]);
                n++;
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    atomic_fetch_add_explicit(&c->invalidations, (uint_fast64_t)n, memory_order_relaxed);
    return n;
}

void tk_authcache_clear(struct tk_authcache *c)
{
    tk_authcache_invalidate(c, NULL, 0);
}

void tk_authcache_polled(struct tk_authcache *c, int64_t mono_ms)
{
    if (c) atomic_store(&c->last_ok, mono_ms);
}

void tk_authcache_poll_failed(struct tk_authcache *c)
{
    if (c) BUMP(c->poll_failures);
}

void tk_authcache_stats(const struct tk_authcache *c, struct tk_authcache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c) return;
    struct tk_authcache *m = (struct tk_authcache *)c; /* atomics: loads only */
    out->enabled = true;
    out->capacity = c->capacity;
    out->entries = LOAD(m->entries);
    out->hits = LOAD(m->hits);
    out->misses = LOAD(m->misses);
    out->untrusted = LOAD(m->untrusted);
    out->evictions = LOAD(m->evictions);
    out->invalidations = LOAD(m->invalidations);
    out->refused_fills = LOAD(m->refused);
    out->poll_failures = LOAD(m->poll_failures);
}
