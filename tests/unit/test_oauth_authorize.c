/* test_oauth_authorize.c: the authorization request's checks (redirect URI
 * matching and the sentence naming the difference, scopes, PKCE, resource,
 * parameter bytes) and the flows' rows on both backends (insert, stages,
 * failure, list filters including stuck, diagnosis). */
#include "../../src/api/api.h"
#include "../../src/oauth/authorize.h"
#include "../../src/operators/operators.h"
#include "unit.h"

#include <string.h>

static void client(struct tk_oauth_client *c, const char *type, const char *uris,
                   const char *scopes, const char *defaults)
{
    memset(c, 0, sizeof *c);
    snprintf(c->application_type, sizeof c->application_type, "%s", type);
    snprintf(c->client_id, sizeof c->client_id, "c1");
    c->redirect_uris = json_loads(uris, 0, NULL);
    c->scopes = json_loads(scopes, 0, NULL);
    c->default_scopes = json_loads(defaults, 0, NULL);
    c->grant_types = json_pack("[s]", "authorization_code");
}

static const char *explain(const struct tk_oauth_client *c, const char *uri,
                           struct tk_oauth_refusal *rf)
{
    tk_oauth_redirect_explain(c, uri, rf);
    CHECK_EQ_STR(rf->error, "invalid_request");
    return rf->reason;
}

