/*
 * test_backoff.c — unit tests for retry classification, full-jitter backoff
 * and retry-after parsing (backoff.h).
 */
#include "agentd/backoff.h"

#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* 1994-11-06T08:49:37Z, the RFC's example date, in ms since the epoch. */
#define RFC_DATE    "Sun, 06 Nov 1994 08:49:37 GMT"
#define RFC_DATE_MS (INT64_C(784111777) * 1000)
#define DRAWS       100000

START_TEST(test_classify_status_table)
{
    static const struct {
        long status;
        enum backoff_class want;
    } cases[] = {
        {408, BACKOFF_TRANSIENT}, {409, BACKOFF_TRANSIENT}, {429, BACKOFF_TRANSIENT},
        {500, BACKOFF_TRANSIENT}, {501, BACKOFF_TRANSIENT}, {502, BACKOFF_TRANSIENT},
        {503, BACKOFF_TRANSIENT}, {504, BACKOFF_TRANSIENT}, {529, BACKOFF_TRANSIENT},
        {599, BACKOFF_TRANSIENT}, {0, BACKOFF_TRANSIENT},   {-1, BACKOFF_TRANSIENT},
        {200, BACKOFF_PERMANENT}, {301, BACKOFF_PERMANENT}, {400, BACKOFF_PERMANENT},
        {401, BACKOFF_PERMANENT}, {403, BACKOFF_PERMANENT}, {404, BACKOFF_PERMANENT},
        {413, BACKOFF_PERMANENT}, {422, BACKOFF_PERMANENT}, {499, BACKOFF_PERMANENT},
        {600, BACKOFF_PERMANENT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(backoff_classify_status(cases[i].status, -1) == cases[i].want,
                      "status %ld misclassified", cases[i].status);
}
END_TEST

START_TEST(test_classify_x_should_retry_overrides_status)
{
    ck_assert_int_eq(backoff_classify_status(400, 1), BACKOFF_TRANSIENT);
    ck_assert_int_eq(backoff_classify_status(401, 1), BACKOFF_TRANSIENT);
    ck_assert_int_eq(backoff_classify_status(503, 0), BACKOFF_PERMANENT);
    ck_assert_int_eq(backoff_classify_status(429, 0), BACKOFF_PERMANENT);
    ck_assert_int_eq(backoff_classify_status(503, -1), BACKOFF_TRANSIENT);
    ck_assert_int_eq(backoff_classify_status(400, -1), BACKOFF_PERMANENT);
}
END_TEST

START_TEST(test_parse_should_retry_values)
{
    ck_assert_int_eq(backoff_parse_should_retry("true"), 1);
    ck_assert_int_eq(backoff_parse_should_retry("false"), 0);
    ck_assert_int_eq(backoff_parse_should_retry(" TRUE\r\n"), 1);
    ck_assert_int_eq(backoff_parse_should_retry("False"), 0);
    ck_assert_int_eq(backoff_parse_should_retry(NULL), -1);
    ck_assert_int_eq(backoff_parse_should_retry(""), -1);
    ck_assert_int_eq(backoff_parse_should_retry("yes"), -1);
    ck_assert_int_eq(backoff_parse_should_retry("1"), -1);
    ck_assert_int_eq(backoff_parse_should_retry("truee"), -1);
    ck_assert_int_eq(backoff_parse_should_retry("tru"), -1);
}
END_TEST

START_TEST(test_jitter_stays_in_range_and_reaches_both_halves)
{
    uint64_t rng = 42;
    int low = 0, high = 0;
    for (int i = 0; i < DRAWS; i++) {
        int64_t d = backoff_full_jitter_ms(2, 100, 10000, &rng);
        ck_assert_int_ge(d, 0);
        ck_assert_int_le(d, 400);
        if (d < 200)
            low++;
        else
            high++;
    }
    /* Uniform: each half holds about half the draws. */
    ck_assert_int_gt(low, DRAWS * 4 / 10);
    ck_assert_int_gt(high, DRAWS * 4 / 10);
}
END_TEST

START_TEST(test_jitter_includes_both_ends)
{
    uint64_t rng = 7;
    bool saw_zero = false, saw_cap = false;
    for (int i = 0; i < 1000; i++) {
        int64_t d = backoff_full_jitter_ms(0, 1, 1000, &rng);
        ck_assert(d == 0 || d == 1);
        saw_zero |= d == 0;
        saw_cap |= d == 1;
    }
    ck_assert(saw_zero && saw_cap);
}
END_TEST

START_TEST(test_jitter_cap_doubles_per_retry)
{
    uint64_t rng = 1;
    for (int idx = 0; idx < 6; idx++) {
        int64_t cap = INT64_C(100) << idx, max_seen = 0;
        for (int i = 0; i < 5000; i++) {
            int64_t d = backoff_full_jitter_ms(idx, 100, 1000000, &rng);
            ck_assert_int_le(d, cap);
            if (d > max_seen)
                max_seen = d;
        }
        ck_assert_int_gt(max_seen, cap / 2);
    }
}
END_TEST

START_TEST(test_jitter_cap_honoured_at_large_indexes)
{
    static const int indexes[] = {30, 61, 62, 63, 64, 1000, INT_MAX};
    uint64_t rng = 99;
    for (size_t k = 0; k < sizeof(indexes) / sizeof(indexes[0]); k++) {
        int64_t max_seen = 0;
        for (int i = 0; i < 2000; i++) {
            int64_t d = backoff_full_jitter_ms(indexes[k], 500, 30000, &rng);
            ck_assert_int_ge(d, 0);
            ck_assert_int_le(d, 30000);
            if (d > max_seen)
                max_seen = d;
        }
        /* The cap is max_delay itself, not a wrapped-around small number. */
        ck_assert_int_gt(max_seen, 15000);
    }
    /* Even a cap of INT64_MAX draws without overflow. */
    int64_t d = backoff_full_jitter_ms(62, INT64_MAX, INT64_MAX, &rng);
    ck_assert_int_ge(d, 0);
}
END_TEST

START_TEST(test_jitter_is_deterministic_for_a_seed)
{
    uint64_t a = 12345, b = 12345, c = 54321;
    bool differs = false;
    for (int i = 0; i < 100; i++) {
        int64_t da = backoff_full_jitter_ms(5, 100, 100000, &a);
        int64_t db = backoff_full_jitter_ms(5, 100, 100000, &b);
        int64_t dc = backoff_full_jitter_ms(5, 100, 100000, &c);
        ck_assert_int_eq(da, db);
        differs |= da != dc;
    }
    ck_assert(differs);
}
END_TEST

START_TEST(test_jitter_degenerate_inputs_give_zero)
{
    uint64_t rng = 3;
    ck_assert_int_eq(backoff_full_jitter_ms(3, 0, 1000, &rng), 0);
    ck_assert_int_eq(backoff_full_jitter_ms(3, -5, 1000, &rng), 0);
    ck_assert_int_eq(backoff_full_jitter_ms(3, 100, 0, &rng), 0);
    ck_assert_int_eq(backoff_full_jitter_ms(3, 100, -1, &rng), 0);
    /* A negative index behaves like the first retry. */
    for (int i = 0; i < 1000; i++)
        ck_assert_int_le(backoff_full_jitter_ms(-4, 100, 1000, &rng), 100);
}
END_TEST

START_TEST(test_retry_after_ms_header)
{
    ck_assert_int_eq(backoff_retry_after_ms("1500", NULL, 0), 1500);
    ck_assert_int_eq(backoff_retry_after_ms("0", NULL, 0), 0);
    ck_assert_int_eq(backoff_retry_after_ms(" 250 ", NULL, 0), 250);
}
END_TEST

START_TEST(test_retry_after_fractions_round_up)
{
    ck_assert_int_eq(backoff_retry_after_ms("1.2", NULL, 0), 2);
    ck_assert_int_eq(backoff_retry_after_ms("1.0", NULL, 0), 1);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "1.5", 0), 1500);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "0.25", 0), 250);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "0.0001", 0), 1);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "2.0010", 0), 2001);
}
END_TEST

