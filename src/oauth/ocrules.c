/* ocrules.c: the rules of OAuth clients without the store (oclients.h):
 * scope names, redirect URIs, the whole-spec check, and HTTP Basic client
 * credentials. Pure functions, so that the fuzz targets can reach them. */
#include "oclients.h"

#include "../common/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static tk_rc invalid(struct tk_err *e, const char *field, const char *fmt, const char *arg)
{
    return tk_err_field(e, TK_EINVAL, "invalid_field", field, fmt, arg ? arg : "");
}

/* ---- the form of names and URIs ---- */

bool tk_oauth_scope_name_valid(const char *s, size_t n)
{
    if (!s || n < 1 || n > TK_OAUTH_SCOPE_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return false;
    }
    return true;
}

static bool is_loopback_host(const char *h, size_t n)
{
    return (n == 9 && !memcmp(h, "127.0.0.1", 9)) || (n == 5 && !memcmp(h, "[::1]", 5)) ||
           (n == 9 && !strncasecmp(h, "localhost", 9));
}

/* Split the authority of scheme://authority/...: host (with brackets for
 * IPv6) and whether the port, if any, is 1..65535. false when malformed. */
static bool authority(const char *u, size_t n, const char **host, size_t *hn, bool *userinfo)
{
    size_t end = 0;
    while (end < n && u[end] != '/' && u[end] != '?' && u[end] != '#')
        end++;
    *userinfo = memchr(u, '@', end) != NULL;
    if (*userinfo || end == 0) return false;
    size_t hend;
    if (u[0] == '[') {
        const char *rb = memchr(u, ']', end);
        if (!rb) return false;
        hend = (size_t)(rb - u) + 1;
    } else {
        hend = 0;
        while (hend < end && u[hend] != ':')
            hend++;
    }
    if (hend == 0) return false;
    for (size_t i = 0; i < hend; i++)
        if (u[0] != '[' && !((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
                             (u[i] >= '0' && u[i] <= '9') || u[i] == '.' || u[i] == '-'))
            return false;
    if (hend < end) {
        if (u[hend] != ':' || hend + 1 == end || end - hend - 1 > 5) return false;
        long port = 0;
        for (size_t i = hend + 1; i < end; i++) {
            if (u[i] < '0' || u[i] > '9') return false;
            port = port * 10 + (u[i] - '0');
        }
        if (port < 1 || port > 65535) return false;
    }
    *host = u;
    *hn = hend;
    return true;
}

static size_t scheme_len(const char *u, size_t n)
{
    size_t i = 0;
    if (n == 0 || !((u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z'))) return 0;
    while (i < n && ((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
                     (u[i] >= '0' && u[i] <= '9') || u[i] == '+' || u[i] == '.' || u[i] == '-'))
        i++;
    return i < n && u[i] == ':' ? i : 0;
}

tk_rc tk_oauth_redirect_uri_check(const char *uri, size_t n, bool native, struct tk_err *e)
{
    const char *f = "redirect_uris";
    if (n < 1 || n > TK_OAUTH_URI_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", f,
                            "a redirect URI must be 1 to %d bytes", TK_OAUTH_URI_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)uri[i] < 0x21 || (unsigned char)uri[i] > 0x7e)
            return invalid(e, f,
                           "a redirect URI must be printable ASCII without spaces or control "
                           "characters (percent-encode the rest)%s",
                           NULL);
    if (memchr(uri, '#', n))
        return invalid(e, f, "a redirect URI must not have a fragment ('#')%s", NULL);
    size_t sl = scheme_len(uri, n);
    if (!sl) return invalid(e, f, "a redirect URI must be absolute (scheme:...)%s", NULL);
    bool https = sl == 5 && !strncasecmp(uri, "https", 5);
    bool http = sl == 4 && !strncasecmp(uri, "http", 4);
    if (https || http) {
        if (n < sl + 3 || memcmp(uri + sl, "://", 3) != 0)
            return invalid(e, f, "an http(s) redirect URI must be scheme://host/...%s", NULL);
        const char *host;
        size_t hn;
        bool ui;
        if (!authority(uri + sl + 3, n - sl - 3, &host, &hn, &ui))
            return invalid(e, f,
                           ui ? "a redirect URI must not carry user information ('user@host')%s"
                              : "a redirect URI must have a host (and a port of 1-65535, if "
                                "any)%s",
                           NULL);
        if (http && !is_loopback_host(host, hn))
            return invalid(e, f,
                           "a redirect URI must be https; http only to a loopback host "
                           "(127.0.0.1, [::1], localhost) of a native app%s",
                           NULL);
        if (http && !native)
            return invalid(e, f,
                           "an http loopback redirect URI is for native apps only (set "
                           "application_type native)%s",
                           NULL);
        return TK_OK;
    }
    if (!memchr(uri, '.', sl))
        return invalid(e, f,
                       "a redirect URI must be https (or, for a native app, http to a loopback "
                       "host or a private-use scheme with a dot such as com.example.app:/cb)%s",
                       NULL);
    if (!native)
        return invalid(e, f, "a private-use scheme redirect URI is for native apps only%s", NULL);
    return TK_OK;
}

bool tk_oauth_redirect_uri_native(const char *uri)
{
    size_t n = strlen(uri), sl = scheme_len(uri, n);
    if (!sl) return false;
    if (sl == 5 && !strncasecmp(uri, "https", 5)) return false;
    if (sl == 4 && !strncasecmp(uri, "http", 4)) {
        const char *host;
        size_t hn;
        bool ui;
        return n > 7 && !memcmp(uri + 4, "://", 3) && authority(uri + 7, n - 7, &host, &hn, &ui) &&
               is_loopback_host(host, hn);
    }
    return memchr(uri, '.', sl) != NULL;
}

/* ---- the spec ---- */

static bool plain_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) == strlen(json_string_value(v));
}

static bool one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(s, *set)) return true;
    return false;
}

