/*
 * oauth_login_api.c: the end user's pages of an authorization flow.
 *
 *   GET  /oauth2/login?flow=ID     the sign-in form
 *   POST /oauth2/login             email, password, csrf, flow
 *   GET  /oauth2/consent?flow=ID   the client, its redirect host and the
 *                                  scopes it asks for; Approve / Deny
 *   POST /oauth2/consent           action, csrf, flow
 *   POST /oauth2/logout            csrf: ends the session server-side
 *
 * Plain HTML forms, no script, every value escaped; no-store; a strict
 * Content-Security-Policy whose form-action is 'self' plus the origin of
 * the flow's redirect URI (browsers apply form-action to the redirects that
 * follow a submit, and both forms can end in a 303 to the client);
 * Referrer-Policy no-referrer, under which browsers send "Origin: null"
 * with the forms' POSTs: so an Origin is refused only when it names
 * another site (tk_req_cross_site, which also reads Sec-Fetch-Site), "null"
 * is not.
 *
 * CSRF: a double-submit cookie. The first page sets tokend_csrf (random,
 * HttpOnly, SameSite=Lax, Path=/oauth2/); every form carries the same value
 * in a hidden field and a POST whose field and cookie differ (or lack) is
 * refused before anything changes. No key to share between nodes.
 *
 * The password is verified in the hash pool (users_api.c) while the request
 * waits parked; an unknown email is verified against a dummy hash, so both
 * cost one argon2id. The browser sees one error ("email or password is
 * wrong"); the event (kind oauth, action login, subject the flow) has the
 * reason: unknown_user, wrong_password, user_disabled, csrf,
 * flow_not_active, rate_limited, busy.
 */
#include "users_internal.h"

#include "../common/log.h"
#include "../events/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- HTML ---- */

static void esc(struct tk_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            tk_buf_addstr(b, "&amp;");
            break;
        case '<':
            tk_buf_addstr(b, "&lt;");
            break;
        case '>':
            tk_buf_addstr(b, "&gt;");
            break;
        case '"':
            tk_buf_addstr(b, "&quot;");
            break;
        case '\'':
            tk_buf_addstr(b, "&#39;");
            break;
        default:
            tk_buf_add(b, s, 1);
        }
    }
}

static const char STYLE[] =
    "body{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}"
    "label{display:block;margin:.8em 0 .2em}input[type=email],input[type=password]"
    "{width:100%;padding:.4em;box-sizing:border-box}button{margin:1em .5em 0 0;padding:.5em 1.2em}"
    ".err{color:#a00}li{margin:.4em 0}small{color:#555}";

/* The origin of a redirect URI for form-action ("https://app.example",
 * "com.example.app:" for a private-use scheme), or "" when it holds a
 * character a CSP source cannot. */
static void redirect_origin(const char *uri, char *out, size_t n)
{
    out[0] = '\0';
    const char *colon = strchr(uri, ':');
    if (!colon || colon == uri) return;
    size_t end = (size_t)(colon - uri) + 1;
    if (!strncmp(colon, "://", 3)) {
        const char *h = colon + 3;
        end = (size_t)(h - uri) + strcspn(h, "/?#");
    }
    if (end >= n) return;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c >= 0x7f || c == ';' || c == ',' || c == '\'' || c == '"') return;
    }
    memcpy(out, uri, end);
    out[end] = '\0';
}

static void page_headers(struct tk_req *r, const struct tk_oauth_flow *f)
{
    char origin[TK_OAUTH_URI_MAX], csp[TK_OAUTH_URI_MAX + 256];
    redirect_origin(f ? f->redirect_uri : "", origin, sizeof origin);
    snprintf(csp, sizeof csp,
             "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s%s; "
             "frame-ancestors 'none'; base-uri 'none'",
             origin[0] ? " " : "", origin);
    tk_reply_header(r, "Content-Security-Policy", csp);
    tk_reply_header(r, "X-Frame-Options", "DENY");
    tk_reply_header(r, "Referrer-Policy", "no-referrer");
    /* every reply has Cache-Control: no-store and nosniff (http.c) */
    tk_reply_header(r, "Pragma", "no-cache");
}

