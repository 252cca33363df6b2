/*
 * http.c: see http.h.
 *
 * libmicrohttpd calls the access handler several times per request: once
 * when the headers are in (we set up the request and answer 413 at once if
 * Content-Length is over the limit), once per body chunk (appended to a
 * bounded buffer), and once more with no data, when we route, run the
 * handler and queue the response. Queuing only on that last call keeps
 * keep-alive working (queuing on the first makes MHD close the connection).
 * The completion callback writes the access log line, counts the metrics and
 * frees the request's pool.
 *
 * What libmicrohttpd 0.9.75 does not do is done above it, on the first call
 * (headers in): duplicate framing or identity headers, Content-Length with
 * Transfer-Encoding, and a Host this listener does not serve are refused
 * with the connection closed (RFC 9112 §6.1, §6.3); a chunked body over
 * max_body is answered 413 by hand on the socket and the connection closed,
 * without reading the rest.
 *
 * Its timeout is inactivity only, so a client sending one byte per
 * idle_timeout - 1 seconds would hold a connection forever. Every connection
 * is registered (MHD_OPTION_NOTIFY_CONNECTION) with the phase it is in:
 * waiting for a request head, reading a body, or busy (handler, response).
 * A sweeper (a worker.h worker, every SWEEP_EVERY_MS) cuts a connection
 * whose head is late (header_timeout) or whose body is too slow
 * (min_body_rate): it writes a 408 and shuts the socket down, so that libmicrohttpd closes it. The sweeper holds the
 * registry's lock while it does, and libmicrohttpd notifies CLOSED (which
 * takes that lock) before it closes the socket (daemon.c, 0.9.75: both
 * cleanup paths), so the descriptor is never one reused by another
 * connection. Phase changes are compare-and-swap, so that a connection
 * moving on and the sweeper cutting it agree on which happened.
 *
 * Those deadlines alone let a few addresses hold every slot with silent
 * connections for header_timeout, again and again; so under pressure (more
 * than 3/4 of max_connections open) the sweeper also cuts, oldest first,
 * the connections that hold a slot without using it (sweep_pressure).
 */
#include "http.h"
#include "parse.h"
#include "hostcheck.h"
#include "router.h"

#include "../common/log.h"
#include "../common/metrics.h"
#include "../common/worker.h"
#include "../tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The statuses the request metrics tell apart; the rest count as "other". */
static const int status_slots[] = {200, 201, 202, 204, 302, 303, 304, 400, 401, 403, 404,
                                   405, 408, 409, 413, 415, 421, 429, 431, 499, 500, 502,
                                   503, 504, 0 /* other */};
static const char *const status_names[] = {
    "200", "201", "202", "204", "302", "303", "304", "400", "401", "403", "404",   "405",
    "408", "409", "413", "415", "421", "429", "431", "499", "500", "502", "503", "504", "other"};
#define NSTATUS ((int)TK_NELEM(status_slots))
_Static_assert(TK_NELEM(status_slots) == TK_NELEM(status_names), "a name per status");
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
#define NBUCKETS ((int)TK_NELEM(buckets))

/* Under pressure (see sweep_pressure), how long a connection may wait for
 * a complete request head, or lag behind min_body_rate, before it is cut. */
#define PRESSURE_GRACE_MS 1000

/* Where a connection is; see the comment at the top. */
enum phase { PH_HEAD, PH_BODY, PH_BUSY, PH_CUT };

struct conn {
    struct conn *prev, *next; /* the registry, under tk_http.mu */
    int fd;
    atomic_int phase;
    atomic_int_fast64_t head_deadline_us; /* PH_HEAD: the head must be in by then */
    atomic_int_fast64_t head_since_us;    /* PH_HEAD: since when it waits for a head */
    atomic_int_fast64_t body_start_us;    /* PH_BODY: when the head was in */
    atomic_uint_fast64_t body_bytes;      /* PH_BODY: received so far */
    struct tk_tls *tls;                   /* HTTPS: the server's certificate, else NULL */
    struct tk_tls_pair *tls_pair;         /* HTTPS: the pair this session was given */
    atomic_bool tls_done;                 /* HTTPS: the handshake completed */
};

/* The hub of parked requests and streams (see the section at the end).
 * Refcounted: the server holds one reference and every parked request and
 * stream one, so that a worker resuming or writing after the server has
 * stopped still finds the hub's lock and counters. */
struct hub {
    atomic_int refs;
    pthread_mutex_t mu;     /* parked requests: list and states */
    struct tk_parked *parked;
    bool park_stopping;     /* quiesce/stop: every park answered 503 */
    pthread_mutex_t smu;    /* streams: list, count */
    struct tk_stream *streams;
    bool streams_stopping;
    int streams_open;
    int max_streams;
    size_t stream_buffer;
    atomic_uint_fast64_t parked_now, parked_total, parked_timeouts, parked_stopped;
    atomic_uint_fast64_t parked_refused; /* answered 503 too_many_parked at once */
    int max_parked;
    atomic_uint_fast64_t streams_total, streams_cut, streams_refused;
};

struct tk_http {
    struct MHD_Daemon *d;
    struct tk_http_opts o;
    struct tk_router *router;
    struct tk_hostpolicy hosts;
    struct tk_proxies proxies; /* trusted_proxies */
    int fd;
    int port;
    /* the request metrics, on o.metrics (or a registry of our own) */
    struct tk_metrics *own_metrics;
    struct tk_metric *m_requests;   /* route x status; route nroutes is "no route" */
    struct tk_metric *m_duration;   /* route */
    struct tk_metric *m_cut;        /* enum cut_reason */
    struct tk_metric *m_suppressed; /* status */
    struct tk_metric *m_inflight;   /* also what tk_http_drain waits on */
    /* the connection registry (under mu) and its sweeper */
    pthread_mutex_t mu;
    struct conn *conns;
    struct tk_worker sweeper;
    /* the access log's budget for refusals (under logmu): lines written in
     * the current second, and those left out, by status slot */
    pthread_mutex_t logmu;
    int64_t log_second;
    int log_used;
    uint64_t log_left_out[NSTATUS];
    struct hub *hub;
    bool quiesced; /* the listen socket is ours again (closed in http_free) */
    /* the handler pool (see its section): requests whose app code runs off
     * the HTTP threads, in a FIFO under pmu */
    pthread_mutex_t pmu;
    pthread_cond_t pcond;
    struct tk_req *qhead, *qtail;
    bool pstopping; /* tk_http_stop: no more jobs taken; the queue is answered */
    int nhandlers;
    pthread_t *handlers;
    atomic_int pqueued, prunning;
};

struct hdr {
    struct hdr *next;
    const char *name, *value;
};

struct tk_req_internal {
    struct tk_http *h;
    struct MHD_Connection *conn;
    struct conn *cs; /* the registry entry of the connection, or NULL */
    struct tk_buf body;
    bool replied;
    bool finished; /* the app's finish hook has run */
    bool refused;  /* answered by a rule before any handler work (access log budget) */
    int status;
    char *resp;
    size_t resp_len;
    const char *ctype;
    struct hdr *headers;
    int64_t start_us;
    size_t bytes_in;
    int route_index;
    struct tk_parked *park; /* parked by its handler (the request's reference) */
    bool park_applied;      /* the parked request's answer is built */
    bool applying;          /* building it: tk_reply_* allowed again */
    struct tk_stream *stream; /* answered with a stream (the response's reference) */
    /* tk_req_call: the view a called handler sees, and where its JSON goes */
    bool view;                  /* query, Content-Type and body are the call's */
    struct tk_form *view_query; /* the call's query (NULL: none) */
    bool view_json;             /* the call has a JSON body */
    tk_reply_hook hook;         /* one-shot: the next JSON reply goes here */
    void *hook_arg;
    /* the handler pool: the queue's link, what to do, and "done: queue the
     * reply" for the access handler called again after the resume */
    struct tk_req *off_next;
    int off_what;
    bool off_done;
};

static void park_sweep(struct tk_http *h);
static void park_stop_all(struct tk_http *h);
static bool park_after_handler(struct tk_req *r, bool suspend);
static bool park_reentry(struct tk_http *h, struct tk_req *r);
enum { OFF_DISPATCH, OFF_APPLY }; /* what a handler thread does with a request */
static bool offload(struct tk_http *h, struct tk_req *r, int what);
static void reply_stopping(struct tk_req *r);
static tk_rc pool_start(struct tk_http *h, struct tk_err *e);
static void pool_stop(struct tk_http *h);
static tk_rc pool_metrics_register(struct tk_http *h, struct tk_metrics *reg, struct tk_err *e);
static void park_request_done(struct tk_req *r);
static void streams_stop_all(struct tk_http *h);
static struct hub *hub_new(size_t stream_buffer, int max_streams, int max_parked);
static void hub_unref(struct hub *hub);
static enum MHD_Result queue_stream(struct tk_req *r);

/* ---- replies ---- */

void tk_reply_header(struct tk_req *r, const char *name, const char *value)
{
    struct hdr *h = tk_pool_alloc(r->pool, sizeof *h);
    h->name = tk_pool_strdup(r->pool, name);
    h->value = tk_pool_strdup(r->pool, value);
    h->next = r->in->headers;
    r->in->headers = h;
}

void tk_reply_text(struct tk_req *r, int status, const char *ctype, const char *text, size_t len)
{
    struct tk_req_internal *in = r->in;
    if (in->hook && !in->replied && (!in->park || in->applying) &&
        !strcmp(ctype, "application/json")) {
        /* a called handler's reply (tk_req_call): to its hook, once */
        tk_reply_hook hook = in->hook;
        void *arg = in->hook_arg;
        in->hook = NULL;
        json_t *body = json_loadb(text, len, 0, NULL);
        hook(r, status, body, arg);
        return;
    }
    if (in->replied || (in->park && !in->applying)) {
        tk_error("http: second reply to %s %s ignored (a handler bug)", r->method, r->path);
        return;
    }
    in->replied = true;
    in->status = status;
    in->ctype = ctype;
    in->resp = tk_malloc(len + 1);
    memcpy(in->resp, text, len);
    in->resp[len] = '\0';
    in->resp_len = len;
}

void tk_reply_json(struct tk_req *r, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) {
        /* a handler built no object (json_pack refuses invalid UTF-8): a bug,
         * answered as one rather than taking the node down */
        tk_error("http: %s %s built a reply that is not JSON", r->method, r->path);
        static const char err[] = "{\"error\":\"internal\",\"message\":\"the reply could not "
                                  "be encoded as JSON\"}\n";
        tk_reply_text(r, 500, "application/json", err, sizeof err - 1);
        return;
    }
    size_t n = strlen(s);
    char *line = tk_malloc(n + 2);
    memcpy(line, s, n);
    line[n++] = '\n';
    line[n] = '\0';
    tk_wipe(s, n - 1); /* replies may show a secret once */
    free(s);
    tk_reply_text(r, status, "application/json", line, n);
    tk_wipe(line, n);
    free(line);
}

/* Replace bytes that are not UTF-8 (tk_utf8_char: truncated, overlong,
 * surrogates, above U+10FFFF) with '?', so that a message cut in the middle
 * of a character still goes out (jansson refuses invalid UTF-8). */
void tk_http_utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t left = strlen(s);
    while (left) {
        size_t n = tk_utf8_char(p, left);
        if (n == 0) {
            *p = '?';
            n = 1;
        }
        p += n;
        left -= n;
    }
}

static void reply_error_status(struct tk_req *r, int status, const struct tk_err *in,
                               json_t *extra)
{
    struct tk_err copy = *in, *e = &copy;
    tk_http_utf8_clean(e->msg);
    tk_http_utf8_clean(e->field);
    tk_http_utf8_clean(e->code);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(e->code[0] ? e->code : tk_rc_name(e->rc)));
    json_object_set_new(o, "message", json_string(e->msg[0] ? e->msg : tk_rc_name(e->rc)));
    if (e->field[0]) json_object_set_new(o, "field", json_string(e->field));
    if (extra) json_object_update(o, extra);
    json_object_set_new(o, "request_id", json_string(r->request_id));
    if (r->client_request_id[0])
        json_object_set_new(o, "client_request_id", json_string(r->client_request_id));
    tk_reply_json(r, status, o);
}

void tk_reply_error(struct tk_req *r, const struct tk_err *e, json_t *extra)
{
    reply_error_status(r, tk_rc_status(e->rc), e, extra);
}

