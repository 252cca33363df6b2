/* users_internal.h: what users_api.c (/v1/users, the hash pool, sessions)
 * and oauth_login_api.c (the login, consent and logout pages) share. Not an
 * interface outside those two files. */
#ifndef TK_USERS_INTERNAL_H
#define TK_USERS_INTERNAL_H

#include "../oauth/pwhash.h"
#include "../oauth/users.h"
#include "api.h"

/* The window of users_login_fail_limit. */
#define TK_USERS_FAIL_WINDOW_S 900
/* How long a request waits parked for its hash at most. */
#define TK_USERS_PARK_MS 30000

struct tk_pwhash {
    struct tk_pwpool *pool;
    /* a hash of a random password, verified for an unknown email so that
     * it costs what a known one does */
    char dummy[TK_PWHASH_MAX];
    struct tk_ratelimit *fail_addr; /* failed logins per address */
    struct tk_ratelimit *fail_user; /* per user id */
    struct tk_metric *m_hashes, *m_queue;
};

#define TK_USERS_SESSION_COOKIE "tokend_session"
#define TK_USERS_CSRF_COOKIE "tokend_csrf"

/* Submit j to the pool: false when it is full (or not started): then the
 * caller answers 503 / a try-again page; j stays its own. */
bool tk_users_submit(struct tk_app *app, struct tk_pwjob *j);
/* Should cookies carry Secure (TLS here, or an https public_url)? */
bool tk_users_secure(struct tk_app *app);

#endif
