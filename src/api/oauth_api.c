/* oauth_api.c: what the authorization server's parts share on the HTTP
 * side: the RFC 6749 error shape and the order in which the parts start,
 * stop and register their metrics (oauth_api.h). */
#include "api.h"

void tk_oauth_reply_error(struct tk_req *r, int status, const char *error,
                          const char *description)
{
    json_t *body = json_pack("{s:s}", "error", error);
    if (description) json_object_set_new(body, "error_description", json_string(description));
    tk_oauth_reply_json(r, status, body);
}

void tk_oauth_reply_json(struct tk_req *r, int status, json_t *body)
{
    tk_reply_header(r, "Cache-Control", "no-store");
    tk_reply_header(r, "Pragma", "no-cache");
    tk_reply_json(r, status, body);
}

tk_rc tk_api_oauth_start(struct tk_app *app, struct tk_err *e)
{
    tk_rc rc = tk_api_oauth_keys_start(app, e);
    if (rc == TK_OK) rc = tk_api_oauth_clients_start(app, e);
    if (rc == TK_OK) rc = tk_api_users_start(app, e);
    if (rc == TK_OK) rc = tk_api_oauth_flows_start(app, e);
    if (rc == TK_OK) rc = tk_api_oauth_grants_start(app, e);
    return rc;
}

/* Each stop is a no-op for a part that never started (or stopped already). */
void tk_api_oauth_stop(struct tk_app *app)
{
    tk_api_oauth_grants_stop(app);
    tk_api_oauth_flows_stop(app);
    tk_api_users_stop(app);
    tk_api_oauth_clients_stop(app);
    tk_api_oauth_keys_stop(app);
}

tk_rc tk_api_oauth_metrics(struct tk_app *app, struct tk_err *e)
{
    tk_rc rc = tk_api_oauth_keys_metrics(app, e);
    if (rc == TK_OK) rc = tk_api_oauth_clients_metrics(app, e);
    if (rc == TK_OK) rc = tk_api_users_metrics(app, e);
    if (rc == TK_OK) rc = tk_api_oauth_flows_metrics(app, e);
    if (rc == TK_OK) rc = tk_api_oauth_grants_metrics(app, e);
    return rc;
}
