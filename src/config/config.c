/* config.c: see config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <sys/stat.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ctype { C_STR, C_INT, C_BOOL, C_ENUM };

struct setting {
    const char *name;
    enum ctype type;
    size_t off, size;   /* field in struct tk_config; size for strings */
    const char *def;
    int64_t min, max;   /* ints: range; strings: max length is size-1 */
    const char *enums;  /* C_ENUM: allowed values separated by '|' */
    const char *help;
};

#define S(f) offsetof(struct tk_config, f), sizeof(((struct tk_config *)0)->f)

static const struct setting settings[] = {
    {"listen", C_STR, S(listen), "127.0.0.1:8750", 0, 0, NULL,
     "address and port to listen on (host:port, [v6]:port)"},
    {"data_dir", C_STR, S(data_dir), "./tokend-data", 0, 0, NULL,
     "directory for the SQLite file and local key files (created 0700)"},
    {"store", C_STR, S(store), "", 0, 0, NULL,
     "sqlite:PATH or postgres://user@host:port/db"},
    {"store_check", C_ENUM, S(store_check), "quick", 0, 0, "quick|full|off",
     "SQLite check at start: quick (quick_check on files up to 256 MiB, header and schema "
     "above), full (integrity_check), off"},
    {"events_retention_days", C_INT, S(events_retention_days), "90", 0, 36500, NULL,
     "delete events older than this many days (0: keep them forever)"},
    {"events_queue", C_INT, S(events_queue), "10000", 1, 1000000, NULL,
     "events waiting for the event writer at most; past it, posted events are refused and "
     "counted as dropped"},
    {"events_timeout", C_INT, S(events_timeout), "5", 1, 300, NULL,
     "seconds a request waits for its audit event's group commit (503 events_timeout after)"},
    {"threads", C_INT, S(threads), "2", 1, 64, NULL, "HTTP worker threads"},
    {"handler_threads", C_INT, S(handler_threads), "0", 0, 256, NULL,
     "threads that run route handlers (store work) off the HTTP threads; 0: store_pool - 2"},
    {"store_pool", C_INT, S(store_pool), "8", 1, 256, NULL,
     "database connections kept open by this node"},
    {"max_body", C_INT, S(max_body), "1048576", 1024, 64 << 20, NULL,
     "largest request body in bytes (413 above)"},
    {"max_header", C_INT, S(max_header), "32768", 4096, 1 << 20, NULL,
     "memory per connection for the request line and headers, in bytes"},
    {"max_connections", C_INT, S(max_connections), "1024", 1, 100000, NULL,
     "open connections accepted at once; more are closed at accept"},
    {"max_connections_per_ip", C_INT, S(max_connections_per_ip), "256", 1, 100000, NULL,
     "open connections accepted at once from one address"},
    {"idle_timeout", C_INT, S(idle_timeout), "30", 1, 3600, NULL,
     "seconds a connection may stay silent before it is closed"},
    {"header_timeout", C_INT, S(header_timeout), "10", 1, 3600, NULL,
     "seconds a client has to send a whole request head (408 and closed after)"},
    {"min_body_rate", C_INT, S(min_body_rate), "1024", 0, 1 << 30, NULL,
     "bytes/s a request body must average after header_timeout seconds (0: no minimum)"},
    {"allowed_hosts", C_STR, S(allowed_hosts), "", 0, 0, NULL,
     "Host values answered besides localhost, 127.0.0.0/8 and [::1]: host[:port],..."},
    {"trusted_proxies", C_STR, S(trusted_proxies), "", 0, 0, NULL,
     "proxies (IP or CIDR, comma-separated) whose X-Forwarded-For gives the client address"},
    {"shutdown_timeout", C_INT, S(shutdown_timeout), "5", 0, 300, NULL,
     "seconds given to in-flight requests on SIGTERM/SIGINT"},
    {"log_level", C_ENUM, S(log_level), "info", 0, 0, "debug|info|warn|error", "least severe level logged"},
    {"log_format", C_ENUM, S(log_format), "text", 0, 0, "text|json",
     "text for a terminal, json for one object per line"},
    {"access_log", C_BOOL, S(access_log), "true", 0, 0, NULL, "log one line per HTTP request"},
    {"access_log_refusals_per_s", C_INT, S(access_log_refusals_per_s), "50", 0, 1000000, NULL,
     "access log lines per second for requests refused before any handler work (400, 401, "
     "404, 429, ...); more are counted, one summary line a second (0: log them all)"},
    {"dev", C_BOOL, S(dev), "false", 0, 0, NULL,
     "development mode: create a root operator token on an empty store"},
    {"node_name", C_STR, S(node_name), "", 0, 0, NULL,
     "this node's name in events and leases"},
    {"unseal_key_file", C_STR, S(unseal_key_file), "", 0, 0, NULL,
     "auto-unseal key file, made by 'operator init --auto-unseal' and --dev"},
    {"auth_fail_limit", C_INT, S(auth_fail_limit), "20", 0, 1000000, NULL,
     "failed authentications (and init calls) one address may make per window before "
     "answers become 429 (0: no limit)"},
    {"auth_fail_window", C_INT, S(auth_fail_window), "10", 1, 3600, NULL,
     "seconds of the auth_fail_limit window"},
    {"stream_buffer", C_INT, S(stream_buffer), "1048576", 1024, 64 << 20, NULL,
     "bytes buffered per event stream for a reader that lags; past it the stream is cut"},
    {"max_parked", C_INT, S(max_parked), "1024", 1, 100000, NULL,
     "requests this node holds parked at once, waiting for work such as an upstream "
     "refresh (503 too_many_parked above)"},
    {"max_streams", C_INT, S(max_streams), "64", 1, 100000, NULL,
     "event streams open at once on this node (503 too_many_streams above)"},
    {"max_streams_per_tenant", C_INT, S(max_streams_per_tenant), "16", 1, 100000, NULL,
     "event streams one tenant may hold open at once on this node (503 too_many_streams "
     "above), so that one tenant cannot take every stream"},
    {"allow_new_store", C_BOOL, S(allow_new_store), "false", 0, 0, NULL,
     "start even though the data dir belongs to an installation whose store is now empty "
     "or another one"},
    {"outbound_connect_timeout", C_INT, S(outbound_connect_timeout), "5", 1, 300, NULL,
     "seconds an outbound HTTP request (token endpoints, metadata) may take to connect"},
    {"outbound_timeout", C_INT, S(outbound_timeout), "15", 1, 3600, NULL,
     "seconds an outbound HTTP request may take in all, queueing included"},
    {"outbound_max_response", C_INT, S(outbound_max_response), "1048576", 1024, 64 << 20, NULL,
     "largest outbound answer body in bytes (cut and failed above)"},
    {"outbound_max_concurrent", C_INT, S(outbound_max_concurrent), "64", 1, 10000, NULL,
     "outbound HTTP requests running at once; 16 times as many wait, more are refused"},
    {"outbound_ca_file", C_STR, S(outbound_ca_file), "", 0, 0, NULL,
     "PEM file of CAs trusted for outbound HTTPS besides the system's"},
    {"outbound_proxy", C_STR, S(outbound_proxy), "", 0, 0, NULL,
     "proxy for outbound HTTP (scheme://host:port)"},
    {"providers_dir", C_STR, S(providers_dir), "", 0, 0, NULL,
     "directory of provider catalogue files (NAME.json) that replace or add to the built-in "
     "providers; a bad file stops start-up"},
    {"tls_cert_file", C_STR, S(tls_cert_file), "", 0, 0, NULL,
     "PEM certificate chain (the node's own first) for HTTPS; reloaded on SIGHUP"},
    {"tls_key_file", C_STR, S(tls_key_file), "", 0, 0, NULL,
     "PEM private key of tls_cert_file (unencrypted, mode 0600); reloaded on SIGHUP"},
    {"public_url", C_STR, S(public_url), "", 0, 0, NULL,
     "the node's external base URL (https://host[:port][/path]) used in redirects, OAuth "
     "metadata and iss"},
    {"auth_cache_size", C_INT, S(auth_cache_size), "10000", 0, 1000000, NULL,
     "authenticated tokens whose lookup is kept in memory, so that a request does no store "
     "read (0: no cache; a revoke or role change reaches every node within 1 s)"},
    {"refresh_ahead", C_INT, S(refresh_ahead), "300", 1, 86400, NULL,
     "seconds before expiry an access token is refreshed (with refresh_ahead_percent: the larger "
     "wins); also the window in which a connection shows expiring_soon"},
    {"refresh_ahead_percent", C_INT, S(refresh_ahead_percent), "10", 1, 90, NULL,
     "percent of a token's lifetime before expiry it is refreshed"},
    {"refresh_max_idle", C_INT, S(refresh_max_idle), "86400", 60, 31536000, NULL,
     "seconds at most between refreshes of a connection whose refresh token expires"},
    {"refresh_timeout", C_INT, S(refresh_timeout), "30", 1, 600, NULL,
     "seconds a refresh's upstream call may take; callers waiting for it are answered within "
     "this bound"},
    {"refresh_workers", C_INT, S(refresh_workers), "8", 1, 256, NULL,
     "threads that run refreshes asked for by API calls (get token, unauthorized, refresh)"},
    {"agent_heartbeat_interval", C_INT, S(agent_heartbeat_interval), "30", 1, 86400, NULL,
     "seconds between the heartbeats an agent is expected to send"},
    {"agent_stale_after", C_INT, S(agent_stale_after), "3", 1, 1000, NULL,
     "missed heartbeat intervals after which an agent is stale (an event, once across nodes)"},
    {"refresh_concurrency", C_INT, S(refresh_concurrency), "32", 0, 10000, NULL,
     "connections the refresh engine refreshes at once at most (0: no background refresh on "
     "this node)"},
    {"refresh_per_provider", C_INT, S(refresh_per_provider), "16", 1, 10000, NULL,
     "background refreshes in flight to one provider at most"},
    {"refresh_backoff_max", C_INT, S(refresh_backoff_max), "3600", 10, 86400, NULL,
     "seconds at most between retries of a connection whose refresh failed transiently"},
    {"oauth_access_token_ttl", C_INT, S(oauth_access_token_ttl), "3600", 60, 86400, NULL,
     "seconds an access token issued by the authorization server is valid"},
    {"users_argon2_memory_kib", C_INT, S(users_argon2_memory_kib), "19456", 8, 4194304, NULL,
     "KiB of memory argon2id uses for a new end-user password hash (OWASP: 19456)"},
    {"users_argon2_iterations", C_INT, S(users_argon2_iterations), "2", 1, 100, NULL,
     "argon2id passes for a new end-user password hash"},
    {"users_hash_concurrency", C_INT, S(users_hash_concurrency), "2", 1, 64, NULL,
     "threads that hash and verify end-user passwords, off the HTTP workers"},
    {"users_hash_queue", C_INT, S(users_hash_queue), "32", 0, 100000, NULL,
     "password hashes that may wait for a thread; more are answered 503 at once"},
    {"users_session_ttl", C_INT, S(users_session_ttl), "28800", 60, 2592000, NULL,
     "seconds an end user's login session (cookie) lasts"},
    {"users_login_fail_limit", C_INT, S(users_login_fail_limit), "10", 0, 100000, NULL,
     "failed logins per address and per user in 15 minutes before 429 (0: no limit)"},
    {"oauth_signing_alg", C_ENUM, S(oauth_signing_alg), "ES256", 0, 0, "ES256|RS256|EdDSA",
     "algorithm of the authorization server's next signing key (RS256: RSA 2048); takes effect "
     "at the next rotation"},
    {"oauth_signing_rotate_every", C_INT, S(oauth_signing_rotate_every), "2592000", 0, 315360000,
     NULL, "seconds between scheduled rotations of the signing key (0: never)"},
    {"oauth_signing_publish_ahead", C_INT, S(oauth_signing_publish_ahead), "60", 0, 86400, NULL,
     "seconds a new signing key is in the JWKS before it signs"},
    {"oauth_dcr", C_ENUM, S(oauth_dcr), "token", 0, 0, "open|token|off",
     "dynamic client registration at POST /oauth2/register: open (anybody, into the default "
     "tenant), token (an operator token of the tenant with a write role), off (404)"},
    {"oauth_dcr_max_clients", C_INT, S(oauth_dcr_max_clients), "1000", 1, 1000000, NULL,
     "dynamically registered OAuth clients one tenant may hold"},
    {"oauth_dcr_rate", C_INT, S(oauth_dcr_rate), "20", 0, 1000000, NULL,
     "registration requests one address may make per minute (0: no limit)"},
    {"oauth_authorize_rate", C_INT, S(oauth_authorize_rate), "120", 0, 1000000, NULL,
     "authorization requests (flows) one address may start per minute (0: no limit); past "
     "it a 429 page"},
    {"oauth_cimd", C_BOOL, S(oauth_cimd), "true", 0, 0, NULL,
     "accept client ID metadata documents: an https URL as client_id, whose JSON document "
     "tokend fetches (public addresses only) and caches"},
    {"oauth_cimd_allow_loopback", C_BOOL, S(oauth_cimd_allow_loopback), "false", 0, 0, NULL,
     "DEVELOPMENT ONLY (refused without --dev): metadata document URLs may be http and may "
     "point at loopback and private addresses"},
    {"oauth_cimd_timeout", C_INT, S(oauth_cimd_timeout), "5", 1, 30, NULL,
     "seconds a metadata document fetch may take (the request waits parked meanwhile)"},
    {"oauth_cimd_ttl", C_INT, S(oauth_cimd_ttl), "3600", 60, 86400, NULL,
     "seconds a fetched metadata document is used before it is fetched again (a failed "
     "fetch is remembered 30 s)"},
    {"oauth_pkce_confidential", C_BOOL, S(oauth_pkce_confidential), "true", 0, 0, NULL,
     "require PKCE (S256) from confidential OAuth clients too (public clients always)"},
    {"oauth_flow_ttl", C_INT, S(oauth_flow_ttl), "600", 60, 86400, NULL,
     "seconds an authorization flow may take from the request to the code"},
    {"oauth_refresh_token_ttl", C_INT, S(oauth_refresh_token_ttl), "2592000", 0, 31536000, NULL,
     "seconds a refresh token issued by the authorization server lives (0: no expiry)"},
    {"oauth_refresh_grace", C_INT, S(oauth_refresh_grace), "0", 0, 300, NULL,
     "seconds after a refresh token's rotation during which presenting it again gets a new "
     "sibling instead of revoking its family (concurrent refreshes)"},
    {"oauth_code_ttl", C_INT, S(oauth_code_ttl), "60", 1, 600, NULL,
     "seconds an authorization code lives (RFC 6749 advises at most 600)"},
    {"console_idle_timeout", C_INT, S(console_idle_timeout), "1800", 60, 86400, NULL,
     "seconds without a request after which an admin console session ends"},
    {"console_session_lifetime", C_INT, S(console_session_lifetime), "43200", 300, 2592000, NULL,
     "seconds after sign-in at which an admin console session ends, in use or not"},
};

