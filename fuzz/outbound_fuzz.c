/* outbound_fuzz.c: libFuzzer target for tk_out_record and tk_out_mask
 * (src/outbound/outbound.h): the masked rendering of an exchange.
 *
 * The input is split at '\n' into: a secret, a URL, a request header, a
 * request body, the answer's Content-Type, and the answer body (the rest).
 * The record must be a JSON object that serializes, and when the secret is
 * a plausible one (4+ characters of letters, '-' and '_', starting with a
 * letter: what no re-serialization of JSON numbers or escapes can make up)
 * no string or member name in the record holds it. */
#include "../src/outbound/outbound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "outbound_fuzz: invariant failed: %s\n", what);
        abort();
    }
}

static int plausible(const char *s)
{
    size_t n = strlen(s);
    if (n < 4 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_')) return 0;
    }
    return 1;
}

static void no_secret(json_t *v, const char *secret)
{
    if (json_is_string(v)) {
        check(!strstr(json_string_value(v), secret), "no string of the record holds the secret");
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            check(!strstr(k, secret), "no member name holds the secret");
            no_secret(x, secret);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) no_secret(x, secret);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (size) memcpy(in, data, size);
    in[size] = '\0';
    char *part[6] = {0};
    size_t plen[6] = {0};
    char *p = in, *end = in + size;
    for (int i = 0; i < 6; i++) {
        part[i] = p;
        char *nl = i < 5 ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (!nl) {
            plen[i] = (size_t)(end - p);
            for (int k = i + 1; k < 6; k++)
                part[k] = end;
            break;
        }
        *nl = '\0';
        plen[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    /* secret, URL, header and content type stop at a NUL; the bodies may hold NULs */
    const char *mask[] = {part[0]};
    const char *hs[] = {part[2]};
    struct tk_out_req q = {.method = "POST",
                           .url = part[1],
                           .headers = hs,
                           .nheaders = 1,
                           .body = part[3],
                           .body_len = plen[3],
                           .mask = mask,
                           .nmask = 1};
    struct tk_out_result r = {.status = 200, .body = part[5], .body_len = plen[5]};
    snprintf(r.content_type, sizeof r.content_type, "%s", part[4]);
    snprintf(r.location, sizeof r.location, "%s", part[1]);
    json_t *rec = tk_out_record(&q, &r);
    check(json_is_object(rec), "the record is an object");
    char *txt = json_dumps(rec, JSON_COMPACT);
    check(txt != NULL, "the record serializes");
    if (plausible(part[0])) no_secret(rec, part[0]);
    free(txt);
    json_decref(rec);
    char *m = tk_out_mask(part[1], mask, 1);
    if (plausible(part[0])) check(!strstr(m, part[0]), "tk_out_mask leaves no secret");
    free(m);
    free(in);
    return 0;
}
