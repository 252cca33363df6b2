/* test_metrics.c: src/common/metrics.c -- registration rules, hostile
 * names and values refused, label bounds (and the abort of a strict
 * registry, in a child process), several threads counting to exact sums,
 * histogram bucket edges, the rendered text parsed back strictly, and the
 * HTTP layer's series on a shared registry (504 counted as such). */
#include "unit.h"

#include "../../src/common/metrics.h"
#include "../../src/http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const colors[] = {"red", "green", "blue"};
static const char *const sizes[] = {"s", "m"};

static struct tk_metrics *lax(void)
{
    struct tk_metrics *m = tk_metrics_new();
    tk_metrics_set_strict(m, false);
    return m;
}

/* ---- a strict parser of the text format (0.0.4) ---- */

#define MAX_SAMPLES 256
struct sample {
    char name[160];
    int nlabels;
    char lname[8][64];
    char lvalue[8][256]; /* unescaped */
    double value;
};
struct parsed {
    int n;
    struct sample s[MAX_SAMPLES];
    char help[32][160]; /* name of each HELP, in order */
    char helptext[32][600];
    char type[32][16];
    int nfam;
};

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Parse a Prometheus text; false (with a message) at the first line that is
 * not HELP, TYPE or a sample, a sample whose family has no TYPE before it,
 * or a HELP/TYPE that is not followed by its family's samples. */
static bool parse(const char *text, struct parsed *p, char *why, size_t wn)
{
    memset(p, 0, sizeof *p);
    const char *line = text;
    int lineno = 0;
    while (*line) {
        lineno++;
        const char *nl = strchr(line, '\n');
        if (!nl) {
            snprintf(why, wn, "line %d: no final newline", lineno);
            return false;
        }
        size_t len = (size_t)(nl - line);
        char buf[2048];
        if (len >= sizeof buf) {
            snprintf(why, wn, "line %d too long", lineno);
            return false;
        }
        memcpy(buf, line, len);
        buf[len] = 0;
        line = nl + 1;
        if (!strncmp(buf, "# HELP ", 7) || !strncmp(buf, "# TYPE ", 7)) {
            bool help = buf[2] == 'H';
            const char *nm = buf + 7, *sp = strchr(nm, ' ');
            if (!sp || sp == nm || (size_t)(sp - nm) >= 160) {
                snprintf(why, wn, "line %d: bad %s", lineno, help ? "HELP" : "TYPE");
                return false;
            }
            for (const char *c = nm; c < sp; c++)
                if (!name_char(*c, c == nm)) {
                    snprintf(why, wn, "line %d: bad name", lineno);
                    return false;
                }
            if (help) {
                if (p->nfam >= 32) return false;
                snprintf(p->help[p->nfam], sizeof p->help[0], "%.*s", (int)(sp - nm), nm);
                /* unescape \\ and \n; any other backslash is an error */
                char *o = p->helptext[p->nfam];
                size_t k = 0;
                for (const char *c = sp + 1; *c; c++) {
                    if (*c == '\\') {
                        c++;
                        if (*c == '\\')
                            o[k++] = '\\';
                        else if (*c == 'n')
                            o[k++] = '\n';
                        else {
                            snprintf(why, wn, "line %d: bad escape in HELP", lineno);
                            return false;
                        }
                    } else {
                        o[k++] = *c;
                    }
                    if (k >= sizeof p->helptext[0] - 1) return false;
                }
                o[k] = 0;
                p->nfam++;
            } else {
                if (!p->nfam || strncmp(p->help[p->nfam - 1], nm, (size_t)(sp - nm)) ||
                    p->help[p->nfam - 1][sp - nm]) {
                    snprintf(why, wn, "line %d: TYPE without its HELP just before", lineno);
                    return false;
                }
                const char *t = sp + 1;
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram")) {
                    snprintf(why, wn, "line %d: bad type %s", lineno, t);
                    return false;
                }
                snprintf(p->type[p->nfam - 1], sizeof p->type[0], "%s", t);
            }
            continue;
        }
        if (buf[0] == '#' || !buf[0]) {
            snprintf(why, wn, "line %d: a comment or an empty line", lineno);
            return false;
        }
        if (p->n >= MAX_SAMPLES) {
            snprintf(why, wn, "too many samples");
            return false;
        }
        struct sample *s = &p->s[p->n];
        const char *c = buf;
        size_t k = 0;
        while (name_char(*c, c == buf) && k < sizeof s->name - 1)
            s->name[k++] = *c++;
        s->name[k] = 0;
        if (!k) {
            snprintf(why, wn, "line %d: no name", lineno);
            return false;
        }
        /* the sample belongs to the last family: its name, or name_bucket|_sum|_count */
        const char *fam = p->nfam ? p->help[p->nfam - 1] : "";
        size_t fl = strlen(fam);
        bool mine = !strcmp(s->name, fam);
        if (!mine && p->nfam && !strcmp(p->type[p->nfam - 1], "histogram") &&
            !strncmp(s->name, fam, fl))
            mine = !strcmp(s->name + fl, "_bucket") || !strcmp(s->name + fl, "_sum") ||
                   !strcmp(s->name + fl, "_count");
        if (!mine || !p->type[p->nfam - 1][0]) {
            snprintf(why, wn, "line %d: %s outside its family", lineno, s->name);
            return false;
        }
        if (*c == '{') {
            c++;
            while (*c != '}') {
                if (s->nlabels >= 8) return false;
                size_t q = 0;
                while (name_char(*c, q == 0) && *c != ':' && q < 63)
                    s->lname[s->nlabels][q++] = *c++;
                s->lname[s->nlabels][q] = 0;
                if (!q || c[0] != '=' || c[1] != '"') {
                    snprintf(why, wn, "line %d: bad label", lineno);
                    return false;
                }
                c += 2;
                q = 0;
                char *v = s->lvalue[s->nlabels];
                while (*c != '"') {
                    if (!*c || *c == '\n' || q >= 255) {
                        snprintf(why, wn, "line %d: unterminated label value", lineno);
                        return false;
                    }
                    if (*c == '\\') {
                        c++;
                        if (*c == '\\' || *c == '"')
                            v[q++] = *c;
                        else if (*c == 'n')
                            v[q++] = '\n';
                        else {
                            snprintf(why, wn, "line %d: bad escape", lineno);
                            return false;
                        }
                        c++;
                    } else {
                        v[q++] = *c++;
                    }
                }
                v[q] = 0;
                c++;
                s->nlabels++;
                if (*c == ',')
                    c++;
                else if (*c != '}') {
                    snprintf(why, wn, "line %d: bad label separator", lineno);
                    return false;
                }
            }
            c++;
        }
        if (*c != ' ') {
            snprintf(why, wn, "line %d: no space before the value", lineno);
            return false;
        }
        c++;
        if (!strcmp(c, "+Inf")) {
            s->value = INFINITY;
        } else {
            char *end;
            s->value = strtod(c, &end);
            if (end == c || *end || isnan(s->value)) {
                snprintf(why, wn, "line %d: bad value '%s'", lineno, c);
                return false;
            }
        }
        p->n++;
    }
    return true;
}

