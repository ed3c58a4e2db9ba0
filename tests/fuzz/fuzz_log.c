/*
 * fuzz_log.c — libFuzzer target for the log line formatter. Log fields carry
 * what clients and upstreams send (request ids, paths, reasons, model
 * errors), so msg, keys and string values are arbitrary bytes here.
 * log_format_line() runs in both formats, into a buffer large enough for any
 * line and into one of the size the input picks (0..LOG_LINE_MAX_BYTES).
 * Checks the promises of include/agentd/log.h: one line ending in '\n' with
 * no other control byte, valid UTF-8, nothing written past buflen; JSON that
 * jansson reads back to the same values (invalid UTF-8 as U+FFFD, non-finite
 * doubles as null); text that a reference parser written here from log.h's
 * rules reads back to the exact bytes; and truncation exactly as documented.
 *
 * Input: byte 0 = level (bits 0-1), number of fields 0..7 (bits 2-4), small
 * buffer (bit 5); bytes 1-2 = buflen for a small buffer (little-endian,
 * modulo LOG_LINE_MAX_BYTES + 1); bytes 3-5 = 3 bits per field for its type
 * (0-3 string, 4 NULL string, 5 int, 6 double, 7 bool); bytes 6-11 = wall
 * clock in ms (little-endian, modulo year 10000); then msg and each field's
 * key and value, separated by NUL bytes. Missing parts are empty. A value
 * part gives an int up to 8 bytes little-endian, a double up to 8 bytes of
 * its IEEE 754 bits most significant first (so "\x7f\xf0" is infinity and
 * "\x7f\xf8" NaN: a part cannot hold a NUL, missing bytes are 0), a bool
 * its first byte (odd = true).
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "agentd/log.h"
#include "fuzz_common.h"

/* Log values are bounded by what the daemon accepts before logging (1 MiB bodies); far past
   LOG_LINE_MAX_BYTES is enough to exercise every truncation path. */
#define FUZZ_LOG_INPUT_CAP  ((size_t)64 * 1024)
#define FUZZ_LOG_HEADER     12
#define FUZZ_LOG_MAX_FIELDS 7
/* 10000-01-01T00:00:00Z: timestamps stay four-digit years. */
#define FUZZ_LOG_WALL_END 253402300800000LL

static const char *const level_names[] = {"debug", "info", "warn", "error"};

struct fuzz_log_input {
    enum log_level level;
    size_t buflen;
    int64_t wall_ms;
    const char *msg;
    size_t nfields;
    struct log_field fields[FUZZ_LOG_MAX_FIELDS];
};

static uint64_t le_bytes(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i > 0; i--)
        v = (v << 8) | p[i - 1];
    return v;
}

/* Splits the bytes after the header (copied NUL-terminated into text) at its NULs. */
static void decode_input(const uint8_t *data, size_t size, char *text, struct fuzz_log_input *in)
{
    uint8_t h[FUZZ_LOG_HEADER] = {0};
    memcpy(h, data, size < sizeof(h) ? size : sizeof(h));
    size_t tlen = size > sizeof(h) ? size - sizeof(h) : 0;
    memcpy(text, data + sizeof(h), tlen);
    text[tlen] = '\0';

    in->level = (enum log_level)(h[0] & 3);
    in->nfields = (h[0] >> 2) & 7;
    in->buflen = (h[0] & 0x20) ? le_bytes(h + 1, 2) % (LOG_LINE_MAX_BYTES + 1) : LOG_LINE_MAX_BYTES;
    uint32_t types = (uint32_t)le_bytes(h + 3, 3);
    in->wall_ms = (int64_t)(le_bytes(h + 6, 6) % FUZZ_LOG_WALL_END);

    const char *end = text + tlen;
    const char *p = text;
    const char *parts[1 + 2 * FUZZ_LOG_MAX_FIELDS];
    size_t lens[1 + 2 * FUZZ_LOG_MAX_FIELDS];
    for (size_t i = 0; i < 1 + 2 * FUZZ_LOG_MAX_FIELDS; i++) {
        parts[i] = p;
        lens[i] = strlen(p);
        p = p + lens[i] < end ? p + lens[i] + 1 : end;
    }
    in->msg = parts[0];
    for (size_t i = 0; i < in->nfields; i++) {
        struct log_field *f = &in->fields[i];
        const char *v = parts[2 + 2 * i];
        size_t vlen = lens[2 + 2 * i];
        uint8_t num[8] = {0};
        memcpy(num, v, vlen < 8 ? vlen : 8);
        unsigned type = (types >> (3 * i)) & 7;
        f->key = parts[1 + 2 * i];
        if (type <= 3) {
            *f = LF_S(f->key, v);
        } else if (type == 4) {
            *f = LF_S(f->key, NULL);
        } else if (type == 5) {
            *f = LF_I(f->key, (int64_t)le_bytes(num, 8));
        } else if (type == 6) {
            double d;
            uint64_t bits = 0;
            for (size_t k = 0; k < 8; k++)
                bits = (bits << 8) | num[k];
            memcpy(&d, &bits, sizeof(d));
            *f = LF_D(f->key, d);
        } else {
            *f = LF_B(f->key, vlen > 0 && (v[0] & 1));
        }
    }
}

