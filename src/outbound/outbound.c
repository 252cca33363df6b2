/* outbound.c: see outbound.h.
 *
 * Every live request is a struct job on one of two lists under out->mu:
 * queued (FIFO, waiting for a slot) or active (its easy handle is in the
 * multi). Other threads only add to the queue and set job->cancel; the
 * outbound thread moves jobs between lists, owns every curl handle, and
 * ends each job in finish(): unlinked under the lock, counted, done called
 * without the lock, freed. So each done runs once, on this thread. */
#include "outbound.h"

#include "../common/log.h"
#include "../common/worker.h"
#include "../common/metrics.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define URL_MAX 8192
#define HEADER_MAX 8192
#define HEADERS_MAX 64
#define REQ_BODY_MAX (8u << 20)
#define RESP_HEADERS_MAX (64u << 10) /* bytes of answer headers */
#define MASK_MAX 32
#define RECORD_BODY_MAX 2048

struct job;
struct jlist {
    struct job *head, *tail;
    size_t n;
};

struct job {
    struct job *prev, *next;
    struct job *chain; /* the outbound thread's own lists of jobs to end or start */
    struct jlist *on;  /* the list it is on (under mu); NULL once taken off */
    uint64_t id;
    bool cancel; /* under mu */
    struct tk_out *out;
    void (*done)(const struct tk_out_result *, void *);
    void *arg;
    int64_t t0_us, deadline_us;
    /* the copied request; req points into these */
    struct tk_out_req req;
    char *method, *url, *body;
    char **headers, **mask;
    enum tk_out_error pre_err; /* input refused at submit */
    char pre_msg[256];
    char host[300]; /* host[:port] for messages */
    bool check_sockets;
    /* the transfer (outbound thread only) */
    CURL *h;
    struct curl_slist *hl;
    struct tk_buf resp;
    size_t header_bytes;
    bool too_large, headers_too_large, forbidden;
    char forbidden_addr[INET6_ADDRSTRLEN];
    char content_type[128], www_authenticate[512], retry_after[64], location[1024];
    char errbuf[CURL_ERROR_SIZE];
};

struct tk_out {
    pthread_mutex_t mu;
    pthread_t thread;
    bool running, stopping; /* under mu */
    CURLM *multi;
    struct jlist queued, active;
    uint64_t next_id;
    uint64_t done[TK_OUT_NERRORS];
    int connect_timeout_ms, timeout_ms, max_concurrent, max_queue;
    size_t max_response;
    char *ca_file, *capath, *proxy;
};

static _Thread_local struct tk_out *on_thread;

static const char *const error_names[TK_OUT_NERRORS] = {
    "ok",      "timeout",  "connect_failed", "tls_failed", "too_large", "forbidden_address",
    "bad_url", "stopping", "cancelled",      "busy",       "failed",
};

const char *tk_out_error_name(enum tk_out_error err)
{
    return (unsigned)err < TK_OUT_NERRORS ? error_names[err] : "failed";
}

/* ---- lists (under mu) ---- */

static void jl_push(struct jlist *l, struct job *j)
{
    j->prev = l->tail;
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
    j->on = l;
}

static void jl_unlink(struct job *j)
{
    struct jlist *l = j->on;
    if (!l) return;
    if (j->prev)
        j->prev->next = j->next;
    else
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        l->tail = j->prev;
    l->n--;
    j->prev = j->next = NULL;
    j->on = NULL;
}

/* ---- addresses ---- */

static bool v4_forbidden(const unsigned char a[4])
{
    uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    static const struct {
        uint32_t net;
        int bits;
    } nets[] = {
        {0x00000000, 8},  /* "this network", 0.0.0.0 */
        {0x0A000000, 8},  /* private */
        {0x64400000, 10}, /* CGNAT */
        {0x7F000000, 8},  /* loopback */
        {0xA9FE0000, 16}, /* link-local, 169.254.169.254 metadata */
        {0xAC100000, 12}, /* private */
        {0xC0000000, 24}, /* IETF protocol assignments */
        {0xC0000200, 24}, /* TEST-NET-1 */
        {0xC0A80000, 16}, /* private */
        {0xC6120000, 15}, /* benchmarking */
        {0xC6336400, 24}, /* TEST-NET-2 */
        {0xCB007100, 24}, /* TEST-NET-3 */
        {0xE0000000, 4},  /* multicast */
        {0xF0000000, 4},  /* reserved, broadcast */
    };
    for (size_t i = 0; i < TK_NELEM(nets); i++) {
        uint32_t m = nets[i].bits ? ~0u << (32 - nets[i].bits) : 0;
        if ((x & m) == nets[i].net) return true;
    }
    return false;
}

static bool v6_forbidden(const unsigned char a[16])
{
    static const unsigned char zero[16];
    if (!memcmp(a, zero, 15) && (a[15] == 0 || a[15] == 1)) return true; /* :: and ::1 */
    /* v4-mapped ::ffff:0:0/96 and v4-compatible ::/96: the embedded address */
    if (!memcmp(a, zero, 10) && ((a[10] == 0xff && a[11] == 0xff) || (a[10] == 0 && a[11] == 0)))
        return v4_forbidden(a + 12);
    /* NAT64 64:ff9b::/96 and 64:ff9b:1::/48 */
    if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b) return v4_forbidden(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) return v4_forbidden(a + 2); /* 6to4 */
    if ((a[0] & 0xfe) == 0xfc) return true;                       /* ULA fc00::/7 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return true;       /* link-local fe80::/10 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return true;       /* site-local fec0::/10 */
    if (a[0] == 0xff) return true;                                /* multicast */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return true; /* doc */
    if (a[0] == 0x01 && a[1] == 0x00 && !memcmp(a + 2, zero, 6)) return true;      /* discard */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) return true;       /* Teredo */
    return false;
}

bool tk_out_address_forbidden(const void *sockaddr)
{
    const struct sockaddr *sa = sockaddr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = sockaddr;
        return v4_forbidden((const unsigned char *)&s4->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = sockaddr;
        return v6_forbidden((const unsigned char *)&s6->sin6_addr);
    }
    return true; /* anything else (unix sockets) is not public */
}

