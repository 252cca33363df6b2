/*
 * oauth_token_api.c: POST /oauth2/token, /oauth2/introspect, /oauth2/revoke
 * and the RFC 8414 metadata (issue 15 items 4 and 5).
 *
 * The token endpoint authenticates the client (oauth_clients_api.c), then
 * runs one grant. authorization_code and refresh_token write in one
 * transaction: the code consumed or the refresh token rotated, the new
 * refresh token, the flow's stages, and the access token signed before the
 * commit, so that a failure leaves the code or token usable. A replay (a
 * used code, a rotated refresh token past oauth_refresh_grace) revokes the
 * refresh family in the store and commits that before answering
 * invalid_grant. client_credentials touches no store at all.
 *
 * Access tokens are JWTs (RFC 9068), never stored. Each carries the
 * tenant ("tid") and, when issued from a code or a refresh token, the
 * refresh family ("fid"). Revoking an access token records its jti,
 * revoking a family records the family, both as rows of oauth_revocations
 * that every node polls (every 250 ms) into its in-memory revocation set
 * (revset.c); introspection of an access token checks the signature, the
 * expiry and that set, with no store read.
 */
#include "api.h"

#include "../common/log.h"
#include "../events/events.h"
#include "../oauth/authorize.h"

#include <math.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REVSET_POLL_MS 250
#define REVSET_PURGE_MS 60000
#define REVSET_OVERLAP_MS 5000 /* rows of other nodes committed late: read again */
#define REVSET_BATCH 1000

enum { G_CODE, G_REFRESH, G_CLIENT, G_OTHER, G_N };
static const char *const grant_names[G_N] = {"authorization_code", "refresh_token",
                                             "client_credentials", "other"};
enum {
    O_OK,
    O_INVALID_REQUEST,
    O_INVALID_CLIENT,
    O_INVALID_GRANT,
    O_UNAUTHORIZED_CLIENT,
    O_UNSUPPORTED_GRANT_TYPE,
    O_INVALID_SCOPE,
    O_ERROR,
    O_N
};
static const char *const outcome_names[O_N] = {"ok",
                                               "invalid_request",
                                               "invalid_client",
                                               "invalid_grant",
                                               "unauthorized_client",
                                               "unsupported_grant_type",
                                               "invalid_scope",
                                               "error"};
enum { R_REVOKED, R_UNKNOWN, R_REFUSED, R_ERROR, R_N };
static const char *const revoke_names[R_N] = {"revoked", "unknown", "refused", "error"};

struct tk_oauth_revset {
    struct tk_revset *set;
    struct tk_worker poll;
    struct tk_app *app;
    char cursor[TK_UUID_LEN + 1]; /* the newest row seen (poller thread only) */
    int64_t purged_ms;            /* monotonic: the last purge */
    struct tk_metric *m_tokens, *m_introspections, *m_revocations;
    struct vcache *verified; /* access tokens whose signature was checked */
};

/* ---- small helpers ---- */

static struct tk_app *app_of(struct tk_req *r)
{
    return r->app;
}

static void count_token(struct tk_app *app, int g, int o)
{
    if (!app->oauth_revset) return;
    size_t pos[2] = {(size_t)g, (size_t)o};
    tk_metric_inc(app->oauth_revset->m_tokens, tk_metric_index(app->oauth_revset->m_tokens, pos));
}

static int outcome_of(const char *error)
{
    for (int i = 1; i < O_N; i++)
        if (!strcmp(outcome_names[i], error)) return i;
    return O_ERROR;
}

/* A refusal as an event (kind oauth, subject the client; coalesced per
 * second by action, error, client and address), best effort. */
static void refusal_event(struct tk_req *r, const char *tenant_id, const char *client_row,
                          const char *client_id, const char *action, const char *error,
                          const char *reason, json_t *extra)
{
    struct tk_app *app = app_of(r);
    char remote[64];
    tk_req_remote(r, remote, sizeof remote);
    json_t *d = extra ? json_incref(extra) : json_object();
    json_object_set_new(d, "error", json_string(error));
    if (client_id && client_id[0])
        json_object_set_new(d, "client_id", json_stringn(client_id, strnlen(client_id, 200)));
    json_object_set_new(d, "remote_addr", json_string(remote));
    char msg[600];
    snprintf(msg, sizeof msg, "%s refused (%s): %s", action, error, reason);
    struct tk_event ev = {.tenant_id = tenant_id && tenant_id[0] ? tenant_id : app->default_tenant,
                          .trace_id = r->request_id,
                          .kind = "oauth",
                          .source = "api",
                          .action = action,
                          .outcome = "denied",
                          .subject_type = client_row && client_row[0] ? "oauth_client" : NULL,
                          .subject_id = client_row && client_row[0] ? client_row : NULL,
                          .message = msg,
                          .detail = d,
                          .latency_us = -1};
    char key[320];
    snprintf(key, sizeof key, "%s %s %s", error, client_row ? client_row : "", remote);
    struct tk_err e;
    if (!tk_event_coalesce(&ev, key, 1000) && tk_event_post(&ev, &e) != TK_OK)
        tk_debug("oauth: refusal event not recorded: %s", e.msg);
    json_decref(d);
}

/* Parse the form body: a malformed one is an RFC 6749 invalid_request. */
static struct tk_form *form_of(struct tk_req *r)
{
    /* RFC 6749 §3.2: application/x-www-form-urlencoded, parameters maybe */
    const char *ct = tk_req_header(r, "Content-Type");
    static const char form_type[] = "application/x-www-form-urlencoded";
    size_t n = sizeof form_type - 1;
    if (!ct || strncasecmp(ct, form_type, n) != 0 ||
        (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')) {
        char msg[200];
        snprintf(msg, sizeof msg, "the body must be sent as %s (RFC 6749), not %.60s", form_type,
                 ct ? ct : "without a Content-Type");
        tk_oauth_reply_error(r, 400, "invalid_request", msg);
        return NULL;
    }
    struct tk_form *f = tk_pool_alloc(r->pool, sizeof *f);
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_form_parse(r->body, r->body_len, r->pool, f, &e) != TK_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s%s%s", e.field[0] ? e.field : "", e.field[0] ? ": " : "",
                 e.msg);
        tk_oauth_reply_error(r, 400, "invalid_request", msg);
        return NULL;
    }
    return f;
}

