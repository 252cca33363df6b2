/* test_store.c: src/store/store.h on SQLite and PostgreSQL -- migrations,
 * statements, NULLs, conflicts, transactions, the connection pool, and the
 * errors a misconfigured store gives. */
#include "unit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <signal.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static tk_rc exec0(struct tk_db *db, const char *sql, struct tk_err *e)
{
    return tk_db_exec(db, sql, NULL, 0, NULL, e);
}

/* SELECT COUNT(*) ... as an integer, -1 on error. */
static int64_t count(struct tk_db *db, const char *sql)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t n = -1;
    if (tk_db_exec(db, sql, NULL, 0, &r, &e) == TK_OK && tk_rows_count(r) == 1)
        n = tk_rows_int(r, 0, 0);
    else
        FAILF("%s: %s", sql, e.msg);
    tk_rows_free(r);
    return n;
}

void test_store_migrate(struct fx *f)
{
    CHECK_EQ_STR(tk_store_backend(f->st), f->backend);
    CHECK(tk_store_schema_latest() >= 1);
    CHECK_EQ_INT(tk_store_schema_version(f->st), tk_store_schema_latest());
    struct tk_err e;
    CHECK_OK(tk_store_ping(f->st, &e), &e);
    struct tk_db *db = fx_db(f);
    if (!db) return;
    /* every version recorded once, with its name */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT version, name, applied_at FROM schema_version ORDER BY version",
                            NULL, 0, &r, &e),
                 &e)) {
        CHECK_EQ_INT(tk_rows_count(r), tk_store_schema_latest());
        for (int i = 0; i < tk_rows_count(r); i++) {
            CHECK_EQ_INT(tk_rows_int(r, i, 0), i + 1);
            CHECK(tk_rows_text(r, i, 1) && tk_rows_text(r, i, 1)[0]);
            CHECK(tk_rows_int(r, i, 2) > 0);
        }
        CHECK_EQ_STR(tk_rows_text(r, 0, 1), "foundation");
    }
    tk_rows_free(r);
    /* the tables of migration 1 exist and are empty */
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM tenants"), 0);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM operator_tokens"), 0);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM events"), 0);
    tk_store_put(db);
}

void test_store_reopen(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                        TK_ARGS(TK_TEXT("t-1"), TK_TEXT("kept"), TK_INT(1)), NULL, &e),
             &e);
    tk_store_put(db);
    for (int round = 0; round < 3; round++) {
        fx_close_store(f);
        if (!CHECK_OK(fx_open_store(f, 2, &e), &e)) return;
        CHECK_EQ_INT(tk_store_schema_version(f->st), tk_store_schema_latest());
    }
    db = fx_db(f);
    if (!db) return;
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM schema_version"), tk_store_schema_latest());
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM tenants WHERE name = 'kept'"), 1);
    tk_store_put(db);

    /* without migrate, the version is read, not changed */
    fx_close_store(f);
    struct tk_store_opts o = {.pool_size = 1, .migrate = false};
    if (CHECK_OK(tk_store_open(f->url, &o, &f->st, &e), &e))
        CHECK_EQ_INT(tk_store_schema_version(f->st), tk_store_schema_latest());
}

void test_store_schema_too_new(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(
        tk_db_exec(db, "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                   TK_ARGS(TK_INT(999), TK_TEXT("from_the_future"), TK_INT(tk_now_ms())), NULL, &e),
        &e);
    tk_store_put(db);
    fx_close_store(f);

    tk_err_clear(&e);
    struct tk_store_opts o = {.pool_size = 2, .migrate = true};
    struct tk_store *st = NULL;
    tk_rc rc = tk_store_open(f->url, &o, &st, &e);
    CHECK_EQ_INT(rc, TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "schema_too_new");
    CHECK(strstr(e.msg, "999") != NULL);
    char latest[16];
    snprintf(latest, sizeof latest, "%d", tk_store_schema_latest());
    CHECK(strstr(e.msg, latest) != NULL);
    CHECK(st == NULL);
    if (rc == TK_OK) tk_store_close(st);

    /* the refusal changed nothing: remove the row and the store opens again */
    o.migrate = false;
    if (!CHECK_OK(tk_store_open(f->url, &o, &f->st, &e), &e)) return;
    db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "DELETE FROM schema_version WHERE version = 999", &e), &e);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM schema_version"), tk_store_schema_latest());
    tk_store_put(db);
    fx_close_store(f);
    if (CHECK_OK(fx_open_store(f, 2, &e), &e))
        CHECK_EQ_INT(tk_store_schema_version(f->st), tk_store_schema_latest());
}

