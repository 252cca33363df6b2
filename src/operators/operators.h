/*
 * operators.h: tenants and the operators who act on them.
 *
 * For now an operator is an operator token: a tko_ issued secret (see
 * common/issued.h) stored only as a keyed hash with a preview. Every /v1
 * request presents one as "Authorization: Bearer tko_..."; the tenant of the
 * token becomes the tenant of every query the request makes (DESIGN.md
 * §1.8), never a request parameter. People (users, passwords, sessions,
 * roles) join this module with the people issue.
 *
 * Authentication failures are precise for operators -- missing, malformed,
 * unknown, revoked, expired -- because the event log records them, and the
 * reason is also safe to return: it tells nothing about any other token.
 */
#ifndef TK_OPERATORS_H
#define TK_OPERATORS_H

#include "../common/issued.h"
#include "../keyring/keyring.h"
#include "../store/store.h"

#include <jansson.h>

/* Who a request acts as. Only operator tokens exist today; the other kinds
 * are declared for the issues that bring them (client tokens tkc_, operator
 * or user sessions, OAuth clients on /oauth2/ only). */
enum tk_principal_kind {
    TK_PRINCIPAL_NONE = 0,       /* nobody authenticated (public routes) */
    TK_PRINCIPAL_OPERATOR_TOKEN, /* Authorization: Bearer tko_... */
    TK_PRINCIPAL_CLIENT_TOKEN,   /* Authorization: Bearer tkc_... (to come) */
    TK_PRINCIPAL_SESSION,        /* an operator or user session (to come) */
    TK_PRINCIPAL_OAUTH_CLIENT,   /* an OAuth client, /oauth2/ only (to come) */
    TK_PRINCIPAL_KINDS           /* how many kinds */
};

/* Sets of kinds, as a route declares them (struct tk_route.kinds). */
#define TK_P_KIND(k) (1u << (k))
#define TK_P_OPERATOR TK_P_KIND(TK_PRINCIPAL_OPERATOR_TOKEN)
#define TK_P_CLIENT TK_P_KIND(TK_PRINCIPAL_CLIENT_TOKEN)
#define TK_P_SESSION TK_P_KIND(TK_PRINCIPAL_SESSION)
#define TK_P_OAUTH_CLIENT TK_P_KIND(TK_PRINCIPAL_OAUTH_CLIENT)

/* "operator token", "client token", "session", "OAuth client", "none". */
const char *tk_principal_kind_name(enum tk_principal_kind k);

struct tk_principal {
    enum tk_principal_kind kind;
    char id[TK_UUID_LEN + 1]; /* the operator token's id (later: client, session...) */
    char tenant_id[TK_UUID_LEN + 1];
    char name[255]; /* long enough for an email (254 bytes) */
    char role[16];  /* admin | operator | viewer; "client" for a client token */
    /* A client token's (clients.h): its client, the client's email ("" for
     * none), and when the token stops working (its expiry or the end of its
     * rotation grace; 0: never). Empty for other kinds. */
    char client_id[TK_UUID_LEN + 1];
    char email[255];
    int64_t expires_at;
    /* A console session's id when the principal is an operator token acting
     * through the admin console (src/console/session.c), else "". */
    char session_id[TK_UUID_LEN + 1];
};

/* The id of the tenant named "default", created if missing. */
tk_rc tk_tenant_default(struct tk_db *db, char id[TK_UUID_LEN + 1], struct tk_err *e);

/* Roles, most powerful first. */
bool tk_role_valid(const char *role);

/* Issue an operator token; expires_at 0 = never. token_out receives the
 * secret, shown once. */
tk_rc tk_optoken_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                        const char *name, const char *role, int64_t expires_at,
                        char token_out[TK_ISSUED_MAX],
                        char id_out[TK_UUID_LEN + 1], struct tk_err *e);

