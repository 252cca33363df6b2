/* test_router.c: src/http/router.h -- matching, parameters, 405 and odd paths. */
#include "unit.h"

#include "../../src/http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void h(struct tk_req *r)
{
    (void)r;
}

static const struct tk_route routes[] = {
    {"GET", "/v1/events", h, .flags = 0},                        /* 0 */
    {"POST", "/v1/operators/tokens", h, .flags = TK_ROUTE_AUTH}, /* 1 */
    {"GET", "/v1/operators/tokens", h, .flags = TK_ROUTE_AUTH},  /* 2 */
    {"DELETE", "/v1/operators/tokens/{id}", h, .flags = 0},      /* 3 */
    {"GET", "/v1/connections/{id}/token", h, .flags = 0},        /* 4 */
    {"GET", "/{tenant}/a/{b}/c/{d}", h, .flags = 0},             /* 5 */
    {"PUT", "/v1/x/{a}/{b}/{c}/{d}", h, .flags = 0},             /* 6 */
    {"GET", "/v1/operators/tokens/self", h, .flags = 0}, /* 7: beside {id}, which is DELETE only */
    {"GET", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", h, .flags = 0}, /* 8: the most segments */
    {"GET", "/healthz", h, .flags = 0},                                /* 9 */
    {"PUT", "/healthz", h, .flags = 0},                                /* 10 */
    {"PATCH", "/healthz", h, .flags = 0},                              /* 11 */
    {"DELETE", "/healthz", h, .flags = 0},                             /* 12 */
    {"POST", "/healthz", h, .flags = 0},                               /* 13 */
};

static struct tk_router *make(void)
{
    struct tk_router *rt = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_router_new(routes, TK_NELEM(routes), &rt, &e), &e)) return NULL;
    return rt;
}

static const char *param(const struct tk_route_match *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->names[i], name)) return m->values[i];
    return NULL;
}

void test_router_params(void)
{
    struct tk_router *rt = make();
    if (!rt) return;
    struct tk_pool *pool = tk_pool_new();
    struct tk_route_match m;

    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/events", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 0);
    CHECK_EQ_INT(m.nparams, 0);

    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/connections/0190-abc/token", pool, &m),
                 TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 4);
    CHECK_EQ_INT(m.nparams, 1);
    CHECK_EQ_STR(param(&m, "id"), "0190-abc");

    /* parameters first, in the middle and last */
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/acme/a/bee/c/dee", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 5);
    CHECK_EQ_INT(m.nparams, 3);
    CHECK_EQ_STR(param(&m, "tenant"), "acme");
    CHECK_EQ_STR(param(&m, "b"), "bee");
    CHECK_EQ_STR(param(&m, "d"), "dee");
    CHECK_EQ_STR(m.names[0], "tenant");
    CHECK_EQ_STR(m.names[2], "d");

    /* the most parameters a route may have */
    CHECK_EQ_INT(tk_router_match(rt, "PUT", "/v1/x/1/22/333/4444", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 6);
    CHECK_EQ_INT(m.nparams, 4);
    CHECK_EQ_STR(param(&m, "a"), "1");
    CHECK_EQ_STR(param(&m, "d"), "4444");

    /* a literal and a parameter on one level: each method finds its route */
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/operators/tokens/self", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 7);
    CHECK_EQ_INT(tk_router_match(rt, "DELETE", "/v1/operators/tokens/self", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 3);
    CHECK_EQ_STR(param(&m, "id"), "self");

    /* parameter text is taken as is: the router sees decoded paths and
     * neither decodes again nor interprets it */
    CHECK_EQ_INT(tk_router_match(rt, "DELETE", "/v1/operators/tokens/%00", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "id"), "%00");
    CHECK_EQ_INT(tk_router_match(rt, "DELETE", "/v1/operators/tokens/a%2Fb", pool, &m),
                 TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "id"), "a%2Fb");
    CHECK_EQ_INT(tk_router_match(rt, "DELETE", "/v1/operators/tokens/{id}", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "id"), "{id}");
    CHECK_EQ_INT(
        tk_router_match(rt, "DELETE", "/v1/operators/tokens/x'; DROP TABLE t;--", pool, &m),
        TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "id"), "x'; DROP TABLE t;--");

    /* a 1000-character parameter comes through whole */
    char path[1100];
    int w = snprintf(path, sizeof path, "/v1/connections/");
    memset(path + w, 'z', 1000);
    snprintf(path + w + 1000, sizeof path - (size_t)w - 1000, "/token");
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(strlen(param(&m, "id") ? param(&m, "id") : ""), 1000);

    tk_pool_free(pool);
    tk_router_free(rt);
}

