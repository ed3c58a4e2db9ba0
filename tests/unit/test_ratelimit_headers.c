/*
 * test_ratelimit_headers.c — unit tests for the rate-limit header reader (ratelimit_headers.h),
 * with a fake wall clock.
 */
#include "agentd/ratelimit_headers.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* 2026-11-30T03:00:00Z */
#define WALL0 1796007600000LL

static void capture(struct ratelimit_headers *h, const char *line)
{
    ck_assert_msg(ratelimit_headers_capture(h, line, strlen(line)), "not captured: %s", line);
}

START_TEST(test_rfc3339_parses_utc_offsets_and_fractions)
{
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms("2026-11-30T03:00:00Z"), WALL0);
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms("2026-11-30T03:00:00.25Z"), WALL0 + 250);
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms("2026-11-30T04:00:00+01:00"), WALL0);
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms("2026-11-30T02:30:00-00:30"), WALL0);
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms("1970-01-01T00:00:00Z"), 0);
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms("2000-02-29T00:00:00Z"), 951782400000LL);
}
END_TEST

START_TEST(test_rfc3339_rejects_garbage)
{
    const char *bad[] = {"",
                         "2026-11-30",
                         "2026-11-30T03:00:00",
                         "2026-13-30T03:00:00Z",
                         "2026-11-30T24:00:00Z",
                         "2026-11-30T03:00:00.Z",
                         "2026-11-30T03:00:00Zjunk",
                         "Mon, 30 Nov 2026 03:00:00 GMT",
                         "60",
                         "0000-01-01T00:00:00Z",
                         "1970-01-01T00:00:00+00:01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(ratelimit_parse_rfc3339_ms(bad[i]), -1);
    ck_assert_int_eq(ratelimit_parse_rfc3339_ms(NULL), -1);
}
END_TEST

START_TEST(test_capture_takes_only_the_rate_limit_headers)
{
    struct ratelimit_headers h;
    ratelimit_headers_clear(&h);
    capture(&h, "Anthropic-RateLimit-Output-Tokens-Remaining:  12 \r\n");
    capture(&h, "anthropic-ratelimit-tokens-reset: 2026-11-30T03:00:05Z\r\n");
    ck_assert_str_eq(h.remaining[RATELIMIT_OUTPUT_TOKENS], "12");
    ck_assert_str_eq(h.reset[RATELIMIT_TOKENS], "2026-11-30T03:00:05Z");
    capture(&h, "anthropic-ratelimit-requests-limit: 50\r\n");
    ck_assert_str_eq(h.limit[RATELIMIT_REQUESTS], "50");
    const char *other[] = {"anthropic-ratelimit-requests-used: 50\r\n",
                           "anthropic-ratelimit-requests: 1\r\n", "retry-after: 3\r\n",
                           "anthropic-ratelimit-bananas-remaining: 0\r\n"};
    for (size_t i = 0; i < 4; i++)
        ck_assert(!ratelimit_headers_capture(&h, other[i], strlen(other[i])));
}
END_TEST

START_TEST(test_wait_is_the_latest_reset_of_the_spent_budgets)
{
    struct ratelimit_headers h;
    ratelimit_headers_clear(&h);
    /* Nothing known: no wait. */
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 60000), 0);
    capture(&h, "anthropic-ratelimit-requests-remaining: 0\r\n");
    capture(&h, "anthropic-ratelimit-requests-reset: 2026-11-30T03:00:02Z\r\n");
    capture(&h, "anthropic-ratelimit-input-tokens-remaining: 0\r\n");
    capture(&h, "anthropic-ratelimit-input-tokens-reset: 2026-11-30T03:00:07Z\r\n");
    /* Budget left: its reset does not count. */
    capture(&h, "anthropic-ratelimit-tokens-remaining: 5000\r\n");
    capture(&h, "anthropic-ratelimit-tokens-reset: 2026-11-30T03:00:30Z\r\n");
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 60000), 7000);
    /* Capped, and a reset in the past means no wait. */
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 3000), 3000);
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0 + 8000, 1024, 60000), 0);
}
END_TEST

START_TEST(test_wait_is_the_refill_of_one_call_when_the_limit_is_known)
{
    struct ratelimit_headers h;
    ratelimit_headers_clear(&h);
    /* 50 requests a minute, none left, full again in 60 s: one more refills in 1.2 s. */
    capture(&h, "anthropic-ratelimit-requests-limit: 50\r\n");
    capture(&h, "anthropic-ratelimit-requests-remaining: 0\r\n");
    capture(&h, "anthropic-ratelimit-requests-reset: 2026-11-30T03:01:00Z\r\n");
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 600000), 1200);
    /* 8000 output tokens a minute, 1000 left, full in 52.5 s: 1024 needs 24 more, 180 ms. */
    capture(&h, "anthropic-ratelimit-output-tokens-limit: 8000\r\n");
    capture(&h, "anthropic-ratelimit-output-tokens-remaining: 1000\r\n");
    capture(&h, "anthropic-ratelimit-output-tokens-reset: 2026-11-30T03:00:52.500Z\r\n");
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 600000), 1200);
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 2000, 600000), 7500);
    /* A call bigger than the whole bucket waits for all of it. */
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 9000, 600000), 52500);
}
END_TEST

START_TEST(test_output_tokens_are_spent_below_one_call_of_max_tokens)
{
    struct ratelimit_headers h;
    ratelimit_headers_clear(&h);
    capture(&h, "anthropic-ratelimit-output-tokens-remaining: 1000\r\n");
    capture(&h, "anthropic-ratelimit-output-tokens-reset: 2026-11-30T03:00:04Z\r\n");
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 60000), 4000);
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1000, 60000), 0);
    /* A count that is not one is ignored. */
    capture(&h, "anthropic-ratelimit-output-tokens-remaining: -5\r\n");
    ck_assert_int_eq(ratelimit_wait_ms(&h, WALL0, 1024, 60000), 0);
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit_headers");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_rfc3339_parses_utc_offsets_and_fractions);
    tcase_add_test(tc, test_rfc3339_rejects_garbage);
    tcase_add_test(tc, test_capture_takes_only_the_rate_limit_headers);
    tcase_add_test(tc, test_wait_is_the_latest_reset_of_the_spent_budgets);
    tcase_add_test(tc, test_wait_is_the_refill_of_one_call_when_the_limit_is_known);
    tcase_add_test(tc, test_output_tokens_are_spent_below_one_call_of_max_tokens);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ratelimit_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
