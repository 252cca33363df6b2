/*
 * keyring.c: see keyring.h.
 *
 * Key material (master, HMAC key, data keys, shares given so far) lives in
 * one region of its own pages, locked into RAM where the OS allows and
 * excluded from core dumps, and is wiped on seal and free. A read-write
 * lock guards it: hashing, sealing and opening take it shared; unseal,
 * seal and rotate take it exclusive.
 *
 * In the store, each key is sealed under the master key with key version 0
 * and additional data naming the key ("keyring", kind, version), and a check
 * value lets a reconstructed master key prove itself before it is used.
 */
#include "keyring.h"
#include "keyring_internal.h"

#include "../common/log.h"
#include "../events/events.h"

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
    int t, n;
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

/* ---- lifecycle ---- */

tk_rc tk_keyring_new(const char *data_dir, struct tk_keyring **out, struct tk_err *e)
{
    struct tk_keyring *k = tk_calloc(1, sizeof *k);
    pthread_rwlock_init(&k->lock, NULL);
    snprintf(k->data_dir, sizeof k->data_dir, "%s", data_dir);
    k->sealed = true;
    k->rewrap_lease_ms = 15000;
    long page = sysconf(_SC_PAGESIZE);
    k->km_size = (sizeof(struct keymem) + (size_t)page - 1) / (size_t)page * (size_t)page;
    void *m = mmap(NULL, k->km_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        free(k);
        return tk_err_set(e, TK_EINTERNAL, "keyring_memory", "cannot map memory for keys: %s",
                          strerror(errno));
    }
    if (mlock(m, k->km_size) != 0)
        tk_warn("keyring: cannot lock key memory (%s); keys may reach swap", strerror(errno));
    madvise(m, k->km_size, MADV_DONTDUMP);
    k->km = m;
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
    munlock(k->km, k->km_size);
    munmap(k->km, k->km_size);
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

/* ---- loading ---- */

tk_rc tk_keyring_load(struct tk_keyring *k, struct tk_db *db, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT shares, threshold, auto_wrapped FROM keyring WHERE id = 1",
                          NULL, 0, &r, e);
    if (rc != TK_OK) return rc;
    pthread_rwlock_wrlock(&k->lock);
    k->initialized = tk_rows_count(r) == 1;
    if (k->initialized) {
        k->n = (int)tk_rows_int(r, 0, 0);
        k->t = (int)tk_rows_int(r, 0, 1);
        k->auto_unseal = !tk_rows_null(r, 0, 2);
    }
    pthread_rwlock_unlock(&k->lock);
    tk_rows_free(r);
    return TK_OK;
}

void tk_keyring_status(struct tk_keyring *k, struct tk_seal_status *st)
{
    pthread_rwlock_rdlock(&k->lock);
    st->initialized = k->initialized;
    st->sealed = k->sealed;
    st->threshold = k->t;
    st->shares = k->n;
    st->progress = k->km->nshares;
    st->auto_unseal = k->auto_unseal;
    st->data_version = k->sealed ? 0 : k->active;
    pthread_rwlock_unlock(&k->lock);
}

bool tk_keyring_sealed(struct tk_keyring *k)
{
    pthread_rwlock_rdlock(&k->lock);
    bool s = k->sealed;
    pthread_rwlock_unlock(&k->lock);
    return s;
}

static tk_rc setup_mac(struct tk_keyring *k, struct tk_err *e)
{
    EVP_MAC_CTX_free(k->hash_mac);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->hash_mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    if (!k->hash_mac || !EVP_MAC_init(k->hash_mac, k->km->hmac, 32, params))
        return tk_err_set(e, TK_EINTERNAL, "crypto_unavailable",
                          "OpenSSL has no HMAC-SHA256 (provider misconfigured?)");
    key_id(k->km->hmac, k->hmac_id);
    return TK_OK;
}

/* With k->km->master set and the write lock held: prove the master key
 * against the check value, then open every key. On failure the keys are
 * forgotten (sealed) -- except when an unsealed node reloads and the store
 * fails to answer: both reads come before any key is touched, so the node
 * keeps the keys it has rather than sealing itself on a store outage. */
