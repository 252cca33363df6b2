/* cli_events.c: tokend events [-f] and tokend events verify (see cli.h). */
#include "cli.h"
#include "cli_internal.h"

#include "../common/issued.h"
#include "../config/config.h"
#include "../http/sse.h"

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

/* ---- tokend events -f: GET /v1/events/stream ----
 *
 * One streaming request at a time through libcurl, its body fed to the SSE
 * parser (src/http/sse.h) as it arrives; each event printed as it comes.
 * When the stream breaks (the node stops, the network drops, no byte for
 * STALL_S although the server sends a heartbeat well within that), it
 * reconnects with Last-Event-ID set to the last seq printed, so that
 * nothing is missed or printed twice; waits grow to 5 s between attempts.
 * "event: end" with reason revoked ends the command (exit 1); sealed and
 * node_stopping reconnect. */

#define STALL_S 60L
#define SSE_MAX_LINE (1u << 20)
#define SSE_MAX_DATA (4u << 20)

struct follow {
    const struct tk_cli_client *c;
    CURL *h;
    struct tk_sse sse;
    struct tk_buf err;  /* the body of an answer that is not 200 */
    long status;
    int64_t last;
    bool as_json;
    char end_reason[32];
    bool parse_failed;
    struct tk_err pe;
};

static bool on_sse(const struct tk_sse_event *ev, void *arg)
{
    struct follow *f = arg;
    if (!strcmp(ev->event, "end")) {
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
        const char *r = json_string_value(json_object_get(d, "reason"));
        snprintf(f->end_reason, sizeof f->end_reason, "%s", r ? r : "unknown");
        json_decref(d);
        return false;
    }
    if (strcmp(ev->event, "message") != 0) return true;
    json_t *e = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!json_is_object(e)) {
        json_decref(e);
        return true;
    }
    tk_cli_clean_json(e);
    int64_t seq = json_integer_value(json_object_get(e, "seq"));
    if (seq > f->last) {
        print_event(e, f->as_json);
        fflush(stdout);
        f->last = seq;
    }
    json_decref(e);
    return true;
}

static size_t on_stream_data(char *p, size_t size, size_t n, void *arg)
{
    struct follow *f = arg;
    size_t len = size * n;
    if (!f->status) curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &f->status);
    if (f->status != 200) {
        (void)tk_buf_add(&f->err, p, len); /* bounded; the rest is not needed */
        return len;
    }
    if (f->end_reason[0] || f->parse_failed) return 0; /* done: abort the transfer */
    if (tk_sse_feed(&f->sse, p, len, on_sse, f, &f->pe) != TK_OK) {
        f->parse_failed = true;
        return 0;
    }
    return f->end_reason[0] ? 0 : len;
}

static int on_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)arg, (void)a, (void)b, (void)c, (void)d;
    return interrupted ? 1 : 0;
}

/* One connection. Returns the HTTP status (0 when it could not connect). */
static long stream_once(struct follow *f, const char *filters, char *why, size_t whyn)
{
    char url[4800], leid[64], auth[sizeof f->c->token + 32];
    snprintf(url, sizeof url, "%s/v1/events/stream?after=%lld%s", f->c->addr, (long long)f->last,
             filters);
    struct curl_slist *hd = NULL;
    if (f->c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", f->c->token);
        hd = curl_slist_append(hd, auth);
        tk_wipe(auth, sizeof auth);
    }
    snprintf(leid, sizeof leid, "Last-Event-ID: %lld", (long long)f->last);
    hd = curl_slist_append(hd, leid);
    hd = curl_slist_append(hd, "Accept: text/event-stream");
    f->h = curl_easy_init();
    if (!f->h) tk_fatal("curl_easy_init failed");
    f->status = 0;
    f->end_reason[0] = '\0';
    f->parse_failed = false;
    tk_sse_init(&f->sse, SSE_MAX_LINE, SSE_MAX_DATA);
    tk_buf_init(&f->err, 64 << 10);
    tk_cli_curl_tls(f->h); /* https:// TOKEND_ADDR: verified, TOKEND_CACERT */
    curl_easy_setopt(f->h, CURLOPT_URL, url);
    curl_easy_setopt(f->h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(f->h, CURLOPT_WRITEFUNCTION, on_stream_data);
    curl_easy_setopt(f->h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(f->h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(f->h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(f->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(f->h, CURLOPT_LOW_SPEED_TIME, STALL_S);
    curl_easy_setopt(f->h, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(f->h);
    if (!f->status) curl_easy_getinfo(f->h, CURLINFO_RESPONSE_CODE, &f->status);
    snprintf(why, whyn, "%.200s", f->parse_failed ? f->pe.msg : curl_easy_strerror(cc));
    for (struct curl_slist *l = hd; l; l = l->next)
        if (l->data) tk_wipe(l->data, strlen(l->data));
    curl_slist_free_all(hd);
    curl_easy_cleanup(f->h);
    f->h = NULL;
    tk_sse_free(&f->sse);
    return f->status;
}

static int follow_stream(const struct tk_cli_client *c, const char *filters, int64_t last)
{
    struct follow f;
    memset(&f, 0, sizeof f);
    f.c = c;
    f.last = last;
    f.as_json = c->json;
    int wait_ms = 0, rc = 0;
    bool said = false;
    while (!interrupted) {
        char why[256];
        long st = stream_once(&f, filters, why, sizeof why);
        if (interrupted) break;
        if (f.end_reason[0] && !strcmp(f.end_reason, "revoked")) {
            fprintf(stderr, "tokend events: the stream ended: the token was revoked or expired\n");
            rc = EXIT_SERVER;
        } else if (st != 0 && st != 200 && st != 503) {
            json_t *body = f.err.data ? json_loadb(f.err.data, f.err.len, 0, NULL) : NULL;
            tk_cli_clean_json(body);
            tk_cli_print_error("events", st, body);
            json_decref(body);
            rc = EXIT_SERVER;
        }
        tk_buf_free(&f.err);
        if (rc) break;
        if (st == 200 && !f.end_reason[0] && !f.parse_failed) wait_ms = 0; /* it was flowing */
        if (!said && (st != 200 || f.end_reason[0] || f.parse_failed)) {
            fprintf(stderr, "tokend events: the stream ended (%s); reconnecting from seq %lld\n",
                    f.end_reason[0] ? f.end_reason
                    : st == 503     ? "HTTP 503"
                                    : why,
                    (long long)f.last);
            said = true;
        }
        if (st == 200 && !f.end_reason[0]) said = false;
        for (int slept = 0; slept < wait_ms && !interrupted; slept += 100) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        wait_ms = wait_ms ? (wait_ms * 2 > 5000 ? 5000 : wait_ms * 2) : 250;
    }
    return rc;
}

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
        rc = follow_stream(&c, q.data ? q.data : "", last);
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
