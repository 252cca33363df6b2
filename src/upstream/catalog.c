/* catalog.c: the provider catalogue (see upstream.h): URL and hostname
 * checks, the strict parser of one catalogue file, and the loader that
 * merges the built-in files with a providers_dir. */
#include "catalog_internal.h"

#include "../common/log.h"
#include "../common/text.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- URLs ---- */

/* The last label is a number (digits, or 0x and hex digits): the name is
 * an IPv4 address in one of the forms inet_aton, libcurl and browsers
 * accept (WHATWG URL "ends in a number": 2130706433, 0x7f000001, 127.1,
 * 0177.0.0.1 are all 127.0.0.1), never a DNS name (RFC 3696 §2: a
 * top-level label is not all-numeric). */
static bool ends_in_number(const char *s, size_t len)
{
    size_t i = len;
    while (i > 0 && s[i - 1] != '.')
        i--;
    const char *l = s + i;
    size_t n = len - i;
    if (n >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
        for (size_t k = 2; k < n; k++)
            if (!((l[k] >= '0' && l[k] <= '9') || (l[k] >= 'a' && l[k] <= 'f') ||
                  (l[k] >= 'A' && l[k] <= 'F')))
                return false;
        return true;
    }
    for (size_t k = 0; k < n; k++)
        if (l[k] < '0' || l[k] > '9') return false;
    return n > 0;
}

bool tk_hostname_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > 253 || strlen(s) != len) return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && label > 0)) return false;
        if (++label > 63) return false;
    }
    return label > 0 && s[len - 1] != '-' && !ends_in_number(s, len);
}

static bool ipv4_valid(const char *s, size_t len, int *first)
{
    int parts = 0, v = -1;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (v < 0) return false;
            if (parts == 0) *first = v;
            parts++;
            v = -1;
            continue;
        }
        if (s[i] < '0' || s[i] > '9') return false;
        if (v == 0) return false; /* no leading zeros (octal forms) */
        v = (v < 0 ? 0 : v * 10) + (s[i] - '0');
        if (v > 255) return false;
    }
    return parts == 4;
}

tk_rc tk_upstream_url_check(const char *field, const char *url, struct tk_err *e)
{
    size_t n = url ? strlen(url) : 0;
    if (n == 0)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s must not be empty", field);
    if (n > TK_URL_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s is longer than %d bytes",
                            field, TK_URL_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s must be printable ASCII without spaces (byte %zu is not)",
                                field, i + 1);
    bool https = !strncmp(url, "https://", 8);
    bool http = !https && !strncmp(url, "http://", 7);
    if (!https && !http)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                            "%s must be an absolute URL starting with https://", field);
    if (strchr(url, '#'))
        return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s must not have a fragment (#)",
                            field);
    const char *a = url + (https ? 8 : 7);
    size_t alen = strcspn(a, "/?");
    if (memchr(a, '@', alen))
        return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                            "%s must not carry user info (user:password@)", field);
    const char *host = a, *port = NULL;
    size_t hlen;
    bool v6 = false;
    if (alen > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s has an IPv6 host without its closing ]", field);
        host = a + 1;
        hlen = (size_t)(close - host);
        v6 = true;
        if (close + 1 < a + alen) {
            if (close[1] != ':')
                return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                    "%s has characters after its IPv6 host", field);
            port = close + 2;
        }
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
            if (!hex && c != ':' && c != '.')
                return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                    "%s has an IPv6 host that is not an address", field);
        }
        if (hlen < 2)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s has an empty IPv6 host",
                                field);
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
        if (colon) port = colon + 1;
    }
    if (port) {
        size_t plen = (size_t)(a + alen - port);
        long v = 0;
        if (plen == 0 || plen > 5)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s has a port that is not a number from 1 to 65535", field);
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9')
                return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                    "%s has a port that is not a number from 1 to 65535", field);
            v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s has a port that is not a number from 1 to 65535", field);
    }
    bool loopback = false;
    if (v6) {
        loopback = hlen == 3 && !memcmp(host, "::1", 3);
    } else {
        char h[254];
        if (hlen == 0 || hlen > 253)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s must have a host name of 1 to 253 bytes", field);
        memcpy(h, host, hlen);
        h[hlen] = '\0';
        int first = -1;
        if (ipv4_valid(h, hlen, &first))
            loopback = first == 127;
        else if (!tk_hostname_valid(h, hlen))
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s has a host that is neither a DNS name nor an IPv4 address",
                                field);
        else
            loopback = !strcasecmp(h, "localhost");
    }
    if (http && !loopback)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                            "%s must use https (plain http only to localhost, 127.0.0.0/8 or "
                            "[::1])",
                            field);
    return TK_OK;
}

