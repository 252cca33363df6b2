/* apps.c: the provider_apps table (see upstream.h).
 *
 * An app's state is kept as a JSON object {provider, name, client_id,
 * scopes, environment, params, overrides}: create builds it from the
 * attributes, update merges the attributes into the stored one, and both
 * check the whole result against the catalogue before writing, so that a
 * row never holds an app the engine could not use. */
#include "upstream.h"

#include "../common/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const override_names[] = {"token_url",        "authorize_url",
                                             "client_auth",      "rotates_refresh_tokens",
                                             "default_lifetime", NULL};

#define COLS                                                                                       \
    "id, provider, name, client_id, CASE WHEN client_secret IS NULL THEN 0 ELSE 1 END, scopes, "   \
    "environment, params, "                                                                        \
    "overrides, created_at, updated_at"

tk_rc tk_app_register_sealed(void)
{
    return tk_keyring_register_sealed("provider_apps", "client_secret");
}

bool tk_provider_app_in_use(struct tk_db *db, const char *tenant_id, const char *app_id)
{
    struct tk_err e;
    struct tk_rows *r;
    if (tk_db_exec(db, "SELECT 1 FROM connections WHERE tenant_id = ? AND app_id = ? LIMIT 1",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(app_id)), &r, &e) != TK_OK)
        return true; /* cannot tell: refuse the delete rather than orphan connections */
    bool used = tk_rows_count(r) > 0;
    tk_rows_free(r);
    return used;
}

static tk_rc invalid(struct tk_err *e, const char *field, const char *fmt, ...) TK_PRINTF(3, 4);
static tk_rc invalid(struct tk_err *e, const char *field, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return tk_err_field(e, TK_EINVAL, "invalid_field", field, "%s", why);
}

static bool printable_token(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) return false;
    return true;
}