/* A random jti: 128 bits, 32 hex chars. */
static void new_jti(char out[33])
{
    unsigned char b[16];
    tk_random(b, sizeof b);
    tk_hex(b, sizeof b, out);
}

/* The access token of a grant, signed; *jwt malloc'd. */
struct at_args {
    const char *sub, *aud, *client_id, *tenant_id, *family_id;
    json_t *scopes;
};

static tk_rc access_token(struct tk_app *app, const struct at_args *a, char **jwt, int *ttl,
                          char **scope_out, struct tk_err *e)
{
    int64_t now = tk_now_ms() / 1000;
    *ttl = app->cfg->oauth_access_token_ttl;
    char jti[33];
    new_jti(jti);
    char *scope = tk_oauth_scope_join(a->scopes);
    json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "iss",
                          tk_api_public_url(app), "sub", a->sub, "aud", a->aud, "exp",
                          (json_int_t)(now + *ttl), "iat", (json_int_t)now, "jti", jti, "client_id",
                          a->client_id, "scope", scope, "tid", a->tenant_id);
    if (a->family_id && a->family_id[0]) json_object_set_new(c, "fid", json_string(a->family_id));
    tk_rc rc = tk_api_oauth_sign(app, "at+jwt", c, jwt, e);
    json_decref(c);
    if (rc == TK_OK)
        *scope_out = scope;
    else
        free(scope);
    return rc;
}

static void reply_tokens(struct tk_req *r, const char *jwt, int ttl, const char *refresh,
                         const char *scope)
{
    json_t *b = json_pack("{s:s, s:s, s:i, s:s}", "access_token", jwt, "token_type", "Bearer",
                          "expires_in", ttl, "scope", scope);
    if (refresh && refresh[0]) json_object_set_new(b, "refresh_token", json_string(refresh));
    tk_oauth_reply_json(r, 200, b);
}

/* A server-side failure (store, signing) after the client was known. */
static void reply_server_error(struct tk_req *r, const struct tk_err *e)
{
    if (e->rc == TK_EUNAVAIL)
        tk_oauth_reply_error(r, 503, "temporarily_unavailable", e->msg);
    else
        tk_oauth_reply_error(r, 500, "server_error", e->msg);
}

/* ---- POST /oauth2/token ---- */

struct grant_ctx {
    struct tk_req *r;
    struct tk_app *app;
    const struct tk_form *f;
    struct tk_oauth_client *c;
};

static void grant_refused(struct grant_ctx *g, int grant, const char *error, const char *reason,
                          json_t *extra)
{
    refusal_event(g->r, g->c->tenant_id, g->c->id, g->c->client_id, "token", error, reason, extra);
    count_token(g->app, grant, outcome_of(error));
    tk_oauth_reply_error(g->r, 400, error, reason);
}

