/* conn_wire.c: the pure parts of a refresh (see connections.h): building
 * the token request for an app's effective entry, classifying the answer,
 * parsing it, and masking a URL's query. No store, no keyring, no network:
 * unit-tested and fuzzed (fuzz/conn_wire_fuzz.c). */
#include "connections.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tk_conn_token_valid(const char *s, size_t *len)
{
    size_t n = strlen(s);
    if (n == 0 || n > TK_CONN_TOKEN_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return false;
    *len = n;
    return true;
}

bool tk_conn_scopes_valid(const json_t *a)
{
    if (!a) return true;
    if (!json_is_array(a) || json_array_size(a) > TK_APP_SCOPES_MAX) return false;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v)) return false;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 0 || n > TK_APP_SCOPE_MAX || strlen(s) != n) return false;
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] > 0x7e || s[k] == ',')
                return false;
    }
    return true;
}

/* The URL with every query value replaced by "***". */
char *tk_conn_mask_url(const char *url)
{
    struct tk_buf b;
    tk_buf_init(&b, 16 * 1024);
    const char *q = strchr(url, '?');
    if (!q) {
        tk_buf_addstr(&b, url);
    } else {
        tk_buf_add(&b, url, (size_t)(q - url + 1));
        const char *s = q + 1;
        bool first = true;
        while (*s) {
            const char *amp = strchr(s, '&');
            size_t n = amp ? (size_t)(amp - s) : strlen(s);
            const char *eq = memchr(s, '=', n);
            if (!first) tk_buf_add(&b, "&", 1);
            first = false;
            tk_buf_add(&b, s, eq ? (size_t)(eq - s) : n);
            if (eq) tk_buf_addstr(&b, "=***");
            s += n;
            if (*s == '&') s++;
        }
    }
    char *out = tk_strndup(b.data ? b.data : "", b.len);
    tk_buf_free(&b);
    return out;
}

/* ---- request building ---- */

static void add_enc(struct tk_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            tk_buf_add(b, &s[i], 1);
        } else {
            char h[3] = {'%', hex[c >> 4], hex[c & 15]};
            tk_buf_add(b, h, 3);
        }
    }
}

static void add_pair(struct tk_buf *b, const char *k, const char *v, size_t vn)
{
    if (b->len) tk_buf_add(b, "&", 1);
    tk_buf_addstr(b, k);
    tk_buf_add(b, "=", 1);
    add_enc(b, v, vn);
}

