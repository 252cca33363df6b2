/* page_node.c: the console's node page (health, readiness, seal status, data
 * key version, rewrap progress, doctor findings; seal and rewrap buttons for
 * node admins) and the unseal page, which takes shares one at a time while
 * the node is sealed (issue 17).
 *
 * The unseal page has no session (nobody can sign in while sealed): it
 * calls the public /v1/sys/seal-status and /v1/sys/unseal routes on the
 * same request (tk_req_call, as tk_console_call does for a session), so the
 * unseal handler's rules apply unchanged: its per-address rate limit, its
 * events, its refusal of a malformed or repeated share. The attempt's nonce
 * (returned by the first share, required with every further one) is kept in
 * an HttpOnly cookie of its own; the share itself is never shown, logged or
 * kept: the JSON text carrying it is wiped after the call. */
#include "console.h"
#include "pages.h"

#include "../api/ratelimit.h"
#include "../common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The unseal attempt's nonce (32 hex digits), for the next share. */
#define UNSEAL_NONCE_COOKIE "tokend_console_unseal"
/* A node's clock this far from the store's is a warning (as tokend doctor). */
#define SKEW_WARN_MS 2000
/* A certificate expiring within this many seconds is a warning (tls.h's is
 * the CLI's; 14 days here without pulling the TLS module in). */
#define CERT_WARN_S (14 * 86400)

/* ---- the node page ---- */

/* <form id=...> with the session's CSRF field (tk_cpage_form has no id). */
static void form_id(struct tk_cpage *pg, const char *action, const char *id, const char *cls)
{
    tk_htmlf(pg,
             "<form method=\"post\" action=\"%s\" id=\"%s\" class=\"%s\">"
             "<input type=\"hidden\" name=\"csrf\" value=\"%s\">",
             action, id, cls, tk_console_csrf(pg->r));
}

static void health_card(struct tk_cpage *pg, const struct tk_capi *h)
{
    const char *st = tk_jstr(h->body, "status");
    tk_html(pg, "<section class=\"card\"><h2>Health</h2><p id=\"health\">");
    tk_cpage_badge(pg, st[0] ? st : "unknown");
    tk_htmlf(pg, "</p><p class=\"muted\">GET /health answered %d.</p></section>", h->status);
}

static void readiness_card(struct tk_cpage *pg, const struct tk_capi *rd)
{
    tk_html(pg, "<section class=\"card\"><h2>Readiness</h2><div id=\"readiness\"><p>");
    if (rd->status == 200) {
        tk_cpage_badge(pg, "ready");
        tk_htmlf(pg,
                 "</p><dl class=\"kv\"><dt>Store</dt><dd>%s</dd><dt>Schema</dt><dd>%lld</dd>"
                 "<dt>Node</dt><dd><code>%s</code></dd><dt>Public URL</dt><dd>%s</dd></dl>",
                 tk_jstr(rd->body, "store"), tk_jint(rd->body, "schema_version"),
                 tk_jstr(rd->body, "node"), tk_jstr(rd->body, "public_url"));
    } else {
        tk_cpage_badge(pg, "not_ready");
        const char *reason = tk_jstr(rd->body, "reason");
        tk_htmlf(pg, " <code class=\"reason\">%s</code></p><p class=\"error\">%s</p>",
                 reason[0] ? reason : tk_jstr(rd->body, "error"), tk_jstr(rd->body, "message"));
    }
    tk_html(pg, "</div></section>");
}

static void seal_card(struct tk_cpage *pg, json_t *st, bool admin)
{
    bool sealed = tk_jbool(st, "sealed");
    tk_html(pg, "<section class=\"card\"><h2>Seal</h2><p id=\"seal-status\">");
    tk_cpage_badge(pg, sealed ? "sealed" : "unsealed");
    tk_html(pg, "</p><dl class=\"kv\">");
    tk_htmlf(pg, "<dt>Initialized</dt><dd>%s</dd>", tk_jbool(st, "initialized") ? "yes" : "no");
    tk_htmlf(pg, "<dt>Shares</dt><dd>threshold %lld of %lld</dd>", tk_jint(st, "t"),
             tk_jint(st, "n"));
    if (sealed)
        tk_htmlf(pg, "<dt>Unseal progress</dt><dd>%lld of %lld shares given</dd>",
                 tk_jint(st, "progress"), tk_jint(st, "t"));
    tk_htmlf(pg, "<dt>Auto-unseal key file</dt><dd>%s</dd>",
             tk_jbool(st, "auto_unseal") ? "yes" : "no");
    tk_htmlf(pg, "<dt>Data key version</dt><dd id=\"data-key-version\">%lld</dd>",
             tk_jint(st, "data_version"));
    tk_htmlf(pg, "<dt>Node</dt><dd><code>%s</code></dd></dl>", tk_jstr(st, "node"));
    if (admin) {
        form_id(pg, "/console/node/seal", "seal", "inline");
        tk_html(pg, "<button type=\"submit\" class=\"danger\">Seal now</button></form>"
                    "<p class=\"muted\">Sealing stops every API call until the node is "
                    "unsealed again with the shares of its init.</p>");
    }
    tk_html(pg, "</section>");
}

