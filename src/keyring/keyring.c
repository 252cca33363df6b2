/*
 * keyring.c: see keyring.h.
 *
 * Key material (master, HMAC key, data keys, shares given so far) lives in
 * one region of its own pages, locked into RAM where the OS allows and
 * excluded from core dumps, and is wiped on seal and free. A read-write
 * lock guards it: hashing, sealing and opening take it shared; unseal,
 * seal, rotate and reload take it exclusive, briefly, to swap in keys read
 * and opened outside it: no store round trip ever happens under it.
 *
 * In the store, each key is sealed under the master key with key version 0
 * and additional data naming the key ("keyring", kind, version), and a check
 * value lets a reconstructed master key prove itself before it is used.
 */
#include "keyring.h"
#include "keyring_internal.h"

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VERSIONS 256
#define CHECK_TEXT "tokend keyring v1"

struct keymem {
    unsigned char master[32];
    unsigned char hmac[32];
    struct {
        int64_t version;
        unsigned char key[32];
    } data[MAX_VERSIONS];
    int ndata;
    unsigned char share_x[TK_SHARES_MAX];
    unsigned char share_y[TK_SHARES_MAX][32];
    int nshares;
};

struct tk_keyring {
    pthread_rwlock_t lock;
    char data_dir[512];
    bool initialized, sealed, auto_unseal;
    bool corrupt;          /* the store's keyring row is out of range */
    int t, n;
    uint64_t epoch;        /* +1 at every seal and unseal: a reload from before is stale */
    char nonce[TK_UNSEAL_NONCE]; /* the unseal attempt's, "" when none */
    int64_t active;        /* active data key version */
    char hmac_id[17];
    EVP_MAC_CTX *hash_mac; /* keyed at unseal; each hash works on a copy */
    struct keymem *km;
    size_t km_size;
    _Atomic int64_t rewrap_lease_ms;
};

/* ---- secrets and sealed values ---- */

/* Plaintext goes to OpenSSL's secure heap when tk_secret_heap_init made
 * one (locked pages, guard pages, left out of core dumps), else to the
 * ordinary heap; either way it is wiped when freed. */
tk_rc tk_secret_heap_init(size_t size, struct tk_err *e)
{
    int r = CRYPTO_secure_malloc_initialized() ? 1 : CRYPTO_secure_malloc_init(size, 16);
    if (r == 0)
        return tk_err_set(e, TK_EINTERNAL, "secure_heap",
                          "cannot create a secure heap of %zu bytes for secrets", size);
    if (r == 2) tk_warn("keyring: the secure heap for secrets could not be locked into RAM");
    return TK_OK;
}

struct tk_secret *tk_secret_new(const void *p, size_t len)
{
    struct tk_secret *s = tk_calloc(1, sizeof *s);
    s->p = CRYPTO_secure_malloc_initialized() ? OPENSSL_secure_malloc(len + 1) : NULL;
    if (!s->p) s->p = tk_malloc(len + 1); /* no secure heap, or it is full */
    memcpy(s->p, p, len);
    s->p[len] = 0;
    s->len = len;
    return s;
}

void tk_secret_free(struct tk_secret *s)
{
    if (!s) return;
    if (CRYPTO_secure_allocated(s->p)) {
        OPENSSL_secure_clear_free(s->p, s->len + 1);
    } else {
        tk_wipe(s->p, s->len + 1);
        free(s->p);
    }
    free(s);
}

struct tk_sealed *tk_sealed_from_text(const char *text)
{
    struct tk_sealed *s = tk_calloc(1, sizeof *s);
    s->text = tk_strdup(text ? text : "");
    return s;
}

void tk_sealed_free(struct tk_sealed *s)
{
    if (!s) return;
    free(s->text);
    free(s);
}

/* ---- key memory ---- */

/* A region of its own pages for keys: locked into RAM where the OS allows,
 * left out of core dumps, wiped when freed. */
static struct keymem *km_alloc(size_t *size)
{
    long page = sysconf(_SC_PAGESIZE);
    *size = (sizeof(struct keymem) + (size_t)page - 1) / (size_t)page * (size_t)page;
    void *m = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    static atomic_bool warned;
    if (mlock(m, *size) != 0 && !atomic_exchange(&warned, true))
        tk_warn("keyring: cannot lock key memory (%s); keys may reach swap", strerror(errno));
    madvise(m, *size, MADV_DONTDUMP);
    return m;
}

static void km_free(struct keymem *m, size_t size)
{
    if (!m) return;
    tk_wipe(m, size);
    munlock(m, size);
    munmap(m, size);
}

/* ---- lifecycle ---- */

tk_rc tk_keyring_new(const char *data_dir, struct tk_keyring **out, struct tk_err *e)
{
    struct tk_keyring *k = tk_calloc(1, sizeof *k);
    pthread_rwlock_init(&k->lock, NULL);
    snprintf(k->data_dir, sizeof k->data_dir, "%s", data_dir);
    k->sealed = true;
    k->rewrap_lease_ms = 15000;
    k->km = km_alloc(&k->km_size);
    if (!k->km) {
        pthread_rwlock_destroy(&k->lock);
        free(k);
        return tk_err_set(e, TK_EINTERNAL, "keyring_memory", "cannot map memory for keys: %s",
                          strerror(errno));
    }
    *out = k;
    return TK_OK;
}

static void forget_keys(struct tk_keyring *k)
{
    tk_wipe(k->km, sizeof *k->km);
    EVP_MAC_CTX_free(k->hash_mac);
    k->hash_mac = NULL;
    k->sealed = true;
    k->active = 0;
}

void tk_keyring_free(struct tk_keyring *k)
{
    if (!k) return;
    forget_keys(k);
    km_free(k->km, k->km_size);
    pthread_rwlock_destroy(&k->lock);
    free(k);
}

static void key_id(const unsigned char key[32], char out[17])
{
    unsigned char d[32];
    SHA256(key, 32, d);
    tk_hex(d, 8, out);
}

/* ---- raw sealing: "ENC:v1:<version>:<b64url(nonce|ct|tag)>" ---- */

#define SEALED_MAX_PLAIN (1 << 20)

