/* page_connections.c: the console's connections pages (issue 17).
 *
 * Views of the /v1 connection routes: the list (GET /v1/connections with
 * its filters, 50 a page, the API's next_cursor as the next page's link),
 * one connection (GET /v1/connections/{id}, its diagnosis, its refresh
 * attempts from GET /v1/events as a timeline, a table and a chart by
 * minute), and the forms that act on it: refresh and debug refresh (POST
 * /v1/connections/{id}/refresh, which parks while the upstream answers, so
 * the result page is rendered when it resumes) and a connect link (POST
 * /v1/connect/{app_id}/start for the connection's app and label).
 *
 * Nothing here reads a token: the routes shown never answer one, and the
 * debug refresh's exchange is the API's masked one, printed as it came. */
#include "console.h"
#include "pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LIST_LIMIT 50
#define LIST_ERROR_MAX 200                         /* bytes of last_error in the list */
#define LIST_ROOM (TK_CONSOLE_PAGE_MAX - 8 * 1024) /* the list page's rows stop short of it */
#define EVENTS_LIMIT 100                           /* attempts read for the timeline */
#define ATTEMPTS_SHOWN 20                          /* rows of the attempts table */
#define CHART_MINUTES 60
#define TITLE_MAX 160            /* bytes of a message in a timeline block's title */
#define TITLES_ROOM (40 * 1024)  /* a block's title has its message while the page is below */
#define DETAILS_ROOM (12 * 1024) /* kept after the attempts table for the details */

/* ---- small helpers ---- */

/* Append "&name=value" (percent-encoded) to q (size n); false when it does
 * not fit. A NULL or empty value adds nothing. */
static bool q_add(char *q, size_t n, const char *name, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!v || !*v) return true;
    size_t len = strlen(q);
    int w = snprintf(q + len, n - len, "%s%s=", len ? "&" : "", name);
    if (w < 0 || (size_t)w >= n - len) {
        q[len] = '\0';
        return false;
    }
    size_t at = len + (size_t)w;
    for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
        if (at + 4 > n) {
            q[len] = '\0';
            return false;
        }
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.' || *s == '~') {
            q[at++] = (char)*s;
        } else {
            q[at++] = '%';
            q[at++] = hex[*s >> 4];
            q[at++] = hex[*s & 15];
        }
    }
    q[at] = '\0';
    return true;
}

/* A query parameter of the console request, NULL when absent or empty (an
 * empty field of the filter form means "any"). */
static const char *query_arg(struct tk_req *r, const char *name)
{
    const char *v = tk_req_query(r, name);
    return v && *v ? v : NULL;
}

/* tk_cpage_form with an id (the DOM contract names the forms). */
/* The link to a connection's page (from its API id), "" when it has none. */
static void conn_href(const char *id, char out[128])
{
    tk_console_subject_href("connection", id, out, 128);
}

/* s cut to at most max bytes at a UTF-8 boundary, with "…" when cut (out:
 * max + 4 bytes). */
static const char *cut(const char *s, char *out, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) return s;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    memcpy(out, s, max);
    memcpy(out + max, "\xE2\x80\xA6", 4);
    return out;
}

/* The timeline's class of an event outcome. */
static const char *outcome_class(const char *o)
{
    if (!strcmp(o, "ok")) return "ok";
    if (!strcmp(o, "failed") || !strcmp(o, "error") || !strcmp(o, "denied")) return "fail";
    return "other";
}

/* ---- GET /console/connections ---- */

static const char *const STATUSES[] = {
    "ok", "expiring_soon", "refresh_error", "needs_reconnect", "disabled", NULL};

static void filters(struct tk_cpage *pg, const char *status, const char *app_id)
{
    tk_html(pg,
            "<p class=\"quick\"><a id=\"quick-all\" href=\"/console/connections\">All</a> · "
            "<a id=\"quick-needs-reconnect\" href=\"/console/connections?status=needs_reconnect\">"
            "Needs reconnect</a> · <a href=\"/console/connections?status=refresh_error\">"
            "Refresh errors</a></p>");
    tk_html(pg, "<form id=\"conn-filters\" class=\"filters\" method=\"get\" "
                "action=\"/console/connections\"><div><label for=\"f-status\">Status</label>"
                "<select id=\"f-status\" name=\"status\"><option value=\"\">any</option>");
    for (size_t i = 0; STATUSES[i]; i++)
        tk_htmlf(pg, "<option value=\"%s\"%s>%s</option>", STATUSES[i],
                 status && !strcmp(status, STATUSES[i]) ? " selected" : "", STATUSES[i]);
    tk_htmlf(pg,
             "</select></div><div><label for=\"f-app\">Provider app id</label>"
             "<input type=\"text\" id=\"f-app\" name=\"app_id\" value=\"%s\"></div>"
             "<div><button type=\"submit\">Filter</button></div></form>\n",
             app_id ? app_id : "");
}

