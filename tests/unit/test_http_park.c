/* test_http_park.c: parked requests and streams (src/http/http.c) over a
 * loopback socket: park and resume from another thread, the deadline (504),
 * stop (503), resume racing the deadline and the stop (exactly one answer),
 * 50 parked requests while a plain request answers, a client gone before
 * the resume; streams written from another thread, max_streams, a slow
 * reader cut, and streams ended at stop. */
#include "unit.h"

#include "../../src/http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 128
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tk_parked *slots[SLOTS];
static struct tk_stream *streams[8];
static atomic_int nstreams;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GET /park?i=N&ms=M: park for M ms, the handle in slots[N]. */
static void h_park(struct tk_req *r)
{
    int64_t i = 0, ms = 10000;
    const char *a = tk_req_query(r, "i"), *b = tk_req_query(r, "ms");
    if (a) tk_parse_int(a, 0, SLOTS - 1, &i);
    if (b) tk_parse_int(b, 1, 3600000, &ms);
    struct tk_parked *p = tk_req_park(r, ms);
    if (!CHECK(p)) return;
    pthread_mutex_lock(&slot_mu);
    slots[i] = p;
    pthread_mutex_unlock(&slot_mu);
}

/* GET /park_late: waits until late_go, then parks (the node stopping meanwhile). */
static atomic_int late_in, late_go;
static void h_park_late(struct tk_req *r)
{
    atomic_store(&late_in, 1);
    for (int k = 0; k < 4000 && !atomic_load(&late_go); k++)
        sleep_ms(5);
    struct tk_parked *p = tk_req_park(r, 60000);
    if (!CHECK(p)) return;
    CHECK(tk_parked_answered(p)); /* answered 503 at once */
    CHECK(!tk_parked_resume(p, 200, json_object()));
}

static void h_hello(struct tk_req *r)
{
    tk_reply_json(r, 200, json_pack("{s:s}", "hello", "world"));
}

static void h_stream(struct tk_req *r)
{
    struct tk_stream *s = tk_reply_stream(r);
    if (!s) return;
    int n = atomic_fetch_add(&nstreams, 1);
    if (n < 8)
        streams[n] = s;
    else
        tk_stream_close(s);
}

static const struct tk_route routes[] = {
    {"GET", "/park", h_park, .flags = 0},
    {"GET", "/hello", h_hello, .flags = 0},
    {"GET", "/park_late", h_park_late, .flags = 0},
    {"GET", "/stream", h_stream, .flags = 0},
};

static int start_max_parked; /* 0: the default */
static struct tk_http *start(size_t stream_buffer, int max_streams)
{
    struct tk_http_opts o = {
        .listen = "127.0.0.1:0",
        .threads = 2,
        .max_body = 65536,
        .max_header = 16384,
        .max_connections = 200,
        .max_connections_per_ip = 200,
        .idle_timeout = 10,
        .header_timeout = 10,
        .routes = routes,
        .nroutes = TK_NELEM(routes),
        .stream_buffer = stream_buffer,
        .max_streams = max_streams,
        .max_parked = start_max_parked,
    };
    struct tk_http *h = NULL;
    struct tk_err e;
    memset(slots, 0, sizeof slots);
    atomic_store(&nstreams, 0);
    memset(streams, 0, sizeof streams);
    if (!CHECK_OK(tk_http_start(&o, &h, &e), &e)) return NULL;
    return h;
}

static int connect_to(struct tk_http *h)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tk_http_port(h))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_get(int fd, const char *target)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", target);
    (void)!send(fd, req, (size_t)n, MSG_NOSIGNAL);
}

/* Read until the server closes (or n - 1 bytes). */
static size_t read_all(int fd, char *out, size_t n)
{
    size_t got = 0;
    for (;;) {
        ssize_t rd = recv(fd, out + got, n - 1 - got, 0);
        if (rd <= 0) break;
        got += (size_t)rd;
        if (got == n - 1) break;
    }
    out[got] = '\0';
    return got;
}

static int status_of(const char *resp)
{
    int st = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &st) != 1) return -1;
    return st;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Read from fd until needle shows up (or timeout); true if seen. */
