/*
 * test_budget.c — unit tests for the retry budget (budget.h), driven by a
 * fake clock: now_ms is a plain variable the test advances.
 */
#include "agentd/budget.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static int spend_all(struct retry_budget *b, int64_t now_ms)
{
    int n = 0;
    while (retry_budget_try_spend(b, now_ms))
        n++;
    return n;
}

START_TEST(test_budget_floor_allows_min_retries_without_traffic)
{
    struct retry_budget *b = retry_budget_new(0.2, 10000, 3);

    ck_assert_int_eq(spend_all(b, 0), 3);
    ck_assert_uint_eq(retry_budget_exhausted_total(b), 1);
    ck_assert(!retry_budget_try_spend(b, 0));
    ck_assert_uint_eq(retry_budget_exhausted_total(b), 2);
    retry_budget_free(b);
    ck_assert_ptr_null(retry_budget_free(NULL));
}
END_TEST

START_TEST(test_budget_ratio_grows_with_first_attempts)
{
    struct retry_budget *b = retry_budget_new(0.1, 10000, 0);

    for (int i = 0; i < 9; i++)
        retry_budget_on_request(b, 0);
    ck_assert(!retry_budget_try_spend(b, 0)); /* floor(0.9) = 0 */
    retry_budget_on_request(b, 0);
    ck_assert_int_eq(spend_all(b, 0), 1); /* floor(1.0) = 1 */
    for (int i = 0; i < 15; i++)
        retry_budget_on_request(b, 0);
    ck_assert_int_eq(spend_all(b, 0), 1); /* floor(2.5) = 2, one already spent */
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_rounding_does_not_lose_a_retry)
{
    struct retry_budget *b = retry_budget_new(0.29, 10000, 0);

    for (int i = 0; i < 100; i++)
        retry_budget_on_request(b, 0);
    ck_assert_int_eq(spend_all(b, 0), 29); /* 0.29 * 100 is 28.999... in binary */
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_window_slide_frees_budget)
{
    struct retry_budget *b = retry_budget_new(0, 10000, 2);

    ck_assert_int_eq(spend_all(b, 0), 2);
    ck_assert(!retry_budget_try_spend(b, 9999));
    ck_assert(retry_budget_try_spend(b, 10000));
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_window_slides_per_sub_window)
{
    struct retry_budget *b = retry_budget_new(1.0, 10000, 0);

    for (int i = 0; i < 10; i++)
        retry_budget_on_request(b, 0);
    ck_assert_int_eq(spend_all(b, 5000), 10);
    /* The requests at t=0 slid out, the retries at t=5000 have not: nothing left. */
    retry_budget_on_request(b, 10000);
    ck_assert(!retry_budget_try_spend(b, 10000));
    /* Once the t=5000 retries slid out too, the one new request earns one retry. */
    ck_assert_int_eq(spend_all(b, 15000), 1);
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_expired_sub_windows_do_not_count_before_reuse)
{
    struct retry_budget *b = retry_budget_new(1.0, 10000, 0);

    for (int i = 0; i < 10; i++)
        retry_budget_on_request(b, 0);
    /* t=15000 reuses the slot of t=5000; the slot of t=0 still holds its old, expired count. */
    ck_assert(!retry_budget_try_spend(b, 15000));
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_bounds_total_attempts_when_everything_fails)
{
    enum { R = 1000, MAX_ATTEMPTS = 4 };
    const double ratio = 0.2;
    const int min_retries = 10;
    struct retry_budget *b = retry_budget_new(ratio, 60000, min_retries);
    int64_t now_ms = 0;
    int attempts = 0;

    for (int r = 0; r < R; r++) {
        now_ms += 50; /* 1000 requests over 50 s, inside one 60 s window */
        retry_budget_on_request(b, now_ms);
        attempts++; /* the first attempt fails... */
        for (int a = 1; a < MAX_ATTEMPTS && retry_budget_try_spend(b, now_ms); a++)
            attempts++; /* ...and so does every retry */
    }
    ck_assert_int_le(attempts, (1 + ratio) * R + min_retries);
    /* The budget is used, not merely refused: the bound is reached. */
    ck_assert_int_eq(attempts, (int)((1 + ratio) * R) + min_retries);
    ck_assert_uint_gt(retry_budget_exhausted_total(b), 0);
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_older_now_counts_as_newest)
{
    struct retry_budget *b = retry_budget_new(0, 10000, 1);

    ck_assert(retry_budget_try_spend(b, 20000));
    /* A thread that read the clock earlier must not reopen an expired lap. */
    ck_assert(!retry_budget_try_spend(b, 5000));
    ck_assert(retry_budget_try_spend(b, 30000));
    retry_budget_free(b);
}
END_TEST

