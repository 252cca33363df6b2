/*
 * store.c: the backend-independent half of the store: the connection pool,
 * result sets, transactions, migrations and leases. See store.h.
 */
#include "store_internal.h"

#include "../common/log.h"
#include "../common/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tk_store {
    const struct tk_backend *be;
    char *url;
    struct tk_store_opts opts;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct tk_db *idle;
    int open; /* connections open, idle or in use */
    int schema_version;
    bool created; /* this open created the schema */
};

/* ---- rows ---- */

struct tk_rows *tk_rows_new(int ncols)
{
    struct tk_rows *r = tk_calloc(1, sizeof *r);
    r->ncols = ncols;
    r->pool = tk_pool_new();
    return r;
}

void tk_rows_add(struct tk_rows *r, const char *const *cells, const size_t *len)
{
    if (r->nrows == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->cells = tk_realloc(r->cells, (size_t)r->cap * (size_t)r->ncols * sizeof(char *));
    }
    char **row = r->cells + (size_t)r->nrows * (size_t)r->ncols;
    for (int i = 0; i < r->ncols; i++)
        row[i] = cells[i] ? tk_pool_strndup(r->pool, cells[i], len[i]) : NULL;
    r->nrows++;
}

int tk_rows_count(const struct tk_rows *r)
{
    return r ? r->nrows : 0;
}

int tk_rows_columns(const struct tk_rows *r)
{
    return r ? r->ncols : 0;
}

const char *tk_rows_text(const struct tk_rows *r, int row, int col)
{
    if (!r || row < 0 || row >= r->nrows || col < 0 || col >= r->ncols) return NULL;
    return r->cells[(size_t)row * (size_t)r->ncols + (size_t)col];
}

int64_t tk_rows_int(const struct tk_rows *r, int row, int col)
{
    const char *s = tk_rows_text(r, row, col);
    return s ? strtoll(s, NULL, 10) : 0;
}

bool tk_rows_null(const struct tk_rows *r, int row, int col)
{
    return tk_rows_text(r, row, col) == NULL;
}

void tk_rows_free(struct tk_rows *r)
{
    if (!r) return;
    tk_pool_free(r->pool);
    free(r->cells);
    free(r);
}

/* ---- pool ---- */

const char *tk_store_backend(const struct tk_store *s)
{
    return s->be->name;
}

static tk_rc db_open(struct tk_store *s, struct tk_db **out, struct tk_err *e)
{
    void *conn = NULL;
    tk_rc rc = s->be->connect(s->url, &s->opts, &conn, e);
    if (rc != TK_OK) return rc;
    struct tk_db *db = tk_calloc(1, sizeof *db);
    db->store = s;
    db->conn = conn;
    *out = db;
    return TK_OK;
}

static void db_close(struct tk_db *db)
{
    db->store->be->disconnect(db->conn);
    free(db);
}

struct tk_db *tk_store_get(struct tk_store *s, struct tk_err *e)
{
    struct timespec deadline;
    tk_mono_deadline(&deadline, s->opts.acquire_timeout_ms);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->idle) {
            struct tk_db *db = s->idle;
            s->idle = db->next;
            pthread_mutex_unlock(&s->lock);
            db->next = NULL;
            return db;
        }
        if (s->open < s->opts.pool_size) break;
        int w = pthread_cond_timedwait(&s->cond, &s->lock, &deadline);
        if (w == ETIMEDOUT && !s->idle && s->open >= s->opts.pool_size) {
            int size = s->opts.pool_size;
            pthread_mutex_unlock(&s->lock);
            tk_err_set(e, TK_EUNAVAIL, "store_busy",
                       "no store connection became free within %d ms: all %d of the pool "
                       "(store_pool = %d) are in use; retry, or raise store_pool",
                       s->opts.acquire_timeout_ms, size, size);
            return NULL;
        }
    }
    s->open++;
    pthread_mutex_unlock(&s->lock);
    struct tk_db *db = NULL;
    if (db_open(s, &db, e) != TK_OK) {
        pthread_mutex_lock(&s->lock);
        s->open--;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    return db;
}

