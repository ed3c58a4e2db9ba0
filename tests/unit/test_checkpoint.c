/*
 * test_checkpoint.c — unit tests for a durable run's checkpoint (checkpoint.h):
 * the round trip, the byte bound, and corrupted or foreign data refused
 * cleanly.
 */
#include "agentd/checkpoint.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct run_checkpoint sample(void)
{
    return (struct run_checkpoint){
        .messages =
            json_pack("[{s:s, s:s}, {s:s, s:[{s:s, s:s, s:s, s:{}}]}]", "role", "user", "content",
                      "weather in Paris and 2+2?", "role", "assistant", "content", "type",
                      "tool_use", "id", "toolu_1", "name", "get_weather", "input"),
        .iterations = 1,
        .llm_calls = 1,
        .llm_attempts = 2,
        .input_tokens = 120,
        .output_tokens = 30,
        .tool_calls = json_pack("[{s:s, s:s, s:b, s:i}]", "id", "toolu_0", "name", "calculator",
                                "ok", 1, "duration_ms", 0),
        .degraded = json_array(),
        .last_text = strdup("Let me look — é"),
        .results = json_pack("[{s:s, s:s, s:b}]", "id", "toolu_0", "text", "4", "is_error", 0),
    };
}

START_TEST(test_checkpoint_round_trip_keeps_every_field)
{
    struct run_checkpoint cp = sample(), back;
    size_t len = 0;
    char err[128] = "";
    char *text = checkpoint_encode(&cp, 1 << 20, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_int_eq(checkpoint_decode(text, len, &back, err, sizeof(err)), 0);
    ck_assert(json_equal(back.messages, cp.messages));
    ck_assert(json_equal(back.tool_calls, cp.tool_calls));
    ck_assert(json_equal(back.degraded, cp.degraded));
    ck_assert(json_equal(back.results, cp.results));
    ck_assert_str_eq(back.last_text, cp.last_text);
    ck_assert_int_eq(back.iterations, 1);
    ck_assert_int_eq(back.llm_calls, 1);
    ck_assert_int_eq(back.llm_attempts, 2);
    ck_assert_int_eq(back.input_tokens, 120);
    ck_assert_int_eq(back.output_tokens, 30);
    free(text);
    checkpoint_clear(&back);
    ck_assert_ptr_null(back.messages);

    /* No text yet, no records: absent fields come back empty. */
    free(cp.last_text);
    cp.last_text = NULL;
    json_decref(cp.results);
    cp.results = NULL;
    text = checkpoint_encode(&cp, 1 << 20, &len);
    ck_assert_int_eq(checkpoint_decode(text, len, &back, err, sizeof(err)), 0);
    ck_assert_ptr_null(back.last_text);
    ck_assert_uint_eq(json_array_size(back.results), 0);
    free(text);
    checkpoint_clear(&back);
    checkpoint_clear(&cp);
    checkpoint_clear(NULL);
}
END_TEST

START_TEST(test_checkpoint_over_its_bound_is_refused)
{
    struct run_checkpoint cp = sample();
    size_t len = 0;
    char *text = checkpoint_encode(&cp, 1 << 20, &len);
    ck_assert_ptr_nonnull(text);
    free(text);
    errno = 0;
    ck_assert_ptr_null(checkpoint_encode(&cp, len - 1, &len));
    ck_assert_int_eq(errno, E2BIG);
    json_decref(cp.messages);
    cp.messages = NULL;
    errno = 0;
    ck_assert_ptr_null(checkpoint_encode(&cp, 1 << 20, &len));
    ck_assert_int_eq(errno, EINVAL);
    checkpoint_clear(&cp);
}
END_TEST

static const char *const corrupt[] = {
    "",
    "{",
    "[]",
    "null",
    "{\"v\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"iterations\":0,\"llm_calls\":"
    "0,"
    "\"llm_attempts\":0,\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],\"degraded\":[],"
    "\"results\":[]}",
    /* no messages */
    "{\"v\":1,\"messages\":[],\"iterations\":0,\"llm_calls\":0,\"llm_attempts\":0,"
    "\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],\"degraded\":[],\"results\":[]}",
    /* a role the API does not know */
    "{\"v\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}],\"iterations\":0,"
    "\"llm_calls\":0,\"llm_attempts\":0,\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],"
    "\"degraded\":[],\"results\":[]}",
    /* a negative counter */
    "{\"v\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"iterations\":-1,"
    "\"llm_calls\":0,\"llm_attempts\":0,\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],"
    "\"degraded\":[],\"results\":[]}",
    /* a result without is_error */
    "{\"v\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"iterations\":0,"
    "\"llm_calls\":0,\"llm_attempts\":0,\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],"
    "\"degraded\":[],\"results\":[{\"id\":\"t\",\"text\":\"4\"}]}",
    /* last_text not a string */
    "{\"v\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"iterations\":0,"
    "\"llm_calls\":0,\"llm_attempts\":0,\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],"
    "\"degraded\":[],\"results\":[],\"last_text\":7}",
    /* a duplicated key */
    "{\"v\":1,\"v\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"iterations\":0,"
    "\"llm_calls\":0,\"llm_attempts\":0,\"input_tokens\":0,\"output_tokens\":0,\"tool_calls\":[],"
    "\"degraded\":[],\"results\":[]}",
};

START_TEST(test_checkpoint_corrupted_data_is_refused_cleanly)
{
    struct run_checkpoint back;
    char err[128] = "";
    memset(&back, 0x5a, sizeof(back));
    ck_assert_int_eq(checkpoint_decode(corrupt[_i], strlen(corrupt[_i]), &back, err, sizeof(err)),
                     -EINVAL);
    ck_assert_msg(err[0] != '\0', "no message for case %d", _i);
    ck_assert_ptr_null(back.messages); /* nothing half-restored */
    ck_assert_ptr_null(back.last_text);
}
END_TEST

START_TEST(test_checkpoint_truncated_text_is_refused)
{
    struct run_checkpoint cp = sample(), back;
    size_t len = 0;
    char err[128];
    char *text = checkpoint_encode(&cp, 1 << 20, &len);
    for (size_t cut = 0; cut < len; cut += 7)
        ck_assert_int_eq(checkpoint_decode(text, cut, &back, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(checkpoint_decode(NULL, 0, &back, NULL, 0), -EINVAL);
    free(text);
    checkpoint_clear(&cp);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_checkpoint_round_trip_keeps_every_field);
    tcase_add_test(tc, test_checkpoint_over_its_bound_is_refused);
    tcase_add_loop_test(tc, test_checkpoint_corrupted_data_is_refused_cleanly, 0,
                        (int)(sizeof(corrupt) / sizeof(corrupt[0])));
    tcase_add_test(tc, test_checkpoint_truncated_text_is_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
