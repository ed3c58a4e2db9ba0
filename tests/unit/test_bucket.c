/*
 * test_bucket.c — unit tests for the token bucket (bucket.h), driven by a fake
 * clock: now_ms is a plain variable the test advances.
 */
#include "agentd/bucket.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NEVER_WAIT 0

/*
 * The token-bucket guarantee over sorted grant times: for every i <= j,
 * (j - i + 1) <= burst + rate * (t_j - t_i). With f(k) = k - rate * t_k that is
 * max_j (f(j) - min_{i<=j} f(i)) + 1 <= burst, checked in one pass.
 */
static void assert_rate_bound(const int64_t *sorted_ms, size_t n, double rate_per_s, double burst)
{
    double rate_per_ms = rate_per_s / 1000.0, min_f = 0;
    for (size_t k = 0; k < n; k++) {
        if (k > 0)
            ck_assert_int_ge(sorted_ms[k], sorted_ms[k - 1]);
        double f = (double)k - rate_per_ms * (double)sorted_ms[k];
        if (k == 0 || f < min_f)
            min_f = f;
        ck_assert_msg(f - min_f + 1 <= burst + 1e-6, "grant %zu at %lld ms exceeds the bucket", k,
                      (long long)sorted_ms[k]);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_bucket_grants_burst_then_rate)
{
    struct bucket *b = bucket_new(10, 3, 0);
    int64_t now_ms = 0;

    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), -1);
    now_ms = 99;
    ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), -1);
    now_ms = 100;
    ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), -1);
    /* A long idle period refills to burst, not beyond. */
    now_ms = 100000;
    ck_assert_double_eq_tol(bucket_tokens(b, now_ms), 3.0, 1e-9);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, now_ms, NEVER_WAIT), -1);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_reservation_waits_grow_in_arrival_order)
{
    static const int64_t want[] = {0, 0, 100, 200, 300, 400};
    struct bucket *b = bucket_new(10, 2, 0);

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_int_eq(bucket_reserve(b, 0, 10000), want[i]);
    /* Four tokens are owed at t=0 (the debt), none at t=400. */
    ck_assert_double_eq_tol(bucket_tokens(b, 0), -4.0, 1e-9);
    ck_assert_double_eq_tol(bucket_tokens(b, 400), 0.0, 1e-9);
    /* Arriving later does not overtake the queue. */
    ck_assert_int_eq(bucket_reserve(b, 50, 10000), 450);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_max_wait_refusal_reserves_nothing)
{
    struct bucket *b = bucket_new(10, 1, 0);

    ck_assert_int_eq(bucket_reserve(b, 0, 1000), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, 99), -1);
    ck_assert_int_eq(bucket_reserve(b, 0, 50), -1);
    ck_assert_double_eq_tol(bucket_tokens(b, 0), 0.0, 1e-9);
    /* Had the refusals reserved anything this would be 300. */
    ck_assert_int_eq(bucket_reserve(b, 0, 100), 100);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_low_priority_never_waits_or_jumps_the_queue)
{
    struct bucket *b = bucket_new(10, 1, 0);

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, 1000), 100); /* a high-priority waiter */
    /* At t=100 the token that arrives belongs to that waiter. */
    ck_assert_int_eq(bucket_reserve(b, 100, NEVER_WAIT), -1);
    ck_assert_int_eq(bucket_reserve(b, 100, -5), -1);
    ck_assert_int_eq(bucket_reserve(b, 200, NEVER_WAIT), 0);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_pause_is_honoured)
{
    struct bucket *b = bucket_new(10, 5, 0);

    ck_assert_int_eq(bucket_paused_until(b), INT64_MIN);
    bucket_pause_until(b, 5000);
    bucket_pause_until(b, 3000); /* an earlier pause does not shorten it */
    ck_assert_int_eq(bucket_paused_until(b), 5000);

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), -1);
    ck_assert_int_eq(bucket_reserve(b, 0, 4999), -1);
    ck_assert_int_eq(bucket_reserve(b, 0, 10000), 5000);
    ck_assert_int_eq(bucket_reserve(b, 4999, NEVER_WAIT), -1);
    /* At the end of the pause the bucket is full again, but never more than burst. */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(bucket_reserve(b, 5000, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 5000, NEVER_WAIT), -1);
    ck_assert_int_eq(bucket_reserve(b, 5000, 1000), 100);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_cancel_returns_a_token)
{
    struct bucket *b = bucket_new(0, 1, 0); /* no refill: only cancel can bring a token back */

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 10, 1000000), -1);
    bucket_cancel(b, 10);
    ck_assert_double_eq_tol(bucket_tokens(b, 10), 1.0, 1e-9);
    ck_assert_int_eq(bucket_reserve(b, 10, NEVER_WAIT), 0);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_cancel_never_overfills)
{
    struct bucket *b = bucket_new(10, 2, 0);

    bucket_cancel(b, 0);
    bucket_cancel(b, 0);
    ck_assert_double_eq_tol(bucket_tokens(b, 0), 2.0, 1e-9);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_cancel_shortens_the_queue_for_later_callers)
{
    struct bucket *b = bucket_new(10, 1, 0);

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, 1000), 100);
    ck_assert_int_eq(bucket_reserve(b, 0, 1000), 200);
    bucket_cancel(b, 0); /* the run waiting for 200 died */
    ck_assert_int_eq(bucket_reserve(b, 0, 1000), 200);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_fractional_refill)
{
    struct bucket *b = bucket_new(2.5, 1, 0); /* one token per 400 ms */

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_double_eq_tol(bucket_tokens(b, 200), 0.5, 1e-9);
    ck_assert_int_eq(bucket_reserve(b, 399, NEVER_WAIT), -1);
    ck_assert_int_eq(bucket_reserve(b, 400, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 400, 1000), 400);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_fractional_interval_does_not_drift)
{
    struct bucket *b = bucket_new(3, 2, 0); /* 333.3 ms per token */
    int64_t wait_ms = 0;

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    int64_t prev_ms = 0;
    for (int i = 1; i <= 300; i++) {
        wait_ms = bucket_reserve(b, 0, INT64_MAX);
        ck_assert_int_ge(wait_ms - prev_ms, 333);
        ck_assert_int_le(wait_ms - prev_ms, 334);
        prev_ms = wait_ms;
    }
    /* Rounding each wait up to a whole ms must not add up: 300 tokens at 3/s take 100 s. */
    ck_assert_int_ge(wait_ms, 100000);
    ck_assert_int_le(wait_ms, 100001);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_zero_rate_grants_only_the_burst)
{
    struct bucket *b = bucket_new(0, 2, 0);

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 1000000, INT64_MAX), -1);
    ck_assert_double_eq_tol(bucket_tokens(b, 1000000), 0.0, 1e-9);
    bucket_free(b);

    b = bucket_new(-3, 1, 0);
    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 1000000, INT64_MAX), -1);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_burst_below_one_still_grants)
{
    struct bucket *b = bucket_new(10, 0.25, 0);

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), -1);
    bucket_free(b);
    ck_assert_ptr_null(bucket_free(NULL));
}
END_TEST