void test_oauth_redirect_match(void)
{
    struct tk_oauth_client c;
    client(&c, "web", "[\"https://x.example/cb\", \"http://127.0.0.1/cb\"]", "[]", "[]");
    CHECK(tk_oauth_redirect_match(&c, "https://x.example/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "https://x.example/cb/"));
    CHECK(!tk_oauth_redirect_match(&c, "https://X.example/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "https://x.example/cb?a=1"));
    CHECK(!tk_oauth_redirect_match(&c, "https://x.example/cb#f"));
    CHECK(!tk_oauth_redirect_match(&c, "https://x.example@evil.example/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "https://x.example%2Fcb"));
    CHECK(!tk_oauth_redirect_match(&c, ""));
    /* a web client: the loopback port is exact */
    CHECK(tk_oauth_redirect_match(&c, "http://127.0.0.1/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "http://127.0.0.1:5555/cb"));
    tk_oauth_client_clear(&c);
    /* native: any port on a registered loopback URI (RFC 8252 §7.3) */
    client(&c, "native",
           "[\"http://127.0.0.1/cb\", \"http://[::1]:80/cb\", \"https://n.example/cb\"]", "[]",
           "[]");
    CHECK(tk_oauth_redirect_match(&c, "http://127.0.0.1:5555/cb"));
    CHECK(tk_oauth_redirect_match(&c, "http://127.0.0.1/cb"));
    CHECK(tk_oauth_redirect_match(&c, "http://[::1]:61000/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "http://127.0.0.1:5555/cb/"));
    CHECK(!tk_oauth_redirect_match(&c, "http://127.0.0.1:5555/other"));
    CHECK(!tk_oauth_redirect_match(&c, "http://localhost:5555/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "https://127.0.0.1:5555/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "http://u@127.0.0.1:5555/cb"));
    CHECK(!tk_oauth_redirect_match(&c, "http://127.0.0.1:5555/cb#x"));
    CHECK(!tk_oauth_redirect_match(&c, "https://n.example:8443/cb")); /* not loopback: exact */
    tk_oauth_client_clear(&c);
}

void test_oauth_redirect_explain(void)
{
    struct tk_oauth_client c;
    struct tk_oauth_refusal rf;
    client(&c, "web", "[\"https://x/cb\"]", "[]", "[]");
    CHECK_EQ_STR(explain(&c, "https://x/cb/", &rf),
                 "redirect_uri 'https://x/cb/' does not match the registered 'https://x/cb' "
                 "(trailing slash)");
    CHECK_EQ_STR(rf.next_step,
                 "register 'https://x/cb/' for the client (redirect_uris) or make the client send "
                 "'https://x/cb'");
    CHECK_EQ_STR(explain(&c, "http://x/cb", &rf),
                 "redirect_uri 'http://x/cb' does not match the registered 'https://x/cb' "
                 "(scheme 'http' instead of 'https')");
    CHECK_EQ_STR(rf.next_step,
                 "make the client send 'https://x/cb' ('http://x/cb' cannot be registered)");
    CHECK_EQ_STR(explain(&c, "https://y/cb", &rf),
                 "redirect_uri 'https://y/cb' does not match the registered 'https://x/cb' "
                 "(host 'y' instead of 'x')");
    CHECK_EQ_STR(explain(&c, "https://x:8443/cb", &rf),
                 "redirect_uri 'https://x:8443/cb' does not match the registered 'https://x/cb' "
                 "(port '8443' instead of none)");
    CHECK_EQ_STR(explain(&c, "https://x/callback", &rf),
                 "redirect_uri 'https://x/callback' does not match the registered "
                 "'https://x/cb' (path '/callback' instead of '/cb')");
    CHECK_EQ_STR(explain(&c, "https://X/CB", &rf),
                 "redirect_uri 'https://X/CB' does not match the registered 'https://x/cb' (case)");
    CHECK_EQ_STR(explain(&c, "https://x/cb?a=1", &rf),
                 "redirect_uri 'https://x/cb?a=1' does not match the registered 'https://x/cb' "
                 "(query '?a=1' added)");
    CHECK_EQ_STR(explain(&c, "https://x@evil.example/cb", &rf),
                 "redirect_uri 'https://x@evil.example/cb' does not match the registered "
                 "'https://x/cb' (userinfo 'x@' before the host; host 'evil.example' instead of "
                 "'x')");
    CHECK(strstr(rf.next_step, "cannot be registered") != NULL);
    CHECK_EQ_STR(explain(&c, "https://x/cb#frag", &rf),
                 "redirect_uri 'https://x/cb#frag' does not match the registered 'https://x/cb' "
                 "(a fragment, which a redirect URI may not have)");
    CHECK_EQ_STR(explain(&c, "javascript:alert(1)", &rf),
                 "redirect_uri 'javascript:alert(1)' is not an absolute URI with a host "
                 "(scheme://host/path); the client registers 'https://x/cb'");
    CHECK_EQ_STR(rf.next_step, "make the client send 'https://x/cb'");
    CHECK(strstr(explain(&c, "data:text/html,hi", &rf), "is not an absolute URI") != NULL);
    CHECK(strstr(explain(&c, "https://x/c%2562", &rf), "path") != NULL);
    tk_oauth_client_clear(&c);

    /* the closest of several; a missing trailing slash */
    client(&c, "web", "[\"https://a.example/one/\", \"https://b.example/two\"]", "[]", "[]");
    CHECK_EQ_STR(explain(&c, "https://a.example/one", &rf),
                 "redirect_uri 'https://a.example/one' does not match any of the 2 registered; "
                 "the closest is 'https://a.example/one/' (missing trailing slash)");
    CHECK_EQ_STR(explain(&c, "https://b.example:444/two", &rf),
                 "redirect_uri 'https://b.example:444/two' does not match any of the 2 "
                 "registered; the closest is 'https://b.example/two' (port '444' instead of none)");
    tk_oauth_client_clear(&c);

    client(&c, "web", "[]", "[]", "[]");
    CHECK_EQ_STR(explain(&c, "https://x/cb", &rf),
                 "redirect_uri 'https://x/cb' does not match: the client has no registered "
                 "redirect URI");
    tk_oauth_client_clear(&c);

    /* a long URI is cut in the sentence, which stays bounded */
    char longu[TK_OAUTH_URI_MAX];
    snprintf(longu, sizeof longu, "https://x/");
    memset(longu + 10, 'a', 1800);
    longu[1810] = '\0';
    client(&c, "web", "[\"https://x/cb\"]", "[]", "[]");
    explain(&c, longu, &rf);
    CHECK(strlen(rf.reason) < 700);
    CHECK(strstr(rf.reason, "...") != NULL);
    tk_oauth_client_clear(&c);
}

void test_oauth_scopes(void)
{
    struct tk_oauth_client c;
    struct tk_oauth_refusal rf;
    json_t *g = NULL;
    client(&c, "web", "[]", "[\"dcr.create\"]", "[\"dcr.create\"]");
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "read:data write:data admin:all", &g, &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.error, "invalid_scope");
    CHECK_EQ_STR(rf.reason, "scopes 'read:data', 'write:data', 'admin:all' are not allowed for "
                            "this client; allowed: dcr.create");
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "admin:all", &g, &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.reason,
                 "scope 'admin:all' is not allowed for this client; allowed: dcr.create");
    CHECK(strstr(rf.next_step, "allow 'admin:all' for the client") != NULL);
    CHECK(g == NULL);
    /* none requested: the defaults */
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, NULL, &g, &rf), TK_OK);
    CHECK(json_array_size(g) == 1 &&
          !strcmp(json_string_value(json_array_get(g, 0)), "dcr.create"));
    json_decref(g);
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "   ", &g, &rf), TK_OK);
    json_decref(g);
    /* repeats dropped, order kept */
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "dcr.create  dcr.create", &g, &rf), TK_OK);
    CHECK_EQ_INT(json_array_size(g), 1);
    json_decref(g);
    /* characters outside RFC 6749's scope-token */
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "a\"b", &g, &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.error, "invalid_scope");
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "\xc3\xa9t\xc3\xa9", &g, &rf), TK_EINVAL);
    /* too many, too long */
    char many[TK_OAUTH_SCOPE_PARAM_MAX];
    size_t k = 0;
    for (int i = 0; i < 70; i++)
        k += (size_t)snprintf(many + k, sizeof many - k, "s%d ", i);
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, many, &g, &rf), TK_EINVAL);
    CHECK(strstr(rf.reason, "more than 64") != NULL);
    char lng[300];
    memset(lng, 'a', 200);
    lng[200] = '\0';
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, lng, &g, &rf), TK_EINVAL);
    tk_oauth_client_clear(&c);
    /* no defaults and nothing requested */
    client(&c, "web", "[]", "[\"a\", \"b\"]", "[]");
    CHECK_EQ_INT(tk_oauth_scopes_resolve(&c, "", &g, &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.reason, "no scope is requested and the client has no default scopes; "
                            "allowed: a b");
    tk_oauth_client_clear(&c);
}