static bool param_value_valid(enum tk_param_type t, const char *s, size_t len)
{
    if (t == TK_PARAM_HOSTNAME) return tk_hostname_valid(s, len);
    if (len == 0 || len > 128 || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Check a whole state; p receives the catalogue entry. */
static tk_rc check_state(const struct tk_catalog *cat, json_t *st, const struct tk_provider **pp,
                         struct tk_err *e)
{
    json_t *v = json_object_get(st, "provider");
    if (!v) return tk_err_field(e, TK_EINVAL, "missing_field", "provider", "provider is required");
    const struct tk_provider *p =
        json_is_string(v) ? tk_catalog_find(cat, json_string_value(v)) : NULL;
    if (!p)
        return invalid(e, "provider",
                       "provider must be the name of a provider of the catalogue (GET "
                       "/v1/providers lists them)");
    *pp = p;

    v = json_object_get(st, "name");
    if (!v) return tk_err_field(e, TK_EINVAL, "missing_field", "name", "name is required");
    if (!json_is_string(v)) return invalid(e, "name", "name must be a string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return invalid(e, "name", "name must not contain a NUL character");
    tk_rc rc = tk_text_check_name("name", json_string_value(v), TK_APP_NAME_MAX, e);
    if (rc != TK_OK) return rc;

    v = json_object_get(st, "client_id");
    if (!v)
        return tk_err_field(e, TK_EINVAL, "missing_field", "client_id", "client_id is required");
    if (!json_is_string(v) ||
        !printable_token(json_string_value(v), json_string_length(v), TK_APP_CLIENT_ID_MAX))
        return invalid(e, "client_id",
                       "client_id must be a string of 1 to %d printable ASCII characters "
                       "without spaces",
                       TK_APP_CLIENT_ID_MAX);

    v = json_object_get(st, "scopes");
    if (!json_is_array(v)) return invalid(e, "scopes", "scopes must be an array of strings");
    if (json_array_size(v) > TK_APP_SCOPES_MAX)
        return invalid(e, "scopes", "scopes holds at most %d scopes", TK_APP_SCOPES_MAX);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        const char *sv = json_string_value(s);
        bool ok = json_is_string(s) && printable_token(sv, json_string_length(s), TK_APP_SCOPE_MAX);
        /* RFC 6749 §3.3 scope-token: no '"', no '\', and not the separator */
        for (size_t j = 0; ok && sv[j]; j++)
            ok = sv[j] != '"' && sv[j] != '\\' && sv[j] != p->scope_separator;
        if (!ok)
            return invalid(e, "scopes",
                           "scopes[%zu] must be 1 to %d printable ASCII characters without "
                           "spaces, '\"', '\\' or the provider's separator '%c'",
                           i, TK_APP_SCOPE_MAX, p->scope_separator);
        for (size_t j = 0; j < i; j++)
            if (json_equal(json_array_get(v, j), s))
                return invalid(e, "scopes", "scopes[%zu] repeats scopes[%zu]", i, j);
    }

    v = json_object_get(st, "environment");
    const char *env = json_string_value(v);
    if (!env || (strcmp(env, "production") && strcmp(env, "sandbox")))
        return invalid(e, "environment", "environment must be production or sandbox");

    json_t *params = json_object_get(st, "params");
    if (!json_is_object(params)) return invalid(e, "params", "params must be an object of strings");
    const char *k;
    json_t *pv;
    json_object_foreach(params, k, pv)
    {
        char f[64];
        snprintf(f, sizeof f, "params.%.40s", k);
        const struct tk_provider_param *decl = NULL;
        for (int i = 0; i < p->nparams && !decl; i++)
            if (!strcmp(p->params[i].name, k)) decl = &p->params[i];
        if (!decl)
            return invalid(e, f, "%s is not a param of provider %s (%d declared)", f, p->name,
                           p->nparams);
        if (!json_is_string(pv) ||
            !param_value_valid(decl->type, json_string_value(pv), json_string_length(pv)))
            return invalid(e, f, "%s must be %s", f,
                           decl->type == TK_PARAM_HOSTNAME
                               ? "a host name (labels of a-z 0-9 - separated by dots)"
                               : "1 to 128 of the characters A-Z a-z 0-9 . _ -");
    }
    for (int i = 0; i < p->nparams; i++)
        if (!json_object_get(params, p->params[i].name)) {
            char f[64];
            snprintf(f, sizeof f, "params.%s", p->params[i].name);
            return tk_err_field(e, TK_EINVAL, "missing_field", f, "provider %s needs %s: %s",
                                p->name, f, p->params[i].description);
        }

    json_t *ov = json_object_get(st, "overrides");
    if (!json_is_object(ov)) return invalid(e, "overrides", "overrides must be an object");
    json_object_foreach(ov, k, pv)
    {
        if (!strcmp(k, "token_url") || !strcmp(k, "authorize_url")) {
            if (!json_is_string(pv)) return invalid(e, k, "%s must be a URL string or null", k);
            rc = tk_upstream_url_check(k, json_string_value(pv), e);
            if (rc == TK_OK && strlen(json_string_value(pv)) != json_string_length(pv))
                rc = invalid(e, k, "%s must not contain a NUL character", k);
            if (rc != TK_OK) return rc;
        } else if (!strcmp(k, "client_auth")) {
            enum tk_client_auth a;
            if (!json_is_string(pv) || !tk_client_auth_parse(json_string_value(pv), &a))
                return invalid(e, k,
                               "client_auth must be client_secret_basic, client_secret_post or "
                               "query");
        } else if (!strcmp(k, "rotates_refresh_tokens")) {
            if (!json_is_boolean(pv))
                return invalid(e, k, "rotates_refresh_tokens must be true or false");
        } else if (!strcmp(k, "default_lifetime")) {
            if (!json_is_integer(pv) || json_integer_value(pv) < 60 ||
                json_integer_value(pv) > 31536000)
                return invalid(e, k,
                               "default_lifetime must be an integer from 60 to 31536000 (seconds)");
        } else {
            return invalid(e, k, "%.40s is not an override", k);
        }
    }
    bool own_token_url = json_object_get(ov, "token_url") != NULL;
    if (!p->token_url[0] && !own_token_url)
        return tk_err_field(e, TK_EINVAL, "missing_field", "token_url",
                            "provider %s has no URLs of its own: the app must set token_url "
                            "(and authorize_url for the connect flow)",
                            p->name);
    if (!strcmp(env, "sandbox") && !p->has_sandbox && !own_token_url)
        return invalid(e, "environment",
                       "provider %s has no sandbox URLs: use its sandbox entry if the catalogue "
                       "has one (ebay-sandbox), or set token_url",
                       p->name);
    return TK_OK;
}

/* Substitute the params into a catalogue URL template. */
static json_t *resolve(const char *tmpl, json_t *params)
{
    if (!tmpl[0]) return json_null();
    struct tk_buf b;
    tk_buf_init(&b, TK_URL_MAX * 2);
    for (const char *s = tmpl; *s;) {
        const char *open = strchr(s, '{');
        if (!open) {
            tk_buf_addstr(&b, s);
            break;
        }
        tk_buf_add(&b, s, (size_t)(open - s));
        const char *close = strchr(open, '}');
        if (!close) { /* the loader refuses such templates */
            tk_buf_addstr(&b, open);
            break;
        }
        char name[TK_PROVIDER_PARAM_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)(close - open - 1), open + 1);
        const char *v = json_string_value(json_object_get(params, name));
        tk_buf_addstr(&b, v ? v : "");
        s = close + 1;
    }
    json_t *o = json_string(b.data ? b.data : "");
    tk_buf_free(&b);
    return o;
}

json_t *tk_app_effective(const struct tk_provider *p, const char *environment, json_t *ov,
                         json_t *params)
{
    bool sandbox = environment && !strcmp(environment, "sandbox") && p->has_sandbox;
    json_t *tok = json_object_get(ov, "token_url"), *auth = json_object_get(ov, "authorize_url");
    json_t *ca = json_object_get(ov, "client_auth"),
           *rot = json_object_get(ov, "rotates_refresh_tokens");
    json_t *life = json_object_get(ov, "default_lifetime");
    char sep[2] = {p->scope_separator, '\0'};
    json_t *authorize =
        json_is_string(auth)
            ? json_copy(auth)
            : resolve(sandbox ? p->sandbox_authorize_url : p->authorize_url, params);
    return json_pack(
        "{s:s, s:s, s:o, s:o, s:s, s:s, s:b, s:I, s:o, s:{s:s, s:b}, s:b, s:{s:i, s:o}}",
        "provider", p->name, "environment", environment ? environment : "production",
        "authorize_url", authorize, "token_url",
        json_is_string(tok) ? json_copy(tok)
                            : resolve(sandbox ? p->sandbox_token_url : p->token_url, params),
        "token_method", p->token_get ? "GET" : "POST", "client_auth",
        json_is_string(ca) ? json_string_value(ca) : tk_client_auth_name(p->client_auth),
        "rotates_refresh_tokens",
        json_is_boolean(rot) ? json_is_true(rot) : p->rotates_refresh_tokens, "default_lifetime",
        (json_int_t)(json_is_integer(life) ? json_integer_value(life) : p->default_lifetime),
        "refresh_token_lifetime",
        p->refresh_token_lifetime ? json_integer(p->refresh_token_lifetime) : json_null(), "scopes",
        "separator", sep, "sent_on_refresh", p->scopes_on_refresh, "pkce", p->pkce, "expired_token",
        "status", p->expired_status, "body_contains",
        p->expired_body[0] ? json_string(p->expired_body) : json_null());
}

static json_t *parse_col(const char *text, bool array)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (!v || (array ? !json_is_array(v) : !json_is_object(v))) {
        json_decref(v);
        v = array ? json_array() : json_object();
    }
    return v;
}

