/*
 * http.h: the HTTP server: libmicrohttpd in epoll mode with an internal
 * thread pool, a router with path parameters, JSON replies, the request
 * limits (body, headers, connections, idle time), request ids, the access
 * log, request metrics and graceful shutdown; the checks above the library:
 * framing, duplicate headers, Host/Origin/Content-Type (hostcheck.h), the
 * head deadline and minimum body rate.
 *
 * A handler receives a struct tk_req whose memory comes from a pool freed
 * when the response is done, and answers with exactly one tk_reply_* call.
 * Handlers never see libmicrohttpd; domain modules never see a tk_req.
 */
#ifndef TK_HTTP_H
#define TK_HTTP_H

#include "../common/tk.h"

#include <jansson.h>

struct tk_req;
struct tk_http;
struct tk_metrics;

typedef void (*tk_handler)(struct tk_req *r);

enum {
    TK_ROUTE_AUTH = 1 << 0,      /* call the authenticate hook first */
    TK_ROUTE_SEALED_OK = 1 << 1, /* answered while the gate is closed (sealed) */
    /* the body is application/x-www-form-urlencoded (tk_req_form), not JSON:
     * the Content-Type rule for state-changing requests asks for that instead */
    TK_ROUTE_FORM = 1 << 2,
};

struct tk_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/events" or "/v1/connections/{id}/token" */
    tk_handler handler;
    unsigned flags;
    /* For TK_ROUTE_AUTH routes, read by the app's authenticate hook (the
     * HTTP layer does not interpret them): the principal kinds the route
     * accepts (a bit set) and the role it needs (src/api/api.h). */
    unsigned kinds;
    unsigned role;
};

#define TK_REQ_MAX_PARAMS 4

struct tk_req {
    struct tk_pool *pool; /* freed with the request */
    void *app;            /* tk_http_opts.app */
    const char *method;
    const char *path;     /* decoded, without the query string */
    const struct tk_route *route;
    const char *param_names[TK_REQ_MAX_PARAMS];
    const char *param_values[TK_REQ_MAX_PARAMS];
    int nparams;
    const char *body; /* NUL-terminated; body_len bytes */
    size_t body_len;
    char request_id[72];        /* ours, unique (UUIDv7): events' trace id, logs */
    char client_request_id[72]; /* the client's X-Request-Id if valid, else "" */
    void *principal; /* set by the authenticate hook */
    void *db;        /* a store connection taken by the app for this request, or NULL */
    struct tk_req_internal *in;
};

struct tk_http_opts {
    const char *listen; /* host:port; port 0 picks a free one */
    int threads;
    size_t max_body;
    size_t max_header;
    int max_connections;
    int max_connections_per_ip;
    int idle_timeout;   /* seconds */
    int header_timeout; /* seconds for a request head (0: none) */
    int min_body_rate;  /* bytes/s after header_timeout of grace (0: none) */
    const char *allowed_hosts; /* comma-separated host[:port], may be NULL */
    bool access_log;
    /* access log lines per second for refusals (4xx decided before any
     * handler work); more are counted and summed up once a second (0: all) */
    int access_log_refusals_per_s;
    const struct tk_route *routes;
    size_t nroutes;
    void *app;
    /* For routes without TK_ROUTE_SEALED_OK, before anything else: return
     * TK_OK to go on; otherwise the hook has already replied (503 sealed). */
    tk_rc (*gate)(struct tk_req *r);
    /* For TK_ROUTE_AUTH routes: return TK_OK to go on; otherwise the hook
     * has already replied. */
    tk_rc (*authenticate)(struct tk_req *r);
    /* Called once per request, to give back what the app took (r->db): as
     * soon as the reply is built (after the handler, or after the gate or
     * authenticate hook refused), before the response is sent; for a request
     * that never got that far, when it ends. */
    void (*finish)(struct tk_req *r);
    /* comma-separated IPs/CIDRs whose X-Forwarded-For is believed (see
     * tk_req_remote); NULL or "" for none */
    const char *trusted_proxies;
    /* the registry tk_http_start registers the request metrics on
     * (tokend_http_*; registered before the server answers); NULL: one of
     * the server's own, rendered by tk_http_metrics */
    struct tk_metrics *metrics;
};

