/* oauth_token_form_fuzz.c: libFuzzer target for the token endpoint's
 * parameter checks (src/oauth/tokenform.c): the scope parameter, scope
 * subsets, the RFC 8707 resource and PKCE's code_verifier.
 *
 * The input is split at its first NUL: the first part is the scope,
 * resource and verifier; the second (if any) the challenge. Invariants:
 * a parsed scope has at most TK_OAUTH_SCOPE_PARAM_COUNT unique members of
 * scope-token characters, joins back to at most the input's length, parses
 * again to the same set and is a subset of itself; an accepted resource is
 * below TK_OAUTH_URI_MAX bytes with no '#'; an accepted verifier is 43..128
 * unreserved characters whose S256 is the challenge; every refusal has a
 * code and a sentence. */
#include "../src/oauth/oauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "oauth_token_form_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (size) memcpy(in, data, size);
    in[size] = '\0';
    size_t n1 = strlen(in);
    const char *second = n1 < size ? in + n1 + 1 : NULL;
    struct tk_err e;

    tk_err_clear(&e);
    json_t *a = tk_oauth_scope_parse(in, &e);
    if (a) {
        check(json_array_size(a) <= TK_OAUTH_SCOPE_PARAM_COUNT, "scope count bounded");
        char *j = tk_oauth_scope_join(a);
        check(strlen(j) <= n1, "joined no longer than the input");
        for (const char *p = j; *p; p++)
            check(*p == ' ' || (*p >= 0x21 && *p <= 0x7e && *p != '"' && *p != '\\'),
                  "scope-token characters only");
        json_t *b = tk_oauth_scope_parse(j, &e);
        check(b && json_equal(a, b), "parse(join(x)) == x");
        check(tk_oauth_scope_subset(a, b, "x", &e), "a set is a subset of itself");
        json_decref(b);
        free(j);
        json_decref(a);
    } else {
        check(e.code[0] && e.msg[0], "a refused scope says why");
    }

    tk_err_clear(&e);
    if (tk_oauth_token_resource_check(in, &e)) {
        check(n1 > 0 && n1 < TK_OAUTH_URI_MAX && !strchr(in, '#'), "resource bounds");
        check(strstr(in, "://") != NULL, "resource has a scheme");
    } else {
        check(!strcmp(e.code, "invalid_target"), "resource refusal code");
    }

    tk_err_clear(&e);
    if (tk_oauth_pkce_verify(second, "S256", in, &e) == TK_OK) {
        check(!second || !second[0] || (n1 >= 43 && n1 <= 128), "verifier length");
    } else {
        check(e.code[0] && e.msg[0], "a refused verifier says why");
    }
    free(in);
    return 0;
}