/* The JSON form of row i of a SELECT COLS. */
static json_t *row_json(const struct tk_catalog *cat, const struct tk_rows *r, int i)
{
    char created[32], updated[32];
    tk_time_fmt(tk_rows_int(r, i, 9), created, sizeof created);
    tk_time_fmt(tk_rows_int(r, i, 10), updated, sizeof updated);
    json_t *scopes = parse_col(tk_rows_text(r, i, 5), true);
    json_t *params = parse_col(tk_rows_text(r, i, 7), false);
    json_t *ov = parse_col(tk_rows_text(r, i, 8), false);
    const char *env = tk_rows_text(r, i, 6);
    const struct tk_provider *p = tk_catalog_find(cat, tk_rows_text(r, i, 1));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:b, s:O, s:s, s:O, s:o, s:s, s:s}", "id",
                  tk_rows_text(r, i, 0), "provider", tk_rows_text(r, i, 1), "name",
                  tk_rows_text(r, i, 2), "client_id", tk_rows_text(r, i, 3), "client_secret_set",
                  tk_rows_int(r, i, 4) != 0, "scopes", scopes, "environment", env, "params", params,
                  "effective", p ? tk_app_effective(p, env, ov, params) : json_null(), "created_at",
                  created, "updated_at", updated);
    for (size_t k = 0; override_names[k]; k++) {
        json_t *v = json_object_get(ov, override_names[k]);
        json_object_set_new(o, override_names[k], v ? json_copy(v) : json_null());
    }
    json_decref(scopes);
    json_decref(params);
    json_decref(ov);
    return o;
}