void test_store_exec_args(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, s TEXT)", &e), &e);
    static const char unicode[] = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x94\x91";
    size_t bign = 100000;
    char *big = malloc(bign + 1);
    for (size_t i = 0; i < bign; i++)
        big[i] = (char)('a' + i % 26);
    big[bign] = '\0';
    struct {
        const char *id;
        int64_t n;
        const char *s;
    } rows[] = {
        {"max", INT64_MAX, "it's a 'quoted' ? string with $1 and ?"},
        {"min", INT64_MIN, "; DROP TABLE t; --"},
        {"zero", 0, ""},
        {"neg", -42, unicode},
        {"big", 1, big},
    };
    for (size_t i = 0; i < TK_NELEM(rows); i++)
        CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, n, s) VALUES (?, ?, ?)",
                            TK_ARGS(TK_TEXT(rows[i].id), TK_INT(rows[i].n), TK_TEXT(rows[i].s)),
                            NULL, &e),
                 &e);
    for (size_t i = 0; i < TK_NELEM(rows); i++) {
        struct tk_rows *r = NULL;
        if (!CHECK_OK(tk_db_exec(db, "SELECT id, n, s FROM t WHERE id = ?",
                                 TK_ARGS(TK_TEXT(rows[i].id)), &r, &e),
                      &e))
            continue;
        CHECK_EQ_INT(tk_rows_count(r), 1);
        CHECK_EQ_INT(tk_rows_columns(r), 3);
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), rows[i].id);
        CHECK_EQ_INT(tk_rows_int(r, 0, 1), rows[i].n);
        if (!CHECK(tk_rows_text(r, 0, 2) && strcmp(tk_rows_text(r, 0, 2), rows[i].s) == 0))
            FAILF("row %s: text came back different", rows[i].id);
        CHECK(!tk_rows_null(r, 0, 2));
        /* outside the result: NULL and 0, never a crash */
        CHECK(tk_rows_text(r, 1, 0) == NULL);
        CHECK(tk_rows_text(r, 0, 3) == NULL);
        CHECK(tk_rows_text(r, -1, 0) == NULL);
        CHECK(tk_rows_text(r, 0, -1) == NULL);
        CHECK_EQ_INT(tk_rows_int(r, 5, 5), 0);
        tk_rows_free(r);
    }
    free(big);

    /* '?' inside a quoted literal is not a parameter */
    struct tk_rows *r = NULL;
    if (CHECK_OK(
            tk_db_exec(db, "SELECT '?', ?, 'a''?''b', ?", TK_ARGS(TK_TEXT("x"), TK_INT(7)), &r, &e),
            &e)) {
        CHECK_EQ_INT(tk_rows_columns(r), 4);
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), "?");
        CHECK_EQ_STR(tk_rows_text(r, 0, 1), "x");
        CHECK_EQ_STR(tk_rows_text(r, 0, 2), "a'?'b");
        CHECK_EQ_INT(tk_rows_int(r, 0, 3), 7);
    }
    tk_rows_free(r);

    /* ordering and multi-row results */
    r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT id FROM t WHERE n > ? ORDER BY n", TK_ARGS(TK_INT(-100)),
                            &r, &e),
                 &e)) {
        CHECK_EQ_INT(tk_rows_count(r), 4);
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), "neg");
        CHECK_EQ_STR(tk_rows_text(r, 3, 0), "max");
    }
    tk_rows_free(r);
    r = NULL;
    CHECK_OK(tk_db_exec(db, "SELECT id FROM t WHERE id = ?", TK_ARGS(TK_TEXT("absent")), &r, &e),
             &e);
    CHECK_EQ_INT(tk_rows_count(r), 0);
    CHECK_EQ_INT(tk_rows_columns(r), 1);
    tk_rows_free(r);
    CHECK_EQ_INT(tk_rows_count(NULL), 0);

    /* mistakes are errors with a message, and the connection stays usable */
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_exec(db, "SELEC 1", NULL, 0, NULL, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "store_error");
    CHECK(e.msg[0] != '\0');
    CHECK_EQ_INT(tk_db_exec(db, "SELECT * FROM no_such_table", NULL, 0, NULL, &e), TK_EINTERNAL);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM t"), 5);
    tk_store_put(db);
}

/* A statement given the wrong number of arguments is a bug in the caller:
 * store.h says it is TK_EINTERNAL ("store_error"), and the connection, which
 * is fine, stays in the pool. */
void test_store_arg_count(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY)", &e), &e);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_exec(db, "SELECT id FROM t WHERE id = ?", NULL, 0, NULL, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "store_error");
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_exec(db, "SELECT id FROM t WHERE id = ?",
                            TK_ARGS(TK_TEXT("a"), TK_TEXT("b")), NULL, &e),
                 TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "store_error");
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM t"), 0);
    tk_store_put(db);
}

void test_store_null(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, s TEXT)", &e), &e);
    CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, n, s) VALUES (?, ?, ?)",
                        TK_ARGS(TK_TEXT("a"), TK_NULLV, TK_TEXT(NULL)), NULL, &e),
             &e);
    CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, n, s) VALUES (?, ?, ?)",
                        TK_ARGS(TK_TEXT("b"), TK_INT(0), TK_TEXT("")), NULL, &e),
             &e);
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT id, n, s FROM t ORDER BY id", NULL, 0, &r, &e), &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 2)) {
        CHECK(tk_rows_null(r, 0, 1));
        CHECK(tk_rows_null(r, 0, 2));
        CHECK(tk_rows_text(r, 0, 2) == NULL);
        CHECK_EQ_INT(tk_rows_int(r, 0, 1), 0);
        /* zero and the empty string are values, not NULL */
        CHECK(!tk_rows_null(r, 1, 1));
        CHECK(!tk_rows_null(r, 1, 2));
        CHECK_EQ_STR(tk_rows_text(r, 1, 1), "0");
        CHECK_EQ_STR(tk_rows_text(r, 1, 2), "");
    }
    tk_rows_free(r);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM t WHERE s IS NULL"), 1);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM t WHERE n IS NULL"), 1);
    /* a NULL parameter compares as SQL NULL: matches nothing with '=' */
    r = NULL;
    CHECK_OK(tk_db_exec(db, "SELECT id FROM t WHERE s = ?", TK_ARGS(TK_TEXT(NULL)), &r, &e), &e);
    CHECK_EQ_INT(tk_rows_count(r), 0);
    tk_rows_free(r);
    r = NULL;
    CHECK_OK(tk_db_exec(db, "SELECT COALESCE(s, 'none') FROM t WHERE id = ?", TK_ARGS(TK_TEXT("a")),
                        &r, &e),
             &e);
    CHECK_EQ_STR(tk_rows_text(r, 0, 0), "none");
    tk_rows_free(r);
    tk_store_put(db);
}

