/* page_tokens.c: the console's operator tokens and tenants pages (issue 17).
 *
 * Views of /v1/operator-tokens (list, issue, revoke) and /v1/tenants (list,
 * create). A new token is shown once, on the page answering the form, as
 * the API answers it once; the lists show previews only. */
#include "console.h"
#include "pages.h"

#include <stdio.h>
#include <string.h>

/* GET /v1/operator-tokens has no paging (a tenant has a handful of
 * operator tokens): the page shows its rows newest first while it is
 * below this size, then links to the rest (?after=the last id shown). */
#define ROWS_ROOM (TK_CONSOLE_PAGE_MAX - 16 * 1024)

static const char *const ROLES[] = {"viewer", "operator", "admin"};

static bool expired(json_t *t)
{
    int64_t at = 0;
    const char *s = tk_jstr(t, "expires_at");
    return s[0] && tk_time_parse(s, &at) == TK_OK && at <= tk_now_ms();
}

/* The token of an API answer zeroed before the answer is freed. */
static void wipe_member(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    if (s) tk_wipe((char *)s, strlen(s));
}

static void token_row(struct tk_cpage *pg, json_t *t, bool admin, const char *self_id)
{
    const char *id = tk_jstr(t, "id");
    bool revoked = json_is_string(json_object_get(t, "revoked_at"));
    tk_htmlf(pg, "<tr id=\"%s\" data-id=\"%s\"><td class=\"name\">%s", id, id, tk_jstr(t, "name"));
    if (!strcmp(id, self_id)) tk_html(pg, " <span class=\"muted\">(this session)</span>");
    tk_htmlf(pg, "</td><td>%s</td><td><code class=\"preview\">%s</code></td><td>",
             tk_jstr(t, "role"), tk_jstr(t, "preview"));
    tk_cpage_time_str(pg, tk_jstr(t, "created_at"));
    tk_html(pg, "</td><td>");
    tk_cpage_time_str(pg, tk_jstr(t, "last_used_at"));
    tk_html(pg, "</td><td>");
    tk_cpage_time_str(pg, tk_jstr(t, "expires_at"));
    tk_html(pg, "</td><td>");
    if (revoked) {
        tk_cpage_badge(pg, "revoked");
        tk_html(pg, " ");
        tk_cpage_time_str(pg, tk_jstr(t, "revoked_at"));
    } else if (expired(t)) {
        tk_cpage_badge(pg, "expired");
    } else {
        tk_cpage_badge(pg, "active");
    }
    tk_html(pg, "</td>");
    if (admin) {
        tk_html(pg, "<td>");
        if (!revoked) {
            char action[96];
            snprintf(action, sizeof action, "/console/tokens/%s/revoke", id);
            tk_cpage_form(pg, action, "inline revoke");
            tk_htmlf(pg,
                     "<button type=\"submit\" class=\"danger\" title=\"Revoke "
                     "%s\">Revoke</button></form>",
                     tk_jstr(t, "name"));
        }
        tk_html(pg, "</td>");
    }
    tk_html(pg, "</tr>");
}