_Static_assert(TK_NELEM(settings) <= TK_NELEM(((struct tk_config *)0)->origins),
               "struct tk_config.origins needs a slot per setting");

static tk_rc set_value(const struct setting *s, void *f, const char *name, const char *value,
                       const char *origin, struct tk_err *e);

static const struct setting *find(const char *name)
{
    for (size_t i = 0; i < TK_NELEM(settings); i++)
        if (strcmp(settings[i].name, name) == 0) return &settings[i];
    return NULL;
}

bool tk_config_known(const char *name, bool *is_bool)
{
    const struct setting *s = find(name);
    if (s && is_bool) *is_bool = s->type == C_BOOL;
    return s != NULL;
}

static bool enum_ok(const char *enums, const char *v)
{
    size_t vl = strlen(v);
    const char *p = enums;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vl && memcmp(p, v, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

tk_rc tk_config_set(struct tk_config *c, const char *name, const char *value, const char *origin,
                    struct tk_err *e)
{
    const struct setting *s = find(name);
    if (!s) return tk_err_field(e, TK_EINVAL, "unknown_setting", name, "%s: unknown setting '%s' (see tokend help serve)", origin, name);
    void *f = (char *)c + s->off;
    tk_rc rc = set_value(s, f, name, value, origin, e);
    if (rc == TK_OK) snprintf(c->origins[s - settings], sizeof c->origins[0], "%s", origin);
    return rc;
}

const char *tk_config_origin(const struct tk_config *c, const char *name)
{
    const struct setting *s = find(name);
    return s ? c->origins[s - settings] : "?";
}

static tk_rc set_value(const struct setting *s, void *f, const char *name, const char *value,
                       const char *origin, struct tk_err *e)
{
    switch (s->type) {
    case C_STR:
    case C_ENUM:
        if (strlen(value) >= s->size)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", name,
                                "%s: %s is %zu characters long, at most %zu are allowed", origin,
                                name, strlen(value), s->size - 1);
        if (s->type == C_ENUM && !enum_ok(s->enums, value))
            return tk_err_field(e, TK_EINVAL, "invalid_setting", name,
                                "%s: %s must be one of %s, not '%.40s'", origin, name, s->enums,
                                value);
        snprintf(f, s->size, "%s", value);
        return TK_OK;
    case C_INT: {
        int64_t v;
        if (tk_parse_int(value, s->min, s->max, &v) != TK_OK)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", name,
                                "%s: %s must be an integer from %lld to %lld, not '%.40s'", origin,
                                name, (long long)s->min, (long long)s->max, value);
        if (s->size == sizeof(int))
            *(int *)f = (int)v;
        else
            *(int64_t *)f = v;
        return TK_OK;
    }
    case C_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes") ||
            !strcmp(value, "on"))
            *(bool *)f = true;
        else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no") ||
                 !strcmp(value, "off"))
            *(bool *)f = false;
        else
            return tk_err_field(e, TK_EINVAL, "invalid_setting", name,
                                "%s: %s must be true or false, not '%.40s'", origin, name, value);
        return TK_OK;
    }
    return TK_EINTERNAL;
}

