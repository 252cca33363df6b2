/* test_http.c: the HTTP layer's parts that need no server: UTF-8
 * validation (src/common/log.h), the hand-written JSON lines and the log
 * line cut, tk_http_utf8_clean, and the Host/Origin/Content-Type checks
 * (src/http/hostcheck.h). */
#include "unit.h"

#include <errno.h>

#include "../../src/common/log.h"
#include "../../src/http/hostcheck.h"
#include "../../src/http/http.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t u8(const char *s)
{
    return tk_utf8_char((const unsigned char *)s, strlen(s));
}

void test_http_utf8(void)
{
    /* well-formed, at the edges of each length */
    CHECK_EQ_INT(u8("a"), 1);
    CHECK_EQ_INT(u8("\x7f"), 1);
    CHECK_EQ_INT(u8("\xc2\x80"), 2);         /* U+0080 */
    CHECK_EQ_INT(u8("\xdf\xbf"), 2);         /* U+07FF */
    CHECK_EQ_INT(u8("\xe0\xa0\x80"), 3);     /* U+0800 */
    CHECK_EQ_INT(u8("\xed\x9f\xbf"), 3);     /* U+D7FF */
    CHECK_EQ_INT(u8("\xee\x80\x80"), 3);     /* U+E000 */
    CHECK_EQ_INT(u8("\xef\xbf\xbd"), 3);     /* U+FFFD */
    CHECK_EQ_INT(u8("\xf0\x90\x80\x80"), 4); /* U+10000 */
    CHECK_EQ_INT(u8("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
    /* not: overlong forms, surrogates, above U+10FFFF, stray and truncated */
    static const char *const bad[] = {
        "\xc0\x80",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\x80",
        "\xe0\x9f\xbf",
        "\xed\xa0\x80",
        "\xed\xaf\xbf",
        "\xed\xbf\xbf",
        "\xf0\x80\x80\x80",
        "\xf0\x8f\xbf\xbf",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80",
        "\xfe",
        "\xff",
        "\x80",
        "\xbf",
        "\xe2\x82",
        "\xc2",
        "\xe2\x28\xa1",
        "\xf0\x9f\x98",
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (u8(bad[i]) != 0) FAILF("bad sequence %zu accepted as %zu bytes", i, u8(bad[i]));
    /* n limits what is read: a 3-byte character with 2 bytes available */
    CHECK_EQ_INT(tk_utf8_char((const unsigned char *)"\xe2\x82\xac", 2), 0);

    /* tk_http_utf8_clean: each byte of a bad sequence becomes '?' */
    struct {
        const char *in, *out;
    } clean[] = {
        {"plain", "plain"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"a\xed\xa0\x80z", "a???z"}, /* a surrogate */
        {"\xc0\xaf", "??"},          /* overlong '/' */
        {"\xe0\x80\xaf!", "??"
                          "?!"},      /* overlong '/' in 3 bytes */
        {"\xf0\x80\x80\xaf", "????"}, /* overlong in 4 bytes */
        {"\xf4\x90\x80\x80", "????"}, /* above U+10FFFF */
        {"cut \xe2\x82", "cut ??"},   /* cut in the middle of a character */
        {"\xff\xfe", "??"},
    };
    for (size_t i = 0; i < TK_NELEM(clean); i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", clean[i].in);
        tk_http_utf8_clean(buf);
        CHECK_EQ_STR(buf, clean[i].out);
        json_t *j = json_string(buf);
        CHECK(j != NULL); /* jansson takes what comes out */
        json_decref(j);
    }
}

void test_http_jline(void)
{
    char buf[512];
    struct tk_jline j;
    tk_jline_begin(&j, buf, sizeof buf);
    tk_jline_str(&j, "q", "a\"b\\c\n\t\x01\x1b[31m\x7f", SIZE_MAX);
    tk_jline_str(&j, "bad", "x\xff\xed\xa0\x80y", SIZE_MAX);
    tk_jline_str(&j, "c1",
                 "\xc2\x9b"
                 "2J",
                 SIZE_MAX); /* U+009B, a terminal's CSI */
    tk_jline_str(&j, "cut", "abcdef", 3);
    tk_jline_int(&j, "n", -42);
    tk_jline_null(&j, "z");
    size_t n = tk_jline_end(&j);
    CHECK_EQ_INT(n, strlen(buf));
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) FAILF("raw control byte at %zu", i);
    json_error_t je;
    json_t *o = json_loads(buf, 0, &je);
    if (!CHECK(o)) {
        printf("    %s: %s\n", buf, je.text);
        return;
    }
    CHECK_EQ_STR(json_string_value(json_object_get(o, "q")), "a\"b\\c\n\t\x01\x1b[31m\x7f");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "bad")),
                 "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "c1")), "\xc2\x9b"
                                                              "2J");
    CHECK_EQ_STR(json_string_value(json_object_get(o, "cut")), "abc...");
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "n")), -42);
    CHECK(json_is_null(json_object_get(o, "z")));
    json_decref(o);

    /* Too small a buffer: strings are cut, members left out, and the
     * object is still valid JSON, whatever the input. */
    for (size_t cap = 64; cap < 200; cap += 7) {
        char small[200];
        tk_jline_begin(&j, small, cap);
        tk_jline_str(&j, "first", "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"",
                     SIZE_MAX);
        tk_jline_str(&j, "second",
                     "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"
                     "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac",
                     SIZE_MAX);
        tk_jline_int(&j, "third", 1234567890123LL);
        tk_jline_str(&j, "fourth", "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f", SIZE_MAX);
        size_t len = tk_jline_end(&j);
        CHECK(len < cap);
        json_t *p = json_loads(small, 0, &je);
        if (!p) FAILF("cap %zu: not JSON: %s (%s)", cap, small, je.text);
        json_decref(p);
    }
}

