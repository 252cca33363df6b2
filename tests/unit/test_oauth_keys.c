/* test_oauth_keys.c: signing keys and JWTs (src/oauth/jwt.c, keys.c,
 * src/api/oauth_keys_api.c): sign then verify per alg, tampering, alg
 * confusion, hostile tokens, known answers (tokens and JWKs made by Node's
 * node:crypto, the RFC 7638 thumbprint example), the store's rotation rules
 * and one winner of concurrent rotations, and the node's in-memory keys
 * (sign, verify, JWKS, sealed). */
#include "unit.h"

#include "../../src/api/api.h"
#include "../../src/operators/operators.h"
#include "../../src/oauth/oauth.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const enum tk_jwt_alg algs[] = {TK_JWT_ES256, TK_JWT_RS256, TK_JWT_EDDSA};

/* Re-encode part (0 header, 1 payload) of jwt with text, keeping the rest. */
static char *replace_part(const char *jwt, int part, const char *text)
{
    const char *d1 = strchr(jwt, '.'), *d2 = strchr(d1 + 1, '.');
    char enc[4096];
    tk_jwt_b64_enc((const unsigned char *)text, strlen(text), enc);
    char *out = tk_malloc(strlen(jwt) + strlen(enc) + 4);
    if (part == 0)
        sprintf(out, "%s%s", enc, d1);
    else
        sprintf(out, "%.*s.%s%s", (int)(d1 - jwt), jwt, enc, d2);
    return out;
}

static tk_rc verify_with(const char *jwt, EVP_PKEY *key, enum tk_jwt_alg alg, const char *typ,
                         struct tk_err *e)
{
    struct tk_jwt t;
    tk_rc rc = tk_jwt_parse(jwt, strlen(jwt), typ, &t, e);
    if (rc == TK_OK) rc = tk_jwt_check(&t, jwt, key, alg, e);
    tk_jwt_clear(&t);
    return rc;
}

void test_oauth_jwt_algs(void)
{
    for (size_t i = 0; i < TK_NELEM(algs); i++) {
        enum tk_jwt_alg alg = algs[i];
        struct tk_err e;
        EVP_PKEY *key = NULL, *pub = NULL, *back = NULL;
        json_t *jwk = NULL, *claims = json_pack("{s:s, s:i, s:s}", "sub", "u1", "exp", 2000000000,
                                                "scope", "a b");
        char kid[TK_JWT_KID_MAX], kid2[TK_JWT_KID_MAX], *jwt = NULL, *jwt2 = NULL, *t2 = NULL;
        struct tk_secret *der = NULL;
        if (!CHECK_OK(tk_jwt_key_generate(alg, &key, &jwk, kid, &e), &e)) goto next;
        CHECK_EQ_INT(strlen(kid), 43); /* SHA-256, base64url */
        CHECK_EQ_STR(json_string_value(json_object_get(jwk, "kid")), kid);
        CHECK_EQ_STR(json_string_value(json_object_get(jwk, "alg")), tk_jwt_alg_name(alg));
        CHECK_EQ_STR(json_string_value(json_object_get(jwk, "use")), "sig");
        CHECK(!json_object_get(jwk, "d") && !json_object_get(jwk, "p")); /* public only */
        if (!CHECK_OK(tk_jwt_thumbprint(jwk, kid2, &e), &e)) goto next;
        CHECK_EQ_STR(kid2, kid);
        if (!CHECK_OK(tk_jwt_key_from_jwk(jwk, alg, &pub, &e), &e)) goto next;
        if (!CHECK_OK(tk_jwt_sign(key, alg, kid, "at+jwt", claims, &jwt, &e), &e)) goto next;
        /* sign then verify with the JWK's public key */
        struct tk_jwt t;
        if (CHECK_OK(tk_jwt_parse(jwt, strlen(jwt), "at+jwt", &t, &e), &e)) {
            CHECK_EQ_STR(t.kid, kid);
            CHECK_EQ_INT(t.alg, alg);
            CHECK_EQ_STR(json_string_value(json_object_get(t.header, "typ")), "at+jwt");
            CHECK(json_equal(t.claims, claims));
            CHECK_OK(tk_jwt_check(&t, jwt, pub, alg, &e), &e);
            tk_jwt_clear(&t);
        }
        if (alg == TK_JWT_ES256) { /* JOSE R||S, not DER */
            const char *s = strrchr(jwt, '.') + 1;
            CHECK_EQ_INT(strlen(s), 86);
        }
        /* the typ is checked when asked */
        tk_err_clear(&e);
        CHECK_EQ_INT(verify_with(jwt, pub, alg, "id+jwt", &e), TK_EINVAL);
        CHECK(strstr(e.msg, "jwt header: typ") != NULL);
        CHECK_OK(verify_with(jwt, pub, alg, NULL, &e), &e);
        /* PKCS#8 round trip signs for the same public key */
        if (!CHECK_OK(tk_jwt_key_export(key, &der, &e), &e)) goto next;
        if (!CHECK_OK(tk_jwt_key_import(der, alg, &back, &e), &e)) goto next;
        if (!CHECK_OK(tk_jwt_sign(back, alg, kid, "at+jwt", claims, &jwt2, &e), &e)) goto next;
        CHECK_OK(verify_with(jwt2, pub, alg, "at+jwt", &e), &e);
        /* a DER of another alg's key is refused on import */
        EVP_PKEY *wrong = NULL;
        CHECK(tk_jwt_key_import(der, alg == TK_JWT_ES256 ? TK_JWT_EDDSA : TK_JWT_ES256, &wrong,
                                &e) != TK_OK);
        CHECK(wrong == NULL);
        /* tampered payload: the signature no longer matches */
        t2 = replace_part(jwt, 1, "{\"sub\":\"admin\",\"exp\":2000000000,\"scope\":\"a b\"}");
        tk_err_clear(&e);
        CHECK_EQ_INT(verify_with(t2, pub, alg, "at+jwt", &e), TK_EINVAL);
        CHECK(strstr(e.msg, "jwt signature: does not verify") != NULL);
        free(t2);
        /* tampered header (same alg and kid, a different typ spelling) */
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"AT+JWT\"}",
                 tk_jwt_alg_name(alg), kid);
        t2 = replace_part(jwt, 0, hdr);
        tk_err_clear(&e);
        CHECK_EQ_INT(verify_with(t2, pub, alg, "at+jwt", &e), TK_EINVAL);
        CHECK(strstr(e.msg, "jwt signature") != NULL);
        free(t2);
        /* tampered signature: one bit of its first byte */
        t2 = tk_strdup(jwt);
        char *s = strrchr(t2, '.') + 1;
        s[0] = s[0] == 'A' ? 'B' : 'A';
        tk_err_clear(&e);
        CHECK_EQ_INT(verify_with(t2, pub, alg, "at+jwt", &e), TK_EINVAL);
        free(t2);
        t2 = NULL;
    next:
        free(jwt);
        free(jwt2);
        tk_secret_free(der);
        EVP_PKEY_free(key);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(back);
        json_decref(jwk);
        json_decref(claims);
    }
}

