/* session.c: the console's sign-in, sessions, CSRF and sign-out, the gate's
 * answer on /console/, the embedded assets. See console.h. */
#include "console_internal.h"
#include "pages.h"

#include "../common/issued.h"
#include "../common/log.h"
#include "../events/events.h"
#include "../http/parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* last_seen_at is written at most this often per session */
#define SEEN_EVERY_MS 30000
/* an ended or expired session's row is deleted this long after */
#define PURGE_AFTER_MS (24 * 3600 * 1000LL)

static bool secure(struct tk_req *r)
{
    struct tk_app *app = r->app;
    return app->tls != NULL || !strncmp(app->public_url, "https://", 8);
}

static void set_session_cookie(struct tk_req *r, const char *value, long max_age)
{
    struct tk_cookie_opts o = {.path = "/console/",
                               .max_age = max_age,
                               .http_only = true,
                               .secure = secure(r),
                               .same_site = TK_SAMESITE_STRICT};
    tk_reply_cookie(r, TK_CONSOLE_COOKIE, value, &o);
}

/* The session's CSRF value: a keyed hash of its secret, so it is bound to
 * the session, stored nowhere and unknown to anyone without the cookie. */
static tk_rc derive_csrf(struct tk_app *app, const char *token, char out[TK_CONSOLE_CSRF_LEN + 1],
                         struct tk_err *e)
{
    char in[TK_ISSUED_MAX + 16], hash[TK_HASH_HEX];
    int n = snprintf(in, sizeof in, "console-csrf:%s", token);
    tk_rc rc = tk_keyring_hash(app->keyring, in, (size_t)n, hash, NULL, e);
    tk_wipe(in, sizeof in);
    if (rc != TK_OK) return rc;
    memcpy(out, hash, TK_CONSOLE_CSRF_LEN);
    out[TK_CONSOLE_CSRF_LEN] = '\0';
    return TK_OK;
}

/* The pre-session CSRF value (login and unseal forms). */
void tk_console_precsrf(struct tk_req *r, char out[TK_CONSOLE_CSRF_LEN + 1])
{
    struct tk_cookie_opts o = {.path = "/console/",
                               .max_age = -1,
                               .http_only = true,
                               .secure = secure(r),
                               .same_site = TK_SAMESITE_STRICT};
    tk_req_csrf(r, TK_CONSOLE_CSRF_COOKIE, &o, out);
}

/* A form whose parse failed replied JSON: show it as a page instead. */
static void form_error_hook(struct tk_req *r, int status, json_t *body, void *arg)
{
    (void)arg;
    tk_console_error(r, status, body);
    json_decref(body);
}

static struct tk_form *parse_form(struct tk_req *r)
{
    tk_req_capture(r, form_error_hook, NULL);
    struct tk_form *f = tk_req_form(r);
    tk_req_capture(r, NULL, NULL);
    return f;
}

struct tk_form *tk_console_public_form(struct tk_req *r)
{
    return parse_form(r);
}

bool tk_console_precsrf_ok(struct tk_req *r, const struct tk_form *f)
{
    return tk_req_csrf_ok(r, TK_CONSOLE_CSRF_COOKIE, tk_form_get(f, "csrf"));
}

/* Where to go after signing in: a console path of ours, else the node page. */
static const char *next_of(const char *next)
{
    if (!next || strncmp(next, "/console/", 9) != 0 || strstr(next, "//") || strchr(next, '\\') ||
        strlen(next) > 512)
        return "/console/node";
    for (const char *s = next; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s >= 0x7f) return "/console/node";
    return next;
}

/* Is cookie name sent more than once (tk_req_cookie then answers NULL)? */
static bool duplicated(struct tk_req *r, const char *name)
{
    const char *h = tk_req_header(r, "Cookie");
    char *v = h ? tk_pool_alloc(r->pool, 4097) : NULL;
    return h && tk_cookie_find(h, name, v, 4097) == TK_COOKIE_DUPLICATE;
}

