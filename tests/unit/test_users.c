/* test_users.c: the users part (src/oauth/users.h, pwhash.h): argon2id
 * hashes carry the settings' parameters and verify (a known-answer check
 * against libargon2's encoding), the email and password rules with hostile
 * input, the hash pool's bound and that every job's callback runs once
 * (stop included), the login form's values through the form parser, and on
 * both backends users, sessions (keyed hash, end, expiry, disabled user)
 * and consents (union, covers). */
#include "unit.h"

#include "../../src/http/parse.h"
#include "../../src/keyring/keyring.h"
#include "../../src/oauth/pwhash.h"
#include "../../src/oauth/users.h"
#include "../../src/operators/operators.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void test_users_pwhash(void)
{
    struct tk_err e;
    struct tk_pwhash_params p = {.memory_kib = 1024, .iterations = 2};
    char h[TK_PWHASH_MAX], h2[TK_PWHASH_MAX];
    const char *pw = "correct horse battery staple";
    if (!CHECK_OK(tk_pwhash_hash(&p, pw, strlen(pw), h, &e), &e)) return;
    CHECK(!strncmp(h, "$argon2id$v=19$m=1024,t=2,p=1$", 30));
    struct tk_pwhash_params got;
    CHECK(tk_pwhash_params_of(h, &got));
    CHECK_EQ_INT(got.memory_kib, 1024);
    CHECK_EQ_INT(got.iterations, 2);
    CHECK(strstr(h, pw) == NULL);
    /* a fresh salt each time */
    CHECK_OK(tk_pwhash_hash(&p, pw, strlen(pw), h2, &e), &e);
    CHECK(strcmp(h, h2) != 0);
    bool ok = false;
    CHECK_OK(tk_pwhash_verify(h, pw, strlen(pw), &ok, &e), &e);
    CHECK(ok);
    CHECK_OK(tk_pwhash_verify(h, "correct horse battery stapl", 27, &ok, &e), &e);
    CHECK(!ok);
    /* the length counts: a password with its prefix does not match */
    CHECK_OK(tk_pwhash_verify(h, pw, strlen(pw) - 1, &ok, &e), &e);
    CHECK(!ok);
    /* a known answer: RFC 9106 style encoding from libargon2's reference
     * (password "password", salt "somesalt", m=65536 t=2 p=1) */
    const char *known = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$"
                        "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
    CHECK_OK(tk_pwhash_verify(known, "password", 8, &ok, &e), &e);
    CHECK(ok);
    /* not argon2id, damaged: refused, not a mismatch */
    CHECK_EQ_INT(tk_pwhash_verify("$argon2i$v=19$m=1024,t=2,p=1$c29tZXNhbHQ$AAAA", "x", 1, &ok, &e),
                 TK_EINVAL);
    CHECK_EQ_INT(tk_pwhash_verify("plaintext", "plaintext", 9, &ok, &e), TK_EINVAL);
    CHECK(!ok);
    CHECK_EQ_INT(tk_pwhash_verify("$argon2id$v=19$m=1024,t=2,p=1$$", "x", 1, &ok, &e), TK_EINVAL);
    CHECK(!tk_pwhash_params_of("$argon2i$v=19$m=1,t=1,p=1$", &got));
    /* the defaults (OWASP: 19456 KiB, 2 passes) fit the column */
    struct tk_pwhash_params def = {.memory_kib = 19456, .iterations = 2};
    CHECK_OK(tk_pwhash_hash(&def, pw, strlen(pw), h, &e), &e);
    CHECK(!strncmp(h, "$argon2id$v=19$m=19456,t=2,p=1$", 31));
    CHECK(strlen(h) < TK_PWHASH_MAX);
}

static const char *norm(const char *s, char out[TK_USER_EMAIL_MAX + 1])
{
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_user_email_norm(s, strlen(s), out, &e) != TK_OK) {
        if (strcmp(e.field, "email") != 0) FAILF("'%s': field %s", s, e.field);
        return NULL;
    }
    return out;
}

