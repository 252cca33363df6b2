/* cli_operator.c: tokend operator ...: the keyring's commands (see cli.h). */
#include "cli.h"
#include "cli_internal.h"

#include "../common/issued.h"
#include "../config/config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdint.h>
#include <termios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TK_SHARES_MAX_CLI 16

static void print_seal_status(json_t *o)
{
    bool init = json_is_true(json_object_get(o, "initialized"));
    bool sealed = json_is_true(json_object_get(o, "sealed"));
    long long t = json_integer_value(json_object_get(o, "t"));
    long long n = json_integer_value(json_object_get(o, "n"));
    long long p = json_integer_value(json_object_get(o, "progress"));
    printf("%-14s %s\n", "initialized", init ? "yes" : "no");
    printf("%-14s %s\n", "sealed", sealed ? "yes" : "no");
    if (init) printf("%-14s %lld of %lld shares unseal (%lld given to this node)\n", "threshold", t, n, p);
    json_t *held = json_object_get(o, "shares_held");
    if (json_array_size(held) > 0) {
        printf("%-14s", "shares held");
        for (size_t i = 0; i < json_array_size(held); i++)
            printf("%s%lld", i ? ", " : " ", (long long)json_integer_value(json_array_get(held, i)));
        printf("\n");
    }
    if (json_is_true(json_object_get(o, "keyring_corrupt")))
        printf("%-14s the keyring in the store is DAMAGED (keyring_corrupt)\n", "keyring");
    printf("%-14s %s\n", "auto-unseal", json_is_true(json_object_get(o, "auto_unseal")) ? "yes" : "no");
    if (!sealed)
        printf("%-14s %lld\n", "data key", (long long)json_integer_value(json_object_get(o, "data_version")));
}

/* Draw the rewrap progress: a bar redrawn with \r on a terminal, plain
 * lines otherwise. */
static void rewrap_progress(json_t *rw, bool tty, bool final)
{
    long long done = json_integer_value(json_object_get(rw, "done"));
    long long total = json_integer_value(json_object_get(rw, "total"));
    if (tty) {
        char bar[31];
        int fill = total > 0 ? (int)(done * 30 / total) : 30;
        if (fill > 30) fill = 30;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        printf("\r[%s] %lld/%lld", bar, done, total);
        if (final) printf("\n");
    } else {
        printf("rewrap %lld/%lld\n", done, total);
    }
    fflush(stdout);
}

/* tokend operator rewrap: start the job and, unless no_wait, follow it in
 * seal-status until it is done. */
static int operator_rewrap(struct tk_cli_client *c, bool no_wait)
{
    json_t *out = NULL;
    long st = tk_cli_request(c, "POST", "/v1/sys/rewrap", NULL, &out);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 202) {
        tk_cli_print_error("rewrap", st, out);
        json_decref(out);
        return EXIT_SERVER;
    }
    printf("rewrap started toward data key version %lld: %lld value(s)\n",
           (long long)json_integer_value(json_object_get(out, "target_version")),
           (long long)json_integer_value(json_object_get(out, "total")));
    fflush(stdout);
    json_decref(out);
    if (no_wait) return 0;
    bool tty = isatty(STDOUT_FILENO);
    long long last = -1;
    for (;;) {
        out = NULL;
        st = tk_cli_get(c, "/v1/sys/seal-status", &out);
        if (st < 0) return EXIT_UNREACHABLE;
        json_t *rw = st == 200 ? json_object_get(out, "rewrap") : NULL;
        if (!json_is_object(rw)) {
            if (tty) printf("\n");
            fprintf(stderr, "tokend operator rewrap: seal-status shows no rewrap (HTTP %ld)\n", st);
            json_decref(out);
            return EXIT_SERVER;
        }
        if (json_is_true(json_object_get(out, "sealed"))) {
            if (tty) printf("\n");
            fprintf(stderr, "tokend operator rewrap: this node is sealed; the rewrap resumes when "
                            "it is unsealed\n");
            json_decref(out);
            return EXIT_SERVER;
        }
        const char *state = json_string_value(json_object_get(rw, "state"));
        bool done = state && !strcmp(state, "done");
        long long d = json_integer_value(json_object_get(rw, "done"));
        if (tty || d != last || done) rewrap_progress(rw, tty, done);
        last = d;
        if (done) {
            long long failed = json_integer_value(json_object_get(rw, "failed"));
            const char *first = json_string_value(json_object_get(rw, "first_failed_row"));
            if (failed)
                printf("rewrap done: %lld value(s) did not open and were left as they were "
                       "(first: %s); see 'tokend events --action decrypt_failed'\n",
                       failed, first ? first : "?");
            else
                printf("rewrap done\n");
            json_decref(out);
            return failed ? EXIT_SERVER : 0;
        }
        json_decref(out);
        usleep(200 * 1000);
    }
}

