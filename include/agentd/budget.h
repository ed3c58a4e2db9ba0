/*
 * budget.h — retry budget, one per dependency: retries may add at most a
 * fixed fraction to the load a dependency already sees, so a dependency that
 * fails every call gets (1 + ratio) times its normal traffic, not
 * max_attempts times.
 *
 * Retries allowed = floor(min_retries + ratio * first_attempts) over a
 * sliding window, minus retries already spent in it. The window is
 * RETRY_BUDGET_SLOTS sub-windows of window_ms / RETRY_BUDGET_SLOTS each
 * (at least 1 ms), rotating with now_ms, so memory is constant. Hence, with
 * R first attempts inside one window and every attempt failing, total
 * attempts <= (1 + ratio) * R + min_retries.
 *
 * Pure policy: the caller passes now_ms (monotonic clock, ms); a now_ms older
 * than one already seen counts as the newest one seen. Nothing here reads a
 * clock, sleeps or logs.
 *
 * Thread-safety: one struct retry_budget is shared by all workers; every
 * function takes the budget's own mutex for a few arithmetic operations.
 *
 * Memory: retry_budget_new() returns a budget the caller frees with
 * retry_budget_free(); nothing else allocates or returns memory.
 */
#ifndef AGENTD_BUDGET_H
#define AGENTD_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#define RETRY_BUDGET_SLOTS 10

/*
 * ratio: retries per first attempt (e.g. 0.2), negative/NaN -> 0.
 * window_ms: sliding window length (e.g. 10000); rounded down to a multiple
 * of RETRY_BUDGET_SLOTS ms, at least RETRY_BUDGET_SLOTS ms.
 * min_retries: retries always allowed per window even at low traffic,
 * negative -> 0. Returns NULL on ENOMEM.
 */
struct retry_budget *retry_budget_new(double ratio, int64_t window_ms, int min_retries);

/* Frees b (NULL is fine); returns NULL. No other thread may still use b. */
struct retry_budget *retry_budget_free(struct retry_budget *b);

/* Counts a first attempt (not a retry) of a call to the dependency. */
void retry_budget_on_request(struct retry_budget *b, int64_t now_ms);

/* Asks to retry: true = allowed and counted as spent; false = budget exhausted (counted). */
bool retry_budget_try_spend(struct retry_budget *b, int64_t now_ms);

/* Refused retries since creation, for metrics. */
uint64_t retry_budget_exhausted_total(struct retry_budget *b);

#endif
