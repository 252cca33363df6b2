/*
 * outbound.h: tokend's one HTTP client for calls to other servers (token
 * endpoints, OAuth metadata, revocation). One thread runs a libcurl multi
 * handle; everybody else hands it requests.
 *
 * tk_out_submit copies the request, queues it and returns an id at once;
 * the outbound thread runs it and calls done(result, arg) exactly once, on
 * the outbound thread, when it ends in any way (answered, failed, timed out,
 * cancelled, stopped). done must not block and must be short: every other
 * transfer waits while it runs. Its typical work is to resume a parked HTTP
 * request or to kick a worker; it may call tk_out_submit and tk_out_cancel,
 * never tk_out_send or tk_out_stop. The result, and the request it points
 * to, live only during the call (tk_out_result_copy keeps one).
 * tk_out_send is the blocking form, for worker threads.
 *
 * Bounds, whatever the caller asks: a connect timeout and a total timeout
 * (queueing included), an answer body of at most max_response bytes (past
 * it the transfer is cut and fails too_large: nothing is buffered beyond
 * the cap), at most max_concurrent transfers at once and a bounded queue
 * behind them (a submit past it is refused, busy). Only http and https;
 * redirects are not followed unless the request asks (max_redirects); TLS
 * peers and host names are always verified; proxy environment variables
 * are ignored (only the outbound_proxy setting sets a proxy).
 *
 * public_only: a request for a user-supplied URL (metadata discovery, DCR)
 * may reach only public addresses. The address is checked on the socket
 * about to connect and again on the connection actually used, after DNS
 * resolution, so neither a name that resolves to 127.0.0.1 nor a DNS
 * rebinding between check and connect gets through. Refused: loopback,
 * private (RFC 1918, ULA), link-local (and so 169.254.169.254, the cloud
 * metadata address), CGNAT 100.64/10, multicast, unspecified, reserved,
 * documentation and benchmark ranges, and IPv6 forms that embed one of
 * those (v4-mapped, NAT64, 6to4). With a proxy configured the proxy makes
 * the connection: only a URL whose host is an IP literal is checked, and
 * the proxy's own egress rules must do the rest.
 *
 * Secrets: tk_out_record renders an exchange for events and debugging with
 * every secret masked: the strings the caller lists in req->mask (in plain,
 * percent-encoded and JSON-escaped form), the values of query, form and
 * JSON members with sensitive names (client_secret, refresh_token,
 * access_token, password, ...), and the values of credential headers
 * (Authorization, Cookie, ...). Store that record, never the request.
 */
#ifndef TK_OUTBOUND_H
#define TK_OUTBOUND_H

#include "../common/tk.h"

#include <jansson.h>

struct tk_out;

struct tk_out_opts {
    int connect_timeout_ms; /* outbound_connect_timeout; 0: 5000 */
    int timeout_ms;         /* outbound_timeout, the default total; 0: 15000 */
    size_t max_response;    /* outbound_max_response, body bytes; 0: 1 MiB */
    int max_concurrent;     /* outbound_max_concurrent; 0: 64 */
    int max_queue;          /* waiting behind them; 0: 16 * max_concurrent */
    const char *ca_file;    /* outbound_ca_file: CAs trusted besides the system's; NULL/"" none */
    const char *proxy;      /* outbound_proxy: scheme://host:port; NULL/"": no proxy */
};

/* Start the outbound thread. The CA file, when given, must be readable
 * (checked here, error naming outbound_ca_file). curl_global_init must
 * have been called (main does, before any thread). */
tk_rc tk_out_start(const struct tk_out_opts *o, struct tk_out **out, struct tk_err *e);
/* Finish every request not done yet with TK_OUT_STOPPING (each done called
 * once, on the outbound thread, before this returns) and join the thread.
 * Later submits are refused (stopping). out stays valid until tk_out_free,
 * so threads that still hold it fail cleanly. NULL or a second call: no-op. */
void tk_out_stop(struct tk_out *out);
/* Stop (if not yet) and free. NULL is a no-op. */
void tk_out_free(struct tk_out *out);

/* A request. Everything is copied by tk_out_submit. */
struct tk_out_req {
    const char *method;         /* "GET", "POST", ... (NULL: GET, or POST with a body) */
    const char *url;            /* http:// or https://, at most 8 KiB */
    const char *const *headers; /* "Name: value" lines, no CR or LF */
    size_t nheaders;
    const char *body; /* may hold NULs; NULL: none; at most 8 MiB (else too_large) */
    size_t body_len;
    int timeout_ms;    /* total, queueing included; 0: the default */
    int max_redirects; /* 0: a 3xx is the answer (the default); else follow that many (<= 10) */
    bool public_only;  /* refuse non-public addresses (above) */
    /* Secrets that tk_out_record must mask wherever they appear (client
     * secret, refresh token, ...). Not used to send anything. */
    const char *const *mask;
    size_t nmask;
};

