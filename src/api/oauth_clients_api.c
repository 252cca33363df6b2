/* oauth_clients_api.c: the HTTP side of OAuth clients (issue 15 item 2):
 * /v1/oauth/scopes and /v1/oauth/clients for operators, client
 * resolution and authentication for the token, introspection and
 * revocation endpoints (oauth_api.h), and dynamic registration (RFC 7591,
 * RFC 7592) at /oauth2/register.
 *
 * Client authentication without a store read: the secret goes through the
 * authentication cache (tk_api_issued_lookup, kind OAuth client: the keyed
 * hash is the key, so the check is a constant-time HMAC and a table hit),
 * and the client's metadata through a small cache of its own, keyed by
 * client_id. An entry of that cache is good while the authentication
 * cache's invalidation generation has not moved since it was read: every
 * write to a client bumps its tenant's auth epoch, which moves the
 * generation on this node at once and on the others at their next poll.
 * With auth_cache_size 0 there is no cache and every request reads the
 * store. */
#include "api.h"

#include "../common/log.h"
#include "../common/text.h"
#include "../events/events.h"
#include "../oauth/oclients.h"
#include "../http/hostcheck.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CACHE_SLOTS 512
#define CACHE_LOCKS 16
#define DCR_BODY_MAX 65536

struct cslot {
    bool used;
    uint64_t gen;
    int64_t until;            /* wall ms after which a metadata document is stale; 0: never */
    struct tk_oauth_client c; /* arrays owned, copied out deep */
};

/* The part's state (app->oauth_cimd). */
struct tk_oauth_cimd {
    pthread_mutex_t mu[CACHE_LOCKS];
    struct cslot *slots;
    struct tk_ratelimit *dcr_limit;
    struct tk_metric *m_auth; /* tokend_oauth_client_auth_total{method, result} */
    struct tk_metric *m_dcr;  /* tokend_oauth_registrations_total{result} */
    atomic_llong hits, misses;
    /* metadata documents: failed fetches remembered briefly, fetches in
     * flight, tokend_oauth_cimd_fetches_total{result} */
    pthread_mutex_t neg_mu;
    struct nslot *neg;
    atomic_int fetching;
    struct tk_metric *m_cimd;
};

#define NEG_SETS 64 /* sets of NEG_WAYS: a URL evicts only from its own set */
#define NEG_WAYS 8
#define NEG_TTL_MS 30000
#define CIMD_MAX_BYTES 5120 /* a metadata document's size at most */
#define CIMD_MAX_FETCHES 32 /* fetches in flight at once */

struct nslot {
    char url[TK_OAUTH_CLIENT_ID_MAX];
    char msg[256];
    int64_t until_mono;
};

static const char *const cimd_results[] = {"ok", "refused", "failed"};
enum { CIMD_OK, CIMD_REFUSED, CIMD_FAILED };

static const char *const auth_methods[] = {"client_secret_basic", "client_secret_post", "none"};
static const char *const auth_results[] = {"ok", "invalid_client", "invalid_request"};
static const char *const dcr_results[] = {"created", "refused", "rate_limited"};
enum { DCR_CREATED, DCR_REFUSED, DCR_LIMITED };

static struct tk_oauth_cimd *state(struct tk_app *app)
{
    if (app->oauth_cimd) return app->oauth_cimd;
    struct tk_oauth_cimd *s = calloc(1, sizeof *s);
    if (!s) tk_fatal("out of memory");
    for (int i = 0; i < CACHE_LOCKS; i++)
        pthread_mutex_init(&s->mu[i], NULL);
    s->slots = calloc(CACHE_SLOTS, sizeof *s->slots);
    if (!s->slots) tk_fatal("out of memory");
    s->dcr_limit = tk_ratelimit_new(app->cfg->oauth_dcr_rate, 60);
    pthread_mutex_init(&s->neg_mu, NULL);
    s->neg = calloc(NEG_SETS * NEG_WAYS, sizeof *s->neg);
    if (!s->neg) tk_fatal("out of memory");
    app->oauth_cimd = s;
    return s;
}

tk_rc tk_api_oauth_clients_metrics(struct tk_app *app, struct tk_err *e)
{
    struct tk_oauth_cimd *s = state(app);
    static const struct tk_dim auth_dims[] = {{"method", auth_methods, 3, NULL, NULL},
                                              {"result", auth_results, 3, NULL, NULL}};
    static const struct tk_dim dcr_dim = {"result", dcr_results, 3, NULL, NULL};
    s->m_auth = tk_metric_counter(app->metrics, "tokend_oauth_client_auth_total",
                                  "OAuth client authentications at the token, introspection and "
                                  "revocation endpoints, by method and result.",
                                  auth_dims, 2, 0, e);
    if (!s->m_auth) return e->rc ? e->rc : TK_EINTERNAL;
    s->m_dcr =
        tk_metric_counter(app->metrics, "tokend_oauth_registrations_total",
                          "Dynamic client registrations (RFC 7591), by result.", &dcr_dim, 1, 0, e);
    if (!s->m_dcr) return e->rc ? e->rc : TK_EINTERNAL;
    static const struct tk_dim cimd_dim = {"result", cimd_results, 3, NULL, NULL};
    s->m_cimd = tk_metric_counter(app->metrics, "tokend_oauth_cimd_fetches_total",
                                  "Client ID metadata document fetches, by result (refused: "
                                  "fetched but not a usable document).",
                                  &cimd_dim, 1, 0, e);
    if (!s->m_cimd) return e->rc ? e->rc : TK_EINTERNAL;
    return TK_OK;
}

tk_rc tk_api_oauth_clients_start(struct tk_app *app, struct tk_err *e)
{
    state(app);
    if (app->cfg->oauth_cimd_allow_loopback && !app->cfg->dev)
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "oauth_cimd_allow_loopback",
                            "oauth_cimd_allow_loopback lets a client_id make this node fetch "
                            "from loopback and private addresses: it is for development only "
                            "and needs --dev");
    if (app->cfg->oauth_cimd_allow_loopback)
        tk_warn("oauth_cimd_allow_loopback is on: metadata documents may be fetched over http "
                "and from loopback and private addresses (development only)");
    return TK_OK;
}

void tk_api_oauth_clients_stop(struct tk_app *app)
{
    struct tk_oauth_cimd *s = app->oauth_cimd;
    if (!s) return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (s->slots[i].used) tk_oauth_client_clear(&s->slots[i].c);
    free(s->slots);
    for (int i = 0; i < CACHE_LOCKS; i++)
        pthread_mutex_destroy(&s->mu[i]);
    tk_ratelimit_free(s->dcr_limit);
    pthread_mutex_destroy(&s->neg_mu);
    free(s->neg);
    free(s);
    app->oauth_cimd = NULL;
}

/* ---- the client cache ---- */

static size_t slot_of(const char *client_id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)client_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % CACHE_SLOTS);
}

static void copy_client(struct tk_oauth_client *dst, const struct tk_oauth_client *src)
{
    *dst = *src;
    dst->redirect_uris = json_deep_copy(src->redirect_uris);
    dst->grant_types = json_deep_copy(src->grant_types);
    dst->scopes = json_deep_copy(src->scopes);
    dst->default_scopes = json_deep_copy(src->default_scopes);
}

static bool cache_get(struct tk_app *app, const char *client_id, struct tk_oauth_client *out)
{
    struct tk_oauth_cimd *s = app->oauth_cimd;
    if (!s || !app->authcache) return false;
    size_t i = slot_of(client_id);
    uint64_t gen = tk_authcache_gen(app->authcache);
    bool hit = false;
    pthread_mutex_lock(&s->mu[i % CACHE_LOCKS]);
    struct cslot *sl = &s->slots[i];
    if (sl->used && sl->gen == gen && !strcmp(sl->c.client_id, client_id) &&
        (!sl->until || tk_now_ms() < sl->until)) {
        copy_client(out, &sl->c);
        hit = true;
    }
    pthread_mutex_unlock(&s->mu[i % CACHE_LOCKS]);
    atomic_fetch_add(hit ? &s->hits : &s->misses, 1);
    return hit;
}

