/* log.c: see log.h. Lines are written with one write(2) so that threads
 * never interleave inside a line. */
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum tk_log_level tk_log_min = TK_LOG_INFO;
static enum tk_log_format log_format = TK_LOG_TEXT;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void tk_log_setup(enum tk_log_level min, enum tk_log_format fmt)
{
    tk_log_min = min;
    log_format = fmt;
}

static void emit(const char *line, size_t len)
{
    while (len) {
        ssize_t w = write(STDERR_FILENO, line, len);
        if (w <= 0) return;
        line += w;
        len -= (size_t)w;
    }
}

void tk_log_write(enum tk_log_level lvl, const char *fmt, ...)
{
    char msg[1024], ts[32], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tk_time_fmt(tk_now_ms(), ts, sizeof ts);
    int n;
    if (log_format == TK_LOG_JSON) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "at", ts, "level", level_names[lvl], "msg", msg);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        n = snprintf(line, sizeof line, "%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        n = snprintf(line, sizeof line, "%s %-5s %s\n", ts, level_names[lvl], msg);
    }
    if (n < 0) return;
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    emit(line, (size_t)n);
}

void tk_log_json_line(const char *obj)
{
    char ts[32];
    struct tk_buf b;
    tk_buf_init(&b, 8192);
    if (log_format == TK_LOG_JSON) {
        tk_buf_addstr(&b, obj);
    } else {
        tk_time_fmt(tk_now_ms(), ts, sizeof ts);
        tk_buf_printf(&b, "%s %-5s %s", ts, "info", obj);
    }
    tk_buf_add(&b, "\n", 1);
    if (b.data) emit(b.data, b.len);
    tk_buf_free(&b);
}
