/*
 * events_stream.c: GET /v1/events/stream, the event log as server-sent
 * events, and its pump.
 *
 * One pump thread per node (a worker.h worker, every PUMP_EVERY_MS) serves
 * every stream: per tenant with streams open it reads the events after the
 * seq of its streams at the head (one query per tenant and round, at most
 * PUMP_PAGE events, not one query per stream), and fans them out, each
 * stream taking those past its own seq that match its filters. A stream
 * that starts behind (Last-Event-ID, after) catches up PUMP_PAGE events a
 * round in up to PUMP_CATCHUP extra queries (paced by its buffer, see
 * pump_tenant), without holding back the streams at the head. Lines: "id: <seq>" and "data: <the
 * event as GET /v1/events shows it>"; a comment line every heartbeat (below idle_timeout) so that
 * proxies and the client see the stream alive and a client gone is noticed; and "event: end" with
 * data
 * {"reason": ...} when the stream ends: "revoked" (the principal's token, or the console session it was opened by, re-checked every
 * REVOKE_CHECK_MS, is revoked or expired), "sealed" (the node sealed) or "node_stopping" (written
 * by the HTTP server at quiesce). A stream whose reader does not keep up is cut by the HTTP server
 * (stream_buffer) and dropped here.
 *
 * The handler holds its store connection only to read the start seq; the
 * stream itself holds none (the pump takes one per round). A tenant holds
 * at most max_streams_per_tenant streams (tk_evpump_admit, counted until
 * the pump frees the stream), so that one tenant cannot take all of
 * max_streams.
 */
#include "api.h"

#include "../events/events.h"
#include "../common/log.h"
#include "../keyring/keyring.h"
#include "../console/console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUMP_EVERY_MS 200
#define PUMP_PAGE 500
#define PUMP_CATCHUP 3 /* pages per tenant and round for streams behind the head */
#define REVOKE_CHECK_MS 1000

struct sub {
    struct sub *next;
    struct tk_stream *s;
    struct tk_principal p;
    char kind[65], source[65], action[65], outcome[65], subject[65];
    int64_t since, until; /* at_ms bounds (0: none) */
    int64_t last;         /* seq of the last event handled */
    int64_t next_check_ms, last_write_ms;
    bool done;
    bool stalled;       /* its buffer is half full: skipped this round */
    bool served;        /* had its page this round */
    bool caught_up;     /* its last page was not full: it stands at the head */
    int64_t checked_ms; /* when its token was last looked up, and the answer */
    bool active;
};

/* Streams per tenant (max_streams_per_tenant), under the pump's mu. */
struct tcount {
    struct tcount *next;
    char tenant[TK_UUID_LEN + 1];
    int n;
};

struct tk_evpump {
    struct tk_app *app;
    struct tk_worker w;
    pthread_mutex_t mu;
    struct sub *pending; /* added by handlers, taken by the pump */
    struct tcount *counts;
    int per_tenant;
    int heartbeat_ms;
    size_t high_water; /* stream_buffer / 2 */
};

static void copy_filter(char *dst, const char *src)
{
    snprintf(dst, 65, "%s", src ? src : "");
}

static void sub_end(struct sub *x, const char *reason)
{
    char line[96];
    int n = snprintf(line, sizeof line, "event: end\ndata: {\"reason\":\"%s\"}\n\n", reason);
    (void)tk_stream_write(x->s, line, (size_t)n);
    x->done = true;
}

static struct tcount **count_of(struct tk_evpump *pp, const char *tenant)
{
    struct tcount **pc = &pp->counts;
    while (*pc && strcmp((*pc)->tenant, tenant) != 0)
        pc = &(*pc)->next;
    return pc;
}

/* Count one more under key (a tenant id, or a console session id: both
 * UUIDs, so they never collide) unless it holds limit already. */
static bool admit_key(struct tk_evpump *pp, const char *key, int limit)
{
    pthread_mutex_lock(&pp->mu);
    struct tcount **pc = count_of(pp, key);
    bool ok = !*pc || (*pc)->n < limit;
    if (ok) {
        if (!*pc) {
            *pc = tk_calloc(1, sizeof **pc);
            snprintf((*pc)->tenant, sizeof(*pc)->tenant, "%s", key);
        }
        (*pc)->n++;
    }
    pthread_mutex_unlock(&pp->mu);
    return ok;
}