static void cache_put(struct tk_app *app, const struct tk_oauth_client *c, uint64_t gen,
                      int64_t until)
{
    struct tk_oauth_cimd *s = app->oauth_cimd;
    if (!s || !app->authcache || tk_authcache_gen(app->authcache) != gen) return;
    size_t i = slot_of(c->client_id);
    pthread_mutex_lock(&s->mu[i % CACHE_LOCKS]);
    struct cslot *sl = &s->slots[i];
    if (sl->used) tk_oauth_client_clear(&sl->c);
    copy_client(&sl->c, c);
    sl->gen = gen;
    sl->until = until;
    sl->used = true;
    pthread_mutex_unlock(&s->mu[i % CACHE_LOCKS]);
}

static bool client_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n >= TK_OAUTH_CLIENT_ID_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}

/* ---- client ID metadata documents ----
 *
 * A client_id that is a URL names a JSON document that describes the
 * client (draft-ietf-oauth-client-id-metadata-document). The first request
 * that names it parks while the outbound client fetches it (public
 * addresses only, oauth_cimd_timeout, at most CIMD_MAX_BYTES); the answer
 * is checked on the outbound thread, and the request's handler runs again
 * on an HTTP worker with the result at hand (`pending`), where the client
 * is stored as a row of the default tenant (origin metadata_document, so
 * that flows and tokens can refer to it) until oauth_cimd_ttl has passed.
 * A failed fetch is remembered NEG_TTL_MS, so a client_id pointing at a
 * dead or hostile host cannot make every request fetch again. */

struct fetched {
    struct tk_app *app;
    struct tk_parked *p;
    tk_handler handler;
    char url[TK_OAUTH_CLIENT_ID_MAX];
    bool ok;
    char msg[256];
    json_t *spec; /* the document as a spec, when ok */
};

static _Thread_local struct fetched *pending;

static void fetched_free(struct fetched *f)
{
    json_decref(f->spec);
    free(f);
}

static bool is_url(const char *s)
{
    return !strncmp(s, "https://", 8) || !strncmp(s, "http://", 7);
}

/* The URL's form: https (http with the loopback override), a host, a path
 * beyond "/", no fragment, user info or dot segments. */
static tk_rc check_document_url(struct tk_app *app, const char *url, struct tk_err *e)
{
    bool https = !strncmp(url, "https://", 8);
    if (!https && !app->cfg->oauth_cimd_allow_loopback)
        return tk_err_set(e, TK_EINVAL, "invalid_client",
                          "a client_id that is a URL must be https");
    const char *host = url + (https ? 8 : 7);
    const char *slash = strchr(host, '/');
    if (!slash || slash == host || !slash[1])
        return tk_err_set(e, TK_EINVAL, "invalid_client",
                          "a client_id URL must have a host and a path (https://host/path)");
    if (memchr(host, '@', (size_t)(slash - host)) || strchr(url, '#') || strstr(url, "/./") ||
        strstr(url, "/../") || (strlen(url) >= 2 && !strcmp(url + strlen(url) - 2, "/.")) ||
        (strlen(url) >= 3 && !strcmp(url + strlen(url) - 3, "/..")))
        return tk_err_set(e, TK_EINVAL, "invalid_client",
                          "a client_id URL must not have user information, a fragment or dot "
                          "segments");
    return TK_OK;
}

static size_t neg_set(const char *url)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h >> 7) % NEG_SETS * NEG_WAYS;
}

/* Remember a failure of url: its own entry, else a stale one, else the one
 * of its set that ends first. */
static void neg_put(struct tk_oauth_cimd *s, const char *url, const char *msg)
{
    size_t base = neg_set(url), pick = base;
    int64_t now = tk_mono_ms();
    pthread_mutex_lock(&s->neg_mu);
    for (size_t i = base; i < base + NEG_WAYS; i++) {
        if (!strcmp(s->neg[i].url, url) || s->neg[i].until_mono <= now) {
            pick = i;
            break;
        }
        if (s->neg[i].until_mono < s->neg[pick].until_mono) pick = i;
    }
    snprintf(s->neg[pick].url, sizeof s->neg[pick].url, "%s", url);
    snprintf(s->neg[pick].msg, sizeof s->neg[pick].msg, "%s", msg);
    s->neg[pick].until_mono = now + NEG_TTL_MS;
    pthread_mutex_unlock(&s->neg_mu);
}

static bool neg_get(struct tk_oauth_cimd *s, const char *url, char msg[256])
{
    size_t base = neg_set(url);
    bool hit = false;
    int64_t now = tk_mono_ms();
    pthread_mutex_lock(&s->neg_mu);
    for (size_t i = base; i < base + NEG_WAYS && !hit; i++) {
        if (!strcmp(s->neg[i].url, url) && now < s->neg[i].until_mono) {
            snprintf(msg, 256, "%s", s->neg[i].msg);
            hit = true;
        }
    }
    pthread_mutex_unlock(&s->neg_mu);
    return hit;
}

/* Check the document of f (on the outbound thread): f->ok and f->spec, or
 * f->msg saying why not. */
static void parse_document(struct fetched *f, const struct tk_out_result *res)
{
    f->ok = false;
    if (res->error != TK_OUT_OK) {
        snprintf(f->msg, sizeof f->msg, "the client's metadata document could not be fetched (%s)",
                 tk_out_error_name(res->error));
        return;
    }
    if (res->status != 200) {
        snprintf(f->msg, sizeof f->msg,
                 "the client's metadata document URL answered HTTP %ld, not 200", res->status);
        return;
    }
    if (res->body_len > CIMD_MAX_BYTES) {
        snprintf(f->msg, sizeof f->msg,
                 "the client's metadata document is %zu bytes, more than the %d allowed",
                 res->body_len, CIMD_MAX_BYTES);
        return;
    }
    json_error_t je;
    json_t *doc =
        res->body ? json_loadb(res->body, res->body_len, JSON_REJECT_DUPLICATES, &je) : NULL;
    json_t *spec = NULL;
    const char *why = NULL;
    json_t *v;
    if (!json_is_object(doc)) {
        why = "the client's metadata document is not a JSON object";
    } else if (!json_is_string(v = json_object_get(doc, "client_id")) ||
               strcmp(json_string_value(v), f->url) != 0) {
        why = "the metadata document's client_id is not the URL it was fetched from";
    } else if (json_object_get(doc, "client_secret")) {
        why = "a metadata document must not carry a client_secret";
    } else if ((v = json_object_get(doc, "token_endpoint_auth_method")) &&
               (!json_is_string(v) || strcmp(json_string_value(v), "none") != 0)) {
        why = "a metadata document client is public here: token_endpoint_auth_method must be "
              "none (private_key_jwt is not supported)";
    } else if (!json_is_array(v = json_object_get(doc, "redirect_uris")) ||
               json_array_size(v) == 0) {
        why = "the metadata document has no redirect_uris";
    }
    if (!why) {
        spec = json_pack("{s:s, s:s, s:O}", "client_type", "public", "token_endpoint_auth_method",
                         "none", "redirect_uris", v);
        json_t *name = json_object_get(doc, "client_name");
        if (json_is_string(name) && json_string_length(name) <= TK_OAUTH_CLIENT_NAME_MAX)
            json_object_set(spec, "name", name);
        else
            json_object_set_new(spec, "name", json_string("metadata document client"));
        json_t *g = json_object_get(doc, "grant_types");
        if (g)
            json_object_set(spec, "grant_types", g);
        else
            json_object_set_new(spec, "grant_types",
                                json_pack("[s, s]", "authorization_code", "refresh_token"));
        json_t *rt = json_object_get(doc, "response_types");
        size_t i;
        json_t *x;
        if (rt) {
            bool ok = json_is_array(rt);
            json_array_foreach(rt, i, x) ok =
                ok && json_is_string(x) && !strcmp(json_string_value(x), "code");
            if (!ok) why = "the metadata document's response_types must be [\"code\"]";
        }
        json_t *sc = json_object_get(doc, "scope");
        if (!why && sc) {
            if (!json_is_string(sc) || json_string_length(sc) > 4096) {
                why = "the metadata document's scope must be a string of space-separated names";
            } else {
                json_t *a = json_array();
                const char *p = json_string_value(sc);
                while (*p) {
                    while (*p == ' ')
                        p++;
                    const char *end = p;
                    while (*end && *end != ' ')
                        end++;
                    if (end > p) json_array_append_new(a, json_stringn(p, (size_t)(end - p)));
                    p = end;
                }
                json_object_set(spec, "scopes", a);
                json_object_set_new(spec, "default_scopes", a);
            }
        }
        size_t native = 0;
        json_array_foreach(v, i, x) if (json_is_string(x) && tk_oauth_redirect_uri_native(
                                                                 json_string_value(x))) native++;
        json_object_set_new(spec, "application_type",
                            json_string(native == json_array_size(v) ? "native" : "web"));
        struct tk_err e;
        tk_err_clear(&e);
        /* the scopes are checked against the catalogue when stored */
        json_t *probe = json_deep_copy(spec);
        json_object_del(probe, "scopes");
        json_object_del(probe, "default_scopes");
        if (!why && tk_oauth_client_normalize(probe, &e) != TK_OK) {
            snprintf(f->msg, sizeof f->msg, "the metadata document is refused: %.200s", e.msg);
            why = f->msg;
        }
        json_decref(probe);
    }
    json_decref(doc);
    if (why) {
        if (why != f->msg) snprintf(f->msg, sizeof f->msg, "%s", why);
        json_decref(spec);
        return;
    }
    f->spec = spec;
    f->ok = true;
}

