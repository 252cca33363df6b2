/* test_config.c: src/config/config.h -- defaults, errors, precedence, INI files. */
#include "unit.h"

#include "../../src/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Write text to <dir>/name and return the path in out. */
static bool ini(const char *dir, const char *name, const char *text, size_t len, char *out,
                size_t n)
{
    snprintf(out, n, "%s/%s", dir, name);
    return unit_write_file(out, text, len, 0600);
}

void test_config_defaults(void)
{
    struct tk_config c;
    memset(&c, 0xa5, sizeof c);
    tk_config_defaults(&c);
    CHECK_EQ_STR(c.listen, "127.0.0.1:8750");
    CHECK_EQ_STR(c.data_dir, "./tokend-data");
    CHECK_EQ_STR(c.store, "");
    CHECK_EQ_INT(c.threads, 2);
    CHECK_EQ_INT(c.store_pool, 8);
    CHECK_EQ_INT(c.max_body, 1048576);
    CHECK_EQ_INT(c.max_header, 32768);
    CHECK_EQ_INT(c.max_connections, 1024);
    CHECK_EQ_INT(c.max_connections_per_ip, 256);
    CHECK_EQ_INT(c.idle_timeout, 30);
    CHECK_EQ_INT(c.shutdown_timeout, 5);
    CHECK_EQ_STR(c.log_level, "info");
    CHECK_EQ_STR(c.log_format, "text");
    CHECK(c.access_log);
    CHECK(!c.dev);
    CHECK_EQ_STR(c.node_name, "");
    CHECK_EQ_INT(c.auth_fail_limit, 20);
    CHECK_EQ_INT(c.auth_fail_window, 10);
    CHECK(!c.allow_new_store);

    struct tk_err e;
    /* the failure budget: 0 turns it off; a window of 0 s is no window */
    CHECK_OK(tk_config_set(&c, "auth_fail_limit", "0", "test", &e), &e);
    CHECK_EQ_INT(tk_config_set(&c, "auth_fail_window", "0", "test", &e), TK_EINVAL);
    CHECK(strstr(e.msg, "auth_fail_window must be an integer from 1 to 3600") != NULL);
    CHECK_OK(tk_config_set(&c, "allow_new_store", "true", "test", &e), &e);
    CHECK(c.allow_new_store);
    tk_config_defaults(&c);
    CHECK_OK(tk_config_validate(&c, &e), &e);
    CHECK_EQ_STR(c.store, "sqlite:./tokend-data/tokend.db");

    bool is_bool = false;
    CHECK(tk_config_known("dev", &is_bool) && is_bool);
    CHECK(tk_config_known("threads", &is_bool) && !is_bool);
    CHECK(!tk_config_known("nope", &is_bool));
    CHECK(!tk_config_known("", NULL));
}

/* tk_config_set must fail with rc, naming the setting, origin and allowed values. */
static void set_bad(const char *name, const char *value, const char *code, const char *need1,
                    const char *need2, int line)
{
    struct tk_config c, before;
    tk_config_defaults(&c);
    before = c;
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_config_set(&c, name, value, "--flag", &e);
    if (rc != TK_EINVAL) {
        unit_fail(__FILE__, line, "%s=%s accepted", name, value);
        return;
    }
    if (strcmp(e.code, code) != 0)
        unit_fail(__FILE__, line, "%s=%s: code %s, want %s", name, value, e.code, code);
    if (strcmp(e.field, name) != 0)
        unit_fail(__FILE__, line, "%s=%s: field '%s'", name, value, e.field);
    const char *needs[] = {name, "--flag", need1, need2};
    for (size_t i = 0; i < TK_NELEM(needs); i++)
        if (needs[i] && !strstr(e.msg, needs[i]))
            unit_fail(__FILE__, line, "%s=%s: message \"%s\" lacks \"%s\"", name, value, e.msg,
                      needs[i]);
    if (memcmp(&c, &before, sizeof c) != 0)
        unit_fail(__FILE__, line, "%s=%s: a refused value changed the config", name, value);
}