static char *seal_raw(const unsigned char key[32], int64_t version, const void *ad, size_t adlen,
                      const void *pt, size_t len)
{
    size_t blen = TK_AEAD_NONCE + len + TK_AEAD_TAG;
    unsigned char *buf = tk_malloc(blen);
    tk_random(buf, TK_AEAD_NONCE);
    if (tk_aead_seal(key, buf, ad, adlen, pt, len, buf + TK_AEAD_NONCE) != TK_OK)
        tk_fatal("AES-256-GCM failed");
    char head[40];
    int hl = snprintf(head, sizeof head, "ENC:v1:%lld:", (long long)version);
    char *out = tk_malloc((size_t)hl + blen / 3 * 4 + 8);
    memcpy(out, head, (size_t)hl);
    tk_b64url_enc(buf, blen, out + hl);
    free(buf);
    return out;
}

/* Parse the header; *body points at the base64url part. */
static bool parse_sealed(const char *text, int64_t *version, const char **body)
{
    if (strncmp(text, "ENC:v1:", 7) != 0) return false;
    const char *v = text + 7;
    const char *colon = strchr(v, ':');
    if (!colon || colon == v || colon - v > 18) return false;
    char num[20];
    memcpy(num, v, (size_t)(colon - v));
    num[colon - v] = '\0';
    if (tk_parse_int(num, 0, INT64_MAX, version) != TK_OK) return false;
    *body = colon + 1;
    return true;
}

/* Open body under key into a new secret; false if it does not open. */
static bool open_raw(const unsigned char key[32], const char *body, const void *ad, size_t adlen,
                     struct tk_secret **out)
{
    size_t n = strlen(body);
    if (n > (size_t)SEALED_MAX_PLAIN * 2) return false;
    size_t cap = n / 4 * 3 + 3;
    unsigned char *buf = tk_malloc(cap);
    size_t blen;
    bool ok = tk_b64url_dec(body, n, buf, cap, &blen) == TK_OK &&
              blen >= TK_AEAD_NONCE + TK_AEAD_TAG;
    if (ok) {
        size_t plen = blen - TK_AEAD_NONCE - TK_AEAD_TAG;
        unsigned char *pt = tk_malloc(plen + 1);
        ok = tk_aead_open(key, buf, ad, adlen, buf + TK_AEAD_NONCE, blen - TK_AEAD_NONCE, pt) ==
             TK_OK;
        if (ok) *out = tk_secret_new(pt, plen);
        tk_wipe(pt, plen + 1);
        free(pt);
    }
    free(buf);
    return ok;
}

/* Additional data: the place, NUL-separated, after a domain label. */
static size_t place_ad(const char *a, const char *b, const char *c, const char *d, char *out,
                       size_t cap)
{
    int n = snprintf(out, cap, "tokend/v1%c%s%c%s%c%s%c%s", 0, a ? a : "", 0, b ? b : "", 0,
                     c ? c : "", 0, d ? d : "");
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Staging memory for keys read and opened outside the lock. */
static struct keymem *stage_new(size_t *size, struct tk_err *e)
{
    struct keymem *m = km_alloc(size);
    if (!m)
        tk_err_set(e, TK_EINTERNAL, "keyring_memory", "cannot map memory for keys: %s",
                   strerror(errno));
    return m;
}

/* ---- reading the store: every value is checked ---- */

static tk_rc corrupt(struct tk_err *e, const char *what)
{
    return tk_err_set(e, TK_EINTERNAL, "keyring_corrupt",
                      "the keyring in the store is damaged or was altered: %s; the node stays "
                      "sealed (restore the keyring tables from a backup)",
                      what);
}

/* Cell (row, col) as an integer in [min, max]; false when NULL, not a
 * decimal integer, or out of range. */
static bool cell_int(const struct tk_rows *r, int row, int col, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *s = tk_rows_text(r, row, col);
    return s && tk_parse_int(s, min, max, out) == TK_OK;
}

struct head {
    int n, t;
    bool auto_unseal;
    int64_t data_version;
};

#define HEAD_SQL "SELECT shares, threshold, auto_wrapped, data_version FROM keyring WHERE id = 1"

/* The keyring row of HEAD_SQL: 1 <= threshold <= shares <= TK_SHARES_MAX,
 * 1 <= data_version <= MAX_VERSIONS. */
static tk_rc parse_head(const struct tk_rows *r, struct head *h, struct tk_err *e)
{
    int64_t n, t, v;
    if (!cell_int(r, 0, 0, 1, TK_SHARES_MAX, &n))
        return corrupt(e, "keyring.shares is not a number from 1 to 16");
    if (!cell_int(r, 0, 1, 1, n, &t))
        return corrupt(e, "keyring.threshold is not a number from 1 to keyring.shares");
    if (!cell_int(r, 0, 3, 1, MAX_VERSIONS, &v))
        return corrupt(e, "keyring.data_version is not a number from 1 to 256");
    h->n = (int)n;
    h->t = (int)t;
    h->auto_unseal = !tk_rows_null(r, 0, 2);
    h->data_version = v;
    return TK_OK;
}

/* Read the keyring row: *exists false when the keyring is not initialized. */
static tk_rc read_head(struct tk_db *db, struct head *h, bool *exists, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db, HEAD_SQL, NULL, 0, &r, e);
    *exists = rc == TK_OK && tk_rows_count(r) == 1;
    if (*exists) rc = parse_head(r, h, e);
    tk_rows_free(r);
    return rc;
}

static void end_attempt(struct tk_keyring *k)
{
    tk_wipe(k->km->share_y, sizeof k->km->share_y);
    memset(k->km->share_x, 0, sizeof k->km->share_x);
    k->km->nshares = 0;
    tk_wipe(k->nonce, sizeof k->nonce);
}

/* Under the write lock: what the keyring row says. */
static void take_head(struct tk_keyring *k, bool exists, const struct head *h, tk_rc rc,
                      const struct tk_err *e)
{
    if (rc == TK_OK) {
        k->initialized = exists;
        k->corrupt = false;
        if (exists && k->sealed && (k->n != h->n || k->t != h->t))
            end_attempt(k); /* shares counted against another K of N */
        if (exists) {
            k->n = h->n;
            k->t = h->t;
            k->auto_unseal = h->auto_unseal;
        }
    } else if (e && !strcmp(e->code, "keyring_corrupt")) {
        k->initialized = true;
        k->corrupt = true;
        if (k->sealed) { /* never count shares against a row that lies */
            k->n = k->t = 0;
            end_attempt(k);
        }
    }
}

/* read_head for load and sync: the error in *le (and *e, when given);
 * *corrupt when the row lies (keyring_corrupt), which the keyring takes in
 * (take_head) as it takes a good row; any other failure is only returned. */