bool tk_evpump_admit(struct tk_evpump *pp, const char *tenant_id, int *limit)
{
    *limit = pp->per_tenant;
    return admit_key(pp, tenant_id, pp->per_tenant);
}

void tk_evpump_unadmit(struct tk_evpump *pp, const char *tenant_id)
{
    pthread_mutex_lock(&pp->mu);
    struct tcount **pc = count_of(pp, tenant_id);
    if (*pc && --(*pc)->n <= 0) {
        struct tcount *c = *pc;
        *pc = c->next;
        free(c);
    }
    pthread_mutex_unlock(&pp->mu);
}

bool tk_evpump_admit_session(struct tk_evpump *pp, const char *session_id)
{
    return admit_key(pp, session_id, TK_STREAMS_PER_SESSION);
}

/* Not under pp->mu. */
static void sub_free(struct tk_evpump *pp, struct sub *x)
{
    tk_stream_close(x->s);
    tk_evpump_unadmit(pp, x->p.tenant_id);
    if (x->p.session_id[0]) tk_evpump_unadmit(pp, x->p.session_id);
    free(x);
}

static bool field_is(json_t *ev, const char *name, const char *want)
{
    if (!want[0]) return true;
    const char *v = json_string_value(json_object_get(ev, name));
    return v && !strcmp(v, want);
}

static bool matches(const struct sub *x, json_t *ev)
{
    int64_t at = json_integer_value(json_object_get(ev, "at_ms"));
    return field_is(ev, "kind", x->kind) && field_is(ev, "source", x->source) &&
           field_is(ev, "action", x->action) && field_is(ev, "outcome", x->outcome) &&
           field_is(ev, "subject_id", x->subject) && (!x->since || at >= x->since) &&
           (!x->until || at < x->until);
}

static void sub_write(struct sub *x, const char *data, size_t n, int64_t now)
{
    if (tk_stream_write(x->s, data, n) != TK_OK) x->done = true; /* cut or gone */
    x->last_write_ms = now;
}

/* One page of a tenant's events after seq `after`, fanned out to the
 * streams that stand at or past it (a stream behind `after` must not take
 * these: it would skip the events between). Returns false when the store
 * could not be read. */
static bool serve_page(struct tk_evpump *pp, struct tk_db *db, struct sub *subs, const char *tenant,
                       int64_t after, int64_t now)
{
    struct tk_event_query q = {
        .tenant_id = tenant, .follow = true, .after = after, .limit = PUMP_PAGE};
    json_t *evs = NULL;
    int64_t next;
    struct tk_err e;
    if (tk_events_list(db, &q, &evs, &next, &e) != TK_OK) {
        tk_warn("events stream: cannot read the events of tenant %s: %s", tenant, e.msg);
        return false;
    }
    size_t n = json_array_size(evs);
    int64_t page_last =
        n ? json_integer_value(json_object_get(json_array_get(evs, n - 1), "seq")) : INT64_MAX;
    bool full = n >= PUMP_PAGE;
    for (struct sub *x = subs; x; x = x->next) {
        if (x->done || x->stalled || x->served || strcmp(x->p.tenant_id, tenant) != 0 ||
            x->last < after)
            continue;
        /* past this page's end (a full page): not served yet this round */
        if (!full || x->last < page_last) x->served = true;
        x->caught_up = !full;
    }
    size_t i;
    json_t *ev;
    struct tk_buf b;
    tk_buf_init(&b, 64u << 20);
    json_array_foreach(evs, i, ev)
    {
        int64_t seq = json_integer_value(json_object_get(ev, "seq"));
        b.len = 0;
        for (struct sub *x = subs; x; x = x->next) {
            if (x->done || x->stalled || strcmp(x->p.tenant_id, tenant) != 0 || x->last < after ||
                seq <= x->last)
                continue;
            if (tk_stream_pending(x->s) > pp->high_water) {
                x->stalled = true;
                continue;
            }
            x->last = seq;
            if (!matches(x, ev)) continue;
            if (!b.len) {
                char *js = json_dumps(ev, JSON_COMPACT);
                tk_buf_printf(&b, "id: %lld\ndata: %s\n\n", (long long)seq, js ? js : "{}");
                free(js);
            }
            sub_write(x, b.data, b.len, now);
        }
    }
    tk_buf_free(&b);
    json_decref(evs);
    return true;
}

