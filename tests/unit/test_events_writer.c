/* test_events_writer.c: the event writer (src/events/writer.c) on both
 * backends -- group commits keep the chain verifiable, emit waits for the
 * commit, a full queue refuses, a stalled store times emits out, stop
 * drains, and many threads (and another "node" writing directly) leave
 * exact counts. */
#include "unit.h"

#include "../../src/events/events.h"
#include "../../src/operators/operators.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct tk_event ev_of(const char *tenant, const char *action, const char *subject,
                             const char *trace)
{
    struct tk_event ev = {.tenant_id = tenant, .trace_id = trace, .kind = "test",
                          .source = "unit", .action = action, .outcome = "ok",
                          .subject_type = subject ? "thing" : NULL, .subject_id = subject,
                          .message = "an event of the writer test", .latency_us = -1};
    return ev;
}

static bool tenants(struct tk_db *db, char a[TK_UUID_LEN + 1], char b[TK_UUID_LEN + 1])
{
    struct tk_err e;
    if (!CHECK_OK(tk_tenant_default(db, a, &e), &e)) return false;
    tk_uuid7(b);
    return CHECK_OK(tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                               TK_ARGS(TK_TEXT(b), TK_TEXT("second"), TK_INT(tk_now_ms())), NULL,
                               &e),
                    &e);
}

static int64_t count_where(struct tk_db *db, const char *sql, const char *arg)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t n = -1;
    if (CHECK_OK(tk_db_exec(db, sql, TK_ARGS(TK_TEXT(arg)), &r, &e), &e))
        n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

static int64_t count_events(struct tk_db *db, const char *tid)
{
    return count_where(db, "SELECT COUNT(*) FROM events WHERE tenant_id = ?", tid);
}

static bool chain_ok(struct tk_db *db, const char *tid, int64_t want, int line)
{
    struct tk_chain_status st;
    struct tk_err e;
    tk_rc rc = tk_events_verify_chain(db, tid, &st, &e);
    if (rc != TK_OK) {
        FAILF("line %d: chain of %s does not verify: %s", line, tid, e.msg);
        return false;
    }
    if (want >= 0 && st.checked != want) {
        FAILF("line %d: chain of %s has %lld events, want %lld", line, tid, (long long)st.checked,
              (long long)want);
        return false;
    }
    return true;
}

static bool start(struct fx *f, int queue, int timeout_ms)
{
    struct tk_events_writer_opts o = {.queue = queue, .timeout_ms = timeout_ms};
    struct tk_err e;
    return CHECK_OK(tk_events_writer_start(f->st, &o, &e), &e);
}

/* Hold what the writer needs: SQLite's write lock (begin), PostgreSQL's
 * lock on the tenant's row. Undone with tk_db_rollback + tk_store_put. */
static struct tk_db *stall(struct fx *f, const char *tid)
{
    struct tk_db *db = fx_db(f);
    struct tk_err e;
    if (!db) return NULL;
    if (!CHECK_OK(tk_db_begin(db, &e), &e) ||
        !CHECK_OK(tk_db_lock_row(db, "tenants", tid, &e), &e)) {
        tk_store_put(db);
        return NULL;
    }
    return db;
}

static void unstall(struct tk_db *db)
{
    tk_db_rollback(db);
    tk_store_put(db);
}

