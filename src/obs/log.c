/*
 * log.c — structured log lines (see log.h). Formatting happens on the
 * caller's stack; the only shared state is set once before threads start.
 */
#include "agentd/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <stdatomic.h>
#include <unistd.h>

#include "agentd/text.h"

/* Changed by a reload while other threads log: atomic. */
static _Atomic int g_min_level = LOG_INFO;
static enum log_format g_format = LOG_FORMAT_JSON;
static int g_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level min_level, enum log_format format, int fd)
{
    atomic_store_explicit(&g_min_level, (int)min_level, memory_order_relaxed);
    g_format = format;
    g_fd = fd;
}

int log_parse_level(const char *s, enum log_level *ret)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *ret = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load_explicit(&g_min_level, memory_order_relaxed);
}

void log_set_level(enum log_level min_level)
{
    atomic_store_explicit(&g_min_level, (int)min_level, memory_order_relaxed);
}

/* A bounded appender: once full, further output is dropped and `full` set. */
struct out {
    char *buf;
    size_t len, cap;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full)
        return;
    if (n > o->cap - o->len) {
        n = o->cap - o->len;
        o->full = true;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* JSON string body: escapes quotes, backslashes and control bytes; valid UTF-8 passes through,
   and each byte that does not start a valid UTF-8 sequence becomes U+FFFD, so the line is always
   valid JSON whatever the caller passed. */
static void put_json_str(struct out *o, const char *s)
{
    size_t len = strlen(s);
    put(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = text_utf8_char_len(s + i, len - i);
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(o, esc, 2);
        } else if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c < 0x20 || c == 0x7f) {
            putf(o, "\\u%04x", c);
        } else if (n == 0) {
            put(o, "\\ufffd", 6);
            n = 1;
        } else {
            put(o, s + i, n);
        }
        i += n;
    }
    put(o, "\"", 1);
}

/* Text format: the bytes a token may hold unquoted (printable ASCII without the separators
   ' ' and '=' and the quoting characters '"' and '\\'). */
static bool text_bare_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

/* Bare "-" stands for a NULL value, so a string "-" is quoted like an empty one. */
static bool text_needs_quotes(const char *s, size_t len)
{
    if (len == 0 || strcmp(s, "-") == 0)
        return true;
    for (size_t i = 0; i < len; i++)
        if (!text_bare_byte((unsigned char)s[i]))
            return true;
    return false;
}

/* Length of the non-ASCII character at p if it may appear raw inside quotes; 0 when its bytes
   are escaped instead: invalid UTF-8, C1 controls (U+0080..U+009F) and U+2028/U+2029, which
   some terminals and viewers take as line breaks. */
static size_t text_raw_char_len(const char *p, size_t avail)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t n = text_utf8_char_len(p, avail);
    if (n == 2 && u[0] == 0xc2 && u[1] < 0xa0)
        return 0;
    if (n == 3 && u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9))
        return 0;
    return n;
}

/* One token of a text line (msg, key or string value), escaped as log.h describes: bare when
   every byte is safe there, else quoted with \\ \" \n \r \t and \xHH. */
static void put_text_str(struct out *o, const char *s)
{
    size_t len = strlen(s);
    if (!text_needs_quotes(s, len)) {
        put(o, s, len);
        return;
    }
    put(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : text_raw_char_len(s + i, len - i);
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            put(o, esc, 2);
        } else if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c == '\r') {
            put(o, "\\r", 2);
        } else if (c == '\t') {
            put(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f || n == 0) {
            putf(o, "\\x%02x", c);
            n = 1;
        } else {
            put(o, s + i, n);
        }
        i += n;
    }
    put(o, "\"", 1);
}

/* An optional string without a value is left out of the line. */
static bool log_field_omitted(const struct log_field *f)
{
    return f->type == LOGF_STR_OPT && !f->v.s;
}

static void put_value(struct out *o, enum log_format format, const struct log_field *f)
{
    bool json = format == LOG_FORMAT_JSON;
    switch (f->type) {
    case LOGF_STR:
    case LOGF_STR_OPT:
        if (!f->v.s)
            put(o, json ? "null" : "-", json ? 4 : 1);
        else if (json)
            put_json_str(o, f->v.s);
        else
            put_text_str(o, f->v.s);
        break;
    case LOGF_INT:
        putf(o, "%lld", (long long)f->v.i);
        break;
    case LOGF_DBL:
        /* JSON has no NaN or infinity; text writes nan, inf, -inf. */
        if (json && !isfinite(f->v.d))
            put(o, "null", 4);
        else
            putf(o, "%.6g", f->v.d);
        break;
    case LOGF_BOOL:
        put(o, f->v.i ? "true" : "false", f->v.i ? 4 : 5);
        break;
    }
}

