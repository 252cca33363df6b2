/* jwt_fuzz.c: libFuzzer target for the JWT parser and checker
 * (src/oauth/jwt.c: tk_jwt_parse, tk_jwt_check, tk_jwt_key_from_jwk).
 *
 * The first byte picks the expected typ (or none) and the alg of the key
 * the token is checked against; the rest is the token, copied into a buffer
 * of exactly its length with no NUL after it, so that any read past n is
 * caught by AddressSanitizer. Invariants: a refusal is TK_EINVAL
 * "invalid_token" with a message naming the part ("jwt..."); an accepted
 * token has three parts, a known alg, a kid, JSON objects; a random token
 * never verifies against the fuzzer's own keys (it would need a forged
 * signature); a token the fuzzer signs always verifies. */
#include "../src/oauth/oauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "jwt_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

/* jwt.c's PKCS#8 export and import take a struct tk_secret, which lives in
 * the keyring (and so the store); the fuzzer needs neither: stand-ins. */
struct tk_secret *tk_secret_new(const void *p, size_t len)
{
    struct tk_secret *s = calloc(1, sizeof *s);
    s->p = malloc(len + 1);
    memcpy(s->p, p, len);
    s->p[len] = 0;
    s->len = len;
    return s;
}
void tk_secret_free(struct tk_secret *s)
{
    if (!s) return;
    free(s->p);
    free(s);
}

static EVP_PKEY *keys[4];
static char kids[4][TK_JWT_KID_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    tk_json_setup();
    for (int a = TK_JWT_ES256; a <= TK_JWT_EDDSA; a++) {
        json_t *jwk = NULL, *claims = json_pack("{s:s}", "sub", "fuzz");
        struct tk_err e;
        check(tk_jwt_key_generate((enum tk_jwt_alg)a, &keys[a], &jwk, kids[a], &e) == TK_OK,
              "key generation");
        /* a token made here verifies */
        char *jwt = NULL;
        struct tk_jwt t;
        check(tk_jwt_sign(keys[a], (enum tk_jwt_alg)a, kids[a], "at+jwt", claims, &jwt, &e) ==
                  TK_OK,
              "sign");
        check(tk_jwt_parse(jwt, strlen(jwt), "at+jwt", &t, &e) == TK_OK, "own token parses");
        check(tk_jwt_check(&t, jwt, keys[a], (enum tk_jwt_alg)a, &e) == TK_OK,
              "own token verifies");
        /* its JWK imports */
        EVP_PKEY *pub = NULL;
        check(tk_jwt_key_from_jwk(jwk, (enum tk_jwt_alg)a, &pub, &e) == TK_OK, "own JWK imports");
        EVP_PKEY_free(pub);
        tk_jwt_clear(&t);
        free(jwt);
        json_decref(jwk);
        json_decref(claims);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char *const typs[] = {NULL, "at+jwt", "JWT"};
    const char *typ = typs[data[0] % 3];
    enum tk_jwt_alg alg = (enum tk_jwt_alg)(TK_JWT_ES256 + (data[0] / 3) % 3);
    size_t n = size - 1;
    char *s = malloc(n ? n : 1);
    if (n) memcpy(s, data + 1, n);
    struct tk_jwt t;
    struct tk_err e;
    memset(&e, 0xAA, sizeof e);
    tk_rc rc = tk_jwt_parse(s, n, typ, &t, &e);
    if (rc == TK_OK) {
        check(n <= TK_JWT_MAX, "size limit");
        check(t.alg >= TK_JWT_ES256 && t.alg <= TK_JWT_EDDSA, "alg of an accepted token");
        check(t.kid[0] != '\0' && strnlen(t.kid, sizeof t.kid) < sizeof t.kid, "kid");
        check(json_is_object(t.header) && json_is_object(t.claims), "objects");
        check(t.signed_len < n && s[t.signed_len] == '.', "signed part ends at the second dot");
        check(!json_object_get(t.header, "crit"), "no crit");
        rc = tk_jwt_check(&t, s, keys[alg], alg, &e);
        check(rc == TK_EINVAL, "a fuzzed token never verifies");
        tk_jwt_clear(&t);
    } else {
        check(rc == TK_EINVAL, "rc of a refused token");
        check(strcmp(e.code, "invalid_token") == 0, "code of a refused token");
        check(strnlen(e.msg, sizeof e.msg) < sizeof e.msg && !strncmp(e.msg, "jwt", 3),
              "message names the part");
        check(t.header == NULL && t.claims == NULL, "nothing kept on refusal");
    }
    /* the same bytes as a JWK of the chosen alg */
    json_error_t je;
    json_t *j = json_loadb(s, n, 0, &je);
    if (j) {
        EVP_PKEY *pub = NULL;
        if (tk_jwt_key_from_jwk(j, alg, &pub, &e) == TK_OK) check(pub != NULL, "key when OK");
        EVP_PKEY_free(pub);
        json_decref(j);
    }
    free(s);
    return 0;
}