static void rewrap_card(struct tk_cpage *pg, json_t *st, bool admin)
{
    json_t *rw = json_object_get(st, "rewrap");
    tk_html(pg, "<section class=\"card\"><h2>Rewrap</h2><div id=\"rewrap\">");
    if (!json_is_object(rw)) {
        tk_html(pg, "<p class=\"muted\">No rewrap has run on this store.</p>");
    } else {
        long long done = tk_jint(rw, "done"), total = tk_jint(rw, "total");
        tk_html(pg, "<p>");
        tk_cpage_badge(pg, tk_jstr(rw, "state"));
        tk_htmlf(pg, " toward data key version %lld</p>", tk_jint(rw, "target_version"));
        tk_htmlf(pg, "<progress class=\"progress\" value=\"%lld\" max=\"%lld\"></progress>",
                 total > 0 ? done : 1, total > 0 ? total : 1);
        tk_htmlf(pg, "<p>%lld of %lld values done: %lld rewrapped, %lld failed.</p>", done, total,
                 tk_jint(rw, "rewrapped"), tk_jint(rw, "failed"));
        const char *ff = tk_jstr(rw, "first_failed_row");
        if (ff[0]) tk_htmlf(pg, "<p class=\"error\">First failed value: <code>%s</code></p>", ff);
    }
    tk_html(pg, "</div>");
    if (admin) {
        form_id(pg, "/console/node/rewrap", "rewrap-start", "inline");
        tk_html(pg, "<button type=\"submit\" class=\"secondary\">Start rewrap</button></form>"
                    "<p class=\"muted\">Re-seals every stored value under the active data key "
                    "version, in the background.</p>");
    }
    tk_html(pg, "</section>");
}

/* One finding: status ok | warn | fail | info, a check name, a sentence and
 * the next step (or NULL), as `tokend doctor` prints them. */
static void finding(struct tk_cpage *pg, const char *check, const char *status, const char *msg,
                    const char *next)
{
    tk_htmlf(pg, "<li class=\"finding f-%s\" data-check=\"%s\">", status, check);
    tk_cpage_badge(pg, status);
    tk_htmlf(pg, " <strong>%s</strong> %s", check, msg);
    if (next) tk_htmlf(pg, "<br><span class=\"muted\">Next: %s</span>", next);
    tk_html(pg, "</li>");
}

/* The node checks of `tokend doctor` (cli_doctor.c's check_node and
 * check_schema) from GET /v1/sys/doctor's facts. */
