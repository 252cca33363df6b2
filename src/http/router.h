/* router.h: match a method and a decoded path against the route table.
 * Patterns are literal segments and {name} segments; a {name} matches one
 * non-empty segment. The last segment of a pattern may be a tail {name+}:
 * it matches one or more remaining segments (at most TK_ROUTER_MAX_TAIL,
 * the whole path at most TK_ROUTER_MAX_PATH bytes) and its value is those
 * segments joined with '/'. A tail with an empty, "." or ".." segment gives
 * TK_ROUTE_BAD_PATH (400 invalid_path) naming the segment's position, before
 * any handler. A path that matches a pattern but not its method gives
 * TK_ROUTE_BAD_METHOD with the allowed methods, for 405 and Allow. */
#ifndef TK_ROUTER_H
#define TK_ROUTER_H

#include "http.h"

struct tk_router;

enum tk_router_result { TK_ROUTE_OK = 0, TK_ROUTE_NOT_FOUND, TK_ROUTE_BAD_METHOD, TK_ROUTE_BAD_PATH };

struct tk_route_match {
    int index; /* into the route table */
    int nparams;
    const char *names[TK_REQ_MAX_PARAMS];
    const char *values[TK_REQ_MAX_PARAMS]; /* from the pool */
    char allow[64];                        /* for TK_ROUTE_BAD_METHOD */
    int bad_segment; /* TK_ROUTE_BAD_PATH: 1-based position of the segment in the path */
    char bad_why[48];  /* TK_ROUTE_BAD_PATH: "is empty", "is '.'", "is '..'" */
};

#define TK_ROUTER_MAX_PATH 2048
#define TK_ROUTER_MAX_SEGMENTS 16 /* of a pattern; of a path without a tail */
#define TK_ROUTER_MAX_TAIL 32     /* segments a tail parameter takes */

tk_rc tk_router_new(const struct tk_route *routes, size_t n, struct tk_router **out,
                    struct tk_err *e);
enum tk_router_result tk_router_match(const struct tk_router *rt, const char *method,
                                      const char *path, struct tk_pool *pool,
                                      struct tk_route_match *m);
void tk_router_free(struct tk_router *rt);

#endif