void test_store_unique(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE)", &e), &e);
    CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?)",
                        TK_ARGS(TK_TEXT("1"), TK_TEXT("a@x")), NULL, &e),
             &e);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?)",
                            TK_ARGS(TK_TEXT("1"), TK_TEXT("b@x")), NULL, &e),
                 TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "conflict");
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?)",
                            TK_ARGS(TK_TEXT("2"), TK_TEXT("a@x")), NULL, &e),
                 TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "conflict");
    /* other constraint failures are not conflicts */
    CHECK_EQ_INT(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?)",
                            TK_ARGS(TK_TEXT("3"), TK_NULLV), NULL, &e),
                 TK_EINTERNAL);
    /* ON CONFLICT DO NOTHING is not an error */
    CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                        TK_ARGS(TK_TEXT("1"), TK_TEXT("c@x")), NULL, &e),
             &e);
    CHECK_EQ_INT(tk_db_changes(db), 0);
    /* a conflict inside a transaction: roll back, and the connection goes on */
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?)",
                        TK_ARGS(TK_TEXT("4"), TK_TEXT("d@x")), NULL, &e),
             &e);
    CHECK_EQ_INT(tk_db_exec(db, "INSERT INTO t (id, email) VALUES (?, ?)",
                            TK_ARGS(TK_TEXT("4"), TK_TEXT("e@x")), NULL, &e),
                 TK_ECONFLICT);
    tk_db_rollback(db);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM t"), 1);
    tk_store_put(db);
}

void test_store_tx(struct fx *f)
{
    struct tk_err e;
    struct tk_db *a = fx_db(f);
    struct tk_db *b = fx_db(f);
    if (!a || !b) {
        tk_store_put(a);
        tk_store_put(b);
        return;
    }
    CHECK(a != b);
    CHECK_OK(exec0(a, "CREATE TABLE t (id TEXT PRIMARY KEY)", &e), &e);

    CHECK_OK(tk_db_begin(a, &e), &e);
    CHECK_OK(tk_db_exec(a, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT("rolled")), NULL, &e),
             &e);
    CHECK_EQ_INT(count(a, "SELECT COUNT(*) FROM t"), 1);
    CHECK_EQ_INT(count(b, "SELECT COUNT(*) FROM t"), 0); /* not visible before commit */
    tk_db_rollback(a);
    CHECK_EQ_INT(count(a, "SELECT COUNT(*) FROM t"), 0);

    CHECK_OK(tk_db_begin(a, &e), &e);
    CHECK_OK(tk_db_exec(a, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT("kept")), NULL, &e),
             &e);
    CHECK_OK(tk_db_exec(a, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT("kept2")), NULL, &e),
             &e);
    CHECK_OK(tk_db_commit(a, &e), &e);
    CHECK_EQ_INT(count(b, "SELECT COUNT(*) FROM t"), 2);

    /* a connection given back inside a transaction is rolled back */
    CHECK_OK(tk_db_begin(a, &e), &e);
    CHECK_OK(
        tk_db_exec(a, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT("abandoned")), NULL, &e),
        &e);
    tk_store_put(a);
    CHECK_EQ_INT(count(b, "SELECT COUNT(*) FROM t"), 2);
    a = fx_db(f);
    if (a) {
        CHECK_EQ_INT(count(a, "SELECT COUNT(*) FROM t WHERE id = 'abandoned'"), 0);
        /* and the write lock went with it: b can write now */
        CHECK_OK(tk_db_begin(b, &e), &e);
        CHECK_OK(tk_db_exec(b, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT("b")), NULL, &e),
                 &e);
        CHECK_OK(tk_db_commit(b, &e), &e);
        CHECK_EQ_INT(count(a, "SELECT COUNT(*) FROM t"), 3);
    }
    tk_store_put(a);
    tk_store_put(b);
}

