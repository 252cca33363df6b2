/*
 * authorize.h: what the authorization endpoint checks (authorize.c, pure:
 * no store, no HTTP) and the flows' rows (flows.c), beyond what oauth.h
 * declares for the other parts. Each check that refuses writes the RFC
 * 6749 error code and one sentence that names the difference (the flow's
 * reason), and where it knows one, what to change (the flow's next step).
 */
#ifndef TK_OAUTH_AUTHORIZE_H
#define TK_OAUTH_AUTHORIZE_H

#include "oauth.h"

/* A refusal: the RFC error code, the sentence, the next step ("" if none). */
#define TK_OAUTH_REASON_MAX 1024
struct tk_oauth_refusal {
    char error[40];
    char reason[TK_OAUTH_REASON_MAX];
    char next_step[TK_OAUTH_REASON_MAX];
};

#define TK_OAUTH_SCOPE_PARAM_MAX 2048 /* the scope parameter, bytes */
#define TK_OAUTH_SCOPES_MAX 64        /* scopes in one request */
#define TK_OAUTH_SCOPE_MAX 128        /* one scope's name */
#define TK_OAUTH_CHALLENGE_MIN 43
#define TK_OAUTH_CHALLENGE_MAX 128

/* Is v (n bytes, as received) a value a parameter may have: at most max
 * bytes, valid UTF-8, no control character (NUL, CR, LF, ...)? false with
 * a sentence naming name in why (n bytes). */
bool tk_oauth_param_ok(const char *name, const char *v, size_t n, size_t max, char *why,
                       size_t why_n);

/* The parts of an absolute URI "scheme://[userinfo@]host[:port]path[?query][#fragment]",
 * as offsets into it; host without brackets for IPv6. */
struct tk_oauth_uri {
    char scheme[16];
    char userinfo[256];
    char host[256];
    char port[8]; /* "" when absent */
    char path[TK_OAUTH_URI_MAX];
    char query[TK_OAUTH_URI_MAX];
    bool has_userinfo, has_query, has_fragment, ipv6;
};
/* Parse an absolute URI with an authority; false when it is not one. */
bool tk_oauth_uri_parse(const char *s, struct tk_oauth_uri *u);
/* Is u an RFC 8252 §7.3 loopback redirect (http, 127.0.0.1 or [::1])? */
bool tk_oauth_uri_loopback(const struct tk_oauth_uri *u);

/* Is uri a redirect URI registered for c: exact string comparison with
 * one of c->redirect_uris, or for a native client a loopback URI that
 * equals a registered loopback URI but for the port (RFC 8252 §7.3). */
bool tk_oauth_redirect_match(const struct tk_oauth_client *c, const char *uri);
/* The sentence for a uri that does not match: "redirect_uri 'https://x/cb/'
 * does not match the registered 'https://x/cb' (trailing slash)", naming
 * the closest registered URI and how it differs (scheme, host, port, path,
 * trailing slash, case, query, userinfo, fragment), and the next step
 * ("register 'https://x/cb/' for the client or make the client send
 * 'https://x/cb'"). */
void tk_oauth_redirect_explain(const struct tk_oauth_client *c, const char *uri,
                               struct tk_oauth_refusal *out);

/* The scopes of a request: scope (NULL: not given) split on spaces,
 * repeats dropped, each allowed for c; none given: c's default scopes.
 * TK_OK with *granted (a new array); else TK_EINVAL and out says why
 * (invalid_scope). */
tk_rc tk_oauth_scopes_resolve(const struct tk_oauth_client *c, const char *scope, json_t **granted,
                              struct tk_oauth_refusal *out);

/* PKCE (RFC 7636, S256 only): challenge and method as given (NULL:
 * absent); required: the client must send one. TK_OK or TK_EINVAL with
 * out (invalid_request). */
tk_rc tk_oauth_pkce_check(const char *challenge, const char *method, bool required,
                          struct tk_oauth_refusal *out);

/* RFC 8707 resource: an absolute URI without a fragment. */
tk_rc tk_oauth_resource_check(const char *resource, struct tk_oauth_refusal *out);

/* Does json array a hold string s? */
bool tk_oauth_json_has(json_t *a, const char *s);

/* ---- flows (flows.c) ---- */

/* The stages in order; tk_oauth_stage_valid says whether s is one. */
extern const char *const tk_oauth_stages[6];
bool tk_oauth_stage_valid(const char *s);

/* Insert flow f (f->id made here, stage authorize_received, status active
 * or, with refusal, failed at authorize_received with its error, reason and
 * next step). f->created_at and f->expires_at must be set. */
tk_rc tk_oauth_flow_insert(struct tk_db *db, struct tk_oauth_flow *f,
                           const struct tk_oauth_refusal *refusal, struct tk_err *e);
/* Move flow id to stage at now (its *_at column, updated_at; user_id when
 * not NULL; status completed at token_issued). TK_ENOTFOUND for an unknown
 * flow or a stage that is not one. */
tk_rc tk_oauth_flow_set_stage(struct tk_db *db, const char *tenant_id, const char *id,
                              const char *stage, const char *user_id, int64_t now,
                              struct tk_err *e);
/* Mark flow id failed at stage with error, reason and next_step (may be
 * NULL). */
tk_rc tk_oauth_flow_set_failed(struct tk_db *db, const char *tenant_id, const char *id,
                               const char *stage, const char *error, const char *reason,
                               const char *next_step, int64_t now, struct tk_err *e);

/* Drop at most limit flows started before id floor_id (a uuid7 of the
 * retention cutoff) and not moved since before_ms, except those a code
 * still names; *n the number dropped. */
tk_rc tk_oauth_flows_purge(struct tk_db *db, const char *floor_id, int64_t before_ms, int limit,
                           int64_t *n, struct tk_err *e);

/* A flow that never reached token_exchanged is stuck once it has not
 * moved for this long (the code's lifetime: past it a code is dead). */
#define TK_OAUTH_STUCK_AFTER_MS (TK_OAUTH_CODE_TTL * 1000LL)

/* List flows of tenant_id, newest first: client_id (NULL: any), status
 * (NULL, active, stuck, failed, completed), before (cursor: ids below it),
 * at most limit; *out an array of tk_oauth_flow_json objects, next_out the
 * cursor or "". */
tk_rc tk_oauth_flow_list(struct tk_db *db, const char *tenant_id, const char *client_id,
                         const char *status, const char *before, int limit, int64_t now,
                         json_t **out, char next_out[TK_UUID_LEN + 1], struct tk_err *e);
/* The flow id of tenant_id as the API shows it (stages with their times,
 * failed_stage, error, reason, next_step, stuck). TK_ENOTFOUND. */
tk_rc tk_oauth_flow_show(struct tk_db *db, const char *tenant_id, const char *id, int64_t now,
                         json_t **out, struct tk_err *e);
/* Where a flow (tk_oauth_flow_show's object) stopped and what to change:
 * {stopped_at, status, conclusion, next_step} (new reference). */
json_t *tk_oauth_flow_diagnose(json_t *flow, int64_t now);

#endif