tk_rc tk_http_start(const struct tk_http_opts *o, struct tk_http **out, struct tk_err *e);
/* The port actually bound. */
int tk_http_port(const struct tk_http *h);
/* Stop accepting connections; requests in flight go on. */
void tk_http_quiesce(struct tk_http *h);
/* Wait until no request is in flight or timeout_ms passes; true if drained. */
bool tk_http_drain(struct tk_http *h, int timeout_ms);
void tk_http_stop(struct tk_http *h);
/* Append the metrics of the registry the server registered on (opts.metrics
 * or its own) as Prometheus text to out. */
void tk_http_metrics(struct tk_http *h, struct tk_buf *out);

/* Path parameter, query argument or header of a request; NULL if absent. */
const char *tk_req_param(const struct tk_req *r, const char *name);
const char *tk_req_query(const struct tk_req *r, const char *name);
const char *tk_req_header(const struct tk_req *r, const char *name);
/* How many times the query argument name is given (0 if absent). */
int tk_req_query_count(const struct tk_req *r, const char *name);
/* true if name is given at most once; otherwise replies 400
 * duplicate_parameter naming it and returns false. */
bool tk_req_query_unique(struct tk_req *r, const char *name);
/* The client's numeric address ("127.0.0.1", "::1") into out (n bytes, 64
 * is enough); "" if unknown. For rate limits and logs. It is the peer's
 * address, unless the peer is one of trusted_proxies: then the right-most
 * address of X-Forwarded-For that is not itself trusted (never the
 * left-most, which the client writes); the peer's if X-Forwarded-For is
 * absent, given twice or has an element that is not a bare IP address. */
void tk_req_remote(const struct tk_req *r, char *out, size_t n);
/* The peer's own address, whatever X-Forwarded-For says. */
void tk_req_peer(const struct tk_req *r, char *out, size_t n);
/* The value of cookie name from the Cookie header, from the pool; NULL if
 * absent, longer than 4096 bytes, or sent more than once. A name sent twice
 * is not "first wins": a sibling subdomain or a path can plant a second
 * cookie of the same name (cookie tossing) and the order browsers send them
 * in is not something to rely on (RFC 6265 §5.4), so neither is believed
 * and the request is treated as without it. */
const char *tk_req_cookie(struct tk_req *r, const char *name);
struct tk_form;
/* The body as application/x-www-form-urlencoded (see parse.h for the
 * rules); on failure replies 415 or 400 naming the pair and returns NULL.
 * Read values with tk_form_get (parse.h). Memory from the request's pool. */
struct tk_form *tk_req_form(struct tk_req *r);
const char *tk_form_get(const struct tk_form *f, const char *name);
/* The body as a JSON object (max depth and size enforced); on failure
 * replies 400 naming the position and returns NULL. Caller decrefs. */
json_t *tk_req_json(struct tk_req *r);

/* Replace bytes of s that are not well-formed UTF-8 with '?', in place. */
void tk_http_utf8_clean(char *s);

/* Replies. Each request gets exactly one. tk_reply_json steals body. */
void tk_reply_json(struct tk_req *r, int status, json_t *body);
void tk_reply_text(struct tk_req *r, int status, const char *content_type, const char *text,
                   size_t len);
/* {"error": e->code, "message": e->msg, "field": e->field?} with the status of e->rc;
 * extra members (borrowed, may be NULL) are merged in. */
void tk_reply_error(struct tk_req *r, const struct tk_err *e, json_t *extra);
/* Add a response header (copied). */
void tk_reply_header(struct tk_req *r, const char *name, const char *value);

enum tk_samesite { TK_SAMESITE_STRICT = 0, TK_SAMESITE_LAX };
struct tk_cookie_opts {
    const char *path; /* NULL: "/" */
    long max_age;     /* seconds; < 0: a session cookie (no Max-Age); 0 deletes */
    bool http_only;
    bool secure;
    enum tk_samesite same_site;
};
/* Add a Set-Cookie header. name must be a token and value cookie-octets
 * (no ';', ',', '"', '\\', whitespace or control characters), path likewise
 * without ';' or control characters; otherwise nothing is added and
 * TK_EINVAL is returned (a bug in the caller, not the client's fault). */
tk_rc tk_reply_cookie(struct tk_req *r, const char *name, const char *value,
                      const struct tk_cookie_opts *o);
/* Reply status (301, 302, 303, 307 or 308) with Location and no body;
 * a location with CR, LF or another control character, or empty, is
 * refused: 500 internal, nothing sent to the client's browser. */
void tk_reply_redirect(struct tk_req *r, int status, const char *location);

#endif
