/* flows.c: authorization flows, stage by stage (migration 0013). A row per
 * authorization request that named a known client; each stage sets its
 * time, a failure its stage, RFC error code, sentence and next step.
 * Inside the caller's transaction (the stage's event commits with it). */
#include "authorize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tk_oauth_stages[6] = {"authorize_received", "login",           "consent",
                                        "code_issued",        "token_exchanged", "token_issued"};

bool tk_oauth_stage_valid(const char *s)
{
    for (size_t i = 0; i < TK_NELEM(tk_oauth_stages); i++)
        if (s && !strcmp(s, tk_oauth_stages[i])) return true;
    return false;
}

void tk_oauth_flow_clear(struct tk_oauth_flow *f)
{
    json_decref(f->scopes);
    f->scopes = NULL;
}

#define FLOW_COLS                                                                                  \
    "id, tenant_id, oauth_client_id, client_id, redirect_uri, scopes, oauth_state, "               \
    "code_challenge, code_challenge_method, resource, nonce, user_id, stage, status, "             \
    "failed_stage, error, reason, next_step, created_at, updated_at, expires_at, login_at, "       \
    "consent_at, code_issued_at, token_exchanged_at, token_issued_at"
enum {
    C_ID,
    C_TENANT,
    C_OCID,
    C_CLIENT_ID,
    C_REDIRECT,
    C_SCOPES,
    C_STATE,
    C_CHALLENGE,
    C_METHOD,
    C_RESOURCE,
    C_NONCE,
    C_USER,
    C_STAGE,
    C_STATUS,
    C_FAILED_STAGE,
    C_ERROR,
    C_REASON,
    C_NEXT,
    C_CREATED,
    C_UPDATED,
    C_EXPIRES,
    C_LOGIN,
    C_CONSENT,
    C_CODE,
    C_EXCHANGED,
    C_ISSUED
};

static void cp(char *out, size_t n, const char *s)
{
    snprintf(out, n, "%s", s ? s : "");
}

tk_rc tk_oauth_flow_get(struct tk_db *db, const char *tenant_id, const char *id,
                        struct tk_oauth_flow *out, struct tk_err *e)
{
    memset(out, 0, sizeof *out);
    if (!id || !tk_uuid_valid(id))
        return tk_err_set(e, TK_ENOTFOUND, "not_found", "no flow with id %.40s", id ? id : "");
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " FLOW_COLS " FROM oauth_flows WHERE id = ? "
                          "AND (CAST(? AS TEXT) IS NULL OR tenant_id = ?)",
                          TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id), TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 0) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "not_found", "no flow with id %s", id);
    }
    cp(out->id, sizeof out->id, tk_rows_text(r, 0, C_ID));
    cp(out->tenant_id, sizeof out->tenant_id, tk_rows_text(r, 0, C_TENANT));
    cp(out->oauth_client_id, sizeof out->oauth_client_id, tk_rows_text(r, 0, C_OCID));
    cp(out->client_id, sizeof out->client_id, tk_rows_text(r, 0, C_CLIENT_ID));
    cp(out->redirect_uri, sizeof out->redirect_uri, tk_rows_text(r, 0, C_REDIRECT));
    cp(out->oauth_state, sizeof out->oauth_state, tk_rows_text(r, 0, C_STATE));
    cp(out->code_challenge, sizeof out->code_challenge, tk_rows_text(r, 0, C_CHALLENGE));
    cp(out->code_challenge_method, sizeof out->code_challenge_method, tk_rows_text(r, 0, C_METHOD));
    cp(out->resource, sizeof out->resource, tk_rows_text(r, 0, C_RESOURCE));
    cp(out->nonce, sizeof out->nonce, tk_rows_text(r, 0, C_NONCE));
    cp(out->user_id, sizeof out->user_id, tk_rows_text(r, 0, C_USER));
    cp(out->stage, sizeof out->stage, tk_rows_text(r, 0, C_STAGE));
    cp(out->status, sizeof out->status, tk_rows_text(r, 0, C_STATUS));
    out->created_at = tk_rows_int(r, 0, C_CREATED);
    out->expires_at = tk_rows_null(r, 0, C_EXPIRES) ? 0 : tk_rows_int(r, 0, C_EXPIRES);
    out->scopes = json_loads(tk_rows_text(r, 0, C_SCOPES), 0, NULL);
    if (!json_is_array(out->scopes)) {
        json_decref(out->scopes);
        out->scopes = json_array();
    }
    tk_rows_free(r);
    return TK_OK;
}

