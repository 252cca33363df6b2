/* test_operators.c: src/operators/operators.h on both backends -- operator
 * tokens: issue, authenticate, every failure reason, tenant isolation. */
#include "unit.h"

#include "../../src/operators/operators.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opfx {
    struct tk_db *db;
    struct tk_keyring *k;
    char tenant[TK_UUID_LEN + 1];
};

/* An unsealed keyring (1 share) on db, as after 'tokend operator init'. */
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

static bool op_setup(struct fx *f, struct opfx *o)
{
    struct tk_err e;
    memset(o, 0, sizeof *o);
    o->db = fx_db(f);
    if (!o->db) return false;
    if (!open_keyring(f->dir, o->db, &o->k)) return false;
    return CHECK_OK(tk_tenant_default(o->db, o->tenant, &e), &e);
}

static void op_teardown(struct opfx *o)
{
    tk_store_put(o->db);
    tk_keyring_free(o->k);
}

static bool create(struct opfx *o, const char *tenant, const char *name, int64_t expires,
                   char tok[TK_ISSUED_MAX], char id[TK_UUID_LEN + 1])
{
    struct tk_err e;
    return CHECK_OK(tk_optoken_create(o->db, o->k, tenant, name, "admin", expires, tok, id, &e),
                    &e);
}

/* tk_optoken_revoke in its own transaction (it bumps the tenant's auth
 * epoch, which needs one). */
static tk_rc revoke_tx(struct tk_db *db, const char *tenant, const char *id, struct tk_err *e)
{
    tk_rc rc = tk_db_begin(db, e);
    if (rc == TK_OK) rc = tk_optoken_revoke(db, tenant, id, NULL, e);
    if (rc == TK_OK) return tk_db_commit(db, e);
    if (tk_db_in_tx(db)) tk_db_rollback(db);
    return rc;
}

/* Authenticate header; return rc and fill e. */
static tk_rc auth(struct opfx *o, const char *header, struct tk_principal *p, struct tk_err *e)
{
    tk_err_clear(e);
    memset(p, 0, sizeof *p);
    return tk_optoken_authenticate(o->db, o->k, header, p, e);
}

/* The failure must be TK_EAUTH with code reason, and not repeat the token. */
static void auth_fails(struct opfx *o, const char *header, const char *reason, const char *tok,
                       int line)
{
    struct tk_principal p;
    struct tk_err e;
    tk_rc rc = auth(o, header, &p, &e);
    if (rc != TK_EAUTH || e.rc != TK_EAUTH || strcmp(e.code, reason) != 0)
        unit_fail(__FILE__, line, "header '%.60s': rc %d code '%s', want TK_EAUTH '%s'",
                  header ? header : "(null)", (int)rc, e.code, reason);
    if (!e.msg[0]) unit_fail(__FILE__, line, "no message for %s", reason);
    if (tok && strlen(tok) > 12 && strstr(e.msg, tok + 8))
        unit_fail(__FILE__, line, "the %s message repeats the token: %s", reason, e.msg);
    /* never a principal; the row's tenant only for a known token (its event goes there) */
    bool known = !strcmp(reason, "revoked") || !strcmp(reason, "expired");
    if (p.role[0] || p.name[0] || (!known && p.tenant_id[0]) || (known && !p.tenant_id[0]))
        unit_fail(__FILE__, line, "a principal was filled on failure, or a known token's tenant missing");
}