static bool read_until(int fd, const char *needle, char *buf, size_t n)
{
    size_t got = 0;
    buf[0] = '\0';
    while (got < n - 1) {
        ssize_t rd = recv(fd, buf + got, n - 1 - got, 0);
        if (rd <= 0) break;
        got += (size_t)rd;
        buf[got] = '\0';
        if (strstr(buf, needle)) return true;
    }
    return false;
}

struct client {
    pthread_t t;
    struct tk_http *h;
    char target[128];
    char resp[4096];
    int status;
    int answers; /* status lines received: must be 1 */
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    int fd = connect_to(c->h);
    if (fd < 0) {
        c->status = -1;
        return NULL;
    }
    send_get(fd, c->target);
    read_all(fd, c->resp, sizeof c->resp);
    close(fd);
    c->status = status_of(c->resp);
    c->answers = count_of(c->resp, "HTTP/1.1 ");
    return NULL;
}

static void client_start(struct client *c, struct tk_http *h, const char *target)
{
    memset(c, 0, sizeof *c);
    c->h = h;
    snprintf(c->target, sizeof c->target, "%s", target);
    pthread_create(&c->t, NULL, client_main, c);
}

/* Wait (bounded) until slot i holds a handle; take it. */
static struct tk_parked *take_slot(int i)
{
    for (int k = 0; k < 2000; k++) {
        pthread_mutex_lock(&slot_mu);
        struct tk_parked *p = slots[i];
        slots[i] = NULL;
        pthread_mutex_unlock(&slot_mu);
        if (p) return p;
        sleep_ms(5);
    }
    return NULL;
}

static bool wait_parked(struct tk_http *h, uint64_t n)
{
    struct tk_http_park_stats st;
    for (int k = 0; k < 2000; k++) {
        tk_http_park_stats(h, &st);
        if (st.parked_now == n) return true;
        sleep_ms(5);
    }
    return false;
}

static void resume_hdr(struct tk_req *r, void *arg)
{
    tk_reply_header(r, "X-Resumed", (const char *)arg);
    tk_reply_json(r, 201, json_pack("{s:s}", "via", "callback"));
}

struct resumer {
    pthread_t t;
    struct tk_parked *p;
    int delay_ms;
    bool won;
};

static void *resumer_main(void *arg)
{
    struct resumer *x = arg;
    sleep_ms(x->delay_ms);
    x->won = tk_parked_resume(x->p, 200, json_pack("{s:b}", "resumed", 1));
    return NULL;
}