static void doctor_findings(struct tk_cpage *pg, json_t *o)
{
    char msg[1024], next[1200];
    long long skew = tk_jint(o, "node_time_ms") - tk_jint(o, "store_time_ms");
    long long abs_skew = skew < 0 ? -skew : skew;
    if (abs_skew > SKEW_WARN_MS) {
        snprintf(msg, sizeof msg,
                 "The node's clock is %lld ms %s the store's (round trip %lld ms): expiry times "
                 "and event order can be wrong.",
                 abs_skew, skew > 0 ? "ahead of" : "behind", tk_jint(o, "round_trip_ms"));
        finding(pg, "clock", "warn", msg,
                "synchronize the clocks of the node and the store host (NTP, chrony)");
    } else {
        snprintf(msg, sizeof msg, "The node's clock is within %lld ms of the store's.", abs_skew);
        finding(pg, "clock", "ok", msg, NULL);
    }
    json_t *key = json_object_get(o, "unseal_key_file");
    const char *path = tk_jstr(key, "path");
    if (tk_jbool(o, "dev")) {
        snprintf(msg, sizeof msg,
                 "Dev mode is on: the unseal key is on disk at %s, and whoever reads it reads "
                 "every secret.",
                 path);
        finding(pg, "dev", "warn", msg,
                "use 'tokend operator init' and shares (or a protected auto-unseal key) for "
                "anything real");
    } else {
        finding(pg, "dev", "ok", "Dev mode is off.", NULL);
    }
    if (tk_jbool(key, "exists")) {
        if (tk_jbool(key, "private")) {
            snprintf(msg, sizeof msg, "The auto-unseal key file %s has mode %s (owner only).", path,
                     tk_jstr(key, "mode"));
            finding(pg, "unseal-key", "ok", msg, NULL);
        } else {
            snprintf(msg, sizeof msg,
                     "The auto-unseal key file %s has mode %s: others can read it.", path,
                     tk_jstr(key, "mode"));
            snprintf(next, sizeof next, "chmod 600 %s", path);
            finding(pg, "unseal-key", "warn", msg, next);
        }
    }
    long long have = tk_jint(o, "schema_version"), known = tk_jint(o, "schema_latest");
    if (have == known) {
        snprintf(msg, sizeof msg, "The store's schema is version %lld, the one this node knows.",
                 have);
        finding(pg, "schema", "ok", msg, NULL);
    } else {
        snprintf(msg, sizeof msg,
                 "The store's schema is version %lld and this node's binary knows %lld: another "
                 "node of a %s version uses this store.",
                 have, known, have > known ? "newer" : "older");
        finding(pg, "schema", "warn", msg, "run one tokend version on a store");
    }
    json_t *tls = json_object_get(o, "tls");
    if (tk_jbool(tls, "enabled")) {
        long long left = tk_jint(tls, "expires_in");
        const char *file = tk_jstr(tls, "cert_file"), *after = tk_jstr(tls, "not_after");
        snprintf(next, sizeof next,
                 "put a renewed certificate and its key in %s and %s, then send SIGHUP to tokend",
                 file, tk_jstr(tls, "key_file"));
        if (left <= 0) {
            snprintf(msg, sizeof msg, "The TLS certificate %s expired at %s.", file, after);
            finding(pg, "tls", "fail", msg, next);
        } else if (left < CERT_WARN_S) {
            snprintf(msg, sizeof msg, "The TLS certificate %s expires at %s, in %lld days.", file,
                     after, left / 86400);
            finding(pg, "tls", "warn", msg, next);
        } else {
            snprintf(msg, sizeof msg, "The TLS certificate %s is valid until %s (%lld days).", file,
                     after, left / 86400);
            finding(pg, "tls", "ok", msg, NULL);
        }
        if (tk_jint(tls, "reloads_failed") > 0) {
            snprintf(msg, sizeof msg,
                     "%lld TLS reload(s) failed since the node started; it serves the last "
                     "certificate that loaded.",
                     tk_jint(tls, "reloads_failed"));
            finding(pg, "tls-reload", "warn", msg,
                    "'tokend events --kind node --action tls_reload' shows why");
        }
    } else {
        snprintf(msg, sizeof msg, "TLS: not configured (plain HTTP) on %s.", tk_jstr(o, "listen"));
        finding(pg, "tls", "info", msg, NULL);
    }
}

void tk_h_console_node(struct tk_req *r)
{
    struct tk_capi health = {0}, ready = {0}, seal = {0}, doc = {0};
    bool admin = tk_console_can(r, TK_ROLE_NODE_ADMIN);
    if (!tk_console_call_any(r, "GET", "/health", NULL, NULL, NULL, &health)) return;
    if (!tk_console_call_any(r, "GET", "/ready", NULL, NULL, NULL, &ready)) goto out;
    if (!tk_console_call(r, "GET", "/v1/sys/seal-status", NULL, NULL, NULL, &seal)) goto out;
    if (admin && !tk_console_call_any(r, "GET", "/v1/sys/doctor", NULL, NULL, NULL, &doc)) goto out;

    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, "node", "Node");
    tk_html(&pg, "<div class=\"grid\">");
    health_card(&pg, &health);
    readiness_card(&pg, &ready);
    tk_html(&pg, "</div>");
    seal_card(&pg, seal.body, admin);
    rewrap_card(&pg, seal.body, admin);
    tk_html(&pg, "<section class=\"card\"><h2>Doctor</h2>");
    if (!admin) {
        tk_html(&pg, "<p class=\"muted\" id=\"doctor-note\">The doctor findings are for node "
                     "admins (an admin of the default tenant).</p>");
    } else if (doc.status != 200) {
        tk_htmlf(&pg,
                 "<p class=\"error\" id=\"doctor-error\">GET /v1/sys/doctor answered %d: %s</p>",
                 doc.status, tk_jstr(doc.body, "message"));
    } else {
        tk_html(&pg, "<ul id=\"doctor\" class=\"findings\">");
        doctor_findings(&pg, doc.body);
        tk_html(&pg, "</ul><p class=\"muted\">The node's own checks of <code>tokend "
                     "doctor</code>; run it for the event chain and recent refusals too.</p>");
    }
    tk_html(&pg, "</section>");
    tk_cpage_end(&pg, 200);
