/* issued.c: see issued.h. */
#include "issued.h"

#include <stdio.h>
#include <string.h>

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static uint32_t crc32(const char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char)p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void check_chars(uint32_t crc, char out[TK_ISSUED_CHECK])
{
    for (int i = TK_ISSUED_CHECK - 1; i >= 0; i--) {
        out[i] = b62[crc % 62];
        crc /= 62;
    }
}

static bool is_b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

void tk_issued_new(const char *kind, char out[TK_ISSUED_MAX])
{
    size_t kl = strlen(kind);
    memcpy(out, kind, kl);
    out[kl] = '_';
    char *r = out + kl + 1;
    /* Rejection sampling keeps every base62 digit uniform. */
    int n = 0;
    while (n < TK_ISSUED_RANDOM) {
        unsigned char buf[48];
        tk_random(buf, sizeof buf);
        for (size_t i = 0; i < sizeof buf && n < TK_ISSUED_RANDOM; i++)
            if (buf[i] < 248) r[n++] = b62[buf[i] % 62];
        tk_wipe(buf, sizeof buf);
    }
    size_t body = kl + 1 + TK_ISSUED_RANDOM;
    check_chars(crc32(out, body), out + body);
    out[body + TK_ISSUED_CHECK] = '\0';
}

tk_rc tk_issued_check(const char *kind, const char *s, size_t len, struct tk_err *e)
{
    size_t kl = strlen(kind);
    size_t want = kl + 1 + TK_ISSUED_RANDOM + TK_ISSUED_CHECK;
    if (len == 0) return tk_err_set(e, TK_EINVAL, "malformed", "the token is empty");
    if (len > 512)
        return tk_err_set(e, TK_EINVAL, "malformed",
                          "the token is %zu characters long; a %s token has %zu", len, kind,
                          want);
    size_t lead = 0, trail = 0;
    while (lead < len && s[lead] && strchr(" \t\r\n\"'`", s[lead])) lead++;
    while (trail < len - lead && s[len - 1 - trail] && strchr(" \t\r\n\"'`", s[len - 1 - trail]))
        trail++;
    if (lead || trail)
        return tk_err_set(e, TK_EINVAL, "malformed",
                          "the token has %zu leading and %zu trailing whitespace or quote "
                          "characters (copy-paste damage?)",
                          lead, trail);
    /* Never repeat what was presented, not even its prefix: it is part of a
     * credential, and this message goes to logs and the event log. */
    if (len < kl + 1 || memcmp(s, kind, kl) != 0 || s[kl] != '_')
        return tk_err_set(e, TK_EINVAL, "malformed",
                          "the token does not start with '%s_' (wrong prefix: is it another "
                          "kind of token?)",
                          kind);
    for (size_t i = kl + 1; i < len; i++)
        if (!is_b62(s[i]))
            return tk_err_set(e, TK_EINVAL, "malformed",
                              "the token has a character outside [0-9A-Za-z] at position %zu",
                              i + 1);
    if (len != want)
        return tk_err_set(e, TK_EINVAL, "malformed",
                          "the token is %zu characters long; a %s token has %zu (truncated or "
                          "extended?)",
                          len, kind, want);
    char c[TK_ISSUED_CHECK];
    check_chars(crc32(s, want - TK_ISSUED_CHECK), c);
    if (memcmp(c, s + want - TK_ISSUED_CHECK, TK_ISSUED_CHECK) != 0)
        return tk_err_set(e, TK_EINVAL, "malformed",
                          "the token's checksum does not match: a character was changed");
    return TK_OK;
}

void tk_issued_preview(const char *s, char out[24])
{
    const char *us = strchr(s, '_');
    size_t len = strlen(s);
    if (!us || us - s > 6 || len < (size_t)(us - s) + 1 + 8) {
        snprintf(out, 24, "(malformed)");
        return;
    }
    snprintf(out, 24, "%.*s%.4s...%.4s", (int)(us - s + 1), s, us + 1, s + len - 4);
}
