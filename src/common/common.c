/* common.c: errors, memory, pools, buffers, time, randomness, ids. */
#include "tk.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>
#include <malloc.h>
#include <openssl/crypto.h>

/* ---- errors ---- */

static void err_vset(struct tk_err *e, tk_rc rc, const char *code, const char *field,
                     const char *fmt, va_list ap)
{
    e->rc = rc;
    snprintf(e->code, sizeof e->code, "%s", code ? code : tk_rc_name(rc));
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

tk_rc tk_err_set(struct tk_err *e, tk_rc rc, const char *code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        err_vset(e, rc, code, NULL, fmt, ap);
        va_end(ap);
    }
    return rc;
}

tk_rc tk_err_field(struct tk_err *e, tk_rc rc, const char *code, const char *field,
                   const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        err_vset(e, rc, code, field, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void tk_err_clear(struct tk_err *e)
{
    if (e) memset(e, 0, sizeof *e);
}

static const struct {
    int status;
    const char *name;
} rc_table[] = {
    [TK_OK] = {200, "ok"},
    [TK_EINVAL] = {400, "bad_request"},
    [TK_EAUTH] = {401, "unauthenticated"},
    [TK_EFORBIDDEN] = {403, "forbidden"},
    [TK_ENOTFOUND] = {404, "not_found"},
    [TK_EMETHOD] = {405, "method_not_allowed"},
    [TK_ECONFLICT] = {409, "conflict"},
    [TK_ETOOBIG] = {413, "too_large"},
    [TK_ERATE] = {429, "rate_limited"},
    [TK_EUPSTREAM] = {502, "upstream_error"},
    [TK_EUNAVAIL] = {503, "unavailable"},
    [TK_EINTERNAL] = {500, "internal"},
};

int tk_rc_status(tk_rc rc)
{
    return (unsigned)rc < TK_NELEM(rc_table) ? rc_table[rc].status : 500;
}

const char *tk_rc_name(tk_rc rc)
{
    return (unsigned)rc < TK_NELEM(rc_table) ? rc_table[rc].name : "internal";
}

/* ---- memory ---- */

void tk_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tokend: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *tk_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) tk_fatal("out of memory allocating %zu bytes", n);
    return p;
}

void *tk_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) tk_fatal("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *tk_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) tk_fatal("out of memory reallocating %zu bytes", n);
    return q;
}

char *tk_strdup(const char *s)
{
    return tk_strndup(s, strlen(s));
}

char *tk_strndup(const char *s, size_t n)
{
    char *p = tk_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void tk_wipe(void *p, size_t n)
{
    if (p && n) OPENSSL_cleanse(p, n);
}

/* ---- pools ---- */

#define POOL_CHUNK 4096

struct pool_chunk {
    struct pool_chunk *next;
    size_t used, size;
    max_align_t data[];
};

struct tk_pool {
    struct pool_chunk *head;
};

struct tk_pool *tk_pool_new(void)
{
    return tk_calloc(1, sizeof(struct tk_pool));
}

void *tk_pool_alloc(struct tk_pool *p, size_t n)
{
    size_t a = sizeof(max_align_t);
    n = (n + a - 1) / a * a;
    if (!n) n = a;
    struct pool_chunk *c = p->head;
    if (!c || c->size - c->used < n) {
        size_t sz = n > POOL_CHUNK ? n : POOL_CHUNK;
        c = tk_malloc(sizeof *c + sz);
        c->used = 0;
        c->size = sz;
        c->next = p->head;
        p->head = c;
    }
    void *r = (char *)c->data + c->used;
    c->used += n;
    return r;
}

char *tk_pool_strndup(struct tk_pool *p, const char *s, size_t n)
{
    char *r = tk_pool_alloc(p, n + 1);
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *tk_pool_strdup(struct tk_pool *p, const char *s)
{
    return s ? tk_pool_strndup(p, s, strlen(s)) : NULL;
}

char *tk_pool_printf(struct tk_pool *p, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    char *r = tk_pool_alloc(p, (size_t)n + 1);
    vsnprintf(r, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return r;
}

void tk_pool_free(struct tk_pool *p)
{
    if (!p) return;
    struct pool_chunk *c = p->head;
    while (c) {
        struct pool_chunk *n = c->next;
        free(c);
        c = n;
    }
    free(p);
}

/* ---- buffers ---- */

void tk_buf_init(struct tk_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

tk_rc tk_buf_add(struct tk_buf *b, const void *p, size_t n)
{
    if (n > b->max || b->len > b->max - n) return TK_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        if (cap > b->max + 1) cap = b->max + 1;
        /* not realloc: buffers carry secrets, and the old block is wiped */
        char *d = tk_malloc(cap);
        if (b->data) {
            memcpy(d, b->data, b->len);
            tk_wipe(b->data, b->cap);
            free(b->data);
        }
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return TK_OK;
}

tk_rc tk_buf_addstr(struct tk_buf *b, const char *s)
{
    return tk_buf_add(b, s, strlen(s));
}

tk_rc tk_buf_printf(struct tk_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    tk_rc rc;
    if (n < 0) {
        rc = TK_EINTERNAL;
    } else if ((size_t)n < sizeof small) {
        rc = tk_buf_add(b, small, (size_t)n);
    } else {
        char *big = tk_malloc((size_t)n + 1);
        vsnprintf(big, (size_t)n + 1, fmt, ap2);
        rc = tk_buf_add(b, big, (size_t)n);
        free(big);
    }
    va_end(ap2);
    return rc;
}

/* ---- UTF-8 ---- */

/* The length of the well-formed UTF-8 sequence at p (n bytes available;
 * RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or
 * minus the length of the maximal ill-formed subpart there (at least 1),
 * which the caller replaces with one U+FFFD (Unicode's "best practice"). */
static int utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) need = 2, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) need = 2;
    else if (c == 0xed) need = 2, hi = 0x9f; /* no surrogates */
    else if (c >= 0xee && c <= 0xef) need = 2;
    else if (c == 0xf0) need = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c == 0xf4) need = 3, hi = 0x8f;
    else return -1; /* 0x80..0xc1 (continuation, overlong lead), 0xf5..0xff */
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned char d = p[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xbf)) return -i;
    }
    return need + 1;
}

