/*
 * run.c — the agent loop as a state machine on one worker (see run.h).
 *
 *   begin → LLM call ─end_turn/max_tokens/refusal/…→ done (200)
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

#include "agentd/app.h"
#include "agentd/clock.h"
#include "agentd/conversations.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/spend.h"
#include "agentd/tool_input.h"
#include "agentd/tools_exec.h"
#include "agentd/worker.h"

#define LLM_MAX_RESPONSE_BYTES (16u * 1024 * 1024)

static void llm_step(struct run *run);

static void free_tools(struct run *run);

static void run_free(struct run *run)
{
    free_tools(run);
    agent_request_clear(&run->req);
    json_decref(run->messages);
    json_decref(run->tool_calls);
    json_decref(run->degraded);
    free(run->last_text);
    free(run->body);
    call_reset(&run->llm);
    free(run);
}

void run_release(struct run *run)
{
    if (run && atomic_fetch_sub(&run->refs, 1) == 1)
        run_free(run);
}

static void free_tools(struct run *run)
{
    for (size_t i = 0; i < run->n_tools; i++) {
        struct run_tool *t = &run->tools[i];
        call_reset(&t->call);
        if (run->w)
            timerheap_cancel(worker_timers(run->w), &t->timer);
        free(t->id);
        free(t->name);
        free(t->place);
        json_decref(t->input);
        tool_result_clear(&t->result);
    }
    free(run->tools);
    run->tools = NULL;
    run->n_tools = run->n_tools_done = 0;
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

/* Stops timers and transfers and releases the conversation (history kept only on success). */
static void stop_everything(struct run *run, int status, int64_t now)
{
    run->finished = true;
    if (run->client_watched) {
        worker_unwatch_client(run->w, run->client_fd);
        run->client_watched = false;
    }
    timerheap_cancel(worker_timers(run->w), &run->deadline_timer);
    timerheap_cancel(worker_timers(run->w), &run->finish_timer);
    call_cancel(&run->llm);
    for (size_t i = 0; i < run->n_tools; i++) {
        call_cancel(&run->tools[i].call);
        timerheap_cancel(worker_timers(run->w), &run->tools[i].timer);
    }
    if (run->req.conversation_id && run->app->convs) {
        if (status == 200)
            history_close(run->messages, run->last_text);
        conv_store_release(run->app->convs, run->req.conversation_id,
                           status == 200 ? run->messages : NULL, now);
    }
}

/* Common end of every run: stop everything, publish the result, hand back. */
static void finish(struct run *run, int status, char *body, int64_t retry_after_ms,
                   const char *outcome)
{
    if (run->finished) {
        free(body);
        return;
    }
    int64_t now = worker_refresh_now(run->w);
    stop_everything(run, status, now);
    run->http_status = status;
    run->body = body;
    run->retry_after_ms = retry_after_ms;
    run->outcome = outcome;
    metrics_run_finished(metrics_run_outcome_from_type(outcome));
    log_info("run end", LF_S("request_id", run->request_id), LF_S("run_id", run->id),
             LF_I("status", status), LF_S("reason", outcome), LF_I("iterations", run->iterations),
             LF_I("llm_attempts", run->llm_attempts), LF_I("duration_ms", now - run->started_ms));
    /* The owner may free the run as soon as it has the result, and code up the
       stack may still look at it: deliver from the loop instead. */
    timerheap_arm(worker_timers(run->w), &run->finish_timer, now);
}

void run_abort(struct run *run, int status, char *body, int64_t retry_after_ms)
{
    if (run->w && !run->finished)
        stop_everything(run, status, clock_now_ms());
    run->finished = true;
    free(run->body);
    run->http_status = status;
    run->body = body;
    run->retry_after_ms = retry_after_ms;
    run->outcome = "aborted";
}

static void on_finish_timer(struct timer *t, void *arg)
{
    (void)t;
    struct run *run = arg;
    run->finish(run, run->finish_arg);
}

