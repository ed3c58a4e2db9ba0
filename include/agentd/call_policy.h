/*
 * call_policy.h — every decision about one outbound call (LLM or HTTP tool),
 * as one pure function: given what just happened to the call and now_ms,
 * what happens next — start an attempt, wait until T, wait for a limiter
 * token until T, or give up with an outcome and a Retry-After for the client.
 *
 * The policies compose outermost first: deadline → circuit breaker → retry
 * (budget, full-jitter backoff, retry-after honoured and capped; a 429 with
 * retry-after pauses the dependency's limiter and does not use up retry_max
 * or the budget) → rate limiter (one token per attempt, the 429 pause and its
 * single probe) → attempt.
 *
 * Pure: nothing here reads a clock, a socket or logs. The caller passes
 * now_ms (monotonic), the wall clock only to read HTTP-date retry-after
 * values, and a per-thread rng state. The guards (breaker, bucket, budget)
 * are the dependency's shared objects; this function updates them as the
 * call moves (they carry their own locks). The call's own progress is
 * caller-owned and touched by one thread at a time. The caller executes the
 * verdict (timers, transfers) and reports what the verdict says happened
 * (logs, metrics); it decides nothing itself.
 */
#ifndef AGENTD_CALL_POLICY_H
#define AGENTD_CALL_POLICY_H

#include <stdbool.h>
#include <stdint.h>

struct breaker;
struct bucket;
struct retry_budget;
struct ratelimit_headers;

/* How a call ended (delivered to its owner once). */
enum call_outcome {
    CALL_OK = 0,       /* 2xx; the owner has the body */
    CALL_PERMANENT,    /* a status that must not be retried (4xx but 408/409/429) */
    CALL_EXHAUSTED,    /* transient failures and no retry left (count, budget or deadline) */
    CALL_BREAKER_OPEN, /* failed fast: the dependency's circuit is open */
    CALL_RATE_LIMITED, /* no limiter token before the deadline (or now, for low priority) */
    CALL_DEADLINE,     /* the call's deadline passed */
};
/* "ok", "permanent_error", "retries_exhausted", "circuit_open", "rate_limited", "deadline". */
const char *call_outcome_name(enum call_outcome o);

/* Retry settings of one dependency (AGENTD_RETRY_*). */
struct call_policy {
    int retry_max;              /* retries after the first attempt (transient failures only) */
    int64_t retry_initial_ms;   /* base of the full-jitter backoff */
    int64_t retry_max_delay_ms; /* cap of one backoff delay */
    int64_t retry_after_cap_ms; /* cap on a server's retry-after / retry-after-ms */
};

/* The dependency's shared resilience objects (borrowed; none may be NULL). */
struct call_guards {
    struct breaker *breaker;
    struct bucket *bucket;
    struct retry_budget *budget;
    /* The cluster-wide limiter (Redis) is reachable from the caller now: ask it for tokens
       (CALL_ACT_ASK_SHARED) instead of the local bucket, which then stands in only when an
       answer does not come (CALL_SHARED_UNAVAILABLE). */
    bool shared;
};

/* Fallback Retry-After for the client when nothing better is known. */
#define CALL_POLICY_DEFAULT_RETRY_AFTER_MS 1000
/* How often calls held back by a throttled dependency look whether its probe came back. */
#define CALL_POLICY_THROTTLE_RECHECK_MS 25

enum call_phase {
    CALL_PHASE_IDLE = 0,   /* not started, or finished */
    CALL_PHASE_WAIT,       /* a timer, then CALL_EV_READY (start, backoff, throttle recheck) */
    CALL_PHASE_TOKEN_WAIT, /* a limiter token is reserved; a timer, then CALL_EV_TOKEN_DUE */
    CALL_PHASE_LAUNCHING,  /* told to launch; CALL_EV_LAUNCHED or _LAUNCH_FAILED comes next */
    CALL_PHASE_IN_FLIGHT,  /* an attempt is on the wire; CALL_EV_ATTEMPT_END comes next */
    CALL_PHASE_ASKING,     /* the cluster limiter was asked; CALL_EV_SHARED_ANSWER comes next */
};

