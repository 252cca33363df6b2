/* authorize.c: the authorization request's checks (authorize.h): parameter
 * bytes, redirect URI matching and the sentence that names the difference,
 * scopes, PKCE, resource. Pure: no store, no HTTP, so unit tests call them
 * directly. */
#include "authorize.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static void set(char *out, size_t n, const char *fmt, ...) TK_PRINTF(3, 4);
static void set(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static tk_rc refuse(struct tk_oauth_refusal *out, const char *error, const char *next,
                    const char *fmt, ...) TK_PRINTF(4, 5);
static tk_rc refuse(struct tk_oauth_refusal *out, const char *error, const char *next,
                    const char *fmt, ...)
{
    snprintf(out->error, sizeof out->error, "%s", error);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    snprintf(out->next_step, sizeof out->next_step, "%s", next ? next : "");
    return TK_EINVAL;
}

bool tk_oauth_param_ok(const char *name, const char *v, size_t n, size_t max, char *why,
                       size_t why_n)
{
    if (n > max) {
        set(why, why_n, "%s is %zu bytes long; at most %zu are accepted", name, n, max);
        return false;
    }
    if (!tk_utf8_valid(v, n)) {
        set(why, why_n, "%s is not valid UTF-8", name);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) {
            set(why, why_n, "%s holds a control character (byte 0x%02x at %zu)", name, ch, i);
            return false;
        }
    }
    return true;
}

bool tk_oauth_json_has(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    }
    return false;
}

/* ---- URIs ---- */

static bool copy_part(char *out, size_t n, const char *s, size_t len)
{
    if (len >= n) return false;
    memcpy(out, s, len);
    out[len] = '\0';
    return true;
}

bool tk_oauth_uri_parse(const char *s, struct tk_oauth_uri *u)
{
    memset(u, 0, sizeof *u);
    size_t i = 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return false;
    while (s[i] && s[i] != ':') {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '-' || ch == '.'))
            return false;
        i++;
    }
    if (s[i] != ':' || strncmp(s + i, "://", 3) != 0) return false;
    if (!copy_part(u->scheme, sizeof u->scheme, s, i)) return false;
    const char *a = s + i + 3;
    size_t alen = strcspn(a, "/?#");
    const char *rest = a + alen;
    /* userinfo: up to the last '@' of the authority */
    const char *at = NULL;
    for (const char *p = a; p < rest; p++)
        if (*p == '@') at = p;
    if (at) {
        u->has_userinfo = true;
        if (!copy_part(u->userinfo, sizeof u->userinfo, a, (size_t)(at - a))) return false;
        a = at + 1;
        alen = (size_t)(rest - a);
    }
    const char *hp = a, *hend;
    if (alen > 0 && *a == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close) return false;
        u->ipv6 = true;
        if (!copy_part(u->host, sizeof u->host, a + 1, (size_t)(close - a - 1))) return false;
        hend = close + 1;
        if (hend < rest && *hend != ':') return false;
    } else {
        hend = memchr(a, ':', alen);
        if (!hend) hend = rest;
        if (!copy_part(u->host, sizeof u->host, hp, (size_t)(hend - hp))) return false;
    }
    if (!u->host[0]) return false;
    if (hend < rest) { /* ':' port */
        const char *pp = hend + 1;
        size_t plen = (size_t)(rest - pp);
        if (plen == 0 || plen > 5) return false;
        for (size_t k = 0; k < plen; k++)
            if (pp[k] < '0' || pp[k] > '9') return false;
        copy_part(u->port, sizeof u->port, pp, plen);
    }
    size_t plen = strcspn(rest, "?#");
    if (!copy_part(u->path, sizeof u->path, rest, plen)) return false;
    rest += plen;
    if (*rest == '?') {
        u->has_query = true;
        size_t qlen = strcspn(rest + 1, "#");
        if (!copy_part(u->query, sizeof u->query, rest + 1, qlen)) return false;
        rest += 1 + qlen;
    }
    if (*rest == '#') u->has_fragment = true;
    return true;
}

bool tk_oauth_uri_loopback(const struct tk_oauth_uri *u)
{
    return !strcmp(u->scheme, "http") && !u->has_userinfo &&
           ((!u->ipv6 && !strcmp(u->host, "127.0.0.1")) || (u->ipv6 && !strcmp(u->host, "::1")));
}

