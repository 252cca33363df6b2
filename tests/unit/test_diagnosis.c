/* test_diagnosis.c: the pure conclusion of tk_diagnose, one crafted input
 * per cause. */
#include "../../src/upstream/diagnosis.h"
#include "unit.h"

#include <string.h>

/* 2026-12-03 10:00:00 UTC */
#define T0 1796292000000LL
#define MIN 60000LL

static const char *run(const struct tk_diag_input *in, char *c, char *s)
{
    const char *cause = tk_diagnose(in, c, s);
    CHECK(strlen(c) > 0 && strlen(c) < TK_DIAG_TEXT_MAX);
    CHECK(strlen(s) > 0);
    return cause;
}

void test_diag_ok(void)
{
    char c[TK_DIAG_TEXT_MAX], s[TK_DIAG_TEXT_MAX];
    struct tk_diag_attempt a[] = {{.at = T0 - 5 * MIN, .outcome = "ok", .source = "scheduled"}};
    struct tk_diag_input in = {.status = "ok",
                               .now = T0,
                               .expires_at = T0 + 60 * MIN,
                               .next_refresh_at = T0 + 55 * MIN,
                               .last_refresh_at = T0 - 5 * MIN,
                               .has_refresh_token = true,
                               .attempts = a,
                               .n_attempts = 1};
    CHECK_EQ_STR(run(&in, c, s), "ok");
    CHECK_EQ_STR(c, "ok: token valid until 11:00, next refresh at 10:55");
    /* expiring_soon is ok too */
    in.status = "expiring_soon";
    CHECK_EQ_STR(run(&in, c, s), "ok");
    /* never refreshed */
    in.n_attempts = 0;
    in.last_refresh_at = 0;
    CHECK_EQ_STR(run(&in, c, s), "never_refreshed");
    CHECK(strncmp(c, "never refreshed yet", 19) == 0);
    /* expired and not yet refreshed */
    in.expires_at = T0 - MIN;
    CHECK_EQ_STR(run(&in, c, s), "expired");
    CHECK(strstr(c, "expired at 09:59") != NULL);
    /* no refresh token */
    in.has_refresh_token = false;
    CHECK_EQ_STR(run(&in, c, s), "no_refresh_token");
    /* disabled */
    in.status = "disabled";
    CHECK_EQ_STR(run(&in, c, s), "disabled");
}

void test_diag_reconnect(void)
{
    char c[TK_DIAG_TEXT_MAX], s[TK_DIAG_TEXT_MAX];
    /* another refresh spent the same refresh token at 10:01, rotated it; ours fails at 10:02 */
    struct tk_diag_attempt a[] = {
        {.at = T0 + 2 * MIN,
         .outcome = "failed",
         .source = "manual",
         .reason = "invalid_grant",
         .http_status = 400,
         .refresh_token_sent = "rt-A...(24 chars)"},
        {.at = T0 + 1 * MIN,
         .outcome = "ok",
         .source = "scheduled",
         .refresh_token_sent = "rt-A...(24 chars)",
         .refresh_token_new = "rt-B...(24 chars)"},
    };
    struct tk_diag_input in = {.status = "needs_reconnect",
                               .last_error_code = "invalid_grant",
                               .now = T0 + 3 * MIN,
                               .expires_at = T0 + 50 * MIN,
                               .has_refresh_token = true,
                               .attempts = a,
                               .n_attempts = 2};
    CHECK_EQ_STR(run(&in, c, s), "rotated_elsewhere");
    CHECK_EQ_STR(c, "refresh token rejected (invalid_grant) at 10:02 after another refresh "
                    "(scheduled) rotated it at 10:01: reconnect needed");
    CHECK(strstr(s, "reconnect") == s);
    /* different tokens: a plain rejection */
    a[1].refresh_token_sent = "rt-Z...(24 chars)";
    CHECK_EQ_STR(run(&in, c, s), "rejected");
    CHECK_EQ_STR(c, "refresh token rejected (invalid_grant) at 10:02: reconnect needed");
    /* no events at all (pruned) */
    in.n_attempts = 0;
    CHECK_EQ_STR(run(&in, c, s), "rejected");
    CHECK(strstr(c, "invalid_grant") != NULL);
    /* no refresh token */
    in.last_error_code = "no_refresh_token";
    CHECK_EQ_STR(run(&in, c, s), "no_refresh_token");
    /* nothing recorded at all */
    in.last_error_code = NULL;
    CHECK_EQ_STR(run(&in, c, s), "rejected");
}

