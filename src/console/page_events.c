/*
 * page_events.c: the events page (issue 17): the live terminal and a chart
 * of events per minute by outcome.
 *
 * GET /console/events renders the latest TERM_LINES events matching the
 * filters (GET /v1/events, oldest first) into div#terminal, and the URL of
 * the live stream in its data-stream attribute: GET /console/events/stream
 * with the API's filter names (kind, outcome, subject) and after= the seq
 * of the newest event shown, so that console.js continues exactly where the
 * page ends (no gap, no repeat). The page's own parameters are kind,
 * outcome, subject_id (and subject_type, which links from other pages carry:
 * ids are unique across types, so subject_id is the filter). Empty values
 * (a GET form submits every input) are dropped before calling the API.
 *
 * The chart counts the events matching the same filters over the last
 * CHART_MINUTES minutes, per minute, by outcome: GET /v1/events/counts
 * (two columns of at most 10,000 events read in the store, a reply of 60
 * small objects; reading pages of GET /v1/events instead cost 30 ms of CPU
 * per 1000 events, mostly parsing their JSON).
 *
 * GET /console/events/stream is GET /v1/events/stream for the session
 * (EventSource sends the cookie): tk_console_stream.
 */
#include "console.h"
#include "pages.h"

#include "../http/parse.h"

#include <stdio.h>
#include <string.h>

#define TERM_LINES 50
#define CHART_ROOM (32 * 1024) /* kept for the chart after the lines */
#define CHART_MINUTES 60

/* The page's filters, from its query ("" for absent or empty). */
struct filters {
    const char *kind, *outcome, *subject_id, *subject_type;
};

static const char *param(struct tk_req *r, const char *name)
{
    const char *v = tk_req_query(r, name);
    return v ? v : "";
}

static void add_param(struct tk_buf *b, const char *name, const char *value)
{
    if (!value || !*value) return;
    if (b->len) tk_buf_addstr(b, "&");
    tk_buf_addstr(b, name);
    tk_buf_addstr(b, "=");
    tk_buf_urlencode(b, value);
}

/* The filters under the API's names (GET /v1/events, /v1/events/stream),
 * into b (empty for none). */
static void api_filters(struct tk_buf *b, const struct filters *f)
{
    add_param(b, "kind", f->kind);
    add_param(b, "outcome", f->outcome);
    add_param(b, "subject", f->subject_id);
}

/* A copy of b's text on the request's pool ("" for an empty buffer). */
static const char *pooled(struct tk_req *r, struct tk_buf *b)
{
    return tk_pool_strdup(r->pool, b->len ? b->data : "");
}

static void outcome_class(const char *outcome, char out[24])
{
    size_t j = 0;
    for (const char *s = outcome; *s && j + 1 < 24; s++)
        if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_') out[j++] = *s;
    out[j] = '\0';
}

/* One event as a terminal line; console.js builds the same (lineOf). */
static void render_line(struct tk_cpage *pg, json_t *ev)
{
    const char *type = tk_jstr(ev, "subject_type"), *sid = tk_jstr(ev, "subject_id");
    char cls[24], href[128];
    outcome_class(tk_jstr(ev, "outcome"), cls);
    tk_htmlf(pg, "<div class=\"line\" data-id=\"%s\" data-seq=\"%lld\"><span class=\"t\">",
             tk_jstr(ev, "id"), tk_jint(ev, "seq"));
    tk_cpage_time_str(pg, tk_jstr(ev, "at"));
    tk_htmlf(pg,
             "</span> <span class=\"k\">%s</span> <span class=\"a\">%s</span> "
             "<span class=\"o o-%s\">%s</span>",
             tk_jstr(ev, "kind"), tk_jstr(ev, "action"), cls, tk_jstr(ev, "outcome"));
    if (type[0] || sid[0]) {
        tk_console_subject_href(type, sid, href, sizeof href);
        if (href[0])
            tk_htmlf(pg, " <a class=\"s\" href=\"%s\">%s %s</a>", href, type, sid);
        else
            tk_htmlf(pg, " <span class=\"s\">%s %s</span>", type, sid);
    }
    tk_htmlf(pg, " <span class=\"m\">%s</span></div>", tk_jstr(ev, "message"));
}

