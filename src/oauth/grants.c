/*
 * grants.c: what the token endpoint redeems (migration 0014).
 *
 * Codes (tka_) and refresh tokens (tkr_) are issued secrets stored as a
 * keyed hash of the keyring (like operator and client tokens) and a
 * preview; the plaintext is only ever in the redirect or the token reply.
 *
 * A code is consumed by one UPDATE ... WHERE used_at IS NULL whose change
 * count must be 1: of two requests racing with one code, exactly one gets
 * the change, the other sees a used code. Consuming a code starts a
 * refresh family (the code row records it): every refresh token of the
 * grant and every access token issued from it carry the family, so that a
 * replay of the code (or of a rotated refresh token) revokes all of them
 * with one row -- refresh tokens by their revoked_at, access tokens (JWTs,
 * never stored) through the family's row in oauth_revocations, which every
 * node polls into its in-memory revocation set (revset.c).
 */
#include "oauth.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int code_ttl = TK_OAUTH_CODE_TTL;

void tk_oauth_code_ttl_set(int seconds)
{
    if (seconds >= 1 && seconds <= 600) atomic_store(&code_ttl, seconds);
}

int tk_oauth_code_ttl(void)
{
    return atomic_load(&code_ttl);
}

/* The keyed hash of a well-formed token of kind; TK_ENOTFOUND (code
 * invalid_grant) for a malformed one, naming what but never the token. */
static tk_rc hash_of(struct tk_keyring *k, const char *kind, const char *what, const char *tok,
                     size_t len, char hash[TK_HASH_HEX], char kid[17], struct tk_err *e)
{
    struct tk_err ce;
    tk_err_clear(&ce);
    if (!tok || len == 0)
        return tk_err_set(e, TK_ENOTFOUND, "invalid_grant", "%s is missing", what);
    if (tk_issued_check(kind, tok, len, &ce) != TK_OK)
        return tk_err_set(e, TK_ENOTFOUND, "invalid_grant", "%s is malformed: %s", what, ce.msg);
    return tk_keyring_hash(k, tok, len, hash, kid, e);
}

/* HH:MM:SS (UTC) of ms, as the sentences of the flow trace say it. */
static void clock_of(int64_t ms, char out[16])
{
    char at[40];
    tk_time_fmt(ms, at, sizeof at); /* 2026-12-03T10:00:10.123Z */
    snprintf(out, 16, "%.8s", strlen(at) >= 19 ? at + 11 : at);
}

/* ---- codes ---- */

tk_rc tk_oauth_code_issue(struct tk_db *db, struct tk_keyring *k, const struct tk_oauth_flow *f,
                          char code_out[TK_ISSUED_MAX], struct tk_err *e)
{
    char id[TK_UUID_LEN + 1], hash[TK_HASH_HEX], kid[17];
    tk_uuid7(id);
    tk_issued_new(TK_KIND_CODE, code_out);
    tk_rc rc = tk_keyring_hash(k, code_out, strlen(code_out), hash, kid, e);
    int64_t now = tk_now_ms();
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "INSERT INTO oauth_codes (id, tenant_id, flow_id, oauth_client_id, "
                        "code_hash, hash_key, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        TK_ARGS(TK_TEXT(id), TK_TEXT(f->tenant_id), TK_TEXT(f->id),
                                TK_TEXT(f->oauth_client_id), TK_TEXT(hash), TK_TEXT(kid),
                                TK_INT(now), TK_INT(now + (int64_t)tk_oauth_code_ttl() * 1000)),
                        NULL, e);
    if (rc != TK_OK) tk_wipe(code_out, TK_ISSUED_MAX);
    return rc;
}