tk_rc tk_conn_build_request(const json_t *eff, const char *client_id,
                            const struct tk_secret *client_secret,
                            const struct tk_secret *refresh_token, const json_t *scopes,
                            int timeout_ms, struct tk_conn_req *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    const char *url = json_string_value(json_object_get(eff, "token_url"));
    if (!url || !url[0])
        return tk_err_field(e, TK_EINVAL, "invalid_app", "token_url",
                            "the provider app has no token_url (set one on the app)");
    const char *method = json_string_value(json_object_get(eff, "token_method"));
    bool get = method && !strcmp(method, "GET");
    enum tk_client_auth auth = TK_CLIENT_AUTH_POST;
    const char *an = json_string_value(json_object_get(eff, "client_auth"));
    if (an && !tk_client_auth_parse(an, &auth))
        return tk_err_field(e, TK_EINVAL, "invalid_app", "client_auth", "unknown client_auth");
    json_t *sc = json_object_get(eff, "scopes");
    bool send_scopes = json_is_true(json_object_get(sc, "sent_on_refresh"));
    const char *sep = json_string_value(json_object_get(sc, "separator"));
    struct tk_buf params, query;
    tk_buf_init(&params, 64 * 1024);
    tk_buf_init(&query, 64 * 1024);
    add_pair(&params, "grant_type", "refresh_token", 13);
    add_pair(&params, "refresh_token", (const char *)refresh_token->p, refresh_token->len);
    if (send_scopes && json_array_size(scopes) > 0) {
        struct tk_buf s;
        tk_buf_init(&s, 64 * 1024);
        size_t i;
        json_t *v;
        json_array_foreach(scopes, i, v)
        {
            if (i) tk_buf_addstr(&s, sep && sep[0] ? sep : " ");
            tk_buf_addstr(&s, json_string_value(v) ? json_string_value(v) : "");
        }
        add_pair(&params, "scope", s.data ? s.data : "", s.len);
        tk_buf_free(&s);
    }
    /* client authentication */
    struct tk_buf *cred = auth == TK_CLIENT_AUTH_QUERY ? &query : &params;
    if (auth == TK_CLIENT_AUTH_BASIC && client_secret) {
        struct tk_buf u;
        tk_buf_init(&u, 32 * 1024);
        add_enc(&u, client_id, strlen(client_id));
        tk_buf_add(&u, ":", 1);
        add_enc(&u, (const char *)client_secret->p, client_secret->len);
        size_t n = 4 * ((u.len + 2) / 3) + 1;
        char *b64 = tk_malloc(n);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)u.data, (int)u.len);
        size_t hn = strlen(b64) + 32;
        out->auth_header = tk_malloc(hn);
        snprintf(out->auth_header, hn, "Authorization: Basic %s", b64);
        tk_wipe(b64, strlen(b64));
        free(b64);
        tk_buf_free_wipe(&u);
    } else {
        add_pair(cred, "client_id", client_id, strlen(client_id));
        if (client_secret)
            add_pair(cred, "client_secret", (const char *)client_secret->p, client_secret->len);
    }
    /* GET: everything in the query */
    if (get && params.len) {
        if (query.len) tk_buf_add(&query, "&", 1);
        tk_buf_add(&query, params.data, params.len);
        tk_buf_reset(&params);
    }
    size_t un = strlen(url) + query.len + 2;
    out->url = tk_malloc(un);
    if (query.len)
        snprintf(out->url, un, "%s%c%.*s", url, strchr(url, '?') ? '&' : '?', (int)query.len,
                 query.data);
    else
        snprintf(out->url, un, "%s", url);
    size_t nh = 0;
    out->headers[nh++] = "Accept: application/json";
    if (!get) {
        out->headers[nh++] = "Content-Type: application/x-www-form-urlencoded";
        out->body = tk_strndup(params.data ? params.data : "", params.len);
    }
    if (out->auth_header) out->headers[nh++] = out->auth_header;
    size_t nm = 0;
    out->mask[nm++] = (const char *)refresh_token->p;
    if (client_secret) out->mask[nm++] = (const char *)client_secret->p;
    out->req.method = get ? "GET" : "POST";
    out->req.url = out->url;
    out->req.headers = out->headers;
    out->req.nheaders = nh;
    out->req.body = out->body;
    out->req.body_len = out->body ? strlen(out->body) : 0;
    out->req.timeout_ms = timeout_ms;
    out->req.mask = out->mask;
    out->req.nmask = nm;
    tk_buf_free_wipe(&params);
    tk_buf_free_wipe(&query);
    return TK_OK;
}

void tk_conn_req_free(struct tk_conn_req *r)
{
    if (r->url) tk_wipe(r->url, strlen(r->url));
    if (r->body) tk_wipe(r->body, strlen(r->body));
    if (r->auth_header) tk_wipe(r->auth_header, strlen(r->auth_header));
    free(r->url);
    free(r->body);
    free(r->auth_header);
    memset(r, 0, sizeof *r);
}

/* ---- classification ---- */