void test_users_email(void)
{
    char out[TK_USER_EMAIL_MAX + 1];
    CHECK_EQ_STR(norm("Ada@Example.COM", out), "ada@example.com");
    CHECK_EQ_STR(norm("a@b", out), "a@b");
    CHECK_EQ_STR(norm("ü.ser@exämple.org", out), "ü.ser@exämple.org");
    static const char *const bad[] = {
        "",        "a@",       "@b",      "ab",           "a@b@c",     " a@b.c",  "a@b.c ",
        "a@b.c\n", "\ta@b.c",  "a b@c.d", "a\x01@b.c",    "a@b.c\x7f", "<a@b.c>", "\"a\"@b.c",
        "a,b@c.d", "a\\b@c.d", "no-at",   "\xff\xfe@b.c", "a@\xc3",    "a@b.c\r",
    };
    for (size_t i = 0; i < TK_NELEM(bad); i++)
        if (norm(bad[i], out)) FAILF("'%s' accepted as '%s'", bad[i], out);
    /* the length limit: 254 bytes at most */
    char big[400];
    memset(big, 'x', sizeof big);
    memcpy(big + 251, "@b.c", 5); /* 255 bytes */
    CHECK(norm(big, out) == NULL);
    memcpy(big + 250, "@b.c", 5); /* 254 bytes */
    CHECK(norm(big, out) != NULL);
    /* a NUL inside (from a form or JSON length): the bytes counted, refused */
    struct tk_err e;
    CHECK_EQ_INT(tk_user_email_norm("a\0@b.c", 6, out, &e), TK_EINVAL);

    /* passwords: bytes, 8..1024, no NUL; the message never quotes it */
    CHECK_OK(tk_user_password_check("12345678", 8, &e), &e);
    CHECK_EQ_INT(tk_user_password_check("1234567", 7, &e), TK_EINVAL);
    CHECK_EQ_STR(e.field, "password");
    CHECK(strstr(e.msg, "1234567") == NULL);
    char pw[1100];
    memset(pw, 'p', sizeof pw);
    CHECK_OK(tk_user_password_check(pw, 1024, &e), &e);
    CHECK_EQ_INT(tk_user_password_check(pw, 1025, &e), TK_EINVAL);
    CHECK_EQ_INT(tk_user_password_check("abcd\0efgh", 9, &e), TK_EINVAL);
    CHECK(tk_user_status_valid("active") && tk_user_status_valid("disabled"));
    CHECK(!tk_user_status_valid("Active") && !tk_user_status_valid("") &&
          !tk_user_status_valid(NULL));
}

/* The login form's fields through the form parser, hostile input
 * included: what reaches the handler is bounded and NUL-free. */
void test_users_login_form(void)
{
    struct tk_pool *pool = tk_pool_new();
    struct tk_form f;
    struct tk_err e;
    char out[TK_USER_EMAIL_MAX + 1];
    const char *ok = "flow=0190a000-0000-7000-8000-000000000001&csrf=abc&email=Ada%40Example.com"
                     "&password=p%C3%A4ss+word%26%3D";
    if (CHECK_OK(tk_form_parse(ok, strlen(ok), pool, &f, &e), &e)) {
        CHECK_EQ_STR(tk_form_get(&f, "password"), "päss word&=");
        const char *em = tk_form_get(&f, "email");
        CHECK_EQ_STR(norm(em, out), "ada@example.com");
    }
    static const char *const hostile[] = {
        "email=a%00b%40c.d",       /* NUL */
        "email=a%40b&email=c%40d", /* twice */
        "password=%zz",            /* bad escape */
        "password=%C3",            /* not UTF-8 */
        "=x",                      /* empty name */
    };
    for (size_t i = 0; i < TK_NELEM(hostile); i++)
        if (tk_form_parse(hostile[i], strlen(hostile[i]), pool, &f, &e) == TK_OK)
            FAILF("form '%s' accepted", hostile[i]);
    /* many pairs: refused past the bound */
    char many[2000] = "";
    for (int i = 0; i < 70; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "a%d=1&", i);
    CHECK(tk_form_parse(many, strlen(many), pool, &f, &e) != TK_OK);
    /* a long email in a form: refused by the email rule */
    char big[2100] = "email=";
    memset(big + 6, 'a', 2000);
    memcpy(big + 2006, "%40b.c", 7);
    if (CHECK_OK(tk_form_parse(big, strlen(big), pool, &f, &e), &e))
        CHECK(norm(tk_form_get(&f, "email"), out) == NULL);
    tk_pool_free(pool);
}

/* ---- the pool ---- */

struct pool_run {
    atomic_int done;
    atomic_int ok;
};