/* An address in text form: forbidden (or not an address: *is_ip false). */
static bool text_forbidden(const char *ip, bool *is_ip)
{
    unsigned char a[16];
    *is_ip = true;
    if (inet_pton(AF_INET, ip, a) == 1) return v4_forbidden(a);
    if (inet_pton(AF_INET6, ip, a) == 1) return v6_forbidden(a);
    *is_ip = false;
    return false;
}

/* ---- curl callbacks (outbound thread) ---- */

static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct job *j = clientp;
    (void)purpose;
    if (j->check_sockets && tk_out_address_forbidden(&addr->addr)) {
        const void *p = addr->family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&addr->addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&addr->addr)->sin_addr;
        if (!inet_ntop(addr->family, p, j->forbidden_addr, sizeof j->forbidden_addr))
            snprintf(j->forbidden_addr, sizeof j->forbidden_addr, "?");
        j->forbidden = true;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* Every request, on the connection actually used (a new one or one kept
 * alive from an earlier request). */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct job *j = clientp;
    (void)local_ip, (void)primary_port, (void)local_port;
    bool is_ip;
    if (j->check_sockets && (text_forbidden(primary_ip, &is_ip) || !is_ip)) {
        snprintf(j->forbidden_addr, sizeof j->forbidden_addr, "%s", primary_ip);
        j->forbidden = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

static void keep_header(char *dst, size_t cap, const char *v, size_t n, bool join)
{
    size_t have = strlen(dst);
    if (join && have) {
        if (have + 2 >= cap) return;
        memcpy(dst + have, ", ", 2);
        have += 2;
    } else {
        have = 0;
    }
    if (n > cap - 1 - have) n = cap - 1 - have;
    memcpy(dst + have, v, n);
    dst[have + n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nitems, void *userdata)
{
    struct job *j = userdata;
    size_t n = size * nitems;
    j->header_bytes += n;
    if (j->header_bytes > RESP_HEADERS_MAX) {
        j->headers_too_large = true;
        return 0;
    }
    if (n >= 5 && !memcmp(p, "HTTP/", 5)) { /* a new answer (1xx, or a redirect followed) */
        j->content_type[0] = j->www_authenticate[0] = j->retry_after[0] = j->location[0] = '\0';
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon) return n;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
#define IS(name) (nl == sizeof(name) - 1 && !strncasecmp(p, name, nl))
    if (IS("content-type"))
        keep_header(j->content_type, sizeof j->content_type, v, vl, false);
    else if (IS("www-authenticate"))
        keep_header(j->www_authenticate, sizeof j->www_authenticate, v, vl, true);
    else if (IS("retry-after"))
        keep_header(j->retry_after, sizeof j->retry_after, v, vl, false);
    else if (IS("location"))
        keep_header(j->location, sizeof j->location, v, vl, false);
#undef IS
    return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *userdata)
{
    struct job *j = userdata;
    size_t n = size * nmemb;
    if (tk_buf_add(&j->resp, p, n) != TK_OK) {
        j->too_large = true;
        return 0; /* cut: CURLE_WRITE_ERROR */
    }
    return n;
}

/* ---- jobs ---- */

static void job_free(struct job *j)
{
    if (!j) return;
    if (j->h) curl_easy_cleanup(j->h);
    curl_slist_free_all(j->hl);
    free(j->method);
    free(j->url);
    if (j->body) tk_wipe(j->body, j->req.body_len);
    free(j->body);
    for (size_t i = 0; j->headers && i < j->req.nheaders; i++) {
        tk_wipe(j->headers[i], strlen(j->headers[i]));
        free(j->headers[i]);
    }
    free(j->headers);
    for (size_t i = 0; j->mask && i < j->req.nmask; i++) {
        tk_wipe(j->mask[i], strlen(j->mask[i]));
        free(j->mask[i]);
    }
    free(j->mask);
    tk_buf_free_wipe(&j->resp);
    free(j);
}

static void pre_fail(struct job *j, enum tk_out_error err, const char *fmt, ...) TK_PRINTF(3, 4);
static void pre_fail(struct job *j, enum tk_out_error err, const char *fmt, ...)
{
    if (j->pre_err) return;
    j->pre_err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->pre_msg, sizeof j->pre_msg, fmt, ap);
    va_end(ap);
}

static bool token_ok(const char *s, size_t n)
{
    if (!n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 32 || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c)) return false;
    }
    return true;
}

