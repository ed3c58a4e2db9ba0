/*
 * dependency.h — one outbound dependency (the LLM API, web_search, weather):
 * its name, circuit breaker, token bucket (with the 429 pause and its probe),
 * retry budget and retry settings, and the reporting of its breaker
 * transitions as log lines and metrics.
 *
 * Built once by app_init() and shared by every worker. The settings never
 * change after dependency_new(); the breaker, bucket and budget carry their
 * own locks, so every function here is safe from any thread. Calls hold a
 * pointer to their dependency (borrowed: the dependency outlives them).
 */
#ifndef AGENTD_DEPENDENCY_H
#define AGENTD_DEPENDENCY_H

#include <stdint.h>

#include "agentd/breaker.h"
#include "agentd/call_policy.h"
#include "agentd/vocab.h" /* enum dep_id */

struct dependency;

struct dependency_config {
    enum dep_id id;
    struct breaker_config breaker;
    double rate_per_s; /* limiter refill (attempts/s) */
    double burst;      /* limiter size (attempts) */
    double budget_ratio;
    int64_t budget_window_ms;
    int budget_min;
    struct call_policy retry;
};

/* NULL on ENOMEM. now_ms: monotonic, fills the bucket's start. */
struct dependency *dependency_new(const struct dependency_config *cfg, int64_t now_ms);
/* NULL is fine; returns NULL. */
struct dependency *dependency_free(struct dependency *d);

enum dep_id dependency_id(const struct dependency *d);
/* "anthropic", "web_search", "weather" (static). */
const char *dependency_name(const struct dependency *d);
const struct call_policy *dependency_retry_policy(const struct dependency *d);
/* The shared objects the call policy consults (borrowed for the dependency's lifetime). */
struct call_guards dependency_guards(struct dependency *d);

/* Logs and counts the breaker's state changes since the last call (any thread). */
void dependency_report_transitions(struct dependency *d);

#endif
