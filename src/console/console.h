/*
 * console.h: the admin console at /console/ (issue 17).
 *
 * Server-rendered HTML pages over the API's own handlers. A page does not
 * read the store: it calls the /v1 route it shows (tk_console_call), with
 * the signed-in operator as principal, and renders the JSON that route
 * answers. So a page shows exactly what the API would answer this operator
 * (same tenant scoping, same roles, same masking of secrets), and a form
 * does exactly what the API would do, events included. A viewer's session
 * cannot act: the /v1 route's role rule refuses the call (403 page).
 *
 * Sign-in: an operator token pasted once on /console/login becomes a
 * session (table console_sessions, migration 0015): a cookie
 * tokend_console=tkw_... (HttpOnly, SameSite=Strict, Path=/console/, Secure
 * on TLS) of which only a keyed hash is stored. The session acts as that
 * operator token: revoking the token ends its sessions. It ends on sign-out
 * (server-side), after console_idle_timeout seconds without a request, and
 * console_session_lifetime seconds after sign-in.
 *
 * CSRF: every form carries a field "csrf" (tk_cpage_form): a value derived
 * from the session's secret (HMAC under the node's hashing key), checked on
 * every POST by the core before the handler runs; the login and unseal
 * forms, which have no session, use a double-submit cookie. A POST whose
 * Origin names another host is refused too.
 *
 * Pages are routes of routes.c declared CONSOLE(role) (the session kind,
 * the role the page needs); forms are POST routes declared
 * CONSOLE_FORM(role). A page handler:
 *
 *     void tk_h_console_things(struct tk_req *r)
 *     {
 *         struct tk_capi list;
 *         if (!tk_console_call(r, "GET", "/v1/things", NULL, tk_console_query(r), NULL, &list))
 *             return;                        // replied: an error page
 *         struct tk_cpage pg;
 *         tk_cpage_begin(&pg, r, "things", "Things");
 *         json_t *t;
 *         size_t i;
 *         json_array_foreach(json_object_get(list.body, "items"), i, t)
 *             tk_htmlf(&pg, "<li><a href=\"/console/things/%s\">%s</a></li>",
 *                      tk_jstr(t, "id"), tk_jstr(t, "name"));
 *         tk_capi_free(&list);
 *         tk_cpage_end(&pg, 200);
 *     }
 *
 * HTML: tk_htmlf escapes every %s argument (text and attribute values
 * alike: & < > " ' are entities); tk_html appends literal markup. Never
 * build markup from a value without one of them.
 */
#ifndef TK_CONSOLE_H
#define TK_CONSOLE_H

#include "../api/api.h"

#include <jansson.h>

/* The session cookie and the pre-session CSRF cookie (login, unseal). */
#define TK_CONSOLE_COOKIE "tokend_console"
#define TK_CONSOLE_CSRF_COOKIE "tokend_console_csrf"
#define TK_KIND_CONSOLE_SESSION "tkw"
#define TK_CONSOLE_CSRF_LEN TK_CSRF_LEN /* base64url of 32 bytes (http.h) */
#define TK_CONSOLE_PAGE_MAX (100 * 1024) /* a page's HTML never exceeds this */

/* ---- the signed-in operator ---- */

/* The session's operator (kind TK_PRINCIPAL_SESSION; id, name, role and
 * tenant are the operator token's). NULL on a public console route. */
const struct tk_principal *tk_console_principal(const struct tk_req *r);
/* May the session's operator use a /v1 route of this role? For showing a
 * button or not; the call itself is checked again. */
bool tk_console_can(const struct tk_req *r, unsigned role);
/* The session's CSRF value (TK_CONSOLE_CSRF_LEN chars), "" on a public page. */
const char *tk_console_csrf(const struct tk_req *r);

/* Forms without a session (sign-in, unseal): a double-submit CSRF value,
 * the browser's TK_CONSOLE_CSRF_COOKIE or a new one set on this reply
 * (out: TK_CONSOLE_CSRF_LEN + 1), and its check on the POST (the form's
 * "csrf" equals the cookie; Origin not another host). */
