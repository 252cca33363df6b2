/* test_clients.c: src/clients/clients.h -- the form of a presented client
 * token (whitespace, newlines and quotes as warnings; damage as malformed,
 * hostile input bounded), and on both backends every reason of the store
 * lookup: unknown, revoked, rotated past its grace, expired,
 * client_inactive, client_suspended; the body checks of a client. */
#include "unit.h"

#include "../../src/clients/clients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned scan_ok(const char *in, const char *tok)
{
    const char *t;
    size_t n;
    unsigned w = 0;
    struct tk_err e;
    tk_err_clear(&e);
    if (!CHECK_OK(tk_client_token_scan(in, strlen(in), &t, &n, &w, &e), &e)) return ~0u;
    if (n != strlen(tok) || memcmp(t, tok, n) != 0) FAILF("scan of '%s' kept the wrong bytes", in);
    return w;
}

static void scan_fails(const char *in, size_t n, const char *code, const char *tok)
{
    const char *t;
    size_t len;
    unsigned w = 0;
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_client_token_scan(in, n, &t, &len, &w, &e);
    if (rc != TK_EAUTH || strcmp(e.code, code) != 0)
        FAILF("scan of %zu bytes: rc %d code '%s', want '%s'", n, (int)rc, e.code, code);
    if (tok && strstr(e.msg, tok + 8)) FAILF("the message repeats the token: %s", e.msg);
}

void test_clients_scan(void)
{
    char tok[TK_ISSUED_MAX], buf[256];
    tk_issued_new(TK_KIND_CLIENT, tok);
    CHECK_EQ_INT(scan_ok(tok, tok), 0);
    static const struct {
        const char *fmt;
        unsigned want;
    } cases[] = {
        {" %s", TK_CTW_LEADING_WHITESPACE},
        {"\t\t%s", TK_CTW_LEADING_WHITESPACE},
        {"\n%s", TK_CTW_LEADING_NEWLINE},
        {"%s ", TK_CTW_TRAILING_WHITESPACE},
        {"%s\n", TK_CTW_TRAILING_NEWLINE},
        {"%s\r", TK_CTW_TRAILING_NEWLINE},
        {"%s\r\n", TK_CTW_TRAILING_CRLF},
        {"\"%s\"", TK_CTW_SURROUNDING_QUOTES},
        {"'%s'", TK_CTW_SURROUNDING_QUOTES},
        {" \" %s\" \r\n", TK_CTW_LEADING_WHITESPACE | TK_CTW_SURROUNDING_QUOTES |
                              TK_CTW_TRAILING_WHITESPACE | TK_CTW_TRAILING_CRLF},
        {"%s \n", TK_CTW_TRAILING_WHITESPACE | TK_CTW_TRAILING_NEWLINE},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(buf, sizeof buf, cases[i].fmt, tok);
#pragma GCC diagnostic pop
        unsigned w = scan_ok(buf, tok);
        if (w != cases[i].want) FAILF("case %zu: warnings %#x, want %#x", i, w, cases[i].want);
    }
    /* the names of the warnings, in bit order */
    json_t *a = tk_client_warnings_json(TK_CTW_LEADING_WHITESPACE | TK_CTW_SURROUNDING_QUOTES);
    CHECK_EQ_INT(json_array_size(a), 2);
    CHECK_EQ_STR(json_string_value(json_array_get(a, 0)), "leading_whitespace");
    CHECK_EQ_STR(json_string_value(json_array_get(a, 1)), "surrounding_quotes");
    json_decref(a);
    CHECK_EQ_STR(tk_client_warning_name(TK_CTW_COUNT), "unknown");

    /* nothing there: missing */
    scan_fails("", 0, "missing", NULL);
    scan_fails(NULL, 5, "missing", NULL);
    scan_fails(" \r\n\t", 4, "missing", NULL);
    scan_fails("\"\"", 2, "missing", NULL);
    /* damage: malformed, never echoing the token */
    char bad[TK_ISSUED_MAX];
    snprintf(bad, sizeof bad, "%s", tok);
    bad[10] = bad[10] == 'A' ? 'B' : 'A';
    scan_fails(bad, strlen(bad), "malformed", tok);
    scan_fails(tok, strlen(tok) - 1, "malformed", tok);
    snprintf(buf, sizeof buf, "\"%s", tok);
    scan_fails(buf, strlen(buf), "malformed", tok);
    snprintf(buf, sizeof buf, "%s'", tok);
    scan_fails(buf, strlen(buf), "malformed", tok);
    snprintf(buf, sizeof buf, "tko_%s", tok + 4);
    scan_fails(buf, strlen(buf), "malformed", tok);
    snprintf(buf, sizeof buf, "%.20s %s", tok, tok + 20); /* a space inside */
    scan_fails(buf, strlen(buf), "malformed", tok);
    char nul[TK_ISSUED_MAX];
    memcpy(nul, tok, sizeof nul);
    nul[12] = '\0';
    scan_fails(nul, strlen(tok), "malformed", tok);
    /* hostile sizes: bounded, malformed */
    size_t big = 1 << 20;
    char *h = malloc(big);
    if (CHECK(h)) {
        memset(h, ' ', big);
        memcpy(h + big / 2, tok, strlen(tok));
        scan_fails(h, big, "malformed", tok);
        scan_fails(h, TK_CLIENT_TOKEN_INPUT_MAX + 1, "malformed", NULL);
        free(h);
    }
}

