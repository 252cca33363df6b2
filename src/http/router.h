/* router.h: match a method and a decoded path against the route table.
 * Patterns are literal segments and {name} segments; a {name} matches one
 * non-empty segment. A path that matches a pattern but not its method gives
 * TK_ROUTE_BAD_METHOD with the allowed methods, for 405 and Allow. */
#ifndef TK_ROUTER_H
#define TK_ROUTER_H

#include "http.h"

struct tk_router;

enum tk_router_result { TK_ROUTE_OK = 0, TK_ROUTE_NOT_FOUND, TK_ROUTE_BAD_METHOD };

struct tk_route_match {
    int index; /* into the route table */
    int nparams;
    const char *names[TK_REQ_MAX_PARAMS];
    const char *values[TK_REQ_MAX_PARAMS]; /* from the pool */
    char allow[64];                        /* for TK_ROUTE_BAD_METHOD */
};

#define TK_ROUTER_MAX_PATH 2048
#define TK_ROUTER_MAX_SEGMENTS 16

tk_rc tk_router_new(const struct tk_route *routes, size_t n, struct tk_router **out,
                    struct tk_err *e);
enum tk_router_result tk_router_match(const struct tk_router *rt, const char *method,
                                      const char *path, struct tk_pool *pool,
                                      struct tk_route_match *m);
void tk_router_free(struct tk_router *rt);

#endif