void tk_console_precsrf(struct tk_req *r, char out[TK_CONSOLE_CSRF_LEN + 1]);
bool tk_console_precsrf_ok(struct tk_req *r, const struct tk_form *f);
/* The form of a public console POST parsed, or NULL after replying a 400
 * page. */
struct tk_form *tk_console_public_form(struct tk_req *r);

/* ---- calling the API ---- */

/* A /v1 route's answer: its status and JSON body (owned; NULL when the
 * route answered something that is not JSON). */
struct tk_capi {
    int status;
    json_t *body;
};
void tk_capi_free(struct tk_capi *c);

/* Call the /v1 route `method pattern` (exactly as in routes.c, e.g.
 * "/v1/connections/{id}") as the session's operator: the route's principal
 * and role rules, then its handler, with params (name, value pairs,
 * NULL-terminated, or NULL), query (urlencoded, or NULL) and body (JSON, or
 * NULL; not consumed). true with *out filled when the route answered 2xx.
 * Otherwise false, after replying the error as a page (404 "not found"
 * for another tenant's object, 403 for a role that may not, 400 naming the
 * field): the handler returns at once. */
bool tk_console_call(struct tk_req *r, const char *method, const char *pattern,
                     const char *const *params, const char *query, json_t *body,
                     struct tk_capi *out);
/* The same, keeping any status: true once the route answered (JSON), with
 * out->status and out->body whatever they are; false (replied) only when
 * the call could not be made. For pages that show an error inline (a
 * form's 400 next to the form). */
bool tk_console_call_any(struct tk_req *r, const char *method, const char *pattern,
                         const char *const *params, const char *query, json_t *body,
                         struct tk_capi *out);
/* For a /v1 route that may park (a refresh waits on the upstream): render
 * is called with the answer once it comes (at once, or when the parked
 * request resumes) and must reply; arg is the caller's. The handler returns
 * right after. */
typedef void (*tk_console_render)(struct tk_req *r, int status, json_t *body, void *arg);
void tk_console_call_then(struct tk_req *r, const char *method, const char *pattern,
                          const char *const *params, const char *query, json_t *body,
                          tk_console_render render, void *arg);
/* Answer the request with the /v1 route's stream (GET /v1/events/stream):
 * the route's rules, then its handler on this request. The query is the
 * console request's own. */
void tk_console_stream(struct tk_req *r, const char *pattern);
/* The console request's query string as received ("" for none), to pass a
 * list page's filters and paging through to its /v1 route. */
const char *tk_console_query(struct tk_req *r);
/* s percent-encoded for a link's query string (from the request's pool). */
const char *tk_console_qenc(struct tk_req *r, const char *s);
/* The form of a console POST (already CSRF-checked by the core), or NULL
 * after replying 400. */
struct tk_form *tk_console_form(struct tk_req *r);

/* ---- building a page ---- */

struct tk_cpage {
    struct tk_req *r;
    struct tk_buf b;
    bool failed; /* past TK_CONSOLE_PAGE_MAX: tk_cpage_end answers 500 */
};

/* Start a page: doctype, head (title, the embedded stylesheet and script),
 * the navigation with `nav` (one of "node", "events", "tokens", "tenants",
 * "connections", "clients", "agents", "oauth"; NULL for none) marked
 * current, the signed-in operator and the sign-out form, then <main> and an
 * <h1> of title. */
void tk_cpage_begin(struct tk_cpage *pg, struct tk_req *r, const char *nav, const char *title);
/* Close the page and reply it with status, the console's headers (CSP,
 * frame-ancestors, no-store, no-referrer). */
void tk_cpage_end(struct tk_cpage *pg, int status);
/* Literal markup. */
void tk_html(struct tk_cpage *pg, const char *markup);
/* printf into the page where each %s argument is HTML-escaped (NULL prints
 * nothing); also %d, %u, %ld, %lld, %zu, %.1f and %%. Nothing else. */
