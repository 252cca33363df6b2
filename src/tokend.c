/* tokend.c: the tokend binary: "serve" runs the daemon, every other command
 * is a client of it (src/cli). */
#include "api/api.h"
#include "cli/cli.h"
#include "common/log.h"
#include "config/config.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static int serve(int argc, char **argv)
{
    struct tk_config cfg;
    struct tk_err e;
    tk_config_defaults(&cfg);
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tokend serve: --config needs a file\n");
                return 2;
            }
            file = argv[i + 1];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            file = argv[i] + 9;
        }
    }
    if (file && tk_config_load_file(&cfg, file, &e) != TK_OK) goto bad;
    if (tk_config_load_env(&cfg, environ, &e) != TK_OK) goto bad;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return tk_cli_help("serve");
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "tokend serve: unexpected argument '%s' (see tokend help serve)\n", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, a + 2, n);
        name[n] = '\0';
        for (char *p = name; *p; p++)
            if (*p == '-') *p = '_';
        if (!strcmp(name, "config")) {
            if (!eq) i++;
            continue;
        }
        bool is_bool = false;
        if (!tk_config_known(name, &is_bool)) {
            fprintf(stderr, "tokend serve: unknown flag '%s' (see tokend help serve)\n", a);
            return 2;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            static const char *bools[] = {"true", "false", "yes", "no", "on", "off", "1", "0"};
            bool next_is_bool = false;
            for (size_t b = 0; is_bool && i + 1 < argc && b < TK_NELEM(bools); b++)
                if (!strcmp(argv[i + 1], bools[b])) next_is_bool = true;
            if (next_is_bool) value = argv[++i];
            else if (is_bool) value = "true";
            else if (i + 1 < argc) value = argv[++i];
            else {
                fprintf(stderr, "tokend serve: %s needs a value\n", a);
                return 2;
            }
        }
        char origin[80];
        snprintf(origin, sizeof origin, "flag --%s", name);
        if (tk_config_set(&cfg, name, value, origin, &e) != TK_OK) goto bad;
    }
    if (tk_config_validate(&cfg, &e) != TK_OK) goto bad;
    static const char *levels[] = {"debug", "info", "warn", "error"};
    enum tk_log_level lvl = TK_LOG_INFO;
    for (int i = 0; i < 4; i++)
        if (!strcmp(cfg.log_level, levels[i])) lvl = (enum tk_log_level)i;
    tk_log_setup(lvl, strcmp(cfg.log_format, "json") ? TK_LOG_TEXT : TK_LOG_JSON);
    return tk_serve(&cfg);
bad:
    fprintf(stderr, "tokend serve: %s\n", e.msg);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        tk_cli_help(NULL);
        return 2;
    }
    tk_json_setup();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) {
        curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread: the outbound client */
        int rc = serve(argc - 2, argv + 2);
        curl_global_cleanup();
        return rc;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("tokend %s (libcurl %s)\n", TK_VERSION, curl_version_info(CURLVERSION_NOW)->version);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
        return tk_cli_help(argc > 2 ? argv[2] : NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(cmd, "status"))
        rc = tk_cli_status(argc - 2, argv + 2);
    else if (!strcmp(cmd, "events"))
        rc = tk_cli_events(argc - 2, argv + 2);
    else if (!strcmp(cmd, "operator"))
        rc = tk_cli_operator(argc - 2, argv + 2);
    else if (!strcmp(cmd, "tenants"))
        rc = tk_cli_tenants(argc - 2, argv + 2);
    else if (!strcmp(cmd, "doctor"))
        rc = tk_cli_doctor(argc - 2, argv + 2);
    else if (!strcmp(cmd, "providers"))
        rc = tk_cli_providers(argc - 2, argv + 2);
    else if (!strcmp(cmd, "provider-apps"))
        rc = tk_cli_provider_apps(argc - 2, argv + 2);
    else if (!strcmp(cmd, "connections") && argc > 2 && !strcmp(argv[2], "connect"))
        rc = tk_cli_connect(argc - 3, argv + 3);
    else if (!strcmp(cmd, "connections"))
        rc = tk_cli_connections(argc - 2, argv + 2);
    else if (!strcmp(cmd, "clients"))
        rc = tk_cli_clients(argc - 2, argv + 2);
    else if (!strcmp(cmd, "signing-keys"))
        rc = tk_cli_signing_keys(argc - 2, argv + 2);
    else if (!strcmp(cmd, "oauth"))
        rc = tk_cli_oauth(argc - 2, argv + 2);
    else {
        fprintf(stderr, "tokend: unknown command '%s'; 'tokend help' lists the commands\n", cmd);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