bool tk_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(p + i, n - i);
        if (k < 0) return false;
        i += (size_t)k;
    }
    return true;
}

char *tk_utf8_fix(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    /* each bad byte becomes at most 3 bytes */
    char *out = tk_malloc(n * 3 + 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq(p + i, n - i);
        if (k > 0) {
            memcpy(out + o, p + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += (size_t)-k;
        }
    }
    out[o] = '\0';
    return out;
}

tk_rc tk_buf_json_str(struct tk_buf *b, const char *s)
{
    if (!s) return tk_buf_add(b, "null", 4);
    static const char hx[] = "0123456789abcdef";
    tk_rc rc = tk_buf_add(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), run = 0, i = 0;
    while (rc == TK_OK && i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        int k = c < 0x80 ? 1 : utf8_seq(u + i, n - i);
        /* valid multi-byte characters pass, but C1 controls (U+0080..U+009F,
         * 0xc2 0x80..0x9f) are escaped like C0 ones: a terminal may act on them */
        if (k > 1 && !(c == 0xc2 && u[i + 1] < 0xa0)) {
            i += (size_t)k;
            continue;
        }
        rc = tk_buf_add(b, s + run, i - run);
        char esc[8] = {'\\', (char)c, 0};
        size_t en = 2;
        unsigned cp = c;
        if (k == 2) cp = u[i + 1]; /* a C1 control: its code point is the second byte */
        if (k < 0) {
            memcpy(esc, "\xef\xbf\xbd", 3); /* U+FFFD for an ill-formed subpart */
            en = 3;
        } else if (c == '\n') esc[1] = 'n';
        else if (c == '\r') esc[1] = 'r';
        else if (c == '\t') esc[1] = 't';
        else if (cp < 0x20 || cp >= 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hx[cp >> 4];
            esc[5] = hx[cp & 15];
            en = 6;
        }
        if (rc == TK_OK) rc = tk_buf_add(b, esc, en);
        i += (size_t)(k < 0 ? -k : k);
        run = i;
    }
    if (rc == TK_OK) rc = tk_buf_add(b, s + run, n - run);
    if (rc == TK_OK) rc = tk_buf_add(b, "\"", 1);
    return rc;
}

void tk_buf_reset(struct tk_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void tk_buf_free(struct tk_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void tk_buf_free_wipe(struct tk_buf *b)
{
    tk_wipe(b->data, b->cap);
    tk_buf_free(b);
}

/* ---- time ---- */

int64_t tk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tk_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tk_mono_ms(void)
{
    return tk_mono_us() / 1000;
}

static void two(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

void tk_time_fmt(int64_t ms, char *out, size_t n)
{
    /* By hand, and the date and time to the second once a second per
     * thread: every access log line has one or two of these, every event
     * listed one or two. */
    static _Thread_local int64_t cached_s = -1;
    static _Thread_local char cached[20]; /* YYYY-MM-DDTHH:MM:SS */
    int64_t sec = ms / 1000;
    if (ms >= 0 && ms <= INT64_C(253402300799999) && n >= 25) {
        if (sec != cached_s) {
            /* civil from days (Howard Hinnant), not gmtime_r: glibc's takes
             * a process-wide lock */
            int64_t z = sec / 86400 + 719468;
            int sod = (int)(sec % 86400);
            int64_t era = z / 146097;
            int doe = (int)(z - era * 146097);
            int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
            int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            int mp = (5 * doy + 2) / 153;
            int d = doy - (153 * mp + 2) / 5 + 1;
            int m = mp < 10 ? mp + 3 : mp - 9;
            int y = (int)(yoe + era * 400) + (m <= 2);
            two(cached, y / 100);
            two(cached + 2, y % 100);
            cached[4] = '-';
            two(cached + 5, m);
            cached[7] = '-';
            two(cached + 8, d);
            cached[10] = 'T';
            two(cached + 11, sod / 3600);
            cached[13] = ':';
            two(cached + 14, sod / 60 % 60);
            cached[16] = ':';
            two(cached + 17, sod % 60);
            cached_s = sec;
        }
        int frac = (int)(ms % 1000);
        memcpy(out, cached, 19);
        out[19] = '.';
        out[20] = (char)('0' + frac / 100);
        two(out + 21, frac % 100);
        out[23] = 'Z';
        out[24] = '\0';
        return;
    }
    time_t s = (time_t)sec;
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

tk_rc tk_time_parse(const char *s, int64_t *ms)
{
    if (!s || !*s) return TK_EINVAL;
    if (tk_parse_int(s, 0, INT64_C(253402300799999), ms) == TK_OK) return TK_OK;
    int Y, M, D, h, m, sec;
    if (strlen(s) < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) ||
        s[7] != '-' || digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &m) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return TK_EINVAL;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (Y < 1970 || M < 1 || M > 12 || D < 1 || h > 23 || m > 59 || sec > 59 ||
        D > mdays[M - 1] + (M == 2 && leap))
        return TK_EINVAL;
    const char *p = s + 19;
    int frac = 0;
    if (*p == '.') {
        int nd = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nd < 3) frac = frac * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0 || nd > 9) return TK_EINVAL;
        for (; nd < 3; nd++) frac *= 10;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return TK_EINVAL;
        off = (oh * 60 + om) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return TK_EINVAL;
    }
    if (*p) return TK_EINVAL;
    /* days from civil (Howard Hinnant) */
    int y = Y - (M <= 2);
    int era = y / 400;
    int yoe = y - era * 400;
    int doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    int64_t t = ((days * 24 + h) * 60 + m) * 60 + sec - (int64_t)off * 60;
    t = t * 1000 + frac;
    /* The same range as the integer form, so that every value formats and
     * parses back. */
    if (t < 0 || t > INT64_C(253402300799999)) return TK_EINVAL;
    *ms = t;
    return TK_OK;
}

/* ---- randomness and ids ---- */

void tk_random(void *p, size_t n)
{
    unsigned char *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            tk_fatal("getrandom failed: %s", strerror(errno));
        }
        b += r;
        n -= (size_t)r;
    }
}