void tk_htmlf(struct tk_cpage *pg, const char *fmt, ...) TK_PRINTF(2, 3);
/* <form method="post" action="action" class="cls"> with the CSRF field;
 * close it with tk_html(pg, "</form>"). cls may be NULL. */
void tk_cpage_form(struct tk_cpage *pg, const char *action, const char *cls);
/* The same with id="id" on the form (id NULL: none). */
void tk_cpage_form_id(struct tk_cpage *pg, const char *id, const char *action, const char *cls);
/* A time in ms since the epoch as "2026-12-03 10:00:05 UTC" in a <time>
 * element (datetime attribute RFC 3339); "never" for 0. */
void tk_cpage_time(struct tk_cpage *pg, int64_t ms);
/* The same for an RFC 3339 string from a JSON body (or "never"/"-" for
 * NULL). */
void tk_cpage_time_str(struct tk_cpage *pg, const char *rfc3339);
/* A status word as a badge: <span class="badge b-WORD">WORD</span>; the
 * stylesheet colours ok/active/success green, failed/failure/revoked/
 * needs_reconnect red, others grey. */
void tk_cpage_badge(struct tk_cpage *pg, const char *word);
/* The link of a subject of an event to its console page ("" when it has
 * none): connection, client, client_token, agent, oauth_client, oauth_flow,
 * operator_token, tenant, provider_app. out: 128 bytes. */
void tk_console_subject_href(const char *subject_type, const char *subject_id, char *out,
                             size_t n);

/* A page with one message: an error or a notice (status 4xx/5xx or 200),
 * with the request id. */
void tk_console_message(struct tk_req *r, int status, const char *title, const char *message);
/* An API error body ({error, message, field, request_id}) as a page. */
void tk_console_error(struct tk_req *r, int status, json_t *err);

/* JSON helpers for rendering: a member's string ("" when absent or not a
 * string), integer (0), boolean (false). */
const char *tk_jstr(json_t *o, const char *name);
long long tk_jint(json_t *o, const char *name);
bool tk_jbool(json_t *o, const char *name);

/* ---- charts (chart.c) ---- */

/* A stacked bar chart drawn on the server as inline SVG (no script, no
 * style attribute: CSP allows it): nbuckets bars of bucket_ms starting at
 * start_ms, nseries stacked series (counts row-major: series s, bucket b at
 * counts[s * nbuckets + b]), each with a label and a class (the stylesheet
 * colours "ok", "fail", "other"). A legend and the axis labels are text. */
#define TK_CHART_MAX_SERIES 4
#define TK_CHART_MAX_BUCKETS 240
struct tk_chart {
    const char *title;
    int nbuckets;
    int64_t start_ms;
    int64_t bucket_ms;
    int nseries;
    const char *label[TK_CHART_MAX_SERIES];
    const char *cls[TK_CHART_MAX_SERIES];
    const int *counts;
};
void tk_console_chart(struct tk_cpage *pg, const struct tk_chart *c);

/* ---- the core's hooks (core.c), called by the API layer ---- */

/* The authenticate hook for routes of the session kind (auth.c calls it):
 * the cookie's session, its operator token still valid, the route's role;
 * the CSRF field on a POST. Refusals are pages (a redirect to the login
 * page for no or an ended session). */
tk_rc tk_console_authenticate(struct tk_req *r);
/* Is the console session id neither ended (signed out), past its
 * lifetime, nor idle longer than idle_ms (its last page request)? For
 * streams that outlive the request that opened them: the event stream ends
 * with its session; an open live terminal is not use (an abandoned tab
 * would otherwise stream for the session's whole lifetime). */
tk_rc tk_console_session_active(struct tk_db *db, const char *id, int64_t now_ms, int64_t idle_ms,
                                bool *active, struct tk_err *e);
/* A /console/ request the gate refused (sealed, starting): the console's
 * answer instead of the JSON one (a redirect to /console/unseal when
 * sealed). true if it replied. */
bool tk_console_gate_refused(struct tk_req *r);

#endif