static tk_rc open_with_master(struct tk_keyring *k, struct tk_db *db, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    struct tk_secret *s = NULL;
    char ad[128];
    size_t adl;
    bool store_failed = false;
    tk_rc rc = tk_db_exec(db, "SELECT check_value, data_version FROM keyring WHERE id = 1", NULL,
                          0, &r, e);
    store_failed = rc != TK_OK;
    if (rc != TK_OK) goto out;
    if (tk_rows_count(r) != 1) {
        rc = tk_err_set(e, TK_ECONFLICT, "uninitialized", "the keyring is not initialized");
        goto out;
    }
    const char *body;
    int64_t ver;
    adl = place_ad("keyring", "check", "", "", ad, sizeof ad);
    if (!parse_sealed(tk_rows_text(r, 0, 0), &ver, &body) ||
        !open_raw(k->km->master, body, ad, adl, &s) || s->len != strlen(CHECK_TEXT) ||
        memcmp(s->p, CHECK_TEXT, s->len) != 0) {
        rc = tk_err_set(e, TK_EINVAL, "wrong_master_key",
                        "the key does not open this keyring: a share or the key file belongs to "
                        "another installation, or was altered");
        goto out;
    }
    int64_t active = tk_rows_int(r, 0, 1);
    tk_secret_free(s);
    s = NULL;
    tk_rows_free(r);
    rc = tk_db_exec(db, "SELECT kind, version, sealed FROM keyring_keys ORDER BY kind, version",
                    NULL, 0, &r, e);
    store_failed = rc != TK_OK;
    if (rc != TK_OK) goto out;
    k->km->ndata = 0;
    bool have_hmac = false;
    for (int i = 0; i < tk_rows_count(r); i++) {
        const char *kind = tk_rows_text(r, i, 0);
        int64_t v = tk_rows_int(r, i, 1);
        char vs[24];
        snprintf(vs, sizeof vs, "%lld", (long long)v);
        adl = place_ad("keyring", kind, vs, "", ad, sizeof ad);
        if (!parse_sealed(tk_rows_text(r, i, 2), &ver, &body) ||
            !open_raw(k->km->master, body, ad, adl, &s) || s->len != 32) {
            rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                            "keyring key %s version %lld does not open under the master key: "
                            "the keyring_keys row was altered",
                            kind, (long long)v);
            goto out;
        }
        if (!strcmp(kind, "hmac")) {
            memcpy(k->km->hmac, s->p, 32);
            have_hmac = true;
        } else if (k->km->ndata < MAX_VERSIONS) {
            k->km->data[k->km->ndata].version = v;
            memcpy(k->km->data[k->km->ndata].key, s->p, 32);
            k->km->ndata++;
        }
        tk_secret_free(s);
        s = NULL;
    }
    if (!have_hmac || k->km->ndata == 0) {
        rc = tk_err_set(e, TK_EINTERNAL, "keyring_incomplete",
                        "the keyring in the store has no %s key", have_hmac ? "data" : "HMAC");
        goto out;
    }
    rc = setup_mac(k, e);
    if (rc == TK_OK) {
        k->active = active;
        k->sealed = false;
        k->initialized = true;
    }
out:
    tk_secret_free(s);
    tk_rows_free(r);
    if (rc != TK_OK && !(store_failed && !k->sealed)) forget_keys(k);
    return rc;
}

/* ---- init ---- */

static tk_rc read_file32(const char *path, unsigned char out[32], struct tk_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? TK_ENOTFOUND
                               : tk_err_set(e, TK_EINTERNAL, "key_file_unreadable",
                                            "cannot read %s: %s", path, strerror(errno));
    ssize_t n = read(fd, out, 32);
    unsigned char extra;
    ssize_t more = read(fd, &extra, 1);
    close(fd);
    if (n != 32 || more != 0) {
        tk_wipe(out, 32);
        return tk_err_set(e, TK_EINVAL, "key_file_corrupt",
                          "%s must hold exactly 32 bytes; it was damaged or replaced", path);
    }
    return TK_OK;
}

