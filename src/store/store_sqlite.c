/*
 * store_sqlite.c: the embedded backend. One sqlite3 handle per pooled
 * connection, WAL journal so that readers never wait for the writer, a busy
 * timeout so that writers queue instead of failing, and a small cache of
 * prepared statements per connection keyed by SQL text.
 */
#include "store_internal.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define STMT_CACHE 128

struct sconn {
    sqlite3 *h;
    sqlite3_stmt *cache[STMT_CACHE];
};

static unsigned sql_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static tk_rc fail(sqlite3 *h, int code, struct tk_err *e, const char *what)
{
    int ext = h ? sqlite3_extended_errcode(h) : code;
    code &= 0xff; /* extended result codes are on: compare primary codes */
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(code);
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return tk_err_set(e, TK_ECONFLICT, "conflict", "%s: %s", what, msg);
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
        return tk_err_set(e, TK_EUNAVAIL, "store_busy", "%s: the database stayed locked: %s",
                          what, msg);
    if (code == SQLITE_CANTOPEN || code == SQLITE_IOERR || code == SQLITE_NOTADB ||
        code == SQLITE_CORRUPT || code == SQLITE_READONLY || code == SQLITE_FULL)
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable", "%s: %s", what, msg);
    return tk_err_set(e, TK_EINTERNAL, "store_error", "%s: %s", what, msg);
}

static tk_rc s_connect(const char *url, const struct tk_store_opts *o, void **out,
                       struct tk_err *e)
{
    const char *path = url + 7;
    sqlite3 *h = NULL;
    int r = sqlite3_open_v2(path, &h,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (r != SQLITE_OK) {
        tk_rc rc = tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                              "cannot open SQLite database %s: %s", path,
                              h ? sqlite3_errmsg(h) : sqlite3_errstr(r));
        sqlite3_close(h);
        return rc;
    }
    sqlite3_busy_timeout(h, o->busy_timeout_ms);
    sqlite3_extended_result_codes(h, 1);
    char *err = NULL;
    r = sqlite3_exec(h,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                     "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
                     NULL, NULL, &err);
    if (r != SQLITE_OK) {
        tk_rc rc = tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                              "cannot use SQLite database %s: %s", path, err ? err : "?");
        sqlite3_free(err);
        sqlite3_close(h);
        return rc;
    }
    chmod(path, 0600);
    struct sconn *c = tk_calloc(1, sizeof *c);
    c->h = h;
    *out = c;
    return TK_OK;
}

static void s_disconnect(void *p)
{
    struct sconn *c = p;
    for (int i = 0; i < STMT_CACHE; i++) sqlite3_finalize(c->cache[i]);
    sqlite3_close(c->h);
    free(c);
}

/* The statement cache: two places per statement (two slots from its hash),
 * so that two statements a request runs every time that share one slot do
 * not push each other out and get parsed again on every use. */
static void slots(const char *sql, unsigned *a, unsigned *b)
{
    unsigned h = sql_hash(sql);
    *a = h % STMT_CACHE;
    *b = (h / STMT_CACHE) % STMT_CACHE;
}

static sqlite3_stmt *prepare(struct sconn *c, const char *sql, int *rc)
{
    unsigned a, b;
    slots(sql, &a, &b);
    for (int k = 0; k < 2; k++) {
        unsigned slot = k ? b : a;
        sqlite3_stmt *st = c->cache[slot];
        if (st && strcmp(sqlite3_sql(st), sql) == 0) {
            c->cache[slot] = NULL; /* taken; put back by release() */
            *rc = SQLITE_OK;
            return st;
        }
    }
    sqlite3_stmt *st = NULL;
    *rc = sqlite3_prepare_v3(c->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    return st;
}

static void release(struct sconn *c, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    unsigned a, b;
    slots(sqlite3_sql(st), &a, &b);
    unsigned slot = !c->cache[a] ? a : b; /* else b: a statement in a stays */
    if (c->cache[slot]) sqlite3_finalize(c->cache[slot]);
    c->cache[slot] = st;
}

static tk_rc s_exec(void *p, const char *sql, const struct tk_val *args, int nargs,
                    struct tk_rows **out, int64_t *changes, struct tk_err *e)
{
    struct sconn *c = p;
    int r;
    sqlite3_stmt *st = prepare(c, sql, &r);
    if (!st) return fail(c->h, r, e, "prepare");
    if (sqlite3_bind_parameter_count(st) != nargs) {
        sqlite3_finalize(st);
        return tk_err_set(e, TK_EINTERNAL, "store_error",
                          "statement expects %d parameters, %d given",
                          sqlite3_bind_parameter_count(st), nargs);
    }
    for (int i = 0; i < nargs; i++) {
        switch (args[i].t) {
        case TK_V_NULL: r = sqlite3_bind_null(st, i + 1); break;
        case TK_V_INT: r = sqlite3_bind_int64(st, i + 1, args[i].i); break;
        case TK_V_TEXT: r = sqlite3_bind_text(st, i + 1, args[i].s, -1, SQLITE_STATIC); break;
        }
        if (r != SQLITE_OK) {
            tk_rc rc = fail(c->h, r, e, "bind");
            sqlite3_finalize(st);
            return rc;
        }
    }
    int ncols = sqlite3_column_count(st);
    const char *cells[TK_ROWS_MAX_COLS];
    size_t lens[TK_ROWS_MAX_COLS];
    if (ncols > TK_ROWS_MAX_COLS) {
        release(c, st);
        return tk_err_set(e, TK_EINTERNAL, "store_error",
                          "a statement returns %d columns; at most %d are supported", ncols,
                          TK_ROWS_MAX_COLS);
    }
    struct tk_rows *rows = out ? tk_rows_new(ncols) : NULL;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (!rows) continue;
        for (int i = 0; i < ncols; i++) {
            cells[i] = (const char *)sqlite3_column_text(st, i);
            lens[i] = (size_t)sqlite3_column_bytes(st, i);
        }
        tk_rows_add(rows, cells, lens);
    }
    if (r != SQLITE_DONE) {
        tk_rc rc = fail(c->h, r, e, "step");
        tk_rows_free(rows);
        release(c, st);
        return rc;
    }
    *changes = sqlite3_changes64(c->h);
    release(c, st);
    if (out) *out = rows;
    return TK_OK;
}

