/*
 * dump_requests.c — prints representative POST /v1/messages bodies, one per
 * line, as agentd would send them, for validate_requests.py to check against
 * the official OpenAPI description (the request contract test).
 *
 * The assistant turns are produced the way the engine produces them — by
 * parsing an API response and appending its sanitized content — so the
 * contract covers the parser's output as well as the builders, and the tools
 * are the real definitions from the registry.
 *
 * Each body is printed a second time with "stream": true, as a streaming run
 * sends it.
 *
 * Usage: dump_requests > bodies.jsonl   (exit status 1 if any body could not be built)
 */
#include "agentd/anthropic.h"
#include "agentd/anthropic_stream.h"
#include "agentd/tools.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_MODEL "claude-sonnet-4-5"

/* Reports a failed step (rc = -errno) on stderr and passes rc through. */
static int dump_check(const char *what, int rc)
{
    if (rc < 0)
        fprintf(stderr, "dump_requests: %s: %s\n", what, strerror(-rc));
    return rc;
}

/* Prints the body four times: without prompt caching, then with its cache breakpoints, each as
   a non-streaming run sends it and with "stream": true as a streaming run (a client that asked
   for "stream": true) sends the same request. */
static int dump_body(const char *what, const struct llm_params *p, const json_t *messages)
{
    struct llm_params cached = *p;

    for (int i = 0; i < 2; i++) {
        cached.prompt_cache = i == 1;
        char *body = anthropic_build_request(&cached, messages);
        if (!body)
            return dump_check(what, -errno);
        puts(body);
        char *streamed = anthropic_stream_request(body);
        free(body);
        if (!streamed)
            return dump_check(what, -errno);
        puts(streamed);
        free(streamed);
    }
    return 0;
}

/* Appends the sanitized assistant content of a canned API response. */
static int dump_append_response(json_t *messages, const char *response,
                                struct llm_response *ret_resp)
{
    char err[256];
    struct llm_response r;
    int rc = anthropic_parse_response(response, strlen(response), &r, err, sizeof(err));

    if (rc < 0) {
        fprintf(stderr, "dump_requests: canned response: %s\n", err);
        return rc;
    }
    rc = dump_check("append assistant", anthropic_append_assistant(messages, r.content));
    if (rc < 0 || !ret_resp)
        llm_response_clear(&r);
    else
        *ret_resp = r;
    return rc;
}

static int dump_user(json_t *messages, const char *text)
{
    return dump_check("append user text", anthropic_append_user_text(messages, text));
}

static const char tool_use_response[] =
    "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"" DUMP_MODEL "\","
    "\"content\":[{\"type\":\"text\",\"text\":\"I'll compute that and check the weather.\","
    "\"citations\":null},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_01A\",\"name\":\"calculator\","
    "\"input\":{\"expression\":\"(3 + 4) * 2\"}},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_01B\",\"name\":\"get_weather\","
    "\"input\":{\"location\":\"Seattle\"}}],"
    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":512,\"output_tokens\":80}}";

static const char pause_turn_response[] =
    "{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"" DUMP_MODEL "\","
    "\"content\":[{\"type\":\"thinking\",\"thinking\":\"…\",\"signature\":\"sig\"},"
    "{\"type\":\"text\",\"text\":\"Still working on the long answer…\"}],"
    "\"stop_reason\":\"pause_turn\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":40,\"output_tokens\":4000}}";

static const char final_response[] =
    "{\"id\":\"msg_03\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"" DUMP_MODEL "\","
    "\"content\":[{\"type\":\"text\",\"text\":\"(3 + 4) * 2 = 14; the weather service is down.\"}],"
    "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":700,\"output_tokens\":20}}";

static const char unicode_input[] =
    "Ünïcödé: 日本語のテキスト, עברית, العربية, emoji 😀🚀, combining e\xcc\x81, "
    "quotes \"x\", backslash \\ , tab\t, newline\n, control \x01, "
    "max BMP \xef\xbf\xbd and U+10FFFF \xf4\x8f\xbf\xbf";

static int dump_all(json_t *all_tools, json_t *tools_no_search)
{
    struct llm_params p = {.model = DUMP_MODEL,
                           .max_tokens = 4096,
                           .temperature = 0.7,
                           .system = "You are agentd's assistant. Use tools when they help.",
                           .tools = all_tools};
    struct llm_response r = {0};
    json_t *m = json_array();
    int rc = -ENOMEM;

    if (!m)
        return dump_check("messages", -ENOMEM);

    /* 1. First turn: system prompt and every tool. */
    if ((rc = dump_user(m, "What is (3 + 4) * 2, and the weather in Seattle?")) < 0 ||
        (rc = dump_body("first turn", &p, m)) < 0)
        goto out;

    /* 2. Second turn: assistant with two tool_use blocks, then their results. */
    if ((rc = dump_append_response(m, tool_use_response, &r)) < 0)
        goto out;
    if (r.n_tool_uses != 2) {
        rc = dump_check("canned tool_use response", -EBADMSG);
        goto out;
    }
    const struct llm_tool_result results[] = {
        {.tool_use_id = r.tool_uses[0].id, .text = "14", .is_error = false},
        {.tool_use_id = r.tool_uses[1].id,
         .text = "get_weather is unavailable right now (circuit open)",
         .is_error = true},
    };
    if ((rc = dump_check("tool results", anthropic_append_tool_results(m, results, 2))) < 0 ||
        (rc = dump_body("tool results turn", &p, m)) < 0)
        goto out;

    /* 3. Later turn of the same conversation: final answer, then a new question. */
    if ((rc = dump_append_response(m, final_response, NULL)) < 0 ||
        (rc = dump_user(m, "Thanks. Save that as a note.")) < 0 ||
        (rc = dump_body("follow-up turn", &p, m)) < 0)
        goto out;
    json_array_clear(m);

    /* 4. pause_turn continuation: history ends with the assistant turn, edge temperature. */
    p.temperature = 1.0;
    if ((rc = dump_user(m, "Write a long report on resilience patterns.")) < 0 ||
        (rc = dump_append_response(m, pause_turn_response, NULL)) < 0 ||
        (rc = dump_body("pause_turn continuation", &p, m)) < 0)
        goto out;
    json_array_clear(m);

    /* 5. No system prompt, no web_search tool, other edge temperature. */
    p.system = NULL;
    p.tools = tools_no_search;
    p.temperature = 0.0;
    p.max_tokens = 1;
    if ((rc = dump_user(m, "Hello")) < 0 || (rc = dump_body("no system, no web_search", &p, m)) < 0)
        goto out;
    json_array_clear(m);

    /* 6. Unicode and characters that need escaping; no tools at all. */
    p.tools = NULL;
    p.system = "Réponds en français. 🙂";
    if ((rc = dump_user(m, unicode_input)) < 0 || (rc = dump_body("unicode input", &p, m)) < 0)
        goto out;
    rc = 0;

out:
    llm_response_clear(&r);
    json_decref(m);
    return rc;
}

int main(void)
{
    json_t *all_tools = tools_definitions_json(true);
    json_t *tools_no_search = tools_definitions_json(false);
    int rc = -ENOMEM;

    if (!all_tools || !tools_no_search)
        dump_check("tools_definitions_json", -ENOMEM);
    else
        rc = dump_all(all_tools, tools_no_search);
    json_decref(all_tools);
    json_decref(tools_no_search);
    if (fflush(stdout) != 0)
        rc = dump_check("stdout", -errno);
    return rc < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