void test_oauth_pkce(void)
{
    struct tk_oauth_refusal rf;
    const char *ch = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; /* RFC 7636 appendix B */
    CHECK_EQ_INT(tk_oauth_pkce_check(ch, "S256", true, &rf), TK_OK);
    CHECK_EQ_INT(tk_oauth_pkce_check(NULL, NULL, false, &rf), TK_OK);
    CHECK_EQ_INT(tk_oauth_pkce_check(NULL, NULL, true, &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.reason, "code_challenge is required for this client (PKCE with S256)");
    CHECK_EQ_INT(tk_oauth_pkce_check(ch, "plain", true, &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.error, "invalid_request");
    CHECK_EQ_STR(rf.reason, "code_challenge_method plain is not supported; use S256");
    CHECK_EQ_INT(tk_oauth_pkce_check(ch, NULL, false, &rf), TK_EINVAL); /* absent = plain */
    CHECK(strstr(rf.reason, "plain is not supported") != NULL);
    CHECK_EQ_INT(tk_oauth_pkce_check(NULL, "S256", false, &rf), TK_EINVAL);
    CHECK_EQ_INT(tk_oauth_pkce_check(ch, "s256", true, &rf), TK_EINVAL);
    CHECK_EQ_INT(tk_oauth_pkce_check("short", "S256", true, &rf), TK_EINVAL);
    CHECK(strstr(rf.reason, "5 characters") != NULL);
    char bad[44];
    memcpy(bad, ch, 44);
    bad[10] = '=';
    CHECK_EQ_INT(tk_oauth_pkce_check(bad, "S256", true, &rf), TK_EINVAL);
    bad[10] = '+';
    CHECK_EQ_INT(tk_oauth_pkce_check(bad, "S256", true, &rf), TK_EINVAL);
    char lng[200];
    memset(lng, 'A', 129);
    lng[129] = '\0';
    CHECK_EQ_INT(tk_oauth_pkce_check(lng, "S256", true, &rf), TK_EINVAL);
    lng[128] = '\0';
    CHECK_EQ_INT(tk_oauth_pkce_check(lng, "S256", true, &rf), TK_OK);
}

void test_oauth_resource_params(void)
{
    struct tk_oauth_refusal rf;
    CHECK_EQ_INT(tk_oauth_resource_check("https://mcp.example/mcp", &rf), TK_OK);
    CHECK_EQ_INT(tk_oauth_resource_check("https://mcp.example/mcp#x", &rf), TK_EINVAL);
    CHECK_EQ_STR(rf.error, "invalid_target");
    CHECK_EQ_INT(tk_oauth_resource_check("/relative", &rf), TK_EINVAL);
    CHECK_EQ_INT(tk_oauth_resource_check("urn:x", &rf), TK_EINVAL);
    char why[200];
    CHECK(tk_oauth_param_ok("state", "abc", 3, 512, why, sizeof why));
    CHECK(!tk_oauth_param_ok("state", "a\0b", 3, 512, why, sizeof why));
    CHECK_EQ_STR(why, "state holds a control character (byte 0x00 at 1)");
    CHECK(!tk_oauth_param_ok("state", "a\r\nb", 4, 512, why, sizeof why));
    CHECK(!tk_oauth_param_ok("state", "\xff\xfe", 2, 512, why, sizeof why));
    CHECK_EQ_STR(why, "state is not valid UTF-8");
    CHECK(!tk_oauth_param_ok("state", "abcd", 4, 3, why, sizeof why));
    CHECK_EQ_STR(why, "state is 4 bytes long; at most 3 are accepted");
    struct tk_oauth_uri u;
    CHECK(tk_oauth_uri_parse("http://[::1]:8080/a?b#c", &u));
    CHECK(u.ipv6 && !strcmp(u.host, "::1") && !strcmp(u.port, "8080") && !strcmp(u.path, "/a") &&
          !strcmp(u.query, "b") && u.has_fragment);
    CHECK(!tk_oauth_uri_parse("http://:80/", &u));
    CHECK(!tk_oauth_uri_parse("http://h:99999999/", &u));
    CHECK(!tk_oauth_uri_parse("http://[::1/", &u));
    CHECK(!tk_oauth_uri_parse("1http://h/", &u));
}

/* ---- flows on a store ---- */

static bool mk_client_row(struct tk_db *db, const char *tenant, char id[TK_UUID_LEN + 1])
{
    struct tk_err e;
    tk_uuid7(id);
    return CHECK_OK(tk_db_exec(db,
                               "INSERT INTO oauth_clients (id, tenant_id, client_id, name, "
                               "client_type, application_type, token_endpoint_auth_method, "
                               "redirect_uris, grant_types, scopes, default_scopes, status, "
                               "origin, created_at, updated_at) VALUES (?, ?, 'chatgpt', 'C', "
                               "'public', 'web', 'none', '[\"https://x/cb\"]', "
                               "'[\"authorization_code\"]', '[\"dcr.create\"]', '[]', 'active', "
                               "'operator', 0, 0)",
                               TK_ARGS(TK_TEXT(id), TK_TEXT(tenant)), NULL, &e),
                    &e);
}

static bool new_flow(struct tk_db *db, const char *tenant, const char *ocid, int64_t at,
                     const struct tk_oauth_refusal *rf, struct tk_oauth_flow *f)
{
    struct tk_err e;
    memset(f, 0, sizeof *f);
    snprintf(f->tenant_id, sizeof f->tenant_id, "%s", tenant);
    snprintf(f->oauth_client_id, sizeof f->oauth_client_id, "%s", ocid);
    snprintf(f->client_id, sizeof f->client_id, "chatgpt");
    snprintf(f->redirect_uri, sizeof f->redirect_uri, "https://x/cb");
    snprintf(f->oauth_state, sizeof f->oauth_state, "st");
    f->scopes = json_pack("[s]", "dcr.create");
    f->created_at = at;
    f->expires_at = at + 600000;
    bool ok = CHECK_OK(tk_oauth_flow_insert(db, f, rf, &e), &e);
    tk_oauth_flow_clear(f);
    return ok;
}

static int count_status(struct tk_db *db, const char *tenant, const char *client,
                        const char *status, int64_t now)
{
    struct tk_err e;
    json_t *a = NULL;
    char next[TK_UUID_LEN + 1];
    if (!CHECK_OK(tk_oauth_flow_list(db, tenant, client, status, NULL, 100, now, &a, next, &e), &e))
        return -1;
    int n = (int)json_array_size(a);
    json_decref(a);
    return n;
}

void test_oauth_flows_store(struct fx *fx)
{
    struct tk_db *db = fx_db(fx);
    if (!db) return;
    struct tk_err e;
    char tenant[TK_UUID_LEN + 1], ocid[TK_UUID_LEN + 1];
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e) || !mk_client_row(db, tenant, ocid)) {
        tk_store_put(db);
        return;
    }
    int64_t now = tk_now_ms();
    struct tk_oauth_flow done, stuck, fresh, failed, got;
    if (!new_flow(db, tenant, ocid, now - 300000, NULL, &done) ||
        !new_flow(db, tenant, ocid, now - 200000, NULL, &stuck))
        goto out;
    struct tk_oauth_refusal rf = {.error = "invalid_scope"};
    snprintf(rf.reason, sizeof rf.reason,
             "scope 'admin:all' is not allowed for this client; allowed: dcr.create");
    if (!new_flow(db, tenant, ocid, now - 100000, &rf, &failed) ||
        !new_flow(db, tenant, ocid, now - 1000, NULL, &fresh))
        goto out;

    /* a 128-character challenge (the most RFC 7636 allows) round-trips */
    {
        struct tk_oauth_flow ch, back;
        memset(&ch, 0, sizeof ch);
        snprintf(ch.tenant_id, sizeof ch.tenant_id, "%s", tenant);
        snprintf(ch.oauth_client_id, sizeof ch.oauth_client_id, "%s", ocid);
        snprintf(ch.client_id, sizeof ch.client_id, "other");
        snprintf(ch.redirect_uri, sizeof ch.redirect_uri, "https://x/cb");
        memset(ch.code_challenge, 'A', 128);
        snprintf(ch.code_challenge_method, sizeof ch.code_challenge_method, "S256");
        ch.created_at = now;
        ch.expires_at = now + 600000;
        if (CHECK_OK(tk_oauth_flow_insert(db, &ch, NULL, &e), &e) &&
            CHECK_OK(tk_oauth_flow_get(db, tenant, ch.id, &back, &e), &e)) {
            CHECK_EQ_INT(strlen(back.code_challenge), 128);
            CHECK_EQ_STR(back.code_challenge_method, "S256");
            tk_oauth_flow_clear(&back);
        }
        CHECK_OK(tk_db_exec(db, "DELETE FROM oauth_flows WHERE id = ?", TK_ARGS(TK_TEXT(ch.id)),
                            NULL, &e),
                 &e);
    }
    /* done: every stage, completed at token_issued */
    for (size_t i = 1; i < 6; i++)
        CHECK_OK(tk_oauth_flow_set_stage(db, tenant, done.id, tk_oauth_stages[i],
                                         i == 1 ? "0190a0a0-0000-7000-8000-000000000001" : NULL,
                                         now - 290000, &e),
                 &e);
    CHECK_OK(tk_oauth_flow_get(db, tenant, done.id, &got, &e), &e);
    CHECK_EQ_STR(got.status, "completed");
    CHECK_EQ_STR(got.stage, "token_issued");
    CHECK_EQ_STR(got.user_id, "0190a0a0-0000-7000-8000-000000000001");
    CHECK_EQ_STR(got.oauth_state, "st");
    CHECK_EQ_INT(got.expires_at - got.created_at, 600000);
    CHECK_EQ_STR(got.code_challenge, "");
    CHECK(json_array_size(got.scopes) == 1);
    tk_oauth_flow_clear(&got);
    /* stuck: a code issued long ago, never exchanged */
    CHECK_OK(tk_oauth_flow_set_stage(db, tenant, stuck.id, "code_issued", NULL, now - 190000, &e),
             &e);
    /* unknown stage, unknown flow, another tenant */
    CHECK_EQ_INT(tk_oauth_flow_set_stage(db, tenant, stuck.id, "bogus", NULL, now, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_oauth_flow_set_stage(db, tenant, "0190a0a0-0000-7000-8000-00000000dead",
                                         "login", NULL, now, &e),
                 TK_ENOTFOUND);
    CHECK_EQ_INT(tk_oauth_flow_get(db, "0190a0a0-0000-7000-8000-00000000beef", stuck.id, &got, &e),
                 TK_ENOTFOUND);
    CHECK_EQ_INT(tk_oauth_flow_get(db, NULL, "not-a-uuid", &got, &e), TK_ENOTFOUND);
    CHECK_OK(tk_oauth_flow_get(db, NULL, stuck.id, &got, &e), &e);
    tk_oauth_flow_clear(&got);

    CHECK_EQ_INT(count_status(db, tenant, NULL, NULL, now), 4);
    CHECK_EQ_INT(count_status(db, tenant, "chatgpt", NULL, now), 4);
    CHECK_EQ_INT(count_status(db, tenant, "other", NULL, now), 0);
    CHECK_EQ_INT(count_status(db, tenant, NULL, "completed", now), 1);
    CHECK_EQ_INT(count_status(db, tenant, NULL, "failed", now), 1);
    CHECK_EQ_INT(count_status(db, tenant, NULL, "stuck", now), 1);
    CHECK_EQ_INT(count_status(db, tenant, NULL, "active", now), 1);
    /* the fresh one becomes stuck after 60 s without a stage */
    CHECK_EQ_INT(count_status(db, tenant, NULL, "stuck", now + 61000), 2);

    /* paging: newest first */
    json_t *a = NULL;
    char next[TK_UUID_LEN + 1];
    CHECK_OK(tk_oauth_flow_list(db, tenant, NULL, NULL, NULL, 3, now, &a, next, &e), &e);
    CHECK_EQ_INT(json_array_size(a), 3);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(a, 0), "id")), fresh.id);
    json_decref(a);
    CHECK(next[0] != '\0');
    CHECK_OK(tk_oauth_flow_list(db, tenant, NULL, NULL, next, 3, now, &a, next, &e), &e);
    CHECK_EQ_INT(json_array_size(a), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(a, 0), "id")), done.id);
    CHECK_EQ_STR(next, "");
    json_decref(a);

    /* show and diagnose */
    json_t *o = NULL;
    if (CHECK_OK(tk_oauth_flow_show(db, tenant, failed.id, now, &o, &e), &e)) {
        CHECK_EQ_STR(json_string_value(json_object_get(o, "failed_stage")), "authorize_received");
        CHECK_EQ_STR(json_string_value(json_object_get(o, "error")), "invalid_scope");
        json_t *d = tk_oauth_flow_diagnose(o, now);
        CHECK_EQ_STR(json_string_value(json_object_get(d, "stopped_at")), "authorize_received");
        CHECK(strstr(json_string_value(json_object_get(d, "conclusion")),
                     "failed at authorize_received with invalid_scope: scope 'admin:all'") != NULL);
        CHECK(json_is_string(json_object_get(d, "next_step")));
        json_decref(d);
        json_decref(o);
    }
    if (CHECK_OK(tk_oauth_flow_show(db, tenant, stuck.id, now, &o, &e), &e)) {
        CHECK(json_is_true(json_object_get(o, "stuck")));
        json_t *d = tk_oauth_flow_diagnose(o, now);
        CHECK(strstr(json_string_value(json_object_get(d, "conclusion")),
                     "stuck at code_issued: a code was sent") != NULL);
        CHECK(json_is_false(json_object_get(o, "expired")));
        json_decref(d);
        json_decref(o);
    }
    /* past oauth_flow_ttl (600 s here) the diagnosis says it cannot complete */
    if (CHECK_OK(tk_oauth_flow_show(db, tenant, stuck.id, now + 500000, &o, &e), &e)) {
        CHECK(json_is_true(json_object_get(o, "expired")));
        json_t *d = tk_oauth_flow_diagnose(o, now + 500000);
        CHECK(strstr(json_string_value(json_object_get(d, "conclusion")),
                     "it has expired (oauth_flow_ttl)") != NULL);
        json_decref(d);
        json_decref(o);
    }
    /* the API's stage function in the caller's transaction: the row and
     * its event (kind oauth, subject the flow) commit together */
    if (CHECK_OK(tk_db_begin(db, &e), &e)) {
        tk_rc rc = tk_api_oauth_flow_stage(NULL, db, tenant, fresh.id, "login",
                                           "0190a0a0-0000-7000-8000-000000000002", &e);
        if (CHECK_OK(rc, &e))
            CHECK_OK(tk_db_commit(db, &e), &e);
        else
            tk_db_rollback(db);
    }
    CHECK_OK(tk_oauth_flow_get(db, tenant, fresh.id, &got, &e), &e);
    CHECK_EQ_STR(got.stage, "login");
    CHECK_EQ_STR(got.user_id, "0190a0a0-0000-7000-8000-000000000002");
    tk_oauth_flow_clear(&got);
    struct tk_rows *ev = NULL;
    if (CHECK_OK(tk_db_exec(db,
                            "SELECT kind, action, outcome, subject_type FROM events WHERE "
                            "tenant_id = ? AND subject_id = ?",
                            TK_ARGS(TK_TEXT(tenant), TK_TEXT(fresh.id)), &ev, &e),
                 &e) &&
        CHECK_EQ_INT(tk_rows_count(ev), 1)) {
        CHECK_EQ_STR(tk_rows_text(ev, 0, 0), "oauth");
        CHECK_EQ_STR(tk_rows_text(ev, 0, 1), "login");
        CHECK_EQ_STR(tk_rows_text(ev, 0, 2), "ok");
        CHECK_EQ_STR(tk_rows_text(ev, 0, 3), "oauth_flow");
    }
    tk_rows_free(ev);
    /* a stage that is not one: nothing written */
    if (CHECK_OK(tk_db_begin(db, &e), &e)) {
        CHECK_EQ_INT(tk_api_oauth_flow_stage(NULL, db, tenant, fresh.id, "bogus", NULL, &e),
                     TK_EINVAL);
        tk_db_rollback(db);
    }
    /* a failure later: failed_stage and reason */
    CHECK_OK(tk_oauth_flow_set_failed(db, tenant, stuck.id, "token_exchanged", "invalid_grant",
                                      "code expired 14 s ago", NULL, now, &e),
             &e);
    CHECK_EQ_INT(count_status(db, tenant, NULL, "failed", now), 2);
    /* the token part's failures: the next step from the sentence */
    static const struct {
        const char *reason, *next;
    } tok[] = {
        {"code expired 14 s ago", "within 60 s of the redirect"},
        {"code already used at 10:00:10; tokens issued from it were revoked",
         "exchange each code once"},
        {"code_verifier does not match code_challenge", "code_verifier of the code_challenge"},
        {"redirect_uri 'https://x/cb/' does not match the authorization request's 'https://x/cb'",
         "exactly the redirect_uri"},
    };
    for (size_t i = 0; i < TK_NELEM(tok); i++) {
        CHECK_OK(tk_oauth_flow_set_failed(db, tenant, stuck.id, "token_exchanged", "invalid_grant",
                                          tok[i].reason, NULL, now, &e),
                 &e);
        if (!CHECK_OK(tk_oauth_flow_show(db, tenant, stuck.id, now, &o, &e), &e)) continue;
        json_t *d = tk_oauth_flow_diagnose(o, now);
        const char *ns = json_string_value(json_object_get(d, "next_step"));
        if (!ns || !strstr(ns, tok[i].next)) FAILF("%s: next step %s", tok[i].reason, ns);
        CHECK_EQ_STR(json_string_value(json_object_get(d, "stopped_at")), "token_exchanged");
        json_decref(d);
        json_decref(o);
    }
    CHECK_EQ_INT(count_status(db, tenant, NULL, "stuck", now), 0);
out:
    tk_store_put(db);
}
