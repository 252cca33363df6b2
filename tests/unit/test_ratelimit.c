/* test_ratelimit.c: src/api/ratelimit.c -- the failure budget per address,
 * windows, coalescing of events, and a table that a flood of addresses
 * cannot grow. */
#include "unit.h"

#include "../../src/api/ratelimit.h"

#include <stdio.h>

void test_ratelimit_budget(void)
{
    struct tk_ratelimit *rl = tk_ratelimit_new(3, 10);
    struct tk_ratelimit_verdict v;
    int64_t t0 = 1000000;
    int retry = 0;
    CHECK(!tk_ratelimit_blocked(rl, "10.0.0.1", t0, &retry));
    /* the first failure of a reason is recorded, repeats are not */
    CHECK(tk_ratelimit_fail(rl, "10.0.0.1", 1, t0, &v));
    CHECK(v.record);
    CHECK(tk_ratelimit_fail(rl, "10.0.0.1", 1, t0 + 1, &v));
    CHECK(!v.record);
    CHECK(tk_ratelimit_fail(rl, "10.0.0.1", 2, t0 + 2, &v)); /* another reason */
    CHECK(v.record);
    CHECK_EQ_INT(v.fails, 3);
    CHECK(tk_ratelimit_blocked(rl, "10.0.0.1", t0 + 3, &retry));
    CHECK_EQ_INT(retry, 10);
    /* over the budget: refused, and one event says so */
    CHECK(!tk_ratelimit_fail(rl, "10.0.0.1", 1, t0 + 4000, &v));
    CHECK(v.blocked && v.record);
    CHECK_EQ_INT(v.retry_s, 6);
    CHECK(!tk_ratelimit_fail(rl, "10.0.0.1", 2, t0 + 5000, &v));
    CHECK(v.blocked && !v.record);
    /* another address has its own budget */
    CHECK(!tk_ratelimit_blocked(rl, "10.0.0.2", t0 + 5000, &retry));
    /* a new window starts afresh */
    CHECK(!tk_ratelimit_blocked(rl, "10.0.0.1", t0 + 10000, &retry));
    CHECK(tk_ratelimit_fail(rl, "10.0.0.1", 1, t0 + 10000, &v));
    CHECK(v.record);
    CHECK_EQ_INT(v.fails, 1);
    tk_ratelimit_free(rl);
    /* limit 0: never blocks, still coalesces */
    rl = tk_ratelimit_new(0, 10);
    for (int i = 0; i < 100; i++) CHECK(tk_ratelimit_fail(rl, "::1", 0, t0, &v));
    CHECK(!v.record);
    CHECK(!tk_ratelimit_blocked(rl, "::1", t0, &retry));
    tk_ratelimit_free(rl);
}

/* A flood of a million distinct addresses: the table stays as it is (no
 * allocation happens after new), and an address that is failing all along
 * is still limited once the flood is over. */
void test_ratelimit_bounded(void)
{
    struct tk_ratelimit *rl = tk_ratelimit_new(5, 10);
    struct tk_ratelimit_verdict v;
    int64_t t0 = 5000000;
    char addr[64];
    int records = 0;
    for (int i = 0; i < 1000000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        tk_ratelimit_fail(rl, addr, 0, t0 + i / 1000, &v);
        records += v.record;
    }
    CHECK_EQ_INT(records, 1000000); /* each a first failure */
    /* the attacker's own address, after the flood: its budget works */
    for (int i = 0; i < 5; i++) CHECK(tk_ratelimit_fail(rl, "192.0.2.1", 0, t0 + 2000, &v));
    CHECK(!tk_ratelimit_fail(rl, "192.0.2.1", 0, t0 + 2001, &v));
    int retry = 0;
    CHECK(tk_ratelimit_blocked(rl, "192.0.2.1", t0 + 2002, &retry));
    tk_ratelimit_free(rl);
}
