/* operators.c: see operators.h. */
#include "operators.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

tk_rc tk_tenant_default(struct tk_db *db, char id[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r = NULL;
    char fresh[TK_UUID_LEN + 1];
    tk_uuid7(fresh);
    /* Two nodes starting at once on an empty database: one insert wins. */
    tk_rc rc = tk_db_exec(db,
                          "INSERT INTO tenants (id, name, created_at) VALUES (?, 'default', ?) "
                          "ON CONFLICT (name) DO NOTHING",
                          TK_ARGS(TK_TEXT(fresh), TK_INT(tk_now_ms())), NULL, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT id FROM tenants WHERE name = 'default'", NULL, 0, &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_set(e, TK_EINTERNAL, "store_error", "the default tenant is missing");
    if (rc == TK_OK) snprintf(id, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 0));
    tk_rows_free(r);
    return rc;
}

bool tk_role_valid(const char *role)
{
    return role && (!strcmp(role, "admin") || !strcmp(role, "operator") || !strcmp(role, "viewer"));
}

tk_rc tk_optoken_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                        const char *name, const char *role, int64_t expires_at,
                        char token_out[TK_ISSUED_MAX],
                        char id_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    char hash[TK_HASH_HEX], preview[24], kid[17];
    tk_issued_new(TK_KIND_OPERATOR, token_out);
    tk_rc rc = tk_keyring_hash(k, token_out, strlen(token_out), hash, kid, e);
    if (rc != TK_OK) {
        tk_wipe(token_out, TK_ISSUED_MAX);
        return rc;
    }
    tk_issued_preview(token_out, preview);
    tk_uuid7(id_out);
    return tk_db_exec(db,
                      "INSERT INTO operator_tokens (id, tenant_id, name, role, token_hash, "
                      "hash_key, preview, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(name), TK_TEXT(role),
                              TK_TEXT(hash), TK_TEXT(kid),
                              TK_TEXT(preview), TK_INT(tk_now_ms()),
                              expires_at ? TK_INT(expires_at) : TK_NULLV),
                      NULL, e);
}

tk_rc tk_optoken_count_active(struct tk_db *db, int64_t *n, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT COUNT(*) FROM operator_tokens WHERE revoked_at IS NULL",
                          NULL, 0, &r, e);
    if (rc == TK_OK) *n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return rc;
}

/* last_used_at is written at most once a minute per token, so that reads
 * stay reads on the hot path. */
#define LAST_USED_GRANULARITY_MS 60000

tk_rc tk_optoken_parse(const char *header, const char **tok, size_t *len, struct tk_err *e)
{
    if (!header || !*header)
        return tk_err_set(e, TK_EAUTH, "missing",
                          "this route needs an Authorization: Bearer <operator token> header");
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return tk_err_set(e, TK_EAUTH, "malformed",
                          "the Authorization header must be 'Bearer <operator token>'");
    const char *t = header + 7;
    while (*t == ' ') t++;
    size_t n = strlen(t);
    struct tk_err fe;
    if (tk_issued_check(TK_KIND_OPERATOR, t, n, &fe) != TK_OK)
        return tk_err_set(e, TK_EAUTH, "malformed", "%s", fe.msg);
    *tok = t;
    *len = n;
    return TK_OK;
}

