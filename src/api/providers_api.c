/* providers_api.c: /v1/providers (the catalogue, read only) and
 * /v1/provider-apps (a tenant's apps: create, list, show, update, delete).
 * The client secret is write-only: it is taken out of the body into a
 * struct tk_secret at once, sealed by the domain module, and never
 * returned or recorded (client_secret_set says whether there is one). */
#include "api.h"

#include "../upstream/upstream.h"

#include <stdio.h>
#include <string.h>


static const struct tk_catalog *catalog(struct tk_req *r)
{
    return ((struct tk_app *)r->app)->catalog;
}

/* GET /v1/providers -> {providers, next_cursor: null}, in name order. */
void tk_h_providers_list(struct tk_req *r)
{
    const struct tk_catalog *c = catalog(r);
    json_t *a = json_array();
    for (size_t i = 0; i < tk_catalog_count(c); i++)
        json_array_append_new(a, tk_provider_json(tk_catalog_at(c, i)));
    tk_reply_json(r, 200, json_pack("{s:o, s:n}", "providers", a, "next_cursor"));
}

/* GET /v1/providers/{name} -> the entry. */
void tk_h_providers_get(struct tk_req *r)
{
    const char *name = tk_req_param(r, "name");
    const struct tk_provider *p = tk_catalog_find(catalog(r), name);
    if (!p) {
        struct tk_err e;
        tk_err_field(&e, TK_ENOTFOUND, "not_found", "name",
                     "no provider of that name in the catalogue (GET /v1/providers lists them)");
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, tk_provider_json(p));
}

static const char *const app_members[] = {"provider",
                                          "name",
                                          "client_id",
                                          "client_secret",
                                          "scopes",
                                          "environment",
                                          "params",
                                          "token_url",
                                          "authorize_url",
                                          "client_auth",
                                          "rotates_refresh_tokens",
                                          "default_lifetime",
                                          NULL};

/* The body's client_secret, moved out of it into *secret (NULL when
 * absent). false after replying 400. */
static bool take_secret(struct tk_req *r, json_t *body, struct tk_secret **secret)
{
    *secret = NULL;
    json_t *v = json_object_get(body, "client_secret");
    if (!v) return true;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > TK_APP_CLIENT_SECRET_MAX) {
        struct tk_err e;
        tk_err_field(&e, TK_EINVAL, "invalid_field", "client_secret",
                     "client_secret must be a string of 1 to %d bytes", TK_APP_CLIENT_SECRET_MAX);
        tk_api_reply_error(r, &e, NULL);
        return false;
    }
    *secret = tk_secret_new(json_string_value(v), json_string_length(v));
    tk_wipe((char *)json_string_value(v), json_string_length(v));
    json_object_del(body, "client_secret");
    return true;
}

/* The event's detail: what the app is and which members were given; never
 * a value of the secret. */
static json_t *event_detail(json_t *app, json_t *body, bool secret_given)
{
    json_t *given = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) json_array_append_new(given, json_string(k));
    if (secret_given) json_array_append_new(given, json_string("client_secret"));
    return json_pack("{s:O?, s:O?, s:O?, s:o}", "provider", json_object_get(app, "provider"),
                     "name", json_object_get(app, "name"), "environment",
                     json_object_get(app, "environment"), "members", given);
}

