/* routes.c: every route tokend answers, in one table. */
#include "api.h"
#include "../console/pages.h"

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

/* A route that authenticates: the principal kinds it accepts and the role
 * it needs (api.h); the authenticate hook checks both, handlers do not. */
#define AUTH(k, role_) TK_ROUTE_AUTH, .kinds = (k), .role = (role_)
#define OPERATOR(role_) AUTH(TK_P_OPERATOR, role_)
/* Client tokens (tkc_) have no role: their routes declare TK_ROLE_ANY. */
#define CLIENT AUTH(TK_P_CLIENT, TK_ROLE_ANY)
/* A console page (src/console/): a session cookie, the role it needs; its
 * forms (POST) also carry the session's CSRF token, checked by the hook. */
#define CONSOLE(role_) AUTH(TK_P_SESSION, role_)
#define CONSOLE_FORM(role_) TK_ROUTE_AUTH | TK_ROUTE_FORM, .kinds = TK_P_SESSION, .role = (role_)
/* A route anybody may call: no principal, no role. */
#define PUBLIC(flags) (flags), .kinds = 0, .role = TK_ROLE_UNSET

static const struct tk_route routes[] = {
    {"GET", "/health", tk_h_health, PUBLIC(TK_ROUTE_SEALED_OK | TK_ROUTE_INLINE)},
    {"GET", "/ready", tk_h_ready, PUBLIC(TK_ROUTE_SEALED_OK | TK_ROUTE_INLINE)},
    {"GET", "/metrics", tk_h_metrics, PUBLIC(TK_ROUTE_SEALED_OK | TK_ROUTE_INLINE)},
    {"POST", "/v1/sys/init", limited_init, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"POST", "/v1/sys/unseal", started_tk_h_sys_unseal, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/v1/sys/seal-status", started_tk_h_sys_seal_status, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/v1/sys/doctor", tk_h_sys_doctor, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"POST", "/v1/sys/seal", tk_h_sys_seal, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"POST", "/v1/sys/rotate", tk_h_sys_rotate, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"POST", "/v1/sys/rewrap", tk_h_sys_rewrap, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"GET", "/v1/sys/routes", tk_h_sys_routes, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"GET", "/v1/whoami", tk_h_whoami, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/events", tk_h_events_list, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/events/verify", tk_h_events_verify, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/events/stream", tk_h_events_stream, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/events/counts", tk_h_events_counts, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/operator-tokens", tk_h_optokens_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/operator-tokens", tk_h_optokens_create, OPERATOR(TK_ROLE_ADMIN)},
    {"DELETE", "/v1/operator-tokens/{id}", tk_h_optokens_revoke, OPERATOR(TK_ROLE_ADMIN)},
    {"PATCH", "/v1/operator-tokens/{id}", tk_h_optokens_patch, OPERATOR(TK_ROLE_ADMIN)},
    {"GET", "/v1/tenants", tk_h_tenants_list, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"POST", "/v1/tenants", tk_h_tenants_create, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"GET", "/v1/tenants/{id}", tk_h_tenants_get, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"GET", "/v1/providers", tk_h_providers_list, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/providers/{name}", tk_h_providers_get, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/provider-apps", tk_h_apps_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/provider-apps", tk_h_apps_create, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/provider-apps/{id}", tk_h_apps_get, OPERATOR(TK_ROLE_ANY)},
    {"PATCH", "/v1/provider-apps/{id}", tk_h_apps_update, OPERATOR(TK_ROLE_WRITE)},
    {"DELETE", "/v1/provider-apps/{id}", tk_h_apps_delete, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/connections", tk_h_conn_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/connections", tk_h_conn_create, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/connections/{id}", tk_h_conn_get, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/connections/{id}/diagnosis", tk_h_conn_diagnosis, OPERATOR(TK_ROLE_ANY)},
    {"DELETE", "/v1/connections/{id}", tk_h_conn_delete, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/connections/{id}/token", tk_h_conn_token, OPERATOR(TK_ROLE_WRITE)},
    {"POST", "/v1/connections/{id}/unauthorized", tk_h_conn_unauthorized, OPERATOR(TK_ROLE_WRITE)},
    {"POST", "/v1/connections/{id}/refresh", tk_h_conn_refresh, OPERATOR(TK_ROLE_WRITE)},
    {"POST", "/v1/connect/{app_id}/start", tk_h_connect_start, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/connect/callback", tk_h_connect_callback, PUBLIC(0)},
    {"GET", "/v1/clients", tk_h_clients_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/clients", tk_h_clients_create, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/clients/{id}", tk_h_clients_get, OPERATOR(TK_ROLE_ANY)},
    {"PATCH", "/v1/clients/{id}", tk_h_clients_update, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/clients/{id}/report", tk_h_clients_report, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/clients/{id}/tokens", tk_h_client_tokens_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/clients/{id}/tokens", tk_h_client_tokens_create, OPERATOR(TK_ROLE_WRITE)},
    {"DELETE", "/v1/clients/{id}/tokens/{token_id}", tk_h_client_tokens_revoke,
     OPERATOR(TK_ROLE_WRITE)},
    {"POST", "/v1/clients/{id}/tokens/{token_id}/rotate", tk_h_client_tokens_rotate,
     OPERATOR(TK_ROLE_WRITE)},
    {"POST", "/v1/tokens/validate", tk_h_tokens_validate, OPERATOR(TK_ROLE_ANY)},
    /* answers 200 {valid: false, reason} for a refused token (auth.c) */
    {"GET", "/v1/tokens/validate", tk_h_tokens_validate_self, CLIENT},
    {"POST", "/v1/agents/register", tk_h_agents_register, CLIENT},
    {"POST", "/v1/agents/{id}/heartbeat", tk_h_agents_heartbeat, CLIENT},
    {"GET", "/v1/agents", tk_h_agents_list, OPERATOR(TK_ROLE_ANY)},
    /* end users and their login and consent pages (users_api.c, oauth_login_api.c) */
    {"GET", "/v1/users", tk_h_users_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/users", tk_h_users_create, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/users/{id}", tk_h_users_get, OPERATOR(TK_ROLE_ANY)},
    {"PATCH", "/v1/users/{id}", tk_h_users_update, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/oauth2/login", tk_h_oauth_login_page, PUBLIC(0)},
    {"POST", "/oauth2/login", tk_h_oauth_login, PUBLIC(TK_ROUTE_FORM)},
    {"GET", "/oauth2/consent", tk_h_oauth_consent_page, PUBLIC(0)},
    {"POST", "/oauth2/consent", tk_h_oauth_consent, PUBLIC(TK_ROUTE_FORM)},
    {"POST", "/oauth2/logout", tk_h_oauth_logout, PUBLIC(TK_ROUTE_FORM)},
    /* signing keys (oauth_keys_api.c) */
    {"GET", "/oauth2/jwks", tk_h_oauth_jwks, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/v1/sys/signing-keys", tk_h_signing_keys_list, OPERATOR(TK_ROLE_NODE_ADMIN)},
    {"POST", "/v1/sys/signing-keys/rotate", tk_h_signing_keys_rotate,
     OPERATOR(TK_ROLE_NODE_ADMIN)},
    /* OAuth clients and scopes (oauth_clients_api.c) */
    {"GET", "/v1/oauth/scopes", tk_h_oauth_scopes_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/oauth/scopes", tk_h_oauth_scopes_create, OPERATOR(TK_ROLE_WRITE)},
    {"PATCH", "/v1/oauth/scopes/{id}", tk_h_oauth_scopes_update, OPERATOR(TK_ROLE_WRITE)},
    {"DELETE", "/v1/oauth/scopes/{id}", tk_h_oauth_scopes_delete, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/oauth/clients", tk_h_oauth_clients_list, OPERATOR(TK_ROLE_ANY)},
    {"POST", "/v1/oauth/clients", tk_h_oauth_clients_create, OPERATOR(TK_ROLE_WRITE)},
    {"GET", "/v1/oauth/clients/{id}", tk_h_oauth_clients_get, OPERATOR(TK_ROLE_ANY)},
    {"PATCH", "/v1/oauth/clients/{id}", tk_h_oauth_clients_update, OPERATOR(TK_ROLE_WRITE)},
    {"DELETE", "/v1/oauth/clients/{id}", tk_h_oauth_clients_delete, OPERATOR(TK_ROLE_WRITE)},
    {"POST", "/v1/oauth/clients/{id}/rotate-secret", tk_h_oauth_clients_rotate_secret,
     OPERATOR(TK_ROLE_WRITE)},
    /* RFC 7591/7592: the handlers authenticate (oauth_dcr decides how) */
    {"POST", "/oauth2/register", tk_h_oauth_register, PUBLIC(0)},
    {"GET", "/oauth2/register/{id}", tk_h_oauth_register_get, PUBLIC(0)},
    {"PUT", "/oauth2/register/{id}", tk_h_oauth_register_put, PUBLIC(0)},
    {"DELETE", "/oauth2/register/{id}", tk_h_oauth_register_delete, PUBLIC(0)},
#ifdef TK_UNITTEST
    /* the test build only: client authentication alone, for the e2e suite */
    {"POST", "/oauth2/test/client-auth", tk_h_oauth_client_auth_probe, PUBLIC(0)},
#endif
    /* the authorization endpoint and flow traces (oauth_authorize_api.c) */
    {"GET", "/oauth2/authorize", tk_h_oauth_authorize, PUBLIC(0)},
    {"GET", "/v1/oauth/flows", tk_h_oauth_flows_list, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/oauth/flows/{id}", tk_h_oauth_flows_get, OPERATOR(TK_ROLE_ANY)},
    {"GET", "/v1/oauth/flows/{id}/diagnosis", tk_h_oauth_flows_diagnosis, OPERATOR(TK_ROLE_ANY)},
    /* the token part (oauth_token_api.c): the client authenticates in the handler */
    {"POST", "/oauth2/token", tk_h_oauth_token, PUBLIC(TK_ROUTE_FORM)},
    {"POST", "/oauth2/introspect", tk_h_oauth_introspect, PUBLIC(TK_ROUTE_FORM)},
    {"POST", "/oauth2/revoke", tk_h_oauth_revoke, PUBLIC(TK_ROUTE_FORM)},
    {"GET", "/.well-known/oauth-authorization-server", tk_h_oauth_metadata,
     PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/.well-known/openid-configuration", tk_h_oauth_metadata, PUBLIC(TK_ROUTE_SEALED_OK)},
    /* the admin console (src/console/): pages over the /v1 routes above,
     * each form doing what its /v1 route does under that route's rules */
    {"GET", "/console", tk_h_console_home, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/console/", tk_h_console_home, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/console/assets/{name}", tk_h_console_asset, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"GET", "/console/login", tk_h_console_login_page, PUBLIC(0)},
    {"POST", "/console/login", tk_h_console_login, PUBLIC(TK_ROUTE_FORM)},
    {"POST", "/console/logout", tk_h_console_logout, CONSOLE_FORM(TK_ROLE_ANY)},
    /* node (page_node.c) */
    {"GET", "/console/node", tk_h_console_node, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/unseal", tk_h_console_unseal_page, PUBLIC(TK_ROUTE_SEALED_OK)},
    {"POST", "/console/unseal", tk_h_console_unseal, PUBLIC(TK_ROUTE_SEALED_OK | TK_ROUTE_FORM)},
    {"POST", "/console/node/seal", tk_h_console_node_seal, CONSOLE_FORM(TK_ROLE_NODE_ADMIN)},
    {"POST", "/console/node/rewrap", tk_h_console_node_rewrap, CONSOLE_FORM(TK_ROLE_NODE_ADMIN)},
    /* events (page_events.c) */
    {"GET", "/console/events", tk_h_console_events, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/events/stream", tk_h_console_events_stream, CONSOLE(TK_ROLE_ANY)},
    /* operator tokens and tenants (page_tokens.c) */
    {"GET", "/console/tokens", tk_h_console_tokens, CONSOLE(TK_ROLE_ANY)},
    {"POST", "/console/tokens", tk_h_console_tokens_create, CONSOLE_FORM(TK_ROLE_ADMIN)},
    {"POST", "/console/tokens/{id}/revoke", tk_h_console_tokens_revoke, CONSOLE_FORM(TK_ROLE_ADMIN)},
    {"GET", "/console/tenants", tk_h_console_tenants, CONSOLE(TK_ROLE_NODE_ADMIN)},
    {"POST", "/console/tenants", tk_h_console_tenants_create, CONSOLE_FORM(TK_ROLE_NODE_ADMIN)},
    /* connections (page_connections.c) */
    {"GET", "/console/connections", tk_h_console_connections, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/connections/{id}", tk_h_console_connection, CONSOLE(TK_ROLE_ANY)},
    {"POST", "/console/connections/{id}/refresh", tk_h_console_connection_refresh,
     CONSOLE_FORM(TK_ROLE_WRITE)},
    {"POST", "/console/connections/{id}/connect", tk_h_console_connection_connect,
     CONSOLE_FORM(TK_ROLE_WRITE)},
    /* clients and agents (page_clients.c) */
    {"GET", "/console/clients", tk_h_console_clients, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/clients/{id}", tk_h_console_client, CONSOLE(TK_ROLE_ANY)},
    {"POST", "/console/clients/{id}", tk_h_console_client_update, CONSOLE_FORM(TK_ROLE_WRITE)},
    {"POST", "/console/clients/{id}/tokens/{token_id}/rotate", tk_h_console_client_token_rotate,
     CONSOLE_FORM(TK_ROLE_WRITE)},
    {"POST", "/console/clients/{id}/tokens/{token_id}/revoke", tk_h_console_client_token_revoke,
     CONSOLE_FORM(TK_ROLE_WRITE)},
    {"GET", "/console/agents", tk_h_console_agents, CONSOLE(TK_ROLE_ANY)},
    /* OAuth (page_oauth.c) */
    {"GET", "/console/oauth/clients", tk_h_console_oauth_clients, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/oauth/clients/{id}", tk_h_console_oauth_client, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/oauth/flows", tk_h_console_oauth_flows, CONSOLE(TK_ROLE_ANY)},
    {"GET", "/console/oauth/flows/{id}", tk_h_console_oauth_flow, CONSOLE(TK_ROLE_ANY)},
    /* any other /console/ address (and a form route opened with GET): a page,
     * not JSON; after every console route (the first match wins) */
    {"GET", "/console/{rest+}", tk_h_console_not_found, PUBLIC(0)},
    {"POST", "/console/{rest+}", tk_h_console_not_found, PUBLIC(0)},
};

const struct tk_route *tk_api_routes(size_t *n)
{
    *n = TK_NELEM(routes);
    return routes;
}

/* GET /v1/sys/routes: the table as declared, so that a client (and the
 * e2e route walk) sees which principal kinds and role each route takes. */
void tk_h_sys_routes(struct tk_req *r)
{
    static const char *const kind_code[TK_PRINCIPAL_KINDS] = {
        [TK_PRINCIPAL_OPERATOR_TOKEN] = "operator_token",
        [TK_PRINCIPAL_CLIENT_TOKEN] = "client_token",
        [TK_PRINCIPAL_SESSION] = "session",
        [TK_PRINCIPAL_OAUTH_CLIENT] = "oauth_client",
    };
    json_t *a = json_array();
    for (size_t i = 0; i < TK_NELEM(routes); i++) {
        const struct tk_route *rt = &routes[i];
        json_t *kinds = json_array();
        for (int k = 1; k < TK_PRINCIPAL_KINDS; k++)
            if (rt->kinds & TK_P_KIND(k)) json_array_append_new(kinds, json_string(kind_code[k]));
        json_array_append_new(
            a, json_pack("{s:s, s:s, s:o, s:s, s:b}", "method", rt->method, "path", rt->pattern,
                         "principals", kinds, "role",
                         (rt->flags & TK_ROUTE_AUTH) ? tk_api_role_name(rt->role) : "public",
                         "sealed_ok", (rt->flags & TK_ROUTE_SEALED_OK) != 0));
    }
    tk_reply_json(r, 200, json_pack("{s:o}", "routes", a));
}
