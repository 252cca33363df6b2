/*
 * log.h: the process log. One line per record on stderr, JSON for machines
 * (log_format=json) or "time level message key=value" for a terminal. The
 * macros test the level before their arguments are evaluated (Redis
 * serverLog) and carry a printf attribute, so a format mistake is a compile
 * error. Never pass a secret, a header or a query string to them.
 *
 * A line is never cut into invalid JSON: a message too long for a line is
 * cut (at a character) inside its string. Control characters are escaped in
 * both formats (a message cannot forge a second line) and bytes that are
 * not UTF-8 are replaced by U+FFFD.
 *
 * The JSON line writer (struct tk_jline) builds such lines by hand in a
 * caller's fixed buffer; the access log uses it with a per-thread buffer.
 */
#ifndef TK_LOG_H
#define TK_LOG_H

#include "tk.h"

enum tk_log_level { TK_LOG_DEBUG = 0, TK_LOG_INFO, TK_LOG_WARN, TK_LOG_ERROR };
enum tk_log_format { TK_LOG_TEXT = 0, TK_LOG_JSON };

extern enum tk_log_level tk_log_min;

void tk_log_setup(enum tk_log_level min, enum tk_log_format fmt);
void tk_log_write(enum tk_log_level lvl, const char *fmt, ...) TK_PRINTF(2, 3);
/* Write one JSON object of len bytes, without a newline (the access log);
 * in text mode it is printed as is after the time. Batched per thread:
 * written when the thread's buffer is full or at the next tk_log_flush. */
void tk_log_json_line(const char *json_object, size_t len);
/* Write out the lines tk_log_json_line holds, every thread's (the HTTP
 * sweeper calls it every 250 ms and at stop; it runs at exit too). */
void tk_log_flush(void);

/* The length of the well-formed UTF-8 character at p (at most n bytes
 * available): 1..4, or 0 when the bytes there are not one (a stray
 * continuation byte, a truncated sequence, an overlong form, a surrogate
 * U+D800..DFFF, above U+10FFFF, or C0, C1, F5..FF). */
size_t tk_utf8_char(const unsigned char *p, size_t n);

/* A JSON object written by hand into buf[cap] (cap >= 64). Members that do
 * not fit are cut (strings, at a character) or left out, so that
 * tk_jline_end always gives a complete, valid object. */
struct tk_jline {
    char *buf;
    size_t len, cap;
    bool first;
};
void tk_jline_begin(struct tk_jline *j, char *buf, size_t cap);
/* "key":"value" with value escaped (at most max bytes of it; SIZE_MAX for all). */
void tk_jline_str(struct tk_jline *j, const char *key, const char *value, size_t max);
void tk_jline_int(struct tk_jline *j, const char *key, long long value);
void tk_jline_null(struct tk_jline *j, const char *key);
/* Close the object; returns its length (buf is NUL-terminated). */
size_t tk_jline_end(struct tk_jline *j);

#define TK_LOG(lvl, ...)                                                                          \
    do {                                                                                          \
        if ((lvl) >= tk_log_min) tk_log_write((lvl), __VA_ARGS__);                                \
    } while (0)
#define tk_debug(...) TK_LOG(TK_LOG_DEBUG, __VA_ARGS__)
#define tk_info(...) TK_LOG(TK_LOG_INFO, __VA_ARGS__)
#define tk_warn(...) TK_LOG(TK_LOG_WARN, __VA_ARGS__)
#define tk_error(...) TK_LOG(TK_LOG_ERROR, __VA_ARGS__)

#endif
