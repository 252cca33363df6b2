/* test_http_server.c: the parts of src/http/http.c that need a running
 * server, over a loopback socket: invalid_path for tail parameters,
 * duplicate query parameters, form bodies and their Content-Type rule,
 * cookies read and set, redirects (and the 302/303 metric slots), and the
 * remote address behind trusted proxies. */
#include "unit.h"

#include "../../src/http/http.h"
#include "../../src/http/parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void h_tail(struct tk_req *r)
{
    tk_reply_json(r, 200, json_pack("{s:s}", "path", tk_req_param(r, "path")));
}

static void h_query(struct tk_req *r)
{
    if (!tk_req_query_unique(r, "b")) return;
    tk_reply_json(r, 200, json_pack("{s:i,s:i}", "a", tk_req_query_count(r, "a"), "b",
                                    tk_req_query_count(r, "b")));
}

static void h_form(struct tk_req *r)
{
    struct tk_form *f = tk_req_form(r);
    if (!f) return;
    const char *g = tk_form_get(f, "grant_type");
    tk_reply_json(r, 200, json_pack("{s:s?,s:i}", "grant_type", g, "n", f->n));
}

static void h_json(struct tk_req *r)
{
    tk_reply_json(r, 200, json_object());
}

static void h_cookie(struct tk_req *r)
{
    const char *sid = tk_req_cookie(r, "sid");
    struct tk_cookie_opts o = {"/v1", 3600, true, true, TK_SAMESITE_LAX};
    if (tk_reply_cookie(r, "sid", "new-value", &o) != TK_OK) FAILF("a valid cookie refused");
    struct tk_cookie_opts s = {NULL, -1, true, false, TK_SAMESITE_STRICT};
    tk_reply_cookie(r, "pref", "x", &s);
    /* refused: nothing added */
    if (tk_reply_cookie(r, "bad", "a;b", &o) == TK_OK) FAILF("a value with ';' accepted");
    if (tk_reply_cookie(r, "bad", "a\r\nX-Evil: 1", &o) == TK_OK) FAILF("CRLF accepted");
    if (tk_reply_cookie(r, "b d", "v", &o) == TK_OK) FAILF("a name with a space accepted");
    struct tk_cookie_opts bp = {"/x;Domain=evil", 1, true, true, TK_SAMESITE_LAX};
    if (tk_reply_cookie(r, "bad", "v", &bp) == TK_OK) FAILF("a path with ';' accepted");
    tk_reply_json(r, 200, json_pack("{s:s?}", "sid", sid));
}

static void h_redirect(struct tk_req *r)
{
    const char *to = tk_req_query(r, "to");
    const char *st = tk_req_query(r, "status");
    int64_t status = 302;
    if (st && tk_parse_int(st, 100, 999, &status) != TK_OK) status = 0;
    tk_reply_redirect(r, (int)status, to ? to : "");
}

static void h_remote(struct tk_req *r)
{
    char a[64], p[64];
    tk_req_remote(r, a, sizeof a);
    tk_req_peer(r, p, sizeof p);
    tk_reply_json(r, 200, json_pack("{s:s,s:s}", "remote", a, "peer", p));
}

static const struct tk_route routes[] = {
    {"GET", "/files/{path+}", h_tail, .flags = 0},
    {"GET", "/q", h_query, .flags = 0},
    {"POST", "/v1/form", h_form, .flags = TK_ROUTE_FORM},
    {"POST", "/v1/json", h_json, .flags = 0},
    {"POST", "/oauth2/form", h_form, .flags = TK_ROUTE_FORM},
    {"GET", "/cookie", h_cookie, .flags = 0},
    {"GET", "/redirect", h_redirect, .flags = 0},
    {"GET", "/remote", h_remote, .flags = 0},
};

static struct tk_http *start(const char *trusted)
{
    struct tk_http_opts o = {
        .listen = "127.0.0.1:0",
        .threads = 2,
        .max_body = 65536,
        .max_header = 16384,
        .max_connections = 32,
        .max_connections_per_ip = 32,
        .idle_timeout = 10,
        .header_timeout = 10,
        .routes = routes,
        .nroutes = TK_NELEM(routes),
        .trusted_proxies = trusted,
    };
    struct tk_http *h = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_http_start(&o, &h, &e), &e)) return NULL;
    return h;
}

/* One request over a fresh connection; the whole response into out. */
/* The loopback address the next requests come from (0: the default). */
static uint32_t from_addr;