static tk_rc read_head_to_take(struct tk_db *db, struct head *h, bool *exists, bool *corrupt,
                               struct tk_err *le, struct tk_err *e)
{
    tk_err_clear(le);
    tk_rc rc = read_head(db, h, exists, le);
    if (e && rc != TK_OK) *e = *le;
    *corrupt = rc != TK_OK && !strcmp(le->code, "keyring_corrupt");
    return rc;
}

tk_rc tk_keyring_load(struct tk_keyring *k, struct tk_db *db, struct tk_err *e)
{
    struct head h;
    bool exists, bad;
    struct tk_err le;
    tk_rc rc = read_head_to_take(db, &h, &exists, &bad, &le, e);
    if (rc != TK_OK && !bad) return rc;
    pthread_rwlock_wrlock(&k->lock);
    take_head(k, exists, &h, rc, &le);
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

void tk_keyring_status(struct tk_keyring *k, struct tk_seal_status *st)
{
    memset(st, 0, sizeof *st);
    pthread_rwlock_rdlock(&k->lock);
    st->initialized = k->initialized;
    st->sealed = k->sealed;
    st->corrupt = k->corrupt;
    st->threshold = k->t;
    st->shares = k->n;
    int n = k->km->nshares;
    if (n < 0 || n > TK_SHARES_MAX) n = 0;
    st->progress = n;
    memcpy(st->held, k->km->share_x, (size_t)n);
    st->auto_unseal = k->auto_unseal;
    st->data_version = k->sealed ? 0 : k->active;
    pthread_rwlock_unlock(&k->lock);
    for (int i = 1; i < n; i++) /* ascending */
        for (int j = i; j > 0 && st->held[j - 1] > st->held[j]; j--) {
            unsigned char x = st->held[j];
            st->held[j] = st->held[j - 1];
            st->held[j - 1] = x;
        }
}

bool tk_keyring_sealed(struct tk_keyring *k)
{
    pthread_rwlock_rdlock(&k->lock);
    bool s = k->sealed;
    pthread_rwlock_unlock(&k->lock);
    return s;
}

/* An HMAC-SHA256 context keyed with key (built outside the lock). */
static tk_rc make_mac(const unsigned char key[32], EVP_MAC_CTX **out, struct tk_err *e)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    if (!c || !EVP_MAC_init(c, key, 32, params)) {
        EVP_MAC_CTX_free(c);
        return tk_err_set(e, TK_EINTERNAL, "crypto_unavailable",
                          "OpenSSL has no HMAC-SHA256 (provider misconfigured?)");
    }
    *out = c;
    return TK_OK;
}

/* With stage->master set, outside the keyring's lock: prove the master key
 * against the check value, then open every key into stage. *store_failed
 * tells a store that did not answer from a keyring that does not open. */
static tk_rc load_keys(struct tk_db *db, struct keymem *stage, int64_t *active,
                       bool *store_failed, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    struct tk_secret *s = NULL;
    char ad[128];
    size_t adl;
    const char *body;
    int64_t ver;
    *store_failed = false;
    tk_rc rc = tk_db_exec(db, "SELECT check_value, data_version FROM keyring WHERE id = 1", NULL,
                          0, &r, e);
    *store_failed = rc != TK_OK;
    if (rc != TK_OK) goto out;
    if (tk_rows_count(r) != 1) {
        rc = tk_err_set(e, TK_ECONFLICT, "uninitialized", "the keyring is not initialized");
        goto out;
    }
    if (tk_rows_null(r, 0, 0) || !parse_sealed(tk_rows_text(r, 0, 0), &ver, &body)) {
        rc = corrupt(e, "keyring.check_value is not a sealed value");
        goto out;
    }
    if (!cell_int(r, 0, 1, 1, MAX_VERSIONS, active)) {
        rc = corrupt(e, "keyring.data_version is not a number from 1 to 256");
        goto out;
    }
    adl = place_ad("keyring", "check", "", "", ad, sizeof ad);
    if (!open_raw(stage->master, body, ad, adl, &s) || s->len != strlen(CHECK_TEXT) ||
        memcmp(s->p, CHECK_TEXT, s->len) != 0) {
        rc = tk_err_set(e, TK_EINVAL, "wrong_master_key",
                        "the key does not open this keyring: a share or the key file belongs to "
                        "another installation, or was altered");
        goto out;
    }
    tk_secret_free(s);
    s = NULL;
    tk_rows_free(r);
    r = NULL;
    rc = tk_db_exec(db,
                    "SELECT kind, version, sealed FROM keyring_keys ORDER BY kind, version "
                    "LIMIT 300",
                    NULL, 0, &r, e);
    *store_failed = rc != TK_OK;
    if (rc != TK_OK) goto out;
    stage->ndata = 0;
    int nhmac = 0;
    bool have_active = false;
    for (int i = 0; i < tk_rows_count(r); i++) {
        const char *kind = tk_rows_text(r, i, 0);
        int64_t v;
        if (!kind || (strcmp(kind, "hmac") != 0 && strcmp(kind, "data") != 0)) {
            rc = corrupt(e, "a keyring_keys row has a kind other than hmac or data");
            goto out;
        }
        if (!cell_int(r, i, 1, 1, MAX_VERSIONS, &v)) {
            rc = corrupt(e, "a keyring_keys row has a version outside 1 to 256");
            goto out;
        }
        if (tk_rows_null(r, i, 2) || !parse_sealed(tk_rows_text(r, i, 2), &ver, &body) ||
            ver != 0) {
            rc = corrupt(e, "a keyring_keys row holds no sealed key");
            goto out;
        }
        char vs[24];
        snprintf(vs, sizeof vs, "%lld", (long long)v);
        adl = place_ad("keyring", kind, vs, "", ad, sizeof ad);
        if (!open_raw(stage->master, body, ad, adl, &s) || s->len != 32) {
            rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                            "keyring key %s version %lld does not open under the master key: "
                            "the keyring_keys row was altered",
                            kind, (long long)v);
            goto out;
        }
        if (!strcmp(kind, "hmac")) {
            if (++nhmac > 1) {
                rc = corrupt(e, "keyring_keys has more than one HMAC key");
                goto out;
            }
            memcpy(stage->hmac, s->p, 32);
        } else {
            if (stage->ndata >= MAX_VERSIONS) {
                rc = corrupt(e, "keyring_keys has more data keys than a keyring holds");
                goto out;
            }
            for (int j = 0; j < stage->ndata; j++)
                if (stage->data[j].version == v) {
                    rc = corrupt(e, "keyring_keys has a data key version twice");
                    goto out;
                }
            stage->data[stage->ndata].version = v;
            memcpy(stage->data[stage->ndata].key, s->p, 32);
            stage->ndata++;
            have_active |= v == *active;
        }
        tk_secret_free(s);
        s = NULL;
    }
    if (nhmac == 0 || stage->ndata == 0 || !have_active)
        rc = tk_err_set(e, TK_EINTERNAL, "keyring_incomplete",
                        "the keyring in the store has no %s key", nhmac == 0 ? "HMAC"
                        : stage->ndata == 0                    ? "data"
                                                               : "active data");
