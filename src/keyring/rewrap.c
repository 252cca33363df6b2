/*
 * rewrap.c: re-seal every registered sealed value under the active data key
 * version, one leased batch at a time. See keyring.h.
 */
#include "keyring.h"
#include "keyring_internal.h"

#include "../common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_ID "rewrap"

static const struct tk_lease_spec job_spec = {.table = "keyring_rewrap", .due_column = "due_at"};

/* ---- the registry of sealed columns ---- */

static struct {
    char table[TK_SEALED_IDENT_MAX + 1], column[TK_SEALED_IDENT_MAX + 1];
} registry[TK_SEALED_COLUMNS_MAX];
static int nregistry;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static bool ident_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TK_SEALED_IDENT_MAX || (s[0] >= '0' && s[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

tk_rc tk_keyring_register_sealed(const char *table, const char *column)
{
    if (!ident_ok(table) || !ident_ok(column))
        return TK_EINVAL;
    tk_rc rc = TK_OK;
    pthread_mutex_lock(&registry_lock);
    bool known = false;
    for (int i = 0; i < nregistry; i++)
        known |= !strcmp(registry[i].table, table) && !strcmp(registry[i].column, column);
    if (!known) {
        if (nregistry == TK_SEALED_COLUMNS_MAX) {
            rc = TK_ETOOBIG;
        } else {
            snprintf(registry[nregistry].table, sizeof registry[0].table, "%s", table);
            snprintf(registry[nregistry].column, sizeof registry[0].column, "%s", column);
            nregistry++;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return rc;
}

/* Entry i of the registry into table/column; false past the end. */
static bool registered(int i, char *table, char *column)
{
    pthread_mutex_lock(&registry_lock);
    bool ok = i >= 0 && i < nregistry;
    if (ok) {
        memcpy(table, registry[i].table, sizeof registry[i].table);
        memcpy(column, registry[i].column, sizeof registry[i].column);
    }
    pthread_mutex_unlock(&registry_lock);
    return ok;
}

/* ---- status ---- */

#define STATUS_COLS                                                                                \
    "state, target_version, total, done, rewrapped, failed, first_failed_row, started_at, "      \
    "finished_at, lease_owner, lease_until, pos_table, pos_id"

/* Cell as an integer in [min, max]; NULL is null_value when null_ok. */
static bool cell(const struct tk_rows *r, int col, int64_t min, int64_t max, bool null_ok,
                 int64_t *out)
{
    const char *s = tk_rows_text(r, 0, col);
    if (!s) {
        *out = 0;
        return null_ok;
    }
    return tk_parse_int(s, min, max, out) == TK_OK;
}

/* The job's row, checked: it comes from the store, untrusted. */
static tk_rc status_from_row(const struct tk_rows *r, struct tk_rewrap_status *st,
                             struct tk_err *e)
{
    memset(st, 0, sizeof *st);
    st->exists = true;
    const char *state = tk_rows_text(r, 0, 0), *ffr = tk_rows_text(r, 0, 6),
               *owner = tk_rows_text(r, 0, 9), *pos = tk_rows_text(r, 0, 12);
    int64_t pt;
    bool ok = state && (!strcmp(state, "running") || !strcmp(state, "done")) &&
              cell(r, 1, 1, 256, false, &st->target_version) &&
              cell(r, 2, 0, INT64_MAX, false, &st->total) &&
              cell(r, 3, 0, INT64_MAX, false, &st->done) &&
              cell(r, 4, 0, INT64_MAX, false, &st->rewrapped) &&
              cell(r, 5, 0, INT64_MAX, false, &st->failed) &&
              (!ffr || strlen(ffr) < sizeof st->first_failed_row) &&
              cell(r, 7, 0, INT64_MAX, false, &st->started_at) &&
              cell(r, 8, 0, INT64_MAX, true, &st->finished_at) &&
              (!owner || strlen(owner) < sizeof st->lease_owner) &&
              cell(r, 10, 0, INT64_MAX, true, &st->lease_until) &&
              cell(r, 11, 0, TK_SEALED_COLUMNS_MAX, false, &pt) && pos && strlen(pos) <= 200;
    if (!ok) {
        memset(st, 0, sizeof *st);
        return tk_err_set(e, TK_EINTERNAL, "keyring_corrupt",
                          "the keyring_rewrap row is damaged or was altered (a value out of "
                          "range); start a new rewrap to replace it");
    }
    snprintf(st->state, sizeof st->state, "%s", state);
    if (ffr) snprintf(st->first_failed_row, sizeof st->first_failed_row, "%s", ffr);
    if (owner) snprintf(st->lease_owner, sizeof st->lease_owner, "%s", owner);
    return TK_OK;
}

tk_rc tk_keyring_rewrap_status(struct tk_db *db, struct tk_rewrap_status *st, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    memset(st, 0, sizeof *st);
    tk_rc rc = tk_db_exec(db, "SELECT " STATUS_COLS " FROM keyring_rewrap WHERE id = ?",
                          TK_ARGS(TK_TEXT(JOB_ID)), &r, e);
    if (rc == TK_OK && tk_rows_count(r) == 1) rc = status_from_row(r, st, e);
    tk_rows_free(r);
    return rc;
}

/* ---- start ---- */

tk_rc tk_keyring_rewrap_start(struct tk_keyring *k, struct tk_db *db,
                              struct tk_rewrap_status *st, struct tk_err *e)
{
    if (tk_keyring_sealed(k)) return tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    struct tk_rows *r = NULL;
    int64_t total = 0, target = 0;
    char table[TK_SEALED_IDENT_MAX + 1], column[TK_SEALED_IDENT_MAX + 1];
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_db_lock_row(db, "keyring_rewrap", JOB_ID, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT state FROM keyring_rewrap WHERE id = ?",
                        TK_ARGS(TK_TEXT(JOB_ID)), &r, e);
    bool exists = rc == TK_OK && tk_rows_count(r) == 1;
    if (exists && !tk_rows_null(r, 0, 0) && !strcmp(tk_rows_text(r, 0, 0), "running"))
        rc = tk_err_set(e, TK_ECONFLICT, "rewrap_running",
                        "a rewrap is running already; see seal-status for its progress");
    tk_rows_free(r);
    r = NULL;
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT data_version FROM keyring WHERE id = 1", NULL, 0, &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_set(e, TK_ECONFLICT, "uninitialized", "the keyring is not initialized");
    if (rc == TK_OK && (tk_rows_null(r, 0, 0) ||
                        tk_parse_int(tk_rows_text(r, 0, 0), 1, 256, &target) != TK_OK))
        rc = tk_err_set(e, TK_EINTERNAL, "keyring_corrupt",
                        "keyring.data_version is not a number from 1 to 256: the keyring row is "
                        "damaged or was altered");
    tk_rows_free(r);
    r = NULL;
    for (int i = 0; rc == TK_OK && registered(i, table, column); i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE %s IS NOT NULL", table, column);
        rc = tk_db_exec(db, sql, NULL, 0, &r, e);
        if (rc == TK_OK && tk_rows_int(r, 0, 0) > 0) total += tk_rows_int(r, 0, 0);
        tk_rows_free(r);
        r = NULL;
    }
    int64_t now = tk_now_ms();
    if (rc == TK_OK && exists)
        rc = tk_db_exec(db,
                        "UPDATE keyring_rewrap SET state = 'running', target_version = ?, "
                        "total = ?, done = 0, rewrapped = 0, failed = 0, first_failed_row = NULL, "
                        "pos_table = 0, pos_id = '', started_at = ?, finished_at = NULL, "
                        "due_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                        TK_ARGS(TK_INT(target), TK_INT(total), TK_INT(now), TK_INT(now),
                                TK_TEXT(JOB_ID)),
                        NULL, e);
    else if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "INSERT INTO keyring_rewrap (id, state, target_version, total, done, "
                        "rewrapped, failed, pos_table, pos_id, started_at, due_at) "
                        "VALUES (?, 'running', ?, ?, 0, 0, 0, 0, '', ?, ?)",
                        TK_ARGS(TK_TEXT(JOB_ID), TK_INT(target), TK_INT(total), TK_INT(now),
                                TK_INT(now)),
                        NULL, e);
    if (rc == TK_ECONFLICT && e && strcmp(e->code, "rewrap_running") != 0)
        tk_err_set(e, TK_ECONFLICT, "rewrap_running",
                   "a rewrap was started at the same moment (by another node?)");
    if (rc == TK_OK)
        rc = tk_db_commit(db, e);
    else
        tk_db_rollback(db);
    if (rc == TK_OK && st) rc = tk_keyring_rewrap_status(db, st, e);
    if (rc == TK_OK)
        tk_info("keyring: rewrap started toward data key version %lld, %lld value(s)",
                (long long)target, (long long)total);
    return rc;
}

/* ---- step ---- */

static void fill_progress(struct tk_db *db, struct tk_rewrap_progress *p)
{
    struct tk_rewrap_status st;
    struct tk_err e;
    if (tk_keyring_rewrap_status(db, &st, &e) != TK_OK) return;
    p->running = st.exists && !strcmp(st.state, "running");
    p->done = st.done;
    p->total = st.total;
}

/* Claim the job's lease for owner, or renew it. */
static tk_rc take_lease(struct tk_keyring *k, struct tk_db *db, const char *owner, bool *held,
                        struct tk_err *e)
{
    int64_t now = tk_now_ms(), until = now + tk_keyring_rewrap_lease(k);
    *held = false;
    /* a job that is done has no lease (its row sets lease_owner NULL) */
    tk_rc rc = tk_lease_renew(db, &job_spec, JOB_ID, owner, now, until, held, e);
    if (rc != TK_OK || *held) return rc;
    struct tk_rows *r = NULL;
    rc = tk_lease_claim(db, &job_spec, owner, now, until, 1, &r, e);
    if (rc == TK_OK) *held = tk_rows_count(r) == 1;
    tk_rows_free(r);
    return rc;
}

tk_rc tk_keyring_rewrap_step(struct tk_keyring *k, struct tk_db *db, const char *owner,
                             int batch, const struct tk_keyring_hook *hook,
                             struct tk_rewrap_progress *p, struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    if (tk_keyring_sealed(k)) return tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    if (batch < 1) batch = 1;
    bool held;
    tk_rc rc = take_lease(k, db, owner, &held, e);
    if (rc != TK_OK) return rc;
    if (!held) {
        fill_progress(db, p);
        return TK_OK;
    }

    struct tk_rows *r = NULL;
    rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_db_lock_row(db, "keyring_rewrap", JOB_ID, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT " STATUS_COLS " FROM keyring_rewrap WHERE id = ?",
                        TK_ARGS(TK_TEXT(JOB_ID)), &r, e);
    if (rc != TK_OK) {
        tk_rows_free(r);
        tk_db_rollback(db);
        return rc;
    }
    struct tk_rewrap_status st;
    memset(&st, 0, sizeof st);
    if (tk_rows_count(r) == 1) rc = status_from_row(r, &st, e);
    if (rc != TK_OK) {
        tk_rows_free(r);
        tk_db_rollback(db);
        return rc;
    }
    /* Under the row lock: is the lease still ours? (It may have run out
     * between claim and now, and another node taken it.) */
    if (tk_rows_count(r) != 1 || strcmp(st.state, "running") != 0 ||
        strcmp(st.lease_owner, owner) != 0 || st.lease_until <= tk_now_ms()) {
        tk_rows_free(r);
        tk_db_rollback(db);
        fill_progress(db, p);
        return TK_OK;
    }
    int ti = (int)tk_rows_int(r, 0, 11); /* checked by status_from_row */
    char *pos = tk_strdup(tk_rows_text(r, 0, 12));
    tk_rows_free(r);
    r = NULL;
    p->held = true;

    char table[TK_SEALED_IDENT_MAX + 1], column[TK_SEALED_IDENT_MAX + 1];
    int budget = batch;
    bool stop = false;
    while (rc == TK_OK && budget > 0 && !stop && registered(ti, table, column)) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT id, tenant_id, %s FROM %s WHERE id > ? AND %s IS NOT NULL ORDER BY id "
                 "LIMIT ?",
                 column, table, column);
        rc = tk_db_exec(db, sql, TK_ARGS(TK_TEXT(pos), TK_INT(budget)), &r, e);
        if (rc != TK_OK) break;
        int n = tk_rows_count(r);
        for (int i = 0; i < n && rc == TK_OK; i++) {
            const char *id = tk_rows_text(r, i, 0), *tenant = tk_rows_text(r, i, 1),
                       *text = tk_rows_text(r, i, 2);
            if (!id || !text) continue; /* the WHERE excludes both; a lying store skips */
            int64_t ver;
            if (!(tk_sealed_version(text, &ver) && ver >= st.target_version)) {
                struct tk_seal_ad ad = {tenant, table, column, id};
                struct tk_sealed old = {.text = (char *)text}, *nv = NULL;
                struct tk_secret *plain = NULL;
                struct tk_err oe;
                struct tk_open_failure of;
                /* with db: a version rotated on another node reloads the keyring */
                tk_rc orc = tk_keyring_open_value(k, db, &old, &ad, &plain, &of, &oe);
                if (orc == TK_EUNAVAIL) {
                    /* sealed under our feet: not a data fault; roll the batch back */
                    rc = tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend was sealed during rewrap");
                    break;
                }
                if (orc != TK_OK) {
                    p->failed++;
                    st.failed++;
                    if (!st.first_failed_row[0])
                        snprintf(st.first_failed_row, sizeof st.first_failed_row, "%s.%s:%s",
                                 table, column, id);
                    tk_warn("keyring: rewrap: %s", oe.msg);
                    if (hook && hook->open_failed) {
                        rc = hook->open_failed(hook->arg, db, &ad, &of, oe.msg, e);
                        if (rc != TK_OK) break;
                    }
                } else {
                    rc = tk_keyring_seal_version(k, db, plain, &ad, st.target_version, &nv, e);
                    tk_secret_free(plain);
                    if (rc != TK_OK) break;
                    snprintf(sql, sizeof sql, "UPDATE %s SET %s = ? WHERE id = ? AND %s = ?",
                             table, column, column);
                    rc = tk_db_exec(db, sql,
                                    TK_ARGS(TK_TEXT(nv->text), TK_TEXT(id), TK_TEXT(text)), NULL,
                                    e);
                    bool swapped = rc == TK_OK && tk_db_changes(db) == 1;
                    tk_sealed_free(nv);
                    if (rc != TK_OK) break;
                    if (!swapped) { /* a writer won: read the row again next step */
                        stop = true;
                        break;
                    }
                    p->rewrapped++;
                    st.rewrapped++;
                }
            }
            p->processed++;
            st.done++;
            budget--;
            free(pos);
            pos = tk_strdup(id);
        }
        tk_rows_free(r);
        r = NULL;
        if (rc == TK_OK && !stop && budget > 0) { /* this table is through */
            ti++;
            free(pos);
            pos = tk_strdup("");
        }
    }
    bool finished = rc == TK_OK && !stop && !registered(ti, table, column);
    int64_t now = tk_now_ms();
    if (rc == TK_OK && finished)
        rc = tk_db_exec(db,
                        "UPDATE keyring_rewrap SET state = 'done', done = ?, total = ?, "
                        "rewrapped = ?, failed = ?, first_failed_row = ?, pos_table = ?, "
                        "pos_id = ?, finished_at = ?, due_at = NULL, lease_owner = NULL, "
                        "lease_until = NULL WHERE id = ?",
                        TK_ARGS(TK_INT(st.done), TK_INT(st.done), TK_INT(st.rewrapped),
                                TK_INT(st.failed),
                                TK_TEXT(st.first_failed_row[0] ? st.first_failed_row : NULL),
                                TK_INT(ti), TK_TEXT(pos), TK_INT(now), TK_TEXT(JOB_ID)),
                        NULL, e);
    else if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "UPDATE keyring_rewrap SET done = ?, rewrapped = ?, failed = ?, "
                        "first_failed_row = ?, pos_table = ?, pos_id = ? WHERE id = ?",
                        TK_ARGS(TK_INT(st.done), TK_INT(st.rewrapped), TK_INT(st.failed),
                                TK_TEXT(st.first_failed_row[0] ? st.first_failed_row : NULL),
                                TK_INT(ti), TK_TEXT(pos), TK_TEXT(JOB_ID)),
                        NULL, e);
    if (rc == TK_OK)
        rc = tk_db_commit(db, e);
    else
        tk_db_rollback(db);
    free(pos);
    if (rc != TK_OK) {
        memset(p, 0, sizeof *p);
        p->running = true;
    } else {
        p->running = !finished;
        p->finished = finished;
        p->done = st.done;
        p->total = finished ? st.done : st.total;
        if (finished)
            tk_info("keyring: rewrap to data key version %lld done: %lld value(s), %lld "
                    "rewrapped, %lld failed",
                    (long long)st.target_version, (long long)st.done, (long long)st.rewrapped,
                    (long long)st.failed);
    }
    return rc;
}