static void cimd_event(struct tk_app *app, const char *url, int result, const char *msg)
{
    json_t *d = json_pack("{s:s, s:s}", "url", url, "result", cimd_results[result]);
    struct tk_event ev = {.tenant_id = app->default_tenant,
                          .kind = "oauth",
                          .source = "api",
                          .action = "metadata_fetch",
                          .outcome = result == CIMD_FAILED ? "failed" : "denied",
                          .subject_type = "oauth_client",
                          .message = msg,
                          .detail = d,
                          .latency_us = -1};
    char key[TK_OAUTH_CLIENT_ID_MAX + 32];
    snprintf(key, sizeof key, "cimd %s", url);
    struct tk_err e;
    if (!tk_event_coalesce(&ev, key, 60000) && tk_event_post(&ev, &e) != TK_OK)
        tk_warn("oauth: could not record a failed metadata document fetch: %s", e.msg);
    json_decref(d);
}

/* On an HTTP worker: run the parked request's handler again, with the
 * fetched document at hand. */
static void cimd_rerun(struct tk_req *r, void *arg)
{
    struct fetched *f = arg;
    pending = f;
    f->handler(r);
    pending = NULL;
    fetched_free(f);
}

/* On the outbound thread. */
static void cimd_done(const struct tk_out_result *res, void *arg)
{
    struct fetched *f = arg;
    struct tk_oauth_cimd *s = f->app->oauth_cimd;
    parse_document(f, res);
    int result = f->ok                                           ? CIMD_OK
                 : res->error != TK_OUT_OK || res->status != 200 ? CIMD_FAILED
                                                                 : CIMD_REFUSED;
    if (s->m_cimd) tk_metric_inc(s->m_cimd, (size_t)result);
    if (!f->ok) {
        neg_put(s, f->url, f->msg);
        cimd_event(f->app, f->url, result, f->msg);
    }
    atomic_fetch_sub(&s->fetching, 1);
    if (!tk_parked_resume_with(f->p, cimd_rerun, f)) fetched_free(f);
}

/* Store the fetched document (pending) as the client's row and answer it. */
static tk_rc store_document(struct tk_req *r, struct fetched *f, struct tk_oauth_client *c,
                            struct tk_err *e)
{
    struct tk_app *app = r->app;
    if (!f->ok) return tk_err_set(e, TK_EINVAL, "invalid_client", "%s", f->msg);
    struct tk_db *db = tk_api_db(r);
    if (!db) return tk_err_set(e, TK_EUNAVAIL, "parked", "replied");
    uint64_t gen = tk_authcache_gen(app->authcache);
    int64_t until = tk_now_ms() + (int64_t)app->cfg->oauth_cimd_ttl * 1000;
    json_t *spec = json_deep_copy(f->spec);
    tk_rc rc = TK_OK;
    if (!json_object_get(spec, "scopes")) {
        /* no scope in the document: any of the tenant's catalogue */
        json_t *list = NULL;
        char next[TK_UUID_LEN + 1];
        rc = tk_oauth_scope_list(db, app->default_tenant, NULL, TK_OAUTH_CATALOG_MAX, &list, next,
                                 e);
        json_t *names = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x)
        {
            if (json_array_size(names) < TK_OAUTH_CLIENT_SCOPES_MAX)
                json_array_append(names, json_object_get(x, "name"));
        }
        json_decref(list);
        json_object_set_new(spec, "scopes", names);
    }
    if (rc == TK_OK) rc = tk_db_begin(db, e);
    if (rc == TK_OK)
        rc = tk_oauth_client_put_document(db, app->default_tenant, f->url, spec, until, e);
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    json_decref(spec);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        if (rc == TK_EINVAL || rc == TK_ECONFLICT) {
            char msg[256];
            snprintf(msg, sizeof msg, "the metadata document is refused: %.200s", e->msg);
            neg_put(app->oauth_cimd, f->url, msg);
            return tk_err_set(e, TK_EINVAL, "invalid_client", "%s", msg);
        }
        return rc;
    }
    int64_t exp;
    rc = tk_oauth_client_find_ex(db, f->url, c, &exp, e);
    if (rc == TK_OK) cache_put(app, c, gen, exp);
    return rc;
}

static tk_rc resolve_document(struct tk_req *r, const char *url, struct tk_oauth_client *c,
                              struct tk_err *e)
{
    struct tk_app *app = r->app;
    struct tk_oauth_cimd *s = state(app);
    if (!app->cfg->oauth_cimd)
        return tk_err_set(e, TK_ENOTFOUND, "invalid_client",
                          "client ID metadata documents are off on this server (oauth_cimd)");
    tk_rc rc = check_document_url(app, url, e);
    if (rc != TK_OK) return rc;
    if (pending && !strcmp(pending->url, url)) return store_document(r, pending, c, e);
    if (cache_get(app, url, c)) return TK_OK;
    char msg[256];
    if (neg_get(s, url, msg)) return tk_err_set(e, TK_EINVAL, "invalid_client", "%s", msg);
    uint64_t gen = tk_authcache_gen(app->authcache);
    struct tk_db *db = tk_api_db(r);
    if (!db) return tk_err_set(e, TK_EUNAVAIL, "parked", "replied");
    int64_t exp = 0;
    rc = tk_oauth_client_find_ex(db, url, c, &exp, e);
    if (rc == TK_OK && !strcmp(c->origin, "metadata_document") && exp > tk_now_ms()) {
        cache_put(app, c, gen, exp);
        return TK_OK;
    }
    if (rc == TK_OK && strcmp(c->origin, "metadata_document") != 0) return TK_OK;
    tk_oauth_client_clear(c);
    memset(c, 0, sizeof *c);
    if (rc != TK_OK && rc != TK_ENOTFOUND) return rc;
    /* fetch it */
    if (!app->outbound)
        return tk_err_set(e, TK_EUNAVAIL, "invalid_client", "the outbound client is not running");
    if (atomic_fetch_add(&s->fetching, 1) >= CIMD_MAX_FETCHES) {
        atomic_fetch_sub(&s->fetching, 1);
        return tk_err_set(e, TK_EINVAL, "invalid_client",
                          "too many client metadata documents are being fetched; try again");
    }
    struct fetched *f = calloc(1, sizeof *f);
    if (!f) tk_fatal("out of memory");
    f->app = app;
    f->handler = r->route->handler;
    snprintf(f->url, sizeof f->url, "%s", url);
    f->p = tk_req_park(r, (int64_t)app->cfg->oauth_cimd_timeout * 1000 + 5000);
    if (!f->p) {
        atomic_fetch_sub(&s->fetching, 1);
        free(f);
        return tk_err_set(e, TK_EUNAVAIL, "parked", "replied");
    }
    static const char *const headers[] = {"Accept: application/json"};
    struct tk_out_req q = {.method = "GET",
                           .url = url,
                           .headers = headers,
                           .nheaders = 1,
                           .timeout_ms = app->cfg->oauth_cimd_timeout * 1000,
                           .public_only = !app->cfg->oauth_cimd_allow_loopback};
    struct tk_err se;
    if (tk_out_submit(app->outbound, &q, cimd_done, f, NULL, &se) != TK_OK) {
        atomic_fetch_sub(&s->fetching, 1);
        tk_parked_resume(f->p, 503,
                         json_pack("{s:s, s:s}", "error", "temporarily_unavailable",
                                   "error_description",
                                   "the client's metadata document cannot be fetched now"));
        free(f);
    }
    return tk_err_set(e, TK_EUNAVAIL, "parked", "the request waits for the metadata document");
}

