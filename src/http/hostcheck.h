/*
 * hostcheck.h: what a request's Host, Origin and Content-Type headers must
 * be, apart from libmicrohttpd so that the parsers can be fuzzed.
 *
 * A browser page can make requests to tokend: DNS rebinding gives it a name
 * of its own that resolves to tokend's address (the Host header then names
 * the attacker's domain), and a cross-site form or fetch carries its Origin.
 * So: a listener on a loopback address answers only Host values that are
 * loopback names or addresses (localhost, 127.0.0.0/8, [::1]) or listed in
 * allowed_hosts; a listener on another address checks allowed_hosts when
 * it is set (loopback names and IP literals pass too: no DNS is involved
 * there). The API refuses an Origin other than the request's own
 * http(s)://Host. State-changing API requests must say
 * Content-Type: application/json, which a cross-site form cannot send
 * without a CORS preflight (which tokend never grants).
 */
#ifndef TK_HOSTCHECK_H
#define TK_HOSTCHECK_H

#include "../common/tk.h"

#include <sys/socket.h>

#define TK_HOST_MAX 256
#define TK_ALLOWED_HOSTS_MAX 32

struct tk_hostport {
    char host[TK_HOST_MAX]; /* lower case; an IPv6 literal without brackets */
    int port;               /* -1 when none */
    bool ip;                /* an IPv4 or IPv6 literal */
};

struct tk_hostpolicy {
    bool loopback_listener;
    size_t n;
    struct tk_hostport allowed[TK_ALLOWED_HOSTS_MAX];
};

/* Parse a Host value: "name", "name:port", "1.2.3.4:port", "[v6]:port".
 * Names are letters, digits, '-', '.' and '_'. False when malformed. */
bool tk_host_parse(const char *v, struct tk_hostport *out);
/* Is this host a loopback name or address? */
bool tk_host_is_loopback(const struct tk_hostport *hp);
/* Build the policy from the bound address and the allowed_hosts setting
 * (comma-separated host[:port], may be empty); an error names the entry. */
tk_rc tk_hostpolicy_init(struct tk_hostpolicy *p, const struct sockaddr *bound,
                         const char *allowed_hosts, struct tk_err *e);
/* Is a request with this Host value (NULL: none, HTTP/1.0) answered? */
bool tk_host_allowed(const struct tk_hostpolicy *p, const char *host_header);
/* Is origin "http://<host>" or "https://<host>" for this Host value? */
bool tk_origin_same(const char *origin, const char *host_header);
/* Is the media type application/json (parameters allowed)? */
bool tk_media_is_json(const char *content_type);

#endif
