/* cli_clients.c: tokend clients create|list|show|update|activate|suspend|
 * disable (see cli.h), over /v1/clients. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "tokend clients: %s%s%s%s (see tokend help clients)\n", why, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

static void print_client(json_t *o)
{
    printf("%-18s %s\n", "id", tk_cli_jstr(o, "id"));
    printf("%-18s %s\n", "name", tk_cli_jstr(o, "name"));
    printf("%-18s %s\n", "email", tk_cli_jstr(o, "email"));
    printf("%-18s %s\n", "status", tk_cli_jstr(o, "status"));
    char *s = json_dumps(json_object_get(o, "metadata"), JSON_COMPACT | JSON_SORT_KEYS);
    printf("%-18s %s\n", "metadata", s ? s : "-");
    free(s);
    printf("%-18s %s\n", "created", tk_cli_jstr(o, "created_at"));
    printf("%-18s %s\n", "updated", tk_cli_jstr(o, "updated_at"));
    printf("%-18s %s\n", "status changed", tk_cli_jstr(o, "status_changed_at"));
}

static bool client_path(char *out, size_t n, const char *id)
{
    char *esc = curl_easy_escape(NULL, id, 0);
    int w = snprintf(out, n, "/v1/clients/%s", esc ? esc : "");
    curl_free(esc);
    return w > 0 && (size_t)w < n;
}

/* Send method path body; expect status want; print the client. */
static int send_client(struct tk_cli_client *c, const char *what, const char *method,
                       const char *path, json_t *body, long want)
{
    json_t *out = NULL;
    long st = tk_cli_request(c, method, path, body, &out);
    json_decref(body);
    return tk_cli_finish(c, what, st, want, out, print_client);
}

/* create and update: --name N --email E|"" --status S --meta K=V... */
static int write_cmd(bool create, int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *id = NULL;
    json_t *body = json_object();
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--json")) {
            c.json = true;
        } else if (has && !strcmp(a, "--token-file")) {
            token_file = argv[++i];
        } else if (has && !strcmp(a, "--name")) {
            json_object_set_new(body, "name", json_string(argv[++i]));
        } else if (has && !strcmp(a, "--email")) {
            const char *v = argv[++i];
            json_object_set_new(body, "email", v[0] ? json_string(v) : json_null());
        } else if (has && !strcmp(a, "--status")) {
            json_object_set_new(body, "status", json_string(argv[++i]));
        } else if (has && !strcmp(a, "--meta")) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                json_decref(body);
                return usage("--meta needs KEY=VALUE, not", kv);
            }
            json_t *m = json_object_get(body, "metadata");
            if (!m) json_object_set_new(body, "metadata", m = json_object());
            char key[80];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            json_object_set_new(m, key, json_string(eq + 1));
        } else if (!create && a[0] != '-' && !id) {
            id = a;
        } else {
            json_decref(body);
            return usage("unknown or incomplete argument", a);
        }
    }
    if (!create && !id) {
        json_decref(body);
        return usage("update needs the client's ID", NULL);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) {
        json_decref(body);
        return rc;
    }
    char path[256] = "/v1/clients";
    if (!create && !client_path(path, sizeof path, id)) {
        json_decref(body);
        return usage("too long", id);
    }
    return send_client(&c, create ? "clients create" : "clients update", create ? "POST" : "PATCH",
                       path, body, create ? 201 : 200);
}

/* ID [--json] [--token-file F] */
static int id_args(int argc, char **argv, struct tk_cli_client *c, const char **id)
{
    const char *token_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c->json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (argv[i][0] != '-' && !*id)
            *id = argv[i];
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    if (!*id) return usage("this needs the client's ID", NULL);
    return tk_cli_client_init(c, token_file);
}

static int status_cmd(const char *status, const char *verb, int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = id_args(argc, argv, &c, &id);
    if (rc) return rc;
    char path[256], what[64];
    if (!client_path(path, sizeof path, id)) return usage("too long", id);
    snprintf(what, sizeof what, "clients %s", verb);
    return send_client(&c, what, "PATCH", path, json_pack("{s:s}", "status", status), 200);
}

