/* page_clients.c: the console's clients and agents pages (issue 17).
 *
 * Views of /v1/clients, /v1/clients/{id}/report and /v1/agents, and forms
 * that call PATCH /v1/clients/{id} and the client tokens' rotate and
 * revoke routes as the signed-in operator (console.h). A client's page
 * reads the one report route: the client, its tokens (preview, never the
 * secret), its agents and the last hour's validation failures by reason.
 * A rotation's new token is shown once, on the page that answers the form,
 * exactly as the API answers it once. Lists page with the /v1 routes'
 * limit and cursor; a client's tokens (up to 1000 from the API) are shown
 * TOKENS_PER_PAGE at a time, usable ones first, so that every page stays
 * under TK_CONSOLE_PAGE_MAX whatever the names in it.
 */
#include "console.h"
#include "pages.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_LIMIT "50"
#define LIST_ROOM (TK_CONSOLE_PAGE_MAX - 8 * 1024) /* a list page stops short of it */
#define TOKENS_PER_PAGE 30
#define WARNINGS_SHOWN 10
#define META_SHOWN 120 /* bytes of a metadata value shown (values go up to 512) */
#define DEFAULT_GRACE "300"

/* ---- small helpers ---- */

/* Append "&name=value" (or "name=value" first) to a query, value
 * percent-encoded; nothing for a NULL or empty value. */
static void qarg(struct tk_buf *q, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!value || !*value) return;
    tk_buf_printf(q, "%s%s=", q->len ? "&" : "", name);
    for (const unsigned char *s = (const unsigned char *)value; *s; s++) {
        if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
            *s == '-' || *s == '_' || *s == '.' || *s == '~') {
            tk_buf_add(q, s, 1);
        } else {
            char enc[3] = {'%', hex[*s >> 4], hex[*s & 15]};
            tk_buf_add(q, enc, 3);
        }
    }
}

/* The console request's query argument name, or NULL when absent or empty. */
static const char *qget(struct tk_req *r, const char *name)
{
    const char *v = tk_req_query(r, name);
    return v && *v ? v : NULL;
}

/* s cut to at most max bytes at a UTF-8 boundary, from the request's pool;
 * *cut tells whether anything was dropped. */
static const char *clip(struct tk_req *r, const char *s, size_t max, bool *cut)
{
    size_t n = strlen(s);
    *cut = n > max;
    if (!*cut) return s;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return tk_pool_strndup(r->pool, s, n);
}

/* A link to the filtered list at base with status (NULL: all), the other
 * filter kept, marked current when it is the one shown. */
static void filter_link(struct tk_cpage *pg, const char *base, const char *label,
                        const char *status, const char *shown, const char *keep_name,
                        const char *keep_value)
{
    struct tk_buf q;
    tk_buf_init(&q, 1024);
    qarg(&q, "status", status);
    qarg(&q, keep_name, keep_value);
    bool cur = status ? shown && !strcmp(status, shown) : !shown;
    tk_htmlf(pg, "<a href=\"%s%s%s\"%s>%s</a> ", base, q.len ? "?" : "", q.len ? q.data : "",
             cur ? " aria-current=\"page\"" : "", label);
    tk_buf_free(&q);
}

static void next_link(struct tk_cpage *pg, const char *base, json_t *body, const char *n1,
                      const char *v1, const char *n2, const char *v2)
{
    const char *next = json_string_value(json_object_get(body, "next_cursor"));
    if (!next || !*next) return;
    struct tk_buf q;
    tk_buf_init(&q, 2048);
    qarg(&q, n1, v1);
    qarg(&q, n2, v2);
    qarg(&q, "cursor", next);
    tk_htmlf(
        pg, "<p class=\"paging\"><a id=\"next-page\" rel=\"next\" href=\"%s?%s\">Next page</a></p>",
        base, q.data);
    tk_buf_free(&q);
}

/* ---- GET /console/clients ---- */

