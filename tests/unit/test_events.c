/* test_events.c: src/events/events.h on both backends -- emit, list with
 * cursors and filters, the audit chain, and concurrent writers. */
#include "unit.h"

#include "../../src/events/events.h"
#include "../../src/operators/operators.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool emit(struct tk_db *db, const char *tenant, const char *kind, const char *action,
                 const char *subject, const char *msg)
{
    struct tk_event ev = {
        .tenant_id = tenant,
        .kind = kind,
        .source = "test",
        .action = action,
        .outcome = "ok",
        .subject_type = subject ? "thing" : NULL,
        .subject_id = subject,
        .message = msg,
        .latency_us = -1,
    };
    struct tk_err e;
    return CHECK_OK(tk_event_emit(db, &ev, &e), &e);
}

static bool tenant(struct tk_db *db, char id[TK_UUID_LEN + 1])
{
    struct tk_err e;
    return CHECK_OK(tk_tenant_default(db, id, &e), &e);
}

static bool other_tenant(struct tk_db *db, const char *id, const char *name)
{
    struct tk_err e;
    return CHECK_OK(tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                               TK_ARGS(TK_TEXT(id), TK_TEXT(name), TK_INT(tk_now_ms())), NULL, &e),
                    &e);
}

/* List with q; returns the array (caller decrefs) or NULL. */
static json_t *list(struct tk_db *db, const struct tk_event_query *q, int64_t *next)
{
    json_t *a = NULL;
    struct tk_err e;
    int64_t dummy;
    if (!CHECK_OK(tk_events_list(db, q, &a, next ? next : &dummy, &e), &e)) return NULL;
    return a;
}

static int64_t seq_at(json_t *a, size_t i)
{
    return json_integer_value(json_object_get(json_array_get(a, i), "seq"));
}

static const char *str_at(json_t *a, size_t i, const char *k)
{
    return json_string_value(json_object_get(json_array_get(a, i), k));
}

