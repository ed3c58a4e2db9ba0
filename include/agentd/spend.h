/*
 * spend.h — cost and token budget guard: stops new LLM work once the daemon
 * has spent its hourly allowance of US dollars or tokens, so a runaway
 * client or agent loop cannot run up an unbounded bill.
 *
 * Usage is recorded per LLM answer (input and output tokens, priced per
 * million tokens) into a sliding hour of SPEND_SLOTS sub-windows of
 * SPEND_SLOT_MS each: a spend leaves the budget between 59 and 60 minutes
 * after it was recorded, and memory is constant. A budget is "spent" while
 * the window's total has reached its limit (>=); each budget set to 0 is off.
 *
 * Pure policy: the caller passes now_ms (monotonic clock, ms); a now_ms older
 * than one already seen counts as the newest one seen. Nothing here reads a
 * clock, sleeps or logs:
 * changes between spent and available are queued and handed out once each by
 * spend_drain_transitions(), for one warning log line and one metric update
 * per change.
 *
 * Thread-safety: one struct spend is shared by all workers; every function
 * takes its own mutex for a few arithmetic operations (spend_cost_usd()
 * reads only the prices, fixed at creation, and needs none).
 *
 * Memory: spend_new() returns a guard the caller frees with spend_free();
 * nothing else allocates or returns memory.
 */
#ifndef AGENTD_SPEND_H
#define AGENTD_SPEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPEND_SLOTS     60
#define SPEND_SLOT_MS   60000
#define SPEND_WINDOW_MS ((int64_t)SPEND_SLOTS * SPEND_SLOT_MS)

/* Defaults of AGENTD_PRICE_INPUT_PER_MTOK / AGENTD_PRICE_OUTPUT_PER_MTOK (USD per 1e6 tokens). */
#define SPEND_DEFAULT_PRICE_INPUT  3.0
#define SPEND_DEFAULT_PRICE_OUTPUT 15.0

/* Defaults of AGENTD_PRICE_CACHE_WRITE_PER_MTOK / _READ_PER_MTOK, as multiples of the input price
   (the published prices of 5-minute cache writes and of cache reads). */
#define SPEND_CACHE_WRITE_MULTIPLIER 1.25
#define SPEND_CACHE_READ_MULTIPLIER  0.1

/* What one LLM answer billed. input_tokens is all the input, the cache writes and reads included
   (they are priced at the cache prices, the rest at the input price). */
struct spend_usage {
    int64_t input_tokens, cache_write_tokens, cache_read_tokens, output_tokens;
};

/* Transitions kept for spend_drain_transitions(); older ones are dropped. */
#define SPEND_TRANSITION_RING 8

enum spend_kind { SPEND_USD = 0, SPEND_TOKENS = 1 }; /* same order as enum metrics_budget_kind */

struct spend_transition {
    enum spend_kind kind;
    bool exhausted; /* true: ok -> spent; false: spent -> ok */
    int64_t at_ms;  /* now_ms of the call that noticed it */
    double used;    /* window total when noticed (USD or tokens) */
    double limit;   /* the budget (USD or tokens per hour) */
};

/*
 * price_in_per_mtok, price_out_per_mtok: USD per million input / output
 * tokens (negative or NaN -> 0). usd_per_hour, tokens_per_hour: budgets over
 * the sliding hour, 0 (or negative, NaN) = that budget off. Returns NULL on
 * ENOMEM.
 */
struct spend *spend_new(double price_in_per_mtok, double price_out_per_mtok, double usd_per_hour,
                        int64_t tokens_per_hour);

/* The prices of prompt-cache writes and reads (USD per million tokens); negative or NaN = the
   default multiple of the input price. spend_new() sets the defaults; call this before s is
   shared with other threads. */
void spend_set_cache_prices(struct spend *s, double write_per_mtok, double read_per_mtok);

/* Frees s (NULL is fine); returns NULL. No other thread may still use s. */
struct spend *spend_free(struct spend *s);

