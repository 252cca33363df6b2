/* page_oauth.c: the console's OAuth pages (issue 17): the tenant's OAuth
 * clients and the authorization flows' traces, stuck and failed ones with
 * their failing stage and sentence.
 *
 * Views of GET /v1/oauth/clients[/{id}] and GET /v1/oauth/flows[/{id}/
 * diagnosis]: every list asks its /v1 route for one page (50 rows)
 * and links to the next one with the route's next_cursor. */
#include "console.h"
#include "pages.h"

#include <stdio.h>
#include <string.h>

#define PAGE_LIMIT_S "50"
/* Rows are added while the page is below this; past it the list stops and
 * links to the rest (the /v1 cursors of flows and clients are the id of
 * the last row given), so long values cannot push a page past
 * TK_CONSOLE_PAGE_MAX. */
#define ROWS_ROOM (TK_CONSOLE_PAGE_MAX - 16 * 1024)
/* a failure sentence in a list is cut here (whole on the flow's page) */
#define REASON_SHOWN 300
/* on a client's page: its stuck, failed and latest flows */
#define CLIENT_FLOWS_S "10"

/* The query string of the given pairs whose value is non-empty ("" for
 * none): pairs is name, value, ..., NULL. */
static const char *query_of(struct tk_req *r, const char *const *pairs)
{
    const char *q = "";
    for (size_t i = 0; pairs[i]; i += 2) {
        const char *v = pairs[i + 1];
        if (!v || !*v) continue;
        q = tk_pool_printf(r->pool, "%s%s%s=%s", q, *q ? "&" : "", pairs[i], tk_console_qenc(r, v));
    }
    return q;
}

/* A query argument, "" when absent. */
static const char *arg(struct tk_req *r, const char *name)
{
    const char *v = tk_req_query(r, name);
    return v ? v : "";
}

/* A JSON array of strings as "a, b, c" ("none" when empty), from the pool. */
static const char *joined(struct tk_req *r, json_t *a)
{
    const char *s = "";
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v))
            s = tk_pool_printf(r->pool, "%s%s%s", s, *s ? ", " : "", json_string_value(v));
    }
    return *s ? s : "none";
}

/* The status a reader cares about: "stuck" for an active flow that has not
 * moved for a minute, else the flow's status. */
static const char *flow_status(json_t *f)
{
    if (tk_jbool(f, "stuck")) return "stuck";
    return tk_jstr(f, "status");
}

/* s cut to at most max bytes at a character boundary, with "…" when cut,
 * from the pool. */
static const char *cut(struct tk_req *r, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) return s;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return tk_pool_printf(r->pool, "%.*s…", (int)max, s);
}

static bool room(const struct tk_cpage *pg)
{
    return pg->b.len < ROWS_ROOM;
}

/* A link to the next page of a list: after last_shown when the page ran
 * out of room before the end of the rows, else the /v1 route's cursor. */
static void next_link(struct tk_cpage *pg, const char *path, const char *filters, json_t *body,
                      const char *last_shown)
{
    const char *next =
        last_shown ? last_shown : json_string_value(json_object_get(body, "next_cursor"));
    if (!next) return;
    tk_htmlf(pg,
             "<p class=\"pager\"><a id=\"next-page\" rel=\"next\" href=\"%s?%s%scursor=%s\">Next "
             "page</a></p>",
             path, filters, *filters ? "&" : "", tk_console_qenc(pg->r, next));
}

/* ---- flows ---- */

static void flows_table_head(struct tk_cpage *pg)
{
    tk_html(pg, "<table id=\"flows\"><thead><tr><th>Started</th><th>Client</th><th>Status</th>"
                "<th>Stage</th><th>Failure</th></tr></thead><tbody>");
}