static tk_rc code_read(struct tk_db *db, const char *hash, struct tk_oauth_code *out,
                       struct tk_err *e)
{
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db,
                          "SELECT id, tenant_id, flow_id, oauth_client_id, family_id, created_at, "
                          "expires_at, used_at FROM oauth_codes WHERE code_hash = ?",
                          TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "invalid_grant",
                          "code is unknown (never issued here, or dropped after it expired)");
    }
    snprintf(out->id, sizeof out->id, "%s", tk_rows_text(r, 0, 0));
    snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tk_rows_text(r, 0, 1));
    snprintf(out->flow_id, sizeof out->flow_id, "%s", tk_rows_text(r, 0, 2));
    snprintf(out->oauth_client_id, sizeof out->oauth_client_id, "%s", tk_rows_text(r, 0, 3));
    snprintf(out->family_id, sizeof out->family_id, "%s",
             tk_rows_null(r, 0, 4) ? "" : tk_rows_text(r, 0, 4));
    out->created_at = tk_rows_int(r, 0, 5);
    out->expires_at = tk_rows_int(r, 0, 6);
    out->used_at = tk_rows_null(r, 0, 7) ? 0 : tk_rows_int(r, 0, 7);
    tk_rows_free(r);
    return TK_OK;
}

/* The code was used before: revoke what was issued from it. */
static tk_rc code_replayed(struct tk_db *db, const struct tk_oauth_code *c, int64_t now,
                           int access_ttl_s, struct tk_err *e)
{
    tk_rc rc = TK_OK;
    if (c->family_id[0])
        rc = tk_oauth_revoke_family(db, c->tenant_id, c->family_id, now,
                                    now + (int64_t)access_ttl_s * 1000, e);
    if (rc != TK_OK) return rc;
    char at[16];
    clock_of(c->used_at, at);
    return tk_err_set(e, TK_ECONFLICT, "invalid_grant",
                      "code already used at %s; tokens issued from it were revoked", at);
}

tk_rc tk_oauth_code_redeem(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                           const char *oauth_client_id, int64_t now_ms, int access_ttl_s,
                           struct tk_oauth_code *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    char hash[TK_HASH_HEX];
    tk_rc rc = hash_of(k, TK_KIND_CODE, "code", tok, len, hash, NULL, e);
    if (rc == TK_ENOTFOUND) rc = TK_EINVAL;
    if (rc != TK_OK) return rc;
    rc = code_read(db, hash, out, e);
    if (rc == TK_ENOTFOUND) return TK_EINVAL;
    if (rc == TK_OK) rc = tk_db_lock_row(db, "oauth_codes", out->id, e);
    /* read again under the lock: a concurrent redemption has committed */
    if (rc == TK_OK) rc = code_read(db, hash, out, e);
    if (rc != TK_OK) return rc;
    if (out->used_at) return code_replayed(db, out, now_ms, access_ttl_s, e);
    if (out->expires_at <= now_ms) {
        int64_t ago = (now_ms - out->expires_at) / 1000;
        return tk_err_set(e, TK_EINVAL, "invalid_grant", "code expired %lld s ago", (long long)ago);
    }
    if (strcmp(out->oauth_client_id, oauth_client_id) != 0)
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "code was issued to another client than the one authenticated");
    char family[TK_UUID_LEN + 1];
    tk_uuid7(family);
    rc = tk_db_exec(db,
                    "UPDATE oauth_codes SET used_at = ?, family_id = ? "
                    "WHERE id = ? AND used_at IS NULL",
                    TK_ARGS(TK_INT(now_ms), TK_TEXT(family), TK_TEXT(out->id)), NULL, e);
    if (rc != TK_OK) return rc;
    if (tk_db_changes(db) != 1) {
        /* another request consumed it between the read and the update */
        rc = code_read(db, hash, out, e);
        if (rc == TK_OK && !out->used_at) out->used_at = now_ms;
        return rc == TK_OK ? code_replayed(db, out, now_ms, access_ttl_s, e) : rc;
    }
    out->used_at = now_ms;
    memcpy(out->family_id, family, sizeof family);
    return TK_OK;
}

/* ---- refresh tokens ---- */

void tk_oauth_refresh_clear(struct tk_oauth_refresh *t)
{
    json_decref(t->scopes);
    t->scopes = NULL;
}