static bool media_is_form(const char *ct)
{
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t') ct++;
    static const char f[] = "application/x-www-form-urlencoded";
    if (strncasecmp(ct, f, sizeof f - 1) != 0) return false;
    char c = ct[sizeof f - 1];
    return c == '\0' || c == ';' || c == ' ' || c == '\t';
}

static bool header_value_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
    return true;
}

tk_rc tk_reply_cookie(struct tk_req *r, const char *name, const char *value,
                      const struct tk_cookie_opts *o)
{
    static const struct tk_cookie_opts defaults = {NULL, -1, true, true, TK_SAMESITE_STRICT};
    if (!o) o = &defaults;
    const char *path = o->path ? o->path : "/";
    if (!tk_cookie_name_ok(name) || !tk_cookie_value_ok(value) || path[0] != '/' ||
        strchr(path, ';') || !header_value_ok(path)) {
        tk_error("http: %s %s: refused to set a cookie with an invalid name, value or path",
                 r->method, r->path);
        return TK_EINVAL;
    }
    char age[40] = "";
    if (o->max_age >= 0) snprintf(age, sizeof age, "; Max-Age=%ld", o->max_age);
    char *v = tk_pool_printf(r->pool, "%s=%s; Path=%s%s%s%s; SameSite=%s", name, value, path,
                             age, o->http_only ? "; HttpOnly" : "", o->secure ? "; Secure" : "",
                             o->same_site == TK_SAMESITE_LAX ? "Lax" : "Strict");
    tk_reply_header(r, "Set-Cookie", v);
    return TK_OK;
}

bool tk_req_cross_site(struct tk_req *r)
{
    const char *o = tk_req_header(r, "Origin");
    if (o && strcmp(o, "null") != 0 && !tk_origin_same(o, tk_req_header(r, "Host"))) return true;
    const char *sfs = tk_req_header(r, "Sec-Fetch-Site");
    return sfs && strcasecmp(sfs, "same-origin") != 0 && strcasecmp(sfs, "none") != 0;
}

void tk_req_csrf(struct tk_req *r, const char *cookie, const struct tk_cookie_opts *o,
                 char out[TK_CSRF_LEN + 1])
{
    const char *c = tk_req_cookie(r, cookie);
    if (c && strlen(c) == TK_CSRF_LEN && tk_cookie_value_ok(c)) {
        memcpy(out, c, TK_CSRF_LEN + 1);
        return;
    }
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[TK_CSRF_LEN];
    tk_random(raw, sizeof raw);
    for (int i = 0; i < TK_CSRF_LEN; i++)
        out[i] = b64[raw[i] & 63];
    out[TK_CSRF_LEN] = '\0';
    tk_reply_cookie(r, cookie, out, o);
}

bool tk_req_csrf_ok(struct tk_req *r, const char *cookie, const char *value)
{
    if (tk_req_cross_site(r)) return false;
    const char *c = tk_req_cookie(r, cookie);
    return c && value && strlen(c) == TK_CSRF_LEN && strlen(value) == TK_CSRF_LEN &&
           tk_ct_equal(c, value, TK_CSRF_LEN);
}

void tk_reply_redirect(struct tk_req *r, int status, const char *location)
{
    struct tk_err e;
    if (!location || !*location || !header_value_ok(location) ||
        (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)) {
        tk_error("http: %s %s: refused a redirect (status %d) to an empty location or one with "
                 "control characters",
                 r->method, r->path, status);
        tk_err_set(&e, TK_EINTERNAL, "internal", "the redirect could not be built");
        tk_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_header(r, "Location", location);
    tk_reply_text(r, status, "text/plain", "", 0);
}

/* ---- request accessors ---- */

const char *tk_req_param(const struct tk_req *r, const char *name)
{
    for (int i = 0; i < r->nparams; i++)
        if (!strcmp(r->param_names[i], name)) return r->param_values[i];
    return NULL;
}

const char *tk_req_query(const struct tk_req *r, const char *name)
{
    if (r->in->view) return r->in->view_query ? tk_form_get(r->in->view_query, name) : NULL;
    return MHD_lookup_connection_value(r->in->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *tk_req_header(const struct tk_req *r, const char *name)
{
    if (r->in->view && !strcasecmp(name, "Content-Type"))
        return r->in->view_json ? "application/json" : NULL;
    return MHD_lookup_connection_value(r->in->conn, MHD_HEADER_KIND, name);
}

struct count_ctx {
    const char *name;
    bool nocase; /* header names are case-insensitive, query names are not */
    int n;
};

static enum MHD_Result count_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    (void)value;
    struct count_ctx *c = cls;
    if (key && (c->nocase ? !strcasecmp(key, c->name) : !strcmp(key, c->name))) c->n++;
    return MHD_YES;
}

static int count_values(const struct tk_req *r, enum MHD_ValueKind kind, const char *name,
                        bool nocase)
{
    struct count_ctx c = {name, nocase, 0};
    MHD_get_connection_values(r->in->conn, kind, count_value, &c);
    return c.n;
}

int tk_req_query_count(const struct tk_req *r, const char *name)
{
    if (r->in->view) return tk_req_query(r, name) ? 1 : 0; /* a form has no duplicates */
    return count_values(r, MHD_GET_ARGUMENT_KIND, name, false);
}

void tk_req_capture(struct tk_req *r, tk_reply_hook hook, void *arg)
{
    r->in->hook = hook;
    r->in->hook_arg = arg;
}

struct qs_ctx {
    struct tk_buf *b;
};

static enum MHD_Result qs_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    struct qs_ctx *c = cls;
    if (!key) return MHD_YES;
    if (c->b->len) tk_buf_addstr(c->b, "&");
    tk_buf_urlencode(c->b, key);
    tk_buf_addstr(c->b, "=");
    if (value) tk_buf_urlencode(c->b, value);
    return MHD_YES;
}

const char *tk_req_query_string(struct tk_req *r)
{
    if (r->in->view) return ""; /* a called handler has no query of its own to pass on */
    struct tk_buf b;
    tk_buf_init(&b, 16384);
    struct qs_ctx c = {&b};
    MHD_get_connection_values(r->in->conn, MHD_GET_ARGUMENT_KIND, qs_value, &c);
    char *out = tk_pool_strdup(r->pool, b.data ? b.data : "");
    tk_buf_free(&b);
    return out;
}

tk_rc tk_req_call(struct tk_req *r, const struct tk_route *route, const char *const *params,
                  const char *query, const char *json_body, tk_reply_hook hook, void *arg,
                  struct tk_err *e)
{
    struct tk_req_internal *in = r->in;
    if (in->replied || in->park || in->stream || in->hook)
        return tk_err_set(e, TK_EINTERNAL, "internal", "tk_req_call on a request with a reply");
    struct tk_form *q = NULL;
    if (query && *query) {
        q = tk_pool_alloc(r->pool, sizeof *q);
        if (tk_form_parse(query, strlen(query), r->pool, q, e) != TK_OK) return e->rc;
    }
    int np = 0;
    const char *names[TK_REQ_MAX_PARAMS], *values[TK_REQ_MAX_PARAMS];
    for (; params && params[2 * np]; np++) {
        if (np == TK_REQ_MAX_PARAMS)
            return tk_err_set(e, TK_EINTERNAL, "internal", "tk_req_call: too many parameters");
        names[np] = params[2 * np];
        values[np] = params[2 * np + 1];
    }
    /* the request as the called route sees it; put back after a reply */
    const struct tk_route *route0 = r->route;
    const char *names0[TK_REQ_MAX_PARAMS], *values0[TK_REQ_MAX_PARAMS];
    int np0 = r->nparams;
    memcpy(names0, r->param_names, sizeof names0);
    memcpy(values0, r->param_values, sizeof values0);
    const char *body0 = r->body;
    size_t len0 = r->body_len;
    struct hdr *headers0 = in->headers; /* the called handler's headers are not ours */
    r->route = route;
    r->nparams = np;
    memcpy(r->param_names, names, sizeof(names[0]) * (size_t)np);
    memcpy(r->param_values, values, sizeof(values[0]) * (size_t)np);
    r->body = json_body ? json_body : "";
    r->body_len = json_body ? strlen(json_body) : 0;
    in->view = true;
    in->view_query = q;
    in->view_json = json_body != NULL;
    in->hook = hook;
    in->hook_arg = arg;
    route->handler(r);
    if (in->park || in->stream) return TK_OK; /* its answer comes later, or streams */
    if (in->hook) { /* replied other than JSON, or not at all */
        in->hook = NULL;
        if (!in->replied) hook(r, 500, NULL, arg);
    }
    in->view = false;
    in->headers = headers0;
    r->route = route0;
    r->nparams = np0;
    memcpy(r->param_names, names0, sizeof names0);
    memcpy(r->param_values, values0, sizeof values0);
    r->body = body0;
    r->body_len = len0;
    return TK_OK;
}

bool tk_req_query_unique(struct tk_req *r, const char *name)
{
    if (tk_req_query_count(r, name) <= 1) return true;
    struct tk_err e;
    tk_err_field(&e, TK_EINVAL, "duplicate_parameter", name,
                 "the query parameter %.60s is given more than once", name);
    tk_reply_error(r, &e, NULL);
    return false;
}

const char *tk_req_cookie(struct tk_req *r, const char *name)
{
    if (count_values(r, MHD_HEADER_KIND, "Cookie", true) > 1) return NULL;
    const char *h = tk_req_header(r, "Cookie");
    if (!h) return NULL;
    char *out = tk_pool_alloc(r->pool, 4097);
    return tk_cookie_find(h, name, out, 4097) == TK_COOKIE_FOUND ? out : NULL;
}

struct tk_form *tk_req_form(struct tk_req *r)
{
    struct tk_err e;
    const char *ct = tk_req_header(r, "Content-Type");
    if (!media_is_form(ct)) {
        tk_err_field(&e, TK_EINVAL, "unsupported_media_type", "Content-Type",
                     "the body must be sent with Content-Type: "
                     "application/x-www-form-urlencoded, not %.60s",
                     ct ? ct : "none");
        reply_error_status(r, 415, &e, NULL);
        return NULL;
    }
    struct tk_form *f = tk_pool_alloc(r->pool, sizeof *f);
    if (tk_form_parse(r->body, r->body_len, r->pool, f, &e) != TK_OK) {
        tk_reply_error(r, &e, NULL);
        return NULL;
    }
    return f;
}

/* A generic reason for a JSON parse error, from jansson's error code. */
static const char *json_reason(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_premature_end_of_input: return "unexpected end of input";
    case json_error_end_of_input_expected: return "extra data after the value";
    case json_error_null_character: return "a NUL character";
    case json_error_null_byte_in_key: return "a NUL byte in a member name";
    case json_error_duplicate_key: return "a duplicate member name";
    case json_error_numeric_overflow: return "a number out of range";
    case json_error_stack_overflow: return "nesting too deep";
    default: return "a syntax error";
    }
}

json_t *tk_req_json(struct tk_req *r)
{
    struct tk_err e;
    const char *ct = tk_req_header(r, "Content-Type");
    if (!tk_media_is_json(ct)) {
        tk_err_field(&e, TK_EINVAL, "unsupported_media_type", "Content-Type",
                     "the body must be sent with Content-Type: application/json, not %.60s",
                     ct ? ct : "none");
        reply_error_status(r, 415, &e, NULL);
        return NULL;
    }
    if (r->body_len == 0) {
        tk_err_set(&e, TK_EINVAL, "invalid_json", "the request needs a JSON object body");
        tk_reply_error(r, &e, NULL);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        /* never je.text: jansson quotes the input near the error ("near
         * '...'"), which may be a secret of the body */
        tk_err_set(&e, TK_EINVAL, "invalid_json",
                   "the body is not valid JSON: %s at line %d column %d (byte %d)",
                   json_reason(&je), je.line, je.column, je.position);
        tk_reply_error(r, &e, NULL);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        tk_err_set(&e, TK_EINVAL, "invalid_json", "the body must be a JSON object");
        tk_reply_error(r, &e, NULL);
        return NULL;
    }
    return j;
}

/* ---- metrics ---- */

static int status_slot(int status)
{
    for (int i = 0; i < NSTATUS - 1; i++)
        if (status_slots[i] == status) return i;
    return NSTATUS - 1;
}

static void count(struct tk_http *h, int route, int status, int64_t us)
{
    size_t pos[2] = {(size_t)route, (size_t)status_slot(status)};
    tk_metric_inc(h->m_requests, tk_metric_index(h->m_requests, pos));
    tk_metric_observe(h->m_duration, (size_t)route, (double)us / 1e6);
}

static const char *const cut_names[] = {"header_timeout", "min_body_rate", "pressure"};

