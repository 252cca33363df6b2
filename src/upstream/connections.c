/* connections.c: the connections table and THE refresh function (see
 * connections.h).
 *
 * A refresh is three steps that never hold a store connection across the
 * upstream call: prepare (read the row and the app, open the refresh token
 * and the client secret, build the request; the connection goes back to
 * the pool), the transfer (tk_out_send, or the caller's tk_out_submit), and
 * complete (classify the answer; in ONE transaction: the version
 * compare-and-swap UPDATE with the new tokens or the error state, and the
 * attempt's event).
 *
 * The fence: a failure commits only if the row's version is still the one
 * read; a success also when the stored refresh token is still the one it
 * used. So when two attempts ran with the same refresh token (a manual
 * refresh beside an on-demand one) and the provider rotates without grace,
 * the loser's invalid_grant never buries the winner's new tokens, whatever
 * order their commits come in. */
#include "connections.h"

#include "../common/log.h"
#include "../common/worker.h"
#include "../events/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_S 30
#define EXCERPT_MAX 512

static const char *const status_names[] = {"ok", "refresh_error", "needs_reconnect", "disabled"};
static const char *const source_names[] = {"scheduled", "on_demand", "reactive", "manual", "debug"};
static const char *const outcome_names[] = {"ok", "error", "failed", "none"};

const char *tk_conn_status_name(enum tk_conn_status s)
{
    return (unsigned)s < TK_NELEM(status_names) ? status_names[s] : "unknown";
}

const char *tk_refresh_source_name(enum tk_refresh_source s)
{
    return (unsigned)s < TK_NELEM(source_names) ? source_names[s] : "unknown";
}

const char *tk_refresh_outcome_name(enum tk_refresh_outcome o)
{
    return (unsigned)o < TK_NELEM(outcome_names) ? outcome_names[o] : "unknown";
}

static enum tk_conn_status status_parse(const char *s)
{
    for (size_t i = 0; i < TK_NELEM(status_names); i++)
        if (s && !strcmp(s, status_names[i])) return (enum tk_conn_status)i;
    return TK_CONN_DISABLED; /* an unknown stored value is never refreshed */
}

tk_rc tk_conn_register_sealed(void)
{
    tk_rc rc = tk_keyring_register_sealed("connections", "access_token");
    if (rc == TK_OK) rc = tk_keyring_register_sealed("connections", "refresh_token");
    return rc;
}

/* ---- settings ---- */

static int64_t ctx_ahead_s(const struct tk_refresh_ctx *c)
{
    return c && c->ahead_s > 0 ? c->ahead_s : 300;
}
static int ctx_ahead_pct(const struct tk_refresh_ctx *c)
{
    return c && c->ahead_percent > 0 ? c->ahead_percent : 10;
}
static int64_t ctx_idle_s(const struct tk_refresh_ctx *c)
{
    return c && c->max_idle_s > 0 ? c->max_idle_s : 86400;
}
static int64_t ctx_backoff_max_s(const struct tk_refresh_ctx *c)
{
    return c && c->backoff_max_s > 0 ? c->backoff_max_s : 3600;
}
static int64_t ctx_timeout_ms(const struct tk_refresh_ctx *c)
{
    return c && c->timeout_ms > 0 ? c->timeout_ms : 30000;
}

static uint32_t rand32(void)
{
    uint32_t v;
    tk_random(&v, sizeof v);
    return v;
}

int64_t tk_conn_next_refresh_at(const struct tk_refresh_ctx *ctx, int64_t issued_at,
                                int64_t expires_at, int64_t refresh_expires_at, int64_t now_ms)
{
    int64_t life = expires_at - issued_at;
    if (life < 0) life = 0;
    int64_t margin = ctx_ahead_s(ctx) * 1000;
    int64_t pct = life / 100 * ctx_ahead_pct(ctx);
    if (pct > margin) margin = pct;
    int64_t jitter = margin / 10;
    int64_t at = expires_at - margin - (jitter > 0 ? (int64_t)(rand32() % (uint64_t)jitter) : 0);
    if (refresh_expires_at > 0) {
        int64_t idle = issued_at + ctx_idle_s(ctx) * 1000;
        if (idle < at) at = idle;
    }
    return at < now_ms ? now_ms : at;
}

/* ---- checks and sealing ---- */

static bool label_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TK_CONN_LABEL_MAX || !tk_utf8_valid(s, n)) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

static tk_rc seal_text(struct tk_keyring *k, const char *tenant, const char *id, const char *col,
                       const char *plain, char **out, struct tk_err *e)
{
    struct tk_secret *s = tk_secret_new(plain, strlen(plain));
    struct tk_seal_ad ad = {tenant, "connections", col, id};
    struct tk_sealed *sv = NULL;
    tk_rc rc = tk_keyring_seal_value(k, s, &ad, &sv, e);
    tk_secret_free(s);
    if (rc != TK_OK) return rc;
    *out = tk_strdup(sv->text);
    tk_sealed_free(sv);
    return TK_OK;
}

static tk_rc open_text(struct tk_keyring *k, struct tk_db *db, const char *tenant, const char *id,
                       const char *col, const char *text, struct tk_secret **out,
                       struct tk_open_failure *f, struct tk_err *e)
{
    struct tk_sealed *sv = tk_sealed_from_text(text);
    struct tk_seal_ad ad = {tenant, "connections", col, id};
    tk_rc rc = tk_keyring_open_value(k, db, sv, &ad, out, f, e);
    tk_sealed_free(sv);
    return rc;
}

