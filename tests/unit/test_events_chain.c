/* test_events_chain.c: issue 13 #3 and #8 on both backends -- hostile
 * bytes in event fields, the keyed chain, checkpoints. */
#include "unit.h"

#include "../../src/events/events.h"
#include "../../src/keyring/keyring.h"
#include "../../src/operators/operators.h"

#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool emit_ev(struct tk_db *db, const char *tid, const char *kind, const char *action,
                    const char *msg)
{
    struct tk_event ev = {.tenant_id = tid, .kind = kind, .source = "test", .action = action,
                          .outcome = "ok", .message = msg, .latency_us = -1};
    struct tk_err e;
    return CHECK_OK(tk_event_emit(db, &ev, &e), &e);
}

static bool chain(struct tk_db *db, const char *tid, struct tk_chain_status *st)
{
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_events_verify_chain(db, tid, st, &e);
    if (rc != TK_OK && rc != TK_ECONFLICT) FAILF("verify: %s %s", e.code, e.msg);
    return rc == TK_OK;
}

void test_events_hostile_utf8(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!CHECK_OK(tk_tenant_default(db, tid, &e), &e)) goto out;
    static const char *hostile[] = {
        "\x80\x81\xfe\xff",  "esc \x1b[2J\x1b]0;pwned\x07", "overlong \xc0\xaf \xe0\x80\xaf",
        "surrogate \xed\xa0\x80", "big \xf4\x90\x80\x80", "trunc \xe2\x82",
        "del \x7f c1 \xc2\x9b", "ok caf\xc3\xa9",
    };
    for (size_t i = 0; i < TK_NELEM(hostile); i++) {
        struct tk_event ev = {.tenant_id = tid, .trace_id = hostile[i], .kind = hostile[i],
                              .source = hostile[i], .action = hostile[i], .outcome = hostile[i],
                              .subject_type = hostile[i], .subject_id = hostile[i],
                              .message = hostile[i], .latency_us = -1};
        CHECK_OK(tk_event_emit(db, &ev, &e), &e); /* PostgreSQL refused these before */
    }
    /* every stored field is valid UTF-8 */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT trace_id, kind, source, action, outcome, subject_type, "
                            "subject_id, message FROM events WHERE tenant_id = ? ORDER BY seq",
                            TK_ARGS(TK_TEXT(tid)), &r, &e),
                 &e)) {
        CHECK_EQ_INT(tk_rows_count(r), (int)TK_NELEM(hostile));
        for (int i = 0; i < tk_rows_count(r); i++)
            for (int c = 0; c < 8; c++) {
                const char *v = tk_rows_text(r, i, c);
                if (!v || !tk_utf8_valid(v, strlen(v))) FAILF("row %d column %d not UTF-8", i, c);
            }
        CHECK_EQ_STR(tk_rows_text(r, 7, 7), "ok caf\xc3\xa9");
        CHECK_EQ_STR(tk_rows_text(r, 0, 7), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    }
    tk_rows_free(r);
    /* the list is valid JSON without raw control characters */
    struct tk_event_query q = {.tenant_id = tid, .limit = 100};
    struct tk_buf b;
    int64_t next;
    tk_buf_init(&b, 1 << 20);
    if (CHECK_OK(tk_events_list_text(db, &q, &b, &next, &e), &e)) {
        json_error_t je;
        json_t *a = json_loadb(b.data, b.len, 0, &je);
        if (!CHECK(a && json_array_size(a) == TK_NELEM(hostile))) FAILF("list: %s", je.text);
        json_decref(a);
        for (size_t k = 0; k < b.len; k++)
            if ((unsigned char)b.data[k] < 0x20 || b.data[k] == 0x7f) {
                FAILF("raw control byte 0x%02x in the list at %zu", (unsigned char)b.data[k], k);
                break;
            }
    }
    tk_buf_free(&b);
    struct tk_chain_status st;
    CHECK(chain(db, tid, &st));
    CHECK_EQ_INT(st.checked, (int)TK_NELEM(hostile));
    /* an edit to bytes that are not UTF-8 (SQLite stores them) breaks the
     * chain at that event instead of dropping out of the hash */
    if (!strcmp(f->backend, "sqlite")) {
        CHECK_OK(tk_db_exec(db, "UPDATE events SET message = ? WHERE tenant_id = ? AND seq = 3",
                            TK_ARGS(TK_TEXT("\xff\xfe"), TK_TEXT(tid)), NULL, &e),
                 &e);
        CHECK(!chain(db, tid, &st));
        CHECK_EQ_INT(st.broken_seq, 3);
        /* and the list stays valid JSON */
        tk_buf_init(&b, 1 << 20);
        CHECK_OK(tk_events_list_text(db, &q, &b, &next, &e), &e);
        json_error_t je;
        json_t *a = json_loadb(b.data, b.len, 0, &je);
        CHECK(a != NULL);
        json_decref(a);
        tk_buf_free(&b);
    }
out:
    tk_store_put(db);
}

