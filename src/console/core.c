/* core.c: the console's sessions, sign-in and sign-out, CSRF, the calls
 * into the API, the page frame and HTML escaping, the embedded assets.
 * See console.h. */
#include "console_internal.h"
#include "pages.h"

#include "../common/issued.h"
#include "../common/log.h"
#include "../events/events.h"
#include "../http/hostcheck.h"
#include "../http/parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static struct console_auth *auth_of(const struct tk_req *r)
{
    if (!r->principal || !r->route || !(r->route->kinds & TK_P_SESSION)) return NULL;
    return r->principal;
}

const struct tk_principal *tk_console_principal(const struct tk_req *r)
{
    struct console_auth *a = auth_of(r);
    return a ? &a->p : NULL;
}

const char *tk_console_csrf(const struct tk_req *r)
{
    struct console_auth *a = auth_of(r);
    return a ? a->csrf : "";
}

/* ---- HTML ---- */

static void esc(struct tk_buf *b, const char *s)
{
    const char *run = s;
    for (; s && *s; s++) {
        const char *ent = NULL;
        switch (*s) {
        case '&': ent = "&amp;"; break;
        case '<': ent = "&lt;"; break;
        case '>': ent = "&gt;"; break;
        case '"': ent = "&quot;"; break;
        case '\'': ent = "&#39;"; break;
        default: continue;
        }
        if (s > run) tk_buf_add(b, run, (size_t)(s - run));
        tk_buf_addstr(b, ent);
        run = s + 1;
    }
    if (s && s > run) tk_buf_add(b, run, (size_t)(s - run));
}

static void check_room(struct tk_cpage *pg, tk_rc rc)
{
    if (rc != TK_OK) pg->failed = true;
}

void tk_html(struct tk_cpage *pg, const char *markup)
{
    check_room(pg, tk_buf_addstr(&pg->b, markup));
}

void tk_htmlf(struct tk_cpage *pg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *run = fmt;
    char num[64];
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') continue;
        if (f > run) tk_buf_add(&pg->b, run, (size_t)(f - run));
        f++;
        num[0] = '\0';
        if (*f == 's') {
            const char *s = va_arg(ap, const char *);
            if (s) esc(&pg->b, s);
        } else if (*f == 'd') {
            snprintf(num, sizeof num, "%d", va_arg(ap, int));
        } else if (*f == 'u') {
            snprintf(num, sizeof num, "%u", va_arg(ap, unsigned));
        } else if (!strncmp(f, "ld", 2)) {
            snprintf(num, sizeof num, "%ld", va_arg(ap, long));
            f += 1;
        } else if (!strncmp(f, "lld", 3)) {
            snprintf(num, sizeof num, "%lld", va_arg(ap, long long));
            f += 2;
        } else if (!strncmp(f, "zu", 2)) {
            snprintf(num, sizeof num, "%zu", va_arg(ap, size_t));
            f += 1;
        } else if (!strncmp(f, ".1f", 3)) {
            snprintf(num, sizeof num, "%.1f", va_arg(ap, double));
            f += 2;
        } else if (*f == '%') {
            tk_buf_addstr(&pg->b, "%");
        } else {
            /* a conversion tk_htmlf does not take: a bug, shown as such */
            tk_error("console: tk_htmlf: unsupported conversion in \"%s\"", fmt);
            pg->failed = true;
            break;
        }
        if (num[0]) tk_buf_addstr(&pg->b, num);
        run = f + 1;
        if (!*f) break;
    }
    if (*run && !pg->failed) tk_buf_addstr(&pg->b, run);
    va_end(ap);
    if (pg->b.len >= TK_CONSOLE_PAGE_MAX) pg->failed = true;
}

static void page_headers(struct tk_req *r)
{
    tk_reply_header(r, "Content-Security-Policy",
                    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                    "base-uri 'none'");
    tk_reply_header(r, "X-Frame-Options", "DENY");
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    tk_reply_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    /* every reply has Cache-Control: no-store and nosniff (http.c) */
}

