/*
 * store.h: the one interface every module uses to reach the database.
 *
 * Two backends sit behind it: SQLite (the embedded default; WAL, busy
 * timeout, one connection per thread at a time) and PostgreSQL through libpq
 * (several nodes on one database). Modules write portable SQL with '?'
 * placeholders; the PostgreSQL backend numbers them. The SQL they write is
 * the common subset of both: TEXT and BIGINT columns, times as BIGINT
 * milliseconds since the epoch, booleans as 0/1, ON CONFLICT and RETURNING.
 *
 * A store is a pool of connections (struct tk_db). A thread takes one with
 * tk_store_get, uses it, and gives it back with tk_store_put; a connection is
 * never used by two threads at once. Results are copied out of the backend
 * into a struct tk_rows that the caller frees.
 *
 * The store never sees plaintext secrets: callers hand it sealed values and
 * keyed hashes only.
 */
#ifndef TK_STORE_H
#define TK_STORE_H

#include "../common/tk.h"

struct tk_store;
struct tk_db;
struct tk_rows;

enum tk_val_type { TK_V_NULL = 0, TK_V_INT, TK_V_TEXT };
struct tk_val {
    enum tk_val_type t;
    int64_t i;
    const char *s;
};

#define TK_INT(x) ((struct tk_val){.t = TK_V_INT, .i = (int64_t)(x)})
/* A NULL string binds SQL NULL. */
#define TK_TEXT(x) tk_val_text(x)
static inline struct tk_val tk_val_text(const char *s)
{
    struct tk_val v = {.t = s ? TK_V_TEXT : TK_V_NULL, .s = s};
    return v;
}
#define TK_NULLV ((struct tk_val){.t = TK_V_NULL})
/* TK_ARGS(TK_TEXT(a), TK_INT(b)) expands to "array, count" for tk_db_exec. */
#define TK_ARGS(...)                                                                              \
    (const struct tk_val[]){__VA_ARGS__},                                                         \
        (int)(sizeof((const struct tk_val[]){__VA_ARGS__}) / sizeof(struct tk_val))

/* What tk_store_open checks of a SQLite file before using it. */
enum tk_store_check {
    TK_STORE_CHECK_QUICK = 0, /* default: PRAGMA quick_check on small files, a
                                 header/schema/freelist check above the limit */
    TK_STORE_CHECK_FULL,      /* PRAGMA integrity_check, whatever the size */
    TK_STORE_CHECK_OFF,
};

struct tk_store_opts {
    int pool_size;          /* connections at most */
    int busy_timeout_ms;    /* SQLite: wait this long for a writer's lock */
    bool migrate;           /* apply pending migrations at open */
    int acquire_timeout_ms; /* tk_store_get waits at most this long; 0: 2000 */
    enum tk_store_check check; /* SQLite: the check at open (PostgreSQL: none) */
    int statement_timeout_ms;  /* PostgreSQL: statement_timeout; 0: 10000 */
    int connect_timeout_s;     /* PostgreSQL: connect_timeout unless the URL sets one; 0: 5 */
};
#define TK_STORE_ACQUIRE_TIMEOUT_MS 2000

/* Open a store from a URL: "sqlite:PATH" or "postgres://...". With
 * o->migrate, apply pending migrations; refuse a schema newer than this
 * build knows (TK_ECONFLICT, code "schema_too_new"). A SQLite file that
 * fails the check of o->check is refused with TK_EUNAVAIL, code
 * "store_corrupt", naming the file. */
tk_rc tk_store_open(const char *url, const struct tk_store_opts *o, struct tk_store **out,
                    struct tk_err *e);
void tk_store_close(struct tk_store *s);
/* "sqlite" or "postgres". */
const char *tk_store_backend(const struct tk_store *s);
/* Schema version now in the database, and the newest this build knows. */
int tk_store_schema_version(struct tk_store *s);
int tk_store_schema_latest(void);
/* Did this open create the schema (the database had no tokend tables
 * before)? A fresh store in a data dir that shows an earlier installation
 * is a lost store, not a new installation. */
bool tk_store_created(const struct tk_store *s);

/* Take a connection, waiting for one if all are in use, at most
 * acquire_timeout_ms: then NULL with TK_EUNAVAIL, code "store_busy". Returns
 * NULL and fills e (TK_EUNAVAIL, "store_unreachable") when none can be
 * opened. */
struct tk_db *tk_store_get(struct tk_store *s, struct tk_err *e);
/* Give a connection back; a broken one is closed instead. NULL is a no-op. */
void tk_store_put(struct tk_db *db);
/* SELECT 1 on a pooled connection: is the store reachable now? */
tk_rc tk_store_ping(struct tk_store *s, struct tk_err *e);

/* Run one statement. With out != NULL, rows (possibly zero) are returned and
 * must be freed with tk_rows_free. A unique-constraint violation is
 * TK_ECONFLICT ("conflict"); anything else the database refuses is
 * TK_EINTERNAL ("store_error") or TK_EUNAVAIL when the connection is gone. */
