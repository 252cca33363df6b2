/* housekeeping.c: coalesced repeats, retention and the housekeeping
 * worker. See events.h.
 *
 * Coalescing is per node, in memory: a table of at most COALESCE_MAX
 * windows keyed by (tenant, kind, action, key). An occurrence that finds no
 * open window is emitted at once and opens one; repeats inside the window
 * only count. When the window ends (the worker's flush, or the next
 * occurrence), the count is written as one event, a copy of the first with
 * detail.count, first_at and last_at of the repeats. When the table is full,
 * occurrences go through uncoalesced rather than being dropped: an event
 * is never lost to save a write. */
#include "events.h"

#include "../common/log.h"
#include "../common/worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define COALESCE_MAX 4096

struct window {
    bool used;
    unsigned hash;
    char *tenant, *kind, *action, *key;
    /* the first occurrence, copied, for the summary event */
    char *source, *outcome, *stype, *sid, *message;
    json_t *detail;
    int64_t opened_mono_ms, window_ms;
    int64_t count, first_at, last_at; /* repeats after the first */
};

static pthread_mutex_t co_lock = PTHREAD_MUTEX_INITIALIZER;
static struct window co[COALESCE_MAX];
static int co_used;

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void window_free(struct window *w)
{
    free(w->tenant);
    free(w->kind);
    free(w->action);
    free(w->key);
    free(w->source);
    free(w->outcome);
    free(w->stype);
    free(w->sid);
    free(w->message);
    json_decref(w->detail);
    memset(w, 0, sizeof *w);
}

static char *dup_or_null(const char *s)
{
    return s ? tk_strdup(s) : NULL;
}

/* The summary of a closed window as an event; w is then freed. */
static struct tk_event summary(struct window *w, json_t **detail)
{
    json_t *d = w->detail ? json_deep_copy(w->detail) : json_object();
    if (!json_is_object(d)) {
        json_decref(d);
        d = json_object();
    }
    char first[32], last[32];
    tk_time_fmt(w->first_at, first, sizeof first);
    tk_time_fmt(w->last_at, last, sizeof last);
    json_object_set_new(d, "count", json_integer(w->count));
    json_object_set_new(d, "first_at", json_string(first));
    json_object_set_new(d, "last_at", json_string(last));
    json_object_set_new(d, "window_ms", json_integer(w->window_ms));
    *detail = d;
    struct tk_event ev = {.tenant_id = w->tenant, .trace_id = NULL, .kind = w->kind,
                          .source = w->source, .action = w->action, .outcome = w->outcome,
                          .subject_type = w->stype, .subject_id = w->sid, .message = w->message,
                          .detail = d, .latency_us = -1};
    return ev;
}

/* Closed windows with repeats, taken out of the table under the lock and
 * written outside it. */
struct pending {
    struct window w;
    struct pending *next;
};

static struct pending *take_closed(bool force)
{
    struct pending *list = NULL;
    int64_t now = tk_mono_ms();
    for (int i = 0; i < COALESCE_MAX; i++) {
        struct window *w = &co[i];
        if (!w->used) continue;
        bool ended = force || now - w->opened_mono_ms >= w->window_ms;
        if (!ended) continue;
        if (w->count > 0) {
            struct pending *p = tk_calloc(1, sizeof *p);
            p->w = *w;
            p->next = list;
            list = p;
            memset(w, 0, sizeof *w);
        } else {
            window_free(w);
        }
        co_used--;
    }
    return list;
}

static tk_rc write_pending(struct tk_db *db, struct pending *list, struct tk_err *e)
{
    tk_rc rc = TK_OK;
    while (list) {
        struct pending *p = list;
        list = p->next;
        json_t *d = NULL;
        struct tk_event ev = summary(&p->w, &d);
        struct tk_err we;
        tk_rc r = tk_event_emit(db, &ev, &we);
        if (r != TK_OK) {
            tk_warn("events: cannot record %lld coalesced %s %s events: %s",
                    (long long)p->w.count, p->w.kind ? p->w.kind : "", p->w.action ? p->w.action : "",
                    we.msg);
            if (rc == TK_OK) {
                rc = r;
                if (e) *e = we;
            }
        }
        json_decref(d);
        window_free(&p->w);
        free(p);
    }
    return rc;
}

