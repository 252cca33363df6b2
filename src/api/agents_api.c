/* agents_api.c: POST /v1/agents/register and POST /v1/agents/{id}/heartbeat
 * (a client token), GET /v1/agents (an operator), and the stale sweep: one
 * worker per node, of which one at a time (the lease on agent_sweep) marks
 * agents stale; see clients/clients.h. */
#include "api.h"

#include "../clients/clients.h"
#include "../common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define SWEEP_EVERY_MS 500
#define SWEEP_DUE_MS 1000
#define SWEEP_LEASE_MS 10000

/* ---- heartbeats in memory ----
 *
 * A heartbeat is noted in a bounded table keyed by agent id (HB_STRIPES
 * stripes, each its own lock and an open-addressing table of HB_PER_STRIPE
 * entries in twice as many slots) and written by the sweep worker in one
 * transaction about every HB_FLUSH_MS (tk_agent_beats_flush). An entry also
 * caches the agent's tenant and client: another client's agent is a 404
 * without a store read; an unknown id costs one read (not cached: the ids
 * are the caller's choice). A heartbeat is written at once (direct) when
 * the agent is not in the table yet (the read that fills it says whether
 * it is stale), when its last heartbeat noted here is stale_ms / 2 old or
 * more (it may be stale: it comes back now, with its event), or when the
 * stripe is full. The sweep flushes before it looks and marks an agent
 * stale only HB_GRACE_MS after stale_ms, so a heartbeat noted on another
 * node but not yet written does not make it stale; if it did anyway, the
 * flush brings it back, once. SIGTERM writes what is pending; kill -9 loses
 * at most the last HB_FLUSH_MS of heartbeats (last_heartbeat_at is then up
 * to a second old). */

#define HB_STRIPES 16
#define HB_PER_STRIPE 512
#define HB_SLOTS (2 * HB_PER_STRIPE)
#define HB_FLUSH_MS 1000
#define HB_GRACE_MS (2 * HB_FLUSH_MS)
#define HB_IDLE_MS (10 * 60 * 1000) /* an entry with nothing pending leaves after this */

struct hb_entry {
    struct tk_agent_beat b; /* b.id "" = free slot; b.at the last heartbeat noted */
    int64_t stored;         /* the heartbeat last written (or read) */
    int64_t seen;           /* last use of the entry */
};

struct hb_stripe {
    pthread_mutex_t mu;
    int count;
    struct hb_entry slot[HB_SLOTS];
};

struct tk_hb_table {
    struct hb_stripe s[HB_STRIPES];
};

static uint64_t hb_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static struct hb_stripe *hb_stripe_of(struct tk_hb_table *t, const char *id)
{
    return &t->s[hb_hash(id) % HB_STRIPES];
}

/* The entry of id, or the free slot where it would go (under the stripe's lock). */
static struct hb_entry *hb_find(struct hb_stripe *s, const char *id)
{
    for (size_t i = (hb_hash(id) / HB_STRIPES) % HB_SLOTS, n = 0; n < HB_SLOTS;
         i = (i + 1) % HB_SLOTS, n++)
        if (!s->slot[i].b.id[0] || !strcmp(s->slot[i].b.id, id)) return &s->slot[i];
    return NULL; /* not reached: at most half the slots are used */
}

static struct tk_hb_table *hb_new(void)
{
    struct tk_hb_table *t = tk_calloc(1, sizeof *t);
    for (int i = 0; i < HB_STRIPES; i++) pthread_mutex_init(&t->s[i].mu, NULL);
    return t;
}

static void hb_free(struct tk_hb_table *t)
{
    if (!t) return;
    for (int i = 0; i < HB_STRIPES; i++) pthread_mutex_destroy(&t->s[i].mu);
    free(t);
}

/* Remember agent id's owner (register, or a read on a miss); stored its
 * last heartbeat in the store. False when the stripe is full. */
