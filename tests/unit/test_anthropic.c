/*
 * test_anthropic.c — unit tests for the Messages API request builder,
 * response / error-body parsers and history builders (anthropic.h).
 */
#include "agentd/anthropic.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------- */

static json_t *load(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &e);
    ck_assert_msg(j != NULL, "bad test JSON: %s: %s", e.text, s);
    return j;
}

static json_t *one_user_message(const char *text)
{
    json_t *m = json_array();
    ck_assert_int_eq(anthropic_append_user_text(m, text), 0);
    return m;
}

static struct llm_params base_params(void)
{
    struct llm_params p = {.model = "claude-test",
                           .max_tokens = 1024,
                           .temperature = 0.5,
                           .system = NULL,
                           .tools = NULL};
    return p;
}

/* Builds a request and parses it back (the test owns the result). */
static json_t *build_parsed(const struct llm_params *p, const json_t *messages)
{
    char *body = anthropic_build_request(p, messages);
    ck_assert_ptr_nonnull(body);
    json_t *j = load(body);
    free(body);
    return j;
}

static int parse(const char *body, struct llm_response *r)
{
    char err[256] = "";
    int rc = anthropic_parse_response(body, strlen(body), r, err, sizeof(err));
    if (rc == 0)
        ck_assert_str_eq(err, "");
    return rc;
}

static const char *msg_role(const json_t *messages, size_t i)
{
    return json_string_value(json_object_get(json_array_get(messages, i), "role"));
}

static bool utf8_ok(const char *s)
{
    json_t *j = json_string(s); /* jansson rejects invalid UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

/* ---- request building ------------------------------------------------- */

START_TEST(test_build_request_from_prefix_matches_the_full_builder)
{
    struct llm_params p = base_params();
    p.system = "be brief";
    json_t *tools = load("[{\"name\":\"calculator\",\"description\":\"math\","
                         "\"input_schema\":{\"type\":\"object\"}}]");
    p.tools = tools;
    char *prefix = anthropic_request_prefix(&p);
    ck_assert_ptr_nonnull(prefix);
    ck_assert_ptr_nonnull(strstr(prefix, "\"messages\":"));
    json_t *m = one_user_message("first \u00e9 \"quoted\"");
    for (int turn = 0; turn < 3; turn++) {
        char *full = anthropic_build_request(&p, m);
        char *fast = anthropic_build_request_from_prefix(&p, prefix, m);
        ck_assert_ptr_nonnull(full);
        ck_assert_ptr_nonnull(fast);
        ck_assert_str_eq(fast, full);
        free(full);
        free(fast);
        json_t *content = load("[{\"type\":\"text\",\"text\":\"ok\"}]");
        ck_assert_int_eq(anthropic_append_assistant(m, content), 0);
        ck_assert_int_eq(anthropic_append_user_text(m, "next"), 0);
        json_decref(content);
    }
    /* The same checks: an empty history is refused. */
    json_t *empty = json_array();
    errno = 0;
    ck_assert_ptr_null(anthropic_build_request_from_prefix(&p, prefix, empty));
    ck_assert_int_eq(errno, EINVAL);
    json_decref(empty);
    json_decref(m);
    json_decref(tools);
    free(prefix);
}
END_TEST

START_TEST(test_build_request_serializes_every_field_in_order)
{
    json_t *tools = load("[{\"name\":\"calculator\",\"description\":\"Adds.\","
                         "\"input_schema\":{\"type\":\"object\",\"properties\":{}}}]");
    json_t *messages = one_user_message("What is 2+2?");
    struct llm_params p = base_params();
    p.system = "Be brief.";
    p.tools = tools;

    char *body = anthropic_build_request(&p, messages);
    ck_assert_ptr_nonnull(body);
    /* Compact: no pretty-printing whitespace. */
    ck_assert_ptr_null(strchr(body, '\n'));
    ck_assert_ptr_null(strstr(body, "\": "));
    json_t *j = load(body);
    free(body);

    static const char *const order[] = {"model",       "max_tokens", "system",
                                        "temperature", "tools",      "messages"};
    void *it = json_object_iter(j);
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        ck_assert_ptr_nonnull(it);
        ck_assert_str_eq(json_object_iter_key(it), order[i]);
        it = json_object_iter_next(j, it);
    }
    ck_assert_ptr_null(it);

    ck_assert_str_eq(json_string_value(json_object_get(j, "model")), "claude-test");
    ck_assert(json_is_integer(json_object_get(j, "max_tokens")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "max_tokens")), 1024);
    ck_assert_str_eq(json_string_value(json_object_get(j, "system")), "Be brief.");
    ck_assert(json_is_number(json_object_get(j, "temperature")));
    ck_assert(json_number_value(json_object_get(j, "temperature")) == 0.5);
    ck_assert(json_equal(json_object_get(j, "tools"), tools));
    ck_assert(json_equal(json_object_get(j, "messages"), messages));
    ck_assert_str_eq(msg_role(json_object_get(j, "messages"), 0), "user");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "messages"), 0), "content")),
                     "What is 2+2?");

    json_decref(j);
    json_decref(tools);
    json_decref(messages);
}
END_TEST

START_TEST(test_build_request_omits_null_or_empty_system)
{
    json_t *messages = one_user_message("hi");
    struct llm_params p = base_params();

    json_t *j = build_parsed(&p, messages);
    ck_assert_ptr_null(json_object_get(j, "system"));
    json_decref(j);

    p.system = "";
    j = build_parsed(&p, messages);
    ck_assert_ptr_null(json_object_get(j, "system"));
    json_decref(j);
    json_decref(messages);
}
END_TEST

START_TEST(test_build_request_omits_null_or_empty_tools)
{
    json_t *messages = one_user_message("hi");
    json_t *empty = json_array();
    struct llm_params p = base_params();

    json_t *j = build_parsed(&p, messages);
    ck_assert_ptr_null(json_object_get(j, "tools"));
    json_decref(j);

    p.tools = empty;
    j = build_parsed(&p, messages);
    ck_assert_ptr_null(json_object_get(j, "tools"));
    json_decref(j);
    json_decref(empty);
    json_decref(messages);
}
END_TEST