out:
    tk_secret_free(s);
    tk_rows_free(r);
    return rc;
}

/* Under the write lock: take the keys of stage and mac (which the keyring
 * owns from now on); the old MAC context is returned to free after the
 * lock is released. */
static EVP_MAC_CTX *take_keys(struct tk_keyring *k, const struct keymem *stage, int64_t active,
                              EVP_MAC_CTX *mac)
{
    memcpy(k->km->master, stage->master, sizeof k->km->master);
    memcpy(k->km->hmac, stage->hmac, sizeof k->km->hmac);
    memcpy(k->km->data, stage->data, sizeof k->km->data);
    k->km->ndata = stage->ndata;
    EVP_MAC_CTX *old = k->hash_mac;
    k->hash_mac = mac;
    key_id(k->km->hmac, k->hmac_id);
    k->active = active;
    if (k->sealed) k->epoch++;
    k->sealed = false;
    k->initialized = true;
    return old;
}

/* Open the keyring with the master key in stage (outside the lock), run
 * the hook's change, then unseal under a short write lock. */
static tk_rc open_and_unseal(struct tk_keyring *k, struct tk_db *db, struct keymem *stage,
                             const struct tk_keyring_hook *hook, const char *how,
                             struct tk_err *e)
{
    int64_t active = 0;
    bool store_failed;
    EVP_MAC_CTX *mac = NULL;
    tk_rc rc = load_keys(db, stage, &active, &store_failed, e);
    if (rc == TK_OK) rc = make_mac(stage->hmac, &mac, e);
    if (rc == TK_OK && hook && hook->change) {
        pthread_rwlock_rdlock(&k->lock);
        struct tk_keyring_change c = {.action = "unseal", .how = how, .shares = k->n,
                                      .threshold = k->t, .auto_unseal = k->auto_unseal,
                                      .data_version = active};
        pthread_rwlock_unlock(&k->lock);
        rc = hook->change(hook->arg, db, &c, e);
    }
    if (rc != TK_OK) {
        EVP_MAC_CTX_free(mac);
        return rc;
    }
    pthread_rwlock_wrlock(&k->lock);
    EVP_MAC_CTX *old = k->sealed ? take_keys(k, stage, active, mac) : mac;
    pthread_rwlock_unlock(&k->lock);
    EVP_MAC_CTX_free(old);
    return TK_OK;
}

/* Reload the keys with the master key in memory (another node rotated),
 * outside the lock. A store that does not answer keeps the keys held; a
 * keyring that no longer opens seals the node. */
static tk_rc reload(struct tk_keyring *k, struct tk_db *db, struct tk_err *e)
{
    size_t size;
    struct keymem *stage = stage_new(&size, e);
    if (!stage) return TK_EINTERNAL;
    pthread_rwlock_rdlock(&k->lock);
    bool sealed = k->sealed;
    uint64_t epoch = k->epoch;
    if (!sealed) memcpy(stage->master, k->km->master, sizeof stage->master);
    pthread_rwlock_unlock(&k->lock);
    tk_rc rc = TK_OK;
    if (sealed) goto out;
    int64_t active = 0;
    bool store_failed;
    EVP_MAC_CTX *mac = NULL;
    rc = load_keys(db, stage, &active, &store_failed, e);
    if (rc == TK_OK) rc = make_mac(stage->hmac, &mac, e);
    EVP_MAC_CTX *old = mac;
    pthread_rwlock_wrlock(&k->lock);
    if (!k->sealed && k->epoch == epoch) { /* not sealed (and unsealed again) meanwhile */
        if (rc == TK_OK) {
            old = take_keys(k, stage, active, mac);
        } else if (!store_failed) {
            forget_keys(k);
            k->epoch++;
        }
    }
    pthread_rwlock_unlock(&k->lock);
    EVP_MAC_CTX_free(old);
    if (rc != TK_OK)
        tk_error("keyring: reloading keys failed%s: %s",
                 store_failed ? " (store error; the loaded keys are kept)" : ", sealed", e->msg);
out:
    km_free(stage, size);
    return rc;
}

/* ---- key files ---- */

/* Read a 32-byte key file. With strict (the auto-unseal key), the file must
 * be owned by this process's user and not readable or writable by group or
 * others. Never follows a symlink. */
static tk_rc read_file32(const char *path, bool strict, unsigned char out[32], struct tk_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0 && errno == ENOENT) return TK_ENOTFOUND;
    if (fd < 0)
        return tk_err_set(e, TK_EINTERNAL, "key_file_unreadable",
                          "cannot read %s: %s%s", path, strerror(errno),
                          errno == ELOOP ? " (it is a symbolic link, which tokend does not follow)"
                                         : "");
    struct stat sb;
    tk_rc rc = TK_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        rc = tk_err_set(e, TK_EINVAL, "key_file_corrupt", "%s is not a regular file", path);
    else if (strict && sb.st_uid != geteuid())
        rc = tk_err_set(e, TK_EINVAL, "key_file_insecure",
                        "%s is owned by uid %u, not by the user tokend runs as (uid %u); refusing "
                        "to use it: chown it, and if another user could have written it, treat "
                        "the keyring as exposed",
                        path, (unsigned)sb.st_uid, (unsigned)geteuid());
    else if (strict && (sb.st_mode & 077) != 0)
        rc = tk_err_set(e, TK_EINVAL, "key_file_insecure",
                        "%s has mode %04o: group or others may read it, and whoever reads it "
                        "unseals the keyring; refusing to use it: run chmod 600 %s (and if "
                        "others could read it, treat the keyring as exposed)",
                        path, (unsigned)(sb.st_mode & 07777), path);
    ssize_t n = 0;
    if (rc == TK_OK) {
        n = read(fd, out, 32);
        unsigned char extra;
        ssize_t more = read(fd, &extra, 1);
        if (n != 32 || more != 0) {
            tk_wipe(out, 32);
            rc = tk_err_set(e, TK_EINVAL, "key_file_corrupt",
                            "%s must hold exactly 32 bytes; it was damaged or replaced", path);
        }
    }
    close(fd);
    return rc;
}

