/* keyring.c: see keyring.h. */
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct tk_keyring {
    EVP_MAC_CTX *hash_mac; /* keyed once; each hash works on a copy */
    unsigned char hash_key[32];
    char hash_key_id[17]; /* first 8 bytes of SHA-256(key), hex: names the key, reveals nothing */
};

struct tk_secret *tk_secret_new(const void *p, size_t len)
{
    struct tk_secret *s = tk_calloc(1, sizeof *s);
    s->p = tk_malloc(len + 1);
    memcpy(s->p, p, len);
    s->p[len] = 0;
    s->len = len;
    return s;
}

void tk_secret_free(struct tk_secret *s)
{
    if (!s) return;
    tk_wipe(s->p, s->len + 1);
    free(s->p);
    free(s);
}

static tk_rc read_key(const char *path, unsigned char key[32], struct tk_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? TK_ENOTFOUND : tk_err_set(e, TK_EINTERNAL, "key_unreadable", "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        fchmod(fd, 0600);
    ssize_t n = read(fd, key, 32);
    unsigned char extra;
    ssize_t more = read(fd, &extra, 1);
    close(fd);
    if (n != 32 || more != 0)
        return tk_err_set(e, TK_EINTERNAL, "key_corrupt",
                          "%s must hold exactly 32 bytes; it was damaged or replaced", path);
    return TK_OK;
}

static tk_rc write_key(const char *path, const unsigned char key[32], struct tk_err *e)
{
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return tk_err_set(e, TK_EINTERNAL, "key_unwritable", "cannot create %s: %s", tmp, strerror(errno));
    bool ok = write(fd, key, 32) == 32 && fsync(fd) == 0;
    close(fd);
    /* link() refuses to replace: two processes starting at once keep one key. */
    if (ok && link(tmp, path) != 0 && errno != EEXIST) ok = false;
    unlink(tmp);
    if (!ok) return tk_err_set(e, TK_EINTERNAL, "key_unwritable", "cannot write %s: %s", path, strerror(errno));
    return TK_OK;
}

tk_rc tk_keyring_open(const char *data_dir, struct tk_keyring **out, struct tk_err *e)
{
    char path[600];
    snprintf(path, sizeof path, "%s/hash.key", data_dir);
    struct tk_keyring *k = tk_calloc(1, sizeof *k);
    tk_rc rc = read_key(path, k->hash_key, e);
    if (rc == TK_ENOTFOUND) {
        unsigned char fresh[32];
        tk_random(fresh, sizeof fresh);
        rc = write_key(path, fresh, e);
        tk_wipe(fresh, sizeof fresh);
        if (rc == TK_OK) rc = read_key(path, k->hash_key, e);
    }
    if (rc != TK_OK) {
        tk_keyring_close(k);
        return rc;
    }
    unsigned char d[32];
    SHA256(k->hash_key, sizeof k->hash_key, d);
    tk_hex(d, 8, k->hash_key_id);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    k->hash_mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    if (!k->hash_mac || !EVP_MAC_init(k->hash_mac, k->hash_key, sizeof k->hash_key, params)) {
        tk_keyring_close(k);
        return tk_err_set(e, TK_EINTERNAL, "crypto_unavailable",
                          "OpenSSL has no HMAC-SHA256 (FIPS provider misconfigured?)");
    }
    *out = k;
    return TK_OK;
}

void tk_keyring_close(struct tk_keyring *k)
{
    if (!k) return;
    EVP_MAC_CTX_free(k->hash_mac);
    tk_wipe(k, sizeof *k);
    free(k);
}

void tk_keyring_hash(const struct tk_keyring *k, const char *secret, size_t len,
                     char out[TK_HASH_HEX])
{
    unsigned char mac[32];
    size_t ml = 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(k->hash_mac);
    if (!c || !EVP_MAC_update(c, (const unsigned char *)secret, len) ||
        !EVP_MAC_final(c, mac, &ml, sizeof mac) || ml != sizeof mac)
        tk_fatal("HMAC-SHA256 failed");
    EVP_MAC_CTX_free(c);
    tk_hex(mac, 32, out);
}

const char *tk_keyring_hash_key_id(const struct tk_keyring *k)
{
    return k->hash_key_id;
}
