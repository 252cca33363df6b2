/* oclients.c: OAuth clients and the per-tenant scope catalogue; see
 * oclients.h and oauth.h. */
#include "oclients.h"

#include "../common/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void tk_oauth_client_clear(struct tk_oauth_client *c)
{
    json_decref(c->redirect_uris);
    json_decref(c->grant_types);
    json_decref(c->scopes);
    json_decref(c->default_scopes);
    c->redirect_uris = c->grant_types = c->scopes = c->default_scopes = NULL;
}

static tk_rc invalid(struct tk_err *e, const char *field, const char *fmt, const char *arg)
{
    return tk_err_field(e, TK_EINVAL, "invalid_field", field, fmt, arg ? arg : "");
}

static const char *str_or(json_t *o, const char *k, const char *def)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

static bool in_array(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i,
                       v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    return false;
}

/* ---- the scope catalogue ---- */

static json_t *time_json(const struct tk_rows *r, int i, int c)
{
    if (tk_rows_null(r, i, c)) return json_null();
    char at[32];
    tk_time_fmt(tk_rows_int(r, i, c), at, sizeof at);
    return json_string(at);
}

#define SCOPE_COLS "id, name, description, created_at, updated_at"

static json_t *scope_json(const struct tk_rows *r, int i)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o}", "id", tk_rows_text(r, i, 0), "name",
                     tk_rows_text(r, i, 1), "description", tk_rows_text(r, i, 2), "created_at",
                     time_json(r, i, 3), "updated_at", time_json(r, i, 4));
}

