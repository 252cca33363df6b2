/*
 * jwt.c: JWS compact serialization (RFC 7515) for the authorization
 * server's tokens, with OpenSSL 3 EVP keys: ES256 (P-256, signatures in the
 * JOSE R||S form, never DER), RS256 (RSASSA-PKCS1-v1_5, RSA 2048) and EdDSA
 * (Ed25519). Public keys travel as JWKs (RFC 7517/7518/8037), identified by
 * their RFC 7638 thumbprint; private keys as PKCS#8 DER inside a
 * struct tk_secret (sealed by the caller, keys.c).
 *
 * The parser is strict on purpose: it is the door every bearer token comes
 * through. Three base64url parts without padding, at most TK_JWT_MAX bytes,
 * a JSON header with an asymmetric alg tokend knows (never "none", never
 * HS*), a kid, no "crit", no embedded or remote keys, the expected typ, a
 * JSON object as payload. The signature is checked against a key the
 * caller chose by kid, with that key's own alg (so an RS256 key never
 * verifies an ES256 header and the reverse). Errors say which part is wrong.
 */
#include "oauth.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <string.h>
#include <strings.h>

/* ---- base64url without padding ---- */

static const char b64a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t tk_jwt_b64_enc(const unsigned char *p, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64a[v >> 18 & 63];
        out[o++] = b64a[v >> 12 & 63];
        out[o++] = b64a[v >> 6 & 63];
        out[o++] = b64a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64a[v >> 18 & 63];
        out[o++] = b64a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64a[v >> 18 & 63];
        out[o++] = b64a[v >> 12 & 63];
        out[o++] = b64a[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Strict: the base64url alphabet only, no padding, no length that no
 * encoding has, unused trailing bits zero (one text per value). */
bool tk_jwt_b64_dec(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
    if (n % 4 == 1) return false;
    size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (need > cap) return false;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64v((unsigned char)s[i]);
        if (v < 0) return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return false; /* non-zero unused bits */
    *outlen = o;
    return true;
}

/* ---- algorithms ---- */

static const char *const alg_names[] = {
    [TK_JWT_ES256] = "ES256", [TK_JWT_RS256] = "RS256", [TK_JWT_EDDSA] = "EdDSA"};

enum tk_jwt_alg tk_jwt_alg_from_name(const char *name)
{
    for (int a = TK_JWT_ES256; a <= TK_JWT_EDDSA; a++)
        if (name && !strcmp(name, alg_names[a])) return (enum tk_jwt_alg)a;
    return TK_JWT_ALG_NONE;
}

const char *tk_jwt_alg_name(enum tk_jwt_alg a)
{
    return a >= TK_JWT_ES256 && a <= TK_JWT_EDDSA ? alg_names[a] : "none";
}

static tk_rc ossl_err(struct tk_err *e, const char *what)
{
    unsigned long code = ERR_get_error();
    char buf[160] = "";
    if (code) ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    return tk_err_set(e, TK_EINTERNAL, "crypto_error", "%s failed%s%s", what, buf[0] ? ": " : "",
                      buf);
}

/* Does pkey's type fit alg? */
static bool key_fits(EVP_PKEY *pkey, enum tk_jwt_alg alg)
{
    switch (alg) {
    case TK_JWT_ES256: {
        if (!EVP_PKEY_is_a(pkey, "EC")) return false;
        char group[32] = "";
        size_t gl = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            &gl))
            return false;
        return !strcmp(group, "prime256v1") || !strcmp(group, "P-256");
    }
    case TK_JWT_RS256:
        return EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >= 2048;
    case TK_JWT_EDDSA:
        return EVP_PKEY_is_a(pkey, "ED25519");
    default:
        return false;
    }
}

/* ---- JWKs ---- */

