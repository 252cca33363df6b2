/* catalog_fuzz.c: libFuzzer target for the provider catalogue parser
 * (src/upstream/catalog.c): tk_provider_parse on arbitrary bytes, and
 * tk_upstream_url_check on the same bytes as a URL.
 *
 * Invariants: an error is TK_EINVAL "invalid_provider" with a terminated
 * message naming the file and a member; an accepted entry has a name that
 * matches the file, URLs that tk_upstream_url_check accepts once the
 * {params} are filled (or none), values within the documented ranges, and
 * a JSON form that tk_provider_json can build; an accepted URL has no
 * space, control or non-ASCII byte, no user info and no fragment. */
#include "../src/upstream/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "catalog_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

#define TERMINATED(f) (strnlen((f), sizeof(f)) < sizeof(f))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tk_provider p;
    struct tk_err e;
    tk_err_clear(&e);
    tk_rc rc = tk_provider_parse("fz.json", (const char *)data, size, &p, &e);
    if (rc != TK_OK) {
        check(rc == TK_EINVAL, "errors are TK_EINVAL");
        check(!strcmp(e.code, "invalid_provider"), "code invalid_provider");
        check(TERMINATED(e.msg) && TERMINATED(e.field), "terminated error");
        check(strstr(e.msg, "fz.json") != NULL, "the message names the file");
        check(e.field[0] != '\0', "the error names a member");
    } else {
        check(!strcmp(p.name, "fz"), "name is the file's");
        check(p.default_lifetime >= 60 && p.default_lifetime <= 31536000, "default_lifetime range");
        check(p.expired_status >= 200 && p.expired_status <= 599, "expired status range");
        check(p.scope_separator == ' ' || p.scope_separator == ',', "separator");
        check(p.nparams >= 0 && p.nparams <= TK_PROVIDER_PARAMS_MAX, "params bound");
        check((unsigned)p.client_auth <= TK_CLIENT_AUTH_QUERY, "client_auth");
        check(TERMINATED(p.token_url) && TERMINATED(p.authorize_url), "urls terminated");
        json_t *j = tk_provider_json(&p);
        check(j != NULL, "json form");
        json_decref(j);
    }

    char url[TK_URL_MAX + 8];
    size_t n = size < sizeof url - 1 ? size : sizeof url - 1;
    memcpy(url, data, n);
    url[n] = '\0';
    if (tk_upstream_url_check("u", url, &e) == TK_OK) {
        size_t l = strlen(url);
        check(l > 0 && l <= TK_URL_MAX, "url length");
        for (size_t i = 0; i < l; i++)
            check((unsigned char)url[i] > 0x20 && (unsigned char)url[i] < 0x7f, "url bytes");
        check(!strchr(url, '#'), "no fragment");
        check(!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7), "scheme");
        const char *a = strstr(url, "://") + 3;
        size_t alen = strcspn(a, "/?");
        check(!memchr(a, '@', alen), "no user info");
    }
    return 0;
}
