/*
 * tokenform.c: the token endpoint's parameters checked without a store or
 * a keyring (oauth.h): the scope parameter (RFC 6749 §3.3), scope sets,
 * the RFC 8707 resource, PKCE's code_verifier (RFC 7636). Hostile input is
 * bounded here; fuzz/oauth_token_form_fuzz.c drives all of it.
 */
#include "oauth.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- scopes ---- */

bool tk_oauth_strs_has(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    if (!s) return false;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    }
    return false;
}

char *tk_oauth_scope_join(json_t *a)
{
    struct tk_buf b;
    tk_buf_init(&b, 1 << 16);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v)) continue;
        if (b.len) tk_buf_addstr(&b, " ");
        tk_buf_addstr(&b, json_string_value(v));
    }
    char *s = tk_strndup(b.data ? b.data : "", b.len);
    tk_buf_free(&b);
    return s;
}

/* RFC 6749 §3.3 scope-token characters: %x21 / %x23-5B / %x5D-7E. */
static bool scope_char(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

json_t *tk_oauth_scope_parse(const char *s, struct tk_err *e)
{
    if (strlen(s) > TK_OAUTH_SCOPE_PARAM_MAX) {
        tk_err_set(e, TK_EINVAL, "invalid_scope", "scope is longer than %d bytes",
                   TK_OAUTH_SCOPE_PARAM_MAX);
        return NULL;
    }
    json_t *a = json_array();
    const char *p = s;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        const char *q = p;
        while (*q && *q != ' ') {
            if (!scope_char((unsigned char)*q)) {
                tk_err_set(e, TK_EINVAL, "invalid_scope",
                           "scope has a character outside RFC 6749's scope-token set at "
                           "position %zu",
                           (size_t)(q - s) + 1);
                json_decref(a);
                return NULL;
            }
            q++;
        }
        char *tok = tk_strndup(p, (size_t)(q - p));
        if (!tk_oauth_strs_has(a, tok)) json_array_append_new(a, json_string(tok));
        free(tok);
        if (json_array_size(a) > TK_OAUTH_SCOPE_PARAM_COUNT) {
            tk_err_set(e, TK_EINVAL, "invalid_scope", "scope names more than %d scopes",
                       TK_OAUTH_SCOPE_PARAM_COUNT);
            json_decref(a);
            return NULL;
        }
        p = q;
    }
    return a;
}

bool tk_oauth_scope_subset(json_t *want, json_t *allowed, const char *whose, struct tk_err *e)
{
    size_t i;
    json_t *v;
    json_array_foreach(want, i, v)
    {
        if (tk_oauth_strs_has(allowed, json_string_value(v))) continue;
        char *al = tk_oauth_scope_join(allowed);
        tk_err_set(e, TK_EINVAL, "invalid_scope",
                   "scope '%.128s' is not allowed for %s; allowed: %.512s",
                   json_string_value(v) ? json_string_value(v) : "?", whose, al[0] ? al : "(none)");
        free(al);
        return false;
    }
    return true;
}

/* ---- resource (RFC 8707) ---- */

bool tk_oauth_token_resource_check(const char *s, struct tk_err *e)
{
    size_t n = strlen(s);
    if (n == 0 || n >= TK_OAUTH_URI_MAX) {
        tk_err_set(e, TK_EINVAL, "invalid_target", "resource must be 1 to %d bytes",
                   TK_OAUTH_URI_MAX - 1);
        return false;
    }
    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://" */
    const char *colon = strstr(s, "://");
    bool ok = colon && colon > s && ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'));
    for (const char *p = s; ok && p < colon; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
             *p == '+' || *p == '-' || *p == '.';
    for (const char *p = s; ok && *p; p++)
        ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != '#';
    if (!ok)
        tk_err_set(e, TK_EINVAL, "invalid_target",
                   "resource must be an absolute URI without a fragment, spaces or non-ASCII "
                   "bytes (RFC 8707)");
    return ok;
}

/* ---- PKCE ---- */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

tk_rc tk_oauth_pkce_verify(const char *challenge, const char *method, const char *verifier,
                           struct tk_err *e)
{
    bool has_c = challenge && challenge[0], has_v = verifier != NULL;
    if (!has_c && !has_v) return TK_OK;
    if (!has_c)
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "code_verifier was sent but the authorization request had no "
                          "code_challenge (PKCE downgrade refused)");
    if (!has_v)
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "code_verifier is missing: the authorization request had a "
                          "code_challenge");
    size_t n = strlen(verifier);
    if (n < 43 || n > 128)
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "code_verifier must be 43 to 128 characters, not %zu", n);
    for (size_t i = 0; i < n; i++)
        if (!unreserved((unsigned char)verifier[i]))
            return tk_err_set(e, TK_EINVAL, "invalid_grant",
                              "code_verifier has a character other than A-Z a-z 0-9 - . _ ~ "
                              "at position %zu",
                              i + 1);
    if (method && method[0] && strcmp(method, "S256") != 0)
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "code_challenge_method %.16s is not supported (S256 only)", method);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)verifier, n, md);
    unsigned char b64[64];
    int m = EVP_EncodeBlock(b64, md, sizeof md); /* 44 chars with one '=' */
    char want[64];
    size_t w = 0;
    for (int i = 0; i < m; i++) {
        unsigned char c = b64[i];
        if (c == '=') break;
        want[w++] = c == '+' ? '-' : c == '/' ? '_' : (char)c;
    }
    want[w] = '\0';
    if (strlen(challenge) != w || !tk_ct_equal(challenge, want, w))
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "code_verifier does not match code_challenge");
    return TK_OK;
}
