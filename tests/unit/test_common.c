/* test_common.c: src/common/tk.h -- time, ids, integers, buffers, pools, errors. */
#include "unit.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tk_time_parse ---- */

static void parse_ok(const char *s, int64_t want, const char *file, int line)
{
    int64_t got = -12345;
    tk_rc rc = tk_time_parse(s, &got);
    if (rc != TK_OK)
        unit_fail(file, line, "tk_time_parse(\"%s\") refused (rc %d), want %lld", s, (int)rc,
                  (long long)want);
    else if (got != want)
        unit_fail(file, line, "tk_time_parse(\"%s\") = %lld, want %lld", s, (long long)got,
                  (long long)want);
}

static void parse_bad(const char *s, const char *file, int line)
{
    int64_t got = -12345;
    tk_rc rc = tk_time_parse(s, &got);
    if (rc != TK_EINVAL)
        unit_fail(file, line, "tk_time_parse(\"%s\") accepted (rc %d, value %lld), want TK_EINVAL",
                  s ? s : "(null)", (int)rc, (long long)got);
}

#define PARSE_OK(s, want) parse_ok((s), (want), __FILE__, __LINE__)
#define PARSE_BAD(s) parse_bad((s), __FILE__, __LINE__)

void test_time_parse_valid(void)
{
    PARSE_OK("1970-01-01T00:00:00Z", 0);
    PARSE_OK("2000-01-01T00:00:00Z", INT64_C(946684800000));
    PARSE_OK("2026-11-25T19:08:00Z", INT64_C(1795633680000));
    PARSE_OK("2024-02-29T12:00:00Z", INT64_C(1709208000000)); /* leap day */
    PARSE_OK("9999-12-31T23:59:59.999Z", INT64_C(253402300799999));
    /* case and separator variants RFC 3339 allows */
    PARSE_OK("2026-11-25t19:08:00z", INT64_C(1795633680000));
    PARSE_OK("2026-11-25 19:08:00Z", INT64_C(1795633680000));
    /* offsets: the same instant written in other zones */
    PARSE_OK("2026-11-25T20:08:00+01:00", INT64_C(1795633680000));
    PARSE_OK("2026-11-25T13:38:00-05:30", INT64_C(1795633680000));
    PARSE_OK("2026-11-25T19:08:00+00:00", INT64_C(1795633680000));
    PARSE_OK("2026-11-25T19:08:00-00:00", INT64_C(1795633680000));
    PARSE_OK("2026-11-26T04:08:00+09:00", INT64_C(1795633680000));
    /* fractions: milliseconds kept, finer digits dropped */
    PARSE_OK("2026-11-25T19:08:00.5Z", INT64_C(1795633680500));
    PARSE_OK("2026-11-25T19:08:00.05Z", INT64_C(1795633680050));
    PARSE_OK("2026-11-25T19:08:00.123Z", INT64_C(1795633680123));
    PARSE_OK("2026-11-25T19:08:00.123456789Z", INT64_C(1795633680123));
    PARSE_OK("2026-11-25T20:08:00.250+01:00", INT64_C(1795633680250));
    /* integers of ms since the epoch */
    PARSE_OK("0", 0);
    PARSE_OK("1795633680000", INT64_C(1795633680000));
    PARSE_OK("253402300799999", INT64_C(253402300799999));
}