void test_diag_key_fault(void)
{
    char c[TK_DIAG_TEXT_MAX], s[TK_DIAG_TEXT_MAX];
    struct tk_diag_attempt a[] = {
        {.at = T0, .outcome = "failed", .source = "on_demand", .reason = "decrypt_failed"}};
    struct tk_diag_input in = {
        .status = "needs_reconnect",
        .last_error_code = "decrypt_failed",
        .last_error = "a stored value does not decrypt (connections/refresh_token, key version 3): "
                      "a key/data fault, not an upstream problem; nothing was sent upstream",
        .now = T0,
        .expires_at = T0 + MIN,
        .has_refresh_token = true,
        .attempts = a,
        .n_attempts = 1};
    CHECK_EQ_STR(run(&in, c, s), "key_data_fault");
    CHECK_EQ_STR(c, "the stored token does not decrypt under key version 3: key/data fault, not an "
                    "upstream problem");
    /* no key version in the message (hostile / truncated) */
    in.last_error = "key version x";
    CHECK_EQ_STR(run(&in, c, s), "key_data_fault");
    CHECK(strstr(c, "version") == NULL);
    in.last_error = NULL;
    in.last_error_code = NULL; /* only the event says so */
    CHECK_EQ_STR(run(&in, c, s), "key_data_fault");
}

void test_diag_transient(void)
{
    char c[TK_DIAG_TEXT_MAX], s[TK_DIAG_TEXT_MAX];
    struct tk_diag_attempt a[7];
    for (int i = 0; i < 7; i++)
        a[i] = (struct tk_diag_attempt){.at = T0 - i * MIN,
                                        .outcome = i < 5 ? "error" : "ok",
                                        .reason = "http_503",
                                        .http_status = 503,
                                        .content_type = "text/html; charset=utf-8",
                                        .next_attempt_at = T0 + 7 * MIN};
    struct tk_diag_input in = {.status = "refresh_error",
                               .last_error_code = "http_503",
                               .now = T0,
                               .expires_at = T0 + 10 * MIN,
                               .next_refresh_at = T0 + 7 * MIN,
                               .has_refresh_token = true,
                               .attempts = a,
                               .n_attempts = 7};
    CHECK_EQ_STR(run(&in, c, s), "transient");
    CHECK_EQ_STR(c, "upstream answered HTML 503 five times; next attempt 10:07");
    /* JSON 500 twice */
    for (int i = 0; i < 2; i++) {
        a[i].http_status = 500;
        a[i].reason = "http_500";
        a[i].content_type = "application/json";
    }
    in.n_attempts = 2;
    CHECK_EQ_STR(run(&in, c, s), "transient");
    CHECK_EQ_STR(c, "upstream answered HTTP 500 (http_500) twice; next attempt 10:07");
    /* a timeout once; next_refresh_at unknown: the event's */
    a[0] = (struct tk_diag_attempt){
        .at = T0, .outcome = "error", .reason = "timeout", .next_attempt_at = T0 + 3 * MIN};
    in.n_attempts = 1;
    in.next_refresh_at = 0;
    run(&in, c, s);
    CHECK_EQ_STR(c, "upstream timed out once; next attempt 10:03");
    /* 429 */
    a[0].reason = "rate_limited";
    a[0].http_status = 429;
    run(&in, c, s);
    CHECK(strstr(c, "429") != NULL);
    /* no events */
    in.n_attempts = 0;
    CHECK_EQ_STR(run(&in, c, s), "transient");
    /* hostile: everything NULL / zero */
    struct tk_diag_input z = {0};
    CHECK_EQ_STR(run(&z, c, s), "no_refresh_token");
    z.status = "bogus";
    z.has_refresh_token = true;
    run(&z, c, s);
}
