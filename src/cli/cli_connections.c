/* cli_connections.c: tokend connections import|list|show|delete|token|refresh
 * (see cli.h). Tokens to import are read from a JSON file or stdin
 * (--file FILE, - for stdin), never from the command line, where other
 * users could see them in the process list. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT_MAX (64 * 1024)

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "tokend connections: %s%s%s%s (see tokend help connections)\n", why,
            arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

static bool path_with(char *out, size_t n, const char *id, const char *suffix)
{
    char *esc = curl_easy_escape(NULL, id, 0);
    int w = snprintf(out, n, "/v1/connections/%s%s", esc ? esc : "", suffix);
    curl_free(esc);
    return w > 0 && (size_t)w < n;
}

/* Common options: --json, --token-file, one positional ID, and the extra
 * ones the verb takes (name -> value slot; a NULL slot is a flag). */
struct opt {
    const char *name;
    const char **val;
    bool *flag;
};

static int parse(int argc, char **argv, struct tk_cli_client *c, const char **token_file,
                 const char **id, const struct opt *opts, size_t nopts)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool done = false;
        for (size_t k = 0; k < nopts && !done; k++) {
            if (strcmp(a, opts[k].name)) continue;
            if (opts[k].flag) {
                *opts[k].flag = true;
            } else {
                if (i + 1 >= argc) return usage("needs a value", a);
                *opts[k].val = argv[++i];
            }
            done = true;
        }
        if (done) continue;
        if (!strcmp(a, "--json"))
            c->json = true;
        else if (i + 1 < argc && !strcmp(a, "--token-file"))
            *token_file = argv[++i];
        else if (id && a[0] != '-' && !*id)
            *id = a;
        else
            return usage("unknown or incomplete argument", a);
    }
    if (id && !*id) return usage("this verb needs the connection's ID", NULL);
    return tk_cli_client_init(c, *token_file);
}

static void print_conn(json_t *o)
{
    static const char *const keys[] = {"id",
                                       "label",
                                       "provider",
                                       "app_id",
                                       "status",
                                       "expires_at",
                                       "last_refresh_at",
                                       "next_refresh_at",
                                       "last_error_code",
                                       "last_error",
                                       "failure_count",
                                       "version",
                                       "created_at",
                                       NULL};
    for (size_t i = 0; keys[i]; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (json_is_integer(v))
            printf("%-16s %lld\n", keys[i], (long long)json_integer_value(v));
        else
            printf("%-16s %s\n", keys[i], json_is_string(v) ? json_string_value(v) : "-");
    }
}

static int conn_import(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *tf = NULL, *file = NULL, *app_id = NULL, *label = NULL;
    const struct opt o[] = {
        {"--file", &file, NULL}, {"--app-id", &app_id, NULL}, {"--label", &label, NULL}};
    int rc = parse(argc, argv, &c, &tf, NULL, o, TK_NELEM(o));
    if (rc) return rc;
    if (!file)
        return usage("import needs --file FILE (- for stdin): a JSON object of app_id, label, "
                     "access_token, refresh_token, expires_at, refresh_expires_at, scopes",
                     NULL);
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) return usage("cannot open", file);
    char *buf = tk_malloc(IMPORT_MAX + 1);
    size_t n = fread(buf, 1, IMPORT_MAX + 1, f);
    if (f != stdin) fclose(f);
    json_error_t je;
    json_t *body = n <= IMPORT_MAX ? json_loadb(buf, n, 0, &je) : NULL;
    tk_wipe(buf, IMPORT_MAX + 1);
    free(buf);
    if (!json_is_object(body)) {
        json_decref(body);
        return usage("the file must hold one JSON object of at most 64 KiB:", file);
    }
    if (app_id) json_object_set_new(body, "app_id", json_string(app_id));
    if (label) json_object_set_new(body, "label", json_string(label));
    json_t *out = NULL;
    long st = tk_cli_request(&c, "POST", "/v1/connections", body, &out);
    static const char *const wipe[] = {"access_token", "refresh_token"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(body, wipe[i]);
        if (json_is_string(v)) tk_wipe((char *)json_string_value(v), json_string_length(v));
    }
    json_decref(body);
    return tk_cli_finish(&c, "connections import", st, 201, out, print_conn);
}

