/*
 * test_breaker.c — unit tests for the circuit breaker (breaker.h), driven by
 * a fake clock: now_ms is a plain variable the test advances.
 */
#include "agentd/breaker.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static struct breaker_config default_config(void)
{
    return (struct breaker_config){
        .failure_threshold = 5,
        .failure_rate = 0.5,
        .window = 20,
        .min_calls = 10,
        .open_ms = 30000,
        .half_open_probes = 1,
        .enabled = true,
    };
}

static void record_n(struct breaker *b, int64_t now_ms, enum breaker_outcome o, int n)
{
    for (int i = 0; i < n; i++) {
        ck_assert(breaker_allow(b, now_ms, NULL));
        breaker_record(b, now_ms, o);
    }
}

/* Opens b at now_ms with consecutive failures. */
static void trip(struct breaker *b, int64_t now_ms, int threshold)
{
    record_n(b, now_ms, BREAKER_FAILURE, threshold);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
}

START_TEST(test_breaker_state_names)
{
    ck_assert_str_eq(breaker_state_name(BREAKER_CLOSED), "closed");
    ck_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    ck_assert_str_eq(breaker_state_name(BREAKER_OPEN), "open");
    ck_assert_str_eq(breaker_state_name((enum breaker_state)42), "unknown");
    ck_assert_int_eq(BREAKER_CLOSED, 0);
    ck_assert_int_eq(BREAKER_HALF_OPEN, 1);
    ck_assert_int_eq(BREAKER_OPEN, 2);
}
END_TEST

START_TEST(test_breaker_keeps_dependency_name)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(breaker_dependency(b), "anthropic");
    ck_assert_ptr_null(breaker_free(b));
    ck_assert_ptr_null(breaker_free(NULL));
}
END_TEST

