/*
 * engine.c: the refresh engine. See engine.h.
 *
 * Threads: the scheduler (a worker: claims, defers, dispatches, releases,
 * counts), `threads` refresh threads (the two halves of the refresh) and
 * the outbound thread (the transfers; its done callback only queues the
 * answer). An item is one claimed connection; it lives in exactly one
 * place at a time: the deferred list (scheduler), the job queue, a refresh
 * thread's hands, or the outbound client.
 */
#include "engine.h"

#include "../common/log.h"
#include "../common/metrics.h"
#include "../common/worker.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLAIM_MAX 256        /* rows claimed per round at most */
#define RELEASE_CHUNK 200    /* ids per release statement */
#define NONE_HOLD_MS 5000    /* a refresh that did not happen: not claimed again before */
#define BUSY_HOLD_MS 1000    /* the outbound queue was full */
#define MIN_WAIT_MS 20       /* a round that found work but could not claim it */
#define ROUND_GAP_MS 25      /* rounds (each a write or two) at most this often while busy */

static const char *const outcome_names[] = {"ok", "error", "failed"};
static const char *const status_names[] = {"ok", "expiring_soon", "refresh_error",
                                           "needs_reconnect", "disabled"};
enum { ST_OK, ST_SOON, ST_ERROR, ST_RECONNECT, ST_DISABLED, ST_N };

enum item_kind { IT_START, IT_FINISH };

struct item {
    struct item *next;
    struct tk_engine *g;
    char id[TK_UUID_LEN + 1], tenant[TK_UUID_LEN + 1];
    int prov;              /* catalogue index; nprov: not in the catalogue */
    int64_t leased_wall;   /* when the lease was taken or last renewed (wall ms) */
    int64_t t0_us;         /* dispatched (monotonic) */
    enum item_kind kind;
    struct tk_refresh_op *op;
    struct tk_out_result ans; /* IT_FINISH: the answer, owned */
};

struct idlist {
    char (*ids)[TK_UUID_LEN + 1];
    int n, cap;
};

struct tk_engine {
    const struct tk_catalog *cat;
    int nprov;
    struct tk_refresh_ctx ctx;
    struct tk_engine_opts o;
    char owner[96];
    struct tk_lease_spec spec;
    struct tk_worker sched;
    pthread_t *threads;
    int nthreads;
    bool started, stopped;

    /* SQLite has one writer at a time, and a writer that finds the lock
     * taken sleeps in the busy handler (1, 2, 5, 10 ms...): the refresh
     * threads take turns for their commits instead */
    bool serial_commits;
    pthread_mutex_t commit_mu;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* jobs for the refresh threads; threads_stop */
    pthread_cond_t idle_cv; /* in_flight went down (stop waits on it) */
    struct item *q_head, *q_tail;
    struct item *def_head, *def_tail; /* claimed, waiting for their provider's slot */
    int in_flight;                    /* dispatched and not finished */
    int deferred;
    int *per;                         /* in flight per provider, nprov + 1 */
    struct idlist release, hold;      /* leases to release; to hold for a while */
    bool threads_stop;                /* refresh threads: finish the queue and return */
    bool closed;                      /* after stop: late answers are dropped */

    /* metrics */
    struct tk_metric *attempts, *duration;
    atomic_llong count[ST_N];
    atomic_bool counted;
    atomic_llong soonest_ms; /* INT64_MAX: no connection to expire */
    int64_t last_stats_mono;
    atomic_ullong st_claimed, st_started, st_finished, st_ok, st_error, st_failed, st_none,
        st_busy, st_rounds, st_prepare_us, st_complete_us;
};

int64_t tk_engine_lease_ms(int64_t timeout_ms)
{
    if (timeout_ms <= 0) timeout_ms = 30000;
    return 2 * timeout_ms + 5000;
}

/* ---- metrics ---- */

