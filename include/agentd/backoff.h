/*
 * backoff.h — when to retry an outbound call and how long to wait first.
 *
 * Pure functions: nothing here reads a clock, sleeps or keeps global state.
 * Randomness comes from a caller-owned splitmix64 state (one per worker,
 * seeded once), so every decision is reproducible in tests and no lock is
 * needed. All functions are thread-safe as long as each thread passes its
 * own rng_state. Nothing here logs or allocates; header strings are read
 * only during the call. Every delay is in ms.
 */
#ifndef AGENTD_BACKOFF_H
#define AGENTD_BACKOFF_H

#include <stdint.h>

enum backoff_class {
    BACKOFF_TRANSIENT, /* worth another attempt (after a delay) */
    BACKOFF_PERMANENT, /* the same request will fail the same way: do not retry */
};

/*
 * HTTP status -> class. Transient: 408, 409, 429 and every 5xx (500, 502,
 * 503, 504, 529, ...); permanent: everything else incl. 400, 401, 403, 404,
 * 413, 422. status <= 0 means "no HTTP response" (connection error, timeout)
 * and is transient. x_should_retry: -1 header absent, 0 "false", 1 "true";
 * when present it overrides the status rule.
 */
enum backoff_class backoff_classify_status(long status, int x_should_retry);

/*
 * Parses an x-should-retry header value: "true" -> 1, "false" -> 0 (ASCII
 * case-insensitive, surrounding whitespace/CR/LF ignored), NULL or anything
 * else -> -1.
 */
int backoff_parse_should_retry(const char *value);

/*
 * Full jitter: a uniform random delay in [0, min(max_delay_ms, initial_ms *
 * 2^retry_index)] ms, both ends included. retry_index is 0 for the first
 * retry; any index (even 62, 1000) is safe from overflow. Negative inputs are
 * treated as 0. rng_state: caller-owned, advanced by this call.
 */
int64_t backoff_full_jitter_ms(int retry_index, int64_t initial_ms, int64_t max_delay_ms,
                               uint64_t *rng_state);

/* splitmix64: advances *rng_state and returns the next 64 random bits. Any seed works (even 0). */
uint64_t backoff_rng_next(uint64_t *rng_state);

/* Largest delay backoff_retry_after_ms() returns (~34 years), so now_ms + delay cannot overflow. */
#define BACKOFF_RETRY_AFTER_MAX_MS ((int64_t)1 << 40)

/* Header values longer than this are rejected as garbage (a valid one is at most 29 bytes). */
#define BACKOFF_RETRY_AFTER_MAX_HDR_BYTES 64

/*
 * Server-requested delay. retry_after_ms_hdr (the retry-after-ms header:
 * milliseconds, may be fractional) is used first; when absent or invalid,
 * retry_after_hdr (retry-after: delay-seconds, may be fractional, or an
 * IMF-fixdate such as "Sun, 06 Nov 1994 08:49:37 GMT" compared with
 * now_epoch_ms, wall-clock ms since 1970). Fractions round up to the next
 * whole ms. Returns the delay in ms (>= 0; a past date -> 0; saturates at
 * BACKOFF_RETRY_AFTER_MAX_MS), or -1 when neither header is present and valid.
 * Signs, exponents, NaN/inf and any other garbage are invalid. Either pointer
 * may be NULL. Capping the delay is the caller's business.
 */
int64_t backoff_retry_after_ms(const char *retry_after_ms_hdr, const char *retry_after_hdr,
                               int64_t now_epoch_ms);

#endif