tk_rc tk_oauth_flow_insert(struct tk_db *db, struct tk_oauth_flow *f,
                           const struct tk_oauth_refusal *refusal, struct tk_err *e)
{
    tk_uuid7(f->id);
    bool failed = refusal != NULL;
    snprintf(f->stage, sizeof f->stage, "authorize_received");
    snprintf(f->status, sizeof f->status, "%s", failed ? "failed" : "active");
    char *scopes = f->scopes ? json_dumps(f->scopes, JSON_COMPACT) : tk_strdup("[]");
#define OPT(s) TK_TEXT((s)[0] ? (s) : NULL)
    tk_rc rc = tk_db_exec(
        db,
        "INSERT INTO oauth_flows (id, tenant_id, oauth_client_id, client_id, redirect_uri, "
        "scopes, oauth_state, code_challenge, code_challenge_method, resource, nonce, stage, "
        "status, failed_stage, error, reason, next_step, created_at, updated_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        TK_ARGS(TK_TEXT(f->id), TK_TEXT(f->tenant_id), TK_TEXT(f->oauth_client_id),
                TK_TEXT(f->client_id), TK_TEXT(f->redirect_uri), TK_TEXT(scopes),
                OPT(f->oauth_state), OPT(f->code_challenge), OPT(f->code_challenge_method),
                OPT(f->resource), OPT(f->nonce), TK_TEXT(f->stage), TK_TEXT(f->status),
                TK_TEXT(failed ? "authorize_received" : NULL),
                TK_TEXT(failed ? refusal->error : NULL), TK_TEXT(failed ? refusal->reason : NULL),
                TK_TEXT(failed && refusal->next_step[0] ? refusal->next_step : NULL),
                TK_INT(f->created_at), TK_INT(f->created_at), TK_INT(f->expires_at)),
        NULL, e);
#undef OPT
    free(scopes);
    return rc;
}

tk_rc tk_oauth_flow_set_stage(struct tk_db *db, const char *tenant_id, const char *id,
                              const char *stage, const char *user_id, int64_t now, struct tk_err *e)
{
    /* the column comes from this table, never from the caller's string */
    static const char *const sql[] = {
        NULL,
        "UPDATE oauth_flows SET stage = ?, updated_at = ?, user_id = COALESCE(?, user_id), "
        "login_at = ? WHERE id = ? AND tenant_id = ?",
        "UPDATE oauth_flows SET stage = ?, updated_at = ?, user_id = COALESCE(?, user_id), "
        "consent_at = ? WHERE id = ? AND tenant_id = ?",
        "UPDATE oauth_flows SET stage = ?, updated_at = ?, user_id = COALESCE(?, user_id), "
        "code_issued_at = ? WHERE id = ? AND tenant_id = ?",
        "UPDATE oauth_flows SET stage = ?, updated_at = ?, user_id = COALESCE(?, user_id), "
        "token_exchanged_at = ? WHERE id = ? AND tenant_id = ?",
        "UPDATE oauth_flows SET stage = ?, updated_at = ?, user_id = COALESCE(?, user_id), "
        "token_issued_at = ?, status = CASE WHEN status = 'active' THEN 'completed' ELSE "
        "status END WHERE id = ? AND tenant_id = ?",
    };
    size_t k = 0;
    for (size_t i = 1; i < TK_NELEM(tk_oauth_stages); i++)
        if (stage && !strcmp(stage, tk_oauth_stages[i])) k = i;
    if (!k)
        return tk_err_set(e, TK_EINVAL, "invalid_stage", "'%.40s' is not a stage a flow moves to",
                          stage ? stage : "");
    tk_rc rc = tk_db_exec(db, sql[k],
                          TK_ARGS(TK_TEXT(stage), TK_INT(now), TK_TEXT(user_id), TK_INT(now),
                                  TK_TEXT(id), TK_TEXT(tenant_id)),
                          NULL, e);
    if (rc == TK_OK && tk_db_changes(db) != 1)
        rc = tk_err_set(e, TK_ENOTFOUND, "not_found", "no flow with id %.40s", id);
    return rc;
}

