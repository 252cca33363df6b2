/* diagnosis.c: the conclusion about a connection from its state and its
 * last refresh attempts (see diagnosis.h). */
#include "diagnosis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *hm(int64_t ms, char b[16])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&t, &tm)) return "an unknown time";
    snprintf(b, 16, "%02d:%02d", tm.tm_hour, tm.tm_min);
    return b;
}

static const char *times(size_t n, char b[32])
{
    static const char *const w[] = {
        "",          "once",        "twice",       "three times", "four times", "five times",
        "six times", "seven times", "eight times", "nine times",  "ten times"};
    if (n < sizeof w / sizeof w[0]) return w[n];
    snprintf(b, 32, "%zu times", n);
    return b;
}

static bool eq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static bool is_html(const char *ct)
{
    return ct && strstr(ct, "html") != NULL;
}

/* "key version N" in the refresh function's message; -1 when absent. */
static long long key_version(const char *msg)
{
    const char *p = msg ? strstr(msg, "key version ") : NULL;
    if (!p) return -1;
    char *end;
    long long v = strtoll(p + 12, &end, 10);
    return end == p + 12 ? -1 : v;
}

static const char *reconnect_step =
    "reconnect: run the connect flow again (tokend connections connect APP_ID --label L) or "
    "import fresh tokens (tokend connections import), then delete this connection";

static const char *permanent(const struct tk_diag_input *in, char *c, char *s)
{
    const char *code = in->last_error_code ? in->last_error_code : "";
    char b1[16], b2[16];
    const struct tk_diag_attempt *f = NULL;
    size_t fi = 0;
    for (size_t i = 0; i < in->n_attempts; i++)
        if (eq(in->attempts[i].outcome, "failed")) {
            f = &in->attempts[i];
            fi = i;
            break;
        }
    if (!strcmp(code, "decrypt_failed") || (f && eq(f->reason, "decrypt_failed"))) {
        long long kv = key_version(in->last_error);
        if (kv >= 0)
            snprintf(c, TK_DIAG_TEXT_MAX,
                     "the stored token does not decrypt under key version %lld: key/data fault, "
                     "not an upstream problem",
                     kv);
        else
            snprintf(c, TK_DIAG_TEXT_MAX,
                     "the stored token does not decrypt: key/data fault, not an upstream problem");
        snprintf(s, TK_DIAG_TEXT_MAX,
                 "check the keyring (tokend operator status) and whether this row's sealed values "
                 "were copied or restored from elsewhere (nothing was sent upstream); if they "
                 "cannot be recovered, reconnect or import fresh tokens");
        return "key_data_fault";
    }
    if (!strcmp(code, "no_refresh_token")) {
        snprintf(c, TK_DIAG_TEXT_MAX,
                 "the connection has no refresh token, so tokend cannot refresh it: reconnect "
                 "needed");
        snprintf(s, TK_DIAG_TEXT_MAX, "%s", reconnect_step);
        return "no_refresh_token";
    }
    if (f && f->refresh_token_sent) {
        /* an older attempt already spent the refresh token this one sent */
        for (size_t i = fi + 1; i < in->n_attempts; i++) {
            const struct tk_diag_attempt *o = &in->attempts[i];
            if (eq(o->outcome, "ok") && o->refresh_token_new &&
                eq(o->refresh_token_sent, f->refresh_token_sent)) {
                snprintf(c, TK_DIAG_TEXT_MAX,
                         "refresh token rejected (%s) at %s after another refresh (%s) rotated it "
                         "at %s: reconnect needed",
                         code[0] ? code : (f->reason ? f->reason : "failed"), hm(f->at, b1),
                         o->source ? o->source : "unknown", hm(o->at, b2));
                snprintf(s, TK_DIAG_TEXT_MAX,
                         "%s; the rotated token was lost outside tokend's commit (another copy of "
                         "the data, or a second client using the same app and refresh token)",
                         reconnect_step);
                return "rotated_elsewhere";
            }
        }
    }
    if (f)
        snprintf(c, TK_DIAG_TEXT_MAX, "refresh token rejected (%s) at %s: reconnect needed",
                 code[0] ? code : (f->reason ? f->reason : "failed"), hm(f->at, b1));
    else
        snprintf(c, TK_DIAG_TEXT_MAX, "the connection needs a reconnect (%s)",
                 code[0] ? code : "no reason recorded");
    snprintf(s, TK_DIAG_TEXT_MAX, "%s", reconnect_step);
    return "rejected";
}