START_TEST(test_build_request_does_not_modify_borrowed_values)
{
    json_t *tools = load("[{\"name\":\"t\",\"input_schema\":{\"type\":\"object\"}}]");
    json_t *messages = one_user_message("hi");
    json_t *tools_before = json_deep_copy(tools);
    json_t *messages_before = json_deep_copy(messages);
    struct llm_params p = base_params();
    p.tools = tools;

    char *body = anthropic_build_request(&p, messages);
    ck_assert_ptr_nonnull(body);
    free(body);
    ck_assert(json_equal(tools, tools_before));
    ck_assert(json_equal(messages, messages_before));
    /* Only our references remain: the builder dropped what it took. */
    ck_assert_int_eq(tools->refcount, 1);
    ck_assert_int_eq(messages->refcount, 1);

    json_decref(tools);
    json_decref(tools_before);
    json_decref(messages);
    json_decref(messages_before);
}
END_TEST

START_TEST(test_build_request_temperature_is_a_number_in_range)
{
    static const double temps[] = {0.0, 0.7, 1.0};
    json_t *messages = one_user_message("hi");
    struct llm_params p = base_params();

    for (size_t i = 0; i < sizeof(temps) / sizeof(temps[0]); i++) {
        p.temperature = temps[i];
        json_t *j = build_parsed(&p, messages);
        json_t *t = json_object_get(j, "temperature");
        ck_assert(json_is_number(t));
        ck_assert(json_number_value(t) == temps[i]);
        json_decref(j);
    }
    json_decref(messages);
}
END_TEST

START_TEST(test_build_request_rejects_invalid_params)
{
    json_t *messages = one_user_message("hi");
    struct llm_params p;
    json_t *not_array = json_object();

    p = base_params();
    p.max_tokens = 0;
    errno = 0;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    ck_assert_int_eq(errno, EINVAL);

    p = base_params();
    p.temperature = 1.5;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    p.temperature = -0.1;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    p.temperature = NAN;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    p.temperature = INFINITY;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));

    p = base_params();
    p.model = NULL;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    p.model = "";
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    p.model = "bad\xff";
    ck_assert_ptr_null(anthropic_build_request(&p, messages));

    p = base_params();
    p.system = "bad\xc3";
    ck_assert_ptr_null(anthropic_build_request(&p, messages));

    p = base_params();
    p.tools = not_array;
    errno = 0;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    ck_assert_int_eq(errno, EINVAL);

    ck_assert_ptr_null(anthropic_build_request(NULL, messages));
    json_decref(not_array);
    json_decref(messages);
}
END_TEST

START_TEST(test_build_request_rejects_malformed_histories)
{
    static const char *const bad[] = {
        "[]",
        "{}",
        "[{\"role\":\"assistant\",\"content\":\"first\"}]",
        "[{\"role\":\"system\",\"content\":\"be nice\"}]",
        "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"system\",\"content\":\"x\"}]",
        "[{\"role\":\"user\"}]",
        "[{\"role\":\"user\",\"content\":42}]",
        "[{\"content\":\"hi\"}]",
        "[\"hi\"]",
    };
    struct llm_params p = base_params();

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *m = load(bad[i]);
        errno = 0;
        ck_assert_msg(anthropic_build_request(&p, m) == NULL, "accepted %s", bad[i]);
        ck_assert_int_eq(errno, EINVAL);
        json_decref(m);
    }
    errno = 0;
    ck_assert_ptr_null(anthropic_build_request(&p, NULL));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_build_request_accepts_history_ending_with_assistant_after_pause_turn)
{
    json_t *messages = one_user_message("search and summarise");
    json_t *content = load("[{\"type\":\"text\",\"text\":\"Searching…\"}]");
    struct llm_params p = base_params();

    ck_assert_int_eq(anthropic_append_assistant(messages, content), 0);
    json_t *j = build_parsed(&p, messages);
    json_t *sent = json_object_get(j, "messages");
    ck_assert_int_eq(json_array_size(sent), 2);
    ck_assert_str_eq(msg_role(sent, 1), "assistant");
    ck_assert(json_equal(json_object_get(json_array_get(sent, 1), "content"), content));

    json_decref(j);
    json_decref(content);
    json_decref(messages);
}
END_TEST

