/* sse_fuzz.c: libFuzzer target for the event-stream parser (src/http/sse.h).
 *
 * The input is parsed twice, whole and cut into chunks of sizes drawn from
 * its first byte: both must give the same events (name, data, id) and the
 * same result; every event respects the limits. */
#include "../src/http/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "sse_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

#define MAX_LINE 256
#define MAX_DATA 1024

struct trace {
    struct tk_buf b;
    int events;
};

static bool on_event(const struct tk_sse_event *ev, void *arg)
{
    struct trace *t = arg;
    check(ev->data_len <= MAX_DATA, "data within max_data");
    check(strlen(ev->event) <= TK_SSE_NAME_MAX, "event name within the limit");
    check(strlen(ev->id) <= TK_SSE_NAME_MAX, "id within the limit");
    check(ev->data[ev->data_len] == '\0', "data NUL-terminated");
    check(ev->data_len > 0 || ev->data[0] == '\0', "empty data is empty");
    tk_buf_printf(&t->b, "[%s|%s|%zu:", ev->event, ev->id, ev->data_len);
    tk_buf_add(&t->b, ev->data, ev->data_len);
    tk_buf_add(&t->b, "]", 1);
    return ++t->events < 1000;
}

static tk_rc run(const uint8_t *data, size_t size, unsigned seed, struct trace *t)
{
    struct tk_sse p;
    struct tk_err e;
    tk_sse_init(&p, MAX_LINE, MAX_DATA);
    tk_buf_init(&t->b, 1u << 24);
    t->events = 0;
    tk_rc rc = TK_OK;
    size_t off = 0;
    while (off < size && rc == TK_OK) {
        size_t n = size - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 7;
            if (n > size - off) n = size - off;
        }
        rc = tk_sse_feed(&p, (const char *)data + off, n, on_event, t, &e);
        off += n;
    }
    if (rc != TK_OK) check(!strcmp(e.code, "sse_too_large"), "errors are sse_too_large");
    tk_sse_free(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct trace a, b;
    unsigned seed = size ? data[0] | 1u : 1u;
    tk_rc ra = run(data, size, 0, &a);
    tk_rc rb = run(data, size, seed, &b);
    check(ra == rb, "same result whole and in chunks");
    check(a.b.len == b.b.len && (!a.b.len || !memcmp(a.b.data, b.b.data, a.b.len)),
          "same events whole and in chunks");
    tk_buf_free(&a.b);
    tk_buf_free(&b.b);
    return 0;
}
