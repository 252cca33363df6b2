/* worker.c: background threads with a monotonic timed wait, a kick and a
 * stop. See worker.h. */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

void tk_mono_deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (ms <= 0) return;
    int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;
    ts->tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

void tk_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

int tk_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(tid, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static void *trampoline(void *arg)
{
    struct tk_worker *w = arg;
    w->fn(w, w->arg);
    return NULL;
}

tk_rc tk_worker_start(struct tk_worker *w, const char *name, tk_worker_fn fn, void *arg,
                      struct tk_err *e)
{
    pthread_mutex_init(&w->mu, NULL);
    tk_cond_init_mono(&w->cv);
    w->fn = fn;
    w->arg = arg;
    w->stop = false;
    w->kick = false;
    atomic_store(&w->started, true); /* before the thread: it may kick itself */
    int r = tk_thread_create(&w->thread, trampoline, w);
    if (r != 0) {
        atomic_store(&w->started, false);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return tk_err_set(e, TK_EINTERNAL, "internal", "cannot start the %s thread (%s)", name,
                          strerror(r));
    }
    return TK_OK;
}

bool tk_worker_wait(struct tk_worker *w, int64_t ms)
{
    struct timespec until;
    tk_mono_deadline(&until, ms);
    pthread_mutex_lock(&w->mu);
    while (!w->stop && !w->kick)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0) break; /* ETIMEDOUT */
    w->kick = false;
    bool go = !w->stop;
    pthread_mutex_unlock(&w->mu);
    return go;
}

void tk_worker_kick(struct tk_worker *w)
{
    if (!atomic_load(&w->started)) return;
    pthread_mutex_lock(&w->mu);
    w->kick = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

bool tk_worker_stop(struct tk_worker *w, int timeout_ms)
{
    if (!atomic_load(&w->started)) return true;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (timeout_ms > 0) {
        /* pthread_timedjoin_np measures on CLOCK_REALTIME */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = (int64_t)until.tv_nsec + (int64_t)(timeout_ms % 1000) * 1000000;
        until.tv_sec += (time_t)(timeout_ms / 1000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        if (pthread_timedjoin_np(w->thread, NULL, &until) != 0) {
            pthread_detach(w->thread);
            atomic_store(&w->started, false); /* mu and cv stay: the thread still uses them */
            return false;
        }
    } else {
        pthread_join(w->thread, NULL);
    }
    atomic_store(&w->started, false);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return true;
}
