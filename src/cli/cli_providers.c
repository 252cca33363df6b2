/* cli_providers.c: tokend providers list|show and tokend provider-apps
 * create|list|show|update|delete (see cli.h). The client secret is read
 * from a file or stdin (--client-secret-file FILE, - for stdin), never from
 * the command line, where other users could see it in the process list. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_MAX 4096

static int usage(const char *noun, const char *why, const char *arg)
{
    fprintf(stderr, "tokend %s: %s%s%s%s (see tokend help %s)\n", noun, why, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "", noun);
    return EXIT_USAGE;
}

static const char *jbool(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_true(v) ? "yes" : json_is_false(v) ? "no" : "-";
}

/* GET path; print error and return status code on failure. */
static int get_ok(struct tk_cli_client *c, const char *what, const char *path, json_t **body)
{
    long st = tk_cli_get(c, path, body);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error(what, st, *body);
        json_decref(*body);
        *body = NULL;
        return EXIT_SERVER;
    }
    return 0;
}

/* ---- providers ---- */

static int providers_list(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    int rc = tk_cli_client_args(&c, "providers", argc, argv);
    if (rc) return rc;
    json_t *body = NULL;
    rc = get_ok(&c, "providers list", "/v1/providers", &body);
    if (rc) return rc;
    json_t *a = json_object_get(body, "providers");
    if (c.json) {
        tk_cli_print_json(body);
    } else {
        printf("%-16s  %-20s  %-8s  %-8s  %s\n", "NAME", "CLIENT_AUTH", "ROTATES", "SOURCE",
               "TOKEN_URL");
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *p = json_array_get(a, i);
            printf("%-16s  %-20s  %-8s  %-8s  %s\n", tk_cli_jstr(p, "name"),
                   tk_cli_jstr(p, "client_auth"), jbool(p, "rotates_refresh_tokens"),
                   tk_cli_jstr(p, "source"),
                   json_is_string(json_object_get(p, "token_url")) ? tk_cli_jstr(p, "token_url")
                                                                   : "(set per app)");
        }
    }
    json_decref(body);
    return 0;
}

/* A path segment escaped for the URL. */
static int path_with(char *out, size_t n, const char *prefix, const char *seg)
{
    char *esc = curl_easy_escape(NULL, seg, 0);
    int w = snprintf(out, n, "%s%s", prefix, esc ? esc : "");
    curl_free(esc);
    return w > 0 && (size_t)w < n;
}

static void print_app(json_t *o);

/* GET prefix + NAME|ID: JSON, or with printer (when given) a table unless --json. */
static int show_one(const char *noun, const char *what, const char *prefix,
                    void (*printer)(json_t *), int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *key = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (argv[i][0] != '-' && !key)
            key = argv[i];
        else
            return usage(noun, "unknown or incomplete argument", argv[i]);
    }
    if (!key) return usage(noun, "show needs a NAME or ID", NULL);
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    char path[512];
    if (!path_with(path, sizeof path, prefix, key)) return usage(noun, "too long", key);
    json_t *body = NULL;
    rc = get_ok(&c, what, path, &body);
    if (rc) return rc;
    if (printer && !c.json)
        printer(body);
    else
        tk_cli_print_json(body);
    json_decref(body);
    return 0;
}

int tk_cli_providers(int argc, char **argv)
{
    if (argc < 1) return usage("providers", "which one: list or show", NULL);
    if (!strcmp(argv[0], "list")) return providers_list(argc - 1, argv + 1);
    if (!strcmp(argv[0], "show"))
        return show_one("providers", "providers show", "/v1/providers/", NULL, argc - 1, argv + 1);
    return usage("providers", "unknown verb", argv[0]);
}

/* ---- provider apps ---- */

/* Read the client secret from path ("-": stdin): at most SECRET_MAX bytes,
 * one trailing newline removed. */
static int read_secret(const char *path, char *buf, size_t *len)
{
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0) {
        fprintf(stderr, "tokend provider-apps: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_USAGE;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, SECRET_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n > SECRET_MAX) break;
    }
    if (fd != 0) close(fd);
    if (n > SECRET_MAX) {
        tk_wipe(buf, n);
        fprintf(stderr, "tokend provider-apps: the client secret in %s is longer than %d bytes\n",
                path, SECRET_MAX);
        return EXIT_USAGE;
    }
    if (n > 0 && buf[n - 1] == '\n') n--;
    if (n > 0 && buf[n - 1] == '\r') n--;
    if (n == 0) {
        fprintf(stderr, "tokend provider-apps: the client secret in %s is empty\n", path);
        return EXIT_USAGE;
    }
    buf[n] = '\0';
    *len = n;
    return 0;
}

