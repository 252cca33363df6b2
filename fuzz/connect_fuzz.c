/* connect_fuzz.c: libFuzzer target for the connect flow's parsers and
 * builders (src/upstream/connect_wire.c). The input is split at the first
 * NUL: the first part is a return_url candidate and an OAuth error code,
 * the second a token endpoint's answer. Invariants: an accepted return_url
 * is printable ASCII, http(s), with a host and no user info or fragment; a
 * refused one names return_url; the authorization URL built from the
 * input as every value is printable ASCII with no space, quote or angle
 * bracket past the authorize URL itself; a refusal's reason is a valid
 * error code or http_<status>; escaped HTML has no '<', '>', '"' or '\''. */
#include "../src/upstream/connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "connect_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    size_t n1 = strlen(in);
    const char *answer = n1 < size ? in + n1 + 1 : "";
    size_t alen = n1 < size ? size - n1 - 1 : 0;

    struct tk_err e;
    if (tk_connect_return_url_check(in, &e) == TK_OK) {
        check(!strncmp(in, "http://", 7) || !strncmp(in, "https://", 8), "scheme");
        check(n1 <= TK_CONNECT_RETURN_URL_MAX, "length");
        for (size_t i = 0; i < n1; i++)
            check((unsigned char)in[i] > 0x20 && (unsigned char)in[i] < 0x7f, "printable");
        check(!strchr(in, '#'), "no fragment");
        const char *auth = strstr(in, "://") + 3;
        size_t an = strcspn(auth, "/?");
        check(an > 0, "a host");
        check(!memchr(auth, '@', an), "no user info");
    } else {
        check(!strcmp(e.field, "return_url"), "a refusal names return_url");
    }

    json_t *scopes = json_pack("[s]", in);
    char *u = tk_connect_authorize_url("https://p.example/auth", in, in, in, scopes, ' ', in);
    if (u) {
        const char *q = u + strlen("https://p.example/auth");
        for (const char *s = q; *s; s++)
            check(*s > 0x20 && *s < 0x7f && !strchr("\"'<> ", *s), "an encoded URL");
        free(u);
    }
    json_decref(scopes);

    char reason[40];
    tk_connect_refusal_reason(400, answer, alen, reason);
    check(tk_connect_error_code_valid(reason) || !strncmp(reason, "http_", 5), "a reason");

    struct tk_buf b;
    tk_buf_init(&b, 1 << 16);
    tk_connect_html_escape(&b, in);
    check(!b.data || !strpbrk(b.data, "<>\"'"), "escaped HTML");
    tk_buf_free(&b);

    char c[44];
    tk_connect_pkce_challenge(in, n1, c);
    check(strlen(c) == 43, "a challenge is 43 chars");
    free(in);
    return 0;
}
