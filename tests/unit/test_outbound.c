/* test_outbound.c: src/outbound against a small HTTP server on loopback
 * that this file runs in a thread (no traffic leaves the machine): answers,
 * timeouts, a slowloris upstream, bodies past the cap, redirects not
 * followed, refused connections, public_only, cancel, stop with requests in
 * flight, the concurrency cap, the masked record, and TLS verification
 * against a libmicrohttpd server with a certificate made here. */
#include "unit.h"

#include "../../src/common/metrics.h"
#include "../../src/outbound/outbound.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the loopback server ---- */

#define SRV_CONNS 256

struct srv {
    int fd, port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int accepted, hits, hits_ok, open_now, open_max;
    atomic_llong bytes_sent; /* by /bigstream */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool release;     /* /hold and /slow answer when set (or at stop) */
    char last[16384]; /* the last request head and body (under mu) */
    pthread_t conns[SRV_CONNS];
    int nconns;
};

struct conn {
    struct srv *s;
    int fd;
};

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void reply(int fd, const char *status, const char *ctype, const char *extra,
                  const char *body)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: "
                     "close\r\n\r\n",
                     status, ctype, strlen(body), extra ? extra : "");
    if (send_all(fd, head, (size_t)n)) send_all(fd, body, strlen(body));
}

/* Wait for release or stop, at most ms. */
static void hold(struct srv *s, int ms)
{
    int64_t end = tk_mono_ms() + ms;
    pthread_mutex_lock(&s->mu);
    while (!s->release && !atomic_load(&s->stop) && tk_mono_ms() < end) {
        pthread_mutex_unlock(&s->mu);
        usleep(5000);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct srv *s = c->s;
    int fd = c->fd;
    free(c);
    char buf[16384];
    for (int round = 0; round < 100; round++) { /* more than one only for /keep */
        size_t len = 0;
        char *end = NULL;
        bool keep = false;
        int64_t deadline = tk_mono_ms() + 5000;
        while (!end && len < sizeof buf - 1 && tk_mono_ms() < deadline) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 50) <= 0) continue;
            ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
            if (r <= 0) break;
            len += (size_t)r;
            buf[len] = '\0';
            if ((unsigned char)buf[0] == 0x16) break; /* TLS */
            end = strstr(buf, "\r\n\r\n");
        }
        if (len && (unsigned char)buf[0] == 0x16) { /* a TLS ClientHello: answer in plain HTTP */
            send_all(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
            goto out;
        }
        if (!end) goto out;
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        size_t want =
            (size_t)(end + 4 - buf) + (cl && cl < end ? (size_t)strtoul(cl + 17, NULL, 10) : 0);
        while (len < want && len < sizeof buf - 1 && tk_mono_ms() < deadline) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 50) <= 0) continue;
            ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
            if (r <= 0) break;
            len += (size_t)r;
        }
        buf[len] = '\0';
        atomic_fetch_add(&s->hits, 1);
        pthread_mutex_lock(&s->mu);
        snprintf(s->last, sizeof s->last, "%s", buf);
        pthread_mutex_unlock(&s->mu);
        char path[256] = "";
        sscanf(buf, "%*s %255s", path);
        if (!strcmp(path, "/keep")) {
            const char *k =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nkept";
            keep = send_all(fd, k, strlen(k));
        } else if (!strcmp(path, "/ok")) {
            atomic_fetch_add(&s->hits_ok, 1);
            reply(fd, "200 OK", "application/json", NULL, "{\"ok\":true}");
        } else if (!strcmp(path, "/echo") || !strncmp(path, "/echo?", 6)) {
            reply(fd, "200 OK", "text/plain", NULL, buf);
        } else if (!strcmp(path, "/html")) {
            reply(fd, "502 Bad Gateway", "text/html; charset=utf-8", NULL,
                  "<html><body><h1>502 Bad Gateway</h1>\x01\xff</body></html>");
        } else if (!strcmp(path, "/unauthorized")) {
            reply(fd, "401 Unauthorized", "application/json",
                  "WWW-Authenticate: Bearer error=\"invalid_token\"\r\nRetry-After: 7\r\n",
                  "{\"error\":\"invalid_token\"}");
        } else if (!strncmp(path, "/tokens", 7)) {
            reply(fd, "200 OK", "application/json", NULL,
                  "{\"access_token\":\"AT-SECRET-1\",\"token_type\":\"Bearer\",\"expires_in\":3600,"
                  "\"refresh_token\":\"RT-SECRET-2\",\"note\":\"issued for NOTE-SECRET-3\","
                  "\"nested\":{\"id_token\":\"ID-SECRET-4\"}}");
        } else if (!strcmp(path, "/redirect")) {
            reply(fd, "302 Found", "text/plain", "Location: /ok\r\n", "moved");
        } else if (!strcmp(path, "/slow")) {
            hold(s, 5000);
            reply(fd, "200 OK", "text/plain", NULL, "late");
        } else if (!strcmp(path, "/silent")) {
            hold(s, 5000); /* never answers */
        } else if (!strcmp(path, "/trickle")) {
            const char *h =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n";
            if (send_all(fd, h, strlen(h)))
                for (int i = 0; i < 200 && !atomic_load(&s->stop); i++) {
                    if (!send_all(fd, "x", 1)) break;
                    usleep(50000);
                }
        } else if (!strcmp(path, "/big")) {
            const char *h =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2097152\r\n\r\n";
            static char chunk[65536];
            memset(chunk, 'b', sizeof chunk);
            if (send_all(fd, h, strlen(h)))
                for (int i = 0; i < 32 && send_all(fd, chunk, sizeof chunk); i++) {
                }
        } else if (!strcmp(path, "/bigstream")) { /* no length: the body runs until closed */
            const char *h =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
            static char chunk[65536];
            memset(chunk, 's', sizeof chunk);
            if (send_all(fd, h, strlen(h)))
                for (int i = 0; i < 1024 && !atomic_load(&s->stop); i++) { /* up to 64 MiB */
                    if (!send_all(fd, chunk, sizeof chunk)) break;
                    atomic_fetch_add(&s->bytes_sent, (long long)sizeof chunk);
                }
        } else if (!strcmp(path, "/hold")) {
            int now = atomic_fetch_add(&s->open_now, 1) + 1;
            int m = atomic_load(&s->open_max);
            while (now > m && !atomic_compare_exchange_weak(&s->open_max, &m, now)) {
            }
            hold(s, 20000);
            atomic_fetch_sub(&s->open_now, 1);
            reply(fd, "200 OK", "text/plain", NULL, "held");
        } else {
            reply(fd, "404 Not Found", "text/plain", NULL, "no such path");
        }
        if (!keep) break;
    }
