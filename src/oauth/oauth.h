/*
 * oauth.h: the OAuth 2.1 authorization server's domain (issue 15). No HTTP
 * here: the handlers in src/api/oauth_*_api.c translate (oauth_api.h).
 *
 * Parts, each in its own files:
 *   keys.c, jwt.c     signing keys in the keyring, JWT signing and checking
 *   oclients.c        OAuth clients and the per-tenant scope catalogue
 *   users.c           end users (argon2id passwords), sessions, consents
 *   flows.c           authorization flows, stage by stage
 *   grants.c          codes, refresh tokens, revocations
 *
 * The tables are migrations 0010-0014. Functions that write run inside the
 * caller's transaction unless they say otherwise.
 */
#ifndef TK_OAUTH_H
#define TK_OAUTH_H

#include "../common/issued.h"
#include "../keyring/keyring.h"
#include "../store/store.h"

#include <jansson.h>
#include <openssl/evp.h>

/* Issued-secret kinds of the authorization server (issued.h has tka, tkr). */
#define TK_KIND_OAUTH_SECRET "tks"  /* a confidential OAuth client's secret */
#define TK_KIND_REGISTRATION "tkg"  /* RFC 7592 registration access token */
#define TK_KIND_USER_SESSION "tku"  /* an end user's browser session cookie */

#define TK_OAUTH_CLIENT_ID_MAX 512  /* a metadata document's URL at most */
#define TK_OAUTH_URI_MAX 2048       /* a redirect URI or resource */
#define TK_OAUTH_STATE_MAX 512
#define TK_OAUTH_CODE_TTL 60        /* seconds a code lives */

/* ---- signing keys (keys.c) ---- */

/* Register oauth_signing_keys.private_key for rewrap (once at start, after
 * connect_states.code_verifier: the order is append-only). */
tk_rc tk_oauth_keys_register_sealed(void);

/* ---- JWTs and JWKs (jwt.c) ----
 *
 * Compact JWS with ES256 (P-256, R||S signatures), RS256 (RSA
 * TK_JWT_RSA_BITS) or EdDSA (Ed25519). kid: the key's RFC 7638 thumbprint. */
#define TK_JWT_MAX 8192     /* bytes of a token the parser accepts */
#define TK_JWT_KID_MAX 64
#define TK_JWT_RSA_BITS 2048
enum tk_jwt_alg { TK_JWT_ALG_NONE = 0, TK_JWT_ES256, TK_JWT_RS256, TK_JWT_EDDSA };
/* "ES256" -> TK_JWT_ES256; anything else (NULL too) TK_JWT_ALG_NONE. */
enum tk_jwt_alg tk_jwt_alg_from_name(const char *name);
const char *tk_jwt_alg_name(enum tk_jwt_alg a); /* "none" when unknown */
/* base64url without padding: enc writes ceil(4n/3) chars + NUL; dec is
 * strict (alphabet, no padding, zero unused bits), false when not. */
size_t tk_jwt_b64_enc(const unsigned char *p, size_t n, char *out);
bool tk_jwt_b64_dec(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen);
/* A new key pair: *pkey (EVP_PKEY_free it), *jwk the public JWK with kid,
 * alg and use "sig" (json_decref it), kid its thumbprint. */
tk_rc tk_jwt_key_generate(enum tk_jwt_alg alg, EVP_PKEY **pkey, json_t **jwk,
                          char kid[TK_JWT_KID_MAX], struct tk_err *e);
/* The public members of pkey's JWK (kty, crv, x, y / n, e), new reference. */
tk_rc tk_jwt_jwk_public(EVP_PKEY *pkey, json_t **out, struct tk_err *e);
/* RFC 7638 thumbprint (SHA-256, base64url) of a public JWK. */
tk_rc tk_jwt_thumbprint(json_t *jwk, char out[TK_JWT_KID_MAX], struct tk_err *e);
/* The public key of a JWK, which must fit alg (kty, crv, sizes). */
tk_rc tk_jwt_key_from_jwk(json_t *jwk, enum tk_jwt_alg alg, EVP_PKEY **out, struct tk_err *e);
/* A private key as PKCS#8 DER (tk_secret_free it), and back (must fit alg). */
tk_rc tk_jwt_key_export(EVP_PKEY *pkey, struct tk_secret **der, struct tk_err *e);
tk_rc tk_jwt_key_import(const struct tk_secret *der, enum tk_jwt_alg alg, EVP_PKEY **out,
                        struct tk_err *e);
