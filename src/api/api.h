/*
 * api.h: the daemon. tk_serve opens the store and keyring, starts the HTTP
 * server with the route table of this module's handlers, and runs until
 * SIGTERM or SIGINT, then stops accepting, lets in-flight requests finish
 * (shutdown_timeout) and exits 0.
 *
 * Handlers translate HTTP into calls of the domain modules and back; they
 * hold no SQL and no crypto of their own.
 */
#ifndef TK_API_H
#define TK_API_H

#include "../common/authcache.h"
#include "../common/metrics.h"
#include "../common/worker.h"
#include "../config/config.h"
#include "../http/http.h"
#include "../keyring/keyring.h"
#include "../operators/operators.h"
#include "../outbound/outbound.h"
#include "../store/store.h"
#include "oauth_api.h"
#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>

struct tk_catalog;

struct tk_app {
    const struct tk_config *cfg;
    /* The provider catalogue (upstream.h), loaded before anything else at
     * start; immutable. */
    struct tk_catalog *catalog;
    struct tk_store *store;
    struct tk_keyring *keyring;
    struct tk_http *http;
    /* The metrics registry (metrics.h): made in serve, every series
     * registered before the HTTP server starts, freed after it stops. */
    struct tk_metrics *metrics;
    char default_tenant[TK_UUID_LEN + 1];
    char node[64];
    int64_t started_ms;
    atomic_bool stopping;
    /* The rewrap worker (serve.c): kicked by POST /v1/sys/rewrap and unseal. */
    struct tk_worker rewrap;
    /* Set once start-up is done (store open, keyring started): until then
     * every route but /health, /ready and /metrics answers 503 starting. */
    atomic_bool started;
    /* Failed authentications and init calls per source address. */
    struct tk_ratelimit *auth_limit;
    /* Failed unseal attempts per source address (keyring_api.c): its own
     * budget, TK_API_UNSEAL_FAILS_MAX per TK_API_UNSEAL_WINDOW_S. */
    struct tk_ratelimit *unseal_limit;
    /* Operator token uses noted by authentication (no store write on that
     * path); the last-used worker (serve.c) writes them as last_used_at. */
    struct tk_optoken_uses *uses;
    struct tk_worker last_used;
    /* The store probe (serve.c): a thread pings the store every second;
     * /ready and /metrics read its last result, never the store. */
    /* The outbound HTTP client (src/outbound): started after the store,
     * stopped after the HTTP drain and before the HTTP server stops (its
     * done callbacks may resume parked requests), freed at the end. */
    struct tk_out *outbound;
    struct tk_worker probe;
    pthread_mutex_t probe_mu;     /* guards probe_error */
    atomic_llong probe_began_ms;  /* when the ping in progress began; 0: none running */
    atomic_llong probe_done_ms;   /* when the last ping ended */
    atomic_bool probe_ok;         /* the last ping's result */
    atomic_bool probe_busy;       /* it failed because every connection was in use */
    char probe_error[sizeof(((struct tk_err *)0)->msg)]; /* its error (under probe_mu) */
    /* HTTPS: the certificate and key (reloaded on SIGHUP); NULL: plain HTTP */
    struct tk_tls *tls;
    /* public_url, or the one derived at start from the listen address, the
     * port bound and the scheme (tk_api_public_url) */
    char public_url[512];
    /* The event stream pump (events_stream.c): one thread for every
     * GET /v1/events/stream of this node. */
    struct tk_evpump *evpump;
    /* The authentication cache (NULL with auth_cache_size 0) and the
     * poller of the tenants' auth epochs that invalidates it (authpoll.c). */
    struct tk_authcache *authcache;
    struct tk_worker authpoll;
    atomic_llong authpoll_seq; /* the highest auth epoch seen */
    /* Upstream connections (connections_api.c, src/upstream/connections.h):
     * the refresh settings and the pool that runs API-triggered refreshes
     * (started after the outbound client, stopped after it). */
    struct tk_refresh_ctx *refresh_ctx;
    struct tk_conn_pool *conn_pool;
    /* Client token uses (clients_api.c), written as client_tokens.last_used_at
     * by the last-used worker with the operator tokens' (no store write per
     * request); and tokend_validations_total{outcome,reason}. */
    struct tk_optoken_uses *client_uses;
    struct tk_metric *m_validations;
    /* Agents (agents_api.c): the stale sweep (one node at a time, by lease),
     * tokend_heartbeats_total{outcome} and the counts behind tokend_agents
     * (-1 until the sweep worker's first count). */
    struct tk_worker agent_sweep;
    struct tk_metric *m_heartbeats;
    atomic_llong agents_online, agents_stale;
    /* Heartbeats noted in memory, flushed in batches (agents_api.c), and
     * tokend_heartbeat_flushes_total{kind}. */
    struct tk_hb_table *heartbeats;
    struct tk_metric *m_hb_flushes;
    /* The refresh engine (src/upstream/engine.h): made with the metrics,
     * started after the connections' pool, stopped before the outbound
     * client stops, freed after the registry. */
    struct tk_engine *engine;
    /* The authorization server (oauth_api.h): each part's state. */
    struct tk_oauth_keys *oauth_keys;     /* signing keys (oauth_keys_api.c) */
    struct tk_oauth_cimd *oauth_cimd;     /* metadata documents (oauth_clients_api.c) */
    struct tk_pwhash *pwhash;             /* password hashing (users_api.c) */
    struct tk_oauth_flows *oauth_flows;   /* flows (oauth_authorize_api.c) */
    struct tk_oauth_revset *oauth_revset; /* revocation set (oauth_token_api.c) */
};