static tk_rc scope_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                       struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc =
        tk_db_exec(db, "SELECT " SCOPE_COLS " FROM oauth_scopes WHERE tenant_id = ? AND id = ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no scope with id %s", id);
    else if (out)
        *out = scope_json(r, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_oauth_scopes_exist(struct tk_db *db, const char *tenant_id, json_t *names,
                            const char *field, struct tk_err *e)
{
    if (json_array_size(names) == 0) return TK_OK;
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT name FROM oauth_scopes WHERE tenant_id = ?",
                          TK_ARGS(TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        bool found = false;
        for (int j = 0; j < tk_rows_count(r) && !found; j++)
            found = !strcmp(tk_rows_text(r, j, 0), json_string_value(v));
        if (!found) {
            rc = tk_err_field(e, TK_EINVAL, "unknown_scope", field,
                              "%s[%zu] '%.128s' is not in the tenant's scope catalogue (add it "
                              "with POST /v1/oauth/scopes)",
                              field, i, json_string_value(v));
            break;
        }
    }
    tk_rows_free(r);
    return rc;
}

static tk_rc check_description(const char *d, struct tk_err *e)
{
    size_t n = strlen(d);
    if (n > TK_OAUTH_SCOPE_DESC_MAX || !tk_utf8_valid(d, n))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "description",
                            "description must be UTF-8 text of at most %d bytes",
                            TK_OAUTH_SCOPE_DESC_MAX);
    for (const unsigned char *p = (const unsigned char *)d; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return invalid(e, "description", "description must not contain control characters%s",
                           NULL);
    return TK_OK;
}

tk_rc tk_oauth_scope_create(struct tk_db *db, const char *tenant_id, const char *name,
                            const char *description, json_t **out, struct tk_err *e)
{
    if (!tk_oauth_scope_name_valid(name, strlen(name)))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "name",
                            "name must be 1 to %d of the printable ASCII characters but space, "
                            "'\"' and '\\' (RFC 6749 scope-token)",
                            TK_OAUTH_SCOPE_MAX);
    tk_rc rc = check_description(description, e);
    if (rc != TK_OK) return rc;
    struct tk_rows *r;
    rc = tk_db_exec(db,
                    "SELECT COUNT(*), SUM(CASE WHEN name = ? THEN 1 ELSE 0 END) FROM oauth_scopes "
                    "WHERE tenant_id = ?",
                    TK_ARGS(TK_TEXT(name), TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    int64_t count = tk_rows_int(r, 0, 0), same = tk_rows_null(r, 0, 1) ? 0 : tk_rows_int(r, 0, 1);
    tk_rows_free(r);
    if (same)
        return tk_err_field(e, TK_ECONFLICT, "scope_exists", "name",
                            "the tenant has a scope named '%s' already", name);
    if (count >= TK_OAUTH_CATALOG_MAX)
        return tk_err_set(e, TK_ECONFLICT, "scope_limit", "a tenant has at most %d scopes",
                          TK_OAUTH_CATALOG_MAX);
    char id[TK_UUID_LEN + 1];
    tk_uuid7(id);
    int64_t now = tk_now_ms();
    rc = tk_db_exec(db,
                    "INSERT INTO oauth_scopes (id, tenant_id, name, description, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id), TK_TEXT(name), TK_TEXT(description),
                            TK_INT(now), TK_INT(now)),
                    NULL, e);
    if (rc == TK_ECONFLICT)
        return tk_err_field(e, TK_ECONFLICT, "scope_exists", "name",
                            "the tenant has a scope named '%s' already", name);
    if (rc == TK_OK) rc = scope_get(db, tenant_id, id, out, e);
    return rc;
}

tk_rc tk_oauth_scope_list(struct tk_db *db, const char *tenant_id, const char *before, int limit,
                          json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(
        db,
        "SELECT " SCOPE_COLS " FROM oauth_scopes WHERE tenant_id = ? "
        "AND (CAST(? AS TEXT) IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(before), TK_TEXT(before), TK_INT(limit + 1)), &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(a, scope_json(r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_oauth_scope_update(struct tk_db *db, const char *tenant_id, const char *id,
                            const char *description, json_t **out, struct tk_err *e)
{
    tk_rc rc = scope_get(db, tenant_id, id, NULL, e);
    if (rc == TK_OK && description) rc = check_description(description, e);
    if (rc == TK_OK && description)
        rc = tk_db_exec(
            db,
            "UPDATE oauth_scopes SET description = ?, updated_at = ? WHERE tenant_id "
            "= ? AND id = ?",
            TK_ARGS(TK_TEXT(description), TK_INT(tk_now_ms()), TK_TEXT(tenant_id), TK_TEXT(id)),
            NULL, e);
    if (rc == TK_OK) rc = scope_get(db, tenant_id, id, out, e);
    return rc;
}

tk_rc tk_oauth_scope_delete(struct tk_db *db, const char *tenant_id, const char *id,
                            struct tk_err *e)
{
    json_t *s = NULL;
    tk_rc rc = scope_get(db, tenant_id, id, &s, e);
    if (rc != TK_OK) return rc;
    const char *name = json_string_value(json_object_get(s, "name"));
    struct tk_rows *r = NULL;
    rc = tk_db_exec(db,
                    "SELECT client_id, scopes FROM oauth_clients WHERE tenant_id = ? ORDER BY id",
                    TK_ARGS(TK_TEXT(tenant_id)), &r, e);
    char users[400] = "";
    size_t used = 0, count = 0;
    for (int i = 0; rc == TK_OK && i < tk_rows_count(r); i++) {
        json_t *a = json_loads(tk_rows_text(r, i, 1), 0, NULL);
        if (in_array(a, name)) {
            if (count < 5 && used < sizeof users) {
                int w = snprintf(users + used, sizeof users - used, "%s%.60s", count ? ", " : "",
                                 tk_rows_text(r, i, 0));
                if (w > 0) used += (size_t)w;
            }
            count++;
        }
        json_decref(a);
    }
    tk_rows_free(r);
    if (rc == TK_OK && count)
        rc = tk_err_set(e, TK_ECONFLICT, "scope_in_use",
                        "the scope '%.128s' is allowed for %zu client(s) (%s%s): remove it from "
                        "their scopes first",
                        name, count, users, count > 5 ? ", ..." : "");
    json_decref(s);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "DELETE FROM oauth_scopes WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
    return rc;
}

/* ---- clients ---- */

#define CLIENT_COLS                                                                                \
    "id, client_id, name, client_type, application_type, token_endpoint_auth_method, "             \
    "redirect_uris, grant_types, scopes, default_scopes, rotate_refresh, status, origin, "         \
    "secret_preview, created_at, updated_at, tenant_id"

static json_t *array_col(const struct tk_rows *r, int i, int c)
{
    json_t *a = json_loads(tk_rows_text(r, i, c), 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        a = json_array();
    }
    return a;
}

static json_t *client_json(const struct tk_rows *r, int i)
{
    json_t *o = json_object();
    static const char *const names[] = {
        "id", "client_id", "name", "client_type", "application_type", "token_endpoint_auth_method"};
    for (int c = 0; c < 6; c++)
        json_object_set_new(o, names[c], json_string(tk_rows_text(r, i, c)));
    json_object_set_new(o, "redirect_uris", array_col(r, i, 6));
    json_object_set_new(o, "grant_types", array_col(r, i, 7));
    json_object_set_new(o, "scopes", array_col(r, i, 8));
    json_object_set_new(o, "default_scopes", array_col(r, i, 9));
    json_object_set_new(o, "rotate_refresh", json_boolean(tk_rows_int(r, i, 10) != 0));
    json_object_set_new(o, "status", json_string(tk_rows_text(r, i, 11)));
    json_object_set_new(o, "origin", json_string(tk_rows_text(r, i, 12)));
    json_object_set_new(o, "secret_preview",
                        tk_rows_null(r, i, 13) ? json_null() : json_string(tk_rows_text(r, i, 13)));
    json_object_set_new(o, "created_at", time_json(r, i, 14));
    json_object_set_new(o, "updated_at", time_json(r, i, 15));
    return o;
}

static tk_rc client_row(struct tk_db *db, const char *tenant_id, const char *id,
                        struct tk_rows **out, struct tk_err *e)
{
    tk_rc rc =
        tk_db_exec(db, "SELECT " CLIENT_COLS " FROM oauth_clients WHERE tenant_id = ? AND id = ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), out, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(*out) != 1) {
        tk_rows_free(*out);
        *out = NULL;
        return tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no OAuth client with id %s", id);
    }
    return TK_OK;
}

tk_rc tk_oauth_client_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                          struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = client_row(db, tenant_id, id, &r, e);
    if (rc != TK_OK) return rc;
    *out = client_json(r, 0);
    tk_rows_free(r);
    return TK_OK;
}

static const char *const spec_members[] = {"name",
                                           "client_type",
                                           "application_type",
                                           "token_endpoint_auth_method",
                                           "redirect_uris",
                                           "grant_types",
                                           "scopes",
                                           "default_scopes",
                                           "rotate_refresh",
                                           "status",
                                           NULL};

tk_rc tk_oauth_client_spec(struct tk_db *db, const char *tenant_id, const char *id, json_t **spec,
                           struct tk_err *e)
{
    json_t *o;
    tk_rc rc = tk_oauth_client_get(db, tenant_id, id, &o, e);
    if (rc != TK_OK) return rc;
    *spec = json_object();
    for (const char *const *m = spec_members; *m; m++)
        json_object_set(*spec, *m, json_object_get(o, *m));
    json_decref(o);
    return TK_OK;
}

tk_rc tk_oauth_client_list(struct tk_db *db, const char *tenant_id, const char *before, int limit,
                           json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(
        db,
        "SELECT " CLIENT_COLS " FROM oauth_clients WHERE tenant_id = ? "
        "AND (CAST(? AS TEXT) IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(before), TK_TEXT(before), TK_INT(limit + 1)), &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(a, client_json(r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

/* A new issued secret of kind with its keyed hash, key id and preview. */
static tk_rc new_secret(struct tk_keyring *k, const char *kind, char out[TK_ISSUED_MAX],
                        char hash[TK_HASH_HEX], char kid[17], char preview[24], struct tk_err *e)
{
    tk_issued_new(kind, out);
    tk_rc rc = tk_keyring_hash(k, out, strlen(out), hash, kid, e);
    if (rc != TK_OK) {
        tk_wipe(out, TK_ISSUED_MAX);
        return rc;
    }
    tk_issued_preview(out, preview);
    return TK_OK;
}

static char *dump(json_t *spec, const char *k)
{
    return json_dumps(json_object_get(spec, k), JSON_COMPACT);
}

tk_rc tk_oauth_client_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             json_t *spec, const char *origin, char secret_out[TK_ISSUED_MAX],
                             char reg_out[TK_ISSUED_MAX], char id_out[TK_UUID_LEN + 1],
                             json_t **out, struct tk_err *e)
{
    secret_out[0] = '\0';
    if (reg_out) reg_out[0] = '\0';
    tk_rc rc = tk_oauth_client_normalize(spec, e);
    if (rc == TK_OK)
        rc = tk_oauth_scopes_exist(db, tenant_id, json_object_get(spec, "scopes"), "scopes", e);
    if (rc != TK_OK) return rc;
    bool conf = !strcmp(str_or(spec, "client_type", ""), "confidential");
    char hash[TK_HASH_HEX] = "", kid[17] = "", preview[24] = "";
    char rhash[TK_HASH_HEX] = "", rkid[17] = "", rprev[24];
    if (conf) rc = new_secret(k, TK_KIND_OAUTH_SECRET, secret_out, hash, kid, preview, e);
    if (rc == TK_OK && reg_out)
        rc = new_secret(k, TK_KIND_REGISTRATION, reg_out, rhash, rkid, rprev, e);
    if (rc != TK_OK) {
        tk_wipe(secret_out, TK_ISSUED_MAX);
        return rc;
    }
    tk_uuid7(id_out);
    int64_t now = tk_now_ms();
    char *ru = dump(spec, "redirect_uris"), *gt = dump(spec, "grant_types"),
         *sc = dump(spec, "scopes"), *ds = dump(spec, "default_scopes");
    rc = tk_db_exec(
        db,
        "INSERT INTO oauth_clients (id, tenant_id, client_id, name, client_type, application_type, "
        "token_endpoint_auth_method, redirect_uris, grant_types, scopes, default_scopes, "
        "rotate_refresh, status, origin, secret_hash, secret_hash_key, secret_preview, "
        "registration_hash, registration_hash_key, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(id_out),
                TK_TEXT(str_or(spec, "name", "")), TK_TEXT(str_or(spec, "client_type", "")),
                TK_TEXT(str_or(spec, "application_type", "")),
                TK_TEXT(str_or(spec, "token_endpoint_auth_method", "")), TK_TEXT(ru), TK_TEXT(gt),
                TK_TEXT(sc), TK_TEXT(ds),
                TK_INT(json_is_true(json_object_get(spec, "rotate_refresh")) ? 1 : 0),
                TK_TEXT(str_or(spec, "status", "active")), TK_TEXT(origin),
                conf ? TK_TEXT(hash) : TK_NULLV, conf ? TK_TEXT(kid) : TK_NULLV,
                conf ? TK_TEXT(preview) : TK_NULLV, reg_out ? TK_TEXT(rhash) : TK_NULLV,
                reg_out ? TK_TEXT(rkid) : TK_NULLV, TK_INT(now), TK_INT(now)),
        NULL, e);
    free(ru), free(gt), free(sc), free(ds);
    if (rc == TK_OK) rc = tk_oauth_client_get(db, tenant_id, id_out, out, e);
    if (rc != TK_OK) {
        tk_wipe(secret_out, TK_ISSUED_MAX);
        if (reg_out) tk_wipe(reg_out, TK_ISSUED_MAX);
    }
    return rc;
}

tk_rc tk_oauth_client_update(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *id, json_t *spec, char secret_out[TK_ISSUED_MAX],
                             int64_t *seq, json_t **out, struct tk_err *e)
{
    secret_out[0] = '\0';
    struct tk_rows *r;
    tk_rc rc = client_row(db, tenant_id, id, &r, e);
    if (rc != TK_OK) return rc;
    bool was_conf = !strcmp(tk_rows_text(r, 0, 3), "confidential");
    tk_rows_free(r);
    rc = tk_oauth_client_normalize(spec, e);
    if (rc == TK_OK)
        rc = tk_oauth_scopes_exist(db, tenant_id, json_object_get(spec, "scopes"), "scopes", e);
    if (rc != TK_OK) return rc;
    bool conf = !strcmp(str_or(spec, "client_type", ""), "confidential");
    char *ru = dump(spec, "redirect_uris"), *gt = dump(spec, "grant_types"),
         *sc = dump(spec, "scopes"), *ds = dump(spec, "default_scopes");
    rc = tk_db_exec(
        db,
        "UPDATE oauth_clients SET name = ?, client_type = ?, application_type = ?, "
        "token_endpoint_auth_method = ?, redirect_uris = ?, grant_types = ?, scopes = ?, "
        "default_scopes = ?, rotate_refresh = ?, status = ?, updated_at = ? "
        "WHERE tenant_id = ? AND id = ?",
        TK_ARGS(TK_TEXT(str_or(spec, "name", "")), TK_TEXT(str_or(spec, "client_type", "")),
                TK_TEXT(str_or(spec, "application_type", "")),
                TK_TEXT(str_or(spec, "token_endpoint_auth_method", "")), TK_TEXT(ru), TK_TEXT(gt),
                TK_TEXT(sc), TK_TEXT(ds),
                TK_INT(json_is_true(json_object_get(spec, "rotate_refresh")) ? 1 : 0),
                TK_TEXT(str_or(spec, "status", "active")), TK_INT(tk_now_ms()), TK_TEXT(tenant_id),
                TK_TEXT(id)),
        NULL, e);
    free(ru), free(gt), free(sc), free(ds);
    if (rc == TK_OK && conf && !was_conf) {
        char hash[TK_HASH_HEX], kid[17], preview[24];
        rc = new_secret(k, TK_KIND_OAUTH_SECRET, secret_out, hash, kid, preview, e);
        if (rc == TK_OK)
            rc = tk_db_exec(db,
                            "UPDATE oauth_clients SET secret_hash = ?, secret_hash_key = ?, "
                            "secret_preview = ? WHERE tenant_id = ? AND id = ?",
                            TK_ARGS(TK_TEXT(hash), TK_TEXT(kid), TK_TEXT(preview),
                                    TK_TEXT(tenant_id), TK_TEXT(id)),
                            NULL, e);
    } else if (rc == TK_OK && !conf && was_conf) {
        rc = tk_db_exec(db,
                        "UPDATE oauth_clients SET secret_hash = NULL, secret_hash_key = NULL, "
                        "secret_preview = NULL WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
    }
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    if (rc == TK_OK) rc = tk_oauth_client_get(db, tenant_id, id, out, e);
    if (rc != TK_OK) tk_wipe(secret_out, TK_ISSUED_MAX);
    return rc;
}

tk_rc tk_oauth_client_delete(struct tk_db *db, const char *tenant_id, const char *id, int64_t *seq,
                             struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = client_row(db, tenant_id, id, &r, e);
    if (rc != TK_OK) return rc;
    tk_rows_free(r);
    /* the other parts' rows that name the client (flows, consents, codes,
     * refresh tokens): a client with history is disabled, not deleted */
    static const char *const refs[] = {"oauth_flows", "oauth_consents", "oauth_codes",
                                       "oauth_refresh_tokens"};
    for (size_t i = 0; i < TK_NELEM(refs) && rc == TK_OK; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE oauth_client_id = ?", refs[i]);
        if ((rc = tk_db_exec(db, sql, TK_ARGS(TK_TEXT(id)), &r, e)) != TK_OK) break;
        if (tk_rows_int(r, 0, 0) > 0)
            rc = tk_err_set(e, TK_ECONFLICT, "client_in_use",
                            "the OAuth client has %lld row(s) in %s (flows, consents or tokens): "
                            "disable it instead (PATCH status disabled)",
                            (long long)tk_rows_int(r, 0, 0), refs[i]);
        tk_rows_free(r);
    }
    if (rc == TK_OK)
        rc = tk_db_exec(db, "DELETE FROM oauth_clients WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    return rc;
}

tk_rc tk_oauth_client_retire(struct tk_db *db, const char *tenant_id, const char *id, int64_t *seq,
                             struct tk_err *e)
{
    tk_rc rc = tk_oauth_client_delete(db, tenant_id, id, seq, e);
    if (rc != TK_ECONFLICT) return rc;
    rc = tk_db_exec(db,
                    "UPDATE oauth_clients SET status = 'disabled', secret_hash = NULL, "
                    "secret_hash_key = NULL, registration_hash = NULL, registration_hash_key = "
                    "NULL, updated_at = ? WHERE tenant_id = ? AND id = ?",
                    TK_ARGS(TK_INT(tk_now_ms()), TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    return rc;
}

tk_rc tk_oauth_client_rotate_secret(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                                    const char *id, char secret_out[TK_ISSUED_MAX], int64_t *seq,
                                    json_t **out, struct tk_err *e)
{
    secret_out[0] = '\0';
    struct tk_rows *r;
    tk_rc rc = client_row(db, tenant_id, id, &r, e);
    if (rc != TK_OK) return rc;
    bool conf = !strcmp(tk_rows_text(r, 0, 3), "confidential");
    tk_rows_free(r);
    if (!conf)
        return tk_err_set(e, TK_ECONFLICT, "public_client",
                          "a public client has no secret to rotate");
    char hash[TK_HASH_HEX], kid[17], preview[24];
    rc = new_secret(k, TK_KIND_OAUTH_SECRET, secret_out, hash, kid, preview, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "UPDATE oauth_clients SET secret_hash = ?, secret_hash_key = ?, "
                        "secret_preview = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(hash), TK_TEXT(kid), TK_TEXT(preview), TK_INT(tk_now_ms()),
                                TK_TEXT(tenant_id), TK_TEXT(id)),
                        NULL, e);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    if (rc == TK_OK) rc = tk_oauth_client_get(db, tenant_id, id, out, e);
    if (rc != TK_OK) tk_wipe(secret_out, TK_ISSUED_MAX);
    return rc;
}

tk_rc tk_oauth_client_count(struct tk_db *db, const char *tenant_id, const char *origin, int64_t *n,
                            struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc =
        tk_db_exec(db, "SELECT COUNT(*) FROM oauth_clients WHERE tenant_id = ? AND origin = ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(origin)), &r, e);
    if (rc != TK_OK) return rc;
    *n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return TK_OK;
}

tk_rc tk_oauth_client_lookup_hash(struct tk_db *db, const char *hash, struct tk_principal *p,
                                  int64_t *expires_at, int64_t *epoch, struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    *expires_at = 0;
    *epoch = 0;
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT c.id, c.tenant_id, c.client_id, c.name, c.status, n.auth_seq "
                          "FROM oauth_clients c JOIN tenants n ON n.id = c.tenant_id "
                          "WHERE c.secret_hash = ?",
                          TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_set(e, TK_EAUTH, "unknown",
                          "the client secret is well-formed but belongs to no client here (wrong "
                          "or rotated)");
    }
    snprintf(p->id, sizeof p->id, "%s", tk_rows_text(r, 0, 0));
    snprintf(p->tenant_id, sizeof p->tenant_id, "%s", tk_rows_text(r, 0, 1));
    if (strlen(tk_rows_text(r, 0, 2)) < sizeof p->client_id)
        snprintf(p->client_id, sizeof p->client_id, "%s", tk_rows_text(r, 0, 2));
    if (strcmp(tk_rows_text(r, 0, 4), "active") != 0) {
        rc = tk_err_set(e, TK_EAUTH, "client_disabled", "the OAuth client is disabled");
    } else {
        p->kind = TK_PRINCIPAL_OAUTH_CLIENT;
        snprintf(p->name, sizeof p->name, "%s", tk_rows_text(r, 0, 3));
        snprintf(p->role, sizeof p->role, "oauth_client");
        *epoch = tk_rows_int(r, 0, 5);
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_oauth_client_by_registration(struct tk_db *db, const char *client_id, const char *hash,
                                      char tenant_out[TK_UUID_LEN + 1],
                                      char id_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT id, tenant_id, registration_hash FROM oauth_clients "
                          "WHERE client_id = ? AND origin = 'dynamic'",
                          TK_ARGS(TK_TEXT(client_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1 || tk_rows_null(r, 0, 2) ||
        strlen(tk_rows_text(r, 0, 2)) != strlen(hash) ||
        !tk_ct_equal(tk_rows_text(r, 0, 2), hash, strlen(hash))) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "invalid_token",
                          "no dynamically registered client matches this client_id and "
                          "registration access token");
    }
    snprintf(id_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 0));
    snprintf(tenant_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 1));
    tk_rows_free(r);
    return TK_OK;
}

static void copy_arr(json_t **dst, json_t *src)
{
    *dst = json_is_array(src) ? json_deep_copy(src) : json_array();
}

tk_rc tk_oauth_client_find(struct tk_db *db, const char *client_id, struct tk_oauth_client *out,
                           struct tk_err *e)
{
    int64_t exp;
    return tk_oauth_client_find_ex(db, client_id, out, &exp, e);
}

tk_rc tk_oauth_client_find_ex(struct tk_db *db, const char *client_id, struct tk_oauth_client *out,
                              int64_t *expires_at, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    *expires_at = 0;
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " CLIENT_COLS ", metadata_expires_at FROM oauth_clients "
                          "WHERE client_id = ?",
                          TK_ARGS(TK_TEXT(client_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "invalid_client",
                          "no OAuth client has client_id '%.80s'", client_id);
    }
    json_t *o = client_json(r, 0);
    snprintf(out->id, sizeof out->id, "%s", tk_rows_text(r, 0, 0));
    snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tk_rows_text(r, 0, 16));
    snprintf(out->client_id, sizeof out->client_id, "%s", tk_rows_text(r, 0, 1));
    snprintf(out->name, sizeof out->name, "%s", tk_rows_text(r, 0, 2));
    out->confidential = !strcmp(tk_rows_text(r, 0, 3), "confidential");
    snprintf(out->application_type, sizeof out->application_type, "%s", tk_rows_text(r, 0, 4));
    snprintf(out->auth_method, sizeof out->auth_method, "%s", tk_rows_text(r, 0, 5));
    out->rotate_refresh = !out->confidential || tk_rows_int(r, 0, 10) != 0;
    snprintf(out->status, sizeof out->status, "%s", tk_rows_text(r, 0, 11));
    snprintf(out->origin, sizeof out->origin, "%s", tk_rows_text(r, 0, 12));
    copy_arr(&out->redirect_uris, json_object_get(o, "redirect_uris"));
    copy_arr(&out->grant_types, json_object_get(o, "grant_types"));
    copy_arr(&out->scopes, json_object_get(o, "scopes"));
    copy_arr(&out->default_scopes, json_object_get(o, "default_scopes"));
    if (!tk_rows_null(r, 0, 17)) *expires_at = tk_rows_int(r, 0, 17);
    json_decref(o);
    tk_rows_free(r);
    return TK_OK;
}

tk_rc tk_oauth_client_put_document(struct tk_db *db, const char *tenant_id, const char *url,
                                   json_t *spec, int64_t expires_at, struct tk_err *e)
{
    tk_rc rc = tk_oauth_client_normalize(spec, e);
    if (rc == TK_OK)
        rc = tk_oauth_scopes_exist(db, tenant_id, json_object_get(spec, "scopes"), "scope", e);
    if (rc != TK_OK) return rc;
    struct tk_rows *r;
    rc = tk_db_exec(db, "SELECT id, origin FROM oauth_clients WHERE client_id = ?",
                    TK_ARGS(TK_TEXT(url)), &r, e);
    if (rc != TK_OK) return rc;
    char id[TK_UUID_LEN + 1] = "";
    if (tk_rows_count(r) == 1) {
        if (strcmp(tk_rows_text(r, 0, 1), "metadata_document") != 0)
            rc = tk_err_set(e, TK_ECONFLICT, "conflict",
                            "a client that is not a metadata document has this client_id");
        snprintf(id, sizeof id, "%s", tk_rows_text(r, 0, 0));
    }
    tk_rows_free(r);
    if (rc != TK_OK) return rc;
    int64_t now = tk_now_ms();
    char *ru = dump(spec, "redirect_uris"), *gt = dump(spec, "grant_types"),
         *sc = dump(spec, "scopes"), *ds = dump(spec, "default_scopes");
    if (id[0]) {
        rc = tk_db_exec(db,
                        "UPDATE oauth_clients SET name = ?, application_type = ?, redirect_uris = "
                        "?, grant_types = ?, scopes = ?, default_scopes = ?, metadata_expires_at = "
                        "?, updated_at = ? WHERE id = ?",
                        TK_ARGS(TK_TEXT(str_or(spec, "name", "")),
                                TK_TEXT(str_or(spec, "application_type", "")), TK_TEXT(ru),
                                TK_TEXT(gt), TK_TEXT(sc), TK_TEXT(ds), TK_INT(expires_at),
                                TK_INT(now), TK_TEXT(id)),
                        NULL, e);
    } else {
        tk_uuid7(id);
        rc = tk_db_exec(
            db,
            "INSERT INTO oauth_clients (id, tenant_id, client_id, name, client_type, "
            "application_type, token_endpoint_auth_method, redirect_uris, grant_types, scopes, "
            "default_scopes, rotate_refresh, status, origin, metadata_expires_at, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, 'public', ?, 'none', ?, ?, ?, ?, 1, 'active', "
            "'metadata_document', ?, ?, ?)",
            TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id), TK_TEXT(url),
                    TK_TEXT(str_or(spec, "name", "")),
                    TK_TEXT(str_or(spec, "application_type", "")), TK_TEXT(ru), TK_TEXT(gt),
                    TK_TEXT(sc), TK_TEXT(ds), TK_INT(expires_at), TK_INT(now), TK_INT(now)),
            NULL, e);
    }
    free(ru), free(gt), free(sc), free(ds);
    return rc;
}
