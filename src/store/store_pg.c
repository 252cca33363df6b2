/*
 * store_pg.c: the PostgreSQL backend for several nodes on one database.
 * Statements are prepared once per connection (a small cache keyed by SQL
 * text, '?' placeholders renumbered to $n outside quoted strings) and run
 * with text parameters. Every round trip is asynchronous with a deadline:
 * a server that stops answering (a stalled host, every process stopped)
 * fails the call within statement_timeout + a margin instead of hanging,
 * and the connection is then dropped. Connecting is bounded by
 * connect_timeout (5 s unless the URL sets one) and TCP keepalives; the
 * server enforces statement_timeout (10 s) and lock_timeout (5 s) itself.
 */
#include "store_internal.h"

#include <libpq-fe.h>
#include <poll.h>
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

#define PREP_CACHE 64
/* the client's own deadline beyond the server's statement_timeout */
#define CLIENT_MARGIN_MS 2000

struct pconn {
    PGconn *c;
    int64_t timeout_ms; /* a round trip's client-side deadline */
    int stmt_ms;        /* statement_timeout on the server */
    unsigned next_id;
    struct {
        char *sql; /* as the caller wrote it */
        char name[16];
    } prep[PREP_CACHE];
    char where[200]; /* "host H port P database D role R", for errors */
};

static unsigned sql_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Where a connection goes, for errors: never the password. */
static void describe(PGconn *c, char *out, size_t n)
{
    const char *h = c ? PQhost(c) : NULL, *p = c ? PQport(c) : NULL;
    const char *d = c ? PQdb(c) : NULL, *u = c ? PQuser(c) : NULL;
    snprintf(out, n, "host %s port %s database %s role %s", h && *h ? h : "(default)",
             p && *p ? p : "(default)", d && *d ? d : "(default)", u && *u ? u : "(default)");
}

/* Wait until the socket is ready for ev, at most until deadline (µs,
 * monotonic). */
static bool wait_sock(PGconn *c, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = (deadline - tk_mono_us()) / 1000;
        if (left <= 0) return false;
        struct pollfd pf = {.fd = PQsocket(c), .events = ev};
        if (pf.fd < 0) return false;
        int r = poll(&pf, 1, left > 1000 ? 1000 : (int)left);
        if (r > 0) return true;
    }
}

/* Send what is queued and collect the last result of the query that was
 * sent; NULL with *timed_out when the server did not answer in time. */
static PGresult *await(struct pconn *pc, bool *timed_out)
{
    PGconn *c = pc->c;
    int64_t deadline = tk_mono_us() + pc->timeout_ms * 1000;
    *timed_out = false;
    int f;
    while ((f = PQflush(c)) == 1) {
        if (!wait_sock(c, POLLOUT | POLLIN, deadline)) {
            *timed_out = true;
            return NULL;
        }
        if (!PQconsumeInput(c)) return NULL;
    }
    if (f < 0) return NULL;
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (!wait_sock(c, POLLIN, deadline)) {
                *timed_out = true;
                PQclear(last);
                return NULL;
            }
            if (!PQconsumeInput(c)) {
                PQclear(last);
                return NULL;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r) return last;
        PQclear(last);
        last = r;
    }
}

static tk_rc timeout_err(struct pconn *pc, struct tk_err *e)
{
    return tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                      "PostgreSQL (%s) did not answer within %lld ms; the connection was dropped",
                      pc->where, (long long)pc->timeout_ms);
}

static tk_rc fail(struct pconn *pc, PGresult *r, struct tk_err *e)
{
    PGconn *c = pc->c;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    msg[strcspn(msg, "\n")] = '\0';
    if (PQstatus(c) != CONNECTION_OK)
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                          "PostgreSQL connection lost (%s): %s", pc->where, msg);
    if (state && !strcmp(state, "23505"))
        return tk_err_set(e, TK_ECONFLICT, "conflict", "%s", msg);
    /* statement_timeout, lock_timeout: transient, the connection is fine */
    if (state && (!strcmp(state, "57014") || !strcmp(state, "55P03")))
        return tk_err_set(e, TK_EUNAVAIL, "store_busy", "PostgreSQL (%s): %s", pc->where, msg);
    /* Connection exceptions, but not 08P01 (a protocol violation such as a
     * wrong parameter count, on a healthy connection); operator shutdown. */
    if (state && ((!strncmp(state, "08", 2) && strcmp(state, "08P01") != 0) ||
                  !strncmp(state, "57P", 3)))
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable", "PostgreSQL (%s): %s", pc->where,
                          msg);
    return tk_err_set(e, TK_EINTERNAL, "store_error", "%s", msg);
}