static tk_rc s_script(void *p, const char *sql, struct tk_err *e)
{
    struct sconn *c = p;
    char *err = NULL;
    int r = sqlite3_exec(c->h, sql, NULL, NULL, &err);
    if (r != SQLITE_OK) {
        tk_rc rc = tk_err_set(e, TK_EINTERNAL, "store_error", "%s", err ? err : sqlite3_errstr(r));
        sqlite3_free(err);
        return rc;
    }
    return TK_OK;
}

/* Files up to this size get PRAGMA quick_check at open (O(size): about a
 * second per few hundred MiB); above it, a check of the header, the schema
 * and every table's root page (O(tables)). */
#define QUICK_CHECK_MAX_BYTES (256LL << 20)

static tk_rc corrupt(const char *path, const char *what, const char *detail, struct tk_err *e)
{
    return tk_err_set(e, TK_EUNAVAIL, "store_corrupt",
                      "the SQLite store %s is damaged (%s: %.120s); tokend will not start on "
                      "it: stop, restore the file from a backup (or salvage it with sqlite3 "
                      "'.recover'), then start again",
                      path, what, detail);
}

static tk_rc s_check(void *p, const char *url, enum tk_store_check mode, struct tk_err *e)
{
    struct sconn *c = p;
    const char *path = url + 7;
    if (mode == TK_STORE_CHECK_OFF) return TK_OK;
    struct stat sb;
    bool big = stat(path, &sb) == 0 && sb.st_size > QUICK_CHECK_MAX_BYTES;
    const char *sql = mode == TK_STORE_CHECK_FULL ? "PRAGMA integrity_check(1)"
                      : big                       ? NULL
                                                  : "PRAGMA quick_check(1)";
    const char *what = mode == TK_STORE_CHECK_FULL ? "integrity_check" : "quick_check";
    sqlite3_stmt *st = NULL;
    int r;
    if (!sql) {
        /* Large file: the schema parses and each table's first page reads. */
        what = "schema check";
        r = sqlite3_prepare_v2(c->h, "SELECT name FROM sqlite_schema WHERE type = 'table'", -1,
                               &st, NULL);
        char names[64][64];
        int n = 0;
        while (r == SQLITE_OK && (r = sqlite3_step(st)) == SQLITE_ROW && n < 64)
            snprintf(names[n++], sizeof names[0], "%s", (const char *)sqlite3_column_text(st, 0));
        if (r == SQLITE_DONE || r == SQLITE_ROW) r = SQLITE_OK;
        sqlite3_finalize(st);
        st = NULL;
        for (int i = 0; r == SQLITE_OK && i < n; i++) {
            char q[128];
            snprintf(q, sizeof q, "SELECT 1 FROM \"%.63s\" LIMIT 1", names[i]);
            r = sqlite3_exec(c->h, q, NULL, NULL, NULL);
        }
        if (r != SQLITE_OK && ((r & 0xff) == SQLITE_CORRUPT || (r & 0xff) == SQLITE_NOTADB))
            return corrupt(path, what, sqlite3_errmsg(c->h), e);
        if (r != SQLITE_OK) return fail(c->h, r, e, "check");
        return TK_OK;
    }
    r = sqlite3_prepare_v2(c->h, sql, -1, &st, NULL);
    if (r == SQLITE_OK) r = sqlite3_step(st);
    char result[200] = "";
    if (r == SQLITE_ROW)
        snprintf(result, sizeof result, "%s", (const char *)sqlite3_column_text(st, 0));
    int code = r & 0xff;
    tk_rc rc = TK_OK;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        rc = corrupt(path, what, sqlite3_errmsg(c->h), e);
    else if (r != SQLITE_ROW)
        rc = fail(c->h, r, e, "check");
    else if (strcmp(result, "ok") != 0)
        rc = corrupt(path, what, result, e);
    sqlite3_finalize(st);
    return rc;
}

static tk_rc s_sync(void *p, const char *url, struct tk_err *e)
{
    (void)p;
    char wal[4096];
    int n = snprintf(wal, sizeof wal, "%s-wal", url + 7);
    if (n < 0 || (size_t)n >= sizeof wal)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "the store's path is too long");
    int fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* no WAL file: the commit went to the database file by a
         * checkpoint, which syncs */
        if (errno == ENOENT) return TK_OK;
        return tk_err_set(e, TK_EINTERNAL, "store_error", "cannot open %s to sync it: %s", wal,
                          strerror(errno));
    }
    int r = fsync(fd);
    int err = errno;
    close(fd);
    if (r != 0)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "cannot sync %s: %s", wal,
                          strerror(err));
    return TK_OK;
}

static bool s_broken(void *p)
{
    (void)p;
    return false;
}

const struct tk_backend tk_backend_sqlite = {
    .name = "sqlite",
    .connect = s_connect,
    .disconnect = s_disconnect,
    .exec = s_exec,
    .script = s_script,
    .broken = s_broken,
    .check = s_check,
    .sync = s_sync,
    .begin_sql = "BEGIN IMMEDIATE",
    .migration_lock_sql = NULL,
    .lease_lock_suffix = "",
    .lock_row_fmt = NULL,
};
