/* test_oauth_grants.c: src/oauth/grants.c and revset.c -- PKCE against
 * RFC 7636's vector and hostile verifiers; on both backends: a code
 * redeemed once (its family recorded), replayed (the family revoked, the
 * sentence with the time), expired ("code expired N s ago"), of another
 * client, malformed; two connections racing for one code (exactly one
 * wins); refresh rotation, reuse after rotation (family revoked), reuse
 * inside oauth_refresh_grace (a sibling, no revocation), no rotation,
 * expiry; the revocation rows and their purge; the in-memory set. */
#include "unit.h"

#include "../../src/keyring/keyring.h"
#include "../../src/oauth/oauth.h"
#include "../../src/operators/operators.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- PKCE ---- */

static const char *pkce(const char *challenge, const char *method, const char *verifier)
{
    static char msg[320];
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_oauth_pkce_verify(challenge, method, verifier, &e) == TK_OK) return "";
    snprintf(msg, sizeof msg, "%s", e.msg);
    return msg;
}

void test_oauth_grants_pkce(void)
{
    /* RFC 7636 Appendix B */
    const char *v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const char *c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    CHECK_EQ_STR(pkce(c, "S256", v), "");
    CHECK_EQ_STR(pkce(c, "", v), "");
    CHECK_EQ_STR(pkce(NULL, NULL, NULL), "");
    CHECK_EQ_STR(pkce("", "", NULL), "");
    CHECK_EQ_STR(pkce(c, "S256", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"),
                 "code_verifier does not match code_challenge");
    CHECK(strstr(pkce(c, "S256", NULL), "code_verifier is missing"));
    CHECK(strstr(pkce(NULL, NULL, v), "PKCE downgrade"));
    CHECK(strstr(pkce("", "", v), "PKCE downgrade"));
    CHECK(strstr(pkce(c, "S256", "short"), "43 to 128"));
    CHECK(strstr(pkce(c, "S256", ""), "43 to 128"));
    char big[200];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(strstr(pkce(c, "S256", big), "not 199"));
    big[128] = '\0';
    CHECK_EQ_STR(pkce(c, "S256", big), "code_verifier does not match code_challenge");
    big[5] = '+';
    CHECK(strstr(pkce(c, "S256", big), "position 6"));
    big[5] = '\xc3';
    CHECK(strstr(pkce(c, "S256", big), "position 6"));
    CHECK(strstr(pkce(c, "plain", v), "S256 only"));
    /* a challenge of another length never matches */
    CHECK_EQ_STR(pkce("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c", "S256", v),
                 "code_verifier does not match code_challenge");
}

/* ---- scope and resource parameters ---- */

static const char *scope_str(const char *in)
{
    static char out[512];
    struct tk_err e;
    tk_err_clear(&e);
    json_t *a = tk_oauth_scope_parse(in, &e);
    if (!a) {
        snprintf(out, sizeof out, "!%s", e.msg);
        return out;
    }
    char *j = tk_oauth_scope_join(a);
    snprintf(out, sizeof out, "%s", j);
    free(j);
    json_decref(a);
    return out;
}

void test_oauth_grants_params(void)
{
    CHECK_EQ_STR(scope_str(""), "");
    CHECK_EQ_STR(scope_str("   "), "");
    CHECK_EQ_STR(scope_str("a"), "a");
    CHECK_EQ_STR(scope_str("  notes:read   notes:write notes:read "), "notes:read notes:write");
    CHECK_EQ_STR(scope_str("a\"b"),
                 "!scope has a character outside RFC 6749's scope-token set at position 2");
    CHECK(scope_str("a\\b")[0] == '!');
    CHECK(scope_str("a\tb")[0] == '!');
    CHECK(scope_str("caf\xc3\xa9")[0] == '!');
    char big[TK_OAUTH_SCOPE_PARAM_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(strstr(scope_str(big), "longer than 2048 bytes"));
    char many[1024] = "";
    for (int i = 0; i < 65; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "s%d ", i);
    CHECK(strstr(scope_str(many), "more than 64 scopes"));
    /* subsets and the sentence */
    struct tk_err e;
    tk_err_clear(&e);
    json_t *allowed = json_pack("[s,s]", "notes:read", "notes:write");
    json_t *want = json_pack("[s]", "notes:read");
    CHECK(tk_oauth_scope_subset(want, allowed, "this client", &e));
    json_array_append_new(want, json_string("admin:all"));
    CHECK(!tk_oauth_scope_subset(want, allowed, "this client", &e));
    CHECK_EQ_STR(
        e.msg, "scope 'admin:all' is not allowed for this client; allowed: notes:read notes:write");
    json_t *none = json_array();
    CHECK(!tk_oauth_scope_subset(want, none, "this client", &e));
    CHECK(strstr(e.msg, "allowed: (none)"));
    CHECK(tk_oauth_scope_subset(none, none, "x", &e));
    json_decref(allowed);
    json_decref(want);
    json_decref(none);
    /* resources */
    static const char *const good[] = {"https://mcp.example/", "https://api.example.com/v1?x=1",
                                       "urn+x.y-z://thing"};
    for (size_t i = 0; i < TK_NELEM(good); i++)
        if (!tk_oauth_token_resource_check(good[i], &e)) FAILF("%s refused: %s", good[i], e.msg);
    static const char *const bad[] = {
        "",     "mcp.example", "https://x/#frag", "https://x/ y",         "1http://x",   "+://x",
        "://x", "ht tp://x",   "https://x/\x7f",  "https://caf\xc3\xa9/", "https://x/\n"};
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (tk_oauth_token_resource_check(bad[i], &e) || strcmp(e.code, "invalid_target") != 0)
            FAILF("bad resource %zu accepted", i);
    char longr[TK_OAUTH_URI_MAX + 8] = "https://x/";
    memset(longr + 10, 'a', sizeof longr - 11);
    longr[sizeof longr - 1] = '\0';
    CHECK(!tk_oauth_token_resource_check(longr, &e));
    CHECK(strstr(e.msg, "1 to 2047 bytes"));
}

/* ---- the revocation set ---- */

void test_oauth_grants_revset(void)
{
    struct tk_revset *s = tk_revset_new();
    int64_t now = 1000000;
    tk_revset_add(s, "jti", "abc", now + 10);
    CHECK(tk_revset_has(s, "jti", "abc", now));
    CHECK(!tk_revset_has(s, "family", "abc", now)); /* kinds apart */
    CHECK(!tk_revset_has(s, "jti", "abd", now));
    CHECK(!tk_revset_has(s, "jti", "abc", now + 11)); /* expired: no longer matters */
    tk_revset_add(s, "jti", "abc", now + 5);          /* an earlier expiry does not shorten */
    CHECK(tk_revset_has(s, "jti", "abc", now + 8));
    tk_revset_add(s, "jti", "abc", now + 100); /* a later one extends */
    CHECK(tk_revset_has(s, "jti", "abc", now + 50));
    CHECK_EQ_INT(tk_revset_size(s), 1);
    /* hostile values: empty, NULL, too long are ignored */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tk_revset_add(s, "jti", big, now + 10);
    tk_revset_add(s, "jti", "", now + 10);
    tk_revset_add(s, "jti", NULL, now + 10);
    CHECK(!tk_revset_has(s, "jti", big, now));
    CHECK(!tk_revset_has(s, "jti", "", now));
    CHECK_EQ_INT(tk_revset_size(s), 1);
    /* growth keeps every entry; purge drops the expired ones */
    char key[40];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "fam-%d", i);
        tk_revset_add(s, "family", key, i % 2 ? now + 1000 : now - 1);
    }
    CHECK_EQ_INT(tk_revset_size(s), 5001);
    int missing = 0;
    for (int i = 1; i < 5000; i += 2) {
        snprintf(key, sizeof key, "fam-%d", i);
        if (!tk_revset_has(s, "family", key, now)) missing++;
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(tk_revset_purge(s, now), 2500);
    CHECK_EQ_INT(tk_revset_size(s), 2501);
    CHECK(tk_revset_has(s, "family", "fam-4999", now));
    CHECK(!tk_revset_has(s, "family", "fam-4998", now - 10)); /* purged */
    tk_revset_free(s);
    tk_revset_free(NULL);
}

/* ---- store fixtures ---- */

struct gfx {
    struct tk_keyring *k;
    char tenant[TK_UUID_LEN + 1];
    char client[TK_UUID_LEN + 1], other[TK_UUID_LEN + 1];
    struct tk_oauth_flow flow;
};

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

static bool mk_client(struct tk_db *db, const char *tenant, const char *client_id,
                      char id[TK_UUID_LEN + 1])
{
    struct tk_err e;
    tk_uuid7(id);
    return CHECK_OK(
        tk_db_exec(db,
                   "INSERT INTO oauth_clients (id, tenant_id, client_id, name, client_type, "
                   "application_type, token_endpoint_auth_method, redirect_uris, grant_types, "
                   "scopes, default_scopes, status, origin, created_at, updated_at) VALUES "
                   "(?, ?, ?, 'c', 'public', 'web', 'none', '[\"https://x/cb\"]', "
                   "'[\"authorization_code\",\"refresh_token\"]', '[\"a\",\"b\"]', '[\"a\"]', "
                   "'active', 'operator', 0, 0)",
                   TK_ARGS(TK_TEXT(id), TK_TEXT(tenant), TK_TEXT(client_id)), NULL, &e),
        &e);
}

static bool mk_flow(struct tk_db *db, struct gfx *g)
{
    struct tk_err e;
    struct tk_oauth_flow *f = &g->flow;
    memset(f, 0, sizeof *f);
    tk_uuid7(f->id);
    memcpy(f->tenant_id, g->tenant, sizeof f->tenant_id);
    memcpy(f->oauth_client_id, g->client, sizeof f->oauth_client_id);
    return CHECK_OK(tk_db_exec(db,
                               "INSERT INTO oauth_flows (id, tenant_id, oauth_client_id, "
                               "client_id, redirect_uri, scopes, stage, status, created_at, "
                               "updated_at) VALUES (?, ?, ?, 'cid-1', 'https://x/cb', "
                               "'[\"a\"]', 'consent', 'active', 0, 0)",
                               TK_ARGS(TK_TEXT(f->id), TK_TEXT(g->tenant), TK_TEXT(g->client)),
                               NULL, &e),
                    &e);
}

static bool setup(struct fx *f, struct tk_db *db, struct gfx *g)
{
    struct tk_err e;
    memset(g, 0, sizeof *g);
    if (!open_keyring(f->dir, db, &g->k)) return false;
    if (!CHECK_OK(tk_tenant_default(db, g->tenant, &e), &e)) return false;
    return mk_client(db, g->tenant, "cid-1", g->client) &&
           mk_client(db, g->tenant, "cid-2", g->other) && mk_flow(db, g);
}

static bool issue_code(struct tk_db *db, struct gfx *g, char code[TK_ISSUED_MAX])
{
    struct tk_err e;
    return CHECK_OK(tk_oauth_code_issue(db, g->k, &g->flow, code, &e), &e);
}

/* Redeem in a transaction of its own (committed whatever the outcome, as
 * the handler does for replays; refusals roll back). */
static tk_rc redeem(struct tk_db *db, struct gfx *g, const char *code, const char *client,
                    int64_t now, struct tk_oauth_code *oc, struct tk_err *e)
{
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_oauth_code_redeem(db, g->k, code, strlen(code), client, now, 3600, oc, e);
    struct tk_err ce;
    if (rc == TK_OK || rc == TK_ECONFLICT) {
        if (tk_db_commit(db, &ce) != TK_OK) FAILF("commit: %s", ce.msg);
    } else {
        tk_db_rollback(db);
    }
    return rc;
}

static int64_t count_of(struct tk_db *db, const char *sql, const char *arg)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t n = -1;
    if (CHECK_OK(tk_db_exec(db, sql, TK_ARGS(TK_TEXT(arg)), &r, &e), &e)) n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

void test_oauth_grants_codes(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct gfx g;
    struct tk_err e;
    struct tk_oauth_code oc;
    char code[TK_ISSUED_MAX];
    if (!setup(f, db, &g)) goto out;
    CHECK_EQ_INT(tk_oauth_code_ttl(), TK_OAUTH_CODE_TTL);

    /* issued: the store has a hash, never the code; 60 s of life */
    if (!issue_code(db, &g, code)) goto out;
    CHECK(!strncmp(code, "tka_", 4));
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT * FROM oauth_codes", NULL, 0, &r, &e), &e))
        for (int col = 0; col < tk_rows_columns(r); col++) {
            const char *v = tk_rows_text(r, 0, col);
            if (v && strstr(v, code + 4)) FAILF("column %d holds the code", col);
        }
    tk_rows_free(r);
    int64_t now = tk_now_ms();

    /* another client: refused, the code stays usable */
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, code, g.other, now, &oc, &e), TK_EINVAL);
    CHECK_EQ_STR(e.code, "invalid_grant");
    CHECK(strstr(e.msg, "another client"));
    CHECK_EQ_STR(oc.flow_id, g.flow.id); /* for the flow trace */

    /* redeemed: a family, used_at */
    tk_err_clear(&e);
    if (!CHECK_OK(redeem(db, &g, code, g.client, now, &oc, &e), &e)) goto out;
    CHECK_EQ_STR(oc.flow_id, g.flow.id);
    CHECK_EQ_STR(oc.tenant_id, g.tenant);
    CHECK(tk_uuid_valid(oc.family_id));
    CHECK_EQ_INT(oc.used_at, now);
    char family[TK_UUID_LEN + 1];
    memcpy(family, oc.family_id, sizeof family);
    /* a refresh token of the family, as the handler issues it */
    struct tk_oauth_refresh rt = {0};
    char rtok[TK_ISSUED_MAX];
    memcpy(rt.tenant_id, g.tenant, sizeof rt.tenant_id);
    memcpy(rt.family_id, family, sizeof rt.family_id);
    memcpy(rt.oauth_client_id, g.client, sizeof rt.oauth_client_id);
    memcpy(rt.flow_id, g.flow.id, sizeof rt.flow_id);
    if (!CHECK_OK(tk_oauth_refresh_issue(db, g.k, &rt, 0, now, rtok, &e), &e)) goto out;

    /* replayed: the family is revoked, the sentence names when it was used */
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, code, g.client, now + 5000, &oc, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "invalid_grant");
    char at[40], want[200];
    tk_time_fmt(now, at, sizeof at);
    snprintf(want, sizeof want, "code already used at %.8s; tokens issued from it were revoked",
             at + 11);
    CHECK_EQ_STR(e.msg, want);
    CHECK_EQ_INT(count_of(db,
                          "SELECT COUNT(*) FROM oauth_refresh_tokens WHERE family_id = ? "
                          "AND revoked_at IS NOT NULL",
                          family),
                 1);
    CHECK_EQ_INT(count_of(db,
                          "SELECT COUNT(*) FROM oauth_revocations WHERE what = 'family' "
                          "AND value = ?",
                          family),
                 1);
    struct tk_oauth_refresh found = {0};
    bool active = true;
    CHECK_OK(tk_oauth_refresh_find(db, g.k, rtok, strlen(rtok), now, &found, &active, &e), &e);
    CHECK(!active);
    tk_oauth_refresh_clear(&found);

    /* expired: "code expired N s ago" */
    if (!issue_code(db, &g, code)) goto out;
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, code, g.client, tk_now_ms() + 74500, &oc, &e), TK_EINVAL);
    CHECK_EQ_STR(e.msg, "code expired 14 s ago");
    /* with a shorter ttl */
    tk_oauth_code_ttl_set(1);
    CHECK_EQ_INT(tk_oauth_code_ttl(), 1);
    tk_oauth_code_ttl_set(0); /* out of range: ignored */
    tk_oauth_code_ttl_set(601);
    CHECK_EQ_INT(tk_oauth_code_ttl(), 1);
    if (!issue_code(db, &g, code)) goto out;
    tk_oauth_code_ttl_set(TK_OAUTH_CODE_TTL);
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, code, g.client, tk_now_ms() + 3100, &oc, &e), TK_EINVAL);
    CHECK(!strncmp(e.msg, "code expired ", 13));

    /* malformed and unknown: never echoed */
    char bad[TK_ISSUED_MAX];
    snprintf(bad, sizeof bad, "%s", code);
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, bad, g.client, now, &oc, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "malformed"));
    CHECK(!strstr(e.msg, bad + 4));
    char unknown[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_CODE, unknown);
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, unknown, g.client, now, &oc, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "unknown"));
    tk_err_clear(&e);
    CHECK_EQ_INT(redeem(db, &g, rtok, g.client, now, &oc, &e), TK_EINVAL); /* a tkr_ */
    CHECK(strstr(e.msg, "malformed"));
    CHECK_EQ_INT(redeem(db, &g, "", g.client, now, &oc, &e), TK_EINVAL);
