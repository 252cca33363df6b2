/* report.c: a client's report (clients.h): its state, tokens, agents and
 * the last hour's validation events, and one sentence that says why its
 * tokens fail (field report 004's debug script as one request). */
#include "clients.h"

#include "../events/events.h"

#include <stdio.h>
#include <string.h>

#define REPORT_WINDOW_MS (3600 * 1000LL)

/* "09:12:03" of an RFC 3339 time, for sentences. */
static const char *clock_of(const char *rfc3339, char out[16])
{
    const char *t = rfc3339 ? strchr(rfc3339, 'T') : NULL;
    snprintf(out, 16, "%.8s", t ? t + 1 : "?");
    return out;
}

static const char *advice(const char *reason)
{
    if (!strcmp(reason, "malformed"))
        return "the token sent is damaged (truncated, a character changed, another kind): "
               "compare it with the issued token";
    if (!strcmp(reason, "unknown"))
        return "the token sent was never issued here (another installation's or tenant's, or "
               "deleted)";
    if (!strcmp(reason, "revoked"))
        return "a revoked token (or a rotated one past its grace) is still in use: deploy its "
               "successor";
    if (!strcmp(reason, "expired")) return "an expired token is still in use: issue a new one";
    if (!strcmp(reason, "missing")) return "requests come without a token";
    if (!strcmp(reason, "unknown_agent"))
        return "heartbeats name an agent that is not this client's: register it first";
    return "see the events of kind validate";
}

/* The name of the operator token that made the client's newest status change. */
static void changed_by(struct tk_db *db, const char *tenant_id, const char *client_id,
                       char *who, size_t n, char *at, size_t atn)
{
    snprintf(who, n, "an unknown operator");
    snprintf(at, atn, "an unknown time");
    struct tk_event_query q = {.tenant_id = tenant_id, .kind = "client", .action = "status_change",
                               .subject = client_id, .limit = 1};
    json_t *a = NULL;
    int64_t next = 0;
    struct tk_err e;
    if (tk_events_list(db, &q, &a, &next, &e) != TK_OK) return;
    json_t *ev = json_array_get(a, 0);
    const char *when = json_string_value(json_object_get(ev, "at"));
    char c[16];
    if (when) snprintf(at, atn, "%s", clock_of(when, c));
    const char *op = json_string_value(json_object_get(json_object_get(ev, "detail"), "operator_token"));
    json_t *t = NULL;
    if (op && tk_uuid_valid(op) && tk_optoken_get(db, tenant_id, op, &t, &e) == TK_OK)
        snprintf(who, n, "operator '%.64s'", json_string_value(json_object_get(t, "name")));
    json_decref(t);
    json_decref(a);
}

/* The last hour's validate events of one client, from tk_events_scan:
 * failures by reason, warnings. Events of other clients are skipped by a
 * substring test before any JSON is parsed (a busy tenant has many). */
struct report_scan {
    const char *client_id;
    json_t *by_reason, *warnings;
    int64_t total;
};

static void report_row(void *arg, int64_t at_ms, const char *outcome, const char *detail)
{
    struct report_scan *rs = arg;
    if (!strstr(detail, rs->client_id)) return;
    json_t *d = json_loads(detail, 0, NULL);
    const char *cid = json_string_value(json_object_get(d, "client_id"));
    if (!cid || strcmp(cid, rs->client_id) != 0) {
        json_decref(d);
        return;
    }
    json_int_t count = json_is_integer(json_object_get(d, "count"))
                           ? json_integer_value(json_object_get(d, "count"))
                           : 1;
    if (outcome && !strcmp(outcome, "denied")) {
        const char *reason = json_string_value(json_object_get(d, "reason"));
        if (reason) {
            json_t *n = json_object_get(rs->by_reason, reason);
            json_object_set_new(rs->by_reason, reason,
                                json_integer((n ? json_integer_value(n) : 0) + count));
            rs->total += count;
        }
    } else if (outcome && !strcmp(outcome, "ok") &&
               json_is_array(json_object_get(d, "warnings"))) {
        /* newest first: the last one seen is the earliest */
        char at[32];
        tk_time_fmt(at_ms, at, sizeof at);
        json_array_append_new(rs->warnings,
                              json_pack("{s:O, s:O?, s:s, s:I}", "warnings",
                                        json_object_get(d, "warnings"), "preview",
                                        json_object_get(d, "preview"), "since", at, "count",
                                        count));
    }
    json_decref(d);
}

