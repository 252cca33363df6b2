/* agents.c: agents of clients (see clients.h). */
#include "clients.h"

#include "../events/events.h"

#include <stdio.h>
#include <string.h>

/* 1..max bytes of the characters allowed by kind: 'i' ids (A-Z a-z 0-9 . _ : -),
 * 'h' host names (A-Z a-z 0-9 . _ -), 'v' printable ASCII without spaces. */
static tk_rc check_text(json_t *body, const char *field, size_t max, char kind, bool required,
                        struct tk_err *e)
{
    json_t *v = json_object_get(body, field);
    if (!v) {
        if (!required) return TK_OK;
        return tk_err_field(e, TK_EINVAL, "missing_field", field, "%s is required", field);
    }
    const char *what = kind == 'i'   ? "A-Z a-z 0-9 . _ : -"
                       : kind == 'h' ? "A-Z a-z 0-9 . _ -"
                                     : "printable ASCII without spaces";
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > max)
        return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                            "%s must be a string of 1 to %zu of %s", field, max, what);
    const char *s = json_string_value(v);
    for (size_t i = 0; i < json_string_length(v); i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool ok = kind == 'i'   ? alnum || c == '.' || c == '_' || c == ':' || c == '-'
                  : kind == 'h' ? alnum || c == '.' || c == '_' || c == '-'
                                : c > 0x20 && c < 0x7f;
        if (!ok)
            return tk_err_field(e, TK_EINVAL, "invalid_field", field,
                                "%s must be 1 to %zu of %s (character %zu is not)", field, max,
                                what, i + 1);
    }
    return TK_OK;
}

tk_rc tk_agent_check(json_t *body, struct tk_err *e)
{
    tk_rc rc = check_text(body, "logical_agent_id", TK_AGENT_ID_MAX, 'i', true, e);
    if (rc == TK_OK) rc = check_text(body, "hostname", TK_AGENT_HOST_MAX, 'h', true, e);
    if (rc == TK_OK) rc = check_text(body, "version", TK_AGENT_VERSION_MAX, 'v', true, e);
    return rc;
}

tk_rc tk_agent_check_status(json_t *status, struct tk_err *e)
{
    if (!status) return TK_OK;
    json_t *b = json_pack("{s:O}", "status", status);
    tk_rc rc = check_text(b, "status", TK_AGENT_STATUS_MAX, 'i', true, e);
    json_decref(b);
    return rc;
}

static json_t *time_or_null(const struct tk_rows *r, int i, int c)
{
    if (tk_rows_null(r, i, c)) return json_null();
    char at[32];
    tk_time_fmt(tk_rows_int(r, i, c), at, sizeof at);
    return json_string(at);
}

#define AGENT_COLS                                                                             \
    "id, client_id, logical_agent_id, hostname, version, reported_status, stale, stale_since, " \
    "registered_at, last_heartbeat_at"

static json_t *agent_json(const struct tk_rows *r, int i)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", tk_rows_text(r, i, 0),
                          "client_id", tk_rows_text(r, i, 1), "logical_agent_id",
                          tk_rows_text(r, i, 2), "hostname", tk_rows_text(r, i, 3), "version",
                          tk_rows_text(r, i, 4), "status",
                          tk_rows_int(r, i, 6) ? "stale" : "online", "reported_status",
                          tk_rows_text(r, i, 5));
    json_object_set_new(o, "stale_since", time_or_null(r, i, 7));
    json_object_set_new(o, "registered_at", time_or_null(r, i, 8));
    json_object_set_new(o, "last_heartbeat_at", time_or_null(r, i, 9));
    return o;
}