static bool loopback_match(const char *reg, const char *uri)
{
    struct tk_oauth_uri a, b;
    if (!tk_oauth_uri_parse(reg, &a) || !tk_oauth_uri_parse(uri, &b)) return false;
    return tk_oauth_uri_loopback(&a) && tk_oauth_uri_loopback(&b) && !a.has_fragment &&
           !b.has_fragment && a.ipv6 == b.ipv6 && !strcmp(a.host, b.host) &&
           !strcmp(a.path, b.path) && a.has_query == b.has_query && !strcmp(a.query, b.query);
}

bool tk_oauth_redirect_match(const struct tk_oauth_client *c, const char *uri)
{
    size_t i;
    json_t *v;
    bool native = !strcmp(c->application_type, "native");
    json_array_foreach(c->redirect_uris, i, v)
    {
        const char *reg = json_string_value(v);
        if (!reg) continue;
        if (!strcmp(reg, uri)) return true;
        if (native && loopback_match(reg, uri)) return true;
    }
    return false;
}

/* A URI for a sentence: at most 200 bytes, cut on a character boundary. */
static void quote_uri(char *out, size_t n, const char *s)
{
    size_t len = strlen(s);
    if (len <= 200) {
        snprintf(out, n, "%s", s);
        return;
    }
    size_t cut = 200;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    snprintf(out, n, "%.*s...", (int)cut, s);
}

struct diffs {
    int n;
    char text[768];
};

static void diff_add(struct diffs *d, const char *fmt, ...) TK_PRINTF(2, 3);
static void diff_add(struct diffs *d, const char *fmt, ...)
{
    size_t used = strlen(d->text);
    if (d->n && used + 2 < sizeof d->text) {
        memcpy(d->text + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text + used, sizeof d->text - used, fmt, ap);
    va_end(ap);
    d->n++;
}

static const char *or_none(const char *s, char *buf, size_t n)
{
    if (!*s) return "none";
    snprintf(buf, n, "'%.80s'", s);
    return buf;
}

/* How uri differs from the registered reg. */
static void compare(const char *reg, const char *uri, bool native, struct diffs *d)
{
    memset(d, 0, sizeof *d);
    if (!strcasecmp(reg, uri)) {
        diff_add(d, "case");
        return;
    }
    struct tk_oauth_uri r, u;
    if (!tk_oauth_uri_parse(reg, &r) || !tk_oauth_uri_parse(uri, &u)) {
        diff_add(d, "not the same URI");
        d->n = 100;
        return;
    }
    char b1[96], b2[96];
    if (strcasecmp(r.scheme, u.scheme))
        diff_add(d, "scheme '%s' instead of '%s'", u.scheme, r.scheme);
    else if (strcmp(r.scheme, u.scheme))
        diff_add(d, "case of the scheme");
    if (u.has_userinfo && !r.has_userinfo)
        diff_add(d, "userinfo '%.80s@' before the host", u.userinfo);
    else if (u.has_userinfo != r.has_userinfo || strcmp(u.userinfo, r.userinfo))
        diff_add(d, "userinfo");
    if (strcasecmp(r.host, u.host))
        diff_add(d, "host '%.80s' instead of '%.80s'", u.host, r.host);
    else if (strcmp(r.host, u.host))
        diff_add(d, "case of the host");
    bool loop = native && tk_oauth_uri_loopback(&r) && tk_oauth_uri_loopback(&u);
    if (strcmp(r.port, u.port) && !loop)
        diff_add(d, "port %s instead of %s", or_none(u.port, b1, sizeof b1),
                 or_none(r.port, b2, sizeof b2));
    size_t rl = strlen(r.path), ul = strlen(u.path);
    if (!strcmp(r.path, u.path)) {
        /* same */
    } else if (ul == rl + 1 && u.path[ul - 1] == '/' && !strncmp(r.path, u.path, rl)) {
        diff_add(d, "trailing slash");
    } else if (rl == ul + 1 && r.path[rl - 1] == '/' && !strncmp(r.path, u.path, ul)) {
        diff_add(d, "missing trailing slash");
    } else if (!strcasecmp(r.path, u.path)) {
        diff_add(d, "case of the path");
    } else {
        char bp[120];
        snprintf(bp, sizeof bp, "'%.100s'", r.path[0] ? r.path : "");
        diff_add(d, "path '%.100s' instead of %s", u.path, r.path[0] ? bp : "none");
    }
    if (r.has_query != u.has_query || strcmp(r.query, u.query)) {
        if (!u.has_query)
            diff_add(d, "query missing: the registered one has '?%.80s'", r.query);
        else if (!r.has_query)
            diff_add(d, "query '?%.80s' added", u.query);
        else
            diff_add(d, "query '?%.80s' instead of '?%.80s'", u.query, r.query);
    }
    if (u.has_fragment) diff_add(d, "a fragment, which a redirect URI may not have");
    if (!d->n) diff_add(d, "encoding: the bytes differ");
}

void tk_oauth_redirect_explain(const struct tk_oauth_client *c, const char *uri,
                               struct tk_oauth_refusal *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->error, sizeof out->error, "invalid_request");
    char qu[256], qr[256];
    quote_uri(qu, sizeof qu, uri);
    size_t nreg = json_array_size(c->redirect_uris);
    struct tk_oauth_uri pu;
    bool parsed = tk_oauth_uri_parse(uri, &pu);
    if (nreg == 0) {
        set(out->reason, sizeof out->reason,
            "redirect_uri '%s' does not match: the client has no registered redirect URI", qu);
        set(out->next_step, sizeof out->next_step,
            "register the client's redirect URI (redirect_uris)");
        return;
    }
    bool native = !strcmp(c->application_type, "native");
    const char *best = NULL;
    struct diffs bd = {.n = 1 << 20};
    size_t i;
    json_t *v;
    json_array_foreach(c->redirect_uris, i, v)
    {
        const char *reg = json_string_value(v);
        if (!reg) continue;
        struct diffs d;
        compare(reg, uri, native, &d);
        if (d.n < bd.n) {
            bd = d;
            best = reg;
        }
    }
    if (!best) best = "";
    quote_uri(qr, sizeof qr, best);
    if (!parsed) {
        set(out->reason, sizeof out->reason,
            "redirect_uri '%s' is not an absolute URI with a host (scheme://host/path); the "
            "client registers '%s'%s",
            qu, qr, nreg > 1 ? " and others" : "");
        set(out->next_step, sizeof out->next_step, "make the client send '%s'", qr);
        return;
    }
    if (nreg == 1)
        set(out->reason, sizeof out->reason,
            "redirect_uri '%s' does not match the registered '%s' (%s)", qu, qr, bd.text);
    else
        set(out->reason, sizeof out->reason,
            "redirect_uri '%s' does not match any of the %zu registered; the closest is '%s' (%s)",
            qu, nreg, qr, bd.text);
    /* what may be registered: https, or http on loopback, without userinfo
     * or fragment (what the clients part accepts) */
    bool registrable = !pu.has_userinfo && !pu.has_fragment &&
                       (!strcmp(pu.scheme, "https") || tk_oauth_uri_loopback(&pu) ||
                        (strcmp(pu.scheme, "http") && strchr(pu.scheme, '.')));
    if (registrable)
        set(out->next_step, sizeof out->next_step,
            "register '%s' for the client (redirect_uris) or make the client send '%s'", qu, qr);
    else
        set(out->next_step, sizeof out->next_step,
            "make the client send '%s' ('%s' cannot be registered)", qr, qu);
}