void test_config_set_errors(void)
{
    set_bad("threads", "0", "invalid_setting", "1", "64", __LINE__);
    set_bad("threads", "65", "invalid_setting", "1", "64", __LINE__);
    set_bad("threads", "two", "invalid_setting", "1", "64", __LINE__);
    set_bad("threads", "", "invalid_setting", "1", "64", __LINE__);
    set_bad("threads", "2 ", "invalid_setting", "1", "64", __LINE__);
    set_bad("max_body", "1023", "invalid_setting", "1024", "67108864", __LINE__);
    set_bad("max_body", "99999999999999999999", "invalid_setting", "1024", "67108864", __LINE__);
    set_bad("store_pool", "-1", "invalid_setting", "1", "256", __LINE__);
    set_bad("shutdown_timeout", "301", "invalid_setting", "0", "300", __LINE__);
    set_bad("log_level", "verbose", "invalid_setting", "debug|info|warn|error", "verbose",
            __LINE__);
    set_bad("log_level", "INFO", "invalid_setting", "debug|info|warn|error", NULL, __LINE__);
    set_bad("log_level", "inf", "invalid_setting", "debug|info|warn|error", NULL, __LINE__);
    set_bad("log_format", "xml", "invalid_setting", "text|json", NULL, __LINE__);
    set_bad("access_log", "maybe", "invalid_setting", "true or false", NULL, __LINE__);
    set_bad("dev", "", "invalid_setting", "true or false", NULL, __LINE__);
    set_bad("nope", "1", "unknown_setting", NULL, NULL, __LINE__);
    set_bad("THREADS", "4", "unknown_setting", NULL, NULL, __LINE__);
    /* strings longer than their field are refused, not cut */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    set_bad("listen", big, "invalid_setting", "127", NULL, __LINE__);
    set_bad("node_name", big, "invalid_setting", "63", NULL, __LINE__);
    set_bad("store", big, "invalid_setting", "1023", NULL, __LINE__);
    /* the value echoed in a message is bounded */
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    CHECK(tk_config_set(&c, "log_level", big, "x", &e) == TK_EINVAL);
    CHECK(strlen(e.msg) < sizeof e.msg - 1);
    CHECK(tk_config_set(&c, "threads", big, "x", &e) == TK_EINVAL);
    CHECK(strlen(e.msg) < 200);

    /* and accepted values land */
    CHECK_OK(tk_config_set(&c, "threads", "64", "--threads", &e), &e);
    CHECK_EQ_INT(c.threads, 64);
    CHECK_OK(tk_config_set(&c, "max_body", "67108864", "--max-body", &e), &e);
    CHECK_EQ_INT(c.max_body, 67108864);
    CHECK_OK(tk_config_set(&c, "dev", "yes", "--dev", &e), &e);
    CHECK(c.dev);
    CHECK_OK(tk_config_set(&c, "dev", "off", "--dev", &e), &e);
    CHECK(!c.dev);
    CHECK_OK(tk_config_set(&c, "access_log", "0", "--access-log", &e), &e);
    CHECK(!c.access_log);
    CHECK_OK(tk_config_set(&c, "log_format", "json", "--log-format", &e), &e);
    CHECK_EQ_STR(c.log_format, "json");
    memset(big, 'n', 63);
    big[63] = '\0';
    CHECK_OK(tk_config_set(&c, "node_name", big, "--node-name", &e), &e);
    CHECK_EQ_INT(strlen(c.node_name), 63);
}

void test_config_precedence(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    const char *text = "; tokend.ini\n"
                       "threads = 3\n"
                       "listen = 127.0.0.1:1111\n"
                       "[tokend]\n"
                       "log_level = debug\n"
                       "node_name = from-file\n"
                       "idle_timeout = 11\n";
    CHECK(ini(dir, "tokend.ini", text, strlen(text), path, sizeof path));
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    CHECK_OK(tk_config_load_file(&c, path, &e), &e);
    CHECK_EQ_INT(c.threads, 3);
    CHECK_EQ_STR(c.listen, "127.0.0.1:1111");
    CHECK_EQ_STR(c.log_level, "debug");
    CHECK_EQ_STR(c.node_name, "from-file");
    CHECK_EQ_INT(c.idle_timeout, 11);

    char *envp[] = {
        "PATH=/usr/bin",
        "TOKEND_THREADS=4",
        "TOKEND_LOG_LEVEL=warn",
        "TOKEND_ADDR=http://127.0.0.1:9", /* the CLI's, not a setting: ignored */
        "TOKEND_TOKEN=tko_notasetting",
        "TOKEND_=x",
        "TOKEND_NODE_NAME",       /* no '=': ignored */
        "tokend_idle_timeout=99", /* lowercase prefix: not ours */
        NULL,
    };
    CHECK_OK(tk_config_load_env(&c, envp, &e), &e);
    CHECK_EQ_INT(c.threads, 4); /* env beats file */
    CHECK_EQ_STR(c.log_level, "warn");
    CHECK_EQ_STR(c.listen, "127.0.0.1:1111"); /* file value kept where env says nothing */
    CHECK_EQ_STR(c.node_name, "from-file");
    CHECK_EQ_INT(c.idle_timeout, 11);

    CHECK_OK(tk_config_set(&c, "threads", "5", "--threads", &e), &e);
    CHECK_EQ_INT(c.threads, 5); /* flag beats env */
    CHECK_EQ_STR(c.log_level, "warn");

    /* A bad environment value names the variable it came from. */
    char *bad_env[] = {"TOKEND_THREADS=lots", NULL};
    CHECK(tk_config_load_env(&c, bad_env, &e) == TK_EINVAL);
    CHECK(strstr(e.msg, "TOKEND_THREADS") != NULL);
    CHECK_EQ_STR(e.field, "threads");
    CHECK_EQ_INT(c.threads, 5);
    char *empty_env[] = {NULL};
    CHECK_OK(tk_config_load_env(&c, empty_env, &e), &e);
    CHECK_OK(tk_config_load_env(&c, NULL, &e), &e);
    unit_rmtree(dir);
}

