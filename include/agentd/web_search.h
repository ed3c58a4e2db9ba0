/*
 * web_search.h — the pure parts of the `web_search` tool, backed by a SearXNG
 * instance's JSON API: validate the model's input, build the request URL and
 * turn the response body into a short numbered list for the model.
 *
 * The engine does the HTTP (GET, with its own timeout and body cap) and maps
 * transport or HTTP-status failures to TOOL_SYSTEM_ERROR itself; these
 * functions never do I/O, read a clock or log. Pure and reentrant; safe from
 * any thread.
 *
 * Memory: the URL is malloc'd (caller free()s); results and messages go into
 * the caller's struct tool_result (tool_result.h); bodies and inputs are
 * only read during the call, apart from *ret_query, borrowed from input.
 */
#ifndef AGENTD_WEB_SEARCH_H
#define AGENTD_WEB_SEARCH_H

#include <stddef.h>

#include <jansson.h>

#include "agentd/tool_result.h"

#define WEB_SEARCH_MAX_QUERY_BYTES 500
#define WEB_SEARCH_MAX_RESULTS     5
/* Snippets are cut to at most this many bytes (on a UTF-8 character boundary, then "..."). */
#define WEB_SEARCH_MAX_SNIPPET_BYTES 300
/* Titles and URLs are cut to these caps, so one hostile result cannot flood the model. */
#define WEB_SEARCH_MAX_TITLE_BYTES 200
#define WEB_SEARCH_MAX_URL_BYTES   1000
/* Bodies larger than this are refused by web_search_parse(); the engine should cap its
 * download at this size too. */
#define WEB_SEARCH_MAX_BODY_BYTES (2 * 1024 * 1024)

/*
 * Validates the tool_use input: an object with exactly one member "query", a
 * string of 1..WEB_SEARCH_MAX_QUERY_BYTES bytes that is not all whitespace and
 * contains no NUL.
 * On success returns 0, sets *ret_query (borrowed from input, valid while input
 * lives) and leaves ret untouched. On a bad input sets ret to TOOL_INPUT_ERROR
 * with a message naming the problem and returns -EINVAL (-ENOMEM if the message
 * could not be allocated).
 */
int web_search_input(const json_t *input, const char **ret_query, struct tool_result *ret);

/*
 * Returns "{base_url}/search?q=<urlenc(query)>&format=json" (malloc'd; caller
 * free()s). One trailing '/' on base_url is tolerated. NULL with errno = EINVAL
 * when an argument is NULL, or NULL with errno = ENOMEM.
 */
char *web_search_build_url(const char *base_url, const char *query);

/*
 * Turns a SearXNG body {"query", "results":[{"title","url","content"},...]}
 * (len bytes, need not be NUL-terminated) into ret:
 *   - TOOL_OK with a numbered list of the first WEB_SEARCH_MAX_RESULTS results
 *     (title, url, snippet); returns 0. Missing or non-string fields are left
 *     out, results that are not objects or have none of the three are skipped,
 *     runs of spaces and control characters are folded into one space.
 *   - no usable result: TOOL_OK "No results for '<query>'."; returns 0.
 *   - not JSON, not an object, no "results" array, or over WEB_SEARCH_MAX_BODY_BYTES:
 *     TOOL_SYSTEM_ERROR "search backend returned a malformed response"; returns -EBADMSG.
 * query is the text that was searched for (used in the message; may be NULL).
 * Returns -ENOMEM when out of memory (ret then unspecified but safe to clear).
 */
int web_search_parse(const char *body, size_t len, const char *query, struct tool_result *ret);

#endif
