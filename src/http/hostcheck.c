/* hostcheck.c: see hostcheck.h. */
#include "hostcheck.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool parse_port(const char *s, size_t n, int *port)
{
    if (n == 0) { /* "host:" is allowed by RFC 3986: no port */
        *port = -1;
        return true;
    }
    if (n > 5) return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535) return false;
    *port = v;
    return true;
}

bool tk_host_parse(const char *v, struct tk_hostport *out)
{
    memset(out, 0, sizeof *out);
    out->port = -1;
    size_t n = strlen(v);
    const char *host, *rest;
    size_t hl;
    if (v[0] == '[') {
        const char *close = memchr(v, ']', n);
        if (!close) return false;
        host = v + 1;
        hl = (size_t)(close - host);
        rest = close + 1;
        if (hl == 0 || hl >= sizeof out->host) return false;
        for (size_t i = 0; i < hl; i++)
            out->host[i] = (char)tolower((unsigned char)host[i]);
        out->host[hl] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1) return false;
        out->ip = true;
    } else {
        const char *colon = strchr(v, ':');
        hl = colon ? (size_t)(colon - v) : n;
        rest = v + hl;
        if (hl == 0 || hl >= sizeof out->host) return false;
        for (size_t i = 0; i < hl; i++) {
            unsigned char c = (unsigned char)v[i];
            if (!(isalnum(c) || c == '-' || c == '.' || c == '_')) return false;
            out->host[i] = (char)tolower(c);
        }
        out->host[hl] = '\0';
        struct in_addr a4;
        out->ip = inet_pton(AF_INET, out->host, &a4) == 1;
    }
    if (*rest == '\0') return true;
    if (*rest != ':') return false;
    return parse_port(rest + 1, strlen(rest + 1), &out->port);
}

bool tk_host_is_loopback(const struct tk_hostport *hp)
{
    if (!strcmp(hp->host, "localhost")) return true;
    if (!hp->ip) return false;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, hp->host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, hp->host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

tk_rc tk_hostpolicy_init(struct tk_hostpolicy *p, const struct sockaddr *bound, const char *allowed,
                         struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    p->loopback_listener = bound && addr_is_loopback(bound);
    const char *s = allowed ? allowed : "";
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s) break;
        size_t n = strcspn(s, ",");
        while (n && s[n - 1] == ' ')
            n--;
        char entry[TK_HOST_MAX + 8];
        if (n >= sizeof entry)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "allowed_hosts",
                                "allowed_hosts: an entry is %zu characters long, at most %zu", n,
                                sizeof entry - 1);
        memcpy(entry, s, n);
        entry[n] = '\0';
        if (p->n == TK_ALLOWED_HOSTS_MAX)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "allowed_hosts",
                                "allowed_hosts: at most %d entries", TK_ALLOWED_HOSTS_MAX);
        if (!tk_host_parse(entry, &p->allowed[p->n]))
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "allowed_hosts",
                                "allowed_hosts: '%.80s' is not host or host:port", entry);
        p->n++;
        s += strcspn(s, ",");
    }
    return TK_OK;
}

bool tk_host_allowed(const struct tk_hostpolicy *p, const char *v)
{
    if (!v) return true; /* HTTP/1.0 without Host: no browser sends that */
    struct tk_hostport hp;
    if (!tk_host_parse(v, &hp)) return false;
    if (tk_host_is_loopback(&hp)) return true;
    for (size_t i = 0; i < p->n; i++) {
        const struct tk_hostport *a = &p->allowed[i];
        if (!strcmp(a->host, hp.host) && (a->port < 0 || a->port == hp.port)) return true;
    }
    if (p->loopback_listener) return false;
    /* another address: any Host unless allowed_hosts says which; an IP
     * literal always (no name, so no rebinding: probes by pod address) */
    return p->n == 0 || hp.ip;
}

bool tk_origin_same(const char *origin, const char *host)
{
    if (!origin || !host) return false;
    const char *auth;
    if (!strncasecmp(origin, "http://", 7))
        auth = origin + 7;
    else if (!strncasecmp(origin, "https://", 8))
        auth = origin + 8;
    else
        return false;
    return auth[0] != '\0' && strcasecmp(auth, host) == 0;
}

bool tk_media_is_json(const char *ct)
{
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0) return false;
    char c = ct[16];
    return c == '\0' || c == ';' || c == ' ' || c == '\t';
}