static void filters_form(struct tk_cpage *pg, const struct filters *f)
{
    static const char *const kinds[] = {"refresh", "validate", "agent",   "oauth", "secret",
                                        "auth",    "operator", "keyring", "node"};
    static const char *const outcomes[] = {"ok", "denied", "error", "failed", "progress"};
    tk_html(pg,
            "<form id=\"filters\" class=\"filters\" method=\"get\" action=\"/console/events\">");
    tk_htmlf(pg,
             "<div><label for=\"f-kind\">Kind</label><input type=\"text\" id=\"f-kind\" "
             "name=\"kind\" list=\"kinds\" value=\"%s\"><datalist id=\"kinds\">",
             f->kind);
    for (size_t i = 0; i < TK_NELEM(kinds); i++)
        tk_htmlf(pg, "<option value=\"%s\">", kinds[i]);
    tk_html(pg, "</datalist></div><div><label for=\"f-outcome\">Outcome</label>"
                "<select id=\"f-outcome\" name=\"outcome\"><option value=\"\">any</option>");
    bool known = !f->outcome[0];
    for (size_t i = 0; i < TK_NELEM(outcomes); i++) {
        bool sel = !strcmp(f->outcome, outcomes[i]);
        known = known || sel;
        tk_htmlf(pg, "<option%s>%s</option>", sel ? " selected" : "", outcomes[i]);
    }
    if (!known) tk_htmlf(pg, "<option selected>%s</option>", f->outcome);
    tk_htmlf(pg,
             "</select></div><div><label for=\"f-subject\">Subject id</label>"
             "<input type=\"text\" id=\"f-subject\" name=\"subject_id\" value=\"%s\" "
             "placeholder=\"a connection, client... id\"></div>",
             f->subject_id);
    if (f->subject_type[0])
        tk_htmlf(pg, "<input type=\"hidden\" name=\"subject_type\" value=\"%s\">", f->subject_type);
    tk_html(pg, "<div><button type=\"submit\">Filter</button> "
                "<a class=\"muted\" href=\"/console/events\">clear</a></div></form>\n");
}

/* The chart's three series, from an event's outcome. */
static int series_of(const char *outcome)
{
    if (!strcmp(outcome, "ok") || !strcmp(outcome, "success")) return 0;
    if (!strcmp(outcome, "failed") || !strcmp(outcome, "error") || !strcmp(outcome, "denied") ||
        !strcmp(outcome, "failure"))
        return 1;
    return 2;
}

/* The chart: events per minute by outcome over the last CHART_MINUTES
 * minutes, from GET /v1/events/counts (bounded there). false after
 * replying an error page. */
static bool render_chart(struct tk_req *r, struct tk_cpage *pg, const char *filters)
{
    int local[3 * CHART_MINUTES];
    memset(local, 0, sizeof local);
    struct tk_buf q;
    tk_buf_init(&q, 4096);
    tk_buf_printf(&q, "bucket=60&buckets=%d", CHART_MINUTES);
    if (filters[0]) tk_buf_printf(&q, "&%s", filters);
    const char *query = pooled(r, &q);
    tk_buf_free(&q);
    struct tk_capi counts;
    if (!tk_console_call(r, "GET", "/v1/events/counts", NULL, query, NULL, &counts)) {
        tk_buf_free(&pg->b);
        return false;
    }
    json_t *buckets = json_object_get(counts.body, "buckets");
    for (size_t b = 0; b < CHART_MINUTES && b < json_array_size(buckets); b++) {
        const char *outcome;
        json_t *v;
        json_object_foreach(json_object_get(json_array_get(buckets, b), "counts"), outcome, v)
            local[series_of(outcome) * CHART_MINUTES + (int)b] += (int)json_integer_value(v);
    }
    int64_t start = tk_jint(counts.body, "start_ms");
    long long seen = tk_jint(counts.body, "counted"), max = tk_jint(counts.body, "max_events");
    bool more = json_is_false(json_object_get(counts.body, "complete"));
    tk_capi_free(&counts);
    struct tk_chart c = {
        .title = "Events per minute by outcome, last 60 minutes",
        .nbuckets = CHART_MINUTES,
        .start_ms = start,
        .bucket_ms = 60000,
        .nseries = 3,
        .label = {"ok", "failed, error, denied", "other (progress)"},
        .cls = {"ok", "fail", "other"},
        .counts = local,
    };
    tk_html(pg, "<section id=\"chart\"><h2>Events per minute by outcome</h2>");
    tk_htmlf(pg,
             "<p class=\"muted\">The last 60 minutes of the events matching the filters "
             "above (UTC): %lld events.",
             seen);
    if (more) tk_htmlf(pg, " More happened: the chart counts the newest %lld.", max);
    tk_html(pg, "</p>");
    tk_console_chart(pg, &c);
    tk_html(pg, "</section>\n");
    return true;
}