static void print_list(json_t *o)
{
    json_t *a = json_object_get(o, "connections");
    printf("%-36s  %-15s  %-14s  %-20s  %s\n", "ID", "STATUS", "PROVIDER", "EXPIRES", "LABEL");
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *t = json_array_get(a, i);
        printf("%-36s  %-15s  %-14s  %-20s  %s\n", tk_cli_jstr(t, "id"), tk_cli_jstr(t, "status"),
               tk_cli_jstr(t, "provider"), tk_cli_jstr(t, "expires_at"), tk_cli_jstr(t, "label"));
    }
}

static int conn_list(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *tf = NULL, *status = NULL, *app_id = NULL, *limit = NULL;
    const struct opt o[] = {
        {"--status", &status, NULL}, {"--app-id", &app_id, NULL}, {"--limit", &limit, NULL}};
    int rc = parse(argc, argv, &c, &tf, NULL, o, TK_NELEM(o));
    if (rc) return rc;
    char path[1024];
    char *s = status ? curl_easy_escape(NULL, status, 0) : NULL;
    char *a = app_id ? curl_easy_escape(NULL, app_id, 0) : NULL;
    char *l = limit ? curl_easy_escape(NULL, limit, 0) : NULL;
    snprintf(path, sizeof path, "/v1/connections?limit=%s%s%s%s%s", l ? l : "1000",
             s ? "&status=" : "", s ? s : "", a ? "&app_id=" : "", a ? a : "");
    curl_free(s);
    curl_free(a);
    curl_free(l);
    json_t *out = NULL;
    long st = tk_cli_get(&c, path, &out);
    return tk_cli_finish(&c, "connections list", st, 200, out, print_list);
}

static int conn_simple(const char *verb, const char *method, const char *suffix, long want,
                       void (*printer)(json_t *), int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *tf = NULL, *id = NULL, *min_ttl = NULL;
    bool debug = false;
    struct opt o[2];
    size_t no = 0;
    if (!strcmp(verb, "token")) o[no++] = (struct opt){"--min-ttl", &min_ttl, NULL};
    if (!strcmp(verb, "refresh")) o[no++] = (struct opt){"--debug", NULL, &debug};
    int rc = parse(argc, argv, &c, &tf, &id, o, no);
    if (rc) return rc;
    char sfx[128];
    snprintf(sfx, sizeof sfx, "%s", suffix);
    if (min_ttl) {
        int64_t v;
        if (tk_parse_int(min_ttl, 0, 86400, &v) != TK_OK)
            return usage("--min-ttl takes seconds from 0 to 86400, not", min_ttl);
        snprintf(sfx, sizeof sfx, "%s?min_ttl=%lld", suffix, (long long)v);
    }
    if (debug) snprintf(sfx, sizeof sfx, "%s?debug=1", suffix);
    char path[512];
    if (!path_with(path, sizeof path, id, sfx)) return usage("too long", id);
    json_t *out = NULL;
    long st = strcmp(method, "GET") ? tk_cli_request(&c, method, path, NULL, &out)
                                    : tk_cli_get(&c, path, &out);
    char what[64];
    snprintf(what, sizeof what, "connections %s", verb);
    return tk_cli_finish(&c, what, st, want, out, printer);
}

static void print_token(json_t *o)
{
    printf("%s\n", tk_cli_jstr(o, "access_token"));
}

static void print_deleted(json_t *o)
{
    printf("deleted connection %s\n", tk_cli_jstr(o, "id"));
}

