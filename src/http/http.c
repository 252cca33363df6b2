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
 */
#include "http.h"
#include "router.h"

#include "../common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const int status_slots[] = {200, 201, 202, 204, 304, 400, 401, 403, 404, 405,
                                   409, 413, 415, 429, 431, 500, 502, 503, 0 /* other */};
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

struct tk_http {
    struct MHD_Daemon *d;
    struct tk_http_opts o;
    struct tk_router *router;
    int fd;
    int port;
    atomic_int inflight;
    struct route_metrics *metrics; /* nroutes + 1: the last is "no route" */
};

struct hdr {
    struct hdr *next;
    const char *name, *value;
};

struct tk_req_internal {
    struct tk_http *h;
    struct MHD_Connection *conn;
    struct tk_buf body;
    bool too_big;
    bool replied;
    bool finished; /* the app's finish hook has run */
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

/* Replace bytes that are not UTF-8 with '?', so that a message cut in the
 * middle of a character still goes out (jansson refuses invalid UTF-8). */
static void utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
                : (*p & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = n > 0;
        for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xc0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

void tk_reply_error(struct tk_req *r, const struct tk_err *in, json_t *extra)
{
    struct tk_err copy = *in, *e = &copy;
    utf8_clean(e->msg);
    utf8_clean(e->field);
    utf8_clean(e->code);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(e->code[0] ? e->code : tk_rc_name(e->rc)));
    json_object_set_new(o, "message", json_string(e->msg[0] ? e->msg : tk_rc_name(e->rc)));
    if (e->field[0]) json_object_set_new(o, "field", json_string(e->field));
    if (extra) json_object_update(o, extra);
    json_object_set_new(o, "request_id", json_string(r->request_id));
    tk_reply_json(r, tk_rc_status(e->rc), o);
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

json_t *tk_req_json(struct tk_req *r)
{
    struct tk_err e;
    const char *ct = tk_req_header(r, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0) {
        tk_err_field(&e, TK_EINVAL, "unsupported_media_type", "Content-Type",
                     "the body must be application/json, not %.60s", ct);
        tk_reply_error(r, &e, NULL);
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
    const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_ok(rid)) {
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    } else {
        char u[TK_UUID_LEN + 1];
        tk_uuid7(u);
        snprintf(r->request_id, sizeof r->request_id, "%s", u);
    }
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

static void dispatch_route(struct tk_http *h, struct tk_req *r);

static void dispatch(struct tk_http *h, struct tk_req *r)
{
    dispatch_route(h, r);
    finish_once(h, r);
}

static void dispatch_route(struct tk_http *h, struct tk_req *r)
{
    struct tk_err e;
    struct tk_route_match m;
    enum tk_router_result rr = tk_router_match(h->router, r->method, r->path, r->pool, &m);
    if (rr == TK_ROUTE_NOT_FOUND) {
        tk_err_set(&e, TK_ENOTFOUND, "not_found", "no route for %s %.200s", r->method, r->path);
        tk_reply_error(r, &e, NULL);
        return;
    }
    if (rr == TK_ROUTE_BAD_METHOD) {
        r->in->route_index = m.index;
        tk_reply_header(r, "Allow", m.allow);
        tk_err_set(&e, TK_EMETHOD, "method_not_allowed", "%s is not allowed on %s; allowed: %s",
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
    if (!(r->route->flags & TK_ROUTE_SEALED_OK) && h->o.gate && h->o.gate(r) != TK_OK) {
        if (!r->in->replied) {
            tk_err_set(&e, TK_EUNAVAIL, "unavailable", "not available now");
            tk_reply_error(r, &e, NULL);
        }
        return;
    }
    if ((r->route->flags & TK_ROUTE_AUTH) && h->o.authenticate && h->o.authenticate(r) != TK_OK) {
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

/* Responses may carry a secret shown once (a new token, unseal shares):
 * wipe every response body when libmicrohttpd is done with it. */
static void free_wiped(void *p)
{
    if (p) tk_wipe(p, strlen(p));
    free(p);
}

static enum MHD_Result queue(struct tk_req *r)
{
    struct tk_req_internal *in = r->in;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(in->resp_len, in->resp, free_wiped);
    in->resp = NULL; /* owned by MHD now */
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", in->ctype ? in->ctype : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (struct hdr *hd = in->headers; hd; hd = hd->next)
        MHD_add_response_header(resp, hd->name, hd->value);
    enum MHD_Result ret = MHD_queue_response(in->conn, (unsigned)in->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    struct tk_http *h = cls;
    struct tk_req *r = *con_cls;
    if (!r) {
        r = req_new(h, c, url, method);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        int64_t n;
        if (cl && tk_parse_int(cl, 0, INT64_MAX, &n) == TK_OK && (uint64_t)n > h->o.max_body) {
            /* Answer before reading the body; MHD closes the connection after. */
            struct tk_err e;
            tk_err_set(&e, TK_ETOOBIG, "body_too_large",
                       "the request body is %lld bytes; at most %zu are accepted", (long long)n,
                       h->o.max_body);
            tk_reply_error(r, &e, NULL);
            return queue(r);
        }
        return MHD_YES;
    }
    if (r->in->replied) { /* 413 already queued: discard the rest */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size) {
        r->in->bytes_in += *data_size;
        if (!r->in->too_big && tk_buf_add(&r->in->body, data, *data_size) != TK_OK) {
            r->in->too_big = true;
            tk_buf_free(&r->in->body);
        }
        *data_size = 0;
        return MHD_YES;
    }
    if (r->in->too_big) {
        struct tk_err e;
        tk_err_set(&e, TK_ETOOBIG, "body_too_large",
                   "the request body is over %zu bytes, the most accepted", h->o.max_body);
        tk_reply_error(r, &e, NULL);
    } else {
        r->body = r->in->body.data ? r->in->body.data : "";
        r->body_len = r->in->body.len;
        dispatch(h, r);
    }
    return queue(r);
}

void tk_req_remote(const struct tk_req *r, char *out, size_t n)
{
    if (!n) return;
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->in->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    socklen_t sl = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in);
    if (getnameinfo(ci->client_addr, sl, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
        out[0] = '\0';
}

static void access_log(struct tk_http *h, struct tk_req *r, int64_t us)
{
    char addr[64];
    tk_req_remote(r, addr, sizeof addr);
    json_t *o = json_object();
    char at[32];
    tk_time_fmt(tk_now_ms(), at, sizeof at);
    json_object_set_new(o, "at", json_string(at));
    json_object_set_new(o, "msg", json_string("request"));
    json_object_set_new(o, "method", json_string(r->method));
    /* The route pattern always; the path only when a route matched, since
     * an unmatched path may be anything, including a pasted secret. Never
     * the query string. */
    if (r->in->route_index < (int)h->o.nroutes) {
        json_object_set_new(o, "route", json_string(h->o.routes[r->in->route_index].pattern));
        /* {id} matches anything, a pasted token too: the path only when every
         * parameter is an id tokend made. */
        bool ids = true;
        for (int i = 0; i < r->nparams; i++) ids &= tk_uuid_valid(r->param_values[i]);
        if (ids) json_object_set_new(o, "path", json_string(r->path));
    } else {
        json_object_set_new(o, "route", json_null());
    }
    json_object_set_new(o, "status", json_integer(r->in->status));
    json_object_set_new(o, "us", json_integer(us));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)r->in->bytes_in));
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)r->in->resp_len));
    json_object_set_new(o, "remote", json_string(addr));
    json_object_set_new(o, "request_id", json_string(r->request_id));
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) tk_log_json_line(s);
    free(s);
    json_decref(o);
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
    int64_t us = tk_mono_us() - r->in->start_us;
    if (!r->in->replied) r->in->status = 499; /* client went away before the answer */
    count(h, r->in->route_index, r->in->status, us);
    if (h->o.access_log) access_log(h, r, us);
    free_wiped(r->in->resp);
    tk_buf_free_wipe(&r->in->body); /* bodies may carry secrets */
    atomic_fetch_sub(&h->inflight, 1);
    tk_pool_free(r->pool);
}

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

tk_rc tk_http_start(const struct tk_http_opts *o, struct tk_http **out, struct tk_err *e)
{
    struct tk_http *h = tk_calloc(1, sizeof *h);
    h->o = *o;
    h->fd = -1;
    tk_rc rc = tk_router_new(o->routes, o->nroutes, &h->router, e);
    if (rc == TK_OK) rc = bind_listen(o->listen, &h->fd, &h->port, e);
    if (rc != TK_OK) {
        tk_router_free(h->router);
        free(h);
        return rc;
    }
    h->metrics = tk_calloc(o->nroutes + 1, sizeof *h->metrics);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)o->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)o->max_header,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, h,
        MHD_OPTION_END);
    if (!h->d) {
        close(h->fd);
        tk_router_free(h->router);
        free(h->metrics);
        free(h);
        return tk_err_set(e, TK_EINTERNAL, "http_start_failed",
                          "libmicrohttpd refused to start (threads=%d, max_connections=%d)",
                          o->threads, o->max_connections);
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
    MHD_stop_daemon(h->d);
    if (h->fd >= 0) close(h->fd);
    tk_router_free(h->router);
    free(h->metrics);
    free(h);
}