/* ---- names ---- */

static const char *const client_auth_names[] = {
    [TK_CLIENT_AUTH_BASIC] = "client_secret_basic",
    [TK_CLIENT_AUTH_POST] = "client_secret_post",
    [TK_CLIENT_AUTH_QUERY] = "query",
};

const char *tk_client_auth_name(enum tk_client_auth a)
{
    return (unsigned)a < TK_NELEM(client_auth_names) ? client_auth_names[a] : "?";
}

bool tk_client_auth_parse(const char *s, enum tk_client_auth *out)
{
    for (size_t i = 0; s && i < TK_NELEM(client_auth_names); i++)
        if (!strcmp(s, client_auth_names[i])) {
            *out = (enum tk_client_auth)i;
            return true;
        }
    return false;
}

static bool slug_valid(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '-' && c != '_'))) return false;
    }
    return true;
}

/* ---- one file ---- */

/* Fill e: "FILE: MEMBER: why" (the member also in e->field). */
static tk_rc TK_PRINTF(4, 5)
    bad(struct tk_err *e, const char *file, const char *field, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return tk_err_field(e, TK_EINVAL, "invalid_provider", field, "%.120s: %s: %s", file, field,
                        why);
}

static const char *json_reason(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_premature_end_of_input:
        return "unexpected end of input";
    case json_error_end_of_input_expected:
        return "extra data after the value";
    case json_error_null_character:
        return "a NUL character";
    case json_error_null_byte_in_key:
        return "a NUL byte in a member name";
    case json_error_duplicate_key:
        return "a duplicate member name";
    case json_error_numeric_overflow:
        return "a number out of range";
    case json_error_stack_overflow:
        return "nesting too deep";
    default:
        return "a syntax error";
    }
}

/* Members of o outside allowed (NULL-terminated): the first is an error. */
static tk_rc only(json_t *o, const char *const *allowed, const char *file, const char *where,
                  struct tk_err *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(k, allowed[i]);
        if (!ok) {
            /* the member's name as given, printable (it is shown in a log) */
            char name[41], f[64];
            size_t n = 0;
            for (; k[n] && n < sizeof name - 1; n++)
                name[n] = (unsigned char)k[n] > 0x20 && (unsigned char)k[n] < 0x7f ? k[n] : '?';
            name[n] = '\0';
            snprintf(f, sizeof f, "%s%s%s", where, where[0] ? "." : "", n ? name : "\"\"");
            return bad(e, file, f, "unknown member (allowed: see the README's catalogue section)");
        }
    }
    return TK_OK;
}

/* A string member into out (size n): required or not, null allowed or not
 * (both give ""), 1 to max bytes without NUL or control characters. */
static tk_rc get_str(json_t *o, const char *k, const char *path, bool required, bool nullable,
                     size_t max, char *out, size_t n, const char *file, struct tk_err *e)
{
    out[0] = '\0';
    json_t *v = json_object_get(o, k);
    if (!v) return required ? bad(e, file, path, "required member missing") : TK_OK;
    if (json_is_null(v)) return nullable ? TK_OK : bad(e, file, path, "must be a string, not null");
    if (!json_is_string(v)) return bad(e, file, path, "must be a string");
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len == 0 || len > max || len >= n)
        return bad(e, file, path, "must be 1 to %zu bytes", max < n - 1 ? max : n - 1);
    if (strlen(s) != len) return bad(e, file, path, "must not contain a NUL character");
    memcpy(out, s, len + 1);
    return TK_OK;
}

static tk_rc get_bool(json_t *o, const char *k, const char *path, bool required, bool def,
                      bool *out, const char *file, struct tk_err *e)
{
    json_t *v = json_object_get(o, k);
    *out = def;
    if (!v) return required ? bad(e, file, path, "required member missing") : TK_OK;
    if (!json_is_boolean(v)) return bad(e, file, path, "must be true or false");
    *out = json_is_true(v);
    return TK_OK;
}

