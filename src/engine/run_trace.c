/*
 * run_trace.c — a run's spans and their GenAI attributes (see run_trace.h).
 */
#include "agentd/run_trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/breaker.h"
#include "agentd/clock.h"
#include "agentd/dependency.h"

#define PROVIDER "anthropic"

struct run_trace {
    struct tracer *tracer;
    struct trace_context ctx; /* the client's (has_parent), or a new trace */
    bool has_parent;
    bool recording; /* spans are exported; else they only carry the client's context on */
    char tracestate[TRACE_STATE_MAX_BYTES + 1];
    int64_t start_ns;
    char request_id[129];
    char trace_id_hex[2 * TRACE_ID_BYTES + 1];
    struct trace_span *run; /* invoke_agent */
    struct trace_span *chat;
    struct call *chat_call; /* the call carrying chat (its span is cleared when chat ends) */
};

struct run_trace *run_trace_new(struct tracer *tracer, const char *traceparent,
                                const char *tracestate)
{
    struct trace_context in;
    bool has_parent = trace_parse_traceparent(traceparent, &in) == 0;
    if (!tracer && !has_parent)
        return NULL;
    struct run_trace *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return NULL;
    rt->tracer = tracer;
    rt->has_parent = has_parent;
    if (has_parent) {
        rt->ctx = in;
        /* W3C: tracestate goes with a valid traceparent only. */
        if (trace_state_ok(tracestate))
            snprintf(rt->tracestate, sizeof(rt->tracestate), "%s", tracestate);
    } else {
        trace_random_id(rt->ctx.trace_id, TRACE_ID_BYTES);
        rt->ctx.flags = 1; /* sampled: a trace agentd starts, agentd records */
    }
    /* Parent-based sampling: a client that did not record its span gets none from agentd. */
    rt->recording = tracer && (rt->ctx.flags & 1);
    trace_hex(rt->ctx.trace_id, TRACE_ID_BYTES, rt->trace_id_hex);
    rt->start_ns = clock_wall_ns();
    return rt;
}

struct run_trace *run_trace_free(struct run_trace *rt)
{
    if (!rt)
        return NULL;
    if (rt->chat_call)
        rt->chat_call->span = NULL;
    trace_span_free(rt->chat);
    trace_span_free(rt->run);
    free(rt);
    return NULL;
}

const char *run_trace_id(const struct run_trace *rt)
{
    return rt ? rt->trace_id_hex : NULL;
}

/* A span of the run's trace: a child of parent (NULL = of the client's span, when there is
   one). Not recording: it stands for the client's span, so what it propagates is the client's
   own context. */
static struct trace_span *span_start(struct run_trace *rt, const struct trace_span *parent,
                                     const char *name, enum trace_kind kind, int64_t start_ns)
{
    struct trace_context ctx = rt->ctx;
    if (parent)
        trace_span_context(parent, &ctx);
    struct trace_span *s = trace_span_new(&ctx, parent || rt->has_parent, name, kind, start_ns);
    if (!s)
        return NULL;
    if (!rt->recording)
        memcpy(s->span_id, rt->ctx.span_id, TRACE_SPAN_ID_BYTES);
    s->tracestate = rt->tracestate[0] ? rt->tracestate : NULL;
    if (rt->request_id[0])
        trace_span_set_str(s, "agentd.request_id", rt->request_id);
    return s;
}

static void span_finish(struct run_trace *rt, struct trace_span *s)
{
    trace_span_end(s, clock_wall_ns());
    s->tracestate = NULL;
    tracer_submit(rt->recording ? rt->tracer : NULL, s);
}

void run_trace_begin(struct run_trace *rt, const char *request_id, const char *run_id,
                     const char *conversation_id, const char *model)
{
    if (!rt || rt->run)
        return;
    snprintf(rt->request_id, sizeof(rt->request_id), "%s", request_id ? request_id : "");
    rt->run = span_start(rt, NULL, "invoke_agent agentd", TRACE_KIND_SERVER, rt->start_ns);
    struct trace_span *s = rt->run;
    trace_span_set_str(s, "gen_ai.operation.name", "invoke_agent");
    trace_span_set_str(s, "gen_ai.provider.name", PROVIDER);
    trace_span_set_str(s, "gen_ai.agent.name", "agentd");
    trace_span_set_str(s, "gen_ai.request.model", model);
    trace_span_set_str(s, "gen_ai.conversation.id", conversation_id);
    trace_span_set_str(s, "agentd.run_id", run_id);
}

/* How a call ended, as error.type (NULL when it succeeded). */
static const char *call_error_type(const struct call *c)
{
    switch (c->outcome) {
    case CALL_OK:
        return NULL;
    case CALL_PERMANENT:
        return "permanent_error";
    case CALL_EXHAUSTED:
        return "retries_exhausted";
    case CALL_BREAKER_OPEN:
        return "circuit_open";
    case CALL_RATE_LIMITED:
        return "rate_limited";
    case CALL_DEADLINE:
    default:
        return "deadline_exceeded";
    }
}

/* What every outbound call's span says of its resilience: retries, the breaker it went
   through, the last HTTP status. */
