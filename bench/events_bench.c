/* events_bench.c: events per second through the event writer (group
 * commit), with N threads posting (fire and forget) and N threads emitting
 * (each waits for its commit), on one store; the chain is verified after
 * each figure. The keyring is initialized and unsealed, so every event
 * carries its MAC, as on a running node. Prints a Markdown table for
 * BENCHMARKS.md.
 *
 * Usage: events-bench STORE_URL [seconds per figure, default 3] [threads,...]
 *   STORE_URL: sqlite:PATH (a fresh file) or postgres://... (a throwaway
 *   database: the schema is migrated into it).
 * EVENTS_BENCH_NOVERIFY=1 skips the verification (for profiling). */
#include "../src/events/events.h"
#include "../src/keyring/keyring.h"
#include "../src/operators/operators.h"
#include "../src/store/store.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* CPU seconds used by this process (writer, posters and SQLite). */
static double cpu_self(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds used by the PostgreSQL server processes on this machine
 * (utime + stime of every process named postgres). */
static double cpu_postgres(void)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    long long ticks = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close || strncmp(open + 1, "postgres)", 9) != 0) continue;
        /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime stime */
        long long ut = 0, st = 0;
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut,
                   &st) == 2)
            ticks += ut + st;
    }
    closedir(d);
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static char tenant[TK_UUID_LEN + 1];
static atomic_bool running;
static atomic_llong full_retries, errors;

/* An authentication refusal as auth.c records it. */
static void make_event(struct tk_event *ev, json_t **detail)
{
    *detail = json_pack("{s:s, s:s, s:s, s:s}", "reason", "unknown_token", "method", "GET",
                        "route", "/v1/whoami", "remote", "127.0.0.1");
    *ev = (struct tk_event){.tenant_id = tenant, .kind = "operator", .source = "api",
                            .action = "authenticate", .outcome = "denied",
                            .subject_type = "operator_token",
                            .message = "no operator token has this value", .detail = *detail,
                            .latency_us = -1};
}

struct runner {
    bool emit;
    long n;
};

static void *run(void *arg)
{
    struct runner *r = arg;
    struct tk_event ev;
    json_t *d;
    make_event(&ev, &d);
    struct tk_err e;
    while (atomic_load(&running)) {
        tk_rc rc = r->emit ? tk_event_emit(NULL, &ev, &e) : tk_event_post(&ev, &e);
        if (rc == TK_OK) {
            r->n++;
        } else if (!strcmp(e.code, "events_queue_full")) {
            atomic_fetch_add(&full_retries, 1);
            usleep(200); /* backpressure: the writer is behind */
        } else if (atomic_fetch_add(&errors, 1) < 3) {
            fprintf(stderr, "events-bench: %s\n", e.msg);
        }
    }
    json_decref(d);
    return NULL;
}

/* One figure: threads posting or emitting for secs; returns events/s
 * (posts: counted until the writer has written them all). */