/* The budget of failed unseal attempts per source address: past it, 429
 * rate_limited until the window ends (even for a good share). */
#define TK_API_UNSEAL_FAILS_MAX 10
#define TK_API_UNSEAL_WINDOW_S 60

/* The node's external base URL, normalized, without a trailing slash
 * ("https://tokend.example.com", "https://example.com/tokend"): the
 * public_url setting, else derived at start. For redirects, OAuth metadata
 * and iss: append a path that starts with '/'. */
const char *tk_api_public_url(const struct tk_app *app);

/* Wake the rewrap worker (a job was started). */
void tk_api_rewrap_kick(struct tk_app *app);

/* Run the daemon; returns the process exit status. */
int tk_serve(const struct tk_config *cfg);

/* ---- authentication off the disk (authpoll.c) ----
 *
 * tk_api_issued_lookup authenticates a well-formed issued secret of kind
 * (tok, len; its checksum already checked) through the cache: a hit takes
 * no store connection. On a miss it takes the request's connection
 * (tk_api_db), reads the row through the kind's lookup function and fills
 * the cache with a success. Returns TK_OK (p filled), TK_EAUTH (e->code
 * the reason, p->id and p->tenant_id naming the row when there is one; not
 * replied: the caller records and answers it), or another code, in which
 * case a reply (503 sealed, store_busy, ...) has been sent. A new kind
 * plugs in by adding its lookup function to the table in authpoll.c. */
tk_rc tk_api_issued_lookup(struct tk_req *r, enum tk_principal_kind kind, const char *tok,
                           size_t len, struct tk_principal *p, struct tk_err *e);
/* After committing a write that bumped the tenant's auth epoch to seq
 * (tk_tenant_auth_bump): drop this node's cached entries of the tenant at
 * once (other nodes drop theirs at their next poll, within 250 ms). */
void tk_api_authcache_changed(struct tk_app *app, const char *tenant_id, int64_t seq);
/* Start the cache (auth_cache_size entries) and its poller. Stop the
 * poller before the store closes: false when it is stuck in a store read
 * (then neither the store nor app->authcache may be freed). The caller
 * frees app->authcache with tk_authcache_free. */
void tk_api_authcache_start(struct tk_app *app);
/* Make the cache (auth_cache_size) and register its series
 * (tokend_auth_cache_*) in app->metrics; from tk_api_metrics_register. */
tk_rc tk_api_authcache_metrics(struct tk_app *app, struct tk_err *e);
bool tk_api_authcache_stop(struct tk_app *app);
/* How often the poller reads the epochs. */
#define TK_API_AUTHPOLL_MS 250

/* ---- client tokens (clients_api.c) ----
 *
 * What authenticating a client token found: r->principal points at one on
 * the routes that accept client tokens (the principal is its first member).
 * ok false: e says why (e.code: missing, malformed, unknown, revoked,
 * expired, client_inactive, client_suspended). warnings: what was stripped
 * around the token (TK_CTW_* of clients.h); preview: of a well-formed token,
 * else "". */
