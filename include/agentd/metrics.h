/*
 * metrics.h — the daemon's Prometheus metrics (text exposition format 0.0.4,
 * served by GET /metrics).
 *
 * Label cardinality is bounded by construction: every label value comes from
 * a fixed enum (route, method, status from a fixed list, dependency, tool,
 * outcome...), never from a request. Out-of-range enum values are folded into
 * the family's "other" value (internal_error for run outcomes), or dropped
 * when the family has none.
 *
 * Thread-safety: one process-wide registry of fixed arrays of atomics. Every
 * update is a relaxed atomic add or store: no lock, no allocation, safe from
 * any thread, cheap enough for the request path. metrics_render() only reads
 * the atomics, so a scrape never blocks an update; a scrape racing updates may
 * see a histogram's _sum a few observations out of step with its _count,
 * never a bucket above +Inf (_count is the sum of the buckets read).
 * metrics_init() is the exception: it resets the registry without atomics.
 *
 * Two families follow the OpenTelemetry GenAI semantic conventions in their
 * Prometheus form (gen_ai.client.token.usage -> gen_ai_client_token_usage,
 * gen_ai.client.operation.duration -> gen_ai_client_operation_duration_seconds),
 * with the conventions' attribute names as labels and their advisory bucket
 * boundaries.
 *
 * Series of small fixed label sets are always exported, zeros included, so
 * rate() works from the first scrape. The two cross-product families
 * (agentd_http_requests_total, agentd_llm_attempts_total) export only the
 * label combinations seen at least once.
 *
 * Process metrics (resident memory, open fds) are read from /proc at render
 * time. Nothing here logs; metrics_init() reads the wall clock once.
 *
 * Memory: only metrics_render() returns memory (the caller frees it); the
 * label helpers return static strings.
 */
#ifndef AGENTD_METRICS_H
#define AGENTD_METRICS_H

#include <stdbool.h>
#include <stdint.h>

/* enum dep_id, tool_id, agent_priority, tool_result_kind, breaker_state and their names */
#include "agentd/vocab.h"

/* Route label of the HTTP families. */
enum metrics_route {
    METRICS_ROUTE_AGENT,        /* "agent": POST /v1/agent */
    METRICS_ROUTE_HEALTH_LIVE,  /* "health_live" */
    METRICS_ROUTE_HEALTH_READY, /* "health_ready" */
    METRICS_ROUTE_METRICS,      /* "metrics" */
    METRICS_ROUTE_OTHER,        /* "other": unknown paths (404s) */
    METRICS_ROUTE__COUNT,
};

enum metrics_method {
    METRICS_METHOD_GET,
    METRICS_METHOD_POST,
    METRICS_METHOD_HEAD,
    METRICS_METHOD_OTHER,
    METRICS_METHOD__COUNT,
};

/* Outcome label of agentd_runs_total: "ok" or the error.type of API.md. */
enum metrics_run_outcome {
    METRICS_RUN_OK,
    METRICS_RUN_UPSTREAM_ERROR,
    METRICS_RUN_UPSTREAM_UNAVAILABLE,
    METRICS_RUN_TOOL_UNAVAILABLE,
    METRICS_RUN_RATE_LIMITED,
    METRICS_RUN_BUDGET_EXCEEDED,
    METRICS_RUN_DEADLINE_EXCEEDED,
    METRICS_RUN_SHUTTING_DOWN,
    METRICS_RUN_INTERNAL_ERROR,
    METRICS_RUN_CLIENT_CLOSED,     /* the client went away; the run was cancelled */
    METRICS_RUN_HISTORY_TOO_LARGE, /* the conversation outgrew one LLM request */
    METRICS_RUN_REPLAYED,          /* an Idempotency-Key's stored answer, found on the worker */
    METRICS_RUN_REFUSED,           /* a claim refused it on the worker (key or conversation busy) */
    METRICS_RUN__COUNT,
};

/* Outcome label of agentd_llm_attempts_total. */
enum metrics_attempt_outcome {
    METRICS_ATTEMPT_SUCCESS,          /* "success": a 2xx answer */
    METRICS_ATTEMPT_HTTP_ERROR,       /* "http_error": any other HTTP status */
    METRICS_ATTEMPT_TIMEOUT,          /* "timeout": the attempt timeout fired */
    METRICS_ATTEMPT_CONNECTION_ERROR, /* "connection_error": DNS, connect, TLS, reset */
    METRICS_ATTEMPT__COUNT,
};

/* Reason label of agentd_retries_total: why a retry was scheduled. */
enum metrics_retry_reason {
    METRICS_RETRY_HTTP_429,
    METRICS_RETRY_HTTP_5XX,
    METRICS_RETRY_TIMEOUT,
    METRICS_RETRY_CONNECTION_ERROR,
    METRICS_RETRY_MALFORMED, /* a 2xx answer that could not be parsed */
    METRICS_RETRY__COUNT,
};

