/* users_api.c: /v1/users, the login and consent pages, sessions (STUB:
 * the users part replaces this file). */
#include "api.h"

tk_rc tk_api_users_start(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
void tk_api_users_stop(struct tk_app *app) { (void)app; }
tk_rc tk_api_users_metrics(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
bool tk_api_user_session(struct tk_req *r, const char *tenant_id, char user_id[TK_UUID_LEN + 1])
{
    (void)r, (void)tenant_id;
    user_id[0] = '\0';
    return false;
}
