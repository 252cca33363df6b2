/* connect_wire.c: the connect flow's pure pieces (see connect.h): the
 * encodings, PKCE, the authorization URL, the return_url check, the token
 * request of the code exchange and the reading of a refusal. No store, no
 * keyring: the fuzz target (fuzz/connect_fuzz.c) links them alone. */
#include "connect.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encodings ---- */

void tk_connect_b64url(const unsigned char *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
    }
    out[o] = '\0';
}

void tk_connect_pkce_challenge(const char *verifier, size_t len, char out[44])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)verifier, len, d);
    tk_connect_b64url(d, sizeof d, out);
    tk_wipe(d, sizeof d);
}

/* Append s percent-encoded (RFC 3986: all but unreserved). */
static void pct(struct tk_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            tk_buf_add(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            tk_buf_add(b, e, 3);
        }
    }
}

/* Append "&name=value" (or without the '&' at the start of a form). */
static void param(struct tk_buf *b, bool *first, const char *name, const char *v, size_t n)
{
    if (!*first) tk_buf_add(b, "&", 1);
    *first = false;
    tk_buf_addstr(b, name);
    tk_buf_add(b, "=", 1);
    pct(b, v, n);
}

static void sparam(struct tk_buf *b, bool *first, const char *name, const char *v)
{
    param(b, first, name, v, strlen(v));
}

void tk_connect_html_escape(struct tk_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            tk_buf_addstr(b, "&amp;");
            break;
        case '<':
            tk_buf_addstr(b, "&lt;");
            break;
        case '>':
            tk_buf_addstr(b, "&gt;");
            break;
        case '"':
            tk_buf_addstr(b, "&quot;");
            break;
        case '\'':
            tk_buf_addstr(b, "&#39;");
            break;
        default:
            if ((unsigned char)*s < 0x20 || *s == 0x7f)
                tk_buf_add(b, " ", 1);
            else
                tk_buf_add(b, s, 1);
        }
    }
}

bool tk_connect_error_code_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return false;
    }
    return true;
}

tk_rc tk_connect_return_url_check(const char *url, struct tk_err *e)
{
    const char *f = "return_url";
    size_t n = strlen(url);
    if (n == 0 || n > TK_CONNECT_RETURN_URL_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", f, "return_url must be 1 to %d bytes",
                            TK_CONNECT_RETURN_URL_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                                "return_url must be printable ASCII without spaces (character "
                                "%zu is not): percent-encode it",
                                i + 1);
    const char *rest;
    if (!strncmp(url, "https://", 8))
        rest = url + 8;
    else if (!strncmp(url, "http://", 7))
        rest = url + 7;
    else
        return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                            "return_url must be an absolute http:// or https:// URL");
    size_t auth = strcspn(rest, "/?#");
    if (auth == 0 || rest[0] == ':')
        return tk_err_field(e, TK_EINVAL, "invalid_field", f, "return_url must name a host");
    if (memchr(rest, '@', auth))
        return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                            "return_url must not hold user info (user@host)");
    if (strchr(url, '#'))
        return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                            "return_url must not have a fragment (#...): connection_id is "
                            "appended to its query");
    for (size_t i = 0; i < auth; i++) {
        char c = rest[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                                "return_url's host must be a DNS name or an IP address "
                                "(with an optional :port)");
    }
    return TK_OK;
}

char *tk_connect_authorize_url(const char *authorize_url, const char *client_id,
                               const char *redirect_uri, const char *state, json_t *scopes,
                               char sep, const char *challenge)
{
    struct tk_buf b;
    tk_buf_init(&b, TK_CONNECT_RETURN_URL_MAX * 4);
    tk_buf_addstr(&b, authorize_url);
    tk_buf_add(&b, strchr(authorize_url, '?') ? "&" : "?", 1);
    bool first = true;
    sparam(&b, &first, "response_type", "code");
    sparam(&b, &first, "client_id", client_id);
    sparam(&b, &first, "redirect_uri", redirect_uri);
    sparam(&b, &first, "state", state);
    if (json_array_size(scopes) > 0) {
        struct tk_buf s;
        tk_buf_init(&s, 64 * 1024);
        for (size_t i = 0; i < json_array_size(scopes); i++) {
            if (i) tk_buf_add(&s, &sep, 1);
            tk_buf_addstr(&s, json_string_value(json_array_get(scopes, i)));
        }
        param(&b, &first, "scope", s.data ? s.data : "", s.len);
        tk_buf_free(&s);
    }
    if (challenge) {
        sparam(&b, &first, "code_challenge", challenge);
        sparam(&b, &first, "code_challenge_method", "S256");
    }
    /* a URL past the buffer's cap was cut: refuse it rather than send half */
    char *out = NULL;
    if (b.data && b.len < b.max - 1) out = tk_strdup(b.data);
    tk_buf_free(&b);
    return out;
}