out:
    shutdown(fd, SHUT_WR);
    close(fd);
    return NULL;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&s->accepted, 1);
        pthread_mutex_lock(&s->mu);
        bool room = s->nconns < SRV_CONNS;
        pthread_mutex_unlock(&s->mu);
        if (!room) {
            close(fd);
            continue;
        }
        struct conn *c = tk_malloc(sizeof *c);
        c->s = s;
        c->fd = fd;
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        s->conns[s->nconns++] = t;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

static bool srv_start(struct srv *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 128) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0) {
        close(s->fd);
        return false;
    }
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->thread, NULL, srv_main, s) == 0;
}

static void srv_release(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    s->release = true;
    pthread_mutex_unlock(&s->mu);
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->nconns; i++)
        pthread_join(s->conns[i], NULL);
    close(s->fd);
    pthread_mutex_destroy(&s->mu);
}

static void url(char *out, size_t n, const struct srv *s, const char *path)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", s->port, path);
}

/* ---- collecting results ---- */

#define MAXJOBS 64

struct box {
    pthread_mutex_t mu;
    int calls;                              /* done calls in all */
    int per[MAXJOBS + 1];                   /* by id */
    struct tk_out_result last[MAXJOBS + 1]; /* copies, by id */
};

static void box_init(struct box *b)
{
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
}

static void box_free(struct box *b)
{
    for (int i = 0; i <= MAXJOBS; i++)
        tk_out_result_free(&b->last[i]);
    pthread_mutex_destroy(&b->mu);
}

static void on_done(const struct tk_out_result *res, void *arg)
{
    struct box *b = arg;
    pthread_mutex_lock(&b->mu);
    b->calls++;
    if (res->id <= MAXJOBS) {
        b->per[res->id]++;
        tk_out_result_free(&b->last[res->id]);
        tk_out_result_copy(&b->last[res->id], res);
    }
    pthread_mutex_unlock(&b->mu);
}

static int box_calls(struct box *b)
{
    pthread_mutex_lock(&b->mu);
    int n = b->calls;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* Poll until box has n calls, at most ms. */
static bool box_wait(struct box *b, int n, int ms)
{
    int64_t end = tk_mono_ms() + ms;
    while (box_calls(b) < n && tk_mono_ms() < end)
        usleep(2000);
    return box_calls(b) >= n;
}

static bool wait_int(atomic_int *v, int want, int ms)
{
    int64_t end = tk_mono_ms() + ms;
    while (atomic_load(v) != want && tk_mono_ms() < end)
        usleep(2000);
    return atomic_load(v) == want;
}

static struct tk_out *start_out(const struct tk_out_opts *o)
{
    struct tk_out *out = NULL;
    struct tk_err e;
    struct tk_out_opts def = {0};
    if (!CHECK_OK(tk_out_start(o ? o : &def, &out, &e), &e)) return NULL;
    return out;
}

/* One blocking exchange; res must be freed. */
static tk_rc send1(struct tk_out *out, const char *u, int timeout_ms, bool public_only,
                   struct tk_out_result *res)
{
    struct tk_out_req q = {.url = u, .timeout_ms = timeout_ms, .public_only = public_only};
    return tk_out_send(out, &q, res);
}

/* ---- tests ---- */

void test_outbound_basic(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    url(u, sizeof u, &s, "/ok");
    CHECK_OK(send1(out, u, 0, false, &r), NULL);
    CHECK_EQ_INT(r.error, TK_OUT_OK);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.content_type, "application/json");
    CHECK_EQ_STR(r.body, "{\"ok\":true}");
    CHECK_EQ_INT(r.body_len, 11);
    CHECK(r.total_us > 0);
    tk_out_result_free(&r);

    /* a POST: method, headers and body arrive as given; no Expect, our agent */
    url(u, sizeof u, &s, "/echo");
    const char *hs[] = {"Content-Type: application/json", "X-Trace: abc"};
    struct tk_out_req q = {.method = "POST",
                           .url = u,
                           .headers = hs,
                           .nheaders = 2,
                           .body = "{\"a\":1}",
                           .body_len = 7};
    CHECK_OK(tk_out_send(out, &q, &r), NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body && !strncmp(r.body, "POST /echo HTTP/1.1\r\n", 21));
    CHECK(r.body && strstr(r.body, "\r\nX-Trace: abc\r\n"));
    CHECK(r.body && strstr(r.body, "\r\nContent-Type: application/json\r\n"));
    CHECK(r.body && strstr(r.body, "\r\nUser-Agent: tokend/"));
    CHECK(r.body && !strcasestr(r.body, "\r\nExpect:"));
    CHECK(r.body && strstr(r.body, "\r\n\r\n{\"a\":1}"));
    CHECK(r.req == &q);
    tk_out_result_free(&r);

    /* PUT with a body, DELETE without */
    q.method = "PUT";
    CHECK_OK(tk_out_send(out, &q, &r), NULL);
    CHECK(r.body && !strncmp(r.body, "PUT /echo", 9) && strstr(r.body, "{\"a\":1}"));
    tk_out_result_free(&r);
    struct tk_out_req d = {.method = "DELETE", .url = u};
    CHECK_OK(tk_out_send(out, &d, &r), NULL);
    CHECK(r.body && !strncmp(r.body, "DELETE /echo", 12));
    tk_out_result_free(&r);

    /* the headers a caller needs */
    url(u, sizeof u, &s, "/unauthorized");
    CHECK_OK(send1(out, u, 0, false, &r), NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK_EQ_STR(r.www_authenticate, "Bearer error=\"invalid_token\"");
    CHECK_EQ_STR(r.retry_after, "7");
    tk_out_result_free(&r);

    struct tk_out_stats st;
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.done[TK_OUT_OK], 5);
    CHECK_EQ_INT(st.in_flight, 0);
    CHECK_EQ_INT(st.queued, 0);
    tk_out_free(out);
done:
    srv_stop(&s);
}