/* Every line: one '\n', at the end; no other control byte or DEL; valid UTF-8. */
static void check_one_line(const char *line, size_t n)
{
    FUZZ_CHECK(n > 0 && line[n - 1] == '\n' && line[n] == '\0');
    for (size_t i = 0; i + 1 < n; i++)
        FUZZ_CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    FUZZ_CHECK(fuzz_utf8_ok(line, n));
}

/* The line's timestamp, "YYYY-MM-DDTHH:MM:SS.mmmZ", checked to read back as wall_ms. */
static void expected_ts(int64_t wall_ms, char ts[80])
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    FUZZ_CHECK(gmtime_r(&secs, &tm) != NULL);
    snprintf(ts, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));

    struct tm back = {0};
    int ms = -1, used = 0;
    FUZZ_CHECK(strlen(ts) == 24);
    FUZZ_CHECK(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &back.tm_year, &back.tm_mon,
                      &back.tm_mday, &back.tm_hour, &back.tm_min, &back.tm_sec, &ms, &used) == 7);
    FUZZ_CHECK(used == 24);
    back.tm_year -= 1900;
    back.tm_mon -= 1;
    FUZZ_CHECK((int64_t)timegm(&back) * 1000 + ms == wall_ms);
}

/* Length of the valid UTF-8 sequence at p (reference decoder), 0 when invalid. */
static size_t ref_char_len(const char *p, size_t avail)
{
    unsigned char c = (unsigned char)p[0];
    size_t need = c < 0x80             ? 1
                  : (c & 0xe0) == 0xc0 ? 2
                  : (c & 0xf0) == 0xe0 ? 3
                  : (c & 0xf8) == 0xf0 ? 4
                                       : 0;
    return need && need <= avail && fuzz_utf8_ok(p, need) ? need : 0;
}

/* s with each byte that does not start a valid UTF-8 sequence replaced by U+FFFD (malloc'd). */
static char *ref_json_text(const char *s, size_t *ret_len)
{
    size_t len = strlen(s), n = 0;
    char *out = malloc(3 * len + 1);
    if (!out)
        abort();
    for (size_t i = 0; i < len;) {
        size_t k = ref_char_len(s + i, len - i);
        if (k == 0) {
            memcpy(out + n, "\xef\xbf\xbd", 3);
            n += 3;
            i++;
        } else {
            memcpy(out + n, s + i, k);
            n += k;
            i += k;
        }
    }
    out[n] = '\0';
    *ret_len = n;
    return out;
}

static void check_json_string(json_t *v, const char *s)
{
    size_t len;
    char *want = ref_json_text(s, &len);
    FUZZ_CHECK(json_is_string(v));
    FUZZ_CHECK(json_string_length(v) == len && memcmp(json_string_value(v), want, len) == 0);
    free(want);
}

static void check_json_value(json_t *v, const struct log_field *f)
{
    char num[64];
    switch (f->type) {
    case LOGF_STR:
    case LOGF_STR_OPT: /* never generated here: tests/unit/test_log.c covers it */
        if (f->v.s)
            check_json_string(v, f->v.s);
        else
            FUZZ_CHECK(json_is_null(v));
        break;
    case LOGF_INT:
        FUZZ_CHECK(json_is_integer(v) && json_integer_value(v) == f->v.i);
        break;
    case LOGF_DBL:
        if (!isfinite(f->v.d)) {
            FUZZ_CHECK(json_is_null(v));
            break;
        }
        snprintf(num, sizeof(num), "%.6g", f->v.d);
        FUZZ_CHECK(json_is_number(v) && json_number_value(v) == strtod(num, NULL));
        break;
    case LOGF_BOOL:
        FUZZ_CHECK(json_is_boolean(v) && json_is_true(v) == (f->v.i != 0));
        break;
    }
}

