/* test_keyring_hardening.c: issue 13 in the keyring, on both backends --
 * rows read from the store are untrusted (#4), unseal attempts bound to a
 * nonce (#6), rewrap on a node behind a rotation (#10), no store round trip
 * under the keyring's lock (#11), init/unseal/rotate not without their
 * event (#18), the auto-unseal key file's mode and symlinks (#20). */
#include "unit.h"

#include "../../src/api/api.h"
#include "../../src/events/events.h"
#include "../../src/keyring/keyring.h"
#include "../../src/keyring/keyring_internal.h"
#include "../../src/operators/operators.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static struct tk_keyring *kr_new(const char *dir, struct tk_db *db)
{
    struct tk_keyring *k = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_keyring_new(dir, &k, &e), &e)) return NULL;
    tk_keyring_load(k, db, &e); /* may say keyring_corrupt: the tests look */
    return k;
}

/* test_rewrap.c registers rewrap_test for the whole process: have it here */
#define RW_TEST_TABLE                                                                              \
    "CREATE TABLE IF NOT EXISTS rewrap_test (id TEXT PRIMARY KEY, tenant_id TEXT, secret TEXT)"

static int64_t count(struct tk_db *db, const char *sql)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t n = -1;
    if (CHECK_OK(tk_db_exec(db, sql, NULL, 0, &r, &e), &e)) n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

static bool exec_ok(struct tk_db *db, const char *sql)
{
    struct tk_err e;
    return CHECK_OK(tk_db_exec(db, sql, NULL, 0, NULL, &e), &e);
}

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

/* A share anyone can make: number x, random bytes, a valid (public) CRC. */
static void forge_share(unsigned x, char out[TK_SHARE_MAX])
{
    unsigned char buf[33];
    buf[0] = (unsigned char)x;
    tk_random(buf + 1, 32);
    char enc[64];
    tk_b64url_enc(buf + 1, 32, enc);
    snprintf(out, TK_SHARE_MAX, "tks1-%u-%s-%06x", x, enc, crc32_of(buf, 33) & 0xffffffu);
}

/* Give a share with nonce (NULL: none); the started nonce goes to started. */
static tk_rc give(struct tk_keyring *k, struct tk_db *db, const char *share, const char *nonce,
                  char started[TK_UNSEAL_NONCE], struct tk_seal_status *st, struct tk_err *e)
{
    char local[TK_UNSEAL_NONCE];
    tk_err_clear(e);
    return tk_keyring_unseal_share(k, db, share, nonce, started ? started : local, NULL, st, e);
}

/* Unseal k with shares[idx[0..n-1]] as one attempt. */
static bool unseal_all(struct tk_keyring *k, struct tk_db *db, char (*shares)[TK_SHARE_MAX],
                       const int *idx, int n)
{
    char nonce[TK_UNSEAL_NONCE] = "";
    struct tk_seal_status st;
    struct tk_err e;
    for (int i = 0; i < n; i++) {
        char started[TK_UNSEAL_NONCE];
        if (!CHECK_OK(give(k, db, shares[idx[i]], i ? nonce : NULL, started, &st, &e), &e))
            return false;
        if (i == 0) memcpy(nonce, started, sizeof nonce);
    }
    return !tk_keyring_sealed(k);
}

/* ---- #4: rows are untrusted ---- */

static void expect_corrupt(struct tk_keyring *k, struct tk_db *db, const char *what, int line)
{
    struct tk_seal_status st;
    struct tk_err e;
    /* 80 forged shares with valid checksums: none may count, nothing crashes */
    for (unsigned x = 1; x <= 80; x++) {
        char s[TK_SHARE_MAX];
        forge_share(x, s);
        tk_rc rc = give(k, db, s, NULL, NULL, &st, &e);
        if (rc == TK_OK || strcmp(e.code, "keyring_corrupt") != 0) {
            unit_fail(__FILE__, line, "%s: share %u: rc %d code '%s', want keyring_corrupt", what,
                      x, (int)rc, e.code);
            break;
        }
    }
    tk_keyring_status(k, &st);
    if (!st.sealed || !st.corrupt || st.progress != 0)
        unit_fail(__FILE__, line, "%s: sealed %d corrupt %d progress %d", what, st.sealed,
                  st.corrupt, st.progress);
}