void test_outbound_html(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    url(u, sizeof u, &s, "/html");
    /* an HTML error page is an answer: the caller judges status and type */
    CHECK_OK(send1(out, u, 0, false, &r), NULL);
    CHECK_EQ_INT(r.status, 502);
    CHECK_EQ_STR(r.content_type, "text/html; charset=utf-8");
    CHECK(r.body && strstr(r.body, "<h1>502 Bad Gateway</h1>"));
    struct tk_out_req q = {.url = u};
    json_t *rec = tk_out_record(&q, &r);
    char *txt = json_dumps(rec, JSON_COMPACT);
    CHECK(txt && strstr(txt, "\"status\":502"));
    CHECK(txt && strstr(txt, "\\u0001"));      /* control characters escaped */
    CHECK(txt && strstr(txt, "\xef\xbf\xbd")); /* a stray byte became U+FFFD */
    free(txt);
    json_decref(rec);
    tk_out_result_free(&r);
    tk_out_free(out);
done:
    srv_stop(&s);
}

void test_outbound_timeout(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.timeout_ms = 400};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    /* the default timeout (opts), then a per-request one */
    const char *paths[] = {"/slow", "/silent"};
    for (size_t i = 0; i < 2; i++) {
        url(u, sizeof u, &s, paths[i]);
        int64_t t0 = tk_mono_ms();
        CHECK_EQ_INT(send1(out, u, i ? 300 : 0, false, &r), TK_EUPSTREAM);
        int64_t took = tk_mono_ms() - t0;
        CHECK_EQ_INT(r.error, TK_OUT_TIMEOUT);
        CHECK_EQ_STR(tk_out_error_name(r.error), "timeout");
        CHECK(strstr(r.message, "127.0.0.1:") != NULL);
        CHECK(took >= 250 && took < 4500); /* the server would answer at 5 s */
        CHECK(r.body == NULL);
        tk_out_result_free(&r);
    }
    tk_out_free(out);
done:
    srv_release(&s);
    srv_stop(&s);
}

void test_outbound_slowloris(void)
{
    /* an upstream that sends a byte every 50 ms forever: cut at the total timeout */
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    url(u, sizeof u, &s, "/trickle");
    int64_t t0 = tk_mono_ms();
    CHECK_EQ_INT(send1(out, u, 500, false, &r), TK_EUPSTREAM);
    int64_t took = tk_mono_ms() - t0;
    CHECK_EQ_INT(r.error, TK_OUT_TIMEOUT);
    CHECK(took >= 400 && took < 8000); /* the trickle would last 10 s */
    tk_out_result_free(&r);
    tk_out_free(out);
done:
    srv_stop(&s);
}

void test_outbound_too_large(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.max_response = 64 << 10};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    /* announced by Content-Length: refused before the body */
    url(u, sizeof u, &s, "/big");
    CHECK_EQ_INT(send1(out, u, 5000, false, &r), TK_EUPSTREAM);
    CHECK_EQ_INT(r.error, TK_OUT_TOO_LARGE);
    CHECK(r.body == NULL);
    CHECK(strstr(r.message, "65536 bytes") != NULL);
    tk_out_result_free(&r);
    /* no length: cut at the cap, not read to the end */
    url(u, sizeof u, &s, "/bigstream");
    CHECK_EQ_INT(send1(out, u, 10000, false, &r), TK_EUPSTREAM);
    CHECK_EQ_INT(r.error, TK_OUT_TOO_LARGE);
    CHECK(r.body == NULL);
    tk_out_result_free(&r);
    srv_stop(&s); /* joins the connection threads: the server saw the cut */
    CHECK(atomic_load(&s.bytes_sent) < (32LL << 20));
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.done[TK_OUT_TOO_LARGE], 2);
    tk_out_free(out);
    return;
done:
    srv_stop(&s);
}

void test_outbound_redirect(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    url(u, sizeof u, &s, "/redirect");
    CHECK_OK(send1(out, u, 0, false, &r), NULL);
    CHECK_EQ_INT(r.status, 302);
    CHECK_EQ_STR(r.location, "/ok");
    CHECK_EQ_STR(r.body, "moved");
    tk_out_result_free(&r);
    CHECK_EQ_INT(atomic_load(&s.hits_ok), 0);
    /* followed only when asked */
    struct tk_out_req q = {.url = u, .max_redirects = 2};
    CHECK_OK(tk_out_send(out, &q, &r), NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.location, "");
    tk_out_result_free(&r);
    CHECK_EQ_INT(atomic_load(&s.hits_ok), 1);
    tk_out_free(out);
done:
    srv_stop(&s);
}

void test_outbound_connect_failed(void)
{
    /* a port nobody listens on: bind one, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (!CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0)) return;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    struct tk_out *out = start_out(NULL);
    if (!out) return;
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/x?secret=abc", ntohs(a.sin_port));
    struct tk_out_result r;
    CHECK_EQ_INT(send1(out, u, 0, false, &r), TK_EUPSTREAM);
    CHECK_EQ_INT(r.error, TK_OUT_CONNECT_FAILED);
    CHECK_EQ_STR(tk_out_error_name(r.error), "connect_failed");
    CHECK(!strstr(r.message, "abc")); /* the host, never the query */
    tk_out_result_free(&r);
    /* https to a plain HTTP server: TLS fails */
    struct srv s;
    if (CHECK(srv_start(&s))) {
        snprintf(u, sizeof u, "https://127.0.0.1:%d/ok", s.port);
        CHECK_EQ_INT(send1(out, u, 3000, false, &r), TK_EUPSTREAM);
        CHECK_EQ_INT(r.error, TK_OUT_TLS_FAILED);
        tk_out_result_free(&r);
        srv_stop(&s);
    }
    tk_out_free(out);
}