void tk_h_console_connections(struct tk_req *r)
{
    const char *status = query_arg(r, "status");
    const char *app_id = query_arg(r, "app_id");
    const char *cursor = query_arg(r, "cursor");
    /* 50 rows fit unless labels and errors are long and full of characters
     * HTML escapes: then the page is made again with fewer rows (the /v1
     * cursor pages on from the last row shown), never past the size cap */
    static const int limits[] = {LIST_LIMIT, LIST_LIMIT / 2, LIST_LIMIT / 5};
    for (size_t li = 0;; li++) {
        char q[1024];
        snprintf(q, sizeof q, "limit=%d", limits[li]);
        if (!q_add(q, sizeof q, "status", status) || !q_add(q, sizeof q, "app_id", app_id) ||
            !q_add(q, sizeof q, "cursor", cursor)) {
            tk_console_message(r, 400, "Not accepted", "A filter value is too long.");
            return;
        }
        struct tk_capi list;
        if (!tk_console_call(r, "GET", "/v1/connections", NULL, q, NULL, &list)) return;

        struct tk_cpage pg;
        tk_cpage_begin(&pg, r, "connections", "Connections");
        filters(&pg, status, app_id);
        json_t *a = json_object_get(list.body, "connections");
        tk_html(&pg, "<table id=\"connections\"><thead><tr><th>Connection</th><th>Provider app</th>"
                     "<th>Status</th><th>Access token expires</th><th>Last refresh</th>"
                     "<th>Last error</th></tr></thead><tbody>\n");
        size_t i;
        json_t *c;
        json_array_foreach(a, i, c)
        {
            const char *id = tk_jstr(c, "id");
            const char *label = tk_jstr(c, "label");
            char href[128];
            conn_href(id, href);
            tk_htmlf(
                &pg,
                "<tr data-id=\"%s\"><td><a href=\"%s\">%s</a><div class=\"muted mono\">%s</div>"
                "</td><td>%s<div class=\"muted mono\">%s</div></td><td>",
                id, href, label[0] ? label : "(no label)", id, tk_jstr(c, "provider"),
                tk_jstr(c, "app_id"));
            tk_cpage_badge(&pg, tk_jstr(c, "status"));
            tk_html(&pg, "</td><td>");
            tk_cpage_time_str(&pg, tk_jstr(c, "expires_at"));
            tk_html(&pg, "</td><td>");
            tk_cpage_time_str(&pg, tk_jstr(c, "last_refresh_at"));
            char err_cut[LIST_ERROR_MAX + 4]; /* whole on the connection's page */
            const char *err = cut(tk_jstr(c, "last_error"), err_cut, LIST_ERROR_MAX);
            const char *code = tk_jstr(c, "last_error_code");
            tk_html(&pg, "</td><td class=\"last-error\">");
            if (err[0] || code[0])
                tk_htmlf(&pg, "%s <span class=\"muted mono\">%s</span>", err, code);
            else
                tk_html(&pg, "<span class=\"muted\">-</span>");
            tk_html(&pg, "</td></tr>\n");
        }
        if (!json_array_size(a))
            tk_html(&pg,
                    "<tr><td colspan=\"6\" class=\"muted\" id=\"no-connections\">No connection "
                    "matches.</td></tr>\n");
        tk_html(&pg, "</tbody></table>\n");
        const char *next = json_string_value(json_object_get(list.body, "next_cursor"));
        if (next && *next) {
            char nq[1024] = "";
            if (q_add(nq, sizeof nq, "status", status) && q_add(nq, sizeof nq, "app_id", app_id) &&
                q_add(nq, sizeof nq, "cursor", next))
                tk_htmlf(&pg,
                         "<p><a id=\"next-page\" rel=\"next\" href=\"/console/connections?%s\">"
                         "Next page</a></p>\n",
                         nq);
        }
        if (cursor) tk_html(&pg, "<p><a href=\"/console/connections\">First page</a></p>\n");
        tk_capi_free(&list);
        if (pg.b.len > LIST_ROOM && li + 1 < TK_NELEM(limits)) {
            tk_buf_free_wipe(&pg.b);
            continue;
        }
        tk_cpage_end(&pg, 200);
        return;
    }
}