tk_rc tk_api_oauth_client_resolve(struct tk_req *r, const char *client_id,
                                  struct tk_oauth_client *c, struct tk_err *e)
{
    memset(c, 0, sizeof *c);
    if (!client_id_ok(client_id))
        return tk_err_set(e, TK_EINVAL, "invalid_client",
                          "client_id must be 1 to %d printable ASCII characters",
                          TK_OAUTH_CLIENT_ID_MAX - 1);
    if (is_url(client_id)) return resolve_document(r, client_id, c, e);
    struct tk_app *app = r->app;
    state(app);
    if (cache_get(app, client_id, c)) return TK_OK;
    uint64_t gen = tk_authcache_gen(app->authcache);
    struct tk_db *db = tk_api_db(r);
    if (!db) return tk_err_set(e, TK_EUNAVAIL, "parked", "replied");
    tk_rc rc = tk_oauth_client_find(db, client_id, c, e);
    if (rc == TK_OK) cache_put(app, c, gen, 0);
    return rc;
}

/* ---- client authentication ---- */

static void count_auth(struct tk_app *app, int method, int result)
{
    struct tk_oauth_cimd *s = app->oauth_cimd;
    if (!s || !s->m_auth || method < 0) return;
    size_t pos[2] = {(size_t)method, (size_t)result};
    tk_metric_inc(s->m_auth, tk_metric_index(s->m_auth, pos));
}

/* Refuse: 401 invalid_client (WWW-Authenticate when Basic was used) or 400
 * invalid_request; e says why for the caller. */
static tk_rc refuse(struct tk_req *r, int method, bool basic, int status, const char *error,
                    struct tk_err *e)
{
    if (basic) tk_reply_header(r, "WWW-Authenticate", "Basic realm=\"tokend\"");
    tk_oauth_reply_error(r, status, error, e->msg);
    count_auth(r->app, method, status == 400 ? 2 : 1);
    snprintf(e->code, sizeof e->code, "%s", error);
    e->rc = status == 400 ? TK_EINVAL : TK_EAUTH;
    return e->rc;
}

enum { M_BASIC, M_POST, M_NONE };

tk_rc tk_api_oauth_client_auth(struct tk_req *r, const struct tk_form *f, struct tk_oauth_client *c,
                               struct tk_err *e)
{
    memset(c, 0, sizeof *c);
    struct tk_app *app = r->app;
    state(app);
    const char *authz = tk_req_header(r, "Authorization");
    const char *form_id = tk_form_get(f, "client_id");
    const char *form_secret = tk_form_get(f, "client_secret");
    bool basic = authz && !strncasecmp(authz, "Basic ", 6);
    char id[TK_OAUTH_CLIENT_ID_MAX], secret[TK_ISSUED_MAX * 2];
    id[0] = secret[0] = '\0';
    int method;
    tk_rc rc;
    if (authz && !basic) {
        tk_err_set(e, TK_EAUTH, "invalid_client",
                   "the token endpoint takes client authentication as HTTP Basic, "
                   "client_secret_post or client_id alone (public clients), not another "
                   "Authorization scheme");
        return refuse(r, -1, true, 401, "invalid_client", e);
    }
    if (basic) {
        method = M_BASIC;
        if (!tk_oauth_basic_parse(authz + 6, id, sizeof id, secret, sizeof secret)) {
            tk_err_set(e, TK_EAUTH, "invalid_client",
                       "the Basic credentials are not base64 of client_id:client_secret "
                       "(each form-urlencoded, RFC 6749 section 2.3.1) within the size bounds");
            return refuse(r, method, true, 401, "invalid_client", e);
        }
        if (form_secret) {
            tk_wipe(secret, sizeof secret);
            tk_err_set(e, TK_EINVAL, "invalid_request",
                       "the client authenticated twice (HTTP Basic and client_secret in the "
                       "body): use one method");
            return refuse(r, method, false, 400, "invalid_request", e);
        }
        if (form_id && strcmp(form_id, id) != 0) {
            tk_wipe(secret, sizeof secret);
            tk_err_set(e, TK_EINVAL, "invalid_request",
                       "client_id in the body differs from the one of HTTP Basic");
            return refuse(r, method, false, 400, "invalid_request", e);
        }
    } else if (form_secret) {
        method = M_POST;
        if (!form_id) {
            tk_err_set(e, TK_EINVAL, "invalid_request", "client_secret was sent without client_id");
            return refuse(r, method, false, 400, "invalid_request", e);
        }
        snprintf(id, sizeof id, "%s", form_id);
        if (strlen(form_secret) >= sizeof secret) {
            tk_err_set(e, TK_EAUTH, "invalid_client", "client_secret is too long");
            return refuse(r, method, false, 401, "invalid_client", e);
        }
        snprintf(secret, sizeof secret, "%s", form_secret);
    } else if (form_id) {
        method = M_NONE;
        snprintf(id, sizeof id, "%s", form_id);
    } else {
        tk_err_set(e, TK_EAUTH, "invalid_client",
                   "no client authentication: send HTTP Basic, client_id and client_secret in "
                   "the body, or client_id alone for a public client");
        return refuse(r, -1, false, 401, "invalid_client", e);
    }
    rc = tk_api_oauth_client_resolve(r, id, c, e);
    if (rc == TK_EUNAVAIL && !strcmp(e->code, "parked")) {
        tk_wipe(secret, sizeof secret);
        return rc;
    }
    if (rc != TK_OK) {
        tk_wipe(secret, sizeof secret);
        tk_oauth_client_clear(c);
        if (rc != TK_ENOTFOUND && rc != TK_EINVAL) {
            /* the store: not the client's fault */
            tk_oauth_reply_error(r, 503, "temporarily_unavailable", e->msg);
            return rc;
        }
        return refuse(r, method, basic, 401, "invalid_client", e);
    }
    const char *mname = auth_methods[method];
    if (strcmp(c->status, "active") != 0) {
        tk_err_set(e, TK_EAUTH, "invalid_client", "the OAuth client '%.80s' is disabled",
                   c->client_id);
    } else if (strcmp(c->auth_method, mname) != 0) {
        tk_err_set(e, TK_EAUTH, "invalid_client",
                   "the OAuth client '%.80s' is registered for %s, and authenticated with %s",
                   c->client_id, c->auth_method, mname);
    } else if (method != M_NONE) {
        size_t sn = strlen(secret);
        struct tk_principal p;
        if (tk_issued_check(TK_KIND_OAUTH_SECRET, secret, sn, e) != TK_OK) {
            char why[sizeof e->msg];
            snprintf(why, sizeof why, "%s", e->msg);
            tk_err_set(e, TK_EAUTH, "invalid_client", "the client secret is malformed: %s", why);
        } else {
            rc = tk_api_issued_lookup(r, TK_PRINCIPAL_OAUTH_CLIENT, secret, sn, &p, e);
            if (rc != TK_OK && rc != TK_EAUTH) { /* replied (sealed, store) */
                tk_wipe(secret, sizeof secret);
                tk_oauth_client_clear(c);
                return rc;
            }
            if (rc == TK_EAUTH) {
                char why[sizeof e->msg];
                snprintf(why, sizeof why, "%s", e->msg);
                tk_err_set(e, TK_EAUTH, "invalid_client", "%s", why);
            } else if (strcmp(p.id, c->id) != 0) {
                tk_err_set(e, TK_EAUTH, "invalid_client",
                           "the client secret does not belong to the OAuth client '%.80s'",
                           c->client_id);
            } else {
                e->rc = TK_OK;
            }
        }
        if (rc != TK_OK || e->rc != TK_OK) rc = TK_EAUTH;
    } else {
        rc = TK_OK;
        e->rc = TK_OK;
    }
    tk_wipe(secret, sizeof secret);
    if (strcmp(c->status, "active") != 0 || strcmp(c->auth_method, mname) != 0) rc = TK_EAUTH;
    if (rc != TK_OK) {
        tk_oauth_client_clear(c);
        return refuse(r, method, basic, 401, "invalid_client", e);
    }
    count_auth(app, method, 0);
    return TK_OK;
}

