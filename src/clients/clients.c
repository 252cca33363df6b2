/* clients.c: see clients.h. */
#include "clients.h"

#include "../common/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool tk_client_status_valid(const char *status)
{
    return status && (!strcmp(status, "active") || !strcmp(status, "suspended") ||
                      !strcmp(status, "disabled"));
}

static tk_rc invalid(struct tk_err *e, const char *field, const char *msg)
{
    return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s", msg);
}

/* A JSON string without NUL (json_string_length counts past one). */
static bool plain_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) == strlen(json_string_value(v));
}

static tk_rc check_email(json_t *v, struct tk_err *e)
{
    if (json_is_null(v)) return TK_OK;
    if (!plain_string(v))
        return invalid(e, "email", "email must be a string (an address) or null");
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    if (n < 3 || n > TK_CLIENT_EMAIL_MAX)
        return invalid(e, "email", "email must be 3 to 254 bytes");
    const char *at = strchr(s, '@');
    if (!at || at == s || !at[1] || strchr(at + 1, '@'))
        return invalid(e, "email", "email must be one address: local-part@domain");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '<' || *p == '>' || *p == '"' || *p == ',')
            return invalid(e, "email",
                           "email must not contain spaces, control characters, quotes, commas "
                           "or angle brackets");
    if (!tk_utf8_valid(s, n)) return invalid(e, "email", "email must be UTF-8");
    return TK_OK;
}

static bool meta_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > TK_CLIENT_META_KEY_MAX) return false;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

static tk_rc check_metadata(json_t *v, struct tk_err *e)
{
    if (!json_is_object(v))
        return invalid(e, "metadata", "metadata must be an object of strings");
    if (json_object_size(v) > TK_CLIENT_META_KEYS)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "metadata",
                            "metadata has more than %d members", TK_CLIENT_META_KEYS);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        if (!meta_key_ok(k))
            return tk_err_field(e, TK_EINVAL, "invalid_field", "metadata",
                                "metadata keys must be 1 to %d of A-Z a-z 0-9 _ - .",
                                TK_CLIENT_META_KEY_MAX);
        if (!plain_string(x) || json_string_length(x) > TK_CLIENT_META_VALUE_MAX)
            return tk_err_field(e, TK_EINVAL, "invalid_field", "metadata",
                                "metadata.%s must be a string of at most %d bytes without NUL", k,
                                TK_CLIENT_META_VALUE_MAX);
    }
    return TK_OK;
}

tk_rc tk_client_check(json_t *body, bool create, struct tk_err *e)
{
    json_t *v = json_object_get(body, "name");
    if (v) {
        if (!json_is_string(v))
            return invalid(e, "name", "name must be a string of 1 to 128 bytes");
        if (json_string_length(v) != strlen(json_string_value(v)))
            return invalid(e, "name", "name contains U+0000 (a control character)");
        tk_rc rc = tk_text_check_name("name", json_string_value(v), TK_CLIENT_NAME_MAX, e);
        if (rc != TK_OK) return rc;
    } else if (create) {
        return tk_err_field(e, TK_EINVAL, "missing_field", "name", "name is required");
    }
    if ((v = json_object_get(body, "email")) && check_email(v, e) != TK_OK) return e->rc;
    v = json_object_get(body, "status");
    if (v && (!json_is_string(v) || !tk_client_status_valid(json_string_value(v))))
        return invalid(e, "status", "status must be one of active, suspended, disabled");
    if ((v = json_object_get(body, "metadata")) && check_metadata(v, e) != TK_OK) return e->rc;
    return TK_OK;
}

static json_t *time_or_null(const struct tk_rows *r, int i, int c)
{
    if (tk_rows_null(r, i, c)) return json_null();
    char at[32];
    tk_time_fmt(tk_rows_int(r, i, c), at, sizeof at);
    return json_string(at);
}

#define CLIENT_COLS \
    "id, name, email, status, metadata, created_at, updated_at, status_changed_at"