START_TEST(test_breaker_opens_after_n_consecutive_failures_not_n_minus_1)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 1000;

    record_n(b, now_ms, BREAKER_FAILURE, 4);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    ck_assert(breaker_allow(b, now_ms, NULL));
    breaker_record(b, now_ms, BREAKER_FAILURE);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert(!breaker_allow(b, now_ms, NULL));
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_success_resets_consecutive_count)
{
    struct breaker_config cfg = default_config();
    cfg.failure_rate = 0; /* isolate the consecutive rule */
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_FAILURE, 4);
    record_n(b, now_ms, BREAKER_SUCCESS, 1);
    record_n(b, now_ms, BREAKER_FAILURE, 4);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_ignored_outcome_counts_neither_way)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_FAILURE, 4);
    record_n(b, now_ms, BREAKER_IGNORED, 50);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_rate_rule_waits_for_min_calls)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 100; /* isolate the rate rule */
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t;
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_FAILURE, 9); /* 100% but only 9 calls */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert_uint_eq(breaker_drain_transitions(b, &t, 1), 1);
    ck_assert_str_eq(t.reason, "failure rate 100% over last 10 calls");
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_rate_rule_uses_sliding_window)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 100;
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t;
    int64_t now_ms = 0;

    /* 20 successes, then failures push them out of the 20-call window one by one. */
    record_n(b, now_ms, BREAKER_SUCCESS, 20);
    record_n(b, now_ms, BREAKER_FAILURE, 9); /* 9/20 = 45% */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* 10/20 = 50% (10/30 if nothing slid out) */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert_uint_eq(breaker_drain_transitions(b, &t, 1), 1);
    ck_assert_str_eq(t.reason, "failure rate 50% over last 20 calls");
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_success_never_opens_it)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 100;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_FAILURE, 5);
    record_n(b, now_ms, BREAKER_SUCCESS, 4); /* 5/9: rate met, min_calls not */
    record_n(b, now_ms, BREAKER_SUCCESS, 1); /* 5/10 reaches both, but on a success */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* 6/11 */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_rate_rule_below_threshold_stays_closed)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 100;
    cfg.failure_rate = 0.6;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    /* Alternating: 50% failures forever, under a 60% rate. */
    for (int i = 0; i < 200; i++)
        record_n(b, now_ms, i % 2 ? BREAKER_FAILURE : BREAKER_SUCCESS, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_fails_fast_while_open_with_retry_after)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 1000, retry_after_ms = -7;

    trip(b, now_ms, 5);
    ck_assert(!breaker_allow(b, now_ms, &retry_after_ms));
    ck_assert_int_eq(retry_after_ms, 30000);
    now_ms = 21000;
    ck_assert(!breaker_allow(b, now_ms, &retry_after_ms));
    ck_assert_int_eq(retry_after_ms, 10000);
    now_ms = 30999;
    ck_assert(!breaker_allow(b, now_ms, &retry_after_ms));
    ck_assert_int_eq(retry_after_ms, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_retry_after_untouched_when_allowed)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t retry_after_ms = -7;

    ck_assert(breaker_allow(b, 0, &retry_after_ms));
    ck_assert_int_eq(retry_after_ms, -7);
    breaker_record(b, 0, BREAKER_SUCCESS);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_half_open_after_open_ms)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 1000;

    trip(b, now_ms, 5);
    now_ms += 30000;
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_HALF_OPEN);
    ck_assert(breaker_allow(b, now_ms, NULL));
    breaker_record(b, now_ms, BREAKER_SUCCESS);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_half_open_admits_exactly_the_configured_probes)
{
    struct breaker_config cfg = default_config();
    cfg.half_open_probes = 3;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0, retry_after_ms = 0;

    trip(b, now_ms, 5);
    now_ms = 30000;
    for (int i = 0; i < 3; i++)
        ck_assert(breaker_allow(b, now_ms, NULL));
    ck_assert(!breaker_allow(b, now_ms, &retry_after_ms));
    ck_assert_int_eq(retry_after_ms, BREAKER_PROBES_BUSY_RETRY_MS);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_HALF_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_probe_success_closes_and_resets_counters)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_SUCCESS, 15);
    trip(b, now_ms, 5);
    now_ms = 30000;
    ck_assert(breaker_allow(b, now_ms, NULL));
    breaker_record(b, now_ms, BREAKER_SUCCESS);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    /* Fresh counters: 4 failures neither reach the threshold nor the rate rule's min_calls. */
    record_n(b, now_ms, BREAKER_FAILURE, 4);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_probe_failure_reopens_for_fresh_open_ms)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0, retry_after_ms = 0;

    trip(b, now_ms, 5);
    now_ms = 45000; /* well past open_ms */
    ck_assert(breaker_allow(b, now_ms, NULL));
    now_ms = 46000;
    breaker_record(b, now_ms, BREAKER_FAILURE);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert(!breaker_allow(b, now_ms, &retry_after_ms));
    ck_assert_int_eq(retry_after_ms, 30000);
    ck_assert_int_eq(breaker_state(b, now_ms + 29999), BREAKER_OPEN);
    ck_assert_int_eq(breaker_state(b, now_ms + 30000), BREAKER_HALF_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_ignored_frees_a_probe_slot)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    trip(b, now_ms, 5);
    now_ms = 30000;
    ck_assert(breaker_allow(b, now_ms, NULL));
    ck_assert(!breaker_allow(b, now_ms, NULL));
    breaker_record(b, now_ms, BREAKER_IGNORED);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_HALF_OPEN);
    ck_assert(breaker_allow(b, now_ms, NULL));
    ck_assert(!breaker_allow(b, now_ms, NULL));
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_late_answers_while_open_are_ignored)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    trip(b, now_ms, 5);
    breaker_record(b, now_ms, BREAKER_SUCCESS);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_disabled_always_allows)
{
    struct breaker_config cfg = default_config();
    cfg.enabled = false;
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t;

    record_n(b, 0, BREAKER_FAILURE, 1000);
    ck_assert(breaker_allow(b, 0, NULL));
    ck_assert_int_eq(breaker_state(b, 0), BREAKER_CLOSED);
    ck_assert_uint_eq(breaker_drain_transitions(b, &t, 1), 0);
    ck_assert_uint_eq(breaker_transitions_total(b), 0);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_transitions_drained_once_each_with_reasons)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t[8];
    int64_t now_ms = 0;

    trip(b, now_ms, 5); /* closed -> open */
    now_ms = 30000;
    ck_assert(breaker_allow(b, now_ms, NULL));  /* open -> half-open */
    breaker_record(b, now_ms, BREAKER_FAILURE); /* half-open -> open */
    now_ms = 60000;
    ck_assert(breaker_allow(b, now_ms, NULL));  /* open -> half-open */
    breaker_record(b, now_ms, BREAKER_SUCCESS); /* half-open -> closed */
    ck_assert_uint_eq(breaker_transitions_total(b), 5);

    ck_assert_uint_eq(breaker_drain_transitions(b, t, 2), 2);
    ck_assert_uint_eq(breaker_drain_transitions(b, t + 2, 8), 3);
    ck_assert_uint_eq(breaker_drain_transitions(b, t + 5, 3), 0);

    static const struct {
        enum breaker_state from, to;
        const char *reason;
    } want[] = {
        {BREAKER_CLOSED, BREAKER_OPEN, "5 consecutive failures"},
        {BREAKER_OPEN, BREAKER_HALF_OPEN, "open for 30000 ms"},
        {BREAKER_HALF_OPEN, BREAKER_OPEN, "probe failed"},
        {BREAKER_OPEN, BREAKER_HALF_OPEN, "open for 30000 ms"},
        {BREAKER_HALF_OPEN, BREAKER_CLOSED, "probe succeeded"},
    };
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(t[i].from, want[i].from);
        ck_assert_int_eq(t[i].to, want[i].to);
        ck_assert_str_eq(t[i].reason, want[i].reason);
    }
    ck_assert_uint_eq(breaker_transitions_total(b), 5);
    ck_assert_uint_eq(breaker_transitions_dropped(b), 0);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_transition_ring_drops_oldest)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 1;
    cfg.open_ms = 10;
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t[BREAKER_TRANSITION_RING + 4];
    int64_t now_ms = 0;

    /* 10 cycles of closed -> open -> half-open -> closed: 3 transitions each. */
    for (int i = 0; i < 10; i++) {
        ck_assert(breaker_allow(b, now_ms, NULL));
        breaker_record(b, now_ms, BREAKER_FAILURE); /* -> open */
        now_ms += 10;
        ck_assert(breaker_allow(b, now_ms, NULL));  /* -> half-open */
        breaker_record(b, now_ms, BREAKER_SUCCESS); /* -> closed */
    }
    ck_assert_uint_eq(breaker_transitions_total(b), 30);
    ck_assert_uint_eq(breaker_transitions_dropped(b), 30 - BREAKER_TRANSITION_RING);
    size_t n = breaker_drain_transitions(b, t, sizeof(t) / sizeof(t[0]));
    ck_assert_uint_eq(n, BREAKER_TRANSITION_RING);
    /* The newest survive: the last one is the final close. */
    ck_assert_int_eq(t[n - 1].to, BREAKER_CLOSED);
    ck_assert_str_eq(t[n - 1].reason, "probe succeeded");
    /* 30 - 16 = 14 dropped, so the first kept is transition #15 (index 14): 14 % 3 == 2 -> close.
     */
    ck_assert_int_eq(t[0].to, BREAKER_CLOSED);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_huge_open_ms_does_not_overflow)
{
    struct breaker_config cfg = default_config();
    cfg.open_ms = INT64_MAX;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t retry_after_ms = 0, now_ms = 1000;

    trip(b, now_ms, 5);
    ck_assert(!breaker_allow(b, now_ms, &retry_after_ms));
    ck_assert_int_gt(retry_after_ms, 0);
    ck_assert_int_eq(breaker_state(b, INT64_MAX - 1), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

/* ---- concurrency ---- */

#define THREADS 4
#define CALLS   10000

struct probe_race {
    struct breaker *b;
    int64_t now_ms;
    atomic_int admitted;
};

static void *probe_race_thread(void *arg)
{
    struct probe_race *r = arg;
    for (int i = 0; i < CALLS; i++)
        if (breaker_allow(r->b, r->now_ms, NULL))
            atomic_fetch_add(&r->admitted, 1);
    return NULL;
}

START_TEST(test_breaker_concurrent_half_open_admits_exactly_the_probes)
{
    struct breaker_config cfg = default_config();
    cfg.half_open_probes = 2;
    struct probe_race r = {.b = breaker_new("dep", &cfg), .now_ms = 30000};
    pthread_t th[THREADS];

    trip(r.b, 0, 5);
    atomic_init(&r.admitted, 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, probe_race_thread, &r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&r.admitted), 2);
    breaker_free(r.b);
}
END_TEST

struct churn {
    struct breaker *b;
    atomic_llong clock_ms; /* shared fake clock, advanced by every call */
    atomic_int running;
    atomic_uint seeds;
    struct breaker_transition seen[THREADS * CALLS * 2];
    size_t seen_len;
};

static void *churn_thread(void *arg)
{
    struct churn *c = arg;
    uint64_t rng = atomic_fetch_add(&c->seeds, 1) + 1;
    for (int i = 0; i < CALLS; i++) {
        int64_t now_ms = atomic_fetch_add(&c->clock_ms, 1);
        if (!breaker_allow(c->b, now_ms, NULL))
            continue;
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        int r = (int)(rng >> 60); /* 0..15 */
        breaker_record(c->b, now_ms,
                       r < 6   ? BREAKER_FAILURE
                       : r < 8 ? BREAKER_IGNORED
                               : BREAKER_SUCCESS);
    }
    atomic_fetch_sub(&c->running, 1);
    return NULL;
}

static void *drain_thread(void *arg)
{
    struct churn *c = arg;
    size_t cap = sizeof(c->seen) / sizeof(c->seen[0]);
    for (;;) {
        bool last = atomic_load(&c->running) == 0;
        c->seen_len += breaker_drain_transitions(c->b, c->seen + c->seen_len, cap - c->seen_len);
        if (last)
            return NULL;
    }
}

START_TEST(test_breaker_concurrent_churn_keeps_transitions_consistent)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 3;
    cfg.open_ms = 50;
    cfg.half_open_probes = 2;
    struct churn *c = calloc(1, sizeof(*c));
    pthread_t th[THREADS], drainer;

    c->b = breaker_new("dep", &cfg);
    atomic_init(&c->clock_ms, 0);
    atomic_init(&c->running, THREADS);
    atomic_init(&c->seeds, 0);
    ck_assert_int_eq(pthread_create(&drainer, NULL, drain_thread, c), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, churn_thread, c), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(drainer, NULL);

    uint64_t total = breaker_transitions_total(c->b);
    uint64_t dropped = breaker_transitions_dropped(c->b);
    ck_assert_uint_gt(total, 10); /* the mix really churned */
    ck_assert_uint_eq(c->seen_len + dropped, total);
    if (dropped == 0) {
        /* Every change starts where the previous one ended. */
        ck_assert_int_eq(c->seen[0].from, BREAKER_CLOSED);
        for (size_t i = 1; i < c->seen_len; i++)
            ck_assert_int_eq(c->seen[i].from, c->seen[i - 1].to);
    }
    for (size_t i = 0; i < c->seen_len; i++)
        ck_assert_int_ne(c->seen[i].from, c->seen[i].to);
    breaker_free(c->b);
    free(c);
}
END_TEST