START_TEST(test_retry_after_seconds)
{
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "3", 0), 3000);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "120", 0), 120000);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "0", 0), 0);
}
END_TEST

START_TEST(test_retry_after_http_date_future_and_past)
{
    ck_assert_int_eq(backoff_retry_after_ms(NULL, RFC_DATE, RFC_DATE_MS - 5000), 5000);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, RFC_DATE, RFC_DATE_MS - 1), 1);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, RFC_DATE, RFC_DATE_MS), 0);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, RFC_DATE, RFC_DATE_MS + 60000), 0);
    /* Leap day, and the epoch itself. */
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "Tue, 29 Feb 2028 12:00:00 GMT",
                                            INT64_C(1835438400) * 1000 - 7),
                     7);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "Thu, 01 Jan 1970 00:00:01 GMT", 0), 1000);
}
END_TEST

START_TEST(test_retry_after_rejects_garbage)
{
    static const char *const bad[] = {
        "",
        "   ",
        "soon",
        "-5",
        "+5",
        "-0.5",
        "1e3",
        "0x10",
        "NaN",
        "nan",
        "inf",
        "1.",
        ".5",
        "1.2.3",
        "5s",
        "5 5",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 06 Nov 1994 08:49:37 GMT+1",
        "Sun, 06 Nov 1994 08:49:37 GM",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 31 Feb 2024 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08:49:3x GMT",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(backoff_retry_after_ms(bad[i], NULL, 0) == -1, "ms header '%s' accepted",
                      bad[i]);
        ck_assert_msg(backoff_retry_after_ms(NULL, bad[i], RFC_DATE_MS - 1000) == -1,
                      "header '%s' accepted", bad[i]);
    }
}
END_TEST

