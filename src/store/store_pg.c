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

/* libpq's messages may quote the URL, or the part of it it could not parse,
 * and the URL may carry a password: cut every quoted text, and any copy of
 * the password, out of msg. */
static void redact(char *msg, const char *url)
{
    char out[256];
    size_t o = 0;
    bool quoted = false;
    for (const char *p = msg; *p && o + 11 < sizeof out; p++) {
        if (*p == '"') {
            if (!quoted) {
                memcpy(out + o, "(redacted)", 10);
                o += 10;
            }
            quoted = !quoted;
        } else if (!quoted) {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (colon && at - colon >= 2) {
        size_t pl = (size_t)(at - colon - 1);
        char *p;
        while ((p = memmem(out, strlen(out), colon + 1, pl)) != NULL) memset(p, '*', pl);
    }
    memcpy(msg, out, o + 1);
}

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
        redact(msg, url);
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
    /* Connection exceptions, but not 08P01 (a protocol violation such as a
     * wrong parameter count, on a healthy connection); operator shutdown. */
    if (state && ((!strncmp(state, "08", 2) && strcmp(state, "08P01") != 0) ||
                  !strncmp(state, "57P", 3)))
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
    const char *cmd = PQcmdStatus(r);
    if (cmd && (!strncmp(cmd, "INSERT", 6) || !strncmp(cmd, "UPDATE", 6) ||
                !strncmp(cmd, "DELETE", 6))) {
        const char *ct = PQcmdTuples(r);
        *changes = ct && *ct ? strtoll(ct, NULL, 10) : 0;
    }
    if (out) {
        int ncols = PQnfields(r), nrows = PQntuples(r);
        if (ncols > TK_ROWS_MAX_COLS) {
            PQclear(r);
            return tk_err_set(e, TK_EINTERNAL, "store_error",
                              "a statement returns %d columns; at most %d are supported", ncols,
                              TK_ROWS_MAX_COLS);
        }
        struct tk_rows *rows = tk_rows_new(ncols);
        const char *cells[TK_ROWS_MAX_COLS];
        size_t lens[TK_ROWS_MAX_COLS];
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
