/* test_rewrap.c: the keyring's rewrap job on both backends -- 10,000 values
 * re-sealed under a rotated key version, a damaged value counted as failed
 * and left alone, start while running, a process killed with SIGKILL in the
 * middle of the job and another node resuming it after the lease runs out,
 * and two processes stepping at once never visiting the same values. */
#include "unit.h"

#include "../../src/api/api.h"
#include "../../src/events/events.h"
#include "../../src/keyring/keyring.h"
#include "../../src/operators/operators.h"

#include <pthread.h>
#include <time.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define RW_TABLE                                                                                   \
    "CREATE TABLE rewrap_test (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, secret TEXT)"

static char tenant[TK_UUID_LEN + 1]; /* the store's default tenant */

static void plain_of(int i, char *out, size_t n)
{
    snprintf(out, n, "refresh-token-%05d-%s", i, i % 7 ? "abcdefgh" : "");
}

/* Init a 3-share (threshold 2) keyring, the test table with n sealed values
 * under version 1 (plus two NULL rows), rotate to version 2. */
static struct tk_keyring *setup(struct fx *f, struct tk_db *db, int n,
                                char (*shares)[TK_SHARE_MAX])
{
    struct tk_err e;
    struct tk_keyring *k = NULL;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) return NULL;
    if (!CHECK_OK(tk_keyring_init(k, db, 3, 2, NULL, shares, NULL, &e), &e)) goto fail;
    if (!CHECK_OK(tk_keyring_register_sealed("rewrap_test", "secret"), NULL)) goto fail;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto fail;
    if (!CHECK_OK(tk_db_exec(db, RW_TABLE, NULL, 0, NULL, &e), &e)) goto fail;
    if (!CHECK_OK(tk_db_begin(db, &e), &e)) goto fail;
    for (int i = 0; i < n; i++) {
        char id[32], p[64];
        snprintf(id, sizeof id, "row-%05d", i);
        plain_of(i, p, sizeof p);
        struct tk_secret *s = tk_secret_new(p, strlen(p));
        struct tk_seal_ad ad = {tenant, "rewrap_test", "secret", id};
        struct tk_sealed *v = NULL;
        tk_rc rc = tk_keyring_seal_value(k, s, &ad, &v, &e);
        tk_secret_free(s);
        if (!CHECK_OK(rc, &e)) break;
        rc = tk_db_exec(db, "INSERT INTO rewrap_test (id, tenant_id, secret) VALUES (?, ?, ?)",
                        TK_ARGS(TK_TEXT(id), TK_TEXT(tenant), TK_TEXT(v->text)), NULL, &e);
        tk_sealed_free(v);
        if (!CHECK_OK(rc, &e)) break;
    }
    CHECK_OK(tk_db_exec(db,
                        "INSERT INTO rewrap_test (id, tenant_id, secret) VALUES ('null-1', "
                        "'tenant-a', NULL), ('row-00000a', 'tenant-a', NULL)",
                        NULL, 0, NULL, &e),
             &e);
    if (!CHECK_OK(tk_db_commit(db, &e), &e)) goto fail;
    int64_t v;
    if (!CHECK_OK(tk_keyring_rotate(k, db, &v, NULL, &e), &e) || !CHECK_EQ_INT(v, 2)) goto fail;
    return k;
fail:
    tk_keyring_free(k);
    return NULL;
}

/* Every value but skip (a row id, or NULL) is under version 2 and opens to
 * its original plaintext; returns the number of wrong rows. */
