/* router_fuzz.c: libFuzzer target for the router (src/http/router.h).
 *
 * A router is built once over a fixed table with literal, parameter and
 * same-path-different-method routes. Each input is "METHOD\nPATH" (no
 * newline: a method is picked by the first byte and the rest is the path),
 * matched with a fresh tk_pool. A match must agree with its pattern: same
 * method, the literal segments equal, each parameter one non-empty segment,
 * and the pattern with the values substituted gives the path back. A tail
 * parameter {name+} takes 1..TK_ROUTER_MAX_TAIL segments, none empty, "."
 * or ".."; TK_ROUTE_BAD_PATH names a segment of the path that is one of
 * those. */
#include "../src/http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void h(struct tk_req *r)
{
    (void)r;
}

static const struct tk_route routes[] = {
    {"GET", "/health", h, .flags = 0},
    {"GET", "/ready", h, .flags = 0},
    {"GET", "/metrics", h, .flags = 0},
    {"GET", "/v1/whoami", h, .flags = TK_ROUTE_AUTH},
    {"GET", "/v1/events", h, .flags = TK_ROUTE_AUTH},
    {"GET", "/v1/operator-tokens", h, .flags = TK_ROUTE_AUTH},
    {"POST", "/v1/operator-tokens", h, .flags = TK_ROUTE_AUTH},
    {"DELETE", "/v1/operator-tokens/{id}", h, .flags = TK_ROUTE_AUTH},
    {"GET", "/v1/connections/{id}/token", h, .flags = TK_ROUTE_AUTH},
    {"POST", "/v1/connections/{id}/token", h, .flags = TK_ROUTE_AUTH},
    {"PUT", "/v1/connections/{id}/token", h, .flags = TK_ROUTE_AUTH},
    {"GET", "/v1/a/{x}/b/{y}", h, .flags = TK_ROUTE_AUTH},
    {"GET", "/v1/{a}/{b}/{c}/{d}", h, .flags = TK_ROUTE_AUTH},
    {"GET", "/v1/{}/literal", h, .flags = 0},
    {"GET", "/", h, .flags = 0},
    {"PATCH", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/{p}", h, .flags = 0},
    {"GET", "/files/{path+}", h, .flags = 0},
    {"PUT", "/files/{path+}", h, .flags = 0},
    {"GET", "/kv/{mount}/{rest+}", h, .flags = 0},
    {"GET", "/files", h, .flags = 0},
};

static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};

static struct tk_router *rt;