void tk_h_console_clients(struct tk_req *r)
{
    const char *status = qget(r, "status");
    const char *cursor = qget(r, "cursor");
    struct tk_buf q;
    tk_buf_init(&q, 4096);
    tk_buf_addstr(&q, "limit=" LIST_LIMIT);
    qarg(&q, "status", status);
    qarg(&q, "cursor", cursor);
    struct tk_capi list;
    bool ok = tk_console_call(r, "GET", "/v1/clients", NULL, q.data, NULL, &list);
    tk_buf_free(&q);
    if (!ok) return;

    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "clients", "Clients");
    tk_html(&pg,
            "<p class=\"muted\">Machines that call tokend with client tokens (<code>tkc_</code>). "
            "Open a client for its tokens, its failures by reason and its status.</p>");
    tk_html(&pg, "<p class=\"filters\" id=\"client-filters\">Status: ");
    filter_link(&pg, "/console/clients", "all", NULL, status, NULL, NULL);
    filter_link(&pg, "/console/clients", "active", "active", status, NULL, NULL);
    filter_link(&pg, "/console/clients", "suspended", "suspended", status, NULL, NULL);
    filter_link(&pg, "/console/clients", "disabled", "disabled", status, NULL, NULL);
    tk_html(&pg, "</p>");

    json_t *clients = json_object_get(list.body, "clients");
    if (json_array_size(clients) == 0) {
        tk_html(&pg, "<p class=\"notice\" id=\"no-clients\">No client here");
        if (status) tk_htmlf(&pg, " with status %s", status);
        tk_html(&pg, ".</p>");
    }
    tk_html(&pg, "<table id=\"clients\"><thead><tr><th>Name</th><th>Status</th><th>Email</th>"
                 "<th>Created</th><th>Status changed</th></tr></thead><tbody>");
    size_t i;
    json_t *c;
    json_array_foreach(clients, i, c)
    {
        const char *id = tk_jstr(c, "id");
        tk_htmlf(&pg, "<tr data-id=\"%s\"><td><a href=\"/console/clients/%s\">%s</a></td><td>", id,
                 id, tk_jstr(c, "name"));
        tk_cpage_badge(&pg, tk_jstr(c, "status"));
        const char *email = tk_jstr(c, "email");
        if (*email)
            tk_htmlf(&pg, "</td><td>%s</td><td>", email);
        else
            tk_html(&pg, "</td><td><span class=\"muted\">-</span></td><td>");
        tk_cpage_time_str(&pg, tk_jstr(c, "created_at"));
        tk_html(&pg, "</td><td>");
        tk_cpage_time_str(&pg, tk_jstr(c, "status_changed_at"));
        tk_html(&pg, "</td></tr>");
    }
    tk_html(&pg, "</tbody></table>");
    next_link(&pg, "/console/clients", list.body, "status", status, NULL, NULL);
    tk_capi_free(&list);
    tk_cpage_end(&pg, 200);
}

/* ---- GET /console/clients/{id} ---- */

static bool usable(json_t *t)
{
    const char *st = tk_jstr(t, "status");
    return !strcmp(st, "active") || !strcmp(st, "rotating");
}

static void token_row(struct tk_cpage *pg, const char *cid, json_t *t, bool can_write)
{
    const char *tid = tk_jstr(t, "id");
    const char *st = tk_jstr(t, "status");
    tk_htmlf(pg,
             "<tr data-id=\"%s\" data-status=\"%s\"><td>%s</td><td><code "
             "class=\"preview\">%s</code></td><td>",
             tid, st, tk_jstr(t, "name"), tk_jstr(t, "preview"));
    tk_cpage_badge(pg, st);
    const char *grace = tk_jstr(t, "grace_ends_at");
    if (*grace) {
        tk_html(pg, "<br><span class=\"muted\">grace ends</span> ");
        tk_cpage_time_str(pg, grace);
    }
    tk_html(pg, "</td><td>");
    tk_cpage_time_str(pg, tk_jstr(t, "created_at"));
    tk_html(pg, "</td><td>");
    tk_cpage_time_str(pg, tk_jstr(t, "last_used_at"));
    tk_html(pg, "</td><td>");
    const char *exp = tk_jstr(t, "expires_at");
    if (*exp)
        tk_cpage_time_str(pg, exp);
    else
        tk_html(pg, "<span class=\"muted\">no expiry</span>");
    tk_html(pg, "</td><td>");
    if (can_write && usable(t)) {
        char action[200];
        if (!strcmp(st, "active")) {
            snprintf(action, sizeof action, "/console/clients/%s/tokens/%s/rotate", cid, tid);
            tk_cpage_form(pg, action, "rotate inline");
            tk_html(pg,
                    "<input type=\"number\" name=\"grace\" value=\"" DEFAULT_GRACE
                    "\" min=\"0\" max=\"2592000\" aria-label=\"grace seconds\" title=\"seconds the "
                    "old token keeps working\"> <button type=\"submit\" "
                    "class=\"secondary\">Rotate</button></form> ");
        }
        snprintf(action, sizeof action, "/console/clients/%s/tokens/%s/revoke", cid, tid);
        tk_cpage_form(pg, action, "revoke inline");
        tk_html(pg, "<button type=\"submit\" class=\"danger\">Revoke</button></form>");
    }
    tk_html(pg, "</td></tr>");
}

