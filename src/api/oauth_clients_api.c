/* oauth_clients_api.c: /v1/oauth/clients, scopes, dynamic registration,
 * metadata documents, client authentication (STUB: the clients part
 * replaces this file). */
#include "api.h"

tk_rc tk_api_oauth_clients_start(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
void tk_api_oauth_clients_stop(struct tk_app *app) { (void)app; }
tk_rc tk_api_oauth_clients_metrics(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
tk_rc tk_api_oauth_client_resolve(struct tk_req *r, const char *client_id,
                                  struct tk_oauth_client *c, struct tk_err *e)
{
    struct tk_db *db = tk_api_db(r);
    if (!db) return tk_err_set(e, TK_EUNAVAIL, "parked", "replied");
    return tk_oauth_client_find(db, client_id, c, e);
}
tk_rc tk_api_oauth_client_auth(struct tk_req *r, const struct tk_form *f,
                               struct tk_oauth_client *c, struct tk_err *e)
{
    (void)f, (void)c;
    tk_oauth_reply_error(r, 401, "invalid_client", "OAuth clients are not built yet");
    return tk_err_set(e, TK_EAUTH, "invalid_client", "OAuth clients are not built yet");
}
