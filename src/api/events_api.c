/* events_api.c: GET /v1/events. */
#include "api.h"

#include "../events/events.h"

#include <stdio.h>
#include <string.h>

/* GET /v1/events and verify first wait this long at most for the events
 * this node queued before the request (the event writer's group commit). */
#define TK_API_EVENTS_SYNC_MS 2000

/* Each parameter is given at most once: "kind=a&kind=b" is refused rather
 * than read as one of them.
 *
 * A filter value: 1 to 64 of [A-Za-z0-9_.:-], which covers every kind,
 * source, action, outcome and id tokend writes. Anything else (spaces,
 * quotes, a literal %00) cannot match and is refused rather than ignored. */
static bool text_arg(struct tk_req *r, const char *name, const char **out)
{
    if (!tk_req_query_unique(r, name)) return false; /* 400 duplicate_parameter */
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
    if (!tk_req_query_unique(r, name)) return false; /* 400 duplicate_parameter */
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
    if (!tk_req_query_unique(r, name)) return false; /* 400 duplicate_parameter */
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
    tk_events_writer_sync(TK_API_EVENTS_SYNC_MS); /* what this node posted before, too */
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

/* GET /v1/events/stream: the filters of GET /v1/events (kind, source,
 * action, outcome, subject, since, until), from the seq in Last-Event-ID
 * (a reconnecting client) or the after parameter, else from now. The
 * stream is served by the pump (events_stream.c). */
void tk_h_events_stream(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_app *app = r->app;
    struct tk_event_query q = {.tenant_id = p->tenant_id, .limit = 1};
    int64_t after = -1;
    if (!text_arg(r, "kind", &q.kind) || !text_arg(r, "source", &q.source) ||
        !text_arg(r, "action", &q.action) || !text_arg(r, "outcome", &q.outcome) ||
        !text_arg(r, "subject", &q.subject) || !int_arg(r, "after", 0, INT64_MAX, &after) ||
        !time_arg(r, "since", &q.since) || !time_arg(r, "until", &q.until))
        return;
    const char *leid = tk_req_header(r, "Last-Event-ID");
    if (leid && tk_parse_int(leid, 0, INT64_MAX, &after) != TK_OK) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "Last-Event-ID",
                     "Last-Event-ID must be the seq of an event (an integer from 0), as the "
                     "stream's id: lines give it");
        tk_reply_error(r, &e, NULL);
        return;
    }
    if (!app->evpump) {
        struct tk_err e;
        tk_err_set(&e, TK_EUNAVAIL, "starting", "the node is starting; retry in a moment");
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    if (after < 0) { /* from now: the tenant's newest seq */
        struct tk_db *db = tk_api_db(r);
        if (!db) return;
        struct tk_event_query head = {.tenant_id = p->tenant_id, .limit = 1};
        json_t *evs = NULL;
        int64_t next;
        struct tk_err e;
        if (tk_events_list(db, &head, &evs, &next, &e) != TK_OK) {
            tk_api_reply_error(r, &e, NULL);
            return;
        }
        after = json_integer_value(json_object_get(json_array_get(evs, 0), "seq"));
        json_decref(evs);
    }
    if (p->session_id[0] && !tk_evpump_admit_session(app->evpump, p->session_id)) {
        struct tk_err e;
        tk_err_set(&e, TK_EUNAVAIL, "too_many_streams",
                   "this console session already holds %d event streams (one per open events "
                   "page); close a tab with the events page, or retry later",
                   TK_STREAMS_PER_SESSION);
        tk_req_stream_refused(r);
        tk_reply_header(r, "Retry-After", "5");
        tk_reply_error(r, &e, NULL);
        return;
    }
    int per_tenant = 0;
    if (!tk_evpump_admit(app->evpump, p->tenant_id, &per_tenant)) {
        if (p->session_id[0]) tk_evpump_unadmit(app->evpump, p->session_id);
        struct tk_err e;
        tk_err_set(&e, TK_EUNAVAIL, "too_many_streams",
                   "this tenant already holds %d event streams on this node "
                   "(max_streams_per_tenant); close one, or retry later or on another node",
                   per_tenant);
        tk_req_stream_refused(r);
        tk_reply_header(r, "Retry-After", "5");
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_stream *s = tk_reply_stream(r);
    if (!s) { /* 503 too_many_streams */
        tk_evpump_unadmit(app->evpump, p->tenant_id);
        if (p->session_id[0]) tk_evpump_unadmit(app->evpump, p->session_id);
        return;
    }
    char first[96];
    int n = snprintf(first, sizeof first, "retry: 2000\n: events after seq %lld\n\n",
                     (long long)after);
    tk_stream_write(s, first, (size_t)n);
    tk_evpump_add(app->evpump, s, p, &q, after);
}

/* GET /v1/events/counts reads at most this many events (newest first). */
#define TK_API_EVENTS_COUNT_MAX 10000

/* GET /v1/events/counts: the events matching the filters of GET
 * /v1/events (kind, source, action, outcome, subject) counted by outcome in
 * `buckets` buckets of `bucket` seconds ending with the current one
 * (aligned on multiples of bucket since the epoch); any role. Bounded: the
 * newest TK_API_EVENTS_COUNT_MAX matching events at most ("complete":
 * false when the window held more). */
void tk_h_events_counts(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_event_query q = {.tenant_id = p->tenant_id, .limit = 1};
    int64_t bucket = 60, nbuckets = 60;
    if (!text_arg(r, "kind", &q.kind) || !text_arg(r, "source", &q.source) ||
        !text_arg(r, "action", &q.action) || !text_arg(r, "outcome", &q.outcome) ||
        !text_arg(r, "subject", &q.subject) || !int_arg(r, "bucket", 1, 86400, &bucket) ||
        !int_arg(r, "buckets", 1, 240, &nbuckets))
        return;
    tk_events_writer_sync(TK_API_EVENTS_SYNC_MS);
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    int64_t bms = bucket * 1000;
    int64_t start = (tk_now_ms() / bms - (nbuckets - 1)) * bms;
    json_t *buckets = NULL;
    int64_t counted = 0;
    bool complete = true;
    struct tk_err e;
    if (tk_events_counts(db, &q, start, bms, (int)nbuckets, TK_API_EVENTS_COUNT_MAX, &buckets,
                         &counted, &complete, &e) != TK_OK) {
        tk_reply_error(r, &e, NULL);
        return;
    }
    char at[32];
    tk_time_fmt(start, at, sizeof at);
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:I, s:I, s:o, s:I, s:b, s:I}", "start", at, "start_ms",
                            (json_int_t)start, "bucket", (json_int_t)bucket, "buckets", buckets,
                            "counted", (json_int_t)counted, "complete", complete, "max_events",
                            (json_int_t)TK_API_EVENTS_COUNT_MAX));
}

