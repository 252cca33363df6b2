/*
 * keyring_internal.h: the keyring's primitives, shared by keyring.c and the
 * unit tests (known-answer vectors), not by other modules.
 *
 * AEAD is AES-256-GCM with a 96-bit random nonce and a 128-bit tag. Sealed
 * values are text, "ENC:v1:<key version>:<base64url(nonce|ciphertext|tag)>",
 * bound by the additional data to where they are stored (tenant, table,
 * column, row id), so that a value copied elsewhere fails to open.
 */
#ifndef TK_KEYRING_INTERNAL_H
#define TK_KEYRING_INTERNAL_H

#include "keyring.h"

#define TK_AEAD_KEY 32
#define TK_AEAD_NONCE 12
#define TK_AEAD_TAG 16

/* out must hold len + TK_AEAD_TAG bytes: ciphertext then tag. */
tk_rc tk_aead_seal(const unsigned char key[TK_AEAD_KEY], const unsigned char nonce[TK_AEAD_NONCE],
                   const void *ad, size_t adlen, const void *pt, size_t len, unsigned char *out);
/* in is ciphertext then tag (len includes the tag); out holds len - TK_AEAD_TAG bytes.
 * TK_EINVAL when the tag does not verify. */
tk_rc tk_aead_open(const unsigned char key[TK_AEAD_KEY], const unsigned char nonce[TK_AEAD_NONCE],
                   const void *ad, size_t adlen, const unsigned char *in, size_t len,
                   unsigned char *out);

/* base64url without padding. enc writes 4*ceil(n/3) chars at most + NUL. */
size_t tk_b64url_enc(const unsigned char *p, size_t n, char *out);
/* Returns TK_EINVAL on a character outside the alphabet or a bad length. */
tk_rc tk_b64url_dec(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen);

/* Shamir shares of a 32-byte secret over GF(2^8) (libgfshare). A share is
 * text: "tks1-<x>-<base64url(32 bytes)>-<6 hex chars of CRC-32>" so that a
 * mistyped or truncated share is refused before it is combined. */
tk_rc tk_shamir_split(const unsigned char secret[32], int n, int k, char (*shares)[TK_SHARE_MAX],
                      struct tk_err *e);
/* Parse one share: x coordinate and 32 bytes. */
tk_rc tk_shamir_parse(const char *share, unsigned char *x, unsigned char y[32], struct tk_err *e);
/* Combine k parsed shares (distinct x). */
tk_rc tk_shamir_combine(const unsigned char *xs, const unsigned char (*ys)[32], int k,
                        unsigned char secret[32], struct tk_err *e);

/* Seal plain for ad under data key version, 0 meaning the active one
 * (tk_keyring_seal_value); with db, reload the keyring once when this node
 * does not have that version yet (rewrap.c). */
tk_rc tk_keyring_seal_version(struct tk_keyring *k, struct tk_db *db, const struct tk_secret *plain,
                              const struct tk_seal_ad *ad, int64_t version, struct tk_sealed **out,
                              struct tk_err *e);
/* The key version of a sealed value's text; false if it is not one. */
bool tk_sealed_version(const char *text, int64_t *version);
/* The rewrap lease length of k, in ms. */
int64_t tk_keyring_rewrap_lease(struct tk_keyring *k);

#endif