static int verify_all(struct tk_keyring *k, struct tk_db *db, int n, const char *skip)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int wrong = 0, seen = 0;
    if (!CHECK_OK(tk_db_exec(db, "SELECT id, tenant_id, secret FROM rewrap_test WHERE secret IS "
                                 "NOT NULL ORDER BY id",
                             NULL, 0, &r, &e),
                  &e))
        return -1;
    for (int i = 0; i < tk_rows_count(r); i++) {
        const char *id = tk_rows_text(r, i, 0), *text = tk_rows_text(r, i, 2);
        if (skip && !strcmp(id, skip)) continue;
        seen++;
        int idx = -1;
        sscanf(id, "row-%d", &idx);
        char want[64];
        plain_of(idx, want, sizeof want);
        struct tk_sealed *v = tk_sealed_from_text(text);
        struct tk_seal_ad ad = {tk_rows_text(r, i, 1), "rewrap_test", "secret", id};
        struct tk_secret *s = NULL;
        bool ok = strncmp(text, "ENC:v1:2:", 9) == 0 &&
                  tk_keyring_open_value(k, NULL, v, &ad, &s, NULL, &e) == TK_OK &&
                  s->len == strlen(want) && !memcmp(s->p, want, s->len);
        if (!ok && wrong++ < 3) FAILF("%s: %.20s... does not open to its plaintext", id, text);
        tk_secret_free(s);
        tk_sealed_free(v);
    }
    tk_rows_free(r);
    if (seen != n - (skip ? 1 : 0)) FAILF("saw %d values, want %d", seen, n - (skip ? 1 : 0));
    return wrong;
}

/* The daemon's hook (keyring_api.c): a value that does not open leaves a
 * keyring decrypt_failed event in the step's own transaction. */
static struct tk_keyring_hook events_hook(void)
{
    static struct tk_api_keyring_ctx ctx; /* the rewrap worker's: no app, no request */
    return tk_api_keyring_hook(&ctx);
}

/* Step as owner until the job is no longer running; the number of steps. */
static int run_to_end(struct tk_keyring *k, struct tk_db *db, const char *owner, int batch)
{
    struct tk_rewrap_progress p;
    struct tk_err e;
    struct tk_keyring_hook hook = events_hook();
    for (int steps = 1; steps < 100000; steps++) {
        if (!CHECK_OK(tk_keyring_rewrap_step(k, db, owner, batch, &hook, &p, &e), &e))
            return -1;
        if (p.processed > batch) FAILF("a step of %d visited %d values", batch, p.processed);
        if (!p.running) return steps;
        if (!p.held) usleep(20 * 1000);
    }
    FAILF("the rewrap never finished");
    return -1;
}

enum { N_ALL = 10000 };