START_TEST(test_build_request_refuses_bodies_over_the_api_limit)
{
    size_t n = ANTHROPIC_MAX_REQUEST_BYTES + 1;
    char *big = malloc(n + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', n);
    big[n] = '\0';
    json_t *messages = one_user_message(big);
    free(big);
    struct llm_params p = base_params();

    errno = 0;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    ck_assert_int_eq(errno, E2BIG);
    json_decref(messages);
}
END_TEST

/* A lower limit (a gateway's) is honoured; one above the API's is not. */
START_TEST(test_build_request_honours_a_lower_request_limit)
{
    char big[2048];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_t *messages = one_user_message(big);
    struct llm_params p = base_params();
    p.max_request_bytes = 1024;
    errno = 0;
    ck_assert_ptr_null(anthropic_build_request(&p, messages));
    ck_assert_int_eq(errno, E2BIG);
    p.max_request_bytes = 4096;
    char *body = anthropic_build_request(&p, messages);
    ck_assert_ptr_nonnull(body);
    free(body);
    json_decref(messages);
}
END_TEST

/* ---- response parsing ------------------------------------------------- */

#define MSG_HEAD                                                                                   \
    "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","

START_TEST(test_parse_response_text_only)
{
    struct llm_response r;
    const char *body = MSG_HEAD "\"content\":[{\"type\":\"text\",\"text\":\"Hello\","
                                "\"citations\":null}],\"stop_reason\":\"end_turn\","
                                "\"stop_sequence\":null,"
                                "\"usage\":{\"input_tokens\":10,\"output_tokens\":3}}";

    ck_assert_int_eq(parse(body, &r), 0);
    ck_assert_str_eq(r.id, "msg_01");
    ck_assert_str_eq(r.model, "claude-x");
    ck_assert_int_eq(r.stop, LLM_STOP_END_TURN);
    ck_assert_str_eq(r.stop_reason, "end_turn");
    ck_assert_str_eq(r.text, "Hello");
    ck_assert_uint_eq(r.n_tool_uses, 0);
    ck_assert_ptr_null(r.tool_uses);
    json_t *want = load("[{\"type\":\"text\",\"text\":\"Hello\"}]");
    ck_assert(json_equal(r.content, want));
    ck_assert_int_eq(r.input_tokens, 10);
    ck_assert_int_eq(r.output_tokens, 3);
    json_decref(want);
    llm_response_clear(&r);
}
END_TEST

START_TEST(test_parse_response_returns_all_tool_uses_in_order)
{
    struct llm_response r;
    const char *body =
        MSG_HEAD "\"content\":["
                 "{\"type\":\"text\",\"text\":\"Let me \"},"
                 "{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"calculator\","
                 "\"input\":{\"expression\":\"2+2\"},\"caller\":\"x\"},"
                 "{\"type\":\"tool_use\",\"id\":\"toolu_B\",\"name\":\"get_weather\","
                 "\"input\":{\"location\":\"Oslo\"}},"
                 "{\"type\":\"text\",\"text\":\"check.\"},"
                 "{\"type\":\"tool_use\",\"id\":\"toolu_C\",\"name\":\"save_note\",\"input\":{}}],"
                 "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}";

    ck_assert_int_eq(parse(body, &r), 0);
    ck_assert_int_eq(r.stop, LLM_STOP_TOOL_USE);
    ck_assert_str_eq(r.text, "Let me check.");
    ck_assert_uint_eq(r.n_tool_uses, 3);
    ck_assert_str_eq(r.tool_uses[0].id, "toolu_A");
    ck_assert_str_eq(r.tool_uses[0].name, "calculator");
    ck_assert_str_eq(json_string_value(json_object_get(r.tool_uses[0].input, "expression")), "2+2");
    ck_assert_str_eq(r.tool_uses[1].id, "toolu_B");
    ck_assert_str_eq(r.tool_uses[1].name, "get_weather");
    ck_assert_str_eq(json_string_value(json_object_get(r.tool_uses[1].input, "location")), "Oslo");
    ck_assert_str_eq(r.tool_uses[2].id, "toolu_C");
    ck_assert_str_eq(r.tool_uses[2].name, "save_note");
    ck_assert(json_is_object(r.tool_uses[2].input));

    /* History keeps exactly the documented keys, in response order. */
    json_t *want = load("[{\"type\":\"text\",\"text\":\"Let me \"},"
                        "{\"type\":\"tool_use\",\"id\":\"toolu_A\",\"name\":\"calculator\","
                        "\"input\":{\"expression\":\"2+2\"}},"
                        "{\"type\":\"tool_use\",\"id\":\"toolu_B\",\"name\":\"get_weather\","
                        "\"input\":{\"location\":\"Oslo\"}},"
                        "{\"type\":\"text\",\"text\":\"check.\"},"
                        "{\"type\":\"tool_use\",\"id\":\"toolu_C\",\"name\":\"save_note\","
                        "\"input\":{}}]");
    ck_assert(json_equal(r.content, want));
    /* Changing a tool input must not rewrite history. */
    ck_assert_ptr_ne(json_object_get(json_array_get(r.content, 1), "input"), r.tool_uses[0].input);
    json_decref(want);
    llm_response_clear(&r);
}
END_TEST

/* A message with n tool_use blocks; ids toolu_0.. unless dup, then all are "toolu_X". */
static char *tool_uses_body(int n, bool dup)
{
    size_t cap = 256 + (size_t)n * 96, at = 0;
    char *b = malloc(cap);
    at += (size_t)snprintf(b + at, cap - at, "{\"type\":\"message\",\"content\":[");
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), dup ? "toolu_X" : "toolu_%d", i);
        at += (size_t)snprintf(b + at, cap - at,
                               "%s{\"type\":\"tool_use\",\"id\":\"%s\",\"name\":\"calculator\","
                               "\"input\":{}}",
                               i ? "," : "", id);
    }
    snprintf(b + at, cap - at, "],\"stop_reason\":\"tool_use\"}");
    return b;
}

START_TEST(test_parse_response_rejects_repeated_ids_and_too_many_tool_uses)
{
    struct llm_response r;
    char err[256] = "";
    char *body = tool_uses_body(2, true);
    ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, err, sizeof(err)), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "repeated"));
    free(body);
    body = tool_uses_body(ANTHROPIC_MAX_TOOL_USES, false);
    ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, err, sizeof(err)), 0);
    ck_assert_uint_eq(r.n_tool_uses, ANTHROPIC_MAX_TOOL_USES);
    llm_response_clear(&r);
    free(body);
    body = tool_uses_body(ANTHROPIC_MAX_TOOL_USES + 1, false);
    ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, err, sizeof(err)), -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "tool_use blocks"));
    free(body);
}
END_TEST

static const struct {
    const char *name;
    enum llm_stop stop;
} stop_cases[] = {
    {"end_turn", LLM_STOP_END_TURN},
    {"tool_use", LLM_STOP_TOOL_USE},
    {"max_tokens", LLM_STOP_MAX_TOKENS},
    {"stop_sequence", LLM_STOP_STOP_SEQUENCE},
    {"pause_turn", LLM_STOP_PAUSE_TURN},
    {"refusal", LLM_STOP_REFUSAL},
    {"model_context_window_exceeded", LLM_STOP_CONTEXT_WINDOW_EXCEEDED},
};
#define N_STOP_CASES ((int)(sizeof(stop_cases) / sizeof(stop_cases[0])))

START_TEST(test_parse_response_maps_each_stop_reason)
{
    char body[512];
    struct llm_response r;

    snprintf(body, sizeof(body),
             MSG_HEAD "\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"stop_reason\":\"%s\"}",
             stop_cases[_i].name);
    ck_assert_int_eq(parse(body, &r), 0);
    ck_assert_int_eq(r.stop, stop_cases[_i].stop);
    ck_assert_str_eq(r.stop_reason, stop_cases[_i].name);
    ck_assert_str_eq(llm_stop_name(r.stop), stop_cases[_i].name);
    llm_response_clear(&r);
}
END_TEST

START_TEST(test_parse_response_unknown_stop_reason_is_unknown_not_an_error)
{
    struct llm_response r;

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[],\"stop_reason\":\"new_reason_2027\"}", &r), 0);
    ck_assert_int_eq(r.stop, LLM_STOP_UNKNOWN);
    ck_assert_str_eq(r.stop_reason, "new_reason_2027");
    llm_response_clear(&r);

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[],\"stop_reason\":null}", &r), 0);
    ck_assert_int_eq(r.stop, LLM_STOP_UNKNOWN);
    ck_assert_str_eq(r.stop_reason, "");
    llm_response_clear(&r);

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[]}", &r), 0);
    ck_assert_int_eq(r.stop, LLM_STOP_UNKNOWN);
    ck_assert_str_eq(r.stop_reason, "");
    llm_response_clear(&r);
}
END_TEST