/* Run tk_log_write with stderr sent to a file; returns what it wrote. */
static char *capture_log(enum tk_log_format fmt, const char *msg)
{
    char path[] = "/tmp/tokend-unit-log-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    tk_log_setup(TK_LOG_DEBUG, fmt);
    tk_log_write(TK_LOG_INFO, "%s", msg);
    tk_log_setup(TK_LOG_WARN, TK_LOG_TEXT);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)size + 1);
    if (out && pread(fd, out, (size_t)size, 0) != size) out[0] = '\0';
    close(fd);
    return out;
}

static off_t fd_size(int fd)
{
    return lseek(fd, 0, SEEK_END);
}

static void *batch_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) tk_log_json_line("{\"from\":\"thread\"}", 17);
    return NULL; /* its buffer is written as the thread ends */
}

/* Access log lines are batched per thread: nothing before tk_log_flush (or
 * a full buffer, or the thread's end), then every line, whole, in order. */
static void log_batches(void)
{
    char path[] = "/tmp/tokend-unit-log-XXXXXX";
    int fd = mkstemp(path);
    if (!CHECK(fd >= 0)) return;
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    tk_log_setup(TK_LOG_DEBUG, TK_LOG_JSON);
    tk_log_flush(); /* whatever this thread held before */
    off_t start = fd_size(fd);
    tk_log_json_line("{\"n\":1}", 7);
    tk_log_json_line("{\"n\":2}", 7);
    off_t held = fd_size(fd);
    tk_log_flush();
    off_t flushed = fd_size(fd);
    /* more than a buffer's worth: written as it fills, never split */
    enum { MANY = 2000 };
    char line[120];
    for (int i = 0; i < MANY; i++) {
        int n = snprintf(line, sizeof line, "{\"i\":%d,\"pad\":\"%080d\"}", i, i);
        tk_log_json_line(line, (size_t)n);
    }
    off_t mid = fd_size(fd);
    tk_log_flush();
    pthread_t th;
    pthread_create(&th, NULL, batch_thread, NULL);
    pthread_join(th, NULL);
    off_t end = fd_size(fd);
    tk_log_setup(TK_LOG_WARN, TK_LOG_TEXT);
    dup2(saved, STDERR_FILENO);
    close(saved);
    CHECK(held == start);
    CHECK_EQ_INT(flushed - start, 16);
    CHECK(mid > flushed + 100000); /* most of the 2000 written before the flush */
    char *out = calloc(1, (size_t)(end - flushed) + 1);
    if (CHECK(out) && CHECK(pread(fd, out, (size_t)(end - flushed), flushed) == end - flushed)) {
        int lines = 0, bad = 0, next = 0, thread = 0;
        for (char *l = out, *nl; (nl = strchr(l, '\n')); l = nl + 1) {
            *nl = '\0';
            json_t *o = json_loads(l, 0, NULL);
            if (!o) bad++;
            else if (json_object_get(o, "from")) thread++;
            else if (json_integer_value(json_object_get(o, "i")) != next++) bad++;
            json_decref(o);
            lines++;
        }
        CHECK_EQ_INT(lines, MANY + 5);
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(thread, 5);
    }
    free(out);
    close(fd);
}

