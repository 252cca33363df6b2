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
struct tk_tls;

typedef void (*tk_handler)(struct tk_req *r);

enum {
    TK_ROUTE_AUTH = 1 << 0,      /* call the authenticate hook first */
    TK_ROUTE_SEALED_OK = 1 << 1, /* answered while the gate is closed (sealed) */
    /* the body is application/x-www-form-urlencoded (tk_req_form), not JSON:
     * the Content-Type rule for state-changing requests asks for that instead */
    TK_ROUTE_FORM = 1 << 2,
    /* run on the HTTP thread itself, not on a handler thread: only for a
     * handler that never waits (no store, no lock held across work):
     * /health, /ready, /metrics. Every other route's gate, authenticate
     * hook and handler run on the handler pool (see tk_http_opts). */
    TK_ROUTE_INLINE = 1 << 3,
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
    /* Threads that run the handlers (and gate, authenticate, finish and
     * resume callbacks) of routes without TK_ROUTE_INLINE, off the HTTP
     * threads: a handler waiting on the store holds one of these, never an
     * HTTP thread, so the inline routes and every connection's reading and
     * writing go on (0: 2 x threads). */
    int handler_threads;
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
    /* HTTPS with this certificate and key (src/tls/tls.h: each handshake
     * takes the pair current then, so a reload needs no restart); NULL:
     * plain HTTP. Borrowed: it must outlive the server. Under TLS the
     * 408/413 a cut connection gets on plain HTTP are not written (they
     * would break the TLS stream): the connection is closed. */
    struct tk_tls *tls;
    /* Streams (tk_reply_stream): bytes buffered per stream before a reader
     * that does not keep up is cut (0: 1 MiB), and how many may be open at
     * once (0: 64; more are answered 503 too_many_streams). */
    size_t stream_buffer;
    int max_streams;
    /* Parked requests held at once (0: 1024); tk_req_park past it answers
     * 503 too_many_parked at once (the handle still needs giving up). */
    int max_parked;
};

tk_rc tk_http_start(const struct tk_http_opts *o, struct tk_http **out, struct tk_err *e);
/* The port actually bound. */
int tk_http_port(const struct tk_http *h);
/* Stop accepting connections; requests in flight go on. */
void tk_http_quiesce(struct tk_http *h);
/* Is a libmicrohttpd panic with this reason and errno one to log and go on
 * from (in_quiesce: during tk_http_quiesce)? Only the listen socket found
 * already out of a worker's epoll set (ENOENT) while quiescing (http.c). */
bool tk_http_panic_tolerated(const char *reason, bool in_quiesce, int err);
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

/* Run another route's handler on this request (the console shows the API
 * this way: the same rules, the same answers). The handler sees route,
 * params (name, value pairs, NULL-terminated; may be NULL), query (a
 * urlencoded query string replacing the request's; NULL or "" for none) and
 * json_body (a JSON text read with Content-Type application/json; NULL for
 * no body). Its JSON reply (errors included) is not sent: it goes to
 * hook(r, status, body, arg), once, with body owned by the hook (NULL when
 * the handler replied something else or nothing: status 500). A handler
 * that parks calls the hook when its answer comes (r is then the resumed
 * request; the hook replies for real). The caller checks the route's
 * principal and role rules first (tk_req_call does not authenticate). After
 * a synchronous reply the request is put back as it was. Not for streams
 * except as the request's last act. TK_EINTERNAL (e) if r has a reply. */
/* The request's query re-encoded ("a=b&c=d", "" for none; at most 16 KiB),
 * from the request's pool. */
const char *tk_req_query_string(struct tk_req *r);
typedef void (*tk_reply_hook)(struct tk_req *r, int status, json_t *body, void *arg);
/* Send the request's next JSON reply to hook instead (once), without
 * calling another route: to show a refusal the API layer builds as JSON in
 * another form. hook NULL: stop capturing. */
void tk_req_capture(struct tk_req *r, tk_reply_hook hook, void *arg);
tk_rc tk_req_call(struct tk_req *r, const struct tk_route *route, const char *const *params,
                  const char *query, const char *json_body, tk_reply_hook hook, void *arg,
                  struct tk_err *e);
void tk_reply_text(struct tk_req *r, int status, const char *content_type, const char *text,
                   size_t len);
/* {"error": e->code, "message": e->msg, "field": e->field?} with the status of e->rc;
 * extra members (borrowed, may be NULL) are merged in. */
void tk_reply_error(struct tk_req *r, const struct tk_err *e, json_t *extra);
/* Add a response header (copied). A Cache-Control replaces the default no-store. */
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

/* ---- forms without a session: double-submit CSRF ----
 * A form page takes tk_req_csrf's value (the browser's cookie `cookie`
 * when well-formed, else a new random one set on this reply with o) into a
 * hidden field; the POST is accepted when tk_req_csrf_ok: the field equals
 * the cookie, and the request is not from another site's page. */
#define TK_CSRF_LEN 43 /* 32 random bytes, base64url */
void tk_req_csrf(struct tk_req *r, const char *cookie, const struct tk_cookie_opts *o,
                 char out[TK_CSRF_LEN + 1]);
bool tk_req_csrf_ok(struct tk_req *r, const char *cookie, const char *value);
/* Is this POST from another site's page? Its Origin names another host, or
 * the browser says so (Sec-Fetch-Site other than same-origin or none): a
 * no-referrer page sends Origin "null", and so can a sandboxed frame of
 * anyone's; "same-site" is refused too, since a page on another port of
 * this host can plant the CSRF cookie (cookies are not per port). */
