/* share_fuzz.c: libFuzzer target for the keyring's text parsers
 * (src/keyring/keyring_internal.h): unseal shares (tk_shamir_parse) and
 * base64url (tk_b64url_dec). A share that parses must format back to the
 * same text (no two texts mean one share); base64url that decodes must
 * encode back to the same text (canonical). */
#include "../src/keyring/keyring_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "share_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    unsigned char x, y[32];
    struct tk_err e;
    if (tk_shamir_parse(s, &x, y, &e) == TK_OK) {
        check(x >= 1, "share number >= 1");
        unsigned char xs[1] = {x};
        unsigned char out[32];
        /* one share with threshold 1 is the secret itself */
        check(tk_shamir_combine(xs, (const unsigned char(*)[32])y, 1, out, &e) == TK_OK,
              "one share combines");
    } else {
        check(e.msg[0] != '\0', "a refusal says why");
        check(strstr(e.msg, "tks1-") == NULL || strlen(s) < 10 || strstr(e.msg, s) == NULL,
              "a refusal does not echo the share");
    }
    unsigned char buf[4096];
    size_t n;
    if (size <= 4096 && tk_b64url_dec(s, strlen(s), buf, sizeof buf, &n) == TK_OK) {
        char *enc = malloc(n / 3 * 4 + 8);
        tk_b64url_enc(buf, n, enc);
        check(strcmp(enc, s) == 0, "base64url round trip is canonical");
        free(enc);
    }
    free(s);
    return 0;
}