static const char *str_or(json_t *o, const char *k, const char *def)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

static bool in_array(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i,
                       v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    return false;
}

/* An array of at most max distinct plain strings, each accepted by ok
 * (NULL: any) or one of set. */
static tk_rc check_strings(json_t *a, const char *field, size_t max, const char *const *set,
                           struct tk_err *e)
{
    if (!json_is_array(a)) return invalid(e, field, "%s must be an array of strings", field);
    if (json_array_size(a) > max)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s has more than %zu entries",
                            field, max);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!plain_string(v))
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s[%zu] must be a string without NUL", field, i);
        const char *s = json_string_value(v);
        if (set && !one_of(s, set)) {
            char list[160] = "";
            size_t n = 0;
            for (const char *const *p = set; *p && n < sizeof list; p++) {
                int w = snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *p);
                if (w > 0) n += (size_t)w;
            }
            return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s[%zu] must be one of %s",
                                field, i, list);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(json_string_value(json_array_get(a, j)), s))
                return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                    "%s[%zu] repeats an earlier entry", field, i);
    }
    return TK_OK;
}

static void set_default(json_t *spec, const char *k, json_t *v)
{
    if (!json_object_get(spec, k))
        json_object_set_new(spec, k, v);
    else
        json_decref(v);
}

tk_rc tk_oauth_client_normalize(json_t *spec, struct tk_err *e)
{
    static const char *const types[] = {"confidential", "public", NULL};
    static const char *const apps[] = {"web", "native", NULL};
    static const char *const methods[] = {"client_secret_basic", "client_secret_post", "none",
                                          NULL};
    static const char *const grants[] = {"authorization_code", "refresh_token",
                                         "client_credentials", NULL};
    static const char *const statuses[] = {"active", "disabled", NULL};
    json_t *v = json_object_get(spec, "name");
    if (!v) return tk_err_field(e, TK_EINVAL, "missing_field", "name", "name is required");
    if (!plain_string(v))
        return invalid(e, "name", "name must be a string of 1 to 128 bytes without NUL%s", NULL);
    tk_rc rc = tk_text_check_name("name", json_string_value(v), TK_OAUTH_CLIENT_NAME_MAX, e);
    if (rc != TK_OK) return rc;
    struct {
        const char *k;
        const char *const *set;
    } enums[] = {{"client_type", types},
                 {"application_type", apps},
                 {"token_endpoint_auth_method", methods},
                 {"status", statuses}};
    for (size_t i = 0; i < TK_NELEM(enums); i++) {
        v = json_object_get(spec, enums[i].k);
        if (v && (!json_is_string(v) || !one_of(json_string_value(v), enums[i].set))) {
            char list[96] = "";
            size_t n = 0;
            for (const char *const *p = enums[i].set; *p && n < sizeof list; p++) {
                int w = snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *p);
                if (w > 0) n += (size_t)w;
            }
            return tk_err_field(e, TK_EINVAL, "invalid_field", enums[i].k, "%s must be one of %s",
                                enums[i].k, list);
        }
    }
    const char *method = str_or(spec, "token_endpoint_auth_method", NULL);
    if (!json_object_get(spec, "client_type"))
        json_object_set_new(
            spec, "client_type",
            json_string(method && !strcmp(method, "none") ? "public" : "confidential"));
    bool conf = !strcmp(str_or(spec, "client_type", ""), "confidential");
    set_default(spec, "token_endpoint_auth_method",
                json_string(conf ? "client_secret_basic" : "none"));
    method = str_or(spec, "token_endpoint_auth_method", "");
    if (conf && !strcmp(method, "none"))
        return invalid(e, "token_endpoint_auth_method",
                       "a confidential client authenticates with client_secret_basic or "
                       "client_secret_post, not none%s",
                       NULL);
    if (!conf && strcmp(method, "none") != 0)
        return invalid(e, "token_endpoint_auth_method",
                       "a public client has no secret: its token_endpoint_auth_method is none%s",
                       NULL);
    set_default(spec, "application_type", json_string("web"));
    set_default(spec, "grant_types", json_pack("[s, s]", "authorization_code", "refresh_token"));
    set_default(spec, "redirect_uris", json_array());
    set_default(spec, "scopes", json_array());
    set_default(spec, "default_scopes", json_array());
    set_default(spec, "rotate_refresh", json_true());
    set_default(spec, "status", json_string("active"));
    bool native = !strcmp(str_or(spec, "application_type", ""), "native");

    json_t *g = json_object_get(spec, "grant_types");
    if ((rc = check_strings(g, "grant_types", 3, grants, e)) != TK_OK) return rc;
    if (json_array_size(g) == 0)
        return invalid(e, "grant_types", "grant_types must name at least one grant type%s", NULL);
    if (!conf && in_array(g, "client_credentials"))
        return invalid(e, "grant_types",
                       "client_credentials is for confidential clients only (a public client "
                       "cannot authenticate)%s",
                       NULL);
    json_t *ru = json_object_get(spec, "redirect_uris");
    if ((rc = check_strings(ru, "redirect_uris", TK_OAUTH_REDIRECTS_MAX, NULL, e)) != TK_OK)
        return rc;
    size_t i;
    json_array_foreach(ru, i, v)
    {
        rc = tk_oauth_redirect_uri_check(json_string_value(v), json_string_length(v), native, e);
        if (rc != TK_OK) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            return tk_err_field(e, TK_EINVAL, "invalid_field", "redirect_uris",
                                "redirect_uris[%zu]: %s", i, msg);
        }
    }
    if (in_array(g, "authorization_code") && json_array_size(ru) == 0)
        return invalid(e, "redirect_uris",
                       "the authorization_code grant needs at least one redirect URI%s", NULL);
    json_t *sc = json_object_get(spec, "scopes");
    if ((rc = check_strings(sc, "scopes", TK_OAUTH_CLIENT_SCOPES_MAX, NULL, e)) != TK_OK) return rc;
    json_array_foreach(sc, i, v) if (
        !tk_oauth_scope_name_valid(
            json_string_value(v),
            json_string_length(v))) return tk_err_field(e, TK_EINVAL, "invalid_field", "scopes",
                                                        "scopes[%zu] is not a scope name (1 to %d "
                                                        "of the printable ASCII "
                                                        "characters but space, '\"' and '\\')",
                                                        i, TK_OAUTH_SCOPE_MAX);
    json_t *ds = json_object_get(spec, "default_scopes");
    if ((rc = check_strings(ds, "default_scopes", TK_OAUTH_CLIENT_SCOPES_MAX, NULL, e)) != TK_OK)
        return rc;
    json_array_foreach(ds, i, v) if (!in_array(sc, json_string_value(v))) return tk_err_field(
        e, TK_EINVAL, "invalid_field", "default_scopes",
        "default_scopes[%zu] '%.128s' is not one of the client's scopes", i, json_string_value(v));
    v = json_object_get(spec, "rotate_refresh");
    if (!json_is_boolean(v))
        return invalid(e, "rotate_refresh", "rotate_refresh must be true or false%s", NULL);
    if (!conf && !json_is_true(v))
        return invalid(e, "rotate_refresh",
                       "a public client's refresh tokens always rotate (rotate_refresh must be "
                       "true)%s",
                       NULL);
    return TK_OK;
}