void test_store_changes(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT)", &e), &e);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        CHECK_OK(tk_db_exec(db, "INSERT INTO t (id, n) VALUES (?, ?)",
                            TK_ARGS(TK_TEXT(id), TK_INT(i)), NULL, &e),
                 &e);
        CHECK_EQ_INT(tk_db_changes(db), 1);
    }
    CHECK_OK(tk_db_exec(db, "UPDATE t SET n = n + 10 WHERE n < ?", TK_ARGS(TK_INT(3)), NULL, &e),
             &e);
    CHECK_EQ_INT(tk_db_changes(db), 3);
    CHECK_OK(tk_db_exec(db, "DELETE FROM t WHERE id = ?", TK_ARGS(TK_TEXT("nope")), NULL, &e), &e);
    CHECK_EQ_INT(tk_db_changes(db), 0);
    struct tk_rows *r = NULL;
    CHECK_OK(
        tk_db_exec(db, "UPDATE t SET n = 0 WHERE n >= ? RETURNING id", TK_ARGS(TK_INT(10)), &r, &e),
        &e);
    CHECK_EQ_INT(tk_rows_count(r), 3);
    CHECK_EQ_INT(tk_db_changes(db), 3);
    tk_rows_free(r);
    CHECK_OK(tk_db_exec(db, "DELETE FROM t", NULL, 0, NULL, &e), &e);
    CHECK_EQ_INT(tk_db_changes(db), 5);
    tk_store_put(db);
}

/* store.h: "Rows changed by the last INSERT/UPDATE/DELETE on this
 * connection" -- a SELECT in between must not change the answer. */
void test_store_changes_after_select(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT)", &e), &e);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        tk_db_exec(db, "INSERT INTO t (id, n) VALUES (?, ?)", TK_ARGS(TK_TEXT(id), TK_INT(i)), NULL,
                   &e);
    }
    CHECK_OK(tk_db_exec(db, "UPDATE t SET n = n + 1 WHERE n < ?", TK_ARGS(TK_INT(2)), NULL, &e),
             &e);
    CHECK_EQ_INT(tk_db_changes(db), 2);
    struct tk_rows *r = NULL;
    CHECK_OK(tk_db_exec(db, "SELECT id FROM t", NULL, 0, &r, &e), &e);
    CHECK_EQ_INT(tk_rows_count(r), 5);
    tk_rows_free(r);
    CHECK_EQ_INT(tk_db_changes(db), 2);
    tk_store_put(db);
}

/* A result wider than the backends' 64-column cell buffers. */
void test_store_wide_row(struct fx *f)
{
    enum { COLS = 70 };
    char sql[2048];
    size_t n = (size_t)snprintf(sql, sizeof sql, "SELECT ");
    for (int i = 0; i < COLS; i++)
        n += (size_t)snprintf(sql + n, sizeof sql - n, "%s%d AS c%d", i ? ", " : "", i * 3, i);
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_rows *r = NULL;
    /* More columns than a result can carry is refused, never truncated. */
    CHECK_EQ_INT(tk_db_exec(db, sql, NULL, 0, &r, &e), TK_EINTERNAL);
    CHECK(r == NULL);
    CHECK(strstr(e.msg, "70 columns") != NULL);
    /* The connection is still good. */
    CHECK_OK(tk_db_exec(db, "SELECT 1", NULL, 0, &r, &e), &e);
    CHECK_EQ_INT(tk_rows_int(r, 0, 0), 1);
    tk_rows_free(r);
    tk_store_put(db);
}

/* ---- the pool under threads ---- */

struct pool_run {
    struct tk_store *st;
    pthread_mutex_t lock;
    int held, max_held, errors, done;
    int thread;
};

static void *pool_worker(void *arg)
{
    struct pool_run *p = arg;
    pthread_mutex_lock(&p->lock);
    int me = p->thread++;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < 40; i++) {
        struct tk_err e;
        struct tk_db *db = tk_store_get(p->st, &e);
        if (!db) {
            pthread_mutex_lock(&p->lock);
            p->errors++;
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        pthread_mutex_lock(&p->lock);
        if (++p->held > p->max_held) p->max_held = p->held;
        pthread_mutex_unlock(&p->lock);
        char id[32];
        snprintf(id, sizeof id, "w%d-%d", me, i);
        tk_rc rc = tk_db_exec(db, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT(id)), NULL, &e);
        struct tk_rows *r = NULL;
        if (rc == TK_OK) rc = tk_db_exec(db, "SELECT COUNT(*) FROM t", NULL, 0, &r, &e);
        tk_rows_free(r);
        usleep(200); /* hold it a little, so that others must wait */
        pthread_mutex_lock(&p->lock);
        p->held--;
        if (rc != TK_OK)
            p->errors++;
        else
            p->done++;
        pthread_mutex_unlock(&p->lock);
        tk_store_put(db);
    }
    return NULL;
}

void test_store_pool_threads(struct fx *f)
{
    enum { THREADS = 8, POOL = 3 };
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE t (id TEXT PRIMARY KEY)", &e), &e);
    tk_store_put(db);
    fx_close_store(f);
    if (!CHECK_OK(fx_open_store(f, POOL, &e), &e)) return;

    struct pool_run p = {.st = f->st};
    pthread_mutex_init(&p.lock, NULL);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, pool_worker, &p);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&p.lock);
    CHECK_EQ_INT(p.errors, 0);
    CHECK_EQ_INT(p.done, THREADS * 40);
    CHECK(p.max_held <= POOL);
    CHECK(p.max_held >= 2); /* the threads really overlapped */
    db = fx_db(f);
    if (db) CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM t"), THREADS * 40);
    tk_store_put(db);
    tk_store_put(NULL);
}

