/*
 * upstream.h: the providers tokend holds tokens of, and the apps registered
 * with them.
 *
 * The catalogue: one JSON file per provider (src/upstream/providers/NAME.json)
 * is compiled into the binary (scripts/embed-providers.sh) and parsed at
 * start by tk_catalog_load, which also reads the *.json files of the
 * optional providers_dir: a file there replaces the built-in entry of the
 * same name or adds one. Parsing is strict (unknown members, wrong types,
 * values out of range, URLs that are not https -- or http to a loopback
 * address -- are refused) and an error names the file and the member, so
 * that a bad file stops start-up with a sentence the operator can act on.
 * The loaded catalogue is immutable and shared by every thread.
 *
 * A provider app (table provider_apps) is a tenant's registration with a
 * provider: client id, client secret (sealed with the keyring, bound to the
 * row, never returned), scopes, environment, the values of the provider's
 * params (a Bitrix24 portal's domain) and optional overrides of the
 * catalogue entry. tk_app_effective merges the entry, the environment, the
 * overrides and the params into what the refresh engine uses.
 */
#ifndef TK_UPSTREAM_H
#define TK_UPSTREAM_H

#include "../common/tk.h"
#include "../keyring/keyring.h"
#include "../store/store.h"

#include <jansson.h>

/* ---- URLs and params (catalog.c) ---- */

#define TK_URL_MAX 1024
/* url is an absolute https URL, or http to localhost, 127.0.0.0/8 or
 * [::1]; printable ASCII, a host, an optional port, no user info, no
 * fragment, at most TK_URL_MAX bytes. Otherwise TK_EINVAL "invalid_field"
 * naming field and why (the URL itself is not quoted). */
tk_rc tk_upstream_url_check(const char *field, const char *url, struct tk_err *e);
/* A DNS name: labels of [A-Za-z0-9-] (1 to 63, no hyphen at either end)
 * separated by dots, at most 253 bytes, the last not a number (digits, or
 * 0x and hex: 2130706433, 0x7f000001, 127.1 are IPv4 addresses). */
bool tk_hostname_valid(const char *s, size_t len);

/* ---- the catalogue (catalog.c) ---- */

#define TK_PROVIDER_NAME_MAX 63
#define TK_PROVIDER_TEXT_MAX 256 /* display_name, a param's description */
#define TK_PROVIDER_PARAMS_MAX 8
#define TK_PROVIDER_PARAM_NAME_MAX 32
#define TK_PROVIDER_PARAM_VALUE_MAX 253
#define TK_PROVIDER_MATCH_MAX 128  /* expired_token.body_contains */
#define TK_PROVIDER_FILE_MAX 65536 /* bytes of one catalogue file */
#define TK_CATALOG_MAX 128         /* entries, built-in and providers_dir together */

enum tk_client_auth {
    TK_CLIENT_AUTH_BASIC = 0, /* client_secret_basic: HTTP Basic */
    TK_CLIENT_AUTH_POST,      /* client_secret_post: in the form body */
    TK_CLIENT_AUTH_QUERY,     /* query: in the URL's query (Bitrix24) */
};
/* "client_secret_basic", "client_secret_post", "query". */
const char *tk_client_auth_name(enum tk_client_auth a);
/* Parse one of the names above; false otherwise. */
bool tk_client_auth_parse(const char *s, enum tk_client_auth *out);

enum tk_param_type {
    TK_PARAM_HOSTNAME = 0, /* a DNS name (tk_hostname_valid) */
    TK_PARAM_NAME,         /* 1 to 128 of [A-Za-z0-9._-] */
};

struct tk_provider_param {
    char name[TK_PROVIDER_PARAM_NAME_MAX + 1];
    enum tk_param_type type;
    char description[TK_PROVIDER_TEXT_MAX + 1];
};

struct tk_provider {
    char name[TK_PROVIDER_NAME_MAX + 1];
    char display_name[TK_PROVIDER_TEXT_MAX + 1];
    char documentation_url[TK_URL_MAX + 1]; /* "" when none */
    /* URL templates: "{param}" stands for the app's value of a declared
     * param. "" when each app sets its own (generic-oauth2). */
    char authorize_url[TK_URL_MAX + 1];
    char token_url[TK_URL_MAX + 1];
    bool has_sandbox; /* environment sandbox uses the two below */
    char sandbox_authorize_url[TK_URL_MAX + 1];
    char sandbox_token_url[TK_URL_MAX + 1];
    bool token_get; /* the refresh is a GET with its parameters in the query */
    enum tk_client_auth client_auth;
    bool rotates_refresh_tokens;
    int64_t default_lifetime;                     /* seconds, when an answer has no expires_in */
    int64_t refresh_token_lifetime;               /* seconds; 0: unknown or unlimited */
    char scope_separator;                         /* ' ' or ',' */
    bool scopes_on_refresh;                       /* send the app's scopes with a refresh */
    bool pkce;                                    /* S256 in the connect flow */
    int expired_status;                           /* an expired access token answers this status */
    char expired_body[TK_PROVIDER_MATCH_MAX + 1]; /* ... with this in the body; "": any */
    int nparams;
    struct tk_provider_param params[TK_PROVIDER_PARAMS_MAX];
    bool from_dir; /* read from providers_dir (else built in) */
};

