/*
 * run.c — the agent loop as a state machine on one worker (see run.h).
 *
 *   begin → LLM call ─end_turn/max_tokens/refusal/…→ done
 *              │ tool_use
 *              ▼
 *           tools (all blocks at once) → tool_results → LLM call …
 *
 * Only the failing step is retried (inside call.c); tool results already
 * obtained stay in the history. One deadline bounds the whole run.
 */
#include "agentd/run.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/anthropic.h"
#include "agentd/anthropic_stream.h"
#include "agentd/app.h"
#include "agentd/call.h"
#include "agentd/checkpoint.h"
#include "agentd/clock.h"
#include "agentd/conversations.h"
#include "agentd/dependency.h"
#include "agentd/idempotency.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/model_chain.h"
#include "agentd/shared_budget.h"
#include "agentd/shared_claims.h"
#include "agentd/spend.h"
#include "agentd/text.h"
#include "agentd/tool_result.h"
#include "agentd/tools_exec.h"
#include "agentd/worker.h"
#include "agentd/run_trace.h"

#define LLM_MAX_RESPONSE_BYTES (16u * 1024 * 1024)
#define RUN_MESSAGE_MAX        768
/* Its trace id beside its request id in every log line of a traced run (run_trace.h). */
#define LF_RUN_TRACE(run) LF_SO("trace_id", run_trace_id((run)->trace))

struct run {
    struct app *app;
    struct worker *w;
    struct worker *home; /* the worker it was submitted to (owner's thread: run_client_gone) */
    char id[40];
    char request_id[129];
    struct agent_request req;
    struct run_owner owner;
    int max_iterations;
    int64_t started_ms, deadline_ms;
    json_t *messages; /* the conversation sent to the model */

    /* what the run holds until it settles (run_admit) */
    bool holds_inflight;
    char *idem_key;          /* the Idempotency-Key claim, NULL when none */
    bool holds_conversation; /* conv_key's slot */
    char *conv_key;          /* the conversation's key in the store: the caller's namespace and
                                req.conversation_id; NULL when the request names none */
    size_t held_bytes;       /* its share of app->run_bytes */

    /* Claims made in Redis on the worker when AGENTD_REDIS_URL is set (the local store stands in
       when Redis cannot answer): the Idempotency-Key and the conversation. */
    char *claim_idem; /* caller-scoped key still to claim; NULL when none */
    unsigned char idem_fp[IDEM_FINGERPRINT_BYTES];
    bool claim_conv;  /* conv_key still to acquire */
    bool shared_idem; /* held in Redis (idem_redis_key) */
    bool shared_conv; /* held in Redis (conv_keys, conv_version) */
    bool committing;  /* the turn's history is being committed; the answer waits for it */
    bool storing;     /* the answer is being stored under the key; telling the owner waits */
    bool handed_over; /* shutdown: its claim is released for another replica to resume */
    bool listed;      /* in app->durable_runs of its worker */
    struct run *durable_prev, *durable_next;
    char idem_redis_key[SHARED_KEY_MAX];
    struct shared_conv_keys conv_keys;
    int64_t conv_version;
    char claim_owner[SHARED_OWNER_MAX];
    struct redis_req claim_req;
    struct timer lease_timer;
    int replay_status;
    char *replay_body;
    /* Durable (a shared Idempotency-Key): the state is checkpointed after every step. */
    bool resumed;        /* taken over from another replica's checkpoint */
    bool checkpoint_off; /* outgrew AGENTD_RUN_CHECKPOINT_MAX_BYTES: non-durable from then on */
    bool checkpoint_warned;
    json_t *resume_results; /* the checkpoint's tool results, until resume_step uses them */
    char *resume_stop;      /* the checkpoint's last stop reason, until resume_step uses it */
    const char *last_stop;  /* why the last LLM answer stopped (static), for checkpoints */

    /* progress */
    int iterations, llm_calls, llm_attempts;
    int64_t input_tokens, output_tokens;
    int64_t cache_creation_tokens, cache_read_tokens; /* parts of input_tokens */
    char *last_text;
    json_t *tool_calls; /* [{id, name, ok, duration_ms}] */
    json_t *degraded;   /* [{tool, reason}] */
    /* The model fallback chain (model_chain.h): the run stays on the model it moved to. */
    size_t model_index;
    const char *model_answered; /* the model of the last answer (the app's string), or NULL */
    json_t *fallbacks;          /* [{model, reason}]: the models it moved away from */
    struct call llm;
    /* The hourly budget: the LLM call's reservation (local, or the cluster's), and what the API
       billed for the call so far (every attempt that answered). */
    struct spend_hold hold;
    bool shared_hold;
    int64_t shared_minute, shared_nano, shared_tokens;
    int64_t call_in_tokens, call_out_tokens;
    int64_t call_cache_write_tokens, call_cache_read_tokens; /* parts of call_in_tokens */
    struct redis_req budget_req;
    struct llm_response resp; /* the last LLM answer, parsed as it arrived (accept_llm_answer) */
    /* Streaming (owner.event set): the LLM answer put together as it streams, whether this
       attempt has told the client some of its text, and the keep-alive timer. */
    struct anthropic_stream *stream;
    bool text_streamed;
    struct timer ping_timer;
    struct tool_exec *tools;
    size_t n_tools, n_tools_done;
    struct timer deadline_timer;
    struct timer finish_timer; /* tells the owner from the loop, after the current step */
    struct worker_watch client;
    bool client_watched;
    bool finished;   /* the result is set and everything held is given back */
    bool off_worker; /* it ended away from a running worker (end_off_worker) */

    /* result */
    enum run_outcome outcome;
    const char *stop_reason;
    char message[RUN_MESSAGE_MAX];
    long upstream_status;
    int64_t retry_after_ms;
    struct run_answer answer;

    struct run_trace *trace; /* its spans (run_trace.h); NULL = untraced */
};

static void llm_step(struct run *run);
static void settle_budget(struct run *run, int64_t now);
static void checkpoint(struct run *run);
static void on_tool_done(struct tool_exec *t, void *arg);
static void tools_done(struct run *run);

/* ---- events for a streaming owner ------------------------------------------------------- */

/* Tells the owner event `name` with data (taken over); nothing when it does not listen (callers
   with data to build check run->owner.event first, so a non-streaming run builds none), or when
   the data cannot be serialised (out of memory: the event is lost, the run goes on). */
static void emit(struct run *run, enum run_event_kind kind, const char *name, json_t *data)
{
    char *s = run->owner.event && data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!s)
        return;
    run->owner.event(&(struct run_event){.kind = kind, .name = name, .data = s}, run->owner.arg);
    free(s);
}

static void on_ping_timer(struct timer *t, void *arg)
{
    (void)t;
    struct run *run = arg;
    run->owner.event(&(struct run_event){.kind = RUN_EVENT_KEEPALIVE}, run->owner.arg);
    timerheap_arm(worker_timers(run->w), &run->ping_timer,
                  worker_now_ms(run->w) + run->app->cfg.stream_ping_ms);
}

void run_note_fallback(struct run *run, const char *from, const char *to, const char *reason)
{
    emit(run, RUN_EVENT_LLM_FALLBACK, "llm.fallback",
         json_pack("{s:s, s:s, s:s}", "from", from, "to", to, "reason", reason));
}

/* ---- what the run holds ------------------------------------------------------------------ */

static enum metrics_run_outcome metrics_outcome(enum run_outcome o)
{
    switch (o) {
    case RUN_OK:
        return METRICS_RUN_OK;
    case RUN_UPSTREAM_ERROR:
        return METRICS_RUN_UPSTREAM_ERROR;
    case RUN_UPSTREAM_UNAVAILABLE:
        return METRICS_RUN_UPSTREAM_UNAVAILABLE;
    case RUN_TOOL_UNAVAILABLE:
        return METRICS_RUN_TOOL_UNAVAILABLE;
    case RUN_RATE_LIMITED:
        return METRICS_RUN_RATE_LIMITED;
    case RUN_BUDGET_EXCEEDED:
        return METRICS_RUN_BUDGET_EXCEEDED;
    case RUN_DEADLINE_EXCEEDED:
        return METRICS_RUN_DEADLINE_EXCEEDED;
    case RUN_HISTORY_TOO_LARGE:
        return METRICS_RUN_HISTORY_TOO_LARGE;
    case RUN_CLIENT_CLOSED:
        return METRICS_RUN_CLIENT_CLOSED;
    case RUN_IDEM_REPLAYED:
        return METRICS_RUN_REPLAYED;
    case RUN_IDEM_IN_PROGRESS:
    case RUN_IDEM_MISMATCH:
    case RUN_CONVERSATION_BUSY:
    case RUN_OVERLOADED:
        return METRICS_RUN_REFUSED;
    case RUN_SHUTTING_DOWN:
        return METRICS_RUN_SHUTTING_DOWN;
    default:
        return METRICS_RUN_INTERNAL_ERROR;
    }
}

/* The stored history must stay valid for the next turn: never end with an
   unanswered tool_use or with a user message. */