void test_clients_check(void)
{
    static const struct {
        const char *json;
        bool create;
        const char *code, *field;
    } cases[] = {
        {"{\"name\": \"a\"}", true, NULL, NULL},
        {"{}", false, NULL, NULL},
        {"{}", true, "missing_field", "name"},
        {"{\"name\": \"\"}", true, "invalid_field", "name"},
        {"{\"name\": \"a\", \"email\": null}", true, NULL, NULL},
        {"{\"name\": \"a\", \"email\": \"x@y\"}", true, NULL, NULL},
        {"{\"name\": \"a\", \"email\": \"x@y@z\"}", true, "invalid_field", "email"},
        {"{\"name\": \"a\", \"email\": \"@y\"}", true, "invalid_field", "email"},
        {"{\"name\": \"a\", \"email\": \"x\\u0000@y\"}", true, "invalid_field", "email"},
        {"{\"status\": \"disabled\"}", false, NULL, NULL},
        {"{\"status\": \"Disabled\"}", false, "invalid_field", "status"},
        {"{\"metadata\": {\"a.b-c_d\": \"\"}}", false, NULL, NULL},
        {"{\"metadata\": {\"\": \"x\"}}", false, "invalid_field", "metadata"},
        {"{\"metadata\": {\"k\": null}}", false, "invalid_field", "metadata"},
        {"{\"metadata\": \"k=v\"}", false, "invalid_field", "metadata"},
    };
    for (size_t i = 0; i < TK_NELEM(cases); i++) {
        json_t *b = json_loads(cases[i].json, JSON_ALLOW_NUL, NULL);
        if (!CHECK(b)) continue;
        struct tk_err e;
        tk_err_clear(&e);
        tk_rc rc = tk_client_check(b, cases[i].create, &e);
        if (!cases[i].code && rc != TK_OK) FAILF("%s: refused: %s", cases[i].json, e.msg);
        if (cases[i].code && (rc != TK_EINVAL || strcmp(e.code, cases[i].code) ||
                              strcmp(e.field, cases[i].field)))
            FAILF("%s: rc %d %s/%s, want %s/%s", cases[i].json, (int)rc, e.code, e.field,
                  cases[i].code, cases[i].field);
        json_decref(b);
    }
}

/* An unsealed keyring (1 share) on db. */
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

/* Look tok up; the reason ("" = valid). */
static const char *lookup(struct tk_db *db, struct tk_keyring *k, const char *tok,
                          struct tk_principal *p, int64_t *expires_at)
{
    static char code[40];
    char hash[TK_HASH_HEX];
    struct tk_err e;
    tk_err_clear(&e);
    int64_t epoch;
    if (!CHECK_OK(tk_keyring_hash(k, tok, strlen(tok), hash, NULL, &e), &e)) return "hash";
    tk_rc rc = tk_client_token_lookup_hash(db, hash, p, expires_at, &epoch, &e);
    if (rc == TK_OK) return "";
    snprintf(code, sizeof code, "%s", rc == TK_EAUTH ? e.code : "error");
    if (strstr(e.msg, tok + 8)) FAILF("the %s message repeats the token", code);
    return code;
}

