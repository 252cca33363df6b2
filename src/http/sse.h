/*
 * sse.h: a parser for text/event-stream (the WHATWG HTML "server-sent
 * events" format), for clients of GET /v1/events/stream (the CLI's
 * `tokend events -f`). Push-based: feed it bytes as they arrive, in chunks
 * of any size; it calls back once per complete event.
 *
 * Lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at
 * the start of the next are one line end). A line starting with ':' is a
 * comment (heartbeats); "field: value" lines set data (appended, joined by
 * LF), event, id (kept across events, as the spec says; a value with a NUL
 * is ignored) and retry (digits only); other fields are ignored; an empty
 * line dispatches the event if it has data. A UTF-8 BOM at the very start is
 * skipped. Limits: a line over max_line bytes, an event's data over
 * max_data, or an event name or id over TK_SSE_NAME_MAX are errors naming
 * the limit (the stream is not to be trusted further).
 */
#ifndef TK_SSE_H
#define TK_SSE_H

#include "../common/tk.h"

#define TK_SSE_NAME_MAX 128

struct tk_sse_event {
    const char *event; /* "message" when no event: field was given */
    const char *data;  /* NUL-terminated, data_len bytes (may hold NULs) */
    size_t data_len;
    const char *id; /* the last event id ("" if none yet) */
};

/* Return false to stop: tk_sse_feed then returns TK_OK at once. */
typedef bool (*tk_sse_fn)(const struct tk_sse_event *ev, void *arg);

struct tk_sse {
    size_t max_line;
    struct tk_buf line, data;
    char event[TK_SSE_NAME_MAX + 1];
    char id[TK_SSE_NAME_MAX + 1];
    int64_t retry_ms; /* -1 until a retry: field */
    bool cr;          /* the last byte was a CR */
    bool started;     /* past a possible BOM */
    bool has_data;
    bool stopped;
};

void tk_sse_init(struct tk_sse *p, size_t max_line, size_t max_data);
/* Parse n bytes; fn for each complete event. TK_ETOOBIG past a limit;
 * after an error or a stop the parser takes nothing more. */
tk_rc tk_sse_feed(struct tk_sse *p, const char *buf, size_t n, tk_sse_fn fn, void *arg,
                  struct tk_err *e);
void tk_sse_free(struct tk_sse *p);

#endif