/* Check the URL and fill j->host; refuse what is not http(s). */
static void check_url(struct tk_out *out, struct job *j)
{
    if (!j->url) {
        pre_fail(j, TK_OUT_BAD_URL, "the request has no URL");
        return;
    }
    size_t n = strlen(j->url);
    if (n == 0 || n > URL_MAX) {
        pre_fail(j, TK_OUT_BAD_URL, "the URL is %zu bytes long; 1 to %d are allowed", n, URL_MAX);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)j->url[i] <= 32 || j->url[i] == 127) {
            pre_fail(j, TK_OUT_BAD_URL, "the URL holds a space or control character at byte %zu",
                     i + 1);
            return;
        }
    CURLU *u = curl_url();
    if (!u) tk_fatal("out of memory (curl_url)");
    char *scheme = NULL, *host = NULL, *port = NULL;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, j->url, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc != CURLUE_OK) {
        pre_fail(j, TK_OUT_BAD_URL, "the URL is not an absolute http(s) URL (%s)",
                 curl_url_strerror(uc));
    } else if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) {
        pre_fail(j, TK_OUT_BAD_URL, "the URL's scheme is %.20s; only http and https are allowed",
                 scheme);
    } else {
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
        snprintf(j->host, sizeof j->host, "%.255s:%.10s", host, port ? port : "?");
        /* a proxy connects for us: only an IP literal can be checked here */
        if (j->req.public_only && out->proxy) {
            char ip[256];
            snprintf(ip, sizeof ip, "%s", host);
            if (ip[0] == '[') { /* [v6] */
                memmove(ip, ip + 1, strlen(ip));
                char *b = strchr(ip, ']');
                if (b) *b = '\0';
            }
            bool is_ip;
            if (text_forbidden(ip, &is_ip)) {
                snprintf(j->forbidden_addr, sizeof j->forbidden_addr, "%.45s", ip);
                pre_fail(j, TK_OUT_FORBIDDEN_ADDRESS, "%s is not a public address (public_only)",
                         j->forbidden_addr);
            }
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* Copy req into a new job, checking it (a refusal is kept in pre_err and
 * delivered through done). */
static struct job *job_new(struct tk_out *out, const struct tk_out_req *req)
{
    struct job *j = tk_calloc(1, sizeof *j);
    j->out = out;
    j->t0_us = tk_mono_us();
    j->req = *req;
    int timeout = req->timeout_ms > 0 ? req->timeout_ms : out->timeout_ms;
    j->req.timeout_ms = timeout;
    j->deadline_us = j->t0_us + (int64_t)timeout * 1000;
    j->method = tk_strdup(req->method ? req->method : req->body ? "POST" : "GET");
    j->url = req->url ? tk_strdup(req->url) : NULL;
    j->req.method = j->method;
    j->req.url = j->url;
    if (req->body && req->body_len <= REQ_BODY_MAX) { /* a larger one is refused below */
        j->body = tk_malloc(req->body_len + 1);
        memcpy(j->body, req->body, req->body_len);
        j->body[req->body_len] = '\0';
    }
    j->req.body = j->body;
    j->req.body_len = j->body ? req->body_len : 0;
    if (j->req.max_redirects > 10) j->req.max_redirects = 10;
    size_t nh = req->headers ? req->nheaders : 0;
    j->req.nheaders = nh;
    j->headers = tk_calloc(nh + 1, sizeof *j->headers);
    for (size_t i = 0; i < nh; i++)
        j->headers[i] = tk_strdup(req->headers[i] ? req->headers[i] : "");
    j->req.headers = (const char *const *)j->headers;
    size_t nm = req->mask ? req->nmask : 0;
    if (nm > MASK_MAX) nm = MASK_MAX;
    j->req.nmask = nm;
    j->mask = tk_calloc(nm + 1, sizeof *j->mask);
    for (size_t i = 0; i < nm; i++)
        j->mask[i] = tk_strdup(req->mask[i] ? req->mask[i] : "");
    j->req.mask = (const char *const *)j->mask;
    tk_buf_init(&j->resp, out->max_response);
    j->check_sockets = req->public_only && !out->proxy;

    size_t ml = strlen(j->method);
    if (ml > 16 || !token_ok(j->method, ml))
        pre_fail(j, TK_OUT_BAD_URL, "the method is not an HTTP token of 1 to 16 characters");
    if (req->headers == NULL && req->nheaders)
        pre_fail(j, TK_OUT_BAD_URL, "nheaders is %zu but headers is NULL", req->nheaders);
    if (nh > HEADERS_MAX)
        pre_fail(j, TK_OUT_BAD_URL, "the request has %zu headers; at most %d are allowed", nh,
                 HEADERS_MAX);
    for (size_t i = 0; i < nh && i < HEADERS_MAX; i++) {
        const char *h = j->headers[i], *colon = strchr(h, ':');
        size_t hl = strlen(h);
        if (hl > HEADER_MAX || !colon || !token_ok(h, (size_t)(colon - h)) || strpbrk(h, "\r\n"))
            pre_fail(j, TK_OUT_BAD_URL,
                     "request header %zu is not a 'Name: value' line of at most %d bytes "
                     "without CR or LF",
                     i + 1, HEADER_MAX);
    }
    if (req->body && req->body_len > REQ_BODY_MAX)
        pre_fail(j, TK_OUT_TOO_LARGE, "the request body is %zu bytes; at most %u are allowed",
                 req->body_len, REQ_BODY_MAX);
    check_url(out, j);
    return j;
}

/* Build the easy handle; false (and pre_err set) when curl refuses. */
static bool job_setup(struct tk_out *out, struct job *j)
{
    CURL *h = j->h = curl_easy_init();
    if (!h) tk_fatal("out of memory (curl_easy_init)");
    int64_t left_ms = (j->deadline_us - tk_mono_us()) / 1000;
    if (left_ms < 1) left_ms = 1;
    long connect_ms = out->connect_timeout_ms < left_ms ? out->connect_timeout_ms : (long)left_ms;
    CURLcode c = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (c == CURLE_OK) c = curl_easy_setopt(h, opt, val);                                      \
    } while (0)
    SET(CURLOPT_PRIVATE, j);
    SET(CURLOPT_ERRORBUFFER, j->errbuf);
    SET(CURLOPT_URL, j->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)left_ms);
    SET(CURLOPT_FOLLOWLOCATION, j->req.max_redirects > 0 ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)(j->req.max_redirects > 0 ? j->req.max_redirects : 0));
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_PROXY, out->proxy ? out->proxy : ""); /* "": no proxy, whatever the environment */
    if (out->ca_file) {
        SET(CURLOPT_CAINFO, out->ca_file);
        if (out->capath) SET(CURLOPT_CAPATH, out->capath);
    }
    SET(CURLOPT_USERAGENT, "tokend/" TK_VERSION);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)out->max_response);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, j);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, j);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    SET(CURLOPT_OPENSOCKETDATA, j);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, j);
    if (!strcmp(j->method, "GET")) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(j->method, "HEAD")) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(j->method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, j->method);
        if (j->body || !strcmp(j->method, "POST")) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->req.body_len);
            SET(CURLOPT_POSTFIELDS, j->body ? j->body : "");
        }
    }
    for (size_t i = 0; i < j->req.nheaders; i++) {
        struct curl_slist *n = curl_slist_append(j->hl, j->headers[i]);
        if (!n) tk_fatal("out of memory (curl_slist_append)");
        j->hl = n;
    }
    struct curl_slist *n = curl_slist_append(j->hl, "Expect:"); /* no 100-continue wait */
    if (!n) tk_fatal("out of memory (curl_slist_append)");
    j->hl = n;
    SET(CURLOPT_HTTPHEADER, j->hl);
#undef SET
    if (c != CURLE_OK) {
        pre_fail(j, TK_OUT_BAD_URL, "the request was refused by libcurl: %s",
                 curl_easy_strerror(c));
        return false;
    }
    return true;
}

/* End j: take it off its list, count it, call done, free it. */
static void finish(struct tk_out *out, struct job *j, enum tk_out_error err, const char *fmt, ...)
    TK_PRINTF(4, 5);