static tk_rc get_int(json_t *o, const char *k, const char *path, bool required, bool nullable,
                     int64_t min, int64_t max, int64_t def, int64_t *out, const char *file,
                     struct tk_err *e)
{
    json_t *v = json_object_get(o, k);
    *out = def;
    if (!v) return required ? bad(e, file, path, "required member missing") : TK_OK;
    if (json_is_null(v) && nullable) return TK_OK;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return bad(e, file, path, "must be an integer from %lld to %lld%s", (long long)min,
                   (long long)max, nullable ? " or null" : "");
    *out = json_integer_value(v);
    return TK_OK;
}

static const struct tk_provider_param *param_find(const struct tk_provider *p, const char *name,
                                                  size_t len)
{
    for (int i = 0; i < p->nparams; i++)
        if (strlen(p->params[i].name) == len && !memcmp(p->params[i].name, name, len))
            return &p->params[i];
    return NULL;
}

/* A URL template: each {param} names a declared param; with sample values
 * in place of the params it is a URL tk_upstream_url_check accepts. */
static tk_rc check_template(const struct tk_provider *p, const char *tmpl, const char *path,
                            const char *file, struct tk_err *e)
{
    if (!tmpl[0]) return TK_OK;
    char url[TK_URL_MAX * 2 + 1];
    size_t n = 0;
    for (const char *s = tmpl; *s;) {
        if (*s == '}') return bad(e, file, path, "has a } without its {");
        if (*s != '{') {
            if (n + 1 >= sizeof url) return bad(e, file, path, "is too long");
            url[n++] = *s++;
            continue;
        }
        const char *close = strchr(s, '}');
        if (!close) return bad(e, file, path, "has a { without its }");
        const struct tk_provider_param *pp = param_find(p, s + 1, (size_t)(close - s - 1));
        if (!pp) return bad(e, file, path, "names a {param} that is not declared under params");
        const char *sample = pp->type == TK_PARAM_HOSTNAME ? "example.com" : "x";
        size_t sl = strlen(sample);
        if (n + sl >= sizeof url) return bad(e, file, path, "is too long");
        memcpy(url + n, sample, sl);
        n += sl;
        s = close + 1;
    }
    url[n] = '\0';
    struct tk_err ue;
    if (tk_upstream_url_check(path, url, &ue) != TK_OK) return bad(e, file, path, "%s", ue.msg);
    return TK_OK;
}

static tk_rc parse_params(json_t *o, struct tk_provider *p, const char *file, struct tk_err *e)
{
    json_t *v = json_object_get(o, "params");
    if (!v || json_is_null(v)) return TK_OK;
    if (!json_is_object(v)) return bad(e, file, "params", "must be an object");
    if (json_object_size(v) > TK_PROVIDER_PARAMS_MAX)
        return bad(e, file, "params", "at most %d params", TK_PROVIDER_PARAMS_MAX);
    const char *k;
    json_t *d;
    json_object_foreach(v, k, d)
    {
        char path[64];
        bool named = slug_valid(k, strlen(k), TK_PROVIDER_PARAM_NAME_MAX);
        snprintf(path, sizeof path, "params.%.40s", named ? k : "(name)");
        if (!named)
            return bad(e, file, path,
                       "a param's name is 1 to %d of a-z 0-9 - _, starting with a letter or a "
                       "digit",
                       TK_PROVIDER_PARAM_NAME_MAX);
        if (!json_is_object(d)) return bad(e, file, path, "must be an object {type, description}");
        static const char *const allowed[] = {"type", "description", NULL};
        tk_rc rc = only(d, allowed, file, path, e);
        if (rc != TK_OK) return rc;
        struct tk_provider_param *pp = &p->params[p->nparams];
        snprintf(pp->name, sizeof pp->name, "%s", k);
        char type[16], sub[80];
        snprintf(sub, sizeof sub, "%s.type", path);
        rc = get_str(d, "type", sub, true, false, 15, type, sizeof type, file, e);
        if (rc != TK_OK) return rc;
        if (!strcmp(type, "hostname"))
            pp->type = TK_PARAM_HOSTNAME;
        else if (!strcmp(type, "name"))
            pp->type = TK_PARAM_NAME;
        else
            return bad(e, file, sub, "must be hostname or name");
        snprintf(sub, sizeof sub, "%s.description", path);
        rc = get_str(d, "description", sub, true, false, TK_PROVIDER_TEXT_MAX, pp->description,
                     sizeof pp->description, file, e);
        struct tk_err te;
        if (rc == TK_OK && tk_text_check_name(sub, pp->description, TK_PROVIDER_TEXT_MAX, &te))
            return bad(e, file, sub, "%s", te.msg);
        if (rc != TK_OK) return rc;
        p->nparams++;
    }
    return TK_OK;
}