static double m_connections(void *arg, size_t idx)
{
    struct tk_engine *g = arg;
    if (!atomic_load(&g->counted) || idx >= ST_N) return NAN;
    return (double)atomic_load(&g->count[idx]);
}

static double m_soonest(void *arg, size_t idx)
{
    (void)idx;
    struct tk_engine *g = arg;
    int64_t s = atomic_load(&g->soonest_ms);
    if (!atomic_load(&g->counted) || s == INT64_MAX) return NAN;
    return (double)(s - tk_now_ms()) / 1000.0;
}

tk_rc tk_engine_new(const struct tk_catalog *cat, struct tk_metrics *m, struct tk_engine **out,
                    struct tk_err *e)
{
    struct tk_engine *g = tk_calloc(1, sizeof *g);
    g->cat = cat;
    g->nprov = cat ? (int)tk_catalog_count(cat) : 0;
    g->per = tk_calloc((size_t)g->nprov + 1, sizeof *g->per);
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->commit_mu, NULL);
    tk_cond_init_mono(&g->cv);
    tk_cond_init_mono(&g->idle_cv);
    atomic_store(&g->soonest_ms, INT64_MAX);
    *out = g;
    if (!m) return TK_OK;

    const char **names = tk_calloc((size_t)g->nprov + 1, sizeof *names);
    for (int i = 0; i < g->nprov; i++)
        names[i] = tk_catalog_at(cat, (size_t)i)->name;
    if (g->nprov == 0) names[0] = "none"; /* a dimension needs a value */
    const struct tk_dim attempt_dims[] = {
        {"outcome", outcome_names, TK_NELEM(outcome_names), NULL, NULL},
        {"provider", names, g->nprov ? (size_t)g->nprov : 1, NULL, NULL}};
    static const struct tk_dim status_dim = {"status", status_names, TK_NELEM(status_names),
                                             NULL, NULL};
    static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,  5,     10,   30,  60};
    bool ok =
        tk_metric_gauge_fn(m, "tokend_connections",
                           "Upstream connections by status (counted every few seconds by the "
                           "refresh engine; expiring_soon: ok and expiring within refresh_ahead).",
                           &status_dim, 1, m_connections, g, e) &&
        (g->attempts = tk_metric_counter(m, "tokend_refresh_attempts_total",
                                         "Refresh attempts by outcome (ok, error: transient, "
                                         "failed: permanent) and provider.",
                                         attempt_dims, 2, TK_METRIC_SPARSE, e)) &&
        (g->duration = tk_metric_histogram(m, "tokend_refresh_duration_seconds",
                                           "Time of a refresh attempt, from its start to its "
                                           "commit (the upstream call included).",
                                           NULL, 0, bounds, TK_NELEM(bounds), 0, e)) &&
        tk_metric_gauge_fn(m, "tokend_connections_soonest_expiry_seconds",
                           "Seconds until the soonest access token expiry among connections "
                           "that are not needs_reconnect or disabled (negative: expired).",
                           NULL, 0, m_soonest, g, e);
    free(names);
    return ok ? TK_OK : TK_EINTERNAL;
}

static int prov_index(const struct tk_engine *g, const char *name)
{
    if (name)
        for (int i = 0; i < g->nprov; i++)
            if (!strcmp(tk_catalog_at(g->cat, (size_t)i)->name, name)) return i;
    return g->nprov;
}

static void count_attempt(struct tk_engine *g, int prov, enum tk_refresh_outcome o,
                          int64_t duration_us)
{
    if (o == TK_REFRESH_NONE) return;
    if (prov >= 0 && prov < g->nprov) {
        size_t pos[2] = {(size_t)o, (size_t)prov};
        tk_metric_inc(g->attempts, tk_metric_index(g->attempts, pos));
    }
    tk_metric_observe(g->duration, 0, (double)duration_us / 1e6);
}

void tk_engine_note(struct tk_engine *g, const char *provider, enum tk_refresh_outcome o,
                    int64_t duration_us)
{
    if (!g) return;
    count_attempt(g, prov_index(g, provider), o, duration_us);
}