static void history_close(json_t *messages, const char *text)
{
    size_t n = json_array_size(messages);
    if (n > 0) {
        json_t *last = json_array_get(messages, n - 1);
        const char *role = json_string_value(json_object_get(last, "role"));
        json_t *content = json_object_get(last, "content");
        bool has_tool_use = false;
        size_t i;
        json_t *b;
        json_array_foreach(content, i, b)
        {
            const char *type = json_string_value(json_object_get(b, "type"));
            if (type && strcmp(type, "tool_use") == 0)
                has_tool_use = true;
        }
        if (role && strcmp(role, "assistant") == 0 && has_tool_use)
            json_array_remove(messages, --n);
    }
    if (n > 0) {
        json_t *last = json_array_get(messages, n - 1);
        const char *role = json_string_value(json_object_get(last, "role"));
        if (role && strcmp(role, "user") == 0) {
            json_t *content = json_array();
            json_array_append_new(content, json_pack("{s:s, s:s}", "type", "text", "text",
                                                     text && *text ? text : "(no answer)"));
            anthropic_append_assistant(messages, content);
            json_decref(content);
        }
    }
}

static void fill_result(const struct run *run, struct run_result *r)
{
    *r = (struct run_result){
        .outcome = run->outcome,
        .run_id = run->id,
        .request_id = run->request_id,
        .conversation_id = run->req.conversation_id,
        .stop_reason = run->stop_reason ? run->stop_reason : "end_turn",
        .output = run->last_text ? run->last_text : "",
        .iterations = run->iterations,
        .llm_calls = run->llm_calls,
        .llm_attempts = run->llm_attempts,
        .input_tokens = run->input_tokens,
        .output_tokens = run->output_tokens,
        .cache_creation_tokens = run->cache_creation_tokens,
        .cache_read_tokens = run->cache_read_tokens,
        .prompt_cache = run->app->cfg.prompt_cache != 0,
        .model = run->model_answered,
        .fallbacks = run->fallbacks,
        .tool_calls = run->tool_calls,
        .degraded = run->degraded,
        .message = run->message,
        .upstream_status = run->upstream_status,
        .retry_after_ms = run->retry_after_ms,
        .replay_status = run->replay_status,
        .replay_body = run->replay_body,
        .resumed = run->resumed,
    };
}

/* Gives back everything run_admit took, once: the conversation slot (its history kept only after
   a successful run), the Idempotency-Key claim (completed with the answer, which the owner
   renders here), the in-flight unit. */
static void on_answer_stored(struct redis_req *req, int err, const redisReply *reply);

/* The worker's list of durable runs (worker thread only; after the workers stop, the thread
   that stopped them). */
static void durable_list(struct run *run, bool in)
{
    struct run **head = &run->app->durable_runs[worker_index(run->w)];
    if (in == run->listed)
        return;
    run->listed = in;
    if (in) {
        run->durable_prev = NULL;
        run->durable_next = *head;
        if (*head)
            (*head)->durable_prev = run;
        *head = run;
        return;
    }
    if (run->durable_prev)
        run->durable_prev->durable_next = run->durable_next;
    else
        *head = run->durable_next;
    if (run->durable_next)
        run->durable_next->durable_prev = run->durable_prev;
}

static void settle(struct run *run, int64_t now)
{
    struct app *app = run->app;
    if (run->listed)
        durable_list(run, false);
    settle_budget(run, now);
    if (run->holds_conversation) {
        bool ok = run->outcome == RUN_OK;
        if (ok)
            history_close(run->messages, run->last_text);
        conv_store_release(app->convs, run->conv_key, ok ? run->messages : NULL, now);
        run->holds_conversation = false;
    }
    if (run->shared_conv) {
        /* Not committed (the run failed, or ends off its worker): the lock goes, or lapses. */
        if (!run->off_worker)
            shared_conv_release(app->redis, worker_index(run->w), &run->conv_keys,
                                run->claim_owner);
        run->shared_conv = false;
    }
    struct run_result r;
    fill_result(run, &r);
    run->owner.render(&r, run->owner.arg, &run->answer);
    run_trace_end(run->trace, metrics_run_outcome_name(metrics_outcome(run->outcome)),
                  run->outcome == RUN_OK || run->outcome == RUN_IDEM_REPLAYED, run->answer.status,
                  run->iterations, run->input_tokens, run->output_tokens);
    if (run->shared_idem) {
        if (!run->off_worker) {
            bool keep =
                run->answer.body && run->outcome != RUN_CLIENT_CLOSED &&
                idem_status_replayable(run->answer.status) &&
                strlen(run->answer.body) <= app->cfg.idempotency_max_bytes / IDEM_MAX_ANSWER_SHARE;
            /* A retry on any replica must find the answer once the client has it; a run handed
               over keeps its checkpoint for the retry to resume. */
            run->claim_req.done = on_answer_stored;
            if (run->handed_over)
                run->storing =
                    shared_idem_release(app->redis, worker_index(run->w), run->idem_redis_key,
                                        run->claim_owner, &run->claim_req) == 0;
            else
                run->storing =
                    shared_idem_finish(app->redis, worker_index(run->w), run->idem_redis_key,
                                       run->claim_owner, run->answer.status,
                                       keep ? run->answer.body : NULL,
                                       app->cfg.idempotency_ttl_ms - (now - run->started_ms),
                                       &run->claim_req) == 0;
        }
        run->shared_idem = false;
    }
    if (run->idem_key) {
        /* A client-gone outcome is never stored: the retry must get a real answer. */
        if (run->answer.body && run->outcome != RUN_CLIENT_CLOSED)
            idem_complete(app->idem, run->idem_key, run->answer.status, run->answer.body);
        else
            idem_abandon(app->idem, run->idem_key);
        free(run->idem_key);
        run->idem_key = NULL;
    }
    if (run->holds_inflight) {
        atomic_fetch_sub(&app->inflight, 1);
        metrics_run_finished(metrics_outcome(run->outcome));
        run->holds_inflight = false;
    }
    atomic_fetch_sub(&app->run_bytes, run->held_bytes);
    run->held_bytes = 0;
}

/* Sets the run's share of app->run_bytes to bytes. With check, refuses (false, nothing changed)
   when the total would pass AGENTD_RUNS_MAX_BYTES; a run already going is never stopped by it,
   its growth only keeps new runs out. */
static bool hold_bytes(struct run *run, size_t bytes, bool check)
{
    struct app *app = run->app;
    if (bytes <= run->held_bytes) {
        atomic_fetch_sub(&app->run_bytes, run->held_bytes - bytes);
        run->held_bytes = bytes;
        return true;
    }
    size_t more = bytes - run->held_bytes;
    size_t before = atomic_fetch_add(&app->run_bytes, more);
    if (check && before + more > app->cfg.runs_max_bytes) {
        atomic_fetch_sub(&app->run_bytes, more);
        return false;
    }
    run->held_bytes = bytes;
    return true;
}

static void free_tools(struct run *run)
{
    for (size_t i = 0; i < run->n_tools; i++)
        tool_exec_clear(&run->tools[i]);
    free(run->tools);
    run->tools = NULL;
    run->n_tools = run->n_tools_done = 0;
}

/* The LLM call ended (or the run did): its real usage replaces its reservation, here and in the
   cluster. */
static void settle_budget(struct run *run, int64_t now)
{
    struct app *app = run->app;
    int64_t in = run->call_in_tokens, out = run->call_out_tokens;
    struct spend_usage usage = {.input_tokens = in,
                                .cache_write_tokens = run->call_cache_write_tokens,
                                .cache_read_tokens = run->call_cache_read_tokens,
                                .output_tokens = out};
    /* Off its worker (shutdown) the link is not this thread's: the cluster keeps the worst case
       until it leaves the window. */
    int64_t limit_nano, limit_tokens;
    spend_limits(app->spend, &limit_nano, &limit_tokens);
    bool budgets_on = limit_nano > 0 || limit_tokens > 0;
    if (!run->off_worker && (run->shared_hold || (app->redis && budgets_on && (in > 0 || out > 0))))
        shared_budget_settle(app->redis, worker_index(run->w),
                             run->shared_hold ? run->shared_minute : -1, run->shared_nano,
                             run->shared_tokens, spend_usage_cost_nano(app->spend, &usage),
                             llm_tokens_add(in, out));
    run->shared_hold = false;
    /* Recorded here too: the local window is what the fallback decides on. */
    spend_settle_usage(app->spend, now, &run->hold, &usage);
    app_log_spend_transitions(app);
    run->call_in_tokens = run->call_out_tokens = 0;
    run->call_cache_write_tokens = run->call_cache_read_tokens = 0;
}

/* Stops timers, transfers and tools, and stops watching the client. */
static void stop_everything(struct run *run)
{
    if (!run->w)
        return;
    redis_req_cancel(&run->budget_req);
    if (!run->committing)
        redis_req_cancel(&run->claim_req);
    timerheap_cancel(worker_timers(run->w), &run->lease_timer);
    if (run->client_watched) {
        worker_unwatch_client(run->w, &run->client);
        run->client_watched = false;
    }
    timerheap_cancel(worker_timers(run->w), &run->deadline_timer);
    timerheap_cancel(worker_timers(run->w), &run->finish_timer);
    timerheap_cancel(worker_timers(run->w), &run->ping_timer);
    call_cancel(&run->llm);
    for (size_t i = 0; i < run->n_tools; i++)
        tool_exec_cancel(&run->tools[i]);
}

