/* connect.c: the connect_states table and the pieces of the connect flow
 * that are not HTTP (see connect.h). */
#include "connect.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tk_rc tk_connect_register_sealed(void)
{
    return tk_keyring_register_sealed("connect_states", "code_verifier");
}

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
        case '&': tk_buf_addstr(b, "&amp;"); break;
        case '<': tk_buf_addstr(b, "&lt;"); break;
        case '>': tk_buf_addstr(b, "&gt;"); break;
        case '"': tk_buf_addstr(b, "&quot;"); break;
        case '\'': tk_buf_addstr(b, "&#39;"); break;
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
        return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                            "return_url must be 1 to %d bytes", TK_CONNECT_RETURN_URL_MAX);
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

/* ---- start ---- */

void tk_connect_started_clear(struct tk_connect_started *s)
{
    free(s->authorize_url);
    tk_wipe(s->state, sizeof s->state);
    memset(s, 0, sizeof *s);
}

tk_rc tk_connect_start(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                       json_t *app, const char *label, const char *return_url,
                       const char *redirect_uri, int64_t now_ms, struct tk_connect_started *out,
                       struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    json_t *eff = json_object_get(app, "effective");
    const char *authorize = json_string_value(json_object_get(eff, "authorize_url"));
    const char *app_id = json_string_value(json_object_get(app, "id"));
    if (!authorize || !app_id)
        return tk_err_field(e, TK_ECONFLICT, "no_authorize_url", "app_id",
                            "provider app %s has no authorize_url: set one on the app "
                            "(PATCH /v1/provider-apps/{id}) to use the connect flow",
                            app_id ? app_id : "?");
    const char *sep = json_string_value(json_object_get(json_object_get(eff, "scopes"),
                                                        "separator"));
    bool pkce = json_is_true(json_object_get(eff, "pkce"));

    unsigned char raw[32];
    tk_random(raw, sizeof raw);
    tk_connect_b64url(raw, sizeof raw, out->state);
    char hash[TK_HASH_HEX], key_id[17];
    tk_rc rc = tk_keyring_hash(k, out->state, strlen(out->state), hash, key_id, e);

    tk_uuid7(out->id);
    char verifier[TK_CONNECT_STATE_LEN + 1] = "", challenge[44] = "";
    char *sealed_text = NULL;
    if (rc == TK_OK && pkce) {
        tk_random(raw, sizeof raw);
        tk_connect_b64url(raw, sizeof raw, verifier);
        tk_connect_pkce_challenge(verifier, strlen(verifier), challenge);
        struct tk_secret *v = tk_secret_new(verifier, strlen(verifier));
        struct tk_seal_ad ad = {tenant_id, "connect_states", "code_verifier", out->id};
        struct tk_sealed *s = NULL;
        rc = tk_keyring_seal_value(k, v, &ad, &s, e);
        tk_secret_free(v);
        if (rc == TK_OK) sealed_text = tk_strdup(s->text);
        tk_sealed_free(s);
    }
    tk_wipe(raw, sizeof raw);
    tk_wipe(verifier, sizeof verifier);
    if (rc == TK_OK) {
        out->authorize_url = tk_connect_authorize_url(
            authorize, json_string_value(json_object_get(app, "client_id")), redirect_uri,
            out->state, json_object_get(app, "scopes"), sep && sep[0] ? sep[0] : ' ',
            pkce ? challenge : NULL);
        if (!out->authorize_url)
            rc = tk_err_field(e, TK_EINVAL, "invalid_field", "scopes",
                              "the authorization URL would be longer than %d bytes: fewer "
                              "scopes or a shorter authorize_url",
                              TK_CONNECT_RETURN_URL_MAX * 4);
    }
    out->expires_at = now_ms + TK_CONNECT_STATE_TTL_MS;
    out->pkce = pkce;
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "INSERT INTO connect_states (id, tenant_id, app_id, label, return_url, "
                        "state_hash, code_verifier, redirect_uri, created_at, expires_at, used_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                        TK_ARGS(TK_TEXT(out->id), TK_TEXT(tenant_id), TK_TEXT(app_id),
                                TK_TEXT(label), TK_TEXT(return_url), TK_TEXT(hash),
                                TK_TEXT(sealed_text), TK_TEXT(redirect_uri), TK_INT(now_ms),
                                TK_INT(out->expires_at)),
                        NULL, e);
    free(sealed_text);
    if (rc != TK_OK) tk_connect_started_clear(out);
    return rc;
}

/* ---- redeem ---- */