tk_rc tk_app_get(struct tk_db *db, const struct tk_catalog *cat, const char *tenant_id,
                 const char *id, json_t **out, struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc = tk_db_exec(db, "SELECT " COLS " FROM provider_apps WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no provider app with id %s", id);
    else
        *out = row_json(cat, r, 0);
    tk_rows_free(r);
    return rc;
}

tk_rc tk_app_list(struct tk_db *db, const struct tk_catalog *cat, const char *tenant_id,
                  const char *provider, const char *before, int limit, json_t **out,
                  char next_out[TK_UUID_LEN + 1], struct tk_err *e)
{
    struct tk_rows *r;
    /* one more than asked: whether another page follows */
    tk_rc rc = tk_db_exec(db,
                          "SELECT " COLS " FROM provider_apps WHERE tenant_id = ? "
                          "AND (CAST(? AS TEXT) IS NULL OR provider = ?) "
                          "AND (CAST(? AS TEXT) IS NULL OR id < ?) "
                          "ORDER BY id DESC LIMIT ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(provider), TK_TEXT(provider),
                                  TK_TEXT(before), TK_TEXT(before), TK_INT(limit + 1)),
                          &r, e);
    if (rc != TK_OK) return rc;
    int n = tk_rows_count(r);
    json_t *a = json_array();
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(a, row_json(cat, r, i));
    next_out[0] = '\0';
    if (n > limit) snprintf(next_out, TK_UUID_LEN + 1, "%s", tk_rows_text(r, limit - 1, 0));
    tk_rows_free(r);
    *out = a;
    return TK_OK;
}

/* Seal secret for the row (tenant_id, id) into *text (malloc'd). */
static tk_rc seal(struct tk_keyring *k, const char *tenant_id, const char *id,
                  const struct tk_secret *secret, char **text, struct tk_err *e)
{
    if (secret->len == 0 || secret->len > TK_APP_CLIENT_SECRET_MAX)
        return invalid(e, "client_secret", "client_secret must be 1 to %d bytes",
                       TK_APP_CLIENT_SECRET_MAX);
    if (memchr(secret->p, '\0', secret->len))
        return invalid(e, "client_secret", "client_secret must not contain a NUL character");
    struct tk_seal_ad ad = {tenant_id, "provider_apps", "client_secret", id};
    struct tk_sealed *s = NULL;
    tk_rc rc = tk_keyring_seal_value(k, secret, &ad, &s, e);
    if (rc != TK_OK) return rc;
    *text = tk_strdup(s->text);
    tk_sealed_free(s);
    return TK_OK;
}

static tk_rc name_taken(tk_rc rc, json_t *st, struct tk_err *e)
{
    if (rc == TK_ECONFLICT)
        tk_err_field(e, TK_ECONFLICT, "conflict", "name",
                     "this tenant already has a provider app named '%.128s'; app names are "
                     "unique per tenant",
                     json_string_value(json_object_get(st, "name")));
    return rc;
}