static const struct {
    const char *id, *label, *href;
    unsigned role;
} NAV[] = {
    {"node", "Node", "/console/node", TK_ROLE_ANY},
    {"events", "Events", "/console/events", TK_ROLE_ANY},
    {"connections", "Connections", "/console/connections", TK_ROLE_ANY},
    {"clients", "Clients", "/console/clients", TK_ROLE_ANY},
    {"agents", "Agents", "/console/agents", TK_ROLE_ANY},
    {"oauth", "OAuth", "/console/oauth/flows", TK_ROLE_ANY},
    {"tokens", "Operator tokens", "/console/tokens", TK_ROLE_ANY},
    {"tenants", "Tenants", "/console/tenants", TK_ROLE_NODE_ADMIN},
};

void tk_cpage_begin(struct tk_cpage *pg, struct tk_req *r, const char *nav, const char *title)
{
    memset(pg, 0, sizeof *pg);
    pg->r = r;
    tk_buf_init(&pg->b, TK_CONSOLE_PAGE_MAX + 4096);
    tk_htmlf(pg,
             "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<meta name=\"viewport\" content=\"width=device-width\"><title>%s · tokend</title>"
             "<link rel=\"stylesheet\" href=\"/console/assets/console.css\">"
             "<script src=\"/console/assets/console.js\" defer></script></head>\n<body>"
             "<header><a class=\"brand\" href=\"/console/node\">tokend</a>",
             title);
    const struct tk_principal *p = tk_console_principal(r);
    if (p) {
        tk_html(pg, "<nav>");
        for (size_t i = 0; i < TK_NELEM(NAV); i++) {
            if (!tk_console_can(r, NAV[i].role)) continue;
            bool cur = nav && !strcmp(nav, NAV[i].id);
            tk_htmlf(pg, "<a href=\"%s\"", NAV[i].href);
            if (cur) tk_html(pg, " aria-current=\"page\"");
            tk_htmlf(pg, ">%s</a>", NAV[i].label);
        }
        tk_htmlf(pg, "</nav><div class=\"who\"><span id=\"who\">%s</span> <span class=\"role\">%s</span>",
                 p->name, p->role);
        tk_cpage_form(pg, "/console/logout", "signout");
        tk_html(pg, "<button type=\"submit\">Sign out</button></form></div>");
    }
    tk_htmlf(pg, "</header>\n<main><h1>%s</h1>\n", title);
}

void tk_cpage_end(struct tk_cpage *pg, int status)
{
    struct tk_req *r = pg->r;
    tk_html(pg, "</main></body></html>\n");
    if (pg->failed || pg->b.len > TK_CONSOLE_PAGE_MAX) {
        tk_buf_free_wipe(&pg->b);
        tk_error("console: %s: the page exceeds %d bytes", r->path, TK_CONSOLE_PAGE_MAX);
        tk_console_message(r, 500, "Page too large",
                           "This page would exceed the console's size limit; narrow it with the "
                           "filters or page through it.");
        return;
    }
    page_headers(r);
    tk_reply_text(r, status, "text/html; charset=utf-8", pg->b.data, pg->b.len);
    tk_buf_free_wipe(&pg->b); /* a page may show a secret once (a new token) */
}

void tk_cpage_form(struct tk_cpage *pg, const char *action, const char *cls)
{
    tk_cpage_form_id(pg, NULL, action, cls);
}

void tk_cpage_form_id(struct tk_cpage *pg, const char *id, const char *action, const char *cls)
{
    const char *csrf = tk_console_csrf(pg->r);
    tk_html(pg, "<form");
    if (id) tk_htmlf(pg, " id=\"%s\"", id);
    tk_htmlf(pg, " method=\"post\" action=\"%s\"", action);
    if (cls) tk_htmlf(pg, " class=\"%s\"", cls);
    tk_htmlf(pg, "><input type=\"hidden\" name=\"csrf\" value=\"%s\">", csrf);
}

