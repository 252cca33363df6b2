/*
 * engine.h: the refresh engine (issue 18 item 5): refreshes upstream
 * connections ahead of expiry in the background, without any caller.
 *
 * One scheduler thread (a worker.h worker: monotonic wait, kick, paused
 * while sealed) claims due connections -- next_refresh_at <= now; the
 * connections module sets it NULL for needs_reconnect and disabled ones, so
 * those are never due -- through the store's leases (TK_CONN_LEASE), at
 * most `concurrency` held at once and at most `per_provider` of one
 * catalogue provider in flight, and hands them to a few refresh threads.
 * A refresh thread runs the first half of THE refresh function
 * (tk_conn_refresh_prepare: read, open, build; no store connection kept)
 * and submits the request to the outbound client (libcurl multi: every
 * transfer of every refresh runs concurrently on the outbound thread); the
 * answer comes back to a refresh thread, which runs the second half
 * (tk_conn_refresh_complete: classify, commit fenced by the version, one
 * event, next_refresh_at after success, backoff or needs_reconnect). The
 * leases of finished refreshes are released in batches by the scheduler.
 * Two nodes on one PostgreSQL never hold the same connection (leases are
 * claimed with FOR UPDATE SKIP LOCKED), so each due connection is refreshed
 * once; a node killed mid-refresh leaves leases that expire after
 * lease_ms, and then another node takes the connection.
 *
 * A refresh that did not happen (TK_REFRESH_NONE: the store failed, the
 * outbound queue was full) keeps its lease for a short while instead of
 * releasing it, so that a connection that cannot be refreshed now is not
 * claimed again in a tight loop.
 *
 * Metrics (registered by tk_engine_new, before the HTTP server starts):
 * tokend_connections{status} and tokend_connections_soonest_expiry_seconds
 * from a count the scheduler makes every stats_ms (never a query at scrape
 * time), tokend_refresh_attempts_total{outcome,provider} (provider: the
 * catalogue's names) and tokend_refresh_duration_seconds.
 */
#ifndef TK_ENGINE_H
#define TK_ENGINE_H

#include "../common/tk.h"
#include "connections.h"

struct tk_engine;
struct tk_metrics;

struct tk_engine_opts {
    const char *owner;   /* the lease owner name: unique per node ("<node>/engine") */
    int concurrency;     /* refresh_concurrency: connections held at once; 0: engine off */
    int per_provider;    /* refresh_per_provider: in flight per provider at most */
    int threads;         /* refresh threads (prepare, complete); 0: 2 */
    int64_t lease_ms;    /* lease of a claimed connection; 0: 2 * timeout + 5 s */
    int64_t idle_ms;     /* longest wait between rounds (new rows of other nodes); 0: 2000 */
    int64_t stats_ms;    /* how often the status counts are made; 0: 5000 */
};

/* Make the engine and register its series on m (before the registry is
 * frozen). cat gives the provider label's values; it must outlive the
 * engine. The engine does nothing until tk_engine_start. */
tk_rc tk_engine_new(const struct tk_catalog *cat, struct tk_metrics *m, struct tk_engine **out,
                    struct tk_err *e);
/* Start the scheduler and refresh threads with ctx (copied; its store,
 * keyring, catalogue and outbound client must outlive tk_engine_stop).
 * With o->concurrency 0 only the status counts run (for the metrics). */
tk_rc tk_engine_start(struct tk_engine *g, const struct tk_refresh_ctx *ctx,
                      const struct tk_engine_opts *o, struct tk_err *e);
/* There may be work now (a connection was created or imported, the node
 * was unsealed). NULL or not started: no-op. */
void tk_engine_kick(struct tk_engine *g);
/* Stop claiming; release the leases of what was claimed but not started;
 * wait up to wait_ms for the refreshes in flight (their answers are
 * committed), then cancel the rest. Before the outbound client stops and
 * before the store closes. NULL, twice, or never started: no-op. */
void tk_engine_stop(struct tk_engine *g, int wait_ms);
/* Free (after stop, and after the metrics registry is done rendering). */
void tk_engine_free(struct tk_engine *g);

/* Count an attempt made outside the engine (on demand, reactive, manual)
 * in tokend_refresh_attempts_total and tokend_refresh_duration_seconds.
 * NONE is not an attempt and is not counted. NULL g: no-op. */
void tk_engine_note(struct tk_engine *g, const char *provider, enum tk_refresh_outcome o,
                    int64_t duration_us);

/* What the engine did since start (tests, diagnosis). */
struct tk_engine_stats {
    uint64_t claimed, started, finished, ok, error, failed, none, busy;
    uint64_t rounds;
    uint64_t prepare_us, complete_us; /* time in the two halves, summed */
    int64_t in_flight, deferred; /* now */
};
void tk_engine_stats(struct tk_engine *g, struct tk_engine_stats *st);

/* The lease a claim takes for a refresh timeout of timeout_ms (pure):
 * the upstream call, the commit and the wait for a provider's slot. */
int64_t tk_engine_lease_ms(int64_t timeout_ms);

#endif