void test_keyring_corrupt_rows(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[5][TK_SHARE_MAX];
    struct tk_keyring *k = NULL, *k2 = NULL;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_init(k, db, 5, 3, NULL, shares, NULL, &e), &e)) goto out;

    /* a node loaded while the row was good, then the row lies: threshold 200 */
    if (!CHECK((k2 = kr_new(f->dir, db)) != NULL)) goto out;
    if (!exec_ok(db, "UPDATE keyring SET threshold = 200 WHERE id = 1")) goto out;
    expect_corrupt(k2, db, "loaded, then threshold 200", __LINE__);
    tk_keyring_free(k2);
    /* a node that starts on the lying row */
    k2 = kr_new(f->dir, db);
    CHECK_EQ_INT(tk_keyring_load(k2, db, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "keyring_corrupt");
    expect_corrupt(k2, db, "threshold 200 at load", __LINE__);
    tk_keyring_free(k2);
    k2 = NULL;

    static const char *bad_rows[] = {
        "UPDATE keyring SET threshold = 0, shares = 5 WHERE id = 1",
        "UPDATE keyring SET threshold = 3, shares = 200 WHERE id = 1",
        "UPDATE keyring SET threshold = 6, shares = 5 WHERE id = 1",
        "UPDATE keyring SET threshold = -1, shares = -1 WHERE id = 1",
        "UPDATE keyring SET threshold = 3, shares = 5, data_version = 0 WHERE id = 1",
        "UPDATE keyring SET data_version = 99999 WHERE id = 1",
    };
    for (size_t i = 0; i < TK_NELEM(bad_rows); i++) {
        if (!exec_ok(db, bad_rows[i])) break;
        k2 = kr_new(f->dir, db);
        if (!k2) break;
        expect_corrupt(k2, db, bad_rows[i], __LINE__);
        tk_keyring_free(k2);
        k2 = NULL;
    }
    /* a good row again: the same node takes shares again (sync clears it) */
    if (!exec_ok(db, "UPDATE keyring SET threshold = 3, shares = 5, data_version = 1 WHERE id = 1"))
        goto out;
    k2 = kr_new(f->dir, db);
    {
        const int idx[] = {4, 0, 2};
        CHECK(k2 && unseal_all(k2, db, shares, idx, 3));
    }
    tk_keyring_free(k2);
    k2 = NULL;

    /* keyring_keys rows out of range: the right shares do not open a lie */
    static const char *bad_keys[] = {
        "UPDATE keyring_keys SET version = 0 WHERE kind = 'data'",
        "UPDATE keyring_keys SET kind = 'zzz' WHERE kind = 'data'",
        "UPDATE keyring_keys SET sealed = 'ENC:v1:7:AAAA' WHERE kind = 'hmac'",
        "UPDATE keyring SET check_value = 'not sealed' WHERE id = 1",
    };
    static const char *undo[] = {
        "UPDATE keyring_keys SET version = 1 WHERE kind = 'data'",
        "UPDATE keyring_keys SET kind = 'data' WHERE kind = 'zzz'",
        NULL,
        NULL,
    };
    for (size_t i = 0; i < TK_NELEM(bad_keys); i++) {
        struct tk_rows *r = NULL;
        char *saved = NULL;
        if (i >= 2) { /* keep the value to put back */
            const char *sel = i == 2 ? "SELECT sealed FROM keyring_keys WHERE kind = 'hmac'"
                                     : "SELECT check_value FROM keyring WHERE id = 1";
            if (CHECK_OK(tk_db_exec(db, sel, NULL, 0, &r, &e), &e))
                saved = tk_strdup(tk_rows_text(r, 0, 0));
            tk_rows_free(r);
        }
        if (!exec_ok(db, bad_keys[i])) break;
        k2 = kr_new(f->dir, db);
        char nonce[TK_UNSEAL_NONCE];
        struct tk_seal_status st;
        if (k2) {
            CHECK_OK(give(k2, db, shares[0], NULL, nonce, &st, &e), &e);
            CHECK_OK(give(k2, db, shares[1], nonce, NULL, &st, &e), &e);
            tk_rc rc = give(k2, db, shares[2], nonce, NULL, &st, &e);
            if (rc == TK_OK || strcmp(e.code, "keyring_corrupt") != 0)
                FAILF("%s: rc %d code '%s', want keyring_corrupt", bad_keys[i], (int)rc, e.code);
            CHECK(tk_keyring_sealed(k2));
        }
        tk_keyring_free(k2);
        k2 = NULL;
        if (undo[i]) exec_ok(db, undo[i]);
        if (saved) {
            CHECK_OK(tk_db_exec(db,
                                i == 2 ? "UPDATE keyring_keys SET sealed = ? WHERE kind = 'hmac'"
                                       : "UPDATE keyring SET check_value = ? WHERE id = 1",
                                TK_ARGS(TK_TEXT(saved)), NULL, &e),
                     &e);
            free(saved);
        }
    }

    /* the rewrap row lies: status and step say keyring_corrupt */
    exec_ok(db, RW_TEST_TABLE);
    if (CHECK_OK(tk_keyring_rewrap_start(k, db, NULL, &e), &e) &&
        exec_ok(db, "UPDATE keyring_rewrap SET pos_table = 9999")) {
        struct tk_rewrap_status rs;
        CHECK_EQ_INT(tk_keyring_rewrap_status(db, &rs, &e), TK_EINTERNAL);
        CHECK_EQ_STR(e.code, "keyring_corrupt");
        struct tk_rewrap_progress p;
        tk_rc rc = tk_keyring_rewrap_step(k, db, "node-a", 10, NULL, &p, &e);
        CHECK_EQ_INT(rc, TK_EINTERNAL);
        CHECK_EQ_STR(e.code, "keyring_corrupt");
    }
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    tk_store_put(db);
}

