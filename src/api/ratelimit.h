/*
 * ratelimit.h: a budget of failures per source address and window, in
 * memory of a fixed size (see ratelimit.c), and which of them are the first
 * of their reason, address and window.
 */
#ifndef TK_RATELIMIT_H
#define TK_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define TK_ADDR_MAX 64 /* a numeric IPv6 address with a zone fits */

struct tk_ratelimit;

/* limit failures per window_s seconds (limit 0: never blocks). */
struct tk_ratelimit *tk_ratelimit_new(int limit, int window_s);
void tk_ratelimit_free(struct tk_ratelimit *rl);

/* Has addr used up its budget in the current window? Then *retry_s is the
 * number of seconds until the window ends (at least 1). */
bool tk_ratelimit_blocked(struct tk_ratelimit *rl, const char *addr, int64_t now_ms,
                          int *retry_s);

struct tk_ratelimit_verdict {
    int fails;    /* failures of addr in this window, this one included */
    bool blocked; /* over the budget: answer 429 */
    bool record;  /* the first failure of this reason in this window, or the first one
                     over the budget (auth.c records that one; failures within the
                     budget go to the event log's own coalescing) */
    int retry_s;  /* seconds until the window ends */
};
/* Count one failure of reason (0..30) from addr. Returns !v->blocked. */
bool tk_ratelimit_fail(struct tk_ratelimit *rl, const char *addr, unsigned reason,
                       int64_t now_ms, struct tk_ratelimit_verdict *v);
int tk_ratelimit_window_s(const struct tk_ratelimit *rl);

#endif