static bool hb_remember(struct tk_hb_table *t, const char *id, const char *tenant_id,
                        const char *client_id, int64_t stored, int64_t now)
{
    if (!t) return false;
    struct hb_stripe *s = hb_stripe_of(t, id);
    bool ok = true;
    pthread_mutex_lock(&s->mu);
    struct hb_entry *h = hb_find(s, id);
    if (h && h->b.id[0]) {
        if (stored > h->stored) h->stored = stored;
        if (stored > h->b.at) h->b.at = stored;
        h->seen = now;
    } else if (h && s->count < HB_PER_STRIPE) {
        memset(h, 0, sizeof *h);
        snprintf(h->b.id, sizeof h->b.id, "%s", id);
        snprintf(h->b.tenant_id, sizeof h->b.tenant_id, "%s", tenant_id);
        snprintf(h->b.client_id, sizeof h->b.client_id, "%s", client_id);
        h->b.at = h->stored = stored;
        h->seen = now;
        s->count++;
    } else {
        ok = false;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

enum { HB_NOTED, HB_FOREIGN, HB_MISS, HB_DIRECT };

/* Note a heartbeat of id from (tenant, client) at now: HB_NOTED (to be
 * flushed), HB_FOREIGN (another client's agent), HB_MISS (not in the table)
 * or HB_DIRECT (maybe stale: write it at once; noted as written). */
static int hb_note(struct tk_hb_table *t, const char *id, const char *tenant_id,
                   const char *client_id, const char *status, int64_t now, int64_t stale_ms)
{
    if (!t) return HB_MISS;
    struct hb_stripe *s = hb_stripe_of(t, id);
    int out;
    pthread_mutex_lock(&s->mu);
    struct hb_entry *h = hb_find(s, id);
    if (!h || !h->b.id[0]) {
        out = HB_MISS;
    } else if (strcmp(h->b.tenant_id, tenant_id) || strcmp(h->b.client_id, client_id)) {
        out = HB_FOREIGN;
    } else {
        h->seen = now;
        out = now - h->b.at >= stale_ms / 2 || now < h->b.at - HB_FLUSH_MS ? HB_DIRECT : HB_NOTED;
        if (now > h->b.at) h->b.at = now;
        if (status) snprintf(h->b.status, sizeof h->b.status, "%s", status);
        if (out == HB_DIRECT) {
            h->stored = h->b.at;
            h->b.status[0] = '\0';
        }
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

/* Rebuild a stripe without its idle entries (under its lock). */
static void hb_prune(struct hb_stripe *s, int64_t now)
{
    if (s->count < HB_PER_STRIPE / 2) return;
    struct hb_entry *old = tk_malloc(sizeof s->slot);
    memcpy(old, s->slot, sizeof s->slot);
    memset(s->slot, 0, sizeof s->slot);
    s->count = 0;
    for (size_t i = 0; i < HB_SLOTS; i++) {
        const struct hb_entry *h = &old[i];
        if (!h->b.id[0] || (h->b.at <= h->stored && now - h->seen >= HB_IDLE_MS)) continue;
        *hb_find(s, h->b.id) = *h;
        s->count++;
    }
    free(old);
}

/* Write the pending heartbeats in one transaction (all stripes); false
 * when the store refused (they stay pending). */
static bool hb_flush(struct tk_app *app, struct tk_db *db)
{
    struct tk_hb_table *t = app->heartbeats;
    if (!t) return true;
    int64_t now = tk_now_ms();
    struct tk_agent_beat *due = tk_malloc(sizeof *due * HB_STRIPES * HB_PER_STRIPE);
    int n = 0;
    for (int k = 0; k < HB_STRIPES; k++) {
        struct hb_stripe *s = &t->s[k];
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < HB_SLOTS; i++)
            if (s->slot[i].b.id[0] && s->slot[i].b.at > s->slot[i].stored) due[n++] = s->slot[i].b;
        pthread_mutex_unlock(&s->mu);
    }
    struct tk_err e;
    int back = 0;
    tk_rc rc = n ? tk_agent_beats_flush(db, due, n, &back, &e) : TK_OK;
    if (rc != TK_OK)
        tk_debug("agents: %d heartbeat(s) not written yet (next try in %d ms): %s", n,
                 HB_FLUSH_MS, e.msg);
    if (back) tk_info("agents: %d agent(s) came back", back);
    if (n && rc == TK_OK && app->m_hb_flushes) tk_metric_inc(app->m_hb_flushes, 0);
    for (int k = 0; k < HB_STRIPES; k++) {
        struct hb_stripe *s = &t->s[k];
        pthread_mutex_lock(&s->mu);
        for (int i = 0; rc == TK_OK && i < n; i++) {
            if (hb_stripe_of(t, due[i].id) != s) continue;
            struct hb_entry *h = hb_find(s, due[i].id);
            if (!h || !h->b.id[0]) continue;
            if (due[i].at > h->stored) h->stored = due[i].at;
            if (h->b.at <= h->stored) h->b.status[0] = '\0';
        }
        hb_prune(s, now);
        pthread_mutex_unlock(&s->mu);
    }
    free(due);
    return rc == TK_OK;
}

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
    /* the heartbeat cache knows it: its heartbeats are noted in memory */
    const char *aid = json_string_value(json_object_get(o, "id"));
    if (aid)
        hb_remember(((struct tk_app *)r->app)->heartbeats, aid, c->p.tenant_id, c->p.client_id,
                    tk_now_ms(), tk_now_ms());
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
    const struct tk_api_client_auth *c = client_of(r);
    int64_t now = tk_now_ms();
    int64_t stale_ms = (int64_t)app->cfg->agent_heartbeat_interval * app->cfg->agent_stale_after *
                       1000;
    /* the hot path: noted in memory, no store read or write */
    int how = hb_note(app->heartbeats, id, c->p.tenant_id, c->p.client_id, json_string_value(st),
                      now, stale_ms);
    if (how == HB_NOTED || how == HB_FOREIGN) {
        json_decref(body);
        if (how == HB_FOREIGN) {
            tk_api_heartbeat_count(app, TK_HB_NOT_FOUND);
            refused(r, "unknown_agent", "a heartbeat for another client's agent");
            tk_err_field(&e, TK_ENOTFOUND, "not_found", "id",
                         "no agent %s of this client (register it first)", id);
            tk_api_reply_error(r, &e, NULL);
            return;
        }
        tk_api_heartbeat_count(app, TK_HB_OK);
        tk_reply_json(r, 200,
                      json_pack("{s:b, s:s}", "success", 1, "message", "Heartbeat received"));
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    tk_rc rc = TK_OK;
    if (how == HB_MISS) {
        /* one read fills the cache: the owner, and whether it may be stale */
        bool found = false, stale = false;
        int64_t last = 0;
        char tenant[TK_UUID_LEN + 1] = "", client[TK_UUID_LEN + 1] = "";
        rc = tk_agent_owner(db, id, &found, tenant, client, &stale, &last, &e);
        if (rc == TK_OK && found) {
            bool mine = !strcmp(tenant, c->p.tenant_id) && !strcmp(client, c->p.client_id);
            bool cached = hb_remember(app->heartbeats, id, tenant, client, last, now);
            if (mine && cached && !stale)
                how = hb_note(app->heartbeats, id, c->p.tenant_id, c->p.client_id,
                              json_string_value(st), now, stale_ms);
        }
    }
    bool recovered = false;
    if (rc == TK_OK && how == HB_NOTED) {
        /* noted: nothing more to write */
    } else if (rc == TK_OK) {
        rc = tk_agent_heartbeat(db, c->p.tenant_id, c->p.client_id, id, json_string_value(st),
                                r->request_id, &recovered, &e);
        if (rc == TK_OK && app->m_hb_flushes) tk_metric_inc(app->m_hb_flushes, 1);
        /* written: the cache knows it (its next heartbeats are noted) */
        if (rc == TK_OK) hb_remember(app->heartbeats, id, c->p.tenant_id, c->p.client_id, now, now);
    }
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
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    const char *client = tk_req_query(r, "client_id");
    const char *status = tk_req_query(r, "status");
    if (client && !tk_uuid_valid(client))
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
                               app->cfg->agent_stale_after * 1000 + HB_GRACE_MS;
        int n = 0;
        /* this node's pending heartbeats first (other nodes': HB_GRACE_MS) */
        if (hb_flush(app, db))
            rc = tk_agent_sweep(db, tk_now_ms(), stale_ms, &n, &e);
        else
            rc = tk_err_set(&e, TK_EUNAVAIL, "store", "the heartbeats noted here were not written");
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
    int64_t flushed = 0;
    while (tk_worker_wait(w, SWEEP_EVERY_MS)) {
        /* paused while sealed: its events are chained with the keyring's keys */
        if (tk_keyring_sealed(app->keyring)) continue;
        if (tk_now_ms() - flushed >= HB_FLUSH_MS - SWEEP_EVERY_MS / 2) {
            flushed = tk_now_ms();
            struct tk_err e;
            struct tk_db *db = tk_store_get(app->store, &e);
            if (db) hb_flush(app, db);
            tk_store_put(db);
        }
        sweep_round(app, owner);
    }
    /* stopping: what is pending (SIGTERM loses no heartbeat) */
    struct tk_err e;
    struct tk_db *db = tk_store_get(app->store, &e);
    if (!db || !hb_flush(app, db))
        tk_warn("agents: the last heartbeats noted were not written (%s)",
                db ? "the store refused them" : e.msg);
    tk_store_put(db);
}

void tk_api_agents_start(struct tk_app *app)
{
    struct tk_err e;
    if (!app->heartbeats) app->heartbeats = hb_new();
    if (tk_worker_start(&app->agent_sweep, "agent sweep", sweep_worker, app, &e) != TK_OK)
        tk_error("agents: %s; agents will not go stale", e.msg);
}

void tk_api_agents_stop(struct tk_app *app)
{
    tk_worker_stop(&app->agent_sweep, 0); /* writes the pending heartbeats */
    hb_free(app->heartbeats);             /* after the HTTP server: no more notes */
    app->heartbeats = NULL;
}