/* ---- HTTP Basic client credentials ---- */

static int b64val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Standard base64 (padding optional) of n chars into out (cap bytes, NUL
 * added); false when malformed or too long. */
static bool b64dec(const char *s, size_t n, char *out, size_t cap, size_t *outn)
{
    while (n && s[n - 1] == '=')
        n--;
    if (n % 4 == 1) return false;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return false;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap) return false;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *outn = o;
    return true;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 6749 §2.3.1: the id and secret in Basic are form-urlencoded first.
 * Decode s (n bytes) into out (cap, NUL added); false on a bad escape, a
 * NUL (raw or %00) or overflow. */
static bool form_unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '\0') return false; /* a raw NUL from the base64 */
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n) return false;
            int hi = hexv(s[i + 1]), lo = hi < 0 ? -1 : hexv(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= cap) return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

bool tk_oauth_basic_parse(const char *value, char *id, size_t idcap, char *secret, size_t secretcap)
{
    char raw[TK_OAUTH_CLIENT_ID_MAX * 3];
    id[0] = secret[0] = '\0';
    while (*value == ' ')
        value++;
    size_t n = strlen(value), rn = 0;
    const char *colon = NULL;
    bool ok = n <= sizeof raw * 4 / 3 && b64dec(value, n, raw, sizeof raw, &rn) &&
              (colon = memchr(raw, ':', rn)) != NULL &&
              form_unescape(raw, (size_t)(colon - raw), id, idcap) &&
              form_unescape(colon + 1, rn - (size_t)(colon - raw) - 1, secret, secretcap) &&
              id[0] != '\0';
    tk_wipe(raw, sizeof raw);
    if (!ok) {
        tk_wipe(secret, secretcap);
        id[0] = '\0';
    }
    return ok;
}
