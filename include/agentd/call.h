/*
 * call.h — one outbound HTTP call (LLM or tool) wrapped in the resilience
 * policies, outermost first: deadline → circuit breaker → retry (budget,
 * full-jitter backoff, retry-after honoured and capped) → rate limiter (one
 * token per attempt) → attempt timeout. Runs entirely on one worker: waits
 * are timers, transfers are easy handles on the worker's multi handle.
 *
 * Lifecycle: the owner fills the request part, calls call_start(), and gets
 * done(c, arg) exactly once, always from the worker loop (never from inside
 * call_start or call_cancel). call_cancel() stops it without a callback.
 * call_reset() frees what one call used so the struct can be reused.
 */
#ifndef AGENTD_CALL_H
#define AGENTD_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "agentd/app.h"
#include "agentd/timerheap.h"

enum call_outcome {
    CALL_OK = 0,       /* 2xx; resp holds the body */
    CALL_PERMANENT,    /* a status that must not be retried (4xx but 408/409/429) */
    CALL_EXHAUSTED,    /* transient failures and no retry left (count, budget or deadline) */
    CALL_BREAKER_OPEN, /* failed fast: the dependency's circuit is open */
    CALL_RATE_LIMITED, /* no limiter token before the deadline (or now, for low priority) */
    CALL_DEADLINE,     /* the call's deadline passed */
};
const char *call_outcome_name(enum call_outcome o);

struct worker;
struct call;
typedef void (*call_done_fn)(struct call *c, void *arg);

#define CALL_HDR_VALUE_MAX 128

struct call {
    /* request, set by the owner */
    enum dep_id dep;
    char *url;                  /* owned */
    char *body;                 /* owned; non-NULL = POST with this JSON body */
    struct curl_slist *headers; /* owned */
    size_t max_response_bytes;
    int64_t attempt_timeout_ms;
    int64_t deadline_ms;    /* monotonic */
    bool low_priority;      /* never wait for a limiter token */
    const char *request_id; /* for logs (borrowed) */
    call_done_fn done;
    void *arg;

    /* result, valid in done() */
    enum call_outcome outcome;
    long status; /* last HTTP status, 0 when none */
    char *resp;  /* last response body (NUL-terminated), owned */
    size_t resp_len;
    char error[CURL_ERROR_SIZE]; /* what went wrong, for logs and client messages */
    char upstream_request_id[CALL_HDR_VALUE_MAX];
    int64_t retry_after_ms; /* hint for the client's Retry-After (>= 0) */
    int attempts;           /* attempts started */

    /* internal */
    struct worker *w;
    CURL *easy;
    struct timer timer;
    int state;
    bool counted_request;
    bool resp_overflow;
    char hdr_retry_after[CALL_HDR_VALUE_MAX];
    char hdr_retry_after_ms[CALL_HDR_VALUE_MAX];
    char hdr_should_retry[16];
    int64_t attempt_started_ms;
    bool probe;            /* this attempt is the dependency's throttle probe (see bucket.h) */
    int throttled_retries; /* re-tries after a 429 with retry-after: the server said when, so
                              they count against the deadline, not AGENTD_RETRY_MAX */
};

/* Prepares c (zeroes it). */
void call_init(struct call *c);
/* Starts the call on worker w. */
void call_start(struct worker *w, struct call *c);
/* Stops the call wherever it is; done() is not called. Safe when not started. */
void call_cancel(struct call *c);
/* After done() with CALL_OK: the body was unusable (e.g. malformed JSON). Treats it as a transient
   failure of the dependency; done() is called again later, with a new attempt's result when the
   policies allow a retry, else with CALL_EXHAUSTED. */
void call_retry_malformed(struct call *c, const char *why);
/* Frees request and result buffers; c can be filled and started again. */
void call_reset(struct call *c);

/* Worker integration: called by the worker for each finished easy handle. */
void call_on_transfer_done(CURL *easy, CURLcode result);

#endif