tk_rc tk_provider_parse(const char *file, const char *text, size_t len, struct tk_provider *p,
                        struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    if (!file) file = "?";
    if (len > TK_PROVIDER_FILE_MAX)
        return bad(e, file, "(file)", "larger than %d bytes", TK_PROVIDER_FILE_MAX);
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return bad(e, file, "(file)", "not valid JSON: %s at line %d column %d", json_reason(&je),
                   je.line, je.column);
    tk_rc rc = TK_OK;
    struct tk_err te;
    if (!json_is_object(o)) {
        rc = bad(e, file, "(file)", "must hold one JSON object");
        goto out;
    }
    static const char *const allowed[] = {"name",
                                          "display_name",
                                          "documentation_url",
                                          "authorize_url",
                                          "token_url",
                                          "sandbox",
                                          "token_method",
                                          "client_auth",
                                          "rotates_refresh_tokens",
                                          "default_lifetime",
                                          "refresh_token_lifetime",
                                          "scopes",
                                          "pkce",
                                          "expired_token",
                                          "params",
                                          NULL};
    rc = only(o, allowed, file, "", e);
    /* name: the file's base name */
    if (rc == TK_OK)
        rc = get_str(o, "name", "name", true, false, TK_PROVIDER_NAME_MAX, p->name, sizeof p->name,
                     file, e);
    if (rc == TK_OK && !slug_valid(p->name, strlen(p->name), TK_PROVIDER_NAME_MAX))
        rc = bad(e, file, "name",
                 "must be 1 to %d of a-z 0-9 - _, starting with a letter or a digit",
                 TK_PROVIDER_NAME_MAX);
    if (rc == TK_OK) {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        size_t bl = strlen(base);
        if (bl < 6 || strcmp(base + bl - 5, ".json") || bl - 5 != strlen(p->name) ||
            memcmp(base, p->name, bl - 5))
            rc = bad(e, file, "name", "must be the file's name without .json");
    }
    if (rc == TK_OK)
        rc = get_str(o, "display_name", "display_name", true, false, TK_PROVIDER_TEXT_MAX,
                     p->display_name, sizeof p->display_name, file, e);
    if (rc == TK_OK &&
        tk_text_check_name("display_name", p->display_name, TK_PROVIDER_TEXT_MAX, &te))
        rc = bad(e, file, "display_name", "%s", te.msg);
    if (rc == TK_OK)
        rc = get_str(o, "documentation_url", "documentation_url", false, true, TK_URL_MAX,
                     p->documentation_url, sizeof p->documentation_url, file, e);
    if (rc == TK_OK && p->documentation_url[0] &&
        tk_upstream_url_check("documentation_url", p->documentation_url, &te))
        rc = bad(e, file, "documentation_url", "%s", te.msg);
    /* params before the URLs that use them */
    if (rc == TK_OK) rc = parse_params(o, p, file, e);
    if (rc == TK_OK)
        rc = get_str(o, "authorize_url", "authorize_url", true, true, TK_URL_MAX, p->authorize_url,
                     sizeof p->authorize_url, file, e);
    if (rc == TK_OK) rc = check_template(p, p->authorize_url, "authorize_url", file, e);
    if (rc == TK_OK)
        rc = get_str(o, "token_url", "token_url", true, true, TK_URL_MAX, p->token_url,
                     sizeof p->token_url, file, e);
    if (rc == TK_OK) rc = check_template(p, p->token_url, "token_url", file, e);
    if (rc == TK_OK && !p->token_url[0] && p->authorize_url[0])
        rc = bad(e, file, "token_url",
                 "must be set when authorize_url is (null only for URLs "
                 "set per app)");
    json_t *sb = json_object_get(o, "sandbox");
    if (rc == TK_OK && sb && !json_is_null(sb)) {
        static const char *const sb_allowed[] = {"authorize_url", "token_url", NULL};
        if (!json_is_object(sb))
            rc = bad(e, file, "sandbox", "must be an object {authorize_url, token_url} or null");
        if (rc == TK_OK) rc = only(sb, sb_allowed, file, "sandbox", e);
        if (rc == TK_OK)
            rc = get_str(sb, "authorize_url", "sandbox.authorize_url", true, false, TK_URL_MAX,
                         p->sandbox_authorize_url, sizeof p->sandbox_authorize_url, file, e);
        if (rc == TK_OK)
            rc = check_template(p, p->sandbox_authorize_url, "sandbox.authorize_url", file, e);
        if (rc == TK_OK)
            rc = get_str(sb, "token_url", "sandbox.token_url", true, false, TK_URL_MAX,
                         p->sandbox_token_url, sizeof p->sandbox_token_url, file, e);
        if (rc == TK_OK) rc = check_template(p, p->sandbox_token_url, "sandbox.token_url", file, e);
        p->has_sandbox = true;
    }
    char buf[32];
    if (rc == TK_OK)
        rc = get_str(o, "token_method", "token_method", false, false, 8, buf, sizeof buf, file, e);
    if (rc == TK_OK) {
        if (!buf[0] || !strcmp(buf, "POST"))
            p->token_get = false;
        else if (!strcmp(buf, "GET"))
            p->token_get = true;
        else
            rc = bad(e, file, "token_method", "must be POST or GET");
    }
    if (rc == TK_OK)
        rc = get_str(o, "client_auth", "client_auth", true, false, 24, buf, sizeof buf, file, e);
    if (rc == TK_OK && !tk_client_auth_parse(buf, &p->client_auth))
        rc =
            bad(e, file, "client_auth", "must be client_secret_basic, client_secret_post or query");
    if (rc == TK_OK)
        rc = get_bool(o, "rotates_refresh_tokens", "rotates_refresh_tokens", true, false,
                      &p->rotates_refresh_tokens, file, e);
    if (rc == TK_OK)
        rc = get_int(o, "default_lifetime", "default_lifetime", true, false, 60, 31536000, 0,
                     &p->default_lifetime, file, e);
    if (rc == TK_OK)
        rc = get_int(o, "refresh_token_lifetime", "refresh_token_lifetime", false, true, 60,
                     315360000, 0, &p->refresh_token_lifetime, file, e);
    p->scope_separator = ' ';
    json_t *sc = json_object_get(o, "scopes");
    if (rc == TK_OK && sc) {
        static const char *const sc_allowed[] = {"separator", "sent_on_refresh", NULL};
        if (!json_is_object(sc))
            rc = bad(e, file, "scopes", "must be an object {separator, sent_on_refresh}");
        if (rc == TK_OK) rc = only(sc, sc_allowed, file, "scopes", e);
        if (rc == TK_OK)
            rc = get_str(sc, "separator", "scopes.separator", false, false, 1, buf, sizeof buf,
                         file, e);
        if (rc == TK_OK && buf[0]) {
            if (strcmp(buf, " ") && strcmp(buf, ","))
                rc = bad(e, file, "scopes.separator", "must be \" \" or \",\"");
            else
                p->scope_separator = buf[0];
        }
        if (rc == TK_OK)
            rc = get_bool(sc, "sent_on_refresh", "scopes.sent_on_refresh", false, false,
                          &p->scopes_on_refresh, file, e);
    }
    if (rc == TK_OK) rc = get_bool(o, "pkce", "pkce", false, false, &p->pkce, file, e);
    p->expired_status = 401;
    json_t *ex = json_object_get(o, "expired_token");
    if (rc == TK_OK && ex) {
        static const char *const ex_allowed[] = {"status", "body_contains", NULL};
        int64_t st = 401;
        if (!json_is_object(ex))
            rc = bad(e, file, "expired_token", "must be an object {status, body_contains}");
        if (rc == TK_OK) rc = only(ex, ex_allowed, file, "expired_token", e);
        if (rc == TK_OK)
            rc = get_int(ex, "status", "expired_token.status", true, false, 200, 599, 401, &st,
                         file, e);
        p->expired_status = (int)st;
        if (rc == TK_OK)
            rc = get_str(ex, "body_contains", "expired_token.body_contains", false, true,
                         TK_PROVIDER_MATCH_MAX, p->expired_body, sizeof p->expired_body, file, e);
        if (rc == TK_OK && p->expired_body[0] &&
            tk_text_check_name("expired_token.body_contains", p->expired_body,
                               TK_PROVIDER_MATCH_MAX, &te))
            rc = bad(e, file, "expired_token.body_contains", "%s", te.msg);
    }
out:
    json_decref(o);
    if (rc != TK_OK) memset(p, 0, sizeof *p);
    return rc;
}

