/*
 * keys.c: the authorization server's signing keys in the store
 * (oauth_signing_keys, migration 0010). The private key is sealed with the
 * keyring (the row's place as additional data) as PKCS#8 DER; the public
 * JWK is in clear so that the JWKS answers while sealed.
 *
 * A rotation is one transaction: it reads the newest generation, inserts
 * the new key as generation + 1 (unique: of two nodes rotating at once,
 * one commits and the other gets a conflict), retires every key that still
 * signs at the new key's active_at, keeps them published keep_ms longer,
 * and deletes the rows already unpublished. The key pair is made before the
 * transaction begins (an RSA key takes a while), so the write lock is short.
 */
#include "oauth.h"

#include "../common/log.h"

#include <string.h>

tk_rc tk_oauth_keys_register_sealed(void)
{
    return tk_keyring_register_sealed("oauth_signing_keys", "private_key");
}

void tk_oauth_key_clear(struct tk_oauth_key *k)
{
    json_decref(k->jwk);
    memset(k, 0, sizeof *k);
}

const char *tk_oauth_key_status(const struct tk_oauth_key *k, int64_t now)
{
    if (k->unpublish_at && now >= k->unpublish_at) return "unpublished";
    if (k->retired_at && now >= k->retired_at) return "retired";
    if (now < k->active_at) return "pending";
    return "active";
}

#define KEY_COLS                                                                                   \
    "id, kid, alg, public_jwk, generation, created_at, active_at, retired_at, unpublish_at"

static bool row_key(struct tk_rows *r, int i, struct tk_oauth_key *k)
{
    memset(k, 0, sizeof *k);
    const char *id = tk_rows_text(r, i, 0), *kid = tk_rows_text(r, i, 1);
    const char *jwk = tk_rows_text(r, i, 3);
    k->alg = tk_jwt_alg_from_name(tk_rows_text(r, i, 2));
    if (!id || !kid || !jwk || strlen(id) != TK_UUID_LEN || !kid[0] ||
        strlen(kid) >= sizeof k->kid || k->alg == TK_JWT_ALG_NONE)
        return false;
    json_error_t je;
    k->jwk = json_loads(jwk, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(k->jwk)) {
        json_decref(k->jwk);
        k->jwk = NULL;
        return false;
    }
    memcpy(k->id, id, TK_UUID_LEN + 1);
    snprintf(k->kid, sizeof k->kid, "%s", kid);
    k->generation = tk_rows_int(r, i, 4);
    k->created_at = tk_rows_int(r, i, 5);
    k->active_at = tk_rows_int(r, i, 6);
    k->retired_at = tk_rows_null(r, i, 7) ? 0 : tk_rows_int(r, i, 7);
    k->unpublish_at = tk_rows_null(r, i, 8) ? 0 : tk_rows_int(r, i, 8);
    return true;
}

tk_rc tk_oauth_keys_list(struct tk_db *db, struct tk_oauth_key **out, int *n, struct tk_err *e)
{
    *out = NULL;
    *n = 0;
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " KEY_COLS " FROM oauth_signing_keys "
                          "ORDER BY generation DESC LIMIT ?",
                          TK_ARGS(TK_INT(TK_OAUTH_KEYS_MAX)), &r, e);
    if (rc != TK_OK) return rc;
    int cnt = tk_rows_count(r);
    struct tk_oauth_key *keys = tk_calloc((size_t)(cnt ? cnt : 1), sizeof *keys);
    int m = 0;
    for (int i = 0; i < cnt; i++) {
        if (row_key(r, i, &keys[m])) {
            m++;
        } else {
            tk_warn("oauth_signing_keys row %.40s is not well-formed; skipped",
                    tk_rows_text(r, i, 0) ? tk_rows_text(r, i, 0) : "?");
            tk_oauth_key_clear(&keys[m]);
        }
    }
    tk_rows_free(r);
    *out = keys;
    *n = m;
    return TK_OK;
}

static struct tk_seal_ad place(const char *tenant_id, const char *id)
{
    return (struct tk_seal_ad){tenant_id, "oauth_signing_keys", "private_key", id};
}

tk_rc tk_oauth_key_private(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                           const char *id, enum tk_jwt_alg alg, EVP_PKEY **out, struct tk_err *e)
{
    *out = NULL;
    struct tk_rows *r = NULL;
    tk_rc rc =
        tk_db_exec(db, "SELECT private_key FROM oauth_signing_keys WHERE id = ? AND tenant_id = ?",
                   TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1 || !tk_rows_text(r, 0, 0)) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "not_found", "no signing key %s", id);
    }
    struct tk_sealed *s = tk_sealed_from_text(tk_rows_text(r, 0, 0));
    tk_rows_free(r);
    struct tk_seal_ad ad = place(tenant_id, id);
    struct tk_secret *der = NULL;
    rc = tk_keyring_open_value(k, db, s, &ad, &der, NULL, e);
    tk_sealed_free(s);
    if (rc == TK_OK) rc = tk_jwt_key_import(der, alg, out, e);
    tk_secret_free(der);
    return rc;
}