void tk_store_put(struct tk_db *db)
{
    if (!db) return;
    struct tk_store *s = db->store;
    if (db->in_tx) tk_db_rollback(db);
    if (db->broken || s->be->broken(db->conn)) {
        db_close(db);
        pthread_mutex_lock(&s->lock);
        s->open--;
    } else {
        pthread_mutex_lock(&s->lock);
        db->next = s->idle;
        s->idle = db;
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

tk_rc tk_store_ping(struct tk_store *s, struct tk_err *e)
{
    struct tk_db *db = tk_store_get(s, e);
    if (!db) return TK_EUNAVAIL;
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db, "SELECT 1", NULL, 0, &r, e);
    tk_rows_free(r);
    tk_store_put(db);
    return rc;
}

/* ---- statements and transactions ---- */

tk_rc tk_db_exec(struct tk_db *db, const char *sql, const struct tk_val *args, int nargs,
                 struct tk_rows **out, struct tk_err *e)
{
    if (out) *out = NULL;
    struct tk_err local;
    if (!e) e = &local;
    /* A connection found dead (a timed-out round trip, a lost socket) is
     * not tried again: it could only wait again. tk_store_put closes it. */
    if (db->broken)
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                          "this store connection was lost earlier in the request");
    tk_rc rc = db->store->be->exec(db->conn, sql, args, nargs, out, &db->changes, e);
    /* A busy database (SQLite's lock held past busy_timeout) is transient:
     * the connection stays in the pool. */
    if (rc == TK_EUNAVAIL && strcmp(e->code, "store_busy") != 0) db->broken = true;
    return rc;
}

tk_rc tk_db_clock_ms(struct tk_db *db, int64_t *ms, struct tk_err *e)
{
    bool pg = !strcmp(db->store->be->name, "postgres");
    const char *sql = pg ? "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
                         : "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
    struct tk_rows *rows = NULL;
    tk_rc rc = tk_db_exec(db, sql, NULL, 0, &rows, e);
    if (rc == TK_OK && tk_rows_count(rows) != 1)
        rc = tk_err_set(e, TK_EINTERNAL, "store_error", "the store did not tell its time");
    if (rc == TK_OK) *ms = tk_rows_int(rows, 0, 0);
    tk_rows_free(rows);
    return rc;
}

int64_t tk_db_changes(struct tk_db *db)
{
    return db->changes;
}

bool tk_db_in_tx(struct tk_db *db)
{
    return db && db->in_tx;
}

tk_rc tk_db_begin(struct tk_db *db, struct tk_err *e)
{
    if (db->in_tx)
        return tk_err_set(e, TK_EINTERNAL, "nested_transaction",
                          "a transaction was begun on a connection already in one (there is "
                          "no nesting; the open transaction is left as it was)");
    tk_rc rc = tk_db_exec(db, db->store->be->begin_sql, NULL, 0, NULL, e);
    if (rc == TK_OK) db->in_tx = true;
    return rc;
}

void tk_db_durable(struct tk_db *db)
{
    if (db->in_tx) db->durable = true;
}

tk_rc tk_db_commit(struct tk_db *db, struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db, "COMMIT", NULL, 0, NULL, e);
    if (rc != TK_OK) {
        tk_db_rollback(db);
        return rc;
    }
    db->in_tx = false;
    bool durable = db->durable;
    db->durable = false;
    if (durable && db->store->be->sync) {
        /* Committed already: a failed sync is logged, not reported as a
         * failed commit (the data is there, only its durability is not
         * known). */
        struct tk_err se;
        if (db->store->be->sync(db->conn, db->store->url, &se) != TK_OK)
            tk_warn("store: %s", se.msg);
    }
    return TK_OK;
}

void tk_db_rollback(struct tk_db *db)
{
    db->durable = false;
    struct tk_err e;
    if (tk_db_exec(db, "ROLLBACK", NULL, 0, NULL, &e) != TK_OK) db->broken = true;
    db->in_tx = false;
}

