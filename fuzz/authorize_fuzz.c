/* authorize_fuzz.c: libFuzzer target for the authorization request's
 * checks (src/oauth/authorize.c). The input is split at NULs: a requested
 * redirect URI, a registered one, a scope parameter, a code_challenge.
 * Invariants: a URI that parses has a host and a scheme of letters, digits
 * and "+-."; a redirect URI matches a web client only when it equals the
 * registered one; the explanation of a mismatch is a bounded, NUL-free
 * sentence that starts with "redirect_uri '"; granted scopes are distinct
 * strings each allowed for the client; an accepted code_challenge is 43..128
 * base64url characters. */
#include "../src/oauth/authorize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "authorize_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

static const char *next(const char **p, const char *end)
{
    const char *s = *p;
    if (s >= end) return "";
    *p = s + strlen(s) + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 12000) return 0;
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    const char *p = in, *end = in + size;
    const char *uri = next(&p, end), *reg = next(&p, end), *scope = next(&p, end),
               *challenge = next(&p, end);

    struct tk_oauth_uri u;
    if (tk_oauth_uri_parse(uri, &u)) {
        check(u.host[0] != '\0', "a host");
        for (const char *s = u.scheme; *s; s++)
            check((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '+' || *s == '-' || *s == '.',
                  "scheme characters");
    }
    struct tk_oauth_client c;
    memset(&c, 0, sizeof c);
    snprintf(c.application_type, sizeof c.application_type, "%s", size % 2 ? "native" : "web");
    c.redirect_uris = json_array();
    json_array_append_new(c.redirect_uris, json_stringn(reg, strlen(reg)));
    c.scopes = json_pack("[s, s, s]", "read", "write", "dcr.create");
    c.default_scopes = json_pack("[s]", "read");
    if (c.redirect_uris && json_array_size(c.redirect_uris) == 1) {
        bool m = tk_oauth_redirect_match(&c, uri);
        if (!strcmp(c.application_type, "web")) check(m == !strcmp(uri, reg), "exact for web");
        if (!m) {
            struct tk_oauth_refusal rf;
            tk_oauth_redirect_explain(&c, uri, &rf);
            check(!strncmp(rf.reason, "redirect_uri '", 14), "the sentence");
            check(strlen(rf.reason) < sizeof rf.reason, "bounded");
        }
    }
    json_t *g = NULL;
    struct tk_oauth_refusal rf;
    if (tk_oauth_scopes_resolve(&c, scope, &g, &rf) == TK_OK) {
        size_t i, j;
        json_t *v, *w;
        json_array_foreach(g, i, v)
        {
            check(tk_oauth_json_has(c.scopes, json_string_value(v)), "allowed");
            json_array_foreach(g, j, w) check(i == j || !json_equal(v, w), "distinct");
        }
        json_decref(g);
    } else {
        check(!strcmp(rf.error, "invalid_scope"), "invalid_scope");
    }
    if (tk_oauth_pkce_check(challenge, "S256", true, &rf) == TK_OK) {
        size_t n = strlen(challenge);
        check(n >= 43 && n <= 128, "challenge length");
        check(strspn(challenge,
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n,
              "base64url");
    }
    json_decref(c.redirect_uris);
    json_decref(c.scopes);
    json_decref(c.default_scopes);
    free(in);
    return 0;
}
