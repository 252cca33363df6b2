/* cli_oauth.c: tokend oauth clients create|list|show|update|delete|
 * rotate-secret and tokend oauth scopes create|list|update|delete (see
 * cli.h), over /v1/oauth/clients and /v1/oauth/scopes. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "tokend oauth: %s%s%s%s (see tokend help oauth)\n", why, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

static void print_client(json_t *o)
{
    static const char *const keys[] = {
        "id",          "client_id",        "name",
        "client_type", "application_type", "token_endpoint_auth_method",
        "status",      "origin",           "secret_preview",
        "created_at",  "updated_at"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        printf("%-28s %s\n", keys[i], tk_cli_jstr(o, keys[i]));
    static const char *const arrays[] = {"redirect_uris", "grant_types", "scopes",
                                         "default_scopes"};
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++) {
        char *s = json_dumps(json_object_get(o, arrays[i]), JSON_COMPACT);
        printf("%-28s %s\n", arrays[i], s ? s : "-");
        free(s);
    }
    const char *secret = json_string_value(json_object_get(o, "client_secret"));
    if (secret)
        printf("%-28s %s\n(the client secret is shown once: store it now)\n", "client_secret",
               secret);
}

static void print_scope(json_t *o)
{
    printf("%-12s %s\n%-12s %s\n%-12s %s\n", "id", tk_cli_jstr(o, "id"), "name",
           tk_cli_jstr(o, "name"), "description", tk_cli_jstr(o, "description"));
}

static void print_clients(json_t *o)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(o, "clients"), i, c)
        printf("%-38s %-13s %-9s %s\n", tk_cli_jstr(c, "client_id"), tk_cli_jstr(c, "client_type"),
               tk_cli_jstr(c, "status"), tk_cli_jstr(c, "name"));
}

static void print_scopes(json_t *o)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(o, "scopes"), i, c)
        printf("%-38s %-24s %s\n", tk_cli_jstr(c, "id"), tk_cli_jstr(c, "name"),
               tk_cli_jstr(c, "description"));
}

static bool id_path(char *out, size_t n, const char *base, const char *id, const char *tail)
{
    char *esc = curl_easy_escape(NULL, id, 0);
    int w = snprintf(out, n, "%s/%s%s", base, esc ? esc : "", tail);
    curl_free(esc);
    return w > 0 && (size_t)w < n;
}

static void append(json_t *body, const char *k, const char *v)
{
    json_t *a = json_object_get(body, k);
    if (!a) json_object_set_new(body, k, a = json_array());
    json_array_append_new(a, json_string(v));
}

/* The arguments common to every command: --json, --token-file F, and at
 * most one positional (ID or NAME). Flags with a value go to body through
 * opt (NULL: no body). false after a usage error. */
struct args {
    struct tk_cli_client c;
    const char *token_file, *pos;
    json_t *body;
};

static int client_opt(struct args *a, const char *k, const char *v)
{
    if (!strcmp(k, "--name")) {
        json_object_set_new(a->body, "name", json_string(v));
    } else if (!strcmp(k, "--type")) {
        json_object_set_new(a->body, "client_type", json_string(v));
    } else if (!strcmp(k, "--app-type")) {
        json_object_set_new(a->body, "application_type", json_string(v));
    } else if (!strcmp(k, "--auth-method")) {
        json_object_set_new(a->body, "token_endpoint_auth_method", json_string(v));
    } else if (!strcmp(k, "--redirect-uri")) {
        append(a->body, "redirect_uris", v);
    } else if (!strcmp(k, "--grant")) {
        append(a->body, "grant_types", v);
    } else if (!strcmp(k, "--scope")) {
        append(a->body, "scopes", v);
    } else if (!strcmp(k, "--default-scope")) {
        append(a->body, "default_scopes", v);
    } else if (!strcmp(k, "--status")) {
        json_object_set_new(a->body, "status", json_string(v));
    } else if (!strcmp(k, "--rotate-refresh")) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return usage("--rotate-refresh takes true or false, not", v);
        json_object_set_new(a->body, "rotate_refresh", json_boolean(!strcmp(v, "true")));
    } else {
        return usage("unknown argument", k);
    }
    return 0;
}

static int scope_opt(struct args *a, const char *k, const char *v)
{
    if (!strcmp(k, "--description")) {
        json_object_set_new(a->body, "description", json_string(v));
        return 0;
    }
    return usage("unknown argument", k);
}