static int show_cmd(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = id_args(argc, argv, &c, &id);
    if (rc) return rc;
    char path[256];
    if (!client_path(path, sizeof path, id)) return usage("too long", id);
    json_t *out = NULL;
    long st = tk_cli_get(&c, path, &out);
    return tk_cli_finish(&c, "clients show", st, 200, out, print_client);
}

static void client_row(json_t *x)
{
    printf("%-36s  %-9s  %-24s  %s\n", tk_cli_jstr(x, "id"), tk_cli_jstr(x, "status"),
           tk_cli_jstr(x, "email"), tk_cli_jstr(x, "name"));
}

static int list_cmd(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *status = NULL;
    long long limit = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--status"))
            status = argv[++i];
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
    char st_q[96] = "";
    if (status) {
        char *esc = curl_easy_escape(NULL, status, 0);
        snprintf(st_q, sizeof st_q, "?status=%.60s", esc ? esc : "");
        curl_free(esc);
    }
    json_t *all = NULL;
    char path[160];
    snprintf(path, sizeof path, "/v1/clients%s", st_q);
    rc = tk_cli_list_all(&c, "clients list", path, "clients", limit, &all);
    if (!rc)
        tk_cli_print_list(
            &c, "clients", all,
            "ID                                    STATUS     EMAIL                     NAME\n",
            client_row);
    json_decref(all);
    return rc;
}

int tk_cli_clients(int argc, char **argv)
{
    if (argc < 1)
        return usage("which one: create, list, show, update, activate, suspend or disable", NULL);
    const char *v = argv[0];
    argc--;
    argv++;
    if (!strcmp(v, "create")) return write_cmd(true, argc, argv);
    if (!strcmp(v, "update")) return write_cmd(false, argc, argv);
    if (!strcmp(v, "list")) return list_cmd(argc, argv);
    if (!strcmp(v, "show")) return show_cmd(argc, argv);
    if (!strcmp(v, "activate")) return status_cmd("active", v, argc, argv);
    if (!strcmp(v, "suspend")) return status_cmd("suspended", v, argc, argv);
    if (!strcmp(v, "disable")) return status_cmd("disabled", v, argc, argv);
    return usage("unknown verb", v);
}

/* ---- tokend doctor client ID | tokend doctor token ---- */

/* tokend doctor client ID [--json]: GET /v1/clients/{id}/report. Exit 0
 * when the client is active with a usable token and no failure in the last
 * hour, 1 otherwise. */
int tk_cli_doctor_client(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = id_args(argc, argv, &c, &id);
    if (rc) return rc;
    char base[240], path[256];
    if (!client_path(base, sizeof base, id)) return usage("too long", id);
    snprintf(path, sizeof path, "%s/report", base);
    json_t *o = NULL;
    long st = tk_cli_get(&c, path, &o);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("doctor client", st, o);
        json_decref(o);
        return EXIT_SERVER;
    }
    json_t *cl = json_object_get(o, "client");
    json_t *fail = json_object_get(o, "failures");
    size_t usable = 0, i;
    json_t *x;
    json_array_foreach(json_object_get(o, "tokens"), i, x)
    {
        const char *s = tk_cli_jstr(x, "status");
        if (!strcmp(s, "active") || !strcmp(s, "rotating")) usable++;
    }
    bool bad = strcmp(tk_cli_jstr(cl, "status"), "active") != 0 || usable == 0 ||
               json_integer_value(json_object_get(fail, "total")) > 0;
    if (c.json) {
        tk_cli_print_json(o);
    } else {
        printf("client   %s '%s' (%s)%s%s\n", tk_cli_jstr(cl, "id"), tk_cli_jstr(cl, "name"),
               tk_cli_jstr(cl, "status"), json_is_string(json_object_get(cl, "email")) ? ", " : "",
               json_is_string(json_object_get(cl, "email")) ? tk_cli_jstr(cl, "email") : "");
        printf("tokens\n");
        json_array_foreach(json_object_get(o, "tokens"), i, x)
        {
            printf("  %-22s %-9s last used %-24s expires %s\n", tk_cli_jstr(x, "preview"),
                   tk_cli_jstr(x, "status"), tk_cli_jstr(x, "last_used_at"),
                   tk_cli_jstr(x, "expires_at"));
        }
        printf("agents\n");
        json_array_foreach(json_object_get(o, "agents"), i, x)
        {
            printf("  %-24s %-7s last heartbeat %s (%s)\n", tk_cli_jstr(x, "logical_agent_id"),
                   tk_cli_jstr(x, "status"), tk_cli_jstr(x, "last_heartbeat_at"),
                   tk_cli_jstr(x, "reported_status"));
        }
        printf("failures since %s: %lld\n", tk_cli_jstr(fail, "since"),
               (long long)json_integer_value(json_object_get(fail, "total")));
        const char *k;
        json_object_foreach(json_object_get(fail, "by_reason"), k, x)
        {
            printf("  %-18s %lld\n", k, (long long)json_integer_value(x));
        }
        printf("\n%s\n", tk_cli_jstr(o, "conclusion"));
    }
    json_decref(o);
    return bad ? EXIT_SERVER : 0;
}