tk_rc tk_db_lock_row(struct tk_db *db, const char *table, const char *id, struct tk_err *e)
{
    const char *fmt = db->store->be->lock_row_fmt;
    if (!fmt) return TK_OK;
    char sql[160];
    int n = snprintf(sql, sizeof sql, fmt, table);
    if (n < 0 || (size_t)n >= sizeof sql)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "table name too long: %.40s", table);
    return tk_db_exec(db, sql, TK_ARGS(TK_TEXT(id)), NULL, e);
}

/* ---- migrations ---- */

int tk_store_schema_latest(void)
{
    int v = 0;
    for (int i = 0; i < tk_migrations_count; i++)
        if (tk_migrations[i].version > v) v = tk_migrations[i].version;
    return v;
}

int tk_store_schema_version(struct tk_store *s)
{
    return s->schema_version;
}

bool tk_store_created(const struct tk_store *s)
{
    return s->created;
}

static const struct tk_migration *migration_for(const struct tk_backend *be, int version)
{
    const struct tk_migration *common = NULL;
    const char *dialect = be == &tk_backend_pg ? "pg" : "sqlite";
    for (int i = 0; i < tk_migrations_count; i++) {
        const struct tk_migration *m = &tk_migrations[i];
        if (m->version != version) continue;
        if (!strcmp(m->dialect, dialect)) return m;
        if (!m->dialect[0]) common = m;
    }
    return common;
}

static tk_rc read_version(struct tk_db *db, int *v, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", NULL, 0, &r,
                          e);
    if (rc == TK_OK) *v = (int)tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return rc;
}

static tk_rc migrate_steps(struct tk_store *s, struct tk_db *db, struct tk_err *e);

/* Migrations may build indexes over large tables, and a second node waits
 * on the migration lock while the first migrates: the statement and lock
 * timeouts of ordinary work do not apply while they run. */
static tk_rc migrate(struct tk_store *s, struct tk_db *db, struct tk_err *e)
{
    if (s->be->long_running) {
        tk_rc rc = s->be->long_running(db->conn, true, e);
        if (rc != TK_OK) return rc;
    }
    tk_rc rc = migrate_steps(s, db, e);
    struct tk_err le;
    if (s->be->long_running && !db->broken && s->be->long_running(db->conn, false, &le) != TK_OK)
        db->broken = true; /* not back to the ordinary timeouts: not reused */
    return rc;
}