static json_t *b64_json(const unsigned char *p, size_t n)
{
    char *s = tk_malloc(n / 3 * 4 + 5);
    tk_jwt_b64_enc(p, n, s);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static tk_rc bn_param_b64(EVP_PKEY *pkey, const char *name, size_t pad, json_t **out,
                          struct tk_err *e)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, name, &bn)) return ossl_err(e, "reading a public key");
    size_t n = pad ? pad : (size_t)BN_num_bytes(bn);
    if (n == 0) n = 1;
    unsigned char *buf = tk_malloc(n);
    int w = BN_bn2binpad(bn, buf, (int)n);
    BN_free(bn);
    if (w < 0) {
        free(buf);
        return ossl_err(e, "encoding a public key");
    }
    *out = b64_json(buf, n);
    free(buf);
    return TK_OK;
}

tk_rc tk_jwt_jwk_public(EVP_PKEY *pkey, json_t **out, struct tk_err *e)
{
    *out = NULL;
    json_t *a = NULL, *b = NULL;
    tk_rc rc = TK_OK;
    if (EVP_PKEY_is_a(pkey, "EC")) {
        rc = bn_param_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32, &a, e);
        if (rc == TK_OK) rc = bn_param_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32, &b, e);
        if (rc == TK_OK)
            *out = json_pack("{s:s, s:s, s:o, s:o}", "kty", "EC", "crv", "P-256", "x", a, "y", b);
    } else if (EVP_PKEY_is_a(pkey, "RSA")) {
        rc = bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_N, 0, &a, e);
        if (rc == TK_OK) rc = bn_param_b64(pkey, OSSL_PKEY_PARAM_RSA_E, 0, &b, e);
        if (rc == TK_OK) *out = json_pack("{s:s, s:o, s:o}", "kty", "RSA", "n", a, "e", b);
    } else if (EVP_PKEY_is_a(pkey, "ED25519")) {
        unsigned char raw[32];
        size_t rl = sizeof raw;
        if (!EVP_PKEY_get_raw_public_key(pkey, raw, &rl) || rl != 32)
            return ossl_err(e, "reading an Ed25519 public key");
        *out = json_pack("{s:s, s:s, s:o}", "kty", "OKP", "crv", "Ed25519", "x", b64_json(raw, rl));
    } else {
        return tk_err_set(e, TK_EINVAL, "invalid_key", "the key is not EC P-256, RSA or Ed25519");
    }
    if (rc != TK_OK) {
        json_decref(a);
        json_decref(b);
        return rc;
    }
    return TK_OK;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* RFC 7638: SHA-256 over the required members in lexicographic order, no
 * whitespace. The values are base64url or fixed names, so no escaping. */
tk_rc tk_jwt_thumbprint(json_t *jwk, char out[TK_JWT_KID_MAX], struct tk_err *e)
{
    const char *kty = jstr(jwk, "kty");
    char buf[2048];
    int n;
    if (kty && !strcmp(kty, "EC") && jstr(jwk, "crv") && jstr(jwk, "x") && jstr(jwk, "y"))
        n = snprintf(buf, sizeof buf, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                     jstr(jwk, "crv"), jstr(jwk, "x"), jstr(jwk, "y"));
    else if (kty && !strcmp(kty, "RSA") && jstr(jwk, "e") && jstr(jwk, "n"))
        n = snprintf(buf, sizeof buf, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", jstr(jwk, "e"),
                     jstr(jwk, "n"));
    else if (kty && !strcmp(kty, "OKP") && jstr(jwk, "crv") && jstr(jwk, "x"))
        n = snprintf(buf, sizeof buf, "{\"crv\":\"%s\",\"kty\":\"OKP\",\"x\":\"%s\"}",
                     jstr(jwk, "crv"), jstr(jwk, "x"));
    else
        return tk_err_set(e, TK_EINVAL, "invalid_key", "the JWK lacks kty or its key members");
    if (n < 0 || (size_t)n >= sizeof buf)
        return tk_err_set(e, TK_EINVAL, "invalid_key", "the JWK is too large");
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)buf, (size_t)n, md);
    tk_jwt_b64_enc(md, sizeof md, out);
    return TK_OK;
}

static bool jwk_b64(json_t *jwk, const char *name, unsigned char *out, size_t cap, size_t *n)
{
    const char *s = jstr(jwk, name);
    return s && s[0] && tk_jwt_b64_dec(s, strlen(s), out, cap, n);
}