static int figure(struct tk_store *st, bool emit, int threads, double secs)
{
    struct tk_events_writer_stats s0, s1;
    tk_events_writer_stats(&s0);
    atomic_store(&full_retries, 0);
    pthread_t th[256];
    struct runner rs[256];
    atomic_store(&running, true);
    double t0 = now_s(), c0 = cpu_self(), p0 = cpu_postgres();
    for (int i = 0; i < threads; i++) {
        rs[i] = (struct runner){.emit = emit};
        pthread_create(&th[i], NULL, run, &rs[i]);
    }
    while (now_s() - t0 < secs) usleep(20000);
    atomic_store(&running, false);
    long n = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        n += rs[i].n;
    }
    if (!tk_events_writer_sync(60000)) fprintf(stderr, "events-bench: the writer is behind\n");
    double t = now_s() - t0, cs_self = cpu_self() - c0, cs_pg = cpu_postgres() - p0;
    tk_events_writer_stats(&s1);
    long written = (long)(s1.written - s0.written), batches = (long)(s1.batches - s0.batches);
    /* the whole chain, every MAC checked */
    struct tk_err e;
    struct tk_db *db = tk_store_get(st, &e);
    struct tk_chain_status cs;
    double v0 = now_s();
    memset(&cs, 0, sizeof cs);
    tk_rc rc = getenv("EVENTS_BENCH_NOVERIFY") ? TK_OK
               : db                            ? tk_events_verify_chain(db, tenant, &cs, &e)
                                               : TK_EUNAVAIL;
    double vt = now_s() - v0;
    tk_store_put(db);
    if (rc != TK_OK || written != n) {
        fprintf(stderr, "events-bench: %s: %ld accepted, %ld written: %s\n",
                rc != TK_OK ? "the chain does not verify" : "counts differ", n, written,
                rc != TK_OK ? e.msg : "");
        return 1;
    }
    double wait_ms = s1.wait_count > s0.wait_count
                         ? (double)(s1.wait_us_total - s0.wait_us_total) /
                               (double)(s1.wait_count - s0.wait_count) / 1000.0
                         : 0;
    char wait[48] = "-";
    if (emit) snprintf(wait, sizeof wait, "%.2f ms", wait_ms);
    char cpu[64];
    if (!strcmp(tk_store_backend(st), "postgres"))
        snprintf(cpu, sizeof cpu, "%.1f + %.1f", cs_self * 1e6 / (double)n,
                 cs_pg * 1e6 / (double)n);
    else
        snprintf(cpu, sizeof cpu, "%.1f", cs_self * 1e6 / (double)n);
    printf("| %s | %s | %d | %.0f | %ld | %.1f | %s | %s | %lld | %lld keyed, verified in %.1f s "
           "|\n",
           tk_store_backend(st), emit ? "emit (waits)" : "post", threads, (double)n / t, n,
           batches ? (double)written / (double)batches : 0, wait, cpu,
           (long long)atomic_load(&full_retries), (long long)cs.checked, vt);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: events-bench STORE_URL [seconds] [threads,...]\n");
        return 2;
    }
    const char *url = argv[1];
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    const char *list = argc > 3 ? argv[3] : "1,4,16";
    char dir[] = "/tmp/tokend-ebench.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    struct tk_err e;
    struct tk_store *st;
    struct tk_store_opts so = {.pool_size = 8, .busy_timeout_ms = 5000, .migrate = true};
    struct tk_keyring *k;
    char shares[1][TK_SHARE_MAX];
    if (tk_store_open(url, &so, &st, &e) != TK_OK || tk_keyring_new(dir, &k, &e) != TK_OK) {
        fprintf(stderr, "events-bench: %s\n", e.msg);
        return 1;
    }
    struct tk_db *db = tk_store_get(st, &e);
    if (!db || tk_tenant_default(db, tenant, &e) != TK_OK ||
        tk_keyring_init(k, db, 1, 1, NULL, shares, NULL, &e) != TK_OK) {
        fprintf(stderr, "events-bench: %s\n", e.msg);
        return 1;
    }
    tk_store_put(db);
    tk_events_set_node("bench");
    tk_events_use_keyring(k);
    struct tk_events_writer_opts wo = {.queue = 10000, .timeout_ms = 5000};
    if (tk_events_writer_start(st, &wo, &e) != TK_OK) {
        fprintf(stderr, "events-bench: %s\n", e.msg);
        return 1;
    }
    printf("| store | mode | threads | events/s | events | events per batch | emit wait (mean) "
           "| CPU µs per event (process + PostgreSQL server) | queue-full retries | chain after "
           "|\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    int rc = 0;
    for (int emit = 0; emit <= 1 && rc == 0; emit++) {
        for (const char *t = list; *t && rc == 0;) {
            char *end;
            long threads = strtol(t, &end, 10);
            if (end == t || threads < 1 || threads > 256 || (*end && *end != ',')) {
                fprintf(stderr, "events-bench: threads: a list of numbers 1 to 256, not %s\n",
                        list);
                return 2;
            }
            rc = figure(st, emit, (int)threads, secs);
            t = *end ? end + 1 : end;
        }
    }
    tk_events_writer_stop(0);
    tk_events_use_keyring(NULL);
    tk_keyring_free(k);
    tk_store_close(st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return rc;
}
