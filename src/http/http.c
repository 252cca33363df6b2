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
#include "../common/worker.h"

#include <arpa/inet.h>
#include <errno.h>
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

static const int status_slots[] = {200, 201, 202, 204, 302, 303, 304, 400, 401, 403, 404, 405, 408,
                                   409, 413, 415, 421, 429, 431, 499, 500, 502, 503, 0 /* other */};
#define NSTATUS ((int)TK_NELEM(status_slots))
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
#define NBUCKETS ((int)TK_NELEM(buckets))

struct route_metrics {
    atomic_uint_fast64_t by_status[NSTATUS];
    atomic_uint_fast64_t bucket[NBUCKETS + 1];
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t count;
};

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
};

struct tk_http {
    struct MHD_Daemon *d;
    struct tk_http_opts o;
    struct tk_router *router;
    struct tk_hostpolicy hosts;
    struct tk_proxies proxies; /* trusted_proxies */
    int fd;
    int port;
    atomic_int inflight;
    struct route_metrics *metrics; /* nroutes + 1: the last is "no route" */
    atomic_uint_fast64_t cut_head, cut_body, cut_pressure;
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
    atomic_uint_fast64_t log_suppressed[NSTATUS]; /* since start, for /metrics */
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
};

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
    if (in->replied) {
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
    return MHD_lookup_connection_value(r->in->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *tk_req_header(const struct tk_req *r, const char *name)
{
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
    return count_values(r, MHD_GET_ARGUMENT_KIND, name, false);
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
        tk_err_set(&e, TK_EINVAL, "invalid_json", "the body is not valid JSON: %s at line %d column %d",
                   je.text, je.line, je.column);
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

static void status_name(int slot, char *out, size_t n)
{
    if (status_slots[slot])
        snprintf(out, n, "%d", status_slots[slot]);
    else
        snprintf(out, n, "other");
}

static void count(struct tk_http *h, int route, int status, int64_t us)
{
    struct route_metrics *m = &h->metrics[route];
    atomic_fetch_add_explicit(&m->by_status[status_slot(status)], 1, memory_order_relaxed);
    double s = (double)us / 1e6;
    int b = 0;
    while (b < NBUCKETS && s > buckets[b]) b++;
    atomic_fetch_add_explicit(&m->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us, (uint_fast64_t)us, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

void tk_http_metrics(struct tk_http *h, struct tk_buf *out)
{
    tk_buf_addstr(out, "# HELP tokend_http_requests_total HTTP requests answered, by route "
                       "and status.\n# TYPE tokend_http_requests_total counter\n");
    for (size_t i = 0; i <= h->o.nroutes; i++) {
        const char *method = i < h->o.nroutes ? h->o.routes[i].method : "";
        const char *pat = i < h->o.nroutes ? h->o.routes[i].pattern : "none";
        for (int s = 0; s < NSTATUS; s++) {
            uint64_t n = atomic_load(&h->metrics[i].by_status[s]);
            if (!n) continue;
            char st[8];
            if (status_slots[s])
                snprintf(st, sizeof st, "%d", status_slots[s]);
            else
                snprintf(st, sizeof st, "other");
            tk_buf_printf(out,
                          "tokend_http_requests_total{method=\"%s\",route=\"%s\",status=\"%s\"} "
                          "%llu\n",
                          method, pat, st, (unsigned long long)n);
        }
    }
    tk_buf_addstr(out, "# HELP tokend_http_request_duration_seconds Time from headers to "
                       "response, by route.\n# TYPE tokend_http_request_duration_seconds "
                       "histogram\n");
    for (size_t i = 0; i <= h->o.nroutes; i++) {
        struct route_metrics *m = &h->metrics[i];
        uint64_t total = atomic_load(&m->count);
        if (!total) continue;
        const char *method = i < h->o.nroutes ? h->o.routes[i].method : "";
        const char *pat = i < h->o.nroutes ? h->o.routes[i].pattern : "none";
        uint64_t cum = 0;
        for (int b = 0; b <= NBUCKETS; b++) {
            cum += atomic_load(&m->bucket[b]);
            char le[16];
            if (b < NBUCKETS)
                snprintf(le, sizeof le, "%g", buckets[b]);
            else
                snprintf(le, sizeof le, "+Inf");
            tk_buf_printf(out,
                          "tokend_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                          "le=\"%s\"} %llu\n",
                          method, pat, le, (unsigned long long)cum);
        }
        tk_buf_printf(out,
                      "tokend_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
                      "tokend_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} "
                      "%llu\n",
                      method, pat, (double)atomic_load(&m->sum_us) / 1e6, method, pat,
                      (unsigned long long)total);
    }
    tk_buf_printf(out,
                  "# HELP tokend_http_connections_cut_total Connections closed as too slow: "
                  "a late request head (header_timeout), a slow body (min_body_rate), or no "
                  "complete request within a second while near max_connections (pressure).\n"
                  "# TYPE tokend_http_connections_cut_total counter\n"
                  "tokend_http_connections_cut_total{reason=\"header_timeout\"} %llu\n"
                  "tokend_http_connections_cut_total{reason=\"min_body_rate\"} %llu\n"
                  "tokend_http_connections_cut_total{reason=\"pressure\"} %llu\n",
                  (unsigned long long)atomic_load(&h->cut_head),
                  (unsigned long long)atomic_load(&h->cut_body),
                  (unsigned long long)atomic_load(&h->cut_pressure));
    tk_buf_addstr(out, "# HELP tokend_http_access_log_suppressed_total Access log lines left out "
                       "for refusals over access_log_refusals_per_s, by status.\n"
                       "# TYPE tokend_http_access_log_suppressed_total counter\n");
    for (int s = 0; s < NSTATUS; s++) {
        uint64_t n = atomic_load(&h->log_suppressed[s]);
        if (!n) continue;
        char st[8];
        status_name(s, st, sizeof st);
        tk_buf_printf(out, "tokend_http_access_log_suppressed_total{status=\"%s\"} %llu\n", st,
                      (unsigned long long)n);
    }
    tk_buf_printf(out,
                  "# HELP tokend_http_inflight Requests being handled now.\n# TYPE "
                  "tokend_http_inflight gauge\ntokend_http_inflight %d\n",
                  atomic_load(&h->inflight));
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
    atomic_fetch_add(&h->inflight, 1);
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

static void dispatch_route(struct tk_http *h, struct tk_req *r)
{
    struct tk_err e;
    struct tk_route_match m;
    enum tk_router_result rr = tk_router_match(h->router, r->method, r->path, r->pool, &m);
    if (rr == TK_ROUTE_NOT_FOUND) {
        r->in->refused = true;
        tk_err_set(&e, TK_ENOTFOUND, "not_found", "no route for %.20s %.200s", r->method, r->path);
        tk_reply_error(r, &e, NULL);
        return;
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
        return;
    }
    if (rr == TK_ROUTE_BAD_METHOD) {
        r->in->refused = true;
        r->in->route_index = m.index;
        tk_reply_header(r, "Allow", m.allow);
        tk_err_set(&e, TK_EMETHOD, "method_not_allowed", "%.20s is not allowed on %s; allowed: %s",
                   r->method, h->o.routes[m.index].pattern, m.allow);
        tk_reply_error(r, &e, NULL);
        return;
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
        return;
    }
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
    if (!r->in->replied) {
        tk_error("http: handler for %s %s did not reply", r->route->method, r->route->pattern);
        tk_err_set(&e, TK_EINTERNAL, "internal", "the handler did not reply");
        tk_reply_error(r, &e, NULL);
    }
}

static void dispatch(struct tk_http *h, struct tk_req *r)
{
    dispatch_route(h, r);
    finish_once(h, r);
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
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(in->resp_len, in->resp, free_wiped);
    in->resp = NULL; /* owned by MHD now */
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", in->ctype ? in->ctype : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", echoed_id(r));
    MHD_add_response_header(resp, "Cache-Control", "no-store");
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
        r->in->resp_len = send_raw_error(ci->connect_fd, 413, "Content Too Large", e.code, e.msg,
                                         r->request_id);
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
    dispatch(h, r);
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
            char st[8];
            status_name(i, st, sizeof st);
            snprintf(key, sizeof key, "status_%s", st);
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
    if (!ok) atomic_fetch_add(&h->log_suppressed[slot], 1);
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
    atomic_fetch_sub(&h->inflight, 1);
    tk_pool_free(r->pool);
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
        free(cs);
    }
}

enum cut_reason { CUT_HEAD, CUT_BODY, CUT_PRESSURE };
static const char *const cut_names[] = {"header_timeout", "min_body_rate", "pressure"};

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
    (void)send_raw_error(cs->fd, 408, "Request Timeout", "request_timeout", msg, id);
    shutdown(cs->fd, SHUT_RDWR);
    atomic_fetch_add(why == CUT_HEAD ? &h->cut_head
                     : why == CUT_BODY ? &h->cut_body
                                       : &h->cut_pressure,
                     1);
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
    free(h->metrics);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->logmu);
    free(h);
}

tk_rc tk_http_start(const struct tk_http_opts *o, struct tk_http **out, struct tk_err *e)
{
    struct tk_http *h = tk_calloc(1, sizeof *h);
    h->o = *o;
    h->o.allowed_hosts = NULL; /* parsed into h->hosts; the caller's string may go */
    h->fd = -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->logmu, NULL);
    h->log_second = tk_mono_us() / 1000000;
    h->o.trusted_proxies = NULL; /* parsed into h->proxies */
    tk_rc rc = tk_proxies_parse(o->trusted_proxies, &h->proxies, e);
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
    }
    h->metrics = tk_calloc(o->nroutes + 1, sizeof *h->metrics);
    if (rc != TK_OK) {
        http_free(h);
        return rc;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)o->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o->max_header,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, h, MHD_OPTION_END);
    if (!h->d) {
        http_free(h);
        return tk_err_set(e, TK_EINTERNAL, "http_start_failed",
                          "libmicrohttpd refused to start (threads=%d, max_connections=%d)",
                          o->threads, o->max_connections);
    }
    struct tk_err we;
    if (tk_worker_start(&h->sweeper, "connection sweeper", sweeper_main, h, &we) != TK_OK) {
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
    int fd = MHD_quiesce_daemon(h->d);
    if (fd >= 0) close(fd);
    h->fd = -1;
}

bool tk_http_drain(struct tk_http *h, int timeout_ms)
{
    int64_t end = tk_mono_us() + (int64_t)timeout_ms * 1000;
    while (atomic_load(&h->inflight) > 0) {
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
    /* Closes every connection, whatever its client does: sockets are
     * non-blocking, and no handler waits without a deadline. */
    MHD_stop_daemon(h->d);
    log_budget_roll(h, true); /* the last second's summary */
    tk_log_flush();
    http_free(h);
}