static json_t *client_json(const struct tk_rows *r, int i)
{
    json_t *meta = json_loads(tk_rows_text(r, i, 4), 0, NULL);
    if (!json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    json_t *o = json_pack("{s:s, s:s}", "id", tk_rows_text(r, i, 0), "name", tk_rows_text(r, i, 1));
    json_object_set_new(o, "email",
                        tk_rows_null(r, i, 2) ? json_null() : json_string(tk_rows_text(r, i, 2)));
    json_object_set_new(o, "status", json_string(tk_rows_text(r, i, 3)));
    json_object_set_new(o, "metadata", meta);
    json_object_set_new(o, "created_at", time_or_null(r, i, 5));
    json_object_set_new(o, "updated_at", time_or_null(r, i, 6));
    json_object_set_new(o, "status_changed_at", time_or_null(r, i, 7));
    return o;
}

tk_rc tk_client_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                    struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT " CLIENT_COLS " FROM clients WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no client with id %s", id);
    else
        *out = client_json(r, 0);
    tk_rows_free(r);
    return rc;
}

static const char *str_or(json_t *body, const char *k, const char *def)
{
    json_t *v = json_object_get(body, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

tk_rc tk_client_create(struct tk_db *db, const char *tenant_id, json_t *body,
                       char id_out[TK_UUID_LEN + 1], json_t **out, struct tk_err *e)
{
    tk_rc rc = tk_client_check(body, true, e);
    if (rc != TK_OK) return rc;
    json_t *meta = json_object_get(body, "metadata");
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : tk_strdup("{}");
    tk_uuid7(id_out);
    int64_t now = tk_now_ms();
    rc = tk_db_exec(db,
                    "INSERT INTO clients (id, tenant_id, name, email, status, metadata, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(str_or(body, "name", "")),
                            TK_TEXT(str_or(body, "email", NULL)),
                            TK_TEXT(str_or(body, "status", "active")), TK_TEXT(meta_s),
                            TK_INT(now), TK_INT(now)),
                    NULL, e);
    free(meta_s);
    if (rc == TK_OK) rc = tk_client_get(db, tenant_id, id_out, out, e);
    return rc;
}

tk_rc tk_client_list(struct tk_db *db, const char *tenant_id, const char *status,
                     const char *before, int limit, json_t **out, char next_out[TK_UUID_LEN + 1],
                     struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " CLIENT_COLS " FROM clients WHERE tenant_id = ? "
                          "AND (CAST(? AS TEXT) IS NULL OR status = ?) "
                          "AND (CAST(? AS TEXT) IS NULL OR id < ?) "
                          "ORDER BY id DESC LIMIT ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(status), TK_TEXT(status),
                                  TK_TEXT(before), TK_TEXT(before), TK_INT(limit + 1)),
                          &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++) json_array_append_new(a, client_json(r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_client_update(struct tk_db *db, const char *tenant_id, const char *id, json_t *body,
                       char old_status[16], int64_t *seq, json_t **out, struct tk_err *e)
{
    *seq = 0;
    json_t *cur = NULL;
    tk_rc rc = tk_client_check(body, false, e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "clients", id, e);
    if (rc == TK_OK) rc = tk_client_get(db, tenant_id, id, &cur, e);
    if (rc != TK_OK) return rc;
    snprintf(old_status, 16, "%s", json_string_value(json_object_get(cur, "status")));
    /* what changes: only members whose value differs */
    bool changed = false;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (!json_equal(v, json_object_get(cur, k))) changed = true;
    }
    json_t *meta = json_object_get(body, "metadata");
    if (!meta) meta = json_object_get(cur, "metadata");
    const char *status = str_or(body, "status", old_status);
    json_t *email = json_object_get(body, "email");
    if (!email) email = json_object_get(cur, "email");
    if (!changed) {
        *out = cur;
        return TK_OK;
    }
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    int64_t now = tk_now_ms();
    bool status_changed = strcmp(status, old_status) != 0;
    rc = tk_db_exec(db,
                    "UPDATE clients SET name = ?, email = ?, status = ?, metadata = ?, "
                    "updated_at = ?, status_changed_at = CASE WHEN ? = 1 THEN ? ELSE "
                    "status_changed_at END WHERE id = ? AND tenant_id = ?",
                    TK_ARGS(TK_TEXT(str_or(body, "name", json_string_value(
                                                          json_object_get(cur, "name")))),
                            TK_TEXT(json_is_string(email) ? json_string_value(email) : NULL),
                            TK_TEXT(status), TK_TEXT(meta_s), TK_INT(now),
                            TK_INT(status_changed ? 1 : 0), TK_INT(now), TK_TEXT(id),
                            TK_TEXT(tenant_id)),
                    NULL, e);
    free(meta_s);
    json_decref(cur);
    /* the cache holds the client's name, email and status with its tokens */
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    if (rc == TK_OK) rc = tk_client_get(db, tenant_id, id, out, e);
    return rc;
}

/* ---- tokens ---- */

#define TOKEN_COLS                                                                             \
    "id, client_id, name, preview, created_at, last_used_at, expires_at, revoked_at, "         \
    "grace_ends_at, replaced_by"

static const char *token_status(const struct tk_rows *r, int i, int64_t now)
{
    if (!tk_rows_null(r, i, 7)) return "revoked";
    if (!tk_rows_null(r, i, 8) && tk_rows_int(r, i, 8) <= now) return "revoked";
    if (!tk_rows_null(r, i, 6) && tk_rows_int(r, i, 6) <= now) return "expired";
    if (!tk_rows_null(r, i, 8)) return "rotating";
    return "active";
}

static json_t *token_json(const struct tk_rows *r, int i, int64_t now)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", tk_rows_text(r, i, 0), "client_id",
                          tk_rows_text(r, i, 1), "name", tk_rows_text(r, i, 2), "preview",
                          tk_rows_text(r, i, 3), "status", token_status(r, i, now));
    json_object_set_new(o, "created_at", time_or_null(r, i, 4));
    json_object_set_new(o, "last_used_at", time_or_null(r, i, 5));
    json_object_set_new(o, "expires_at", time_or_null(r, i, 6));
    json_object_set_new(o, "revoked_at", time_or_null(r, i, 7));
    json_object_set_new(o, "grace_ends_at", time_or_null(r, i, 8));
    json_object_set_new(o, "replaced_by", tk_rows_null(r, i, 9)
                                              ? json_null()
                                              : json_string(tk_rows_text(r, i, 9)));
    return o;
}