static tk_rc check_tokens(const struct tk_conn_tokens *t, struct tk_err *e)
{
    size_t n;
    if (!t->access_token || !tk_conn_token_valid(t->access_token, &n))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "access_token",
                            "access_token must be 1 to %d printable ASCII characters",
                            TK_CONN_TOKEN_MAX);
    if (t->refresh_token && !tk_conn_token_valid(t->refresh_token, &n))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "refresh_token",
                            "refresh_token must be 1 to %d printable ASCII characters",
                            TK_CONN_TOKEN_MAX);
    if (t->expires_at <= 0)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "expires_at",
                            "expires_at must be a time after the epoch");
    if (t->refresh_expires_at < 0)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "refresh_expires_at",
                            "refresh_expires_at must be a time after the epoch");
    if (!tk_conn_scopes_valid(t->scopes))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "scopes",
                            "scopes must be an array of at most %d strings of 1 to %d printable "
                            "characters without spaces or commas",
                            TK_APP_SCOPES_MAX, TK_APP_SCOPE_MAX);
    if (t->token_type && (!t->token_type[0] || strlen(t->token_type) > 31))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "token_type",
                            "token_type must be 1 to 31 characters");
    return TK_OK;
}

tk_rc tk_conn_create_ctx(struct tk_db *db, const struct tk_refresh_ctx *ctx, const char *tenant_id,
                         const char *app_id, const char *label, const struct tk_conn_tokens *tok,
                         char id_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    if (!label_ok(label))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "label",
                            "label must be 1 to %d characters of UTF-8 without control characters",
                            TK_CONN_LABEL_MAX);
    tk_rc rc = check_tokens(tok, e);
    if (rc != TK_OK) return rc;
    if (!app_id || !tk_uuid_valid(app_id))
        return tk_err_field(e, TK_EINVAL, "invalid_field", "app_id",
                            "app_id must be the id of one of this tenant's provider apps");
    struct tk_rows *r;
    rc = tk_db_exec(db, "SELECT 1 FROM provider_apps WHERE tenant_id = ? AND id = ?",
                    TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(app_id)), &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    tk_rows_free(r);
    if (n != 1)
        return tk_err_field(e, TK_EINVAL, "invalid_field", "app_id",
                            "app_id must be the id of one of this tenant's provider apps "
                            "(GET /v1/provider-apps lists them)");
    if (tk_keyring_sealed(ctx->keyring))
        return tk_err_set(e, TK_EUNAVAIL, "sealed", "the keyring is sealed");
    tk_uuid7(id_out);
    char *at = NULL, *rt = NULL;
    rc = seal_text(ctx->keyring, tenant_id, id_out, "access_token", tok->access_token, &at, e);
    if (rc == TK_OK && tok->refresh_token)
        rc =
            seal_text(ctx->keyring, tenant_id, id_out, "refresh_token", tok->refresh_token, &rt, e);
    if (rc == TK_OK) {
        int64_t now = tk_now_ms();
        char *scopes = tok->scopes ? json_dumps(tok->scopes, JSON_COMPACT) : tk_strdup("[]");
        if (!scopes) tk_fatal("out of memory");
        bool refreshable = rt != NULL;
        int64_t next = refreshable ? tk_conn_next_refresh_at(ctx, now, tok->expires_at,
                                                             tok->refresh_expires_at, now)
                                   : 0;
        rc = tk_db_exec(
            db,
            "INSERT INTO connections (id, tenant_id, app_id, label, access_token, refresh_token, "
            "token_type, scopes, status, expires_at, refresh_expires_at, issued_at, "
            "last_refresh_at, next_refresh_at, last_error_code, last_error, failure_count, "
            "version, lease_owner, lease_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, "
            "?, ?, 'ok', ?, ?, ?, NULL, ?, NULL, NULL, 0, 1, NULL, NULL, ?, ?)",
            TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(app_id), TK_TEXT(label),
                    TK_TEXT(at), TK_TEXT(rt), TK_TEXT(tok->token_type ? tok->token_type : "Bearer"),
                    TK_TEXT(scopes), TK_INT(tok->expires_at),
                    tok->refresh_expires_at > 0 ? TK_INT(tok->refresh_expires_at) : TK_NULLV,
                    TK_INT(now), refreshable ? TK_INT(next) : TK_NULLV, TK_INT(now), TK_INT(now)),
            NULL, e);
        free(scopes);
    }
    free(at);
    free(rt);
    return rc;
}

tk_rc tk_conn_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                     const char *app_id, const char *label, const struct tk_conn_tokens *tok,
                     char id_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_refresh_ctx c = {.keyring = k};
    return tk_conn_create_ctx(db, &c, tenant_id, app_id, label, tok, id_out, e);
}

/* ---- reading ---- */

#define COLS                                                                                       \
    "c.id, c.app_id, c.label, c.token_type, c.scopes, c.status, c.expires_at, "                    \
    "c.refresh_expires_at, c.last_refresh_at, c.next_refresh_at, c.last_error_code, "              \
    "c.last_error, c.failure_count, c.version, "                                                   \
    "CASE WHEN c.refresh_token IS NULL THEN 0 ELSE 1 END, c.created_at, c.updated_at, a.provider"

static json_t *time_or_null(const struct tk_rows *r, int i, int col)
{
    if (tk_rows_null(r, i, col) || tk_rows_int(r, i, col) <= 0) return json_null();
    char b[40];
    tk_time_fmt(tk_rows_int(r, i, col), b, sizeof b);
    return json_string(b);
}

