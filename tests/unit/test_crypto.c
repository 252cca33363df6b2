/* test_crypto.c: src/keyring/keyring_internal.h -- AES-256-GCM against the
 * GCM specification's test cases (McGrew & Viega, test cases 13, 14, 16),
 * base64url against RFC 4648 §10, and Shamir shares. */
#include "unit.h"

#include "../../src/keyring/keyring_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

void test_crypto_aead_vectors(void)
{
    static const struct {
        const char *key, *iv, *ad, *pt, *ct, *tag;
    } v[] = {
        /* test case 13 */
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
        /* test case 14 */
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "", "00000000000000000000000000000000",
         "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
        /* test case 16: additional data, a partial last block */
        {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
         "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
         "49a6b525b16aedf5aa0de657ba637b39",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10"
         "56828838c5f61e6393ba7a0abcc9f662",
         "76fc6ece0f4e1768cddf8853bb2d551b"},
    };
    for (size_t i = 0; i < TK_NELEM(v); i++) {
        unsigned char key[32], iv[12], ad[64], pt[128], want[160], out[160], back[128];
        unhex(v[i].key, key);
        unhex(v[i].iv, iv);
        size_t adl = unhex(v[i].ad, ad);
        size_t ptl = unhex(v[i].pt, pt);
        size_t ctl = unhex(v[i].ct, want);
        unhex(v[i].tag, want + ctl);
        CHECK_EQ_INT(ctl, ptl);
        memset(out, 0xee, sizeof out);
        if (!CHECK_EQ_INT(tk_aead_seal(key, iv, ad, adl, pt, ptl, out), TK_OK)) continue;
        if (memcmp(out, want, ptl + TK_AEAD_TAG) != 0)
            FAILF("GCM test vector %zu: wrong output", i);
        CHECK_EQ_INT(out[ptl + TK_AEAD_TAG], 0xee); /* nothing written past the tag */
        memset(back, 0xee, sizeof back);
        CHECK_EQ_INT(tk_aead_open(key, iv, ad, adl, want, ptl + TK_AEAD_TAG, back), TK_OK);
        CHECK(memcmp(back, pt, ptl) == 0);
    }
}

void test_crypto_aead_tamper(void)
{
    unsigned char key[32], nonce[12], out[64 + TK_AEAD_TAG], back[64];
    tk_random(key, sizeof key);
    tk_random(nonce, sizeof nonce);
    const char *pt = "refresh-token-plaintext-0123456789";
    size_t n = strlen(pt);
    const char *ad = "tenant|connections|refresh_token|row-1";
    CHECK_OK(tk_aead_seal(key, nonce, ad, strlen(ad), pt, n, out), NULL);
    CHECK(memcmp(out, pt, n) != 0);
    CHECK_OK(tk_aead_open(key, nonce, ad, strlen(ad), out, n + TK_AEAD_TAG, back), NULL);
    CHECK(memcmp(back, pt, n) == 0);
    /* every flipped bit, in ciphertext or tag, is refused, and nothing is released */
    int accepted = 0, leaked = 0;
    for (size_t i = 0; i < (n + TK_AEAD_TAG) * 8; i++) {
        out[i / 8] ^= (unsigned char)(1u << (i % 8));
        memset(back, 0, sizeof back);
        if (tk_aead_open(key, nonce, ad, strlen(ad), out, n + TK_AEAD_TAG, back) != TK_EINVAL)
            accepted++;
        for (size_t k = 0; k < n; k++)
            if (back[k]) {
                leaked++;
                break;
            }
        out[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    CHECK_EQ_INT(accepted, 0);
    CHECK_EQ_INT(leaked, 0);
    /* another row (additional data), key or nonce: refused */
    const char *ad2 = "tenant|connections|refresh_token|row-2";
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad2, strlen(ad2), out, n + TK_AEAD_TAG, back), TK_EINVAL);
    CHECK_EQ_INT(tk_aead_open(key, nonce, NULL, 0, out, n + TK_AEAD_TAG, back), TK_EINVAL);
    key[0] ^= 1;
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad, strlen(ad), out, n + TK_AEAD_TAG, back), TK_EINVAL);
    key[0] ^= 1;
    nonce[11] ^= 0x80;
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad, strlen(ad), out, n + TK_AEAD_TAG, back), TK_EINVAL);
    nonce[11] ^= 0x80;
    /* truncated: shorter than a tag, or missing its last byte */
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad, strlen(ad), out, TK_AEAD_TAG - 1, back), TK_EINVAL);
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad, strlen(ad), out, 0, back), TK_EINVAL);
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad, strlen(ad), out, n + TK_AEAD_TAG - 1, back),
                 TK_EINVAL);
    CHECK_OK(tk_aead_open(key, nonce, ad, strlen(ad), out, n + TK_AEAD_TAG, back), NULL);
    /* two seals of one text under two nonces differ */
    unsigned char out2[64 + TK_AEAD_TAG], nonce2[12];
    tk_random(nonce2, sizeof nonce2);
    CHECK_OK(tk_aead_seal(key, nonce2, ad, strlen(ad), pt, n, out2), NULL);
    CHECK(memcmp(out, out2, n + TK_AEAD_TAG) != 0);
    /* empty plaintext with additional data: a tag alone */
    CHECK_OK(tk_aead_seal(key, nonce, ad, strlen(ad), "", 0, out), NULL);
    CHECK_OK(tk_aead_open(key, nonce, ad, strlen(ad), out, TK_AEAD_TAG, back), NULL);
    CHECK_EQ_INT(tk_aead_open(key, nonce, ad2, strlen(ad2), out, TK_AEAD_TAG, back), TK_EINVAL);
}