void test_rewrap_all(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char shares[3][TK_SHARE_MAX];
    struct tk_rewrap_status st;
    struct tk_rewrap_progress p;
    struct tk_keyring_hook hook = events_hook();

    /* before any job: no status, a step does nothing */
    if (CHECK_OK(tk_keyring_rewrap_status(db, &st, &e), &e)) CHECK(!st.exists);
    struct tk_keyring *k = setup(f, db, N_ALL, shares);
    if (!k) goto out;
    CHECK_OK(tk_keyring_rewrap_step(k, db, "node-a", 200, &hook, &p, &e), &e);
    CHECK(!p.running && !p.held && p.processed == 0);

    /* damage one value: row-00042 gets row-00041's (moved) value */
    CHECK_OK(tk_db_exec(db,
                        "UPDATE rewrap_test SET secret = (SELECT secret FROM rewrap_test WHERE id "
                        "= 'row-00041') WHERE id = 'row-00042'",
                        NULL, 0, NULL, &e),
             &e);
    struct tk_rows *r = NULL;
    char damaged[512] = "";
    if (CHECK_OK(tk_db_exec(db, "SELECT secret FROM rewrap_test WHERE id = 'row-00042'", NULL, 0,
                            &r, &e),
                 &e))
        snprintf(damaged, sizeof damaged, "%s", tk_rows_text(r, 0, 0));
    tk_rows_free(r);
    r = NULL;

    if (!CHECK_OK(tk_keyring_rewrap_start(k, db, &st, &e), &e)) goto out;
    CHECK_EQ_STR(st.state, "running");
    CHECK_EQ_INT(st.target_version, 2);
    CHECK_EQ_INT(st.total, N_ALL);
    CHECK_EQ_INT(st.done, 0);

    /* start while running: refused */
    CHECK_EQ_INT(tk_keyring_rewrap_start(k, db, NULL, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "rewrap_running");

    /* sealed: a step returns at once */
    tk_keyring_seal(k);
    CHECK_EQ_INT(tk_keyring_rewrap_step(k, db, "node-a", 200, NULL, &p, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    CHECK_EQ_INT(tk_keyring_rewrap_start(k, db, NULL, &e), TK_EUNAVAIL);
    tk_keyring_free(k);
    k = NULL;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    CHECK_OK(tk_keyring_load(k, db, &e), &e);
    struct tk_seal_status ss;
    char nonce[TK_UNSEAL_NONCE];
    CHECK_OK(tk_keyring_unseal_share(k, db, shares[0], NULL, nonce, NULL, &ss, &e), &e);
    CHECK_OK(tk_keyring_unseal_share(k, db, shares[2], nonce, NULL, NULL, &ss, &e), &e);
    if (!CHECK(!tk_keyring_sealed(k))) goto out;

    int64_t t0 = tk_mono_us();
    int steps = run_to_end(k, db, "node-a", 200);
    CHECK_EQ_INT(steps, N_ALL / 200 + 1); /* 50 full batches, then one that finds the end */
    printf("    %s: %d values rewrapped in %lld ms\n", f->backend, N_ALL,
           (long long)(tk_mono_us() - t0) / 1000);
    if (CHECK_OK(tk_keyring_rewrap_status(db, &st, &e), &e)) {
        CHECK_EQ_STR(st.state, "done");
        CHECK_EQ_INT(st.done, N_ALL);
        CHECK_EQ_INT(st.total, N_ALL);
        CHECK_EQ_INT(st.rewrapped, N_ALL - 1);
        CHECK_EQ_INT(st.failed, 1);
        CHECK_EQ_STR(st.first_failed_row, "rewrap_test.secret:row-00042");
        CHECK(st.finished_at >= st.started_at && st.finished_at > 0);
        CHECK_EQ_STR(st.lease_owner, "");
    }
    CHECK_EQ_INT(verify_all(k, db, N_ALL, "row-00042"), 0);
    if (CHECK_OK(tk_db_exec(db, "SELECT secret FROM rewrap_test WHERE id = 'row-00042'", NULL, 0,
                            &r, &e),
                 &e))
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), damaged); /* never written */
    tk_rows_free(r);
    r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT COUNT(*) FROM rewrap_test WHERE secret IS NULL", NULL, 0,
                            &r, &e),
                 &e))
        CHECK_EQ_INT(tk_rows_int(r, 0, 0), 2);
    tk_rows_free(r);
    r = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT COUNT(*) FROM events WHERE kind = 'keyring' AND action = "
                            "'decrypt_failed' AND subject_id = 'row-00042'",
                            NULL, 0, &r, &e),
                 &e))
        CHECK_EQ_INT(tk_rows_int(r, 0, 0), 1);
    tk_rows_free(r);
    r = NULL;

    /* a second job after the first: nothing left to rewrap */
    if (CHECK_OK(tk_keyring_rewrap_start(k, db, &st, &e), &e)) {
        CHECK_EQ_INT(st.done, 0);
        CHECK_EQ_STR(st.first_failed_row, "");
        int s2 = run_to_end(k, db, "node-b", 5000);
        CHECK_EQ_INT(s2, 3); /* two batches of 5000, then the end */
        if (CHECK_OK(tk_keyring_rewrap_status(db, &st, &e), &e)) {
            CHECK_EQ_STR(st.state, "done");
            CHECK_EQ_INT(st.rewrapped, 0);
            CHECK_EQ_INT(st.failed, 1);
            CHECK_EQ_INT(st.done, N_ALL);
        }
    }
out:
    tk_keyring_free(k);
    tk_store_put(db);
}

/* ---- crash safety: SIGKILL in the middle, another node resumes ---- */