static void set_outcome(struct run *run, enum run_outcome outcome, int64_t retry_after_ms,
                        const char *fmt, va_list ap)
{
    run->outcome = outcome;
    run->retry_after_ms = retry_after_ms;
    if (fmt)
        vsnprintf(run->message, sizeof(run->message), fmt, ap);
}

/* The last of a run's end on its worker: give back, tell the owner from the loop. */
static void finish_tail(struct run *run)
{
    int64_t now = worker_refresh_now(run->w);
    settle(run, now);
    log_info("run end", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("run_id", run->id), LF_I("status", run->answer.status),
             LF_S("reason", metrics_run_outcome_name(metrics_outcome(run->outcome))),
             LF_I("iterations", run->iterations), LF_I("llm_attempts", run->llm_attempts),
             LF_I("duration_ms", now - run->started_ms));
    /* The owner may free the run as soon as it has the answer, and code up the stack may still
       look at it: tell it from the loop instead (once the answer is stored, when it is). */
    if (!run->storing)
        timerheap_arm(worker_timers(run->w), &run->finish_timer, now);
}

static void on_answer_stored(struct redis_req *req, int err, const redisReply *reply)
{
    struct run *run = (struct run *)((char *)req - offsetof(struct run, claim_req));
    run->storing = false;
    if (err != 0 || !reply || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
        /* Its last checkpoint holds the answer: a retry after the lease takes it over and
           answers from it without calling the model again. */
        log_warn("answer not stored under its Idempotency-Key", LF_S("request_id", run->request_id),
                 LF_RUN_TRACE(run), LF_S("run_id", run->id),
                 LF_S("reason", err == -ETIMEDOUT ? "Redis timed out"
                                : err != 0        ? "Redis unavailable"
                                                  : "the claim was no longer this run's"));
    timerheap_arm(worker_timers(run->w), &run->finish_timer, worker_refresh_now(run->w));
}

static void turn_not_stored(struct run *run, const char *why)
{
    log_warn("conversation turn not stored", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("conversation_id", run->req.conversation_id), LF_S("reason", why));
}

static void on_committed(struct redis_req *req, int err, const redisReply *reply)
{
    struct run *run = (struct run *)((char *)req - offsetof(struct run, claim_req));
    run->committing = false;
    int r = shared_conv_committed(err, reply);
    if (r != 1)
        turn_not_stored(run, r == 0    ? "its lock had lapsed"
                             : r == -1 ? "another turn was stored first"
                                       : "Redis did not answer");
    finish_tail(run);
}

/* A successful turn of a conversation held in Redis: its history is stored before the answer
   goes out, so the next turn sees it on any replica. True when the commit is on its way
   (finish_tail follows from its answer). */
static bool commit_turn(struct run *run)
{
    struct app *app = run->app;
    const struct agentd_config *cfg = &app->cfg;
    if (!run->shared_conv || run->outcome != RUN_OK)
        return false;
    history_close(run->messages, run->last_text);
    json_t *kept = conv_history_trimmed(run->messages, (size_t)cfg->conversation_max_messages,
                                        cfg->conversation_max_bytes);
    char *text = kept ? json_dumps(kept, JSON_COMPACT) : NULL;
    json_decref(kept);
    run->claim_req.done = on_committed;
    int r = text ? shared_conv_commit(app->redis, worker_index(run->w), &run->conv_keys,
                                      run->claim_owner, run->conv_version, text,
                                      cfg->conversation_ttl_ms, &run->claim_req)
                 : -ENOMEM;
    free(text);
    if (r < 0) {
        turn_not_stored(run, r == -ENOMEM ? "out of memory" : "Redis did not answer");
        return false; /* settle releases the lock, or it lapses */
    }
    run->shared_conv = false; /* the commit releases the lock */
    run->committing = true;
    return true;
}

/* Common end of every run on its worker: stop, give back, tell the owner from the loop. */
static void finish(struct run *run, enum run_outcome outcome, int64_t retry_after_ms,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void finish(struct run *run, enum run_outcome outcome, int64_t retry_after_ms,
                   const char *fmt, ...)
{
    if (run->finished)
        return;
    run->finished = true;
    va_list ap;
    va_start(ap, fmt);
    set_outcome(run, outcome, retry_after_ms, fmt, ap);
    va_end(ap);
    stop_everything(run);
    if (!commit_turn(run))
        finish_tail(run);
}

/* Ends a run that is not on a running worker (failed submit, shutdown, never started). */
static void end_off_worker(struct run *run, enum run_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void end_off_worker(struct run *run, enum run_outcome outcome, const char *fmt, ...)
{
    if (run->finished && run->storing) {
        /* Stopped while its answer was being stored: the answer is ready all the same. */
        redis_req_cancel(&run->claim_req);
        run->storing = false;
        return;
    }
    if (run->finished && run->committing) {
        /* Stopped while its turn was being stored: what it holds is given back here. */
        redis_req_cancel(&run->claim_req);
        run->committing = false;
        run->off_worker = true;
        settle(run, clock_now_ms());
        return;
    }
    if (run->finished)
        return;
    run->finished = true;
    va_list ap;
    va_start(ap, fmt);
    set_outcome(run, outcome, outcome == RUN_SHUTTING_DOWN ? 1000 : 0, fmt, ap);
    va_end(ap);
    run->off_worker = true;
    stop_everything(run);
    settle(run, clock_now_ms());
}

static void run_free(struct run *run)
{
    free_tools(run);
    call_reset(&run->llm);
    llm_response_clear(&run->resp);
    anthropic_stream_free(run->stream);
    agent_request_clear(&run->req);
    free(run->conv_key);
    json_decref(run->messages);
    json_decref(run->tool_calls);
    json_decref(run->degraded);
    json_decref(run->fallbacks);
    free(run->last_text);
    free(run->answer.body);
    free(run->claim_idem);
    free(run->replay_body);
    json_decref(run->resume_results);
    free(run->resume_stop);
    run_trace_free(run->trace);
    free(run);
}

void run_release(struct run *run)
{
    if (!run)
        return;
    end_off_worker(run, RUN_INTERNAL_ERROR, "the run was dropped before it ended");
    run_free(run);
}

void run_abort(struct run *run)
{
    end_off_worker(run, RUN_SHUTTING_DOWN, "agentd is shutting down; retry on another replica");
}

void run_take_answer(struct run *run, struct run_answer *ret)
{
    *ret = run->answer;
    run->answer.body = NULL;
}

static void on_finish_timer(struct timer *t, void *arg)
{
    (void)t;
    struct run *run = arg;
    run->owner.finished(run, run->owner.arg);
}

static void on_deadline(struct timer *t, void *arg)
{
    (void)t;
    struct run *run = arg;
    finish(run, RUN_DEADLINE_EXCEEDED, 0,
           "the run did not finish within its %" PRId64 " ms deadline (%d LLM round trips done)",
           run->deadline_ms - run->started_ms, run->iterations);
}

static void finish_ok(struct run *run, const char *stop_reason)
{
    run->stop_reason = stop_reason;
    finish(run, RUN_OK, 0, NULL);
}

/* ---- the loop ---------------------------------------------------------------------------------
 */

/* Maps the model's stop reason onto the API's vocabulary. */
static const char *api_stop_reason(enum llm_stop s)
{
    switch (s) {
    case LLM_STOP_MAX_TOKENS:
    case LLM_STOP_CONTEXT_WINDOW_EXCEEDED:
        return "max_tokens";
    case LLM_STOP_STOP_SEQUENCE:
        return "stop_sequence";
    case LLM_STOP_REFUSAL:
        return "refusal";
    default:
        return "end_turn";
    }
}

/* Why an answer stopped, as a checkpoint keeps it: what resume_step needs to know. */
static const char *checkpoint_stop(enum llm_stop s)
{
    if (s == LLM_STOP_TOOL_USE)
        return "tool_use";
    if (s == LLM_STOP_PAUSE_TURN)
        return "pause_turn";
    return api_stop_reason(s);
}

/* A checkpoint's stop reason as the static string an answer reports. */
static const char *stop_static(const char *stop)
{
    static const char *const known[] = {"max_tokens", "stop_sequence", "refusal"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(stop, known[i]) == 0)
            return known[i];
    return "end_turn";
}

/* Appends the assistant content; a continuation after pause_turn extends the
   previous assistant message so roles keep alternating. */
static void append_assistant(struct run *run, const json_t *content)
{
    if (json_array_size(content) == 0)
        return;
    size_t n = json_array_size(run->messages);
    json_t *last = n ? json_array_get(run->messages, n - 1) : NULL;
    const char *role = last ? json_string_value(json_object_get(last, "role")) : NULL;
    if (role && strcmp(role, "assistant") == 0) {
        json_t *copy = json_deep_copy(content);
        json_array_extend(json_object_get(last, "content"), copy);
        json_decref(copy);
        return;
    }
    anthropic_append_assistant(run->messages, content);
}

static void on_tool_done(struct tool_exec *t, void *arg);

static void start_tool(struct run *run, struct tool_exec *t)
{
    if (run->owner.event)
        emit(run, RUN_EVENT_TOOL_STARTED, "tool.started",
             json_pack("{s:s, s:s}", "id", t->id, "name", t->name));
    run_trace_tool_start(run->trace, t);
    tool_exec_start(t, run->w, &run->app->tool_env, run->deadline_ms,
                    run->req.priority == AGENT_PRIORITY_LOW, run->request_id, on_tool_done, run);
}

static void start_tools(struct run *run, struct llm_response *resp)
{
    run->tools = calloc(resp->n_tool_uses, sizeof(*run->tools));
    if (!run->tools) {
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory");
        return;
    }
    run->n_tools = resp->n_tool_uses;
    run->n_tools_done = 0;
    for (size_t i = 0; i < run->n_tools; i++) {
        if (tool_exec_init(&run->tools[i], resp->tool_uses[i].id, resp->tool_uses[i].name,
                           resp->tool_uses[i].input) < 0) {
            finish(run, RUN_INTERNAL_ERROR, 0, "out of memory");
            return;
        }
    }
    /* Synchronous tools may finish (and even end the run) inside the loop. */
    for (size_t i = 0; i < run->n_tools && !run->finished; i++)
        start_tool(run, &run->tools[i]);
}

static enum metrics_fallback_reason metrics_fallback(enum model_fallback_reason r)
{
    switch (r) {
    case MODEL_FALLBACK_OVERLOADED:
        return METRICS_FALLBACK_OVERLOADED;
    case MODEL_FALLBACK_RATE_LIMITED:
        return METRICS_FALLBACK_RATE_LIMITED;
    case MODEL_FALLBACK_CIRCUIT_OPEN:
        return METRICS_FALLBACK_CIRCUIT_OPEN;
    default:
        return METRICS_FALLBACK_UNAVAILABLE;
    }
}

/* The run moves from model `from` to the next one of the chain (the decision is
   model_chain_reason's): recorded for the answer, the metrics and the log. */
static void note_fallback(struct run *run, size_t from, size_t to, enum model_fallback_reason why)
{
    const struct model_chain *models = &run->app->models;
    const char *reason = model_fallback_reason_name(why);
    json_array_append_new(run->fallbacks,
                          json_pack("{s:s, s:s}", "model", models->names[from], "reason", reason));
    metrics_llm_fallback((int)from, metrics_fallback(why));
    log_warn("llm fallback", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("run_id", run->id), LF_S("from", models->names[from]),
             LF_S("to", models->names[to]), LF_S("reason", reason));
    run_note_fallback(run, models->names[from], models->names[to], reason);
}

/* The LLM call failed: when its model is overloaded or unavailable and the chain has another
   model, the same step starts again on that one (true); else the failure is the run's. */
static bool fall_back(struct run *run, struct call *c)
{
    struct app *app = run->app;
    struct llm_error e = {0};
    if (c->status == 429)
        anthropic_parse_error(c->resp, c->resp_len, &e);
    enum model_fallback_reason why = model_chain_reason(
        &(struct model_failure){.outcome = c->outcome,
                                .last_status = c->status,
                                .spend_limit = anthropic_error_is_spend_limit(c->status, &e)});
    int next = why == MODEL_FALLBACK_NONE ? -1 : model_chain_next(&app->models, run->model_index);
    if (next < 0)
        return false;
    note_fallback(run, run->model_index, (size_t)next, why);
    run->model_index = (size_t)next;
    llm_step(run);
    return true;
}

static void llm_failed(struct run *run, struct call *c)
{
    switch (c->outcome) {
    case CALL_PERMANENT: {
        struct llm_error e;
        anthropic_parse_error(c->resp, c->resp_len, &e);
        log_error("LLM API refused the request", LF_S("request_id", run->request_id),
                  LF_RUN_TRACE(run), LF_I("status", c->status), LF_S("reason", e.type),
                  LF_S("upstream_request_id", c->upstream_request_id));
        run->upstream_status = c->status;
        finish(run, RUN_UPSTREAM_ERROR, 0, "the LLM API refused the request with HTTP %ld%s%s%s%s",
               c->status, e.type[0] ? " " : "", e.type, e.message[0] ? ": " : "", e.message);
        break;
    }
    case CALL_EXHAUSTED:
        finish(run, RUN_UPSTREAM_UNAVAILABLE, c->retry_after_ms,
               "the LLM API is unavailable after %d attempt(s): %s", c->attempts ? c->attempts : 1,
               c->error);
        break;
    case CALL_BREAKER_OPEN:
        finish(run, RUN_UPSTREAM_UNAVAILABLE, c->retry_after_ms,
               "the LLM API circuit is open after repeated failures; retry in %" PRId64 " ms",
               c->retry_after_ms);
        break;
    case CALL_RATE_LIMITED:
        finish(run, RUN_RATE_LIMITED, c->retry_after_ms, "client-side LLM rate limit: %s",
               c->error);
        break;
    case CALL_DEADLINE:
    default:
        on_deadline(NULL, run);
        break;
    }
}

/* Tokens the API billed: the run's totals, the hourly budget, the metrics. */
static void record_usage(struct run *run, const struct llm_usage *u)
{
    struct app *app = run->app;
    run->input_tokens = llm_tokens_add(run->input_tokens, u->input_tokens);
    run->output_tokens = llm_tokens_add(run->output_tokens, u->output_tokens);
    run->cache_creation_tokens =
        llm_tokens_add(run->cache_creation_tokens, u->cache_creation_tokens);
    run->cache_read_tokens = llm_tokens_add(run->cache_read_tokens, u->cache_read_tokens);
    /* Counted against the budget when the call settles its reservation. */
    run->call_in_tokens = llm_tokens_add(run->call_in_tokens, u->input_tokens);
    run->call_out_tokens = llm_tokens_add(run->call_out_tokens, u->output_tokens);
    run->call_cache_write_tokens =
        llm_tokens_add(run->call_cache_write_tokens, u->cache_creation_tokens);
    run->call_cache_read_tokens = llm_tokens_add(run->call_cache_read_tokens, u->cache_read_tokens);
    metrics_llm_tokens(u->input_tokens, u->output_tokens);
    metrics_llm_cache_tokens(u->cache_creation_tokens, u->cache_read_tokens);
    metrics_llm_cost_usd(spend_usage_cost_usd(
        app->spend, &(struct spend_usage){.input_tokens = u->input_tokens,
                                          .cache_write_tokens = u->cache_creation_tokens,
                                          .cache_read_tokens = u->cache_read_tokens,
                                          .output_tokens = u->output_tokens}));
}

/* Judges each 2xx answer as it arrives, so an unusable one is a failed attempt (retried) and
   never a success followed by a failure. */
static bool accept_llm_answer(struct call *c, void *arg, char *why, size_t why_len)
{
    struct run *run = arg;
    llm_response_clear(&run->resp);
    const char *body = c->resp;
    size_t len = c->resp_len;
    char *streamed = NULL;
    if (run->stream) {
        /* A streamed answer is judged whole, as the message it puts together. */
        int r = anthropic_stream_message(run->stream, &streamed, &len, why, why_len);
        if (r < 0) {
            if (r == -ENOMEM)
                snprintf(why, why_len, "out of memory putting the streamed answer together");
            /* Failed after message_start (an error event, say): its input may be billed. */
            struct llm_usage u;
            if (anthropic_stream_usage(run->stream, &u) == 0)
                record_usage(run, &u);
            return false;
        }
        body = streamed;
    }
    bool ok = anthropic_parse_response(body, len, &run->resp, why, why_len) == 0;
    /* Rejected, but possibly billed: its tokens count all the same. */
    struct llm_usage u;
    if (!ok && anthropic_parse_usage_detail(body, len, &u) == 0)
        record_usage(run, &u);
    free(streamed);
    return ok;
}

/* A streamed answer's new text: to the client at once. */
static int on_llm_text(void *arg, size_t index, const char *text, size_t len)
{
    (void)index;
    struct run *run = arg;
    run->text_streamed = true;
    run->owner.event(&(struct run_event){.kind = RUN_EVENT_TEXT_DELTA,
                                         .name = "text.delta",
                                         .iteration = run->iterations + 1,
                                         .text = text,
                                         .text_len = len},
                     run->owner.arg);
    return 0;
}

/* The streamed answer's bytes as they arrive; false stops an answer over its bounds (the parser
   is spent after any other failure and ignores the rest: accept_llm_answer says why). */
static bool on_llm_bytes(struct call *c, void *arg, const char *data, size_t len)
{
    (void)c;
    struct run *run = arg;
    int r = anthropic_stream_feed(run->stream, data, len, on_llm_text, run, NULL, NULL, 0);
    return r != -E2BIG && r != -ENOMEM;
}

/* An attempt failed: when the client saw some of its text, it is told to drop it (the retry's
   text follows); the next attempt starts a fresh answer. */
static void on_llm_attempt_failed(struct call *c, void *arg)
{
    struct run *run = arg;
    if (run->text_streamed) {
        /* The reason goes into JSON: up to its first byte that is not UTF-8 (never dropped, or
           the client would keep the text it must discard). */
        const char *why = c->error[0] ? c->error : "attempt failed";
        size_t n = text_utf8_first_invalid(why, strlen(why));
        emit(run, RUN_EVENT_LLM_RETRY, "llm.retry",
             json_pack("{s:i, s:i, s:s%, s:b}", "iteration", run->iterations + 1, "attempt",
                       c->attempts, "reason", why, n, "discard_text", 1));
    }
    run->text_streamed = false;
    anthropic_stream_reset(run->stream);
}

static void on_llm_done(struct call *c, void *arg)
{
    struct run *run = arg;
    run_trace_chat_end(run->trace, c, c->outcome == CALL_OK ? &run->resp : NULL);
    run->llm_attempts += c->attempts;
    settle_budget(run, worker_now_ms(run->w));
    metrics_llm_model_call((int)run->model_index, c->outcome == CALL_OK);
    if (c->outcome != CALL_OK) {
        if (!fall_back(run, c))
            llm_failed(run, c);
        return;
    }
    run->model_answered = run->app->models.names[run->model_index];
    struct llm_response resp = run->resp;
    memset(&run->resp, 0, sizeof(run->resp));
    run->iterations++;
    run->llm_calls++;
    record_usage(run, &(struct llm_usage){.input_tokens = resp.input_tokens,
                                          .cache_creation_tokens = resp.cache_creation_tokens,
                                          .cache_read_tokens = resp.cache_read_tokens,
                                          .output_tokens = resp.output_tokens});
    free(run->last_text);
    run->last_text = strdup(resp.text ? resp.text : "");
    append_assistant(run, resp.content);
    run->last_stop = checkpoint_stop(resp.stop);
    checkpoint(run);
    log_debug("llm response", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
              LF_S("run_id", run->id), LF_S("reason", resp.stop_reason),
              LF_I("iterations", run->iterations),
              LF_S("upstream_request_id", c->upstream_request_id));
    if (!run->last_text)
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory");
    else if (resp.stop == LLM_STOP_TOOL_USE && resp.n_tool_uses > 0)
        start_tools(run, &resp);
    else if (resp.stop == LLM_STOP_PAUSE_TURN && json_array_size(resp.content) > 0)
        llm_step(run);
    else {
        if (resp.stop == LLM_STOP_UNKNOWN)
            log_warn("unknown stop reason", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
                     LF_S("reason", resp.stop_reason));
        finish_ok(run, api_stop_reason(resp.stop));
    }
    llm_response_clear(&resp);
}

/* A streaming owner: the LLM call streams too ("stream": true), its text told as it comes. */
static bool stream_llm_call(struct run *run, struct call *c)
{
    char *body = anthropic_stream_request(c->body);
    if (!run->stream)
        run->stream = anthropic_stream_new(LLM_MAX_RESPONSE_BYTES);
    if (!body || !run->stream) {
        free(body);
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory building the LLM request");
        return false;
    }
    free(c->body);
    c->body = body;
    anthropic_stream_reset(run->stream);
    run->text_streamed = false;
    c->stream = on_llm_bytes;
    c->attempt_failed = on_llm_attempt_failed;
    return true;
}

/* The LLM request for the history so far; false when the run ended instead. */
static bool build_llm_call(struct run *run, struct call *c)
{
    struct app *app = run->app;
    const struct agentd_config *cfg = &app->cfg;
    c->dep = app_model_dep(app, run->model_index);
    errno = 0;
    c->body = anthropic_build_request_from_prefix(
        &app->llm_params, app_model_prefix(app, run->model_index), run->messages);
    if (!c->body && errno == E2BIG) {
        finish(run, RUN_HISTORY_TOO_LARGE, 0,
               "the conversation (history, tool results and this input) would exceed the %zu "
               "bytes one LLM request may carry (AGENTD_LLM_MAX_REQUEST_BYTES); continue in a new "
               "conversation_id or send a "
               "shorter input",
               app->llm_params.max_request_bytes);
        return false;
    }
    if (asprintf(&c->url, "%s/v1/messages", cfg->anthropic_base_url) < 0)
        c->url = NULL;
    c->headers = curl_slist_append(NULL, "anthropic-version: " ANTHROPIC_VERSION);
    if (cfg->api_key) {
        char key_hdr[600];
        snprintf(key_hdr, sizeof(key_hdr), "x-api-key: %s", cfg->api_key);
        c->headers = curl_slist_append(c->headers, key_hdr);
        explicit_bzero(key_hdr, sizeof(key_hdr));
    }
    c->headers = curl_slist_append(c->headers, "content-type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    if (!c->body || !c->url || !c->headers) {
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory building the LLM request");
        return false;
    }
    hold_bytes(run, strlen(c->body), false);
    c->max_response_bytes = LLM_MAX_RESPONSE_BYTES;
    c->attempt_timeout_ms = atomic_load(&run->app->llm_timeout_ms);
    c->deadline_ms = run->deadline_ms;
    c->low_priority = run->req.priority == AGENT_PRIORITY_LOW;
    c->request_id = run->request_id;
    c->done = on_llm_done;
    c->accept = accept_llm_answer;
    /* With another model to move to, a 529 moves on at once instead of waiting here. */
    c->overload_ends = model_chain_next(&app->models, run->model_index) >= 0;
    c->read_ratelimit = true;
    c->ratelimit_output_tokens = cfg->max_tokens;
    c->arg = run;
    if (run->owner.event && !stream_llm_call(run, c))
        return false;
    run_trace_chat_start(run->trace, c, app->models.names[run->model_index]);
    return true;
}

static void budget_spent(struct run *run, int64_t wait_ms)
{
    finish(run, RUN_BUDGET_EXCEEDED, wait_ms, "the hourly LLM budget is spent; retry in %lld ms",
           (long long)wait_ms);
}

/* The call's worst case: its input (about 3 bytes of request per token, on the high side) and
   all of max_tokens. */
static void worst_case(const struct run *run, int64_t *ret_in, int64_t *ret_out)
{
    *ret_in = (int64_t)(strlen(run->llm.body) / 3) + 1;
    *ret_out = run->app->cfg.max_tokens;
}

static void reserve_locally(struct run *run)
{
    struct app *app = run->app;
    int64_t in, out, wait_ms = 0;
    worst_case(run, &in, &out);
    bool ok = spend_reserve(app->spend, worker_now_ms(run->w), in, out, &run->hold, &wait_ms);
    app_log_spend_transitions(app);
    if (ok)
        call_start(run->w, &run->llm);
    else
        budget_spent(run, wait_ms);
}

static void on_budget_answer(struct redis_req *req, int err, const redisReply *reply)
{
    struct run *run = (struct run *)((char *)req - offsetof(struct run, budget_req));
    int64_t value = 0;
    worker_refresh_now(run->w);
    switch (shared_budget_answer(err, reply, &value)) {
    case SHARED_BUDGET_RESERVED:
        run->shared_hold = true;
        run->shared_minute = value;
        app_note_shared_budget(run->app, false, 0);
        call_start(run->w, &run->llm);
        break;
    case SHARED_BUDGET_SPENT:
        app_note_shared_budget(run->app, true, value);
        budget_spent(run, value);
        break;
    case SHARED_BUDGET_UNAVAILABLE:
        reserve_locally(run);
        break;
    }
}

/* Budgets on and shared: the cluster decides (the local guard when it cannot); else the local
   guard. Then the call starts. */
static void reserve_budget(struct run *run)
{
    struct app *app = run->app;
    int64_t limit_nano, limit_tokens, in, out;
    spend_limits(app->spend, &limit_nano, &limit_tokens);
    if (app->redis && (limit_nano > 0 || limit_tokens > 0)) {
        worst_case(run, &in, &out);
        run->shared_nano = spend_cost_nano(app->spend, in, out);
        run->shared_tokens = llm_tokens_add(in, out);
        run->budget_req.done = on_budget_answer;
        if (shared_budget_reserve(app->redis, worker_index(run->w), limit_nano, limit_tokens,
                                  run->shared_nano, run->shared_tokens, &run->budget_req) == 0)
            return;
    }
    reserve_locally(run);
}

static void llm_step(struct run *run)
{
    struct app *app = run->app;
    if (run->iterations >= run->max_iterations) {
        finish_ok(run, "max_iterations");
        return;
    }
    /* The run's own token allowance: end it with what it has. */
    int64_t tokens = llm_tokens_add(run->input_tokens, run->output_tokens);
    if (spend_run_over_limit(tokens, atomic_load(&app->max_run_tokens))) {
        log_warn("run token limit reached", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
                 LF_I("tokens", tokens));
        finish_ok(run, "max_tokens");
        return;
    }
    call_reset(&run->llm);
    if (build_llm_call(run, &run->llm))
        reserve_budget(run);
}

static void record_tool_call(struct run *run, struct tool_exec *t)
{
    bool ok = t->result.kind == TOOL_OK;
    if (t->known)
        metrics_tool_call(t->tool, t->result.kind, (double)t->duration_ms / 1000.0);
    json_array_append_new(run->tool_calls,
                          json_pack("{s:s, s:s, s:b, s:I}", "id", t->id, "name", t->name, "ok", ok,
                                    "duration_ms", (json_int_t)t->duration_ms));
    log_info(
        "tool call", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
        LF_S("run_id", run->id), LF_S("tool", t->name), LF_B("ok", ok),
        LF_I("duration_ms", t->duration_ms),
        LF_S("reason",
             ok ? NULL : (t->result.kind == TOOL_INPUT_ERROR ? "input error" : "system failure")));
}

/* An optional tool's failure becomes a result the model can work around. */
static void degrade(struct run *run, struct tool_exec *t)
{
    log_warn("tool degraded", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("tool", t->name), LF_S("reason", t->result.text));
    metrics_degraded_tool_result(t->tool);
    json_array_append_new(run->degraded,
                          json_pack("{s:s, s:s}", "tool", t->name, "reason", t->result.text));
    char *why = strdup(t->result.text);
    tool_result_setf(&t->result, TOOL_SYSTEM_ERROR,
                     "The %s tool is temporarily unavailable (%s). Answer without it and say so.",
                     t->name, why ? why : "error");
    free(why);
}

/* Every tool has its result: hand them to the model. */
static void tools_done(struct run *run)
{
    struct llm_tool_result *results = calloc(run->n_tools, sizeof(*results));
    if (!results) {
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < run->n_tools; i++) {
        results[i].tool_use_id = run->tools[i].id;
        results[i].text = run->tools[i].result.text ? run->tools[i].result.text : "";
        results[i].is_error = run->tools[i].result.kind != TOOL_OK;
    }
    int r = anthropic_append_tool_results(run->messages, results, run->n_tools);
    free(results);
    free_tools(run);
    if (r < 0) {
        finish(run, RUN_INTERNAL_ERROR, 0, "could not record tool results");
        return;
    }
    llm_step(run);
}

static void on_tool_done(struct tool_exec *t, void *arg)
{
    struct run *run = arg;
    if (run->finished)
        return;
    record_tool_call(run, t);
    bool failed = t->result.kind == TOOL_SYSTEM_ERROR;
    bool critical = !t->known || atomic_load(&run->app->criticality[t->tool]) == TOOL_CRITICAL;
    run_trace_tool_end(run->trace, t, failed && !critical);
    if (run->owner.event) {
        json_t *ev =
            json_pack("{s:s, s:s, s:b, s:I}", "id", t->id, "name", t->name, "ok",
                      t->result.kind == TOOL_OK, "duration_ms", (json_int_t)t->duration_ms);
        if (ev && failed && !critical)
            json_object_set_new(ev, "degraded", json_true());
        emit(run, RUN_EVENT_TOOL_FINISHED, "tool.finished", ev);
    }
    if (failed) {
        if (critical) {
            finish(run, RUN_TOOL_UNAVAILABLE, 1000, "critical tool %s failed: %s", t->name,
                   t->result.text);
            return;
        }
        degrade(run, t);
    }
    checkpoint(run);
    if (++run->n_tools_done == run->n_tools)
        tools_done(run);
}

/* The client closed its connection: nobody will read the answer, so stop spending on it. */
static void on_client_gone(struct worker *w, void *arg)
{
    (void)w;
    struct run *run = arg;
    if (run->finished)
        return;
    if (run->idem_key) {
        /* Its retry will come with the same key: finish, so that it gets the stored answer. */
        log_info("client went away: run goes on for its Idempotency-Key",
                 LF_S("request_id", run->request_id), LF_RUN_TRACE(run), LF_S("run_id", run->id),
                 LF_I("iterations", run->iterations));
        if (run->client_watched)
            worker_unwatch_client(run->w, &run->client);
        run->client_watched = false;
        return;
    }
    log_info("client went away: run cancelled", LF_S("request_id", run->request_id),
             LF_RUN_TRACE(run), LF_S("run_id", run->id), LF_I("iterations", run->iterations));
    finish(run, RUN_CLIENT_CLOSED, 0, "the client closed the connection");
}

static void client_gone_task(struct worker *w, void *arg)
{
    on_client_gone(w, arg);
}

void run_client_gone(struct run *run)
{
    /* Nothing to do when the worker is stopping: shutdown ends the run. */
    worker_post(run->home, client_gone_task, run);
}

void run_set_client_fd(struct run *run, int fd)
{
    run->client.fd = fd;
}

/* ---- durable runs: checkpoints and takeover ------------------------------------------------ */

static void checkpoint_problem(struct run *run, const char *why, enum metrics_durable event)
{
    metrics_durable(event);
    if (run->checkpoint_warned)
        return;
    run->checkpoint_warned = true;
    log_warn("run not durable", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("run_id", run->id), LF_S("reason", why));
}

/* After every completed step of a durable run: its state, so another replica can take it over
   from here. Never fails the run. */
static void checkpoint(struct run *run)
{
    struct app *app = run->app;
    if (!run->shared_idem || run->checkpoint_off || run->finished)
        return;
    json_t *results = json_array();
    for (size_t i = 0; results && i < run->n_tools; i++) {
        struct tool_exec *t = &run->tools[i];
        if (t->done)
            json_array_append_new(results, json_pack("{s:s, s:s, s:b}", "id", t->id, "text",
                                                     t->result.text ? t->result.text : "",
                                                     "is_error", t->result.kind != TOOL_OK));
    }
    struct run_checkpoint cp = {
        .messages = run->messages,
        .iterations = run->iterations,
        .llm_calls = run->llm_calls,
        .llm_attempts = run->llm_attempts,
        .input_tokens = run->input_tokens,
        .output_tokens = run->output_tokens,
        .tool_calls = run->tool_calls,
        .degraded = run->degraded,
        .last_text = run->last_text,
        .stop_reason = (char *)run->last_stop,
        .results = results,
    };
    size_t len = 0;
    char *text = checkpoint_encode(&cp, app->cfg.run_checkpoint_max_bytes, &len);
    json_decref(results);
    if (!text) {
        if (errno == E2BIG) {
            run->checkpoint_off = true;
            checkpoint_problem(run, "its state outgrew AGENTD_RUN_CHECKPOINT_MAX_BYTES",
                               METRICS_DURABLE_TOO_LARGE);
        }
        return;
    }
    if (shared_idem_checkpoint(app->redis, worker_index(run->w), run->idem_redis_key,
                               run->claim_owner, app->cfg.run_lease_ms, text, len) == 0)
        metrics_durable(METRICS_DURABLE_CHECKPOINT);
    else
        checkpoint_problem(run, "Redis is unavailable: checkpoints are not written",
                           METRICS_DURABLE_UNAVAILABLE);
    free(text);
}

/* The run continues from another replica's checkpoint ("" = none: from the beginning). False
   when that ended it. */
static bool take_over(struct run *run, const char *text)
{
    struct run_checkpoint cp;
    char err[128];
    if (!text) {
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory reading the checkpoint");
        return false;
    }
    log_info("run taken over", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("run_id", run->id), LF_B("checkpoint", text[0] != '\0'));
    if (!text[0])
        return true; /* nothing completed before: start as a new run */
    if (checkpoint_decode(text, strlen(text), &cp, err, sizeof(err)) < 0) {
        log_warn("checkpoint unreadable: starting the run again",
                 LF_S("request_id", run->request_id), LF_RUN_TRACE(run), LF_S("reason", err));
        return true;
    }
    json_decref(run->messages);
    run->messages = cp.messages;
    json_decref(run->tool_calls);
    run->tool_calls = cp.tool_calls;
    json_decref(run->degraded);
    run->degraded = cp.degraded;
    free(run->last_text);
    run->last_text = cp.last_text;
    run->iterations = cp.iterations;
    run->llm_calls = cp.llm_calls;
    run->llm_attempts = cp.llm_attempts;
    run->input_tokens = cp.input_tokens;
    run->output_tokens = cp.output_tokens;
    run->resume_results = cp.results;
    run->resume_stop = cp.stop_reason;
    run->resumed = true;
    metrics_durable(METRICS_DURABLE_RESUMED);
    hold_bytes(run, json_dumpb(run->messages, NULL, 0, JSON_COMPACT), false);
    return true;
}

/* Counts the tool_use blocks of content. */
static size_t tool_use_count(json_t *content)
{
    size_t i, k = 0;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        const char *type = json_string_value(json_object_get(block, "type"));
        k += type && strcmp(type, "tool_use") == 0;
    }
    return k;
}

/* Fills t's result from the checkpoint's results when its call completed before the takeover. */
static bool prefill(struct tool_exec *t, json_t *results)
{
    size_t j;
    json_t *r;
    json_array_foreach(results, j, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "id")), t->id) != 0)
            continue;
        tool_result_setf(&t->result,
                         json_is_true(json_object_get(r, "is_error")) ? TOOL_SYSTEM_ERROR : TOOL_OK,
                         "%s", json_string_value(json_object_get(r, "text")));
        t->done = true;
        return true;
    }
    return false;
}