void test_optoken_authenticate(struct fx *f)
{
    struct opfx o;
    struct tk_err e;
    if (!op_setup(f, &o)) goto out;
    CHECK(tk_uuid_valid(o.tenant));
    /* the default tenant is made once */
    char again[TK_UUID_LEN + 1];
    CHECK_OK(tk_tenant_default(o.db, again, &e), &e);
    CHECK_EQ_STR(again, o.tenant);

    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1];
    if (!create(&o, o.tenant, "ci", 0, tok, id)) goto out;
    CHECK_OK(tk_issued_check(TK_KIND_OPERATOR, tok, strlen(tok), &e), &e);
    CHECK(tk_uuid_valid(id));

    char header[128];
    snprintf(header, sizeof header, "Bearer %s", tok);
    struct tk_principal p;
    if (CHECK_OK(auth(&o, header, &p, &e), &e)) {
        CHECK_EQ_STR(p.tenant_id, o.tenant);
        CHECK_EQ_STR(p.id, id);
        CHECK_EQ_STR(p.name, "ci");
        CHECK_EQ_STR(p.role, "admin");
    }
    /* the scheme is case-insensitive (RFC 9110 §11.1), extra spaces before the token are fine */
    snprintf(header, sizeof header, "bearer %s", tok);
    CHECK_OK(auth(&o, header, &p, &e), &e);
    snprintf(header, sizeof header, "BEARER   %s", tok);
    CHECK_OK(auth(&o, header, &p, &e), &e);

    /* the store keeps a keyed hash and a preview, never the token */
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(o.db,
                            "SELECT token_hash, hash_key, preview, last_used_at, name, role "
                            "FROM operator_tokens WHERE id = ?",
                            TK_ARGS(TK_TEXT(id)), &r, &e),
                 &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 1)) {
        char h[TK_HASH_HEX], kid[17];
        if (CHECK_OK(tk_keyring_hash(o.k, tok, strlen(tok), h, kid, &e), &e)) {
            CHECK_EQ_STR(tk_rows_text(r, 0, 0), h);
            CHECK_EQ_STR(tk_rows_text(r, 0, 1), kid);
            CHECK_EQ_INT(strlen(kid), 16);
        }
        for (int c = 0; c < tk_rows_columns(r); c++) {
            const char *v = tk_rows_text(r, 0, c);
            if (v && strstr(v, tok + 8)) FAILF("column %d holds the token", c);
        }
        CHECK(tk_rows_text(r, 0, 2) && !strncmp(tk_rows_text(r, 0, 2), "tko_", 4));
        CHECK(tk_rows_null(r, 0, 3)); /* authentication wrote nothing (test_optoken_last_used) */
    }
    tk_rows_free(r);

    json_t *list = NULL;
    if (CHECK_OK(tk_optoken_list(o.db, o.tenant, &list, &e), &e)) {
        CHECK_EQ_INT(json_array_size(list), 1);
        char *dump = json_dumps(list, 0);
        CHECK(dump && !strstr(dump, tok + 8));
        CHECK(dump && strstr(dump, id));
        free(dump);
        json_t *t0 = json_array_get(list, 0);
        CHECK(json_is_null(json_object_get(t0, "revoked_at")));
        CHECK(json_is_null(json_object_get(t0, "expires_at")));
        CHECK(json_is_null(json_object_get(t0, "last_used_at"))); /* not flushed yet */
    }
    json_decref(list);
    int64_t active = -1;
    CHECK_OK(tk_optoken_count_active(o.db, &active, &e), &e);
    CHECK_EQ_INT(active, 1);

    /* a token that expires later works now */
    char tok2[TK_ISSUED_MAX], id2[TK_UUID_LEN + 1];
    if (create(&o, o.tenant, "later", tk_now_ms() + 3600000, tok2, id2)) {
        snprintf(header, sizeof header, "Bearer %s", tok2);
        CHECK_OK(auth(&o, header, &p, &e), &e);
        CHECK_EQ_STR(p.id, id2);
    }
    CHECK(tk_role_valid("admin") && tk_role_valid("operator") && tk_role_valid("viewer"));
    CHECK(!tk_role_valid("root") && !tk_role_valid("") && !tk_role_valid(NULL) &&
          !tk_role_valid("Admin"));
out:
    op_teardown(&o);
}