void test_events_list_paging(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    if (!tenant(db, tid)) goto out;
    enum { N = 23 };
    for (int i = 1; i <= N; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "event %d", i);
        if (!emit(db, tid, i % 2 ? "operator" : "node", "start", NULL, msg)) goto out;
    }
    /* detail and latency survive the trip */
    json_t *detail = json_pack("{s:s, s:i}", "route", "/v1/events", "status", 200);
    struct tk_event ev = {.tenant_id = tid,
                          .trace_id = "trace-123",
                          .kind = "http",
                          .source = "api",
                          .action = "request",
                          .outcome = "ok",
                          .message = "GET /v1/events",
                          .detail = detail,
                          .latency_us = 1234};
    struct tk_err e;
    CHECK_OK(tk_event_emit(db, &ev, &e), &e);
    json_decref(detail);

    /* newest first, every field present */
    struct tk_event_query q = {.tenant_id = tid, .limit = 1};
    int64_t next = -1;
    json_t *a = list(db, &q, &next);
    if (a && CHECK_EQ_INT(json_array_size(a), 1)) {
        CHECK_EQ_INT(seq_at(a, 0), N + 1);
        CHECK_EQ_INT(next, N + 1);
        CHECK(tk_uuid_valid(str_at(a, 0, "id")));
        CHECK_EQ_STR(str_at(a, 0, "trace_id"), "trace-123");
        CHECK_EQ_STR(str_at(a, 0, "kind"), "http");
        CHECK_EQ_STR(str_at(a, 0, "source"), "api");
        CHECK_EQ_STR(str_at(a, 0, "outcome"), "ok");
        CHECK_EQ_STR(str_at(a, 0, "message"), "GET /v1/events");
        json_t *d = json_object_get(json_array_get(a, 0), "detail");
        CHECK_EQ_STR(json_string_value(json_object_get(d, "route")), "/v1/events");
        CHECK_EQ_INT(json_integer_value(json_object_get(d, "status")), 200);
        CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(a, 0), "latency_us")), 1234);
        const char *h = str_at(a, 0, "hash");
        CHECK(h && strlen(h) == 64 && strspn(h, "0123456789abcdef") == 64);
        int64_t at = 0;
        CHECK(str_at(a, 0, "at") && tk_time_parse(str_at(a, 0, "at"), &at) == TK_OK);
        CHECK(at > tk_now_ms() - 600000 && at <= tk_now_ms());
        CHECK_EQ_STR(str_at(a, 0, "node"), "tokend");
    }
    json_decref(a);

    /* pages of 5 cover every event once, newest first across pages */
    static bool seen[N + 2];
    memset(seen, 0, sizeof seen);
    int pages = 0, total = 0, dups = 0;
    int64_t last = INT64_MAX;
    q.limit = 5;
    q.before = 0;
    for (;;) {
        a = list(db, &q, &next);
        if (!a) break;
        pages++;
        for (size_t i = 0; i < json_array_size(a); i++) {
            int64_t s = seq_at(a, i);
            if (s < 1 || s > N + 1) {
                FAILF("seq %lld out of range", (long long)s);
                continue;
            }
            if (seen[s]) dups++;
            seen[s] = true;
            if (s >= last)
                FAILF("seq %lld after %lld: not newest first", (long long)s, (long long)last);
            last = s;
            total++;
        }
        json_decref(a);
        if (!next || pages > 10) break;
        q.before = next;
    }
    CHECK_EQ_INT(total, N + 1);
    CHECK_EQ_INT(dups, 0);
    CHECK_EQ_INT(pages, 5); /* 5+5+5+5+4 */
    CHECK_EQ_INT(next, 0);

    /* a page that ends exactly at the oldest event has no next cursor */
    q.before = 0;
    q.limit = N + 1;
    a = list(db, &q, &next);
    CHECK_EQ_INT(json_array_size(a), N + 1);
    CHECK_EQ_INT(next, 0);
    json_decref(a);
    q.limit = N;
    a = list(db, &q, &next);
    CHECK_EQ_INT(json_array_size(a), N);
    CHECK_EQ_INT(next, 2);
    json_decref(a);
    /* limits are clamped to 1..1000 */
    q.limit = 0;
    a = list(db, &q, &next);
    CHECK_EQ_INT(json_array_size(a), 1);
    json_decref(a);
    q.limit = 1000000;
    a = list(db, &q, &next);
    CHECK_EQ_INT(json_array_size(a), N + 1);
    json_decref(a);

    /* other tenants' events are invisible, and their sequence is their own */
    if (other_tenant(db, "tenant-two", "two")) {
        emit(db, "tenant-two", "operator", "start", NULL, "two's event");
        struct tk_event_query q2 = {.tenant_id = "tenant-two", .limit = 100};
        a = list(db, &q2, &next);
        CHECK_EQ_INT(json_array_size(a), 1);
        CHECK_EQ_INT(seq_at(a, 0), 1);
        json_decref(a);
        q.limit = 1000;
        a = list(db, &q, &next);
        CHECK_EQ_INT(json_array_size(a), N + 1);
        json_decref(a);
    }
    /* an unknown tenant cannot receive events */
    struct tk_event bad = {.tenant_id = "no-such-tenant",
                           .kind = "x",
                           .source = "x",
                           .action = "x",
                           .outcome = "x",
                           .message = "x",
                           .latency_us = -1};
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_event_emit(db, &bad, &e), TK_ENOTFOUND);
    CHECK_EQ_STR(e.code, "unknown_tenant");
out:
    tk_store_put(db);
}