/* What an attacker with write access to the database does: edit an event
 * and recompute every hash after it by the published rules. */
static void rechain(struct tk_db *db, const char *tid, bool strip_macs)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_db_exec(db,
                             "SELECT id, tenant_id, seq, at, trace_id, kind, source, action, "
                             "outcome, subject_type, subject_id, message, detail, latency_us, "
                             "node FROM events WHERE tenant_id = ? ORDER BY seq",
                             TK_ARGS(TK_TEXT(tid)), &r, &e),
                  &e))
        return;
    static const char *names[] = {"id",          "tenant_id",  "seq",          "at",
                                  "trace_id",    "kind",       "source",       "action",
                                  "outcome",     "subject_type", "subject_id", "message",
                                  "detail",      "latency_us", "node"};
    char prev[65] = "";
    for (int i = 0; i < tk_rows_count(r); i++) {
        json_t *o = json_object();
        for (int c = 0; c < 15; c++) {
            const char *v = tk_rows_text(r, i, c);
            json_t *j = !v ? json_null()
                        : (c == 2 || c == 3 || c == 13) ? json_integer(tk_rows_int(r, i, c))
                                                        : json_string(v);
            json_object_set_new(o, names[c], j);
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        struct tk_buf b;
        tk_buf_init(&b, 1 << 20);
        tk_buf_addstr(&b, prev);
        tk_buf_add(&b, "\n", 1);
        tk_buf_addstr(&b, s);
        free(s);
        unsigned char d[32];
        SHA256((const unsigned char *)b.data, b.len, d);
        tk_buf_free(&b);
        char h[65];
        tk_hex(d, 32, h);
        CHECK_OK(tk_db_exec(db,
                            strip_macs ? "UPDATE events SET prev_hash = ?, hash = ?, mac = NULL, "
                                         "mac_key = NULL WHERE tenant_id = ? AND seq = ?"
                                       : "UPDATE events SET prev_hash = ?, hash = ? WHERE "
                                         "tenant_id = ? AND seq = ?",
                            TK_ARGS(TK_TEXT(prev), TK_TEXT(h), TK_TEXT(tid),
                                    TK_INT(tk_rows_int(r, i, 2))),
                            NULL, &e),
                 &e);
        memcpy(prev, h, sizeof prev);
    }
    CHECK_OK(tk_db_exec(db, "UPDATE tenants SET event_head = ? WHERE id = ?",
                        TK_ARGS(TK_TEXT(prev), TK_TEXT(tid)), NULL, &e),
             &e);
    tk_rows_free(r);
}