static void flow_row(struct tk_cpage *pg, json_t *f)
{
    const char *id = tk_jstr(f, "id");
    const char *status = flow_status(f);
    bool failed = !strcmp(status, "failed");
    const char *stage =
        failed && tk_jstr(f, "failed_stage")[0] ? tk_jstr(f, "failed_stage") : tk_jstr(f, "stage");
    tk_htmlf(pg, "<tr data-id=\"%s\" data-status=\"%s\"><td><a href=\"/console/oauth/flows/%s\">",
             id, status, id);
    tk_cpage_time_str(pg, tk_jstr(f, "created_at"));
    tk_html(pg, "</a></td><td>");
    if (tk_jstr(f, "oauth_client_id")[0])
        tk_htmlf(pg, "<a href=\"/console/oauth/clients/%s\"><code>%s</code></a>",
                 tk_jstr(f, "oauth_client_id"), tk_jstr(f, "client_id"));
    else
        tk_htmlf(pg, "<code>%s</code>", tk_jstr(f, "client_id"));
    tk_html(pg, "</td><td>");
    tk_cpage_badge(pg, status);
    tk_htmlf(pg, "</td><td class=\"stage\">%s</td><td class=\"reason\">", stage);
    if (failed)
        tk_htmlf(pg, "<code>%s</code> %s", tk_jstr(f, "error"),
                 cut(pg->r, tk_jstr(f, "reason"), REASON_SHOWN));
    else if (!strcmp(status, "stuck"))
        tk_html(pg, "<span class=\"muted\">no stage for over a minute</span>");
    tk_html(pg, "</td></tr>");
}

/* The rows of flows while the page has room; the id of the last one shown
 * when some were left out, else NULL. */
static const char *flows_rows(struct tk_cpage *pg, json_t *flows)
{
    size_t i;
    json_t *f;
    json_array_foreach(flows, i, f)
    {
        if (i > 0 && !room(pg)) return tk_jstr(json_array_get(flows, i - 1), "id");
        flow_row(pg, f);
    }
    return NULL;
}

void tk_h_console_oauth_flows(struct tk_req *r)
{
    const char *status = arg(r, "status"), *client_id = arg(r, "client_id");
    const char *const api_q[] = {"status",         status,  "client_id",  client_id, "cursor",
                                 arg(r, "cursor"), "limit", PAGE_LIMIT_S, NULL};
    struct tk_capi list;
    if (!tk_console_call(r, "GET", "/v1/oauth/flows", NULL, query_of(r, api_q), NULL, &list))
        return;
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "oauth", "OAuth flows");
    tk_html(&pg, "<p><a href=\"/console/oauth/clients\">OAuth clients</a></p>");

    /* quick filters: by status, keeping the client */
    static const char *const quick[][2] = {{"", "All"},
                                           {"stuck", "Stuck"},
                                           {"failed", "Failed"},
                                           {"active", "Active"},
                                           {"completed", "Completed"}};
    tk_html(&pg, "<p class=\"filters quick\" id=\"flow-status\">");
    for (size_t i = 0; i < TK_NELEM(quick); i++) {
        const char *const q[] = {"status", quick[i][0], "client_id", client_id, NULL};
        const char *qs = query_of(r, q);
        tk_htmlf(&pg, "<a href=\"/console/oauth/flows%s%s\"%s>%s</a>", *qs ? "?" : "", qs,
                 !strcmp(status, quick[i][0]) ? " aria-current=\"page\"" : "", quick[i][1]);
    }
    tk_html(&pg, "</p>");
    /* the client filter: a GET form (it changes nothing: no CSRF field) */
    tk_html(&pg, "<form id=\"flow-filters\" class=\"filters\" method=\"get\" "
                 "action=\"/console/oauth/flows\">");
    if (*status) tk_htmlf(&pg, "<input type=\"hidden\" name=\"status\" value=\"%s\">", status);
    tk_htmlf(&pg,
             "<div><label for=\"f-client\">client_id</label><input type=\"text\" id=\"f-client\" "
             "name=\"client_id\" value=\"%s\"></div><div><button type=\"submit\" "
             "class=\"secondary\">Filter</button></div></form>",
             client_id);

    json_t *flows = json_object_get(list.body, "flows");
    const char *last = NULL;
    if (json_array_size(flows) == 0) {
        tk_html(&pg, "<p class=\"muted\" id=\"no-flows\">No flow matches.</p>");
    } else {
        flows_table_head(&pg);
        last = flows_rows(&pg, flows);
        tk_html(&pg, "</tbody></table>");
    }
    const char *const keep[] = {"status", status, "client_id", client_id, NULL};
    next_link(&pg, "/console/oauth/flows", query_of(r, keep), list.body, last);
    tk_capi_free(&list);
    tk_cpage_end(&pg, 200);
}