static void set_call_attrs(struct trace_span *s, const struct call *c)
{
    if (c->attempts > 0)
        trace_span_set_int(s, "agentd.retry.count", c->attempts - 1);
    if (c->status > 0)
        trace_span_set_int(s, "http.response.status_code", c->status);
    if (c->dep) {
        struct breaker *b = dependency_guards(c->dep).breaker;
        if (b)
            trace_span_set_str(s, "agentd.breaker.state",
                               breaker_state_name(breaker_state(b, clock_now_ms())));
    }
    trace_span_set_error(s, call_error_type(c));
}

void run_trace_chat_start(struct run_trace *rt, struct call *c, const char *model)
{
    if (!rt)
        return;
    char name[TRACE_NAME_MAX_BYTES];
    snprintf(name, sizeof(name), "chat %s", model);
    if (rt->chat) /* never left open: a new call ends the last one */
        run_trace_chat_end(rt, NULL, NULL);
    rt->chat = span_start(rt, rt->run, name, TRACE_KIND_CLIENT, clock_wall_ns());
    trace_span_set_str(rt->chat, "gen_ai.operation.name", "chat");
    trace_span_set_str(rt->chat, "gen_ai.provider.name", PROVIDER);
    trace_span_set_str(rt->chat, "gen_ai.request.model", model);
    c->span = rt->chat;
    rt->chat_call = c;
}

void run_trace_chat_end(struct run_trace *rt, struct call *c, const struct llm_response *resp)
{
    if (!rt || !rt->chat)
        return;
    struct trace_span *s = rt->chat;
    if (c) {
        set_call_attrs(s, c);
        c->span = NULL;
    } else {
        if (rt->chat_call)
            rt->chat_call->span = NULL;
        trace_span_set_error(s, "cancelled");
    }
    if (resp) {
        if (resp->model && resp->model[0])
            trace_span_set_str(s, "gen_ai.response.model", resp->model);
        if (resp->id && resp->id[0])
            trace_span_set_str(s, "gen_ai.response.id", resp->id);
        if (resp->stop_reason && resp->stop_reason[0])
            trace_span_set_str_array1(s, "gen_ai.response.finish_reasons", resp->stop_reason);
        trace_span_set_int(s, "gen_ai.usage.input_tokens", resp->input_tokens);
        trace_span_set_int(s, "gen_ai.usage.output_tokens", resp->output_tokens);
        trace_span_set_int(s, "gen_ai.usage.cache_read.input_tokens", resp->cache_read_tokens);
        trace_span_set_int(s, "gen_ai.usage.cache_creation.input_tokens",
                           resp->cache_creation_tokens);
    }
    rt->chat = NULL;
    rt->chat_call = NULL;
    span_finish(rt, s);
}

void run_trace_tool_start(struct run_trace *rt, struct tool_exec *t)
{
    if (!rt)
        return;
    char name[TRACE_NAME_MAX_BYTES];
    snprintf(name, sizeof(name), "execute_tool %s", t->name);
    t->span = trace_span_free(t->span);
    t->span = span_start(rt, rt->run, name, TRACE_KIND_INTERNAL, clock_wall_ns());
    trace_span_set_str(t->span, "gen_ai.operation.name", "execute_tool");
    trace_span_set_str(t->span, "gen_ai.tool.name", t->name);
    trace_span_set_str(t->span, "gen_ai.tool.call.id", t->id);
    trace_span_set_str(t->span, "gen_ai.tool.type", "function");
}

void run_trace_tool_end(struct run_trace *rt, struct tool_exec *t, bool degraded)
{
    if (!rt || !t->span)
        return;
    struct trace_span *s = t->span;
    t->span = NULL;
    t->call.span = NULL;
    if (t->call.attempts > 0)
        set_call_attrs(s, &t->call);
    trace_span_set_bool(s, "agentd.tool.degraded", degraded);
    if (t->result.kind == TOOL_INPUT_ERROR)
        trace_span_set_error(s, "tool_input_error");
    else if (t->result.kind != TOOL_OK)
        trace_span_set_error(s, "tool_error");
    span_finish(rt, s);
}

void run_trace_end(struct run_trace *rt, const char *outcome, bool ok, int http_status,
                   int iterations, int64_t input_tokens, int64_t output_tokens)
{
    if (!rt || !rt->run)
        return;
    if (rt->chat)
        run_trace_chat_end(rt, NULL, NULL);
    struct trace_span *s = rt->run;
    trace_span_set_str(s, "agentd.outcome", outcome);
    trace_span_set_int(s, "agentd.iterations", iterations);
    trace_span_set_int(s, "gen_ai.usage.input_tokens", input_tokens);
    trace_span_set_int(s, "gen_ai.usage.output_tokens", output_tokens);
    if (http_status > 0)
        trace_span_set_int(s, "http.response.status_code", http_status);
    if (!ok)
        trace_span_set_error(s, outcome);
    else
        s->status = TRACE_STATUS_UNSET;
    /* The run span is the last: its trace id stays readable for the run's last log lines. */
    span_finish(rt, s);
    rt->run = NULL;
}
