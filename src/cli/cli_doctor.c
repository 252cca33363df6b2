/* cli_doctor.c: tokend doctor: check a running node and say what is wrong,
 * one sentence per finding and the next step (see cli.h). */
#include "cli.h"
#include "cli_internal.h"

#include "../store/store.h"
#include "../tls/tls.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A node-to-store clock difference above this is a warning. */
#define DOCTOR_SKEW_WARN_MS 2000
/* How far back "recent" reaches: failures, other nodes. */
#define DOCTOR_RECENT_S 3600

struct doctor {
    json_t *findings; /* [{check, status, message, next_step}] */
    bool failed;
};

static void add(struct doctor *d, const char *check, const char *status, const char *next,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct doctor *d, const char *check, const char *status, const char *next,
                const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!strcmp(status, "fail")) d->failed = true;
    json_array_append_new(d->findings, json_pack("{s:s, s:s, s:s, s:o}", "check", check, "status",
                                                 status, "message", msg, "next_step",
                                                 next ? json_string(next) : json_null()));
}

static void print(const struct doctor *d, bool as_json)
{
    if (as_json) {
        char *s = json_dumps(d->findings, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        return;
    }
    bool tty = isatty(STDOUT_FILENO);
    size_t i;
    json_t *f;
    json_array_foreach(d->findings, i, f) {
        const char *st = tk_cli_jstr(f, "status");
        const char *color = !strcmp(st, "ok")     ? "\033[32m"
                            : !strcmp(st, "warn") ? "\033[33m"
                            : !strcmp(st, "fail") ? "\033[31m"
                                                  : "";
        printf("%s%-4s%s  %-10s %s\n", tty ? color : "", st, tty && *color ? "\033[0m" : "",
               tk_cli_jstr(f, "check"), tk_cli_jstr(f, "message"));
        const char *next = json_string_value(json_object_get(f, "next_step"));
        if (next) printf("%-4s  %-10s -> %s\n", "", "", next);
    }
}

/* The host of an http(s):// address (no port, no brackets). */
static void addr_host(const char *addr, char *out, size_t n)
{
    const char *h = strstr(addr, "://");
    h = h ? h + 3 : addr;
    size_t len = strcspn(h, "/");
    if (*h == '[') {
        h++;
        len = strcspn(h, "]");
    } else {
        const char *colon = memchr(h, ':', len);
        if (colon) len = (size_t)(colon - h);
    }
    if (len >= n) len = n - 1;
    memcpy(out, h, len);
    out[len] = '\0';
}

static bool is_loopback(const char *host)
{
    return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "::1");
}

static void check_schema(struct doctor *d, json_t *ready)
{
    json_int_t have = json_integer_value(json_object_get(ready, "schema_version"));
    int known = tk_store_schema_latest();
    if (have == known)
        add(d, "schema", "ok", NULL, "The store's schema is version %lld, the one this binary knows.",
            (long long)have);
    else if (have < known)
        add(d, "schema", "warn", "upgrade the node's binary to this one's version (" TK_VERSION "); it migrates the store at start",
            "The store's schema is version %lld, older than this binary's %d: the node runs an older tokend.",
            (long long)have, known);
    else
        add(d, "schema", "warn", "use a tokend client of the node's version",
            "The store's schema is version %lld, newer than this binary's %d: this client is older than the node.",
            (long long)have, known);
}

/* The certificate the node serves: expired is a failure, expiring within
 * TK_TLS_EXPIRY_WARN_S a warning. */
static void check_tls(struct doctor *d, json_t *tls)
{
    long long left = (long long)json_integer_value(json_object_get(tls, "expires_in"));
    const char *file = tk_cli_jstr(tls, "cert_file"), *subject = tk_cli_jstr(tls, "subject"),
               *after = tk_cli_jstr(tls, "not_after");
    char next[1200];
    snprintf(next, sizeof next,
             "put a renewed certificate and its key in %s and %s, then send SIGHUP to tokend "
             "(it reloads them without a restart)",
             file, tk_cli_jstr(tls, "key_file"));
    if (left <= 0)
        add(d, "tls", "fail", next,
            "The TLS certificate %s (%s) expired at %s: clients refuse the node's HTTPS.", file,
            subject, after);
    else if (left < TK_TLS_EXPIRY_WARN_S)
        add(d, "tls", "warn", next, "The TLS certificate %s (%s) expires at %s, in %lld days and %lld hours.",
            file, subject, after, left / 86400, (left % 86400) / 3600);
    else
        add(d, "tls", "ok", NULL, "The TLS certificate %s (%s) is valid until %s (%lld days).", file,
            subject, after, left / 86400);
    long long failed = (long long)json_integer_value(json_object_get(tls, "reloads_failed"));
    if (failed > 0)
        add(d, "tls-reload", "warn",
            "'tokend events --kind node --action tls_reload' shows why; fix the files and send SIGHUP again",
            "%lld TLS reload(s) failed since the node started; it serves the last certificate that loaded.",
            failed);
}

