/* tls.c: see tls.h. */
#include "tls.h"

#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One loaded pair: the chain (DER, and parsed for GnuTLS, leaf first) and
 * the key. Immutable once made; replaced whole by a reload; freed when the
 * last holder lets go (struct tk_tls holds the current one, each TLS
 * session the one it was given). */
struct tk_tls_pair {
    atomic_int refs;
    gnutls_datum_t der[TK_TLS_CHAIN_MAX];
    gnutls_pcert_st pcert[TK_TLS_CHAIN_MAX];
    unsigned n, npcert;
    gnutls_x509_privkey_t key; /* as read; owned by pk once pk is made */
    gnutls_privkey_t pk;
    struct tk_tls_info info;
};
#define pair tk_tls_pair

struct tk_tls {
    pthread_rwlock_t lock; /* readers: handshakes taking the pair; writer: the swap */
    struct pair *cur;
    char cert_file[1024], key_file[1024];
    atomic_uint_fast64_t hs_ok, hs_failed, reloads_ok, reloads_failed;
};

static void pair_free(struct pair *p)
{
    if (!p) return;
    for (unsigned i = 0; i < p->n; i++)
        gnutls_free(p->der[i].data);
    for (unsigned i = 0; i < p->npcert; i++)
        gnutls_pcert_deinit(&p->pcert[i]);
    if (p->pk)
        gnutls_privkey_deinit(p->pk); /* and p->key, which it owns */
    else if (p->key)
        gnutls_x509_privkey_deinit(p->key);
    free(p);
}

static void pair_unref(struct pair *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) pair_free(p);
}

/* Read a whole file of at most TK_TLS_FILE_MAX bytes into *d (malloc'd,
 * NUL-terminated, wipe and free it). */
