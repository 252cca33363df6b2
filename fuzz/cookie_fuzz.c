/* cookie_fuzz.c: libFuzzer target for tk_cookie_find (src/http/parse.h).
 *
 * Input: "NAME\nHEADER" (no newline: the name is "sid"). A found value fits
 * the buffer, has only cookie-octets, and occurs in the header; a duplicate
 * or absent result leaves the output empty. */
#include "../src/http/parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "cookie_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (size) memcpy(in, data, size);
    in[size] = '\0';
    const char *name = "sid", *header = in;
    char *nl = strchr(in, '\n');
    if (nl) {
        *nl = '\0';
        name = in;
        header = nl + 1;
    }
    char out[32];
    memset(out, 0x5A, sizeof out);
    enum tk_cookie_result r = tk_cookie_find(header, name, out, sizeof out);
    check(memchr(out, '\0', sizeof out) != NULL, "output NUL-terminated");
    if (r == TK_COOKIE_FOUND) {
        check(tk_cookie_name_ok(name) || name[0] != '\0', "found under a name");
        check(tk_cookie_value_ok(out), "value is cookie-octets");
        check(strstr(header, out) != NULL, "value comes from the header");
    } else {
        check(r == TK_COOKIE_ABSENT || r == TK_COOKIE_DUPLICATE, "result is one of three");
        check(out[0] == '\0', "nothing returned when not found");
    }
    free(in);
    return 0;
}