out:
    tk_oauth_code_ttl_set(TK_OAUTH_CODE_TTL);
    tk_keyring_free(g.k);
    tk_store_put(db);
}

/* ---- two connections, one code ---- */

struct racer {
    struct fx *f;
    struct gfx *g;
    const char *code;
    pthread_barrier_t *go;
    tk_rc rc;
    char msg[320];
};

static void *race(void *arg)
{
    struct racer *x = arg;
    struct tk_err e;
    tk_err_clear(&e);
    struct tk_db *db = tk_store_get(x->f->st, &e);
    pthread_barrier_wait(x->go);
    if (!db) {
        x->rc = TK_EUNAVAIL;
        return NULL;
    }
    struct tk_oauth_code oc;
    x->rc = redeem(db, x->g, x->code, x->g->client, tk_now_ms(), &oc, &e);
    snprintf(x->msg, sizeof x->msg, "%s", e.msg);
    tk_store_put(db);
    return NULL;
}

void test_oauth_grants_code_race(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct gfx g;
    if (!setup(f, db, &g)) goto out;
    enum { ROUNDS = 12 };
    int wins = 0, conflicts = 0, other = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char code[TK_ISSUED_MAX];
        if (!issue_code(db, &g, code)) break;
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct racer a = {.f = f, .g = &g, .code = code, .go = &go};
        struct racer b = a;
        pthread_t ta, tb;
        pthread_create(&ta, NULL, race, &a);
        pthread_create(&tb, NULL, race, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        int w = (a.rc == TK_OK) + (b.rc == TK_OK);
        int c = (a.rc == TK_ECONFLICT) + (b.rc == TK_ECONFLICT);
        if (w != 1 || c != 1) {
            FAILF("round %d: %d winners, %d replays (%s / %s)", round, w, c, a.msg, b.msg);
            other++;
        }
        const char *loser = a.rc == TK_OK ? b.msg : a.msg;
        if (c == 1 && !strstr(loser, "code already used at")) FAILF("loser said: %s", loser);
        wins += w;
        conflicts += c;
    }
    CHECK_EQ_INT(wins, ROUNDS);
    CHECK_EQ_INT(conflicts, ROUNDS);
    CHECK_EQ_INT(other, 0);
out:
    tk_keyring_free(g.k);
    tk_store_put(db);
}