void test_outbound_bad_input(void)
{
    struct tk_out *out = start_out(NULL);
    if (!out) return;
    struct tk_out_result r;
    const char *bad[] = {"ftp://127.0.0.1/x",
                         "file:///etc/passwd",
                         "gopher://127.0.0.1/",
                         "http://",
                         "not a url",
                         "",
                         "http://127.0.0.1/a b",
                         "dict://127.0.0.1:11211/stat"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        CHECK_EQ_INT(send1(out, bad[i], 0, false, &r), TK_EUPSTREAM);
        if (r.error != TK_OUT_BAD_URL) FAILF("%s: %s", bad[i], tk_out_error_name(r.error));
        tk_out_result_free(&r);
    }
    struct tk_out_req q = {.url = NULL};
    tk_out_send(out, &q, &r);
    CHECK_EQ_INT(r.error, TK_OUT_BAD_URL);
    const char *inj[] = {"X-A: 1\r\nX-Injected: 2"};
    struct tk_out_req h = {.url = "http://127.0.0.1:1/", .headers = inj, .nheaders = 1};
    tk_out_send(out, &h, &r);
    CHECK_EQ_INT(r.error, TK_OUT_BAD_URL);
    CHECK(strstr(r.message, "header 1") != NULL);
    const char *noname[] = {": v"};
    h.headers = noname;
    tk_out_send(out, &h, &r);
    CHECK_EQ_INT(r.error, TK_OUT_BAD_URL);
    struct tk_out_req m = {.url = "http://127.0.0.1:1/", .method = "GET /x HTTP/1.1\r\n"};
    tk_out_send(out, &m, &r);
    CHECK_EQ_INT(r.error, TK_OUT_BAD_URL);
    tk_out_free(out);
}

void test_outbound_public_only(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    char u[128];
    struct tk_out_result r;
    const char *hosts[] = {"127.0.0.1",  "localhost",          "[::1]",  "127.1",
                           "0x7f000001", "[::ffff:127.0.0.1]", "0.0.0.0"};
    for (size_t i = 0; i < TK_NELEM(hosts); i++) {
        snprintf(u, sizeof u, "http://%s:%d/ok", hosts[i], s.port);
        CHECK_EQ_INT(send1(out, u, 3000, true, &r), TK_EUPSTREAM);
        if (r.error != TK_OUT_FORBIDDEN_ADDRESS)
            FAILF("%s: %s (%s)", hosts[i], tk_out_error_name(r.error), r.message);
        tk_out_result_free(&r);
    }
    CHECK_EQ_INT(atomic_load(&s.hits), 0); /* not one connection reached the server */
    /* the same URL without public_only works */
    snprintf(u, sizeof u, "http://localhost:%d/ok", s.port);
    CHECK_OK(send1(out, u, 3000, false, &r), NULL);
    CHECK_EQ_INT(r.status, 200);
    tk_out_result_free(&r);

    /* a connection kept alive by a request without public_only is not
     * reused by one with it: the address is checked on every request */
    url(u, sizeof u, &s, "/keep");
    int before = atomic_load(&s.accepted);
    CHECK_OK(send1(out, u, 3000, false, &r), NULL);
    CHECK_EQ_STR(r.body, "kept");
    tk_out_result_free(&r);
    CHECK_OK(send1(out, u, 3000, false, &r), NULL);
    tk_out_result_free(&r);
    int accepted = atomic_load(&s.accepted);
    CHECK_EQ_INT(accepted, before + 1); /* the second one reused the connection */
    int hits = atomic_load(&s.hits);
    CHECK_EQ_INT(send1(out, u, 3000, true, &r), TK_EUPSTREAM);
    CHECK_EQ_INT(r.error, TK_OUT_FORBIDDEN_ADDRESS);
    CHECK(strstr(r.message, "127.0.0.1") != NULL);
    tk_out_result_free(&r);
    CHECK_EQ_INT(atomic_load(&s.hits), hits);         /* no request sent on it */
    CHECK_EQ_INT(atomic_load(&s.accepted), accepted); /* nor a new connection made */

    /* the classification, without traffic */
    static const char *const forbidden[] = {"127.0.0.1",
                                            "10.1.2.3",
                                            "172.16.0.1",
                                            "172.31.255.255",
                                            "192.168.1.1",
                                            "100.64.0.1",
                                            "100.127.1.1",
                                            "169.254.169.254",
                                            "169.254.0.1",
                                            "224.0.0.1",
                                            "239.1.1.1",
                                            "0.0.0.0",
                                            "255.255.255.255",
                                            "192.0.2.1",
                                            "198.18.0.1",
                                            "::1",
                                            "::",
                                            "::ffff:127.0.0.1",
                                            "::ffff:10.0.0.1",
                                            "fe80::1",
                                            "fc00::1",
                                            "fd00:ec2::254",
                                            "ff02::1",
                                            "64:ff9b::a9fe:a9fe",
                                            "2002:7f00:1::",
                                            "2001:db8::1",
                                            "::ffff:169.254.169.254"};
    static const char *const allowed[] = {"8.8.8.8",         "1.1.1.1",      "100.63.255.255",
                                          "100.128.0.1",     "172.32.0.1",   "192.169.0.1",
                                          "2606:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8"};
    for (size_t i = 0; i < TK_NELEM(forbidden) + TK_NELEM(allowed); i++) {
        bool want = i < TK_NELEM(forbidden);
        const char *ip = want ? forbidden[i] : allowed[i - TK_NELEM(forbidden)];
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
        struct sockaddr_in a4 = {.sin_family = AF_INET};
        const void *sa = &a4;
        if (inet_pton(AF_INET, ip, &a4.sin_addr) != 1) {
            if (!CHECK(inet_pton(AF_INET6, ip, &a6.sin6_addr) == 1)) continue;
            sa = &a6;
        }
        if (tk_out_address_forbidden(sa) != want) FAILF("%s: forbidden should be %d", ip, want);
    }
    tk_out_free(out);
done:
    srv_stop(&s);
}

