/* crypto.c: AES-256-GCM, base64url and Shamir shares for the keyring. See
 * keyring_internal.h. */
#include "keyring_internal.h"

#include <libgfshare.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

tk_rc tk_aead_seal(const unsigned char key[TK_AEAD_KEY], const unsigned char nonce[TK_AEAD_NONCE],
                   const void *ad, size_t adlen, const void *pt, size_t len, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c != NULL;
    if (len > INT32_MAX || adlen > INT32_MAX) ok = 0;
    ok = ok && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, TK_AEAD_NONCE, NULL);
    ok = ok && EVP_EncryptInit_ex(c, NULL, NULL, key, nonce);
    ok = ok && (adlen == 0 || EVP_EncryptUpdate(c, NULL, &n, ad, (int)adlen));
    ok = ok && (len == 0 || EVP_EncryptUpdate(c, out, &n, pt, (int)len));
    ok = ok && EVP_EncryptFinal_ex(c, out + n, &n);
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TK_AEAD_TAG, out + len);
    EVP_CIPHER_CTX_free(c);
    return ok ? TK_OK : TK_EINTERNAL;
}

tk_rc tk_aead_open(const unsigned char key[TK_AEAD_KEY], const unsigned char nonce[TK_AEAD_NONCE],
                   const void *ad, size_t adlen, const unsigned char *in, size_t len,
                   unsigned char *out)
{
    if (len < TK_AEAD_TAG || len > INT32_MAX || adlen > INT32_MAX) return TK_EINVAL;
    size_t ctlen = len - TK_AEAD_TAG;
    unsigned char tag[TK_AEAD_TAG];
    memcpy(tag, in + ctlen, TK_AEAD_TAG);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c != NULL;
    ok = ok && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, TK_AEAD_NONCE, NULL);
    ok = ok && EVP_DecryptInit_ex(c, NULL, NULL, key, nonce);
    ok = ok && (adlen == 0 || EVP_DecryptUpdate(c, NULL, &n, ad, (int)adlen));
    ok = ok && (ctlen == 0 || EVP_DecryptUpdate(c, out, &n, in, (int)ctlen));
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TK_AEAD_TAG, tag);
    int fin = ok && EVP_DecryptFinal_ex(c, out + n, &n) > 0;
    EVP_CIPHER_CTX_free(c);
    if (!fin) {
        tk_wipe(out, ctlen);
        return TK_EINVAL;
    }
    return TK_OK;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t tk_b64url_enc(const unsigned char *p, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

tk_rc tk_b64url_dec(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
    if (n % 4 == 1) return TK_EINVAL;
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (need > cap) return TK_EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0) return TK_EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* Non-canonical trailing bits would let two texts decode alike. */
    if (bits && (acc & ((1u << bits) - 1))) return TK_EINVAL;
    *outlen = o;
    return TK_OK;
}

/* ---- Shamir ---- */

static uint32_t crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void csprng_fill(unsigned char *p, unsigned int n)
{
    tk_random(p, n);
}

static void share_text(unsigned char x, const unsigned char y[32], char out[TK_SHARE_MAX])
{
    unsigned char buf[33];
    buf[0] = x;
    memcpy(buf + 1, y, 32);
    char enc[48];
    tk_b64url_enc(y, 32, enc);
    snprintf(out, TK_SHARE_MAX, "tks1-%u-%s-%06x", x, enc, crc32(buf, 33) & 0xffffffu);
    tk_wipe(buf, sizeof buf);
    tk_wipe(enc, sizeof enc);
}