tk_rc tk_optoken_lookup(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                        struct tk_principal *p, struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    char hash[TK_HASH_HEX];
    tk_rc rc = tk_keyring_hash(k, tok, len, hash, NULL, e);
    if (rc != TK_OK) return rc;
    struct tk_rows *r;
    rc = tk_db_exec(db,
                    "SELECT id, tenant_id, name, role, revoked_at, expires_at, last_used_at "
                    "FROM operator_tokens WHERE token_hash = ?",
                    TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    int64_t now = tk_now_ms();
    if (tk_rows_count(r) == 1) {
        /* also on failure: the row's tenant gets the event */
        snprintf(p->token_id, sizeof p->token_id, "%s", tk_rows_text(r, 0, 0));
        snprintf(p->tenant_id, sizeof p->tenant_id, "%s", tk_rows_text(r, 0, 1));
    }
    if (tk_rows_count(r) != 1) {
        rc = tk_err_set(e, TK_EAUTH, "unknown",
                        "the operator token is well-formed but unknown here (another "
                        "installation's, or its data dir was reset)");
    } else if (!tk_rows_null(r, 0, 4)) {
        char at[32];
        tk_time_fmt(tk_rows_int(r, 0, 4), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "revoked", "the operator token %s was revoked at %s",
                        tk_rows_text(r, 0, 0), at);
    } else if (!tk_rows_null(r, 0, 5) && tk_rows_int(r, 0, 5) <= now) {
        char at[32];
        tk_time_fmt(tk_rows_int(r, 0, 5), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "expired", "the operator token %s expired at %s",
                        tk_rows_text(r, 0, 0), at);
    } else {
        snprintf(p->name, sizeof p->name, "%s", tk_rows_text(r, 0, 2));
        snprintf(p->role, sizeof p->role, "%s", tk_rows_text(r, 0, 3));
        if (tk_rows_null(r, 0, 6) || now - tk_rows_int(r, 0, 6) > LAST_USED_GRANULARITY_MS) {
            struct tk_err ignore;
            tk_db_exec(db, "UPDATE operator_tokens SET last_used_at = ? WHERE id = ?",
                       TK_ARGS(TK_INT(now), TK_TEXT(p->token_id)), NULL, &ignore);
        }
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_optoken_authenticate(struct tk_db *db, struct tk_keyring *k, const char *header,
                              struct tk_principal *p, struct tk_err *e)
{
    const char *tok = NULL;
    size_t len = 0;
    tk_rc rc = tk_optoken_parse(header, &tok, &len, e);
    if (rc == TK_OK) rc = tk_optoken_lookup(db, k, tok, len, p, e);
    return rc;
}

tk_rc tk_optoken_count_admins(struct tk_db *db, const char *tenant_id, int64_t *n,
                              struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT COUNT(*) FROM operator_tokens WHERE tenant_id = ? AND role = "
                          "'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                          TK_ARGS(TK_TEXT(tenant_id), TK_INT(tk_now_ms())), &r, e);
    if (rc == TK_OK) *n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_optoken_revoke(struct tk_db *db, const char *tenant_id, const char *token_id,
                        struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db,
                          "UPDATE operator_tokens SET revoked_at = ? WHERE id = ? AND tenant_id = ? "
                          "AND revoked_at IS NULL",
                          TK_ARGS(TK_INT(tk_now_ms()), TK_TEXT(token_id), TK_TEXT(tenant_id)),
                          NULL, e);
    if (rc == TK_OK && tk_db_changes(db) == 0)
        rc = tk_err_set(e, TK_ENOTFOUND, "not_found", "no active operator token %s", token_id);
    return rc;
}

static json_t *time_or_null(const struct tk_rows *r, int i, int c)
{
    if (tk_rows_null(r, i, c)) return json_null();
    char at[32];
    tk_time_fmt(tk_rows_int(r, i, c), at, sizeof at);
    return json_string(at);
}

tk_rc tk_optoken_list(struct tk_db *db, const char *tenant_id, json_t **out, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT id, name, role, preview, created_at, last_used_at, expires_at, "
                          "revoked_at FROM operator_tokens WHERE tenant_id = ? ORDER BY id DESC",
                          TK_ARGS(TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    json_t *a = json_array();
    for (int i = 0; i < tk_rows_count(r); i++) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", tk_rows_text(r, i, 0), "name",
                              tk_rows_text(r, i, 1), "role", tk_rows_text(r, i, 2), "preview",
                              tk_rows_text(r, i, 3));
        json_object_set_new(o, "created_at", time_or_null(r, i, 4));
        json_object_set_new(o, "last_used_at", time_or_null(r, i, 5));
        json_object_set_new(o, "expires_at", time_or_null(r, i, 6));
        json_object_set_new(o, "revoked_at", time_or_null(r, i, 7));
        json_array_append_new(a, o);
    }
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}