void test_outbound_cancel(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.max_concurrent = 1};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    struct box b;
    box_init(&b);
    char u[128];
    url(u, sizeof u, &s, "/hold");
    struct tk_out_req q = {.url = u};
    struct tk_err e;
    uint64_t running, queued;
    CHECK_OK(tk_out_submit(out, &q, on_done, &b, &running, &e), &e);
    CHECK_OK(tk_out_submit(out, &q, on_done, &b, &queued, &e), &e);
    CHECK(wait_int(&s.open_now, 1, 10000)); /* the first is at the server */
    int64_t t0 = tk_mono_ms();
    CHECK(tk_out_cancel(out, queued));  /* still in the queue */
    CHECK(tk_out_cancel(out, running)); /* in the multi */
    CHECK(!tk_out_cancel(out, 999));    /* unknown */
    CHECK(box_wait(&b, 2, 10000));
    CHECK(tk_mono_ms() - t0 < 10000); /* the server holds for 20 s */
    CHECK_EQ_INT(b.per[running], 1);
    CHECK_EQ_INT(b.per[queued], 1);
    CHECK_EQ_INT(b.last[running].error, TK_OUT_CANCELLED);
    CHECK_EQ_INT(b.last[queued].error, TK_OUT_CANCELLED);
    CHECK(!tk_out_cancel(out, running)); /* over */
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.done[TK_OUT_CANCELLED], 2);
    CHECK_EQ_INT(st.in_flight + st.queued, 0);
    tk_out_free(out);
    box_free(&b);
done:
    srv_release(&s);
    srv_stop(&s);
}

struct sender {
    struct tk_out *out;
    const char *url;
    tk_rc rc;
    struct tk_out_result res;
};

static void *send_thread(void *arg)
{
    struct sender *x = arg;
    struct tk_out_req q = {.url = x->url};
    x->rc = tk_out_send(x->out, &q, &x->res);
    return NULL;
}

void test_outbound_stop(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.max_concurrent = 4};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    struct box b;
    box_init(&b);
    char u[128];
    url(u, sizeof u, &s, "/hold");
    struct tk_out_req q = {.url = u};
    struct tk_err e;
    for (int i = 0; i < 12; i++)
        CHECK_OK(tk_out_submit(out, &q, on_done, &b, NULL, &e), &e);
    /* and a worker blocked in tk_out_send */
    struct sender x = {.out = out, .url = u};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, send_thread, &x) == 0);
    CHECK(wait_int(&s.open_now, 4, 10000));
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.in_flight, 4);
    int64_t t0 = tk_mono_ms();
    tk_out_stop(out);
    CHECK(tk_mono_ms() - t0 < 10000); /* the server holds for 20 s */
    pthread_join(t, NULL);
    /* every done called once, before stop returned, with stopping (the
     * sender's job has one of the ids 1..13 too, with its own done) */
    CHECK_EQ_INT(b.calls, 12);
    int once = 0, stopping = 0;
    for (int i = 1; i <= 13; i++) {
        if (b.per[i] > 1) FAILF("job %d: done called %d times", i, b.per[i]);
        if (b.per[i] == 1) once++;
        if (b.per[i] && b.last[i].error == TK_OUT_STOPPING) stopping++;
    }
    CHECK_EQ_INT(once, 12);
    CHECK_EQ_INT(stopping, 12);
    CHECK_EQ_INT(x.rc, TK_EUNAVAIL);
    CHECK_EQ_INT(x.res.error, TK_OUT_STOPPING);
    tk_out_result_free(&x.res);
    /* submits after stop are refused, done not called */
    CHECK_EQ_INT(tk_out_submit(out, &q, on_done, &b, NULL, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "stopping");
    struct tk_out_result r;
    CHECK_EQ_INT(tk_out_send(out, &q, &r), TK_EUNAVAIL);
    CHECK_EQ_INT(r.error, TK_OUT_STOPPING);
    tk_out_stop(out); /* twice: nothing */
    CHECK_EQ_INT(b.calls, 12);
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.done[TK_OUT_STOPPING], 13);
    CHECK_EQ_INT(st.in_flight + st.queued, 0);
    tk_out_free(out);
    box_free(&b);
done:
    srv_release(&s);
    srv_stop(&s);
}

void test_outbound_concurrency(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.max_concurrent = 3, .max_queue = 8};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    struct box b;
    box_init(&b);
    char u[128];
    url(u, sizeof u, &s, "/hold");
    struct tk_out_req q = {.url = u, .timeout_ms = 30000};
    struct tk_err e;
    for (int i = 0; i < 3; i++)
        CHECK_OK(tk_out_submit(out, &q, on_done, &b, NULL, &e), &e);
    CHECK(wait_int(&s.open_now, 3, 10000));
    for (int i = 0; i < 7; i++)
        CHECK_OK(tk_out_submit(out, &q, on_done, &b, NULL, &e), &e);
    usleep(200000); /* time for a fourth to arrive, if the cap did not hold */
    CHECK_EQ_INT(atomic_load(&s.open_now), 3);
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.in_flight, 3);
    CHECK_EQ_INT(st.queued, 7);
    /* the queue holds 8: one more fits, the next is refused (busy) */
    CHECK_OK(tk_out_submit(out, &q, on_done, &b, NULL, &e), &e);
    CHECK_EQ_INT(tk_out_submit(out, &q, on_done, &b, NULL, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "busy");
    struct tk_out_result r;
    struct tk_out_req q2 = {.url = u};
    CHECK_EQ_INT(tk_out_send(out, &q2, &r), TK_EUNAVAIL);
    CHECK_EQ_INT(r.error, TK_OUT_BUSY);
    srv_release(&s);
    CHECK(box_wait(&b, 11, 20000));
    for (int i = 1; i <= 11; i++) {
        if (b.per[i] != 1) FAILF("job %d: done called %d times", i, b.per[i]);
        if (b.last[i].error != TK_OUT_OK) FAILF("job %d: %s", i, b.last[i].message);
    }
    CHECK(atomic_load(&s.open_max) <= 3);
    tk_out_stats(out, &st);
    CHECK_EQ_INT(st.done[TK_OUT_OK], 11);
    CHECK_EQ_INT(st.done[TK_OUT_BUSY], 2);
    tk_out_free(out);
    box_free(&b);
done:
    srv_release(&s);
    srv_stop(&s);
}

