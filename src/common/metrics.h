/*
 * metrics.h: the one metrics registry of a process (CONVENTIONS.md "from
 * the one registry"), rendered as Prometheus text format 0.0.4 by /metrics.
 *
 * A series is a counter, a gauge or a histogram (fixed bucket bounds), or a
 * callback (tk_metric_gauge_fn, tk_metric_counter_fn) whose value is read at
 * render time. Labels are bounded: a series declares its label dimensions
 * with their complete value sets, so its label space is finite and its
 * storage is one flat array of atomics, indexed by the combination's number
 * (row-major: the last dimension varies fastest). Counting is an atomic add
 * on that array: no lock, no allocation, no lookup by string on the hot
 * path. Names follow tokend_<module>_<what>[_total|_seconds]; a counter's
 * name ends in _total, a gauge's or a histogram's does not.
 *
 * Registration (all at start, from one thread, in serve before the HTTP
 * server starts) copies the names, help and label values, so the caller's
 * arrays may go. After tk_metrics_freeze or the first render, the series
 * list is immutable and rendered without a lock; registering then is a
 * programming error, as are a duplicate name (a histogram also takes
 * NAME_bucket, NAME_sum and NAME_count), a name or label name that is not
 * snake_case, a counter not ending in _total, an empty or oversized value
 * set, a duplicate or non-UTF-8 label value, bounds not strictly increasing,
 * and, on the hot path, an index outside the declared label space. A
 * registration error returns NULL and fills e; a strict registry (the
 * default in the test build, TK_UNITTEST: "debug") aborts with the message
 * instead, so the mistake cannot pass CI. In a release build the error is
 * logged, a hot-path call with a bad index or a NULL series does nothing.
 *
 * A module that keeps its own counters registers callback series; the arg
 * must stay valid while /metrics can be rendered (serve frees modules after
 * the HTTP server stops). One line per series, in serve before
 * tk_http_start:
 *
 *     static double parked_now(void *arg, size_t idx)
 *     {
 *         (void)idx;
 *         struct tk_app *app = arg;          // the object may not exist yet:
 *         if (!app->parked) return NAN;      // NAN leaves the sample out
 *         return (double)tk_parked_count(app->parked);
 *     }
 *     tk_metric_gauge_fn(app->metrics, "tokend_http_parked", "Requests parked now.",
 *                        NULL, 0, parked_now, app, NULL);
 *
 * and with a bounded label (idx is the value's position in the set):
 *
 *     static const char *const results[] = {"hit", "miss"};
 *     static const struct tk_dim result_dim = {"result", results, 2, NULL, NULL};
 *     tk_metric_counter_fn(app->metrics, "tokend_auth_cache_lookups_total",
 *                          "Authentication cache lookups, by result.",
 *                          &result_dim, 1, cache_lookups, app, NULL);
 *
 * A module that has no counters of its own yet uses plain series instead:
 *
 *     m->ok = tk_metric_counter(reg, "tokend_x_done_total", "...", NULL, 0, 0, e);
 *     tk_metric_inc(m->ok, 0);                               // hot path
 *
 * Every series name must be in the metrics table of README.md (the e2e
 * test metrics.test.mjs checks it).
 */
#ifndef TK_METRICS_H
#define TK_METRICS_H

#include "tk.h"

struct tk_metrics;
struct tk_metric;

/* A label dimension: the label name and its complete value set. name2 and
 * values2 (both NULL when unused) give a second label that goes with the
 * first, value for value (e.g. the method and the route of one row of the
 * route table), so that pairs that never occur take no room. */
struct tk_dim {
    const char *name;
    const char *const *values;
    size_t n;
    const char *name2;
    const char *const *values2;
};

/* Limits, checked at registration. */
#define TK_METRICS_MAX_SERIES 512
#define TK_METRIC_MAX_NAME 128
#define TK_METRIC_MAX_HELP 512
#define TK_METRIC_MAX_DIMS 4
#define TK_METRIC_MAX_VALUE 128   /* bytes of a label value */
#define TK_METRIC_MAX_COMBOS 8192 /* label combinations of one series */
#define TK_METRIC_MAX_BOUNDS 64

/* Flags. SPARSE: leave out the combinations whose value (counter, gauge) or
 * count (histogram) is 0; for series whose label space is wide and mostly
 * unused (route x status). */