START_TEST(test_retry_after_neither_header_is_minus_one)
{
    ck_assert_int_eq(backoff_retry_after_ms(NULL, NULL, 0), -1);
}
END_TEST

START_TEST(test_retry_after_ms_header_wins_over_retry_after)
{
    ck_assert_int_eq(backoff_retry_after_ms("250", "10", 0), 250);
    ck_assert_int_eq(backoff_retry_after_ms("250", RFC_DATE, RFC_DATE_MS - 9000), 250);
    /* An unusable retry-after-ms falls back to retry-after. */
    ck_assert_int_eq(backoff_retry_after_ms("garbage", "10", 0), 10000);
    ck_assert_int_eq(backoff_retry_after_ms("-1", "2", 0), 2000);
}
END_TEST

START_TEST(test_retry_after_huge_values_saturate)
{
    ck_assert_int_eq(backoff_retry_after_ms("99999999999999999999999999", NULL, 0),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "9999999999999999", 0),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, "Fri, 31 Dec 9999 23:59:59 GMT", 0),
                     BACKOFF_RETRY_AFTER_MAX_MS);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, RFC_DATE, INT64_MIN), BACKOFF_RETRY_AFTER_MAX_MS);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, RFC_DATE, INT64_MAX), 0);
}
END_TEST

START_TEST(test_retry_after_rejects_overlong_header)
{
    char longv[BACKOFF_RETRY_AFTER_MAX_HDR_BYTES + 2];
    memset(longv, '1', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    ck_assert_int_eq(backoff_retry_after_ms(longv, NULL, 0), -1);
    ck_assert_int_eq(backoff_retry_after_ms(NULL, longv, 0), -1);
    /* Exactly at the limit is still parsed. */
    longv[BACKOFF_RETRY_AFTER_MAX_HDR_BYTES] = '\0';
    ck_assert_int_eq(backoff_retry_after_ms(longv, NULL, 0), BACKOFF_RETRY_AFTER_MAX_MS);
}
END_TEST

static Suite *backoff_suite(void)
{
    Suite *s = suite_create("backoff");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_classify_status_table);
    tcase_add_test(tc, test_classify_x_should_retry_overrides_status);
    tcase_add_test(tc, test_parse_should_retry_values);
    tcase_add_test(tc, test_jitter_stays_in_range_and_reaches_both_halves);
    tcase_add_test(tc, test_jitter_includes_both_ends);
    tcase_add_test(tc, test_jitter_cap_doubles_per_retry);
    tcase_add_test(tc, test_jitter_cap_honoured_at_large_indexes);
    tcase_add_test(tc, test_jitter_is_deterministic_for_a_seed);
    tcase_add_test(tc, test_jitter_degenerate_inputs_give_zero);
    tcase_add_test(tc, test_retry_after_ms_header);
    tcase_add_test(tc, test_retry_after_fractions_round_up);
    tcase_add_test(tc, test_retry_after_seconds);
    tcase_add_test(tc, test_retry_after_http_date_future_and_past);
    tcase_add_test(tc, test_retry_after_rejects_garbage);
    tcase_add_test(tc, test_retry_after_neither_header_is_minus_one);
    tcase_add_test(tc, test_retry_after_ms_header_wins_over_retry_after);
    tcase_add_test(tc, test_retry_after_huge_values_saturate);
    tcase_add_test(tc, test_retry_after_rejects_overlong_header);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(backoff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