/* A queued request whose time runs out while waiting: timeout, not a start. */
void test_outbound_queue_timeout(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.max_concurrent = 1};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    struct box b;
    box_init(&b);
    char u[128];
    url(u, sizeof u, &s, "/hold");
    struct tk_out_req slow = {.url = u, .timeout_ms = 20000}, quick = {.url = u, .timeout_ms = 200};
    struct tk_err e;
    uint64_t a, c;
    CHECK_OK(tk_out_submit(out, &slow, on_done, &b, &a, &e), &e);
    CHECK(wait_int(&s.open_now, 1, 10000));
    CHECK_OK(tk_out_submit(out, &quick, on_done, &b, &c, &e), &e);
    CHECK(box_wait(&b, 1, 5000));
    CHECK_EQ_INT(b.per[c], 1);
    CHECK_EQ_INT(b.last[c].error, TK_OUT_TIMEOUT);
    CHECK(strstr(b.last[c].message, "queue") != NULL);
    srv_release(&s);
    CHECK(box_wait(&b, 2, 10000));
    CHECK_EQ_INT(b.last[a].error, TK_OUT_OK);
    tk_out_free(out);
    box_free(&b);
done:
    srv_release(&s);
    srv_stop(&s);
}

/* done may submit (a chain of calls), and tk_out_send from done is refused. */
struct chain {
    struct tk_out *out;
    const char *url;
    atomic_int step;
    tk_rc send_rc;
};

static void chain_done(const struct tk_out_result *res, void *arg)
{
    struct chain *c = arg;
    int st = atomic_fetch_add(&c->step, 1) + 1;
    if (res->error != TK_OUT_OK) return;
    if (st == 1) {
        struct tk_out_result r;
        struct tk_out_req q = {.url = c->url};
        c->send_rc = tk_out_send(c->out, &q, &r);
        tk_out_result_free(&r);
        struct tk_err e;
        tk_out_submit(c->out, &q, chain_done, c, NULL, &e);
    }
}

void test_outbound_done_submits(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    char u[128];
    url(u, sizeof u, &s, "/ok");
    struct chain c = {.out = out, .url = u};
    struct tk_out_req q = {.url = u};
    struct tk_err e;
    CHECK_OK(tk_out_submit(out, &q, chain_done, &c, NULL, &e), &e);
    CHECK(wait_int(&c.step, 2, 10000));
    CHECK_EQ_INT(c.send_rc, TK_EINTERNAL);
    CHECK_EQ_INT(atomic_load(&s.hits_ok), 2);
    tk_out_free(out);
done:
    srv_stop(&s);
}

static void check_clean(const char *txt, const char *const *secrets, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(txt, secrets[i])) FAILF("the record shows secret %zu (%.4s...)", i, secrets[i]);
}

void test_outbound_record_masks(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out *out = start_out(NULL);
    if (!out) goto done;
    /* Basic client:B@sic/pw+1 */
    const char *basic = "Y2xpZW50OkJAc2ljL3B3KzE=";
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Basic %s", basic);
    const char *hs[] = {auth, "Content-Type: application/x-www-form-urlencoded",
                        "X-Api-Key: KEY-SECRET-5", "Accept: application/json"};
    char u[256];
    snprintf(
        u, sizeof u,
        "http://127.0.0.1:%d/tokens?client_id=app&client_secret=QS-SECRET-6&other=CUSTOM%%2FSECRET"
        "%%207",
        s.port);
    const char *body = "grant_type=refresh_token&refresh_token=RT-OLD-8&client_assertion=CA-9"
                       "&scope=read&free=CUSTOM/SECRET 7";
    const char *mask[] = {"B@sic/pw+1", "CUSTOM/SECRET 7", "NOTE-SECRET-3", "RT-OLD-8"};
    struct tk_out_req q = {.method = "POST",
                           .url = u,
                           .headers = hs,
                           .nheaders = 4,
                           .body = body,
                           .body_len = strlen(body),
                           .mask = mask,
                           .nmask = 4};
    struct tk_out_result r;
    CHECK_OK(tk_out_send(out, &q, &r), NULL);
    CHECK_EQ_INT(r.status, 200);
    /* the server got the secrets (they were sent) */
    CHECK(strstr(s.last, "RT-OLD-8") && strstr(s.last, basic));
    CHECK(r.body && strstr(r.body, "AT-SECRET-1"));

    json_t *rec = tk_out_record(&q, &r);
    char *txt = json_dumps(rec, JSON_COMPACT);
    if (!CHECK(txt)) goto out;
    static const char *const secrets[] = {"Y2xpZW50OkJAc2ljL3B3KzE",
                                          "B@sic",
                                          "KEY-SECRET-5",
                                          "QS-SECRET-6",
                                          "CUSTOM%2FSECRET",
                                          "CUSTOM/SECRET",
                                          "CUSTOM\\/SECRET",
                                          "RT-OLD-8",
                                          "CA-9",
                                          "AT-SECRET-1",
                                          "RT-SECRET-2",
                                          "NOTE-SECRET-3",
                                          "ID-SECRET-4",
                                          "SECRET"};
    check_clean(txt, secrets, TK_NELEM(secrets));
    /* what is useful stays */
    CHECK(strstr(txt, "\"method\":\"POST\""));
    CHECK(strstr(txt, "client_id=app"));
    CHECK(strstr(txt, "client_secret=***"));
    CHECK(strstr(txt, "Authorization: Basic ***"));
    CHECK(strstr(txt, "grant_type=refresh_token"));
    CHECK(strstr(txt, "\\\"token_type\\\":\\\"Bearer\\\"")); /* in the body's string */
    CHECK(strstr(txt, "\"status\":200"));
    CHECK(strstr(txt, "\"content_type\":\"application/json\""));
    free(txt);
    json_decref(rec);

    /* in done, from the job's own copy of the request */
    struct box b;
    box_init(&b);
    struct tk_err e;
    uint64_t id;
    CHECK_OK(tk_out_submit(out, &q, on_done, &b, &id, &e), &e);
    CHECK(box_wait(&b, 1, 10000));
    json_t *rec2 = tk_out_record(&q, &b.last[id]);
    txt = json_dumps(rec2, JSON_COMPACT);
    if (txt) check_clean(txt, secrets, TK_NELEM(secrets));
    free(txt);
    json_decref(rec2);
    box_free(&b);

    /* a JSON request body, a body past the record's cut, a password in the URL */
    const char *jbody = "{\"client_secret\":\"JS-SECRET-10\",\"list\":[{\"password\":\"PW-11\"}],"
                        "\"token_endpoint\":\"https://as.example/token\"}";
    const char *jh[] = {"Content-Type: application/json", "Cookie: sid=CK-12"};
    struct tk_out_req j = {.method = "POST",
                           .url = "https://user:UP-13@as.example/x#access_token=FR-14",
                           .headers = jh,
                           .nheaders = 2,
                           .body = jbody,
                           .body_len = strlen(jbody)};
    char big[8000];
    memset(big, 'x', sizeof big);
    memcpy(big + 2040, "LONGSECRET-15", 13); /* across the record's cut at 2048 */
    big[sizeof big - 1] = '\0';
    const char *m2[] = {"LONGSECRET-15"};
    j.mask = m2;
    j.nmask = 1;
    struct tk_out_result fake = {
        .error = TK_OUT_OK, .status = 400, .body = big, .body_len = strlen(big)};
    snprintf(fake.message, sizeof fake.message, "x");
    rec = tk_out_record(&j, &fake);
    txt = json_dumps(rec, JSON_COMPACT);
    static const char *const s2[] = {"JS-SECRET-10", "PW-11",      "CK-12",   "UP-13",
                                     "FR-14",        "LONGSECRET", "LONGSEC", "LONG"};
    if (CHECK(txt)) {
        check_clean(txt, s2, TK_NELEM(s2));
        CHECK(strstr(txt, "as.example/token")); /* metadata stays readable */
        CHECK(strstr(txt, "\"response_body_truncated\":true"));
        CHECK(strstr(txt, "user:***@as.example"));
    }
    free(txt);
    json_decref(rec);
    /* a secret however it is encoded in a query or form, or escaped in JSON */
    const char *m3[] = {"AbC-secret"};
    const char *fb = "x=%41bC%2dsecret&y=pre%41bC-secret+post";
    const char *jb = "{\"n\":\"\\u0041bC-secret\",\"a\":[\"x AbC\\u002dsecret\"]}";
    struct tk_out_req f = {.url = "http://h/p?q=%41%62%43-secret",
                           .body = fb,
                           .body_len = strlen(fb),
                           .mask = m3,
                           .nmask = 1};
    struct tk_out_result fr = {.status = 200, .body = jb, .body_len = strlen(jb)};
    rec = tk_out_record(&f, &fr);
    txt = json_dumps(rec, JSON_COMPACT);
    if (CHECK(txt)) {
        CHECK(!strcasestr(txt, "secret"));
        CHECK(strstr(txt, "q=***") && strstr(txt, "x=***&y=***"));
    }
    free(txt);
    json_decref(rec);
    /* tk_out_mask alone */
    char *m = tk_out_mask("a CUSTOM/SECRET 7 b CUSTOM%2FSECRET%207 c CUSTOM%2FSECRET+7", mask, 4);
    CHECK_EQ_STR(m, "a *** b *** c ***");
    free(m);
out:
    tk_out_result_free(&r);
    tk_out_free(out);
done:
    srv_stop(&s);
}

