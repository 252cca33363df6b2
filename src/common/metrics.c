/*
 * metrics.c: see metrics.h.
 *
 * A series owns copies of its strings and one array of cells: counters
 * and histograms use unsigned cells, gauges signed ones. A histogram
 * combination takes nbounds + 2 cells: one per bucket (not cumulative; the
 * render sums them, so that _count always equals the +Inf bucket of the
 * same scrape), the +Inf bucket, and the sum as the bits of a double
 * (added with a compare-and-swap loop: lock-free, exact for integers).
 *
 * The registry's list of series grows under mu until it is frozen; then it
 * never changes again, and the render walks it without the lock.
 */
#include "metrics.h"
#include "log.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM, K_COUNTER_FN, K_GAUGE_FN };

struct dim {
    char *name, *name2;
    char **values, **values2;
    size_t n;
};

struct tk_metric {
    struct tk_metrics *reg;
    enum kind kind;
    char *name, *help;
    unsigned flags;
    struct dim dims[TK_METRIC_MAX_DIMS];
    size_t ndims;
    size_t ncombos;
    double *bounds;
    size_t nbounds;
    atomic_uint_fast64_t *u; /* counter, histogram */
    atomic_int_fast64_t *g;  /* gauge */
    tk_metric_read fn;
    void *arg;
    atomic_bool misuse_logged;
};

struct tk_metrics {
    pthread_mutex_t mu;
    atomic_bool frozen;
    bool strict;
    struct tk_metric **series;
    size_t n, cap;
};

/* ---- the registry ---- */

struct tk_metrics *tk_metrics_new(void)
{
    struct tk_metrics *m = tk_calloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
#ifdef TK_UNITTEST
    m->strict = true;
#endif
    return m;
}

static void series_free(struct tk_metric *s)
{
    if (!s) return;
    for (size_t d = 0; d < s->ndims; d++) {
        struct dim *dm = &s->dims[d];
        for (size_t i = 0; i < dm->n; i++) {
            if (dm->values) free(dm->values[i]);
            if (dm->values2) free(dm->values2[i]);
        }
        free(dm->values);
        free(dm->values2);
        free(dm->name);
        free(dm->name2);
    }
    free(s->name);
    free(s->help);
    free(s->bounds);
    free(s->u);
    free(s->g);
    free(s);
}

void tk_metrics_free(struct tk_metrics *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++)
        series_free(m->series[i]);
    free(m->series);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void tk_metrics_set_strict(struct tk_metrics *m, bool strict)
{
    m->strict = strict;
}

void tk_metrics_freeze(struct tk_metrics *m)
{
    if (atomic_load(&m->frozen)) return;
    pthread_mutex_lock(&m->mu);
    atomic_store(&m->frozen, true);
    pthread_mutex_unlock(&m->mu);
}

/* ---- checks ---- */

/* A registration error: abort in a strict registry, else log and return
 * NULL with e filled. */
static struct tk_metric *refuse(struct tk_metrics *m, struct tk_err *e, const char *name,
                                const char *fmt, ...) TK_PRINTF(4, 5);
static struct tk_metric *refuse(struct tk_metrics *m, struct tk_err *e, const char *name,
                                const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char shown[TK_METRIC_MAX_NAME + 1];
    /* the name may be anything: show a bounded, printable prefix */
    size_t k = 0;
    for (; name && name[k] && k < TK_METRIC_MAX_NAME; k++)
        shown[k] = (name[k] >= 0x20 && name[k] < 0x7f) ? name[k] : '?';
    shown[k] = 0;
    if (m && m->strict) tk_fatal("metrics: series \"%s\": %s", shown, msg);
    tk_error("metrics: series \"%s\" not registered: %s", shown, msg);
    tk_err_field(e, TK_EINVAL, "metric_invalid", "name", "series \"%s\": %s", shown, msg);
    return NULL;
}

static void misuse(const struct tk_metric *s, const char *what, size_t idx)
{
    if (s->reg->strict)
        tk_fatal("metrics: %s: %s (index %zu, %zu combinations)", s->name, what, idx, s->ncombos);
    struct tk_metric *w = (struct tk_metric *)s;
    if (!atomic_exchange(&w->misuse_logged, true))
        tk_error("metrics: %s: %s (index %zu, %zu combinations); ignored", s->name, what, idx,
                 s->ncombos);
}