void test_optoken_reasons(struct fx *f)
{
    struct opfx o;
    struct tk_err e;
    if (!op_setup(f, &o)) goto out;
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1], header[256];
    if (!create(&o, o.tenant, "victim", 0, tok, id)) goto out;

    auth_fails(&o, NULL, "missing", NULL, __LINE__);
    auth_fails(&o, "", "missing", NULL, __LINE__);

    snprintf(header, sizeof header, "Basic %s", tok);
    auth_fails(&o, header, "malformed", tok, __LINE__);
    snprintf(header, sizeof header, "Token %s", tok);
    auth_fails(&o, header, "malformed", tok, __LINE__);
    snprintf(header, sizeof header, "%s", tok); /* scheme forgotten */
    auth_fails(&o, header, "malformed", tok, __LINE__);
    auth_fails(&o, "Bearer", "malformed", NULL, __LINE__);
    auth_fails(&o, "Bearer ", "malformed", NULL, __LINE__);
    auth_fails(&o, "Bearer tko_short", "malformed", NULL, __LINE__);
    snprintf(header, sizeof header, "Bearer %sx", tok); /* one extra */
    auth_fails(&o, header, "malformed", tok, __LINE__);
    snprintf(header, sizeof header, "Bearer %.*s", (int)strlen(tok) - 1, tok); /* one short */
    auth_fails(&o, header, "malformed", tok, __LINE__);
    snprintf(header, sizeof header, "Bearer %s ", tok);
    auth_fails(&o, header, "malformed", tok, __LINE__);
    snprintf(header, sizeof header, "Bearer \"%s\"", tok);
    auth_fails(&o, header, "malformed", tok, __LINE__);
    snprintf(header, sizeof header, "Bearer %s\r\n", tok);
    auth_fails(&o, header, "malformed", tok, __LINE__);
    char typo[TK_ISSUED_MAX];
    memcpy(typo, tok, sizeof typo);
    typo[9] = typo[9] == 'a' ? 'b' : 'a';
    snprintf(header, sizeof header, "Bearer %s", typo);
    auth_fails(&o, header, "malformed", tok, __LINE__);
    char client[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_CLIENT, client);
    snprintf(header, sizeof header, "Bearer %s", client);
    auth_fails(&o, header, "malformed", client, __LINE__);

    /* well-formed but never issued here */
    char stranger[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_OPERATOR, stranger);
    snprintf(header, sizeof header, "Bearer %s", stranger);
    auth_fails(&o, header, "unknown", stranger, __LINE__);

    /* issued here, presented to an installation with another hash key: a
     * keyring initialized on another store (a SQLite file in another dir) */
    char dir2[256], url2[512];
    if (CHECK(unit_tmpdir(dir2, sizeof dir2))) {
        struct tk_store_opts so = {.pool_size = 1, .busy_timeout_ms = 10000, .migrate = true};
        struct tk_store *st2 = NULL;
        struct tk_db *db2 = NULL;
        struct tk_keyring *k2 = NULL;
        snprintf(url2, sizeof url2, "sqlite:%s/other.db", dir2);
        if (CHECK_OK(tk_store_open(url2, &so, &st2, &e), &e) &&
            CHECK((db2 = tk_store_get(st2, &e)) != NULL) && open_keyring(dir2, db2, &k2)) {
            struct tk_principal p;
            memset(&p, 0, sizeof p);
            snprintf(header, sizeof header, "Bearer %s", tok);
            tk_err_clear(&e);
            CHECK_EQ_INT(tk_optoken_authenticate(o.db, k2, header, &p, &e), TK_EAUTH);
            CHECK_EQ_STR(e.code, "unknown");
        }
        tk_keyring_free(k2);
        tk_store_put(db2);
        tk_store_close(st2);
        unit_rmtree(dir2);
    }

    /* a sealed keyring neither issues nor checks tokens: 503 sealed, not "unknown" */
    {
        struct tk_keyring *ks = NULL;
        if (CHECK_OK(tk_keyring_new(f->dir, &ks, &e), &e) &&
            CHECK_OK(tk_keyring_load(ks, o.db, &e), &e) && CHECK(tk_keyring_sealed(ks))) {
            struct tk_principal p;
            memset(&p, 0, sizeof p);
            snprintf(header, sizeof header, "Bearer %s", tok);
            tk_err_clear(&e);
            CHECK_EQ_INT(tk_optoken_authenticate(o.db, ks, header, &p, &e), TK_EUNAVAIL);
            CHECK_EQ_STR(e.code, "sealed");
            CHECK(!p.tenant_id[0]);
            char t3[TK_ISSUED_MAX], id3[TK_UUID_LEN + 1];
            tk_err_clear(&e);
            CHECK_EQ_INT(tk_optoken_create(o.db, ks, o.tenant, "x", "admin", 0, t3, id3, &e),
                         TK_EUNAVAIL);
            CHECK_EQ_STR(e.code, "sealed");
        }
        tk_keyring_free(ks);
    }

    /* expired: expires_at in the past */
    char old[TK_ISSUED_MAX], oldid[TK_UUID_LEN + 1];
    if (create(&o, o.tenant, "old", tk_now_ms() - 1000, old, oldid)) {
        snprintf(header, sizeof header, "Bearer %s", old);
        auth_fails(&o, header, "expired", old, __LINE__);
    }

    /* revoked */
    snprintf(header, sizeof header, "Bearer %s", tok);
    struct tk_principal p;
    CHECK_OK(auth(&o, header, &p, &e), &e);
    CHECK_OK(revoke_tx(o.db, o.tenant, id, &e), &e);
    auth_fails(&o, header, "revoked", tok, __LINE__);
    auth(&o, header, &p, &e);
    CHECK(strstr(e.msg, id) != NULL); /* names the token by id, for the operator */
    /* a revoked token that has also expired still says revoked */
    CHECK_OK(revoke_tx(o.db, o.tenant, oldid, &e), &e);
    snprintf(header, sizeof header, "Bearer %s", old);
    auth_fails(&o, header, "revoked", old, __LINE__);
    int64_t active = -1;
    CHECK_OK(tk_optoken_count_active(o.db, &active, &e), &e);
    CHECK_EQ_INT(active, 0);
