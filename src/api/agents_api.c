/* agents_api.c: POST /v1/agents/register and POST /v1/agents/{id}/heartbeat
 * (a client token), GET /v1/agents (an operator), and the stale sweep: one
 * worker per node, of which one at a time (the lease on agent_sweep) marks
 * agents stale; see clients/clients.h. */
#include "api.h"

#include "../clients/clients.h"
#include "../common/log.h"

#include <stdio.h>
#include <string.h>

#define AGENTS_MAX_LIMIT 1000
#define SWEEP_EVERY_MS 500
#define SWEEP_DUE_MS 1000
#define SWEEP_LEASE_MS 10000

static const struct tk_api_client_auth *client_of(struct tk_req *r)
{
    return r->principal;
}

/* A client-route refusal that is not the token's (an unknown agent): an
 * event of kind validate like the token's, coalesced per second. */
static void refused(struct tk_req *r, const char *code, const char *msg)
{
    struct tk_api_client_auth v = *client_of(r);
    v.ok = false;
    tk_err_set(&v.e, TK_ENOTFOUND, code, "%s", msg);
    tk_api_client_refused(r, &v, NULL);
}

/* POST /v1/agents/register {logical_agent_id, hostname, version} -> 201 the agent. */
void tk_h_agents_register(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"logical_agent_id", "hostname", "version", NULL};
    struct tk_err e;
    if (!tk_api_only_members(r, body, allowed)) {
        json_decref(body);
        return;
    }
    if (tk_agent_check(body, &e) != TK_OK) {
        json_decref(body);
        refused(r, "invalid_body", e.msg);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    const struct tk_api_client_auth *c = client_of(r);
    json_t *o = NULL;
    tk_rc rc = tk_agent_register(db, c->p.tenant_id, c->p.client_id, body, r->request_id, &o, &e);
    json_decref(body);
    if (rc != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 201, o);
}

/* POST /v1/agents/{id}/heartbeat {status?} -> {"success": true, "message":
 * "Heartbeat received"} (field report 004's contract, kept as is). */