static void finish(struct tk_out *out, struct job *j, enum tk_out_error err, const char *fmt, ...)
{
    struct tk_out_result res;
    memset(&res, 0, sizeof res);
    res.id = j->id;
    res.error = err;
    if (fmt) {
        char msg[sizeof res.message];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        char *m = tk_out_mask(msg, j->req.mask, j->req.nmask);
        snprintf(res.message, sizeof res.message, "%s", m);
        free(m);
    }
    if (j->h) {
        curl_easy_getinfo(j->h, CURLINFO_RESPONSE_CODE, &res.status);
        snprintf(res.content_type, sizeof res.content_type, "%s", j->content_type);
        snprintf(res.www_authenticate, sizeof res.www_authenticate, "%s", j->www_authenticate);
        snprintf(res.retry_after, sizeof res.retry_after, "%s", j->retry_after);
        snprintf(res.location, sizeof res.location, "%s", j->location);
    }
    if (err == TK_OUT_OK) {
        res.body = j->resp.data ? j->resp.data : "";
        res.body_len = j->resp.len;
    }
    res.total_us = tk_mono_us() - j->t0_us;
    res.req = &j->req;
    pthread_mutex_lock(&out->mu);
    jl_unlink(j);
    out->done[err]++;
    pthread_mutex_unlock(&out->mu);
    j->done(&res, j->arg);
    job_free(j);
}

static bool is_tls_error(CURLcode c)
{
    switch (c) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return true;
    default:
        return false;
    }
}

/* A transfer ended in the multi. */
static void finish_transfer(struct tk_out *out, struct job *j, CURLcode c)
{
    const char *why = j->errbuf[0] ? j->errbuf : curl_easy_strerror(c);
    if (j->too_large || c == CURLE_FILESIZE_EXCEEDED)
        finish(out, j, TK_OUT_TOO_LARGE,
               "the answer of %s was cut: its body is larger than %zu bytes", j->host,
               out->max_response);
    else if (j->headers_too_large)
        finish(out, j, TK_OUT_TOO_LARGE,
               "the answer of %s was cut: its headers are larger than %u bytes", j->host,
               RESP_HEADERS_MAX);
    else if (c == CURLE_OK)
        finish(out, j, TK_OUT_OK, NULL);
    else if (j->forbidden && (c == CURLE_COULDNT_CONNECT || c == CURLE_ABORTED_BY_CALLBACK))
        finish(out, j, TK_OUT_FORBIDDEN_ADDRESS,
               "%s resolves to %s, which is not a public address (public_only)", j->host,
               j->forbidden_addr);
    else if (c == CURLE_OPERATION_TIMEDOUT)
        finish(out, j, TK_OUT_TIMEOUT, "no complete answer from %s within %d ms (%s)", j->host,
               j->req.timeout_ms, why);
    else if (c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_COULDNT_RESOLVE_PROXY ||
             c == CURLE_COULDNT_CONNECT)
        finish(out, j, TK_OUT_CONNECT_FAILED, "cannot connect to %s: %s", j->host, why);
    else if (is_tls_error(c))
        finish(out, j, TK_OUT_TLS_FAILED, "TLS with %s failed: %s", j->host, why);
    else if (c == CURLE_URL_MALFORMAT || c == CURLE_UNSUPPORTED_PROTOCOL)
        finish(out, j, TK_OUT_BAD_URL, "the URL for %s was refused: %s", j->host, why);
    else
        finish(out, j, TK_OUT_FAILED, "the exchange with %s failed: %s", j->host, why);
}

/* ---- the thread ---- */

static void *run(void *arg)
{
    struct tk_out *out = arg;
    on_thread = out;
    for (;;) {
        struct job *end = NULL, *start = NULL, **start_tail = &start; /* linked by chain */
        int64_t now = tk_mono_us();
        pthread_mutex_lock(&out->mu);
        bool stopping = out->stopping;
        /* queued: cancelled, expired, or everything when stopping */
        for (struct job *j = out->queued.head, *nx; j; j = nx) {
            nx = j->next;
            if (stopping || j->cancel || j->pre_err || now >= j->deadline_us) {
                jl_unlink(j);
                j->chain = end;
                end = j;
            }
        }
        /* active: cancelled, or everything when stopping */
        for (struct job *j = out->active.head, *nx; j; j = nx) {
            nx = j->next;
            if (stopping || j->cancel) {
                jl_unlink(j);
                j->chain = end;
                end = j;
            }
        }
        while (!stopping && out->queued.head && out->active.n < (size_t)out->max_concurrent) {
            struct job *j = out->queued.head;
            jl_unlink(j);
            jl_push(&out->active, j);
            j->chain = NULL;
            *start_tail = j; /* in submission order */
            start_tail = &j->chain;
        }
        size_t nqueued = out->queued.n;
        pthread_mutex_unlock(&out->mu);

        while (end) {
            struct job *j = end;
            end = j->chain;
            if (j->h) curl_multi_remove_handle(out->multi, j->h);
            if (stopping)
                finish(out, j, TK_OUT_STOPPING,
                       "the node is stopping; the request to %s was not finished",
                       j->host[0] ? j->host : "its host");
            else if (j->pre_err)
                finish(out, j, j->pre_err, "%s", j->pre_msg);
            else if (j->cancel)
                finish(out, j, TK_OUT_CANCELLED, "the request to %s was cancelled", j->host);
            else
                finish(out, j, TK_OUT_TIMEOUT,
                       "no answer from %s within %d ms: the request waited in the queue (%d "
                       "requests at once at most)",
                       j->host, j->req.timeout_ms, out->max_concurrent);
        }
        if (stopping) break;
        while (start) {
            struct job *j = start;
            start = j->chain; /* j is on the active list; only this thread takes it off */
            if (!job_setup(out, j) || curl_multi_add_handle(out->multi, j->h) != CURLM_OK) {
                pre_fail(j, TK_OUT_BAD_URL, "libcurl refused the request");
                finish(out, j, j->pre_err, "%s", j->pre_msg);
            }
        }
        int running = 0;
        curl_multi_perform(out->multi, &running);
        CURLMsg *m;
        int left;
        bool ended = false;
        while ((m = curl_multi_info_read(out->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            CURL *h = m->easy_handle;
            CURLcode c = m->data.result;
            struct job *j = NULL;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&j);
            curl_multi_remove_handle(out->multi, h);
            finish_transfer(out, j, c);
            ended = true;
        }
        if (ended && nqueued) continue;    /* a slot is free: start the next one now */
        int wait_ms = nqueued ? 50 : 1000; /* queued requests' deadlines are checked */
        curl_multi_poll(out->multi, NULL, 0, wait_ms, NULL);
    }
    on_thread = NULL;
    return NULL;
}

/* ---- the interface ---- */

/* Does the file hold a PEM certificate (within its first 4 MiB)? */
static bool has_pem_cert(const char *path)
{
    FILE *f = fopen(path, "rbe");
    if (!f) return false;
    size_t cap = 4u << 20;
    char *buf = tk_malloc(cap + 1);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n] = '\0';
    bool ok = memmem(buf, n, "-----BEGIN CERTIFICATE-----", 27) != NULL;
    free(buf);
    return ok;
}