static void grant_code(struct grant_ctx *g)
{
    struct tk_req *r = g->r;
    struct tk_app *app = g->app;
    const char *code = tk_form_get(g->f, "code");
    const char *redirect_uri = tk_form_get(g->f, "redirect_uri");
    const char *verifier = tk_form_get(g->f, "code_verifier");
    if (!code || !code[0]) {
        grant_refused(g, G_CODE, "invalid_request", "code is missing", NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    tk_err_clear(&e);
    struct tk_oauth_code oc;
    struct tk_oauth_flow fl = {0};
    struct tk_oauth_refresh rt = {0};
    char refresh[TK_ISSUED_MAX] = "", *jwt = NULL, *scope = NULL;
    int ttl = 0;
    int64_t now = tk_now_ms();
    tk_rc rc = tk_db_begin(db, &e);
    if (rc != TK_OK) goto fail;
    rc = tk_oauth_code_redeem(db, app->keyring, code, strlen(code), g->c->id, now,
                              app->cfg->oauth_access_token_ttl, &oc, &e);
    if (rc == TK_ECONFLICT) { /* a replay: the family's revocation commits */
        struct tk_err ce;
        if (tk_db_commit(db, &ce) == TK_OK) {
            tk_revset_add(app->oauth_revset->set, "family", oc.family_id,
                          now + (int64_t)app->cfg->oauth_access_token_ttl * 1000);
        } else {
            tk_db_rollback(db);
        }
        tk_api_oauth_flow_failed(r, oc.tenant_id, oc.flow_id, "token_exchanged", "invalid_grant",
                                 e.msg);
        count_token(app, G_CODE, O_INVALID_GRANT);
        tk_oauth_reply_error(r, 400, "invalid_grant", e.msg);
        return;
    }
    if (rc == TK_EINVAL) goto refused;
    if (rc == TK_OK) rc = tk_oauth_flow_get(db, oc.tenant_id, oc.flow_id, &fl, &e);
    if (rc != TK_OK) goto fail;
    if (redirect_uri && strcmp(redirect_uri, fl.redirect_uri) != 0) {
        tk_err_set(&e, TK_EINVAL, "invalid_grant",
                   "redirect_uri '%.300s' does not match the authorization request's '%.300s'",
                   redirect_uri, fl.redirect_uri);
        goto refused;
    }
    rc = tk_oauth_pkce_verify(fl.code_challenge, fl.code_challenge_method, verifier, &e);
    if (rc != TK_OK) goto refused;
    rc = tk_api_oauth_flow_stage(r, db, oc.tenant_id, oc.flow_id, "token_exchanged", NULL, &e);
    if (rc == TK_OK && tk_oauth_strs_has(g->c->grant_types, "refresh_token")) {
        memcpy(rt.tenant_id, oc.tenant_id, sizeof rt.tenant_id);
        memcpy(rt.family_id, oc.family_id, sizeof rt.family_id);
        memcpy(rt.flow_id, oc.flow_id, sizeof rt.flow_id);
        memcpy(rt.oauth_client_id, g->c->id, sizeof rt.oauth_client_id);
        memcpy(rt.user_id, fl.user_id, sizeof rt.user_id);
        memcpy(rt.resource, fl.resource, sizeof rt.resource);
        rt.scopes = fl.scopes; /* borrowed */
        rc = tk_oauth_refresh_issue(db, app->keyring, &rt, app->cfg->oauth_refresh_token_ttl, now,
                                    refresh, &e);
        rt.scopes = NULL;
    }
    if (rc == TK_OK) {
        struct at_args a = {.sub = fl.user_id[0] ? fl.user_id : g->c->client_id,
                            .aud = fl.resource[0] ? fl.resource : g->c->client_id,
                            .client_id = g->c->client_id,
                            .tenant_id = oc.tenant_id,
                            .family_id = oc.family_id,
                            .scopes = fl.scopes};
        rc = access_token(app, &a, &jwt, &ttl, &scope, &e);
    }
    if (rc == TK_OK)
        rc = tk_api_oauth_flow_stage(r, db, oc.tenant_id, oc.flow_id, "token_issued", NULL, &e);
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) goto fail;
    count_token(app, G_CODE, O_OK);
    reply_tokens(r, jwt, ttl, refresh, scope);
    goto out;
refused:
    tk_db_rollback(db);
    if (oc.flow_id[0])
        tk_api_oauth_flow_failed(r, oc.tenant_id, oc.flow_id, "token_exchanged", e.code, e.msg);
    else
        refusal_event(r, g->c->tenant_id, g->c->id, g->c->client_id, "token", e.code, e.msg, NULL);
    count_token(app, G_CODE, outcome_of(e.code));
    tk_oauth_reply_error(r, 400, e.code, e.msg);
    goto out;
fail:
    if (tk_db_in_tx(db)) tk_db_rollback(db);
    count_token(app, G_CODE, O_ERROR);
    reply_server_error(r, &e);
out:
    tk_wipe(refresh, sizeof refresh);
    free(jwt);
    free(scope);
    tk_oauth_flow_clear(&fl);
}

static void grant_refresh(struct grant_ctx *g)
{
    struct tk_req *r = g->r;
    struct tk_app *app = g->app;
    const char *tok = tk_form_get(g->f, "refresh_token");
    const char *scope_p = tk_form_get(g->f, "scope");
    struct tk_err e;
    tk_err_clear(&e);
    if (!tok || !tok[0]) {
        grant_refused(g, G_REFRESH, "invalid_request", "refresh_token is missing", NULL);
        return;
    }
    json_t *want = NULL;
    if (scope_p && !(want = tk_oauth_scope_parse(scope_p, &e))) {
        grant_refused(g, G_REFRESH, "invalid_scope", e.msg, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(want);
        return;
    }
    struct tk_oauth_refresh rt = {0};
    char next[TK_ISSUED_MAX] = "", *jwt = NULL, *scope = NULL;
    int ttl = 0;
    int64_t now = tk_now_ms();
    bool rotate = !g->c->confidential || g->c->rotate_refresh;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_oauth_refresh_redeem(db, app->keyring, tok, strlen(tok), g->c->id, now, rotate,
                                     app->cfg->oauth_refresh_grace,
                                     app->cfg->oauth_refresh_token_ttl,
                                     app->cfg->oauth_access_token_ttl, &rt, next, &e);
    if (rc == TK_ECONFLICT && !strcmp(e.code, "invalid_grant")) { /* reuse: revoked */
        struct tk_err ce;
        if (tk_db_commit(db, &ce) == TK_OK)
            tk_revset_add(app->oauth_revset->set, "family", rt.family_id,
                          now + (int64_t)app->cfg->oauth_access_token_ttl * 1000);
        else
            tk_db_rollback(db);
        json_t *d = json_pack("{s:s}", "family_id", rt.family_id);
        grant_refused(g, G_REFRESH, "invalid_grant", e.msg, d);
        json_decref(d);
        goto out;
    }
    if (rc == TK_EINVAL || rc == TK_ECONFLICT) {
        tk_db_rollback(db);
        grant_refused(g, G_REFRESH, "invalid_grant", e.msg, NULL);
        goto out;
    }
    if (rc != TK_OK) goto fail;
    if (want && json_array_size(want) &&
        !tk_oauth_scope_subset(want, rt.scopes, "this refresh token (narrowing only)", &e)) {
        tk_db_rollback(db);
        grant_refused(g, G_REFRESH, "invalid_scope", e.msg, NULL);
        goto out;
    }
    struct at_args a = {.sub = rt.user_id[0] ? rt.user_id : g->c->client_id,
                        .aud = rt.resource[0] ? rt.resource : g->c->client_id,
                        .client_id = g->c->client_id,
                        .tenant_id = rt.tenant_id,
                        .family_id = rt.family_id,
                        .scopes = want && json_array_size(want) ? want : rt.scopes};
    rc = access_token(app, &a, &jwt, &ttl, &scope, &e);
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) goto fail;
    count_token(app, G_REFRESH, O_OK);
    reply_tokens(r, jwt, ttl, next, scope);
    goto out;
fail:
    if (tk_db_in_tx(db)) tk_db_rollback(db);
    count_token(app, G_REFRESH, O_ERROR);
    reply_server_error(r, &e);
out:
    tk_wipe(next, sizeof next);
    free(jwt);
    free(scope);
    json_decref(want);
    tk_oauth_refresh_clear(&rt);
}

static void grant_client(struct grant_ctx *g)
{
    struct tk_app *app = g->app;
    struct tk_err e;
    tk_err_clear(&e);
    if (!g->c->confidential) {
        grant_refused(g, G_CLIENT, "unauthorized_client",
                      "client_credentials is for confidential clients only", NULL);
        return;
    }
    const char *scope_p = tk_form_get(g->f, "scope");
    const char *resource = tk_form_get(g->f, "resource");
    if (resource && !tk_oauth_token_resource_check(resource, &e)) {
        refusal_event(g->r, g->c->tenant_id, g->c->id, g->c->client_id, "token", e.code, e.msg,
                      NULL);
        count_token(app, G_CLIENT, O_INVALID_REQUEST);
        tk_oauth_reply_error(g->r, 400, e.code, e.msg);
        return;
    }
    json_t *want = NULL;
    if (scope_p && !(want = tk_oauth_scope_parse(scope_p, &e))) {
        grant_refused(g, G_CLIENT, "invalid_scope", e.msg, NULL);
        return;
    }
    if (!want || !json_array_size(want)) {
        json_decref(want);
        want = json_incref(g->c->default_scopes ? g->c->default_scopes : json_array());
    }
    if (!tk_oauth_scope_subset(want, g->c->scopes, "this client", &e)) {
        grant_refused(g, G_CLIENT, "invalid_scope", e.msg, NULL);
        json_decref(want);
        return;
    }
    char *jwt = NULL, *scope = NULL;
    int ttl = 0;
    struct at_args a = {.sub = g->c->client_id,
                        .aud = resource ? resource : g->c->client_id,
                        .client_id = g->c->client_id,
                        .tenant_id = g->c->tenant_id,
                        .family_id = NULL,
                        .scopes = want};
    tk_rc rc = access_token(app, &a, &jwt, &ttl, &scope, &e);
    json_decref(want);
    if (rc != TK_OK) {
        count_token(app, G_CLIENT, O_ERROR);
        reply_server_error(g->r, &e);
        return;
    }
    count_token(app, G_CLIENT, O_OK);
    reply_tokens(g->r, jwt, ttl, NULL, scope);
    free(jwt);
    free(scope);
}

/* The client of a request (HTTP Basic, client_secret_post or none): 1;
 * 0 when it was refused (replied, recorded); -1 when the request was
 * parked (its metadata document is fetched; the handler runs again). */
static int client_of(struct tk_req *r, const struct tk_form *f, const char *action,
                     struct tk_oauth_client *c)
{
    struct tk_err e;
    tk_err_clear(&e);
    memset(c, 0, sizeof *c);
    if (tk_api_oauth_client_auth(r, f, c, &e) == TK_OK) return 1;
    if (!strcmp(e.code, "parked")) {
        tk_oauth_client_clear(c);
        return -1;
    }
    const char *cid = tk_form_get(f, "client_id");
    refusal_event(r, c->tenant_id, c->id, c->client_id[0] ? c->client_id : cid, action,
                  "invalid_client", e.msg, NULL);
    tk_oauth_client_clear(c);
    return 0;
}

void tk_h_oauth_token(struct tk_req *r)
{
    struct tk_app *app = app_of(r);
    struct tk_form *f = form_of(r);
    if (!f) {
        count_token(app, G_OTHER, O_INVALID_REQUEST);
        return;
    }
    const char *gt = tk_form_get(f, "grant_type");
    if (!gt || !gt[0]) {
        count_token(app, G_OTHER, O_INVALID_REQUEST);
        tk_oauth_reply_error(r, 400, "invalid_request", "grant_type is missing");
        return;
    }
    int g = G_OTHER;
    for (int i = 0; i < G_OTHER; i++)
        if (!strcmp(gt, grant_names[i])) g = i;
    if (g == G_OTHER) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "grant_type '%.100s' is not supported; supported: authorization_code, "
                 "refresh_token, client_credentials",
                 gt);
        count_token(app, G_OTHER, O_UNSUPPORTED_GRANT_TYPE);
        tk_oauth_reply_error(r, 400, "unsupported_grant_type", msg);
        return;
    }
    struct tk_oauth_client c;
    int auth = client_of(r, f, "token", &c);
    if (auth == 0) count_token(app, g, O_INVALID_CLIENT);
    if (auth != 1) return;
    struct grant_ctx ctx = {.r = r, .app = app, .f = f, .c = &c};
    if (!tk_oauth_strs_has(c.grant_types, gt)) {
        char *al = tk_oauth_scope_join(c.grant_types), msg[700];
        snprintf(msg, sizeof msg, "client '%.200s' may not use grant_type %s; allowed: %.400s",
                 c.client_id, gt, al[0] ? al : "(none)");
        free(al);
        grant_refused(&ctx, g, "unauthorized_client", msg, NULL);
    } else if (g == G_CODE) {
        grant_code(&ctx);
    } else if (g == G_REFRESH) {
        grant_refresh(&ctx);
    } else {
        grant_client(&ctx);
    }
    tk_oauth_client_clear(&c);
}