static const char *label(const struct sample *s, const char *name)
{
    for (int i = 0; i < s->nlabels; i++)
        if (!strcmp(s->lname[i], name)) return s->lvalue[i];
    return NULL;
}

static bool render_parse(struct tk_metrics *m, struct parsed *p)
{
    struct tk_buf b;
    tk_buf_init(&b, 1 << 20);
    bool ok = CHECK_EQ_INT(tk_metrics_render(m, &b), TK_OK);
    char why[200] = "";
    if (ok && !parse(b.data ? b.data : "", p, why, sizeof why)) {
        FAILF("render does not parse: %s\n%s", why, b.data);
        ok = false;
    }
    tk_buf_free(&b);
    return ok;
}

/* ---- registration ---- */

void test_metrics_register_rules(void)
{
    struct tk_metrics *m = lax();
    struct tk_err e;
    struct tk_dim color = {"color", colors, 3, NULL, NULL};
    double bounds[] = {1, 2};
    CHECK(tk_metric_counter(m, "tokend_t_things_total", "Things.", &color, 1, 0, &e));
    CHECK(tk_metric_gauge(m, "tokend_t_level", "Level.", NULL, 0, 0, &e));
    CHECK(tk_metric_histogram(m, "tokend_t_wait_seconds", "Wait.", NULL, 0, bounds, 2, 0, &e));

#define REFUSED(call)                                                                              \
    do {                                                                                           \
        tk_err_clear(&e);                                                                          \
        CHECK((call) == NULL);                                                                     \
        CHECK_EQ_STR(e.code, "metric_invalid");                                                    \
        CHECK(e.msg[0] != 0);                                                                      \
    } while (0)
    /* duplicates, across kinds and a histogram's derived names */
    REFUSED(tk_metric_counter(m, "tokend_t_things_total", "Again.", NULL, 0, 0, &e));
    CHECK(strstr(e.msg, "already registered") != NULL);
    REFUSED(tk_metric_gauge(m, "tokend_t_level", "Again.", NULL, 0, 0, &e));
    REFUSED(tk_metric_gauge(m, "tokend_t_wait_seconds_count", "Clash.", NULL, 0, 0, &e));
    REFUSED(tk_metric_gauge(m, "tokend_t_wait_seconds_bucket", "Clash.", NULL, 0, 0, &e));
    CHECK(tk_metric_histogram(m, "tokend_t", "No clash itself.", NULL, 0, bounds, 2, 0, &e));
    /* tokend_t (histogram) now takes tokend_t_count: a gauge of that name is refused */
    REFUSED(tk_metric_gauge(m, "tokend_t_count", "Clash.", NULL, 0, 0, &e));
    /* counters end in _total, nothing else does */
    REFUSED(tk_metric_counter(m, "tokend_t_things", "No suffix.", NULL, 0, 0, &e));
    CHECK(strstr(e.msg, "_total") != NULL);
    REFUSED(tk_metric_gauge(m, "tokend_t_level_total", "Suffix.", NULL, 0, 0, &e));
    REFUSED(tk_metric_gauge_fn(m, "tokend_t_fn_total", "Suffix.", NULL, 0, NULL, NULL, &e));
    /* help, function, flags, bounds */
    REFUSED(tk_metric_gauge(m, "tokend_t_a", "", NULL, 0, 0, &e));
    REFUSED(tk_metric_gauge(m, "tokend_t_a", NULL, NULL, 0, 0, &e));
    REFUSED(tk_metric_gauge(m, "tokend_t_a", "\xff\xfe", NULL, 0, 0, &e));
    REFUSED(tk_metric_gauge_fn(m, "tokend_t_a", "No fn.", NULL, 0, NULL, NULL, &e));
    REFUSED(tk_metric_gauge(m, "tokend_t_a", "Flags.", NULL, 0, 0x80, &e));
    double down[] = {2, 1}, same[] = {1, 1}, nan[] = {1, NAN}, inf[] = {1, INFINITY};
    REFUSED(tk_metric_histogram(m, "tokend_t_h", "Down.", NULL, 0, down, 2, 0, &e));
    REFUSED(tk_metric_histogram(m, "tokend_t_h", "Same.", NULL, 0, same, 2, 0, &e));
    REFUSED(tk_metric_histogram(m, "tokend_t_h", "NaN.", NULL, 0, nan, 2, 0, &e));
    REFUSED(tk_metric_histogram(m, "tokend_t_h", "Inf.", NULL, 0, inf, 2, 0, &e));
    REFUSED(tk_metric_histogram(m, "tokend_t_h", "None.", NULL, 0, NULL, 0, 0, &e));
    /* label dimensions */
    struct tk_dim empty = {"color", colors, 0, NULL, NULL};
    REFUSED(tk_metric_counter(m, "tokend_t_b_total", "Empty set.", &empty, 1, 0, &e));
    static const char *const dup[] = {"a", "b", "a"};
    struct tk_dim dupd = {"letter", dup, 3, NULL, NULL};
    REFUSED(tk_metric_counter(m, "tokend_t_b_total", "Dup values.", &dupd, 1, 0, &e));
    struct tk_dim twice[2] = {color, color};
    REFUSED(tk_metric_counter(m, "tokend_t_b_total", "Dup label.", twice, 2, 0, &e));
    struct tk_dim le = {"le", colors, 3, NULL, NULL};
    REFUSED(tk_metric_histogram(m, "tokend_t_h", "le.", &le, 1, bounds, 2, 0, &e));
    CHECK(
        tk_metric_counter(m, "tokend_t_le_total", "le is fine outside histograms.", &le, 1, 0, &e));
    struct tk_dim five[5] = {color, color, color, color, color};
    REFUSED(tk_metric_counter(m, "tokend_t_b_total", "Five.", five, 5, 0, &e));
    REFUSED(tk_metric_counter(m, "tokend_t_b_total", "No dims.", NULL, 1, 0, &e));
    struct tk_dim half = {"color", colors, 3, "size", NULL};
    REFUSED(tk_metric_counter(m, "tokend_t_b_total", "name2 without values2.", &half, 1, 0, &e));
    /* a pair dimension: pairs must differ, not each half */
    static const char *const methods[] = {"GET", "POST", "GET"};
    static const char *const routes[] = {"/a", "/a", "/b"};
    struct tk_dim pair = {"method", methods, 3, "route", routes};
    CHECK(tk_metric_counter(m, "tokend_t_pair_total", "Pairs.", &pair, 1, 0, &e));
    static const char *const routes_dup[] = {"/a", "/a", "/a"};
    struct tk_dim pdup = {"method", methods, 3, "route", routes_dup};
    REFUSED(tk_metric_counter(m, "tokend_t_pdup_total", "Pair dup.", &pdup, 1, 0, &e));
    /* too many combinations */
    static const char *many[100];
    char mbuf[100][16];
    for (int i = 0; i < 100; i++) {
        snprintf(mbuf[i], sizeof mbuf[i], "v%d", i);
        many[i] = mbuf[i];
    }
    struct tk_dim wide = {"v", many, 100, NULL, NULL};
    struct tk_dim wide2[2] = {wide, wide};
    struct tk_dim wide3[3] = {wide, wide, wide};
    CHECK(tk_metric_counter(m, "tokend_t_wide_total", "Wide.", wide2, 2, TK_METRIC_SPARSE, &e) ==
          NULL); /* same label twice */
    wide3[1].name = "w";
    wide3[2].name = "x";
    REFUSED(tk_metric_counter(m, "tokend_t_wide_total", "Too wide.", wide3, 3, 0, &e));

    /* after a freeze (or a render): nothing more */
    tk_metrics_freeze(m);
    REFUSED(tk_metric_gauge(m, "tokend_t_late", "Late.", NULL, 0, 0, &e));
    CHECK(strstr(e.msg, "frozen") != NULL);
    tk_metrics_free(m);

    m = lax();
    CHECK(tk_metric_gauge(m, "tokend_t_early", "Early.", NULL, 0, 0, &e));
    struct tk_buf b;
    tk_buf_init(&b, 1 << 16);
    CHECK_EQ_INT(tk_metrics_render(m, &b), TK_OK);
    tk_buf_free(&b);
    REFUSED(tk_metric_gauge(m, "tokend_t_late", "Late.", NULL, 0, 0, &e));
    tk_metrics_free(m);
#undef REFUSED
}