tk_rc tk_jwt_key_from_jwk(json_t *jwk, enum tk_jwt_alg alg, EVP_PKEY **out, struct tk_err *e)
{
    *out = NULL;
    const char *kty = jstr(jwk, "kty"), *crv = jstr(jwk, "crv");
    if (!json_is_object(jwk) || !kty)
        return tk_err_set(e, TK_EINVAL, "invalid_key", "the JWK is not an object with kty");
    if (alg == TK_JWT_EDDSA) {
        unsigned char x[32];
        size_t xl = 0;
        if (strcmp(kty, "OKP") || !crv || strcmp(crv, "Ed25519") ||
            !jwk_b64(jwk, "x", x, sizeof x, &xl) || xl != 32)
            return tk_err_set(e, TK_EINVAL, "invalid_key",
                              "an EdDSA JWK needs kty OKP, crv Ed25519 and a 32-byte x");
        *out = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xl);
        return *out ? TK_OK : ossl_err(e, "importing an Ed25519 key");
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    tk_rc rc = TK_OK;
    const char *type = NULL;
    unsigned char pt[65], tmp[33]; /* the builder keeps pointers until to_param */
    if (alg == TK_JWT_ES256) {
        size_t xl = 0, yl = 0;
        if (strcmp(kty, "EC") || !crv || strcmp(crv, "P-256") ||
            !jwk_b64(jwk, "x", tmp, sizeof tmp, &xl) || xl != 32) {
            rc = tk_err_set(e, TK_EINVAL, "invalid_key",
                            "an ES256 JWK needs kty EC, crv P-256 and 32-byte x and y");
            goto out;
        }
        memcpy(pt + 1, tmp, 32);
        if (!jwk_b64(jwk, "y", tmp, sizeof tmp, &yl) || yl != 32) {
            rc = tk_err_set(e, TK_EINVAL, "invalid_key",
                            "an ES256 JWK needs kty EC, crv P-256 and 32-byte x and y");
            goto out;
        }
        memcpy(pt + 33, tmp, 32);
        pt[0] = 4;
        type = "EC";
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt)) {
            rc = ossl_err(e, "building an EC key");
            goto out;
        }
    } else if (alg == TK_JWT_RS256) {
        unsigned char nb[1024], eb[16];
        size_t nl = 0, el = 0;
        if (strcmp(kty, "RSA") || !jwk_b64(jwk, "n", nb, sizeof nb, &nl) || nl < 256 ||
            !jwk_b64(jwk, "e", eb, sizeof eb, &el) || el == 0 || el > 8) {
            rc = tk_err_set(e, TK_EINVAL, "invalid_key",
                            "an RS256 JWK needs kty RSA, n of 2048 bits or more and e");
            goto out;
        }
        bn_n = BN_bin2bn(nb, (int)nl, NULL);
        bn_e = BN_bin2bn(eb, (int)el, NULL);
        type = "RSA";
        if (!bn_n || !bn_e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
            rc = ossl_err(e, "building an RSA key");
            goto out;
        }
    } else {
        rc = tk_err_set(e, TK_EINVAL, "invalid_key", "unsupported alg");
        goto out;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        *out = NULL;
        rc = tk_err_set(e, TK_EINVAL, "invalid_key", "the JWK is not a valid %s public key", type);
        ERR_clear_error();
        goto out;
    }
    if (!key_fits(*out, alg)) {
        EVP_PKEY_free(*out);
        *out = NULL;
        rc = tk_err_set(e, TK_EINVAL, "invalid_key", "the JWK does not fit alg %s",
                        tk_jwt_alg_name(alg));
    }
out:
    BN_free(bn_n);
    BN_free(bn_e);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