static void put_json_head(struct out *o, const char *ts, enum log_level level)
{
    put(o, "{\"ts\":\"", 7);
    put(o, ts, strlen(ts));
    put(o, "\",\"level\":\"", 11);
    put(o, level_names[level], strlen(level_names[level]));
    put(o, "\",\"msg\":", 8);
}

/* A line that does not fit is replaced by one with only ts, level, msg "log line truncated" and
   "truncated":true, so it stays one valid JSON object. False when even that does not fit. */
static bool format_json(struct out *o, const char *ts, enum log_level level, const char *msg,
                        const struct log_field *fields, size_t n)
{
    /* Hold back the closing brace's byte, so a body that fills the buffer counts as cut. */
    o->cap--;
    put_json_head(o, ts, level);
    put_json_str(o, msg);
    for (size_t i = 0; i < n && !o->full; i++) {
        if (log_field_omitted(&fields[i]))
            continue;
        put(o, ",", 1);
        put_json_str(o, fields[i].key);
        put(o, ":", 1);
        put_value(o, LOG_FORMAT_JSON, &fields[i]);
    }
    o->cap++;
    if (o->full) {
        o->full = false;
        o->len = 0;
        put_json_head(o, ts, level);
        put(o, "\"log line truncated\",\"truncated\":true", 37);
    }
    put(o, "}", 1);
    return !o->full;
}

/* A line that does not fit keeps msg and the whole fields that fit, then " truncated=true";
   when not even msg fits, msg becomes "log line truncated". Never cuts inside a token, so every
   pair still parses. False when even the shortest such line does not fit. */
static bool format_text(struct out *o, const char *ts, enum log_level level, const char *msg,
                        const struct log_field *fields, size_t n)
{
    static const char mark[] = " truncated=true";
    const size_t mark_len = sizeof(mark) - 1;
    /* A cut line must end at or before room, to leave space for the mark. */
    size_t room = o->cap > mark_len ? o->cap - mark_len : 0;
    size_t keep = 0; /* end of the last whole token that leaves room; 0: none, not even msg */

    put(o, ts, strlen(ts));
    put(o, " ", 1);
    put(o, level_names[level], strlen(level_names[level]));
    put(o, " ", 1);
    put_text_str(o, msg);
    if (!o->full && o->len <= room)
        keep = o->len;
    for (size_t i = 0; i < n && !o->full; i++) {
        if (log_field_omitted(&fields[i]))
            continue;
        put(o, " ", 1);
        put_text_str(o, fields[i].key);
        put(o, "=", 1);
        put_value(o, LOG_FORMAT_TEXT, &fields[i]);
        if (!o->full && o->len <= room)
            keep = o->len;
    }
    if (!o->full)
        return true;
    o->full = false;
    o->len = keep;
    if (keep == 0) {
        put(o, ts, strlen(ts));
        put(o, " ", 1);
        put(o, level_names[level], strlen(level_names[level]));
        put(o, " \"log line truncated\"", 21);
    }
    put(o, mark, mark_len);
    return !o->full;
}

size_t log_format_line(char *buf, size_t buflen, enum log_format format, int64_t wall_ms,
                       enum log_level level, const char *msg, const struct log_field *fields,
                       size_t n)
{
    /* The line's body needs at least one byte besides its '\n' and the NUL. */
    if (buflen < 3) {
        if (buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    struct out o = {.buf = buf, .len = 0, .cap = buflen - 2};
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    char ts[64];
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));

    bool fits = format == LOG_FORMAT_JSON ? format_json(&o, ts, level, msg, fields, n)
                                          : format_text(&o, ts, level, msg, fields, n);
    if (!fits) {
        buf[0] = '\0';
        return 0;
    }
    buf[o.len++] = '\n';
    buf[o.len] = '\0';
    return o.len;
}

void log_write(enum log_level level, const char *msg, const struct log_field *fields, size_t n)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    size_t len = log_format_line(buf, sizeof(buf), g_format, wall_ms, level, msg, fields, n);
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(g_fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}