/* ---- scopes ---- */

static bool scope_char_ok(unsigned char ch)
{
    /* RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E */
    return ch == 0x21 || (ch >= 0x23 && ch <= 0x5B) || (ch >= 0x5D && ch <= 0x7E);
}

static void join(json_t *a, char *out, size_t n, const char *sep, bool quote)
{
    out[0] = '\0';
    size_t i, used = 0;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *s = json_string_value(v);
        if (!s) continue;
        int w = snprintf(out + used, n - used, "%s%s%s%s", i ? sep : "", quote ? "'" : "", s,
                         quote ? "'" : "");
        if (w < 0 || (size_t)w >= n - used) {
            if (n > 4) snprintf(out + n - 4, 4, "...");
            return;
        }
        used += (size_t)w;
    }
}

tk_rc tk_oauth_scopes_resolve(const struct tk_oauth_client *c, const char *scope, json_t **granted,
                              struct tk_oauth_refusal *out)
{
    *granted = NULL;
    memset(out, 0, sizeof *out);
    char allowed[600];
    join(c->scopes, allowed, sizeof allowed, " ", false);
    json_t *req = json_array();
    const char *p = scope ? scope : "";
    while (*p) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (!len) break;
        for (size_t k = 0; k < len; k++) {
            if (!scope_char_ok((unsigned char)p[k])) {
                json_decref(req);
                return refuse(out, "invalid_scope", "make the client send scope names only",
                              "scope '%.*s' has a character that RFC 6749 does not allow in a "
                              "scope (a quote, a backslash or a non-ASCII character)",
                              (int)(len > 60 ? 60 : len), p);
            }
        }
        if (len > TK_OAUTH_SCOPE_MAX) {
            json_decref(req);
            return refuse(out, "invalid_scope", NULL,
                          "a scope is %zu bytes long; at most %d are accepted", len,
                          TK_OAUTH_SCOPE_MAX);
        }
        char name[TK_OAUTH_SCOPE_MAX + 1];
        memcpy(name, p, len);
        name[len] = '\0';
        if (!tk_oauth_json_has(req, name)) {
            if (json_array_size(req) >= TK_OAUTH_SCOPES_MAX) {
                json_decref(req);
                return refuse(out, "invalid_scope", NULL, "more than %d scopes are requested",
                              TK_OAUTH_SCOPES_MAX);
            }
            json_array_append_new(req, json_string(name));
        }
        p += len;
    }
    if (json_array_size(req) == 0) {
        json_decref(req);
        if (json_array_size(c->default_scopes) == 0)
            return refuse(out, "invalid_scope",
                          "give the client default scopes, or make it send scope",
                          "no scope is requested and the client has no default scopes; "
                          "allowed: %s",
                          allowed[0] ? allowed : "none");
        *granted = json_deep_copy(c->default_scopes);
        return TK_OK;
    }
    json_t *bad = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(req, i, v)
    {
        if (!tk_oauth_json_has(c->scopes, json_string_value(v))) json_array_append(bad, v);
    }
    if (json_array_size(bad)) {
        char badl[600];
        join(bad, badl, sizeof badl, ", ", true);
        char next[TK_OAUTH_REASON_MAX];
        set(next, sizeof next,
            "allow %s for the client (in the tenant's scope catalogue) or make the client "
            "request only: %s",
            badl, allowed[0] ? allowed : "no scope");
        bool one = json_array_size(bad) == 1;
        refuse(out, "invalid_scope", next, "scope%s %s %s not allowed for this client; allowed: %s",
               one ? "" : "s", badl, one ? "is" : "are", allowed[0] ? allowed : "none");
        json_decref(bad);
        json_decref(req);
        return TK_EINVAL;
    }
    json_decref(bad);
    *granted = req;
    return TK_OK;
}