void test_events_writer_batches(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    if (!tenants(db, ta, tb) || !start(f, 100000, 5000)) goto out;
    struct tk_events_writer_stats s0, s1;
    tk_events_writer_stats(&s0);
    struct tk_err e;
    enum { N = 3000 };
    int refused = 0;
    for (int i = 0; i < N; i++) {
        char subj[TK_UUID_LEN + 1];
        tk_uuid7(subj);
        struct tk_event ev = ev_of(i % 3 ? ta : tb, "post", subj, NULL);
        json_t *d = json_pack("{s:i, s:s}", "i", i, "text", "caf\xc3\xa9");
        ev.detail = d;
        if (tk_event_post(&ev, &e) != TK_OK && refused++ < 3) FAILF("post %d: %s", i, e.msg);
        json_decref(d);
        /* now and then, an action with its event in the caller's own
         * transaction, interleaved with the writer's batches */
        if (i % 500 == 250) {
            struct tk_event in = ev_of(ta, "emit_in", NULL, NULL);
            if (CHECK_OK(tk_db_begin(db, &e), &e)) {
                if (CHECK_OK(tk_event_emit_in(db, &in, &e), &e))
                    CHECK_OK(tk_db_commit(db, &e), &e);
                else
                    tk_db_rollback(db);
            }
        }
    }
    CHECK_EQ_INT(refused, 0);
    CHECK(tk_events_writer_sync(10000));
    tk_events_writer_stats(&s1);
    CHECK_EQ_INT(s1.posted - s0.posted, N);
    CHECK_EQ_INT(s1.written - s0.written, N);
    CHECK_EQ_INT(s1.failed - s0.failed, 0);
    CHECK_EQ_INT(s1.queued, 0);
    /* group commit: fewer transactions than events */
    CHECK(s1.batches - s0.batches < N);
    CHECK(s1.batch_max > 1);
    CHECK_EQ_INT(count_events(db, ta), N - N / 3 + 6);
    CHECK_EQ_INT(count_events(db, tb), N / 3);
    chain_ok(db, ta, N - N / 3 + 6, __LINE__);
    chain_ok(db, tb, N / 3, __LINE__);
    /* times follow the chain's order (of the writer's events: those of
     * the caller's own transactions are stamped before they get the lock) */
    CHECK_EQ_INT(count_where(db,
                             "SELECT COUNT(*) FROM events a JOIN events b ON a.tenant_id = "
                             "b.tenant_id AND b.seq = a.seq + 1 WHERE a.tenant_id = ? AND "
                             "b.at < a.at AND a.action = 'post' AND b.action = 'post'",
                             ta),
                 0);
out:
    CHECK(tk_events_writer_stop(0));
    tk_store_put(db);
}