#define TK_METRIC_SPARSE 1u

/* No combination: what the index helpers return for a value or position
 * outside the declared set (in a strict registry they abort). */
#define TK_METRIC_NOIDX ((size_t)-1)

/* A callback series' value for the combination idx, read at render time;
 * NAN leaves that sample out. Called from the thread serving /metrics, so
 * it must be quick and never wait (no store call, no lock held for long:
 * /metrics never waits on the store); read atomics or a snapshot. */
typedef double (*tk_metric_read)(void *arg, size_t idx);

/* The registry. Strict (abort on misuse) when built with TK_UNITTEST. */
struct tk_metrics *tk_metrics_new(void);
/* Free the registry and its series. No-op for NULL. Nothing may use its
 * series afterwards. */
void tk_metrics_free(struct tk_metrics *m);
/* Abort on a programming error (true) or return/ignore it (false). */
void tk_metrics_set_strict(struct tk_metrics *m, bool strict);
/* Close registration: from now on registering is an error. */
void tk_metrics_freeze(struct tk_metrics *m);

/* Registration. dims may be NULL when ndims is 0 (one combination, idx 0).
 * Return the series (owned by the registry) or NULL with e filled (e may be
 * NULL); see the top for what is refused. */
struct tk_metric *tk_metric_counter(struct tk_metrics *m, const char *name, const char *help,
                                    const struct tk_dim *dims, size_t ndims, unsigned flags,
                                    struct tk_err *e);
struct tk_metric *tk_metric_gauge(struct tk_metrics *m, const char *name, const char *help,
                                  const struct tk_dim *dims, size_t ndims, unsigned flags,
                                  struct tk_err *e);
/* bounds: the upper bounds (le) of the buckets, finite and strictly
 * increasing; a +Inf bucket is added. */
struct tk_metric *tk_metric_histogram(struct tk_metrics *m, const char *name, const char *help,
                                      const struct tk_dim *dims, size_t ndims, const double *bounds,
                                      size_t nbounds, unsigned flags, struct tk_err *e);
struct tk_metric *tk_metric_gauge_fn(struct tk_metrics *m, const char *name, const char *help,
                                     const struct tk_dim *dims, size_t ndims, tk_metric_read fn,
                                     void *arg, struct tk_err *e);
struct tk_metric *tk_metric_counter_fn(struct tk_metrics *m, const char *name, const char *help,
                                       const struct tk_dim *dims, size_t ndims, tk_metric_read fn,
                                       void *arg, struct tk_err *e);

/* The combination's index from each dimension's position (pos[ndims]), or
 * from each dimension's (first) label value (values[ndims], by string: for
 * start-up, not the hot path). TK_METRIC_NOIDX when out of the set. */
size_t tk_metric_index(const struct tk_metric *s, const size_t *pos);
size_t tk_metric_lookup(const struct tk_metric *s, const char *const *values);

/* The hot path: lock-free, no allocation. s may be NULL (nothing done). */
void tk_metric_add(struct tk_metric *s, size_t idx, uint64_t n);      /* counter */
void tk_metric_inc(struct tk_metric *s, size_t idx);                  /* counter, +1 */
void tk_metric_set(struct tk_metric *s, size_t idx, int64_t v);       /* gauge */
void tk_metric_gauge_add(struct tk_metric *s, size_t idx, int64_t d); /* gauge, d may be < 0 */
/* Histogram: v counts in the first bucket whose bound is >= v (NaN is
 * ignored). */
void tk_metric_observe(struct tk_metric *s, size_t idx, double v);

/* Reads, for tests and for modules that use a gauge as their own state. */
uint64_t tk_metric_counter_get(const struct tk_metric *s, size_t idx);
int64_t tk_metric_gauge_get(const struct tk_metric *s, size_t idx);
/* A histogram combination's count and sum. */
uint64_t tk_metric_histogram_count(const struct tk_metric *s, size_t idx, double *sum);

/* Append every series, in registration order, as Prometheus text 0.0.4 to
 * out: # HELP and # TYPE lines, label values and help escaped (\\, \",
 * \n), histograms as _bucket (cumulative, le="+Inf" last), _sum and
 * _count. Freezes the registry. TK_ETOOBIG when out's maximum is reached. */
tk_rc tk_metrics_render(struct tk_metrics *m, struct tk_buf *out);

#endif
