/* test_console_chart.c: tk_console_chart (src/console/chart.c), the
 * server-drawn SVG of the events page and the connections timeline. */
#include "unit.h"

#include "../../src/console/console.h"

#include <string.h>

/* A page buffer without a request: tk_htmlf needs only the buffer. */
static void page_open(struct tk_cpage *pg)
{
    memset(pg, 0, sizeof *pg);
    tk_buf_init(&pg->b, TK_CONSOLE_PAGE_MAX + 4096);
    tk_buf_addstr(&pg->b, "");
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

void test_console_chart_bars(void)
{
    enum { NB = 60 };
    int counts[3 * NB] = {0};
    counts[0 * NB + 59] = 7; /* ok in the last minute */
    counts[1 * NB + 59] = 2; /* failures */
    counts[2 * NB + 10] = 1; /* other, minute 10 */
    counts[0 * NB + 0] = -3; /* a negative count is drawn as none */
    struct tk_chart c = {
        .title = "<b>attempts</b> & \"more\"",
        .nbuckets = NB,
        .start_ms = 1796292000000, /* 2026-12-03T10:00:00Z */
        .bucket_ms = 60000,
        .nseries = 3,
        .label = {"ok", "fail <x>", "other"},
        .cls = {"ok", "fail", "other"},
        .counts = counts,
    };
    struct tk_cpage pg;
    page_open(&pg);
    tk_console_chart(&pg, &c);
    const char *s = pg.b.data;
    if (!CHECK(s)) return;
    CHECK(!pg.failed);
    CHECK(!strncmp(s, "<svg class=\"chart\" viewBox=\"0 0 ", 32));
    CHECK_EQ_INT(count(s, "<g class=\"bar\""), NB);
    CHECK_EQ_INT(count(s, "<rect "), 3); /* one per non-zero count */
    CHECK_EQ_INT(count(s, "<rect class=\"ok\""), 1);
    CHECK_EQ_INT(count(s, "<rect class=\"fail\""), 1);
    CHECK(strstr(s, "<g class=\"bar\" data-at=\"2026-12-03T10:00:00.000Z\"><title>10:00 UTC: ok 0, "
                    "fail &lt;x&gt; 0, other 0</title></g>") != NULL);
    CHECK(strstr(s, "<title>10:59 UTC: ok 7, fail &lt;x&gt; 2, other 0</title>") != NULL);
    CHECK(strstr(s, "<title>&lt;b&gt;attempts&lt;/b&gt; &amp; &quot;more&quot;</title>") != NULL);
    CHECK(strstr(s, "<p class=\"legend\"><span><i class=\"ok\"></i>ok: 7</span><span><i "
                    "class=\"fail\"></i>fail &lt;x&gt;: 2</span><span><i class=\"other\"></i>"
                    "other: 1</span></p>") != NULL);
    CHECK(!strstr(s, "style="));
    CHECK(!strstr(s, "<b>"));
    CHECK(!strstr(s, "<x>"));
    /* the axis: 0, 5 and 10 (the top rounded up from 9), and x labels */
    CHECK(strstr(s, "text-anchor=\"end\">10</text>") != NULL);
    CHECK(strstr(s, "text-anchor=\"end\">0</text>") != NULL);
    CHECK(strstr(s, ">10:00</text>") != NULL);
    CHECK(strstr(s, ">10:50</text>") != NULL);
    /* the stacked bar of the last minute: ok at the bottom, fail on top */
    const char *ok = strstr(s, "<rect class=\"ok\""), *fail = strstr(s, "<rect class=\"fail\"");
    CHECK(ok && fail && ok < fail);
    tk_buf_free(&pg.b);
}

void test_console_chart_refuses_bad_input(void)
{
    int counts[4] = {1, 2, 3, 4};
    struct tk_chart bad[] = {
        {.title = "none", .nbuckets = 0, .bucket_ms = 1, .nseries = 1, .counts = counts},
        {.title = "many",
         .nbuckets = TK_CHART_MAX_BUCKETS + 1,
         .bucket_ms = 1,
         .nseries = 1,
         .counts = counts},
        {.title = "series",
         .nbuckets = 1,
         .bucket_ms = 1,
         .nseries = TK_CHART_MAX_SERIES + 1,
         .counts = counts},
        {.title = "<i>no counts</i>", .nbuckets = 1, .bucket_ms = 1, .nseries = 1, .counts = NULL},
        {.title = "width", .nbuckets = 1, .bucket_ms = 0, .nseries = 1, .counts = counts},
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        struct tk_cpage pg;
        page_open(&pg);
        tk_console_chart(&pg, &bad[i]);
        if (!CHECK(pg.b.data)) continue;
        if (!strstr(pg.b.data, "nothing to draw") || strstr(pg.b.data, "<svg"))
            FAILF("case %zu: %s", i, pg.b.data);
        CHECK(!strstr(pg.b.data, "<i>"));
        tk_buf_free(&pg.b);
    }
    /* every bucket empty: drawn, with a top of 1 */
    int zero[5] = {0};
    struct tk_chart empty = {.title = "empty",
                             .nbuckets = 5,
                             .start_ms = 0,
                             .bucket_ms = 86400000,
                             .nseries = 1,
                             .label = {"ok"},
                             .cls = {"ok"},
                             .counts = zero};
    struct tk_cpage pg;
    page_open(&pg);
    tk_console_chart(&pg, &empty);
    if (CHECK(pg.b.data)) {
        CHECK_EQ_INT(count(pg.b.data, "<g class=\"bar\""), 5);
        CHECK_EQ_INT(count(pg.b.data, "<rect"), 0);
        CHECK(strstr(pg.b.data, ">01-01</text>") != NULL); /* day buckets: month-day */
    }
    tk_buf_free(&pg.b);
}

/* tk_htmlf, the one way a value reaches a page: each %s escaped (text and
 * attribute contexts alike), numbers as numbers, NULL as nothing, a
 * conversion it does not take marks the page failed (answered 500, never
 * sent half-built), and a page past TK_CONSOLE_PAGE_MAX is failed too. */
void test_console_htmlf(void)
{
    struct tk_cpage pg;
    const char *volatile none = NULL; /* a NULL the compiler cannot see */
    page_open(&pg);
    tk_htmlf(&pg, "<a title=\"%s\">%s</a>|%d|%lld|%zu|%.1f|%%|%s", "\"'><script>&",
             "<img src=x onerror=alert(1)>", -3, (long long)1 << 40, (size_t)7, 2.25,
             none);
    CHECK_EQ_STR(pg.b.data, "<a title=\"&quot;&#39;&gt;&lt;script&gt;&amp;\">&lt;img src=x "
                            "onerror=alert(1)&gt;</a>|-3|1099511627776|7|2.2|%|");
    CHECK(!pg.failed);
    tk_buf_free(&pg.b);

    page_open(&pg);
    tk_htmlf(&pg, "<p>%x</p>", 255u); /* not a conversion tk_htmlf takes */
    CHECK(pg.failed);
    tk_buf_free(&pg.b);

    page_open(&pg);
    static char big[4096];
    memset(big, '"', sizeof big - 1); /* 6 bytes each once escaped */
    for (int i = 0; i < 10 && !pg.failed; i++)
        tk_htmlf(&pg, "%s", big);
    CHECK(pg.failed); /* past the cap: the core answers 500, not a 2 MB page */
    CHECK(pg.b.len <= TK_CONSOLE_PAGE_MAX + 4096);
    tk_buf_free(&pg.b);
}
