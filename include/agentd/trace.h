/*
 * trace.h — the pure parts of tracing: W3C Trace Context (traceparent,
 * tracestate) parsing and formatting, spans with bounded attributes and
 * events, their OTLP/HTTP JSON encoding (ExportTraceServiceRequest in the
 * protobuf JSON mapping), and the exporter's bounded queue with its drop and
 * batching policy.
 *
 * Pure: nothing here reads a clock, sleeps, logs or does I/O; times are
 * passed in (span times as wall-clock unix nanoseconds, queue times as
 * monotonic now_ms). The one exception is trace_random_id(), which draws
 * from a per-thread generator seeded from the kernel (OpenSSL RAND_bytes).
 *
 * Memory: a span is one heap block with fixed capacity (TRACE_MAX_ATTRS
 * attributes, TRACE_MAX_EVENTS events, TRACE_SPAN_TEXT_BYTES of string
 * values); what does not fit is dropped and counted (droppedAttributesCount,
 * droppedEventsCount), never allocated. Attribute keys and event names must
 * be static strings (borrowed for the span's life); string values are copied.
 *
 * Threads: a span belongs to one thread at a time (the worker that records
 * it, then the exporter); a trace_queue has no lock of its own (tracer.c
 * holds one around it). trace_random_id() is thread-safe.
 */
#ifndef AGENTD_TRACE_H
#define AGENTD_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_BYTES      16
#define TRACE_SPAN_ID_BYTES 8
/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACE_PARENT_LEN 55
/* W3C: a tracestate of up to 512 characters must be propagated; longer ones may be dropped. */
#define TRACE_STATE_MAX_BYTES 512
#define TRACE_MAX_ATTRS       24
#define TRACE_MAX_EVENTS      8
#define TRACE_EVENT_MAX_ATTRS 4
#define TRACE_SPAN_TEXT_BYTES 1024
#define TRACE_NAME_MAX_BYTES  96

/* OTLP Span.SpanKind values. */
enum trace_kind { TRACE_KIND_INTERNAL = 1, TRACE_KIND_SERVER = 2, TRACE_KIND_CLIENT = 3 };
/* OTLP Status.StatusCode values. */
enum trace_status { TRACE_STATUS_UNSET = 0, TRACE_STATUS_OK = 1, TRACE_STATUS_ERROR = 2 };

/* An incoming or outgoing W3C trace context. */
struct trace_context {
    uint8_t trace_id[TRACE_ID_BYTES];
    uint8_t span_id[TRACE_SPAN_ID_BYTES]; /* the parent's span id */
    uint8_t flags;                        /* bit 0: sampled */
};

/*
 * Parses a traceparent header value (W3C Trace Context level 1): two lowercase hex version
 * digits other than "ff"; version 00 is exactly 55 characters, a later version at least 55 with
 * '-' after them; lowercase hex ids, neither all zeros. 0 and *ret, or -EINVAL (then the caller
 * starts a new trace: an invalid header is never an error for the client).
 */
int trace_parse_traceparent(const char *s, struct trace_context *ret);
/* Writes "00-<trace>-<span>-<flags>" and a NUL into buf (at least TRACE_PARENT_LEN + 1 bytes). */
void trace_format_traceparent(const struct trace_context *ctx, char *buf);
/* A tracestate value worth passing on: 1..TRACE_STATE_MAX_BYTES printable ASCII characters
   (0x20..0x7e). Anything else is dropped (W3C allows dropping a tracestate it cannot parse). */
bool trace_state_ok(const char *s);
/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void trace_hex(const uint8_t *bytes, size_t n, char *out);
/* n random bytes, not all zero (W3C ids). Per-thread xoshiro256** seeded with RAND_bytes. */
void trace_random_id(uint8_t *out, size_t n);

enum trace_attr_type {
    TRACE_ATTR_STR,
    TRACE_ATTR_INT,
    TRACE_ATTR_DOUBLE,
    TRACE_ATTR_BOOL,
    TRACE_ATTR_STR_ARRAY1 /* an array of one string */
};
struct trace_attr {
    const char *key; /* static */
    enum trace_attr_type type;
    union {
        int64_t i;
        double d;
        uint16_t text; /* offset of the NUL-terminated string in span->text */
    } v;
};

struct trace_event {
    const char *name; /* static */
    int64_t time_ns;
    struct trace_attr attrs[TRACE_EVENT_MAX_ATTRS];
    uint8_t n_attrs, dropped_attrs;
};

