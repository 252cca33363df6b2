/* tls_fuzz.c: libFuzzer target for loading a certificate and key
 * (tk_tls_open, src/tls/tls.c). The input is split at its first NUL byte
 * into the certificate file and the key file (both written to in-memory
 * files, memfd_create, and loaded through their /proc/self/fd paths).
 * Invariants: a refusal carries one of the three codes, names the setting
 * and says why; an accepted pair has a subject, a 64-hex fingerprint, a
 * chain of 1..TK_TLS_CHAIN_MAX, an expiry in the future, and reloads. */
#include "../src/tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "tls_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

static int memfile(const char *name, const uint8_t *p, size_t n, char *path, size_t pn)
{
    int fd = memfd_create(name, 0);
    if (fd < 0) return -1;
    if (n && write(fd, p, n) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    snprintf(path, pn, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t cn = nul ? (size_t)(nul - data) : size;
    const uint8_t *k = nul ? nul + 1 : data + size;
    size_t kn = nul ? size - cn - 1 : 0;
    char cp[64], kp[64];
    int cfd = memfile("cert", data, cn, cp, sizeof cp);
    int kfd = memfile("key", k, kn, kp, sizeof kp);
    if (cfd < 0 || kfd < 0) {
        if (cfd >= 0) close(cfd);
        if (kfd >= 0) close(kfd);
        return 0;
    }
    struct tk_tls *t = NULL;
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_tls_open(cp, kp, &t, &e);
    if (rc != TK_OK) {
        check(t == NULL, "nothing returned on refusal");
        check(!strcmp(e.code, "tls_cert_unusable") || !strcmp(e.code, "tls_key_unusable") ||
                  !strcmp(e.code, "tls_key_mismatch"),
              "one of the three codes");
        check(!strcmp(e.field, "tls_cert_file") || !strcmp(e.field, "tls_key_file"), "field");
        check(strstr(e.msg, "/proc/self/fd/") != NULL, "the file is named");
    } else {
        struct tk_tls_info in;
        tk_tls_info(t, &in);
        check(strlen(in.fingerprint) == 64, "fingerprint");
        check(in.chain_len >= 1 && in.chain_len <= TK_TLS_CHAIN_MAX, "chain length");
        check(in.not_after_ms > in.not_before_ms, "validity");
        check(tk_tls_reload(t, &e) == TK_OK, "the same files reload");
        tk_tls_free(t);
    }
    close(cfd);
    close(kfd);
    return 0;
}