/* ---- GET /console/connections/{id} ---- */

static void kv_text(struct tk_cpage *pg, const char *name, const char *value)
{
    tk_htmlf(pg, "<dt>%s</dt><dd>%s</dd>", name, value[0] ? value : "-");
}

static void kv_time(struct tk_cpage *pg, const char *name, json_t *c, const char *member)
{
    tk_htmlf(pg, "<dt>%s</dt><dd>", name);
    tk_cpage_time_str(pg, tk_jstr(c, member));
    tk_html(pg, "</dd>");
}

static void details(struct tk_cpage *pg, json_t *c)
{
    tk_html(pg, "<h2>Details</h2><dl class=\"kv\" id=\"details\">");
    kv_text(pg, "id", tk_jstr(c, "id"));
    kv_text(pg, "label", tk_jstr(c, "label"));
    kv_text(pg, "provider", tk_jstr(c, "provider"));
    kv_text(pg, "provider app", tk_jstr(c, "app_id"));
    tk_html(pg, "<dt>status</dt><dd>");
    tk_cpage_badge(pg, tk_jstr(c, "status"));
    tk_html(pg, "</dd>");
    kv_text(pg, "token type", tk_jstr(c, "token_type"));
    tk_html(pg, "<dt>scopes</dt><dd>");
    json_t *s;
    size_t i;
    json_array_foreach(json_object_get(c, "scopes"), i, s)
        tk_htmlf(pg, "%s<code>%s</code>", i ? " " : "", json_string_value(s));
    if (!json_array_size(json_object_get(c, "scopes"))) tk_html(pg, "-");
    tk_html(pg, "</dd>");
    kv_time(pg, "access token expires", c, "expires_at");
    kv_time(pg, "refresh token expires", c, "refresh_expires_at");
    kv_text(pg, "has a refresh token", tk_jbool(c, "has_refresh_token") ? "yes" : "no");
    kv_time(pg, "last refresh", c, "last_refresh_at");
    kv_time(pg, "next refresh", c, "next_refresh_at");
    kv_text(pg, "last error code", tk_jstr(c, "last_error_code"));
    kv_text(pg, "last error", tk_jstr(c, "last_error"));
    tk_htmlf(pg, "<dt>failures in a row</dt><dd>%lld</dd><dt>version</dt><dd>%lld</dd>",
             tk_jint(c, "failure_count"), tk_jint(c, "version"));
    kv_time(pg, "created", c, "created_at");
    kv_time(pg, "updated", c, "updated_at");
    tk_html(pg, "</dl>\n");
}

static void diagnosis(struct tk_cpage *pg, const struct tk_capi *d)
{
    tk_html(pg, "<div id=\"diagnosis\" class=\"card\"><h2>Diagnosis</h2>");
    if (d->status != 200) {
        tk_htmlf(pg, "<p class=\"error\">The diagnosis is not available: %s</p></div>\n",
                 tk_jstr(d->body, "message"));
        return;
    }
    tk_htmlf(pg,
             "<p class=\"conclusion\"><strong>%s</strong></p><p class=\"next-step\">Next step: "
             "%s</p><p class=\"muted\">cause <code>%s</code></p></div>\n",
             tk_jstr(d->body, "conclusion"), tk_jstr(d->body, "next_step"),
             tk_jstr(d->body, "cause"));
}

/* The attempts (refresh events, newest first): blocks oldest to newest, a
 * chart by minute over the last hour, the latest ones as a table. */