/* Kind label of the cost/token budget families. */
enum metrics_budget_kind {
    METRICS_BUDGET_USD,
    METRICS_BUDGET_TOKENS,
    METRICS_BUDGET__COUNT,
};

/* Upper bounds (seconds) of every duration histogram; +Inf is added on top. */
#define METRICS_DURATION_BUCKETS                                                                   \
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",  \
        "60", "120"
#define METRICS_N_BUCKETS 15

/*
 * Resets every metric to zero and records the version (build_info label,
 * copied, cut to 63 bytes; NULL = "unknown") and the start time (wall clock
 * now: main() calls this first). Call before any other thread uses the
 * registry; tests call it again to start from zero.
 */
void metrics_init(const char *version);

/* Label helper for the server: exact, case-sensitive match; anything else maps to OTHER. (Each
   route names its own METRICS_ROUTE_* value.) */
enum metrics_method metrics_method_from_string(const char *method);

/*
 * The code label of both HTTP families: the exact status when it is one of
 * 200 400 401 403 404 405 408 409 413 415 422 429 500 502 503 504 529,
 * otherwise its class "1xx".."5xx", otherwise "other" (so code=~"5.." still
 * selects every server error). status 0 gives "none" (no HTTP answer: only
 * meaningful for LLM attempts). Static string.
 */
const char *metrics_status_label(int status);

/* One answered HTTP request: agentd_http_requests_total and ..._duration_seconds. */
void metrics_http_request(enum metrics_route route, enum metrics_method method, int status,
                          double seconds);

/* The outcome label's value ("ok" or the error.type); "internal_error" when out of range. */
const char *metrics_run_outcome_name(enum metrics_run_outcome outcome);

/* agentd_runs_in_flight +1. */
void metrics_run_started(void);
/* agentd_runs_in_flight -1 and agentd_runs_total{outcome} +1. */
void metrics_run_finished(enum metrics_run_outcome outcome);

/* One LLM attempt; http_status 0 when there was no HTTP answer (code="none"). */
void metrics_llm_attempt(enum metrics_attempt_outcome outcome, int http_status);
void metrics_retry(enum dep_id dep, enum metrics_retry_reason reason);
void metrics_retry_budget_exhausted(enum dep_id dep);

/* Sets agentd_breaker_state{dependency} (e.g. at start, or from a periodic sweep). */
void metrics_breaker_state(enum dep_id dep, enum breaker_state state);
/* A drained breaker transition: counts it and sets the state gauge to `to`. */
void metrics_breaker_transition(enum dep_id dep, enum breaker_state to);

/* Time a call waited for a rate-limiter token (0 when one was there). */
void metrics_limiter_wait(enum dep_id dep, double seconds);
void metrics_limiter_refusal(enum dep_id dep, enum agent_priority priority);

/* One finished tool call: agentd_tool_calls_total and agentd_tool_duration_seconds. */
void metrics_tool_call(enum tool_id tool, enum tool_result_kind outcome, double seconds);
/* An optional tool's system failure handed to the model as "unavailable". */
void metrics_degraded_tool_result(enum tool_id tool);

/* Usage reported by one LLM answer; negative values are ignored. Adds to
   agentd_llm_tokens_total and observes each direction once in the GenAI
   histogram gen_ai_client_token_usage{gen_ai_token_type}. */
void metrics_llm_tokens(int64_t input_tokens, int64_t output_tokens);

/* How one LLM call (a GenAI "chat" operation, its retries and waits included) ended: the
   error_type label of gen_ai_client_operation_duration_seconds (absent for OK). */
enum metrics_gen_ai_outcome {
    METRICS_GEN_AI_OK,                /* no error_type label */
    METRICS_GEN_AI_PERMANENT_ERROR,   /* "permanent_error": a status not retried (4xx) */
    METRICS_GEN_AI_RETRIES_EXHAUSTED, /* "retries_exhausted" */
    METRICS_GEN_AI_CIRCUIT_OPEN,      /* "circuit_open" */
    METRICS_GEN_AI_RATE_LIMITED,      /* "rate_limited": no limiter token in time */
    METRICS_GEN_AI_DEADLINE,          /* "deadline" */
    METRICS_GEN_AI__COUNT,
};
/* One finished LLM call: gen_ai_client_operation_duration_seconds{gen_ai_operation_name="chat",
   gen_ai_provider_name="anthropic"[,error_type]}. Out-of-range outcomes are dropped. */