void test_events_filters(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    if (!tenant(db, tid)) goto out;
    /* three batches with clear gaps in time between them */
    emit(db, tid, "operator", "authenticate", "tok-1", "a1"); /* 1 */
    emit(db, tid, "operator", "revoke", "tok-2", "a2");       /* 2 */
    emit(db, tid, "node", "start", NULL, "a3");               /* 3 */
    usleep(20000);
    int64_t t1 = tk_now_ms();
    usleep(20000);
    emit(db, tid, "operator", "authenticate", "tok-1", "b1"); /* 4 */
    emit(db, tid, "http", "request", "tok-2", "b2");          /* 5 */
    usleep(20000);
    int64_t t2 = tk_now_ms();
    usleep(20000);
    emit(db, tid, "node", "stop", NULL, "c1");                /* 6 */
    emit(db, tid, "operator", "authenticate", "tok-3", "c2"); /* 7 */

    struct {
        struct tk_event_query q;
        const char *want; /* seqs, newest first */
    } cases[] = {
        {{.kind = "operator"}, "7,4,2,1"},
        {{.kind = "node"}, "6,3"},
        {{.action = "authenticate"}, "7,4,1"},
        {{.kind = "operator", .action = "revoke"}, "2"},
        {{.subject = "tok-1"}, "4,1"},
        {{.subject = "tok-2"}, "5,2"},
        {{.source = "test", .outcome = "ok", .kind = "http"}, "5"},
        {{.outcome = "denied"}, ""},
        {{.kind = "nothing"}, ""},
        {{.since = t1}, "7,6,5,4"},
        {{.until = t1}, "3,2,1"},
        {{.since = t1, .until = t2}, "5,4"},
        {{.since = t1, .until = t2, .kind = "operator"}, "4"},
        {{.since = t2 + 3600000}, ""},
        {{.before = 5}, "4,3,2,1"},
        {{.before = 5, .kind = "operator"}, "4,2,1"},
        /* follow: oldest first, after the cursor; after = 0 is from the start */
        {{.follow = true, .after = 3}, "4,5,6,7"},
        {{.follow = true}, "1,2,3,4,5,6,7"},
        {{.follow = true, .after = 3, .kind = "operator"}, "4,7"},
        {{.follow = true, .after = 7}, ""},
        {{.follow = true, .after = 2, .before = 6}, "3,4,5"},
        {{.follow = true, .after = 1, .until = t2}, "2,3,4,5"},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        struct tk_event_query q = cases[i].q;
        q.tenant_id = tid;
        q.limit = 100;
        int64_t next = -1;
        json_t *a = list(db, &q, &next);
        if (!a) continue;
        char got[128] = "";
        size_t n = 0;
        for (size_t k = 0; k < json_array_size(a); k++)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", k ? "," : "",
                                  (long long)seq_at(a, k));
        if (strcmp(got, cases[i].want) != 0)
            FAILF("case %zu: seqs \"%s\", want \"%s\"", i, got, cases[i].want);
        if (next != 0) FAILF("case %zu: next %lld with everything on one page", i, (long long)next);
        json_decref(a);
    }

    /* following with a small limit: pages oldest first, cursor moves forward */
    struct tk_event_query q = {.tenant_id = tid, .follow = true, .after = 0, .limit = 3};
    int64_t next = -1;
    int64_t want = 1;
    for (int page = 0; page < 5; page++) {
        json_t *a = list(db, &q, &next);
        if (!a) break;
        for (size_t k = 0; k < json_array_size(a); k++, want++)
            if (seq_at(a, k) != want)
                FAILF("follow page %d item %zu: seq %lld, want %lld", page, k,
                      (long long)seq_at(a, k), (long long)want);
        json_decref(a);
        if (!next) break;
        CHECK_EQ_INT(next, want - 1);
        q.after = next;
    }
    CHECK_EQ_INT(want, 8);
    json_t *a;

    /* filter values are data, not SQL */
    struct tk_event_query evil = {.tenant_id = tid, .kind = "operator' OR '1'='1", .limit = 100};
    a = list(db, &evil, &next);
    CHECK_EQ_INT(json_array_size(a), 0);
    json_decref(a);
out:
    tk_store_put(db);
}

static bool verify(struct tk_db *db, const char *tid, tk_rc want, int64_t want_checked,
                   const char *want_in_msg, int line)
{
    int64_t checked = -1;
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_events_verify(db, tid, &checked, &e);
    bool ok = rc == want && (want_checked < 0 || checked == want_checked) &&
              (!want_in_msg || strstr(e.msg, want_in_msg));
    if (want != TK_OK && strcmp(e.code, "chain_broken") != 0) ok = false;
    if (!ok)
        unit_fail(__FILE__, line, "verify: rc %d (want %d), checked %lld (want %lld), %s: %s",
                  (int)rc, (int)want, (long long)checked, (long long)want_checked, e.code, e.msg);
    return ok;
}

