/* test_catalog.c: the provider catalogue (src/upstream/catalog.c): the
 * built-in entries, URL and hostname checks, hostile catalogue files (each
 * refused naming the file and the member), providers_dir overrides, and the
 * effective entry of an app. */
#include "unit.h"

#include "../../src/operators/operators.h"
#include "../../src/upstream/catalog_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void test_catalog_builtin(void)
{
    struct tk_catalog *c = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_catalog_load(NULL, &c, &e), &e)) return;
    static const char *const names[] = {"bitrix24",   "ebay",   "ebay-sandbox", "generic-oauth2",
                                        "github",     "google", "hubspot",      "microsoft",
                                        "salesforce", "slack"};
    CHECK_EQ_INT(tk_catalog_count(c), TK_NELEM(names));
    for (size_t i = 0; i < TK_NELEM(names); i++) {
        const struct tk_provider *p = tk_catalog_at(c, i);
        if (!CHECK(p)) break;
        CHECK_EQ_STR(p->name, names[i]); /* name order */
        CHECK(!p->from_dir);
        json_t *j = tk_provider_json(p);
        CHECK(j != NULL);
        json_decref(j);
    }
    const struct tk_provider *b = tk_catalog_find(c, "bitrix24");
    if (CHECK(b)) {
        CHECK(b->token_get);
        CHECK_EQ_INT(b->client_auth, TK_CLIENT_AUTH_QUERY);
        CHECK(b->rotates_refresh_tokens);
        CHECK_EQ_INT(b->expired_status, 401);
        CHECK_EQ_STR(b->expired_body, "expired_token");
        CHECK_EQ_INT(b->nparams, 1);
        CHECK_EQ_STR(b->params[0].name, "domain");
        CHECK_EQ_INT(b->params[0].type, TK_PARAM_HOSTNAME);
        CHECK(strstr(b->authorize_url, "{domain}") != NULL);
    }
    const struct tk_provider *eb = tk_catalog_find(c, "ebay");
    if (CHECK(eb)) {
        CHECK_EQ_INT(eb->client_auth, TK_CLIENT_AUTH_BASIC);
        CHECK(eb->scopes_on_refresh);
        CHECK_EQ_INT(eb->refresh_token_lifetime, 47304000); /* 18 months of 365/12 days */
        CHECK(!eb->rotates_refresh_tokens);
    }
    const struct tk_provider *g = tk_catalog_find(c, "generic-oauth2");
    if (CHECK(g)) CHECK(!g->token_url[0] && !g->authorize_url[0]);
    CHECK(tk_catalog_find(c, "nope") == NULL);
    CHECK(tk_catalog_find(c, NULL) == NULL);
    tk_catalog_free(c);
    tk_catalog_free(NULL);
}