static void timeline(struct tk_cpage *pg, const struct tk_capi *ev)
{
    tk_html(pg, "<section id=\"timeline\"><h2>Refresh attempts</h2>");
    if (ev->status != 200) {
        tk_htmlf(pg, "<p class=\"error\">The attempts are not available: %s</p></section>\n",
                 tk_jstr(ev->body, "message"));
        return;
    }
    json_t *a = json_object_get(ev->body, "events");
    size_t n = json_array_size(a);
    if (!n) {
        tk_html(pg, "<p class=\"muted\">No refresh attempt yet.</p></section>\n");
        return;
    }
    tk_htmlf(pg, "<p class=\"muted\">The last %zu, oldest first.</p><div class=\"timeline\">", n);
    for (size_t k = n; k-- > 0;) {
        json_t *e = json_array_get(a, k);
        const char *o = tk_jstr(e, "outcome");
        char shown[40] = "", msg[TITLE_MAX + 4];
        int64_t ms = tk_jint(e, "at_ms");
        if (ms > 0) {
            char iso[40];
            tk_time_fmt(ms, iso, sizeof iso);
            snprintf(shown, sizeof shown, "%.10s %.8s UTC", iso, iso + 11);
        }
        /* the message in the title while the page has room for it (100
         * long escaped messages would not fit with the chart and table) */
        if (pg->b.len < TITLES_ROOM)
            tk_htmlf(pg, "<span class=\"%s\" title=\"%s · %s · %s: %s\"></span>", outcome_class(o),
                     shown, tk_jstr(e, "source"), o, cut(tk_jstr(e, "message"), msg, TITLE_MAX));
        else
            tk_htmlf(pg, "<span class=\"%s\" title=\"%s · %s · %s\"></span>", outcome_class(o),
                     shown, tk_jstr(e, "source"), o);
    }
    tk_html(pg, "</div>\n");

    /* attempts per minute by outcome, the last hour */
    static const char *const cls[3] = {"ok", "fail", "other"};
    int counts[3 * CHART_MINUTES] = {0};
    int64_t now = tk_now_ms();
    int64_t start = (now / 60000 - (CHART_MINUTES - 1)) * 60000;
    for (size_t k = 0; k < n; k++) {
        json_t *e = json_array_get(a, k);
        int64_t ms = tk_jint(e, "at_ms");
        if (ms < start || ms >= start + (int64_t)CHART_MINUTES * 60000) continue;
        const char *c = outcome_class(tk_jstr(e, "outcome"));
        int s = !strcmp(c, "ok") ? 0 : !strcmp(c, "fail") ? 1 : 2;
        counts[s * CHART_MINUTES + (int)((ms - start) / 60000)]++;
    }
    struct tk_chart ch = {.title = "Attempts per minute, the last hour",
                          .nbuckets = CHART_MINUTES,
                          .start_ms = start,
                          .bucket_ms = 60000,
                          .nseries = 3,
                          .label = {"ok", "failed or error", "other"},
                          .cls = {cls[0], cls[1], cls[2]},
                          .counts = counts};
    tk_html(pg, "<div class=\"chart-box\">");
    tk_console_chart(pg, &ch);
    tk_html(pg, "</div>\n");

    tk_html(pg, "<table id=\"attempts\"><thead><tr><th>Time</th><th>Source</th><th>Outcome</th>"
                "<th>Message</th></tr></thead><tbody>\n");
    for (size_t k = 0; k < n && k < ATTEMPTS_SHOWN; k++) {
        json_t *e = json_array_get(a, k);
        if (pg->b.len > TK_CONSOLE_PAGE_MAX - DETAILS_ROOM) { /* long escaped messages */
            tk_htmlf(pg,
                     "<tr><td colspan=\"4\" class=\"muted\" id=\"attempts-left-out\">%zu "
                     "older attempts did not fit on this page; <code>tokend events --kind "
                     "refresh</code> shows them.</td></tr>\n",
                     (n < ATTEMPTS_SHOWN ? n : ATTEMPTS_SHOWN) - k);
            break;
        }
        tk_html(pg, "<tr><td>");
        tk_cpage_time(pg, tk_jint(e, "at_ms"));
        tk_htmlf(pg, "</td><td>%s</td><td>", tk_jstr(e, "source"));
        tk_cpage_badge(pg, tk_jstr(e, "outcome"));
        tk_htmlf(pg, "</td><td>%s</td></tr>\n", tk_jstr(e, "message"));
    }
    tk_html(pg, "</tbody></table></section>\n");
}