out:
    tk_capi_free(&health);
    tk_capi_free(&ready);
    tk_capi_free(&seal);
    tk_capi_free(&doc);
}

void tk_h_console_node_seal(struct tk_req *r)
{
    struct tk_capi out;
    if (!tk_console_form(r)) return;
    if (!tk_console_call(r, "POST", "/v1/sys/seal", NULL, NULL, NULL, &out)) return;
    tk_capi_free(&out);
    /* sealed: every console page but the unseal page now redirects there */
    tk_reply_redirect(r, 303, "/console/unseal");
}

void tk_h_console_node_rewrap(struct tk_req *r)
{
    struct tk_capi out;
    if (!tk_console_form(r)) return;
    if (!tk_console_call(r, "POST", "/v1/sys/rewrap", NULL, NULL, NULL, &out)) return;
    tk_capi_free(&out);
    tk_reply_redirect(r, 303, "/console/node#rewrap");
}

/* ---- the unseal page (no session) ---- */

static const struct tk_route *route_of(const char *method, const char *pattern)
{
    size_t n;
    const struct tk_route *t = tk_api_routes(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].method, method) && !strcmp(t[i].pattern, pattern)) return &t[i];
    return NULL;
}

struct answer {
    bool got;
    int status;
    json_t *body;
};

static void answer_hook(struct tk_req *r, int status, json_t *body, void *arg)
{
    (void)r;
    struct answer *a = arg;
    a->got = true;
    a->status = status;
    a->body = body;
}

/* Call a public /v1 route (no principal) on this request; json_text is
 * wiped by the caller. false after replying an error page. */
static bool public_call(struct tk_req *r, const char *method, const char *pattern,
                        const char *json_text, struct answer *a)
{
    memset(a, 0, sizeof *a);
    const struct tk_route *rt = route_of(method, pattern);
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = rt && !(rt->flags & TK_ROUTE_AUTH)
                   ? tk_req_call(r, rt, NULL, NULL, json_text, answer_hook, a, &e)
                   : tk_err_set(&e, TK_EINTERNAL, "internal", "%s %s is not a public route", method,
                                pattern);
    if (rc != TK_OK || !a->got || !a->body) {
        if (rc != TK_OK) tk_error("console: %s %s: %s", method, pattern, e.msg);
        json_decref(a->body);
        a->body = NULL;
        tk_console_message(r, 500, "Something failed",
                           "The console could not call the API; the node's log says why.");
        return false;
    }
    return true;
}

static bool secure(struct tk_req *r)
{
    struct tk_app *app = r->app;
    return app->tls != NULL || !strncmp(app->public_url, "https://", 8);
}

static void set_nonce_cookie(struct tk_req *r, const char *nonce)
{
    struct tk_cookie_opts o = {.path = "/console/",
                               .max_age = nonce[0] ? -1 : 0,
                               .http_only = true,
                               .secure = secure(r),
                               .same_site = TK_SAMESITE_STRICT};
    tk_reply_cookie(r, UNSEAL_NONCE_COOKIE, nonce[0] ? nonce : "", &o);
}

