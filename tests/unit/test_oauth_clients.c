/* test_oauth_clients.c: src/oauth/oclients.h -- scope names (RFC 6749
 * scope-token), redirect URIs (absolute, no fragment, no user info, https;
 * http and private-use schemes only for native apps; hostile bytes and
 * bounds), the whole-spec check of a client (defaults and every
 * inconsistent combination naming its field), and on both backends: the
 * catalogue, a client's secret stored as a keyed hash and authenticated
 * by it (unknown, client_disabled), rotation, the registration token,
 * tk_oauth_client_find, a scope in use refusing deletion. */
#include "unit.h"

#include "../../src/oauth/oclients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void test_oauth_scope_names(void)
{
    static const char *const good[] = {"read", "mcp:tools", "a",
                                       "!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}~"};
    for (size_t i = 0; i < TK_NELEM(good); i++)
        if (!tk_oauth_scope_name_valid(good[i], strlen(good[i]))) FAILF("'%s' refused", good[i]);
    static const char *const bad[] = {"",         "a b",   "a\"b", "a\\b",
                                      "\xc3\xa9", "tab\t", "nl\n", "\x7f"};
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (tk_oauth_scope_name_valid(bad[i], strlen(bad[i]))) FAILF("'%s' accepted", bad[i]);
    char big[TK_OAUTH_SCOPE_MAX + 2];
    memset(big, 'x', sizeof big);
    CHECK(tk_oauth_scope_name_valid(big, TK_OAUTH_SCOPE_MAX));
    CHECK(!tk_oauth_scope_name_valid(big, TK_OAUTH_SCOPE_MAX + 1));
    CHECK(!tk_oauth_scope_name_valid("a\0b", 3)); /* NUL inside */
    CHECK(!tk_oauth_scope_name_valid(NULL, 0));
}

void test_oauth_redirect_uris(void)
{
    static const struct {
        const char *uri;
        bool web, native; /* accepted for a web app, for a native app */
    } cases[] = {
        {"https://app.example.com/cb", true, true},
        {"https://app.example.com:8443/cb?x=1", true, true},
        {"https://app.example.com", true, true},
        {"HTTPS://APP.example.com/cb", true, true},
        {"https://[2001:db8::1]/cb", true, true},
        {"http://127.0.0.1/cb", false, true},
        {"http://127.0.0.1:51234/cb", false, true},
        {"http://[::1]:8080/cb", false, true},
        {"http://localhost/cb", false, true},
        {"http://LOCALHOST:3000/cb", false, true},
        {"com.example.app:/oauth2redirect", false, true},
        {"http://evil.example/cb", false, false},
        {"http://127.0.0.2/cb", false, false},
        {"http://localhost.evil.example/cb", false, false},
        {"http://127.0.0.1.nip.io/cb", false, false},
        {"https://app.example.com/cb#frag", false, false},
        {"https://app.example.com/cb#", false, false},
        {"/cb", false, false},
        {"app.example.com/cb", false, false},
        {"https:/app.example.com/cb", false, false},
        {"https:///cb", false, false},
        {"https://user@app.example.com/cb", false, false},
        {"https://user:pw@app.example.com/cb", false, false},
        {"https://app.example.com:0/cb", false, false},
        {"https://app.example.com:65536/cb", false, false},
        {"https://app.example.com:80a/cb", false, false},
        {"https://app.example.com:/cb", false, false},
        {"https://app.example.com/c b", false, false},
        {"https://app.example.com/\xc3\xa9", false, false},
        {"https://app.example.com/\r\nX: y", false, false},
        {"https://app_example.com/cb", false, false},
        {"https://[::1/cb", false, false},
        {"javascript:alert(1)", false, false},
        {"data:text/html,x", false, false},
        {"file:///etc/passwd", false, false},
        {"myapp:/cb", false, false},
        {":/cb", false, false},
        {"1https://x/cb", false, false},
        {"", false, false},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        for (int native = 0; native < 2; native++) {
            struct tk_err e;
            tk_err_clear(&e);
            bool want = native ? cases[i].native : cases[i].web;
            tk_rc rc = tk_oauth_redirect_uri_check(cases[i].uri, strlen(cases[i].uri), native, &e);
            if ((rc == TK_OK) != want)
                FAILF("'%s' (%s): rc %d, want %s (%s)", cases[i].uri, native ? "native" : "web",
                      (int)rc, want ? "ok" : "refused", e.msg);
            if (rc != TK_OK) {
                CHECK_EQ_STR(e.field, "redirect_uris");
                CHECK(e.msg[0] != '\0');
            }
        }
    }
    /* the bound, and a NUL inside */
    size_t n = TK_OAUTH_URI_MAX + 1;
    char *big = malloc(n + 1);
    memcpy(big, "https://a.example/", 18);
    memset(big + 18, 'x', n - 18);
    big[n] = '\0';
    struct tk_err e;
    CHECK(tk_oauth_redirect_uri_check(big, n, false, &e) == TK_EINVAL);
    CHECK(tk_oauth_redirect_uri_check(big, n - 1, false, &e) == TK_OK);
    free(big);
    CHECK(tk_oauth_redirect_uri_check("https://a.example/\0x", 20, false, &e) == TK_EINVAL);
    CHECK(tk_oauth_redirect_uri_native("http://127.0.0.1:4000/cb"));
    CHECK(tk_oauth_redirect_uri_native("com.example.app:/cb"));
    CHECK(!tk_oauth_redirect_uri_native("https://a.example/cb"));
    CHECK(!tk_oauth_redirect_uri_native("http://evil.example/cb"));
}