/* tokend does not answer at an https address: when it is the certificate
 * (looked at over a connection that sends nothing), say which and why. */
static void check_tls_unreachable(struct doctor *d, const struct tk_cli_client *c)
{
    char subject[256], when[40];
    long long after = 0;
    if (!tk_cli_peer_cert(c, subject, sizeof subject, &after)) return;
    tk_time_fmt(after, when, sizeof when);
    long long left = (after - (long long)time(NULL) * 1000) / 1000;
    const char *next = "put a renewed certificate and its key in the files of tls_cert_file and "
                       "tls_key_file, then send SIGHUP to tokend (it reloads them without a "
                       "restart)";
    if (left <= 0)
        add(d, "tls", "fail", next,
            "The TLS certificate tokend presents (%s) expired at %s: clients refuse the node's HTTPS.",
            subject, when);
    else if (left < TK_TLS_EXPIRY_WARN_S)
        add(d, "tls", "warn", next, "The TLS certificate tokend presents (%s) expires at %s.", subject, when);
}

/* GET /v1/sys/doctor: clock skew, dev mode, unseal key file, TLS. */
static void check_node(struct doctor *d, const struct tk_cli_client *c, bool *tls_done)
{
    json_t *o = NULL;
    long s = tk_cli_get(c, "/v1/sys/doctor", &o);
    if (s == 403) {
        add(d, "node", "skip", "run it with an admin token of the default tenant (TOKEND_TOKEN)",
            "Clock skew, dev mode and the unseal key file need an admin token of the default tenant: not checked.");
    } else if (s != 200) {
        add(d, "node", "warn", NULL, "GET /v1/sys/doctor answered HTTP %ld (%s): %s; clock, dev mode and unseal key file not checked.",
            s, tk_cli_jstr(o, "error"), tk_cli_jstr(o, "message"));
    } else {
        long long skew = (long long)(json_integer_value(json_object_get(o, "node_time_ms")) -
                                     json_integer_value(json_object_get(o, "store_time_ms")));
        long long abs_skew = skew < 0 ? -skew : skew;
        if (abs_skew > DOCTOR_SKEW_WARN_MS)
            add(d, "clock", "warn", "synchronize the clocks of the node and the store host (NTP, chrony)",
                "The node's clock is %lld ms %s the store's (round trip %lld ms): expiry times and event order can be wrong.",
                abs_skew, skew > 0 ? "ahead of" : "behind",
                (long long)json_integer_value(json_object_get(o, "round_trip_ms")));
        else
            add(d, "clock", "ok", NULL, "The node's clock is within %lld ms of the store's.", abs_skew);
        bool dev = json_is_true(json_object_get(o, "dev"));
        json_t *key = json_object_get(o, "unseal_key_file");
        const char *path = tk_cli_jstr(key, "path");
        if (dev)
            add(d, "dev", "warn", "use 'tokend operator init' and shares (or a protected auto-unseal key) for anything real",
                "Dev mode is on: the unseal key is on disk at %s, and whoever reads it reads every secret.", path);
        else
            add(d, "dev", "ok", NULL, "Dev mode is off.");
        if (json_is_true(json_object_get(key, "exists"))) {
            if (json_is_true(json_object_get(key, "private")))
                add(d, "unseal-key", "ok", NULL, "The auto-unseal key file %s has mode %s (owner only).", path,
                    tk_cli_jstr(key, "mode"));
            else {
                char next[1200];
                snprintf(next, sizeof next, "chmod 600 %s", path);
                add(d, "unseal-key", "warn", next, "The auto-unseal key file %s has mode %s: others can read it.", path,
                    tk_cli_jstr(key, "mode"));
            }
        }
        const char *listen = tk_cli_jstr(o, "listen");
        char host[256];
        addr_host(listen, host, sizeof host);
        json_t *tls = json_object_get(o, "tls");
        if (json_is_true(json_object_get(tls, "enabled")))
            check_tls(d, tls);
        else if (!is_loopback(host))
            add(d, "tls", "info", NULL, "TLS: not configured (plain HTTP) on %s.", listen);
        *tls_done = true;
    }
    json_decref(o);
}