void test_events_writer_emit(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    if (!tenants(db, ta, tb) || !start(f, 1000, 5000)) goto out;
    struct tk_err e;
    /* when emit returns, the event is committed: another connection sees it */
    for (int i = 0; i < 20; i++) {
        char trace[TK_UUID_LEN + 1];
        tk_uuid7(trace);
        struct tk_event ev = ev_of(i % 2 ? ta : tb, "emit", NULL, trace);
        if (!CHECK_OK(tk_event_emit(db, &ev, &e), &e)) break;
        struct tk_db *other = fx_db(f);
        if (!other) break;
        CHECK_EQ_INT(count_where(other, "SELECT COUNT(*) FROM events WHERE trace_id = ?", trace),
                     1);
        tk_store_put(other);
    }
    /* emit needs no connection while the writer runs */
    struct tk_event ev = ev_of(ta, "emit", NULL, NULL);
    CHECK_OK(tk_event_emit(NULL, &ev, &e), &e);
    /* inside a transaction it would wait for its own locks: refused */
    if (CHECK_OK(tk_db_begin(db, &e), &e)) {
        CHECK_EQ_INT(tk_event_emit(db, &ev, &e), TK_EINTERNAL);
        CHECK_EQ_STR(e.code, "in_transaction");
        tk_db_rollback(db);
    }
    /* an unknown tenant: emit says so; a post is counted as failed */
    char nobody[TK_UUID_LEN + 1];
    tk_uuid7(nobody);
    struct tk_event bad = ev_of(nobody, "emit", NULL, NULL);
    CHECK_EQ_INT(tk_event_emit(db, &bad, &e), TK_ENOTFOUND);
    CHECK_EQ_STR(e.code, "unknown_tenant");
    struct tk_events_writer_stats s0, s1;
    tk_events_writer_stats(&s0);
    CHECK_OK(tk_event_post(&bad, &e), &e);
    struct tk_event none = ev_of(NULL, "post", NULL, NULL);
    CHECK_EQ_INT(tk_event_post(&none, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "tenant_id");
    CHECK(tk_events_writer_sync(5000));
    tk_events_writer_stats(&s1);
    CHECK_EQ_INT(s1.failed - s0.failed, 1);
    chain_ok(db, ta, 11, __LINE__);
    chain_ok(db, tb, 10, __LINE__);
out:
    CHECK(tk_events_writer_stop(0));
    tk_store_put(db);
}

void test_events_writer_queue_full(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    bool ok = tenants(db, ta, tb);
    tk_store_put(db);
    if (!ok || !start(f, 8, 300)) return;
    struct tk_db *held = stall(f, ta);
    if (!held) goto out;
    struct tk_events_writer_stats s0, s1;
    tk_events_writer_stats(&s0);
    struct tk_err e;
    int accepted = 0, full = 0;
    for (int i = 0; i < 50; i++) {
        struct tk_event ev = ev_of(ta, "post", NULL, NULL);
        tk_rc rc = tk_event_post(&ev, &e);
        if (rc == TK_OK) {
            accepted++;
        } else {
            full++;
            CHECK_EQ_INT(rc, TK_EUNAVAIL);
            CHECK_EQ_STR(e.code, "events_queue_full");
        }
    }
    /* posts take 6 of the 8 (the last quarter is the emits'); the writer
     * may hold one batch more, stuck */
    CHECK(accepted >= 6 && accepted <= 14);
    CHECK_EQ_INT(full, 50 - accepted);
    /* once the writer holds its batch (stuck on the lock), fill the queue
     * again: nothing can leave it now */
    struct tk_events_writer_stats sq;
    for (int64_t until = tk_mono_ms() + 10000; tk_mono_ms() < until;) {
        tk_events_writer_stats(&sq);
        if (sq.queued < accepted) break; /* the writer took some */
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    CHECK(sq.queued < accepted);
    for (int i = 0; i < 20; i++) {
        struct tk_event ev = ev_of(ta, "post", NULL, NULL);
        if (tk_event_post(&ev, &e) == TK_OK) {
            accepted++;
        } else {
            full++;
            CHECK(strstr(e.msg, "three quarters") != NULL);
            break;
        }
    }
    CHECK(accepted <= 14);
    tk_events_writer_stats(&sq);
    CHECK_EQ_INT(sq.queued, 6);
    /* a flood of posts does not refuse an emit: it is queued in the
     * reserve (and, the store being stuck, withdrawn at its timeout) */
    struct tk_event ev = ev_of(ta, "emit", NULL, NULL);
    CHECK_EQ_INT(tk_event_emit(NULL, &ev, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "events_timeout");
    CHECK(strstr(e.msg, "withdrawn") != NULL);
    tk_events_writer_stats(&s1);
    CHECK_EQ_INT(s1.dropped - s0.dropped, full);
    CHECK_EQ_INT(s1.queue_max, 8);
    unstall(held);
    CHECK(tk_events_writer_sync(20000));
    db = fx_db(f);
    if (db) {
        CHECK_EQ_INT(count_events(db, ta), accepted);
        chain_ok(db, ta, accepted, __LINE__);
        tk_store_put(db);
    }
out:
    CHECK(tk_events_writer_stop(0));
}

/* Large events fill the queue by bytes (queue_bytes) before events_queue. */
void test_events_writer_queue_bytes(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    bool ok = tenants(db, ta, tb);
    tk_store_put(db);
    struct tk_err e;
    struct tk_events_writer_opts o = {.queue = 100000, .timeout_ms = 5000,
                                      .queue_bytes = 4 << 20};
    if (!ok || !CHECK_OK(tk_events_writer_start(f->st, &o, &e), &e)) return;
    struct tk_db *held = stall(f, ta);
    if (!held) goto out;
    enum { BIG = 256 << 10 };
    char *big = malloc(BIG + 1);
    memset(big, 'x', BIG);
    big[BIG] = '\0';
    json_t *d = json_pack("{s:s}", "blob", big);
    free(big);
    int accepted = 0, full = 0;
    for (int i = 0; i < 40; i++) {
        struct tk_event ev = ev_of(ta, "big", NULL, NULL);
        ev.detail = d;
        if (tk_event_post(&ev, &e) == TK_OK) {
            accepted++;
        } else {
            full++;
            CHECK_EQ_STR(e.code, "events_queue_full");
        }
    }
    json_decref(d);
    /* 11 posts fit in 3 MiB (three quarters of queue_bytes), and the writer
     * may hold a batch of them, stuck */
    CHECK(accepted >= 11 && accepted <= 27);
    CHECK(full >= 13);
    unstall(held);
    CHECK(tk_events_writer_sync(30000));
    db = fx_db(f);
    if (db) {
        CHECK_EQ_INT(count_events(db, ta), accepted);
        chain_ok(db, ta, accepted, __LINE__);
        tk_store_put(db);
    }
out:
    CHECK(tk_events_writer_stop(0));
}

void test_events_writer_timeout(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    bool ok = tenants(db, ta, tb);
    tk_store_put(db);
    if (!ok || !start(f, 100, 300)) return;
    struct tk_db *held = stall(f, ta);
    if (!held) goto out;
    struct tk_err e;
    char t1[TK_UUID_LEN + 1], t2[TK_UUID_LEN + 1];
    tk_uuid7(t1);
    tk_uuid7(t2);
    /* the first is taken by the writer, which then waits for the lock */
    struct tk_event ev1 = ev_of(ta, "emit", NULL, t1);
    int64_t t0 = tk_mono_ms();
    CHECK_EQ_INT(tk_event_emit(NULL, &ev1, &e), TK_EUNAVAIL);
    int64_t took = tk_mono_ms() - t0;
    CHECK_EQ_STR(e.code, "events_timeout");
    CHECK(took >= 250 && took < 5000);
    bool first_taken = strstr(e.msg, "may still be recorded") != NULL;
    /* the second waits in the queue behind it, and is withdrawn */
    struct tk_event ev2 = ev_of(ta, "emit", NULL, t2);
    CHECK_EQ_INT(tk_event_emit(NULL, &ev2, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "events_timeout");
    if (first_taken) CHECK(strstr(e.msg, "withdrawn") != NULL);
    unstall(held);
    CHECK(tk_events_writer_sync(20000));
    struct tk_events_writer_stats s;
    tk_events_writer_stats(&s);
    CHECK(s.timeouts >= 2);
    CHECK(s.withdrawn >= 1);
    db = fx_db(f);
    if (db) {
        if (first_taken)
            CHECK_EQ_INT(count_where(db, "SELECT COUNT(*) FROM events WHERE trace_id = ?", t2),
                         0);
        int64_t n = count_events(db, ta);
        CHECK(n == 0 || n == 1); /* the first may have been written after all */
        chain_ok(db, ta, n, __LINE__);
        /* and the writer goes on */
        struct tk_event ev3 = ev_of(ta, "emit", NULL, NULL);
        CHECK_OK(tk_event_emit(NULL, &ev3, &e), &e);
        chain_ok(db, ta, n + 1, __LINE__);
        tk_store_put(db);
    }
out:
    CHECK(tk_events_writer_stop(0));
}

void test_events_writer_stop_drains(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    if (!tenants(db, ta, tb) || !start(f, 100000, 5000)) goto out;
    struct tk_err e;
    enum { N = 5000 };
    int refused = 0;
    for (int i = 0; i < N; i++) {
        struct tk_event ev = ev_of(i % 2 ? ta : tb, "post", NULL, NULL);
        if (tk_event_post(&ev, &e) != TK_OK) refused++;
    }
    CHECK_EQ_INT(refused, 0);
    CHECK(tk_events_writer_stop(0)); /* no sync: stop writes what is queued */
    CHECK(!tk_events_writer_running());
    CHECK_EQ_INT(count_events(db, ta), N / 2);
    CHECK_EQ_INT(count_events(db, tb), N / 2);
    chain_ok(db, ta, N / 2, __LINE__);
    chain_ok(db, tb, N / 2, __LINE__);
    /* after stop: posts are refused; emit writes on the caller's connection */
    struct tk_event ev = ev_of(ta, "post", NULL, NULL);
    CHECK_EQ_INT(tk_event_post(&ev, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "events_stopping");
    CHECK_EQ_INT(tk_event_emit(NULL, &ev, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "events_stopping");
    CHECK_OK(tk_event_emit(db, &ev, &e), &e);
    chain_ok(db, ta, N / 2 + 1, __LINE__);
    CHECK(tk_events_writer_sync(100)); /* nothing to wait for */
out:
    CHECK(tk_events_writer_stop(0)); /* twice: a no-op */
    tk_store_put(db);
}

/* The writer hashes a canonical form it builds itself; verify rebuilds it
 * with jansson. Every control character, quotes, backslashes, slashes and
 * multi-byte characters in every field (and in the node's name) must give
 * the same bytes, or the chain does not verify. */
void test_events_writer_canonical(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    if (!tenants(db, ta, tb) || !start(f, 1000, 5000)) goto out;
    char all[160];
    int k = 0;
    for (int c = 1; c < 0x20; c++) all[k++] = (char)c;
    const char *more = "\"\\/\x7f caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x94\x91 \xed\xa0\x80 \xc0\xaf end";
    memcpy(all + k, more, strlen(more) + 1);
    tk_events_set_node("node \"q\" \\ \t/\xc3\xa9");
    struct tk_err e;
    int written = 0;
    for (int field = 0; field < 9; field++) {
        struct tk_event ev = ev_of(ta, "canonical", NULL, NULL);
        json_t *d = NULL;
        switch (field) {
        case 0: ev.trace_id = all; break;
        case 1: ev.kind = all; break;
        case 2: ev.source = all; break;
        case 3: ev.action = all; break;
        case 4: ev.outcome = all; break;
        case 5: ev.subject_type = all; ev.subject_id = all; break;
        case 6: ev.message = all; break;
        case 7: d = json_pack("{s:s, s:i, s:n}", all, all, "n", -5, "z"); break;
        case 8: ev.latency_us = 1234567; ev.message = ""; break;
        }
        ev.detail = d;
        /* through the writer, and directly */
        if (CHECK_OK(tk_event_post(&ev, &e), &e)) written++;
        tk_events_writer_stop(0);
        if (CHECK_OK(tk_event_emit_now(db, &ev, &e), &e)) written++;
        start(f, 1000, 5000);
        json_decref(d);
    }
    CHECK(tk_events_writer_sync(5000));
    chain_ok(db, ta, written, __LINE__);
out:
    tk_events_set_node("tokend");
    CHECK(tk_events_writer_stop(0));
    tk_store_put(db);
}

/* ---- many threads ---- */

enum { THREADS = 8, POSTS = 400, EMITS = 20, DIRECT = 60 };

struct poster {
    const char *ta, *tb;
    char subject[TK_UUID_LEN + 1];
    int errors;
};

static void *poster_run(void *arg)
{
    struct poster *p = arg;
    struct tk_err e;
    for (int i = 0; i < POSTS + EMITS; i++) {
        struct tk_event ev = ev_of(i % 2 ? p->ta : p->tb, i < POSTS ? "post" : "emit", p->subject,
                                   NULL);
        tk_rc rc = i < POSTS ? tk_event_post(&ev, &e) : tk_event_emit(NULL, &ev, &e);
        if (rc != TK_OK && p->errors++ < 3) fprintf(stderr, "  poster: %s\n", e.msg);
    }
    return NULL;
}

/* Another node on the same database: its own store, writing directly. */
struct other_node {
    const char *url, *ta;
    char subject[TK_UUID_LEN + 1];
    int errors;
};

static void *other_node_run(void *arg)
{
    struct other_node *o = arg;
    struct tk_err e;
    struct tk_store *st = NULL;
    struct tk_store_opts so = {.pool_size = 1, .busy_timeout_ms = 20000, .migrate = false};
    if (tk_store_open(o->url, &so, &st, &e) != TK_OK) {
        o->errors = DIRECT;
        return NULL;
    }
    struct tk_db *db = tk_store_get(st, &e);
    for (int i = 0; db && i < DIRECT; i++) {
        struct tk_event ev = ev_of(o->ta, "direct", o->subject, NULL);
        if (tk_event_emit_now(db, &ev, &e) != TK_OK && o->errors++ < 3)
            fprintf(stderr, "  other node: %s\n", e.msg);
    }
    if (!db) o->errors = DIRECT;
    tk_store_put(db);
    tk_store_close(st);
    return NULL;
}

void test_events_writer_threads(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char ta[TK_UUID_LEN + 1], tb[TK_UUID_LEN + 1];
    bool ok = tenants(db, ta, tb);
    tk_store_put(db);
    if (!ok || !start(f, 100000, 20000)) return;
    struct tk_events_writer_stats s0, s1;
    tk_events_writer_stats(&s0);
    struct poster p[THREADS];
    pthread_t th[THREADS + 1];
    struct other_node on = {.url = f->url, .ta = ta};
    tk_uuid7(on.subject);
    pthread_create(&th[THREADS], NULL, other_node_run, &on);
    for (int i = 0; i < THREADS; i++) {
        p[i] = (struct poster){.ta = ta, .tb = tb};
        tk_uuid7(p[i].subject);
        pthread_create(&th[i], NULL, poster_run, &p[i]);
    }
    for (int i = 0; i <= THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) CHECK_EQ_INT(p[i].errors, 0);
    CHECK_EQ_INT(on.errors, 0);
    CHECK(tk_events_writer_stop(0));
    tk_events_writer_stats(&s1);
    int64_t total = THREADS * (POSTS + EMITS);
    CHECK_EQ_INT(s1.posted - s0.posted, THREADS * POSTS);
    CHECK_EQ_INT(s1.emitted - s0.emitted, THREADS * EMITS);
    CHECK_EQ_INT(s1.written - s0.written, total);
    CHECK_EQ_INT(s1.failed - s0.failed, 0);
    CHECK_EQ_INT(s1.wait_count - s0.wait_count, THREADS * EMITS);
    db = fx_db(f);
    if (!db) return;
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ_INT(count_where(db, "SELECT COUNT(*) FROM events WHERE subject_id = ?",
                                 p[i].subject),
                     POSTS + EMITS);
    CHECK_EQ_INT(count_where(db, "SELECT COUNT(*) FROM events WHERE subject_id = ?", on.subject),
                 DIRECT);
    /* POSTS + EMITS is even: half of each thread's events in each tenant */
    chain_ok(db, ta, total / 2 + DIRECT, __LINE__);
    chain_ok(db, tb, total / 2, __LINE__);
    tk_store_put(db);
}
