/* grants.c: codes, refresh tokens, revocations (STUB: the token part
 * replaces this file). */
#include "oauth.h"

tk_rc tk_oauth_code_issue(struct tk_db *db, struct tk_keyring *k, const struct tk_oauth_flow *f,
                          char code_out[TK_ISSUED_MAX], struct tk_err *e)
{
    (void)db, (void)k, (void)f;
    code_out[0] = '\0';
    return tk_err_set(e, TK_EINTERNAL, "not_implemented", "codes are not built yet");
}