void test_time_parse_invalid(void)
{
    PARSE_BAD(NULL);
    PARSE_BAD("");
    PARSE_BAD("garbage");
    PARSE_BAD("now");
    PARSE_BAD("2026-11-25");
    PARSE_BAD("2026-11-25T19:08Z");
    PARSE_BAD("2026-11-25T19:08:00"); /* no zone */
    PARSE_BAD("2026/11/25T19:08:00Z");
    PARSE_BAD("2026-11-25X19:08:00Z");
    PARSE_BAD("26-11-25T19:08:00Z");
    PARSE_BAD("2026-1-25T19:08:00Z");
    PARSE_BAD("+026-11-25T19:08:00Z");
    /* out-of-range fields */
    PARSE_BAD("2026-00-25T19:08:00Z");
    PARSE_BAD("2026-13-25T19:08:00Z");
    PARSE_BAD("2026-11-00T19:08:00Z");
    PARSE_BAD("2026-11-32T19:08:00Z");
    PARSE_BAD("2026-11-25T24:00:00Z");
    PARSE_BAD("2026-11-25T19:60:00Z");
    PARSE_BAD("2026-11-25T19:08:61Z");
    PARSE_BAD("2026-11-25T19:08:00+24:00");
    PARSE_BAD("2026-11-25T19:08:00+01:60");
    PARSE_BAD("1969-12-31T23:59:59Z");          /* before the epoch */
    PARSE_BAD("1970-01-01T00:00:00+01:00");     /* before the epoch once the offset is applied */
    PARSE_BAD("9999-12-31T23:59:59.999-00:01"); /* after the integer form's maximum */
    /* malformed offsets and fractions */
    PARSE_BAD("2026-11-25T19:08:00+01");
    PARSE_BAD("2026-11-25T19:08:00+0100");
    PARSE_BAD("2026-11-25T19:08:00+1:00");
    PARSE_BAD("2026-11-25T19:08:00.Z");
    PARSE_BAD("2026-11-25T19:08:00.1234567890Z"); /* 10 fraction digits */
    PARSE_BAD("2026-11-25T19:08:00,5Z");
    /* trailing and leading junk */
    PARSE_BAD("2026-11-25T19:08:00Zjunk");
    PARSE_BAD("2026-11-25T19:08:00Z ");
    PARSE_BAD(" 2026-11-25T19:08:00Z");
    PARSE_BAD("2026-11-25T19:08:00+01:00:00");
    PARSE_BAD("2026-11-25T19:08:00ZZ");
    /* integers: signs, junk, out of range */
    PARSE_BAD("-1");
    PARSE_BAD("+1");
    PARSE_BAD("1.5");
    PARSE_BAD("12abc");
    PARSE_BAD("0x10");
    PARSE_BAD("1e3");
    PARSE_BAD("253402300800000"); /* past 9999-12-31 */
    PARSE_BAD("99999999999999999999999999");
    /* a very long string */
    char big[4096];
    memset(big, '9', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    PARSE_BAD(big);
    memcpy(big, "2026-11-25T19:08:00.", 20);
    PARSE_BAD(big); /* 4075 fraction digits */
}

/* Day-of-month beyond the month's length: RFC 3339 §5.7 restricts mday by
 * month and year. Accepting these silently moves the date (Feb 30 -> Mar 2). */
void test_time_parse_calendar(void)
{
    PARSE_OK("2024-02-29T00:00:00Z", INT64_C(1709164800000));
    PARSE_OK("2000-02-29T00:00:00Z", INT64_C(951782400000)); /* 400-year rule: leap */
    PARSE_BAD("2026-02-29T00:00:00Z");                       /* 2026 is not a leap year */
    PARSE_BAD("2026-02-30T00:00:00Z");
    PARSE_BAD("2026-02-31T00:00:00Z");
    PARSE_BAD("2026-04-31T00:00:00Z");
    PARSE_BAD("2026-06-31T00:00:00Z");
    PARSE_BAD("2026-09-31T00:00:00Z");
    PARSE_BAD("2026-11-31T00:00:00Z");
    PARSE_BAD("2100-02-29T00:00:00Z"); /* century rule: not leap */
}

/* ---- tk_time_fmt ---- */

void test_time_fmt_roundtrip(void)
{
    char out[25]; /* the documented minimum */
    tk_time_fmt(0, out, sizeof out);
    CHECK_EQ_STR(out, "1970-01-01T00:00:00.000Z");
    tk_time_fmt(INT64_C(1795633680123), out, sizeof out);
    CHECK_EQ_STR(out, "2026-11-25T19:08:00.123Z");
    tk_time_fmt(INT64_C(1709208000007), out, sizeof out);
    CHECK_EQ_STR(out, "2024-02-29T12:00:00.007Z");
    tk_time_fmt(INT64_C(253402300799999), out, sizeof out);
    CHECK_EQ_STR(out, "9999-12-31T23:59:59.999Z");

    /* Every formatted time parses back to the same instant. */
    int bad = 0;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % UINT64_C(253402300800000));
        int64_t back = -1;
        tk_time_fmt(ms, out, sizeof out);
        if (tk_time_parse(out, &back) != TK_OK || back != ms) {
            if (bad++ < 5)
                FAILF("round trip of %lld: \"%s\" -> %lld", (long long)ms, out, (long long)back);
        }
    }
    CHECK_EQ_INT(bad, 0);
    int64_t now = tk_now_ms(), back = 0;
    tk_time_fmt(now, out, sizeof out);
    CHECK_EQ_INT(strlen(out), 24);
    CHECK(tk_time_parse(out, &back) == TK_OK && back == now);
}

