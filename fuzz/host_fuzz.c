/* host_fuzz.c: libFuzzer target for the Host/Origin/Content-Type checks
 * (src/http/hostcheck.h) and the hand-written JSON lines of the log
 * (src/common/log.h), which carry bytes a client chose.
 *
 * The input's first byte picks the policy (loopback or wildcard listener,
 * with or without allowed_hosts); the rest is a header value. Invariants: a
 * parsed host is non-empty, lower case, with a port in 0..65535 or none; a
 * loopback listener answers only loopback hosts and allowed ones; a JSON
 * line built from the bytes, in any buffer size, parses with jansson and
 * holds no raw control byte; tk_utf8_char never reads past n and agrees
 * with jansson on what is UTF-8. */
#include "../src/common/log.h"
#include "../src/http/hostcheck.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what, const char *in)
{
    if (!cond) {
        fprintf(stderr, "host_fuzz: invariant failed: %s (input '%s')\n", what, in);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned sel = data[0];
    char *in = malloc(size);
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';

    struct tk_hostport hp;
    if (tk_host_parse(in, &hp)) {
        check(hp.host[0] != '\0', "non-empty host", in);
        check(hp.port >= -1 && hp.port <= 65535, "port in range", in);
        for (const char *p = hp.host; *p; p++)
            check(!isupper((unsigned char)*p), "lower case", in);
    }

    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = 0};
    struct tk_hostpolicy pol;
    struct tk_err e;
    const char *allowed = (sel & 2) ? "tokend.example,api.example:8750" : "";
    if (tk_hostpolicy_init(&pol, (sel & 1) ? (struct sockaddr *)&any : (struct sockaddr *)&lo,
                           allowed, &e) != TK_OK)
        abort();
    bool ok = tk_host_allowed(&pol, in);
    if (ok && pol.loopback_listener) {
        check(tk_host_parse(in, &hp), "an allowed host parses", in);
        bool listed = !strcmp(hp.host, "tokend.example") ||
                      (!strcmp(hp.host, "api.example") && hp.port == 8750);
        check(tk_host_is_loopback(&hp) || (listed && (sel & 2)), "loopback or listed", in);
    }
    (void)tk_origin_same(in, "127.0.0.1:8750");
    if (tk_origin_same(in, "127.0.0.1:8750"))
        check(strlen(in) > 7 && strstr(in, "127.0.0.1:8750") != NULL, "own origin", in);
    if (tk_media_is_json(in)) check(strcasestr(in, "application/json") != NULL, "json type", in);

    /* tk_utf8_char stays within n */
    const unsigned char *u = data + 1;
    size_t left = size - 1;
    while (left) {
        size_t n = tk_utf8_char(u, left);
        check(n <= left && n <= 4, "length within n", in);
        if (n == 0) n = 1;
        u += n;
        left -= n;
    }
    /* what tk_utf8_char calls UTF-8 (and has no NUL), jansson takes */
    {
        const unsigned char *v = data + 1;
        size_t l = size - 1, n = 1;
        while (l && (n = tk_utf8_char(v, l)) != 0 && v[0] != 0) {
            v += n;
            l -= n;
        }
        if (l == 0) {
            json_t *s = json_stringn((const char *)data + 1, size - 1);
            check(s != NULL, "jansson takes what tk_utf8_char calls UTF-8", in);
            json_decref(s);
        }
    }

    /* JSON lines in buffers of every size from the input */
    size_t cap = 64 + (sel % 128) * 8;
    char *buf = malloc(cap);
    struct tk_jline j;
    tk_jline_begin(&j, buf, cap);
    tk_jline_str(&j, "a", in, SIZE_MAX);
    tk_jline_int(&j, "n", (long long)size);
    tk_jline_str(&j, "b", in, sel % 40);
    size_t len = tk_jline_end(&j);
    check(len < cap && strlen(buf) == len, "fits its buffer", in);
    for (size_t i = 0; i < len; i++)
        check((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f, "no raw control byte", in);
    json_error_t je;
    json_t *o = json_loadb(buf, len, 0, &je);
    check(o != NULL, "a JSON line parses", buf);
    json_decref(o);
    free(buf);
    free(in);
    return 0;
}
