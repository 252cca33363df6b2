/* router.c: see router.h. Route tables are small (tens of routes), so a
 * linear scan over pre-split patterns is both simplest and fast. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct seg {
    const char *text; /* literal, or the parameter name */
    size_t len;
    bool param;
};

struct proute {
    const struct tk_route *r;
    struct seg segs[TK_ROUTER_MAX_SEGMENTS];
    int nsegs;
};

struct tk_router {
    struct proute *routes;
    size_t n;
};

/* Split "/a/b/c" into segments; returns -1 if too many or malformed. */
static int split(const char *path, struct seg *segs, int max)
{
    if (path[0] != '/') return -1;
    int n = 0;
    const char *p = path + 1;
    if (!*p) return 0;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || n == max) return -1; /* "//" or trailing "/" */
        segs[n].text = p;
        segs[n].len = len;
        segs[n].param = false;
        n++;
        if (!slash) return n;
        p = slash + 1;
    }
}

tk_rc tk_router_new(const struct tk_route *routes, size_t n, struct tk_router **out,
                    struct tk_err *e)
{
    struct tk_router *rt = tk_calloc(1, sizeof *rt);
    rt->routes = tk_calloc(n ? n : 1, sizeof *rt->routes);
    rt->n = n;
    for (size_t i = 0; i < n; i++) {
        struct proute *pr = &rt->routes[i];
        pr->r = &routes[i];
        pr->nsegs = split(routes[i].pattern, pr->segs, TK_ROUTER_MAX_SEGMENTS);
        int nparams = 0;
        for (int s = 0; s < pr->nsegs; s++) {
            struct seg *sg = &pr->segs[s];
            if (sg->len >= 3 && sg->text[0] == '{' && sg->text[sg->len - 1] == '}') {
                sg->param = true;
                sg->text++;
                sg->len -= 2;
                nparams++;
            }
        }
        if (pr->nsegs < 0 || nparams > TK_REQ_MAX_PARAMS) {
            tk_router_free(rt);
            return tk_err_set(e, TK_EINTERNAL, "bad_route", "route pattern %s is malformed",
                              routes[i].pattern);
        }
    }
    *out = rt;
    return TK_OK;
}

static bool matches(const struct proute *pr, const struct seg *segs, int n)
{
    if (pr->nsegs != n) return false;
    for (int i = 0; i < n; i++) {
        if (pr->segs[i].param) continue;
        if (pr->segs[i].len != segs[i].len || memcmp(pr->segs[i].text, segs[i].text, segs[i].len))
            return false;
    }
    return true;
}

enum tk_router_result tk_router_match(const struct tk_router *rt, const char *method,
                                      const char *path, struct tk_pool *pool,
                                      struct tk_route_match *m)
{
    memset(m, 0, sizeof *m);
    m->index = -1;
    if (strlen(path) > TK_ROUTER_MAX_PATH) return TK_ROUTE_NOT_FOUND;
    struct seg segs[TK_ROUTER_MAX_SEGMENTS];
    int n = split(path, segs, TK_ROUTER_MAX_SEGMENTS);
    if (n < 0) return TK_ROUTE_NOT_FOUND;
    size_t alen = 0;
    for (size_t i = 0; i < rt->n; i++) {
        const struct proute *pr = &rt->routes[i];
        if (!matches(pr, segs, n)) continue;
        /* HEAD is GET without a body (libmicrohttpd drops the body). */
        bool same = !strcmp(pr->r->method, method) ||
                    (!strcmp(method, "HEAD") && !strcmp(pr->r->method, "GET"));
        if (!same) {
            if (m->index < 0) m->index = (int)i;
            if (!strstr(m->allow, pr->r->method)) {
                int w = snprintf(m->allow + alen, sizeof m->allow - alen, "%s%s",
                                 alen ? ", " : "", pr->r->method);
                if (w > 0 && (size_t)w < sizeof m->allow - alen) alen += (size_t)w;
            }
            continue;
        }
        m->index = (int)i;
        for (int s = 0; s < n; s++) {
            if (!pr->segs[s].param) continue;
            m->names[m->nparams] = tk_pool_strndup(pool, pr->segs[s].text, pr->segs[s].len);
            m->values[m->nparams] = tk_pool_strndup(pool, segs[s].text, segs[s].len);
            m->nparams++;
        }
        return TK_ROUTE_OK;
    }
    return m->index >= 0 ? TK_ROUTE_BAD_METHOD : TK_ROUTE_NOT_FOUND;
}

void tk_router_free(struct tk_router *rt)
{
    if (!rt) return;
    free(rt->routes);
    free(rt);
}
