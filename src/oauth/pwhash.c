/* pwhash.c: see pwhash.h. */
#include "pwhash.h"
#include "../common/worker.h"

#include <argon2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tk_rc tk_pwhash_hash(const struct tk_pwhash_params *p, const char *pw, size_t n,
                     char out[TK_PWHASH_MAX], struct tk_err *e)
{
    unsigned char salt[TK_PWHASH_SALT];
    tk_random(salt, sizeof salt);
    if (argon2_encodedlen(p->iterations, p->memory_kib, 1, TK_PWHASH_SALT, TK_PWHASH_LEN,
                          Argon2_id) >= TK_PWHASH_MAX)
        return tk_err_set(e, TK_EINTERNAL, "internal", "argon2id parameters too large");
    int rc = argon2id_hash_encoded(p->iterations, p->memory_kib, 1, pw, n, salt, sizeof salt,
                                   TK_PWHASH_LEN, out, TK_PWHASH_MAX);
    tk_wipe(salt, sizeof salt);
    if (rc != ARGON2_OK)
        return tk_err_set(e, TK_EINTERNAL, "internal", "argon2id failed: %s",
                          argon2_error_message(rc));
    return TK_OK;
}

tk_rc tk_pwhash_verify(const char *encoded, const char *pw, size_t n, bool *ok, struct tk_err *e)
{
    *ok = false;
    if (strncmp(encoded, "$argon2id$", 10) != 0)
        return tk_err_set(e, TK_EINVAL, "invalid_hash", "the stored hash is not argon2id");
    int rc = argon2id_verify(encoded, pw, n);
    if (rc == ARGON2_OK) {
        *ok = true;
        return TK_OK;
    }
    if (rc == ARGON2_VERIFY_MISMATCH) return TK_OK;
    return tk_err_set(e, TK_EINVAL, "invalid_hash", "argon2id verify failed: %s",
                      argon2_error_message(rc));
}

bool tk_pwhash_params_of(const char *encoded, struct tk_pwhash_params *out)
{
    unsigned m, t, par;
    if (sscanf(encoded, "$argon2id$v=19$m=%u,t=%u,p=%u$", &m, &t, &par) != 3) return false;
    out->memory_kib = m;
    out->iterations = t;
    return true;
}

/* ---- the pool ---- */

struct tk_pwpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct tk_pwjob *head, *tail;
    long waiting, running;
    int queue_max, threads, started;
    bool stopping;
    struct tk_pwhash_params params;
    long long hashed, ok, mismatch, errors, refused;
    pthread_t tid[64];
};

static void run_job(struct tk_pwpool *pool, struct tk_pwjob *j, bool stopping)
{
    j->rc = TK_OK;
    if (stopping) /* nobody waits for it any more: the HTTP server has stopped */
        j->rc = tk_err_set(&j->e, TK_EUNAVAIL, "node_stopping", "the node is stopping");
    else if (j->op == TK_PWJOB_HASH)
        j->rc = tk_pwhash_hash(&pool->params, j->pw, j->pw_len, j->encoded, &j->e);
    else
        j->rc = tk_pwhash_verify(j->encoded, j->pw, j->pw_len, &j->ok, &j->e);
    if (j->pw) {
        tk_wipe(j->pw, j->pw_len);
        free(j->pw);
        j->pw = NULL;
    }
}

static void *worker(void *arg)
{
    struct tk_pwpool *pool = arg;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->head && !pool->stopping)
            pthread_cond_wait(&pool->cv, &pool->mu);
        struct tk_pwjob *j = pool->head;
        if (!j) break; /* stopping and nothing left */
        pool->head = j->next;
        if (!pool->head) pool->tail = NULL;
        pool->waiting--;
        pool->running++;
        bool stopping = pool->stopping;
        pthread_mutex_unlock(&pool->mu);
        run_job(pool, j, stopping);
        pthread_mutex_lock(&pool->mu);
        pool->running--;
        if (j->rc != TK_OK)
            pool->errors++;
        else if (j->op == TK_PWJOB_HASH)
            pool->hashed++;
        else if (j->ok)
            pool->ok++;
        else
            pool->mismatch++;
        pthread_mutex_unlock(&pool->mu);
        j->done(j); /* may free j */
        pthread_mutex_lock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

struct tk_pwpool *tk_pwpool_new(int threads, int queue_max, const struct tk_pwhash_params *p)
{
    struct tk_pwpool *pool = tk_calloc(1, sizeof *pool);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->params = *p;
    pool->queue_max = queue_max < 0 ? 0 : queue_max;
    pool->threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
    for (int i = 0; i < pool->threads; i++) {
        if (tk_thread_create(&pool->tid[i], worker, pool) != 0) break;
        pool->started++;
    }
    if (!pool->started) {
        tk_pwpool_free(pool);
        return NULL;
    }
    return pool;
}

void tk_pwpool_free(struct tk_pwpool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->started; i++)
        pthread_join(pool->tid[i], NULL);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

bool tk_pwpool_submit(struct tk_pwpool *pool, struct tk_pwjob *j)
{
    pthread_mutex_lock(&pool->mu);
    /* free threads take a job at once; past them queue_max may wait */
    long idle = pool->started - pool->running;
    bool full = pool->stopping || pool->waiting - (idle > 0 ? idle : 0) >= pool->queue_max;
    if (full) {
        pool->refused++;
        pthread_mutex_unlock(&pool->mu);
        return false;
    }
    j->next = NULL;
    if (pool->tail)
        pool->tail->next = j;
    else
        pool->head = j;
    pool->tail = j;
    pool->waiting++;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return true;
}

void tk_pwpool_stats(struct tk_pwpool *pool, struct tk_pwpool_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    out->waiting = pool->waiting;
    out->running = pool->running;
    out->hashed = pool->hashed;
    out->verified_ok = pool->ok;
    out->verified_mismatch = pool->mismatch;
    out->errors = pool->errors;
    out->refused = pool->refused;
    pthread_mutex_unlock(&pool->mu);
}

const struct tk_pwhash_params *tk_pwpool_params(const struct tk_pwpool *pool)
{
    return &pool->params;
}