/* The browser's attempt nonce when well-formed (32 hex digits), else NULL. */
static const char *nonce_cookie(struct tk_req *r)
{
    const char *c = tk_req_cookie(r, UNSEAL_NONCE_COOKIE);
    if (!c || strlen(c) != 32) return NULL;
    for (const char *s = c; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return NULL;
    return c;
}

/* A 429 of the unseal route: its Retry-After (the called route's headers
 * stay with the call, so say it again on the page's reply). */
static void retry_after(struct tk_req *r, int status)
{
    struct tk_app *app = r->app;
    char addr[TK_ADDR_MAX], ra[16];
    int wait = 0;
    if (status != 429) return;
    tk_req_remote(r, addr, sizeof addr);
    if (!tk_ratelimit_blocked(app->unseal_limit, addr, tk_now_ms(), &wait)) wait = 1;
    snprintf(ra, sizeof ra, "%d", wait);
    tk_reply_header(r, "Retry-After", ra);
}

/* The unseal page for seal status st (a seal-status or unseal answer):
 * status, progress "N of M shares given", the one-share form, error or
 * notice (or NULL) above it; a "start over" form while shares are held. */
static void unseal_page(struct tk_req *r, int status, json_t *st, const char *error,
                        const char *notice)
{
    char csrf[TK_CONSOLE_CSRF_LEN + 1];
    tk_console_precsrf(r, csrf);
    retry_after(r, status);
    struct tk_cpage pg;
    tk_cpage_begin(&pg, r, NULL, "Unseal");
    bool sealed = tk_jbool(st, "sealed");
    tk_html(&pg, "<section class=\"card\"><p id=\"seal-status\">");
    tk_cpage_badge(&pg, sealed ? "sealed" : "unsealed");
    tk_html(&pg, "</p>");
    if (error) tk_htmlf(&pg, "<p class=\"error\" id=\"unseal-error\">%s</p>", error);
    if (notice) tk_htmlf(&pg, "<p class=\"notice\" id=\"unseal-notice\">%s</p>", notice);
    if (!tk_jbool(st, "initialized")) {
        tk_html(&pg, "<p>The node is not initialized: run <code>tokend operator init</code> "
                     "(it prints the unseal shares and the root token once).</p>");
    } else if (tk_jbool(st, "keyring_corrupt")) {
        tk_html(&pg, "<p>The keyring in the store is damaged or was altered: restore the "
                     "keyring tables from a backup. Shares cannot open it.</p>");
    } else if (sealed) {
        tk_htmlf(&pg,
                 "<p id=\"unseal-progress\"><span class=\"stat\">%lld of %lld</span> shares "
                 "given</p>",
                 tk_jint(st, "progress"), tk_jint(st, "t"));
        tk_htmlf(&pg,
                 "<form method=\"post\" action=\"/console/unseal\" id=\"unseal\" class=\"login\">"
                 "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                 "<label for=\"share\">Unseal share</label>"
                 "<input type=\"password\" id=\"share\" name=\"share\" autocomplete=\"off\" "
                 "placeholder=\"tks1-…\" required>"
                 "<button type=\"submit\">Give this share</button></form>"
                 "<p class=\"muted\">One share at a time, each from its holder; the node opens "
                 "when %lld of the %lld shares of its init are given. A share is checked and "
                 "forgotten, never shown or stored.</p>",
                 csrf, tk_jint(st, "t"), tk_jint(st, "n"));
        if (tk_jint(st, "progress") > 0)
            tk_htmlf(&pg,
                     "<form method=\"post\" action=\"/console/unseal\" id=\"unseal-reset\" "
                     "class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                     "<input type=\"hidden\" name=\"reset\" value=\"1\">"
                     "<button type=\"submit\" class=\"secondary\">Start over</button></form> "
                     "<span class=\"muted\">forgets the shares given to this node so far (an "
                     "attempt started elsewhere, e.g. by <code>tokend operator unseal</code>, "
                     "can only be continued there or started over).</span>",
                     csrf);
    } else {
        tk_html(&pg, "<p>The node is unsealed. <a href=\"/console/login?why=unsealed\">Sign "
                     "in</a>.</p>");
    }
    tk_html(&pg, "</section>");
    tk_cpage_end(&pg, status);
}

/* Render the unseal page from a fresh seal-status (status and error as
 * unseal_page); redirect is whether an unsealed node goes to the node page. */
static void unseal_page_fresh(struct tk_req *r, int status, const char *error, bool redirect)
{
    struct answer a;
    if (!public_call(r, "GET", "/v1/sys/seal-status", NULL, &a)) return;
    if (a.status != 200)
        tk_console_error(r, a.status, a.body);
    else if (redirect && !tk_jbool(a.body, "sealed"))
        tk_reply_redirect(r, 303, "/console/node");
    else
        unseal_page(r, status, a.body, error, NULL);
    json_decref(a.body);
}

/* Start over: {"reset": true} with the attempt's nonce when this browser
 * has it (without it the API counts the reset against the address). */
static void unseal_reset(struct tk_req *r)
{
    const char *nonce = nonce_cookie(r);
    json_t *body = json_pack("{s:b}", "reset", 1);
    if (nonce) json_object_set_new(body, "nonce", json_string(nonce));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct answer a;
    bool called = text && public_call(r, "POST", "/v1/sys/unseal", text, &a);
    free(text);
    if (!called) {
        if (!text) tk_console_message(r, 500, "Something failed", "Out of memory.");
        return;
    }
    set_nonce_cookie(r, "");
    if (a.status == 200 && !tk_jbool(a.body, "sealed")) {
        tk_reply_redirect(r, 303, "/console/node");
    } else if (a.status == 200) {
        unseal_page(r, 200, a.body, NULL,
                    tk_jbool(a.body, "reset")
                        ? "The unseal attempt was reset: give the shares again, one at a time."
                        : "No unseal attempt was in progress.");
    } else {
        const char *msg = tk_jstr(a.body, "message");
        unseal_page_fresh(r, a.status, msg[0] ? msg : "The reset was not accepted.", false);
    }
    json_decref(a.body);
}

void tk_h_console_unseal_page(struct tk_req *r)
{
    unseal_page_fresh(r, 200, NULL, true);
}

void tk_h_console_unseal(struct tk_req *r)
{
    struct tk_form *f = tk_console_public_form(r);
    if (!f) return;
    if (!tk_console_precsrf_ok(r, f)) {
        unseal_page_fresh(r, 403,
                          "The unseal form was stale or sent from another site (its CSRF "
                          "token is missing or does not match). Give the share again.",
                          false);
        return;
    }
    const char *reset = tk_form_get(f, "reset");
    if (reset && !strcmp(reset, "1")) {
        unseal_reset(r);
        return;
    }
    char *share = (char *)tk_form_get(f, "share");
    const char *given = share ? share : "";
    while (*given == ' ' || *given == '\t' || *given == '\r' || *given == '\n')
        given++;
    size_t len = strlen(given);
    while (len && (given[len - 1] == ' ' || given[len - 1] == '\t' || given[len - 1] == '\r' ||
                   given[len - 1] == '\n'))
        len--;
    /* the attempt's nonce goes with every share after the first */
    struct tk_app *app = r->app;
    struct tk_seal_status now;
    tk_keyring_status(app->keyring, &now);
    const char *nonce = now.progress > 0 ? nonce_cookie(r) : NULL;
    json_t *body = json_object();
    json_object_set_new(body, "share", json_stringn(given, len));
    if (nonce) json_object_set_new(body, "nonce", json_string(nonce));
    char *text = json_dumps(body, JSON_COMPACT);
    /* wipe the share's copies: the form value, then the JSON tree's */
    json_t *sv = json_object_get(body, "share");
    if (sv) tk_wipe((void *)(uintptr_t)json_string_value(sv), json_string_length(sv));
    json_decref(body);
    if (share) tk_wipe(share, strlen(share));
    if (!text) {
        unseal_page_fresh(r, 400, "The share is not text this form can send.", false);
        return;
    }
    struct answer a;
    bool called = public_call(r, "POST", "/v1/sys/unseal", text, &a);
    tk_wipe(text, strlen(text));
    free(text);
    if (!called) return;
    if (a.status == 200 && !tk_jbool(a.body, "sealed")) {
        set_nonce_cookie(r, "");
        tk_reply_redirect(r, 303, "/console/login?why=unsealed");
    } else if (a.status == 200) {
        const char *started = tk_jstr(a.body, "nonce");
        if (started[0]) set_nonce_cookie(r, started);
        unseal_page(r, 200, a.body, NULL, NULL);
    } else if (json_object_get(a.body, "sealed")) {
        /* a refusal with the seal status (wrong share, nonce, rate limit) */
        const char *msg = tk_jstr(a.body, "message");
        unseal_page(r, a.status, a.body, msg[0] ? msg : "The share was not accepted.", NULL);
    } else {
        const char *msg = tk_jstr(a.body, "message");
        unseal_page_fresh(r, a.status, msg[0] ? msg : "The share was not accepted.", false);
    }
    json_decref(a.body);
}
