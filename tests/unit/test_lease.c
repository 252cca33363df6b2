/* test_lease.c: tk_lease_claim / tk_lease_release on both backends -- the
 * primitive background work stands on. Several processes claim from one
 * table at once and every row must be claimed exactly once. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEASE_TABLE                                                                                \
    "CREATE TABLE lease_test (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, due_at BIGINT NOT "    \
    "NULL, lease_owner TEXT, lease_until BIGINT)"

static const struct tk_lease_spec spec = {.table = "lease_test", .due_column = "due_at"};

static bool add_row(struct tk_db *db, const char *id, int64_t due)
{
    struct tk_err e;
    return CHECK_OK(tk_db_exec(db,
                               "INSERT INTO lease_test (id, tenant_id, due_at) VALUES (?, ?, ?)",
                               TK_ARGS(TK_TEXT(id), TK_TEXT("tenant-1"), TK_INT(due)), NULL, &e),
                    &e);
}

/* ---- many processes, one table ---- */

enum { ROWS = 2000, CHILDREN = 4, BATCH = 25 };

/* A child: open its own store, wait for the start signal, claim batches
 * until none is left, write each claimed id to its file. Exit status 0 on
 * success; never returns. */
TK_NORETURN static void claim_child(const char *url, const char *dir, int me, int go)
{
    char path[512], owner[32];
    snprintf(path, sizeof path, "%s/claims-%d.txt", dir, me);
    snprintf(owner, sizeof owner, "child-%d", me);
    FILE *out = fopen(path, "w");
    struct tk_store_opts o = {.pool_size = 1, .busy_timeout_ms = 20000, .migrate = false};
    struct tk_store *st = NULL;
    struct tk_err e;
    int status = 0;
    if (!out || tk_store_open(url, &o, &st, &e) != TK_OK) {
        fprintf(stderr, "child %d: cannot start: %s\n", me, out ? e.msg : "fopen");
        _exit(2);
    }
    struct tk_db *db = tk_store_get(st, &e);
    if (!db) {
        fprintf(stderr, "child %d: %s\n", me, e.msg);
        _exit(2);
    }
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR) {
    } /* released together: EOF */
    int64_t now = tk_now_ms();
    for (;;) {
        struct tk_rows *r = NULL;
        tk_rc rc = tk_lease_claim(db, &spec, owner, now, now + 3600 * 1000, BATCH, &r, &e);
        if (rc != TK_OK) {
            fprintf(stderr, "child %d: claim failed: %s %s\n", me, e.code, e.msg);
            status = 3;
            break;
        }
        int n = tk_rows_count(r);
        if (n > BATCH) status = 4;
        for (int i = 0; i < n; i++)
            fprintf(out, "%s %s\n", tk_rows_text(r, i, 0), tk_rows_text(r, i, 1));
        tk_rows_free(r);
        if (n == 0) break;
        usleep(1000); /* "work" on the batch, so that the others get their turn */
    }
    if (fclose(out) != 0) status = 5;
    tk_store_put(db);
    tk_store_close(st);
    _exit(status);
}