static const char *transient(const struct tk_diag_input *in, char *c, char *s)
{
    size_t n = 0;
    while (n < in->n_attempts && eq(in->attempts[n].outcome, "error"))
        n++;
    char b1[16], b2[32], what[96];
    int64_t next = in->next_refresh_at;
    if (n == 0) {
        snprintf(c, TK_DIAG_TEXT_MAX, "the last refresh failed transiently (%s); next attempt %s",
                 in->last_error_code ? in->last_error_code : "unknown", hm(next, b1));
    } else {
        const struct tk_diag_attempt *a = &in->attempts[0];
        if (!next) next = a->next_attempt_at;
        const char *r = a->reason ? a->reason : "";
        if (!strcmp(r, "timeout"))
            snprintf(what, sizeof what, "upstream timed out");
        else if (a->http_status == 429 || !strcmp(r, "rate_limited"))
            snprintf(what, sizeof what, "upstream rate-limited the refresh (429)");
        else if (is_html(a->content_type) && a->http_status)
            snprintf(what, sizeof what, "upstream answered HTML %ld", a->http_status);
        else if (a->http_status)
            snprintf(what, sizeof what, "upstream answered HTTP %ld (%s)", a->http_status,
                     r[0] ? r : "error");
        else
            snprintf(what, sizeof what, "upstream could not be reached (%s)", r[0] ? r : "error");
        snprintf(c, TK_DIAG_TEXT_MAX, "%s %s; next attempt %s", what, times(n, b2), hm(next, b1));
    }
    snprintf(s, TK_DIAG_TEXT_MAX,
             "nothing to do while it is brief: tokend retries with backoff; if it lasts, check "
             "the provider's status and the app's token URL, and watch attempts with tokend "
             "events -f --subject ID");
    return "transient";
}

const char *tk_diagnose(const struct tk_diag_input *in, char c[TK_DIAG_TEXT_MAX],
                        char s[TK_DIAG_TEXT_MAX])
{
    const char *st = in->status ? in->status : "";
    char b1[16], b2[16];
    c[0] = s[0] = '\0';
    if (!strcmp(st, "needs_reconnect")) return permanent(in, c, s);
    if (!strcmp(st, "refresh_error")) return transient(in, c, s);
    if (!strcmp(st, "disabled")) {
        snprintf(c, TK_DIAG_TEXT_MAX, "the connection is disabled: no refresh, no token");
        snprintf(s, TK_DIAG_TEXT_MAX, "enable it again or delete it");
        return "disabled";
    }
    if (!in->has_refresh_token) {
        snprintf(c, TK_DIAG_TEXT_MAX,
                 "%s at %s and there is no refresh token: it cannot be refreshed",
                 in->expires_at <= in->now ? "the access token expired"
                                           : "ok until the access token expires",
                 hm(in->expires_at, b1));
        snprintf(s, TK_DIAG_TEXT_MAX, "%s before then", reconnect_step);
        return "no_refresh_token";
    }
    if (in->expires_at > 0 && in->expires_at <= in->now) {
        snprintf(c, TK_DIAG_TEXT_MAX,
                 "the access token expired at %s; the next get-token call or scheduled refresh "
                 "(%s) refreshes it",
                 hm(in->expires_at, b1), hm(in->next_refresh_at, b2));
        snprintf(s, TK_DIAG_TEXT_MAX,
                 "ask for a token (GET /v1/connections/ID/token) or refresh now (POST "
                 "/v1/connections/ID/refresh) and run the diagnosis again");
        return "expired";
    }
    if (in->n_attempts == 0 && in->last_refresh_at <= 0) {
        snprintf(c, TK_DIAG_TEXT_MAX,
                 "never refreshed yet: token valid until %s, next refresh at %s",
                 hm(in->expires_at, b1), hm(in->next_refresh_at, b2));
        snprintf(s, TK_DIAG_TEXT_MAX, "nothing to do");
        return "never_refreshed";
    }
    snprintf(c, TK_DIAG_TEXT_MAX, "ok: token valid until %s, next refresh at %s",
             hm(in->expires_at, b1), hm(in->next_refresh_at, b2));
    snprintf(s, TK_DIAG_TEXT_MAX, "nothing to do");
    return "ok";
}
