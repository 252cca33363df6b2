/*
 * connections.h: upstream connections (issue 18 items 3, 4, 6): a tenant's
 * tokens at one provider app, and THE one refresh function.
 *
 * A connection (table connections, migration 0007) belongs to a tenant and
 * one of its provider apps. Its access and refresh tokens are sealed with
 * the keyring, bound to the row (AD tenant, "connections", "access_token" |
 * "refresh_token", id); registered for rewrap after
 * provider_apps.client_secret, in this order: connections.access_token,
 * connections.refresh_token (tk_conn_register_sealed, once at start).
 *
 * Times are ms since the epoch (0 or NULL: unknown / none). Every write
 * bumps `version` (a compare-and-swap fence: a refresh commits only if the
 * version it read is still the row's).
 *
 * Status (stored): ok | refresh_error | needs_reconnect | disabled.
 * expiring_soon is derived when shown (status ok and the access token
 * expires within refresh_ahead seconds, or has expired).
 *
 * How the engine finds due connections: column next_refresh_at (BIGINT ms,
 * NULL: never automatically -- needs_reconnect, disabled, or nothing to
 * refresh with) plus lease_owner / lease_until: the table is leasable with
 * the store's leases, spec TK_CONN_LEASE = {"connections", "next_refresh_at"}
 * (tk_lease_claim returns id, tenant_id, due). The engine claims, calls
 * tk_conn_refresh(..., TK_REFRESH_SCHEDULED, ...) for each, then
 * tk_lease_release. tk_conn_refresh never reads or writes the lease
 * columns; its commit is fenced by the version CAS (a success also commits
 * when the stored refresh token is still the one it sent), and it sets the next
 * next_refresh_at itself (tk_conn_next_refresh_at after a success; backoff
 * with jitter, Retry-After honoured, after a transient error; NULL after a
 * permanent failure).
 *
 * Settings (declared by conn in config.c; the engine reads them from cfg
 * and passes them in struct tk_refresh_ctx): refresh_ahead (s, 300),
 * refresh_ahead_percent (10), refresh_max_idle (s, 86400),
 * refresh_timeout (s, 30: the upstream call and parked waiters' bound),
 * refresh_workers (8: the API's refresh pool). refresh_backoff_max (s,
 * 3600) is the engine's setting; 0 in the ctx means 3600.
 */
#ifndef TK_CONNECTIONS_H
#define TK_CONNECTIONS_H

#include "../common/tk.h"
#include "../keyring/keyring.h"
#include "../outbound/outbound.h"
#include "../store/store.h"
#include "upstream.h"

#include <jansson.h>

#define TK_CONN_LABEL_MAX 128
#define TK_CONN_TOKEN_MAX 8192 /* bytes of an access or refresh token */
#define TK_CONN_REASON_MAX 64

/* The store leases' spec of the connections table (for the engine). */
#define TK_CONN_LEASE ((const struct tk_lease_spec){"connections", "next_refresh_at"})

enum tk_conn_status {
    TK_CONN_OK = 0,
    TK_CONN_REFRESH_ERROR,   /* the last attempt failed transiently; retried with backoff */
    TK_CONN_NEEDS_RECONNECT, /* permanent: no automatic attempts until reconnected */
    TK_CONN_DISABLED,
};
/* "ok", "refresh_error", "needs_reconnect", "disabled". */
const char *tk_conn_status_name(enum tk_conn_status s);

/* Tokens to store (plaintext; sealed by tk_conn_create). */
struct tk_conn_tokens {
    const char *access_token;   /* required, 1..TK_CONN_TOKEN_MAX bytes, no NUL/CR/LF */
    const char *refresh_token;  /* NULL: none (the connection cannot be refreshed) */
    int64_t expires_at;         /* ms, required (> 0): compute from expires_in or the
                                   effective default_lifetime (tk_conn_parse_answer does) */
    int64_t refresh_expires_at; /* ms; 0: unknown */
    json_t *scopes;             /* borrowed JSON array of strings; NULL: [] */
    const char *token_type;     /* NULL: "Bearer" */
};

