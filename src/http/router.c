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
    bool tail; /* {name+}: the rest of the path (last segment only) */
};

struct proute {
    const struct tk_route *r;
    struct seg segs[TK_ROUTER_MAX_SEGMENTS];
    int nsegs;
    bool exact; /* "/console/": a pattern with a trailing slash matches that path only */
};

struct tk_router {
    struct proute *routes;
    size_t n;
};

/* The most segments a request path is split into. */
#define MAX_PATH_SEGS (TK_ROUTER_MAX_SEGMENTS + TK_ROUTER_MAX_TAIL)

/* Split "/a/b/c" into segments; returns -1 if too many or not starting with
 * '/'. Empty segments ("//", a trailing "/") are refused when !allow_empty
 * and kept (length 0) otherwise: a non-tail segment never matches one, and a
 * tail refuses it by position. */
static int split(const char *path, struct seg *segs, int max, bool allow_empty)
{
    if (path[0] != '/') return -1;
    int n = 0;
    const char *p = path + 1;
    if (!*p) return 0;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if ((len == 0 && !allow_empty) || n == max) return -1;
        segs[n].text = p;
        segs[n].len = len;
        segs[n].param = false;
        segs[n].tail = false;
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
        size_t plen = strlen(routes[i].pattern);
        if (plen > 1 && routes[i].pattern[plen - 1] == '/' && !strchr(routes[i].pattern, '{') &&
            !strstr(routes[i].pattern, "//")) {
            pr->exact = true;
            continue;
        }
        pr->nsegs = split(routes[i].pattern, pr->segs, TK_ROUTER_MAX_SEGMENTS, false);
        int nparams = 0;
        bool bad = false;
        for (int s = 0; s < pr->nsegs; s++) {
            struct seg *sg = &pr->segs[s];
            if (sg->len >= 4 && sg->text[0] == '{' && sg->text[sg->len - 2] == '+' &&
                sg->text[sg->len - 1] == '}') {
                sg->param = sg->tail = true;
                sg->text++;
                sg->len -= 3;
                nparams++;
                if (s != pr->nsegs - 1) bad = true; /* a tail is the last segment */
            } else if (sg->len >= 3 && sg->text[0] == '{' && sg->text[sg->len - 1] == '}') {
                sg->param = true;
                sg->text++;
                sg->len -= 2;
                nparams++;
            }
        }
        if (pr->nsegs < 0 || bad || nparams > TK_REQ_MAX_PARAMS) {
            tk_router_free(rt);
            return tk_err_set(e, TK_EINTERNAL, "bad_route", "route pattern %s is malformed",
                              routes[i].pattern);
        }
    }
    *out = rt;
    return TK_OK;
}

/* 1: matches; 0: does not; -1: the pattern's tail takes the rest of the path
 * but a segment of it is refused (m->bad_segment, m->bad_why set if unset). */
static int matches(const struct proute *pr, const struct seg *segs, int n,
                   struct tk_route_match *m)
{
    bool tail = pr->nsegs > 0 && pr->segs[pr->nsegs - 1].tail;
    int fixed = tail ? pr->nsegs - 1 : pr->nsegs;
    if (tail ? (n <= fixed || n - fixed > TK_ROUTER_MAX_TAIL) : pr->nsegs != n) return 0;
    for (int i = 0; i < fixed; i++) {
        if (segs[i].len == 0) return 0;
        if (pr->segs[i].param) continue;
        if (pr->segs[i].len != segs[i].len || memcmp(pr->segs[i].text, segs[i].text, segs[i].len))
            return 0;
    }
    if (!tail) return 1;
    for (int i = fixed; i < n; i++) {
        const char *why = NULL;
        if (segs[i].len == 0)
            why = "is empty";
        else if (segs[i].len == 1 && segs[i].text[0] == '.')
            why = "is '.'";
        else if (segs[i].len == 2 && segs[i].text[0] == '.' && segs[i].text[1] == '.')
            why = "is '..'";
        if (why) {
            if (!m->bad_segment) {
                m->bad_segment = i + 1;
                snprintf(m->bad_why, sizeof m->bad_why, "%s", why);
            }
            return -1;
        }
    }
    return 1;
}

enum tk_router_result tk_router_match(const struct tk_router *rt, const char *method,
                                      const char *path, struct tk_pool *pool,
                                      struct tk_route_match *m)
{
    memset(m, 0, sizeof *m);
    m->index = -1;
    if (strlen(path) > TK_ROUTER_MAX_PATH) return TK_ROUTE_NOT_FOUND;
    struct seg segs[MAX_PATH_SEGS];
    int n = split(path, segs, MAX_PATH_SEGS, true);
    if (n < 0) return TK_ROUTE_NOT_FOUND;
    size_t alen = 0;
    int bad_index = -1;
    for (size_t i = 0; i < rt->n; i++) {
        const struct proute *pr = &rt->routes[i];
        int mr = pr->exact ? !strcmp(pr->r->pattern, path) : matches(pr, segs, n, m);
        if (mr == 0) continue;
        if (mr < 0) {
            if (bad_index < 0) bad_index = (int)i;
            continue;
        }
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
        m->bad_segment = 0;
        m->bad_why[0] = '\0';
        for (int s = 0; s < pr->nsegs; s++) {
            if (!pr->segs[s].param) continue;
            m->names[m->nparams] = tk_pool_strndup(pool, pr->segs[s].text, pr->segs[s].len);
            if (pr->segs[s].tail) /* the rest of the path, from this segment on */
                m->values[m->nparams] = tk_pool_strdup(pool, segs[s].text);
            else
                m->values[m->nparams] = tk_pool_strndup(pool, segs[s].text, segs[s].len);
            m->nparams++;
        }
        return TK_ROUTE_OK;
    }
    if (m->index >= 0) {
        m->bad_segment = 0;
        m->bad_why[0] = '\0';
        return TK_ROUTE_BAD_METHOD;
    }
    if (bad_index >= 0) {
        m->index = bad_index;
        return TK_ROUTE_BAD_PATH;
    }
    return TK_ROUTE_NOT_FOUND;
}

void tk_router_free(struct tk_router *rt)
{
    if (!rt) return;
    free(rt->routes);
    free(rt);
}