static void check(int cond, const char *what, const char *method, const char *path)
{
    if (!cond) {
        fprintf(stderr, "router_fuzz: invariant failed: %s (method '%s' path '%s')\n", what, method,
                path);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct tk_err e;
    if (tk_router_new(routes, TK_NELEM(routes), &rt, &e) != TK_OK) {
        fprintf(stderr, "router_fuzz: tk_router_new: %s\n", e.msg);
        abort();
    }
    /* Patterns tokend must refuse at start. */
    static const struct tk_route bad[][1] = {
        {{"GET", "v1/no-slash", h, .flags = 0}},
        {{"GET", "/v1//double", h, .flags = 0}},
        {{"GET", "/v1/trailing/", h, .flags = 0}},
        {{"GET", "/{a}/{b}/{c}/{d}/{e}", h, .flags = 0}},
        {{"GET", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", h, .flags = 0}},
        {{"GET", "/files/{p+}/x", h, .flags = 0}},
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        struct tk_router *r2 = NULL;
        if (tk_router_new(bad[i], 1, &r2, &e) == TK_OK) {
            fprintf(stderr, "router_fuzz: pattern %s accepted\n", bad[i][0].pattern);
            abort();
        }
    }
    return 0;
}

/* Rebuild the path from the matched pattern and values; compare. */
static void verify_ok(const struct tk_route_match *m, const char *method, const char *path)
{
    check(m->index >= 0 && (size_t)m->index < TK_NELEM(routes), "index in range", method, path);
    const struct tk_route *r = &routes[m->index];
    /* HEAD is answered by the GET route (the body is dropped). */
    check(strcmp(r->method, method) == 0 || (!strcmp(method, "HEAD") && !strcmp(r->method, "GET")),
          "matched route has the method", method, path);
    char rebuilt[TK_ROUTER_MAX_PATH + 64];
    size_t o = 0;
    int pi = 0;
    const char *p = r->pattern;
    if (strcmp(p, "/") == 0) {
        check(strcmp(path, "/") == 0, "'/' matches only '/'", method, path);
        check(m->nparams == 0, "no parameters for '/'", method, path);
        return;
    }
    while (*p) {
        check(*p == '/', "pattern segment starts with '/'", method, path);
        p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        rebuilt[o++] = '/';
        bool tail = len >= 4 && p[0] == '{' && p[len - 2] == '+' && p[len - 1] == '}';
        if (tail) {
            check(pi < m->nparams, "enough parameters", method, path);
            check(strlen(m->names[pi]) == len - 3 && !memcmp(m->names[pi], p + 1, len - 3),
                  "tail name from the pattern", method, path);
            const char *v = m->values[pi];
            size_t vl = strlen(v);
            check(vl > 0, "tail non-empty", method, path);
            int nseg = 0;
            const char *q = v;
            for (;;) {
                const char *sl = strchr(q, '/');
                size_t sln = sl ? (size_t)(sl - q) : strlen(q);
                check(sln > 0, "no empty tail segment", method, path);
                check(!(sln == 1 && q[0] == '.') && !(sln == 2 && q[0] == '.' && q[1] == '.'),
                      "no '.' or '..' tail segment", method, path);
                nseg++;
                if (!sl) break;
                q = sl + 1;
            }
            check(nseg <= TK_ROUTER_MAX_TAIL, "tail segments bounded", method, path);
            check(o + vl < sizeof rebuilt, "rebuilt path fits", method, path);
            memcpy(rebuilt + o, v, vl);
            o += vl;
            pi++;
        } else if (len >= 3 && p[0] == '{' && p[len - 1] == '}') {
            check(pi < m->nparams, "enough parameters", method, path);
            check(strlen(m->names[pi]) == len - 2 && !memcmp(m->names[pi], p + 1, len - 2),
                  "parameter name from the pattern", method, path);
            const char *v = m->values[pi];
            size_t vl = strlen(v);
            check(vl > 0, "parameter value non-empty", method, path);
            check(strchr(v, '/') == NULL, "parameter value is one segment", method, path);
            check(o + vl < sizeof rebuilt, "rebuilt path fits", method, path);
            memcpy(rebuilt + o, v, vl);
            o += vl;
            pi++;
        } else {
            check(o + len < sizeof rebuilt, "rebuilt path fits", method, path);
            memcpy(rebuilt + o, p, len);
            o += len;
        }
        p += len;
    }
    rebuilt[o] = '\0';
    check(pi == m->nparams, "parameter count", method, path);
    check(strcmp(rebuilt, path) == 0, "pattern with values gives the path back", method, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (size) memcpy(in, data, size);
    in[size] = '\0';
    const char *method, *path;
    char *nl = memchr(in, '\n', size);
    if (nl) {
        *nl = '\0';
        method = in;
        path = nl + 1;
    } else {
        method = size ? methods[data[0] % TK_NELEM(methods)] : "GET";
        path = size ? in + 1 : in;
    }

    struct tk_pool *pool = tk_pool_new();
    struct tk_route_match m;
    memset(&m, 0x5A, sizeof m);
    enum tk_router_result res = tk_router_match(rt, method, path, pool, &m);
    switch (res) {
    case TK_ROUTE_OK:
        verify_ok(&m, method, path);
        break;
    case TK_ROUTE_BAD_METHOD:
        check(m.index >= 0 && (size_t)m.index < TK_NELEM(routes), "405 index in range", method,
              path);
        check(strnlen(m.allow, sizeof m.allow) < sizeof m.allow, "allow NUL-terminated", method,
              path);
        check(m.allow[0] != '\0', "allow non-empty", method, path);
        check(strstr(m.allow, routes[m.index].method) != NULL, "allow names the route's method",
              method, path);
        check(strcmp(routes[m.index].method, method) != 0, "405 but the method matches", method,
              path);
        break;
    case TK_ROUTE_BAD_PATH: {
        check(m.index >= 0 && (size_t)m.index < TK_NELEM(routes), "bad path index", method, path);
        check(strstr(routes[m.index].pattern, "+}") != NULL, "bad path only for a tail route",
              method, path);
        check(m.bad_segment >= 1, "bad path names a segment", method, path);
        /* find segment bad_segment of the path: it is empty, "." or ".." */
        const char *q = path + 1;
        for (int i = 1; i < m.bad_segment; i++) {
            q = strchr(q, '/');
            check(q != NULL, "bad segment inside the path", method, path);
            q++;
        }
        size_t sl = strcspn(q, "/");
        check(sl == 0 || (sl == 1 && q[0] == '.') || (sl == 2 && q[0] == '.' && q[1] == '.'),
              "the named segment is empty, '.' or '..'", method, path);
        break;
    }
    case TK_ROUTE_NOT_FOUND:
        check(m.index == -1, "index -1 when not found", method, path);
        break;
    default:
        check(0, "result is one of the three", method, path);
    }
    tk_pool_free(pool);
    free(in);
    return 0;
}
