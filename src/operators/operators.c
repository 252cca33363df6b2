/* operators.c: see operators.h. */
#include "operators.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

tk_rc tk_tenant_default(struct tk_db *db, char id[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r = NULL;
    char fresh[TK_UUID_LEN + 1];
    tk_uuid7(fresh);
    /* Two nodes starting at once on an empty database: one insert wins. */
    tk_rc rc = tk_db_exec(db,
                          "INSERT INTO tenants (id, name, created_at) VALUES (?, 'default', ?) "
                          "ON CONFLICT (name) DO NOTHING",
                          TK_ARGS(TK_TEXT(fresh), TK_INT(tk_now_ms())), NULL, e);
    if (rc == TK_OK)
        rc = tk_db_exec(db, "SELECT id FROM tenants WHERE name = 'default'", NULL, 0, &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_set(e, TK_EINTERNAL, "store_error", "the default tenant is missing");
    if (rc == TK_OK) snprintf(id, TK_UUID_LEN + 1, "%s", tk_rows_text(r, 0, 0));
    tk_rows_free(r);
    return rc;
}

const char *tk_principal_kind_name(enum tk_principal_kind k)
{
    switch (k) {
    case TK_PRINCIPAL_OPERATOR_TOKEN:
        return "operator token";
    case TK_PRINCIPAL_CLIENT_TOKEN:
        return "client token";
    case TK_PRINCIPAL_SESSION:
        return "session";
    case TK_PRINCIPAL_OAUTH_CLIENT:
        return "OAuth client";
    default:
        return "none";
    }
}

bool tk_role_valid(const char *role)
{
    return role && (!strcmp(role, "admin") || !strcmp(role, "operator") || !strcmp(role, "viewer"));
}

tk_rc tk_optoken_create(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                        const char *name, const char *role, int64_t expires_at,
                        char token_out[TK_ISSUED_MAX],
                        char id_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    char hash[TK_HASH_HEX], preview[24], kid[17];
    tk_issued_new(TK_KIND_OPERATOR, token_out);
    tk_rc rc = tk_keyring_hash(k, token_out, strlen(token_out), hash, kid, e);
    if (rc != TK_OK) {
        tk_wipe(token_out, TK_ISSUED_MAX);
        return rc;
    }
    tk_issued_preview(token_out, preview);
    tk_uuid7(id_out);
    return tk_db_exec(db,
                      "INSERT INTO operator_tokens (id, tenant_id, name, role, token_hash, "
                      "hash_key, preview, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      TK_ARGS(TK_TEXT(id_out), TK_TEXT(tenant_id), TK_TEXT(name), TK_TEXT(role),
                              TK_TEXT(hash), TK_TEXT(kid),
                              TK_TEXT(preview), TK_INT(tk_now_ms()),
                              expires_at ? TK_INT(expires_at) : TK_NULLV),
                      NULL, e);
}

tk_rc tk_optoken_count_active(struct tk_db *db, int64_t *n, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT COUNT(*) FROM operator_tokens WHERE revoked_at IS NULL",
                          NULL, 0, &r, e);
    if (rc == TK_OK) *n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_optoken_parse(const char *header, const char **tok, size_t *len, struct tk_err *e)
{
    if (!header || !*header)
        return tk_err_set(e, TK_EAUTH, "missing",
                          "this route needs an Authorization: Bearer <operator token> header");
    if (strncasecmp(header, "Bearer ", 7) != 0)
        return tk_err_set(e, TK_EAUTH, "malformed",
                          "the Authorization header must be 'Bearer <operator token>'");
    const char *t = header + 7;
    while (*t == ' ') t++;
    size_t n = strlen(t);
    struct tk_err fe;
    if (tk_issued_check(TK_KIND_OPERATOR, t, n, &fe) != TK_OK)
        return tk_err_set(e, TK_EAUTH, "malformed", "%s", fe.msg);
    *tok = t;
    *len = n;
    return TK_OK;
}

tk_rc tk_optoken_lookup_hash(struct tk_db *db, const char *hash, struct tk_principal *p,
                             int64_t *expires_at, int64_t *epoch, struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    *expires_at = 0;
    *epoch = 0;
    struct tk_rows *r;
    /* One statement: the row and its tenant's auth epoch are one snapshot,
     * so a cache entry filled from them is invalidated by any later change. */
    tk_rc rc = tk_db_exec(db,
                          "SELECT o.id, o.tenant_id, o.name, o.role, o.revoked_at, o.expires_at, "
                          "t.auth_seq FROM operator_tokens o JOIN tenants t ON t.id = o.tenant_id "
                          "WHERE o.token_hash = ?",
                          TK_ARGS(TK_TEXT(hash)), &r, e);
    if (rc != TK_OK) return rc;
    int64_t now = tk_now_ms();
    if (tk_rows_count(r) == 1) {
        /* also on failure: the row's tenant gets the event */
        snprintf(p->id, sizeof p->id, "%s", tk_rows_text(r, 0, 0));
        snprintf(p->tenant_id, sizeof p->tenant_id, "%s", tk_rows_text(r, 0, 1));
    }
    if (tk_rows_count(r) != 1) {
        rc = tk_err_set(e, TK_EAUTH, "unknown",
                        "the operator token is well-formed but unknown here (another "
                        "installation's, or its data dir was reset)");
    } else if (!tk_rows_null(r, 0, 4)) {
        char at[32];
        tk_time_fmt(tk_rows_int(r, 0, 4), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "revoked", "the operator token %s was revoked at %s",
                        tk_rows_text(r, 0, 0), at);
    } else if (!tk_rows_null(r, 0, 5) && tk_rows_int(r, 0, 5) <= now) {
        char at[32];
        tk_time_fmt(tk_rows_int(r, 0, 5), at, sizeof at);
        rc = tk_err_set(e, TK_EAUTH, "expired", "the operator token %s expired at %s",
                        tk_rows_text(r, 0, 0), at);
    } else {
        p->kind = TK_PRINCIPAL_OPERATOR_TOKEN;
        snprintf(p->name, sizeof p->name, "%s", tk_rows_text(r, 0, 2));
        snprintf(p->role, sizeof p->role, "%s", tk_rows_text(r, 0, 3));
        *expires_at = tk_rows_null(r, 0, 5) ? 0 : tk_rows_int(r, 0, 5);
        *epoch = tk_rows_int(r, 0, 6);
    }
    tk_rows_free(r);
    return rc;
}

tk_rc tk_optoken_lookup(struct tk_db *db, struct tk_keyring *k, const char *tok, size_t len,
                        struct tk_principal *p, struct tk_err *e)
{
    memset(p, 0, sizeof *p);
    char hash[TK_HASH_HEX];
    tk_rc rc = tk_keyring_hash(k, tok, len, hash, NULL, e);
    if (rc != TK_OK) return rc;
    int64_t expires_at, epoch;
    return tk_optoken_lookup_hash(db, hash, p, &expires_at, &epoch, e);
}

tk_rc tk_optoken_authenticate(struct tk_db *db, struct tk_keyring *k, const char *header,
                              struct tk_principal *p, struct tk_err *e)
{
    const char *tok = NULL;
    size_t len = 0;
    tk_rc rc = tk_optoken_parse(header, &tok, &len, e);
    if (rc == TK_OK) rc = tk_optoken_lookup(db, k, tok, len, p, e);
    return rc;
}

tk_rc tk_optoken_count_admins(struct tk_db *db, const char *tenant_id, int64_t *n,
                              struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db,
                          "SELECT COUNT(*) FROM operator_tokens WHERE tenant_id = ? AND role = "
                          "'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                          TK_ARGS(TK_TEXT(tenant_id), TK_INT(tk_now_ms())), &r, e);
    if (rc == TK_OK) *n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_optoken_revoke(struct tk_db *db, const char *tenant_id, const char *token_id,
                        int64_t *seq, struct tk_err *e)
{
    tk_rc rc = tk_db_exec(db,
                          "UPDATE operator_tokens SET revoked_at = ? WHERE id = ? AND tenant_id = ? "
                          "AND revoked_at IS NULL",
                          TK_ARGS(TK_INT(tk_now_ms()), TK_TEXT(token_id), TK_TEXT(tenant_id)),
                          NULL, e);
    if (rc == TK_OK && tk_db_changes(db) == 0)
        rc = tk_err_set(e, TK_ENOTFOUND, "not_found", "no active operator token %s", token_id);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    return rc;
}

tk_rc tk_optoken_set_role(struct tk_db *db, const char *tenant_id, const char *token_id,
                          const char *role, char old_role[16], int64_t *seq, struct tk_err *e)
{
    struct tk_rows *r = NULL;
    tk_rc rc = tk_db_exec(db,
                          "SELECT role FROM operator_tokens WHERE id = ? AND tenant_id = ? AND "
                          "revoked_at IS NULL",
                          TK_ARGS(TK_TEXT(token_id), TK_TEXT(tenant_id)), &r, e);
    if (rc == TK_OK && tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no active operator token %s",
                          token_id);
    if (rc == TK_OK) snprintf(old_role, 16, "%s", tk_rows_text(r, 0, 0));
    tk_rows_free(r);
    if (seq) *seq = 0;
    if (rc == TK_OK && !strcmp(old_role, role)) return TK_OK; /* nothing changes */
    if (rc == TK_OK)
        rc = tk_db_exec(db, "UPDATE operator_tokens SET role = ? WHERE id = ? AND tenant_id = ?",
                        TK_ARGS(TK_TEXT(role), TK_TEXT(token_id), TK_TEXT(tenant_id)), NULL, e);
    if (rc == TK_OK) rc = tk_tenant_auth_bump(db, tenant_id, seq, e);
    return rc;
}

static json_t *time_or_null(const struct tk_rows *r, int i, int c)
{
    if (tk_rows_null(r, i, c)) return json_null();
    char at[32];
    tk_time_fmt(tk_rows_int(r, i, c), at, sizeof at);
    return json_string(at);
}

#define TOKEN_COLUMNS                                                                          \
    "SELECT id, name, role, preview, created_at, last_used_at, expires_at, revoked_at "        \
    "FROM operator_tokens "

static json_t *token_json(const struct tk_rows *r, int i)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", tk_rows_text(r, i, 0), "name",
                          tk_rows_text(r, i, 1), "role", tk_rows_text(r, i, 2), "preview",
                          tk_rows_text(r, i, 3));
    json_object_set_new(o, "created_at", time_or_null(r, i, 4));
    json_object_set_new(o, "last_used_at", time_or_null(r, i, 5));
    json_object_set_new(o, "expires_at", time_or_null(r, i, 6));
    json_object_set_new(o, "revoked_at", time_or_null(r, i, 7));
    return o;
}