/* ---- /v1/oauth/scopes ---- */

static const char *path_id(struct tk_req *r, const char *what)
{
    const char *id = tk_req_param(r, "id");
    if (tk_uuid_valid(id)) return id;
    struct tk_err e;
    tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no %s with id %.40s", what, id ? id : "");
    tk_api_reply_error(r, &e, NULL);
    return NULL;
}

/* Run fn in a transaction of the request's connection; on success commit
 * and, if *seq moved, drop this node's cached authentications of the
 * tenant. false after replying the error. */
static bool tx_end(struct tk_req *r, struct tk_db *db, tk_rc rc, struct tk_err *e,
                   const char *tenant_id, int64_t seq)
{
    if (rc == TK_OK) rc = tk_db_commit(db, e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, e, NULL);
        return false;
    }
    if (seq > 0) tk_api_authcache_changed(r->app, tenant_id, seq);
    return true;
}

static bool string_member(struct tk_req *r, json_t *body, const char *k, bool required,
                          const char **out)
{
    json_t *v = json_object_get(body, k);
    *out = NULL;
    struct tk_err e;
    if (!v && required) {
        tk_err_field(&e, TK_EINVAL, "missing_field", k, "%s is required", k);
    } else if (v && (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v)))) {
        tk_err_field(&e, TK_EINVAL, "invalid_field", k, "%s must be a string without NUL", k);
    } else {
        *out = v ? json_string_value(v) : NULL;
        return true;
    }
    tk_api_reply_error(r, &e, NULL);
    return false;
}

void tk_h_oauth_scopes_list(struct tk_req *r)
{
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_oauth_scope_list(db, tk_api_principal(r)->tenant_id, cursor, (int)limit, &a, next, &e) !=
        TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "scopes", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

void tk_h_oauth_scopes_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"name", "description", NULL};
    const char *name, *desc;
    if (!tk_api_only_members(r, body, allowed) || !string_member(r, body, "name", true, &name) ||
        !string_member(r, body, "description", false, &desc)) {
        json_decref(body);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_oauth_scope_create(db, p->tenant_id, name, desc ? desc : "", &o, &e);
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:s}", "name", name);
        rc = tk_api_event_in(r, "oauth", "scope_create", "ok", "oauth_scope",
                             json_string_value(json_object_get(o, "id")), "OAuth scope created", d,
                             &e);
        json_decref(d);
    }
    json_decref(body);
    if (!tx_end(r, db, rc, &e, p->tenant_id, 0)) {
        json_decref(o);
        return;
    }
    tk_reply_json(r, 201, o);
}

void tk_h_oauth_scopes_update(struct tk_req *r)
{
    const char *id = path_id(r, "scope");
    if (!id) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    static const char *const allowed[] = {"description", NULL};
    const char *desc;
    if (!tk_api_only_members(r, body, allowed) ||
        !string_member(r, body, "description", false, &desc)) {
        json_decref(body);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_oauth_scope_update(db, p->tenant_id, id, desc, &o, &e);
    if (rc == TK_OK)
        rc = tk_api_event_in(r, "oauth", "scope_update", "ok", "oauth_scope", id,
                             "OAuth scope updated", NULL, &e);
    json_decref(body);
    if (!tx_end(r, db, rc, &e, p->tenant_id, 0)) {
        json_decref(o);
        return;
    }
    tk_reply_json(r, 200, o);
}

void tk_h_oauth_scopes_delete(struct tk_req *r)
{
    const char *id = path_id(r, "scope");
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_oauth_scope_delete(db, p->tenant_id, id, &e);
    if (rc == TK_OK)
        rc = tk_api_event_in(r, "oauth", "scope_delete", "ok", "oauth_scope", id,
                             "OAuth scope deleted", NULL, &e);
    if (!tx_end(r, db, rc, &e, p->tenant_id, 0)) return;
    tk_reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
}

/* ---- /v1/oauth/clients ---- */

static const char *const client_members[] = {"name",
                                             "client_type",
                                             "application_type",
                                             "token_endpoint_auth_method",
                                             "redirect_uris",
                                             "grant_types",
                                             "scopes",
                                             "default_scopes",
                                             "rotate_refresh",
                                             "status",
                                             NULL};

static json_t *client_detail(json_t *o, json_t *body)
{
    json_t *given = json_array();
    const char *k;
    json_t *v;
    if (body) json_object_foreach(body, k, v) json_array_append_new(given, json_string(k));
    return json_pack("{s:O?, s:O?, s:O?, s:O?, s:o}", "client_id", json_object_get(o, "client_id"),
                     "name", json_object_get(o, "name"), "client_type",
                     json_object_get(o, "client_type"), "status", json_object_get(o, "status"),
                     "members", given);
}

/* Reply o (stolen) with the secret shown once. */
static void reply_with_secret(struct tk_req *r, int status, json_t *o, char secret[TK_ISSUED_MAX])
{
    if (secret[0]) json_object_set_new(o, "client_secret", json_string(secret));
    tk_wipe(secret, TK_ISSUED_MAX);
    tk_reply_json(r, status, o);
}

void tk_h_oauth_clients_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    if (!tk_api_only_members(r, body, client_members)) {
        json_decref(body);
        return;
    }
    struct tk_err e;
    json_t *spec = json_deep_copy(body);
    if (tk_oauth_client_normalize(spec, &e) != TK_OK) {
        json_decref(spec);
        json_decref(body);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(spec);
        json_decref(body);
        return;
    }
    const struct tk_principal *p = tk_api_principal(r);
    char id[TK_UUID_LEN + 1], secret[TK_ISSUED_MAX] = "";
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_oauth_client_create(db, ((struct tk_app *)r->app)->keyring, p->tenant_id, spec,
                                    "operator", secret, NULL, id, &o, &e);
    if (rc == TK_OK) {
        json_t *d = client_detail(o, body);
        rc = tk_api_event_in(r, "oauth", "client_create", "ok", "oauth_client", id,
                             "OAuth client created", d, &e);
        json_decref(d);
    }
    json_decref(spec);
    json_decref(body);
    if (!tx_end(r, db, rc, &e, p->tenant_id, 0)) {
        tk_wipe(secret, sizeof secret);
        json_decref(o);
        return;
    }
    reply_with_secret(r, 201, o, secret);
}

