/* int_fuzz.c: libFuzzer target for tk_parse_int (src/common/tk.h).
 *
 * The first 16 bytes (when there are that many) give the bounds [min, max];
 * the rest, NUL-terminated, is the string. The result is compared with a
 * reference: optional '-', one or more ASCII digits, nothing else, value in
 * int64 and within the bounds. */
#include "../src/common/tk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what, const char *input)
{
    if (!cond) {
        fprintf(stderr, "int_fuzz: invariant failed: %s (input '%s')\n", what, input);
        abort();
    }
}

/* Reference parser: 1 = accepted with *out, 0 = rejected. */
static int ref_parse(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!*p) return 0;
    /* accumulate as a negative number so INT64_MIN fits */
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        int d = *p - '0';
        if (v < (INT64_MIN + d) / 10) return 0;
        v = v * 10 - d;
    }
    if (!neg) {
        if (v == INT64_MIN) return 0;
        v = -v;
    }
    if (v < min || v > max) return 0;
    *out = v;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t min = INT64_MIN, max = INT64_MAX;
    if (size >= 16) {
        memcpy(&min, data, 8);
        memcpy(&max, data + 8, 8);
        data += 16;
        size -= 16;
    }
    char *s = malloc(size + 1);
    if (size) memcpy(s, data, size);
    s[size] = '\0';

    int64_t got = 12345, want = 0;
    tk_rc rc = tk_parse_int(s, min, max, &got);
    int ok = ref_parse(s, min, max, &want);
    check((rc == TK_OK) == ok, "accepts exactly what the reference accepts", s);
    if (ok)
        check(got == want, "same value as the reference", s);
    else
        check(got == 12345, "out untouched on failure", s);
    free(s);
    return 0;
}