static void page_begin(struct tk_buf *b, const char *title)
{
    tk_buf_init(b, 64 * 1024);
    tk_buf_addstr(b, "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width\"><title>");
    esc(b, title);
    tk_buf_addstr(b, "</title><style>");
    tk_buf_addstr(b, STYLE);
    tk_buf_addstr(b, "</style></head>\n<body><h1>");
    esc(b, title);
    tk_buf_addstr(b, "</h1>\n");
}

static void page_end(struct tk_req *r, struct tk_buf *b, int status, const struct tk_oauth_flow *f)
{
    tk_buf_addstr(b, "</body></html>\n");
    page_headers(r, f);
    tk_reply_text(r, status, "text/html; charset=utf-8", b->data, b->len);
    tk_buf_free(b);
}

/* A page with one message (errors, signed out). */
static void message_page(struct tk_req *r, int status, const char *title, const char *msg)
{
    struct tk_buf b;
    page_begin(&b, title);
    tk_buf_addstr(&b, "<p>");
    esc(&b, msg);
    tk_buf_addstr(&b, "</p>\n<p><small>Request id ");
    esc(&b, r->request_id);
    tk_buf_addstr(&b, "</small></p>\n");
    page_end(r, &b, status, NULL);
}

static void hidden(struct tk_buf *b, const char *name, const char *value)
{
    tk_buf_addstr(b, "<input type=\"hidden\" name=\"");
    esc(b, name);
    tk_buf_addstr(b, "\" value=\"");
    esc(b, value);
    tk_buf_addstr(b, "\">\n");
}

/* ---- CSRF ---- */

#define CSRF_LEN TK_CSRF_LEN

/* The browser's CSRF value (double-submit, http.h). out: CSRF_LEN + 1. */
static void csrf_value(struct tk_req *r, char *out)
{
    struct tk_cookie_opts o = {.path = "/oauth2/",
                               .max_age = -1,
                               .http_only = true,
                               .secure = tk_users_secure(r->app),
                               .same_site = TK_SAMESITE_LAX};
    tk_req_csrf(r, TK_USERS_CSRF_COOKIE, &o, out);
}

/* Does the form's csrf match the cookie, from this site's own page? */
static bool csrf_ok(struct tk_req *r, const struct tk_form *f)
{
    return tk_req_csrf_ok(r, TK_USERS_CSRF_COOKIE, tk_form_get(f, "csrf"));
}

/* ---- events ---- */

static void login_event_x(struct tk_req *r, const char *tenant_id, const char *flow_id,
                          const char *action, const char *outcome, const char *reason,
                          const char *email, const char *user_id, const char *message,
                          bool coalesce)
{
    char remote[TK_ADDR_MAX];
    tk_req_remote(r, remote, sizeof remote);
    json_t *d = json_pack("{s:s}", "remote", remote);
    if (reason) json_object_set_new(d, "reason", json_string(reason));
    if (email && email[0]) json_object_set_new(d, "email", json_string(email));
    if (user_id && user_id[0]) json_object_set_new(d, "user_id", json_string(user_id));
    struct tk_event ev = {.tenant_id = tenant_id,
                          .trace_id = r->request_id,
                          .kind = "oauth",
                          .source = "browser",
                          .action = action,
                          .outcome = outcome,
                          .subject_type = "oauth_flow",
                          .subject_id = flow_id,
                          .message = message,
                          .detail = d,
                          .latency_us = -1};
    /* A refusal repeated from one address (a flood of forged forms, a
     * finished flow's page reloaded, a password guesser past its budget) is
     * one event per minute with detail.count, never one row per request. */
    char key[TK_ADDR_MAX + 160];
    snprintf(key, sizeof key, "login %s %s %s %s", tenant_id ? tenant_id : "", action,
             reason ? reason : "", remote);
    struct tk_err e;
    if (coalesce && tk_event_coalesce(&ev, key, 60000)) {
        json_decref(d);
        return;
    }
    if (tk_event_post(&ev, &e) != TK_OK)
        tk_warn("oauth: could not record the %s event (%s): %s", action, reason ? reason : "ok",
                e.msg);
    json_decref(d);
}

/* Refusals are coalesced (see above) except the password checks that
 * login_refused counts against the address's failure budget: those stay
 * one event each, bounded by users_login_fail_limit. */