/* Parked requests and streams, read from tk_http_park_stats at render
 * time (the hub outlives every render: it goes with h). */
enum park_what { PW_PARKED, PW_PARKED_TOTAL, PW_STREAMS, PW_STREAMS_TOTAL, PW_STREAMS_CUT };

static double m_park(void *arg, size_t which, size_t idx)
{
    struct tk_http_park_stats st;
    tk_http_park_stats(arg, &st);
    switch ((enum park_what)which) {
    case PW_PARKED:
        return (double)st.parked_now;
    case PW_PARKED_TOTAL:
        return (double)(idx == 0   ? st.parked_answered
                        : idx == 1 ? st.parked_timeouts
                        : idx == 2 ? st.parked_stopped
                                   : st.parked_refused);
    case PW_STREAMS:
        return (double)st.streams_open;
    case PW_STREAMS_TOTAL:
        return (double)(idx == 0 ? st.streams_total : st.streams_refused);
    case PW_STREAMS_CUT:
        return (double)st.streams_cut;
    }
    return NAN;
}

static double m_parked(void *arg, size_t idx)
{
    return m_park(arg, PW_PARKED, idx);
}
static double m_parked_total(void *arg, size_t idx)
{
    return m_park(arg, PW_PARKED_TOTAL, idx);
}
static double m_streams(void *arg, size_t idx)
{
    return m_park(arg, PW_STREAMS, idx);
}
static double m_streams_total(void *arg, size_t idx)
{
    return m_park(arg, PW_STREAMS_TOTAL, idx);
}
static double m_streams_cut(void *arg, size_t idx)
{
    return m_park(arg, PW_STREAMS_CUT, idx);
}

static tk_rc park_metrics_register(struct tk_http *h, struct tk_metrics *reg, struct tk_err *e)
{
    static const char *const ends[] = {"answered", "timeout", "stopped", "refused"};
    static const struct tk_dim end = {"result", ends, TK_NELEM(ends), NULL, NULL};
    static const char *const opens[] = {"opened", "refused"};
    static const struct tk_dim open = {"result", opens, 2, NULL, NULL};
    bool ok =
        tk_metric_gauge_fn(reg, "tokend_http_parked", "Requests parked now.", NULL, 0, m_parked, h,
                           e) &&
        tk_metric_counter_fn(reg, "tokend_http_parked_total",
                             "Parked requests ended: answered (resumed by their work), timeout "
                             "(504 at their deadline), stopped (503, the node stopping).",
                             &end, 1, m_parked_total, h, e) &&
        tk_metric_gauge_fn(reg, "tokend_http_streams", "Streams (server-sent events) open now.",
                           NULL, 0, m_streams, h, e) &&
        tk_metric_counter_fn(reg, "tokend_http_streams_total",
                             "Stream requests: opened, or refused (max_streams reached or the "
                             "node stopping).",
                             &open, 1, m_streams_total, h, e) &&
        tk_metric_counter_fn(reg, "tokend_http_streams_cut_total",
                             "Streams cut because their reader fell stream_buffer behind.", NULL, 0,
                             m_streams_cut, h, e);
    return ok ? TK_OK : e ? e->rc : TK_EINVAL;
}

/* Register the request metrics on reg: the route dimension is the route
 * table (method and route together) and "no route" last. */
static tk_rc metrics_register(struct tk_http *h, struct tk_metrics *reg, struct tk_err *e)
{
    size_t nr = h->o.nroutes + 1;
    const char **methods = tk_calloc(nr, sizeof *methods);
    const char **patterns = tk_calloc(nr, sizeof *patterns);
    for (size_t i = 0; i < h->o.nroutes; i++) {
        methods[i] = h->o.routes[i].method;
        patterns[i] = h->o.routes[i].pattern;
    }
    methods[nr - 1] = "";
    patterns[nr - 1] = "none";
    struct tk_dim route = {"method", methods, nr, "route", patterns};
    struct tk_dim status = {"status", status_names, NSTATUS, NULL, NULL};
    struct tk_dim reason = {"reason", cut_names, TK_NELEM(cut_names), NULL, NULL};
    struct tk_dim rs[2] = {route, status};
    h->m_requests = tk_metric_counter(reg, "tokend_http_requests_total",
                                      "HTTP requests answered, by route and status.", rs, 2,
                                      TK_METRIC_SPARSE, e);
    if (h->m_requests)
        h->m_duration = tk_metric_histogram(reg, "tokend_http_request_duration_seconds",
                                            "Time from headers to response, by route.", &route, 1,
                                            buckets, NBUCKETS, TK_METRIC_SPARSE, e);
    if (h->m_duration)
        h->m_cut = tk_metric_counter(
            reg, "tokend_http_connections_cut_total",
            "Connections closed as too slow: a late request head (header_timeout), a slow body "
            "(min_body_rate), or no complete request within a second while near "
            "max_connections (pressure).",
            &reason, 1, 0, e);
    if (h->m_cut)
        h->m_suppressed = tk_metric_counter(reg, "tokend_http_access_log_suppressed_total",
                                            "Access log lines left out for refusals over "
                                            "access_log_refusals_per_s, by status.",
                                            &status, 1, TK_METRIC_SPARSE, e);
    if (h->m_suppressed)
        h->m_inflight = tk_metric_gauge(reg, "tokend_http_inflight", "Requests being handled now.",
                                        NULL, 0, 0, e);
    free(methods);
    free(patterns);
    if (!h->m_inflight) return e ? e->rc : TK_EINVAL;
    tk_rc rc = park_metrics_register(h, reg, e);
    return rc == TK_OK ? pool_metrics_register(h, reg, e) : rc;
}

void tk_http_metrics(struct tk_http *h, struct tk_buf *out)
{
    tk_metrics_render(h->o.metrics ? h->o.metrics : h->own_metrics, out);
}

/* ---- the request cycle ---- */

static bool request_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static struct conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static bool phase_move(struct conn *cs, int from, int to)
{
    return !cs || atomic_compare_exchange_strong(&cs->phase, &from, to);
}

static struct tk_req *req_new(struct tk_http *h, struct MHD_Connection *c, const char *url,
                              const char *method)
{
    struct tk_pool *pool = tk_pool_new();
    struct tk_req *r = tk_pool_alloc(pool, sizeof *r);
    memset(r, 0, sizeof *r);
    r->pool = pool;
    r->in = tk_pool_alloc(pool, sizeof *r->in);
    memset(r->in, 0, sizeof *r->in);
    r->in->h = h;
    r->in->conn = c;
    r->in->start_us = tk_mono_us();
    r->in->route_index = (int)h->o.nroutes;
    tk_buf_init(&r->in->body, h->o.max_body);
    r->app = h->o.app;
    r->method = tk_pool_strdup(pool, method);
    /* absolute-form (RFC 9112 §3.2.2): "http://host/path" means "/path" */
    if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
        const char *slash = strchr(strstr(url, "://") + 3, '/');
        url = slash ? slash : "/";
    }
    r->path = tk_pool_strdup(pool, url);
    /* The id recorded for the request (events' trace id, the access log) is
     * always ours, so that no client can make two requests share one; the
     * client's own id is echoed and kept beside it. */
    char u[TK_UUID_LEN + 1];
    tk_uuid7(u);
    snprintf(r->request_id, sizeof r->request_id, "%s", u);
    const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_ok(rid))
        snprintf(r->client_request_id, sizeof r->client_request_id, "%s", rid);
    tk_metric_gauge_add(h->m_inflight, 0, 1);
    return r;
}

/* Give back what the app took for this request (its store connection) as
 * soon as the reply is built, not when libmicrohttpd has sent it: a client
 * that pipelines requests and never reads its responses must not hold a
 * connection of the store's pool. */
static void finish_once(struct tk_http *h, struct tk_req *r)
{
    if (r->in->finished) return;
    r->in->finished = true;
    if (h->o.finish) h->o.finish(r);
}

static bool state_changing(const char *m)
{
    return !strcmp(m, "POST") || !strcmp(m, "PUT") || !strcmp(m, "PATCH") || !strcmp(m, "DELETE");
}

/* The API's cross-site checks (see hostcheck.h); true if it replied. */
static bool refuse_cross_site(struct tk_req *r)
{
    struct tk_err e;
    const char *origin = tk_req_header(r, "Origin");
    if (origin && !tk_origin_same(origin, tk_req_header(r, "Host"))) {
        tk_err_field(&e, TK_EFORBIDDEN, "forbidden_origin", "Origin",
                     "requests from another origin (%.80s) are not accepted by the API", origin);
        reply_error_status(r, 403, &e, NULL);
        return true;
    }
    const char *ct = tk_req_header(r, "Content-Type");
    if (state_changing(r->method) && (r->route->flags & TK_ROUTE_FORM)) {
        if (media_is_form(ct)) return false;
        tk_err_field(&e, TK_EINVAL, "unsupported_media_type", "Content-Type",
                     "%s here needs Content-Type: application/x-www-form-urlencoded, not %.60s",
                     r->method, ct ? ct : "none");
        reply_error_status(r, 415, &e, NULL);
        return true;
    }
    if (state_changing(r->method) && !tk_media_is_json(ct)) {
        tk_err_field(&e, TK_EINVAL, "unsupported_media_type", "Content-Type",
                     "%s on the API needs Content-Type: application/json (even with no body), "
                     "not %.60s",
                     r->method, ct ? ct : "none");
        reply_error_status(r, 415, &e, NULL);
        return true;
    }
    return false;
}

/* Match r's route and apply the cross-site rules: true if a handler is to
 * run; false when refused (the reply is built). Never waits: on the HTTP
 * thread. */