/* ---- the verified-token cache ----
 *
 * A signature check (ECDSA P-256 verify) is most of an introspection's
 * cost, and a resource server introspects the same token again and again.
 * So an access token whose signature and claims were checked once is
 * remembered, keyed by the SHA-256 of the token (never the token), with
 * what introspection answers: the reply body, tid, jti, fid and exp. An
 * entry lasts until the token's exp, at most VCACHE_TTL_MS (a key pulled
 * from the JWKS early stops being trusted here within that). Revocation,
 * expiry and the tenant are checked on every answer, hit or miss. Direct
 * mapped (a new entry replaces the slot's), striped locks. */

#define VCACHE_SLOTS 4096
#define VCACHE_STRIPES 64
#define VCACHE_TTL_MS 60000

struct vslot {
    unsigned char key[SHA256_DIGEST_LENGTH];
    int64_t until, exp_ms;
    char tid[TK_UUID_LEN + 1], jti[48], fid[TK_UUID_LEN + 1];
    char cid[TK_OAUTH_CLIENT_ID_MAX];
    char *body; /* the active reply, JSON; NULL: empty slot */
};

struct vcache {
    pthread_mutex_t mu[VCACHE_STRIPES];
    struct vslot s[VCACHE_SLOTS];
};

static struct vcache *vcache_new(void)
{
    struct vcache *c = tk_calloc(1, sizeof *c);
    for (int i = 0; i < VCACHE_STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

static void vcache_free(struct vcache *c)
{
    if (!c) return;
    for (int i = 0; i < VCACHE_SLOTS; i++)
        free(c->s[i].body);
    for (int i = 0; i < VCACHE_STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c);
}

/* What introspection needs of a checked access token. */
struct vtoken {
    char tid[TK_UUID_LEN + 1], jti[48], fid[TK_UUID_LEN + 1];
    char cid[TK_OAUTH_CLIENT_ID_MAX]; /* the client_id claim */
    int64_t exp_ms;
    char *body; /* malloc'd */
};

static size_t vslot_of(const unsigned char key[SHA256_DIGEST_LENGTH])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return (size_t)(h % VCACHE_SLOTS);
}

static bool vcache_get(struct vcache *c, const unsigned char key[SHA256_DIGEST_LENGTH], int64_t now,
                       struct vtoken *out)
{
    size_t i = vslot_of(key);
    bool hit = false;
    pthread_mutex_lock(&c->mu[i % VCACHE_STRIPES]);
    struct vslot *v = &c->s[i];
    if (v->body && v->until > now && !memcmp(v->key, key, sizeof v->key)) {
        memcpy(out->tid, v->tid, sizeof out->tid);
        memcpy(out->jti, v->jti, sizeof out->jti);
        memcpy(out->fid, v->fid, sizeof out->fid);
        memcpy(out->cid, v->cid, sizeof out->cid);
        out->exp_ms = v->exp_ms;
        out->body = tk_strdup(v->body);
        hit = true;
    }
    pthread_mutex_unlock(&c->mu[i % VCACHE_STRIPES]);
    return hit;
}

static void vcache_put(struct vcache *c, const unsigned char key[SHA256_DIGEST_LENGTH], int64_t now,
                       const struct vtoken *t)
{
    size_t i = vslot_of(key);
    char *body = tk_strdup(t->body), *old;
    pthread_mutex_lock(&c->mu[i % VCACHE_STRIPES]);
    struct vslot *v = &c->s[i];
    old = v->body;
    memcpy(v->key, key, sizeof v->key);
    v->until = t->exp_ms < now + VCACHE_TTL_MS ? t->exp_ms : now + VCACHE_TTL_MS;
    v->exp_ms = t->exp_ms;
    memcpy(v->tid, t->tid, sizeof v->tid);
    memcpy(v->jti, t->jti, sizeof v->jti);
    memcpy(v->fid, t->fid, sizeof v->fid);
    memcpy(v->cid, t->cid, sizeof v->cid);
    v->body = body;
    pthread_mutex_unlock(&c->mu[i % VCACHE_STRIPES]);
    free(old);
}

/* The checked access token tok (signature, typ, exp), from the cache or
 * verified now; false when it is not one (bad, expired, not ours). The
 * revocation set and the tenant are the caller's. */
static bool access_checked(struct tk_app *app, const char *tok, struct vtoken *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(tok);
    int64_t now = tk_now_ms();
    unsigned char key[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, n, key);
    struct vcache *c = app->oauth_revset ? app->oauth_revset->verified : NULL;
    if (c && vcache_get(c, key, now, out)) {
        if (out->exp_ms > now) return true;
        free(out->body);
        out->body = NULL;
        return false;
    }
    json_t *claims = NULL;
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_api_oauth_verify(app, tok, n, "at+jwt", &claims, &e) != TK_OK) return false;
    json_t *exp = json_object_get(claims, "exp");
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    const char *tid = json_string_value(json_object_get(claims, "tid"));
    const char *fid = json_string_value(json_object_get(claims, "fid"));
    const char *cid = json_string_value(json_object_get(claims, "client_id"));
    bool ok = cid && strlen(cid) < sizeof out->cid && json_is_integer(exp) && json_integer_value(exp) > 0 &&
              json_integer_value(exp) < INT64_MAX / 1000 && jti && strlen(jti) < sizeof out->jti &&
              tid && strlen(tid) < sizeof out->tid && (!fid || strlen(fid) < sizeof out->fid);
    if (ok) {
        out->exp_ms = json_integer_value(exp) * 1000;
        snprintf(out->tid, sizeof out->tid, "%s", tid);
        snprintf(out->jti, sizeof out->jti, "%s", jti);
        snprintf(out->fid, sizeof out->fid, "%s", fid ? fid : "");
        snprintf(out->cid, sizeof out->cid, "%s", cid);
        json_t *b = json_pack("{s:b}", "active", 1);
        static const char *const keep[] = {"scope", "client_id", "sub", "aud",
                                           "iss",   "exp",       "iat", "jti"};
        for (size_t i = 0; i < TK_NELEM(keep); i++) {
            json_t *v = json_object_get(claims, keep[i]);
            if (v) json_object_set(b, keep[i], v);
        }
        json_object_set_new(b, "token_type", json_string("Bearer"));
        out->body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        if (c && out->body) vcache_put(c, key, now, out);
        ok = out->body && out->exp_ms > now;
    }
    json_decref(claims);
    if (!ok) {
        free(out->body);
        out->body = NULL;
    }
    return ok;
}

