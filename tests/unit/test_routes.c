/* test_routes.c: the route table's declarations (principal kinds, role),
 * walked with every principal kind and role through the same check the
 * authenticate hook makes (tk_api_route_allows). */
#include "unit.h"

#include "../../src/api/api.h"

#include <string.h>

#define DEF "0190a000-0000-7000-8000-000000000001"   /* the default tenant */
#define OTHER "0190a000-0000-7000-8000-000000000002" /* another tenant */

/* What a declaration means, written out independently of auth.c. */
static bool expect_role(unsigned decl, const char *role, bool in_default)
{
    bool admin = !strcmp(role, "admin"), op = !strcmp(role, "operator");
    switch (decl) {
    case TK_ROLE_ANY:
        return true;
    case TK_ROLE_WRITE:
        return admin || op;
    case TK_ROLE_ADMIN:
        return admin;
    case TK_ROLE_NODE_ADMIN:
        return admin && in_default;
    default:
        return false;
    }
}

static struct tk_principal principal(enum tk_principal_kind k, const char *tenant, const char *role)
{
    struct tk_principal p;
    memset(&p, 0, sizeof p);
    p.kind = k;
    snprintf(p.id, sizeof p.id, "0190a000-0000-7000-8000-0000000000ff");
    snprintf(p.tenant_id, sizeof p.tenant_id, "%s", tenant);
    snprintf(p.name, sizeof p.name, "someone@example.com");
    snprintf(p.role, sizeof p.role, "%s", role);
    return p;
}

void test_routes_declared(void)
{
    size_t n;
    const struct tk_route *rt = tk_api_routes(&n);
    CHECK(n > 10);
    const unsigned known = TK_P_OPERATOR | TK_P_CLIENT | TK_P_SESSION | TK_P_OAUTH_CLIENT;
    for (size_t i = 0; i < n; i++) {
        bool auth = rt[i].flags & TK_ROUTE_AUTH;
        if (auth != (rt[i].kinds != 0) || auth != (rt[i].role != TK_ROLE_UNSET))
            FAILF("%s %s: TK_ROUTE_AUTH, kinds and role disagree", rt[i].method, rt[i].pattern);
        if (rt[i].kinds & ~known) FAILF("%s %s: an unknown kind", rt[i].method, rt[i].pattern);
        if (rt[i].role > TK_ROLE_NODE_ADMIN)
            FAILF("%s %s: an unknown role", rt[i].method, rt[i].pattern);
        /* the only public /v1 routes: bringing a node up */
        if (!auth && !strncmp(rt[i].pattern, "/v1/", 4) && strcmp(rt[i].pattern, "/v1/sys/init") &&
            strcmp(rt[i].pattern, "/v1/sys/unseal") && strcmp(rt[i].pattern, "/v1/sys/seal-status"))
            FAILF("%s %s is public", rt[i].method, rt[i].pattern);
    }
    /* the declarations the handlers' own checks used to make */
    static const struct {
        const char *method, *path;
        unsigned role;
    } want[] = {
        {"GET", "/v1/whoami", TK_ROLE_ANY},
        {"GET", "/v1/events", TK_ROLE_ANY},
        {"GET", "/v1/events/verify", TK_ROLE_ANY},
        {"GET", "/v1/events/stream", TK_ROLE_ANY},
        {"GET", "/v1/operator-tokens", TK_ROLE_ANY},
        {"POST", "/v1/operator-tokens", TK_ROLE_ADMIN},
        {"DELETE", "/v1/operator-tokens/{id}", TK_ROLE_ADMIN},
        {"POST", "/v1/sys/seal", TK_ROLE_NODE_ADMIN},
        {"POST", "/v1/sys/rotate", TK_ROLE_NODE_ADMIN},
        {"POST", "/v1/sys/rewrap", TK_ROLE_NODE_ADMIN},
        {"GET", "/v1/sys/routes", TK_ROLE_NODE_ADMIN},
        {"GET", "/v1/tenants", TK_ROLE_NODE_ADMIN},
        {"POST", "/v1/tenants", TK_ROLE_NODE_ADMIN},
        {"GET", "/v1/tenants/{id}", TK_ROLE_NODE_ADMIN},
    };
    for (size_t w = 0; w < TK_NELEM(want); w++) {
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(rt[i].method, want[w].method) || strcmp(rt[i].pattern, want[w].path))
                continue;
            found = true;
            if (rt[i].role != want[w].role || rt[i].kinds != TK_P_OPERATOR)
                FAILF("%s %s declares role %s kinds %#x", want[w].method, want[w].path,
                      tk_api_role_name(rt[i].role), rt[i].kinds);
        }
        if (!found) FAILF("%s %s is not in the table", want[w].method, want[w].path);
    }
}

