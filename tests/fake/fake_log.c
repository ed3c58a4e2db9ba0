/*
 * fake_log.c — the bounded request log behind GET /_admin/requests.
 *
 * Tests read it to see exactly what agentd sent (headers, bodies, retries,
 * their timing). Entries live in a ring in sequence order, so the entry for
 * a sequence number is found by subtraction when its answer's status is
 * filled in later (a delayed answer is logged on arrival, answered after).
 * Bodies are kept as compact JSON text rather than jansson trees because a
 * benchmark can push 100 000 entries through here; the ring is bounded both
 * by entry count and by stored bytes.
 */
#include "fake_upstream.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct log_entry {
    uint64_t seq;
    uint64_t ts_ms;
    uint64_t fault_id;
    int status;
    enum fake_route route;
    bool api_key_present;
    char *method;
    char *path;
    char *query;   /* compact JSON object */
    char *version; /* NULL = header absent */
    char *content_type;
    char *traceparent, *tracestate; /* NULL = header absent */
    char *body;                     /* compact JSON, NULL = null */
    size_t stored_bytes;
};

struct fake_log {
    pthread_mutex_t lock;
    struct log_entry *ring;
    size_t cap;
    size_t head; /* index of the oldest entry */
    size_t len;
    size_t max_stored_bytes;
    size_t stored_bytes;
    uint64_t next_seq;
};

static void entry_clear(struct log_entry *e)
{
    free(e->method);
    free(e->path);
    free(e->query);
    free(e->version);
    free(e->content_type);
    free(e->traceparent);
    free(e->tracestate);
    free(e->body);
    memset(e, 0, sizeof(*e));
}

static char *dup_or_null(const char *s)
{
    return s ? fake_strdup_utf8(s) : NULL;
}

static size_t len_or_zero(const char *s)
{
    return s ? strlen(s) : 0;
}

struct fake_log *fake_log_new(size_t max_entries, size_t max_stored_bytes)
{
    struct fake_log *log = calloc(1, sizeof(*log));
    if (!log)
        return NULL;
    log->ring = calloc(max_entries ? max_entries : 1, sizeof(*log->ring));
    if (!log->ring) {
        free(log);
        return NULL;
    }
    log->cap = max_entries ? max_entries : 1;
    log->max_stored_bytes = max_stored_bytes;
    log->next_seq = 1;
    pthread_mutex_init(&log->lock, NULL);
    return log;
}

static void drop_oldest(struct fake_log *log)
{
    struct log_entry *e = &log->ring[log->head];
    log->stored_bytes -= e->stored_bytes;
    entry_clear(e);
    log->head = (log->head + 1) % log->cap;
    log->len--;
}

size_t fake_log_clear(struct fake_log *log)
{
    pthread_mutex_lock(&log->lock);
    size_t n = log->len;
    while (log->len > 0)
        drop_oldest(log);
    log->head = 0;
    pthread_mutex_unlock(&log->lock);
    return n;
}

struct fake_log *fake_log_free(struct fake_log *log)
{
    if (!log)
        return NULL;
    fake_log_clear(log);
    pthread_mutex_destroy(&log->lock);
    free(log->ring);
    free(log);
    return NULL;
}

uint64_t fake_log_append(struct fake_log *log, const struct fake_log_record *rec)
{
    /* Serialise outside the lock; only the ring update is serialised. */
    struct log_entry e = {0};
    e.ts_ms = rec->ts_ms;
    e.fault_id = rec->fault_id;
    e.route = rec->route;
    e.api_key_present = rec->api_key_present;
    e.method = dup_or_null(rec->method);
    e.path = dup_or_null(rec->path);
    e.query = rec->query ? json_dumps(rec->query, FAKE_JSON_DUMP_FLAGS) : NULL;
    e.version = dup_or_null(rec->anthropic_version);
    e.content_type = dup_or_null(rec->content_type);
    e.traceparent = dup_or_null(rec->traceparent);
    e.tracestate = dup_or_null(rec->tracestate);
    e.body = rec->body ? json_dumps(rec->body, FAKE_JSON_DUMP_FLAGS) : NULL;
    e.stored_bytes = sizeof(e) + len_or_zero(e.method) + len_or_zero(e.path) +
                     len_or_zero(e.query) + len_or_zero(e.version) + len_or_zero(e.content_type) +
                     len_or_zero(e.traceparent) + len_or_zero(e.tracestate) + len_or_zero(e.body);

    pthread_mutex_lock(&log->lock);
    e.seq = log->next_seq++;
    while (log->len > 0 &&
           (log->len == log->cap || log->stored_bytes + e.stored_bytes > log->max_stored_bytes))
        drop_oldest(log);
    log->ring[(log->head + log->len) % log->cap] = e;
    log->len++;
    log->stored_bytes += e.stored_bytes;
    pthread_mutex_unlock(&log->lock);
    return e.seq;
}

void fake_log_set_status(struct fake_log *log, uint64_t seq, int status)
{
    pthread_mutex_lock(&log->lock);
    if (log->len > 0) {
        uint64_t first = log->ring[log->head].seq;
        if (seq >= first && seq - first < log->len) {
            struct log_entry *e = &log->ring[(log->head + (seq - first)) % log->cap];
            e->status = status;
        }
    }
    pthread_mutex_unlock(&log->lock);
}

static json_t *parsed_or_null(const char *text)
{
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : json_null();
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *entry_json(const struct log_entry *e)
{
    json_t *headers = json_pack(
        "{s:o,s:o,s:b,s:o,s:o}", "anthropic-version", string_or_null(e->version), "content-type",
        string_or_null(e->content_type), "x-api-key-present", e->api_key_present, "traceparent",
        string_or_null(e->traceparent), "tracestate", string_or_null(e->tracestate));
    return json_pack("{s:I,s:I,s:s,s:s,s:s,s:o,s:i,s:o,s:o,s:o}", "seq", (json_int_t)e->seq,
                     "ts_ms", (json_int_t)e->ts_ms, "method", e->method ? e->method : "", "route",
                     fake_route_name(e->route), "path", e->path ? e->path : "", "query",
                     parsed_or_null(e->query), "status", e->status, "fault",
                     e->fault_id ? json_integer((json_int_t)e->fault_id) : json_null(), "headers",
                     headers ? headers : json_null(), "body", parsed_or_null(e->body));
}

json_t *fake_log_dump(struct fake_log *log, int route, uint64_t since_seq)
{
    json_t *out = json_array();
    if (!out)
        return NULL;
    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; i < log->len; i++) {
        const struct log_entry *e = &log->ring[(log->head + i) % log->cap];
        if (e->seq <= since_seq || (route >= 0 && (int)e->route != route))
            continue;
        if (json_array_append_new(out, entry_json(e)) < 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&log->lock);
    return out;
}
