/* config_fuzz.c: libFuzzer target for the configuration loaders
 * (src/config/config.h).
 *
 * Each input is written to an in-memory file (memfd_create) and loaded with
 * tk_config_load_file through its /proc/self/fd path, so src/ needs no
 * fmemopen hook and nothing touches the disk; a load that succeeds is
 * followed by tk_config_validate. The same bytes, split at newlines, are
 * also given to tk_config_load_env as an environment. A configuration that
 * validates must hold values within the documented limits. */
#include "../src/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char memfd_path[64];

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "config_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

#define TERMINATED(f) (strnlen((f), sizeof(f)) < sizeof(f))

static void check_err(tk_rc rc, const struct tk_err *e)
{
    check(rc != TK_OK, "error rc");
    check(e->rc == rc, "e->rc matches the returned rc");
    check(TERMINATED(e->code) && e->code[0], "error code set and terminated");
    check(TERMINATED(e->field), "error field terminated");
    check(TERMINATED(e->msg) && e->msg[0], "error message set and terminated");
}

static void check_valid(const struct tk_config *c)
{
    check(TERMINATED(c->listen) && TERMINATED(c->data_dir) && TERMINATED(c->store) &&
              TERMINATED(c->log_level) && TERMINATED(c->log_format) && TERMINATED(c->node_name),
          "strings terminated");
    check(strrchr(c->listen, ':') != NULL, "listen has a port");
    check(c->data_dir[0] != '\0', "data_dir not empty");
    check(!strncmp(c->store, "sqlite:", 7) || !strncmp(c->store, "postgres://", 11) ||
              !strncmp(c->store, "postgresql://", 13),
          "store scheme");
    check(c->threads >= 1 && c->threads <= 64, "threads range");
    check(c->store_pool >= c->threads + 2, "store_pool covers the threads");
    check(c->max_body >= 1024 && c->max_body <= (64 << 20), "max_body range");
    check(c->max_header >= 4096 && c->max_header <= (1 << 20), "max_header range");
    check(c->max_connections >= 1 && c->max_connections <= 100000, "max_connections range");
    check(c->max_connections_per_ip >= 1 && c->max_connections_per_ip <= 100000,
          "max_connections_per_ip range");
    check(c->idle_timeout >= 1 && c->idle_timeout <= 3600, "idle_timeout range");
    check(c->shutdown_timeout >= 0 && c->shutdown_timeout <= 300, "shutdown_timeout range");
    check(!strcmp(c->log_level, "debug") || !strcmp(c->log_level, "info") ||
              !strcmp(c->log_level, "warn") || !strcmp(c->log_level, "error"),
          "log_level value");
    check(!strcmp(c->log_format, "text") || !strcmp(c->log_format, "json"), "log_format value");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    memfd = memfd_create("tokend-config-fuzz", 0);
    if (memfd < 0) {
        perror("config_fuzz: memfd_create");
        abort();
    }
    snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    /* The defaults alone must validate. */
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    check(tk_config_validate(&c, &e) == TK_OK, "defaults validate");
    check_valid(&c);
    return 0;
}

static void fuzz_file(const uint8_t *data, size_t size)
{
    if (ftruncate(memfd, 0) != 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) {
        perror("config_fuzz: memfd write");
        abort();
    }
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    tk_rc rc = tk_config_load_file(&c, memfd_path, &e);
    if (rc != TK_OK) {
        check_err(rc, &e);
        return;
    }
    rc = tk_config_validate(&c, &e);
    if (rc != TK_OK) {
        check_err(rc, &e);
        return;
    }
    check_valid(&c);
}

static void fuzz_env(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (size) memcpy(buf, data, size);
    buf[size] = '\0';
    size_t n = 1;
    for (size_t i = 0; i < size; i++)
        n += buf[i] == '\n';
    char **envp = calloc(n + 1, sizeof *envp);
    size_t k = 0;
    for (char *p = buf;;) {
        envp[k++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    struct tk_config c;
    struct tk_err e;
    tk_config_defaults(&c);
    tk_rc rc = tk_config_load_env(&c, envp, &e);
    if (rc == TK_OK) rc = tk_config_validate(&c, &e);
    if (rc == TK_OK)
        check_valid(&c);
    else
        check_err(rc, &e);
    free(envp);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file(data, size);
    fuzz_env(data, size);
    return 0;
}
