/* test_worker.c: src/common/worker.c -- the monotonic deadline, and a
 * worker's timed wait, kick and stop (also the stop of a worker stuck in a
 * round). Waits that must end early are given minutes, so that a lost kick
 * or stop shows as a failure (or the harness's timeout), never as a pass. */
#include "unit.h"

#include "../../src/common/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#define LONG_WAIT_MS 600000 /* ten minutes: "never" within a test */

/* Poll *v until it equals want or 10 s pass. */
static bool wait_for(atomic_int *v, int want)
{
    int64_t end = tk_mono_ms() + 10000;
    while (atomic_load(v) != want) {
        if (tk_mono_ms() > end) return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return true;
}

void test_worker_deadline(void)
{
    struct timespec now, d;
    clock_gettime(CLOCK_MONOTONIC, &now);
    tk_mono_deadline(&d, 1999);
    int64_t dn = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    int64_t dd = (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
    CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    CHECK(dd - dn >= 1999 && dd - dn < 1999 + 1000);
    tk_mono_deadline(&d, 0);
    dd = (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;
    CHECK(dd >= dn && dd - dn < 1000);
    tk_mono_deadline(&d, -5); /* a negative wait is now */
    CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    /* a condition variable on the monotonic clock times out at the deadline */
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    tk_cond_init_mono(&cv);
    int64_t t0 = tk_mono_ms();
    tk_mono_deadline(&d, 50);
    pthread_mutex_lock(&mu);
    int r = 0;
    while (r == 0)
        r = pthread_cond_timedwait(&cv, &mu, &d);
    pthread_mutex_unlock(&mu);
    CHECK_EQ_INT(r, ETIMEDOUT);
    CHECK(tk_mono_ms() - t0 >= 50);
    pthread_cond_destroy(&cv);
}

struct counter {
    atomic_int rounds;
    atomic_int returned;
};

static void count_rounds(struct tk_worker *w, void *arg)
{
    struct counter *c = arg;
    while (tk_worker_wait(w, LONG_WAIT_MS))
        atomic_fetch_add(&c->rounds, 1);
    atomic_store(&c->returned, 1);
}

static void returns_at_once(struct tk_worker *w, void *arg)
{
    (void)w;
    (void)arg;
}

void test_worker_wait_kick_stop(void)
{
    struct tk_err e;
    /* a worker never started: kick does nothing, stop is done at once */
    struct tk_worker idle = {0};
    tk_worker_kick(&idle);
    CHECK(tk_worker_stop(&idle, 0));

    /* each kick is one round; stop ends fn's loop, and stop twice is fine */
    struct tk_worker w = {0};
    struct counter c = {0};
    if (!CHECK_OK(tk_worker_start(&w, "test", count_rounds, &c, &e), &e)) return;
    tk_worker_kick(&w);
    CHECK(wait_for(&c.rounds, 1));
    tk_worker_kick(&w);
    CHECK(wait_for(&c.rounds, 2));
    int64_t t0 = tk_mono_ms();
    CHECK(tk_worker_stop(&w, 0));
    CHECK(tk_mono_ms() - t0 < LONG_WAIT_MS / 2);
    CHECK_EQ_INT(atomic_load(&c.returned), 1);
    CHECK_EQ_INT(atomic_load(&c.rounds), 2);
    CHECK(tk_worker_stop(&w, 0));
    tk_worker_kick(&w); /* after stop: a no-op */

    /* The wait itself, from this thread (fn has returned; w is still
     * running until stop): a timed-out wait lasts its time and says go on;
     * a kick made before the wait is kept and taken back by it. */
    struct tk_worker v = {0};
    if (!CHECK_OK(tk_worker_start(&v, "test", returns_at_once, NULL, &e), &e)) return;
    t0 = tk_mono_ms();
    CHECK(tk_worker_wait(&v, 50));
    CHECK(tk_mono_ms() - t0 >= 50);
    tk_worker_kick(&v);
    t0 = tk_mono_ms();
    CHECK(tk_worker_wait(&v, LONG_WAIT_MS));
    CHECK(tk_mono_ms() - t0 < LONG_WAIT_MS / 2);
    t0 = tk_mono_ms();
    CHECK(tk_worker_wait(&v, 50)); /* the kick was taken */
    CHECK(tk_mono_ms() - t0 >= 50);
    CHECK(tk_worker_wait(&v, 0)); /* 0 ms: "am I stopping?" */
    CHECK(tk_worker_stop(&v, 0));
}

/* A round that does not end (a stalled store): stop with a timeout gives
 * up, detaches the thread and says so; the round, when it ends, sees the
 * stop. The worker stays in static storage: the thread outlives stop. */
static struct tk_worker stuck;
static atomic_int release, stuck_in_round, stuck_returned;

static void stuck_round(struct tk_worker *w, void *arg)
{
    (void)arg;
    atomic_store(&stuck_in_round, 1);
    while (!atomic_load(&release)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stuck_returned, tk_worker_wait(w, LONG_WAIT_MS) ? 2 : 1);
}

void test_worker_stop_stuck(void)
{
    struct tk_err e;
    if (!CHECK_OK(tk_worker_start(&stuck, "test", stuck_round, NULL, &e), &e)) return;
    CHECK(wait_for(&stuck_in_round, 1));
    CHECK(!tk_worker_stop(&stuck, 100));
    CHECK(tk_worker_stop(&stuck, 100)); /* no longer ours to stop */
    atomic_store(&release, 1);
    CHECK(wait_for(&stuck_returned, 1)); /* its wait said: stopping */
}

/* Every thread starts with every signal blocked, whatever its creator's
 * mask: a thread made while the main thread took SIGTERM with a handler
 * (serve.c, while the store opens) kept SIGTERM unblocked, and a SIGTERM
 * the kernel gave that thread later killed the process (exit by signal,
 * seen by CI as a stop with no exit code). */
static void *mask_probe(void *arg)
{
    sigset_t *out = arg;
    pthread_sigmask(SIG_BLOCK, NULL, out);
    return NULL;
}

static void worker_mask_probe(struct tk_worker *w, void *arg)
{
    (void)w;
    mask_probe(arg);
}

void test_worker_threads_block_signals(void)
{
    sigset_t none, old, got;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, &old); /* the creator takes every signal */
    sigfillset(&got);
    sigdelset(&got, SIGTERM);
    pthread_t t;
    CHECK(tk_thread_create(&t, mask_probe, &got) == 0);
    pthread_join(t, NULL);
    CHECK(sigismember(&got, SIGTERM) == 1);
    CHECK(sigismember(&got, SIGINT) == 1);
    CHECK(sigismember(&got, SIGHUP) == 1);
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    CHECK(sigismember(&now, SIGTERM) == 0); /* the creator's mask is as it was */

    sigset_t wgot;
    sigemptyset(&wgot);
    struct tk_worker w;
    struct tk_err e;
    CHECK(tk_worker_start(&w, "probe", worker_mask_probe, &wgot, &e) == TK_OK);
    CHECK(tk_worker_stop(&w, 10000));
    CHECK(sigismember(&wgot, SIGTERM) == 1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