out:
    op_teardown(&o);
}

void test_optoken_revoke_tenant(struct fx *f)
{
    struct opfx o;
    struct tk_err e;
    if (!op_setup(f, &o)) goto out;
    char other[TK_UUID_LEN + 1];
    tk_uuid7(other);
    if (!CHECK_OK(tk_db_exec(o.db, "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                             TK_ARGS(TK_TEXT(other), TK_TEXT("other"), TK_INT(tk_now_ms())), NULL,
                             &e),
                  &e))
        goto out;
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1], mine[TK_ISSUED_MAX], mid[TK_UUID_LEN + 1];
    if (!create(&o, other, "theirs", 0, tok, id) || !create(&o, o.tenant, "mine", 0, mine, mid))
        goto out;

    /* from the default tenant, the other tenant's token does not exist */
    tk_err_clear(&e);
    CHECK_EQ_INT(revoke_tx(o.db, o.tenant, id, &e), TK_ENOTFOUND);
    CHECK_EQ_STR(e.code, "not_found");
    char header[128];
    struct tk_principal p;
    snprintf(header, sizeof header, "Bearer %s", tok);
    if (CHECK_OK(auth(&o, header, &p, &e), &e)) CHECK_EQ_STR(p.tenant_id, other);
    json_t *list = NULL;
    if (CHECK_OK(tk_optoken_list(o.db, o.tenant, &list, &e), &e)) {
        CHECK_EQ_INT(json_array_size(list), 1);
        CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(list, 0), "id")), mid);
    }
    json_decref(list);

    /* its own tenant can revoke it, once */
    CHECK_OK(revoke_tx(o.db, other, id, &e), &e);
    /* a refused token that is known names its own tenant (for the event),
     * without becoming a principal */
    snprintf(header, sizeof header, "Bearer %s", tok);
    CHECK_EQ_INT(auth(&o, header, &p, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "revoked");
    CHECK_EQ_STR(p.tenant_id, other);
    CHECK_EQ_STR(p.id, id);
    CHECK_EQ_STR(p.role, "");
    CHECK_EQ_INT(revoke_tx(o.db, other, id, &e), TK_ENOTFOUND);
    CHECK_EQ_INT(revoke_tx(o.db, other, "not-an-id", &e), TK_ENOTFOUND);
    CHECK_EQ_INT(revoke_tx(o.db, o.tenant, "' OR '1'='1", &e), TK_ENOTFOUND);
    /* and the default tenant's token is untouched */
    snprintf(header, sizeof header, "Bearer %s", mine);
    CHECK_OK(auth(&o, header, &p, &e), &e);
out:
    op_teardown(&o);
}