void test_oauth_jwt_confusion(void)
{
    struct tk_err e;
    EVP_PKEY *es = NULL, *rs = NULL, *ed = NULL;
    json_t *jes = NULL, *jrs = NULL, *jed = NULL, *claims = json_pack("{s:s}", "sub", "u1");
    char kes[TK_JWT_KID_MAX], krs[TK_JWT_KID_MAX], ked[TK_JWT_KID_MAX];
    char *tes = NULL, *t = NULL;
    if (!CHECK_OK(tk_jwt_key_generate(TK_JWT_ES256, &es, &jes, kes, &e), &e) ||
        !CHECK_OK(tk_jwt_key_generate(TK_JWT_RS256, &rs, &jrs, krs, &e), &e) ||
        !CHECK_OK(tk_jwt_key_generate(TK_JWT_EDDSA, &ed, &jed, ked, &e), &e) ||
        !CHECK_OK(tk_jwt_sign(es, TK_JWT_ES256, kes, "at+jwt", claims, &tes, &e), &e))
        goto out;
    /* an ES256 token checked against a key whose alg is RS256 or EdDSA */
    tk_err_clear(&e);
    CHECK_EQ_INT(verify_with(tes, rs, TK_JWT_RS256, "at+jwt", &e), TK_EINVAL);
    CHECK(strstr(e.msg, "is not the alg of key") != NULL);
    CHECK_EQ_INT(verify_with(tes, ed, TK_JWT_EDDSA, "at+jwt", &e), TK_EINVAL);
    /* a key of the wrong type for its declared alg */
    CHECK_EQ_INT(verify_with(tes, rs, TK_JWT_ES256, "at+jwt", &e), TK_EINVAL);
    /* an EdDSA token with an ES256 header: the ES256 key does not verify it */
    char *ted = NULL;
    if (CHECK_OK(tk_jwt_sign(ed, TK_JWT_EDDSA, kes, "at+jwt", claims, &ted, &e), &e)) {
        char hdr[200];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"at+jwt\"}", kes);
        t = replace_part(ted, 0, hdr);
        CHECK_EQ_INT(verify_with(t, es, TK_JWT_ES256, "at+jwt", &e), TK_EINVAL);
        free(t);
        t = NULL;
    }
    free(ted);
    /* alg none, HS256 keyed with the public JWK (the classic confusion) */
    static const char *const refused[] = {"none",  "None",  "NONE",  "HS256", "HS512",
                                          "hs256", "RS512", "ES384", "PS256", "EdDSA "};
    for (size_t i = 0; i < TK_NELEM(refused); i++) {
        char hdr[200];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"at+jwt\"}", refused[i],
                 kes);
        t = replace_part(tes, 0, hdr);
        tk_err_clear(&e);
        struct tk_jwt j;
        if (CHECK_EQ_INT(tk_jwt_parse(t, strlen(t), "at+jwt", &j, &e), TK_EINVAL))
            CHECK(strncmp(e.msg, "jwt header: alg", 15) == 0);
        CHECK_EQ_STR(e.code, "invalid_token");
        free(t);
        t = NULL;
    }
    /* alg none with an empty signature */
    char hdr[200];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"none\",\"kid\":\"%s\"}", kes);
    t = replace_part(tes, 0, hdr);
    *(strrchr(t, '.') + 1) = '\0';
    struct tk_jwt j;
    CHECK_EQ_INT(tk_jwt_parse(t, strlen(t), NULL, &j, &e), TK_EINVAL);
out:
    free(t);
    free(tes);
    EVP_PKEY_free(es);
    EVP_PKEY_free(rs);
    EVP_PKEY_free(ed);
    json_decref(jes);
    json_decref(jrs);
    json_decref(jed);
    json_decref(claims);
}

