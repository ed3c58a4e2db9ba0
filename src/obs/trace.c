/*
 * trace.c — W3C Trace Context, spans, their OTLP/HTTP JSON encoding and the
 * exporter's bounded queue (see trace.h). Pure but for trace_random_id().
 */
#include "agentd/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "agentd/text.h"

/* ---- W3C Trace Context ------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is invalid in traceparent */
}

/* n bytes from 2n lowercase hex digits; -EINVAL on anything else. */
static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

int trace_parse_traceparent(const char *s, struct trace_context *ret)
{
    struct trace_context ctx;
    uint8_t version;
    if (!s)
        return -EINVAL;
    size_t len = strnlen(s, TRACE_PARENT_LEN + 1);
    if (len < TRACE_PARENT_LEN || parse_hex(s, &version, 1) < 0 || version == 0xff)
        return -EINVAL;
    if (version == 0 ? len != TRACE_PARENT_LEN : (len > TRACE_PARENT_LEN && s[55] != '-'))
        return -EINVAL;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -EINVAL;
    if (parse_hex(s + 3, ctx.trace_id, TRACE_ID_BYTES) < 0 ||
        parse_hex(s + 36, ctx.span_id, TRACE_SPAN_ID_BYTES) < 0 ||
        parse_hex(s + 53, &ctx.flags, 1) < 0)
        return -EINVAL;
    if (all_zero(ctx.trace_id, TRACE_ID_BYTES) || all_zero(ctx.span_id, TRACE_SPAN_ID_BYTES))
        return -EINVAL;
    *ret = ctx;
    return 0;
}

void trace_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

void trace_format_traceparent(const struct trace_context *ctx, char *buf)
{
    memcpy(buf, "00-", 3);
    trace_hex(ctx->trace_id, TRACE_ID_BYTES, buf + 3);
    buf[35] = '-';
    trace_hex(ctx->span_id, TRACE_SPAN_ID_BYTES, buf + 36);
    buf[52] = '-';
    trace_hex(&ctx->flags, 1, buf + 53);
}