START_TEST(test_bucket_tolerates_a_slightly_older_now)
{
    struct bucket *b = bucket_new(10, 1, 0);

    ck_assert_int_eq(bucket_reserve(b, 1000, NEVER_WAIT), 0);
    /* Another thread read the clock at 999 but got the lock later. */
    ck_assert_int_eq(bucket_reserve(b, 999, NEVER_WAIT), -1);
    ck_assert_int_eq(bucket_reserve(b, 999, 1000), 101);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_extreme_values_do_not_overflow)
{
    struct bucket *b = bucket_new(1e-300, 1, 0);

    ck_assert_int_eq(bucket_reserve(b, 0, NEVER_WAIT), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, INT64_MAX), -1);
    bucket_free(b);

    b = bucket_new(1e300, 1e300, INT64_MIN);
    ck_assert_int_eq(bucket_reserve(b, INT64_MAX, NEVER_WAIT), 0);
    bucket_free(b);

    b = bucket_new(10, 1, 0);
    bucket_pause_until(b, INT64_MAX);
    ck_assert_int_eq(bucket_reserve(b, 0, 1000), -1);
    ck_assert_int_eq(bucket_reserve(b, -10, INT64_MAX), -1);
    ck_assert_int_eq(bucket_reserve(b, 1, INT64_MAX), INT64_MAX - 1);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_random_arrivals_respect_the_rate_bound)
{
    enum { N = 20000 };
    const double rate_per_s = 50, burst = 5;
    struct bucket *b = bucket_new(rate_per_s, burst, 0);
    int64_t *granted_ms = malloc(N * sizeof(*granted_ms));
    uint64_t rng = 12345;
    int64_t now_ms = 0;
    size_t n = 0;

    for (int i = 0; i < N; i++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        now_ms += (int64_t)(rng >> 61);                        /* 0..7 ms between arrivals */
        int64_t max_wait_ms = (int64_t)((rng >> 40) % 4) * 40; /* 0, 40, 80, 120 */
        int64_t wait_ms = bucket_reserve(b, now_ms, max_wait_ms);
        ck_assert_int_le(wait_ms, max_wait_ms);
        if (wait_ms >= 0)
            granted_ms[n++] = now_ms + wait_ms;
    }
    /* Demand (about 285/s) far exceeds the rate, so the bucket really was the limit. */
    ck_assert_uint_gt(n, (size_t)(rate_per_s * (double)now_ms / 1000.0 * 0.9));
    qsort(granted_ms, n, sizeof(*granted_ms), cmp_i64);
    assert_rate_bound(granted_ms, n, rate_per_s, burst);
    free(granted_ms);
    bucket_free(b);
}
END_TEST