/* The agent's event, in the caller's transaction. */
static tk_rc agent_event(struct tk_db *db, const char *tenant_id, const char *agent_id,
                         const char *client_id, bool stale, int64_t since, const char *trace_id,
                         struct tk_err *e)
{
    char at[32];
    tk_time_fmt(since, at, sizeof at);
    json_t *d = json_pack("{s:s, s:s}", "client_id", client_id,
                          stale ? "last_heartbeat_at" : "stale_since", at);
    struct tk_event ev = {
        .tenant_id = tenant_id,
        .trace_id = trace_id,
        .kind = "agent",
        .source = stale ? "scheduler" : "api",
        .action = stale ? "stale" : "recovered",
        .outcome = stale ? "error" : "ok",
        .subject_type = "agent",
        .subject_id = agent_id,
        .message = stale ? "the agent sent no heartbeat in time: stale"
                         : "the agent sends heartbeats again",
        .detail = d,
        .latency_us = -1,
    };
    tk_rc rc = tk_event_emit_in(db, &ev, e);
    json_decref(d);
    return rc;
}

static tk_rc agent_by_id(struct tk_db *db, const char *tenant_id, const char *id, json_t **out,
                         struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no agent %s", id);
    else
        *out = agent_json(r, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_agent_register(struct tk_db *db, const char *tenant_id, const char *client_id,
                        json_t *body, const char *trace_id, json_t **out, struct tk_err *e)
{
    tk_rc rc = tk_agent_check(body, e);
    if (rc != TK_OK) return rc;
    const char *lid = json_string_value(json_object_get(body, "logical_agent_id"));
    const char *host = json_string_value(json_object_get(body, "hostname"));
    const char *ver = json_string_value(json_object_get(body, "version"));
    int64_t now = tk_now_ms();
    struct tk_rows *r = NULL;
    rc = tk_db_begin(db, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "SELECT id, stale, last_heartbeat_at FROM agents WHERE tenant_id = ? AND "
                        "client_id = ? AND logical_agent_id = ?",
                        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(client_id), TK_TEXT(lid)), &r, e);
    char id[TK_UUID_LEN + 1] = "";
    if (rc == TK_OK && tk_rows_count(r) == 1) {
        snprintf(id, sizeof id, "%s", tk_rows_text(r, 0, 0));
        rc = tk_db_exec(db,
                        "UPDATE agents SET hostname = ?, version = ?, last_heartbeat_at = ?, "
                        "stale = 0, stale_since = NULL WHERE id = ?",
                        TK_ARGS(TK_TEXT(host), TK_TEXT(ver), TK_INT(now), TK_TEXT(id)), NULL, e);
        if (rc == TK_OK && tk_rows_int(r, 0, 1))
            rc = agent_event(db, tenant_id, id, client_id, false, tk_rows_int(r, 0, 2),
                             trace_id, e);
    } else if (rc == TK_OK) {
        tk_uuid7(id);
        /* two registrations at once: one insert wins, the other fails and is retried by the agent */
        rc = tk_db_exec(db,
                        "INSERT INTO agents (id, tenant_id, client_id, logical_agent_id, hostname, "
                        "version, reported_status, registered_at, last_heartbeat_at) VALUES "
                        "(?, ?, ?, ?, ?, ?, 'registered', ?, ?)",
                        TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id), TK_TEXT(client_id), TK_TEXT(lid),
                                TK_TEXT(host), TK_TEXT(ver), TK_INT(now), TK_INT(now)),
                        NULL, e);
    }
    tk_rows_free(r);
    if (rc == TK_OK) rc = agent_by_id(db, tenant_id, id, out, e);
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    return rc;
}

