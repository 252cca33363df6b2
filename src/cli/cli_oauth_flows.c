/* cli_oauth_flows.c: tokend oauth flows list|show, tokend doctor flow ID
 * and tokend doctor oauth-client CLIENT_ID (see cli.h): the authorization
 * flows' trace, read from /v1/oauth/flows. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *cmd, const char *why, const char *arg)
{
    fprintf(stderr, "tokend %s: %s%s%s%s (see tokend help %s)\n", cmd, why, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "", strncmp(cmd, "doctor", 6) ? "oauth" : "doctor");
    return EXIT_USAGE;
}

struct opt {
    const char *name;
    const char **val;
};

/* --json, --token-file FILE, the options of opts, and one positional
 * argument into *pos when pos is not NULL (required then). */
static int parse(const char *cmd, int argc, char **argv, struct tk_cli_client *c, const char **pos,
                 const struct opt *opts, size_t nopts)
{
    const char *tf = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool done = false;
        for (size_t k = 0; k < nopts && !done; k++) {
            if (strcmp(a, opts[k].name)) continue;
            if (i + 1 >= argc) return usage(cmd, "needs a value", a);
            *opts[k].val = argv[++i];
            done = true;
        }
        if (done) continue;
        if (!strcmp(a, "--json"))
            c->json = true;
        else if (i + 1 < argc && !strcmp(a, "--token-file"))
            tf = argv[++i];
        else if (pos && a[0] != '-' && !*pos)
            *pos = a;
        else
            return usage(cmd, "unknown or incomplete argument", a);
    }
    if (pos && !*pos) return usage(cmd, "an argument is missing", NULL);
    return tk_cli_client_init(c, tf);
}

static bool flow_path(char *out, size_t n, const char *id, const char *suffix)
{
    char *esc = curl_easy_escape(NULL, id, 0);
    int w = snprintf(out, n, "/v1/oauth/flows/%s%s", esc ? esc : "", suffix);
    curl_free(esc);
    return w > 0 && (size_t)w < n;
}

static const char *status_of(json_t *f)
{
    if (json_is_true(json_object_get(f, "stuck"))) return "stuck";
    return tk_cli_jstr(f, "status");
}

static void print_list(json_t *o)
{
    size_t i;
    json_t *f;
    printf("%-36s  %-24s  %-9s  %-18s  %s\n", "ID", "CREATED", "STATUS", "STAGE",
           "CLIENT / REASON");
    json_array_foreach(json_object_get(o, "flows"), i, f)
    {
        const char *st = status_of(f);
        printf("%-36s  %-24s  %-9s  %-18s  %s\n", tk_cli_jstr(f, "id"),
               tk_cli_jstr(f, "created_at"), st,
               !strcmp(st, "failed") ? tk_cli_jstr(f, "failed_stage") : tk_cli_jstr(f, "stage"),
               !strcmp(st, "failed") ? tk_cli_jstr(f, "reason") : tk_cli_jstr(f, "client_id"));
    }
}

static void print_flow(json_t *f)
{
    printf("flow         %s\n", tk_cli_jstr(f, "id"));
    printf("client_id    %s\n", tk_cli_jstr(f, "client_id"));
    printf("redirect_uri %s\n", tk_cli_jstr(f, "redirect_uri"));
    char *sc = json_dumps(json_object_get(f, "scopes"), JSON_COMPACT);
    printf("scopes       %s\n", sc ? sc : "[]");
    free(sc);
    printf("user_id      %s\n", tk_cli_jstr(f, "user_id"));
    printf("status       %s\n", status_of(f));
    if (json_is_string(json_object_get(f, "failed_stage"))) {
        printf("failed at    %s (%s)\n", tk_cli_jstr(f, "failed_stage"), tk_cli_jstr(f, "error"));
        printf("reason       %s\n", tk_cli_jstr(f, "reason"));
    }
    printf("stages\n");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(f, "stages"), i, s)
    {
        printf("  %-18s %s\n", tk_cli_jstr(s, "stage"), tk_cli_jstr(s, "at"));
    }
}