void tk_h_console_connection(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    const char *params[] = {"id", id, NULL};
    struct tk_capi conn, diag, ev;
    if (!tk_console_call(r, "GET", "/v1/connections/{id}", params, NULL, NULL, &conn)) return;
    if (!tk_console_call_any(r, "GET", "/v1/connections/{id}/diagnosis", params, NULL, NULL,
                             &diag)) {
        tk_capi_free(&conn);
        return;
    }
    char q[256];
    snprintf(q, sizeof q, "kind=refresh&limit=%d", EVENTS_LIMIT);
    q_add(q, sizeof q, "subject", tk_jstr(conn.body, "id")); /* a UUID: fits */
    if (!tk_console_call_any(r, "GET", "/v1/events", NULL, q, NULL, &ev)) {
        tk_capi_free(&conn);
        tk_capi_free(&diag);
        return;
    }

    json_t *c = conn.body;
    const char *cid = tk_jstr(c, "id");
    const char *label = tk_jstr(c, "label");
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "connections", label[0] ? label : "Connection");
    tk_html(&pg, "<p class=\"summary\">Status <span id=\"status\">");
    tk_cpage_badge(&pg, tk_jstr(c, "status"));
    tk_htmlf(&pg, "</span> · %s · <a href=\"/console/connections\">all connections</a></p>\n",
             tk_jstr(c, "provider"));
    if (tk_console_can(r, TK_ROLE_WRITE)) {
        char action[160];
        tk_html(&pg, "<div class=\"actions\">");
        snprintf(action, sizeof action, "/console/connections/%s/refresh", cid);
        tk_cpage_form_id(&pg, "refresh", action, "inline");
        tk_html(&pg, "<button type=\"submit\">Refresh now</button></form> ");
        tk_cpage_form_id(&pg, "debug-refresh", action, "inline");
        tk_html(&pg, "<input type=\"hidden\" name=\"debug\" value=\"1\">"
                     "<button type=\"submit\" class=\"secondary\">Debug refresh</button></form> ");
        snprintf(action, sizeof action, "/console/connections/%s/connect", cid);
        tk_cpage_form_id(&pg, "connect", action, "inline");
        tk_html(&pg, "<button type=\"submit\" class=\"secondary\">Connect link</button></form>"
                     "</div>\n");
    }
    diagnosis(&pg, &diag);
    timeline(&pg, &ev);
    details(&pg, c);
    tk_capi_free(&ev);
    tk_capi_free(&diag);
    tk_capi_free(&conn);
    tk_cpage_end(&pg, 200);
}

/* ---- POST /console/connections/{id}/refresh ---- */

struct refresh_arg {
    char id[TK_UUID_LEN + 1];
    bool debug;
};

static void render_refresh(struct tk_req *r, int status, json_t *body, void *arg)
{
    struct refresh_arg *a = arg;
    const char *outcome = tk_jstr(body, "outcome");
    if (!outcome[0]) { /* refused before any attempt: 404, 503 sealed, ... */
        tk_console_error(r, status, body);
        return;
    }
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "connections", a->debug ? "Debug refresh" : "Refresh");
    tk_html(&pg, "<p>Outcome <span id=\"outcome\">");
    tk_cpage_badge(&pg, outcome);
    tk_html(&pg, "</span></p>\n<p id=\"refresh-message\">");
    if (!strcmp(outcome, "ok")) {
        json_t *c = json_object_get(body, "connection");
        tk_html(&pg, "Refreshed: the access token is valid until ");
        tk_cpage_time_str(&pg, tk_jstr(c, "expires_at"));
        tk_html(&pg, tk_jbool(body, "rotated") ? "; the provider rotated the refresh token." : ".");
    } else {
        const char *reason = tk_jstr(body, "reason");
        tk_htmlf(&pg, "%s", tk_jstr(body, "message"));
        if (reason[0]) tk_htmlf(&pg, " <span class=\"muted mono\">(%s)</span>", reason);
        const char *next = tk_jstr(body, "next_attempt_at");
        if (next[0]) {
            tk_html(&pg, " Next automatic attempt: ");
            tk_cpage_time_str(&pg, next);
            tk_html(&pg, ".");
        }
    }
    tk_html(&pg, "</p>\n");
    json_t *up = json_object_get(body, "upstream");
    json_t *dbg = json_object_get(body, "debug");
    if (json_is_object(up) && !json_is_object(dbg)) {
        tk_htmlf(&pg, "<p>The provider answered HTTP %lld <code>%s</code> (masked, cut):</p>",
                 tk_jint(up, "status"), tk_jstr(up, "content_type"));
        tk_htmlf(&pg, "<pre id=\"upstream\">%s</pre>\n", tk_jstr(up, "body"));
    }
    if (a->debug) {
        tk_html(&pg, "<h2>The exchange, masked</h2>");
        if (json_is_object(dbg)) {
            char *text = json_dumps(dbg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            tk_htmlf(&pg, "<pre id=\"exchange\">%s</pre>\n", text ? text : "");
            free(text);
        } else {
            tk_html(
                &pg,
                "<p class=\"muted\" id=\"no-exchange\">Nothing was sent to the provider.</p>\n");
        }
    }
    char href[128];
    conn_href(a->id, href);
    tk_htmlf(&pg, "<p><a id=\"back\" href=\"%s\">Back to the connection</a></p>\n",
             href[0] ? href : "/console/connections");
    tk_cpage_end(&pg, 200);
}

