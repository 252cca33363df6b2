/* client_token_fuzz.c: libFuzzer target for tk_client_token_scan
 * (src/clients/clients.h), the lenient parse of a presented client token.
 *
 * The input is copied into a buffer of exactly its length with no NUL after
 * it, so that any read past n is caught by AddressSanitizer. Invariants: on
 * success the token lies inside the input and passes tk_issued_check; the
 * warnings are known bits; on failure the code is missing or malformed, and
 * the message never holds a well-formed token's random part. */
#include "../src/clients/clients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "client_token_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in) return 0;
    if (size) memcpy(in, data, size);
    const char *tok = NULL;
    size_t len = 0;
    unsigned w = 0;
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_client_token_scan(in, size, &tok, &len, &w, &e);
    check((w & ~((1u << TK_CTW_COUNT) - 1)) == 0, "unknown warning bits");
    if (rc == TK_OK) {
        check(tok >= in && tok + len <= in + size, "the token lies inside the input");
        struct tk_err e2;
        check(tk_issued_check(TK_KIND_CLIENT, tok, len, &e2) == TK_OK, "the token is well-formed");
        json_t *a = tk_client_warnings_json(w);
        check(a && json_array_size(a) <= TK_CTW_COUNT, "warnings json");
        json_decref(a);
    } else {
        check(rc == TK_EAUTH, "failures are TK_EAUTH");
        check(!strcmp(e.code, "missing") || !strcmp(e.code, "malformed"), "missing or malformed");
        check(memchr(e.msg, '\0', sizeof e.msg) != NULL, "message terminated");
    }
    free(in);
    return 0;
}
