/* test_tls.c: src/tls (loading and checking a certificate and key, reload
 * keeping the old pair, the priority string), HTTPS through src/http with a
 * GnuTLS client over loopback (TLS 1.3 and 1.2 AEAD accepted, TLS 1.1 and
 * CBC-only clients refused, a reload seen by the next handshake, the
 * handshake counters), and the public_url check. Certificates are made
 * here with GnuTLS (ECDSA P-256), with the validity each case needs. */
#include "unit.h"

#include "../../src/config/config.h"
#include "../../src/http/http.h"
#include "../../src/tls/tls.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DAY (24 * 3600)

/* Make a self-signed ECDSA P-256 certificate for cn valid from now+from_s
 * to now+to_s, written as dir/name.pem and dir/name.key (0600). */
static bool make_pair(const char *dir, const char *name, const char *cn, long from_s, long to_s)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t c = {0}, k = {0};
    char dn[128], path[512];
    time_t now = time(NULL);
    unsigned char serial[8];
    tk_random(serial, sizeof serial);
    serial[0] &= 0x7f;
    snprintf(dn, sizeof dn, "CN=%s", cn);
    int g = gnutls_x509_privkey_init(&key);
    if (g >= 0)
        g = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                         GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
    if (g >= 0) g = gnutls_x509_crt_init(&crt);
    if (g >= 0) g = gnutls_x509_crt_set_version(crt, 3);
    if (g >= 0) g = gnutls_x509_crt_set_serial(crt, serial, sizeof serial);
    if (g >= 0) g = gnutls_x509_crt_set_activation_time(crt, now + from_s);
    if (g >= 0) g = gnutls_x509_crt_set_expiration_time(crt, now + to_s);
    if (g >= 0) g = gnutls_x509_crt_set_dn(crt, dn, NULL);
    if (g >= 0)
        g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
                                                 GNUTLS_FSAN_SET);
    if (g >= 0) g = gnutls_x509_crt_set_key(crt, key);
    if (g >= 0) g = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
    if (g >= 0) g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &c);
    if (g >= 0) g = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &k);
    bool ok = g >= 0;
    if (!ok) FAILF("making a certificate: %s", gnutls_strerror(g));
    snprintf(path, sizeof path, "%s/%s.pem", dir, name);
    if (ok) ok = unit_write_file(path, c.data, c.size, 0644);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    if (ok) ok = unit_write_file(path, k.data, k.size, 0600);
    gnutls_free(c.data);
    gnutls_free(k.data);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    return ok;
}

static void path_of(char *out, size_t n, const char *dir, const char *name, const char *ext)
{
    snprintf(out, n, "%s/%s.%s", dir, name, ext);
}

/* Open cert name_c with key name_k; the error into e. */
static tk_rc open_pair(const char *dir, const char *name_c, const char *name_k, struct tk_tls **t,
                       struct tk_err *e)
{
    char c[512], k[512];
    path_of(c, sizeof c, dir, name_c, "pem");
    path_of(k, sizeof k, dir, name_k, "key");
    *t = NULL;
    return tk_tls_open(c, k, t, e);
}

static bool copy_file(const char *dir, const char *from, const char *to)
{
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/%s", dir, from);
    snprintf(b, sizeof b, "%s/%s", dir, to);
    FILE *f = fopen(a, "rb");
    if (!f) return false;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return unit_write_file(b, buf, n, 0600);
}

static bool write_text(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return unit_write_file(p, text, strlen(text), 0600);
}

