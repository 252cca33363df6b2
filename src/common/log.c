/* log.c: see log.h. Lines are written with one write(2) so that threads
 * never interleave inside a line. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum tk_log_level tk_log_min = TK_LOG_INFO;
static enum tk_log_format log_format = TK_LOG_TEXT;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void tk_log_setup(enum tk_log_level min, enum tk_log_format fmt)
{
    tk_log_min = min;
    log_format = fmt;
}

static void emit(const char *line, size_t len)
{
    while (len) {
        ssize_t w = write(STDERR_FILENO, line, len);
        if (w <= 0) return;
        line += w;
        len -= (size_t)w;
    }
}

/* ---- UTF-8 and escaping ---- */

size_t tk_utf8_char(const unsigned char *p, size_t n)
{
    if (n == 0) return 0;
    unsigned c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong below U+0800 */
        if (c == 0xed) hi = 0x9f; /* surrogates U+D800..DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90; /* overlong below U+10000 */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0, C1 (overlong), F5..FF */
    }
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* Escape s[0..n) into out[0..room): JSON string escapes for '"', '\\' and
 * control characters (C0, DEL and C1, so that nothing reaches a terminal
 * raw), U+FFFD for bytes that are not UTF-8. Stops before a character whose
 * escape does not fit. Returns the bytes written; *used is the input
 * consumed. */
static size_t escape(char *out, size_t room, const char *s, size_t n, size_t *used)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            /* printable ASCII, the common case: as it is */
            if (o == room) break;
            out[o++] = (char)c;
            i++;
            continue;
        }
        char tmp[8];
        const char *piece = tmp;
        size_t plen, in = tk_utf8_char(p + i, n - i);
        if (in == 0) {
            piece = "\xef\xbf\xbd";
            plen = 3;
            in = 1;
        } else if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            plen = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            tmp[0] = '\\';
            tmp[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            plen = 2;
        } else if (c < 0x20 || c == 0x7f || (c == 0xc2 && p[i + 1] < 0xa0)) {
            unsigned cp = c == 0xc2 ? p[i + 1] : c;
            snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            plen = 6;
        } else {
            piece = (const char *)p + i;
            plen = in;
        }
        if (plen > room - o) break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += in;
    }
    *used = i;
    return o;
}

/* ---- the JSON line writer ---- */

#define CUT_MARK "..."
/* Kept free at every step: the cut mark, the closing quote, '}' and NUL. */
#define RESERVE (sizeof CUT_MARK - 1 + 3)

void tk_jline_begin(struct tk_jline *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->cap = cap;
    j->len = 0;
    j->first = true;
    buf[j->len++] = '{';
    buf[j->len] = '\0';
}

static size_t room(const struct tk_jline *j)
{
    return j->cap - j->len > RESERVE ? j->cap - j->len - RESERVE : 0;
}

/* ,"key": if it fits with need more bytes after it. */
static bool key(struct tk_jline *j, const char *k, size_t need)
{
    size_t kl = strlen(k);
    if (kl + 4 + need > room(j)) return false;
    if (!j->first) j->buf[j->len++] = ',';
    j->first = false;
    j->buf[j->len++] = '"';
    memcpy(j->buf + j->len, k, kl);
    j->len += kl;
    j->buf[j->len++] = '"';
    j->buf[j->len++] = ':';
    return true;
}

void tk_jline_str(struct tk_jline *j, const char *k, const char *v, size_t max)
{
    if (!key(j, k, 2)) return;
    size_t n = strnlen(v, max);
    j->buf[j->len++] = '"';
    size_t used;
    /* room() keeps RESERVE free: the mark, the quote, '}' and NUL fit */
    j->len += escape(j->buf + j->len, room(j), v, n, &used);
    if (used < n || v[n] != '\0') {
        memcpy(j->buf + j->len, CUT_MARK, sizeof CUT_MARK - 1);
        j->len += sizeof CUT_MARK - 1;
    }
    j->buf[j->len++] = '"';
    j->buf[j->len] = '\0';
}

