/* pages.h: the console's route handlers, by the file that owns them. */
#ifndef TK_CONSOLE_PAGES_H
#define TK_CONSOLE_PAGES_H

#include "../http/http.h"

/* core (session.c) */
/* GET /console/ and /console: to the node page (the unseal page when sealed) */
void tk_h_console_home(struct tk_req *r);
void tk_h_console_login_page(struct tk_req *r);
void tk_h_console_login(struct tk_req *r);
void tk_h_console_logout(struct tk_req *r);
/* GET /console/assets/{name} */
void tk_h_console_asset(struct tk_req *r);

/* node (page_node.c) */
/* GET /console/node: health, readiness, seal status, data key version, rewrap progress, doctor findings */
void tk_h_console_node(struct tk_req *r);
/* GET /console/unseal (public, answered while sealed): seal status and a form taking one share at a time */
void tk_h_console_unseal_page(struct tk_req *r);
/* POST /console/unseal (public, while sealed): one share; progress shown */
void tk_h_console_unseal(struct tk_req *r);
/* POST /console/node/seal (node admins): POST /v1/sys/seal, then to the unseal page */
void tk_h_console_node_seal(struct tk_req *r);
/* POST /console/node/rewrap (node admins): POST /v1/sys/rewrap, then back to the node page */
void tk_h_console_node_rewrap(struct tk_req *r);

/* events (page_events.c, chart.c) */
/* GET /console/events: the live terminal (filters kind, outcome, subject_id; pause), a chart of attempts per minute by outcome */
void tk_h_console_events(struct tk_req *r);
/* GET /console/events/stream: GET /v1/events/stream for the session (EventSource sends the cookie) */
void tk_h_console_events_stream(struct tk_req *r);

/* operator tokens and tenants (page_tokens.c) */
/* GET /console/tokens */
void tk_h_console_tokens(struct tk_req *r);
/* POST /console/tokens: issue; the token shown once */
void tk_h_console_tokens_create(struct tk_req *r);
/* POST /console/tokens/{id}/revoke */
void tk_h_console_tokens_revoke(struct tk_req *r);
/* GET /console/tenants (node admins) */
void tk_h_console_tenants(struct tk_req *r);
/* POST /console/tenants */
void tk_h_console_tenants_create(struct tk_req *r);

/* connections (page_connections.c) */
/* GET /console/connections (?status=needs_reconnect ...) */
void tk_h_console_connections(struct tk_req *r);
/* GET /console/connections/{id}: details, attempts timeline, diagnosis, connect link, refresh buttons */
void tk_h_console_connection(struct tk_req *r);
/* POST /console/connections/{id}/refresh (debug=1: the masked exchange) */
void tk_h_console_connection_refresh(struct tk_req *r);
/* POST /console/connections/{id}/connect: a connect link for its app */
void tk_h_console_connection_connect(struct tk_req *r);

/* clients and agents (page_clients.c) */
/* GET /console/clients */
void tk_h_console_clients(struct tk_req *r);
/* GET /console/clients/{id}: tokens (preview, last use), failures by reason */
void tk_h_console_client(struct tk_req *r);
/* POST /console/clients/{id}: disable or enable */
void tk_h_console_client_update(struct tk_req *r);
/* POST /console/clients/{id}/tokens/{token_id}/rotate (grace) */
void tk_h_console_client_token_rotate(struct tk_req *r);
/* POST /console/clients/{id}/tokens/{token_id}/revoke */
void tk_h_console_client_token_revoke(struct tk_req *r);
/* GET /console/agents: agents, stale ones first */
void tk_h_console_agents(struct tk_req *r);

/* OAuth (page_oauth.c) */
/* GET /console/oauth/clients */
void tk_h_console_oauth_clients(struct tk_req *r);
/* GET /console/oauth/clients/{id} */
void tk_h_console_oauth_client(struct tk_req *r);
/* GET /console/oauth/flows (?status=stuck|failed|completed|active, client_id) */
void tk_h_console_oauth_flows(struct tk_req *r);
/* GET /console/oauth/flows/{id}: stages, the failing stage and its sentence */
void tk_h_console_oauth_flow(struct tk_req *r);

/* attack fixes (session.c) */
/* GET and POST /console/{rest+} (last in the table): an address that is no
 * console page, or a form route opened with GET: a page, not the API's JSON */
void tk_h_console_not_found(struct tk_req *r);

#endif