/* Sign claims (a JSON object, not stolen) with header {alg, kid, typ};
 * *out is malloc'd. */
tk_rc tk_jwt_sign(EVP_PKEY *key, enum tk_jwt_alg alg, const char *kid, const char *typ,
                  json_t *claims, char **out, struct tk_err *e);
/* A parsed, not yet checked token. */
struct tk_jwt {
    json_t *header, *claims;      /* owned */
    enum tk_jwt_alg alg;          /* the header's */
    char kid[TK_JWT_KID_MAX];
    size_t signed_len;            /* bytes of "header.payload" */
    unsigned char sig[512];
    size_t sig_len;
};
/* Parse the n bytes of jwt strictly (see jwt.c); typ (NULL: any) is the
 * header typ required. TK_EINVAL "invalid_token", e->msg names the part. */
tk_rc tk_jwt_parse(const char *jwt, size_t n, const char *typ, struct tk_jwt *t,
                   struct tk_err *e);
/* Check t's signature (jwt: the same bytes) with key, whose alg is alg: a
 * header alg other than the key's is refused. */
tk_rc tk_jwt_check(const struct tk_jwt *t, const char *jwt, EVP_PKEY *key, enum tk_jwt_alg alg,
                   struct tk_err *e);
void tk_jwt_clear(struct tk_jwt *t);

/* ---- signing key rows (keys.c) ---- */

/* A row of oauth_signing_keys without its private key. Times in ms, 0 for
 * NULL. */
struct tk_oauth_key {
    char id[TK_UUID_LEN + 1];
    char kid[TK_JWT_KID_MAX];
    enum tk_jwt_alg alg;
    json_t *jwk; /* the public JWK, owned */
    int64_t generation, created_at, active_at, retired_at, unpublish_at;
};
void tk_oauth_key_clear(struct tk_oauth_key *k);
/* At now: "pending" (published, not signing yet), "active", "retired"
 * (published, no longer signing), "unpublished". */
const char *tk_oauth_key_status(const struct tk_oauth_key *k, int64_t now);
#define TK_OAUTH_KEYS_MAX 64
/* Every row (at most TK_OAUTH_KEYS_MAX, newest first) into *out (n of
 * them; free each with tk_oauth_key_clear, then the array). A row that is
 * not well-formed is skipped with a warning. */
tk_rc tk_oauth_keys_list(struct tk_db *db, struct tk_oauth_key **out, int *n, struct tk_err *e);
/* Open the private key of row id (alg) with the keyring. */
tk_rc tk_oauth_key_private(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                           const char *id, enum tk_jwt_alg alg, EVP_PKEY **out,
                           struct tk_err *e);
/* A rotation: a new key of alg, published now, signing from active_at;
 * every key still signing (or due to) is retired at active_at and stays
 * published keep_ms longer; rows already unpublished are deleted. */
struct tk_oauth_rotate {
    enum tk_jwt_alg alg;
    int64_t now, active_at, keep_ms;
    /* > 0: only when the newest key was created before this time; -1: only
     * when there is no key; 0: always. Otherwise TK_ECONFLICT "not_due". */
    int64_t due_before;
    /* Called in the rotation's transaction before commit (the event). */
    tk_rc (*in_tx)(void *arg, struct tk_db *db, const struct tk_oauth_key *created,
                   struct tk_err *e);
    void *arg;
};
/* In its own transaction. Two nodes at once: one wins, the other gets
 * TK_ECONFLICT "rotate_race" (a key generation is unique). *out: the new
 * row (tk_oauth_key_clear it). */
tk_rc tk_oauth_keys_rotate(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                           const struct tk_oauth_rotate *o, struct tk_oauth_key *out,
                           struct tk_err *e);

/* ---- OAuth clients (oclients.c) ---- */

