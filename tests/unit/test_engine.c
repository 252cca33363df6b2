/* test_engine.c: the refresh engine's arithmetic (when a connection comes
 * due, how long a lease lasts) and its status counts on both backends
 * (the gauges of /metrics come from a periodic count, never a query at
 * scrape time). The engine's refreshes are tested end to end in
 * tests/e2e/engine.test.mjs. */
#include "unit.h"

#include "../../src/common/metrics.h"
#include "../../src/operators/operators.h"
#include "../../src/upstream/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- when a connection comes due ---- */

/* n samples of tk_conn_next_refresh_at, all in [lo, hi]; at least two
 * distinct (the jitter) when want_spread. */
static void due_in(const struct tk_refresh_ctx *ctx, int64_t issued, int64_t exp, int64_t rexp,
                   int64_t now, int64_t lo, int64_t hi, bool want_spread, int line)
{
    int64_t first = 0;
    bool spread = false;
    for (int i = 0; i < 300; i++) {
        int64_t at = tk_conn_next_refresh_at(ctx, issued, exp, rexp, now);
        if (at < lo || at > hi) {
            FAILF("line %d: next_refresh_at %lld is outside [%lld, %lld] (relative to expiry: "
                  "%lld)",
                  line, (long long)at, (long long)lo, (long long)hi, (long long)(at - exp));
            return;
        }
        if (i == 0) first = at;
        spread |= at != first;
    }
    if (want_spread && !spread) FAILF("line %d: no jitter in 300 samples", line);
}

void test_engine_schedule(void)
{
    const int64_t T = INT64_C(1800000000000), H = 3600 * 1000;
    struct tk_refresh_ctx ctx = {.ahead_s = 300, .ahead_percent = 10, .max_idle_s = 86400};
    /* an hour's token: 10% (360 s) beats 300 s; jitter up to a tenth of it */
    due_in(&ctx, T, T + H, 0, T, T + H - 396000, T + H - 360000, true, __LINE__);
    /* 1000 s: 300 s beats 100 s */
    due_in(&ctx, T, T + 1000000, 0, T, T + 1000000 - 330000, T + 1000000 - 300000, true, __LINE__);
    /* the defaults are the same (0: 300 s, 10%) */
    struct tk_refresh_ctx zero = {0};
    due_in(&zero, T, T + H, 0, T, T + H - 396000, T + H - 360000, true, __LINE__);
    /* a day's token at 50%: half a day ahead */
    struct tk_refresh_ctx half = {.ahead_s = 300, .ahead_percent = 50};
    due_in(&half, T, T + 24 * H, 0, T, T + 12 * H - 12 * H / 10, T + 12 * H, true, __LINE__);
    /* a refresh token that expires unused: at most max_idle after the last refresh */
    struct tk_refresh_ctx idle = {.ahead_s = 300, .ahead_percent = 10, .max_idle_s = 600};
    due_in(&idle, T, T + 30 * 24 * H, T + 60 * 24 * H, T, T + 600000, T + 600000, false,
           __LINE__);
    /* ... not when the refresh token's expiry is unknown */
    due_in(&idle, T, T + H, 0, T, T + H - 396000, T + H - 360000, true, __LINE__);
    /* ... and the earlier of the two wins: 900 s - 300 s (- jitter) is before 600 s of idle */
    due_in(&idle, T, T + 900000, T + 60 * 24 * H, T, T + 570000, T + 600000, true, __LINE__);
    due_in(&idle, T, T + 1200000, T + 60 * 24 * H, T, T + 600000, T + 600000, false, __LINE__);
    /* never before now: an expired token, or one shorter than the margin, is due at once */
    due_in(&ctx, T - H, T - 1000, 0, T, T, T, false, __LINE__);
    due_in(&ctx, T, T + 60000, 0, T, T, T, false, __LINE__);
    /* a token issued in the future of its expiry (a lying store): still not before now */
    due_in(&ctx, T + H, T, 0, T, T, T, false, __LINE__);

    /* the lease outlives a refresh: twice the upstream timeout and 5 s */
    CHECK_EQ_INT(tk_engine_lease_ms(30000), 65000);
    CHECK_EQ_INT(tk_engine_lease_ms(0), 65000);
    CHECK_EQ_INT(tk_engine_lease_ms(2000), 9000);
}

/* ---- the status counts behind tokend_connections ---- */

static bool add_conn(struct tk_db *db, const char *tenant, const char *app, int i,
                     const char *status, int64_t expires_at)
{
    char id[TK_UUID_LEN + 1];
    tk_uuid7(id);
    char label[32];
    snprintf(label, sizeof label, "c%d", i);
    struct tk_err e;
    int64_t now = tk_now_ms();
    return CHECK_OK(
        tk_db_exec(db,
                   "INSERT INTO connections (id, tenant_id, app_id, label, access_token, "
                   "refresh_token, token_type, scopes, status, expires_at, issued_at, "
                   "next_refresh_at, failure_count, version, created_at, updated_at) VALUES (?, ?, "
                   "?, ?, 'ENC:v1:x', NULL, 'Bearer', '[]', ?, ?, ?, NULL, 0, 1, ?, ?)",
                   TK_ARGS(TK_TEXT(id), TK_TEXT(tenant), TK_TEXT(app), TK_TEXT(label),
                           TK_TEXT(status), TK_INT(expires_at), TK_INT(now), TK_INT(now),
                           TK_INT(now)),
                   NULL, &e),
        &e);
}