void test_events_keyed_chain(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    struct tk_keyring *k = NULL;
    char shares[1][TK_SHARE_MAX];
    if (!CHECK_OK(tk_tenant_default(db, tid, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_init(k, db, 1, 1, NULL, shares, NULL, &e), &e)) goto out;
    /* two legacy events (before any key), then keyed ones */
    emit_ev(db, tid, "operator", "create", "legacy 1");
    emit_ev(db, tid, "operator", "create", "legacy 2");
    tk_events_use_keyring(k);
    for (int i = 3; i <= 8; i++) emit_ev(db, tid, "operator", "create", "keyed");
    emit_ev(db, tid, "keyring", "rotate", "keyring events are not keyed by emit");
    emit_ev(db, tid, "operator", "revoke", "keyed again");
    struct tk_chain_status st;
    if (!CHECK(chain(db, tid, &st))) FAILF("%s", st.error);
    CHECK(st.valid);
    CHECK(st.macs_checked);
    CHECK_EQ_INT(st.checked, 10);
    CHECK_EQ_INT(st.keyed, 7);
    CHECK_EQ_INT(st.unkeyed, 3);
    CHECK_EQ_INT(st.attested_seq, 10);
    CHECK_EQ_INT(st.head_seq, 10);
    CHECK_EQ_INT(st.first_seq, 1);

    /* a checkpoint of the head, signed */
    struct tk_checkpoint cp;
    CHECK_OK(tk_events_checkpoint(&st, &cp), &e);
    CHECK_EQ_INT(strlen(cp.mac), 64);
    CHECK_EQ_INT(cp.seq, 10);
    CHECK_OK(tk_events_checkpoint_check(db, &cp, &e), &e);
    struct tk_checkpoint forged = cp;
    forged.seq = 9;
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_events_checkpoint_check(db, &forged, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "checkpoint_invalid");

    /* while sealed: node events are written unkeyed and still verify; an
     * event that must be keyed is refused (sealed), not written unkeyed */
    tk_keyring_seal(k);
    emit_ev(db, tid, "node", "start", "sealed start");
    {
        struct tk_event op = {.tenant_id = tid, .kind = "operator", .source = "test",
                              .action = "create", .outcome = "ok", .message = "while sealed",
                              .latency_us = -1};
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_event_emit(db, &op, &e), TK_EUNAVAIL);
        CHECK_EQ_STR(e.code, "sealed");
        CHECK(!tk_db_in_tx(db));
    }
    tk_events_use_keyring(NULL);
    CHECK(chain(db, tid, &st));
    CHECK(!st.macs_checked);
    tk_events_use_keyring(k);

    /* an edit with every hash recomputed: the unkeyed chain cannot tell
     * (that is why it is not tamper evidence), the MACs can */
    const int idx[1] = {0};
    (void)idx;
    struct tk_seal_status ss;
    CHECK_OK(tk_keyring_unseal_share(k, db, shares[0], NULL, NULL, NULL, &ss, &e), &e);
    CHECK_OK(tk_db_exec(db, "UPDATE events SET message = 'nothing to see' WHERE tenant_id = ? "
                            "AND seq = 5",
                        TK_ARGS(TK_TEXT(tid)), NULL, &e),
             &e);
    rechain(db, tid, false);
    tk_events_use_keyring(NULL);
    CHECK(chain(db, tid, &st)); /* hash chain alone: fooled */
    tk_events_use_keyring(k);
    CHECK(!chain(db, tid, &st));
    CHECK_EQ_INT(st.broken_seq, 5);
    CHECK(strstr(st.error, "MAC") != NULL);
    /* the checkpoint no longer holds either */
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_events_checkpoint_check(db, &cp, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "chain_broken");

    /* stripping the MACs from the edit on: an unkeyed operator event after
     * keyed ones is a break */
    CHECK_OK(tk_db_exec(db, "UPDATE events SET mac = NULL, mac_key = NULL WHERE tenant_id = ? "
                            "AND seq >= 5",
                        TK_ARGS(TK_TEXT(tid)), NULL, &e),
             &e);
    CHECK(!chain(db, tid, &st));
    CHECK_EQ_INT(st.broken_seq, 5);
    /* stripping every MAC makes it look like a legacy chain: attested_seq
     * says nothing is attested, and the checkpoint catches it */
    rechain(db, tid, true);
    CHECK(chain(db, tid, &st));
    CHECK_EQ_INT(st.attested_seq, 0);
    CHECK_EQ_INT(st.keyed, 0);
    CHECK_EQ_INT(tk_events_checkpoint_check(db, &cp, &e), TK_ECONFLICT);
out:
    tk_events_use_keyring(NULL);
    tk_wipe(shares, sizeof shares);
    tk_keyring_free(k);
    tk_store_put(db);
}

static int64_t n_events(struct tk_db *db, const char *tid, const char *extra)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM events WHERE tenant_id = ?%s", extra);
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t n = -1;
    if (CHECK_OK(tk_db_exec(db, sql, TK_ARGS(TK_TEXT(tid)), &r, &e), &e)) n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