struct tk_oauth_client {
    char id[TK_UUID_LEN + 1];           /* the row */
    char tenant_id[TK_UUID_LEN + 1];
    char client_id[TK_OAUTH_CLIENT_ID_MAX];
    char name[128];
    bool confidential;
    char application_type[8];           /* web | native */
    char auth_method[24];               /* client_secret_basic | client_secret_post | none */
    char status[16];                    /* active | disabled */
    char origin[24];                    /* operator | dynamic | metadata_document */
    bool rotate_refresh;                /* always true for public clients */
    json_t *redirect_uris;              /* arrays of strings, owned */
    json_t *grant_types;
    json_t *scopes;                     /* allowed */
    json_t *default_scopes;
};
/* Free the arrays (the struct itself is the caller's). */
void tk_oauth_client_clear(struct tk_oauth_client *c);

/* The client whose client_id is client_id, in any tenant (the tenant
 * comes from the client). TK_ENOTFOUND when there is none. Metadata
 * documents are fetched by the API layer (tk_api_oauth_client_resolve). */
tk_rc tk_oauth_client_find(struct tk_db *db, const char *client_id, struct tk_oauth_client *out,
                           struct tk_err *e);

/* ---- users, sessions, consents (users.c) ---- */

/* Whether user_id has consented to client row oauth_client_id for every
 * scope of scopes. */
tk_rc tk_oauth_consent_covers(struct tk_db *db, const char *tenant_id, const char *user_id,
                              const char *oauth_client_id, json_t *scopes, bool *covered,
                              struct tk_err *e);

/* ---- flows (flows.c) ---- */

struct tk_oauth_flow {
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char oauth_client_id[TK_UUID_LEN + 1];
    char client_id[TK_OAUTH_CLIENT_ID_MAX];
    char redirect_uri[TK_OAUTH_URI_MAX];
    json_t *scopes;                     /* owned */
    char oauth_state[TK_OAUTH_STATE_MAX];
    char code_challenge[129];           /* 43..128 base64url characters */
    char code_challenge_method[8];
    char resource[TK_OAUTH_URI_MAX];
    char nonce[TK_OAUTH_STATE_MAX];
    char user_id[TK_UUID_LEN + 1];      /* "" before login */
    char stage[24];
    char status[16];                    /* active | completed | failed */
    int64_t created_at;                 /* ms */
    int64_t expires_at;                 /* ms: created_at + oauth_flow_ttl (0: none); past
                                           it the login page and the code issue refuse */
};
void tk_oauth_flow_clear(struct tk_oauth_flow *f);

/* The flow id of tenant_id (NULL: any tenant). TK_ENOTFOUND otherwise. */
tk_rc tk_oauth_flow_get(struct tk_db *db, const char *tenant_id, const char *id,
                        struct tk_oauth_flow *out, struct tk_err *e);

/* ---- codes, refresh tokens, revocations (grants.c) ---- */

/* Issue the authorization code of flow f (consented by f->user_id):
 * code_out receives the tka_ secret, shown once (it goes into the
 * redirect). Inside the caller's transaction. */
tk_rc tk_oauth_code_issue(struct tk_db *db, struct tk_keyring *k, const struct tk_oauth_flow *f,
                          char code_out[TK_ISSUED_MAX], struct tk_err *e);

/* The lifetime of the codes issued from now on, in seconds (the
 * oauth_code_ttl setting, 1..600; TK_OAUTH_CODE_TTL until set). */
void tk_oauth_code_ttl_set(int seconds);
int tk_oauth_code_ttl(void);

/* A code as stored. */
struct tk_oauth_code {
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char flow_id[TK_UUID_LEN + 1];
    char oauth_client_id[TK_UUID_LEN + 1];
    char family_id[TK_UUID_LEN + 1];    /* what was issued from it ("" before) */
    int64_t created_at, expires_at, used_at; /* ms; used_at 0: unused */
};

