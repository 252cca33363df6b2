/* oclients.c: OAuth clients and the scope catalogue (STUB: the clients
 * part replaces this file; on a merge conflict take the clients part's).
 * The authorize part made tk_oauth_client_find read the row of migration
 * 0011 so that its tests have clients before the clients part lands. */
#include "oauth.h"

#include <stdio.h>
#include <string.h>

void tk_oauth_client_clear(struct tk_oauth_client *c)
{
    json_decref(c->redirect_uris);
    json_decref(c->grant_types);
    json_decref(c->scopes);
    json_decref(c->default_scopes);
    c->redirect_uris = c->grant_types = c->scopes = c->default_scopes = NULL;
}

static json_t *array_of(const char *s)
{
    json_t *a = s ? json_loads(s, 0, NULL) : NULL;
    if (json_is_array(a)) return a;
    json_decref(a);
    return json_array();
}

tk_rc tk_oauth_client_find(struct tk_db *db, const char *client_id, struct tk_oauth_client *out,
                           struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT id, tenant_id, client_id, name, client_type, application_type, "
                          "token_endpoint_auth_method, status, origin, rotate_refresh, "
                          "redirect_uris, grant_types, scopes, default_scopes FROM oauth_clients "
                          "WHERE client_id = ?",
                          TK_ARGS(TK_TEXT(client_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 0) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "invalid_client", "no such client");
    }
#define CP(f, col)                                                                                 \
    snprintf(out->f, sizeof out->f, "%s", tk_rows_text(r, 0, col) ? tk_rows_text(r, 0, col) : "")
    CP(id, 0);
    CP(tenant_id, 1);
    CP(client_id, 2);
    CP(name, 3);
    CP(application_type, 5);
    CP(auth_method, 6);
    CP(status, 7);
    CP(origin, 8);
#undef CP
    const char *type = tk_rows_text(r, 0, 4);
    out->confidential = type && !strcmp(type, "confidential");
    out->rotate_refresh = tk_rows_int(r, 0, 9) != 0;
    out->redirect_uris = array_of(tk_rows_text(r, 0, 10));
    out->grant_types = array_of(tk_rows_text(r, 0, 11));
    out->scopes = array_of(tk_rows_text(r, 0, 12));
    out->default_scopes = array_of(tk_rows_text(r, 0, 13));
    tk_rows_free(r);
    return TK_OK;
}
