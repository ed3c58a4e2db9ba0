/*
 * breaker.h — circuit breaker, one per dependency (LLM API, each tool API).
 *
 * CLOSED lets every call through and watches the outcomes. It OPENS when both
 * of these hold at a failure:
 *   - the last failure_threshold outcomes were all failures (consecutive rule), and
 *   - failures are at least failure_rate of the calls of the last window_ms
 *     (rate rule), where "calls" counts calls started in the window as well as
 *     outcomes heard in it, so calls still in flight dilute a burst of early
 *     failures. With fewer than min_calls calls in the window the rate cannot
 *     be judged and the consecutive rule decides alone, so a dependency with
 *     little traffic still opens after failure_threshold failures.
 * 41 failed connects among 10 000 calls started at once therefore never open
 * it, while a dependency that fails everything still opens it.
 * Calls then fail fast instead of piling onto a dependency that is down. After
 * the open interval it turns HALF_OPEN and admits a few probe calls; a
 * successful probe closes it, a failed one opens it again. The open interval
 * starts at first_open_ms and doubles with every trip that follows a close
 * which did not hold for a whole window, up to open_ms: a blip costs a
 * second, an outage is probed ever less often.
 *
 * Pure policy: the caller passes now_ms (monotonic clock, ms); nothing here
 * reads a clock, sleeps, logs or calls back.
 *
 * Thread-safety: one struct breaker is shared by all workers; every function
 * takes the breaker's own mutex for a few arithmetic operations only.
 * State changes are queued inside the breaker and handed out by
 * breaker_drain_transitions(), so the caller logs and counts them outside
 * the lock.
 *
 * Memory: breaker_new() returns a breaker the caller frees with
 * breaker_free(); nothing is allocated after breaker_new(). The names it hands
 * out are never freed by the caller.
 */
#ifndef AGENTD_BREAKER_H
#define AGENTD_BREAKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* enum breaker_state (CLOSED, HALF_OPEN, OPEN) and breaker_state_name(): "closed", "half_open",
 * "open"; "unknown" for anything else. */
#include "agentd/vocab.h"

/*
 * Settings; config.c validates them. breaker_new() clamps anything out of
 * range instead of failing: failure_threshold, min_calls and half_open_probes
 * to >= 1, window_ms to BREAKER_MIN_WINDOW_MS..BREAKER_MAX_WINDOW_MS,
 * open_ms to >= 0, first_open_ms to 1..open_ms (<= 0: open_ms, a fixed interval, as
 * before first_open_ms existed); failure_rate outside (0, 1]
 * (or NaN) switches the rate rule off (the consecutive rule then decides
 * alone, as with fewer than min_calls calls).
 */
struct breaker_config {
    int failure_threshold; /* consecutive failures needed to open (AGENTD_BREAKER_FAILURES, 5) */
    double failure_rate;   /* and failures/calls over the window at least this (0.5); 0 = off */
    int64_t window_ms;     /* time window of the rate rule, ms (10000) */
    int min_calls;         /* calls the window needs before the rate rule applies (10) */
    int64_t first_open_ms; /* open interval of a first trip, ms (1000); 0 = open_ms */
    int64_t open_ms;       /* longest open interval, reached by doubling, ms (30000) */
    int half_open_probes;  /* concurrent probes admitted when half-open (1) */
    bool enabled;          /* false = always allow (used by the retry-budget chaos test) */
};

/* The window is kept as this many buckets of window_ms / BREAKER_BUCKETS each: counts expire a
   bucket at a time. */
#define BREAKER_BUCKETS       20
#define BREAKER_MIN_WINDOW_MS BREAKER_BUCKETS
#define BREAKER_MAX_WINDOW_MS (24LL * 3600 * 1000)

/* retry-after given while half-open with every probe slot taken: a probe answer is due soon. */
#define BREAKER_PROBES_BUSY_RETRY_MS 100