/* Redeem the code tok (len bytes; kind and checksum checked first) for
 * client row oauth_client_id at now_ms, in the caller's transaction: the
 * code is consumed atomically (UPDATE ... WHERE used_at IS NULL, change
 * count 1) and gets a new refresh family (out->family_id). Refusals
 * (TK_EINVAL, e->code the RFC error "invalid_grant", e->msg the sentence):
 * malformed or unknown; "code expired N s ago"; issued to another client.
 * A code used before (or consumed by a concurrent request first) is
 * TK_ECONFLICT, e->msg "code already used at HH:MM:SS; tokens issued from
 * it were revoked": its family has been revoked in the caller's
 * transaction (tk_oauth_revoke_family, until now + access_ttl_s), which
 * the caller COMMITS before answering invalid_grant. out is filled
 * whenever the code was found. */
tk_rc tk_oauth_code_redeem(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                           const char *oauth_client_id, int64_t now_ms, int access_ttl_s,
                           struct tk_oauth_code *out, struct tk_err *e);

/* ---- the token endpoint's parameters (tokenform.c: no store) ---- */

#define TK_OAUTH_SCOPE_PARAM_MAX 2048 /* bytes of a scope parameter */
#define TK_OAUTH_SCOPE_PARAM_COUNT 64  /* scopes in one parameter */

/* Whether array a holds the string s. */
bool tk_oauth_strs_has(json_t *a, const char *s);
/* The strings of a, space-separated (malloc'd). */
char *tk_oauth_scope_join(json_t *a);
/* A scope parameter as a new array of its scopes, duplicates dropped;
 * NULL with e (invalid_scope, naming the position) for more than
 * TK_OAUTH_SCOPE_PARAM_MAX bytes or TK_OAUTH_SCOPE_PARAM_COUNT scopes, or a character
 * outside RFC 6749's scope-token set. */
json_t *tk_oauth_scope_parse(const char *s, struct tk_err *e);
/* Every scope of want is in allowed; else false with e (invalid_scope):
 * "scope 'admin:all' is not allowed for <whose>; allowed: a b". */
bool tk_oauth_scope_subset(json_t *want, json_t *allowed, const char *whose, struct tk_err *e);
/* An RFC 8707 resource: an absolute URI (scheme "://"), ASCII without
 * spaces, no fragment, below TK_OAUTH_URI_MAX bytes; else false with e
 * (invalid_target). */
bool tk_oauth_token_resource_check(const char *s, struct tk_err *e);

/* PKCE (RFC 7636) at the token endpoint: challenge and verifier as the
 * flow and the request carry them (NULL or "" when absent). Only S256.
 * TK_OK, or TK_EINVAL with e->code "invalid_grant" or "invalid_request"
 * and the sentence ("code_verifier does not match code_challenge"; a
 * verifier without a challenge; a challenge without a verifier; a verifier
 * that is not 43..128 unreserved characters). */
tk_rc tk_oauth_pkce_verify(const char *challenge, const char *method, const char *verifier,
                          struct tk_err *e);

/* A refresh token as stored (scopes owned: tk_oauth_refresh_clear). */
struct tk_oauth_refresh {
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char family_id[TK_UUID_LEN + 1];
    char parent_id[TK_UUID_LEN + 1];
    char flow_id[TK_UUID_LEN + 1];
    char oauth_client_id[TK_UUID_LEN + 1];
    char user_id[TK_UUID_LEN + 1];
    json_t *scopes;
    char resource[TK_OAUTH_URI_MAX];
    int64_t created_at, expires_at;     /* expires_at 0: never */
    int64_t rotated_at, revoked_at;     /* 0: not */
};
void tk_oauth_refresh_clear(struct tk_oauth_refresh *t);

/* Issue a refresh token (tkr_) for t's tenant, family, client, user, flow,
 * scopes and resource (t->parent_id "" for the first of a family), living
 * ttl_s seconds (0: no expiry); t->id and t->created_at/expires_at are
 * filled, tok_out receives the secret. In the caller's transaction. */
tk_rc tk_oauth_refresh_issue(struct tk_db *db, struct tk_keyring *k, struct tk_oauth_refresh *t,
                             int ttl_s, int64_t now_ms, char tok_out[TK_ISSUED_MAX],
                             struct tk_err *e);