/* ---- introspection and revocation ---- */

static bool looks_refresh(const char *tok)
{
    return !strncmp(tok, TK_KIND_REFRESH "_", 4);
}

/* The claims of a valid, unexpired access token (new reference), or NULL
 * (revocation: the revocation set is not consulted). */
static json_t *access_claims(struct tk_app *app, const char *tok)
{
    json_t *claims = NULL;
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_api_oauth_verify(app, tok, strlen(tok), "at+jwt", &claims, &e) != TK_OK) return NULL;
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_integer(exp) || json_integer_value(exp) * 1000 <= tk_now_ms() ||
        !json_string_value(json_object_get(claims, "jti"))) {
        json_decref(claims);
        return NULL;
    }
    return claims;
}

static void count_introspection(struct tk_app *app, bool active)
{
    if (app->oauth_revset) tk_metric_inc(app->oauth_revset->m_introspections, active ? 0 : 1);
}

static void reply_inactive(struct tk_req *r)
{
    count_introspection(app_of(r), false);
    tk_oauth_reply_json(r, 200, json_pack("{s:b}", "active", 0));
}

/* POST /oauth2/introspect (RFC 7662): a confidential client of the
 * token's tenant; refresh tokens only by the client they were issued to. */
void tk_h_oauth_introspect(struct tk_req *r)
{
    struct tk_app *app = app_of(r);
    struct tk_form *f = form_of(r);
    if (!f) return;
    const char *tok = tk_form_get(f, "token");
    if (!tok || !tok[0]) {
        tk_oauth_reply_error(r, 400, "invalid_request", "token is missing");
        return;
    }
    struct tk_oauth_client c;
    if (client_of(r, f, "introspect", &c) != 1) return;
    if (!c.confidential) {
        refusal_event(r, c.tenant_id, c.id, c.client_id, "introspect", "invalid_client",
                      "introspection is for confidential clients only", NULL);
        tk_oauth_reply_error(r, 401, "invalid_client",
                             "introspection is for confidential clients only");
        tk_oauth_client_clear(&c);
        return;
    }
    if (looks_refresh(tok)) {
        struct tk_db *db = tk_api_db(r);
        if (!db) {
            tk_oauth_client_clear(&c);
            return;
        }
        struct tk_oauth_refresh rt = {0};
        bool active = false;
        struct tk_err e;
        tk_rc rc = tk_oauth_refresh_find(db, app->keyring, tok, strlen(tok), tk_now_ms(), &rt,
                                         &active, &e);
        if (rc == TK_OK && active && !strcmp(rt.oauth_client_id, c.id)) {
            char *scope = tk_oauth_scope_join(rt.scopes);
            json_t *b =
                json_pack("{s:b, s:s, s:s, s:s, s:I, s:s}", "active", 1, "scope", scope,
                          "client_id", c.client_id, "sub", rt.user_id[0] ? rt.user_id : c.client_id,
                          "iat", (json_int_t)(rt.created_at / 1000), "iss", tk_api_public_url(app));
            if (rt.expires_at) json_object_set_new(b, "exp", json_integer(rt.expires_at / 1000));
            json_object_set_new(b, "token_type", json_string("refresh_token"));
            free(scope);
            count_introspection(app, true);
            tk_oauth_reply_json(r, 200, b);
        } else if (rc == TK_OK || rc == TK_ENOTFOUND) {
            reply_inactive(r);
        } else {
            reply_server_error(r, &e);
        }
        tk_oauth_refresh_clear(&rt);
        tk_oauth_client_clear(&c);
        return;
    }
    struct vtoken vt;
    int64_t now = tk_now_ms();
    struct tk_revset *set = app->oauth_revset ? app->oauth_revset->set : NULL;
    bool active = access_checked(app, tok, &vt) && !strcmp(vt.tid, c.tenant_id) &&
                  !tk_revset_has(set, "jti", vt.jti, now) &&
                  !(vt.fid[0] && tk_revset_has(set, "family", vt.fid, now));
    tk_oauth_client_clear(&c);
    if (active) {
        /* the token's client must still be active: a disabled or deleted
         * client's tokens, client_credentials ones included (no family to
         * revoke), are inactive; from the client cache, no store read */
        struct tk_oauth_client tc;
        struct tk_err ce;
        tk_err_clear(&ce);
        tk_rc crc = tk_api_oauth_client_resolve(r, vt.cid, &tc, &ce);
        if (crc == TK_EUNAVAIL && !strcmp(ce.code, "parked")) { /* replied, or re-run */
            free(vt.body);
            return;
        }
        active = crc == TK_OK && !strcmp(tc.status, "active") && !strcmp(tc.tenant_id, vt.tid);
        if (crc == TK_OK) tk_oauth_client_clear(&tc);
    }
    if (!active) {
        free(vt.body);
        reply_inactive(r);
        return;
    }
    count_introspection(app, true);
    tk_reply_header(r, "Cache-Control", "no-store");
    tk_reply_header(r, "Pragma", "no-cache");
    tk_reply_text(r, 200, "application/json", vt.body, strlen(vt.body));
    free(vt.body);
}