void test_catalog_urls(void)
{
    static const char *const good[] = {
        "https://example.com/token",   "https://example.com", "https://a.b.example.com:8443/x?y=1",
        "http://127.0.0.1:9999/token", "http://127.5.6.7/t",  "http://localhost:1/t",
        "http://LOCALHOST/t",          "http://[::1]:8080/t", "https://[2001:db8::1]/t",
        "https://10.0.0.1/t",
    };
    static const char *const bad[] = {
        "",
        "ftp://example.com/",
        "//example.com/",
        "example.com/token",
        "https://",
        "https:///path",
        "http://example.com/token", /* plain http off loopback */
        "http://128.0.0.1/t",
        "http://127.0.0.1.evil.com/t", /* a DNS name, not loopback */
        "http://localhost.evil.com/t",
        "http://[::2]/t",
        "https://user:pw@example.com/t", /* user info */
        "https://example.com@evil.com/t",
        "https://example.com/t#frag",
        "https://exa mple.com/t",
        "https://example.com/t\n",
        "https://example.com/\x7f",
        "https://ex\xc3\xa9mple.com/t",
        "https://example.com:0/t",
        "https://example.com:65536/t",
        "https://example.com:/t",
        "https://example.com:12a/t",
        "https://[::1/t",
        "https://[::1]x/t",
        "https://[zz]/t",
        "https://-bad.example.com/t",
        "https://bad-.example.com/t",
        "https://a..b/t",
        "https://01.2.3.4/t",      /* 1.2.3.4 to inet_aton and libcurl (octal) */
        "https://0177.0.0.1/t",    /* 127.0.0.1 */
        "https://2130706433/t",    /* 127.0.0.1 */
        "https://0x7f000001/t",    /* 127.0.0.1 */
        "https://0X7F.1/t",        /* 127.0.0.1 */
        "https://127.1/t",         /* 127.0.0.1 */
        "https://a.b.0x/t",        /* ends in a number (WHATWG URL) */
        "https://example.123/t",
        "HTTPS://example.com/t",
    };
    struct tk_err e;
    for (size_t i = 0; i < TK_NELEM(good); i++)
        if (tk_upstream_url_check("token_url", good[i], &e) != TK_OK)
            FAILF("refused %s: %s", good[i], e.msg);
    for (size_t i = 0; i < TK_NELEM(bad); i++) {
        tk_err_clear(&e);
        tk_rc rc = tk_upstream_url_check("token_url", bad[i], &e);
        if (rc != TK_EINVAL) {
            FAILF("accepted %s", bad[i]);
            continue;
        }
        CHECK_EQ_STR(e.field, "token_url");
        CHECK(strstr(e.msg, "token_url") != NULL);
    }
    char longurl[TK_URL_MAX + 20];
    memset(longurl, 'a', sizeof longurl - 1);
    longurl[sizeof longurl - 1] = '\0';
    memcpy(longurl, "https://x.com/", 14);
    CHECK_EQ_INT(tk_upstream_url_check("u", longurl, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_upstream_url_check("u", NULL, &e), TK_EINVAL);

    CHECK(tk_hostname_valid("acme.bitrix24.com", 17));
    CHECK(tk_hostname_valid("a", 1));
    CHECK(tk_hostname_valid("1.2.3.example", 13));
    CHECK(tk_hostname_valid("0xdeadbeefz", 11)); /* not hex all through: a name */
    CHECK(tk_hostname_valid("x0x1", 4));
    CHECK(!tk_hostname_valid("127.0.0.1", 9));   /* a bitrix24 domain is a name */
    CHECK(!tk_hostname_valid("2130706433", 10));
    CHECK(!tk_hostname_valid("0x7f000001", 10));
    CHECK(!tk_hostname_valid("acme.0x", 7));
    CHECK(!tk_hostname_valid("", 0));
    CHECK(!tk_hostname_valid("a.", 2));
    CHECK(!tk_hostname_valid(".a", 2));
    CHECK(!tk_hostname_valid("a b", 3));
    CHECK(!tk_hostname_valid("a/b", 3));
    CHECK(!tk_hostname_valid("a:80", 4));
    CHECK(!tk_hostname_valid("a@b", 3));
    CHECK(!tk_hostname_valid("a\0b", 3));
    char label[80];
    memset(label, 'a', 64);
    label[64] = '\0';
    CHECK(!tk_hostname_valid(label, 64));
    CHECK(tk_hostname_valid(label, 63) == false); /* strlen differs from len */
    label[63] = '\0';
    CHECK(tk_hostname_valid(label, 63));
}

/* A valid file, with REPLACE swapped in for one member. */
static const char base_file[] =
    "{\"name\": \"acme\", \"display_name\": \"Acme\", "
    "\"authorize_url\": \"https://{domain}/auth\", \"token_url\": \"https://api.acme.test/token\", "
    "\"client_auth\": \"client_secret_post\", \"rotates_refresh_tokens\": true, "
    "\"default_lifetime\": 3600, "
    "\"params\": {\"domain\": {\"type\": \"hostname\", \"description\": \"the portal\"}}";

struct hostile {
    const char *extra; /* appended members (after a comma), or a whole text starting with '!' */
    const char *field; /* the member the error must name */
};

void test_catalog_hostile(void)
{
    struct tk_provider p;
    struct tk_err e;
    char text[TK_PROVIDER_FILE_MAX * 2];
    /* the base file is fine */
    snprintf(text, sizeof text, "%s}", base_file);
    if (!CHECK_OK(tk_provider_parse("dir/acme.json", text, strlen(text), &p, &e), &e)) return;
    CHECK_EQ_STR(p.name, "acme");
    CHECK_EQ_INT(p.scope_separator, ' ');
    CHECK_EQ_INT(p.expired_status, 401);

    static const struct hostile cases[] = {
        {"!not json", "(file)"},
        {"![1, 2]", "(file)"},
        {"!\"acme\"", "(file)"},
        {"!", "(file)"},
        {"!{\"name\": \"acme\", \"name\": \"acme\"}", "(file)"},
        {"\"extra\": 1", "extra"},
        {"\"\": 1", "\"\""},
        {"\"a\\u0001b\": 1", "a?b"},
        {"\"sandbox\": {\"authorize_url\": \"https://a.test/\", \"token_url\": "
         "\"https://a.test/\", \"x\": 1}",
         "sandbox.x"},
        {"\"sandbox\": 3", "sandbox"},
        {"\"sandbox\": {\"authorize_url\": \"https://a.test/\"}", "sandbox.token_url"},
        {"\"sandbox\": {\"authorize_url\": \"http://a.test/\", \"token_url\": \"https://a.test/\"}",
         "sandbox.authorize_url"},
        {"\"token_method\": \"PUT\"", "token_method"},
        {"\"token_method\": 1", "token_method"},
        {"\"refresh_token_lifetime\": 1", "refresh_token_lifetime"},
        {"\"refresh_token_lifetime\": \"1 year\"", "refresh_token_lifetime"},
        {"\"refresh_token_lifetime\": 1e3", "refresh_token_lifetime"},
        {"\"scopes\": {\"separator\": \";\"}", "scopes.separator"},
        {"\"scopes\": {\"separator\": \"  \"}", "scopes.separator"},
        {"\"scopes\": {\"sent_on_refresh\": \"yes\"}", "scopes.sent_on_refresh"},
        {"\"scopes\": {\"other\": 1}", "scopes.other"},
        {"\"scopes\": []", "scopes"},
        {"\"pkce\": \"S256\"", "pkce"},
        {"\"expired_token\": {\"status\": 100}", "expired_token.status"},
        {"\"expired_token\": {\"status\": 401, \"body_contains\": \"\"}",
         "expired_token.body_contains"},
        {"\"expired_token\": {\"status\": 401, \"body_contains\": \"a\\u0007b\"}",
         "expired_token.body_contains"},
        {"\"expired_token\": {\"body_contains\": \"x\"}", "expired_token.status"},
        {"\"expired_token\": {\"status\": 401, \"regex\": \".*\"}", "expired_token.regex"},
        {"\"documentation_url\": \"javascript:alert(1)\"", "documentation_url"},
        {"\"\\u0000\": 1", "\\u0000"}, /* jansson refuses NUL in keys: a parse error */
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        const char *x = cases[i].extra;
        if (x[0] == '!')
            snprintf(text, sizeof text, "%s", x + 1);
        else
            snprintf(text, sizeof text, "%s, %s}", base_file, x);
        tk_err_clear(&e);
        tk_rc rc = tk_provider_parse("dir/acme.json", text, strlen(text), &p, &e);
        if (rc != TK_EINVAL) {
            FAILF("case %zu accepted: %s", i, text);
            continue;
        }
        CHECK_EQ_STR(e.code, "invalid_provider");
        if (!strcmp(cases[i].field, "\\u0000")) continue; /* named (file) */
        if (strcmp(e.field, cases[i].field))
            FAILF("case %zu: field %s, wanted %s (%s)", i, e.field, cases[i].field, e.msg);
        if (!strstr(e.msg, "dir/acme.json")) FAILF("case %zu: no file in: %s", i, e.msg);
        CHECK(p.name[0] == '\0'); /* nothing half-filled */
    }

    /* members of the base file replaced: build whole texts */
    static const struct {
        const char *text, *field;
    } whole[] = {
        {"{}", "name"},
        {"{\"name\": \"other\", \"display_name\": \"x\"}", "name"}, /* not the file's name */
        {"{\"name\": \"Acme\"}", "name"},
        {"{\"name\": 5}", "name"},
        {"{\"name\": \"acme\"}", "display_name"},
        {"{\"name\": \"acme\", \"display_name\": \"A\\u202eB\"}", "display_name"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null}", "token_url"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": \"https://{tenant}/a\", "
         "\"token_url\": null}",
         "authorize_url"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": \"https://a.test/{x\", "
         "\"token_url\": null}",
         "authorize_url"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": \"https://a.test/x}\", "
         "\"token_url\": null}",
         "authorize_url"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": \"https://a.test/\", "
         "\"token_url\": null}",
         "token_url"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"http://evil.test/t\"}",
         "token_url"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\"}",
         "client_auth"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\", \"client_auth\": \"private_key_jwt\"}",
         "client_auth"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\", \"client_auth\": \"query\"}",
         "rotates_refresh_tokens"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\", \"client_auth\": \"query\", \"rotates_refresh_tokens\": 1}",
         "rotates_refresh_tokens"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\", \"client_auth\": \"query\", \"rotates_refresh_tokens\": true}",
         "default_lifetime"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\", \"client_auth\": \"query\", \"rotates_refresh_tokens\": true, "
         "\"default_lifetime\": 59}",
         "default_lifetime"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"authorize_url\": null, \"token_url\": "
         "\"https://t.test/\", \"client_auth\": \"query\", \"rotates_refresh_tokens\": true, "
         "\"default_lifetime\": 99999999999999999999}",
         "(file)"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": {\"a\": {\"type\": \"int\", "
         "\"description\": \"d\"}}}",
         "params.a.type"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": {\"a\": {\"type\": "
         "\"hostname\"}}}",
         "params.a.description"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": {\"a\": {\"type\": "
         "\"hostname\", \"description\": \"d\", \"default\": \"x\"}}}",
         "params.a.default"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": {\"A B\": {}}}",
         "params.(name)"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": {\"a\": \"hostname\"}}",
         "params.a"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": []}", "params"},
        {"{\"name\": \"acme\", \"display_name\": \"A\", \"params\": {\"a\": {}, \"b\": {}, \"c\": "
         "{}, "
         "\"d\": {}, \"e\": {}, \"f\": {}, \"g\": {}, \"h\": {}, \"i\": {}}}",
         "params"},
    };
    for (size_t i = 0; i < TK_NELEM(whole); i++) {
        tk_err_clear(&e);
        tk_rc rc = tk_provider_parse("acme.json", whole[i].text, strlen(whole[i].text), &p, &e);
        if (rc != TK_EINVAL) {
            FAILF("whole %zu accepted: %s", i, whole[i].text);
            continue;
        }
        if (strcmp(e.field, whole[i].field))
            FAILF("whole %zu: field %s, wanted %s (%s)", i, e.field, whole[i].field, e.msg);
    }

    /* sizes: a file over the limit, a URL over the limit, deep nesting */
    char *big = malloc(TK_PROVIDER_FILE_MAX + 100);
    if (!CHECK(big)) return;
    memset(big, ' ', TK_PROVIDER_FILE_MAX + 99);
    big[0] = '{';
    big[TK_PROVIDER_FILE_MAX + 98] = '}';
    big[TK_PROVIDER_FILE_MAX + 99] = '\0';
    CHECK_EQ_INT(tk_provider_parse("acme.json", big, strlen(big), &p, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "(file)");
    CHECK(strstr(e.msg, "larger than") != NULL);
    int n = snprintf(big, TK_PROVIDER_FILE_MAX,
                     "{\"name\": \"acme\", \"display_name\": \"A\", "
                     "\"authorize_url\": null, \"token_url\": \"https://t.test/");
    memset(big + n, 'a', 3000);
    snprintf(big + n + 3000, 100, "\"}");
    CHECK_EQ_INT(tk_provider_parse("acme.json", big, strlen(big), &p, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "token_url");
    n = 0;
    for (int i = 0; i < 5000; i++)
        big[n++] = '[';
    big[n] = '\0';
    CHECK_EQ_INT(tk_provider_parse("acme.json", big, (size_t)n, &p, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "(file)");
    free(big);
    /* the text is not NUL-terminated: only len bytes are read */
    snprintf(text, sizeof text, "%s}GARBAGE", base_file);
    CHECK_OK(tk_provider_parse("acme.json", text, strlen(base_file) + 1, &p, &e), &e);
    /* the file name must end in .json */
    snprintf(text, sizeof text, "%s}", base_file);
    CHECK_EQ_INT(tk_provider_parse("acme", text, strlen(text), &p, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_provider_parse(NULL, text, strlen(text), &p, &e), TK_EINVAL);
}

void test_catalog_dir(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_catalog *c = NULL;
    struct tk_err e;
    /* an override of bitrix24 (own token URL on loopback), a new entry, and
     * files that are not catalogue files (ignored) */
    const char *bx = "{\"name\": \"bitrix24\", \"display_name\": \"Bitrix24 (private)\", "
                     "\"authorize_url\": \"http://127.0.0.1:1/{domain}/auth\", "
                     "\"token_url\": \"http://127.0.0.1:1/token\", \"token_method\": \"GET\", "
                     "\"client_auth\": \"query\", \"rotates_refresh_tokens\": true, "
                     "\"default_lifetime\": 3600, \"params\": {\"domain\": {\"type\": "
                     "\"hostname\", \"description\": \"portal\"}}}";
    const char *mine = "{\"name\": \"mine\", \"display_name\": \"Mine\", \"authorize_url\": null, "
                       "\"token_url\": \"https://auth.mine.test/token\", \"client_auth\": "
                       "\"client_secret_basic\", \"rotates_refresh_tokens\": false, "
                       "\"default_lifetime\": 600}";
    snprintf(path, sizeof path, "%s/bitrix24.json", dir);
    CHECK(unit_write_file(path, bx, strlen(bx), 0600));
    snprintf(path, sizeof path, "%s/mine.json", dir);
    CHECK(unit_write_file(path, mine, strlen(mine), 0600));
    snprintf(path, sizeof path, "%s/README.txt", dir);
    CHECK(unit_write_file(path, "not json", 8, 0600));
    snprintf(path, sizeof path, "%s/.hidden.json", dir);
    CHECK(unit_write_file(path, "not json", 8, 0600));
    if (CHECK_OK(tk_catalog_load(dir, &c, &e), &e)) {
        CHECK_EQ_INT(tk_catalog_count(c), 11);
        const struct tk_provider *b = tk_catalog_find(c, "bitrix24");
        if (CHECK(b)) {
            CHECK(b->from_dir);
            CHECK_EQ_STR(b->token_url, "http://127.0.0.1:1/token");
        }
        const struct tk_provider *m = tk_catalog_find(c, "mine");
        if (CHECK(m)) CHECK(m->from_dir);
        CHECK(!tk_catalog_find(c, "ebay")->from_dir);
        /* name order with the new entry */
        for (size_t i = 1; i < tk_catalog_count(c); i++)
            CHECK(strcmp(tk_catalog_at(c, i - 1)->name, tk_catalog_at(c, i)->name) < 0);
        tk_catalog_free(c);
        c = NULL;
    }
    /* a bad file stops the load, naming the file and the member */
    snprintf(path, sizeof path, "%s/zbad.json", dir);
    const char *bad = "{\"name\": \"zbad\", \"display_name\": \"Z\", \"authorize_url\": null, "
                      "\"token_url\": \"http://evil.test/token\", \"client_auth\": \"query\", "
                      "\"rotates_refresh_tokens\": false, \"default_lifetime\": 600}";
    CHECK(unit_write_file(path, bad, strlen(bad), 0600));
    CHECK_EQ_INT(tk_catalog_load(dir, &c, &e), TK_EINVAL);
    CHECK(c == NULL);
    CHECK_EQ_STR(e.field, "token_url");
    CHECK(strstr(e.msg, "zbad.json") != NULL);
    unlink(path);
    /* a symlink is not read */
    snprintf(path, sizeof path, "%s/link.json", dir);
    CHECK(symlink("/etc/passwd", path) == 0);
    CHECK_EQ_INT(tk_catalog_load(dir, &c, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "link.json") != NULL);
    unlink(path);
    /* a directory named *.json */
    snprintf(path, sizeof path, "%s/sub.json", dir);
    CHECK(mkdir(path, 0700) == 0);
    CHECK_EQ_INT(tk_catalog_load(dir, &c, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "sub.json") != NULL);
    rmdir(path);
    /* a file whose name differs from its provider's */
    snprintf(path, sizeof path, "%s/other.json", dir);
    CHECK(unit_write_file(path, mine, strlen(mine), 0600));
    CHECK_EQ_INT(tk_catalog_load(dir, &c, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "name");
    unlink(path);
    /* a missing directory */
    snprintf(path, sizeof path, "%s/none", dir);
    CHECK_EQ_INT(tk_catalog_load(path, &c, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "providers_dir");
    /* too many files */
    for (int i = 0; i <= TK_CATALOG_MAX; i++) {
        char name[600];
        snprintf(name, sizeof name, "%s/p%03d.json", dir, i);
        unit_write_file(name, "{}", 2, 0600);
    }
    CHECK_EQ_INT(tk_catalog_load(dir, &c, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "providers_dir");
    unit_rmtree(dir);
}

void test_catalog_effective(void)
{
    struct tk_catalog *c = NULL;
    struct tk_err e;
    if (!CHECK_OK(tk_catalog_load(NULL, &c, &e), &e)) return;
    json_t *params = json_pack("{s:s}", "domain", "acme.bitrix24.com");
    json_t *ov = json_object();
    json_t *eff = tk_app_effective(tk_catalog_find(c, "bitrix24"), "production", ov, params);
    CHECK_EQ_STR(json_string_value(json_object_get(eff, "authorize_url")),
                 "https://acme.bitrix24.com/oauth/authorize/");
    CHECK_EQ_STR(json_string_value(json_object_get(eff, "token_method")), "GET");
    CHECK_EQ_STR(json_string_value(json_object_get(eff, "client_auth")), "query");
    json_decref(eff);
    json_object_set_new(ov, "token_url", json_string("http://127.0.0.1:9/t"));
    json_object_set_new(ov, "client_auth", json_string("client_secret_basic"));
    json_object_set_new(ov, "rotates_refresh_tokens", json_false());
    json_object_set_new(ov, "default_lifetime", json_integer(120));
    eff = tk_app_effective(tk_catalog_find(c, "bitrix24"), "production", ov, params);
    CHECK_EQ_STR(json_string_value(json_object_get(eff, "token_url")), "http://127.0.0.1:9/t");
    CHECK_EQ_STR(json_string_value(json_object_get(eff, "client_auth")), "client_secret_basic");
    CHECK(json_is_false(json_object_get(eff, "rotates_refresh_tokens")));
    CHECK_EQ_INT(json_integer_value(json_object_get(eff, "default_lifetime")), 120);
    json_decref(eff);
    /* salesforce's sandbox URLs */
    eff = tk_app_effective(tk_catalog_find(c, "salesforce"), "sandbox", NULL, NULL);
    CHECK(strstr(json_string_value(json_object_get(eff, "token_url")), "test.salesforce.com"));
    json_decref(eff);
    /* generic-oauth2 without URLs: nulls */
    eff = tk_app_effective(tk_catalog_find(c, "generic-oauth2"), "production", NULL, NULL);
    CHECK(json_is_null(json_object_get(eff, "token_url")));
    CHECK(json_is_null(json_object_get(eff, "authorize_url")));
    json_decref(eff);
    json_decref(ov);
    json_decref(params);
    tk_catalog_free(c);
}

/* The provider_apps table through apps.c on a real store and keyring: the
 * secret sealed under the row's place (never in clear in the row), opened
 * back, replaced by an update; another tenant's app unknown to every call;
 * a sealed value copied to another row fails as a key/data fault. */
void test_apps_store(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_err e;
    struct tk_keyring *k = NULL;
    struct tk_catalog *cat = NULL;
    char shares[3][TK_SHARE_MAX], t1[TK_UUID_LEN + 1], t2[TK_UUID_LEN + 1];
    char id[TK_UUID_LEN + 1], id2[TK_UUID_LEN + 1], next[TK_UUID_LEN + 1];
    int64_t at;
    json_t *o = NULL, *attrs = NULL;
    struct tk_secret *s = NULL, *got = NULL;
    struct tk_rows *r = NULL;
    if (!CHECK_OK(tk_keyring_new(f->dir, &k, &e), &e)) goto out;
    if (!CHECK_OK(tk_keyring_init(k, db, 3, 2, NULL, shares, NULL, &e), &e)) goto out;
    if (!CHECK_OK(tk_catalog_load(NULL, &cat, &e), &e)) goto out;
    if (!CHECK_OK(tk_tenant_default(db, t1, &e), &e)) goto out;
    if (!CHECK_OK(tk_tenant_create(db, "other", t2, &at, &e), &e)) goto out;

    attrs =
        json_pack("{s:s, s:s, s:s, s:[s], s:{s:s}}", "provider", "bitrix24", "name", "portal",
                  "client_id", "local.1", "scopes", "crm", "params", "domain", "acme.bitrix24.com");
    s = tk_secret_new("s3cr3t-first-value", 18);
    if (!CHECK_OK(tk_app_create(db, k, cat, t1, attrs, s, id, &o, &e), &e)) goto out;
    CHECK(json_is_true(json_object_get(o, "client_secret_set")));
    CHECK(json_object_get(o, "client_secret") == NULL);
    CHECK_EQ_STR(
        json_string_value(json_object_get(json_object_get(o, "effective"), "authorize_url")),
        "https://acme.bitrix24.com/oauth/authorize/");
    json_decref(o);
    o = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT client_secret FROM provider_apps WHERE id = ?",
                            TK_ARGS(TK_TEXT(id)), &r, &e),
                 &e)) {
        CHECK(!strncmp(tk_rows_text(r, 0, 0), "ENC:v1:", 7));
        CHECK(!strstr(tk_rows_text(r, 0, 0), "s3cr3t"));
        tk_rows_free(r);
        r = NULL;
    }
    if (CHECK_OK(tk_app_client_secret(db, k, t1, id, &got, NULL, &e), &e)) {
        CHECK_EQ_INT(got->len, 18);
        CHECK(!memcmp(got->p, "s3cr3t-first-value", 18));
        tk_secret_free(got);
        got = NULL;
    }
    /* the name is unique in the tenant, free in another */
    CHECK_EQ_INT(tk_app_create(db, k, cat, t1, attrs, NULL, id2, &o, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.field, "name");
    if (CHECK_OK(tk_app_create(db, k, cat, t2, attrs, NULL, id2, &o, &e), &e)) {
        CHECK(json_is_false(json_object_get(o, "client_secret_set")));
        json_decref(o);
        o = NULL;
        CHECK_EQ_INT(tk_app_client_secret(db, k, t2, id2, &got, NULL, &e), TK_ENOTFOUND);
        CHECK_EQ_STR(e.code, "no_client_secret");
    }

    /* another tenant sees nothing */
    CHECK_EQ_INT(tk_app_get(db, cat, t2, id, &o, &e), TK_ENOTFOUND);
    CHECK_EQ_INT(tk_app_client_secret(db, k, t2, id, &got, NULL, &e), TK_ENOTFOUND);
    CHECK_EQ_INT(tk_app_delete(db, t2, id, &e), TK_ENOTFOUND);
    json_t *ren = json_pack("{s:s}", "name", "stolen");
    CHECK_OK(tk_db_begin(db, &e), &e);
    CHECK_EQ_INT(tk_app_update(db, k, cat, t2, id, ren, NULL, &o, &e), TK_ENOTFOUND);
    tk_db_rollback(db);
    json_decref(ren);
    if (CHECK_OK(tk_app_list(db, cat, t2, NULL, NULL, 50, &o, next, &e), &e)) {
        CHECK_EQ_INT(json_array_size(o), 1); /* its own only */
        json_decref(o);
        o = NULL;
    }
    if (CHECK_OK(tk_app_list(db, cat, t1, "ebay", NULL, 50, &o, next, &e), &e)) {
        CHECK_EQ_INT(json_array_size(o), 0);
        json_decref(o);
        o = NULL;
    }

    /* update: an override and a new secret */
    json_t *up = json_pack("{s:s, s:s}", "token_url", "http://127.0.0.1:9/t", "name", "portal-2");
    tk_secret_free(s);
    s = tk_secret_new("s3cr3t-second", 13);
    CHECK_OK(tk_db_begin(db, &e), &e);
    if (CHECK_OK(tk_app_update(db, k, cat, t1, id, up, s, &o, &e), &e)) {
        CHECK_EQ_STR(json_string_value(json_object_get(o, "name")), "portal-2");
        CHECK_EQ_STR(
            json_string_value(json_object_get(json_object_get(o, "effective"), "token_url")),
            "http://127.0.0.1:9/t");
        json_decref(o);
        o = NULL;
    }
    CHECK_OK(tk_db_commit(db, &e), &e);
    json_decref(up);
    if (CHECK_OK(tk_app_client_secret(db, k, t1, id, &got, NULL, &e), &e)) {
        CHECK(got->len == 13 && !memcmp(got->p, "s3cr3t-second", 13));
        tk_secret_free(got);
        got = NULL;
    }

    /* a sealed value copied to another row does not open there */
    json_object_set_new(attrs, "name", json_string("portal-copy"));
    if (CHECK_OK(tk_app_create(db, k, cat, t1, attrs, s, id2, &o, &e), &e)) {
        json_decref(o);
        o = NULL;
        CHECK_OK(tk_db_exec(db,
                            "UPDATE provider_apps SET client_secret = (SELECT client_secret FROM "
                            "provider_apps WHERE id = ?) WHERE id = ?",
                            TK_ARGS(TK_TEXT(id), TK_TEXT(id2)), NULL, &e),
                 &e);
        struct tk_open_failure fl;
        CHECK_EQ_INT(tk_app_client_secret(db, k, t1, id2, &got, &fl, &e), TK_EINTERNAL);
        CHECK_EQ_STR(e.code, "decrypt_failed");
        CHECK(strstr(fl.row, id2) != NULL);
        CHECK(got == NULL);
    }

    CHECK_OK(tk_app_delete(db, t1, id, &e), &e);
    CHECK_EQ_INT(tk_app_get(db, cat, t1, id, &o, &e), TK_ENOTFOUND);
    CHECK_EQ_INT(tk_app_delete(db, t1, id, &e), TK_ENOTFOUND);
    CHECK(!tk_provider_app_in_use(db, t1, id2));
out:
    json_decref(attrs);
    tk_secret_free(s);
    tk_catalog_free(cat);
    tk_keyring_free(k);
    tk_store_put(db);
}