void test_events_verify_tamper(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!tenant(db, tid)) goto out;
    verify(db, tid, TK_OK, 0, NULL, __LINE__); /* an empty chain is fine */
    for (int i = 1; i <= 10; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "event %d", i);
        emit(db, tid, "operator", "start", i % 3 ? "s" : NULL, msg);
    }
    verify(db, tid, TK_OK, 10, NULL, __LINE__);

    /* editing the message of seq 5 breaks the chain at 5 */
    CHECK_OK(tk_db_exec(db, "UPDATE events SET message = ? WHERE tenant_id = ? AND seq = ?",
                        TK_ARGS(TK_TEXT("nothing happened"), TK_TEXT(tid), TK_INT(5)), NULL, &e),
             &e);
    CHECK_EQ_INT(tk_db_changes(db), 1);
    verify(db, tid, TK_ECONFLICT, 4, "seq 5", __LINE__);
    CHECK_OK(tk_db_exec(db, "UPDATE events SET message = ? WHERE tenant_id = ? AND seq = ?",
                        TK_ARGS(TK_TEXT("event 5"), TK_TEXT(tid), TK_INT(5)), NULL, &e),
             &e);
    verify(db, tid, TK_OK, 10, NULL, __LINE__);

    /* any other column, edited inside a transaction that is then undone */
    static const char *edits[] = {
        "UPDATE events SET kind = 'node' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET action = 'stop' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET outcome = 'denied' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET at = at + 1 WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET subject_id = 'other' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET subject_id = NULL WHERE tenant_id = ? AND seq = 4",
        "UPDATE events SET node = 'elsewhere' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET trace_id = 'forged' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET detail = '{}' WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET latency_us = 5 WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET hash = prev_hash WHERE tenant_id = ? AND seq = 3",
        "UPDATE events SET id = 'x' WHERE tenant_id = ? AND seq = 3",
    };
    for (size_t i = 0; i < TK_NELEM(edits); i++) {
        if (!CHECK_OK(tk_db_begin(db, &e), &e)) break;
        CHECK_OK(tk_db_exec(db, edits[i], TK_ARGS(TK_TEXT(tid)), NULL, &e), &e);
        CHECK_EQ_INT(tk_db_changes(db), 1);
        if (!verify(db, tid, TK_ECONFLICT, -1, i == 5 ? "seq 4" : "seq 3", __LINE__))
            FAILF("edit undetected: %s", edits[i]);
        tk_db_rollback(db);
    }
    verify(db, tid, TK_OK, 10, NULL, __LINE__);

    /* removing an event in the middle is detected where the gap is */
    CHECK_OK(tk_db_exec(db, "DELETE FROM events WHERE tenant_id = ? AND seq = ?",
                        TK_ARGS(TK_TEXT(tid), TK_INT(7)), NULL, &e),
             &e);
    verify(db, tid, TK_ECONFLICT, 6, "expected seq 7", __LINE__);
    /* and the chain of another tenant is not affected */
    if (other_tenant(db, "tenant-two", "two")) {
        emit(db, "tenant-two", "node", "start", NULL, "x");
        verify(db, "tenant-two", TK_OK, 1, NULL, __LINE__);
    }
out:
    tk_store_put(db);
}

/* Removing the newest events leaves a chain that is consistent in itself;
 * the tenant row still records the head (event_seq, event_head), so
 * verify can tell, and events.h promises deletions are detectable. */
void test_events_verify_truncated(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!tenant(db, tid)) goto out;
    for (int i = 1; i <= 5; i++)
        emit(db, tid, "operator", "start", NULL, "e");
    verify(db, tid, TK_OK, 5, NULL, __LINE__);
    CHECK_OK(tk_db_exec(db, "DELETE FROM events WHERE tenant_id = ? AND seq = ?",
                        TK_ARGS(TK_TEXT(tid), TK_INT(5)), NULL, &e),
             &e);
    verify(db, tid, TK_ECONFLICT, -1, NULL, __LINE__);
out:
    tk_store_put(db);
}

/* ---- four writers at once ---- */

struct emit_run {
    struct tk_store *st;
    const char *tid;
    int me;
    int errors;
};

static void *emit_worker(void *arg)
{
    struct emit_run *w = arg;
    struct tk_err e;
    struct tk_db *db = tk_store_get(w->st, &e);
    if (!db) {
        w->errors = 1000;
        return NULL;
    }
    char subject[16];
    snprintf(subject, sizeof subject, "thread-%d", w->me);
    for (int i = 0; i < 50; i++) {
        struct tk_event ev = {.tenant_id = w->tid,
                              .kind = "load",
                              .source = "test",
                              .action = "emit",
                              .outcome = "ok",
                              .subject_id = subject,
                              .message = "concurrent",
                              .latency_us = i};
        if (tk_event_emit(db, &ev, &e) != TK_OK) {
            if (w->errors++ < 3) fprintf(stderr, "emit: %s %s\n", e.code, e.msg);
        }
    }
    tk_store_put(db);
    return NULL;
}