static void job_done(struct tk_pwjob *j)
{
    struct pool_run *pr = j->arg;
    if (j->pw != NULL) FAILF("the password was not wiped and freed before done");
    if (j->rc == TK_OK && (j->op == TK_PWJOB_HASH ? j->encoded[0] == '$' : j->ok))
        atomic_fetch_add(&pr->ok, 1);
    atomic_fetch_add(&pr->done, 1);
}

static char *dup_pw(const char *s)
{
    char *p = malloc(strlen(s) + 1);
    memcpy(p, s, strlen(s) + 1);
    return p;
}

void test_users_pool(void)
{
    struct tk_pwhash_params p = {.memory_kib = 8192, .iterations = 3};
    struct tk_pwpool *pool = tk_pwpool_new(1, 2, &p);
    if (!CHECK(pool)) return;
    struct pool_run pr;
    atomic_init(&pr.done, 0);
    atomic_init(&pr.ok, 0);
    struct tk_pwjob jobs[10];
    memset(jobs, 0, sizeof jobs);
    int accepted = 0, refused = 0;
    for (int i = 0; i < 10; i++) {
        jobs[i].op = TK_PWJOB_HASH;
        jobs[i].pw = dup_pw("a password of sorts");
        jobs[i].pw_len = strlen(jobs[i].pw);
        jobs[i].done = job_done;
        jobs[i].arg = &pr;
        if (tk_pwpool_submit(pool, &jobs[i])) {
            accepted++;
        } else {
            refused++;
            free(jobs[i].pw);
        }
    }
    /* one thread and two waiting: at most 3 taken at once (a quick thread
     * may take one before the next submit, so "at least 3" is the bound) */
    CHECK(accepted >= 2 && accepted <= 4);
    CHECK(refused >= 6);
    struct tk_pwpool_stats st;
    tk_pwpool_stats(pool, &st);
    CHECK_EQ_INT(st.refused, refused);
    /* stop: each accepted job's callback runs once; the one running
     * finishes, those still queued are not hashed (node_stopping) */
    tk_pwpool_free(pool);
    CHECK_EQ_INT(atomic_load(&pr.done), accepted);
    CHECK(atomic_load(&pr.ok) <= accepted);
    int dropped = 0;
    for (int i = 0; i < 10; i++)
        if (jobs[i].done && jobs[i].rc == TK_EUNAVAIL) {
            dropped++;
            CHECK_EQ_STR(jobs[i].e.code, "node_stopping");
            CHECK(jobs[i].pw == NULL);
        }
    CHECK_EQ_INT(dropped + atomic_load(&pr.ok), accepted);

    /* verify jobs against a hash made in a job */
    pool = tk_pwpool_new(2, 4, &p);
    if (!CHECK(pool)) return;
    atomic_store(&pr.done, 0);
    atomic_store(&pr.ok, 0);
    memset(jobs, 0, sizeof jobs);
    jobs[0].op = TK_PWJOB_HASH;
    jobs[0].pw = dup_pw("sesame-sesame");
    jobs[0].pw_len = 13;
    jobs[0].done = job_done;
    jobs[0].arg = &pr;
    CHECK(tk_pwpool_submit(pool, &jobs[0]));
    for (int i = 0; i < 500 && atomic_load(&pr.done) < 1; i++)
        usleep(10000);
    for (int i = 1; i <= 2; i++) {
        jobs[i].op = TK_PWJOB_VERIFY;
        jobs[i].pw = dup_pw(i == 1 ? "sesame-sesame" : "sesame-sesamE");
        jobs[i].pw_len = 13;
        memcpy(jobs[i].encoded, jobs[0].encoded, sizeof jobs[i].encoded);
        jobs[i].done = job_done;
        jobs[i].arg = &pr;
        CHECK(tk_pwpool_submit(pool, &jobs[i]));
    }
    for (int i = 0; i < 1000 && atomic_load(&pr.done) < 3; i++)
        usleep(10000);
    tk_pwpool_free(pool);
    CHECK_EQ_INT(atomic_load(&pr.done), 3);
    CHECK_EQ_INT(atomic_load(&pr.ok), 2); /* the hash and the right password */
    CHECK(jobs[1].ok && !jobs[2].ok);
}

/* ---- the store ---- */

