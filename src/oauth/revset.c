/*
 * revset.c: the in-memory revocation set (oauth.h). A chained hash table
 * of "j:<jti>" and "f:<family>" keys with the time each stops mattering,
 * behind a read-write lock: introspection only reads (many at once), the
 * poller and revocations write. It grows by doubling; purge drops the
 * expired entries.
 */
#include "oauth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    uint64_t h;
    int64_t expires_at;
    char key[]; /* "j:..." or "f:..." */
};

struct tk_revset {
    pthread_rwlock_t lock;
    struct entry **b;
    size_t nb, n;
};

#define KEY_MAX 256

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static bool make_key(const char *what, const char *value, char out[KEY_MAX])
{
    if (!what || !value || !value[0] || strlen(value) > KEY_MAX - 3) return false;
    out[0] = strcmp(what, "jti") == 0 ? 'j' : 'f';
    out[1] = ':';
    memcpy(out + 2, value, strlen(value) + 1);
    return true;
}

struct tk_revset *tk_revset_new(void)
{
    struct tk_revset *s = tk_calloc(1, sizeof *s);
    pthread_rwlock_init(&s->lock, NULL);
    s->nb = 64;
    s->b = tk_calloc(s->nb, sizeof *s->b);
    return s;
}

void tk_revset_free(struct tk_revset *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nb; i++)
        for (struct entry *x = s->b[i], *nx; x; x = nx) {
            nx = x->next;
            free(x);
        }
    free(s->b);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

static void grow(struct tk_revset *s)
{
    size_t nb = s->nb * 2;
    struct entry **b = tk_calloc(nb, sizeof *b);
    for (size_t i = 0; i < s->nb; i++)
        for (struct entry *x = s->b[i], *nx; x; x = nx) {
            nx = x->next;
            x->next = b[x->h & (nb - 1)];
            b[x->h & (nb - 1)] = x;
        }
    free(s->b);
    s->b = b;
    s->nb = nb;
}

void tk_revset_add(struct tk_revset *s, const char *what, const char *value, int64_t expires_at)
{
    char key[KEY_MAX];
    if (!make_key(what, value, key)) return;
    uint64_t h = fnv(key);
    pthread_rwlock_wrlock(&s->lock);
    struct entry *x = s->b[h & (s->nb - 1)];
    for (; x; x = x->next)
        if (x->h == h && strcmp(x->key, key) == 0) break;
    if (x) {
        if (expires_at > x->expires_at) x->expires_at = expires_at;
    } else {
        size_t n = strlen(key) + 1;
        x = tk_malloc(sizeof *x + n);
        memcpy(x->key, key, n);
        x->h = h;
        x->expires_at = expires_at;
        x->next = s->b[h & (s->nb - 1)];
        s->b[h & (s->nb - 1)] = x;
        if (++s->n > s->nb) grow(s);
    }
    pthread_rwlock_unlock(&s->lock);
}

bool tk_revset_has(struct tk_revset *s, const char *what, const char *value, int64_t now_ms)
{
    char key[KEY_MAX];
    if (!s || !make_key(what, value, key)) return false;
    uint64_t h = fnv(key);
    bool found = false;
    pthread_rwlock_rdlock(&s->lock);
    for (struct entry *x = s->b[h & (s->nb - 1)]; x; x = x->next)
        if (x->h == h && strcmp(x->key, key) == 0) {
            found = x->expires_at >= now_ms;
            break;
        }
    pthread_rwlock_unlock(&s->lock);
    return found;
}

size_t tk_revset_purge(struct tk_revset *s, int64_t now_ms)
{
    size_t dropped = 0;
    pthread_rwlock_wrlock(&s->lock);
    for (size_t i = 0; i < s->nb; i++)
        for (struct entry **pp = &s->b[i]; *pp;) {
            struct entry *x = *pp;
            if (x->expires_at < now_ms) {
                *pp = x->next;
                free(x);
                dropped++;
            } else {
                pp = &x->next;
            }
        }
    s->n -= dropped;
    pthread_rwlock_unlock(&s->lock);
    return dropped;
}

size_t tk_revset_size(struct tk_revset *s)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->n;
    pthread_rwlock_unlock(&s->lock);
    return n;
}