static tk_rc write_new_file32(const char *path, const unsigned char key[32], struct tk_err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return tk_err_set(e, errno == EEXIST ? TK_ECONFLICT : TK_EINTERNAL, "key_file_unwritable",
                          "cannot create the auto-unseal key file %s: %s", path,
                          errno == EEXIST ? "it exists already (from another keyring?)"
                                          : strerror(errno));
    bool ok = write(fd, key, 32) == 32 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        return tk_err_set(e, TK_EINTERNAL, "key_file_unwritable", "cannot write %s", path);
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

tk_rc tk_keyring_init(struct tk_keyring *k, struct tk_db *db, int n, int t,
                      const char *auto_key_path, char (*shares)[TK_SHARE_MAX], struct tk_err *e)
{
    if (n < 1 || n > TK_SHARES_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "shares",
                            "shares must be from 1 to %d", TK_SHARES_MAX);
    if (t < 1 || t > n)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "threshold",
                            "threshold must be from 1 to shares (%d)", n);
    char legacy[600];
    snprintf(legacy, sizeof legacy, "%s/hash.key", k->data_dir);
    pthread_rwlock_wrlock(&k->lock);
    struct keymem *km = k->km;
    tk_rc rc = TK_OK;
    bool imported = false, wrote_auto = false;
    char *check = NULL, *wrapped = NULL;
    if (k->initialized) {
        /* Refused without touching this node's keys or unseal progress:
         * POST /v1/sys/init needs no token, and must not seal a node. */
        pthread_rwlock_unlock(&k->lock);
        return tk_err_set(e, TK_ECONFLICT, "already_initialized",
                          "the keyring is initialized already; init runs once per installation");
    }
    tk_random(km->master, 32);
    rc = read_file32(legacy, km->hmac, e);
    if (rc == TK_OK) {
        imported = true;
    } else if (rc == TK_ENOTFOUND) {
        tk_random(km->hmac, 32);
        rc = TK_OK;
    } else {
        goto out;
    }
    unsigned char data1[32], filekey[32];
    char auto_id[17] = "";
    tk_random(data1, 32);
    char ad[128];
    size_t adl = place_ad("keyring", "check", "", "", ad, sizeof ad);
    check = seal_raw(km->master, 0, ad, adl, CHECK_TEXT, strlen(CHECK_TEXT));
    if (auto_key_path) {
        tk_random(filekey, 32);
        rc = write_new_file32(auto_key_path, filekey, e);
        if (rc != TK_OK) goto out_wipe;
        wrote_auto = true;
        adl = place_ad("keyring", "auto", "", "", ad, sizeof ad);
        wrapped = seal_raw(filekey, 0, ad, adl, km->master, 32);
        key_id(filekey, auto_id);
    }
    rc = tk_shamir_split(km->master, n, t, shares, e);
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
        if (rc == TK_OK) rc = insert_key(db, km->master, "data", 1, data1, e);
        if (rc == TK_OK)
            rc = tk_db_commit(db, e);
        else
            tk_db_rollback(db);
    }
    if (rc == TK_OK) {
        km->ndata = 1;
        km->data[0].version = 1;
        memcpy(km->data[0].key, data1, 32);
        rc = setup_mac(k, e);
    }
    if (rc == TK_OK) {
        k->initialized = true;
        k->sealed = false;
        k->active = 1;
        k->n = n;
        k->t = t;
        k->auto_unseal = auto_key_path != NULL;
        if (imported) {
            if (unlink(legacy) == 0)
                tk_info("keyring: imported %s as the HMAC key of issued secrets and removed it",
                        legacy);
        }
    }
out_wipe:
    tk_wipe(data1, sizeof data1);
    tk_wipe(filekey, sizeof filekey);
out:
    if (rc != TK_OK) {
        if (wrote_auto) unlink(auto_key_path);
        for (int i = 0; i < n; i++) tk_wipe(shares[i], TK_SHARE_MAX);
        forget_keys(k);
    }
    free(check);
    free(wrapped);
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

/* ---- unseal and seal ---- */