/* A checkpoint given back to GET /v1/events/verify: checkpoint_seq,
 * checkpoint_hash, checkpoint_at and checkpoint_mac, all or none. */
static bool checkpoint_args(struct tk_req *r, const char *tenant, struct tk_checkpoint *cp,
                            bool *given)
{
    const char *hash = tk_req_query(r, "checkpoint_hash");
    const char *mac = tk_req_query(r, "checkpoint_mac");
    memset(cp, 0, sizeof *cp);
    *given = tk_req_query(r, "checkpoint_seq") || hash || mac || tk_req_query(r, "checkpoint_at");
    if (!*given) return true;
    if (!int_arg(r, "checkpoint_seq", 0, INT64_MAX, &cp->seq) ||
        !int_arg(r, "checkpoint_at", 0, INT64_MAX, &cp->at))
        return false;
    static const char *hex = "0123456789abcdef";
    const char *bad = NULL;
    if (!hash || (strlen(hash) != 64 && strlen(hash) != 0) || strspn(hash, hex) != strlen(hash))
        bad = "checkpoint_hash";
    else if (!mac || strlen(mac) != 64 || strspn(mac, hex) != 64)
        bad = "checkpoint_mac";
    else if (!tk_req_query(r, "checkpoint_seq") || !tk_req_query(r, "checkpoint_at"))
        bad = !tk_req_query(r, "checkpoint_seq") ? "checkpoint_seq" : "checkpoint_at";
    if (bad) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", bad,
                     "a checkpoint is checkpoint_seq, checkpoint_hash (64 hex digits, or empty "
                     "for seq 0), checkpoint_at and checkpoint_mac (64 hex digits), as "
                     "'tokend events verify --json' prints them; %s is missing or malformed",
                     bad);
        tk_reply_error(r, &e, NULL);
        return false;
    }
    snprintf(cp->tenant_id, sizeof cp->tenant_id, "%s", tenant);
    snprintf(cp->hash, sizeof cp->hash, "%s", hash);
    snprintf(cp->mac, sizeof cp->mac, "%s", mac);
    return true;
}

