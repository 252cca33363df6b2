/* test_keyring.c: src/keyring/keyring.h -- the keyring on both backends:
 * init and restart sealed, Shamir unseal (every K-of-N subset, K-1, damaged,
 * duplicated and foreign shares), init errors, auto-unseal key file, the
 * foundation hash.key import (RFC 4231 known answers through it), sealed
 * values (round trips, binding to the place, tampering, decrypt_failed
 * events), rotation seen by another node, seal, and a scan proving that the
 * store never holds a key in clear. */
#include "unit.h"

#include "../../src/events/events.h"
#include "../../src/keyring/keyring.h"
#include "../../src/keyring/keyring_internal.h"
#include "../../src/operators/operators.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

static void hmac_hex(const unsigned char *key, size_t klen, const void *msg, size_t mlen,
                     char out[65])
{
    unsigned char mac[32];
    unsigned int ml = sizeof mac;
    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, mac, &ml);
    tk_hex(mac, 32, out);
}

/* The foundation's key id: hex of the first 8 bytes of SHA-256 of the key. */
static void old_key_id(const unsigned char key[32], char out[17])
{
    unsigned char d[32];
    SHA256(key, 32, d);
    tk_hex(d, 8, out);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = tk_malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) buf = tk_realloc(buf, cap *= 2);
    }
    fclose(f);
    *n = len;
    return buf;
}

/* A new keyring object on db, as after a restart: new + load. */
static struct tk_keyring *fresh(const char *dir, struct tk_db *db)
{
    struct tk_keyring *k = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_keyring_new(dir, &k, &e), &e)) return NULL;
    if (!CHECK_OK(tk_keyring_load(k, db, &e), &e)) {
        tk_keyring_free(k);
        return NULL;
    }
    return k;
}

/* Initialize the store's keyring with n shares, threshold t. */
static struct tk_keyring *init_kr(const char *dir, struct tk_db *db, int n, int t,
                                  const char *auto_path, char (*shares)[TK_SHARE_MAX])
{
    struct tk_keyring *k = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_keyring_new(dir, &k, &e), &e)) return NULL;
    if (!CHECK_OK(tk_keyring_init(k, db, n, t, auto_path, shares, NULL, &e), &e)) {
        tk_keyring_free(k);
        return NULL;
    }
    return k;
}

/* The nonce of each keyring's unseal attempt, as the operator's CLI keeps
 * it: give() carries it, so that the tests of shares read as before. */
static struct {
    struct tk_keyring *k;
    char nonce[TK_UNSEAL_NONCE];
} attempts[32];

static char *attempt_nonce(struct tk_keyring *k)
{
    int free_slot = -1;
    for (int i = 0; i < 32; i++) {
        if (attempts[i].k == k) return attempts[i].nonce;
        if (!attempts[i].k && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) free_slot = 0;
    attempts[free_slot].k = k;
    attempts[free_slot].nonce[0] = '\0';
    return attempts[free_slot].nonce;
}

static tk_rc give(struct tk_keyring *k, struct tk_db *db, const char *share,
                  struct tk_seal_status *st, struct tk_err *e)
{
    tk_err_clear(e);
    memset(st, 0, sizeof *st);
    char *nonce = attempt_nonce(k);
    struct tk_seal_status before;
    tk_keyring_status(k, &before);
    if (before.progress == 0) nonce[0] = '\0'; /* sealed or reset meanwhile */
    char started[TK_UNSEAL_NONCE];
    tk_rc rc = tk_keyring_unseal_share(k, db, share, nonce[0] ? nonce : NULL, started, NULL, st, e);
    if (started[0]) memcpy(nonce, started, TK_UNSEAL_NONCE);
    if (st->progress == 0) nonce[0] = '\0';
    return rc;
}

/* Unseal k with the listed shares; true when it opened. */
static bool unseal_with(struct tk_keyring *k, struct tk_db *db, char (*shares)[TK_SHARE_MAX],
                        const int *idx, int n)
{
    struct tk_seal_status st;
    struct tk_err e;
    for (int i = 0; i < n; i++)
        if (!CHECK_OK(give(k, db, shares[idx[i]], &st, &e), &e)) return false;
    return !tk_keyring_sealed(k);
}

static bool hash_of(struct tk_keyring *k, const char *s, char out[TK_HASH_HEX], char kid[17])
{
    struct tk_err e;
    return CHECK_OK(tk_keyring_hash(k, s, strlen(s), out, kid, &e), &e);
}

static struct tk_seal_ad place(const char *tenant, const char *table, const char *column,
                               const char *row)
{
    struct tk_seal_ad ad = {tenant, table, column, row};
    return ad;
}

/* A second database on the fixture's backend, for another installation:
 * a second SQLite file in the fixture's dir, or a second PostgreSQL
 * database dropped by other_close. */
struct other {
    struct tk_store *st;
    struct tk_db *db;
    char dbname[96];
};

static struct tk_db *other_open(struct fx *f, struct other *o)
{
    struct tk_err e;
    char url[1100];
    memset(o, 0, sizeof *o);
    if (!strcmp(f->backend, "sqlite")) {
        snprintf(url, sizeof url, "sqlite:%s/other.db", f->dir);
    } else {
        char sql[160];
        snprintf(o->dbname, sizeof o->dbname, "%s_b", f->dbname);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", o->dbname);
        if (!CHECK_OK(unit_pg_admin(sql, &e), &e)) {
            o->dbname[0] = '\0';
            return NULL;
        }
        if (!CHECK(unit_pg_url_with_db(unit_pg_url(), o->dbname, url, sizeof url))) return NULL;
    }
    struct tk_store_opts so = {.pool_size = 1, .busy_timeout_ms = 10000, .migrate = true};
    if (!CHECK_OK(tk_store_open(url, &so, &o->st, &e), &e)) return NULL;
    o->db = tk_store_get(o->st, &e);
    CHECK(o->db != NULL);
    return o->db;
}

static void other_close(struct other *o)
{
    tk_store_put(o->db);
    tk_store_close(o->st);
    if (o->dbname[0]) {
        char sql[160];
        struct tk_err e;
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", o->dbname);
        if (unit_pg_admin(sql, &e) != TK_OK)
            printf("    note: cannot drop %s: %s\n", o->dbname, e.msg);
    }
    memset(o, 0, sizeof *o);
}

/* ---- init, restart, sealed ---- */

void test_keyring_restart_sealed(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX];
    struct tk_keyring *k = NULL, *k2 = NULL, *u = NULL;

    /* before init: not initialized, sealed, unseal says so */
    if (!CHECK((u = fresh(f->dir, db)) != NULL)) goto out;
    tk_keyring_status(u, &st);
    CHECK(!st.initialized);
    CHECK(st.sealed);
    CHECK_EQ_INT(st.data_version, 0);
    {
        unsigned char secret[32];
        char one[1][TK_SHARE_MAX];
        tk_random(secret, sizeof secret);
        if (CHECK_OK(tk_shamir_split(secret, 1, 1, one, &e), &e)) {
            CHECK_EQ_INT(give(u, db, one[0], &st, &e), TK_ECONFLICT);
            CHECK_EQ_STR(e.code, "uninitialized");
            CHECK(st.sealed);
            CHECK_EQ_INT(st.progress, 0);
        }
        CHECK_EQ_INT(tk_keyring_unseal_file(u, db, "/nonexistent/unseal.key", NULL, &e),
                     TK_ENOTFOUND);
    }
    tk_keyring_free(u);
    u = NULL;

    memset(shares, 0, sizeof shares);
    if (!CHECK((k = init_kr(f->dir, db, 5, 3, NULL, shares)) != NULL)) goto out;
    tk_keyring_status(k, &st);
    CHECK(st.initialized);
    CHECK(!st.sealed);
    CHECK_EQ_INT(st.threshold, 3);
    CHECK_EQ_INT(st.shares, 5);
    CHECK_EQ_INT(st.progress, 0);
    CHECK(!st.auto_unseal);
    CHECK_EQ_INT(st.data_version, 1);
    for (int i = 0; i < 5; i++) {
        unsigned char x, y[32];
        CHECK(strncmp(shares[i], "tks1-", 5) == 0);
        if (CHECK_OK(tk_shamir_parse(shares[i], &x, y, &e), &e)) CHECK_EQ_INT(x, i + 1);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(shares[i], shares[j]) != 0);
    }
    char h[TK_HASH_HEX], kid[17];
    CHECK(hash_of(k, "tko_before_restart", h, kid));

    /* a value sealed now, to try while sealed */
    struct tk_secret *plain = tk_secret_new("refresh-token-123", 17);
    struct tk_seal_ad ad = place("t1", "connections", "refresh_token", "row-1");
    struct tk_sealed *sv = NULL;
    CHECK_OK(tk_keyring_seal_value(k, plain, &ad, &sv, &e), &e);

    /* restart: a new keyring object loads the store's keyring, sealed */
    if (!CHECK((k2 = fresh(f->dir, db)) != NULL)) goto out2;
    tk_keyring_status(k2, &st);
    CHECK(st.initialized);
    CHECK(st.sealed);
    CHECK(tk_keyring_sealed(k2));
    CHECK_EQ_INT(st.threshold, 3);
    CHECK_EQ_INT(st.shares, 5);
    CHECK_EQ_INT(st.progress, 0);
    CHECK_EQ_INT(st.data_version, 0);
    char h2[TK_HASH_HEX] = "", kid2[17] = "";
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_hash(k2, "tko_before_restart", 18, h2, kid2, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    struct tk_sealed *sv2 = NULL;
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_seal_value(k2, plain, &ad, &sv2, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    CHECK(sv2 == NULL);
    struct tk_secret *back = NULL;
    if (sv) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_open_value(k2, db, sv, &ad, &back, NULL, &e), TK_EUNAVAIL);
        CHECK_EQ_STR(e.code, "sealed");
        CHECK(back == NULL);
    }
    int64_t v = 0;
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_rotate(k2, db, &v, NULL, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    /* ... the first keyring object is unaffected */
    CHECK(!tk_keyring_sealed(k));
    if (sv && CHECK_OK(tk_keyring_open_value(k, db, sv, &ad, &back, NULL, &e), &e))
        CHECK(back->len == 17 && !memcmp(back->p, "refresh-token-123", 17));
    tk_secret_free(back);
    back = NULL;

    /* three shares open it: same hash, same key id, the value opens */
    int three[] = {0, 2, 4};
    if (CHECK(unseal_with(k2, db, shares, three, 3))) {
        CHECK(hash_of(k2, "tko_before_restart", h2, kid2));
        CHECK_EQ_STR(h2, h);
        CHECK_EQ_STR(kid2, kid);
        if (sv && CHECK_OK(tk_keyring_open_value(k2, db, sv, &ad, &back, NULL, &e), &e))
            CHECK(back->len == 17 && !memcmp(back->p, "refresh-token-123", 17));
        tk_keyring_status(k2, &st);
        CHECK_EQ_INT(st.data_version, 1);
        CHECK_EQ_INT(st.progress, 0);
    }
    tk_secret_free(back);
out2:
    tk_sealed_free(sv);
    tk_secret_free(plain);
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    tk_store_put(db);
}