/* The value of one sample line of text ("name{labels} value"); NAN if absent. */
static double sample(const char *text, const char *line_start)
{
    const char *p = text;
    size_t n = strlen(line_start);
    while ((p = strstr(p, line_start))) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1e300;
}

void test_engine_counts(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tenant[TK_UUID_LEN + 1], app[TK_UUID_LEN + 1];
    struct tk_catalog *cat = NULL;
    struct tk_metrics *m = NULL;
    struct tk_engine *g = NULL;
    struct tk_buf b;
    tk_buf_init(&b, 1 << 20);
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;
    tk_uuid7(app);
    int64_t now = tk_now_ms();
    if (!CHECK_OK(tk_db_exec(db,
                             "INSERT INTO provider_apps (id, tenant_id, provider, name, client_id, "
                             "scopes, environment, params, overrides, created_at, updated_at) "
                             "VALUES (?, ?, 'generic-oauth2', 'a', 'cid', '[]', 'production', "
                             "'{}', '{}', ?, ?)",
                             TK_ARGS(TK_TEXT(app), TK_TEXT(tenant), TK_INT(now), TK_INT(now)),
                             NULL, &e),
                  &e))
        goto out;
    int i = 0;
    for (int k = 0; k < 3; k++) add_conn(db, tenant, app, i++, "ok", now + 3600 * 1000);
    add_conn(db, tenant, app, i++, "ok", now + 100 * 1000); /* within refresh_ahead */
    add_conn(db, tenant, app, i++, "ok", now - 1000);        /* expired */
    add_conn(db, tenant, app, i++, "refresh_error", now + 50 * 1000); /* the soonest */
    for (int k = 0; k < 4; k++)
        add_conn(db, tenant, app, i++, "needs_reconnect", now - 3600 * 1000); /* not counted */
    add_conn(db, tenant, app, i++, "disabled", now - 7200 * 1000);
    tk_store_put(db);
    db = NULL;

    if (!CHECK_OK(tk_catalog_load(NULL, &cat, &e), &e)) goto out;
    m = tk_metrics_new();
    if (!CHECK_OK(tk_engine_new(cat, m, &g, &e), &e)) goto out;
    /* before any count: no samples */
    if (!CHECK_OK(tk_metrics_render(m, &b), &e)) goto out;
    CHECK(!strstr(b.data, "tokend_connections{"));
    CHECK(!strstr(b.data, "\ntokend_connections_soonest_expiry_seconds "));
    /* engine off (concurrency 0): only the counts run */
    struct tk_refresh_ctx ctx = {.store = f->st, .ahead_s = 300};
    struct tk_engine_opts o = {.owner = "unit/engine", .concurrency = 0, .stats_ms = 100,
                               .idle_ms = 50};
    if (!CHECK_OK(tk_engine_start(g, &ctx, &o, &e), &e)) goto out;
    bool seen = false;
    for (int w = 0; w < 200 && !seen; w++) {
        b.len = 0;
        if (b.data) b.data[0] = '\0';
        tk_metrics_render(m, &b);
        seen = b.data && strstr(b.data, "tokend_connections{status=\"ok\"}");
        if (!seen) usleep(25 * 1000);
    }
    if (!CHECK(seen)) goto out;
    CHECK_EQ_INT((int)sample(b.data, "tokend_connections{status=\"ok\"}"), 3);
    CHECK_EQ_INT((int)sample(b.data, "tokend_connections{status=\"expiring_soon\"}"), 2);
    CHECK_EQ_INT((int)sample(b.data, "tokend_connections{status=\"refresh_error\"}"), 1);
    CHECK_EQ_INT((int)sample(b.data, "tokend_connections{status=\"needs_reconnect\"}"), 4);
    CHECK_EQ_INT((int)sample(b.data, "tokend_connections{status=\"disabled\"}"), 1);
    /* the soonest among ok and refresh_error: the expired ok one, a second ago */
    double soon = sample(b.data, "tokend_connections_soonest_expiry_seconds");
    CHECK(soon < 0 && soon > -60);
    /* attempts by provider: counted for catalogue names only */
    tk_engine_note(g, "generic-oauth2", TK_REFRESH_OK, 1500);
    tk_engine_note(g, "generic-oauth2", TK_REFRESH_FAILED, 1500);
    tk_engine_note(g, "no-such-provider", TK_REFRESH_OK, 1500);
    tk_engine_note(g, "slack", TK_REFRESH_NONE, 1500); /* not an attempt */
    b.len = 0;
    tk_metrics_render(m, &b);
    CHECK_EQ_INT((int)sample(b.data, "tokend_refresh_attempts_total{outcome=\"ok\",provider=\"generic-oauth2\"}"), 1);
    CHECK_EQ_INT((int)sample(b.data, "tokend_refresh_attempts_total{outcome=\"failed\",provider=\"generic-oauth2\"}"), 1);
    CHECK(!strstr(b.data, "provider=\"slack\""));
    CHECK_EQ_INT((int)sample(b.data, "tokend_refresh_duration_seconds_count"), 3);
    struct tk_engine_stats st;
    tk_engine_stats(g, &st);
    CHECK(st.rounds >= 1);
    CHECK_EQ_INT(st.claimed, 0); /* off: nothing claimed */
out:
    tk_engine_stop(g, 0);
    tk_engine_free(g);
    tk_metrics_free(m);
    tk_catalog_free(cat);
    tk_buf_free(&b);
    tk_store_put(db);
}
