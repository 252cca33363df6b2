/* events.c: see events.h. */
#include "events.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char node_name[64] = "tokend";

void tk_events_set_node(const char *node)
{
    snprintf(node_name, sizeof node_name, "%s", node);
}

/* The hashed form of an event: every column but the hash, in a fixed order,
 * as compact JSON with sorted keys, after the previous hash. */
static void event_hash(const char *prev, json_t *o, char out[65])
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    struct tk_buf b;
    unsigned char d[32];
    tk_buf_init(&b, SIZE_MAX / 2);
    tk_buf_addstr(&b, prev);
    tk_buf_add(&b, "\n", 1);
    if (s) tk_buf_addstr(&b, s);
    SHA256((const unsigned char *)b.data, b.len, d);
    tk_buf_free(&b);
    free(s);
    tk_hex(d, 32, out);
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *hashed_object(const char *id, const char *tenant, int64_t seq, int64_t at,
                             const char *trace, const char *kind, const char *source,
                             const char *action, const char *outcome, const char *stype,
                             const char *sid, const char *msg, const char *detail,
                             int64_t latency, const char *node)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", jstr(id));
    json_object_set_new(o, "tenant_id", jstr(tenant));
    json_object_set_new(o, "seq", json_integer(seq));
    json_object_set_new(o, "at", json_integer(at));
    json_object_set_new(o, "trace_id", jstr(trace));
    json_object_set_new(o, "kind", jstr(kind));
    json_object_set_new(o, "source", jstr(source));
    json_object_set_new(o, "action", jstr(action));
    json_object_set_new(o, "outcome", jstr(outcome));
    json_object_set_new(o, "subject_type", jstr(stype));
    json_object_set_new(o, "subject_id", jstr(sid));
    json_object_set_new(o, "message", jstr(msg));
    json_object_set_new(o, "detail", jstr(detail));
    json_object_set_new(o, "latency_us", latency >= 0 ? json_integer(latency) : json_null());
    json_object_set_new(o, "node", jstr(node));
    return o;
}

tk_rc tk_event_emit_in(struct tk_db *db, const struct tk_event *ev, struct tk_err *e)
{
    if (!tk_db_in_tx(db))
        return tk_err_set(e, TK_EINTERNAL, "not_in_transaction",
                          "tk_event_emit_in needs the caller's open transaction");
    char id[TK_UUID_LEN + 1], trace[TK_UUID_LEN + 1], hash[65];
    tk_uuid7(id);
    const char *tr = ev->trace_id;
    if (!tr || !*tr) {
        tk_uuid7(trace);
        tr = trace;
    }
    char *detail = ev->detail ? json_dumps(ev->detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int64_t at = tk_now_ms();
    int64_t lat = ev->latency_us;
    struct tk_rows *r = NULL;
    /* Takes the tenant row's lock until commit: the chain stays a chain. */
    tk_rc rc = tk_db_exec(db,
                          "UPDATE tenants SET event_seq = event_seq + 1 WHERE id = ? "
                          "RETURNING event_seq, event_head",
                          TK_ARGS(TK_TEXT(ev->tenant_id)), &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "unknown_tenant", "tenant_id",
                          "event for unknown tenant %s", ev->tenant_id);
    if (rc != TK_OK) goto out;
    int64_t seq = tk_rows_int(r, 0, 0);
    const char *prev = tk_rows_text(r, 0, 1);
    json_t *o = hashed_object(id, ev->tenant_id, seq, at, tr, ev->kind, ev->source, ev->action,
                              ev->outcome, ev->subject_type, ev->subject_id, ev->message, detail,
                              lat, node_name);
    event_hash(prev, o, hash);
    json_decref(o);
    rc = tk_db_exec(db,
                    "INSERT INTO events (id, tenant_id, seq, at, trace_id, kind, source, action, "
                    "outcome, subject_type, subject_id, message, detail, latency_us, node, "
                    "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    TK_ARGS(TK_TEXT(id), TK_TEXT(ev->tenant_id), TK_INT(seq), TK_INT(at),
                            TK_TEXT(tr), TK_TEXT(ev->kind), TK_TEXT(ev->source),
                            TK_TEXT(ev->action), TK_TEXT(ev->outcome), TK_TEXT(ev->subject_type),
                            TK_TEXT(ev->subject_id), TK_TEXT(ev->message), TK_TEXT(detail),
                            lat >= 0 ? TK_INT(lat) : TK_NULLV, TK_TEXT(node_name), TK_TEXT(prev),
                            TK_TEXT(hash)),
                    NULL, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "UPDATE tenants SET event_head = ? WHERE id = ?",
                        TK_ARGS(TK_TEXT(hash), TK_TEXT(ev->tenant_id)), NULL, e);
out:
    tk_rows_free(r);
    free(detail);
    return rc;
}