static tk_rc write_row(struct tk_db *db, bool insert, const char *tenant_id, const char *id,
                       json_t *st, const char *sealed, bool set_secret, int64_t now,
                       struct tk_err *e)
{
    char *scopes = json_dumps(json_object_get(st, "scopes"), JSON_COMPACT);
    char *params = json_dumps(json_object_get(st, "params"), JSON_COMPACT | JSON_SORT_KEYS);
    char *ov = json_dumps(json_object_get(st, "overrides"), JSON_COMPACT | JSON_SORT_KEYS);
    if (!scopes || !params || !ov) tk_fatal("out of memory");
    const char *name = json_string_value(json_object_get(st, "name"));
    const char *client_id = json_string_value(json_object_get(st, "client_id"));
    const char *env = json_string_value(json_object_get(st, "environment"));
    tk_rc rc;
    if (insert)
        rc = tk_db_exec(db,
                        "INSERT INTO provider_apps (id, tenant_id, provider, name, client_id, "
                        "client_secret, scopes, environment, params, overrides, created_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        TK_ARGS(TK_TEXT(id), TK_TEXT(tenant_id),
                                TK_TEXT(json_string_value(json_object_get(st, "provider"))),
                                TK_TEXT(name), TK_TEXT(client_id), TK_TEXT(sealed), TK_TEXT(scopes),
                                TK_TEXT(env), TK_TEXT(params), TK_TEXT(ov), TK_INT(now),
                                TK_INT(now)),
                        NULL, e);
    else if (set_secret)
        rc = tk_db_exec(db,
                        "UPDATE provider_apps SET name = ?, client_id = ?, client_secret = ?, "
                        "scopes = ?, environment = ?, params = ?, overrides = ?, updated_at = ? "
                        "WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(name), TK_TEXT(client_id), TK_TEXT(sealed), TK_TEXT(scopes),
                                TK_TEXT(env), TK_TEXT(params), TK_TEXT(ov), TK_INT(now),
                                TK_TEXT(tenant_id), TK_TEXT(id)),
                        NULL, e);
    else
        rc = tk_db_exec(db,
                        "UPDATE provider_apps SET name = ?, client_id = ?, scopes = ?, "
                        "environment = ?, params = ?, overrides = ?, updated_at = ? "
                        "WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(name), TK_TEXT(client_id), TK_TEXT(scopes), TK_TEXT(env),
                                TK_TEXT(params), TK_TEXT(ov), TK_INT(now), TK_TEXT(tenant_id),
                                TK_TEXT(id)),
                        NULL, e);
    free(scopes);
    free(params);
    free(ov);
    return name_taken(rc, st, e);
}

/* Apply attrs to the state st (create: an empty one). */
static tk_rc merge(json_t *st, json_t *attrs, bool creating, struct tk_err *e)
{
    static const char *const plain[] = {"provider",    "name",   "client_id", "scopes",
                                        "environment", "params", NULL};
    for (size_t i = 0; plain[i]; i++) {
        json_t *v = json_object_get(attrs, plain[i]);
        if (!v) continue;
        if (!creating && !strcmp(plain[i], "provider")) {
            if (!json_equal(v, json_object_get(st, "provider")))
                return invalid(e, "provider",
                               "provider cannot change: create another app for another provider");
            continue;
        }
        if (json_is_null(v)) return invalid(e, plain[i], "%s cannot be null", plain[i]);
        json_object_set(st, plain[i], v);
    }
    json_t *ov = json_object_get(st, "overrides");
    for (size_t i = 0; override_names[i]; i++) {
        json_t *v = json_object_get(attrs, override_names[i]);
        if (!v) continue;
        if (json_is_null(v))
            json_object_del(ov, override_names[i]);
        else
            json_object_set(ov, override_names[i], v);
    }
    return TK_OK;
}

tk_rc tk_app_create(struct tk_db *db, struct tk_keyring *k, const struct tk_catalog *cat,
                    const char *tenant_id, json_t *attrs, const struct tk_secret *secret,
                    char id_out[TK_UUID_LEN + 1], json_t **out, struct tk_err *e)
{
    json_t *st = json_pack("{s:[], s:s, s:{}, s:{}}", "scopes", "environment", "production",
                           "params", "overrides");
    const struct tk_provider *p = NULL;
    char *sealed = NULL;
    tk_rc rc = merge(st, attrs, true, e);
    if (rc == TK_OK) rc = check_state(cat, st, &p, e);
    tk_uuid7(id_out);
    if (rc == TK_OK && secret) rc = seal(k, tenant_id, id_out, secret, &sealed, e);
    if (rc == TK_OK) rc = write_row(db, true, tenant_id, id_out, st, sealed, true, tk_now_ms(), e);
    if (rc == TK_OK) rc = tk_app_get(db, cat, tenant_id, id_out, out, e);
    free(sealed);
    json_decref(st);
    return rc;
}

