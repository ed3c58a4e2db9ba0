/*
 * vocab.c — the one name table of each shared enum (see vocab.h).
 */
#include "agentd/vocab.h"

#include <stddef.h>

#define VOCAB_UNKNOWN "unknown"

static const char *const dep_names[DEP__COUNT] = {
    [DEP_ANTHROPIC] = "anthropic",
    [DEP_WEB_SEARCH] = "web_search",
    [DEP_WEATHER] = "weather",
};

static const char *const tool_names[TOOL__COUNT] = {
    [TOOL_CALCULATOR] = "calculator",
    [TOOL_SAVE_NOTE] = "save_note",
    [TOOL_WEB_SEARCH] = "web_search",
    [TOOL_GET_WEATHER] = "get_weather",
};

static const char *const priority_names[AGENT_PRIORITY_COUNT] = {
    [AGENT_PRIORITY_HIGH] = "high",
    [AGENT_PRIORITY_LOW] = "low",
};

static const char *const tool_result_kind_names[TOOL_RESULT_KIND_COUNT] = {
    [TOOL_OK] = "ok",
    [TOOL_INPUT_ERROR] = "input_error",
    [TOOL_SYSTEM_ERROR] = "system_error",
};

static const char *const breaker_state_names[BREAKER_STATE_COUNT] = {
    [BREAKER_CLOSED] = "closed",
    [BREAKER_HALF_OPEN] = "half_open",
    [BREAKER_OPEN] = "open",
};

_Static_assert(AGENT_PRIORITY_LOW == AGENT_PRIORITY_COUNT - 1,
               "AGENT_PRIORITY_COUNT follows enum agent_priority");
_Static_assert(TOOL_SYSTEM_ERROR == TOOL_RESULT_KIND_COUNT - 1,
               "TOOL_RESULT_KIND_COUNT follows enum tool_result_kind");
_Static_assert(BREAKER_OPEN == BREAKER_STATE_COUNT - 1,
               "BREAKER_STATE_COUNT follows enum breaker_state");

/* table[v] when v is one of its n entries, else fallback. */
static const char *name_of(const char *const *table, int n, int v, const char *fallback)
{
    return v >= 0 && v < n ? table[v] : fallback;
}

const char *dep_name(enum dep_id id)
{
    return name_of(dep_names, DEP__COUNT, (int)id, VOCAB_UNKNOWN);
}

const char *tool_name(enum tool_id id)
{
    return name_of(tool_names, TOOL__COUNT, (int)id, NULL);
}

const char *agent_priority_name(enum agent_priority p)
{
    return name_of(priority_names, AGENT_PRIORITY_COUNT, (int)p, VOCAB_UNKNOWN);
}

const char *tool_result_kind_name(enum tool_result_kind kind)
{
    return name_of(tool_result_kind_names, TOOL_RESULT_KIND_COUNT, (int)kind, VOCAB_UNKNOWN);
}

const char *breaker_state_name(enum breaker_state s)
{
    return name_of(breaker_state_names, BREAKER_STATE_COUNT, (int)s, VOCAB_UNKNOWN);
}