static void check_chain(struct doctor *d, const struct tk_cli_client *c)
{
    json_t *o = NULL;
    long s = tk_cli_get(c, "/v1/events/verify", &o);
    if (s != 200) {
        add(d, "events", "warn", NULL, "GET /v1/events/verify answered HTTP %ld (%s): %s",
            s, tk_cli_jstr(o, "error"), tk_cli_jstr(o, "message"));
    } else if (json_is_true(json_object_get(o, "valid"))) {
        add(d, "events", "ok", NULL, "The event chain is intact (%lld events checked, head seq %lld).",
            (long long)json_integer_value(json_object_get(o, "checked")),
            (long long)json_integer_value(json_object_get(o, "head_seq")));
    } else {
        json_t *b = json_object_get(o, "broken_seq");
        char next[200];
        snprintf(next, sizeof next, "'tokend events verify --json' shows the chain; compare event seq %lld with your backups and find what wrote to the store",
                 (long long)json_integer_value(b));
        add(d, "events", "fail", next, "The event chain is broken at seq %lld: %s",
            (long long)json_integer_value(b), tk_cli_jstr(o, "error"));
    }
    json_decref(o);
}

/* Refused requests in the last hour, and other nodes that started lately. */
static void check_recent(struct doctor *d, const struct tk_cli_client *c, const char *self)
{
    long long since = (long long)time(NULL) * 1000 - (long long)DOCTOR_RECENT_S * 1000;
    char path[160];
    json_t *o = NULL;
    snprintf(path, sizeof path, "/v1/events?outcome=denied&limit=1000&since=%lld", since);
    if (tk_cli_get(c, path, &o) == 200) {
        json_t *evs = json_object_get(o, "events"), *ev;
        size_t i;
        long long refused = 0, limited = 0;
        json_array_foreach(evs, i, ev) {
            json_t *det = json_object_get(ev, "detail");
            json_t *parsed = json_is_string(det) ? json_loads(json_string_value(det), 0, NULL) : NULL;
            json_t *dd = parsed ? parsed : det;
            json_int_t count = json_integer_value(json_object_get(dd, "count"));
            long long n = count > 0 ? (long long)count : 1;
            refused += n;
            if (!strcmp(tk_cli_jstr(dd, "reason"), "rate_limited")) limited += n;
            json_decref(parsed);
        }
        if (refused)
            add(d, "refusals", "info", "'tokend events --outcome denied --since 1h' lists them",
                "%lld%s refused requests in the last hour (%lld rate-limited).", refused,
                json_array_size(evs) >= 1000 ? "+" : "", limited);
        else
            add(d, "refusals", "ok", NULL, "No refused requests in the last hour.");
    }
    json_decref(o);
    o = NULL;
    snprintf(path, sizeof path, "/v1/events?kind=node&action=start&limit=1000&since=%lld", since);
    if (tk_cli_get(c, path, &o) == 200) {
        json_t *seen = json_array(), *ev;
        size_t i;
        json_array_foreach(json_object_get(o, "events"), i, ev) {
            const char *n = json_string_value(json_object_get(ev, "node"));
            if (!n || (self && !strcmp(n, self))) continue;
            bool dup = false;
            size_t j;
            json_t *x;
            json_array_foreach(seen, j, x) dup = dup || !strcmp(json_string_value(x), n);
            if (!dup) json_array_append_new(seen, json_string(n));
        }
        if (json_array_size(seen)) {
            char list[600] = "";
            size_t len = 0;
            json_t *x;
            json_array_foreach(seen, i, x) {
                int w = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", json_string_value(x));
                if (w < 0 || (size_t)w >= sizeof list - len) break;
                len += (size_t)w;
            }
            add(d, "nodes", "info", NULL, "Other nodes started on this store in the last hour: %s.", list);
        } else {
            add(d, "nodes", "info", NULL, "No other node started on this store in the last hour.");
        }
        json_decref(seen);
    }
    json_decref(o);
}

