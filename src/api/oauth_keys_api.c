/* oauth_keys_api.c: signing keys, JWKS, rotation (STUB: the keys part
 * replaces this file). */
#include "api.h"

tk_rc tk_api_oauth_keys_start(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
void tk_api_oauth_keys_stop(struct tk_app *app) { (void)app; }
tk_rc tk_api_oauth_keys_metrics(struct tk_app *app, struct tk_err *e)
{
    (void)app, (void)e;
    return TK_OK;
}
tk_rc tk_api_oauth_sign(struct tk_app *app, const char *typ, json_t *claims, char **jwt_out,
                        struct tk_err *e)
{
    (void)app, (void)typ, (void)claims;
    *jwt_out = NULL;
    return tk_err_set(e, TK_EUNAVAIL, "not_implemented", "signing keys are not built yet");
}
tk_rc tk_api_oauth_verify(struct tk_app *app, const char *jwt, size_t n, const char *typ,
                          json_t **claims_out, struct tk_err *e)
{
    (void)app, (void)jwt, (void)n, (void)typ;
    *claims_out = NULL;
    return tk_err_set(e, TK_EINVAL, "invalid_token", "signing keys are not built yet");
}
json_t *tk_api_oauth_jwks(struct tk_app *app)
{
    (void)app;
    return json_pack("{s:[]}", "keys");
}
const char *tk_api_oauth_signing_alg(struct tk_app *app)
{
    (void)app;
    return "ES256";
}