void test_routes_walk(void)
{
    size_t n;
    const struct tk_route *rt = tk_api_routes(&n);
    static const char *const roles[] = {"admin", "operator", "viewer"};
    for (size_t i = 0; i < n; i++) {
        const struct tk_route *r = &rt[i];
        if (!(r->flags & TK_ROUTE_AUTH)) continue;
        struct tk_err e;
        /* nobody */
        struct tk_principal none = principal(TK_PRINCIPAL_NONE, DEF, "admin");
        if (tk_api_route_allows(r, &none, DEF, &e) != TK_EAUTH)
            FAILF("%s %s lets nobody in", r->method, r->pattern);
        /* every kind, as an admin of the default tenant */
        for (int k = TK_PRINCIPAL_OPERATOR_TOKEN; k < TK_PRINCIPAL_KINDS; k++) {
            struct tk_principal p = principal((enum tk_principal_kind)k, DEF, "admin");
            tk_rc rc = tk_api_route_allows(r, &p, DEF, &e);
            if (r->kinds & TK_P_KIND(k)) {
                if (rc != TK_OK)
                    FAILF("%s %s refuses a %s it accepts: %s", r->method, r->pattern,
                          tk_principal_kind_name(p.kind), e.msg);
            } else {
                if (rc != TK_EAUTH || strcmp(e.code, "kind_not_accepted"))
                    FAILF("%s %s: a %s it does not accept got rc %d", r->method, r->pattern,
                          tk_principal_kind_name(p.kind), (int)rc);
                else if (!strstr(e.msg, (r->kinds & TK_P_OPERATOR)  ? "operator tokens"
                                        : (r->kinds & TK_P_SESSION) ? "sessions"
                                                                    : "client tokens"))
                    FAILF("%s %s: the 401 does not name the kinds: %s", r->method, r->pattern,
                          e.msg);
            }
        }
        /* every role, in the default tenant and in another (routes of
         * client tokens only: the kind refuses operators first) */
        for (int t = 0; t < 2 && (r->kinds & (TK_P_OPERATOR | TK_P_SESSION)); t++) {
            for (size_t j = 0; j < TK_NELEM(roles); j++) {
                struct tk_principal p =
                    principal((r->kinds & TK_P_OPERATOR) ? TK_PRINCIPAL_OPERATOR_TOKEN
                                                         : TK_PRINCIPAL_SESSION,
                              t ? OTHER : DEF, roles[j]);
                tk_rc rc = tk_api_route_allows(r, &p, DEF, &e);
                bool want = expect_role(r->role, roles[j], t == 0);
                if (want && rc != TK_OK)
                    FAILF("%s %s refuses %s (%s tenant): %s", r->method, r->pattern, roles[j],
                          t ? "other" : "default", e.msg);
                if (!want && (rc != TK_EFORBIDDEN || strcmp(e.code, "forbidden")))
                    FAILF("%s %s lets %s (%s tenant) in", r->method, r->pattern, roles[j],
                          t ? "other" : "default");
                if (!want && !strstr(e.msg, "admin"))
                    FAILF("%s %s: the 403 does not name the role needed: %s", r->method, r->pattern,
                          e.msg);
                if (!want && rc == TK_EFORBIDDEN && strcmp(roles[j], "admin") &&
                    !strstr(e.msg, roles[j]))
                    FAILF("%s %s: the 403 does not name the role held: %s", r->method, r->pattern,
                          e.msg);
            }
        }
    }
}