/* ---- misconfigured stores ---- */

void test_store_bad_url(void)
{
    struct tk_store_opts o = {.pool_size = 1, .migrate = true};
    struct tk_store *st = NULL;
    struct tk_err e;
    static const char *bad[] = {"mysql://u@h/db", "", "sqlite", "SQLITE:/x", "file:/x.db"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        tk_err_clear(&e);
        tk_rc rc = tk_store_open(bad[i], &o, &st, &e);
        if (rc != TK_EINVAL || strcmp(e.code, "invalid_setting") != 0) {
            FAILF("store URL '%s': rc %d code %s", bad[i], (int)rc, e.code);
            if (rc == TK_OK) tk_store_close(st);
        }
    }
    char dir[256], url[600], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    /* a directory that does not exist */
    snprintf(url, sizeof url, "sqlite:%s/no/such/dir/tokend.db", dir);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_store_open(url, &o, &st, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "store_unreachable");
    CHECK(strstr(e.msg, "no/such/dir") != NULL);
    /* a file that is not a database */
    snprintf(path, sizeof path, "%s/garbage.db", dir);
    char junk[4096];
    memset(junk, 'J', sizeof junk);
    CHECK(unit_write_file(path, junk, sizeof junk, 0600));
    snprintf(url, sizeof url, "sqlite:%s", path);
    tk_err_clear(&e);
    tk_rc rc = tk_store_open(url, &o, &st, &e);
    CHECK(rc == TK_EUNAVAIL || rc == TK_EINTERNAL);
    CHECK(rc != TK_OK);
    if (rc == TK_OK) tk_store_close(st);
    unit_rmtree(dir);
}

/* A TCP port on loopback with nothing listening. */
static int dead_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = 1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0) close(s);
    return port;
}

void test_store_pg_unreachable(void)
{
    static const char pw[] = "Sup3rSecretPw";
    char urls[4][256];
    int port = dead_port();
    snprintf(urls[0], sizeof urls[0], "postgresql://tokend:%s@127.0.0.1:%d/tokend", pw, port);
    snprintf(urls[1], sizeof urls[1], "postgres://tokend:%s@127.0.0.1:%d/tokend?connect_timeout=2",
             pw, port);
    /* URLs libpq cannot parse: the error must not quote them either */
    snprintf(urls[2], sizeof urls[2], "postgresql://tokend:%s@[::1:%d/tokend", pw, port);
    snprintf(urls[3], sizeof urls[3], "postgresql://tokend:%s%%zz@127.0.0.1:%d/tokend", pw, port);
    for (size_t i = 0; i < TK_NELEM(urls); i++) {
        struct tk_store_opts o = {.pool_size = 1, .migrate = true};
        struct tk_store *st = NULL;
        struct tk_err e;
        tk_err_clear(&e);
        tk_rc rc = tk_store_open(urls[i], &o, &st, &e);
        if (rc != TK_EUNAVAIL || strcmp(e.code, "store_unreachable") != 0)
            FAILF("url %zu: rc %d code %s", i, (int)rc, e.code);
        if (strstr(e.msg, pw)) FAILF("url %zu: the message repeats the password: %s", i, e.msg);
        if (!e.msg[0]) FAILF("url %zu: no message", i);
        /* issue 13 #20: a URL that parses is named: host, database, role */
        if (i < 2 && (!strstr(e.msg, "host 127.0.0.1") || !strstr(e.msg, "database tokend") ||
                      !strstr(e.msg, "role tokend")))
            FAILF("url %zu: the message does not name host, database and role: %s", i, e.msg);
        if (rc == TK_OK) tk_store_close(st);
    }
}

/* issue 13 #9: a nested begin is refused and leaves the open transaction
 * as it was (PostgreSQL used to commit the caller's work silently). */
void test_store_nested_begin(struct fx *f)
{
    struct tk_err e;
    struct tk_db *a = fx_db(f);
    struct tk_db *b = fx_db(f);
    if (!a || !b) {
        tk_store_put(a);
        tk_store_put(b);
        return;
    }
    CHECK_OK(exec0(a, "CREATE TABLE t (id TEXT PRIMARY KEY)", &e), &e);
    CHECK(!tk_db_in_tx(a));
    CHECK_OK(tk_db_begin(a, &e), &e);
    CHECK(tk_db_in_tx(a));
    CHECK_OK(tk_db_exec(a, "INSERT INTO t (id) VALUES (?)", TK_ARGS(TK_TEXT("inner")), NULL, &e),
             &e);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_begin(a, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "nested_transaction");
    /* still in the first transaction, and nothing was committed */
    CHECK(tk_db_in_tx(a));
    CHECK_EQ_INT(count(b, "SELECT COUNT(*) FROM t"), 0);
    tk_db_rollback(a);
    CHECK(!tk_db_in_tx(a));
    CHECK_EQ_INT(count(a, "SELECT COUNT(*) FROM t"), 0);
    CHECK_EQ_INT(count(b, "SELECT COUNT(*) FROM t"), 0);
    /* and begin works again afterwards */
    CHECK_OK(tk_db_begin(a, &e), &e);
    CHECK_OK(tk_db_commit(a, &e), &e);
    CHECK(!tk_db_in_tx(a));
    tk_store_put(a);
    tk_store_put(b);
}