void tk_h_console_connection_refresh(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    struct tk_form *f = tk_console_form(r);
    if (!f) return;
    const char *dv = tk_form_get(f, "debug");
    struct refresh_arg *a = tk_pool_alloc(r->pool, sizeof *a);
    memset(a, 0, sizeof *a);
    if (id && strlen(id) <= TK_UUID_LEN) snprintf(a->id, sizeof a->id, "%s", id);
    a->debug = dv && (!strcmp(dv, "1") || !strcmp(dv, "true"));
    const char *params[] = {"id", id, NULL};
    tk_console_call_then(r, "POST", "/v1/connections/{id}/refresh", params,
                         a->debug ? "debug=1" : NULL, NULL, render_refresh, a);
}

/* ---- POST /console/connections/{id}/connect ---- */

static bool http_url(const char *u)
{
    return !strncasecmp(u, "https://", 8) || !strncasecmp(u, "http://", 7);
}

void tk_h_console_connection_connect(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    const char *params[] = {"id", id, NULL};
    struct tk_capi conn, start;
    if (!tk_console_call(r, "GET", "/v1/connections/{id}", params, NULL, NULL, &conn)) return;
    const char *app_params[] = {"app_id", tk_jstr(conn.body, "app_id"), NULL};
    json_t *body = json_pack("{s:s}", "label", tk_jstr(conn.body, "label"));
    bool ok =
        tk_console_call(r, "POST", "/v1/connect/{app_id}/start", app_params, NULL, body, &start);
    json_decref(body);
    if (!ok) {
        tk_capi_free(&conn);
        return;
    }
    const char *url = tk_jstr(start.body, "authorize_url");
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "connections", "Connect link");
    tk_htmlf(&pg,
             "<p class=\"notice\">Open this link in the browser of the person who consents at "
             "%s. It works once, until ",
             tk_jstr(conn.body, "provider"));
    tk_cpage_time_str(&pg, tk_jstr(start.body, "state_expires_at"));
    tk_htmlf(&pg, "; the connection it makes is named \"%s\".</p>\n", tk_jstr(conn.body, "label"));
    if (http_url(url))
        tk_htmlf(&pg,
                 "<p><a id=\"connect-link\" href=\"%s\" rel=\"noreferrer noopener\">%s</a></p>\n",
                 url, url);
    else
        tk_htmlf(&pg,
                 "<p class=\"error\">The app's authorization URL is not an http(s) URL: "
                 "<code id=\"connect-url\">%s</code></p>\n",
                 url);
    tk_htmlf(&pg,
             "<p class=\"muted\">The provider sends the browser back to <code>%s</code>: "
             "register exactly that with the provider.</p>\n",
             tk_jstr(start.body, "redirect_uri"));
    char href[128];
    conn_href(tk_jstr(conn.body, "id"), href);
    tk_htmlf(&pg, "<p><a id=\"back\" href=\"%s\">Back to the connection</a></p>\n", href);
    tk_capi_free(&start);
    tk_capi_free(&conn);
    tk_cpage_end(&pg, 200);
}