bool tk_req_cross_site(struct tk_req *r);

/*
 * Parked requests. A handler that cannot answer now (it waits for an
 * upstream refresh, a password hash, a metadata fetch) parks its request
 * and returns without replying:
 *
 *     struct tk_parked *p = tk_req_park(r, 10000);  // answered 504 after 10 s
 *     if (!p) return;                   // refused: already answered (503)
 *     hand p to a worker; return;
 *     ... later, on any thread:
 *     tk_parked_resume(p, 200, json_pack(...));
 *
 * The app's finish hook runs when the handler returns (r->db goes back to
 * the pool), and libmicrohttpd suspends the connection: a parked request
 * holds no HTTP worker thread and no store connection. A hub per server
 * keeps the parked requests with their deadlines: past it the request is
 * answered 504 parked_timeout; on tk_http_quiesce or tk_http_stop every one
 * is answered 503 node_stopping (Retry-After: 1), and tk_req_park answers so
 * at once. Whatever comes first wins and the others are told so (false):
 * each request gets exactly one answer.
 *
 * The handle: the party that holds p must call exactly one of
 * tk_parked_resume, tk_parked_resume_with or tk_parked_release, once; each
 * gives up the handle (p must not be used after). The request itself may be
 * gone by then (answered by the deadline, the client gone, the node
 * stopping): the handle stays valid until it is given up, and never points
 * to freed request memory. While parked, the handler's tk_req is not to be
 * touched by any thread but through these calls.
 */
struct tk_parked;
/* Park r (from its handler, which then returns without replying) for at
 * most timeout_ms (clamped to 1 ms .. 1 hour). Returns NULL only when r
 * already has a reply (a bug: logged). */
struct tk_parked *tk_req_park(struct tk_req *r, int64_t timeout_ms);
/* Answer the parked request with status and body (stolen; NULL: no body,
 * "{}"), from any thread. false if it was already answered (deadline, node
 * stopping): body is freed and nothing is sent. Gives up the handle. */
bool tk_parked_resume(struct tk_parked *p, int status, json_t *body);
/* The same, with an answer built by fn(r, arg) on a handler thread (the
 * HTTP thread for a TK_ROUTE_INLINE route) with the usual tk_req_* /
 * tk_reply_* calls (headers, cookies, errors), exactly one reply as in a
 * handler; the finish hook runs after it (fn may take r->db). false if it
 * was already answered: fn is never called and arg stays the caller's to
 * free. Gives up the handle. */
typedef void (*tk_resume_fn)(struct tk_req *r, void *arg);
bool tk_parked_resume_with(struct tk_parked *p, tk_resume_fn fn, void *arg);
/* Give up the handle without answering: the deadline or a stop will. */
void tk_parked_release(struct tk_parked *p);
/* Has it been answered (by anyone)? For a worker to stop early. */
bool tk_parked_answered(const struct tk_parked *p);

/*
 * Streams: a text/event-stream response written by another thread.
 * tk_reply_stream replies 200 (Content-Type text/event-stream) and returns
 * the stream; the handler returns (the finish hook runs) and the response
 * stays open, the connection suspended while there is nothing to send (so
 * an idle stream neither holds a worker nor times out; a reader that stops
 * reading with data pending does, after idle_timeout). Writes go to a
 * bounded buffer (stream_buffer bytes): a write that would go past it cuts
 * the stream (the connection is closed), rather than buffering for a reader
 * that does not keep up. On tk_http_quiesce/tk_http_stop every open stream
 * gets "event: end" with data {"reason":"node_stopping"} and is closed.
 * The handle is given up with tk_stream_close, exactly once.
 */
struct tk_stream;
/* NULL after replying 503 too_many_streams (max_streams open already). */
struct tk_stream *tk_reply_stream(struct tk_req *r);
/* Count a stream the handler refused itself (a per-tenant cap) in
 * tokend_http_streams_total{result="refused"}; the handler replies. */
void tk_req_stream_refused(struct tk_req *r);
/* Queue len bytes (whole SSE lines, built by the caller). TK_OK; TK_ETOOBIG
 * when this write cut the stream (buffer full); TK_EUNAVAIL when it is cut,
 * ended or its client is gone: the caller should close it. */
tk_rc tk_stream_write(struct tk_stream *s, const char *data, size_t len);
/* Bytes queued and not yet handed to libmicrohttpd. */
size_t tk_stream_pending(struct tk_stream *s);
/* Is it still open (not cut, ended or gone)? */
bool tk_stream_alive(struct tk_stream *s);
/* End the response once what is queued is sent, and give up the handle. */
void tk_stream_close(struct tk_stream *s);

/* Counters of parked requests and streams since start (on /metrics as
 * tokend_http_parked* and tokend_http_streams*). parked_total counts every
 * park; each one not parked now ended once: answered, timeout or stopped. */
struct tk_http_park_stats {
    uint64_t parked_now, parked_total, parked_timeouts, parked_stopped, parked_answered;
    uint64_t parked_refused;
    uint64_t streams_open, streams_total, streams_cut, streams_refused;
};
void tk_http_park_stats(struct tk_http *h, struct tk_http_park_stats *out);

#endif
