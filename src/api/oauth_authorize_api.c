/* oauth_authorize_api.c: /oauth2/authorize, flows, their doctor (STUB:
 * the authorize part replaces this file). */
#include "api.h"

tk_rc tk_api_oauth_flows_start(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
void tk_api_oauth_flows_stop(struct tk_app *app) { (void)app; }
tk_rc tk_api_oauth_flows_metrics(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
tk_rc tk_api_oauth_flow_stage(struct tk_req *r, struct tk_db *db, const char *tenant_id,
                              const char *flow_id, const char *stage, const char *user_id,
                              struct tk_err *e)
{
    (void)r, (void)db, (void)tenant_id, (void)flow_id, (void)stage, (void)user_id, (void)e;
    return TK_OK;
}
void tk_api_oauth_flow_failed(struct tk_req *r, const char *tenant_id, const char *flow_id,
                              const char *stage, const char *error, const char *reason)
{
    (void)r, (void)tenant_id, (void)flow_id, (void)stage, (void)error, (void)reason;
}
void tk_api_oauth_authorized(struct tk_req *r, const struct tk_oauth_flow *f)
{
    (void)f;
    tk_oauth_reply_error(r, 501, "server_error", "the authorization endpoint is not built yet");
}
void tk_api_oauth_redirect_error(struct tk_req *r, const struct tk_oauth_flow *f,
                                 const char *error, const char *description)
{
    (void)f;
    tk_oauth_reply_error(r, 400, error, description);
}