/* A taken-over run's next step: the tool calls of the last answer that did not complete, or the
   next LLM call. A completed call is never made again. */
static void resume_step(struct run *run)
{
    size_t n = json_array_size(run->messages), i;
    json_t *last = n ? json_array_get(run->messages, n - 1) : NULL;
    json_t *content = json_object_get(last, "content"), *block;
    const char *role = json_string_value(json_object_get(last, "role"));
    json_t *results = run->resume_results;
    run->resume_results = NULL;
    size_t k = role && strcmp(role, "assistant") == 0 ? tool_use_count(content) : 0;
    char *stop = run->resume_stop;
    run->resume_stop = NULL;
    if (k == 0) {
        json_decref(results);
        /* The model's last answer came before the takeover: it is the run's answer, unless it
           asked to be continued (pause_turn) or no answer came yet. */
        if (role && strcmp(role, "assistant") == 0 && stop && strcmp(stop, "pause_turn") != 0)
            finish_ok(run, stop_static(stop));
        else
            llm_step(run);
        free(stop);
        return;
    }
    free(stop);
    run->tools = calloc(k, sizeof(*run->tools));
    run->n_tools = run->n_tools_done = 0;
    json_array_foreach(content, i, block)
    {
        const char *type = json_string_value(json_object_get(block, "type"));
        if (!run->tools || !type || strcmp(type, "tool_use") != 0)
            continue;
        struct tool_exec *t = &run->tools[run->n_tools++];
        if (tool_exec_init(t, json_string_value(json_object_get(block, "id")),
                           json_string_value(json_object_get(block, "name")),
                           json_object_get(block, "input")) < 0) {
            json_decref(results);
            finish(run, RUN_INTERNAL_ERROR, 0, "out of memory");
            return;
        }
        run->n_tools_done += prefill(t, results);
    }
    json_decref(results);
    if (!run->tools) {
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory");
        return;
    }
    log_info("run resumed", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("run_id", run->id), LF_I("tools_done", run->n_tools_done),
             LF_I("tools", run->n_tools));
    if (run->n_tools_done == run->n_tools) {
        tools_done(run);
        return;
    }
    for (size_t m = 0; m < run->n_tools && !run->finished; m++)
        if (!run->tools[m].done)
            start_tool(run, &run->tools[m]);
}

