/*
 * events_internal.h: what events.c shares with writer.c (the event writer).
 *
 * An event is first made into a struct tk_ev_rec -- owned copies of its
 * fields as valid UTF-8, its id, trace id and time -- by whoever records it
 * (the caller's thread), and then chained into its tenant's log by
 * tk_ev_append inside an open transaction: by tk_event_emit_in on the
 * caller's connection, or by the writer for a whole batch at once.
 */
#ifndef TK_EVENTS_INTERNAL_H
#define TK_EVENTS_INTERNAL_H

#include "events.h"

enum { EV_TRACE, EV_KIND, EV_SOURCE, EV_ACTION, EV_OUTCOME, EV_STYPE, EV_SID, EV_MSG, EV_NF };

struct tk_ev_rec {
    char id[TK_UUID_LEN + 1];
    char *tenant;          /* NULL: refused as unknown_tenant */
    char *f[EV_NF];        /* trace id (never NULL), kind, source, ... as valid UTF-8 */
    char *detail;          /* compact JSON with sorted keys, or NULL */
    int64_t at;            /* ms since the epoch */
    int64_t latency_us;    /* < 0: not measured */
    bool durable;          /* a keyring/tenant/operator change: fsync at commit (SQLite) */
    /* set by tk_ev_append */
    tk_rc rc;              /* TK_OK: chained; else refused (err says why) */
    struct tk_err err;
    int64_t seq;
    char prev[65], hash[65];
    bool has_mac;
    char mac[65], kid[17];
};

/* Copy ev into r (r zeroed or cleared before); at is now. */
void tk_ev_rec_fill(struct tk_ev_rec *r, const struct tk_event *ev);
/* Free what r owns; r can be filled again. */
void tk_ev_rec_clear(struct tk_ev_rec *r);

/* Chain recs[0..n), all of one tenant, in this order, in db's open
 * transaction: the tenant's row is locked (until commit) and read once,
 * each event is hashed from the one before and inserted, and the row's
 * head is written once. Each rec's rc says whether it was chained: an
 * unknown tenant refuses all of them, a sealed keyring an event that must
 * carry a MAC; refused events take no seq. The return value is a store
 * failure only (the transaction must then be rolled back). bulk (the
 * writer on PostgreSQL): insert up to 500 events per statement, through
 * json_to_recordset, instead of one statement (one round trip) each. */
tk_rc tk_ev_append(struct tk_db *db, struct tk_ev_rec *const *recs, int n, bool bulk,
                   struct tk_err *e);

#endif
