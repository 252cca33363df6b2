/* test_connect.c: the connect flow's domain half (src/upstream/connect.c):
 * PKCE and base64url against RFC 7636's vector, the authorization URL, the
 * return_url check with hostile input, the token request of each client
 * authentication, HTML escaping, and connect_states on both backends:
 * single use, replay, expiry, unknown and malformed states, the sealed
 * verifier bound to its row. */
#include "unit.h"

#include "../../src/operators/operators.h"
#include "../../src/upstream/connect.h"
#include "../../src/upstream/upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void test_connect_pkce(void)
{
    /* RFC 7636 Appendix B */
    const char *v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    char c[44];
    tk_connect_pkce_challenge(v, strlen(v), c);
    CHECK_EQ_STR(c, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    /* base64url without padding, every remainder (RFC 4648 §10, url alphabet) */
    static const struct {
        const char *in, *out;
    } kv[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < TK_NELEM(kv); i++) {
        char out[16];
        tk_connect_b64url((const unsigned char *)kv[i].in, strlen(kv[i].in), out);
        CHECK_EQ_STR(out, kv[i].out);
    }
}

void test_connect_urls(void)
{
    struct tk_err e;
    static const char *const good[] = {"https://app.example.com/done",
                                       "http://127.0.0.1:8080/x?y=1", "https://[::1]:9/cb",
                                       "https://h"};
    for (size_t i = 0; i < TK_NELEM(good); i++)
        CHECK_OK(tk_connect_return_url_check(good[i], &e), &e);
    static const char *const bad[] = {"",
                                      "/relative",
                                      "javascript:alert(1)",
                                      "data:text/html,x",
                                      "ftp://h/",
                                      "https://",
                                      "https:///path",
                                      "https://:80/",
                                      "https://user:pw@h/",
                                      "https://h/#frag",
                                      "https://h/a b",
                                      "https://h/\r\nSet-Cookie: x=1",
                                      "https://h/\x7f",
                                      "https://h/\xc3\xa9",
                                      "https://h_x/",
                                      "HTTPS://h/"};
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        if (CHECK_EQ_INT(tk_connect_return_url_check(bad[i], &e), TK_EINVAL))
            CHECK_EQ_STR(e.field, "return_url");
    }
    char *longu = malloc(TK_CONNECT_RETURN_URL_MAX + 16);
    memcpy(longu, "https://h/", 10);
    memset(longu + 10, 'a', TK_CONNECT_RETURN_URL_MAX);
    longu[TK_CONNECT_RETURN_URL_MAX + 10] = '\0';
    CHECK_EQ_INT(tk_connect_return_url_check(longu, &e), TK_EINVAL);
    free(longu);

    /* the authorization URL: every value percent-encoded, scopes joined */
    json_t *scopes = json_pack("[s, s]", "crm", "user");
    char *u = tk_connect_authorize_url("https://acme.bitrix24.com/oauth/authorize/", "local.1",
                                       "https://t.example/connect/callback", "st-ate_1", scopes,
                                       ',', NULL);
    CHECK_EQ_STR(u, "https://acme.bitrix24.com/oauth/authorize/?response_type=code&client_id="
                    "local.1&redirect_uri=https%3A%2F%2Ft.example%2Fconnect%2Fcallback&state="
                    "st-ate_1&scope=crm%2Cuser");
    free(u);
    u = tk_connect_authorize_url("https://p.example/auth?tenant=a b", "id&x=1", "r", "s", NULL, ' ',
                                 "CHAL");
    CHECK_EQ_STR(u, "https://p.example/auth?tenant=a b&response_type=code&client_id=id%26x%3D1&"
                    "redirect_uri=r&state=s&code_challenge=CHAL&code_challenge_method=S256");
    free(u);
    json_decref(scopes);

    CHECK(tk_connect_error_code_valid("access_denied"));
    CHECK(!tk_connect_error_code_valid(""));
    CHECK(!tk_connect_error_code_valid(NULL));
    CHECK(!tk_connect_error_code_valid("a\"b"));
    CHECK(!tk_connect_error_code_valid("a\\b"));
    CHECK(!tk_connect_error_code_valid("a\nb"));
    CHECK(!tk_connect_error_code_valid("\xc3\xa9"));

    struct tk_buf b;
    tk_buf_init(&b, 1024);
    tk_connect_html_escape(&b, "<script>alert('x')</script>&\"\n");
    CHECK_EQ_STR(b.data, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot; ");
    tk_buf_free(&b);

    char reason[40];
    tk_connect_refusal_reason(400, "{\"error\":\"invalid_grant\"}", 25, reason);
    CHECK_EQ_STR(reason, "invalid_grant");
    tk_connect_refusal_reason(502, "<html>", 6, reason);
    CHECK_EQ_STR(reason, "http_502");
    tk_connect_refusal_reason(400, "{\"error\":\"bad\\nthing\"}", 22, reason);
    CHECK_EQ_STR(reason, "http_400");
    tk_connect_refusal_reason(401, NULL, 0, reason);
    CHECK_EQ_STR(reason, "http_401");
}

void test_connect_exchange(void)
{
    struct tk_err e;
    struct tk_connect_exchange x;
    struct tk_secret *sec = tk_secret_new("p@ss:w", 6), *ver = tk_secret_new("VERIFIER", 8);
    json_t *eff = json_pack("{s:s, s:s, s:s}", "token_url", "https://p.example/token",
                            "client_auth", "client_secret_basic", "token_method", "POST");
    if (CHECK_OK(tk_connect_exchange_build(eff, "my id", sec, "C/ODE", "https://t/cb", ver, &x, &e),
                 &e)) {
        CHECK_EQ_STR(x.method, "POST");
        CHECK_EQ_STR(x.url, "https://p.example/token");
        CHECK_EQ_STR(x.body, "grant_type=authorization_code&code=C%2FODE&redirect_uri=https%3A%2F"
                             "%2Ft%2Fcb&code_verifier=VERIFIER");
        CHECK_EQ_INT(x.nheaders, 2);
        /* base64("my%20id:p%40ss%3Aw") */
        CHECK_EQ_STR(x.headers[0], "Authorization: Basic bXklMjBpZDpwJTQwc3MlM0F3");
        CHECK_EQ_INT(x.nmask, 3);
        tk_connect_exchange_free(&x);
    }
    json_object_set_new(eff, "client_auth", json_string("client_secret_post"));
    if (CHECK_OK(tk_connect_exchange_build(eff, "id", sec, "c", "r", NULL, &x, &e), &e)) {
        CHECK_EQ_STR(x.body, "grant_type=authorization_code&code=c&redirect_uri=r&client_id=id&"
                             "client_secret=p%40ss%3Aw");
        CHECK_EQ_INT(x.nheaders, 1);
        tk_connect_exchange_free(&x);
    }
    /* a public client: client_id only */
    json_object_set_new(eff, "client_auth", json_string("client_secret_basic"));
    if (CHECK_OK(tk_connect_exchange_build(eff, "id", NULL, "c", "r", ver, &x, &e), &e)) {
        CHECK(strstr(x.body, "&client_id=id") != NULL);
        CHECK(strstr(x.body, "client_secret") == NULL);
        CHECK_EQ_INT(x.nheaders, 1);
        tk_connect_exchange_free(&x);
    }
    /* Bitrix24: a GET with everything in the query */
    json_object_set_new(eff, "client_auth", json_string("query"));
    json_object_set_new(eff, "token_method", json_string("GET"));
    json_object_set_new(eff, "token_url", json_string("https://oauth.bitrix.info/oauth/token/"));
    if (CHECK_OK(tk_connect_exchange_build(eff, "local.1", sec, "c", "r", NULL, &x, &e), &e)) {
        CHECK_EQ_STR(x.method, "GET");
        CHECK(x.body == NULL);
        CHECK_EQ_STR(x.url, "https://oauth.bitrix.info/oauth/token/?grant_type=authorization_code&"
                            "code=c&redirect_uri=r&client_id=local.1&client_secret=p%40ss%3Aw");
        tk_connect_exchange_free(&x);
    }
    json_object_del(eff, "token_url");
    CHECK_EQ_INT(tk_connect_exchange_build(eff, "id", sec, "c", "r", NULL, &x, &e), TK_ECONFLICT);
    json_decref(eff);
    tk_secret_free(sec);
    tk_secret_free(ver);
}

/* Concurrent callbacks with one state: exactly one redeems it. */
struct race {
    struct fx *f;
    struct tk_keyring *k;
    const char *state;
    int64_t now;
    atomic_int won, used;
};

static void *racer(void *arg)
{
    struct race *rc = arg;
    struct tk_err e;
    struct tk_db *db = tk_store_get(rc->f->st, &e);
    if (!db) return NULL;
    struct tk_connect_state st;
    tk_rc r = tk_connect_redeem(db, rc->k, rc->state, strlen(rc->state), rc->now, &st, &e);
    if (r == TK_OK)
        atomic_fetch_add(&rc->won, 1);
    else if (!strcmp(e.code, "state_used"))
        atomic_fetch_add(&rc->used, 1);
    tk_connect_state_clear(&st);
    tk_store_put(db);
    return NULL;
}

void test_connect_store(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_keyring *k = NULL;
    char shares[3][TK_SHARE_MAX], t1[TK_UUID_LEN + 1];
    struct tk_connect_started s1 = {0}, s2 = {0};
    struct tk_connect_state st = {0};
    struct tk_secret *v = NULL;
    struct tk_rows *r = NULL;
    json_t *app = NULL;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_init(k, db, 3, 2, NULL, shares, NULL, &e), &e)) goto out;
    if (!CHECK_OK(tk_tenant_default(db, t1, &e), &e)) goto out;
    app = json_pack("{s:s, s:s, s:[s], s:{s:s, s:b, s:{s:s}}}", "id",
                    "0190b8a0-0000-7000-8000-000000000001", "client_id", "cid", "scopes", "api",
                    "effective", "authorize_url", "https://p.example/auth", "pkce", 1, "scopes",
                    "separator", " ");
    int64_t now = tk_now_ms();
    if (!CHECK_OK(tk_connect_start(db, k, t1, app, "crm", "https://a.example/done",
                                   "https://t.example/connect/callback", now, &s1, &e),
                  &e))
        goto out;
    CHECK(s1.pkce);
    CHECK_EQ_INT(s1.expires_at, now + 600000);
    CHECK_EQ_INT(strlen(s1.state), TK_CONNECT_STATE_LEN);
    CHECK(strstr(s1.authorize_url, "code_challenge_method=S256") != NULL);
    CHECK(strstr(s1.authorize_url, s1.state) != NULL);
    /* the row holds a hash of the state, never the state; the verifier sealed */
    if (CHECK_OK(tk_db_exec(db, "SELECT state_hash, code_verifier FROM connect_states WHERE id = ?",
                            TK_ARGS(TK_TEXT(s1.id)), &r, &e),
                 &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 1)) {
        CHECK_EQ_INT(strlen(tk_rows_text(r, 0, 0)), 64);
        CHECK(strcmp(tk_rows_text(r, 0, 0), s1.state) != 0);
        CHECK(!strncmp(tk_rows_text(r, 0, 1), "ENC:v1:", 7));
    }
    tk_rows_free(r);
    r = NULL;

    /* redeemed once */
    if (CHECK_OK(tk_connect_redeem(db, k, s1.state, strlen(s1.state), now + 1000, &st, &e), &e)) {
        CHECK_EQ_STR(st.id, s1.id);
        CHECK_EQ_STR(st.tenant_id, t1);
        CHECK_EQ_STR(st.label, "crm");
        CHECK_EQ_STR(st.return_url, "https://a.example/done");
        CHECK_EQ_STR(st.redirect_uri, "https://t.example/connect/callback");
        if (CHECK_OK(tk_connect_verifier(db, k, &st, &v, NULL, &e), &e)) {
            char c[44];
            tk_connect_pkce_challenge((const char *)v->p, v->len, c);
            CHECK(strstr(s1.authorize_url, c) != NULL);
            tk_secret_free(v);
            v = NULL;
        }
        /* the sealed verifier is bound to its row */
        snprintf(st.id, sizeof st.id, "%s", "0190b8a0-0000-7000-8000-000000000009");
        CHECK_EQ_INT(tk_connect_verifier(db, k, &st, &v, NULL, &e), TK_EINTERNAL);
        CHECK_EQ_STR(e.code, "decrypt_failed");
    }
    tk_connect_state_clear(&st);
    /* a replay */
    CHECK_EQ_INT(tk_connect_redeem(db, k, s1.state, strlen(s1.state), now + 2000, &st, &e),
                 TK_EINVAL);
    CHECK_EQ_STR(e.code, "state_used");
    CHECK(st.found);
    tk_connect_state_clear(&st);

    /* an app without an authorize URL cannot start */
    {
        json_t *none = json_deep_copy(app);
        json_object_set_new(json_object_get(none, "effective"), "authorize_url", json_null());
        struct tk_connect_started s0 = {0};
        CHECK_EQ_INT(tk_connect_start(db, k, t1, none, "x", NULL, "https://t/cb", now, &s0, &e),
                     TK_ECONFLICT);
        CHECK_EQ_STR(e.code, "no_authorize_url");
        CHECK(s0.authorize_url == NULL);
        json_decref(none);
    }

    /* an expired one, and a start without PKCE or return_url */
    json_object_set_new(json_object_get(app, "effective"), "pkce", json_false());
    if (!CHECK_OK(tk_connect_start(db, k, t1, app, "b", NULL, "https://t/cb", now, &s2, &e), &e))
        goto out;
    CHECK(strstr(s2.authorize_url, "code_challenge") == NULL);
    CHECK_EQ_INT(tk_connect_redeem(db, k, s2.state, strlen(s2.state), now + 600000, &st, &e),
                 TK_EINVAL);
    CHECK_EQ_STR(e.code, "state_expired");
    CHECK(st.found && st.return_url == NULL && st.verifier_sealed == NULL);
    tk_connect_state_clear(&st);
    /* ... still expired a second time (not turned into "used") */
    CHECK_EQ_INT(tk_connect_redeem(db, k, s2.state, strlen(s2.state), now + 700000, &st, &e),
                 TK_EINVAL);
    CHECK_EQ_STR(e.code, "state_expired");
    tk_connect_state_clear(&st);

    /* a race of callbacks for one state: one wins, the others see it used */
    {
        struct tk_connect_started s3 = {0};
        if (CHECK_OK(tk_connect_start(db, k, t1, app, "race", NULL, "https://t/cb", now, &s3, &e),
                     &e)) {
            struct race rc = {.f = f, .k = k, .state = s3.state, .now = now + 1};
            pthread_t th[6];
            for (int i = 0; i < 6; i++)
                pthread_create(&th[i], NULL, racer, &rc);
            for (int i = 0; i < 6; i++)
                pthread_join(th[i], NULL);
            CHECK_EQ_INT(atomic_load(&rc.won), 1);
            CHECK_EQ_INT(atomic_load(&rc.used), 5);
        }
        tk_connect_started_clear(&s3);
    }

    /* unknown and malformed */
    CHECK_EQ_INT(
        tk_connect_redeem(db, k, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 43, now, &st, &e),
        TK_ENOTFOUND);
    CHECK_EQ_STR(e.code, "state_unknown");
    CHECK(!st.found);
    static const char *const malformed[] = {"", "a b", "a%2Fb", "x'--", "\xc3\xa9"};
    for (size_t i = 0; i < TK_NELEM(malformed); i++) {
        CHECK_EQ_INT(tk_connect_redeem(db, k, malformed[i], strlen(malformed[i]), now, &st, &e),
                     TK_EINVAL);
        CHECK_EQ_STR(e.code, "state_malformed");
    }
    char longs[TK_CONNECT_STATE_MAX + 2];
    memset(longs, 'a', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    CHECK_EQ_INT(tk_connect_redeem(db, k, longs, strlen(longs), now, &st, &e), TK_EINVAL);
    /* a state with a NUL inside is not the state before it */
    CHECK_EQ_INT(tk_connect_redeem(db, k, s1.state, strlen(s1.state) + 1, now, &st, &e), TK_EINVAL);

    /* housekeeping removes rows a day past their expiry */
    int64_t gone = 0;
    if (CHECK_OK(tk_connect_prune(db, now + 600000 + 86400000 + 1, &gone, &e), &e))
        CHECK_EQ_INT(gone, 3);
    /* a sealed keyring answers sealed */
    tk_keyring_seal(k);
    CHECK_EQ_INT(tk_connect_redeem(db, k, s1.state, strlen(s1.state), now, &st, &e), TK_EUNAVAIL);
out:
    tk_connect_started_clear(&s1);
    tk_connect_started_clear(&s2);
    tk_connect_state_clear(&st);
    json_decref(app);
    tk_keyring_free(k);
    tk_store_put(db);
}