void test_http_log_lines(void)
{
    log_batches();

    /* A message whose escapes make the line longer than the line buffer:
     * the message is cut inside its string; the line is valid JSON. */
    char msg[1100];
    memset(msg, '"', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    char *out = capture_log(TK_LOG_JSON, msg);
    if (!CHECK(out)) return;
    size_t len = strlen(out);
    CHECK(len > 1000 && out[len - 1] == '\n');
    CHECK(strchr(out, '\n') == out + len - 1); /* one line */
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    if (CHECK(o)) {
        const char *m = json_string_value(json_object_get(o, "msg"));
        CHECK(m && strlen(m) > 500 && !strcmp(m + strlen(m) - 3, "..."));
        CHECK_EQ_STR(json_string_value(json_object_get(o, "level")), "info");
    }
    json_decref(o);
    free(out);

    /* Multibyte characters at the cut, and bytes that are not UTF-8. */
    char mb[1100] = "";
    for (size_t i = 0; i + 4 < sizeof mb; i += 3)
        memcpy(mb + i, "\xe2\x82\xac", 3);
    mb[sizeof mb - 5] = '\xff';
    out = capture_log(TK_LOG_JSON, mb);
    if (CHECK(out)) {
        o = json_loads(out, 0, &je);
        if (!CHECK(o)) printf("    %s\n", je.text);
        json_decref(o);
    }
    free(out);

    /* A message cannot forge a second line, in either format. */
    const char *forge = "ok\n2030-01-01T00:00:00.000Z error forged \x1b[2J";
    out = capture_log(TK_LOG_TEXT, forge);
    if (CHECK(out)) {
        CHECK(strchr(out, '\n') == out + strlen(out) - 1);
        CHECK(strchr(out, '\x1b') == NULL);
        CHECK(strstr(out, "ok\\n2030") != NULL);
    }
    free(out);
    out = capture_log(TK_LOG_JSON, forge);
    if (CHECK(out)) {
        CHECK(strchr(out, '\n') == out + strlen(out) - 1);
        o = json_loads(out, 0, &je);
        if (CHECK(o)) CHECK_EQ_STR(json_string_value(json_object_get(o, "msg")), forge);
        json_decref(o);
    }
    free(out);
}

void test_http_host_parse(void)
{
    struct tk_hostport hp;
    CHECK(tk_host_parse("LocalHost", &hp) && !strcmp(hp.host, "localhost") && hp.port == -1);
    CHECK(tk_host_parse("localhost:8750", &hp) && hp.port == 8750 && !hp.ip);
    CHECK(tk_host_parse("127.0.0.1:0", &hp) && hp.ip && hp.port == 0);
    CHECK(tk_host_parse("[::1]:65535", &hp) && hp.ip && !strcmp(hp.host, "::1") &&
          hp.port == 65535);
    CHECK(tk_host_parse("[::1]", &hp) && hp.port == -1);
    CHECK(tk_host_parse("[::FFFF:7F00:1]", &hp) &&
          !strcmp(hp.host, "::ffff:7f00:1")); /* found by fuzz */
    CHECK(tk_host_parse("example.com:", &hp) && hp.port == -1);
    CHECK(tk_host_parse("a_b-c.example", &hp));
    static const char *const bad[] = {
        "",         ":80",        "a b",     "a:65536", "a:-1",      "a:8x",
        "a:123456", "[::1",       "[::1]x",  "[]:80",   "[nope]:80", "a@b",
        "a/b",      "[::1]:80:1", "a:80:80", "%61",     "a\xc3\xa9", "[fe80::1%lo]",
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (tk_host_parse(bad[i], &hp)) FAILF("'%s' parsed as a host", bad[i]);
    static const char *const loop[] = {"localhost", "127.0.0.1",         "127.255.0.9",
                                       "[::1]",     "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]"};
    for (size_t i = 0; i < TK_NELEM(loop); i++)
        if (!tk_host_parse(loop[i], &hp) || !tk_host_is_loopback(&hp))
            FAILF("%s not loopback", loop[i]);
    static const char *const notloop[] = {"localhost.attacker.example", "128.0.0.1",  "[::2]",
                                          "127.0.0.1.nip.io",           "0177.0.0.1", "2130706433"};
    for (size_t i = 0; i < TK_NELEM(notloop); i++)
        if (tk_host_parse(notloop[i], &hp) && tk_host_is_loopback(&hp))
            FAILF("%s loopback", notloop[i]);
}

void test_http_host_policy(void)
{
    struct tk_hostpolicy p;
    struct tk_err e;
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0)};

    CHECK_OK(tk_hostpolicy_init(&p, (struct sockaddr *)&lo, "", &e), &e);
    CHECK(p.loopback_listener);
    CHECK(tk_host_allowed(&p, "localhost:1"));
    CHECK(tk_host_allowed(&p, "127.0.0.1"));
    CHECK(tk_host_allowed(&p, NULL)); /* HTTP/1.0 */
    CHECK(!tk_host_allowed(&p, "attacker.example"));
    CHECK(!tk_host_allowed(&p, "10.0.0.1"));
    CHECK(!tk_host_allowed(&p, "bad host"));

    CHECK_OK(
        tk_hostpolicy_init(&p, (struct sockaddr *)&lo, " tokend.example , api.example:8750,", &e),
        &e);
    CHECK_EQ_INT(p.n, 2);
    CHECK(tk_host_allowed(&p, "tokend.example:9"));
    CHECK(tk_host_allowed(&p, "API.example:8750"));
    CHECK(!tk_host_allowed(&p, "api.example:8751"));
    CHECK(!tk_host_allowed(&p, "api.example"));

    CHECK_OK(tk_hostpolicy_init(&p, (struct sockaddr *)&any, NULL, &e), &e);
    CHECK(!p.loopback_listener);
    CHECK(tk_host_allowed(&p, "anything.example"));
    CHECK(!tk_host_allowed(&p, "bad host"));
    CHECK_OK(tk_hostpolicy_init(&p, (struct sockaddr *)&any, "tokend.example", &e), &e);
    CHECK(!tk_host_allowed(&p, "anything.example"));
    CHECK(tk_host_allowed(&p, "10.1.2.3:8750"));
    CHECK(tk_host_allowed(&p, "[2001:db8::1]"));

    CHECK(tk_hostpolicy_init(&p, (struct sockaddr *)&lo, "ok.example,bad host", &e) == TK_EINVAL);
    CHECK_EQ_STR(e.field, "allowed_hosts");
    CHECK(strstr(e.msg, "bad host") != NULL);
    char many[2048] = "";
    for (int i = 0; i < TK_ALLOWED_HOSTS_MAX + 1; i++) {
        size_t l = strlen(many);
        snprintf(many + l, sizeof many - l, "h%d.example,", i);
    }
    CHECK(tk_hostpolicy_init(&p, (struct sockaddr *)&lo, many, &e) == TK_EINVAL);
}

