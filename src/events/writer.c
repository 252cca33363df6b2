/* writer.c: the event writer (group commit). See events.h.
 *
 * One queue, one thread (a tk_worker). tk_event_post and tk_event_emit make
 * the event's record in the caller's thread (UTF-8 repair, detail as JSON,
 * ids), then append it to the queue under a mutex, numbered and stamped
 * with its time there, so that times follow queue order. The writer takes
 * up to BATCH_MAX entries at once, sorts them by tenant (stable: each
 * tenant's events keep their order) and chains them with tk_ev_append in
 * one transaction. Then, under the mutex again, it hands each emitter its
 * result and wakes them all (one condition variable for every waiter: a
 * batch ends at most a few hundred times a second).
 *
 * An emitter that gives up (events_timeout) marks its entry abandoned and
 * leaves it to the writer, who frees it; one not yet taken is not written
 * at all ("withdrawn"). A batch whose transaction fails is retried with a
 * growing pause; after RETRY_DIRECT failures that are not the store being
 * away, its events are written one per transaction, so that one bad event
 * cannot hold the rest back. At stop, retries last at most events_timeout;
 * what is still unwritten then is counted as failed and logged. */
#include "events_internal.h"

#include "../common/log.h"
#include "../common/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX 4096
#define RETRY_MS_MIN 20
#define RETRY_MS_MAX 1000
#define RETRY_DIRECT 3
#define IDLE_MS 1000
/* Besides events_queue events, the queue holds at most this many bytes of
 * event text by default: a run of large details cannot take the node's
 * memory. */
#define QUEUE_BYTES_MAX ((size_t)64 << 20)

struct entry {
    struct tk_ev_rec rec; /* first: recs point into entries */
    struct entry *next;
    uint64_t no;          /* queue number, from 1 */
    size_t bytes;         /* the text it holds, for QUEUE_BYTES_MAX */
    bool waiter;          /* an emit waits for it */
    bool abandoned;       /* the emitter gave up: the writer frees it */
    bool taken;           /* the writer has it in a batch */
    bool done;            /* result in rec.rc / rec.err */
};

enum wstate { W_NONE, W_RUNNING, W_STOPPING };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t done_cv; /* monotonic clock; broadcast at the end of each batch */
    bool cv_ready;
    struct entry *head, *tail;
    int64_t count, cap;
    size_t bytes, bytes_cap; /* sum of the queued entries' bytes, and its bound */
    int timeout_ms;
    enum wstate state;
    uint64_t enq_no;  /* the last number given */
    uint64_t done_no; /* every entry up to this number is written or refused */
    struct tk_store *store;
    bool bulk; /* PostgreSQL: many rows per INSERT (a round trip each) */
    struct tk_worker w;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool stopping; /* the final drain: retries are bounded */

static struct {
    atomic_llong queued, queue_max, posted, emitted, written, failed, withdrawn, dropped,
        refused_stopping, timeouts, batches, batch_max, retries, wait_count, wait_us_total,
        wait_us_max;
} S;

