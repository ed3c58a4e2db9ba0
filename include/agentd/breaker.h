/*
 * breaker.h — circuit breaker, one per dependency (LLM API, each tool API).
 *
 * CLOSED lets every call through and counts failures; enough consecutive
 * failures, or a high failure rate over the last calls, OPEN it: calls then
 * fail fast instead of piling onto a dependency that is down. After open_ms
 * it turns HALF_OPEN and admits a few probe calls; a successful probe closes
 * it, a failed one opens it again.
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
 * breaker_free(); the names it hands out are never freed by the caller.
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
 * range instead of failing: failure_threshold, window, half_open_probes and
 * min_calls to >= 1, window to <= BREAKER_MAX_WINDOW, min_calls to <= window,
 * open_ms to >= 0, failure_rate outside (0, 1] (or NaN) switches the rate
 * rule off.
 */
struct breaker_config {
    int failure_threshold; /* consecutive failures that open it (AGENTD_BREAKER_FAILURES, 5) */
    double failure_rate;   /* open when failures/calls >= this over the window (0.5); 0 = off */
    int window;            /* last N calls considered for the rate (20) */
    int min_calls;         /* rate rule applies only once the window holds this many calls (10) */
    int64_t open_ms;       /* time open before half-open (30000) */
    int half_open_probes;  /* concurrent probes admitted when half-open (1) */
    bool enabled;          /* false = always allow (used by the retry-budget chaos test) */
};

#define BREAKER_MAX_WINDOW 1024

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
 * reason is one of "5 consecutive failures", "failure rate 60% over last 20
 * calls", "open for 30000 ms", "probe succeeded", "probe failed" (with the
 * actual numbers).
 */
struct breaker_transition {
    enum breaker_state from, to;
    char reason[96];
};

/*
 * Creates a CLOSED breaker. dependency (e.g. "anthropic", "get_weather";
 * NULL = "") is copied. Returns NULL on ENOMEM.
 */
struct breaker *breaker_new(const char *dependency, const struct breaker_config *cfg);

/* Frees b (NULL is fine); returns NULL. No other thread may still use b. */
struct breaker *breaker_free(struct breaker *b);

/*
 * May a call start now? true -> go (in half-open this takes one of the probe
 * slots; the caller MUST later call breaker_record() for every allowed call).
 * false -> fail fast; *ret_retry_after_ms (may be NULL) = time left until
 * half-open (>= 1 while open) or BREAKER_PROBES_BUSY_RETRY_MS when half-open
 * with all probe slots taken; it is written only when false is returned.
 * OPEN -> HALF_OPEN happens lazily here when open_ms has passed.
 */
bool breaker_allow(struct breaker *b, int64_t now_ms, int64_t *ret_retry_after_ms);

/*
 * Records the outcome of an allowed call.
 * CLOSED: FAILURE increments the consecutive count and enters the window,
 *   SUCCESS resets the consecutive count and enters the window, IGNORED does
 *   nothing; only a FAILURE can open it (threshold or rate rule).
 * HALF_OPEN: frees a probe slot; SUCCESS -> CLOSED (window and counters
 *   reset), FAILURE -> OPEN for a fresh open_ms, IGNORED -> stays half-open.
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

/* A reload: cfg applies from the next call on (clamped as at breaker_new), except `window`, which
   keeps the size the breaker was made with. The state, the window's outcomes and an open
   circuit's end stay as they are. Any thread. */
void breaker_set_config(struct breaker *b, const struct breaker_config *cfg);

#endif
