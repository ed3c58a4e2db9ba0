/*
 * test_spend.c — unit tests for the cost/token budget guard (spend.h), driven
 * by a fake clock: now_ms is a plain number the test chooses.
 */
#include "agentd/spend.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#define MINUTE_MS 60000
#define HOUR_MS   (60 * MINUTE_MS)

START_TEST(test_spend_cost_uses_prices_per_million_tokens)
{
    struct spend *s = spend_new(3, 15, 0, 0);

    ck_assert_double_eq_tol(spend_cost_usd(s, 1000000, 0), 3.0, 1e-12);
    ck_assert_double_eq_tol(spend_cost_usd(s, 0, 1000000), 15.0, 1e-12);
    ck_assert_double_eq_tol(spend_cost_usd(s, 1000, 200), 0.006, 1e-12);
    ck_assert_double_eq(spend_cost_usd(s, -5, -5), 0);
    spend_free(s);
    ck_assert_ptr_null(spend_free(NULL));

    s = spend_new(0.25, NAN, 0, 0); /* fractional price; NaN = free */
    ck_assert_double_eq_tol(spend_cost_usd(s, 4000000, 1000000), 1.0, 1e-12);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_budgets_off_when_zero)
{
    struct spend *s = spend_new(3, 15, 0, 0);
    int64_t retry = -7;

    spend_record(s, 0, 1000000000, 1000000000);
    ck_assert(spend_allow(s, 0, &retry));
    ck_assert_int_eq(retry, -7); /* written only on refusal */
    ck_assert_uint_eq(spend_drain_transitions(s, (struct spend_transition[1]){{0}}, 1), 0);
    spend_free(s);

    s = spend_new(3, 15, -1, -1); /* negative counts as off too */
    spend_record(s, 0, 1000000000, 0);
    ck_assert(spend_allow(s, 0, NULL));
    spend_free(s);
}
END_TEST

START_TEST(test_spend_usd_budget_trips_exactly_at_the_limit)
{
    /* 0.03 USD at 3 USD per million input tokens = 10000 input tokens. */
    struct spend *s = spend_new(3, 15, 0.03, 0);
    int64_t retry = 0;

    spend_record(s, 1000, 9999, 0);
    ck_assert(spend_allow(s, 1000, &retry));
    spend_record(s, 1000, 1, 0);
    ck_assert(!spend_allow(s, 1000, &retry));
    ck_assert(!spend_allow(s, 1000, NULL));
    spend_free(s);
}
END_TEST