bool trace_state_ok(const char *s)
{
    if (!s || !*s)
        return false;
    size_t i = 0;
    for (; s[i] && i <= TRACE_STATE_MAX_BYTES; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return i <= TRACE_STATE_MAX_BYTES;
}

/* ---- ids --------------------------------------------------------------------------------- */

static _Thread_local uint64_t rng_state[4];
static _Thread_local bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: fast, and seeded per thread from the kernel's CSPRNG. */
static uint64_t rng_next(void)
{
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void trace_random_id(uint8_t *out, size_t n)
{
    if (!rng_seeded) {
        if (RAND_bytes((unsigned char *)rng_state, sizeof(rng_state)) != 1 ||
            all_zero((const uint8_t *)rng_state, sizeof(rng_state)))
            rng_state[0] = (uint64_t)(uintptr_t)&rng_state | 1; /* never all zero */
        rng_seeded = true;
    }
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            memcpy(out + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (all_zero(out, n));
}

/* ---- spans ------------------------------------------------------------------------------- */

struct trace_span *trace_span_new(const struct trace_context *ctx, bool parent, const char *name,
                                  enum trace_kind kind, int64_t start_ns)
{
    struct trace_span *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    /* Everything but the text area, which only text_used says how much of is in use. */
    memset(s, 0, offsetof(struct trace_span, text));
    s->text_used = 0;
    memcpy(s->trace_id, ctx->trace_id, TRACE_ID_BYTES);
    trace_hex(s->trace_id, TRACE_ID_BYTES, s->trace_id_hex);
    if (parent) {
        memcpy(s->parent_id, ctx->span_id, TRACE_SPAN_ID_BYTES);
        s->has_parent = true;
    }
    s->flags = ctx->flags;
    trace_random_id(s->span_id, TRACE_SPAN_ID_BYTES);
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->kind = kind;
    s->start_ns = start_ns;
    return s;
}

struct trace_span *trace_span_free(struct trace_span *s)
{
    free(s);
    return NULL;
}

const char *trace_span_trace_id(const struct trace_span *s)
{
    return s ? s->trace_id_hex : NULL;
}

void trace_span_context(const struct trace_span *s, struct trace_context *ret)
{
    memcpy(ret->trace_id, s->trace_id, TRACE_ID_BYTES);
    memcpy(ret->span_id, s->span_id, TRACE_SPAN_ID_BYTES);
    ret->flags = s->flags;
}

/* Copies value into the span's text; false when it does not fit. */
static bool store_text(struct trace_span *s, const char *value, uint16_t *ret_off)
{
    size_t n = strlen(value) + 1;
    if (n > sizeof(s->text) - s->text_used)
        return false;
    memcpy(s->text + s->text_used, value, n);
    *ret_off = (uint16_t)s->text_used;
    s->text_used += n;
    return true;
}

/* The slot for key: the existing attribute with that key, or a new one (NULL when full). */
static struct trace_attr *attr_slot(struct trace_span *s, const char *key)
{
    for (size_t i = 0; i < s->n_attrs; i++)
        if (strcmp(s->attrs[i].key, key) == 0)
            return &s->attrs[i];
    if (s->n_attrs == TRACE_MAX_ATTRS) {
        s->dropped_attrs++;
        return NULL;
    }
    struct trace_attr *a = &s->attrs[s->n_attrs++];
    a->key = key;
    return a;
}

static void set_text(struct trace_span *s, const char *key, const char *value,
                     enum trace_attr_type type)
{
    if (!s || !value)
        return;
    struct trace_attr *a = attr_slot(s, key);
    if (!a)
        return;
    if (!store_text(s, value, &a->v.text)) {
        /* No room for the value: the attribute goes, and is counted. */
        if (a == &s->attrs[s->n_attrs - 1] && a->key == key) {
            s->n_attrs--;
            s->dropped_attrs++;
        }
        return;
    }
    a->type = type;
}

void trace_span_set_str(struct trace_span *s, const char *key, const char *value)
{
    set_text(s, key, value, TRACE_ATTR_STR);
}

void trace_span_set_str_array1(struct trace_span *s, const char *key, const char *value)
{
    set_text(s, key, value, TRACE_ATTR_STR_ARRAY1);
}

void trace_span_set_int(struct trace_span *s, const char *key, int64_t value)
{
    struct trace_attr *a = s ? attr_slot(s, key) : NULL;
    if (a) {
        a->type = TRACE_ATTR_INT;
        a->v.i = value;
    }
}

void trace_span_set_double(struct trace_span *s, const char *key, double value)
{
    struct trace_attr *a = s ? attr_slot(s, key) : NULL;
    if (a) {
        a->type = TRACE_ATTR_DOUBLE;
        a->v.d = value;
    }
}

void trace_span_set_bool(struct trace_span *s, const char *key, bool value)
{
    struct trace_attr *a = s ? attr_slot(s, key) : NULL;
    if (a) {
        a->type = TRACE_ATTR_BOOL;
        a->v.i = value;
    }
}

void trace_span_add_event(struct trace_span *s, const char *name, int64_t time_ns,
                          const char *const *int_keys, const int64_t *int_values, size_t n_ints,
                          const char *str_key, const char *str_value)
{
    if (!s)
        return;
    if (s->n_events == TRACE_MAX_EVENTS) {
        s->dropped_events++;
        return;
    }
    struct trace_event *e = &s->events[s->n_events++];
    memset(e, 0, sizeof(*e));
    e->name = name;
    e->time_ns = time_ns;
    for (size_t i = 0; i < n_ints; i++) {
        if (e->n_attrs == TRACE_EVENT_MAX_ATTRS) {
            e->dropped_attrs++;
            continue;
        }
        e->attrs[e->n_attrs++] =
            (struct trace_attr){.key = int_keys[i], .type = TRACE_ATTR_INT, .v.i = int_values[i]};
    }
    if (str_key && str_value) {
        struct trace_attr a = {.key = str_key, .type = TRACE_ATTR_STR};
        if (e->n_attrs < TRACE_EVENT_MAX_ATTRS && store_text(s, str_value, &a.v.text))
            e->attrs[e->n_attrs++] = a;
        else
            e->dropped_attrs++;
    }
}

void trace_span_set_error(struct trace_span *s, const char *error_type)
{
    if (!s || !error_type)
        return;
    s->status = TRACE_STATUS_ERROR;
    trace_span_set_str(s, "error.type", error_type);
}

void trace_span_end(struct trace_span *s, int64_t end_ns)
{
    if (s)
        s->end_ns = end_ns < s->start_ns ? s->start_ns : end_ns;
}

/* ---- OTLP/HTTP JSON ---------------------------------------------------------------------- */

/* Written straight into one growing buffer: a batch is hundreds of spans, and building a
   jansson tree for it cost twenty times more than the writing. */
struct jbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void jb_raw(struct jbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jb_lit(struct jbuf *b, const char *s)
{
    jb_raw(b, s, strlen(s));
}

/* A JSON string: '"', '\\' and control bytes escaped, each byte that does not start a valid
   UTF-8 sequence replaced by U+FFFD, so the body is always valid JSON. */
static void jb_str(struct jbuf *b, const char *s)
{
    size_t len = strlen(s), i = 0;
    jb_raw(b, "\"", 1);
    while (i < len) {
        size_t run = i;
        while (run < len && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\' &&
               (unsigned char)s[run] < 0x80)
            run++;
        jb_raw(b, s + i, run - i);
        i = run;
        if (i == len)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            jb_raw(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            jb_raw(b, esc, 6);
            i++;
        } else {
            size_t n = text_utf8_char_len(s + i, len - i);
            if (n == 0) {
                jb_lit(b, "\\ufffd");
                i++;
            } else {
                jb_raw(b, s + i, n);
                i += n;
            }
        }
    }
    jb_raw(b, "\"", 1);
}

/* 64-bit integers are JSON strings in the protobuf JSON mapping. */
static void jb_int64_string(struct jbuf *b, int64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "\"%" PRId64 "\"", v);
    jb_raw(b, buf, (size_t)n);
}

static void jb_int(struct jbuf *b, long long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%lld", v);
    jb_raw(b, buf, (size_t)n);
}

static void jb_hex(struct jbuf *b, const uint8_t *bytes, size_t n)
{
    char hex[2 * TRACE_ID_BYTES + 3];
    hex[0] = '"';
    trace_hex(bytes, n, hex + 1);
    hex[2 * n + 1] = '"';
    jb_raw(b, hex, 2 * n + 2);
}

static void jb_any_value(struct jbuf *b, const struct trace_span *s, const struct trace_attr *a)
{
    switch (a->type) {
    case TRACE_ATTR_STR:
        jb_lit(b, "{\"stringValue\":");
        jb_str(b, s->text + a->v.text);
        break;
    case TRACE_ATTR_INT:
        jb_lit(b, "{\"intValue\":");
        jb_int64_string(b, a->v.i);
        break;
    case TRACE_ATTR_DOUBLE: {
        /* The mapping writes non-finite doubles as strings. */
        char buf[40];
        if (isnan(a->v.d))
            snprintf(buf, sizeof(buf), "\"NaN\"");
        else if (isinf(a->v.d))
            snprintf(buf, sizeof(buf), a->v.d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        else
            snprintf(buf, sizeof(buf), "%.17g", a->v.d);
        jb_lit(b, "{\"doubleValue\":");
        jb_lit(b, buf);
        break;
    }
    case TRACE_ATTR_BOOL:
        jb_lit(b, a->v.i ? "{\"boolValue\":true" : "{\"boolValue\":false");
        break;
    case TRACE_ATTR_STR_ARRAY1:
        jb_lit(b, "{\"arrayValue\":{\"values\":[{\"stringValue\":");
        jb_str(b, s->text + a->v.text);
        jb_lit(b, "}]}");
        break;
    }
    jb_lit(b, "}");
}

static void jb_attributes(struct jbuf *b, const struct trace_span *s,
                          const struct trace_attr *attrs, size_t n)
{
    jb_lit(b, "\"attributes\":[");
    for (size_t i = 0; i < n; i++) {
        jb_lit(b, i ? ",{\"key\":" : "{\"key\":");
        jb_str(b, attrs[i].key);
        jb_lit(b, ",\"value\":");
        jb_any_value(b, s, &attrs[i]);
        jb_lit(b, "}");
    }
    jb_lit(b, "]");
}

static void jb_event(struct jbuf *b, const struct trace_span *s, const struct trace_event *e)
{
    jb_lit(b, "{\"timeUnixNano\":");
    jb_int64_string(b, e->time_ns);
    jb_lit(b, ",\"name\":");
    jb_str(b, e->name);
    jb_lit(b, ",");
    jb_attributes(b, s, e->attrs, e->n_attrs);
    if (e->dropped_attrs) {
        jb_lit(b, ",\"droppedAttributesCount\":");
        jb_int(b, e->dropped_attrs);
    }
    jb_lit(b, "}");
}

static void jb_span(struct jbuf *b, const struct trace_span *s)
{
    jb_lit(b, "{\"traceId\":");
    jb_hex(b, s->trace_id, TRACE_ID_BYTES);
    jb_lit(b, ",\"spanId\":");
    jb_hex(b, s->span_id, TRACE_SPAN_ID_BYTES);
    if (s->has_parent) {
        jb_lit(b, ",\"parentSpanId\":");
        jb_hex(b, s->parent_id, TRACE_SPAN_ID_BYTES);
    }
    jb_lit(b, ",\"flags\":");
    jb_int(b, s->flags);
    jb_lit(b, ",\"name\":");
    jb_str(b, s->name);
    jb_lit(b, ",\"kind\":");
    jb_int(b, s->kind);
    jb_lit(b, ",\"startTimeUnixNano\":");
    jb_int64_string(b, s->start_ns);
    jb_lit(b, ",\"endTimeUnixNano\":");
    jb_int64_string(b, s->end_ns);
    jb_lit(b, ",");
    jb_attributes(b, s, s->attrs, s->n_attrs);
    if (s->dropped_attrs) {
        jb_lit(b, ",\"droppedAttributesCount\":");
        jb_int(b, (long long)s->dropped_attrs);
    }
    jb_lit(b, ",\"events\":[");
    for (size_t i = 0; i < s->n_events; i++) {
        if (i)
            jb_lit(b, ",");
        jb_event(b, s, &s->events[i]);
    }
    jb_lit(b, "]");
    if (s->dropped_events) {
        jb_lit(b, ",\"droppedEventsCount\":");
        jb_int(b, (long long)s->dropped_events);
    }
    jb_lit(b, ",\"status\":{\"code\":");
    jb_int(b, s->status);
    jb_lit(b, "}}");
}

char *trace_encode(struct trace_span *const *spans, size_t n, const char *service_name,
                   const char *service_version, size_t *ret_len)
{
    struct jbuf b = {0};
    jb_lit(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
               "\"value\":{\"stringValue\":");
    jb_str(&b, service_name);
    jb_lit(&b, "}},{\"key\":\"service.version\",\"value\":{\"stringValue\":");
    jb_str(&b, service_version);
    jb_lit(&b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"agentd\",\"version\":");
    jb_str(&b, service_version);
    jb_lit(&b, "},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            jb_lit(&b, ",");
        jb_span(&b, spans[i]);
    }
    jb_lit(&b, "]}]}]}");
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    if (ret_len)
        *ret_len = b.len;
    return b.p;
}

/* ---- the exporter's queue ---------------------------------------------------------------- */

int trace_queue_init(struct trace_queue *q, size_t cap, size_t batch, int64_t interval_ms)
{
    memset(q, 0, sizeof(*q));
    q->cap = cap ? cap : 1;
    q->batch = batch ? batch : 1;
    q->interval_ms = interval_ms > 0 ? interval_ms : 0;
    q->ring = calloc(q->cap, sizeof(*q->ring));
    return q->ring ? 0 : -ENOMEM;
}

void trace_queue_fini(struct trace_queue *q)
{
    for (size_t i = 0; i < q->len; i++)
        trace_span_free(q->ring[(q->head + i) % q->cap]);
    free(q->ring);
    memset(q, 0, sizeof(*q));
}

bool trace_queue_push(struct trace_queue *q, struct trace_span *s, int64_t now_ms)
{
    if (q->len == q->cap)
        return false;
    if (q->len == 0)
        q->oldest_ms = now_ms;
    q->ring[(q->head + q->len++) % q->cap] = s;
    return true;
}

int64_t trace_queue_due_ms(const struct trace_queue *q)
{
    if (q->len == 0)
        return INT64_MAX;
    if (q->len >= q->batch)
        return INT64_MIN;
    return q->oldest_ms + q->interval_ms;
}

size_t trace_queue_take(struct trace_queue *q, int64_t now_ms, bool flush, struct trace_span **out,
                        size_t max)
{
    if (q->len == 0 || (!flush && trace_queue_due_ms(q) > now_ms))
        return 0;
    size_t n = q->len < q->batch ? q->len : q->batch;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        out[i] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
    }
    q->len -= n;
    /* What stays behind waited at least as long: due again at once if it fills a batch, or a
       full interval from now at the latest. */
    q->oldest_ms = now_ms;
    return n;
}