/* One call's progress, owned by the caller. Set it up with call_progress_init(). */
struct call_progress {
    int64_t deadline_ms; /* monotonic; no attempt starts and no wait ends past it */
    bool low_priority;   /* never waits for a limiter token */
    enum call_phase phase;
    int attempts;          /* attempts started */
    int throttled_retries; /* retries after a 429 with retry-after: the server said when, so they
                              count against the deadline, not retry_max or the budget */
    long last_status;      /* HTTP status of the last attempt, 0 when it had none */
    bool counted_request;  /* the retry budget has seen this call's first attempt */
    bool probe;            /* this call holds its dependency's throttle probe (see bucket.h) */
    bool shared_token;     /* the token it waits for or used came from the cluster limiter */
    bool shared_probe;     /* it holds the cluster's probe of pause generation shared_gen */
    int64_t shared_gen;
    /* A 529 (overloaded) ends the call at once instead of being retried: the owner has another
       model to move to (model_chain.h). Set after call_progress_init(). */
    bool overload_ends;
};

void call_progress_init(struct call_progress *p, int64_t deadline_ms, bool low_priority);

enum call_event_kind {
    CALL_EV_READY,     /* start, or a wait ended: deadline → breaker → throttle → limiter */
    CALL_EV_TOKEN_DUE, /* the reserved limiter token is due */
    CALL_EV_LAUNCHED,  /* the attempt the verdict asked for is on the wire */
    CALL_EV_LAUNCH_FAILED, /* it could not be started (no memory for a transfer) */
    CALL_EV_ATTEMPT_END,   /* an attempt ended; see the fields below */
    CALL_EV_CANCEL,        /* the owner stops the call wherever it is */
    CALL_EV_SHARED_ANSWER, /* the cluster limiter answered (or could not); see `shared` */
};

/* What the cluster limiter said (redis_scripts.h, limiter take). */
enum call_shared_answer {
    CALL_SHARED_GRANTED,     /* a token: start in shared_ms (a probe when shared_probe) */
    CALL_SHARED_REFUSED,     /* no token within the wait asked for (shared_ms: the wait) */
    CALL_SHARED_PAUSED,      /* a 429 pause for shared_ms more */
    CALL_SHARED_PROBE_OUT,   /* throttled, another replica probes: ask again shortly */
    CALL_SHARED_UNAVAILABLE, /* no answer (Redis down, slow, or an error): use the local bucket */
};

enum call_transport {
    CALL_TRANSPORT_ANSWERED, /* an HTTP status came back */
    CALL_TRANSPORT_TIMEOUT,  /* the attempt timeout fired */
    CALL_TRANSPORT_ERROR,    /* DNS, connect, TLS, reset, oversized body, ... */
};

struct call_event {
    enum call_event_kind kind;
    /* CALL_EV_ATTEMPT_END */
    enum call_transport transport;
    long status;        /* CALL_TRANSPORT_ANSWERED */
    bool body_rejected; /* a 2xx whose body the owner cannot use: a transient failure of the
                           dependency (one breaker outcome for the attempt, never two) */
    const char *retry_after_ms_hdr; /* the answer's headers, NULL when absent */
    const char *retry_after_hdr;
    const char *should_retry_hdr;
    /* The answer's anthropic-ratelimit-* headers (NULL: none kept). When they say a budget is
       spent until a reset, the dependency's limiter is paused until then (the cluster's too),
       so calls wait instead of taking a 429; a 429's retry-after still wins. */
    const struct ratelimit_headers *ratelimit;
    int64_t ratelimit_output_tokens; /* max_tokens of the next call (ratelimit_headers.h) */
    int64_t now_wall_ms;             /* epoch ms, for HTTP-date retry-after values and resets */
    /* CALL_EV_SHARED_ANSWER */
    enum call_shared_answer shared;
    int64_t shared_ms;
    bool shared_probe;
    int64_t shared_gen;
};

enum call_action {
    CALL_ACT_NONE,       /* nothing to do (the event needs no step, or the call was cancelled) */
    CALL_ACT_LAUNCH,     /* start an attempt now, then report CALL_EV_LAUNCHED or _FAILED */
    CALL_ACT_WAIT,       /* arm a timer for at_ms, then CALL_EV_READY */
    CALL_ACT_TOKEN_WAIT, /* arm a timer for at_ms, then CALL_EV_TOKEN_DUE */
    CALL_ACT_FINISH,     /* the call is over: outcome and retry_after_ms */
    CALL_ACT_ASK_SHARED, /* ask the cluster limiter for a token (wait at most max_wait_ms), then
                            report CALL_EV_SHARED_ANSWER */
};