START_TEST(test_parse_response_drops_unknown_block_types)
{
    struct llm_response r;
    const char *body =
        MSG_HEAD "\"content\":["
                 "{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"s\"},"
                 "{\"type\":\"text\",\"text\":\"A\"},"
                 "{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\","
                 "\"input\":{}},"
                 "{\"type\":\"hologram\"},"
                 "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"calculator\","
                 "\"input\":{\"expression\":\"1\"}}],"
                 "\"stop_reason\":\"tool_use\"}";

    ck_assert_int_eq(parse(body, &r), 0);
    json_t *want = load("[{\"type\":\"text\",\"text\":\"A\"},"
                        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"calculator\","
                        "\"input\":{\"expression\":\"1\"}}]");
    ck_assert(json_equal(r.content, want));
    ck_assert_uint_eq(r.n_tool_uses, 1);
    ck_assert_str_eq(r.tool_uses[0].id, "toolu_1");
    ck_assert_str_eq(r.text, "A");
    json_decref(want);
    llm_response_clear(&r);
}
END_TEST

START_TEST(test_parse_response_drops_empty_text_blocks_from_history)
{
    struct llm_response r;

    ck_assert_int_eq(parse(MSG_HEAD
                           "\"content\":[{\"type\":\"text\",\"text\":\"\"}],\"stop_reason\":"
                           "\"end_turn\"}",
                           &r),
                     0);
    ck_assert_int_eq(json_array_size(r.content), 0);
    ck_assert_str_eq(r.text, "");
    /* So the engine cannot append an empty assistant message by mistake. */
    json_t *messages = one_user_message("hi");
    ck_assert_int_eq(anthropic_append_assistant(messages, r.content), -EINVAL);
    ck_assert_int_eq(json_array_size(messages), 1);
    json_decref(messages);
    llm_response_clear(&r);
}
END_TEST

START_TEST(test_parse_response_sums_usage_with_cache_tokens)
{
    struct llm_response r;

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[],\"stop_reason\":\"end_turn\","
                                    "\"usage\":{\"input_tokens\":100,\"output_tokens\":7,"
                                    "\"cache_creation_input_tokens\":20,"
                                    "\"cache_read_input_tokens\":3000}}",
                           &r),
                     0);
    ck_assert_int_eq(r.input_tokens, 3120);
    ck_assert_int_eq(r.output_tokens, 7);
    llm_response_clear(&r);

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[],\"stop_reason\":\"end_turn\","
                                    "\"usage\":{\"input_tokens\":5,\"output_tokens\":-4,"
                                    "\"cache_creation_input_tokens\":null,"
                                    "\"cache_read_input_tokens\":\"9\"}}",
                           &r),
                     0);
    ck_assert_int_eq(r.input_tokens, 5);
    ck_assert_int_eq(r.output_tokens, 0);
    llm_response_clear(&r);

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[],\"stop_reason\":\"end_turn\","
                                    "\"usage\":{\"input_tokens\":9223372036854775807,"
                                    "\"cache_read_input_tokens\":9223372036854775807}}",
                           &r),
                     0);
    ck_assert_int_eq(r.input_tokens, INT64_MAX);
    llm_response_clear(&r);

    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[],\"stop_reason\":\"end_turn\"}", &r), 0);
    ck_assert_int_eq(r.input_tokens, 0);
    ck_assert_int_eq(r.output_tokens, 0);
    llm_response_clear(&r);
}
END_TEST

static const char *const malformed_bodies[] = {
    "",
    "not json",
    "{\"type\":\"message\",\"content\":[]} trailing",
    "[1,2,3]",
    "\"message\"",
    "{\"content\":[]}",
    "{\"type\":\"error\",\"content\":[]}",
    "{\"type\":\"message\"}",
    "{\"type\":\"message\",\"content\":{}}",
    "{\"type\":\"message\",\"content\":\"hello\"}",
    "{\"type\":\"message\",\"content\":[\"hello\"]}",
    "{\"type\":\"message\",\"content\":[{\"text\":\"no type\"}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":7}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"text\"}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":5}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"name\":\"n\",\"input\":{}}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"\",\"name\":\"n\","
    "\"input\":{}}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a b\",\"name\":\"n\","
    "\"input\":{}}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"input\":{}}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":3,"
    "\"input\":{}}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"n\"}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"n\","
    "\"input\":[]}]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"n\","
    "\"input\":\"{}\"}]}",
    "{\"type\":\"message\",\"content\":[],\"stop_reason\":1}",
    "{\"type\":\"message\",\"type\":\"message\",\"content\":[]}",
    "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"a\\u0000b\"}]}",
};
#define N_MALFORMED ((int)(sizeof(malformed_bodies) / sizeof(malformed_bodies[0])))

START_TEST(test_parse_response_rejects_malformed_body)
{
    struct llm_response r, before;
    char err[256] = "";

    memset(&r, 0x5a, sizeof(r));
    before = r;
    const char *body = malformed_bodies[_i];
    ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, err, sizeof(err)), -EBADMSG);
    ck_assert_msg(err[0] != '\0', "no reason for %s", body);
    ck_assert_msg(memcmp(&r, &before, sizeof(r)) == 0, "ret written on failure: %s", body);
    /* A NULL err buffer is allowed. */
    ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, NULL, 0), -EBADMSG);
}
END_TEST

START_TEST(test_parse_response_honours_len_not_nul)
{
    struct llm_response r;
    const char *body = MSG_HEAD "\"content\":[],\"stop_reason\":\"end_turn\"}GARBAGE";
    size_t len = strlen(body) - strlen("GARBAGE");

    ck_assert_int_eq(anthropic_parse_response(body, len, &r, NULL, 0), 0);
    ck_assert_int_eq(r.stop, LLM_STOP_END_TURN);
    llm_response_clear(&r);
    ck_assert_int_eq(anthropic_parse_response(body, len - 1, &r, NULL, 0), -EBADMSG);
}
END_TEST