static void tokens_table(struct tk_cpage *pg, struct tk_req *r, const char *cid, json_t *tokens)
{
    bool can_write = tk_console_can(r, TK_ROLE_WRITE);
    int64_t from = 0;
    const char *f = qget(r, "tokens_from");
    if (f && tk_parse_int(f, 0, 100000, &from) != TK_OK) from = 0;
    size_t n = json_array_size(tokens), nusable = 0, i;
    json_t *t;
    json_array_foreach(tokens, i, t) if (usable(t)) nusable++;
    tk_htmlf(pg,
             "<h2>Tokens</h2><p class=\"muted\">%zu token(s), %zu usable. Only a preview of each "
             "is kept; a token's secret is shown once, when it is issued or rotated.</p>",
             n, nusable);
    tk_html(pg,
            "<table id=\"client-tokens\"><thead><tr><th>Name</th><th>Preview</th><th>Status</th>"
            "<th>Created</th><th>Last used</th><th>Expires</th><th></th></tr></thead><tbody>");
    /* usable first, then revoked and expired ones, each newest first (the
     * API's order) */
    size_t k = 0, shown = 0;
    for (int pass = 0; pass < 2; pass++)
        json_array_foreach(tokens, i, t)
        {
            if (usable(t) != (pass == 0)) continue;
            if (k++ < (size_t)from || shown >= TOKENS_PER_PAGE) continue;
            token_row(pg, cid, t, can_write);
            shown++;
        }
    tk_html(pg, "</tbody></table>");
    if (n == 0) tk_html(pg, "<p class=\"notice\">This client has no token yet.</p>");
    if ((size_t)from + shown < n)
        tk_htmlf(pg,
                 "<p class=\"paging\"><a id=\"next-tokens\" "
                 "href=\"/console/clients/%s?tokens_from=%zu\">"
                 "More tokens</a></p>",
                 cid, (size_t)from + shown);
}