void tk_engine_stats(struct tk_engine *g, struct tk_engine_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!g) return;
    st->claimed = atomic_load(&g->st_claimed);
    st->started = atomic_load(&g->st_started);
    st->finished = atomic_load(&g->st_finished);
    st->ok = atomic_load(&g->st_ok);
    st->error = atomic_load(&g->st_error);
    st->failed = atomic_load(&g->st_failed);
    st->none = atomic_load(&g->st_none);
    st->busy = atomic_load(&g->st_busy);
    st->rounds = atomic_load(&g->st_rounds);
    st->prepare_us = atomic_load(&g->st_prepare_us);
    st->complete_us = atomic_load(&g->st_complete_us);
    pthread_mutex_lock(&g->mu);
    st->in_flight = g->in_flight;
    st->deferred = g->deferred;
    pthread_mutex_unlock(&g->mu);
}

/* ---- id lists (under mu) ---- */

static void idlist_add(struct idlist *l, const char *id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->ids = tk_realloc(l->ids, (size_t)l->cap * sizeof *l->ids);
    }
    snprintf(l->ids[l->n++], TK_UUID_LEN + 1, "%s", id);
}

/* Move l's ids to a fresh list the caller owns. */
static struct idlist idlist_take(struct idlist *l)
{
    struct idlist t = *l;
    memset(l, 0, sizeof *l);
    return t;
}

/* ---- the job queue ---- */

static void push_job(struct tk_engine *g, struct item *it)
{
    it->next = NULL;
    if (g->q_tail)
        g->q_tail->next = it;
    else
        g->q_head = it;
    g->q_tail = it;
    pthread_cond_signal(&g->cv);
}

/* An item is done with (any way): its slot is free; its lease goes to the
 * release list (or the hold list: not claimed again for a while). */
static void item_done(struct tk_engine *g, struct item *it, bool hold)
{
    pthread_mutex_lock(&g->mu);
    g->in_flight--;
    g->per[it->prov]--;
    idlist_add(hold ? &g->hold : &g->release, it->id);
    pthread_cond_broadcast(&g->idle_cv);
    pthread_mutex_unlock(&g->mu);
    atomic_fetch_add(&g->st_finished, 1);
    tk_worker_kick(&g->sched); /* a slot is free; leases to release */
    free(it);
}

static void finish_result(struct tk_engine *g, struct item *it, struct tk_refresh_result *res)
{
    int64_t us = tk_mono_us() - it->t0_us;
    count_attempt(g, it->prov, res->outcome, us);
    switch (res->outcome) {
    case TK_REFRESH_OK: atomic_fetch_add(&g->st_ok, 1); break;
    case TK_REFRESH_ERROR: atomic_fetch_add(&g->st_error, 1); break;
    case TK_REFRESH_FAILED: atomic_fetch_add(&g->st_failed, 1); break;
    default: atomic_fetch_add(&g->st_none, 1); break;
    }
    /* NONE with an error (store down, sealed): hold the lease a while, so
     * the connection is not claimed again at once; NONE without one (the
     * row changed under us: someone else refreshed) and every attempt:
     * release, its next_refresh_at says when it is due again */
    bool hold = res->outcome == TK_REFRESH_NONE && res->rc != TK_OK;
    if (res->outcome == TK_REFRESH_NONE && res->rc != TK_OK)
        tk_debug("refresh: connection %s not refreshed now: %s", it->id, res->err.msg);
    tk_refresh_result_free(res);
    item_done(g, it, hold);
}

/* The outbound thread: keep the answer, queue the second half. Short. */
static void on_answer(const struct tk_out_result *ans, void *arg)
{
    struct item *it = arg;
    struct tk_engine *g = it->g;
    pthread_mutex_lock(&g->mu);
    if (g->closed) { /* stopped: nobody completes it; its lease runs out */
        g->in_flight--;
        g->per[it->prov]--;
        pthread_mutex_unlock(&g->mu);
        tk_conn_refresh_abandon(it->op);
        free(it);
        return;
    }
    tk_out_result_copy(&it->ans, ans);
    it->kind = IT_FINISH;
    push_job(g, it);
    pthread_mutex_unlock(&g->mu);
}