static bool in_tx(struct tk_db *db, tk_rc (*fn)(struct tk_db *, void *, struct tk_err *), void *a)
{
    struct tk_err e;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = fn(db, a, &e);
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK && tk_db_in_tx(db)) tk_db_rollback(db);
    return CHECK_OK(rc, &e);
}

struct cfx {
    struct tk_keyring *k;
    char tenant[TK_UUID_LEN + 1];
    char client[TK_UUID_LEN + 1];
    const char *status;
    char tok[TK_ISSUED_MAX], tok_id[TK_UUID_LEN + 1];
    char tok2[TK_ISSUED_MAX], tok2_id[TK_UUID_LEN + 1];
    int grace;
};

static tk_rc mk_client(struct tk_db *db, void *a, struct tk_err *e)
{
    struct cfx *c = a;
    json_t *b = json_pack("{s:s, s:s}", "name", "Acme Agents", "email", "ops@acme.example");
    json_t *o = NULL;
    tk_rc rc = tk_client_create(db, c->tenant, b, c->client, &o, e);
    json_decref(b);
    json_decref(o);
    return rc;
}

static tk_rc mk_token(struct tk_db *db, void *a, struct tk_err *e)
{
    struct cfx *c = a;
    json_t *o = NULL;
    tk_rc rc =
        tk_client_token_create(db, c->k, c->tenant, c->client, "agent", 0, c->tok, c->tok_id, &o, e);
    json_decref(o);
    return rc;
}

static tk_rc set_status(struct tk_db *db, void *a, struct tk_err *e)
{
    struct cfx *c = a;
    json_t *b = json_pack("{s:s}", "status", c->status);
    json_t *o = NULL;
    char old[16];
    int64_t seq = 0;
    tk_rc rc = tk_client_update(db, c->tenant, c->client, b, old, &seq, &o, e);
    if (rc == TK_OK && !seq) rc = tk_err_set(e, TK_EINTERNAL, "test", "no epoch bump");
    json_decref(b);
    json_decref(o);
    return rc;
}

static tk_rc rotate(struct tk_db *db, void *a, struct tk_err *e)
{
    struct cfx *c = a;
    json_t *o = NULL;
    int64_t seq = 0;
    tk_rc rc = tk_client_token_rotate(db, c->k, c->tenant, c->client, c->tok_id, c->grace, 0,
                                      c->tok2, c->tok2_id, &seq, &o, e);
    if (rc == TK_OK && !seq) rc = tk_err_set(e, TK_EINTERNAL, "test", "no epoch bump");
    json_decref(o);
    return rc;
}

static tk_rc revoke(struct tk_db *db, void *a, struct tk_err *e)
{
    struct cfx *c = a;
    int64_t seq = 0;
    return tk_client_token_revoke(db, c->tenant, c->client, c->tok_id, &seq, e);
}