static void count_revocation(struct tk_app *app, int o)
{
    if (app->oauth_revset) tk_metric_inc(app->oauth_revset->m_revocations, (size_t)o);
}

/* POST /oauth2/revoke (RFC 7009): 200 for unknown tokens; a refresh token
 * revokes its family, an access token its jti; only the token's client. */
void tk_h_oauth_revoke(struct tk_req *r)
{
    struct tk_app *app = app_of(r);
    struct tk_form *f = form_of(r);
    if (!f) return;
    const char *tok = tk_form_get(f, "token");
    if (!tok || !tok[0]) {
        tk_oauth_reply_error(r, 400, "invalid_request", "token is missing");
        return;
    }
    struct tk_oauth_client c;
    if (client_of(r, f, "revoke", &c) != 1) return;
    struct tk_err e;
    tk_err_clear(&e);
    int64_t now = tk_now_ms();
    int64_t until = now + (int64_t)app->cfg->oauth_access_token_ttl * 1000;
    int outcome = R_UNKNOWN;
    const char *what = NULL;
    char value[TK_UUID_LEN + 64] = "", tenant[TK_UUID_LEN + 1] = "";
    json_t *claims = NULL;
    if (looks_refresh(tok)) {
        struct tk_db *db = tk_api_db(r);
        if (!db) goto out;
        struct tk_oauth_refresh rt = {0};
        bool active;
        tk_rc rc = tk_db_begin(db, &e);
        if (rc == TK_OK)
            rc = tk_oauth_refresh_find(db, app->keyring, tok, strlen(tok), now, &rt, &active, &e);
        if (rc == TK_OK && strcmp(rt.oauth_client_id, c.id) != 0) {
            outcome = R_REFUSED;
        } else if (rc == TK_OK) {
            rc = tk_oauth_revoke_family(db, rt.tenant_id, rt.family_id, now, until, &e);
            if (rc == TK_OK) rc = tk_db_commit(db, &e);
            if (rc == TK_OK) {
                outcome = R_REVOKED;
                what = "family";
                snprintf(value, sizeof value, "%s", rt.family_id);
                snprintf(tenant, sizeof tenant, "%s", rt.tenant_id);
            }
        }
        if (rc == TK_ENOTFOUND) rc = TK_OK;
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_oauth_refresh_clear(&rt);
        if (rc != TK_OK) outcome = R_ERROR;
    } else if ((claims = access_claims(app, tok))) {
        const char *cid = json_string_value(json_object_get(claims, "client_id"));
        const char *tid = json_string_value(json_object_get(claims, "tid"));
        if (!cid || !tid || strcmp(cid, c.client_id) != 0 || strcmp(tid, c.tenant_id) != 0) {
            outcome = R_REFUSED;
        } else {
            struct tk_db *db = tk_api_db(r);
            if (!db) goto out;
            const char *jti = json_string_value(json_object_get(claims, "jti"));
            int64_t exp = json_integer_value(json_object_get(claims, "exp")) * 1000;
            tk_rc rc = tk_oauth_revoke_jti(db, tid, jti, now, exp, &e);
            if (rc == TK_OK) {
                outcome = R_REVOKED;
                what = "jti";
                until = exp;
                snprintf(value, sizeof value, "%s", jti);
                snprintf(tenant, sizeof tenant, "%s", tid);
            } else {
                outcome = R_ERROR;
            }
        }
    }
    count_revocation(app, outcome);
    if (what) tk_revset_add(app->oauth_revset->set, what, value, until);
    if (outcome == R_REFUSED) {
        refusal_event(r, c.tenant_id, c.id, c.client_id, "revoke", "unauthorized_client",
                      "the token was issued to another client", NULL);
        tk_oauth_reply_error(r, 400, "unauthorized_client",
                             "the token was issued to another client");
    } else if (outcome == R_ERROR) {
        reply_server_error(r, &e);
    } else {
        tk_oauth_reply_json(r, 200, json_object());
    }
out:
    json_decref(claims);
    tk_oauth_client_clear(&c);
}