struct getter {
    struct tk_store *st;
    struct tk_db *got;
    struct tk_err e;
    int64_t waited_ms;
};

static void *late_getter(void *arg)
{
    struct getter *g = arg;
    int64_t t0 = tk_mono_us();
    g->got = tk_store_get(g->st, &g->e);
    g->waited_ms = (tk_mono_us() - t0) / 1000;
    return NULL;
}

/* issue 13 #1: tk_store_get waits at most acquire_timeout_ms, then fails
 * store_busy naming the pool size; a connection given back in time is
 * handed to the waiter. */
void test_store_acquire_timeout(struct fx *f)
{
    struct tk_err e;
    fx_close_store(f);
    struct tk_store_opts o = {.pool_size = 2, .busy_timeout_ms = 1000, .migrate = true,
                              .acquire_timeout_ms = 300};
    if (!CHECK_OK(tk_store_open(f->url, &o, &f->st, &e), &e)) return;
    struct tk_db *a = fx_db(f), *b = fx_db(f);
    if (!a || !b) {
        tk_store_put(a);
        tk_store_put(b);
        return;
    }
    int64_t t0 = tk_mono_us();
    tk_err_clear(&e);
    struct tk_db *c = tk_store_get(f->st, &e);
    int64_t waited = (tk_mono_us() - t0) / 1000;
    CHECK(c == NULL);
    CHECK_EQ_STR(e.code, "store_busy");
    CHECK_EQ_INT(e.rc, TK_EUNAVAIL);
    CHECK(strstr(e.msg, "store_pool = 2") != NULL);
    CHECK(waited >= 250);
    tk_store_put(c);

    /* a waiter gets the connection given back while it waits */
    struct getter g = {.st = f->st};
    pthread_t th;
    if (!CHECK(pthread_create(&th, NULL, late_getter, &g) == 0)) {
        tk_store_put(a);
        tk_store_put(b);
        return;
    }
    tk_store_put(a);
    pthread_join(th, NULL);
    CHECK(g.got != NULL);
    tk_store_put(g.got);
    tk_store_put(b);

    /* the default is 2000 ms */
    fx_close_store(f);
    o.acquire_timeout_ms = 0;
    o.pool_size = 1;
    if (!CHECK_OK(tk_store_open(f->url, &o, &f->st, &e), &e)) return;
    a = fx_db(f);
    t0 = tk_mono_us();
    c = tk_store_get(f->st, &e);
    waited = (tk_mono_us() - t0) / 1000;
    CHECK(c == NULL);
    CHECK(waited >= 1900);
    CHECK(strstr(e.msg, "2000 ms") != NULL);
    tk_store_put(c);
    tk_store_put(a);
}

/* issue 13 #19: tk_store_created tells a fresh store from a reopened one. */
void test_store_created(struct fx *f)
{
    struct tk_err e;
    CHECK(tk_store_created(f->st)); /* the fixture's store is new */
    fx_close_store(f);
    if (!CHECK_OK(fx_open_store(f, 2, &e), &e)) return;
    CHECK(!tk_store_created(f->st));
}

/* issue 13 #19: a SQLite file with a damaged inner page refuses to open
 * with store_corrupt naming the file; store_check = off opens it. */
void test_store_corrupt_sqlite(void)
{
    char dir[256], url[320], path[300];
    struct tk_err e;
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    snprintf(path, sizeof path, "%s/tokend.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    struct tk_store_opts o = {.pool_size = 1, .busy_timeout_ms = 1000, .migrate = true};
    struct tk_store *st = NULL;
    if (!CHECK_OK(tk_store_open(url, &o, &st, &e), &e)) goto out;
    struct tk_db *db = tk_store_get(st, &e);
    if (!CHECK(db)) goto out;
    CHECK_OK(tk_db_exec(db, "CREATE TABLE filler (id BIGINT PRIMARY KEY, body TEXT)", NULL, 0,
                        NULL, &e),
             &e);
    CHECK_OK(tk_db_begin(db, &e), &e);
    char body[400];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    for (int i = 0; i < 3000; i++)
        tk_db_exec(db, "INSERT INTO filler (id, body) VALUES (?, ?)",
                   TK_ARGS(TK_INT(i), TK_TEXT(body)), NULL, &e);
    CHECK_OK(tk_db_commit(db, &e), &e);
    tk_store_put(db);
    tk_store_close(st); /* the last connection checkpoints the WAL into the file */
    st = NULL;
    /* a clean file passes the check */
    if (!CHECK_OK(tk_store_open(url, &o, &st, &e), &e)) goto out;
    CHECK(!tk_store_created(st));
    tk_store_close(st);
    st = NULL;
    /* garbage over a page in the middle */
    FILE *fp = fopen(path, "r+b");
    if (!CHECK(fp)) goto out;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    long page = (size / 4096) / 2;
    CHECK(page > 10);
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 37 + 11);
    fseek(fp, page * 4096, SEEK_SET);
    CHECK(fwrite(junk, 1, sizeof junk, fp) == sizeof junk);
    fclose(fp);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_store_open(url, &o, &st, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "store_corrupt");
    CHECK(strstr(e.msg, path) != NULL);
    CHECK(strstr(e.msg, "backup") != NULL);
    CHECK(st == NULL);
    /* full check too */
    o.check = TK_STORE_CHECK_FULL;
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_store_open(url, &o, &st, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "store_corrupt");
    /* off: opens (the operator chose to) */
    o.check = TK_STORE_CHECK_OFF;
    if (CHECK_OK(tk_store_open(url, &o, &st, &e), &e)) tk_store_close(st);
    st = NULL;
out:
    tk_store_close(st);
    unit_rmtree(dir);
}

