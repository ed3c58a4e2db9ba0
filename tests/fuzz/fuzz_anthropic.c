/*
 * fuzz_anthropic.c — libFuzzer target for bodies the Messages API (or a proxy
 * in front of it) sends back: anthropic_parse_response() for 2xx answers and
 * anthropic_parse_error() for the others. A parsed response then goes the way
 * the engine takes it (src/engine/run.c): its content is appended to the
 * history, its tool_use ids are answered with tool_results, and the next
 * request body is built — so hostile content reaches the builders too. The
 * raw input is also offered as user text, whose UTF-8 check is compared
 * with the reference one.
 * Checks the promises of include/agentd/anthropic.h along the way.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agentd/anthropic.h"
#include "agentd/ratelimit_headers.h"
#include "fuzz_common.h"

/* LLM_MAX_RESPONSE_BYTES in src/engine/run.c: the engine stops reading there. */
#define FUZZ_BODY_CAP ((size_t)16 * 1024 * 1024)

static bool token_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n < 1 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static void check_response(const struct llm_response *r)
{
    FUZZ_CHECK(r->id && r->model && r->stop_reason && r->text);
    FUZZ_CHECK(fuzz_utf8_ok(r->text, strlen(r->text)));
    FUZZ_CHECK((unsigned)r->stop <= LLM_STOP_UNKNOWN);
    if (r->stop != LLM_STOP_UNKNOWN)
        FUZZ_CHECK(strcmp(llm_stop_name(r->stop), r->stop_reason) == 0);
    FUZZ_CHECK(r->input_tokens >= 0 && r->output_tokens >= 0);
    FUZZ_CHECK((r->n_tool_uses == 0) == (r->tool_uses == NULL));
    FUZZ_CHECK(json_is_array(r->content));

    /* Content keeps only text (non-empty) and tool_use blocks, in order, and its
     * tool_use blocks are exactly tool_uses[] (same ids, separate inputs). */
    size_t i, k = 0, text_len = 0;
    const json_t *b;
    json_array_foreach(r->content, i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        FUZZ_CHECK(type != NULL);
        if (strcmp(type, "text") == 0) {
            FUZZ_CHECK(json_string_length(json_object_get(b, "text")) > 0);
            FUZZ_CHECK(json_object_size(b) == 2);
            text_len += json_string_length(json_object_get(b, "text"));
            continue;
        }
        FUZZ_CHECK(strcmp(type, "tool_use") == 0);
        FUZZ_CHECK(json_object_size(b) == 4);
        FUZZ_CHECK(k < r->n_tool_uses);
        const struct llm_tool_use *tu = &r->tool_uses[k++];
        FUZZ_CHECK(token_ok(tu->id, ANTHROPIC_MAX_ID_BYTES));
        FUZZ_CHECK(token_ok(tu->name, ANTHROPIC_MAX_TOOL_NAME_BYTES));
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(b, "id")), tu->id) == 0);
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(b, "name")), tu->name) == 0);
        FUZZ_CHECK(json_is_object(tu->input));
        FUZZ_CHECK(json_object_get(b, "input") != tu->input);
        FUZZ_CHECK(json_equal(json_object_get(b, "input"), tu->input));
    }
    FUZZ_CHECK(k == r->n_tool_uses);
    FUZZ_CHECK(strlen(r->text) == text_len);
}

static bool ids_distinct(const struct llm_response *r)
{
    for (size_t i = 0; i < r->n_tool_uses; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(r->tool_uses[i].id, r->tool_uses[k].id) == 0)
                return false;
    return true;
}

/* cache_control breakpoints anywhere under node. */
static int breakpoints(const json_t *node)
{
    int n = 0;
    size_t i;
    const char *k;
    json_t *v;
    if (json_is_object(node)) {
        n += json_object_get(node, "cache_control") != NULL;
        json_object_foreach((json_t *)node, k, v) n += breakpoints(v);
    } else if (json_is_array(node)) {
        json_array_foreach(node, i, v) n += breakpoints(v);
    }
    return n;
}

/* The next turn as the engine builds it; everything here must succeed for a
 * response the parser accepted (short of ENOMEM / E2BIG). */