void test_routes_dispatch(void)
{
    /* the token prefix decides the kind, from the header alone */
    CHECK(tk_api_presented_kind(NULL) == TK_PRINCIPAL_NONE);
    CHECK(tk_api_presented_kind("") == TK_PRINCIPAL_NONE);
    CHECK(tk_api_presented_kind("Bearer garbage") == TK_PRINCIPAL_NONE);
    CHECK(tk_api_presented_kind("Bearer tko_abc") == TK_PRINCIPAL_OPERATOR_TOKEN);
    CHECK(tk_api_presented_kind("bearer  tko_abc") == TK_PRINCIPAL_OPERATOR_TOKEN);
    CHECK(tk_api_presented_kind("Bearer tkc_abc") == TK_PRINCIPAL_CLIENT_TOKEN);
    CHECK(tk_api_presented_kind("Basic YTpi") == TK_PRINCIPAL_OAUTH_CLIENT);
    CHECK(tk_api_presented_kind("Token tko_abc") == TK_PRINCIPAL_NONE);

    /* a route declaring several kinds names them all */
    struct tk_route both = {"GET",
                            "/v1/x",
                            NULL,
                            .flags = TK_ROUTE_AUTH,
                            .kinds = TK_P_OPERATOR | TK_P_CLIENT,
                            .role = TK_ROLE_WRITE};
    struct tk_principal s = principal(TK_PRINCIPAL_SESSION, DEF, "admin");
    struct tk_err e;
    CHECK(tk_api_route_allows(&both, &s, DEF, &e) == TK_EAUTH);
    CHECK(strstr(e.msg, "operator tokens") && strstr(e.msg, "client tokens"));
    struct tk_principal c = principal(TK_PRINCIPAL_CLIENT_TOKEN, OTHER, "operator");
    CHECK_EQ_INT(tk_api_route_allows(&both, &c, DEF, &e), TK_OK);
    struct tk_principal v = principal(TK_PRINCIPAL_CLIENT_TOKEN, OTHER, "viewer");
    CHECK_EQ_INT(tk_api_route_allows(&both, &v, DEF, &e), TK_EFORBIDDEN);
    CHECK(strstr(e.msg, "admin or operator") && strstr(e.msg, "viewer"));

    /* a client token (role "client") passes a route of role any, and no other */
    struct tk_route cl = {"GET", "/v1/z", NULL, .flags = TK_ROUTE_AUTH, .kinds = TK_P_CLIENT,
                          .role = TK_ROLE_ANY};
    struct tk_principal ct = principal(TK_PRINCIPAL_CLIENT_TOKEN, OTHER, "client");
    CHECK_EQ_INT(tk_api_route_allows(&cl, &ct, DEF, &e), TK_OK);
    cl.role = TK_ROLE_WRITE;
    CHECK_EQ_INT(tk_api_route_allows(&cl, &ct, DEF, &e), TK_EFORBIDDEN);
    struct tk_principal opc = principal(TK_PRINCIPAL_OPERATOR_TOKEN, DEF, "client");
    cl.kinds = TK_P_OPERATOR;
    cl.role = TK_ROLE_ANY;
    CHECK_EQ_INT(tk_api_route_allows(&cl, &opc, DEF, &e), TK_EFORBIDDEN);

    /* a route that declares nothing is refused, not opened */
    struct tk_route bare = {"GET", "/v1/y", NULL, .flags = TK_ROUTE_AUTH};
    struct tk_principal a = principal(TK_PRINCIPAL_OPERATOR_TOKEN, DEF, "admin");
    CHECK_EQ_INT(tk_api_route_allows(&bare, &a, DEF, &e), TK_EINTERNAL);
    bare.kinds = TK_P_OPERATOR;
    CHECK_EQ_INT(tk_api_route_allows(&bare, &a, DEF, &e), TK_EINTERNAL);

    /* a role nobody has */
    struct tk_principal odd = principal(TK_PRINCIPAL_OPERATOR_TOKEN, DEF, "root");
    bare.role = TK_ROLE_ANY;
    CHECK_EQ_INT(tk_api_route_allows(&bare, &odd, DEF, &e), TK_EFORBIDDEN);

    /* an email fits in a name */
    CHECK(sizeof(((struct tk_principal *)0)->name) >= 255);
}