static void to_login(struct tk_req *r, const char *why)
{
    char *loc;
    if (!strcmp(r->method, "GET") && strcmp(r->path, "/console/events/stream") != 0 &&
        strlen(r->path) <= 512) {
        /* the path percent-encoded but for its slashes: what a Location
         * holds is then plain (no CR/LF, backslash, '&' or '#' of the
         * visitor's), and next_of checks it again when it is used */
        static const char hex[] = "0123456789ABCDEF";
        struct tk_buf b;
        tk_buf_init(&b, 3 * strlen(r->path) + 64);
        tk_buf_printf(&b, "/console/login?why=%s&next=", why);
        for (const unsigned char *s = (const unsigned char *)r->path; *s; s++) {
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                *s == '-' || *s == '_' || *s == '.' || *s == '~' || *s == '/') {
                tk_buf_add(&b, (const char *)s, 1);
            } else {
                char e[3] = {'%', hex[*s >> 4], hex[*s & 15]};
                tk_buf_add(&b, e, 3);
            }
        }
        loc = tk_pool_strdup(r->pool, b.data ? b.data : "/console/login");
        tk_buf_free(&b);
    } else {
        loc = tk_pool_printf(r->pool, "/console/login?why=%s", why);
    }
    tk_reply_redirect(r, 303, loc);
}

static void event(struct tk_req *r, const char *tenant, const char *action, const char *outcome,
                  const char *token_id, const char *message, json_t *detail)
{
    struct tk_event ev = {
        .tenant_id = tenant,
        .trace_id = r->request_id,
        .kind = "operator",
        .source = "console",
        .action = action,
        .outcome = outcome,
        .subject_type = "operator_token",
        .subject_id = token_id && token_id[0] ? token_id : NULL,
        .message = message,
        .detail = detail,
        .latency_us = -1,
    };
    struct tk_err e;
    if (tk_event_post(&ev, &e) != TK_OK)
        tk_warn("console: the %s event was not recorded: %s", action, e.msg);
}