static json_t *str_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

json_t *tk_provider_json(const struct tk_provider *p)
{
    json_t *params = json_object();
    for (int i = 0; i < p->nparams; i++)
        json_object_set_new(params, p->params[i].name,
                            json_pack("{s:s, s:s, s:b}", "type",
                                      p->params[i].type == TK_PARAM_HOSTNAME ? "hostname" : "name",
                                      "description", p->params[i].description, "required", 1));
    char sep[2] = {p->scope_separator, '\0'};
    return json_pack(
        "{s:s, s:s, s:o, s:o, s:o, s:o, s:s, s:s, s:b, s:I, s:o, s:{s:s, s:b}, s:b, s:{s:i, s:o}, "
        "s:o, s:b, s:s}",
        "name", p->name, "display_name", p->display_name, "documentation_url",
        str_or_null(p->documentation_url), "authorize_url", str_or_null(p->authorize_url),
        "token_url", str_or_null(p->token_url), "sandbox",
        p->has_sandbox ? json_pack("{s:s, s:s}", "authorize_url", p->sandbox_authorize_url,
                                   "token_url", p->sandbox_token_url)
                       : json_null(),
        "token_method", p->token_get ? "GET" : "POST", "client_auth",
        tk_client_auth_name(p->client_auth), "rotates_refresh_tokens", p->rotates_refresh_tokens,
        "default_lifetime", (json_int_t)p->default_lifetime, "refresh_token_lifetime",
        p->refresh_token_lifetime ? json_integer(p->refresh_token_lifetime) : json_null(), "scopes",
        "separator", sep, "sent_on_refresh", p->scopes_on_refresh, "pkce", p->pkce, "expired_token",
        "status", p->expired_status, "body_contains", str_or_null(p->expired_body), "params",
        params, "urls_per_app", !p->token_url[0], "source",
        p->from_dir ? "providers_dir" : "builtin");
}