int tk_cli_doctor(int argc, char **argv)
{
    /* a client or a token: cli_clients.c */
    if (argc > 0 && !strcmp(argv[0], "client")) return tk_cli_doctor_client(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "connection"))
        return tk_cli_doctor_connection(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "token")) return tk_cli_doctor_token(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "flow")) return tk_cli_doctor_flow(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "oauth-client"))
        return tk_cli_doctor_oauth_client(argc - 1, argv + 1);
    struct tk_cli_client c = {0};
    int rc = tk_cli_client_args(&c, "doctor", argc, argv);
    if (rc) return rc;
    char conn[256] = "";
    c.conn_error = conn;
    struct doctor d = {.findings = json_array()};
    json_t *health = NULL, *ready = NULL, *seal = NULL, *who = NULL;
    int exit = 0;

    long hs = tk_cli_get(&c, "/health", &health);
    if (hs < 0) {
        check_tls_unreachable(&d, &c);
        add(&d, "reachable", "fail", "is tokend running? start it with 'tokend serve'; set TOKEND_ADDR if it listens elsewhere",
            "tokend does not answer at %s: %s.", c.addr, conn);
        exit = EXIT_UNREACHABLE;
        goto out;
    }
    if (hs != 200) {
        add(&d, "reachable", "fail", "is TOKEND_ADDR a tokend?", "%s/health answered HTTP %ld.", c.addr, hs);
        goto out;
    }
    add(&d, "reachable", "ok", NULL, "tokend answers at %s.", c.addr);

    long rs = tk_cli_get(&c, "/ready", &ready);
    const char *reason = tk_cli_jstr(ready, "reason");
    bool sealed_reason = !strcmp(reason, "sealed") || !strcmp(reason, "uninitialized");
    if (rs == 200) {
        add(&d, "store", "ok", NULL, "The %s store answers (node %s).", tk_cli_jstr(ready, "store"),
            tk_cli_jstr(ready, "node"));
        check_schema(&d, ready);
    } else if (sealed_reason) {
        add(&d, "store", "skip", NULL, "The store's state is not reported while the node is sealed.");
    } else if (!strcmp(reason, "starting")) {
        add(&d, "store", "warn", "wait a few seconds and run 'tokend doctor' again", "The node is still starting: %s.",
            tk_cli_jstr(ready, "message"));
    } else if (!strcmp(reason, "shutting_down")) {
        add(&d, "store", "fail", "start it again once it has stopped", "The node is shutting down.");
    } else {
        const char *next = !strcmp(reason, "store_busy")
                               ? "every store connection is in use: look for slow requests, or raise the pool size"
                           : !strcmp(reason, "store_stalled")
                               ? "the store does not answer in time: check the database server's load and locks"
                               : "check that the database is up and that the node's store URL points to it";
        add(&d, "store", "fail", next, "The store is not usable (%s): %s", reason, tk_cli_jstr(ready, "message"));
    }

    long ss = tk_cli_get(&c, "/v1/sys/seal-status", &seal);
    bool unsealed = false;
    if (ss != 200) {
        add(&d, "keyring", "fail", NULL, "GET /v1/sys/seal-status answered HTTP %ld (%s): %s", ss,
            tk_cli_jstr(seal, "error"), tk_cli_jstr(seal, "message"));
    } else if (json_is_true(json_object_get(seal, "keyring_corrupt"))) {
        add(&d, "keyring", "fail", "restore the keyring rows from a backup; the node's log names what does not open",
            "The keyring stored in the store is corrupt: the node stays sealed.");
    } else if (!json_is_true(json_object_get(seal, "initialized"))) {
        add(&d, "keyring", "fail", "run 'tokend operator init'", "The keyring is not initialized.");
    } else if (json_is_true(json_object_get(seal, "sealed"))) {
        add(&d, "keyring", "fail", "run 'tokend operator unseal' with the remaining shares",
            "The node is sealed: %lld of %lld unseal shares given to this node.",
            (long long)json_integer_value(json_object_get(seal, "progress")),
            (long long)json_integer_value(json_object_get(seal, "t")));
    } else {
        unsealed = true;
        add(&d, "keyring", "ok", NULL, "The keyring is unsealed (data key version %lld).",
            (long long)json_integer_value(json_object_get(seal, "data_version")));
    }

    bool tls_done = false;
    static const char *const needs = "clock, dev mode, unseal key file, event chain, recent refusals, other nodes";
    if (!c.token[0]) {
        add(&d, "token", "skip", "set TOKEND_TOKEN or --token-file to an admin token of the default tenant",
            "No token: %s not checked.", needs);
    } else {
        long ws = tk_cli_get(&c, "/v1/whoami", &who);
        if (ws == 200 && unsealed) {
            check_node(&d, &c, &tls_done);
            check_chain(&d, &c);
            check_recent(&d, &c, json_string_value(json_object_get(ready, "node")));
        } else if (ws == 200 || (ws == 503 && !unsealed)) {
            add(&d, "token", "skip", "unseal the node first", "The node is sealed: %s not checked.", needs);
        } else {
            add(&d, "token", "fail", "set TOKEND_TOKEN or --token-file to a valid operator token",
                "The token was refused (HTTP %ld, %s): %s", ws, tk_cli_jstr(who, "reason"),
                tk_cli_jstr(who, "message"));
        }
    }
    if (!tls_done) {
        char host[256];
        addr_host(c.addr, host, sizeof host);
        if (!strncmp(c.addr, "http://", 7) && !is_loopback(host))
            add(&d, "tls", "info", NULL, "TLS: not configured (plain HTTP) at %s.", c.addr);
    }
out:
    print(&d, c.json);
    if (!exit && d.failed) exit = EXIT_SERVER;
    json_decref(d.findings);
    json_decref(health);
    json_decref(ready);
    json_decref(seal);
    json_decref(who);
    return exit;
}