/* Run a statement without parameters through the deadline path. */
static tk_rc simple(struct pconn *pc, const char *sql, struct tk_err *e)
{
    if (!PQsendQuery(pc->c, sql)) return fail(pc, NULL, e);
    bool to;
    PGresult *r = await(pc, &to);
    if (to) return timeout_err(pc, e);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    tk_rc rc = TK_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) rc = fail(pc, r, e);
    PQclear(r);
    return rc;
}

/* Does the URL set connect_timeout itself? */
static bool url_sets(const char *url, const char *key)
{
    const char *q = strchr(url, '?');
    size_t kl = strlen(key);
    while (q) {
        q++;
        if (!strncmp(q, key, kl) && q[kl] == '=') return true;
        q = strchr(q, '&');
    }
    return false;
}

static tk_rc p_connect(const char *url, const struct tk_store_opts *o, void **out,
                       struct tk_err *e)
{
    char ct[16];
    snprintf(ct, sizeof ct, "%d", o->connect_timeout_s > 0 ? o->connect_timeout_s : 5);
    /* Ours first: the URL's own values (expanded from dbname) win. */
    const char *keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "dbname", NULL};
    const char *vals[] = {ct, "1", "30", "10", "3", url, NULL};
    int skip = url_sets(url, "connect_timeout") ? 1 : 0;
    PGconn *c = PQconnectdbParams(keys + skip, vals + skip, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[256], where[200];
        snprintf(msg, sizeof msg, "%s", c ? PQerrorMessage(c) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        redact(msg, url);
        describe(c, where, sizeof where);
        /* A URL libpq could not parse has no parts to name. */
        bool parsed = c && PQhost(c) && *PQhost(c);
        PQfinish(c);
        if (parsed)
            return tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                              "cannot connect to PostgreSQL (%s): %s", where, msg);
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable", "cannot connect to PostgreSQL: %s",
                          msg);
    }
    struct pconn *pc = tk_calloc(1, sizeof *pc);
    pc->c = c;
    int stmt_ms = o->statement_timeout_ms > 0 ? o->statement_timeout_ms : 10000;
    pc->timeout_ms = stmt_ms + CLIENT_MARGIN_MS;
    pc->stmt_ms = stmt_ms;
    describe(c, pc->where, sizeof pc->where);
    if (PQsetnonblocking(c, 1) != 0) {
        PQfinish(c);
        free(pc);
        return tk_err_set(e, TK_EUNAVAIL, "store_unreachable",
                          "cannot use the PostgreSQL connection (%s) without blocking",
                          pc->where);
    }
    char set[160];
    snprintf(set, sizeof set,
             "SET client_min_messages = warning; SET statement_timeout = %d; "
             "SET lock_timeout = %d",
             stmt_ms, stmt_ms / 2);
    tk_rc rc = simple(pc, set, e);
    if (rc != TK_OK) {
        PQfinish(c);
        free(pc);
        return rc;
    }
    *out = pc;
    return TK_OK;
}

/* Migrations: no server timeouts, and an hour before the client gives up. */
#define MIGRATION_DEADLINE_MS (3600LL * 1000)

static tk_rc p_long_running(void *p, bool on, struct tk_err *e)
{
    struct pconn *pc = p;
    char set[120];
    if (on) {
        snprintf(set, sizeof set, "SET statement_timeout = 0; SET lock_timeout = 0");
        tk_rc rc = simple(pc, set, e);
        if (rc == TK_OK) pc->timeout_ms = MIGRATION_DEADLINE_MS;
        return rc;
    }
    snprintf(set, sizeof set, "SET statement_timeout = %d; SET lock_timeout = %d", pc->stmt_ms,
             pc->stmt_ms / 2);
    pc->timeout_ms = pc->stmt_ms + CLIENT_MARGIN_MS;
    return simple(pc, set, e);
}

static void p_disconnect(void *p)
{
    struct pconn *pc = p;
    for (int i = 0; i < PREP_CACHE; i++) free(pc->prep[i].sql);
    PQfinish(pc->c);
    free(pc);
}