/* ---- concurrency ---- */

#define THREADS 4
#define CALLS   10000

struct shared {
    struct bucket *b;
    atomic_llong clock_ms;
    atomic_int next_thread;
    int64_t granted_ms[THREADS][CALLS];
    size_t granted_len[THREADS];
    atomic_int bad_waits;
};

static void *reserve_thread(void *arg)
{
    struct shared *s = arg;
    int me = atomic_fetch_add(&s->next_thread, 1);
    int64_t max_wait_ms = me * 30; /* thread 0 is "low priority" */

    for (int i = 0; i < CALLS; i++) {
        int64_t now_ms = atomic_fetch_add(&s->clock_ms, 1) / THREADS;
        int64_t wait_ms = bucket_reserve(s->b, now_ms, max_wait_ms);
        if (wait_ms > max_wait_ms || wait_ms < -1)
            atomic_fetch_add(&s->bad_waits, 1);
        if (wait_ms >= 0)
            s->granted_ms[me][s->granted_len[me]++] = now_ms + wait_ms;
    }
    return NULL;
}

START_TEST(test_bucket_concurrent_reservations_never_exceed_the_bucket)
{
    const double rate_per_s = 200, burst = 10;
    struct shared *s = calloc(1, sizeof(*s));
    int64_t *all = malloc(THREADS * CALLS * sizeof(*all));
    pthread_t th[THREADS];
    size_t n = 0;

    s->b = bucket_new(rate_per_s, burst, 0);
    atomic_init(&s->clock_ms, 0);
    atomic_init(&s->next_thread, 0);
    atomic_init(&s->bad_waits, 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, reserve_thread, s), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    for (int t = 0; t < THREADS; t++)
        for (size_t k = 0; k < s->granted_len[t]; k++)
            all[n++] = s->granted_ms[t][k];
    ck_assert_int_eq(atomic_load(&s->bad_waits), 0);
    ck_assert_uint_gt(n, 1000); /* 10 s of fake time at 200/s: the bucket was busy */
    qsort(all, n, sizeof(*all), cmp_i64);
    assert_rate_bound(all, n, rate_per_s, burst);
    free(all);
    bucket_free(s->b);
    free(s);
}
END_TEST

