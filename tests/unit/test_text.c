/* test_text.c: src/common/text.h -- names: what is refused, and that the
 * sentence names the code point and never repeats the name. */
#include "unit.h"

#include "../../src/common/text.h"

#include <stdio.h>
#include <string.h>

static void refused(const char *s, const char *want_cp, int line)
{
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_text_check_name("name", s, 64, &e);
    if (rc != TK_EINVAL || strcmp(e.code, "invalid_field") != 0 || strcmp(e.field, "name") != 0) {
        unit_fail(__FILE__, line, "'%s': rc %d code '%s' field '%s', want TK_EINVAL invalid_field name",
                  want_cp, (int)rc, e.code, e.field);
        return;
    }
    if (!strstr(e.msg, want_cp))
        unit_fail(__FILE__, line, "the message does not name %s: %s", want_cp, e.msg);
    if (strlen(s) > 3 && strstr(e.msg, s))
        unit_fail(__FILE__, line, "the message repeats the name: %s", e.msg);
    for (const unsigned char *p = (const unsigned char *)e.msg; *p; p++)
        if (*p < 0x20 || *p >= 0x7f) {
            unit_fail(__FILE__, line, "the message is not plain ASCII: %s", e.msg);
            break;
        }
}

void test_text_check_name(void)
{
    struct tk_err e;
    /* fine: ASCII, accents, CJK, emoji, a zero-width joiner inside an emoji */
    static const char *const ok[] = {"ci", "deploy bot #2", "équipe données", "运维",
                                     "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb", "a-b_c.d"};
    for (size_t i = 0; i < TK_NELEM(ok); i++) {
        tk_err_clear(&e);
        if (tk_text_check_name("name", ok[i], 64, &e) != TK_OK)
            FAILF("'%s' refused: %s", ok[i], e.msg);
    }
    char max[65];
    memset(max, 'x', 64);
    max[64] = '\0';
    CHECK_OK(tk_text_check_name("name", max, 64, &e), &e);

    /* the bidirectional controls, each */
    static const struct {
        const char *s, *cp;
    } bidi[] = {
        {"evil\xe2\x80\xaetxt.exe", "U+202E"}, {"a\xe2\x80\xaa" "b", "U+202A"},
        {"a\xe2\x80\xab" "b", "U+202B"},       {"a\xe2\x80\xac" "b", "U+202C"},
        {"a\xe2\x80\xad" "b", "U+202D"},       {"a\xe2\x81\xa6" "b", "U+2066"},
        {"a\xe2\x81\xa7" "b", "U+2067"},       {"a\xe2\x81\xa8" "b", "U+2068"},
        {"a\xe2\x81\xa9" "b", "U+2069"},       {"a\xe2\x80\x8e" "b", "U+200E"},
        {"a\xe2\x80\x8f" "b", "U+200F"},       {"a\xd8\x9c" "b", "U+061C"},
        {"a\xe2\x80\xa8" "b", "U+2028"},       {"a\xe2\x80\xa9" "b", "U+2029"},
    };
    for (size_t i = 0; i < TK_NELEM(bidi); i++) refused(bidi[i].s, bidi[i].cp, __LINE__);
    /* C0, DEL, C1 */
    refused("a\x1b[31mred", "U+001B", __LINE__);
    refused("tab\there", "U+0009", __LINE__);
    refused("line\nbreak", "U+000A", __LINE__);
    refused("del\x7f", "U+007F", __LINE__);
    refused("c1\xc2\x9b" "31m", "U+009B", __LINE__);
    refused("nel\xc2\x85", "U+0085", __LINE__);
    /* the position is in characters: U+202E after two 2-byte characters */
    tk_err_clear(&e);
    tk_text_check_name("name", "\xc3\xa9\xc3\xa9\xe2\x80\xae", 64, &e);
    CHECK(strstr(e.msg, "at character 3") != NULL);
    /* not UTF-8: overlong, surrogate, stray continuation, truncated */
    static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "a\x80", "a\xe2\x80"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        tk_err_clear(&e);
        if (tk_text_check_name("name", bad[i], 64, &e) != TK_EINVAL || !strstr(e.msg, "UTF-8"))
            FAILF("ill-formed name %zu: %s", i, e.msg);
    }
    /* empty, too long, NULL; the field is the caller's */
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_text_check_name("name", "", 64, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_text_check_name("name", NULL, 64, &e), TK_EINVAL);
    char big[70];
    memset(big, 'x', 65);
    big[65] = '\0';
    tk_err_clear(&e);
    CHECK_EQ_INT(tk_text_check_name("label", big, 64, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "label");
    CHECK(strstr(e.msg, "65") != NULL);
}