/* A child stepping forever with its own store; one byte on out after
 * each step. Killed by the parent. */
TK_NORETURN static void step_child(const char *url, struct tk_keyring *k, const char *owner,
                                   int out)
{
    struct tk_store_opts o = {.pool_size = 1, .busy_timeout_ms = 20000, .migrate = false};
    struct tk_store *st = NULL;
    struct tk_err e;
    if (tk_store_open(url, &o, &st, &e) != TK_OK) _exit(2);
    struct tk_db *db = tk_store_get(st, &e);
    if (!db) _exit(2);
    for (;;) {
        struct tk_rewrap_progress p;
        if (tk_keyring_rewrap_step(k, db, owner, 200, NULL, &p, &e) != TK_OK) {
            fprintf(stderr, "child: %s\n", e.msg);
            _exit(3);
        }
        if (write(out, "s", 1) != 1) _exit(4);
        if (!p.running) _exit(5); /* finished before being killed: too fast */
        usleep(5000);
    }
}

void test_rewrap_crash(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char shares[3][TK_SHARE_MAX];
    struct tk_keyring *k = setup(f, db, N_ALL, shares), *k2 = NULL;
    if (!k) {
        tk_store_put(db);
        return;
    }
    struct tk_rewrap_status st;
    CHECK_OK(tk_keyring_rewrap_start(k, db, &st, &e), &e);
    tk_store_put(db);
    fx_close_store(f);

    const int64_t lease_ms = 2000;
    tk_keyring_set_rewrap_lease(k, lease_ms);
    int pp[2];
    if (!CHECK(pipe(pp) == 0)) goto out;
    fflush(stdout);
    fflush(stderr);
    pid_t kid = fork();
    if (kid == 0) {
        close(pp[0]);
        step_child(f->url, k, "node-a", pp[1]);
    }
    close(pp[1]);
    if (!CHECK(kid > 0)) goto out;
    int got = 0;
    char c;
    while (got < 5) {
        ssize_t n = read(pp[0], &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) break;
        got++;
    }
    kill(kid, SIGKILL); /* most likely inside step 6 or 7, mid-transaction */
    int ws = 0;
    while (waitpid(kid, &ws, 0) < 0 && errno == EINTR) {
    }
    close(pp[0]);
    CHECK_EQ_INT(got, 5);
    CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    int64_t killed_at = tk_now_ms();
    tk_keyring_free(k);
    k = NULL;

    /* a restarted node: new store, new keyring unsealed with two shares */
    if (!CHECK_OK(fx_open_store(f, 2, &e), &e)) goto out;
    db = fx_db(f);
    if (!db) goto out;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k2, &e), &e)) goto out_db;
    CHECK_OK(tk_keyring_load(k2, db, &e), &e);
    struct tk_seal_status ss;
    char nonce[TK_UNSEAL_NONCE];
    CHECK_OK(tk_keyring_unseal_share(k2, db, shares[1], NULL, nonce, NULL, &ss, &e), &e);
    CHECK_OK(tk_keyring_unseal_share(k2, db, shares[2], nonce, NULL, NULL, &ss, &e), &e);
    if (!CHECK(!tk_keyring_sealed(k2))) goto out_db;
    tk_keyring_set_rewrap_lease(k2, lease_ms);

    if (CHECK_OK(tk_keyring_rewrap_status(db, &st, &e), &e)) {
        CHECK_EQ_STR(st.state, "running");
        CHECK_EQ_STR(st.lease_owner, "node-a");
        CHECK(st.done >= 5 * 200 && st.done < N_ALL);
        CHECK_EQ_INT(st.done % 200, 0); /* whole batches only */
        CHECK_EQ_INT(st.rewrapped, st.done);
    }
    /* the dead node's lease holds until it runs out */
    struct tk_rewrap_progress p;
    if (CHECK_OK(tk_keyring_rewrap_step(k2, db, "node-b", 200, NULL, &p, &e), &e) &&
        tk_now_ms() < killed_at + lease_ms - 500)
        CHECK(p.running && !p.held && p.processed == 0);
    int steps = run_to_end(k2, db, "node-b", 200);
    CHECK(steps > 1);
    CHECK(tk_now_ms() >= st.lease_until); /* resumed only after the lease ran out */
    if (CHECK_OK(tk_keyring_rewrap_status(db, &st, &e), &e)) {
        CHECK_EQ_STR(st.state, "done");
        CHECK_EQ_INT(st.done, N_ALL);
        CHECK_EQ_INT(st.total, N_ALL);
        CHECK_EQ_INT(st.rewrapped, N_ALL);
        CHECK_EQ_INT(st.failed, 0);
    }
    CHECK_EQ_INT(verify_all(k2, db, N_ALL, NULL), 0);
