/* test_keyring.c: src/keyring/keyring.h -- the hash key file and the keyed
 * hash, with RFC 4231 known answers. */
#include "unit.h"

#include "../../src/keyring/keyring.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t read_all(const char *path, unsigned char *buf, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, max, f);
    fclose(f);
    return n;
}

static void hmac_hex(const unsigned char *key, size_t klen, const void *msg, size_t mlen,
                     char out[65])
{
    unsigned char mac[32];
    unsigned int ml = sizeof mac;
    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, mac, &ml);
    tk_hex(mac, 32, out);
}

void test_keyring_create(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    snprintf(path, sizeof path, "%s/hash.key", dir);
    struct tk_keyring *k = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_keyring_open(dir, &k, &e), &e)) goto out;

    struct stat st;
    if (CHECK(stat(path, &st) == 0)) {
        CHECK(S_ISREG(st.st_mode));
        CHECK_EQ_INT(st.st_mode & 07777, 0600);
        CHECK_EQ_INT(st.st_size, 32);
    }
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0); /* no temporary left behind */

    /* the hash is HMAC-SHA256 under the file's key, as lowercase hex */
    unsigned char key[64];
    size_t kl = read_all(path, key, sizeof key);
    CHECK_EQ_INT(kl, 32);
    static const char *inputs[] = {"tko_abc", "", "x", "tko_0123456789abcdefghijABCDEFGHIJ012345"};
    char h1[TK_HASH_HEX], h2[TK_HASH_HEX], want[65];
    for (size_t i = 0; i < TK_NELEM(inputs); i++) {
        tk_keyring_hash(k, inputs[i], strlen(inputs[i]), h1);
        hmac_hex(key, 32, inputs[i], strlen(inputs[i]), want);
        CHECK_EQ_STR(h1, want);
    }
    /* explicit length: the bytes given, no more */
    tk_keyring_hash(k, "abcdef", 3, h1);
    tk_keyring_hash(k, "abc", 3, h2);
    CHECK_EQ_STR(h1, h2);
    tk_keyring_hash(k, "abd", 3, h2);
    CHECK(strcmp(h1, h2) != 0);

    /* the key id: first 8 bytes of SHA-256 of the key; says nothing of the key */
    unsigned char d[32];
    char id[17];
    SHA256(key, 32, d);
    tk_hex(d, 8, id);
    CHECK_EQ_STR(tk_keyring_hash_key_id(k), id);
    char keyhex[65];
    tk_hex(key, 32, keyhex);
    CHECK(strstr(keyhex, tk_keyring_hash_key_id(k)) == NULL);

    /* reopening reads the same key: same hashes, same id */
    tk_keyring_hash(k, "tko_abc", 7, h1);
    tk_keyring_close(k);
    k = NULL;
    if (!CHECK_OK(tk_keyring_open(dir, &k, &e), &e)) goto out;
    tk_keyring_hash(k, "tko_abc", 7, h2);
    CHECK_EQ_STR(h1, h2);
    CHECK_EQ_STR(tk_keyring_hash_key_id(k), id);
    unsigned char again[64];
    CHECK_EQ_INT(read_all(path, again, sizeof again), 32);
    CHECK(memcmp(key, again, 32) == 0);

    /* another data dir has another key */
    char dir2[256];
    if (CHECK(unit_tmpdir(dir2, sizeof dir2))) {
        struct tk_keyring *k2 = NULL;
        if (CHECK_OK(tk_keyring_open(dir2, &k2, &e), &e)) {
            tk_keyring_hash(k2, "tko_abc", 7, h2);
            CHECK(strcmp(h1, h2) != 0);
            CHECK(strcmp(tk_keyring_hash_key_id(k2), id) != 0);
        }
        tk_keyring_close(k2);
        unit_rmtree(dir2);
    }

    /* a key file readable by others is tightened to 0600 */
    tk_keyring_close(k);
    k = NULL;
    CHECK(chmod(path, 0644) == 0);
    if (CHECK_OK(tk_keyring_open(dir, &k, &e), &e) && CHECK(stat(path, &st) == 0))
        CHECK_EQ_INT(st.st_mode & 07777, 0600);

    /* secrets hold a copy, NUL-terminated */
    char src[] = "s3cret";
    struct tk_secret *s = tk_secret_new(src, 6);
    src[0] = 'X';
    CHECK_EQ_INT(s->len, 6);
    CHECK(memcmp(s->p, "s3cret", 7) == 0);
    tk_secret_free(s);
    tk_secret_free(NULL);