tk_rc tk_console_authenticate(struct tk_req *r)
{
    struct tk_app *app = r->app;
    const char *cookie = tk_req_cookie(r, TK_CONSOLE_COOKIE);
    struct tk_err e;
    if (!cookie && duplicated(r, TK_CONSOLE_COOKIE)) {
        /* another page of this host set one with a narrower path or a
         * parent domain: signing in again would not help */
        to_login(r, "cookies");
        return TK_EAUTH;
    }
    if (!cookie || tk_issued_check(TK_KIND_CONSOLE_SESSION, cookie, strlen(cookie), &e) != TK_OK) {
        to_login(r, "signin");
        return TK_EAUTH;
    }
    /* an address past its failure budget gets no store read (a well-formed
     * cookie of random bytes would cost one each) */
    char addr[TK_ADDR_MAX];
    tk_req_remote(r, addr, sizeof addr);
    int retry_s = 0;
    if (tk_ratelimit_blocked(app->auth_limit, addr, tk_now_ms(), &retry_s)) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_s);
        tk_reply_header(r, "Retry-After", ra);
        tk_console_message(r, 429, "Too many attempts",
                           "Too many failed sign-ins or unknown sessions from this address; "
                           "wait a minute and sign in again.");
        return TK_ERATE;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return TK_EUNAVAIL; /* replied */
    char hash[TK_HASH_HEX];
    struct console_auth *a = tk_pool_alloc(r->pool, sizeof *a);
    memset(a, 0, sizeof *a);
    tk_rc rc = tk_keyring_hash(app->keyring, cookie, strlen(cookie), hash, NULL, &e);
    struct tk_rows *rows = NULL;
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "SELECT s.id, s.tenant_id, s.operator_token_id, s.last_seen_at, "
                        "s.expires_at, s.ended_at, o.name, o.role, o.revoked_at, o.expires_at "
                        "FROM console_sessions s JOIN operator_tokens o ON o.id = "
                        "s.operator_token_id WHERE s.token_hash = ?",
                        TK_ARGS(TK_TEXT(hash)), &rows, &e);
    if (rc != TK_OK) {
        tk_console_message(r, tk_rc_status(rc), "Not available",
                           "The console cannot check your session now; try again shortly.");
        return rc;
    }
    int64_t now = tk_now_ms();
    const char *why = NULL;
    if (tk_rows_count(rows) != 1)
        why = "unknown";
    else if (!tk_rows_null(rows, 0, 5))
        why = "signed_out";
    else if (tk_rows_int(rows, 0, 4) <= now)
        why = "expired";
    else if (now - tk_rows_int(rows, 0, 3) > (int64_t)app->cfg->console_idle_timeout * 1000)
        why = "idle";
    else if (!tk_rows_null(rows, 0, 8))
        why = "revoked";
    else if (!tk_rows_null(rows, 0, 9) && tk_rows_int(rows, 0, 9) <= now)
        why = "token_expired";
    if (!why) {
        snprintf(a->session_id, sizeof a->session_id, "%s", tk_rows_text(rows, 0, 0));
        snprintf(a->p.session_id, sizeof a->p.session_id, "%s", a->session_id);
        snprintf(a->p.tenant_id, sizeof a->p.tenant_id, "%s", tk_rows_text(rows, 0, 1));
        snprintf(a->p.id, sizeof a->p.id, "%s", tk_rows_text(rows, 0, 2));
        snprintf(a->p.name, sizeof a->p.name, "%s", tk_rows_text(rows, 0, 6));
        snprintf(a->p.role, sizeof a->p.role, "%s", tk_rows_text(rows, 0, 7));
        a->p.kind = TK_PRINCIPAL_SESSION;
    }
    bool seen = !why && now - tk_rows_int(rows, 0, 3) > SEEN_EVERY_MS;
    bool end_idle = why && !strcmp(why, "idle");
    tk_rows_free(rows);
    if (why && !strcmp(why, "unknown")) { /* counted like an unknown token */
        struct tk_ratelimit_verdict v;
        tk_ratelimit_fail(app->auth_limit, addr, 2 /* unknown */, now, &v);
    }
    if (why) {
        if (end_idle) /* best effort: the row says why it ended */
            tk_db_exec(db, "UPDATE console_sessions SET ended_at = ? WHERE token_hash = ? AND "
                           "ended_at IS NULL",
                       TK_ARGS(TK_INT(now), TK_TEXT(hash)), NULL, &e);
        set_session_cookie(r, "", 0);
        to_login(r, why);
        return TK_EAUTH;
    }
    if (seen &&
        tk_db_exec(db, "UPDATE console_sessions SET last_seen_at = ? WHERE id = ?",
                   TK_ARGS(TK_INT(now), TK_TEXT(a->session_id)), NULL, &e) != TK_OK)
        tk_warn("console: last_seen_at of session %s not written: %s", a->session_id, e.msg);
    if (derive_csrf(app, cookie, a->csrf, &e) != TK_OK) {
        tk_console_message(r, 503, "Not available", e.msg);
        return TK_EUNAVAIL;
    }
    r->principal = a;
    rc = tk_api_route_allows(r->route, &a->p, app->default_tenant, &e);
    if (rc != TK_OK) {
        json_t *err = json_pack("{s:s, s:s}", "error", e.code, "message", e.msg);
        tk_console_error(r, tk_rc_status(rc), err);
        json_decref(err);
        return rc;
    }
    /* from here the session acts as its operator token (events, /v1 rules) */
    a->p.kind = TK_PRINCIPAL_OPERATOR_TOKEN;
    if (strcmp(r->method, "GET") != 0) {
        struct tk_form *f = parse_form(r);
        if (!f) return TK_EINVAL; /* replied */
        const char *v = tk_form_get(f, "csrf");
        if (tk_req_cross_site(r) || !v || strlen(v) != TK_CONSOLE_CSRF_LEN ||
            !tk_ct_equal(v, a->csrf, TK_CONSOLE_CSRF_LEN)) {
            tk_console_message(r, 403, "Not allowed",
                               "This form was not sent from this console page (its CSRF token "
                               "is missing or does not match your session). Reload the page "
                               "and try again.");
            return TK_EFORBIDDEN;
        }
        a->form = f;
    }
    return TK_OK;
}