void tk_config_defaults(struct tk_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < TK_NELEM(settings); i++)
        if (tk_config_set(c, settings[i].name, settings[i].def, "default", NULL) != TK_OK)
            tk_fatal("bad default for %s", settings[i].name);
}

struct ini_ctx {
    struct tk_config *c;
    const char *path;
    FILE *f;
    int line;       /* line being read, for messages */
    bool too_long;  /* a line did not fit libinih's buffer */
    struct tk_err *e;
    tk_rc rc;
};

/* fgets for libinih that counts lines and refuses a line longer than its
 * buffer (Debian builds inih with 200 bytes), which inih would otherwise
 * split into two lines: the tail of a comment must never become a setting. */
static char *ini_read(char *str, int num, void *stream)
{
    struct ini_ctx *x = stream;
    if (!fgets(str, num, x->f)) return NULL;
    x->line++;
    size_t n = strlen(str);
    if (n == (size_t)num - 1 && str[n - 1] != '\n' && !feof(x->f)) {
        x->too_long = true;
        return NULL;
    }
    return str;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *x = user;
    if (x->rc != TK_OK) return 0;
    char origin[600];
    snprintf(origin, sizeof origin, "%s line %d", x->path, x->line);
    if (section[0] && strcmp(section, "tokend") != 0) {
        x->rc = tk_err_field(x->e, TK_EINVAL, "unknown_section", section,
                             "%s: unknown section [%s]; settings go at the top or under [tokend]",
                             origin, section);
        return 0;
    }
    x->rc = tk_config_set(x->c, name, value, origin, x->e);
    return x->rc == TK_OK;
}