/* ---- #6: unseal attempts bound to a nonce ---- */

void test_keyring_unseal_nonce(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX], forged[TK_SHARE_MAX];
    struct tk_keyring *k = NULL, *k2 = NULL;
    char nonce[TK_UNSEAL_NONCE], other[TK_UNSEAL_NONCE];
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_init(k, db, 5, 3, NULL, shares, NULL, &e), &e)) goto out;
    if (!CHECK((k2 = kr_new(f->dir, db)) != NULL)) goto out;

    /* the first share starts an attempt and returns its nonce */
    if (!CHECK_OK(give(k2, db, shares[2], NULL, nonce, &st, &e), &e)) goto out;
    CHECK_EQ_INT(strlen(nonce), TK_UNSEAL_NONCE - 1);
    CHECK_EQ_INT(st.progress, 1);
    /* a stranger's share without the nonce: refused, progress untouched */
    forge_share(1, forged);
    CHECK_EQ_INT(give(k2, db, forged, NULL, other, &st, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "unseal_nonce_mismatch");
    CHECK_EQ_STR(other, "");
    CHECK_EQ_INT(st.progress, 1);
    CHECK_EQ_INT(st.held[0], 3);
    /* a real share without the nonce: the same */
    CHECK_EQ_INT(give(k2, db, shares[0], NULL, NULL, &st, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "unseal_nonce_mismatch");
    /* a wrong nonce (same length): refused */
    memcpy(other, nonce, sizeof other);
    other[0] = other[0] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(give(k2, db, forged, other, NULL, &st, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "unseal_nonce_mismatch");
    CHECK_EQ_INT(give(k2, db, forged, "", NULL, &st, &e), TK_ECONFLICT);
    CHECK_EQ_INT(st.progress, 1);
    /* with the nonce: counted; shares_held ascending */
    CHECK_OK(give(k2, db, shares[0], nonce, NULL, &st, &e), &e);
    CHECK_EQ_INT(st.progress, 2);
    CHECK_EQ_INT(st.held[0], 1);
    CHECK_EQ_INT(st.held[1], 3);
    /* a repeat with the nonce is a duplicate, as before */
    CHECK_EQ_INT(give(k2, db, shares[0], nonce, NULL, &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "duplicate_share");

    /* reset by a stranger (no nonce): the attempt ends, and says so */
    bool ok = true;
    CHECK(tk_keyring_unseal_reset(k2, NULL, &ok));
    CHECK(!ok);
    tk_keyring_status(k2, &st);
    CHECK_EQ_INT(st.progress, 0);
    CHECK(!tk_keyring_unseal_reset(k2, nonce, &ok)); /* nothing in progress */
    /* the old nonce with no attempt: refused, nothing starts */
    CHECK_EQ_INT(give(k2, db, shares[0], nonce, NULL, &st, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "unseal_nonce_mismatch");
    CHECK_EQ_INT(st.progress, 0);

    /* an attempt pre-filled by a forged share cannot be completed by the
     * operator without its nonce; reset with the nonce is recognised */
    char fake_nonce[TK_UNSEAL_NONCE];
    CHECK_OK(give(k2, db, forged, NULL, fake_nonce, &st, &e), &e);
    CHECK_EQ_INT(give(k2, db, shares[0], NULL, NULL, &st, &e), TK_ECONFLICT);
    CHECK(tk_keyring_unseal_reset(k2, fake_nonce, &ok));
    CHECK(ok);

    /* a whole attempt with the nonce unseals; a new nonce each attempt */
    {
        const int idx[] = {1, 3, 4};
        CHECK(unseal_all(k2, db, shares, idx, 3));
    }
    tk_keyring_seal(k2);
    char n2[TK_UNSEAL_NONCE];
    CHECK_OK(give(k2, db, shares[1], NULL, n2, &st, &e), &e);
    CHECK(strcmp(n2, nonce) != 0);
    /* seal ends the attempt too */
    tk_keyring_seal(k2);
    tk_keyring_status(k2, &st);
    CHECK_EQ_INT(st.progress, 0);
    CHECK_EQ_INT(give(k2, db, shares[1], n2, NULL, &st, &e), TK_ECONFLICT);
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    tk_store_put(db);
}

/* ---- #10: rewrap on a node behind a rotation ---- */

#define BEHIND_TABLE                                                                               \
    "CREATE TABLE IF NOT EXISTS rewrap_behind (id TEXT PRIMARY KEY, tenant_id TEXT, secret TEXT)"

static bool seal_row(struct tk_keyring *k, struct tk_db *db, const char *tenant, const char *id)
{
    struct tk_err e;
    struct tk_secret *s = tk_secret_new(id, strlen(id));
    struct tk_seal_ad ad = {tenant, "rewrap_behind", "secret", id};
    struct tk_sealed *v = NULL;
    tk_rc rc = tk_keyring_seal_value(k, s, &ad, &v, &e);
    tk_secret_free(s);
    if (!CHECK_OK(rc, &e)) return false;
    rc = tk_db_exec(db, "INSERT INTO rewrap_behind (id, tenant_id, secret) VALUES (?, ?, ?)",
                    TK_ARGS(TK_TEXT(id), TK_TEXT(tenant), TK_TEXT(v->text)), NULL, &e);
    tk_sealed_free(v);
    return CHECK_OK(rc, &e);
}

void test_keyring_rewrap_behind(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[3][TK_SHARE_MAX], tenant[TK_UUID_LEN + 1];
    struct tk_keyring *a = NULL, *b = NULL;
    int64_t v;
    if (!CHECK_OK(tk_keyring_new(f->dir, &a, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_init(a, db, 3, 2, NULL, shares, NULL, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_register_sealed("rewrap_behind", "secret"), NULL)) goto out;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;
    if (!exec_ok(db, BEHIND_TABLE) || !exec_ok(db, RW_TEST_TABLE)) goto out;
    /* node b unseals at version 1 and stays behind */
    b = kr_new(f->dir, db);
    {
        const int idx[] = {0, 1};
        if (!CHECK(b && unseal_all(b, db, shares, idx, 2))) goto out;
    }
    /* node a: values at 1, rotate, values at 2, rotate to 3 */
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "v1-%d", i);
        seal_row(a, db, tenant, id);
    }
    CHECK_OK(tk_keyring_rotate(a, db, &v, NULL, &e), &e);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "v2-%d", i);
        seal_row(a, db, tenant, id);
    }
    CHECK_OK(tk_keyring_rotate(a, db, &v, NULL, &e), &e);
    CHECK_EQ_INT(v, 3);
    struct tk_seal_status st;
    tk_keyring_status(b, &st);
    CHECK_EQ_INT(st.data_version, 1); /* b has not synced */

    /* node b runs the rewrap toward 3: nothing counts as failed */
    struct tk_rewrap_status rs;
    if (!CHECK_OK(tk_keyring_rewrap_start(b, db, &rs, &e), &e)) goto out;
    CHECK_EQ_INT(rs.target_version, 3);
    struct tk_rewrap_progress p;
    for (int i = 0; i < 100; i++) {
        if (!CHECK_OK(tk_keyring_rewrap_step(b, db, "node-b", 3, NULL, &p, &e), &e)) break;
        if (!p.running) break;
    }
    CHECK_OK(tk_keyring_rewrap_status(db, &rs, &e), &e);
    CHECK_EQ_STR(rs.state, "done");
    CHECK_EQ_INT(rs.failed, 0);
    CHECK_EQ_INT(rs.rewrapped, 10);
    CHECK_EQ_STR(rs.first_failed_row, "");
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM rewrap_behind WHERE secret LIKE 'ENC:v1:3:%'"),
                 10);
out:
    tk_keyring_free(a);
    tk_keyring_free(b);
    tk_store_put(db);
}

/* ---- #11: no store round trip under the keyring's lock ----
 *
 * An operation is stalled where it works with the store -- in its hook
 * (inside init's transaction, or between opening the keys and unsealing),
 * or, on PostgreSQL, on a table lock another connection holds -- and, once
 * it is known to be stalled there, hashing, status, sealing and opening on
 * other threads must finish within a bound while it stays stalled. */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, released;
};