void test_metrics_hostile_names(void)
{
    struct tk_metrics *m = lax();
    struct tk_err e;
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    memcpy(longname, "tokend_", 7);
    longname[sizeof longname - 1] = 0;
    const char *bad_names[] = {
        NULL,
        "",
        "tokend_",
        "tokend",
        "Tokend_x",
        "TOKEND_X",
        "x_tokend",
        "tokend_x y",
        "tokend_x\n",
        "tokend_x{a=\"b\"}",
        "tokend_x\"",
        "tokend_x-y",
        "tokend_\xc3\xa9",
        "tokend_x\\",
        "tokend_x\t",
        "tokend_x:y",
        "9tokend",
        longname,
        "tokend_x\xff",
        "tokend_a\0hidden" /* the NUL ends it: "tokend_a" is fine, registered once below */};
    for (size_t i = 0; i + 1 < TK_NELEM(bad_names); i++) {
        tk_err_clear(&e);
        if (tk_metric_gauge(m, bad_names[i], "Hostile.", NULL, 0, 0, &e) != NULL)
            FAILF("name %zu accepted", i);
        else
            CHECK_EQ_STR(e.code, "metric_invalid");
        /* the message shows the name, printable and bounded */
        for (const char *c = e.msg; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) {
                FAILF("name %zu: the message has byte 0x%02x", i, (unsigned char)*c);
                break;
            }
        CHECK(strlen(e.msg) < sizeof e.msg - 1);
    }
    CHECK(tk_metric_gauge(m, "tokend_a", "Fine.", NULL, 0, 0, &e));
    /* label names */
    const char *bad_labels[] = {"", "__x", "a-b", "A", "a b", "a\"", "1a", "a\n", "\xc3\xa9"};
    for (size_t i = 0; i < TK_NELEM(bad_labels); i++) {
        struct tk_dim d = {bad_labels[i], colors, 3, NULL, NULL};
        if (tk_metric_counter(m, "tokend_l_total", "Hostile label.", &d, 1, 0, &e))
            FAILF("label name %zu accepted", i);
    }
    struct tk_dim nul = {NULL, colors, 3, NULL, NULL};
    CHECK(tk_metric_counter(m, "tokend_l_total", "NULL label.", &nul, 1, 0, &e) == NULL);
    /* label values: not UTF-8, too long, NULL */
    char longv[200];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    const char *const badv1[] = {"ok", "\xff"};
    const char *const badv2[] = {"ok", longv};
    const char *const badv3[] = {"ok", NULL};
    const char *const *badv[] = {badv1, badv2, badv3};
    for (size_t i = 0; i < TK_NELEM(badv); i++) {
        struct tk_dim d = {"v", badv[i], 2, NULL, NULL};
        if (tk_metric_counter(m, "tokend_l_total", "Hostile value.", &d, 1, 0, &e))
            FAILF("label value set %zu accepted", i);
    }
    /* but quotes, backslashes and newlines are values like any other (escaped) */
    const char *const odd[] = {"a\"b", "c\\d", "e\nf", "", "\xc3\xa9t\xc3\xa9"};
    struct tk_dim d = {"v", odd, TK_NELEM(odd), NULL, NULL};
    struct tk_metric *s = tk_metric_counter(m, "tokend_l_total", "Odd values.", &d, 1, 0, &e);
    CHECK(s != NULL);
    for (size_t i = 0; i < TK_NELEM(odd); i++)
        tk_metric_add(s, i, i + 1);
    struct parsed *p = calloc(1, sizeof *p);
    if (render_parse(m, p)) {
        int seen = 0;
        for (int i = 0; i < p->n; i++) {
            if (strcmp(p->s[i].name, "tokend_l_total")) continue;
            const char *v = label(&p->s[i], "v");
            CHECK_EQ_STR(v, odd[seen]);
            CHECK(p->s[i].value == seen + 1);
            seen++;
        }
        CHECK_EQ_INT(seen, TK_NELEM(odd));
    }
    free(p);
    tk_metrics_free(m);
}