static int parse(struct args *a, int argc, char **argv,
                 int (*opt)(struct args *, const char *, const char *))
{
    for (int i = 0; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--json")) {
            a->c.json = true;
        } else if (!strcmp(k, "--token-file") && i + 1 < argc) {
            a->token_file = argv[++i];
        } else if (k[0] == '-' && k[1] == '-' && opt && a->body && i + 1 < argc) {
            int rc = opt(a, k, argv[++i]);
            if (rc) return rc;
        } else if (k[0] != '-' && !a->pos) {
            a->pos = k;
        } else {
            return usage("unknown or incomplete argument", k);
        }
    }
    return tk_cli_client_init(&a->c, a->token_file);
}

static int run(struct args *a, const char *what, const char *method, const char *path, long want,
               void (*printer)(json_t *))
{
    json_t *out = NULL;
    long st = tk_cli_request(&a->c, method, path, a->body, &out);
    json_decref(a->body);
    a->body = NULL;
    return tk_cli_finish(&a->c, what, st, want, out, printer);
}

static int clients_cmd(int argc, char **argv)
{
    if (argc < 1) return usage("oauth clients needs a verb", NULL);
    const char *verb = argv[0];
    struct args a = {0};
    bool write = !strcmp(verb, "create") || !strcmp(verb, "update");
    if (write) a.body = json_object();
    int rc = parse(&a, argc - 1, argv + 1, client_opt);
    if (rc) {
        json_decref(a.body);
        return rc;
    }
    char path[512], what[64];
    snprintf(what, sizeof what, "oauth clients %s", verb);
    const char *base = "/v1/oauth/clients";
    if (!strcmp(verb, "create")) {
        if (a.pos) return json_decref(a.body), usage("create takes no ID; use --name", a.pos);
        return run(&a, what, "POST", base, 201, print_client);
    }
    if (!strcmp(verb, "list")) {
        snprintf(path, sizeof path, "%s?limit=1000", base);
        return run(&a, what, "GET", path, 200, print_clients);
    }
    if (!a.pos) {
        json_decref(a.body);
        return usage("this needs the client's ID", NULL);
    }
    bool ok = id_path(path, sizeof path, base, a.pos,
                      !strcmp(verb, "rotate-secret") ? "/rotate-secret" : "");
    if (!ok) {
        json_decref(a.body);
        return usage("too long", a.pos);
    }
    if (!strcmp(verb, "show")) return run(&a, what, "GET", path, 200, print_client);
    if (!strcmp(verb, "update")) return run(&a, what, "PATCH", path, 200, print_client);
    if (!strcmp(verb, "delete")) return run(&a, what, "DELETE", path, 200, NULL);
    if (!strcmp(verb, "rotate-secret")) return run(&a, what, "POST", path, 200, print_client);
    json_decref(a.body);
    return usage("unknown verb", verb);
}

static int scopes_cmd(int argc, char **argv)
{
    if (argc < 1) return usage("oauth scopes needs a verb", NULL);
    const char *verb = argv[0];
    struct args a = {0};
    bool write = !strcmp(verb, "create") || !strcmp(verb, "update");
    if (write) a.body = json_object();
    int rc = parse(&a, argc - 1, argv + 1, scope_opt);
    if (rc) {
        json_decref(a.body);
        return rc;
    }
    char path[512], what[64];
    snprintf(what, sizeof what, "oauth scopes %s", verb);
    const char *base = "/v1/oauth/scopes";
    if (!strcmp(verb, "list")) {
        snprintf(path, sizeof path, "%s?limit=1000", base);
        return run(&a, what, "GET", path, 200, print_scopes);
    }
    if (!a.pos) {
        json_decref(a.body);
        return usage(!strcmp(verb, "create") ? "create needs the scope's NAME"
                                             : "this needs the scope's ID",
                     NULL);
    }
    if (!strcmp(verb, "create")) {
        json_object_set_new(a.body, "name", json_string(a.pos));
        return run(&a, what, "POST", base, 201, print_scope);
    }
    if (!id_path(path, sizeof path, base, a.pos, "")) {
        json_decref(a.body);
        return usage("too long", a.pos);
    }
    if (!strcmp(verb, "update")) return run(&a, what, "PATCH", path, 200, print_scope);
    if (!strcmp(verb, "delete")) return run(&a, what, "DELETE", path, 200, NULL);
    json_decref(a.body);
    return usage("unknown verb", verb);
}

int tk_cli_oauth(int argc, char **argv)
{
    if (argc >= 1 && !strcmp(argv[0], "clients")) return clients_cmd(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "scopes")) return scopes_cmd(argc - 1, argv + 1);
    return usage("oauth takes clients or scopes, not", argc >= 1 ? argv[0] : "nothing");
}
