/* cli_connect.c: tokend connections connect APP_ID --label L
 * [--return-url U] [--json] [--token-file F]: start the connect flow
 * (POST /v1/connect/{app_id}/start) and print the authorization URL to
 * open in a browser. The rest of `tokend connections` is conn's
 * (cli_connections.c); tokend.c hands the verb connect here. */
#include "cli.h"
#include "cli_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *why, const char *arg)
{
    fprintf(stderr,
            "tokend connections connect: %s%s%s%s\n"
            "usage: tokend connections connect APP_ID --label LABEL [--return-url URL] [--json] "
            "[--token-file FILE]\n",
            why, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return EXIT_USAGE;
}

int tk_cli_connect(int argc, char **argv)
{
    struct tk_cli_client c = {0};
    const char *token_file = NULL, *app_id = NULL, *label = NULL, *return_url = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--token-file"))
            token_file = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--label"))
            label = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--return-url"))
            return_url = argv[++i];
        else if (argv[i][0] != '-' && !app_id)
            app_id = argv[i];
        else
            return usage("unknown or incomplete argument", argv[i]);
    }
    if (!app_id) return usage("which provider app: give its APP_ID", NULL);
    if (!label) return usage("--label is required (the name of the connection to be made)", NULL);
    int rc = tk_cli_client_init(&c, token_file);
    if (rc) return rc;
    char *esc = curl_easy_escape(NULL, app_id, 0);
    char path[512];
    int w = snprintf(path, sizeof path, "/v1/connect/%s/start", esc ? esc : "");
    curl_free(esc);
    if (w < 0 || (size_t)w >= sizeof path) return usage("APP_ID is too long", NULL);
    json_t *body = json_pack("{s:s}", "label", label);
    if (return_url) json_object_set_new(body, "return_url", json_string(return_url));
    json_t *out = NULL;
    long st = tk_cli_request(&c, "POST", path, body, &out);
    json_decref(body);
    if (st < 0) return EXIT_UNREACHABLE;
    if (st != 200) {
        tk_cli_print_error("connections connect", st, out);
        json_decref(out);
        return EXIT_SERVER;
    }
    if (c.json) {
        char *s = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", s ? s : "null");
        free(s);
    } else {
        printf("Open this URL in a browser to connect (valid until %s, once):\n\n%s\n\n"
               "tokend stores the connection when the provider sends the browser back to\n"
               "%s; `tokend events --kind connect` shows each step.\n",
               tk_cli_jstr(out, "state_expires_at"), tk_cli_jstr(out, "authorize_url"),
               tk_cli_jstr(out, "redirect_uri"));
    }
    json_decref(out);
    return 0;
}