/* ---- Shamir unseal ---- */

void test_keyring_unseal_subsets(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX];
    struct tk_keyring *k = init_kr(f->dir, db, 5, 3, NULL, shares);
    char want[TK_HASH_HEX], kid[17];
    if (!k || !hash_of(k, "tko_subset", want, kid)) goto out;

    /* every 3 of 5 (10 subsets), in two orders each */
    int opened = 0;
    for (int a = 0; a < 5; a++)
        for (int b = a + 1; b < 5; b++)
            for (int c = b + 1; c < 5; c++)
                for (int order = 0; order < 2; order++) {
                    int idx[3] = {a, b, c};
                    if (order) {
                        idx[0] = c;
                        idx[2] = a;
                    }
                    struct tk_keyring *n = fresh(f->dir, db);
                    if (!n) continue;
                    bool bad = false;
                    for (int i = 0; i < 3 && !bad; i++) {
                        tk_rc rc = give(n, db, shares[idx[i]], &st, &e);
                        if (rc != TK_OK) {
                            FAILF("share %d of {%d,%d,%d}: %s %s", idx[i] + 1, a + 1, b + 1, c + 1,
                                  e.code, e.msg);
                            bad = true;
                        } else if (i < 2 && (!st.sealed || st.progress != i + 1 ||
                                             st.threshold != 3 || st.shares != 5)) {
                            FAILF("after %d shares: sealed %d progress %d/%d", i + 1, st.sealed,
                                  st.progress, st.threshold);
                            bad = true;
                        } else if (i == 2 &&
                                   (st.sealed || st.progress != 0 || st.data_version != 1)) {
                            FAILF("{%d,%d,%d} did not open: sealed %d progress %d", a + 1, b + 1,
                                  c + 1, st.sealed, st.progress);
                            bad = true;
                        }
                    }
                    char h[TK_HASH_HEX], k2id[17];
                    if (!bad && hash_of(n, "tko_subset", h, k2id) && !strcmp(h, want) &&
                        !strcmp(k2id, kid))
                        opened++;
                    tk_keyring_free(n);
                }
    CHECK_EQ_INT(opened, 20);

    /* every 2 of 5 leaves it sealed with progress 2 */
    int stayed = 0;
    for (int a = 0; a < 5; a++)
        for (int b = a + 1; b < 5; b++) {
            struct tk_keyring *n = fresh(f->dir, db);
            if (!n) continue;
            if (give(n, db, shares[a], &st, &e) == TK_OK &&
                give(n, db, shares[b], &st, &e) == TK_OK && st.sealed && st.progress == 2 &&
                tk_keyring_sealed(n)) {
                char h[TK_HASH_HEX];
                tk_err_clear(&e);
                if (tk_keyring_hash(n, "x", 1, h, NULL, &e) == TK_EUNAVAIL &&
                    !strcmp(e.code, "sealed"))
                    stayed++;
            } else {
                FAILF("shares %d,%d: rc/code %s sealed %d progress %d", a + 1, b + 1, e.code,
                      st.sealed, st.progress);
            }
            tk_keyring_free(n);
        }
    CHECK_EQ_INT(stayed, 10);

    /* 4 and 5 shares: opens at the third, the others are no-ops */
    for (int m = 4; m <= 5; m++) {
        struct tk_keyring *n = fresh(f->dir, db);
        if (!n) continue;
        for (int i = 0; i < m; i++) {
            int s = (i + 1) % 5; /* 2,3,4,5,1 */
            if (!CHECK_OK(give(n, db, shares[s], &st, &e), &e)) break;
            if (i >= 2) {
                CHECK(!st.sealed);
                CHECK_EQ_INT(st.progress, 0);
            }
        }
        char h[TK_HASH_HEX];
        if (hash_of(n, "tko_subset", h, NULL)) CHECK_EQ_STR(h, want);
        tk_keyring_free(n);
    }

    /* a share pasted with spaces and a newline counts */
    struct tk_keyring *n = fresh(f->dir, db);
    if (n) {
        char padded[TK_SHARE_MAX + 8];
        for (int i = 0; i < 3; i++) {
            snprintf(padded, sizeof padded, "  %s\r\n", shares[i]);
            CHECK_OK(give(n, db, padded, &st, &e), &e);
        }
        CHECK(!tk_keyring_sealed(n));
        tk_keyring_free(n);
    }
out:
    tk_keyring_free(k);
    tk_store_put(db);
}

