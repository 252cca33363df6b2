/*
 * clients.h: machine clients and their tokens (issue 14).
 *
 * A client is a machine that calls tokend (an agent fleet, a service): a
 * name, an email, a status (active | suspended | disabled) and metadata (an
 * object of strings). It holds client tokens (tkc_, the issued-secret
 * format of common/issued.h), stored only as a keyed hash and a preview and
 * shown once. Rotating a token issues its successor and lets the old one
 * work until a grace period ends; after that the old one counts as revoked.
 *
 * Validation says exactly why a token fails: missing, malformed (form or
 * checksum, decided without the store), unknown, revoked, expired,
 * client_inactive (the client is disabled) or client_suspended. Whitespace,
 * newlines and quotes around a token are stripped and reported as warnings
 * (tk_client_token_scan) instead of failing, since that is what agents get
 * wrong (field report 004).
 *
 * Every write that takes a credential away or changes what a validation
 * answers (revoke, rotate, a client's update) bumps the tenant's auth epoch
 * in the caller's transaction (*seq: hand it to tk_api_authcache_changed
 * after the commit). Functions that write must run inside a transaction.
 */
#ifndef TK_CLIENTS_H
#define TK_CLIENTS_H

#include "../common/issued.h"
#include "../keyring/keyring.h"
#include "../operators/operators.h"
#include "../store/store.h"

#include <jansson.h>

#define TK_CLIENT_NAME_MAX 128
#define TK_CLIENT_EMAIL_MAX 254
#define TK_CLIENT_META_KEYS 32
#define TK_CLIENT_META_KEY_MAX 64
#define TK_CLIENT_META_VALUE_MAX 512
#define TK_CLIENT_TOKEN_NAME_MAX 64
#define TK_CLIENT_TOKENS_MAX 100     /* tokens of one client not revoked */
#define TK_CLIENT_GRACE_MAX 2592000  /* 30 days */
#define TK_CLIENT_TOKEN_INPUT_MAX 1024 /* longest text a validation looks at */

/* "active", "suspended", "disabled". */
bool tk_client_status_valid(const char *status);

/* Check the members of a create (create true: name required) or an update
 * body: name, email (string or null), status, metadata. Unknown members are
 * the caller's (tk_api_only_members). TK_EINVAL naming the field. */
tk_rc tk_client_check(json_t *body, bool create, struct tk_err *e);

/* Insert a client of tenant_id from a checked body (status defaults to
 * active, metadata to {}); *out the client's JSON. */
tk_rc tk_client_create(struct tk_db *db, const char *tenant_id, json_t *body,
                       char id_out[TK_UUID_LEN + 1], json_t **out, struct tk_err *e);

/* The client {id, name, email, status, metadata, created_at, updated_at,
 * status_changed_at}; another tenant's or an unknown id is TK_ENOTFOUND. */
tk_rc tk_client_get(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                    struct tk_err *e);

/* Clients newest first, status NULL for all, at most limit, older than the
 * id before (NULL: from the newest); next_out "" on the last page. */
tk_rc tk_client_list(struct tk_db *db, const char *tenant_id, const char *status,
                     const char *before, int limit, json_t **out, char next_out[TK_UUID_LEN + 1],
                     struct tk_err *e);

/* Apply a checked update body. old_status receives the status before;
 * *seq the new auth epoch (0 when nothing changed and nothing was written);
 * *out the client after. */
tk_rc tk_client_update(struct tk_db *db, const char *tenant_id, const char *id, json_t *body,
                       char old_status[16], int64_t *seq, json_t **out, struct tk_err *e);

/* ---- tokens ---- */

/* Issue a token for client_id (of tenant_id; TK_ENOTFOUND otherwise);
 * expires_at 0 = never. token_out receives the secret, shown once; *out
 * the token's JSON (without the secret). TK_ECONFLICT token_limit past
 * TK_CLIENT_TOKENS_MAX tokens not revoked. */
tk_rc tk_client_token_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *client_id, const char *name, int64_t expires_at,
                             char token_out[TK_ISSUED_MAX], char id_out[TK_UUID_LEN + 1],
                             json_t **out, struct tk_err *e);

