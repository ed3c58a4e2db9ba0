/*
 * vocab.h — the bounded vocabularies that several modules share and that the
 * metrics export as label values: the outbound dependencies, the tools, run
 * priorities, tool-call outcomes and circuit-breaker states. Each enum has
 * exactly one name table (src/core/vocab.c), so a log line, a metric label and
 * the tool name the model sees can never spell the same value differently.
 *
 * Pure: constant tables only; safe from any thread at once. Every name
 * returned is a static string: never freed, valid for the life of the
 * process. A value outside its enum gets the fallback its function names.
 */
#ifndef AGENTD_VOCAB_H
#define AGENTD_VOCAB_H

/* The outbound dependencies, each with its own breaker, rate limiter and retry budget. */
enum dep_id { DEP_ANTHROPIC = 0, DEP_WEB_SEARCH, DEP_WEATHER, DEP__COUNT };

/* "anthropic", "web_search", "weather"; "unknown" for anything else. */
const char *dep_name(enum dep_id id);

/* The tools the model may call (see tools.h for their schemas and criticality). */
enum tool_id {
    TOOL_CALCULATOR,
    TOOL_SAVE_NOTE,
    TOOL_WEB_SEARCH,
    TOOL_GET_WEATHER,
    TOOL__COUNT,
};

/* The name the model uses ("calculator", "save_note", "web_search", "get_weather").
 * NULL for an id outside 0..TOOL__COUNT-1. */
const char *tool_name(enum tool_id id);

/* The "priority" of a POST /v1/agent body. */
enum agent_priority {
    AGENT_PRIORITY_HIGH, /* the default when the body has no "priority" */
    AGENT_PRIORITY_LOW,  /* shed first under pressure */
};
#define AGENT_PRIORITY_COUNT 2

/* "high", "low"; "unknown" for anything else. */
const char *agent_priority_name(enum agent_priority p);

/* How a tool call ended (see tool_result.h). */
enum tool_result_kind {
    TOOL_OK = 0,       /* text is the result */
    TOOL_INPUT_ERROR,  /* text explains what was wrong with the input */
    TOOL_SYSTEM_ERROR, /* text explains what failed (no secrets, no note content) */
};
#define TOOL_RESULT_KIND_COUNT 3

/* "ok", "input_error", "system_error"; "unknown" for anything else. */
const char *tool_result_kind_name(enum tool_result_kind kind);

/* Circuit-breaker states (see breaker.h). The numeric values are the ones exported as the state
 * metric. */
enum breaker_state { BREAKER_CLOSED = 0, BREAKER_HALF_OPEN = 1, BREAKER_OPEN = 2 };
#define BREAKER_STATE_COUNT 3

/* "closed", "half_open", "open"; "unknown" for anything else. */
const char *breaker_state_name(enum breaker_state s);

#endif