/* Read one share: from the terminal without echo, or a line of stdin. */
static int read_share(char *buf, size_t n)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "Unseal share (input hidden): ");
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
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* ---- the unseal attempt's nonce, kept between invocations ----
 *
 * In $XDG_RUNTIME_DIR/tokend (a per-login tmpfs, gone at logout or reboot)
 * or else ~/.cache/tokend, one file per TOKEND_ADDR, mode 0600 in a 0700
 * folder, never through a symlink. */

static bool nonce_path(const struct tk_cli_client *c, char *out, size_t n)
{
    const char *run = getenv("XDG_RUNTIME_DIR"), *home = getenv("HOME");
    char dir[512];
    if (run && *run) {
        snprintf(dir, sizeof dir, "%s/tokend", run);
    } else if (home && *home) {
        char cache[480];
        snprintf(cache, sizeof cache, "%s/.cache", home);
        if (mkdir(cache, 0700) != 0 && errno != EEXIST) return false;
        snprintf(dir, sizeof dir, "%s/tokend", cache);
    } else {
        return false;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return false;
    struct stat sb;
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
        (sb.st_mode & 077) != 0)
        return false;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the address: one file per node */
    for (const char *p = c->addr; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    int w = snprintf(out, n, "%s/unseal-nonce-%016llx", dir, (unsigned long long)h);
    return w > 0 && (size_t)w < n;
}

static bool nonce_load(const struct tk_cli_client *c, char *out, size_t n)
{
    char path[600];
    out[0] = '\0';
    if (!nonce_path(c, path, sizeof path)) return false;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat sb;
    ssize_t got = -1;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_uid == geteuid() &&
        (sb.st_mode & 077) == 0)
        got = read(fd, out, n - 1);
    close(fd);
    if (got <= 0) {
        out[0] = '\0';
        return false;
    }
    out[got] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] != '\0';
}

static void nonce_forget(const struct tk_cli_client *c)
{
    char path[600];
    if (nonce_path(c, path, sizeof path)) unlink(path);
}

