/* sys.c: /health, /ready, /metrics (and the node's own series) and /v1/whoami. */
#include "api.h"

#include "../events/events.h"
#include "../tls/tls.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void tk_h_health(struct tk_req *r)
{
    /* a constant: no JSON tree to build and serialize on the probe path */
    static const char ok[] = "{\"status\":\"ok\"}\n";
    tk_reply_text(r, 200, "application/json", ok, sizeof ok - 1);
}

void tk_h_ready(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_err e;
    if (atomic_load(&app->stopping)) {
        tk_err_set(&e, TK_EUNAVAIL, "not_ready", "tokend is shutting down");
        json_t *x = json_pack("{s:s}", "reason", "shutting_down");
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    char why[320];
    const char *store_state = tk_api_store_state(app, why, sizeof why);
    if (store_state && !strcmp(store_state, "starting")) {
        tk_err_set(&e, TK_EUNAVAIL, "not_ready", "%s", why);
        json_t *x = json_pack("{s:s}", "reason", store_state);
        tk_reply_header(r, "Retry-After", "1");
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    struct tk_seal_status st;
    tk_keyring_status(app->keyring, &st);
    if (st.sealed) {
        const char *sw = st.initialized ? "sealed" : "uninitialized";
        tk_err_set(&e, TK_EUNAVAIL, "not_ready",
                   st.initialized ? "tokend is sealed (%d of %d unseal shares given to this node)"
                                  : "tokend is not initialized: run 'tokend operator init'",
                   st.progress, st.threshold);
        json_t *x = json_pack("{s:s}", "reason", sw);
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    if (store_state) {
        /* the probe's last result: /ready never waits on the store */
        json_t *x = json_pack("{s:s, s:s}", "reason", store_state, "store",
                              tk_store_backend(app->store));
        tk_err_set(&e, TK_EUNAVAIL, "not_ready", "%s", why);
        tk_reply_header(r, "Retry-After", "1");
        tk_reply_error(r, &e, x);
        json_decref(x);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:i, s:s, s:s}", "status", "ready", "store",
                            tk_store_backend(app->store), "schema_version",
                            tk_store_schema_version(app->store), "node", app->node, "public_url",
                            tk_api_public_url(app)));
}

/* ---- the node's series (registered by serve, read at render time) ---- */

static const char *const store_names[] = {"sqlite", "postgres", "starting"};

/* Which of store_names this node's store is ("starting" until start-up is
 * done: app->store is not to be read before). */
static size_t store_pos(struct tk_app *app)
{
    const char *b = atomic_load(&app->started) ? tk_store_backend(app->store) : "starting";
    for (size_t i = 0; i < TK_NELEM(store_names); i++)
        if (!strcmp(store_names[i], b)) return i;
    return TK_METRIC_NOIDX;
}

static double m_build_info(void *arg, size_t idx)
{
    return idx == store_pos(arg) ? 1 : NAN; /* idx: version (one value) x store */
}

static double m_start_time(void *arg, size_t idx)
{
    (void)idx;
    return (double)(((struct tk_app *)arg)->started_ms / 1000);
}

static double m_store_up(void *arg, size_t idx)
{
    char why[320];
    if (idx != store_pos(arg)) return NAN;
    return tk_api_store_state(arg, why, sizeof why) == NULL;
}

static double m_schema_version(void *arg, size_t idx)
{
    (void)idx;
    struct tk_app *app = arg;
    return atomic_load(&app->started) ? tk_store_schema_version(app->store) : 0;
}

static double m_keyring(void *arg, size_t which)
{
    struct tk_seal_status st;
    tk_keyring_status(((struct tk_app *)arg)->keyring, &st);
    return which == 0 ? st.sealed : which == 1 ? st.initialized : (double)st.data_version;
}

static double m_sealed(void *arg, size_t idx)
{
    (void)idx;
    return m_keyring(arg, 0);
}

static double m_initialized(void *arg, size_t idx)
{
    (void)idx;
    return m_keyring(arg, 1);
}

static double m_data_version(void *arg, size_t idx)
{
    (void)idx;
    return m_keyring(arg, 2);
}

/* TLS (tk_tls_stats): no samples while TLS is off. app->tls is set
 * before the HTTP server starts and stays the same object across reloads. */
static const char *const ok_failed[] = {"ok", "failed"};

static double m_tls(void *arg, size_t which, size_t idx)
{
    struct tk_tls_stats st;
    tk_tls_stats(((struct tk_app *)arg)->tls, &st);
    if (!st.enabled) return NAN;
    switch (which) {
    case 0:
        return (double)(idx == 0 ? st.handshakes_ok : st.handshakes_failed);
    case 1:
        return (double)(idx == 0 ? st.reloads_ok : st.reloads_failed);
    case 2:
        return (double)st.cert_expiry_seconds;
    default:
        return (double)(st.cert_not_after_ms / 1000);
    }
}

static double m_tls_handshakes(void *arg, size_t idx)
{
    return m_tls(arg, 0, idx);
}
static double m_tls_reloads(void *arg, size_t idx)
{
    return m_tls(arg, 1, idx);
}
static double m_tls_expiry(void *arg, size_t idx)
{
    return m_tls(arg, 2, idx);
}
static double m_tls_not_after(void *arg, size_t idx)
{
    return m_tls(arg, 3, idx);
}

static tk_rc tls_metrics(struct tk_app *app, struct tk_err *e)
{
    struct tk_metrics *m = app->metrics;
    static const struct tk_dim result = {"result", ok_failed, 2, NULL, NULL};
    bool ok =
        tk_metric_counter_fn(m, "tokend_tls_handshakes_total",
                             "TLS connections: handshake done (ok) or closed before one (failed).",
                             &result, 1, m_tls_handshakes, app, e) &&
        tk_metric_counter_fn(m, "tokend_tls_reloads_total",
                             "Certificate reloads (SIGHUP): ok, or failed (the pair in use kept).",
                             &result, 1, m_tls_reloads, app, e) &&
        tk_metric_gauge_fn(m, "tokend_tls_cert_expiry_seconds",
                           "Seconds until the certificate in use expires (negative: expired).",
                           NULL, 0, m_tls_expiry, app, e) &&
        tk_metric_gauge_fn(m, "tokend_tls_cert_not_after_seconds",
                           "When the certificate in use expires (Unix seconds).", NULL, 0,
                           m_tls_not_after, app, e);
    return ok ? TK_OK : TK_EINTERNAL;
}

/* The event writer (tk_events_writer_stats): process-wide counters. */
enum ev_what {
    EV_QUEUED,
    EV_QUEUE_MAX,
    EV_ACCEPTED,
    EV_WRITTEN,
    EV_FAILED,
    EV_DROPPED,
    EV_TIMEOUTS,
    EV_BATCHES,
    EV_BATCH_MAX,
    EV_RETRIES,
    EV_WAITS,
    EV_WAIT_SUM,
    EV_WAIT_MAX
};

static double m_events(size_t which, size_t idx)
{
    struct tk_events_writer_stats st;
    tk_events_writer_stats(&st);
    switch ((enum ev_what)which) {
    case EV_QUEUED:
        return (double)st.queued;
    case EV_QUEUE_MAX:
        return (double)st.queue_max;
    case EV_ACCEPTED:
        return (double)(idx == 0 ? st.posted : st.emitted);
    case EV_WRITTEN:
        return (double)st.written;
    case EV_FAILED:
        return (double)st.failed;
    case EV_DROPPED:
        return (double)(idx == 0 ? st.dropped : idx == 1 ? st.refused_stopping : st.withdrawn);
    case EV_TIMEOUTS:
        return (double)st.timeouts;
    case EV_BATCHES:
        return (double)st.batches;
    case EV_BATCH_MAX:
        return (double)st.batch_max;
    case EV_RETRIES:
        return (double)st.retries;
    case EV_WAITS:
        return (double)st.wait_count;
    case EV_WAIT_SUM:
        return (double)st.wait_us_total / 1e6;
    case EV_WAIT_MAX:
        return (double)st.wait_us_max / 1e6;
    }
    return NAN;
}

#define EV_READER(name, what)                                                                      \
    static double name(void *arg, size_t idx)                                                      \
    {                                                                                              \
        (void)arg;                                                                                 \
        return m_events(what, idx);                                                                \
    }
EV_READER(m_ev_queued, EV_QUEUED)
EV_READER(m_ev_queue_max, EV_QUEUE_MAX)
EV_READER(m_ev_accepted, EV_ACCEPTED)
EV_READER(m_ev_written, EV_WRITTEN)
EV_READER(m_ev_failed, EV_FAILED)
EV_READER(m_ev_dropped, EV_DROPPED)
EV_READER(m_ev_timeouts, EV_TIMEOUTS)
EV_READER(m_ev_batches, EV_BATCHES)
EV_READER(m_ev_batch_max, EV_BATCH_MAX)
EV_READER(m_ev_retries, EV_RETRIES)
EV_READER(m_ev_waits, EV_WAITS)
EV_READER(m_ev_wait_sum, EV_WAIT_SUM)
EV_READER(m_ev_wait_max, EV_WAIT_MAX)

static tk_rc events_metrics(struct tk_metrics *m, struct tk_err *e)
{
    static const char *const calls[] = {"post", "emit"};
    static const struct tk_dim call = {"call", calls, 2, NULL, NULL};
    static const char *const reasons[] = {"queue_full", "no_writer", "withdrawn"};
    static const struct tk_dim reason = {"reason", reasons, 3, NULL, NULL};
    bool ok =
        tk_metric_gauge_fn(m, "tokend_events_queued", "Events waiting for the writer now.", NULL, 0,
                           m_ev_queued, NULL, e) &&
        tk_metric_gauge_fn(m, "tokend_events_queue_max",
                           "The writer's queue capacity (events_queue).", NULL, 0, m_ev_queue_max,
                           NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_accepted_total",
                             "Events queued for the writer, by call: post (fire and forget) or "
                             "emit (waits for its commit).",
                             &call, 1, m_ev_accepted, NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_written_total", "Events committed by the writer.",
                             NULL, 0, m_ev_written, NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_failed_total",
                             "Events taken by the writer but refused or lost (see the log).", NULL,
                             0, m_ev_failed, NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_dropped_total",
                             "Events never written: queue_full (refused at the door), no_writer "
                             "(posted while no writer ran), withdrawn (an emit that timed out "
                             "before the writer took it).",
                             &reason, 1, m_ev_dropped, NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_emit_timeouts_total",
                             "Waiting emits that answered events_timeout.", NULL, 0, m_ev_timeouts,
                             NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_batches_total",
                             "Group commits (one transaction each).", NULL, 0, m_ev_batches, NULL,
                             e) &&
        tk_metric_gauge_fn(m, "tokend_events_batch_max",
                           "The largest batch since start, in events.", NULL, 0, m_ev_batch_max,
                           NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_batch_retries_total",
                             "Batch attempts that failed and were retried.", NULL, 0, m_ev_retries,
                             NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_emit_waits_total",
                             "Waits of emits for their commit that ended (committed or not).", NULL,
                             0, m_ev_waits, NULL, e) &&
        tk_metric_counter_fn(m, "tokend_events_emit_wait_seconds_total",
                             "Total time emits waited for their commit.", NULL, 0, m_ev_wait_sum,
                             NULL, e) &&
        tk_metric_gauge_fn(m, "tokend_events_emit_wait_max_seconds",
                           "The longest wait of an emit for its commit since start.", NULL, 0,
                           m_ev_wait_max, NULL, e);
    return ok ? TK_OK : TK_EINTERNAL;
}

tk_rc tk_api_metrics_register(struct tk_app *app, struct tk_err *e)
{
    struct tk_metrics *m = app->metrics;
    static const char *const version[] = {TK_VERSION};
    const struct tk_dim build[] = {{"version", version, 1, NULL, NULL},
                                   {"store", store_names, TK_NELEM(store_names), NULL, NULL}};
    bool ok =
        tk_metric_gauge_fn(m, "tokend_build_info", "Build of this node.", build, 2, m_build_info,
                           app, e) &&
        tk_metric_gauge_fn(m, "tokend_start_time_seconds", "When this node started.", NULL, 0,
                           m_start_time, app, e) &&
        tk_metric_gauge_fn(m, "tokend_store_up",
                           "Whether the store answered the last probe (every second).", &build[1],
                           1, m_store_up, app, e) &&
        tk_metric_gauge_fn(m, "tokend_store_schema_version", "Schema version of the store.", NULL,
                           0, m_schema_version, app, e) &&
        tk_metric_gauge_fn(m, "tokend_keyring_sealed", "Whether this node's keyring is sealed.",
                           NULL, 0, m_sealed, app, e) &&
        tk_metric_gauge_fn(m, "tokend_keyring_initialized", "Whether the keyring exists.", NULL, 0,
                           m_initialized, app, e) &&
        tk_metric_gauge_fn(m, "tokend_keyring_data_version",
                           "Active data key version (0 while sealed).", NULL, 0, m_data_version,
                           app, e) &&
        tk_out_metrics_register(m, &app->outbound, e) == TK_OK;
    if (ok && tk_api_authcache_metrics(app, e) != TK_OK) ok = false; /* authpoll.c */
    if (ok && tls_metrics(app, e) != TK_OK) ok = false;
    if (ok && events_metrics(m, e) != TK_OK) ok = false;
    if (ok && tk_api_clients_metrics(app, e) != TK_OK) ok = false;   /* clients_api.c */
    if (ok && tk_api_oauth_metrics(app, e) != TK_OK) ok = false;     /* oauth_api.c */
    return ok ? TK_OK : TK_EINTERNAL;
}

void tk_h_metrics(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_buf b;
    tk_buf_init(&b, 4 << 20);
    if (tk_metrics_render(app->metrics, &b) != TK_OK) {
        tk_buf_free(&b);
        struct tk_err e;
        tk_err_set(&e, TK_EINTERNAL, "internal", "the metrics are larger than 4 MiB");
        tk_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
    tk_buf_free(&b);
}

void tk_h_whoami(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:s, s:s, s:s}", "tenant_id", p->tenant_id, "token_id", p->id,
                            "name", p->name, "role", p->role));
}
