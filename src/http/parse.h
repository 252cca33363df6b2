/* parse.h: the HTTP parsers that need no connection, so that unit tests and
 * the fuzz targets call them directly: form-urlencoded bodies, the Cookie
 * header, Set-Cookie values, and X-Forwarded-For against trusted proxies. */
#ifndef TK_HTTP_PARSE_H
#define TK_HTTP_PARSE_H

#include "../common/tk.h"

#include <netinet/in.h>

/* ---- application/x-www-form-urlencoded ---- */

#define TK_FORM_MAX_PAIRS 64
#define TK_FORM_MAX_NAME 128

struct tk_form {
    int n;
    const char *names[TK_FORM_MAX_PAIRS];
    const char *values[TK_FORM_MAX_PAIRS];
};

/* Parse len bytes of a form body into *out (strings from pool). '+' is a
 * space, %HH a byte; refused (TK_EINVAL, e->field names the pair): a bad or
 * %00 escape, a name or value that is not UTF-8, an empty or too long name,
 * a name given twice (RFC 6749 §3.1), more than TK_FORM_MAX_PAIRS pairs. An
 * empty body is an empty form; "a&&b=" is a, b with empty values. */
tk_rc tk_form_parse(const char *body, size_t len, struct tk_pool *pool, struct tk_form *out,
                    struct tk_err *e);
/* The value of name, or NULL. */
const char *tk_form_get(const struct tk_form *f, const char *name);

/* Append s percent-encoded for a query string or form value (RFC 3986's
 * unreserved bytes kept, every other byte %HH). */
struct tk_buf;
void tk_buf_urlencode(struct tk_buf *b, const char *s);

/* ---- cookies (RFC 6265) ---- */

#define TK_COOKIE_MAX_PAIRS 64

enum tk_cookie_result { TK_COOKIE_FOUND = 0, TK_COOKIE_ABSENT, TK_COOKIE_DUPLICATE };

/* Find name in a Cookie header value ("a=1; b=2"). The value (quotes
 * removed) is copied into out (n bytes; a longer value counts as absent).
 * Pairs without '=' or with a value outside cookie-octets are skipped; only
 * the first TK_COOKIE_MAX_PAIRS pairs are read. A name sent twice is
 * TK_COOKIE_DUPLICATE: see tk_req_cookie for why it is not "first wins". */
enum tk_cookie_result tk_cookie_find(const char *header, const char *name, char *out, size_t n);
/* true if s is an RFC 6265 token (a cookie name) / only cookie-octets. */
bool tk_cookie_name_ok(const char *s);
bool tk_cookie_value_ok(const char *s);

/* ---- the remote address behind trusted proxies ---- */

#define TK_PROXIES_MAX 32

struct tk_cidr {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

struct tk_proxies {
    int n;
    struct tk_cidr nets[TK_PROXIES_MAX];
};

/* Parse "10.0.0.1, 10.1.0.0/16, ::1, fd00::/8" (empty: none). */
tk_rc tk_proxies_parse(const char *list, struct tk_proxies *out, struct tk_err *e);
/* true if the numeric address s is inside one of the networks. */
bool tk_proxies_has(const struct tk_proxies *p, const char *s);
/* The client address for a request from peer with X-Forwarded-For xff (may
 * be NULL): when peer is trusted, the right-most address of xff that is not
 * trusted (the left-most if all are); the peer itself when it is not
 * trusted, xff is absent, or any element of xff is not a bare IP address. */
void tk_xff_pick(const struct tk_proxies *p, const char *peer, const char *xff, char *out,
                 size_t n);

#endif