static bool route_request(struct tk_http *h, struct tk_req *r)
{
    struct tk_err e;
    struct tk_route_match m;
    enum tk_router_result rr = tk_router_match(h->router, r->method, r->path, r->pool, &m);
    if (rr == TK_ROUTE_NOT_FOUND) {
        r->in->refused = true;
        tk_err_set(&e, TK_ENOTFOUND, "not_found", "no route for %.20s %.200s", r->method, r->path);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    if (rr == TK_ROUTE_BAD_PATH) {
        r->in->refused = true;
        r->in->route_index = m.index;
        tk_err_field(&e, TK_EINVAL, "invalid_path", "path",
                     "segment %d of the path %s; empty, '.' and '..' segments are not accepted",
                     m.bad_segment, m.bad_why);
        json_t *extra = json_pack("{s:i}", "segment", m.bad_segment);
        tk_reply_error(r, &e, extra);
        json_decref(extra);
        return false;
    }
    if (rr == TK_ROUTE_BAD_METHOD) {
        r->in->refused = true;
        r->in->route_index = m.index;
        tk_reply_header(r, "Allow", m.allow);
        tk_err_set(&e, TK_EMETHOD, "method_not_allowed", "%.20s is not allowed on %s; allowed: %s",
                   r->method, h->o.routes[m.index].pattern, m.allow);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    r->route = &h->o.routes[m.index];
    r->in->route_index = m.index;
    r->nparams = m.nparams;
    for (int i = 0; i < m.nparams; i++) {
        r->param_names[i] = m.names[i];
        r->param_values[i] = m.values[i];
    }
    if (!strncmp(r->path, "/v1/", 4) && refuse_cross_site(r)) {
        r->in->refused = true;
        return false;
    }
    return true;
}

/* The gate, the authenticate hook and the handler of the matched route:
 * the app's code, which may wait (the store); on a handler thread unless
 * the route is TK_ROUTE_INLINE. */
static void run_route(struct tk_http *h, struct tk_req *r)
{
    struct tk_err e;
    if (!(r->route->flags & TK_ROUTE_SEALED_OK) && h->o.gate && h->o.gate(r) != TK_OK) {
        if (!r->in->replied) {
            tk_err_set(&e, TK_EUNAVAIL, "unavailable", "not available now");
            tk_reply_error(r, &e, NULL);
        }
        return;
    }
    if ((r->route->flags & TK_ROUTE_AUTH) && h->o.authenticate && h->o.authenticate(r) != TK_OK) {
        r->in->refused = true; /* 401, 429; a 5xx (store busy) stays logged */
        if (!r->in->replied) {
            tk_err_set(&e, TK_EAUTH, "unauthenticated", "authentication failed");
            tk_reply_error(r, &e, NULL);
        }
        return;
    }
    r->route->handler(r);
    if (!r->in->replied && !r->in->park) {
        tk_error("http: handler for %s %s did not reply", r->route->method, r->route->pattern);
        tk_err_set(&e, TK_EINTERNAL, "internal", "the handler did not reply");
        tk_reply_error(r, &e, NULL);
    }
}

/* Responses may carry a secret shown once (a new token, unseal shares):
 * wipe every response body when libmicrohttpd is done with it. */
static void free_wiped(void *p)
{
    if (p) tk_wipe(p, strlen(p));
    free(p);
}

static const char *echoed_id(const struct tk_req *r)
{
    return r->client_request_id[0] ? r->client_request_id : r->request_id;
}

static enum MHD_Result queue(struct tk_req *r)
{
    struct tk_req_internal *in = r->in;
    if (in->stream) return queue_stream(r);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(in->resp_len, in->resp, free_wiped);
    in->resp = NULL; /* owned by MHD now */
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", in->ctype ? in->ctype : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", echoed_id(r));
    /* no-store unless the handler said otherwise (GET /oauth2/jwks: public) */
    bool own_cc = false;
    for (struct hdr *hd = in->headers; hd; hd = hd->next)
        own_cc |= !strcasecmp(hd->name, "Cache-Control");
    if (!own_cc) MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (struct hdr *hd = in->headers; hd; hd = hd->next)
        MHD_add_response_header(resp, hd->name, hd->value);
    enum MHD_Result ret = MHD_queue_response(in->conn, (unsigned)in->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Write a complete JSON error response on the socket by hand and say the
 * connection closes: for the moments libmicrohttpd cannot queue one (in the
 * middle of a body) and for the sweeper. Best effort, never blocks. */
static size_t send_raw_error(int fd, int status, const char *reason, const char *code,
                             const char *msg, const char *request_id)
{
    char body[512], head[512];
    struct tk_jline j;
    tk_jline_begin(&j, body, sizeof body - 1);
    tk_jline_str(&j, "error", code, SIZE_MAX);
    tk_jline_str(&j, "message", msg, SIZE_MAX);
    tk_jline_str(&j, "request_id", request_id, SIZE_MAX);
    size_t bl = tk_jline_end(&j);
    body[bl++] = '\n';
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n"
                      "X-Content-Type-Options: nosniff\r\n\r\n",
                      status, reason, bl, request_id);
    if (hl <= 0 || (size_t)hl >= sizeof head) return 0;
    struct iovec iov[2] = {{head, (size_t)hl}, {body, bl}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > (ssize_t)hl ? (size_t)w - (size_t)hl : 0;
}

struct hdr_scan {
    const char *dup;   /* the first header seen twice, among those checked */
    bool cl_differ;    /* two Content-Length values that differ */
    const char *cl;
    int n[7];
};

static const char *const single_headers[] = {"Authorization", "Content-Type", "Content-Length",
                                             "Host", "Origin", "X-Request-Id",
                                             "Transfer-Encoding"};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct hdr_scan *s = cls;
    for (size_t i = 0; i < TK_NELEM(single_headers); i++) {
        if (strcasecmp(key, single_headers[i]) != 0) continue;
        if (i == 2) {
            if (s->cl && value && strcmp(s->cl, value) != 0) s->cl_differ = true;
            if (!s->cl) s->cl = value;
        }
        if (++s->n[i] == 2 && !s->dup) s->dup = single_headers[i];
    }
    return MHD_YES;
}

/* The checks of the first call, when the headers are in: refuse what
 * libmicrohttpd accepts and a request must not be. True if it replied;
 * *close says the connection must close after the reply. */
static bool refuse_head(struct tk_http *h, struct tk_req *r, struct MHD_Connection *c,
                        const char *url, const char *version, bool *close)
{
    struct tk_err e;
    struct hdr_scan s;
    memset(&s, 0, sizeof s);
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, &s);
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
    *close = true;
    if (s.cl_differ) {
        tk_err_field(&e, TK_EINVAL, "bad_framing", "Content-Length",
                     "two different Content-Length headers: the body's length is ambiguous");
    } else if (s.dup) {
        tk_err_field(&e, TK_EINVAL, "duplicate_header", s.dup,
                     "the %s header is sent more than once; it may appear once", s.dup);
    } else if (te && s.cl) {
        tk_err_field(&e, TK_EINVAL, "bad_framing", "Transfer-Encoding",
                     "Content-Length and Transfer-Encoding together: the body's length is "
                     "ambiguous");
    } else if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host") &&
               strcmp(version, "HTTP/1.0") != 0) {
        /* RFC 9112 §3.2: an HTTP/1.1 request without Host is refused. This
         * also catches "Host : name" (a space before the colon), which
         * libmicrohttpd files under another name and which would otherwise
         * skip the Host check as if no Host had been sent. */
        tk_err_field(&e, TK_EINVAL, "missing_host", "Host",
                     "an HTTP/1.1 request needs exactly one Host header (\"Host:\" with no "
                     "space before the colon)");
    } else if (te && (strcasecmp(te, "chunked") != 0 || strcmp(version, "HTTP/1.1") != 0)) {
        tk_err_field(&e, TK_EINVAL, "bad_framing", "Transfer-Encoding",
                     "Transfer-Encoding must be chunked (HTTP/1.1), not %.40s", te);
    } else {
        int64_t n;
        if (s.cl && tk_parse_int(s.cl, 0, INT64_MAX, &n) == TK_OK && (uint64_t)n > h->o.max_body) {
            /* Answer before reading the body; MHD closes the connection after. */
            tk_err_set(&e, TK_ETOOBIG, "body_too_large",
                       "the request body is %lld bytes; at most %zu are accepted", (long long)n,
                       h->o.max_body);
            tk_reply_error(r, &e, NULL);
            return true;
        }
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
        /* an absolute-form target names the host too (RFC 9112 §3.2.2) */
        char authority[TK_HOST_MAX + 8] = "";
        bool absolute = !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
        bool authority_ok = true;
        if (absolute) {
            const char *a = strstr(url, "://") + 3;
            size_t al = strcspn(a, "/?#");
            authority_ok = al > 0 && al < sizeof authority;
            if (authority_ok) {
                memcpy(authority, a, al);
                authority[al] = '\0';
                authority_ok = tk_host_allowed(&h->hosts, authority);
            } else {
                snprintf(authority, sizeof authority, "(a long or empty name)");
            }
        }
        if (!tk_host_allowed(&h->hosts, host) || !authority_ok) {
            *close = false;
            tk_err_field(&e, TK_EINVAL, "invalid_host", "Host",
                         "this node does not answer for the host %.80s (see allowed_hosts)",
                         authority[0] ? authority : host);
            reply_error_status(r, 421, &e, NULL);
            return true;
        }
        return false;
    }
    reply_error_status(r, 400, &e, NULL);
    return true;
}

/* A chunked body went over max_body: answer 413 on the socket now and let
 * libmicrohttpd close the connection (it cannot queue a reply in the middle
 * of a body), so that the rest is never read. */
static void refuse_body_mid_way(struct tk_http *h, struct tk_req *r)
{
    struct tk_err e;
    tk_err_set(&e, TK_ETOOBIG, "body_too_large",
               "the request body is over %zu bytes, the most accepted", h->o.max_body);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->in->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        if (!h->o.tls) /* raw bytes would break a TLS stream: there, only the close */
            r->in->resp_len = send_raw_error(ci->connect_fd, 413, "Content Too Large", e.code,
                                             e.msg, r->request_id);
        shutdown(ci->connect_fd, SHUT_WR);
    }
    r->in->replied = true;
    r->in->refused = true;
    r->in->status = 413;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    struct tk_http *h = cls;
    struct tk_req *r = *con_cls;
    if (!r) {
        struct conn *cs = conn_of(c);
        if (cs) {
            atomic_store(&cs->body_start_us, tk_mono_us());
            atomic_store(&cs->body_bytes, 0);
        }
        /* from PH_HEAD (or PH_BUSY, should a completion never have come) */
        int ph = cs ? atomic_load(&cs->phase) : PH_HEAD;
        while (cs && ph != PH_CUT && !atomic_compare_exchange_weak(&cs->phase, &ph, PH_BODY)) {
        }
        if (ph == PH_CUT) return MHD_NO; /* cut by the sweeper */
        r = req_new(h, c, url, method);
        r->in->cs = cs;
        *con_cls = r;
        bool close;
        if (refuse_head(h, r, c, url, version, &close)) {
            r->in->refused = true;
            phase_move(cs, PH_BODY, PH_BUSY);
            if (close) tk_reply_header(r, "Connection", "close");
            return queue(r);
        }
        /* No body to come: the wait until libmicrohttpd calls again is the
         * server's (a worker busy with another connection's handler), not a
         * slow client's, so min_body_rate does not apply to it. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding") &&
            (!cl || !strcmp(cl, "0")))
            phase_move(cs, PH_BODY, PH_BUSY);
        return MHD_YES;
    }
    struct conn *cs = r->in->cs;
    if (r->in->off_done && *data_size == 0) { /* resumed by a handler thread: reply built */
        r->in->off_done = false;
        return queue(r);
    }
    if (r->in->park && !r->in->park_applied && *data_size == 0) { /* resumed */
        if (!park_reentry(h, r)) return MHD_YES;
        return queue(r);
    }
    if (r->in->replied) { /* a reply is queued already: discard the rest */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size) {
        if (cs && atomic_load(&cs->phase) == PH_CUT) return MHD_NO;
        r->in->bytes_in += *data_size;
        if (cs) atomic_fetch_add(&cs->body_bytes, *data_size);
        if (tk_buf_add(&r->in->body, data, *data_size) != TK_OK) {
            tk_buf_free_wipe(&r->in->body); /* bodies may carry secrets */
            refuse_body_mid_way(h, r);
            return MHD_NO;
        }
        *data_size = 0;
        return MHD_YES;
    }
    if (cs) {
        int ph = PH_BODY;
        if (!atomic_compare_exchange_strong(&cs->phase, &ph, PH_BUSY) && ph != PH_BUSY)
            return MHD_NO; /* cut by the sweeper */
    }
    r->body = r->in->body.data ? r->in->body.data : "";
    r->body_len = r->in->body.len;
    if (!route_request(h, r)) {
        finish_once(h, r);
        return queue(r);
    }
    if (!(r->route->flags & TK_ROUTE_INLINE)) {
        if (offload(h, r, OFF_DISPATCH)) return MHD_YES; /* suspended until its reply */
        reply_stopping(r);                               /* the pool has stopped */
        finish_once(h, r);
        return queue(r);
    }
    run_route(h, r);
    finish_once(h, r);
    if (r->in->park && !park_after_handler(r, true)) return MHD_YES; /* suspended */
    return queue(r);
}

void tk_req_remote(const struct tk_req *r, char *out, size_t n)
{
    tk_req_peer(r, out, n);
    const struct tk_proxies *p = &r->in->h->proxies;
    if (!n || !out[0] || p->n == 0 || !tk_proxies_has(p, out)) return;
    const char *xff = tk_req_header(r, "X-Forwarded-For");
    if (!xff || count_values(r, MHD_HEADER_KIND, "X-Forwarded-For", true) != 1) return;
    char peer[64];
    snprintf(peer, sizeof peer, "%s", out);
    tk_xff_pick(p, peer, xff, out, n);
}

void tk_req_peer(const struct tk_req *r, char *out, size_t n)
{
    if (!n) return;
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->in->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    /* inet_ntop, not getnameinfo: this is on every request's path (the
     * access log) */
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET && n >= INET_ADDRSTRLEN) {
        /* by hand: glibc's inet_ntop formats IPv4 with sprintf, a sixth of
         * the access log's cost (bench/profile.sh on /health) */
        const unsigned char *o = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        char *w = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = o[i];
            if (i) *w++ = '.';
            if (v >= 100) *w++ = (char)('0' + v / 100);
            if (v >= 10) *w++ = (char)('0' + v / 10 % 10);
            *w++ = (char)('0' + v % 10);
        }
        *w = '\0';
        return;
    }
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
        !inet_ntop(sa->sa_family, a, out, (socklen_t)n))
        out[0] = '\0';
}

/* ---- the access log's budget for refusals ----
 *
 * A refusal is a request answered by a rule before any handler work: the
 * hostile-client rules (400, 413, 421, 403/415 cross-site, 408 cut), no
 * route (404, 405), the authenticate hook's 401 and 429, and a request the
 * client left before its body was in (499). A flood of them costs the
 * client next to nothing, so their lines go through a budget of
 * access_log_refusals_per_s per second of the monotonic clock; those over
 * it are counted by status, and one summary line per second says how many
 * were left out. Every other request is always logged. */

/* Under logmu: end the current second if `second` is another (or if force),
 * writing its summary line if something was left out. */