START_TEST(test_spend_token_budget_counts_input_and_output)
{
    struct spend *s = spend_new(3, 15, 0, 1000);

    spend_record(s, 0, 600, 399);
    ck_assert(spend_allow(s, 0, NULL));
    spend_record(s, 0, 0, 1);
    ck_assert(!spend_allow(s, 0, NULL));

    double usd = 0;
    int64_t tokens = 0;
    spend_window(s, 0, &usd, &tokens);
    ck_assert_int_eq(tokens, 1000);
    ck_assert_double_eq_tol(usd, (600 * 3.0 + 400 * 15.0) / 1e6, 1e-12);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_recovers_when_the_window_slides)
{
    struct spend *s = spend_new(3, 15, 0, 100);
    int64_t t0 = 5 * HOUR_MS + 30 * 1000; /* 30 s into a minute */
    int64_t retry = 0;

    spend_record(s, t0, 100, 0);
    ck_assert(!spend_allow(s, t0, &retry));
    /* The minute of t0 leaves the window when the minute 60 minutes later begins. */
    int64_t frees_at = 5 * HOUR_MS + HOUR_MS;
    ck_assert_int_eq(retry, frees_at - t0);
    ck_assert(!spend_allow(s, frees_at - 1, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(spend_allow(s, frees_at, &retry));

    int64_t tokens = -1;
    spend_window(s, frees_at, NULL, &tokens);
    ck_assert_int_eq(tokens, 0);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_retry_after_waits_only_for_enough_usage_to_leave)
{
    struct spend *s = spend_new(3, 15, 0, 100);
    int64_t retry = 0;

    spend_record(s, 0 * MINUTE_MS, 30, 0);  /* minute 0 */
    spend_record(s, 10 * MINUTE_MS, 30, 0); /* minute 10 */
    spend_record(s, 20 * MINUTE_MS, 50, 0); /* minute 20: total 110 */
    int64_t now = 25 * MINUTE_MS + 500;
    ck_assert(!spend_allow(s, now, &retry));
    /* Minute 0 leaving takes the total to 80 < 100: free when minute 60 begins. */
    ck_assert_int_eq(retry, HOUR_MS - now);
    ck_assert(spend_allow(s, HOUR_MS, NULL));

    /* Now 80 in the window; push to 130: minute 10 (30) leaving is not enough (100),
     * minute 20 (50) has to leave too. */
    spend_record(s, HOUR_MS, 50, 0);
    ck_assert(!spend_allow(s, HOUR_MS, &retry));
    ck_assert_int_eq(retry, 80 * MINUTE_MS - HOUR_MS);
    ck_assert(!spend_allow(s, 70 * MINUTE_MS, NULL));
    ck_assert(spend_allow(s, 80 * MINUTE_MS, NULL));
    spend_free(s);
}
END_TEST

START_TEST(test_spend_retry_after_is_the_longest_of_both_budgets)
{
    /* usd: 0.003 = 1000 input tokens; tokens: 1500. */
    struct spend *s = spend_new(3, 15, 0.003, 1500);
    int64_t retry = 0;

    spend_record(s, 0, 1000, 0);             /* usd spent by minute 0, 1000 tokens */
    spend_record(s, 30 * MINUTE_MS, 0, 600); /* 1600 tokens: spent until minute 60 ... */
    ck_assert(!spend_allow(s, 30 * MINUTE_MS, &retry));
    /* ... and the usd budget too: minute 30 alone costs 0.009 > 0.003, so it must wait
     * until minute 30 leaves at minute 90. */
    ck_assert_int_eq(retry, 60 * MINUTE_MS);
    ck_assert(!spend_allow(s, 60 * MINUTE_MS, &retry)); /* tokens ok (600), usd still spent */
    ck_assert_int_eq(retry, 30 * MINUTE_MS);
    ck_assert(spend_allow(s, 90 * MINUTE_MS, NULL));
    spend_free(s);
}
END_TEST

START_TEST(test_spend_transitions_are_drained_once_each)
{
    struct spend *s = spend_new(3, 15, 0, 100);
    struct spend_transition t[4];

    spend_record(s, 0, 50, 0);
    ck_assert(spend_allow(s, 0, NULL));
    ck_assert_uint_eq(spend_drain_transitions(s, t, 4), 0);

    spend_record(s, 0, 50, 0); /* noticed by the record itself */
    ck_assert(!spend_allow(s, 1, NULL));
    ck_assert(!spend_allow(s, 2, NULL));
    ck_assert_uint_eq(spend_drain_transitions(s, t, 4), 1);
    ck_assert_int_eq(t[0].kind, SPEND_TOKENS);
    ck_assert(t[0].exhausted);
    ck_assert_int_eq(t[0].at_ms, 0);
    ck_assert_double_eq(t[0].used, 100);
    ck_assert_double_eq(t[0].limit, 100);
    ck_assert_uint_eq(spend_drain_transitions(s, t, 4), 0);

    ck_assert(spend_allow(s, HOUR_MS, NULL));
    ck_assert(spend_allow(s, HOUR_MS + 1, NULL));
    ck_assert_uint_eq(spend_drain_transitions(s, t, 4), 1);
    ck_assert_int_eq(t[0].kind, SPEND_TOKENS);
    ck_assert(!t[0].exhausted);
    ck_assert_int_eq(t[0].at_ms, HOUR_MS);
    ck_assert_double_eq(t[0].used, 0);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_transition_ring_keeps_the_newest)
{
    struct spend *s = spend_new(1000000, 0, 1.0, 0); /* 1 USD per input token, 1 USD/h */
    struct spend_transition t[SPEND_TRANSITION_RING + 4];
    int64_t now = 0;

    /* Each lap: spend, then let the hour pass: two transitions per lap. */
    for (int lap = 0; lap < SPEND_TRANSITION_RING; lap++) {
        spend_record(s, now, 1, 0);
        now += HOUR_MS;
        ck_assert(spend_allow(s, now, NULL));
    }
    size_t n = spend_drain_transitions(s, t, SPEND_TRANSITION_RING + 4);
    ck_assert_uint_eq(n, SPEND_TRANSITION_RING);
    ck_assert_int_eq(t[0].kind, SPEND_USD);
    ck_assert(t[0].exhausted); /* oldest kept: lap RING/2's spend */
    ck_assert_int_eq(t[0].at_ms, (int64_t)(SPEND_TRANSITION_RING / 2) * HOUR_MS);
    ck_assert(!t[n - 1].exhausted);
    ck_assert_int_eq(t[n - 1].at_ms, now);
    for (size_t i = 1; i < n; i++)
        ck_assert(t[i].exhausted != t[i - 1].exhausted);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_older_now_counts_as_newest)
{
    struct spend *s = spend_new(3, 15, 0, 10);
    int64_t retry = 0;

    spend_record(s, 10 * MINUTE_MS, 10, 0);
    /* A clock reading from before is treated as 10 min: still a full hour to wait. */
    ck_assert(!spend_allow(s, 0, &retry));
    ck_assert_int_eq(retry, HOUR_MS);
    spend_record(s, 5 * MINUTE_MS, 1, 0); /* lands in minute 10, not minute 5 */
    ck_assert(!spend_allow(s, 69 * MINUTE_MS, NULL));
    ck_assert(spend_allow(s, 70 * MINUTE_MS, NULL));
    spend_free(s);
}
END_TEST

START_TEST(test_spend_old_slots_do_not_count_after_a_long_idle)
{
    struct spend *s = spend_new(3, 15, 0, 100);

    spend_record(s, 0, 60, 0);
    /* Exactly one lap later the same ring slot is reused for a new minute. */
    spend_record(s, HOUR_MS, 60, 0);
    ck_assert(spend_allow(s, HOUR_MS, NULL));
    /* Many laps later, without any call in between. */
    spend_record(s, 50 * HOUR_MS + 17, 99, 0);
    ck_assert(spend_allow(s, 50 * HOUR_MS + 17, NULL));
    int64_t tokens = 0;
    spend_window(s, 50 * HOUR_MS + 17, NULL, &tokens);
    ck_assert_int_eq(tokens, 99);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_reservations_count_until_settled_with_the_real_usage)
{
    /* 1000 tokens per hour. */
    struct spend *s = spend_new(3, 15, 0, 1000);
    struct spend_hold a = {0}, b = {0}, c = {0};
    int64_t retry = 0, tokens = 0;

    /* Two calls in flight reserve 400 + 500 worst case: a third may still start (900 < 1000),
       the fourth may not while they run. */
    ck_assert(spend_reserve(s, 0, 300, 100, &a, &retry));
    ck_assert(a.held);
    ck_assert_int_eq(a.tokens, 400);
    ck_assert_int_eq(a.nano_usd, spend_cost_nano(s, 300, 100));
    ck_assert(spend_reserve(s, 0, 400, 100, &b, &retry));
    ck_assert(spend_reserve(s, 0, 50, 50, &c, &retry));
    spend_window(s, 0, NULL, &tokens);
    ck_assert_int_eq(tokens, 1000);
    struct spend_hold d = {0};
    ck_assert(!spend_reserve(s, 0, 1, 1, &d, &retry));
    ck_assert(!d.held);
    ck_assert_int_eq(retry, HOUR_MS);
    /* They used less than their worst case: the difference is given back. */
    spend_settle(s, 1000, &a, 100, 20);
    ck_assert(!a.held);
    spend_settle(s, 1000, &b, 200, 30);
    spend_settle(s, 1000, &c, 0, 0);
    spend_window(s, 1000, NULL, &tokens);
    ck_assert_int_eq(tokens, 350);
    ck_assert(spend_reserve(s, 1000, 1, 1, &d, &retry));
    /* Settling twice, or without a hold, only records. */
    spend_settle(s, 1000, &a, 0, 0);
    spend_settle(s, 1000, NULL, 10, 0);
    spend_window(s, 1000, NULL, &tokens);
    ck_assert_int_eq(tokens, 362);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_hold_from_a_minute_gone_from_the_window_takes_nothing_back)
{
    struct spend *s = spend_new(3, 15, 0, 1000);
    struct spend_hold a = {0};
    int64_t tokens = 0;

    ck_assert(spend_reserve(s, 0, 500, 500, &a, NULL));
    /* The call outlived the hour (it cannot, but a stale hold must not corrupt a slot). */
    spend_record(s, HOUR_MS, 7, 0);
    spend_settle(s, HOUR_MS, &a, 1, 0);
    spend_window(s, HOUR_MS, NULL, &tokens);
    ck_assert_int_eq(tokens, 8);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_share_divides_the_budgets_among_replicas)
{
    struct spend *s = spend_new(3, 15, 0.03, 900);
    int64_t usd = 0, tok = 0;

    spend_limits(s, &usd, &tok);
    ck_assert_int_eq(usd, 30000000);
    ck_assert_int_eq(tok, 900);
    spend_set_share(s, 3);
    spend_record(s, 0, 0, 299); /* under a third of each budget */
    ck_assert(spend_allow(s, 0, NULL));
    spend_record(s, 0, 0, 1); /* 300 tokens: a third of 900 */
    ck_assert(!spend_allow(s, 0, NULL));
    spend_set_share(s, 1);
    ck_assert(spend_allow(s, 0, NULL));
    spend_set_share(s, 2000); /* 900 / 2000 rounds to 0: a budget that is on stays on */
    ck_assert(!spend_allow(s, 0, NULL));
    spend_limits(s, &usd, &tok);
    ck_assert_int_eq(tok, 900); /* the configured budget is unchanged */
    spend_free(s);
}
END_TEST

START_TEST(test_spend_run_over_limit)
{
    ck_assert(!spend_run_over_limit(1000000, 0)); /* 0 = no limit */
    ck_assert(!spend_run_over_limit(1000000, -1));
    ck_assert(!spend_run_over_limit(0, 1));
    ck_assert(!spend_run_over_limit(999, 1000));
    ck_assert(spend_run_over_limit(1000, 1000));
    ck_assert(spend_run_over_limit(1001, 1000));
}
END_TEST

#define THREADS 4
#define RECORDS 5000

static void *record_thread(void *arg)
{
    struct spend *s = arg;
    for (int i = 0; i < RECORDS; i++) {
        spend_record(s, i, 1, 1);
        spend_allow(s, i, NULL);
    }
    return NULL;
}

START_TEST(test_spend_concurrent_records_all_count)
{
    struct spend *s = spend_new(3, 15, 0, 2 * THREADS * RECORDS);
    pthread_t th[THREADS];
    struct spend_transition t[4];

    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, record_thread, s), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    int64_t tokens = 0;
    double usd = 0;
    spend_window(s, RECORDS, &usd, &tokens);
    ck_assert_int_eq(tokens, 2 * THREADS * RECORDS);
    ck_assert_double_eq_tol(usd, THREADS * RECORDS * 18.0 / 1e6, 1e-9);
    ck_assert(!spend_allow(s, RECORDS, NULL));
    /* The limit was reached once, by whichever record came last. */
    ck_assert_uint_eq(spend_drain_transitions(s, t, 4), 1);
    ck_assert(t[0].exhausted);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_set_budgets_changes_the_limits_and_keeps_the_usage)
{
    struct spend *s = spend_new(3, 15, 0, 0);
    int64_t usd, tokens;

    spend_record(s, 1000, 500, 0);
    ck_assert(spend_allow(s, 1000, NULL));
    spend_set_budgets(s, 0, 400); /* already past it */
    ck_assert(!spend_allow(s, 1000, NULL));
    spend_limits(s, &usd, &tokens);
    ck_assert_int_eq(usd, 0);
    ck_assert_int_eq(tokens, 400);
    spend_set_share(s, 2);
    spend_set_budgets(s, 0, 1200); /* 600 for each of 2 replicas */
    ck_assert(spend_allow(s, 1000, NULL));
    spend_record(s, 1000, 100, 0);
    ck_assert(!spend_allow(s, 1000, NULL));
    spend_set_budgets(s, 0, 0);
    ck_assert(spend_allow(s, 1000, NULL));
    spend_free(s);
}
END_TEST

START_TEST(test_spend_prices_cache_writes_and_reads_at_their_own_prices)
{
    /* $3 / Mtok input: writes default to 1.25 x, reads to 0.1 x. */
    struct spend *s = spend_new(3, 15, 0, 0);
    struct spend_usage u = {.input_tokens = 1000000 + 2000000 + 10000000,
                            .cache_write_tokens = 2000000,
                            .cache_read_tokens = 10000000,
                            .output_tokens = 1000000};
    ck_assert_double_eq_tol(spend_usage_cost_usd(s, &u), 3 + 2 * 3.75 + 10 * 0.3 + 15, 1e-9);
    /* Without cache counts the old price holds. */
    ck_assert_int_eq(
        spend_usage_cost_nano(s, &(struct spend_usage){.input_tokens = 1000, .output_tokens = 10}),
        spend_cost_nano(s, 1000, 10));
    /* Set prices win over the multipliers; cache counts above the input are cut to it. */
    spend_set_cache_prices(s, 10, 0);
    ck_assert_double_eq_tol(
        spend_usage_cost_usd(
            s, &(struct spend_usage){.input_tokens = 1000000, .cache_write_tokens = 5000000}),
        10, 1e-9);
    ck_assert_double_eq_tol(
        spend_usage_cost_usd(
            s, &(struct spend_usage){.input_tokens = 1000000, .cache_read_tokens = 1000000}),
        0, 1e-9);
    spend_free(s);
}
END_TEST

START_TEST(test_spend_settle_usage_counts_the_cached_cost_against_the_budget)
{
    struct spend *s = spend_new(3, 15, 1, 0);
    double usd = 0;
    int64_t tokens = 0;
    /* 1M cache reads: $0.30 where the input price would have been $3 (over the $1 budget). */
    spend_settle_usage(
        s, 0, NULL, &(struct spend_usage){.input_tokens = 1000000, .cache_read_tokens = 1000000});
    spend_window(s, 0, &usd, &tokens);
    ck_assert_double_eq_tol(usd, 0.3, 1e-9);
    ck_assert_int_eq(tokens, 1000000);
    ck_assert(spend_allow(s, 0, NULL));
    spend_free(s);
}
END_TEST

static Suite *spend_suite(void)
{
    Suite *s = suite_create("spend");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_spend_cost_uses_prices_per_million_tokens);
    tcase_add_test(tc, test_spend_budgets_off_when_zero);
    tcase_add_test(tc, test_spend_usd_budget_trips_exactly_at_the_limit);
    tcase_add_test(tc, test_spend_token_budget_counts_input_and_output);
    tcase_add_test(tc, test_spend_recovers_when_the_window_slides);
    tcase_add_test(tc, test_spend_retry_after_waits_only_for_enough_usage_to_leave);
    tcase_add_test(tc, test_spend_retry_after_is_the_longest_of_both_budgets);
    tcase_add_test(tc, test_spend_transitions_are_drained_once_each);
    tcase_add_test(tc, test_spend_transition_ring_keeps_the_newest);
    tcase_add_test(tc, test_spend_older_now_counts_as_newest);
    tcase_add_test(tc, test_spend_old_slots_do_not_count_after_a_long_idle);
    tcase_add_test(tc, test_spend_run_over_limit);
    tcase_add_test(tc, test_spend_reservations_count_until_settled_with_the_real_usage);
    tcase_add_test(tc, test_spend_hold_from_a_minute_gone_from_the_window_takes_nothing_back);
    tcase_add_test(tc, test_spend_share_divides_the_budgets_among_replicas);
    tcase_add_test(tc, test_spend_concurrent_records_all_count);
    tcase_add_test(tc, test_spend_set_budgets_changes_the_limits_and_keeps_the_usage);
    tcase_add_test(tc, test_spend_prices_cache_writes_and_reads_at_their_own_prices);
    tcase_add_test(tc, test_spend_settle_usage_counts_the_cached_cost_against_the_budget);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spend_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
