/* store_internal.h: what the store core shares with its backends. */
#ifndef TK_STORE_INTERNAL_H
#define TK_STORE_INTERNAL_H

#include "store.h"

#include <pthread.h>

struct tk_rows {
    int nrows, ncols, cap;
    char **cells; /* nrows * ncols; NULL is SQL NULL */
    struct tk_pool *pool;
};

#define TK_ROWS_MAX_COLS 64
struct tk_rows *tk_rows_new(int ncols);
/* Append a row; cells[i] may be NULL; len[i] is its length. */
void tk_rows_add(struct tk_rows *r, const char *const *cells, const size_t *len);

struct tk_backend {
    const char *name;
    tk_rc (*connect)(const char *url, const struct tk_store_opts *o, void **conn,
                     struct tk_err *e);
    void (*disconnect)(void *conn);
    tk_rc (*exec)(void *conn, const char *sql, const struct tk_val *args, int nargs,
                  struct tk_rows **out, int64_t *changes, struct tk_err *e);
    /* Run a script of several statements without parameters (migrations). */
    tk_rc (*script)(void *conn, const char *sql, struct tk_err *e);
    bool (*broken)(void *conn);
    /* NULL or: lift (on) or restore (off) the connection's statement and
     * lock timeouts, for migrations. */
    tk_rc (*long_running)(void *conn, bool on, struct tk_err *e);
    /* NULL or: make the last commit durable now (SQLite in WAL mode with
     * synchronous=NORMAL: fsync the WAL). */
    tk_rc (*sync)(void *conn, const char *url, struct tk_err *e);
    /* NULL or the check of the database at open (TK_EUNAVAIL "store_corrupt"). */
    tk_rc (*check)(void *conn, const char *url, enum tk_store_check mode, struct tk_err *e);
    const char *begin_sql;          /* BEGIN IMMEDIATE | BEGIN */
    const char *migration_lock_sql; /* NULL or a statement that serializes migrators */
    const char *lease_lock_suffix;  /* appended to the lease sub-select */
    const char *lock_row_fmt;       /* NULL or "SELECT 1 FROM %s WHERE id = ? FOR UPDATE" */
};

extern const struct tk_backend tk_backend_sqlite;
extern const struct tk_backend tk_backend_pg;

struct tk_db {
    struct tk_store *store;
    void *conn;
    int64_t changes;
    bool in_tx;
    bool durable; /* this transaction's commit is synced to disk (tk_db_durable) */
    bool broken;
    struct tk_db *next;
};

struct tk_migration {
    int version;
    const char *name;
    const char *dialect; /* "" for both, "sqlite" or "pg" */
    const char *sql;
};
/* Generated from src/store/migrations/ by scripts/embed-sql.sh. */
extern const struct tk_migration tk_migrations[];
extern const int tk_migrations_count;

#endif