/* ---- PKCE ---- */

tk_rc tk_oauth_pkce_check(const char *challenge, const char *method, bool required,
                          struct tk_oauth_refusal *out)
{
    memset(out, 0, sizeof *out);
    const char *s256 = "make the client use PKCE with S256 (RFC 7636)";
    if (method && !challenge)
        return refuse(out, "invalid_request", s256,
                      "code_challenge_method is given without code_challenge");
    if (!challenge) {
        if (required)
            return refuse(out, "invalid_request", s256,
                          "code_challenge is required for this client (PKCE with S256)");
        return TK_OK;
    }
    if (!method)
        return refuse(out, "invalid_request", s256,
                      "code_challenge_method is missing, which means plain; plain is not "
                      "supported; use S256");
    if (!strcmp(method, "plain"))
        return refuse(out, "invalid_request", s256,
                      "code_challenge_method plain is not supported; use S256");
    if (strcmp(method, "S256"))
        return refuse(out, "invalid_request", s256,
                      "code_challenge_method '%.40s' is not supported; use S256", method);
    size_t n = strlen(challenge);
    if (n < TK_OAUTH_CHALLENGE_MIN || n > TK_OAUTH_CHALLENGE_MAX)
        return refuse(out, "invalid_request", s256,
                      "code_challenge is %zu characters long; S256 gives 43 (%d..%d accepted)", n,
                      TK_OAUTH_CHALLENGE_MIN, TK_OAUTH_CHALLENGE_MAX);
    for (size_t i = 0; i < n; i++) {
        char ch = challenge[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return refuse(out, "invalid_request", s256,
                          "code_challenge has a character outside base64url at %zu (padding "
                          "'=' included)",
                          i);
    }
    return TK_OK;
}

/* ---- resource ---- */

tk_rc tk_oauth_resource_check(const char *resource, struct tk_oauth_refusal *out)
{
    memset(out, 0, sizeof *out);
    struct tk_oauth_uri u;
    char q[256];
    quote_uri(q, sizeof q, resource);
    if (!tk_oauth_uri_parse(resource, &u))
        return refuse(out, "invalid_target", "make the client send its resource server's URI",
                      "resource '%s' is not an absolute URI (RFC 8707)", q);
    if (u.has_fragment)
        return refuse(out, "invalid_target", "make the client send the URI without '#...'",
                      "resource '%s' has a fragment, which RFC 8707 does not allow", q);
    return TK_OK;
}