tk_rc tk_keyring_unseal_share(struct tk_keyring *k, struct tk_db *db, const char *share,
                              struct tk_seal_status *st, struct tk_err *e)
{
    unsigned char x, y[32];
    struct tk_err se;
    tk_keyring_sync(k, db, &se); /* initialized through another node? */
    tk_rc rc = tk_shamir_parse(share, &x, y, e);
    pthread_rwlock_wrlock(&k->lock);
    struct keymem *km = k->km;
    if (rc != TK_OK) goto out;
    if (!k->initialized) {
        rc = tk_err_set(e, TK_ECONFLICT, "uninitialized",
                        "the keyring is not initialized: run tokend operator init first");
        goto out;
    }
    if (!k->sealed) goto out; /* nothing to do */
    if (x > k->n) {
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
    km->share_x[km->nshares] = x;
    memcpy(km->share_y[km->nshares], y, 32);
    km->nshares++;
    if (km->nshares >= k->t) {
        rc = tk_shamir_combine(km->share_x, (const unsigned char(*)[32])km->share_y, km->nshares,
                               km->master, e);
        tk_wipe(km->share_y, sizeof km->share_y);
        km->nshares = 0;
        if (rc == TK_OK) rc = open_with_master(k, db, e);
        if (rc == TK_EINVAL && e && !strcmp(e->code, "wrong_master_key"))
            tk_err_set(e, TK_EINVAL, "wrong_shares",
                       "these %d shares do not open this keyring: at least one belongs to "
                       "another installation; progress was reset, start again",
                       k->t);
    }
out:
    tk_wipe(y, sizeof y);
    pthread_rwlock_unlock(&k->lock);
    if (st) tk_keyring_status(k, st);
    return rc;
}

tk_rc tk_keyring_unseal_file(struct tk_keyring *k, struct tk_db *db, const char *path,
                             struct tk_err *e)
{
    unsigned char filekey[32];
    tk_rc rc = read_file32(path, filekey, e);
    if (rc == TK_ENOTFOUND)
        return tk_err_set(e, TK_ENOTFOUND, "key_file_missing",
                          "the auto-unseal key file %s does not exist", path);
    if (rc != TK_OK) return rc;
    struct tk_rows *r = NULL;
    struct tk_secret *m = NULL;
    pthread_rwlock_wrlock(&k->lock);
    if (!k->sealed) goto out;
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
    if (!parse_sealed(tk_rows_text(r, 0, 0), &ver, &body) ||
        !open_raw(filekey, body, ad, adl, &m) || m->len != 32) {
        rc = tk_err_set(e, TK_EINVAL, "wrong_key_file",
                        "the auto-unseal key file %s does not open this keyring (another "
                        "installation's?)",
                        path);
        goto out;
    }
    memcpy(k->km->master, m->p, 32);
    rc = open_with_master(k, db, e);
out:
    tk_wipe(filekey, sizeof filekey);
    tk_secret_free(m);
    tk_rows_free(r);
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

void tk_keyring_seal(struct tk_keyring *k)
{
    pthread_rwlock_wrlock(&k->lock);
    forget_keys(k);
    pthread_rwlock_unlock(&k->lock);
}

/* ---- rotate ---- */

/* The master key stays in locked memory while unsealed (as Vault keeps its
 * keyring key), so that rotate can seal a new data key, and a node that
 * meets a version rotated on another node can reload the keyring. */
tk_rc tk_keyring_rotate(struct tk_keyring *k, struct tk_db *db, int64_t *version,
                        struct tk_err *e)
{
    struct tk_rows *r = NULL;
    unsigned char key[32], master[32];
    tk_random(key, sizeof key);
    /* The database first, then the keyring, as everywhere: a rewrap batch
     * holds the database (SQLite's write lock) and then wants the keyring's
     * read lock, so rotate must not hold the keyring while it waits. */
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_db_lock_row(db, "keyring", "1", e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT MAX(version) FROM keyring_keys WHERE kind = 'data'", NULL, 0,
                        &r, e);
    int64_t v = rc == TK_OK ? tk_rows_int(r, 0, 0) + 1 : 0;
    if (rc == TK_OK && v > MAX_VERSIONS)
        rc = tk_err_set(e, TK_ECONFLICT, "too_many_versions",
                        "the keyring has %d data key versions, the most it holds", MAX_VERSIONS);
    if (rc == TK_OK) {
        pthread_rwlock_rdlock(&k->lock);
        bool sealed = k->sealed;
        if (!sealed) memcpy(master, k->km->master, sizeof master);
        pthread_rwlock_unlock(&k->lock);
        if (sealed) rc = tk_err_set(e, TK_EUNAVAIL, "sealed", "tokend is sealed");
    }
    if (rc == TK_OK) rc = insert_key(db, master, "data", v, key, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "UPDATE keyring SET data_version = ? WHERE id = 1",
                        TK_ARGS(TK_INT(v)), NULL, e);
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
    pthread_rwlock_wrlock(&k->lock);
    if (!k->sealed && open_with_master(k, db, &le) != TK_OK)
        tk_warn("keyring: rotated to version %lld, but reloading failed: %s", (long long)v,
                le.msg);
    pthread_rwlock_unlock(&k->lock);
    return TK_OK;
}

tk_rc tk_keyring_sync(struct tk_keyring *k, struct tk_db *db, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT data_version, shares, threshold, auto_wrapped FROM keyring "
                          "WHERE id = 1",
                          NULL, 0, &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 1) {
        int64_t v = tk_rows_int(r, 0, 0);
        /* the usual case, nothing to learn: no write lock against hashing */
        pthread_rwlock_rdlock(&k->lock);
        bool current = k->initialized && (k->sealed || v == k->active);
        pthread_rwlock_unlock(&k->lock);
        if (current) {
            tk_rows_free(r);
            return TK_OK;
        }
        pthread_rwlock_wrlock(&k->lock);
        if (!k->initialized) { /* initialized through another node */
            k->initialized = true;
            k->n = (int)tk_rows_int(r, 0, 1);
            k->t = (int)tk_rows_int(r, 0, 2);
            k->auto_unseal = !tk_rows_null(r, 0, 3);
        }
        if (!k->sealed && v != k->active) {
            struct tk_err le;
            if (open_with_master(k, db, &le) != TK_OK)
                tk_warn("keyring: cannot follow data key version %lld: %s", (long long)v, le.msg);
        }
        pthread_rwlock_unlock(&k->lock);
    }
    tk_rows_free(r);
    return TK_OK;
}

/* Reload the keys with the master key in memory (another node rotated). */
static void reload(struct tk_keyring *k, struct tk_db *db)
{
    struct tk_err e;
    pthread_rwlock_wrlock(&k->lock);
    if (!k->sealed && open_with_master(k, db, &e) != TK_OK)
        tk_error("keyring: reloading keys failed%s: %s",
                 k->sealed ? ", sealed" : " (store error; the loaded keys are kept)", e.msg);
    pthread_rwlock_unlock(&k->lock);
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

static void decrypt_event(struct tk_db *db, const struct tk_seal_ad *ad, int64_t version,
                          const char *msg)
{
    if (!db || !ad->tenant_id) return;
    json_t *d = json_pack("{s:s, s:s, s:s, s:I}", "table", ad->table ? ad->table : "", "column",
                          ad->column ? ad->column : "", "row_id", ad->row_id ? ad->row_id : "",
                          "key_version", (json_int_t)version);
    struct tk_event ev = {.tenant_id = ad->tenant_id, .kind = "keyring", .source = "keyring",
                          .action = "decrypt_failed", .outcome = "error",
                          .subject_type = ad->table, .subject_id = ad->row_id, .message = msg,
                          .detail = d, .latency_us = -1};
    struct tk_err e;
    if (tk_event_emit(db, &ev, &e) != TK_OK)
        tk_warn("keyring: could not record decrypt_failed: %s", e.msg);
    json_decref(d);
}

static tk_rc open_value(struct tk_keyring *k, struct tk_db *db, const struct tk_sealed *v,
                        const struct tk_seal_ad *ad, struct tk_secret **out, bool *unknown,
                        int64_t *version, struct tk_err *e)
{
    int64_t ver = -1;
    const char *body;
    char adb[512];
    tk_rc rc = TK_OK;
    *out = NULL;
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
        if (!key) *unknown = true;
        if (!key)
            rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                            "%s.%s of row %s is sealed under key version %lld, which this "
                            "keyring does not have",
                            ad->table, ad->column, ad->row_id, (long long)ver);
        else if (!open_raw(key, body, adb, adl, out))
            rc = tk_err_set(e, TK_EINTERNAL, "decrypt_failed",
                            "%s.%s of row %s (key version %lld) does not open: it was copied "
                            "from another row, column or tenant, or altered",
                            ad->table, ad->column, ad->row_id, (long long)ver);
    }
    pthread_rwlock_unlock(&k->lock);
    *version = ver;
    if (rc != TK_OK && !*unknown) decrypt_event(db, ad, ver, e ? e->msg : "decrypt failed");
    return rc;
}

tk_rc tk_keyring_open_value(struct tk_keyring *k, struct tk_db *db, const struct tk_sealed *v,
                            const struct tk_seal_ad *ad, struct tk_secret **out,
                            struct tk_err *e)
{
    bool unknown = false;
    int64_t ver;
    tk_rc rc = open_value(k, db, v, ad, out, &unknown, &ver, e);
    if (rc != TK_OK && unknown && db) {
        /* A version rotated on another node: reload once, then try again. */
        reload(k, db);
        unknown = false;
        rc = open_value(k, db, v, ad, out, &unknown, &ver, e);
    }
    if (rc != TK_OK && unknown) decrypt_event(db, ad, ver, e ? e->msg : "unknown key version");
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
        reload(k, db); /* a version rotated on another node */
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
