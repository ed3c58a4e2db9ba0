/*
 * bucket.h — token bucket rate limiter, one per dependency, one token per
 * attempt.
 *
 * The bucket never makes anyone sleep: bucket_reserve() answers "you may
 * start in W ms" and commits that slot, and the caller arms a timer for W.
 * Reservations are handed out in arrival order at non-decreasing start
 * times, so a later caller never overtakes an earlier one and no waiter is
 * woken twice. Over any interval [t0, t1] of start times the bucket grants at
 * most burst + rate_per_s * (t1 - t0) / 1000 tokens (plus any given back by
 * bucket_cancel()). Waits are rounded up to whole ms: the bucket errs on
 * the slow side.
 *
 * Pure policy: the caller passes now_ms (monotonic clock, ms); nothing here
 * reads a clock, sleeps or logs. A now_ms a little older than one already
 * seen (threads race to the lock) is fine.
 *
 * Thread-safety: one struct bucket is shared by all workers; every function
 * takes the bucket's own mutex for a few arithmetic operations only.
 *
 * Memory: bucket_new() returns a bucket the caller frees with bucket_free();
 * nothing else allocates or returns memory.
 */
#ifndef AGENTD_BUCKET_H
#define AGENTD_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

/* Refill rates above this are clamped (1 token per microsecond is beyond any real limit). */
#define BUCKET_MAX_RATE_PER_S 1e9

/*
 * Creates a full bucket (burst tokens) at now_ms. rate_per_s: tokens added
 * per second, fractional allowed; <= 0 or NaN means no refill (only the
 * initial burst and cancelled reservations are ever granted). burst: bucket
 * size, clamped to >= 1 (a bucket that cannot hold one token would never
 * grant). Returns NULL on ENOMEM.
 */
struct bucket *bucket_new(double rate_per_s, double burst, int64_t now_ms);

/* Frees b (NULL is fine); returns NULL. No other thread may still use b. */
struct bucket *bucket_free(struct bucket *b);

/*
 * Changes the refill rate and size from now_ms on (same clamps as bucket_new). The balance
 * accrued so far at the old rate is kept, capped at the new burst; reservations already handed
 * out keep their times. Used when this replica's share of a cluster-wide rate changes.
 */
void bucket_set_rate(struct bucket *b, double rate_per_s, double burst, int64_t now_ms);

/*
 * Reserves one token for an attempt. Returns the wait in ms before the
 * attempt may start (0 = now) and commits the reservation (the bucket may go
 * into debt), or -1 if the wait would exceed max_wait_ms (nothing reserved).
 * max_wait_ms <= 0 means "only if a token is available now" (priority "low":
 * backpressure, never wait). A pause set by bucket_pause_until() is honoured:
 * nothing is granted before it.
 */
int64_t bucket_reserve(struct bucket *b, int64_t now_ms, int64_t max_wait_ms);

/*
 * Gives back one reservation that was not used (e.g. the run died while
 * waiting). The token goes to the next reservation; times already handed out
 * are not moved. Call it at most once per successful bucket_reserve().
 */
void bucket_cancel(struct bucket *b, int64_t now_ms);

/*
 * A 429 with retry-after from the upstream pauses the whole dependency until
 * until_ms (the later of the existing and the new pause), so one rate-limit
 * answer does not become a herd of retries. Tokens keep accruing (up to
 * burst) during the pause. It also (re)starts the throttle below, releasing
 * any probe slot that was out.
 */
void bucket_pause_until(struct bucket *b, int64_t until_ms);

/* The pause in effect (INT64_MIN when none was ever set). */
int64_t bucket_paused_until(struct bucket *b);

/*
 * After a 429 pause the dependency stays "throttled" until one probe attempt
 * gets an answer other than 429: when a pause ends, one call goes through as
 * the probe and every other waits, so the end of a pause never releases a
 * burst of attempts into a limit that may still be in force.
 *
 * bucket_throttle_gate returns 0 when the call may go on (*ret_probe tells
 * whether it is the probe and must report with bucket_throttle_probe_done),
 * the ms left in the pause when one is in force, or -1 while another call's
 * probe is out (check again shortly).
 */
int64_t bucket_throttle_gate(struct bucket *b, int64_t now_ms, bool *ret_probe);
/* The probe ended. recovered: it got a non-429 answer (the throttle ends);
   otherwise (transport error, cancelled) the next caller probes again. A 429
   with retry-after ends it through bucket_pause_until instead. */
void bucket_throttle_probe_done(struct bucket *b, bool recovered);

/*
 * Tokens available at now_ms, fractional. When reservations already reach
 * past now_ms (debt, or a pause), this is the balance after the latest one
 * minus what still has to accrue until it starts, so it goes negative: the
 * tokens owed. For tests and metrics.
 */
double bucket_tokens(struct bucket *b, int64_t now_ms);

#endif