tk_rc tk_out_start(const struct tk_out_opts *o, struct tk_out **outp, struct tk_err *e)
{
    *outp = NULL;
    if (o->ca_file && o->ca_file[0]) {
        struct stat st;
        if (stat(o->ca_file, &st) != 0 || !S_ISREG(st.st_mode) || access(o->ca_file, R_OK) != 0)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "outbound_ca_file",
                                "outbound_ca_file %s is not a readable file", o->ca_file);
        if (!has_pem_cert(o->ca_file))
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "outbound_ca_file",
                                "outbound_ca_file %s holds no PEM certificate (-----BEGIN "
                                "CERTIFICATE-----) in its first 4 MiB",
                                o->ca_file);
    }
    if (o->proxy && o->proxy[0]) {
        CURLU *u = curl_url();
        if (!u) tk_fatal("out of memory (curl_url)");
        CURLUcode uc = curl_url_set(u, CURLUPART_URL, o->proxy, 0);
        curl_url_cleanup(u);
        if (uc != CURLUE_OK || !strstr(o->proxy, "://"))
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "outbound_proxy",
                                "outbound_proxy is not a proxy URL (scheme://host:port): %s",
                                uc != CURLUE_OK ? curl_url_strerror(uc) : "no scheme");
    }
    struct tk_out *out = tk_calloc(1, sizeof *out);
    pthread_mutex_init(&out->mu, NULL);
    out->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    out->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 15000;
    out->max_response = o->max_response > 0 ? o->max_response : 1u << 20;
    out->max_concurrent = o->max_concurrent > 0 ? o->max_concurrent : 64;
    out->max_queue = o->max_queue > 0 ? o->max_queue : 16 * out->max_concurrent;
    out->next_id = 1;
    if (o->ca_file && o->ca_file[0]) {
        out->ca_file = tk_strdup(o->ca_file);
        /* CAINFO replaces the system bundle: keep the system's CAs through
         * the hashed directory libcurl was built with */
        CURL *t = curl_easy_init();
        char *capath = NULL;
        if (t) curl_easy_getinfo(t, CURLINFO_CAPATH, &capath);
        struct stat st;
        if (!capath && stat("/etc/ssl/certs", &st) == 0 && S_ISDIR(st.st_mode))
            capath = "/etc/ssl/certs";
        if (capath)
            out->capath = tk_strdup(capath);
        else
            tk_warn("outbound_ca_file: no system CA directory found; only %s is trusted",
                    o->ca_file);
        if (t) curl_easy_cleanup(t);
    }
    if (o->proxy && o->proxy[0]) out->proxy = tk_strdup(o->proxy);
    out->multi = curl_multi_init();
    if (!out->multi) tk_fatal("out of memory (curl_multi_init)");
    curl_multi_setopt(out->multi, CURLMOPT_MAXCONNECTS, (long)out->max_concurrent);
    int err = tk_thread_create(&out->thread, run, out);
    if (err != 0) {
        curl_multi_cleanup(out->multi);
        free(out->ca_file);
        free(out->capath);
        free(out->proxy);
        pthread_mutex_destroy(&out->mu);
        free(out);
        return tk_err_set(e, TK_EINTERNAL, "internal", "cannot start the outbound thread: %s",
                          strerror(err));
    }
    out->running = true;
    *outp = out;
    return TK_OK;
}

void tk_out_stop(struct tk_out *out)
{
    if (!out) return;
    pthread_mutex_lock(&out->mu);
    bool join = out->running && !out->stopping;
    out->stopping = true;
    pthread_mutex_unlock(&out->mu);
    if (!join) return;
    curl_multi_wakeup(out->multi);
    pthread_join(out->thread, NULL);
    pthread_mutex_lock(&out->mu);
    out->running = false;
    pthread_mutex_unlock(&out->mu);
}

void tk_out_free(struct tk_out *out)
{
    if (!out) return;
    tk_out_stop(out);
    curl_multi_cleanup(out->multi);
    free(out->ca_file);
    free(out->capath);
    free(out->proxy);
    pthread_mutex_destroy(&out->mu);
    free(out);
}

tk_rc tk_out_submit(struct tk_out *out, const struct tk_out_req *req,
                    void (*done)(const struct tk_out_result *res, void *arg), void *arg,
                    uint64_t *id, struct tk_err *e)
{
    if (id) *id = 0;
    pthread_mutex_lock(&out->mu);
    bool stopping = out->stopping;
    bool full = out->queued.n >= (size_t)out->max_queue;
    if (full && !stopping) out->done[TK_OUT_BUSY]++;
    pthread_mutex_unlock(&out->mu);
    if (stopping)
        return tk_err_set(e, TK_EUNAVAIL, "stopping",
                          "the node is stopping: no outbound request is started");
    if (full)
        return tk_err_set(
            e, TK_EUNAVAIL, "busy",
            "%d outbound requests are already waiting for one of %d slots; try again later",
            out->max_queue, out->max_concurrent);
    struct job *j = job_new(out, req);
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&out->mu);
    if (out->stopping) { /* stop began meanwhile: it will not see this job */
        pthread_mutex_unlock(&out->mu);
        job_free(j);
        return tk_err_set(e, TK_EUNAVAIL, "stopping",
                          "the node is stopping: no outbound request is started");
    }
    j->id = out->next_id++;
    if (id) *id = j->id;
    jl_push(&out->queued, j);
    pthread_mutex_unlock(&out->mu);
    curl_multi_wakeup(out->multi);
    return TK_OK;
}