static bool roundtrip(struct tk_http *h, const char *req, char *out, size_t n)
{
    out[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    if (from_addr) {
        struct sockaddr_in me = {.sin_family = AF_INET};
        me.sin_addr.s_addr = htonl(from_addr);
        if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) {
            close(fd);
            return false;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tk_http_port(h))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return false;
    }
    size_t len = strlen(req), off = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    size_t got = 0;
    for (;;) {
        ssize_t rd = recv(fd, out + got, n - 1 - got, 0);
        if (rd <= 0) break;
        got += (size_t)rd;
        if (got == n - 1) break;
    }
    out[got] = '\0';
    close(fd);
    return got > 0;
}

static int status_of(const char *resp)
{
    int st = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &st) != 1) return -1;
    return st;
}

static char resp[16384];

static int get(struct tk_http *h, const char *target, const char *extra)
{
    char req[4096];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s\r\n",
             target, extra ? extra : "");
    if (!roundtrip(h, req, resp, sizeof resp)) return -1;
    return status_of(resp);
}

static int post(struct tk_http *h, const char *target, const char *ctype, const char *body)
{
    char req[8192];
    snprintf(req, sizeof req,
             "POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s"
             "Content-Length: %zu\r\n\r\n%s",
             target, ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "",
             strlen(body), body);
    if (!roundtrip(h, req, resp, sizeof resp)) return -1;
    return status_of(resp);
}

static const char *body_of(void)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

#define HAS(s) CHECK(strstr(resp, (s)) != NULL)