/* The client's tokens newest first: {id, client_id, name, preview, status
 * (active | rotating | revoked | expired), created_at, last_used_at,
 * expires_at, revoked_at, grace_ends_at, replaced_by}. */
tk_rc tk_client_token_list(struct tk_db *db, const char *tenant_id, const char *client_id,
                           json_t **out, struct tk_err *e);

/* Revoke a token (active or in its rotation grace) at once; bumps the
 * epoch. A revoked, unknown or another client's token is TK_ENOTFOUND. */
tk_rc tk_client_token_revoke(struct tk_db *db, const char *tenant_id, const char *client_id,
                             const char *token_id, int64_t *seq, struct tk_err *e);

/* Rotate an active token: a new one (same name; expires_in seconds, or
 * <= 0 for the old token's lifetime again) replaces it, and the old one
 * works for grace seconds more (0: revoked at once). A token already
 * rotated is TK_ECONFLICT already_rotated. *out the new token's JSON with
 * replaces and grace_ends_at; bumps the epoch. */
tk_rc tk_client_token_rotate(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                             const char *client_id, const char *token_id, int grace,
                             int64_t expires_in, char token_out[TK_ISSUED_MAX],
                             char id_out[TK_UUID_LEN + 1], int64_t *seq, json_t **out,
                             struct tk_err *e);

/* The store half of authenticating a well-formed client token by its
 * keyed hash (the shape of tk_optoken_lookup_hash, for the authentication
 * cache): unknown, revoked (also: its rotation grace ended), expired,
 * client_inactive, client_suspended (e->rc TK_EAUTH; p->id and
 * p->tenant_id, p->client_id name the row when there is one), or p filled
 * (kind client token, id the token's, name and email the client's, role
 * "client"), *expires_at when it stops working (expiry or grace end, the
 * earlier; 0: never) and *epoch its tenant's auth epoch. A read only. */
tk_rc tk_client_token_lookup_hash(struct tk_db *db, const char *hash, struct tk_principal *p,
                                  int64_t *expires_at, int64_t *epoch, struct tk_err *e);

/* ---- the form of a presented token, without the store ---- */

/* Warnings of tk_client_token_scan, as bits. */
enum {
    TK_CTW_LEADING_WHITESPACE = 1 << 0,  /* spaces or tabs before */
    TK_CTW_LEADING_NEWLINE = 1 << 1,     /* CR or LF before */
    TK_CTW_TRAILING_WHITESPACE = 1 << 2, /* spaces or tabs after */
    TK_CTW_TRAILING_NEWLINE = 1 << 3,    /* LF (or a lone CR) after */
    TK_CTW_TRAILING_CRLF = 1 << 4,       /* CR LF after */
    TK_CTW_SURROUNDING_QUOTES = 1 << 5,  /* "..." or '...' */
    TK_CTW_COUNT = 6
};
/* The code of warning bit i ("leading_whitespace", ...). */
const char *tk_client_warning_name(unsigned bit_index);
/* The warnings as a JSON array of codes. */
json_t *tk_client_warnings_json(unsigned warnings);

/* Strip whitespace, newlines and one pair of quotes around the n bytes of
 * in (in any nesting: ' "tkc_..." \n'), noting each in *warnings; then
 * check the rest is a well-formed tkc_ token (tk_issued_check). TK_OK with
 * *tok, *len the token inside in; else TK_EAUTH with e->code "missing"
 * (nothing left) or "malformed" (e->msg says what is wrong, never echoing
 * the token). More than TK_CLIENT_TOKEN_INPUT_MAX bytes is malformed. */
tk_rc tk_client_token_scan(const char *in, size_t n, const char **tok, size_t *len,
                           unsigned *warnings, struct tk_err *e);

/* ---- agents (agents.c) ----
 *
 * What a client runs: registered with its client token (idempotent per
 * client and logical_agent_id), then heartbeats. status in the JSON is
 * tokend's view, online or stale; reported_status is the agent's own. An
 * agent goes stale when no heartbeat came for stale_ms (the sweep, one
 * node at a time under a lease) and comes back with its next heartbeat;
 * each flip is a conditional UPDATE whose event (kind agent, action stale
 * or recovered) commits with it, so it is written once across nodes. */

