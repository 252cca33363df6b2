/* ratelimit.c: failures per source address, in a table of fixed size.
 *
 * Each source address (hashed with a key drawn at start, so that nobody can
 * aim addresses at one bucket) owns a slot for a fixed window: the failures
 * counted in it and which failure reasons already left an event. A slot is
 * found among the RL_WAYS slots of its bucket; when all of them belong to
 * other addresses, the one whose window is oldest is taken over (LRU by
 * window). Memory is therefore RL_SLOTS slots whatever a flood of addresses
 * does; an address evicted early merely starts a new window.
 *
 * One mutex guards the table: a few comparisons per failure, and successes
 * with no failure behind them never come here. */
#include "ratelimit.h"

#include "../common/tk.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define RL_SLOTS 4096 /* a power of two */
#define RL_WAYS 8

struct slot {
    char addr[TK_ADDR_MAX];
    int64_t window_ms; /* start of the window; 0: free */
    int fails;
    uint32_t recorded; /* reasons that left an event in this window */
};

struct tk_ratelimit {
    pthread_mutex_t mu;
    int limit;
    int64_t window_ms;
    uint64_t key[2];
    struct slot slots[RL_SLOTS];
};

struct tk_ratelimit *tk_ratelimit_new(int limit, int window_s)
{
    struct tk_ratelimit *rl = tk_calloc(1, sizeof *rl);
    pthread_mutex_init(&rl->mu, NULL);
    rl->limit = limit;
    rl->window_ms = (int64_t)window_s * 1000;
    tk_random(rl->key, sizeof rl->key);
    return rl;
}

void tk_ratelimit_free(struct tk_ratelimit *rl)
{
    if (!rl) return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

/* A keyed FNV-1a variant: the key makes the bucket of an address
 * unpredictable from outside. */
static uint64_t hash(const struct tk_ratelimit *rl, const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ rl->key[0];
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= rl->key[1];
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* The slot of addr, in its current window (taken over or reset when
 * needed). Called with the mutex held. */
static struct slot *find(struct tk_ratelimit *rl, const char *addr, int64_t now)
{
    size_t base = (size_t)(hash(rl, addr) & (RL_SLOTS - 1)) & ~(size_t)(RL_WAYS - 1);
    struct slot *victim = NULL, *s = NULL;
    for (size_t i = 0; i < RL_WAYS; i++) {
        struct slot *c = &rl->slots[base + i];
        if (c->window_ms && !strcmp(c->addr, addr)) {
            s = c;
            break;
        }
        if (!victim || c->window_ms < victim->window_ms) victim = c;
    }
    if (!s) {
        s = victim;
        snprintf(s->addr, sizeof s->addr, "%s", addr);
        s->window_ms = 0;
    }
    if (!s->window_ms || now - s->window_ms >= rl->window_ms) {
        s->window_ms = now;
        s->fails = 0;
        s->recorded = 0;
    }
    return s;
}

static int retry_after(const struct tk_ratelimit *rl, const struct slot *s, int64_t now)
{
    int64_t left = s->window_ms + rl->window_ms - now;
    int secs = (int)((left + 999) / 1000);
    return secs < 1 ? 1 : secs;
}

bool tk_ratelimit_blocked(struct tk_ratelimit *rl, const char *addr, int64_t now_ms,
                          int *retry_s)
{
    if (!rl || rl->limit <= 0) return false;
    pthread_mutex_lock(&rl->mu);
    struct slot *s = find(rl, addr, now_ms);
    bool blocked = s->fails >= rl->limit;
    if (blocked && retry_s) *retry_s = retry_after(rl, s, now_ms);
    pthread_mutex_unlock(&rl->mu);
    return blocked;
}

bool tk_ratelimit_fail(struct tk_ratelimit *rl, const char *addr, unsigned reason,
                       int64_t now_ms, struct tk_ratelimit_verdict *v)
{
    memset(v, 0, sizeof *v);
    if (!rl) {
        v->record = true;
        return true;
    }
    pthread_mutex_lock(&rl->mu);
    struct slot *s = find(rl, addr, now_ms);
    if (s->fails < INT32_MAX) s->fails++;
    v->fails = s->fails;
    v->blocked = rl->limit > 0 && s->fails > rl->limit;
    /* over the budget, one event says so for the rest of the window */
    uint32_t bit = v->blocked ? 1u << 31 : 1u << (reason > 30 ? 30 : reason);
    v->record = !(s->recorded & bit);
    s->recorded |= bit;
    v->retry_s = retry_after(rl, s, now_ms);
    pthread_mutex_unlock(&rl->mu);
    return !v->blocked;
}

int tk_ratelimit_window_s(const struct tk_ratelimit *rl)
{
    return rl ? (int)(rl->window_ms / 1000) : 0;
}