void test_config_file_errors(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_config c;
    struct tk_err e;

    tk_config_defaults(&c);
    snprintf(path, sizeof path, "%s/missing.ini", dir);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.code, "config_unreadable");
    CHECK(strstr(e.msg, "missing.ini") != NULL);

    const char *unknown = "threads = 3\nthreadz = 4\n";
    ini(dir, "unknown.ini", unknown, strlen(unknown), path, sizeof path);
    tk_config_defaults(&c);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.code, "unknown_setting");
    CHECK(strstr(e.msg, "threadz") != NULL);
    CHECK(strstr(e.msg, "unknown.ini") != NULL);

    const char *section = "threads = 3\n[server]\nlisten = 0.0.0.0:1\n";
    ini(dir, "section.ini", section, strlen(section), path, sizeof path);
    tk_config_defaults(&c);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.code, "unknown_section");
    CHECK(strstr(e.msg, "[server]") != NULL);
    CHECK_EQ_STR(c.listen, "127.0.0.1:8750");

    const char *badval = "[tokend]\nlog_format = yaml\n";
    ini(dir, "badval.ini", badval, strlen(badval), path, sizeof path);
    tk_config_defaults(&c);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.code, "invalid_setting");
    CHECK(strstr(e.msg, "text|json") != NULL);
    CHECK(strstr(e.msg, "badval.ini") != NULL);

    const char *noeq = "threads = 3\nthreads\n";
    ini(dir, "noeq.ini", noeq, strlen(noeq), path, sizeof path);
    tk_config_defaults(&c);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.code, "config_syntax");
    CHECK(strstr(e.msg, "line 2") != NULL);

    /* empty and comment-only files are fine */
    ini(dir, "empty.ini", "", 0, path, sizeof path);
    tk_config_defaults(&c);
    CHECK_OK(tk_config_load_file(&c, path, &e), &e);
    const char *comments = "; nothing\n# nothing either\n\n[tokend]\n";
    ini(dir, "comments.ini", comments, strlen(comments), path, sizeof path);
    CHECK_OK(tk_config_load_file(&c, path, &e), &e);
    CHECK_EQ_INT(c.threads, 2);

    unit_rmtree(dir);
}

/* --config pointing at a directory (a slip for .../tokend.ini) must be an
 * error, not an empty configuration that silently leaves every default. */
void test_config_dir_as_file(void)
{
    char dir[256];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    tk_err_clear(&e);
    tk_rc rc = tk_config_load_file(&c, dir, &e);
    if (rc == TK_OK)
        FAILF("the directory %s was loaded as an empty config file", dir);
    else
        CHECK(strstr(e.msg, dir) != NULL);
    unit_rmtree(dir);
}