void test_crypto_b64url(void)
{
    /* RFC 4648 §10, unpadded */
    static const char *v[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char enc[64];
    unsigned char dec[64];
    size_t dl;
    for (size_t i = 0; i < TK_NELEM(v); i++) {
        size_t n = tk_b64url_enc((const unsigned char *)v[i][0], strlen(v[i][0]), enc);
        CHECK_EQ_STR(enc, v[i][1]);
        CHECK_EQ_INT(n, strlen(v[i][1]));
        dl = 999;
        if (CHECK_OK(tk_b64url_dec(v[i][1], strlen(v[i][1]), dec, sizeof dec, &dl), NULL)) {
            CHECK_EQ_INT(dl, strlen(v[i][0]));
            CHECK(memcmp(dec, v[i][0], dl) == 0);
        }
    }
    /* the URL alphabet: - and _ instead of + and / */
    static const unsigned char hi[] = {0xfb, 0xff, 0xfe};
    tk_b64url_enc(hi, 3, enc);
    CHECK_EQ_STR(enc, "-__-");
    CHECK_OK(tk_b64url_dec("-__-", 4, dec, sizeof dec, &dl), NULL);
    CHECK(dl == 3 && memcmp(dec, hi, 3) == 0);
    /* refused: standard alphabet, padding, spaces, a lone char, non-canonical bits, small buffer */
    static const char *bad[] = {"+/8", "Zg==", "Zm9v Yg", "Z", "Zm9vY", "Zh", "Zm9", "Zm9vYmE\n"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        if (tk_b64url_dec(bad[i], strlen(bad[i]), dec, sizeof dec, &dl) != TK_EINVAL)
            FAILF("'%s' decoded", bad[i]);
    }
    CHECK_EQ_INT(tk_b64url_dec("Zm9vYmFy", 8, dec, 5, &dl), TK_EINVAL);
    CHECK_OK(tk_b64url_dec("Zm9vYmFy", 8, dec, 6, &dl), NULL);
    /* random round trips of every length up to 100 */
    unsigned char raw[100];
    char text[200];
    int bad_rt = 0;
    for (size_t n = 0; n <= sizeof raw; n++) {
        tk_random(raw, n);
        size_t tl = tk_b64url_enc(raw, n, text);
        unsigned char back[100];
        if (tl != (n * 4 + 2) / 3 || tk_b64url_dec(text, tl, back, sizeof back, &dl) != TK_OK ||
            dl != n || memcmp(back, raw, n) != 0)
            bad_rt++;
    }
    CHECK_EQ_INT(bad_rt, 0);
}

void test_crypto_shamir(void)
{
    unsigned char secret[32], got[32];
    char shares[16][TK_SHARE_MAX];
    struct tk_err e;
    for (int round = 0; round < 20; round++) {
        tk_random(secret, sizeof secret);
        if (!CHECK_OK(tk_shamir_split(secret, 5, 3, shares, &e), &e)) return;
        unsigned char xs[5], ys[5][32];
        for (int i = 0; i < 5; i++) {
            if (!CHECK_OK(tk_shamir_parse(shares[i], &xs[i], ys[i], &e), &e)) return;
            CHECK_EQ_INT(xs[i], i + 1);
            CHECK(strncmp(shares[i], "tks1-", 5) == 0);
        }
        /* every 3 of the 5 give the secret back, in any order */
        int wrong = 0;
        for (int a = 0; a < 5; a++)
            for (int b = a + 1; b < 5; b++)
                for (int c = b + 1; c < 5; c++) {
                    unsigned char sx[3] = {xs[c], xs[a], xs[b]};
                    unsigned char sy[3][32];
                    memcpy(sy[0], ys[c], 32);
                    memcpy(sy[1], ys[a], 32);
                    memcpy(sy[2], ys[b], 32);
                    if (tk_shamir_combine(sx, (const unsigned char(*)[32])sy, 3, got, &e) !=
                            TK_OK ||
                        memcmp(got, secret, 32) != 0)
                        wrong++;
                }
        CHECK_EQ_INT(wrong, 0);
        /* two are not enough; no share carries the secret */
        CHECK_OK(tk_shamir_combine(xs, (const unsigned char(*)[32])ys, 2, got, &e), &e);
        CHECK(memcmp(got, secret, 32) != 0);
        for (int i = 0; i < 5; i++)
            CHECK(memcmp(ys[i], secret, 32) != 0);
    }
    /* a share given twice */
    unsigned char xs[3] = {1, 2, 1}, ys[3][32] = {{0}};
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_shamir_combine(xs, (const unsigned char(*)[32])ys, 3, got, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "duplicate_share");
    /* bad counts */
    static const int nk[][2] = {{0, 0}, {17, 3}, {5, 0}, {3, 4}, {-1, 1}};
    for (size_t i = 0; i < TK_NELEM(nk); i++) {
        tk_err_clear(&e);
        if (tk_shamir_split(secret, nk[i][0], nk[i][1], shares, &e) != TK_EINVAL)
            FAILF("split %d of %d accepted", nk[i][1], nk[i][0]);
    }
    CHECK_OK(tk_shamir_split(secret, 16, 16, shares, &e), &e);
    CHECK_OK(tk_shamir_split(secret, 1, 1, shares, &e), &e);
}

void test_crypto_share_damage(void)
{
    unsigned char secret[32], x, y[32];
    char shares[3][TK_SHARE_MAX], s[TK_SHARE_MAX + 8];
    struct tk_err e;
    tk_random(secret, sizeof secret);
    if (!CHECK_OK(tk_shamir_split(secret, 3, 2, shares, &e), &e)) return;
    const char *sh = shares[1];
    size_t len = strlen(sh);
    /* pasted with a newline or spaces around: fine */
    snprintf(s, sizeof s, "  %s\n", sh);
    CHECK_OK(tk_shamir_parse(s, &x, y, &e), &e);
    CHECK_EQ_INT(x, 2);
    /* every single-character change after the number is refused */
    int accepted = 0;
    const char *body = strchr(sh + 5, '-') + 1;
    for (size_t pos = (size_t)(body - sh); pos < len; pos++) {
        for (const char *c = "AZaz09-_f"; *c; c++) {
            if (sh[pos] == *c) continue;
            memcpy(s, sh, len + 1);
            s[pos] = *c;
            tk_err_clear(&e);
            if (tk_shamir_parse(s, &x, y, &e) == TK_OK && accepted++ < 3)
                FAILF("share with '%c' at %zu accepted", *c, pos);
        }
    }
    CHECK_EQ_INT(accepted, 0);
    /* the number changed: the checksum covers it */
    memcpy(s, sh, len + 1);
    s[5] = '3';
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_shamir_parse(s, &x, y, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "corrupt_share");
    /* truncated, extended, foreign, empty */
    memcpy(s, sh, len + 1);
    s[len - 1] = '\0';
    CHECK_EQ_INT(tk_shamir_parse(s, &x, y, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "malformed_share");
    snprintf(s, sizeof s, "%sa", sh);
    CHECK_EQ_INT(tk_shamir_parse(s, &x, y, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_shamir_parse("", &x, y, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_shamir_parse("tks1-", &x, y, &e), TK_EINVAL);
    CHECK_EQ_INT(
        tk_shamir_parse("tks1-0-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-000000", &x, y, &e),
        TK_EINVAL);
    CHECK_EQ_INT(
        tk_shamir_parse("tks1-256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-000000", &x, y, &e),
        TK_EINVAL);
    memcpy(s, sh, len + 1);
    memcpy(s, "tks2", 4);
    CHECK_EQ_INT(tk_shamir_parse(s, &x, y, &e), TK_EINVAL);
    /* messages never quote the share */
    memcpy(s, sh, len + 1);
    s[20] = s[20] == 'A' ? 'B' : 'A';
    tk_shamir_parse(s, &x, y, &e);
    char part[13];
    memcpy(part, body + 4, 12);
    part[12] = '\0';
    CHECK(strstr(e.msg, part) == NULL);
}