static void log_budget_roll_locked(struct tk_http *h, int64_t second, bool force)
{
    if (!force && second == h->log_second) return;
    uint64_t total = 0;
    for (int i = 0; i < NSTATUS; i++) total += h->log_left_out[i];
    if (total) {
        char line[1024], at[32], key[24];
        tk_time_fmt(tk_now_ms(), at, sizeof at);
        struct tk_jline j;
        tk_jline_begin(&j, line, sizeof line);
        tk_jline_str(&j, "at", at, SIZE_MAX);
        tk_jline_str(&j, "msg", "access log: refusals over access_log_refusals_per_s not logged",
                     SIZE_MAX);
        tk_jline_int(&j, "suppressed", (long long)total);
        for (int i = 0; i < NSTATUS; i++) {
            if (!h->log_left_out[i]) continue;
            snprintf(key, sizeof key, "status_%s", status_names[i]);
            tk_jline_int(&j, key, (long long)h->log_left_out[i]);
        }
        size_t n = tk_jline_end(&j);
        tk_log_json_line(line, n);
    }
    memset(h->log_left_out, 0, sizeof h->log_left_out);
    h->log_used = 0;
    h->log_second = second;
}

/* The sweeper's call (every SWEEP_EVERY_MS) and the last one at stop, so
 * that a flood's last second is summed up even when nothing follows it. */
static void log_budget_roll(struct tk_http *h, bool force)
{
    pthread_mutex_lock(&h->logmu);
    log_budget_roll_locked(h, tk_mono_us() / 1000000, force);
    pthread_mutex_unlock(&h->logmu);
}

/* Whether the line of this refusal may be written (and counts it). */
static bool log_budget_take(struct tk_http *h, int status)
{
    int per_s = h->o.access_log_refusals_per_s;
    if (per_s <= 0) return true;
    int slot = status_slot(status);
    pthread_mutex_lock(&h->logmu);
    log_budget_roll_locked(h, tk_mono_us() / 1000000, false);
    bool ok = h->log_used < per_s;
    if (ok)
        h->log_used++;
    else
        h->log_left_out[slot]++;
    pthread_mutex_unlock(&h->logmu);
    if (!ok) tk_metric_inc(h->m_suppressed, (size_t)slot);
    return ok;
}

/* The access log line, written by hand into a per-thread buffer (no
 * allocation, no JSON library: it is on every request's path). Every field
 * is bounded, so a line always fits. */
static void access_log(struct tk_http *h, struct tk_req *r, int64_t us)
{
    static _Thread_local char line[1024];
    char addr[64];
    tk_req_remote(r, addr, sizeof addr);
    char at[32];
    tk_time_fmt(tk_now_ms(), at, sizeof at);
    struct tk_jline j;
    tk_jline_begin(&j, line, sizeof line);
    tk_jline_str(&j, "at", at, SIZE_MAX);
    tk_jline_str(&j, "msg", "request", SIZE_MAX);
    tk_jline_str(&j, "method", r->method, 16);
    /* The route pattern always; the path only when a route matched and
     * every parameter is an id tokend made ({id} matches anything, a pasted
     * token too; a 405 has no parameters but its path may hold one). Never
     * the query string. */
    if (r->in->route_index < (int)h->o.nroutes) {
        const struct tk_route *rt = &h->o.routes[r->in->route_index];
        tk_jline_str(&j, "route", rt->pattern, SIZE_MAX);
        bool ids = r->route == rt; /* matched, method too */
        for (int i = 0; ids && i < r->nparams; i++) ids = tk_uuid_valid(r->param_values[i]);
        if (ids) tk_jline_str(&j, "path", r->path, 256);
    } else {
        tk_jline_null(&j, "route");
    }
    tk_jline_int(&j, "status", r->in->status);
    tk_jline_int(&j, "us", us);
    tk_jline_int(&j, "bytes_in", (long long)r->in->bytes_in);
    tk_jline_int(&j, "bytes_out", (long long)r->in->resp_len);
    tk_jline_str(&j, "remote", addr, SIZE_MAX);
    tk_jline_str(&j, "request_id", r->request_id, SIZE_MAX);
    if (r->client_request_id[0]) tk_jline_str(&j, "client_request_id", r->client_request_id, SIZE_MAX);
    size_t n = tk_jline_end(&j);
    tk_log_json_line(line, n);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    struct tk_http *h = cls;
    struct tk_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    finish_once(h, r);
    park_request_done(r);
    struct conn *cs = r->in->cs;
    bool cut = cs && atomic_load(&cs->phase) == PH_CUT;
    if (cs && !cut) {
        /* a kept-alive connection may wait idle_timeout for its next request,
         * whose head then has header_timeout */
        int64_t wait = (int64_t)h->o.idle_timeout + h->o.header_timeout, now = tk_mono_us();
        atomic_store(&cs->head_deadline_us, now + wait * 1000000);
        atomic_store(&cs->head_since_us, now);
        int ph = atomic_load(&cs->phase);
        if (ph != PH_CUT) atomic_compare_exchange_strong(&cs->phase, &ph, PH_HEAD);
    }
    int64_t us = tk_mono_us() - r->in->start_us;
    /* 499: the client went away before the answer; 408: cut as too slow */
    if (!r->in->replied) {
        r->in->status = cut ? 408 : 499;
        r->in->refused = true; /* no handler ran: it would have replied */
    }
    count(h, r->in->route_index, r->in->status, us);
    bool refusal = r->in->refused && r->in->status >= 400 && r->in->status < 500;
    if (h->o.access_log && (!refusal || log_budget_take(h, r->in->status))) access_log(h, r, us);
    free_wiped(r->in->resp);
    tk_buf_free_wipe(&r->in->body); /* bodies may carry secrets */
    tk_metric_gauge_add(h->m_inflight, 0, -1);
    tk_pool_free(r->pool);
}

/* ---- TLS ----
 *
 * GnuTLS calls its callbacks with the session only; libmicrohttpd makes the
 * session's pointer its connection (daemon.c, gnutls_session_set_ptr, for
 * the PSK handler), whose socket context is our registry entry, set when
 * the connection STARTED, before any byte of the handshake is read. */

static struct conn *conn_of_session(gnutls_session_t s)
{
    struct MHD_Connection *c = gnutls_session_get_ptr(s);
    if (!c) return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static int tls_cert_cb(gnutls_session_t s, const struct gnutls_cert_retr_st *info,
                       gnutls_pcert_st **certs, unsigned int *ncerts, gnutls_ocsp_data_st **ocsp,
                       unsigned int *nocsp, gnutls_privkey_t *key, unsigned int *flags)
{
    (void)info;
    *ocsp = NULL;
    *nocsp = 0;
    *flags = 0; /* the pair stays ours: released when the connection is CLOSED */
    struct conn *cs = conn_of_session(s);
    if (!cs || !cs->tls) return GNUTLS_E_INTERNAL_ERROR;
    return tk_tls_select(cs->tls, &cs->tls_pair, certs, ncerts, key);
}

/* The client's Finished is the last message of a handshake it accepted
 * (TLS 1.3, and TLS 1.2 resumed) or the one before ours (TLS 1.2 full):
 * the client has checked our certificate by then. */
static int tls_finished(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                        const gnutls_datum_t *msg)
{
    (void)htype;
    (void)when;
    (void)msg;
    struct conn *cs = incoming ? conn_of_session(s) : NULL;
    if (cs && !atomic_exchange(&cs->tls_done, true)) tk_tls_count_handshake(cs->tls, true);
    return 0;
}

static void tls_watch(struct tk_http *h, struct MHD_Connection *c, struct conn *cs)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return;
    cs->tls = h->o.tls;
    gnutls_handshake_set_hook_function(ci->tls_session, GNUTLS_HANDSHAKE_FINISHED,
                                       GNUTLS_HOOK_POST, tls_finished);
}

/* ---- the connection registry and the sweeper ---- */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct tk_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) return;
        struct conn *cs = tk_calloc(1, sizeof *cs);
        cs->fd = ci->connect_fd;
        atomic_init(&cs->phase, PH_HEAD);
        int64_t now = tk_mono_us();
        atomic_init(&cs->head_deadline_us, now + (int64_t)h->o.header_timeout * 1000000);
        atomic_init(&cs->head_since_us, now);
        atomic_init(&cs->body_start_us, 0);
        atomic_init(&cs->body_bytes, 0);
        atomic_init(&cs->tls_done, false);
        if (h->o.tls) tls_watch(h, c, cs);
        pthread_mutex_lock(&h->mu);
        cs->next = h->conns;
        if (h->conns) h->conns->prev = cs;
        h->conns = cs;
        pthread_mutex_unlock(&h->mu);
        *socket_context = cs;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn *cs = *socket_context;
        if (!cs) return;
        *socket_context = NULL;
        pthread_mutex_lock(&h->mu);
        if (cs->prev) cs->prev->next = cs->next;
        else h->conns = cs->next;
        if (cs->next) cs->next->prev = cs->prev;
        pthread_mutex_unlock(&h->mu);
        if (cs->tls && !atomic_load(&cs->tls_done)) tk_tls_count_handshake(cs->tls, false);
        /* libmicrohttpd has deinitialized the TLS session before it
         * notifies CLOSED (daemon.c, MHD_cleanup_connections, 0.9.75 to
         * 1.0): nothing uses the pair any more */
        tk_tls_release(cs->tls_pair);
        free(cs);
    }
}

enum cut_reason { CUT_HEAD, CUT_BODY, CUT_PRESSURE }; /* the order of cut_names */

/* Under h->mu: the socket is still open (CLOSED takes the lock first). */
static void cut(struct tk_http *h, struct conn *cs, enum cut_reason why)
{
    char msg[224], id[TK_UUID_LEN + 1];
    tk_uuid7(id);
    if (why == CUT_HEAD)
        snprintf(msg, sizeof msg,
                 "the request head did not arrive within %d s (header_timeout); the connection "
                 "is closed",
                 h->o.header_timeout);
    else if (why == CUT_BODY)
        snprintf(msg, sizeof msg,
                 "the request body arrives slower than %d bytes/s (min_body_rate); the "
                 "connection is closed",
                 h->o.min_body_rate);
    else
        snprintf(msg, sizeof msg,
                 "the server is near max_connections (%d) and this connection had no complete "
                 "request within %d ms (or sat idle between requests); it is closed to make "
                 "room, retry",
                 h->o.max_connections, PRESSURE_GRACE_MS);
    if (!cs->tls) /* raw bytes would break a TLS stream: there, only the close */
        (void)send_raw_error(cs->fd, 408, "Request Timeout", "request_timeout", msg, id);
    shutdown(cs->fd, SHUT_RDWR);
    tk_metric_inc(h->m_cut, (size_t)why);
    tk_debug("http: connection cut: %s (request id %s)", cut_names[why], id);
}

#define SWEEP_EVERY_MS 250

/* Bytes the client sent that no worker has read yet: a connection with
 * some is waiting on the server (its worker is busy with another
 * connection's handler, e.g. a store call), not the other way round. */
static bool unread_input(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* A body behind min_body_rate once grace_us have passed since its head. */
static bool body_too_slow(struct tk_http *h, struct conn *cs, int64_t now, int64_t grace_us)
{
    if (h->o.min_body_rate <= 0) return false;
    int64_t el = now - atomic_load(&cs->body_start_us) - grace_us;
    if (el <= 0) return false;
    uint64_t need = (uint64_t)((double)h->o.min_body_rate * (double)el / 1e6);
    return atomic_load(&cs->body_bytes) < need;
}

/* Above this many open connections the server is under pressure. */
static int pressure_mark(const struct tk_http *h)
{
    return h->o.max_connections - h->o.max_connections / 4;
}

struct victim {
    struct conn *cs;
    int ph;
    int64_t since;
};

static int victim_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct victim *)a)->since, y = ((const struct victim *)b)->since;
    return (x > y) - (x < y);
}

/* Under pressure (more than 3/4 of max_connections open), the connections
 * that hold a slot without using it are cut, oldest first, until the count
 * is back at the mark: those with no complete request head PRESSURE_GRACE_MS
 * after they started or after their previous answer (silent, trickling, or
 * idle kept-alive ones), and bodies behind min_body_rate once
 * PRESSURE_GRACE_MS have passed since their head. Otherwise a few addresses
 * holding max_connections idle connections keep every new client waiting
 * until header_timeout, and can do it again at once. */