/* The settings the refresh function and scheduling use. */
struct tk_refresh_ctx {
    struct tk_store *store;
    struct tk_keyring *keyring;
    const struct tk_catalog *catalog;
    struct tk_out *out;    /* the outbound client */
    int64_t timeout_ms;    /* refresh_timeout * 1000 (upstream call); 0: 30000 */
    int64_t ahead_s;       /* refresh_ahead; 0: 300 */
    int ahead_percent;     /* refresh_ahead_percent; 0: 10 */
    int64_t max_idle_s;    /* refresh_max_idle; 0: 86400 */
    int64_t backoff_max_s; /* refresh_backoff_max; 0: 3600 */
};

/* Create a connection of tenant for provider app app_id (which must exist
 * in the tenant: else TK_ENOTFOUND field app_id): label 1..128 printable,
 * tokens checked (TK_EINVAL naming the field) and sealed; status ok,
 * version 1, next_refresh_at from tk_conn_next_refresh_at. Runs in the
 * caller's transaction if db is in one (the connect callback), else as a
 * single INSERT. Used by import (POST /v1/connections) and by the connect
 * callback. 503 sealed comes back as TK_EUNAVAIL "sealed". */
tk_rc tk_conn_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                     const char *app_id, const char *label, const struct tk_conn_tokens *tok,
                     char id_out[TK_UUID_LEN + 1], struct tk_err *e);
/* The same with the scheduling settings (create uses the defaults). */
tk_rc tk_conn_create_ctx(struct tk_db *db, const struct tk_refresh_ctx *ctx, const char *tenant_id,
                         const char *app_id, const char *label, const struct tk_conn_tokens *tok,
                         char id_out[TK_UUID_LEN + 1], struct tk_err *e);

/* When to refresh a token expiring at expires_at (ms), issued at
 * issued_at: expires_at - max(ahead_s, ahead_percent% of the lifetime),
 * minus up to 10% of that margin of jitter; and no later than
 * issued_at + max_idle_s when refresh_expires_at is set (a refresh token
 * that expires when unused). Never before now_ms. */
int64_t tk_conn_next_refresh_at(const struct tk_refresh_ctx *ctx, int64_t issued_at,
                                int64_t expires_at, int64_t refresh_expires_at, int64_t now_ms);

/* A token endpoint's JSON answer (code exchange or refresh) parsed: access
 * token required; refresh token optional; expires_at = now + expires_in, or
 * now + effective.default_lifetime when absent; refresh_expires_at from
 * refresh_token_expires_in / x_refresh_token_expires_in / the effective
 * refresh_token_lifetime on a new refresh token; scopes from "scope" split
 * by the effective separator (NULL when absent). The strings point into
 * *holder (caller decrefs). TK_EUPSTREAM "invalid_answer" (not JSON, no
 * access_token) otherwise; the message never quotes a token. */
tk_rc tk_conn_parse_answer(const char *body, size_t len, const json_t *effective, int64_t now_ms,
                           struct tk_conn_tokens *out, json_t **holder, struct tk_err *e);

/* Show: the connection as JSON (id, app_id, provider, label, status
 * (expiring_soon derived), expires_at, refresh_expires_at, last_refresh_at,
 * next_refresh_at, last_error_code, last_error, failure_count, version,
 * scopes, has_refresh_token, created_at, updated_at): never a token.
 * Another tenant's or an unknown id: TK_ENOTFOUND. */
tk_rc tk_conn_get(struct tk_db *db, const struct tk_refresh_ctx *ctx, const char *tenant_id,
                  const char *id, json_t **out, struct tk_err *e);
/* List newest first; filters status (incl. expiring_soon) and app_id
 * (NULL: all); before/limit/next as tk_app_list. */
tk_rc tk_conn_list(struct tk_db *db, const struct tk_refresh_ctx *ctx, const char *tenant_id,
                   const char *status, const char *app_id, const char *before, int limit,
                   json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e);
tk_rc tk_conn_delete(struct tk_db *db, const char *tenant_id, const char *id, struct tk_err *e);
/* Register connections.access_token and connections.refresh_token for
 * rewrap (once at start, right after tk_app_register_sealed). */
tk_rc tk_conn_register_sealed(void);