/* ---- claims: the Idempotency-Key and the conversation, in Redis when it answers ---------- */

static void claims_next(struct run *run);

static void replay(struct run *run, int status, char *body)
{
    if (!body) {
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory reading the stored answer");
        return;
    }
    run->replay_status = status;
    run->replay_body = body;
    finish(run, RUN_IDEM_REPLAYED, 0, "replayed");
}

static void idem_in_progress(struct run *run, int64_t retry_after_ms)
{
    finish(run, RUN_IDEM_IN_PROGRESS, retry_after_ms,
           "a request with this Idempotency-Key is still running");
}

static void idem_mismatch(struct run *run)
{
    finish(run, RUN_IDEM_MISMATCH, 0,
           "this Idempotency-Key was used with a different request body");
}

/* The key is this run's in Redis (claimed, or taken over). */
static void hold_shared_idem(struct run *run)
{
    run->shared_idem = true;
    durable_list(run, true);
    free(run->claim_idem);
    run->claim_idem = NULL;
}

/* The local store decides (Redis did not answer). False when that ended the run. */
static bool claim_idem_locally(struct run *run)
{
    int status = 0;
    char *body = NULL;
    switch (idem_begin(run->app->idem, run->claim_idem, run->idem_fp, worker_now_ms(run->w),
                       &status, &body)) {
    case IDEM_NEW:
        run->idem_key = run->claim_idem;
        run->claim_idem = NULL;
        return true;
    case IDEM_IN_PROGRESS:
        idem_in_progress(run, 1000);
        return false;
    case IDEM_MISMATCH:
        idem_mismatch(run);
        return false;
    case IDEM_REPLAY:
        replay(run, status, body);
        return false;
    default:
        finish(run, RUN_OVERLOADED, 1000, "too many idempotent requests in progress; retry later");
        return false;
    }
}

