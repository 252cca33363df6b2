/* users.c: end users, sessions, consents (users.h; tk_oauth_consent_covers
 * of oauth.h). */
#include "users.h"

#include "../common/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *time_or_null(const struct tk_rows *r, int i, int c)
{
    if (tk_rows_null(r, i, c)) return json_null();
    char at[32];
    tk_time_fmt(tk_rows_int(r, i, c), at, sizeof at);
    return json_string(at);
}

#define USER_COLS "id, email, status, created_at, updated_at, last_login_at"

static json_t *user_json(const struct tk_rows *r, int i)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "id", tk_rows_text(r, i, 0), "email",
                          tk_rows_text(r, i, 1), "status", tk_rows_text(r, i, 2));
    json_object_set_new(o, "created_at", time_or_null(r, i, 3));
    json_object_set_new(o, "updated_at", time_or_null(r, i, 4));
    json_object_set_new(o, "last_login_at", time_or_null(r, i, 5));
    return o;
}

tk_rc tk_user_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                  struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT " USER_COLS " FROM users WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no user with id %s", id);
    else
        *out = user_json(r, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_user_create(struct tk_db *db, const char *tenant_id, const char *email,
                     const char *password_hash, char id_out[TK_UUID_LEN + 1], json_t **out,
                     struct tk_err *e)
{
    tk_uuid7(id_out);
    int64_t now = tk_now_ms();
    tk_rc rc = tk_db_exec(db,
                          "INSERT INTO users (id, tenant_id, email, password_hash, status, "
                          "created_at, updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?)",
                          TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(email),
                                  TK_TEXT(password_hash), TK_INT(now), TK_INT(now)),
                          NULL, e);
    if (rc == TK_ECONFLICT)
        return tk_err_field(e, TK_ECONFLICT, "email_taken", "email",
                            "a user with email %s exists in this tenant already", email);
    if (rc == TK_OK) rc = tk_user_get(db, tenant_id, id_out, out, e);
    return rc;
}