void test_http_park_resume(void)
{
    struct tk_http *h = start(0, 0);
    if (!h) return;
    /* resumed from another thread */
    struct client c;
    client_start(&c, h, "/park?i=0");
    struct tk_parked *p = take_slot(0);
    if (CHECK(p)) {
        CHECK(wait_parked(h, 1));
        struct resumer x = {.p = p, .delay_ms = 20};
        pthread_create(&x.t, NULL, resumer_main, &x);
        pthread_join(x.t, NULL);
        CHECK(x.won);
    }
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 200);
    CHECK(strstr(c.resp, "{\"resumed\":true}") != NULL);
    /* the callback variant: tk_reply_* on an HTTP thread */
    client_start(&c, h, "/park?i=1");
    p = take_slot(1);
    if (CHECK(p)) CHECK(tk_parked_resume_with(p, resume_hdr, "yes"));
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 201);
    CHECK(strstr(c.resp, "X-Resumed: yes") != NULL);
    CHECK(strstr(c.resp, "\"via\":\"callback\"") != NULL);
    /* the deadline: 504 parked_timeout; a late resume is told it lost */
    client_start(&c, h, "/park?i=2&ms=100");
    p = take_slot(2);
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 504);
    CHECK(strstr(c.resp, "\"error\":\"parked_timeout\"") != NULL);
    if (CHECK(p)) {
        CHECK(tk_parked_answered(p));
        CHECK(!tk_parked_resume(p, 200, json_object()));
    }
    /* keep-alive: after a resumed answer, the connection serves the next request */
    {
        int kfd = connect_to(h);
        static const char req[] = "GET /park?i=4 HTTP/1.1\r\nHost: localhost\r\n\r\n";
        (void)!send(kfd, req, sizeof req - 1, MSG_NOSIGNAL);
        p = take_slot(4);
        if (CHECK(p)) CHECK(tk_parked_resume(p, 200, json_pack("{s:i}", "n", 1)));
        char kb[4096];
        CHECK(read_until(kfd, "{\"n\":1}", kb, sizeof kb));
        static const char req2[] =
            "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        (void)!send(kfd, req2, sizeof req2 - 1, MSG_NOSIGNAL);
        read_all(kfd, kb, sizeof kb);
        CHECK_EQ_INT(status_of(kb), 200);
        CHECK(strstr(kb, "\"hello\":\"world\"") != NULL);
        close(kfd);
    }
    /* a client gone before the resume: safe, and the server goes on */
    int fd = connect_to(h);
    send_get(fd, "/park?i=3");
    p = take_slot(3);
    CHECK(wait_parked(h, 1));
    close(fd);
    if (CHECK(p)) tk_parked_resume(p, 200, json_object());
    client_start(&c, h, "/hello");
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 200);
    struct tk_http_park_stats st;
    tk_http_park_stats(h, &st);
    CHECK_EQ_INT(st.parked_now, 0);
    CHECK_EQ_INT(st.parked_total, 5);
    CHECK_EQ_INT(st.parked_timeouts, 1);
    CHECK_EQ_INT(st.parked_answered, 4);
    /* the same on the metrics registry */
    struct tk_buf m;
    tk_buf_init(&m, 1 << 20);
    tk_http_metrics(h, &m);
    CHECK(m.data && strstr(m.data, "\ntokend_http_parked 0\n"));
    CHECK(m.data && strstr(m.data, "\ntokend_http_parked_total{result=\"answered\"} 4\n"));
    CHECK(m.data && strstr(m.data, "\ntokend_http_parked_total{result=\"timeout\"} 1\n"));
    CHECK(m.data && strstr(m.data, "\ntokend_http_parked_total{result=\"stopped\"} 0\n"));
    tk_buf_free(&m);
    tk_http_stop(h);
}

/* 50 parked requests hold no worker: a plain request answers meanwhile
 * (2 worker threads); then stop answers them all 503 node_stopping. */
void test_http_park_many_and_stop(void)
{
    struct tk_http *h = start(0, 0);
    if (!h) return;
    enum { N = 50 };
    struct client *cs = calloc(N, sizeof *cs);
    char t[64];
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof t, "/park?i=%d&ms=60000", i);
        client_start(&cs[i], h, t);
    }
    CHECK(wait_parked(h, N));
    struct client c;
    int64_t t0 = tk_mono_us();
    client_start(&c, h, "/hello");
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 200);
    CHECK((tk_mono_us() - t0) < 5000000);
    struct tk_parked *ps[N];
    for (int i = 0; i < N; i++)
        ps[i] = take_slot(i);
    struct client late;
    atomic_store(&late_in, 0);
    atomic_store(&late_go, 0);
    client_start(&late, h, "/park_late");
    for (int k = 0; k < 2000 && !atomic_load(&late_in); k++)
        sleep_ms(5);
    tk_http_quiesce(h);
    atomic_store(&late_go, 1); /* parks after the stop began */
    pthread_join(late.t, NULL);
    CHECK_EQ_INT(late.status, 503);
    CHECK(strstr(late.resp, "\"error\":\"node_stopping\"") != NULL);
    int stopped = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(cs[i].t, NULL);
        if (cs[i].status == 503 && strstr(cs[i].resp, "\"error\":\"node_stopping\"") &&
            strstr(cs[i].resp, "Retry-After: 1"))
            stopped++;
        CHECK_EQ_INT(cs[i].answers, 1);
    }
    CHECK_EQ_INT(stopped, N);
    for (int i = 0; i < N; i++)
        if (ps[i]) CHECK(!tk_parked_resume(ps[i], 200, NULL));
    struct tk_http_park_stats st;
    tk_http_park_stats(h, &st);
    CHECK_EQ_INT(st.parked_stopped, N + 1);
    CHECK_EQ_INT(st.parked_answered, 0);
    CHECK(tk_http_drain(h, 5000));
    tk_http_stop(h);
    free(cs);
}