/* The refresh_token grant, in the caller's transaction (the row locked).
 * The token tok must be of client row oauth_client_id, unrevoked,
 * unexpired. With rotate, the token is marked rotated and a successor of
 * the same family, scopes and resource is issued into new_tok (ttl_s);
 * without, new_tok is "" and the token stays valid. A token rotated less
 * than grace_s seconds ago gets a new sibling (same parent, new secret;
 * the successor stays valid too), so concurrent refreshes never revoke.
 * A token rotated longer ago is TK_ECONFLICT, e->msg "refresh token was
 * already rotated at ...; its family was revoked": the family is revoked in
 * the caller's transaction (commit it). Other refusals TK_EINVAL, e->code
 * "invalid_grant". out describes the token presented (its successor's id
 * in out->id when one was issued). */
tk_rc tk_oauth_refresh_redeem(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                              const char *oauth_client_id, int64_t now_ms, bool rotate,
                              int grace_s, int ttl_s, int access_ttl_s,
                              struct tk_oauth_refresh *out, char new_tok[TK_ISSUED_MAX],
                              struct tk_err *e);

/* The refresh token tok as stored (introspection, revocation): TK_OK with
 * out filled, *active telling whether it would be accepted now (not
 * revoked, not expired, not rotated); TK_ENOTFOUND when unknown or not a
 * tkr_ token. */
tk_rc tk_oauth_refresh_find(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                            int64_t now_ms, struct tk_oauth_refresh *out, bool *active,
                            struct tk_err *e);

/* Revoke every refresh token of family_id and record a revocation row
 * (what "family") that lasts until until_ms (the last moment an access
 * token of the family could be valid). In the caller's transaction. */
tk_rc tk_oauth_revoke_family(struct tk_db *db, const char *tenant_id, const char *family_id,
                             int64_t now_ms, int64_t until_ms, struct tk_err *e);
/* Revoke every refresh family of user_id (a disabled user): its refresh
 * tokens and, through revocation rows until until_ms, the access tokens
 * issued from them. In the caller's transaction; *n the families. */
tk_rc tk_oauth_revoke_user(struct tk_db *db, const char *tenant_id, const char *user_id,
                           int64_t now_ms, int64_t until_ms, int64_t *n, struct tk_err *e);
/* The same for every refresh family of OAuth client row oauth_client_id
 * (a disabled or retired client). */
tk_rc tk_oauth_revoke_client(struct tk_db *db, const char *tenant_id, const char *oauth_client_id,
                             int64_t now_ms, int64_t until_ms, int64_t *n, struct tk_err *e);
/* Record the revocation of an access token's jti until its exp. */
tk_rc tk_oauth_revoke_jti(struct tk_db *db, const char *tenant_id, const char *jti,
                          int64_t now_ms, int64_t until_ms, struct tk_err *e);
/* Revocation rows with id > after (""), oldest first, at most limit:
 * columns id, what, value, expires_at. */
tk_rc tk_oauth_revocations_read(struct tk_db *db, const char *after, int limit,
                                struct tk_rows **out, struct tk_err *e);
/* Drop revocation rows, codes and refresh tokens past their expiry
 * (before now_ms); *n the rows dropped. */
tk_rc tk_oauth_grants_purge(struct tk_db *db, int64_t now_ms, int64_t *n, struct tk_err *e);

/* ---- the revocation set (revset.c) ----
 *
 * In memory, per node: revoked access-token jtis and refresh families,
 * each with the time after which it no longer matters. Filled from
 * oauth_revocations by a poller; read on every introspection (a
 * read-locked hash lookup, no store). */
struct tk_revset;
struct tk_revset *tk_revset_new(void);
void tk_revset_free(struct tk_revset *s);
/* what is "jti" or "family"; a later expiry of the same entry wins. */
void tk_revset_add(struct tk_revset *s, const char *what, const char *value, int64_t expires_at);
bool tk_revset_has(struct tk_revset *s, const char *what, const char *value, int64_t now_ms);
/* Forget entries that expired before now_ms; returns how many. */
size_t tk_revset_purge(struct tk_revset *s, int64_t now_ms);
size_t tk_revset_size(struct tk_revset *s);

#endif
