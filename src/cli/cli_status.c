/* cli_status.c: tokend status (see cli.h). */
#include "cli.h"
#include "cli_internal.h"

#include "../common/issued.h"
#include "../config/config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdint.h>
#include <termios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int tk_cli_status(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    int rc = tk_cli_client_args(&c, "status", argc, argv);
    if (rc) return rc;
    json_t *health = NULL, *ready = NULL, *who = NULL;
    long hs = tk_cli_get(&c, "/health", &health);
    if (hs < 0) return EXIT_UNREACHABLE;
    long rs = tk_cli_get(&c, "/ready", &ready);
    json_t *seal = NULL;
    long ss = tk_cli_get(&c, "/v1/sys/seal-status", &seal);
    long ws = c.token[0] ? tk_cli_get(&c, "/v1/whoami", &who) : 0;
    int exit = (hs == 200 && rs == 200 && (ws == 200 || ws == 0)) ? 0 : EXIT_SERVER;
    if (c.json) {
        json_t *o = json_pack("{s:s, s:O, s:O, s:o, s:o}", "address", c.addr, "health", health,
                              "ready", ready, "keyring", seal ? json_incref(seal) : json_null(),
                              "operator", who ? json_incref(who) : json_null());
        char *s = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("%-10s %s\n", "address", c.addr);
        printf("%-10s %s\n", "health", hs == 200 ? "ok" : "FAILING");
        if (rs == 200)
            printf("%-10s ready (store %s, schema %lld, node %s)\n", "ready", tk_cli_jstr(ready, "store"),
                   (long long)json_integer_value(json_object_get(ready, "schema_version")),
                   tk_cli_jstr(ready, "node"));
        else
            printf("%-10s NOT READY: %s (%s)\n", "ready", tk_cli_jstr(ready, "message"),
                   tk_cli_jstr(ready, "reason"));
        if (ss == 200 && !json_is_true(json_object_get(seal, "initialized")))
            printf("%-10s NOT INITIALIZED: run 'tokend operator init'\n", "keyring");
        else if (ss == 200 && json_is_true(json_object_get(seal, "sealed")))
            printf("%-10s SEALED: %lld of %lld shares given; run 'tokend operator unseal'\n",
                   "keyring", (long long)json_integer_value(json_object_get(seal, "progress")),
                   (long long)json_integer_value(json_object_get(seal, "t")));
        else if (ss == 200)
            printf("%-10s unsealed (data key version %lld)\n", "keyring",
                   (long long)json_integer_value(json_object_get(seal, "data_version")));
        if (ws == 200)
            printf("%-10s %s (%s), tenant %s\n", "operator", tk_cli_jstr(who, "name"), tk_cli_jstr(who, "role"),
                   tk_cli_jstr(who, "tenant_id"));
        else if (ws == 0)
            printf("%-10s no token (set TOKEND_TOKEN or --token-file)\n", "operator");
        else
            printf("%-10s REFUSED: %s (%s)\n", "operator", tk_cli_jstr(who, "message"),
                   tk_cli_jstr(who, "reason"));
    }
    json_decref(health);
    json_decref(ready);
    json_decref(seal);
    json_decref(who);
    return exit;
}