static bool lower_snake(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max) return false;
    if (!(s[0] >= 'a' && s[0] <= 'z') && s[0] != '_') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* The names a series takes in the output. */
static size_t family(const char *name, enum kind k, char out[4][TK_METRIC_MAX_NAME + 8])
{
    snprintf(out[0], sizeof out[0], "%s", name);
    if (k != K_HISTOGRAM) return 1;
    snprintf(out[1], sizeof out[1], "%s_bucket", name);
    snprintf(out[2], sizeof out[2], "%s_sum", name);
    snprintf(out[3], sizeof out[3], "%s_count", name);
    return 4;
}

/* Under m->mu. */
static bool name_taken(struct tk_metrics *m, const char *name, enum kind k)
{
    char mine[4][TK_METRIC_MAX_NAME + 8], theirs[4][TK_METRIC_MAX_NAME + 8];
    size_t nm = family(name, k, mine);
    for (size_t i = 0; i < m->n; i++) {
        size_t nt = family(m->series[i]->name, m->series[i]->kind, theirs);
        for (size_t a = 0; a < nm; a++)
            for (size_t b = 0; b < nt; b++)
                if (!strcmp(mine[a], theirs[b])) return true;
    }
    return false;
}

static bool label_value_ok(const char *v)
{
    if (!v) return false;
    size_t n = strnlen(v, TK_METRIC_MAX_VALUE + 1);
    return n <= TK_METRIC_MAX_VALUE && tk_utf8_valid(v, n);
}

/* Check the dimensions; the message in why. */
static bool dims_ok(const struct tk_dim *dims, size_t ndims, enum kind k, size_t *combos, char *why,
                    size_t n)
{
    if (ndims > TK_METRIC_MAX_DIMS) {
        snprintf(why, n, "%zu label dimensions, at most %d", ndims, TK_METRIC_MAX_DIMS);
        return false;
    }
    if (ndims && !dims) {
        snprintf(why, n, "%zu label dimensions declared but none given", ndims);
        return false;
    }
    const char *names[2 * TK_METRIC_MAX_DIMS];
    size_t nnames = 0;
    size_t total = 1;
    for (size_t d = 0; d < ndims; d++) {
        const struct tk_dim *dm = &dims[d];
        for (int which = 0; which < 2; which++) {
            const char *ln = which ? dm->name2 : dm->name;
            if (which && !ln) {
                if (dm->values2) {
                    snprintf(why, n, "dimension %zu has values2 without name2", d);
                    return false;
                }
                break;
            }
            if (!ln || !lower_snake(ln, 64) || !strncmp(ln, "__", 2)) {
                snprintf(why, n,
                         "label name of dimension %zu is not snake_case (a-z, 0-9, _; "
                         "at most 64 bytes; not starting with __)",
                         d);
                return false;
            }
            if (k == K_HISTOGRAM && !strcmp(ln, "le")) {
                snprintf(why, n, "a histogram cannot have a label named le");
                return false;
            }
            for (size_t i = 0; i < nnames; i++)
                if (!strcmp(names[i], ln)) {
                    snprintf(why, n, "label %s is declared twice", ln);
                    return false;
                }
            names[nnames++] = ln;
        }
        if (dm->name2 && !dm->values2) {
            snprintf(why, n, "label %s has no values2", dm->name2);
            return false;
        }
        if (!dm->values || dm->n == 0 || dm->n > TK_METRIC_MAX_COMBOS) {
            snprintf(why, n, "label %s must have 1 to %d values", dm->name, TK_METRIC_MAX_COMBOS);
            return false;
        }
        for (size_t i = 0; i < dm->n; i++) {
            if (!label_value_ok(dm->values[i]) ||
                (dm->values2 && !label_value_ok(dm->values2[i]))) {
                snprintf(why, n,
                         "value %zu of label %s is missing, longer than %d bytes or not "
                         "UTF-8",
                         i, dm->name, TK_METRIC_MAX_VALUE);
                return false;
            }
            for (size_t j = 0; j < i; j++)
                if (!strcmp(dm->values[i], dm->values[j]) &&
                    (!dm->values2 || !strcmp(dm->values2[i], dm->values2[j]))) {
                    snprintf(why, n, "value %zu of label %s repeats value %zu", i, dm->name, j);
                    return false;
                }
        }
        total *= dm->n;
        if (total > TK_METRIC_MAX_COMBOS) {
            snprintf(why, n, "more than %d label combinations", TK_METRIC_MAX_COMBOS);
            return false;
        }
    }
    *combos = total;
    return true;
}