tk_rc tk_oauth_refresh_issue(struct tk_db *db, struct tk_keyring *k, struct tk_oauth_refresh *t,
                             int ttl_s, int64_t now_ms, char tok_out[TK_ISSUED_MAX],
                             struct tk_err *e)
{
    char hash[TK_HASH_HEX], kid[17], preview[24];
    tk_uuid7(t->id);
    tk_issued_new(TK_KIND_REFRESH, tok_out);
    tk_issued_preview(tok_out, preview);
    t->created_at = now_ms;
    t->expires_at = ttl_s > 0 ? now_ms + (int64_t)ttl_s * 1000 : 0;
    t->rotated_at = t->revoked_at = 0;
    char *scopes = t->scopes ? json_dumps(t->scopes, JSON_COMPACT) : tk_strdup("[]");
    tk_rc rc = tk_keyring_hash(k, tok_out, strlen(tok_out), hash, kid, e);
    if (rc == TK_OK)
        rc = tk_db_exec(
            db,
            "INSERT INTO oauth_refresh_tokens (id, tenant_id, family_id, parent_id, flow_id, "
            "oauth_client_id, user_id, token_hash, hash_key, preview, scopes, resource, "
            "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            TK_ARGS(TK_TEXT(t->id), TK_TEXT(t->tenant_id), TK_TEXT(t->family_id),
                    TK_TEXT(t->parent_id[0] ? t->parent_id : NULL),
                    TK_TEXT(t->flow_id[0] ? t->flow_id : NULL), TK_TEXT(t->oauth_client_id),
                    TK_TEXT(t->user_id[0] ? t->user_id : NULL), TK_TEXT(hash), TK_TEXT(kid),
                    TK_TEXT(preview), TK_TEXT(scopes), TK_TEXT(t->resource[0] ? t->resource : NULL),
                    TK_INT(now_ms), t->expires_at ? TK_INT(t->expires_at) : TK_NULLV),
            NULL, e);
    free(scopes);
    if (rc != TK_OK) tk_wipe(tok_out, TK_ISSUED_MAX);
    return rc;
}

#define REFRESH_COLS                                                                               \
    "id, tenant_id, family_id, parent_id, flow_id, oauth_client_id, user_id, scopes, resource, "   \
    "created_at, expires_at, rotated_at, revoked_at"

static tk_rc refresh_read(struct tk_db *db, const char *hash, struct tk_oauth_refresh *out,
                          struct tk_err *e)
{
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " REFRESH_COLS " FROM oauth_refresh_tokens "
                          "WHERE token_hash = ?",
                          TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    tk_oauth_refresh_clear(out);
    memset(out, 0, sizeof *out);
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "invalid_grant",
                          "refresh token is unknown (never issued here, or dropped after it "
                          "expired)");
    }
#define TXT(i) (tk_rows_null(r, 0, (i)) ? "" : tk_rows_text(r, 0, (i)))
#define INT(i) (tk_rows_null(r, 0, (i)) ? 0 : tk_rows_int(r, 0, (i)))
    snprintf(out->id, sizeof out->id, "%s", TXT(0));
    snprintf(out->tenant_id, sizeof out->tenant_id, "%s", TXT(1));
    snprintf(out->family_id, sizeof out->family_id, "%s", TXT(2));
    snprintf(out->parent_id, sizeof out->parent_id, "%s", TXT(3));
    snprintf(out->flow_id, sizeof out->flow_id, "%s", TXT(4));
    snprintf(out->oauth_client_id, sizeof out->oauth_client_id, "%s", TXT(5));
    snprintf(out->user_id, sizeof out->user_id, "%s", TXT(6));
    out->scopes = json_loads(TXT(7), 0, NULL);
    if (!json_is_array(out->scopes)) {
        json_decref(out->scopes);
        out->scopes = json_array();
    }
    snprintf(out->resource, sizeof out->resource, "%s", TXT(8));
    out->created_at = INT(9);
    out->expires_at = INT(10);
    out->rotated_at = INT(11);
    out->revoked_at = INT(12);
#undef TXT
#undef INT
    tk_rows_free(r);
    return TK_OK;
}

tk_rc tk_oauth_refresh_find(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                            int64_t now_ms, struct tk_oauth_refresh *out, bool *active,
                            struct tk_err *e)
{
    char hash[TK_HASH_HEX];
    *active = false;
    tk_rc rc = hash_of(k, TK_KIND_REFRESH, "refresh token", tok, len, hash, NULL, e);
    if (rc == TK_OK) rc = refresh_read(db, hash, out, e);
    if (rc != TK_OK) return rc;
    *active =
        !out->revoked_at && !out->rotated_at && (!out->expires_at || out->expires_at > now_ms);
    return TK_OK;
}