int tk_cli_connections(int argc, char **argv)
{
    if (argc < 1) return usage("which one: import, list, show, delete, token or refresh", NULL);
    const char *v = argv[0];
    argc--, argv++;
    if (!strcmp(v, "import")) return conn_import(argc, argv);
    if (!strcmp(v, "list")) return conn_list(argc, argv);
    if (!strcmp(v, "show")) return conn_simple("show", "GET", "", 200, print_conn, argc, argv);
    if (!strcmp(v, "delete"))
        return conn_simple("delete", "DELETE", "", 200, print_deleted, argc, argv);
    if (!strcmp(v, "token"))
        return conn_simple("token", "GET", "/token", 200, print_token, argc, argv);
    if (!strcmp(v, "refresh"))
        return conn_simple("refresh", "POST", "/refresh", 200, NULL, argc, argv);
    return usage("unknown verb", v);
}

/* tokend doctor connection ID [--json]: GET /v1/connections/{id}/diagnosis,
 * printed as state, token expiry, the last attempts and the conclusion with
 * its next step. Exit 0 when the connection is fine (cause ok or
 * never_refreshed), 1 otherwise, 3 unreachable. */
int tk_cli_doctor_connection(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *tf = NULL, *id = NULL;
    int rc = parse(argc, argv, &c, &tf, &id, NULL, 0);
    if (rc) return rc;
    char path[512];
    if (!path_with(path, sizeof path, id, "/diagnosis")) return usage("too long", id);
    json_t *o = NULL;
    long st = tk_cli_get(&c, path, &o);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("doctor connection", st, o);
        json_decref(o);
        return EXIT_SERVER;
    }
    const char *cause = tk_cli_jstr(o, "cause");
    bool fine = !strcmp(cause, "ok") || !strcmp(cause, "never_refreshed");
    if (c.json) {
        tk_cli_print_json(o);
    } else {
        json_t *cn = json_object_get(o, "connection"), *tok = json_object_get(o, "token"), *x;
        printf("connection %s '%s' (%s)\n", tk_cli_jstr(cn, "id"), tk_cli_jstr(cn, "label"),
               tk_cli_jstr(cn, "provider"));
        printf("status     %s", tk_cli_jstr(cn, "status"));
        if (json_is_string(json_object_get(cn, "last_error_code")))
            printf(" (%s, %lld failures)", tk_cli_jstr(cn, "last_error_code"),
                   (long long)json_integer_value(json_object_get(cn, "failure_count")));
        printf("\ntoken      expires %s (in %lld s), refresh token expires %s\n",
               tk_cli_jstr(tok, "expires_at"),
               (long long)json_integer_value(json_object_get(tok, "expires_in")),
               json_is_string(json_object_get(tok, "refresh_expires_at"))
                   ? tk_cli_jstr(tok, "refresh_expires_at")
                   : "(unknown)");
        printf("refresh    last %s, next %s\n", tk_cli_jstr(cn, "last_refresh_at"),
               tk_cli_jstr(cn, "next_refresh_at"));
        size_t i;
        json_t *a = json_object_get(o, "attempts");
        printf("attempts (%zu, newest first)\n", json_array_size(a));
        json_array_foreach(a, i, x)
        {
            char status[16] = "-";
            if (json_is_integer(json_object_get(x, "status")))
                snprintf(status, sizeof status, "%lld",
                         (long long)json_integer_value(json_object_get(x, "status")));
            printf("  %-24s %-9s %-6s %-4s %-16s %s\n", tk_cli_jstr(x, "at"),
                   tk_cli_jstr(x, "source"), tk_cli_jstr(x, "outcome"), status,
                   json_is_string(json_object_get(x, "error_code")) ? tk_cli_jstr(x, "error_code")
                                                                    : "-",
                   tk_cli_jstr(x, "message"));
        }
        printf("\n%s\nnext step: %s\n", tk_cli_jstr(o, "conclusion"), tk_cli_jstr(o, "next_step"));
    }
    json_decref(o);
    return fine ? 0 : EXIT_SERVER;
}
