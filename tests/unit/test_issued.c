/* test_issued.c: src/common/issued.h -- the format of every issued secret. */
#include "unit.h"

#include "../../src/common/issued.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define TOKLEN (3 + 1 + TK_ISSUED_RANDOM + TK_ISSUED_CHECK) /* 40 */

/* Check s[0..len) as a tko token; it must be refused as malformed, and the
 * message must not carry the token's random part. */
static bool refused(const char *s, size_t len, const char *want_in_msg, const char *file, int line)
{
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_issued_check(TK_KIND_OPERATOR, s, len, &e);
    if (rc != TK_EINVAL || strcmp(e.code, "malformed") != 0) {
        unit_fail(file, line, "token of length %zu accepted or wrong error: rc %d code '%s'", len,
                  (int)rc, e.code);
        return false;
    }
    if (want_in_msg && !strstr(e.msg, want_in_msg)) {
        unit_fail(file, line, "message \"%s\" does not mention \"%s\"", e.msg, want_in_msg);
        return false;
    }
    if (!e.msg[0]) {
        unit_fail(file, line, "empty message");
        return false;
    }
    return true;
}
#define REFUSED(s, len, want) refused((s), (len), (want), __FILE__, __LINE__)

void test_issued_new_valid(void)
{
    static const char *kinds[] = {TK_KIND_OPERATOR, TK_KIND_CLIENT, TK_KIND_REFRESH, TK_KIND_CODE};
    char t[TK_ISSUED_MAX], prev[TK_ISSUED_MAX] = "";
    int bad = 0, dup = 0;
    unsigned seen[128] = {0};
    for (size_t k = 0; k < TK_NELEM(kinds); k++) {
        for (int i = 0; i < 2000; i++) {
            memset(t, 0x7f, sizeof t);
            tk_issued_new(kinds[k], t);
            struct tk_err e;
            if (tk_issued_check(kinds[k], t, strlen(t), &e) != TK_OK && bad++ < 3)
                FAILF("new %s token %s fails its own check: %s", kinds[k], t, e.msg);
            if (strlen(t) != TOKLEN || strncmp(t, kinds[k], 3) != 0 || t[3] != '_') bad++;
            if (!strcmp(t, prev)) dup++;
            memcpy(prev, t, sizeof t);
            for (int c = 4; c < 4 + TK_ISSUED_RANDOM; c++)
                seen[(unsigned char)t[c]]++;
            /* a token is for one kind only */
            const char *other = k == 0 ? TK_KIND_CLIENT : TK_KIND_OPERATOR;
            if (tk_issued_check(other, t, strlen(t), &e) == TK_OK && bad++ < 3)
                FAILF("a %s token passes as %s", kinds[k], other);
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(dup, 0);
    /* Random characters cover the whole alphabet and nothing else. With
     * 240,000 draws each of the 62 symbols appears ~3,900 times; a symbol
     * never or rarely drawn would mean a biased or truncated alphabet. */
    int missing = 0, outside = 0;
    for (int c = 0; c < 128; c++) {
        bool in = strchr(b62, c) != NULL && c != 0;
        if (in && seen[c] < 3000) missing++;
        if (!in && seen[c]) outside++;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(outside, 0);
}

void test_issued_preview(void)
{
    char t[TK_ISSUED_MAX], p[24];
    tk_issued_new(TK_KIND_OPERATOR, t);
    tk_issued_preview(t, p);
    char want[24];
    snprintf(want, sizeof want, "tko_%.4s...%.4s", t + 4, t + TOKLEN - 4);
    CHECK_EQ_STR(p, want);
    /* the preview shows 8 of the 36 secret characters, never more */
    CHECK(strlen(p) < 20);
    CHECK(strstr(p, t + 4 + 4) == NULL);
    char mid[9];
    memcpy(mid, t + 10, 8);
    mid[8] = '\0';
    CHECK(strstr(p, mid) == NULL);

    tk_issued_new(TK_KIND_CLIENT, t);
    tk_issued_preview(t, p);
    CHECK(strncmp(p, "tkc_", 4) == 0);

    /* damaged input never overruns or leaks */
    tk_issued_preview("", p);
    CHECK_EQ_STR(p, "(malformed)");
    tk_issued_preview("tko_abc", p);
    CHECK_EQ_STR(p, "(malformed)");
    tk_issued_preview("no-underscore-here-at-all-0123456789", p);
    CHECK_EQ_STR(p, "(malformed)");
    tk_issued_preview("verylongprefix_0123456789abcdef", p);
    CHECK_EQ_STR(p, "(malformed)");
}

void test_issued_lengths(void)
{
    char t[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_OPERATOR, t);
    CHECK(REFUSED(t, 0, "empty"));
    CHECK(REFUSED("", 0, "empty"));
    /* truncated by one, and shorter */
    for (size_t n = 1; n < TOKLEN; n++) {
        struct tk_err e;
        if (tk_issued_check(TK_KIND_OPERATOR, t, n, &e) == TK_OK)
            FAILF("prefix of length %zu accepted", n);
    }
    CHECK(REFUSED(t, TOKLEN - 1, "39"));
    /* one extra character, of every kind */
    char ext[TK_ISSUED_MAX + 2];
    for (size_t i = 0; i < sizeof b62 - 1; i++) {
        memcpy(ext, t, TOKLEN);
        ext[TOKLEN] = b62[i];
        ext[TOKLEN + 1] = '\0';
        if (!REFUSED(ext, TOKLEN + 1, "41")) break;
    }
    /* an extra character inserted in the middle */
    memcpy(ext, t, 20);
    ext[20] = 'A';
    memcpy(ext + 21, t + 20, TOKLEN - 20);
    CHECK(REFUSED(ext, TOKLEN + 1, NULL));
    /* the token twice (a paste doubled) */
    char twice[2 * TOKLEN];
    memcpy(twice, t, TOKLEN);
    memcpy(twice + TOKLEN, t, TOKLEN);
    CHECK(REFUSED(twice, sizeof twice, NULL));
    /* 10,000 characters: refused without reading past len */
    size_t n = 10000;
    char *huge = malloc(n);
    memcpy(huge, t, TOKLEN);
    memset(huge + TOKLEN, 'A', n - TOKLEN);
    CHECK(REFUSED(huge, n, "10000"));
    memset(huge, 'A', n);
    CHECK(REFUSED(huge, n, NULL));
    free(huge);
}

void test_issued_substitution(void)
{
    char t[TK_ISSUED_MAX], s[TK_ISSUED_MAX];
    int undetected = 0, not_checksum = 0, checks = 0;
    for (int round = 0; round < 3; round++) {
        tk_issued_new(TK_KIND_OPERATOR, t);
        /* every position after the prefix: random part and checksum */
        for (size_t pos = 4; pos < TOKLEN; pos++) {
            for (size_t c = 0; c < sizeof b62 - 1; c++) {
                if (b62[c] == t[pos]) continue;
                memcpy(s, t, sizeof t);
                s[pos] = b62[c];
                struct tk_err e;
                tk_err_clear(&e);
                checks++;
                tk_rc rc = tk_issued_check(TK_KIND_OPERATOR, s, TOKLEN, &e);
                if (rc != TK_EINVAL || strcmp(e.code, "malformed") != 0) {
                    if (undetected++ < 5) FAILF("substitution at %zu undetected: %s", pos, s);
                } else if (!strstr(e.msg, "checksum")) {
                    if (not_checksum++ < 5)
                        FAILF("substitution at %zu reported as \"%s\", not a checksum error", pos,
                              e.msg);
                }
            }
        }
        /* swapping two adjacent distinct characters is a typo too */
        for (size_t pos = 4; pos + 1 < 4 + TK_ISSUED_RANDOM; pos++) {
            if (t[pos] == t[pos + 1]) continue;
            memcpy(s, t, sizeof t);
            s[pos] = t[pos + 1];
            s[pos + 1] = t[pos];
            struct tk_err e;
            checks++;
            if (tk_issued_check(TK_KIND_OPERATOR, s, TOKLEN, &e) == TK_OK && undetected++ < 5)
                FAILF("transposition at %zu undetected", pos);
        }
    }
    CHECK(checks > 3 * 36 * 61);
    CHECK_EQ_INT(undetected, 0);
    CHECK_EQ_INT(not_checksum, 0);
}

void test_issued_surroundings(void)
{
    char t[TK_ISSUED_MAX], s[TK_ISSUED_MAX + 8];
    tk_issued_new(TK_KIND_OPERATOR, t);
    static const char *wraps[][2] = {
        {" ", ""},    {"", " "},    {" ", " "}, {"\t", ""}, {"", "\t"}, {"", "\n"},
        {"", "\r\n"}, {"\"", "\""}, {"'", "'"}, {"`", "`"}, {"\"", ""}, {"", "'"},
    };
    for (size_t i = 0; i < TK_NELEM(wraps); i++) {
        int n = snprintf(s, sizeof s, "%s%s%s", wraps[i][0], t, wraps[i][1]);
        if (!REFUSED(s, (size_t)n, "leading"))
            FAILF("wrapping %zu: [%s]...[%s]", i, wraps[i][0], wraps[i][1]);
    }
    /* a quote or space inside is a bad character */
    memcpy(s, t, TOKLEN + 1);
    s[12] = ' ';
    CHECK(REFUSED(s, TOKLEN, "position 13"));
    s[12] = '"';
    CHECK(REFUSED(s, TOKLEN, "position 13"));
    /* explicit length with an embedded NUL: the NUL is not the end */
    memcpy(s, t, TOKLEN + 1);
    s[20] = '\0';
    CHECK(REFUSED(s, TOKLEN, "position 21"));
    /* NUL at the end, inside len */
    memcpy(s, t, TOKLEN + 1);
    CHECK(REFUSED(s, TOKLEN + 1, NULL));
    /* NUL at the start, inside len */
    s[0] = '\0';
    memcpy(s + 1, t, TOKLEN);
    CHECK(REFUSED(s, TOKLEN + 1, NULL));
}

void test_issued_prefix_and_chars(void)
{
    char t[TK_ISSUED_MAX], s[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_CLIENT, t);
    /* a client token presented where an operator token is expected: the
     * message says what is expected and never repeats the presented prefix
     * (issue 13 #3: it went into the event log raw) */
    CHECK(REFUSED(t, TOKLEN, "'tko_'"));
    CHECK(REFUSED(t, TOKLEN, "wrong prefix"));
    {
        struct tk_err e;
        tk_issued_check(TK_KIND_OPERATOR, t, TOKLEN, &e);
        CHECK(strstr(e.msg, "tkc") == NULL);
        static const char *hostile[] = {"\x1b[2J_abcdef", "\xff\xfe_abc", "ghp_abc", "a\x80" "b_x",
                                        "ABCDE_xyz", "\xc0\xaf_abc"};
        for (size_t i = 0; i < TK_NELEM(hostile); i++) {
            tk_err_clear(&e);
            CHECK_EQ_INT(tk_issued_check(TK_KIND_OPERATOR, hostile[i], strlen(hostile[i]), &e),
                         TK_EINVAL);
            size_t us = strcspn(hostile[i], "_");
            char pre[16];
            snprintf(pre, sizeof pre, "%.*s", (int)us, hostile[i]);
            if (strstr(e.msg, pre)) FAILF("message \"%s\" repeats the prefix of case %zu", e.msg, i);
            for (const char *p = e.msg; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
                    FAILF("message of case %zu has byte 0x%02x", i, (unsigned char)*p);
                    break;
                }
        }
    }
    /* prefix case and separator */
    tk_issued_new(TK_KIND_OPERATOR, t);
    memcpy(s, t, sizeof t);
    memcpy(s, "TKO", 3);
    CHECK(REFUSED(s, TOKLEN, NULL));
    memcpy(s, t, sizeof t);
    s[3] = '-';
    CHECK(REFUSED(s, TOKLEN, "tko_"));
    CHECK(REFUSED(t + 4, TOKLEN - 4, "tko_")); /* prefix missing */
    CHECK(REFUSED("tko_", 4, NULL));
    CHECK(REFUSED("tko", 3, NULL));
    CHECK(REFUSED("_", 1, NULL));
    CHECK(REFUSED("ghp_0123456789abcdefghijklmnopqrstuvwxyz", 40, "'tko_'"));
    /* characters outside base62 anywhere after the prefix */
    static const char bad[] = "_-+/=.~!@#$%^&*()[]{}<>,;:?|\\\x01\x7f\x80\xc3\xa9\xff";
    int accepted = 0;
    for (size_t i = 0; i < sizeof bad - 1; i++) {
        for (size_t pos = 4; pos < TOKLEN; pos += 7) {
            memcpy(s, t, sizeof t);
            s[pos] = bad[i];
            struct tk_err e;
            tk_err_clear(&e);
            if (tk_issued_check(TK_KIND_OPERATOR, s, TOKLEN, &e) != TK_EINVAL ||
                !strstr(e.msg, "outside"))
                if (accepted++ < 5)
                    FAILF("char 0x%02x at %zu: rc/msg \"%s\"", (unsigned char)bad[i], pos, e.msg);
        }
    }
    CHECK_EQ_INT(accepted, 0);
}

/* Whatever the damage, the message never repeats the token (it goes to
 * logs and to the event log). */
void test_issued_no_echo(void)
{
    char t[TK_ISSUED_MAX], s[TK_ISSUED_MAX + 16];
    tk_issued_new(TK_KIND_OPERATOR, t);
    const char *secret = t + 4; /* 36 chars */
    struct {
        const char *pre, *post;
        size_t cut;
    } cases[] = {
        {"", "", 1},  {"", "x", 0},   {" ", "", 0},    {"", "'", 0}, {"Bearer ", "", 0},
        {"", "", 10}, {"tkc", "", 0}, {"", "\x01", 0}, {"", "=", 0},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        int n = snprintf(s, sizeof s, "%s%.*s%s", cases[i].pre, (int)(TOKLEN - cases[i].cut), t,
                         cases[i].post);
        struct tk_err e;
        tk_err_clear(&e);
        tk_rc rc = tk_issued_check(TK_KIND_OPERATOR, s, (size_t)n, &e);
        if (!CHECK(rc == TK_EINVAL)) continue;
        /* no run of 8 secret characters appears in the message */
        for (size_t k = 0; k + 8 <= 36; k++) {
            char part[9];
            memcpy(part, secret + k, 8);
            part[8] = '\0';
            if (strstr(e.msg, part)) {
                FAILF("case %zu: message \"%s\" repeats the token", i, e.msg);
                break;
            }
        }
    }
    /* a substitution report names no character either */
    memcpy(s, t, sizeof t);
    s[10] = s[10] == 'A' ? 'B' : 'A';
    struct tk_err e;
    tk_issued_check(TK_KIND_OPERATOR, s, TOKLEN, &e);
    CHECK(strstr(e.msg, secret) == NULL);
    CHECK(strstr(e.msg, t + TOKLEN - 6) == NULL);
}