START_TEST(test_stop_name_covers_every_value)
{
    for (int i = 0; i < N_STOP_CASES; i++)
        ck_assert_str_eq(llm_stop_name(stop_cases[i].stop), stop_cases[i].name);
    ck_assert_str_eq(llm_stop_name(LLM_STOP_UNKNOWN), "unknown");
    ck_assert_str_eq(llm_stop_name((enum llm_stop)99), "unknown");
    ck_assert_str_eq(llm_stop_name((enum llm_stop) - 1), "unknown");
}
END_TEST

START_TEST(test_response_clear_accepts_null_and_cleared)
{
    struct llm_response r;

    llm_response_clear(NULL);
    ck_assert_int_eq(parse(MSG_HEAD "\"content\":[{\"type\":\"tool_use\",\"id\":\"t\","
                                    "\"name\":\"n\",\"input\":{}}]}",
                           &r),
                     0);
    llm_response_clear(&r);
    ck_assert_ptr_null(r.content);
    ck_assert_ptr_null(r.tool_uses);
    ck_assert_uint_eq(r.n_tool_uses, 0);
    llm_response_clear(&r);
}
END_TEST

/* ---- error bodies ----------------------------------------------------- */

static int parse_err(const char *body, struct llm_error *e)
{
    return anthropic_parse_error(body, strlen(body), e);
}

START_TEST(test_parse_error_full_body)
{
    struct llm_error e;

    ck_assert_int_eq(parse_err("{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                               "\"message\":\"Slow down\"},\"request_id\":\"req_011\"}",
                               &e),
                     0);
    ck_assert_str_eq(e.type, "rate_limit_error");
    ck_assert_str_eq(e.message, "Slow down");
    ck_assert_str_eq(e.request_id, "req_011");
}
END_TEST

START_TEST(test_parse_error_without_request_id_still_matches)
{
    struct llm_error e;

    ck_assert_int_eq(parse_err("{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                               "\"message\":\"Overloaded\"}}",
                               &e),
                     0);
    ck_assert_str_eq(e.type, "overloaded_error");
    ck_assert_str_eq(e.message, "Overloaded");
    ck_assert_str_eq(e.request_id, "");
}
END_TEST

START_TEST(test_parse_error_fills_what_it_can_on_other_shapes)
{
    struct llm_error e;

    memset(&e, 'x', sizeof(e));
    ck_assert_int_eq(parse_err("{\"type\":\"error\",\"error\":{\"type\":\"api_error\"},"
                               "\"request_id\":\"req_2\"}",
                               &e),
                     -EBADMSG);
    ck_assert_str_eq(e.type, "api_error");
    ck_assert_str_eq(e.message, "");
    ck_assert_str_eq(e.request_id, "req_2");

    ck_assert_int_eq(parse_err("{\"error\":{\"type\":\"api_error\",\"message\":\"m\"}}", &e),
                     -EBADMSG);
    ck_assert_str_eq(e.type, "api_error");
    ck_assert_str_eq(e.message, "m");

    ck_assert_int_eq(parse_err("{\"type\":\"error\",\"error\":\"boom\"}", &e), -EBADMSG);
    ck_assert_str_eq(e.type, "");
    ck_assert_str_eq(e.message, "");

    memset(&e, 'x', sizeof(e));
    ck_assert_int_eq(parse_err("<html>502 Bad Gateway</html>", &e), -EBADMSG);
    ck_assert_str_eq(e.type, "");
    ck_assert_str_eq(e.message, "");
    ck_assert_str_eq(e.request_id, "");

    memset(&e, 'x', sizeof(e));
    ck_assert_int_eq(anthropic_parse_error(NULL, 0, &e), -EBADMSG);
    ck_assert_str_eq(e.message, "");
    ck_assert_int_eq(anthropic_parse_error("{}", 2, NULL), -EINVAL);
}
END_TEST

/* Builds an error body whose message is `reps` copies of `unit`. */
static char *error_body_with_message(const char *unit, size_t reps)
{
    size_t ulen = strlen(unit);
    char *msg = malloc(ulen * reps + 1);
    ck_assert_ptr_nonnull(msg);
    for (size_t i = 0; i < reps; i++)
        memcpy(msg + i * ulen, unit, ulen);
    msg[ulen * reps] = '\0';
    json_t *j = json_pack("{s:s, s:{s:s, s:s}, s:s}", "type", "error", "error", "type",
                          "invalid_request_error", "message", msg, "request_id", "req_3");
    ck_assert_ptr_nonnull(j);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    free(msg);
    return body;
}

START_TEST(test_parse_error_truncates_overlong_message_on_utf8_boundary)
{
    /* 1-, 2-, 3- and 4-byte characters: each cut must land between characters. */
    static const char *const units[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    struct llm_error e;

    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        size_t ulen = strlen(units[u]);
        char *body = error_body_with_message(units[u], 1000);

        ck_assert_int_eq(parse_err(body, &e), 0);
        size_t n = strlen(e.message);
        ck_assert_uint_le(n, sizeof(e.message) - 1);
        ck_assert_uint_gt(n, sizeof(e.message) - 1 - ulen);
        ck_assert_uint_eq(n % ulen, 0);
        ck_assert(utf8_ok(e.message));
        ck_assert_int_eq(memcmp(e.message, units[u], ulen), 0);
        ck_assert_str_eq(e.request_id, "req_3");
        free(body);
    }
}
END_TEST

START_TEST(test_parse_error_truncates_overlong_type_and_request_id)
{
    char type[200], rid[300], body[700];
    struct llm_error e;

    memset(type, 't', sizeof(type) - 1);
    type[sizeof(type) - 1] = '\0';
    memset(rid, 'r', sizeof(rid) - 1);
    rid[sizeof(rid) - 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"m\"},"
             "\"request_id\":\"%s\"}",
             type, rid);
    ck_assert_int_eq(parse_err(body, &e), 0);
    ck_assert_uint_eq(strlen(e.type), sizeof(e.type) - 1);
    ck_assert_uint_eq(strlen(e.request_id), sizeof(e.request_id) - 1);
}
END_TEST

/* ---- history builders ------------------------------------------------- */