void test_outbound_settings(void)
{
    struct tk_out *out = NULL;
    struct tk_err e;
    struct tk_out_opts o = {.ca_file = "/nonexistent/ca.pem"};
    CHECK_EQ_INT(tk_out_start(&o, &out, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "outbound_ca_file");
    CHECK(out == NULL);
    struct tk_out_opts nopem = {.ca_file = "/etc/hostname"};
    CHECK_EQ_INT(tk_out_start(&nopem, &out, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "no PEM certificate") != NULL);
    struct tk_out_opts p = {.proxy = "not a proxy"};
    CHECK_EQ_INT(tk_out_start(&p, &out, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "outbound_proxy");
    /* a proxy is used even for loopback, and environment variables are not */
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    setenv("http_proxy", "http://127.0.0.1:1", 1);
    setenv("HTTP_PROXY", "http://127.0.0.1:1", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:1", 1);
    struct tk_out_opts d = {0};
    out = start_out(&d);
    char u[128];
    url(u, sizeof u, &s, "/ok");
    struct tk_out_result r;
    if (out) {
        CHECK_OK(send1(out, u, 3000, false, &r), NULL);
        CHECK_EQ_INT(r.status, 200);
        tk_out_result_free(&r);
        tk_out_free(out);
    }
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("ALL_PROXY");
    /* the test server as the proxy: it sees the absolute URL */
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", s.port);
    struct tk_out_opts px = {.proxy = proxy};
    out = start_out(&px);
    if (out) {
        CHECK_EQ_INT(send1(out, "http://upstream.invalid/echo", 3000, false, &r), TK_OK);
        CHECK(r.status == 404); /* our server does not route absolute paths */
        CHECK(strstr(s.last, "GET http://upstream.invalid/echo HTTP/1.1") != NULL);
        tk_out_result_free(&r);
        /* public_only through a proxy: an IP literal is still checked */
        CHECK_EQ_INT(send1(out, "http://10.0.0.1/x", 3000, true, &r), TK_EUPSTREAM);
        CHECK_EQ_INT(r.error, TK_OUT_FORBIDDEN_ADDRESS);
        tk_out_result_free(&r);
        tk_out_free(out);
    }
    srv_stop(&s);
}

/* ---- TLS: a libmicrohttpd server with a certificate made here ---- */

static char *bio_text(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = tk_strndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

/* A self-signed certificate for DNS:localhost (not for 127.0.0.1). */
static bool make_cert(char **cert_pem, char **key_pem)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x) return false;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"tokend test", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    const char *exts[][2] = {{"subjectAltName", "DNS:localhost"},
                             {"basicConstraints", "critical,CA:TRUE"}};
    for (size_t i = 0; i < 2; i++) {
        X509_EXTENSION *ext = X509V3_EXT_nconf(NULL, &ctx, exts[i][0], exts[i][1]);
        if (!ext) return false;
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    bool ok = X509_sign(x, k, EVP_sha256()) > 0;
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    ok = ok && PEM_write_bio_X509(cb, x) &&
         PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL);
    *cert_pem = bio_text(cb);
    *key_pem = bio_text(kb);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok;
}

static enum MHD_Result tls_handler(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *data,
                                   size_t *size, void **state)
{
    (void)cls, (void)url, (void)method, (void)version, (void)data, (void)size, (void)state;
    static const char body[] = "{\"tls\":true}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

void test_outbound_tls(void)
{
    char *cert = NULL, *key = NULL, dir[256] = "", ca[300];
    struct MHD_Daemon *d = NULL;
    struct tk_out *out = NULL, *trusting = NULL;
    if (!CHECK(make_cert(&cert, &key))) goto done;
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) goto done;
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    if (!CHECK(unit_write_file(ca, cert, strlen(cert), 0600))) goto done;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS, 0, NULL, NULL, tls_handler,
                         NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                         MHD_OPTION_HTTPS_MEM_KEY, key, MHD_OPTION_HTTPS_MEM_CERT, cert,
                         MHD_OPTION_END);
    if (!CHECK(d)) goto done;
    int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    char u[128], u_ip[128];
    snprintf(u, sizeof u, "https://localhost:%d/", port);
    snprintf(u_ip, sizeof u_ip, "https://127.0.0.1:%d/", port);
    struct tk_out_result r;
    /* verification is on: a certificate nobody vouches for is refused */
    out = start_out(NULL);
    if (!out) goto done;
    CHECK_EQ_INT(send1(out, u, 5000, false, &r), TK_EUPSTREAM);
    CHECK_EQ_INT(r.error, TK_OUT_TLS_FAILED);
    CHECK_EQ_STR(tk_out_error_name(r.error), "tls_failed");
    tk_out_result_free(&r);
    /* trusted through outbound_ca_file */
    struct tk_out_opts o = {.ca_file = ca};
    trusting = start_out(&o);
    if (!trusting) goto done;
    CHECK_OK(send1(trusting, u, 5000, false, &r), NULL);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.body, "{\"tls\":true}");
    tk_out_result_free(&r);
    /* trusted, but not for this name: the host name is verified too */
    CHECK_EQ_INT(send1(trusting, u_ip, 5000, false, &r), TK_EUPSTREAM);
    CHECK_EQ_INT(r.error, TK_OUT_TLS_FAILED);
    tk_out_result_free(&r);
done:
    tk_out_free(out);
    tk_out_free(trusting);
    if (d) MHD_stop_daemon(d);
    if (dir[0]) unit_rmtree(dir);
    free(cert);
    free(key);
}

