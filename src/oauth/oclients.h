/*
 * oclients.h: OAuth clients and the per-tenant scope catalogue (issue 15
 * item 2), beyond what oauth.h declares for the other parts.
 *
 * A client is described by a "spec", a JSON object of its metadata: name,
 * client_type (confidential | public), application_type (web | native),
 * token_endpoint_auth_method, redirect_uris, grant_types, scopes,
 * default_scopes, rotate_refresh, status. tk_oauth_client_normalize fills
 * the defaults and checks the whole spec (the combinations as well as each
 * member), so that create, update and dynamic registration share one rule
 * set; scopes must also exist in the tenant's catalogue
 * (tk_oauth_scopes_exist).
 *
 * client_id: for clients made by an operator or by dynamic registration it
 * is the row's id (a UUIDv7); for a client ID metadata document it is the
 * document's URL. A confidential client's secret is an issued secret
 * (tks_), the registration access token of a dynamically registered client
 * is one too (tkg_): both stored as keyed hashes (tk_keyring_hash), shown
 * once. Every write that changes a client bumps its tenant's auth epoch
 * (*seq: hand it to tk_api_authcache_changed after the commit), so cached
 * authentications and cached clients are dropped on every node.
 * Functions that write run inside the caller's transaction.
 */
#ifndef TK_OCLIENTS_H
#define TK_OCLIENTS_H

#include "../operators/operators.h"
#include "oauth.h"

#define TK_OAUTH_SCOPE_MAX 128         /* bytes of a scope name */
#define TK_OAUTH_SCOPE_DESC_MAX 512    /* bytes of its description */
#define TK_OAUTH_CATALOG_MAX 1000      /* scopes of one tenant */
#define TK_OAUTH_CLIENT_SCOPES_MAX 100 /* allowed scopes of one client */
#define TK_OAUTH_REDIRECTS_MAX 20      /* redirect URIs of one client */
#define TK_OAUTH_CLIENT_NAME_MAX 128

/* RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ), here 1 to
 * TK_OAUTH_SCOPE_MAX bytes. */
bool tk_oauth_scope_name_valid(const char *s, size_t n);

/* Check one redirect URI (n bytes): absolute, printable ASCII, no
 * fragment, no user info; https with a host; http only to a loopback host
 * (127.0.0.1, [::1], localhost) and only for a native app; a private-use
 * scheme (RFC 8252 §7.1: with a dot, "com.example.app:/cb") only for a
 * native app. TK_EINVAL with field "redirect_uris" and a sentence. */
tk_rc tk_oauth_redirect_uri_check(const char *uri, size_t n, bool native, struct tk_err *e);
/* Whether uri is http to a loopback host or a private-use scheme: what
 * only a native app may register. */
bool tk_oauth_redirect_uri_native(const char *uri);

/* The value of an "Authorization: Basic" header after "Basic ": base64
 * of client_id ":" client_secret, each form-urlencoded first (RFC 6749
 * §2.3.1), decoded into id and secret (NUL-terminated, at most idcap and
 * secretcap bytes with the NUL). false when malformed, too long, with a
 * %00, or with an empty id (secret wiped). */
bool tk_oauth_basic_parse(const char *value, char *id, size_t idcap, char *secret,
                          size_t secretcap);

/* Fill spec's defaults and check it whole: TK_OK or TK_EINVAL naming the
 * field (invalid_field, missing_field). Defaults: client_type from the
 * auth method ("none": public; else confidential), the auth method from
 * the type (client_secret_basic / none), application_type web, grant_types
 * ["authorization_code", "refresh_token"], scopes and default_scopes [],
 * rotate_refresh true, status active. */
tk_rc tk_oauth_client_normalize(json_t *spec, struct tk_err *e);

/* ---- the scope catalogue ---- */

/* Every name of the array names exists in tenant_id's catalogue, else
 * TK_EINVAL field (e.g. "scopes") naming the first missing one. */
tk_rc tk_oauth_scopes_exist(struct tk_db *db, const char *tenant_id, json_t *names,
                            const char *field, struct tk_err *e);
/* {id, name, description, created_at, updated_at}. TK_ECONFLICT
 * scope_exists for a name the tenant has; scope_limit past
 * TK_OAUTH_CATALOG_MAX. */
tk_rc tk_oauth_scope_create(struct tk_db *db, const char *tenant_id, const char *name,
                            const char *description, json_t **out, struct tk_err *e);
tk_rc tk_oauth_scope_list(struct tk_db *db, const char *tenant_id, const char *before, int limit,
                          json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e);
tk_rc tk_oauth_scope_update(struct tk_db *db, const char *tenant_id, const char *id,
                            const char *description, json_t **out, struct tk_err *e);
/* Delete a scope no client allows: TK_ECONFLICT scope_in_use (e->msg
 * names up to 5 clients) otherwise. */