/* Parse and check one catalogue file: file is its name (for errors; the
 * provider's name must be the file's base name without .json), text and
 * len its bytes (not NUL-terminated). TK_EINVAL "invalid_provider" with
 * e->field the member's path ("expired_token.status") and a message
 * starting with the file's name. */
tk_rc tk_provider_parse(const char *file, const char *text, size_t len, struct tk_provider *out,
                        struct tk_err *e);
/* The JSON form shown by GET /v1/providers. */
json_t *tk_provider_json(const struct tk_provider *p);

struct tk_catalog;
/* The built-in entries, then the *.json files of dir (NULL or "": none),
 * in name order; a file there replaces the built-in entry of its name.
 * Errors name the file and member; the caller stops start-up (exit 2). */
tk_rc tk_catalog_load(const char *dir, struct tk_catalog **out, struct tk_err *e);
void tk_catalog_free(struct tk_catalog *c); /* NULL: no-op */
size_t tk_catalog_count(const struct tk_catalog *c);
const struct tk_provider *tk_catalog_at(const struct tk_catalog *c, size_t i); /* name order */
const struct tk_provider *tk_catalog_find(const struct tk_catalog *c, const char *name);

/* ---- provider apps (apps.c) ---- */

#define TK_APP_NAME_MAX 128
#define TK_APP_CLIENT_ID_MAX 512
#define TK_APP_CLIENT_SECRET_MAX 4096
#define TK_APP_SCOPES_MAX 64
#define TK_APP_SCOPE_MAX 256

/* An app's attributes are given as a JSON object (attrs) with the members
 * provider, name, client_id, scopes, environment, params and the overrides
 * token_url, authorize_url, client_auth, rotates_refresh_tokens,
 * default_lifetime (in an update, null clears an override), and the client
 * secret apart, as plaintext (NULL: none, or unchanged in an update). The
 * caller refuses other members. */
/* Create an app (in the caller's transaction, if any): the attributes are
 * checked (TK_EINVAL naming the field), the secret sealed under the row's
 * place. *out: the app's JSON (tk_app_get's form). */
tk_rc tk_app_create(struct tk_db *db, struct tk_keyring *k, const struct tk_catalog *cat,
                    const char *tenant_id, json_t *attrs, const struct tk_secret *secret,
                    char id_out[TK_UUID_LEN + 1], json_t **out, struct tk_err *e);
/* Update the members given (provider cannot change); another tenant's or
 * an unknown id is TK_ENOTFOUND. Call inside a transaction. */
tk_rc tk_app_update(struct tk_db *db, struct tk_keyring *k, const struct tk_catalog *cat,
                    const char *tenant_id, const char *id, json_t *attrs,
                    const struct tk_secret *secret, json_t **out, struct tk_err *e);
/* The app as JSON: id, provider, name, client_id, client_secret_set,
 * scopes, environment, params, the overrides, effective, created_at,
 * updated_at. Never the secret. */
tk_rc tk_app_get(struct tk_db *db, const struct tk_catalog *cat, const char *tenant_id,
                 const char *id, json_t **out, struct tk_err *e);
/* Newest first; filter provider (NULL: all). next_out as tk_tenant_list. */
tk_rc tk_app_list(struct tk_db *db, const struct tk_catalog *cat, const char *tenant_id,
                  const char *provider, const char *before, int limit, json_t **out,
                  char next_out[TK_UUID_LEN + 1], struct tk_err *e);
/* Delete; TK_ECONFLICT "app_in_use" while connections use it. */
tk_rc tk_app_delete(struct tk_db *db, const char *tenant_id, const char *id, struct tk_err *e);
/* Whether connections use the app (true also when the store cannot tell). */
bool tk_provider_app_in_use(struct tk_db *db, const char *tenant_id, const char *app_id);
/* Open the app's client secret (the caller frees it with tk_secret_free). */
tk_rc tk_app_client_secret(struct tk_db *db, struct tk_keyring *k, const char *tenant_id,
                           const char *id, struct tk_secret **out, struct tk_open_failure *f,
                           struct tk_err *e);
/* Register provider_apps.client_secret for rewrap (once, at start). */
tk_rc tk_app_register_sealed(void);

/* The catalogue entry p merged with the environment, an app's overrides
 * (JSON members token_url, authorize_url, client_auth,
 * rotates_refresh_tokens, default_lifetime; absent or null: the entry's)
 * and params (substituted into the URLs). A JSON object in the same shape
 * as tk_provider_json's, with urls resolved; authorize_url null when
 * neither the entry nor the app gives one. */
json_t *tk_app_effective(const struct tk_provider *p, const char *environment, json_t *overrides,
                         json_t *params);

#endif