void tk_cpage_time(struct tk_cpage *pg, int64_t ms)
{
    if (ms <= 0) {
        tk_html(pg, "<span class=\"muted\">never</span>");
        return;
    }
    char iso[40], shown[40];
    tk_time_fmt(ms, iso, sizeof iso);
    snprintf(shown, sizeof shown, "%.10s %.8s UTC", iso, iso + 11);
    tk_htmlf(pg, "<time datetime=\"%s\">%s</time>", iso, shown);
}

void tk_cpage_time_str(struct tk_cpage *pg, const char *s)
{
    int64_t ms = 0;
    if (!s || !*s || tk_time_parse(s, &ms) != TK_OK) {
        tk_html(pg, "<span class=\"muted\">never</span>");
        return;
    }
    tk_cpage_time(pg, ms);
}

void tk_cpage_badge(struct tk_cpage *pg, const char *word)
{
    char cls[40];
    size_t j = 0;
    for (const char *s = word ? word : ""; *s && j + 1 < sizeof cls; s++)
        if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_') cls[j++] = *s;
    cls[j] = '\0';
    tk_htmlf(pg, "<span class=\"badge b-%s\">%s</span>", cls, word ? word : "");
}

void tk_console_subject_href(const char *type, const char *id, char *out, size_t n)
{
    static const struct {
        const char *type, *prefix;
    } map[] = {
        {"connection", "/console/connections/"}, {"client", "/console/clients/"},
        {"agent", "/console/agents#"},           {"oauth_client", "/console/oauth/clients/"},
        {"oauth_flow", "/console/oauth/flows/"}, {"operator_token", "/console/tokens#"},
        {"tenant", "/console/tenants#"},
    };
    out[0] = '\0';
    if (!type || !id || !*id || strlen(id) > 64) return;
    for (const char *s = id; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '-' || *s == '_'))
            return;
    for (size_t i = 0; i < TK_NELEM(map); i++)
        if (!strcmp(type, map[i].type)) {
            snprintf(out, n, "%s%s", map[i].prefix, id);
            return;
        }
}

void tk_console_message(struct tk_req *r, int status, const char *title, const char *message)
{
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, NULL, title);
    tk_htmlf(&pg, "<p class=\"message\">%s</p><p class=\"muted\">Request id %s</p>", message,
             r->request_id);
    if (tk_console_principal(r)) tk_html(&pg, "<p><a href=\"/console/node\">Back to the console</a></p>");
    tk_cpage_end(&pg, status);
}

void tk_console_error(struct tk_req *r, int status, json_t *err)
{
    const char *code = tk_jstr(err, "error");
    const char *msg = tk_jstr(err, "message");
    const char *field = tk_jstr(err, "field");
    const char *title = status == 404 ? "Not found"
                        : status == 403 ? "Not allowed"
                        : status == 401 ? "Not signed in"
                        : status == 409 ? "Conflict"
                        : status >= 500 ? "Something failed"
                                        : "Not accepted";
    /* the store busy or out of reach: say what to do, the API's words below */
    bool store = !strcmp(code, "store_busy") || !strcmp(code, "store_unreachable") ||
                 !strcmp(code, "store_stalled") || !strcmp(code, "store_unavailable") ||
                 !strcmp(code, "store_pool");
    if (store) title = "Store busy";
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, NULL, title);
    if (store)
        tk_htmlf(&pg,
                 "<p class=\"message\" data-error=\"%s\">The node's store is busy or out of "
                 "reach right now, so this was not done; try again in a moment. If it lasts, "
                 "the node page and <code>tokend doctor</code> say why.</p><p class=\"muted\">"
                 "%s</p>",
                 code, msg);
    else
        tk_htmlf(&pg, "<p class=\"message\" data-error=\"%s\">%s</p>", code,
                 msg[0] ? msg : "The request was not accepted.");
    /* what to do next, for the two refusals an operator meets most */
    if (status == 404)
        tk_html(&pg, "<p id=\"what-next\">It may have been deleted, or it belongs to another "
                     "tenant than your session's; find it from the lists.</p>");
    else if (status == 403 && !strcmp(code, "forbidden"))
        tk_html(&pg, "<p id=\"what-next\">Nothing was done. To do this, sign in with an operator "
                     "token of that role (an admin issues one on the Operator tokens page).</p>");
    if (field[0]) tk_htmlf(&pg, "<p>Field: <code>%s</code></p>", field);
    tk_htmlf(&pg, "<p class=\"muted\">Error <code>%s</code> · request id %s</p>", code,
             r->request_id);
    if (tk_console_principal(r)) tk_html(&pg, "<p><a href=\"/console/node\">Back to the console</a></p>");
    tk_cpage_end(&pg, status);
}