void test_clients_reasons(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct cfx c;
    memset(&c, 0, sizeof c);
    struct tk_err e;
    struct tk_principal p;
    int64_t exp = 0;
    if (!open_keyring(f->dir, db, &c.k)) goto out;
    if (!CHECK_OK(tk_tenant_default(db, c.tenant, &e), &e)) goto out;
    if (!in_tx(db, mk_client, &c) || !in_tx(db, mk_token, &c)) goto out;

    /* valid: the principal is the token, its client's name and email */
    CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "");
    CHECK_EQ_INT(p.kind, TK_PRINCIPAL_CLIENT_TOKEN);
    CHECK_EQ_STR(p.id, c.tok_id);
    CHECK_EQ_STR(p.client_id, c.client);
    CHECK_EQ_STR(p.name, "Acme Agents");
    CHECK_EQ_STR(p.email, "ops@acme.example");
    CHECK_EQ_STR(p.role, "client");
    CHECK_EQ_INT(exp, 0);
    /* the store holds a hash and a preview, never the token */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT * FROM client_tokens", NULL, 0, &r, &e), &e))
        for (int i = 0; i < tk_rows_count(r); i++)
            for (int col = 0; col < tk_rows_columns(r); col++) {
                const char *v = tk_rows_text(r, i, col);
                if (v && strstr(v, c.tok + 8)) FAILF("column %d holds the token", col);
            }
    tk_rows_free(r);

    /* a well-formed token never issued: unknown, no row named */
    char never[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_CLIENT, never);
    CHECK_EQ_STR(lookup(db, c.k, never, &p, &exp), "unknown");
    CHECK_EQ_STR(p.tenant_id, "");

    /* the client's status */
    c.status = "suspended";
    if (in_tx(db, set_status, &c)) CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "client_suspended");
    CHECK_EQ_STR(p.tenant_id, c.tenant);
    CHECK_EQ_STR(p.client_id, c.client);
    CHECK_EQ_STR(p.role, "");
    c.status = "disabled";
    if (in_tx(db, set_status, &c)) CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "client_inactive");
    c.status = "active";
    if (in_tx(db, set_status, &c)) CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "");

    /* expired */
    CHECK_OK(tk_db_exec(db, "UPDATE client_tokens SET expires_at = ? WHERE id = ?",
                        TK_ARGS(TK_INT(tk_now_ms() - 1), TK_TEXT(c.tok_id)), NULL, &e),
             &e);
    CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "expired");
    CHECK_OK(tk_db_exec(db, "UPDATE client_tokens SET expires_at = ? WHERE id = ?",
                        TK_ARGS(TK_INT(tk_now_ms() + 3600000), TK_TEXT(c.tok_id)), NULL, &e),
             &e);

    /* rotated with grace: works until then, stopping at the earlier of
     * grace end and expiry; then revoked */
    c.grace = 60;
    if (in_tx(db, rotate, &c)) {
        CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "");
        CHECK(exp > tk_now_ms() + 50000 && exp <= tk_now_ms() + 60000);
        CHECK_EQ_STR(lookup(db, c.k, c.tok2, &p, &exp), "");
        CHECK(exp > tk_now_ms() + 3500000); /* the lifetime carries over */
        CHECK_OK(tk_db_exec(db, "UPDATE client_tokens SET grace_ends_at = ? WHERE id = ?",
                            TK_ARGS(TK_INT(tk_now_ms() - 1), TK_TEXT(c.tok_id)), NULL, &e),
                 &e);
        CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "revoked");
        /* rotated once only */
        struct cfx again = c;
        struct tk_err ae;
        tk_rc rc = tk_db_begin(db, &ae);
        if (rc == TK_OK) rc = rotate(db, &again, &ae);
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        CHECK(rc != TK_OK);
    }
    /* revoked */
    memcpy(c.tok, c.tok2, sizeof c.tok);
    memcpy(c.tok_id, c.tok2_id, sizeof c.tok_id);
    if (in_tx(db, revoke, &c)) CHECK_EQ_STR(lookup(db, c.k, c.tok, &p, &exp), "revoked");
    /* revoking twice: not found */
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = revoke(db, &c, &e);
    if (tk_db_in_tx(db)) tk_db_rollback(db);
    CHECK_EQ_INT(rc, TK_ENOTFOUND);
out:
    tk_store_put(db);
    tk_keyring_free(c.k);
}

/* Heartbeats written in a batch (tk_agent_beats_flush): last_heartbeat_at
 * only moves forward; a stale agent comes back once, with one event, even
 * when two flushes (two nodes) carry a heartbeat for it; an unknown agent
 * or another client's is skipped; tk_agent_owner names the owner. */
static bool mk_agent(struct tk_db *db, struct cfx *c)
{
    json_t *b = json_pack("{s:s, s:s, s:s}", "logical_agent_id", "edge-1", "hostname", "h1",
                          "version", "1");
    json_t *o = NULL;
    struct tk_err e;
    bool ok = CHECK_OK(tk_agent_register(db, c->tenant, c->client, b, NULL, &o, &e), &e);
    if (ok)
        snprintf(c->tok_id, sizeof c->tok_id, "%s", json_string_value(json_object_get(o, "id")));
    json_decref(b);
    json_decref(o);
    return ok;
}