/* max_parked: a park past the cap is answered 503 too_many_parked at once
 * (the holder still gives the handle up), and a place frees when a parked
 * request ends. */
void test_http_park_cap(void)
{
    start_max_parked = 2;
    struct tk_http *h = start(0, 0);
    start_max_parked = 0;
    if (!h) return;
    struct client a, b, c, d;
    client_start(&a, h, "/park?i=0&ms=60000");
    client_start(&b, h, "/park?i=1&ms=60000");
    CHECK(wait_parked(h, 2));
    client_start(&c, h, "/park?i=2&ms=60000");
    struct tk_parked *pc = take_slot(2);
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 503);
    CHECK(strstr(c.resp, "\"error\":\"too_many_parked\"") != NULL);
    CHECK(strstr(c.resp, "max_parked") != NULL);
    if (CHECK(pc)) {
        CHECK(tk_parked_answered(pc));
        CHECK(!tk_parked_resume(pc, 200, NULL));
    }
    struct tk_parked *pa = take_slot(0), *pb = take_slot(1);
    if (CHECK(pa)) CHECK(tk_parked_resume(pa, 200, NULL));
    pthread_join(a.t, NULL);
    CHECK_EQ_INT(a.status, 200);
    CHECK(wait_parked(h, 1));
    client_start(&d, h, "/park?i=3&ms=60000"); /* the freed place */
    struct tk_parked *pd = take_slot(3);
    CHECK(wait_parked(h, 2));
    if (CHECK(pd)) CHECK(tk_parked_resume(pd, 200, NULL));
    if (CHECK(pb)) CHECK(tk_parked_resume(pb, 200, NULL));
    pthread_join(b.t, NULL);
    pthread_join(d.t, NULL);
    CHECK_EQ_INT(b.status, 200);
    CHECK_EQ_INT(d.status, 200);
    struct tk_http_park_stats st;
    tk_http_park_stats(h, &st);
    CHECK_EQ_INT(st.parked_refused, 1);
    CHECK_EQ_INT(st.parked_answered, 3);
    struct tk_buf m;
    tk_buf_init(&m, 1 << 20);
    tk_http_metrics(h, &m);
    CHECK(m.data && strstr(m.data, "\ntokend_http_parked_total{result=\"refused\"} 1\n"));
    tk_buf_free(&m);
    tk_http_stop(h);
}

/* Resume racing the deadline, then resume racing stop: every request gets
 * exactly one answer, and a resume reports true exactly when its answer is
 * the one sent. */
void test_http_park_race(void)
{
    struct tk_http *h = start(0, 0);
    if (!h) return;
    enum { N = 40 };
    struct client *cs = calloc(N, sizeof *cs);
    struct resumer *xs = calloc(N, sizeof *xs);
    char t[64];
    /* deadline 250 ms; resumes spread around it (the sweeper ticks every 250 ms) */
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof t, "/park?i=%d&ms=250", i);
        client_start(&cs[i], h, t);
    }
    for (int i = 0; i < N; i++) {
        xs[i].p = take_slot(i);
        xs[i].delay_ms = (i * 37) % 600;
        if (CHECK(xs[i].p)) pthread_create(&xs[i].t, NULL, resumer_main, &xs[i]);
    }
    int won = 0, ok200 = 0, t504 = 0;
    for (int i = 0; i < N; i++) {
        if (xs[i].p) pthread_join(xs[i].t, NULL);
        pthread_join(cs[i].t, NULL);
        won += xs[i].won;
        ok200 += cs[i].status == 200;
        t504 += cs[i].status == 504;
        CHECK_EQ_INT(cs[i].answers, 1);
        if (xs[i].won != (cs[i].status == 200))
            FAILF("request %d: resume %d, status %d", i, xs[i].won, cs[i].status);
    }
    CHECK_EQ_INT(ok200 + t504, N);
    CHECK_EQ_INT(won, ok200);
    /* resume racing stop */
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof t, "/park?i=%d&ms=60000", i);
        client_start(&cs[i], h, t);
    }
    for (int i = 0; i < N; i++) {
        xs[i].p = take_slot(i);
        xs[i].won = false;
        xs[i].delay_ms = i % 3;
    }
    CHECK(wait_parked(h, N));
    for (int i = 0; i < N; i++)
        if (xs[i].p) pthread_create(&xs[i].t, NULL, resumer_main, &xs[i]);
    tk_http_quiesce(h);
    won = ok200 = 0;
    int s503 = 0;
    for (int i = 0; i < N; i++) {
        if (xs[i].p) pthread_join(xs[i].t, NULL);
        pthread_join(cs[i].t, NULL);
        won += xs[i].won;
        ok200 += cs[i].status == 200;
        s503 += cs[i].status == 503;
        CHECK_EQ_INT(cs[i].answers, 1);
    }
    CHECK_EQ_INT(ok200 + s503, N);
    CHECK_EQ_INT(won, ok200);
    tk_http_drain(h, 5000);
    tk_http_stop(h);
    free(cs);
    free(xs);
}

