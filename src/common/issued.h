/*
 * issued.h: the format of every secret tokend hands out (DESIGN.md §5).
 *
 *   <kind>_<30 base62 chars: 178 random bits><6 base62 chars: CRC-32 of the rest>
 *
 * e.g. tko_3fQk...Zr01aB. The checksum lets tokend (and secret scanners) reject
 * a damaged token -- truncated, an extra character, a stray quote or space
 * from copy-paste -- before any lookup, and say which damage it is. The
 * checksum is not a security measure; the random part is.
 */
#ifndef TK_ISSUED_H
#define TK_ISSUED_H

#include "tk.h"

#define TK_ISSUED_RANDOM 30
#define TK_ISSUED_CHECK 6
#define TK_ISSUED_MAX 64 /* longest token of any kind, with NUL */

/* Known kinds. The prefix says what the token is for at a glance. */
#define TK_KIND_OPERATOR "tko"
#define TK_KIND_CLIENT "tkc"
#define TK_KIND_REFRESH "tkr"
#define TK_KIND_CODE "tka"

/* Write a new token of kind (3 lowercase letters) into out[TK_ISSUED_MAX]. */
void tk_issued_new(const char *kind, char out[TK_ISSUED_MAX]);

/* Check that s is a well-formed token of kind. On failure e->code is
 * "malformed" and e->msg says what is wrong (length, character, checksum,
 * surrounding whitespace or quotes, wrong kind). Never echoes the token. */
tk_rc tk_issued_check(const char *kind, const char *s, size_t len, struct tk_err *e);

/* A preview safe to show and log: kind, first 4 random chars, "…", last 4. */
void tk_issued_preview(const char *s, char out[24]);

#endif