const char *tk_jstr(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s ? s : "";
}

long long tk_jint(json_t *o, const char *name)
{
    return (long long)json_integer_value(json_object_get(o, name));
}

bool tk_jbool(json_t *o, const char *name)
{
    return json_is_true(json_object_get(o, name));
}

/* ---- calling the API ---- */

void tk_capi_free(struct tk_capi *c)
{
    json_decref(c->body);
    c->body = NULL;
}

bool tk_console_can(const struct tk_req *r, unsigned role)
{
    const struct tk_principal *p = tk_console_principal(r);
    if (!p) return false;
    struct tk_route probe = {.method = "GET", .pattern = "", .kinds = TK_P_OPERATOR, .role = role};
    struct tk_principal op = *p;
    op.kind = TK_PRINCIPAL_OPERATOR_TOKEN;
    struct tk_err e;
    return tk_api_route_allows(&probe, &op, ((struct tk_app *)r->app)->default_tenant, &e) ==
           TK_OK;
}

static const struct tk_route *find_route(const char *method, const char *pattern)
{
    size_t n;
    const struct tk_route *t = tk_api_routes(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].method, method) && !strcmp(t[i].pattern, pattern)) return &t[i];
    return NULL;
}

/* The route's rules for the session's operator; false after replying. */
static const struct tk_route *allowed_route(struct tk_req *r, const char *method,
                                            const char *pattern, int *status, json_t **err)
{
    struct tk_app *app = r->app;
    struct tk_err e;
    const struct tk_route *rt = find_route(method, pattern);
    const struct tk_principal *p = tk_console_principal(r);
    if (!rt || !p) {
        tk_err_set(&e, TK_EINTERNAL, "internal", "the console called %s %s, which is not a route",
                   method, pattern);
        tk_error("console: %s", e.msg);
    } else if (!(rt->flags & TK_ROUTE_AUTH)) {
        return rt;
    } else if (tk_api_route_allows(rt, p, app->default_tenant, &e) == TK_OK) {
        return rt;
    }
    *status = tk_rc_status(e.rc);
    *err = json_pack("{s:s, s:s}", "error", e.code, "message", e.msg);
    return NULL;
}

struct capture {
    bool got;
    int status;
    json_t *body;
};

static void capture_hook(struct tk_req *r, int status, json_t *body, void *arg)
{
    (void)r;
    struct capture *c = arg;
    c->got = true;
    c->status = status;
    c->body = body;
}

static char *dump_body(json_t *body)
{
    return body ? json_dumps(body, JSON_COMPACT) : NULL;
}