/* One tenant's round. The streams stand at different seqs: most at the
 * head, some catching up (a reconnect with an old Last-Event-ID, after=0).
 * The page after the streams that were at the head last round comes
 * first, so that they get new events at once whatever the others do (one
 * page from the lowest seq would hold every live stream of the tenant
 * until the slowest caught up: a viewer reconnecting with Last-Event-ID: 0
 * in a tenant with a million events would freeze its operators' streams
 * for minutes). Then up to PUMP_CATCHUP pages for the others, the nearest
 * to the head first (a stream just opened, then those further behind,
 * which join the head once they reach it). A stream whose buffer is over
 * the high-water mark is skipped (its seq stays) until its reader catches
 * up: a reader that is behind but reading is paced, not cut, and does not
 * hold back the tenant's other streams; a reader that stops reading is
 * closed by the HTTP server once idle_timeout passes without a byte sent,
 * or cut when a write overflows its buffer. */
static void pump_tenant(struct tk_evpump *pp, struct tk_db *db, struct sub *subs,
                        const char *tenant, int64_t now)
{
    int64_t head = INT64_MAX;
    for (struct sub *x = subs; x; x = x->next) {
        if (x->done || strcmp(x->p.tenant_id, tenant) != 0) continue;
        x->served = false;
        x->stalled = tk_stream_pending(x->s) > pp->high_water;
        if (x->stalled) x->caught_up = false; /* it will resume behind */
        if (!x->stalled && x->caught_up && x->last < head) head = x->last;
    }
    if (head != INT64_MAX && !serve_page(pp, db, subs, tenant, head, now)) return;
    for (int k = 0; k < PUMP_CATCHUP; k++) {
        int64_t max = -1;
        for (struct sub *x = subs; x; x = x->next)
            if (!x->done && !x->stalled && !x->served && !strcmp(x->p.tenant_id, tenant) &&
                x->last > max)
                max = x->last;
        if (max < 0 || !serve_page(pp, db, subs, tenant, max, now)) return;
    }
}

static void pump_round(struct tk_evpump *pp, struct sub **subs)
{
    struct tk_app *app = pp->app;
    int64_t now = tk_now_ms();
    bool sealed = tk_keyring_sealed(app->keyring);
    struct tk_db *db = NULL;
    struct tk_err e;
    if (!sealed) {
        db = tk_store_get(app->store, &e);
        if (!db) tk_debug("events stream: no store connection this round: %s", e.msg);
    }
    for (struct sub *x = *subs; x; x = x->next) {
        if (x->done) continue;
        if (!tk_stream_alive(x->s)) {
            x->done = true;
        } else if (sealed) {
            sub_end(x, "sealed");
        } else if (db && x->p.kind == TK_PRINCIPAL_OPERATOR_TOKEN && now >= x->next_check_ms) {
            /* one lookup per token and round, however many streams it has */
            struct sub *same = NULL;
            for (struct sub *y = *subs; y != x && !same; y = y->next)
                if (y->checked_ms == now && !strcmp(y->p.id, x->p.id)) same = y;
            bool active = true;
            if (same && !x->p.session_id[0] && !same->p.session_id[0])
                active = same->active;
            else if (tk_optoken_active(db, x->p.tenant_id, x->p.id, now, &active, &e) != TK_OK)
                active = true; /* a store hiccup: check again next time */
            /* a console session's stream also ends with its session (sign-out,
             * lifetime, idle: the stream itself is not use) */
            if (active && x->p.session_id[0] &&
                tk_console_session_active(db, x->p.session_id, now,
                                          (int64_t)app->cfg->console_idle_timeout * 1000,
                                          &active, &e) != TK_OK)
                active = true;
            x->checked_ms = now;
            x->active = active;
            if (!active) sub_end(x, "revoked");
            x->next_check_ms = now + REVOKE_CHECK_MS;
        }
    }
    if (db) {
        /* each tenant once: the first live stream of each */
        for (struct sub *x = *subs; x; x = x->next) {
            if (x->done) continue;
            bool seen = false;
            for (struct sub *y = *subs; y != x && !seen; y = y->next)
                seen = !y->done && !strcmp(y->p.tenant_id, x->p.tenant_id);
            if (!seen) pump_tenant(pp, db, *subs, x->p.tenant_id, now);
        }
        tk_store_put(db);
    }
    for (struct sub *x = *subs; x; x = x->next)
        if (!x->done && now - x->last_write_ms >= pp->heartbeat_ms)
            sub_write(x, ": heartbeat\n\n", 13, now);
    /* drop the ended ones */
    for (struct sub **px = subs; *px;) {
        struct sub *x = *px;
        if (x->done) {
            *px = x->next;
            sub_free(pp, x);
        } else {
            px = &x->next;
        }
    }
}