/* ---- refresh tokens ---- */

static tk_rc refresh(struct tk_db *db, struct gfx *g, const char *tok, const char *client,
                     int64_t now, bool rotate, int grace, struct tk_oauth_refresh *out,
                     char next[TK_ISSUED_MAX], struct tk_err *e)
{
    tk_err_clear(e);
    tk_rc rc = tk_db_begin(db, e);
    if (rc != TK_OK) return rc;
    rc = tk_oauth_refresh_redeem(db, g->k, tok, strlen(tok), client, now, rotate, grace, 3600, 3600,
                                 out, next, e);
    struct tk_err ce;
    if (rc == TK_OK || rc == TK_ECONFLICT) {
        if (tk_db_commit(db, &ce) != TK_OK) FAILF("commit: %s", ce.msg);
    } else {
        tk_db_rollback(db);
    }
    return rc;
}

void test_oauth_grants_refresh(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct gfx g;
    struct tk_err e;
    struct tk_oauth_refresh rt = {0}, out = {0};
    char t1[TK_ISSUED_MAX], t2[TK_ISSUED_MAX], t3[TK_ISSUED_MAX], sib[TK_ISSUED_MAX];
    if (!setup(f, db, &g)) goto out;
    int64_t now = tk_now_ms();
    memcpy(rt.tenant_id, g.tenant, sizeof rt.tenant_id);
    tk_uuid7(rt.family_id);
    memcpy(rt.oauth_client_id, g.client, sizeof rt.oauth_client_id);
    memcpy(rt.flow_id, g.flow.id, sizeof rt.flow_id);
    snprintf(rt.resource, sizeof rt.resource, "https://mcp.example/");
    rt.scopes = json_pack("[s,s]", "a", "b");
    if (!CHECK_OK(tk_oauth_refresh_issue(db, g.k, &rt, 3600, now, t1, &e), &e)) goto out;
    CHECK(!strncmp(t1, "tkr_", 4));
    CHECK_EQ_INT(rt.expires_at, now + 3600 * 1000);

    /* rotation: a successor of the same family, scopes and resource */
    if (!CHECK_OK(refresh(db, &g, t1, g.client, now + 1000, true, 0, &out, t2, &e), &e)) goto out;
    CHECK(!strncmp(t2, "tkr_", 4) && strcmp(t1, t2) != 0);
    CHECK_EQ_STR(out.family_id, rt.family_id);
    CHECK_EQ_STR(out.resource, "https://mcp.example/");
    CHECK_EQ_INT(json_array_size(out.scopes), 2);
    CHECK(strcmp(out.id, rt.id) != 0); /* the successor's id */
    bool active = false;
    struct tk_oauth_refresh found = {0};
    CHECK_OK(tk_oauth_refresh_find(db, g.k, t1, strlen(t1), now + 1000, &found, &active, &e), &e);
    CHECK(!active); /* rotated */
    CHECK_OK(tk_oauth_refresh_find(db, g.k, t2, strlen(t2), now + 1000, &found, &active, &e), &e);
    CHECK(active);
    CHECK_EQ_STR(found.parent_id, rt.id);

    /* another client: refused, nothing revoked */
    CHECK_EQ_INT(refresh(db, &g, t2, g.other, now + 1500, true, 0, &out, t3, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "another client"));

    /* reuse inside the grace: a sibling, the successor stays valid */
    CHECK_OK(refresh(db, &g, t1, g.client, now + 2000, true, 5, &out, sib, &e), &e);
    CHECK(!strncmp(sib, "tkr_", 4) && strcmp(sib, t2) != 0);
    CHECK_OK(tk_oauth_refresh_find(db, g.k, t2, strlen(t2), now + 2000, &found, &active, &e), &e);
    CHECK(active);
    CHECK_OK(tk_oauth_refresh_find(db, g.k, sib, strlen(sib), now + 2000, &found, &active, &e), &e);
    CHECK(active);

    /* reuse after the grace: the family is revoked, successor and sibling too */
    CHECK_EQ_INT(refresh(db, &g, t1, g.client, now + 7000, true, 5, &out, t3, &e), TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "invalid_grant");
    CHECK(strstr(e.msg, "refresh token was already rotated at "));
    CHECK(strstr(e.msg, "; its family was revoked"));
    CHECK_EQ_STR(t3, "");
    CHECK_EQ_INT(refresh(db, &g, t2, g.client, now + 7100, true, 5, &out, t3, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "was revoked at"));
    CHECK_EQ_INT(refresh(db, &g, sib, g.client, now + 7100, true, 5, &out, t3, &e), TK_EINVAL);
    CHECK_EQ_INT(
        count_of(db, "SELECT COUNT(*) FROM oauth_revocations WHERE value = ?", rt.family_id), 1);
    /* with grace 0, reuse a moment after the rotation revokes too */
    tk_oauth_refresh_clear(&rt);
    memset(&rt, 0, sizeof rt);
    memcpy(rt.tenant_id, g.tenant, sizeof rt.tenant_id);
    tk_uuid7(rt.family_id);
    memcpy(rt.oauth_client_id, g.client, sizeof rt.oauth_client_id);
    rt.scopes = json_pack("[s]", "a");
    CHECK_OK(tk_oauth_refresh_issue(db, g.k, &rt, 0, now, t1, &e), &e);
    CHECK_EQ_INT(rt.expires_at, 0); /* ttl 0: no expiry */
    CHECK_OK(refresh(db, &g, t1, g.client, now, true, 0, &out, t2, &e), &e);
    CHECK_EQ_INT(refresh(db, &g, t1, g.client, now + 1, true, 0, &out, t3, &e), TK_ECONFLICT);

    /* no rotation (a confidential client's choice): the same token again */
    tk_oauth_refresh_clear(&rt);
    memset(&rt, 0, sizeof rt);
    memcpy(rt.tenant_id, g.tenant, sizeof rt.tenant_id);
    tk_uuid7(rt.family_id);
    memcpy(rt.oauth_client_id, g.client, sizeof rt.oauth_client_id);
    CHECK_OK(tk_oauth_refresh_issue(db, g.k, &rt, 60, now, t1, &e), &e);
    CHECK_OK(refresh(db, &g, t1, g.client, now + 10, false, 0, &out, t2, &e), &e);
    CHECK_EQ_STR(t2, "");
    CHECK_OK(refresh(db, &g, t1, g.client, now + 20, false, 0, &out, t2, &e), &e);
    CHECK_EQ_INT(json_array_size(out.scopes), 0);
    /* expired */
    CHECK_EQ_INT(refresh(db, &g, t1, g.client, now + 61000, false, 0, &out, t2, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "expired at"));
    /* malformed, unknown */
    CHECK_EQ_INT(refresh(db, &g, "tkr_nope", g.client, now, true, 0, &out, t2, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "malformed"));
    tk_issued_new(TK_KIND_REFRESH, t3);
    CHECK_EQ_INT(refresh(db, &g, t3, g.client, now, true, 0, &out, t2, &e), TK_EINVAL);
    CHECK(strstr(e.msg, "unknown"));
    CHECK_EQ_INT(tk_oauth_refresh_find(db, g.k, t3, strlen(t3), now, &found, &active, &e),
                 TK_ENOTFOUND);
    tk_oauth_refresh_clear(&found);

    /* the store holds hashes only */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT * FROM oauth_refresh_tokens", NULL, 0, &r, &e), &e))
        for (int i = 0; i < tk_rows_count(r); i++)
            for (int col = 0; col < tk_rows_columns(r); col++) {
                const char *v = tk_rows_text(r, i, col);
                if (v && strstr(v, t1 + 8)) FAILF("column %d holds a token", col);
            }
    tk_rows_free(r);
out:
    tk_oauth_refresh_clear(&rt);
    tk_oauth_refresh_clear(&out);
    tk_keyring_free(g.k);
    tk_store_put(db);
}

