/*
 * run.h — one agent run: the state machine that calls the LLM, executes the
 * tool_use blocks, sends the tool_results back, and repeats until the model
 * ends its turn, the iteration cap, or the run's deadline.
 *
 * Ownership. run_admit() takes everything a run holds before it starts — one
 * unit of the in-flight count, the Idempotency-Key claim, the conversation
 * slot — and the run gives each back exactly once, on every path: when it
 * finishes, when it is aborted at shutdown, when run_submit() fails, and
 * when it is released without having started.
 *
 * Outcomes. The run ends with a typed result (struct run_result); it knows
 * nothing of HTTP. Its owner turns the result into the bytes to answer with
 * (owner->render), which the run also stores under its Idempotency-Key, and
 * then hears about the end (owner->finished).
 *
 * Threads: run_admit, run_set_client_fd, run_submit, run_take_answer and
 * run_release on the owner's thread; everything else of the run happens on
 * its worker's thread. owner->render runs where the run ends (its worker, or
 * the caller of run_submit/run_abort); owner->finished on the worker.
 */
#ifndef AGENTD_RUN_H
#define AGENTD_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "agentd/agent_request.h"

struct app;
struct run;
struct worker;

enum run_outcome {
    RUN_OK,
    RUN_UPSTREAM_ERROR,       /* the LLM API refused the request permanently (upstream_status) */
    RUN_UPSTREAM_UNAVAILABLE, /* LLM retries exhausted or its circuit open */
    RUN_TOOL_UNAVAILABLE,     /* a critical tool failed */
    RUN_RATE_LIMITED,         /* the client-side LLM rate limit would miss the deadline */
    RUN_BUDGET_EXCEEDED,      /* the hourly token/cost budget is spent */
    RUN_DEADLINE_EXCEEDED,    /* the run's deadline passed */
    RUN_HISTORY_TOO_LARGE,    /* the conversation outgrew what one LLM request may carry */
    RUN_CLIENT_CLOSED,        /* the client went away; the run was cancelled */
    RUN_SHUTTING_DOWN,        /* agentd stopped before the run could finish */
    RUN_INTERNAL_ERROR,       /* out of memory and the like */
    /* Claims made on the worker (with Redis): the run ends before its first LLM call. */
    RUN_IDEM_REPLAYED,     /* its Idempotency-Key had finished: replay_status / replay_body */
    RUN_IDEM_IN_PROGRESS,  /* its Idempotency-Key is still running (on some replica) */
    RUN_IDEM_MISMATCH,     /* its Idempotency-Key came with another body */
    RUN_CONVERSATION_BUSY, /* another run holds its conversation */
    RUN_OVERLOADED,        /* a store is full (keys or conversations in progress) */
};

/* How a run ended. Strings and JSON are borrowed from the run (valid until run_release). */
struct run_result {
    enum run_outcome outcome;
    const char *run_id, *request_id;
    const char *conversation_id; /* NULL when the request had none */
    const char *stop_reason;     /* RUN_OK: end_turn | max_iterations | max_tokens | ... */
    const char *output;          /* RUN_OK: the model's last text ("" when none) */
    int iterations, llm_calls, llm_attempts;
    int64_t input_tokens, output_tokens;
    /* The parts of input_tokens written to and read from the prompt cache; reported when
       prompt_cache (AGENTD_PROMPT_CACHE) is on. */
    int64_t cache_creation_tokens, cache_read_tokens;
    bool prompt_cache;
    const char *model;        /* the model of the last LLM answer; NULL before the first call */
    const json_t *fallbacks;  /* [{model, reason}]: each model the run moved away from, in order */
    const json_t *tool_calls; /* [{id, name, ok, duration_ms}] */
    const json_t *degraded;   /* [{tool, reason}] */
    const char *message;      /* not RUN_OK: what happened, in words a client can act on */
    long upstream_status;     /* RUN_UPSTREAM_ERROR: the LLM API's status */
    int64_t retry_after_ms;   /* > 0: when to try again */
    int replay_status;        /* RUN_IDEM_REPLAYED: the stored answer, byte for byte */
    const char *replay_body;
    bool resumed; /* taken over from another replica's checkpoint ("resumed": true) */
};

/* The bytes the owner answers with; also what an Idempotency-Key replays. */
struct run_answer {
    int status;
    char *body; /* owned, NUL-terminated */
    int64_t retry_after_ms;
    bool replayed; /* a stored Idempotency-Key answer (Idempotent-Replayed: true) */
};

/* What a streaming client hears while the run goes (docs/API.md "Streaming"); the run's end is
   its answer, not an event. */
enum run_event_kind {
    RUN_EVENT_STARTED,       /* run.started {id, request_id, conversation_id?} */
    RUN_EVENT_TEXT_DELTA,    /* text.delta: iteration, text */
    RUN_EVENT_LLM_RETRY,     /* llm.retry {iteration, attempt, reason, discard_text: true} */
    RUN_EVENT_LLM_FALLBACK,  /* llm.fallback {from, to, reason} */
    RUN_EVENT_TOOL_STARTED,  /* tool.started {id, name} */
    RUN_EVENT_TOOL_FINISHED, /* tool.finished {id, name, ok, duration_ms, degraded?} */
    RUN_EVENT_KEEPALIVE,     /* nothing to say: every AGENTD_STREAM_PING_MS */
};