static void failures_section(struct tk_cpage *pg, json_t *report)
{
    json_t *fail = json_object_get(report, "failures");
    json_t *by = json_object_get(fail, "by_reason");
    tk_html(pg, "<section id=\"failures\"><h2>Validation failures, last hour</h2>");
    tk_htmlf(pg, "<p><span class=\"stat\" id=\"failures-total\">%lld</span> failure(s) since ",
             tk_jint(fail, "total"));
    tk_cpage_time_str(pg, tk_jstr(fail, "since"));
    tk_html(pg, "</p>");
    if (json_object_size(by) > 0) {
        /* by count, largest first: a handful of reasons */
        const char *keys[32];
        long long counts[32];
        size_t n = 0;
        const char *k;
        json_t *v;
        json_object_foreach(by, k, v)
        {
            if (n == 32) break;
            size_t j = n++;
            while (j > 0 && counts[j - 1] < json_integer_value(v)) {
                keys[j] = keys[j - 1];
                counts[j] = counts[j - 1];
                j--;
            }
            keys[j] = k;
            counts[j] = json_integer_value(v);
        }
        tk_html(pg, "<table id=\"failures-by-reason\"><thead><tr><th>Reason</th><th>Count</th></tr>"
                    "</thead><tbody>");
        for (size_t j = 0; j < n; j++)
            tk_htmlf(pg, "<tr data-reason=\"%s\"><td><code>%s</code></td><td>%lld</td></tr>",
                     keys[j], keys[j], counts[j]);
        tk_html(pg, "</tbody></table>");
    } else {
        tk_html(pg, "<p class=\"muted\">No validation of this client's tokens failed in the last "
                    "hour.</p>");
    }
    json_t *warn = json_object_get(report, "warnings");
    if (json_array_size(warn) > 0) {
        tk_html(pg, "<h3>Accepted with a warning</h3><table id=\"client-warnings\"><thead><tr>"
                    "<th>Warnings</th><th>Token</th><th>At</th><th>Count</th></tr></thead><tbody>");
        size_t i;
        json_t *w;
        json_array_foreach(warn, i, w)
        {
            if (i == WARNINGS_SHOWN) break;
            tk_html(pg, "<tr><td>");
            size_t j;
            json_t *code;
            json_array_foreach(json_object_get(w, "warnings"), j, code)
                tk_htmlf(pg, "%s<code>%s</code>", j ? " " : "", json_string_value(code));
            tk_htmlf(pg, "</td><td><code>%s</code></td><td>", tk_jstr(w, "preview"));
            tk_cpage_time_str(pg, tk_jstr(w, "since"));
            tk_htmlf(pg, "</td><td>%lld</td></tr>", tk_jint(w, "count"));
        }
        tk_html(pg, "</tbody></table>");
    }
    tk_html(pg, "</section>");
}