static unsigned key_hash(const struct tk_event *ev, const char *key)
{
    const char *parts[4] = {ev->tenant_id, ev->kind, ev->action, key};
    unsigned h = 2166136261u;
    for (int i = 0; i < 4; i++) {
        for (const char *p = parts[i]; p && *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

/* Summaries of ended windows not yet written, oldest first (a window
 * ended by an occurrence on a path without a store connection). */
static struct pending *co_pending, **co_pending_tail = &co_pending;

static void pend(struct pending *p)
{
    p->next = NULL;
    *co_pending_tail = p;
    co_pending_tail = &p->next;
}

static struct pending *take_pending(void)
{
    struct pending *l = co_pending;
    co_pending = NULL;
    co_pending_tail = &co_pending;
    return l;
}

bool tk_event_coalesce(const struct tk_event *ev, const char *key, int64_t window_ms)
{
    if (window_ms <= 0) return false;
    int64_t now = tk_mono_ms();
    unsigned h = key_hash(ev, key);
    pthread_mutex_lock(&co_lock);
    struct window *free_slot = NULL;
    for (int i = 0; i < COALESCE_MAX; i++) {
        struct window *w = &co[i];
        if (!w->used) {
            if (!free_slot) free_slot = w;
            continue;
        }
        if (w->hash != h || !same(w->tenant, ev->tenant_id) || !same(w->kind, ev->kind) ||
            !same(w->action, ev->action) || !same(w->key, key))
            continue;
        if (now - w->opened_mono_ms < w->window_ms) {
            int64_t at = tk_now_ms();
            if (w->count++ == 0) w->first_at = at;
            w->last_at = at;
            pthread_mutex_unlock(&co_lock);
            return true;
        }
        /* The window has ended: its summary is queued, to be written
         * before the new first occurrence when the caller has a store
         * connection, else by the next flush. */
        if (w->count > 0) {
            struct pending *p = tk_calloc(1, sizeof *p);
            p->w = *w;
            memset(w, 0, sizeof *w);
            pend(p);
        } else {
            window_free(w);
        }
        co_used--;
        free_slot = w;
        break;
    }
    if (free_slot) {
        struct window *w = free_slot;
        w->used = true;
        w->hash = h;
        w->tenant = dup_or_null(ev->tenant_id);
        w->kind = dup_or_null(ev->kind);
        w->action = dup_or_null(ev->action);
        w->key = dup_or_null(key);
        w->source = dup_or_null(ev->source);
        w->outcome = dup_or_null(ev->outcome);
        w->stype = dup_or_null(ev->subject_type);
        w->sid = dup_or_null(ev->subject_id);
        w->message = dup_or_null(ev->message);
        w->detail = ev->detail ? json_deep_copy(ev->detail) : NULL;
        w->opened_mono_ms = now;
        w->window_ms = window_ms;
        co_used++;
    }
    pthread_mutex_unlock(&co_lock);
    return false;
}

tk_rc tk_event_emit_coalesced(struct tk_db *db, const struct tk_event *ev, const char *key,
                              int64_t window_ms, bool *coalesced, struct tk_err *e)
{
    bool counted = tk_event_coalesce(ev, key, window_ms);
    if (coalesced) *coalesced = counted;
    if (counted) return TK_OK;
    pthread_mutex_lock(&co_lock);
    struct pending *closed = take_pending();
    pthread_mutex_unlock(&co_lock);
    tk_rc rc = write_pending(db, closed, e);
    tk_rc r2 = tk_event_emit(db, ev, e);
    return r2 != TK_OK ? r2 : rc;
}

tk_rc tk_events_coalesce_flush(struct tk_db *db, bool force, struct tk_err *e)
{
    pthread_mutex_lock(&co_lock);
    struct pending *closed = take_closed(force);
    while (closed) {
        struct pending *n = closed->next;
        pend(closed);
        closed = n;
    }
    closed = take_pending();
    pthread_mutex_unlock(&co_lock);
    return write_pending(db, closed, e);
}

/* ---- retention ---- */

tk_rc tk_events_prune(struct tk_db *db, const char *tenant_id, int64_t before_ms, int batch,
                      int64_t *deleted, struct tk_err *e)
{
    if (deleted) *deleted = 0;
    if (batch < 1) batch = 1000;
    for (;;) {
        tk_rc rc = tk_db_begin(db, e);
        if (rc != TK_OK) return rc;
        struct tk_rows *t = NULL, *r = NULL;
        /* Lock the tenant's row (and with it the chain) for the batch. */
        rc = tk_db_exec(db,
                        "UPDATE tenants SET event_base_seq = event_base_seq WHERE id = ? "
                        "RETURNING event_seq, event_base_seq",
                        TK_ARGS(TK_TEXT(tenant_id)), &t, e);
        if (rc == TK_OK && tk_rows_count(t) != 1)
            rc = tk_err_field(e, TK_ENOTFOUND, "unknown_tenant", "tenant_id", "unknown tenant %s",
                              tenant_id);
        int64_t head = rc == TK_OK ? tk_rows_int(t, 0, 0) : 0;
        int64_t base = rc == TK_OK ? tk_rows_int(t, 0, 1) : 0;
        tk_rows_free(t);
        /* The oldest events in seq order; the cut ends before the first one
         * that is young enough to keep (clocks of nodes differ: "at" is not
         * monotonic in seq), and before the newest event, always kept. */
        if (rc == TK_OK)
            rc = tk_db_exec(db,
                            "SELECT seq, at, hash FROM events WHERE tenant_id = ? AND seq > ? "
                            "AND seq < ? ORDER BY seq LIMIT ?",
                            TK_ARGS(TK_TEXT(tenant_id), TK_INT(base), TK_INT(head), TK_INT(batch)),
                            &r, e);
        int64_t cut = base;
        char cut_hash[65] = "";
        int n = 0;
        for (int i = 0; rc == TK_OK && i < tk_rows_count(r); i++) {
            if (tk_rows_int(r, i, 0) != cut + 1 || tk_rows_int(r, i, 1) >= before_ms) break;
            cut = tk_rows_int(r, i, 0);
            snprintf(cut_hash, sizeof cut_hash, "%s", tk_rows_text(r, i, 2));
            n++;
        }
        tk_rows_free(r);
        if (rc == TK_OK && n > 0)
            rc = tk_db_exec(db, "DELETE FROM events WHERE tenant_id = ? AND seq > ? AND seq <= ?",
                            TK_ARGS(TK_TEXT(tenant_id), TK_INT(base), TK_INT(cut)), NULL, e);
        if (rc == TK_OK && n > 0)
            rc = tk_db_exec(db,
                            "UPDATE tenants SET event_base_seq = ?, event_base_hash = ? WHERE id = ?",
                            TK_ARGS(TK_INT(cut), TK_TEXT(cut_hash), TK_TEXT(tenant_id)), NULL, e);
        /* The new base is recorded in the chain itself, in the same
         * transaction: tk_events_verify_chain accepts a base only when the
         * newest prune event names it (and that event is keyed). */
        if (rc == TK_OK && n > 0) {
            json_t *d = json_pack("{s:i, s:I, s:s}", "deleted", n, "through_seq", (json_int_t)cut,
                                  "base_hash", cut_hash);
            struct tk_event ev = {.tenant_id = tenant_id, .kind = "node", .source = "retention",
                                  .action = "prune", .outcome = "ok",
                                  .message = "events older than the retention were deleted",
                                  .detail = d, .latency_us = -1};
            rc = tk_event_emit_in(db, &ev, e);
            json_decref(d);
        }
        if (rc == TK_OK)
            rc = tk_db_commit(db, e);
        else
            tk_db_rollback(db);
        if (rc != TK_OK) return rc;
        if (deleted) *deleted += n;
        if (n < batch) return TK_OK;
    }
}

/* ---- the worker ---- */

#define PRUNE_EVERY_MS 60000

struct tk_housekeeper {
    struct tk_store *store;
    struct tk_housekeeper_opts o;
    struct tk_worker w;
    int64_t last_prune_ms; /* monotonic; 0: never */
};

static void prune_all(struct tk_housekeeper *h, struct tk_db *db)
{
    struct tk_rows *t = NULL;
    struct tk_err e;
    if (tk_db_exec(db, "SELECT id FROM tenants ORDER BY id", NULL, 0, &t, &e) != TK_OK) {
        tk_warn("events: retention: cannot list tenants: %s", e.msg);
        return;
    }
    int64_t before = tk_now_ms() - (int64_t)h->o.retention_days * 86400000;
    for (int i = 0; i < tk_rows_count(t); i++) {
        int64_t n = 0;
        const char *tid = tk_rows_text(t, i, 0);
        if (tk_events_prune(db, tid, before, h->o.prune_batch, &n, &e) != TK_OK) {
            tk_warn("events: retention: cannot prune tenant %s: %s", tid, e.msg);
            continue;
        }
        if (n > 0)
            tk_info("events: retention: deleted %lld events older than %d days in tenant %s",
                    (long long)n, h->o.retention_days, tid);
    }
    tk_rows_free(t);
}

static void tick(struct tk_housekeeper *h)
{
    struct tk_err e;
    struct tk_db *db = tk_store_get(h->store, &e);
    if (!db) {
        tk_warn("events: housekeeping skipped: %s", e.msg);
        return;
    }
    if (tk_events_coalesce_flush(db, false, &e) != TK_OK)
        tk_warn("events: flushing coalesced events: %s", e.msg);
    int64_t now = tk_mono_ms();
    /* Not while sealed: prune events must be keyed (they move the chain's
     * base), so retention waits for the key. */
    if (h->o.retention_days > 0 && tk_events_keyed_now() &&
        (h->last_prune_ms == 0 || now - h->last_prune_ms >= PRUNE_EVERY_MS)) {
        h->last_prune_ms = now;
        prune_all(h, db);
    }
    tk_store_put(db);
}

static void run(struct tk_worker *w, void *arg)
{
    struct tk_housekeeper *h = arg;
    int64_t ms = 0; /* the first round at once */
    while (tk_worker_wait(w, ms)) {
        tick(h);
        ms = h->o.interval_ms;
    }
}

tk_rc tk_housekeeper_start(struct tk_store *s, const struct tk_housekeeper_opts *o,
                           struct tk_housekeeper **out, struct tk_err *e)
{
    struct tk_housekeeper *h = tk_calloc(1, sizeof *h);
    h->store = s;
    h->o = *o;
    if (h->o.interval_ms <= 0) h->o.interval_ms = 10000;
    if (h->o.prune_batch <= 0) h->o.prune_batch = 1000;
    if (h->o.retention_days < 0) h->o.retention_days = 0;
    tk_rc rc = tk_worker_start(&h->w, "housekeeping", run, h, e);
    if (rc != TK_OK) {
        free(h);
        return rc;
    }
    *out = h;
    return TK_OK;
}

void tk_housekeeper_stop(struct tk_housekeeper *h)
{
    if (!h) return;
    tk_worker_stop(&h->w, 0);
    /* What was counted is written before the store closes. */
    struct tk_err e;
    struct tk_db *db = tk_store_get(h->store, &e);
    if (db) {
        if (tk_events_coalesce_flush(db, true, &e) != TK_OK)
            tk_warn("events: flushing coalesced events at stop: %s", e.msg);
        tk_store_put(db);
    }
    free(h);
}