/* Returns the file written, or NULL. */
static const char *nonce_save(const struct tk_cli_client *c, const char *nonce, char *path, size_t n)
{
    if (!nonce_path(c, path, n)) return NULL;
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return NULL;
    size_t len = strlen(nonce);
    bool ok = write(fd, nonce, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    close(fd);
    if (!ok) unlink(path);
    return ok ? path : NULL;
}

static void print_held(json_t *o)
{
    json_t *held = json_object_get(o, "shares_held");
    for (size_t i = 0; i < json_array_size(held); i++)
        fprintf(stderr, "%s%lld", i ? ", " : "", (long long)json_integer_value(json_array_get(held, i)));
}

/* tokend operator unseal: one share (or --reset), with the attempt's nonce. */
static int operator_unseal(struct tk_cli_client *c, const char *share_arg, const char *nonce_arg,
                           bool reset)
{
    char nonce[80] = "";
    bool from_file = false;
    if (nonce_arg) snprintf(nonce, sizeof nonce, "%s", nonce_arg);
    else from_file = nonce_load(c, nonce, sizeof nonce);
    json_t *out = NULL, *body;
    long st;
    if (reset) {
        body = json_pack("{s:b}", "reset", 1);
        if (nonce[0]) json_object_set_new(body, "nonce", json_string(nonce));
        st = tk_cli_request(c, "POST", "/v1/sys/unseal", body, &out);
        json_decref(body);
        if (st < 0) return EXIT_UNREACHABLE;
        if (st != 200) {
            tk_cli_print_error("unseal --reset", st, out);
            json_decref(out);
            return EXIT_SERVER;
        }
        nonce_forget(c);
        printf("%s\n", json_is_true(json_object_get(out, "reset"))
                           ? "unseal attempt ended: its shares are forgotten; start again"
                           : "no unseal attempt was in progress");
        json_decref(out);
        return 0;
    }
    char buf[256];
    if (share_arg && strcmp(share_arg, "-") != 0) {
        snprintf(buf, sizeof buf, "%s", share_arg);
    } else if (read_share(buf, sizeof buf) != 0) {
        fprintf(stderr, "tokend operator unseal: no share given\n");
        return EXIT_USAGE;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        body = json_pack("{s:s}", "share", buf);
        if (nonce[0]) json_object_set_new(body, "nonce", json_string(nonce));
        out = NULL;
        st = tk_cli_request(c, "POST", "/v1/sys/unseal", body, &out);
        json_decref(body);
        const char *code = json_string_value(json_object_get(out, "error"));
        if (st == 409 && code && !strcmp(code, "unseal_nonce_mismatch") && nonce[0] &&
            from_file && json_integer_value(json_object_get(out, "progress")) == 0 &&
            attempt == 0) {
            /* our kept nonce is of an attempt that was completed or reset */
            fprintf(stderr, "tokend operator unseal: the earlier attempt was completed or reset; "
                            "this share starts a new one\n");
            nonce_forget(c);
            nonce[0] = '\0';
            json_decref(out);
            continue;
        }
        break;
    }
    tk_wipe(buf, sizeof buf);
    if (st < 0) return EXIT_UNREACHABLE;
    const char *code = json_string_value(json_object_get(out, "error"));
    if (st != 200) {
        tk_cli_print_error("unseal", st, out);
        if (code && !strcmp(code, "unseal_nonce_mismatch") &&
            json_integer_value(json_object_get(out, "progress")) > 0) {
            fprintf(stderr, "  an attempt is in progress on this node (shares held: ");
            print_held(out);
            fprintf(stderr, "). If it is yours, pass --nonce with the nonce its first share\n"
                            "  printed; if not (or it is lost), end it with 'tokend operator "
                            "unseal --reset' and start again.\n");
        }
        if (code && !strcmp(code, "wrong_shares")) nonce_forget(c);
        if (code && !strcmp(code, "rate_limited"))
            fprintf(stderr, "  wait before trying again (Retry-After)\n");
        json_decref(out);
        return EXIT_SERVER;
    }
    const char *started = json_string_value(json_object_get(out, "nonce"));
    char path[600];
    const char *saved = started ? nonce_save(c, started, path, sizeof path) : NULL;
    if (c->json) {
        char *s = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else if (json_is_true(json_object_get(out, "sealed"))) {
        long long t = json_integer_value(json_object_get(out, "t"));
        long long p = json_integer_value(json_object_get(out, "progress"));
        printf("unseal progress %lld/%lld: give %lld more share(s)\n", p, t, t - p);
        if (started) {
            printf("attempt nonce: %s\n", started);
            if (saved)
                printf("  (kept in %s: the next 'tokend operator unseal' from this account uses "
                       "it;\n   a keeper elsewhere passes --nonce %s)\n",
                       saved, started);
            else
                printf("  (could not keep it in a file: pass --nonce %s with the next shares)\n",
                       started);
        }
    } else {
        printf("unsealed\n");
    }
    if (!json_is_true(json_object_get(out, "sealed"))) nonce_forget(c);
    json_decref(out);
    return 0;
}

int tk_cli_operator(int argc, char **argv)
{
    if (argc < 1) {
        tk_cli_help("operator");
        return EXIT_USAGE;
    }
    const char *sub = argv[0];
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *share_arg = NULL, *nonce_arg = NULL;
    int shares = 5, threshold = 3;
    bool auto_unseal = false, threshold_set = false, no_wait = false, reset = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        if (!strcmp(a, "--json")) c.json = true;
        else if (!strcmp(a, "--auto-unseal")) auto_unseal = true;
        else if (!strcmp(a, "--no-wait") && !strcmp(sub, "rewrap")) no_wait = true;
        else if (!strcmp(a, "--reset") && !strcmp(sub, "unseal")) reset = true;
        else if (!strcmp(a, "--nonce") && !strcmp(sub, "unseal") && i + 1 < argc) nonce_arg = argv[++i];
        else if (!strcmp(a, "--token-file") && i + 1 < argc) token_file = argv[++i];
        else if ((!strcmp(a, "--shares") || !strcmp(a, "--threshold")) && i + 1 < argc) {
            if (tk_parse_int(argv[i + 1], 1, TK_SHARES_MAX_CLI, &v) != TK_OK) {
                fprintf(stderr, "tokend operator: %s must be from 1 to %d\n", a, TK_SHARES_MAX_CLI);
                return EXIT_USAGE;
            }
            if (!strcmp(a, "--shares")) shares = (int)v;
            else {
                threshold = (int)v;
                threshold_set = true;
            }
            i++;
        } else if (!strcmp(sub, "unseal") && !share_arg) share_arg = a;
        else {
            fprintf(stderr, "tokend operator %s: unknown argument '%s' (see tokend help operator)\n", sub, a);
            return EXIT_USAGE;
        }
    }
    if (!threshold_set && threshold > shares) threshold = shares;
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    json_t *out = NULL, *body = NULL;
    long st;
    if (!strcmp(sub, "rewrap")) return operator_rewrap(&c, no_wait);
    if (!strcmp(sub, "unseal")) return operator_unseal(&c, share_arg, nonce_arg, reset);
    if (!strcmp(sub, "status")) {
        st = tk_cli_get(&c, "/v1/sys/seal-status", &out);
    } else if (!strcmp(sub, "init")) {
        body = json_pack("{s:i, s:i, s:b}", "shares", shares, "threshold", threshold,
                         "auto_unseal", auto_unseal);
        st = tk_cli_request(&c, "POST", "/v1/sys/init", body, &out);
    } else if (!strcmp(sub, "seal") || !strcmp(sub, "rotate")) {
        char path[32];
        snprintf(path, sizeof path, "/v1/sys/%s", sub);
        st = tk_cli_request(&c, "POST", path, NULL, &out);
    } else {
        fprintf(stderr, "tokend operator: no subcommand '%s' (see tokend help operator)\n", sub);
        return EXIT_USAGE;
    }
    json_decref(body);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error(sub, st, out);
        json_decref(out);
        return EXIT_SERVER;
    }
    if (c.json) {
        char *s = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", s);
        tk_wipe(s, strlen(s));
        free(s);
    } else if (!strcmp(sub, "init")) {
        json_t *sh = json_object_get(out, "shares");
        printf("Unseal shares (%lld of %zu open the keyring). Each is shown ONCE: give one to each\n"
               "keeper now; tokend does not keep them.\n\n",
               (long long)json_integer_value(json_object_get(out, "threshold")), json_array_size(sh));
        for (size_t i = 0; i < json_array_size(sh); i++)
            printf("  share %zu: %s\n", i + 1, json_string_value(json_array_get(sh, i)));
        const char *tok = json_string_value(json_object_get(out, "root_token"));
        printf("\nRoot operator token (shown ONCE; store it like a password):\n  %s\n", tok ? tok : "(none)");
        const char *af = json_string_value(json_object_get(out, "auto_unseal_file"));
        if (af) printf("\nAuto-unseal key file: %s (mode 0600): whoever reads it can unseal.\n", af);
        printf("\nThe keyring is unsealed on this node. After a restart, unseal with\n"
               "'tokend operator unseal' and %lld shares.\n",
               (long long)json_integer_value(json_object_get(out, "threshold")));
    } else if (!strcmp(sub, "rotate")) {
        printf("data key version %lld is now active\n",
               (long long)json_integer_value(json_object_get(out, "data_version")));
    } else {
        print_seal_status(out);
    }
    const char *warning = json_string_value(json_object_get(out, "warning"));
    int status = 0;
    if (warning) { /* seal: done, but its event is missing */
        fprintf(stderr, "tokend operator %s: %s\n", sub, warning);
        status = EXIT_SERVER;
    }
    if (!strcmp(sub, "init")) {
        /* the shares and the token were in this buffer */
        json_t *sh = json_object_get(out, "shares");
        for (size_t i = 0; i < json_array_size(sh); i++) {
            const char *v = json_string_value(json_array_get(sh, i));
            if (v) tk_wipe((void *)(uintptr_t)v, strlen(v));
        }
    }
    json_decref(out);
    return status;
}