static void stat_max(atomic_llong *m, int64_t v)
{
    long long cur = atomic_load(m);
    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void tk_events_writer_stats(struct tk_events_writer_stats *o)
{
    o->queued = atomic_load(&S.queued);
    o->queue_max = atomic_load(&S.queue_max);
    o->posted = atomic_load(&S.posted);
    o->emitted = atomic_load(&S.emitted);
    o->written = atomic_load(&S.written);
    o->failed = atomic_load(&S.failed);
    o->withdrawn = atomic_load(&S.withdrawn);
    o->dropped = atomic_load(&S.dropped);
    o->refused_stopping = atomic_load(&S.refused_stopping);
    o->timeouts = atomic_load(&S.timeouts);
    o->batches = atomic_load(&S.batches);
    o->batch_max = atomic_load(&S.batch_max);
    o->retries = atomic_load(&S.retries);
    o->wait_count = atomic_load(&S.wait_count);
    o->wait_us_total = atomic_load(&S.wait_us_total);
    o->wait_us_max = atomic_load(&S.wait_us_max);
}

/* ---- the queue ---- */

static struct entry *entry_new(const struct tk_event *ev, bool waiter)
{
    struct entry *en = tk_calloc(1, sizeof *en);
    tk_ev_rec_fill(&en->rec, ev);
    en->waiter = waiter;
    en->bytes = sizeof *en + (en->rec.detail ? strlen(en->rec.detail) : 0);
    for (int i = 0; i < EV_NF; i++) en->bytes += en->rec.f[i] ? strlen(en->rec.f[i]) : 0;
    return en;
}

static void entry_free(struct entry *en)
{
    tk_ev_rec_clear(&en->rec);
    free(en);
}

/* Posts (fire and forget: refusals, coalesced storms) may fill the queue
 * only up to this share of it, counted and in bytes; the last quarter is
 * kept for emits, so that a flood of posted refusals with a slow store
 * cannot make a seal, an unseal or a token issue fail with
 * events_queue_full. */
static bool post_room(int64_t count, int64_t cap, size_t bytes, size_t add, size_t bytes_cap)
{
    int64_t pcap = cap - cap / 4;
    size_t pbytes = bytes_cap - bytes_cap / 4;
    return count < (pcap > 0 ? pcap : 1) && bytes + add <= pbytes;
}

/* Append en, or refuse (en is then the caller's to free). */
static tk_rc enqueue(struct entry *en, struct tk_err *e)
{
    pthread_mutex_lock(&W.mu);
    if (W.state != W_RUNNING) {
        pthread_mutex_unlock(&W.mu);
        atomic_fetch_add(&S.refused_stopping, 1);
        return tk_err_set(e, TK_EUNAVAIL, "events_stopping",
                          "the event writer is not running (tokend is stopping, or not serving): the %s %s "
                          "event was not recorded",
                          en->rec.f[EV_KIND] ? en->rec.f[EV_KIND] : "",
                          en->rec.f[EV_ACTION] ? en->rec.f[EV_ACTION] : "");
    }
    if (W.count >= W.cap || W.bytes + en->bytes > W.bytes_cap ||
        (!en->waiter && !post_room(W.count, W.cap, W.bytes, en->bytes, W.bytes_cap))) {
        int64_t cap = W.cap;
        size_t bytes_cap = W.bytes_cap;
        pthread_mutex_unlock(&W.mu);
        atomic_fetch_add(&S.dropped, 1);
        return tk_err_set(e, TK_EUNAVAIL, "events_queue_full",
                          "the event queue is full (events_queue = %lld events, or %zu KiB, "
                          "waiting for the store%s): "
                          "the %s %s event was not recorded",
                          (long long)cap, bytes_cap >> 10,
                          en->waiter ? "" : "; posted events may take three quarters of it",
                          en->rec.f[EV_KIND] ? en->rec.f[EV_KIND] : "",
                          en->rec.f[EV_ACTION] ? en->rec.f[EV_ACTION] : "");
    }
    en->no = ++W.enq_no;
    en->rec.at = tk_now_ms(); /* under the mutex: times follow the chain's order */
    if (W.tail)
        W.tail->next = en;
    else
        W.head = en;
    W.tail = en;
    W.bytes += en->bytes;
    bool was_empty = W.count++ == 0;
    atomic_store(&S.queued, W.count);
    pthread_mutex_unlock(&W.mu);
    /* A kick is kept until the writer's next wait: one per empty-to-busy
     * turn is enough, the writer empties the queue before it waits. */
    if (was_empty) tk_worker_kick(&W.w);
    return TK_OK;
}

static tk_rc check_event(const struct tk_event *ev, struct tk_err *e)
{
    const char *need[][2] = {{"tenant_id", ev->tenant_id}, {"kind", ev->kind},
                             {"source", ev->source},       {"action", ev->action},
                             {"outcome", ev->outcome},     {"message", ev->message}};
    for (size_t i = 0; i < TK_NELEM(need); i++)
        if (!need[i][1] || (i == 0 && !*need[i][1]))
            return tk_err_field(e, TK_EINVAL, "invalid_event", need[i][0],
                                "an event needs %s (%s %s)", need[i][0], ev->kind ? ev->kind : "",
                                ev->action ? ev->action : "");
    return TK_OK;
}

tk_rc tk_event_post(const struct tk_event *ev, struct tk_err *e)
{
    tk_rc rc = check_event(ev, e);
    if (rc != TK_OK) return rc;
    struct entry *en = entry_new(ev, false);
    rc = enqueue(en, e);
    if (rc != TK_OK) {
        entry_free(en);
        return rc;
    }
    atomic_fetch_add(&S.posted, 1);
    return TK_OK;
}

bool tk_events_writer_running(void)
{
    pthread_mutex_lock(&W.mu);
    bool run = W.state == W_RUNNING;
    pthread_mutex_unlock(&W.mu);
    return run;
}

tk_rc tk_event_emit(struct tk_db *db, const struct tk_event *ev, struct tk_err *e)
{
    if (!tk_events_writer_running()) {
        if (!db)
            return tk_err_set(e, TK_EUNAVAIL, "events_stopping",
                              "the event writer is not running and no store connection was "
                              "given: the %s %s event was not recorded",
                              ev->kind ? ev->kind : "", ev->action ? ev->action : "");
        return tk_event_emit_now(db, ev, e);
    }
    if (db && tk_db_in_tx(db))
        return tk_err_set(e, TK_EINTERNAL, "in_transaction",
                          "tk_event_emit waits for the event writer and must not be called in "
                          "a transaction (use tk_event_emit_in)");
    tk_rc rc = check_event(ev, e);
    if (rc != TK_OK) return rc;
    struct entry *en = entry_new(ev, true);
    struct tk_err qe;
    rc = enqueue(en, &qe);
    if (rc != TK_OK) {
        entry_free(en);
        /* the writer stopped between the check and the queue */
        if (db && !strcmp(qe.code, "events_stopping")) return tk_event_emit_now(db, ev, e);
        if (e) *e = qe;
        return rc;
    }
    atomic_fetch_add(&S.emitted, 1);
    int64_t t0 = mono_us();
    struct timespec until;
    tk_mono_deadline(&until, W.timeout_ms);
    pthread_mutex_lock(&W.mu);
    while (!en->done)
        if (pthread_cond_timedwait(&W.done_cv, &W.mu, &until) == ETIMEDOUT) break;
    bool done = en->done, taken = en->taken;
    int timeout_ms = W.timeout_ms;
    if (done) {
        rc = en->rec.rc;
        if (rc != TK_OK && e) *e = en->rec.err;
    } else {
        en->abandoned = true; /* the writer frees it now */
    }
    pthread_mutex_unlock(&W.mu);
    int64_t us = mono_us() - t0;
    atomic_fetch_add(&S.wait_count, 1);
    atomic_fetch_add(&S.wait_us_total, us);
    stat_max(&S.wait_us_max, us);
    if (done) {
        entry_free(en);
        return rc;
    }
    atomic_fetch_add(&S.timeouts, 1);
    return tk_err_set(e, TK_EUNAVAIL, "events_timeout",
                      "the event writer did not commit the %s %s event within events_timeout "
                      "(%d ms; the store is slow or stalled): %s",
                      ev->kind ? ev->kind : "", ev->action ? ev->action : "", timeout_ms,
                      taken ? "it may still be recorded" : "it was withdrawn and not recorded");
}

bool tk_events_writer_sync(int timeout_ms)
{
    struct timespec until;
    tk_mono_deadline(&until, timeout_ms);
    pthread_mutex_lock(&W.mu);
    uint64_t target = W.enq_no;
    bool ok = true;
    if (W.cv_ready)
        while (W.done_no < target && W.state != W_NONE)
            if (pthread_cond_timedwait(&W.done_cv, &W.mu, &until) == ETIMEDOUT) {
                ok = W.done_no >= target;
                break;
            }
    pthread_mutex_unlock(&W.mu);
    return ok;
}

/* ---- the writer ---- */

/* Up to BATCH_MAX entries off the queue, in order, marked taken; the
 * abandoned ones are withdrawn (freed, never written). *n: how many. */
static struct entry **take(int *n, uint64_t *last_no)
{
    pthread_mutex_lock(&W.mu);
    int want = W.count < BATCH_MAX ? (int)W.count : BATCH_MAX;
    struct entry **a = want ? tk_calloc((size_t)want, sizeof *a) : NULL;
    int k = 0;
    *last_no = W.done_no;
    for (int i = 0; i < want; i++) {
        struct entry *en = W.head;
        W.head = en->next;
        if (!W.head) W.tail = NULL;
        W.count--;
        W.bytes -= en->bytes;
        en->next = NULL;
        *last_no = en->no;
        if (en->abandoned) {
            atomic_fetch_add(&S.withdrawn, 1);
            entry_free(en);
            continue;
        }
        en->taken = true;
        a[k++] = en;
    }
    atomic_store(&S.queued, W.count);
    if (k == 0 && want > 0) { /* everything taken was withdrawn */
        W.done_no = *last_no;
        pthread_cond_broadcast(&W.done_cv);
    }
    pthread_mutex_unlock(&W.mu);
    *n = k;
    if (k == 0) {
        free(a);
        return NULL;
    }
    return a;
}

/* Tenant order (the lock order across nodes), then queue order. */
static int by_tenant(const void *pa, const void *pb)
{
    const struct entry *a = *(struct entry *const *)pa, *b = *(struct entry *const *)pb;
    int c = strcmp(a->rec.tenant ? a->rec.tenant : "", b->rec.tenant ? b->rec.tenant : "");
    if (c) return c;
    return a->no < b->no ? -1 : a->no > b->no;
}

static bool same_tenant(const struct entry *a, const struct entry *b)
{
    return !strcmp(a->rec.tenant ? a->rec.tenant : "", b->rec.tenant ? b->rec.tenant : "");
}

/* Write a[0..n) (sorted) in one transaction on db. */
static tk_rc write_batch(struct tk_db *db, struct entry **a, int n, struct tk_err *e)
{
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    struct tk_ev_rec **recs = tk_calloc((size_t)n, sizeof *recs);
    bool durable = false;
    for (int i = 0; i < n && rc == TK_OK;) {
        int j = i;
        while (j < n && same_tenant(a[i], a[j])) {
            recs[j - i] = &a[j]->rec;
            durable |= a[j]->rec.durable;
            j++;
        }
        rc = tk_ev_append(db, recs, j - i, W.bulk, e);
        i = j;
    }
    free(recs);
    if (rc == TK_OK && durable) tk_db_durable(db);
    if (rc == TK_OK)
        rc = tk_db_commit(db, e);
    else
        tk_db_rollback(db);
    return rc;
}

/* One event in its own transaction (after a batch failed repeatedly). */
static void write_one(struct entry *en)
{
    struct tk_err e;
    struct tk_db *db = tk_store_get(W.store, &e);
    tk_rc rc = db ? write_batch(db, &en, 1, &e) : TK_EUNAVAIL;
    tk_store_put(db);
    if (rc != TK_OK) {
        en->rec.rc = rc;
        en->rec.err = e;
    }
}

static void pause_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Drop the abandoned entries of a batch about to be retried: their
 * emitters have answered events_timeout. */
static int drop_abandoned(struct entry **a, int n)
{
    pthread_mutex_lock(&W.mu);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (a[i]->abandoned) {
            atomic_fetch_add(&S.withdrawn, 1);
            entry_free(a[i]);
        } else {
            a[k++] = a[i];
        }
    }
    pthread_mutex_unlock(&W.mu);
    return k;
}