/* ---- metadata (RFC 8414) ---- */

/* GET /.well-known/oauth-authorization-server and
 * /.well-known/openid-configuration: the same document, only what works. */
void tk_h_oauth_metadata(struct tk_req *r)
{
    if (!tk_api_started(r)) return;
    struct tk_app *app = app_of(r);
    const char *base = tk_api_public_url(app);
    char u[7][600];
    static const char *const paths[7] = {"",
                                         "/oauth2/authorize",
                                         "/oauth2/token",
                                         "/oauth2/jwks",
                                         "/oauth2/register",
                                         "/oauth2/introspect",
                                         "/oauth2/revoke"};
    for (int i = 0; i < 7; i++)
        snprintf(u[i], sizeof u[i], "%s%s", base, paths[i]);
    json_t *m = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:[s], s:[s], s:[s,s,s], s:[s], s:[s,s,s], s:[s,s], "
        "s:[s,s,s], s:b, s:b, s:[s]}",
        "issuer", u[0], "authorization_endpoint", u[1], "token_endpoint", u[2], "jwks_uri", u[3],
        "introspection_endpoint", u[5], "revocation_endpoint", u[6], "response_types_supported",
        "code", "response_modes_supported", "query", "grant_types_supported", "authorization_code",
        "refresh_token", "client_credentials", "code_challenge_methods_supported", "S256",
        "token_endpoint_auth_methods_supported", "client_secret_basic", "client_secret_post",
        "none", "introspection_endpoint_auth_methods_supported", "client_secret_basic",
        "client_secret_post", "revocation_endpoint_auth_methods_supported", "client_secret_basic",
        "client_secret_post", "none", "authorization_response_iss_parameter_supported", 1,
        "client_id_metadata_document_supported", app->cfg->oauth_cimd ? 1 : 0,
        "access_token_signing_alg_values_supported", tk_api_oauth_signing_alg(app));
    if (!app->cfg->oauth_cimd) json_object_del(m, "client_id_metadata_document_supported");
    /* registration only where POST /oauth2/register answers */
    if (strcmp(app->cfg->oauth_dcr, "off") != 0)
        json_object_set_new(m, "registration_endpoint", json_string(u[4]));
    tk_reply_header(r, "Cache-Control", "public, max-age=300");
    tk_reply_json(r, 200, m);
}

/* ---- the revocation set's poller ---- */

/* The smallest UUIDv7 text of time ms: rows of ids above it were made at
 * ms or later (UUIDv7 text sorts by its leading 48-bit millisecond time). */
static void uuid_floor(int64_t ms, char out[TK_UUID_LEN + 1])
{
    uint64_t t = ms < 0 ? 0 : (uint64_t)ms;
    snprintf(out, TK_UUID_LEN + 1, "%08llx-%04llx-0000-0000-000000000000",
             (unsigned long long)((t >> 16) & 0xffffffffULL), (unsigned long long)(t & 0xffff));
}