START_TEST(test_append_user_text_appends_and_validates)
{
    json_t *m = json_array();

    ck_assert_int_eq(anthropic_append_user_text(m, "héllo"), 0);
    ck_assert_int_eq(json_array_size(m), 1);
    ck_assert_str_eq(msg_role(m, 0), "user");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "content")), "héllo");

    ck_assert_int_eq(anthropic_append_user_text(m, ""), -EINVAL);
    ck_assert_int_eq(anthropic_append_user_text(m, NULL), -EINVAL);
    ck_assert_int_eq(anthropic_append_user_text(m, "bad \xc0\xaf overlong"), -EINVAL);
    ck_assert_int_eq(anthropic_append_user_text(m, "surrogate \xed\xa0\x80"), -EINVAL);
    ck_assert_int_eq(anthropic_append_user_text(m, "cut \xe2\x82"), -EINVAL);
    ck_assert_int_eq(json_array_size(m), 1);

    json_t *obj = json_object();
    ck_assert_int_eq(anthropic_append_user_text(obj, "x"), -EINVAL);
    ck_assert_int_eq(anthropic_append_user_text(NULL, "x"), -EINVAL);
    json_decref(obj);
    json_decref(m);
}
END_TEST

START_TEST(test_append_assistant_deep_copies_content)
{
    json_t *m = one_user_message("hi");
    json_t *content = load("[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"calculator\","
                           "\"input\":{\"expression\":\"1+1\"}}]");

    ck_assert_int_eq(anthropic_append_assistant(m, content), 0);
    ck_assert_int_eq(json_array_size(m), 2);
    ck_assert_str_eq(msg_role(m, 1), "assistant");
    json_t *stored = json_object_get(json_array_get(m, 1), "content");
    ck_assert(json_equal(stored, content));
    ck_assert_ptr_ne(stored, content);

    json_object_set_new(json_array_get(content, 0), "id", json_string("changed"));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(stored, 0), "id")), "t1");
    json_decref(content);
    json_decref(m);
}
END_TEST

START_TEST(test_append_assistant_rejects_empty_or_non_array_content)
{
    json_t *m = one_user_message("hi");
    json_t *empty = json_array();
    json_t *str = json_string("text");
    json_t *bad_block = load("[\"text\"]");

    ck_assert_int_eq(anthropic_append_assistant(m, empty), -EINVAL);
    ck_assert_int_eq(anthropic_append_assistant(m, str), -EINVAL);
    ck_assert_int_eq(anthropic_append_assistant(m, NULL), -EINVAL);
    ck_assert_int_eq(anthropic_append_assistant(m, bad_block), -EINVAL);
    ck_assert_int_eq(json_array_size(m), 1);
    json_decref(bad_block);
    json_decref(str);
    json_decref(empty);
    json_decref(m);
}
END_TEST

/* An answer the parser rejects (here: a repeated tool_use id) may still have been billed. */
START_TEST(test_parse_usage_of_a_rejected_answer)
{
    const char *body =
        "{\"type\":\"message\",\"content\":["
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"calculator\",\"input\":{}},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"calculator\",\"input\":{}}],"
        "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":100,"
        "\"cache_read_input_tokens\":20,\"output_tokens\":7}}";
    struct llm_response r;
    ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, NULL, 0), -EBADMSG);
    int64_t in = -1, out = -1;
    ck_assert_int_eq(anthropic_parse_usage(body, strlen(body), &in, &out), 0);
    ck_assert_int_eq(in, 120);
    ck_assert_int_eq(out, 7);
    in = out = -1;
    ck_assert_int_eq(anthropic_parse_usage("{\"type\":\"mess", 13, &in, &out), -EBADMSG);
    ck_assert_int_eq(anthropic_parse_usage("{\"usage\":3}", 11, &in, &out), -EBADMSG);
    ck_assert_int_eq(anthropic_parse_usage(NULL, 0, &in, &out), -EBADMSG);
    ck_assert_int_eq(in, -1);
}
END_TEST

START_TEST(test_append_tool_results_one_message_blocks_in_order)
{
    json_t *m = one_user_message("hi");
    const struct llm_tool_result results[] = {
        {.tool_use_id = "toolu_B", .text = "4", .is_error = false},
        {.tool_use_id = "toolu_A", .text = "division by zero", .is_error = true},
        {.tool_use_id = "toolu_C", .text = "", .is_error = false},
    };

    ck_assert_int_eq(anthropic_append_tool_results(m, results, 3), 0);
    ck_assert_int_eq(json_array_size(m), 2);
    ck_assert_str_eq(msg_role(m, 1), "user");
    json_t *got = json_object_get(json_array_get(m, 1), "content");
    json_t *want = load("[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_B\",\"content\":\"4\"},"
                        "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_A\","
                        "\"content\":\"division by zero\",\"is_error\":true},"
                        "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_C\",\"content\":\"\"}]");
    ck_assert(json_equal(got, want));
    /* is_error is absent, not false, on successful results. */
    ck_assert_ptr_null(json_object_get(json_array_get(got, 0), "is_error"));
    ck_assert_ptr_null(json_object_get(json_array_get(got, 2), "is_error"));
    json_decref(want);
    json_decref(m);
}
END_TEST