/* Normalize a spec given as JSON text: "" when accepted, else the field. */
static const char *normalize(const char *text, json_t **out)
{
    static char field[64];
    json_error_t je;
    json_t *spec = json_loads(text, JSON_ALLOW_NUL, &je);
    if (!spec) {
        FAILF("bad test JSON %s", text);
        return "?";
    }
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_oauth_client_normalize(spec, &e);
    snprintf(field, sizeof field, "%s", rc == TK_OK ? "" : e.field);
    if (rc != TK_OK && (!e.msg[0] || rc != TK_EINVAL))
        FAILF("%s: rc %d without a sentence", text, (int)rc);
    if (out)
        *out = spec;
    else
        json_decref(spec);
    return field;
}

void test_oauth_client_spec(void)
{
    json_t *s = NULL;
    CHECK_EQ_STR(normalize("{\"name\":\"a\",\"redirect_uris\":[\"https://a.example/cb\"]}", &s),
                 "");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "client_type")), "confidential");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "token_endpoint_auth_method")),
                 "client_secret_basic");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "application_type")), "web");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "status")), "active");
    CHECK(json_is_true(json_object_get(s, "rotate_refresh")));
    CHECK_EQ_INT(json_array_size(json_object_get(s, "grant_types")), 2);
    json_decref(s);
    CHECK_EQ_STR(normalize("{\"name\":\"a\",\"token_endpoint_auth_method\":\"none\","
                           "\"redirect_uris\":[\"https://a.example/cb\"]}",
                           &s),
                 "");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "client_type")), "public");
    json_decref(s);
    CHECK_EQ_STR(normalize("{\"name\":\"cc\",\"grant_types\":[\"client_credentials\"]}", NULL), "");

    static const struct {
        const char *json, *field;
    } bad[] = {
        {"{}", "name"},
        {"{\"name\":\"\"}", "name"},
        {"{\"name\":\"a\\u0000b\"}", "name"},
        {"{\"name\":\"a\",\"client_type\":\"public\",\"token_endpoint_auth_method\":"
         "\"client_secret_post\",\"redirect_uris\":[\"https://a/cb\"]}",
         "token_endpoint_auth_method"},
        {"{\"name\":\"a\",\"client_type\":\"confidential\",\"token_endpoint_auth_method\":"
         "\"none\",\"redirect_uris\":[\"https://a/cb\"]}",
         "token_endpoint_auth_method"},
        {"{\"name\":\"a\",\"token_endpoint_auth_method\":\"private_key_jwt\"}",
         "token_endpoint_auth_method"},
        {"{\"name\":\"a\",\"client_type\":\"public\",\"grant_types\":[\"client_credentials\"]}",
         "grant_types"},
        {"{\"name\":\"a\",\"client_type\":\"public\",\"rotate_refresh\":false,"
         "\"redirect_uris\":[\"https://a/cb\"]}",
         "rotate_refresh"},
        {"{\"name\":\"a\",\"grant_types\":[\"implicit\"]}", "grant_types"},
        {"{\"name\":\"a\",\"grant_types\":[1]}", "grant_types"},
        {"{\"name\":\"a\",\"grant_types\":{}}", "grant_types"},
        {"{\"name\":\"a\",\"grant_types\":[\"client_credentials\",\"client_credentials\"]}",
         "grant_types"},
        {"{\"name\":\"a\"}", "redirect_uris"}, /* authorization_code without a redirect URI */
        {"{\"name\":\"a\",\"redirect_uris\":[\"https://a/cb\",\"https://a/cb\"]}", "redirect_uris"},
        {"{\"name\":\"a\",\"redirect_uris\":[\"http://127.0.0.1/cb\"]}", "redirect_uris"},
        {"{\"name\":\"a\",\"grant_types\":[\"client_credentials\"],\"scopes\":[\"a b\"]}",
         "scopes"},
        {"{\"name\":\"a\",\"grant_types\":[\"client_credentials\"],\"scopes\":[\"x\"],"
         "\"default_scopes\":[\"y\"]}",
         "default_scopes"},
        {"{\"name\":\"a\",\"grant_types\":[\"client_credentials\"],\"status\":\"gone\"}", "status"},
        {"{\"name\":\"a\",\"grant_types\":[\"client_credentials\"],\"application_type\":7}",
         "application_type"},
        {"{\"name\":\"a\",\"grant_types\":[\"client_credentials\"],\"rotate_refresh\":1}",
         "rotate_refresh"},
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        const char *f = normalize(bad[i].json, NULL);
        if (strcmp(f, bad[i].field) != 0)
            FAILF("%s: field '%s', want '%s'", bad[i].json, f, bad[i].field);
    }
    /* limits: 21 redirect URIs, 101 scopes */
    json_t *spec = json_pack("{s:s, s:[s]}", "name", "a", "grant_types", "client_credentials");
    json_t *sc = json_array();
    for (int i = 0; i <= TK_OAUTH_CLIENT_SCOPES_MAX; i++) {
        char n[16];
        snprintf(n, sizeof n, "s%d", i);
        json_array_append_new(sc, json_string(n));
    }
    json_object_set_new(spec, "scopes", sc);
    struct tk_err e;
    CHECK(tk_oauth_client_normalize(spec, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.field, "scopes");
    json_decref(spec);
    spec = json_pack("{s:s}", "name", "a");
    json_t *ru = json_array();
    for (int i = 0; i <= TK_OAUTH_REDIRECTS_MAX; i++) {
        char u[64];
        snprintf(u, sizeof u, "https://a.example/%d", i);
        json_array_append_new(ru, json_string(u));
    }
    json_object_set_new(spec, "redirect_uris", ru);
    CHECK(tk_oauth_client_normalize(spec, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.field, "redirect_uris");
    json_decref(spec);
}

/* ---- both backends ---- */

static bool open_keyring(const char *dir, struct tk_db *db, struct tk_keyring **k)
{
    struct tk_err e;
    char shares[1][TK_SHARE_MAX];
    *k = NULL;
    if (!CHECK_OK(tk_keyring_new(dir, k, &e), &e)) return false;
    bool ok = CHECK_OK(tk_keyring_init(*k, db, 1, 1, NULL, shares, NULL, &e), &e);
    tk_wipe(shares, sizeof shares);
    return ok && CHECK(!tk_keyring_sealed(*k));
}

/* The reason of authenticating secret ("" = valid). */
static const char *lookup(struct tk_db *db, struct tk_keyring *k, const char *secret,
                          struct tk_principal *p)
{
    static char code[40];
    char hash[TK_HASH_HEX];
    struct tk_err e;
    tk_err_clear(&e);
    int64_t exp, epoch;
    if (!CHECK_OK(tk_keyring_hash(k, secret, strlen(secret), hash, NULL, &e), &e)) return "hash";
    tk_rc rc = tk_oauth_client_lookup_hash(db, hash, p, &exp, &epoch, &e);
    if (rc == TK_OK) return "";
    snprintf(code, sizeof code, "%s", e.code);
    return code;
}

void test_oauth_clients_store(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_keyring *k = NULL;
    struct tk_err e;
    char tenant[TK_UUID_LEN + 1], id[TK_UUID_LEN + 1], secret[TK_ISSUED_MAX], reg[TK_ISSUED_MAX];
    json_t *o = NULL, *spec = NULL;
    struct tk_principal p;
    int64_t seq = 0;
    if (!open_keyring(f->dir, db, &k)) goto out;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;

    /* the catalogue */
    if (!CHECK_OK(tk_oauth_scope_create(db, tenant, "read", "may read", &o, &e), &e)) goto out;
    char scope_id[TK_UUID_LEN + 1];
    snprintf(scope_id, sizeof scope_id, "%s", json_string_value(json_object_get(o, "id")));
    json_decref(o);
    o = NULL;
    CHECK(tk_oauth_scope_create(db, tenant, "read", "", &o, &e) == TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "scope_exists");
    CHECK(tk_oauth_scope_create(db, tenant, "bad name", "", &o, &e) == TK_EINVAL);
    CHECK(tk_oauth_scope_create(db, tenant, "ok", "ctl\x01", &o, &e) == TK_EINVAL);

    /* a client with an unknown scope is refused; with a known one made */
    spec = json_pack("{s:s, s:[s], s:[s, s]}", "name", "Acme", "redirect_uris",
                     "https://a.example/cb", "scopes", "read", "write");
    CHECK(tk_oauth_client_create(db, k, tenant, spec, "operator", secret, NULL, id, &o, &e) ==
          TK_EINVAL);
    CHECK_EQ_STR(e.field, "scopes");
    CHECK(strstr(e.msg, "'write'") != NULL);
    json_decref(spec);
    spec = json_pack("{s:s, s:[s], s:[s]}", "name", "Acme", "redirect_uris", "https://a.example/cb",
                     "scopes", "read");
    if (!CHECK_OK(tk_db_begin(db, &e), &e)) goto out;
    if (!CHECK_OK(tk_oauth_client_create(db, k, tenant, spec, "dynamic", secret, reg, id, &o, &e),
                  &e)) {
        tk_db_rollback(db);
        goto out;
    }
    if (!CHECK_OK(tk_db_commit(db, &e), &e)) goto out;
    json_decref(o);
    o = NULL;
    CHECK(strncmp(secret, "tks_", 4) == 0);
    CHECK(strncmp(reg, "tkg_", 4) == 0);

    /* the secret authenticates; the store holds neither secret */
    CHECK_EQ_STR(lookup(db, k, secret, &p), "");
    CHECK_EQ_INT(p.kind, TK_PRINCIPAL_OAUTH_CLIENT);
    CHECK_EQ_STR(p.id, id);
    CHECK_EQ_STR(p.client_id, id);
    CHECK_EQ_STR(p.tenant_id, tenant);
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT * FROM oauth_clients", NULL, 0, &r, &e), &e))
        for (int i = 0; i < tk_rows_count(r); i++)
            for (int c = 0; c < tk_rows_columns(r); c++) {
                const char *v = tk_rows_text(r, i, c);
                if (v && (strstr(v, secret + 8) || strstr(v, reg + 8)))
                    FAILF("column %d holds a secret", c);
            }
    tk_rows_free(r);
    char never[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_OAUTH_SECRET, never);
    CHECK_EQ_STR(lookup(db, k, never, &p), "unknown");
    /* the registration token finds its own client only */
    char hash[TK_HASH_HEX], t2[TK_UUID_LEN + 1], i2[TK_UUID_LEN + 1];
    if (CHECK_OK(tk_keyring_hash(k, reg, strlen(reg), hash, NULL, &e), &e)) {
        CHECK_OK(tk_oauth_client_by_registration(db, id, hash, t2, i2, &e), &e);
        CHECK_EQ_STR(i2, id);
        CHECK(tk_oauth_client_by_registration(db, "0190a000-0000-7000-8000-000000000099", hash, t2,
                                              i2, &e) == TK_ENOTFOUND);
    }
    /* find by client_id */
    struct tk_oauth_client c;
    if (CHECK_OK(tk_oauth_client_find(db, id, &c, &e), &e)) {
        CHECK(c.confidential);
        CHECK_EQ_STR(c.auth_method, "client_secret_basic");
        CHECK_EQ_STR(c.origin, "dynamic");
        CHECK_EQ_STR(c.tenant_id, tenant);
        CHECK_EQ_INT(json_array_size(c.scopes), 1);
        tk_oauth_client_clear(&c);
    }
    CHECK(tk_oauth_client_find(db, "nope", &c, &e) == TK_ENOTFOUND);
    tk_oauth_client_clear(&c);

    /* the scope in use cannot go */
    CHECK(tk_oauth_scope_delete(db, tenant, scope_id, &e) == TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "scope_in_use");
    CHECK(strstr(e.msg, id) != NULL);

    /* disabled: client_disabled, and the epoch moved */
    json_decref(spec);
    spec = NULL;
    if (!CHECK_OK(tk_oauth_client_spec(db, tenant, id, &spec, &e), &e)) goto out;
    json_object_set_new(spec, "status", json_string("disabled"));
    char s2[TK_ISSUED_MAX];
    if (!CHECK_OK(tk_db_begin(db, &e), &e)) goto out;
    if (CHECK_OK(tk_oauth_client_update(db, k, tenant, id, spec, s2, &seq, &o, &e), &e))
        CHECK_OK(tk_db_commit(db, &e), &e);
    else
        tk_db_rollback(db);
    json_decref(o);
    o = NULL;
    CHECK(seq > 0);
    CHECK_EQ_STR(s2, "");
    CHECK_EQ_STR(lookup(db, k, secret, &p), "client_disabled");

    /* rotate: the old secret is unknown, the new one (disabled) found */
    if (!CHECK_OK(tk_db_begin(db, &e), &e)) goto out;
    if (CHECK_OK(tk_oauth_client_rotate_secret(db, k, tenant, id, s2, &seq, &o, &e), &e))
        CHECK_OK(tk_db_commit(db, &e), &e);
    else
        tk_db_rollback(db);
    json_decref(o);
    o = NULL;
    CHECK_EQ_STR(lookup(db, k, secret, &p), "unknown");
    CHECK_EQ_STR(lookup(db, k, s2, &p), "client_disabled");
    tk_wipe(s2, sizeof s2);

    /* another tenant sees nothing */
    CHECK(tk_oauth_client_get(db, "0190a000-0000-7000-8000-000000000001", id, &o, &e) ==
          TK_ENOTFOUND);

    /* delete; then the scope can go */
    if (!CHECK_OK(tk_db_begin(db, &e), &e)) goto out;
    if (CHECK_OK(tk_oauth_client_delete(db, tenant, id, &seq, &e), &e))
        CHECK_OK(tk_db_commit(db, &e), &e);
    else
        tk_db_rollback(db);
    CHECK(tk_oauth_client_get(db, tenant, id, &o, &e) == TK_ENOTFOUND);
    CHECK_OK(tk_oauth_scope_delete(db, tenant, scope_id, &e), &e);
out:
    json_decref(spec);
    tk_wipe(secret, sizeof secret);
    tk_wipe(reg, sizeof reg);
    tk_keyring_free(k);
    tk_store_put(db);
}

void test_oauth_basic_parse(void)
{
    char id[TK_OAUTH_CLIENT_ID_MAX], secret[TK_ISSUED_MAX * 2];
    /* "my+client%3A1:s%25+cret" -> id "my client:1", secret "s% cret" */
    CHECK(tk_oauth_basic_parse("bXkrY2xpZW50JTNBMTpzJTI1K2NyZXQ=", id, sizeof id, secret,
                               sizeof secret));
    CHECK_EQ_STR(id, "my client:1");
    CHECK_EQ_STR(secret, "s% cret");
    /* without padding, with leading spaces */
    CHECK(tk_oauth_basic_parse("  YTpi", id, sizeof id, secret, sizeof secret));
    CHECK_EQ_STR(id, "a");
    CHECK_EQ_STR(secret, "b");
    /* an empty secret is a parse (the secret check refuses it later) */
    CHECK(tk_oauth_basic_parse("YTo=", id, sizeof id, secret, sizeof secret));
    CHECK_EQ_STR(secret, "");
    static const char *const bad[] = {
        "",         /* nothing */
        "!!!!",     /* not base64 */
        "YWJj",     /* "abc": no colon */
        "OmI=",     /* ":b": empty id */
        "YSUwMDpi", /* "a%00:b" */
        "YSV6ejpi", /* "a%zz:b" */
        "YSU6Yg==", /* "a%:b": a cut escape */
        "YQA6Yg==", /* "a\0:b": a raw NUL */
        "Y",        /* one char: not base64 */
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (tk_oauth_basic_parse(bad[i], id, sizeof id, secret, sizeof secret))
            FAILF("'%s' parsed", bad[i]);
    /* too long: more than the buffer holds */
    size_t n = 4000;
    char *big = malloc(n + 1);
    memset(big, 'Q', n);
    big[n] = '\0';
    CHECK(!tk_oauth_basic_parse(big, id, sizeof id, secret, sizeof secret));
    free(big);
}
