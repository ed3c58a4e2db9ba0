/*
 * sse.h — an incremental parser of the text/event-stream format (the WHATWG
 * "server-sent events" rules): bytes go in as they arrive, in chunks of any
 * size; each complete event comes out once, with its name ("message" when the
 * stream gave none) and its data lines joined with '\n'.
 *
 * Pure: no I/O, no clock, no logging. Bounded: a line, and an event's data,
 * may hold at most max_event_bytes bytes; past that the feed fails with
 * -E2BIG and the parser is spent (sse_parser_reset() starts again).
 *
 * Rules kept: lines end in "\n", "\r\n" or "\r" (a "\r" at the end of a chunk
 * and a "\n" at the start of the next are one line end); a line starting with
 * ':' is a comment; "field: value" loses one leading space of the value; a
 * line without ':' is a field with an empty value; "event" and "data" are
 * used, "id" and "retry" and unknown fields are ignored; a blank line ends
 * the event, which is given only when it had at least one data line. A
 * leading UTF-8 byte order mark is dropped. Bytes are not checked for UTF-8
 * here: the consumer parses the data.
 *
 * Memory: the parser owns its buffers (sse_parser_clear() frees them). Not
 * thread-safe: one parser belongs to one thread at a time.
 */
#ifndef AGENTD_SSE_H
#define AGENTD_SSE_H

#include <stdbool.h>
#include <stddef.h>

#define SSE_EVENT_NAME_MAX 64 /* longer event names are cut (they are never ours) */

struct sse_parser {
    size_t max_event_bytes;
    char *line; /* the current line, not yet ended */
    size_t line_len, line_alloc;
    char *data; /* the current event's data lines, joined */
    size_t data_len, data_alloc;
    bool has_data;
    char event[SSE_EVENT_NAME_MAX + 1];
    bool after_cr;  /* the last byte was "\r": a "\n" now ends nothing */
    bool started;   /* past the (optional) byte order mark */
    size_t bom_len; /* bytes of a byte order mark matched so far */
    bool failed;
};

/* One event. data is NUL-terminated (data_len excludes the NUL); both are borrowed for the
   call. Return 0 to go on, or a negative errno to stop the feed, which then returns it. */
typedef int (*sse_event_fn)(void *arg, const char *event, const char *data, size_t data_len);

/* Prepares p (no allocation yet). max_event_bytes >= 1. */
void sse_parser_init(struct sse_parser *p, size_t max_event_bytes);
/* Forgets everything buffered (the buffers are kept for reuse). */
void sse_parser_reset(struct sse_parser *p);
/* Frees the buffers; p can be initialised again. */
void sse_parser_clear(struct sse_parser *p);

/*
 * Feeds len bytes; calls fn for every event completed by them, in order. Returns 0; -E2BIG
 * (a line or an event over max_event_bytes); -ENOMEM; or what fn returned. After an error the
 * parser refuses further bytes (-EINVAL) until sse_parser_reset().
 */
int sse_parser_feed(struct sse_parser *p, const char *bytes, size_t len, sse_event_fn fn,
                    void *arg);

#endif