/* Each of these is refused by the parser, with the part it names. */
void test_oauth_jwt_hostile(void)
{
    static const char kid[] = "k1";
    static const struct {
        const char *header, *payload, *sig; /* plain JSON header/payload; sig as is */
        const char *raw;                    /* or the whole token as is */
        const char *want;                   /* prefix of the message */
    } cases[] = {
        {.raw = "", .want = "jwt: empty"},
        {.raw = "abc", .want = "jwt: not three"},
        {.raw = "a.b", .want = "jwt: not three"},
        {.raw = "a.b.c.d", .want = "jwt: not three"},
        {.raw = "..", .want = "jwt header: empty"},
        {.raw = "eyJhbGciOiJFUzI1NiJ9=.e30.AAAA", .want = "jwt header: not base64url"},
        {.raw = "eyJhbGciOiJFUzI1NiJ9.e30=.AAAA", .want = "jwt header: kid"},
        {.raw = "e+J9.e30.AAAA", .want = "jwt header: not base64url"},
        {.raw = "e30 .e30.AAAA", .want = "jwt header: not base64url"},
        {.raw = "eyJhbGci.e30.AAAA", .want = "jwt header: not valid JSON"},
        {.raw = "e31.e30.AAAA", .want = "jwt header: not canonical"}, /* non-zero spare bits */
        {.raw = "eyJhbGciOiJFUzI1NiJ9X.e30.AAAA", .want = "jwt header: not canonical"},
        {.header = "[1]", .want = "jwt header: not a JSON object"},
        {.header = "\"ES256\"", .want = "jwt header: not"},
        {.header = "{}", .want = "jwt header: alg is missing"},
        {.header = "{\"alg\":1,\"kid\":\"k1\"}", .want = "jwt header: alg is missing"},
        {.header = "{\"alg\":\"ES256\",\"alg\":\"none\",\"kid\":\"k1\"}",
         .want = "jwt header: not valid JSON"},
        {.header = "{\"alg\":\"ES256\"}", .want = "jwt header: kid"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"\"}", .want = "jwt header: kid"},
        {.header = "{\"alg\":\"ES256\",\"kid\":7}", .want = "jwt header: kid"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"0123456789012345678901234567890123456789012345678"
                   "901234567890123\"}",
         .want = "jwt header: kid"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"crit\":[\"exp\"],\"exp\":1}",
         .want = "jwt header: crit"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"jku\":\"https://evil.example/jwks\"}",
         .want = "jwt header: jku"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"jwk\":{\"kty\":\"EC\"}}",
         .want = "jwt header: jwk"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"x5u\":\"https://evil.example/\"}",
         .want = "jwt header: x5u"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\"}", .want = "jwt header: typ is missing"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JWT\"}",
         .want = "jwt header: typ is 'JWT'"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":[\"at+jwt\"]}",
         .want = "jwt header: typ is not a string"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "",
         .want = "jwt payload: empty"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "[]",
         .want = "jwt payload: not a JSON object"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "{\"sub\":\"a\",\"sub\":\"b\"}",
         .want = "jwt payload: not valid JSON"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "{\"a\":1} trailing",
         .want = "jwt payload: not valid JSON"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "{}",
         .sig = "",
         .want = "jwt signature: missing"},
        {.header = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "{}",
         .sig = "AAAA",
         .want = "jwt signature: ES256 signatures are 64 bytes"},
        {.header = "{\"alg\":\"EdDSA\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
         .payload = "{}",
         .sig = "AA==",
         .want = "jwt signature: missing"},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        char *tok;
        if (cases[i].raw) {
            tok = tk_strdup(cases[i].raw);
        } else {
            char h[1024], p[1024];
            tk_jwt_b64_enc((const unsigned char *)cases[i].header, strlen(cases[i].header), h);
            const char *pl = cases[i].payload ? cases[i].payload : "{}";
            tk_jwt_b64_enc((const unsigned char *)pl, strlen(pl), p);
            const char *sig = cases[i].sig
                                  ? cases[i].sig
                                  : "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                    "AAAAAAAAAAAAAAAAAAAAAAAAAAA";
            tok = tk_malloc(strlen(h) + strlen(p) + strlen(sig) + 3);
            sprintf(tok, "%s.%s.%s", h, p, sig);
        }
        struct tk_jwt t;
        struct tk_err e;
        tk_err_clear(&e);
        tk_rc rc = tk_jwt_parse(tok, strlen(tok), "at+jwt", &t, &e);
        if (rc != TK_EINVAL || strncmp(e.msg, cases[i].want, strlen(cases[i].want)))
            FAILF("case %zu (%s): rc %d, message '%s', want '%s...'", i,
                  cases[i].raw ? cases[i].raw : cases[i].header, (int)rc, e.msg, cases[i].want);
        else
            CHECK_EQ_STR(e.code, "invalid_token");
        CHECK(t.header == NULL && t.claims == NULL);
        free(tok);
    }
    (void)kid;
    /* over the size limit, and a NUL inside */
    char *big = tk_malloc(TK_JWT_MAX + 2);
    memset(big, 'A', TK_JWT_MAX + 1);
    big[10] = '.';
    big[20] = '.';
    big[TK_JWT_MAX + 1] = '\0';
    struct tk_jwt t;
    struct tk_err e;
    CHECK_EQ_INT(tk_jwt_parse(big, TK_JWT_MAX + 1, NULL, &t, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "longer than 8192") != NULL);
    CHECK_EQ_INT(tk_jwt_parse("e30\0.e30.AAAA", 13, NULL, &t, &e), TK_EINVAL);
    /* random bytes never crash and never pass */
    unsigned char rnd[300];
    for (int i = 0; i < 2000; i++) {
        tk_random(rnd, sizeof rnd);
        size_t n = rnd[0] + 1u;
        for (size_t k = 1; k < n; k++)
            if (rnd[k] % 7 == 0) rnd[k] = '.';
        if (tk_jwt_parse((const char *)rnd + 1, n - 1, NULL, &t, &e) == TK_OK) tk_jwt_clear(&t);
    }
    free(big);
}

/* Tokens and public JWKs made by Node's node:crypto (ES256 with
 * dsaEncoding ieee-p1363): the wire formats agree. */
