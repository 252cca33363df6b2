/* token_form.c: the form of a presented client token (clients.h), apart
 * from the store so that the fuzz target links it alone. */
#include "clients.h"

#include <stdio.h>
#include <string.h>

/* ---- the form of a presented token ---- */

const char *tk_client_warning_name(unsigned i)
{
    static const char *const names[TK_CTW_COUNT] = {
        "leading_whitespace", "leading_newline",   "trailing_whitespace",
        "trailing_newline",   "trailing_crlf",     "surrounding_quotes",
    };
    return i < TK_CTW_COUNT ? names[i] : "unknown";
}

json_t *tk_client_warnings_json(unsigned w)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < TK_CTW_COUNT; i++)
        if (w & (1u << i)) json_array_append_new(a, json_string(tk_client_warning_name(i)));
    return a;
}

/* Strip spaces, tabs, CR and LF at both ends of [*s, *s + *n). */
static void strip_ws(const char **s, size_t *n, unsigned *w)
{
    const char *p = *s;
    size_t len = *n;
    while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        *w |= (*p == ' ' || *p == '\t') ? TK_CTW_LEADING_WHITESPACE : TK_CTW_LEADING_NEWLINE;
        p++;
        len--;
    }
    while (len) {
        char c = p[len - 1];
        if (c == ' ' || c == '\t') {
            *w |= TK_CTW_TRAILING_WHITESPACE;
            len--;
        } else if (c == '\n') {
            bool crlf = len >= 2 && p[len - 2] == '\r';
            *w |= crlf ? TK_CTW_TRAILING_CRLF : TK_CTW_TRAILING_NEWLINE;
            len -= crlf ? 2 : 1;
        } else if (c == '\r') {
            *w |= TK_CTW_TRAILING_NEWLINE;
            len--;
        } else {
            break;
        }
    }
    *s = p;
    *n = len;
}

tk_rc tk_client_token_scan(const char *in, size_t n, const char **tok, size_t *len,
                           unsigned *warnings, struct tk_err *e)
{
    *warnings = 0;
    *tok = NULL;
    *len = 0;
    if (!in) n = 0;
    if (n > TK_CLIENT_TOKEN_INPUT_MAX)
        return tk_err_set(e, TK_EAUTH, "malformed",
                          "the client token is %zu bytes long; a client token is %d characters",
                          n, 4 + TK_ISSUED_RANDOM + TK_ISSUED_CHECK);
    const char *s = in;
    strip_ws(&s, &n, warnings);
    if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\''))) {
        *warnings |= TK_CTW_SURROUNDING_QUOTES;
        s++;
        n -= 2;
        strip_ws(&s, &n, warnings);
    }
    if (n == 0) return tk_err_set(e, TK_EAUTH, "missing", "no client token was presented");
    struct tk_err fe;
    if (tk_issued_check(TK_KIND_CLIENT, s, n, &fe) != TK_OK)
        return tk_err_set(e, TK_EAUTH, "malformed", "%s", fe.msg);
    *tok = s;
    *len = n;
    return TK_OK;
}