tk_rc tk_agent_heartbeat(struct tk_db *db, const char *tenant_id, const char *client_id,
                         const char *agent_id, const char *status, const char *trace_id,
                         bool *recovered, struct tk_err *e)
{
    *recovered = false;
    int64_t now = tk_now_ms();
    /* the common case: one statement, no transaction */
    tk_rc rc = tk_db_exec(db,
                          "UPDATE agents SET last_heartbeat_at = ?, reported_status = "
                          "COALESCE(CAST(? AS TEXT), reported_status) WHERE id = ? AND tenant_id = ? "
                          "AND client_id = ? AND stale = 0",
                          TK_ARGS(TK_INT(now), TK_TEXT(status), TK_TEXT(agent_id),
                                  TK_TEXT(tenant_id), TK_TEXT(client_id)),
                          NULL, e);
    if (rc != TK_OK || tk_db_changes(db) == 1) return rc;
    /* stale (it comes back: the flip and its event together), or not this client's */
    struct tk_rows *r = NULL;
    rc = tk_db_begin(db, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "SELECT last_heartbeat_at FROM agents WHERE id = ? AND tenant_id = ? AND "
                        "client_id = ? AND stale = 1",
                        TK_ARGS(TK_TEXT(agent_id), TK_TEXT(tenant_id), TK_TEXT(client_id)), &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id",
                          "no agent %s of this client (register it first)", agent_id);
    int64_t last = rc == TK_OK ? tk_rows_int(r, 0, 0) : 0;
    tk_rows_free(r);
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "UPDATE agents SET last_heartbeat_at = ?, reported_status = "
                        "COALESCE(CAST(? AS TEXT), reported_status), stale = 0, stale_since = NULL "
                        "WHERE id = ? AND stale = 1",
                        TK_ARGS(TK_INT(now), TK_TEXT(status), TK_TEXT(agent_id)), NULL, e);
    bool flipped = rc == TK_OK && tk_db_changes(db) == 1;
    if (flipped) rc = agent_event(db, tenant_id, agent_id, client_id, false, last, trace_id, e);
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    if (rc == TK_OK) *recovered = flipped;
    return rc;
}

tk_rc tk_agent_beats_flush(struct tk_db *db, const struct tk_agent_beat *b, int n,
                           int *recovered, struct tk_err *e)
{
    *recovered = 0;
    if (n <= 0) return TK_OK;
    int back = 0;
    tk_rc rc = tk_db_begin(db, e);
    for (int i = 0; rc == TK_OK && i < n; i++) {
        const char *st = b[i].status[0] ? b[i].status : NULL;
        rc = tk_db_exec(db,
                        "UPDATE agents SET last_heartbeat_at = ?, reported_status = "
                        "COALESCE(CAST(? AS TEXT), reported_status) WHERE id = ? AND tenant_id = ? "
                        "AND client_id = ? AND stale = 0 AND last_heartbeat_at < ?",
                        TK_ARGS(TK_INT(b[i].at), TK_TEXT(st), TK_TEXT(b[i].id),
                                TK_TEXT(b[i].tenant_id), TK_TEXT(b[i].client_id), TK_INT(b[i].at)),
                        NULL, e);
        if (rc != TK_OK || tk_db_changes(db) == 1) continue;
        /* stale meanwhile (the sweep of some node): it comes back, once */
        struct tk_rows *r = NULL;
        rc = tk_db_exec(db,
                        "SELECT last_heartbeat_at FROM agents WHERE id = ? AND tenant_id = ? AND "
                        "client_id = ? AND stale = 1 AND last_heartbeat_at < ?",
                        TK_ARGS(TK_TEXT(b[i].id), TK_TEXT(b[i].tenant_id), TK_TEXT(b[i].client_id),
                                TK_INT(b[i].at)),
                        &r, e);
        bool stale = rc == TK_OK && tk_rows_count(r) == 1;
        int64_t last = stale ? tk_rows_int(r, 0, 0) : 0;
        tk_rows_free(r);
        if (!stale) continue; /* newer already written, or the agent is gone */
        rc = tk_db_exec(db,
                        "UPDATE agents SET last_heartbeat_at = ?, reported_status = "
                        "COALESCE(CAST(? AS TEXT), reported_status), stale = 0, stale_since = NULL "
                        "WHERE id = ? AND stale = 1",
                        TK_ARGS(TK_INT(b[i].at), TK_TEXT(st), TK_TEXT(b[i].id)), NULL, e);
        if (rc == TK_OK && tk_db_changes(db) == 1) {
            rc = agent_event(db, b[i].tenant_id, b[i].id, b[i].client_id, false, last, NULL, e);
            back++;
        }
    }
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    if (rc == TK_OK) *recovered = back;
    return rc;
}