START_TEST(test_breaker_set_config_applies_new_thresholds_and_keeps_the_state)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 1000;

    record_n(b, now_ms, BREAKER_FAILURE, 3);
    cfg.failure_threshold = 4;
    cfg.open_ms = 500;
    cfg.window = 1000; /* ignored: the ring keeps its size */
    breaker_set_config(b, &cfg);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED); /* 3 failures kept */
    record_n(b, now_ms, BREAKER_FAILURE, 1);                    /* the 4th opens it */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert(!breaker_allow(b, now_ms + 499, NULL));
    ck_assert(breaker_allow(b, now_ms + 500, NULL)); /* the new open time */
    breaker_free(b);
}
END_TEST

static Suite *breaker_suite(void)
{
    Suite *s = suite_create("breaker");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_breaker_state_names);
    tcase_add_test(tc, test_breaker_keeps_dependency_name);
    tcase_add_test(tc, test_breaker_opens_after_n_consecutive_failures_not_n_minus_1);
    tcase_add_test(tc, test_breaker_success_resets_consecutive_count);
    tcase_add_test(tc, test_breaker_ignored_outcome_counts_neither_way);
    tcase_add_test(tc, test_breaker_rate_rule_waits_for_min_calls);
    tcase_add_test(tc, test_breaker_rate_rule_uses_sliding_window);
    tcase_add_test(tc, test_breaker_success_never_opens_it);
    tcase_add_test(tc, test_breaker_rate_rule_below_threshold_stays_closed);
    tcase_add_test(tc, test_breaker_fails_fast_while_open_with_retry_after);
    tcase_add_test(tc, test_breaker_retry_after_untouched_when_allowed);
    tcase_add_test(tc, test_breaker_half_open_after_open_ms);
    tcase_add_test(tc, test_breaker_half_open_admits_exactly_the_configured_probes);
    tcase_add_test(tc, test_breaker_probe_success_closes_and_resets_counters);
    tcase_add_test(tc, test_breaker_probe_failure_reopens_for_fresh_open_ms);
    tcase_add_test(tc, test_breaker_ignored_frees_a_probe_slot);
    tcase_add_test(tc, test_breaker_late_answers_while_open_are_ignored);
    tcase_add_test(tc, test_breaker_disabled_always_allows);
    tcase_add_test(tc, test_breaker_transitions_drained_once_each_with_reasons);
    tcase_add_test(tc, test_breaker_transition_ring_drops_oldest);
    tcase_add_test(tc, test_breaker_huge_open_ms_does_not_overflow);
    tcase_add_test(tc, test_breaker_concurrent_half_open_admits_exactly_the_probes);
    tcase_add_test(tc, test_breaker_concurrent_churn_keeps_transitions_consistent);
    tcase_add_test(tc, test_breaker_set_config_applies_new_thresholds_and_keeps_the_state);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(breaker_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
