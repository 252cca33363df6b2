/*
 * tls.h: the node's TLS certificate and key (tls_cert_file, tls_key_file),
 * for libmicrohttpd over GnuTLS.
 *
 * A struct tk_tls owns the pair it loaded: the certificate chain (leaf
 * first) and the private key, checked when loaded (every certificate
 * parses, the key parses and is the leaf's, the leaf is valid now) and
 * parsed once for GnuTLS. The HTTP server does not hand the pair to
 * libmicrohttpd at start: each TLS session asks tk_tls_select (GnuTLS's
 * certificate retrieve callback, through MHD_OPTION_HTTPS_CERT_CALLBACK2)
 * and holds a reference to the pair current then until the session is
 * gone (tk_tls_release). So tk_tls_reload (SIGHUP) can load new files and
 * swap them in under a short write lock while old connections go on with
 * the pair they were given (freed with the last of them), and a pair that
 * does not load keeps the old one serving.
 *
 * TK_TLS_PRIORITIES limits handshakes to TLS 1.2 and 1.3, ECDHE key
 * exchange and AEAD ciphers (AES-GCM, ChaCha20-Poly1305).
 */
#ifndef TK_TLS_H
#define TK_TLS_H

#include "../common/tk.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#define TK_TLS_PRIORITIES                                                                          \
    "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"    \
    "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-GROUP-ALL:"          \
    "+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:%SERVER_PRECEDENCE"

/* A certificate that expires sooner than this is a warning (log, doctor). */
#define TK_TLS_EXPIRY_WARN_S (14 * 86400)
/* Largest certificate or key file read, and longest chain. */
#define TK_TLS_FILE_MAX (256 * 1024)
#define TK_TLS_CHAIN_MAX 16

struct tk_tls;

/* What the pair in use is. */
struct tk_tls_info {
    char cert_file[1024], key_file[1024];
    char subject[256];    /* the leaf's subject DN */
    char fingerprint[65]; /* SHA-256 of the leaf (DER), hex */
    int64_t not_before_ms, not_after_ms;
    int chain_len;
};

/* Counters since start, for metrics (tokend_tls_*). */
struct tk_tls_stats {
    bool enabled;               /* false: TLS is off (t was NULL) */
    uint64_t handshakes_ok;     /* completed handshakes */
    uint64_t handshakes_failed; /* connections closed before a handshake completed */
    uint64_t reloads_ok, reloads_failed;
    int64_t cert_not_after_ms;   /* the pair in use */
    int64_t cert_expiry_seconds; /* from now until it expires (negative: expired) */
};

/* Load and check cert_file (PEM, leaf first, then intermediates) and
 * key_file (PEM, unencrypted, PKCS#8 or the key type's own form). Errors
 * (field and file named, with the cause): tls_cert_unusable (unreadable,
 * no certificate, garbage, chain too long, expired, not yet valid),
 * tls_key_unusable (unreadable, not a key, encrypted), tls_key_mismatch.
 * A certificate expiring within TK_TLS_EXPIRY_WARN_S is loaded with a
 * warning in the log. Free with tk_tls_free. */
tk_rc tk_tls_open(const char *cert_file, const char *key_file, struct tk_tls **out,
                  struct tk_err *e);
/* Load the same files again and, if they pass the checks of tk_tls_open,
 * use them for every new handshake; otherwise keep the pair in use and
 * return the error. Counted in the stats either way. Thread-safe. */
tk_rc tk_tls_reload(struct tk_tls *t, struct tk_err *e);
void tk_tls_free(struct tk_tls *t);
/* The pair in use. */
void tk_tls_info(struct tk_tls *t, struct tk_tls_info *out);
/* A snapshot of the counters; t may be NULL (TLS off: all zero). */
void tk_tls_stats(struct tk_tls *t, struct tk_tls_stats *out);
/* The HTTP server counts each TLS connection once: handshake done, or
 * closed without one. */
void tk_tls_count_handshake(struct tk_tls *t, bool ok);
/* A pair held by one TLS session. */
struct tk_tls_pair;
/* GnuTLS retrieve-function body for one session: the first call takes a
 * reference to the current pair into *held (NULL before), later calls of
 * the same session give the same pair. *certs and *key belong to the pair:
 * GnuTLS must not free them (no GNUTLS_CERT_RETR_DEINIT_ALL). Returns 0, or
 * a negative GnuTLS error (t NULL). Thread-safe. */
int tk_tls_select(struct tk_tls *t, struct tk_tls_pair **held, gnutls_pcert_st **certs,
                  unsigned int *ncerts, gnutls_privkey_t *key);
/* Let go of a session's pair once the session is deinitialized (may free
 * it: nothing of it may be used after). NULL: nothing. */
void tk_tls_release(struct tk_tls_pair *held);

#endif