void test_lease_processes(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    int64_t now = tk_now_ms();
    CHECK_OK(tk_db_begin(db, &e), &e);
    for (int i = 0; i < ROWS; i++) {
        char id[32];
        snprintf(id, sizeof id, "row-%04d", i);
        if (!add_row(db, id, now - 1 - (i % 97))) break;
    }
    CHECK_OK(tk_db_commit(db, &e), &e);
    tk_store_put(db);
    /* No connection crosses fork(): SQLite forbids it, and a libpq one
     * would be shared by two processes. */
    fx_close_store(f);

    int go[2];
    if (!CHECK(pipe(go) == 0)) return;
    fflush(stdout);
    fflush(stderr);
    pid_t kids[CHILDREN];
    int started = 0;
    for (int i = 0; i < CHILDREN; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(go[1]);
            claim_child(f->url, f->dir, i, go[0]);
        }
        if (kids[i] < 0) {
            FAILF("fork: %s", strerror(errno));
            break;
        }
        started++;
    }
    close(go[0]);
    close(go[1]); /* go */
    for (int i = 0; i < started; i++) {
        int st = 0;
        while (waitpid(kids[i], &st, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAILF("child %d ended with status 0x%x", i, st);
    }
    if (!CHECK_EQ_INT(started, CHILDREN)) return;

    /* Every row claimed exactly once, by the owner the database names. */
    static int claimed_by[ROWS];
    for (int i = 0; i < ROWS; i++)
        claimed_by[i] = -1;
    int dups = 0, strange = 0, busy_children = 0, total = 0;
    for (int c = 0; c < CHILDREN; c++) {
        char path[512], line[128];
        snprintf(path, sizeof path, "%s/claims-%d.txt", f->dir, c);
        FILE *in = fopen(path, "r");
        if (!CHECK(in != NULL)) continue;
        int mine = 0;
        while (fgets(line, sizeof line, in)) {
            int k;
            char tenant[32];
            if (sscanf(line, "row-%d %31s", &k, tenant) != 2 || k < 0 || k >= ROWS ||
                strcmp(tenant, "tenant-1") != 0) {
                if (strange++ < 3) FAILF("child %d wrote '%s'", c, line);
                continue;
            }
            if (claimed_by[k] >= 0 && dups++ < 5)
                FAILF("row-%04d claimed by child %d and child %d", k, claimed_by[k], c);
            claimed_by[k] = c;
            mine++;
            total++;
        }
        fclose(in);
        if (mine) busy_children++;
    }
    int missing = 0;
    for (int i = 0; i < ROWS; i++)
        if (claimed_by[i] < 0 && missing++ < 5) FAILF("row-%04d never claimed", i);
    CHECK_EQ_INT(dups, 0);
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(strange, 0);
    CHECK_EQ_INT(total, ROWS);
    CHECK(busy_children >= 2); /* the claims really competed */

    if (!CHECK_OK(fx_open_store(f, 2, &e), &e)) return;
    db = fx_db(f);
    if (!db) return;
    struct tk_rows *r = NULL;
    if (CHECK_OK(
            tk_db_exec(db, "SELECT id, lease_owner, lease_until FROM lease_test", NULL, 0, &r, &e),
            &e)) {
        CHECK_EQ_INT(tk_rows_count(r), ROWS);
        int wrong = 0;
        for (int i = 0; i < tk_rows_count(r); i++) {
            int k = -1;
            sscanf(tk_rows_text(r, i, 0), "row-%d", &k);
            char want[32];
            snprintf(want, sizeof want, "child-%d", k >= 0 && k < ROWS ? claimed_by[k] : -9);
            const char *owner = tk_rows_text(r, i, 1);
            if ((!owner || strcmp(owner, want) != 0 || tk_rows_int(r, i, 2) < now + 3000 * 1000) &&
                wrong++ < 3)
                FAILF("%s: lease_owner %s, the claims file says %s", tk_rows_text(r, i, 0),
                      owner ? owner : "NULL", want);
        }
        CHECK_EQ_INT(wrong, 0);
    }
    tk_rows_free(r);
    tk_store_put(db);
}

/* ---- the rules of one lease ---- */

static int claim(struct tk_db *db, const char *owner, int64_t now, int64_t until, int limit,
                 char ids[][16], int max)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_lease_claim(db, &spec, owner, now, until, limit, &r, &e), &e)) return -1;
    int n = tk_rows_count(r);
    for (int i = 0; i < n && i < max; i++)
        snprintf(ids[i], 16, "%s", tk_rows_text(r, i, 0));
    CHECK_EQ_INT(tk_rows_columns(r), 3);
    tk_rows_free(r);
    return n;
}