/* The whole JSON line read back: one member per distinct key, a field's key (after the U+FFFD
   replacement) taking the place of an earlier field's or of ts/level/msg, as jansson keeps the
   last value of a repeated key. */
static void check_json_full(const char *line, size_t n, const struct fuzz_log_input *in)
{
    struct {
        char *key;
        int field; /* index into in->fields; -1 for msg; -2 for ts and level (checked as text) */
    } want[3 + FUZZ_LOG_MAX_FIELDS];
    size_t nwant = 0, klen;
    want[nwant].key = strdup("ts"), want[nwant++].field = -2;
    want[nwant].key = strdup("level"), want[nwant++].field = -2;
    want[nwant].key = strdup("msg"), want[nwant++].field = -1;
    for (size_t i = 0; i < in->nfields; i++) {
        char *key = ref_json_text(in->fields[i].key, &klen);
        size_t j = 0;
        while (j < nwant && strcmp(want[j].key, key) != 0)
            j++;
        if (j < nwant) {
            free(key);
        } else {
            want[nwant].key = key;
            nwant++;
        }
        want[j].field = (int)i;
    }

    json_error_t err;
    json_t *o = json_loadb(line, n, 0, &err);
    FUZZ_CHECK(json_is_object(o));
    FUZZ_CHECK(json_object_size(o) == nwant);
    for (size_t j = 0; j < nwant; j++) {
        json_t *v = json_object_get(o, want[j].key);
        FUZZ_CHECK(v != NULL);
        if (want[j].field == -1)
            check_json_string(v, in->msg);
        else if (want[j].field >= 0)
            check_json_value(v, &in->fields[want[j].field]);
        free(want[j].key);
    }
    json_decref(o);
}

/* The replacement for a JSON line that does not fit, exactly as log.h words it. */
static int json_cut_line(char *out, size_t cap, const char *ts, enum log_level level)
{
    return snprintf(out, cap,
                    "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"log line truncated\","
                    "\"truncated\":true}\n",
                    ts, level_names[level]);
}

/* Text tokens, decoded by a reference parser that follows log.h's rules. */
struct text_token {
    const char *s; /* decoded bytes, in the scratch buffer */
    size_t len;
    bool quoted;
};

struct text_line {
    struct text_token ts, level, msg;
    size_t msg_end; /* offset just past msg */
    size_t npairs;
    struct {
        struct text_token key, value;
        size_t end; /* offset just past the value */
    } pairs[FUZZ_LOG_MAX_FIELDS + 1];
};

static bool text_bare_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