static json_t *json_body(const struct tk_out_result *a)
{
    if (!a->body || !a->body_len) return NULL;
    size_t i = 0;
    while (i < a->body_len &&
           (a->body[i] == ' ' || a->body[i] == '\n' || a->body[i] == '\r' || a->body[i] == '\t'))
        i++;
    if (i >= a->body_len || a->body[i] != '{') return NULL;
    json_t *v = json_loadb(a->body, a->body_len, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* An OAuth error code from the answer, sanitized ([a-z0-9_], <= 40). */
static bool oauth_error(json_t *o, char reason[TK_CONN_REASON_MAX])
{
    const char *s = json_string_value(json_object_get(o, "error"));
    if (!s || !s[0]) return false;
    size_t k = 0;
    for (size_t i = 0; s[i] && k < 40; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') reason[k++] = c;
    }
    reason[k] = '\0';
    return k > 0;
}

enum tk_refresh_outcome tk_conn_classify(const struct tk_out_result *a, const json_t *eff,
                                         char reason[TK_CONN_REASON_MAX], int64_t *retry_after_s)
{
    (void)eff;
    reason[0] = '\0';
    *retry_after_s = 0;
    if (a->error != TK_OUT_OK) {
        snprintf(reason, TK_CONN_REASON_MAX, "%s", tk_out_error_name(a->error));
        if (a->error == TK_OUT_STOPPING || a->error == TK_OUT_BUSY || a->error == TK_OUT_CANCELLED)
            return TK_REFRESH_NONE;
        return TK_REFRESH_ERROR;
    }
    if (a->retry_after[0]) {
        int64_t s;
        if (tk_parse_int(a->retry_after, 0, 86400, &s) == TK_OK) *retry_after_s = s;
    }
    if (a->status == 429) {
        snprintf(reason, TK_CONN_REASON_MAX, "rate_limited");
        return TK_REFRESH_ERROR;
    }
    if (a->status >= 500) {
        snprintf(reason, TK_CONN_REASON_MAX, "http_%ld", a->status);
        return TK_REFRESH_ERROR;
    }
    json_t *o = json_body(a);
    if (!o) {
        snprintf(reason, TK_CONN_REASON_MAX, "not_json");
        return TK_REFRESH_ERROR;
    }
    enum tk_refresh_outcome out;
    if (oauth_error(o, reason)) {
        /* an OAuth error: the grant, the client or the request is refused;
         * retrying the same request cannot help (temporarily_unavailable
         * and slow_down excepted) */
        if (!strcmp(reason, "temporarily_unavailable") || !strcmp(reason, "slow_down") ||
            !strcmp(reason, "server_error"))
            out = TK_REFRESH_ERROR;
        else
            out = TK_REFRESH_FAILED;
    } else if (a->status >= 200 && a->status < 300) {
        json_t *at = json_object_get(o, "access_token");
        if (json_is_string(at) && json_string_length(at) > 0) {
            out = TK_REFRESH_OK;
        } else {
            snprintf(reason, TK_CONN_REASON_MAX, "invalid_answer");
            out = TK_REFRESH_ERROR;
        }
    } else {
        snprintf(reason, TK_CONN_REASON_MAX, "http_%ld", a->status);
        out = (a->status == 400 || a->status == 401) ? TK_REFRESH_FAILED : TK_REFRESH_ERROR;
    }
    json_decref(o);
    return out;
}

static int64_t json_int_or(json_t *v, int64_t def)
{
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_string(v)) {
        int64_t x;
        if (tk_parse_int(json_string_value(v), 0, INT64_MAX / 2000, &x) == TK_OK) return x;
    }
    return def;
}

tk_rc tk_conn_parse_answer(const char *body, size_t len, const json_t *eff, int64_t now_ms,
                           struct tk_conn_tokens *out, json_t **holder, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    *holder = NULL;
    json_t *o = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return tk_err_set(e, TK_EUPSTREAM, "invalid_answer",
                          "the token endpoint's answer is not a JSON object");
    }
    json_t *at = json_object_get(o, "access_token");
    size_t n;
    if (!json_is_string(at) || !tk_conn_token_valid(json_string_value(at), &n)) {
        json_decref(o);
        return tk_err_set(e, TK_EUPSTREAM, "invalid_answer",
                          "the token endpoint's answer has no usable access_token");
    }
    out->access_token = json_string_value(at);
    json_t *rt = json_object_get(o, "refresh_token");
    if (json_is_string(rt) && tk_conn_token_valid(json_string_value(rt), &n))
        out->refresh_token = json_string_value(rt);
    int64_t life = json_int_or(json_object_get(eff, "default_lifetime"), 3600);
    int64_t ein = json_int_or(json_object_get(o, "expires_in"), -1);
    if (ein <= 0 || ein > 10LL * 365 * 86400) ein = life;
    out->expires_at = now_ms + ein * 1000;
    if (out->refresh_token) {
        int64_t rin = json_int_or(json_object_get(o, "refresh_token_expires_in"), -1);
        if (rin <= 0) rin = json_int_or(json_object_get(o, "x_refresh_token_expires_in"), -1);
        if (rin <= 0) rin = json_int_or(json_object_get(eff, "refresh_token_lifetime"), -1);
        if (rin > 0 && rin < 100LL * 365 * 86400) out->refresh_expires_at = now_ms + rin * 1000;
    }
    const char *tt = json_string_value(json_object_get(o, "token_type"));
    out->token_type = tt && tt[0] && strlen(tt) < 32 ? tt : NULL;
    const char *scope = json_string_value(json_object_get(o, "scope"));
    if (scope) {
        const char *sep =
            json_string_value(json_object_get(json_object_get(eff, "scopes"), "separator"));
        char sc = sep && sep[0] ? sep[0] : ' ';
        json_t *a = json_array();
        for (const char *s = scope; *s;) {
            while (*s == sc || *s == ' ')
                s++;
            const char *t = s;
            while (*t && *t != sc && *t != ' ')
                t++;
            if (t > s && json_array_size(a) < TK_APP_SCOPES_MAX &&
                (size_t)(t - s) <= TK_APP_SCOPE_MAX)
                json_array_append_new(a, json_stringn(s, (size_t)(t - s)));
            s = t;
        }
        json_object_set_new(o, "__scopes", a);
        out->scopes = tk_conn_scopes_valid(a) ? a : NULL;
    }
    *holder = o;
    return TK_OK;
}