START_TEST(test_append_tool_results_rejects_bad_input_and_leaves_history)
{
    json_t *m = one_user_message("hi");
    const struct llm_tool_result ok = {.tool_use_id = "t1", .text = "fine"};
    const struct llm_tool_result bad[][2] = {
        {ok, {.tool_use_id = "t1", .text = "dup"}},
        {ok, {.tool_use_id = "", .text = "x"}},
        {ok, {.tool_use_id = NULL, .text = "x"}},
        {ok, {.tool_use_id = "has space", .text = "x"}},
        {ok, {.tool_use_id = "t2", .text = NULL}},
        {ok, {.tool_use_id = "t2", .text = "bad \xff"}},
        {ok, {.tool_use_id = "t2", .text = "", .is_error = true}},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(anthropic_append_tool_results(m, bad[i], 2) == -EINVAL, "case %zu", i);
    ck_assert_int_eq(anthropic_append_tool_results(m, &ok, 0), -EINVAL);
    ck_assert_int_eq(anthropic_append_tool_results(m, NULL, 1), -EINVAL);
    ck_assert_int_eq(anthropic_append_tool_results(NULL, &ok, 1), -EINVAL);
    ck_assert_int_eq(json_array_size(m), 1);

    char long_id[ANTHROPIC_MAX_ID_BYTES + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    struct llm_tool_result too_long = {.tool_use_id = long_id, .text = "x"};
    ck_assert_int_eq(anthropic_append_tool_results(m, &too_long, 1), -EINVAL);
    long_id[ANTHROPIC_MAX_ID_BYTES] = '\0';
    ck_assert_int_eq(anthropic_append_tool_results(m, &too_long, 1), 0);
    json_decref(m);
}
END_TEST

/* The whole tool round trip: response → history → next request. */
START_TEST(test_tool_round_trip_builds_a_valid_second_turn)
{
    struct llm_response r;
    json_t *m = one_user_message("2+2 and weather in Oslo?");
    struct llm_params p = base_params();

    ck_assert_int_eq(parse(MSG_HEAD
                           "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":"
                           "\"calculator\",\"input\":{\"expression\":\"2+2\"}},"
                           "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"get_weather\","
                           "\"input\":{\"location\":\"Oslo\"}}],\"stop_reason\":\"tool_use\"}",
                           &r),
                     0);
    ck_assert_int_eq(anthropic_append_assistant(m, r.content), 0);
    struct llm_tool_result results[2] = {
        {.tool_use_id = r.tool_uses[0].id, .text = "4"},
        {.tool_use_id = r.tool_uses[1].id, .text = "weather service down", .is_error = true},
    };
    ck_assert_int_eq(anthropic_append_tool_results(m, results, 2), 0);

    json_t *j = build_parsed(&p, m);
    json_t *sent = json_object_get(j, "messages");
    ck_assert_int_eq(json_array_size(sent), 3);
    ck_assert_str_eq(msg_role(sent, 0), "user");
    ck_assert_str_eq(msg_role(sent, 1), "assistant");
    ck_assert_str_eq(msg_role(sent, 2), "user");
    json_t *assistant = json_object_get(json_array_get(sent, 1), "content");
    json_t *user = json_object_get(json_array_get(sent, 2), "content");
    for (size_t i = 0; i < 2; i++) {
        json_t *use = json_array_get(assistant, i);
        json_t *res = json_array_get(user, i);
        ck_assert_str_eq(json_string_value(json_object_get(use, "type")), "tool_use");
        ck_assert_str_eq(json_string_value(json_object_get(res, "type")), "tool_result");
        ck_assert_str_eq(json_string_value(json_object_get(res, "tool_use_id")),
                         json_string_value(json_object_get(use, "id")));
    }
    json_decref(j);
    json_decref(m);
    llm_response_clear(&r);
}
END_TEST

/* ---- prompt caching ---------------------------------------------------- */

static int count_breakpoints(const json_t *node)
{
    int n = 0;
    if (json_is_object(node)) {
        const char *k;
        json_t *v;
        if (json_object_get(node, "cache_control"))
            n++;
        json_object_foreach((json_t *)node, k, v) n += count_breakpoints(v);
    } else if (json_is_array(node)) {
        size_t i;
        json_t *v;
        json_array_foreach(node, i, v) n += count_breakpoints(v);
    }
    return n;
}

static void add_assistant(json_t *m, const char *content)
{
    json_t *c = load(content);
    ck_assert_int_eq(anthropic_append_assistant(m, c), 0);
    json_decref(c);
}

static bool is_ephemeral(const json_t *block)
{
    const char *t =
        json_string_value(json_object_get(json_object_get(block, "cache_control"), "type"));
    return t && strcmp(t, "ephemeral") == 0;
}

START_TEST(test_prompt_cache_marks_last_tool_system_and_last_two_user_messages)
{
    json_t *tools = load("[{\"name\":\"a\",\"input_schema\":{\"type\":\"object\"}},"
                         "{\"name\":\"b\",\"input_schema\":{\"type\":\"object\"}}]");
    struct llm_params p = base_params();
    p.system = "Be brief.";
    p.tools = tools;
    p.prompt_cache = true;
    json_t *m = one_user_message("first question");
    add_assistant(m, "[{\"type\":\"text\",\"text\":\"x\"}]");
    ck_assert_int_eq(anthropic_append_user_text(m, "second question"), 0);
    add_assistant(m, "[{\"type\":\"text\",\"text\":\"y\"}]");
    ck_assert_int_eq(anthropic_append_user_text(m, "third question"), 0);
    char *before = json_dumps(m, JSON_COMPACT);

    json_t *body = build_parsed(&p, m);
    ck_assert_int_eq(count_breakpoints(body), ANTHROPIC_CACHE_BREAKPOINTS);
    json_t *bt = json_object_get(body, "tools");
    ck_assert(!json_object_get(json_array_get(bt, 0), "cache_control"));
    ck_assert(is_ephemeral(json_array_get(bt, 1)));
    json_t *sys = json_object_get(body, "system");
    ck_assert(json_is_array(sys));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(sys, 0), "text")),
                     "Be brief.");
    ck_assert(is_ephemeral(json_array_get(sys, 0)));
    json_t *bm = json_object_get(body, "messages");
    /* The first user message stays a plain string: only the last two carry breakpoints. */
    ck_assert(json_is_string(json_object_get(json_array_get(bm, 0), "content")));
    for (size_t i = 2; i <= 4; i += 2) {
        json_t *c = json_object_get(json_array_get(bm, i), "content");
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(c, 0), "type")), "text");
        ck_assert(is_ephemeral(json_array_get(c, 0)));
    }
    /* The history and the shared tools are untouched. */
    char *after = json_dumps(m, JSON_COMPACT);
    ck_assert_str_eq(before, after);
    ck_assert(!json_object_get(json_array_get(tools, 1), "cache_control"));
    free(before);
    free(after);
    json_decref(body);
    json_decref(m);
    json_decref(tools);
}
END_TEST

START_TEST(test_prompt_cache_marks_the_last_tool_result_block)
{
    struct llm_params p = base_params();
    p.prompt_cache = true;
    json_t *m = one_user_message("weather?");
    add_assistant(m, "[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"w\",\"input\":{}},"
                     "{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"w\",\"input\":{}}]");
    const struct llm_tool_result r[] = {{.tool_use_id = "t1", .text = "a"},
                                        {.tool_use_id = "t2", .text = "b"}};
    ck_assert_int_eq(anthropic_append_tool_results(m, r, 2), 0);
    json_t *body = build_parsed(&p, m);
    /* No system, no tools: the two user messages only. */
    ck_assert_int_eq(count_breakpoints(body), 2);
    json_t *c = json_object_get(json_array_get(json_object_get(body, "messages"), 2), "content");
    ck_assert(!json_object_get(json_array_get(c, 0), "cache_control"));
    ck_assert(is_ephemeral(json_array_get(c, 1)));
    json_decref(body);
    json_decref(m);
}
END_TEST