static void next_turn(const struct llm_response *r)
{
    static const struct llm_params params = {
        .model = "claude-sonnet-4-20250514",
        .max_tokens = 4096,
        .temperature = 1.0,
        .system = "You are a helpful assistant.",
    };
    json_t *messages = json_array();
    if (!messages || anthropic_append_user_text(messages, "What is the weather in Paris?") != 0)
        goto out;
    size_t expect = 1;
    if (json_array_size(r->content) > 0) {
        int rc = anthropic_append_assistant(messages, r->content);
        FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
        if (rc != 0)
            goto out;
        expect++;
    }
    if (r->n_tool_uses > 0 && ids_distinct(r)) {
        struct llm_tool_result *res = calloc(r->n_tool_uses, sizeof(*res));
        if (!res)
            goto out;
        for (size_t i = 0; i < r->n_tool_uses; i++) {
            res[i].tool_use_id = r->tool_uses[i].id;
            res[i].text = i % 2 ? "tool failed" : "";
            res[i].is_error = i % 2;
        }
        int rc = anthropic_append_tool_results(messages, res, r->n_tool_uses);
        free(res);
        FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
        if (rc != 0)
            goto out;
        expect++;
    }
    /* Without and with prompt caching: the same turn, at most 4 breakpoints. */
    for (int cached = 0; cached < 2; cached++) {
        struct llm_params p = params;
        p.prompt_cache = cached;
        errno = 0;
        char *body = anthropic_build_request(&p, messages);
        FUZZ_CHECK(body != NULL || errno == ENOMEM || errno == E2BIG);
        if (!body)
            continue;
        json_t *root = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
        FUZZ_CHECK(json_is_object(root));
        FUZZ_CHECK(json_array_size(json_object_get(root, "messages")) == expect);
        int n = breakpoints(root);
        FUZZ_CHECK(cached ? n <= ANTHROPIC_CACHE_BREAKPOINTS : n == 0);
        json_decref(root);
        free(body);
    }
out:
    json_decref(messages);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_enter(data, size, FUZZ_BODY_CAP);
    if (!body)
        return 0;

    struct llm_response resp;
    char err[256];
    memset(err, 'X', sizeof(err));
    int rc = anthropic_parse_response(body, size, &resp, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
    if (rc == 0) {
        check_response(&resp);
        next_turn(&resp);
        llm_response_clear(&resp);
        FUZZ_CHECK(resp.id == NULL && resp.content == NULL && resp.n_tool_uses == 0);
    } else {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
    }

    /* The builders' own UTF-8 check against the reference one. */
    char *text = fuzz_cstr(data, size, size);
    json_t *scratch = json_array();
    if (text && scratch) {
        rc = anthropic_append_user_text(scratch, text);
        FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
        if (rc != -ENOMEM)
            FUZZ_CHECK((rc == 0) == (text[0] != '\0' && fuzz_utf8_ok(text, strlen(text))));
    }
    json_decref(scratch);
    free(text);

    /* The input as a rate-limit header line: bounded copies, a wait within the cap. */
    struct ratelimit_headers h;
    ratelimit_headers_clear(&h);
    ratelimit_headers_capture(&h, body, size);
    for (int k = 0; k < RATELIMIT__COUNT; k++)
        FUZZ_CHECK(fuzz_terminated(h.limit[k], RATELIMIT_VALUE_MAX) &&
                   fuzz_terminated(h.remaining[k], RATELIMIT_VALUE_MAX) &&
                   fuzz_terminated(h.reset[k], RATELIMIT_VALUE_MAX));
    int64_t wait = ratelimit_wait_ms(&h, 1796007600000LL, 1024, 60000);
    FUZZ_CHECK(wait >= 0 && wait <= 60000);
    char *line = fuzz_cstr(data, size, RATELIMIT_VALUE_MAX * 2);
    if (line)
        FUZZ_CHECK(ratelimit_parse_rfc3339_ms(line) >= -1);
    free(line);

    struct llm_error e;
    memset(&e, 'X', sizeof(e));
    rc = anthropic_parse_error(body, size, &e);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    FUZZ_CHECK(fuzz_terminated(e.type, sizeof(e.type)));
    FUZZ_CHECK(fuzz_terminated(e.message, sizeof(e.message)));
    FUZZ_CHECK(fuzz_terminated(e.request_id, sizeof(e.request_id)));
    /* Cut on a character boundary: what is kept stays valid UTF-8. */
    FUZZ_CHECK(fuzz_utf8_ok(e.type, strlen(e.type)));
    FUZZ_CHECK(fuzz_utf8_ok(e.message, strlen(e.message)));
    FUZZ_CHECK(fuzz_utf8_ok(e.request_id, strlen(e.request_id)));

    free(body);
    return 0;
}