void test_config_hostile_ini(void)
{
    char dir[256], path[512];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_config c;
    struct tk_err e;

    /* binary bytes, NULs included */
    static const char bin[] = "threads = 3\n\xff\xfe\x00\x01\x02junk\x80\n";
    ini(dir, "bin.ini", bin, sizeof bin - 1, path, sizeof path);
    tk_config_defaults(&c);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK(e.msg[0] != '\0');

    /* random bytes: never a crash, and an error unless by chance valid */
    unsigned char rnd[4096];
    for (int round = 0; round < 50; round++) {
        tk_random(rnd, sizeof rnd);
        ini(dir, "rnd.ini", (const char *)rnd, sizeof rnd, path, sizeof path);
        tk_config_defaults(&c);
        tk_err_clear(&e);
        if (tk_config_load_file(&c, path, &e) == TK_OK) {
            struct tk_config d;
            tk_config_defaults(&d);
            CHECK(memcmp(&c, &d, sizeof c) == 0);
        }
    }

    /* a very long line with a too-long value: refused */
    size_t n = 20000;
    char *big = malloc(n + 32);
    int w = snprintf(big, n + 32, "node_name = ");
    memset(big + w, 'a', n - (size_t)w);
    big[n] = '\n';
    ini(dir, "long.ini", big, n + 1, path, sizeof path);
    tk_config_defaults(&c);
    CHECK(tk_config_load_file(&c, path, &e) == TK_EINVAL);
    CHECK_EQ_STR(c.node_name, "");

    /* a very long line of a setting that would fit if cut: refused, not cut */
    w = snprintf(big, n + 32, "data_dir = /srv/");
    memset(big + w, 'd', 400);
    big[w + 400] = '\n';
    ini(dir, "longdir.ini", big, (size_t)w + 401, path, sizeof path);
    tk_config_defaults(&c);
    tk_rc rc = tk_config_load_file(&c, path, &e);
    if (rc == TK_OK && strlen(c.data_dir) != 405)
        FAILF("a 405-char data_dir was silently cut to %zu chars", strlen(c.data_dir));
    free(big);

    /* no '=' and stray brackets */
    static const char *junk[] = {"listen\n", "[tokend\n", "= 3\n", "[]\nthreads = 2\n"};
    for (size_t i = 0; i < TK_NELEM(junk); i++) {
        ini(dir, "junk.ini", junk[i], strlen(junk[i]), path, sizeof path);
        tk_config_defaults(&c);
        if (tk_config_load_file(&c, path, &e) == TK_OK && i < 3)
            FAILF("junk %zu (\"%s\") accepted", i, junk[i]);
    }
    unit_rmtree(dir);
}

/* The INI parser reads at most 199 bytes of a line and parses the rest of
 * a longer line as a line of its own. So a long comment, or a long value,
 * whose tail reads "dev = true" turns development mode on (and the long
 * value is silently cut). Either the whole line must count, or the file
 * must be refused. */
void test_config_long_line_split(void)
{
    char dir[256], path[512], text[600];
    if (!CHECK(unit_tmpdir(dir, sizeof dir))) return;
    struct tk_config c;
    struct tk_err e;

    int w = snprintf(text, sizeof text, "; ");
    memset(text + w, '-', 197);
    w += 197;
    w += snprintf(text + w, sizeof text - (size_t)w, "dev = true\n");
    ini(dir, "comment.ini", text, (size_t)w, path, sizeof path);
    tk_config_defaults(&c);
    tk_rc rc = tk_config_load_file(&c, path, &e);
    if (rc == TK_OK && c.dev) FAILF("a comment line of %d bytes turned dev mode on", w - 1);

    w = snprintf(text, sizeof text, "data_dir = /srv/");
    memset(text + w, 'd', 183);
    w += 183;
    int vlen = w - 11 + 10;
    w += snprintf(text + w, sizeof text - (size_t)w, "dev = true\n");
    ini(dir, "value.ini", text, (size_t)w, path, sizeof path);
    tk_config_defaults(&c);
    rc = tk_config_load_file(&c, path, &e);
    if (rc == TK_OK && c.dev)
        FAILF("the tail of a %d-byte data_dir line turned dev mode on", w - 1);
    if (rc == TK_OK && (int)strlen(c.data_dir) != vlen)
        FAILF("data_dir of %d characters was cut to %zu", vlen, strlen(c.data_dir));
    unit_rmtree(dir);
}