bool tk_out_cancel(struct tk_out *out, uint64_t id)
{
    bool found = false;
    pthread_mutex_lock(&out->mu);
    struct jlist *lists[] = {&out->queued, &out->active};
    for (size_t l = 0; l < 2 && !found; l++)
        for (struct job *j = lists[l]->head; j; j = j->next)
            if (j->id == id) {
                found = !j->cancel;
                j->cancel = true;
                break;
            }
    pthread_mutex_unlock(&out->mu);
    if (found) curl_multi_wakeup(out->multi);
    return found;
}

void tk_out_stats(struct tk_out *out, struct tk_out_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&out->mu);
    st->in_flight = out->active.n;
    st->queued = out->queued.n;
    memcpy(st->done, out->done, sizeof st->done);
    pthread_mutex_unlock(&out->mu);
}

/* ---- metrics ---- */

static struct tk_out *slot_get(void *arg)
{
    return __atomic_load_n((struct tk_out *const *)arg, __ATOMIC_ACQUIRE);
}

static double m_inflight(void *arg, size_t idx)
{
    (void)idx;
    struct tk_out *out = slot_get(arg);
    if (!out) return NAN;
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    return (double)st.in_flight;
}

static double m_queued(void *arg, size_t idx)
{
    (void)idx;
    struct tk_out *out = slot_get(arg);
    if (!out) return NAN;
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    return (double)st.queued;
}

static double m_done(void *arg, size_t idx)
{
    struct tk_out *out = slot_get(arg);
    if (!out || idx >= TK_OUT_NERRORS) return NAN;
    pthread_mutex_lock(&out->mu);
    uint64_t n = out->done[idx];
    pthread_mutex_unlock(&out->mu);
    return (double)n;
}

tk_rc tk_out_metrics_register(struct tk_metrics *m, struct tk_out *const *slot, struct tk_err *e)
{
    static const struct tk_dim result = {"result", error_names, TK_OUT_NERRORS, NULL, NULL};
    void *arg = (void *)slot;
    bool ok =
        tk_metric_gauge_fn(m, "tokend_outbound_inflight", "Outbound HTTP requests running now.",
                           NULL, 0, m_inflight, arg, e) &&
        tk_metric_gauge_fn(m, "tokend_outbound_queued",
                           "Outbound HTTP requests waiting for a slot.", NULL, 0, m_queued, arg,
                           e) &&
        tk_metric_counter_fn(m, "tokend_outbound_requests_total",
                             "Outbound HTTP requests ended, by result (busy: refused).", &result, 1,
                             m_done, arg, e);
    return ok ? TK_OK : TK_EINTERNAL;
}

void tk_out_result_copy(struct tk_out_result *dst, const struct tk_out_result *src)
{
    *dst = *src;
    if (src->body) {
        char *b = tk_malloc(src->body_len + 1);
        memcpy(b, src->body, src->body_len);
        b[src->body_len] = '\0';
        dst->body = b;
    }
    dst->req = NULL;
}

void tk_out_result_free(struct tk_out_result *res)
{
    if (!res) return;
    if (res->body) {
        tk_wipe((void *)res->body, res->body_len);
        free((void *)res->body);
    }
    res->body = NULL;
    res->body_len = 0;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct tk_out_result *res;
};