static tk_rc migrate_steps(struct tk_store *s, struct tk_db *db, struct tk_err *e)
{
    tk_rc rc;
    int latest = tk_store_schema_latest();
    for (;;) {
        int v = 0;
        if ((rc = tk_db_begin(db, e)) != TK_OK) return rc;
        if (s->be->migration_lock_sql)
            rc = tk_db_exec(db, s->be->migration_lock_sql, NULL, 0, NULL, e);
        /* Inside the lock, so that two nodes starting at once do not race. */
        if (rc == TK_OK)
            rc = tk_db_exec(db,
                            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY "
                            "KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                            NULL, 0, NULL, e);
        if (rc == TK_OK) rc = read_version(db, &v, e);
        if (rc == TK_OK && v == 0) s->created = true;
        if (rc == TK_OK && v > latest) {
            rc = tk_err_set(e, TK_ECONFLICT, "schema_too_new",
                            "the database schema is version %d but this tokend (%s) knows "
                            "versions up to %d: run a newer tokend, or restore a backup",
                            v, TK_VERSION, latest);
        }
        if (rc != TK_OK || v == latest) {
            if (rc == TK_OK) rc = tk_db_commit(db, e);
            else tk_db_rollback(db);
            s->schema_version = v;
            return rc;
        }
        const struct tk_migration *m = migration_for(s->be, v + 1);
        if (!m) {
            tk_db_rollback(db);
            return tk_err_set(e, TK_EINTERNAL, "migration_missing", "migration %d is missing",
                              v + 1);
        }
        rc = s->be->script(db->conn, m->sql, e);
        if (rc == TK_OK)
            rc = tk_db_exec(db, "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                            TK_ARGS(TK_INT(m->version), TK_TEXT(m->name), TK_INT(tk_now_ms())),
                            NULL, e);
        if (rc == TK_OK) rc = tk_db_commit(db, e);
        else tk_db_rollback(db);
        if (rc != TK_OK) {
            char why[sizeof e->msg];
            snprintf(why, sizeof why, "%s", e ? e->msg : "");
            return tk_err_set(e, rc, "migration_failed", "migration %04d_%s failed: %s",
                              m->version, m->name, why);
        }
        tk_info("store: applied migration %04d_%s", m->version, m->name);
    }
}

/* ---- open and close ---- */

tk_rc tk_store_open(const char *url, const struct tk_store_opts *o, struct tk_store **out,
                    struct tk_err *e)
{
    const struct tk_backend *be;
    if (!strncmp(url, "sqlite:", 7))
        be = &tk_backend_sqlite;
    else if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13))
        be = &tk_backend_pg;
    else
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "store",
                            "store must start with sqlite: or postgres://");
    struct tk_store *s = tk_calloc(1, sizeof *s);
    s->be = be;
    s->url = tk_strdup(url);
    s->opts = *o;
    if (s->opts.pool_size < 1) s->opts.pool_size = 1;
    if (s->opts.busy_timeout_ms <= 0) s->opts.busy_timeout_ms = 5000;
    if (s->opts.acquire_timeout_ms <= 0) s->opts.acquire_timeout_ms = TK_STORE_ACQUIRE_TIMEOUT_MS;
    if (s->opts.statement_timeout_ms <= 0) s->opts.statement_timeout_ms = 10000;
    if (s->opts.connect_timeout_s <= 0) s->opts.connect_timeout_s = 5;
    pthread_mutex_init(&s->lock, NULL);
    tk_cond_init_mono(&s->cond);
    struct tk_db *db = tk_store_get(s, e);
    tk_rc rc = db ? TK_OK : TK_EUNAVAIL;
    if (rc == TK_OK && s->be->check) rc = s->be->check(db->conn, s->url, s->opts.check, e);
    if (rc == TK_OK && o->migrate) rc = migrate(s, db, e);
    if (rc == TK_OK && !o->migrate) {
        if (read_version(db, &s->schema_version, e) != TK_OK) s->schema_version = 0;
    }
    tk_store_put(db);
    if (rc != TK_OK) {
        tk_store_close(s);
        return rc;
    }
    *out = s;
    return TK_OK;
}

void tk_store_close(struct tk_store *s)
{
    if (!s) return;
    struct tk_db *db = s->idle;
    while (db) {
        struct tk_db *n = db->next;
        db_close(db);
        db = n;
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->url);
    free(s);
}

/* ---- leases ---- */

/* qsort comparator over rows of (id, tenant_id, due). */
static int by_due(const void *a, const void *b)
{
    const char *const *ra = a, *const *rb = b;
    long long da = strtoll(ra[2], NULL, 10), db = strtoll(rb[2], NULL, 10);
    return da < db ? -1 : da > db;
}

tk_rc tk_lease_claim(struct tk_db *db, const struct tk_lease_spec *spec, const char *owner,
                     int64_t now_ms, int64_t until_ms, int limit, struct tk_rows **out,
                     struct tk_err *e)
{
    char sql[768];
    const char *t = spec->table, *due = spec->due_column;
    /* The outer WHERE repeats the condition: under PostgreSQL's READ
     * COMMITTED a row freed and re-taken between the sub-select and the
     * update must not be taken twice. */
    int n = snprintf(sql, sizeof sql,
             "UPDATE %s SET lease_owner = ?, lease_until = ? WHERE id IN ("
             "SELECT id FROM %s WHERE %s <= ? AND (lease_until IS NULL OR lease_until <= ?) "
             "ORDER BY %s LIMIT ?%s) AND (lease_until IS NULL OR lease_until <= ?) "
             "RETURNING id, tenant_id, %s",
             t, t, due, due, db->store->be->lease_lock_suffix, due);
    if (n < 0 || (size_t)n >= sizeof sql)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "lease table or column name too long");
    tk_rc rc = tk_db_exec(db, sql,
                          TK_ARGS(TK_TEXT(owner), TK_INT(until_ms), TK_INT(now_ms),
                                  TK_INT(now_ms), TK_INT(limit), TK_INT(now_ms)),
                          out, e);
    /* RETURNING has no order of its own: earliest due first, as promised. */
    if (rc == TK_OK && out && *out && (*out)->nrows > 1) {
        struct tk_rows *r = *out;
        qsort(r->cells, (size_t)r->nrows, (size_t)r->ncols * sizeof(char *), by_due);
    }
    return rc;
}