out_db:
    tk_store_put(db);
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
}

/* ---- two processes at once: the lease keeps them apart ---- */

enum { N_TWO = 3000, TWO_BATCH = 100 };

TK_NORETURN static void race_child(const char *url, struct tk_keyring *k, int me, int go,
                                   long *visited, long *held_steps)
{
    char owner[32];
    snprintf(owner, sizeof owner, "proc-%d", me);
    struct tk_store_opts o = {.pool_size = 1, .busy_timeout_ms = 20000, .migrate = false};
    struct tk_store *st = NULL;
    struct tk_err e;
    if (tk_store_open(url, &o, &st, &e) != TK_OK) _exit(2);
    struct tk_db *db = tk_store_get(st, &e);
    if (!db) _exit(2);
    char c;
    while (read(go, &c, 1) < 0 && errno == EINTR) {
    }
    int64_t deadline = tk_now_ms() + 15000;
    for (;;) {
        struct tk_rewrap_progress p;
        if (tk_keyring_rewrap_step(k, db, owner, TWO_BATCH, NULL, &p, &e) != TK_OK) {
            fprintf(stderr, "%s: %s\n", owner, e.msg);
            _exit(3);
        }
        visited[me] += p.processed;
        if (p.held) held_steps[me]++;
        if (!p.running) break;
        if (tk_now_ms() > deadline) _exit(4);
        usleep(2000);
    }
    tk_store_put(db);
    tk_store_close(st);
    _exit(0);
}

void test_rewrap_two_processes(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char shares[3][TK_SHARE_MAX];
    struct tk_keyring *k = setup(f, db, N_TWO, shares);
    if (!k) {
        tk_store_put(db);
        return;
    }
    struct tk_rewrap_status st;
    CHECK_OK(tk_keyring_rewrap_start(k, db, &st, &e), &e);
    tk_store_put(db);
    fx_close_store(f);
    long *shared = mmap(NULL, 4 * sizeof(long), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!CHECK(shared != MAP_FAILED)) goto out;
    memset(shared, 0, 4 * sizeof(long));
    int go[2];
    if (!CHECK(pipe(go) == 0)) goto out_map;
    fflush(stdout);
    fflush(stderr);
    pid_t kids[2];
    int started = 0;
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(go[1]);
            race_child(f->url, k, i, go[0], shared, shared + 2);
        }
        if (kids[i] < 0) break;
        started++;
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < started; i++) {
        int ws = 0;
        while (waitpid(kids[i], &ws, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) FAILF("child %d ended with 0x%x", i, ws);
    }
    CHECK_EQ_INT(started, 2);
    /* every value visited once in all: no batch was done twice */
    CHECK_EQ_INT(shared[0] + shared[1], N_TWO);
    /* the first to claim the lease kept it (renewing) to the end */
    CHECK((shared[0] == N_TWO && shared[3] == 0) || (shared[1] == N_TWO && shared[2] == 0));
    if (CHECK_OK(fx_open_store(f, 2, &e), &e) && (db = fx_db(f)) != NULL) {
        if (CHECK_OK(tk_keyring_rewrap_status(db, &st, &e), &e)) {
            CHECK_EQ_STR(st.state, "done");
            CHECK_EQ_INT(st.done, N_TWO);
            CHECK_EQ_INT(st.rewrapped, N_TWO);
        }
        CHECK_EQ_INT(verify_all(k, db, N_TWO, NULL), 0);
        tk_store_put(db);
    }
out_map:
    munmap(shared, 4 * sizeof(long));
out:
    tk_keyring_free(k);
}

