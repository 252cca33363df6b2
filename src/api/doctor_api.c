/* doctor_api.c: GET /v1/sys/doctor, the node's own facts that `tokend
 * doctor` needs and no other route gives: the store's clock next to the
 * node's, dev mode, the auto-unseal key file's mode, the listen address and
 * the schema versions. Read-only; an admin of the default tenant (node facts
 * such as file paths are the node administrator's, not a tenant's). */
#include "api.h"

#include "../tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

void tk_h_sys_doctor(struct tk_req *r)
{
    struct tk_app *app = r->app;
    struct tk_db *db = tk_api_db(r);
    if (!db) return;
    struct tk_err e;
    int64_t before = tk_now_ms(), store_ms = 0;
    if (tk_db_clock_ms(db, &store_ms, &e) != TK_OK) {
        tk_api_reply_error(r, &e, NULL);
        return;
    }
    int64_t after = tk_now_ms();
    /* the node's clock at the middle of the round trip */
    int64_t node_ms = before + (after - before) / 2;

    const struct tk_config *cfg = app->cfg;
    json_t *key = json_object();
    json_object_set_new(key, "path", json_string(cfg->unseal_key_file));
    struct stat sb;
    if (stat(cfg->unseal_key_file, &sb) == 0) {
        char mode[8];
        snprintf(mode, sizeof mode, "%04o", (unsigned)(sb.st_mode & 07777));
        json_object_set_new(key, "exists", json_true());
        json_object_set_new(key, "mode", json_string(mode));
        json_object_set_new(key, "private", json_boolean((sb.st_mode & 077) == 0));
    } else {
        json_object_set_new(key, "exists", json_false());
        json_object_set_new(key, "mode", json_null());
        json_object_set_new(key, "private", json_null());
        if (errno != ENOENT) json_object_set_new(key, "error", json_string(strerror(errno)));
    }
    /* TLS: whether it is on and, if so, the certificate in use and the counters */
    json_t *tls = json_pack("{s:b, s:s}", "enabled", app->tls != NULL, "public_url",
                            tk_api_public_url(app));
    if (app->tls) {
        struct tk_tls_info in;
        struct tk_tls_stats ts;
        tk_tls_info(app->tls, &in);
        tk_tls_stats(app->tls, &ts);
        char not_after[40];
        tk_time_fmt(in.not_after_ms, not_after, sizeof not_after);
        json_t *x = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:I, s:I, s:I, s:I}", "cert_file", in.cert_file,
            "key_file", in.key_file, "subject", in.subject, "fingerprint_sha256", in.fingerprint,
            "not_after", not_after, "expires_in", (json_int_t)ts.cert_expiry_seconds, "chain_length",
            in.chain_len, "handshakes_ok", (json_int_t)ts.handshakes_ok, "handshakes_failed",
            (json_int_t)ts.handshakes_failed, "reloads_ok", (json_int_t)ts.reloads_ok,
            "reloads_failed", (json_int_t)ts.reloads_failed);
        json_object_update(tls, x);
        json_decref(x);
    }
    tk_reply_json(r, 200,
                  json_pack("{s:s, s:b, s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:o, s:o}", "node", app->node,
                            "dev", cfg->dev, "listen", cfg->listen, "store",
                            tk_store_backend(app->store), "node_time_ms", (json_int_t)node_ms,
                            "store_time_ms", (json_int_t)store_ms, "round_trip_ms",
                            (json_int_t)(after - before), "schema_version",
                            tk_store_schema_version(app->store), "schema_latest",
                            tk_store_schema_latest(), "unseal_key_file", key, "tls", tls));
}