static json_t *text_or_null(const struct tk_rows *r, int i, int col)
{
    const char *s = tk_rows_text(r, i, col);
    return s ? json_string(s) : json_null();
}

static const char *shown_status(const struct tk_refresh_ctx *ctx, const char *st, int64_t exp,
                                int64_t now)
{
    if (st && !strcmp(st, "ok") && exp - now <= ctx_ahead_s(ctx) * 1000) return "expiring_soon";
    return st ? st : "disabled";
}

static json_t *row_json(const struct tk_refresh_ctx *ctx, const struct tk_rows *r, int i)
{
    json_t *scopes = json_loads(tk_rows_text(r, i, 4) ? tk_rows_text(r, i, 4) : "[]", 0, NULL);
    if (!json_is_array(scopes)) {
        json_decref(scopes);
        scopes = json_array();
    }
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:I, "
        "s:I, s:b, s:o, s:o}",
        "id", tk_rows_text(r, i, 0), "app_id", tk_rows_text(r, i, 1), "provider",
        tk_rows_text(r, i, 17), "label", tk_rows_text(r, i, 2), "token_type", tk_rows_text(r, i, 3),
        "scopes", scopes, "status",
        shown_status(ctx, tk_rows_text(r, i, 5), tk_rows_int(r, i, 6), tk_now_ms()), "expires_at",
        time_or_null(r, i, 6), "refresh_expires_at", time_or_null(r, i, 7), "last_refresh_at",
        time_or_null(r, i, 8), "next_refresh_at", time_or_null(r, i, 9), "last_error_code",
        text_or_null(r, i, 10), "last_error", text_or_null(r, i, 11), "failure_count",
        (json_int_t)tk_rows_int(r, i, 12), "version", (json_int_t)tk_rows_int(r, i, 13),
        "has_refresh_token", tk_rows_int(r, i, 14) != 0, "created_at", time_or_null(r, i, 15),
        "updated_at", time_or_null(r, i, 16));
}

static tk_rc not_found(struct tk_err *e, const char *id)
{
    return tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no connection with id %.40s", id);
}