/* One event; everything borrowed for the call. */
struct run_event {
    enum run_event_kind kind;
    const char *name; /* "run.started", ...; NULL for RUN_EVENT_KEEPALIVE */
    int iteration;    /* RUN_EVENT_TEXT_DELTA: the LLM round trip (1 = the first) */
    const char *text; /* RUN_EVENT_TEXT_DELTA: new text, text_len bytes of valid UTF-8 */
    size_t text_len;
    const char *data; /* the others: the event's data as compact JSON (NUL-terminated) */
};

struct run_owner {
    /* Fills *ret from r (ret->body malloc'd; NULL body = out of memory). */
    void (*render)(const struct run_result *r, void *arg, struct run_answer *ret);
    /* The run has its answer (worker thread); the owner takes it with run_take_answer(). */
    void (*finished)(struct run *run, void *arg);
    /* Optional: the run's events, on its worker (NULL: a non-streaming run, which then also
       calls the LLM without streaming). A streaming owner must take each event without
       blocking. */
    void (*event)(const struct run_event *ev, void *arg);
    void *arg;
};

/* What run_admit() may refuse with. */
enum run_admission {
    RUN_ADMITTED = 0,
    RUN_REFUSED_OVERLOADED,         /* AGENTD_MAX_INFLIGHT runs in flight */
    RUN_REFUSED_MEMORY,             /* the runs in flight hold AGENTD_RUNS_MAX_BYTES already */
    RUN_REFUSED_IDEM_IN_PROGRESS,   /* the same key is still running */
    RUN_REFUSED_IDEM_MISMATCH,      /* the same key came with another body */
    RUN_REFUSED_IDEM_FULL,          /* too many keyed runs in progress */
    RUN_REPLAYED,                   /* the key's stored answer is in *ret_replay */
    RUN_REFUSED_CONVERSATION_BUSY,  /* another run holds the conversation */
    RUN_REFUSED_CONVERSATIONS_OFF,  /* AGENTD_CONVERSATIONS_MAX=0 */
    RUN_REFUSED_CONVERSATIONS_FULL, /* every stored conversation is running */
    RUN_REFUSED_NOMEM,
};

struct run_spec {
    struct agent_request *req; /* moved into the run when admitted (zeroed) */
    const char *request_id;    /* copied */
    /* Who asks (from its credentials; NULL or "" = anonymous): conversations and
       Idempotency-Keys live in the caller's own namespace. */
    const char *caller;
    const char *idem_key;                  /* NULL = none; copied */
    const unsigned char *idem_fingerprint; /* IDEM_FINGERPRINT_BYTES, with idem_key */
    const struct run_owner *owner;         /* copied */
    /* W3C Trace Context headers (NULL = absent; an invalid one starts a new trace). */
    const char *traceparent, *tracestate;
};

/*
 * Admits a run: takes an in-flight unit, the Idempotency-Key claim (when a key is given and keys
 * are on), the conversation slot (when the request names one), and its share of
 * AGENTD_RUNS_MAX_BYTES (the size of its conversation JSON, re-counted before each LLM call as
 * the history grows), in that order, and creates the run. RUN_ADMITTED: *ret_run is the run.
 * RUN_REPLAYED: *ret_replay holds the stored answer (body owned by the caller). Any other value:
 * nothing is held and *req is untouched.
 */
enum run_admission run_admit(struct app *app, struct run_spec *spec, struct run **ret_run,
                             struct run_answer *ret_replay);
/* Lets the run be cancelled when the client behind socket fd goes away (set before run_submit). */
void run_set_client_fd(struct run *run, int fd);
/* The run's trace id in hex (run_trace.h), NULL when untraced. Immutable: any thread, until
   run_release. */
const char *run_trace_hex(const struct run *run);
/* Hands the run to worker w. 0; or -ENOMEM / -ESHUTDOWN, and then the run has ended at once
   (RUN_INTERNAL_ERROR / RUN_SHUTTING_DOWN) and given back what it held: its answer is ready for
   run_take_answer(); owner->finished is not called. */
int run_submit(struct run *run, struct worker *w);
/* After the end (owner's thread, or inside owner->finished): moves the answer out (*ret; body
   owned by the caller). */
void run_take_answer(struct run *run, struct run_answer *ret);
/* The owner is done with the run. A run that never ended (never submitted) gives back what it
   held first. Owner's thread, once the worker no longer runs it. */
void run_release(struct run *run);

/* The owner's client went away (a streamed run whose connection closed): the run is cancelled
   as when its socket closes (see run_set_client_fd; a run with an Idempotency-Key goes on for its
   retry). Owner's thread, after run_submit() succeeded and before owner->finished; returns at
   once (the run ends on its worker, then owner->finished is called as usual). */
void run_client_gone(struct run *run);

/* The failing step moves to another model (the fallback chain): tells a streaming client
   (llm.fallback). Worker thread, while the run goes. */
void run_note_fallback(struct run *run, const char *from, const char *to, const char *reason);

/* A run's answer with this retry_after_ms says "retry at once" (Retry-After: 0). */
#define RUN_RETRY_AFTER_NOW (-1)

/*
 * Shutdown, grace over: every durable run (an Idempotency-Key held in Redis) lets go of its claim,
 * keeping its last checkpoint, and is answered 503 shutting_down with Retry-After: 0, so its
 * retry resumes on another replica at once. Posted to every worker; returns at once. Any thread.
 */
void run_hand_over(struct app *app);

/* Ends a run whose worker is stopped (shutdown) with RUN_SHUTTING_DOWN: cancels its timers and
   transfers and gives back what it held; its answer is then ready. owner->finished is not
   called. */
void run_abort(struct run *run);

#endif