static const struct {
    enum tk_jwt_alg alg;
    const char *jwk, *jwt;
} node_vectors[] = {
    {TK_JWT_ES256,
     "{\"kty\":\"EC\",\"x\":\"woXTd3YhN-AYQxacuF_WRzvOa_p6bAE74hfnWa5kfI4\",\"y\":\"tLzLQ8GL9k"
     "NQVwfcWYnm3oZSxLGrG8h-cTo35aC_o5M\",\"crv\":\"P-256\"}",
     "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vZGUtRVMyNTYiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwczovL"
     "25vZGUuZXhhbXBsZSIsInN1YiI6InUxIiwibiI6NDJ9.jQMxh4a-F6O-64ZkWTkMv5vp3oSQaecAUIvbd6FFwppX"
     "A_BX-pHvKOCstr_VVIyTIU30PfidvMx7SaUKlrmZpg"},
    {TK_JWT_RS256,
     "{\"kty\":\"RSA\",\"n\":\"13vOHMfeH9iyxmcMCVx2Xh5f_EnWA3p-OQo8RQy1HK0Gol1BMLpyoU2spFV7rCc"
     "DCE24RMgoFiuFp_6t_KhseDyiYDkDXCDFr28zjqIhPv9QLqV171lGbmWW2TvGPn5sfxJrR1zx9dbwbMoZqUbF3Yl"
     "4Io1fZ321CIpVhM0H1zkLTN936TA5023-XPYH1olInsMZ7Uc9GT58LQlZZE3G21nSCvdhk70csdakaAusTrudA1_"
     "XYaXfeWJM_tiBiruk7WF2oCk8pIQlfdLCWjhJgLaBEK-zBPF4l-fqY24oBNzZRaMwQYNIvqGtsawUgyQI75HOnoe"
     "KilhJ8RSrt6sYkw\",\"e\":\"AQAB\"}",
     "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUtUlMyNTYiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwczovL"
     "25vZGUuZXhhbXBsZSIsInN1YiI6InUxIiwibiI6NDJ9.VPzYEOSeS1dm1n6JaVP_LYt2Jbi3DIUqi1JrDlHslFDN"
     "1Fg4dDhO6S34cpxZqIUl9183uusVEyItefNmJjIgXr_9qtsgSTlaaoL_EMfQ2YYBzSa6yHpvZKE0fOwEj7ytBMID"
     "dFPJTtbagrAQd_cfACJG3DvMAL3KUYOqaV0eBBbJjzaiyNcAgujz_S6hY6AuIMF_PcZ4qKGPC374odKUB2MPbceY"
     "RuSGNpEaMZz1HhRvQxI_DwRgNwqTyzZRsmiMuVUWfXDHfOTUD5SNyzhgAP_b7Ta8iOn4vloG7DlJ6qyduZJjP6I9"
     "s1dZBxT1C-ZqJnyynfGPvpOT5UlS0d05cg"},
    {TK_JWT_EDDSA,
     "{\"crv\":\"Ed25519\",\"x\":\"xXy1Q_7RHjAtyMoYMd1cVF_52koAIoRg_cqsoZ5V5-s\",\"kty\":\"OKP"
     "\"}",
     "eyJhbGciOiJFZERTQSIsImtpZCI6Im5vZGUtRWREU0EiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwczovL"
     "25vZGUuZXhhbXBsZSIsInN1YiI6InUxIiwibiI6NDJ9.C34zcnfCOJ2AaRiTRHlVkqaJAxS3djfCHOdOpIYmrhDo"
     "ZsiPhApwyPRDZan3iKp6XOMwNeUceVv-N_Hs0s1wCg"},
};

void test_oauth_jwt_known(void)
{
    struct tk_err e;
    for (size_t i = 0; i < TK_NELEM(node_vectors); i++) {
        json_error_t je;
        json_t *jwk = json_loads(node_vectors[i].jwk, 0, &je);
        EVP_PKEY *pub = NULL;
        if (!CHECK(jwk)) continue;
        if (CHECK_OK(tk_jwt_key_from_jwk(jwk, node_vectors[i].alg, &pub, &e), &e)) {
            struct tk_jwt t;
            const char *jwt = node_vectors[i].jwt;
            if (CHECK_OK(tk_jwt_parse(jwt, strlen(jwt), "at+jwt", &t, &e), &e)) {
                CHECK_OK(tk_jwt_check(&t, jwt, pub, node_vectors[i].alg, &e), &e);
                CHECK_EQ_INT(json_integer_value(json_object_get(t.claims, "n")), 42);
                tk_jwt_clear(&t);
            }
            /* our JWK of Node's key is the same key */
            json_t *again = NULL;
            if (CHECK_OK(tk_jwt_jwk_public(pub, &again, &e), &e)) {
                const char *const mem[] = {"kty", "crv", "x", "y", "n", "e"};
                for (size_t m = 0; m < TK_NELEM(mem); m++)
                    CHECK(
                        json_equal(json_object_get(again, mem[m]), json_object_get(jwk, mem[m])) ||
                        (!json_object_get(again, mem[m]) && !json_object_get(jwk, mem[m])));
                json_decref(again);
            }
        }
        /* a JWK that does not fit the alg */
        EVP_PKEY *x = NULL;
        enum tk_jwt_alg other = node_vectors[i].alg == TK_JWT_ES256 ? TK_JWT_RS256 : TK_JWT_ES256;
        CHECK_EQ_INT(tk_jwt_key_from_jwk(jwk, other, &x, &e), TK_EINVAL);
        EVP_PKEY_free(pub);
        json_decref(jwk);
    }
    /* RFC 7638 §3.1: the thumbprint of the example RSA key */
    json_t *rfc = json_pack(
        "{s:s, s:s, s:s, s:s}", "kty", "RSA", "n",
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJ"
        "ECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
        "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"
        "bFTWhAI4vMQFh6"
        "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e", "AQAB", "alg", "RS256");
    char kid[TK_JWT_KID_MAX];
    if (CHECK_OK(tk_jwt_thumbprint(rfc, kid, &e), &e))
        CHECK_EQ_STR(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    json_decref(rfc);
    /* hostile JWKs */
    static const char *const bad[] = {
        "{}", "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
        /* a point not on the curve */
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB\"}",
        "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":"
        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}"};
    static const enum tk_jwt_alg bad_alg[] = {TK_JWT_ES256, TK_JWT_ES256, TK_JWT_ES256,
                                              TK_JWT_ES256, TK_JWT_RS256, TK_JWT_EDDSA};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        json_error_t je;
        json_t *j = json_loads(bad[i], 0, &je);
        EVP_PKEY *x = NULL;
        if (tk_jwt_key_from_jwk(j, bad_alg[i], &x, &e) != TK_EINVAL)
            FAILF("bad JWK %zu accepted", i);
        CHECK(x == NULL);
        EVP_PKEY_free(x);
        json_decref(j);
    }
}