void test_keyring_share_errors(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX], theirs[5][TK_SHARE_MAX], s[TK_SHARE_MAX + 8];
    struct other o;
    memset(&o, 0, sizeof o);
    struct tk_keyring *k = init_kr(f->dir, db, 5, 3, NULL, shares), *n = NULL, *ko = NULL;
    if (!k) goto out;
    n = fresh(f->dir, db);
    if (!n) goto out;

    /* a duplicated share: refused, progress unchanged */
    CHECK_OK(give(n, db, shares[0], &st, &e), &e);
    CHECK_EQ_INT(st.progress, 1);
    CHECK_EQ_INT(give(n, db, shares[0], &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "duplicate_share");
    CHECK_EQ_INT(st.progress, 1);
    CHECK(st.sealed);
    CHECK(strstr(e.msg, shares[0] + 7) == NULL); /* never quoted */
    /* the same share pasted differently is still the same share */
    snprintf(s, sizeof s, "%s\n", shares[0]);
    CHECK_EQ_INT(give(n, db, s, &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "duplicate_share");
    CHECK_EQ_INT(st.progress, 1);

    /* one character changed: the checksum refuses it */
    size_t len = strlen(shares[1]);
    memcpy(s, shares[1], len + 1);
    s[12] = s[12] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(give(n, db, s, &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "corrupt_share");
    CHECK_EQ_INT(st.progress, 1);
    CHECK(strstr(e.msg, s + 7) == NULL);
    /* truncated */
    memcpy(s, shares[1], len + 1);
    s[len - 3] = '\0';
    CHECK_EQ_INT(give(n, db, s, &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "malformed_share");
    CHECK_EQ_INT(st.progress, 1);
    CHECK_EQ_INT(give(n, db, "", &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "malformed_share");
    CHECK_EQ_INT(st.progress, 1);

    /* share number 6 of a 5-share keyring (well formed, right checksum) */
    unsigned char secret[32];
    char six[6][TK_SHARE_MAX];
    tk_random(secret, sizeof secret);
    if (CHECK_OK(tk_shamir_split(secret, 6, 3, six, &e), &e)) {
        CHECK_EQ_INT(give(n, db, six[5], &st, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "unknown_share");
        CHECK_EQ_INT(st.progress, 1);
        CHECK(st.sealed);
    }
    /* still opens with two more right shares after all that */
    CHECK_OK(give(n, db, shares[3], &st, &e), &e);
    CHECK_EQ_INT(st.progress, 2);
    CHECK_OK(give(n, db, shares[4], &st, &e), &e);
    CHECK(!st.sealed);
    tk_keyring_free(n);
    n = NULL;

    /* shares of another installation (a keyring in another database) */
    struct tk_db *odb = other_open(f, &o);
    if (!odb) goto out;
    char odir[256];
    if (!CHECK(unit_tmpdir(odir, sizeof odir))) goto out;
    ko = init_kr(odir, odb, 5, 3, NULL, theirs);
    unit_rmtree(odir);
    if (!ko) goto out;
    n = fresh(f->dir, db);
    if (!n) goto out;
    CHECK_OK(give(n, db, theirs[0], &st, &e), &e);
    CHECK_OK(give(n, db, theirs[1], &st, &e), &e);
    CHECK_EQ_INT(st.progress, 2);
    CHECK_EQ_INT(give(n, db, theirs[2], &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "wrong_shares");
    CHECK_EQ_INT(st.progress, 0);
    CHECK(st.sealed);
    CHECK(tk_keyring_sealed(n));
    for (int i = 0; i < 3; i++)
        CHECK(strstr(e.msg, theirs[i] + 7) == NULL);
    /* mixed: two of ours and one of theirs */
    CHECK_OK(give(n, db, shares[0], &st, &e), &e);
    CHECK_OK(give(n, db, theirs[3], &st, &e), &e);
    CHECK_EQ_INT(give(n, db, shares[2], &st, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "wrong_shares");
    CHECK_EQ_INT(st.progress, 0);
    CHECK(tk_keyring_sealed(n));
    char h[TK_HASH_HEX];
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_hash(n, "x", 1, h, NULL, &e), TK_EUNAVAIL);
    /* after the reset, the right shares open it */
    int ours[] = {4, 1, 0};
    CHECK(unseal_with(n, db, shares, ours, 3));
    /* and the other installation still opens with its own */
    tk_keyring_free(ko);
    ko = fresh(f->dir, odb);
    int mine[] = {0, 1, 2};
    if (ko) CHECK(unseal_with(ko, odb, theirs, mine, 3));
out:
    tk_keyring_free(n);
    tk_keyring_free(ko);
    tk_keyring_free(k);
    other_close(&o);
    tk_store_put(db);
}

/* ---- init errors ---- */

static int64_t count_rows(struct tk_db *db, const char *table)
{
    char sql[96];
    struct tk_rows *r = NULL;
    struct tk_err e;
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    int64_t n = -1;
    if (CHECK_OK(tk_db_exec(db, sql, NULL, 0, &r, &e), &e)) n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

void test_keyring_init_errors(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[TK_SHARES_MAX + 1][TK_SHARE_MAX];
    struct tk_keyring *k = NULL, *k2 = NULL;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;

    /* bad counts, naming the field; nothing is written */
    static const struct {
        int n, t;
        const char *field;
    } bad[] = {{0, 0, "shares"},    {0, 1, "shares"},    {17, 3, "shares"},
               {-1, 1, "shares"},   {3, 4, "threshold"}, {5, 6, "threshold"},
               {5, 0, "threshold"}, {1, 2, "threshold"}, {16, 17, "threshold"}};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        tk_err_clear(&e);
        tk_rc rc = tk_keyring_init(k, db, bad[i].n, bad[i].t, NULL, shares, NULL, &e);
        if (rc != TK_EINVAL || strcmp(e.field, bad[i].field) != 0)
            FAILF("init %d of %d: rc %d code %s field '%s', want TK_EINVAL field %s", bad[i].t,
                  bad[i].n, (int)rc, e.code, e.field, bad[i].field);
        else
            CHECK(strstr(e.msg, bad[i].field) != NULL);
    }
    CHECK_EQ_INT(count_rows(db, "keyring"), 0);
    CHECK_EQ_INT(count_rows(db, "keyring_keys"), 0);

    /* a damaged foundation hash.key stops init and is left for a person */
    char legacy[600], autop[600];
    snprintf(legacy, sizeof legacy, "%s/hash.key", f->dir);
    unsigned char bytes[31];
    memset(bytes, 0x5a, sizeof bytes);
    if (CHECK(unit_write_file(legacy, bytes, sizeof bytes, 0600))) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_init(k, db, 3, 2, NULL, shares, NULL, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "key_file_corrupt");
        CHECK(strstr(e.msg, "hash.key") != NULL);
        struct stat sb;
        CHECK(stat(legacy, &sb) == 0 && sb.st_size == 31);
        CHECK(tk_keyring_sealed(k));
        CHECK_EQ_INT(count_rows(db, "keyring"), 0);
        unlink(legacy);
    }
    /* an auto-unseal key file that exists already is not overwritten */
    snprintf(autop, sizeof autop, "%s/unseal.key", f->dir);
    if (CHECK(unit_write_file(autop, "precious", 8, 0600))) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_init(k, db, 3, 2, autop, shares, NULL, &e), TK_ECONFLICT);
        CHECK_EQ_STR(e.code, "key_file_unwritable");
        size_t n = 0;
        unsigned char *got = read_all(autop, &n);
        CHECK(n == 8 && got && !memcmp(got, "precious", 8));
        free(got);
        CHECK_EQ_INT(count_rows(db, "keyring"), 0);
        unlink(autop);
    }

    /* 1 of 1 and 16 of 16 are the bounds */
    memset(shares, 0, sizeof shares);
    if (!CHECK_OK(tk_keyring_init(k, db, 16, 16, NULL, shares, NULL, &e), &e)) goto out;
    for (int i = 0; i < 16; i++)
        CHECK(strncmp(shares[i], "tks1-", 5) == 0);
    CHECK_EQ_INT(shares[16][0], 0); /* nothing written past n */
    char h[TK_HASH_HEX], kid[17];
    CHECK(hash_of(k, "tko_init", h, kid));

    /* twice: refused, and the running keyring stays unsealed (POST
     * /v1/sys/init needs no token: it must not seal a running node) */
    char again[5][TK_SHARE_MAX];
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_init(k, db, 5, 3, NULL, again, NULL, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "already_initialized");
    CHECK(!tk_keyring_sealed(k));
    char h2[TK_HASH_HEX] = "", kid2[17] = "";
    if (hash_of(k, "tko_init", h2, kid2)) {
        CHECK_EQ_STR(h2, h);
        CHECK_EQ_STR(kid2, kid);
    }
    /* by another node (a keyring object that has not loaded the store) */
    if (CHECK_OK(tk_keyring_new(f->dir, &k2, &e), &e)) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_init(k2, db, 5, 3, NULL, again, NULL, &e), TK_ECONFLICT);
        CHECK_EQ_STR(e.code, "already_initialized");
        CHECK(tk_keyring_sealed(k2));
        /* ... and after loading, while shares are being given: progress kept */
        CHECK_OK(tk_keyring_load(k2, db, &e), &e);
        struct tk_seal_status st;
        CHECK_OK(give(k2, db, shares[3], &st, &e), &e);
        CHECK_EQ_INT(st.progress, 1);
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_init(k2, db, 5, 3, NULL, again, NULL, &e), TK_ECONFLICT);
        CHECK_EQ_STR(e.code, "already_initialized");
        tk_keyring_status(k2, &st);
        CHECK_EQ_INT(st.progress, 1);
    }
    CHECK_EQ_INT(count_rows(db, "keyring"), 1);
    CHECK_EQ_INT(count_rows(db, "keyring_keys"), 2);
    /* the 16 shares still open it; the store's keyring is the first one */
    tk_keyring_free(k2);
    k2 = fresh(f->dir, db);
    if (k2) {
        struct tk_seal_status st;
        for (int i = 0; i < 16; i++)
            CHECK_OK(give(k2, db, shares[15 - i], &st, &e), &e);
        if (hash_of(k2, "tko_init", h2, NULL)) CHECK_EQ_STR(h2, h);
    }
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    tk_store_put(db);
}

/* ---- auto-unseal key file ---- */