/* issue 13 (low): SQLITE_BUSY is store_busy and keeps the connection. */
void test_store_busy_kept(void)
{
    char dir[256], url[300];
    struct tk_err e;
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    snprintf(url, sizeof url, "sqlite:%s/tokend.db", dir);
    struct tk_store_opts o = {.pool_size = 2, .busy_timeout_ms = 50, .migrate = true};
    struct tk_store *st = NULL;
    if (!CHECK_OK(tk_store_open(url, &o, &st, &e), &e)) goto out;
    struct tk_db *a = tk_store_get(st, &e), *b = tk_store_get(st, &e);
    if (!CHECK(a && b)) {
        tk_store_put(a);
        tk_store_put(b);
        goto out;
    }
    CHECK_OK(tk_db_exec(b, "CREATE TEMP TABLE mine (x BIGINT)", NULL, 0, NULL, &e), &e);
    CHECK_OK(tk_db_begin(a, &e), &e);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_db_begin(b, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "store_busy");
    tk_store_put(b); /* kept, not closed: the same connection comes back */
    struct tk_db *b2 = tk_store_get(st, &e);
    if (CHECK(b2)) {
        CHECK_OK(tk_db_exec(b2, "INSERT INTO mine (x) VALUES (1)", NULL, 0, NULL, &e), &e);
        tk_store_put(b2);
    }
    tk_db_rollback(a);
    tk_store_put(a);
out:
    tk_store_close(st);
    unit_rmtree(dir);
}

/* Every process of the cluster whose postmaster is pid: itself and its
 * children (from /proc), signalled with sig. Returns how many. */
static int signal_cluster(pid_t pm, int sig)
{
    int n = kill(pm, sig) == 0;
    DIR *d = opendir("/proc");
    if (!d) return n;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[300], buf[512];
        if (de->d_name[0] < '1' || de->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, fp);
        fclose(fp);
        buf[len] = '\0';
        /* pid (comm) state ppid ...: comm may hold spaces; parse after ')' */
        char *rp = strrchr(buf, ')');
        char state;
        long ppid;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)pm)
            n += kill((pid_t)strtol(de->d_name, NULL, 10), sig) == 0;
    }
    closedir(d);
    return n;
}

/* issue 13 #14: with every process of the PostgreSQL server stopped
 * (SIGSTOP: the kernel still accepts and acknowledges, nothing answers),
 * a statement and a new connection fail within a bounded time instead of
 * hanging. A throwaway cluster of this test's own is stopped, never the
 * shared one. */
void test_store_pg_stalled(void)
{
    if (!unit_pg_url()) {
        printf("    note: TOKEND_TEST_PG is not set; pg_stalled needs PostgreSQL binaries\n");
        return;
    }
    char dir[256], cmd[600], url[256] = "", pidfile[300];
    struct tk_err e;
    struct tk_store *st = NULL;
    struct tk_db *db = NULL;
    pid_t pm = 0;
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    snprintf(cmd, sizeof cmd, "tests/pg-throwaway.sh start %s", dir);
    FILE *p = popen(cmd, "r");
    if (!CHECK(p)) goto out;
    if (!fgets(url, sizeof url, p)) url[0] = '\0';
    int ps = pclose(p);
    url[strcspn(url, "\n")] = '\0';
    if (!CHECK(ps == 0 && url[0])) goto out;
    snprintf(pidfile, sizeof pidfile, "%s/data/postmaster.pid", dir);
    FILE *pf = fopen(pidfile, "r");
    if (!CHECK(pf)) goto out;
    long pml = 0;
    if (fscanf(pf, "%ld", &pml) != 1) pml = 0;
    fclose(pf);
    pm = (pid_t)pml;
    if (!CHECK(pm > 1)) goto out;

    struct tk_store_opts o = {.pool_size = 2, .migrate = true, .statement_timeout_ms = 1000,
                              .connect_timeout_s = 2, .acquire_timeout_ms = 1000};
    if (!CHECK_OK(tk_store_open(url, &o, &st, &e), &e)) goto out;
    db = tk_store_get(st, &e);
    if (!CHECK(db)) goto out;
    CHECK_OK(tk_db_exec(db, "SELECT 1", NULL, 0, NULL, &e), &e);

    CHECK(signal_cluster(pm, SIGSTOP) >= 2);
    /* a statement on an open connection: the client's deadline */
    int64_t t0 = tk_mono_us();
    tk_err_clear(&e);
    tk_rc rc = tk_db_exec(db, "SELECT 1", NULL, 0, NULL, &e);
    int64_t ms = (tk_mono_us() - t0) / 1000;
    CHECK_EQ_INT(rc, TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "store_unreachable");
    CHECK(strstr(e.msg, "127.0.0.1") && strstr(e.msg, "database postgres") &&
          strstr(e.msg, "role postgres"));
    CHECK(ms < 8000);
    printf("    a statement failed after %lld ms: %s\n", (long long)ms, e.msg);
    /* the dead connection is not waited on again (a rollback, a retry) */
    t0 = tk_mono_us();
    CHECK_EQ_INT(tk_db_exec(db, "SELECT 1", NULL, 0, NULL, &e), TK_EUNAVAIL);
    tk_db_rollback(db);
    CHECK((tk_mono_us() - t0) / 1000 < 500);
    tk_store_put(db); /* broken: closed */
    db = NULL;
    /* a new connection: connect_timeout */
    t0 = tk_mono_us();
    tk_err_clear(&e);
    db = tk_store_get(st, &e);
    ms = (tk_mono_us() - t0) / 1000;
    CHECK(db == NULL);
    CHECK_EQ_STR(e.code, "store_unreachable");
    CHECK(ms < 8000);
    printf("    a new connection failed after %lld ms: %s\n", (long long)ms, e.msg);
    tk_store_put(db);
    db = NULL;

    signal_cluster(pm, SIGCONT);
    pm = 0;
    /* and the store works again once the server does */
    db = tk_store_get(st, &e);
    if (CHECK(db)) CHECK_OK(tk_db_exec(db, "SELECT 1", NULL, 0, NULL, &e), &e);
out:
    if (pm > 1) signal_cluster(pm, SIGCONT);
    tk_store_put(db);
    tk_store_close(st);
    snprintf(cmd, sizeof cmd, "tests/pg-throwaway.sh stop %s", dir);
    if (system(cmd) != 0) printf("    note: could not stop the throwaway cluster in %s\n", dir);
    unit_rmtree(dir);
}

