/*
 * model_chain.h — the model fallback chain (AGENTD_MODEL, then AGENTD_MODEL_FALLBACKS): which
 * models a run may use, in order, and whether a failed LLM call moves the run to the next one.
 *
 * A call moves on when its model is overloaded (529 overloaded_error), unavailable (5xx,
 * timeouts or connection errors after its retries), rate limited by the API after its retries
 * (a 429 that is not a spend limit), or its circuit breaker is open. It never moves on a
 * permanent 4xx (400, 401, ... the next model would get the same request refused), on a 429
 * whose error says a spend limit was reached (every model shares the bill), on this replica's
 * own limiter or budget, or when the run's deadline has passed.
 *
 * Each model is its own dependency (breaker, limiter, retry budget: dependency.h), so one
 * overloaded model opens its own breaker and leaves the others alone.
 *
 * Pure: parsing and decisions only; no clock, no I/O, no logging. A parsed chain is immutable
 * and may be read from any thread.
 */
#ifndef AGENTD_MODEL_CHAIN_H
#define AGENTD_MODEL_CHAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "agentd/call_policy.h" /* enum call_outcome */

/* The primary model and at most 4 fallbacks: the model label of the metrics stays bounded. */
#define MODEL_CHAIN_MAX 5
/* Longest model name in the chain (AGENTD_MODEL's limit). */
#define MODEL_NAME_MAX 256

struct model_chain {
    size_t n; /* >= 1 once parsed */
    char names[MODEL_CHAIN_MAX][MODEL_NAME_MAX + 1];
};

/*
 * Parses primary and the comma-separated fallbacks (spaces around names are ignored; NULL or ""
 * = none). Every name is 1..MODEL_NAME_MAX bytes, a fallback's of [A-Za-z0-9._:@/-] only;
 * names must not repeat.
 * Returns 0 and fills *ret, or -EINVAL with a message naming the problem in err.
 */
int model_chain_parse(const char *primary, const char *fallbacks, struct model_chain *ret,
                      char *err, size_t errlen);

enum model_fallback_reason {
    MODEL_FALLBACK_NONE = 0,     /* stay: the call's failure is the run's */
    MODEL_FALLBACK_OVERLOADED,   /* "overloaded": a 529 */
    MODEL_FALLBACK_UNAVAILABLE,  /* "unavailable": 5xx, timeouts, connection errors */
    MODEL_FALLBACK_RATE_LIMITED, /* "rate_limited": 429s (not a spend limit) after retries */
    MODEL_FALLBACK_CIRCUIT_OPEN, /* "circuit_open": the model's breaker refused the call */
};

/* "overloaded", "unavailable", "rate_limited", "circuit_open"; "none". Static strings. */
const char *model_fallback_reason_name(enum model_fallback_reason r);

/* How the LLM call failed. */
struct model_failure {
    enum call_outcome outcome;
    long last_status; /* HTTP status of its last attempt, 0 when none */
    bool spend_limit; /* a 429 whose error says a spend limit was reached */
};

/* Why the call's failure moves the run to another model; MODEL_FALLBACK_NONE when it does not. */
enum model_fallback_reason model_chain_reason(const struct model_failure *f);

/* The model after index current, or -1 when current is the last one. */
int model_chain_next(const struct model_chain *c, size_t current);

#endif