tk_rc tk_console_session_active(struct tk_db *db, const char *id, int64_t now_ms, int64_t idle_ms,
                                bool *active, struct tk_err *e)
{
    struct tk_rows *r;
    *active = false;
    tk_rc rc = tk_db_exec(db,
                          "SELECT ended_at, expires_at, last_seen_at FROM console_sessions "
                          "WHERE id = ?",
                          TK_ARGS(TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 1)
        *active = tk_rows_null(r, 0, 0) && tk_rows_int(r, 0, 1) > now_ms &&
                  now_ms - tk_rows_int(r, 0, 2) <= idle_ms;
    tk_rows_free(r);
    return TK_OK;
}

bool tk_console_gate_refused(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (strncmp(r->path, "/console/", 9) != 0) return false;
    if (tk_api_started(r) && app->keyring && tk_keyring_sealed(app->keyring)) {
        tk_reply_redirect(r, 303, "/console/unseal");
        return true;
    }
    tk_reply_header(r, "Retry-After", "1");
    tk_console_message(r, 503, "Not available", "The node is starting; reload in a moment.");
    return true;
}

/* ---- sign-in ---- */

static const char *why_sentence(const char *why)
{
    static const struct {
        const char *code, *text;
    } m[] = {
        {"signin", "Sign in to continue."},
        {"signed_out", "You signed out."},
        {"expired", "Your session reached its lifetime (console_session_lifetime); sign in again."},
        {"idle", "Your session ended after a time without use (console_idle_timeout); sign in again."},
        {"revoked", "The operator token of your session was revoked."},
        {"token_expired", "The operator token of your session expired."},
        {"unknown", "Your session is not known here (it was ended, or the node was reset)."},
        {"unsealed", "The node is unsealed; sign in."},
        {"cookies", "Your browser sent two console cookies of the same name (another page on "
                    "this host may have set one): clear this site's cookies in the browser, "
                    "then sign in."},
    };
    for (size_t i = 0; why && i < TK_NELEM(m); i++)
        if (!strcmp(why, m[i].code)) return m[i].text;
    return NULL;
}

static void login_form(struct tk_req *r, int status, const char *error, const char *next)
{
    char csrf[TK_CONSOLE_CSRF_LEN + 1];
    tk_console_precsrf(r, csrf);
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, NULL, "Sign in");
    const char *why = why_sentence(tk_req_query(r, "why"));
    if (duplicated(r, TK_CONSOLE_CSRF_COOKIE) || duplicated(r, TK_CONSOLE_COOKIE)) {
        /* the form cannot work until the browser's cookies are cleared */
        why = why_sentence("cookies");
        if (error) error = why;
    }
    if (error)
        tk_htmlf(&pg, "<p class=\"error\" id=\"login-error\">%s</p>", error);
    else if (why)
        tk_htmlf(&pg, "<p class=\"notice\">%s</p>", why);
    tk_htmlf(&pg,
             "<form method=\"post\" action=\"/console/login\" class=\"login\">"
             "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
             "<input type=\"hidden\" name=\"next\" value=\"%s\">"
             "<label for=\"token\">Operator token</label>"
             "<input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" "
             "placeholder=\"tko_…\" required>"
             "<button type=\"submit\">Sign in</button></form>"
             "<p class=\"muted\">The token is exchanged for a session cookie and not kept in the "
             "browser. Make one with <code>tokend operator-tokens create</code>; with "
             "<code>--dev</code> the root token is in the data dir's <code>root-token</code>.</p>",
             csrf, next_of(next));
    tk_cpage_end(&pg, status);
}

void tk_h_console_login_page(struct tk_req *r)
{
    login_form(r, 200, NULL, tk_req_query(r, "next"));
}

struct login_refusal {
    char msg[300];
    int status;
};

static void refusal_hook(struct tk_req *r, int status, json_t *body, void *arg)
{
    (void)r;
    struct login_refusal *l = arg;
    l->status = status;
    snprintf(l->msg, sizeof l->msg, "%s", tk_jstr(body, "message"));
    json_decref(body);
}