void tk_h_console_tokens(struct tk_req *r)
{
    struct tk_capi list;
    if (!tk_console_call(r, "GET", "/v1/operator-tokens", NULL, NULL, NULL, &list)) return;
    bool admin = tk_console_can(r, TK_ROLE_ADMIN);
    const struct tk_principal *me = tk_console_principal(r);
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "tokens", "Operator tokens");
    json_t *tokens = json_object_get(list.body, "tokens");
    size_t n = json_array_size(tokens);
    tk_html(&pg, "<table id=\"tokens\"><thead><tr><th>Name</th><th>Role</th><th>Preview</th>"
                 "<th>Created</th><th>Last used</th><th>Expires</th><th>Status</th>");
    if (admin) tk_html(&pg, "<th></th>");
    tk_html(&pg, "</tr></thead><tbody>");
    const char *after = tk_req_query(r, "after"), *last = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tokens, i);
        if (after && strcmp(tk_jstr(t, "id"), after) >= 0) continue;
        if (pg.b.len >= ROWS_ROOM) break;
        token_row(&pg, t, admin, me ? me->id : "");
        last = i + 1 < n ? tk_pool_strdup(r->pool, tk_jstr(t, "id")) : NULL;
    }
    tk_html(&pg, "</tbody></table>");
    if (last)
        tk_htmlf(&pg,
                 "<p class=\"pager\"><a id=\"next-page\" rel=\"next\" "
                 "href=\"/console/tokens?after=%s\">Next page</a></p>",
                 last);
    tk_capi_free(&list);

    if (admin) {
        tk_html(&pg, "<h2>Issue a token</h2>");
        tk_cpage_form_id(&pg, "token-create", "/console/tokens", "filters");
        tk_html(&pg, "<div><label for=\"t-name\">Name</label><input type=\"text\" id=\"t-name\" "
                     "name=\"name\" required maxlength=\"64\"></div>"
                     "<div><label for=\"t-role\">Role</label><select id=\"t-role\" name=\"role\">");
        for (size_t i = 0; i < TK_NELEM(ROLES); i++)
            tk_htmlf(&pg, "<option value=\"%s\"%s>%s</option>", ROLES[i],
                     !strcmp(ROLES[i], "operator") ? " selected" : "", ROLES[i]);
        tk_html(&pg, "</select></div><div><label for=\"t-exp\">Expires</label><select id=\"t-exp\" "
                     "name=\"expires_in\"><option value=\"\">never</option>"
                     "<option value=\"86400\">in 1 day</option>"
                     "<option value=\"2592000\">in 30 days</option>"
                     "<option value=\"7776000\">in 90 days</option>"
                     "<option value=\"31536000\">in 1 year</option></select></div>"
                     "<div><button type=\"submit\">Issue</button></div></form>"
                     "<p class=\"muted\">The token is shown once, on the next page.</p>");
    }
    tk_cpage_end(&pg, 200);
}

/* An integer form field: true with *out when it is digits only (1 to 12). */
static bool form_int(const char *s, long long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 12) return false;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

void tk_h_console_tokens_create(struct tk_req *r)
{
    struct tk_form *f = tk_console_form(r);
    if (!f) return;
    const char *name = tk_form_get(f, "name"), *role = tk_form_get(f, "role");
    const char *exp = tk_form_get(f, "expires_in");
    json_t *body = json_object();
    /* what the form gives goes to the API as is: its checks name the field */
    json_object_set_new(body, "name", json_string(name ? name : ""));
    if (role && *role) json_object_set_new(body, "role", json_string(role));
    if (exp && *exp) {
        long long v;
        json_object_set_new(body, "expires_in",
                            form_int(exp, &v) ? json_integer(v) : json_string(exp));
    }
    struct tk_capi res;
    bool ok = tk_console_call(r, "POST", "/v1/operator-tokens", NULL, NULL, body, &res);
    json_decref(body);
    if (!ok) return;
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "tokens", "Operator token issued");
    tk_htmlf(&pg,
             "<p class=\"notice\">Copy the token now: it is shown this once and cannot be read "
             "again.</p><p class=\"secret\" id=\"new-token\"><code>%s</code></p>"
             "<dl class=\"kv\" id=\"token\"><dt>Name</dt><dd>%s</dd><dt>Role</dt><dd>%s</dd>"
             "<dt>Preview</dt><dd><code>%s</code></dd><dt>Id</dt><dd><code>%s</code></dd>"
             "<dt>Expires</dt><dd>",
             tk_jstr(res.body, "token"), tk_jstr(res.body, "name"), tk_jstr(res.body, "role"),
             tk_jstr(res.body, "preview"), tk_jstr(res.body, "id"));
    tk_cpage_time_str(&pg, tk_jstr(res.body, "expires_at"));
    tk_html(&pg, "</dd></dl><p><a href=\"/console/tokens\">Back to the operator tokens</a></p>");
    wipe_member(res.body, "token");
    tk_capi_free(&res);
    tk_cpage_end(&pg, 200);
}