struct tk_api_client_auth {
    struct tk_principal p;
    bool ok;
    struct tk_err e;
    unsigned warnings;
    char preview[24];
};
/* Validate the n bytes of text as a client token, leniently (whitespace,
 * newlines and quotes around it are warnings): the form without the store,
 * then through the authentication cache. TK_OK with *v filled (valid or
 * not); another code after a reply (503 sealed, store_busy). */
tk_rc tk_api_client_verify(struct tk_req *r, const char *text, size_t n,
                           struct tk_api_client_auth *v);
/* The reply of both validate routes for verdict v (issue 14's shape). */
json_t *tk_api_client_verdict_json(const struct tk_api_client_auth *v);
/* Record a refused client token (kind validate, outcome denied, coalesced
 * per reason, route and address per second) in tenant_id (NULL: the
 * token's, else the default tenant). */
void tk_api_client_refused(struct tk_req *r, const struct tk_api_client_auth *v,
                           const char *tenant_id);
/* Record that a client token was accepted with warnings (whitespace,
 * quotes): kind validate, outcome ok, the first per token and warnings an
 * hour, repeats counted (for the client's report). */
void tk_api_client_warned(struct tk_req *r, const struct tk_api_client_auth *v);
/* Count a validation in tokend_validations_total. */
void tk_api_client_count(struct tk_app *app, const struct tk_api_client_auth *v);
/* Register tokend_validations_total; from tk_api_metrics_register. */
tk_rc tk_api_clients_metrics(struct tk_app *app, struct tk_err *e);
/* tokend_heartbeats_total outcomes. */
enum { TK_HB_OK, TK_HB_DENIED, TK_HB_NOT_FOUND, TK_HB_INVALID };
void tk_api_heartbeat_count(struct tk_app *app, int outcome);
/* Start and stop the agents' stale sweep (before the store closes). */
void tk_api_agents_start(struct tk_app *app);
void tk_api_agents_stop(struct tk_app *app);
void tk_h_agents_register(struct tk_req *r);
void tk_h_agents_heartbeat(struct tk_req *r);
void tk_h_agents_list(struct tk_req *r);
void tk_h_clients_report(struct tk_req *r);
void tk_h_tokens_validate(struct tk_req *r);
void tk_h_tokens_validate_self(struct tk_req *r);
void tk_h_clients_create(struct tk_req *r);
void tk_h_clients_list(struct tk_req *r);
void tk_h_clients_get(struct tk_req *r);
void tk_h_clients_update(struct tk_req *r);
void tk_h_client_tokens_list(struct tk_req *r);
void tk_h_client_tokens_create(struct tk_req *r);
void tk_h_client_tokens_revoke(struct tk_req *r);
void tk_h_client_tokens_rotate(struct tk_req *r);

/* The route table. */
const struct tk_route *tk_api_routes(size_t *n);

/* Helpers shared by the handler files. */
struct tk_db *tk_api_db(struct tk_req *r); /* replies 503 and returns NULL if unreachable */
/* tk_reply_error, with Retry-After on a 503 (store_busy, store_unreachable). */
void tk_api_reply_error(struct tk_req *r, const struct tk_err *e, json_t *extra);
const struct tk_principal *tk_api_principal(const struct tk_req *r);
tk_rc tk_api_authenticate(struct tk_req *r);
/* 503 "sealed" while the keyring is sealed or not initialized. */
tk_rc tk_api_gate(struct tk_req *r);
/* The hooks through which the keyring's init, unseal and rotate record
 * their events (in the action's own transaction, or before the node
 * unseals) and a rewrap step its decrypt_failed events (keyring_api.c).
 * r may be NULL (at start); hook_failed tells that the event could not be
 * recorded, and so the action was not done. */
struct tk_api_keyring_ctx {
    struct tk_app *app;
    struct tk_req *r;
    char remote[64];
    bool hook_failed;
};
struct tk_keyring_hook tk_api_keyring_hook(struct tk_api_keyring_ctx *ctx);
/* Record a keyring event in the default tenant (best effort). */
void tk_api_keyring_event(struct tk_app *app, struct tk_db *db, const char *action,
                          const char *outcome, const char *message);