void tk_h_console_client(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    const char *params[] = {"id", id, NULL};
    struct tk_capi rep;
    if (!tk_console_call(r, "GET", "/v1/clients/{id}/report", params, NULL, NULL, &rep)) return;
    json_t *c = json_object_get(rep.body, "client");
    const char *cid = tk_jstr(c, "id");
    const char *status = tk_jstr(c, "status");

    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "clients", tk_jstr(c, "name"));
    tk_htmlf(&pg, "<p class=\"conclusion notice\" id=\"client-conclusion\">%s</p>",
             tk_jstr(rep.body, "conclusion"));
    tk_htmlf(&pg,
             "<div class=\"card\"><dl class=\"kv\" id=\"client\" "
             "data-id=\"%s\"><dt>Id</dt><dd><code>%s</code></dd>"
             "<dt>Status</dt><dd id=\"client-status-value\">",
             cid, cid);
    tk_cpage_badge(&pg, status);
    tk_html(&pg, "</dd><dt>Email</dt><dd>");
    const char *email = tk_jstr(c, "email");
    if (*email)
        tk_htmlf(&pg, "%s", email);
    else
        tk_html(&pg, "<span class=\"muted\">-</span>");
    tk_html(&pg, "</dd><dt>Created</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(c, "created_at"));
    tk_html(&pg, "</dd><dt>Updated</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(c, "updated_at"));
    tk_html(&pg, "</dd><dt>Status changed</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(c, "status_changed_at"));
    tk_html(&pg, "</dd>");
    json_t *meta = json_object_get(c, "metadata");
    if (json_object_size(meta) > 0) {
        tk_html(&pg, "<dt>Metadata</dt><dd>");
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v)
        {
            bool cut;
            const char *val =
                clip(r, json_is_string(v) ? json_string_value(v) : "", META_SHOWN, &cut);
            tk_htmlf(&pg, "<code>%s</code>=<code>%s</code>%s<br>", k, val, cut ? "…" : "");
        }
        tk_html(&pg, "</dd>");
    }
    json_t *agents = json_object_get(rep.body, "agents");
    size_t nstale = 0, i;
    json_t *a;
    json_array_foreach(agents, i, a) if (!strcmp(tk_jstr(a, "status"), "stale")) nstale++;
    tk_htmlf(&pg, "<dt>Agents</dt><dd><a href=\"/console/agents?client_id=%s\">%zu agent(s)</a>",
             cid, json_array_size(agents));
    if (nstale)
        tk_htmlf(&pg, ", <a href=\"/console/agents?status=stale&client_id=%s\">%zu stale</a>", cid,
                 nstale);
    tk_html(&pg, "</dd></dl>");
    if (tk_console_can(r, TK_ROLE_WRITE)) {
        char action[128];
        snprintf(action, sizeof action, "/console/clients/%s", cid);
        bool active = !strcmp(status, "active");
        tk_cpage_form_id(&pg, "client-status", action, "inline");
        tk_htmlf(&pg,
                 "<input type=\"hidden\" name=\"status\" value=\"%s\">"
                 "<button type=\"submit\" class=\"%s\">%s</button>",
                 active ? "disabled" : "active", active ? "danger" : "secondary",
                 active ? "Disable this client" : "Enable this client");
        tk_htmlf(
            &pg, " <span class=\"muted\">%s</span></form>",
            active
                ? "Every token of a disabled client fails at once (client_inactive), on every node."
                : "Its tokens that are not revoked or expired work again.");
    }
    tk_html(&pg, "</div>");
    tokens_table(&pg, r, cid, json_object_get(rep.body, "tokens"));
    failures_section(&pg, rep.body);
    tk_capi_free(&rep);
    tk_cpage_end(&pg, 200);
}

/* ---- the forms ---- */

/* POST /console/clients/{id} status=active|disabled|suspended */
void tk_h_console_client_update(struct tk_req *r)
{
    struct tk_form *f = tk_console_form(r);
    if (!f) return;
    const char *id = tk_req_param(r, "id");
    const char *status = tk_form_get(f, "status");
    if (!status ||
        (strcmp(status, "active") && strcmp(status, "disabled") && strcmp(status, "suspended"))) {
        tk_console_message(r, 400, "Not accepted", "status must be active, suspended or disabled.");
        return;
    }
    const char *params[] = {"id", id, NULL};
    json_t *body = json_pack("{s:s}", "status", status);
    struct tk_capi out;
    bool ok = tk_console_call(r, "PATCH", "/v1/clients/{id}", params, NULL, body, &out);
    json_decref(body);
    if (!ok) return;
    tk_capi_free(&out);
    tk_reply_redirect(r, 303, tk_pool_printf(r->pool, "/console/clients/%s", id));
}

/* POST /console/clients/{id}/tokens/{token_id}/rotate grace=seconds: the
 * new token shown once on the page answered. */
void tk_h_console_client_token_rotate(struct tk_req *r)
{
    struct tk_form *f = tk_console_form(r);
    if (!f) return;
    const char *id = tk_req_param(r, "id");
    const char *tid = tk_req_param(r, "token_id");
    const char *g = tk_form_get(f, "grace");
    if (!g || !*g) g = DEFAULT_GRACE;
    int64_t grace;
    /* not a number: sent as given, so that the API's 400 names the field */
    json_t *body = tk_parse_int(g, INT32_MIN, INT32_MAX, &grace) == TK_OK
                       ? json_pack("{s:I}", "grace", (json_int_t)grace)
                       : json_pack("{s:s}", "grace", g);
    const char *params[] = {"id", id, "token_id", tid, NULL};
    struct tk_capi out;
    bool ok = tk_console_call(r, "POST", "/v1/clients/{id}/tokens/{token_id}/rotate", params, NULL,
                              body, &out);
    json_decref(body);
    if (!ok) return;
    json_t *t = out.body;
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "clients", "Token rotated");
    tk_html(
        &pg,
        "<p class=\"notice\" id=\"shown-once\"><strong>Copy the new token now: it is shown this "
        "once and cannot be shown again.</strong> Deploy it to the agents that use the old "
        "one.</p>");
    tk_htmlf(&pg, "<p class=\"secret\" id=\"new-token\"><code>%s</code></p>", tk_jstr(t, "token"));
    tk_htmlf(&pg,
             "<dl class=\"kv\" id=\"rotated\"><dt>New token</dt><dd><code>%s</code> (%s)</dd>"
             "<dt>Preview</dt><dd><code>%s</code></dd><dt>Replaces</dt><dd><code>%s</code></dd>"
             "<dt>Old token works until</dt><dd>",
             tk_jstr(t, "id"), tk_jstr(t, "name"), tk_jstr(t, "preview"), tk_jstr(t, "replaces"));
    tk_cpage_time_str(&pg, tk_jstr(t, "grace_ends_at"));
    tk_html(&pg, "</dd><dt>Expires</dt><dd>");
    const char *exp = tk_jstr(t, "expires_at");
    if (*exp)
        tk_cpage_time_str(&pg, exp);
    else
        tk_html(&pg, "<span class=\"muted\">no expiry</span>");
    tk_htmlf(&pg, "</dd></dl><p><a href=\"/console/clients/%s\">Back to the client</a></p>", id);
    tk_capi_free(&out);
    tk_cpage_end(&pg, 200);
}