void test_oauth_grants_revocations(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct gfx g;
    struct tk_err e;
    struct tk_rows *r = NULL;
    if (!setup(f, db, &g)) goto out;
    int64_t now = tk_now_ms();
    CHECK_OK(tk_oauth_revoke_jti(db, g.tenant, "jti-1", now, now + 1000, &e), &e);
    CHECK_OK(tk_oauth_revoke_family(db, g.tenant, "fam-1", now, now - 1, &e), &e);
    CHECK_OK(tk_oauth_revoke_jti(db, g.tenant, "jti-2", now, now + 5000, &e), &e);
    if (!CHECK_OK(tk_oauth_revocations_read(db, "", 2, &r, &e), &e)) goto out;
    CHECK_EQ_INT(tk_rows_count(r), 2);
    CHECK_EQ_STR(tk_rows_text(r, 0, 1), "jti");
    CHECK_EQ_STR(tk_rows_text(r, 0, 2), "jti-1");
    CHECK_EQ_STR(tk_rows_text(r, 1, 1), "family");
    CHECK_EQ_INT(tk_rows_int(r, 0, 3), now + 1000);
    char cursor[TK_UUID_LEN + 1];
    snprintf(cursor, sizeof cursor, "%s", tk_rows_text(r, 1, 0));
    tk_rows_free(r);
    r = NULL;
    if (!CHECK_OK(tk_oauth_revocations_read(db, cursor, 10, &r, &e), &e)) goto out;
    CHECK_EQ_INT(tk_rows_count(r), 1);
    CHECK_EQ_STR(tk_rows_text(r, 0, 2), "jti-2");
    tk_rows_free(r);
    r = NULL;
    /* purge: the expired family row goes; expired codes a day later */
    char code[TK_ISSUED_MAX];
    if (!issue_code(db, &g, code)) goto out;
    int64_t n = 0;
    CHECK_OK(tk_oauth_grants_purge(db, now, &n, &e), &e);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(
        count_of(db, "SELECT COUNT(*) FROM oauth_revocations WHERE tenant_id = ?", g.tenant), 2);
    CHECK_OK(tk_oauth_grants_purge(db, now + 2 * 86400LL * 1000, &n, &e), &e);
    CHECK_EQ_INT(n, 3); /* two revocations and the code */
out:
    tk_rows_free(r);
    tk_keyring_free(g.k);
    tk_store_put(db);
}