tk_rc tk_event_emit(struct tk_db *db, const struct tk_event *ev, struct tk_err *e)
{
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_event_emit_in(db, ev, e);
    if (rc == TK_OK)
        rc = tk_db_commit(db, e);
    else
        tk_db_rollback(db);
    return rc;
}

#define EVENT_COLS                                                                                \
    "id, tenant_id, seq, at, trace_id, kind, source, action, outcome, subject_type, "             \
    "subject_id, message, detail, latency_us, node, prev_hash, hash"

/* One event as JSON text. detail is stored as JSON written by jansson, so
 * it goes in as it is. */
static void row_text(const struct tk_rows *r, int i, struct tk_buf *b)
{
    static const struct {
        const char *name;
        int col;
    } texts[] = {{"trace_id", 4},     {"kind", 5},       {"source", 6},
                 {"action", 7},       {"outcome", 8},    {"subject_type", 9},
                 {"subject_id", 10},  {"message", 11}};
    char at[32];
    tk_buf_addstr(b, "{\"id\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 0));
    tk_buf_printf(b, ",\"seq\":%lld,\"at\":", (long long)tk_rows_int(r, i, 2));
    tk_time_fmt(tk_rows_int(r, i, 3), at, sizeof at);
    tk_buf_json_str(b, at);
    for (size_t k = 0; k < TK_NELEM(texts); k++) {
        tk_buf_printf(b, ",\"%s\":", texts[k].name);
        tk_buf_json_str(b, tk_rows_text(r, i, texts[k].col));
    }
    const char *d = tk_rows_text(r, i, 12);
    tk_buf_addstr(b, ",\"detail\":");
    tk_buf_addstr(b, d && *d ? d : "null");
    if (tk_rows_null(r, i, 13))
        tk_buf_addstr(b, ",\"latency_us\":null");
    else
        tk_buf_printf(b, ",\"latency_us\":%lld", (long long)tk_rows_int(r, i, 13));
    tk_buf_addstr(b, ",\"node\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 14));
    tk_buf_addstr(b, ",\"hash\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 16));
    tk_buf_add(b, "}", 1);
}

tk_rc tk_events_list_text(struct tk_db *db, const struct tk_event_query *q, struct tk_buf *out,
                          int64_t *next, struct tk_err *e)
{
    char sql[1024];
    struct tk_val args[12];
    int n = 0;
    size_t len = (size_t)snprintf(sql, sizeof sql, "SELECT " EVENT_COLS " FROM events WHERE tenant_id = ?");
    args[n++] = TK_TEXT(q->tenant_id);
#define FILTER(cond, val)                                                                         \
    do {                                                                                          \
        len += (size_t)snprintf(sql + len, sizeof sql - len, " AND " cond);                        \
        args[n++] = (val);                                                                        \
    } while (0)
    if (q->kind) FILTER("kind = ?", TK_TEXT(q->kind));
    if (q->source) FILTER("source = ?", TK_TEXT(q->source));
    if (q->action) FILTER("action = ?", TK_TEXT(q->action));
    if (q->outcome) FILTER("outcome = ?", TK_TEXT(q->outcome));
    if (q->subject) FILTER("subject_id = ?", TK_TEXT(q->subject));
    if (q->since) FILTER("at >= ?", TK_INT(q->since));
    if (q->until) FILTER("at < ?", TK_INT(q->until));
    if (q->before) FILTER("seq < ?", TK_INT(q->before));
    if (q->follow) FILTER("seq > ?", TK_INT(q->after));
#undef FILTER
    int limit = q->limit < 1 ? 1 : q->limit > TK_EVENTS_MAX_LIMIT ? TK_EVENTS_MAX_LIMIT : q->limit;
    snprintf(sql + len, sizeof sql - len, " ORDER BY seq %s LIMIT ?", q->follow ? "ASC" : "DESC");
    args[n++] = TK_INT(limit + 1);
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, sql, args, n, &r, e);
    if (rc != TK_OK) return rc;
    int count = tk_rows_count(r);
    tk_buf_add(out, "[", 1);
    for (int i = 0; i < count && i < limit; i++) {
        if (i) tk_buf_add(out, ",", 1);
        row_text(r, i, out);
    }
    tk_buf_add(out, "]", 1);
    *next = count > limit ? tk_rows_int(r, limit - 1, 2) : 0;
    tk_rows_free(r);
    return TK_OK;
}

tk_rc tk_events_list(struct tk_db *db, const struct tk_event_query *q, json_t **out,
                     int64_t *next, struct tk_err *e)
{
    struct tk_buf b;
    tk_buf_init(&b, 256u << 20);
    tk_rc rc = tk_events_list_text(db, q, &b, next, e);
    if (rc == TK_OK) {
        json_error_t je;
        *out = json_loadb(b.data, b.len, 0, &je);
        if (!*out)
            rc = tk_err_set(e, TK_EINTERNAL, "internal", "event JSON does not parse: %s", je.text);
    }
    tk_buf_free(&b);
    return rc;
}

tk_rc tk_events_verify(struct tk_db *db, const char *tenant_id, int64_t *checked,
                       struct tk_err *e)
{
    char prev[65] = "";
    int64_t after = 0, expect = 1;
    *checked = 0;
    for (;;) {
        struct tk_rows *r;
        tk_rc rc = tk_db_exec(db, "SELECT " EVENT_COLS " FROM events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT 500",
                              TK_ARGS(TK_TEXT(tenant_id), TK_INT(after)), &r, e);
        if (rc != TK_OK) return rc;
        int count = tk_rows_count(r);
        for (int i = 0; i < count; i++) {
            int64_t seq = tk_rows_int(r, i, 2);
            char h[65];
            json_t *o = hashed_object(
                tk_rows_text(r, i, 0), tk_rows_text(r, i, 1), seq, tk_rows_int(r, i, 3),
                tk_rows_text(r, i, 4), tk_rows_text(r, i, 5), tk_rows_text(r, i, 6),
                tk_rows_text(r, i, 7), tk_rows_text(r, i, 8), tk_rows_text(r, i, 9),
                tk_rows_text(r, i, 10), tk_rows_text(r, i, 11), tk_rows_text(r, i, 12),
                tk_rows_null(r, i, 13) ? -1 : tk_rows_int(r, i, 13), tk_rows_text(r, i, 14));
            event_hash(prev, o, h);
            json_decref(o);
            const char *stored_prev = tk_rows_text(r, i, 15), *stored = tk_rows_text(r, i, 16);
            if (seq != expect || strcmp(stored_prev, prev) != 0 || strcmp(stored, h) != 0) {
                tk_rows_free(r);
                return tk_err_set(e, TK_ECONFLICT, "chain_broken",
                                  "the event chain breaks at seq %lld (expected seq %lld): an "
                                  "event was removed or edited",
                                  (long long)seq, (long long)expect);
            }
            snprintf(prev, sizeof prev, "%s", h);
            after = seq;
            expect++;
            (*checked)++;
        }
        tk_rows_free(r);
        if (count < 500) break;
    }
    /* The tenant row holds the head: events cut off the end show here. */
    struct tk_rows *h;
    tk_rc rc = tk_db_exec(db, "SELECT event_seq, event_head FROM tenants WHERE id = ?",
                          TK_ARGS(TK_TEXT(tenant_id)), &h, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(h) != 1 || tk_rows_int(h, 0, 0) != expect - 1 ||
        strcmp(tk_rows_text(h, 0, 1), prev) != 0)
        rc = tk_err_set(e, TK_ECONFLICT, "chain_broken",
                        "the event chain ends at seq %lld but the tenant's head is seq %lld: "
                        "newest events were removed",
                        (long long)(expect - 1), (long long)tk_rows_int(h, 0, 0));
    tk_rows_free(h);
    return rc;
}