static struct tk_stream *wait_stream(int i)
{
    for (int k = 0; k < 2000 && atomic_load(&nstreams) <= i; k++)
        sleep_ms(5);
    return atomic_load(&nstreams) > i ? streams[i] : NULL;
}

void test_http_streams(void)
{
    struct tk_http *h = start(8192, 2);
    if (!h) return;
    char buf[65536];
    /* written from this thread, ended by close */
    int fd = connect_to(h);
    send_get(fd, "/stream");
    struct tk_stream *s = wait_stream(0);
    if (CHECK(s)) {
        CHECK_EQ_INT(tk_stream_write(s, "id: 1\ndata: one\n\n", 17), TK_OK);
        CHECK(read_until(fd, "data: one", buf, sizeof buf));
        CHECK(strstr(buf, "Content-Type: text/event-stream") != NULL);
        sleep_ms(50); /* idle: the connection is suspended now */
        CHECK_EQ_INT(tk_stream_write(s, "id: 2\ndata: two\n\n", 17), TK_OK);
        CHECK(read_until(fd, "data: two", buf, sizeof buf));
        tk_stream_close(s);
        read_all(fd, buf, sizeof buf);
        CHECK(strstr(buf, "0\r\n\r\n") != NULL); /* the last chunk */
    }
    close(fd);
    /* max_streams = 2: the third is refused */
    int a = connect_to(h), b = connect_to(h);
    send_get(a, "/stream");
    struct tk_stream *sa = wait_stream(1);
    send_get(b, "/stream");
    struct tk_stream *sb = wait_stream(2);
    CHECK(sa && sb);
    struct client c;
    client_start(&c, h, "/stream");
    pthread_join(c.t, NULL);
    CHECK_EQ_INT(c.status, 503);
    CHECK(strstr(c.resp, "\"error\":\"too_many_streams\"") != NULL);
    /* a slow reader (b reads nothing) is cut once 8 KiB are pending */
    static char chunk[1024];
    memset(chunk, 'x', sizeof chunk);
    memcpy(chunk, "data: ", 6);
    chunk[sizeof chunk - 2] = '\n';
    chunk[sizeof chunk - 1] = '\n';
    tk_rc rc = TK_OK;
    for (int i = 0; i < 100000 && rc == TK_OK; i++) {
        rc = tk_stream_write(sb, chunk, sizeof chunk);
        if (i % 64 == 0) sleep_ms(1);
    }
    CHECK_EQ_INT(rc, TK_ETOOBIG);
    CHECK(!tk_stream_alive(sb));
    CHECK_EQ_INT(tk_stream_write(sb, "data: x\n\n", 9), TK_EUNAVAIL);
    tk_stream_close(sb);
    struct tk_http_park_stats st;
    tk_http_park_stats(h, &st);
    CHECK_EQ_INT(st.streams_cut, 1);
    CHECK_EQ_INT(st.streams_refused, 1);
    {
        struct tk_buf m;
        tk_buf_init(&m, 1 << 20);
        tk_http_metrics(h, &m);
        CHECK(m.data && strstr(m.data, "\ntokend_http_streams_cut_total 1\n"));
        CHECK(m.data && strstr(m.data, "\ntokend_http_streams_total{result=\"refused\"} 1\n"));
        tk_buf_free(&m);
    }
    close(b);
    /* stop: the open stream gets event: end, the connection closes */
    CHECK_EQ_INT(tk_stream_write(sa, "data: hi\n\n", 10), TK_OK);
    CHECK(read_until(a, "data: hi", buf, sizeof buf));
    tk_http_quiesce(h);
    CHECK(read_until(a, "event: end\ndata: {\"reason\":\"node_stopping\"}", buf, sizeof buf));
    CHECK(tk_http_drain(h, 5000));
    tk_stream_close(sa);
    close(a);
    tk_http_stop(h);
}