static void gate_init(struct gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gate_destroy(struct gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

/* Wait (at most secs) until flag is set; true if it was. */
static bool gate_wait(struct gate *g, bool *flag, int secs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += secs;
    pthread_mutex_lock(&g->mu);
    while (!*flag)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &until) != 0) break;
    bool ok = *flag;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void gate_set(struct gate *g, bool *flag)
{
    pthread_mutex_lock(&g->mu);
    *flag = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* A hook that stalls: says it has entered, then waits to be released. */
static tk_rc stalling_change(void *arg, struct tk_db *db, const struct tk_keyring_change *c,
                             struct tk_err *e)
{
    (void)db, (void)c, (void)e;
    struct gate *g = arg;
    gate_set(g, &g->entered);
    gate_wait(g, &g->released, 30);
    return TK_OK;
}

struct stall_op {
    struct tk_keyring *k;
    struct tk_db *db;
    int what; /* 0 init, 1 sync, 2 give the last share */
    const struct tk_keyring_hook *hook;
    const char *share, *nonce;
    tk_rc rc;
    char shares[3][TK_SHARE_MAX];
};

static void *stalled(void *arg)
{
    struct stall_op *o = arg;
    struct tk_err e;
    struct tk_seal_status st;
    if (o->what == 0)
        o->rc = tk_keyring_init(o->k, o->db, 3, 2, NULL, o->shares, o->hook, &e);
    else if (o->what == 1)
        o->rc = tk_keyring_sync(o->k, o->db, &e);
    else
        o->rc = tk_keyring_unseal_share(o->k, o->db, o->share, o->nonce, NULL, o->hook, &st, &e);
    return NULL;
}

struct prober {
    struct tk_keyring *k;
    bool unsealed; /* also seal and open a value */
    struct gate g;
    bool ok;
};

static void *probe(void *arg)
{
    struct prober *p = arg;
    struct tk_err e;
    char out[TK_HASH_HEX], kid[17];
    tk_rc rc = tk_keyring_hash(p->k, "tko_x", 5, out, kid, &e);
    bool ok = p->unsealed ? rc == TK_OK : rc == TK_EUNAVAIL;
    struct tk_seal_status st;
    tk_keyring_status(p->k, &st);
    (void)tk_keyring_sealed(p->k);
    if (p->unsealed) {
        struct tk_secret *s = tk_secret_new("v", 1), *back = NULL;
        struct tk_seal_ad ad = {"t", "tb", "c", "r"};
        struct tk_sealed *v = NULL;
        ok = ok && tk_keyring_seal_value(p->k, s, &ad, &v, &e) == TK_OK &&
             tk_keyring_open_value(p->k, NULL, v, &ad, &back, NULL, &e) == TK_OK;
        tk_secret_free(s);
        tk_secret_free(back);
        tk_sealed_free(v);
    }
    p->ok = ok;
    gate_set(&p->g, &p->g.entered); /* entered: done */
    return NULL;
}

/* PostgreSQL: true once a backend waits for a lock (the stalled operation). */
static bool pg_someone_waits(struct tk_db *watch)
{
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        struct tk_rows *r = NULL;
        struct tk_err e;
        int64_t n = 0;
        if (tk_db_exec(watch,
                       "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND database = (SELECT "
                       "oid FROM pg_database WHERE datname = current_database())",
                       NULL, 0, &r, &e) == TK_OK)
            n = tk_rows_int(r, 0, 0);
        tk_rows_free(r);
        if (n > 0) return true;
        struct timespec nap = {0, 20 * 1000000L};
        nanosleep(&nap, NULL);
    }
    return false;
}

/* Start o; once it is stalled (its hook entered, or a PostgreSQL backend
 * waits on holder's lock), the probe must finish within 3 s; then the
 * stall ends (release the hook, or roll holder back). */
static void probe_during_stall(struct tk_keyring *k, bool unsealed, struct stall_op *o,
                               struct gate *hook_gate, struct tk_db *holder, struct tk_db *watch,
                               const char *what)
{
    pthread_t ts, tp;
    struct prober p = {.k = k, .unsealed = unsealed};
    gate_init(&p.g);
    pthread_create(&ts, NULL, stalled, o);
    bool stalled_now =
        hook_gate ? gate_wait(hook_gate, &hook_gate->entered, 10) : pg_someone_waits(watch);
    if (!stalled_now) FAILF("%s: the operation never reached its stall", what);
    pthread_create(&tp, NULL, probe, &p);
    bool done = gate_wait(&p.g, &p.g.entered, 3);
    if (!done)
        FAILF("%s: hashing/sealing waited for a stalled store (keyring lock held)", what);
    else if (!p.ok)
        FAILF("%s: the probe got a wrong answer", what);
    if (hook_gate) gate_set(hook_gate, &hook_gate->released);
    if (holder) tk_db_rollback(holder); /* the store answers again */
    pthread_join(ts, NULL);
    pthread_join(tp, NULL);
    gate_destroy(&p.g);
}

void test_keyring_lock_store_stall(struct fx *f)
{
    bool pg = !strcmp(f->backend, "postgres");
    struct tk_db *db = fx_db(f), *db2 = fx_db(f), *holder = fx_db(f), *watch = fx_db(f);
    struct tk_err e;
    struct tk_keyring *k = NULL, *a = NULL, *b = NULL;
    char shares[3][TK_SHARE_MAX];
    struct gate g;
    gate_init(&g);
    struct tk_keyring_hook hook = {.change = stalling_change, .arg = &g};
    if (!db || !db2 || !holder || !watch) goto out;

    /* init, stalled inside its transaction */
    if (!CHECK((k = kr_new(f->dir, db)) != NULL)) goto out;
    struct stall_op o = {.k = k, .db = db2, .what = 0, .hook = &hook};
    probe_during_stall(k, false, &o, &g, NULL, NULL, "init (in its transaction)");
    if (!CHECK_OK(o.rc, NULL) || !CHECK(!tk_keyring_sealed(k))) goto out;
    memcpy(shares, o.shares, sizeof shares);

    /* the last share, stalled between opening the keys and unsealing */
    b = kr_new(f->dir, db);
    char nonce[TK_UNSEAL_NONCE];
    struct tk_seal_status st;
    if (!CHECK(b != NULL) ||
        !CHECK_OK(tk_keyring_unseal_share(b, db, shares[0], NULL, nonce, NULL, &st, &e), &e))
        goto out;
    gate_destroy(&g);
    gate_init(&g);
    struct stall_op u = {
        .k = b, .db = db2, .what = 2, .hook = &hook, .share = shares[1], .nonce = nonce};
    probe_during_stall(b, false, &u, &g, NULL, NULL, "unseal");
    CHECK_OK(u.rc, NULL);
    CHECK(!tk_keyring_sealed(b));

    if (pg) {
        /* init stalled on a table lock another connection holds */
        tk_keyring_free(k);
        k = NULL;
        exec_ok(db, "DELETE FROM keyring_keys");
        exec_ok(db, "DELETE FROM keyring");
        k = kr_new(f->dir, db);
        if (!CHECK(k != NULL) || !CHECK_OK(tk_db_begin(holder, &e), &e)) goto out;
        exec_ok(holder, "LOCK TABLE keyring IN ACCESS EXCLUSIVE MODE");
        struct stall_op s0 = {.k = k, .db = db2, .what = 0};
        probe_during_stall(k, false, &s0, NULL, holder, watch, "init (table lock)");
        CHECK_OK(s0.rc, NULL);
        memcpy(shares, s0.shares, sizeof shares);
        /* a node behind a rotation reloads while keyring_keys is locked:
         * hashing, sealing and opening go on with the keys it has */
        a = kr_new(f->dir, db);
        const int idx[] = {0, 2};
        int64_t v;
        if (!CHECK(a && unseal_all(a, db, shares, idx, 2))) goto out;
        CHECK_OK(tk_keyring_rotate(a, db, &v, NULL, &e), &e);
        if (!CHECK_OK(tk_db_begin(holder, &e), &e)) goto out;
        exec_ok(holder, "LOCK TABLE keyring_keys IN ACCESS EXCLUSIVE MODE");
        struct stall_op s1 = {.k = k, .db = db2, .what = 1};
        probe_during_stall(k, true, &s1, NULL, holder, watch, "sync/reload (table lock)");
        CHECK_OK(s1.rc, NULL);
        tk_keyring_status(k, &st);
        CHECK_EQ_INT(st.data_version, 2);
    }
out:
    gate_destroy(&g);
    tk_keyring_free(k);
    tk_keyring_free(a);
    tk_keyring_free(b);
    if (db) tk_store_put(db);
    if (db2) tk_store_put(db2);
    if (holder) tk_store_put(holder);
    if (watch) tk_store_put(watch);
}

/* ---- #18: no init, unseal or rotate without its event ---- */

static bool events_unwritable(struct tk_db *db, bool pg, bool on)
{
    if (!pg)
        return exec_ok(db, on ? "CREATE TRIGGER no_events BEFORE INSERT ON events BEGIN SELECT "
                                "RAISE(ABORT, 'events are unwritable'); END"
                              : "DROP TRIGGER no_events");
    if (!on) return exec_ok(db, "DROP TRIGGER no_events ON events");
    return exec_ok(db, "CREATE OR REPLACE FUNCTION no_events() RETURNS trigger AS $$ BEGIN RAISE "
                       "EXCEPTION 'events are unwritable'; END $$ LANGUAGE plpgsql") &&
           exec_ok(db, "CREATE TRIGGER no_events BEFORE INSERT ON events FOR EACH ROW EXECUTE "
                       "FUNCTION no_events()");
}

void test_keyring_event_or_nothing(struct fx *f)
{
    bool pg = !strcmp(f->backend, "postgres");
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[3][TK_SHARE_MAX], keyfile[300];
    struct tk_keyring *k = NULL, *k2 = NULL;
    struct tk_app app;
    memset(&app, 0, sizeof app);
    snprintf(app.node, sizeof app.node, "node-a");
    if (!CHECK_OK(tk_tenant_default(db, app.default_tenant, &e), &e)) goto out;
    struct tk_api_keyring_ctx ctx = {.app = &app};
    struct tk_keyring_hook hook = tk_api_keyring_hook(&ctx);
    snprintf(keyfile, sizeof keyfile, "%s/unseal.key", f->dir);
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;

    /* init: refused, nothing written, no key file left, still uninitialized */
    if (!events_unwritable(db, pg, true)) goto out;
    tk_rc rc = tk_keyring_init(k, db, 3, 2, keyfile, shares, &hook, &e);
    CHECK(rc != TK_OK);
    CHECK(ctx.hook_failed);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM keyring"), 0);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM keyring_keys"), 0);
    CHECK(access(keyfile, F_OK) != 0);
    struct tk_seal_status st;
    tk_keyring_status(k, &st);
    CHECK(!st.initialized);
    CHECK(st.sealed);
    /* with events: init is done, and its event is there */
    if (!events_unwritable(db, pg, false)) goto out;
    ctx.hook_failed = false;
    if (!CHECK_OK(tk_keyring_init(k, db, 3, 2, keyfile, shares, &hook, &e), &e)) goto out;
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM events WHERE kind = 'keyring' AND action = "
                           "'init' AND outcome = 'ok'"),
                 1);

    /* rotate: refused, the version and keys unchanged */
    int64_t v = 0;
    if (!events_unwritable(db, pg, true)) goto out;
    rc = tk_keyring_rotate(k, db, &v, &hook, &e);
    CHECK(rc != TK_OK);
    CHECK_EQ_INT(count(db, "SELECT data_version FROM keyring WHERE id = 1"), 1);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM keyring_keys"), 2);
    tk_keyring_status(k, &st);
    CHECK_EQ_INT(st.data_version, 1);

    /* unseal (shares and key file) while events cannot be written: stays sealed */
    k2 = kr_new(f->dir, db);
    if (!CHECK(k2 != NULL)) goto out;
    char nonce[TK_UNSEAL_NONCE];
    CHECK_OK(tk_keyring_unseal_share(k2, db, shares[0], NULL, nonce, &hook, &st, &e), &e);
    rc = tk_keyring_unseal_share(k2, db, shares[1], nonce, NULL, &hook, &st, &e);
    CHECK(rc != TK_OK);
    CHECK(tk_keyring_sealed(k2));
    rc = tk_keyring_unseal_file(k2, db, keyfile, &hook, &e);
    CHECK(rc != TK_OK);
    CHECK(tk_keyring_sealed(k2));
    char out[TK_HASH_HEX];
    CHECK_EQ_INT(tk_keyring_hash(k2, "x", 1, out, NULL, &e), TK_EUNAVAIL);

    /* events writable again: rotate and unseal go through, with events */
    if (!events_unwritable(db, pg, false)) goto out;
    CHECK_OK(tk_keyring_rotate(k, db, &v, &hook, &e), &e);
    CHECK_EQ_INT(v, 2);
    CHECK_OK(tk_keyring_unseal_file(k2, db, keyfile, &hook, &e), &e);
    CHECK(!tk_keyring_sealed(k2));
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM events WHERE kind = 'keyring' AND action = "
                           "'rotate' AND outcome = 'ok'"),
                 1);
    CHECK_EQ_INT(count(db, "SELECT COUNT(*) FROM events WHERE kind = 'keyring' AND action = "
                           "'unseal' AND outcome = 'ok'"),
                 1);
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    tk_store_put(db);
}

