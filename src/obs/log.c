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
#include <unistd.h>

#include "agentd/text.h"

static enum log_level g_min_level = LOG_INFO;
static enum log_format g_format = LOG_FORMAT_JSON;
static int g_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level min_level, enum log_format format, int fd)
{
    g_min_level = min_level;
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
    return level >= g_min_level;
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

/* Text format: values with spaces or quotes are quoted; control bytes become '?'. */
static void put_text_str(struct out *o, const char *s)
{
    bool quote = strpbrk(s, " \"=") != NULL || !*s;
    if (quote)
        put(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char c = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
        if (c == '"')
            put(o, "\\\"", 2);
        else
            put(o, &c, 1);
    }
    if (quote)
        put(o, "\"", 1);
}

static void put_value(struct out *o, enum log_format format, const struct log_field *f)
{
    bool json = format == LOG_FORMAT_JSON;
    switch (f->type) {
    case LOGF_STR:
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

/* Text: a line that does not fit is cut. */
static bool format_text(struct out *o, const char *ts, enum log_level level, const char *msg,
                        const struct log_field *fields, size_t n)
{
    put(o, ts, strlen(ts));
    put(o, " ", 1);
    put(o, level_names[level], strlen(level_names[level]));
    put(o, " ", 1);
    put_text_str(o, msg);
    for (size_t i = 0; i < n; i++) {
        put(o, " ", 1);
        put(o, fields[i].key, strlen(fields[i].key));
        put(o, "=", 1);
        put_value(o, LOG_FORMAT_TEXT, &fields[i]);
    }
    return true;
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