static void on_idem_claimed(struct redis_req *req, int err, const redisReply *reply)
{
    struct run *run = (struct run *)((char *)req - offsetof(struct run, claim_req));
    int64_t retry_after = 0;
    int status = 0;
    char *body = NULL;
    worker_refresh_now(run->w);
    switch (shared_idem_answer(err, reply, &retry_after, &status, &body)) {
    case SHARED_IDEM_CLAIMED:
        hold_shared_idem(run);
        claims_next(run);
        break;
    case SHARED_IDEM_RUNNING:
        idem_in_progress(run, retry_after);
        break;
    case SHARED_IDEM_MISMATCH:
        idem_mismatch(run);
        break;
    case SHARED_IDEM_REPLAY:
        replay(run, status, body);
        break;
    case SHARED_IDEM_TAKEOVER:
        hold_shared_idem(run);
        if (take_over(run, body))
            claims_next(run);
        free(body);
        break;
    case SHARED_IDEM_UNAVAILABLE:
        if (claim_idem_locally(run))
            claims_next(run);
        break;
    }
}

/* The stored history goes before this turn's input. False (the run ended) on ENOMEM. */
static bool prepend_history(struct run *run, json_t *history)
{
    if (json_array_extend(history, run->messages) < 0) {
        json_decref(history);
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory loading the conversation");
        return false;
    }
    json_decref(run->messages);
    run->messages = history;
    hold_bytes(run, json_dumpb(run->messages, NULL, 0, JSON_COMPACT), false);
    return true;
}

