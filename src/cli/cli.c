/* cli.c: the client of a running tokend that every command file shares
 * (see cli_internal.h). */
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

void tk_cli_curl_tls(void *curl)
{
    CURL *h = curl;
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    const char *ca = getenv("TOKEND_CACERT");
    if (ca && *ca) curl_easy_setopt(h, CURLOPT_CAINFO, ca);
}

bool tk_cli_peer_cert(const struct tk_cli_client *c, char *subject, size_t n,
                      long long *not_after_ms)
{
    subject[0] = '\0';
    *not_after_ms = 0;
    if (strncmp(c->addr, "https://", 8) != 0) return false;
    CURL *h = curl_easy_init();
    if (!h) tk_fatal("curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_URL, c->addr);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L); /* no request: no token on this connection */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    bool found = false;
    struct curl_certinfo *ci = NULL;
    if (curl_easy_perform(h) == CURLE_OK && curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) == CURLE_OK &&
        ci && ci->num_of_certs > 0) {
        for (struct curl_slist *l = ci->certinfo[0]; l; l = l->next) {
            if (!strncmp(l->data, "Subject:", 8)) {
                snprintf(subject, n, "%s", l->data + 8);
            } else if (!strncmp(l->data, "Expire date:", 12)) {
                struct tm tm;
                memset(&tm, 0, sizeof tm);
                const char *end = strptime(l->data + 12, "%b %d %H:%M:%S %Y GMT", &tm);
                if (end) {
                    *not_after_ms = (long long)timegm(&tm) * 1000;
                    found = true;
                }
            }
        }
    }
    curl_easy_cleanup(h);
    return found;
}

/* Why a connection failed, and what to do, for TLS failures. */
static const char *tls_hint(CURLcode cc, const char *addr)
{
    if (cc == CURLE_GOT_NOTHING && !strncmp(addr, "http://", 7))
        return " (if tokend listens with TLS there, TOKEND_ADDR must start with https://)";
    const char *ca = getenv("TOKEND_CACERT");
    if (cc == CURLE_PEER_FAILED_VERIFICATION)
        return ca && *ca ? " (the certificate tokend presents is not signed by the CA in "
                           "TOKEND_CACERT, or does not name the host of TOKEND_ADDR)"
                         : " (tokend's certificate is not signed by a CA this system trusts: "
                           "set TOKEND_CACERT to the PEM file of its CA)";
    if (cc == CURLE_SSL_CACERT_BADFILE) return " (TOKEND_CACERT must name a readable PEM file)";
    if (cc == CURLE_SSL_CONNECT_ERROR)
        return " (the TLS handshake failed: does tokend listen with TLS at this address?)";
    return "";
}

void tk_cli_clean_json(json_t *v)
{
    clean_json(v);
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
    tk_cli_curl_tls(h);
    CURLcode cc = curl_easy_perform(h);
    long status = -1;
    if (cc != CURLE_OK && c->conn_error) {
        snprintf(c->conn_error, 256, "%s%s", curl_easy_strerror(cc), tls_hint(cc, c->addr));
    } else if (cc != CURLE_OK) {
        fprintf(stderr, "tokend: cannot reach tokend at %s: %s%s\n  (is it running? start it with "
                        "'make run' or 'tokend serve'; set TOKEND_ADDR if it listens elsewhere)\n",
                c->addr, curl_easy_strerror(cc), tls_hint(cc, c->addr));
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

void tk_cli_print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_INDENT(2));
    printf("%s\n", s ? s : "null");
    if (s) tk_wipe(s, strlen(s));
    free(s);
}

int tk_cli_list_all(const struct tk_cli_client *c, const char *what, const char *path,
                    const char *member, long long limit, json_t **all)
{
    *all = json_array();
    char cursor[160] = "";
    int rc = 0;
    for (;;) {
        char url[1024];
        int n = snprintf(url, sizeof url, "%s%climit=%lld%s%s", path, strchr(path, '?') ? '&' : '?',
                         limit ? limit : 1000LL, cursor[0] ? "&cursor=" : "", cursor);
        if (n < 0 || (size_t)n >= sizeof url) {
            fprintf(stderr, "tokend %s: the request path is too long\n", what);
            rc = EXIT_SERVER;
            break;
        }
        json_t *body = NULL;
        long st = tk_cli_get(c, url, &body);
        if (st < 0) {
            rc = EXIT_UNREACHABLE;
        } else if (st != 200) {
            tk_cli_print_error(what, st, body);
            rc = EXIT_SERVER;
        } else if (!json_is_array(json_object_get(body, member))) {
            fprintf(stderr,
                    "tokend %s: the answer (HTTP 200) has no \"%s\" array; is TOKEND_ADDR a "
                    "tokend?\n",
                    what, member);
            rc = EXIT_SERVER;
        }
        if (rc) {
            json_decref(body);
            break;
        }
        json_array_extend(*all, json_object_get(body, member));
        const char *next = json_string_value(json_object_get(body, "next_cursor"));
        bool more = !limit && next && next[0];
        if (more) {
            char *esc = curl_easy_escape(NULL, next, 0);
            more = esc && strlen(esc) < sizeof cursor;
            if (more) snprintf(cursor, sizeof cursor, "%s", esc);
            curl_free(esc);
        }
        json_decref(body);
        if (!more) break;
    }
    if (rc) {
        json_decref(*all);
        *all = NULL;
    }
    return rc;
}

void tk_cli_print_list(const struct tk_cli_client *c, const char *member, json_t *all,
                       const char *header, void (*row)(json_t *))
{
    if (c->json) {
        json_t *o = json_pack("{s:O}", member, all);
        tk_cli_print_json(o);
        json_decref(o);
        return;
    }
    fputs(header, stdout);
    for (size_t i = 0; i < json_array_size(all); i++) row(json_array_get(all, i));
}

int tk_cli_finish(const struct tk_cli_client *c, const char *what, long st, long want, json_t *out,
                  void (*printer)(json_t *))
{
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != want) {
        tk_cli_print_error(what, st, out);
        json_decref(out);
        return EXIT_SERVER;
    }
    if (c->json || !printer)
        tk_cli_print_json(out);
    else
        printer(out);
    json_decref(out);
    return 0;
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

int tk_cli_client_args(struct tk_cli_client *c, const char *cmd, int argc, char **argv)
{
    const char *token_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) c->json = true;
        else if (!strcmp(argv[i], "--token-file") && i + 1 < argc) token_file = argv[++i];
        else {
            fprintf(stderr, "tokend %s: unknown argument '%s' (see tokend help %s)\n", cmd, argv[i],
                    cmd);
            return EXIT_USAGE;
        }
    }
    return tk_cli_client_init(c, token_file);
}
