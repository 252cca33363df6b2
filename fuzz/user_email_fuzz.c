/* user_email_fuzz.c: libFuzzer target for tk_user_email_norm and
 * tk_user_password_check (src/oauth/users.h), which see every email and
 * password of /v1/users and the login form.
 *
 * The input is copied into a buffer of exactly its length with no NUL after
 * it. Invariants: an accepted email is the input with ASCII letters
 * lowercased, 3..254 bytes, one '@', no whitespace or control characters,
 * valid UTF-8, and normalizing it again gives itself; a refusal names the
 * field; the password check never quotes the input in its message. */
#include "../src/oauth/users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "user_email_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in) return 0;
    if (size) memcpy(in, data, size);
    char out[TK_USER_EMAIL_MAX + 1], again[TK_USER_EMAIL_MAX + 1];
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_user_email_norm(in, size, out, &e);
    if (rc == TK_OK) {
        size_t n = strlen(out);
        check(n == size, "the length is kept (no NUL inside)");
        check(n >= 3 && n <= TK_USER_EMAIL_MAX, "length bounds");
        const char *at = strchr(out, '@');
        check(at && at != out && at[1] && !strchr(at + 1, '@'), "one @ inside");
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)out[i];
            check(c > 0x20 && c != 0x7f, "no whitespace or control characters");
            check(!(c >= 'A' && c <= 'Z'), "lowercased");
            unsigned char o = (unsigned char)in[i];
            check(c == o || (o >= 'A' && o <= 'Z' && c == o + 32), "only ASCII letters change");
        }
        check(tk_utf8_valid(out, n), "UTF-8");
        struct tk_err e2;
        check(tk_user_email_norm(out, n, again, &e2) == TK_OK && !strcmp(again, out), "idempotent");
    } else {
        check(rc == TK_EINVAL && !strcmp(e.field, "email"), "refusals name the email field");
    }
    tk_err_clear(&e);
    rc = tk_user_password_check(in, size, &e);
    if (rc == TK_OK)
        check(size >= TK_PASSWORD_MIN && size <= TK_PASSWORD_MAX && !memchr(in, 0, size),
              "an accepted password is 8..1024 bytes without NUL");
    else
        check(!strcmp(e.field, "password") && (size < 8 || !memmem(e.msg, strlen(e.msg), in, size)),
              "a refusal names the field and never quotes the password");
    free(in);
    return 0;
}