static void send_done(const struct tk_out_result *res, void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    tk_out_result_copy(w->res, res);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

tk_rc tk_out_send(struct tk_out *out, const struct tk_out_req *req, struct tk_out_result *res)
{
    memset(res, 0, sizeof *res);
    res->req = req;
    if (on_thread == out) {
        res->error = TK_OUT_FAILED;
        snprintf(res->message, sizeof res->message,
                 "tk_out_send was called on the outbound thread (it would wait for itself)");
        return TK_EINTERNAL;
    }
    struct waiter w = {.done = false, .res = res};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct tk_err e;
    tk_rc rc = tk_out_submit(out, req, send_done, &w, NULL, &e);
    if (rc != TK_OK) {
        res->error = !strcmp(e.code, "busy") ? TK_OUT_BUSY : TK_OUT_STOPPING;
        snprintf(res->message, sizeof res->message, "%s", e.msg);
    } else {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    res->req = req;
    if (res->error == TK_OUT_OK) return TK_OK;
    return res->error == TK_OUT_BUSY || res->error == TK_OUT_STOPPING ? TK_EUNAVAIL : TK_EUPSTREAM;
}

/* ---- masking ---- */

/* Replace every occurrence of needle (n bytes) in *s (a malloc'd string). */
static void replace_all(char **s, const char *needle, size_t n)
{
    if (!n || !strstr(*s, needle)) return;
    struct tk_buf b;
    tk_buf_init(&b, SIZE_MAX / 2);
    const char *p = *s, *hit;
    while ((hit = strstr(p, needle))) {
        tk_buf_add(&b, p, (size_t)(hit - p));
        tk_buf_add(&b, "***", 3);
        p = hit + n;
    }
    tk_buf_addstr(&b, p);
    tk_wipe(*s, strlen(*s));
    free(*s);
    *s = b.data ? b.data : tk_strdup("");
}

char *tk_out_mask(const char *s, const char *const *mask, size_t nmask)
{
    char *r = tk_strdup(s ? s : "");
    for (size_t i = 0; mask && i < nmask; i++) {
        const char *m = mask[i];
        if (!m || !m[0]) continue;
        replace_all(&r, m, strlen(m));
        /* percent-encoded (query, form), with %20 and with + for spaces */
        char *pe = curl_easy_escape(NULL, m, (int)strlen(m));
        if (pe) {
            replace_all(&r, pe, strlen(pe));
            char *lower = tk_strdup(pe);
            for (char *q = lower; *q; q++)
                if (*q == '%' && q[1] && q[2]) {
                    for (int k = 1; k <= 2; k++)
                        if (q[k] >= 'A' && q[k] <= 'F') q[k] = (char)(q[k] - 'A' + 'a');
                }
            replace_all(&r, lower, strlen(lower));
            free(lower);
            struct tk_buf plus;
            tk_buf_init(&plus, SIZE_MAX / 2);
            for (const char *q = pe; *q; q++) {
                if (!strncmp(q, "%20", 3)) {
                    tk_buf_add(&plus, "+", 1);
                    q += 2;
                } else {
                    tk_buf_add(&plus, q, 1);
                }
            }
            if (plus.data) replace_all(&r, plus.data, plus.len);
            tk_buf_free(&plus);
            curl_free(pe);
        }
        /* JSON-escaped, and with / escaped as \/ */
        struct tk_buf js;
        tk_buf_init(&js, SIZE_MAX / 2);
        tk_buf_json_str(&js, m);
        if (js.len >= 2) {
            js.data[js.len - 1] = '\0';
            replace_all(&r, js.data + 1, js.len - 2);
            struct tk_buf sl;
            tk_buf_init(&sl, SIZE_MAX / 2);
            for (const char *q = js.data + 1; *q; q++) {
                if (*q == '/')
                    tk_buf_add(&sl, "\\/", 2);
                else
                    tk_buf_add(&sl, q, 1);
            }
            if (sl.data && strcmp(sl.data, js.data + 1)) replace_all(&r, sl.data, sl.len);
            tk_buf_free_wipe(&sl);
        }
        tk_buf_free_wipe(&js);
    }
    return r;
}

/* A member or parameter name whose value is a credential. */
static bool sensitive_name(const char *name, size_t n)
{
    char low[64];
    if (n >= sizeof low) n = sizeof low - 1;
    for (size_t i = 0; i < n; i++) /* lower case, and header-style names as member names */
        low[i] = name[i] == '-'
                     ? '_'
                     : (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    low[n] = '\0';
    static const char *const exact[] = {"code", "key", "sig", "pass", "pwd", "otp", "pin"};
    for (size_t i = 0; i < TK_NELEM(exact); i++)
        if (!strcmp(low, exact[i])) return true;
    static const char *const harmless_ends[] = {"_endpoint", "_supported", "_type",    "_uri",
                                                "_url",      "_method",    "_methods", "_in",
                                                "_at",       "_alg",       "_hint",    "_values"};
    for (size_t i = 0; i < TK_NELEM(harmless_ends); i++) {
        size_t el = strlen(harmless_ends[i]);
        if (n > el && !strcmp(low + n - el, harmless_ends[i])) return false;
    }
    static const char *const parts[] = {"secret",    "token",      "password",  "passwd",
                                        "assertion", "verifier",   "private",   "api_key",
                                        "apikey",    "credential", "signature", "session",
                                        "cookie",    "auth",       "_code",     "access_key"};
    for (size_t i = 0; i < TK_NELEM(parts); i++)
        if (strstr(low, parts[i])) return true;
    return false;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode p[0..n) by form rules (%XX, + for space) into a malloc'd string
 * (NULs decoded from %00 cut it there: for comparing only). */
static char *form_decode(const char *p, size_t n)
{
    char *out = tk_malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (p[i] == '+') {
            out[o++] = ' ';
        } else if (p[i] == '%' && i + 2 < n && (h = hexval(p[i + 1])) >= 0 &&
                   (l = hexval(p[i + 2])) >= 0) {
            out[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = p[i];
        }
    }
    out[o] = '\0';
    return out;
}

static bool holds_secret(const char *s, const char *const *mask, size_t nmask)
{
    for (size_t i = 0; mask && i < nmask; i++)
        if (mask[i] && mask[i][0] && strstr(s, mask[i])) return true;
    return false;
}

/* name=value&... with a value replaced by *** when its name is sensitive
 * or, decoded, it holds one of the secrets (whatever its encoding). */
static char *mask_form(const char *s, size_t len, const char *const *mask, size_t nmask)
{
    struct tk_buf b;
    tk_buf_init(&b, SIZE_MAX / 2);
    const char *p = s, *end = s + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        char *name = form_decode(p, (size_t)((eq ? eq : pe) - p));
        char *value = eq ? form_decode(eq + 1, (size_t)(pe - eq - 1)) : NULL;
        if (holds_secret(name, mask, nmask)) {
            tk_buf_add(&b, "***", 3);
        } else if (eq && (sensitive_name(name, strlen(name)) || holds_secret(value, mask, nmask))) {
            tk_buf_add(&b, p, (size_t)(eq - p) + 1);
            tk_buf_add(&b, "***", 3);
        } else {
            tk_buf_add(&b, p, (size_t)(pe - p));
        }
        if (value) {
            tk_wipe(value, strlen(value));
            free(value);
        }
        free(name);
        if (amp) tk_buf_add(&b, "&", 1);
        p = amp ? amp + 1 : end;
    }
    return b.data ? b.data : tk_strdup("");
}

static char *mask_url(const char *url, const char *const *mask, size_t nmask)
{
    /* user:password@ in the authority */
    const char *sch = strstr(url, "://");
    struct tk_buf b;
    tk_buf_init(&b, SIZE_MAX / 2);
    const char *rest = url;
    if (sch) {
        const char *auth = sch + 3;
        size_t al = strcspn(auth, "/?#");
        const char *at = memchr(auth, '@', al);
        if (at) {
            const char *colon = memchr(auth, ':', (size_t)(at - auth));
            tk_buf_add(&b, url, (size_t)((colon ? colon : at) - url));
            tk_buf_addstr(&b, colon ? ":***" : "");
            rest = at;
        }
    }
    const char *hash = strchr(rest, '#');
    size_t before = hash ? (size_t)(hash - rest) : strlen(rest);
    const char *q = memchr(rest, '?', before);
    if (q) {
        tk_buf_add(&b, rest, (size_t)(q + 1 - rest));
        char *m = mask_form(q + 1, before - (size_t)(q + 1 - rest), mask, nmask);
        tk_buf_addstr(&b, m);
        free(m);
    } else {
        tk_buf_add(&b, rest, before);
    }
    if (hash) tk_buf_addstr(&b, "#***"); /* fragments carry tokens (implicit flow) */
    if (!b.data) tk_buf_addstr(&b, "");
    return b.data;
}

/* Members with sensitive names become "***"; strings that hold a secret
 * have it replaced (compared decoded, whatever the JSON escapes were). */
static void mask_json(json_t *v, const char *const *mask, size_t nmask)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, x)
        {
            if (!json_is_null(x) && !json_is_object(x) && !json_is_array(x) &&
                sensitive_name(k, strlen(k)))
                json_object_set_new(v, k, json_string("***"));
            else
                mask_json(x, mask, nmask);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) mask_json(x, mask, nmask);
    } else if (json_is_string(v) && holds_secret(json_string_value(v), mask, nmask)) {
        char *m = tk_out_mask(json_string_value(v), mask, nmask);
        if (json_string_set(v, m) != 0) json_string_set(v, "***"); /* not UTF-8 any more */
        free(m);
    }
}