/* The other direction: tokens signed here verify in node:crypto
 * (createPublicKey from the JWK; ES256 with dsaEncoding ieee-p1363), and
 * a tampered one does not. Skipped when there is no node on PATH. */
static const char node_script[] =
    "import crypto from 'node:crypto';\n"
    "import { readFileSync } from 'node:fs';\n"
    "const vs = JSON.parse(readFileSync(process.argv[2], 'utf8'));\n"
    "let bad = 0;\n"
    "for (const v of vs) {\n"
    "  const key = crypto.createPublicKey({ key: v.jwk, format: 'jwk' });\n"
    "  const [h, p, s] = v.jwt.split('.');\n"
    "  const hdr = JSON.parse(Buffer.from(h, 'base64url'));\n"
    "  if (hdr.alg !== v.jwk.alg || hdr.kid !== v.jwk.kid || hdr.typ !== 'at+jwt') bad++;\n"
    "  const md = v.jwk.alg === 'EdDSA' ? null : 'sha256';\n"
    "  const opt = v.jwk.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key;\n"
    "  const sig = Buffer.from(s, 'base64url');\n"
    "  if (!crypto.verify(md, Buffer.from(h + '.' + p), opt, sig)) { bad++; console.error('no: ' + "
    "v.jwk.alg); }\n"
    "  if (crypto.verify(md, Buffer.from(h + '.' + p + 'x'), opt, sig)) bad++;\n"
    "  if (JSON.parse(Buffer.from(p, 'base64url')).sub !== 'node') bad++;\n"
    "}\n"
    "process.exit(bad ? 1 : 0);\n";

void test_oauth_jwt_node(void)
{
    if (system("node --version >/dev/null 2>&1") != 0) {
        printf("  (no node on PATH: the node:crypto check is skipped)\n");
        return;
    }
    char dir[256], path[512], script[512], cmd[1200];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    json_t *vs = json_array(), *claims = json_pack("{s:s, s:i}", "sub", "node", "exp", 2000000000);
    for (size_t i = 0; i < TK_NELEM(algs); i++) {
        struct tk_err e;
        EVP_PKEY *key = NULL;
        json_t *jwk = NULL;
        char kid[TK_JWT_KID_MAX], *jwt = NULL;
        if (CHECK_OK(tk_jwt_key_generate(algs[i], &key, &jwk, kid, &e), &e) &&
            CHECK_OK(tk_jwt_sign(key, algs[i], kid, "at+jwt", claims, &jwt, &e), &e))
            json_array_append_new(vs, json_pack("{s:O, s:s}", "jwk", jwk, "jwt", jwt));
        free(jwt);
        json_decref(jwk);
        EVP_PKEY_free(key);
    }
    snprintf(path, sizeof path, "%s/v.json", dir);
    snprintf(script, sizeof script, "%s/verify.mjs", dir);
    char *text = json_dumps(vs, 0);
    CHECK(unit_write_file(path, text, strlen(text), 0600));
    CHECK(unit_write_file(script, node_script, strlen(node_script), 0600));
    snprintf(cmd, sizeof cmd, "node %s %s", script, path);
    CHECK_EQ_INT(system(cmd), 0);
    free(text);
    json_decref(vs);
    json_decref(claims);
    unit_rmtree(dir);
}

/* ---- the store ---- */

static struct tk_keyring *kr_init(struct fx *f, struct tk_db *db, char *keyfile)
{
    struct tk_keyring *k = NULL;
    struct tk_err e;
    char shares[1][TK_SHARE_MAX];
    snprintf(keyfile, 512, "%s/unseal.key", f->dir);
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) return NULL;
    if (!CHECK_OK(tk_keyring_init(k, db, 1, 1, keyfile, shares, NULL, &e), &e)) {
        tk_keyring_free(k);
        return NULL;
    }
    return k;
}

static int events_in_tx;
static tk_rc count_tx(void *arg, struct tk_db *db, const struct tk_oauth_key *k, struct tk_err *e)
{
    (void)arg, (void)db, (void)e;
    CHECK(k->id[0] && k->kid[0] && k->jwk);
    events_in_tx++;
    return TK_OK;
}