tk_rc tk_lease_claim_id(struct tk_db *db, const struct tk_lease_spec *spec, const char *id,
                        const char *owner, int64_t now_ms, int64_t until_ms, bool *claimed,
                        struct tk_err *e)
{
    char sql[256];
    *claimed = false;
    int n = snprintf(sql, sizeof sql,
                     "UPDATE %s SET lease_owner = ?, lease_until = ? WHERE id = ? AND "
                     "(lease_until IS NULL OR lease_until <= ?)",
                     spec->table);
    if (n < 0 || (size_t)n >= sizeof sql)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "lease table name too long");
    tk_rc rc = tk_db_exec(db, sql,
                          TK_ARGS(TK_TEXT(owner), TK_INT(until_ms), TK_TEXT(id), TK_INT(now_ms)),
                          NULL, e);
    if (rc == TK_OK) *claimed = tk_db_changes(db) == 1;
    return rc;
}

tk_rc tk_lease_renew(struct tk_db *db, const struct tk_lease_spec *spec, const char *id,
                     const char *owner, int64_t now_ms, int64_t until_ms, bool *held,
                     struct tk_err *e)
{
    char sql[256];
    *held = false;
    int n = snprintf(sql, sizeof sql,
                     "UPDATE %s SET lease_until = ? WHERE id = ? AND lease_owner = ? AND "
                     "lease_until > ?",
                     spec->table);
    if (n < 0 || (size_t)n >= sizeof sql)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "lease table name too long");
    tk_rc rc = tk_db_exec(db, sql,
                          TK_ARGS(TK_INT(until_ms), TK_TEXT(id), TK_TEXT(owner), TK_INT(now_ms)),
                          NULL, e);
    if (rc == TK_OK) *held = tk_db_changes(db) == 1;
    return rc;
}

/* Ids per statement: a fixed count (short chunks repeat their last id),
 * so that every batch is the same prepared statement (PostgreSQL binds at
 * most 32 parameters). */
#define LEASE_RELEASE_CHUNK 16

tk_rc tk_lease_release_many(struct tk_db *db, const struct tk_lease_spec *spec,
                            const char *const *ids, int n, const char *owner, struct tk_err *e)
{
    char sql[256 + LEASE_RELEASE_CHUNK * 3];
    int len = snprintf(sql, sizeof sql,
                       "UPDATE %s SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ? "
                       "AND id IN (",
                       spec->table);
    if (len < 0 || len >= 200)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "lease table name too long");
    for (int i = 0; i < LEASE_RELEASE_CHUNK; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, i ? ", ?" : "?");
    snprintf(sql + len, sizeof sql - (size_t)len, ")");
    tk_rc rc = TK_OK;
    for (int at = 0; rc == TK_OK && at < n; at += LEASE_RELEASE_CHUNK) {
        struct tk_val args[LEASE_RELEASE_CHUNK + 1];
        args[0] = TK_TEXT(owner);
        for (int i = 0; i < LEASE_RELEASE_CHUNK; i++)
            args[i + 1] = TK_TEXT(ids[at + i < n ? at + i : n - 1]);
        rc = tk_db_exec(db, sql, args, LEASE_RELEASE_CHUNK + 1, NULL, e);
    }
    return rc;
}

tk_rc tk_lease_release(struct tk_db *db, const struct tk_lease_spec *spec, const char *id,
                       const char *owner, struct tk_err *e)
{
    char sql[256];
    int n = snprintf(sql, sizeof sql,
                     "UPDATE %s SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND "
                     "lease_owner = ?",
                     spec->table);
    if (n < 0 || (size_t)n >= sizeof sql)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "lease table name too long");
    return tk_db_exec(db, sql, TK_ARGS(TK_TEXT(id), TK_TEXT(owner)), NULL, e);
}