static void owner_of(struct tk_db *db, const char *id, char *out, size_t n, int64_t *until)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    out[0] = '\0';
    *until = -1;
    if (CHECK_OK(tk_db_exec(db, "SELECT lease_owner, lease_until FROM lease_test WHERE id = ?",
                            TK_ARGS(TK_TEXT(id)), &r, &e),
                 &e) &&
        tk_rows_count(r) == 1) {
        snprintf(out, n, "%s", tk_rows_text(r, 0, 0) ? tk_rows_text(r, 0, 0) : "(none)");
        *until = tk_rows_null(r, 0, 1) ? 0 : tk_rows_int(r, 0, 1);
    }
    tk_rows_free(r);
}

static bool has(char ids[][16], int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(ids[i], id)) return true;
    return false;
}

void test_lease_rules(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    const int64_t T = INT64_C(1800000000000); /* a fixed "now" */
    /* ids sort differently from due times */
    add_row(db, "a-late", T - 500);
    add_row(db, "b-mid", T - 1000);
    add_row(db, "c-early", T - 2000);
    add_row(db, "d-now", T);            /* due exactly now: due */
    add_row(db, "e-future", T + 60000); /* not yet due */
    char ids[8][16], owner[32];
    int64_t until;

    /* earliest due first, and no more than limit */
    int n = claim(db, "A", T, T + 10000, 2, ids, 8);
    CHECK_EQ_INT(n, 2);
    CHECK(has(ids, n, "c-early") && has(ids, n, "b-mid"));
    owner_of(db, "c-early", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "A");
    CHECK_EQ_INT(until, T + 10000);

    /* leased rows are not claimed again while the lease lasts; due rows are;
     * rows due later are not */
    n = claim(db, "B", T + 1, T + 10000, 10, ids, 8);
    CHECK_EQ_INT(n, 2);
    CHECK(has(ids, n, "a-late") && has(ids, n, "d-now"));
    CHECK(!has(ids, n, "e-future"));
    n = claim(db, "C", T + 9999, T + 20000, 10, ids, 8);
    CHECK_EQ_INT(n, 0);
    owner_of(db, "e-future", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "(none)");

    /* an expired lease can be claimed by another owner; at lease_until
     * exactly the lease has ended */
    n = claim(db, "C", T + 10000, T + 30000, 10, ids, 8);
    CHECK_EQ_INT(n, 4);
    owner_of(db, "c-early", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "C");
    CHECK_EQ_INT(until, T + 30000);

    /* release by someone else does nothing */
    CHECK_OK(tk_lease_release(db, &spec, "c-early", "A", &e), &e);
    CHECK_EQ_INT(tk_db_changes(db), 0);
    owner_of(db, "c-early", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "C");
    CHECK_EQ_INT(until, T + 30000);
    n = claim(db, "A", T + 10001, T + 40000, 10, ids, 8);
    CHECK_EQ_INT(n, 0);
    /* release by the owner frees the row at once */
    CHECK_OK(tk_lease_release(db, &spec, "c-early", "C", &e), &e);
    CHECK_EQ_INT(tk_db_changes(db), 1);
    owner_of(db, "c-early", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "(none)");
    CHECK_EQ_INT(until, 0);
    n = claim(db, "A", T + 10002, T + 40000, 10, ids, 8);
    CHECK_EQ_INT(n, 1);
    CHECK(n == 1 && !strcmp(ids[0], "c-early"));
    /* releasing an unknown row, or twice, is harmless */
    CHECK_OK(tk_lease_release(db, &spec, "nope", "A", &e), &e);
    CHECK_OK(tk_lease_release(db, &spec, "b-mid", "B", &e), &e); /* B lost it to C */
    owner_of(db, "b-mid", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "C");

    /* the future row comes due */
    n = claim(db, "B", T + 60000, T + 70000, 10, ids, 8);
    CHECK(n >= 1 && has(ids, n, "e-future"));
    tk_store_put(db);
}