static bool open_keyring(const char *dir, struct tk_db *db, struct tk_keyring **k)
{
    struct tk_err e;
    char shares[1][TK_SHARE_MAX];
    *k = NULL;
    if (!CHECK_OK(tk_keyring_new(dir, k, &e), &e)) return false;
    bool ok = CHECK_OK(tk_keyring_init(*k, db, 1, 1, NULL, shares, NULL, &e), &e);
    tk_wipe(shares, sizeof shares);
    return ok && CHECK(!tk_keyring_sealed(*k));
}

static json_t *strs(const char *a, const char *b)
{
    json_t *x = json_array();
    if (a) json_array_append_new(x, json_string(a));
    if (b) json_array_append_new(x, json_string(b));
    return x;
}

void test_users_store(struct fx *f)
{
    struct tk_db *db = fx_db(f);
    if (!db) return;
    struct tk_keyring *k = NULL;
    struct tk_err e;
    char tenant[TK_UUID_LEN + 1], other[TK_UUID_LEN + 1], id[TK_UUID_LEN + 1], id2[TK_UUID_LEN + 1];
    json_t *o = NULL;
    if (!open_keyring(f->dir, db, &k)) goto out;
    if (!CHECK_OK(tk_tenant_default(db, tenant, &e), &e)) goto out;
    tk_uuid7(other);
    int64_t now = tk_now_ms();
    CHECK_OK(tk_db_exec(db, "INSERT INTO tenants (id, name, created_at) VALUES (?, 'other', ?)",
                        TK_ARGS(TK_TEXT(other), TK_INT(now)), NULL, &e),
             &e);
    if (!CHECK_OK(tk_user_create(db, tenant, "ada@example.com", "$argon2id$fake", id, &o, &e), &e))
        goto out;
    CHECK_EQ_STR(json_string_value(json_object_get(o, "email")), "ada@example.com");
    CHECK(json_object_get(o, "password_hash") == NULL);
    json_decref(o);
    o = NULL;
    CHECK_EQ_INT(tk_user_create(db, tenant, "ada@example.com", "$argon2id$x", id2, &o, &e),
                 TK_ECONFLICT);
    CHECK_EQ_STR(e.code, "email_taken");
    /* the same email in another tenant is another user */
    CHECK_OK(tk_user_create(db, other, "ada@example.com", "$argon2id$y", id2, &o, &e), &e);
    json_decref(o);
    o = NULL;
    CHECK_EQ_INT(tk_user_get(db, other, id, &o, &e), TK_ENOTFOUND);
    struct tk_user u;
    CHECK_OK(tk_user_find_email(db, tenant, "ada@example.com", &u, &e), &e);
    CHECK_EQ_STR(u.id, id);
    CHECK_EQ_STR(u.password_hash, "$argon2id$fake");
    CHECK_EQ_INT(tk_user_find_email(db, tenant, "nobody@example.com", &u, &e), TK_ENOTFOUND);

    /* sessions: a keyed hash, found, ended */
    char tok[TK_ISSUED_MAX], sid[TK_UUID_LEN + 1];
    if (!CHECK_OK(tk_user_session_create(db, k, tenant, id, 60, tok, sid, &e), &e)) goto out;
    CHECK(!strncmp(tok, "tku_", 4));
    struct tk_rows *r = NULL;
    if (CHECK_OK(tk_db_exec(db, "SELECT * FROM user_sessions", NULL, 0, &r, &e), &e))
        for (int i = 0; i < tk_rows_count(r); i++)
            for (int c = 0; c < tk_rows_columns(r); c++) {
                const char *v = tk_rows_text(r, i, c);
                if (v && strstr(v, tok + 6)) FAILF("column %d holds the session token", c);
            }
    tk_rows_free(r);
    struct tk_user_session s;
    CHECK_OK(tk_user_session_find(db, k, tok, strlen(tok), &s, &e), &e);
    CHECK_EQ_STR(s.user_id, id);
    CHECK_EQ_STR(s.tenant_id, tenant);
    char never[TK_ISSUED_MAX];
    tk_issued_new(TK_KIND_USER_SESSION, never);
    CHECK_EQ_INT(tk_user_session_find(db, k, never, strlen(never), &s, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "unknown");
    /* disabling ends the sessions */
    CHECK_OK(tk_user_update(db, tenant, id, "disabled", NULL, &o, &e), &e);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "status")), "disabled");
    json_decref(o);
    o = NULL;
    CHECK_EQ_INT(tk_user_session_find(db, k, tok, strlen(tok), &s, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "ended");
    CHECK_OK(tk_user_update(db, tenant, id, "active", NULL, &o, &e), &e);
    json_decref(o);
    o = NULL;
    /* a new session, then a new password ends it */
    CHECK_OK(tk_user_session_create(db, k, tenant, id, 60, tok, sid, &e), &e);
    CHECK_OK(tk_user_session_find(db, k, tok, strlen(tok), &s, &e), &e);
    CHECK_OK(tk_user_update(db, tenant, id, NULL, "$argon2id$new", &o, &e), &e);
    json_decref(o);
    o = NULL;
    CHECK_EQ_INT(tk_user_session_find(db, k, tok, strlen(tok), &s, &e), TK_EAUTH);
    CHECK_OK(tk_user_load(db, tenant, id, &u, &e), &e);
    CHECK_EQ_STR(u.password_hash, "$argon2id$new");
    /* expiry; logout */
    CHECK_OK(tk_user_session_create(db, k, tenant, id, 60, tok, sid, &e), &e);
    CHECK_OK(tk_db_exec(db, "UPDATE user_sessions SET expires_at = 1 WHERE id = ?",
                        TK_ARGS(TK_TEXT(sid)), NULL, &e),
             &e);
    CHECK_EQ_INT(tk_user_session_find(db, k, tok, strlen(tok), &s, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "expired");
    CHECK_OK(tk_user_session_create(db, k, tenant, id, 60, tok, sid, &e), &e);
    CHECK_OK(tk_user_session_end(db, k, tok, strlen(tok), &e), &e);
    CHECK_EQ_INT(tk_user_session_find(db, k, tok, strlen(tok), &s, &e), TK_EAUTH);
    CHECK_EQ_STR(e.code, "ended");

    /* consents: union, covers */
    char client[TK_UUID_LEN + 1];
    tk_uuid7(client);
    CHECK_OK(tk_db_exec(db,
                        "INSERT INTO oauth_clients (id, tenant_id, client_id, name, client_type, "
                        "application_type, token_endpoint_auth_method, redirect_uris, "
                        "grant_types, scopes, default_scopes, status, origin, created_at, "
                        "updated_at) VALUES (?, ?, 'c1', 'C', 'public', 'web', 'none', '[]', "
                        "'[]', '[]', '[]', 'active', 'operator', ?, ?)",
                        TK_ARGS(TK_TEXT(client), TK_TEXT(tenant), TK_INT(now), TK_INT(now)), NULL,
                        &e),
             &e);
    bool cov = true;
    json_t *a = strs("read", NULL), *ab = strs("read", "write"), *b = strs("write", NULL);
    CHECK_OK(tk_oauth_consent_covers(db, tenant, id, client, a, &cov, &e), &e);
    CHECK(!cov);
    CHECK_OK(tk_oauth_consent_grant(db, tenant, id, client, a, &e), &e);
    CHECK_OK(tk_oauth_consent_covers(db, tenant, id, client, a, &cov, &e), &e);
    CHECK(cov);
    CHECK_OK(tk_oauth_consent_covers(db, tenant, id, client, ab, &cov, &e), &e);
    CHECK(!cov);
    CHECK_OK(tk_oauth_consent_grant(db, tenant, id, client, b, &e), &e);
    CHECK_OK(tk_oauth_consent_covers(db, tenant, id, client, ab, &cov, &e), &e);
    CHECK(cov);
    /* another tenant's view: nothing */
    CHECK_OK(tk_oauth_consent_covers(db, other, id, client, a, &cov, &e), &e);
    CHECK(!cov);
    json_t *d = NULL;
    CHECK_OK(tk_db_exec(db,
                        "INSERT INTO oauth_scopes (id, tenant_id, name, description, created_at, "
                        "updated_at) VALUES (?, ?, 'read', 'Read <things>', ?, ?)",
                        TK_ARGS(TK_TEXT(sid), TK_TEXT(tenant), TK_INT(now), TK_INT(now)), NULL, &e),
             &e);
    if (CHECK_OK(tk_oauth_scope_describe(db, tenant, ab, &d, &e), &e)) {
        CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(d, 0), "description")),
                     "Read <things>");
        CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(d, 1), "description")), "");
    }
    json_decref(d);
    json_decref(a);
    json_decref(ab);
    json_decref(b);
out:
    json_decref(o);
    tk_store_put(db);
    tk_keyring_free(k);
}