static void sweep_pressure(struct tk_http *h, int64_t now, int open)
{
    int over = open - pressure_mark(h);
    if (over <= 0) return;
    int64_t grace = (int64_t)PRESSURE_GRACE_MS * 1000;
    struct victim *v = tk_malloc((size_t)open * sizeof *v);
    int nv = 0;
    for (struct conn *cs = h->conns; cs && nv < open; cs = cs->next) {
        int ph = atomic_load(&cs->phase);
        int64_t since;
        if (ph == PH_HEAD)
            since = atomic_load(&cs->head_since_us);
        else if (ph == PH_BODY && body_too_slow(h, cs, now, grace))
            since = atomic_load(&cs->body_start_us);
        else
            continue;
        if (now - since < grace || unread_input(cs->fd)) continue;
        v[nv].cs = cs;
        v[nv].ph = ph;
        v[nv].since = since;
        nv++;
    }
    qsort(v, (size_t)nv, sizeof *v, victim_cmp);
    for (int i = 0; i < nv && over > 0; i++) {
        if (phase_move(v[i].cs, v[i].ph, PH_CUT)) {
            cut(h, v[i].cs, CUT_PRESSURE);
            over--;
        }
    }
    free(v);
}

static void sweep(struct tk_http *h, int64_t now)
{
    int64_t grace = (int64_t)h->o.header_timeout * 1000000;
    int open = 0;
    for (struct conn *cs = h->conns; cs; cs = cs->next) {
        int ph = atomic_load(&cs->phase);
        if (ph == PH_CUT) continue;
        open++;
        if ((ph == PH_HEAD || ph == PH_BODY) && unread_input(cs->fd)) continue;
        if (ph == PH_HEAD && h->o.header_timeout > 0 && now > atomic_load(&cs->head_deadline_us)) {
            if (phase_move(cs, PH_HEAD, PH_CUT)) {
                cut(h, cs, CUT_HEAD);
                open--;
            }
        } else if (ph == PH_BODY && body_too_slow(h, cs, now, grace)) {
            if (phase_move(cs, PH_BODY, PH_CUT)) {
                cut(h, cs, CUT_BODY);
                open--;
            }
        }
    }
    sweep_pressure(h, now, open);
}

static void sweeper_main(struct tk_worker *w, void *arg)
{
    struct tk_http *h = arg;
    while (tk_worker_wait(w, SWEEP_EVERY_MS)) {
        pthread_mutex_lock(&h->mu);
        sweep(h, tk_mono_us());
        pthread_mutex_unlock(&h->mu);
        park_sweep(h);
        log_budget_roll(h, false);
        tk_log_flush(); /* the access log's batched lines */
    }
}

/* ---- odds and ends ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
/* Decode %HH in the path and in query arguments, except %00: a NUL byte
 * would cut the string short, so that "/v1/x/<id>%00junk" acted on <id>.
 * It stays the literal text "%00", which matches no route and no value. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0 && (hi | lo)) {
            *w++ = (char)(hi << 4 | lo);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    tk_debug("http: %s", msg);
}

/* ---- lifecycle ---- */

static tk_rc bind_listen(const char *listen_at, int *fd_out, int *port_out, struct tk_err *e)
{
    char host[128];
    const char *colon = strrchr(listen_at, ':');
    if (!colon) return tk_err_field(e, TK_EINVAL, "invalid_setting", "listen", "listen needs host:port");
    size_t hl = (size_t)(colon - listen_at);
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, listen_at, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (g != 0)
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "listen", "cannot resolve listen address %s: %s",
                            listen_at, gai_strerror(g));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return tk_err_field(e, TK_EUNAVAIL, "listen_failed", "listen", "cannot listen on %s: %s%s", listen_at,
                            strerror(err),
                            err == EADDRINUSE ? " (another tokend running? set --listen)" : "");
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return TK_OK;
}

static void http_free(struct tk_http *h)
{
    if (h->fd >= 0) close(h->fd);
    tk_router_free(h->router);
    tk_metrics_free(h->own_metrics);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->logmu);
    pthread_mutex_destroy(&h->pmu);
    pthread_cond_destroy(&h->pcond);
    free(h->handlers);
    hub_unref(h->hub);
    free(h);
}

/* libmicrohttpd 0.9.75's MHD_quiesce_daemon races with its own worker
 * threads: a worker that wakes between quiesce's "is the listen socket in
 * my epoll set?" and its EPOLL_CTL_DEL has already taken it out (it does so
 * when it sees the quiesce flag, or at its connection limit), quiesce's DEL
 * fails with ENOENT and the library panics: abort() in the middle of a
 * clean stop (seen under a stream flood at SIGTERM). That one failure is
 * harmless -- the socket is out of the set, which is what quiesce wants,
 * and the library marks it so right after the panic call -- so while a
 * quiesce is in progress it is logged and returned from (the library's
 * documentation allows a panic handler to return). Every other panic
 * aborts as before. */
static atomic_int quiescing;

bool tk_http_panic_tolerated(const char *reason, bool in_quiesce, int err)
{
    return in_quiesce && err == ENOENT && reason &&
           strstr(reason, "Failed to remove listen FD from epoll set") != NULL;
}

static void mhd_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
    (void)cls;
    int err = errno;
    if (tk_http_panic_tolerated(reason, atomic_load(&quiescing) > 0, err)) {
        tk_warn("http: libmicrohttpd reported a listen socket already out of a worker's epoll "
                "set while stopping (%s:%u); going on",
                file ? file : "?", line);
        return;
    }
    fprintf(stderr, "tokend: fatal error in libmicrohttpd %s:%u: %s\n", file ? file : "?", line,
            reason ? reason : "(no reason)");
    abort();
}

tk_rc tk_http_start(const struct tk_http_opts *o, struct tk_http **out, struct tk_err *e)
{
    MHD_set_panic_func(mhd_panic, NULL);
    struct tk_http *h = tk_calloc(1, sizeof *h);
    h->o = *o;
    h->o.allowed_hosts = NULL; /* parsed into h->hosts; the caller's string may go */
    h->fd = -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->logmu, NULL);
    pthread_mutex_init(&h->pmu, NULL);
    pthread_cond_init(&h->pcond, NULL);
    atomic_init(&h->pqueued, 0);
    atomic_init(&h->prunning, 0);
    h->hub = hub_new(o->stream_buffer ? o->stream_buffer : 1u << 20,
                     o->max_streams > 0 ? o->max_streams : 64,
                     o->max_parked > 0 ? o->max_parked : 1024);
    h->log_second = tk_mono_us() / 1000000;
    h->o.trusted_proxies = NULL; /* parsed into h->proxies */
    tk_rc rc = tk_proxies_parse(o->trusted_proxies, &h->proxies, e);
    if (rc == TK_OK && o->tls &&
        (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
         MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK2) != MHD_YES))
        rc = tk_err_field(e, TK_EINVAL, "tls_unsupported", "tls_cert_file",
                          "this libmicrohttpd is built without TLS (GnuTLS 3.6.3 or later, for a "
                          "certificate that reloads): HTTPS is not available; install a "
                          "libmicrohttpd with HTTPS support, or leave tls_cert_file unset");
    if (rc == TK_OK) rc = tk_router_new(o->routes, o->nroutes, &h->router, e);
    if (rc == TK_OK) rc = bind_listen(o->listen, &h->fd, &h->port, e);
    if (rc == TK_OK) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(h->fd, (struct sockaddr *)&ss, &sl);
        rc = tk_hostpolicy_init(&h->hosts, (struct sockaddr *)&ss, o->allowed_hosts, e);
        if (rc == TK_OK && !h->hosts.loopback_listener && h->hosts.n == 0)
            tk_warn("http: listening on %s, not a loopback address, with allowed_hosts empty: "
                    "any Host is answered, so a web page whose name resolves to this node (DNS "
                    "rebinding) can call the API from a browser here, /v1/sys/init included; "
                    "set allowed_hosts to the names clients use",
                    o->listen);
        if (rc == TK_OK && !h->hosts.loopback_listener && !o->tls)
            tk_warn("SECURITY WARNING: listening on %s, not a loopback address, WITHOUT TLS: "
                    "operator tokens, client tokens and every secret the API hands out cross "
                    "the network in clear text; set tls_cert_file and tls_key_file, or listen "
                    "on loopback behind a TLS-terminating proxy",
                    o->listen);
    }
    if (rc == TK_OK) {
        if (!o->metrics) h->own_metrics = tk_metrics_new();
        rc = metrics_register(h, o->metrics ? o->metrics : h->own_metrics, e);
    }
    if (rc == TK_OK) rc = pool_start(h, e);
    if (rc != TK_OK) {
        pool_stop(h);
        http_free(h);
        return rc;
    }
    /* suspend/resume: parked requests and idle streams hold no worker */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TK_TLS_PRIORITIES},
        {MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, (void *)tls_cert_cb},
        {MHD_OPTION_END, 0, NULL},
    };
    if (o->tls) flags |= MHD_USE_TLS;
    else tls_opts[0].option = MHD_OPTION_END;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)o->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o->max_header,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, h, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!h->d) {
        pool_stop(h);
        http_free(h);
        return tk_err_set(e, TK_EINTERNAL, "http_start_failed",
                          "libmicrohttpd refused to start (threads=%d, max_connections=%d%s)",
                          o->threads, o->max_connections,
                          o->tls ? ", TLS: is libmicrohttpd built with GnuTLS?" : "");
    }
    struct tk_err we;
    if (tk_worker_start(&h->sweeper, "connection sweeper", sweeper_main, h, &we) != TK_OK) {
        pool_stop(h);
        MHD_stop_daemon(h->d);
        http_free(h);
        return tk_err_set(e, TK_EINTERNAL, "http_start_failed", "%s", we.msg);
    }
    *out = h;
    return TK_OK;
}

int tk_http_port(const struct tk_http *h)
{
    return h->port;
}

void tk_http_quiesce(struct tk_http *h)
{
    park_stop_all(h);
    streams_stop_all(h);
    if (h->quiesced) return;
    atomic_fetch_add(&quiescing, 1);
    int fd = MHD_quiesce_daemon(h->d);
    atomic_fetch_sub(&quiescing, 1);
    /* Refuse new connections now, but close the descriptor only after
     * MHD_stop_daemon (http_free): a worker thread may still take it out
     * of its epoll set, and libmicrohttpd panics if that fails with EBADF
     * ("Failed to remove listen FD from epoll set"). */
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
    h->fd = fd;
    h->quiesced = true;
}