static int64_t agent_int(struct tk_db *db, const char *sql, const char *id)
{
    struct tk_rows *r = NULL;
    struct tk_err e;
    int64_t v = -1;
    if (CHECK_OK(tk_db_exec(db, sql, TK_ARGS(TK_TEXT(id)), &r, &e), &e) && tk_rows_count(r) == 1)
        v = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return v;
}

void test_clients_beats(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct cfx c;
    memset(&c, 0, sizeof c);
    struct tk_err e;
    if (!CHECK_OK(tk_tenant_default(db, c.tenant, &e), &e) || !in_tx(db, mk_client, &c) ||
        !mk_agent(db, &c)) {
        tk_store_put(db);
        return;
    }
    const char *id = c.tok_id; /* the agent's id */

    bool found = false, stale = true;
    int64_t last = 0;
    char t[TK_UUID_LEN + 1], cl[TK_UUID_LEN + 1];
    CHECK_OK(tk_agent_owner(db, id, &found, t, cl, &stale, &last, &e), &e);
    CHECK(found && !stale && last > 0);
    CHECK_EQ_STR(t, c.tenant);
    CHECK_EQ_STR(cl, c.client);
    char unknown[TK_UUID_LEN + 1];
    tk_uuid7(unknown);
    CHECK_OK(tk_agent_owner(db, unknown, &found, t, cl, &stale, &last, &e), &e);
    CHECK(!found);

    int64_t now = tk_now_ms();
    struct tk_agent_beat b[3];
    memset(b, 0, sizeof b);
    snprintf(b[0].id, sizeof b[0].id, "%s", id);
    snprintf(b[0].tenant_id, sizeof b[0].tenant_id, "%s", c.tenant);
    snprintf(b[0].client_id, sizeof b[0].client_id, "%s", c.client);
    snprintf(b[0].status, sizeof b[0].status, "healthy");
    b[0].at = now + 5000;
    b[1] = b[0];
    snprintf(b[1].id, sizeof b[1].id, "%s", unknown); /* skipped */
    b[2] = b[0];
    tk_uuid7(b[2].client_id); /* another client's: skipped */
    snprintf(b[2].status, sizeof b[2].status, "evil");
    int back = -1;
    CHECK_OK(tk_agent_beats_flush(db, b, 3, &back, &e), &e);
    CHECK_EQ_INT(back, 0);
    CHECK(agent_int(db, "SELECT last_heartbeat_at FROM agents WHERE id = ?", id) == now + 5000);
    /* an older heartbeat (another node's, written late) does not move it back */
    b[0].at = now + 1000;
    snprintf(b[0].status, sizeof b[0].status, "old");
    CHECK_OK(tk_agent_beats_flush(db, b, 1, &back, &e), &e);
    CHECK(agent_int(db, "SELECT last_heartbeat_at FROM agents WHERE id = ?", id) == now + 5000);
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT reported_status FROM agents WHERE id = ?",
                            TK_ARGS(TK_TEXT(id)), &r, &e), &e))
        CHECK_EQ_STR(tk_rows_text(r, 0, 0), "healthy");
    tk_rows_free(r);

    /* stale: the sweep flips it; two flushes of later heartbeats bring it back once */
    int n = 0;
    CHECK_OK(tk_agent_sweep(db, now + 100000, 1000, &n, &e), &e);
    CHECK_EQ_INT(n, 1);
    b[0].at = now + 200000;
    CHECK_OK(tk_agent_beats_flush(db, b, 1, &back, &e), &e);
    CHECK_EQ_INT(back, 1);
    b[0].at = now + 200500;
    CHECK_OK(tk_agent_beats_flush(db, b, 1, &back, &e), &e);
    CHECK_EQ_INT(back, 0);
    CHECK(agent_int(db, "SELECT stale FROM agents WHERE id = ?", id) == 0);
    CHECK(agent_int(db, "SELECT COUNT(*) FROM events WHERE subject_id = ? AND action = 'recovered'",
                    id) == 1);
    CHECK(agent_int(db, "SELECT COUNT(*) FROM events WHERE subject_id = ? AND action = 'stale'",
                    id) == 1);
    /* nothing to write: no transaction */
    CHECK_OK(tk_agent_beats_flush(db, b, 0, &back, &e), &e);
    tk_store_put(db);
}