tk_rc tk_oauth_flows_purge(struct tk_db *db, const char *floor_id, int64_t before_ms, int limit,
                           int64_t *n, struct tk_err *e)
{
    *n = 0;
    tk_rc rc = tk_db_exec(db,
                          "DELETE FROM oauth_flows WHERE id IN (SELECT f.id FROM oauth_flows f "
                          "WHERE f.id < ? AND f.updated_at < ? AND NOT EXISTS (SELECT 1 FROM "
                          "oauth_codes c WHERE c.flow_id = f.id) ORDER BY f.id LIMIT ?)",
                          TK_ARGS(TK_TEXT(floor_id), TK_INT(before_ms), TK_INT(limit)), NULL, e);
    if (rc == TK_OK) *n = tk_db_changes(db);
    return rc;
}

tk_rc tk_oauth_flow_set_failed(struct tk_db *db, const char *tenant_id, const char *id,
                               const char *stage, const char *error, const char *reason,
                               const char *next_step, int64_t now, struct tk_err *e)
{
    tk_rc rc =
        tk_db_exec(db,
                   "UPDATE oauth_flows SET status = 'failed', failed_stage = ?, error = ?, "
                   "reason = ?, next_step = ?, updated_at = ? WHERE id = ? AND tenant_id = ?",
                   TK_ARGS(TK_TEXT(stage), TK_TEXT(error), TK_TEXT(reason),
                           TK_TEXT(next_step && *next_step ? next_step : NULL), TK_INT(now),
                           TK_TEXT(id), TK_TEXT(tenant_id)),
                   NULL, e);
    if (rc == TK_OK && tk_db_changes(db) != 1)
        rc = tk_err_set(e, TK_ENOTFOUND, "not_found", "no flow with id %.40s", id);
    return rc;
}

static json_t *time_or_null(const struct tk_rows *r, int row, int col)
{
    if (tk_rows_null(r, row, col)) return json_null();
    char t[40];
    tk_time_fmt(tk_rows_int(r, row, col), t, sizeof t);
    return json_string(t);
}

static json_t *text_or_null(const struct tk_rows *r, int row, int col)
{
    const char *s = tk_rows_text(r, row, col);
    return s ? json_string(s) : json_null();
}

static bool row_stuck(const struct tk_rows *r, int row, int64_t now)
{
    const char *status = tk_rows_text(r, row, C_STATUS);
    return status && !strcmp(status, "active") && tk_rows_null(r, row, C_EXCHANGED) &&
           tk_rows_int(r, row, C_UPDATED) < now - TK_OAUTH_STUCK_AFTER_MS;
}

static json_t *flow_json(const struct tk_rows *r, int row, int64_t now)
{
    json_t *scopes = json_loads(tk_rows_text(r, row, C_SCOPES), 0, NULL);
    if (!json_is_array(scopes)) {
        json_decref(scopes);
        scopes = json_array();
    }
    static const int stage_cols[] = {C_CREATED, C_LOGIN, C_CONSENT, C_CODE, C_EXCHANGED, C_ISSUED};
    json_t *stages = json_array();
    for (size_t i = 0; i < TK_NELEM(stage_cols); i++)
        json_array_append_new(stages, json_pack("{s:s, s:o}", "stage", tk_oauth_stages[i], "at",
                                                time_or_null(r, row, stage_cols[i])));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
        "s:o, s:o, s:o}",
        "id", tk_rows_text(r, row, C_ID), "client_id", tk_rows_text(r, row, C_CLIENT_ID),
        "oauth_client_id", tk_rows_text(r, row, C_OCID), "redirect_uri",
        tk_rows_text(r, row, C_REDIRECT), "scopes", scopes, "stage", tk_rows_text(r, row, C_STAGE),
        "status", tk_rows_text(r, row, C_STATUS), "stuck", row_stuck(r, row, now), "failed_stage",
        text_or_null(r, row, C_FAILED_STAGE), "error", text_or_null(r, row, C_ERROR), "reason",
        text_or_null(r, row, C_REASON), "next_step", text_or_null(r, row, C_NEXT), "user_id",
        text_or_null(r, row, C_USER), "resource", text_or_null(r, row, C_RESOURCE),
        "code_challenge_method", text_or_null(r, row, C_METHOD), "stages", stages, "created_at",
        time_or_null(r, row, C_CREATED), "updated_at", time_or_null(r, row, C_UPDATED),
        "expires_at", time_or_null(r, row, C_EXPIRES), "state_given",
        json_boolean(!tk_rows_null(r, row, C_STATE)));
    const char *st = tk_rows_text(r, row, C_STATUS);
    json_object_set_new(o, "expired",
                        json_boolean(st && !strcmp(st, "active") &&
                                     !tk_rows_null(r, row, C_EXPIRES) &&
                                     tk_rows_int(r, row, C_EXPIRES) <= now));
    return o;
}

