/*
 * tk.h: what every tokend module shares: the result type, the error object,
 * memory helpers (abort on OOM, per-request pools, bounded buffers), time,
 * random bytes, identifiers and encodings.
 *
 * The error model follows curl and SQLite: every fallible call returns a
 * tk_rc, 0 = TK_OK, and fills a struct tk_err that carries the machine code
 * the API will show ("malformed", "body_too_large"...), the field it is about
 * when there is one, and a sentence for a person written where the fact is
 * known. tk_rc values map one-to-one to HTTP statuses (tk_rc_status()).
 */
#ifndef TK_H
#define TK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TK_VERSION "0.1.0"

#if defined(__GNUC__)
#define TK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define TK_NORETURN __attribute__((noreturn))
#define TK_UNUSED __attribute__((unused))
#else
#define TK_PRINTF(a, b)
#define TK_NORETURN
#define TK_UNUSED
#endif

#define TK_NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef enum {
    TK_OK = 0,
    TK_EINVAL,     /* 400: bad input */
    TK_EAUTH,      /* 401: unauthenticated */
    TK_EFORBIDDEN, /* 403: authenticated, not allowed */
    TK_ENOTFOUND,  /* 404: unknown, or another tenant's */
    TK_EMETHOD,    /* 405: route exists, method does not */
    TK_ECONFLICT,  /* 409 */
    TK_ETOOBIG,    /* 413 */
    TK_ERATE,      /* 429 */
    TK_EUPSTREAM,  /* 502: an upstream answered badly */
    TK_EUNAVAIL,   /* 503: store unreachable, sealed, shutting down */
    TK_EINTERNAL,  /* 500: a bug or an I/O failure on our side */
} tk_rc;

struct tk_err {
    tk_rc rc;
    char code[40];    /* machine code for the API's "error" member */
    char field[64];   /* the input field concerned, "" when none */
    char msg[320];    /* one sentence for a person */
};

/* Fill e (may be NULL) and return rc. code is a short snake_case word. */
tk_rc tk_err_set(struct tk_err *e, tk_rc rc, const char *code, const char *fmt, ...)
    TK_PRINTF(4, 5);
/* Same, naming the input field the error is about. */
tk_rc tk_err_field(struct tk_err *e, tk_rc rc, const char *code, const char *field,
                   const char *fmt, ...) TK_PRINTF(5, 6);
void tk_err_clear(struct tk_err *e);
int tk_rc_status(tk_rc rc);
const char *tk_rc_name(tk_rc rc);

/* Memory. These abort with a message when the allocator fails (Redis zmalloc):
 * out of memory is the one condition the daemon does not try to survive. */
void *tk_malloc(size_t n);
void *tk_calloc(size_t n, size_t size);
void *tk_realloc(void *p, size_t n);
char *tk_strdup(const char *s);
char *tk_strndup(const char *s, size_t n);
TK_NORETURN void tk_fatal(const char *fmt, ...) TK_PRINTF(1, 2);
/* Make jansson wipe every value it frees (call once at start). */
void tk_json_setup(void);
/* Overwrite n bytes in a way the compiler may not elide. */
void tk_wipe(void *p, size_t n);

/* A pool: a bump allocator whose memory is released at once by
 * tk_pool_free (h2o_mem_pool_t). One per request. */
struct tk_pool;
struct tk_pool *tk_pool_new(void);
void *tk_pool_alloc(struct tk_pool *p, size_t n);
char *tk_pool_strdup(struct tk_pool *p, const char *s);
char *tk_pool_strndup(struct tk_pool *p, const char *s, size_t n);
char *tk_pool_printf(struct tk_pool *p, const char *fmt, ...) TK_PRINTF(2, 3);
void tk_pool_free(struct tk_pool *p);

/* A growable byte buffer with a hard maximum (curl's dynbuf). The content is
 * always NUL-terminated. tk_buf_add returns TK_ETOOBIG past max. */
struct tk_buf {
    char *data;
    size_t len, cap, max;
};
void tk_buf_init(struct tk_buf *b, size_t max);
tk_rc tk_buf_add(struct tk_buf *b, const void *p, size_t n);
tk_rc tk_buf_addstr(struct tk_buf *b, const char *s);
tk_rc tk_buf_printf(struct tk_buf *b, const char *fmt, ...) TK_PRINTF(2, 3);
void tk_buf_reset(struct tk_buf *b);
/* Append s as a JSON string (quoted, escaped per RFC 8259), or null for
 * NULL. The output is always valid JSON: each ill-formed UTF-8 sequence
 * becomes U+FFFD, and every control character (U+0000..U+001F, U+007F,
 * U+0080..U+009F) is escaped. */
tk_rc tk_buf_json_str(struct tk_buf *b, const char *s);
void tk_buf_free(struct tk_buf *b);
/* Wipe then free: for buffers that held a secret. */
void tk_buf_free_wipe(struct tk_buf *b);

/* UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF). tk_utf8_fix returns a malloc'd copy of s with each ill-formed
 * sequence replaced by U+FFFD (NULL for NULL). */
bool tk_utf8_valid(const char *s, size_t n);
char *tk_utf8_fix(const char *s);

/* Time. */
int64_t tk_now_ms(void);   /* wall clock, ms since the epoch */
int64_t tk_mono_us(void);  /* monotonic, µs */
int64_t tk_mono_ms(void);  /* monotonic, ms */
/* Format ms since the epoch as RFC 3339 UTC with milliseconds into out (>= 25 bytes). */
void tk_time_fmt(int64_t ms, char *out, size_t n);
/* Parse RFC 3339 ("2026-11-25T19:08:00Z", fraction and offset allowed) or
 * an integer of ms since the epoch. */
tk_rc tk_time_parse(const char *s, int64_t *ms);

/* Random bytes from the OS CSPRNG; aborts if the kernel refuses. */
void tk_random(void *p, size_t n);

/* UUIDv7 as 36 chars + NUL; monotonic within the process. */
#define TK_UUID_LEN 36
void tk_uuid7(char out[TK_UUID_LEN + 1]);
bool tk_uuid_valid(const char *s);

/* Encodings. tk_hex writes 2n chars + NUL. */
void tk_hex(const unsigned char *p, size_t n, char *out);
/* Strict integer parse of a whole string within [min, max]. */
tk_rc tk_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
/* Constant-time compare of equal-length buffers. */
bool tk_ct_equal(const void *a, const void *b, size_t n);

#endif