tk_rc tk_oauth_keys_rotate(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                           const struct tk_oauth_rotate *o, struct tk_oauth_key *out,
                           struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    EVP_PKEY *pkey = NULL;
    json_t *jwk = NULL;
    struct tk_secret *der = NULL;
    struct tk_sealed *sealed = NULL;
    struct tk_rows *r = NULL;
    char *jwk_text = NULL;
    bool in_tx = false;
    tk_rc rc = tk_jwt_key_generate(o->alg, &pkey, &jwk, out->kid, e);
    if (rc == TK_OK) rc = tk_jwt_key_export(pkey, &der, e);
    EVP_PKEY_free(pkey);
    tk_uuid7(out->id);
    struct tk_seal_ad ad = place(tenant_id, out->id);
    if (rc == TK_OK) rc = tk_keyring_seal_value(k, der, &ad, &sealed, e);
    tk_secret_free(der);
    if (rc == TK_OK) {
        jwk_text = json_dumps(jwk, JSON_COMPACT);
        if (!jwk_text) rc = tk_err_set(e, TK_EINTERNAL, "internal", "cannot encode the JWK");
    }
    if (rc == TK_OK) rc = tk_db_begin(db, e);
    in_tx = rc == TK_OK;
    if (rc == TK_OK)
        rc = tk_db_exec(
            db,
            "SELECT COUNT(*), COALESCE(MAX(generation), 0), COALESCE(MAX(created_at), 0) "
            "FROM oauth_signing_keys",
            NULL, 0, &r, e);
    if (rc == TK_OK) {
        int64_t count = tk_rows_int(r, 0, 0), newest = tk_rows_int(r, 0, 2);
        out->generation = tk_rows_int(r, 0, 1) + 1;
        if (o->due_before < 0 && count > 0)
            rc = tk_err_set(e, TK_ECONFLICT, "not_due", "a signing key exists already");
        else if (o->due_before > 0 && count > 0 && newest >= o->due_before)
            rc = tk_err_set(e, TK_ECONFLICT, "not_due", "the newest signing key is recent enough");
    }
    out->alg = o->alg;
    out->created_at = o->now;
    out->active_at = o->active_at;
    if (rc == TK_OK) {
        rc = tk_db_exec(db,
                        "INSERT INTO oauth_signing_keys (id, tenant_id, kid, alg, public_jwk, "
                        "private_key, created_at, active_at, generation) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        TK_ARGS(TK_TEXT(out->id), TK_TEXT(tenant_id), TK_TEXT(out->kid),
                                TK_TEXT(tk_jwt_alg_name(o->alg)), TK_TEXT(jwk_text),
                                TK_TEXT(sealed->text), TK_INT(o->now), TK_INT(o->active_at),
                                TK_INT(out->generation)),
                        NULL, e);
        if (rc == TK_ECONFLICT)
            rc = tk_err_set(e, TK_ECONFLICT, "rotate_race",
                            "another node rotated the signing key at the same time");
    }
    /* what still signs (or would) stops when the new key starts */
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "UPDATE oauth_signing_keys SET retired_at = ?, unpublish_at = ? "
                        "WHERE id <> ? AND (retired_at IS NULL OR retired_at > ?)",
                        TK_ARGS(TK_INT(o->active_at), TK_INT(o->active_at + o->keep_ms),
                                TK_TEXT(out->id), TK_INT(o->active_at)),
                        NULL, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "DELETE FROM oauth_signing_keys "
                        "WHERE unpublish_at IS NOT NULL AND unpublish_at <= ?",
                        TK_ARGS(TK_INT(o->now)), NULL, e);
    if (rc == TK_OK) {
        out->jwk = jwk;
        jwk = NULL;
        if (o->in_tx) rc = o->in_tx(o->arg, db, out, e);
    }
    if (rc == TK_OK)
        rc = tk_db_commit(db, e);
    else if (in_tx)
        tk_db_rollback(db);
    if (rc != TK_OK) tk_oauth_key_clear(out);
    tk_rows_free(r);
    tk_sealed_free(sealed);
    free(jwk_text);
    json_decref(jwk);
    return rc;
}