void test_http_server_additions(void)
{
    struct tk_http *h = start("");
    if (!h) return;

    /* tail parameters */
    CHECK_EQ_INT(get(h, "/files/a/b/c.txt", NULL), 200);
    HAS("{\"path\":\"a/b/c.txt\"}");
    CHECK_EQ_INT(get(h, "/files/a/../b", NULL), 400);
    HAS("\"error\":\"invalid_path\"");
    HAS("\"segment\":3");
    CHECK_EQ_INT(get(h, "/files/a//b", NULL), 400);
    HAS("\"segment\":3");
    CHECK_EQ_INT(get(h, "/files/%2e%2e/etc", NULL), 400); /* decoded before routing */
    HAS("\"segment\":2");

    /* duplicate query parameters */
    CHECK_EQ_INT(get(h, "/q?a=1&a=2&b=1", NULL), 200);
    HAS("{\"a\":2,\"b\":1}");
    CHECK_EQ_INT(get(h, "/q?B=1&b=2", NULL), 200); /* names are case-sensitive */
    CHECK_EQ_INT(get(h, "/q?b=1&b=1", NULL), 400);
    HAS("\"error\":\"duplicate_parameter\"");
    HAS("\"field\":\"b\"");

    /* form bodies: a TK_ROUTE_FORM route under /v1 takes form, not JSON */
    CHECK_EQ_INT(post(h, "/v1/form", "application/x-www-form-urlencoded",
                      "grant_type=client_credentials&scope=a+b"),
                 200);
    HAS("\"grant_type\":\"client_credentials\"");
    CHECK_EQ_INT(post(h, "/v1/form", "application/x-www-form-urlencoded; charset=UTF-8", "a=1"),
                 200);
    CHECK_EQ_INT(post(h, "/v1/form", "application/json", "{}"), 415);
    HAS("\"error\":\"unsupported_media_type\"");
    CHECK_EQ_INT(post(h, "/v1/form", NULL, "a=1"), 415);
    CHECK_EQ_INT(post(h, "/v1/json", "application/x-www-form-urlencoded", "a=1"), 415);
    CHECK_EQ_INT(post(h, "/v1/json", "application/json", "{}"), 200);
    CHECK_EQ_INT(post(h, "/oauth2/form", "application/x-www-form-urlencoded",
                      "grant_type=a&grant_type=b"),
                 400);
    HAS("\"error\":\"duplicate_parameter\"");
    HAS("\"field\":\"grant_type\"");
    CHECK_EQ_INT(post(h, "/oauth2/form", "application/x-www-form-urlencoded", "code=%00"), 400);
    HAS("\"error\":\"invalid_form\"");
    CHECK_EQ_INT(post(h, "/oauth2/form", "text/plain", "a=1"), 415);

    /* cookies */
    CHECK_EQ_INT(get(h, "/cookie", "Cookie: theme=dark; sid=abc123\r\n"), 200);
    HAS("{\"sid\":\"abc123\"}");
    HAS("Set-Cookie: sid=new-value; Path=/v1; Max-Age=3600; HttpOnly; Secure; SameSite=Lax\r\n");
    HAS("Set-Cookie: pref=x; Path=/; HttpOnly; SameSite=Strict\r\n");
    CHECK(strstr(resp, "bad=") == NULL);
    CHECK(strstr(resp, "X-Evil") == NULL);
    CHECK_EQ_INT(get(h, "/cookie", "Cookie: sid=a; sid=b\r\n"), 200);
    HAS("{\"sid\":null}");
    CHECK_EQ_INT(get(h, "/cookie", "Cookie: sid=a\r\nCookie: sid=b\r\n"), 200);
    HAS("{\"sid\":null}");
    CHECK_EQ_INT(get(h, "/cookie", NULL), 200);
    HAS("{\"sid\":null}");

    /* redirects */
    CHECK_EQ_INT(get(h, "/redirect?to=https%3A%2F%2Fapp.example%2Fcb%3Fcode%3Dx", NULL), 302);
    HAS("Location: https://app.example/cb?code=x\r\n");
    CHECK_EQ_INT(get(h, "/redirect?status=303&to=/done", NULL), 303);
    HAS("Location: /done\r\n");
    CHECK_EQ_INT(get(h, "/redirect?to=/a%0D%0ASet-Cookie:%20x=1", NULL), 500);
    CHECK(strstr(resp, "Location") == NULL);
    CHECK_EQ_INT(get(h, "/redirect?to=/a%0Ab", NULL), 500);
    CHECK_EQ_INT(get(h, "/redirect?status=200&to=/a", NULL), 500);
    CHECK_EQ_INT(get(h, "/redirect", NULL), 500);
    struct tk_buf m;
    tk_buf_init(&m, 1u << 20);
    tk_http_metrics(h, &m);
    CHECK(m.data && strstr(m.data, "status=\"302\"} 1") != NULL);
    CHECK(m.data && strstr(m.data, "status=\"303\"} 1") != NULL);
    if (m.data && !strstr(m.data, "status=\"302\"} 1")) printf("    %s\n", m.data);
    tk_buf_free(&m);

    /* no trusted proxies: X-Forwarded-For is ignored */
    CHECK_EQ_INT(get(h, "/remote", "X-Forwarded-For: 203.0.113.9\r\n"), 200);
    HAS("\"remote\":\"127.0.0.1\"");
    /* the peer's IPv4 address, formatted by hand: one, two and three digits */
    from_addr = 0x7f2d06c8; /* 127.45.6.200 */
    CHECK_EQ_INT(get(h, "/remote", NULL), 200);
    HAS("\"remote\":\"127.45.6.200\"");
    HAS("\"peer\":\"127.45.6.200\"");
    from_addr = 0x7fff0a63; /* 127.255.10.99 */
    CHECK_EQ_INT(get(h, "/remote", NULL), 200);
    HAS("\"peer\":\"127.255.10.99\"");
    from_addr = 0;
    tk_http_stop(h);

    /* the loopback peer is a trusted proxy */
    h = start("127.0.0.1, 10.0.0.0/8");
    if (!h) return;
    CHECK_EQ_INT(get(h, "/remote", "X-Forwarded-For: 198.51.100.1, 203.0.113.9, 10.2.3.4\r\n"),
                 200);
    HAS("\"remote\":\"203.0.113.9\"");
    HAS("\"peer\":\"127.0.0.1\"");
    CHECK_EQ_INT(get(h, "/remote", "X-Forwarded-For: 203.0.113.9, junk\r\n"), 200);
    HAS("\"remote\":\"127.0.0.1\"");
    CHECK_EQ_INT(get(h, "/remote",
                     "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.1\r\n"),
                 200);
    HAS("\"remote\":\"127.0.0.1\"");
    CHECK_EQ_INT(get(h, "/remote", NULL), 200);
    HAS("\"remote\":\"127.0.0.1\"");
    tk_http_stop(h);
    (void)body_of;

    /* a bad trusted_proxies refuses to start */
    struct tk_http_opts o = {.listen = "127.0.0.1:0", .threads = 2, .routes = routes,
                             .nroutes = TK_NELEM(routes), .trusted_proxies = "10.0.0.1/40"};
    struct tk_http *bad = NULL;
    struct tk_err e;
    CHECK_EQ_INT(tk_http_start(&o, &bad, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "trusted_proxies");
}
