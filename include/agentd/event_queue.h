/*
 * event_queue.h — the events of one streamed run waiting for the client
 * (docs/API.md "Streaming"), in their wire format: "event: <name>\n" +
 * "data: <one JSON object>\n\n", and comment lines (": ping\n\n").
 *
 * Bounded: the bytes queued (text and JSON as given, before framing) stay
 * within max_bytes; a push that would pass it is refused (-ENOBUFS) and the
 * caller decides (agentd cancels the run: a reader this slow is treated like
 * one that went away). A push marked final (the run's last event) is always
 * taken, so the end of a run is never lost to the cap.
 *
 * Coalescing: a text.delta pushed while the previous queued event is a
 * text.delta of the same iteration that has not begun to go out is merged
 * into it, so a slow reader gets fewer, longer deltas and the same text.
 *
 * Pure: no I/O, clock, logging or locking; one thread at a time (the owner
 * locks). Memory: the queue owns its events; event_queue_free() frees them.
 */
#ifndef AGENTD_EVENT_QUEUE_H
#define AGENTD_EVENT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct event_queue;

/* A new empty queue holding at most max_bytes (>= 1); NULL when out of memory. */
struct event_queue *event_queue_new(size_t max_bytes);
/* Frees q and what it holds; q may be NULL. Returns NULL. */
struct event_queue *event_queue_free(struct event_queue *q);

/* Queues event `name` with data, a compact JSON object (len bytes, no newline). 0; -ENOBUFS
   (over the cap, nothing queued, unless final); -ENOMEM. */
int event_queue_push(struct event_queue *q, const char *name, const char *data, size_t len,
                     bool final);
/* Queues text.delta {"iteration", "text"} (text: len bytes of valid UTF-8), merged as above.
   0; -ENOBUFS; -ENOMEM (and -EINVAL when text is not valid UTF-8). */
int event_queue_push_text(struct event_queue *q, int iteration, const char *text, size_t len);
/* Queues the comment line ": <text>" (short ASCII). Comments count against the cap too. */
int event_queue_push_comment(struct event_queue *q, const char *text);

/* Copies up to max bytes of the wire format, oldest first, into buf; returns how many (0 when
   empty, or -ENOMEM when an event could not be framed: it is dropped). */
long event_queue_read(struct event_queue *q, char *buf, size_t max);
/* Whether nothing is waiting. */
bool event_queue_empty(const struct event_queue *q);
/* Bytes counted against the cap now. */
size_t event_queue_bytes(const struct event_queue *q);

#endif