/* Whether log.h says s must be quoted: empty, "-", or any byte outside the bare set. */
static bool text_must_quote(const char *s, size_t len)
{
    if (len == 0 || (len == 1 && s[0] == '-'))
        return true;
    for (size_t i = 0; i < len; i++)
        if (!text_bare_byte((unsigned char)s[i]))
            return true;
    return false;
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes the token at line[*pos] into *scratch (advanced); false when malformed. */
static bool text_token(const char *line, size_t *pos, char **scratch, struct text_token *ret)
{
    const char *p = line + *pos;
    char *out = *scratch;
    size_t n = 0;
    ret->quoted = *p == '"';
    if (!ret->quoted) {
        while (text_bare_byte((unsigned char)*p))
            out[n++] = *p++;
        if (n == 0 || (*p != ' ' && *p != '=' && *p != '\n'))
            return false;
    } else {
        for (p++; *p != '"'; p++) {
            char c = *p;
            if (c == '\0' || c == '\n')
                return false;
            if (c == '\\') {
                p++;
                if (*p == '\\' || *p == '"')
                    c = *p;
                else if (*p == 'n')
                    c = '\n';
                else if (*p == 'r')
                    c = '\r';
                else if (*p == 't')
                    c = '\t';
                else if (*p == 'x' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0) {
                    c = (char)(hex_value(p[1]) * 16 + hex_value(p[2]));
                    p += 2;
                } else
                    return false;
            }
            out[n++] = c;
        }
        p++;
    }
    ret->s = out;
    ret->len = n;
    *scratch = out + n;
    *pos = (size_t)(p - line);
    return true;
}

/* "TS LEVEL MSG( KEY=VALUE)*\n" and nothing after; false when line is not that. */
static bool text_parse(const char *line, char *scratch, struct text_line *ret)
{
    size_t pos = 0;
    if (!text_token(line, &pos, &scratch, &ret->ts) || line[pos++] != ' ')
        return false;
    if (!text_token(line, &pos, &scratch, &ret->level) || line[pos++] != ' ')
        return false;
    if (!text_token(line, &pos, &scratch, &ret->msg))
        return false;
    ret->msg_end = pos;
    for (ret->npairs = 0; line[pos] == ' '; ret->npairs++) {
        if (ret->npairs == FUZZ_LOG_MAX_FIELDS + 1)
            return false;
        pos++;
        if (!text_token(line, &pos, &scratch, &ret->pairs[ret->npairs].key) || line[pos++] != '=')
            return false;
        if (!text_token(line, &pos, &scratch, &ret->pairs[ret->npairs].value))
            return false;
        ret->pairs[ret->npairs].end = pos;
    }
    return line[pos] == '\n' && line[pos + 1] == '\0';
}

static bool token_is(const struct text_token *t, const char *s, size_t len)
{
    return t->len == len && memcmp(t->s, s, len) == 0;
}

/* A string token: the exact bytes, quoted exactly when log.h says so. */
static void check_text_str(const struct text_token *t, const char *s)
{
    size_t len = strlen(s);
    FUZZ_CHECK(token_is(t, s, len));
    FUZZ_CHECK(t->quoted == text_must_quote(s, len));
}

/* A non-string value: bare, and written as log.h says. */
static void check_text_value(const struct text_token *t, const struct log_field *f)
{
    char want[64];
    if (f->type == LOGF_STR && f->v.s) {
        check_text_str(t, f->v.s);
        return;
    }
    if (f->type == LOGF_STR)
        snprintf(want, sizeof(want), "-");
    else if (f->type == LOGF_INT)
        snprintf(want, sizeof(want), "%lld", (long long)f->v.i);
    else if (f->type == LOGF_DBL)
        snprintf(want, sizeof(want), "%.6g", f->v.d);
    else
        snprintf(want, sizeof(want), "%s", f->v.i ? "true" : "false");
    FUZZ_CHECK(!t->quoted && token_is(t, want, strlen(want)));
}

/* The whole text line read back: ts, level, msg and every field in order. */
static void check_text_full(const char *line, const struct fuzz_log_input *in, const char *ts,
                            char *scratch, struct text_line *t)
{
    FUZZ_CHECK(text_parse(line, scratch, t));
    FUZZ_CHECK(!t->ts.quoted && token_is(&t->ts, ts, strlen(ts)));
    const char *lvl = level_names[in->level];
    FUZZ_CHECK(!t->level.quoted && token_is(&t->level, lvl, strlen(lvl)));
    check_text_str(&t->msg, in->msg);
    FUZZ_CHECK(t->npairs == in->nfields);
    for (size_t i = 0; i < in->nfields; i++) {
        check_text_str(&t->pairs[i].key, in->fields[i].key);
        check_text_value(&t->pairs[i].value, &in->fields[i]);
    }
    /* Raw inside quotes only when valid UTF-8 and not a C1 control or U+2028/U+2029. */
    FUZZ_CHECK(!strstr(line, "\xe2\x80\xa8") && !strstr(line, "\xe2\x80\xa9"));
    for (const char *p = line; (p = strchr(p, '\xc2')) != NULL; p++)
        FUZZ_CHECK((unsigned char)p[1] >= 0xa0);
}

/* What a buffer of buflen bytes must hold for a text line whose full form is full (n bytes):
   all of it if it fits; else msg and the whole pairs that fit before " truncated=true";
   else the line with msg "log line truncated"; else nothing. */
static void check_text_cut(const char *full, size_t full_len, const struct text_line *t,
                           const char *ts, enum log_level level, const char *out, size_t n,
                           size_t buflen)
{
    static const char mark[] = " truncated=true\n";
    const size_t mark_len = sizeof(mark) - 1;
    if (full_len < buflen) {
        FUZZ_CHECK(n == full_len && memcmp(out, full, n) == 0);
        return;
    }
    size_t cap = buflen > 2 ? buflen - 2 : 0;
    size_t room = cap > mark_len - 1 ? cap - (mark_len - 1) : 0;
    size_t keep = t->msg_end <= room ? t->msg_end : 0;
    for (size_t i = 0; keep && i < t->npairs; i++)
        if (t->pairs[i].end <= room)
            keep = t->pairs[i].end;
    if (keep) {
        FUZZ_CHECK(n == keep + mark_len);
        FUZZ_CHECK(memcmp(out, full, keep) == 0 && memcmp(out + keep, mark, mark_len) == 0);
        return;
    }
    char alt[128];
    int alen = snprintf(alt, sizeof(alt), "%s %s \"log line truncated\" truncated=true\n", ts,
                        level_names[level]);
    if ((size_t)alen < buflen)
        FUZZ_CHECK(n == (size_t)alen && memcmp(out, alt, n) == 0);
    else
        FUZZ_CHECK(n == 0);
}

/* Large enough for any line of an input under FUZZ_LOG_INPUT_CAP: an input byte becomes at most
   6 output bytes (\u00XX, \ufffd). */
#define FUZZ_LOG_BIG_BYTES (6 * FUZZ_LOG_INPUT_CAP + 1024)
static char g_full[FUZZ_LOG_BIG_BYTES];
static char g_scratch[FUZZ_LOG_BIG_BYTES];
static struct text_line g_full_text, g_cut_text;

static void check_format(const struct fuzz_log_input *in, enum log_format format, const char *ts)
{
    size_t full = log_format_line(g_full, sizeof(g_full), format, in->wall_ms, in->level, in->msg,
                                  in->fields, in->nfields);
    check_one_line(g_full, full);
    if (format == LOG_FORMAT_JSON)
        check_json_full(g_full, full, in);
    else
        check_text_full(g_full, in, ts, g_scratch, &g_full_text);

    /* An exact-size buffer, so ASan flags a byte written past buflen (0: none at all). */
    char *buf = malloc(in->buflen ? in->buflen : 1);
    if (!buf)
        abort();
    memset(buf, 'X', in->buflen ? in->buflen : 1);
    size_t n = log_format_line(buf, in->buflen, format, in->wall_ms, in->level, in->msg, in->fields,
                               in->nfields);
    if (in->buflen == 0) {
        FUZZ_CHECK(n == 0 && buf[0] == 'X');
        free(buf);
        return;
    }
    FUZZ_CHECK(n < in->buflen && buf[n] == '\0' && strlen(buf) == n);
    if (in->buflen >= LOG_LINE_MIN_BYTES)
        FUZZ_CHECK(n > 0);
    if (n > 0)
        check_one_line(buf, n);
    if (format == LOG_FORMAT_JSON) {
        char cut[256];
        int clen = json_cut_line(cut, sizeof(cut), ts, in->level);
        if (full < in->buflen)
            FUZZ_CHECK(n == full && memcmp(buf, g_full, n) == 0);
        else if ((size_t)clen < in->buflen)
            FUZZ_CHECK(n == (size_t)clen && memcmp(buf, cut, n) == 0);
        else
            FUZZ_CHECK(n == 0);
        if (n > 0) {
            json_error_t err;
            json_t *o = json_loadb(buf, n, 0, &err);
            FUZZ_CHECK(json_is_object(o));
            json_decref(o);
        }
    } else {
        check_text_cut(g_full, full, &g_full_text, ts, in->level, buf, n, in->buflen);
        if (n > 0)
            FUZZ_CHECK(text_parse(buf, g_scratch, &g_cut_text));
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init_once();
    if (size > FUZZ_LOG_INPUT_CAP)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    struct fuzz_log_input in;
    decode_input(data, size, text, &in);
    char ts[80];
    expected_ts(in.wall_ms, ts);
    check_format(&in, LOG_FORMAT_JSON, ts);
    check_format(&in, LOG_FORMAT_TEXT, ts);
    free(text);
    return 0;
}