static char **copy_values(const char *const *v, size_t n)
{
    char **out = tk_calloc(n, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = tk_strdup(v[i]);
    return out;
}

static struct tk_metric *reg(struct tk_metrics *m, enum kind k, const char *name, const char *help,
                             const struct tk_dim *dims, size_t ndims, const double *bounds,
                             size_t nbounds, unsigned flags, tk_metric_read fn, void *arg,
                             struct tk_err *e)
{
    if (!m) return refuse(m, e, name, "no registry");
    if (!name || !lower_snake(name, TK_METRIC_MAX_NAME) || strncmp(name, "tokend_", 7) != 0 ||
        !name[7])
        return refuse(m, e, name, "the name must be tokend_ then a-z, 0-9 or _, at most %d bytes",
                      TK_METRIC_MAX_NAME);
    bool counter = k == K_COUNTER || k == K_COUNTER_FN;
    if (counter != ends_with(name, "_total"))
        return refuse(m, e, name,
                      counter ? "a counter's name ends in _total"
                              : "only a counter's name ends in _total");
    if (!help || !help[0] || strnlen(help, TK_METRIC_MAX_HELP + 1) > TK_METRIC_MAX_HELP ||
        !tk_utf8_valid(help, strlen(help)))
        return refuse(m, e, name, "help must be UTF-8, 1 to %d bytes", TK_METRIC_MAX_HELP);
    if ((k == K_COUNTER_FN || k == K_GAUGE_FN) && !fn)
        return refuse(m, e, name, "a callback series needs a function");
    if (flags & ~TK_METRIC_SPARSE) return refuse(m, e, name, "unknown flags 0x%x", flags);
    if (k == K_HISTOGRAM) {
        if (!bounds || nbounds == 0 || nbounds > TK_METRIC_MAX_BOUNDS)
            return refuse(m, e, name, "a histogram needs 1 to %d bucket bounds",
                          TK_METRIC_MAX_BOUNDS);
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1])))
                return refuse(m, e, name,
                              "bucket bound %zu is not finite or not above the one "
                              "before",
                              i);
    }
    char why[200];
    size_t combos = 1;
    if (!dims_ok(dims, ndims, k, &combos, why, sizeof why)) return refuse(m, e, name, "%s", why);

    pthread_mutex_lock(&m->mu);
    const char *bad = NULL;
    if (atomic_load(&m->frozen))
        bad = "registered after the registry was frozen (rendered): register every series at "
              "start, before the HTTP server starts";
    else if (m->n >= TK_METRICS_MAX_SERIES)
        bad = "too many series";
    else if (name_taken(m, name, k))
        bad = "the name (or its _bucket/_sum/_count) is already registered";
    if (bad) {
        pthread_mutex_unlock(&m->mu);
        return refuse(m, e, name, "%s", bad);
    }
    struct tk_metric *s = tk_calloc(1, sizeof *s);
    s->reg = m;
    s->kind = k;
    s->name = tk_strdup(name);
    s->help = tk_strdup(help);
    s->flags = flags;
    s->ndims = ndims;
    s->ncombos = combos;
    for (size_t d = 0; d < ndims; d++) {
        s->dims[d].name = tk_strdup(dims[d].name);
        s->dims[d].name2 = dims[d].name2 ? tk_strdup(dims[d].name2) : NULL;
        s->dims[d].n = dims[d].n;
        s->dims[d].values = copy_values(dims[d].values, dims[d].n);
        s->dims[d].values2 = dims[d].values2 ? copy_values(dims[d].values2, dims[d].n) : NULL;
    }
    if (k == K_COUNTER) s->u = tk_calloc(combos, sizeof *s->u);
    if (k == K_GAUGE) s->g = tk_calloc(combos, sizeof *s->g);
    if (k == K_HISTOGRAM) {
        s->nbounds = nbounds;
        s->bounds = tk_malloc(nbounds * sizeof *s->bounds);
        memcpy(s->bounds, bounds, nbounds * sizeof *s->bounds);
        s->u = tk_calloc(combos * (nbounds + 2), sizeof *s->u);
    }
    s->fn = fn;
    s->arg = arg;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->series = tk_realloc(m->series, m->cap * sizeof *m->series);
    }
    m->series[m->n++] = s;
    pthread_mutex_unlock(&m->mu);
    return s;
}