static void pump_main(struct tk_worker *w, void *arg)
{
    struct tk_evpump *pp = arg;
    struct sub *subs = NULL;
    while (tk_worker_wait(w, PUMP_EVERY_MS)) {
        pthread_mutex_lock(&pp->mu);
        struct sub *add = pp->pending;
        pp->pending = NULL;
        pthread_mutex_unlock(&pp->mu);
        while (add) {
            struct sub *x = add;
            add = x->next;
            x->next = subs;
            subs = x;
        }
        if (subs) pump_round(pp, &subs);
    }
    while (subs) { /* stopping: the HTTP server has ended them (node_stopping) */
        struct sub *x = subs;
        subs = x->next;
        sub_free(pp, x);
    }
    pthread_mutex_lock(&pp->mu);
    struct sub *left = pp->pending;
    pp->pending = NULL;
    pthread_mutex_unlock(&pp->mu);
    while (left) {
        struct sub *x = left;
        left = x->next;
        sub_free(pp, x);
    }
}

tk_rc tk_evpump_start(struct tk_app *app, struct tk_evpump **out, struct tk_err *e)
{
    struct tk_evpump *pp = tk_calloc(1, sizeof *pp);
    pp->app = app;
    pthread_mutex_init(&pp->mu, NULL);
    /* below the idle timeout, and at least once a second */
    int idle_ms = app->cfg->idle_timeout * 1000;
    pp->heartbeat_ms = idle_ms / 2 < 15000 ? idle_ms / 2 : 15000;
    if (pp->heartbeat_ms < 500) pp->heartbeat_ms = 500;
    pp->high_water = (size_t)app->cfg->stream_buffer / 2;
    pp->per_tenant = app->cfg->max_streams_per_tenant > 0 ? app->cfg->max_streams_per_tenant : 16;
    tk_rc rc = tk_worker_start(&pp->w, "event stream pump", pump_main, pp, e);
    if (rc != TK_OK) {
        pthread_mutex_destroy(&pp->mu);
        free(pp);
        return rc;
    }
    *out = pp;
    return TK_OK;
}

void tk_evpump_stop(struct tk_evpump *pp)
{
    if (!pp) return;
    tk_worker_stop(&pp->w, 0);
    while (pp->counts) {
        struct tcount *c = pp->counts;
        pp->counts = c->next;
        free(c);
    }
    pthread_mutex_destroy(&pp->mu);
    free(pp);
}

void tk_evpump_add(struct tk_evpump *pp, struct tk_stream *s, const struct tk_principal *p,
                   const struct tk_event_query *q, int64_t after)
{
    struct sub *x = tk_calloc(1, sizeof *x);
    x->s = s;
    x->p = *p;
    copy_filter(x->kind, q->kind);
    copy_filter(x->source, q->source);
    copy_filter(x->action, q->action);
    copy_filter(x->outcome, q->outcome);
    copy_filter(x->subject, q->subject);
    x->since = q->since;
    x->until = q->until;
    x->last = after;
    x->last_write_ms = tk_now_ms();
    x->next_check_ms = x->last_write_ms + REVOKE_CHECK_MS;
    pthread_mutex_lock(&pp->mu);
    x->next = pp->pending;
    pp->pending = x;
    pthread_mutex_unlock(&pp->mu);
    tk_worker_kick(&pp->w);
}