/* ---- the catalogue ---- */

struct tk_catalog {
    size_t n;
    struct tk_provider *p; /* name order */
};

void tk_catalog_free(struct tk_catalog *c)
{
    if (!c) return;
    free(c->p);
    free(c);
}

size_t tk_catalog_count(const struct tk_catalog *c)
{
    return c ? c->n : 0;
}

const struct tk_provider *tk_catalog_at(const struct tk_catalog *c, size_t i)
{
    return c && i < c->n ? &c->p[i] : NULL;
}

const struct tk_provider *tk_catalog_find(const struct tk_catalog *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n; i++)
        if (!strcmp(c->p[i].name, name)) return &c->p[i];
    return NULL;
}

/* Add or replace (by name) p in c. */
static tk_rc put(struct tk_catalog *c, const struct tk_provider *p, const char *file,
                 struct tk_err *e)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->p[i].name, p->name)) {
            c->p[i] = *p;
            return TK_OK;
        }
    if (c->n >= TK_CATALOG_MAX)
        return bad(e, file, "(file)", "the catalogue holds at most %d providers", TK_CATALOG_MAX);
    c->p[c->n++] = *p;
    return TK_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct tk_provider *)a)->name, ((const struct tk_provider *)b)->name);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read one file of the directory: a regular file (not a link) of at most
 * TK_PROVIDER_FILE_MAX bytes. */