static void run_start(struct tk_engine *g, struct item *it)
{
    struct tk_refresh_result res;
    struct tk_refresh_opts opts = {0};
    struct tk_refresh_op *op = NULL;
    memset(&res, 0, sizeof res);
    it->t0_us = tk_mono_us();
    atomic_fetch_add(&g->st_started, 1);
    tk_conn_refresh_prepare(&g->ctx, it->tenant, it->id, TK_REFRESH_SCHEDULED, &opts, &op, &res);
    atomic_fetch_add(&g->st_prepare_us, (unsigned long long)(tk_mono_us() - it->t0_us));
    if (!op) {
        finish_result(g, it, &res);
        return;
    }
    tk_refresh_result_free(&res);
    it->op = op;
    struct tk_err e;
    tk_err_clear(&e);
    /* it may be answered, completed and freed before submit returns */
    if (tk_out_submit(g->ctx.out, tk_refresh_op_req(op), on_answer, it, NULL, &e) == TK_OK)
        return;
    tk_conn_refresh_abandon(op);
    atomic_fetch_add(&g->st_busy, 1);
    tk_debug("refresh: connection %s not sent now: %s", it->id, e.msg);
    item_done(g, it, true);
}

static void run_finish(struct tk_engine *g, struct item *it)
{
    struct tk_refresh_result res;
    memset(&res, 0, sizeof res);
    int64_t t0 = tk_mono_us();
    if (g->serial_commits) pthread_mutex_lock(&g->commit_mu);
    tk_conn_refresh_complete(&g->ctx, it->op, &it->ans, &res); /* frees op */
    if (g->serial_commits) pthread_mutex_unlock(&g->commit_mu);
    atomic_fetch_add(&g->st_complete_us, (unsigned long long)(tk_mono_us() - t0));
    it->op = NULL;
    tk_out_result_free(&it->ans);
    finish_result(g, it, &res);
}

static void *refresh_thread(void *arg)
{
    struct tk_engine *g = arg;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        while (!g->q_head && !g->threads_stop)
            pthread_cond_wait(&g->cv, &g->mu);
        struct item *it = g->q_head;
        if (!it) {
            pthread_mutex_unlock(&g->mu);
            return NULL;
        }
        g->q_head = it->next;
        if (!g->q_head) g->q_tail = NULL;
        bool stopping = g->threads_stop;
        pthread_mutex_unlock(&g->mu);
        if (it->kind == IT_FINISH)
            run_finish(g, it); /* an answer came: commit it, whatever happens next */
        else if (stopping)
            item_done(g, it, false); /* not started: free for another node */
        else
            run_start(g, it);
    }
}

/* ---- the scheduler ---- */

/* Release (or hold) the leases of finished items. */
static void flush_leases(struct tk_engine *g, struct tk_db *db)
{
    pthread_mutex_lock(&g->mu);
    struct idlist rel = idlist_take(&g->release), hold = idlist_take(&g->hold);
    pthread_mutex_unlock(&g->mu);
    struct tk_err e;
    for (int i = 0; i < rel.n; i += RELEASE_CHUNK) {
        int n = rel.n - i < RELEASE_CHUNK ? rel.n - i : RELEASE_CHUNK;
        const char *ids[RELEASE_CHUNK];
        for (int j = 0; j < n; j++)
            ids[j] = rel.ids[i + j];
        if (tk_lease_release_many(db, &g->spec, ids, n, g->owner, &e) != TK_OK) {
            tk_debug("refresh: cannot release %d lease(s) (they run out): %s", n, e.msg);
            break;
        }
    }
    int64_t now = tk_now_ms();
    for (int i = 0; i < hold.n; i++) {
        bool held;
        if (tk_lease_renew(db, &g->spec, hold.ids[i], g->owner, now, now + NONE_HOLD_MS, &held,
                           &e) != TK_OK)
            break; /* the lease runs out by itself */
    }
    free(rel.ids);
    free(hold.ids);
}