START_TEST(test_prompt_cache_off_sends_no_cache_control_and_prefix_matches)
{
    json_t *tools = load("[{\"name\":\"a\",\"input_schema\":{\"type\":\"object\"}}]");
    struct llm_params p = base_params();
    p.system = "s";
    p.tools = tools;
    json_t *m = one_user_message("hi");
    json_t *body = build_parsed(&p, m);
    ck_assert_int_eq(count_breakpoints(body), 0);
    json_decref(body);
    p.prompt_cache = true;
    char *prefix = anthropic_request_prefix(&p);
    char *full = anthropic_build_request(&p, m);
    char *fast = anthropic_build_request_from_prefix(&p, prefix, m);
    ck_assert_str_eq(full, fast);
    free(prefix);
    free(full);
    free(fast);
    json_decref(m);
    json_decref(tools);
}
END_TEST

START_TEST(test_parse_usage_detail_keeps_the_cache_counts_apart)
{
    struct llm_usage u;
    const char *body = "{\"usage\":{\"input_tokens\":100,\"output_tokens\":7,"
                       "\"cache_creation_input_tokens\":20,\"cache_read_input_tokens\":3000}}";
    ck_assert_int_eq(anthropic_parse_usage_detail(body, strlen(body), &u), 0);
    ck_assert_int_eq(u.input_tokens, 3120);
    ck_assert_int_eq(u.cache_creation_tokens, 20);
    ck_assert_int_eq(u.cache_read_tokens, 3000);
    ck_assert_int_eq(u.output_tokens, 7);
    struct llm_response r;
    const char *msg = "{\"type\":\"message\",\"content\":[],\"stop_reason\":\"end_turn\","
                      "\"usage\":{\"input_tokens\":1,\"output_tokens\":2,"
                      "\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":4}}";
    ck_assert_int_eq(parse(msg, &r), 0);
    ck_assert_int_eq(r.input_tokens, 8);
    ck_assert_int_eq(r.cache_creation_tokens, 3);
    ck_assert_int_eq(r.cache_read_tokens, 4);
    llm_response_clear(&r);
}
END_TEST

static Suite *anthropic_suite(void)
{
    Suite *s = suite_create("anthropic");
    TCase *tc;

    tc = tcase_create("build_request");
    /* Builds bodies of tens of MB: Check's 4 s default is tight on a loaded 2-core machine. */
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_build_request_serializes_every_field_in_order);
    tcase_add_test(tc, test_build_request_from_prefix_matches_the_full_builder);
    tcase_add_test(tc, test_build_request_omits_null_or_empty_system);
    tcase_add_test(tc, test_build_request_omits_null_or_empty_tools);
    tcase_add_test(tc, test_build_request_does_not_modify_borrowed_values);
    tcase_add_test(tc, test_build_request_temperature_is_a_number_in_range);
    tcase_add_test(tc, test_build_request_rejects_invalid_params);
    tcase_add_test(tc, test_build_request_rejects_malformed_histories);
    tcase_add_test(tc, test_build_request_accepts_history_ending_with_assistant_after_pause_turn);
    tcase_add_test(tc, test_build_request_refuses_bodies_over_the_api_limit);
    tcase_add_test(tc, test_build_request_honours_a_lower_request_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("parse_response");
    tcase_add_test(tc, test_parse_response_text_only);
    tcase_add_test(tc, test_parse_response_returns_all_tool_uses_in_order);
    tcase_add_test(tc, test_parse_response_rejects_repeated_ids_and_too_many_tool_uses);
    tcase_add_loop_test(tc, test_parse_response_maps_each_stop_reason, 0, N_STOP_CASES);
    tcase_add_test(tc, test_parse_response_unknown_stop_reason_is_unknown_not_an_error);
    tcase_add_test(tc, test_parse_response_drops_unknown_block_types);
    tcase_add_test(tc, test_parse_response_drops_empty_text_blocks_from_history);
    tcase_add_test(tc, test_parse_response_sums_usage_with_cache_tokens);
    tcase_add_loop_test(tc, test_parse_response_rejects_malformed_body, 0, N_MALFORMED);
    tcase_add_test(tc, test_parse_response_honours_len_not_nul);
    tcase_add_test(tc, test_stop_name_covers_every_value);
    tcase_add_test(tc, test_response_clear_accepts_null_and_cleared);
    suite_add_tcase(s, tc);

    tc = tcase_create("parse_error");
    tcase_add_test(tc, test_parse_error_full_body);
    tcase_add_test(tc, test_parse_error_without_request_id_still_matches);
    tcase_add_test(tc, test_parse_error_fills_what_it_can_on_other_shapes);
    tcase_add_test(tc, test_parse_error_truncates_overlong_message_on_utf8_boundary);
    tcase_add_test(tc, test_parse_error_truncates_overlong_type_and_request_id);
    suite_add_tcase(s, tc);

    tc = tcase_create("history");
    tcase_add_test(tc, test_append_user_text_appends_and_validates);
    tcase_add_test(tc, test_append_assistant_deep_copies_content);
    tcase_add_test(tc, test_append_assistant_rejects_empty_or_non_array_content);
    tcase_add_test(tc, test_parse_usage_of_a_rejected_answer);
    tcase_add_test(tc, test_append_tool_results_one_message_blocks_in_order);
    tcase_add_test(tc, test_append_tool_results_rejects_bad_input_and_leaves_history);
    tcase_add_test(tc, test_tool_round_trip_builds_a_valid_second_turn);
    tcase_add_test(tc, test_prompt_cache_marks_last_tool_system_and_last_two_user_messages);
    tcase_add_test(tc, test_prompt_cache_marks_the_last_tool_result_block);
    tcase_add_test(tc, test_prompt_cache_off_sends_no_cache_control_and_prefix_matches);
    tcase_add_test(tc, test_parse_usage_detail_keeps_the_cache_counts_apart);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(anthropic_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
