/* conn_wire_fuzz.c: libFuzzer target for the pure parts of a refresh
 * (src/upstream/conn_wire.c): the token endpoint's answer classified and
 * parsed (tk_conn_classify, tk_conn_parse_answer) under a status taken
 * from the first byte, a URL's query masked (tk_conn_mask_url), and a
 * refresh request built (tk_conn_build_request) with the bytes as client
 * id, secret and refresh token under each client authentication.
 *
 * Invariants: a reason is a terminated [a-z0-9_] code; a parsed answer has
 * a valid access token and an expiry after now; a masked URL keeps no
 * query value ("***" after every '=' of the query); a built request's URL
 * and body are printable ASCII, carry no raw secret byte that needs
 * encoding, and its mask lists the secrets given. */
#include "../src/upstream/connections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "conn_wire_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

static const long statuses[] = {200, 201, 400, 401, 403, 404, 429, 500, 502, 503};

static void printable(const char *s, const char *what)
{
    for (; s && *s; s++)
        check(*s > 0x20 && *s < 0x7f, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    char *text = malloc(n + 1);
    memcpy(text, body, n);
    text[n] = '\0';

    /* classify and parse */
    struct tk_out_result a;
    memset(&a, 0, sizeof a);
    a.status = statuses[sel % TK_NELEM(statuses)];
    a.body = text;
    a.body_len = n;
    if (sel & 0x80) snprintf(a.retry_after, sizeof a.retry_after, "%.20s", text);
    char reason[TK_CONN_REASON_MAX];
    int64_t ra = -1;
    enum tk_refresh_outcome o = tk_conn_classify(&a, NULL, reason, &ra);
    check(o == TK_REFRESH_OK || o == TK_REFRESH_ERROR || o == TK_REFRESH_FAILED, "outcome");
    check(strnlen(reason, sizeof reason) < sizeof reason, "reason terminated");
    check(strspn(reason, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(reason), "reason code");
    check(ra >= 0 && ra <= 86400, "retry_after range");
    json_t *eff = json_pack("{s:I, s:I, s:{s:s}}", "default_lifetime", (json_int_t)3600,
                            "refresh_token_lifetime", (json_int_t)86400, "scopes", "separator",
                            (sel & 1) ? "," : " ");
    struct tk_conn_tokens t;
    json_t *holder = NULL;
    struct tk_err e;
    if (tk_conn_parse_answer(text, n, eff, 1000, &t, &holder, &e) == TK_OK) {
        size_t len;
        check(tk_conn_token_valid(t.access_token, &len), "access token valid");
        check(!t.refresh_token || tk_conn_token_valid(t.refresh_token, &len), "refresh valid");
        check(t.expires_at > 1000, "expiry after now");
        check(tk_conn_scopes_valid(t.scopes), "scopes valid");
        json_decref(holder);
    } else {
        check(e.rc == TK_EUPSTREAM && !strcmp(e.code, "invalid_answer"), "parse error code");
    }
    json_decref(eff);

    /* mask a URL */
    char *m = tk_conn_mask_url(text);
    const char *q = strchr(m, '?');
    for (const char *p = q; p && *p; p++)
        if (*p == '=') check(!strncmp(p + 1, "***", 3) && (p[4] == '\0' || p[4] == '&'), "masked");
    free(m);

    /* build a request with the bytes as secrets */
    static const char *const auths[] = {"client_secret_basic", "client_secret_post", "query"};
    size_t third = n / 3;
    char *id = strndup(text, third), *sec = strndup(text + third, third);
    struct tk_secret cs = {(unsigned char *)sec, strlen(sec)};
    struct tk_secret rt = {(unsigned char *)text + 2 * third, strlen(text + 2 * third)};
    json_t *scopes = json_pack("[s, s]", "a", "b:c");
    json_t *beff = json_pack("{s:s, s:s, s:s, s:{s:s, s:b}}", "token_url",
                             "https://t.example/token?x=1", "token_method",
                             (sel & 2) ? "GET" : "POST", "client_auth", auths[(sel >> 2) % 3],
                             "scopes", "separator", " ", "sent_on_refresh", (sel & 0x40) != 0);
    struct tk_conn_req r;
    if (tk_conn_build_request(beff, id, (sel & 0x20) ? NULL : &cs, &rt, scopes, 0, &r, &e) ==
        TK_OK) {
        printable(r.req.url, "url printable");
        printable(r.req.body, "body printable");
        check(r.req.nmask == ((sel & 0x20) ? 1u : 2u), "mask lists the secrets");
        tk_conn_req_free(&r);
    }
    json_decref(beff);
    json_decref(scopes);
    free(id);
    free(sec);
    free(text);
    return 0;
}