/* Tokens that are not revoked, in all tenants. */
tk_rc tk_optoken_count_active(struct tk_db *db, int64_t *n, struct tk_err *e);

/* Check an Authorization header value. On failure, e->rc is TK_EAUTH and
 * e->code is the reason: missing, malformed, unknown, revoked or expired.
 * The caller records the failure in the event log. tk_optoken_parse and
 * tk_optoken_lookup are its two halves. */
tk_rc tk_optoken_authenticate(struct tk_db *db, struct tk_keyring *k, const char *header,
                              struct tk_principal *p, struct tk_err *e);
/* The form of the header alone, without the store: missing, malformed
 * (scheme, length, characters, checksum). On success *tok and *len are the
 * token inside header. */
tk_rc tk_optoken_parse(const char *header, const char **tok, size_t *len, struct tk_err *e);
/* Look up a well-formed token: unknown, revoked, expired, or p filled. On
 * revoked and expired, p->tenant_id and p->id name the token's row
 * (for the event), but p is no principal. A read only: it never writes to
 * the store (last_used_at goes through struct tk_optoken_uses below), so a
 * held write lock never delays an authentication. */
tk_rc tk_optoken_lookup(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                        struct tk_principal *p, struct tk_err *e);

/* tk_optoken_lookup's store half, for a keyed hash of a well-formed token
 * (tk_keyring_hash): the same outcomes; on success also the token's expiry
 * (*expires_at, 0: never) and its tenant's auth epoch read in the same
 * statement (*epoch), for the authentication cache. */
tk_rc tk_optoken_lookup_hash(struct tk_db *db, const char *hash, struct tk_principal *p,
                             int64_t *expires_at, int64_t *epoch, struct tk_err *e);

/* Active (neither revoked nor expired) admin tokens of a tenant. */
tk_rc tk_optoken_count_admins(struct tk_db *db, const char *tenant_id, int64_t *n,
                              struct tk_err *e);

/* The tenant's tokens, newest first, as a JSON array of {id, name, role,
 * preview, created_at, last_used_at, expires_at, revoked_at}. */
tk_rc tk_optoken_list(struct tk_db *db, const char *tenant_id, json_t **out, struct tk_err *e);

/* Is the token token_id of tenant_id still good (neither revoked nor
 * expired at now_ms, nor deleted)? For long-lived requests (event
 * streams) that re-check the principal they started with. */
tk_rc tk_optoken_active(struct tk_db *db, const char *tenant_id, const char *token_id,
                        int64_t now_ms, bool *active, struct tk_err *e);

/* One token of the tenant in the form of tk_optoken_list; another
 * tenant's is TK_ENOTFOUND. */
tk_rc tk_optoken_get(struct tk_db *db, const char *tenant_id, const char *token_id, json_t **out,
                     struct tk_err *e);

/* Revoke a token of the principal's tenant; another tenant's is TK_ENOTFOUND.
 * Inside the caller's transaction: it bumps the tenant's auth epoch (*seq,
 * may be NULL, the new value; pass it to tk_api_authcache_changed after
 * the commit). */
tk_rc tk_optoken_revoke(struct tk_db *db, const char *tenant_id, const char *token_id,
                        int64_t *seq, struct tk_err *e);

/* Change the role of an active token of the tenant (another tenant's, or a
 * revoked one, is TK_ENOTFOUND); old_role receives the role it had. Inside
 * the caller's transaction; bumps the tenant's auth epoch like revoke
 * (*seq 0 and nothing written when the role is already that one). */
tk_rc tk_optoken_set_role(struct tk_db *db, const char *tenant_id, const char *token_id,
                          const char *role, char old_role[16], int64_t *seq, struct tk_err *e);