tk_rc tk_config_load_file(struct tk_config *c, const char *path, struct tk_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f) return tk_err_field(e, TK_EINVAL, "config_unreadable", "config", "cannot open config file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return tk_err_field(e, TK_EINVAL, "config_unreadable", "config",
                            "config file %s is not a regular file", path);
    }
    struct ini_ctx x = {c, path, f, 0, false, e, TK_OK};
    int r = ini_parse_stream(ini_read, &x, ini_cb, &x);
    fclose(f);
    if (x.rc != TK_OK) return x.rc;
    if (x.too_long)
        return tk_err_field(e, TK_EINVAL, "config_syntax", "config",
                            "%s line %d: longer than %d characters", path, x.line,
                            INI_MAX_LINE - 2);
    if (r != 0)
        return tk_err_field(e, TK_EINVAL, "config_syntax", "config",
                            "%s line %d: not 'name = value' or '[section]'", path, r);
    return TK_OK;
}

tk_rc tk_config_load_env(struct tk_config *c, char **envp, struct tk_err *e)
{
    for (char **v = envp; v && *v; v++) {
        if (strncmp(*v, "TOKEND_", 7) != 0) continue;
        const char *eq = strchr(*v, '=');
        if (!eq) continue;
        char name[64];
        size_t n = (size_t)(eq - *v) - 7;
        if (n == 0 || n >= sizeof name) continue;
        for (size_t i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)(*v)[7 + i]);
        name[n] = '\0';
        /* TOKEND_ADDR, TOKEND_TOKEN... belong to the CLI, not to serve. */
        if (!find(name)) continue;
        char origin[80];
        snprintf(origin, sizeof origin, "environment %.*s", (int)(eq - *v), *v);
        tk_rc rc = tk_config_set(c, name, eq + 1, origin, e);
        if (rc != TK_OK) return rc;
    }
    return TK_OK;
}

