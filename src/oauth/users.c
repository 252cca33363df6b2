/* users.c: end users, sessions, consents (STUB: the users part replaces
 * this file). */
#include "oauth.h"

tk_rc tk_oauth_consent_covers(struct tk_db *db, const char *tenant_id, const char *user_id,
                              const char *oauth_client_id, json_t *scopes, bool *covered,
                              struct tk_err *e)
{
    (void)db, (void)tenant_id, (void)user_id, (void)oauth_client_id, (void)scopes, (void)e;
    *covered = false;
    return TK_OK;
}