tk_rc tk_optoken_list(struct tk_db *db, const char *tenant_id, json_t **out, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, TOKEN_COLUMNS "WHERE tenant_id = ? ORDER BY id DESC",
                          TK_ARGS(TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    json_t *a = json_array();
    for (int i = 0; i < tk_rows_count(r); i++) json_array_append_new(a, token_json(r, i));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

tk_rc tk_optoken_get(struct tk_db *db, const char *tenant_id, const char *token_id, json_t **out,
                     struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, TOKEN_COLUMNS "WHERE id = ? AND tenant_id = ?",
                          TK_ARGS(TK_TEXT(token_id), TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no operator token %s", token_id);
    else
        *out = token_json(r, 0);
    tk_rows_free(r);
    return rc;
}

/* ---- uses of tokens, for last_used_at ----
 *
 * An open-addressing table (linear probing) of TK_OPTOKEN_USES_MAX entries
 * in twice as many slots; entries leave only when a flush rebuilds it, so
 * there are no tombstones. An entry is pending while its last use is newer
 * than what was written; it is due when pending and this table never wrote
 * it, or wrote it TK_OPTOKEN_LAST_USED_MS ago; it leaves once nothing is
 * pending and that time has passed. */

#define USES_SLOTS (2 * TK_OPTOKEN_USES_MAX)

struct use {
    char id[TK_UUID_LEN + 1]; /* "" = free slot */
    int64_t used;             /* last use noted */
    int64_t stored;           /* the use last written (0: none) */
    int64_t wrote_at;         /* when it was written (0: never) */
};

struct tk_optoken_uses {
    pthread_mutex_t mu;
    const char *table; /* a literal: operator_tokens or client_tokens */
    int count;
    struct use slot[USES_SLOTS];
};

static size_t use_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % USES_SLOTS);
}

/* The slot of id, or the free slot where it would go. */
static struct use *use_find(struct use *slot, const char *id)
{
    for (size_t i = use_hash(id), n = 0; n < USES_SLOTS; i = (i + 1) % USES_SLOTS, n++)
        if (!slot[i].id[0] || !strcmp(slot[i].id, id)) return &slot[i];
    return NULL; /* not reached: at most half the slots are used */
}

struct tk_optoken_uses *tk_optoken_uses_new_for(const char *table)
{
    static const char *const tables[] = {"operator_tokens", "client_tokens"};
    const char *t = NULL;
    for (size_t i = 0; i < TK_NELEM(tables); i++)
        if (table && !strcmp(table, tables[i])) t = tables[i];
    if (!t) return NULL;
    struct tk_optoken_uses *u = tk_calloc(1, sizeof *u);
    pthread_mutex_init(&u->mu, NULL);
    u->table = t;
    return u;
}

struct tk_optoken_uses *tk_optoken_uses_new(void)
{
    return tk_optoken_uses_new_for("operator_tokens");
}

void tk_optoken_uses_free(struct tk_optoken_uses *u)
{
    if (!u) return;
    pthread_mutex_destroy(&u->mu);
    free(u);
}

bool tk_optoken_use(struct tk_optoken_uses *u, const char *token_id, int64_t now_ms)
{
    if (!u || strlen(token_id) != TK_UUID_LEN) return false;
    bool ok = true;
    pthread_mutex_lock(&u->mu);
    struct use *s = use_find(u->slot, token_id);
    if (s && s->id[0]) {
        if (now_ms > s->used) s->used = now_ms;
    } else if (s && u->count < TK_OPTOKEN_USES_MAX) {
        memcpy(s->id, token_id, TK_UUID_LEN + 1);
        s->used = now_ms;
        s->stored = 0;
        s->wrote_at = 0;
        u->count++;
    } else {
        ok = false;
    }
    pthread_mutex_unlock(&u->mu);
    return ok;
}

static bool use_due(const struct use *s, int64_t now, bool all)
{
    if (!s->id[0] || s->used <= s->stored) return false;
    /* a wall clock set back counts as time passed */
    return all || !s->wrote_at || now - s->wrote_at >= TK_OPTOKEN_LAST_USED_MS ||
           now < s->wrote_at;
}

/* Drop entries with nothing pending whose throttle has passed (under mu). */
static void uses_prune(struct tk_optoken_uses *u, int64_t now)
{
    int gone = 0;
    for (size_t i = 0; i < USES_SLOTS; i++) {
        const struct use *s = &u->slot[i];
        if (s->id[0] && s->used <= s->stored && now - s->wrote_at >= TK_OPTOKEN_LAST_USED_MS)
            gone++;
    }
    if (!gone) return;
    struct use *old = tk_malloc(sizeof u->slot);
    memcpy(old, u->slot, sizeof u->slot);
    memset(u->slot, 0, sizeof u->slot);
    u->count = 0;
    for (size_t i = 0; i < USES_SLOTS; i++) {
        const struct use *s = &old[i];
        if (!s->id[0] || (s->used <= s->stored && now - s->wrote_at >= TK_OPTOKEN_LAST_USED_MS))
            continue;
        *use_find(u->slot, s->id) = *s;
        u->count++;
    }
    free(old);
}

tk_rc tk_optoken_uses_flush(struct tk_optoken_uses *u, struct tk_db *db, int64_t now_ms, bool all,
                            int *written, struct tk_err *e)
{
    if (written) *written = 0;
    if (!u) return TK_OK;
    /* Copy what is due, write it without the lock (authentication goes on),
     * then mark it written. */
    struct use *due = tk_malloc(sizeof(struct use) * TK_OPTOKEN_USES_MAX);
    int n = 0;
    pthread_mutex_lock(&u->mu);
    for (size_t i = 0; i < USES_SLOTS && n < TK_OPTOKEN_USES_MAX; i++)
        if (use_due(&u->slot[i], now_ms, all)) due[n++] = u->slot[i];
    pthread_mutex_unlock(&u->mu);
    tk_rc rc = TK_OK;
    char sql[160];
    snprintf(sql, sizeof sql,
             "UPDATE %s SET last_used_at = ? WHERE id = ? AND "
             "(last_used_at IS NULL OR last_used_at < ?)",
             u->table);
    if (n > 0) {
        rc = tk_db_begin(db, e);
        for (int i = 0; rc == TK_OK && i < n; i++)
            rc = tk_db_exec(db, sql,
                            TK_ARGS(TK_INT(due[i].used), TK_TEXT(due[i].id), TK_INT(due[i].used)),
                            NULL, e);
        if (rc == TK_OK) rc = tk_db_commit(db, e);
        if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    }
    pthread_mutex_lock(&u->mu);
    if (rc == TK_OK) {
        for (int i = 0; i < n; i++) {
            struct use *s = use_find(u->slot, due[i].id);
            if (!s || !s->id[0]) continue;
            s->stored = due[i].used;
            s->wrote_at = now_ms;
        }
        if (written) *written = n;
    }
    uses_prune(u, now_ms);
    pthread_mutex_unlock(&u->mu);
    free(due);
    return rc;
}

tk_rc tk_optoken_active(struct tk_db *db, const char *tenant_id, const char *token_id,
                        int64_t now_ms, bool *active, struct tk_err *e)
{
    struct tk_rows *r;
    *active = false;
    tk_rc rc = tk_db_exec(db,
                          "SELECT revoked_at, expires_at FROM operator_tokens WHERE id = ? AND "
                          "tenant_id = ?",
                          TK_ARGS(TK_TEXT(token_id), TK_TEXT(tenant_id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) == 1)
        *active = tk_rows_null(r, 0, 0) && (tk_rows_null(r, 0, 1) || tk_rows_int(r, 0, 1) > now_ms);
    tk_rows_free(r);
    return TK_OK;
}