enum tk_out_error {
    TK_OUT_OK = 0,            /* an HTTP answer came (any status) */
    TK_OUT_TIMEOUT,           /* "timeout": no complete answer in time */
    TK_OUT_CONNECT_FAILED,    /* "connect_failed": DNS, refused, unreachable */
    TK_OUT_TLS_FAILED,        /* "tls_failed": handshake or verification */
    TK_OUT_TOO_LARGE,         /* "too_large": body or headers past the cap */
    TK_OUT_FORBIDDEN_ADDRESS, /* "forbidden_address": public_only refused it */
    TK_OUT_BAD_URL,           /* "bad_url": not an http(s) URL, or a bad request line */
    TK_OUT_STOPPING,          /* "stopping": the node is stopping */
    TK_OUT_CANCELLED,         /* "cancelled": tk_out_cancel */
    TK_OUT_BUSY,              /* "busy": the queue is full (tk_out_send only) */
    TK_OUT_FAILED,            /* "failed": the peer broke the protocol or the connection */
    TK_OUT_NERRORS
};

/* "ok", "timeout", "connect_failed", ... */
const char *tk_out_error_name(enum tk_out_error err);

struct tk_out_result {
    uint64_t id;
    enum tk_out_error error;
    char message[320];      /* one sentence naming the host, never the query */
    long status;            /* HTTP status; 0 when no answer */
    char content_type[128]; /* "" when absent; cut at the buffer */
    char www_authenticate[512];
    char retry_after[64];
    char location[1024]; /* of a 3xx not followed */
    const char *body;    /* NUL-terminated (may hold NULs before); NULL when none */
    size_t body_len;
    int64_t total_us;             /* from submit to the end */
    const struct tk_out_req *req; /* the request as copied (for tk_out_record) */
};

/* Queue req. TK_OK: *id (may be NULL) is set and done(res, arg) will be
 * called exactly once, on the outbound thread (done may even run before
 * this returns). Otherwise done is never called: TK_EUNAVAIL "busy" (the
 * queue is full) or "stopping" (after tk_out_stop). Bad input (the URL,
 * the method, a header with CR/LF) comes back through done as bad_url. */
tk_rc tk_out_submit(struct tk_out *out, const struct tk_out_req *req,
                    void (*done)(const struct tk_out_result *res, void *arg), void *arg,
                    uint64_t *id, struct tk_err *e);
/* Ask that request id end now with TK_OUT_CANCELLED. True when it was
 * still queued or running; its done is then called with "cancelled" (or,
 * if it ended meanwhile, with its own result): arg must stay valid until
 * done. False: unknown, or already ended. */
bool tk_out_cancel(struct tk_out *out, uint64_t id);
/* Submit and wait: for worker threads, never on the outbound thread or an
 * HTTP thread (park the request instead). res is always filled (busy and
 * stopping included) and must be released with tk_out_result_free; its
 * req points to the caller's req. Returns TK_OK when an answer came (any
 * status), else TK_EUPSTREAM (TK_EUNAVAIL for busy/stopping). */
tk_rc tk_out_send(struct tk_out *out, const struct tk_out_req *req, struct tk_out_result *res);

/* Copy src (in done) into dst, which then owns its body. */
void tk_out_result_copy(struct tk_out_result *dst, const struct tk_out_result *src);
/* Release what tk_out_send or tk_out_result_copy put in res. */
void tk_out_result_free(struct tk_out_result *res);

/* The exchange as a JSON object for an event's detail, with secrets
 * masked (header comment): method, url, request_headers, request_body,
 * error, message, status, content_type, www_authenticate, retry_after,
 * location, response_body (masked, then cut to 2 KiB), total_ms. The
 * caller owns the reference. req may be res->req. */
json_t *tk_out_record(const struct tk_out_req *req, const struct tk_out_result *res);
/* Mask one string as tk_out_record does (for a message built by hand):
 * a malloc'd copy with each of the nmask secrets replaced by "***". */
char *tk_out_mask(const char *s, const char *const *mask, size_t nmask);

/* Counters since start, a consistent snapshot. */
struct tk_out_stats {
    uint64_t in_flight;            /* in the multi handle */
    uint64_t queued;               /* waiting for a slot */
    uint64_t done[TK_OUT_NERRORS]; /* ended, by result (busy: refused at submit) */
};
void tk_out_stats(struct tk_out *out, struct tk_out_stats *st);

/* Register the client's series on the metrics registry (in serve, before
 * the HTTP server starts): tokend_outbound_inflight, tokend_outbound_queued
 * and tokend_outbound_requests_total{result} (result: tk_out_error_name).
 * They read *slot at render time (NULL, before start: no sample), so slot
 * (&app->outbound) must outlive the registry's renders. */
struct tk_metrics;
tk_rc tk_out_metrics_register(struct tk_metrics *m, struct tk_out *const *slot, struct tk_err *e);

/* For tests and callers that check an address themselves: is this
 * address (struct sockaddr_in or sockaddr_in6) one public_only refuses? */
bool tk_out_address_forbidden(const void *sockaddr);

#endif