tk_rc tk_conn_get(struct tk_db *db, const struct tk_refresh_ctx *ctx, const char *tenant_id,
                  const char *id, json_t **out, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " COLS " FROM connections c JOIN provider_apps a ON a.id = "
                          "c.app_id WHERE c.tenant_id = ? AND c.id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = not_found(e, id);
    else
        *out = row_json(ctx, r, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_conn_list(struct tk_db *db, const struct tk_refresh_ctx *ctx, const char *tenant_id,
                   const char *status, const char *app_id, const char *before, int limit,
                   json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    /* expiring_soon is derived: ok with expires_at within refresh_ahead; ok
     * then means ok and not expiring soon */
    int64_t soon = tk_now_ms() + ctx_ahead_s(ctx) * 1000;
    const char *st = status;
    int mode = 0; /* 0 any; 1 ok-not-soon; 2 expiring_soon; 3 exact */
    if (status && !strcmp(status, "ok"))
        mode = 1;
    else if (status && !strcmp(status, "expiring_soon"))
        mode = 2, st = "ok";
    else if (status)
        mode = 3;
    struct tk_rows *r;
    tk_rc rc =
        tk_db_exec(db,
                   "SELECT " COLS " FROM connections c JOIN provider_apps a ON a.id = c.app_id "
                   "WHERE c.tenant_id = ? AND (CAST(? AS TEXT) IS NULL OR c.status = ?) "
                   "AND (? <> 1 OR c.expires_at > ?) AND (? <> 2 OR c.expires_at <= ?) "
                   "AND (CAST(? AS TEXT) IS NULL OR c.app_id = ?) "
                   "AND (CAST(? AS TEXT) IS NULL OR c.id < ?) ORDER BY c.id DESC LIMIT ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(st), TK_TEXT(st), TK_INT(mode), TK_INT(soon),
                           TK_INT(mode), TK_INT(soon), TK_TEXT(app_id), TK_TEXT(app_id),
                           TK_TEXT(before), TK_TEXT(before), TK_INT(limit + 1)),
                   &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(a, row_json(ctx, r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_conn_delete(struct tk_db *db, const char *tenant_id, const char *id, struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db, "DELETE FROM connections WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
    if (rc == TK_OK && tk_db_changes(db) != 1) rc = not_found(e, id);
    return rc;
}

tk_rc tk_conn_token(struct tk_db *db, struct tk_keyring *k, const char *tenant_id, const char *id,
                    struct tk_conn_token *out, struct tk_open_failure *f, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT access_token, token_type, expires_at, version, "
                          "last_refresh_at, status, last_error_code, last_error, scopes "
                          "FROM connections WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return not_found(e, id);
    }
    snprintf(out->token_type, sizeof out->token_type, "%s", tk_rows_text(r, 0, 1));
    out->expires_at = tk_rows_int(r, 0, 2);
    out->version = tk_rows_int(r, 0, 3);
    out->last_refresh_at = tk_rows_null(r, 0, 4) ? 0 : tk_rows_int(r, 0, 4);
    out->status = status_parse(tk_rows_text(r, 0, 5));
    snprintf(out->reason, sizeof out->reason, "%s",
             tk_rows_text(r, 0, 6) ? tk_rows_text(r, 0, 6) : "");
    snprintf(out->last_error, sizeof out->last_error, "%s",
             tk_rows_text(r, 0, 7) ? tk_rows_text(r, 0, 7) : "");
    out->scopes = json_loads(tk_rows_text(r, 0, 8) ? tk_rows_text(r, 0, 8) : "[]", 0, NULL);
    if (!json_is_array(out->scopes)) {
        json_decref(out->scopes);
        out->scopes = json_array();
    }
    if (tk_keyring_sealed(k))
        rc = tk_err_set(e, TK_EUNAVAIL, "sealed", "the keyring is sealed");
    else
        rc = open_text(k, db, tenant_id, id, "access_token", tk_rows_text(r, 0, 0),
                       &out->access_token, f, e);
    tk_rows_free(r);
    if (rc != TK_OK) tk_conn_token_free(out);
    return rc;
}

void tk_conn_token_free(struct tk_conn_token *t)
{
    tk_secret_free(t->access_token);
    t->access_token = NULL;
    json_decref(t->scopes);
    t->scopes = NULL;
}

/* ---- the refresh ---- */

struct tk_refresh_op {
    char tenant[TK_UUID_LEN + 1], id[TK_UUID_LEN + 1];
    enum tk_refresh_source source;
    char trace[72];
    bool debug;
    int64_t version, failure_count, refresh_expires_at;
    char *rt_text; /* the sealed refresh token as read (the fence of a success) */
    json_t *effective;
    json_t *app_scopes;
    struct tk_secret *refresh_token, *client_secret;
    struct tk_conn_req req;
    bool have_req;
};

const struct tk_out_req *tk_refresh_op_req(const struct tk_refresh_op *op)
{
    return &op->req.req;
}

void tk_conn_refresh_abandon(struct tk_refresh_op *op)
{
    if (!op) return;
    if (op->have_req) tk_conn_req_free(&op->req);
    tk_secret_free(op->refresh_token);
    tk_secret_free(op->client_secret);
    free(op->rt_text);
    json_decref(op->effective);
    json_decref(op->app_scopes);
    free(op);
}

static void res_init(struct tk_refresh_result *res)
{
    memset(res, 0, sizeof *res);
    res->outcome = TK_REFRESH_NONE;
    res->rc = TK_OK;
}

static void res_none(struct tk_refresh_result *res, const struct tk_err *e)
{
    res->outcome = TK_REFRESH_NONE;
    res->rc = e->rc;
    res->err = *e;
}

void tk_refresh_result_free(struct tk_refresh_result *r)
{
    json_decref(r->upstream);
    json_decref(r->debug);
    r->upstream = r->debug = NULL;
}

struct attempt {
    enum tk_refresh_outcome outcome;
    char reason[TK_CONN_REASON_MAX];
    char message[320];
    int64_t retry_after_s;
    long http_status;
    int64_t latency_us;
    json_t *record;            /* masked exchange, or NULL (nothing sent) */
    struct tk_conn_tokens tok; /* OK */
};

static int64_t backoff_ms(const struct tk_refresh_ctx *ctx, int64_t failures, int64_t retry_s)
{
    int64_t s = BACKOFF_BASE_S;
    for (int64_t i = 1; i < failures && s < ctx_backoff_max_s(ctx); i++)
        s *= 2;
    if (s > ctx_backoff_max_s(ctx)) s = ctx_backoff_max_s(ctx);
    int64_t ms = s * 1000;
    ms = ms * 8 / 10 + (int64_t)(rand32() % (uint64_t)(ms * 4 / 10 + 1)); /* +-20% */
    if (retry_s * 1000 > ms) ms = retry_s * 1000;
    return ms;
}

/* A secret's preview for an event: its first 4 characters when it is long
 * enough that they give nothing away (NULL: none), then its length. */
static json_t *preview(const char *s, size_t len)
{
    char b[64];
    if (s && len >= 20)
        snprintf(b, sizeof b, "%.4s...(%zu chars)", s, len);
    else
        snprintf(b, sizeof b, "...(%zu chars)", len);
    return json_string(b);
}

/* Write the attempt and its event in one transaction (version CAS). */
static void commit_attempt(const struct tk_refresh_ctx *ctx, struct tk_refresh_op *op,
                           struct attempt *at, struct tk_refresh_result *res)
{
    struct tk_err e;
    tk_err_clear(&e);
    int64_t now = tk_now_ms();
    res->outcome = at->outcome;
    res->http_status = at->http_status;
    res->latency_us = at->latency_us;
    snprintf(res->reason, sizeof res->reason, "%s", at->reason);
    char *at_sealed = NULL, *rt_sealed = NULL, *scopes = NULL;
    int64_t next = 0;
    tk_rc rc = TK_OK;
    if (at->outcome == TK_REFRESH_OK) {
        rc = seal_text(ctx->keyring, op->tenant, op->id, "access_token", at->tok.access_token,
                       &at_sealed, &e);
        if (rc == TK_OK && at->tok.refresh_token)
            rc = seal_text(ctx->keyring, op->tenant, op->id, "refresh_token", at->tok.refresh_token,
                           &rt_sealed, &e);
        if (rc != TK_OK) {
            free(at_sealed);
            free(rt_sealed);
            res_none(res, &e);
            return;
        }
        if (at->tok.scopes) scopes = json_dumps(at->tok.scopes, JSON_COMPACT);
        int64_t rexp = at->tok.refresh_token ? at->tok.refresh_expires_at : op->refresh_expires_at;
        next = tk_conn_next_refresh_at(ctx, now, at->tok.expires_at, rexp, now);
        res->status = TK_CONN_OK;
        res->expires_at = at->tok.expires_at;
        res->rotated = at->tok.refresh_token != NULL;
        snprintf(at->message, sizeof at->message,
                 "refreshed%s; the new access token expires in "
                 "%lld s",
                 res->rotated ? " (refresh token rotated)" : "",
                 (long long)((at->tok.expires_at - now) / 1000));
    } else if (at->outcome == TK_REFRESH_ERROR) {
        next = now + backoff_ms(ctx, op->failure_count + 1, at->retry_after_s);
        res->status = TK_CONN_REFRESH_ERROR;
        tk_err_set(&res->err, TK_EUPSTREAM, "refresh_failed", "%s", at->message);
    } else {
        res->status = TK_CONN_NEEDS_RECONNECT;
        tk_err_set(&res->err, TK_ECONFLICT, "needs_reconnect", "%s", at->message);
    }
    res->next_attempt_at = next;
    /* the event */
    json_t *d = at->record ? json_deep_copy(at->record) : json_object();
    json_t *eff = op->effective;
    json_object_set(d, "provider", json_object_get(eff, "provider"));
    json_object_set(d, "environment", json_object_get(eff, "environment"));
    if (at->record) {
        const char *u = json_string_value(json_object_get(at->record, "url"));
        char *mu = u ? tk_conn_mask_url(u) : NULL;
        if (mu) json_object_set_new(d, "url", json_string(mu));
        free(mu);
    }
    if (at->reason[0]) json_object_set_new(d, "reason", json_string(at->reason));
    char tb[40];
    if (at->outcome == TK_REFRESH_ERROR) {
        tk_time_fmt(next, tb, sizeof tb);
        json_object_set_new(d, "next_attempt_at", json_string(tb));
    }
    if (at->outcome == TK_REFRESH_OK) json_object_set_new(d, "rotated", json_boolean(res->rotated));
    /* which tokens: previews only (diagnosis: "rejected after another node rotated it") */
    if (op->refresh_token)
        json_object_set_new(d, "refresh_token_sent",
                            preview((const char *)op->refresh_token->p, op->refresh_token->len));
    if (at->outcome == TK_REFRESH_OK && at->tok.refresh_token)
        json_object_set_new(d, "refresh_token_new",
                            preview(at->tok.refresh_token, strlen(at->tok.refresh_token)));
    if (op->client_secret)
        json_object_set_new(d, "client_secret_sent", preview(NULL, op->client_secret->len));
    if (at->outcome != TK_REFRESH_OK && at->record) {
        res->upstream =
            json_pack("{s:O?, s:O?, s:O?, s:O?}", "status", json_object_get(at->record, "status"),
                      "content_type", json_object_get(at->record, "content_type"), "body",
                      json_object_get(at->record, "response_body"), "error",
                      json_object_get(at->record, "error"));
    }
    if (op->debug && at->record) res->debug = json_incref(d);
    struct tk_event ev = {
        .tenant_id = op->tenant,
        .trace_id = op->trace[0] ? op->trace : NULL,
        .kind = "refresh",
        .source = tk_refresh_source_name(op->source),
        .action = "refresh",
        .outcome = at->outcome == TK_REFRESH_OK      ? "ok"
                   : at->outcome == TK_REFRESH_ERROR ? "error"
                                                     : "failed",
        .subject_type = "connection",
        .subject_id = op->id,
        .message = at->message,
        .detail = d,
        .latency_us = at->latency_us,
    };
    struct tk_db *db = tk_store_get(ctx->store, &e);
    if (!db) rc = e.rc;
    if (rc == TK_OK) rc = tk_db_begin(db, &e);
    if (rc == TK_OK) {
        if (at->outcome == TK_REFRESH_OK)
            rc = tk_db_exec(
                db,
                "UPDATE connections SET access_token = ?, refresh_token = COALESCE(?, "
                "refresh_token), token_type = ?, scopes = COALESCE(?, scopes), expires_at = ?, "
                "refresh_expires_at = CASE WHEN CAST(? AS BIGINT) > 0 THEN CAST(? AS BIGINT) ELSE "
                "refresh_expires_at END, "
                "issued_at = ?, last_refresh_at = ?, next_refresh_at = ?, status = 'ok', "
                "last_error_code = NULL, last_error = NULL, failure_count = 0, "
                "version = version + 1, updated_at = ? "
                "WHERE tenant_id = ? AND id = ? AND (version = ? OR refresh_token = ?)",
                TK_ARGS(TK_TEXT(at_sealed), TK_TEXT(rt_sealed),
                        TK_TEXT(at->tok.token_type ? at->tok.token_type : "Bearer"),
                        TK_TEXT(scopes), TK_INT(at->tok.expires_at),
                        TK_INT(rt_sealed ? at->tok.refresh_expires_at : 0),
                        TK_INT(at->tok.refresh_expires_at), TK_INT(now), TK_INT(now), TK_INT(next),
                        TK_INT(now), TK_TEXT(op->tenant), TK_TEXT(op->id), TK_INT(op->version),
                        TK_TEXT(op->rt_text)),
                NULL, &e);
        else
            rc = tk_db_exec(
                db,
                "UPDATE connections SET status = ?, last_error_code = ?, last_error = ?, "
                "failure_count = failure_count + 1, next_refresh_at = ?, "
                "version = version + 1, updated_at = ? "
                "WHERE tenant_id = ? AND id = ? AND version = ?",
                TK_ARGS(TK_TEXT(tk_conn_status_name(res->status)), TK_TEXT(at->reason),
                        TK_TEXT(at->message), next ? TK_INT(next) : TK_NULLV, TK_INT(now),
                        TK_TEXT(op->tenant), TK_TEXT(op->id), TK_INT(op->version)),
                NULL, &e);
        bool lost = rc == TK_OK && tk_db_changes(db) != 1;
        if (lost) {
            /* another writer changed the row since it was read: what this
             * attempt got is not stored; the event says so */
            tk_db_rollback(db);
            snprintf(at->message, sizeof at->message,
                     "the connection changed during the refresh (version %lld is no longer "
                     "current); this attempt's result was not stored",
                     (long long)op->version);
            json_object_set_new(d, "reason", json_string("version_conflict"));
            ev.outcome = "error";
            snprintf(res->reason, sizeof res->reason, "version_conflict");
            rc = tk_event_emit(db, &ev, &e);
            res->outcome = TK_REFRESH_NONE;
            res->rc = TK_ECONFLICT;
            tk_err_set(&res->err, TK_ECONFLICT, "version_conflict", "%s", at->message);
        } else {
            if (rc == TK_OK) rc = tk_event_emit_in(db, &ev, &e);
            if (rc == TK_OK) rc = tk_db_commit(db, &e);
            if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
            if (rc == TK_OK) res->version = op->version + 1;
        }
    }
    if (rc != TK_OK && res->outcome != TK_REFRESH_NONE) {
        tk_log_write(TK_LOG_ERROR, "connection %s: the refresh attempt could not be stored: %s",
                     op->id, e.msg);
        res_none(res, &e);
    }
    tk_store_put(db);
    json_decref(d);
    free(scopes);
    if (at_sealed) tk_wipe(at_sealed, strlen(at_sealed));
    free(at_sealed);
    free(rt_sealed);
}

void tk_conn_refresh_prepare(const struct tk_refresh_ctx *ctx, const char *tenant_id,
                             const char *conn_id, enum tk_refresh_source source,
                             const struct tk_refresh_opts *opts, struct tk_refresh_op **opp,
                             struct tk_refresh_result *res)
{
    res_init(res);
    *opp = NULL;
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_keyring_sealed(ctx->keyring)) {
        tk_err_set(&e, TK_EUNAVAIL, "sealed", "the keyring is sealed");
        res_none(res, &e);
        return;
    }
    struct tk_db *db = tk_store_get(ctx->store, &e);
    if (!db) {
        res_none(res, &e);
        return;
    }
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(
        db,
        "SELECT c.refresh_token, c.version, c.status, c.last_error_code, c.failure_count, "
        "c.refresh_expires_at, c.app_id, a.provider, a.client_id, a.scopes, a.environment, "
        "a.params, a.overrides FROM connections c JOIN provider_apps a ON a.id = c.app_id "
        "WHERE c.tenant_id = ? AND c.id = ?",
        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(conn_id)), &r, &e);
    if (rc == TK_OK && tk_rows_count(r) != 1) rc = not_found(&e, conn_id);
    if (rc != TK_OK) {
        tk_rows_free(r);
        tk_store_put(db);
        res_none(res, &e);
        return;
    }
    struct tk_refresh_op *op = tk_calloc(1, sizeof *op);
    snprintf(op->tenant, sizeof op->tenant, "%s", tenant_id);
    snprintf(op->id, sizeof op->id, "%s", conn_id);
    op->source = source;
    if (opts && opts->trace_id) snprintf(op->trace, sizeof op->trace, "%s", opts->trace_id);
    op->debug = opts && opts->debug;
    op->version = tk_rows_int(r, 0, 1);
    op->failure_count = tk_rows_int(r, 0, 4);
    op->refresh_expires_at = tk_rows_null(r, 0, 5) ? 0 : tk_rows_int(r, 0, 5);
    enum tk_conn_status st = status_parse(tk_rows_text(r, 0, 2));
    res->status = st;
    res->version = op->version;
    const char *provider = tk_rows_text(r, 0, 7);
    const struct tk_provider *p = tk_catalog_find(ctx->catalog, provider);
    json_t *ov = json_loads(tk_rows_text(r, 0, 12), 0, NULL);
    json_t *params = json_loads(tk_rows_text(r, 0, 11), 0, NULL);
    op->app_scopes = json_loads(tk_rows_text(r, 0, 9), 0, NULL);
    op->effective = p ? tk_app_effective(p, tk_rows_text(r, 0, 10), ov, params)
                      : json_pack("{s:s, s:s}", "provider", provider ? provider : "", "environment",
                                  tk_rows_text(r, 0, 10));
    json_decref(ov);
    json_decref(params);
    bool automatic = source == TK_REFRESH_SCHEDULED || source == TK_REFRESH_ON_DEMAND ||
                     source == TK_REFRESH_REACTIVE;
    struct attempt at = {.outcome = TK_REFRESH_FAILED};
    bool fail_now = false;
    if (opts && opts->if_version > 0 && opts->if_version != op->version) {
        /* somebody refreshed meanwhile: nothing to do */
        res->outcome = TK_REFRESH_NONE;
        res->rc = TK_OK;
    } else if (st == TK_CONN_DISABLED) {
        tk_err_set(&e, TK_ECONFLICT, "disabled", "connection %s is disabled", conn_id);
        res_none(res, &e);
    } else if (st == TK_CONN_NEEDS_RECONNECT && automatic) {
        const char *why = tk_rows_text(r, 0, 3);
        tk_err_set(&e, TK_ECONFLICT, "needs_reconnect",
                   "connection %s needs a reconnect (%s): no automatic refresh", conn_id,
                   why ? why : "unknown");
        res_none(res, &e);
        snprintf(res->reason, sizeof res->reason, "%s", why ? why : "");
    } else if (!p) {
        snprintf(at.reason, sizeof at.reason, "unknown_provider");
        snprintf(at.message, sizeof at.message,
                 "the app's provider '%.64s' is not in the catalogue", provider ? provider : "");
        fail_now = true;
    } else if (tk_rows_null(r, 0, 0)) {
        snprintf(at.reason, sizeof at.reason, "no_refresh_token");
        snprintf(at.message, sizeof at.message,
                 "the connection has no refresh token: reconnect needed");
        fail_now = true;
    } else {
        struct tk_open_failure f;
        op->rt_text = tk_strdup(tk_rows_text(r, 0, 0));
        rc = open_text(ctx->keyring, db, tenant_id, conn_id, "refresh_token", tk_rows_text(r, 0, 0),
                       &op->refresh_token, &f, &e);
        if (rc == TK_OK) {
            const char *app_id = tk_rows_text(r, 0, 6);
            struct tk_err e2;
            rc = tk_app_client_secret(db, ctx->keyring, tenant_id, app_id, &op->client_secret, &f,
                                      &e2);
            if (rc == TK_ENOTFOUND && !strcmp(e2.code, "no_client_secret"))
                rc = TK_OK; /* a public client */
            else if (rc != TK_OK)
                e = e2;
        }
        if (rc == TK_EINTERNAL && !strcmp(e.code, "decrypt_failed")) {
            snprintf(at.reason, sizeof at.reason, "decrypt_failed");
            snprintf(at.message, sizeof at.message,
                     "a stored value does not decrypt (%s, key version %lld): a key/data fault, "
                     "not an upstream problem; nothing was sent upstream",
                     f.row, (long long)f.key_version);
            fail_now = true;
        } else if (rc != TK_OK) {
            res_none(res, &e);
        } else {
            rc = tk_conn_build_request(op->effective, tk_rows_text(r, 0, 8), op->client_secret,
                                       op->refresh_token, op->app_scopes, (int)ctx_timeout_ms(ctx),
                                       &op->req, &e);
            if (rc == TK_OK) {
                op->have_req = true;
                *opp = op;
            } else {
                snprintf(at.reason, sizeof at.reason, "invalid_app");
                snprintf(at.message, sizeof at.message, "%s", e.msg);
                fail_now = true;
            }
        }
    }
    tk_rows_free(r);
    tk_store_put(db);
    if (*opp) return;
    if (fail_now) commit_attempt(ctx, op, &at, res);
    tk_conn_refresh_abandon(op);
}

void tk_conn_refresh_complete(const struct tk_refresh_ctx *ctx, struct tk_refresh_op *op,
                              const struct tk_out_result *ans, struct tk_refresh_result *res)
{
    res_init(res);
    const char *prov = json_string_value(json_object_get(op->effective, "provider"));
    snprintf(res->provider, sizeof res->provider, "%s", prov ? prov : "");
    struct attempt at = {0};
    at.outcome = tk_conn_classify(ans, op->effective, at.reason, &at.retry_after_s);
    at.http_status = ans->status;
    at.latency_us = ans->total_us;
    json_t *holder = NULL;
    if (at.outcome == TK_REFRESH_NONE) {
        struct tk_err e;
        tk_err_set(&e, TK_EUNAVAIL, ans->error == TK_OUT_STOPPING ? "node_stopping" : "busy",
                   "the refresh could not be sent (%s)", tk_out_error_name(ans->error));
        res_none(res, &e);
        tk_conn_refresh_abandon(op);
        return;
    }
    at.record = tk_out_record(&op->req.req, ans);
    if (at.outcome == TK_REFRESH_OK) {
        struct tk_err e;
        if (tk_conn_parse_answer(ans->body, ans->body_len, op->effective, tk_now_ms(), &at.tok,
                                 &holder, &e) != TK_OK) {
            at.outcome = TK_REFRESH_ERROR;
            snprintf(at.reason, sizeof at.reason, "invalid_answer");
        }
    }
    if (at.outcome == TK_REFRESH_ERROR) {
        if (ans->error != TK_OUT_OK)
            snprintf(at.message, sizeof at.message, "refresh failed transiently (%s): %.200s",
                     at.reason, ans->message);
        else
            snprintf(at.message, sizeof at.message,
                     "refresh failed transiently: the token endpoint answered %ld (%s)",
                     ans->status, at.reason);
    } else if (at.outcome == TK_REFRESH_FAILED) {
        snprintf(at.message, sizeof at.message,
                 "refresh token or client rejected (%s, HTTP %ld): reconnect needed", at.reason,
                 ans->status);
    }
    commit_attempt(ctx, op, &at, res);
    json_decref(at.record);
    json_decref(holder);
    tk_conn_refresh_abandon(op);
}

/* The row's version, or -1. */
static int64_t row_version(struct tk_db *db, const char *tenant_id, const char *conn_id)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t v = -1;
    if (tk_db_exec(db, "SELECT version FROM connections WHERE tenant_id = ? AND id = ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(conn_id)), &r, &e) == TK_OK &&
        tk_rows_count(r) == 1)
        v = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return v;
}

/* Single flight across the engine, the API and the nodes: an attempt holds
 * the connection's lease (TK_CONN_LEASE; the engine's claims skip leased
 * rows) from before it reads the row until it has committed. When another
 * attempt holds it, this one sends nothing: it waits (this is a worker
 * thread) until that attempt's commit changes the version -- then NONE,
 * rc TK_OK: "somebody else refreshed", the caller answers the stored
 * token -- or until the lease runs out, then tries itself. */
void tk_conn_refresh(const struct tk_refresh_ctx *ctx, const char *tenant_id, const char *conn_id,
                     enum tk_refresh_source source, const struct tk_refresh_opts *opts,
                     struct tk_refresh_result *res)
{
    static const struct tk_lease_spec spec = TK_CONN_LEASE;
    char owner[8 + TK_UUID_LEN + 1] = "attempt:";
    tk_uuid7(owner + 8);
    int64_t lease_ms = 2 * ctx_timeout_ms(ctx) + 5000;
    int64_t give_up = tk_mono_ms() + ctx_timeout_ms(ctx) + 5000, v0 = -1;
    struct tk_err e;
    tk_err_clear(&e);
    for (;;) {
        struct tk_db *db = tk_store_get(ctx->store, &e);
        if (!db) {
            res_init(res);
            res_none(res, &e);
            return;
        }
        bool claimed = false;
        int64_t now = tk_now_ms(), v = -1;
        tk_rc rc = tk_lease_claim_id(db, &spec, conn_id, owner, now, now + lease_ms, &claimed, &e);
        if (rc == TK_OK && !claimed) v = row_version(db, tenant_id, conn_id);
        tk_store_put(db);
        if (rc != TK_OK) {
            res_init(res);
            res_none(res, &e);
            return;
        }
        if (claimed) break;
        if (v < 0) break; /* gone: prepare says not found */
        if (v0 < 0) v0 = v;
        if (v != v0) { /* the other attempt committed */
            res_init(res);
            res->version = v;
            return;
        }
        if (tk_mono_ms() > give_up) {
            res_init(res);
            tk_err_set(&e, TK_EUNAVAIL, "busy",
                       "another refresh of connection %s is still running", conn_id);
            res_none(res, &e);
            return;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct tk_refresh_op *op = NULL;
    tk_conn_refresh_prepare(ctx, tenant_id, conn_id, source, opts, &op, res);
    if (op) {
        tk_refresh_result_free(res);
        struct tk_out_result ans;
        tk_out_send(ctx->out, tk_refresh_op_req(op), &ans);
        tk_conn_refresh_complete(ctx, op, &ans, res);
        tk_out_result_free(&ans);
    }
    struct tk_db *db = tk_store_get(ctx->store, &e);
    if (db) tk_lease_release(db, &spec, conn_id, owner, &e);
    tk_store_put(db);
}

/* ---- the async pool ---- */

struct job {
    struct job *next;
    char tenant[TK_UUID_LEN + 1], id[TK_UUID_LEN + 1], trace[72];
    enum tk_refresh_source source;
    struct tk_refresh_opts opts;
    void (*done)(const struct tk_refresh_result *, void *);
    void *arg;
};

struct tk_conn_pool {
    struct tk_refresh_ctx ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    int queued, max_queue, nthreads;
    bool stop;
    pthread_t *threads;
};

static void *pool_main(void *arg)
{
    struct tk_conn_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        struct job *j = p->head;
        if (j) {
            p->head = j->next;
            if (!p->head) p->tail = NULL;
            p->queued--;
        }
        pthread_mutex_unlock(&p->mu);
        if (!j) return NULL;
        struct tk_refresh_result res;
        j->opts.trace_id = j->trace[0] ? j->trace : NULL;
        tk_conn_refresh(&p->ctx, j->tenant, j->id, j->source, &j->opts, &res);
        j->done(&res, j->arg);
        tk_refresh_result_free(&res);
        free(j);
    }
}

tk_rc tk_conn_pool_start(const struct tk_refresh_ctx *ctx, int threads, struct tk_conn_pool **out,
                         struct tk_err *e)
{
    if (threads < 1) threads = 1;
    struct tk_conn_pool *p = tk_calloc(1, sizeof *p);
    p->ctx = *ctx;
    p->max_queue = 4096;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = tk_calloc((size_t)threads, sizeof *p->threads);
    for (int i = 0; i < threads; i++) {
        if (tk_thread_create(&p->threads[i], pool_main, p) != 0) {
            p->nthreads = i;
            tk_conn_pool_stop(p);
            return tk_err_set(e, TK_EINTERNAL, "internal", "cannot start the refresh threads");
        }
        p->nthreads = i + 1;
    }
    *out = p;
    return TK_OK;
}

void tk_conn_pool_stop(struct tk_conn_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

tk_rc tk_conn_refresh_async(struct tk_conn_pool *p, const char *tenant_id, const char *conn_id,
                            enum tk_refresh_source source, const struct tk_refresh_opts *opts,
                            void (*done)(const struct tk_refresh_result *res, void *arg), void *arg,
                            struct tk_err *e)
{
    struct job *j = tk_calloc(1, sizeof *j);
    snprintf(j->tenant, sizeof j->tenant, "%s", tenant_id);
    snprintf(j->id, sizeof j->id, "%s", conn_id);
    if (opts) {
        j->opts = *opts;
        if (opts->trace_id) snprintf(j->trace, sizeof j->trace, "%s", opts->trace_id);
    }
    j->source = source;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->queued >= p->max_queue) {
        bool stopping = p->stop;
        pthread_mutex_unlock(&p->mu);
        free(j);
        return tk_err_set(e, TK_EUNAVAIL, stopping ? "node_stopping" : "busy",
                          stopping ? "the node is stopping"
                                   : "too many refreshes are waiting; try again shortly");
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return TK_OK;
}