static void login_event(struct tk_req *r, const char *tenant_id, const char *flow_id,
                        const char *action, const char *outcome, const char *reason,
                        const char *email, const char *user_id, const char *message)
{
    login_event_x(r, tenant_id, flow_id, action, outcome, reason, email, user_id, message,
                  strcmp(outcome, "denied") == 0);
}

/* ---- the flow of a page ---- */

/* The active flow named by flow (a query or form value) into f; false
 * after an error page (and an event when the flow is known). */
static bool load_flow(struct tk_req *r, const char *id, struct tk_oauth_flow *f, const char *action)
{
    memset(f, 0, sizeof *f);
    if (!id || !tk_uuid_valid(id)) {
        message_page(r, 400, "Sign-in link not valid",
                     "This page needs the flow of an authorization request; start again from "
                     "the application you came from.");
        return false;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return false;
    struct tk_err e;
    tk_rc rc = tk_oauth_flow_get(db, NULL, id, f, &e);
    if (rc == TK_ENOTFOUND) {
        message_page(r, 400, "Sign-in link not valid",
                     "This authorization request is unknown; start again from the application "
                     "you came from.");
        return false;
    }
    if (rc != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return false;
    }
    if (f->expires_at && f->expires_at <= tk_now_ms()) {
        login_event(r, f->tenant_id, f->id, action, "denied", "flow_expired", NULL, NULL,
                    "the flow expired (oauth_flow_ttl) before the user signed in");
        tk_oauth_flow_clear(f);
        message_page(r, 400, "Sign-in link expired",
                     "This authorization request has expired; start again from the application "
                     "you came from.");
        return false;
    }
    if (strcmp(f->status, "active") != 0) {
        login_event(r, f->tenant_id, f->id, action, "denied", "flow_not_active", NULL, NULL,
                    "the flow is not active any more (completed or failed)");
        tk_oauth_flow_clear(f);
        message_page(r, 400, "Sign-in link expired",
                     "This authorization request is finished; start again from the application "
                     "you came from.");
        return false;
    }
    return true;
}

/* ---- login ---- */

static void login_form(struct tk_req *r, const struct tk_oauth_flow *f, int status,
                       const char *error, const char *email)
{
    char csrf[CSRF_LEN + 1];
    csrf_value(r, csrf);
    struct tk_buf b;
    page_begin(&b, "Sign in");
    if (error) {
        tk_buf_addstr(&b, "<p class=\"err\" role=\"alert\">");
        esc(&b, error);
        tk_buf_addstr(&b, "</p>\n");
    }
    tk_buf_addstr(&b, "<form method=\"post\" action=\"" TK_OAUTH_LOGIN_PATH "\">\n");
    hidden(&b, "flow", f->id);
    hidden(&b, "csrf", csrf);
    tk_buf_addstr(&b, "<label for=\"email\">Email</label><input type=\"email\" id=\"email\" "
                      "name=\"email\" autocomplete=\"username\" required value=\"");
    esc(&b, email ? email : "");
    tk_buf_addstr(&b, "\">\n<label for=\"password\">Password</label><input type=\"password\" "
                      "id=\"password\" name=\"password\" autocomplete=\"current-password\" "
                      "required>\n<button type=\"submit\">Sign in</button>\n</form>\n");
    page_end(r, &b, status, f);
}

static void consent_location(struct tk_req *r, const struct tk_oauth_flow *f)
{
    char loc[128];
    snprintf(loc, sizeof loc, "/oauth2/consent?flow=%s", f->id);
    tk_reply_redirect(r, 303, loc);
}

/* The user of f is signed in: consent already given covers the scopes ->
 * the code; else the consent page. */
static void after_login(struct tk_req *r, struct tk_db *db, struct tk_oauth_flow *f,
                        const char *user_id)
{
    struct tk_err e;
    bool covered = false;
    if (tk_oauth_consent_covers(db, f->tenant_id, user_id, f->oauth_client_id, f->scopes, &covered,
                                &e) == TK_OK &&
        covered) {
        if (tk_api_oauth_flow_stage(r, NULL, f->tenant_id, f->id, "consent", NULL, &e) != TK_OK) {
            tk_api_reply_error(r, &e, NULL);
            return;
        }
        snprintf(f->user_id, sizeof f->user_id, "%s", user_id);
        tk_api_oauth_authorized(r, f);
        return;
    }
    consent_location(r, f);
}

/* GET /oauth2/login?flow=ID */
void tk_h_oauth_login_page(struct tk_req *r)
{
    if (!tk_req_query_unique(r, "flow")) return;
    struct tk_oauth_flow f;
    if (!load_flow(r, tk_req_query(r, "flow"), &f, "login")) return;
    /* signed in already on this browser (in the flow's tenant): no form */
    char user_id[TK_UUID_LEN + 1];
    struct tk_db *db = tk_api_db(r);
    if (!db) goto out;
    if (tk_api_user_session(r, f.tenant_id, user_id)) {
        struct tk_err e;
        if (tk_api_oauth_flow_stage(r, NULL, f.tenant_id, f.id, "login", user_id, &e) != TK_OK) {
            tk_api_reply_error(r, &e, NULL);
            goto out;
        }
        snprintf(f.user_id, sizeof f.user_id, "%s", user_id);
        after_login(r, db, &f, user_id);
        goto out;
    }
    login_form(r, &f, 200, NULL, NULL);
out:
    tk_oauth_flow_clear(&f);
}

/* A login waiting for its verify. */
struct login {
    struct tk_app *app;
    struct tk_parked *parked;
    char flow_id[TK_UUID_LEN + 1];
    char tenant_id[TK_UUID_LEN + 1];
    char email[TK_USER_EMAIL_MAX + 1];
    char user_id[TK_UUID_LEN + 1]; /* "" for an unknown email */
    char status[16];
    char remote[TK_ADDR_MAX];
    struct tk_pwjob job;
};

static void login_free(struct login *l)
{
    tk_wipe(l->job.encoded, sizeof l->job.encoded);
    free(l);
}

/* A refused login: count it against the address (and user), record the
 * reason, answer the form again with the one generic error (or 429). */
static void login_refused(struct tk_req *r, struct tk_oauth_flow *f, const char *reason,
                          const char *email, const char *user_id)
{
    struct tk_app *app = r->app;
    struct tk_pwhash *s = app->pwhash;
    char remote[TK_ADDR_MAX];
    tk_req_remote(r, remote, sizeof remote);
    struct tk_ratelimit_verdict v = {0}, vu = {0};
    int64_t now = tk_now_ms();
    tk_ratelimit_fail(s->fail_addr, remote, 0, now, &v);
    if (user_id && user_id[0]) tk_ratelimit_fail(s->fail_user, user_id, 0, now, &vu);
    char msg[160];
    snprintf(msg, sizeof msg, "login refused: %s", reason);
    login_event_x(r, f->tenant_id, f->id, "login", "denied", reason, email, user_id, msg, false);
    login_form(r, f, 401, "Email or password is wrong.", email);
}

static void rate_limited_page(struct tk_req *r, int retry_s)
{
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry_s < 1 ? 1 : retry_s);
    tk_reply_header(r, "Retry-After", ra);
    message_page(r, 429, "Too many attempts",
                 "Too many failed sign-ins; wait a few minutes and try again.");
}

