/*
 * connect.h: the connect flow (issue 18 item 3), the domain half.
 *
 * POST /v1/connect/{app_id}/start makes a connect_states row and the
 * provider's authorization URL; the public GET /connect/callback redeems
 * the row by its state, exchanges the code at the provider's token
 * endpoint and stores the connection. This module owns the table and
 * everything that is not HTTP: the state (32 random bytes, base64url; the
 * row keeps only its keyed hash), PKCE (RFC 7636 S256; the verifier is
 * sealed bound to the row, registered for rewrap after the connections'
 * columns), the authorization URL (the app's effective authorize_url with
 * the provider's params already substituted), the token request of the
 * code exchange (client authentication as the app's effective client_auth:
 * Basic, form body or query; a GET with everything in the query for
 * providers whose token_method is GET) and the parsing of its answer.
 *
 * Single use: tk_connect_redeem marks the row used with
 * UPDATE ... WHERE used_at IS NULL AND expires_at > now and a change count
 * of 1; a replay, an expired or an unknown state is told apart afterwards
 * for the error and the event.
 */
#ifndef TK_CONNECT_H
#define TK_CONNECT_H

#include "../common/tk.h"
#include "../keyring/keyring.h"
#include "../store/store.h"

#include <jansson.h>

#define TK_CONNECT_STATE_TTL_MS (10 * 60 * 1000)
#define TK_CONNECT_STATE_LEN 43  /* base64url of 32 random bytes */
#define TK_CONNECT_STATE_MAX 128 /* longer is refused before any lookup */
#define TK_CONNECT_RETURN_URL_MAX 2048
#define TK_CONNECT_LABEL_MAX 128
#define TK_CONNECT_CODE_MAX 4096 /* an authorization code's bytes */

/* return_url: an absolute http or https URL with a host, printable ASCII
 * without spaces, no user info, no fragment, at most
 * TK_CONNECT_RETURN_URL_MAX bytes. TK_EINVAL "invalid_field" naming
 * return_url and why. */
tk_rc tk_connect_return_url_check(const char *url, struct tk_err *e);

/* base64url without padding of n bytes into out (4 * ceil(n / 3) + 1). */
void tk_connect_b64url(const unsigned char *p, size_t n, char *out);
/* The S256 code challenge of a verifier: base64url(SHA-256(verifier)),
 * 43 chars + NUL. */
void tk_connect_pkce_challenge(const char *verifier, size_t len, char out[44]);

/* The authorization URL: authorize_url + response_type=code, client_id,
 * redirect_uri, state, scope (joined with sep; omitted when there are
 * none) and, with a challenge, code_challenge + code_challenge_method=S256,
 * each percent-encoded, appended with '?' or '&'. malloc'd; NULL past
 * TK_CONNECT_RETURN_URL_MAX * 4 bytes. */
char *tk_connect_authorize_url(const char *authorize_url, const char *client_id,
                               const char *redirect_uri, const char *state, json_t *scopes,
                               char sep, const char *challenge);

struct tk_connect_started {
    char id[TK_UUID_LEN + 1]; /* the connect_states row */
    char *authorize_url;      /* malloc'd */
    char state[TK_CONNECT_STATE_LEN + 1];
    int64_t expires_at; /* ms */
    bool pkce;
};
void tk_connect_started_clear(struct tk_connect_started *s);

/* Make a state row for the tenant's app (JSON of tk_app_get: its
 * effective entry, client_id and scopes), in the caller's transaction if
 * any. TK_ECONFLICT "no_authorize_url" when the app has none;
 * TK_EUNAVAIL "sealed" while sealed. */
tk_rc tk_connect_start(struct tk_db *db, struct tk_keyring *k, const char *tenant_id, json_t *app,
                       const char *label, const char *return_url, const char *redirect_uri,
                       int64_t now_ms, struct tk_connect_started *out, struct tk_err *e);

/* A redeemed (or refused) row. */
struct tk_connect_state {
    bool found; /* a row matched the state (even if used or expired) */
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char app_id[TK_UUID_LEN + 1];
    char *label, *return_url, *redirect_uri; /* malloc'd; return_url may be NULL */
    char *verifier_sealed;                   /* malloc'd; NULL: no PKCE */
    int64_t created_at, expires_at, used_at;
};
void tk_connect_state_clear(struct tk_connect_state *s);

/* Redeem state (len bytes, from the callback's query) at now_ms on
 * db (not in a transaction): a read by the state's hash (an unknown state
 * writes nothing), then the single-use UPDATE. TK_OK: the row is now used,
 * out filled.
 * Otherwise out->found tells whether a row matched and e->code is the
 * reason: "state_malformed" (TK_EINVAL), "state_unknown" (TK_ENOTFOUND),
 * "state_used" or "state_expired" (TK_EINVAL; out filled, so that the
 * event goes to the row's tenant and the browser back to its return_url). */
tk_rc tk_connect_redeem(struct tk_db *db, struct tk_keyring *k, const char *state, size_t len,
                        int64_t now_ms, struct tk_connect_state *out, struct tk_err *e);

/* Open the row's sealed verifier. */
tk_rc tk_connect_verifier(struct tk_db *db, struct tk_keyring *k, const struct tk_connect_state *s,
                          struct tk_secret **out, struct tk_open_failure *f, struct tk_err *e);

/* The token request of the code exchange, ready for tk_out_submit. */
struct tk_connect_exchange {
    const char *method;
    char *url;
    char *headers[2];
    size_t nheaders;
    char *body; /* NULL for a GET */
    size_t body_len;
    const char *mask[4]; /* the client secret, the code, the verifier (borrowed) */
    size_t nmask;
};
/* effective: the app's effective entry (token_url, token_method,
 * client_auth); secret may be NULL (a public client: client_id in the
 * body); verifier NULL without PKCE. The strings of the caller must
 * outlive x (mask points into them). */
tk_rc tk_connect_exchange_build(json_t *effective, const char *client_id,
                                const struct tk_secret *secret, const char *code,
                                const char *redirect_uri, const struct tk_secret *verifier,
                                struct tk_connect_exchange *x, struct tk_err *e);
/* Wipe and free what build made. */
void tk_connect_exchange_free(struct tk_connect_exchange *x);

/* Why the token endpoint refused the code (status not 2xx): the
 * provider's OAuth error code ("invalid_grant", ...) when the body is JSON
 * with a valid one, else "http_<status>". */
void tk_connect_refusal_reason(long status, const char *body, size_t len, char out[40]);

/* An OAuth error code as RFC 6749 §4.1.2.1 allows (%x20-21 / %x23-5B /
 * %x5D-7E), 1 to 64 bytes. */
bool tk_connect_error_code_valid(const char *s);

/* Escape s for HTML text and attribute values into b. */
void tk_connect_html_escape(struct tk_buf *b, const char *s);

/* Register connect_states.code_verifier for rewrap (once, at start, after
 * the connections' columns). */
tk_rc tk_connect_register_sealed(void);

/* Delete rows that expired more than a day ago (housekeeping). */
tk_rc tk_connect_prune(struct tk_db *db, int64_t now_ms, int64_t *deleted, struct tk_err *e);

#endif