START_TEST(test_budget_degenerate_settings_are_safe)
{
    struct retry_budget *b = retry_budget_new(-1, 0, -5);
    retry_budget_on_request(b, 0);
    ck_assert(!retry_budget_try_spend(b, 0));
    retry_budget_free(b);

    /* Extreme times, including negative ones, neither crash nor overflow. */
    b = retry_budget_new(1, 1, 0);
    retry_budget_on_request(b, INT64_MIN);
    ck_assert(retry_budget_try_spend(b, INT64_MIN));
    retry_budget_on_request(b, -7);
    ck_assert(retry_budget_try_spend(b, -7));
    retry_budget_on_request(b, INT64_MAX);
    ck_assert(retry_budget_try_spend(b, INT64_MAX));
    ck_assert(!retry_budget_try_spend(b, INT64_MAX));
    retry_budget_free(b);
}
END_TEST

/* ---- concurrency ---- */

#define THREADS 4
#define CALLS   10000

struct shared {
    struct retry_budget *b;
    atomic_llong clock_ms;
    atomic_int spent;
    atomic_int refused;
};

static void *worker_thread(void *arg)
{
    struct shared *s = arg;
    for (int i = 0; i < CALLS; i++) {
        int64_t now_ms = atomic_fetch_add(&s->clock_ms, 1);
        retry_budget_on_request(s->b, now_ms);
        for (int k = 0; k < 2; k++) {
            if (retry_budget_try_spend(s->b, now_ms))
                atomic_fetch_add(&s->spent, 1);
            else
                atomic_fetch_add(&s->refused, 1);
        }
    }
    return NULL;
}

START_TEST(test_budget_concurrent_spending_stays_within_budget)
{
    const double ratio = 0.2;
    const int min_retries = 10;
    struct shared s = {.b = retry_budget_new(ratio, 1000000, min_retries)};
    pthread_t th[THREADS];

    atomic_init(&s.clock_ms, 0);
    atomic_init(&s.spent, 0);
    atomic_init(&s.refused, 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_thread, &s), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    int spent = atomic_load(&s.spent), refused = atomic_load(&s.refused);
    ck_assert_int_le(spent, (int)(ratio * THREADS * CALLS) + min_retries);
    ck_assert_int_eq(spent + refused, THREADS * CALLS * 2);
    ck_assert_uint_eq(retry_budget_exhausted_total(s.b), (uint64_t)refused);
    /* Each retry is asked for after its request, so the budget fills up (minus the race at the
     * very end, at most one per thread). */
    ck_assert_int_ge(spent, (int)(ratio * THREADS * CALLS) + min_retries - THREADS);
    retry_budget_free(s.b);
}
END_TEST

static Suite *budget_suite(void)
{
    Suite *s = suite_create("budget");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_budget_floor_allows_min_retries_without_traffic);
    tcase_add_test(tc, test_budget_ratio_grows_with_first_attempts);
    tcase_add_test(tc, test_budget_rounding_does_not_lose_a_retry);
    tcase_add_test(tc, test_budget_window_slide_frees_budget);
    tcase_add_test(tc, test_budget_window_slides_per_sub_window);
    tcase_add_test(tc, test_budget_expired_sub_windows_do_not_count_before_reuse);
    tcase_add_test(tc, test_budget_bounds_total_attempts_when_everything_fails);
    tcase_add_test(tc, test_budget_older_now_counts_as_newest);
    tcase_add_test(tc, test_budget_degenerate_settings_are_safe);
    tcase_add_test(tc, test_budget_concurrent_spending_stays_within_budget);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(budget_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