static void conversation_busy(struct run *run, int64_t retry_after_ms)
{
    finish(run, RUN_CONVERSATION_BUSY, retry_after_ms,
           "conversation '%s' has a run in progress; retry when it ends", run->req.conversation_id);
}

static bool acquire_conv_locally(struct run *run)
{
    json_t *history = NULL;
    int r = conv_store_acquire(run->app->convs, run->conv_key, worker_now_ms(run->w), &history);
    if (r == 0) {
        run->holds_conversation = true;
        return prepend_history(run, history);
    }
    if (r == -EBUSY)
        conversation_busy(run, 1000);
    else if (r == -ENOSPC)
        finish(run, RUN_OVERLOADED, 1000, "conversation store is full of running conversations");
    else
        finish(run, RUN_INTERNAL_ERROR, 0, "out of memory acquiring the conversation");
    return false;
}

static void on_conv_acquired(struct redis_req *req, int err, const redisReply *reply)
{
    struct run *run = (struct run *)((char *)req - offsetof(struct run, claim_req));
    int64_t value = 0;
    json_t *history = NULL;
    worker_refresh_now(run->w);
    switch (shared_conv_answer(err, reply, &value, &history)) {
    case SHARED_CONV_ACQUIRED:
        run->shared_conv = true;
        run->conv_version = value;
        if (run->resumed) {
            /* The checkpoint's history already starts with the stored one. */
            json_decref(history);
            claims_next(run);
        } else if (prepend_history(run, history)) {
            claims_next(run);
        }
        break;
    case SHARED_CONV_BUSY:
        conversation_busy(run, value);
        break;
    case SHARED_CONV_UNAVAILABLE:
        if (acquire_conv_locally(run))
            claims_next(run);
        break;
    }
}

/* While it runs, the run keeps its claims in Redis alive. */
static void on_lease_timer(struct timer *t, void *arg)
{
    (void)t;
    struct run *run = arg;
    int wi = worker_index(run->w);
    int64_t lease = run->app->cfg.run_lease_ms;
    if (run->shared_idem)
        shared_idem_renew(run->app->redis, wi, run->idem_redis_key, run->claim_owner, lease);
    if (run->shared_conv)
        shared_conv_renew(run->app->redis, wi, &run->conv_keys, run->claim_owner, lease);
    timerheap_arm(worker_timers(run->w), &run->lease_timer, worker_now_ms(run->w) + lease / 3);
}

/* Claims what the run still has to claim (each in Redis, or the local store when Redis does not
   answer), then starts the agent loop. */
static void claims_next(struct run *run)
{
    struct app *app = run->app;
    int wi = worker_index(run->w);
    if (run->claim_idem) {
        run->claim_req.done = on_idem_claimed;
        if (shared_idem_claim(app->redis, wi, run->idem_redis_key, run->idem_fp, run->claim_owner,
                              app->cfg.run_lease_ms, app->cfg.idempotency_ttl_ms,
                              &run->claim_req) == 0)
            return;
        if (!claim_idem_locally(run))
            return;
    }
    if (run->claim_conv) {
        run->claim_conv = false;
        run->claim_req.done = on_conv_acquired;
        if (shared_conv_acquire(app->redis, wi, &run->conv_keys, run->claim_owner,
                                app->cfg.run_lease_ms, &run->claim_req) == 0)
            return;
        if (!acquire_conv_locally(run))
            return;
    }
    if (run->shared_idem || run->shared_conv)
        timerheap_arm(worker_timers(run->w), &run->lease_timer,
                      worker_now_ms(run->w) + app->cfg.run_lease_ms / 3);
    if (run->resumed)
        resume_step(run);
    else
        llm_step(run);
}

