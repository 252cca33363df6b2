/*
 * events.h: the event log. Every attempt tokend makes or refuses -- a
 * refresh, a validation, a login, a start -- leaves exactly one event with a
 * trace id, source, action, outcome and masked detail (DESIGN.md §1.4).
 *
 * Events of a tenant form a hash chain: each carries a gapless per-tenant
 * sequence number, the previous event's hash and its own, so that a deleted
 * or edited event is detectable (tk_events_verify). The chain head lives in
 * the tenant's row, which the writing transaction locks: events of one
 * tenant are appended one transaction at a time, on every node; the event
 * writer appends many in one transaction (group commit).
 *
 * The log is read newest first with a cursor (the sequence number), filtered
 * by kind, source, action, outcome, subject and time.
 */
#ifndef TK_EVENTS_H
#define TK_EVENTS_H

#include "../store/store.h"

#include <jansson.h>

struct tk_event {
    const char *tenant_id;    /* required */
    const char *trace_id;     /* the request id; one is made when NULL */
    const char *kind;         /* http, operator, node, refresh, validate, oauth, keyring... */
    const char *source;       /* who or what triggered it: api, cli, scheduler, node... */
    const char *action;       /* what was attempted: authenticate, start, stop... */
    const char *outcome;      /* ok, denied, error... */
    const char *subject_type; /* optional: operator_token, connection, client... */
    const char *subject_id;   /* optional */
    const char *message;      /* one sentence; no secrets */
    json_t *detail;           /* optional, borrowed; must be masked already */
    int64_t latency_us;       /* < 0: not measured */
};

/* This node's name, recorded in every event. Call once at start. */
void tk_events_set_node(const char *node);

/*
 * Recording an event. Three ways, from the cheapest for the caller:
 *
 * - tk_event_post: fire and forget. The event is queued for the event
 *   writer (below) and the call returns at once; it never waits for the
 *   store. For log-like events: refusals, progress, best-effort records.
 * - tk_event_emit: queued like a post, then waits until the writer's
 *   transaction holding it has committed (at most events_timeout). For
 *   events a reply depends on: when it returns TK_OK the event is durable.
 * - tk_event_emit_in: inside the caller's own transaction, so that an
 *   action and its event commit or roll back together (fail-closed paths).
 *
 * The writer is one thread that takes everything queued and writes it in
 * ONE transaction (group commit), tenant by tenant in tenant-id order
 * (the lock order, so two nodes' batches never deadlock), each tenant's
 * events in the order they were queued, extending its chain exactly as
 * tk_event_emit_in would: the tenant's row is locked for the batch, so on
 * PostgreSQL the chain head stays consistent across nodes, one batch at a
 * time. Without a running writer (the CLI, unit tests, before serve starts
 * it and after it stopped), tk_event_emit writes at once in its own
 * transaction on db, as tk_event_emit_now does, and tk_event_post refuses.
 */

/* Queue ev for the writer and return. Refusals (nothing is queued; the
 * caller decides whether to log): TK_EUNAVAIL "events_queue_full" when
 * events_queue events wait already (counted in the stats as dropped),
 * "events_stopping" when no writer runs (not started, or stopping);
 * TK_EINVAL "invalid_event" without a tenant. An event the writer later
 * cannot write (an unknown tenant, a store that stays down past the
 * drain at stop) is counted as failed and logged, never dropped silently. */
tk_rc tk_event_post(const struct tk_event *ev, struct tk_err *e);
/* Queue ev and wait for its batch's commit, at most events_timeout: then
 * TK_EUNAVAIL "events_timeout" (the message says whether the event may
 * still be written, or was withdrawn before the writer took it). Refused
 * at once like tk_event_post when the queue is full. db must not be in a
 * transaction (TK_EINTERNAL "in_transaction": the writer would wait for
 * the caller's locks). Without a running writer: tk_event_emit_now(db).
 * Text fields that are not valid UTF-8 are stored (and hashed) with
 * U+FFFD in place of each invalid sequence. */
tk_rc tk_event_emit(struct tk_db *db, const struct tk_event *ev, struct tk_err *e);
/* Append ev in its own transaction on db, now (db must not be in one):
 * begin, tk_event_emit_in, commit. For a process without a writer. */
tk_rc tk_event_emit_now(struct tk_db *db, const struct tk_event *ev, struct tk_err *e);
/* Append ev inside the caller's open transaction, so that an action and
 * its event commit or roll back together (the outbox of an action). db
 * must be in a transaction (tk_db_begin): otherwise TK_EINTERNAL, code
 * "not_in_transaction". The tenant's row stays locked until the caller's
 * commit. On failure the caller rolls back. */
tk_rc tk_event_emit_in(struct tk_db *db, const struct tk_event *ev, struct tk_err *e);