tk_rc tk_db_exec(struct tk_db *db, const char *sql, const struct tk_val *args, int nargs,
                 struct tk_rows **out, struct tk_err *e);
/* The database server's own clock, ms since the epoch (for clock-skew
 * checks: on PostgreSQL the server's, on SQLite this host's). */
tk_rc tk_db_clock_ms(struct tk_db *db, int64_t *ms, struct tk_err *e);

/* Rows changed by the last INSERT/UPDATE/DELETE on this connection. */
int64_t tk_db_changes(struct tk_db *db);

/* Transactions for read-modify-write. begin takes the write lock at once
 * (SQLite BEGIN IMMEDIATE), so two writers never deadlock on upgrade.
 * There is no nesting: begin on a connection already in a transaction is
 * refused (TK_EINTERNAL, code "nested_transaction") and the open
 * transaction is left as it was. */
tk_rc tk_db_begin(struct tk_db *db, struct tk_err *e);
/* Is db inside a transaction begun with tk_db_begin? */
bool tk_db_in_tx(struct tk_db *db);
/* Make the open transaction's commit durable against power loss at once.
 * SQLite runs synchronous=NORMAL (a power loss can roll back the newest
 * commits); for this one commit, tk_db_commit also fsyncs the WAL.
 * tk_event_emit_in calls it for security-relevant events (keyring,
 * operator token changes). PostgreSQL: a no-op (synchronous_commit). */
void tk_db_durable(struct tk_db *db);
tk_rc tk_db_commit(struct tk_db *db, struct tk_err *e);
void tk_db_rollback(struct tk_db *db);
/* Lock a row of a table for the rest of the transaction (PostgreSQL:
 * SELECT ... FOR UPDATE; SQLite: the write lock of begin is enough). */
tk_rc tk_db_lock_row(struct tk_db *db, const char *table, const char *id, struct tk_err *e);

int tk_rows_count(const struct tk_rows *r);
int tk_rows_columns(const struct tk_rows *r);
/* Cell as text; NULL for SQL NULL. Valid until tk_rows_free. */
const char *tk_rows_text(const struct tk_rows *r, int row, int col);
int64_t tk_rows_int(const struct tk_rows *r, int row, int col);
bool tk_rows_null(const struct tk_rows *r, int row, int col);
void tk_rows_free(struct tk_rows *r);

/*
 * Leases: the primitive the refresh engine and other background work stand
 * on. A leasable table has columns id TEXT, tenant_id TEXT, <due column>
 * BIGINT, lease_owner TEXT, lease_until BIGINT. tk_lease_claim marks up to
 * limit rows whose due time is <= now and whose lease is free or expired as
 * held by owner until `until`, and returns them (columns id, tenant_id, due),
 * earliest due first. It is atomic across processes: SQLite by a conditional
 * UPDATE under the database write lock, PostgreSQL by FOR UPDATE SKIP
 * LOCKED. A row is never claimed by two owners for overlapping times.
 * table and due_column are identifiers from the caller's code, never input.
 */
struct tk_lease_spec {
    const char *table;
    const char *due_column; /* NULL due: never claimed by tk_lease_claim */
};
tk_rc tk_lease_claim(struct tk_db *db, const struct tk_lease_spec *spec, const char *owner,
                     int64_t now_ms, int64_t until_ms, int limit, struct tk_rows **out,
                     struct tk_err *e);
/* Claim the one row id for owner until until_ms, due or not (the due time
 * is not looked at), when its lease is free or expired
 * (lease_until <= now_ms). *claimed: whether owner holds it now. A lease
 * held by anyone, owner included, is not taken again (extend one with
 * tk_lease_renew): so two holders with the same owner name never both
 * believe they hold it. Unknown id: *claimed false, TK_OK. */
tk_rc tk_lease_claim_id(struct tk_db *db, const struct tk_lease_spec *spec, const char *id,
                        const char *owner, int64_t now_ms, int64_t until_ms, bool *claimed,
                        struct tk_err *e);
/* Extend a lease that owner still holds (lease_until > now_ms) to until_ms.
 * *held: whether it did (false: expired, or taken by another owner since).
 * Inside a transaction this is also the fence of a commit: on PostgreSQL
 * the UPDATE locks the row until the commit, on SQLite the write lock of
 * tk_db_begin does; so "renew, then write, then commit" writes only while
 * the lease is owner's. */
tk_rc tk_lease_renew(struct tk_db *db, const struct tk_lease_spec *spec, const char *id,
                     const char *owner, int64_t now_ms, int64_t until_ms, bool *held,
                     struct tk_err *e);
/* Release the leases owner holds of the n rows ids (rows held by another
 * owner now are left alone): a statement per 16 ids, for a batch of
 * finished work. */
tk_rc tk_lease_release_many(struct tk_db *db, const struct tk_lease_spec *spec,
                            const char *const *ids, int n, const char *owner, struct tk_err *e);
/* Release a lease held by owner (no-op if another owner holds it now). */
tk_rc tk_lease_release(struct tk_db *db, const struct tk_lease_spec *spec, const char *id,
                       const char *owner, struct tk_err *e);

#endif