#define DOCTOR_TOKEN_MAX 4096

/* tokend doctor token [--json]: the token from stdin (never an argument:
 * other users see those), exactly as the agent has it; one final "\n" (an
 * echo's) is dropped, anything else is validated as is, so that what the
 * agent gets wrong shows as a warning. Exit 0 valid, 1 not. */
int tk_cli_doctor_token(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (!strncmp(argv[i], "tkc_", 4))
            return usage("the token is read from standard input, never from the command line "
                         "(other users see a process's arguments): echo \"$TOKEN\" | tokend "
                         "doctor token",
                         NULL);
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    char buf[DOCTOR_TOKEN_MAX + 2];
    size_t n = fread(buf, 1, DOCTOR_TOKEN_MAX + 1, stdin);
    if (n > DOCTOR_TOKEN_MAX) {
        tk_wipe(buf, sizeof buf);
        return usage("standard input holds more than 4096 bytes; give the token alone", NULL);
    }
    if (n > 0 && buf[n - 1] == '\n' && (n < 2 || buf[n - 2] != '\r')) n--;
    json_t *body = json_object();
    json_object_set_new(body, "token", json_stringn(buf, n));
    tk_wipe(buf, sizeof buf);
    json_t *o = NULL;
    long st = tk_cli_request(&c, "POST", "/v1/tokens/validate", body, &o);
    json_t *tv = json_object_get(body, "token");
    if (json_is_string(tv)) tk_wipe((char *)json_string_value(tv), json_string_length(tv));
    json_decref(body);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("doctor token", st, o);
        json_decref(o);
        return EXIT_SERVER;
    }
    bool valid = json_is_true(json_object_get(o, "valid"));
    json_t *w = json_object_get(o, "warnings");
    if (c.json) {
        tk_cli_print_json(o);
    } else {
        if (valid)
            printf("valid: client '%s' (%s), token %s, expires %s\n", tk_cli_jstr(o, "name"),
                   tk_cli_jstr(o, "client_id"), tk_cli_jstr(o, "token_id"),
                   tk_cli_jstr(o, "expires_at"));
        else
            printf("invalid (%s): %s\n", tk_cli_jstr(o, "reason"), tk_cli_jstr(o, "message"));
        size_t i;
        json_t *x;
        json_array_foreach(w, i, x)
        {
            const char *s = json_string_value(x);
            printf("warning: %s: %s\n", s ? s : "-",
                   s && strstr(s, "newline")  ? "the token carries a line ending: strip it"
                   : s && strstr(s, "crlf")   ? "the token carries a CR LF: strip it"
                   : s && strstr(s, "quotes") ? "the token is quoted: remove the quotes"
                                              : "the token has whitespace around it: strip it");
        }
    }
    json_decref(o);
    return valid ? 0 : EXIT_SERVER;
}