/* issue 13 #2: repeats of (tenant, kind, action, key) in a window are one
 * event plus one summary with detail.count. */
void test_events_coalesce(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!CHECK_OK(tk_tenant_default(db, tid, &e), &e)) goto out;
    json_t *d = json_pack("{s:s}", "reason", "malformed");
    struct tk_event ev = {.tenant_id = tid, .kind = "operator", .source = "api",
                          .action = "authenticate", .outcome = "denied",
                          .message = "the token is malformed", .detail = d, .latency_us = -1};
    bool co = true;
    CHECK_OK(tk_event_emit_coalesced(db, &ev, "malformed 192.0.2.1", 60000, &co, &e), &e);
    CHECK(!co);
    for (int i = 0; i < 50; i++) {
        CHECK_OK(tk_event_emit_coalesced(db, &ev, "malformed 192.0.2.1", 60000, &co, &e), &e);
        CHECK(co);
    }
    /* another address is its own window */
    CHECK_OK(tk_event_emit_coalesced(db, &ev, "malformed 192.0.2.2", 60000, &co, &e), &e);
    CHECK(!co);
    CHECK_EQ_INT(n_events(db, tid, ""), 2);
    /* a flush before the window ends writes nothing */
    CHECK_OK(tk_events_coalesce_flush(db, false, &e), &e);
    CHECK_EQ_INT(n_events(db, tid, ""), 2);
    /* forced (shutdown): one summary of the 50 repeats */
    CHECK_OK(tk_events_coalesce_flush(db, true, &e), &e);
    CHECK_EQ_INT(n_events(db, tid, ""), 3);
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT detail, action, outcome FROM events WHERE tenant_id = ? "
                                "AND seq = 3",
                            TK_ARGS(TK_TEXT(tid)), &r, &e),
                 &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 1)) {
        json_t *j = json_loads(tk_rows_text(r, 0, 0), 0, NULL);
        CHECK_EQ_INT(json_integer_value(json_object_get(j, "count")), 50);
        CHECK_EQ_STR(json_string_value(json_object_get(j, "reason")), "malformed");
        CHECK(json_object_get(j, "first_at") && json_object_get(j, "last_at"));
        json_decref(j);
        CHECK_EQ_STR(tk_rows_text(r, 0, 1), "authenticate");
        CHECK_EQ_STR(tk_rows_text(r, 0, 2), "denied");
    }
    tk_rows_free(r);
    /* a window that has ended: the next occurrence writes the summary of
     * the old window first, then itself */
    int64_t t0 = tk_mono_us();
    CHECK_OK(tk_event_emit_coalesced(db, &ev, "k", 1000, &co, &e), &e);
    CHECK(!co);
    CHECK_OK(tk_event_emit_coalesced(db, &ev, "k", 1000, &co, &e), &e);
    CHECK(co);
    CHECK_EQ_INT(n_events(db, tid, ""), 4);
    while (tk_mono_us() - t0 < 1100 * 1000) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK_OK(tk_event_emit_coalesced(db, &ev, "k", 1000, &co, &e), &e);
    CHECK(!co); /* the window had ended: a first occurrence again */
    CHECK_EQ_INT(n_events(db, tid, ""), 6);
    CHECK_EQ_INT(n_events(db, tid, " AND seq = 5 AND detail LIKE '%\"count\":1,%'"), 1);
    CHECK_OK(tk_events_coalesce_flush(db, true, &e), &e);
    CHECK_EQ_INT(n_events(db, tid, ""), 6);
    /* without a store connection: the caller writes first occurrences */
    int64_t n0 = n_events(db, tid, "");
    CHECK(!tk_event_coalesce(&ev, "missing 192.0.2.9", 60000));
    CHECK_OK(tk_event_emit(db, &ev, &e), &e);
    for (int i = 0; i < 7; i++) CHECK(tk_event_coalesce(&ev, "missing 192.0.2.9", 60000));
    CHECK_EQ_INT(n_events(db, tid, ""), n0 + 1);
    CHECK_OK(tk_events_coalesce_flush(db, true, &e), &e);
    CHECK_EQ_INT(n_events(db, tid, ""), n0 + 2);
    CHECK_EQ_INT(n_events(db, tid, " AND detail LIKE '%\"count\":7,%'"), 1);
    struct tk_chain_status st;
    CHECK(chain(db, tid, &st));
    json_decref(d);