void test_events_concurrent(struct fx *f)
{
    enum { THREADS = 4, EACH = 50 };
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    bool ok = tenant(db, tid);
    tk_store_put(db);
    if (!ok) return;

    struct emit_run w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct emit_run){.st = f->st, .tid = tid, .me = i};
        pthread_create(&th[i], NULL, emit_worker, &w[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].errors, 0);
    }

    db = fx_db(f);
    if (!db) return;
    struct tk_rows *r = NULL;
    struct tk_err e;
    if (CHECK_OK(tk_db_exec(db, "SELECT seq FROM events WHERE tenant_id = ? ORDER BY seq",
                            TK_ARGS(TK_TEXT(tid)), &r, &e),
                 &e)) {
        CHECK_EQ_INT(tk_rows_count(r), THREADS * EACH);
        int gaps = 0;
        for (int i = 0; i < tk_rows_count(r); i++)
            if (tk_rows_int(r, i, 0) != i + 1 && gaps++ < 3)
                FAILF("row %d has seq %lld", i, (long long)tk_rows_int(r, i, 0));
        CHECK_EQ_INT(gaps, 0);
    }
    tk_rows_free(r);
    r = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT subject_id, COUNT(*) FROM events WHERE tenant_id = ? "
                            "GROUP BY subject_id ORDER BY subject_id",
                            TK_ARGS(TK_TEXT(tid)), &r, &e),
                 &e)) {
        CHECK_EQ_INT(tk_rows_count(r), THREADS);
        for (int i = 0; i < tk_rows_count(r); i++)
            CHECK_EQ_INT(tk_rows_int(r, i, 1), EACH);
    }
    tk_rows_free(r);
    r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT event_seq FROM tenants WHERE id = ?", TK_ARGS(TK_TEXT(tid)),
                            &r, &e),
                 &e))
        CHECK_EQ_INT(tk_rows_int(r, 0, 0), THREADS * EACH);
    tk_rows_free(r);
    verify(db, tid, TK_OK, THREADS * EACH, NULL, __LINE__);
    tk_store_put(db);
}

static int64_t count_events(struct tk_db *db, const char *tid)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t n = -1;
    if (CHECK_OK(tk_db_exec(db, "SELECT COUNT(*) FROM events WHERE tenant_id = ?",
                            TK_ARGS(TK_TEXT(tid)), &r, &e),
                 &e))
        n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

/* issue 13 #9/#18: tk_event_emit_in writes in the caller's transaction
 * (rolled back with it, committed with it), refuses without one, and
 * tk_event_emit inside a transaction is refused instead of committing the
 * caller's work. */
void test_events_emit_in(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tid[TK_UUID_LEN + 1];
    struct tk_err e;
    if (!tenant(db, tid)) goto out;
    struct tk_event ev = {.tenant_id = tid, .kind = "operator", .source = "test",
                          .action = "create", .outcome = "ok", .message = "in tx",
                          .latency_us = -1};
    /* outside a transaction: refused */
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_event_emit_in(db, &ev, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "not_in_transaction");
    CHECK_EQ_INT(count_events(db, tid), 0);

    /* rolled back with the caller's work */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES ('t2', 't2', 1)",
                        NULL, 0, NULL, &e),
             &e);
    CHECK_OK(tk_event_emit_in(db, &ev, &e), &e);
    /* tk_event_emit inside the transaction is refused, nothing committed */
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_event_emit(db, &ev, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "nested_transaction");
    CHECK(tk_db_in_tx(db));
    tk_db_rollback(db);
    CHECK_EQ_INT(count_events(db, tid), 0);
    verify(db, tid, TK_OK, 0, NULL, __LINE__);

    /* committed with it: two events in one transaction chain in order */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_event_emit_in(db, &ev, &e), &e);
    ev.action = "revoke";
    CHECK_OK(tk_event_emit_in(db, &ev, &e), &e);
    CHECK_OK(tk_db_commit(db, &e), &e);
    CHECK_EQ_INT(count_events(db, tid), 2);
    verify(db, tid, TK_OK, 2, NULL, __LINE__);
    /* and tk_event_emit keeps working after */
    CHECK_OK(tk_event_emit(db, &ev, &e), &e);
    verify(db, tid, TK_OK, 3, NULL, __LINE__);
out:
    tk_store_put(db);
}