/* ---- the event-stream parser (src/http/sse.h) ---- */
#include "../../src/http/sse.h"

struct got {
    char all[2048];
    int n;
};

static bool on_ev(const struct tk_sse_event *ev, void *arg)
{
    struct got *g = arg;
    size_t l = strlen(g->all);
    snprintf(g->all + l, sizeof g->all - l, "[%s|%s|%s]", ev->event, ev->id, ev->data);
    g->n++;
    return true;
}

static tk_rc feed_bytewise(struct tk_sse *p, const char *s, struct got *g, struct tk_err *e)
{
    tk_rc rc = TK_OK;
    for (size_t i = 0; s[i] && rc == TK_OK; i++)
        rc = tk_sse_feed(p, s + i, 1, on_ev, g, e);
    return rc;
}

void test_http_sse_parse(void)
{
    struct tk_sse p;
    struct tk_err e;
    struct got g = {{0}, 0};
    static const char text[] = "\xEF\xBB\xBFretry: 2000\n: events after seq 0\n\n"
                               "id: 7\ndata: {\"seq\":7}\n\n: heartbeat\n\n"
                               "data:a\r\ndata: b\r\rdata\n\nid\nevent: end\ndata: x\n\n"
                               "data: no blank line at the end";
    tk_sse_init(&p, 256, 1024);
    CHECK_OK(tk_sse_feed(&p, text, sizeof text - 1, on_ev, &g, &e), &e);
    CHECK_EQ_STR(g.all, "[message|7|{\"seq\":7}][message|7|a\nb][message|7|][end||x]");
    CHECK_EQ_INT(p.retry_ms, 2000);
    tk_sse_free(&p);
    /* the same, a byte at a time */
    struct got g2 = {{0}, 0};
    tk_sse_init(&p, 256, 1024);
    CHECK_OK(feed_bytewise(&p, text, &g2, &e), &e);
    CHECK_EQ_STR(g2.all, g.all);
    tk_sse_free(&p);
    /* hostile: a line with no end, data over the limit, a long id */
    char big[600];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    tk_sse_init(&p, 256, 1024);
    CHECK_EQ_INT(tk_sse_feed(&p, big, strlen(big), on_ev, &g, &e), TK_ETOOBIG);
    CHECK_EQ_STR(e.code, "sse_too_large");
    CHECK_EQ_INT(tk_sse_feed(&p, "\n\n", 2, on_ev, &g, &e), TK_OK); /* takes nothing more */
    tk_sse_free(&p);
    tk_sse_init(&p, 256, 1024);
    tk_rc rc = TK_OK;
    for (int i = 0; i < 20 && rc == TK_OK; i++) {
        static const char line[] = "data: 0123456789012345678901234567890123456789"
                                   "01234567890123456789\n";
        rc = tk_sse_feed(&p, line, sizeof line - 1, on_ev, &g, &e);
    }
    CHECK_EQ_INT(rc, TK_ETOOBIG);
    CHECK_EQ_STR(e.field, "data");
    tk_sse_free(&p);
    char idl[200] = "id: ";
    memset(idl + 4, '9', 150);
    idl[154] = '\n';
    idl[155] = '\0';
    tk_sse_init(&p, 256, 1024);
    CHECK_EQ_INT(tk_sse_feed(&p, idl, strlen(idl), on_ev, &g, &e), TK_ETOOBIG);
    CHECK_EQ_STR(e.field, "id");
    tk_sse_free(&p);
}