tk_rc tk_oauth_refresh_redeem(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                              const char *oauth_client_id, int64_t now_ms, bool rotate, int grace_s,
                              int ttl_s, int access_ttl_s, struct tk_oauth_refresh *out,
                              char new_tok[TK_ISSUED_MAX], struct tk_err *e)
{
    char hash[TK_HASH_HEX], at[40];
    new_tok[0] = '\0';
    tk_rc rc = hash_of(k, TK_KIND_REFRESH, "refresh_token", tok, len, hash, NULL, e);
    if (rc == TK_OK) rc = refresh_read(db, hash, out, e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "oauth_refresh_tokens", out->id, e);
    if (rc == TK_OK) rc = refresh_read(db, hash, out, e); /* under the lock */
    if (rc == TK_ENOTFOUND) return TK_EINVAL;
    if (rc != TK_OK) return rc;
    if (strcmp(out->oauth_client_id, oauth_client_id) != 0)
        return tk_err_set(e, TK_EINVAL, "invalid_grant",
                          "refresh token was issued to another client than the one "
                          "authenticated");
    if (out->revoked_at) {
        tk_time_fmt(out->revoked_at, at, sizeof at);
        return tk_err_set(e, TK_EINVAL, "invalid_grant", "refresh token was revoked at %s", at);
    }
    if (out->expires_at && out->expires_at <= now_ms) {
        tk_time_fmt(out->expires_at, at, sizeof at);
        return tk_err_set(e, TK_EINVAL, "invalid_grant", "refresh token expired at %s", at);
    }
    struct tk_oauth_refresh next = {0};
    memcpy(next.tenant_id, out->tenant_id, sizeof next.tenant_id);
    memcpy(next.family_id, out->family_id, sizeof next.family_id);
    memcpy(next.flow_id, out->flow_id, sizeof next.flow_id);
    memcpy(next.oauth_client_id, out->oauth_client_id, sizeof next.oauth_client_id);
    memcpy(next.user_id, out->user_id, sizeof next.user_id);
    memcpy(next.resource, out->resource, sizeof next.resource);
    next.scopes = out->scopes; /* borrowed */
    if (out->rotated_at) {
        if (grace_s > 0 && now_ms - out->rotated_at <= (int64_t)grace_s * 1000) {
            /* a concurrent refresh inside the grace: a sibling of the successor */
            memcpy(next.parent_id, out->parent_id, sizeof next.parent_id);
            rc = tk_oauth_refresh_issue(db, k, &next, ttl_s, now_ms, new_tok, e);
            if (rc == TK_OK) memcpy(out->id, next.id, sizeof out->id);
            return rc;
        }
        rc = tk_oauth_revoke_family(db, out->tenant_id, out->family_id, now_ms,
                                    now_ms + (int64_t)access_ttl_s * 1000, e);
        if (rc != TK_OK) return rc;
        tk_time_fmt(out->rotated_at, at, sizeof at);
        return tk_err_set(e, TK_ECONFLICT, "invalid_grant",
                          "refresh token was already rotated at %s; its family was revoked", at);
    }
    if (!rotate) return TK_OK;
    memcpy(next.parent_id, out->id, sizeof next.parent_id);
    rc = tk_oauth_refresh_issue(db, k, &next, ttl_s, now_ms, new_tok, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "UPDATE oauth_refresh_tokens SET rotated_at = ?, replaced_by = ? "
                        "WHERE id = ? AND rotated_at IS NULL",
                        TK_ARGS(TK_INT(now_ms), TK_TEXT(next.id), TK_TEXT(out->id)), NULL, e);
    if (rc == TK_OK && tk_db_changes(db) != 1)
        rc = tk_err_set(e, TK_ECONFLICT, "conflict",
                        "refresh token was rotated by a concurrent request; retry");
    if (rc == TK_OK) {
        memcpy(out->id, next.id, sizeof out->id);
    } else {
        tk_wipe(new_tok, TK_ISSUED_MAX);
    }
    return rc;
}

/* ---- revocations ---- */