struct trace_span {
    uint8_t trace_id[TRACE_ID_BYTES];
    char trace_id_hex[2 * TRACE_ID_BYTES + 1];
    uint8_t span_id[TRACE_SPAN_ID_BYTES];
    uint8_t parent_id[TRACE_SPAN_ID_BYTES];
    bool has_parent;
    uint8_t flags;
    char name[TRACE_NAME_MAX_BYTES];
    enum trace_kind kind;
    int64_t start_ns, end_ns; /* wall clock, unix nanoseconds; end 0 = not ended */
    enum trace_status status;
    /* For propagation only (not exported): the incoming tracestate, borrowed from the run,
       valid while the span is being recorded; NULL = none. */
    const char *tracestate;
    struct trace_attr attrs[TRACE_MAX_ATTRS];
    size_t n_attrs, dropped_attrs;
    struct trace_event events[TRACE_MAX_EVENTS];
    size_t n_events, dropped_events;
    char text[TRACE_SPAN_TEXT_BYTES];
    size_t text_used;
};

/* A new span of trace ctx->trace_id; parent ctx->span_id unless parent is false; a fresh random
   span id. name is copied (cut to TRACE_NAME_MAX_BYTES - 1). NULL on ENOMEM. */
struct trace_span *trace_span_new(const struct trace_context *ctx, bool parent, const char *name,
                                  enum trace_kind kind, int64_t start_ns);
/* NULL is fine; returns NULL. */
struct trace_span *trace_span_free(struct trace_span *s);
/* s's trace id in lowercase hex (for logs); NULL when s is NULL. */
const char *trace_span_trace_id(const struct trace_span *s);
/* The context a child of s (or an outbound call made in s) carries: s's trace, s as parent. */
void trace_span_context(const struct trace_span *s, struct trace_context *ret);

/* Attributes (s may be NULL: nothing happens; a NULL string value is not set). */
void trace_span_set_str(struct trace_span *s, const char *key, const char *value);
void trace_span_set_int(struct trace_span *s, const char *key, int64_t value);
void trace_span_set_double(struct trace_span *s, const char *key, double value);
void trace_span_set_bool(struct trace_span *s, const char *key, bool value);
void trace_span_set_str_array1(struct trace_span *s, const char *key, const char *value);
/* An event with up to TRACE_EVENT_MAX_ATTRS integer attributes (keys static) and one optional
   string attribute (str_key NULL = none). */
void trace_span_add_event(struct trace_span *s, const char *name, int64_t time_ns,
                          const char *const *int_keys, const int64_t *int_values, size_t n_ints,
                          const char *str_key, const char *str_value);
/* Status ERROR with error.type = error_type (OTel's convention); NULL = leave it unset. */
void trace_span_set_error(struct trace_span *s, const char *error_type);
void trace_span_end(struct trace_span *s, int64_t end_ns);

/* Encodes n spans as one OTLP ExportTraceServiceRequest in its JSON form (resource
   service.name = service_name and service.version, scope "agentd"): a malloc'd NUL-terminated
   string (its length in *ret_len when not NULL), NULL on ENOMEM. Strings are escaped; a byte
   that does not start valid UTF-8 becomes U+FFFD. */
char *trace_encode(struct trace_span *const *spans, size_t n, const char *service_name,
                   const char *service_version, size_t *ret_len);

/*
 * The exporter's queue: at most cap spans. A push into a full queue is refused (the caller frees
 * the span and counts it dropped): new spans are dropped, never the queued ones, and pushing
 * never waits. A batch is due when batch spans are queued, or interval_ms after the oldest
 * queued span arrived, or at once when flushing.
 */
struct trace_queue {
    struct trace_span **ring;
    size_t cap, head, len, batch;
    int64_t interval_ms;
    int64_t oldest_ms; /* when the oldest queued span arrived (monotonic) */
};
/* 0 or -ENOMEM. cap, batch >= 1 (clamped). */
int trace_queue_init(struct trace_queue *q, size_t cap, size_t batch, int64_t interval_ms);
/* Frees the queued spans and the ring. */
void trace_queue_fini(struct trace_queue *q);
/* true: queued (the queue owns s); false: full, s untouched. */
bool trace_queue_push(struct trace_queue *q, struct trace_span *s, int64_t now_ms);
/* When a batch is due, moves up to max (and at most batch) spans, oldest first, into out and
   returns how many; flush makes whatever is queued due. 0 when nothing is due. */
size_t trace_queue_take(struct trace_queue *q, int64_t now_ms, bool flush, struct trace_span **out,
                        size_t max);
/* When the next batch falls due (monotonic ms; INT64_MAX when empty; <= now when due). */
int64_t trace_queue_due_ms(const struct trace_queue *q);

#endif
