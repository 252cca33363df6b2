/*
 * authcache.h: a bounded, thread-safe cache of issued-secret lookups, so
 * that an authenticated request does no store read (issue 16 item 3).
 *
 * The key is the keyed hash (HMAC-SHA256 under the keyring's hash key) of
 * the presented secret, the same value the store holds: never the secret.
 * The value is what authentication needs: the principal's kind, id,
 * tenant, role and name, its expiry, and the tenant's auth epoch read in
 * the same statement as the row. Only successful lookups are cached: a
 * negative entry would let anyone who sends random well-formed tokens fill
 * the cache and evict the good ones, and failures must reach the store
 * anyway to be recorded in the event log.
 *
 * Layout: the entries live in buckets of up to 8 (set-associative; the
 * bucket sizes add up to max_entries exactly); a key chooses its bucket
 * from its first bytes (an HMAC is uniform), a full bucket evicts its
 * least recently used entry. Buckets are spread over 16 shards, each with
 * its own mutex, so readers on two threads rarely meet. The cache never
 * holds more than the max_entries it was made with.
 *
 * Invalidation is by tenant epoch: tk_authcache_invalidate(c, tenant, seq)
 * drops the tenant's entries filled at an epoch below seq (the poller calls
 * it for every tenant whose epoch moved; the writing node calls it at once
 * after its commit). A fill races with an invalidation (the row was read
 * before the change committed, the insert comes after the poller dropped
 * the tenant's entries): tk_authcache_gen is read before the store read and
 * handed to tk_authcache_put, which refuses the insert when any
 * invalidation happened in between.
 *
 * Fail closed: entries are trusted only while the last successful poll
 * (tk_authcache_polled) is at most TK_AUTHCACHE_TRUST_MS old; after that,
 * tk_authcache_get misses and the request goes to the store.
 */
#ifndef TK_AUTHCACHE_H
#define TK_AUTHCACHE_H

#include "tk.h"

#define TK_AUTHCACHE_KEY 32        /* bytes of the keyed hash */
#define TK_AUTHCACHE_TRUST_MS 1000 /* entries trusted this long after a good poll */
#define TK_AUTHCACHE_DEFAULT 10000 /* the auth_cache_size default */

/* What authentication needs of a principal. The strings are
 * NUL-terminated; sizes match struct tk_principal (operators.h). */
struct tk_authcache_entry {
    int kind; /* enum tk_principal_kind */
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char name[255];
    char role[16];
    char client_id[TK_UUID_LEN + 1]; /* client tokens: the client */
    char email[255];                 /* client tokens: the client's email */
    int64_t expires_at; /* wall-clock ms; 0: never */
    int64_t epoch;      /* the tenant's auth_seq when the row was read */
};

struct tk_authcache_stats {
    bool enabled;
    int64_t capacity; /* entries at most */
    int64_t entries;  /* entries now */
    uint64_t hits;
    uint64_t misses;        /* not cached, expired, or not trusted (see untrusted) */
    uint64_t untrusted;     /* of the misses: the last good poll was too old */
    uint64_t evictions;     /* entries pushed out by a fill into a full bucket */
    uint64_t invalidations; /* entries dropped because their tenant's epoch moved */
    uint64_t refused_fills; /* fills refused because an invalidation raced them */
    uint64_t poll_failures;
};

struct tk_authcache;

/* A cache of at most max_entries (> 0; 0 or less: NULL, no cache).
 * The caller frees it with tk_authcache_free (NULL: no-op). */
struct tk_authcache *tk_authcache_new(int64_t max_entries);
void tk_authcache_free(struct tk_authcache *c);

/* The entry for key, copied into *out, if it is cached, unexpired at
 * now_ms (wall clock) and the last good poll is recent at mono_ms: true (a
 * hit). Else false (a miss), and an expired entry is dropped. NULL c:
 * false, uncounted. */
bool tk_authcache_get(struct tk_authcache *c, const unsigned char key[TK_AUTHCACHE_KEY], int kind,
                      int64_t now_ms, int64_t mono_ms, struct tk_authcache_entry *out);

/* The invalidation generation, to read before the store lookup that will
 * fill an entry (0 for a NULL c). */
uint64_t tk_authcache_gen(const struct tk_authcache *c);

/* Insert or replace key's entry, unless an invalidation happened since gen
 * was read (then false, nothing stored). May evict the least recently used
 * entry of key's bucket. */
bool tk_authcache_put(struct tk_authcache *c, const unsigned char key[TK_AUTHCACHE_KEY],
                      const struct tk_authcache_entry *v, uint64_t gen);

/* The tenant's auth epoch is now seq: drop its entries filled below seq
 * (seq <= 0: all of them). Returns how many were dropped. */
int64_t tk_authcache_invalidate(struct tk_authcache *c, const char *tenant_id, int64_t seq);

/* Drop everything (counted as invalidations). */
void tk_authcache_clear(struct tk_authcache *c);

/* A poll of the epochs succeeded at mono_ms (entries are trusted until
 * mono_ms + TK_AUTHCACHE_TRUST_MS), or failed (counted). */
void tk_authcache_polled(struct tk_authcache *c, int64_t mono_ms);
void tk_authcache_poll_failed(struct tk_authcache *c);

/* A snapshot of the counters (all zero, enabled false, for a NULL c). */
void tk_authcache_stats(const struct tk_authcache *c, struct tk_authcache_stats *out);

#endif
