/*
 * log.h — structured logs: one JSON object per line on stderr (or a plain
 * "key=value" text line), with RFC 3339 UTC timestamps in milliseconds.
 * Each call formats exactly one line, whatever bytes msg, keys and values hold.
 *
 * JSON: {"ts":..,"level":..,"msg":..,<key>:<value>...}. Strings escape '"',
 * '\\', newline (\n) and other control bytes and DEL (\u00XX); valid UTF-8
 * passes through; each byte that does not start a valid UTF-8 sequence
 * becomes U+FFFD (\ufffd). A NULL string and a NaN or infinite double are
 * null.
 *
 * Text: "TS LEVEL MSG KEY=VALUE KEY=VALUE...", single spaces between. MSG,
 * each KEY and each string VALUE is one token, written bare when it is not
 * empty, not "-", and only printable ASCII other than space, '"', '=' and
 * '\\'; otherwise double-quoted, with inside the quotes '\\' as \\, '"' as
 * \", newline as \n, CR as \r, tab as \t, and as \xHH (lowercase hex) every
 * other byte below 0x20, DEL, each byte of a C1 control (U+0080..U+009F) or
 * of U+2028/U+2029, and each byte that does not start a valid UTF-8
 * sequence; other valid UTF-8 passes through. So a bare token never holds a
 * space, '=', '"' or '\\', a quoted one ends at the first unescaped '"', and
 * decoding the escapes gives back the exact bytes. A NULL value is a bare
 * "-"; integers are %lld, doubles %.6g (nan, inf, -inf), booleans true/false.
 *
 * Thread-safe without a global lock: each line is formatted into the calling
 * thread's stack buffer and written with one write(2) (continued if
 * partial; a failed write drops the line), so workers never wait on each
 * other to log. A line that would exceed LOG_LINE_MAX_BYTES is replaced, in
 * JSON, by one with only ts, level, msg "log line truncated" and
 * "truncated":true (so it stays valid JSON); in text it keeps msg and the
 * whole fields that fit, then "truncated=true" (msg becomes "log line
 * truncated" when even msg does not fit), never cutting a token. Never pass
 * secrets: callers log ids, counts and reasons, not keys, tokens or note
 * content.
 *
 * Memory: msg, keys and string values are borrowed for the call only
 * (msg and keys must not be NULL); nothing is allocated. log_write() reads
 * the wall clock; log_format_line() is pure.
 */
#ifndef AGENTD_LOG_H
#define AGENTD_LOG_H

#include <stddef.h>
#include <stdint.h>

#define LOG_LINE_MAX_BYTES 4096
/* The smallest buffer log_format_line() always fills with a line (timestamps in years
   0..9999): room for the truncation line of either format. */
#define LOG_LINE_MIN_BYTES 128

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_JSON = 0, LOG_FORMAT_TEXT };

/* LOGF_STR_OPT: a string field left out of the line when its value is NULL (a trace_id when the
   request has no trace). */
enum log_field_type { LOGF_STR, LOGF_INT, LOGF_DBL, LOGF_BOOL, LOGF_STR_OPT };
struct log_field {
    const char *key;
    enum log_field_type type;
    union {
        const char *s;
        int64_t i;
        double d;
    } v;
};

#define LF_S(k, val)  ((struct log_field){.key = (k), .type = LOGF_STR, .v.s = (val)})
#define LF_SO(k, val) ((struct log_field){.key = (k), .type = LOGF_STR_OPT, .v.s = (val)})
#define LF_I(k, val)  ((struct log_field){.key = (k), .type = LOGF_INT, .v.i = (int64_t)(val)})
#define LF_D(k, val)  ((struct log_field){.key = (k), .type = LOGF_DBL, .v.d = (double)(val)})
#define LF_B(k, val)  ((struct log_field){.key = (k), .type = LOGF_BOOL, .v.i = !!(val)})

/* Set once at start-up, before threads exist. fd is written to, never closed (default 2). */
void log_setup(enum log_level min_level, enum log_format format, int fd);
/* "debug", "info", "warn", "error" (any case) -> 0 and *ret; else -EINVAL. s must not be NULL. */
int log_parse_level(const char *s, enum log_level *ret);
/* A reload: the least severe level logged from now on (any thread, any time). */
void log_set_level(enum log_level min_level);
int log_enabled(enum log_level level);

/* Writes one line; a NULL string value is written as null (JSON) / "-" (text). */
void log_write(enum log_level level, const char *msg, const struct log_field *fields, size_t n);

/* Formats one line into buf, NUL-terminated, and returns its length, newline included; it
   never writes past buf[buflen - 1]. When buflen is too small for even the truncation line
   (never from LOG_LINE_MIN_BYTES on), returns 0 with buf[0] = NUL, and writes nothing when
   buflen is 0. For log_write() and tests. */
size_t log_format_line(char *buf, size_t buflen, enum log_format format, int64_t wall_ms,
                       enum log_level level, const char *msg, const struct log_field *fields,
                       size_t n);

#define LOG_FIELDS_(...)  ((const struct log_field[]){__VA_ARGS__})
#define LOG_NFIELDS_(...) (sizeof(LOG_FIELDS_(__VA_ARGS__)) / sizeof(struct log_field))
#define log_at(lvl, msg, ...)                                                                      \
    do {                                                                                           \
        if (log_enabled(lvl))                                                                      \
            log_write((lvl), (msg), LOG_FIELDS_(__VA_ARGS__), LOG_NFIELDS_(__VA_ARGS__));          \
    } while (0)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_at(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_at(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_at(LOG_ERROR, msg, __VA_ARGS__)

#endif
