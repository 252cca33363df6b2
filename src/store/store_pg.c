/*
 * store_pg.c: the PostgreSQL backend for several nodes on one database.
 * Statements are sent with PQexecParams, '?' placeholders renumbered to $n
 * (outside quoted strings), all parameters as text. A connection whose
 * socket died is reported broken and replaced by the pool.
 */
#include "store_internal.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tk_rc p_connect(const char *url, const struct tk_store_opts *o, void **out,
                       struct tk_err *e)
{
    (void)o;
    PGconn *c = PQconnectdb(url);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", c ? PQerrorMessage(c) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        /* The URL may carry a password: never repeat it. */
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                          "cannot connect to PostgreSQL: %s", msg);
    }
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    *out = c;
    return TK_OK;
}

static void p_disconnect(void *p)
{
    PQfinish(p);
}

/* Rewrite '?' to $1..$n outside quotes into out. */
static void number_params(const char *sql, struct tk_buf *out)
{
    int n = 0;
    char q = 0;
    for (const char *p = sql; *p; p++) {
        if (q) {
            if (*p == q) q = 0;
            tk_buf_add(out, p, 1);
        } else if (*p == '\'' || *p == '"') {
            q = *p;
            tk_buf_add(out, p, 1);
        } else if (*p == '?') {
            tk_buf_printf(out, "$%d", ++n);
        } else {
            tk_buf_add(out, p, 1);
        }
    }
}

static tk_rc fail(PGconn *c, PGresult *r, struct tk_err *e)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    msg[strcspn(msg, "\n")] = '\0';
    if (PQstatus(c) != CONNECTION_OK)
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable", "PostgreSQL connection lost: %s",
                          msg);
    if (state && !strcmp(state, "23505"))
        return tk_err_set(e, TK_ECONFLICT, "conflict", "%s", msg);
    if (state && (!strncmp(state, "08", 2) || !strncmp(state, "57", 2)))
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable", "%s", msg);
    return tk_err_set(e, TK_EINTERNAL, "store_error", "%s", msg);
}

static tk_rc p_exec(void *p, const char *sql, const struct tk_val *args, int nargs,
                    struct tk_rows **out, int64_t *changes, struct tk_err *e)
{
    PGconn *c = p;
    struct tk_buf q;
    tk_buf_init(&q, 1 << 20);
    number_params(sql, &q);
    const char *vals[32];
    char ints[32][24];
    if (nargs > 32) {
        tk_buf_free(&q);
        return tk_err_set(e, TK_EINTERNAL, "store_error", "too many parameters (%d)", nargs);
    }
    for (int i = 0; i < nargs; i++) {
        switch (args[i].t) {
        case TK_V_NULL: vals[i] = NULL; break;
        case TK_V_TEXT: vals[i] = args[i].s; break;
        case TK_V_INT:
            snprintf(ints[i], sizeof ints[i], "%lld", (long long)args[i].i);
            vals[i] = ints[i];
            break;
        }
    }
    PGresult *r = PQexecParams(c, q.data, nargs, NULL, vals, NULL, NULL, 0);
    tk_buf_free(&q);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        tk_rc rc = fail(c, r, e);
        PQclear(r);
        return rc;
    }
    const char *ct = PQcmdTuples(r);
    *changes = ct && *ct ? strtoll(ct, NULL, 10) : 0;
    if (out) {
        int ncols = PQnfields(r), nrows = PQntuples(r);
        if (ncols > 64) ncols = 64;
        struct tk_rows *rows = tk_rows_new(ncols);
        const char *cells[64];
        size_t lens[64];
        for (int i = 0; i < nrows; i++) {
            for (int j = 0; j < ncols; j++) {
                cells[j] = PQgetisnull(r, i, j) ? NULL : PQgetvalue(r, i, j);
                lens[j] = (size_t)PQgetlength(r, i, j);
            }
            tk_rows_add(rows, cells, lens);
        }
        *out = rows;
    }
    PQclear(r);
    return TK_OK;
}

static tk_rc p_script(void *p, const char *sql, struct tk_err *e)
{
    PGconn *c = p;
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    tk_rc rc = TK_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) rc = fail(c, r, e);
    PQclear(r);
    return rc;
}

static bool p_broken(void *p)
{
    return PQstatus(p) != CONNECTION_OK;
}

const struct tk_backend tk_backend_pg = {
    .name = "postgres",
    .connect = p_connect,
    .disconnect = p_disconnect,
    .exec = p_exec,
    .script = p_script,
    .broken = p_broken,
    .begin_sql = "BEGIN",
    .migration_lock_sql = "SELECT pg_advisory_xact_lock(8750001)",
    .lease_lock_suffix = " FOR UPDATE SKIP LOCKED",
    .lock_row_fmt = "SELECT 1 FROM %s WHERE id = ? FOR UPDATE",
};
