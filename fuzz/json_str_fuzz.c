/* json_str_fuzz.c: libFuzzer target for tk_buf_json_str and tk_utf8_fix
 * (src/common/tk.h), the writers of everything GET /v1/events returns.
 *
 * Whatever the bytes (the input up to its first NUL): the JSON string is
 * valid JSON that jansson parses back to exactly tk_utf8_fix(input), holds
 * no raw control byte (C0, DEL, C1), and tk_utf8_fix's output is valid
 * UTF-8 that it leaves unchanged. */
#include "../src/common/tk.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "json_str_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *fixed = tk_utf8_fix(s);
    check(tk_utf8_valid(fixed, strlen(fixed)), "tk_utf8_fix output is valid UTF-8");
    check(tk_utf8_valid(s, strlen(s)) == (strcmp(s, fixed) == 0),
          "valid input is left as it is, invalid input is changed");
    char *again = tk_utf8_fix(fixed);
    check(strcmp(again, fixed) == 0, "tk_utf8_fix is idempotent");
    free(again);

    struct tk_buf b;
    tk_buf_init(&b, 1 << 20);
    check(tk_buf_json_str(&b, s) == TK_OK, "tk_buf_json_str succeeds");
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        check(c >= 0x20 && c != 0x7f, "no raw C0 control or DEL");
        check(!(c == 0xc2 && i + 1 < b.len && (unsigned char)b.data[i + 1] < 0xa0),
              "no raw C1 control");
    }
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &je);
    check(j && json_is_string(j), "the output parses as a JSON string");
    check(strcmp(json_string_value(j), fixed) == 0, "it decodes to tk_utf8_fix(input)");
    json_decref(j);
    tk_buf_free(&b);
    free(fixed);
    free(s);
    return 0;
}
