/*
 * cli.h: the command-line tool. Every command but serve is an HTTP client of
 * a running tokend (libcurl), found at TOKEND_ADDR (default
 * http://127.0.0.1:8750) and authenticated with TOKEND_TOKEN, --token-file,
 * or ./tokend-data/root-token when that exists. Tables for people, --json
 * for scripts; exit status 0 on success, 1 on an error the server reported,
 * 2 on a usage error, 3 when tokend cannot be reached.
 */
#ifndef TK_CLI_H
#define TK_CLI_H

int tk_cli_status(int argc, char **argv);
int tk_cli_events(int argc, char **argv);
int tk_cli_operator(int argc, char **argv);
int tk_cli_tenants(int argc, char **argv);
/* tokend providers list|show; tokend provider-apps create|list|show|update|delete. */
int tk_cli_providers(int argc, char **argv);
int tk_cli_provider_apps(int argc, char **argv);
/* tokend connections import|list|show|delete|token|refresh. */
int tk_cli_connections(int argc, char **argv);
/* tokend connections connect APP_ID --label L [--return-url U] (cli_connect.c). */
int tk_cli_connect(int argc, char **argv);
/* tokend clients create|list|show|update|activate|suspend|disable. */
int tk_cli_clients(int argc, char **argv);
/* tokend signing-keys list|rotate (the authorization server's keys). */
int tk_cli_signing_keys(int argc, char **argv);
/* tokend oauth clients create|list|show|update|delete|rotate-secret and
 * tokend oauth scopes create|list|update|delete (cli_oauth.c). */
int tk_cli_oauth(int argc, char **argv);
/* tokend doctor: check the node; 0 nothing fails, 1 something does, 3 unreachable. */
int tk_cli_doctor(int argc, char **argv);
/* Print help for a command (NULL: overview) to stdout; 0 if known. */
int tk_cli_help(const char *command);

#endif
