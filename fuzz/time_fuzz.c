/* time_fuzz.c: libFuzzer target for tk_time_parse (src/common/tk.h).
 *
 * The input is copied and NUL-terminated. Any time that parses to a value
 * within the range the integer form accepts (0 .. 9999-12-31T23:59:59.999Z)
 * must survive a round trip through tk_time_fmt.
 *
 * Built with -DTK_FUZZ_STRICT (FUZZ_STRICT=1 fuzz/run.sh), it also insists
 * that every accepted time is within that range and that the day exists in
 * its month; see fuzz/crashes/README.md for what that finds today. */
#include "../src/common/tk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MS INT64_C(253402300799999)

static void check(int cond, const char *what, const char *input)
{
    if (!cond) {
        fprintf(stderr, "time_fuzz: invariant failed: %s (input '%s')\n", what, input);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef TK_FUZZ_STRICT
static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (size) memcpy(s, data, size);
    s[size] = '\0';

    int64_t ms = INT64_MIN;
    tk_rc rc = tk_time_parse(s, &ms);
    check(rc == TK_OK || rc == TK_EINVAL, "rc is TK_OK or TK_EINVAL", s);
    if (rc == TK_OK) {
        check(ms != INT64_MIN, "ms written on success", s);
#ifdef TK_FUZZ_STRICT
        check(ms >= 0 && ms <= MAX_MS, "accepted time within 1970 .. 9999", s);
        if (strlen(s) >= 10 && s[4] == '-') {
            int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
            check(d <= days_in_month(y, m), "accepted day exists in its month", s);
        }
#endif
        if (ms >= 0 && ms <= MAX_MS) {
            char buf[40];
            tk_time_fmt(ms, buf, sizeof buf);
            int64_t back = -1;
            check(tk_time_parse(buf, &back) == TK_OK, "formatted time parses", s);
            check(back == ms, "formatted time parses to the same ms", s);
        }
    }
    free(s);
    return 0;
}