static tk_rc write_new_file32(const char *path, const unsigned char key[32], struct tk_err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return tk_err_set(e, errno == EEXIST ? TK_ECONFLICT : TK_EINTERNAL, "key_file_unwritable",
                          "cannot create the auto-unseal key file %s: %s", path,
                          errno == EEXIST ? "it exists already (from another keyring?)"
                                          : strerror(errno));
    struct stat sb;
    bool ok = fchmod(fd, 0600) == 0 && fstat(fd, &sb) == 0 && (sb.st_mode & 077) == 0 &&
              write(fd, key, 32) == 32 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        return tk_err_set(e, TK_EINTERNAL, "key_file_unwritable", "cannot write %s with mode 0600",
                          path);
    }
    return TK_OK;
}

static tk_rc insert_key(struct tk_db *db, const unsigned char master[32], const char *kind,
                        int64_t version, const unsigned char key[32], struct tk_err *e)
{
    char vs[24], ad[128], id[17];
    snprintf(vs, sizeof vs, "%lld", (long long)version);
    size_t adl = place_ad("keyring", kind, vs, "", ad, sizeof ad);
    char *sealed = seal_raw(master, 0, ad, adl, key, 32);
    key_id(key, id);
    tk_rc rc = tk_db_exec(db,
                          "INSERT INTO keyring_keys (kind, version, sealed, key_id, created_at) "
                          "VALUES (?, ?, ?, ?, ?)",
                          TK_ARGS(TK_TEXT(kind), TK_INT(version), TK_TEXT(sealed), TK_TEXT(id),
                                  TK_INT(tk_now_ms())),
                          NULL, e);
    free(sealed);
    return rc;
}

/* ---- init ---- */

tk_rc tk_keyring_init(struct tk_keyring *k, struct tk_db *db, int n, int t,
                      const char *auto_key_path, char (*shares)[TK_SHARE_MAX],
                      const struct tk_keyring_hook *hook, struct tk_err *e)
{
    if (n < 1 || n > TK_SHARES_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "shares",
                            "shares must be from 1 to %d", TK_SHARES_MAX);
    if (t < 1 || t > n)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "threshold",
                            "threshold must be from 1 to shares (%d)", n);
    pthread_rwlock_rdlock(&k->lock);
    bool initialized = k->initialized;
    pthread_rwlock_unlock(&k->lock);
    if (initialized) /* refused without touching this node's keys or unseal progress:
                      * POST /v1/sys/init needs no token, and must not seal a node */
        return tk_err_set(e, TK_ECONFLICT, "already_initialized",
                          "the keyring is initialized already; init runs once per installation");
    char legacy[600];
    snprintf(legacy, sizeof legacy, "%s/hash.key", k->data_dir);
    size_t size;
    struct keymem *km = stage_new(&size, e);
    if (!km) return TK_EINTERNAL;
    bool imported = false, wrote_auto = false;
    char *check = NULL, *wrapped = NULL;
    unsigned char filekey[32];
    char auto_id[17] = "";
    EVP_MAC_CTX *mac = NULL;
    tk_random(km->master, 32);
    tk_rc rc = read_file32(legacy, false, km->hmac, e);
    if (rc == TK_OK) {
        imported = true;
    } else if (rc == TK_ENOTFOUND) {
        tk_random(km->hmac, 32);
        rc = TK_OK;
    } else {
        goto out;
    }
    km->ndata = 1;
    km->data[0].version = 1;
    tk_random(km->data[0].key, 32);
    char ad[128];
    size_t adl = place_ad("keyring", "check", "", "", ad, sizeof ad);
    check = seal_raw(km->master, 0, ad, adl, CHECK_TEXT, strlen(CHECK_TEXT));
    if (auto_key_path) {
        tk_random(filekey, 32);
        rc = write_new_file32(auto_key_path, filekey, e);
        if (rc != TK_OK) goto out;
        wrote_auto = true;
        adl = place_ad("keyring", "auto", "", "", ad, sizeof ad);
        wrapped = seal_raw(filekey, 0, ad, adl, km->master, 32);
        key_id(filekey, auto_id);
    }
    rc = tk_shamir_split(km->master, n, t, shares, e);
    if (rc == TK_OK) rc = make_mac(km->hmac, &mac, e);
    if (rc == TK_OK) rc = tk_db_begin(db, e);
    if (rc == TK_OK) {
        rc = tk_db_exec(db,
                        "INSERT INTO keyring (id, created_at, shares, threshold, check_value, "
                        "auto_wrapped, auto_key_id, data_version) VALUES (1, ?, ?, ?, ?, ?, ?, 1)",
                        TK_ARGS(TK_INT(tk_now_ms()), TK_INT(n), TK_INT(t), TK_TEXT(check),
                                TK_TEXT(wrapped), TK_TEXT(wrapped ? auto_id : NULL)),
                        NULL, e);
        if (rc == TK_ECONFLICT)
            tk_err_set(e, TK_ECONFLICT, "already_initialized",
                       "the keyring is initialized already (by another node?)");
        if (rc == TK_OK) rc = insert_key(db, km->master, "hmac", 1, km->hmac, e);
        if (rc == TK_OK) rc = insert_key(db, km->master, "data", 1, km->data[0].key, e);
        if (rc == TK_OK && hook && hook->change) {
            struct tk_keyring_change c = {.action = "init", .shares = n, .threshold = t,
                                          .auto_unseal = auto_key_path != NULL,
                                          .data_version = 1, .in_tx = true};
            rc = hook->change(hook->arg, db, &c, e);
        }
        if (rc == TK_OK)
            rc = tk_db_commit(db, e);
        else
            tk_db_rollback(db);
    }
    if (rc == TK_OK) {
        pthread_rwlock_wrlock(&k->lock);
        EVP_MAC_CTX *old = take_keys(k, km, 1, mac);
        mac = old;
        k->n = n;
        k->t = t;
        k->corrupt = false;
        k->auto_unseal = auto_key_path != NULL;
        tk_wipe(k->km->share_y, sizeof k->km->share_y);
        k->km->nshares = 0;
        k->nonce[0] = '\0';
        pthread_rwlock_unlock(&k->lock);
        if (imported && unlink(legacy) == 0)
            tk_info("keyring: imported %s as the HMAC key of issued secrets and removed it",
                    legacy);
    }