/* POST /v1/provider-apps -> 201 the app. */
void tk_h_apps_create(struct tk_req *r)
{
    json_t *body = tk_req_json(r);
    if (!body) return;
    struct tk_secret *secret = NULL;
    if (!tk_api_only_members(r, body, app_members) || !take_secret(r, body, &secret)) {
        json_decref(body);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        tk_secret_free(secret);
        json_decref(body);
        return;
    }
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_app *app = r->app;
    struct tk_err e;
    char id[TK_UUID_LEN + 1];
    json_t *o = NULL;
    /* the app and its event commit together */
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_app_create(db, app->keyring, app->catalog, p->tenant_id, body, secret, id, &o, &e);
    if (rc == TK_OK) {
        json_t *d = event_detail(o, body, secret != NULL);
        rc = tk_api_event_in(r, "provider_app", "create", "ok", "provider_app", id,
                             "provider app created", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    tk_secret_free(secret);
    json_decref(body);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 201, o);
}

/* GET /v1/provider-apps?limit&cursor&provider -> {provider_apps, next_cursor}. */
void tk_h_apps_list(struct tk_req *r)
{
    struct tk_err e;
    int64_t limit;
    const char *cursor;
    if (!tk_api_page(r, &limit, &cursor)) return;
    const char *provider = tk_req_query(r, "provider");
    if (provider && !tk_catalog_find(catalog(r), provider)) {
        tk_err_field(&e, TK_EINVAL, "invalid_parameter", "provider",
                     "provider must be the name of a provider of the catalogue");
        tk_reply_error(r, &e, NULL);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *a;
    char next[TK_UUID_LEN + 1];
    if (tk_app_list(db, catalog(r), tk_api_principal(r)->tenant_id, provider, cursor, (int)limit,
                    &a, next, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200,
                  json_pack("{s:o, s:o}", "provider_apps", a, "next_cursor",
                            next[0] ? json_string(next) : json_null()));
}

/* The {id} of the path, or NULL after replying 404. */
static const char *path_id(struct tk_req *r)
{
    const char *id = tk_req_param(r, "id");
    if (tk_uuid_valid(id)) return id;
    struct tk_err e;
    tk_err_field(&e, TK_ENOTFOUND, "not_found", "id", "no provider app with id %.40s", id);
    tk_api_reply_error(r, &e, NULL);
    return NULL;
}

/* GET /v1/provider-apps/{id} -> the app. */
void tk_h_apps_get(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    json_t *o;
    struct tk_err e;
    if (tk_app_get(db, catalog(r), tk_api_principal(r)->tenant_id, id, &o, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}

/* PATCH /v1/provider-apps/{id} -> the app. */
void tk_h_apps_update(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    json_t *body = tk_req_json(r);
    if (!body) return;
    struct tk_secret *secret = NULL;
    if (!tk_api_only_members(r, body, app_members) || !take_secret(r, body, &secret)) {
        json_decref(body);
        return;
    }
    struct tk_db *db = tk_api_db(r);
    if (!db) {
        tk_secret_free(secret);
        json_decref(body);
        return;
    }
    struct tk_app *app = r->app;
    struct tk_err e;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK)
        rc = tk_app_update(db, app->keyring, app->catalog, tk_api_principal(r)->tenant_id, id, body,
                           secret, &o, &e);
    if (rc == TK_OK) {
        json_t *d = event_detail(o, body, secret != NULL);
        rc = tk_api_event_in(
            r, "provider_app", "update", "ok", "provider_app", id,
            secret ? "provider app updated (new client secret)" : "provider app updated", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    tk_secret_free(secret);
    json_decref(body);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        json_decref(o);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, o);
}

/* DELETE /v1/provider-apps/{id} -> {id, deleted: true}. */
void tk_h_apps_delete(struct tk_req *r)
{
    const char *id = path_id(r);
    if (!id) return;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    const struct tk_principal *p = tk_api_principal(r);
    struct tk_err e;
    json_t *o = NULL;
    tk_rc rc = tk_db_begin(db, &e);
    if (rc == TK_OK) rc = tk_db_lock_row(db, "provider_apps", id, &e);
    if (rc == TK_OK) rc = tk_app_get(db, catalog(r), p->tenant_id, id, &o, &e);
    if (rc == TK_OK) rc = tk_app_delete(db, p->tenant_id, id, &e);
    if (rc == TK_OK) {
        json_t *d = json_pack("{s:O?, s:O?}", "provider", json_object_get(o, "provider"), "name",
                              json_object_get(o, "name"));
        rc = tk_api_event_in(r, "provider_app", "delete", "ok", "provider_app", id,
                             "provider app deleted", d, &e);
        json_decref(d);
    }
    if (rc == TK_OK) rc = tk_db_commit(db, &e);
    json_decref(o);
    if (rc != TK_OK) {
        if (tk_db_in_tx(db)) tk_db_rollback(db);
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    tk_reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
}