tk_rc tk_client_report(struct tk_db *db, const char *tenant_id, const char *client_id,
                       int64_t now_ms, json_t **out, struct tk_err *e)
{
    json_t *client = NULL, *tokens = NULL, *agents = NULL;
    char next[TK_UUID_LEN + 1];
    tk_rc rc = tk_client_get(db, tenant_id, client_id, &client, e);
    if (rc == TK_OK) rc = tk_client_token_list(db, tenant_id, client_id, &tokens, e);
    if (rc == TK_OK)
        rc = tk_agent_list(db, tenant_id, client_id, NULL, NULL, 1000, &agents, next, e);
    struct tk_event_query q = {.tenant_id = tenant_id, .kind = "validate",
                               .since = now_ms - REPORT_WINDOW_MS, .limit = 1000};
    struct report_scan rs = {.client_id = client_id,
                             .by_reason = json_object(),
                             .warnings = json_array()};
    if (rc == TK_OK) rc = tk_events_scan(db, &q, report_row, &rs, e);
    if (rc != TK_OK) {
        json_decref(client);
        json_decref(tokens);
        json_decref(agents);
        json_decref(rs.by_reason);
        json_decref(rs.warnings);
        return rc;
    }
    json_t *by_reason = rs.by_reason, *warnings = rs.warnings;
    int64_t total = rs.total;
    char since[32];
    tk_time_fmt(now_ms - REPORT_WINDOW_MS, since, sizeof since);
    size_t i;
    json_t *ev;

    /* the conclusion: the first cause that explains failures */
    char sentence[512], at[16], who[96];
    const char *name = json_string_value(json_object_get(client, "name"));
    const char *status = json_string_value(json_object_get(client, "status"));
    size_t usable = 0, revoked = 0, expired = 0;
    json_array_foreach(tokens, i, ev)
    {
        const char *st = json_string_value(json_object_get(ev, "status"));
        if (!strcmp(st, "active") || !strcmp(st, "rotating")) usable++;
        else if (!strcmp(st, "revoked")) revoked++;
        else expired++;
    }
    size_t stale = 0;
    json_array_foreach(agents, i, ev)
    {
        if (!strcmp(json_string_value(json_object_get(ev, "status")), "stale")) stale++;
    }
    const char *top = NULL;
    json_int_t top_n = 0;
    const char *k;
    json_object_foreach(by_reason, k, ev)
    {
        if (json_integer_value(ev) > top_n) {
            top = k;
            top_n = json_integer_value(ev);
        }
    }
    if (!strcmp(status, "disabled") || !strcmp(status, "suspended")) {
        bool dis = !strcmp(status, "disabled");
        changed_by(db, tenant_id, client_id, who, sizeof who, at, sizeof at);
        snprintf(sentence, sizeof sentence,
                 "client '%.128s' was %s at %s by %s: every token of it fails with %s", name,
                 status, at, who, dis ? "client_inactive" : "client_suspended");
    } else if (usable == 0) {
        snprintf(sentence, sizeof sentence,
                 "client '%.128s' has no usable token (%zu revoked, %zu expired): issue one "
                 "with POST /v1/clients/%s/tokens",
                 name, revoked, expired, client_id);
    } else if (top) {
        snprintf(sentence, sizeof sentence,
                 "%lld validation failure(s) of client '%.128s' in the last hour, most of them "
                 "%s (%lld): %s",
                 (long long)total, name, top, (long long)top_n, advice(top));
    } else if (json_array_size(warnings) > 0) {
        json_t *w = json_array_get(warnings, json_array_size(warnings) - 1);
        json_t *codes = json_object_get(w, "warnings");
        char list[160] = "";
        size_t j;
        json_t *c;
        json_array_foreach(codes, j, c)
        {
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, "%s%s", j ? ", " : "", json_string_value(c));
        }
        char t[16];
        const char *what = strstr(list, "trailing_newline") || strstr(list, "trailing_crlf")
                               ? "with a trailing newline"
                           : strstr(list, "quotes") ? "in quotes"
                                                    : "with whitespace around it";
        snprintf(sentence, sizeof sentence,
                 "the agent sends the token %s: strip it (validated with a warning since %s: %s)",
                 what, clock_of(json_string_value(json_object_get(w, "since")), t), list);
    } else if (stale > 0) {
        snprintf(sentence, sizeof sentence,
                 "client '%.128s' is fine, but %zu of its %zu agent(s) sent no heartbeat in "
                 "time (stale)",
                 name, stale, json_array_size(agents));
    } else {
        snprintf(sentence, sizeof sentence,
                 "client '%.128s' is active with %zu usable token(s); no validation failure in "
                 "the last hour",
                 name, usable);
    }
    *out = json_pack("{s:o, s:o, s:o, s:{s:s, s:I, s:o}, s:o, s:s}", "client", client, "tokens",
                     tokens, "agents", agents, "failures", "since", since, "total",
                     (json_int_t)total, "by_reason", by_reason, "warnings", warnings,
                     "conclusion", sentence);
    return TK_OK;
}