static bool revset_poll(struct tk_oauth_revset *rs, struct tk_err *e)
{
    struct tk_db *db = tk_store_get(rs->app->store, e);
    if (!db) return false;
    char after[TK_UUID_LEN + 1], floor_id[TK_UUID_LEN + 1];
    /* read again what other nodes may have committed late: the last
     * REVSET_OVERLAP_MS of ids (adding twice is harmless) */
    uuid_floor(tk_now_ms() - REVSET_OVERLAP_MS, floor_id);
    snprintf(after, sizeof after, "%s", strcmp(rs->cursor, floor_id) < 0 ? rs->cursor : floor_id);
    tk_rc rc = TK_OK;
    for (int round = 0; rc == TK_OK && round < 100; round++) {
        struct tk_rows *rows = NULL;
        rc = tk_oauth_revocations_read(db, after, REVSET_BATCH, &rows, e);
        int n = rc == TK_OK ? tk_rows_count(rows) : 0;
        for (int i = 0; i < n; i++) {
            tk_revset_add(rs->set, tk_rows_text(rows, i, 1), tk_rows_text(rows, i, 2),
                          tk_rows_int(rows, i, 3));
            snprintf(after, sizeof after, "%s", tk_rows_text(rows, i, 0));
            if (strcmp(after, rs->cursor) > 0) memcpy(rs->cursor, after, sizeof rs->cursor);
        }
        tk_rows_free(rows);
        if (n < REVSET_BATCH) break;
    }
    int64_t mono = tk_mono_ms();
    if (rc == TK_OK && mono - rs->purged_ms >= REVSET_PURGE_MS) {
        rs->purged_ms = mono;
        int64_t n = 0, now = tk_now_ms();
        tk_revset_purge(rs->set, now);
        if (tk_oauth_grants_purge(db, now, &n, e) != TK_OK)
            tk_warn("oauth: cannot drop expired codes, refresh tokens and revocations: %s", e->msg);
        tk_err_clear(e);
        /* flows (each anybody's GET /oauth2/authorize) are kept as long as
         * events (events_retention_days; 0: forever) */
        int days = rs->app->cfg->events_retention_days;
        if (days > 0) {
            int64_t cut = now - (int64_t)days * 86400000LL;
            char flow_floor[TK_UUID_LEN + 1];
            uuid_floor(cut, flow_floor);
            if (tk_oauth_flows_purge(db, flow_floor, cut, 5000, &n, e) != TK_OK)
                tk_warn("oauth: cannot drop flows older than %d days: %s", days, e->msg);
            tk_err_clear(e);
        }
    }
    tk_store_put(db);
    return rc == TK_OK;
}

static void revset_worker(struct tk_worker *w, void *arg)
{
    struct tk_oauth_revset *rs = arg;
    bool failing = false;
    int64_t ms = 0;
    while (tk_worker_wait(w, ms)) {
        ms = REVSET_POLL_MS;
        struct tk_err e;
        tk_err_clear(&e);
        if (revset_poll(rs, &e)) {
            if (failing) tk_info("oauth: the revocations are read again");
            failing = false;
            continue;
        }
        if (!failing)
            tk_warn("oauth: cannot read the revocations (%s); introspection on this node "
                    "knows only those read before",
                    e.msg);
        failing = true;
    }
}

/* ---- start, stop, metrics ---- */

static struct tk_oauth_revset *state(struct tk_app *app)
{
    if (!app->oauth_revset) {
        struct tk_oauth_revset *rs = tk_calloc(1, sizeof *rs);
        rs->set = tk_revset_new();
        rs->app = app;
        rs->purged_ms = tk_mono_ms();
        rs->verified = vcache_new();
        app->oauth_revset = rs;
    }
    return app->oauth_revset;
}

tk_rc tk_api_oauth_grants_start(struct tk_app *app, struct tk_err *e)
{
    struct tk_oauth_revset *rs = state(app);
    tk_oauth_code_ttl_set(app->cfg->oauth_code_ttl);
    /* the first round (at once) loads every unexpired revocation */
    return tk_worker_start(&rs->poll, "OAuth revocations", revset_worker, rs, e);
}

void tk_api_oauth_grants_stop(struct tk_app *app)
{
    struct tk_oauth_revset *rs = app->oauth_revset;
    if (!rs) return;
    if (!tk_worker_stop(&rs->poll, 0)) return; /* stuck in a store read: left to the exit */
    app->oauth_revset = NULL;                  /* the HTTP server has stopped: nobody reads it */
    tk_revset_free(rs->set);
    vcache_free(rs->verified);
    free(rs);
}

static double revset_entries(void *arg, size_t idx)
{
    (void)idx;
    struct tk_app *app = arg;
    if (!app->oauth_revset) return NAN;
    return (double)tk_revset_size(app->oauth_revset->set);
}

tk_rc tk_api_oauth_grants_metrics(struct tk_app *app, struct tk_err *e)
{
    struct tk_oauth_revset *rs = state(app);
    static const struct tk_dim tdims[2] = {{"grant", grant_names, G_N, NULL, NULL},
                                           {"outcome", outcome_names, O_N, NULL, NULL}};
    static const char *const actives[] = {"true", "false"};
    static const struct tk_dim adim = {"active", actives, 2, NULL, NULL};
    static const struct tk_dim rdim = {"outcome", revoke_names, R_N, NULL, NULL};
    rs->m_tokens =
        tk_metric_counter(app->metrics, "tokend_oauth_tokens_total",
                          "Token endpoint answers, by grant type and outcome.", tdims, 2, 0, e);
    if (!rs->m_tokens) return TK_EINTERNAL;
    rs->m_introspections = tk_metric_counter(app->metrics, "tokend_oauth_introspections_total",
                                             "Token introspections, by answer.", &adim, 1, 0, e);
    if (!rs->m_introspections) return TK_EINTERNAL;
    rs->m_revocations = tk_metric_counter(app->metrics, "tokend_oauth_revocations_total",
                                          "Token revocation requests, by outcome.", &rdim, 1, 0, e);
    if (!rs->m_revocations) return TK_EINTERNAL;
    if (!tk_metric_gauge_fn(app->metrics, "tokend_oauth_revocation_set_entries",
                            "Revoked access tokens and refresh families this node holds in "
                            "memory.",
                            NULL, 0, revset_entries, app, e))
        return TK_EINTERNAL;
    return TK_OK;
}