out:
    EVP_MAC_CTX_free(mac);
    tk_wipe(filekey, sizeof filekey);
    if (rc != TK_OK) {
        if (wrote_auto) unlink(auto_key_path);
        for (int i = 0; i < n; i++) tk_wipe(shares[i], TK_SHARE_MAX);
    }
    free(check);
    free(wrapped);
    km_free(km, size);
    return rc;
}

/* ---- unseal and seal ---- */

static bool nonce_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && la == TK_UNSEAL_NONCE - 1 && CRYPTO_memcmp(a, b, la) == 0;
}

tk_rc tk_keyring_unseal_share(struct tk_keyring *k, struct tk_db *db, const char *share,
                              const char *nonce, char nonce_out[TK_UNSEAL_NONCE],
                              const struct tk_keyring_hook *hook, struct tk_seal_status *st,
                              struct tk_err *e)
{
    unsigned char x, y[32];
    struct tk_err se;
    size_t size = 0;
    struct keymem *stage = NULL;
    bool complete = false;
    int t = 0;
    if (nonce_out) nonce_out[0] = '\0';
    if (nonce && !*nonce) nonce = NULL;
    /* initialized through another node? a row that lies? */
    if (tk_keyring_sync(k, db, &se) != TK_OK && !strcmp(se.code, "keyring_corrupt")) {
        if (e) *e = se;
        if (st) tk_keyring_status(k, st);
        return se.rc;
    }
    tk_rc rc = tk_shamir_parse(share, &x, y, e);
    pthread_rwlock_wrlock(&k->lock);
    struct keymem *km = k->km;
    if (!k->initialized) {
        rc = tk_err_set(e, TK_ECONFLICT, "uninitialized",
                        "the keyring is not initialized: run tokend operator init first");
        goto out;
    }
    if (k->corrupt || k->n < 1 || k->n > TK_SHARES_MAX || k->t < 1 || k->t > k->n ||
        km->nshares < 0 || km->nshares >= k->t) {
        rc = corrupt(e, "keyring.shares or keyring.threshold is out of range");
        goto out;
    }
    if (!k->sealed) {
        rc = TK_OK; /* nothing to do */
        goto out;
    }
    if (km->nshares > 0 && (!nonce || !nonce_eq(nonce, k->nonce))) {
        rc = tk_err_set(e, TK_ECONFLICT, "unseal_nonce_mismatch",
                        "an unseal attempt is in progress on this node (%d of %d shares): give "
                        "its nonce with the share (tokend operator unseal keeps it, or --nonce), "
                        "or end the attempt with tokend operator unseal --reset",
                        km->nshares, k->t);
        goto out;
    }
    if (km->nshares == 0 && nonce) {
        rc = tk_err_set(e, TK_ECONFLICT, "unseal_nonce_mismatch",
                        "no unseal attempt is in progress on this node (it was completed or "
                        "reset): start a new one by giving a share without a nonce");
        goto out;
    }
    if (rc != TK_OK) goto out; /* a malformed share */
    if (x < 1 || x > k->n) {
        rc = tk_err_set(e, TK_EINVAL, "unknown_share",
                        "share %d does not exist: this keyring has %d shares", x, k->n);
        goto out;
    }
    for (int i = 0; i < km->nshares; i++)
        if (km->share_x[i] == x) {
            rc = tk_err_set(e, TK_EINVAL, "duplicate_share",
                            "share %d was given already; %d more different share(s) needed", x,
                            k->t - km->nshares);
            goto out;
        }
    if (km->nshares == 0) { /* a new attempt */
        unsigned char raw[16];
        tk_random(raw, sizeof raw);
        tk_hex(raw, sizeof raw, k->nonce);
        tk_wipe(raw, sizeof raw);
        if (nonce_out) memcpy(nonce_out, k->nonce, TK_UNSEAL_NONCE);
    }
    km->share_x[km->nshares] = x;
    memcpy(km->share_y[km->nshares], y, 32);
    km->nshares++;
    if (km->nshares >= k->t) { /* combine outside the lock */
        stage = stage_new(&size, e);
        if (!stage) {
            rc = TK_EINTERNAL;
            end_attempt(k);
            goto out;
        }
        t = km->nshares;
        memcpy(stage->share_x, km->share_x, sizeof stage->share_x);
        memcpy(stage->share_y, km->share_y, sizeof stage->share_y);
        end_attempt(k);
        complete = true;
    }
out:
    tk_wipe(y, sizeof y);
    pthread_rwlock_unlock(&k->lock);
    if (complete) {
        rc = tk_shamir_combine(stage->share_x, (const unsigned char(*)[32])stage->share_y, t,
                               stage->master, e);
        tk_wipe(stage->share_y, sizeof stage->share_y);
        if (rc == TK_OK) rc = open_and_unseal(k, db, stage, hook, "shares", e);
        if (rc == TK_EINVAL && e && !strcmp(e->code, "wrong_master_key"))
            tk_err_set(e, TK_EINVAL, "wrong_shares",
                       "these %d shares do not open this keyring: at least one belongs to "
                       "another installation; the attempt was ended, start again",
                       t);
    }
    km_free(stage, size);
    if (st) tk_keyring_status(k, st);
    return rc;
}

bool tk_keyring_unseal_reset(struct tk_keyring *k, const char *nonce, bool *nonce_ok)
{
    pthread_rwlock_wrlock(&k->lock);
    bool had = k->km->nshares > 0;
    if (nonce_ok) *nonce_ok = had && nonce && nonce_eq(nonce, k->nonce);
    end_attempt(k);
    pthread_rwlock_unlock(&k->lock);
    return had;
}

