/* public_url.c: the public_url setting's check and normal form (see
 * config.h, tk_config_public_url). */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>

static bool unreserved_or_sub(int c)
{
    return isalnum(c) || strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static bool hexdig(int c)
{
    return isxdigit(c) != 0;
}

static tk_rc fail(char *why, size_t whyn, const char *fmt, ...) TK_PRINTF(3, 4);
static tk_rc fail(char *why, size_t whyn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whyn, fmt, ap);
    va_end(ap);
    return TK_EINVAL;
}

tk_rc tk_config_public_url(const char *in, char *out, size_t n, char *why, size_t whyn)
{
    why[0] = '\0';
    size_t len = strlen(in);
    if (len == 0 || len >= n || len > 400) {
        return fail(why, whyn, "%s", "must be an absolute URL of at most 400 characters");
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c >= 0x7f) {
            return fail(
                why, whyn, "%s",
                "must not contain spaces, control or non-ASCII characters (percent-encode them)");
        }
    }
    const char *p;
    bool https;
    if (!strncasecmp(in, "https://", 8)) {
        https = true;
        p = in + 8;
    } else if (!strncasecmp(in, "http://", 7)) {
        https = false;
        p = in + 7;
    } else {
        return fail(why, whyn, "%s", "must start with https:// or http://");
    }
    if (strpbrk(in, "?#")) {
        return fail(why, whyn, "%s", "must not have a query (?) or a fragment (#)");
    }
    size_t alen = strcspn(p, "/");
    const char *path = p + alen;
    if (memchr(p, '@', alen)) {
        return fail(why, whyn, "%s", "must not carry a user name or password (user@host)");
    }
    /* host: [v6] or a name / IPv4 of letters, digits, '-' and '.' */
    char host[260];
    size_t hlen;
    const char *port = NULL;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close || close == p + 1) {
            return fail(why, whyn, "%s", "has an IPv6 host without its closing ']'");
        }
        char v6[64];
        struct in6_addr a6;
        size_t v6len = (size_t)(close - p) - 1;
        if (v6len >= sizeof v6)
            return fail(why, whyn, "%s", "has an IPv6 host that is not an IPv6 address");
        memcpy(v6, p + 1, v6len);
        v6[v6len] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1)
            return fail(why, whyn, "%s", "has an IPv6 host that is not an IPv6 address");
        hlen = (size_t)(close - p) + 1;
        if (close + 1 < p + alen) {
            if (close[1] != ':') {
                return fail(why, whyn, "%s", "has something other than :port after the IPv6 host");
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
        if (colon) port = colon + 1;
        if (hlen == 0) {
            return fail(why, whyn, "%s", "has no host");
        }
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '.') {
                return fail(why, whyn, "%s",
                            "has a host with characters other than letters, digits, '-' and '.'");
            }
    }
    if (hlen >= sizeof host) {
        return fail(why, whyn, "%s", "has a host longer than 253 characters");
    }
    for (size_t i = 0; i < hlen; i++)
        host[i] = (char)tolower((unsigned char)p[i]);
    host[hlen] = '\0';
    long portnum = -1;
    if (port) {
        size_t plen = (size_t)(p + alen - port);
        char pb[8];
        int64_t v;
        if (plen == 0 || plen >= sizeof pb) {
            return fail(why, whyn, "%s", "has a port that is not a number from 1 to 65535");
        }
        memcpy(pb, port, plen);
        pb[plen] = '\0';
        if (tk_parse_int(pb, 1, 65535, &v) != TK_OK) {
            return fail(why, whyn, "%s", "has a port that is not a number from 1 to 65535");
        }
        portnum = (long)v;
        if (portnum == (https ? 443 : 80)) portnum = -1; /* the default: left out */
    }
    /* path: segments of pchar, no empty, "." or ".." segment; trailing '/' dropped */
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    for (size_t i = 0; i < plen;) {
        if (path[i] != '/') break; /* cannot happen: the path starts with '/' */
        size_t j = i + 1;
        while (j < plen && path[j] != '/') {
            unsigned char c = (unsigned char)path[j];
            if (c == '%') {
                if (j + 2 >= plen || !hexdig(path[j + 1]) || !hexdig(path[j + 2])) {
                    return fail(why, whyn, "%s",
                                "has a '%' in its path that is not followed by two hex digits");
                }
                j += 3;
                continue;
            }
            if (!unreserved_or_sub(c)) {
                return fail(why, whyn, "has the character '%c' in its path", c);
            }
            j++;
        }
        size_t seg = j - i - 1;
        if (seg == 0 || (seg == 1 && path[i + 1] == '.') ||
            (seg == 2 && path[i + 1] == '.' && path[i + 2] == '.')) {
            return fail(why, whyn, "%s", "has an empty, '.' or '..' segment in its path");
        }
        i = j;
    }
    int w = portnum > 0
                ? snprintf(out, n, "%s://%s:%ld%.*s", https ? "https" : "http", host, portnum,
                           (int)plen, path)
                : snprintf(out, n, "%s://%s%.*s", https ? "https" : "http", host, (int)plen, path);
    if (w < 0 || (size_t)w >= n) {
        return fail(why, whyn, "%s", "is too long");
    }
    return TK_OK;
}