/*
 * Uses of operator tokens, for last_used_at. Authentication only notes a
 * use in memory (tk_optoken_use: a short lock, no store); a background
 * flush writes last_used_at coarsely: a token this table has not written
 * yet at the next flush, then at most once per TK_OPTOKEN_LAST_USED_MS;
 * tk_optoken_uses_flush(..., all=true) at stop writes whatever is pending.
 * The table is bounded (TK_OPTOKEN_USES_MAX tokens with a pending or recent
 * write); a use that finds it full is not noted (that token's last_used_at
 * waits for a later use). Writes never move last_used_at back (several
 * nodes). Thread-safe.
 */
#define TK_OPTOKEN_LAST_USED_MS 60000
#define TK_OPTOKEN_USES_MAX 768
struct tk_optoken_uses;
struct tk_optoken_uses *tk_optoken_uses_new(void);
/* The same for another table of issued secrets with an id and a
 * last_used_at column: "operator_tokens" or "client_tokens" (any other
 * name: NULL). */
struct tk_optoken_uses *tk_optoken_uses_new_for(const char *table);
void tk_optoken_uses_free(struct tk_optoken_uses *u); /* NULL: no-op */
/* Note that token_id authenticated at now_ms; false when the table is full. */
bool tk_optoken_use(struct tk_optoken_uses *u, const char *token_id, int64_t now_ms);
/* Write the due uses (all: every pending one) in one transaction; *written
 * (may be NULL) counts the tokens written. On failure nothing is marked
 * written: the next flush tries again. */
tk_rc tk_optoken_uses_flush(struct tk_optoken_uses *u, struct tk_db *db, int64_t now_ms, bool all,
                            int *written, struct tk_err *e);

/* ---- tenants (tenants.c) ---- */

#define TK_TENANT_NAME_MAX 63

/* A tenant name is a slug: 1 to 63 of [a-z0-9-], the first a letter or a
 * digit. len is the length of the value (a JSON string may hold a NUL). */
bool tk_tenant_name_valid(const char *name, size_t len);

/* Insert a tenant in the caller's transaction; a taken name is
 * TK_ECONFLICT "conflict" naming it. */
tk_rc tk_tenant_create(struct tk_db *db, const char *name, char id_out[TK_UUID_LEN + 1],
                       int64_t *created_at, struct tk_err *e);

/* The tenant {id, name, created_at}; an unknown id is TK_ENOTFOUND. */
tk_rc tk_tenant_get(struct tk_db *db, const char *id, json_t **out, struct tk_err *e);

/* Tenants newest first (by id), at most limit, older than the id before
 * (NULL: from the newest). next_out receives the id to pass as before for
 * the next page, or "" when this page is the last. */
tk_rc tk_tenant_list(struct tk_db *db, const char *before, int limit, json_t **out,
                     char next_out[TK_UUID_LEN + 1], struct tk_err *e);

/*
 * Auth epochs (migration 0005). Every write that takes a credential away or
 * changes what it may do (revoke, role change, a status change to come)
 * calls tk_tenant_auth_bump in its own transaction: the tenant's auth_seq
 * becomes the next value of the store-wide auth clock (*seq, may be NULL).
 * The clock's row stays locked until the commit, so epochs commit in
 * increasing order, and a node that asks for the tenants whose epoch is
 * above the highest it has seen (tk_tenant_auth_changes) misses none.
 * Outside a transaction, bump refuses (TK_EINTERNAL).
 */
tk_rc tk_tenant_auth_bump(struct tk_db *db, const char *tenant_id, int64_t *seq, struct tk_err *e);
/* The clock now: the highest epoch any tenant has. */
tk_rc tk_tenant_auth_clock(struct tk_db *db, int64_t *seq, struct tk_err *e);
/* Rows (id, auth_seq) of the tenants whose epoch is above after, lowest
 * first, at most limit; the caller frees them. */
tk_rc tk_tenant_auth_changes(struct tk_db *db, int64_t after, int limit, struct tk_rows **out,
                             struct tk_err *e);

/* The JSON form of a tenant. */
json_t *tk_tenant_json(const char *id, const char *name, int64_t created_at);

#endif