void test_tls_open(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    if (!make_pair(dir, "a", "unit-a", -60, 90 * DAY)) goto out;
    struct tk_tls *t;
    struct tk_err e;
    if (!CHECK_OK(open_pair(dir, "a", "a", &t, &e), &e)) goto out;
    struct tk_tls_info in;
    tk_tls_info(t, &in);
    CHECK_EQ_STR(in.subject, "CN=unit-a");
    CHECK_EQ_INT(strlen(in.fingerprint), 64);
    CHECK_EQ_INT(in.chain_len, 1);
    CHECK(in.not_after_ms > tk_now_ms() + 89LL * DAY * 1000);
    struct tk_tls_stats st;
    tk_tls_stats(t, &st);
    CHECK(st.enabled);
    CHECK(st.cert_expiry_seconds > 89 * DAY && st.cert_expiry_seconds <= 90 * DAY);
    CHECK_EQ_INT(st.handshakes_ok + st.reloads_ok + st.reloads_failed, 0);
    tk_tls_count_handshake(t, true);
    tk_tls_count_handshake(t, false);
    tk_tls_count_handshake(t, false);
    tk_tls_stats(t, &st);
    CHECK_EQ_INT(st.handshakes_ok, 1);
    CHECK_EQ_INT(st.handshakes_failed, 2);
    /* what a session gets: a reference to the pair, the same on a second call */
    gnutls_pcert_st *pc = NULL;
    unsigned n = 0;
    gnutls_privkey_t k = NULL;
    struct tk_tls_pair *held = NULL;
    CHECK_EQ_INT(tk_tls_select(t, &held, &pc, &n, &k), 0);
    CHECK_EQ_INT(n, 1);
    CHECK(k != NULL && held != NULL);
    struct tk_tls_pair *was = held;
    gnutls_pcert_st *pc2 = NULL;
    CHECK_EQ_INT(tk_tls_select(t, &held, &pc2, &n, &k), 0);
    CHECK(held == was && pc2 == pc);
    /* a reload while held: the session keeps its pair, a new one gets the new */
    CHECK_OK(tk_tls_reload(t, &e), &e);
    struct tk_tls_pair *fresh = NULL;
    gnutls_pcert_st *pc3 = NULL;
    CHECK_EQ_INT(tk_tls_select(t, &fresh, &pc3, &n, &k), 0);
    CHECK(fresh != held && pc3 != pc);
    CHECK_EQ_INT(pc[0].cert.size > 0, 1); /* still readable (ASan would tell) */
    tk_tls_free(t);                       /* sessions outlive it: the pairs stay */
    CHECK_EQ_INT(pc3[0].cert.size > 0, 1);
    tk_tls_release(held);
    tk_tls_release(fresh);
    tk_tls_release(NULL);
    /* TLS off */
    tk_tls_stats(NULL, &st);
    CHECK(!st.enabled);
    held = NULL;
    CHECK_EQ_INT(tk_tls_select(NULL, &held, &pc, &n, &k) < 0, 1);
    /* a certificate that expires soon loads (with a warning in the log) */
    if (make_pair(dir, "soon", "unit-soon", -60, 3 * DAY)) {
        CHECK_OK(open_pair(dir, "soon", "soon", &t, &e), &e);
        tk_tls_free(t);
    }
out:
    unit_rmtree(dir);
}

void test_tls_mismatch(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    if (!make_pair(dir, "a", "unit-a", -60, 90 * DAY) ||
        !make_pair(dir, "b", "unit-b", -60, 90 * DAY))
        goto out;
    struct tk_tls *t;
    struct tk_err e;
    CHECK_EQ_INT(open_pair(dir, "a", "b", &t, &e), TK_EINVAL);
    CHECK(t == NULL);
    CHECK_EQ_STR(e.code, "tls_key_mismatch");
    CHECK_EQ_STR(e.field, "tls_key_file");
    CHECK(strstr(e.msg, "b.key") && strstr(e.msg, "a.pem") && strstr(e.msg, "not the key"));
out:
    unit_rmtree(dir);
}