/* tk_lease_claim is documented to return rows "earliest due first". */
void test_lease_order(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    const int64_t T = INT64_C(1800000000000);
    /* inserted and named in the opposite order of their due times: r19 is due first */
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%02d", i);
        add_row(db, id, T - 10 * i);
    }
    char ids[20][16];
    int n = claim(db, "A", T, T + 1000, 20, ids, 20);
    CHECK_EQ_INT(n, 20);
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        char want[16];
        snprintf(want, sizeof want, "r%02d", 19 - i);
        if (strcmp(ids[i], want) != 0 && wrong++ < 3)
            FAILF("claim result %d is %s, want %s (earliest due first)", i, ids[i], want);
    }
    CHECK_EQ_INT(wrong, 0);
    tk_store_put(db);
}

/* ---- one row by id, renew, and the where condition ---- */

void test_lease_by_id(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    const int64_t T = INT64_C(1800000000000);
    add_row(db, "x", T + 3600000); /* not due: claim by id does not care */
    add_row(db, "y", T - 1);
    char owner[32];
    int64_t until;
    bool ok = false;

    /* a free row is claimed, due or not */
    CHECK_OK(tk_lease_claim_id(db, &spec, "x", "A", T, T + 1000, &ok, &e), &e);
    CHECK(ok);
    owner_of(db, "x", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "A");
    CHECK_EQ_INT(until, T + 1000);
    /* held: neither another owner nor the same one takes it again */
    CHECK_OK(tk_lease_claim_id(db, &spec, "x", "B", T + 999, T + 5000, &ok, &e), &e);
    CHECK(!ok);
    CHECK_OK(tk_lease_claim_id(db, &spec, "x", "A", T + 10, T + 5000, &ok, &e), &e);
    CHECK(!ok);
    owner_of(db, "x", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "A");
    CHECK_EQ_INT(until, T + 1000);
    /* a batch claim takes the due row, not the held one */
    CHECK_OK(tk_db_exec(db, "UPDATE lease_test SET due_at = ? WHERE id = 'x'",
                        TK_ARGS(TK_INT(T - 5)), NULL, &e),
             &e);
    char ids[4][16];
    CHECK_EQ_INT(claim(db, "B", T + 500, T + 600, 10, ids, 4), 1);
    CHECK_EQ_STR(ids[0], "y");
    /* renew by the holder extends; by anyone else does nothing */
    CHECK_OK(tk_lease_renew(db, &spec, "x", "A", T + 900, T + 2000, &ok, &e), &e);
    CHECK(ok);
    CHECK_OK(tk_lease_renew(db, &spec, "x", "B", T + 900, T + 9000, &ok, &e), &e);
    CHECK(!ok);
    owner_of(db, "x", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "A");
    CHECK_EQ_INT(until, T + 2000);
    /* an expired lease is not renewed (at lease_until exactly it has ended),
     * even when nobody took it meanwhile */
    CHECK_OK(tk_lease_renew(db, &spec, "x", "A", T + 2000, T + 9000, &ok, &e), &e);
    CHECK(!ok);
    owner_of(db, "x", owner, sizeof owner, &until);
    CHECK_EQ_INT(until, T + 2000);
    /* ... and is claimed by another owner; the old holder cannot renew it */
    CHECK_OK(tk_lease_claim_id(db, &spec, "x", "B", T + 2000, T + 8000, &ok, &e), &e);
    CHECK(ok);
    CHECK_OK(tk_lease_renew(db, &spec, "x", "A", T + 2001, T + 9000, &ok, &e), &e);
    CHECK(!ok);
    owner_of(db, "x", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "B");
    CHECK_EQ_INT(until, T + 8000);
    /* released, it is free again at once */
    CHECK_OK(tk_lease_release(db, &spec, "x", "B", &e), &e);
    CHECK_OK(tk_lease_claim_id(db, &spec, "x", "C", T + 2002, T + 3000, &ok, &e), &e);
    CHECK(ok);
    /* unknown rows: nothing, no error */
    CHECK_OK(tk_lease_claim_id(db, &spec, "nope", "C", T, T + 3000, &ok, &e), &e);
    CHECK(!ok);
    CHECK_OK(tk_lease_renew(db, &spec, "nope", "C", T, T + 3000, &ok, &e), &e);
    CHECK(!ok);

    /* a NULL due time is never due (needs_reconnect, disabled connections) */
    CHECK_OK(tk_db_exec(db, "CREATE TABLE lease_null (id TEXT PRIMARY KEY, tenant_id TEXT, due_at "
                            "BIGINT, lease_owner TEXT, lease_until BIGINT)",
                        NULL, 0, NULL, &e),
             &e);
    CHECK_OK(tk_db_exec(db, "INSERT INTO lease_null (id, tenant_id, due_at) VALUES ('n', 't', "
                            "NULL), ('d', 't', 5)",
                        NULL, 0, NULL, &e),
             &e);
    static const struct tk_lease_spec nullable = {.table = "lease_null", .due_column = "due_at"};
    struct tk_rows *r = NULL;
    CHECK_OK(tk_lease_claim(db, &nullable, "D", T, T + 1000, 10, &r, &e), &e);
    CHECK_EQ_INT(tk_rows_count(r), 1);
    if (tk_rows_count(r) == 1) CHECK_EQ_STR(tk_rows_text(r, 0, 0), "d");
    tk_rows_free(r);
    tk_store_put(db);
}