static tk_rc read_file(int dfd, const char *name, const char *path, char **out, size_t *len,
                       struct tk_err *e)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return bad(e, path, "(file)", "cannot be opened: %s", strerror(errno));
    struct stat st;
    tk_rc rc = TK_OK;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = bad(e, path, "(file)", "is not a regular file");
    else if (st.st_size > TK_PROVIDER_FILE_MAX)
        rc = bad(e, path, "(file)", "larger than %d bytes", TK_PROVIDER_FILE_MAX);
    size_t n = 0;
    if (rc == TK_OK) {
        buf = tk_malloc(TK_PROVIDER_FILE_MAX + 1);
        for (;;) {
            ssize_t r = read(fd, buf + n, TK_PROVIDER_FILE_MAX + 1 - n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                rc = bad(e, path, "(file)", "cannot be read: %s", strerror(errno));
                break;
            }
            if (r == 0) break;
            n += (size_t)r;
            if (n > TK_PROVIDER_FILE_MAX) {
                rc = bad(e, path, "(file)", "larger than %d bytes", TK_PROVIDER_FILE_MAX);
                break;
            }
        }
    }
    close(fd);
    if (rc != TK_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return TK_OK;
}

static tk_rc load_dir(struct tk_catalog *c, const char *dir, struct tk_err *e)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return tk_err_field(e, TK_EINVAL, "invalid_provider", "providers_dir",
                            "providers_dir %.200s cannot be opened: %s", dir, strerror(errno));
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return tk_err_field(e, TK_EINVAL, "invalid_provider", "providers_dir",
                            "providers_dir %.200s cannot be read: %s", dir, strerror(errno));
    }
    char *names[TK_CATALOG_MAX + 1];
    size_t nn = 0;
    tk_rc rc = TK_OK;
    struct dirent *de;
    while (rc == TK_OK && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        if (nn >= TK_CATALOG_MAX) {
            rc = tk_err_field(e, TK_EINVAL, "invalid_provider", "providers_dir",
                              "providers_dir %.200s holds more than %d .json files", dir,
                              TK_CATALOG_MAX);
            break;
        }
        names[nn++] = tk_strdup(de->d_name);
    }
    qsort(names, nn, sizeof names[0], str_cmp);
    for (size_t i = 0; i < nn; i++) {
        if (rc == TK_OK) {
            char path[1200];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            char *text = NULL;
            size_t len = 0;
            rc = read_file(dfd, names[i], path, &text, &len, e);
            struct tk_provider *p = tk_malloc(sizeof *p);
            if (rc == TK_OK) rc = tk_provider_parse(path, text, len, p, e);
            if (rc == TK_OK) {
                p->from_dir = true;
                if (tk_catalog_find(c, p->name))
                    tk_info("providers_dir: %s replaces the built-in provider %s", path, p->name);
                rc = put(c, p, path, e);
            }
            free(p);
            free(text);
        }
        free(names[i]);
    }
    closedir(d);
    return rc;
}

tk_rc tk_catalog_load_from(const struct tk_embedded_provider *builtin, int nbuiltin,
                           const char *dir, struct tk_catalog **out, struct tk_err *e)
{
    struct tk_catalog *c = tk_calloc(1, sizeof *c);
    c->p = tk_calloc(TK_CATALOG_MAX, sizeof *c->p);
    tk_rc rc = TK_OK;
    struct tk_provider *p = tk_malloc(sizeof *p);
    for (int i = 0; rc == TK_OK && i < nbuiltin; i++) {
        rc = tk_provider_parse(builtin[i].file, builtin[i].text, strlen(builtin[i].text), p, e);
        if (rc == TK_OK) {
            if (tk_catalog_find(c, p->name))
                rc = bad(e, builtin[i].file, "name", "two built-in providers have this name");
            else
                rc = put(c, p, builtin[i].file, e);
        }
    }
    free(p);
    if (rc == TK_OK && dir && dir[0]) rc = load_dir(c, dir, e);
    if (rc != TK_OK) {
        tk_catalog_free(c);
        return rc;
    }
    qsort(c->p, c->n, sizeof *c->p, by_name);
    *out = c;
    return TK_OK;
}
