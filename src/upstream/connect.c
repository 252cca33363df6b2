/* connect.c: the connect_states table and the pieces of the connect flow
 * that are not HTTP (see connect.h). */
#include "connect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tk_rc tk_connect_register_sealed(void)
{
    return tk_keyring_register_sealed("connect_states", "code_verifier");
}

/* ---- start ---- */

void tk_connect_started_clear(struct tk_connect_started *s)
{
    free(s->authorize_url);
    tk_wipe(s->state, sizeof s->state);
    memset(s, 0, sizeof *s);
}

tk_rc tk_connect_start(struct tk_db *db, struct tk_keyring *k, const char *tenant_id, json_t *app,
                       const char *label, const char *return_url, const char *redirect_uri,
                       int64_t now_ms, struct tk_connect_started *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    json_t *eff = json_object_get(app, "effective");
    const char *authorize = json_string_value(json_object_get(eff, "authorize_url"));
    const char *app_id = json_string_value(json_object_get(app, "id"));
    if (!authorize || !app_id)
        return tk_err_field(e, TK_ECONFLICT, "no_authorize_url", "app_id",
                            "provider app %s has no authorize_url: set one on the app "
                            "(PATCH /v1/provider-apps/{id}) to use the connect flow",
                            app_id ? app_id : "?");
    const char *sep =
        json_string_value(json_object_get(json_object_get(eff, "scopes"), "separator"));
    bool pkce = json_is_true(json_object_get(eff, "pkce"));

    unsigned char raw[32];
    tk_random(raw, sizeof raw);
    tk_connect_b64url(raw, sizeof raw, out->state);
    char hash[TK_HASH_HEX], key_id[17];
    tk_rc rc = tk_keyring_hash(k, out->state, strlen(out->state), hash, key_id, e);

    tk_uuid7(out->id);
    char verifier[TK_CONNECT_STATE_LEN + 1] = "", challenge[44] = "";
    char *sealed_text = NULL;
    if (rc == TK_OK && pkce) {
        tk_random(raw, sizeof raw);
        tk_connect_b64url(raw, sizeof raw, verifier);
        tk_connect_pkce_challenge(verifier, strlen(verifier), challenge);
        struct tk_secret *v = tk_secret_new(verifier, strlen(verifier));
        struct tk_seal_ad ad = {tenant_id, "connect_states", "code_verifier", out->id};
        struct tk_sealed *s = NULL;
        rc = tk_keyring_seal_value(k, v, &ad, &s, e);
        tk_secret_free(v);
        if (rc == TK_OK) sealed_text = tk_strdup(s->text);
        tk_sealed_free(s);
    }
    tk_wipe(raw, sizeof raw);
    tk_wipe(verifier, sizeof verifier);
    if (rc == TK_OK) {
        out->authorize_url = tk_connect_authorize_url(
            authorize, json_string_value(json_object_get(app, "client_id")), redirect_uri,
            out->state, json_object_get(app, "scopes"), sep && sep[0] ? sep[0] : ' ',
            pkce ? challenge : NULL);
        if (!out->authorize_url)
            rc = tk_err_field(e, TK_EINVAL, "invalid_field", "scopes",
                              "the authorization URL would be longer than %d bytes: fewer "
                              "scopes or a shorter authorize_url",
                              TK_CONNECT_RETURN_URL_MAX * 4);
    }
    out->expires_at = now_ms + TK_CONNECT_STATE_TTL_MS;
    out->pkce = pkce;
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "INSERT INTO connect_states (id, tenant_id, app_id, label, return_url, "
                        "state_hash, code_verifier, redirect_uri, created_at, expires_at, used_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                        TK_ARGS(TK_TEXT(out->id), TK_TEXT(tenant_id), TK_TEXT(app_id),
                                TK_TEXT(label), TK_TEXT(return_url), TK_TEXT(hash),
                                TK_TEXT(sealed_text), TK_TEXT(redirect_uri), TK_INT(now_ms),
                                TK_INT(out->expires_at)),
                        NULL, e);
    free(sealed_text);
    if (rc != TK_OK) tk_connect_started_clear(out);
    return rc;
}

/* ---- redeem ---- */

void tk_connect_state_clear(struct tk_connect_state *s)
{
    free(s->label);
    free(s->return_url);
    free(s->redirect_uri);
    free(s->verifier_sealed);
    memset(s, 0, sizeof *s);
}

