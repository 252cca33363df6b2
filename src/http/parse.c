/* parse.c: see parse.h. */
#include "parse.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode s[0..len) ('+' and %HH) into a pool string; false on a bad or %00
 * escape. *outlen gets the decoded length. */
static bool form_decode(const char *s, size_t len, struct tk_pool *pool, char **out,
                        size_t *outlen)
{
    char *w = tk_pool_alloc(pool, len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            w[o++] = ' ';
        } else if (c == '%') {
            if (len - i < 3) return false;
            int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
            if (a < 0 || b < 0 || (a | b) == 0) return false;
            w[o++] = (char)(a << 4 | b);
            i += 2;
        } else {
            w[o++] = c;
        }
    }
    w[o] = '\0';
    *out = w;
    *outlen = o;
    return true;
}

tk_rc tk_form_parse(const char *body, size_t len, struct tk_pool *pool, struct tk_form *out,
                    struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    int pos = 0;
    while (i < len) {
        const char *p = body + i;
        const char *amp = memchr(p, '&', len - i);
        size_t plen = amp ? (size_t)(amp - p) : len - i;
        i += plen + (amp ? 1 : 0);
        pos++;
        if (plen == 0) continue; /* "a&&b" */
        if (out->n == TK_FORM_MAX_PAIRS)
            return tk_err_set(e, TK_EINVAL, "invalid_form",
                              "the form has more than %d pairs", TK_FORM_MAX_PAIRS);
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq ? (size_t)(eq - p) : plen;
        char *name, *value;
        size_t dn, dv;
        if (!form_decode(p, nlen, pool, &name, &dn) || dn == 0 || dn > TK_FORM_MAX_NAME ||
            memchr(name, '\0', dn) || !tk_utf8_valid(name, dn))
            return tk_err_set(e, TK_EINVAL, "invalid_form",
                              "pair %d of the form has an invalid name (empty, longer than %d "
                              "bytes, a bad or %%00 escape, or not UTF-8)",
                              pos, TK_FORM_MAX_NAME);
        const char *vs = eq ? eq + 1 : p + plen;
        size_t vlen = eq ? plen - nlen - 1 : 0;
        if (!form_decode(vs, vlen, pool, &value, &dv) || memchr(value, '\0', dv) ||
            !tk_utf8_valid(value, dv))
            return tk_err_field(e, TK_EINVAL, "invalid_form", name,
                                "the value of %.128s has a bad or %%00 escape or is not UTF-8",
                                name);
        for (int k = 0; k < out->n; k++)
            if (!strcmp(out->names[k], name))
                return tk_err_field(e, TK_EINVAL, "duplicate_parameter", name,
                                    "%.128s is given more than once (RFC 6749 section 3.1)", name);
        out->names[out->n] = name;
        out->values[out->n] = value;
        out->n++;
    }
    return TK_OK;
}

const char *tk_form_get(const struct tk_form *f, const char *name)
{
    if (!f) return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) return f->values[i];
    return NULL;
}

/* ---- cookies ---- */