static tk_rc read_file(const char *path, const char *field, const char *code, gnutls_datum_t *d,
                       struct tk_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tk_err_field(e, TK_EINVAL, code, field, "%s %s cannot be read: %s", field, path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return tk_err_field(e, TK_EINVAL, code, field, "%s %s is not a regular file", field, path);
    }
    if (st.st_size > TK_TLS_FILE_MAX) {
        close(fd);
        return tk_err_field(e, TK_EINVAL, code, field,
                            "%s %s is %lld bytes long, more than the %d a PEM file may be", field,
                            path, (long long)st.st_size, TK_TLS_FILE_MAX);
    }
    unsigned char *buf = tk_malloc(TK_TLS_FILE_MAX + 1);
    size_t len = 0;
    for (;;) {
        ssize_t got = read(fd, buf + len, TK_TLS_FILE_MAX + 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
        if (len > TK_TLS_FILE_MAX) break;
    }
    close(fd);
    if (len > TK_TLS_FILE_MAX) {
        tk_wipe(buf, TK_TLS_FILE_MAX + 1);
        free(buf);
        return tk_err_field(e, TK_EINVAL, code, field, "%s %s grew past %d bytes while read", field,
                            path, TK_TLS_FILE_MAX);
    }
    buf[len] = '\0';
    d->data = buf;
    d->size = (unsigned)len;
    return TK_OK;
}

static void datum_wipe_free(gnutls_datum_t *d)
{
    if (d->data) tk_wipe(d->data, d->size);
    free(d->data);
    d->data = NULL;
    d->size = 0;
}

static void fmt_time(int64_t ms, char *out, size_t n)
{
    tk_time_fmt(ms, out, n);
}

static tk_rc load_chain(const char *path, struct pair *p, struct tk_err *e)
{
    gnutls_datum_t pem = {0};
    tk_rc rc = read_file(path, "tls_cert_file", "tls_cert_unusable", &pem, e);
    if (rc != TK_OK) return rc;
    gnutls_x509_crt_t *crts = NULL;
    unsigned n = 0;
    int g = strstr((const char *)pem.data, "-----BEGIN CERTIFICATE-----")
                ? gnutls_x509_crt_list_import2(&crts, &n, &pem, GNUTLS_X509_FMT_PEM,
                                               GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED)
                : GNUTLS_E_NO_CERTIFICATE_FOUND;
    datum_wipe_free(&pem);
    if (g < 0 || n == 0) {
        return tk_err_field(e, TK_EINVAL, "tls_cert_unusable", "tls_cert_file",
                            "tls_cert_file %s: %s", path,
                            g == GNUTLS_E_NO_CERTIFICATE_FOUND
                                ? "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
                            : g == GNUTLS_E_CERTIFICATE_LIST_UNSORTED
                                ? "the certificates are not in order (the server's own first, "
                                  "then each issuer)"
                                : gnutls_strerror(g));
    }
    if (n > TK_TLS_CHAIN_MAX) {
        for (unsigned i = 0; i < n; i++)
            gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        return tk_err_field(e, TK_EINVAL, "tls_cert_unusable", "tls_cert_file",
                            "tls_cert_file %s: %u certificates, at most %d are sent", path, n,
                            TK_TLS_CHAIN_MAX);
    }
    for (unsigned i = 0; i < n && rc == TK_OK; i++) {
        g = gnutls_x509_crt_export2(crts[i], GNUTLS_X509_FMT_DER, &p->der[i]);
        if (g < 0)
            rc = tk_err_field(e, TK_EINVAL, "tls_cert_unusable", "tls_cert_file",
                              "tls_cert_file %s: certificate %u: %s", path, i + 1,
                              gnutls_strerror(g));
        else
            p->n = i + 1;
    }
    if (rc == TK_OK) {
        gnutls_x509_crt_t leaf = crts[0];
        p->info.chain_len = (int)n;
        p->info.not_before_ms = (int64_t)gnutls_x509_crt_get_activation_time(leaf) * 1000;
        p->info.not_after_ms = (int64_t)gnutls_x509_crt_get_expiration_time(leaf) * 1000;
        gnutls_datum_t dn = {0};
        if (gnutls_x509_crt_get_dn3(leaf, &dn, 0) >= 0) {
            snprintf(p->info.subject, sizeof p->info.subject, "%.*s", (int)dn.size,
                     (const char *)dn.data);
            gnutls_free(dn.data);
        }
        unsigned char fp[32];
        size_t fl = sizeof fp;
        if (gnutls_x509_crt_get_fingerprint(leaf, GNUTLS_DIG_SHA256, fp, &fl) >= 0 && fl == 32)
            tk_hex(fp, fl, p->info.fingerprint);
        int64_t now = tk_now_ms();
        char t[40];
        if (p->info.not_after_ms <= now) {
            fmt_time(p->info.not_after_ms, t, sizeof t);
            rc = tk_err_field(e, TK_EINVAL, "tls_cert_unusable", "tls_cert_file",
                              "tls_cert_file %s: the certificate expired at %s", path, t);
        } else if (p->info.not_before_ms > now + 5 * 60 * 1000) {
            fmt_time(p->info.not_before_ms, t, sizeof t);
            rc = tk_err_field(e, TK_EINVAL, "tls_cert_unusable", "tls_cert_file",
                              "tls_cert_file %s: the certificate is not valid before %s (is the "
                              "clock right?)",
                              path, t);
        }
    }
    for (unsigned i = 0; i < n; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    return rc;
}

static tk_rc load_key(const char *path, struct pair *p, struct tk_err *e)
{
    gnutls_datum_t pem = {0};
    tk_rc rc = read_file(path, "tls_key_file", "tls_key_unusable", &pem, e);
    if (rc != TK_OK) return rc;
    const char *txt = (const char *)pem.data;
    const char *why = NULL;
    int g = 0;
    if (strstr(txt, "ENCRYPTED"))
        why = "the key is encrypted; tokend reads unencrypted keys only (keep the file mode 0600)";
    else if (!strstr(txt, "-----BEGIN ") || !strstr(txt, "PRIVATE KEY-----"))
        why = "no PEM private key (-----BEGIN ... PRIVATE KEY-----) in it";
    if (!why) {
        g = gnutls_x509_privkey_init(&p->key);
        if (g >= 0)
            g = gnutls_x509_privkey_import2(p->key, &pem, GNUTLS_X509_FMT_PEM, NULL,
                                            GNUTLS_PKCS_PLAIN);
        if (g < 0) why = gnutls_strerror(g);
    }
    datum_wipe_free(&pem);
    if (why)
        return tk_err_field(e, TK_EINVAL, "tls_key_unusable", "tls_key_file", "tls_key_file %s: %s",
                            path, why);
    return TK_OK;
}

/* Does the key belong to the leaf certificate? Compares the SHA-256 key
 * ids (a hash of the public key) of both. */
static tk_rc check_match(const char *cert_file, const char *key_file, struct pair *p,
                         struct tk_err *e)
{
    gnutls_x509_crt_t leaf;
    unsigned char a[64], b[64];
    size_t al = sizeof a, bl = sizeof b;
    int g = gnutls_x509_crt_init(&leaf);
    if (g >= 0) g = gnutls_x509_crt_import(leaf, &p->der[0], GNUTLS_X509_FMT_DER);
    if (g >= 0) g = gnutls_x509_crt_get_key_id(leaf, GNUTLS_KEYID_USE_SHA256, a, &al);
    if (g >= 0) g = gnutls_x509_privkey_get_key_id(p->key, GNUTLS_KEYID_USE_SHA256, b, &bl);
    gnutls_x509_crt_deinit(leaf);
    if (g < 0)
        return tk_err_field(e, TK_EINVAL, "tls_key_mismatch", "tls_key_file",
                            "tls_key_file %s cannot be compared with tls_cert_file %s: %s",
                            key_file, cert_file, gnutls_strerror(g));
    if (al != bl || memcmp(a, b, al) != 0)
        return tk_err_field(e, TK_EINVAL, "tls_key_mismatch", "tls_key_file",
                            "tls_key_file %s is not the key of the certificate in tls_cert_file "
                            "%s (its public key differs)",
                            key_file, cert_file);
    return TK_OK;
}

static tk_rc load_pair(const char *cert_file, const char *key_file, struct pair **out,
                       struct tk_err *e)
{
    struct pair *p = tk_calloc(1, sizeof *p);
    snprintf(p->info.cert_file, sizeof p->info.cert_file, "%s", cert_file);
    snprintf(p->info.key_file, sizeof p->info.key_file, "%s", key_file);
    atomic_init(&p->refs, 1);
    tk_rc rc = load_chain(cert_file, p, e);
    if (rc == TK_OK) rc = load_key(key_file, p, e);
    if (rc == TK_OK) rc = check_match(cert_file, key_file, p, e);
    /* what handshakes get: parsed once here (a parse per handshake would
     * cost about half of the handshake's own signature) */
    int g = 0;
    for (unsigned i = 0; rc == TK_OK && g >= 0 && i < p->n; i++) {
        g = gnutls_pcert_import_x509_raw(&p->pcert[i], &p->der[i], GNUTLS_X509_FMT_DER, 0);
        if (g >= 0) p->npcert = i + 1;
    }
    if (rc == TK_OK && g >= 0) g = gnutls_privkey_init(&p->pk);
    if (rc == TK_OK && g >= 0) {
        g = gnutls_privkey_import_x509(p->pk, p->key, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
        if (g < 0) { /* p->key is still ours */
            gnutls_privkey_deinit(p->pk);
            p->pk = NULL;
        }
    }
    if (rc == TK_OK && g < 0) {
        rc = tk_err_field(e, TK_EINVAL, "tls_key_unusable", "tls_key_file",
                          "tls_key_file %s cannot be used with tls_cert_file %s: %s", key_file,
                          cert_file, gnutls_strerror(g));
    }
    if (rc != TK_OK) {
        pair_free(p);
        return rc;
    }
    struct stat st;
    if (stat(key_file, &st) == 0 && (st.st_mode & 077))
        tk_warn("tls: the key file %s has mode %03o: other users can read the node's private key; "
                "chmod 600 it",
                key_file, (unsigned)(st.st_mode & 0777));
    int64_t left = p->info.not_after_ms - tk_now_ms();
    if (left < (int64_t)TK_TLS_EXPIRY_WARN_S * 1000) {
        char t[40];
        fmt_time(p->info.not_after_ms, t, sizeof t);
        tk_warn("tls: the certificate in %s expires at %s, in %lld hours: renew it and send "
                "SIGHUP",
                cert_file, t, (long long)(left / 3600000));
    }
    *out = p;
    return TK_OK;
}

tk_rc tk_tls_open(const char *cert_file, const char *key_file, struct tk_tls **out,
                  struct tk_err *e)
{
    struct pair *p = NULL;
    tk_rc rc = load_pair(cert_file, key_file, &p, e);
    if (rc != TK_OK) return rc;
    struct tk_tls *t = tk_calloc(1, sizeof *t);
    pthread_rwlock_init(&t->lock, NULL);
    snprintf(t->cert_file, sizeof t->cert_file, "%s", cert_file);
    snprintf(t->key_file, sizeof t->key_file, "%s", key_file);
    t->cur = p;
    *out = t;
    return TK_OK;
}

tk_rc tk_tls_reload(struct tk_tls *t, struct tk_err *e)
{
    struct pair *p = NULL;
    tk_rc rc = load_pair(t->cert_file, t->key_file, &p, e);
    if (rc != TK_OK) {
        atomic_fetch_add(&t->reloads_failed, 1);
        return rc;
    }
    pthread_rwlock_wrlock(&t->lock);
    struct pair *old = t->cur;
    t->cur = p;
    pthread_rwlock_unlock(&t->lock);
    pair_unref(old); /* freed when the last session given it ends */
    atomic_fetch_add(&t->reloads_ok, 1);
    return TK_OK;
}

void tk_tls_free(struct tk_tls *t)
{
    if (!t) return;
    pair_unref(t->cur);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

void tk_tls_info(struct tk_tls *t, struct tk_tls_info *out)
{
    pthread_rwlock_rdlock(&t->lock);
    *out = t->cur->info;
    pthread_rwlock_unlock(&t->lock);
}

void tk_tls_stats(struct tk_tls *t, struct tk_tls_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!t) return;
    out->enabled = true;
    out->handshakes_ok = atomic_load(&t->hs_ok);
    out->handshakes_failed = atomic_load(&t->hs_failed);
    out->reloads_ok = atomic_load(&t->reloads_ok);
    out->reloads_failed = atomic_load(&t->reloads_failed);
    pthread_rwlock_rdlock(&t->lock);
    out->cert_not_after_ms = t->cur->info.not_after_ms;
    pthread_rwlock_unlock(&t->lock);
    int64_t left = out->cert_not_after_ms - tk_now_ms();
    out->cert_expiry_seconds = left >= 0 ? left / 1000 : -((-left + 999) / 1000);
}

void tk_tls_count_handshake(struct tk_tls *t, bool ok)
{
    if (t) atomic_fetch_add(ok ? &t->hs_ok : &t->hs_failed, 1);
}

int tk_tls_select(struct tk_tls *t, struct tk_tls_pair **held, gnutls_pcert_st **certs,
                  unsigned int *ncerts, gnutls_privkey_t *key)
{
    *certs = NULL;
    *ncerts = 0;
    *key = NULL;
    struct pair *p = *held;
    if (!p) {
        if (!t) return GNUTLS_E_INTERNAL_ERROR;
        pthread_rwlock_rdlock(&t->lock);
        p = t->cur;
        atomic_fetch_add(&p->refs, 1);
        pthread_rwlock_unlock(&t->lock);
        *held = p;
    }
    *certs = p->pcert;
    *ncerts = p->npcert;
    *key = p->pk;
    return 0;
}

void tk_tls_release(struct tk_tls_pair *held)
{
    pair_unref(held);
}
