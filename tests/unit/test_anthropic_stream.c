/*
 * test_anthropic_stream.c — the SSE parser (sse.h) and the streamed Messages
 * answer put back together (anthropic_stream.h): every split of the bytes
 * gives the same events and the same message, which parses like the
 * non-streaming answer; errors, truncation and the byte caps.
 */
#include "agentd/anthropic_stream.h"
#include "agentd/sse.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the SSE parser ---------------------------------------------------------------------- */

struct got {
    char buf[4096];
    int n;
};

static int collect(void *arg, const char *event, const char *data, size_t len)
{
    struct got *g = arg;
    ck_assert_uint_eq(strlen(data), len);
    size_t used = strlen(g->buf);
    snprintf(g->buf + used, sizeof(g->buf) - used, "[%s|%s]", event, data);
    g->n++;
    return 0;
}

/* Feeds s in pieces of `step` bytes; returns what came out. */
static void feed_steps(const char *s, size_t step, struct got *g)
{
    struct sse_parser p;
    sse_parser_init(&p, 1024);
    memset(g, 0, sizeof(*g));
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i += step)
        ck_assert_int_eq(sse_parser_feed(&p, s + i, len - i < step ? len - i : step, collect, g),
                         0);
    sse_parser_clear(&p);
}

START_TEST(test_sse_events_line_ends_and_comments)
{
    const char *s = "\xEF\xBB\xBF: comment\r\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\n"
                    "data: no name\n\n"
                    "event: b\rdata\r\r"
                    "event: only-a-name\n\n"
                    "id: 7\nretry: 10\nfoo: bar\ndata:  two spaces\n\n"
                    "data: unterminated";
    const char *want = "[a|1\n2][message|no name][b|][message| two spaces]";
    for (size_t step = 1; step <= strlen(s); step++) {
        struct got g;
        feed_steps(s, step, &g);
        ck_assert_msg(strcmp(g.buf, want) == 0, "step %zu: %s", step, g.buf);
        ck_assert_int_eq(g.n, 4);
    }
}
END_TEST

START_TEST(test_sse_bounded)
{
    struct sse_parser p;
    sse_parser_init(&p, 8);
    struct got g = {0};
    ck_assert_int_eq(sse_parser_feed(&p, "data: 12", 8, collect, &g), 0);
    ck_assert_int_eq(sse_parser_feed(&p, "3", 1, collect, &g), -E2BIG);
    ck_assert_int_eq(sse_parser_feed(&p, "\n\n", 2, collect, &g), -EINVAL);
    sse_parser_reset(&p);
    /* Two data lines of 4 join to 9 bytes with the '\n': over the cap of 8. */
    ck_assert_int_eq(sse_parser_feed(&p, "data:1234\ndata:5678\n", 20, collect, &g), -E2BIG);
    sse_parser_reset(&p);
    ck_assert_int_eq(sse_parser_feed(&p, "data:ok\n\n", 9, collect, &g), 0);
    ck_assert_str_eq(g.buf, "[message|ok]");
    sse_parser_clear(&p);
}
END_TEST

static int stop_at_second(void *arg, const char *event, const char *data, size_t len)
{
    (void)event, (void)data, (void)len;
    return ++*(int *)arg == 2 ? -ECANCELED : 0;
}

START_TEST(test_sse_callback_error_stops)
{
    struct sse_parser p;
    sse_parser_init(&p, 64);
    int n = 0;
    ck_assert_int_eq(sse_parser_feed(&p, "data:a\n\ndata:b\n\ndata:c\n\n", 24, stop_at_second, &n),
                     -ECANCELED);
    ck_assert_int_eq(n, 2);
    sse_parser_clear(&p);
}
END_TEST

/* ---- the streamed answer ----------------------------------------------------------------- */

