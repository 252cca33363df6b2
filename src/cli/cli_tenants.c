/* cli_tenants.c: tokend tenants create|list (see cli.h). */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "tokend tenants: %s%s%s%s (see tokend help tenants)\n", why, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

/* POST /v1/tenants {"name"}: the token is printed once, on stdout. */
static int tenants_create(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    if (!name) return usage("create needs the tenant's NAME", NULL);
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    json_t *req = json_pack("{s:s}", "name", name), *body = NULL;
    long st = tk_cli_request(&c, "POST", "/v1/tenants", req, &body);
    json_decref(req);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 201) {
        tk_cli_print_error("tenants create", st, body);
        json_decref(body);
        return EXIT_SERVER;
    }
    json_t *t = json_object_get(body, "tenant");
    const char *tok = json_string_value(json_object_get(body, "token"));
    if (!json_is_object(t) || !tok) {
        fprintf(stderr, "tokend tenants create: the answer (HTTP 201) has no tenant or token; "
                        "is TOKEND_ADDR a tokend?\n");
        json_decref(body);
        return EXIT_SERVER;
    }
    const char *once = "this admin operator token is shown once: keep it now (tokend stores "
                       "only its hash); it acts on tenant %s only\n";
    if (c.json) {
        tk_cli_print_json(body);
        fprintf(stderr, once, tk_cli_jstr(t, "name"));
    } else {
        printf("%-10s %s\n", "tenant", tk_cli_jstr(t, "name"));
        printf("%-10s %s\n", "id", tk_cli_jstr(t, "id"));
        printf("%-10s %s\n", "created", tk_cli_jstr(t, "created_at"));
        printf("%-10s %s\n", "token_id", tk_cli_jstr(body, "token_id"));
        printf("%-10s %s\n\n", "token", tok);
        printf(once, tk_cli_jstr(t, "name"));
    }
    fflush(stdout);
    json_t *tv = json_object_get(body, "token");
    if (json_is_string(tv)) {
        char *w = (char *)json_string_value(tv);
        tk_wipe(w, strlen(w));
    }
    json_decref(body);
    return 0;
}

/* GET /v1/tenants: every page (or one page of --limit N). */
static void tenant_row(json_t *x)
{
    printf("%-36s  %-24s  %s\n", tk_cli_jstr(x, "id"), tk_cli_jstr(x, "created_at"),
           tk_cli_jstr(x, "name"));
}

static int tenants_list(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL;
    long long limit = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--limit")) {
            int64_t v;
            if (tk_parse_int(argv[++i], 1, 1000, &v) != TK_OK)
                return usage("--limit must be an integer from 1 to 1000, not", argv[i]);
            limit = v;
        } else
            return usage("unknown or incomplete argument", argv[i]);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    json_t *all = NULL;
    rc = tk_cli_list_all(&c, "tenants list", "/v1/tenants", "tenants", limit, &all);
    if (!rc)
        tk_cli_print_list(&c, "tenants", all,
                          "ID                                    CREATED                   NAME\n",
                          tenant_row);
    json_decref(all);
    return rc;
}

int tk_cli_tenants(int argc, char **argv)
{
    if (argc < 1) return usage("which one: create or list", NULL);
    if (!strcmp(argv[0], "create")) return tenants_create(argc - 1, argv + 1);
    if (!strcmp(argv[0], "list")) return tenants_list(argc - 1, argv + 1);
    return usage("unknown verb", argv[0]);
}