tk_rc tk_jwt_key_generate(enum tk_jwt_alg alg, EVP_PKEY **pkey, json_t **jwk,
                          char kid[TK_JWT_KID_MAX], struct tk_err *e)
{
    *pkey = NULL;
    *jwk = NULL;
    switch (alg) {
    case TK_JWT_ES256:
        *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case TK_JWT_RS256:
        *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)TK_JWT_RSA_BITS);
        break;
    case TK_JWT_EDDSA:
        *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    default:
        return tk_err_set(e, TK_EINVAL, "invalid_alg", "unsupported signing alg");
    }
    if (!*pkey) return ossl_err(e, "generating a signing key");
    tk_rc rc = tk_jwt_jwk_public(*pkey, jwk, e);
    if (rc == TK_OK) rc = tk_jwt_thumbprint(*jwk, kid, e);
    if (rc == TK_OK) {
        json_object_set_new(*jwk, "kid", json_string(kid));
        json_object_set_new(*jwk, "alg", json_string(tk_jwt_alg_name(alg)));
        json_object_set_new(*jwk, "use", json_string("sig"));
        return TK_OK;
    }
    EVP_PKEY_free(*pkey);
    json_decref(*jwk);
    *pkey = NULL;
    *jwk = NULL;
    return rc;
}

tk_rc tk_jwt_key_export(EVP_PKEY *pkey, struct tk_secret **der, struct tk_err *e)
{
    *der = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pkey);
    if (!p8) return ossl_err(e, "exporting a signing key");
    unsigned char *buf = NULL;
    int n = i2d_PKCS8_PRIV_KEY_INFO(p8, &buf);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (n <= 0) return ossl_err(e, "encoding a signing key");
    *der = tk_secret_new(buf, (size_t)n);
    OPENSSL_clear_free(buf, (size_t)n);
    return TK_OK;
}

tk_rc tk_jwt_key_import(const struct tk_secret *der, enum tk_jwt_alg alg, EVP_PKEY **out,
                        struct tk_err *e)
{
    *out = NULL;
    const unsigned char *p = der->p;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der->len);
    if (p8) {
        *out = EVP_PKCS82PKEY(p8);
        PKCS8_PRIV_KEY_INFO_free(p8);
    }
    if (!*out || !key_fits(*out, alg)) {
        EVP_PKEY_free(*out);
        *out = NULL;
        ERR_clear_error();
        return tk_err_set(e, TK_EINTERNAL, "invalid_key",
                          "the stored private key is not a PKCS#8 %s key", tk_jwt_alg_name(alg));
    }
    return TK_OK;
}

/* ---- signing ---- */

static tk_rc sign_raw(EVP_PKEY *key, enum tk_jwt_alg alg, const char *in, size_t n,
                      unsigned char *sig, size_t *siglen, struct tk_err *e)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[160];
    size_t dl = sizeof der;
    tk_rc rc = TK_OK;
    if (!md) return ossl_err(e, "signing");
    const EVP_MD *h = alg == TK_JWT_EDDSA ? NULL : EVP_sha256();
    if (EVP_DigestSignInit(md, NULL, h, NULL, key) <= 0) {
        rc = ossl_err(e, "signing");
        goto out;
    }
    if (alg != TK_JWT_ES256) {
        if (EVP_DigestSign(md, sig, siglen, (const unsigned char *)in, n) <= 0)
            rc = ossl_err(e, "signing");
        goto out;
    }
    /* ES256: OpenSSL gives DER; JOSE wants R||S, 32 bytes each */
    if (EVP_DigestSign(md, der, &dl, (const unsigned char *)in, n) <= 0) {
        rc = ossl_err(e, "signing");
        goto out;
    }
    const unsigned char *dp = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &dp, (long)dl);
    if (!es) {
        rc = ossl_err(e, "decoding an ECDSA signature");
        goto out;
    }
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
        rc = ossl_err(e, "encoding an ECDSA signature");
    ECDSA_SIG_free(es);
    *siglen = 64;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

tk_rc tk_jwt_sign(EVP_PKEY *key, enum tk_jwt_alg alg, const char *kid, const char *typ,
                  json_t *claims, char **out, struct tk_err *e)
{
    *out = NULL;
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", tk_jwt_alg_name(alg), "kid", kid, "typ", typ);
    char *h = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *p = json_is_object(claims) ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(hdr);
    if (!h || !p) {
        free(h);
        free(p);
        return tk_err_set(e, TK_EINVAL, "invalid_claims", "the claims are not a JSON object");
    }
    size_t hl = strlen(h), pl = strlen(p);
    size_t cap = (hl + pl) / 3 * 4 + 16 + 1024 / 3 * 4 + 8;
    char *jwt = tk_malloc(cap);
    size_t n = tk_jwt_b64_enc((unsigned char *)h, hl, jwt);
    jwt[n++] = '.';
    n += tk_jwt_b64_enc((unsigned char *)p, pl, jwt + n);
    free(h);
    free(p);
    unsigned char sig[1024];
    size_t sl = sizeof sig;
    tk_rc rc = sign_raw(key, alg, jwt, n, sig, &sl, e);
    if (rc != TK_OK) {
        free(jwt);
        return rc;
    }
    jwt[n++] = '.';
    tk_jwt_b64_enc(sig, sl, jwt + n);
    *out = jwt;
    return TK_OK;
}

