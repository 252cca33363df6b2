/* oclients.c: OAuth clients and the scope catalogue (STUB: the clients
 * part replaces this file). */
#include "oauth.h"

#include <string.h>

void tk_oauth_client_clear(struct tk_oauth_client *c)
{
    json_decref(c->redirect_uris);
    json_decref(c->grant_types);
    json_decref(c->scopes);
    json_decref(c->default_scopes);
    c->redirect_uris = c->grant_types = c->scopes = c->default_scopes = NULL;
}

tk_rc tk_oauth_client_find(struct tk_db *db, const char *client_id, struct tk_oauth_client *out,
                           struct tk_err *e)
{
    (void)db, (void)client_id;
    memset(out, 0, sizeof *out);
    return tk_err_set(e, TK_ENOTFOUND, "invalid_client", "OAuth clients are not built yet");
}
