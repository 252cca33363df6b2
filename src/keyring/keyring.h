/*
 * keyring.h: the keys under every secret tokend keeps.
 *
 * For now the keyring holds one key: the HMAC-SHA256 key that turns issued
 * secrets (operator tokens today; client tokens, codes and refresh tokens
 * later) into the keyed hashes the store keeps. It lives in
 * <data_dir>/hash.key (32 random bytes, mode 0600), made on first start.
 * The keyring issue moves it under a Shamir-split master key in the store;
 * callers will not change, because they only ever see this interface.
 *
 * struct tk_secret is plaintext that must not leak: it is zeroed when freed
 * and never printed. Sealed values (ciphertext) get their own type with the
 * keyring issue, so that the compiler refuses to send one upstream.
 */
#ifndef TK_KEYRING_H
#define TK_KEYRING_H

#include "../common/tk.h"

struct tk_secret {
    unsigned char *p;
    size_t len;
};
struct tk_secret *tk_secret_new(const void *p, size_t len);
/* Zero and free; NULL is a no-op. */
void tk_secret_free(struct tk_secret *s);

struct tk_keyring;

/* Open the keyring of a data directory, making the hash key on first use. */
tk_rc tk_keyring_open(const char *data_dir, struct tk_keyring **out, struct tk_err *e);
void tk_keyring_close(struct tk_keyring *k);

#define TK_HASH_HEX 65
/* Keyed hash of an issued secret as 64 hex chars; key_id names the key
 * that made it (stored beside the hash so that keys can rotate). */
void tk_keyring_hash(const struct tk_keyring *k, const char *secret, size_t len,
                     char out[TK_HASH_HEX]);
const char *tk_keyring_hash_key_id(const struct tk_keyring *k);

#endif