static tk_rc revocation_add(struct tk_db *db, const char *tenant_id, const char *what,
                            const char *value, int64_t now_ms, int64_t until_ms, struct tk_err *e)
{
    char id[TK_UUID_LEN + 1];
    tk_uuid7(id);
    return tk_db_exec(db,
                      "INSERT INTO oauth_revocations (id, tenant_id, what, value, created_at, "
                      "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                      TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id), TK_TEXT(what), TK_TEXT(value),
                              TK_INT(now_ms), TK_INT(until_ms)),
                      NULL, e);
}

tk_rc tk_oauth_revoke_family(struct tk_db *db, const char *tenant_id, const char *family_id,
                             int64_t now_ms, int64_t until_ms, struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db,
                          "UPDATE oauth_refresh_tokens SET revoked_at = ? "
                          "WHERE tenant_id = ? AND family_id = ? AND revoked_at IS NULL",
                          TK_ARGS(TK_INT(now_ms), TK_TEXT(tenant_id), TK_TEXT(family_id)), NULL, e);
    if (rc == TK_OK) rc = revocation_add(db, tenant_id, "family", family_id, now_ms, until_ms, e);
    return rc;
}

static tk_rc revoke_families(struct tk_db *db, const char *tenant_id, const char *column,
                             const char *value, int64_t now_ms, int64_t until_ms, int64_t *n,
                             struct tk_err *e)
{
    *n = 0;
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT DISTINCT family_id FROM oauth_refresh_tokens WHERE tenant_id = ? AND %s = ? "
             "AND revoked_at IS NULL",
             column);
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db, sql, TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(value)), &r, e);
    for (int i = 0; rc == TK_OK && i < tk_rows_count(r); i++) {
        rc = tk_oauth_revoke_family(db, tenant_id, tk_rows_text(r, i, 0), now_ms, until_ms, e);
        if (rc == TK_OK) (*n)++;
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_oauth_revoke_user(struct tk_db *db, const char *tenant_id, const char *user_id,
                           int64_t now_ms, int64_t until_ms, int64_t *n, struct tk_err *e)
{
    return revoke_families(db, tenant_id, "user_id", user_id, now_ms, until_ms, n, e);
}

tk_rc tk_oauth_revoke_client(struct tk_db *db, const char *tenant_id, const char *oauth_client_id,
                             int64_t now_ms, int64_t until_ms, int64_t *n, struct tk_err *e)
{
    return revoke_families(db, tenant_id, "oauth_client_id", oauth_client_id, now_ms, until_ms, n,
                           e);
}

tk_rc tk_oauth_revoke_jti(struct tk_db *db, const char *tenant_id, const char *jti, int64_t now_ms,
                          int64_t until_ms, struct tk_err *e)
{
    return revocation_add(db, tenant_id, "jti", jti, now_ms, until_ms, e);
}

tk_rc tk_oauth_revocations_read(struct tk_db *db, const char *after, int limit,
                                struct tk_rows **out, struct tk_err *e)
{
    return tk_db_exec(db,
                      "SELECT id, what, value, expires_at FROM oauth_revocations "
                      "WHERE id > ? ORDER BY id LIMIT ?",
                      TK_ARGS(TK_TEXT(after ? after : ""), TK_INT(limit)), out, e);
}

tk_rc tk_oauth_grants_purge(struct tk_db *db, int64_t now_ms, int64_t *n, struct tk_err *e)
{
    *n = 0;
    /* a code past its expiry answers "unknown" rather than "expired N s
     * ago" once dropped: keep codes a day for that sentence */
    tk_rc rc = tk_db_exec(db, "DELETE FROM oauth_revocations WHERE expires_at < ?",
                          TK_ARGS(TK_INT(now_ms)), NULL, e);
    if (rc == TK_OK) *n += tk_db_changes(db);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "DELETE FROM oauth_codes WHERE expires_at < ?",
                        TK_ARGS(TK_INT(now_ms - 86400LL * 1000)), NULL, e);
    if (rc == TK_OK) *n += tk_db_changes(db);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "DELETE FROM oauth_refresh_tokens WHERE expires_at IS NOT NULL AND "
                        "expires_at < ?",
                        TK_ARGS(TK_INT(now_ms - 86400LL * 1000)), NULL, e);
    if (rc == TK_OK) *n += tk_db_changes(db);
    return rc;
}