void test_oauth_keys_store(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char tenant[TK_UUID_LEN + 1], keyfile[512];
    struct tk_keyring *k = NULL;
    struct tk_oauth_key a = {0}, b = {0}, c = {0}, *rows = NULL;
    int n = 0;
    EVP_PKEY *priv = NULL, *pub = NULL;
    char *jwt = NULL;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;
    if (!(k = kr_init(f, db, keyfile))) goto out;
    int64_t now = tk_now_ms();
    events_in_tx = 0;
    struct tk_oauth_rotate o = {.alg = TK_JWT_ES256,
                                .now = now,
                                .active_at = now,
                                .keep_ms = 3600000,
                                .due_before = -1,
                                .in_tx = count_tx};
    if (!CHECK_OK(tk_oauth_keys_rotate(db, k, tenant, &o, &a, &e), &e)) goto out;
    CHECK_EQ_INT(a.generation, 1);
    CHECK_EQ_INT(events_in_tx, 1);
    /* only when there is none */
    CHECK_EQ_INT(tk_oauth_keys_rotate(db, k, tenant, &o, &b, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "not_due");
    /* not due while the newest is recent */
    o.due_before = now - 1000;
    CHECK_EQ_INT(tk_oauth_keys_rotate(db, k, tenant, &o, &b, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "not_due");
    CHECK_EQ_INT(events_in_tx, 1);
    /* rotate with publish-ahead: b is pending, a retires at b's active_at */
    o.due_before = 0;
    o.alg = TK_JWT_EDDSA;
    o.now = now + 10;
    o.active_at = now + 60000;
    if (!CHECK_OK(tk_oauth_keys_rotate(db, k, tenant, &o, &b, &e), &e)) goto out;
    CHECK_EQ_INT(b.generation, 2);
    if (!CHECK_OK(tk_oauth_keys_list(db, &rows, &n, &e), &e)) goto out;
    if (!CHECK_EQ_INT(n, 2)) goto out;
    CHECK_EQ_STR(rows[0].id, b.id); /* newest first */
    CHECK_EQ_STR(tk_oauth_key_status(&rows[0], now + 20), "pending");
    CHECK_EQ_STR(tk_oauth_key_status(&rows[1], now + 20), "active");
    CHECK_EQ_INT(rows[1].retired_at, now + 60000);
    CHECK_EQ_INT(rows[1].unpublish_at, now + 60000 + 3600000);
    CHECK_EQ_STR(tk_oauth_key_status(&rows[1], now + 60000), "retired");
    CHECK_EQ_STR(tk_oauth_key_status(&rows[0], now + 60000), "active");
    CHECK_EQ_STR(tk_oauth_key_status(&rows[1], now + 60000 + 3600000), "unpublished");
    CHECK_EQ_INT(rows[0].alg, TK_JWT_EDDSA);
    for (int i = 0; i < n; i++)
        tk_oauth_key_clear(&rows[i]);
    free(rows);
    rows = NULL;
    /* the private key opens, signs, and the published JWK verifies */
    if (!CHECK_OK(tk_oauth_key_private(db, k, tenant, b.id, TK_JWT_EDDSA, &priv, &e), &e)) goto out;
    if (!CHECK_OK(tk_jwt_key_from_jwk(b.jwk, TK_JWT_EDDSA, &pub, &e), &e)) goto out;
    json_t *cl = json_pack("{s:s}", "sub", "x");
    if (CHECK_OK(tk_jwt_sign(priv, TK_JWT_EDDSA, b.kid, "at+jwt", cl, &jwt, &e), &e))
        CHECK_OK(verify_with(jwt, pub, TK_JWT_EDDSA, "at+jwt", &e), &e);
    json_decref(cl);
    /* wrong alg for the stored key */
    EVP_PKEY *x = NULL;
    CHECK(tk_oauth_key_private(db, k, tenant, b.id, TK_JWT_ES256, &x, &e) != TK_OK);
    /* the column is sealed; moved to another row it does not open */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT private_key, public_jwk FROM oauth_signing_keys WHERE id = ?",
                            TK_ARGS(TK_TEXT(b.id)), &r, &e),
                 &e)) {
        CHECK(strncmp(tk_rows_text(r, 0, 0), "ENC:v1:", 7) == 0);
        CHECK(strstr(tk_rows_text(r, 0, 1), "\"d\"") == NULL);
        CHECK_OK(tk_db_exec(db, "UPDATE oauth_signing_keys SET private_key = ? WHERE id = ?",
                            TK_ARGS(TK_TEXT(tk_rows_text(r, 0, 0)), TK_TEXT(a.id)), NULL, &e),
                 &e);
        tk_rows_free(r);
        CHECK_EQ_INT(tk_oauth_key_private(db, k, tenant, a.id, TK_JWT_EDDSA, &x, &e), TK_EINTERNAL);
        CHECK_EQ_STR(e.code, "decrypt_failed");
    }
    /* an immediate rotation retires the pending key before it ever signs,
     * and a later one deletes the rows already unpublished */
    o.alg = TK_JWT_RS256;
    o.now = now + 20;
    o.active_at = now + 20;
    o.keep_ms = 1;
    if (!CHECK_OK(tk_oauth_keys_rotate(db, k, tenant, &o, &c, &e), &e)) goto out;
    CHECK_EQ_INT(c.generation, 3);
    if (CHECK_OK(tk_oauth_keys_list(db, &rows, &n, &e), &e) && CHECK_EQ_INT(n, 3)) {
        CHECK_EQ_INT(rows[1].retired_at, now + 20); /* b */
        CHECK_EQ_INT(rows[2].retired_at, now + 20); /* a: retired earlier than planned */
        CHECK_EQ_STR(tk_oauth_key_status(&rows[0], now + 20), "active");
    }
    for (int i = 0; i < n; i++)
        tk_oauth_key_clear(&rows[i]);
    free(rows);
    rows = NULL;
    tk_oauth_key_clear(&c);
    o.alg = TK_JWT_ES256;
    o.now = now + 100;
    o.active_at = now + 100;
    if (!CHECK_OK(tk_oauth_keys_rotate(db, k, tenant, &o, &c, &e), &e)) goto out;
    if (CHECK_OK(tk_oauth_keys_list(db, &rows, &n, &e), &e)) CHECK_EQ_INT(n, 2); /* a, b gone */
    for (int i = 0; i < n; i++)
        tk_oauth_key_clear(&rows[i]);
    free(rows);
    rows = NULL;
    /* sealed: no rotation (the private key cannot be sealed) */
    tk_keyring_seal(k);
    struct tk_oauth_key d = {0};
    CHECK(tk_oauth_keys_rotate(db, k, tenant, &o, &d, &e) != TK_OK);
