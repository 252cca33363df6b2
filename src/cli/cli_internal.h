/*
 * cli_internal.h: what the command files of src/cli/ share (cli.c defines
 * it): the client of a running tokend, its requests, and error printing.
 * One file per noun: cli_status.c, cli_events.c, cli_operator.c (the
 * keyring's), cli_tenants.c, cli_help.c. Not an interface of tokend outside
 * src/cli/.
 */
#ifndef TK_CLI_INTERNAL_H
#define TK_CLI_INTERNAL_H

#include "../common/issued.h"

#include <jansson.h>
#include <stdbool.h>

#define EXIT_SERVER 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

struct tk_cli_client {
    char addr[256];
    char token[TK_ISSUED_MAX + 8];
    bool json;
    /* With conn_error set (256 bytes), tk_cli_request writes there why
     * tokend could not be reached instead of printing it (doctor). */
    char *conn_error;
};

/* The answer that was not what the API promises: status 0 and *out an
 * error object, after saying so on stderr. */
#define ST_BAD_ANSWER 0L

/* TOKEND_ADDR and the token (token_file, TOKEND_TOKEN, or
 * ./tokend-data/root-token); 0 or an exit status after saying why. */
int tk_cli_client_init(struct tk_cli_client *c, const char *token_file);
/* For commands whose only arguments are --json and --token-file FILE:
 * parse them (an unknown one is a usage error naming `tokend help cmd`)
 * and set up the client; 0 or an exit status after saying why. */
int tk_cli_client_args(struct tk_cli_client *c, const char *cmd, int argc, char **argv);
/* method path with an optional JSON body; on success *out is the parsed
 * JSON answer (any status), every string stripped of control characters.
 * Returns the HTTP status, -1 after printing why tokend could not be
 * reached, or ST_BAD_ANSWER after printing that a 2xx answer was not a
 * JSON object. */
long tk_cli_request(const struct tk_cli_client *c, const char *method, const char *path,
                    json_t *body, json_t **out);
long tk_cli_get(const struct tk_cli_client *c, const char *path, json_t **out);
/* TLS settings of a libcurl easy handle (a CURL *) for tokend's address:
 * verification on, with TOKEND_CACERT as the CA file when set. Every
 * command's handle goes through it. */
void tk_cli_curl_tls(void *curl);
/* For diagnosis only (doctor): handshake with tokend's https address
 * WITHOUT verifying its certificate, send nothing, and read the leaf
 * certificate it presents: subject (n bytes) and expiry (ms since the
 * epoch). false when there is no https address, no handshake or no
 * certificate information. */
bool tk_cli_peer_cert(const struct tk_cli_client *c, char *subject, size_t n,
                      long long *not_after_ms);
/* "tokend: what: HTTP status code (reason): message" on stderr. */
void tk_cli_print_error(const char *what, long status, json_t *body);
/* Pretty JSON on stdout (the buffer wiped after: it may hold a token). */
void tk_cli_print_json(json_t *o);
/* GET every page of a list route into *all (a new array of the pages'
 * member arrays): path is the route with its filters ("/v1/users" or
 * "/v1/users?status=active", already escaped); limit 0 follows next_cursor
 * to the end, 1000 a page, else one page of limit. what names the command
 * in errors. 0, or EXIT_UNREACHABLE / EXIT_SERVER after printing why (*all
 * NULL then). */
int tk_cli_list_all(const struct tk_cli_client *c, const char *what, const char *path,
                    const char *member, long long limit, json_t **all);
/* Print {member: all} as JSON (--json) or each element with row (after the
 * header line); takes nothing. */
void tk_cli_print_list(const struct tk_cli_client *c, const char *member, json_t *all,
                       const char *header, void (*row)(json_t *));
/* The end of a command that expects status want: EXIT_UNREACHABLE when the
 * request did not reach tokend (st < 0), the error printed and EXIT_SERVER
 * for another status, otherwise out printed (as JSON with --json or without
 * a printer) and 0. Takes out. */
int tk_cli_finish(const struct tk_cli_client *c, const char *what, long st, long want, json_t *out,
                  void (*printer)(json_t *));
/* Strip control characters from every string of v (keys with some are
 * dropped): what a server sent is never printed raw to a terminal. */
void tk_cli_clean_json(json_t *v);
/* The string member k of o, or "-". */
const char *tk_cli_jstr(json_t *o, const char *k);

/* tokend doctor client ID, tokend doctor token (cli_clients.c). */
int tk_cli_doctor_client(int argc, char **argv);
int tk_cli_doctor_connection(int argc, char **argv);
int tk_cli_doctor_token(int argc, char **argv);
/* tokend doctor flow ID, tokend doctor oauth-client CLIENT_ID (cli_oauth_flows.c). */
int tk_cli_doctor_flow(int argc, char **argv);
int tk_cli_doctor_oauth_client(int argc, char **argv);

#endif