/* A streamed answer as the API sends it: text, then a tool_use whose input comes in pieces. */
static const char *const k_stream =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-test\",\"content\":[],\"stop_reason\":null,"
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: ping\ndata: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Let me \"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"compute \\u00e9.\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"toolu_1\",\"name\":\"calculator\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"expression\\\": \\\"2\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"+2\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":40}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/* The same answer, not streamed. */
static const char *const k_message =
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-test\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Let me compute \\u00e9.\"},{\"type\":\"tool_use\","
    "\"id\":\"toolu_1\",\"name\":\"calculator\",\"input\":{\"expression\":\"2+2\"}}],"
    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
    "\"output_tokens\":40}}";

static int collect_text(void *arg, size_t index, const char *text, size_t len)
{
    char *buf = arg;
    ck_assert_uint_eq(index, 0);
    ck_assert_uint_eq(strlen(text), len);
    strcat(buf, text);
    strcat(buf, "|");
    return 0;
}

START_TEST(test_stream_assembles_the_non_streaming_message)
{
    size_t len = strlen(k_stream);
    json_error_t e;
    json_t *want = json_loads(k_message, 0, &e);
    ck_assert_ptr_nonnull(want);
    for (size_t step = 1; step <= len; step += (step < 40 ? 1 : 37)) {
        struct anthropic_stream *s = anthropic_stream_new(1 << 20);
        char text[256] = "";
        for (size_t i = 0; i < len; i += step)
            ck_assert_int_eq(anthropic_stream_feed(s, k_stream + i, len - i < step ? len - i : step,
                                                   collect_text, text, NULL, NULL, 0),
                             0);
        ck_assert(anthropic_stream_complete(s));
        ck_assert_str_eq(text, "Let me |compute \xC3\xA9.|");
        char *body = NULL;
        ck_assert_int_eq(anthropic_stream_message(s, &body, NULL, NULL, 0), 0);
        json_t *got = json_loads(body, 0, &e);
        ck_assert_msg(json_equal(got, want), "step %zu: %s", step, body);
        /* And it parses like the non-streaming answer. */
        struct llm_response r;
        ck_assert_int_eq(anthropic_parse_response(body, strlen(body), &r, NULL, 0), 0);
        ck_assert_str_eq(r.text, "Let me compute \xC3\xA9.");
        ck_assert_uint_eq(r.n_tool_uses, 1);
        ck_assert_int_eq(r.stop, LLM_STOP_TOOL_USE);
        ck_assert_int_eq(r.input_tokens, 25);
        ck_assert_int_eq(r.output_tokens, 40);
        llm_response_clear(&r);
        json_decref(got);
        free(body);
        anthropic_stream_free(s);
    }
    json_decref(want);
}
END_TEST

START_TEST(test_stream_truncated_is_not_a_message)
{
    size_t len = strlen(k_stream);
    struct anthropic_stream *s = anthropic_stream_new(1 << 20);
    /* Every cut before message_stop's blank line leaves no message. */
    for (size_t cut = 0; cut < len - 1; cut += 13) {
        anthropic_stream_reset(s);
        ck_assert_int_eq(anthropic_stream_feed(s, k_stream, cut, NULL, NULL, NULL, NULL, 0), 0);
        char *body = NULL, why[160] = "";
        ck_assert_int_eq(anthropic_stream_message(s, &body, NULL, why, sizeof(why)), -EBADMSG);
        ck_assert_ptr_null(body);
        ck_assert(why[0] != '\0');
    }
    anthropic_stream_free(s);
}
END_TEST

