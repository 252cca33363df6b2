/*
 * pwhash.h: end users' passwords as argon2id (libargon2), and the small
 * pool of threads that hashes and verifies them off the HTTP workers.
 *
 * A hash is the encoded PHC string ($argon2id$v=19$m=...,t=...,p=1$salt$hash)
 * that users.password_hash stores; verifying reads the parameters from it,
 * so changing the settings applies to new passwords and old ones still
 * verify. Parallelism is always 1: the pool's threads are the parallelism.
 *
 * The pool: `threads` threads take jobs from a queue of at most queue_max
 * waiting jobs (tk_pwpool_submit refuses past it: the caller answers 503
 * or a "try again" page at once, so a burst of logins never queues
 * without bound and never holds HTTP threads). A job's done callback runs
 * on the pool thread once the job is done, with the password already
 * wiped.
 */
#ifndef TK_PWHASH_H
#define TK_PWHASH_H

#include "../common/tk.h"

#include <stdatomic.h>

#define TK_PWHASH_MAX 192    /* an encoded hash, with NUL */
#define TK_PASSWORD_MIN 8    /* bytes */
#define TK_PASSWORD_MAX 1024 /* bytes */
#define TK_PWHASH_SALT 16
#define TK_PWHASH_LEN 32

struct tk_pwhash_params {
    uint32_t memory_kib;
    uint32_t iterations;
};

/* Hash the n bytes of pw into out (an encoded argon2id string). */
tk_rc tk_pwhash_hash(const struct tk_pwhash_params *p, const char *pw, size_t n,
                     char out[TK_PWHASH_MAX], struct tk_err *e);
/* Does pw match encoded? *ok false on a mismatch (TK_OK); TK_EINVAL when
 * encoded is not an argon2id string this build accepts. */
tk_rc tk_pwhash_verify(const char *encoded, const char *pw, size_t n, bool *ok, struct tk_err *e);
/* Read m and t of an encoded string (for tests and for "needs rehash"). */
bool tk_pwhash_params_of(const char *encoded, struct tk_pwhash_params *out);

enum tk_pwjob_op { TK_PWJOB_HASH, TK_PWJOB_VERIFY };

struct tk_pwjob {
    enum tk_pwjob_op op;
    char *pw; /* malloc'd; wiped and freed by the pool before done */
    size_t pw_len;
    char encoded[TK_PWHASH_MAX]; /* HASH: the result; VERIFY: the hash to check */
    bool ok;                     /* VERIFY: matched */
    tk_rc rc;                    /* TK_OK or what failed (e) */
    struct tk_err e;
    void (*done)(struct tk_pwjob *j); /* on a pool thread */
    void *arg;
    struct tk_pwjob *next;
};

struct tk_pwpool;
/* Start threads (>= 1) with at most queue_max jobs waiting (0: none wait,
 * only as many as threads run). NULL if no thread starts. */
struct tk_pwpool *tk_pwpool_new(int threads, int queue_max, const struct tk_pwhash_params *p);
/* Stop: jobs still queued are not hashed but their done callbacks run
 * (rc TK_EUNAVAIL "node_stopping"), so every submitted job's callback runs
 * exactly once; a job running finishes. NULL is a no-op. */
void tk_pwpool_free(struct tk_pwpool *pool);
/* Queue j (pw set, encoded set for VERIFY). false when the queue is full or
 * the pool is stopping: nothing happened, j is the caller's. */
bool tk_pwpool_submit(struct tk_pwpool *pool, struct tk_pwjob *j);
/* Jobs waiting and running now; hashes done since start by outcome. */
struct tk_pwpool_stats {
    long waiting, running;
    long long hashed, verified_ok, verified_mismatch, errors, refused;
};
void tk_pwpool_stats(struct tk_pwpool *pool, struct tk_pwpool_stats *out);
const struct tk_pwhash_params *tk_pwpool_params(const struct tk_pwpool *pool);

#endif
