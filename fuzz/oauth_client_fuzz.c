/* oauth_client_fuzz.c: libFuzzer target for the rules of OAuth clients
 * without the store (src/oauth/ocrules.c, oclients.h): redirect URIs,
 * scope names, HTTP Basic client credentials and the whole-spec check.
 *
 * The first byte picks the parser; the rest is the input, copied into a
 * buffer of exactly its length (plus the NUL the string parsers need).
 * Invariants: a redirect URI accepted for a web app is accepted for a
 * native app too, is printable ASCII and has no '#'; a refusal names the
 * field redirect_uris; an accepted scope name has no space, quote or
 * backslash; a Basic parse that succeeds gives a non-empty id within its
 * buffer; normalize either refuses naming a field or leaves a spec whose
 * required members are all set. */
#include "../src/oauth/oclients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "oauth_client_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned which = data[0] % 4;
    size_t n = size - 1;
    char *in = malloc(n + 1);
    if (!in) return 0;
    memcpy(in, data + 1, n);
    in[n] = '\0';
    struct tk_err e;
    tk_err_clear(&e);
    if (which == 0) {
        tk_rc web = tk_oauth_redirect_uri_check(in, n, false, &e);
        tk_rc native = tk_oauth_redirect_uri_check(in, n, true, &e);
        if (web == TK_OK) check(native == TK_OK, "web-accepted is native-accepted");
        if (native == TK_OK) {
            check(memchr(in, '#', n) == NULL, "no fragment");
            for (size_t i = 0; i < n; i++)
                check(data[1 + i] > 0x20 && data[1 + i] < 0x7f, "printable ASCII");
            check(strlen(in) == n, "no NUL inside");
        } else {
            check(!strcmp(e.field, "redirect_uris"), "the refusal names redirect_uris");
        }
        (void)tk_oauth_redirect_uri_native(in);
    } else if (which == 1) {
        if (tk_oauth_scope_name_valid(in, n))
            check(!memchr(in, ' ', n) && !memchr(in, '"', n) && !memchr(in, '\\', n) &&
                      n <= TK_OAUTH_SCOPE_MAX,
                  "a valid scope name");
    } else if (which == 2) {
        char id[TK_OAUTH_CLIENT_ID_MAX], secret[TK_ISSUED_MAX * 2];
        if (tk_oauth_basic_parse(in, id, sizeof id, secret, sizeof secret))
            check(id[0] && strlen(id) < sizeof id && strlen(secret) < sizeof secret,
                  "a parsed id and secret");
    } else {
        json_error_t je;
        json_t *spec = json_loadb(in, n, JSON_ALLOW_NUL, &je);
        if (json_is_object(spec)) {
            tk_rc rc = tk_oauth_client_normalize(spec, &e);
            if (rc == TK_OK) {
                static const char *const req[] = {"name",
                                                  "client_type",
                                                  "application_type",
                                                  "token_endpoint_auth_method",
                                                  "redirect_uris",
                                                  "grant_types",
                                                  "scopes",
                                                  "default_scopes",
                                                  "rotate_refresh",
                                                  "status"};
                for (size_t i = 0; i < sizeof req / sizeof *req; i++)
                    check(json_object_get(spec, req[i]) != NULL, "a normalized member");
            } else {
                check(e.field[0] != '\0', "the refusal names a field");
            }
        }
        json_decref(spec);
    }
    free(in);
    return 0;
}