out:
    free(jwt);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
    tk_oauth_key_clear(&a);
    tk_oauth_key_clear(&b);
    tk_oauth_key_clear(&c);
    tk_keyring_free(k);
    tk_store_put(db);
}

struct race_arg {
    struct fx *f;
    struct tk_keyring *k;
    const char *tenant;
    int64_t due_before;
    pthread_barrier_t *bar;
    tk_rc rc;
    char code[48];
};

static void *race_one(void *p)
{
    struct race_arg *a = p;
    struct tk_err e;
    tk_err_clear(&e);
    struct tk_db *db = tk_store_get(a->f->st, &e);
    pthread_barrier_wait(a->bar);
    if (!db) {
        a->rc = e.rc;
        snprintf(a->code, sizeof a->code, "%s", e.code);
        return NULL;
    }
    int64_t now = tk_now_ms();
    struct tk_oauth_rotate o = {.alg = TK_JWT_ES256,
                                .now = now,
                                .active_at = now + 1000,
                                .keep_ms = 1000,
                                .due_before = a->due_before};
    struct tk_oauth_key out;
    a->rc = tk_oauth_keys_rotate(db, a->k, a->tenant, &o, &out, &e);
    snprintf(a->code, sizeof a->code, "%s", a->rc == TK_OK ? "ok" : e.code);
    tk_oauth_key_clear(&out);
    tk_store_put(db);
    return NULL;
}

/* Nodes that find the key due at once: exactly one rotates. */
void test_oauth_keys_race(struct fx *f)
{
    struct tk_err e;
    fx_close_store(f); /* a connection per racer */
    if (!CHECK_OK(fx_open_store(f, 6, &e), &e)) return;
    struct tk_db *db = fx_db(f);
    if (!db) return;
    char tenant[TK_UUID_LEN + 1], keyfile[512];
    struct tk_keyring *k = NULL;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;
    if (!(k = kr_init(f, db, keyfile))) goto out;
    for (int round = 0; round < 2; round++) {
        /* round 0: no key yet (the start of several nodes); round 1: due */
        enum { N = 4 };
        pthread_t th[N];
        struct race_arg a[N];
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, N);
        int64_t due = round == 0 ? -1 : tk_now_ms();
        for (int i = 0; i < N; i++) {
            a[i] =
                (struct race_arg){.f = f, .k = k, .tenant = tenant, .due_before = due, .bar = &bar};
            pthread_create(&th[i], NULL, race_one, &a[i]);
        }
        int ok = 0;
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            if (a[i].rc == TK_OK)
                ok++;
            else if (strcmp(a[i].code, "not_due") && strcmp(a[i].code, "rotate_race") &&
                     strcmp(a[i].code, "store_busy"))
                FAILF("round %d: rotation %d: rc %d %s", round, i, (int)a[i].rc, a[i].code);
        }
        pthread_barrier_destroy(&bar);
        CHECK_EQ_INT(ok, 1);
        struct tk_rows *r = NULL;
        if (CHECK_OK(tk_db_exec(db, "SELECT COUNT(*) FROM oauth_signing_keys", NULL, 0, &r, &e),
                     &e))
            CHECK_EQ_INT(tk_rows_int(r, 0, 0), round + 1);
        tk_rows_free(r);
    }
out:
    tk_keyring_free(k);
    tk_store_put(db);
}

/* ---- the node: in-memory keys, sign, verify, JWKS, sealed ---- */