/* Submits from three threads, cancels, answers and a stop racing: every
 * accepted request has its done called exactly once. */
struct stress {
    struct tk_out *out;
    struct box *b;
    const char *urls[2];
    atomic_int accepted;
};

static void *stress_thread(void *arg)
{
    struct stress *x = arg;
    for (int i = 0; i < 20; i++) {
        struct tk_out_req q = {.url = x->urls[i % 2], .timeout_ms = 20000};
        struct tk_err e;
        uint64_t id;
        if (tk_out_submit(x->out, &q, on_done, x->b, &id, &e) == TK_OK) {
            atomic_fetch_add(&x->accepted, 1);
            if (i % 3 == 0) tk_out_cancel(x->out, id);
        }
        if (i % 5 == 0) usleep(1000);
    }
    return NULL;
}

void test_outbound_stress(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_out_opts o = {.max_concurrent = 5};
    struct tk_out *out = start_out(&o);
    if (!out) goto done;
    struct box b;
    box_init(&b);
    char u1[128], u2[128];
    url(u1, sizeof u1, &s, "/ok");
    url(u2, sizeof u2, &s, "/hold");
    struct stress x = {.out = out, .b = &b, .urls = {u1, u2}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&t[i], NULL, stress_thread, &x) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&x.accepted), 60);
    CHECK(wait_int(&s.open_now, 5, 20000)); /* every slot held by a /hold, the rest queued */
    tk_out_stop(out);
    CHECK_EQ_INT(b.calls, 60);
    int kinds[TK_OUT_NERRORS] = {0};
    for (int i = 1; i <= 60; i++) {
        if (b.per[i] != 1)
            FAILF("job %d: done called %d times", i, b.per[i]);
        else
            kinds[b.last[i].error]++;
    }
    CHECK(kinds[TK_OUT_STOPPING] >= 5);
    CHECK(kinds[TK_OUT_CANCELLED] + kinds[TK_OUT_STOPPING] + kinds[TK_OUT_OK] == 60);
    struct tk_out_stats st;
    tk_out_stats(out, &st);
    uint64_t total = 0;
    for (int k = 0; k < TK_OUT_NERRORS; k++)
        total += st.done[k];
    CHECK_EQ_INT(total, 60);
    tk_out_free(out);
    box_free(&b);
done:
    srv_release(&s);
    srv_stop(&s);
}

/* The series on the registry: no sample before start, counts after. */
void test_outbound_metrics(void)
{
    struct srv s;
    if (!CHECK(srv_start(&s))) return;
    struct tk_metrics *m = tk_metrics_new();
    struct tk_out *slot = NULL;
    struct tk_err e;
    CHECK_OK(tk_out_metrics_register(m, &slot, &e), &e);
    struct tk_buf b;
    tk_buf_init(&b, 1 << 20);
    CHECK_OK(tk_metrics_render(m, &b), NULL);
    CHECK(b.data && strstr(b.data, "# TYPE tokend_outbound_requests_total counter"));
    CHECK(b.data && !strstr(b.data, "\ntokend_outbound_inflight ")); /* no sample */
    tk_buf_free(&b);
    slot = start_out(NULL);
    if (slot) {
        char u[128];
        struct tk_out_result r;
        url(u, sizeof u, &s, "/ok");
        CHECK_OK(send1(slot, u, 0, false, &r), NULL);
        tk_out_result_free(&r);
        send1(slot, "ftp://x/", 0, false, &r);
        tk_buf_init(&b, 1 << 20);
        CHECK_OK(tk_metrics_render(m, &b), NULL);
        CHECK(b.data && strstr(b.data, "tokend_outbound_requests_total{result=\"ok\"} 1\n"));
        CHECK(b.data && strstr(b.data, "tokend_outbound_requests_total{result=\"bad_url\"} 1\n"));
        CHECK(b.data && strstr(b.data, "tokend_outbound_requests_total{result=\"timeout\"} 0\n"));
        CHECK(b.data && strstr(b.data, "tokend_outbound_inflight 0\n"));
        CHECK(b.data && strstr(b.data, "tokend_outbound_queued 0\n"));
        tk_buf_free(&b);
        tk_out_free(slot);
    }
    tk_metrics_free(m);
    srv_stop(&s);
}