/* ---- the code exchange ---- */

static char *basic_header(const char *id, const struct tk_secret *secret)
{
    /* RFC 6749 §2.3.1: both form-urlencoded before the Basic encoding */
    struct tk_buf c;
    tk_buf_init(&c, 64 * 1024);
    pct(&c, id, strlen(id));
    tk_buf_add(&c, ":", 1);
    pct(&c, (const char *)secret->p, secret->len);
    size_t n = 4 * ((c.len + 2) / 3) + 1;
    char *b64 = tk_malloc(n);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)c.data, (int)c.len);
    tk_buf_free_wipe(&c);
    size_t hn = strlen(b64) + 32;
    char *h = tk_malloc(hn);
    snprintf(h, hn, "Authorization: Basic %s", b64);
    tk_wipe(b64, strlen(b64));
    free(b64);
    return h;
}

tk_rc tk_connect_exchange_build(json_t *effective, const char *client_id,
                                const struct tk_secret *secret, const char *code,
                                const char *redirect_uri, const struct tk_secret *verifier,
                                struct tk_connect_exchange *x, struct tk_err *e)
{
    memset(x, 0, sizeof *x);
    const char *token_url = json_string_value(json_object_get(effective, "token_url"));
    const char *auth = json_string_value(json_object_get(effective, "client_auth"));
    const char *method = json_string_value(json_object_get(effective, "token_method"));
    if (!token_url || !auth)
        return tk_err_field(e, TK_ECONFLICT, "no_token_url", "token_url",
                            "the provider app has no token_url");
    bool get = method && !strcmp(method, "GET");
    struct tk_buf b;
    tk_buf_init(&b, 64 * 1024);
    bool first = true;
    sparam(&b, &first, "grant_type", "authorization_code");
    sparam(&b, &first, "code", code);
    sparam(&b, &first, "redirect_uri", redirect_uri);
    if (verifier) param(&b, &first, "code_verifier", (const char *)verifier->p, verifier->len);
    if (secret && !strcmp(auth, "client_secret_basic")) {
        x->headers[x->nheaders++] = basic_header(client_id, secret);
    } else {
        sparam(&b, &first, "client_id", client_id);
        if (secret) param(&b, &first, "client_secret", (const char *)secret->p, secret->len);
    }
    if (get) {
        size_t n = strlen(token_url) + b.len + 2;
        x->url = tk_malloc(n);
        snprintf(x->url, n, "%s%s%s", token_url, strchr(token_url, '?') ? "&" : "?", b.data);
        tk_buf_free_wipe(&b);
        x->method = "GET";
    } else {
        x->url = tk_strdup(token_url);
        x->body = tk_strndup(b.data, b.len);
        x->body_len = b.len;
        tk_buf_free_wipe(&b);
        x->method = "POST";
        x->headers[x->nheaders++] = tk_strdup("Content-Type: application/x-www-form-urlencoded");
    }
    if (secret) x->mask[x->nmask++] = (const char *)secret->p;
    x->mask[x->nmask++] = code;
    if (verifier) x->mask[x->nmask++] = (const char *)verifier->p;
    return TK_OK;
}

static void free_wipe(char *s)
{
    if (!s) return;
    tk_wipe(s, strlen(s));
    free(s);
}

void tk_connect_exchange_free(struct tk_connect_exchange *x)
{
    free_wipe(x->url);
    for (size_t i = 0; i < x->nheaders; i++)
        free_wipe(x->headers[i]);
    if (x->body) {
        tk_wipe(x->body, x->body_len);
        free(x->body);
    }
    memset(x, 0, sizeof *x);
}

void tk_connect_refusal_reason(long status, const char *body, size_t len, char out[40])
{
    json_error_t je;
    json_t *o = body && len ? json_loadb(body, len, 0, &je) : NULL;
    const char *err = json_string_value(json_object_get(o, "error"));
    if (tk_connect_error_code_valid(err) && strlen(err) < 40)
        snprintf(out, 40, "%s", err);
    else
        snprintf(out, 40, "http_%ld", status);
    json_decref(o);
}
