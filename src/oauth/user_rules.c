/* user_rules.c: the email and password rules of end users (users.h), apart
 * from the store so that the fuzz target links them alone. */
#include "users.h"

#include <string.h>

bool tk_user_status_valid(const char *s)
{
    return s && (!strcmp(s, "active") || !strcmp(s, "disabled"));
}

tk_rc tk_user_email_norm(const char *s, size_t n, char out[TK_USER_EMAIL_MAX + 1], struct tk_err *e)
{
    out[0] = '\0';
    if (n < 3 || n > TK_USER_EMAIL_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "email", "email must be 3 to %d bytes",
                            TK_USER_EMAIL_MAX);
    if (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' ||
        s[n - 1] == '\r')
        return tk_err_field(e, TK_EINVAL, "invalid_field", "email",
                            "email must not start or end with whitespace (it is not trimmed)");
    size_t ats = 0, at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == '\\')
            return tk_err_field(e, TK_EINVAL, "invalid_field", "email",
                                "email must not contain whitespace, control characters, quotes, "
                                "commas, backslashes or angle brackets");
        if (c == '@') {
            ats++;
            at = i;
        }
    }
    if (ats != 1 || at == 0 || at == n - 1)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "email",
                            "email must be one address: local-part@domain");
    if (!tk_utf8_valid(s, n))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "email", "email must be UTF-8");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[n] = '\0';
    return TK_OK;
}

tk_rc tk_user_password_check(const char *pw, size_t n, struct tk_err *e)
{
    if (n < TK_PASSWORD_MIN || n > TK_PASSWORD_MAX)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "password",
                            "password must be %d to %d bytes (it was %zu)", TK_PASSWORD_MIN,
                            TK_PASSWORD_MAX, n);
    if (memchr(pw, '\0', n))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "password",
                            "password must not contain U+0000");
    return TK_OK;
}
