/*
 * config.h: tokend's settings, declared once in a table (Redis
 * standardConfig) with type, default, limits and help. They are read from
 * the INI file (--config), then TOKEND_<NAME> environment variables, then
 * --name flags, later ones winning, and validated as a whole at the end: an
 * error names the setting, where its value came from and what is allowed.
 */
#ifndef TK_CONFIG_H
#define TK_CONFIG_H

#include "../common/tk.h"

struct tk_config {
    char listen[128];    /* host:port */
    char data_dir[512];
    char store[1024];    /* sqlite:PATH | postgres://... | postgresql://... */
    char store_check[8]; /* quick | full | off */
    int events_retention_days; /* 0: keep events forever */
    int events_queue;    /* events waiting for the event writer at most */
    int events_timeout;  /* seconds tk_event_emit waits for its batch's commit */
    int threads;         /* HTTP worker threads */
    int handler_threads; /* threads running route handlers off the HTTP threads */
    int store_pool;      /* connections in the store pool */
    int64_t max_body;    /* bytes */
    int64_t max_header;  /* bytes of request line + headers per connection */
    int max_connections;
    int max_connections_per_ip;
    int idle_timeout;    /* seconds */
    int header_timeout;  /* seconds for a whole request head */
    int min_body_rate;   /* bytes/s a body must keep up after header_timeout of grace */
    char allowed_hosts[1024]; /* Host values answered besides loopback (comma-separated) */
    char trusted_proxies[1024]; /* IPs/CIDRs whose X-Forwarded-For is believed */
    int shutdown_timeout; /* seconds to finish in-flight requests */
    char log_level[8];
    char log_format[8];
    bool access_log;
    int access_log_refusals_per_s; /* refusal lines per second in the access log; 0: all */
    bool dev;
    char node_name[64];
    char unseal_key_file[1024]; /* auto-unseal key file (default <data_dir>/unseal.key) */
    int auth_fail_limit;  /* failed authentications per address and window; 0: no limit */
    int auth_fail_window; /* seconds */
    bool allow_new_store; /* start a new installation in a data dir that had another */
    int outbound_connect_timeout; /* seconds */
    int outbound_timeout;         /* seconds, total */
    int outbound_max_response;    /* bytes */
    int outbound_max_concurrent;
    char outbound_ca_file[1024];  /* extra CAs; "" none */
    char outbound_proxy[512];     /* "" no proxy */
    char providers_dir[1024]; /* *.json catalogue entries that override or add providers */
    char tls_cert_file[1024]; /* PEM chain, leaf first; "" (with tls_key_file ""): plain HTTP */
    char tls_key_file[1024];  /* PEM private key of the leaf */
    char public_url[512];     /* external base URL, normalized; "": derived at start */
    int stream_buffer;    /* bytes buffered per event stream before a slow reader is cut */
    int max_streams;      /* event streams open at once */
    int max_parked;       /* parked requests held at once */
    int max_streams_per_tenant; /* of which one tenant may hold this many */
    int auth_cache_size;  /* cached issued-secret lookups; 0: no cache */
    int refresh_ahead;         /* seconds before expiry a token is refreshed */
    int refresh_ahead_percent; /* percent of the lifetime (the larger wins) */
    int refresh_max_idle;      /* seconds between refreshes of expiring refresh tokens */
    int refresh_timeout;       /* seconds: the upstream call and parked callers' bound */
    int refresh_workers;       /* threads for API-triggered refreshes */
    int agent_heartbeat_interval; /* seconds between an agent's heartbeats */
    int agent_stale_after;        /* missed intervals before an agent is stale */
    int refresh_concurrency;   /* background refreshes at once; 0: engine off */
    int refresh_per_provider;  /* background refreshes in flight per provider */
    int refresh_backoff_max;   /* seconds: the longest retry delay after transient failures */
    int oauth_access_token_ttl; /* seconds an issued access token (JWT) is valid */
    int users_argon2_memory_kib; /* argon2id memory of new password hashes */
    int users_argon2_iterations; /* argon2id passes of new password hashes */
    int users_hash_concurrency;  /* threads hashing passwords at once */
    int users_hash_queue;        /* password hashes waiting at most (more: 503) */
    int users_session_ttl;       /* seconds an end user's login session lasts */
    int users_login_fail_limit;  /* failed logins per address and per user in 15 min */
    char oauth_signing_alg[8];      /* ES256 | RS256 | EdDSA: the next signing key's */
    int oauth_signing_rotate_every; /* seconds between scheduled key rotations; 0: never */
    int oauth_signing_publish_ahead; /* seconds a new key is published before it signs */
    char oauth_dcr[8];          /* open | token | off: dynamic client registration */
    int oauth_dcr_max_clients;  /* dynamically registered clients per tenant at most */
    int oauth_dcr_rate;         /* registrations per address and minute; 0: no limit */
    int oauth_authorize_rate;   /* authorization flows per address and minute; 0: no limit */
    bool oauth_cimd;            /* client ID metadata documents (an https client_id) */
    bool oauth_cimd_allow_loopback; /* development: http and loopback document URLs */
    int oauth_cimd_timeout;     /* seconds a document fetch may take */
    int oauth_cimd_ttl;         /* seconds a fetched document is used */
    bool oauth_pkce_confidential; /* PKCE required of confidential clients too */
    int oauth_flow_ttl;           /* seconds from the authorization request to the code */
    int oauth_refresh_token_ttl; /* seconds a refresh token (tkr_) lives; 0: no expiry */
    int oauth_refresh_grace;     /* seconds a rotated refresh token may be reused */
    int oauth_code_ttl;          /* seconds an authorization code (tka_) lives */
    int console_idle_timeout;     /* seconds without a request that end a console session */
    int console_session_lifetime; /* seconds after sign-in that end a console session */
    char origins[128][80]; /* where each setting's value came from, by table index */
};

/* Fill c with defaults. */
void tk_config_defaults(struct tk_config *c);

/* Apply the INI file at path (must exist). */
tk_rc tk_config_load_file(struct tk_config *c, const char *path, struct tk_err *e);
/* Apply TOKEND_* variables from envp. */
tk_rc tk_config_load_env(struct tk_config *c, char **envp, struct tk_err *e);
/* Set one setting by name from a string, as a flag would. "origin" is shown
 * in errors ("--listen", "TOKEND_LISTEN", "tokend.ini line 3"). */
tk_rc tk_config_set(struct tk_config *c, const char *name, const char *value, const char *origin,
                    struct tk_err *e);
/* Check relations between settings and fill derived ones (store from data_dir). */
tk_rc tk_config_validate(struct tk_config *c, struct tk_err *e);
/* Does a setting of this name exist, and is it a boolean (flag without value)? */
bool tk_config_known(const char *name, bool *is_bool);
/* Where the value of a setting came from ("default", "flag --listen",
 * "environment TOKEND_LISTEN", "tokend.ini line 3"). */
const char *tk_config_origin(const struct tk_config *c, const char *name);
/* Check an absolute http(s) URL without query, fragment or user info and
 * write its normal form to out (n bytes): scheme and host lowercased, the
 * default port and trailing slashes left out. On TK_EINVAL why (whyn bytes)
 * says what is wrong ("must start with https:// or http://"). */
tk_rc tk_config_public_url(const char *in, char *out, size_t n, char *why, size_t whyn);
/* Print the settings table for --help. */
void tk_config_help(void *FILE_out);

#endif