/* Count connections by status and the soonest expiry (for the metrics). */
static void count_status(struct tk_engine *g, struct tk_db *db)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t now = tk_now_ms(), ahead = (g->ctx.ahead_s > 0 ? g->ctx.ahead_s : 300) * 1000;
    tk_rc rc = tk_db_exec(db,
                          "SELECT status, COUNT(*), SUM(CASE WHEN expires_at <= ? THEN 1 ELSE 0 "
                          "END), MIN(expires_at) FROM connections GROUP BY status",
                          TK_ARGS(TK_INT(now + ahead)), &r, &e);
    if (rc != TK_OK) {
        tk_debug("refresh: cannot count connections: %s", e.msg);
        tk_rows_free(r);
        return;
    }
    int64_t c[ST_N] = {0}, soonest = INT64_MAX;
    for (int i = 0; i < tk_rows_count(r); i++) {
        const char *s = tk_rows_text(r, i, 0);
        int64_t n = tk_rows_int(r, i, 1), soon = tk_rows_int(r, i, 2), min = tk_rows_int(r, i, 3);
        if (!s) continue;
        if (!strcmp(s, "ok")) {
            c[ST_OK] += n - soon;
            c[ST_SOON] += soon;
        } else if (!strcmp(s, "refresh_error")) {
            c[ST_ERROR] += n;
        } else if (!strcmp(s, "needs_reconnect")) {
            c[ST_RECONNECT] += n;
        } else if (!strcmp(s, "disabled")) {
            c[ST_DISABLED] += n;
        }
        if ((!strcmp(s, "ok") || !strcmp(s, "refresh_error")) && !tk_rows_null(r, i, 3) &&
            min < soonest)
            soonest = min;
    }
    tk_rows_free(r);
    for (int i = 0; i < ST_N; i++)
        atomic_store(&g->count[i], c[i]);
    atomic_store(&g->soonest_ms, soonest);
    atomic_store(&g->counted, true);
}

/* Fill each item's provider index from its app: LOOKUP_CHUNK ids per
 * statement (short chunks repeat their last id: one prepared statement). */
#define LOOKUP_CHUNK 16
static void lookup_providers(struct tk_engine *g, struct tk_db *db, struct item **items, int n)
{
    char sql[160 + LOOKUP_CHUNK * 3];
    int len = snprintf(sql, sizeof sql,
                       "SELECT c.id, a.provider FROM connections c JOIN provider_apps a ON "
                       "a.id = c.app_id WHERE c.id IN (");
    for (int i = 0; i < LOOKUP_CHUNK; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, i ? ", ?" : "?");
    snprintf(sql + len, sizeof sql - (size_t)len, ")");
    for (int i = 0; i < n; i++)
        items[i]->prov = g->nprov;
    for (int at = 0; at < n; at += LOOKUP_CHUNK) {
        struct tk_val args[LOOKUP_CHUNK];
        for (int i = 0; i < LOOKUP_CHUNK; i++)
            args[i] = TK_TEXT(items[at + i < n ? at + i : n - 1]->id);
        struct tk_rows *r = NULL;
        struct tk_err e;
        if (tk_db_exec(db, sql, args, LOOKUP_CHUNK, &r, &e) != TK_OK) {
            tk_debug("refresh: cannot read the providers of claimed connections: %s", e.msg);
        } else {
            for (int k = 0; k < tk_rows_count(r); k++) {
                const char *id = tk_rows_text(r, k, 0);
                int p = prov_index(g, tk_rows_text(r, k, 1));
                for (int i = at; id && i < n && i < at + LOOKUP_CHUNK; i++)
                    if (!strcmp(items[i]->id, id)) items[i]->prov = p;
            }
        }
        tk_rows_free(r);
    }
}