/* Coalesce repeats (failed authentications and the like): the first
 * occurrence of (tenant, kind, action, key) in a window of window_ms is
 * emitted at once; repeats inside the window are counted in memory and
 * written later as one event with detail.count (the repeats) and
 * detail.first_at / detail.last_at, by tk_events_coalesce_flush or by the
 * next occurrence after the window. key is the caller's discriminator,
 * e.g. "<reason> <source address>". *coalesced (may be NULL) says whether
 * this occurrence was only counted. */
tk_rc tk_event_emit_coalesced(struct tk_db *db, const struct tk_event *ev, const char *key,
                              int64_t window_ms, bool *coalesced, struct tk_err *e);
/* The same without a store connection, for paths that decide a failure
 * before any lookup: true when ev was counted as a repeat (nothing to
 * write); false when it is a first occurrence, which the caller writes
 * (tk_event_emit or tk_event_emit_in). Summaries of ended windows are then
 * written by the next tk_event_emit_coalesced or flush. */
bool tk_event_coalesce(const struct tk_event *ev, const char *key, int64_t window_ms);
/* Write the counted repeats of every window that has ended (all of them
 * with force). The housekeeping worker calls it; so does shutdown. */
tk_rc tk_events_coalesce_flush(struct tk_db *db, bool force, struct tk_err *e);

/* Delete a tenant's events older than before_ms, oldest first, at most
 * batch per transaction, keeping the newest event always. The tenant's row
 * records the seq and hash the oldest kept event chains from, and each
 * batch writes, in its transaction, a node/prune event naming that base
 * (detail.through_seq, base_hash, deleted), so that tk_events_verify
 * checks the whole kept chain and that its base was moved by retention.
 * *deleted (may be NULL) counts the events removed. */
tk_rc tk_events_prune(struct tk_db *db, const char *tenant_id, int64_t before_ms, int batch,
                      int64_t *deleted, struct tk_err *e);

/* The housekeeping worker: a thread that, every interval, flushes
 * coalesced repeats and prunes events older than retention_days (0: keep
 * forever) in every tenant. Start after the store opens; stop (which
 * flushes what is counted) before it closes. */
struct tk_housekeeper;
struct tk_housekeeper_opts {
    int retention_days;  /* events_retention_days; 0 keeps events forever */
    int interval_ms;     /* 0: 10000 */
    int prune_batch;     /* 0: 1000 */
};
tk_rc tk_housekeeper_start(struct tk_store *s, const struct tk_housekeeper_opts *o,
                           struct tk_housekeeper **out, struct tk_err *e);
/* Stop and join; NULL is a no-op. */
void tk_housekeeper_stop(struct tk_housekeeper *h);

/* The event writer, one per process. Start after the store opens; stop
 * after everything that posts or emits (the HTTP server, the workers) has
 * stopped and before the store closes. */
struct tk_events_writer_opts {
    int queue;      /* events_queue: events waiting at most; 0: 10000 */
    int timeout_ms; /* events_timeout: how long tk_event_emit waits; 0: 5000 */
    size_t queue_bytes; /* and at most this much event text queued; 0: 64 MiB */
};
tk_rc tk_events_writer_start(struct tk_store *s, const struct tk_events_writer_opts *o,
                             struct tk_err *e);
/* Refuse new posts (events_stopping), write everything queued (retrying a
 * failing store for up to events_timeout, then counting and logging what
 * is lost), and join the thread, at most timeout_ms (<= 0: for good).
 * False when the thread is stuck in the store: leave the store to the
 * process's exit then. A writer that does not run returns true. */
bool tk_events_writer_stop(int timeout_ms);
/* Is a writer running (accepting posts)? */
bool tk_events_writer_running(void);
/* Wait until every event queued before this call has been written (or
 * refused), at most timeout_ms; true when it was. Lets a reader on this
 * node see the events posted before its request (GET /v1/events). */
bool tk_events_writer_sync(int timeout_ms);

/* Counters since the process started (on /metrics as tokend_events_*: sys.c). */
struct tk_events_writer_stats {
    int64_t queued;        /* waiting in the queue now */
    int64_t queue_max;     /* events_queue */
    int64_t posted;        /* accepted by tk_event_post */
    int64_t emitted;       /* accepted by tk_event_emit (through the writer) */
    int64_t written;       /* committed by the writer */
    int64_t failed;        /* taken by the writer but refused or lost (see the log) */
    int64_t withdrawn;     /* emits that timed out before the writer took them */
    int64_t dropped;       /* refused at the door: queue full */
    int64_t refused_stopping; /* posts refused because no writer ran */
    int64_t timeouts;      /* tk_event_emit calls that answered events_timeout */
    int64_t batches;       /* committed transactions */
    int64_t batch_max;     /* the largest batch, in events */
    int64_t retries;       /* batch attempts that failed and were retried */
    int64_t wait_count;    /* tk_event_emit waits that ended (committed or not) */
    int64_t wait_us_total; /* their total time, us */
    int64_t wait_us_max;   /* the longest, us */
};
void tk_events_writer_stats(struct tk_events_writer_stats *out);

