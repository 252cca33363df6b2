/*
 * oauth_api.h: the authorization server's HTTP side (issue 15), shared by
 * its handler files. Each part keeps its state behind one pointer of
 * struct tk_app (api.h) and has a start, a stop and a metrics function that
 * oauth_api.c calls in order:
 *
 *   oauth_keys_api.c       signing keys, JWKS, rotation         app->oauth_keys
 *   oauth_clients_api.c    /v1/oauth/clients, scopes, DCR,      app->oauth_cimd
 *                          client ID metadata documents, client authentication
 *   users_api.c            /v1/users, login and consent pages,  app->pwhash
 *                          sessions
 *   oauth_authorize_api.c  /oauth2/authorize, flows, doctor
 *   oauth_token_api.c      /oauth2/token, introspect, revoke,   app->oauth_revset
 *                          metadata
 *
 * The wire endpoints under /oauth2/ answer RFC 6749 errors (tk_oauth_reply_error),
 * never the /v1 error shape.
 */
#ifndef TK_OAUTH_API_H
#define TK_OAUTH_API_H

#include "../http/http.h"
#include "../http/parse.h"
#include "../oauth/oauth.h"

struct tk_app;

/* ---- oauth_api.c ---- */

/* An RFC 6749 §5.2 error: {"error", "error_description"} with status,
 * Cache-Control: no-store and Pragma: no-cache. description may be NULL. */
void tk_oauth_reply_error(struct tk_req *r, int status, const char *error,
                          const char *description);
/* A successful /oauth2 JSON reply (body stolen) with Cache-Control: no-store. */
void tk_oauth_reply_json(struct tk_req *r, int status, json_t *body);
/* Start every part (after the store, keyring and outbound client; before
 * the HTTP server answers), stop them (before the store closes), and
 * register their metrics (from tk_api_metrics_register). */
tk_rc tk_api_oauth_start(struct tk_app *app, struct tk_err *e);
void tk_api_oauth_stop(struct tk_app *app);
tk_rc tk_api_oauth_metrics(struct tk_app *app, struct tk_err *e);

/* Each part's own (called by the three above). */
tk_rc tk_api_oauth_keys_start(struct tk_app *app, struct tk_err *e);
void tk_api_oauth_keys_stop(struct tk_app *app);
tk_rc tk_api_oauth_keys_metrics(struct tk_app *app, struct tk_err *e);
tk_rc tk_api_oauth_clients_start(struct tk_app *app, struct tk_err *e);
void tk_api_oauth_clients_stop(struct tk_app *app);
tk_rc tk_api_oauth_clients_metrics(struct tk_app *app, struct tk_err *e);
tk_rc tk_api_users_start(struct tk_app *app, struct tk_err *e);
void tk_api_users_stop(struct tk_app *app);
tk_rc tk_api_users_metrics(struct tk_app *app, struct tk_err *e);
tk_rc tk_api_oauth_flows_start(struct tk_app *app, struct tk_err *e);
void tk_api_oauth_flows_stop(struct tk_app *app);
tk_rc tk_api_oauth_flows_metrics(struct tk_app *app, struct tk_err *e);
tk_rc tk_api_oauth_grants_start(struct tk_app *app, struct tk_err *e);
void tk_api_oauth_grants_stop(struct tk_app *app);
tk_rc tk_api_oauth_grants_metrics(struct tk_app *app, struct tk_err *e);

/* ---- signing keys (oauth_keys_api.c) ---- */

/* Sign claims (not stolen) as a JWT of type typ ("at+jwt") with the active
 * signing key; the header carries alg, kid and typ. *jwt_out is malloc'd.
 * No store access. TK_EUNAVAIL "sealed" while sealed. */
tk_rc tk_api_oauth_sign(struct tk_app *app, const char *typ, json_t *claims, char **jwt_out,
                        struct tk_err *e);
/* Check a JWT of type typ signed by one of the published keys (kid, alg of
 * that key, signature); *claims_out the payload (new reference). Expiry
 * and audience are the caller's. TK_EINVAL with e->msg saying why. */
tk_rc tk_api_oauth_verify(struct tk_app *app, const char *jwt, size_t n, const char *typ,
                          json_t **claims_out, struct tk_err *e);
/* The JWKS {"keys": [...]} of the published keys (new reference); answers
 * while sealed. */
json_t *tk_api_oauth_jwks(struct tk_app *app);
/* The algorithm of the active key ("ES256"), for the metadata. */
const char *tk_api_oauth_signing_alg(struct tk_app *app);
/* GET /oauth2/jwks (public, answers while sealed), GET /v1/sys/signing-keys
 * and POST /v1/sys/signing-keys/rotate (node admin). */