/* Under mu: may this provider start one more? */
static bool slot_free(const struct tk_engine *g, int prov)
{
    return g->per[prov] < g->o.per_provider;
}

/* Under mu: start it (count it in flight, queue its first half). */
static void dispatch(struct tk_engine *g, struct item *it)
{
    g->in_flight++;
    g->per[it->prov]++;
    it->kind = IT_START;
    push_job(g, it);
}

/* Deferred items whose provider has a slot now: renew their lease when it
 * is old, and dispatch them. */
static void run_deferred(struct tk_engine *g, struct tk_db *db)
{
    int64_t now = tk_now_ms();
    struct item *ready = NULL, **tail = &ready;
    pthread_mutex_lock(&g->mu);
    struct item **pp = &g->def_head, *last = NULL;
    while (*pp) {
        struct item *it = *pp;
        if (slot_free(g, it->prov)) {
            *pp = it->next;
            g->deferred--;
            g->in_flight++; /* reserve the slot now */
            g->per[it->prov]++;
            it->next = NULL;
            *tail = it;
            tail = &it->next;
        } else {
            last = it;
            pp = &it->next;
        }
    }
    g->def_tail = last;
    pthread_mutex_unlock(&g->mu);
    while (ready) {
        struct item *it = ready;
        ready = it->next;
        bool held = true;
        struct tk_err e;
        if (now - it->leased_wall > g->o.lease_ms / 3) {
            if (tk_lease_renew(db, &g->spec, it->id, g->owner, now, now + g->o.lease_ms, &held,
                               &e) != TK_OK)
                held = false;
            it->leased_wall = now;
        }
        pthread_mutex_lock(&g->mu);
        g->in_flight--;
        g->per[it->prov]--;
        if (held)
            dispatch(g, it);
        pthread_mutex_unlock(&g->mu);
        if (!held) free(it); /* lost it (expired; another node may have it) */
    }
}

/* Claim up to limit due connections and dispatch or defer them. Returns
 * how many were claimed, -1 on a store error. */