static void finish_error(struct run *run, int status, const char *type, long upstream_status,
                         int64_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void finish_error(struct run *run, int status, const char *type, long upstream_status,
                         int64_t retry_after_ms, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *body = request_error_body(type, msg, run->request_id, upstream_status);
    finish(run, status, body, retry_after_ms, type);
}

static void finish_ok(struct run *run, const char *stop_reason)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(run->id));
    json_object_set_new(o, "request_id", json_string(run->request_id));
    if (run->req.conversation_id)
        json_object_set_new(o, "conversation_id", json_string(run->req.conversation_id));
    json_object_set_new(o, "output", json_string(run->last_text ? run->last_text : ""));
    json_object_set_new(o, "stop_reason", json_string(stop_reason));
    json_object_set_new(o, "iterations", json_integer(run->iterations));
    json_object_set(o, "degraded", run->degraded);
    json_object_set(o, "tool_calls", run->tool_calls);
    json_object_set_new(o, "usage",
                        json_pack("{s:I, s:I, s:i, s:i}", "input_tokens",
                                  (json_int_t)run->input_tokens, "output_tokens",
                                  (json_int_t)run->output_tokens, "llm_calls", run->llm_calls,
                                  "llm_attempts", run->llm_attempts));
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    finish(run, 200, body, 0, "ok");
}

static void on_deadline(struct timer *t, void *arg)
{
    (void)t;
    struct run *run = arg;
    finish_error(run, 504, "deadline_exceeded", 0, 0,
                 "the run did not finish within its %" PRId64 " ms deadline (%d LLM round trips "
                 "done)",
                 run->deadline_ms - run->started_ms, run->iterations);
}

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

static void start_tools(struct run *run, struct llm_response *resp)
{
    run->tools = calloc(resp->n_tool_uses, sizeof(*run->tools));
    if (!run->tools) {
        finish_error(run, 500, "internal_error", 0, 0, "out of memory");
        return;
    }
    run->n_tools = resp->n_tool_uses;
    run->n_tools_done = 0;
    int64_t now = worker_now_ms(run->w);
    for (size_t i = 0; i < run->n_tools; i++) {
        struct run_tool *t = &run->tools[i];
        t->run = run;
        t->index = i;
        t->id = strdup(resp->tool_uses[i].id);
        t->name = strdup(resp->tool_uses[i].name);
        t->input = json_incref(resp->tool_uses[i].input);
        t->known = tool_lookup(t->name, &t->tool) == 0;
        t->started_ms = now;
        call_init(&t->call);
        timer_init(&t->timer, NULL, t);
    }
    /* Synchronous tools may finish (and even end the run) inside the loop. */
    for (size_t i = 0; i < run->n_tools && !run->finished; i++)
        tools_exec_start(&run->tools[i]);
}

static void on_llm_done(struct call *c, void *arg)
{
    struct run *run = arg;

    if (c->outcome == CALL_OK) {
        struct llm_response resp;
        char err[256];
        if (anthropic_parse_response(c->resp, c->resp_len, &resp, err, sizeof(err)) != 0) {
            log_warn("malformed LLM response", LF_S("request_id", run->request_id),
                     LF_S("reason", err), LF_S("upstream_request_id", c->upstream_request_id));
            /* done() comes back with a new attempt's result or CALL_EXHAUSTED. */
            call_retry_malformed(c, err);
            return;
        }
        run->llm_attempts += c->attempts;
        run->iterations++;
        run->llm_calls++;
        run->input_tokens = llm_tokens_add(run->input_tokens, resp.input_tokens);
        run->output_tokens = llm_tokens_add(run->output_tokens, resp.output_tokens);
        spend_record(run->app->spend, worker_now_ms(run->w), resp.input_tokens, resp.output_tokens);
        app_log_spend_transitions(run->app);
        metrics_llm_tokens(resp.input_tokens, resp.output_tokens);
        metrics_llm_cost_usd(
            spend_cost_usd(run->app->spend, resp.input_tokens, resp.output_tokens));
        free(run->last_text);
        run->last_text = strdup(resp.text);
        append_assistant(run, resp.content);
        log_debug("llm response", LF_S("request_id", run->request_id), LF_S("run_id", run->id),
                  LF_S("reason", resp.stop_reason), LF_I("iterations", run->iterations),
                  LF_S("upstream_request_id", c->upstream_request_id));
        if (resp.stop == LLM_STOP_TOOL_USE && resp.n_tool_uses > 0) {
            start_tools(run, &resp);
        } else if (resp.stop == LLM_STOP_PAUSE_TURN && json_array_size(resp.content) > 0) {
            llm_step(run);
        } else {
            if (resp.stop == LLM_STOP_UNKNOWN)
                log_warn("unknown stop reason", LF_S("request_id", run->request_id),
                         LF_S("reason", resp.stop_reason));
            finish_ok(run, api_stop_reason(resp.stop));
        }
        llm_response_clear(&resp);
        return;
    }

    run->llm_attempts += c->attempts;
    switch (c->outcome) {
    case CALL_PERMANENT: {
        struct llm_error e;
        anthropic_parse_error(c->resp, c->resp_len, &e);
        log_error("LLM API refused the request", LF_S("request_id", run->request_id),
                  LF_I("status", c->status), LF_S("reason", e.type),
                  LF_S("upstream_request_id", c->upstream_request_id));
        finish_error(run, 502, "upstream_error", c->status, 0,
                     "the LLM API refused the request with HTTP %ld%s%s%s%s", c->status,
                     e.type[0] ? " " : "", e.type, e.message[0] ? ": " : "", e.message);
        break;
    }
    case CALL_EXHAUSTED:
        finish_error(run, 503, "upstream_unavailable", 0, c->retry_after_ms,
                     "the LLM API is unavailable after %d attempt(s): %s",
                     c->attempts ? c->attempts : 1, c->error);
        break;
    case CALL_BREAKER_OPEN:
        finish_error(run, 503, "upstream_unavailable", 0, c->retry_after_ms,
                     "the LLM API circuit is open after repeated failures; retry in %" PRId64 " ms",
                     c->retry_after_ms);
        break;
    case CALL_RATE_LIMITED:
        finish_error(run, 429, "rate_limited", 0, c->retry_after_ms,
                     "client-side LLM rate limit: %s", c->error);
        break;
    case CALL_DEADLINE:
    default:
        on_deadline(NULL, run);
        break;
    }
}