void tk_connect_state_clear(struct tk_connect_state *s)
{
    free(s->label);
    free(s->return_url);
    free(s->redirect_uri);
    free(s->verifier_sealed);
    memset(s, 0, sizeof *s);
}

static bool state_wellformed(const char *s, size_t len)
{
    if (len == 0 || len > TK_CONNECT_STATE_MAX || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s)
{
    return s ? tk_strdup(s) : NULL;
}

tk_rc tk_connect_redeem(struct tk_db *db, struct tk_keyring *k, const char *state, size_t len,
                        int64_t now_ms, struct tk_connect_state *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    if (!state_wellformed(state, len))
        return tk_err_field(e, TK_EINVAL, "state_malformed", "state",
                            "the state parameter is not one tokend issued (1 to %d of "
                            "A-Z a-z 0-9 - _)",
                            TK_CONNECT_STATE_MAX);
    char hash[TK_HASH_HEX], key_id[17];
    tk_rc rc = tk_keyring_hash(k, state, len, hash, key_id, e);
    if (rc != TK_OK) return rc;
    rc = tk_db_begin(db, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "UPDATE connect_states SET used_at = ? WHERE state_hash = ? "
                        "AND used_at IS NULL AND expires_at > ?",
                        TK_ARGS(TK_INT(now_ms), TK_TEXT(hash), TK_INT(now_ms)), NULL, e);
    bool redeemed = rc == TK_OK && tk_db_changes(db) == 1;
    struct tk_rows *r = NULL;
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "SELECT id, tenant_id, app_id, label, return_url, redirect_uri, "
                        "code_verifier, created_at, expires_at, used_at FROM connect_states "
                        "WHERE state_hash = ?",
                        TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_rows_free(r);
        return rc;
    }
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_field(e, TK_ENOTFOUND, "state_unknown", "state",
                            "no connect flow was started with this state (or it was removed "
                            "after expiring): start again with POST /v1/connect/{app_id}/start");
    }
    out->found = true;
    snprintf(out->id, sizeof out->id, "%s", tk_rows_text(r, 0, 0));
    snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tk_rows_text(r, 0, 1));
    snprintf(out->app_id, sizeof out->app_id, "%s", tk_rows_text(r, 0, 2));
    out->label = dup_or_null(tk_rows_text(r, 0, 3));
    out->return_url = dup_or_null(tk_rows_text(r, 0, 4));
    out->redirect_uri = dup_or_null(tk_rows_text(r, 0, 5));
    out->verifier_sealed = dup_or_null(tk_rows_text(r, 0, 6));
    out->created_at = tk_rows_int(r, 0, 7);
    out->expires_at = tk_rows_int(r, 0, 8);
    out->used_at = tk_rows_null(r, 0, 9) ? 0 : tk_rows_int(r, 0, 9);
    tk_rows_free(r);
    if (redeemed) return TK_OK;
    char when[32];
    if (out->used_at) {
        tk_time_fmt(out->used_at, when, sizeof when);
        return tk_err_field(e, TK_EINVAL, "state_used", "state",
                            "this state was already used at %s: a state is good for one "
                            "callback only; start again",
                            when);
    }
    tk_time_fmt(out->expires_at, when, sizeof when);
    return tk_err_field(e, TK_EINVAL, "state_expired", "state",
                        "this state expired at %s (10 minutes after the start): start again",
                        when);
}

tk_rc tk_connect_verifier(struct tk_db *db, struct tk_keyring *k,
                          const struct tk_connect_state *s, struct tk_secret **out,
                          struct tk_open_failure *f, struct tk_err *e)
{
    *out = NULL;
    if (!s->verifier_sealed) return TK_OK;
    struct tk_sealed *v = tk_sealed_from_text(s->verifier_sealed);
    struct tk_seal_ad ad = {s->tenant_id, "connect_states", "code_verifier", s->id};
    tk_rc rc = tk_keyring_open_value(k, db, v, &ad, out, f, e);
    tk_sealed_free(v);
    return rc;
}

tk_rc tk_connect_prune(struct tk_db *db, int64_t now_ms, int64_t *deleted, struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db, "DELETE FROM connect_states WHERE expires_at < ?",
                          TK_ARGS(TK_INT(now_ms - 86400000)), NULL, e);
    if (deleted) *deleted = rc == TK_OK ? tk_db_changes(db) : 0;
    return rc;
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
    for (size_t i = 0; i < x->nheaders; i++) free_wipe(x->headers[i]);
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