static int flows_list(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *status = NULL, *client_id = NULL, *limit = NULL;
    const struct opt o[] = {
        {"--status", &status}, {"--client-id", &client_id}, {"--limit", &limit}};
    int rc = parse("oauth flows list", argc, argv, &c, NULL, o, TK_NELEM(o));
    if (rc) return rc;
    char *s = status ? curl_easy_escape(NULL, status, 0) : NULL;
    char *ci = client_id ? curl_easy_escape(NULL, client_id, 0) : NULL;
    char *l = limit ? curl_easy_escape(NULL, limit, 0) : NULL;
    char path[2048];
    snprintf(path, sizeof path, "/v1/oauth/flows?limit=%s%s%s%s%s", l ? l : "100",
             s ? "&status=" : "", s ? s : "", ci ? "&client_id=" : "", ci ? ci : "");
    curl_free(s);
    curl_free(ci);
    curl_free(l);
    json_t *out = NULL;
    long st = tk_cli_get(&c, path, &out);
    return tk_cli_finish(&c, "oauth flows list", st, 200, out, print_list);
}

static int flows_show(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = parse("oauth flows show", argc, argv, &c, &id, NULL, 0);
    if (rc) return rc;
    char path[512];
    if (!flow_path(path, sizeof path, id, "")) return usage("oauth flows show", "too long", NULL);
    json_t *out = NULL;
    long st = tk_cli_get(&c, path, &out);
    return tk_cli_finish(&c, "oauth flows show", st, 200, out, print_flow);
}

int tk_cli_oauth_flows(int argc, char **argv)
{
    if (argc < 1) return usage("oauth flows", "list or show?", NULL);
    if (!strcmp(argv[0], "list")) return flows_list(argc - 1, argv + 1);
    if (!strcmp(argv[0], "show")) return flows_show(argc - 1, argv + 1);
    return usage("oauth flows", "unknown verb", argv[0]);
}

/* ---- doctor ---- */

int tk_cli_doctor_flow(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = parse("doctor flow", argc, argv, &c, &id, NULL, 0);
    if (rc) return rc;
    char path[512];
    if (!flow_path(path, sizeof path, id, "/diagnosis"))
        return usage("doctor flow", "too long", NULL);
    json_t *o = NULL;
    long st = tk_cli_get(&c, path, &o);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("doctor flow", st, o);
        json_decref(o);
        return EXIT_SERVER;
    }
    const char *status = tk_cli_jstr(o, "status");
    bool fine = !json_is_true(json_object_get(o, "stuck")) && strcmp(status, "failed") != 0;
    if (c.json) {
        tk_cli_print_json(o);
    } else {
        print_flow(json_object_get(o, "flow"));
        printf("\n%s\n", tk_cli_jstr(o, "conclusion"));
        if (json_is_string(json_object_get(o, "next_step")))
            printf("next step: %s\n", tk_cli_jstr(o, "next_step"));
    }
    json_decref(o);
    return fine ? 0 : EXIT_SERVER;
}