void test_config_validate(void)
{
    struct tk_config c;
    struct tk_err e;
    static const char *bad_listen[] = {
        "",        "127.0.0.1", "127.0.0.1:", ":8750",     "host:65536",
        "host:-1", "host:http", "host:80 ",   "host:8750x"};
    for (size_t i = 0; i < TK_NELEM(bad_listen); i++) {
        tk_config_defaults(&c);
        snprintf(c.listen, sizeof c.listen, "%s", bad_listen[i]);
        tk_err_clear(&e);
        if (tk_config_validate(&c, &e) != TK_EINVAL || strcmp(e.field, "listen") != 0)
            FAILF("listen '%s' accepted (field '%s')", bad_listen[i], e.field);
        else if (!strstr(e.msg, "65535"))
            FAILF("listen error does not say the range: %s", e.msg);
    }
    static const char *good_listen[] = {"127.0.0.1:0", "0.0.0.0:65535", "[::1]:8750",
                                        "localhost:1"};
    for (size_t i = 0; i < TK_NELEM(good_listen); i++) {
        tk_config_defaults(&c);
        snprintf(c.listen, sizeof c.listen, "%s", good_listen[i]);
        if (tk_config_validate(&c, &e) != TK_OK)
            FAILF("listen '%s' refused: %s", good_listen[i], e.msg);
    }

    /* store derives from data_dir, or is checked when given */
    tk_config_defaults(&c);
    snprintf(c.data_dir, sizeof c.data_dir, "/var/lib/tokend");
    CHECK_OK(tk_config_validate(&c, &e), &e);
    CHECK_EQ_STR(c.store, "sqlite:/var/lib/tokend/tokend.db");
    static const char *bad_store[] = {"sqlite:",       "mysql://db", "postgres:/x",
                                      "/var/lib/x.db", "SQLITE:/x",  " sqlite:/x"};
    for (size_t i = 0; i < TK_NELEM(bad_store); i++) {
        tk_config_defaults(&c);
        snprintf(c.store, sizeof c.store, "%s", bad_store[i]);
        tk_err_clear(&e);
        if (tk_config_validate(&c, &e) != TK_EINVAL || strcmp(e.field, "store") != 0)
            FAILF("store '%s' accepted", bad_store[i]);
    }
    static const char *good_store[] = {"sqlite:/tmp/x.db", "postgres://u@h/db",
                                       "postgresql://u:p@h:5432/db?sslmode=require"};
    for (size_t i = 0; i < TK_NELEM(good_store); i++) {
        tk_config_defaults(&c);
        snprintf(c.store, sizeof c.store, "%s", good_store[i]);
        if (tk_config_validate(&c, &e) != TK_OK)
            FAILF("store '%s' refused: %s", good_store[i], e.msg);
        CHECK_EQ_STR(c.store, good_store[i]);
    }
    tk_config_defaults(&c);
    c.data_dir[0] = '\0';
    CHECK(tk_config_validate(&c, &e) == TK_EINVAL);
    CHECK_EQ_STR(e.field, "data_dir");
    /* a data_dir too long for the derived store URL */
    tk_config_defaults(&c);
    memset(c.data_dir, 'p', sizeof c.data_dir - 1);
    c.data_dir[sizeof c.data_dir - 1] = '\0';
    CHECK_OK(tk_config_validate(&c, &e), &e); /* 511 + 17 fits in 1024 */
    CHECK_EQ_INT(strlen(c.store), 7 + 511 + 10);

    /* the store pool grows to serve every HTTP thread plus background work */
    tk_config_defaults(&c);
    c.threads = 16;
    c.store_pool = 4;
    CHECK_OK(tk_config_validate(&c, &e), &e);
    CHECK_EQ_INT(c.store_pool, 18);
    tk_config_defaults(&c);
    c.threads = 2;
    c.store_pool = 50;
    CHECK_OK(tk_config_validate(&c, &e), &e);
    CHECK_EQ_INT(c.store_pool, 50);
}

/* tokend help serve: every default says what it is; an empty one says
 * what empty means (allowed_hosts: the loopback rule, any Host elsewhere
 * with a warning), never "(derived)". */
void test_config_help(void)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!CHECK(f != NULL)) return;
    tk_config_help(f);
    fclose(f);
    CHECK(strstr(text, "(derived)") == NULL);
    const char *ah = strstr(text, "--allowed-hosts");
    const char *def = ah ? strstr(ah, "default: ") : NULL;
    const char *eol = def ? strchr(def, '\n') : NULL;
    if (CHECK(def && eol)) {
        char line[400];
        snprintf(line, sizeof line, "%.*s", (int)(eol - def), def);
        CHECK(strstr(line, "default: empty") != NULL);
        CHECK(strstr(line, "loopback listener answers only loopback names") != NULL);
        CHECK(strstr(line, "any Host") != NULL);
        CHECK(strstr(line, "warning at start") != NULL);
    }
    const char *st = strstr(text, "--store ");
    CHECK(st && strstr(st, "default: sqlite:<data_dir>/tokend.db"));
    free(text);
}