static void llm_step(struct run *run)
{
    const struct agentd_config *cfg = &run->app->cfg;
    if (run->iterations >= run->max_iterations) {
        finish_ok(run, "max_iterations");
        return;
    }
    /* The run's own token allowance: end it with what it has. */
    int64_t tokens = llm_tokens_add(run->input_tokens, run->output_tokens);
    if (spend_run_over_limit(tokens, cfg->max_run_tokens)) {
        log_warn("run token limit reached", LF_S("request_id", run->request_id),
                 LF_I("tokens", tokens));
        finish_ok(run, "max_tokens");
        return;
    }
    int64_t budget_wait_ms = 0;
    if (!spend_allow(run->app->spend, worker_now_ms(run->w), &budget_wait_ms)) {
        app_log_spend_transitions(run->app);
        finish_error(run, 429, "budget_exceeded", 0, budget_wait_ms,
                     "the hourly LLM budget is spent; retry in %lld ms", (long long)budget_wait_ms);
        return;
    }
    struct llm_params p = {
        .model = cfg->model,
        .max_tokens = cfg->max_tokens,
        .temperature = cfg->temperature,
        .system = cfg->system_prompt,
        .tools = run->app->tools_json,
    };
    call_reset(&run->llm);
    struct call *c = &run->llm;
    c->dep = DEP_ANTHROPIC;
    c->body = anthropic_build_request_from_prefix(&p, run->app->llm_prefix, run->messages);
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
        finish_error(run, 500, "internal_error", 0, 0, "out of memory building the LLM request");
        return;
    }
    c->max_response_bytes = LLM_MAX_RESPONSE_BYTES;
    c->attempt_timeout_ms = cfg->llm_timeout_ms;
    c->deadline_ms = run->deadline_ms;
    c->low_priority = run->req.priority == AGENT_PRIORITY_LOW;
    c->request_id = run->request_id;
    c->done = on_llm_done;
    c->arg = run;
    call_start(run->w, c);
}

void run_tool_finished(struct run_tool *t)
{
    struct run *run = t->run;
    if (t->done || run->finished)
        return;
    t->done = true;
    t->duration_ms = worker_refresh_now(run->w) - t->started_ms;
    bool ok = t->result.kind == TOOL_OK;
    if (t->known)
        metrics_tool_call(t->tool, t->result.kind, (double)t->duration_ms / 1000.0);
    json_array_append_new(run->tool_calls,
                          json_pack("{s:s, s:s, s:b, s:I}", "id", t->id, "name", t->name, "ok", ok,
                                    "duration_ms", (json_int_t)t->duration_ms));
    log_info(
        "tool call", LF_S("request_id", run->request_id), LF_S("run_id", run->id),
        LF_S("tool", t->name), LF_B("ok", ok), LF_I("duration_ms", t->duration_ms),
        LF_S("reason",
             ok ? NULL : (t->result.kind == TOOL_INPUT_ERROR ? "input error" : "system failure")));
    if (t->result.kind == TOOL_SYSTEM_ERROR) {
        bool critical = !t->known || run->app->criticality[t->tool] == TOOL_CRITICAL;
        if (critical) {
            finish_error(run, 503, "tool_unavailable", 0, 1000, "critical tool %s failed: %s",
                         t->name, t->result.text);
            return;
        }
        log_warn("tool degraded", LF_S("request_id", run->request_id), LF_S("tool", t->name),
                 LF_S("reason", t->result.text));
        metrics_degraded_tool_result(t->tool);
        json_array_append_new(run->degraded,
                              json_pack("{s:s, s:s}", "tool", t->name, "reason", t->result.text));
        char *why = strdup(t->result.text);
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR,
                         "The %s tool is temporarily unavailable (%s). Answer without it and say "
                         "so.",
                         t->name, why ? why : "error");
        free(why);
    }
    if (++run->n_tools_done < run->n_tools)
        return;

    struct llm_tool_result *results = calloc(run->n_tools, sizeof(*results));
    if (!results) {
        finish_error(run, 500, "internal_error", 0, 0, "out of memory");
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
        finish_error(run, 500, "internal_error", 0, 0, "could not record tool results");
        return;
    }
    llm_step(run);
}

