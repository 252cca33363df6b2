/*
 * log.h: the process log. One line per record on stderr, JSON for machines
 * (log_format=json) or "time level message key=value" for a terminal. The
 * macros test the level before their arguments are evaluated (Redis
 * serverLog) and carry a printf attribute, so a format mistake is a compile
 * error. Never pass a secret, a header or a query string to them.
 */
#ifndef TK_LOG_H
#define TK_LOG_H

#include "tk.h"

enum tk_log_level { TK_LOG_DEBUG = 0, TK_LOG_INFO, TK_LOG_WARN, TK_LOG_ERROR };
enum tk_log_format { TK_LOG_TEXT = 0, TK_LOG_JSON };

extern enum tk_log_level tk_log_min;

void tk_log_setup(enum tk_log_level min, enum tk_log_format fmt);
void tk_log_write(enum tk_log_level lvl, const char *fmt, ...) TK_PRINTF(2, 3);
/* Write one preformatted JSON object (access log); in text mode it is
 * printed as is after the time. */
void tk_log_json_line(const char *json_object);

#define TK_LOG(lvl, ...)                                                                          \
    do {                                                                                          \
        if ((lvl) >= tk_log_min) tk_log_write((lvl), __VA_ARGS__);                                \
    } while (0)
#define tk_debug(...) TK_LOG(TK_LOG_DEBUG, __VA_ARGS__)
#define tk_info(...) TK_LOG(TK_LOG_INFO, __VA_ARGS__)
#define tk_warn(...) TK_LOG(TK_LOG_WARN, __VA_ARGS__)
#define tk_error(...) TK_LOG(TK_LOG_ERROR, __VA_ARGS__)

#endif