/* Hand out the results of a[0..n) and free what nobody waits for. */
static void finish(struct entry **a, int n, uint64_t last_no)
{
    int64_t ok = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        struct tk_ev_rec *r = &a[i]->rec;
        if (r->rc == TK_OK) {
            ok++;
            continue;
        }
        failed++;
        if (!a[i]->waiter) /* a post: nobody else will hear of it */
            tk_warn("events: a posted %s %s event of tenant %s could not be recorded: %s",
                    r->f[EV_KIND] ? r->f[EV_KIND] : "", r->f[EV_ACTION] ? r->f[EV_ACTION] : "",
                    r->tenant ? r->tenant : "(none)", r->err.msg);
    }
    atomic_fetch_add(&S.written, ok);
    atomic_fetch_add(&S.failed, failed);
    pthread_mutex_lock(&W.mu);
    for (int i = 0; i < n; i++) {
        if (a[i]->waiter && !a[i]->abandoned)
            a[i]->done = true; /* the emitter frees it */
        else
            entry_free(a[i]);
    }
    if (last_no > W.done_no) W.done_no = last_no;
    pthread_cond_broadcast(&W.done_cv);
    pthread_mutex_unlock(&W.mu);
}

/* Write one batch, retrying as the header comment says. */
static void write_taken(struct entry **a, int n, uint64_t last_no)
{
    qsort(a, (size_t)n, sizeof *a, by_tenant);
    int64_t pause = RETRY_MS_MIN, give_up = 0;
    for (int attempt = 1;; attempt++) {
        struct tk_err e;
        tk_err_clear(&e);
        struct tk_db *db = tk_store_get(W.store, &e);
        tk_rc rc = db ? write_batch(db, a, n, &e) : TK_EUNAVAIL;
        tk_store_put(db);
        if (rc == TK_OK) {
            atomic_fetch_add(&S.batches, 1);
            stat_max(&S.batch_max, n);
            break;
        }
        atomic_fetch_add(&S.retries, 1);
        if (atomic_load(&stopping)) {
            if (!give_up) give_up = tk_mono_ms() + W.timeout_ms;
            if (tk_mono_ms() >= give_up) {
                tk_error("events: stopping, and the store does not take the last %d event(s) "
                         "(%s): they are lost",
                         n, e.msg);
                for (int i = 0; i < n; i++) {
                    a[i]->rec.rc = rc;
                    a[i]->rec.err = e;
                }
                break;
            }
        }
        if (rc != TK_EUNAVAIL && attempt >= RETRY_DIRECT) {
            tk_warn("events: a batch of %d event(s) failed %d times (%s): writing them one by "
                    "one",
                    n, attempt, e.msg);
            for (int i = 0; i < n; i++) write_one(a[i]);
            atomic_fetch_add(&S.batches, n);
            break;
        }
        if (attempt == 1 || attempt % 20 == 0)
            tk_warn("events: writing a batch of %d event(s) failed (retrying): %s", n, e.msg);
        pause_ms(pause);
        pause = pause * 2 > RETRY_MS_MAX ? RETRY_MS_MAX : pause * 2;
        n = drop_abandoned(a, n);
        if (n == 0) break;
    }
    finish(a, n, last_no);
}