tk_rc tk_oauth_scope_delete(struct tk_db *db, const char *tenant_id, const char *id,
                            struct tk_err *e);

/* ---- clients ---- */

/* Insert a client of tenant_id from a normalized spec (scopes checked).
 * origin: operator | dynamic. A confidential client gets a secret
 * (secret_out, tks_, shown once); with reg_out a registration access token
 * (tkg_) too. *out the client's JSON (without secrets). */
tk_rc tk_oauth_client_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             json_t *spec, const char *origin, char secret_out[TK_ISSUED_MAX],
                             char reg_out[TK_ISSUED_MAX], char id_out[TK_UUID_LEN + 1],
                             json_t **out, struct tk_err *e);
/* The client {id, client_id, name, client_type, application_type,
 * token_endpoint_auth_method, redirect_uris, grant_types, scopes,
 * default_scopes, rotate_refresh, status, origin, secret_preview,
 * created_at, updated_at}; another tenant's or unknown: TK_ENOTFOUND. */
tk_rc tk_oauth_client_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                          struct tk_err *e);
/* The client's spec (the members a normalize checks), for an update. */
tk_rc tk_oauth_client_spec(struct tk_db *db, const char *tenant_id, const char *id, json_t **spec,
                           struct tk_err *e);
tk_rc tk_oauth_client_list(struct tk_db *db, const char *tenant_id, const char *before, int limit,
                           json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e);
/* Store a normalized spec over the client's. Turning public into
 * confidential issues a secret (secret_out, else ""); turning confidential
 * into public drops it. Bumps the epoch. */
tk_rc tk_oauth_client_update(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *id, json_t *spec, char secret_out[TK_ISSUED_MAX],
                             int64_t *seq, json_t **out, struct tk_err *e);
/* Delete the client. TK_ECONFLICT client_in_use when flows, consents or
 * tokens still refer to it (disable it instead). Bumps the epoch. */
tk_rc tk_oauth_client_delete(struct tk_db *db, const char *tenant_id, const char *id, int64_t *seq,
                             struct tk_err *e);
/* RFC 7592 delete: the client is deleted, or, when other rows refer to
 * it, disabled with its secret and registration token dropped. Bumps the
 * epoch. */
tk_rc tk_oauth_client_retire(struct tk_db *db, const char *tenant_id, const char *id, int64_t *seq,
                             struct tk_err *e);
/* A new secret for a confidential client (the old one stops at once);
 * TK_ECONFLICT public_client for a public one. Bumps the epoch. */
tk_rc tk_oauth_client_rotate_secret(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                                    const char *id, char secret_out[TK_ISSUED_MAX], int64_t *seq,
                                    json_t **out, struct tk_err *e);
/* Clients of tenant_id of origin (dynamic: the registration cap). */
tk_rc tk_oauth_client_count(struct tk_db *db, const char *tenant_id, const char *origin, int64_t *n,
                            struct tk_err *e);

/* The store half of authenticating a client secret by its keyed hash
 * (for tk_api_issued_lookup): unknown, client_disabled (TK_EAUTH) or p
 * filled (kind OAuth client, id the row's, client_id the client_id, name,
 * role "oauth_client"), *epoch the tenant's auth epoch. */
tk_rc tk_oauth_client_lookup_hash(struct tk_db *db, const char *hash, struct tk_principal *p,
                                  int64_t *expires_at, int64_t *epoch, struct tk_err *e);
/* The row of the dynamically registered client whose client_id is
 * client_id and whose registration token hashes to hash: tenant_out and
 * id_out; TK_ENOTFOUND otherwise (one answer for both). */
tk_rc tk_oauth_client_by_registration(struct tk_db *db, const char *client_id, const char *hash,
                                      char tenant_out[TK_UUID_LEN + 1],
                                      char id_out[TK_UUID_LEN + 1], struct tk_err *e);

/* ---- client ID metadata documents ---- */

/* Store the normalized spec of the metadata document at url as the client
 * of tenant_id whose client_id is url (origin metadata_document), to be
 * fetched again after expires_at (ms): inserted, or its metadata replaced
 * (an operator's status stays). Scopes are checked against the catalogue.
 * TK_ECONFLICT when a client of another origin has that client_id. */
tk_rc tk_oauth_client_put_document(struct tk_db *db, const char *tenant_id, const char *url,
                                   json_t *spec, int64_t expires_at, struct tk_err *e);
/* tk_oauth_client_find, with *expires_at the metadata_expires_at of a
 * metadata document's row (0 for other clients). */
tk_rc tk_oauth_client_find_ex(struct tk_db *db, const char *client_id, struct tk_oauth_client *out,
                              int64_t *expires_at, struct tk_err *e);

#endif
