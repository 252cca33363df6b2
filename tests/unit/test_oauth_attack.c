/* test_oauth_attack.c: findings of the attack on the OAuth server (issue
 * 15) that a unit test pins: flows (anybody's GET /oauth2/authorize) are
 * dropped after the retention, except those a code still names. */
#include "../../src/api/api.h"
#include "../../src/oauth/authorize.h"
#include "unit.h"

#include <string.h>

static bool mk_client(struct tk_db *db, const char *tenant, char id[TK_UUID_LEN + 1])
{
    struct tk_err e;
    tk_uuid7(id);
    return CHECK_OK(tk_db_exec(db,
                               "INSERT INTO oauth_clients (id, tenant_id, client_id, name, "
                               "client_type, application_type, token_endpoint_auth_method, "
                               "redirect_uris, grant_types, scopes, default_scopes, status, "
                               "origin, created_at, updated_at) VALUES (?, ?, 'purge-test', 'C', "
                               "'public', 'web', 'none', '[\"https://x/cb\"]', "
                               "'[\"authorization_code\"]', '[]', '[]', 'active', "
                               "'operator', 0, 0)",
                               TK_ARGS(TK_TEXT(id), TK_TEXT(tenant)), NULL, &e),
                    &e);
}

static bool mk_flow(struct tk_db *db, const char *tenant, const char *ocid, int64_t at,
                    char id[TK_UUID_LEN + 1])
{
    struct tk_err e;
    struct tk_oauth_flow f;
    memset(&f, 0, sizeof f);
    snprintf(f.tenant_id, sizeof f.tenant_id, "%s", tenant);
    snprintf(f.oauth_client_id, sizeof f.oauth_client_id, "%s", ocid);
    snprintf(f.client_id, sizeof f.client_id, "purge-test");
    snprintf(f.redirect_uri, sizeof f.redirect_uri, "https://x/cb");
    f.scopes = json_array();
    f.created_at = at;
    f.expires_at = at + 600000;
    bool ok = CHECK_OK(tk_oauth_flow_insert(db, &f, NULL, &e), &e);
    if (ok) {
        snprintf(id, TK_UUID_LEN + 1, "%s", f.id);
        ok = CHECK_OK(tk_db_exec(db, "UPDATE oauth_flows SET updated_at = ? WHERE id = ?",
                                 TK_ARGS(TK_INT(at), TK_TEXT(f.id)), NULL, &e),
                      &e);
    }
    tk_oauth_flow_clear(&f);
    return ok;
}

static int64_t flows_named(struct tk_db *db, const char *ocid)
{
    struct tk_err e;
    struct tk_rows *r = NULL;
    if (!CHECK_OK(tk_db_exec(db, "SELECT count(*) FROM oauth_flows WHERE oauth_client_id = ?",
                             TK_ARGS(TK_TEXT(ocid)), &r, &e),
                  &e))
        return -1;
    int64_t n = tk_rows_int(r, 0, 0);
    tk_rows_free(r);
    return n;
}

void test_oauth_flows_purge(struct fx *fx)
{
    struct tk_db *db = fx_db(fx);
    if (!db) return;
    struct tk_err e;
    char tenant[TK_UUID_LEN + 1], ocid[TK_UUID_LEN + 1];
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e) || !mk_client(db, tenant, ocid)) {
        tk_store_put(db);
        return;
    }
    int64_t now = tk_now_ms(), day = 86400000LL;
    char old1[TK_UUID_LEN + 1], old2[TK_UUID_LEN + 1], old3[TK_UUID_LEN + 1],
        coded[TK_UUID_LEN + 1], fresh[TK_UUID_LEN + 1], cid[TK_UUID_LEN + 1];
    if (!mk_flow(db, tenant, ocid, now - 100 * day, old1) ||
        !mk_flow(db, tenant, ocid, now - 95 * day, old2) ||
        !mk_flow(db, tenant, ocid, now - 91 * day, old3) ||
        !mk_flow(db, tenant, ocid, now - 100 * day, coded) ||
        !mk_flow(db, tenant, ocid, now - 1000, fresh))
        goto out;
    tk_uuid7(cid);
    if (!CHECK_OK(tk_db_exec(db,
                             "INSERT INTO oauth_codes (id, tenant_id, flow_id, oauth_client_id, "
                             "code_hash, hash_key, created_at, expires_at) VALUES (?, ?, ?, ?, "
                             "'purge-test-hash', 'k', ?, ?)",
                             TK_ARGS(TK_TEXT(cid), TK_TEXT(tenant), TK_TEXT(coded), TK_TEXT(ocid),
                                     TK_INT(now), TK_INT(now + 60000)),
                             NULL, &e),
                  &e))
        goto out;
    CHECK_EQ_INT(flows_named(db, ocid), 5);
    /* the floor id bounds the scan; the flows here were made now */
    const char *floor = "ffffffff-ffff-7fff-bfff-ffffffffffff";
    int64_t n = -1;
    /* a limit: at most 2 of the 3 droppable ones */
    CHECK_OK(tk_oauth_flows_purge(db, floor, now - 90 * day, 2, &n, &e), &e);
    CHECK_EQ_INT(n, 2);
    CHECK_OK(tk_oauth_flows_purge(db, floor, now - 90 * day, 100, &n, &e), &e);
    CHECK_EQ_INT(n, 1);
    CHECK_OK(tk_oauth_flows_purge(db, floor, now - 90 * day, 100, &n, &e), &e);
    CHECK_EQ_INT(n, 0);
    /* kept: the fresh one and the one a code names */
    CHECK_EQ_INT(flows_named(db, ocid), 2);
    struct tk_oauth_flow got;
    CHECK_OK(tk_oauth_flow_get(db, tenant, fresh, &got, &e), &e);
    tk_oauth_flow_clear(&got);
    CHECK_OK(tk_oauth_flow_get(db, tenant, coded, &got, &e), &e);
    tk_oauth_flow_clear(&got);
    CHECK_EQ_INT(tk_oauth_flow_get(db, tenant, old1, &got, &e), TK_ENOTFOUND);
    /* a floor id below them: nothing, whatever the time */
    CHECK_OK(
        tk_db_exec(db, "DELETE FROM oauth_codes WHERE id = ?", TK_ARGS(TK_TEXT(cid)), NULL, &e),
        &e);
    CHECK_OK(
        tk_oauth_flows_purge(db, "00000000-0000-7000-8000-000000000000", now + day, 100, &n, &e),
        &e);
    CHECK_EQ_INT(n, 0);
out:
    tk_db_exec(db, "DELETE FROM oauth_codes WHERE oauth_client_id = ?", TK_ARGS(TK_TEXT(ocid)),
               NULL, &e);
    tk_db_exec(db, "DELETE FROM oauth_flows WHERE oauth_client_id = ?", TK_ARGS(TK_TEXT(ocid)),
               NULL, &e);
    tk_db_exec(db, "DELETE FROM oauth_clients WHERE id = ?", TK_ARGS(TK_TEXT(ocid)), NULL, &e);
    tk_store_put(db);
}