/* The current access token, opened (no refresh). */
struct tk_conn_token {
    struct tk_secret *access_token; /* caller frees (tk_conn_token_free) */
    char token_type[32];
    int64_t expires_at, version, last_refresh_at;
    enum tk_conn_status status;
    char reason[TK_CONN_REASON_MAX]; /* last_error_code */
    char last_error[320];
    json_t *scopes; /* owned */
};
tk_rc tk_conn_token(struct tk_db *db, struct tk_keyring *k, const char *tenant_id, const char *id,
                    struct tk_conn_token *out, struct tk_open_failure *f, struct tk_err *e);
void tk_conn_token_free(struct tk_conn_token *t);

/* ---- the one refresh function ---- */

enum tk_refresh_source {
    TK_REFRESH_SCHEDULED = 0, /* the engine */
    TK_REFRESH_ON_DEMAND,     /* GET .../token found it too close to expiry */
    TK_REFRESH_REACTIVE,      /* POST .../unauthorized */
    TK_REFRESH_MANUAL,        /* POST .../refresh */
    TK_REFRESH_DEBUG,         /* POST .../refresh?debug=1 */
};
/* "scheduled", "on_demand", "reactive", "manual", "debug" (the event's source). */
const char *tk_refresh_source_name(enum tk_refresh_source s);

enum tk_refresh_outcome {
    TK_REFRESH_OK = 0, /* refreshed and committed */
    TK_REFRESH_ERROR,  /* transient: status refresh_error, next_attempt_at set */
    TK_REFRESH_FAILED, /* permanent: status needs_reconnect, reason set */
    TK_REFRESH_NONE,   /* no attempt (no event): see rc/err (not found, sealed,
                          store down, needs_reconnect already, no refresh token,
                          if_version no longer current, lost the version CAS) */
};
/* "ok", "error", "failed", "none". */
const char *tk_refresh_outcome_name(enum tk_refresh_outcome o);

struct tk_refresh_opts {
    const char *trace_id; /* the request's id for API triggers; NULL: one is made */
    /* > 0: refresh only if the row's version is still this one (reactive:
     * somebody else refreshed meanwhile -> NONE with rc TK_OK) */
    int64_t if_version;
    bool debug; /* fill result.debug with the masked exchange */
};

struct tk_refresh_result {
    enum tk_refresh_outcome outcome;
    tk_rc rc;                        /* TK_OK for OK/ERROR/FAILED; NONE: why (err) */
    struct tk_err err;               /* ERROR/FAILED: TK_EUPSTREAM "refresh_failed" / TK_ECONFLICT
                                        "needs_reconnect" with the sentence; NONE: the error */
    char reason[TK_CONN_REASON_MAX]; /* invalid_grant, invalid_client, expired_token,
                                        decrypt_failed, timeout, http_500, rate_limited,
                                        not_json, ... ("" on ok) */
    enum tk_conn_status status;      /* the connection's status after */
    int64_t version;                 /* the row's version after */
    int64_t expires_at;              /* of the current access token */
    int64_t next_attempt_at;         /* next_refresh_at after */
    int64_t latency_us;              /* of the upstream call */
    bool rotated;                    /* a new refresh token was stored */
    char provider[48];               /* the app's provider, once the row was read ("" before) */
    long http_status;                /* upstream status, 0 when none */
    json_t *upstream;                /* ERROR/FAILED: {status, content_type, body (masked,
                                        bounded)}; NULL otherwise */
    json_t *debug;                   /* with opts.debug: the masked exchange (tk_out_record) */
};
void tk_refresh_result_free(struct tk_refresh_result *r); /* frees upstream, debug */

/* THE refresh (blocking; for worker threads and the engine, never on an
 * HTTP or the outbound thread): read the row (one short store use), open
 * the sealed refresh token and client secret (a value that will not open:
 * FAILED decrypt_failed, nothing sent upstream), build the request from
 * the app's effective entry (client_secret_basic | _post | query; GET with
 * query params when token_method is GET; scopes when sent_on_refresh),
 * tk_out_send with no store connection held, classify, commit the new
 * tokens (and a rotated refresh token) in ONE transaction fenced by the
 * version CAS, and record exactly one event per attempt (kind refresh,
 * action refresh, outcome ok|error|failed, source, subject connection,
 * trace id, latency_us, masked detail). Always fills *res (free it). */