static void login_resumed(struct tk_req *r, void *arg)
{
    struct login *l = arg;
    struct tk_app *app = r->app;
    struct tk_oauth_flow f;
    if (!load_flow(r, l->flow_id, &f, "login")) {
        login_free(l);
        return;
    }
    struct tk_err e;
    if (l->job.rc != TK_OK || !l->job.ok || !l->user_id[0] || strcmp(l->status, "active") != 0) {
        const char *reason = l->job.rc != TK_OK ? "hash_error"
                             : !l->user_id[0]   ? "unknown_user"
                             : !l->job.ok       ? "wrong_password"
                                                : "user_disabled";
        if (l->job.rc != TK_OK) tk_warn("oauth: login verify failed: %s", l->job.e.msg);
        login_refused(r, &f, reason, l->email, l->user_id);
        tk_oauth_flow_clear(&f);
        login_free(l);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        tk_oauth_flow_clear(&f);
        login_free(l);
        return;
    }
    char tok[TK_ISSUED_MAX], sid[TK_UUID_LEN + 1];
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_user_session_create(db, app->keyring, f.tenant_id, l->user_id,
                                    app->cfg->users_session_ttl, tok, sid, &e);
    if (rc == TK_OK) rc = tk_user_login_noted(db, f.tenant_id, l->user_id, &e);
    if (rc == TK_OK)
        rc = tk_api_oauth_flow_stage(r, db, f.tenant_id, f.id, "login", l->user_id, &e);
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, &e, NULL);
        tk_oauth_flow_clear(&f);
        login_free(l);
        return;
    }
    struct tk_cookie_opts o = {.path = "/oauth2/",
                               .max_age = app->cfg->users_session_ttl,
                               .http_only = true,
                               .secure = tk_users_secure(app),
                               .same_site = TK_SAMESITE_LAX};
    tk_reply_cookie(r, TK_USERS_SESSION_COOKIE, tok, &o);
    tk_wipe(tok, sizeof tok);
    snprintf(f.user_id, sizeof f.user_id, "%s", l->user_id);
    after_login(r, db, &f, l->user_id);
    tk_oauth_flow_clear(&f);
    login_free(l);
}