bool tk_console_call_any(struct tk_req *r, const char *method, const char *pattern,
                         const char *const *params, const char *query, json_t *body,
                         struct tk_capi *out)
{
    out->status = 0;
    out->body = NULL;
    json_t *err = NULL;
    int status = 500;
    const struct tk_route *rt = allowed_route(r, method, pattern, &status, &err);
    if (!rt) {
        out->status = status;
        out->body = err;
        return true;
    }
    struct capture c = {0};
    char *text = dump_body(body);
    struct tk_err e;
    tk_rc rc = tk_req_call(r, rt, params, query, text, capture_hook, &c, &e);
    if (text) {
        tk_wipe(text, strlen(text));
        free(text);
    }
    if (rc == TK_EINVAL && !c.got) {
        /* the page's address carried a value the API cannot take (a query
         * value that is not UTF-8 text, a NUL): the visitor's, not a fault */
        json_decref(c.body);
        tk_console_message(r, 400, "Not accepted",
                           "A value in this page's address is not valid text; open the page "
                           "from the console's navigation instead.");
        return false;
    }
    if (rc != TK_OK || !c.got) {
        json_decref(c.body);
        if (rc != TK_OK) tk_error("console: %s %s: %s", method, pattern, e.msg);
        tk_console_message(r, 500, "Something failed",
                           "The console could not read this from the API; the node's log says "
                           "why.");
        return false;
    }
    out->status = c.status;
    out->body = c.body;
    return true;
}

bool tk_console_call(struct tk_req *r, const char *method, const char *pattern,
                     const char *const *params, const char *query, json_t *body,
                     struct tk_capi *out)
{
    if (!tk_console_call_any(r, method, pattern, params, query, body, out)) return false;
    if (out->status >= 200 && out->status < 300) return true;
    tk_console_error(r, out->status, out->body);
    tk_capi_free(out);
    return false;
}

struct then {
    tk_console_render render;
    void *arg;
    const struct tk_route *route; /* the console's */
};

static void then_hook(struct tk_req *r, int status, json_t *body, void *arg)
{
    struct then *t = arg;
    /* the called route is still r's here (and stays so once parked): the
     * page is the console route's, with its session */
    r->route = t->route;
    t->render(r, status, body, t->arg);
    json_decref(body);
}

void tk_console_call_then(struct tk_req *r, const char *method, const char *pattern,
                          const char *const *params, const char *query, json_t *body,
                          tk_console_render render, void *arg)
{
    json_t *err = NULL;
    int status = 500;
    const struct tk_route *rt = allowed_route(r, method, pattern, &status, &err);
    if (!rt) {
        render(r, status, err, arg);
        json_decref(err);
        return;
    }
    struct then *t = tk_pool_alloc(r->pool, sizeof *t);
    t->render = render;
    t->arg = arg;
    t->route = r->route;
    char *text = dump_body(body);
    struct tk_err e;
    tk_rc rc = tk_req_call(r, rt, params, query, text, then_hook, t, &e);
    if (text) {
        tk_wipe(text, strlen(text));
        free(text);
    }
    if (rc != TK_OK) tk_console_message(r, 500, "Something failed", e.msg);
}

const char *tk_console_qenc(struct tk_req *r, const char *s)
{
    struct tk_buf b;
    tk_buf_init(&b, 3 * strlen(s) + 1);
    tk_buf_urlencode(&b, s);
    char *out = tk_pool_strdup(r->pool, b.data ? b.data : "");
    tk_buf_free(&b);
    return out;
}

const char *tk_console_query(struct tk_req *r)
{
    const char *raw = tk_req_query_string(r);
    return raw ? raw : "";
}

void tk_console_stream(struct tk_req *r, const char *pattern)
{
    json_t *err = NULL;
    int status = 500;
    const struct tk_route *rt = allowed_route(r, "GET", pattern, &status, &err);
    if (!rt) {
        tk_console_error(r, status, err);
        json_decref(err);
        return;
    }
    /* the stream's errors before it starts (bad filter, too many streams)
     * are JSON: EventSource shows them as a failed connection either way */
    rt->handler(r);
}

struct tk_form *tk_console_form(struct tk_req *r)
{
    struct console_auth *a = auth_of(r);
    if (a && a->form) return a->form;
    tk_console_message(r, 400, "Not accepted", "This needs a form.");
    return NULL;
}
