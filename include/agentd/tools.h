/*
 * tools.h — the tool registry: which tools exist, the JSON schemas the model
 * sees (the Anthropic `tools` array) and how critical each tool is to a run.
 * The tool ids and their names (enum tool_id, tool_name()) are in vocab.h.
 *
 * Criticality decides what the engine does when a tool fails because of the
 * system behind it (TOOL_SYSTEM_ERROR): a critical tool fails the run (503
 * tool_unavailable), an optional one is reported as degraded and the model
 * is told the tool is unavailable.
 *
 * Everything here is pure and reentrant: no I/O, no global mutable state,
 * safe to call from any thread. Only tools_definitions_json() returns memory
 * (a JSON reference the caller releases).
 */
#ifndef AGENTD_TOOLS_H
#define AGENTD_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "agentd/vocab.h"

enum tool_criticality {
    TOOL_CRITICAL, /* a system failure of this tool fails the run */
    TOOL_OPTIONAL, /* a system failure degrades the run; the model carries on without it */
};

/* Maps a tool name (exact, case-sensitive) to its id. Returns 0 and sets *ret_id, or -ENOENT
 * when name is NULL or names no tool. */
int tool_lookup(const char *name, enum tool_id *ret_id);

/*
 * The Anthropic `tools` array: [{name, description, input_schema}, ...] in tool_id order.
 * Every input_schema is a JSON Schema object with "type":"object",
 * "properties", "required" and "additionalProperties": false:
 *   calculator  {expression: string}                         required: [expression]
 *   save_note   {content: string, filename: string with
 *                pattern ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$} required: [content]
 *   web_search  {query: string}                              required: [query]
 *   get_weather {location: string}                           required: [location]
 * Each property also carries a "description" for the model.
 * web_search is left out when include_web_search is false (no search backend configured).
 * Returns a new reference (caller json_decref()s it), or NULL on ENOMEM.
 */
json_t *tools_definitions_json(bool include_web_search);

/* Default criticality of every tool; also the base that tools_parse_criticality() starts from. */
#define TOOLS_DEFAULT_CRITICALITY                                                                  \
    "calculator=critical,save_note=critical,web_search=optional,get_weather=optional"

/*
 * Parses a comma-separated list of name=level items, level being "critical" or "optional"
 * (names and levels exact, lowercase), e.g. "web_search=critical, get_weather = optional".
 * Whitespace around items, names and levels is tolerated. Every tool not named keeps its
 * default from TOOLS_DEFAULT_CRITICALITY; a NULL or blank spec yields the defaults.
 *
 * On success returns 0 and fills ret[0..TOOL__COUNT-1] (indexed by enum tool_id).
 * On failure returns -EINVAL, leaves ret untouched and, when err is non-NULL and errlen > 0,
 * writes a NUL-terminated message naming the bad item: unknown tool, unknown level,
 * item without '=', empty item, or a tool named twice.
 */
int tools_parse_criticality(const char *spec, enum tool_criticality ret[TOOL__COUNT], char *err,
                            size_t errlen);

#endif