/* ---- #20: the auto-unseal key file ---- */

void test_keyring_key_file_mode(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[1][TK_SHARE_MAX], keyfile[300], link[300], copy[300];
    struct tk_keyring *k = NULL, *k2 = NULL;
    snprintf(keyfile, sizeof keyfile, "%s/unseal.key", f->dir);
    snprintf(link, sizeof link, "%s/link.key", f->dir);
    snprintf(copy, sizeof copy, "%s/copy.key", f->dir);
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    mode_t old = umask(0); /* the file is 0600 whatever the umask */
    tk_rc rc = tk_keyring_init(k, db, 1, 1, keyfile, shares, NULL, &e);
    umask(old);
    if (!CHECK_OK(rc, &e)) goto out;
    struct stat sb;
    if (CHECK(stat(keyfile, &sb) == 0)) CHECK_EQ_INT(sb.st_mode & 0777, 0600);

    k2 = kr_new(f->dir, db);
    if (!CHECK(k2 != NULL)) goto out;
    /* group- or world-readable: refused, naming the file and the fix */
    static const int modes[] = {0644, 0640, 0604, 0660, 0606};
    for (size_t i = 0; i < TK_NELEM(modes); i++) {
        chmod(keyfile, (mode_t)modes[i]);
        rc = tk_keyring_unseal_file(k2, db, keyfile, NULL, &e);
        if (rc == TK_OK || strcmp(e.code, "key_file_insecure") != 0 || !strstr(e.msg, keyfile) ||
            !strstr(e.msg, "chmod 600"))
            FAILF("mode %04o: rc %d code '%s': %s", modes[i], (int)rc, e.code, e.msg);
        CHECK(tk_keyring_sealed(k2));
    }
    chmod(keyfile, 0600);
    /* owned by another user (root can make one): refused */
    if (geteuid() == 0 && CHECK(chown(keyfile, 12345, (gid_t)-1) == 0)) {
        rc = tk_keyring_unseal_file(k2, db, keyfile, NULL, &e);
        CHECK(rc != TK_OK);
        CHECK_EQ_STR(e.code, "key_file_insecure");
        CHECK(strstr(e.msg, "owned by uid 12345") != NULL);
        CHECK(chown(keyfile, 0, (gid_t)-1) == 0);
    }
    /* a symlink to the right file: not followed */
    CHECK(symlink(keyfile, link) == 0);
    rc = tk_keyring_unseal_file(k2, db, link, NULL, &e);
    CHECK(rc != TK_OK);
    CHECK_EQ_STR(e.code, "key_file_unreadable");
    CHECK(tk_keyring_sealed(k2));
    /* damaged: a byte short */
    size_t n = 0;
    unsigned char buf[64];
    FILE *fp = fopen(keyfile, "rb");
    if (fp) {
        n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
    }
    CHECK_EQ_INT(n, 32);
    CHECK(unit_write_file(copy, buf, 31, 0600));
    rc = tk_keyring_unseal_file(k2, db, copy, NULL, &e);
    CHECK_EQ_STR(e.code, "key_file_corrupt");
    CHECK(rc != TK_OK);
    /* the right file, 0600: opens */
    CHECK_OK(tk_keyring_unseal_file(k2, db, keyfile, NULL, &e), &e);
    CHECK(!tk_keyring_sealed(k2));
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    tk_store_put(db);
}