tk_rc tk_app_update(struct tk_db *db, struct tk_keyring *k, const struct tk_catalog *cat,
                    const char *tenant_id, const char *id, json_t *attrs,
                    const struct tk_secret *secret, json_t **out, struct tk_err *e)
{
    tk_rc rc = tk_db_lock_row(db, "provider_apps", id, e);
    struct tk_rows *r = NULL;
    if (rc == TK_OK)
        rc = tk_db_exec(db,
                        "SELECT provider, name, client_id, scopes, environment, params, overrides "
                        "FROM provider_apps WHERE tenant_id = ? AND id = ?",
                        TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1) {
        tk_rows_free(r);
        return tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no provider app with id %s", id);
    }
    json_t *st = json_pack("{s:s, s:s, s:s, s:o, s:s, s:o, s:o}", "provider", tk_rows_text(r, 0, 0),
                           "name", tk_rows_text(r, 0, 1), "client_id", tk_rows_text(r, 0, 2),
                           "scopes", parse_col(tk_rows_text(r, 0, 3), true), "environment",
                           tk_rows_text(r, 0, 4), "params", parse_col(tk_rows_text(r, 0, 5), false),
                           "overrides", parse_col(tk_rows_text(r, 0, 6), false));
    tk_rows_free(r);
    const struct tk_provider *p = NULL;
    char *sealed = NULL;
    rc = merge(st, attrs, false, e);
    if (rc == TK_OK) rc = check_state(cat, st, &p, e);
    if (rc == TK_OK && secret) rc = seal(k, tenant_id, id, secret, &sealed, e);
    if (rc == TK_OK)
        rc = write_row(db, false, tenant_id, id, st, sealed, secret != NULL, tk_now_ms(), e);
    if (rc == TK_OK) rc = tk_app_get(db, cat, tenant_id, id, out, e);
    free(sealed);
    json_decref(st);
    return rc;
}

tk_rc tk_app_delete(struct tk_db *db, const char *tenant_id, const char *id, struct tk_err *e)
{
    if (tk_provider_app_in_use(db, tenant_id, id))
        return tk_err_field(e, TK_ECONFLICT, "app_in_use", "id",
                            "provider app %s has connections: delete them first", id);
    tk_rc rc = tk_db_exec(db, "DELETE FROM provider_apps WHERE tenant_id = ? AND id = ?",
                          TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), NULL, e);
    if (rc == TK_OK && tk_db_changes(db) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no provider app with id %s", id);
    return rc;
}

tk_rc tk_app_client_secret(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                           const char *id, struct tk_secret **out, struct tk_open_failure *f,
                           struct tk_err *e)
{
    struct tk_rows *r;
    tk_rc rc =
        tk_db_exec(db, "SELECT client_secret FROM provider_apps WHERE tenant_id = ? AND id = ?",
                   TK_ARGS(TK_TEXT(tenant_id), TK_TEXT(id)), &r, e);
    if (rc != TK_OK) return rc;
    if (tk_rows_count(r) != 1)
        rc = tk_err_field(e, TK_ENOTFOUND, "not_found", "id", "no provider app with id %s", id);
    else if (tk_rows_null(r, 0, 0))
        rc = tk_err_field(e, TK_ENOTFOUND, "no_client_secret", "client_secret",
                          "provider app %s has no client secret", id);
    if (rc == TK_OK) {
        struct tk_sealed *s = tk_sealed_from_text(tk_rows_text(r, 0, 0));
        struct tk_seal_ad ad = {tenant_id, "provider_apps", "client_secret", id};
        rc = tk_keyring_open_value(k, db, s, &ad, out, f, e);
        tk_sealed_free(s);
    }
    tk_rows_free(r);
    return rc;
}