tk_rc tk_config_validate(struct tk_config *c, struct tk_err *e)
{
    const char *colon = strrchr(c->listen, ':');
    int64_t port;
    if (!colon || colon == c->listen || tk_parse_int(colon + 1, 0, 65535, &port) != TK_OK)
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "listen",
                            "%s: listen must be host:port with a port from 0 to 65535, not '%s'",
                            tk_config_origin(c, "listen"), c->listen);
    if (!c->data_dir[0])
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "data_dir", "%s: data_dir must not be empty",
                            tk_config_origin(c, "data_dir"));
    if (!c->store[0]) {
        int n = snprintf(c->store, sizeof c->store, "sqlite:%s/tokend.db", c->data_dir);
        if (n < 0 || (size_t)n >= sizeof c->store)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "data_dir", "data_dir is too long");
    }
    if (!c->unseal_key_file[0]) {
        int n = snprintf(c->unseal_key_file, sizeof c->unseal_key_file, "%s/unseal.key",
                         c->data_dir);
        if (n < 0 || (size_t)n >= sizeof c->unseal_key_file)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "data_dir", "data_dir is too long");
    }
    if (strncmp(c->store, "sqlite:", 7) != 0 && strncmp(c->store, "postgres://", 11) != 0 &&
        strncmp(c->store, "postgresql://", 13) != 0)
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "store",
                            "%s: store must start with sqlite: or postgres:// or postgresql://",
                            tk_config_origin(c, "store"));
    if (!strncmp(c->store, "sqlite:", 7) && !c->store[7])
        return tk_err_field(e, TK_EINVAL, "invalid_setting", "store", "%s: store sqlite: needs a file path",
                            tk_config_origin(c, "store"));
    if (!c->tls_cert_file[0] != !c->tls_key_file[0]) {
        const char *set = c->tls_cert_file[0] ? "tls_cert_file" : "tls_key_file";
        const char *missing = c->tls_cert_file[0] ? "tls_key_file" : "tls_cert_file";
        return tk_err_field(e, TK_EINVAL, "invalid_setting", missing,
                            "%s: %s is set but %s is not: set both (HTTPS) or neither (plain HTTP)",
                            tk_config_origin(c, set), set, missing);
    }
    if (c->public_url[0]) {
        char norm[sizeof c->public_url], why[160];
        if (tk_config_public_url(c->public_url, norm, sizeof norm, why, sizeof why) != TK_OK)
            return tk_err_field(e, TK_EINVAL, "invalid_setting", "public_url",
                                "%s: public_url %s (https://host[:port][/path]), not '%.80s'",
                                tk_config_origin(c, "public_url"), why, c->public_url);
        snprintf(c->public_url, sizeof c->public_url, "%s", norm);
    }
    if (c->store_pool < c->threads + 2) {
        /* every HTTP thread may hold one connection, background work needs one more */
        c->store_pool = c->threads + 2;
    }
    /* handlers run on the handler threads: each may hold one connection, and
     * background work (the store probe that /ready reads among it) keeps two */
    if (c->handler_threads == 0) c->handler_threads = c->store_pool - 2;
    if (c->store_pool < c->handler_threads + 2) c->store_pool = c->handler_threads + 2;
    return TK_OK;
}

