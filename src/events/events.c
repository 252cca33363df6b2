/* events.c: see events.h. The chain's rules are in the README ("Event
 * chain"); in short:
 *
 *   hash_n = hex(SHA-256(hash_{n-1} "\n" canonical_n))
 *   mac_n  = hex(HMAC-SHA256(K, "tokend-event-chain-v1\n" tenant "\n" n "\n" hash_n))
 *
 * canonical_n is the event's stored columns but the hash (id, tenant_id,
 * seq, at, trace_id, kind, source, action, outcome, subject_type,
 * subject_id, message, detail, latency_us, node) as compact JSON with
 * sorted keys, absent values as null; hash_0 is the tenant's base hash ("" or,
 * after retention, the hash of the last deleted event). K is the
 * keyring's HMAC key; the input's prefix keeps it apart from the hashes of
 * issued secrets, which never start with "tokend-". */
#include "events_internal.h"

#include "../keyring/keyring.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char node_name[64] = "tokend";
static _Atomic(struct tk_keyring *) chain_keyring;

void tk_events_set_node(const char *node)
{
    snprintf(node_name, sizeof node_name, "%s", node);
}

void tk_events_use_keyring(struct tk_keyring *k)
{
    atomic_store(&chain_keyring, k);
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

/* Stored text is valid UTF-8 (tk_event_emit_in makes it so); text that is
 * not -- an edit behind tokend's back -- is hashed as a marker that no
 * real value equals, so the link breaks instead of the field dropping out. */
static json_t *jstr(const char *s)
{
    if (!s) return json_null();
    json_t *j = json_string(s);
    return j ? j : json_pack("{s:s}", "invalid_utf8", "\xef\xbf\xbd");
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

/* The same text as json_dumps(hashed_object(...), JSON_COMPACT |
 * JSON_SORT_KEYS), built without a JSON tree: the writer's hot path.
 * Keys in strcmp order, strings escaped as jansson does (\\, \", \b \f
 * \n \r \t, \u00XX for other control characters, nothing else), text
 * that is not valid UTF-8 as jstr's marker. tk_events_verify_chain hashes
 * with hashed_object, so every verified chain the writer made checks that
 * the two agree; the unit tests feed them every control character. */
static void canon_str(struct tk_buf *b, const char *s)
{
    if (!s) {
        tk_buf_add(b, "null", 4);
        return;
    }
    size_t n = strlen(s);
    if (!tk_utf8_valid(s, n)) {
        tk_buf_addstr(b, "{\"invalid_utf8\":\"\xef\xbf\xbd\"}");
        return;
    }
    tk_buf_add(b, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        tk_buf_add(b, run, (size_t)(p - run));
        run = p + 1;
        switch (c) {
        case '"': tk_buf_add(b, "\\\"", 2); break;
        case '\\': tk_buf_add(b, "\\\\", 2); break;
        case '\b': tk_buf_add(b, "\\b", 2); break;
        case '\f': tk_buf_add(b, "\\f", 2); break;
        case '\n': tk_buf_add(b, "\\n", 2); break;
        case '\r': tk_buf_add(b, "\\r", 2); break;
        case '\t': tk_buf_add(b, "\\t", 2); break;
        default: tk_buf_printf(b, "\\u%04X", (unsigned)c); break;
        }
    }
    tk_buf_add(b, run, (size_t)(s + n - run));
    tk_buf_add(b, "\"", 1);
}

/* hash = hex(SHA-256(prev "\n" canonical)) of a record at seq; b is
 * scratch space the caller keeps between calls. */
static void rec_hash(struct tk_buf *b, const char *prev, const struct tk_ev_rec *v,
                     const char *tenant, int64_t seq, char out[65])
{
    char *const *f = v->f;
    unsigned char d[32];
    tk_buf_reset(b);
    tk_buf_addstr(b, prev);
    tk_buf_addstr(b, "\n{\"action\":");
    canon_str(b, f[EV_ACTION]);
    tk_buf_printf(b, ",\"at\":%lld,\"detail\":", (long long)v->at);
    canon_str(b, v->detail);
    tk_buf_addstr(b, ",\"id\":");
    canon_str(b, v->id);
    tk_buf_addstr(b, ",\"kind\":");
    canon_str(b, f[EV_KIND]);
    if (v->latency_us >= 0)
        tk_buf_printf(b, ",\"latency_us\":%lld", (long long)v->latency_us);
    else
        tk_buf_addstr(b, ",\"latency_us\":null");
    tk_buf_addstr(b, ",\"message\":");
    canon_str(b, f[EV_MSG]);
    tk_buf_addstr(b, ",\"node\":");
    canon_str(b, node_name);
    tk_buf_addstr(b, ",\"outcome\":");
    canon_str(b, f[EV_OUTCOME]);
    tk_buf_printf(b, ",\"seq\":%lld,\"source\":", (long long)seq);
    canon_str(b, f[EV_SOURCE]);
    tk_buf_addstr(b, ",\"subject_id\":");
    canon_str(b, f[EV_SID]);
    tk_buf_addstr(b, ",\"subject_type\":");
    canon_str(b, f[EV_STYPE]);
    tk_buf_addstr(b, ",\"tenant_id\":");
    canon_str(b, tenant);
    tk_buf_addstr(b, ",\"trace_id\":");
    canon_str(b, f[EV_TRACE]);
    tk_buf_add(b, "}", 1);
    SHA256((const unsigned char *)b->data, b->len, d);
    tk_hex(d, 32, out);
}

/* ---- keyed links ---- */

#define CHAIN_DOMAIN "tokend-event-chain-v1\n"
#define CHECKPOINT_DOMAIN "tokend-event-checkpoint-v1\n"

/* Events a sealed node writes (it refuses everything else with 503): they
 * may be unkeyed anywhere in a chain. Any other unkeyed event after the
 * chain's first keyed one is a break (a stripped MAC). */
static bool may_be_unkeyed(const char *kind, const char *action)
{
    bool prune = action && !strcmp(action, "prune"); /* moves the base: always keyed */
    return (kind && !strcmp(kind, "keyring")) || (kind && !strcmp(kind, "node") && !prune) ||
           (action && !strcmp(action, "authenticate"));
}

bool tk_events_keyed_now(void)
{
    struct tk_keyring *k = atomic_load(&chain_keyring);
    return !k || !tk_keyring_sealed(k);
}

/* MAC of a link; TK_EUNAVAIL when there is no keyring or it is sealed. */
static tk_rc keyed(const char *domain, const char *tenant, int64_t seq, const char *hash,
                   int64_t at, char out[TK_HASH_HEX], char kid[17])
{
    struct tk_keyring *k = atomic_load(&chain_keyring);
    if (!k) return TK_EUNAVAIL;
    char in[512];
    int n = at >= 0 ? snprintf(in, sizeof in, "%s%s\n%lld\n%s\n%lld", domain, tenant,
                               (long long)seq, hash, (long long)at)
                    : snprintf(in, sizeof in, "%s%s\n%lld\n%s", domain, tenant, (long long)seq,
                               hash);
    if (n < 0 || (size_t)n >= sizeof in) return TK_EINTERNAL;
    return tk_keyring_hash(k, in, (size_t)n, out, kid, NULL);
}

/* ---- emit ---- */

void tk_ev_rec_fill(struct tk_ev_rec *r, const struct tk_event *ev)
{
    tk_uuid7(r->id);
    r->tenant = ev->tenant_id ? tk_strdup(ev->tenant_id) : NULL;
    /* Every text field as valid UTF-8 before it is hashed: what is stored
     * is what the chain covers (issue 13 #3). */
    const char *in[EV_NF] = {ev->trace_id, ev->kind,         ev->source,     ev->action,
                             ev->outcome,  ev->subject_type, ev->subject_id, ev->message};
    for (int i = 0; i < EV_NF; i++) r->f[i] = tk_utf8_fix(in[i]);
    if (!r->f[EV_TRACE] || !*r->f[EV_TRACE]) {
        char trace[TK_UUID_LEN + 1];
        free(r->f[EV_TRACE]);
        tk_uuid7(trace);
        r->f[EV_TRACE] = tk_strdup(trace);
    }
    r->detail = ev->detail ? json_dumps(ev->detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    r->at = tk_now_ms();
    r->latency_us = ev->latency_us;
    /* Keyring actions and operator token changes (not the refusals, which
     * an attacker can make at will) are synced at commit on SQLite. */
    const char *k = r->f[EV_KIND], *a = r->f[EV_ACTION];
    r->durable = k && (!strcmp(k, "keyring") || !strcmp(k, "tenant") ||
                       (!strcmp(k, "operator") && a && strcmp(a, "authenticate") != 0));
    r->rc = TK_OK;
    r->seq = 0;
}

void tk_ev_rec_clear(struct tk_ev_rec *r)
{
    free(r->tenant);
    for (int i = 0; i < EV_NF; i++) free(r->f[i]);
    free(r->detail);
    memset(r, 0, sizeof *r);
}

#define BULK_ROWS 500
#define BULK_BYTES ((size_t)4 << 20) /* or fewer rows when they are large */

/* Rows as a JSON array for json_to_recordset (PostgreSQL): one statement
 * and one round trip per BULK_ROWS events instead of one per event. */
static void bulk_row(struct tk_buf *b, const struct tk_ev_rec *v, const char *tenant)
{
    char *const *f = v->f;
    const char *names[] = {"id",      "tenant_id",    "trace_id",   "kind",    "source",
                           "action",  "outcome",      "subject_type", "subject_id", "message",
                           "detail",  "node",         "prev_hash",  "hash",    "mac",
                           "mac_key"};
    const char *vals[] = {v->id,         tenant,       f[EV_TRACE],  f[EV_KIND], f[EV_SOURCE],
                          f[EV_ACTION],  f[EV_OUTCOME], f[EV_STYPE], f[EV_SID],  f[EV_MSG],
                          v->detail,     node_name,    v->prev,      v->hash,
                          v->has_mac ? v->mac : NULL, v->has_mac ? v->kid : NULL};
    tk_buf_printf(b, "%s{\"seq\":%lld,\"at\":%lld,\"latency_us\":", b->len > 1 ? "," : "",
                  (long long)v->seq, (long long)v->at);
    if (v->latency_us >= 0)
        tk_buf_printf(b, "%lld", (long long)v->latency_us);
    else
        tk_buf_add(b, "null", 4);
    for (size_t i = 0; i < TK_NELEM(names); i++) {
        tk_buf_add(b, ",\"", 2);
        tk_buf_addstr(b, names[i]);
        tk_buf_add(b, "\":", 2);
        tk_buf_json_str(b, vals[i]);
    }
    tk_buf_add(b, "}", 1);
}

static tk_rc insert_bulk(struct tk_db *db, struct tk_buf *rows, struct tk_err *e)
{
    tk_buf_add(rows, "]", 1);
    tk_rc rc = tk_db_exec(
        db,
        "INSERT INTO events (id, tenant_id, seq, at, trace_id, kind, source, action, outcome, "
        "subject_type, subject_id, message, detail, latency_us, node, prev_hash, hash, mac, "
        "mac_key) SELECT id, tenant_id, seq, at, trace_id, kind, source, action, outcome, "
        "subject_type, subject_id, message, detail, latency_us, node, prev_hash, hash, mac, "
        "mac_key FROM json_to_recordset(CAST(? AS json)) AS x(id TEXT, tenant_id TEXT, seq "
        "BIGINT, at BIGINT, trace_id TEXT, kind TEXT, source TEXT, action TEXT, outcome TEXT, "
        "subject_type TEXT, subject_id TEXT, message TEXT, detail TEXT, latency_us BIGINT, node "
        "TEXT, prev_hash TEXT, hash TEXT, mac TEXT, mac_key TEXT)",
        TK_ARGS(TK_TEXT(rows->data)), NULL, e);
    tk_buf_reset(rows);
    tk_buf_add(rows, "[", 1);
    return rc;
}

static tk_rc insert_one(struct tk_db *db, const struct tk_ev_rec *v, const char *tenant,
                        struct tk_err *e)
{
    char *const *f = v->f;
    return tk_db_exec(db,
                      "INSERT INTO events (id, tenant_id, seq, at, trace_id, kind, source, "
                      "action, outcome, subject_type, subject_id, message, detail, latency_us, "
                      "node, prev_hash, hash, mac, mac_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                      "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      TK_ARGS(TK_TEXT(v->id), TK_TEXT(tenant), TK_INT(v->seq), TK_INT(v->at),
                              TK_TEXT(f[EV_TRACE]), TK_TEXT(f[EV_KIND]), TK_TEXT(f[EV_SOURCE]),
                              TK_TEXT(f[EV_ACTION]), TK_TEXT(f[EV_OUTCOME]),
                              TK_TEXT(f[EV_STYPE]), TK_TEXT(f[EV_SID]), TK_TEXT(f[EV_MSG]),
                              TK_TEXT(v->detail),
                              v->latency_us >= 0 ? TK_INT(v->latency_us) : TK_NULLV,
                              TK_TEXT(node_name), TK_TEXT(v->prev), TK_TEXT(v->hash),
                              TK_TEXT(v->has_mac ? v->mac : NULL),
                              TK_TEXT(v->has_mac ? v->kid : NULL)),
                      NULL, e);
}

tk_rc tk_ev_append(struct tk_db *db, struct tk_ev_rec *const *recs, int n, bool bulk,
                   struct tk_err *e)
{
    if (n <= 0) return TK_OK;
    const char *tenant = recs[0]->tenant;
    for (int i = 0; i < n; i++) recs[i]->rc = TK_OK;
    struct tk_rows *r = NULL;
    /* Takes the tenant row's lock until commit (PostgreSQL: a row lock, on
     * every node; SQLite: begin's write lock): the chain stays a chain. */
    tk_rc rc = tk_db_exec(db,
                          "UPDATE tenants SET event_seq = event_seq WHERE id = ? "
                          "RETURNING event_seq, event_head",
                          TK_ARGS(TK_TEXT(tenant)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        for (int i = 0; i < n; i++)
            recs[i]->rc = tk_err_field(&recs[i]->err, TK_ENOTFOUND, "unknown_tenant", "tenant_id",
                                       "event for unknown tenant %s", tenant ? tenant : "(none)");
        tk_rows_free(r);
        return TK_OK;
    }
    int64_t seq = tk_rows_int(r, 0, 0);
    char prev[65];
    snprintf(prev, sizeof prev, "%s", tk_rows_text(r, 0, 1) ? tk_rows_text(r, 0, 1) : "");
    tk_rows_free(r);
    int64_t first = seq;
    struct tk_buf scratch, rows;
    tk_buf_init(&scratch, SIZE_MAX / 2);
    tk_buf_init(&rows, SIZE_MAX / 2);
    tk_buf_add(&rows, "[", 1);
    int pending = 0;
    for (int i = 0; i < n && rc == TK_OK; i++) {
        struct tk_ev_rec *v = recs[i];
        char **f = v->f;
        int64_t s = seq + 1;
        rec_hash(&scratch, prev, v, tenant, s, v->hash);
        /* Keyring events are never keyed here: they are written by the
         * keyring itself, maybe under its lock; the next keyed event attests
         * them. */
        v->has_mac = !(f[EV_KIND] && !strcmp(f[EV_KIND], "keyring")) &&
                     keyed(CHAIN_DOMAIN, tenant, s, v->hash, -1, v->mac, v->kid) == TK_OK;
        /* An event that must carry a MAC and cannot (the keyring was sealed
         * meanwhile) is refused, and the action with it: verify would
         * rightly take it for a stripped MAC. */
        if (!v->has_mac && atomic_load(&chain_keyring) &&
            !may_be_unkeyed(f[EV_KIND], f[EV_ACTION])) {
            v->rc = tk_err_set(&v->err, TK_EUNAVAIL, "sealed",
                               "tokend was sealed while recording a %s %s event; nothing was done",
                               f[EV_KIND] ? f[EV_KIND] : "", f[EV_ACTION] ? f[EV_ACTION] : "");
            continue;
        }
        v->seq = s;
        snprintf(v->prev, sizeof v->prev, "%s", prev);
        if (bulk) {
            bulk_row(&rows, v, tenant);
            if (++pending == BULK_ROWS || rows.len > BULK_BYTES) {
                rc = insert_bulk(db, &rows, e);
                pending = 0;
            }
        } else {
            rc = insert_one(db, v, tenant, e);
        }
        seq = s;
        snprintf(prev, sizeof prev, "%s", v->hash);
    }
    if (rc == TK_OK && pending) rc = insert_bulk(db, &rows, e);
    tk_buf_free(&scratch);
    tk_buf_free(&rows);
    if (rc == TK_OK && seq != first)
        rc = tk_db_exec(db, "UPDATE tenants SET event_seq = ?, event_head = ? WHERE id = ?",
                        TK_ARGS(TK_INT(seq), TK_TEXT(prev), TK_TEXT(tenant)), NULL, e);
    return rc;
}

tk_rc tk_event_emit_in(struct tk_db *db, const struct tk_event *ev, struct tk_err *e)
{
    if (!tk_db_in_tx(db))
        return tk_err_set(e, TK_EINTERNAL, "not_in_transaction",
                          "tk_event_emit_in needs the caller's open transaction");
    struct tk_ev_rec rec;
    memset(&rec, 0, sizeof rec);
    tk_ev_rec_fill(&rec, ev);
    struct tk_ev_rec *one = &rec;
    tk_rc rc = tk_ev_append(db, &one, 1, false, e);
    if (rc == TK_OK && rec.rc != TK_OK) {
        rc = rec.rc;
        if (e) *e = rec.err;
    }
    if (rc == TK_OK && rec.durable) tk_db_durable(db);
    tk_ev_rec_clear(&rec);
    return rc;
}

tk_rc tk_event_emit_now(struct tk_db *db, const struct tk_event *ev, struct tk_err *e)
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

/* ---- list ---- */

#define EVENT_COLS                                                                                \
    "id, tenant_id, seq, at, trace_id, kind, source, action, outcome, subject_type, "             \
    "subject_id, message, detail, latency_us, node, prev_hash, hash, mac, mac_key"

/* A constant piece of JSON, without strlen. */
#define ADD_LIT(b, s) tk_buf_add((b), (s), sizeof(s) - 1)

/* An integer in decimal, by hand: GET /v1/events writes three per event
 * (vsnprintf was a tenth of the authenticated GET's CPU, bench/profile.sh). */
static void add_int(struct tk_buf *b, long long v)
{
    char rev[24], num[24];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    int r = 0, n = 0;
    do {
        rev[r++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) num[n++] = '-';
    while (r)
        num[n++] = rev[--r];
    tk_buf_add(b, num, (size_t)n);
}

/* One event as JSON text. detail is stored as JSON written by jansson and
 * goes in as it is -- unless it is not valid UTF-8 (an edit behind
 * tokend's back), then as a string, so the reply stays valid JSON. */
static void row_text(const struct tk_rows *r, int i, struct tk_buf *b)
{
    static const struct {
        const char *key; /* ,"name": */
        size_t len;
        int col;
    } texts[] = {
#define TEXT_COL(name, col) {",\"" name "\":", sizeof(",\"" name "\":") - 1, col}
        TEXT_COL("trace_id", 4),    TEXT_COL("kind", 5),     TEXT_COL("source", 6),
        TEXT_COL("action", 7),      TEXT_COL("outcome", 8),  TEXT_COL("subject_type", 9),
        TEXT_COL("subject_id", 10), TEXT_COL("message", 11),
#undef TEXT_COL
    };
    char at[32];
    ADD_LIT(b, "{\"id\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 0));
    ADD_LIT(b, ",\"seq\":");
    add_int(b, (long long)tk_rows_int(r, i, 2));
    ADD_LIT(b, ",\"at\":");
    tk_time_fmt(tk_rows_int(r, i, 3), at, sizeof at);
    tk_buf_json_str(b, at);
    ADD_LIT(b, ",\"at_ms\":");
    add_int(b, (long long)tk_rows_int(r, i, 3));
    for (size_t k = 0; k < TK_NELEM(texts); k++) {
        tk_buf_add(b, texts[k].key, texts[k].len);
        tk_buf_json_str(b, tk_rows_text(r, i, texts[k].col));
    }
    const char *d = tk_rows_text(r, i, 12);
    tk_buf_addstr(b, ",\"detail\":");
    if (!d || !*d)
        tk_buf_addstr(b, "null");
    else if (*d == '{' && tk_utf8_valid(d, strlen(d)))
        tk_buf_addstr(b, d);
    else
        tk_buf_json_str(b, d);
    ADD_LIT(b, ",\"latency_us\":");
    if (tk_rows_null(r, i, 13))
        ADD_LIT(b, "null");
    else
        add_int(b, (long long)tk_rows_int(r, i, 13));
    tk_buf_addstr(b, ",\"node\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 14));
    tk_buf_addstr(b, ",\"prev_hash\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 15));
    tk_buf_addstr(b, ",\"hash\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 16));
    tk_buf_addstr(b, ",\"mac\":");
    tk_buf_json_str(b, tk_rows_text(r, i, 17));
    tk_buf_add(b, "}", 1);
}

/* The equality filters of a query (kind, source, action, outcome,
 * subject) as " AND col = ?" pieces of sql, their values appended to args
 * at *n (at most 5). */
static tk_rc add_filters(struct tk_buf *sql, const struct tk_event_query *q, struct tk_val *args,
                         int *n)
{
    const struct {
        const char *cond, *val;
    } f[] = {{" AND kind = ?", q->kind},
             {" AND source = ?", q->source},
             {" AND action = ?", q->action},
             {" AND outcome = ?", q->outcome},
             {" AND subject_id = ?", q->subject}};
    for (size_t i = 0; i < TK_NELEM(f); i++) {
        if (!f[i].val) continue;
        tk_rc rc = tk_buf_addstr(sql, f[i].cond);
        if (rc != TK_OK) return rc;
        args[(*n)++] = TK_TEXT(f[i].val);
    }
    return TK_OK;
}

tk_rc tk_events_list_text(struct tk_db *db, const struct tk_event_query *q, struct tk_buf *out,
                          int64_t *next, struct tk_err *e)
{
    struct tk_buf sql;
    struct tk_val args[12];
    int n = 0;
    /* The statement is built from constant pieces only (values are bound):
     * its length is bounded by them, and tk_buf refuses past its maximum. */
    tk_buf_init(&sql, 2048);
    tk_rc rc = tk_buf_addstr(&sql, "SELECT " EVENT_COLS " FROM events WHERE tenant_id = ?");
    args[n++] = TK_TEXT(q->tenant_id);
    if (rc == TK_OK) rc = add_filters(&sql, q, args, &n);
#define FILTER(cond, val)                                                                         \
    do {                                                                                          \
        if (rc == TK_OK) rc = tk_buf_addstr(&sql, " AND " cond);                                  \
        args[n++] = (val);                                                                        \
    } while (0)
    if (q->since) FILTER("at >= ?", TK_INT(q->since));
    if (q->until) FILTER("at < ?", TK_INT(q->until));
    if (q->before) FILTER("seq < ?", TK_INT(q->before));
    if (q->follow) FILTER("seq > ?", TK_INT(q->after));
#undef FILTER
    int limit = q->limit < 1 ? 1 : q->limit > TK_EVENTS_MAX_LIMIT ? TK_EVENTS_MAX_LIMIT : q->limit;
    if (rc == TK_OK)
        rc = tk_buf_addstr(&sql, q->follow ? " ORDER BY seq ASC LIMIT ?" : " ORDER BY seq DESC LIMIT ?");
    args[n++] = TK_INT(limit + 1);
    if (rc != TK_OK) {
        tk_buf_free(&sql);
        return tk_err_set(e, TK_EINTERNAL, "internal", "the event query is too long");
    }
    struct tk_rows *r;
    rc = tk_db_exec(db, sql.data, args, n, &r, e);
    tk_buf_free(&sql);
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

tk_rc tk_events_scan(struct tk_db *db, const struct tk_event_query *q, tk_event_row_fn fn,
                     void *arg, struct tk_err *e)
{
    struct tk_buf sql;
    struct tk_val args[10];
    int n = 0;
    tk_buf_init(&sql, 1024);
    tk_rc rc = tk_buf_addstr(&sql, "SELECT at, outcome, detail FROM events WHERE tenant_id = ?");
    args[n++] = TK_TEXT(q->tenant_id);
    if (rc == TK_OK) rc = add_filters(&sql, q, args, &n);
    if (rc == TK_OK && q->since) {
        rc = tk_buf_addstr(&sql, " AND at >= ?");
        args[n++] = TK_INT(q->since);
    }
    if (rc == TK_OK && q->until) {
        rc = tk_buf_addstr(&sql, " AND at < ?");
        args[n++] = TK_INT(q->until);
    }
    if (rc == TK_OK) rc = tk_buf_addstr(&sql, " ORDER BY seq DESC LIMIT ?");
    int limit = q->limit < 1 ? 1 : q->limit > TK_EVENTS_MAX_LIMIT ? TK_EVENTS_MAX_LIMIT : q->limit;
    args[n++] = TK_INT(limit);
    if (rc != TK_OK) {
        tk_buf_free(&sql);
        return tk_err_set(e, TK_EINTERNAL, "internal", "the event query is too long");
    }
    struct tk_rows *r;
    rc = tk_db_exec(db, sql.data, args, n, &r, e);
    tk_buf_free(&sql);
    if (rc != TK_OK) return rc;
    for (int i = 0; i < tk_rows_count(r); i++)
        fn(arg, tk_rows_int(r, i, 0), tk_rows_text(r, i, 1),
           tk_rows_null(r, i, 2) ? "" : tk_rows_text(r, i, 2));
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

/* ---- counts ---- */

#define COUNTS_PAGE 2000

tk_rc tk_events_counts(struct tk_db *db, const struct tk_event_query *q, int64_t start,
                       int64_t bucket_ms, int nbuckets, int max_events, json_t **out,
                       int64_t *counted, bool *complete, struct tk_err *e)
{
    *out = NULL;
    *counted = 0;
    *complete = true;
    if (nbuckets < 1 || bucket_ms < 1 || max_events < 1)
        return tk_err_set(e, TK_EINVAL, "invalid_parameter", "no buckets to count into");
    json_t *buckets = json_array();
    for (int b = 0; b < nbuckets; b++) {
        char at[32];
        tk_time_fmt(start + (int64_t)b * bucket_ms, at, sizeof at);
        json_array_append_new(buckets, json_pack("{s:s, s:{}}", "at", at, "counts"));
    }
    int64_t before = 0;
    int64_t read = 0;
    tk_rc rc = TK_OK;
    bool done = false;
    /* without at >= start in the statement: walking the seq index and
     * stopping at the first older event beats a range on at that must
     * then be sorted by seq (a busy hour: tens of thousands of rows) */
    while (rc == TK_OK && !done) {
        struct tk_buf sql;
        struct tk_val args[8];
        int n = 0;
        tk_buf_init(&sql, 1024);
        rc = tk_buf_addstr(&sql, "SELECT seq, at, outcome FROM events WHERE tenant_id = ?");
        args[n++] = TK_TEXT(q->tenant_id);
        if (rc == TK_OK) rc = add_filters(&sql, q, args, &n);
        if (rc == TK_OK && before) {
            rc = tk_buf_addstr(&sql, " AND seq < ?");
            args[n++] = TK_INT(before);
        }
        int64_t want = max_events - read < COUNTS_PAGE ? max_events - read : COUNTS_PAGE;
        if (rc == TK_OK) rc = tk_buf_addstr(&sql, " ORDER BY seq DESC LIMIT ?");
        args[n++] = TK_INT(want);
        if (rc != TK_OK) {
            tk_buf_free(&sql);
            rc = tk_err_set(e, TK_EINTERNAL, "internal", "the event query is too long");
            break;
        }
        struct tk_rows *r;
        rc = tk_db_exec(db, sql.data, args, n, &r, e);
        tk_buf_free(&sql);
        if (rc != TK_OK) break;
        int count = tk_rows_count(r);
        for (int i = 0; i < count; i++) {
            int64_t at = tk_rows_int(r, i, 1);
            if (at < start) {
                done = true;
                break;
            }
            int64_t b = (at - start) / bucket_ms;
            if (b >= nbuckets) b = nbuckets - 1;
            const char *outcome = tk_rows_text(r, i, 2);
            json_t *counts = json_object_get(json_array_get(buckets, (size_t)b), "counts");
            json_t *v = json_object_get(counts, outcome ? outcome : "");
            json_object_set_new(counts, outcome ? outcome : "",
                                json_integer(json_integer_value(v) + 1));
            (*counted)++;
        }
        read += count;
        if (count) before = tk_rows_int(r, count - 1, 0);
        tk_rows_free(r);
        if (!done && count < want) done = true; /* no older events */
        else if (!done && read >= max_events) {
            *complete = false;
            done = true;
        }
    }
    if (rc != TK_OK) {
        json_decref(buckets);
        return rc;
    }
    *out = buckets;
    return TK_OK;
}

/* ---- verify ---- */

static tk_rc broken(struct tk_chain_status *st, struct tk_err *e, int64_t seq, const char *fmt,
                    ...) TK_PRINTF(4, 5);
static tk_rc broken(struct tk_chain_status *st, struct tk_err *e, int64_t seq, const char *fmt,
                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->error, sizeof st->error, fmt, ap);
    va_end(ap);
    st->valid = false;
    st->broken_seq = seq;
    return tk_err_set(e, TK_ECONFLICT, "chain_broken", "%s", st->error);
}

tk_rc tk_events_verify_chain(struct tk_db *db, const char *tenant_id, struct tk_chain_status *st,
                             struct tk_err *e)
{
    memset(st, 0, sizeof *st);
    snprintf(st->tenant_id, sizeof st->tenant_id, "%s", tenant_id);
    struct tk_rows *h;
    tk_rc rc = tk_db_exec(db,
                          "SELECT event_seq, event_head, event_base_seq, event_base_hash FROM "
                          "tenants WHERE id = ?",
                          TK_ARGS(TK_TEXT(tenant_id)), &h, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(h) != 1) {
        tk_rows_free(h);
        return tk_err_field(e, TK_ENOTFOUND, "unknown_tenant", "tenant_id", "unknown tenant %s",
                            tenant_id);
    }
    int64_t head_seq = tk_rows_int(h, 0, 0);
    char head_hash[65];
    snprintf(head_hash, sizeof head_hash, "%s", tk_rows_text(h, 0, 1));
    st->base_seq = tk_rows_int(h, 0, 2);
    snprintf(st->base_hash, sizeof st->base_hash, "%s", tk_rows_text(h, 0, 3));
    tk_rows_free(h);
    st->valid = true;
    st->macs_checked = atomic_load(&chain_keyring) != NULL &&
                       !tk_keyring_sealed(atomic_load(&chain_keyring));
    char prev[65];
    snprintf(prev, sizeof prev, "%s", st->base_hash);
    int64_t after = st->base_seq, expect = st->base_seq + 1;
    bool seen_keyed = false;
    int64_t prune_seq = 0; /* what the newest prune event says the base is */
    char prune_hash[65] = "";
    for (;;) {
        struct tk_rows *r;
        rc = tk_db_exec(db,
                        "SELECT " EVENT_COLS " FROM events WHERE tenant_id = ? AND seq > ? "
                        "ORDER BY seq LIMIT 500",
                        TK_ARGS(TK_TEXT(tenant_id), TK_INT(after)), &r, e);
        if (rc != TK_OK) return rc;
        int count = tk_rows_count(r);
        for (int i = 0; i < count; i++) {
            int64_t seq = tk_rows_int(r, i, 2);
            char hh[65];
            json_t *o = hashed_object(
                tk_rows_text(r, i, 0), tk_rows_text(r, i, 1), seq, tk_rows_int(r, i, 3),
                tk_rows_text(r, i, 4), tk_rows_text(r, i, 5), tk_rows_text(r, i, 6),
                tk_rows_text(r, i, 7), tk_rows_text(r, i, 8), tk_rows_text(r, i, 9),
                tk_rows_text(r, i, 10), tk_rows_text(r, i, 11), tk_rows_text(r, i, 12),
                tk_rows_null(r, i, 13) ? -1 : tk_rows_int(r, i, 13), tk_rows_text(r, i, 14));
            event_hash(prev, o, hh);
            json_decref(o);
            const char *stored_prev = tk_rows_text(r, i, 15), *stored = tk_rows_text(r, i, 16);
            const char *mac = tk_rows_text(r, i, 17), *mkey = tk_rows_text(r, i, 18);
            if (st->first_seq == 0) st->first_seq = seq;
            if (seq != expect || strcmp(stored_prev, prev) != 0 || strcmp(stored, hh) != 0) {
                tk_rows_free(r);
                return broken(st, e, seq < expect ? seq : expect,
                              "the event chain breaks at seq %lld (expected seq %lld): an "
                              "event was removed or edited",
                              (long long)seq, (long long)expect);
            }
            if (!strcmp(tk_rows_text(r, i, 5), "node") && !strcmp(tk_rows_text(r, i, 7), "prune")) {
                json_t *d = json_loads(tk_rows_text(r, i, 12) ? tk_rows_text(r, i, 12) : "", 0, NULL);
                const char *bh = json_string_value(json_object_get(d, "base_hash"));
                prune_seq = json_integer_value(json_object_get(d, "through_seq"));
                snprintf(prune_hash, sizeof prune_hash, "%s", bh ? bh : "");
                json_decref(d);
            }
            if (mac) {
                seen_keyed = true;
                st->keyed++;
                if (st->macs_checked) {
                    char want[TK_HASH_HEX], kid[17];
                    if (keyed(CHAIN_DOMAIN, tenant_id, seq, hh, -1, want, kid) == TK_OK) {
                        if (mkey && strcmp(mkey, kid) != 0) {
                            st->other_key++;
                        } else if (strlen(mac) != 64 || !tk_ct_equal(mac, want, 64)) {
                            tk_rows_free(r);
                            return broken(st, e, seq,
                                          "the event chain breaks at seq %lld: its MAC does not "
                                          "match (the event, or one before it, was rewritten "
                                          "without the key)",
                                          (long long)seq);
                        } else {
                            st->attested_seq = seq;
                        }
                    }
                }
            } else {
                st->unkeyed++;
                if (seen_keyed && !may_be_unkeyed(tk_rows_text(r, i, 5), tk_rows_text(r, i, 7))) {
                    char kind[40];
                    snprintf(kind, sizeof kind, "%s", tk_rows_text(r, i, 5));
                    tk_rows_free(r);
                    return broken(st, e, seq,
                                  "the event chain breaks at seq %lld: a %s event without a MAC "
                                  "after keyed ones (only keyring, node and authentication "
                                  "events are written while sealed)",
                                  (long long)seq, kind);
                }
            }
            snprintf(prev, sizeof prev, "%s", hh);
            after = seq;
            expect++;
            st->checked++;
        }
        tk_rows_free(r);
        if (count < 500) break;
    }
    st->head_seq = expect - 1;
    snprintf(st->head_hash, sizeof st->head_hash, "%s", prev);
    /* A chain that starts after seq 0 must say so itself: the newest prune
     * event names the base (an attacker who deletes the oldest events and
     * moves the base would have to forge a keyed event). */
    if (st->base_seq > 0 && (prune_seq != st->base_seq || strcmp(prune_hash, st->base_hash) != 0))
        return broken(st, e, st->base_seq + 1,
                      "the event chain starts after seq %lld but no prune event records that "
                      "base (the newest says %lld): the oldest events were removed behind "
                      "retention's back",
                      (long long)st->base_seq, (long long)prune_seq);
    /* The tenant row holds the head: events cut off the end show here. */
    if (head_seq != expect - 1 || strcmp(head_hash, prev) != 0)
        return broken(st, e, expect,
                      "the event chain ends at seq %lld but the tenant's head is seq %lld: "
                      "newest events were removed",
                      (long long)(expect - 1), (long long)head_seq);
    return TK_OK;
}

tk_rc tk_events_verify(struct tk_db *db, const char *tenant_id, int64_t *checked,
                       struct tk_err *e)
{
    struct tk_chain_status st;
    tk_rc rc = tk_events_verify_chain(db, tenant_id, &st, e);
    *checked = st.checked;
    return rc;
}

tk_rc tk_events_checkpoint(const struct tk_chain_status *st, struct tk_checkpoint *cp)
{
    memset(cp, 0, sizeof *cp);
    snprintf(cp->tenant_id, sizeof cp->tenant_id, "%s", st->tenant_id);
    cp->seq = st->head_seq;
    snprintf(cp->hash, sizeof cp->hash, "%s", st->head_hash);
    cp->at = tk_now_ms();
    char kid[17];
    if (keyed(CHECKPOINT_DOMAIN, cp->tenant_id, cp->seq, cp->hash, cp->at, cp->mac, kid) != TK_OK)
        cp->mac[0] = '\0';
    return cp->mac[0] ? TK_OK : TK_EUNAVAIL;
}

tk_rc tk_events_checkpoint_check(struct tk_db *db, const struct tk_checkpoint *cp,
                                 struct tk_err *e)
{
    char want[TK_HASH_HEX], kid[17];
    tk_rc k = keyed(CHECKPOINT_DOMAIN, cp->tenant_id, cp->seq, cp->hash, cp->at, want, kid);
    if (k == TK_OK && (strlen(cp->mac) != 64 || !tk_ct_equal(cp->mac, want, 64)))
        return tk_err_field(e, TK_ECONFLICT, "checkpoint_invalid", "checkpoint",
                            "the checkpoint's MAC does not match: it was not made by this "
                            "keyring, or it was edited");
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT hash FROM events WHERE tenant_id = ? AND seq = ? UNION ALL "
                          "SELECT event_base_hash FROM tenants WHERE id = ? AND event_base_seq = ?",
                          TK_ARGS(TK_TEXT(cp->tenant_id), TK_INT(cp->seq), TK_TEXT(cp->tenant_id),
                                  TK_INT(cp->seq)),
                          &r, e);
    if (rc != TK_OK) return rc;
    if (cp->seq == 0 && !cp->hash[0]) {
        /* a checkpoint of an empty chain holds trivially */
    } else if (tk_rows_count(r) == 0) {
        rc = tk_err_field(e, TK_ECONFLICT, "chain_broken", "checkpoint",
                          "the chain no longer has the checkpoint's seq %lld (removed, or "
                          "pruned by retention)",
                          (long long)cp->seq);
    } else if (strcmp(tk_rows_text(r, 0, 0), cp->hash) != 0) {
        rc = tk_err_field(e, TK_ECONFLICT, "chain_broken", "checkpoint",
                          "the chain no longer passes through the checkpoint: seq %lld has "
                          "another hash now (history was rewritten)",
                          (long long)cp->seq);
    }
    tk_rows_free(r);
    return rc;
}
