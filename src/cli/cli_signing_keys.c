/* cli_signing_keys.c: tokend signing-keys list|rotate (see cli.h): the
 * authorization server's signing keys (GET /v1/sys/signing-keys, POST
 * /v1/sys/signing-keys/rotate; an admin token of the default tenant). */
#include "cli.h"
#include "cli_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *why, const char *arg)
{
    fprintf(stderr, "tokend signing-keys: %s%s%s%s (see tokend help signing-keys)\n", why,
            arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

static void print_key(json_t *k)
{
    printf("%-8s %-10s %-44s %-24s %s\n", tk_cli_jstr(k, "alg"), tk_cli_jstr(k, "status"),
           tk_cli_jstr(k, "kid"), tk_cli_jstr(k, "active_at"),
           json_is_string(json_object_get(k, "unpublish_at")) ? tk_cli_jstr(k, "unpublish_at")
                                                              : "-");
}

static int keys_list(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    json_t *body = NULL;
    long st = tk_cli_get(&c, "/v1/sys/signing-keys", &body);
    json_t *keys = json_object_get(body, "signing_keys");
    if (st < 0) {
        rc = EXIT_UNREACHABLE;
    } else if (st != 200) {
        tk_cli_print_error("signing-keys list", st, body);
        rc = EXIT_SERVER;
    } else if (!json_is_array(keys)) {
        fprintf(stderr, "tokend signing-keys list: the answer (HTTP 200) has no \"signing_keys\" "
                        "array; is TOKEND_ADDR a tokend?\n");
        rc = EXIT_SERVER;
    } else if (c.json) {
        tk_cli_print_json(body);
    } else {
        printf("%-8s %-10s %-44s %-24s %s\n", "ALG", "STATUS", "KID", "SIGNS FROM", "LEAVES JWKS");
        for (size_t i = 0; i < json_array_size(keys); i++)
            print_key(json_array_get(keys, i));
    }
    json_decref(body);
    return rc;
}

static int keys_rotate(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL;
    bool immediate = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (!strcmp(argv[i], "--immediate"))
            immediate = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    json_t *req = immediate ? json_pack("{s:b}", "immediate", 1) : json_object(), *body = NULL;
    long st = tk_cli_request(&c, "POST", "/v1/sys/signing-keys/rotate", req, &body);
    json_decref(req);
    if (st < 0) {
        rc = EXIT_UNREACHABLE;
    } else if (st != 201) {
        tk_cli_print_error("signing-keys rotate", st, body);
        rc = EXIT_SERVER;
    } else if (c.json) {
        tk_cli_print_json(body);
    } else {
        printf("new signing key %s (%s): in the JWKS now, signs from %s\n",
               tk_cli_jstr(body, "kid"), tk_cli_jstr(body, "alg"), tk_cli_jstr(body, "active_at"));
    }
    json_decref(body);
    return rc;
}

int tk_cli_signing_keys(int argc, char **argv)
{
    if (argc < 1) return usage("which one: list or rotate", NULL);
    if (!strcmp(argv[0], "list")) return keys_list(argc - 1, argv + 1);
    if (!strcmp(argv[0], "rotate")) return keys_rotate(argc - 1, argv + 1);
    return usage("unknown verb", argv[0]);
}
