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

#endif