void tk_api_finish(struct tk_req *r);
/* Reply 503 "starting" and return false until start-up is done. */
bool tk_api_started(struct tk_req *r);
/* Reply 429 rate_limited + Retry-After and return false when the request's
 * source address used up its failure budget; else count this request
 * against it (routes that anybody may call: init). */
bool tk_api_rate_count(struct tk_req *r);
/* The store probe's view: NULL when the last ping succeeded and is recent,
 * else the reason ("store_unreachable", "store_stalled", "starting") and a
 * sentence in msg. */
const char *tk_api_store_state(struct tk_app *app, char *msg, size_t n);

/* Register the node's own series (build, store, keyring) on app->metrics;
 * their values are read when /metrics is rendered (sys.c). */
tk_rc tk_api_metrics_register(struct tk_app *app, struct tk_err *e);

void tk_h_health(struct tk_req *r);
void tk_h_ready(struct tk_req *r);
void tk_h_metrics(struct tk_req *r);
void tk_h_whoami(struct tk_req *r);
void tk_h_events_list(struct tk_req *r);
void tk_h_events_verify(struct tk_req *r);
/* GET /v1/events/counts: events per bucket by outcome (the console's chart) */
void tk_h_events_counts(struct tk_req *r);
void tk_h_events_stream(struct tk_req *r);
/* The event stream pump (events_stream.c). Started once the store is
 * open; stopped after the HTTP server (which ends the streams) and before
 * the store closes. tk_evpump_add hands it a stream of principal p with
 * the filters of q (copied; q->tenant_id is p's), from seq after. */
struct tk_evpump;
struct tk_event_query;
tk_rc tk_evpump_start(struct tk_app *app, struct tk_evpump **out, struct tk_err *e);
void tk_evpump_stop(struct tk_evpump *pp);
void tk_evpump_add(struct tk_evpump *pp, struct tk_stream *s, const struct tk_principal *p,
                   const struct tk_event_query *q, int64_t after);
/* Count a stream of tenant against max_streams_per_tenant: false (and
 * nothing counted) when the tenant holds that many already. A stream
 * counted is uncounted when the pump frees it (after tk_evpump_add) or by
 * tk_evpump_unadmit (when it never got there). */
bool tk_evpump_admit(struct tk_evpump *pp, const char *tenant_id, int *limit);
void tk_evpump_unadmit(struct tk_evpump *pp, const char *tenant_id);
/* A console session's streams (one per open events page) are counted too,
 * at most TK_STREAMS_PER_SESSION, so that one browser cannot take all of
 * its tenant's; uncounted with tk_evpump_unadmit(pp, session_id) or when
 * the pump frees the stream. */
#define TK_STREAMS_PER_SESSION 4
bool tk_evpump_admit_session(struct tk_evpump *pp, const char *session_id);
void tk_h_sys_init(struct tk_req *r);
void tk_h_sys_unseal(struct tk_req *r);
void tk_h_sys_seal(struct tk_req *r);
void tk_h_sys_seal_status(struct tk_req *r);
void tk_h_sys_rotate(struct tk_req *r);
void tk_h_sys_rewrap(struct tk_req *r);
void tk_h_optokens_list(struct tk_req *r);
void tk_h_optokens_create(struct tk_req *r);
void tk_h_optokens_revoke(struct tk_req *r);
void tk_h_optokens_patch(struct tk_req *r);
void tk_h_tenants_list(struct tk_req *r);
void tk_h_tenants_create(struct tk_req *r);
void tk_h_tenants_get(struct tk_req *r);
void tk_h_sys_doctor(struct tk_req *r);
void tk_h_providers_list(struct tk_req *r);
void tk_h_providers_get(struct tk_req *r);
void tk_h_apps_create(struct tk_req *r);
void tk_h_apps_list(struct tk_req *r);
void tk_h_apps_get(struct tk_req *r);
void tk_h_apps_update(struct tk_req *r);
void tk_h_apps_delete(struct tk_req *r);
void tk_h_conn_create(struct tk_req *r);
void tk_h_conn_list(struct tk_req *r);
void tk_h_conn_get(struct tk_req *r);
void tk_h_conn_diagnosis(struct tk_req *r);
void tk_h_conn_delete(struct tk_req *r);
void tk_h_conn_token(struct tk_req *r);
void tk_h_conn_unauthorized(struct tk_req *r);
void tk_h_conn_refresh(struct tk_req *r);
/* Wake the refresh engine: a connection was created or imported (a no-op
 * before it starts and after it stops). */
