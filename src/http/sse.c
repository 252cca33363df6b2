/* sse.c: see sse.h. */
#include "sse.h"

#include <stdio.h>
#include <string.h>

void tk_sse_init(struct tk_sse *p, size_t max_line, size_t max_data)
{
    memset(p, 0, sizeof *p);
    p->max_line = max_line;
    tk_buf_init(&p->line, max_line + 1);
    tk_buf_init(&p->data, max_data + 1);
    p->retry_ms = -1;
}

void tk_sse_free(struct tk_sse *p)
{
    tk_buf_free(&p->line);
    tk_buf_free(&p->data);
}

static tk_rc dispatch(struct tk_sse *p, tk_sse_fn fn, void *arg)
{
    if (p->has_data) {
        size_t n = p->data.len;
        if (n && p->data.data[n - 1] == '\n') n--; /* the data's last LF */
        struct tk_sse_event ev = {p->event[0] ? p->event : "message", n ? p->data.data : "", n,
                                  p->id};
        if (n) p->data.data[n] = '\0';
        if (!fn(&ev, arg)) p->stopped = true;
    }
    tk_buf_reset(&p->data);
    p->has_data = false;
    p->event[0] = '\0';
    return TK_OK;
}

static tk_rc name_value(struct tk_err *e, char *dst, const char *field, const char *v, size_t n)
{
    if (n > TK_SSE_NAME_MAX)
        return tk_err_field(e, TK_ETOOBIG, "sse_too_large", field,
                            "an event's %s is %zu bytes; at most %d are accepted", field, n,
                            TK_SSE_NAME_MAX);
    memcpy(dst, v, n);
    dst[n] = '\0';
    return TK_OK;
}

static tk_rc line_done(struct tk_sse *p, tk_sse_fn fn, void *arg, struct tk_err *e)
{
    const char *l = p->line.data ? p->line.data : "";
    size_t n = p->line.len;
    tk_rc rc = TK_OK;
    if (n == 0) {
        rc = dispatch(p, fn, arg);
    } else if (l[0] != ':') {
        const char *colon = memchr(l, ':', n);
        size_t fl = colon ? (size_t)(colon - l) : n;
        const char *v = colon ? colon + 1 : l + n;
        size_t vl = colon ? n - fl - 1 : 0;
        if (vl && *v == ' ') {
            v++;
            vl--;
        }
        if (fl == 4 && !memcmp(l, "data", 4)) {
            rc = tk_buf_add(&p->data, v, vl);
            if (rc == TK_OK) rc = tk_buf_add(&p->data, "\n", 1);
            if (rc != TK_OK)
                rc = tk_err_field(e, TK_ETOOBIG, "sse_too_large", "data",
                                  "an event's data is over %zu bytes, the most accepted",
                                  p->data.max - 1);
            p->has_data = true;
        } else if (fl == 5 && !memcmp(l, "event", 5)) {
            rc = name_value(e, p->event, "event", v, vl);
        } else if (fl == 2 && !memcmp(l, "id", 2)) {
            if (!memchr(v, '\0', vl)) rc = name_value(e, p->id, "id", v, vl);
        } else if (fl == 5 && !memcmp(l, "retry", 5)) {
            int64_t ms = 0;
            bool ok = vl > 0 && vl <= 12;
            for (size_t i = 0; ok && i < vl; i++) {
                ok = v[i] >= '0' && v[i] <= '9';
                ms = ms * 10 + (v[i] - '0');
            }
            if (ok) p->retry_ms = ms;
        }
    }
    tk_buf_reset(&p->line);
    return rc;
}

tk_rc tk_sse_feed(struct tk_sse *p, const char *buf, size_t n, tk_sse_fn fn, void *arg,
                  struct tk_err *e)
{
    size_t i = 0;
    if (!p->started) {
        /* a BOM at the start, possibly split across chunks: wait for 3 bytes */
        static const char bom[] = "\xEF\xBB\xBF";
        size_t have = p->line.len;
        while (i < n && have < 3 && (unsigned char)buf[i] == (unsigned char)bom[have]) {
            tk_buf_add(&p->line, buf + i, 1);
            i++;
            have++;
        }
        if (have == 3) {
            tk_buf_reset(&p->line);
            p->started = true;
        } else if (i < n) {
            p->started = true; /* not a BOM: what was held is text */
        } else {
            return TK_OK;
        }
    }
    for (; i < n && !p->stopped; i++) {
        char c = buf[i];
        if (c == '\n' && p->cr) { /* the LF of a CRLF */
            p->cr = false;
            continue;
        }
        p->cr = c == '\r';
        if (c == '\n' || c == '\r') {
            tk_rc rc = line_done(p, fn, arg, e);
            if (rc != TK_OK) {
                p->stopped = true;
                return rc;
            }
            continue;
        }
        if (p->line.len >= p->max_line || tk_buf_add(&p->line, &c, 1) != TK_OK) {
            p->stopped = true;
            return tk_err_set(e, TK_ETOOBIG, "sse_too_large",
                              "a line of the event stream is over %zu bytes, the most accepted",
                              p->max_line);
        }
    }
    return TK_OK;
}
