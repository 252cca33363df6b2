/* routes.c: every route tokend answers, in one table. */
#include "api.h"

/* Routes answered while sealed skip the gate: until start-up is done they
 * answer 503 starting here instead (the keyring and store are not ready). */
#define STARTED(h)                                                                                \
    static void started_##h(struct tk_req *r)                                                     \
    {                                                                                             \
        if (tk_api_started(r)) h(r);                                                              \
    }
STARTED(tk_h_sys_unseal)
STARTED(tk_h_sys_seal_status)

/* init is unauthenticated: each call counts against the caller's address
 * budget (auth_fail_limit per auth_fail_window). */
static void limited_init(struct tk_req *r)
{
    if (tk_api_started(r) && tk_api_rate_count(r)) tk_h_sys_init(r);
}

static const struct tk_route routes[] = {
    {"GET", "/health", tk_h_health, TK_ROUTE_SEALED_OK},
    {"GET", "/ready", tk_h_ready, TK_ROUTE_SEALED_OK},
    {"GET", "/metrics", tk_h_metrics, TK_ROUTE_SEALED_OK},
    {"POST", "/v1/sys/init", limited_init, TK_ROUTE_SEALED_OK},
    {"POST", "/v1/sys/unseal", started_tk_h_sys_unseal, TK_ROUTE_SEALED_OK},
    {"GET", "/v1/sys/seal-status", started_tk_h_sys_seal_status, TK_ROUTE_SEALED_OK},
    {"GET", "/v1/sys/doctor", tk_h_sys_doctor, TK_ROUTE_AUTH},
    {"POST", "/v1/sys/seal", tk_h_sys_seal, TK_ROUTE_AUTH},
    {"POST", "/v1/sys/rotate", tk_h_sys_rotate, TK_ROUTE_AUTH},
    {"POST", "/v1/sys/rewrap", tk_h_sys_rewrap, TK_ROUTE_AUTH},
    {"GET", "/v1/whoami", tk_h_whoami, TK_ROUTE_AUTH},
    {"GET", "/v1/events", tk_h_events_list, TK_ROUTE_AUTH},
    {"GET", "/v1/events/verify", tk_h_events_verify, TK_ROUTE_AUTH},
    {"GET", "/v1/operator-tokens", tk_h_optokens_list, TK_ROUTE_AUTH},
    {"POST", "/v1/operator-tokens", tk_h_optokens_create, TK_ROUTE_AUTH},
    {"DELETE", "/v1/operator-tokens/{id}", tk_h_optokens_revoke, TK_ROUTE_AUTH},
    {"GET", "/v1/tenants", tk_h_tenants_list, TK_ROUTE_AUTH},
    {"POST", "/v1/tenants", tk_h_tenants_create, TK_ROUTE_AUTH},
    {"GET", "/v1/tenants/{id}", tk_h_tenants_get, TK_ROUTE_AUTH},
};

const struct tk_route *tk_api_routes(size_t *n)
{
    *n = TK_NELEM(routes);
    return routes;
}
