/* cli.c: see cli.h. */
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

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct tk_buf *b = ud;
    return tk_buf_add(b, p, size * n) == TK_OK ? size * n : 0;
}

static int load_token_file(const char *path, struct tk_cli_client *c, bool must)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (must) fprintf(stderr, "tokend: cannot read token file %s\n", path);
        return must ? EXIT_USAGE : 0;
    }
    char buf[sizeof c->token];
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    snprintf(c->token, sizeof c->token, "%s", buf);
    tk_wipe(buf, sizeof buf);
    return 0;
}

int tk_cli_client_init(struct tk_cli_client *c, const char *token_file)
{
    const char *a = getenv("TOKEND_ADDR");
    snprintf(c->addr, sizeof c->addr, "%s", a && *a ? a : "http://127.0.0.1:8750");
    size_t n = strlen(c->addr);
    if (n && c->addr[n - 1] == '/') c->addr[n - 1] = '\0';
    if (strncmp(c->addr, "http://", 7) != 0 && strncmp(c->addr, "https://", 8) != 0) {
        fprintf(stderr, "tokend: TOKEND_ADDR must start with http:// or https://, not '%s'\n", c->addr);
        return EXIT_USAGE;
    }
    const char *t = getenv("TOKEND_TOKEN");
    if (token_file) return load_token_file(token_file, c, true);
    if (t && *t) {
        snprintf(c->token, sizeof c->token, "%s", t);
        return 0;
    }
    return load_token_file("tokend-data/root-token", c, false);
}

/* Replace every control character (C0, DEL, C1) in s with '?': nothing a
 * server sends may drive the operator's terminal. */
static char *strip_controls(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) tk_fatal("out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            out[j++] = '?';
        } else if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] <= 0x9f) { /* U+0080..U+009F */
            out[j++] = '?';
            i++;
        } else {
            out[j++] = (char)c;
        }
    }
    out[j] = '\0';
    return out;
}

static bool has_controls(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) return true;
    return false;
}

/* Clean every string of a parsed answer (strip_controls); keys with
 * control characters are dropped. */
static void clean_json(json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!has_controls(s)) return;
        char *c = strip_controls(s);
        json_string_set(v, c);
        free(c);
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) clean_json(json_array_get(v, i));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, x)
        {
            if (has_controls(k))
                json_object_del(v, k);
            else
                clean_json(x);
        }
    }
}

/* method path with an optional JSON body; on success *out is the parsed
 * JSON answer (any status), every string stripped of control characters.
 * Returns the HTTP status, -1 after printing why tokend could not be
 * reached, or ST_BAD_ANSWER after printing that a 2xx answer was not a
 * JSON object. */
long tk_cli_request(const struct tk_cli_client *c, const char *method, const char *path,
                    json_t *body, json_t **out)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", c->addr, path);
    CURL *h = curl_easy_init();
    if (!h) tk_fatal("curl_easy_init failed");
    struct tk_buf b;
    tk_buf_init(&b, 64 << 20);
    struct curl_slist *hd = NULL;
    char auth[sizeof c->token + 32];
    if (c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hd = curl_slist_append(hd, auth);
        tk_wipe(auth, sizeof auth);
    }
    char *payload = NULL;
    bool changes = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
    if (body) payload = json_dumps(body, JSON_COMPACT);
    else if (!strcmp(method, "POST")) payload = tk_strdup("{}"); /* action routes take {} */
    /* tokend refuses a state-changing API request without this header,
     * body or not (it forces a browser's CORS preflight) */
    if (payload || changes) hd = curl_slist_append(hd, "Content-Type: application/json");
    if (payload) curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(h);
    long status = -1;
    if (cc != CURLE_OK) {
        fprintf(stderr, "tokend: cannot reach tokend at %s: %s\n  (is it running? start it with "
                        "'make run' or 'tokend serve'; set TOKEND_ADDR if it listens elsewhere)\n",
                c->addr, curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        json_error_t je;
        *out = b.data ? json_loadb(b.data, b.len, 0, &je) : NULL;
        if (!b.data) snprintf(je.text, sizeof je.text, "the body is empty");
        if (*out && !json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            snprintf(je.text, sizeof je.text, "the body is JSON but not an object");
        }
        if (!*out && status >= 200 && status < 300) {
            char *why = strip_controls(je.text);
            fprintf(stderr, "tokend: %s %s answered HTTP %ld with a body that is not a JSON "
                            "object (%s); is TOKEND_ADDR a tokend?\n",
                    method, path, status, why);
            free(why);
            status = ST_BAD_ANSWER;
        }
        if (!*out) *out = json_pack("{s:s}", "error", "invalid_response");
        clean_json(*out);
    }
    /* the header list holds a copy of the bearer token */
    for (struct curl_slist *l = hd; l; l = l->next)
        if (l->data) tk_wipe(l->data, strlen(l->data));
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    if (payload) tk_wipe(payload, strlen(payload));
    free(payload);
    tk_buf_free_wipe(&b);
    return status;
}