tk_rc tk_oauth_flow_list(struct tk_db *db, const char *tenant_id, const char *client_id,
                         const char *status, const char *before, int limit, int64_t now,
                         json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    /* stuck and active are both status 'active', told apart by time */
    const char *st = status;
    int64_t stuck = 0, active = 0, cutoff = now - TK_OAUTH_STUCK_AFTER_MS;
    if (status && !strcmp(status, "stuck")) {
        st = "active";
        stuck = 1;
    } else if (status && !strcmp(status, "active")) {
        active = 1;
    }
    /* The statement holds only the filters given, so that the planner can
     * take the (tenant_id, client_id, id) or (tenant_id, status, id) index
     * ("x IS NULL OR ..." forms hide them: a rare filter then read the
     * whole tenant). Built from constant pieces; values are bound. */
    char sql[sizeof("SELECT " FLOW_COLS " FROM oauth_flows WHERE tenant_id = ?") + 512];
    struct tk_val args[8];
    int n_args = 0;
    size_t w = (size_t)snprintf(sql, sizeof sql, "%s",
                                "SELECT " FLOW_COLS " FROM oauth_flows WHERE tenant_id = ?");
    args[n_args++] = TK_TEXT(tenant_id);
#define ADD(cond, ...)                                                                            \
    do {                                                                                          \
        w += (size_t)snprintf(sql + w, sizeof sql - w, "%s", cond);                               \
        struct tk_val v_[] = {__VA_ARGS__};                                                       \
        for (size_t i_ = 0; i_ < sizeof v_ / sizeof v_[0]; i_++) args[n_args++] = v_[i_];         \
    } while (0)
    if (client_id) ADD(" AND client_id = ?", TK_TEXT(client_id));
    if (st) ADD(" AND status = ?", TK_TEXT(st));
    if (stuck) ADD(" AND token_exchanged_at IS NULL AND updated_at < ?", TK_INT(cutoff));
    if (active) ADD(" AND (token_exchanged_at IS NOT NULL OR updated_at >= ?)", TK_INT(cutoff));
    if (before) ADD(" AND id < ?", TK_TEXT(before));
    ADD(" ORDER BY id DESC LIMIT ?", TK_INT(limit + 1));
#undef ADD
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, sql, args, n_args, &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(a, flow_json(r, i, now));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, C_ID));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_oauth_flow_show(struct tk_db *db, const char *tenant_id, const char *id, int64_t now,
                         json_t **out, struct tk_err *e)
{
    if (!tk_uuid_valid(id))
        return tk_err_set(e, TK_ENOTFOUND, "not_found", "no flow with id %.40s", id);
    struct tk_rows *r;
    tk_rc rc =
        tk_db_exec(db, "SELECT " FLOW_COLS " FROM oauth_flows WHERE id = ? AND tenant_id = ?",
                   TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 0) {
        tk_rows_free(r);
        return tk_err_set(e, TK_ENOTFOUND, "not_found", "no flow with id %s", id);
    }
    *out = flow_json(r, 0, now);
    tk_rows_free(r);
    return TK_OK;
}