/* ---- label bounds ---- */

void test_metrics_label_bounds(void)
{
    struct tk_metrics *m = lax();
    struct tk_err e;
    struct tk_dim dims[2] = {{"color", colors, 3, NULL, NULL}, {"size", sizes, 2, NULL, NULL}};
    struct tk_metric *c = tk_metric_counter(m, "tokend_b_total", "B.", dims, 2, 0, &e);
    struct tk_metric *g = tk_metric_gauge(m, "tokend_b_level", "B.", dims, 2, 0, &e);
    if (!CHECK(c && g)) return;
    /* row-major: the last dimension varies fastest */
    CHECK_EQ_INT(tk_metric_index(c, (size_t[]){0, 0}), 0);
    CHECK_EQ_INT(tk_metric_index(c, (size_t[]){0, 1}), 1);
    CHECK_EQ_INT(tk_metric_index(c, (size_t[]){2, 1}), 5);
    CHECK_EQ_INT(tk_metric_lookup(c, (const char *const[]){"blue", "m"}), 5);
    CHECK_EQ_INT(tk_metric_lookup(c, (const char *const[]){"green", "s"}), 2);
    /* outside the declared set */
    CHECK(tk_metric_index(c, (size_t[]){3, 0}) == TK_METRIC_NOIDX);
    CHECK(tk_metric_index(c, (size_t[]){0, 2}) == TK_METRIC_NOIDX);
    CHECK(tk_metric_lookup(c, (const char *const[]){"purple", "s"}) == TK_METRIC_NOIDX);
    CHECK(tk_metric_lookup(c, (const char *const[]){"red", "xl"}) == TK_METRIC_NOIDX);
    CHECK(tk_metric_lookup(c, (const char *const[]){"red", NULL}) == TK_METRIC_NOIDX);
    CHECK(tk_metric_lookup(c, (const char *const[]){"RED", "s"}) == TK_METRIC_NOIDX);
    /* a bad index, the wrong kind or NULL does nothing (not strict) */
    tk_metric_inc(c, 6);
    tk_metric_inc(c, TK_METRIC_NOIDX);
    tk_metric_set(c, 0, 5);
    tk_metric_observe(c, 0, 1);
    tk_metric_inc(g, 0);
    tk_metric_inc(NULL, 0);
    tk_metric_set(NULL, 0, 1);
    tk_metric_observe(NULL, 0, 1);
    for (size_t i = 0; i < 6; i++)
        CHECK_EQ_INT(tk_metric_counter_get(c, i), 0);
    CHECK_EQ_INT(tk_metric_gauge_get(g, 0), 0);
    tk_metric_add(c, 5, 7);
    tk_metric_set(g, 5, -3);
    tk_metric_gauge_add(g, 5, 1);
    CHECK_EQ_INT(tk_metric_counter_get(c, 5), 7);
    CHECK_EQ_INT(tk_metric_gauge_get(g, 5), -2);
    tk_metrics_free(m);
}