/* The options of create and update into body (and the secret's file). */
static int app_options(int argc, char **argv, json_t *body, struct tk_cli_client *c,
                       const char **token_file, const char **secret_file, const char **id,
                       bool want_id)
{
    static const char *const str_opts[][2] = {
        {"--provider", "provider"},       {"--name", "name"},
        {"--client-id", "client_id"},     {"--environment", "environment"},
        {"--token-url", "token_url"},     {"--authorize-url", "authorize_url"},
        {"--client-auth", "client_auth"},
    };
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        bool done = false;
        for (size_t k = 0; k < TK_NELEM(str_opts) && !done; k++) {
            if (strcmp(a, str_opts[k][0])) continue;
            if (!has_val) return usage("provider-apps", "needs a value", a);
            const char *v = argv[++i];
            /* an empty override clears it (null) */
            bool ovr = !strcmp(str_opts[k][1], "token_url") ||
                       !strcmp(str_opts[k][1], "authorize_url") ||
                       !strcmp(str_opts[k][1], "client_auth");
            json_object_set_new(body, str_opts[k][1], ovr && !v[0] ? json_null() : json_string(v));
            done = true;
        }
        if (done) continue;
        if (!strcmp(a, "--json")) {
            c->json = true;
        } else if (has_val && !strcmp(a, "--token-file")) {
            *token_file = argv[++i];
        } else if (has_val && !strcmp(a, "--client-secret-file")) {
            *secret_file = argv[++i];
        } else if (has_val && !strcmp(a, "--scope")) {
            json_t *s = json_object_get(body, "scopes");
            if (!s) json_object_set_new(body, "scopes", s = json_array());
            json_array_append_new(s, json_string(argv[++i]));
        } else if (!strcmp(a, "--no-scopes")) {
            json_object_set_new(body, "scopes", json_array());
        } else if (has_val && !strcmp(a, "--param")) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq || eq == kv) return usage("provider-apps", "--param needs KEY=VALUE, not", kv);
            json_t *p = json_object_get(body, "params");
            if (!p) json_object_set_new(body, "params", p = json_object());
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            json_object_set_new(p, key, json_string(eq + 1));
        } else if (has_val && !strcmp(a, "--rotates-refresh-tokens")) {
            const char *v = argv[++i];
            if (!strcmp(v, "true") || !strcmp(v, "false"))
                json_object_set_new(body, "rotates_refresh_tokens",
                                    json_boolean(!strcmp(v, "true")));
            else if (!v[0])
                json_object_set_new(body, "rotates_refresh_tokens", json_null());
            else
                return usage("provider-apps", "--rotates-refresh-tokens takes true or false, not",
                             v);
        } else if (has_val && !strcmp(a, "--default-lifetime")) {
            const char *v = argv[++i];
            int64_t n;
            if (!v[0])
                json_object_set_new(body, "default_lifetime", json_null());
            else if (tk_parse_int(v, 60, 31536000, &n) == TK_OK)
                json_object_set_new(body, "default_lifetime", json_integer(n));
            else
                return usage("provider-apps",
                             "--default-lifetime takes seconds from 60 to 31536000, not", v);
        } else if (!strcmp(a, "--client-secret")) {
            return usage("provider-apps",
                         "the client secret is never taken from the command line (other users "
                         "see it in the process list): use --client-secret-file FILE, or - for "
                         "stdin",
                         NULL);
        } else if (want_id && a[0] != '-' && !*id) {
            *id = a;
        } else {
            return usage("provider-apps", "unknown or incomplete argument", a);
        }
    }
    return 0;
}

static void print_app(json_t *o)
{
    printf("%-20s %s\n", "id", tk_cli_jstr(o, "id"));
    printf("%-20s %s\n", "provider", tk_cli_jstr(o, "provider"));
    printf("%-20s %s\n", "name", tk_cli_jstr(o, "name"));
    printf("%-20s %s\n", "client_id", tk_cli_jstr(o, "client_id"));
    printf("%-20s %s\n", "client_secret", jbool(o, "client_secret_set"));
    printf("%-20s %s\n", "environment", tk_cli_jstr(o, "environment"));
    char *s = json_dumps(json_object_get(o, "scopes"), JSON_COMPACT);
    printf("%-20s %s\n", "scopes", s ? s : "-");
    free(s);
    s = json_dumps(json_object_get(o, "params"), JSON_COMPACT);
    printf("%-20s %s\n", "params", s ? s : "-");
    free(s);
    json_t *eff = json_object_get(o, "effective");
    printf("%-20s %s\n", "token_url", tk_cli_jstr(eff, "token_url"));
    printf("%-20s %s\n", "authorize_url", tk_cli_jstr(eff, "authorize_url"));
    printf("%-20s %s\n", "client_auth", tk_cli_jstr(eff, "client_auth"));
    printf("%-20s %s\n", "rotates", jbool(eff, "rotates_refresh_tokens"));
    printf("%-20s %s\n", "created", tk_cli_jstr(o, "created_at"));
    printf("%-20s %s\n", "updated", tk_cli_jstr(o, "updated_at"));
}