START_TEST(test_bucket_set_rate_takes_a_new_share_from_now_on)
{
    struct bucket *b = bucket_new(100, 10, 0);

    /* A full bucket shrunk to 2 holds 2; then one token every 100 ms at 10/s. */
    bucket_set_rate(b, 10, 2, 0);
    ck_assert_int_eq(bucket_reserve(b, 0, 0), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, 0), 0);
    ck_assert_int_eq(bucket_reserve(b, 0, 0), -1);
    ck_assert_int_eq(bucket_reserve(b, 0, 1000), 100);
    /* Back to 100/s from t=100: the reservation made stays at 100, the next comes 10 ms later. */
    bucket_set_rate(b, 100, 10, 100);
    ck_assert_int_eq(bucket_reserve(b, 100, 1000), 10);
    /* Nonsense is clamped like bucket_new: no refill, burst 1. */
    bucket_set_rate(b, -1, 0, 5000);
    ck_assert_int_eq(bucket_reserve(b, 5000, 0), 0);
    ck_assert_int_eq(bucket_reserve(b, 100000, 0), -1);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_throttle_is_open_without_a_429)
{
    struct bucket *b = bucket_new(10, 10, 0);
    bool probe = true;
    ck_assert_int_eq(bucket_throttle_gate(b, 0, &probe), 0);
    ck_assert(!probe);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_throttle_admits_one_probe_after_the_pause)
{
    struct bucket *b = bucket_new(10, 10, 0);
    bool probe = false;
    bucket_pause_until(b, 100);
    ck_assert_int_eq(bucket_throttle_gate(b, 40, &probe), 60);
    ck_assert(!probe);
    ck_assert_int_eq(bucket_throttle_gate(b, 100, &probe), 0);
    ck_assert(probe);
    /* Everyone else waits while the probe is out. */
    ck_assert_int_eq(bucket_throttle_gate(b, 101, &probe), -1);
    ck_assert(!probe);
    ck_assert_int_eq(bucket_throttle_gate(b, 150, &probe), -1);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_throttle_failed_probe_hands_over_and_recovery_ends_it)
{
    struct bucket *b = bucket_new(10, 10, 0);
    bool probe = false;
    bucket_pause_until(b, 100);
    ck_assert_int_eq(bucket_throttle_gate(b, 100, &probe), 0);
    ck_assert(probe);
    bucket_throttle_probe_done(b, false); /* e.g. connection reset: not an answer */
    ck_assert_int_eq(bucket_throttle_gate(b, 101, &probe), 0);
    ck_assert(probe);
    bucket_throttle_probe_done(b, true);
    ck_assert_int_eq(bucket_throttle_gate(b, 102, &probe), 0);
    ck_assert(!probe);
    ck_assert_int_eq(bucket_throttle_gate(b, 103, &probe), 0);
    ck_assert(!probe);
    bucket_free(b);
}
END_TEST

START_TEST(test_bucket_throttle_new_429_pause_rearms_the_probe)
{
    struct bucket *b = bucket_new(10, 10, 0);
    bool probe = false;
    bucket_pause_until(b, 100);
    ck_assert_int_eq(bucket_throttle_gate(b, 100, &probe), 0);
    ck_assert(probe);
    bucket_pause_until(b, 300); /* the probe got 429 again */
    ck_assert_int_eq(bucket_throttle_gate(b, 200, &probe), 100);
    ck_assert_int_eq(bucket_throttle_gate(b, 300, &probe), 0);
    ck_assert(probe);
    bucket_free(b);
}
END_TEST

static Suite *bucket_suite(void)
{
    Suite *s = suite_create("bucket");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_bucket_grants_burst_then_rate);
    tcase_add_test(tc, test_bucket_reservation_waits_grow_in_arrival_order);
    tcase_add_test(tc, test_bucket_max_wait_refusal_reserves_nothing);
    tcase_add_test(tc, test_bucket_low_priority_never_waits_or_jumps_the_queue);
    tcase_add_test(tc, test_bucket_pause_is_honoured);
    tcase_add_test(tc, test_bucket_cancel_returns_a_token);
    tcase_add_test(tc, test_bucket_cancel_never_overfills);
    tcase_add_test(tc, test_bucket_cancel_shortens_the_queue_for_later_callers);
    tcase_add_test(tc, test_bucket_fractional_refill);
    tcase_add_test(tc, test_bucket_fractional_interval_does_not_drift);
    tcase_add_test(tc, test_bucket_zero_rate_grants_only_the_burst);
    tcase_add_test(tc, test_bucket_burst_below_one_still_grants);
    tcase_add_test(tc, test_bucket_tolerates_a_slightly_older_now);
    tcase_add_test(tc, test_bucket_extreme_values_do_not_overflow);
    tcase_add_test(tc, test_bucket_random_arrivals_respect_the_rate_bound);
    tcase_add_test(tc, test_bucket_concurrent_reservations_never_exceed_the_bucket);
    tcase_add_test(tc, test_bucket_throttle_is_open_without_a_429);
    tcase_add_test(tc, test_bucket_throttle_admits_one_probe_after_the_pause);
    tcase_add_test(tc, test_bucket_throttle_failed_probe_hands_over_and_recovery_ends_it);
    tcase_add_test(tc, test_bucket_throttle_new_429_pause_rearms_the_probe);
    tcase_add_test(tc, test_bucket_set_rate_takes_a_new_share_from_now_on);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bucket_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