void tk_h_console_events(struct tk_req *r)
{
    struct filters f = {param(r, "kind"), param(r, "outcome"), param(r, "subject_id"),
                        param(r, "subject_type")};
    struct tk_buf fb;
    tk_buf_init(&fb, 4096);
    api_filters(&fb, &f);
    const char *filters = pooled(r, &fb);
    tk_buf_free(&fb);

    /* The tenant's newest seq before the filtered list: the stream starts
     * after it when nothing matches (events written in between come
     * through the stream, not lost). */
    int64_t head = 0;
    if (filters[0]) {
        struct tk_capi h;
        if (!tk_console_call(r, "GET", "/v1/events", NULL, "limit=1", NULL, &h)) return;
        head = tk_jint(json_array_get(json_object_get(h.body, "events"), 0), "seq");
        tk_capi_free(&h);
    }
    struct tk_buf q;
    tk_buf_init(&q, 4096);
    tk_buf_printf(&q, "limit=%d", TERM_LINES);
    if (filters[0]) tk_buf_printf(&q, "&%s", filters);
    const char *query = pooled(r, &q);
    tk_buf_free(&q);
    struct tk_capi list;
    if (!tk_console_call(r, "GET", "/v1/events", NULL, query, NULL, &list)) return;
    json_t *evs = json_object_get(list.body, "events");
    size_t n = json_array_size(evs);
    int64_t after = n ? tk_jint(json_array_get(evs, 0), "seq") : head;

    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "events", "Events");
    filters_form(&pg, &f);
    struct tk_buf s;
    tk_buf_init(&s, 4096);
    tk_buf_addstr(&s, "/console/events/stream?");
    if (filters[0]) tk_buf_printf(&s, "%s&", filters);
    tk_buf_printf(&s, "after=%lld", (long long)after);
    tk_html(&pg, "<div class=\"term-bar\"><button type=\"button\" id=\"pause\" class=\"secondary\" "
                 "hidden>Pause</button><span class=\"live\" id=\"live\">not live (needs "
                 "JavaScript)</span><span class=\"live\" id=\"buffered\"></span>");
    tk_htmlf(&pg,
             "<span class=\"muted\">the latest %d matching events, then new ones as they "
             "happen</span></div>\n",
             TERM_LINES);
    tk_htmlf(&pg,
             "<div id=\"terminal\" data-stream=\"%s\" data-after=\"%lld\" "
             "aria-live=\"polite\">",
             s.data, (long long)after);
    tk_buf_free(&s);
    if (!n) tk_html(&pg, "<p class=\"muted empty\">No events match yet.</p>");
    /* the newest lines that fit before the chart: a message may be long and
     * full of characters HTML escapes (an upstream's error text) */
    size_t fit = 0;
    struct tk_cpage line = {.r = r};
    tk_buf_init(&line.b, TK_CONSOLE_PAGE_MAX);
    for (size_t used = pg.b.len; fit < n; fit++) {
        tk_buf_reset(&line.b);
        render_line(&line, json_array_get(evs, fit));
        if (line.failed || used + line.b.len + CHART_ROOM > TK_CONSOLE_PAGE_MAX) break;
        used += line.b.len;
    }
    tk_buf_free(&line.b);
    if (fit < n)
        tk_htmlf(&pg,
                 "<p class=\"muted\" id=\"lines-left-out\">%zu older events did not fit on "
                 "this page (long messages); <code>tokend events</code> shows them.</p>",
                 n - fit);
    for (size_t i = fit; i-- > 0;)
        render_line(&pg, json_array_get(evs, i));
    tk_html(&pg, "</div>\n");
    tk_capi_free(&list);
    if (!render_chart(r, &pg, filters)) return;
    tk_cpage_end(&pg, 200);
}

void tk_h_console_events_stream(struct tk_req *r)
{
    tk_console_stream(r, "/v1/events/stream");
}