void tk_h_agents_heartbeat(struct tk_req *r)
{
    struct tk_app *app = r->app;
    const char *id = tk_req_param(r, "id");
    struct tk_err e;
    if (!tk_uuid_valid(id)) {
        tk_api_heartbeat_count(app, TK_HB_NOT_FOUND);
        refused(r, "unknown_agent", "a heartbeat for an agent id that is not a UUID");
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no agent with id %.40s", id);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    json_t *body = r->body_len == 0 ? json_object() : tk_req_json(r);
    if (!body) {
        tk_api_heartbeat_count(app, TK_HB_INVALID);
        return;
    }
    static const char *const allowed[] = {"status", NULL};
    if (!tk_api_only_members(r, body, allowed)) {
        tk_api_heartbeat_count(app, TK_HB_INVALID);
        json_decref(body);
        return;
    }
    json_t *st = json_object_get(body, "status");
    if (tk_agent_check_status(st, &e) != TK_OK) {
        tk_api_heartbeat_count(app, TK_HB_INVALID);
        refused(r, "invalid_body", e.msg);
        json_decref(body);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    const struct tk_api_client_auth *c = client_of(r);
    bool recovered = false;
    tk_rc rc = tk_agent_heartbeat(db, c->p.tenant_id, c->p.client_id, id, json_string_value(st),
                                  r->request_id, &recovered, &e);
    json_decref(body);
    if (rc == TK_ENOTFOUND) {
        tk_api_heartbeat_count(app, TK_HB_NOT_FOUND);
        refused(r, "unknown_agent", e.msg);
    }
    if (rc != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_api_heartbeat_count(app, TK_HB_OK);
    tk_reply_json(r, 200,
                  json_pack("{s:b, s:s}", "success", 1, "message", "Heartbeat received"));
}

/* GET /v1/agents?client_id&status&limit&cursor -> {agents, next_cursor}. */
void tk_h_agents_list(struct tk_req *r)
{
    struct tk_err e;
    static const char *const params[] = {"client_id", "status", "limit", "cursor"};
    for (size_t i = 0; i < TK_NELEM(params); i++)
        if (!tk_req_query_unique(r, params[i])) return;
    int64_t limit = 50;
    const char *lv = tk_req_query(r, "limit");
    const char *cursor = tk_req_query(r, "cursor");
    const char *client = tk_req_query(r, "client_id");
    const char *status = tk_req_query(r, "status");
    if (lv && tk_parse_int(lv, 1, AGENTS_MAX_LIMIT, &limit) != TK_OK)
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "limit",
                     "limit must be an integer from 1 to %d", AGENTS_MAX_LIMIT);
    else if (cursor && !tk_uuid_valid(cursor))
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "cursor",
                     "cursor must be the next_cursor of a previous page");
    else if (client && !tk_uuid_valid(client))
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "client_id",
                     "client_id must be a client's id (a UUID)");
    else if (status && strcmp(status, "online") && strcmp(status, "stale"))
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "status",
                     "status must be online or stale");
    else
        tk_err_clear(&e);
    if (e.rc != TK_OK) {
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_agent_list(db, tk_api_principal(r)->tenant_id, client, status, cursor, (int)limit, &a,
                      next, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "agents", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

/* ---- the stale sweep ---- */

static const struct tk_lease_spec sweep_lease = {"agent_sweep", "due_at"};

/* One round: the sweep when this node holds the lease, then the counts. */
static void sweep_round(struct tk_app *app, const char *owner)
{
    struct tk_err e;
    struct tk_db *db = tk_store_get(app->store, &e);
    if (!db) return;
    int64_t now = tk_now_ms();
    struct tk_rows *rows = NULL;
    tk_rc rc = tk_lease_claim(db, &sweep_lease, owner, now, now + SWEEP_LEASE_MS, 1, &rows, &e);
    bool held = rc == TK_OK && tk_rows_count(rows) == 1;
    tk_rows_free(rows);
    if (held) {
        int64_t stale_ms = (int64_t)app->cfg->agent_heartbeat_interval *
                           app->cfg->agent_stale_after * 1000;
        int n = 0;
        rc = tk_agent_sweep(db, now, stale_ms, &n, &e);
        if (rc != TK_OK) tk_warn("agents: the stale sweep failed: %s", e.msg);
        if (n) tk_info("agents: %d agent(s) went stale", n);
        /* next round due in a second; the lease ends now, fenced by owner */
        struct tk_err fe;
        if (tk_db_exec(db,
                       "UPDATE agent_sweep SET due_at = ?, lease_owner = NULL, lease_until = NULL "
                       "WHERE id = 'sweep' AND lease_owner = ?",
                       TK_ARGS(TK_INT(tk_now_ms() + SWEEP_DUE_MS), TK_TEXT(owner)), NULL,
                       &fe) != TK_OK)
            tk_debug("agents: could not hand the sweep's lease back: %s", fe.msg);
    }
    int64_t online, stale;
    if (tk_agent_counts(db, &online, &stale, &e) == TK_OK) {
        atomic_store(&app->agents_online, online);
        atomic_store(&app->agents_stale, stale);
    }
    tk_store_put(db);
}

static void sweep_worker(struct tk_worker *w, void *arg)
{
    struct tk_app *app = arg;
    char owner[TK_UUID_LEN + 72];
    char u[TK_UUID_LEN + 1];
    tk_uuid7(u);
    snprintf(owner, sizeof owner, "%.63s/%s", app->node, u);
    while (tk_worker_wait(w, SWEEP_EVERY_MS)) {
        /* paused while sealed: its events are chained with the keyring's keys */
        if (tk_keyring_sealed(app->keyring)) continue;
        sweep_round(app, owner);
    }
}

void tk_api_agents_start(struct tk_app *app)
{
    struct tk_err e;
    if (tk_worker_start(&app->agent_sweep, "agent sweep", sweep_worker, app, &e) != TK_OK)
        tk_error("agents: %s; agents will not go stale", e.msg);
}

void tk_api_agents_stop(struct tk_app *app)
{
    tk_worker_stop(&app->agent_sweep, 0);
}