/* The most frequent reasons among failures, with their next steps. */
int tk_cli_doctor_oauth_client(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *client_id = NULL;
    int rc = parse("doctor oauth-client", argc, argv, &c, &client_id, NULL, 0);
    if (rc) return rc;
    char *ci = curl_easy_escape(NULL, client_id, 0);
    char path[2048];
    snprintf(path, sizeof path, "/v1/oauth/flows?limit=1000&client_id=%s", ci ? ci : "");
    curl_free(ci);
    json_t *o = NULL;
    long st = tk_cli_get(&c, path, &o);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("doctor oauth-client", st, o);
        json_decref(o);
        return EXIT_SERVER;
    }
    json_t *flows = json_object_get(o, "flows");
    long n_active = 0, n_stuck = 0, n_failed = 0, n_completed = 0;
    json_t *failures = json_array(), *stuck = json_array();
    /* reasons counted: {reason: {count, stage, error, next_step}} */
    json_t *reasons = json_object();
    size_t i;
    json_t *f;
    json_array_foreach(flows, i, f)
    {
        const char *s = status_of(f);
        if (!strcmp(s, "stuck")) {
            n_stuck++;
            if (json_array_size(stuck) < 5) json_array_append(stuck, f);
        } else if (!strcmp(s, "failed")) {
            n_failed++;
            if (json_array_size(failures) < 5) json_array_append(failures, f);
            const char *reason = tk_cli_jstr(f, "reason");
            json_t *r = json_object_get(reasons, reason);
            if (!r) {
                r = json_pack("{s:i, s:s, s:s, s:O?}", "count", 0, "stage",
                              tk_cli_jstr(f, "failed_stage"), "error", tk_cli_jstr(f, "error"),
                              "next_step", json_object_get(f, "next_step"));
                json_object_set_new(reasons, reason, r);
            }
            json_object_set_new(r, "count",
                                json_integer(json_integer_value(json_object_get(r, "count")) + 1));
        } else if (!strcmp(s, "completed")) {
            n_completed++;
        } else {
            n_active++;
        }
    }
    /* the conclusion: the most frequent failure, else stuck, else fine */
    const char *top = NULL;
    json_int_t top_n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(reasons, k, v)
    {
        if (json_integer_value(json_object_get(v, "count")) > top_n) {
            top = k;
            top_n = json_integer_value(json_object_get(v, "count"));
        }
    }
    char conclusion[2048];
    const char *next = NULL;
    if (json_array_size(flows) == 0) {
        snprintf(conclusion, sizeof conclusion,
                 "No authorization flow of client_id '%.200s' in this tenant: the client never "
                 "reached tokend's authorization endpoint with this client_id (check the "
                 "client_id it sends, and the tenant).",
                 client_id);
        next = "make the client start an authorization at /oauth2/authorize";
    } else if (top) {
        json_t *t = json_object_get(reasons, top);
        snprintf(conclusion, sizeof conclusion,
                 "%lld of %zu flows failed; the most frequent failure (%lld) is at %s (%s): %s.",
                 (long long)n_failed, json_array_size(flows), (long long)top_n,
                 tk_cli_jstr(t, "stage"), tk_cli_jstr(t, "error"), top);
        if (json_is_string(json_object_get(t, "next_step"))) next = tk_cli_jstr(t, "next_step");
    } else if (n_stuck) {
        snprintf(conclusion, sizeof conclusion,
                 "%ld flows are stuck: they never reached the token exchange (tokend doctor "
                 "flow ID explains each).",
                 n_stuck);
        next = "check the client's callback: it must exchange the code at POST /oauth2/token "
               "within 60 s";
    } else {
        snprintf(conclusion, sizeof conclusion, "No failed or stuck flow among the last %zu.",
                 json_array_size(flows));
    }
    bool fine = !n_failed && !n_stuck && json_array_size(flows) > 0;
    json_t *summary =
        json_pack("{s:s, s:{s:I, s:I, s:I, s:I}, s:O, s:O, s:O, s:s, s:s?}", "client_id", client_id,
                  "counts", "active", (json_int_t)n_active, "stuck", (json_int_t)n_stuck, "failed",
                  (json_int_t)n_failed, "completed", (json_int_t)n_completed, "reasons", reasons,
                  "latest_failures", failures, "stuck_flows", stuck, "conclusion", conclusion,
                  "next_step", next);
    if (c.json) {
        tk_cli_print_json(summary);
    } else {
        printf("oauth client %s: %zu recent flows\n", client_id, json_array_size(flows));
        printf("counts       active %ld, stuck %ld, failed %ld, completed %ld\n", n_active, n_stuck,
               n_failed, n_completed);
        if (json_array_size(failures)) printf("latest failures\n");
        json_array_foreach(failures, i, f)
        {
            printf("  %s  %s  at %s (%s): %s\n", tk_cli_jstr(f, "id"), tk_cli_jstr(f, "created_at"),
                   tk_cli_jstr(f, "failed_stage"), tk_cli_jstr(f, "error"),
                   tk_cli_jstr(f, "reason"));
        }
        if (json_array_size(stuck)) printf("stuck\n");
        json_array_foreach(stuck, i, f)
        {
            printf("  %s  %s  at %s\n", tk_cli_jstr(f, "id"), tk_cli_jstr(f, "created_at"),
                   tk_cli_jstr(f, "stage"));
        }
        printf("\n%s\n", conclusion);
        if (next) printf("next step: %s\n", next);
    }
    json_decref(summary);
    json_decref(reasons);
    json_decref(failures);
    json_decref(stuck);
    json_decref(o);
    return fine ? 0 : EXIT_SERVER;
}