void tk_h_oauth_jwks(struct tk_req *r);
void tk_h_signing_keys_list(struct tk_req *r);
void tk_h_signing_keys_rotate(struct tk_req *r);
/* How many private signing keys this node holds open (0 while sealed). */
int tk_api_oauth_keys_opened(struct tk_app *app);

/* ---- OAuth clients (oauth_clients_api.c) ---- */

/* The client of client_id: from the store, or for an https client_id its
 * metadata document (fetched with a size and time bound, cached).
 * TK_OK: c filled (tk_oauth_client_clear it). TK_ENOTFOUND / TK_EINVAL:
 * unknown or unusable, e->msg says why (nothing replied). TK_EUNAVAIL with
 * e->code "parked": the request was parked while the document is fetched;
 * the route's handler runs again when it is in the cache, so return at once
 * without replying. */
tk_rc tk_api_oauth_client_resolve(struct tk_req *r, const char *client_id,
                                  struct tk_oauth_client *c, struct tk_err *e);
/* Authenticate the client of a token, introspection or revocation request
 * (form f): HTTP Basic, client_secret_post, or none for a public client
 * (client_id in the form). TK_OK: c filled. Otherwise the reply is sent
 * (401 invalid_client, with WWW-Authenticate when Basic was used; 400
 * invalid_request for two methods at once) and e says why, for the
 * caller's event; or, as resolve, e->code "parked". */
tk_rc tk_api_oauth_client_auth(struct tk_req *r, const struct tk_form *f,
                               struct tk_oauth_client *c, struct tk_err *e);
/* /v1/oauth/scopes, /v1/oauth/clients (operators) and /oauth2/register
 * (RFC 7591, RFC 7592). */
void tk_h_oauth_scopes_list(struct tk_req *r);
void tk_h_oauth_scopes_create(struct tk_req *r);
void tk_h_oauth_scopes_update(struct tk_req *r);
void tk_h_oauth_scopes_delete(struct tk_req *r);
void tk_h_oauth_clients_list(struct tk_req *r);
void tk_h_oauth_clients_create(struct tk_req *r);
void tk_h_oauth_clients_get(struct tk_req *r);
void tk_h_oauth_clients_update(struct tk_req *r);
void tk_h_oauth_clients_delete(struct tk_req *r);
void tk_h_oauth_clients_rotate_secret(struct tk_req *r);
void tk_h_oauth_register(struct tk_req *r);
void tk_h_oauth_register_get(struct tk_req *r);
void tk_h_oauth_register_put(struct tk_req *r);
void tk_h_oauth_register_delete(struct tk_req *r);
/* Test build only (TK_UNITTEST): POST /oauth2/test/client-auth runs
 * tk_api_oauth_client_auth on the form and answers the client found. */
void tk_h_oauth_client_auth_probe(struct tk_req *r);

/* ---- users, sessions, consent (users_api.c) ---- */

/* The login page of a flow: public_url + TK_OAUTH_LOGIN_PATH "?flow=<id>";
 * it leads on to the consent page and then to tk_api_oauth_authorized. */
#define TK_OAUTH_LOGIN_PATH "/oauth2/login"
/* The end user signed in on this browser (session cookie) in tenant_id:
 * true with user_id filled. */
bool tk_api_user_session(struct tk_req *r, const char *tenant_id,
                         char user_id[TK_UUID_LEN + 1]);

/* ---- flows (oauth_authorize_api.c) ---- */

/* Record that flow_id reached stage (login, consent, code_issued,
 * token_exchanged, token_issued; user_id NULL to keep it): the row's stage
 * and time, and an event (kind oauth, subject the flow, outcome ok). In
 * db's open transaction when db is not NULL, else in its own. */
tk_rc tk_api_oauth_flow_stage(struct tk_req *r, struct tk_db *db, const char *tenant_id,
                              const char *flow_id, const char *stage, const char *user_id,
                              struct tk_err *e);
/* Record that flow_id failed at stage with the RFC error code and the
 * sentence that names the difference (row and event, outcome denied). */
void tk_api_oauth_flow_failed(struct tk_req *r, const char *tenant_id, const char *flow_id,
                              const char *stage, const char *error, const char *reason);
/* The user of f has signed in and consented (now or before): issue the
 * code, record code_issued and answer 303 to f's redirect URI with code,
 * state and iss. */
void tk_api_oauth_authorized(struct tk_req *r, const struct tk_oauth_flow *f);
/* End flow f with an error for the client (the user denied consent:
 * access_denied): record the failure at f's stage and answer 303 to f's
 * redirect URI with error, error_description, state and iss. */
void tk_api_oauth_redirect_error(struct tk_req *r, const struct tk_oauth_flow *f,
                                 const char *error, const char *description);

#endif