void test_keyring_auto_unseal(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX], path[600], other_path[600], oshares[1][TK_SHARE_MAX];
    snprintf(path, sizeof path, "%s/unseal.key", f->dir);
    snprintf(other_path, sizeof other_path, "%s/another.key", f->dir);
    struct other o;
    memset(&o, 0, sizeof o);
    struct tk_keyring *k = init_kr(f->dir, db, 5, 3, path, shares), *n = NULL;
    if (!k) goto out;
    tk_keyring_status(k, &st);
    CHECK(st.auto_unseal);
    struct stat sb;
    if (CHECK(stat(path, &sb) == 0)) {
        CHECK(S_ISREG(sb.st_mode));
        CHECK_EQ_INT(sb.st_mode & 07777, 0600);
        CHECK_EQ_INT(sb.st_size, 32);
    }
    char h[TK_HASH_HEX], kid[17];
    CHECK(hash_of(k, "tko_auto", h, kid));

    /* a restart unseals with the file alone */
    n = fresh(f->dir, db);
    if (!n) goto out;
    tk_keyring_status(n, &st);
    CHECK(st.auto_unseal);
    CHECK(st.sealed);
    if (CHECK_OK(tk_keyring_unseal_file(n, db, path, NULL, &e), &e)) {
        CHECK(!tk_keyring_sealed(n));
        char h2[TK_HASH_HEX], kid2[17];
        if (hash_of(n, "tko_auto", h2, kid2)) {
            CHECK_EQ_STR(h2, h);
            CHECK_EQ_STR(kid2, kid);
        }
        tk_keyring_status(n, &st);
        CHECK_EQ_INT(st.data_version, 1);
        CHECK_EQ_INT(st.threshold, 3);
        CHECK_EQ_INT(st.shares, 5);
        /* once more: a no-op */
        CHECK_OK(tk_keyring_unseal_file(n, db, path, NULL, &e), &e);
    }
    tk_keyring_free(n);
    n = NULL;
    /* the shares open it as well */
    n = fresh(f->dir, db);
    int idx[] = {1, 3, 4};
    if (n) CHECK(unseal_with(n, db, shares, idx, 3));
    tk_keyring_free(n);
    n = NULL;

    /* a different 32-byte file */
    unsigned char junk[33];
    tk_random(junk, sizeof junk);
    n = fresh(f->dir, db);
    if (!n) goto out;
    if (CHECK(unit_write_file(other_path, junk, 32, 0600))) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_unseal_file(n, db, other_path, NULL, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "wrong_key_file");
        CHECK(strstr(e.msg, "another.key") != NULL);
        CHECK(tk_keyring_sealed(n));
    }
    /* 31 and 33 bytes */
    if (CHECK(unit_write_file(other_path, junk, 31, 0600))) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_unseal_file(n, db, other_path, NULL, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "key_file_corrupt");
        CHECK(tk_keyring_sealed(n));
    }
    if (CHECK(unit_write_file(other_path, junk, 33, 0600))) {
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_unseal_file(n, db, other_path, NULL, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "key_file_corrupt");
    }
    /* missing */
    unlink(other_path);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_unseal_file(n, db, other_path, NULL, &e), TK_ENOTFOUND);
    CHECK_EQ_STR(e.code, "key_file_missing");
    CHECK(tk_keyring_sealed(n));
    /* after all that, the right file still works */
    CHECK_OK(tk_keyring_unseal_file(n, db, path, NULL, &e), &e);
    CHECK(!tk_keyring_sealed(n));
    tk_keyring_free(n);
    n = NULL;

    /* a keyring initialized without auto-unseal: a key file does not open it */
    struct tk_db *odb = other_open(f, &o);
    if (!odb) goto out;
    char odir[256];
    if (!CHECK(unit_tmpdir(odir, sizeof odir))) goto out;
    struct tk_keyring *ko = init_kr(odir, odb, 1, 1, NULL, oshares);
    unit_rmtree(odir);
    tk_keyring_free(ko);
    n = fresh(f->dir, odb);
    if (n) {
        tk_keyring_status(n, &st);
        CHECK(!st.auto_unseal);
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_unseal_file(n, odb, path, NULL, &e), TK_ECONFLICT);
        CHECK_EQ_STR(e.code, "no_auto_unseal");
        CHECK(tk_keyring_sealed(n));
        struct tk_seal_status s2;
        CHECK_OK(give(n, odb, oshares[0], &s2, &e), &e);
        CHECK(!s2.sealed);
    }
out:
    tk_keyring_free(n);
    tk_keyring_free(k);
    other_close(&o);
    tk_store_put(db);
}

/* ---- the foundation's hash.key ---- */

void test_keyring_hash_import(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[5][TK_SHARE_MAX], legacy[600];
    snprintf(legacy, sizeof legacy, "%s/hash.key", f->dir);
    unsigned char key[32];
    tk_random(key, sizeof key);
    char want_id[17], tenant[TK_UUID_LEN + 1];
    old_key_id(key, want_id);
    struct tk_keyring *k = NULL, *n = NULL;
    if (!CHECK(unit_write_file(legacy, key, 32, 0600))) goto out;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;

    /* an operator token issued by the foundation: HMAC under hash.key */
    char oldtok[TK_ISSUED_MAX], oldhash[65], oldid[TK_UUID_LEN + 1], preview[24];
    tk_issued_new(TK_KIND_OPERATOR, oldtok);
    tk_issued_preview(oldtok, preview);
    hmac_hex(key, 32, oldtok, strlen(oldtok), oldhash);
    tk_uuid7(oldid);
    CHECK_OK(tk_db_exec(db,
                        "INSERT INTO operator_tokens (id, tenant_id, name, role, token_hash, "
                        "hash_key, preview, created_at) VALUES (?, ?, 'old', 'admin', ?, ?, ?, ?)",
                        TK_ARGS(TK_TEXT(oldid), TK_TEXT(tenant), TK_TEXT(oldhash), TK_TEXT(want_id),
                                TK_TEXT(preview), TK_INT(tk_now_ms())),
                        NULL, &e),
             &e);

    if (!CHECK((k = init_kr(f->dir, db, 5, 3, NULL, shares)) != NULL)) goto out;
    CHECK(access(legacy, F_OK) != 0 && errno == ENOENT);
    static const char *inputs[] = {"tko_abc", "", "x", "tko_0123456789abcdefghijABCDEFGHIJ012345"};
    char h[TK_HASH_HEX], kid[17], want[65];
    for (size_t i = 0; i < TK_NELEM(inputs); i++) {
        hmac_hex(key, 32, inputs[i], strlen(inputs[i]), want);
        if (hash_of(k, inputs[i], h, kid)) {
            CHECK_EQ_STR(h, want);
            CHECK_EQ_STR(kid, want_id);
        }
    }
    /* explicit length: the bytes given, no more */
    char h1[TK_HASH_HEX], h2[TK_HASH_HEX];
    CHECK_OK(tk_keyring_hash(k, "abcdef", 3, h1, NULL, &e), &e);
    CHECK_OK(tk_keyring_hash(k, "abc", 3, h2, NULL, &e), &e);
    CHECK_EQ_STR(h1, h2);
    /* binary input with a NUL */
    CHECK_OK(tk_keyring_hash(k, "a\0b", 3, h1, NULL, &e), &e);
    hmac_hex(key, 32, "a\0b", 3, want);
    CHECK_EQ_STR(h1, want);
    /* the key id says nothing of the key */
    char keyhex[65];
    tk_hex(key, 32, keyhex);
    CHECK(strstr(keyhex, kid) == NULL);

    /* the old token authenticates under the keyring */
    char header[128];
    struct tk_principal p;
    snprintf(header, sizeof header, "Bearer %s", oldtok);
    if (CHECK_OK(tk_optoken_authenticate(db, k, header, &p, &e), &e)) CHECK_EQ_STR(p.id, oldid);

    /* a restart unsealed with shares hashes identically */
    n = fresh(f->dir, db);
    int idx[] = {4, 0, 2};
    if (n && CHECK(unseal_with(n, db, shares, idx, 3))) {
        for (size_t i = 0; i < TK_NELEM(inputs); i++) {
            hmac_hex(key, 32, inputs[i], strlen(inputs[i]), want);
            if (hash_of(n, inputs[i], h, kid)) {
                CHECK_EQ_STR(h, want);
                CHECK_EQ_STR(kid, want_id);
            }
        }
        memset(&p, 0, sizeof p);
        if (CHECK_OK(tk_optoken_authenticate(db, n, header, &p, &e), &e)) CHECK_EQ_STR(p.id, oldid);
        /* and rotating data keys leaves the HMAC key alone */
        int64_t v = 0;
        CHECK_OK(tk_keyring_rotate(n, db, &v, NULL, &e), &e);
        if (hash_of(n, "tko_abc", h, kid)) {
            hmac_hex(key, 32, "tko_abc", 7, want);
            CHECK_EQ_STR(h, want);
            CHECK_EQ_STR(kid, want_id);
        }
    }
    /* the file is not written back */
    CHECK(access(legacy, F_OK) != 0);
out:
    tk_keyring_free(n);
    tk_keyring_free(k);
    tk_store_put(db);
}