static void run_begin(struct worker *w, void *arg)
{
    struct run *run = arg;
    run->w = w;
    if (run->client.fd >= 0)
        run->client_watched = worker_watch_client(w, &run->client) == 0;
    timerheap_arm(worker_timers(w), &run->deadline_timer, run->deadline_ms);
    if (run->owner.event) {
        emit(run, RUN_EVENT_STARTED, "run.started",
             json_pack("{s:s, s:s, s:s*}", "id", run->id, "request_id", run->request_id,
                       "conversation_id", run->req.conversation_id));
        timerheap_arm(worker_timers(w), &run->ping_timer,
                      worker_now_ms(w) + run->app->cfg.stream_ping_ms);
    }
    run_trace_begin(run->trace, run->request_id, run->id, run->req.conversation_id,
                    run->app->cfg.model);
    log_info("run start", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
             LF_S("run_id", run->id), LF_I("max_iterations", run->max_iterations),
             LF_I("timeout_ms", run->deadline_ms - run->started_ms),
             LF_S("conversation_id", run->req.conversation_id));
    if (log_enabled(LOG_DEBUG)) {
        /* Input only at debug level, and cut on a character boundary: it may hold anything. */
        const char *in = run->req.input;
        size_t len = strlen(in), n = text_utf8_prefix_len(in, len, 200);
        char head[201];
        memcpy(head, in, n);
        head[n] = '\0';
        log_debug("run input", LF_S("request_id", run->request_id), LF_RUN_TRACE(run),
                  LF_I("bytes", len), LF_S("input", head));
    }
    claims_next(run);
}

const char *run_trace_hex(const struct run *run)
{
    return run_trace_id(run->trace);
}

int run_submit(struct run *run, struct worker *w)
{
    run->home = w;
    int r = worker_post(w, run_begin, run);
    if (r < 0)
        end_off_worker(run, r == -ESHUTDOWN ? RUN_SHUTTING_DOWN : RUN_INTERNAL_ERROR,
                       r == -ESHUTDOWN ? "agentd is shutting down; retry on another replica"
                                       : "could not schedule the run");
    return r;
}

/* ---- admission ---------------------------------------------------------------------------- */

static struct run *run_new(struct app *app, const struct run_spec *spec)
{
    struct run *run = calloc(1, sizeof(*run));
    if (!run)
        return NULL;
    run->app = app;
    run->owner = *spec->owner;
    run->client.fd = -1;
    run->client.gone = on_client_gone;
    run->client.arg = run;
    snprintf(run->request_id, sizeof(run->request_id), "%s", spec->request_id);
    run->trace = run_trace_new(app->tracer, spec->traceparent, spec->tracestate);
    uint64_t seq = atomic_fetch_add(&app->run_seq, 1);
    snprintf(run->id, sizeof(run->id), "run_%012" PRIx64 "%06" PRIx64,
             (uint64_t)(clock_wall_ms() & 0xffffffffffffLL), (uint64_t)(seq & 0xffffffu));
    const struct agent_request *req = spec->req;
    run->max_iterations = req->max_iterations ? req->max_iterations : app->cfg.max_iterations;
    run->started_ms = clock_now_ms();
    run->deadline_ms =
        run->started_ms + (req->timeout_ms ? req->timeout_ms : app->cfg.total_timeout_ms);
    run->tool_calls = json_array();
    run->degraded = json_array();
    run->fallbacks = json_array();
    call_init(&run->llm);
    timer_init(&run->deadline_timer, on_deadline, run);
    timer_init(&run->finish_timer, on_finish_timer, run);
    timer_init(&run->lease_timer, on_lease_timer, run);
    timer_init(&run->ping_timer, on_ping_timer, run);
    if (app->redis)
        snprintf(run->claim_owner, sizeof(run->claim_owner), "%s/%s",
                 redis_pool_replica_id(app->redis), run->id);
    if (!run->tool_calls || !run->degraded || !run->fallbacks) {
        run_free(run);
        return NULL;
    }
    return run;
}

/* A key in the caller's namespace: "<caller>/<key>", or the key itself without a caller. */
static char *caller_scoped(const char *caller, const char *key)
{
    char *s = NULL;
    if (!caller || !*caller)
        return strdup(key);
    return asprintf(&s, "%s/%s", caller, key) < 0 ? NULL : s;
}

static enum run_admission take_idempotency(struct app *app, const struct run_spec *spec,
                                           struct run *run, struct run_answer *ret_replay)
{
    if (!spec->idem_key || !app->idem)
        return RUN_ADMITTED;
    int status = 0;
    char *body = NULL;
    char *key = caller_scoped(spec->caller, spec->idem_key);
    if (!key)
        return RUN_REFUSED_NOMEM;
    if (app->redis) {
        /* Claimed on the worker, in Redis: every replica sees the same key. */
        run->claim_idem = key;
        memcpy(run->idem_fp, spec->idem_fingerprint, IDEM_FINGERPRINT_BYTES);
        shared_idem_key(app->redis, key, run->idem_redis_key);
        return RUN_ADMITTED;
    }
    enum idem_begin_result r =
        idem_begin(app->idem, key, spec->idem_fingerprint, clock_now_ms(), &status, &body);
    if (r == IDEM_NEW) {
        run->idem_key = key;
        return RUN_ADMITTED;
    }
    free(key);
    switch (r) {
    case IDEM_IN_PROGRESS:
        return RUN_REFUSED_IDEM_IN_PROGRESS;
    case IDEM_MISMATCH:
        return RUN_REFUSED_IDEM_MISMATCH;
    case IDEM_FULL:
        return RUN_REFUSED_IDEM_FULL;
    case IDEM_REPLAY:
        *ret_replay = (struct run_answer){.status = status, .body = body};
        return RUN_REPLAYED;
    default:
        return RUN_REFUSED_NOMEM;
    }
}

static enum run_admission take_conversation(struct app *app, struct run *run,
                                            const struct run_spec *spec)
{
    if (!spec->req->conversation_id)
        return RUN_ADMITTED;
    run->conv_key = caller_scoped(spec->caller, spec->req->conversation_id);
    if (!run->conv_key)
        return RUN_REFUSED_NOMEM;
    if (app->redis && app->convs) {
        /* Acquired on the worker, in Redis: one turn at a time on every replica. */
        run->claim_conv = true;
        shared_conv_keys(app->redis, run->conv_key, &run->conv_keys);
        return RUN_ADMITTED;
    }
    json_t *history = NULL;
    int r = app->convs ? conv_store_acquire(app->convs, run->conv_key, clock_now_ms(), &history)
                       : -ENOTSUP;
    if (r == 0) {
        run->holds_conversation = true;
        json_decref(run->messages);
        run->messages = history;
        return RUN_ADMITTED;
    }
    return r == -EBUSY     ? RUN_REFUSED_CONVERSATION_BUSY
           : r == -ENOTSUP ? RUN_REFUSED_CONVERSATIONS_OFF
                           : RUN_REFUSED_CONVERSATIONS_FULL;
}

/* Gives back what an admission that failed half-way had taken. */
static void unadmit(struct run *run)
{
    struct app *app = run->app;
    if (run->holds_conversation)
        conv_store_release(app->convs, run->conv_key, NULL, clock_now_ms());
    if (run->idem_key)
        idem_abandon(app->idem, run->idem_key);
    if (run->holds_inflight)
        atomic_fetch_sub(&app->inflight, 1);
    atomic_fetch_sub(&app->run_bytes, run->held_bytes);
    run->held_bytes = 0;
    free(run->idem_key);
    run->idem_key = NULL;
    free(run->claim_idem);
    run->claim_idem = NULL;
    run->holds_conversation = run->holds_inflight = false;
    run->finished = true;
}

enum run_admission run_admit(struct app *app, struct run_spec *spec, struct run **ret_run,
                             struct run_answer *ret_replay)
{
    struct run *run = run_new(app, spec);
    if (!run)
        return RUN_REFUSED_NOMEM;
    enum run_admission a = take_idempotency(app, spec, run, ret_replay);
    if (a == RUN_ADMITTED) {
        run->holds_inflight = true;
        if (atomic_fetch_add(&app->inflight, 1) >= app->cfg.max_inflight)
            a = RUN_REFUSED_OVERLOADED;
    }
    if (a == RUN_ADMITTED)
        a = take_conversation(app, run, spec);
    if (a == RUN_ADMITTED) {
        if (!run->messages)
            run->messages = json_array();
        if (!run->messages || anthropic_append_user_text(run->messages, spec->req->input) < 0)
            a = RUN_REFUSED_NOMEM;
    }
    if (a == RUN_ADMITTED &&
        !hold_bytes(run, json_dumpb(run->messages, NULL, 0, JSON_COMPACT), true))
        a = RUN_REFUSED_MEMORY;
    if (a != RUN_ADMITTED) {
        unadmit(run);
        run_free(run);
        return a;
    }
    run->req = *spec->req;
    memset(spec->req, 0, sizeof(*spec->req));
    metrics_run_started();
    *ret_run = run;
    return RUN_ADMITTED;
}

/* On each worker: its durable runs end now, their claims released for another replica. */
static void hand_over_task(struct worker *w, void *arg)
{
    struct app *app = arg;
    struct run *run = app->durable_runs[worker_index(w)];
    while (run) {
        struct run *next = run->durable_next;
        if (!run->finished) {
            run->handed_over = true;
            finish(run, RUN_SHUTTING_DOWN, RUN_RETRY_AFTER_NOW,
                   "agentd is shutting down; retry now: the run resumes on another replica");
        }
        run = next;
    }
}

void run_hand_over(struct app *app)
{
    if (!app->redis)
        return;
    for (int i = 0; i < app->n_workers; i++)
        worker_post(app->workers[i], hand_over_task, app);
}
