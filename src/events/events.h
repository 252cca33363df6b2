/*
 * events.h: the event log. Every attempt tokend makes or refuses -- a
 * refresh, a validation, a login, a start -- leaves exactly one event with a
 * trace id, source, action, outcome and masked detail (DESIGN.md §1.4).
 *
 * Events of a tenant form a hash chain: each carries a gapless per-tenant
 * sequence number, the previous event's hash and its own, so that a deleted
 * or edited event is detectable (tk_events_verify). The chain head lives in
 * the tenant's row, which the emitting transaction locks: events of one
 * tenant are written one at a time, on every node.
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

/* Append ev in its own transaction (db must not be in one). */
tk_rc tk_event_emit(struct tk_db *db, const struct tk_event *ev, struct tk_err *e);

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

/* Recompute a tenant's chain; TK_ECONFLICT names the first broken seq. */
tk_rc tk_events_verify(struct tk_db *db, const char *tenant_id, int64_t *checked,
                       struct tk_err *e);

#endif