/* The badge of one stage of a flow on its page. */
static const char *stage_badge(json_t *flow, const char *stage, bool reached)
{
    const char *status = tk_jstr(flow, "status");
    if (!strcmp(status, "failed") && !strcmp(tk_jstr(flow, "failed_stage"), stage)) return "failed";
    if (tk_jbool(flow, "stuck") && !strcmp(tk_jstr(flow, "stage"), stage)) return "stuck";
    return reached ? "ok" : "not_reached";
}

void tk_h_console_oauth_flow(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    const char *const params[] = {"id", id, NULL};
    struct tk_capi d;
    if (!tk_console_call(r, "GET", "/v1/oauth/flows/{id}/diagnosis", params, NULL, NULL, &d))
        return;
    json_t *f = json_object_get(d.body, "flow");
    const char *status = flow_status(f);
    const char *ocid = tk_jstr(f, "oauth_client_id");
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "oauth", "OAuth flow");
    tk_html(&pg, "<p><a href=\"/console/oauth/flows\">All flows</a></p>");

    tk_html(&pg, "<div class=\"card\"><dl class=\"kv\" id=\"flow\"><dt>Status</dt><dd>");
    tk_cpage_badge(&pg, status);
    tk_htmlf(&pg, "</dd><dt>Flow</dt><dd><code>%s</code></dd><dt>Client</dt><dd>",
             tk_jstr(f, "id"));
    if (ocid[0])
        tk_htmlf(&pg,
                 "<a id=\"client-link\" href=\"/console/oauth/clients/%s\"><code>%s</code></a>",
                 ocid, tk_jstr(f, "client_id"));
    else
        tk_htmlf(&pg, "<code>%s</code>", tk_jstr(f, "client_id"));
    tk_htmlf(&pg,
             "</dd><dt>Stage</dt><dd>%s</dd><dt>Redirect URI</dt><dd><code>%s</code></dd>"
             "<dt>Scopes</dt><dd>%s</dd>",
             tk_jstr(f, "stage"), tk_jstr(f, "redirect_uri"),
             joined(r, json_object_get(f, "scopes")));
    if (tk_jstr(f, "resource")[0])
        tk_htmlf(&pg, "<dt>Resource</dt><dd><code>%s</code></dd>", tk_jstr(f, "resource"));
    tk_htmlf(&pg, "<dt>PKCE</dt><dd>%s</dd><dt>State given</dt><dd>%s</dd>",
             tk_jstr(f, "code_challenge_method")[0] ? tk_jstr(f, "code_challenge_method") : "none",
             tk_jbool(f, "state_given") ? "yes" : "no");
    if (tk_jstr(f, "user_id")[0])
        tk_htmlf(&pg, "<dt>User</dt><dd><code>%s</code></dd>", tk_jstr(f, "user_id"));
    tk_html(&pg, "<dt>Started</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(f, "created_at"));
    tk_html(&pg, "</dd><dt>Last change</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(f, "updated_at"));
    tk_html(&pg, "</dd><dt>Expires</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(f, "expires_at"));
    if (tk_jbool(f, "expired")) tk_html(&pg, " (expired)");
    tk_html(&pg, "</dd></dl></div>");

    if (!strcmp(status, "failed")) {
        tk_htmlf(&pg,
                 "<div class=\"card\" id=\"failure\"><h2>Failure</h2><p>At <strong "
                 "class=\"stage\">%s</strong> with <code class=\"error-code\">%s</code>:</p>"
                 "<p class=\"reason\">%s</p></div>",
                 tk_jstr(f, "failed_stage")[0] ? tk_jstr(f, "failed_stage") : tk_jstr(f, "stage"),
                 tk_jstr(f, "error"), tk_jstr(f, "reason"));
    }

    tk_html(&pg, "<h2>Stages</h2><ol id=\"stages\" class=\"stages\">");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(f, "stages"), i, s)
    {
        const char *name = tk_jstr(s, "stage"), *at = tk_jstr(s, "at");
        tk_htmlf(&pg, "<li data-stage=\"%s\"><span class=\"stage\">%s</span> ", name, name);
        tk_cpage_badge(&pg, stage_badge(f, name, at[0] != '\0'));
        tk_html(&pg, " ");
        if (at[0])
            tk_cpage_time_str(&pg, at);
        else
            tk_html(&pg, "<span class=\"muted\">not reached</span>");
        tk_html(&pg, "</li>");
    }
    tk_html(&pg, "</ol>");

    tk_htmlf(
        &pg,
        "<div class=\"card\" id=\"diagnosis\"><h2>Diagnosis</h2><p class=\"conclusion\">%s</p>",
        tk_jstr(d.body, "conclusion"));
    if (tk_jstr(d.body, "next_step")[0])
        tk_htmlf(&pg, "<p class=\"next-step\"><strong>What to change:</strong> %s</p>",
                 tk_jstr(d.body, "next_step"));
    tk_htmlf(
        &pg,
        "<p class=\"muted\">The same from a terminal: <code>tokend doctor flow %s</code></p></div>",
        tk_jstr(f, "id"));
    tk_capi_free(&d);
    tk_cpage_end(&pg, 200);
}

/* ---- clients ---- */

void tk_h_console_oauth_clients(struct tk_req *r)
{
    const char *const api_q[] = {"cursor", arg(r, "cursor"), "limit", PAGE_LIMIT_S, NULL};
    struct tk_capi list;
    if (!tk_console_call(r, "GET", "/v1/oauth/clients", NULL, query_of(r, api_q), NULL, &list))
        return;
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "oauth", "OAuth clients");
    tk_html(&pg, "<p><a href=\"/console/oauth/flows\">Flows</a> · "
                 "<a href=\"/console/oauth/flows?status=stuck\">stuck</a> · "
                 "<a href=\"/console/oauth/flows?status=failed\">failed</a></p>");
    json_t *clients = json_object_get(list.body, "clients");
    const char *last = NULL;
    if (json_array_size(clients) == 0) {
        tk_html(&pg,
                "<p class=\"muted\" id=\"no-clients\">No OAuth client in this tenant. Create one "
                "with <code>tokend oauth clients create</code> or let a client register.</p>");
    } else {
        tk_html(&pg, "<table id=\"oauth-clients\"><thead><tr><th>Name</th><th>client_id</th>"
                     "<th>Type</th><th>Grant types</th><th>Origin</th><th>Status</th></tr></thead>"
                     "<tbody>");
        size_t i;
        json_t *c;
        json_array_foreach(clients, i, c)
        {
            if (i > 0 && !room(&pg)) {
                last = tk_jstr(json_array_get(clients, i - 1), "id");
                break;
            }
            const char *id = tk_jstr(c, "id");
            tk_htmlf(&pg,
                     "<tr data-id=\"%s\"><td><a href=\"/console/oauth/clients/%s\">%s</a></td>"
                     "<td><code>%s</code></td><td>%s, %s</td><td>%s</td><td>%s</td><td>",
                     id, id, tk_jstr(c, "name")[0] ? tk_jstr(c, "name") : "(no name)",
                     tk_jstr(c, "client_id"), tk_jstr(c, "client_type"),
                     tk_jstr(c, "application_type"), joined(r, json_object_get(c, "grant_types")),
                     tk_jstr(c, "origin"));
            tk_cpage_badge(&pg, tk_jstr(c, "status"));
            tk_html(&pg, "</td></tr>");
        }
        tk_html(&pg, "</tbody></table>");
    }
    next_link(&pg, "/console/oauth/clients", "", list.body, last);
    tk_capi_free(&list);
    tk_cpage_end(&pg, 200);
}