out:
    tk_store_put(db);
}

/* issue 13 #2: retention deletes the oldest events in batches and the
 * chain verifies from the oldest kept one. */
void test_events_prune(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!CHECK_OK(tk_tenant_default(db, tid, &e), &e)) goto out;
    for (int i = 1; i <= 20; i++) emit_ev(db, tid, "operator", "create", "event");
    int64_t old = tk_now_ms() - 100LL * 86400000;
    /* 1..12 are old, 13 young, 14 old again (another node's clock), 15.. young */
    CHECK_OK(tk_db_exec(db, "UPDATE events SET at = ? WHERE tenant_id = ? AND (seq <= 12 OR seq = 14)",
                        TK_ARGS(TK_INT(old), TK_TEXT(tid)), NULL, &e),
             &e);
    struct tk_chain_status st;
    int64_t deleted = -1;
    /* nothing older than 200 days */
    CHECK_OK(tk_events_prune(db, tid, tk_now_ms() - 200LL * 86400000, 5, &deleted, &e), &e);
    CHECK_EQ_INT(deleted, 0);
    /* rechain, so that the edited "at" values are part of the chain */
    rechain(db, tid, false);
    CHECK(chain(db, tid, &st));
    CHECK_OK(tk_events_prune(db, tid, tk_now_ms() - 90LL * 86400000, 5, &deleted, &e), &e);
    CHECK_EQ_INT(deleted, 12);
    /* 8 kept, and one prune event per batch (5, 5, 2) naming the new base */
    CHECK_EQ_INT(n_events(db, tid, ""), 8 + 3);
    CHECK_EQ_INT(n_events(db, tid, " AND kind = 'node' AND action = 'prune'"), 3);
    if (CHECK(chain(db, tid, &st))) {
        CHECK_EQ_INT(st.base_seq, 12);
        CHECK_EQ_INT(st.first_seq, 13);
        CHECK_EQ_INT(st.checked, 11);
        CHECK_EQ_INT(st.head_seq, 23);
    } else {
        FAILF("%s", st.error);
    }
    /* deleting one more behind retention's back is caught: without moving
     * the base, at that seq; moving the base too, because no prune event
     * names the new base */
    CHECK_OK(tk_db_exec(db, "DELETE FROM events WHERE tenant_id = ? AND seq = 13",
                        TK_ARGS(TK_TEXT(tid)), NULL, &e),
             &e);
    CHECK(!chain(db, tid, &st));
    CHECK_EQ_INT(st.broken_seq, 13);
    struct tk_rows *h13 = NULL;
    CHECK_OK(tk_db_exec(db, "SELECT prev_hash FROM events WHERE tenant_id = ? AND seq = 14",
                        TK_ARGS(TK_TEXT(tid)), &h13, &e),
             &e);
    CHECK_OK(tk_db_exec(db, "UPDATE tenants SET event_base_seq = 13, event_base_hash = ? WHERE id = ?",
                        TK_ARGS(TK_TEXT(tk_rows_text(h13, 0, 0)), TK_TEXT(tid)), NULL, &e),
             &e);
    tk_rows_free(h13);
    CHECK(!chain(db, tid, &st));
    CHECK_EQ_INT(st.broken_seq, 14);
    CHECK(strstr(st.error, "retention") != NULL);
    /* the newest event is always kept */
    CHECK_OK(tk_db_exec(db, "DELETE FROM events WHERE tenant_id = ?", TK_ARGS(TK_TEXT(tid)), NULL,
                        &e),
             &e);
    CHECK_OK(tk_db_exec(db, "UPDATE tenants SET event_seq = 0, event_head = '', event_base_seq = 0, "
                            "event_base_hash = '' WHERE id = ?",
                        TK_ARGS(TK_TEXT(tid)), NULL, &e),
             &e);
    for (int i = 1; i <= 3; i++) emit_ev(db, tid, "operator", "create", "event");
    CHECK_OK(tk_events_prune(db, tid, tk_now_ms() + 86400000, 100, &deleted, &e), &e);
    CHECK_EQ_INT(deleted, 2);
    CHECK(chain(db, tid, &st));
    CHECK_EQ_INT(st.first_seq, 3);
    emit_ev(db, tid, "operator", "create", "after the prune");
    CHECK(chain(db, tid, &st));
    CHECK_EQ_INT(st.checked, 3); /* seq 3, the prune event, seq 5 */