struct tk_metric *tk_metric_counter(struct tk_metrics *m, const char *name, const char *help,
                                    const struct tk_dim *dims, size_t ndims, unsigned flags,
                                    struct tk_err *e)
{
    return reg(m, K_COUNTER, name, help, dims, ndims, NULL, 0, flags, NULL, NULL, e);
}

struct tk_metric *tk_metric_gauge(struct tk_metrics *m, const char *name, const char *help,
                                  const struct tk_dim *dims, size_t ndims, unsigned flags,
                                  struct tk_err *e)
{
    return reg(m, K_GAUGE, name, help, dims, ndims, NULL, 0, flags, NULL, NULL, e);
}

struct tk_metric *tk_metric_histogram(struct tk_metrics *m, const char *name, const char *help,
                                      const struct tk_dim *dims, size_t ndims, const double *bounds,
                                      size_t nbounds, unsigned flags, struct tk_err *e)
{
    return reg(m, K_HISTOGRAM, name, help, dims, ndims, bounds, nbounds, flags, NULL, NULL, e);
}

struct tk_metric *tk_metric_gauge_fn(struct tk_metrics *m, const char *name, const char *help,
                                     const struct tk_dim *dims, size_t ndims, tk_metric_read fn,
                                     void *arg, struct tk_err *e)
{
    return reg(m, K_GAUGE_FN, name, help, dims, ndims, NULL, 0, 0, fn, arg, e);
}

struct tk_metric *tk_metric_counter_fn(struct tk_metrics *m, const char *name, const char *help,
                                       const struct tk_dim *dims, size_t ndims, tk_metric_read fn,
                                       void *arg, struct tk_err *e)
{
    return reg(m, K_COUNTER_FN, name, help, dims, ndims, NULL, 0, 0, fn, arg, e);
}

/* ---- indexes ---- */

size_t tk_metric_index(const struct tk_metric *s, const size_t *pos)
{
    if (!s) return TK_METRIC_NOIDX;
    size_t idx = 0;
    for (size_t d = 0; d < s->ndims; d++) {
        if (!pos || pos[d] >= s->dims[d].n) {
            misuse(s, "a label position outside the declared set", pos ? pos[d] : 0);
            return TK_METRIC_NOIDX;
        }
        idx = idx * s->dims[d].n + pos[d];
    }
    return idx;
}

size_t tk_metric_lookup(const struct tk_metric *s, const char *const *values)
{
    if (!s) return TK_METRIC_NOIDX;
    size_t idx = 0;
    for (size_t d = 0; d < s->ndims; d++) {
        const struct dim *dm = &s->dims[d];
        size_t i = 0;
        while (i < dm->n && !(values && values[d] && !strcmp(dm->values[i], values[d])))
            i++;
        if (i == dm->n) {
            char what[TK_METRIC_MAX_NAME];
            snprintf(what, sizeof what, "a value of label %s outside the declared set", dm->name);
            misuse(s, what, d);
            return TK_METRIC_NOIDX;
        }
        idx = idx * dm->n + i;
    }
    return idx;
}

/* ---- the hot path ---- */

static inline bool usable(const struct tk_metric *s, size_t idx, enum kind k)
{
    if (!s) return false;
    if (s->kind != k) {
        misuse(s, "the wrong operation for this kind of series", idx);
        return false;
    }
    if (idx >= s->ncombos) {
        misuse(s, "an index outside the declared label space", idx);
        return false;
    }
    return true;
}

void tk_metric_add(struct tk_metric *s, size_t idx, uint64_t n)
{
    if (usable(s, idx, K_COUNTER)) atomic_fetch_add_explicit(&s->u[idx], n, memory_order_relaxed);
}