/* ---- tk_uuid7 ---- */

static int64_t uuid_ms(const char *u)
{
    int64_t v = 0;
    for (int i = 0; i < 13; i++) {
        if (u[i] == '-') continue;
        char c = u[i];
        v = v * 16 + (c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    return v;
}

enum { UUID_THREADS = 4, UUID_PER_THREAD = 20000 };

static void *uuid_thread(void *arg)
{
    char(*out)[TK_UUID_LEN + 1] = arg;
    for (int i = 0; i < UUID_PER_THREAD; i++) tk_uuid7(out[i]);
    return NULL;
}

static int cmp_uuid(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Threads making ids at once (a compare-and-swap, no lock): every id is
 * distinct, and each thread's ids are in order. */
static void uuid7_threads(void)
{
    char(*ids)[TK_UUID_LEN + 1] = calloc(UUID_THREADS * UUID_PER_THREAD, TK_UUID_LEN + 1);
    pthread_t th[UUID_THREADS];
    for (int t = 0; t < UUID_THREADS; t++)
        pthread_create(&th[t], NULL, uuid_thread, ids + t * UUID_PER_THREAD);
    for (int t = 0; t < UUID_THREADS; t++) pthread_join(th[t], NULL);
    int unordered = 0, dup = 0;
    for (int t = 0; t < UUID_THREADS; t++)
        for (int i = 1; i < UUID_PER_THREAD; i++)
            if (strcmp(ids[t * UUID_PER_THREAD + i - 1], ids[t * UUID_PER_THREAD + i]) >= 0)
                unordered++;
    qsort(ids, UUID_THREADS * UUID_PER_THREAD, TK_UUID_LEN + 1, cmp_uuid);
    for (int i = 1; i < UUID_THREADS * UUID_PER_THREAD; i++)
        if (!strcmp(ids[i - 1], ids[i])) dup++;
    CHECK_EQ_INT(unordered, 0);
    CHECK_EQ_INT(dup, 0);
    free(ids);
}

void test_uuid7(void)
{
    uuid7_threads();

    enum { N = 100000 };
    char prev[TK_UUID_LEN + 1] = "", cur[TK_UUID_LEN + 1];
    int invalid = 0, unordered = 0, badver = 0, badtime = 0;
    int64_t t0 = tk_now_ms();
    for (int i = 0; i < N; i++) {
        tk_uuid7(cur);
        int64_t t1 = tk_now_ms();
        if (!tk_uuid_valid(cur) && invalid++ < 3) FAILF("invalid uuid %s", cur);
        /* version 7, RFC 9562 variant 10xx */
        if ((cur[14] != '7' || !strchr("89ab", cur[19])) && badver++ < 3)
            FAILF("uuid %s: version/variant wrong", cur);
        int64_t ms = uuid_ms(cur);
        if ((ms < t0 - 1 || ms > t1 + 1) && badtime++ < 3)
            FAILF("uuid %s carries time %lld outside [%lld, %lld]", cur, (long long)ms,
                  (long long)t0, (long long)t1);
        if (i > 0 && strcmp(prev, cur) >= 0 && unordered++ < 3)
            FAILF("uuid %d not after the previous one: %s then %s", i, prev, cur);
        memcpy(prev, cur, sizeof cur);
    }
    CHECK_EQ_INT(invalid, 0);
    CHECK_EQ_INT(unordered, 0);
    CHECK_EQ_INT(badver, 0);
    CHECK_EQ_INT(badtime, 0);

    CHECK(tk_uuid_valid("01890a5d-ac96-774b-bcce-b302099a8057"));
    CHECK(!tk_uuid_valid(NULL));
    CHECK(!tk_uuid_valid(""));
    CHECK(!tk_uuid_valid("01890A5D-AC96-774B-BCCE-B302099A8057")); /* we write lowercase */
    CHECK(!tk_uuid_valid("01890a5d-ac96-774b-bcce-b302099a805"));
    CHECK(!tk_uuid_valid("01890a5d-ac96-774b-bcce-b302099a80577"));
    CHECK(!tk_uuid_valid("01890a5dac96-774b-bcce-b302099a80577"));
    CHECK(!tk_uuid_valid("01890a5d-ac96-774b-bcce-b302099a805g"));
    CHECK(!tk_uuid_valid("01890a5d-ac96-774b-bcce-b302099a805'"));
    CHECK(!tk_uuid_valid("../../../../etc/passwd-aaaaaaaaaaaaa"));
}

/* ---- tk_parse_int ---- */

static void int_ok(const char *s, int64_t min, int64_t max, int64_t want, int line)
{
    int64_t v = -777;
    tk_rc rc = tk_parse_int(s, min, max, &v);
    if (rc != TK_OK || v != want)
        unit_fail(__FILE__, line, "tk_parse_int(\"%s\", %lld, %lld): rc %d value %lld, want %lld",
                  s, (long long)min, (long long)max, (int)rc, (long long)v, (long long)want);
}

static void int_bad(const char *s, int64_t min, int64_t max, int line)
{
    int64_t v = -777;
    tk_rc rc = tk_parse_int(s, min, max, &v);
    if (rc != TK_EINVAL || v != -777)
        unit_fail(__FILE__, line,
                  "tk_parse_int(\"%s\", %lld, %lld) accepted or wrote out: rc %d value %lld",
                  s ? s : "(null)", (long long)min, (long long)max, (int)rc, (long long)v);
}

void test_parse_int(void)
{
    int_ok("0", 0, 10, 0, __LINE__);
    int_ok("-0", -1, 1, 0, __LINE__);
    int_ok("42", 0, 100, 42, __LINE__);
    int_ok("-42", -100, 0, -42, __LINE__);
    int_ok("007", 0, 10, 7, __LINE__);
    /* bounds are inclusive */
    int_ok("1", 1, 64, 1, __LINE__);
    int_ok("64", 1, 64, 64, __LINE__);
    int_bad("0", 1, 64, __LINE__);
    int_bad("65", 1, 64, __LINE__);
    int_bad("-1", 0, 10, __LINE__);
    int_ok("9223372036854775807", INT64_MIN, INT64_MAX, INT64_MAX, __LINE__);
    int_ok("-9223372036854775808", INT64_MIN, INT64_MAX, INT64_MIN, __LINE__);
    int_bad("9223372036854775808", INT64_MIN, INT64_MAX, __LINE__);
    int_bad("-9223372036854775809", INT64_MIN, INT64_MAX, __LINE__);
    int_bad("99999999999999999999999", INT64_MIN, INT64_MAX, __LINE__);
    /* junk */
    int_bad(NULL, 0, 10, __LINE__);
    int_bad("", 0, 10, __LINE__);
    int_bad("-", 0, 10, __LINE__);
    int_bad("+1", 0, 10, __LINE__);
    int_bad(" 1", 0, 10, __LINE__);
    int_bad("1 ", 0, 10, __LINE__);
    int_bad("1\n", 0, 10, __LINE__);
    int_bad("1a", 0, 10, __LINE__);
    int_bad("0x1", 0, 10, __LINE__);
    int_bad("1e1", 0, 10, __LINE__);
    int_bad("1.0", 0, 10, __LINE__);
    int_bad("--1", -10, 10, __LINE__);
    int_bad("1-", -10, 10, __LINE__);
    int_bad("\xef\xbc\x91", 0, 10, __LINE__); /* fullwidth digit one */
}

/* ---- tk_buf ---- */

void test_buf_max(void)
{
    struct tk_buf b;
    tk_buf_init(&b, 10);
    CHECK_EQ_INT(tk_buf_add(&b, "0123456789", 10), TK_OK);
    CHECK_EQ_INT(b.len, 10);
    CHECK_EQ_STR(b.data, "0123456789");
    /* at the maximum: nothing more goes in, and nothing is appended */
    CHECK_EQ_INT(tk_buf_add(&b, "x", 1), TK_ETOOBIG);
    CHECK_EQ_INT(tk_buf_addstr(&b, "xyz"), TK_ETOOBIG);
    CHECK_EQ_INT(tk_buf_printf(&b, "%d", 7), TK_ETOOBIG);
    CHECK_EQ_INT(b.len, 10);
    CHECK_EQ_STR(b.data, "0123456789");
    CHECK_EQ_INT(tk_buf_add(&b, "", 0), TK_OK);
    tk_buf_reset(&b);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_STR(b.data, "");
    /* a too-large add is refused whole, not truncated */
    CHECK_EQ_INT(tk_buf_add(&b, "abcd", 4), TK_OK);
    CHECK_EQ_INT(tk_buf_add(&b, "0123456789", 7), TK_ETOOBIG);
    CHECK_EQ_INT(b.len, 4);
    CHECK_EQ_STR(b.data, "abcd");
    CHECK_EQ_INT(tk_buf_add(&b, "0123456789", 6), TK_OK);
    CHECK_EQ_STR(b.data, "abcd012345");
    /* sizes near SIZE_MAX do not wrap around the check */
    CHECK_EQ_INT(tk_buf_add(&b, "x", SIZE_MAX), TK_ETOOBIG);
    CHECK_EQ_INT(tk_buf_add(&b, "x", SIZE_MAX - 5), TK_ETOOBIG);
    CHECK_EQ_INT(b.len, 10);
    tk_buf_free(&b);
    CHECK(b.data == NULL);

    /* printf past the small-buffer path: refused whole when too big, exact when it fits */
    char big[2000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tk_buf_init(&b, 1500);
    CHECK_EQ_INT(tk_buf_printf(&b, "<%s>", big), TK_ETOOBIG);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(tk_buf_printf(&b, "<%.1497s>", big), TK_OK);
    CHECK_EQ_INT(b.len, 1499);
    CHECK_EQ_INT(b.data[0], '<');
    CHECK_EQ_INT(b.data[1498], '>');
    CHECK_EQ_INT(b.data[1499], '\0');
    CHECK_EQ_INT(tk_buf_printf(&b, "%s", "x"), TK_OK);
    CHECK_EQ_INT(tk_buf_printf(&b, "%s", "x"), TK_ETOOBIG);
    CHECK_EQ_INT(b.len, 1500);
    tk_buf_free_wipe(&b);

    /* growth through many small appends keeps every byte */
    tk_buf_init(&b, 100000);
    for (int i = 0; i < 10000; i++)
        tk_buf_printf(&b, "%d,", i % 10);
    CHECK_EQ_INT(b.len, 20000);
    bool same = true;
    for (int i = 0; i < 10000; i++)
        if (b.data[2 * i] != '0' + i % 10 || b.data[2 * i + 1] != ',') same = false;
    CHECK(same);
    tk_buf_free(&b);
}

/* ---- tk_pool ---- */

void test_pool_alignment(void)
{
    enum { N = 5000 };
    struct tk_pool *p = tk_pool_new();
    static unsigned char *ptrs[N];
    static size_t sizes[N];
    size_t align = _Alignof(max_align_t);
    int misaligned = 0;
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 8) % 700;
        if (i % 97 == 0) n = 5000 + i; /* larger than a chunk */
        if (i % 101 == 0) n = 0;
        sizes[i] = n;
        ptrs[i] = tk_pool_alloc(p, n);
        if (((uintptr_t)ptrs[i] % align) != 0 && misaligned++ < 3)
            FAILF("allocation %d of %zu bytes at %p is not %zu-aligned", i, n, (void *)ptrs[i],
                  align);
        memset(ptrs[i], i & 0xff, n);
        if (n >= sizeof(long double)) *(long double *)ptrs[i] = (long double)i;
    }
    CHECK_EQ_INT(misaligned, 0);
    /* No allocation overlaps another: every pattern is still intact. */
    int damaged = 0;
    for (int i = 0; i < N; i++) {
        size_t from = 0;
        if (sizes[i] >= sizeof(long double)) {
            if (*(long double *)ptrs[i] != (long double)i) damaged++;
            from = sizeof(long double);
        }
        for (size_t k = from; k < sizes[i]; k++)
            if (ptrs[i][k] != (unsigned char)(i & 0xff)) {
                damaged++;
                break;
            }
    }
    CHECK_EQ_INT(damaged, 0);

    CHECK(tk_pool_strdup(p, NULL) == NULL);
    char *s = tk_pool_strdup(p, "hello");
    CHECK_EQ_STR(s, "hello");
    CHECK_EQ_STR(tk_pool_strndup(p, "hello world", 5), "hello");
    char *big = tk_pool_printf(p, "%0*d", 9000, 7);
    CHECK_EQ_INT(strlen(big), 9000);
    CHECK_EQ_INT(big[8999], '7');
    CHECK_EQ_STR(s, "hello");
    tk_pool_free(p);
    tk_pool_free(NULL);
}

/* ---- errors ---- */

void test_err_and_rc(void)
{
    static const struct {
        tk_rc rc;
        int status;
    } map[] = {{TK_OK, 200},        {TK_EINVAL, 400},    {TK_EAUTH, 401},     {TK_EFORBIDDEN, 403},
               {TK_ENOTFOUND, 404}, {TK_EMETHOD, 405},   {TK_ECONFLICT, 409}, {TK_ETOOBIG, 413},
               {TK_ERATE, 429},     {TK_EUPSTREAM, 502}, {TK_EUNAVAIL, 503},  {TK_EINTERNAL, 500}};
    for (size_t i = 0; i < TK_NELEM(map); i++)
        CHECK_EQ_INT(tk_rc_status(map[i].rc), map[i].status);
    CHECK_EQ_INT(tk_rc_status((tk_rc)999), 500);
    CHECK_EQ_INT(tk_rc_status((tk_rc)-1), 500);
    CHECK_EQ_STR(tk_rc_name((tk_rc)999), "internal");

    struct tk_err e;
    CHECK_EQ_INT(tk_err_set(NULL, TK_EINVAL, "x", "ignored %d", 1), TK_EINVAL);
    CHECK_EQ_INT(tk_err_set(&e, TK_ENOTFOUND, NULL, "no %s", "thing"), TK_ENOTFOUND);
    CHECK_EQ_STR(e.code, "not_found");
    CHECK_EQ_STR(e.field, "");
    CHECK_EQ_STR(e.msg, "no thing");
    CHECK_EQ_INT(tk_err_field(&e, TK_EINVAL, "invalid", "name", "bad %s", "name"), TK_EINVAL);
    CHECK_EQ_STR(e.field, "name");
    CHECK_EQ_INT(e.rc, TK_EINVAL);
    /* an over-long message is cut, not overflowed */
    char big[1000];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tk_err_set(&e, TK_EINTERNAL, big, "%s", big);
    CHECK_EQ_INT(strlen(e.msg), sizeof e.msg - 1);
    CHECK_EQ_INT(strlen(e.code), sizeof e.code - 1);
    tk_err_clear(&e);
    CHECK_EQ_INT(e.rc, TK_OK);
    CHECK_EQ_STR(e.msg, "");

    CHECK(tk_ct_equal("abcdef", "abcdef", 6));
    CHECK(!tk_ct_equal("abcdef", "abcdeg", 6));
    CHECK(tk_ct_equal("a", "b", 0));
    char hex[9];
    tk_hex((const unsigned char *)"\x00\x9f\xff\x10", 4, hex);
    CHECK_EQ_STR(hex, "009fff10");
}

/* tk_buf_json_str: what the events API writes without jansson must be JSON
 * that jansson reads back to the same string. */
void test_json_str(void)
{
    struct tk_buf b;
    tk_buf_init(&b, 1 << 16);
    tk_buf_json_str(&b, NULL);
    CHECK_EQ_STR(b.data, "null");
    tk_buf_reset(&b);
    tk_buf_json_str(&b, "a\"b\\c\n\r\t\x01\x1f/é");
    CHECK_EQ_STR(b.data, "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f/é\"");
    /* every byte from 1 to 127, and random strings of them, round-trip */
    unsigned char raw[256];
    for (int round = 0; round < 200; round++) {
        size_t n = 0;
        if (round == 0)
            for (int c = 1; c < 128; c++) raw[n++] = (unsigned char)c;
        else {
            tk_random(raw, 64);
            for (n = 0; n < 64; n++) raw[n] = (unsigned char)(raw[n] % 127 + 1);
        }
        raw[n] = 0;
        tk_buf_reset(&b);
        CHECK(tk_buf_json_str(&b, (const char *)raw) == TK_OK);
        json_error_t je;
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &je);
        CHECK(j != NULL && json_is_string(j));
        if (j) CHECK_EQ_STR(json_string_value(j), (const char *)raw);
        json_decref(j);
    }
    /* over the buffer's maximum: the caller is told (TK_ETOOBIG) */
    struct tk_buf small;
    tk_buf_init(&small, 8);
    CHECK(tk_buf_json_str(&small, "0123456789") == TK_ETOOBIG);
    tk_buf_free(&small);
    tk_buf_free(&b);
}

/* issue 13 #3: whatever the bytes, tk_buf_json_str writes valid JSON with
 * no raw control character, and tk_utf8_fix makes valid UTF-8. */
void test_json_str_hostile(void)
{
    struct tk_buf b;
    tk_buf_init(&b, 1 << 16);
    static const struct {
        const char *in, *want; /* want: the decoded string */
    } cases[] = {
        {"\x80", "\xef\xbf\xbd"},
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
        {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong, 3 bytes */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate D800 */
        {"\xed\xbf\xbf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate DFFF */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"\xe2\x82", "\xef\xbf\xbd"},                  /* truncated: one replacement */
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},              /* truncated 4-byte */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},      /* U+1F600 stays */
        {"\xed\x9f\xbf", "\xed\x9f\xbf"},              /* U+D7FF stays */
        {"\xef\xbf\xbf", "\xef\xbf\xbf"},              /* U+FFFF stays */
        {"\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m"},  /* escaped, decodes back */
        {"\x7f", "\x7f"},
        {"\xc2\x9b" "2J", "\xc2\x9b" "2J"},            /* C1 CSI: escaped */
        {"caf\xc3\xa9", "caf\xc3\xa9"},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        tk_buf_reset(&b);
        CHECK(tk_buf_json_str(&b, cases[i].in) == TK_OK);
        for (size_t k = 0; k < b.len; k++) {
            unsigned char c = (unsigned char)b.data[k];
            if (c < 0x20 || c == 0x7f || (c == 0xc2 && k + 1 < b.len &&
                                          (unsigned char)b.data[k + 1] < 0xa0)) {
                FAILF("case %zu: raw control byte 0x%02x in %s", i, c, b.data);
                break;
            }
        }
        json_error_t je;
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &je);
        if (!CHECK(j != NULL && json_is_string(j))) {
            FAILF("case %zu: %s does not parse: %s", i, b.data, je.text);
            json_decref(j);
            continue;
        }
        CHECK_EQ_STR(json_string_value(j), cases[i].want);
        json_decref(j);
        char *fixed = tk_utf8_fix(cases[i].in);
        CHECK_EQ_STR(fixed, cases[i].want);
        CHECK(tk_utf8_valid(fixed, strlen(fixed)));
        CHECK_EQ_INT(tk_utf8_valid(cases[i].in, strlen(cases[i].in)),
                     strcmp(cases[i].in, cases[i].want) == 0);
        free(fixed);
    }
    tk_buf_reset(&b);
    tk_buf_json_str(&b, "\x7f\xc2\x85");
    CHECK_EQ_STR(b.data, "\"\\u007f\\u0085\"");
    /* random bytes 1..255: always a JSON string, always valid UTF-8 out */
    unsigned char raw[65];
    int bad = 0;
    for (int round = 0; round < 2000; round++) {
        tk_random(raw, 64);
        for (int k = 0; k < 64; k++) raw[k] = raw[k] ? raw[k] : 0x80;
        raw[64] = 0;
        tk_buf_reset(&b);
        tk_buf_json_str(&b, (const char *)raw);
        json_error_t je;
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &je);
        char *fixed = tk_utf8_fix((const char *)raw);
        if ((!j || !json_is_string(j) || strcmp(json_string_value(j), fixed) != 0 ||
             !tk_utf8_valid(fixed, strlen(fixed))) &&
            bad++ < 3)
            FAILF("random bytes round %d: %s", round, b.data);
        json_decref(j);
        free(fixed);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(tk_utf8_fix(NULL) == NULL);
    tk_buf_free(&b);
}
