/* cli_users.c: tokend users create|list|show|disable|enable|set-password
 * (see cli.h), over /v1/users. Passwords come from the terminal (no echo)
 * or one line of stdin, never from argv. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PW_BUF 1100 /* 1024 bytes at most, a newline, and room to tell too long */

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "tokend users: %s%s%s%s (see tokend help users)\n", why, arg ? " '" : "",
            arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

static void print_user(json_t *o)
{
    printf("%-14s %s\n", "id", tk_cli_jstr(o, "id"));
    printf("%-14s %s\n", "email", tk_cli_jstr(o, "email"));
    printf("%-14s %s\n", "status", tk_cli_jstr(o, "status"));
    printf("%-14s %s\n", "created", tk_cli_jstr(o, "created_at"));
    printf("%-14s %s\n", "updated", tk_cli_jstr(o, "updated_at"));
    printf("%-14s %s\n", "last login", tk_cli_jstr(o, "last_login_at"));
}

static int read_line(const char *prompt, char *buf, size_t n)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *r = fgets(buf, (int)n, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!r) return -1;
    size_t len = strlen(buf);
    if (len && buf[len - 1] == '\n') buf[--len] = '\0';
    if (len && buf[len - 1] == '\r') buf[--len] = '\0';
    return 0;
}

/* The new password into buf: from a terminal twice (they must match), or
 * one line of stdin. 0, or an exit status after saying why. */
static int read_password(char *buf, size_t n)
{
    if (read_line("New password (input hidden): ", buf, n) != 0) {
        fprintf(stderr, "tokend users: no password on standard input\n");
        return EXIT_USAGE;
    }
    if (isatty(STDIN_FILENO)) {
        char again[PW_BUF];
        int rc = read_line("Again: ", again, sizeof again);
        bool same = rc == 0 && strcmp(again, buf) == 0;
        memset(again, 0, sizeof again);
        if (!same) {
            fprintf(stderr, "tokend users: the two passwords differ\n");
            return EXIT_USAGE;
        }
    }
    return 0;
}

static bool user_path(char *out, size_t n, const char *id)
{
    char *esc = curl_easy_escape(NULL, id, 0);
    int w = snprintf(out, n, "/v1/users/%s", esc ? esc : "");
    curl_free(esc);
    return w > 0 && (size_t)w < n;
}

/* ARG [--json] [--token-file F]: the one positional argument into *arg. */
static int one_arg(int argc, char **argv, struct tk_cli_client *c, const char **arg,
                   const char *what)
{
    const char *token_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c->json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (argv[i][0] != '-' && !*arg)
            *arg = argv[i];
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    if (!*arg) return usage(what, NULL);
    return tk_cli_client_init(c, token_file);
}

/* Send body (a password member wiped after) and finish. */
static int send_user(struct tk_cli_client *c, const char *what, const char *method,
                     const char *path, json_t *body, long want)
{
    json_t *out = NULL;
    long st = tk_cli_request(c, method, path, body, &out);
    json_t *pw = json_object_get(body, "password");
    if (json_is_string(pw)) memset((char *)json_string_value(pw), 0, json_string_length(pw));
    json_decref(body);
    return tk_cli_finish(c, what, st, want, out, print_user);
}

static int create_cmd(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *email = NULL;
    int rc = one_arg(argc, argv, &c, &email, "create needs the user's EMAIL");
    if (rc) return rc;
    char pw[PW_BUF];
    if ((rc = read_password(pw, sizeof pw))) return rc;
    json_t *body = json_pack("{s:s, s:s}", "email", email, "password", pw);
    memset(pw, 0, sizeof pw);
    return send_user(&c, "users create", "POST", "/v1/users", body, 201);
}

static int set_password_cmd(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = one_arg(argc, argv, &c, &id, "set-password needs the user's ID");
    if (rc) return rc;
    char path[256];
    if (!user_path(path, sizeof path, id)) return usage("too long", id);
    char pw[PW_BUF];
    if ((rc = read_password(pw, sizeof pw))) return rc;
    json_t *body = json_pack("{s:s}", "password", pw);
    memset(pw, 0, sizeof pw);
    return send_user(&c, "users set-password", "PATCH", path, body, 200);
}

static int status_cmd(const char *status, const char *verb, int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = one_arg(argc, argv, &c, &id, "this needs the user's ID");
    if (rc) return rc;
    char path[256], what[64];
    if (!user_path(path, sizeof path, id)) return usage("too long", id);
    snprintf(what, sizeof what, "users %s", verb);
    return send_user(&c, what, "PATCH", path, json_pack("{s:s}", "status", status), 200);
}

static int show_cmd(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *id = NULL;
    int rc = one_arg(argc, argv, &c, &id, "show needs the user's ID");
    if (rc) return rc;
    char path[256];
    if (!user_path(path, sizeof path, id)) return usage("too long", id);
    json_t *out = NULL;
    long st = tk_cli_get(&c, path, &out);
    return tk_cli_finish(&c, "users show", st, 200, out, print_user);
}

static void user_row(json_t *x)
{
    printf("%-36s  %-8s  %-24s  %s\n", tk_cli_jstr(x, "id"), tk_cli_jstr(x, "status"),
           tk_cli_jstr(x, "last_login_at"), tk_cli_jstr(x, "email"));
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
    snprintf(path, sizeof path, "/v1/users%s", st_q);
    rc = tk_cli_list_all(&c, "users list", path, "users", limit, &all);
    if (!rc)
        tk_cli_print_list(
            &c, "users", all,
            "ID                                    STATUS    LAST LOGIN                EMAIL\n",
            user_row);
    json_decref(all);
    return rc;
}

int tk_cli_users(int argc, char **argv)
{
    if (argc < 1)
        return usage("which one: create, list, show, disable, enable or set-password", NULL);
    const char *v = argv[0];
    argc--;
    argv++;
    if (!strcmp(v, "create")) return create_cmd(argc, argv);
    if (!strcmp(v, "list")) return list_cmd(argc, argv);
    if (!strcmp(v, "show")) return show_cmd(argc, argv);
    if (!strcmp(v, "disable")) return status_cmd("disabled", v, argc, argv);
    if (!strcmp(v, "enable")) return status_cmd("active", v, argc, argv);
    if (!strcmp(v, "set-password")) return set_password_cmd(argc, argv);
    return usage("unknown verb", v);
}