void tk_h_console_login(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_form *f = parse_form(r);
    if (!f) return;
    const char *next = tk_form_get(f, "next");
    if (!tk_console_precsrf_ok(r, f)) {
        login_form(r, 403, "The sign-in form was stale or sent from another site. Try again.",
                   next);
        return;
    }
    const char *tok = tk_form_get(f, "token");
    if (!tok) tok = "";
    while (*tok == ' ' || *tok == '\t' || *tok == '\n' || *tok == '\r') tok++;
    size_t len = strlen(tok);
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t' || tok[len - 1] == '\n' ||
                   tok[len - 1] == '\r'))
        len--;
    struct tk_principal *p = tk_pool_alloc(r->pool, sizeof *p);
    memset(p, 0, sizeof *p);
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc;
    if (len == 0) {
        rc = tk_err_set(&e, TK_EAUTH, "missing", "no operator token was given");
    } else if (tk_issued_check(TK_KIND_OPERATOR, tok, len, &e) != TK_OK) {
        rc = e.rc = TK_EAUTH; /* refused as the API refuses a malformed token */
    } else {
        struct login_refusal busy = {.status = 0};
        tk_req_capture(r, refusal_hook, &busy);
        rc = tk_api_issued_lookup(r, TK_PRINCIPAL_OPERATOR_TOKEN, tok, len, p, &e);
        tk_req_capture(r, NULL, NULL);
        if (rc != TK_OK && rc != TK_EAUTH) {
            login_form(r, busy.status ? busy.status : 503,
                       busy.msg[0] ? busy.msg : "The node cannot check tokens now.", next);
            return;
        }
    }
    if (rc != TK_OK) {
        /* the API's refusal: counted against the address, recorded */
        struct login_refusal l = {.status = 401};
        tk_req_capture(r, refusal_hook, &l);
        tk_api_refuse(r, p, e);
        tk_req_capture(r, NULL, NULL);
        login_form(r, l.status, l.status == 429 ? l.msg : "That operator token was not accepted.",
                   next);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    char token[TK_ISSUED_MAX], hash[TK_HASH_HEX], kid[17], id[TK_UUID_LEN + 1], addr[TK_ADDR_MAX];
    tk_issued_new(TK_KIND_CONSOLE_SESSION, token);
    tk_uuid7(id);
    tk_req_remote(r, addr, sizeof addr);
    int64_t now = tk_now_ms();
    rc = tk_keyring_hash(app->keyring, token, strlen(token), hash, kid, &e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "INSERT INTO console_sessions (id, tenant_id, operator_token_id, "
                        "token_hash, hash_key, created_at, last_seen_at, expires_at, "
                        "remote_addr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        TK_ARGS(TK_TEXT(id), TK_TEXT(p->tenant_id), TK_TEXT(p->id),
                                TK_TEXT(hash), TK_TEXT(kid), TK_INT(now), TK_INT(now),
                                TK_INT(now + (int64_t)app->cfg->console_session_lifetime * 1000),
                                TK_TEXT(addr)),
                        NULL, &e);
    if (rc != TK_OK) {
        tk_wipe(token, sizeof token);
        login_form(r, tk_rc_status(rc), "The session could not be stored; try again.", next);
        return;
    }
    /* sessions ended or past their lifetime a day ago are of no use: each
     * sign-in clears them (best effort), so the table holds about a day's */
    if (tk_db_exec(db, "DELETE FROM console_sessions WHERE expires_at < ? OR ended_at < ?",
                   TK_ARGS(TK_INT(now - PURGE_AFTER_MS), TK_INT(now - PURGE_AFTER_MS)), NULL,
                   &e) != TK_OK)
        tk_warn("console: old sessions not cleared: %s", e.msg);
    json_t *d = json_pack("{s:s, s:s}", "session_id", id, "remote", addr);
    event(r, p->tenant_id, "console_sign_in", "ok", p->id,
          "signed in to the console", d);
    json_decref(d);
    set_session_cookie(r, token, app->cfg->console_session_lifetime);
    tk_wipe(token, sizeof token);
    tk_reply_redirect(r, 303, next_of(next));
}