/* What to change when the failing stage left no next step: by error code. */
static const char *generic_next(const char *stage, const char *error, const char *reason)
{
    if (!error) return "start the authorization again at the client";
    /* the token part's sentences (field report 001's failures at the exchange) */
    static const struct {
        const char *word, *next;
    } by_reason[] = {
        {"expired", "make the client exchange the code within 60 s of the redirect (a slow or "
                    "queued callback, a clock far off), then start again"},
        {"already used", "make the client exchange each code once (no retry of a token request "
                         "that timed out); start the authorization again"},
        {"code_verifier", "make the client send the code_verifier of the code_challenge it sent "
                          "at /oauth2/authorize for this flow (one verifier per flow, kept until "
                          "the exchange)"},
        {"redirect_uri", "make the client send at the token endpoint exactly the redirect_uri "
                         "it sent at /oauth2/authorize"},
        {"client_id", "make the client send the same client_id at the token endpoint as at "
                      "/oauth2/authorize"},
    };
    for (size_t i = 0; reason && i < TK_NELEM(by_reason); i++)
        if (strstr(reason, by_reason[i].word)) return by_reason[i].next;
    if (!strcmp(error, "invalid_grant") && stage && !strcmp(stage, "token_exchanged"))
        return "make the client exchange the code once, within 60 s, with the same redirect_uri "
               "and the code_verifier of its code_challenge";
    if (!strcmp(error, "invalid_grant"))
        return "make the client redeem the code once, within 60 s, with the same redirect_uri "
               "and code_verifier";
    if (!strcmp(error, "invalid_client"))
        return "check the client's credentials and that it sends the same client_id at the "
               "authorization and token endpoints";
    if (!strcmp(error, "access_denied"))
        return "the user refused or could not sign in: nothing to change in the client";
    if (!strcmp(error, "invalid_scope")) return "align the client's requested and allowed scopes";
    if (!strcmp(error, "unauthorized_client"))
        return "allow the authorization_code grant for the client, or activate it";
    if (!strcmp(error, "server_error") || !strcmp(error, "temporarily_unavailable"))
        return "look at tokend's events of this flow and the node's health (tokend doctor), "
               "then start again";
    return "correct the request as the reason says and start again at the client";
}

json_t *tk_oauth_flow_diagnose(json_t *flow, int64_t now)
{
    const char *status = json_string_value(json_object_get(flow, "status"));
    const char *stage = json_string_value(json_object_get(flow, "stage"));
    bool stuck = json_is_true(json_object_get(flow, "stuck"));
    char conclusion[TK_OAUTH_REASON_MAX + 256];
    const char *next = NULL;
    const char *stopped = stage;
    (void)now;
    if (status && !strcmp(status, "failed")) {
        const char *fs = json_string_value(json_object_get(flow, "failed_stage"));
        const char *err = json_string_value(json_object_get(flow, "error"));
        const char *reason = json_string_value(json_object_get(flow, "reason"));
        stopped = fs ? fs : stage;
        snprintf(conclusion, sizeof conclusion, "The flow failed at %s with %s: %s.",
                 stopped ? stopped : "?", err ? err : "an error", reason ? reason : "no reason");
        next = json_string_value(json_object_get(flow, "next_step"));
        if (!next) next = generic_next(stopped, err, reason);
    } else if (status && !strcmp(status, "completed")) {
        snprintf(conclusion, sizeof conclusion,
                 "The flow completed: tokens were issued to the client.");
        next = NULL;
    } else if (stuck) {
        static const struct {
            const char *stage, *why, *next;
        } s[] = {
            {"authorize_received", "the browser never came back from the login page",
             "the user may have closed the window; have them start again at the client and "
             "sign in within the flow's lifetime"},
            {"login", "the user signed in but never answered the consent page",
             "have the user start again and approve the consent page"},
            {"consent", "the user consented but no code was issued",
             "look at the flow's events for a server error (tokend events --subject ID)"},
            {"code_issued", "a code was sent to the redirect URI but the client never exchanged it",
             "check that the client's callback at the redirect URI receives the code and calls "
             "POST /oauth2/token within 60 s (its logs, a proxy dropping the query string)"},
        };
        bool expired = json_is_true(json_object_get(flow, "expired"));
        const char *why = "no stage for a minute";
        for (size_t i = 0; i < TK_NELEM(s); i++)
            if (stage && !strcmp(stage, s[i].stage)) {
                why = s[i].why;
                next = s[i].next;
            }
        snprintf(conclusion, sizeof conclusion, "The flow is stuck at %s: %s%s.",
                 stage ? stage : "?", why,
                 expired ? "; it has expired (oauth_flow_ttl), so it can no longer complete" : "");
    } else {
        snprintf(conclusion, sizeof conclusion,
                 "The flow is in progress at %s (no stage for less than %lld s).",
                 stage ? stage : "?", (long long)(TK_OAUTH_STUCK_AFTER_MS / 1000));
    }
    return json_pack("{s:s?, s:s?, s:b, s:s, s:s?}", "stopped_at", stopped, "status", status,
                     "stuck", stuck, "conclusion", conclusion, "next_step", next);
}