out:
    tk_store_put(db);
}

/* The worker prunes on its own and stops promptly. */
void test_events_housekeeper(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    struct tk_housekeeper *h = NULL;
    if (!CHECK_OK(tk_tenant_default(db, tid, &e), &e)) goto out;
    for (int i = 1; i <= 5; i++) emit_ev(db, tid, "operator", "create", "event");
    CHECK_OK(tk_db_exec(db, "UPDATE events SET at = ? WHERE tenant_id = ? AND seq <= 3",
                        TK_ARGS(TK_INT(tk_now_ms() - 10LL * 86400000), TK_TEXT(tid)), NULL, &e),
             &e);
    rechain(db, tid, false);
    tk_store_put(db);
    db = NULL;
    struct tk_housekeeper_opts o = {.retention_days = 7, .interval_ms = 50};
    if (!CHECK_OK(tk_housekeeper_start(f->st, &o, &h, &e), &e)) goto out;
    db = fx_db(f);
    if (!db) goto out;
    int64_t deadline = tk_mono_us() + 10 * 1000000;
    while (n_events(db, tid, " AND seq <= 3") != 0 && tk_mono_us() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ_INT(n_events(db, tid, " AND seq <= 3"), 0);
    /* and it said so in the log it pruned */
    CHECK_EQ_INT(n_events(db, tid, " AND action = 'prune'"), 1);
    struct tk_chain_status st;
    CHECK(chain(db, tid, &st));
    int64_t t0 = tk_mono_us();
    tk_housekeeper_stop(h);
    h = NULL;
    CHECK((tk_mono_us() - t0) / 1000 < 5000);
out:
    tk_housekeeper_stop(h);
    tk_store_put(db);
}

/* issue 13 #2: every filter of GET /v1/events has an index (migration
 * 0004); on SQLite, the planner uses it for the list's own statement. */
void test_events_filter_indexes(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    static const char *names[] = {"events_action", "events_outcome", "events_source",
                                  "events_at_seq", "events_kind", "events_subject"};
    const char *sql = !strcmp(f->backend, "sqlite")
                          ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?"
                          : "SELECT COUNT(*) FROM pg_indexes WHERE indexname = ?";
    for (size_t i = 0; i < TK_NELEM(names); i++) {
        struct tk_rows *r = NULL;
        if (CHECK_OK(tk_db_exec(db, sql, TK_ARGS(TK_TEXT(names[i])), &r, &e), &e) &&
            tk_rows_int(r, 0, 0) != 1)
            FAILF("index %s is missing", names[i]);
        tk_rows_free(r);
    }
    if (!strcmp(f->backend, "sqlite")) {
        static const struct {
            const char *where, *index;
        } plans[] = {
            {"action = ?", "events_action"},
            {"outcome = ?", "events_outcome"},
            {"source = ?", "events_source"},
        };
        for (size_t i = 0; i < TK_NELEM(plans); i++) {
            char q[300];
            snprintf(q, sizeof q,
                     "EXPLAIN QUERY PLAN SELECT id FROM events WHERE tenant_id = ? AND %s ORDER "
                     "BY seq DESC LIMIT ?",
                     plans[i].where);
            struct tk_rows *r = NULL;
            bool used = false;
            if (CHECK_OK(tk_db_exec(db, q, TK_ARGS(TK_TEXT("t"), TK_TEXT("x"), TK_INT(10)), &r, &e),
                         &e))
                for (int k = 0; k < tk_rows_count(r); k++)
                    for (int c = 0; c < tk_rows_columns(r); c++)
                        if (tk_rows_text(r, k, c) && strstr(tk_rows_text(r, k, c), plans[i].index))
                            used = true;
            if (!used) FAILF("the %s filter does not use %s", plans[i].where, plans[i].index);
            tk_rows_free(r);
        }
    }
    tk_store_put(db);
}