static void drain(void)
{
    for (;;) {
        int n;
        uint64_t last_no;
        struct entry **a = take(&n, &last_no);
        if (!a) {
            pthread_mutex_lock(&W.mu);
            bool empty = W.count == 0;
            pthread_mutex_unlock(&W.mu);
            if (empty) return;
            continue;
        }
        write_taken(a, n, last_no);
        free(a);
    }
}

static void run(struct tk_worker *w, void *arg)
{
    (void)arg;
    while (tk_worker_wait(w, IDLE_MS)) drain();
    drain(); /* stopping: what is queued */
}

tk_rc tk_events_writer_start(struct tk_store *s, const struct tk_events_writer_opts *o,
                             struct tk_err *e)
{
    pthread_mutex_lock(&W.mu);
    if (W.state != W_NONE) {
        pthread_mutex_unlock(&W.mu);
        return tk_err_set(e, TK_EINTERNAL, "internal", "the event writer runs already");
    }
    if (!W.cv_ready) {
        tk_cond_init_mono(&W.done_cv);
        W.cv_ready = true;
    }
    W.store = s;
    W.bulk = !strcmp(tk_store_backend(s), "postgres");
    W.cap = o && o->queue > 0 ? o->queue : 10000;
    W.timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : 5000;
    W.bytes_cap = o && o->queue_bytes > 0 ? o->queue_bytes : QUEUE_BYTES_MAX;
    W.state = W_RUNNING;
    atomic_store(&S.queue_max, W.cap);
    atomic_store(&stopping, false);
    memset(&W.w, 0, sizeof W.w);
    pthread_mutex_unlock(&W.mu);
    tk_rc rc = tk_worker_start(&W.w, "event writer", run, NULL, e);
    if (rc != TK_OK) {
        pthread_mutex_lock(&W.mu);
        W.state = W_NONE;
        pthread_mutex_unlock(&W.mu);
    }
    return rc;
}

bool tk_events_writer_stop(int timeout_ms)
{
    pthread_mutex_lock(&W.mu);
    if (W.state != W_RUNNING) {
        pthread_mutex_unlock(&W.mu);
        return true;
    }
    W.state = W_STOPPING; /* posts are refused from here on */
    pthread_mutex_unlock(&W.mu);
    atomic_store(&stopping, true);
    bool joined = tk_worker_stop(&W.w, timeout_ms);
    if (!joined) {
        tk_error("events: the event writer is stuck in the store; %lld queued event(s) are left "
                 "to the process's exit",
                 (long long)atomic_load(&S.queued));
        return false; /* W stays STOPPING: nothing is queued any more */
    }
    pthread_mutex_lock(&W.mu);
    W.state = W_NONE;
    W.store = NULL;
    pthread_cond_broadcast(&W.done_cv);
    pthread_mutex_unlock(&W.mu);
    return true;
}
