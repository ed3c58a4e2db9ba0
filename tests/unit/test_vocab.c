/*
 * test_vocab.c — unit tests for vocab.c: every shared enum value has the
 * name the logs and the metrics see, and a stray value gets the documented
 * fallback instead of a read out of bounds. tool_name() and
 * breaker_state_name() keep their tests in test_tools.c and test_breaker.c.
 */
#include "agentd/vocab.h"

#include <check.h>
#include <stdlib.h>

START_TEST(test_vocab_dependency_names)
{
    ck_assert_str_eq(dep_name(DEP_ANTHROPIC), "anthropic");
    ck_assert_str_eq(dep_name(DEP_WEB_SEARCH), "web_search");
    ck_assert_str_eq(dep_name(DEP_WEATHER), "weather");
    ck_assert_str_eq(dep_name(DEP__COUNT), "unknown");
    ck_assert_str_eq(dep_name((enum dep_id) - 1), "unknown");
}
END_TEST

START_TEST(test_vocab_priority_names)
{
    ck_assert_str_eq(agent_priority_name(AGENT_PRIORITY_HIGH), "high");
    ck_assert_str_eq(agent_priority_name(AGENT_PRIORITY_LOW), "low");
    ck_assert_str_eq(agent_priority_name((enum agent_priority)AGENT_PRIORITY_COUNT), "unknown");
}
END_TEST

START_TEST(test_vocab_tool_result_kind_names)
{
    ck_assert_str_eq(tool_result_kind_name(TOOL_OK), "ok");
    ck_assert_str_eq(tool_result_kind_name(TOOL_INPUT_ERROR), "input_error");
    ck_assert_str_eq(tool_result_kind_name(TOOL_SYSTEM_ERROR), "system_error");
    ck_assert_str_eq(tool_result_kind_name((enum tool_result_kind)TOOL_RESULT_KIND_COUNT),
                     "unknown");
}
END_TEST

static Suite *vocab_suite(void)
{
    Suite *s = suite_create("vocab");
    TCase *tc = tcase_create("names");

    tcase_add_test(tc, test_vocab_dependency_names);
    tcase_add_test(tc, test_vocab_priority_names);
    tcase_add_test(tc, test_vocab_tool_result_kind_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(vocab_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