static tk_rc token_get(struct tk_db *db, const char *tenant_id, const char *client_id,
                       const char *token_id, json_t **out, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " TOKEN_COLS " FROM client_tokens WHERE tenant_id = ? AND "
                          "client_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(client_id), TK_TEXT(token_id)), &r,
                          e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "token_id",
                          "no token %s of client %s", token_id, client_id);
    else
        *out = token_json(r, 0, tk_now_ms());
    tk_rows_free(r);
    return rc;
}

static tk_rc client_exists(struct tk_db *db, const char *tenant_id, const char *client_id,
                           struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT id FROM clients WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(client_id)), &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no client with id %s", client_id);
    tk_rows_free(r);
    return rc;
}

/* Insert a token row; token_out receives the secret. */
static tk_rc token_insert(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                          const char *client_id, const char *name, int64_t expires_at,
                          char token_out[TK_ISSUED_MAX], char id_out[TK_UUID_LEN + 1],
                          struct tk_err *e)
{
    char hash[TK_HASH_HEX], preview[24], kid[17];
    tk_issued_new(TK_KIND_CLIENT, token_out);
    tk_rc rc = tk_keyring_hash(k, token_out, strlen(token_out), hash, kid, e);
    if (rc != TK_OK) {
        tk_wipe(token_out, TK_ISSUED_MAX);
        return rc;
    }
    tk_issued_preview(token_out, preview);
    tk_uuid7(id_out);
    rc = tk_db_exec(db,
                    "INSERT INTO client_tokens (id, tenant_id, client_id, name, token_hash, "
                    "hash_key, preview, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(client_id),
                            TK_TEXT(name), TK_TEXT(hash), TK_TEXT(kid), TK_TEXT(preview),
                            TK_INT(tk_now_ms()), expires_at ? TK_INT(expires_at) : TK_NULLV),
                    NULL, e);
    if (rc != TK_OK) tk_wipe(token_out, TK_ISSUED_MAX);
    return rc;
}

static tk_rc token_room(struct tk_db *db, const char *tenant_id, const char *client_id,
                        struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT COUNT(*) FROM client_tokens WHERE tenant_id = ? AND client_id = "
                          "? AND revoked_at IS NULL",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(client_id)), &r, e);
    if (rc == TK_OK && tk_rows_int(r, 0, 0) >= TK_CLIENT_TOKENS_MAX)
        rc = tk_err_set(e, TK_ECONFLICT, "token_limit",
                        "client %s already has %d tokens that are not revoked; revoke some first",
                        client_id, TK_CLIENT_TOKENS_MAX);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_client_token_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *client_id, const char *name, int64_t expires_at,
                             char token_out[TK_ISSUED_MAX], char id_out[TK_UUID_LEN + 1],
                             json_t **out, struct tk_err *e)
{
    tk_rc rc = tk_db_lock_row(db, "clients", client_id, e);
    if (rc == TK_OK) rc = client_exists(db, tenant_id, client_id, e);
    if (rc == TK_OK) rc = token_room(db, tenant_id, client_id, e);
    if (rc == TK_OK)
        rc = token_insert(db, k, tenant_id, client_id, name, expires_at, token_out, id_out, e);
    if (rc == TK_OK) rc = token_get(db, tenant_id, client_id, id_out, out, e);
    if (rc != TK_OK) tk_wipe(token_out, TK_ISSUED_MAX);
    return rc;
}