void tk_h_oauth_clients_list(struct tk_req *r)
{
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_oauth_client_list(db, tk_api_principal(r)->tenant_id, cursor, (int)limit, &a, next,
                             &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "clients", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

void tk_h_oauth_clients_get(struct tk_req *r)
{
    const char *id = path_id(r, "OAuth client");
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    json_t *o;
    if (tk_oauth_client_get(db, tk_api_principal(r)->tenant_id, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}

/* Merge an update body into the client's spec: a change of client_type
 * without a method takes the new type's default method (and a public
 * client's rotate_refresh true). */
static void merge_spec(json_t *spec, json_t *body)
{
    json_t *ct = json_object_get(body, "client_type");
    if (ct && !json_equal(ct, json_object_get(spec, "client_type"))) {
        if (!json_object_get(body, "token_endpoint_auth_method"))
            json_object_del(spec, "token_endpoint_auth_method");
        if (!json_object_get(body, "rotate_refresh")) json_object_del(spec, "rotate_refresh");
        if (!json_object_get(body, "grant_types") && json_is_string(ct) &&
            !strcmp(json_string_value(ct), "public"))
            json_object_del(spec, "grant_types");
    }
    json_object_update(spec, body);
}

/* A disabled or retired client keeps no grant: its refresh families are
 * revoked, and with them the access tokens issued from them (revocation
 * rows). Its client_credentials tokens live out their exp. */
static tk_rc revoke_grants(struct tk_req *r, struct tk_db *db, const char *tenant_id,
                           const char *id, struct tk_err *e)
{
    struct tk_app *app = r->app;
    int64_t now = tk_now_ms(), n = 0;
    return tk_oauth_revoke_client(db, tenant_id, id, now,
                                  now + (int64_t)app->cfg->oauth_access_token_ttl * 1000, &n, e);
}

void tk_h_oauth_clients_update(struct tk_req *r)
{
    const char *id = path_id(r, "OAuth client");
    if (!id) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    if (!tk_api_only_members(r, body, client_members)) {
        json_decref(body);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(body);
        return;
    }
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    char secret[TK_ISSUED_MAX] = "";
    json_t *o = NULL, *spec = NULL;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "oauth_clients", id, &e);
    if (rc == TK_OK) rc = tk_oauth_client_spec(db, p->tenant_id, id, &spec, &e);
    if (rc == TK_OK) {
        merge_spec(spec, body);
        rc = tk_oauth_client_update(db, ((struct tk_app *)r->app)->keyring, p->tenant_id, id, spec,
                                    secret, &seq, &o, &e);
    }
    const char *status = rc == TK_OK ? json_string_value(json_object_get(spec, "status")) : NULL;
    if (status && !strcmp(status, "disabled")) rc = revoke_grants(r, db, p->tenant_id, id, &e);
    if (rc == TK_OK) {
        json_t *d = client_detail(o, body);
        rc = tk_api_event_in(r, "oauth", "client_update", "ok", "oauth_client", id,
                             "OAuth client updated", d, &e);
        json_decref(d);
    }
    json_decref(spec);
    json_decref(body);
    if (!tx_end(r, db, rc, &e, p->tenant_id, seq)) {
        tk_wipe(secret, sizeof secret);
        json_decref(o);
        return;
    }
    reply_with_secret(r, 200, o, secret);
}

void tk_h_oauth_clients_delete(struct tk_req *r)
{
    const char *id = path_id(r, "OAuth client");
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_oauth_client_delete(db, p->tenant_id, id, &seq, &e);
    if (rc == TK_OK)
        rc = tk_api_event_in(r, "oauth", "client_delete", "ok", "oauth_client", id,
                             "OAuth client deleted", NULL, &e);
    if (!tx_end(r, db, rc, &e, p->tenant_id, seq)) return;
    tk_reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
}

void tk_h_oauth_clients_rotate_secret(struct tk_req *r)
{
    const char *id = path_id(r, "OAuth client");
    if (!id) return;
    if (r->body_len) {
        json_t *body = tk_req_json(r);
        if (!body) return;
        static const char *const none[] = {NULL};
        bool ok = tk_api_only_members(r, body, none);
        json_decref(body);
        if (!ok) return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    char secret[TK_ISSUED_MAX] = "";
    json_t *o = NULL;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_oauth_client_rotate_secret(db, ((struct tk_app *)r->app)->keyring, p->tenant_id, id,
                                           secret, &seq, &o, &e);
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:O?}", "secret_preview", json_object_get(o, "secret_preview"));
        rc = tk_api_event_in(r, "oauth", "client_rotate_secret", "ok", "oauth_client", id,
                             "OAuth client secret rotated (the old one stopped working)", d, &e);
        json_decref(d);
    }
    if (!tx_end(r, db, rc, &e, p->tenant_id, seq)) {
        tk_wipe(secret, sizeof secret);
        json_decref(o);
        return;
    }
    reply_with_secret(r, 200, o, secret);
}

/* ---- dynamic registration (RFC 7591, RFC 7592) ---- */

struct dcr {
    struct tk_req *r;
    char tenant[TK_UUID_LEN + 1];
    char remote[TK_ADDR_MAX];
};

/* Record a registration's event (kind oauth, outcome ok) in db's open
 * transaction: the tenant is the client's, not a principal's. */
static tk_rc dcr_event_in(struct tk_req *r, struct tk_db *db, const char *tenant,
                          const char *action, const char *id, const char *message, json_t *det,
                          struct tk_err *e)
{
    struct tk_event ev = {.tenant_id = tenant,
                          .trace_id = r->request_id,
                          .kind = "oauth",
                          .source = "api",
                          .action = action,
                          .outcome = "ok",
                          .subject_type = "oauth_client",
                          .subject_id = id,
                          .message = message,
                          .detail = det,
                          .latency_us = -1};
    return tk_event_emit_in(db, &ev, e);
}

/* Record a refused registration (kind oauth, outcome denied), coalesced
 * per reason and address a minute. */
static void dcr_refused(struct dcr *d, const char *action, const char *reason, const char *message)
{
    struct tk_app *app = d->r->app;
    json_t *det = json_pack("{s:s, s:s}", "reason", reason, "remote", d->remote);
    struct tk_event ev = {.tenant_id = d->tenant[0] ? d->tenant : app->default_tenant,
                          .trace_id = d->r->request_id,
                          .kind = "oauth",
                          .source = "api",
                          .action = action,
                          .outcome = "denied",
                          .subject_type = "oauth_client",
                          .message = message,
                          .detail = det,
                          .latency_us = -1};
    char key[160];
    snprintf(key, sizeof key, "dcr %s %s %s", action, reason, d->remote);
    struct tk_err e;
    if (!tk_event_coalesce(&ev, key, 60000) && tk_event_post(&ev, &e) != TK_OK)
        tk_warn("oauth: could not record a refused registration: %s", e.msg);
    json_decref(det);
}

static void dcr_count(struct tk_app *app, int result)
{
    struct tk_oauth_cimd *s = app->oauth_cimd;
    if (s && s->m_dcr) tk_metric_inc(s->m_dcr, (size_t)result);
}

static void dcr_error(struct dcr *d, int status, const char *error, const char *action,
                      const char *msg)
{
    dcr_refused(d, action, error, msg);
    dcr_count(d->r->app, DCR_REFUSED);
    tk_oauth_reply_error(d->r, status, error, msg);
}

/* The RFC 7591 metadata of body as a spec (new reference), or NULL with
 * *error (invalid_client_metadata | invalid_redirect_uri) and e. */
static json_t *dcr_spec(json_t *body, const char **error, struct tk_err *e)
{
    *error = "invalid_client_metadata";
    json_t *spec = json_object();
    json_t *v;
    if ((v = json_object_get(body, "redirect_uris"))) json_object_set(spec, "redirect_uris", v);
    const char *method = "client_secret_basic";
    if ((v = json_object_get(body, "token_endpoint_auth_method"))) {
        if (!json_is_string(v)) goto bad_method;
        method = json_string_value(v);
        if (strcmp(method, "client_secret_basic") && strcmp(method, "client_secret_post") &&
            strcmp(method, "none")) {
        bad_method:
            tk_err_field(e, TK_EINVAL, "invalid_field", "token_endpoint_auth_method",
                         "token_endpoint_auth_method must be client_secret_basic, "
                         "client_secret_post or none");
            json_decref(spec);
            return NULL;
        }
    }
    json_object_set_new(spec, "token_endpoint_auth_method", json_string(method));
    json_object_set_new(spec, "client_type",
                        json_string(!strcmp(method, "none") ? "public" : "confidential"));
    if ((v = json_object_get(body, "grant_types")))
        json_object_set(spec, "grant_types", v);
    else
        json_object_set_new(spec, "grant_types", json_pack("[s]", "authorization_code"));
    if ((v = json_object_get(body, "response_types"))) {
        size_t i;
        json_t *x;
        bool ok = json_is_array(v) && json_array_size(v) > 0;
        json_array_foreach(v, i, x) ok =
            ok && json_is_string(x) && !strcmp(json_string_value(x), "code");
        if (!ok) {
            tk_err_field(e, TK_EINVAL, "invalid_field", "response_types",
                         "response_types must be [\"code\"] (the only response type here)");
            json_decref(spec);
            return NULL;
        }
    }
    if ((v = json_object_get(body, "client_name"))) {
        if (!json_is_string(v)) {
            tk_err_field(e, TK_EINVAL, "invalid_field", "client_name",
                         "client_name must be a string");
            json_decref(spec);
            return NULL;
        }
        json_object_set(spec, "name", v);
    } else {
        json_object_set_new(spec, "name", json_string("dynamically registered client"));
    }
    if ((v = json_object_get(body, "scope"))) {
        if (!json_is_string(v) || json_string_length(v) > 8192) {
            tk_err_field(e, TK_EINVAL, "invalid_field", "scope",
                         "scope must be a string of space-separated scope names");
            json_decref(spec);
            return NULL;
        }
        json_t *a = json_array();
        const char *s = json_string_value(v);
        while (*s) {
            while (*s == ' ')
                s++;
            const char *end = s;
            while (*end && *end != ' ')
                end++;
            if (end > s) {
                char name[TK_OAUTH_SCOPE_MAX + 2];
                snprintf(name, sizeof name, "%.*s",
                         (int)(end - s > TK_OAUTH_SCOPE_MAX + 1 ? TK_OAUTH_SCOPE_MAX + 1 : end - s),
                         s);
                json_t *n = json_string(name);
                size_t i;
                json_t *x;
                bool dup = false;
                json_array_foreach(a, i, x) dup = dup || json_equal(x, n);
                if (!n || dup)
                    json_decref(n);
                else
                    json_array_append_new(a, n);
            }
            s = end;
        }
        json_object_set(spec, "scopes", a);
        json_object_set_new(spec, "default_scopes", a);
    }
    if ((v = json_object_get(body, "application_type"))) {
        json_object_set(spec, "application_type", v);
    } else {
        /* RFC 7591 says web; a client whose every redirect URI is a
         * loopback or private-use one is a native app (MCP clients,
         * desktop apps), which is what RFC 8252 allows these for */
        json_t *ru = json_object_get(spec, "redirect_uris");
        size_t i, native = 0;
        json_t *x;
        json_array_foreach(ru, i, x) if (json_is_string(x) && tk_oauth_redirect_uri_native(
                                                                  json_string_value(x))) native++;
        json_object_set_new(
            spec, "application_type",
            json_string(native && native == json_array_size(ru) ? "native" : "web"));
    }
    if (tk_oauth_client_normalize(spec, e) != TK_OK) {
        if (e->field[0] && !strcmp(e->field, "redirect_uris")) *error = "invalid_redirect_uri";
        json_decref(spec);
        return NULL;
    }
    return spec;
}

/* The registration reply of client o. */
static json_t *dcr_json(struct tk_app *app, json_t *o)
{
    const char *cid = json_string_value(json_object_get(o, "client_id"));
    char uri[700];
    snprintf(uri, sizeof uri, "%s/oauth2/register/%s", tk_api_public_url(app), cid);
    int64_t issued = 0;
    tk_time_parse(json_string_value(json_object_get(o, "created_at")), &issued);
    json_t *out = json_pack("{s:O, s:I, s:O, s:O, s:O, s:[s], s:O, s:O, s:s}", "client_id",
                            json_object_get(o, "client_id"), "client_id_issued_at",
                            (json_int_t)(issued / 1000), "client_name", json_object_get(o, "name"),
                            "redirect_uris", json_object_get(o, "redirect_uris"), "grant_types",
                            json_object_get(o, "grant_types"), "response_types", "code",
                            "token_endpoint_auth_method",
                            json_object_get(o, "token_endpoint_auth_method"), "application_type",
                            json_object_get(o, "application_type"), "registration_client_uri", uri);
    json_t *sc = json_object_get(o, "scopes");
    if (json_array_size(sc)) {
        char buf[8192] = "";
        size_t n = 0, i;
        json_t *x;
        json_array_foreach(sc, i, x)
        {
            int w = snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", json_string_value(x));
            if (w > 0 && (size_t)w < sizeof buf - n) n += (size_t)w;
        }
        json_object_set_new(out, "scope", json_string(buf));
    }
    if (!strcmp(json_string_value(json_object_get(o, "client_type")), "confidential"))
        json_object_set_new(out, "client_secret_expires_at", json_integer(0));
    return out;
}

/* The body as a JSON object, answered in RFC 7591's shape when it is not. */
static json_t *dcr_body(struct dcr *d, const char *action)
{
    struct tk_req *r = d->r;
    if (!tk_media_is_json(tk_req_header(r, "Content-Type"))) {
        dcr_error(d, 400, "invalid_client_metadata", action,
                  "the body must be a JSON object sent with Content-Type: application/json");
        return NULL;
    }
    if (r->body_len > DCR_BODY_MAX) {
        dcr_error(d, 400, "invalid_client_metadata", action, "the body exceeds 64 KiB");
        return NULL;
    }
    json_error_t je;
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        dcr_error(d, 400, "invalid_client_metadata", action,
                  "the body is not a JSON object (or has a member twice)");
        return NULL;
    }
    return j;
}

/* Count one registration request of d's address against oauth_dcr_rate:
 * false after replying 429. */
static bool dcr_rate(struct dcr *d)
{
    struct tk_req *r = d->r;
    struct tk_app *app = r->app;
    struct tk_ratelimit_verdict v;
    if (tk_ratelimit_fail(state(app)->dcr_limit, d->remote, 0, tk_now_ms(), &v)) return true;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", v.retry_s);
    tk_reply_header(r, "Retry-After", ra);
    if (v.record)
        dcr_refused(d, "register", "rate_limited",
                    "too many registration requests from one address");
    dcr_count(app, DCR_LIMITED);
    tk_oauth_reply_error(r, 429, "rate_limited",
                         "too many registration requests from this address (oauth_dcr_rate "
                         "per minute)");
    return false;
}

/* Who may register: false after replying. open: anybody, every request
 * counted against oauth_dcr_rate; token: an operator token, and only the
 * requests without a good one are counted. */
static bool dcr_admit(struct dcr *d)
{
    struct tk_req *r = d->r;
    struct tk_app *app = r->app;
    state(app);
    tk_req_remote(r, d->remote, sizeof d->remote);
    if (!strcmp(app->cfg->oauth_dcr, "off")) {
        tk_oauth_reply_error(r, 404, "not_found",
                             "dynamic client registration is off on this server (oauth_dcr)");
        return false;
    }
    if (!strcmp(app->cfg->oauth_dcr, "open")) {
        if (!dcr_rate(d)) return false;
        snprintf(d->tenant, sizeof d->tenant, "%s", app->default_tenant);
        return true;
    }
    /* token: an operator token of the tenant with a write role */
    const char *tok;
    size_t len;
    struct tk_err e;
    struct tk_principal p;
    tk_rc rc = tk_optoken_parse(tk_req_header(r, "Authorization"), &tok, &len, &e);
    if (rc == TK_OK) rc = tk_issued_check(TK_KIND_OPERATOR, tok, len, &e);
    if (rc == TK_OK) {
        rc = tk_api_issued_lookup(r, TK_PRINCIPAL_OPERATOR_TOKEN, tok, len, &p, &e);
        if (rc != TK_OK && rc != TK_EAUTH) return false; /* replied */
    }
    if (rc == TK_OK && strcmp(p.role, "admin") != 0 && strcmp(p.role, "operator") != 0) {
        rc = TK_EFORBIDDEN;
        snprintf(e.msg, sizeof e.msg,
                 "registering a client needs an operator token with the role admin or operator");
    }
    if (rc != TK_OK) {
        if (!dcr_rate(d)) return false;
        tk_reply_header(r, "WWW-Authenticate", "Bearer realm=\"tokend\", error=\"invalid_token\"");
        dcr_error(d, 401, "invalid_token", "register", e.msg);
        return false;
    }
    snprintf(d->tenant, sizeof d->tenant, "%s", p.tenant_id);
    return true;
}

void tk_h_oauth_register(struct tk_req *r)
{
    struct dcr d = {.r = r};
    if (!dcr_admit(&d)) return;
    json_t *body = dcr_body(&d, "register");
    if (!body) return;
    struct tk_err e;
    tk_err_clear(&e);
    const char *error;
    json_t *spec = dcr_spec(body, &error, &e);
    json_decref(body);
    if (!spec) {
        dcr_error(&d, 400, error, "register", e.msg);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        json_decref(spec);
        return;
    }
    struct tk_app *app = r->app;
    char id[TK_UUID_LEN + 1], secret[TK_ISSUED_MAX] = "", reg[TK_ISSUED_MAX] = "";
    json_t *o = NULL;
    int64_t n = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "tenants", d.tenant, &e);
    if (rc == TK_OK) rc = tk_oauth_client_count(db, d.tenant, "dynamic", &n, &e);
    if (rc == TK_OK && n >= app->cfg->oauth_dcr_max_clients)
        rc = tk_err_set(&e, TK_EFORBIDDEN, "registration_limit",
                        "the tenant holds %lld dynamically registered clients, the most "
                        "oauth_dcr_max_clients allows",
                        (long long)n);
    if (rc == TK_OK)
        rc = tk_oauth_client_create(db, app->keyring, d.tenant, spec, "dynamic", secret, reg, id,
                                    &o, &e);
    if (rc == TK_OK) {
        json_t *det = client_detail(o, NULL);
        json_object_set_new(det, "remote", json_string(d.remote));
        json_object_set_new(det, "mode", json_string(app->cfg->oauth_dcr));
        rc = dcr_event_in(r, db, d.tenant, "register", id,
                          "OAuth client registered dynamically (RFC 7591)", det, &e);
        json_decref(det);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(spec);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(secret, sizeof secret);
        tk_wipe(reg, sizeof reg);
        json_decref(o);
        if (rc == TK_EINVAL) {
            dcr_error(&d, 400, "invalid_client_metadata", "register", e.msg);
        } else if (rc == TK_EFORBIDDEN) {
            dcr_error(&d, 403, e.code, "register", e.msg);
        } else {
            tk_oauth_reply_error(r, 503, "temporarily_unavailable", e.msg);
        }
        return;
    }
    json_t *out = dcr_json(app, o);
    json_decref(o);
    if (secret[0]) json_object_set_new(out, "client_secret", json_string(secret));
    json_object_set_new(out, "registration_access_token", json_string(reg));
    tk_wipe(secret, sizeof secret);
    tk_wipe(reg, sizeof reg);
    dcr_count(app, DCR_CREATED);
    tk_oauth_reply_json(r, 201, out);
}