START_TEST(test_stream_error_event_after_the_200)
{
    const char *s1 = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
                     "\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[]}}\n\n"
                     "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                     "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    struct anthropic_stream *s = anthropic_stream_new(1 << 20);
    struct llm_error e;
    char why[160];
    ck_assert_int_eq(anthropic_stream_feed(s, s1, strlen(s1), NULL, NULL, &e, why, sizeof(why)),
                     -EPROTO);
    ck_assert_str_eq(e.type, "overloaded_error");
    struct llm_usage u;
    ck_assert_int_eq(anthropic_stream_usage(s, &u), -ENODATA); /* no usage in its start */
    ck_assert_ptr_nonnull(strstr(why, "overloaded_error"));
    /* Spent until reset. */
    ck_assert_int_eq(anthropic_stream_feed(s, "\n", 1, NULL, NULL, NULL, NULL, 0), -EPROTO);
    anthropic_stream_reset(s);
    ck_assert_int_eq(anthropic_stream_usage(s, &u), -ENODATA);
    ck_assert_int_eq(
        anthropic_stream_feed(s, k_stream, strlen(k_stream), NULL, NULL, NULL, NULL, 0), 0);
    ck_assert(anthropic_stream_complete(s));
    ck_assert_int_eq(anthropic_stream_usage(s, &u), 0);
    ck_assert_int_eq(u.input_tokens, 25);
    ck_assert_int_eq(u.output_tokens, 40);
    anthropic_stream_free(s);
}
END_TEST

START_TEST(test_stream_malformed_and_caps)
{
    static const char *const bad[] = {
        "data: not json\n\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"text\"}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n"
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
        "\"text\"}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"x\"}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"t\",\"name\":\"n\"}}\n\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n"
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{},\"message\":{}}\n\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct anthropic_stream *s = anthropic_stream_new(1 << 20);
        char why[160] = "";
        ck_assert_msg(anthropic_stream_feed(s, bad[i], strlen(bad[i]), NULL, NULL, NULL, why,
                                            sizeof(why)) == -EBADMSG,
                      "case %zu accepted", i);
        ck_assert(why[0] != '\0');
        anthropic_stream_free(s);
    }
    struct anthropic_stream *s = anthropic_stream_new(100);
    ck_assert_int_eq(anthropic_stream_feed(s, k_stream, 100, NULL, NULL, NULL, NULL, 0), 0);
    ck_assert_int_eq(anthropic_stream_feed(s, k_stream + 100, 1, NULL, NULL, NULL, NULL, 0),
                     -E2BIG);
    anthropic_stream_free(s);
}
END_TEST

static int refuse_text(void *arg, size_t index, const char *text, size_t len)
{
    (void)arg, (void)index, (void)text, (void)len;
    return -ECANCELED;
}

START_TEST(test_stream_text_callback_error_stops_the_feed)
{
    struct anthropic_stream *s = anthropic_stream_new(1 << 20);
    ck_assert_int_eq(
        anthropic_stream_feed(s, k_stream, strlen(k_stream), refuse_text, NULL, NULL, NULL, 0),
        -ECANCELED);
    ck_assert(!anthropic_stream_complete(s));
    anthropic_stream_free(s);
}
END_TEST

START_TEST(test_stream_request_adds_stream_true)
{
    char *b = anthropic_stream_request("{\"model\":\"m\",\"messages\":[]}");
    ck_assert_str_eq(b, "{\"stream\":true,\"model\":\"m\",\"messages\":[]}");
    free(b);
    b = anthropic_stream_request("{}");
    ck_assert_str_eq(b, "{\"stream\":true}");
    free(b);
    errno = 0;
    ck_assert_ptr_null(anthropic_stream_request("[]"));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(anthropic_stream_request(NULL));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("anthropic_stream");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sse_events_line_ends_and_comments);
    tcase_add_test(tc, test_sse_bounded);
    tcase_add_test(tc, test_sse_callback_error_stops);
    tcase_add_test(tc, test_stream_assembles_the_non_streaming_message);
    tcase_add_test(tc, test_stream_truncated_is_not_a_message);
    tcase_add_test(tc, test_stream_error_event_after_the_200);
    tcase_add_test(tc, test_stream_malformed_and_caps);
    tcase_add_test(tc, test_stream_text_callback_error_stops_the_feed);
    tcase_add_test(tc, test_stream_request_adds_stream_true);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