void test_tls_validity(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_tls *t;
    struct tk_err e;
    if (make_pair(dir, "old", "unit-old", -30 * DAY, -DAY)) {
        CHECK_EQ_INT(open_pair(dir, "old", "old", &t, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "tls_cert_unusable");
        CHECK_EQ_STR(e.field, "tls_cert_file");
        CHECK(strstr(e.msg, "old.pem") && strstr(e.msg, "expired at"));
    }
    if (make_pair(dir, "new", "unit-new", DAY, 30 * DAY)) {
        CHECK_EQ_INT(open_pair(dir, "new", "new", &t, &e), TK_EINVAL);
        CHECK_EQ_STR(e.code, "tls_cert_unusable");
        CHECK(strstr(e.msg, "not valid before"));
    }
    unit_rmtree(dir);
}

/* Files that are not a certificate or key: each refused with the right
 * code, naming the file; none crashes. */
void test_tls_garbage(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    if (!make_pair(dir, "a", "unit-a", -60, 90 * DAY)) goto out;
    char apem[8192], akey[8192];
    {
        char p[512];
        FILE *f;
        size_t n;
        path_of(p, sizeof p, dir, "a", "pem");
        f = fopen(p, "rb");
        n = f ? fread(apem, 1, sizeof apem - 1, f) : 0;
        apem[n] = '\0';
        if (f) fclose(f);
        path_of(p, sizeof p, dir, "a", "key");
        f = fopen(p, "rb");
        n = f ? fread(akey, 1, sizeof akey - 1, f) : 0;
        akey[n] = '\0';
        if (f) fclose(f);
    }
    struct {
        const char *cert, *key; /* file contents; NULL: a's own */
        const char *code;
    } cases[] = {
        {"", NULL, "tls_cert_unusable"},
        {"garbage\n", NULL, "tls_cert_unusable"},
        {"-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n", NULL,
         "tls_cert_unusable"},
        {"-----BEGIN CERTIFICATE-----\nMIIB\n", NULL, "tls_cert_unusable"},
        {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", NULL,
         "tls_cert_unusable"},
        {akey, NULL, "tls_cert_unusable"}, /* a key where the certificate goes */
        {NULL, "", "tls_key_unusable"},
        {NULL, "garbage", "tls_key_unusable"},
        {NULL, apem, "tls_key_unusable"}, /* a certificate where the key goes */
        {NULL, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
         "tls_key_unusable"},
        {NULL, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "tls_key_unusable"},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        write_text(dir, "x.pem", cases[i].cert ? cases[i].cert : apem);
        write_text(dir, "x.key", cases[i].key ? cases[i].key : akey);
        struct tk_tls *t = NULL;
        struct tk_err e;
        tk_rc rc = open_pair(dir, "x", "x", &t, &e);
        if (rc == TK_OK || strcmp(e.code, cases[i].code) != 0 || !strstr(e.msg, "x.")) {
            FAILF("case %zu: rc %d code %s (want %s): %s", i, rc, rc ? e.code : "-", cases[i].code,
                  rc ? e.msg : "");
            tk_tls_free(t);
        }
    }
    /* missing files, a directory, a file over the size limit */
    struct tk_tls *t = NULL;
    struct tk_err e;
    char c[512], k[512];
    path_of(c, sizeof c, dir, "missing", "pem");
    path_of(k, sizeof k, dir, "a", "key");
    CHECK_EQ_INT(tk_tls_open(c, k, &t, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "tls_cert_unusable");
    CHECK(strstr(e.msg, "cannot be read"));
    path_of(c, sizeof c, dir, "a", "pem");
    CHECK_EQ_INT(tk_tls_open(c, dir, &t, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "tls_key_unusable");
    CHECK(strstr(e.msg, "not a regular file"));
    {
        size_t big = TK_TLS_FILE_MAX + 10;
        char *b = malloc(big);
        memset(b, 'A', big);
        snprintf(c, sizeof c, "%s/big.pem", dir);
        unit_write_file(c, b, big, 0600);
        free(b);
        CHECK_EQ_INT(tk_tls_open(c, k, &t, &e), TK_EINVAL);
        CHECK(strstr(e.msg, "bytes long"));
    }
    /* damaged copies of a good certificate: one byte changed at a time */
    size_t len = strlen(apem);
    unsigned char rnd[64];
    tk_random(rnd, sizeof rnd);
    int refused = 0;
    for (size_t i = 0; i < 64; i++) {
        char buf[8192];
        memcpy(buf, apem, len + 1);
        size_t at = 28 + (size_t)rnd[i] * (len - 60) / 256; /* inside the base64 */
        buf[at] = buf[at] == 'A' ? '#' : 'A';
        write_text(dir, "x.pem", buf);
        write_text(dir, "x.key", akey);
        tk_rc rc = open_pair(dir, "x", "x", &t, &e);
        if (rc == TK_OK)
            tk_tls_free(t);
        else if (strcmp(e.code, "tls_cert_unusable") && strcmp(e.code, "tls_key_mismatch"))
            FAILF("damaged at %zu: code %s", at, e.code);
        else
            refused++;
    }
    CHECK(refused > 0);
out:
    unit_rmtree(dir);
}

static void fingerprint_of(struct tk_tls *t, char out[65])
{
    struct tk_tls_info in;
    tk_tls_info(t, &in);
    memcpy(out, in.fingerprint, 65);
}

void test_tls_reload(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    if (!make_pair(dir, "a", "unit-a", -60, 90 * DAY) ||
        !make_pair(dir, "b", "unit-b", -60, 90 * DAY) ||
        !make_pair(dir, "old", "unit-old", -30 * DAY, -DAY))
        goto out;
    copy_file(dir, "a.pem", "live.pem");
    copy_file(dir, "a.key", "live.key");
    struct tk_tls *t;
    struct tk_err e;
    if (!CHECK_OK(open_pair(dir, "live", "live", &t, &e), &e)) goto out;
    char fa[65], fb[65], now[65];
    fingerprint_of(t, fa);
    /* garbage: refused, a still serves */
    write_text(dir, "live.pem", "garbage\n");
    CHECK_EQ_INT(tk_tls_reload(t, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "tls_cert_unusable");
    fingerprint_of(t, now);
    CHECK_EQ_STR(now, fa);
    /* b's certificate with a's key: refused */
    copy_file(dir, "b.pem", "live.pem");
    CHECK_EQ_INT(tk_tls_reload(t, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "tls_key_mismatch");
    fingerprint_of(t, now);
    CHECK_EQ_STR(now, fa);
    /* b's pair: taken */
    copy_file(dir, "b.key", "live.key");
    CHECK_OK(tk_tls_reload(t, &e), &e);
    fingerprint_of(t, fb);
    CHECK(strcmp(fa, fb) != 0);
    struct tk_tls_info in;
    tk_tls_info(t, &in);
    CHECK_EQ_STR(in.subject, "CN=unit-b");
    /* an expired pair: refused, b still serves */
    copy_file(dir, "old.pem", "live.pem");
    copy_file(dir, "old.key", "live.key");
    CHECK_EQ_INT(tk_tls_reload(t, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "expired"));
    fingerprint_of(t, now);
    CHECK_EQ_STR(now, fb);
    /* the key file gone: refused */
    char k[512];
    path_of(k, sizeof k, dir, "live", "key");
    unlink(k);
    CHECK_EQ_INT(tk_tls_reload(t, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "tls_cert_unusable"); /* the certificate (old) is read first */
    struct tk_tls_stats st;
    tk_tls_stats(t, &st);
    CHECK_EQ_INT(st.reloads_ok, 1);
    CHECK_EQ_INT(st.reloads_failed, 4);
    tk_tls_free(t);
out:
    unit_rmtree(dir);
}

/* The priority string: GnuTLS takes it, and every suite it allows is TLS
 * 1.2 ECDHE with an AEAD cipher, or TLS 1.3. */
void test_tls_priorities(void)
{
    gnutls_priority_t p;
    const char *err = NULL;
    int g = gnutls_priority_init(&p, TK_TLS_PRIORITIES, &err);
    if (!CHECK_EQ_INT(g, 0)) {
        FAILF("priority string refused at '%s'", err ? err : "?");
        return;
    }
    int suites = 0;
    for (unsigned i = 0;; i++) {
        unsigned idx;
        g = gnutls_priority_get_cipher_suite_index(p, i, &idx);
        if (g == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
        if (g < 0) continue;
        unsigned char id[2];
        gnutls_kx_algorithm_t kx;
        gnutls_cipher_algorithm_t cipher;
        gnutls_mac_algorithm_t mac;
        gnutls_protocol_t minv;
        const char *name = gnutls_cipher_suite_info(idx, id, &kx, &cipher, &mac, &minv);
        if (!name) continue;
        suites++;
        bool aead = cipher == GNUTLS_CIPHER_AES_128_GCM || cipher == GNUTLS_CIPHER_AES_256_GCM ||
                    cipher == GNUTLS_CIPHER_CHACHA20_POLY1305;
        bool ecdhe = kx == GNUTLS_KX_ECDHE_RSA || kx == GNUTLS_KX_ECDHE_ECDSA ||
                     kx == GNUTLS_KX_UNKNOWN /* TLS 1.3 suites */;
        if (!aead || !ecdhe) FAILF("suite %s allowed", name);
    }
    CHECK(suites >= 3);
    const unsigned *list;
    int np = gnutls_priority_protocol_list(p, &list);
    for (int i = 0; i < np; i++)
        if (list[i] != GNUTLS_TLS1_2 && list[i] != GNUTLS_TLS1_3)
            FAILF("protocol %s allowed", gnutls_protocol_get_name(list[i]));
    CHECK(np == 2);
    gnutls_priority_deinit(p);
}

/* ---- HTTPS through src/http, with a GnuTLS client ---- */

static void h_ok(struct tk_req *r)
{
    tk_reply_json(r, 200, json_pack("{s:s}", "ok", "yes"));
}

static const struct tk_route tls_routes[] = {
    {"GET", "/ok", h_ok, .flags = 0},
};

/* Connect, handshake with priorities prio; on success send GET /ok and read
 * the answer's status line into status. Returns the handshake's GnuTLS
 * result; fp gets the SHA-256 fingerprint (hex) of the certificate seen. */
static int client(int port, const char *prio, int *status, char fp[65])
{
    *status = 0;
    fp[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return GNUTLS_E_PUSH_ERROR;
    }
    gnutls_session_t s;
    gnutls_certificate_credentials_t cred;
    gnutls_certificate_allocate_credentials(&cred);
    gnutls_init(&s, GNUTLS_CLIENT);
    const char *err = NULL;
    int g = gnutls_priority_set_direct(s, prio, &err);
    if (g < 0) FAILF("client priorities %s refused at %s", prio, err ? err : "?");
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, 10000);
    do {
        g = gnutls_handshake(s);
    } while (g < 0 && !gnutls_error_is_fatal(g));
    if (g == 0) {
        unsigned n = 0;
        const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &n);
        if (peers && n > 0) {
            unsigned char d[32];
            size_t dl = sizeof d;
            if (gnutls_fingerprint(GNUTLS_DIG_SHA256, &peers[0], d, &dl) == 0) tk_hex(d, dl, fp);
        }
        const char req[] = "GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if (gnutls_record_send(s, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
            char buf[2048];
            size_t got = 0;
            for (;;) {
                ssize_t r = gnutls_record_recv(s, buf + got, sizeof buf - 1 - got);
                if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) continue;
                if (r <= 0) break;
                got += (size_t)r;
                if (got == sizeof buf - 1) break;
            }
            buf[got] = '\0';
            if (sscanf(buf, "HTTP/1.1 %d", status) != 1) *status = -1;
        }
        gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
    close(fd);
    return g;
}

static const char *const P13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
static const char *const P12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
static const char *const P11 = "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0";
static const char *const P12_CBC =
    "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC";
static const char *const P12_RSA_KX = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA:+DHE-RSA";

struct reloader {
    struct tk_tls *t;
    const char *dir;
    atomic_bool stop;
    int reloads;
};

/* Swap the live files between a and b and reload, until told to stop. */
static void *reload_loop(void *arg)
{
    struct reloader *rl = arg;
    for (int i = 0; !atomic_load(&rl->stop) && i < 400; i++) {
        const char *n = i % 2 ? "a" : "b";
        char from[16], fromk[16];
        snprintf(from, sizeof from, "%s.pem", n);
        snprintf(fromk, sizeof fromk, "%s.key", n);
        copy_file(rl->dir, from, "live.pem");
        copy_file(rl->dir, fromk, "live.key");
        struct tk_err e;
        if (tk_tls_reload(rl->t, &e) == TK_OK) rl->reloads++;
    }
    return NULL;
}

/* Wait (bounded) until the server has counted want handshakes in all. */
static void wait_counted(struct tk_tls *t, uint64_t want)
{
    for (int i = 0; i < 500; i++) {
        struct tk_tls_stats st;
        tk_tls_stats(t, &st);
        if (st.handshakes_ok + st.handshakes_failed >= want) return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void test_tls_https(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_http *h = NULL;
    struct tk_tls *t = NULL;
    if (!make_pair(dir, "a", "unit-a", -60, 90 * DAY) ||
        !make_pair(dir, "b", "unit-b", -60, 90 * DAY))
        goto out;
    copy_file(dir, "a.pem", "live.pem");
    copy_file(dir, "a.key", "live.key");
    struct tk_err e;
    if (!CHECK_OK(open_pair(dir, "live", "live", &t, &e), &e)) goto out;
    struct tk_http_opts o = {
        .listen = "127.0.0.1:0",
        .threads = 2,
        .max_body = 65536,
        .max_header = 16384,
        .max_connections = 32,
        .max_connections_per_ip = 32,
        .idle_timeout = 10,
        .header_timeout = 10,
        .routes = tls_routes,
        .nroutes = TK_NELEM(tls_routes),
        .tls = t,
    };
    if (!CHECK_OK(tk_http_start(&o, &h, &e), &e)) goto out;
    int port = tk_http_port(h), status;
    char fa[65], fb[65], fp[65];
    fingerprint_of(t, fa);

    CHECK_EQ_INT(client(port, P13, &status, fp), 0);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_STR(fp, fa);
    CHECK_EQ_INT(client(port, P12, &status, fp), 0);
    CHECK_EQ_INT(status, 200);
    wait_counted(t, 2);
    struct tk_tls_stats st;
    tk_tls_stats(t, &st);
    CHECK_EQ_INT(st.handshakes_ok, 2);
    /* refused: TLS 1.1 and 1.0, CBC ciphers only, no ECDHE */
    CHECK(client(port, P11, &status, fp) < 0);
    CHECK(client(port, P12_CBC, &status, fp) < 0);
    CHECK(client(port, P12_RSA_KX, &status, fp) < 0);
    wait_counted(t, 5);
    tk_tls_stats(t, &st);
    CHECK_EQ_INT(st.handshakes_ok, 2);
    CHECK_EQ_INT(st.handshakes_failed, 3);
    /* plain HTTP to the TLS port: no answer, the connection closed */
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)) {
            const char req[] = "GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n";
            CHECK(send(fd, req, sizeof req - 1, MSG_NOSIGNAL) > 0);
            char buf[256];
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            CHECK(r <= 0 || memcmp(buf, "HTTP/", 5) != 0);
        }
        close(fd);
    }
    /* a reload: the next handshake gets the new certificate */
    copy_file(dir, "b.pem", "live.pem");
    copy_file(dir, "b.key", "live.key");
    CHECK_OK(tk_tls_reload(t, &e), &e);
    fingerprint_of(t, fb);
    CHECK_EQ_INT(client(port, P13, &status, fp), 0);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_STR(fp, fb);
    /* a failed reload: still b */
    write_text(dir, "live.key", "garbage");
    CHECK_EQ_INT(tk_tls_reload(t, &e), TK_EINVAL);
    CHECK_EQ_INT(client(port, P12, &status, fp), 0);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_STR(fp, fb);
    /* handshakes while another thread reloads again and again: each gets a
     * whole pair, a or b, and nothing is freed under a session (ASan) */
    {
        struct reloader rl = {.t = t, .dir = dir};
        atomic_init(&rl.stop, false);
        pthread_t th;
        if (CHECK(pthread_create(&th, NULL, reload_loop, &rl) == 0)) {
            for (int i = 0; i < 20; i++) {
                int g = client(port, i % 2 ? P13 : P12, &status, fp);
                if (g != 0 || status != 200 || (strcmp(fp, fa) && strcmp(fp, fb)))
                    FAILF("handshake %d during reloads: %s, status %d, certificate %.16s", i,
                          gnutls_strerror(g), status, fp);
            }
            atomic_store(&rl.stop, true);
            pthread_join(th, NULL);
            CHECK(rl.reloads > 0);
        }
    }
out:
    tk_http_stop(h);
    tk_tls_free(t);
    unit_rmtree(dir);
}

/* ---- public_url ---- */

void test_tls_public_url(void)
{
    static const char *const good[][2] = {
        {"https://tokend.example.com", "https://tokend.example.com"},
        {"https://tokend.example.com/", "https://tokend.example.com"},
        {"HTTPS://Tokend.Example.COM:443/", "https://tokend.example.com"},
        {"http://example.com:80", "http://example.com"},
        {"https://example.com:8443/tokend///", "https://example.com:8443/tokend"},
        {"http://127.0.0.1:8750", "http://127.0.0.1:8750"},
        {"https://[::1]:8443", "https://[::1]:8443"},
        {"https://[2001:DB8::1]", "https://[2001:db8::1]"},
        {"https://example.com/a/b%2Fc/~x", "https://example.com/a/b%2Fc/~x"},
    };
    for (size_t i = 0; i < TK_NELEM(good); i++) {
        char out[512], why[160];
        tk_rc rc = tk_config_public_url(good[i][0], out, sizeof out, why, sizeof why);
        if (rc != TK_OK)
            FAILF("%s refused: %s", good[i][0], why);
        else if (strcmp(out, good[i][1]) != 0)
            FAILF("%s -> %s, want %s", good[i][0], out, good[i][1]);
    }
    static const char *const bad[][2] = {
        {"", "absolute URL"},
        {"example.com", "https://"},
        {"ftp://example.com", "https://"},
        {"https://", "no host"},
        {"https:///path", "no host"},
        {"https://example.com?x=1", "query"},
        {"https://example.com/#frag", "fragment"},
        {"https://user:pw@example.com", "user name"},
        {"https://exa mple.com", "spaces"},
        {"https://example.com/\x01", "control"},
        {"https://ex\xc3\xa9.com", "non-ASCII"},
        {"https://example.com:0", "port"},
        {"https://example.com:65536", "port"},
        {"https://example.com:", "port"},
        {"https://example.com:80a", "port"},
        {"https://exa_mple.com", "host with characters"},
        {"https://[::1", "closing"},
        {"https://[::1]x", ":port"},
        {"https://[zz::1]", "IPv6"},
        {"https://[441]:4/", "not an IPv6 address"},
        {"https://[1.2.3.4]", "not an IPv6 address"},
        {"https://example.com/a/../b", "'..'"},
        {"https://example.com/./b", "'.'"},
        {"https://example.com/a//b", "empty"},
        {"https://example.com/a%2", "two hex"},
        {"https://example.com/a%zz", "two hex"},
        {"https://example.com/a\"b", "character '\"'"},
        {"https://example.com/a<b", "character '<'"},
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        char out[512], why[160];
        tk_rc rc = tk_config_public_url(bad[i][0], out, sizeof out, why, sizeof why);
        if (rc == TK_OK)
            FAILF("%s accepted as %s", bad[i][0], out);
        else if (!strstr(why, bad[i][1]))
            FAILF("%s: '%s' does not say %s", bad[i][0], why, bad[i][1]);
    }
    /* too long, and hostile bytes: refused or normalized, never overflowing */
    char longu[600];
    snprintf(longu, sizeof longu, "https://example.com/%0500d", 0);
    char out[512], why[160];
    CHECK_EQ_INT(tk_config_public_url(longu, out, sizeof out, why, sizeof why), TK_EINVAL);
    char small[20];
    CHECK_EQ_INT(tk_config_public_url("https://example.com/abcdefghij", small, sizeof small, why,
                                      sizeof why),
                 TK_EINVAL);
    for (int i = 0; i < 2000; i++) {
        unsigned char r[48];
        tk_random(r, sizeof r);
        char in[64] = "https://";
        for (size_t j = 0; j < sizeof r; j++)
            in[8 + j % 40] = (char)(r[j] % 2 ? "a.-:/[]%9@?#"[r[j] % 12] : (r[j] | 1));
        in[48] = '\0';
        if (tk_config_public_url(in, out, sizeof out, why, sizeof why) == TK_OK) {
            char again[512];
            if (tk_config_public_url(out, again, sizeof again, why, sizeof why) != TK_OK ||
                strcmp(out, again) != 0)
                FAILF("normal form not stable: %s -> %s", in, out);
            if (out[strlen(out) - 1] == '/') FAILF("trailing slash kept: %s", out);
        }
    }
    /* the settings: both TLS files or neither, and public_url normalized */
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    CHECK_OK(tk_config_set(&c, "tls_cert_file", "/x/cert.pem", "flag --tls_cert_file", &e), &e);
    CHECK_EQ_INT(tk_config_validate(&c, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "tls_key_file");
    CHECK(strstr(e.msg, "flag --tls_cert_file: tls_cert_file is set but tls_key_file is not"));
    tk_config_defaults(&c);
    CHECK_OK(tk_config_set(&c, "tls_key_file", "/x/key.pem", "environment TOKEND_TLS_KEY_FILE", &e),
             &e);
    CHECK_EQ_INT(tk_config_validate(&c, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "tls_cert_file");
    tk_config_defaults(&c);
    CHECK_OK(tk_config_set(&c, "public_url", "https://Example.com/t/", "flag --public_url", &e),
             &e);
    CHECK_OK(tk_config_validate(&c, &e), &e);
    CHECK_EQ_STR(c.public_url, "https://example.com/t");
    tk_config_defaults(&c);
    CHECK_OK(tk_config_set(&c, "public_url", "https://example.com/?a", "flag --public_url", &e),
             &e);
    CHECK_EQ_INT(tk_config_validate(&c, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "public_url");
    CHECK(strstr(e.msg, "flag --public_url: public_url must not have a query"));
}