/* In a child: a strict registry aborts on each kind of misuse. */
static bool aborts(int what)
{
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) dup2(devnull, 2); /* the fatal message is expected */
        struct tk_metrics *m = tk_metrics_new();
        tk_metrics_set_strict(m, true);
        struct tk_dim d = {"color", colors, 3, NULL, NULL};
        struct tk_metric *c = tk_metric_counter(m, "tokend_s_total", "S.", &d, 1, 0, NULL);
        switch (what) {
        case 0:
            tk_metric_inc(c, 3);
            break;
        case 1:
            tk_metric_lookup(c, (const char *const[]){"purple"});
            break;
        case 2:
            tk_metric_counter(m, "tokend_s_total", "Dup.", NULL, 0, 0, NULL);
            break;
        case 3:
            tk_metric_gauge(m, "bad name", "Bad.", NULL, 0, 0, NULL);
            break;
        case 4:
            tk_metrics_freeze(m);
            tk_metric_gauge(m, "tokend_s_late", "Late.", NULL, 0, 0, NULL);
            break;
        case 5:
            tk_metric_observe(c, 0, 1);
            break;
        default:
            break; /* no misuse: exits 0 */
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

void test_metrics_strict_aborts(void)
{
    for (int i = 0; i <= 5; i++)
        if (!aborts(i)) FAILF("misuse %d did not abort a strict registry", i);
    CHECK(!aborts(99));
#ifdef TK_UNITTEST
    /* the test build's registries are strict by default: no forgotten set_strict */
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) dup2(devnull, 2);
        struct tk_metrics *m = tk_metrics_new();
        tk_metric_gauge(m, "bad name", "Bad.", NULL, 0, 0, NULL);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#endif
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 50000

struct hammer {
    struct tk_metric *c, *g, *h;
    int id;
};

static void *hammer_main(void *arg)
{
    struct hammer *hm = arg;
    for (int i = 0; i < ROUNDS; i++) {
        size_t idx = (size_t)(i % 3);
        tk_metric_inc(hm->c, idx);
        tk_metric_gauge_add(hm->g, 0, 1);
        tk_metric_gauge_add(hm->g, 0, -1);
        tk_metric_gauge_add(hm->g, 1, 1);
        tk_metric_observe(hm->h, idx, (double)(i % 7)); /* integers: the sum is exact */
    }
    return NULL;
}

static void *render_main(void *arg)
{
    struct tk_metrics *m = arg;
    for (int i = 0; i < 20; i++) {
        struct tk_buf b;
        tk_buf_init(&b, 1 << 20);
        tk_metrics_render(m, &b);
        tk_buf_free(&b);
    }
    return NULL;
}

void test_metrics_threads(void)
{
    struct tk_metrics *m = tk_metrics_new();
    struct tk_dim d = {"color", colors, 3, NULL, NULL};
    double bounds[] = {1, 3, 5};
    struct hammer hm[THREADS];
    struct tk_metric *c = tk_metric_counter(m, "tokend_h_total", "H.", &d, 1, 0, NULL);
    struct tk_metric *g = tk_metric_gauge(m, "tokend_h_level", "H.", &d, 1, 0, NULL);
    struct tk_metric *h =
        tk_metric_histogram(m, "tokend_h_seconds", "H.", &d, 1, bounds, 3, 0, NULL);
    pthread_t t[THREADS + 1];
    for (int i = 0; i < THREADS; i++) {
        hm[i] = (struct hammer){c, g, h, i};
        pthread_create(&t[i], NULL, hammer_main, &hm[i]);
    }
    pthread_create(&t[THREADS], NULL, render_main, m); /* renders while they count */
    for (int i = 0; i <= THREADS; i++)
        pthread_join(t[i], NULL);
    uint64_t total = 0;
    double sum_all = 0;
    for (size_t i = 0; i < 3; i++) {
        /* ROUNDS is not a multiple of 3: combination i got the rounds with i%3 == i */
        uint64_t want = (uint64_t)THREADS * ((ROUNDS - i + 2) / 3);
        CHECK_EQ_INT(tk_metric_counter_get(c, i), want);
        double sum;
        CHECK_EQ_INT(tk_metric_histogram_count(h, i, &sum), want);
        total += tk_metric_counter_get(c, i);
        sum_all += sum;
    }
    CHECK_EQ_INT(total, (uint64_t)THREADS * ROUNDS);
    double want_sum = 0;
    for (int i = 0; i < ROUNDS; i++)
        want_sum += i % 7;
    CHECK(sum_all == want_sum * THREADS);
    CHECK_EQ_INT(tk_metric_gauge_get(g, 0), 0);
    CHECK_EQ_INT(tk_metric_gauge_get(g, 1), (int64_t)THREADS * ROUNDS);
    tk_metrics_free(m);
}

/* ---- histograms ---- */

void test_metrics_histogram_edges(void)
{
    struct tk_metrics *m = tk_metrics_new();
    double bounds[] = {0.001, 1, 2.5};
    struct tk_metric *h =
        tk_metric_histogram(m, "tokend_e_seconds", "Edges.", NULL, 0, bounds, 3, 0, NULL);
    /* le is "less than or equal": a value on a bound counts in that bucket */
    double obs[] = {-1, 0, 0.001, 0.0010000001, 1, 1.0000001, 2.5, 2.5000001, 1e9, INFINITY, NAN};
    for (size_t i = 0; i < TK_NELEM(obs); i++)
        tk_metric_observe(h, 0, obs[i]);
    double sum;
    CHECK_EQ_INT(tk_metric_histogram_count(h, 0, &sum), 10); /* NaN is ignored */
    CHECK(isinf(sum));
    struct parsed *p = calloc(1, sizeof *p);
    if (render_parse(m, p)) {
        /* le 0.001: -1, 0, 0.001; le 1: + 0.0010000001, 1; le 2.5: + 1.0000001, 2.5; +Inf: all */
        const char *les[] = {"0.001", "1", "2.5", "+Inf"};
        double want[] = {3, 5, 7, 10};
        int k = 0;
        for (int i = 0; i < p->n; i++) {
            if (strcmp(p->s[i].name, "tokend_e_seconds_bucket")) continue;
            if (k < 4) {
                CHECK_EQ_STR(label(&p->s[i], "le"), les[k]);
                CHECK(p->s[i].value == want[k]);
            }
            k++;
        }
        CHECK_EQ_INT(k, 4);
        CHECK_EQ_STR(p->s[p->n - 1].name, "tokend_e_seconds_count");
        CHECK(p->s[p->n - 1].value == 10);
        CHECK_EQ_STR(p->s[p->n - 2].name, "tokend_e_seconds_sum");
        CHECK(isinf(p->s[p->n - 2].value));
    }
    free(p);
    tk_metrics_free(m);
}

/* ---- the render ---- */

static double read_level(void *arg, size_t idx)
{
    (void)arg;
    return idx == 1 ? NAN : (double)idx * 0.5; /* combination 1 left out */
}

static double read_big(void *arg, size_t idx)
{
    (void)idx;
    return *(double *)arg;
}

void test_metrics_render_format(void)
{
    struct tk_metrics *m = tk_metrics_new();
    struct tk_dim color = {"color", colors, 3, NULL, NULL};
    static const char *const methods[] = {"GET", ""};
    static const char *const routes[] = {"/v1/x/{id}", "none"};
    struct tk_dim route = {"method", methods, 2, "route", routes};
    struct tk_dim rs[2] = {route, {"size", sizes, 2, NULL, NULL}};
    double bounds[] = {0.0001, 0.00025, 1, 2.5};
    double big = 12345678901234.0;
    struct tk_metric *c = tk_metric_counter(m, "tokend_r_requests_total",
                                            "Requests \\ with a backslash\nand a newline.", rs, 2,
                                            TK_METRIC_SPARSE, NULL);
    struct tk_metric *dense =
        tk_metric_counter(m, "tokend_r_cut_total", "Dense.", &color, 1, 0, NULL);
    struct tk_metric *h = tk_metric_histogram(m, "tokend_r_duration_seconds", "Durations.", &route,
                                              1, bounds, 4, TK_METRIC_SPARSE, NULL);
    CHECK(tk_metric_gauge_fn(m, "tokend_r_level", "Level.", &color, 1, read_level, NULL, NULL));
    CHECK(tk_metric_counter_fn(m, "tokend_r_big_total", "Big.", NULL, 0, read_big, &big, NULL));
    struct tk_metric *g = tk_metric_gauge(m, "tokend_r_inflight", "Now.", NULL, 0, 0, NULL);
    tk_metric_add(c, tk_metric_index(c, (size_t[]){1, 0}), 4);
    tk_metric_inc(dense, 2);
    tk_metric_observe(h, 0, 0.0002);
    tk_metric_set(g, 0, -7);
    struct parsed *p = calloc(1, sizeof *p);
    if (!render_parse(m, p)) {
        free(p);
        tk_metrics_free(m);
        return;
    }
    /* families in registration order, with their types */
    const char *fams[] = {"tokend_r_requests_total",   "tokend_r_cut_total",
                          "tokend_r_duration_seconds", "tokend_r_level",
                          "tokend_r_big_total",        "tokend_r_inflight"};
    const char *types[] = {"counter", "counter", "histogram", "gauge", "counter", "gauge"};
    CHECK_EQ_INT(p->nfam, 6);
    for (int i = 0; i < p->nfam && i < 6; i++) {
        CHECK_EQ_STR(p->help[i], fams[i]);
        CHECK_EQ_STR(p->type[i], types[i]);
    }
    CHECK_EQ_STR(p->helptext[0], "Requests \\ with a backslash\nand a newline.");
    int i = 0;
    /* sparse: the one non-zero combination, method and route together */
    CHECK_EQ_STR(p->s[i].name, "tokend_r_requests_total");
    CHECK_EQ_INT(p->s[i].nlabels, 3);
    CHECK_EQ_STR(label(&p->s[i], "method"), "");
    CHECK_EQ_STR(label(&p->s[i], "route"), "none");
    CHECK_EQ_STR(label(&p->s[i], "size"), "s");
    CHECK(p->s[i].value == 4);
    i++;
    /* dense: every combination, zeros too */
    for (int k = 0; k < 3; k++, i++) {
        CHECK_EQ_STR(p->s[i].name, "tokend_r_cut_total");
        CHECK_EQ_STR(label(&p->s[i], "color"), colors[k]);
        CHECK(p->s[i].value == (k == 2));
    }
    /* the histogram of GET /v1/x/{id} only; le last; cumulative; _count = +Inf */
    const char *les[] = {"0.0001", "0.00025", "1", "2.5", "+Inf"};
    for (int k = 0; k < 5; k++, i++) {
        CHECK_EQ_STR(p->s[i].name, "tokend_r_duration_seconds_bucket");
        CHECK_EQ_STR(label(&p->s[i], "route"), "/v1/x/{id}");
        CHECK_EQ_STR(p->s[i].lname[p->s[i].nlabels - 1], "le");
        CHECK_EQ_STR(label(&p->s[i], "le"), les[k]);
        CHECK(p->s[i].value == (k >= 1));
    }
    CHECK_EQ_STR(p->s[i].name, "tokend_r_duration_seconds_sum");
    CHECK(fabs(p->s[i].value - 0.0002) < 1e-12);
    i++;
    CHECK_EQ_STR(p->s[i].name, "tokend_r_duration_seconds_count");
    CHECK(p->s[i].value == 1);
    i++;
    /* the callback's NaN leaves its sample out */
    CHECK_EQ_STR(label(&p->s[i], "color"), "red");
    CHECK(p->s[i].value == 0);
    i++;
    CHECK_EQ_STR(label(&p->s[i], "color"), "blue");
    CHECK(p->s[i].value == 1);
    i++;
    CHECK_EQ_STR(p->s[i].name, "tokend_r_big_total");
    CHECK(p->s[i].value == big);
    i++;
    CHECK_EQ_STR(p->s[i].name, "tokend_r_inflight");
    CHECK(p->s[i].value == -7);
    i++;
    CHECK_EQ_INT(p->n, i);
    /* a buffer too small for it: TK_ETOOBIG, never a cut line passed as whole */
    struct tk_buf b;
    tk_buf_init(&b, 64);
    CHECK_EQ_INT(tk_metrics_render(m, &b), TK_ETOOBIG);
    tk_buf_free(&b);
    free(p);
    tk_metrics_free(m);
}

/* ---- the HTTP layer's series on a shared registry ---- */

static void h_ok(struct tk_req *r)
{
    tk_reply_json(r, 200, json_object());
}

static void h_gone(struct tk_req *r)
{
    tk_reply_json(r, 504, json_pack("{s:s}", "error", "timeout"));
}

static const struct tk_route http_routes[] = {
    {"GET", "/ok", h_ok, .flags = 0},
    {"GET", "/gone", h_gone, .flags = 0},
};

static int http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int status = -1;
    char req[256], resp[4096];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
             path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
        size_t n = 0;
        ssize_t k;
        while (n < sizeof resp - 1 && (k = read(fd, resp + n, sizeof resp - 1 - n)) > 0)
            n += (size_t)k;
        resp[n] = 0;
        if (sscanf(resp, "HTTP/1.1 %d", &status) != 1) status = -1;
    }
    close(fd);
    return status;
}