void tk_metric_inc(struct tk_metric *s, size_t idx)
{
    tk_metric_add(s, idx, 1);
}

void tk_metric_set(struct tk_metric *s, size_t idx, int64_t v)
{
    if (usable(s, idx, K_GAUGE)) atomic_store_explicit(&s->g[idx], v, memory_order_relaxed);
}

void tk_metric_gauge_add(struct tk_metric *s, size_t idx, int64_t d)
{
    if (usable(s, idx, K_GAUGE)) atomic_fetch_add_explicit(&s->g[idx], d, memory_order_relaxed);
}

static double bits_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t double_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

void tk_metric_observe(struct tk_metric *s, size_t idx, double v)
{
    if (!usable(s, idx, K_HISTOGRAM) || isnan(v)) return;
    size_t b = 0;
    while (b < s->nbounds && v > s->bounds[b])
        b++;
    atomic_uint_fast64_t *c = &s->u[idx * (s->nbounds + 2)];
    atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
    atomic_uint_fast64_t *sum = &c[s->nbounds + 1];
    uint_fast64_t old = atomic_load_explicit(sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(sum, &old, double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

uint64_t tk_metric_counter_get(const struct tk_metric *s, size_t idx)
{
    if (!usable(s, idx, K_COUNTER)) return 0;
    return atomic_load_explicit(&s->u[idx], memory_order_relaxed);
}

int64_t tk_metric_gauge_get(const struct tk_metric *s, size_t idx)
{
    if (!usable(s, idx, K_GAUGE)) return 0;
    return atomic_load_explicit(&s->g[idx], memory_order_relaxed);
}

uint64_t tk_metric_histogram_count(const struct tk_metric *s, size_t idx, double *sum)
{
    if (sum) *sum = 0;
    if (!usable(s, idx, K_HISTOGRAM)) return 0;
    atomic_uint_fast64_t *c = &s->u[idx * (s->nbounds + 2)];
    uint64_t n = 0;
    for (size_t b = 0; b <= s->nbounds; b++)
        n += atomic_load_explicit(&c[b], memory_order_relaxed);
    if (sum) *sum = bits_double(atomic_load_explicit(&c[s->nbounds + 1], memory_order_relaxed));
    return n;
}

/* ---- the render ---- */

/* The shortest text that reads back as v (Go's ParseFloat, which
 * Prometheus uses, accepts it), integers without an exponent up to 2^53. */
static void fmt_double(double v, char *out, size_t n)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) <= 9007199254740992.0) {
        snprintf(out, n, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, n, "%.*g", p, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* text escaped for a label value (\\, \", \n) or, when help, for HELP
 * (\\, \n). */
static tk_rc add_escaped(struct tk_buf *b, const char *s, bool help)
{
    tk_rc rc = TK_OK;
    const char *run = s;
    for (const char *p = s; *p && rc == TK_OK; p++) {
        const char *esc = *p == '\\'             ? "\\\\"
                          : *p == '\n'           ? "\\n"
                          : (*p == '"' && !help) ? "\\\""
                                                 : NULL;
        if (!esc) continue;
        rc = tk_buf_add(b, run, (size_t)(p - run));
        if (rc == TK_OK) rc = tk_buf_addstr(b, esc);
        run = p + 1;
    }
    if (rc == TK_OK) rc = tk_buf_addstr(b, run);
    return rc;
}

/* {a="x",b="y"[,le="..."]} for combination idx, or nothing without labels. */
static tk_rc add_labels(struct tk_buf *b, const struct tk_metric *s, size_t idx, const char *le)
{
    if (!s->ndims && !le) return TK_OK;
    size_t pos[TK_METRIC_MAX_DIMS];
    for (size_t d = s->ndims; d-- > 0;) {
        pos[d] = idx % s->dims[d].n;
        idx /= s->dims[d].n;
    }
    tk_rc rc = tk_buf_addstr(b, "{");
    bool first = true;
    for (size_t d = 0; d < s->ndims && rc == TK_OK; d++) {
        const struct dim *dm = &s->dims[d];
        for (int which = 0; which < 2 && rc == TK_OK; which++) {
            const char *ln = which ? dm->name2 : dm->name;
            if (!ln) break;
            rc = tk_buf_printf(b, "%s%s=\"", first ? "" : ",", ln);
            first = false;
            if (rc == TK_OK)
                rc = add_escaped(b, which ? dm->values2[pos[d]] : dm->values[pos[d]], false);
            if (rc == TK_OK) rc = tk_buf_addstr(b, "\"");
        }
    }
    if (le && rc == TK_OK) rc = tk_buf_printf(b, "%sle=\"%s\"", first ? "" : ",", le);
    if (rc == TK_OK) rc = tk_buf_addstr(b, "}");
    return rc;
}

static const char *type_name(enum kind k)
{
    switch (k) {
    case K_COUNTER:
    case K_COUNTER_FN:
        return "counter";
    case K_HISTOGRAM:
        return "histogram";
    default:
        return "gauge";
    }
}

static tk_rc render_one(const struct tk_metric *s, struct tk_buf *b)
{
    tk_rc rc = tk_buf_printf(b, "# HELP %s ", s->name);
    if (rc == TK_OK) rc = add_escaped(b, s->help, true);
    if (rc == TK_OK) rc = tk_buf_printf(b, "\n# TYPE %s %s\n", s->name, type_name(s->kind));
    bool sparse = s->flags & TK_METRIC_SPARSE;
    for (size_t i = 0; i < s->ncombos && rc == TK_OK; i++) {
        char v[40];
        switch (s->kind) {
        case K_COUNTER: {
            uint64_t n = atomic_load_explicit(&s->u[i], memory_order_relaxed);
            if (sparse && !n) continue;
            snprintf(v, sizeof v, "%llu", (unsigned long long)n);
            break;
        }
        case K_GAUGE: {
            int64_t n = atomic_load_explicit(&s->g[i], memory_order_relaxed);
            if (sparse && !n) continue;
            snprintf(v, sizeof v, "%lld", (long long)n);
            break;
        }
        case K_COUNTER_FN:
        case K_GAUGE_FN: {
            double d = s->fn(s->arg, i);
            if (isnan(d)) continue;
            fmt_double(d, v, sizeof v);
            break;
        }
        case K_HISTOGRAM: {
            atomic_uint_fast64_t *c = &s->u[i * (s->nbounds + 2)];
            uint64_t cum = 0, counts[TK_METRIC_MAX_BOUNDS + 1];
            for (size_t k = 0; k <= s->nbounds; k++)
                cum += counts[k] = atomic_load_explicit(&c[k], memory_order_relaxed);
            if (sparse && !cum) continue;
            cum = 0;
            for (size_t k = 0; k <= s->nbounds && rc == TK_OK; k++) {
                char le[40];
                if (k < s->nbounds)
                    fmt_double(s->bounds[k], le, sizeof le);
                else
                    snprintf(le, sizeof le, "+Inf");
                cum += counts[k];
                rc = tk_buf_printf(b, "%s_bucket", s->name);
                if (rc == TK_OK) rc = add_labels(b, s, i, le);
                if (rc == TK_OK) rc = tk_buf_printf(b, " %llu\n", (unsigned long long)cum);
            }
            fmt_double(bits_double(atomic_load_explicit(&c[s->nbounds + 1], memory_order_relaxed)),
                       v, sizeof v);
            if (rc == TK_OK) rc = tk_buf_printf(b, "%s_sum", s->name);
            if (rc == TK_OK) rc = add_labels(b, s, i, NULL);
            if (rc == TK_OK) rc = tk_buf_printf(b, " %s\n%s_count", v, s->name);
            if (rc == TK_OK) rc = add_labels(b, s, i, NULL);
            if (rc == TK_OK) rc = tk_buf_printf(b, " %llu\n", (unsigned long long)cum);
            continue;
        }
        }
        rc = tk_buf_addstr(b, s->name);
        if (rc == TK_OK) rc = add_labels(b, s, i, NULL);
        if (rc == TK_OK) rc = tk_buf_printf(b, " %s\n", v);
    }
    return rc;
}

tk_rc tk_metrics_render(struct tk_metrics *m, struct tk_buf *out)
{
    tk_metrics_freeze(m);
    tk_rc rc = TK_OK;
    for (size_t i = 0; i < m->n && rc == TK_OK; i++)
        rc = render_one(m->series[i], out);
    return rc;
}