tk_rc tk_client_token_list(struct tk_db *db, const char *tenant_id, const char *client_id,
                           json_t **out, struct tk_err *e)
{
    tk_rc rc = client_exists(db, tenant_id, client_id, e);
    if (rc != TK_OK) return rc;
    struct tk_rows *r;
    rc = tk_db_exec(db,
                    "SELECT " TOKEN_COLS " FROM client_tokens WHERE tenant_id = ? AND client_id = "
                    "? ORDER BY id DESC LIMIT 1000",
                    TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(client_id)), &r, e);
    if (rc != TK_OK) return rc;
    int64_t now = tk_now_ms();
    json_t *a = json_array();
    for (int i = 0; i < tk_rows_count(r); i++) json_array_append_new(a, token_json(r, i, now));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_client_token_revoke(struct tk_db *db, const char *tenant_id, const char *client_id,
                             const char *token_id, int64_t *seq, struct tk_err *e)
{
    int64_t now = tk_now_ms();
    tk_rc rc = tk_db_exec(db,
                          "UPDATE client_tokens SET revoked_at = ? WHERE id = ? AND tenant_id = ? "
                          "AND client_id = ? AND revoked_at IS NULL AND (grace_ends_at IS NULL "
                          "OR grace_ends_at > ?)",
                          TK_ARGS(TK_INT(now), TK_TEXT(token_id), TK_TEXT(tenant_id),
                                  TK_TEXT(client_id), TK_INT(now)),
                          NULL, e);
    if (rc == TK_OK && tk_db_changes(db) == 0)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "token_id",
                          "no token %s of client %s that is not revoked", token_id, client_id);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    return rc;
}

tk_rc tk_client_token_rotate(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *client_id, const char *token_id, int grace,
                             int64_t expires_in, char token_out[TK_ISSUED_MAX],
                             char id_out[TK_UUID_LEN + 1], int64_t *seq, json_t **out,
                             struct tk_err *e)
{
    struct tk_rows *r = NULL;
    int64_t now = tk_now_ms();
    tk_rc rc = tk_db_lock_row(db, "client_tokens", token_id, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "SELECT name, created_at, expires_at, revoked_at, grace_ends_at FROM "
                        "client_tokens WHERE id = ? AND tenant_id = ? AND client_id = ?",
                        TK_ARGS(TK_TEXT(token_id), TK_TEXT(tenant_id), TK_TEXT(client_id)), &r,
                        e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "token_id", "no token %s of client %s",
                          token_id, client_id);
    else if (rc == TK_OK && !tk_rows_null(r, 0, 3))
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "token_id",
                          "the token %s is revoked: issue a new one instead", token_id);
    else if (rc == TK_OK && !tk_rows_null(r, 0, 4))
        rc = tk_err_set(e, TK_ECONFLICT, "already_rotated",
                        "the token %s was already rotated; rotate its successor instead",
                        token_id);
    else if (rc == TK_OK && !tk_rows_null(r, 0, 2) && tk_rows_int(r, 0, 2) <= now)
        rc = tk_err_set(e, TK_ECONFLICT, "expired",
                        "the token %s has expired: issue a new one instead", token_id);
    char name[TK_CLIENT_TOKEN_NAME_MAX + 1] = "";
    int64_t expires_at = 0;
    if (rc == TK_OK) {
        snprintf(name, sizeof name, "%s", tk_rows_text(r, 0, 0));
        if (expires_in > 0)
            expires_at = now + expires_in * 1000;
        else if (!tk_rows_null(r, 0, 2))
            expires_at = now + (tk_rows_int(r, 0, 2) - tk_rows_int(r, 0, 1));
    }
    tk_rows_free(r);
    if (rc == TK_OK)
        rc = token_insert(db, k, tenant_id, client_id, name, expires_at, token_out, id_out, e);
    int64_t grace_ends = now + (int64_t)grace * 1000;
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        grace > 0 ? "UPDATE client_tokens SET grace_ends_at = ?, replaced_by = ? "
                                    "WHERE id = ?"
                                  : "UPDATE client_tokens SET revoked_at = ?, replaced_by = ? "
                                    "WHERE id = ?",
                        TK_ARGS(TK_INT(grace_ends), TK_TEXT(id_out), TK_TEXT(token_id)), NULL, e);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    if (rc == TK_OK) rc = token_get(db, tenant_id, client_id, id_out, out, e);
    if (rc == TK_OK) {
        char at[32];
        tk_time_fmt(grace_ends, at, sizeof at);
        json_object_set_new(*out, "replaces", json_string(token_id));
        json_object_set_new(*out, "grace_ends_at", json_string(at));
    }
    if (rc != TK_OK) tk_wipe(token_out, TK_ISSUED_MAX);
    return rc;
}