/* POST /console/clients/{id}/tokens/{token_id}/revoke */
void tk_h_console_client_token_revoke(struct tk_req *r)
{
    if (!tk_console_form(r)) return;
    const char *id = tk_req_param(r, "id");
    const char *tid = tk_req_param(r, "token_id");
    const char *params[] = {"id", id, "token_id", tid, NULL};
    struct tk_capi out;
    if (!tk_console_call(r, "DELETE", "/v1/clients/{id}/tokens/{token_id}", params, NULL, NULL,
                         &out))
        return;
    tk_capi_free(&out);
    tk_reply_redirect(r, 303, tk_pool_printf(r->pool, "/console/clients/%s", id));
}

/* ---- GET /console/agents ---- */

struct names {
    size_t n;
    const char *id[64];
    const char *name[64];
};

/* The name of client id (one GET /v1/clients/{id} per client on the page),
 * or NULL when it cannot be read. */
static const char *client_name(struct tk_req *r, struct names *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->id[i], id)) return m->name[i];
    if (m->n == TK_NELEM(m->id)) return NULL;
    const char *params[] = {"id", id, NULL};
    struct tk_capi c;
    const char *name = NULL;
    if (tk_console_call_any(r, "GET", "/v1/clients/{id}", params, NULL, NULL, &c) &&
        c.status == 200)
        name = tk_pool_strdup(r->pool, tk_jstr(c.body, "name"));
    tk_capi_free(&c);
    m->id[m->n] = id;
    m->name[m->n++] = name;
    return name;
}

static void agent_row(struct tk_cpage *pg, struct tk_req *r, struct names *m, json_t *a)
{
    const char *id = tk_jstr(a, "id");
    const char *st = tk_jstr(a, "status");
    const char *cid = tk_jstr(a, "client_id");
    tk_htmlf(pg,
             "<tr id=\"%s\" data-id=\"%s\" data-status=\"%s\"><td><strong>%s</strong><br>"
             "<span class=\"muted\">%s</span></td><td>",
             id, id, st, tk_jstr(a, "logical_agent_id"), tk_jstr(a, "hostname"));
    const char *name = client_name(r, m, cid);
    tk_htmlf(pg, "<a href=\"/console/clients/%s\">%s</a></td><td><code>%s</code></td><td>", cid,
             name && *name ? name : cid, tk_jstr(a, "version"));
    tk_cpage_time_str(pg, tk_jstr(a, "last_heartbeat_at"));
    tk_html(pg, "</td><td>");
    tk_cpage_badge(pg, st);
    const char *since = tk_jstr(a, "stale_since");
    if (*since) {
        tk_html(pg, "<br><span class=\"muted\">since</span> ");
        tk_cpage_time_str(pg, since);
    }
    const char *rep = tk_jstr(a, "reported_status");
    tk_htmlf(pg, "</td><td>%s</td><td>", *rep ? rep : "-");
    tk_cpage_time_str(pg, tk_jstr(a, "registered_at"));
    tk_html(pg, "</td></tr>");
}

/* The agents page with limit rows; false (nothing replied) when it would not
 * fit the page and last is false: then it is made again with fewer rows. */