/* RFC 6265 §4.1.1 / RFC 9110 token characters. */
static bool tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
static bool coctet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
           (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

bool tk_cookie_name_ok(const char *s)
{
    if (!s || !*s) return false;
    for (; *s; s++)
        if (!tchar((unsigned char)*s)) return false;
    return true;
}

bool tk_cookie_value_ok(const char *s)
{
    if (!s) return false;
    for (; *s; s++)
        if (!coctet((unsigned char)*s)) return false;
    return true;
}

enum tk_cookie_result tk_cookie_find(const char *header, const char *name, char *out, size_t n)
{
    if (n) out[0] = '\0';
    if (!header || !name || !*name) return TK_COOKIE_ABSENT;
    size_t want = strlen(name);
    bool found = false;
    const char *p = header;
    for (int pairs = 0; *p && pairs < TK_COOKIE_MAX_PAIRS; pairs++) {
        while (*p == ' ' || *p == '\t') p++;
        const char *semi = strchr(p, ';');
        size_t plen = semi ? (size_t)(semi - p) : strlen(p);
        const char *next = semi ? semi + 1 : p + plen;
        const char *eq = memchr(p, '=', plen);
        if (eq) {
            size_t nlen = (size_t)(eq - p);
            while (nlen && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t')) nlen--;
            const char *v = eq + 1;
            size_t vlen = plen - (size_t)(v - p);
            while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
            while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') v++, vlen -= 2;
            bool ok = true;
            for (size_t i = 0; i < vlen && ok; i++) ok = coctet((unsigned char)v[i]);
            if (ok && nlen == want && !memcmp(p, name, want)) {
                if (found) {
                    if (n) out[0] = '\0';
                    return TK_COOKIE_DUPLICATE;
                }
                found = true;
                if (vlen < n) {
                    memcpy(out, v, vlen);
                    out[vlen] = '\0';
                } else {
                    found = false; /* too long for the caller: absent */
                    if (n) out[0] = '\0';
                }
            }
        }
        p = next;
    }
    return found ? TK_COOKIE_FOUND : TK_COOKIE_ABSENT;
}

/* ---- trusted proxies ---- */

static bool parse_ip(const char *s, size_t len, int *family, unsigned char addr[16])
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (strchr(buf, '%')) return false; /* no zone ids */
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as IPv4. */
static void unmap(int *family, unsigned char addr[16])
{
    static const unsigned char pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (*family == AF_INET6 && !memcmp(addr, pre, 12)) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
    }
}

tk_rc tk_proxies_parse(const char *list, struct tk_proxies *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ') end++;
        size_t len = (size_t)(end - p);
        const char *slash = memchr(p, '/', len);
        struct tk_cidr c;
        memset(&c, 0, sizeof c);
        size_t alen = slash ? (size_t)(slash - p) : len;
        if (!parse_ip(p, alen, &c.family, c.addr))
            return tk_err_field(e, TK_EINVAL, "invalid_config", "trusted_proxies",
                                "trusted_proxies: %.*s is not an IP address or CIDR",
                                (int)(len > 80 ? 80 : len), p);
        int max = c.family == AF_INET ? 32 : 128;
        c.bits = max;
        if (slash) {
            const char *b = slash + 1;
            int bits = 0;
            size_t nd = 0;
            while (b + nd < end && b[nd] >= '0' && b[nd] <= '9' && nd < 3) {
                bits = bits * 10 + (b[nd] - '0');
                nd++;
            }
            if (nd == 0 || b + nd != end || bits > max)
                return tk_err_field(e, TK_EINVAL, "invalid_config", "trusted_proxies",
                                    "trusted_proxies: %.*s has a bad prefix length (0..%d)",
                                    (int)(len > 80 ? 80 : len), p, max);
            c.bits = bits;
        }
        unmap(&c.family, c.addr);
        if (c.family == AF_INET && max == 128) c.bits = c.bits >= 96 ? c.bits - 96 : 0;
        if (out->n == TK_PROXIES_MAX)
            return tk_err_field(e, TK_EINVAL, "invalid_config", "trusted_proxies",
                                "trusted_proxies: more than %d entries", TK_PROXIES_MAX);
        out->nets[out->n++] = c;
        p = end;
    }
    return TK_OK;
}

static bool in_net(const struct tk_cidr *c, int family, const unsigned char *a)
{
    if (c->family != family) return false;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)full)) return false;
    if (!rest) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (a[full] & mask);
}

static bool has_addr(const struct tk_proxies *p, int family, unsigned char a[16])
{
    unmap(&family, a);
    for (int i = 0; i < p->n; i++)
        if (in_net(&p->nets[i], family, a)) return true;
    return false;
}

bool tk_proxies_has(const struct tk_proxies *p, const char *s)
{
    int fam;
    unsigned char a[16];
    if (!p || !s || !parse_ip(s, strlen(s), &fam, a)) return false;
    return has_addr(p, fam, a);
}

#define XFF_MAX 64

void tk_xff_pick(const struct tk_proxies *p, const char *peer, const char *xff, char *out,
                 size_t n)
{
    if (!n) return;
    snprintf(out, n, "%s", peer ? peer : "");
    if (!p || !p->n || !xff || !peer || !tk_proxies_has(p, peer)) return;
    /* split and check every element first: one malformed element and the
     * header is not trusted at all */
    const char *el[XFF_MAX];
    size_t ellen[XFF_MAX];
    int ne = 0;
    const char *q = xff;
    for (;;) {
        while (*q == ' ' || *q == '\t') q++;
        const char *comma = strchr(q, ',');
        size_t len = comma ? (size_t)(comma - q) : strlen(q);
        while (len && (q[len - 1] == ' ' || q[len - 1] == '\t')) len--;
        int fam;
        unsigned char a[16];
        if (ne == XFF_MAX || !parse_ip(q, len, &fam, a)) return;
        el[ne] = q;
        ellen[ne] = len;
        ne++;
        if (!comma) break;
        q = comma + 1;
    }
    int pick = 0; /* all trusted: the left-most */
    for (int i = ne - 1; i >= 0; i--) {
        int fam;
        unsigned char a[16];
        parse_ip(el[i], ellen[i], &fam, a);
        if (!has_addr(p, fam, a)) {
            pick = i;
            break;
        }
    }
    int fam;
    unsigned char a[16];
    parse_ip(el[pick], ellen[pick], &fam, a);
    unmap(&fam, a);
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(fam, a, buf, sizeof buf)) snprintf(out, n, "%s", buf);
}

void tk_buf_urlencode(struct tk_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            tk_buf_add(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            tk_buf_add(b, e, 3);
        }
    }
}
