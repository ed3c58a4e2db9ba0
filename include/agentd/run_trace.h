/*
 * run_trace.h — one run's trace: the hooks run.c calls to record its spans
 * (trace.h) with the OpenTelemetry GenAI attributes, and hand them to the
 * exporter (tracer.h). It decides nothing about the run.
 *
 *   invoke_agent (SERVER, child of the client's traceparent when valid)
 *     ├─ chat <model> (CLIENT, one per LLM call; each attempt an event)
 *     └─ execute_tool <tool> (INTERNAL, one per tool_use block)
 *
 * A run has a trace when the exporter is on or its request carried a valid
 * traceparent; otherwise run_trace_new() returns NULL and every hook is a
 * no-op on NULL. A trace that is not recorded (exporter off, or the parent
 * not sampled) still propagates: its spans carry the client's parent id and
 * flags, so the outbound traceparent is the client's own, and are never
 * exported.
 *
 * Threads: run_trace_new/run_trace_free where the run is created and freed;
 * every other function on the run's worker. Strings are copied.
 */
#ifndef AGENTD_RUN_TRACE_H
#define AGENTD_RUN_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "agentd/anthropic.h"
#include "agentd/call.h"
#include "agentd/tools_exec.h"
#include "agentd/trace.h"
#include "agentd/tracer.h"

struct run_trace;

/* traceparent/tracestate: the request's headers (NULL = absent; invalid = ignored). NULL when
   the run has no trace (or on ENOMEM: a run never fails for its trace). */
struct run_trace *run_trace_new(struct tracer *tracer, const char *traceparent,
                                const char *tracestate);
/* Frees rt and any span not ended (never exported). NULL is fine; returns NULL. */
struct run_trace *run_trace_free(struct run_trace *rt);
/* The trace id in hex, for log lines beside request_id; NULL when rt is NULL. */
const char *run_trace_id(const struct run_trace *rt);

/* The run starts on its worker: the invoke_agent span. */
void run_trace_begin(struct run_trace *rt, const char *request_id, const char *run_id,
                     const char *conversation_id, const char *model);
/* An LLM call is about to start: its chat span, which c carries (c->span) for its outbound
   traceparent and attempt events. */
void run_trace_chat_start(struct run_trace *rt, struct call *c, const char *model);
/* The LLM call ended: resp is its parsed answer when c->outcome is CALL_OK, else NULL. */
void run_trace_chat_end(struct run_trace *rt, struct call *c, const struct llm_response *resp);
/* A tool call is about to start: its execute_tool span (t->span). */
void run_trace_tool_start(struct run_trace *rt, struct tool_exec *t);
/* The tool call ended (t->result holds its result); degraded: an optional tool's failure
   handed to the model. */
void run_trace_tool_end(struct run_trace *rt, struct tool_exec *t, bool degraded);
/* The run ended: outcome (metrics vocabulary), ok (false: the span's status is ERROR with
   error.type = outcome), its HTTP status, and its totals. A chat span
   still open ends here too (cancelled). */
void run_trace_end(struct run_trace *rt, const char *outcome, bool ok, int http_status,
                   int iterations, int64_t input_tokens, int64_t output_tokens);

#endif