static int claim_round(struct tk_engine *g, struct tk_db *db, int limit)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t now = tk_now_ms();
    if (tk_lease_claim(db, &g->spec, g->owner, now, now + g->o.lease_ms, limit, &r, &e) !=
        TK_OK) {
        tk_warn("refresh: cannot claim due connections: %s", e.msg);
        tk_rows_free(r);
        return -1;
    }
    int n = tk_rows_count(r);
    struct item *items[CLAIM_MAX];
    int k = 0;
    for (int i = 0; i < n && k < CLAIM_MAX; i++) {
        const char *id = tk_rows_text(r, i, 0), *tenant = tk_rows_text(r, i, 1);
        if (!id || !tenant || strlen(id) > TK_UUID_LEN || strlen(tenant) > TK_UUID_LEN) continue;
        struct item *it = tk_calloc(1, sizeof *it);
        it->g = g;
        snprintf(it->id, sizeof it->id, "%s", id);
        snprintf(it->tenant, sizeof it->tenant, "%s", tenant);
        it->leased_wall = now;
        items[k++] = it;
    }
    tk_rows_free(r);
    if (k == 0) return n;
    atomic_fetch_add(&g->st_claimed, (unsigned long long)k);
    lookup_providers(g, db, items, k);
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < k; i++) {
        if (slot_free(g, items[i]->prov)) {
            dispatch(g, items[i]);
        } else {
            items[i]->next = NULL;
            if (g->def_tail)
                g->def_tail->next = items[i];
            else
                g->def_head = items[i];
            g->def_tail = items[i];
            g->deferred++;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* When the next connection not leased comes due (ms from now; -1: none). */
static int64_t next_due_in(struct tk_engine *g, struct tk_db *db)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t now = tk_now_ms(), in = -1;
    if (tk_db_exec(db,
                   "SELECT MIN(next_refresh_at) FROM connections WHERE next_refresh_at IS NOT "
                   "NULL AND (lease_until IS NULL OR lease_until <= ?)",
                   TK_ARGS(TK_INT(now)), &r, &e) == TK_OK &&
        tk_rows_count(r) == 1 && !tk_rows_null(r, 0, 0))
        in = tk_rows_int(r, 0, 0) - now;
    tk_rows_free(r);
    (void)g;
    return in < 0 && in != -1 ? 0 : in;
}

static void scheduler(struct tk_worker *w, void *arg)
{
    struct tk_engine *g = arg;
    int64_t wait = 0;
    int64_t last = 0;
    while (tk_worker_wait(w, wait)) {
        /* finished refreshes kick every time: gather them, so that claims
         * and releases are a few statements per batch, not two per refresh
         * (on SQLite every one takes the write lock the commits need) */
        int64_t since = tk_mono_ms() - last;
        if (last && since < ROUND_GAP_MS && !tk_worker_wait(w, 0)) break;
        if (last && since < ROUND_GAP_MS) {
            struct timespec ts = {0, (long)(ROUND_GAP_MS - since) * 1000000L};
            nanosleep(&ts, NULL);
        }
        last = tk_mono_ms();
        atomic_fetch_add(&g->st_rounds, 1);
        wait = g->o.idle_ms;
        struct tk_err e;
        struct tk_db *db = tk_store_get(g->ctx.store, &e);
        if (!db) {
            tk_debug("refresh: no store connection: %s", e.msg);
            continue;
        }
        flush_leases(g, db);
        int64_t mono = tk_mono_ms();
        if (!g->last_stats_mono || mono - g->last_stats_mono >= g->o.stats_ms) {
            g->last_stats_mono = mono;
            count_status(g, db);
        }
        if (g->o.concurrency > 0 && !tk_keyring_sealed(g->ctx.keyring)) {
            run_deferred(g, db);
            pthread_mutex_lock(&g->mu);
            int room = g->o.concurrency - g->in_flight - g->deferred;
            pthread_mutex_unlock(&g->mu);
            int limit = room < CLAIM_MAX ? room : CLAIM_MAX;
            int got = limit > 0 ? claim_round(g, db, limit) : 0;
            if (got < 0) {
                wait = g->o.idle_ms;
            } else if (limit > 0 && got == limit) {
                wait = 0; /* more may be due */
            } else if (limit > 0) {
                int64_t in = next_due_in(g, db);
                if (in >= 0 && in < wait) wait = in < MIN_WAIT_MS ? MIN_WAIT_MS : in;
            }
            /* room 0: a finished refresh kicks */
        }
        tk_store_put(db);
    }
}

/* ---- start and stop ---- */

tk_rc tk_engine_start(struct tk_engine *g, const struct tk_refresh_ctx *ctx,
                      const struct tk_engine_opts *o, struct tk_err *e)
{
    g->ctx = *ctx;
    g->o = *o;
    if (g->o.per_provider <= 0) g->o.per_provider = g->o.concurrency > 0 ? g->o.concurrency : 1;
    if (g->o.threads <= 0) g->o.threads = 2;
    if (g->o.lease_ms <= 0) g->o.lease_ms = tk_engine_lease_ms(ctx->timeout_ms);
    if (g->o.idle_ms <= 0) g->o.idle_ms = 2000;
    if (g->o.stats_ms <= 0) g->o.stats_ms = 5000;
    snprintf(g->owner, sizeof g->owner, "%s", o->owner && o->owner[0] ? o->owner : "engine");
    g->spec = TK_CONN_LEASE;
    g->serial_commits = ctx->store && !strcmp(tk_store_backend(ctx->store), "sqlite");
    g->nthreads = g->o.concurrency > 0 ? g->o.threads : 0;
    g->threads = tk_calloc((size_t)g->nthreads + 1, sizeof *g->threads);
    for (int i = 0; i < g->nthreads; i++)
        if (tk_thread_create(&g->threads[i], refresh_thread, g) != 0) {
            g->nthreads = i;
            tk_engine_stop(g, 0);
            return tk_err_set(e, TK_EINTERNAL, "internal", "cannot start a refresh thread");
        }
    tk_rc rc = tk_worker_start(&g->sched, "refresh scheduler", scheduler, g, e);
    if (rc != TK_OK) {
        tk_engine_stop(g, 0);
        return rc;
    }
    g->started = true;
    if (g->o.concurrency > 0)
        tk_info("refresh: engine started (at most %d connections at once, %d per provider, %d "
                "thread(s), lease %lld ms)",
                g->o.concurrency, g->o.per_provider, g->nthreads, (long long)g->o.lease_ms);
    else
        tk_info("refresh: engine off (refresh_concurrency 0): connections are refreshed only "
                "when asked");
    return TK_OK;
}

void tk_engine_kick(struct tk_engine *g)
{
    if (g) tk_worker_kick(&g->sched);
}

void tk_engine_stop(struct tk_engine *g, int wait_ms)
{
    if (!g || g->stopped) return;
    g->stopped = true;
    tk_worker_stop(&g->sched, 0); /* no more claims */
    /* what was claimed but not started: free for other nodes */
    pthread_mutex_lock(&g->mu);
    struct item *d = g->def_head;
    g->def_head = g->def_tail = NULL;
    g->deferred = 0;
    while (d) {
        struct item *n = d->next;
        idlist_add(&g->release, d->id);
        free(d);
        d = n;
    }
    /* the refreshes in flight: their answers are committed, up to wait_ms */
    struct timespec dl;
    tk_mono_deadline(&dl, wait_ms);
    while (g->in_flight > 0 && wait_ms > 0)
        if (pthread_cond_timedwait(&g->idle_cv, &g->mu, &dl) != 0) break;
    g->threads_stop = true; /* threads: finish the queue, then return */
    g->closed = true;       /* answers that come from now on are dropped (leases run out) */
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < g->nthreads; i++)
        pthread_join(g->threads[i], NULL);
    g->nthreads = 0;
    pthread_mutex_lock(&g->mu);
    int left = g->in_flight;
    pthread_mutex_unlock(&g->mu);
    struct tk_engine_stats st;
    tk_engine_stats(g, &st);
    if (st.started)
        tk_info("refresh: engine stopped: %llu started, %llu ok, %llu error, %llu failed, %llu "
                "not done; per refresh %llu us preparing, %llu us completing",
                (unsigned long long)st.started, (unsigned long long)st.ok,
                (unsigned long long)st.error, (unsigned long long)st.failed,
                (unsigned long long)(st.none + st.busy),
                (unsigned long long)(st.prepare_us / st.started),
                (unsigned long long)(st.finished ? st.complete_us / st.finished : 0));
    if (left > 0)
        tk_warn("refresh: %d refresh(es) still waiting for the upstream at stop; their "
                "connections are retried when their leases run out",
                left);
    if (g->ctx.store) {
        struct tk_err e;
        struct tk_db *db = tk_store_get(g->ctx.store, &e);
        if (db) flush_leases(g, db);
        tk_store_put(db);
    }
}

void tk_engine_free(struct tk_engine *g)
{
    if (!g) return;
    tk_engine_stop(g, 0);
    struct item *q = g->q_head;
    while (q) { /* none after stop, but a start that failed half-way */
        struct item *n = q->next;
        if (q->op) tk_conn_refresh_abandon(q->op);
        tk_out_result_free(&q->ans);
        free(q);
        q = n;
    }
    free(g->release.ids);
    free(g->hold.ids);
    free(g->threads);
    free(g->per);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->commit_mu);
    pthread_cond_destroy(&g->cv);
    pthread_cond_destroy(&g->idle_cv);
    free(g);
}
