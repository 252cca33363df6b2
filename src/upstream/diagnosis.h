/*
 * diagnosis.h: why a connection is in the state it is, in one sentence
 * (issue 18 item 8). Pure: no store, no clock; the API
 * (GET /v1/connections/{id}/diagnosis) and `tokend doctor connection`
 * gather the state and the last refresh events and call tk_diagnose.
 */
#ifndef TK_DIAGNOSIS_H
#define TK_DIAGNOSIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TK_DIAG_ATTEMPTS_MAX 10
#define TK_DIAG_TEXT_MAX 320

/* One refresh event (kind refresh) of the connection. Strings may be NULL. */
struct tk_diag_attempt {
    int64_t at;                     /* ms */
    const char *source;             /* scheduled | on_demand | reactive | manual | debug */
    const char *outcome;            /* ok | error | failed */
    const char *reason;             /* detail.reason: invalid_grant, http_503, not_json, ... */
    long http_status;               /* detail.status, 0 none */
    const char *content_type;       /* detail.content_type */
    const char *refresh_token_sent; /* detail.refresh_token_sent (a preview) */
    const char *refresh_token_new;  /* detail.refresh_token_new (a preview; ok + rotated) */
    int64_t next_attempt_at;        /* ms, detail.next_attempt_at (error), 0 none */
};

struct tk_diag_input {
    const char
        *status; /* as shown: ok | expiring_soon | refresh_error | needs_reconnect | disabled */
    const char *last_error_code, *last_error;                                      /* NULL: none */
    int64_t now, expires_at, next_refresh_at, refresh_expires_at, last_refresh_at; /* ms; 0 none */
    bool has_refresh_token;
    const struct tk_diag_attempt *attempts; /* newest first */
    size_t n_attempts;
};

/* Fill conclusion and next_step (one sentence each, times as HH:MM UTC).
 * Returns a short cause code: ok, never_refreshed, expired, no_refresh_token,
 * rotated_elsewhere, rejected, key_data_fault, transient, disabled. */
const char *tk_diagnose(const struct tk_diag_input *in, char conclusion[TK_DIAG_TEXT_MAX],
                        char next_step[TK_DIAG_TEXT_MAX]);

#endif
