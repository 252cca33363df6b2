/* flows.c: authorization flows (STUB: the authorize part replaces this
 * file). */
#include "oauth.h"

#include <string.h>

void tk_oauth_flow_clear(struct tk_oauth_flow *f)
{
    json_decref(f->scopes);
    f->scopes = NULL;
}

tk_rc tk_oauth_flow_get(struct tk_db *db, const char *tenant_id, const char *id,
                        struct tk_oauth_flow *out, struct tk_err *e)
{
    (void)db, (void)tenant_id, (void)id;
    memset(out, 0, sizeof *out);
    return tk_err_set(e, TK_ENOTFOUND, "not_found", "flows are not built yet");
}
