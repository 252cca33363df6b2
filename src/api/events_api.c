/* events_api.c: GET /v1/events. */
#include "api.h"

#include "../events/events.h"

#include <stdio.h>
#include <string.h>

/* A filter value: 1 to 64 of [A-Za-z0-9_.:-], which covers every kind,
 * source, action, outcome and id tokend writes. Anything else (spaces,
 * quotes, a literal %00) cannot match and is refused rather than ignored. */
static bool text_arg(struct tk_req *r, const char *name, const char **out)
{
    const char *v = tk_req_query(r, name);
    *out = NULL;
    if (!v) return true;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        char c = v[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '.' || c == ':' || c == '-';
    }
    if (!ok) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", name,
                     "%s must be 1 to 64 of the characters A-Z a-z 0-9 _ . : -", name);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    *out = v;
    return true;
}

static bool int_arg(struct tk_req *r, const char *name, int64_t min, int64_t max, int64_t *out)
{
    const char *v = tk_req_query(r, name);
    if (!v) return true;
    if (tk_parse_int(v, min, max, out) != TK_OK) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", name,
                     "%s must be an integer from %lld to %lld", name, (long long)min,
                     (long long)max);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    return true;
}

static bool time_arg(struct tk_req *r, const char *name, int64_t *out)
{
    const char *v = tk_req_query(r, name);
    if (!v) return true;
    if (tk_time_parse(v, out) != TK_OK) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", name,
                     "%s must be an RFC 3339 time (2026-11-25T19:00:00Z) or milliseconds since "
                     "the epoch",
                     name);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    return true;
}

void tk_h_events_list(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_event_query q = {.tenant_id = p->tenant_id, .limit = 50};
    int64_t limit = 50;
    if (!text_arg(r, "kind", &q.kind) || !text_arg(r, "source", &q.source) ||
        !text_arg(r, "action", &q.action) || !text_arg(r, "outcome", &q.outcome) ||
        !text_arg(r, "subject", &q.subject) ||
        !int_arg(r, "limit", 1, TK_EVENTS_MAX_LIMIT, &limit) ||
        !int_arg(r, "cursor", 1, INT64_MAX, &q.before) ||
        !int_arg(r, "after", 0, INT64_MAX, &q.after) || !time_arg(r, "since", &q.since) ||
        !time_arg(r, "until", &q.until))
        return;
    q.follow = tk_req_query(r, "after") != NULL;
    if (q.before && q.follow) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "after",
                     "cursor (older pages) and after (newer events) cannot be combined");
        tk_reply_error(r, &e, NULL);
        return;
    }
    q.limit = (int)limit;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_buf b;
    int64_t next;
    struct tk_err e;
    tk_buf_init(&b, 256u << 20);
    tk_buf_addstr(&b, "{\"events\":");
    if (tk_events_list_text(db, &q, &b, &next, &e) != TK_OK) {
        tk_buf_free(&b);
        tk_reply_error(r, &e, NULL);
        return;
    }
    if (next)
        tk_buf_printf(&b, ",\"next_cursor\":%lld}\n", (long long)next);
    else
        tk_buf_addstr(&b, ",\"next_cursor\":null}\n");
    tk_reply_text(r, 200, "application/json", b.data, b.len);
    tk_buf_free(&b);
}