#define TK_AGENT_ID_MAX 128
#define TK_AGENT_HOST_MAX 253
#define TK_AGENT_VERSION_MAX 64
#define TK_AGENT_STATUS_MAX 64

/* Check a register body (logical_agent_id, hostname, version: required)
 * or a heartbeat's status (NULL: absent, fine). TK_EINVAL naming the field. */
tk_rc tk_agent_check(json_t *body, struct tk_err *e);
tk_rc tk_agent_check_status(json_t *status, struct tk_err *e);

/* Register (or register again: hostname and version updated, a heartbeat)
 * the agent of client_id from a checked body; *out the agent's JSON. A
 * stale agent registering again comes back (its event with trace_id). */
tk_rc tk_agent_register(struct tk_db *db, const char *tenant_id, const char *client_id,
                        json_t *body, const char *trace_id, json_t **out, struct tk_err *e);

/* A heartbeat of agent_id from client_id (another client's or an unknown
 * agent: TK_ENOTFOUND). status NULL keeps the reported status. *recovered:
 * it was stale (its recovered event is written). */
tk_rc tk_agent_heartbeat(struct tk_db *db, const char *tenant_id, const char *client_id,
                         const char *agent_id, const char *status, const char *trace_id,
                         bool *recovered, struct tk_err *e);

/* Agents newest first, filtered by client_id and status (online | stale;
 * NULL: any), at most limit, older than before; next_out "" on the last page. */
/* A heartbeat noted in memory (agents_api.c), written later in a batch. */
struct tk_agent_beat {
    char id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char client_id[TK_UUID_LEN + 1];
    char status[TK_AGENT_STATUS_MAX + 1]; /* "" = keep the reported status */
    int64_t at;                           /* when it came (ms) */
};

/* Write n noted heartbeats in one transaction: last_heartbeat_at only moves
 * forward (a newer one written by another node wins); a stale agent comes
 * back (the conditional flip and its event, once across nodes). *recovered
 * the agents that came back. */
tk_rc tk_agent_beats_flush(struct tk_db *db, const struct tk_agent_beat *b, int n, int *recovered,
                           struct tk_err *e);

/* The owner of agent_id for the heartbeat cache: *found false when there is
 * no such agent; else its tenant, client, stale flag and last heartbeat. */
tk_rc tk_agent_owner(struct tk_db *db, const char *agent_id, bool *found,
                     char tenant_id[TK_UUID_LEN + 1], char client_id[TK_UUID_LEN + 1],
                     bool *stale, int64_t *last_ms, struct tk_err *e);

tk_rc tk_agent_list(struct tk_db *db, const char *tenant_id, const char *client_id,
                    const char *status, const char *before, int limit, json_t **out,
                    char next_out[TK_UUID_LEN + 1], struct tk_err *e);

/* Mark the agents whose last heartbeat is older than stale_ms as stale, at
 * most 500 a call, each with its event; *n how many. */
tk_rc tk_agent_sweep(struct tk_db *db, int64_t now_ms, int64_t stale_ms, int *n,
                     struct tk_err *e);

/* ---- the report (report.c) ----
 *
 * GET /v1/clients/{id}/report and tokend doctor client: {client, tokens,
 * agents, failures: {since, total, by_reason}, warnings: [{warnings,
 * preview, since, count}], conclusion}: the state, and what the events of
 * the last hour say, ending in one sentence that names the cause
 * ("client 'Acme Agents' was disabled at 09:12 by operator 'ops': every
 * token of it fails with client_inactive"). */
tk_rc tk_client_report(struct tk_db *db, const char *tenant_id, const char *client_id,
                       int64_t now_ms, json_t **out, struct tk_err *e);

/* Agents in all tenants, online and stale. */
tk_rc tk_agent_counts(struct tk_db *db, int64_t *online, int64_t *stale, struct tk_err *e);

#endif