/* ---- parsing and checking ---- */

void tk_jwt_clear(struct tk_jwt *t)
{
    json_decref(t->header);
    json_decref(t->claims);
    memset(t, 0, sizeof *t);
}

static tk_rc bad(struct tk_err *e, const char *fmt, const char *a)
{
    return tk_err_set(e, TK_EINVAL, "invalid_token", fmt, a);
}

static bool b64_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b64v((unsigned char)s[i]) < 0) return false;
    return true;
}

static tk_rc decode_json(const char *part, const char *s, size_t n, size_t cap, json_t **out,
                         struct tk_err *e)
{
    *out = NULL;
    if (n == 0) return bad(e, "jwt %s: empty", part);
    if (!b64_chars(s, n))
        return bad(e, "jwt %s: not base64url (only A-Z a-z 0-9 - _, no padding)", part);
    unsigned char *buf = tk_malloc(cap + 1);
    size_t len = 0;
    if (!tk_jwt_b64_dec(s, n, buf, cap, &len)) {
        free(buf);
        return bad(e, "jwt %s: not canonical base64url, or too large", part);
    }
    json_error_t je;
    *out = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!*out) return bad(e, "jwt %s: not valid JSON (or a duplicate member)", part);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return bad(e, "jwt %s: not a JSON object", part);
    }
    return TK_OK;
}

/* typ "at+jwt" also accepts "application/at+jwt" (RFC 7515 §4.1.9),
 * media types compared without case. */
static bool typ_matches(const char *got, const char *want)
{
    if (!strcasecmp(got, want)) return true;
    return !strncasecmp(got, "application/", 12) && !strcasecmp(got + 12, want);
}