static void login_verified(struct tk_pwjob *j)
{
    struct login *l = j->arg;
    if (!tk_parked_resume_with(l->parked, login_resumed, l)) login_free(l);
}

static void busy_page(struct tk_req *r, void *arg)
{
    (void)arg;
    tk_reply_header(r, "Retry-After", "2");
    message_page(r, 503, "Busy", "Too many sign-ins at once; go back and try again in a moment.");
}

/* POST /oauth2/login: flow, csrf, email, password */
void tk_h_oauth_login(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_form *form = tk_req_form(r);
    if (!form) return;
    const char *pw = tk_form_get(form, "password");
    struct tk_oauth_flow f;
    if (!load_flow(r, tk_form_get(form, "flow"), &f, "login")) goto wipe;
    if (!csrf_ok(r, form)) {
        login_event(r, f.tenant_id, f.id, "login", "denied", "csrf", NULL, NULL,
                    "login refused: the form's csrf value does not match the browser's cookie");
        message_page(r, 403, "Form expired",
                     "This form has expired or was not sent from this site; go back, reload "
                     "the page and try again.");
        goto out;
    }
    char remote[TK_ADDR_MAX];
    tk_req_remote(r, remote, sizeof remote);
    int retry = 0;
    if (tk_ratelimit_blocked(app->pwhash->fail_addr, remote, tk_now_ms(), &retry)) {
        login_event(r, f.tenant_id, f.id, "login", "denied", "rate_limited", NULL, NULL,
                    "login refused: too many failed logins from this address");
        rate_limited_page(r, retry);
        goto out;
    }
    const char *email_in = tk_form_get(form, "email");
    struct login *l = tk_calloc(1, sizeof *l);
    l->app = app;
    snprintf(l->flow_id, sizeof l->flow_id, "%s", f.id);
    snprintf(l->tenant_id, sizeof l->tenant_id, "%s", f.tenant_id);
    struct tk_err e;
    bool email_ok =
        email_in && tk_user_email_norm(email_in, strlen(email_in), l->email, &e) == TK_OK;
    size_t pw_len = pw ? strlen(pw) : 0;
    if (!pw || pw_len < TK_PASSWORD_MIN || pw_len > TK_PASSWORD_MAX) {
        /* refused without a hash: its length says nothing of the email */
        login_refused(r, &f, "password_invalid", email_ok ? l->email : NULL, NULL);
        login_free(l);
        goto out;
    }
    struct tk_user u = {0};
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        login_free(l);
        goto out;
    }
    tk_rc rc = email_ok ? tk_user_find_email(db, f.tenant_id, l->email, &u, &e) : TK_ENOTFOUND;
    if (rc != TK_OK && rc != TK_ENOTFOUND) {
        tk_api_reply_error(r, &e, NULL);
        login_free(l);
        goto out;
    }
    if (rc == TK_OK) {
        if (tk_ratelimit_blocked(app->pwhash->fail_user, u.id, tk_now_ms(), &retry)) {
            login_event(r, f.tenant_id, f.id, "login", "denied", "rate_limited", l->email, u.id,
                        "login refused: too many failed logins for this user");
            rate_limited_page(r, retry);
            tk_wipe(u.password_hash, sizeof u.password_hash);
            login_free(l);
            goto out;
        }
        snprintf(l->user_id, sizeof l->user_id, "%s", u.id);
        snprintf(l->status, sizeof l->status, "%s", u.status);
        snprintf(l->job.encoded, sizeof l->job.encoded, "%s", u.password_hash);
        tk_wipe(u.password_hash, sizeof u.password_hash);
    } else {
        /* unknown: the same cost as a known one */
        snprintf(l->job.encoded, sizeof l->job.encoded, "%s", app->pwhash->dummy);
    }
    l->job.op = TK_PWJOB_VERIFY;
    l->job.pw_len = pw_len;
    l->job.pw = tk_malloc(pw_len + 1);
    memcpy(l->job.pw, pw, pw_len + 1);
    l->job.done = login_verified;
    l->job.arg = l;
    l->parked = tk_req_park(r, TK_USERS_PARK_MS);
    if (!l->parked) {
        tk_wipe(l->job.pw, pw_len);
        free(l->job.pw);
        login_free(l);
        goto out;
    }
    if (!tk_users_submit(app, &l->job)) {
        tk_wipe(l->job.pw, pw_len);
        free(l->job.pw);
        login_event(r, f.tenant_id, f.id, "login", "denied", "busy", l->email, l->user_id,
                    "login refused: too many password hashes waiting (users_hash_queue)");
        tk_parked_resume_with(l->parked, busy_page, NULL);
        login_free(l);
    }