bool tk_http_drain(struct tk_http *h, int timeout_ms)
{
    int64_t end = tk_mono_us() + (int64_t)timeout_ms * 1000;
    while (tk_metric_gauge_get(h->m_inflight, 0) > 0) {
        if (tk_mono_us() >= end) return false;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return true;
}

void tk_http_stop(struct tk_http *h)
{
    if (!h) return;
    tk_worker_stop(&h->sweeper, 0);
    /* libmicrohttpd panics on a suspended connection at stop: answer every
     * parked request and end every stream first (both resume theirs). */
    park_stop_all(h);
    streams_stop_all(h);
    /* and every request handed to a handler thread resumed (pool_stop) */
    pool_stop(h);
    /* Closes every connection, whatever its client does: sockets are
     * non-blocking, and no handler waits without a deadline. */
    MHD_stop_daemon(h->d);
    if (!h->quiesced) h->fd = -1; /* libmicrohttpd closed it */
    log_budget_roll(h, true); /* the last second's summary */
    tk_log_flush();
    http_free(h);
}

/* ---- parked requests ----
 *
 * A parked request moves PARKING (its handler still runs) -> PARKED (the
 * handler returned; libmicrohttpd suspended the connection) -> ANSWERED,
 * all under hub->mu. Whoever answers first (tk_parked_resume*, the
 * deadline in the sweeper, park_stop_all) stores the answer in the
 * struct tk_parked, never in the request (whose pool belongs to the HTTP
 * thread), and resumes the connection if it is suspended; libmicrohttpd
 * then calls the access handler again on one of its threads, which builds
 * the reply from the stored answer (park_reentry) and queues it. An answer
 * that comes while PARKING is picked up when the handler returns, without
 * suspending: MHD_resume_connection on a connection not suspended is
 * undefined (and in 0.9.75 makes the next suspend a no-op).
 *
 * A suspended connection is not polled: libmicrohttpd neither times it out
 * nor sees its client leave (daemon.c, internal_suspend_connection_ takes
 * it off the timeout and epoll lists). So the connection, the request and
 * its pool stay valid until it is resumed, and only then can the client's
 * departure be seen: the resumed connection is processed, the write fails,
 * and on_completed (notify completed, TERMINATED_WITH_ERROR) frees the
 * request. The struct tk_parked itself is refcounted (the request and the
 * holder), so a holder that resumes late finds it answered, never freed.
 * MHD_stop_daemon panics on a suspended connection ("called while we have
 * suspended connections"), so quiesce and stop answer every parked request
 * first; libmicrohttpd's shutdown forces the pending resumes through.
 */

enum { PK_PARKING, PK_PARKED, PK_ANSWERED };
enum { ANS_JSON, ANS_FN, ANS_ERROR };

struct tk_parked {
    struct tk_parked *prev, *next; /* hub->parked while not answered */
    struct hub *hub;
    struct MHD_Connection *conn;
    atomic_int refs;
    int state;
    bool linked;
    atomic_bool answered;
    int64_t timeout_ms, deadline_us;
    /* the answer */
    int kind, status;
    char *text;
    size_t len;
    tk_resume_fn fn;
    void *arg;
    tk_rc rc;
    char code[32];
    char msg[200];
};

static struct hub *hub_new(size_t stream_buffer, int max_streams, int max_parked)
{
    struct hub *hub = tk_calloc(1, sizeof *hub);
    atomic_init(&hub->refs, 1);
    pthread_mutex_init(&hub->mu, NULL);
    pthread_mutex_init(&hub->smu, NULL);
    hub->stream_buffer = stream_buffer;
    hub->max_streams = max_streams;
    hub->max_parked = max_parked;
    return hub;
}

static void hub_unref(struct hub *hub)
{
    if (!hub || atomic_fetch_sub(&hub->refs, 1) != 1) return;
    pthread_mutex_destroy(&hub->mu);
    pthread_mutex_destroy(&hub->smu);
    free(hub);
}

static void park_unref(struct tk_parked *p)
{
    if (atomic_fetch_sub(&p->refs, 1) != 1) return;
    free_wiped(p->text);
    hub_unref(p->hub);
    free(p);
}

struct tk_parked *tk_req_park(struct tk_req *r, int64_t timeout_ms)
{
    struct tk_req_internal *in = r->in;
    if (in->replied || in->park || in->stream) {
        tk_error("http: %s %s parked a request that has a reply already (a handler bug)",
                 r->method, r->path);
        return NULL;
    }
    struct hub *hub = in->h->hub;
    if (timeout_ms < 1) timeout_ms = 1;
    if (timeout_ms > 3600 * 1000) timeout_ms = 3600 * 1000;
    struct tk_parked *p = tk_calloc(1, sizeof *p);
    atomic_init(&p->refs, 2); /* the request, the holder */
    atomic_fetch_add(&hub->refs, 1);
    p->hub = hub;
    p->conn = in->conn;
    p->timeout_ms = timeout_ms;
    p->deadline_us = tk_mono_us() + timeout_ms * 1000;
    in->park = p;
    pthread_mutex_lock(&hub->mu);
    atomic_fetch_add(&hub->parked_total, 1);
    if (hub->park_stopping) {
        p->state = PK_ANSWERED;
        p->kind = ANS_ERROR;
        p->status = 503;
        p->rc = TK_EUNAVAIL;
        snprintf(p->code, sizeof p->code, "node_stopping");
        snprintf(p->msg, sizeof p->msg, "the node is stopping; retry on another node or later");
        atomic_store(&p->answered, true);
        atomic_fetch_add(&hub->parked_stopped, 1);
    } else if (atomic_load(&hub->parked_now) >= (uint_fast64_t)hub->max_parked) {
        /* a backstop against a flood of parks (each holds a connection and
         * memory until its deadline): refuse at once rather than pile up */
        p->state = PK_ANSWERED;
        p->kind = ANS_ERROR;
        p->status = 503;
        p->rc = TK_EUNAVAIL;
        snprintf(p->code, sizeof p->code, "too_many_parked");
        snprintf(p->msg, sizeof p->msg,
                 "this node already holds %d requests waiting for work (max_parked); retry later",
                 hub->max_parked);
        atomic_store(&p->answered, true);
        atomic_fetch_add(&hub->parked_refused, 1);
    } else {
        p->state = PK_PARKING;
        p->linked = true;
        p->next = hub->parked;
        if (hub->parked) hub->parked->prev = p;
        hub->parked = p;
        atomic_fetch_add(&hub->parked_now, 1);
    }
    pthread_mutex_unlock(&hub->mu);
    return p;
}

/* Under hub->mu: take the answer if none was given yet. The answer's
 * fields are set by the caller after a true return, still under the lock;
 * the resume happens in park_answered. */
static bool park_claim(struct tk_parked *p)
{
    if (p->state == PK_ANSWERED) return false;
    if (p->linked) {
        struct hub *hub = p->hub;
        if (p->prev) p->prev->next = p->next;
        else hub->parked = p->next;
        if (p->next) p->next->prev = p->prev;
        p->prev = p->next = NULL;
        p->linked = false;
        atomic_fetch_sub(&hub->parked_now, 1);
    }
    return true;
}

/* Under hub->mu, after park_claim and the answer's fields are set. */
static void park_answered(struct tk_parked *p)
{
    bool suspended = p->state == PK_PARKED;
    p->state = PK_ANSWERED;
    atomic_store(&p->answered, true);
    /* Suspended, the connection cannot have been closed: p->conn is valid. */
    if (suspended) MHD_resume_connection(p->conn);
}

static void park_error_locked(struct tk_parked *p, int status, tk_rc rc, const char *code,
                              const char *msg)
{
    p->kind = ANS_ERROR;
    p->status = status;
    p->rc = rc;
    snprintf(p->code, sizeof p->code, "%s", code);
    snprintf(p->msg, sizeof p->msg, "%s", msg);
    park_answered(p);
}

bool tk_parked_resume(struct tk_parked *p, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (body && !text) { /* not JSON (invalid UTF-8): a bug, answered as one */
        return tk_parked_resume_with(p, NULL, NULL);
    }
    struct hub *hub = p->hub;
    pthread_mutex_lock(&hub->mu);
    bool won = park_claim(p);
    if (won) {
        size_t n = text ? strlen(text) : 2;
        p->kind = ANS_JSON;
        p->status = status;
        p->text = tk_malloc(n + 2);
        memcpy(p->text, text ? text : "{}", n);
        p->text[n++] = '\n';
        p->text[n] = '\0';
        p->len = n;
        park_answered(p);
    }
    pthread_mutex_unlock(&hub->mu);
    if (text) {
        tk_wipe(text, strlen(text));
        free(text);
    }
    park_unref(p);
    return won;
}

bool tk_parked_resume_with(struct tk_parked *p, tk_resume_fn fn, void *arg)
{
    struct hub *hub = p->hub;
    pthread_mutex_lock(&hub->mu);
    bool won = park_claim(p);
    if (won && fn) {
        p->kind = ANS_FN;
        p->fn = fn;
        p->arg = arg;
        park_answered(p);
    } else if (won) {
        park_error_locked(p, 500, TK_EINTERNAL, "internal",
                          "the answer to the parked request could not be encoded as JSON");
    }
    pthread_mutex_unlock(&hub->mu);
    park_unref(p);
    return won;
}

void tk_parked_release(struct tk_parked *p)
{
    if (p) park_unref(p);
}

bool tk_parked_answered(const struct tk_parked *p)
{
    return atomic_load(&p->answered);
}

/* On the HTTP thread: build the reply from the stored answer. */
static void park_apply(struct tk_http *h, struct tk_req *r)
{
    struct tk_parked *p = r->in->park;
    struct tk_err e;
    r->in->park_applied = true;
    r->in->applying = true;
    if (p->kind == ANS_JSON) {
        tk_reply_text(r, p->status, "application/json", p->text, p->len);
    } else if (p->kind == ANS_FN) {
        r->in->finished = false; /* fn may take r->db: give it back after */
        p->fn(r, p->arg);
        if (!r->in->replied) {
            tk_error("http: the resume callback of %s %s did not reply", r->method, r->path);
            tk_err_set(&e, TK_EINTERNAL, "internal", "the parked request's answer was not built");
            tk_reply_error(r, &e, NULL);
        }
        finish_once(h, r);
    } else {
        tk_err_set(&e, p->rc, p->code, "%s", p->msg);
        if (p->status == 503) tk_reply_header(r, "Retry-After", "1");
        reply_error_status(r, p->status, &e, NULL);
    }
    r->in->applying = false;
}

/* After the handler parked r (and the finish hook ran): suspend (unless a
 * handler thread ran it: the connection is suspended already), unless it
 * was answered meanwhile. true: the answer is built, queue it. */
static bool park_after_handler(struct tk_req *r, bool suspend)
{
    struct tk_parked *p = r->in->park;
    struct hub *hub = p->hub;
    pthread_mutex_lock(&hub->mu);
    if (p->state == PK_PARKING) {
        if (suspend) MHD_suspend_connection(r->in->conn);
        p->state = PK_PARKED;
        pthread_mutex_unlock(&hub->mu);
        return false;
    }
    pthread_mutex_unlock(&hub->mu);
    park_apply(r->in->h, r);
    return true;
}

/* The access handler called again after a resume: true when the reply is
 * built (queue it). An answer that runs the app's code (a resume callback,
 * a tk_req_call hook) is built on a handler thread unless the route is
 * TK_ROUTE_INLINE: false, the connection suspended again until then. */
static bool park_reentry(struct tk_http *h, struct tk_req *r)
{
    struct tk_parked *p = r->in->park;
    pthread_mutex_lock(&p->hub->mu);
    bool answered = p->state == PK_ANSWERED;
    bool app_code = answered && (p->kind == ANS_FN || r->in->hook);
    pthread_mutex_unlock(&p->hub->mu);
    if (!answered) return false;
    if (app_code && !(r->route->flags & TK_ROUTE_INLINE) && offload(h, r, OFF_APPLY)) return false;
    park_apply(h, r);
    return true;
}

/* on_completed: the request is over; drop its reference. */
static void park_request_done(struct tk_req *r)
{
    struct tk_parked *p = r->in->park;
    if (!p) return;
    r->in->park = NULL;
    pthread_mutex_lock(&p->hub->mu);
    if (park_claim(p)) { /* never answered (cannot happen while suspended) */
        p->state = PK_ANSWERED;
        atomic_store(&p->answered, true);
    }
    pthread_mutex_unlock(&p->hub->mu);
    park_unref(p);
}

/* The sweeper's round: answer 504 what is past its deadline. */
static void park_sweep(struct tk_http *h)
{
    struct hub *hub = h->hub;
    int64_t now = tk_mono_us();
    pthread_mutex_lock(&hub->mu);
    struct tk_parked *next;
    for (struct tk_parked *p = hub->parked; p; p = next) {
        next = p->next;
        if (now < p->deadline_us || !park_claim(p)) continue;
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the request waited %lld ms, its deadline, for work done elsewhere (an "
                 "upstream call, a hash) and was not answered in time",
                 (long long)p->timeout_ms);
        park_error_locked(p, 504, TK_EUNAVAIL, "parked_timeout", msg);
        atomic_fetch_add(&hub->parked_timeouts, 1);
    }
    pthread_mutex_unlock(&hub->mu);
}

static void park_stop_all(struct tk_http *h)
{
    struct hub *hub = h->hub;
    pthread_mutex_lock(&hub->mu);
    hub->park_stopping = true;
    while (hub->parked) {
        struct tk_parked *p = hub->parked;
        park_claim(p);
        park_error_locked(p, 503, TK_EUNAVAIL, "node_stopping",
                          "the node is stopping; retry on another node or later");
        atomic_fetch_add(&hub->parked_stopped, 1);
    }
    pthread_mutex_unlock(&hub->mu);
}

/* ---- streams ----
 *
 * The response is libmicrohttpd's callback kind (unknown size: chunked on
 * HTTP/1.1). Its reader (stream_read) hands out what is buffered; with
 * nothing buffered it suspends the connection (allowed from a content
 * reader) and returns 0, and tk_stream_write resumes it. Suspended and
 * resumed under s->mu, so a write never misses a suspend. The response's
 * free callback (stream_gone, when libmicrohttpd destroys the response,
 * that is when the connection is closed) marks the stream gone: from then
 * on s->conn is never used. A suspended connection is never closed, so
 * s->conn is valid whenever s->suspended is true.
 */

struct tk_stream {
    struct tk_stream *prev, *next; /* hub->streams (under hub->smu) */
    struct hub *hub;
    struct MHD_Connection *conn;
    pthread_mutex_t mu;
    atomic_int refs; /* the holder, the response */
    char *buf;
    size_t off, len, cap, max;
    bool suspended, closed, cut, gone;
};

static void stream_unref(struct tk_stream *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    hub_unref(s->hub);
    free(s);
}

/* Under s->mu. */
static void stream_wake(struct tk_stream *s)
{
    if (!s->suspended) return;
    s->suspended = false;
    MHD_resume_connection(s->conn);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct tk_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    ssize_t ret;
    if (s->cut) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (s->len > s->off) {
        size_t n = s->len - s->off;
        if (n > max) n = max;
        memcpy(buf, s->buf + s->off, n);
        s->off += n;
        if (s->off == s->len) s->off = s->len = 0;
        ret = (ssize_t)n;
    } else if (s->closed) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        MHD_suspend_connection(s->conn);
        s->suspended = true;
        ret = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static void stream_gone(void *cls)
{
    struct tk_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->gone = true;
    s->suspended = false;
    pthread_mutex_unlock(&s->mu);
    struct hub *hub = s->hub;
    pthread_mutex_lock(&hub->smu);
    if (s->prev) s->prev->next = s->next;
    else hub->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    hub->streams_open--;
    pthread_mutex_unlock(&hub->smu);
    stream_unref(s);
}

void tk_req_stream_refused(struct tk_req *r)
{
    atomic_fetch_add(&r->in->h->hub->streams_refused, 1);
}

struct tk_stream *tk_reply_stream(struct tk_req *r)
{
    struct tk_req_internal *in = r->in;
    struct hub *hub = in->h->hub;
    struct tk_err e;
    if (in->replied || in->park) {
        tk_error("http: %s %s started a stream on a request that has a reply (a handler bug)",
                 r->method, r->path);
        return NULL;
    }
    pthread_mutex_lock(&hub->smu);
    bool stopping = hub->streams_stopping, full = hub->streams_open >= hub->max_streams;
    if (stopping || full) {
        pthread_mutex_unlock(&hub->smu);
        atomic_fetch_add(&hub->streams_refused, 1);
        tk_reply_header(r, "Retry-After", stopping ? "1" : "5");
        if (stopping)
            tk_err_set(&e, TK_EUNAVAIL, "node_stopping", "the node is stopping; retry on another node or later");
        else
            tk_err_set(&e, TK_EUNAVAIL, "too_many_streams",
                       "this node already serves %d streams (max_streams); retry later or on "
                       "another node",
                       hub->max_streams);
        reply_error_status(r, 503, &e, NULL);
        return NULL;
    }
    struct tk_stream *s = tk_calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->refs, 2);
    atomic_fetch_add(&hub->refs, 1);
    s->hub = hub;
    s->conn = in->conn;
    s->max = hub->stream_buffer;
    s->next = hub->streams;
    if (hub->streams) hub->streams->prev = s;
    hub->streams = s;
    hub->streams_open++;
    atomic_fetch_add(&hub->streams_total, 1);
    pthread_mutex_unlock(&hub->smu);
    /* The kernel's send buffer is part of what a stream buffers for its
     * reader: keep it small too (events are small; 64 KiB in flight is
     * plenty), so that a reader that stops is seen stopping. */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(in->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        int sb = hub->stream_buffer < (64u << 10) ? (int)hub->stream_buffer : 64 << 10;
        if (sb < 8192) sb = 8192;
        setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
    }
    in->stream = s;
    in->replied = true;
    in->status = 200;
    in->ctype = "text/event-stream";
    return s;
}

static enum MHD_Result queue_stream(struct tk_req *r)
{
    struct tk_req_internal *in = r->in;
    struct tk_stream *s = in->stream;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_gone);
    if (!resp) {
        stream_gone(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "X-Request-Id", echoed_id(r));
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    for (struct hdr *hd = in->headers; hd; hd = hd->next)
        MHD_add_response_header(resp, hd->name, hd->value);
    enum MHD_Result ret = MHD_queue_response(in->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Under s->mu: append, growing the buffer up to s->max (force: past it). */
static bool stream_append(struct tk_stream *s, const char *data, size_t n, bool force)
{
    size_t queued = s->len - s->off;
    if (!force && queued + n > s->max) return false;
    if (s->off && s->len + n > s->cap) {
        memmove(s->buf, s->buf + s->off, queued);
        s->off = 0;
        s->len = queued;
    }
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n) cap *= 2;
        s->buf = realloc(s->buf, cap);
        if (!s->buf) tk_fatal("out of memory");
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return true;
}

tk_rc tk_stream_write(struct tk_stream *s, const char *data, size_t len)
{
    pthread_mutex_lock(&s->mu);
    tk_rc rc = TK_OK;
    if (s->cut || s->gone || s->closed) {
        rc = TK_EUNAVAIL;
    } else if (!stream_append(s, data, len, false)) {
        /* a reader that does not keep up: cut, not buffered without end */
        s->cut = true;
        s->off = s->len = 0;
        atomic_fetch_add(&s->hub->streams_cut, 1);
        rc = TK_ETOOBIG;
    }
    stream_wake(s);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t tk_stream_pending(struct tk_stream *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->len - s->off;
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool tk_stream_alive(struct tk_stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool alive = !s->cut && !s->gone && !s->closed;
    pthread_mutex_unlock(&s->mu);
    return alive;
}

void tk_stream_close(struct tk_stream *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    if (!s->gone) stream_wake(s);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

static void streams_stop_all(struct tk_http *h)
{
    static const char end[] = "event: end\ndata: {\"reason\":\"node_stopping\"}\n\n";
    struct hub *hub = h->hub;
    pthread_mutex_lock(&hub->smu);
    hub->streams_stopping = true;
    for (struct tk_stream *s = hub->streams; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        if (!s->closed && !s->cut && !s->gone) {
            stream_append(s, end, sizeof end - 1, true);
            s->closed = true;
        }
        if (!s->gone) stream_wake(s);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&hub->smu);
}

void tk_http_park_stats(struct tk_http *h, struct tk_http_park_stats *out)
{
    struct hub *hub = h->hub;
    memset(out, 0, sizeof *out);
    /* under the lock that every change of these takes: one consistent
     * snapshot, so that the answered count derived from it never goes back */
    pthread_mutex_lock(&hub->mu);
    out->parked_now = atomic_load(&hub->parked_now);
    out->parked_total = atomic_load(&hub->parked_total);
    out->parked_timeouts = atomic_load(&hub->parked_timeouts);
    out->parked_stopped = atomic_load(&hub->parked_stopped);
    out->parked_refused = atomic_load(&hub->parked_refused);
    pthread_mutex_unlock(&hub->mu);
    out->parked_answered = out->parked_total - out->parked_now - out->parked_timeouts -
                           out->parked_stopped - out->parked_refused;
    pthread_mutex_lock(&hub->smu);
    out->streams_open = (uint64_t)hub->streams_open;
    pthread_mutex_unlock(&hub->smu);
    out->streams_total = atomic_load(&hub->streams_total);
    out->streams_cut = atomic_load(&hub->streams_cut);
    out->streams_refused = atomic_load(&hub->streams_refused);
}

/* ---- the handler pool ----
 *
 * libmicrohttpd serves every connection on the thread that accepted it, so
 * a handler that waits (SQLite's busy_timeout, a PostgreSQL row lock: up to
 * 5 s) held up every other connection of its thread, /health and /ready
 * included, and enough of them held up every thread. So the HTTP threads
 * only read, route and write: the app's code for a route without
 * TK_ROUTE_INLINE (gate, authenticate, handler, finish, and a parked
 * request's resume callback or tk_req_call hook) runs on a handler thread.
 * The access handler suspends the connection and queues the request
 * (offload, under pmu, so no handler thread can resume it before it is
 * suspended); a handler thread runs it with the connection suspended
 * (nothing else touches the request: libmicrohttpd does not process a
 * suspended connection, whose headers, arguments and address stay as they
 * are), sets off_done and resumes it; libmicrohttpd calls the access
 * handler again on the connection's thread, which queues the reply. A
 * handler that parks leaves the connection suspended for its answer, which
 * resumes it as before. At tk_http_stop (after quiesce and drain) the pool
 * stops: requests still queued are answered 503 node_stopping without
 * running, the running ones finish, and the threads are joined before
 * libmicrohttpd stops (it panics on a suspended connection). */

static void reply_stopping(struct tk_req *r)
{
    struct tk_err e;
    tk_err_set(&e, TK_EUNAVAIL, "node_stopping",
               "the node is stopping; retry on another node or later");
    tk_reply_header(r, "Retry-After", "1");
    reply_error_status(r, 503, &e, NULL);
}

/* Hand r to the handler pool, its connection suspended until the job
 * resumes it; from the access handler. false when the pool has stopped
 * (nothing is done). */
static bool offload(struct tk_http *h, struct tk_req *r, int what)
{
    pthread_mutex_lock(&h->pmu);
    if (h->pstopping) {
        pthread_mutex_unlock(&h->pmu);
        return false;
    }
    MHD_suspend_connection(r->in->conn);
    r->in->off_what = what;
    r->in->off_next = NULL;
    if (h->qtail)
        h->qtail->in->off_next = r;
    else
        h->qhead = r;
    h->qtail = r;
    atomic_fetch_add(&h->pqueued, 1);
    pthread_cond_signal(&h->pcond);
    pthread_mutex_unlock(&h->pmu);
    return true;
}

/* On a handler thread, the connection suspended. r is not to be touched
 * after the resume: the HTTP thread owns it again. */
static void offload_run(struct tk_http *h, struct tk_req *r, bool stopping)
{
    struct tk_req_internal *in = r->in;
    if (in->off_what == OFF_DISPATCH) {
        if (stopping)
            reply_stopping(r);
        else
            run_route(h, r);
        finish_once(h, r);
        /* parked: the connection stays suspended until its answer */
        if (in->park && !park_after_handler(r, false)) return;
    } else {
        park_apply(h, r);
    }
    in->off_done = true;
    MHD_resume_connection(in->conn);
}

static void *handler_main(void *arg)
{
    struct tk_http *h = arg;
    pthread_mutex_lock(&h->pmu);
    for (;;) {
        while (!h->qhead && !h->pstopping)
            pthread_cond_wait(&h->pcond, &h->pmu);
        struct tk_req *r = h->qhead;
        if (!r) break; /* stopping, and nothing left */
        h->qhead = r->in->off_next;
        if (!h->qhead) h->qtail = NULL;
        bool stopping = h->pstopping;
        atomic_fetch_sub(&h->pqueued, 1);
        atomic_fetch_add(&h->prunning, 1);
        pthread_mutex_unlock(&h->pmu);
        offload_run(h, r, stopping);
        atomic_fetch_sub(&h->prunning, 1);
        pthread_mutex_lock(&h->pmu);
    }
    pthread_mutex_unlock(&h->pmu);
    return NULL;
}

static tk_rc pool_start(struct tk_http *h, struct tk_err *e)
{
    int n = h->o.handler_threads > 0 ? h->o.handler_threads : 2 * h->o.threads;
    if (n < 1) n = 1;
    h->handlers = tk_calloc((size_t)n, sizeof *h->handlers);
    for (; h->nhandlers < n; h->nhandlers++) {
        int err = tk_thread_create(&h->handlers[h->nhandlers], handler_main, h);
        if (err != 0)
            return tk_err_set(e, TK_EINTERNAL, "http_start_failed",
                              "cannot start handler thread %d of %d: %s", h->nhandlers + 1, n,
                              strerror(err));
    }
    return TK_OK;
}

/* Answer what is queued (503), let the running ones finish, join. */
static void pool_stop(struct tk_http *h)
{
    pthread_mutex_lock(&h->pmu);
    h->pstopping = true;
    pthread_cond_broadcast(&h->pcond);
    pthread_mutex_unlock(&h->pmu);
    for (int i = 0; i < h->nhandlers; i++)
        pthread_join(h->handlers[i], NULL);
    h->nhandlers = 0;
    free(h->handlers);
    h->handlers = NULL;
}

static double m_handlers(void *arg, size_t idx)
{
    struct tk_http *h = arg;
    return (double)(idx == 0 ? atomic_load(&h->pqueued) : atomic_load(&h->prunning));
}

static tk_rc pool_metrics_register(struct tk_http *h, struct tk_metrics *reg, struct tk_err *e)
{
    static const char *const states[] = {"queued", "running"};
    static const struct tk_dim state = {"state", states, 2, NULL, NULL};
    return tk_metric_gauge_fn(reg, "tokend_http_handlers",
                              "Requests waiting for a handler thread (queued) and being handled "
                              "on one (running).",
                              &state, 1, m_handlers, h, e)
               ? TK_OK
           : e ? e->rc
               : TK_EINVAL;
}
