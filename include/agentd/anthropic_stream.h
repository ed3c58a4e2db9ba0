/*
 * anthropic_stream.h — a streamed Messages API answer ("stream": true) put
 * back together: the bytes of the text/event-stream body go in as they
 * arrive; the text of each text block comes out as it grows; at the end the
 * whole message comes out as the JSON body the non-streaming API would have
 * answered, for anthropic_parse_response() (anthropic.h) to check and parse
 * like any other answer.
 *
 * Events understood: message_start (the message without its content),
 * content_block_start (a block at the next index), content_block_delta
 * (text_delta appends text, input_json_delta appends to a tool_use input,
 * other deltas such as thinking are ignored), content_block_stop (a tool_use
 * input is parsed: empty = {}), message_delta (stop_reason, stop_sequence,
 * usage counts, which replace the ones of message_start), message_stop (the
 * message is complete), ping, and error (the API failed after its 200: the
 * attempt failed). Unknown events are ignored, as the API's versioning policy
 * asks.
 *
 * Pure: no I/O, clock or logging. Bounded: at most max_bytes of body are
 * taken (anything past is -E2BIG), at most ANTHROPIC_STREAM_MAX_BLOCKS content
 * blocks. Memory: the stream owns what it holds; bodies returned are malloc'd
 * for the caller. Not thread-safe: one stream belongs to one thread at a time.
 */
#ifndef AGENTD_ANTHROPIC_STREAM_H
#define AGENTD_ANTHROPIC_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentd/anthropic.h"

/* Content blocks one streamed message may open (tool_use blocks are capped lower by
   anthropic_parse_response, ANTHROPIC_MAX_TOOL_USES). */
#define ANTHROPIC_STREAM_MAX_BLOCKS 256

struct anthropic_stream;

/* Text of text block `index` grew by text[0..len) (valid UTF-8, NUL-terminated, borrowed).
   Return 0 to go on; a negative errno stops the feed, which returns it. */
typedef int (*anthropic_text_fn)(void *arg, size_t index, const char *text, size_t len);

/* A new stream accepting up to max_bytes of body (>= 1); NULL when out of memory. */
struct anthropic_stream *anthropic_stream_new(size_t max_bytes);
/* Frees s; s may be NULL. Returns NULL. */
struct anthropic_stream *anthropic_stream_free(struct anthropic_stream *s);
/* Forgets the answer so far (a new attempt begins). */
void anthropic_stream_reset(struct anthropic_stream *s);

/*
 * Takes len more bytes of the body; text_fn (may be NULL) hears of text as it comes. Returns 0;
 * -EPROTO when the stream carried an `error` event (*ret_error filled when not NULL; the rest
 * of the stream is then ignored); -EBADMSG (malformed: err says why, when err && errlen);
 * -E2BIG (over max_bytes); -ENOMEM; or text_fn's error. After a failure further bytes are
 * refused with the same error until anthropic_stream_reset().
 */
int anthropic_stream_feed(struct anthropic_stream *s, const char *bytes, size_t len,
                          anthropic_text_fn text_fn, void *arg, struct llm_error *ret_error,
                          char *err, size_t errlen);

/* Whether message_stop has been seen (and nothing failed). */
bool anthropic_stream_complete(const struct anthropic_stream *s);

/*
 * The whole message as the non-streaming API body ({"type":"message", id, model, role,
 * content, stop_reason, stop_sequence, usage}): 0 and a malloc'd NUL-terminated body in
 * *ret_body (its length in *ret_len when not NULL); -EBADMSG (err says why) when the stream
 * failed or ended before message_stop; -ENOMEM.
 */
int anthropic_stream_message(const struct anthropic_stream *s, char **ret_body, size_t *ret_len,
                             char *err, size_t errlen);

/* The usage the stream has reported so far (message_start's counts, updated by message_delta),
   for an answer that failed but may have been billed: 0 and *ret as
   anthropic_parse_usage_detail() fills it; -ENODATA before message_start or without usage;
   -ENOMEM. */
int anthropic_stream_usage(const struct anthropic_stream *s, struct llm_usage *ret);

/*
 * The request body asking for a streamed answer: body (a JSON object from
 * anthropic_build_request*) with "stream":true as its first member. Returns a malloc'd
 * NUL-terminated body, or NULL with errno EINVAL (body is not an object's text) or ENOMEM.
 */
char *anthropic_stream_request(const char *body);

#endif