void tk_jline_int(struct tk_jline *j, const char *k, long long v)
{
    /* by hand: every access log line has four of these */
    char rev[24], num[24];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    int r = 0, n = 0;
    do {
        rev[r++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) num[n++] = '-';
    while (r) num[n++] = rev[--r];
    if (!key(j, k, (size_t)n)) return;
    memcpy(j->buf + j->len, num, (size_t)n);
    j->len += (size_t)n;
    j->buf[j->len] = '\0';
}

void tk_jline_null(struct tk_jline *j, const char *k)
{
    if (!key(j, k, 4)) return;
    memcpy(j->buf + j->len, "null", 4);
    j->len += 4;
    j->buf[j->len] = '\0';
}

size_t tk_jline_end(struct tk_jline *j)
{
    j->buf[j->len++] = '}';
    j->buf[j->len] = '\0';
    return j->len;
}

/* ---- records ---- */

void tk_log_write(enum tk_log_level lvl, const char *fmt, ...)
{
    char msg[1024], ts[32], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tk_time_fmt(tk_now_ms(), ts, sizeof ts);
    size_t n;
    if (log_format == TK_LOG_JSON) {
        struct tk_jline j;
        tk_jline_begin(&j, line, sizeof line - 1);
        tk_jline_str(&j, "at", ts, SIZE_MAX);
        tk_jline_str(&j, "level", level_names[lvl], SIZE_MAX);
        tk_jline_str(&j, "msg", msg, SIZE_MAX);
        n = tk_jline_end(&j);
    } else {
        int h = snprintf(line, sizeof line, "%s %-5s ", ts, level_names[lvl]);
        size_t used;
        n = (size_t)h;
        n += escape(line + n, sizeof line - 1 - n - 3, msg, strlen(msg), &used);
        if (used < strlen(msg)) {
            memcpy(line + n, CUT_MARK, 3);
            n += 3;
        }
    }
    line[n++] = '\n';
    emit(line, n);
}

/* ---- the access log's batches ----
 *
 * Access log lines are not written one write(2) each: every thread that
 * writes them keeps a buffer of its own (no lock shared with other request
 * threads) and writes it in one go when the next line does not fit, or
 * when tk_log_flush runs (the HTTP sweeper, every 250 ms, and at stop;
 * and at exit). A line is still never split between writes. Lines from
 * tk_log_write go out at once, so an access log line may follow a later
 * record by up to that quarter of a second. */
#define LBUF_SIZE 16384

struct lbuf {
    pthread_mutex_t mu; /* the owner's append, a flusher's write */
    size_t len;
    struct lbuf *prev, *next;
    char data[LBUF_SIZE];
};

static pthread_mutex_t lbufs_mu = PTHREAD_MUTEX_INITIALIZER; /* the list; taken before an lbuf's */
static struct lbuf *lbufs;
static pthread_key_t lbuf_key;
static pthread_once_t lbuf_once = PTHREAD_ONCE_INIT;
static _Thread_local struct lbuf *my_lbuf;

static void lbuf_write_locked(struct lbuf *b)
{
    emit(b->data, b->len);
    b->len = 0;
}

/* A thread ends: its lines out, its buffer gone. */
static void lbuf_gone(void *p)
{
    struct lbuf *b = p;
    pthread_mutex_lock(&lbufs_mu);
    if (b->prev) b->prev->next = b->next;
    else lbufs = b->next;
    if (b->next) b->next->prev = b->prev;
    pthread_mutex_unlock(&lbufs_mu);
    pthread_mutex_lock(&b->mu);
    lbuf_write_locked(b);
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_destroy(&b->mu);
    free(b);
    my_lbuf = NULL; /* this thread's: a line written after this makes a new one */
}

static void lbuf_setup(void)
{
    pthread_key_create(&lbuf_key, lbuf_gone);
    atexit(tk_log_flush);
}

static struct lbuf *lbuf_mine(void)
{
    if (my_lbuf) return my_lbuf;
    pthread_once(&lbuf_once, lbuf_setup);
    struct lbuf *b = calloc(1, sizeof *b);
    if (!b) return NULL; /* then unbatched */
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_lock(&lbufs_mu);
    b->next = lbufs;
    if (lbufs) lbufs->prev = b;
    lbufs = b;
    pthread_mutex_unlock(&lbufs_mu);
    pthread_setspecific(lbuf_key, b);
    my_lbuf = b;
    return b;
}

void tk_log_flush(void)
{
    pthread_mutex_lock(&lbufs_mu);
    for (struct lbuf *b = lbufs; b; b = b->next) {
        pthread_mutex_lock(&b->mu);
        if (b->len) lbuf_write_locked(b);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&lbufs_mu);
}

static void write_now(const char *pre, size_t pl, const char *obj, size_t len)
{
    struct iovec iov[3] = {{(void *)pre, pl}, {(void *)obj, len}, {(void *)"\n", 1}};
    ssize_t w = writev(STDERR_FILENO, iov, 3);
    if (w >= 0 && (size_t)w < pl + len + 1) {
        /* a short write (a full pipe): the rest, in order */
        size_t done = (size_t)w;
        for (int i = 0; i < 3; i++) {
            if (done >= iov[i].iov_len) {
                done -= iov[i].iov_len;
                continue;
            }
            emit((const char *)iov[i].iov_base + done, iov[i].iov_len - done);
            done = 0;
        }
    }
}

void tk_log_json_line(const char *obj, size_t len)
{
    /* no allocation but the thread's buffer, once: the access log is on
     * every request's path */
    char pre[48];
    size_t pl = 0;
    if (log_format != TK_LOG_JSON) {
        tk_time_fmt(tk_now_ms(), pre, sizeof pre);
        pl = strlen(pre);
        memcpy(pre + pl, " info  ", 7);
        pl += 7;
    }
    size_t need = pl + len + 1;
    struct lbuf *b = need <= LBUF_SIZE ? lbuf_mine() : NULL;
    if (!b) {
        write_now(pre, pl, obj, len);
        return;
    }
    pthread_mutex_lock(&b->mu);
    if (b->len + need > LBUF_SIZE) lbuf_write_locked(b);
    memcpy(b->data + b->len, pre, pl);
    memcpy(b->data + b->len + pl, obj, len);
    b->data[b->len + pl + len] = '\n';
    b->len += need;
    pthread_mutex_unlock(&b->mu);
}