/* Append to rows the flows of list not yet in it (by id). */
static void add_flows(json_t *rows, json_t *list)
{
    size_t i, j;
    json_t *f, *g;
    json_array_foreach(json_object_get(list, "flows"), i, f)
    {
        bool seen = false;
        json_array_foreach(rows, j, g) seen |= !strcmp(tk_jstr(f, "id"), tk_jstr(g, "id"));
        if (!seen) json_array_append(rows, f);
    }
}

void tk_h_console_oauth_client(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    const char *const params[] = {"id", id, NULL};
    struct tk_capi c;
    if (!tk_console_call(r, "GET", "/v1/oauth/clients/{id}", params, NULL, NULL, &c)) return;
    const char *client_id = tk_pool_strdup(r->pool, tk_jstr(c.body, "client_id"));
    /* its stuck flows, then failed ones, then the latest of any status */
    json_t *rows = json_array();
    static const char *const order[] = {"stuck", "failed", ""};
    for (size_t i = 0; i < TK_NELEM(order); i++) {
        const char *const q[] = {"client_id", client_id,      "status", order[i],
                                 "limit",     CLIENT_FLOWS_S, NULL};
        struct tk_capi fl;
        if (!tk_console_call(r, "GET", "/v1/oauth/flows", NULL, query_of(r, q), NULL, &fl)) {
            json_decref(rows);
            tk_capi_free(&c);
            return;
        }
        add_flows(rows, fl.body);
        tk_capi_free(&fl);
    }

    struct tk_cpage pg;
    const char *name = tk_jstr(c.body, "name");
    tk_cpage_begin(&pg, r, "oauth", name[0] ? name : "OAuth client");
    tk_html(&pg, "<p><a href=\"/console/oauth/clients\">All OAuth clients</a></p>");
    tk_html(&pg, "<div class=\"card\"><dl class=\"kv\" id=\"client\"><dt>Status</dt><dd>");
    tk_cpage_badge(&pg, tk_jstr(c.body, "status"));
    tk_htmlf(&pg,
             "</dd><dt>Name</dt><dd>%s</dd><dt>client_id</dt><dd><code>%s</code></dd>"
             "<dt>Id</dt><dd><code>%s</code></dd><dt>Type</dt><dd>%s</dd>"
             "<dt>Application type</dt><dd>%s</dd><dt>Client authentication</dt><dd>%s</dd>"
             "<dt>Origin</dt><dd>%s</dd><dt>Redirect URIs</dt><dd>",
             name, client_id, tk_jstr(c.body, "id"), tk_jstr(c.body, "client_type"),
             tk_jstr(c.body, "application_type"), tk_jstr(c.body, "token_endpoint_auth_method"),
             tk_jstr(c.body, "origin"));
    size_t i;
    json_t *u;
    json_t *uris = json_object_get(c.body, "redirect_uris");
    if (json_array_size(uris) == 0) tk_html(&pg, "<span class=\"muted\">none</span>");
    json_array_foreach(uris, i, u) tk_htmlf(&pg, "<code>%s</code><br>", json_string_value(u));
    tk_htmlf(&pg,
             "</dd><dt>Grant types</dt><dd>%s</dd><dt>Scopes</dt><dd>%s</dd>"
             "<dt>Default scopes</dt><dd>%s</dd><dt>Rotates refresh tokens</dt><dd>%s</dd>",
             joined(r, json_object_get(c.body, "grant_types")),
             joined(r, json_object_get(c.body, "scopes")),
             joined(r, json_object_get(c.body, "default_scopes")),
             tk_jbool(c.body, "rotate_refresh") ? "yes" : "no");
    /* the client secret itself is never shown (nor answered by the API):
     * only whether there is one */
    tk_htmlf(&pg, "<dt>Client secret</dt><dd>%s</dd><dt>Created</dt><dd>",
             json_is_string(json_object_get(c.body, "secret_preview")) ? "set" : "none");
    tk_cpage_time_str(&pg, tk_jstr(c.body, "created_at"));
    tk_html(&pg, "</dd><dt>Updated</dt><dd>");
    tk_cpage_time_str(&pg, tk_jstr(c.body, "updated_at"));
    tk_html(&pg, "</dd></dl></div>");

    const char *const all[] = {"client_id", client_id, NULL};
    tk_htmlf(
        &pg,
        "<h2>Recent flows</h2><p class=\"muted\">Stuck and failed first. "
        "<a id=\"client-flows\" href=\"/console/oauth/flows?%s\">All flows of this client</a> · "
        "<code>tokend doctor oauth-client %s</code></p>",
        query_of(r, all), client_id);
    if (json_array_size(rows) == 0) {
        tk_html(&pg, "<p class=\"muted\" id=\"no-flows\">No flow yet: this client_id never reached "
                     "the authorization endpoint.</p>");
    } else {
        flows_table_head(&pg);
        flows_rows(&pg, rows);
        tk_html(&pg, "</tbody></table>");
    }
    json_decref(rows);
    tk_capi_free(&c);
    tk_cpage_end(&pg, 200);
}