tk_rc tk_jwt_parse(const char *jwt, size_t n, const char *typ, struct tk_jwt *t, struct tk_err *e)
{
    memset(t, 0, sizeof *t);
    if (!jwt || n == 0) return bad(e, "jwt: empty%s", "");
    if (n > TK_JWT_MAX) return bad(e, "jwt: longer than %s bytes", "8192");
    const char *d1 = memchr(jwt, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - jwt)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - jwt)))
        return bad(e, "jwt: not three base64url parts separated by '.'%s", "");
    size_t hl = (size_t)(d1 - jwt), pl = (size_t)(d2 - d1 - 1), sl = n - (size_t)(d2 + 1 - jwt);
    tk_rc rc = decode_json("header", jwt, hl, 2048, &t->header, e);
    if (rc != TK_OK) goto fail;
    /* header members */
    json_t *alg = json_object_get(t->header, "alg");
    if (!json_is_string(alg)) {
        rc = bad(e, "jwt header: alg is missing or not a string%s", "");
        goto fail;
    }
    const char *an = json_string_value(alg);
    if (!strcasecmp(an, "none")) {
        rc = bad(e, "jwt header: alg 'none' is never accepted%s", "");
        goto fail;
    }
    if (!strncasecmp(an, "HS", 2)) {
        rc = bad(e, "jwt header: alg '%.16s' (a shared-secret MAC) is never accepted", an);
        goto fail;
    }
    t->alg = tk_jwt_alg_from_name(an);
    if (t->alg == TK_JWT_ALG_NONE) {
        rc = bad(e, "jwt header: alg '%.16s' is not one of ES256, RS256, EdDSA", an);
        goto fail;
    }
    if (json_object_get(t->header, "crit")) {
        rc = bad(e, "jwt header: crit is not supported (no extension is understood)%s", "");
        goto fail;
    }
    static const char *const keyrefs[] = {"jku", "jwk", "x5u", "x5c"};
    for (size_t i = 0; i < TK_NELEM(keyrefs); i++)
        if (json_object_get(t->header, keyrefs[i])) {
            rc = bad(e, "jwt header: %s is not accepted (keys come from tokend's JWKS only)",
                     keyrefs[i]);
            goto fail;
        }
    const char *kid = json_string_value(json_object_get(t->header, "kid"));
    if (!kid || !kid[0] || strlen(kid) >= TK_JWT_KID_MAX) {
        rc = bad(e, "jwt header: kid is missing, not a string or longer than %s characters", "63");
        goto fail;
    }
    snprintf(t->kid, sizeof t->kid, "%s", kid);
    json_t *jt = json_object_get(t->header, "typ");
    if (jt && !json_is_string(jt)) {
        rc = bad(e, "jwt header: typ is not a string%s", "");
        goto fail;
    }
    if (typ && (!jt || !typ_matches(json_string_value(jt), typ))) {
        rc =
            tk_err_set(e, TK_EINVAL, "invalid_token", "jwt header: typ is %s%.40s%s, expected '%s'",
                       jt ? "'" : "", jt ? json_string_value(jt) : "missing", jt ? "'" : "", typ);
        goto fail;
    }
    rc = decode_json("payload", d1 + 1, pl, TK_JWT_MAX, &t->claims, e);
    if (rc != TK_OK) goto fail;
    if (sl == 0 || !b64_chars(d2 + 1, sl) ||
        !tk_jwt_b64_dec(d2 + 1, sl, t->sig, sizeof t->sig, &t->sig_len)) {
        rc = bad(e, "jwt signature: missing, not canonical base64url or longer than %s bytes",
                 "512");
        goto fail;
    }
    if ((t->alg == TK_JWT_ES256 || t->alg == TK_JWT_EDDSA) && t->sig_len != 64) {
        rc = bad(e, "jwt signature: %s signatures are 64 bytes", tk_jwt_alg_name(t->alg));
        goto fail;
    }
    t->signed_len = hl + 1 + pl;
    return TK_OK;
fail:
    tk_jwt_clear(t);
    return rc;
}

tk_rc tk_jwt_check(const struct tk_jwt *t, const char *jwt, EVP_PKEY *key, enum tk_jwt_alg alg,
                   struct tk_err *e)
{
    if (t->alg != alg)
        return tk_err_set(e, TK_EINVAL, "invalid_token",
                          "jwt header: alg '%s' is not the alg of key '%s' (%s)",
                          tk_jwt_alg_name(t->alg), t->kid, tk_jwt_alg_name(alg));
    if (!key_fits(key, alg))
        return tk_err_set(e, TK_EINVAL, "invalid_token", "jwt: key '%s' does not fit alg %s",
                          t->kid, tk_jwt_alg_name(alg));
    const unsigned char *sig = t->sig;
    size_t sl = t->sig_len;
    unsigned char der[128];
    if (alg == TK_JWT_ES256) { /* R||S back to DER for OpenSSL */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(t->sig, 32, NULL), *s = BN_bin2bn(t->sig + 32, 32, NULL);
        if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return ossl_err(e, "decoding an ECDSA signature");
        }
        unsigned char *dp = der;
        int dl = i2d_ECDSA_SIG(es, NULL);
        if (dl <= 0 || (size_t)dl > sizeof der || i2d_ECDSA_SIG(es, &dp) != dl) {
            ECDSA_SIG_free(es);
            return ossl_err(e, "encoding an ECDSA signature");
        }
        ECDSA_SIG_free(es);
        sig = der;
        sl = (size_t)dl;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    const EVP_MD *h = alg == TK_JWT_EDDSA ? NULL : EVP_sha256();
    int ok = md && EVP_DigestVerifyInit(md, NULL, h, NULL, key) > 0 &&
             EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, t->signed_len) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (!ok)
        return tk_err_set(e, TK_EINVAL, "invalid_token",
                          "jwt signature: does not verify with key '%s' (%s)", t->kid,
                          tk_jwt_alg_name(alg));
    return TK_OK;
}