out:
    tk_keyring_close(k);
    unit_rmtree(dir);
}

void test_keyring_damaged(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    snprintf(path, sizeof path, "%s/hash.key", dir);
    unsigned char bytes[64];
    for (int i = 0; i < 64; i++)
        bytes[i] = (unsigned char)(i * 7 + 1);
    static const size_t sizes[] = {31, 33, 0, 1, 64};
    for (size_t i = 0; i < TK_NELEM(sizes); i++) {
        CHECK(unit_write_file(path, bytes, sizes[i], 0600));
        struct tk_keyring *k = NULL;
        struct tk_err e;
        tk_err_clear(&e);
        tk_rc rc = tk_keyring_open(dir, &k, &e);
        if (rc == TK_OK) {
            FAILF("a %zu-byte key file was accepted", sizes[i]);
            tk_keyring_close(k);
            continue;
        }
        CHECK(k == NULL);
        CHECK_EQ_STR(e.code, "key_corrupt");
        CHECK(strstr(e.msg, "32 bytes") != NULL);
        CHECK(strstr(e.msg, "hash.key") != NULL);
        /* the damaged file is left for a person to look at, not replaced */
        unsigned char now[128];
        size_t n = read_all(path, now, sizeof now);
        CHECK_EQ_INT(n, sizes[i]);
        CHECK(memcmp(now, bytes, n) == 0);
    }
    /* hash.key is a directory */
    unlink(path);
    CHECK(mkdir(path, 0700) == 0);
    struct tk_keyring *k = NULL;
    struct tk_err e;
    CHECK(tk_keyring_open(dir, &k, &e) != TK_OK);
    CHECK(k == NULL);
    rmdir(path);
    /* the data dir does not exist: the error names the path */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/not/here", dir);
    tk_err_clear(&e);
    CHECK(tk_keyring_open(missing, &k, &e) != TK_OK);
    CHECK(k == NULL);
    CHECK_EQ_STR(e.code, "key_unwritable");
    CHECK(strstr(e.msg, "not/here") != NULL);
    unit_rmtree(dir);
}

/* RFC 4231 test vectors. Their keys are shorter than 32 bytes; HMAC pads
 * any key shorter than the hash's block (64 bytes) with zeros, so the same
 * key zero-padded to 32 bytes gives the same MAC, and fits our key file. */
void test_keyring_known_answer(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    snprintf(path, sizeof path, "%s/hash.key", dir);
    static const struct {
        unsigned char key[32];
        const char *data;
        size_t dlen;
        const char *mac;
    } v[] = {
        /* test case 1: 20 bytes 0x0b, "Hi There" */
        {{0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
          0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b},
         "Hi There",
         8,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        /* test case 2: "Jefe" */
        {{'J', 'e', 'f', 'e'},
         "what do ya want for nothing?",
         28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        /* test case 4: 0x01..0x19, 50 bytes 0xcd */
        {{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
          0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19},
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd"
         "\xcd\xcd\xcd\xcd\xcd\xcd\xcd\xcd",
         50,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    };
    for (size_t i = 0; i < TK_NELEM(v); i++) {
        unlink(path);
        if (!CHECK(unit_write_file(path, v[i].key, 32, 0600))) break;
        struct tk_keyring *k = NULL;
        struct tk_err e;
        if (!CHECK_OK(tk_keyring_open(dir, &k, &e), &e)) continue;
        char h[TK_HASH_HEX];
        tk_keyring_hash(k, v[i].data, v[i].dlen, h);
        if (!CHECK_EQ_STR(h, v[i].mac)) FAILF("RFC 4231 vector %zu", i);
        tk_keyring_close(k);
    }
    /* a full 32-byte key, against OpenSSL's HMAC() as the reference */
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(0xa0 + i);
    unlink(path);
    CHECK(unit_write_file(path, key, 32, 0600));
    struct tk_keyring *k = NULL;
    struct tk_err e;
    if (CHECK_OK(tk_keyring_open(dir, &k, &e), &e)) {
        char h[TK_HASH_HEX], want[65];
        const char *msg = "tko_3fQkZr01aBcDeFgHiJkLmNoPqRsTuVwXyZ0123";
        tk_keyring_hash(k, msg, strlen(msg), h);
        hmac_hex(key, 32, msg, strlen(msg), want);
        CHECK_EQ_STR(h, want);
    }
    tk_keyring_close(k);
    unit_rmtree(dir);
}