static double sample_value(const struct parsed *p, const char *name, const char *route,
                           const char *status)
{
    for (int i = 0; i < p->n; i++) {
        const struct sample *s = &p->s[i];
        if (strcmp(s->name, name)) continue;
        const char *rt = label(s, "route"), *st = label(s, "status");
        if (route && (!rt || strcmp(rt, route))) continue;
        if (status && (!st || strcmp(st, status))) continue;
        return s->value;
    }
    return -1;
}

void test_metrics_http_series(void)
{
    struct tk_metrics *m = tk_metrics_new();
    struct tk_http_opts o = {
        .listen = "127.0.0.1:0",
        .threads = 2,
        .max_body = 65536,
        .max_header = 16384,
        .max_connections = 32,
        .max_connections_per_ip = 32,
        .idle_timeout = 10,
        .header_timeout = 10,
        .routes = http_routes,
        .nroutes = TK_NELEM(http_routes),
        .metrics = m,
    };
    struct tk_http *h = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_http_start(&o, &h, &e), &e)) {
        tk_metrics_free(m);
        return;
    }
    /* the same registry cannot take a second server's series */
    tk_metrics_set_strict(m, false);
    struct tk_http *h2 = NULL;
    CHECK(tk_http_start(&o, &h2, &e) != TK_OK);
    CHECK_EQ_STR(e.code, "metric_invalid");
    tk_metrics_set_strict(m, true);

    CHECK_EQ_INT(http_get(tk_http_port(h), "/gone"), 504);
    CHECK_EQ_INT(http_get(tk_http_port(h), "/gone"), 504);
    CHECK_EQ_INT(http_get(tk_http_port(h), "/ok"), 200);
    CHECK_EQ_INT(http_get(tk_http_port(h), "/nope"), 404);
    /* counted when the response is done, which may be just after the client has it */
    struct parsed *p = calloc(1, sizeof *p);
    int64_t end = tk_mono_ms() + 10000;
    bool done = false;
    while (!done && tk_mono_ms() < end) {
        if (!render_parse(m, p)) break;
        done = sample_value(p, "tokend_http_requests_total", "none", "404") == 1 &&
               sample_value(p, "tokend_http_inflight", NULL, NULL) == 0;
        if (!done) usleep(10000);
    }
    CHECK(done);
    CHECK(sample_value(p, "tokend_http_requests_total", "/gone", "504") == 2);
    CHECK(sample_value(p, "tokend_http_requests_total", "/ok", "200") == 1);
    CHECK(sample_value(p, "tokend_http_request_duration_seconds_count", "/gone", NULL) == 2);
    CHECK(sample_value(p, "tokend_http_request_duration_seconds_count", "/ok", NULL) == 1);
    CHECK(sample_value(p, "tokend_http_connections_cut_total", NULL, NULL) == 0);
    free(p);
    CHECK(tk_http_drain(h, 1000));
    tk_http_stop(h);
    tk_metrics_free(m);
}
