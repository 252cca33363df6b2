/* issued_fuzz.c: libFuzzer target for tk_issued_check (src/common/issued.h).
 *
 * The first input byte picks the expected kind; the rest is the token, copied
 * into a buffer of exactly its length with no NUL after it, so that any read
 * past len is caught by AddressSanitizer. A token that passes must have the
 * documented shape; a freshly made token must pass. */
#include "../src/common/issued.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {TK_KIND_OPERATOR, TK_KIND_CLIENT, TK_KIND_REFRESH,
                                    TK_KIND_CODE};

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "issued_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

static int is_b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A token tokend makes must pass its own check, for every kind. */
    for (size_t k = 0; k < TK_NELEM(kinds); k++) {
        char tok[TK_ISSUED_MAX];
        struct tk_err e;
        tk_issued_new(kinds[k], tok);
        check(tk_issued_check(kinds[k], tok, strlen(tok), &e) == TK_OK, "new token passes check");
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *kind = kinds[data[0] % TK_NELEM(kinds)];
    size_t len = size - 1;
    char *s = malloc(len ? len : 1); /* exact size, not NUL-terminated */
    if (len) memcpy(s, data + 1, len);

    struct tk_err e;
    memset(&e, 0xAA, sizeof e); /* must be fully written on failure */
    tk_rc rc = tk_issued_check(kind, s, len, &e);
    size_t kl = strlen(kind);
    if (rc == TK_OK) {
        check(len == kl + 1 + TK_ISSUED_RANDOM + TK_ISSUED_CHECK, "length of an accepted token");
        check(memcmp(s, kind, kl) == 0 && s[kl] == '_', "prefix of an accepted token");
        for (size_t i = kl + 1; i < len; i++)
            check(is_b62(s[i]), "alphabet of an accepted token");
        /* the preview of an accepted token is well-formed */
        char z[TK_ISSUED_MAX + 1], pv[24];
        memcpy(z, s, len);
        z[len] = '\0';
        tk_issued_preview(z, pv);
        check(strnlen(pv, sizeof pv) < sizeof pv, "preview is NUL-terminated");
        check(strncmp(pv, z, kl + 1) == 0, "preview starts with the prefix");
    } else {
        check(rc == TK_EINVAL, "rc of a rejected token is TK_EINVAL");
        check(strcmp(e.code, "malformed") == 0, "code of a rejected token is malformed");
        check(strnlen(e.msg, sizeof e.msg) < sizeof e.msg, "message is NUL-terminated");
        check(e.msg[0] != '\0', "message is not empty");
    }
    /* The preview must also cope with any NUL-terminated string. */
    char *z = malloc(len + 1);
    if (len) memcpy(z, s, len);
    z[len] = '\0';
    char pv[24];
    tk_issued_preview(z, pv);
    check(strnlen(pv, sizeof pv) < sizeof pv, "preview of anything is NUL-terminated");
    free(z);
    free(s);
    return 0;
}