long tk_cli_get(const struct tk_cli_client *c, const char *path, json_t **out)
{
    return tk_cli_request(c, "GET", path, NULL, out);
}

void tk_cli_print_error(const char *what, long status, json_t *body)
{
    if (status == ST_BAD_ANSWER) return; /* tk_cli_request said why */
    const char *code = json_string_value(json_object_get(body, "error"));
    const char *msg = json_string_value(json_object_get(body, "message"));
    const char *reason = json_string_value(json_object_get(body, "reason"));
    fprintf(stderr, "tokend: %s: HTTP %ld %s%s%s%s: %s\n", what, status, code ? code : "error",
            reason ? " (" : "", reason ? reason : "", reason ? ")" : "", msg ? msg : "");
    if (status == 401)
        fprintf(stderr, "  set TOKEND_TOKEN or --token-file to an operator token "
                        "(tokend serve --dev writes one to <data dir>/root-token)\n");
}

const char *tk_cli_jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

/* ---- status ---- */

int tk_cli_status(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) c.json = true;
        else if (!strcmp(argv[i], "--token-file") && i + 1 < argc) token_file = argv[++i];
        else {
            fprintf(stderr, "tokend status: unknown argument '%s' (see tokend help status)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    json_t *health = NULL, *ready = NULL, *who = NULL;
    long hs = tk_cli_get(&c, "/health", &health);
    if (hs < 0) return EXIT_UNREACHABLE;
    long rs = tk_cli_get(&c, "/ready", &ready);
    json_t *seal = NULL;
    long ss = tk_cli_get(&c, "/v1/sys/seal-status", &seal);
    long ws = c.token[0] ? tk_cli_get(&c, "/v1/whoami", &who) : 0;
    int exit = (hs == 200 && rs == 200 && (ws == 200 || ws == 0)) ? 0 : EXIT_SERVER;
    if (c.json) {
        json_t *o = json_pack("{s:s, s:O, s:O, s:o, s:o}", "address", c.addr, "health", health,
                              "ready", ready, "keyring", seal ? json_incref(seal) : json_null(),
                              "operator", who ? json_incref(who) : json_null());
        char *s = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("%-10s %s\n", "address", c.addr);
        printf("%-10s %s\n", "health", hs == 200 ? "ok" : "FAILING");
        if (rs == 200)
            printf("%-10s ready (store %s, schema %lld, node %s)\n", "ready", tk_cli_jstr(ready, "store"),
                   (long long)json_integer_value(json_object_get(ready, "schema_version")),
                   tk_cli_jstr(ready, "node"));
        else
            printf("%-10s NOT READY: %s (%s)\n", "ready", tk_cli_jstr(ready, "message"),
                   tk_cli_jstr(ready, "reason"));
        if (ss == 200 && !json_is_true(json_object_get(seal, "initialized")))
            printf("%-10s NOT INITIALIZED: run 'tokend operator init'\n", "keyring");
        else if (ss == 200 && json_is_true(json_object_get(seal, "sealed")))
            printf("%-10s SEALED: %lld of %lld shares given; run 'tokend operator unseal'\n",
                   "keyring", (long long)json_integer_value(json_object_get(seal, "progress")),
                   (long long)json_integer_value(json_object_get(seal, "t")));
        else if (ss == 200)
            printf("%-10s unsealed (data key version %lld)\n", "keyring",
                   (long long)json_integer_value(json_object_get(seal, "data_version")));
        if (ws == 200)
            printf("%-10s %s (%s), tenant %s\n", "operator", tk_cli_jstr(who, "name"), tk_cli_jstr(who, "role"),
                   tk_cli_jstr(who, "tenant_id"));
        else if (ws == 0)
            printf("%-10s no token (set TOKEND_TOKEN or --token-file)\n", "operator");
        else
            printf("%-10s REFUSED: %s (%s)\n", "operator", tk_cli_jstr(who, "message"),
                   tk_cli_jstr(who, "reason"));
    }
    json_decref(health);
    json_decref(ready);
    json_decref(seal);
    json_decref(who);
    return exit;
}

/* ---- events ---- */

static volatile sig_atomic_t interrupted;
static void on_sigint(int s)
{
    (void)s;
    interrupted = 1;
}

static void print_event(json_t *ev, bool as_json)
{
    if (as_json) {
        char *s = json_dumps(ev, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        return;
    }
    char subj[80];
    const char *st = json_string_value(json_object_get(ev, "subject_type"));
    const char *si = json_string_value(json_object_get(ev, "subject_id"));
    snprintf(subj, sizeof subj, "%s%s%s", st ? st : "-", si ? ":" : "", si ? si : "");
    printf("%-24s %6lld %-9s %-10s %-14s %-8s %-28s %s\n", tk_cli_jstr(ev, "at"),
           (long long)json_integer_value(json_object_get(ev, "seq")), tk_cli_jstr(ev, "kind"),
           tk_cli_jstr(ev, "source"), tk_cli_jstr(ev, "action"), tk_cli_jstr(ev, "outcome"), subj, tk_cli_jstr(ev, "message"));
}

static void print_header(void)
{
    printf("%-24s %6s %-9s %-10s %-14s %-8s %-28s %s\n", "AT", "SEQ", "KIND", "SOURCE", "ACTION",
           "OUTCOME", "SUBJECT", "MESSAGE");
}

static int url_arg(struct tk_buf *q, const char *name, const char *value)
{
    char *esc = curl_easy_escape(NULL, value, 0);
    if (!esc) return EXIT_USAGE;
    tk_buf_printf(q, "&%s=%s", name, esc);
    curl_free(esc);
    return 0;
}

static int events_verify(int argc, char **argv);

int tk_cli_events(int argc, char **argv)
{
    if (argc > 0 && !strcmp(argv[0], "verify")) return events_verify(argc - 1, argv + 1);
    struct tk_cli_client c = {0};
    const char *token_file = NULL;
    bool follow = false;
    struct tk_buf q;
    tk_buf_init(&q, 4096);
    const char *limit = "50";
    static const char *filters[] = {"kind", "source", "action", "outcome", "subject", "since", "until"};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool matched = false;
        if (!strcmp(a, "--json")) { c.json = true; continue; }
        if (!strcmp(a, "-f") || !strcmp(a, "--follow")) { follow = true; continue; }
        if (i + 1 < argc && !strcmp(a, "--token-file")) { token_file = argv[++i]; continue; }
        if (i + 1 < argc && !strcmp(a, "--limit")) { limit = argv[++i]; continue; }
        for (size_t k = 0; k < TK_NELEM(filters); k++) {
            if (a[0] == '-' && a[1] == '-' && !strcmp(a + 2, filters[k]) && i + 1 < argc) {
                url_arg(&q, filters[k], argv[++i]);
                matched = true;
            }
        }
        if (!matched) {
            fprintf(stderr, "tokend events: unknown or incomplete argument '%s' (see tokend help events)\n", a);
            tk_buf_free(&q);
            return EXIT_USAGE;
        }
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) {
        tk_buf_free(&q);
        return rc;
    }
    char path[4600];
    snprintf(path, sizeof path, "/v1/events?limit=%s%s", limit, q.data ? q.data : "");
    json_t *body = NULL;
    long st = tk_cli_get(&c, path, &body);
    if (st < 0) {
        tk_buf_free(&q);
        return EXIT_UNREACHABLE;
    }
    if (st != 200) {
        tk_cli_print_error("events", st, body);
        json_decref(body);
        tk_buf_free(&q);
        return EXIT_SERVER;
    }
    json_t *evs = json_object_get(body, "events");
    if (!json_is_array(evs)) {
        fprintf(stderr, "tokend events: the answer (HTTP 200) has no \"events\" array; is "
                        "TOKEND_ADDR a tokend?\n");
        json_decref(body);
        tk_buf_free(&q);
        return EXIT_SERVER;
    }
    size_t n = json_array_size(evs);
    if (!c.json) print_header();
    int64_t last = 0;
    if (follow) {
        /* Oldest first, then what arrives. */
        for (size_t i = n; i-- > 0;) print_event(json_array_get(evs, i), c.json);
    } else {
        for (size_t i = 0; i < n; i++) print_event(json_array_get(evs, i), c.json);
    }
    if (n) last = json_integer_value(json_object_get(json_array_get(evs, 0), "seq"));
    json_decref(body);
    fflush(stdout);
    if (follow) {
        signal(SIGINT, on_sigint);
        signal(SIGTERM, on_sigint);
        while (!interrupted) {
            struct timespec ts = {0, 500 * 1000 * 1000};
            nanosleep(&ts, NULL);
            snprintf(path, sizeof path, "/v1/events?limit=1000&after=%lld%s", (long long)last,
                     q.data ? q.data : "");
            st = tk_cli_get(&c, path, &body);
            if (st < 0) { rc = EXIT_UNREACHABLE; break; }
            if (st != 200) {
                tk_cli_print_error("events", st, body);
                json_decref(body);
                rc = EXIT_SERVER;
                break;
            }
            evs = json_object_get(body, "events");
            if (!json_is_array(evs)) {
                fprintf(stderr, "tokend events: the answer (HTTP 200) has no \"events\" array\n");
                json_decref(body);
                rc = EXIT_SERVER;
                break;
            }
            for (size_t i = 0; i < json_array_size(evs); i++) {
                json_t *ev = json_array_get(evs, i);
                print_event(ev, c.json);
                last = json_integer_value(json_object_get(ev, "seq"));
            }
            json_decref(body);
            fflush(stdout);
        }
    }
    tk_buf_free(&q);
    return rc;
}

/* tokend events verify [--json] [--checkpoint FILE]: GET /v1/events/verify,
 * giving back the checkpoint of FILE (the output of --json, or just its
 * "checkpoint" object). Exit 0 when the chain holds (and passes through the
 * checkpoint), 1 naming the first broken seq. */
static int events_verify(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *cp_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file")) token_file = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--checkpoint")) cp_file = argv[++i];
        else {
            fprintf(stderr, "tokend events verify: unknown or incomplete argument '%s' (see "
                            "tokend help events)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    struct tk_buf q;
    tk_buf_init(&q, 4096);
    tk_buf_addstr(&q, "/v1/events/verify");
    if (cp_file) {
        json_error_t je;
        json_t *f = json_load_file(cp_file, 0, &je);
        json_t *cp = json_object_get(f, "checkpoint");
        if (!cp) cp = f;
        json_t *seq = json_object_get(cp, "seq"), *at = json_object_get(cp, "at");
        const char *hash = json_string_value(json_object_get(cp, "hash"));
        const char *mac = json_string_value(json_object_get(cp, "mac"));
        if (!f || !json_is_integer(seq) || !json_is_integer(at) || !hash || !mac) {
            fprintf(stderr, "tokend events verify: %s is not a checkpoint (%s): keep the output "
                            "of 'tokend events verify --json'\n",
                    cp_file, f ? "seq, hash, at or mac missing" : je.text);
            json_decref(f);
            tk_buf_free(&q);
            return EXIT_USAGE;
        }
        tk_buf_printf(&q, "?checkpoint_seq=%lld&checkpoint_at=%lld",
                      (long long)json_integer_value(seq), (long long)json_integer_value(at));
        url_arg(&q, "checkpoint_hash", hash);
        url_arg(&q, "checkpoint_mac", mac);
        json_decref(f);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) {
        tk_buf_free(&q);
        return rc;
    }
    json_t *body = NULL;
    long st = tk_cli_get(&c, q.data, &body);
    tk_buf_free(&q);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200 || !json_is_boolean(json_object_get(body, "valid"))) {
        tk_cli_print_error("events verify", st, body);
        json_decref(body);
        return EXIT_SERVER;
    }
    bool valid = json_is_true(json_object_get(body, "valid"));
    json_t *cc = json_object_get(body, "checkpoint_check");
    if (c.json) {
        char *s = json_dumps(body, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else if (valid) {
        json_t *fs = json_object_get(body, "first_seq");
        printf("the event chain holds: %lld events checked, seq %lld to %lld; %lld keyed, newest "
               "attested seq %lld%s\n",
               (long long)json_integer_value(json_object_get(body, "checked")),
               json_is_integer(fs) ? (long long)json_integer_value(fs) : 0LL,
               (long long)json_integer_value(json_object_get(body, "head_seq")),
               (long long)json_integer_value(json_object_get(body, "keyed")),
               (long long)json_integer_value(json_object_get(body, "attested_seq")),
               cc ? "; it passes through the checkpoint" : "");
    }
    if (!valid) {
        json_t *b = json_object_get(body, "broken_seq");
        const char *err = json_string_value(json_object_get(body, "error"));
        if (json_is_integer(b))
            fprintf(stderr, "tokend: the event chain is broken at seq %lld: %s\n",
                    (long long)json_integer_value(b), err ? err : "");
        if (cc && !json_is_true(json_object_get(cc, "ok")))
            fprintf(stderr, "tokend: the checkpoint at seq %lld does not hold: %s\n",
                    (long long)json_integer_value(json_object_get(cc, "seq")),
                    tk_cli_jstr(cc, "error"));
    }
    json_decref(body);
    return valid ? 0 : EXIT_SERVER;
}

/* ---- help ---- */

static const struct {
    const char *name, *usage, *text;
} commands[] = {
    {"serve", "tokend serve [--config FILE] [--dev] [--SETTING VALUE]...",
     "Run the daemon in the foreground. Settings come from the INI file, then TOKEND_<SETTING>\n"
     "environment variables, then flags (--data-dir DIR or --data-dir=DIR). With --dev, the\n"
     "keyring initializes and unseals itself from <data_dir>/unseal.key, and an empty store\n"
     "gets a root operator token written to <data_dir>/root-token (mode 0600). Without\n"
     "--dev, run 'tokend operator init' once, then 'tokend operator unseal' after restarts.\n"
     "SIGTERM or SIGINT stops accepting, lets in-flight requests finish, and exits 0 (while\n"
     "still starting, it exits 1 at once); SIGHUP is logged and ignored. A data dir that\n"
     "belonged to an installation whose store is now empty or another one is refused (exit\n"
     "2) unless --allow-new-store.\n"},
    {"status", "tokend status [--json] [--token-file FILE]",
     "Show whether tokend answers, is ready (store reachable), and who the token belongs to.\n"
     "Exit 0 when healthy and ready, 1 when not, 3 when tokend cannot be reached.\n"},
    {"events", "tokend events [-f] [--json] [--limit N] [--kind K] [--source S] [--action A]\n"
               "              [--outcome O] [--subject ID] [--since TIME] [--until TIME]",
     "List events newest first (at most --limit, default 50, max 1000). With -f, print the\n"
     "latest oldest-first and keep printing new ones until interrupted. TIME is RFC 3339\n"
     "(2026-11-25T19:00:00Z) or milliseconds since the epoch.\n"
     "tokend events verify [--json] [--checkpoint FILE] recomputes the chain (exit 1 naming\n"
     "the first broken seq); --json prints the result with a signed checkpoint to keep\n"
     "outside the store, and --checkpoint FILE also checks the chain still passes through it.\n"},
    {"operator", "tokend operator init [--shares N] [--threshold K] [--auto-unseal] [--json]\n"
                 "       tokend operator unseal [SHARE|-] [--nonce N] | --reset\n"
                 "       tokend operator seal | rotate | status [--json]\n"
                 "       tokend operator rewrap [--no-wait]",
     "Manage the keyring that seals every secret.\n"
     "  init     create the master key, split into N shares (default 5) of which K (default 3)\n"
     "           unseal; prints the shares and a root operator token ONCE. --auto-unseal also\n"
     "           writes the server's unseal_key_file so that this node unseals itself at start.\n"
     "  unseal   give one share; without SHARE (or with -) it is read from the terminal without\n"
     "           echo, or from standard input. Prints progress k/K. Progress is per node.\n"
     "           The first share starts an attempt and gets its nonce; the next shares must\n"
     "           carry it (a stranger's share cannot disturb the attempt). The nonce is kept\n"
     "           in $XDG_RUNTIME_DIR/tokend (else ~/.cache/tokend), mode 0600, and used by\n"
     "           the next 'unseal' from this account; keepers elsewhere pass --nonce N.\n"
     "           --reset ends the attempt in progress (its shares are forgotten).\n"
     "  seal     forget the keys on this node (admin token); everything but /health, /ready,\n"
     "           /metrics and /v1/sys answers 503 until unsealed again.\n"
     "  rotate   make a new data key version for new secrets (admin token).\n"
     "  rewrap   re-seal every stored secret under the active data key version, in the\n"
     "           background (admin token); shows progress until done, or returns at once\n"
     "           with --no-wait. Resumes by itself after a restart; pauses while sealed.\n"
     "  status   initialized, sealed, progress, active data key version.\n"},
    {"tenants", "tokend tenants create NAME [--json]\n"
                "       tokend tenants list [--limit N] [--json]",
     "Manage the tenants of the node (an admin token of the default tenant).\n"
     "  create   make the tenant NAME (1 to 63 of a-z 0-9 -, starting with a letter or a\n"
     "           digit) and its first admin operator token, printed ONCE: keep it, tokend\n"
     "           stores only its hash. Give it to the tenant's administrator.\n"
     "  list     every tenant, newest first (at most --limit with it).\n"},
    {"version", "tokend version", "Print the version of this binary.\n"},
    {"help", "tokend help [COMMAND]", "Explain a command.\n"},
};

int tk_cli_help(const char *command)
{
    if (!command) {
        printf("tokend %s: a token service that owns every token a product depends on.\n\n"
               "Commands:\n", TK_VERSION);
        /* the usage lines, continuation lines aligned under the first */
        for (size_t i = 0; i < TK_NELEM(commands); i++) {
            const char *u = commands[i].usage;
            printf("  ");
            for (; *u; u++) {
                putchar(*u);
                if (*u == '\n') {
                    while (u[1] == ' ') u++;
                    printf("  %s", strncmp(u + 1, "tokend", 6) ? "      " : "");
                }
            }
            putchar('\n');
        }
        printf("\nClient commands reach tokend at TOKEND_ADDR (default http://127.0.0.1:8750)\n"
               "with TOKEND_TOKEN, --token-file FILE, or ./tokend-data/root-token.\n"
               "'tokend help COMMAND' explains one command.\n");
        return 0;
    }
    for (size_t i = 0; i < TK_NELEM(commands); i++) {
        if (strcmp(commands[i].name, command) != 0) continue;
        printf("usage: %s\n\n%s", commands[i].usage, commands[i].text);
        if (!strcmp(command, "serve")) {
            printf("\n");
            tk_config_help(stdout);
        }
        return 0;
    }
    fprintf(stderr, "tokend: no command '%s'; 'tokend help' lists them\n", command);
    return EXIT_USAGE;
}

/* ---- operator ---- */

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