void metrics_gen_ai_operation(enum metrics_gen_ai_outcome outcome, double seconds);
/* Adds to agentd_llm_cost_usd_total (kept in nano-USD; negative/NaN ignored). */
void metrics_llm_cost_usd(double usd);
/* Adds to agentd_llm_cache_tokens_total{kind="write"|"read"} (negative counts ignored). */
void metrics_llm_cache_tokens(int64_t write_tokens, int64_t read_tokens);

/*
 * The model label (the fallback chain, model_chain.h): at most METRICS_MODELS_MAX names, set
 * once after metrics_init() and before other threads exist (copied; each at most
 * METRICS_MODEL_NAME_MAX bytes). The model
 * argument below is an index into these names; anything else is dropped.
 */
#define METRICS_MODELS_MAX     5
#define METRICS_MODEL_NAME_MAX 256
void metrics_set_models(const char *const *names, int n);

/* Reason label of agentd_llm_fallbacks_total (model_chain.h's reasons). */
enum metrics_fallback_reason {
    METRICS_FALLBACK_OVERLOADED,
    METRICS_FALLBACK_UNAVAILABLE,
    METRICS_FALLBACK_RATE_LIMITED,
    METRICS_FALLBACK_CIRCUIT_OPEN,
    METRICS_FALLBACK__COUNT,
};
/* An LLM call on model ended: agentd_llm_model_calls_total{model,outcome="ok"|"error"}. */
void metrics_llm_model_call(int model, bool ok);
/* A run moved away from model: agentd_llm_fallbacks_total{model,reason}. */
void metrics_llm_fallback(int model, enum metrics_fallback_reason reason);
/* agentd_llm_model_breaker_state{model}: 0 closed, 1 half-open, 2 open. */
void metrics_llm_model_breaker_state(int model, enum breaker_state state);
/* The configured hourly budgets, agentd_budget_limit_per_hour{kind} (USD and tokens per
   sliding hour; 0 = off; negative/NaN read as 0), so dashboards can draw spend against them. */
void metrics_budget_limits(double usd_per_hour, int64_t tokens_per_hour);
/* A drained budget transition: sets agentd_budget_exhausted{kind} and counts it. */
void metrics_budget_transition(enum metrics_budget_kind kind, bool exhausted);

/* How one Redis command ended (agentd_redis_commands_total{result}). */
enum metrics_redis_result {
    METRICS_REDIS_OK = 0,       /* answered (error replies included: Redis did answer) */
    METRICS_REDIS_ERROR,        /* an error reply */
    METRICS_REDIS_TIMEOUT,      /* no answer within AGENTD_REDIS_TIMEOUT_MS */
    METRICS_REDIS_DISCONNECTED, /* the connection broke before the answer */
    METRICS_REDIS__COUNT,
};
/* One Redis command; seconds is its round trip (observed for answered commands only). */
void metrics_redis_command(enum metrics_redis_result result, double seconds);
/* A Redis link (re)connected. */
void metrics_redis_reconnect(void);
/* A reload of the config file: applied, or refused as invalid. */
void metrics_config_reload(bool applied);
/* The shared-state mode: 0 off (no AGENTD_REDIS_URL), 1 shared, 2 degraded; and the replicas
   the registry saw alive (0 when off). */
void metrics_redis_mode(int mode, int replicas);

/* Spans the OTLP exporter handled (tracer.h): agentd_trace_spans_exported_total, and
   agentd_trace_spans_dropped_total{reason}. */
enum metrics_trace_drop {
    METRICS_TRACE_QUEUE_FULL = 0, /* AGENTD_OTLP_QUEUE_SPANS spans were already waiting */
    METRICS_TRACE_EXPORT_FAILED,  /* the collector did not take the batch (error, timeout) */
    METRICS_TRACE_BREAKER_OPEN,   /* the exporter's circuit was open */
    METRICS_TRACE__COUNT,
};
void metrics_trace_spans_exported(uint64_t n);
void metrics_trace_spans_dropped(enum metrics_trace_drop reason, uint64_t n);

/* Durable runs (agentd_durable_runs_total{event}). */
enum metrics_durable {
    METRICS_DURABLE_CHECKPOINT = 0, /* a checkpoint sent */
    METRICS_DURABLE_RESUMED,        /* a run taken over from a checkpoint */
    METRICS_DURABLE_TOO_LARGE,      /* a run that outgrew AGENTD_RUN_CHECKPOINT_MAX_BYTES */
    METRICS_DURABLE_UNAVAILABLE,    /* a checkpoint that could not be sent (Redis down) */
    METRICS_DURABLE__COUNT,
};
void metrics_durable(enum metrics_durable event);

/* agentd_ready 0/1, set by the readiness checker. */
void metrics_set_ready(bool ready);

/*
 * The whole exposition, NUL-terminated, malloc'd (caller frees); NULL on
 * ENOMEM. Serve it with Content-Type "text/plain; version=0.0.4; charset=utf-8".
 */
char *metrics_render(void);

#endif