/* Text for a record: NULs replaced, valid UTF-8, cut to max bytes. */
static json_t *record_text(const char *p, size_t n, size_t max, bool *cut)
{
    *cut = n > max;
    if (n > max) n = max;
    char *c = tk_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        c[i] = p[i] ? p[i] : '?';
    c[n] = '\0';
    char *fixed = tk_utf8_fix(c);
    json_t *s = json_string(fixed);
    free(c);
    free(fixed);
    return s ? s : json_string("");
}

static bool ct_is(const char *ct, const char *what)
{
    size_t n = strlen(what);
    while (*ct == ' ')
        ct++;
    return !strncasecmp(ct, what, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static bool ct_json(const char *ct)
{
    if (ct_is(ct, "application/json")) return true;
    const char *semi = strchr(ct, ';');
    size_t n = semi ? (size_t)(semi - ct) : strlen(ct);
    return n > 5 && !strncasecmp(ct + n - 5, "+json", 5);
}

/* A body masked by its content type, then for the listed secrets. */
static char *mask_body(const char *body, size_t len, const char *ct, bool form_default,
                       const char *const *mask, size_t nmask)
{
    char *m = NULL;
    bool looks_json = false;
    for (size_t i = 0; i < len; i++)
        if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t') {
            looks_json = body[i] == '{' || body[i] == '[';
            break;
        }
    if (ct_json(ct) || looks_json) {
        json_error_t je;
        json_t *j = json_loadb(body, len, JSON_DECODE_ANY, &je);
        if (j) {
            mask_json(j, mask, nmask);
            m = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
            json_decref(j);
        }
    }
    if (!m && (ct_is(ct, "application/x-www-form-urlencoded") || (!ct[0] && form_default)))
        m = mask_form(body, len, mask, nmask);
    if (!m) {
        m = tk_malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            m[i] = body[i] ? body[i] : '?';
        m[len] = '\0';
    }
    char *r = tk_out_mask(m, mask, nmask);
    tk_wipe(m, strlen(m));
    free(m);
    return r;
}

static char *mask_header(const char *h, const char *const *mask, size_t nmask)
{
    const char *colon = strchr(h, ':');
    size_t nl = colon ? (size_t)(colon - h) : strlen(h);
    if (colon && sensitive_name(h, nl)) {
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        /* keep the scheme of Authorization: Basic ***, Bearer *** */
        size_t sl = strcspn(v, " ");
        bool scheme = (nl == 13 && !strncasecmp(h, "authorization", 13)) ||
                      (nl == 19 && !strncasecmp(h, "proxy-authorization", 19));
        char buf[128];
        if (scheme && v[sl] == ' ' && sl < 32)
            snprintf(buf, sizeof buf, "%.*s: %.*s ***", (int)(nl < 64 ? nl : 64), h, (int)sl, v);
        else
            snprintf(buf, sizeof buf, "%.*s: ***", (int)(nl < 64 ? nl : 64), h);
        return tk_out_mask(buf, mask, nmask);
    }
    return tk_out_mask(h, mask, nmask);
}

static void set_text(json_t *o, const char *key, const char *s, size_t max, const char *const *mask,
                     size_t nmask)
{
    char *m = tk_out_mask(s, mask, nmask);
    bool cut;
    json_object_set_new(o, key, record_text(m, strlen(m), max, &cut));
    tk_wipe(m, strlen(m));
    free(m);
}

json_t *tk_out_record(const struct tk_out_req *req, const struct tk_out_result *res)
{
    const char *const *mask = req ? req->mask : NULL;
    size_t nmask = req && req->mask ? req->nmask : 0;
    json_t *o = json_object();
    const char *ct_req = "";
    if (req) {
        set_text(o, "method",
                 req->method ? req->method
                 : req->body ? "POST"
                             : "GET",
                 32, mask, nmask);
        char *u = mask_url(req->url ? req->url : "", mask, nmask);
        set_text(o, "url", u, 2048, mask, nmask);
        free(u);
        json_t *hs = json_array();
        for (size_t i = 0; req->headers && i < req->nheaders && i < HEADERS_MAX; i++) {
            const char *h = req->headers[i] ? req->headers[i] : "";
            if (!strncasecmp(h, "content-type:", 13)) {
                ct_req = h + 13;
                while (*ct_req == ' ')
                    ct_req++;
            }
            char *m = mask_header(h, mask, nmask);
            bool cut;
            json_array_append_new(hs, record_text(m, strlen(m), 512, &cut));
            tk_wipe(m, strlen(m));
            free(m);
        }
        json_object_set_new(o, "request_headers", hs);
        if (req->body) {
            char *b = mask_body(req->body, req->body_len, ct_req, true, mask, nmask);
            bool cut;
            json_object_set_new(o, "request_body",
                                record_text(b, strlen(b), RECORD_BODY_MAX, &cut));
            if (cut) json_object_set_new(o, "request_body_truncated", json_true());
            tk_wipe(b, strlen(b));
            free(b);
        }
    }
    if (res) {
        json_object_set_new(o, "error",
                            res->error ? json_string(tk_out_error_name(res->error)) : json_null());
        if (res->message[0]) set_text(o, "message", res->message, 512, mask, nmask);
        json_object_set_new(o, "status", res->status ? json_integer(res->status) : json_null());
        if (res->content_type[0]) set_text(o, "content_type", res->content_type, 128, mask, nmask);
        if (res->www_authenticate[0])
            set_text(o, "www_authenticate", res->www_authenticate, 512, mask, nmask);
        if (res->retry_after[0]) set_text(o, "retry_after", res->retry_after, 64, mask, nmask);
        if (res->location[0]) {
            char *l = mask_url(res->location, mask, nmask);
            set_text(o, "location", l, 1024, mask, nmask);
            free(l);
        }
        if (res->body) {
            char *b = mask_body(res->body, res->body_len, res->content_type, false, mask, nmask);
            bool cut;
            json_object_set_new(o, "response_body",
                                record_text(b, strlen(b), RECORD_BODY_MAX, &cut));
            json_object_set_new(o, "response_bytes", json_integer((json_int_t)res->body_len));
            if (cut) json_object_set_new(o, "response_body_truncated", json_true());
            tk_wipe(b, strlen(b));
            free(b);
        }
        json_object_set_new(o, "total_ms", json_integer(res->total_us / 1000));
    }
    return o;
}
