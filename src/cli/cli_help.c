/* cli_help.c: tokend help [COMMAND]: the usage and text of every command (see cli.h). */
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

static const struct {
    const char *name, *usage, *text;
} commands[] = {
    {"serve", "tokend serve [--config FILE] [--dev] [--SETTING VALUE]...",
     "Run the daemon in the foreground. Settings come from the INI file, then TOKEND_<SETTING>\n"
     "environment variables, then flags (--data-dir DIR or --data-dir=DIR). With --dev, the\n"
     "keyring initializes and unseals itself from <data_dir>/unseal.key, and an empty store\n"
     "gets a root operator token written to <data_dir>/root-token (mode 0600). Without\n"
     "--dev, run 'tokend operator init' once, then 'tokend operator unseal' after restarts.\n"
     "SIGTERM or SIGINT stops accepting, lets in-flight requests finish, and exits 0 (while\n"
     "still starting, it exits 1 at once); SIGHUP reloads tls_cert_file and tls_key_file\n"
     "(a pair that does not load is logged and the old one kept), and without TLS is logged\n"
     "and ignored. A data dir that belonged to an installation whose store is now empty or\n"
     "another one is refused (exit 2) unless --allow-new-store.\n"},
    {"status", "tokend status [--json] [--token-file FILE]",
     "Show whether tokend answers, is ready (store reachable), and who the token belongs to.\n"
     "Exit 0 when healthy and ready, 1 when not, 3 when tokend cannot be reached.\n"},
    {"events", "tokend events [-f] [--json] [--limit N] [--kind K] [--source S] [--action A]\n"
               "              [--outcome O] [--subject ID] [--since TIME] [--until TIME]",
     "List events newest first (at most --limit, default 50, max 1000). With -f, print the\n"
     "latest oldest-first and keep printing new ones from the event stream until interrupted\n"
     "(reconnecting after a break, resuming after the last seq printed). TIME is RFC 3339\n"
     "(2026-11-25T19:00:00Z) or milliseconds since the epoch.\n"
     "tokend events verify [--json] [--checkpoint FILE] recomputes the chain (exit 1 naming\n"
     "the first broken seq); --json prints the result with a signed checkpoint to keep\n"
     "outside the store, and --checkpoint FILE also checks the chain still passes through it.\n"},
    {"operator", "tokend operator init [--shares N] [--threshold K] [--auto-unseal] [--json]\n"
                 "       tokend operator unseal [SHARE|-] [--nonce N] | --reset\n"
                 "       tokend operator seal | rotate | status [--json]\n"
                 "       tokend operator rewrap [--no-wait]",
     "Manage the keyring that seals every secret.\n"
     "  init     create the master key, split into N shares (default 5) of which K (default 3)\n"
     "           unseal; prints the shares and a root operator token ONCE. --auto-unseal also\n"
     "           writes the server's unseal_key_file so that this node unseals itself at start.\n"
     "  unseal   give one share; without SHARE (or with -) it is read from the terminal without\n"
     "           echo, or from standard input. Prints progress k/K. Progress is per node.\n"
     "           The first share starts an attempt and gets its nonce; the next shares must\n"
     "           carry it (a stranger's share cannot disturb the attempt). The nonce is kept\n"
     "           in $XDG_RUNTIME_DIR/tokend (else ~/.cache/tokend), mode 0600, and used by\n"
     "           the next 'unseal' from this account; keepers elsewhere pass --nonce N.\n"
     "           --reset ends the attempt in progress (its shares are forgotten).\n"
     "  seal     forget the keys on this node (admin token); everything but /health, /ready,\n"
     "           /metrics and /v1/sys answers 503 until unsealed again.\n"
     "  rotate   make a new data key version for new secrets (admin token).\n"
     "  rewrap   re-seal every stored secret under the active data key version, in the\n"
     "           background (admin token); shows progress until done, or returns at once\n"
     "           with --no-wait. Resumes by itself after a restart; pauses while sealed.\n"
     "  status   initialized, sealed, progress, active data key version.\n"},
    {"tenants", "tokend tenants create NAME [--json]\n"
                "       tokend tenants list [--limit N] [--json]",
     "Manage the tenants of the node (an admin token of the default tenant).\n"
     "  create   make the tenant NAME (1 to 63 of a-z 0-9 -, starting with a letter or a\n"
     "           digit) and its first admin operator token, printed ONCE: keep it, tokend\n"
     "           stores only its hash. Give it to the tenant's administrator.\n"
     "  list     every tenant, newest first (at most --limit with it).\n"},
    {"signing-keys", "tokend signing-keys list [--json]\n"
                     "       tokend signing-keys rotate [--immediate] [--json]",
     "The authorization server's signing keys (an admin token of the default tenant).\n"
     "  list     every key: alg, status (pending: in the JWKS, not signing yet; active;\n"
     "           retired: in the JWKS, no longer signing), kid, when it signs from and when\n"
     "           it leaves the JWKS. No private material is ever shown.\n"
     "  rotate   make a key of oauth_signing_alg, in the JWKS now, signing after\n"
     "           oauth_signing_publish_ahead seconds; --immediate signs at once (a key\n"
     "           believed compromised: resource servers that cached the JWKS refuse the new\n"
     "           tokens until they fetch it again).\n"},
    {"providers", "tokend providers list [--json]\n"
                  "       tokend providers show NAME [--json]",
     "The provider catalogue: the built-in entries and those of providers_dir.\n"
     "  list     every provider: name, client authentication, whether refresh tokens rotate,\n"
     "           where the entry comes from (builtin or providers_dir), token URL.\n"
     "  show     one entry as JSON (URLs, client_auth, lifetimes, scope rules, PKCE, how an\n"
     "           expired token looks, the params an app must give).\n"},
    {"provider-apps", "tokend provider-apps create --provider P --name N --client-id ID\n"
                      "           [--client-secret-file FILE|-] [--scope S]... [--param K=V]...\n"
                      "           [--environment production|sandbox] [--token-url U]\n"
                      "           [--authorize-url U] [--client-auth A]\n"
                      "           [--rotates-refresh-tokens true|false] [--default-lifetime S]\n"
                      "       tokend provider-apps list [--provider P] [--limit N] [--json]\n"
                      "       tokend provider-apps show ID [--json]\n"
                      "       tokend provider-apps update ID [the options of create] [--no-scopes]\n"
                      "       tokend provider-apps delete ID",
     "A tenant's apps registered with the providers of the catalogue (admin or operator\n"
     "token to write, any role to read).\n"
     "The client secret is read from FILE (- for stdin, one trailing newline removed), never\n"
     "from the command line; tokend seals it and never shows it again (client_secret_set).\n"
     "--param K=V gives a param the provider needs (bitrix24: --param domain=acme.bitrix24.com).\n"
     "In update, an empty --token-url, --authorize-url, --client-auth,\n"
     "--rotates-refresh-tokens or --default-lifetime removes that override.\n"},
    {"connections", "tokend connections import --file FILE|- [--app-id ID] [--label L]\n"
                    "       tokend connections list [--status S] [--app-id ID] [--limit N] [--json]\n"
                    "       tokend connections show ID [--json]\n"
                    "       tokend connections delete ID\n"
                    "       tokend connections token ID [--min-ttl SECONDS] [--json]\n"
                    "       tokend connections refresh ID [--debug]\n"
                    "       tokend connections connect APP_ID --label L [--return-url URL] [--json]",
     "A tenant's upstream connections: tokens held at a provider app (admin or operator\n"
     "token to write and to get a token, any role to read).\n"
     "  import   store tokens from FILE (- for stdin), a JSON object of app_id, label,\n"
     "           access_token, refresh_token, expires_at, refresh_expires_at, scopes; never\n"
     "           from the command line. No answer ever shows a token again but 'token'.\n"
     "  list     status ok, expiring_soon, refresh_error, needs_reconnect or disabled.\n"
     "  token    print an access token valid for --min-ttl seconds (default 60), refreshing\n"
     "           first when needed.\n"
     "  refresh  refresh now; --debug prints the masked exchange with the provider.\n"
     "  connect  start the connect flow: prints the provider's authorization URL to open\n"
     "           in a browser (valid 10 minutes, once); the callback stores the connection.\n"
     "           'tokend events --kind connect' shows each stage.\n"},
    {"clients", "tokend clients create --name N [--email E] [--status S] [--meta K=V]... [--json]\n"
                "       tokend clients list [--status S] [--limit N] [--json]\n"
                "       tokend clients show ID [--json]\n"
                "       tokend clients update ID [--name N] [--email E] [--status S] [--meta K=V]...\n"
                "       tokend clients activate|suspend|disable ID",
     "Machine clients (agents, services) that present client tokens (tkc_): admin or operator\n"
     "token to write, any role to read. S is active, suspended or disabled; a suspended\n"
     "or disabled client's tokens fail validation (client_suspended, client_inactive) on\n"
     "every node within a second. --meta K=V sets a metadata member (update: the whole\n"
     "object is replaced by the --meta given); --email \"\" removes the email.\n"},
    {"oauth", "tokend oauth clients create --name N [--type confidential|public] [--app-type web|native]\n"
              "           [--auth-method M] [--redirect-uri U]... [--grant G]... [--scope S]...\n"
              "           [--default-scope S]... [--rotate-refresh true|false] [--json]\n"
              "       tokend oauth clients list|show ID|update ID [...]|delete ID|rotate-secret ID\n"
              "       tokend oauth scopes create NAME [--description D] | list | update ID\n"
              "           --description D | delete ID",
     "The authorization server's clients and the tenant's scope catalogue (admin or operator\n"
     "token to write, any role to read). A confidential client's secret (tks_) is printed\n"
     "once, at create and rotate-secret. M is client_secret_basic, client_secret_post or\n"
     "none (public); G is authorization_code, refresh_token or client_credentials; every\n"
     "scope must be in the catalogue first. update replaces each list given.\n"},
    {"doctor", "tokend doctor [--json] [--token-file FILE]\n"
               "       tokend doctor client ID [--json]\n"
               "       tokend doctor connection ID [--json]\n"
               "       tokend doctor token [--json] < token",
     "Check the node and say what is wrong, one finding a line with the next step: reachable,\n"
     "store (from /ready), schema version against this binary's, keyring (sealed, not\n"
     "initialized, corrupt), and with an admin token of the default tenant: clock skew against\n"
     "the store, dev mode, the auto-unseal key file's mode, TLS, the event chain, refused\n"
     "requests and other nodes seen in the last hour. Without a token it runs the checks that\n"
     "need none and says which it skipped. --json prints [{check, status, message, next_step}]\n"
     "(status ok, info, skip, warn or fail). Exit 0 when nothing fails, 1 when something does,\n"
     "3 when tokend cannot be reached.\n"
     "'doctor client ID' explains a machine client: its state, tokens (preview, status, last\n"
     "used), agents (last heartbeat), validation failures of the last hour by reason, and a\n"
     "one-sentence conclusion (exit 1 when something is wrong). 'doctor token' validates the\n"
     "client token given on standard input (never as an argument) exactly as read, one final\n"
     "newline dropped, and says why it fails and what is around it (exit 1 when invalid).\n"
     "'doctor connection ID' explains an upstream connection: status, token expiry, the last\n"
     "10 refresh attempts (source, outcome, HTTP status, error code) and the conclusion in\n"
     "one sentence with the next step (exit 1 unless it is fine).\n"},
    {"version", "tokend version", "Print the version of this binary.\n"},
    {"help", "tokend help [COMMAND]", "Explain a command.\n"},
};