/* RFC 7592: the client of the path whose registration access token is the
 * Bearer token; false after replying 401 invalid_token. */
static bool dcr_manage(struct dcr *d, const char *action, char id_out[TK_UUID_LEN + 1])
{
    struct tk_req *r = d->r;
    struct tk_app *app = r->app;
    tk_req_remote(r, d->remote, sizeof d->remote);
    if (!strcmp(app->cfg->oauth_dcr, "off")) {
        tk_oauth_reply_error(r, 404, "not_found",
                             "dynamic client registration is off on this server (oauth_dcr)");
        return false;
    }
    const char *cid = tk_req_param(r, "id");
    const char *h = tk_req_header(r, "Authorization");
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = TK_EAUTH;
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        const char *tok = h + 7;
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        rc = tk_issued_check(TK_KIND_REGISTRATION, tok, len, &e);
        char hash[TK_HASH_HEX];
        if (rc == TK_OK) rc = tk_keyring_hash(app->keyring, tok, len, hash, NULL, &e);
        struct tk_db *db = rc == TK_OK ? tk_api_db(r) : NULL;
        if (rc == TK_OK && !db) return false; /* replied */
        if (rc == TK_OK && client_id_ok(cid))
            rc = tk_oauth_client_by_registration(db, cid, hash, d->tenant, id_out, &e);
        else if (rc == TK_OK)
            rc = TK_ENOTFOUND;
        if (rc != TK_OK && rc != TK_ENOTFOUND && rc != TK_EINVAL && rc != TK_EAUTH) {
            tk_oauth_reply_error(r, 503, "temporarily_unavailable", e.msg);
            return false;
        }
    } else {
        snprintf(e.msg, sizeof e.msg,
                 "send the registration access token (tkg_) as Authorization: Bearer");
    }
    if (rc != TK_OK) {
        if (!dcr_rate(d)) return false;
        tk_reply_header(r, "WWW-Authenticate", "Bearer realm=\"tokend\", error=\"invalid_token\"");
        dcr_error(d, 401, "invalid_token", action,
                  "the registration access token is missing, malformed, or not this client's");
        return false;
    }
    return true;
}

