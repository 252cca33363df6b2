/* keyring_bench.c: seal and open per second on one core, for the secret
 * sizes tokend keeps (a 40-byte token, a 1 KiB JWT-sized token), and the
 * keyed hash of an issued secret. Prints a Markdown table for BENCHMARKS.md.
 * Usage: keyring-bench [seconds per figure, default 2] */
#include "../src/keyring/keyring.h"
#include "../src/store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    char dir[] = "/tmp/tokend-kbench.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char url[128];
    snprintf(url, sizeof url, "sqlite:%s/k.db", dir);
    struct tk_err e;
    struct tk_store *st;
    struct tk_store_opts so = {.pool_size = 2, .busy_timeout_ms = 5000, .migrate = true};
    struct tk_keyring *k;
    char shares[1][TK_SHARE_MAX];
    if (tk_store_open(url, &so, &st, &e) != TK_OK || tk_keyring_new(dir, &k, &e) != TK_OK) {
        fprintf(stderr, "keyring-bench: %s\n", e.msg);
        return 1;
    }
    struct tk_db *db = tk_store_get(st, &e);
    if (!db || tk_keyring_init(k, db, 1, 1, NULL, shares, NULL, &e) != TK_OK) {
        fprintf(stderr, "keyring-bench: %s\n", e.msg);
        return 1;
    }
    struct tk_seal_ad ad = {"01a2144d-a6a8-7000-8233-db59c413ee61", "connections", "access_token",
                            "01a2144d-a6a8-7000-8234-d0acf5d5b0e2"};
    static const size_t sizes[] = {40, 1024};
    printf("| operation | secret size | per second (one core) | µs each |\n|---|---:|---:|---:|\n");
    for (size_t si = 0; si < 2; si++) {
        char *plain = malloc(sizes[si]);
        memset(plain, 'x', sizes[si]);
        struct tk_secret *s = tk_secret_new(plain, sizes[si]);
        struct tk_sealed *v = NULL;
        long n = 0;
        double c0 = cpu_s(), t0 = now_s();
        while (now_s() - t0 < secs) {
            for (int i = 0; i < 1000; i++) {
                tk_sealed_free(v);
                if (tk_keyring_seal_value(k, s, &ad, &v, &e) != TK_OK) return 1;
            }
            n += 1000;
        }
        double c = cpu_s() - c0;
        printf("| seal | %zu B | %.0f | %.2f |\n", sizes[si], n / c, c / n * 1e6);
        n = 0;
        c0 = cpu_s();
        t0 = now_s();
        while (now_s() - t0 < secs) {
            for (int i = 0; i < 1000; i++) {
                struct tk_secret *o;
                if (tk_keyring_open_value(k, NULL, v, &ad, &o, NULL, &e) != TK_OK) return 1;
                tk_secret_free(o);
            }
            n += 1000;
        }
        c = cpu_s() - c0;
        printf("| open | %zu B | %.0f | %.2f |\n", sizes[si], n / c, c / n * 1e6);
        tk_sealed_free(v);
        tk_secret_free(s);
        free(plain);
    }
    long n = 0;
    char h[TK_HASH_HEX];
    double c0 = cpu_s(), t0 = now_s();
    while (now_s() - t0 < secs) {
        for (int i = 0; i < 1000; i++) tk_keyring_hash(k, "tko_abcdefghijklmnopqrstuvwxyz0123ABCDEF", 40, h, NULL, &e);
        n += 1000;
    }
    double c = cpu_s() - c0;
    printf("| HMAC of an issued secret | 40 B | %.0f | %.2f |\n", n / c, c / n * 1e6);
    tk_store_put(db);
    tk_keyring_free(k);
    tk_store_close(st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return 0;
}
