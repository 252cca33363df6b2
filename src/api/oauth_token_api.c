/* oauth_token_api.c: /oauth2/token, introspection, revocation, metadata
 * (STUB: the token part replaces this file). */
#include "api.h"

tk_rc tk_api_oauth_grants_start(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
void tk_api_oauth_grants_stop(struct tk_app *app) { (void)app; }
tk_rc tk_api_oauth_grants_metrics(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