/* Cost in USD of this usage at s's prices (negative counts are taken as 0). */
double spend_cost_usd(const struct spend *s, int64_t in_tokens, int64_t out_tokens);

/* Adds the usage of one LLM answer at now_ms (negative counts are taken as 0). */
void spend_record(struct spend *s, int64_t now_ms, int64_t in_tokens, int64_t out_tokens);

/*
 * A call's reservation: its worst case, counted as spent in the minute it was made until
 * spend_settle() puts the real usage in its place. So calls in flight together cannot overshoot
 * a budget by more than one call's worst case. Caller-owned, zeroed = nothing held.
 */
struct spend_hold {
    bool held;
    int64_t index;    /* the minute it was counted in */
    int64_t nano_usd; /* what was counted */
    int64_t tokens;
};

/*
 * Like spend_allow(), and when allowed also reserves the worst case of the call about to start
 * (in_tokens: an estimate of its input, out_tokens: its max_tokens) into *ret_hold.
 */
bool spend_reserve(struct spend *s, int64_t now_ms, int64_t in_tokens, int64_t out_tokens,
                   struct spend_hold *ret_hold, int64_t *ret_retry_after_ms);
/*
 * The call ended having used in_tokens + out_tokens (what the LLM API billed, over all its
 * attempts): takes back what *hold counted (when its minute is still in the window) and records
 * the real usage at now_ms. hold NULL or not held: only records. *hold is cleared.
 */
void spend_settle(struct spend *s, int64_t now_ms, struct spend_hold *hold, int64_t in_tokens,
                  int64_t out_tokens);
/* spend_settle() with the cache counts priced at the cache prices (u is borrowed). */
void spend_settle_usage(struct spend *s, int64_t now_ms, struct spend_hold *hold,
                        const struct spend_usage *u);
/* Cost of u at s's prices, cache prices included, in nano-USD / USD. */
int64_t spend_usage_cost_nano(const struct spend *s, const struct spend_usage *u);
double spend_usage_cost_usd(const struct spend *s, const struct spend_usage *u);
/* Nano-USD of this usage at s's prices (what a hold counts). */
int64_t spend_cost_nano(const struct spend *s, int64_t in_tokens, int64_t out_tokens);
/* The configured budgets in nano-USD and tokens per hour (0 = off), for a shared budget. */
void spend_limits(const struct spend *s, int64_t *ret_nano_usd, int64_t *ret_tokens);
/*
 * This replica's share of the budgets when they are shared by `replicas` and the shared state
 * cannot be reached: each budget divided by replicas (>= 1; a budget that is on stays >= 1 unit).
 */
void spend_set_share(struct spend *s, int replicas);
/* A reload: the budgets from now on (as spend_new takes them; the usage counted so far stays).
   Any thread. */
void spend_set_budgets(struct spend *s, double usd_per_hour, int64_t tokens_per_hour);

/*
 * May new LLM work start at now_ms? false when a budget is spent; then
 * *ret_retry_after_ms (may be NULL; written only when false is returned) is
 * the time until enough old usage leaves the window for every spent budget
 * to be under its limit again (>= 1, at most SPEND_WINDOW_MS).
 */
bool spend_allow(struct spend *s, int64_t now_ms, int64_t *ret_retry_after_ms);

/* The window's totals at now_ms (either pointer may be NULL). */
void spend_window(struct spend *s, int64_t now_ms, double *ret_usd, int64_t *ret_tokens);

/*
 * Moves up to cap queued transitions, oldest first, into out and returns how
 * many were copied; each is handed out exactly once. Transitions are noticed
 * by spend_record() and spend_allow(), so a budget that frees up while no
 * call comes in is reported by the next call.
 */
size_t spend_drain_transitions(struct spend *s, struct spend_transition *out, size_t cap);

/*
 * AGENTD_MAX_RUN_TOKENS: true when max > 0 and the run has used max tokens
 * or more (input + output over all its LLM calls), i.e. it must not start
 * another LLM call. max <= 0 = no per-run limit.
 */
bool spend_run_over_limit(int64_t run_tokens, int64_t max);

#endif
