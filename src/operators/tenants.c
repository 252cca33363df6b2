/* tenants.c: the tenants table (see operators.h). */
#include "operators.h"

#include <stdio.h>
#include <string.h>

bool tk_tenant_name_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > TK_TENANT_NAME_MAX || strlen(name) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || c != '-')) return false;
    }
    return true;
}

json_t *tk_tenant_json(const char *id, const char *name, int64_t created_at)
{
    char at[32];
    tk_time_fmt(created_at, at, sizeof at);
    return json_pack("{s:s, s:s, s:s}", "id", id, "name", name, "created_at", at);
}

tk_rc tk_tenant_create(struct tk_db *db, const char *name, char id_out[TK_UUID_LEN + 1],
                       int64_t *created_at, struct tk_err *e)
{
    tk_uuid7(id_out);
    *created_at = tk_now_ms();
    tk_rc rc = tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                          TK_ARGS(TK_TEXT(id_out), TK_TEXT(name), TK_INT(*created_at)), NULL, e);
    if (rc == TK_ECONFLICT)
        tk_err_field(e, TK_ECONFLICT, "conflict", "name",
                     "a tenant named '%s' already exists; tenant names are unique on the node",
                     name);
    return rc;
}

tk_rc tk_tenant_get(struct tk_db *db, const char *id, json_t **out, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT id, name, created_at FROM tenants WHERE id = ?",
                          TK_ARGS(TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no tenant with id %s", id);
    else
        *out = tk_tenant_json(tk_rows_text(r, 0, 0), tk_rows_text(r, 0, 1), tk_rows_int(r, 0, 2));
    tk_rows_free(r);
    return rc;
}

tk_rc tk_tenant_list(struct tk_db *db, const char *before, int limit, json_t **out,
                     char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r;
    /* one more than asked: whether another page follows */
    tk_rc rc = before ? tk_db_exec(db,
                                   "SELECT id, name, created_at FROM tenants WHERE id < ? "
                                   "ORDER BY id DESC LIMIT ?",
                                   TK_ARGS(TK_TEXT(before), TK_INT(limit + 1)), &r, e)
                      : tk_db_exec(db,
                                   "SELECT id, name, created_at FROM tenants "
                                   "ORDER BY id DESC LIMIT ?",
                                   TK_ARGS(TK_INT(limit + 1)), &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(
            a, tk_tenant_json(tk_rows_text(r, i, 0), tk_rows_text(r, i, 1), tk_rows_int(r, i, 2)));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

/* ---- auth epochs (see operators.h) ---- */

tk_rc tk_tenant_auth_bump(struct tk_db *db, const char *tenant_id, int64_t *seq, struct tk_err *e)
{
    if (!tk_db_in_tx(db))
        return tk_err_set(e, TK_EINTERNAL, "internal",
                          "the auth epoch of tenant %s must be bumped inside the writing "
                          "transaction",
                          tenant_id);
    /* Lock order: the tenant's row, then the clock (a writer that locked
     * the tenant first, as revoke does, never waits on the clock while the
     * clock's holder waits on that tenant). */
    tk_rc rc = tk_db_lock_row(db, "tenants", tenant_id, e);
    struct tk_rows *r = NULL;
    if (rc == TK_OK)
        rc = tk_db_exec(db, "UPDATE auth_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq",
                        NULL, 0, &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_set(e, TK_EINTERNAL, "store_error", "the auth_clock row is missing");
    int64_t s = rc == TK_OK ? tk_rows_int(r, 0, 0) : 0;
    tk_rows_free(r);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "UPDATE tenants SET auth_seq = ? WHERE id = ?",
                        TK_ARGS(TK_INT(s), TK_TEXT(tenant_id)), NULL, e);
    if (rc == TK_OK && tk_db_changes(db) != 1)
        rc = tk_err_set(e, TK_ENOTFOUND, "not_found", "no tenant %s", tenant_id);
    if (rc == TK_OK && seq) *seq = s;
    return rc;
}

tk_rc tk_tenant_auth_clock(struct tk_db *db, int64_t *seq, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db, "SELECT seq FROM auth_clock WHERE id = 1", NULL, 0, &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_set(e, TK_EINTERNAL, "store_error", "the auth_clock row is missing");
    if (rc == TK_OK) *seq = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_tenant_auth_changes(struct tk_db *db, int64_t after, int limit, struct tk_rows **out,
                             struct tk_err *e)
{
    return tk_db_exec(db,
                      "SELECT id, auth_seq FROM tenants WHERE auth_seq > ? ORDER BY auth_seq "
                      "LIMIT ?",
                      TK_ARGS(TK_INT(after), TK_INT(limit)), out, e);
}
