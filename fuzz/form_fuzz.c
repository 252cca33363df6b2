/* form_fuzz.c: libFuzzer target for tk_form_parse (src/http/parse.h).
 *
 * Each input is a form body. On success: at most TK_FORM_MAX_PAIRS pairs,
 * every name non-empty, at most TK_FORM_MAX_NAME bytes, UTF-8, unique, and
 * tk_form_get finds each pair's own value; every value UTF-8. On failure the
 * error has a code. */
#include "../src/http/parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "form_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (size) memcpy(in, data, size);
    in[size] = '\0';
    struct tk_pool *pool = tk_pool_new();
    struct tk_form f;
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_form_parse(in, size, pool, &f, &e) == TK_OK) {
        check(f.n >= 0 && f.n <= TK_FORM_MAX_PAIRS, "pair count bounded");
        for (int i = 0; i < f.n; i++) {
            size_t nl = strlen(f.names[i]);
            check(nl > 0 && nl <= TK_FORM_MAX_NAME, "name length");
            check(tk_utf8_valid(f.names[i], nl), "name UTF-8");
            check(tk_utf8_valid(f.values[i], strlen(f.values[i])), "value UTF-8");
            check(tk_form_get(&f, f.names[i]) == f.values[i], "names unique, get finds them");
        }
    } else {
        check(e.code[0] != '\0', "an error has a code");
        check(!strcmp(e.code, "invalid_form") || !strcmp(e.code, "duplicate_parameter"),
              "error code is one of the two");
    }
    tk_pool_free(pool);
    free(in);
    return 0;
}
