/*
 * ratelimit_headers.h — the Anthropic API's rate-limit headers
 * (anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,reset}) and what
 * they tell the limiter: how long to wait before the next call would be refused.
 *
 * The API's limits are token buckets that refill continuously; each answer says how big each is
 * (limit), what is left (remaining) and when it will be full again (reset, RFC 3339). When a
 * budget is spent (nothing left, or for output tokens less than one call's max_tokens, which the
 * API counts up front), the next call would get a 429: the limiter holds calls until enough has
 * refilled for one call instead — the part of the time to the reset that refills what is missing
 * (the whole time when the limit is not known).
 *
 * Pure: no clock, no I/O, no logging; the caller passes the wall clock (epoch ms, the header's
 * time base). A struct ratelimit_headers is caller-owned, filled from one answer's header lines,
 * touched by one thread at a time.
 */
#ifndef AGENTD_RATELIMIT_HEADERS_H
#define AGENTD_RATELIMIT_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ratelimit_kind {
    RATELIMIT_REQUESTS,
    RATELIMIT_TOKENS,
    RATELIMIT_INPUT_TOKENS,
    RATELIMIT_OUTPUT_TOKENS,
    RATELIMIT__COUNT,
};

/* Longest header value kept (an RFC 3339 time or a count); longer values are ignored. */
#define RATELIMIT_VALUE_MAX 64

struct ratelimit_headers {
    char limit[RATELIMIT__COUNT][RATELIMIT_VALUE_MAX];
    char remaining[RATELIMIT__COUNT][RATELIMIT_VALUE_MAX];
    char reset[RATELIMIT__COUNT][RATELIMIT_VALUE_MAX];
};

/* Empties h (before an answer's headers arrive). */
void ratelimit_headers_clear(struct ratelimit_headers *h);

/* Takes one raw header line ("name: value\r\n", len bytes) when it is one of the twelve
   (limit, remaining, reset of each kind); returns whether it was. */
bool ratelimit_headers_capture(struct ratelimit_headers *h, const char *line, size_t len);

/* Epoch ms of an RFC 3339 date-time ("2026-11-30T03:10:00Z", "...T03:10:00.250+01:00"), or -1
   when s is not one or lies before 1970. */
int64_t ratelimit_parse_rfc3339_ms(const char *s);

/*
 * How long (ms, >= 0) calls should wait, from now_wall_ms, before the API will take the next
 * one: the longest wait among the spent budgets, 0 when none is spent, a value is missing or
 * unparsable, or the reset has passed. A budget is spent when its remaining is 0, or for output
 * tokens below output_tokens_per_call (the max_tokens of the next call; 0 = only at 0). Its
 * wait is (reset - now) * (need - remaining) / (limit - remaining), rounded up: the refill of
 * what one call needs at the bucket's rate; the whole (reset - now) without a usable limit.
 * cap_ms bounds the answer (a broken header cannot stop the dependency for long).
 */
int64_t ratelimit_wait_ms(const struct ratelimit_headers *h, int64_t now_wall_ms,
                          int64_t output_tokens_per_call, int64_t cap_ms);

#endif