/* Rewrite '?' to $1..$n outside quotes into out. */
static void number_params(const char *sql, struct tk_buf *out)
{
    int n = 0;
    char q = 0;
    const char *run = sql;
    for (const char *p = sql; *p; p++) {
        if (q) {
            if (*p == q) q = 0;
        } else if (*p == '\'' || *p == '"') {
            q = *p;
        } else if (*p == '?') {
            tk_buf_add(out, run, (size_t)(p - run));
            tk_buf_printf(out, "$%d", ++n);
            run = p + 1;
        }
    }
    tk_buf_addstr(out, run);
}

/* The name of sql's prepared statement on this connection, preparing it
 * when it is not in the cache. */
static tk_rc prepared(struct pconn *pc, const char *sql, const char **name, struct tk_err *e)
{
    unsigned slot = sql_hash(sql) % PREP_CACHE;
    if (pc->prep[slot].sql && !strcmp(pc->prep[slot].sql, sql)) {
        *name = pc->prep[slot].name;
        return TK_OK;
    }
    if (pc->prep[slot].sql) {
        char dealloc[40];
        snprintf(dealloc, sizeof dealloc, "DEALLOCATE %s", pc->prep[slot].name);
        free(pc->prep[slot].sql);
        pc->prep[slot].sql = NULL;
        tk_rc rc = simple(pc, dealloc, e);
        if (rc != TK_OK) return rc;
    }
    char nm[16];
    snprintf(nm, sizeof nm, "tk%u", ++pc->next_id);
    struct tk_buf q;
    tk_buf_init(&q, 1 << 20);
    number_params(sql, &q);
    int ok = PQsendPrepare(pc->c, nm, q.data, 0, NULL);
    tk_buf_free(&q);
    if (!ok) return fail(pc, NULL, e);
    bool to;
    PGresult *r = await(pc, &to);
    if (to) return timeout_err(pc, e);
    tk_rc rc = TK_OK;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) rc = fail(pc, r, e);
    PQclear(r);
    if (rc != TK_OK) return rc;
    pc->prep[slot].sql = tk_strdup(sql);
    memcpy(pc->prep[slot].name, nm, sizeof nm);
    *name = pc->prep[slot].name;
    return TK_OK;
}

static bool is_tx_control(const char *sql)
{
    return !strcmp(sql, "BEGIN") || !strcmp(sql, "COMMIT") || !strcmp(sql, "ROLLBACK");
}

static tk_rc p_exec(void *p, const char *sql, const struct tk_val *args, int nargs,
                    struct tk_rows **out, int64_t *changes, struct tk_err *e)
{
    struct pconn *pc = p;
    const char *vals[32];
    char ints[32][24];
    if (nargs > 32)
        return tk_err_set(e, TK_EINTERNAL, "store_error", "too many parameters (%d)", nargs);
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
    int sent;
    if (nargs == 0 && is_tx_control(sql)) {
        /* nothing to plan; and ROLLBACK must work in an aborted transaction */
        sent = PQsendQueryParams(pc->c, sql, 0, NULL, NULL, NULL, NULL, 0);
    } else {
        const char *name = NULL;
        tk_rc rc = prepared(pc, sql, &name, e);
        if (rc != TK_OK) return rc;
        sent = PQsendQueryPrepared(pc->c, name, nargs, vals, NULL, NULL, 0);
    }
    if (!sent) return fail(pc, NULL, e);
    bool to;
    PGresult *r = await(pc, &to);
    if (to) return timeout_err(pc, e);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        tk_rc rc = fail(pc, r, e);
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
    return simple(p, sql, e);
}

static bool p_broken(void *p)
{
    return PQstatus(((struct pconn *)p)->c) != CONNECTION_OK;
}

const struct tk_backend tk_backend_pg = {
    .name = "postgres",
    .connect = p_connect,
    .disconnect = p_disconnect,
    .exec = p_exec,
    .script = p_script,
    .broken = p_broken,
    .long_running = p_long_running,
    .begin_sql = "BEGIN",
    .migration_lock_sql = "SELECT pg_advisory_xact_lock(8750001)",
    .lease_lock_suffix = " FOR UPDATE SKIP LOCKED",
    .lock_row_fmt = "SELECT 1 FROM %s WHERE id = ? FOR UPDATE",
};