/* What an empty default means, for help. */
static const char *empty_default(const char *name)
{
    static const char *const says[][2] = {
        {"store", "sqlite:<data_dir>/tokend.db"},
        {"allowed_hosts", "empty: a loopback listener answers only loopback names (localhost, "
                          "127.0.0.0/8, [::1]); any other listener answers any Host, with a "
                          "warning at start"},
        {"node_name", "<hostname>:<pid>"},
        {"trusted_proxies", "empty: X-Forwarded-For is ignored, the client is the peer"},
        {"providers_dir", "empty: the built-in catalogue only"},
        {"unseal_key_file", "<data_dir>/unseal.key"},
        {"outbound_ca_file", "empty: the system's CAs only"},
        {"outbound_proxy", "empty: no proxy (http_proxy, HTTPS_PROXY, ... are ignored)"},
        {"tls_cert_file", "empty: plain HTTP (a warning at start on a non-loopback listen address)"},
        {"tls_key_file", "empty: plain HTTP"},
        {"public_url", "http(s)://<listen host>:<port bound>, https with TLS settings"},
    };
    for (size_t i = 0; i < TK_NELEM(says); i++)
        if (!strcmp(says[i][0], name)) return says[i][1];
    return "empty";
}

void tk_config_help(void *out)
{
    FILE *f = out;
    fprintf(f, "Settings (file < TOKEND_NAME environment < --name flag):\n");
    for (size_t i = 0; i < TK_NELEM(settings); i++) {
        const struct setting *s = &settings[i];
        char flag[48];
        snprintf(flag, sizeof flag, "--%s", s->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        fprintf(f, "  %-26s %s", flag, s->help);
        if (s->type == C_ENUM) fprintf(f, " (%s)", s->enums);
        if (s->type == C_INT) fprintf(f, " (%lld..%lld)", (long long)s->min, (long long)s->max);
        fprintf(f, "\n  %-26s default: %s\n", "", s->def[0] ? s->def : empty_default(s->name));
    }
}