/* ---- renew is the fence of a commit ----
 *
 * A holds a lease that is about to run out and, in a transaction, renews it
 * and writes. B, whose clock says the old lease has ended, tries to claim
 * it meanwhile: B must wait for A's transaction and then see the renewed
 * lease (PostgreSQL re-checks the condition on the updated row; SQLite's
 * write lock serializes the two), so only A's write lands. */

struct fence_arg {
    struct tk_db *db;
    int64_t now;
    bool claimed;
    tk_rc rc;
    struct tk_err e;
};

static void *fence_claimer(void *p)
{
    struct fence_arg *a = p;
    a->rc = tk_lease_claim_id(a->db, &spec, "f", "B", a->now, a->now + 60000, &a->claimed, &a->e);
    return NULL;
}

void test_lease_fence(struct fx *f)
{
    struct tk_err e;
    struct tk_db *a = fx_db(f), *b = a ? fx_db(f) : NULL;
    if (!a || !b) {
        tk_store_put(a);
        return;
    }
    CHECK_OK(tk_db_exec(a, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    const int64_t T = INT64_C(1800000000000);
    add_row(a, "f", T);
    bool ok = false;
    CHECK_OK(tk_lease_claim_id(a, &spec, "f", "A", T, T + 1000, &ok, &e), &e);
    CHECK(ok);
    CHECK_OK(tk_db_begin(a, &e), &e);
    CHECK_OK(tk_lease_renew(a, &spec, "f", "A", T + 900, T + 5000, &ok, &e), &e);
    CHECK(ok);
    CHECK_OK(tk_db_exec(a, "UPDATE lease_test SET due_at = ? WHERE id = 'f'",
                        TK_ARGS(TK_INT(T + 100000)), NULL, &e),
             &e);
    struct fence_arg fa = {.db = b, .now = T + 1500};
    pthread_t th;
    if (!CHECK(pthread_create(&th, NULL, fence_claimer, &fa) == 0)) {
        tk_db_rollback(a);
        tk_store_put(a);
        tk_store_put(b);
        return;
    }
    usleep(300 * 1000); /* B is waiting on A's lock by now (or will see the commit) */
    CHECK_OK(tk_db_commit(a, &e), &e);
    pthread_join(th, NULL);
    CHECK_OK(fa.rc, &fa.e);
    CHECK(!fa.claimed);
    char owner[32];
    int64_t until;
    owner_of(a, "f", owner, sizeof owner, &until);
    CHECK_EQ_STR(owner, "A");
    CHECK_EQ_INT(until, T + 5000);
    tk_store_put(a);
    tk_store_put(b);
}

/* ---- claim by id from several threads at once ----
 *
 * Four connections each try to claim every row by id: every row ends up
 * claimed exactly once (what "single flight across nodes" stands on). */

enum { RACE_ROWS = 150, RACERS = 3 };

struct racer {
    struct tk_db *db;
    char owner[24];
    int wins[RACE_ROWS];
    int failures;
    struct tk_err e;
};

static void *race(void *p)
{
    struct racer *r = p;
    int64_t now = tk_now_ms();
    for (int i = 0; i < RACE_ROWS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%03d", (i * 7) % RACE_ROWS);
        bool ok = false;
        if (tk_lease_claim_id(r->db, &spec, id, r->owner, now, now + 3600000, &ok, &r->e) != TK_OK)
            r->failures++;
        else if (ok)
            r->wins[(i * 7) % RACE_ROWS]++;
    }
    return NULL;
}

void test_lease_id_race(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    CHECK_OK(tk_db_begin(db, &e), &e);
    for (int i = 0; i < RACE_ROWS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%03d", i);
        add_row(db, id, 0);
    }
    CHECK_OK(tk_db_commit(db, &e), &e);
    static struct racer rs[RACERS];
    memset(rs, 0, sizeof rs);
    pthread_t th[RACERS];
    int started = 0;
    for (int i = 0; i < RACERS; i++) {
        rs[i].db = fx_db(f);
        snprintf(rs[i].owner, sizeof rs[i].owner, "racer-%d", i);
        if (!rs[i].db || pthread_create(&th[i], NULL, race, &rs[i]) != 0) break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(started, RACERS);
    int wrong = 0;
    for (int i = 0; i < RACERS; i++) {
        if (rs[i].failures) FAILF("%s: %d claim(s) failed: %s", rs[i].owner, rs[i].failures, rs[i].e.msg);
        tk_store_put(rs[i].db);
    }
    for (int row = 0; row < RACE_ROWS; row++) {
        int n = 0;
        for (int i = 0; i < RACERS; i++)
            n += rs[i].wins[row];
        if (n != 1 && wrong++ < 3) FAILF("row r%03d was claimed %d times", row, n);
    }
    CHECK_EQ_INT(wrong, 0);
    tk_store_put(db);
}

/* tk_lease_release_many: a batch (longer than one statement's chunk, and a
 * short last chunk) frees owner's leases only. */
void test_lease_release_many(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, LEASE_TABLE, NULL, 0, NULL, &e), &e);
    const int64_t T = INT64_C(1800000000000);
    enum { N = 40 };
    char idbuf[N][16];
    const char *ids[N];
    for (int i = 0; i < N; i++) {
        snprintf(idbuf[i], sizeof idbuf[i], "m%02d", i);
        ids[i] = idbuf[i];
        add_row(db, idbuf[i], T - 1);
        bool ok = false;
        CHECK_OK(tk_lease_claim_id(db, &spec, idbuf[i], i % 5 == 0 ? "other" : "me", T, T + 60000,
                                   &ok, &e),
                 &e);
        CHECK(ok);
    }
    CHECK_OK(tk_lease_release_many(db, &spec, ids, N - 3, "me", &e), &e); /* not the last 3 */
    CHECK_OK(tk_lease_release_many(db, &spec, ids, 0, "me", &e), &e);
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        char owner[32];
        int64_t until;
        owner_of(db, idbuf[i], owner, sizeof owner, &until);
        const char *want = i % 5 == 0 ? "other" : i >= N - 3 ? "me" : "(none)";
        if (strcmp(owner, want) != 0 && wrong++ < 3)
            FAILF("%s: owner %s, want %s", idbuf[i], owner, want);
    }
    CHECK_EQ_INT(wrong, 0);
    tk_store_put(db);
}
