/* text.c: see text.h. */
#include "text.h"

#include "log.h"

#include <string.h>

/* The code point of the well-formed sequence p[0..len). */
static unsigned decode(const unsigned char *p, size_t len)
{
    if (len == 1) return p[0];
    unsigned c = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) c = (c << 6) | (p[i] & 0x3f);
    return c;
}

/* Why c may not be in a name, or NULL. */
static const char *forbidden(unsigned c)
{
    if (c < 0x20 || c == 0x7f) return "a control character";
    if (c >= 0x80 && c <= 0x9f) return "a C1 control character";
    if (c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
        (c >= 0x2066 && c <= 0x2069))
        return "a bidirectional control, which can make text display as something else";
    if (c == 0x2028 || c == 0x2029) return "a line or paragraph separator";
    return NULL;
}

tk_rc tk_text_check_name(const char *field, const char *s, size_t max_bytes, struct tk_err *e)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s must not be empty", field);
    if (n > max_bytes)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                            "%s is %zu bytes long; at most %zu are allowed", field, n, max_bytes);
    const unsigned char *p = (const unsigned char *)s;
    size_t at = 1; /* character position, from 1 */
    for (size_t i = 0; i < n; at++) {
        size_t len = tk_utf8_char(p + i, n - i);
        if (len == 0)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s is not valid UTF-8 (byte 0x%02x at offset %zu)", field, p[i],
                                i);
        unsigned c = decode(p + i, len);
        const char *why = forbidden(c);
        if (why)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s contains U+%04X at character %zu (%s); names may not "
                                "contain control, bidirectional control or line separator "
                                "characters",
                                field, c, at, why);
        i += len;
    }
    return TK_OK;
}
