/*
 * trace.c — W3C Trace Context, spans, their OTLP/HTTP JSON encoding and the
 * exporter's bounded queue (see trace.h). Pure but for trace_random_id().
 */
#include "agentd/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

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

/* 64-bit integers are JSON strings in the protobuf JSON mapping. */
static json_t *int64_string(int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_string(buf);
}

static json_t *any_value(const struct trace_span *s, const struct trace_attr *a)
{
    switch (a->type) {
    case TRACE_ATTR_STR:
        return json_pack("{s:s}", "stringValue", s->text + a->v.text);
    case TRACE_ATTR_INT:
        return json_pack("{s:o}", "intValue", int64_string(a->v.i));
    case TRACE_ATTR_DOUBLE:
        return json_pack("{s:f}", "doubleValue", a->v.d);
    case TRACE_ATTR_BOOL:
        return json_pack("{s:b}", "boolValue", (int)a->v.i);
    case TRACE_ATTR_STR_ARRAY1:
        return json_pack("{s:{s:[{s:s}]}}", "arrayValue", "values", "stringValue",
                         s->text + a->v.text);
    }
    return NULL;
}

static json_t *key_values(const struct trace_span *s, const struct trace_attr *attrs, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *v = any_value(s, &attrs[i]);
        if (!v || json_array_append_new(
                      arr, json_pack("{s:s, s:o}", "key", attrs[i].key, "value", v)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *encode_span(const struct trace_span *s)
{
    char trace_id[2 * TRACE_ID_BYTES + 1], span_id[2 * TRACE_SPAN_ID_BYTES + 1];
    trace_hex(s->trace_id, TRACE_ID_BYTES, trace_id);
    trace_hex(s->span_id, TRACE_SPAN_ID_BYTES, span_id);
    json_t *events = json_array();
    for (size_t i = 0; events && i < s->n_events; i++) {
        const struct trace_event *e = &s->events[i];
        json_t *ev = json_pack("{s:o, s:s, s:o*}", "timeUnixNano", int64_string(e->time_ns), "name",
                               e->name, "attributes", key_values(s, e->attrs, e->n_attrs));
        if (ev && e->dropped_attrs)
            json_object_set_new(ev, "droppedAttributesCount", json_integer(e->dropped_attrs));
        if (!ev || json_array_append_new(events, ev) < 0) {
            json_decref(events);
            events = NULL;
        }
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:o*, s:o*, s:{s:i}, s:i}", "traceId", trace_id,
                  "spanId", span_id, "name", s->name, "kind", (int)s->kind, "startTimeUnixNano",
                  int64_string(s->start_ns), "endTimeUnixNano", int64_string(s->end_ns),
                  "attributes", key_values(s, s->attrs, s->n_attrs), "events", events, "status",
                  "code", (int)s->status, "flags", (int)s->flags);
    if (!o)
        return NULL;
    if (s->has_parent) {
        char parent[2 * TRACE_SPAN_ID_BYTES + 1];
        trace_hex(s->parent_id, TRACE_SPAN_ID_BYTES, parent);
        json_object_set_new(o, "parentSpanId", json_string(parent));
    }
    if (s->dropped_attrs)
        json_object_set_new(o, "droppedAttributesCount",
                            json_integer((json_int_t)s->dropped_attrs));
    if (s->dropped_events)
        json_object_set_new(o, "droppedEventsCount", json_integer((json_int_t)s->dropped_events));
    return o;
}

json_t *trace_encode(struct trace_span *const *spans, size_t n, const char *service_name,
                     const char *service_version)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, encode_span(spans[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (!arr)
        return NULL;
    return json_pack("{s:[{s:{s:[{s:s, s:{s:s}}, {s:s, s:{s:s}}]}, s:[{s:{s:s, s:s}, s:o}]}]}",
                     "resourceSpans", "resource", "attributes", "key", "service.name", "value",
                     "stringValue", service_name, "key", "service.version", "value", "stringValue",
                     service_version, "scopeSpans", "scope", "name", "agentd", "version",
                     service_version, "spans", arr);
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