tk_rc tk_shamir_split(const unsigned char secret[32], int n, int k, char (*shares)[TK_SHARE_MAX],
                      struct tk_err *e)
{
    if (n < 1 || n > 16 || k < 1 || k > n)
        return tk_err_set(e, TK_EINVAL, "invalid_shares",
                          "shares must be 1 to 16 and threshold 1 to shares (got %d of %d)", k, n);
    gfshare_fill_rand = csprng_fill; /* never libc random() */
    unsigned char xs[16], y[32], sec[32];
    for (int i = 0; i < n; i++) xs[i] = (unsigned char)(i + 1);
    memcpy(sec, secret, 32);
    gfshare_ctx *g = gfshare_ctx_init_enc(xs, (unsigned)n, (unsigned char)k, 32);
    if (!g) return tk_err_set(e, TK_EINTERNAL, "shamir_failed", "cannot split the key");
    gfshare_ctx_enc_setsecret(g, sec);
    for (int i = 0; i < n; i++) {
        gfshare_ctx_enc_getshare(g, (unsigned char)i, y);
        share_text(xs[i], y, shares[i]);
    }
    gfshare_ctx_free(g);
    tk_wipe(y, sizeof y);
    tk_wipe(sec, sizeof sec);
    return TK_OK;
}

tk_rc tk_shamir_parse(const char *s, unsigned char *x, unsigned char y[32], struct tk_err *e)
{
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ')) len--;
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    if (len < 10 || len >= TK_SHARE_MAX || strncmp(s, "tks1-", 5) != 0)
        return tk_err_set(e, TK_EINVAL, "malformed_share",
                          "an unseal share looks like tks1-<n>-<43 characters>-<6 hex>; this "
                          "one does not start that way or has the wrong length");
    const char *p = s + 5;
    int64_t xv;
    const char *d1 = memchr(p, '-', len - 5);
    char num[8];
    if (!d1 || d1 - p < 1 || d1 - p > 3)
        return tk_err_set(e, TK_EINVAL, "malformed_share", "the share number is missing");
    memcpy(num, p, (size_t)(d1 - p));
    num[d1 - p] = '\0';
    if (tk_parse_int(num, 1, 255, &xv) != TK_OK)
        return tk_err_set(e, TK_EINVAL, "malformed_share", "the share number must be 1 to 255");
    const char *body = d1 + 1;
    const char *end = s + len;
    if (end - body != 43 + 1 + 6 || body[43] != '-')
        return tk_err_set(e, TK_EINVAL, "malformed_share",
                          "share %d has %d characters after its number; 50 are expected "
                          "(truncated or extended?)",
                          (int)xv, (int)(end - body));
    size_t yl;
    if (tk_b64url_dec(body, 43, y, 32, &yl) != TK_OK || yl != 32)
        return tk_err_set(e, TK_EINVAL, "malformed_share",
                          "share %d has a character outside the share alphabet", (int)xv);
    unsigned char buf[33];
    buf[0] = (unsigned char)xv;
    memcpy(buf + 1, y, 32);
    char want[8];
    snprintf(want, sizeof want, "%06x", crc32(buf, 33) & 0xffffffu);
    tk_wipe(buf, sizeof buf);
    if (memcmp(want, body + 44, 6) != 0) {
        tk_wipe(y, 32);
        return tk_err_set(e, TK_EINVAL, "corrupt_share",
                          "share %d fails its checksum: a character was mistyped", (int)xv);
    }
    *x = (unsigned char)xv;
    return TK_OK;
}

tk_rc tk_shamir_combine(const unsigned char *xs, const unsigned char (*ys)[32], int k,
                        unsigned char secret[32], struct tk_err *e)
{
    if (k < 1 || k > 255) return tk_err_set(e, TK_EINVAL, "invalid_shares", "no shares given");
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (xs[i] == xs[j])
                return tk_err_set(e, TK_EINVAL, "duplicate_share",
                                  "share %d was given twice; each share counts once", xs[i]);
    unsigned char nrs[255], y[32];
    memcpy(nrs, xs, (size_t)k);
    /* Debian's libgfshare leaves its random hook NULL and may call it from
     * the decoder too: always point it at the OS CSPRNG. */
    gfshare_fill_rand = csprng_fill;
    gfshare_ctx *g = gfshare_ctx_init_dec(nrs, (unsigned)k, 32);
    if (!g) return tk_err_set(e, TK_EINTERNAL, "shamir_failed", "cannot combine the shares");
    for (int i = 0; i < k; i++) {
        memcpy(y, ys[i], 32);
        gfshare_ctx_dec_giveshare(g, (unsigned char)i, y);
    }
    gfshare_ctx_dec_extract(g, secret);
    gfshare_ctx_free(g);
    tk_wipe(y, sizeof y);
    return TK_OK;
}
