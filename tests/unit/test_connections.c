/* test_connections.c: the pure parts of the one refresh function (see
 * src/upstream/connections.h): the refresh request each client
 * authentication builds (client_secret_basic, client_secret_post, query,
 * Bitrix24's GET with everything in the query, eBay's scopes on refresh),
 * the classification of token endpoint answers (ok, transient, permanent,
 * hostile bodies), answer parsing and the refresh schedule. */
#include "unit.h"

#include "../../src/upstream/connections.h"

#include <stdlib.h>
#include <string.h>

static json_t *eff_of(const char *provider, json_t *ov, json_t *params)
{
    struct tk_catalog *c = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_catalog_load(NULL, &c, &e), &e)) return NULL;
    json_t *eff = tk_app_effective(tk_catalog_find(c, provider), "production", ov, params);
    tk_catalog_free(c);
    return eff;
}

static const char *header(const struct tk_conn_req *r, const char *prefix)
{
    for (size_t i = 0; i < r->req.nheaders; i++)
        if (!strncmp(r->req.headers[i], prefix, strlen(prefix))) return r->req.headers[i];
    return NULL;
}

void test_conn_request_auth(void)
{
    struct tk_secret *cs = tk_secret_new("s3cr:et&=", 9);
    struct tk_secret *rt = tk_secret_new("rt/+ 1", 6);
    json_t *scopes = json_pack("[s, s]", "https://api.ebay.com/oauth/api_scope", "sell");
    struct tk_err e;
    struct tk_conn_req r;

    /* generic-oauth2 with client_secret_post: all in the form */
    json_t *ov = json_pack("{s:s, s:s}", "token_url", "http://127.0.0.1:9/t", "client_auth",
                           "client_secret_post");
    json_t *eff = eff_of("generic-oauth2", ov, NULL);
    if (!CHECK_OK(tk_conn_build_request(eff, "cid", cs, rt, scopes, 5000, &r, &e), &e)) return;
    CHECK_EQ_STR(r.req.method, "POST");
    CHECK_EQ_STR(r.req.url, "http://127.0.0.1:9/t");
    CHECK_EQ_STR(r.req.body, "grant_type=refresh_token&refresh_token=rt%2F%2B%201&client_id=cid&"
                             "client_secret=s3cr%3Aet%26%3D");
    CHECK(header(&r, "Content-Type: application/x-www-form-urlencoded") != NULL);
    CHECK(header(&r, "Authorization") == NULL);
    CHECK_EQ_INT(r.req.nmask, 2);
    CHECK_EQ_INT(r.req.timeout_ms, 5000);
    tk_conn_req_free(&r);
    json_decref(eff);
    json_decref(ov);

    /* eBay: Basic (form-encoded id and secret), scopes on refresh, space-separated */
    ov = json_pack("{s:s}", "token_url", "https://api.ebay.com/identity/v1/oauth2/token");
    eff = eff_of("ebay", ov, NULL);
    if (!CHECK_OK(tk_conn_build_request(eff, "cid", cs, rt, scopes, 0, &r, &e), &e)) return;
    CHECK_EQ_STR(r.req.method, "POST");
    /* base64("cid:s3cr%3Aet%26%3D") */
    CHECK_EQ_STR(header(&r, "Authorization"), "Authorization: Basic Y2lkOnMzY3IlM0FldCUyNiUzRA==");
    CHECK_EQ_STR(r.req.body,
                 "grant_type=refresh_token&refresh_token=rt%2F%2B%201&scope=https%3A%2F%2F"
                 "api.ebay.com%2Foauth%2Fapi_scope%20sell");
    CHECK(!strstr(r.req.body, "client_secret"));
    tk_conn_req_free(&r);
    json_decref(eff);
    json_decref(ov);

    /* Bitrix24: GET, everything in the query, no body, scopes not sent */
    json_t *params = json_pack("{s:s}", "domain", "acme.bitrix24.com");
    eff = eff_of("bitrix24", NULL, params);
    if (!CHECK_OK(tk_conn_build_request(eff, "local.1", cs, rt, scopes, 0, &r, &e), &e)) return;
    CHECK_EQ_STR(r.req.method, "GET");
    CHECK(r.req.body == NULL);
    CHECK_EQ_STR(r.req.url, "https://oauth.bitrix.info/oauth/token/?client_id=local.1&"
                            "client_secret=s3cr%3Aet%26%3D&grant_type=refresh_token&"
                            "refresh_token=rt%2F%2B%201");
    CHECK(header(&r, "Content-Type") == NULL);
    tk_conn_req_free(&r);
    json_decref(eff);

    /* query auth on a POST (a private deployment): credentials in the URL, the rest in the form;
     * a token URL with a query already gets '&' */
    ov = json_pack("{s:s, s:s}", "token_url", "http://127.0.0.1:9/t?x=1", "client_auth", "query");
    eff = eff_of("generic-oauth2", ov, NULL);
    if (!CHECK_OK(tk_conn_build_request(eff, "cid", NULL, rt, NULL, 0, &r, &e), &e)) return;
    CHECK_EQ_STR(r.req.url, "http://127.0.0.1:9/t?x=1&client_id=cid");
    CHECK_EQ_STR(r.req.body, "grant_type=refresh_token&refresh_token=rt%2F%2B%201");
    CHECK_EQ_INT(r.req.nmask, 1);
    tk_conn_req_free(&r);
    json_decref(eff);
    json_decref(ov);

    /* a public client with Basic configured: client_id in the form */
    ov = json_pack("{s:s}", "token_url", "http://127.0.0.1:9/t");
    eff = eff_of("generic-oauth2", ov, NULL);
    if (!CHECK_OK(tk_conn_build_request(eff, "cid", NULL, rt, NULL, 0, &r, &e), &e)) return;
    CHECK(header(&r, "Authorization") == NULL);
    CHECK(strstr(r.req.body, "client_id=cid") != NULL);
    tk_conn_req_free(&r);
    json_decref(eff);
    json_decref(ov);

    /* no token URL (generic-oauth2 without one): refused naming it */
    eff = eff_of("generic-oauth2", NULL, NULL);
    CHECK_EQ_INT(tk_conn_build_request(eff, "cid", cs, rt, NULL, 0, &r, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "token_url");
    json_decref(eff);

    json_decref(params);
    json_decref(scopes);
    tk_secret_free(cs);
    tk_secret_free(rt);
}

static enum tk_refresh_outcome classify(enum tk_out_error err, long status, const char *ctype,
                                        const char *body, const char *retry_after, char *reason,
                                        int64_t *ra)
{
    struct tk_out_result a;
    memset(&a, 0, sizeof a);
    a.error = err;
    a.status = status;
    snprintf(a.content_type, sizeof a.content_type, "%s", ctype ? ctype : "");
    snprintf(a.retry_after, sizeof a.retry_after, "%s", retry_after ? retry_after : "");
    a.body = body;
    a.body_len = body ? strlen(body) : 0;
    return tk_conn_classify(&a, NULL, reason, ra);
}

void test_conn_classify(void)
{
    char reason[TK_CONN_REASON_MAX];
    int64_t ra;
    const char *J = "application/json";
    CHECK_EQ_INT(classify(TK_OUT_OK, 200, J, "{\"access_token\":\"a\",\"expires_in\":60}", NULL,
                          reason, &ra),
                 TK_REFRESH_OK);
    CHECK_EQ_STR(reason, "");
    /* transient */
    CHECK_EQ_INT(classify(TK_OUT_TIMEOUT, 0, NULL, NULL, NULL, reason, &ra), TK_REFRESH_ERROR);
    CHECK_EQ_STR(reason, "timeout");
    CHECK_EQ_INT(classify(TK_OUT_CONNECT_FAILED, 0, NULL, NULL, NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    CHECK_EQ_STR(reason, "connect_failed");
    CHECK_EQ_INT(classify(TK_OUT_TOO_LARGE, 200, J, NULL, NULL, reason, &ra), TK_REFRESH_ERROR);
    CHECK_EQ_INT(classify(TK_OUT_OK, 503, "text/html", "<html>down</html>", NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    CHECK_EQ_STR(reason, "http_503");
    CHECK_EQ_INT(classify(TK_OUT_OK, 429, J, "{}", "120", reason, &ra), TK_REFRESH_ERROR);
    CHECK_EQ_STR(reason, "rate_limited");
    CHECK_EQ_INT(ra, 120);
    CHECK_EQ_INT(classify(TK_OUT_OK, 429, J, "{}", "Wed, 21 Oct 2015 07:28:00 GMT", reason, &ra),
                 TK_REFRESH_ERROR);
    CHECK_EQ_INT(ra, 0);
    CHECK_EQ_INT(classify(TK_OUT_OK, 200, "text/html", "<html>ok?</html>", NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    CHECK_EQ_STR(reason, "not_json");
    CHECK_EQ_INT(classify(TK_OUT_OK, 200, J, "{\"token\":\"x\"}", NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    CHECK_EQ_STR(reason, "invalid_answer");
    CHECK_EQ_INT(classify(TK_OUT_OK, 200, J, "[1,2]", NULL, reason, &ra), TK_REFRESH_ERROR);
    CHECK_EQ_INT(classify(TK_OUT_OK, 200, J, "{\"access_token\":", NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    CHECK_EQ_INT(
        classify(TK_OUT_OK, 400, J, "{\"error\":\"temporarily_unavailable\"}", NULL, reason, &ra),
        TK_REFRESH_ERROR);
    CHECK_EQ_INT(classify(TK_OUT_OK, 404, "text/plain", "nope", NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    /* permanent */
    CHECK_EQ_INT(classify(TK_OUT_OK, 400, J, "{\"error\":\"invalid_grant\"}", NULL, reason, &ra),
                 TK_REFRESH_FAILED);
    CHECK_EQ_STR(reason, "invalid_grant");
    CHECK_EQ_INT(classify(TK_OUT_OK, 401, J, "{\"error\":\"invalid_client\"}", NULL, reason, &ra),
                 TK_REFRESH_FAILED);
    CHECK_EQ_STR(reason, "invalid_client");
    CHECK_EQ_INT(classify(TK_OUT_OK, 401, J,
                          "{\"error\":\"expired_token\",\"error_description\":\"The access token "
                          "provided has expired.\"}",
                          NULL, reason, &ra),
                 TK_REFRESH_FAILED);
    CHECK_EQ_STR(reason, "expired_token");
    /* an error in a 200 (Bitrix24 does that) is still an error */
    CHECK_EQ_INT(classify(TK_OUT_OK, 200, J, "{\"error\":\"invalid_grant\"}", NULL, reason, &ra),
                 TK_REFRESH_FAILED);
    /* hostile error codes are sanitized and bounded */
    CHECK_EQ_INT(classify(TK_OUT_OK, 400, J,
                          "{\"error\":\"<script>Invalid-GRANT\\n"
                          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
                          NULL, reason, &ra),
                 TK_REFRESH_FAILED);
    CHECK(strlen(reason) <= 40);
    CHECK(strspn(reason, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(reason));
    /* a NUL in the answer: not usable JSON, transient */
    CHECK_EQ_INT(classify(TK_OUT_OK, 400, J, "{\"error\":\"a\\u0000b\"}", NULL, reason, &ra),
                 TK_REFRESH_ERROR);
    /* not sent at all: no attempt */
    CHECK_EQ_INT(classify(TK_OUT_STOPPING, 0, NULL, NULL, NULL, reason, &ra), TK_REFRESH_NONE);
    CHECK_EQ_INT(classify(TK_OUT_BUSY, 0, NULL, NULL, NULL, reason, &ra), TK_REFRESH_NONE);
}

void test_conn_parse_answer(void)
{
    json_t *params = json_pack("{s:s}", "domain", "a.bitrix24.com");
    json_t *eff = eff_of("bitrix24", NULL, params);
    json_decref(params);
    struct tk_conn_tokens t;
    json_t *h;
    struct tk_err e;
    const char *b = "{\"access_token\":\"AT\",\"refresh_token\":\"RT\",\"expires_in\":\"3600\","
                    "\"scope\":\"crm,user\"}";
    if (!CHECK_OK(tk_conn_parse_answer(b, strlen(b), eff, 1000, &t, &h, &e), &e)) return;
    CHECK_EQ_STR(t.access_token, "AT");
    CHECK_EQ_STR(t.refresh_token, "RT");
    CHECK_EQ_INT(t.expires_at, 1000 + 3600 * 1000);
    CHECK_EQ_INT(t.refresh_expires_at, 1000 + 2419200LL * 1000); /* the catalogue's lifetime */
    CHECK_EQ_INT(json_array_size(t.scopes), 2);
    json_decref(h);
    /* no expires_in: default_lifetime; no refresh token */
    b = "{\"access_token\":\"AT\"}";
    if (!CHECK_OK(tk_conn_parse_answer(b, strlen(b), eff, 0, &t, &h, &e), &e)) return;
    CHECK_EQ_INT(t.expires_at, 3600 * 1000);
    CHECK(t.refresh_token == NULL);
    CHECK_EQ_INT(t.refresh_expires_at, 0);
    json_decref(h);
    /* refused: not JSON, no access token, a token with a newline; never quoted */
    const char *bad[] = {"<html>", "{}", "{\"access_token\":\"a\\nb\"}", "{\"access_token\":5}",
                         "null"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        CHECK_EQ_INT(tk_conn_parse_answer(bad[i], strlen(bad[i]), eff, 0, &t, &h, &e),
                     TK_EUPSTREAM);
        CHECK_EQ_STR(e.code, "invalid_answer");
    }
    json_decref(eff);
}

void test_conn_schedule(void)
{
    struct tk_refresh_ctx c = {.ahead_s = 300, .ahead_percent = 10, .max_idle_s = 86400};
    int64_t now = 1000000;
    /* an hour's token: 10% of it (360 s) is more than 300 s and wins */
    int64_t at = tk_conn_next_refresh_at(&c, now, now + 3600000, 0, now);
    CHECK(at <= now + 3600000 - 360000 && at >= now + 3600000 - 360000 - 36000);
    /* a 10-minute token: 300 s wins */
    at = tk_conn_next_refresh_at(&c, now, now + 600000, 0, now);
    CHECK(at <= now + 300000 && at >= now + 300000 - 30000);
    /* already due: now */
    CHECK_EQ_INT(tk_conn_next_refresh_at(&c, now, now + 1000, 0, now), now);
    /* a refresh token that expires unused: at most max_idle after issue */
    at = tk_conn_next_refresh_at(&c, now, now + 30LL * 86400000, now + 90LL * 86400000, now);
    CHECK_EQ_INT(at, now + 86400000);
}