out:
    tk_oauth_flow_clear(&f);
wipe:
    if (pw) tk_wipe((char *)pw, strlen(pw));
}

/* ---- consent ---- */

/* The signed-in user of flow f's tenant who is f's user; else (after
 * answering 303 to the login page) false. */
static bool flow_user(struct tk_req *r, const struct tk_oauth_flow *f,
                      char user_id[TK_UUID_LEN + 1])
{
    if (!tk_api_db(r)) return false; /* replied 503 */
    if (tk_api_user_session(r, f->tenant_id, user_id) && f->user_id[0] &&
        !strcmp(f->user_id, user_id))
        return true;
    char loc[128];
    snprintf(loc, sizeof loc, TK_OAUTH_LOGIN_PATH "?flow=%s", f->id);
    tk_reply_redirect(r, 303, loc);
    return false;
}

static void host_of(const char *uri, char *out, size_t n)
{
    const char *h = strstr(uri, "://");
    h = h ? h + 3 : uri;
    size_t len = strcspn(h, "/?#");
    snprintf(out, n, "%.*s", (int)len, h);
}

/* GET /oauth2/consent?flow=ID */
void tk_h_oauth_consent_page(struct tk_req *r)
{
    if (!tk_req_query_unique(r, "flow")) return;
    struct tk_oauth_flow f;
    if (!load_flow(r, tk_req_query(r, "flow"), &f, "consent")) return;
    char user_id[TK_UUID_LEN + 1];
    if (!flow_user(r, &f, user_id)) {
        tk_oauth_flow_clear(&f);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        tk_oauth_flow_clear(&f);
        return;
    }
    struct tk_err e;
    struct tk_oauth_client c = {0};
    bool named = tk_oauth_client_find(db, f.client_id, &c, &e) == TK_OK;
    json_t *scopes = NULL;
    if (tk_oauth_scope_describe(db, f.tenant_id, f.scopes, &scopes, &e) != TK_OK) {
        tk_oauth_client_clear(&c);
        tk_oauth_flow_clear(&f);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    char csrf[CSRF_LEN + 1], host[TK_OAUTH_URI_MAX];
    csrf_value(r, csrf);
    host_of(f.redirect_uri, host, sizeof host);
    struct tk_buf b;
    page_begin(&b, "Allow access?");
    tk_buf_addstr(&b, "<p><strong>");
    esc(&b, named && c.name[0] ? c.name : f.client_id);
    tk_buf_addstr(&b, "</strong> asks to access your account.</p>\n<p><small>It will be sent "
                      "back to ");
    esc(&b, host);
    tk_buf_addstr(&b, "</small></p>\n");
    if (json_array_size(scopes)) {
        tk_buf_addstr(&b, "<p>It asks for:</p>\n<ul>\n");
        size_t i;
        json_t *x;
        json_array_foreach(scopes, i, x)
        {
            tk_buf_addstr(&b, "<li><code>");
            esc(&b, json_string_value(json_object_get(x, "name")));
            tk_buf_addstr(&b, "</code>");
            const char *d = json_string_value(json_object_get(x, "description"));
            if (d && d[0]) {
                tk_buf_addstr(&b, ": ");
                esc(&b, d);
            }
            tk_buf_addstr(&b, "</li>\n");
        }
        tk_buf_addstr(&b, "</ul>\n");
    }
    tk_buf_addstr(&b, "<form method=\"post\" action=\"/oauth2/consent\">\n");
    hidden(&b, "flow", f.id);
    hidden(&b, "csrf", csrf);
    tk_buf_addstr(&b, "<button type=\"submit\" name=\"action\" value=\"approve\">Approve</button>"
                      "<button type=\"submit\" name=\"action\" value=\"deny\">Deny</button>\n"
                      "</form>\n<form method=\"post\" action=\"/oauth2/logout\">\n");
    hidden(&b, "csrf", csrf);
    tk_buf_addstr(&b, "<button type=\"submit\">Not you? Sign out</button>\n</form>\n");
    json_decref(scopes);
    tk_oauth_client_clear(&c);
    page_end(r, &b, 200, &f);
    tk_oauth_flow_clear(&f);
}

/* POST /oauth2/consent: flow, csrf, action (approve | deny) */
void tk_h_oauth_consent(struct tk_req *r)
{
    struct tk_form *form = tk_req_form(r);
    if (!form) return;
    struct tk_oauth_flow f;
    if (!load_flow(r, tk_form_get(form, "flow"), &f, "consent")) return;
    const char *action = tk_form_get(form, "action");
    char user_id[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!csrf_ok(r, form)) {
        login_event(r, f.tenant_id, f.id, "consent", "denied", "csrf", NULL, NULL,
                    "consent refused: the form's csrf value does not match the browser's cookie");
        message_page(r, 403, "Form expired",
                     "This form has expired or was not sent from this site; go back, reload "
                     "the page and try again.");
    } else if (!action || (strcmp(action, "approve") != 0 && strcmp(action, "deny") != 0)) {
        message_page(r, 400, "Not understood", "Choose Approve or Deny.");
    } else if (!flow_user(r, &f, user_id)) {
        /* answered: sign in again */
    } else if (!strcmp(action, "deny")) {
        tk_api_oauth_redirect_error(r, &f, "access_denied", "the user denied access");
    } else {
        struct tk_db *db = tk_api_db(r);
        tk_rc rc = db ? tk_db_begin(db, &e) : TK_EUNAVAIL;
        if (!db) goto out;
        if (rc == TK_OK)
            rc = tk_oauth_consent_grant(db, f.tenant_id, user_id, f.oauth_client_id, f.scopes, &e);
        if (rc == TK_OK)
            rc = tk_api_oauth_flow_stage(r, db, f.tenant_id, f.id, "consent", user_id, &e);
        if (rc == TK_OK) rc = tk_db_commit(db, &e);
        if (rc != TK_OK) {
            if (tk_db_in_tx(db)) tk_db_rollback(db);
            tk_api_reply_error(r, &e, NULL);
        } else {
            tk_api_oauth_authorized(r, &f);
        }
    }
out:
    tk_oauth_flow_clear(&f);
}

/* POST /oauth2/logout: csrf */
void tk_h_oauth_logout(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_form *form = tk_req_form(r);
    if (!form) return;
    if (!csrf_ok(r, form)) {
        message_page(r, 403, "Form expired",
                     "This form has expired or was not sent from this site; reload the page "
                     "and try again.");
        return;
    }
    const char *tok = tk_req_cookie(r, TK_USERS_SESSION_COOKIE);
    struct tk_err e;
    if (tok && tk_issued_check(TK_KIND_USER_SESSION, tok, strlen(tok), &e) == TK_OK) {
        struct tk_db *db = tk_api_db(r);
        if (!db) return;
        if (tk_user_session_end(db, app->keyring, tok, strlen(tok), &e) != TK_OK) {
            tk_api_reply_error(r, &e, NULL);
            return;
        }
    }
    struct tk_cookie_opts o = {.path = "/oauth2/",
                               .max_age = 0,
                               .http_only = true,
                               .secure = tk_users_secure(app),
                               .same_site = TK_SAMESITE_LAX};
    tk_reply_cookie(r, TK_USERS_SESSION_COOKIE, "", &o);
    message_page(r, 200, "Signed out", "You are signed out.");
}
