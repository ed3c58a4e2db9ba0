/*
 * call.h — one outbound HTTP call (LLM or tool) on a worker, executing the
 * decisions of the call policy (call_policy.h): waits are timers, attempts
 * are easy handles on the worker's multi handle. This file decides nothing;
 * it runs the verdicts and reports them (log lines, metrics).
 *
 * Lifecycle: the owner fills the request part (dep, url, body, headers,
 * limits, done/arg), calls call_start(), and gets done(c, arg) exactly once,
 * always from the worker loop (never from inside call_start or call_cancel).
 * call_cancel() stops it without a callback. call_reset() frees what one
 * call used so the struct can be reused. Everything here runs on the
 * worker's thread; the struct belongs to its owner (a run, a tool call).
 */
#ifndef AGENTD_CALL_H
#define AGENTD_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "agentd/call_policy.h"
#include "agentd/ratelimit_headers.h"
#include "agentd/redis.h"
#include "agentd/timerheap.h"
#include "agentd/worker.h"

struct dependency;
struct call;
struct trace_span;
typedef void (*call_done_fn)(struct call *c, void *arg);

#define CALL_HDR_VALUE_MAX 128

struct call {
    /* request, set by the owner */
    struct dependency *dep;     /* borrowed; outlives the call */
    char *url;                  /* owned */
    char *body;                 /* owned; non-NULL = POST with this JSON body */
    struct curl_slist *headers; /* owned */
    size_t max_response_bytes;
    int64_t attempt_timeout_ms;
    int64_t deadline_ms;    /* monotonic */
    bool low_priority;      /* never wait for a limiter token */
    const char *request_id; /* for logs (borrowed) */
    /* Its span (trace.h; borrowed; NULL = untraced): every attempt carries its traceparent and
       tracestate, and each attempt's end is an event on it. */
    struct trace_span *span;
    call_done_fn done;
    void *arg;
    /* Optional: judges a 2xx body as it arrives (c->resp holds it). false = unusable (why says
       why): the attempt is a transient failure, retried when the policies allow. */
    bool (*accept)(struct call *c, void *arg, char *why, size_t why_len);
    /* Optional (streamed answers): takes the body of a 2xx answer as it arrives, in place of
       resp (which then stays empty; accept still judges the attempt at its end). false = stop
       the transfer now (an answer over its bounds): the attempt fails like a broken
       connection, retried when the policies allow. */
    bool (*stream)(struct call *c, void *arg, const char *data, size_t len);
    /* Optional: an attempt ended without a usable answer (no answer, a non-2xx status, or
       refused by accept); error says why. Told before the policy decides what comes next. */
    void (*attempt_failed)(struct call *c, void *arg);
    /* The LLM API: a 529 ends the call at once (the owner moves to another model), and the
       answer's rate-limit headers are read with max_tokens = ratelimit_output_tokens. */
    bool overload_ends;
    bool read_ratelimit;
    int64_t ratelimit_output_tokens;

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
    struct worker_transfer xfer;
    CURL *easy;
    struct timer timer;
    struct call_progress progress;
    struct redis_req shared_req; /* the cluster limiter's answer, while asking */
    size_t resp_alloc;
    bool resp_overflow;
    bool stream_refused; /* the stream hook stopped the transfer */
    bool finishing;      /* done() is due from the loop */
    char hdr_retry_after[CALL_HDR_VALUE_MAX];
    char hdr_retry_after_ms[CALL_HDR_VALUE_MAX];
    char hdr_should_retry[16];
    struct ratelimit_headers ratelimit;
    int64_t attempt_started_ms;
    int64_t started_ms; /* call_start's monotonic time: the operation's duration */
};

/* Prepares c (zeroes it). */
void call_init(struct call *c);
/* Starts the call on worker w. */
void call_start(struct worker *w, struct call *c);
/* Stops the call wherever it is; done() is not called. Safe when not started. */
void call_cancel(struct call *c);
/* Frees request and result buffers; c can be filled and started again. */
void call_reset(struct call *c);

#endif