void tk_h_console_logout(struct tk_req *r)
{
    const struct tk_principal *p = tk_console_principal(r);
    struct console_auth *a = (struct console_auth *)p;
    struct tk_db *db = tk_api_db(r);
    struct tk_err e;
    if (!db) return;
    if (tk_db_exec(db, "UPDATE console_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                   TK_ARGS(TK_INT(tk_now_ms()), TK_TEXT(a->session_id)), NULL, &e) != TK_OK) {
        tk_console_message(r, tk_rc_status(e.rc), "Not signed out",
                           "The session could not be ended now; try again.");
        return;
    }
    json_t *d = json_pack("{s:s}", "session_id", a->session_id);
    event(r, p->tenant_id, "console_sign_out", "ok", p->id, "signed out of the console", d);
    json_decref(d);
    set_session_cookie(r, "", 0);
    tk_reply_redirect(r, 303, "/console/login?why=signed_out");
}

void tk_h_console_home(struct tk_req *r)
{
    struct tk_app *app = r->app;
    if (tk_api_started(r) && app->keyring && tk_keyring_sealed(app->keyring))
        tk_reply_redirect(r, 303, "/console/unseal");
    else
        tk_reply_redirect(r, 303, "/console/node");
}

/* Does path match a route pattern ("/a/{id}/b": a {param} is one non-empty
 * segment)? */
static bool pattern_matches(const char *pat, const char *path)
{
    while (*pat && *path) {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            if (!close || *path == '/') return false;
            pat = close + 1;
            while (*path && *path != '/')
                path++;
        } else if (*pat++ != *path++) {
            return false;
        }
    }
    return !*pat && !*path;
}

void tk_h_console_not_found(struct tk_req *r)
{
    bool form = false; /* a POST-only console route opened with GET */
    size_t n;
    const struct tk_route *t = tk_api_routes(&n);
    for (size_t i = 0; i < n && !strcmp(r->method, "GET"); i++)
        if (!strcmp(t[i].method, "POST") && t[i].handler != tk_h_console_not_found &&
            pattern_matches(t[i].pattern, r->path))
            form = true;
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, NULL, "Not found");
    if (!strcmp(r->path, "/console/logout"))
        tk_html(&pg, "<p class=\"message\">Sign out with the <strong>Sign out</strong> button at "
                     "the top right of any console page.</p>");
    else if (form)
        tk_html(&pg, "<p class=\"message\">This address takes a form sent by a button on its "
                     "console page; it cannot be opened directly. Go back to that page.</p>");
    else
        tk_html(&pg, "<p class=\"message\">There is no console page at this address; start "
                     "from the console's node page.</p>");
    tk_html(&pg, "<p><a href=\"/console/node\">Go to the console</a></p>");
    tk_cpage_end(&pg, 404);
}

/* ---- assets (embedded at build time: scripts/embed-assets.sh) ---- */

struct tk_console_asset {
    const char *name;
    const char *data;
    size_t len;
};
extern const struct tk_console_asset tk_console_assets[];
extern const int tk_console_assets_count;

void tk_h_console_asset(struct tk_req *r)
{
    const char *name = tk_req_param(r, "name");
    for (int i = 0; name && i < tk_console_assets_count; i++) {
        const struct tk_console_asset *a = &tk_console_assets[i];
        if (strcmp(a->name, name) != 0) continue;
        size_t n = strlen(a->name);
        const char *ct = n > 4 && !strcmp(a->name + n - 4, ".css") ? "text/css; charset=utf-8"
                         : n > 3 && !strcmp(a->name + n - 3, ".js")
                             ? "text/javascript; charset=utf-8"
                             : "application/octet-stream";
        tk_reply_header(r, "Cache-Control", "private, max-age=300");
        tk_reply_text(r, 200, ct, a->data, a->len);
        return;
    }
    struct tk_err e;
    tk_err_set(&e, TK_ENOTFOUND, "not_found", "no such console asset");
    tk_reply_error(r, &e, NULL);
}