tk_rc tk_agent_owner(struct tk_db *db, const char *agent_id, bool *found,
                     char tenant_id[TK_UUID_LEN + 1], char client_id[TK_UUID_LEN + 1],
                     bool *stale, int64_t *last_ms, struct tk_err *e)
{
    struct tk_rows *r;
    *found = false;
    tk_rc rc = tk_db_exec(db,
                          "SELECT tenant_id, client_id, stale, last_heartbeat_at FROM agents "
                          "WHERE id = ?",
                          TK_ARGS(TK_TEXT(agent_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 1) {
        *found = true;
        snprintf(tenant_id, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 0));
        snprintf(client_id, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 1));
        *stale = tk_rows_int(r, 0, 2) != 0;
        *last_ms = tk_rows_int(r, 0, 3);
    }
    tk_rows_free(r);
    return TK_OK;
}

tk_rc tk_agent_list(struct tk_db *db, const char *tenant_id, const char *client_id,
                    const char *status, const char *before, int limit, json_t **out,
                    char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    int64_t stale = status ? !strcmp(status, "stale") : -1;
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = ? "
                          "AND (CAST(? AS TEXT) IS NULL OR client_id = ?) "
                          "AND (? < 0 OR stale = ?) "
                          "AND (CAST(? AS TEXT) IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(client_id), TK_TEXT(client_id),
                                  TK_INT(stale), TK_INT(stale), TK_TEXT(before), TK_TEXT(before),
                                  TK_INT(limit + 1)),
                          &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++) json_array_append_new(a, agent_json(r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_agent_sweep(struct tk_db *db, int64_t now_ms, int64_t stale_ms, int *n, struct tk_err *e)
{
    *n = 0;
    int64_t cutoff = now_ms - stale_ms;
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT id, tenant_id, client_id, last_heartbeat_at FROM agents WHERE "
                          "stale = 0 AND last_heartbeat_at < ? ORDER BY last_heartbeat_at LIMIT 500",
                          TK_ARGS(TK_INT(cutoff)), &r, e);
    if (rc != TK_OK) return rc;
    for (int i = 0; rc == TK_OK && i < tk_rows_count(r); i++) {
        const char *id = tk_rows_text(r, i, 0);
        rc = tk_db_begin(db, e);
        /* conditional: a heartbeat that came meanwhile keeps it online */
        if (rc == TK_OK)
            rc = tk_db_exec(db,
                            "UPDATE agents SET stale = 1, stale_since = ? WHERE id = ? AND "
                            "stale = 0 AND last_heartbeat_at < ?",
                            TK_ARGS(TK_INT(now_ms), TK_TEXT(id), TK_INT(cutoff)), NULL, e);
        if (rc == TK_OK && tk_db_changes(db) == 1) {
            rc = agent_event(db, tk_rows_text(r, i, 1), id, tk_rows_text(r, i, 2), true,
                             tk_rows_int(r, i, 3), NULL, e);
            if (rc == TK_OK) (*n)++;
        }
        if (rc == TK_OK) rc = tk_db_commit(db, e);
        if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_agent_counts(struct tk_db *db, int64_t *online, int64_t *stale, struct tk_err *e)
{
    struct tk_rows *r;
    *online = *stale = 0;
    tk_rc rc = tk_db_exec(db, "SELECT stale, COUNT(*) FROM agents GROUP BY stale", NULL, 0, &r, e);
    if (rc != TK_OK) return rc;
    for (int i = 0; i < tk_rows_count(r); i++) {
        if (tk_rows_int(r, i, 0))
            *stale += tk_rows_int(r, i, 1);
        else
            *online += tk_rows_int(r, i, 1);
    }
    tk_rows_free(r);
    return TK_OK;
}