/* Without a hash.key, each installation has its own random HMAC key. */
void test_keyring_hash_random(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct other o;
    memset(&o, 0, sizeof o);
    char s1[1][TK_SHARE_MAX], s2[1][TK_SHARE_MAX], odir[256] = "";
    struct tk_keyring *k = init_kr(f->dir, db, 1, 1, NULL, s1), *k2 = NULL;
    struct tk_db *odb = other_open(f, &o);
    if (!k || !odb || !CHECK(unit_tmpdir(odir, sizeof odir))) goto out;
    k2 = init_kr(odir, odb, 1, 1, NULL, s2);
    char h1[TK_HASH_HEX], h2[TK_HASH_HEX], id1[17], id2[17];
    if (k2 && hash_of(k, "tko_same", h1, id1) && hash_of(k2, "tko_same", h2, id2)) {
        CHECK(strcmp(h1, h2) != 0);
        CHECK(strcmp(id1, id2) != 0);
        CHECK_EQ_INT(strlen(h1), 64);
        for (const char *c = h1; *c; c++)
            CHECK((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
    }
out:
    tk_keyring_free(k);
    tk_keyring_free(k2);
    if (odir[0]) unit_rmtree(odir);
    other_close(&o);
    tk_store_put(db);
}

/* RFC 4231 test vectors, through an imported hash.key. Their keys are
 * shorter than 32 bytes; HMAC pads any key shorter than the hash's block
 * (64 bytes) with zeros, so the same key zero-padded to 32 bytes gives the
 * same MAC. Each vector is its own installation (a SQLite store). */
void test_keyring_known_answer(void)
{
    static const struct {
        unsigned char key[32];
        const char *data;
        size_t dlen;
        const char *mac;
    } v[] = {
        /* test case 1: 20 bytes 0x0b, "Hi There" */
        {{0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
          0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b},
         "Hi There",
         8,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        /* test case 2: "Jefe" */
        {{'J', 'e', 'f', 'e'},
         "what do ya want for nothing?",
         28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        /* test case 4: 0x01..0x19, 50 bytes 0xcd */
        {{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
          0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19},
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd",
         50,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    };
    for (size_t i = 0; i < TK_NELEM(v); i++) {
        char dir[256], path[600], url[700];
        if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
        snprintf(path, sizeof path, "%s/hash.key", dir);
        snprintf(url, sizeof url, "sqlite:%s/tokend.db", dir);
        struct tk_store_opts so = {.pool_size = 1, .busy_timeout_ms = 10000, .migrate = true};
        struct tk_store *st = NULL;
        struct tk_db *db = NULL;
        struct tk_keyring *k = NULL;
        struct tk_err e;
        char shares[1][TK_SHARE_MAX];
        if (CHECK(unit_write_file(path, v[i].key, 32, 0600)) &&
            CHECK_OK(tk_store_open(url, &so, &st, &e), &e) &&
            CHECK((db = tk_store_get(st, &e)) != NULL) &&
            CHECK((k = init_kr(dir, db, 1, 1, NULL, shares)) != NULL)) {
            char h[TK_HASH_HEX];
            if (CHECK_OK(tk_keyring_hash(k, v[i].data, v[i].dlen, h, NULL, &e), &e) &&
                !CHECK_EQ_STR(h, v[i].mac))
                FAILF("RFC 4231 vector %zu", i);
        }
        tk_keyring_free(k);
        tk_store_put(db);
        tk_store_close(st);
        unit_rmtree(dir);
    }
}

/* ---- sealed values ---- */

#define PLAIN_MARK "plaintext-canary-7Hq2"

/* Events of kind keyring action decrypt_failed of tenant, newest first. */
static json_t *decrypt_events(struct tk_db *db, const char *tenant)
{
    struct tk_event_query q = {.tenant_id = tenant,
                               .kind = "keyring",
                               .action = "decrypt_failed",
                               .limit = TK_EVENTS_MAX_LIMIT};
    json_t *a = NULL;
    int64_t next = 0;
    struct tk_err e;
    if (!CHECK_OK(tk_events_list(db, &q, &a, &next, &e), &e)) return json_array();
    return a;
}

/* Open v at ad and expect decrypt_failed naming row_id (and "key version
 * <ver>" when ver >= 0), the same in the returned struct tk_open_failure,
 * and no event: the keyring leaves reporting to its caller (issue 13 #9). */
static void open_fails(struct tk_keyring *k, struct tk_db *db, const struct tk_sealed *v,
                       const struct tk_seal_ad *ad, int64_t ver, const char *event_tenant,
                       const char *what, int line)
{
    json_t *before = db ? decrypt_events(db, event_tenant) : NULL;
    struct tk_secret *out = (struct tk_secret *)(uintptr_t)1;
    struct tk_err e;
    tk_err_clear(&e);
    struct tk_open_failure fl;
    memset(&fl, 0, sizeof fl);
    tk_rc rc = tk_keyring_open_value(k, db, v, ad, &out, &fl, &e);
    if (!strstr(fl.row, ad->row_id))
        unit_fail(__FILE__, line, "%s: failure row '%s' lacks the row id", what, fl.row);
    if (ver >= 0 && fl.key_version != ver)
        unit_fail(__FILE__, line, "%s: failure key_version %lld, want %lld", what,
                  (long long)fl.key_version, (long long)ver);
    if (rc != TK_EINTERNAL || strcmp(e.code, "decrypt_failed") != 0) {
        unit_fail(__FILE__, line, "%s: rc %d code '%s', want TK_EINTERNAL decrypt_failed", what,
                  (int)rc, e.code);
        if (rc == TK_OK) tk_secret_free(out);
    } else if (out != NULL) {
        unit_fail(__FILE__, line, "%s: out was not cleared on failure", what);
    }
    if (!strstr(e.msg, ad->row_id))
        unit_fail(__FILE__, line, "%s: message lacks the row id: %s", what, e.msg);
    if (ver >= 0) {
        char kv[40];
        snprintf(kv, sizeof kv, "key version %lld", (long long)ver);
        if (!strstr(e.msg, kv))
            unit_fail(__FILE__, line, "%s: message lacks '%s': %s", what, kv, e.msg);
    }
    if (strstr(e.msg, PLAIN_MARK)) unit_fail(__FILE__, line, "%s: message has the plaintext", what);
    if (!db) return;
    json_t *after = decrypt_events(db, event_tenant);
    if (json_array_size(after) != json_array_size(before))
        unit_fail(__FILE__, line, "%s: %zu decrypt_failed events, want %zu (none from the keyring)",
                  what, json_array_size(after), json_array_size(before));
    json_decref(before);
    json_decref(after);
}

static bool round_trip(struct tk_keyring *k, struct tk_db *db, const void *p, size_t len,
                       const struct tk_seal_ad *ad, int line)
{
    struct tk_err e;
    struct tk_secret *plain = tk_secret_new(p, len), *back = NULL;
    struct tk_sealed *s = NULL;
    bool ok = false;
    if (tk_keyring_seal_value(k, plain, ad, &s, &e) != TK_OK) {
        unit_fail(__FILE__, line, "seal %zu bytes: %s %s", len, e.code, e.msg);
    } else if (strncmp(s->text, "ENC:v1:", 7) != 0) {
        unit_fail(__FILE__, line, "sealed text %.20s", s->text);
    } else if (tk_keyring_open_value(k, db, s, ad, &back, NULL, &e) != TK_OK) {
        unit_fail(__FILE__, line, "open %zu bytes: %s %s", len, e.code, e.msg);
    } else if (back->len != len || memcmp(back->p, p, len) != 0 || back->p[len] != 0) {
        unit_fail(__FILE__, line, "%zu bytes came back different", len);
    } else {
        ok = true;
    }
    if (s && len >= 8 && memmem(s->text, strlen(s->text), p, 8))
        unit_fail(__FILE__, line, "the sealed text holds the plaintext");
    tk_secret_free(back);
    tk_secret_free(plain);
    tk_sealed_free(s);
    return ok;
}

void test_keyring_sealed_values(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[1][TK_SHARE_MAX], tenant[TK_UUID_LEN + 1], tenant2[TK_UUID_LEN + 1];
    struct tk_keyring *k = NULL;
    struct tk_secret *plain = NULL, *back = NULL;
    struct tk_sealed *s = NULL, *s2 = NULL, *bad = NULL;
    unsigned char *big = NULL;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;
    tk_uuid7(tenant2);
    if (!CHECK_OK(tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES (?, 'two', ?)",
                             TK_ARGS(TK_TEXT(tenant2), TK_INT(tk_now_ms())), NULL, &e),
                  &e))
        goto out;
    if (!(k = init_kr(f->dir, db, 1, 1, NULL, shares))) goto out;

    struct tk_seal_ad ad = place(tenant, "connections", "refresh_token", "row-0193-a");
    /* round trips: empty, 1 byte, binary with NULs, 64 KiB, 1 MiB (the most) */
    CHECK(round_trip(k, db, "", 0, &ad, __LINE__));
    CHECK(round_trip(k, db, "z", 1, &ad, __LINE__));
    CHECK(round_trip(k, db, "\0\0a\0\xff\x01\0", 7, &ad, __LINE__));
    big = tk_malloc((1 << 20) + 1);
    tk_random(big, (1 << 20) + 1);
    CHECK(round_trip(k, db, big, 64 * 1024, &ad, __LINE__));
    CHECK(round_trip(k, db, big, 1 << 20, &ad, __LINE__));
    CHECK(round_trip(k, NULL, big, 3, &ad, __LINE__));
    /* more than 1 MiB is refused */
    plain = tk_secret_new(big, (1 << 20) + 1);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_seal_value(k, plain, &ad, &s, &e), TK_ETOOBIG);
    CHECK(s == NULL);
    tk_secret_free(plain);

    /* the format, and a random nonce per seal */
    plain = tk_secret_new(PLAIN_MARK, strlen(PLAIN_MARK));
    if (!CHECK_OK(tk_keyring_seal_value(k, plain, &ad, &s, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_seal_value(k, plain, &ad, &s2, &e), &e)) goto out;
    CHECK(strncmp(s->text, "ENC:v1:1:", 9) == 0);
    CHECK(strcmp(s->text, s2->text) != 0);
    CHECK(strstr(s->text, PLAIN_MARK) == NULL);
    for (const char *c = s->text + 9; *c; c++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c)) {
            FAILF("sealed text has '%c' outside base64url", *c);
            break;
        }
    /* nonce 12 + tag 16 bytes around the plaintext */
    CHECK_EQ_INT(strlen(s->text + 9), ((12 + strlen(PLAIN_MARK) + 16) * 4 + 2) / 3);
    if (CHECK_OK(tk_keyring_open_value(k, db, s2, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, PLAIN_MARK);
    tk_secret_free(back);
    back = NULL;
    /* read from the store: the same text opens */
    struct tk_sealed *copy = tk_sealed_from_text(s->text);
    if (CHECK_OK(tk_keyring_open_value(k, db, copy, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, PLAIN_MARK);
    tk_sealed_free(copy);
    tk_secret_free(back);
    back = NULL;

    /* moved: another tenant, table, column or row */
    struct tk_seal_ad wt = place(tenant2, "connections", "refresh_token", "row-0193-a");
    struct tk_seal_ad wtab = place(tenant, "clients", "refresh_token", "row-0193-a");
    struct tk_seal_ad wcol = place(tenant, "connections", "access_token", "row-0193-a");
    struct tk_seal_ad wrow = place(tenant, "connections", "refresh_token", "row-0193-b");
    /* the fields are separated: moving a character across a boundary fails too */
    struct tk_seal_ad shift = place(tenant, "connection", "srefresh_token", "row-0193-a");
    open_fails(k, db, s, &wt, 1, tenant2, "other tenant", __LINE__);
    open_fails(k, db, s, &wtab, 1, tenant, "other table", __LINE__);
    open_fails(k, db, s, &wcol, 1, tenant, "other column", __LINE__);
    open_fails(k, db, s, &wrow, 1, tenant, "other row", __LINE__);
    open_fails(k, db, s, &shift, 1, tenant, "shifted fields", __LINE__);

    /* tampered: every position of the base64url part, one character changed */
    size_t len = strlen(s->text);
    char *t = tk_strdup(s->text);
    int opened = 0;
    for (size_t i = 9; i < len; i++) {
        char was = t[i];
        t[i] = was == 'A' ? 'B' : 'A';
        struct tk_sealed *x = tk_sealed_from_text(t);
        struct tk_secret *o2 = NULL;
        tk_err_clear(&e);
        tk_rc rc = tk_keyring_open_value(k, NULL, x, &ad, &o2, NULL, &e);
        if (rc == TK_OK)
            opened++;
        else if (rc != TK_EINTERNAL || strcmp(e.code, "decrypt_failed") != 0)
            FAILF("tampered at %zu: rc %d %s", i, (int)rc, e.code);
        tk_secret_free(o2);
        tk_sealed_free(x);
        t[i] = was;
    }
    CHECK_EQ_INT(opened, 0);
    /* and the same with a db: one event each (a few positions) */
    t[20] = t[20] == 'A' ? 'B' : 'A';
    bad = tk_sealed_from_text(t);
    open_fails(k, db, bad, &ad, 1, tenant, "flipped", __LINE__);
    tk_sealed_free(bad);
    t[20] = s->text[20];
    /* truncated by one and by many characters */
    t[len - 1] = '\0';
    bad = tk_sealed_from_text(t);
    open_fails(k, db, bad, &ad, 1, tenant, "truncated by 1", __LINE__);
    tk_sealed_free(bad);
    t[len - 2] = '\0';
    bad = tk_sealed_from_text(t);
    open_fails(k, db, bad, &ad, 1, tenant, "truncated by 2", __LINE__);
    tk_sealed_free(bad);
    t[30] = '\0';
    bad = tk_sealed_from_text(t);
    open_fails(k, db, bad, &ad, 1, tenant, "truncated to 30", __LINE__);
    tk_sealed_free(bad);
    bad = tk_sealed_from_text("ENC:v1:1:");
    open_fails(k, db, bad, &ad, 1, tenant, "no body", __LINE__);
    tk_sealed_free(bad);
    free(t);
    /* an unknown key version, also after a reload from the store */
    char *v99 = tk_malloc(len + 8);
    snprintf(v99, len + 8, "ENC:v1:99:%s", s->text + 9);
    bad = tk_sealed_from_text(v99);
    open_fails(k, db, bad, &ad, 99, tenant, "version 99", __LINE__);
    open_fails(k, NULL, bad, &ad, 99, tenant, "version 99 without db", __LINE__);
    tk_sealed_free(bad);
    free(v99);
    CHECK(!tk_keyring_sealed(k)); /* the reload kept it unsealed */
    /* not sealed values at all */
    static const char *junk[] = {"hello",
                                 "",
                                 "ENC:v1:",
                                 "ENC:v1::abc",
                                 "ENC:v1:x:abc",
                                 "ENC:v2:1:abc",
                                 "enc:v1:1:abc",
                                 "ENC:v1:-1:abc",
                                 "ENC:v1:99999999999999999999:abc",
                                 PLAIN_MARK};
    for (size_t i = 0; i < TK_NELEM(junk); i++) {
        bad = tk_sealed_from_text(junk[i]);
        char what[80];
        snprintf(what, sizeof what, "junk '%.40s'", junk[i]);
        open_fails(k, db, bad, &ad, -1, tenant, what, __LINE__);
        tk_sealed_free(bad);
    }
    /* a NULL sealed text (tk_sealed_from_text(NULL) is "") */
    bad = tk_sealed_from_text(NULL);
    CHECK(bad && bad->text && !bad->text[0]);
    tk_sealed_free(bad);
    bad = NULL;

    /* every event so far: none holds the plaintext; the chain verifies */
    json_t *all = decrypt_events(db, tenant);
    CHECK_EQ_INT(json_array_size(all), 0); /* the keyring records no event itself */
    char *dump = json_dumps(all, 0);
    CHECK(dump && !strstr(dump, PLAIN_MARK));
    free(dump);
    json_decref(all);
    int64_t checked = 0;
    CHECK_OK(tk_events_verify(db, tenant, &checked, &e), &e);
    /* the good value still opens */
    if (CHECK_OK(tk_keyring_open_value(k, db, s, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, PLAIN_MARK);
out:
    free(big);
    tk_secret_free(back);
    tk_secret_free(plain);
    tk_sealed_free(s);
    tk_sealed_free(s2);
    tk_keyring_free(k);
    tk_store_put(db);
}

/* ---- rotation, seen by another node ---- */

void test_keyring_rotate(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX];
    struct tk_keyring *a = NULL, *b = NULL, *c = NULL;
    struct tk_secret *p1 = tk_secret_new("value-under-v1", 14),
                     *p2 = tk_secret_new("value-under-v2", 14);
    struct tk_secret *back = NULL;
    struct tk_sealed *v1 = NULL, *v2 = NULL, *bv = NULL;
    struct tk_seal_ad ad = place("tenant-x", "connections", "refresh_token", "row-7");
    if (!(a = init_kr(f->dir, db, 5, 3, NULL, shares))) goto out;
    /* node b unsealed before the rotation */
    b = fresh(f->dir, db);
    int idx[] = {0, 1, 2};
    if (!b || !CHECK(unseal_with(b, db, shares, idx, 3))) goto out;

    if (!CHECK_OK(tk_keyring_seal_value(a, p1, &ad, &v1, &e), &e)) goto out;
    CHECK(strncmp(v1->text, "ENC:v1:1:", 9) == 0);
    int64_t ver = 0;
    if (!CHECK_OK(tk_keyring_rotate(a, db, &ver, NULL, &e), &e)) goto out;
    CHECK_EQ_INT(ver, 2);
    tk_keyring_status(a, &st);
    CHECK_EQ_INT(st.data_version, 2);
    if (!CHECK_OK(tk_keyring_seal_value(a, p2, &ad, &v2, &e), &e)) goto out;
    CHECK(strncmp(v2->text, "ENC:v1:2:", 9) == 0);
    /* old values still open on a */
    if (CHECK_OK(tk_keyring_open_value(a, db, v1, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, "value-under-v1");
    tk_secret_free(back);
    back = NULL;
    if (CHECK_OK(tk_keyring_open_value(a, db, v2, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, "value-under-v2");
    tk_secret_free(back);
    back = NULL;

    /* node b: without a db it cannot know version 2 yet */
    tk_keyring_status(b, &st);
    CHECK_EQ_INT(st.data_version, 1);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_open_value(b, NULL, v2, &ad, &back, NULL, &e), TK_EINTERNAL);
    CHECK_EQ_STR(e.code, "decrypt_failed");
    CHECK(strstr(e.msg, "key version 2") != NULL);
    CHECK(back == NULL);
    /* with the db it reloads and opens it */
    if (CHECK_OK(tk_keyring_open_value(b, db, v2, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, "value-under-v2");
    tk_secret_free(back);
    back = NULL;
    CHECK(!tk_keyring_sealed(b));
    tk_keyring_status(b, &st);
    CHECK_EQ_INT(st.data_version, 2);
    if (CHECK_OK(tk_keyring_open_value(b, db, v1, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, "value-under-v1");
    tk_secret_free(back);
    back = NULL;
    /* b now seals under version 2 too, and a opens it */
    if (CHECK_OK(tk_keyring_seal_value(b, p1, &ad, &bv, &e), &e)) {
        CHECK(strncmp(bv->text, "ENC:v1:2:", 9) == 0);
        if (CHECK_OK(tk_keyring_open_value(a, db, bv, &ad, &back, NULL, &e), &e))
            CHECK_EQ_STR((const char *)back->p, "value-under-v1");
        tk_secret_free(back);
        back = NULL;
    }

    /* b rotates next: 3 (the store's count, not b's) and a follows */
    if (CHECK_OK(tk_keyring_rotate(b, db, &ver, NULL, &e), &e)) CHECK_EQ_INT(ver, 3);
    tk_sealed_free(bv);
    bv = NULL;
    if (CHECK_OK(tk_keyring_seal_value(b, p1, &ad, &bv, &e), &e)) {
        CHECK(strncmp(bv->text, "ENC:v1:3:", 9) == 0);
        if (CHECK_OK(tk_keyring_open_value(a, db, bv, &ad, &back, NULL, &e), &e))
            CHECK_EQ_STR((const char *)back->p, "value-under-v1");
        tk_secret_free(back);
        back = NULL;
        tk_keyring_status(a, &st);
        CHECK_EQ_INT(st.data_version, 3);
    }
    /* a node started after the rotations opens every version */
    c = fresh(f->dir, db);
    int idx2[] = {4, 3, 2};
    if (c && CHECK(unseal_with(c, db, shares, idx2, 3))) {
        tk_keyring_status(c, &st);
        CHECK_EQ_INT(st.data_version, 3);
        const struct tk_sealed *all[] = {v1, v2, bv};
        for (int i = 0; i < 3; i++) {
            if (all[i] &&
                CHECK_OK(tk_keyring_open_value(c, NULL, all[i], &ad, &back, NULL, &e), &e))
                CHECK(back->len == 14);
            tk_secret_free(back);
            back = NULL;
        }
    }
    CHECK_EQ_INT(count_rows(db, "keyring_keys"), 4); /* hmac 1, data 1..3 */
    /* rotate while sealed */
    tk_keyring_seal(c);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_rotate(c, db, &ver, NULL, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    CHECK_EQ_INT(count_rows(db, "keyring_keys"), 4);
out:
    tk_secret_free(p1);
    tk_secret_free(p2);
    tk_secret_free(back);
    tk_sealed_free(v1);
    tk_sealed_free(v2);
    tk_sealed_free(bv);
    tk_keyring_free(a);
    tk_keyring_free(b);
    tk_keyring_free(c);
    tk_store_put(db);
}

/* ---- seal ---- */

void test_keyring_seal(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_seal_status st;
    char shares[5][TK_SHARE_MAX], path[600];
    snprintf(path, sizeof path, "%s/unseal.key", f->dir);
    struct tk_keyring *k = init_kr(f->dir, db, 5, 3, path, shares);
    struct tk_secret *plain = tk_secret_new("sealed-then", 11), *back = NULL;
    struct tk_sealed *v = NULL;
    struct tk_seal_ad ad = place("t", "a", "b", "row-s");
    char h[TK_HASH_HEX], h2[TK_HASH_HEX];
    if (!k || !hash_of(k, "tko_seal", h, NULL)) goto out;
    if (!CHECK_OK(tk_keyring_seal_value(k, plain, &ad, &v, &e), &e)) goto out;

    tk_keyring_seal(k);
    CHECK(tk_keyring_sealed(k));
    tk_keyring_status(k, &st);
    CHECK(st.initialized);
    CHECK(st.sealed);
    CHECK_EQ_INT(st.data_version, 0);
    CHECK_EQ_INT(st.threshold, 3);
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_hash(k, "tko_seal", 8, h2, NULL, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_open_value(k, db, v, &ad, &back, NULL, &e), TK_EUNAVAIL);
    CHECK_EQ_STR(e.code, "sealed");
    struct tk_sealed *v2 = NULL;
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_keyring_seal_value(k, plain, &ad, &v2, &e), TK_EUNAVAIL);
    tk_sealed_free(v2);
    tk_keyring_seal(k); /* twice: fine */

    /* unseal again with shares */
    int idx[] = {2, 4, 0};
    if (CHECK(unseal_with(k, db, shares, idx, 3)) && hash_of(k, "tko_seal", h2, NULL)) {
        CHECK_EQ_STR(h2, h);
        if (CHECK_OK(tk_keyring_open_value(k, db, v, &ad, &back, NULL, &e), &e))
            CHECK_EQ_STR((const char *)back->p, "sealed-then");
        tk_secret_free(back);
        back = NULL;
    }
    /* seal forgets unseal progress too */
    tk_keyring_seal(k);
    CHECK_OK(give(k, db, shares[0], &st, &e), &e);
    CHECK_EQ_INT(st.progress, 1);
    tk_keyring_seal(k);
    tk_keyring_status(k, &st);
    CHECK_EQ_INT(st.progress, 0);
    CHECK_OK(give(k, db, shares[0], &st, &e), &e); /* counts again, not a duplicate */
    CHECK_EQ_INT(st.progress, 1);
    /* and the key file opens it too */
    tk_keyring_seal(k);
    if (CHECK_OK(tk_keyring_unseal_file(k, db, path, NULL, &e), &e) &&
        hash_of(k, "tko_seal", h2, NULL))
        CHECK_EQ_STR(h2, h);
out:
    tk_secret_free(plain);
    tk_secret_free(back);
    tk_sealed_free(v);
    tk_keyring_free(k);
    tk_store_put(db);
}

/* ---- the store never holds a key in clear ---- */

struct needle {
    const char *what;
    unsigned char raw[32];
    char hex[65], HEX[65], b64u[48], b64[48];
};

static void needle_make(struct needle *n, const char *what, const unsigned char key[32])
{
    n->what = what;
    memcpy(n->raw, key, 32);
    tk_hex(key, 32, n->hex);
    for (int i = 0; i < 64; i++)
        n->HEX[i] = (char)(n->hex[i] >= 'a' ? n->hex[i] - 'a' + 'A' : n->hex[i]);
    n->HEX[64] = '\0';
    tk_b64url_enc(key, 32, n->b64u);
    EVP_EncodeBlock((unsigned char *)n->b64, key, 32); /* standard, padded */
}

static int scan_bytes(const unsigned char *p, size_t len, const struct needle *n, int nn,
                      const char *where)
{
    int found = 0;
    for (int i = 0; i < nn; i++) {
        const void *forms[] = {n[i].raw, n[i].hex, n[i].HEX, n[i].b64u, n[i].b64};
        size_t lens[] = {32, 64, 64, strlen(n[i].b64u), strlen(n[i].b64)};
        static const char *names[] = {"raw", "hex", "HEX", "base64url", "base64"};
        for (int j = 0; j < 5; j++)
            if (memmem(p, len, forms[j], lens[j])) {
                FAILF("%s holds the %s in %s", where, n[i].what, names[j]);
                found++;
            }
        /* a shorter slice (16 bytes) in hex, in case of partial storage */
        if (memmem(p, len, n[i].hex, 32) || memmem(p, len, n[i].hex + 32, 32)) {
            FAILF("%s holds half of the %s in hex", where, n[i].what);
            found++;
        }
    }
    return found;
}

void test_keyring_store_scan(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[5][TK_SHARE_MAX], legacy[600], autop[600];
    snprintf(legacy, sizeof legacy, "%s/hash.key", f->dir);
    snprintf(autop, sizeof autop, "%s/unseal.key", f->dir);
    unsigned char hkey[32], master[32], filekey[32];
    tk_random(hkey, sizeof hkey);
    struct tk_keyring *k = NULL;
    struct tk_sealed *v = NULL;
    struct tk_secret *plain = NULL;
    if (!CHECK(unit_write_file(legacy, hkey, 32, 0600))) goto out;
    if (!(k = init_kr(f->dir, db, 5, 3, autop, shares))) goto out;
    int64_t ver;
    CHECK_OK(tk_keyring_rotate(k, db, &ver, NULL, &e), &e);
    CHECK_OK(tk_keyring_rotate(k, db, &ver, NULL, &e), &e);
    plain = tk_secret_new(PLAIN_MARK, strlen(PLAIN_MARK));
    struct tk_seal_ad ad = place("t", "connections", "refresh_token", "row-scan");
    CHECK_OK(tk_keyring_seal_value(k, plain, &ad, &v, &e), &e);

    /* the keys we can know: the imported HMAC key, the auto-unseal file's
     * key, and the master key rebuilt from three shares */
    size_t fl = 0;
    unsigned char *fk = read_all(autop, &fl);
    if (!CHECK(fk && fl == 32)) {
        free(fk);
        goto out;
    }
    memcpy(filekey, fk, 32);
    free(fk);
    unsigned char xs[3], ys[3][32];
    for (int i = 0; i < 3; i++)
        if (!CHECK_OK(tk_shamir_parse(shares[i], &xs[i], ys[i], &e), &e)) goto out;
    if (!CHECK_OK(tk_shamir_combine(xs, (const unsigned char(*)[32])ys, 3, master, &e), &e))
        goto out;
    struct needle n[3];
    needle_make(&n[0], "HMAC key (hash.key)", hkey);
    needle_make(&n[1], "auto-unseal file key", filekey);
    needle_make(&n[2], "master key", master);

    /* every column of every row of keyring and keyring_keys */
    static const char *tables[] = {"keyring", "keyring_keys"};
    int cells = 0;
    for (size_t ti = 0; ti < TK_NELEM(tables); ti++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT * FROM %s", tables[ti]);
        struct tk_rows *r = NULL;
        if (!CHECK_OK(tk_db_exec(db, sql, NULL, 0, &r, &e), &e)) continue;
        for (int i = 0; i < tk_rows_count(r); i++)
            for (int c = 0; c < tk_rows_columns(r); c++) {
                const char *cell = tk_rows_text(r, i, c);
                if (!cell) continue;
                cells++;
                char where[64];
                snprintf(where, sizeof where, "%s row %d column %d", tables[ti], i, c);
                scan_bytes((const unsigned char *)cell, strlen(cell), n, 3, where);
                for (int s = 0; s < 5; s++)
                    if (strstr(cell, shares[s] + 7)) FAILF("%s holds share %d", where, s + 1);
                if (strstr(cell, PLAIN_MARK)) FAILF("%s holds the plaintext", where);
            }
        if (ti == 1) CHECK_EQ_INT(tk_rows_count(r), 4); /* hmac 1, data 1..3 */
        tk_rows_free(r);
    }
    CHECK(cells >= 20);
    /* every sealed key is a sealed value under version 0 */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT sealed FROM keyring_keys UNION ALL SELECT check_value FROM "
                            "keyring UNION ALL SELECT auto_wrapped FROM keyring",
                            NULL, 0, &r, &e),
                 &e)) {
        CHECK_EQ_INT(tk_rows_count(r), 6);
        for (int i = 0; i < tk_rows_count(r); i++)
            CHECK(tk_rows_text(r, i, 0) && !strncmp(tk_rows_text(r, i, 0), "ENC:v1:0:", 9));
    }
    tk_rows_free(r);
    /* the hash.key was removed; the SQLite files hold no key in any form */
    CHECK(access(legacy, F_OK) != 0);
    if (!strcmp(f->backend, "sqlite")) {
        static const char *files[] = {"tokend.db", "tokend.db-wal", "tokend.db-journal"};
        int scanned = 0;
        for (size_t i = 0; i < TK_NELEM(files); i++) {
            char p[600];
            snprintf(p, sizeof p, "%s/%s", f->dir, files[i]);
            size_t len = 0;
            unsigned char *bytes = read_all(p, &len);
            if (!bytes) continue;
            scanned++;
            scan_bytes(bytes, len, n, 3, files[i]);
            if (memmem(bytes, len, PLAIN_MARK, strlen(PLAIN_MARK)))
                FAILF("%s holds the plaintext", files[i]);
            free(bytes);
        }
        CHECK(scanned >= 1);
    }
out:
    tk_wipe(master, sizeof master);
    tk_secret_free(plain);
    tk_sealed_free(v);
    tk_keyring_free(k);
    tk_store_put(db);
}

/* ---- threads: seal, open and hash while another thread rotates ---- */

struct worker {
    struct tk_keyring *k;
    int failures, rounds;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char row[32];
    for (int i = 0; i < w->rounds; i++) {
        struct tk_err e;
        snprintf(row, sizeof row, "row-%d", i);
        struct tk_seal_ad ad = {"t", "x", "y", row};
        struct tk_secret *p = tk_secret_new(row, strlen(row)), *b = NULL;
        struct tk_sealed *s = NULL;
        char h[TK_HASH_HEX];
        if (tk_keyring_seal_value(w->k, p, &ad, &s, &e) != TK_OK ||
            tk_keyring_open_value(w->k, NULL, s, &ad, &b, NULL, &e) != TK_OK || b->len != p->len ||
            memcmp(b->p, p->p, p->len) != 0 ||
            tk_keyring_hash(w->k, row, strlen(row), h, NULL, &e) != TK_OK)
            w->failures++;
        tk_secret_free(p);
        tk_secret_free(b);
        tk_sealed_free(s);
    }
    return NULL;
}

void test_keyring_threads(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[1][TK_SHARE_MAX];
    struct tk_keyring *k = init_kr(f->dir, db, 1, 1, NULL, shares);
    if (!k) goto out;
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i].k = k;
        w[i].failures = 0;
        w[i].rounds = 1500;
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    int64_t ver = 0;
    for (int i = 0; i < 8; i++)
        CHECK_OK(tk_keyring_rotate(k, db, &ver, NULL, &e), &e);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(w[i].failures, 0);
    }
    CHECK_EQ_INT(ver, 9);
out:
    tk_keyring_free(k);
    tk_store_put(db);
}

/* ---- plaintext and sealed types ---- */

void test_keyring_secret_types(void)
{
    char src[] = "s3cret";
    struct tk_secret *s = tk_secret_new(src, 6);
    src[0] = 'X';
    CHECK_EQ_INT(s->len, 6);
    CHECK(memcmp(s->p, "s3cret", 7) == 0); /* a copy, NUL-terminated */
    tk_secret_free(s);
    tk_secret_free(NULL);
    s = tk_secret_new("", 0);
    CHECK(s->len == 0 && s->p && s->p[0] == 0);
    tk_secret_free(s);
    struct tk_sealed *v = tk_sealed_from_text("ENC:v1:1:abc");
    CHECK_EQ_STR(v->text, "ENC:v1:1:abc");
    tk_sealed_free(v);
    tk_sealed_free(NULL);
    /* a new keyring is sealed and uninitialized until it loads */
    struct tk_keyring *k = NULL;
    struct tk_err e;
    if (CHECK_OK(tk_keyring_new("/nonexistent", &k, &e), &e)) {
        struct tk_seal_status st;
        tk_keyring_status(k, &st);
        CHECK(st.sealed && !st.initialized && st.progress == 0 && st.data_version == 0);
        char h[TK_HASH_HEX];
        tk_err_clear(&e);
        CHECK_EQ_INT(tk_keyring_hash(k, "a", 1, h, NULL, &e), TK_EUNAVAIL);
        tk_keyring_seal(k);
    }
    tk_keyring_free(k);
    tk_keyring_free(NULL);
}

/* ---- a store error while reloading does not seal the node ---- */

void test_keyring_reload_store_error(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char shares[3][TK_SHARE_MAX];
    struct tk_keyring *a = NULL, *b = NULL;
    struct tk_secret *p = tk_secret_new("kept-across-outage", 18), *back = NULL;
    struct tk_sealed *v1 = NULL, *v2 = NULL;
    struct tk_seal_ad ad = place("t", "connections", "refresh_token", "row-o");
    bool renamed = false;
    if (!(a = init_kr(f->dir, db, 3, 2, NULL, shares))) goto out;
    b = fresh(f->dir, db);
    int idx[] = {0, 2};
    if (!b || !CHECK(unseal_with(b, db, shares, idx, 2))) goto out;
    if (!CHECK_OK(tk_keyring_seal_value(b, p, &ad, &v1, &e), &e)) goto out;
    int64_t ver;
    if (!CHECK_OK(tk_keyring_rotate(a, db, &ver, NULL, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_seal_value(a, p, &ad, &v2, &e), &e)) goto out;

    /* the store fails while b meets version 2 (the table is away) */
    renamed = CHECK_OK(
        tk_db_exec(db, "ALTER TABLE keyring_keys RENAME TO keyring_keys_away", NULL, 0, NULL, &e),
        &e);
    if (!renamed) goto out;
    tk_err_clear(&e);
    CHECK(tk_keyring_open_value(b, db, v2, &ad, &back, NULL, &e) != TK_OK);
    tk_secret_free(back);
    back = NULL;
    /* b keeps what it had: still unsealed, version 1 values still open */
    CHECK(!tk_keyring_sealed(b));
    if (CHECK_OK(tk_keyring_open_value(b, NULL, v1, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, "kept-across-outage");
    tk_secret_free(back);
    back = NULL;
    char h[TK_HASH_HEX];
    CHECK_OK(tk_keyring_hash(b, "x", 1, h, NULL, &e), &e);
    /* rotate on a failing store: refused, and a stays unsealed */
    tk_err_clear(&e);
    CHECK(tk_keyring_rotate(a, db, &ver, NULL, &e) != TK_OK);
    CHECK(!tk_keyring_sealed(a));
    /* the store is back: b reloads and opens version 2 */
    if (CHECK_OK(tk_db_exec(db, "ALTER TABLE keyring_keys_away RENAME TO keyring_keys", NULL, 0,
                            NULL, &e),
                 &e))
        renamed = false;
    if (CHECK_OK(tk_keyring_open_value(b, db, v2, &ad, &back, NULL, &e), &e))
        CHECK_EQ_STR((const char *)back->p, "kept-across-outage");
out:
    if (renamed)
        tk_db_exec(db, "ALTER TABLE keyring_keys_away RENAME TO keyring_keys", NULL, 0, NULL, &e);
    tk_secret_free(p);
    tk_secret_free(back);
    tk_sealed_free(v1);
    tk_sealed_free(v2);
    tk_keyring_free(a);
    tk_keyring_free(b);
    tk_store_put(db);
}

/* Plaintext secrets live in OpenSSL's secure heap once tokend made one,
 * fall back to the ordinary heap when it is full, and read the same. */
void test_keyring_secret_heap(void)
{
    struct tk_err e;
    CHECK(tk_secret_heap_init(1 << 20, &e) == TK_OK);
    struct tk_secret *s = tk_secret_new("tko_secret", 10);
    CHECK(CRYPTO_secure_allocated(s->p));
    CHECK(s->len == 10 && memcmp(s->p, "tko_secret", 11) == 0);
    size_t big = 2u << 20;
    char *buf = calloc(1, big);
    buf[0] = 'x';
    struct tk_secret *b = tk_secret_new(buf, big); /* more than the whole secure heap */
    CHECK(!CRYPTO_secure_allocated(b->p));
    CHECK(b->len == big && b->p[0] == 'x' && b->p[big] == 0);
    tk_secret_free(b);
    tk_secret_free(s);
    free(buf);
    CHECK(tk_secret_heap_init(1 << 20, &e) == TK_OK); /* twice is fine */
}