void tk_api_engine_kick(struct tk_app *app);
/* Start and stop the connections' refresh pool (connections_api.c). */
tk_rc tk_api_conn_start(struct tk_app *app, struct tk_err *e);
void tk_api_conn_stop(struct tk_app *app);
/* the connect flow (connect_api.c) */
void tk_h_connect_start(struct tk_req *r);
void tk_h_connect_callback(struct tk_req *r);

/* Body checks that reply 400 naming the field and return false:
 * every member of body is in allowed (NULL-terminated); name, when
 * present, is an integer in [min, max] (def when absent). */
bool tk_api_only_members(struct tk_req *r, json_t *body, const char *const *allowed);
/* The list parameters every list route takes (CONVENTIONS): limit (1..1000,
 * default 50) and cursor (the next_cursor of a previous page, a UUIDv7),
 * each at most once. false after replying 400 naming the parameter. */
#define TK_API_MAX_LIMIT 1000
bool tk_api_page(struct tk_req *r, int64_t *limit, const char **cursor);
bool tk_api_int_member(struct tk_req *r, json_t *body, const char *name, int min, int max,
                       int def, int *out);

/*
 * Route declarations. Each route of the table (routes.c) with TK_ROUTE_AUTH
 * declares the principal kinds it accepts (.kinds, a set of TK_P_* from
 * operators.h) and the role it needs (.role); the authenticate hook checks
 * both before the handler runs, so handlers hold no role checks. A public
 * route (no TK_ROUTE_AUTH) declares neither.
 */
enum tk_route_role {
    TK_ROLE_UNSET = 0,  /* public routes only; an AUTH route without a role is refused (500) */
    TK_ROLE_ANY,        /* admin, operator or viewer: reads */
    TK_ROLE_WRITE,      /* admin or operator: writes */
    TK_ROLE_ADMIN,      /* admin: managing operators and roles */
    TK_ROLE_NODE_ADMIN, /* an admin of the default tenant: node-wide operations */
};
/* "any", "write", "admin", "node_admin" ("none" for TK_ROLE_UNSET). */
const char *tk_api_role_name(unsigned role);
/* The kind of principal an Authorization header presents, from its form
 * alone: "Bearer tko_" an operator token, "Bearer tkc_" a client token,
 * "Basic" an OAuth client; anything else (absent, malformed) NONE. */
enum tk_principal_kind tk_api_presented_kind(const char *authorization);
/* May principal p (kind, role, tenant) call route? TK_OK, or TK_EAUTH
 * (code "kind_not_accepted": the sentence names the kinds the route
 * accepts) or TK_EFORBIDDEN (code "forbidden", naming the role needed and
 * the one held); TK_EINTERNAL for a route that declares no kinds or role.
 * Pure: no store, no request (the route-table unit test calls it). */
tk_rc tk_api_route_allows(const struct tk_route *route, const struct tk_principal *p,
                          const char *default_tenant, struct tk_err *e);
/* GET /v1/sys/routes: the table with its declarations. */
void tk_h_sys_routes(struct tk_req *r);
/* A refused credential (e.rc TK_EAUTH) as the authenticate hook answers
 * it: counted against the address's failure budget, recorded (coalesced),
 * 401 with the reason (429 past the budget). The console's sign-in uses it
 * (capturing the reply). */
tk_rc tk_api_refuse(struct tk_req *r, struct tk_principal *p, struct tk_err e);
/* Record an event for the request's principal and tenant (best effort). */
void tk_api_event(struct tk_req *r, const char *kind, const char *action, const char *outcome,
                  const char *subject_type, const char *subject_id, const char *message,
                  json_t *detail);
/* The same inside the request's open transaction (r->db): the action and
 * its event commit together; on failure the caller rolls back and replies
 * the error. */
tk_rc tk_api_event_in(struct tk_req *r, const char *kind, const char *action,
                      const char *outcome, const char *subject_type, const char *subject_id,
                      const char *message, json_t *detail, struct tk_err *e);

#endif