tk_rc tk_user_list(struct tk_db *db, const char *tenant_id, const char *status, const char *before,
                   int limit, json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " USER_COLS " FROM users WHERE tenant_id = ? "
                          "AND (CAST(? AS TEXT) IS NULL OR status = ?) "
                          "AND (CAST(? AS TEXT) IS NULL OR id < ?) "
                          "ORDER BY id DESC LIMIT ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(status), TK_TEXT(status),
                                  TK_TEXT(before), TK_TEXT(before), TK_INT(limit + 1)),
                          &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(a, user_json(r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

static tk_rc end_sessions(struct tk_db *db, const char *tenant_id, const char *user_id, int64_t now,
                          struct tk_err *e)
{
    return tk_db_exec(db,
                      "UPDATE user_sessions SET ended_at = ? WHERE tenant_id = ? AND user_id = ? "
                      "AND ended_at IS NULL",
                      TK_ARGS(TK_INT(now), TK_TEXT(tenant_id), TK_TEXT(user_id)), NULL, e);
}

tk_rc tk_user_update(struct tk_db *db, const char *tenant_id, const char *id, const char *status,
                     const char *password_hash, json_t **out, struct tk_err *e)
{
    int64_t now = tk_now_ms();
    tk_rc rc = tk_db_lock_row(db, "users", id, e);
    struct tk_user u;
    if (rc == TK_OK) rc = tk_user_load(db, tenant_id, id, &u, e);
    if (rc != TK_OK) return rc;
    bool status_changed = status && strcmp(status, u.status) != 0;
    if (status_changed || password_hash) {
        rc = tk_db_exec(db,
                        "UPDATE users SET status = ?, password_hash = ?, updated_at = ? "
                        "WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(status ? status : u.status),
                                TK_TEXT(password_hash ? password_hash : u.password_hash),
                                TK_INT(now), TK_TEXT(tenant_id), TK_TEXT(id)),
                        NULL, e);
        /* a new password or a disabled user: every browser signs in again */
        if (rc == TK_OK && (password_hash || (status && !strcmp(status, "disabled"))))
            rc = end_sessions(db, tenant_id, id, now, e);
    }
    tk_wipe(u.password_hash, sizeof u.password_hash);
    if (rc == TK_OK) rc = tk_user_get(db, tenant_id, id, out, e);
    return rc;
}

static tk_rc user_row(struct tk_db *db, const char *sql, const char *tenant_id, const char *key,
                      struct tk_user *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, sql, TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(key)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        rc = tk_err_set(e, TK_ENOTFOUND, "not_found", "no such user");
    } else {
        snprintf(out->id, sizeof out->id, "%s", tk_rows_text(r, 0, 0));
        snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tk_rows_text(r, 0, 1));
        snprintf(out->email, sizeof out->email, "%s", tk_rows_text(r, 0, 2));
        snprintf(out->status, sizeof out->status, "%s", tk_rows_text(r, 0, 3));
        snprintf(out->password_hash, sizeof out->password_hash, "%s", tk_rows_text(r, 0, 4));
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_user_find_email(struct tk_db *db, const char *tenant_id, const char *email,
                         struct tk_user *out, struct tk_err *e)
{
    return user_row(db,
                    "SELECT id, tenant_id, email, status, password_hash FROM users "
                    "WHERE tenant_id = ? AND email = ?",
                    tenant_id, email, out, e);
}

tk_rc tk_user_load(struct tk_db *db, const char *tenant_id, const char *id, struct tk_user *out,
                   struct tk_err *e)
{
    tk_rc rc = user_row(db,
                        "SELECT id, tenant_id, email, status, password_hash FROM users "
                        "WHERE tenant_id = ? AND id = ?",
                        tenant_id, id, out, e);
    if (rc == TK_ENOTFOUND)
        tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no user with id %s", id);
    return rc;
}

tk_rc tk_user_login_noted(struct tk_db *db, const char *tenant_id, const char *id, struct tk_err *e)
{
    return tk_db_exec(db, "UPDATE users SET last_login_at = ? WHERE tenant_id = ? AND id = ?",
                      TK_ARGS(TK_INT(tk_now_ms()), TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
}

/* ---- sessions ---- */

tk_rc tk_user_session_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *user_id, int ttl_s, char token_out[TK_ISSUED_MAX],
                             char id_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    char hash[TK_HASH_HEX], kid[17];
    tk_issued_new(TK_KIND_USER_SESSION, token_out);
    tk_rc rc = tk_keyring_hash(k, token_out, strlen(token_out), hash, kid, e);
    if (rc != TK_OK) {
        tk_wipe(token_out, TK_ISSUED_MAX);
        return rc;
    }
    tk_uuid7(id_out);
    int64_t now = tk_now_ms();
    rc = tk_db_exec(db,
                    "INSERT INTO user_sessions (id, tenant_id, user_id, token_hash, hash_key, "
                    "created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(user_id), TK_TEXT(hash),
                            TK_TEXT(kid), TK_INT(now), TK_INT(now),
                            TK_INT(now + (int64_t)ttl_s * 1000)),
                    NULL, e);
    if (rc != TK_OK) tk_wipe(token_out, TK_ISSUED_MAX);
    return rc;
}

tk_rc tk_user_session_find(struct tk_db *db, struct tk_keyring *k, const char *token, size_t len,
                           struct tk_user_session *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    char hash[TK_HASH_HEX];
    tk_rc rc = tk_keyring_hash(k, token, len, hash, NULL, e);
    if (rc != TK_OK) return rc;
    struct tk_rows *r;
    rc = tk_db_exec(db,
                    "SELECT s.id, s.tenant_id, s.user_id, s.expires_at, s.ended_at, u.status "
                    "FROM user_sessions s JOIN users u ON u.id = s.user_id AND "
                    "u.tenant_id = s.tenant_id WHERE s.token_hash = ?",
                    TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        rc = tk_err_set(e, TK_EAUTH, "unknown", "no such session");
    } else if (!tk_rows_null(r, 0, 4)) {
        rc = tk_err_set(e, TK_EAUTH, "ended", "the session was ended");
    } else if (tk_rows_int(r, 0, 3) <= tk_now_ms()) {
        rc = tk_err_set(e, TK_EAUTH, "expired", "the session expired");
    } else if (strcmp(tk_rows_text(r, 0, 5), "active") != 0) {
        rc = tk_err_set(e, TK_EAUTH, "user_disabled", "the session's user is disabled");
    } else {
        snprintf(out->id, sizeof out->id, "%s", tk_rows_text(r, 0, 0));
        snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tk_rows_text(r, 0, 1));
        snprintf(out->user_id, sizeof out->user_id, "%s", tk_rows_text(r, 0, 2));
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_user_session_end(struct tk_db *db, struct tk_keyring *k, const char *token, size_t len,
                          struct tk_err *e)
{
    char hash[TK_HASH_HEX];
    tk_rc rc = tk_keyring_hash(k, token, len, hash, NULL, e);
    if (rc != TK_OK) return rc;
    return tk_db_exec(db,
                      "UPDATE user_sessions SET ended_at = ? WHERE token_hash = ? AND "
                      "ended_at IS NULL",
                      TK_ARGS(TK_INT(tk_now_ms()), TK_TEXT(hash)), NULL, e);
}

/* ---- consents ---- */

static json_t *consent_scopes(struct tk_db *db, const char *tenant_id, const char *user_id,
                              const char *oauth_client_id, tk_rc *rc, struct tk_err *e)
{
    struct tk_rows *r;
    *rc =
        tk_db_exec(db,
                   "SELECT scopes FROM oauth_consents WHERE tenant_id = ? AND user_id = ? AND "
                   "oauth_client_id = ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(user_id), TK_TEXT(oauth_client_id)), &r, e);
    if (*rc != TK_OK) return NULL;
    json_t *a = NULL;
    if (tk_rows_count(r) == 1) {
        a = json_loads(tk_rows_text(r, 0, 0), 0, NULL);
        if (!json_is_array(a)) {
            json_decref(a);
            a = json_array();
        }
    }
    tk_rows_free(r);
    return a;
}

static bool has_scope(json_t *a, const char *s)
{
    size_t i;
    json_t *x;
    json_array_foreach(a, i,
                       x) if (json_is_string(x) && !strcmp(json_string_value(x), s)) return true;
    return false;
}

tk_rc tk_oauth_consent_covers(struct tk_db *db, const char *tenant_id, const char *user_id,
                              const char *oauth_client_id, json_t *scopes, bool *covered,
                              struct tk_err *e)
{
    *covered = false;
    tk_rc rc;
    json_t *have = consent_scopes(db, tenant_id, user_id, oauth_client_id, &rc, e);
    if (rc != TK_OK || !have) return rc;
    bool all = true;
    size_t i;
    json_t *x;
    json_array_foreach(scopes, i, x)
    {
        if (!json_is_string(x) || !has_scope(have, json_string_value(x))) all = false;
    }
    json_decref(have);
    *covered = all;
    return TK_OK;
}

tk_rc tk_oauth_consent_grant(struct tk_db *db, const char *tenant_id, const char *user_id,
                             const char *oauth_client_id, json_t *scopes, struct tk_err *e)
{
    tk_rc rc;
    json_t *have = consent_scopes(db, tenant_id, user_id, oauth_client_id, &rc, e);
    if (rc != TK_OK) return rc;
    bool exists = have != NULL;
    if (!have) have = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(scopes, i, x)
    {
        if (json_is_string(x) && !has_scope(have, json_string_value(x))) json_array_append(have, x);
    }
    char *s = json_dumps(have, JSON_COMPACT);
    json_decref(have);
    int64_t now = tk_now_ms();
    if (exists) {
        rc = tk_db_exec(db,
                        "UPDATE oauth_consents SET scopes = ?, updated_at = ? WHERE tenant_id = ? "
                        "AND user_id = ? AND oauth_client_id = ?",
                        TK_ARGS(TK_TEXT(s), TK_INT(now), TK_TEXT(tenant_id), TK_TEXT(user_id),
                                TK_TEXT(oauth_client_id)),
                        NULL, e);
    } else {
        char id[TK_UUID_LEN + 1];
        tk_uuid7(id);
        rc = tk_db_exec(db,
                        "INSERT INTO oauth_consents (id, tenant_id, user_id, oauth_client_id, "
                        "scopes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id), TK_TEXT(user_id),
                                TK_TEXT(oauth_client_id), TK_TEXT(s), TK_INT(now), TK_INT(now)),
                        NULL, e);
    }
    free(s);
    return rc;
}

tk_rc tk_oauth_scope_describe(struct tk_db *db, const char *tenant_id, json_t *scopes, json_t **out,
                              struct tk_err *e)
{
    json_t *a = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(scopes, i, x)
    {
        if (!json_is_string(x)) continue;
        struct tk_rows *r;
        tk_rc rc = tk_db_exec(db,
                              "SELECT description FROM oauth_scopes WHERE tenant_id = ? AND "
                              "name = ?",
                              TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(json_string_value(x))), &r, e);
        if (rc != TK_OK) {
            json_decref(a);
            return rc;
        }
        json_array_append_new(
            a,
            json_pack("{s:O, s:s}", "name", x, "description",
                      tk_rows_count(r) == 1 && tk_rows_text(r, 0, 0) ? tk_rows_text(r, 0, 0) : ""));
        tk_rows_free(r);
    }
    *out = a;
    return TK_OK;
}