tk_rc tk_client_token_lookup_hash(struct tk_db *db, const char *hash, struct tk_principal *p,
                                  int64_t *expires_at, int64_t *epoch, struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    *expires_at = 0;
    *epoch = 0;
    struct tk_rows *r;
    /* one statement: the row, its client and the tenant's epoch are one snapshot */
    tk_rc rc = tk_db_exec(db,
                          "SELECT t.id, t.tenant_id, t.client_id, t.revoked_at, t.expires_at, "
                          "t.grace_ends_at, c.name, c.email, c.status, n.auth_seq, "
                          "c.status_changed_at FROM client_tokens t "
                          "JOIN clients c ON c.id = t.client_id "
                          "JOIN tenants n ON n.id = t.tenant_id WHERE t.token_hash = ?",
                          TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    int64_t now = tk_now_ms();
    char at[32];
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_set(e, TK_EAUTH, "unknown",
                          "the client token is well-formed but unknown here (never issued by "
                          "this installation, or of another tenant)");
    }
    snprintf(p->id, sizeof p->id, "%s", tk_rows_text(r, 0, 0));
    snprintf(p->tenant_id, sizeof p->tenant_id, "%s", tk_rows_text(r, 0, 1));
    snprintf(p->client_id, sizeof p->client_id, "%s", tk_rows_text(r, 0, 2));
    const char *status = tk_rows_text(r, 0, 8);
    bool grace = !tk_rows_null(r, 0, 5);
    if (!tk_rows_null(r, 0, 3)) {
        tk_time_fmt(tk_rows_int(r, 0, 3), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "revoked", "the client token %s was revoked at %s",
                        p->id, at);
    } else if (grace && tk_rows_int(r, 0, 5) <= now) {
        tk_time_fmt(tk_rows_int(r, 0, 5), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "revoked",
                        "the client token %s was rotated and its grace period ended at %s; use "
                        "its successor",
                        p->id, at);
    } else if (!tk_rows_null(r, 0, 4) && tk_rows_int(r, 0, 4) <= now) {
        tk_time_fmt(tk_rows_int(r, 0, 4), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "expired", "the client token %s expired at %s", p->id, at);
    } else if (!strcmp(status, "disabled") || !strcmp(status, "suspended")) {
        bool dis = !strcmp(status, "disabled");
        if (!tk_rows_null(r, 0, 10))
            tk_time_fmt(tk_rows_int(r, 0, 10), at, sizeof at);
        else
            snprintf(at, sizeof at, "its creation");
        rc = tk_err_set(e, TK_EAUTH, dis ? "client_inactive" : "client_suspended",
                        "the client '%.128s' was %s at %s: every token of it fails", 
                        tk_rows_text(r, 0, 6), dis ? "disabled" : "suspended", at);
    } else {
        p->kind = TK_PRINCIPAL_CLIENT_TOKEN;
        snprintf(p->name, sizeof p->name, "%s", tk_rows_text(r, 0, 6));
        snprintf(p->email, sizeof p->email, "%s",
                 tk_rows_null(r, 0, 7) ? "" : tk_rows_text(r, 0, 7));
        snprintf(p->role, sizeof p->role, "client");
        int64_t x = tk_rows_null(r, 0, 4) ? 0 : tk_rows_int(r, 0, 4);
        if (grace && (!x || tk_rows_int(r, 0, 5) < x)) x = tk_rows_int(r, 0, 5);
        *expires_at = x;
        *epoch = tk_rows_int(r, 0, 9);
    }
    tk_rows_free(r);
    return rc;
}