tk_rc tk_keyring_unseal_file(struct tk_keyring *k, struct tk_db *db, const char *path,
                             const struct tk_keyring_hook *hook, struct tk_err *e)
{
    unsigned char filekey[32];
    tk_rc rc = read_file32(path, true, filekey, e);
    if (rc == TK_ENOTFOUND)
        return tk_err_set(e, TK_ENOTFOUND, "key_file_missing",
                          "the auto-unseal key file %s does not exist", path);
    if (rc != TK_OK) return rc;
    struct tk_rows *r = NULL;
    struct tk_secret *m = NULL;
    size_t size = 0;
    struct keymem *stage = NULL;
    if (!tk_keyring_sealed(k)) goto out;
    rc = tk_db_exec(db, "SELECT auto_wrapped FROM keyring WHERE id = 1", NULL, 0, &r, e);
    if (rc != TK_OK) goto out;
    if (tk_rows_count(r) != 1 || tk_rows_null(r, 0, 0)) {
        rc = tk_err_set(e, TK_ECONFLICT, "no_auto_unseal",
                        "this keyring has no auto-unseal key; unseal it with shares");
        goto out;
    }
    char ad[128];
    size_t adl = place_ad("keyring", "auto", "", "", ad, sizeof ad);
    int64_t ver;
    const char *body;
    if (!parse_sealed(tk_rows_text(r, 0, 0), &ver, &body)) {
        rc = corrupt(e, "keyring.auto_wrapped is not a sealed value");
        goto out;
    }
    if (!open_raw(filekey, body, ad, adl, &m) || m->len != 32) {
        rc = tk_err_set(e, TK_EINVAL, "wrong_key_file",
                        "the auto-unseal key file %s does not open this keyring (another "
                        "installation's, or damaged)",
                        path);
        goto out;
    }
    stage = stage_new(&size, e);
    if (!stage) {
        rc = TK_EINTERNAL;
        goto out;
    }
    memcpy(stage->master, m->p, 32);
    rc = open_and_unseal(k, db, stage, hook, "key_file", e);
out:
    tk_wipe(filekey, sizeof filekey);
    tk_secret_free(m);
    tk_rows_free(r);
    km_free(stage, size);
    return rc;
}

void tk_keyring_seal(struct tk_keyring *k)
{
    pthread_rwlock_wrlock(&k->lock);
    forget_keys(k);
    k->nonce[0] = '\0';
    k->epoch++;
    pthread_rwlock_unlock(&k->lock);
}

/* ---- rotate ---- */

/* The master key stays in locked memory while unsealed (as Vault keeps its
 * keyring key), so that rotate can seal a new data key, and a node that
 * meets a version rotated on another node can reload the keyring. */
tk_rc tk_keyring_rotate(struct tk_keyring *k, struct tk_db *db, int64_t *version,
                        const struct tk_keyring_hook *hook, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    unsigned char key[32], master[32];
    tk_random(key, sizeof key);
    /* The database first, then the keyring, as everywhere; the keyring's
     * lock is only taken to copy the master key. */
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_db_lock_row(db, "keyring", "1", e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT MAX(version) FROM keyring_keys WHERE kind = 'data'", NULL, 0,
                        &r, e);
    int64_t v = 0;
    if (rc == TK_OK && !cell_int(r, 0, 0, 1, MAX_VERSIONS, &v))
        rc = corrupt(e, "the newest data key version is not a number from 1 to 256");
    v++;
    if (rc == TK_OK && v > MAX_VERSIONS)
        rc = tk_err_set(e, TK_ECONFLICT, "too_many_versions",
                        "the keyring has %d data key versions, the most it holds", MAX_VERSIONS);
    struct tk_keyring_change c = {.action = "rotate", .data_version = v, .in_tx = true};
    if (rc == TK_OK) {
        pthread_rwlock_rdlock(&k->lock);
        bool sealed = k->sealed;
        if (!sealed) memcpy(master, k->km->master, sizeof master);
        c.shares = k->n;
        c.threshold = k->t;
        c.auto_unseal = k->auto_unseal;
        pthread_rwlock_unlock(&k->lock);
        if (sealed) rc = tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    }
    if (rc == TK_OK) rc = insert_key(db, master, "data", v, key, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "UPDATE keyring SET data_version = ? WHERE id = 1",
                        TK_ARGS(TK_INT(v)), NULL, e);
    if (rc == TK_OK && hook && hook->change) rc = hook->change(hook->arg, db, &c, e);
    if (rc == TK_OK)
        rc = tk_db_commit(db, e);
    else
        tk_db_rollback(db);
    tk_wipe(master, sizeof master);
    tk_wipe(key, sizeof key);
    tk_rows_free(r);
    if (rc != TK_OK) return rc;
    *version = v;
    /* Load the new key (and any other node's); the rotation is committed
     * whatever this says, and a failed reload keeps the keys already held. */
    struct tk_err le;
    if (reload(k, db, &le) != TK_OK)
        tk_warn("keyring: rotated to version %lld, but reloading failed: %s", (long long)v,
                le.msg);
    return TK_OK;
}

tk_rc tk_keyring_sync(struct tk_keyring *k, struct tk_db *db, struct tk_err *e)
{
    struct head h;
    bool exists, bad;
    struct tk_err le;
    tk_rc rc = read_head_to_take(db, &h, &exists, &bad, &le, e);
    if (rc != TK_OK && !bad) return rc;
    /* the usual case, nothing to learn: no write lock against hashing */
    pthread_rwlock_rdlock(&k->lock);
    bool current = !bad && k->initialized == exists && !k->corrupt &&
                   (!exists || (k->n == h.n && k->t == h.t && k->auto_unseal == h.auto_unseal &&
                                (k->sealed || h.data_version == k->active)));
    bool behind = !bad && exists && !k->sealed && h.data_version != k->active;
    bool was_corrupt = k->corrupt;
    pthread_rwlock_unlock(&k->lock);
    if (current) return TK_OK;
    if (bad && !was_corrupt) tk_error("keyring: %s", le.msg); /* once, not every sync */
    pthread_rwlock_wrlock(&k->lock);
    if (bad || exists) take_head(k, exists, &h, rc, &le);
    pthread_rwlock_unlock(&k->lock);
    if (behind) {
        struct tk_err re;
        if (reload(k, db, &re) != TK_OK)
            tk_warn("keyring: cannot follow data key version %lld: %s", (long long)h.data_version,
                    re.msg);
    }
    return rc;
}

/* ---- hashing ---- */

