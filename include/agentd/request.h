/*
 * request.h — the server's parser: validation of the POST /v1/agent body
 * into a struct agent_request (agent_request.h), of the request headers the
 * server reads (X-Request-Id, Idempotency-Key, Content-Type), plus the one
 * JSON error body every non-2xx response uses (see docs/API.md).
 *
 * Everything here is pure: no I/O, no clock, no logging, no global state, so
 * every function is safe to call from any thread at once. Memory handed out:
 * request_parse() fills a struct agent_request the caller clears, and
 * request_error_body() returns a string the caller frees.
 */
#ifndef AGENTD_REQUEST_H
#define AGENTD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentd/agent_request.h"

#define AGENT_INPUT_MAX_BYTES    100000
#define AGENT_ID_MAX_BYTES       128 /* X-Request-Id and conversation_id */
#define AGENT_IDEM_KEY_MAX_BYTES 255
#define AGENT_TIMEOUT_MIN_MS     100

/*
 * Parses and validates `len` bytes of `body` (need not be NUL-terminated).
 *
 * Rejected, each with a message that names the field and says what is
 * expected (e.g. "max_iterations: expected an integer 1..10, got 0"):
 *   - bytes that are not valid UTF-8 anywhere in the body (checked on the raw
 *     bytes before JSON parsing; the message names the field whose value holds
 *     them, e.g. "input: not valid UTF-8");
 *   - bad JSON, an empty body, a top-level value that is not an object;
 *   - a duplicate key (named), an unknown field (named);
 *   - a wrong type (null is a wrong type, not "absent"; 5.0 is not an integer);
 *   - missing, empty or oversized "input", or a NUL (\u0000) inside a string;
 *   - integers out of range, a "priority" other than "high"/"low", a
 *     "conversation_id" that breaks request_conversation_id_valid().
 * When a cap is below its field's minimum (max_iterations_cap < 1,
 * timeout_cap_ms < 100) every value of that field is rejected.
 *
 * Returns 0 and fills *ret (caller clears it), or -EINVAL with the message in
 * err (always NUL-terminated and valid UTF-8 when errlen > 0; may be
 * truncated), or -ENOMEM (err not necessarily written). *ret is written only
 * on success. err may be NULL; body is only read during the call.
 * The message may quote client-supplied names, bounded to a few dozen bytes.
 */
int request_parse(const char *body, size_t len, int max_iterations_cap, int64_t timeout_cap_ms,
                  struct agent_request *ret, char *err, size_t errlen);

/* What names a caller in the stores without being its credential: "c" and the first 16 hex digits
   of SHA-256(token), NUL-terminated, in ret. (SHA-256 cannot be run backwards to the token; 64
   bits keep distinct tokens apart.) */
#define REQUEST_CALLER_ID_BYTES 18
void request_caller_id(const char *token, size_t len, char ret[REQUEST_CALLER_ID_BYTES]);

/* 1..128 characters of [A-Za-z0-9._:-]; NULL → false. */
bool request_id_valid(const char *s);

/* Same rule as request_id_valid(); NULL → false. */
bool request_conversation_id_valid(const char *s);

/*
 * True when a Content-Type header value names JSON: "application/json"
 * (case-insensitive), optional surrounding spaces/tabs, optionally followed by
 * ";"-separated parameters. A "charset" parameter, when present, must be
 * utf-8 (or utf8, any case, optionally quoted) because bodies are UTF-8 only.
 * "application/json-patch+json", "text/json" and NULL → false.
 */
bool request_content_type_is_json(const char *value);

/*
 * Builds the error body of docs/API.md as compact JSON:
 *   {"error":{"type":type,"message":message},"request_id":request_id}
 * with "upstream_status": n added at the top level (after "request_id") when
 * upstream_status > 0. "request_id" is omitted when request_id is NULL.
 * Invalid UTF-8 in any of the strings is replaced by U+FFFD so the body is
 * always valid JSON. type and message must not be NULL.
 * Returns a malloc'd NUL-terminated string the caller frees, or NULL on ENOMEM.
 */
char *request_error_body(const char *type, const char *message, const char *request_id,
                         long upstream_status);

/* Idempotency-Key header value: 1..255 bytes, each printable ASCII 0x20..0x7e;
 * NULL → false. */
bool request_idempotency_key_valid(const char *s);

#endif