/* The last id's millisecond (48 bits, as in the id) and counter (16 bits),
 * ms << 16 | seq, moved on by compare-and-swap: no lock on the path of
 * every request. */
static _Atomic uint64_t uuid_state;

/* Random bytes for ids from a per-thread buffer filled by one getrandom
 * call per 64 ids (ids are not secrets; tk_random stays unbuffered for
 * what is). Bytes are wiped as they are handed out. */
static void id_random(unsigned char *b, size_t n)
{
    static _Thread_local unsigned char pool[1024];
    static _Thread_local size_t left;
    if (left < n) {
        tk_random(pool, sizeof pool);
        left = sizeof pool;
    }
    unsigned char *from = pool + sizeof pool - left;
    memcpy(b, from, n);
    memset(from, 0, n);
    left -= n;
}

void tk_uuid7(char out[TK_UUID_LEN + 1])
{
    unsigned char b[16];
    id_random(b, sizeof b);
    int64_t ms = tk_now_ms();
    /* 12 bits of rand_a plus 14 of rand_b hold a counter (from a random
     * start below 2^10) so that ids made in one millisecond by this process
     * still sort in order; a counter past 2^16 carries into the millisecond. */
    uint64_t fresh = (uint64_t)ms << 16 | ((uint64_t)(b[6] & 0x03) << 8 | b[7]);
    uint64_t old = atomic_load(&uuid_state), next;
    do {
        next = (old >> 16) >= (uint64_t)ms ? old + 1 : fresh;
    } while (!atomic_compare_exchange_weak(&uuid_state, &old, next));
    ms = (int64_t)(next >> 16);
    uint32_t seq = (uint32_t)(next & 0xffff);
    for (int i = 0; i < 6; i++) b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((seq >> 22) & 0x0f));
    b[7] = (unsigned char)(seq >> 14);
    b[8] = (unsigned char)(0x80 | ((seq >> 8) & 0x3f));
    b[9] = (unsigned char)seq;
    static const char hx[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hx[b[i] >> 4];
        out[o++] = hx[b[i] & 15];
    }
    out[o] = '\0';
}

bool tk_uuid_valid(const char *s)
{
    if (!s || strlen(s) != TK_UUID_LEN) return false;
    for (int i = 0; i < TK_UUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

void tk_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = '\0';
}

tk_rc tk_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s) return TK_EINVAL;
    const char *p = s;
    if (*p == '-') p++;
    if (!*p) return TK_EINVAL;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return TK_EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return TK_EINVAL;
    *out = v;
    return TK_OK;
}

bool tk_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* jansson's allocator, for every JSON value: freed memory is wiped first,
 * since request and response JSON carries secrets (tokens shown once,
 * unseal shares). */
static void *json_alloc(size_t n)
{
    return tk_malloc(n);
}

static void json_free_wiped(void *p)
{
    if (!p) return;
    tk_wipe(p, malloc_usable_size(p));
    free(p);
}

void tk_json_setup(void)
{
    json_set_alloc_funcs(json_alloc, json_free_wiped);
}