void tk_h_oauth_register_get(struct tk_req *r)
{
    struct dcr d = {.r = r};
    char id[TK_UUID_LEN + 1];
    if (!dcr_manage(&d, "registration_read", id)) return;
    struct tk_err e;
    json_t *o;
    if (tk_oauth_client_get(r->db, d.tenant, id, &o, &e) != TK_OK) {
        tk_oauth_reply_error(r, 503, "temporarily_unavailable", e.msg);
        return;
    }
    json_t *out = dcr_json(r->app, o);
    json_decref(o);
    tk_oauth_reply_json(r, 200, out);
}

void tk_h_oauth_register_put(struct tk_req *r)
{
    struct dcr d = {.r = r};
    char id[TK_UUID_LEN + 1];
    if (!dcr_manage(&d, "registration_update", id)) return;
    json_t *body = dcr_body(&d, "registration_update");
    if (!body) return;
    json_t *cid = json_object_get(body, "client_id");
    if (cid && (!json_is_string(cid) || strcmp(json_string_value(cid), tk_req_param(r, "id")))) {
        json_decref(body);
        dcr_error(&d, 400, "invalid_client_metadata", "registration_update",
                  "client_id in the body must be the client's own");
        return;
    }
    struct tk_err e;
    tk_err_clear(&e);
    const char *error;
    json_t *spec = dcr_spec(body, &error, &e);
    json_decref(body);
    if (!spec) {
        dcr_error(&d, 400, error, "registration_update", e.msg);
        return;
    }
    struct tk_db *db = r->db;
    char secret[TK_ISSUED_MAX] = "";
    json_t *o = NULL, *cur = NULL;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "oauth_clients", id, &e);
    if (rc == TK_OK) rc = tk_oauth_client_spec(db, d.tenant, id, &cur, &e);
    if (rc == TK_OK) {
        /* the status stays the operator's */
        json_object_set(spec, "status", json_object_get(cur, "status"));
        rc = tk_oauth_client_update(db, ((struct tk_app *)r->app)->keyring, d.tenant, id, spec,
                                    secret, &seq, &o, &e);
    }
    if (rc == TK_OK) {
        json_t *det = client_detail(o, NULL);
        rc = dcr_event_in(r, db, d.tenant, "registration_update", id,
                          "OAuth client updated through RFC 7592", det, &e);
        json_decref(det);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(spec);
    json_decref(cur);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_wipe(secret, sizeof secret);
        json_decref(o);
        if (rc == TK_EINVAL)
            dcr_error(&d, 400, "invalid_client_metadata", "registration_update", e.msg);
        else
            tk_oauth_reply_error(r, 503, "temporarily_unavailable", e.msg);
        return;
    }
    tk_api_authcache_changed(r->app, d.tenant, seq);
    json_t *out = dcr_json(r->app, o);
    json_decref(o);
    if (secret[0]) json_object_set_new(out, "client_secret", json_string(secret));
    tk_wipe(secret, sizeof secret);
    tk_oauth_reply_json(r, 200, out);
}

void tk_h_oauth_register_delete(struct tk_req *r)
{
    struct dcr d = {.r = r};
    char id[TK_UUID_LEN + 1];
    if (!dcr_manage(&d, "registration_delete", id)) return;
    struct tk_db *db = r->db;
    struct tk_err e;
    int64_t seq = 0;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = revoke_grants(r, db, d.tenant, id, &e);
    if (rc == TK_OK) rc = tk_oauth_client_retire(db, d.tenant, id, &seq, &e);
    if (rc == TK_OK) {
        rc = dcr_event_in(r, db, d.tenant, "registration_delete", id,
                          "OAuth client deleted through RFC 7592", NULL, &e);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_oauth_reply_error(r, 503, "temporarily_unavailable", e.msg);
        return;
    }
    tk_api_authcache_changed(r->app, d.tenant, seq);
    tk_reply_header(r, "Cache-Control", "no-store");
    tk_reply_text(r, 204, "text/plain", "", 0);
}

void tk_h_oauth_client_auth_probe(struct tk_req *r)
{
    struct tk_form *f = tk_req_form(r);
    if (!f) return;
    struct tk_oauth_client c;
    struct tk_err e;
    tk_err_clear(&e);
    if (tk_api_oauth_client_auth(r, f, &c, &e) != TK_OK) return; /* replied or parked */
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", c.id, "client_id", c.client_id,
                          "tenant_id", c.tenant_id, "token_endpoint_auth_method", c.auth_method,
                          "confidential", c.confidential);
    json_object_set(o, "scopes", c.scopes);
    tk_oauth_client_clear(&c);
    tk_oauth_reply_json(r, 200, o);
}
