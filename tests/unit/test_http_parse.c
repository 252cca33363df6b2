/* test_http_parse.c: src/http/parse.h -- form bodies, the Cookie header,
 * Set-Cookie values, trusted proxies and X-Forwarded-For. */
#include "unit.h"

#include "../../src/http/parse.h"

#include <stdio.h>
#include <string.h>

static tk_rc form(struct tk_pool *pool, const char *body, struct tk_form *f, struct tk_err *e)
{
    tk_err_clear(e);
    return tk_form_parse(body, strlen(body), pool, f, e);
}

void test_http_form(void)
{
    struct tk_pool *pool = tk_pool_new();
    struct tk_form f;
    struct tk_err e;

    CHECK_OK(form(pool, "grant_type=authorization_code&code=a%2Bb+c&x=", &f, &e), &e);
    CHECK_EQ_INT(f.n, 3);
    CHECK_EQ_STR(tk_form_get(&f, "grant_type"), "authorization_code");
    CHECK_EQ_STR(tk_form_get(&f, "code"), "a+b c");
    CHECK_EQ_STR(tk_form_get(&f, "x"), "");
    CHECK(tk_form_get(&f, "y") == NULL);
    CHECK(tk_form_get(&f, "Code") == NULL); /* names are case-sensitive */
    CHECK(tk_form_get(NULL, "x") == NULL);

    CHECK_OK(form(pool, "", &f, &e), &e);
    CHECK_EQ_INT(f.n, 0);
    CHECK_OK(form(pool, "a&&b=1&", &f, &e), &e); /* empty pairs skipped; a without '=' */
    CHECK_EQ_INT(f.n, 2);
    CHECK_EQ_STR(tk_form_get(&f, "a"), "");
    CHECK_EQ_STR(tk_form_get(&f, "b"), "1");
    CHECK_OK(form(pool, "n=caf%C3%A9&m=%e2%82%ac&eq=a=b", &f, &e), &e);
    CHECK_EQ_STR(tk_form_get(&f, "n"), "caf\xc3\xa9");
    CHECK_EQ_STR(tk_form_get(&f, "m"), "\xe2\x82\xac");
    CHECK_EQ_STR(tk_form_get(&f, "eq"), "a=b");
    CHECK_OK(form(pool, "%61%62=1", &f, &e), &e); /* an escaped name */
    CHECK_EQ_STR(tk_form_get(&f, "ab"), "1");

    /* duplicates: refused, naming the parameter (RFC 6749 §3.1) */
    CHECK_EQ_INT(form(pool, "scope=a&client_id=x&scope=b", &f, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "duplicate_parameter");
    CHECK_EQ_STR(e.field, "scope");
    CHECK(strstr(e.msg, "scope") != NULL);
    CHECK_EQ_INT(form(pool, "a=1&%61=2", &f, &e), TK_EINVAL); /* the same after decoding */
    CHECK_EQ_STR(e.field, "a");

    /* escapes, NUL, UTF-8 */
    static const char *const bad_value[] = {
        "v=%00", "v=a%00b", "v=%0", "v=%", "v=%zz", "v=%g1", "v=%C3", "v=%C0%AF", "v=%ED%A0%80",
        "v=\xff", "v=%FF",
    };
    for (size_t i = 0; i < TK_NELEM(bad_value); i++) {
        if (form(pool, bad_value[i], &f, &e) != TK_EINVAL) {
            FAILF("form '%s' accepted", bad_value[i]);
            continue;
        }
        CHECK_EQ_STR(e.code, "invalid_form");
        CHECK_EQ_STR(e.field, "v");
    }
    static const char *const bad_name[] = {"=1", "%00=1", "a%=1", "%FF=1", "a=1&=2"};
    for (size_t i = 0; i < TK_NELEM(bad_name); i++) {
        if (form(pool, bad_name[i], &f, &e) != TK_EINVAL) {
            FAILF("form '%s' accepted", bad_name[i]);
            continue;
        }
        CHECK_EQ_STR(e.code, "invalid_form");
    }
    /* a NUL byte in the raw body */
    static const char nul[] = "a=x\0y";
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_form_parse(nul, sizeof nul - 1, pool, &f, &e), TK_EINVAL);

    /* bounds: 128-byte names, 64 pairs */
    char big[4096];
    memset(big, 'n', TK_FORM_MAX_NAME);
    snprintf(big + TK_FORM_MAX_NAME, sizeof big - TK_FORM_MAX_NAME, "=1");
    CHECK_OK(form(pool, big, &f, &e), &e);
    memset(big, 'n', TK_FORM_MAX_NAME + 1);
    snprintf(big + TK_FORM_MAX_NAME + 1, sizeof big - TK_FORM_MAX_NAME - 1, "=1");
    CHECK_EQ_INT(form(pool, big, &f, &e), TK_EINVAL);
    size_t n = 0;
    for (int i = 0; i < TK_FORM_MAX_PAIRS; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%sp%d=%d", i ? "&" : "", i, i);
    CHECK_OK(form(pool, big, &f, &e), &e);
    CHECK_EQ_INT(f.n, TK_FORM_MAX_PAIRS);
    CHECK_EQ_STR(tk_form_get(&f, "p63"), "63");
    snprintf(big + n, sizeof big - n, "&last=1");
    CHECK_EQ_INT(form(pool, big, &f, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "invalid_form");
    tk_pool_free(pool);
}

void test_http_cookie(void)
{
    char v[64];
    CHECK_EQ_INT(tk_cookie_find("sid=abc; theme=dark", "sid", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_STR(v, "abc");
    CHECK_EQ_INT(tk_cookie_find("sid=abc; theme=dark", "theme", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_STR(v, "dark");
    CHECK_EQ_INT(tk_cookie_find("sid=abc;theme=dark", "theme", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_INT(tk_cookie_find("  a = 1 ;b=\"q v\"", "a", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_STR(v, "1");
    CHECK_EQ_INT(tk_cookie_find("a=1; b=\"qv\"", "b", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_STR(v, "qv"); /* quotes removed */
    CHECK_EQ_INT(tk_cookie_find("a=1; b=\"q v\"", "b", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("a=; b=2", "a", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_STR(v, "");
    CHECK_EQ_INT(tk_cookie_find("sid=abc", "SID", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("xsid=abc; sidx=1", "sid", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("sid", "sid", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("", "sid", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find(NULL, "sid", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("a=1", "", v, sizeof v), TK_COOKIE_ABSENT);
    /* a value with a comma, backslash or control character is not a cookie-value */
    CHECK_EQ_INT(tk_cookie_find("sid=a,b", "sid", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("sid=a\\b", "sid", v, sizeof v), TK_COOKIE_ABSENT);
    CHECK_EQ_INT(tk_cookie_find("sid=a\x01" "b", "sid", v, sizeof v), TK_COOKIE_ABSENT);
    /* duplicates: neither is believed (cookie tossing) */
    CHECK_EQ_INT(tk_cookie_find("sid=a; x=1; sid=b", "sid", v, sizeof v), TK_COOKIE_DUPLICATE);
    CHECK_EQ_STR(v, "");
    CHECK_EQ_INT(tk_cookie_find("sid=a; x=1; sid=b", "x", v, sizeof v), TK_COOKIE_FOUND);
    /* too long for the caller: absent, nothing cut */
    CHECK_EQ_INT(tk_cookie_find("sid=0123456789", "sid", v, 8), TK_COOKIE_ABSENT);
    CHECK_EQ_STR(v, "");
    /* bounded: only the first TK_COOKIE_MAX_PAIRS pairs are read */
    char h[2048];
    size_t n = 0;
    for (int i = 0; i < TK_COOKIE_MAX_PAIRS; i++)
        n += (size_t)snprintf(h + n, sizeof h - n, "c%d=%d; ", i, i);
    snprintf(h + n, sizeof h - n, "late=1");
    CHECK_EQ_INT(tk_cookie_find(h, "c63", v, sizeof v), TK_COOKIE_FOUND);
    CHECK_EQ_INT(tk_cookie_find(h, "late", v, sizeof v), TK_COOKIE_ABSENT);

    CHECK(tk_cookie_name_ok("tk_session"));
    CHECK(!tk_cookie_name_ok(""));
    CHECK(!tk_cookie_name_ok("a b"));
    CHECK(!tk_cookie_name_ok("a=b"));
    CHECK(!tk_cookie_name_ok("a;b"));
    CHECK(tk_cookie_value_ok("tks_abc-DEF.123"));
    CHECK(tk_cookie_value_ok(""));
    static const char *const bad[] = {"a;b", "a,b", "a b", "a\tb", "a\r\nSet-Cookie: x=1",
                                      "a\"b", "a\\b", "a\x7f", "\xc3\xa9"};
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (tk_cookie_value_ok(bad[i])) FAILF("cookie value %zu accepted", i);
}

static void pick(const struct tk_proxies *p, const char *peer, const char *xff, const char *want)
{
    char out[64];
    tk_xff_pick(p, peer, xff, out, sizeof out);
    if (strcmp(out, want))
        FAILF("peer %s X-Forwarded-For '%s' gave '%s', want '%s'", peer, xff ? xff : "(none)",
              out, want);
}

void test_http_xff(void)
{
    struct tk_proxies p;
    struct tk_err e;
    CHECK_OK(tk_proxies_parse("", &p, &e), &e);
    CHECK_EQ_INT(p.n, 0);
    CHECK_OK(tk_proxies_parse(NULL, &p, &e), &e);
    CHECK_OK(tk_proxies_parse("10.0.0.1, 192.168.0.0/16,fd00::/8 ,::1", &p, &e), &e);
    CHECK_EQ_INT(p.n, 4);
    CHECK(tk_proxies_has(&p, "10.0.0.1"));
    CHECK(!tk_proxies_has(&p, "10.0.0.2"));
    CHECK(tk_proxies_has(&p, "192.168.255.1"));
    CHECK(!tk_proxies_has(&p, "192.169.0.1"));
    CHECK(tk_proxies_has(&p, "fd12:3456::1"));
    CHECK(!tk_proxies_has(&p, "fe80::1"));
    CHECK(tk_proxies_has(&p, "::1"));
    CHECK(tk_proxies_has(&p, "::ffff:10.0.0.1")); /* IPv4-mapped */
    CHECK(!tk_proxies_has(&p, "nonsense"));
    CHECK_OK(tk_proxies_parse("172.16.0.0/12, 2001:db8:abcd::/45", &p, &e), &e);
    CHECK(tk_proxies_has(&p, "172.31.255.255"));
    CHECK(!tk_proxies_has(&p, "172.32.0.0"));
    CHECK(tk_proxies_has(&p, "2001:db8:abcf::1"));
    CHECK(!tk_proxies_has(&p, "2001:db8:abd0::1"));
    CHECK_OK(tk_proxies_parse("0.0.0.0/0", &p, &e), &e);
    CHECK(tk_proxies_has(&p, "203.0.113.9"));
    CHECK(!tk_proxies_has(&p, "::2"));
    static const char *const bad[] = {"10.0.0.1/33", "::/129", "10.0.0/8", "host.example",
                                      "10.0.0.1/", "10.0.0.1/8x", "fe80::1%eth0", "1.2.3.4/-1"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        tk_err_clear(&e);
        if (tk_proxies_parse(bad[i], &p, &e) == TK_OK) {
            FAILF("trusted_proxies '%s' accepted", bad[i]);
            continue;
        }
        CHECK_EQ_STR(e.field, "trusted_proxies");
    }

    CHECK_OK(tk_proxies_parse("127.0.0.1, 10.0.0.0/8, fd00::/8", &p, &e), &e);
    /* a trusted peer: the right-most untrusted address */
    pick(&p, "127.0.0.1", "203.0.113.7", "203.0.113.7");
    pick(&p, "127.0.0.1", "1.1.1.1, 203.0.113.7", "203.0.113.7"); /* never the left-most */
    pick(&p, "127.0.0.1", "1.1.1.1, 203.0.113.7, 10.1.2.3", "203.0.113.7");
    pick(&p, "127.0.0.1", "1.1.1.1,203.0.113.7 ,\t10.1.2.3", "203.0.113.7");
    pick(&p, "127.0.0.1", "2001:db8::7, fd00::1", "2001:db8::7");
    pick(&p, "127.0.0.1", "2001:DB8:0::7", "2001:db8::7"); /* normalized */
    pick(&p, "127.0.0.1", "::ffff:203.0.113.7", "203.0.113.7");
    pick(&p, "127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5"); /* all trusted: the left-most */
    /* not trusted, absent, or malformed: the peer */
    pick(&p, "203.0.113.50", "1.2.3.4", "203.0.113.50");
    pick(&p, "127.0.0.1", NULL, "127.0.0.1");
    static const char *const malformed[] = {"", " ", "1.2.3.4,", ",1.2.3.4", "1.2.3.4, unknown",
                                            "1.2.3.4:80", "[2001:db8::1]", "1.2.3", "1.2.3.4 5.6.7.8",
                                            "_hidden", "1.2.3.4;for=x", "fe80::1%eth0"};
    for (size_t i = 0; i < TK_NELEM(malformed); i++) pick(&p, "127.0.0.1", malformed[i], "127.0.0.1");
    char many[2048];
    size_t n = 0;
    for (int i = 0; i < 65; i++) n += (size_t)snprintf(many + n, sizeof many - n, "%s1.1.1.%d", i ? "," : "", i);
    pick(&p, "127.0.0.1", many, "127.0.0.1"); /* more than 64 elements */
    /* no proxies: the peer, whatever the header says */
    struct tk_proxies none;
    CHECK_OK(tk_proxies_parse("", &none, &e), &e);
    pick(&none, "127.0.0.1", "1.2.3.4", "127.0.0.1");
    /* a small output buffer is not overrun */
    char small[4];
    tk_xff_pick(&p, "127.0.0.1", "203.0.113.7", small, sizeof small);
    CHECK_EQ_INT(strlen(small), 3);
}