void test_oauth_keys_node(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    char keyfile[512];
    struct tk_config cfg;
    tk_config_defaults(&cfg);
    cfg.oauth_signing_publish_ahead = 1;
    struct tk_app app;
    memset(&app, 0, sizeof app);
    app.cfg = &cfg;
    app.store = f->st;
    app.metrics = tk_metrics_new();
    char *jwt = NULL, *jwt2 = NULL;
    json_t *claims = json_pack("{s:s, s:i}", "sub", "u1", "exp", 2000000000), *got = NULL;
    if (!CHECK_OK(tk_tenant_default(db, app.default_tenant, &e), &e)) goto out;
    if (!(app.keyring = kr_init(f, db, keyfile))) goto out;
    tk_store_put(db);
    db = NULL;
    if (!CHECK_OK(tk_api_oauth_keys_metrics(&app, &e), &e)) goto out;
    /* start makes the first key (unsealed), which signs at once */
    if (!CHECK_OK(tk_api_oauth_keys_start(&app, &e), &e)) goto out;
    json_t *jwks = tk_api_oauth_jwks(&app);
    CHECK_EQ_INT(json_array_size(json_object_get(jwks, "keys")), 1);
    json_t *k0 = json_array_get(json_object_get(jwks, "keys"), 0);
    char kid0[TK_JWT_KID_MAX];
    snprintf(kid0, sizeof kid0, "%s", json_string_value(json_object_get(k0, "kid")));
    CHECK(!json_object_get(k0, "d"));
    json_decref(jwks);
    CHECK_EQ_STR(tk_api_oauth_signing_alg(&app), "ES256");
    if (!CHECK_OK(tk_api_oauth_sign(&app, "at+jwt", claims, &jwt, &e), &e)) goto out;
    if (CHECK_OK(tk_api_oauth_verify(&app, jwt, strlen(jwt), "at+jwt", &got, &e), &e))
        CHECK(json_equal(got, claims));
    json_decref(got);
    got = NULL;
    /* a kid nobody published */
    struct tk_jwt t;
    if (CHECK_OK(tk_jwt_parse(jwt, strlen(jwt), NULL, &t, &e), &e)) {
        tk_jwt_clear(&t);
        char hdr[200];
        snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"nope\",\"typ\":\"at+jwt\"}");
        char *x = replace_part(jwt, 0, hdr);
        CHECK_EQ_INT(tk_api_oauth_verify(&app, x, strlen(x), "at+jwt", &got, &e), TK_EINVAL);
        CHECK(strstr(e.msg, "kid 'nope' is not a published signing key") != NULL);
        free(x);
        /* the right kid with another alg in the header */
        snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"at+jwt\"}", kid0);
        x = replace_part(jwt, 0, hdr);
        CHECK_EQ_INT(tk_api_oauth_verify(&app, x, strlen(x), "at+jwt", &got, &e), TK_EINVAL);
        CHECK(strstr(e.msg, "is not the alg of key") != NULL);
        free(x);
    }
    /* rotate to EdDSA with a 1 s publish-ahead: published first, signing later */
    strcpy(cfg.oauth_signing_alg, "EdDSA");
    cfg.oauth_signing_rotate_every = 1;
    int64_t deadline = tk_mono_ms() + 20000;
    bool two = false;
    while (!two && tk_mono_ms() < deadline) {
        jwks = tk_api_oauth_jwks(&app);
        two = json_array_size(json_object_get(jwks, "keys")) >= 2;
        json_decref(jwks);
        if (!two) usleep(50000);
    }
    cfg.oauth_signing_rotate_every = 0;
    CHECK(two);
    /* the old token still verifies; new tokens move to EdDSA within seconds */
    CHECK_OK(tk_api_oauth_verify(&app, jwt, strlen(jwt), "at+jwt", &got, &e), &e);
    json_decref(got);
    got = NULL;
    bool eddsa = false;
    deadline = tk_mono_ms() + 20000;
    while (!eddsa && tk_mono_ms() < deadline) {
        free(jwt2);
        jwt2 = NULL;
        if (tk_api_oauth_sign(&app, "at+jwt", claims, &jwt2, &e) == TK_OK &&
            tk_jwt_parse(jwt2, strlen(jwt2), NULL, &t, &e) == TK_OK) {
            eddsa = t.alg == TK_JWT_EDDSA;
            tk_jwt_clear(&t);
        }
        if (!eddsa) usleep(50000);
    }
    CHECK(eddsa);
    CHECK_EQ_STR(tk_api_oauth_signing_alg(&app), "EdDSA");
    CHECK_OK(tk_api_oauth_verify(&app, jwt2, strlen(jwt2), "at+jwt", &got, &e), &e);
    json_decref(got);
    got = NULL;
    CHECK_OK(tk_api_oauth_verify(&app, jwt, strlen(jwt), "at+jwt", &got, &e), &e);
    json_decref(got);
    got = NULL;
    /* a key whose last token has expired leaves the JWKS: its tokens no
     * longer verify */
    struct tk_db *db1 = fx_db(f);
    if (db1 &&
        CHECK_OK(tk_db_exec(db1, "UPDATE oauth_signing_keys SET unpublish_at = ? WHERE kid = ?",
                            TK_ARGS(TK_INT(tk_now_ms() - 1), TK_TEXT(kid0)), NULL, &e),
                 &e)) {
        bool gone = false;
        deadline = tk_mono_ms() + 10000;
        while (!gone && tk_mono_ms() < deadline) {
            gone = tk_api_oauth_verify(&app, jwt, strlen(jwt), "at+jwt", &got, &e) == TK_EINVAL;
            json_decref(got);
            got = NULL;
            if (!gone) usleep(50000);
        }
        CHECK(gone);
        CHECK(strstr(e.msg, "is not a published signing key") != NULL);
        jwks = tk_api_oauth_jwks(&app);
        CHECK_EQ_INT(json_array_size(json_object_get(jwks, "keys")), 1);
        json_decref(jwks);
    }
    tk_store_put(db1);
    /* sealed: nothing is signed, the JWKS and verify still answer */
    CHECK(tk_api_oauth_keys_opened(&app) >= 1);
    tk_keyring_seal(app.keyring);
    char *none = NULL;
    CHECK_EQ_INT(tk_api_oauth_sign(&app, "at+jwt", claims, &none, &e), TK_EUNAVAIL);
    CHECK(none == NULL);
    CHECK_EQ_STR(e.code, "sealed");
    jwks = tk_api_oauth_jwks(&app);
    CHECK_EQ_INT(json_array_size(json_object_get(jwks, "keys")), 1);
    json_decref(jwks);
    if (CHECK(jwt2))
        CHECK_OK(tk_api_oauth_verify(&app, jwt2, strlen(jwt2), "at+jwt", &got, &e), &e);
    json_decref(got);
    got = NULL;
    /* and the private keys are dropped from memory within a round */
    bool dropped = false;
    deadline = tk_mono_ms() + 10000;
    while (!dropped && tk_mono_ms() < deadline) {
        dropped = tk_api_oauth_keys_opened(&app) == 0;
        if (!dropped) usleep(50000);
    }
    CHECK(dropped);
    /* unsealed again: the private key is opened again and signs */
    struct tk_db *db2 = fx_db(f);
    if (db2 && CHECK_OK(tk_keyring_unseal_file(app.keyring, db2, keyfile, NULL, &e), &e)) {
        bool signs = false;
        deadline = tk_mono_ms() + 10000;
        while (!signs && tk_mono_ms() < deadline) {
            free(jwt2);
            jwt2 = NULL;
            signs = tk_api_oauth_sign(&app, "at+jwt", claims, &jwt2, &e) == TK_OK;
            if (!signs) usleep(50000);
        }
        CHECK(signs);
        if (signs) CHECK_OK(tk_api_oauth_verify(&app, jwt2, strlen(jwt2), "at+jwt", &got, &e), &e);
        json_decref(got);
        got = NULL;
    }
    tk_store_put(db2);
out:
    json_decref(claims);
    free(jwt);
    free(jwt2);
    tk_api_oauth_keys_stop(&app);
    tk_keyring_free(app.keyring);
    tk_metrics_free(app.metrics);
    tk_store_put(db);
}