static bool state_wellformed(const char *s, size_t len)
{
    if (len == 0 || len > TK_CONNECT_STATE_MAX || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s)
{
    return s ? tk_strdup(s) : NULL;
}

tk_rc tk_connect_redeem(struct tk_db *db, struct tk_keyring *k, const char *state, size_t len,
                        int64_t now_ms, struct tk_connect_state *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    if (!state_wellformed(state, len))
        return tk_err_field(e, TK_EINVAL, "state_malformed", "state",
                            "the state parameter is not one tokend issued (1 to %d of "
                            "A-Z a-z 0-9 - _)",
                            TK_CONNECT_STATE_MAX);
    char hash[TK_HASH_HEX], key_id[17];
    tk_rc rc = tk_keyring_hash(k, state, len, hash, key_id, e);
    if (rc != TK_OK) return rc;
    /* a read first: a state nobody issued (anybody can send one) costs no
     * write */
    struct tk_rows *r = NULL;
    rc = tk_db_exec(db,
                    "SELECT id, tenant_id, app_id, label, return_url, redirect_uri, "
                    "code_verifier, created_at, expires_at, used_at FROM connect_states "
                    "WHERE state_hash = ?",
                    TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_field(e, TK_ENOTFOUND, "state_unknown", "state",
                            "no connect flow was started with this state (or it was removed "
                            "after expiring): start again with POST /v1/connect/{app_id}/start");
    }
    out->found = true;
    snprintf(out->id, sizeof out->id, "%s", tk_rows_text(r, 0, 0));
    snprintf(out->tenant_id, sizeof out->tenant_id, "%s", tk_rows_text(r, 0, 1));
    snprintf(out->app_id, sizeof out->app_id, "%s", tk_rows_text(r, 0, 2));
    out->label = dup_or_null(tk_rows_text(r, 0, 3));
    out->return_url = dup_or_null(tk_rows_text(r, 0, 4));
    out->redirect_uri = dup_or_null(tk_rows_text(r, 0, 5));
    out->verifier_sealed = dup_or_null(tk_rows_text(r, 0, 6));
    out->created_at = tk_rows_int(r, 0, 7);
    out->expires_at = tk_rows_int(r, 0, 8);
    out->used_at = tk_rows_null(r, 0, 9) ? 0 : tk_rows_int(r, 0, 9);
    tk_rows_free(r);
    /* single use: of concurrent callbacks with this state, the one whose
     * UPDATE changes the row wins */
    rc = tk_db_exec(db,
                    "UPDATE connect_states SET used_at = ? WHERE id = ? AND used_at IS NULL "
                    "AND expires_at > ?",
                    TK_ARGS(TK_INT(now_ms), TK_TEXT(out->id), TK_INT(now_ms)), NULL, e);
    if (rc != TK_OK) return rc;
    if (tk_db_changes(db) == 1) {
        out->used_at = now_ms;
        return TK_OK;
    }
    if (!out->used_at) { /* redeemed by another callback since the read? */
        rc = tk_db_exec(db, "SELECT used_at FROM connect_states WHERE id = ?",
                        TK_ARGS(TK_TEXT(out->id)), &r, e);
        if (rc != TK_OK) return rc;
        if (tk_rows_count(r) == 1 && !tk_rows_null(r, 0, 0)) out->used_at = tk_rows_int(r, 0, 0);
        tk_rows_free(r);
    }
    char when[32];
    if (out->used_at) {
        tk_time_fmt(out->used_at, when, sizeof when);
        return tk_err_field(e, TK_EINVAL, "state_used", "state",
                            "this state was already used at %s: a state is good for one "
                            "callback only; start again",
                            when);
    }
    tk_time_fmt(out->expires_at, when, sizeof when);
    return tk_err_field(e, TK_EINVAL, "state_expired", "state",
                        "this state expired at %s (10 minutes after the start): start again", when);
}

tk_rc tk_connect_verifier(struct tk_db *db, struct tk_keyring *k, const struct tk_connect_state *s,
                          struct tk_secret **out, struct tk_open_failure *f, struct tk_err *e)
{
    *out = NULL;
    if (!s->verifier_sealed) return TK_OK;
    struct tk_sealed *v = tk_sealed_from_text(s->verifier_sealed);
    struct tk_seal_ad ad = {s->tenant_id, "connect_states", "code_verifier", s->id};
    tk_rc rc = tk_keyring_open_value(k, db, v, &ad, out, f, e);
    tk_sealed_free(v);
    return rc;
}

tk_rc tk_connect_prune(struct tk_db *db, int64_t now_ms, int64_t *deleted, struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db, "DELETE FROM connect_states WHERE expires_at < ?",
                          TK_ARGS(TK_INT(now_ms - 86400000)), NULL, e);
    if (deleted) *deleted = rc == TK_OK ? tk_db_changes(db) : 0;
    return rc;
}