void tk_h_console_tokens_revoke(struct tk_req *r)
{
    if (!tk_console_form(r)) return;
    const char *const params[] = {"id", tk_req_param(r, "id"), NULL};
    struct tk_capi res;
    if (!tk_console_call(r, "DELETE", "/v1/operator-tokens/{id}", params, NULL, NULL, &res)) return;
    tk_capi_free(&res);
    /* revoking the session's own token ends the session: the next page is
     * the sign-in page */
    tk_reply_redirect(r, 303, "/console/tokens");
}

/* ---- tenants (node admins) ---- */

void tk_h_console_tenants(struct tk_req *r)
{
    const char *cursor = tk_req_query(r, "cursor");
    const char *q = cursor && *cursor
                        ? tk_pool_printf(r->pool, "limit=50&cursor=%s", tk_console_qenc(r, cursor))
                        : "limit=50";
    struct tk_capi list;
    if (!tk_console_call(r, "GET", "/v1/tenants", NULL, q, NULL, &list)) return;
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "tenants", "Tenants");
    tk_html(&pg, "<table id=\"tenants\"><thead><tr><th>Name</th><th>Id</th><th>Created</th></tr>"
                 "</thead><tbody>");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(list.body, "tenants"), i, t)
    {
        tk_htmlf(
            &pg,
            "<tr id=\"%s\" data-id=\"%s\"><td class=\"name\">%s</td><td><code>%s</code></td><td>",
            tk_jstr(t, "id"), tk_jstr(t, "id"), tk_jstr(t, "name"), tk_jstr(t, "id"));
        tk_cpage_time_str(&pg, tk_jstr(t, "created_at"));
        tk_html(&pg, "</td></tr>");
    }
    tk_html(&pg, "</tbody></table>");
    const char *next = json_string_value(json_object_get(list.body, "next_cursor"));
    if (next)
        tk_htmlf(&pg,
                 "<p class=\"pager\"><a id=\"next-page\" rel=\"next\" "
                 "href=\"/console/tenants?cursor=%s\">Next page</a></p>",
                 tk_console_qenc(r, next));
    tk_capi_free(&list);

    tk_html(&pg, "<h2>Create a tenant</h2>");
    tk_cpage_form_id(&pg, "tenant-create", "/console/tenants", "filters");
    tk_html(&pg,
            "<div><label for=\"tn-name\">Name</label><input type=\"text\" id=\"tn-name\" "
            "name=\"name\" required maxlength=\"63\" pattern=\"[a-z0-9][a-z0-9-]*\"></div>"
            "<div><button type=\"submit\">Create</button></div></form>"
            "<p class=\"muted\">Lowercase letters, digits and <code>-</code>. The tenant's first "
            "admin operator token is shown once, on the next page.</p>");
    tk_cpage_end(&pg, 200);
}

void tk_h_console_tenants_create(struct tk_req *r)
{
    struct tk_form *f = tk_console_form(r);
    if (!f) return;
    const char *name = tk_form_get(f, "name");
    json_t *body = json_object();
    json_object_set_new(body, "name", json_string(name ? name : ""));
    struct tk_capi res;
    bool ok = tk_console_call(r, "POST", "/v1/tenants", NULL, NULL, body, &res);
    json_decref(body);
    if (!ok) return;
    json_t *t = json_object_get(res.body, "tenant");
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "tenants", "Tenant created");
    tk_htmlf(&pg,
             "<dl class=\"kv\" id=\"tenant\"><dt>Name</dt><dd>%s</dd><dt>Id</dt><dd><code>%s</code>"
             "</dd></dl><h2>Its first admin operator token</h2>"
             "<p class=\"notice\">Copy the token now and hand it to the tenant's admin: it is "
             "shown this once and cannot be read again.</p>"
             "<p class=\"secret\" id=\"new-token\"><code>%s</code></p>"
             "<p class=\"muted\">Token id <code>%s</code></p>"
             "<p><a href=\"/console/tenants\">Back to the tenants</a></p>",
             tk_jstr(t, "name"), tk_jstr(t, "id"), tk_jstr(res.body, "token"),
             tk_jstr(res.body, "token_id"));
    wipe_member(res.body, "token");
    tk_capi_free(&res);
    tk_cpage_end(&pg, 200);
}