static int apps_write(bool create, int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *secret_file = NULL, *id = NULL;
    json_t *body = json_object();
    int rc = app_options(argc, argv, body, &c, &token_file, &secret_file, &id, !create);
    if (!rc && !create && !id) rc = usage("provider-apps", "update needs the app's ID", NULL);
    if (!rc) rc = tk_cli_client_init(&c, token_file);
    char secret[SECRET_MAX + 2];
    size_t slen = 0;
    if (!rc && secret_file) rc = read_secret(secret_file, secret, &slen);
    if (!rc && secret_file) json_object_set_new(body, "client_secret", json_stringn(secret, slen));
    tk_wipe(secret, sizeof secret);
    if (rc) {
        json_decref(body);
        return rc;
    }
    char path[512] = "/v1/provider-apps";
    if (!create && !path_with(path, sizeof path, "/v1/provider-apps/", id)) {
        json_decref(body);
        return usage("provider-apps", "too long", id);
    }
    json_t *out = NULL;
    long st = tk_cli_request(&c, create ? "POST" : "PATCH", path, body, &out);
    json_t *sv = json_object_get(body, "client_secret");
    if (json_is_string(sv)) tk_wipe((char *)json_string_value(sv), json_string_length(sv));
    json_decref(body);
    return tk_cli_finish(&c, create ? "provider-apps create" : "provider-apps update", st,
                         create ? 201 : 200, out, print_app);
}

static void app_row(json_t *x)
{
    printf("%-36s  %-14s  %-10s  %s\n", tk_cli_jstr(x, "id"), tk_cli_jstr(x, "provider"),
           tk_cli_jstr(x, "environment"), tk_cli_jstr(x, "name"));
}

static int apps_list(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *provider = NULL;
    long long limit = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--provider"))
            provider = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--limit")) {
            int64_t v;
            if (tk_parse_int(argv[++i], 1, 1000, &v) != TK_OK)
                return usage("provider-apps", "--limit must be an integer from 1 to 1000, not",
                             argv[i]);
            limit = v;
        } else
            return usage("provider-apps", "unknown or incomplete argument", argv[i]);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    char prov[200] = "";
    if (provider) {
        char *esc = curl_easy_escape(NULL, provider, 0);
        snprintf(prov, sizeof prov, "?provider=%s", esc ? esc : "");
        curl_free(esc);
    }
    json_t *all = NULL;
    char path[240];
    snprintf(path, sizeof path, "/v1/provider-apps%s", prov);
    rc = tk_cli_list_all(&c, "provider-apps list", path, "provider_apps", limit, &all);
    if (!rc)
        tk_cli_print_list(
            &c, "provider_apps", all,
            "ID                                    PROVIDER        ENV         NAME\n", app_row);
    json_decref(all);
    return rc;
}

static int apps_delete(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *id = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (argv[i][0] != '-' && !id)
            id = argv[i];
        else
            return usage("provider-apps", "unknown or incomplete argument", argv[i]);
    }
    if (!id) return usage("provider-apps", "delete needs the app's ID", NULL);
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    char path[512];
    if (!path_with(path, sizeof path, "/v1/provider-apps/", id))
        return usage("provider-apps", "too long", id);
    json_t *out = NULL;
    long st = tk_cli_request(&c, "DELETE", path, NULL, &out);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("provider-apps delete", st, out);
        json_decref(out);
        return EXIT_SERVER;
    }
    if (c.json)
        tk_cli_print_json(out);
    else
        printf("deleted provider app %s\n", tk_cli_jstr(out, "id"));
    json_decref(out);
    return 0;
}

int tk_cli_provider_apps(int argc, char **argv)
{
    if (argc < 1)
        return usage("provider-apps", "which one: create, list, show, update or delete", NULL);
    const char *v = argv[0];
    if (!strcmp(v, "create")) return apps_write(true, argc - 1, argv + 1);
    if (!strcmp(v, "update")) return apps_write(false, argc - 1, argv + 1);
    if (!strcmp(v, "list")) return apps_list(argc - 1, argv + 1);
    if (!strcmp(v, "delete")) return apps_delete(argc - 1, argv + 1);
    if (!strcmp(v, "show"))
        return show_one("provider-apps", "provider-apps show", "/v1/provider-apps/", print_app,
                        argc - 1, argv + 1);
    return usage("provider-apps", "unknown verb", v);
}