static json_t *jint_or_null(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

/* GET /v1/events/verify: recompute the caller's tenant's chain; any role. */
void tk_h_events_verify(struct tk_req *r)
{
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_checkpoint given;
    bool has_given = false;
    if (!checkpoint_args(r, p->tenant_id, &given, &has_given)) return;
    tk_events_writer_sync(TK_API_EVENTS_SYNC_MS);
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_chain_status st;
    struct tk_err e;
    tk_rc rc = tk_events_verify_chain(db, p->tenant_id, &st, &e);
    if (rc != TK_OK && rc != TK_ECONFLICT) {
        tk_reply_error(r, &e, NULL);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "valid", json_boolean(st.valid));
    json_object_set_new(o, "tenant_id", json_string(st.tenant_id));
    json_object_set_new(o, "checked", json_integer(st.checked));
    json_object_set_new(o, "first_seq", jint_or_null(st.first_seq));
    json_object_set_new(o, "head_seq", json_integer(st.head_seq));
    json_object_set_new(o, "head_hash", json_string(st.head_hash));
    json_object_set_new(o, "base_seq", json_integer(st.base_seq));
    json_object_set_new(o, "base_hash", json_string(st.base_hash));
    json_object_set_new(o, "macs_checked", json_boolean(st.macs_checked));
    json_object_set_new(o, "keyed", json_integer(st.keyed));
    json_object_set_new(o, "unkeyed", json_integer(st.unkeyed));
    json_object_set_new(o, "attested_seq", json_integer(st.attested_seq));
    json_object_set_new(o, "broken_seq", jint_or_null(st.broken_seq));
    json_object_set_new(o, "error", st.valid ? json_null() : json_string(st.error));
    json_object_set_new(
        o, "canonical",
        json_pack("{s:s, s:s, s:s, s:s}", "hash",
                  "hash(n) = hex(SHA-256(hash(n-1) + \"\\n\" + JSON(n))); hash(base_seq) = "
                  "base_hash (\"\" when nothing was pruned)",
                  "json",
                  "the event's id, tenant_id, seq, at (at_ms: ms since the epoch), trace_id, "
                  "kind, source, action, outcome, subject_type, subject_id, message, detail "
                  "(the stored text: compact JSON with sorted keys, or null), latency_us and "
                  "node, as one compact JSON object with sorted keys, UTF-8, absent values "
                  "null (GET /v1/events shows every one, and prev_hash)",
                  "mac",
                  "hex(HMAC-SHA256(K, \"tokend-event-chain-v1\\n\" + tenant_id + \"\\n\" + seq "
                  "+ \"\\n\" + hash)), K the keyring's HMAC key; null for events written while "
                  "sealed (keyring, node and authentication events only)",
                  "checkpoint",
                  "mac = hex(HMAC-SHA256(K, \"tokend-event-checkpoint-v1\\n\" + tenant_id + "
                  "\"\\n\" + seq + \"\\n\" + hash + \"\\n\" + at)); give it back as "
                  "checkpoint_seq, checkpoint_hash, checkpoint_at, checkpoint_mac"));
    if (st.valid) {
        struct tk_checkpoint cp;
        tk_events_checkpoint(&st, &cp);
        json_object_set_new(o, "checkpoint",
                            json_pack("{s:s, s:I, s:s, s:I, s:o}", "tenant_id", cp.tenant_id,
                                      "seq", (json_int_t)cp.seq, "hash", cp.hash, "at",
                                      (json_int_t)cp.at, "mac",
                                      cp.mac[0] ? json_string(cp.mac) : json_null()));
    } else {
        json_object_set_new(o, "checkpoint", json_null());
    }
    if (has_given) {
        tk_err_clear(&e);
        rc = tk_events_checkpoint_check(db, &given, &e);
        if (rc != TK_OK && rc != TK_ECONFLICT) {
            json_decref(o);
            tk_reply_error(r, &e, NULL);
            return;
        }
        json_object_set_new(o, "checkpoint_check",
                            json_pack("{s:b, s:I, s:s, s:o}", "ok", rc == TK_OK, "seq",
                                      (json_int_t)given.seq, "hash", given.hash, "error",
                                      rc == TK_OK ? json_null() : json_string(e.msg)));
        if (rc != TK_OK) json_object_set_new(o, "valid", json_false());
    }
    tk_reply_json(r, 200, o);
}