int64_t run_tool_deadline_ms(const struct run_tool *t)
{
    int64_t tool_deadline = t->started_ms + t->run->app->cfg.tool_timeout_ms;
    return tool_deadline < t->run->deadline_ms ? tool_deadline : t->run->deadline_ms;
}

/* The client closed its connection: nobody will read the answer, so stop spending on it. */
static void on_client_gone(struct worker *w, void *arg)
{
    (void)w;
    struct run *run = arg;
    if (run->finished)
        return;
    log_info("client went away: run cancelled", LF_S("request_id", run->request_id),
             LF_S("run_id", run->id), LF_I("iterations", run->iterations));
    finish_error(run, 499, "client_closed", 0, 0, "the client closed the connection");
}

void run_set_client_fd(struct run *run, int fd)
{
    run->client_fd = fd;
}

static void run_begin(struct worker *w, void *arg)
{
    struct run *run = arg;
    run->w = w;
    if (run->client_fd >= 0)
        run->client_watched = worker_watch_client(w, run->client_fd, on_client_gone, run) == 0;
    timer_init(&run->deadline_timer, on_deadline, run);
    timer_init(&run->finish_timer, on_finish_timer, run);
    timerheap_arm(worker_timers(w), &run->deadline_timer, run->deadline_ms);
    log_info("run start", LF_S("request_id", run->request_id), LF_S("run_id", run->id),
             LF_I("max_iterations", run->max_iterations),
             LF_I("timeout_ms", run->deadline_ms - run->started_ms),
             LF_S("conversation_id", run->req.conversation_id));
    if (log_enabled(LOG_DEBUG)) {
        /* Input only at debug level, and cut on a character boundary: it may hold anything. */
        const char *in = run->req.input;
        size_t len = strlen(in), n = text_utf8_prefix_len(in, len, 200);
        char head[201];
        memcpy(head, in, n);
        head[n] = '\0';
        log_debug("run input", LF_S("request_id", run->request_id), LF_I("bytes", len),
                  LF_S("input", head));
    }
    llm_step(run);
}

struct run *run_new(struct app *app, struct agent_request *req, const char *request_id,
                    json_t *history, run_finish_fn finish_fn, void *finish_arg)
{
    struct run *run = calloc(1, sizeof(*run));
    if (!run)
        return NULL;
    run->app = app;
    run->req = *req;
    memset(req, 0, sizeof(*req));
    snprintf(run->request_id, sizeof(run->request_id), "%s", request_id);
    uint64_t seq = atomic_fetch_add(&app->run_seq, 1);
    snprintf(run->id, sizeof(run->id), "run_%012" PRIx64 "%06" PRIx64,
             (uint64_t)(clock_wall_ms() & 0xffffffffffffLL), (uint64_t)(seq & 0xffffffu));
    run->max_iterations =
        run->req.max_iterations ? run->req.max_iterations : app->cfg.max_iterations;
    run->started_ms = clock_now_ms();
    int64_t timeout = run->req.timeout_ms ? run->req.timeout_ms : app->cfg.total_timeout_ms;
    run->deadline_ms = run->started_ms + timeout;
    run->messages = history ? history : json_array();
    run->tool_calls = json_array();
    run->degraded = json_array();
    atomic_init(&run->refs, 1);
    run->client_fd = -1;
    run->finish = finish_fn;
    run->finish_arg = finish_arg;
    call_init(&run->llm);
    if (!run->messages || !run->tool_calls || !run->degraded ||
        anthropic_append_user_text(run->messages, run->req.input) < 0) {
        run_free(run);
        return NULL;
    }
    return run;
}

int run_submit(struct run *run, struct worker *w)
{
    return worker_post(w, run_begin, run);
}