void test_router_methods(void)
{
    struct tk_router *rt = make();
    if (!rt) return;
    struct tk_pool *pool = tk_pool_new();
    struct tk_route_match m;

    CHECK_EQ_INT(tk_router_match(rt, "POST", "/v1/events", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "GET");
    CHECK(m.index >= 0);
    CHECK_EQ_INT(m.nparams, 0);

    CHECK_EQ_INT(tk_router_match(rt, "PUT", "/v1/operators/tokens", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "POST, GET");

    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/operators/tokens/abc", pool, &m),
                 TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "DELETE");

    CHECK_EQ_INT(tk_router_match(rt, "OPTIONS", "/healthz", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "GET, PUT, PATCH, DELETE, POST");
    /* HEAD is served by the GET route; where there is no GET it is a 405 */
    CHECK_EQ_INT(tk_router_match(rt, "HEAD", "/healthz", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 9);
    CHECK_EQ_INT(tk_router_match(rt, "HEAD", "/v1/connections/x/token", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "id"), "x");
    CHECK_EQ_INT(tk_router_match(rt, "HEAD", "/v1/operators/tokens/abc", pool, &m),
                 TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "DELETE");
    /* a method of two matching routes is listed once */
    CHECK_EQ_INT(tk_router_match(rt, "PUT", "/v1/operators/tokens/self", pool, &m),
                 TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "DELETE, GET");
    CHECK_EQ_INT(tk_router_match(rt, "PUT", "/acme/a/b/c/d", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "GET");

    /* methods are case-sensitive (RFC 9110 §9.1) */
    CHECK_EQ_INT(tk_router_match(rt, "get", "/v1/events", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_INT(tk_router_match(rt, "", "/v1/events", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_INT(tk_router_match(rt, "GETX", "/v1/events", pool, &m), TK_ROUTE_BAD_METHOD);

    /* a 405 is only for paths that exist */
    CHECK_EQ_INT(tk_router_match(rt, "POST", "/v1/nothing", pool, &m), TK_ROUTE_NOT_FOUND);
    CHECK_EQ_STR(m.allow, "");
    CHECK_EQ_INT(m.index, -1);

    /* many methods on one path: Allow stays a bounded string */
    static struct tk_route many[12];
    char names[12][24];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "METHOD%02d", i);
        many[i] = (struct tk_route){names[i], "/busy", h, .flags = 0};
    }
    struct tk_router *rt2 = NULL;
    struct tk_err e;
    if (CHECK_OK(tk_router_new(many, 12, &rt2, &e), &e)) {
        CHECK_EQ_INT(tk_router_match(rt2, "GET", "/busy", pool, &m), TK_ROUTE_BAD_METHOD);
        CHECK(strlen(m.allow) < sizeof m.allow);
        CHECK(strncmp(m.allow, "METHOD00, METHOD01", 18) == 0);
        CHECK_EQ_INT(tk_router_match(rt2, "METHOD11", "/busy", pool, &m), TK_ROUTE_OK);
        CHECK_EQ_INT(m.index, 11);
    }
    tk_router_free(rt2);
    tk_pool_free(pool);
    tk_router_free(rt);
}

void test_router_odd_paths(void)
{
    struct tk_router *rt = make();
    if (!rt) return;
    struct tk_pool *pool = tk_pool_new();
    struct tk_route_match m;
    static const char *not_found[] = {
        "",
        "/",
        "//",
        "///",
        "v1/events",
        "/v1/events/",
        "/v1//events",
        "//v1/events",
        "/v1/events//",
        "/V1/events",
        "/v1/Events",
        "/v1/events?x=1",
        "/v1/events ",
        "/v1/events%00",
        "/v1/events/x",
        "/v1",
        "/v1/connections//token",
        "/v1/connections/abc/token/",
        "/v1/connections/abc",
        "/v1/operators/tokens/a/b",
        "/a/a/b/c/",
        "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17",
        "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/",
        "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15",
    };
    for (size_t i = 0; i < TK_NELEM(not_found); i++) {
        enum tk_router_result r = tk_router_match(rt, "GET", not_found[i], pool, &m);
        if (r != TK_ROUTE_NOT_FOUND) FAILF("GET '%s' gave %d, want not found", not_found[i], r);
        r = tk_router_match(rt, "DELETE", not_found[i], pool, &m);
        if (r != TK_ROUTE_NOT_FOUND) FAILF("DELETE '%s' gave %d, want not found", not_found[i], r);
    }
    /* the deepest route still matches */
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", pool, &m),
                 TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 8);

    /* many segments: never more than the router can hold */
    char path[4000];
    size_t n = 0;
    for (int i = 0; i < 500; i++)
        n += (size_t)snprintf(path + n, sizeof path - n, "/s");
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_NOT_FOUND);

    /* 3000 characters, and right around the limit */
    memset(path, 'a', 3000);
    path[0] = '/';
    path[3000] = '\0';
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_NOT_FOUND);
    int w = snprintf(path, sizeof path, "/v1/connections/");
    memset(path + w, 'q', TK_ROUTER_MAX_PATH - (size_t)w - 6);
    snprintf(path + TK_ROUTER_MAX_PATH - 6, 7, "/token");
    CHECK_EQ_INT(strlen(path), TK_ROUTER_MAX_PATH);
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_OK);
    memmove(path + w + 1, path + w, strlen(path + w) + 1);
    path[w] = 'q';
    CHECK_EQ_INT(strlen(path), TK_ROUTER_MAX_PATH + 1);
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_NOT_FOUND);

    /* "/" matches only a route for "/" */
    static const struct tk_route root[] = {{"GET", "/", h, .flags = 0}};
    struct tk_router *rt2 = NULL;
    struct tk_err e;
    if (CHECK_OK(tk_router_new(root, 1, &rt2, &e), &e)) {
        CHECK_EQ_INT(tk_router_match(rt2, "GET", "/", pool, &m), TK_ROUTE_OK);
        CHECK_EQ_INT(tk_router_match(rt2, "GET", "", pool, &m), TK_ROUTE_NOT_FOUND);
        CHECK_EQ_INT(tk_router_match(rt2, "GET", "//", pool, &m), TK_ROUTE_NOT_FOUND);
        CHECK_EQ_INT(tk_router_match(rt2, "POST", "/", pool, &m), TK_ROUTE_BAD_METHOD);
        CHECK_EQ_INT(tk_router_match(rt2, "GET", "/x", pool, &m), TK_ROUTE_NOT_FOUND);
    }
    tk_router_free(rt2);

    /* an empty table finds nothing */
    rt2 = NULL;
    if (CHECK_OK(tk_router_new(routes, 0, &rt2, &e), &e))
        CHECK_EQ_INT(tk_router_match(rt2, "GET", "/v1/events", pool, &m), TK_ROUTE_NOT_FOUND);
    tk_router_free(rt2);
    tk_pool_free(pool);
    tk_router_free(rt);
}

void test_router_bad_patterns(void)
{
    static const char *bad[] = {
        "v1/events",                                  /* no leading slash */
        "/v1//events",                                /* empty segment */
        "",                                           /* empty */
        "/{a}/{b}/{c}/{d}/{e}",                       /* 5 parameters */
        "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", /* 17 segments */
        "/files/{p+}/x",                              /* a tail not last */
        "/{a+}/{b+}",                                 /* two tails */
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        struct tk_route r[2] = {{"GET", "/ok", h, .flags = 0}, {"GET", bad[i], h, .flags = 0}};
        struct tk_router *rt = NULL;
        struct tk_err e;
        tk_err_clear(&e);
        tk_rc rc = tk_router_new(r, 2, &rt, &e);
        if (rc == TK_OK) {
            FAILF("pattern '%s' accepted", bad[i]);
            tk_router_free(rt);
            continue;
        }
        CHECK_EQ_STR(e.code, "bad_route");
        CHECK(strstr(e.msg, bad[i]) != NULL);
        CHECK(rt == NULL);
    }
    tk_router_free(NULL);
}

/* A pattern with a trailing slash ("/console/") is one exact path: it
 * matches itself only, never the path without the slash or below it. */
void test_router_trailing_slash(void)
{
    struct tk_route r[2] = {{"GET", "/console/", h, .flags = 0}, {"GET", "/console", h, .flags = 0}};
    struct tk_router *rt = NULL;
    struct tk_err e;
    struct tk_pool *pool = tk_pool_new();
    struct tk_route_match m;
    if (!CHECK_OK(tk_router_new(r, 2, &rt, &e), &e)) return;
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/console/", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 0);
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/console", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 1);
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/console/x", pool, &m), TK_ROUTE_NOT_FOUND);
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/console//", pool, &m), TK_ROUTE_NOT_FOUND);
    CHECK_EQ_INT(tk_router_match(rt, "POST", "/console/", pool, &m), TK_ROUTE_BAD_METHOD);
    tk_router_free(rt);
    tk_pool_free(pool);
}

void test_router_tail(void)
{
    static const struct tk_route t[] = {
        {"GET", "/v1/secrets/{path+}", h, .flags = 0},        /* 0 */
        {"PUT", "/v1/secrets/{path+}", h, .flags = 0},        /* 1 */
        {"GET", "/v1/secrets", h, .flags = 0},                /* 2 */
        {"GET", "/v1/kv/{mount}/{rest+}", h, .flags = 0},     /* 3 */
        {"GET", "/v1/secrets-meta/{p+}", h, .flags = 0},      /* 4 */
    };
    struct tk_router *rt = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_router_new(t, TK_NELEM(t), &rt, &e), &e)) return;
    struct tk_pool *pool = tk_pool_new();
    struct tk_route_match m;

    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/secrets/a", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 0);
    CHECK_EQ_STR(param(&m, "path"), "a");
    CHECK_EQ_INT(tk_router_match(rt, "PUT", "/v1/secrets/a/b/c.txt", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 1);
    CHECK_EQ_STR(param(&m, "path"), "a/b/c.txt");
    /* the literal route beside the tail; a tail takes at least one segment */
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/secrets", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_INT(m.index, 2);
    CHECK_EQ_INT(tk_router_match(rt, "DELETE", "/v1/secrets/x/y", pool, &m), TK_ROUTE_BAD_METHOD);
    CHECK_EQ_STR(m.allow, "GET, PUT");
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/kv/m1/x/y", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "mount"), "m1");
    CHECK_EQ_STR(param(&m, "rest"), "x/y");
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/kv/m1", pool, &m), TK_ROUTE_NOT_FOUND);
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/kv//x", pool, &m), TK_ROUTE_NOT_FOUND);
    /* dots inside a segment are fine */
    CHECK_EQ_INT(tk_router_match(rt, "GET", "/v1/secrets/.a/..b/c..", pool, &m), TK_ROUTE_OK);
    CHECK_EQ_STR(param(&m, "path"), ".a/..b/c..");

    /* ".", ".." and empty segments in the tail: refused, by position */
    static const struct {
        const char *path;
        int seg;
        const char *why;
    } bad[] = {
        {"/v1/secrets/..", 3, "is '..'"},
        {"/v1/secrets/.", 3, "is '.'"},
        {"/v1/secrets/a/../b", 4, "is '..'"},
        {"/v1/secrets/a/./b", 4, "is '.'"},
        {"/v1/secrets/a//b", 4, "is empty"},
        {"/v1/secrets//a", 3, "is empty"},
        {"/v1/secrets/a/", 4, "is empty"},
        {"/v1/secrets/a/b/..", 5, "is '..'"},
        {"/v1/kv/m/x/../..", 5, "is '..'"},
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        enum tk_router_result r = tk_router_match(rt, "GET", bad[i].path, pool, &m);
        if (r != TK_ROUTE_BAD_PATH) {
            FAILF("GET '%s' gave %d, want bad path", bad[i].path, r);
            continue;
        }
        CHECK_EQ_INT(m.bad_segment, bad[i].seg);
        CHECK_EQ_STR(m.bad_why, bad[i].why);
        /* whatever the method: the path is refused before the 405 check */
        CHECK_EQ_INT(tk_router_match(rt, "DELETE", bad[i].path, pool, &m), TK_ROUTE_BAD_PATH);
    }

    /* bounds: 32 segments in the tail, not 33; 2048 bytes in the path */
    char path[4200];
    size_t n = (size_t)snprintf(path, sizeof path, "/v1/secrets");
    for (int i = 0; i < TK_ROUTER_MAX_TAIL; i++)
        n += (size_t)snprintf(path + n, sizeof path - n, "/s%d", i);
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_OK);
    CHECK(!strncmp(param(&m, "path"), "s0/s1/", 6));
    snprintf(path + n, sizeof path - n, "/x");
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_NOT_FOUND);
    n = (size_t)snprintf(path, sizeof path, "/v1/secrets/");
    memset(path + n, 'z', TK_ROUTER_MAX_PATH - n);
    path[TK_ROUTER_MAX_PATH] = '\0';
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_OK);
    path[TK_ROUTER_MAX_PATH] = 'z';
    path[TK_ROUTER_MAX_PATH + 1] = '\0';
    CHECK_EQ_INT(tk_router_match(rt, "GET", path, pool, &m), TK_ROUTE_NOT_FOUND);

    tk_pool_free(pool);
    tk_router_free(rt);
}