static bool agents_page(struct tk_req *r, const char *limit, bool last)
{
    const char *status = qget(r, "status");
    const char *client = qget(r, "client_id");
    const char *cursor = qget(r, "cursor");
    struct tk_buf q;
    tk_buf_init(&q, 4096);
    tk_buf_addstr(&q, "limit=");
    tk_buf_addstr(&q, limit);
    qarg(&q, "status", status);
    qarg(&q, "client_id", client);
    qarg(&q, "cursor", cursor);
    struct tk_capi list;
    bool ok = tk_console_call(r, "GET", "/v1/agents", NULL, q.data, NULL, &list);
    tk_buf_free(&q);
    if (!ok) return true;
    /* all agents shown: are there stale ones, maybe on later pages? */
    bool any_stale = false;
    if (!status) {
        struct tk_buf s;
        tk_buf_init(&s, 1024);
        tk_buf_addstr(&s, "limit=1&status=stale");
        qarg(&s, "client_id", client);
        struct tk_capi st;
        if (tk_console_call_any(r, "GET", "/v1/agents", NULL, s.data, NULL, &st) &&
            st.status == 200)
            any_stale = json_array_size(json_object_get(st.body, "agents")) > 0;
        tk_capi_free(&st);
        tk_buf_free(&s);
    }

    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "agents", "Agents");
    struct names m = {0};
    if (client) {
        const char *name = client_name(r, &m, client);
        tk_htmlf(&pg,
                 "<p>Agents of client <a href=\"/console/clients/%s\">%s</a> · "
                 "<a href=\"/console/agents\">all clients</a></p>",
                 client, name && *name ? name : client);
    }
    tk_html(&pg, "<p class=\"filters\" id=\"agent-filters\">Status: ");
    filter_link(&pg, "/console/agents", "all", NULL, status, "client_id", client);
    filter_link(&pg, "/console/agents", "stale", "stale", status, "client_id", client);
    filter_link(&pg, "/console/agents", "online", "online", status, "client_id", client);
    tk_html(&pg, "</p>");
    if (any_stale) {
        struct tk_buf s;
        tk_buf_init(&s, 1024);
        qarg(&s, "status", "stale");
        qarg(&s, "client_id", client);
        tk_htmlf(&pg,
                 "<p class=\"notice\" id=\"stale-notice\">Some agents sent no heartbeat in time: "
                 "<a href=\"/console/agents?%s\">show only the stale ones</a>.</p>",
                 s.data);
        tk_buf_free(&s);
    }
    json_t *agents = json_object_get(list.body, "agents");
    if (json_array_size(agents) == 0)
        tk_html(&pg,
                "<p class=\"notice\" id=\"no-agents\">No agent here. An agent appears once it "
                "registers with its client token (<code>POST /v1/agents/register</code>).</p>");
    tk_html(&pg, "<table id=\"agents\"><thead><tr><th>Agent</th><th>Client</th><th>Version</th>"
                 "<th>Last heartbeat</th><th>Status</th><th>Reported</th><th>Registered</th></tr>"
                 "</thead><tbody>");
    /* stale ones first, then the API's order (newest first) */
    size_t i;
    json_t *a;
    for (int pass = 0; pass < 2; pass++)
        json_array_foreach(agents, i, a)
        {
            bool stale = !strcmp(tk_jstr(a, "status"), "stale");
            if (stale == (pass == 0)) agent_row(&pg, r, &m, a);
        }
    tk_html(&pg, "</tbody></table>");
    next_link(&pg, "/console/agents", list.body, "status", status, "client_id", client);
    tk_capi_free(&list);
    if (!last && pg.b.len > LIST_ROOM) {
        tk_buf_free_wipe(&pg.b);
        return false;
    }
    tk_cpage_end(&pg, 200);
    return true;
}

void tk_h_console_agents(struct tk_req *r)
{
    /* 50 rows fit unless hostnames, ids and versions are long and full of
     * characters HTML escapes (an agent chooses them): then fewer rows */
    static const char *const limits[] = {LIST_LIMIT, "25", "10"};
    for (size_t i = 0; i < TK_NELEM(limits); i++)
        if (agents_page(r, limits[i], i + 1 == TK_NELEM(limits))) return;
}