/* A report the caller owes the cluster limiter besides the action (any verdict). */
enum call_probe_report {
    CALL_PROBE_REPORT_NONE = 0,
    CALL_PROBE_REPORT_RECOVERED, /* the cluster probe of shared_gen got a non-429 answer */
    CALL_PROBE_REPORT_FAILED,    /* it ended otherwise: the next caller probes */
};

/* What the verdict came from, so the caller can report it (log line, metric). */
enum call_note {
    CALL_NOTE_NONE,
    CALL_NOTE_DEADLINE,            /* FINISH: the deadline passed before an attempt could start */
    CALL_NOTE_BREAKER_OPEN,        /* FINISH: the circuit refused the attempt */
    CALL_NOTE_THROTTLED,           /* FINISH: the dependency answered 429 and is paused */
    CALL_NOTE_LIMITER_REFUSED,     /* FINISH: no limiter token in time */
    CALL_NOTE_LIMITER_WAIT,        /* LAUNCH or TOKEN_WAIT: took a token after delay_ms (maybe 0) */
    CALL_NOTE_LAUNCH_FAILED,       /* FINISH: the transfer could not be started */
    CALL_NOTE_SUCCESS,             /* FINISH: a 2xx answer */
    CALL_NOTE_PERMANENT,           /* FINISH: a status that must not be retried */
    CALL_NOTE_RETRY,               /* WAIT: a retry in delay_ms, for `reason` */
    CALL_NOTE_RETRIES_EXHAUSTED,   /* FINISH: retry_max reached */
    CALL_NOTE_RETRY_PAST_DEADLINE, /* FINISH: the wait (delay_ms) would end past the deadline */
    CALL_NOTE_BUDGET_EXHAUSTED,    /* FINISH: the dependency's retry budget is spent */
    CALL_NOTE_OVERLOADED,          /* FINISH: a 529 with overload_ends (the owner moves on) */
};

/* Why an attempt failed transiently (the reason label of the retry metrics). */
enum call_retry_reason {
    CALL_RETRY_HTTP_429,
    CALL_RETRY_HTTP_5XX, /* and 408/409: any other transient status */
    CALL_RETRY_TIMEOUT,
    CALL_RETRY_CONNECTION_ERROR,
    CALL_RETRY_MALFORMED, /* a 2xx whose body could not be used */
};

struct call_verdict {
    enum call_action action;
    int64_t at_ms;             /* WAIT, TOKEN_WAIT: when (monotonic) */
    enum call_outcome outcome; /* FINISH */
    int64_t retry_after_ms;    /* FINISH: hint for the client's Retry-After (>= 0) */
    enum call_note note;
    enum call_retry_reason reason; /* a transient failure's cause (RETRY and what ends retrying) */
    int64_t delay_ms;              /* RETRY, RETRY_PAST_DEADLINE, LIMITER_WAIT */
    int64_t max_wait_ms;           /* ASK_SHARED: the longest wait for a token (0: only now) */
    int64_t shared_pause_ms; /* > 0: tell the cluster limiter to pause the dependency this long
                                (a 429 with retry-after, or rate-limit headers saying a budget
                                is spent; the local bucket is paused as well) */
    enum call_probe_report probe_report;
    int64_t probe_gen;     /* with probe_report */
    int64_t reset_wait_ms; /* > 0: the rate-limit headers paused the dependency this long */
};

/*
 * Advances the call by one event. p: the dependency's retry settings; g: its
 * guards; st: the call's progress (updated); ev: what happened; now_ms:
 * monotonic time of the event; rng: the caller thread's splitmix64 state
 * (backoff.h). Writes *ret (always). An event that does not fit the call's
 * phase (e.g. CALL_EV_ATTEMPT_END while waiting) yields CALL_ACT_NONE and
 * changes nothing.
 */
void call_policy_step(const struct call_policy *p, const struct call_guards *g,
                      struct call_progress *st, const struct call_event *ev, int64_t now_ms,
                      uint64_t *rng, struct call_verdict *ret);

#endif