/* The form of the header is decided without a store (tk_optoken_parse is
 * given none), and the admins of a tenant are counted without the revoked
 * and expired ones. */
void test_optoken_parse_and_admins(struct fx *f)
{
    struct opfx o;
    struct tk_err e;
    const char *tok = NULL;
    size_t len = 0;
    CHECK_EQ_INT(tk_optoken_parse(NULL, &tok, &len, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "missing");
    CHECK_EQ_INT(tk_optoken_parse("Basic abc", &tok, &len, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "malformed");
    CHECK_EQ_INT(tk_optoken_parse("Bearer tko_000000000000000000000000000000000000", &tok, &len, &e),
                 TK_EAUTH);
    CHECK_EQ_STR(e.code, "malformed");
    if (!op_setup(f, &o)) goto out;
    char t1[TK_ISSUED_MAX], id1[TK_UUID_LEN + 1], t2[TK_ISSUED_MAX], id2[TK_UUID_LEN + 1];
    char t3[TK_ISSUED_MAX], id3[TK_UUID_LEN + 1];
    if (!create(&o, o.tenant, "a1", 0, t1, id1) || !create(&o, o.tenant, "a2", 0, t2, id2) ||
        !create(&o, o.tenant, "gone", tk_now_ms() - 1000, t3, id3))
        goto out;
    char header[128];
    snprintf(header, sizeof header, "Bearer %s", t1);
    if (CHECK_OK(tk_optoken_parse(header, &tok, &len, &e), &e)) {
        CHECK_EQ_INT(len, strlen(t1));
        CHECK(!strcmp(tok, t1));
    }
    int64_t n = -1;
    CHECK_OK(tk_optoken_count_admins(o.db, o.tenant, &n, &e), &e);
    CHECK_EQ_INT(n, 2); /* the expired one does not count */
    CHECK_OK(revoke_tx(o.db, o.tenant, id1, &e), &e);
    CHECK_OK(tk_optoken_count_admins(o.db, o.tenant, &n, &e), &e);
    CHECK_EQ_INT(n, 1);
out:
    op_teardown(&o);
}

/* last_used_at: authentication never writes; uses noted in memory are
 * written by a flush, a token at most once per TK_OPTOKEN_LAST_USED_MS, all
 * that is pending with all=true; the table is bounded and frees room. */
static int64_t last_used(struct opfx *o, const char *id)
{
    struct tk_err e;
    struct tk_rows *r = NULL;
    int64_t v = -1;
    if (CHECK_OK(tk_db_exec(o->db, "SELECT last_used_at FROM operator_tokens WHERE id = ?",
                            TK_ARGS(TK_TEXT(id)), &r, &e),
                 &e) &&
        CHECK_EQ_INT(tk_rows_count(r), 1))
        v = tk_rows_null(r, 0, 0) ? 0 : tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return v;
}

void test_optoken_last_used(struct fx *f)
{
    struct opfx o;
    struct tk_err e;
    struct tk_optoken_uses *u = tk_optoken_uses_new();
    if (!op_setup(f, &o)) goto out;
    char tok[TK_ISSUED_MAX], id[TK_UUID_LEN + 1], header[128];
    if (!create(&o, o.tenant, "ci", 0, tok, id)) goto out;
    snprintf(header, sizeof header, "Bearer %s", tok);
    struct tk_principal p;

    /* With another connection holding the write lock, authentication
     * succeeds and writes nothing (it used to write last_used_at there,
     * waiting out the busy timeout on SQLite, the lock on PostgreSQL). */
    struct tk_db *other = tk_store_get(f->st, &e);
    if (CHECK(other != NULL) && CHECK_OK(tk_db_begin(other, &e), &e)) {
        CHECK_OK(tk_db_exec(other, "UPDATE operator_tokens SET name = name WHERE id = ?",
                            TK_ARGS(TK_TEXT(id)), NULL, &e),
                 &e);
        CHECK_OK(auth(&o, header, &p, &e), &e);
        tk_db_rollback(other);
    }
    tk_store_put(other);
    CHECK_EQ_INT(last_used(&o, id), 0);

    int64_t t0 = 1800000000000LL;
    int n = -1;
    CHECK(tk_optoken_use(u, id, t0));
    CHECK_OK(tk_optoken_uses_flush(u, o.db, t0, false, &n, &e), &e);
    CHECK_EQ_INT(n, 1); /* never written by this table: at once */
    CHECK_EQ_INT(last_used(&o, id), t0);
    /* within the minute: noted, not written */
    CHECK(tk_optoken_use(u, id, t0 + 1000));
    CHECK_OK(tk_optoken_uses_flush(u, o.db, t0 + 1000, false, &n, &e), &e);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(last_used(&o, id), t0);
    /* a minute after the write: written */
    CHECK_OK(tk_optoken_uses_flush(u, o.db, t0 + TK_OPTOKEN_LAST_USED_MS, false, &n, &e), &e);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(last_used(&o, id), t0 + 1000);
    /* at stop (all): whatever is pending, at once */
    CHECK(tk_optoken_use(u, id, t0 + TK_OPTOKEN_LAST_USED_MS + 5));
    CHECK_OK(tk_optoken_uses_flush(u, o.db, t0 + TK_OPTOKEN_LAST_USED_MS + 5, true, &n, &e), &e);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(last_used(&o, id), t0 + TK_OPTOKEN_LAST_USED_MS + 5);
    /* never backwards (another node wrote a later use) */
    CHECK_OK(tk_db_exec(o.db, "UPDATE operator_tokens SET last_used_at = ? WHERE id = ?",
                        TK_ARGS(TK_INT(t0 + 10 * TK_OPTOKEN_LAST_USED_MS), TK_TEXT(id)), NULL,
                        &e),
             &e);
    CHECK(tk_optoken_use(u, id, t0 + 3 * TK_OPTOKEN_LAST_USED_MS));
    CHECK_OK(tk_optoken_uses_flush(u, o.db, t0 + 3 * TK_OPTOKEN_LAST_USED_MS, true, NULL, &e), &e);
    CHECK_EQ_INT(last_used(&o, id), t0 + 10 * TK_OPTOKEN_LAST_USED_MS);

    /* bounded: TK_OPTOKEN_USES_MAX tokens, then a use is not noted; a
     * flush and a quiet minute free the room */
    struct tk_optoken_uses *b = tk_optoken_uses_new();
    int64_t t1 = t0 + 100 * TK_OPTOKEN_LAST_USED_MS;
    char fake[TK_UUID_LEN + 1];
    int noted = 0;
    for (int i = 0; i < TK_OPTOKEN_USES_MAX + 10; i++) {
        tk_uuid7(fake);
        noted += tk_optoken_use(b, fake, t1);
    }
    CHECK_EQ_INT(noted, TK_OPTOKEN_USES_MAX);
    CHECK(!tk_optoken_use(b, id, t1));
    CHECK_OK(tk_optoken_uses_flush(b, o.db, t1, false, &n, &e), &e); /* unknown ids: no rows */
    CHECK_EQ_INT(n, TK_OPTOKEN_USES_MAX);
    CHECK(!tk_optoken_use(b, id, t1 + 1)); /* written a moment ago: still held */
    CHECK_OK(tk_optoken_uses_flush(b, o.db, t1 + TK_OPTOKEN_LAST_USED_MS, false, &n, &e), &e);
    CHECK(tk_optoken_use(b, id, t1 + TK_OPTOKEN_LAST_USED_MS));
    tk_optoken_uses_free(b);
    CHECK(!tk_optoken_use(u, "not-an-id", t1));
out:
    tk_optoken_uses_free(u);
    op_teardown(&o);
}