tk_rc tk_keyring_hash(struct tk_keyring *k, const char *secret, size_t len,
                      char out[TK_HASH_HEX], char kid[17], struct tk_err *e)
{
    unsigned char mac[32];
    size_t ml = 0;
    pthread_rwlock_rdlock(&k->lock);
    if (k->sealed) {
        pthread_rwlock_unlock(&k->lock);
        return tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    }
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->hash_mac);
    if (kid) memcpy(kid, k->hmac_id, 17);
    pthread_rwlock_unlock(&k->lock);
    if (!c || !EVP_MAC_update(c, (const unsigned char *)secret, len) ||
        !EVP_MAC_final(c, mac, &ml, sizeof mac) || ml != sizeof mac)
        tk_fatal("HMAC-SHA256 failed");
    EVP_MAC_CTX_free(c);
    tk_hex(mac, 32, out);
    return TK_OK;
}

/* ---- sealed values ---- */

/* The data key of a version, or NULL; the caller holds the lock. */
static const unsigned char *data_key(const struct tk_keyring *k, int64_t version)
{
    for (int i = 0; i < k->km->ndata; i++)
        if (k->km->data[i].version == version) return k->km->data[i].key;
    return NULL;
}

tk_rc tk_keyring_seal_value(struct tk_keyring *k, const struct tk_secret *plain,
                            const struct tk_seal_ad *ad, struct tk_sealed **out,
                            struct tk_err *e)
{
    return tk_keyring_seal_version(k, NULL, plain, ad, 0, out, e);
}

static tk_rc open_value(struct tk_keyring *k, const struct tk_sealed *v,
                        const struct tk_seal_ad *ad, struct tk_secret **out,
                        struct tk_open_failure *f, struct tk_err *e)
{
    int64_t ver = -1;
    const char *body;
    char adb[512];
    tk_rc rc = TK_OK;
    *out = NULL;
    f->unknown_version = false;
    pthread_rwlock_rdlock(&k->lock);
    if (k->sealed) {
        pthread_rwlock_unlock(&k->lock);
        return tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    }
    if (!v || !v->text || !parse_sealed(v->text, &ver, &body)) {
        rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                        "%s.%s of row %s is not a sealed value (it does not start with "
                        "ENC:v1:<version>:): the store holds plaintext or damaged data",
                        ad->table, ad->column, ad->row_id);
    } else {
        const unsigned char *key = data_key(k, ver);
        size_t adl = place_ad(ad->tenant_id, ad->table, ad->column, ad->row_id, adb, sizeof adb);
        if (!key) {
            f->unknown_version = true;
            rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                            "%s.%s of row %s is sealed under key version %lld, which this "
                            "keyring does not have",
                            ad->table, ad->column, ad->row_id, (long long)ver);
        } else if (!open_raw(key, body, adb, adl, out)) {
            rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                            "%s.%s of row %s (key version %lld) does not open: it was copied "
                            "from another row, column or tenant, or altered",
                            ad->table, ad->column, ad->row_id, (long long)ver);
        }
    }
    pthread_rwlock_unlock(&k->lock);
    f->key_version = ver;
    snprintf(f->row, sizeof f->row, "%s.%s:%s", ad->table ? ad->table : "",
             ad->column ? ad->column : "", ad->row_id ? ad->row_id : "");
    return rc;
}

tk_rc tk_keyring_open_value(struct tk_keyring *k, struct tk_db *db, const struct tk_sealed *v,
                            const struct tk_seal_ad *ad, struct tk_secret **out,
                            struct tk_open_failure *f, struct tk_err *e)
{
    struct tk_open_failure local;
    if (!f) f = &local;
    tk_rc rc = open_value(k, v, ad, out, f, e);
    if (rc != TK_OK && f->unknown_version && db) {
        /* A version rotated on another node: reload once, then try again. */
        struct tk_err le;
        reload(k, db, &le);
        rc = open_value(k, v, ad, out, f, e);
    }
    return rc;
}

/* ---- for rewrap.c ---- */

void tk_keyring_set_rewrap_lease(struct tk_keyring *k, int64_t ms)
{
    k->rewrap_lease_ms = ms > 0 ? ms : 1;
}

int64_t tk_keyring_rewrap_lease(struct tk_keyring *k)
{
    return k->rewrap_lease_ms;
}

bool tk_sealed_version(const char *text, int64_t *version)
{
    const char *body;
    return text && parse_sealed(text, version, &body);
}

static tk_rc seal_with_version(struct tk_keyring *k, const struct tk_secret *plain,
                               const struct tk_seal_ad *ad, int64_t version, char **text,
                               struct tk_err *e)
{
    char adb[512];
    *text = NULL;
    pthread_rwlock_rdlock(&k->lock);
    if (k->sealed) {
        pthread_rwlock_unlock(&k->lock);
        return tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    }
    if (version == 0) version = k->active; /* 0: the active version, read under the lock */
    const unsigned char *key = data_key(k, version);
    if (key) {
        size_t adl = place_ad(ad->tenant_id, ad->table, ad->column, ad->row_id, adb, sizeof adb);
        *text = seal_raw(key, version, adb, adl, plain->p, plain->len);
    }
    pthread_rwlock_unlock(&k->lock);
    return key ? TK_OK : TK_ENOTFOUND;
}

tk_rc tk_keyring_seal_version(struct tk_keyring *k, struct tk_db *db, const struct tk_secret *plain,
                              const struct tk_seal_ad *ad, int64_t version, struct tk_sealed **out,
                              struct tk_err *e)
{
    if (plain->len > SEALED_MAX_PLAIN)
        return tk_err_set(e, TK_ETOOBIG, "secret_too_large",
                          "a secret may be at most %d bytes", SEALED_MAX_PLAIN);
    char *text;
    tk_rc rc = seal_with_version(k, plain, ad, version, &text, e);
    if (rc == TK_ENOTFOUND && db) {
        struct tk_err le;
        reload(k, db, &le); /* a version rotated on another node */
        rc = seal_with_version(k, plain, ad, version, &text, e);
    }
    if (rc == TK_ENOTFOUND && version == 0)
        return tk_err_set(e, TK_EINTERNAL, "keyring_incomplete",
                          "the active data key version is not loaded");
    if (rc == TK_ENOTFOUND)
        return tk_err_set(e, TK_EINTERNAL, "keyring_incomplete",
                          "data key version %lld is not in the keyring", (long long)version);
    if (rc != TK_OK) return rc;
    struct tk_sealed *s = tk_calloc(1, sizeof *s);
    s->text = text;
    *out = s;
    return TK_OK;
}
