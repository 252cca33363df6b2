/* public_url_fuzz.c: libFuzzer target for the public_url check
 * (tk_config_public_url, src/config/public_url.c). Invariants: an accepted
 * URL's normal form is accepted again unchanged (stable), starts with
 * http:// or https://, has no trailing slash, no query, fragment, user
 * info, space or control character, and fits the output buffer; a refused
 * one says why. */
#include "../src/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "public_url_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024) return 0;
    char in[1025], out[512], again[512], why[160];
    memcpy(in, data, size);
    in[size] = '\0';
    /* a small output buffer too: never written past */
    size_t n = size % 2 ? sizeof out : 24;
    if (tk_config_public_url(in, out, n, why, sizeof why) != TK_OK) {
        check(why[0] != '\0', "a refusal says why");
        check(strnlen(why, sizeof why) < sizeof why, "why terminated");
        return 0;
    }
    size_t len = strnlen(out, n);
    check(len < n, "out terminated within its size");
    check(!strncmp(out, "http://", 7) || !strncmp(out, "https://", 8), "scheme");
    check(out[len - 1] != '/', "no trailing slash");
    check(!strpbrk(out, "?# \t\r\n"), "no query, fragment or space");
    const char *auth = strstr(out, "://") + 3;
    check(!memchr(auth, '@', strcspn(auth, "/")), "no user info");
    for (size_t i = 0; i < len; i++)
        check((unsigned char)out[i] > 0x20 && (unsigned char)out[i] < 0x7f, "printable ASCII");
    check(tk_config_public_url(out, again, sizeof again, why, sizeof why) == TK_OK,
          "the normal form is accepted");
    check(!strcmp(out, again), "the normal form is stable");
    return 0;
}
