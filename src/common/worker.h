/*
 * worker.h: the one way tokend runs background work (CONVENTIONS.md: "a
 * monotonic timed wait with a kick, paused while sealed, stopped before the
 * store closes").
 *
 * A struct tk_worker is one thread that runs fn(w, arg) once. fn loops and
 * paces itself with tk_worker_wait(w, ms): a wait on the monotonic clock (a
 * change of the wall clock neither stretches nor cuts it short) that ends
 * early when someone calls tk_worker_kick (there is work now) or
 * tk_worker_stop, and that returns false once the worker is stopping: fn
 * then returns. A kick that comes while fn is busy is kept: the next wait
 * returns at once. A wait of 0 ms only asks "am I stopping?".
 *
 *     static void run(struct tk_worker *w, void *arg)
 *     {
 *         int64_t ms = 0;                     // the first round at once
 *         while (tk_worker_wait(w, ms)) {     // then every 5 s, or when kicked
 *             ms = 5000;
 *             if (sealed) continue;           // paused while sealed
 *             ... take a store connection, do one batch, put it back ...
 *         }
 *     }
 *
 * What a round does is fn's own business: pausing while sealed is a check
 * at the top of the round, and a round should be short (one batch) so that
 * stop is prompt. Stop every worker that uses the store before the store
 * closes. The struct lives in its owner (zeroed before start); its members
 * are private to worker.c.
 *
 * tk_mono_deadline and tk_cond_init_mono are the pieces under it, for a
 * timed wait that is not a worker's (tk_store_get's deadline for a
 * connection).
 */
#ifndef TK_WORKER_H
#define TK_WORKER_H

#include "tk.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* *ts = now + ms on CLOCK_MONOTONIC (ms <= 0: now), for a condition
 * variable made by tk_cond_init_mono. */
void tk_mono_deadline(struct timespec *ts, int64_t ms);
/* pthread_cond_init with the monotonic clock. */
void tk_cond_init_mono(pthread_cond_t *cv);

/* pthread_create with every signal blocked in the new thread, whatever the
 * caller's mask: the stop signals belong to the main thread's sigwait. A
 * thread started while the main thread takes SIGTERM with a handler (the
 * store opening, serve.c) would otherwise keep SIGTERM unblocked, and once
 * the disposition is back to default a SIGTERM delivered to that thread
 * kills the process instead of stopping it. Every thread of tokend starts
 * here. Returns pthread_create's result. */
int tk_thread_create(pthread_t *tid, void *(*fn)(void *), void *arg);

struct tk_worker;
typedef void (*tk_worker_fn)(struct tk_worker *w, void *arg);

struct tk_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    tk_worker_fn fn;
    void *arg;
    atomic_bool started; /* between a successful start and stop */
    bool stop, kick;     /* under mu */
};

/* Start the thread running fn(w, arg). w must be zeroed (or stopped).
 * name says which worker in the error ("cannot start the <name> thread"). */
tk_rc tk_worker_start(struct tk_worker *w, const char *name, tk_worker_fn fn, void *arg,
                      struct tk_err *e);
/* Called by fn: wait up to ms, or until kicked or stopped. True: do a round;
 * false: the worker is stopping, return. Takes back a pending kick. */
bool tk_worker_wait(struct tk_worker *w, int64_t ms);
/* Wake the worker now (a no-op when it is not running). Whoever kicks must
 * be stopped before tk_worker_stop (the HTTP server before the rewrap worker). */
void tk_worker_kick(struct tk_worker *w);
/* Ask fn to return, and join the thread: for good when timeout_ms <= 0,
 * else at most timeout_ms. Returns false when the thread did not end in
 * time (stuck in a round): it is then detached, and w (and whatever fn
 * uses, the store above all) must be left to the process's exit. A worker
 * that is not running returns true at once; so stop may be called twice. */
bool tk_worker_stop(struct tk_worker *w, int timeout_ms);

#endif