/* Transitions kept for breaker_drain_transitions(); older ones are dropped and counted. */
#define BREAKER_TRANSITION_RING 16

enum breaker_outcome {
    BREAKER_SUCCESS,
    BREAKER_FAILURE,
    BREAKER_IGNORED, /* 4xx/429/cancelled: frees a probe slot, counts neither way */
};

/*
 * reason says why, with the actual numbers, e.g.
 *   "5 consecutive failures and 62% of 13 calls in 10000 ms failed; open for 1000 ms"
 *   "5 consecutive failures, 6 calls in 10000 ms (too few for the rate rule); open for 1000 ms"
 *   "open for 1000 ms", "probe succeeded", "probe failed; open for 2000 ms"
 */
struct breaker_transition {
    enum breaker_state from, to;
    char reason[192];
};

/*
 * Creates a CLOSED breaker. dependency (e.g. "anthropic", "get_weather";
 * NULL = "") is copied. Returns NULL on ENOMEM.
 */
struct breaker *breaker_new(const char *dependency, const struct breaker_config *cfg);

/* Frees b (NULL is fine); returns NULL. No other thread may still use b. */
struct breaker *breaker_free(struct breaker *b);

/*
 * May a call start now? true -> go (closed: the call counts as started in the
 * window; half-open: it takes one of the probe slots; the caller MUST later
 * call breaker_record() exactly once for every allowed call).
 * false -> fail fast; *ret_retry_after_ms (may be NULL) = time left until
 * half-open (>= 1 while open) or BREAKER_PROBES_BUSY_RETRY_MS when half-open
 * with all probe slots taken; it is written only when false is returned.
 * OPEN -> HALF_OPEN happens lazily here when the open interval has passed.
 */
bool breaker_allow(struct breaker *b, int64_t now_ms, int64_t *ret_retry_after_ms);

/*
 * Records the outcome of an allowed call.
 * CLOSED: FAILURE increments the consecutive count and enters the window,
 *   SUCCESS resets the consecutive count and enters the window, IGNORED takes
 *   the call back out of the window's started calls (it counts neither way);
 *   only a FAILURE can open it (both rules, see the top of this file).
 * HALF_OPEN: frees a probe slot; SUCCESS -> CLOSED (window and counters
 *   reset), FAILURE -> OPEN for the next, doubled, interval, IGNORED -> stays
 *   half-open.
 *   A late answer from a call admitted before the breaker opened cannot be
 *   told apart from a probe and is treated like one.
 * OPEN: late answers from calls admitted earlier are ignored.
 * A disabled breaker ignores everything.
 */
void breaker_record(struct breaker *b, int64_t now_ms, enum breaker_outcome outcome);

/* Current state at now_ms (performs the same lazy OPEN -> HALF_OPEN step as breaker_allow). */
enum breaker_state breaker_state(struct breaker *b, int64_t now_ms);

/*
 * Moves up to cap queued transitions, oldest first, into out and returns how
 * many were copied; each transition is handed out exactly once. The queue
 * holds BREAKER_TRANSITION_RING entries; on overflow the oldest is dropped
 * (see breaker_transitions_dropped()).
 */
size_t breaker_drain_transitions(struct breaker *b, struct breaker_transition *out, size_t cap);

/* Transitions since creation, including dropped ones (for metrics). */
uint64_t breaker_transitions_total(struct breaker *b);

/* Transitions lost because nobody drained the queue in time. */
uint64_t breaker_transitions_dropped(struct breaker *b);

/* The name given to breaker_new(); valid until breaker_free(). Needs no lock (immutable). */
const char *breaker_dependency(const struct breaker *b);

/* A reload: cfg applies from the next call on (clamped as at breaker_new). The state, the
   consecutive count and an open circuit's end stay as they are; the window's counts too, unless
   window_ms changed (then the window starts empty). The next open interval follows the new
   first_open_ms / open_ms. Any thread. */
void breaker_set_config(struct breaker *b, const struct breaker_config *cfg);

#endif