void test_rewrap_register(void)
{
    CHECK_EQ_INT(tk_keyring_register_sealed("rewrap_test", "secret"), TK_OK);
    CHECK_EQ_INT(tk_keyring_register_sealed("rewrap_test", "secret"), TK_OK); /* no-op */
    CHECK_EQ_INT(tk_keyring_register_sealed("bad table", "x"), TK_EINVAL);
    CHECK_EQ_INT(tk_keyring_register_sealed("t", "x;DROP"), TK_EINVAL);
    CHECK_EQ_INT(tk_keyring_register_sealed("", "x"), TK_EINVAL);
    CHECK_EQ_INT(tk_keyring_register_sealed(NULL, "x"), TK_EINVAL);
    CHECK_EQ_INT(tk_keyring_register_sealed("a23456789012345678901234567890123", "x"), TK_EINVAL);
    CHECK_EQ_INT(tk_keyring_register_sealed("1abc", "x"), TK_EINVAL);
}

/* Sealing while a batch runs must not count good values as failed: the
 * batch is rolled back and resumes after the next unseal. The sealer
 * fires while the 5,000-row batch is (usually) in progress; whenever it
 * lands, no value may be counted as failed. */
static void *sealer(void *arg)
{
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    tk_keyring_seal(arg);
    return NULL;
}

void test_rewrap_seal_race(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char shares[3][TK_SHARE_MAX];
    struct tk_rewrap_status st;
    struct tk_rewrap_progress p;
    struct tk_keyring *k = setup(f, db, 5000, shares);
    if (!k) {
        tk_store_put(db);
        return;
    }
    if (CHECK_OK(tk_keyring_rewrap_start(k, db, &st, &e), &e)) {
        pthread_t t;
        pthread_create(&t, NULL, sealer, k);
        tk_rc rc = tk_keyring_rewrap_step(k, db, "node-a", 5000, NULL, &p, &e);
        pthread_join(t, NULL);
        CHECK(rc == TK_OK || rc == TK_EUNAVAIL);
        CHECK(tk_keyring_rewrap_status(db, &st, &e) == TK_OK);
        CHECK_EQ_INT(st.failed, 0);
    }
    tk_keyring_free(k);
    tk_store_put(db);
}

/* Rotate while a batch holds the database: rotate waits for the batch
 * instead of holding the keyring lock against it, and succeeds. */
struct rot {
    struct tk_keyring *k;
    struct tk_store *st;
    tk_rc rc;
};

static void *rotator(void *arg)
{
    struct rot *r = arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    struct tk_err e;
    struct tk_db *db = tk_store_get(r->st, &e);
    int64_t v;
    r->rc = db ? tk_keyring_rotate(r->k, db, &v, NULL, &e) : TK_EUNAVAIL;
    tk_store_put(db);
    return NULL;
}

void test_rewrap_rotate_race(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char shares[3][TK_SHARE_MAX];
    struct tk_rewrap_status st;
    struct tk_rewrap_progress p;
    struct tk_keyring *k = setup(f, db, 5000, shares);
    if (!k) {
        tk_store_put(db);
        return;
    }
    if (CHECK_OK(tk_keyring_rewrap_start(k, db, &st, &e), &e)) {
        struct rot r = {k, f->st, TK_EINTERNAL};
        pthread_t t;
        pthread_create(&t, NULL, rotator, &r);
        CHECK_OK(tk_keyring_rewrap_step(k, db, "node-a", 5000, NULL, &p, &e), &e);
        pthread_join(t, NULL);
        CHECK_EQ_INT(r.rc, TK_OK);
    }
    tk_keyring_free(k);
    tk_store_put(db);
}
