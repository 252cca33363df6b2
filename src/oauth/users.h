/*
 * users.h: a tenant's end users (the people who sign in on the
 * authorization server's login page), their browser sessions and their
 * consents (users.c). The cross-part function tk_oauth_consent_covers is in
 * oauth.h; this header is the users part's own, for its handlers, CLI-side
 * checks and tests. No HTTP here; writes run in the caller's transaction.
 *
 * Emails are stored lowercased (ASCII letters only are folded) and are
 * unique per tenant; one with surrounding whitespace is refused rather than
 * trimmed, so what an operator typed is what a user must type. Passwords
 * never reach this module: only their argon2id hashes (pwhash.h).
 */
#ifndef TK_USERS_H
#define TK_USERS_H

#include "oauth.h"
#include "pwhash.h"

#define TK_USER_EMAIL_MAX 254

/* Normalize the n bytes of s into out: TK_EINVAL (field "email") for
 * surrounding or inner whitespace, control characters, not exactly one
 * '@' with text on both sides, not UTF-8, shorter than 3 or longer than
 * TK_USER_EMAIL_MAX bytes. */
tk_rc tk_user_email_norm(const char *s, size_t n, char out[TK_USER_EMAIL_MAX + 1],
                         struct tk_err *e);
/* A password of n bytes: TK_PASSWORD_MIN..TK_PASSWORD_MAX bytes without
 * NUL (field "password"). The message never quotes it. */
tk_rc tk_user_password_check(const char *pw, size_t n, struct tk_err *e);
bool tk_user_status_valid(const char *s);

struct tk_user {
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char email[TK_USER_EMAIL_MAX + 1];
    char status[16];
    char password_hash[TK_PWHASH_MAX];
};

/* Insert a user (email normalized already, hash encoded): TK_ECONFLICT
 * "email_taken" when the tenant has that email. *out the user's JSON. */
tk_rc tk_user_create(struct tk_db *db, const char *tenant_id, const char *email,
                     const char *password_hash, char id_out[TK_UUID_LEN + 1], json_t **out,
                     struct tk_err *e);
/* The user's JSON ({id, email, status, created_at, updated_at,
 * last_login_at}: never the hash); TK_ENOTFOUND for another tenant's. */
tk_rc tk_user_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                  struct tk_err *e);
/* A page, newest first (status NULL: any; before: the cursor or NULL). */
tk_rc tk_user_list(struct tk_db *db, const char *tenant_id, const char *status, const char *before,
                   int limit, json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e);
/* Set status and/or the password hash (NULL: unchanged). Disabling or a
 * new password ends the user's sessions. *out the user's JSON. */
tk_rc tk_user_update(struct tk_db *db, const char *tenant_id, const char *id, const char *status,
                     const char *password_hash, json_t **out, struct tk_err *e);
/* The user of email (normalized) in tenant_id: TK_ENOTFOUND if none. */
tk_rc tk_user_find_email(struct tk_db *db, const char *tenant_id, const char *email,
                         struct tk_user *out, struct tk_err *e);
tk_rc tk_user_load(struct tk_db *db, const char *tenant_id, const char *id, struct tk_user *out,
                   struct tk_err *e);
tk_rc tk_user_login_noted(struct tk_db *db, const char *tenant_id, const char *id,
                          struct tk_err *e);

/* ---- sessions ---- */

/* A new session of user_id for ttl_s seconds: token_out the tku_ secret
 * (for the cookie), stored as a keyed hash. */
tk_rc tk_user_session_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *user_id, int ttl_s, char token_out[TK_ISSUED_MAX],
                             char id_out[TK_UUID_LEN + 1], struct tk_err *e);
struct tk_user_session {
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char user_id[TK_UUID_LEN + 1];
};
/* The live session of token (well-formed, checked by the caller) whose
 * user is active: TK_EAUTH (code unknown, ended, expired, user_disabled)
 * otherwise. */
tk_rc tk_user_session_find(struct tk_db *db, struct tk_keyring *k, const char *token, size_t len,
                           struct tk_user_session *out, struct tk_err *e);
/* End the session of token (no-op when unknown or ended). */
tk_rc tk_user_session_end(struct tk_db *db, struct tk_keyring *k, const char *token, size_t len,
                          struct tk_err *e);

/* ---- consents ---- */

/* Record that user_id allows client row oauth_client_id scopes: the union
 * with what was allowed before. */
tk_rc tk_oauth_consent_grant(struct tk_db *db, const char *tenant_id, const char *user_id,
                             const char *oauth_client_id, json_t *scopes, struct tk_err *e);
/* The catalogue's description of each of scopes in tenant_id: a new array
 * of {name, description} (description "" when not in the catalogue). */
tk_rc tk_oauth_scope_describe(struct tk_db *db, const char *tenant_id, json_t *scopes, json_t **out,
                              struct tk_err *e);

#endif