void test_http_origin_media(void)
{
    CHECK(tk_origin_same("http://127.0.0.1:8750", "127.0.0.1:8750"));
    CHECK(tk_origin_same("HTTPS://LOCALHOST:8750", "localhost:8750"));
    CHECK(tk_origin_same("http://[::1]:1", "[::1]:1"));
    CHECK(!tk_origin_same("http://127.0.0.1:8751", "127.0.0.1:8750"));
    CHECK(!tk_origin_same("http://127.0.0.1", "127.0.0.1:8750"));
    CHECK(!tk_origin_same("null", "127.0.0.1"));
    CHECK(!tk_origin_same("http://127.0.0.1/", "127.0.0.1"));
    CHECK(!tk_origin_same("ftp://127.0.0.1", "127.0.0.1"));
    CHECK(!tk_origin_same("http://", ""));
    CHECK(!tk_origin_same("http://a", NULL));

    CHECK(tk_media_is_json("application/json"));
    CHECK(tk_media_is_json("Application/JSON; charset=utf-8"));
    CHECK(tk_media_is_json("application/json ;charset=utf-8"));
    CHECK(!tk_media_is_json(NULL));
    CHECK(!tk_media_is_json(""));
    CHECK(!tk_media_is_json("application/jsonx"));
    CHECK(!tk_media_is_json("application/json-patch+json"));
    CHECK(!tk_media_is_json("text/plain"));
    CHECK(!tk_media_is_json("application/x-www-form-urlencoded"));
}

/* libmicrohttpd's one panic that is a race of its own, not corruption: the
 * listen socket already out of a worker's epoll set while quiescing. Only
 * that, only then, only with ENOENT is logged and gone on from. */
void test_http_panic_policy(void)
{
    static const char msg[] = "Failed to remove listen FD from epoll set.\n";
    CHECK(tk_http_panic_tolerated(msg, true, ENOENT));
    CHECK(!tk_http_panic_tolerated(msg, false, ENOENT)); /* not while quiescing */
    CHECK(!tk_http_panic_tolerated(msg, true, EBADF));   /* a closed descriptor */
    CHECK(!tk_http_panic_tolerated("Failed to add listen FD to epoll set.\n", true, ENOENT));
    CHECK(!tk_http_panic_tolerated("Close socket failed.\n", true, ENOENT));
    CHECK(!tk_http_panic_tolerated(NULL, true, ENOENT));
}