/* tk_db_durable: the commit works and the flag is per transaction (the
 * fsync itself is measured with strace, see the commit message). */
void test_store_durable_commit(struct fx *f)
{
    struct tk_err e;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    CHECK_OK(exec0(db, "CREATE TABLE d (x BIGINT)", &e), &e);
    tk_db_durable(db); /* outside a transaction: no effect */
    for (int round = 0; round < 3; round++) {
        CHECK_OK(tk_db_begin(db, &e), &e);
        CHECK_OK(tk_db_exec(db, "INSERT INTO d (x) VALUES (?)", TK_ARGS(TK_INT(round)), NULL, &e),
                 &e);
        if (round == 1) tk_db_durable(db);
        CHECK_OK(tk_db_commit(db, &e), &e);
    }
    CHECK_OK(tk_db_begin(db, &e), &e);
    tk_db_durable(db);
    tk_db_rollback(db); /* a rolled-back durable transaction syncs nothing, and resets */
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM d"), 3);
    tk_store_put(db);
}

struct opener {
    const char *url;
    tk_rc rc;
    struct tk_err e;
    int64_t ms;
};

static void *open_short_timeouts(void *arg)
{
    struct opener *o = arg;
    struct tk_store_opts so = {.pool_size = 1, .migrate = true, .statement_timeout_ms = 300};
    struct tk_store *st = NULL;
    int64_t t0 = tk_mono_us();
    o->rc = tk_store_open(o->url, &so, &st, &o->e);
    o->ms = (tk_mono_us() - t0) / 1000;
    if (o->rc == TK_OK) {
        /* and the ordinary timeouts are back after the migration */
        struct tk_db *db = tk_store_get(st, &o->e);
        if (db && tk_db_exec(db, "SELECT pg_sleep(1)", NULL, 0, NULL, &o->e) == TK_OK)
            o->rc = TK_EINTERNAL; /* should have been cut at 300 ms */
        else if (db && strcmp(o->e.code, "store_busy") != 0)
            o->rc = TK_EINTERNAL;
        tk_store_put(db);
    }
    tk_store_close(st);
    return NULL;
}

/* Migrations are not cut by the statement and lock timeouts: a node that
 * waits on another's migration lock longer than statement_timeout still
 * starts (PostgreSQL). */
void test_store_migration_timeouts(struct fx *f)
{
    if (strcmp(f->backend, "postgres") != 0) return;
    struct tk_err e;
    struct tk_db *holder = fx_db(f);
    if (!holder) return;
    CHECK_OK(tk_db_begin(holder, &e), &e);
    CHECK_OK(tk_db_exec(holder, "SELECT pg_advisory_xact_lock(8750001)", NULL, 0, NULL, &e), &e);
    struct opener o = {.url = f->url};
    pthread_t th;
    if (!CHECK(pthread_create(&th, NULL, open_short_timeouts, &o) == 0)) {
        tk_store_put(holder);
        return;
    }
    /* hold the migration lock for 1.5 s, five times the statement timeout */
    struct timespec ts = {1, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);
    CHECK_OK(tk_db_commit(holder, &e), &e);
    pthread_join(th, NULL);
    if (!CHECK_EQ_INT(o.rc, TK_OK)) FAILF("%s: %s", o.e.code, o.e.msg);
    CHECK(o.ms >= 1000);
    tk_store_put(holder);
}