int tk_cli_help(const char *command)
{
    if (!command) {
        printf("tokend %s: a token service that owns every token a product depends on.\n\n"
               "Commands:\n", TK_VERSION);
        /* the usage lines, continuation lines aligned under the first */
        for (size_t i = 0; i < TK_NELEM(commands); i++) {
            const char *u = commands[i].usage;
            printf("  ");
            for (; *u; u++) {
                putchar(*u);
                if (*u == '\n') {
                    while (u[1] == ' ') u++;
                    printf("  %s", strncmp(u + 1, "tokend", 6) ? "      " : "");
                }
            }
            putchar('\n');
        }
        printf("\nClient commands reach tokend at TOKEND_ADDR (default http://127.0.0.1:8750)\n"
               "with TOKEND_TOKEN, --token-file FILE, or ./tokend-data/root-token.\n"
               "An https:// TOKEND_ADDR is verified against the system's CAs, or against\n"
               "the PEM file TOKEND_CACERT names (a private CA, a self-signed certificate).\n"
               "'tokend help COMMAND' explains one command.\n");
        return 0;
    }
    for (size_t i = 0; i < TK_NELEM(commands); i++) {
        if (strcmp(commands[i].name, command) != 0) continue;
        printf("usage: %s\n\n%s", commands[i].usage, commands[i].text);
        if (!strcmp(command, "serve")) {
            printf("\n");
            tk_config_help(stdout);
        }
        return 0;
    }
    fprintf(stderr, "tokend: no command '%s'; 'tokend help' lists them\n", command);
    return EXIT_USAGE;
}
