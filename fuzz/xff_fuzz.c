/* xff_fuzz.c: libFuzzer target for tk_proxies_parse and tk_xff_pick
 * (src/http/parse.h).
 *
 * Input: "PROXIES\nXFF" (no newline: the proxies are "127.0.0.1, 10.0.0.0/8,
 * fd00::/8" and the input is the header). The peer is 127.0.0.1 or, for the
 * second call, 203.0.113.1 (never trusted by the default list). The answer is
 * the peer or a numeric address that parses, is not a trusted proxy unless
 * every element is, and is never longer than the buffer. */
#include "../src/http/parse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what, const char *in)
{
    if (!cond) {
        fprintf(stderr, "xff_fuzz: invariant failed: %s (input '%s')\n", what, in);
        abort();
    }
}

static bool numeric(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (size) memcpy(in, data, size);
    in[size] = '\0';
    const char *list = "127.0.0.1, 10.0.0.0/8, fd00::/8", *xff = in;
    char *nl = strchr(in, '\n');
    bool own_list = nl != NULL;
    if (nl) {
        *nl = '\0';
        list = in;
        xff = nl + 1;
    }
    struct tk_proxies p;
    struct tk_err e;
    if (tk_proxies_parse(list, &p, &e) != TK_OK) {
        check(!own_list || e.field[0], "a refused list names the setting", in);
        free(in);
        return 0;
    }
    check(p.n >= 0 && p.n <= TK_PROXIES_MAX, "bounded list", in);
    char out[64];
    tk_xff_pick(&p, "127.0.0.1", xff, out, sizeof out);
    check(numeric(out), "answer is a numeric address", in);
    if (strcmp(out, "127.0.0.1") != 0) {
        check(tk_proxies_has(&p, "127.0.0.1"), "only a trusted peer's header is read", in);
    }
    if (!own_list) {
        tk_xff_pick(&p, "203.0.113.1", xff, out, sizeof out);
        check(!strcmp(out, "203.0.113.1"), "an untrusted peer's header is ignored", in);
    }
    char small[5];
    tk_xff_pick(&p, "127.0.0.1", xff, small, sizeof small);
    check(strlen(small) < sizeof small, "small buffer respected", in);
    free(in);
    return 0;
}