/* Key the chain (tamper evidence): with a keyring set, each event also
 * carries a MAC of its hash under a key derived from the keyring's HMAC
 * key; while the keyring is sealed, events are written unkeyed (see the
 * README's "Event chain"). NULL: unkeyed. */
struct tk_keyring;
void tk_events_use_keyring(struct tk_keyring *k);
/* Would an event written now be keyed (or is there no keyring at all)? */
bool tk_events_keyed_now(void);

struct tk_event_query {
    const char *tenant_id; /* required */
    const char *kind, *source, *action, *outcome, *subject;
    int64_t since, until;  /* ms since the epoch, 0: unbounded */
    int64_t before;        /* cursor: only seq < before (0: from the newest) */
    int64_t after;         /* with follow: only seq > after, oldest first */
    bool follow;
    int limit;             /* 1..1000 */
};
#define TK_EVENTS_MAX_LIMIT 1000

/* Events matching q as the text of a JSON array, appended to out (the
 * API's hot path: no JSON tree is built). *next is the cursor for the next
 * page (0 when there is none). */
tk_rc tk_events_list_text(struct tk_db *db, const struct tk_event_query *q, struct tk_buf *out,
                          int64_t *next, struct tk_err *e);
/* The same as a JSON array (caller decrefs). */
tk_rc tk_events_list(struct tk_db *db, const struct tk_event_query *q, json_t **out,
                     int64_t *next, struct tk_err *e);
/* For each event matching q (filters, since/until; newest first, at most
 * q->limit), fn(arg, at_ms, outcome, detail) with the detail's JSON text
 * ("" for none): for a reader that keeps few of many events (a client's
 * report), no JSON is built or parsed for the others. */
typedef void (*tk_event_row_fn)(void *arg, int64_t at_ms, const char *outcome,
                                const char *detail);
tk_rc tk_events_scan(struct tk_db *db, const struct tk_event_query *q, tk_event_row_fn fn,
                     void *arg, struct tk_err *e);

/* Events matching q's filters (kind, source, action, outcome, subject; the
 * other members are ignored) counted by outcome in nbuckets buckets of
 * bucket_ms from start (GET /v1/events/counts): read newest first by seq,
 * two columns, until the first event older than start, at most max_events
 * of them (*complete false when that bound stopped it). *out: an array of
 * nbuckets {"at", "counts": {outcome: n}} (caller decrefs); *counted: the
 * events counted. An event newer than the last bucket (written since the
 * caller's now) counts in the last. */
tk_rc tk_events_counts(struct tk_db *db, const struct tk_event_query *q, int64_t start,
                       int64_t bucket_ms, int nbuckets, int max_events, json_t **out,
                       int64_t *counted, bool *complete, struct tk_err *e);

/* Recompute a tenant's chain; TK_ECONFLICT names the first broken seq. */
tk_rc tk_events_verify(struct tk_db *db, const char *tenant_id, int64_t *checked,
                       struct tk_err *e);

/* The same with everything GET /v1/events/verify reports. st is filled
 * also on TK_ECONFLICT (valid false, broken_seq, error). */
struct tk_chain_status {
    char tenant_id[TK_UUID_LEN + 1];
    bool valid;
    int64_t checked;        /* events recomputed */
    int64_t first_seq;      /* oldest kept event (0: none) */
    int64_t head_seq;       /* newest event that chains (0: none) */
    char head_hash[65];
    int64_t base_seq;       /* the chain starts after this seq (retention) */
    char base_hash[65];     /* ... from this hash ("" when nothing was pruned) */
    bool macs_checked;      /* the keyring was there and unsealed */
    int64_t keyed, unkeyed; /* events with and without a MAC */
    int64_t other_key;      /* MACs made by a key this node does not hold */
    int64_t attested_seq;   /* newest seq whose MAC verified: attests it and all before */
    int64_t broken_seq;     /* first broken seq (0 when valid) */
    char error[320];
};
tk_rc tk_events_verify_chain(struct tk_db *db, const char *tenant_id,
                             struct tk_chain_status *st, struct tk_err *e);

/* A signed checkpoint of a chain's head, to keep outside the store:
 * mac = HMAC-SHA256 under the keyring's HMAC key of
 * "tokend-event-checkpoint-v1\n" tenant "\n" seq "\n" hash "\n" at. */
struct tk_checkpoint {
    char tenant_id[TK_UUID_LEN + 1];
    int64_t seq;
    char hash[65];
    int64_t at;   /* ms since the epoch */
    char mac[65]; /* "" when the keyring is sealed or absent */
};
/* The checkpoint of st's head; TK_EUNAVAIL (cp filled, mac "") unsigned. */
tk_rc tk_events_checkpoint(const struct tk_chain_status *st, struct tk_checkpoint *cp);
/* Does the chain still pass through cp (and, when the keyring can tell, is
 * its MAC ours)? TK_ECONFLICT "chain_broken" / "checkpoint_invalid". */
tk_rc tk_events_checkpoint_check(struct tk_db *db, const struct tk_checkpoint *cp,
                                 struct tk_err *e);

#endif