void tk_conn_refresh(const struct tk_refresh_ctx *ctx, const char *tenant_id, const char *conn_id,
                     enum tk_refresh_source source, const struct tk_refresh_opts *opts,
                     struct tk_refresh_result *res);

/* The same in two halves, for callers that drive the transfer themselves
 * (the engine's many concurrent refreshes through tk_out_submit):
 * prepare reads and opens, and either returns an op whose request to send
 * is tk_refresh_op_req(op) (TK_OK, *op set), or finishes at once (*op NULL,
 * *res filled: NONE, or FAILED decrypt_failed with its event recorded).
 * complete (on any thread but the outbound one: it writes to the store)
 * classifies the answer, commits, records the event, fills *res and frees
 * op. abandon frees an op that will not be completed (no event). */
struct tk_refresh_op;
void tk_conn_refresh_prepare(const struct tk_refresh_ctx *ctx, const char *tenant_id,
                             const char *conn_id, enum tk_refresh_source source,
                             const struct tk_refresh_opts *opts, struct tk_refresh_op **op,
                             struct tk_refresh_result *res);
const struct tk_out_req *tk_refresh_op_req(const struct tk_refresh_op *op);
void tk_conn_refresh_complete(const struct tk_refresh_ctx *ctx, struct tk_refresh_op *op,
                              const struct tk_out_result *ans, struct tk_refresh_result *res);
void tk_conn_refresh_abandon(struct tk_refresh_op *op);

/* Async, for a handler that parks its request: runs tk_conn_refresh on the
 * refresh pool's threads (tk_conn_pool_start) and calls done(res, arg)
 * there, once (res lives during the call only). TK_EUNAVAIL "busy" when
 * the pool's queue is full or stopping (done not called). */
struct tk_conn_pool;
tk_rc tk_conn_pool_start(const struct tk_refresh_ctx *ctx, int threads, struct tk_conn_pool **out,
                         struct tk_err *e);
/* Run what is queued (each done called) and join; NULL: no-op. */
void tk_conn_pool_stop(struct tk_conn_pool *p);
tk_rc tk_conn_refresh_async(struct tk_conn_pool *p, const char *tenant_id, const char *conn_id,
                            enum tk_refresh_source source, const struct tk_refresh_opts *opts,
                            void (*done)(const struct tk_refresh_result *res, void *arg), void *arg,
                            struct tk_err *e);

/* ---- request building and classification (pure; unit-tested) ---- */

/* Build the refresh request for an app's effective entry, client id and
 * secret (secret may be NULL: public client), the refresh token and the
 * app's scopes. *req and its strings live in *b (free with
 * tk_conn_req_free). mask lists refresh token and client secret. */
struct tk_conn_req {
    struct tk_out_req req;
    char *url, *body, *auth_header;
    const char *headers[3];
    const char *mask[2];
};
tk_rc tk_conn_build_request(const json_t *effective, const char *client_id,
                            const struct tk_secret *client_secret,
                            const struct tk_secret *refresh_token, const json_t *scopes,
                            int timeout_ms, struct tk_conn_req *out, struct tk_err *e);
void tk_conn_req_free(struct tk_conn_req *r);

/* Classify an answer: OK (2xx with JSON access_token), ERROR (transient:
 * timeout, connect failure, 5xx, 429, HTML or other non-JSON, too large)
 * or FAILED (invalid_grant, invalid_client, unauthorized_client,
 * expired_token, a 400/401 with an OAuth error). reason as above;
 * retry_after_s from Retry-After (seconds form), else 0. */
enum tk_refresh_outcome tk_conn_classify(const struct tk_out_result *ans, const json_t *effective,
                                         char reason[TK_CONN_REASON_MAX], int64_t *retry_after_s);

/* 1..TK_CONN_TOKEN_MAX printable ASCII characters (no NUL, CR, LF); *len set. */
bool tk_conn_token_valid(const char *s, size_t *len);
/* NULL, or an array of at most TK_APP_SCOPES_MAX strings of 1..TK_APP_SCOPE_MAX
 * printable characters without spaces or commas. */
bool tk_conn_scopes_valid(const json_t *a);
/* A malloc'd copy of url with every query value replaced by "***". */
char *tk_conn_mask_url(const char *url);

#endif
