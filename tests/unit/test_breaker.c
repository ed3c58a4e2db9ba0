/*
 * test_breaker.c — unit tests for the circuit breaker (breaker.h), driven by
 * a fake clock: now_ms is a plain variable the test advances. The traffic
 * tests drive it with a small closed-loop simulation (sim_run): C clients,
 * each with one call in flight that ends L ms after it started.
 */
#include "agentd/breaker.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The shipped defaults, except a fixed 30 s open interval (first_open_ms = open_ms): the older
   tests time the open state against it. */
static struct breaker_config default_config(void)
{
    return (struct breaker_config){
        .failure_threshold = 5,
        .failure_rate = 0.5,
        .window_ms = 10000,
        .min_calls = 10,
        .first_open_ms = 30000,
        .open_ms = 30000,
        .half_open_probes = 1,
        .enabled = true,
    };
}

/* Exactly the shipped defaults (config.c). */
static struct breaker_config shipped_config(void)
{
    struct breaker_config cfg = default_config();
    cfg.first_open_ms = 1000;
    return cfg;
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

START_TEST(test_breaker_too_few_calls_leave_the_consecutive_rule_alone)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t;
    int64_t now_ms = 0;

    /* 9 calls in the window (< min_calls 10): the rate cannot be judged, 5 in a row open it. */
    record_n(b, now_ms, BREAKER_SUCCESS, 4);
    record_n(b, now_ms, BREAKER_FAILURE, 4);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert_uint_eq(breaker_drain_transitions(b, &t, 1), 1);
    ck_assert_str_eq(t.reason, "5 consecutive failures, 9 calls in 10000 ms (too few for the rate "
                               "rule); open for 30000 ms");
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_consecutive_failures_among_many_good_calls_do_not_open_it)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t;
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_SUCCESS, 100);
    record_n(b, now_ms, BREAKER_FAILURE, 99); /* 99 in a row, but 99 of 199 calls < 50% */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* 100 of 200 */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    ck_assert_uint_eq(breaker_drain_transitions(b, &t, 1), 1);
    ck_assert_str_eq(t.reason, "100 consecutive failures and 50% of 200 calls in 10000 ms failed; "
                               "open for 30000 ms");
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_rate_without_consecutive_failures_does_not_open_it)
{
    struct breaker_config cfg = default_config();
    cfg.failure_rate = 0.3;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    /* 80% failures, but never 5 in a row: both rules must hold. */
    for (int i = 0; i < 500; i++)
        record_n(b, now_ms, i % 5 == 4 ? BREAKER_SUCCESS : BREAKER_FAILURE, 1);
    record_n(b, now_ms, BREAKER_FAILURE, 4);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* the 5th in a row */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_calls_in_flight_dilute_the_failure_rate)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    /* 100 calls start; 40 of them fail before any other answers: 40% of the calls, not 100%. */
    for (int i = 0; i < 100; i++)
        ck_assert(breaker_allow(b, now_ms, NULL));
    for (int i = 0; i < 40; i++)
        breaker_record(b, now_ms, BREAKER_FAILURE);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    for (int i = 0; i < 9; i++)
        breaker_record(b, now_ms, BREAKER_FAILURE);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    breaker_record(b, now_ms, BREAKER_FAILURE); /* 50 of 100 */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_ignored_calls_leave_the_window)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    /* 200 calls held back by a 429 pause (started, then ignored) must not dilute the rate. */
    record_n(b, now_ms, BREAKER_IGNORED, 200);
    record_n(b, now_ms, BREAKER_SUCCESS, 10);
    record_n(b, now_ms, BREAKER_FAILURE, 9); /* 9 of 19 */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* 10 of 20 (10 of 220 if the ignored counted) */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_window_slides_with_time)
{
    struct breaker_config cfg = default_config(); /* 10 s in 20 buckets of 500 ms */
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_SUCCESS, 100); /* bucket [0, 500) */
    now_ms = 9999;                             /* the last bucket that still sees them */
    record_n(b, now_ms, BREAKER_FAILURE, 20);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    now_ms = 10000; /* [0, 500) has left the window: 21 of 21 calls failed */
    record_n(b, now_ms, BREAKER_FAILURE, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_window_expiry_forgets_old_failures)
{
    struct breaker_config cfg = default_config();
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    /* 4 failures, 100 successes, then (much later) 100 successes and 4 failures: 8 failures in
       the last 208 calls would not open it anyway; what matters is that after the window the
       old calls are gone and a quiet dependency is judged by the consecutive rule alone. */
    record_n(b, now_ms, BREAKER_SUCCESS, 100);
    now_ms = 60000; /* far past the window: nothing of it remains */
    record_n(b, now_ms, BREAKER_FAILURE, 4);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_success_never_opens_it)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 1;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    record_n(b, now_ms, BREAKER_SUCCESS, 10);
    record_n(b, now_ms, BREAKER_FAILURE, 9); /* 9/19 */
    record_n(b, now_ms, BREAKER_SUCCESS, 1); /* 9/20: a success cannot open it */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* 10/21 */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    record_n(b, now_ms, BREAKER_FAILURE, 1); /* 11/22 */
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_rate_rule_below_threshold_stays_closed)
{
    struct breaker_config cfg = default_config();
    cfg.failure_threshold = 1; /* isolate the rate rule */
    cfg.failure_rate = 0.6;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    /* Alternating: 50% failures forever, under a 60% rate. */
    record_n(b, now_ms, BREAKER_SUCCESS, 10);
    for (int i = 0; i < 2000; i++) {
        record_n(b, now_ms, i % 2 ? BREAKER_FAILURE : BREAKER_SUCCESS, 1);
        now_ms += 7;
    }
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    breaker_free(b);
}
END_TEST

/* ---- traffic: a closed-loop simulation ---- */

/* C clients, each always with one call in flight of L ms, starts spread evenly over L (one
   client acts every L/C ms). During [fail_from, fail_to) every connection is reset: the calls in
   flight when it starts fail at once, and a call started inside it fails as it starts (its
   client tries again at its next turn). A client refused by the breaker counts a fast failure
   and tries again at its next turn. */
struct sim {
    int clients;
    int64_t latency_ms;
    int64_t fail_from, fail_to;
    /* results */
    int64_t attempts, failures, fast_failures;
    int64_t failures_before_open; /* failed calls before the first open; -1 = never opened */
    int64_t first_open_at, last_close_at;
    int64_t max_retry_after_ms;
};

static void sim_note_transitions(struct breaker *b, struct sim *s, int64_t now_ms)
{
    struct breaker_transition tr[BREAKER_TRANSITION_RING];
    size_t n = breaker_drain_transitions(b, tr, BREAKER_TRANSITION_RING);
    for (size_t j = 0; j < n; j++) {
        if (tr[j].to == BREAKER_OPEN && s->first_open_at < 0) {
            s->first_open_at = now_ms;
            s->failures_before_open = s->failures;
        }
        if (tr[j].to == BREAKER_CLOSED)
            s->last_close_at = now_ms;
    }
}

static void sim_fail(struct breaker *b, struct sim *s, int64_t now_ms)
{
    breaker_record(b, now_ms, BREAKER_FAILURE);
    s->failures++;
    sim_note_transitions(b, s, now_ms);
}

static void sim_run(struct breaker *b, struct sim *s, int64_t to_ms)
{
    int64_t step = s->latency_ms / s->clients;
    ck_assert_int_gt(step, 0);
    s->failures_before_open = -1;
    s->first_open_at = -1;
    s->last_close_at = -1;
    bool *in_flight = calloc((size_t)s->clients, sizeof(bool)); /* ends at the client's turn */
    bool reset_done = false;
    int64_t k = 0;
    for (int64_t now_ms = 0; now_ms < to_ms; now_ms += step, k++) {
        int i = (int)(k % s->clients);
        bool blip = now_ms >= s->fail_from && now_ms < s->fail_to;
        if (blip && !reset_done) {
            reset_done = true;
            for (int j = 0; j < s->clients; j++) {
                if (in_flight[j]) {
                    in_flight[j] = false;
                    sim_fail(b, s, now_ms);
                }
            }
        }
        if (in_flight[i]) {
            in_flight[i] = false;
            breaker_record(b, now_ms, BREAKER_SUCCESS);
            sim_note_transitions(b, s, now_ms);
        }
        int64_t retry_after_ms = 0;
        if (breaker_allow(b, now_ms, &retry_after_ms)) {
            s->attempts++;
            if (blip)
                sim_fail(b, s, now_ms);
            else
                in_flight[i] = true;
        } else {
            s->fast_failures++;
            if (retry_after_ms > s->max_retry_after_ms)
                s->max_retry_after_ms = retry_after_ms;
        }
        sim_note_transitions(b, s, now_ms);
    }
    free(in_flight);
}

START_TEST(test_breaker_41_failures_among_10000_calls_never_open_it)
{
    struct breaker_config cfg = shipped_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    int64_t now_ms = 1000;

    /* 10 000 runs start at once; 41 connects are refused at once, before any answer. */
    for (int i = 0; i < 10000; i++)
        ck_assert(breaker_allow(b, now_ms, NULL));
    for (int i = 0; i < 41; i++)
        breaker_record(b, now_ms + 5, BREAKER_FAILURE);
    ck_assert_int_eq(breaker_state(b, now_ms + 5), BREAKER_CLOSED);
    /* Then the rest answer, a second later, the way a 1 s upstream does. */
    for (int i = 0; i < 10000 - 41; i++)
        breaker_record(b, now_ms + 1000 + i / 100, BREAKER_SUCCESS);
    ck_assert_int_eq(breaker_state(b, now_ms + 1100), BREAKER_CLOSED);
    ck_assert_uint_eq(breaker_transitions_total(b), 0);

    /* The same 41 spread as runs of 5 to 11 failures in a row through steady traffic. */
    uint64_t rng = 7;
    int left = 41;
    for (int i = 0; i < 10000; i++) {
        now_ms += 1;
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        if (left > 0 && (rng >> 58) == 0) { /* 1 in 64 */
            int burst = left < 11 ? left : 5 + (int)((rng >> 20) % 7);
            record_n(b, now_ms, BREAKER_FAILURE, burst);
            left -= burst;
        }
        record_n(b, now_ms, BREAKER_SUCCESS, 1);
    }
    ck_assert_int_eq(left, 0);
    ck_assert_uint_eq(breaker_transitions_total(b), 0);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_outage_at_low_traffic_opens_after_5_attempts)
{
    struct breaker_config cfg = shipped_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    /* One call every 2 s, the last minute healthy, then everything fails. */
    struct sim s = {.clients = 1, .latency_ms = 2000, .fail_from = 60000, .fail_to = INT64_MAX};

    sim_run(b, &s, 120000);
    ck_assert_int_eq(s.failures_before_open, 5);
    /* At 60 s the call in flight and the next one fail at once, then one more every 2 s. */
    ck_assert_int_eq(s.first_open_at, 60000 + 3 * 2000);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_outage_at_high_concurrency_opens_within_a_round)
{
    struct breaker_config cfg = shipped_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    /* 250 calls in flight from a cold start, upstream down from the beginning: open before the
       first round of calls has failed. */
    struct sim s = {.clients = 250, .latency_ms = 1000, .fail_from = 0, .fail_to = INT64_MAX};

    sim_run(b, &s, 5000);
    ck_assert_int_ge(s.failures_before_open, 5);
    ck_assert_int_le(s.failures_before_open, 250);
    ck_assert_int_le(s.first_open_at, 2000);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_outage_after_steady_traffic_opens_within_half_a_window)
{
    struct breaker_config cfg = shipped_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    /* 250 in flight for 20 s, then everything fails: failures reach half the window's calls
       after at most failure_rate × window_ms = 5 s. */
    struct sim s = {.clients = 250, .latency_ms = 1000, .fail_from = 20000, .fail_to = INT64_MAX};

    sim_run(b, &s, 40000);
    ck_assert_int_gt(s.first_open_at, 20000);
    ck_assert_int_le(s.first_open_at, 20000 + 5000 + 500);
    /* Open from then on, probed ever less often: after the first 5 s of the outage (250 calls a
       second) only probes reach the dependency. */
    ck_assert_int_le(s.attempts, 20 * 250 + 5 * 250 + 2 * 250 + 20);
    ck_assert_int_gt(s.fast_failures, 10 * 250);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_blip_under_load_never_opens_it)
{
    struct breaker_config cfg = shipped_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    /* 250 in flight (1 s calls) for 5 s, then for 0.25 s every call ends in a reset (the 250
       in flight and the new ones alike), then healthy again. */
    struct sim s = {.clients = 250, .latency_ms = 1000, .fail_from = 5000, .fail_to = 5250};

    sim_run(b, &s, 15000);
    ck_assert_int_ge(s.failures, 60); /* the blip did fail calls... */
    ck_assert_int_eq(s.fast_failures, 0);
    ck_assert_uint_eq(breaker_transitions_total(b), 0); /* ...and the breaker never opened */
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_blip_that_opens_it_closes_within_2_s)
{
    struct breaker_config cfg = shipped_config();
    struct breaker *b = breaker_new("anthropic", &cfg);
    /* The blip hits 200 ms after a cold start: the window holds little else, so it opens; the
       short first interval lets the probe in after 1 s, and it answers a second later. */
    struct sim s = {.clients = 250, .latency_ms = 1000, .fail_from = 200, .fail_to = 450};

    sim_run(b, &s, 10000);
    ck_assert_int_ge(s.first_open_at, 200);
    ck_assert_int_lt(s.first_open_at, 450);
    ck_assert_int_le(s.max_retry_after_ms, 1000);
    ck_assert_int_gt(s.last_close_at, s.first_open_at);
    ck_assert_int_le(s.last_close_at - s.first_open_at, 2000 + 2 * 4);
    ck_assert_int_eq(breaker_state(b, 10000), BREAKER_CLOSED);
    /* Fast failures only while it was open or probing: two seconds of turns, not 30 s. */
    ck_assert_int_le(s.fast_failures, 250 * 2 + 2);
    breaker_free(b);
}
END_TEST

/* Half-opens b (open at now_ms) once its interval has passed and feeds the probe `outcome`;
   returns the retry-after it gave right after opening. */
static int64_t open_interval_then_probe(struct breaker *b, int64_t *now_ms,
                                        enum breaker_outcome outcome)
{
    int64_t retry_after_ms = 0;
    ck_assert(!breaker_allow(b, *now_ms, &retry_after_ms));
    ck_assert_int_eq(breaker_state(b, *now_ms + retry_after_ms - 1), BREAKER_OPEN);
    *now_ms += retry_after_ms;
    ck_assert(breaker_allow(b, *now_ms, NULL));
    breaker_record(b, *now_ms, outcome);
    return retry_after_ms;
}

START_TEST(test_breaker_open_interval_doubles_per_trip_up_to_open_ms)
{
    struct breaker_config cfg = shipped_config(); /* 1 s doubling to 30 s */
    struct breaker *b = breaker_new("dep", &cfg);
    struct breaker_transition t[4];
    int64_t now_ms = 0;
    static const int64_t want[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000};

    trip(b, now_ms, 5);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_FAILURE), want[i]);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_OPEN);
    while (breaker_drain_transitions(b, t, 4) > 0)
        ;
    /* A probe succeeds, but the circuit trips again at once: the interval keeps growing. */
    ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_SUCCESS), 30000);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    trip(b, now_ms, 5);
    ck_assert_uint_eq(breaker_drain_transitions(b, t, 4), 3);
    ck_assert_str_eq(t[0].reason, "open for 30000 ms");
    ck_assert_str_eq(t[1].reason, "probe succeeded");
    ck_assert_str_eq(t[2].reason, "5 consecutive failures, 5 calls in 10000 ms (too few for the "
                                  "rate rule); open for 30000 ms");
    /* Closed for a whole window this time: the next trip starts at 1 s again. */
    ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_SUCCESS), 30000);
    now_ms += 10000;
    record_n(b, now_ms, BREAKER_SUCCESS, 3);
    trip(b, now_ms, 5);
    ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_FAILURE), 1000);
    ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_FAILURE), 2000);
    breaker_free(b);
}
END_TEST

START_TEST(test_breaker_first_open_is_clamped_to_open_ms)
{
    struct breaker_config cfg = shipped_config();
    cfg.first_open_ms = 5000;
    cfg.open_ms = 1500;
    struct breaker *b = breaker_new("dep", &cfg);
    int64_t now_ms = 0;

    trip(b, now_ms, 5);
    ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_FAILURE), 1500);
    ck_assert_int_eq(open_interval_then_probe(b, &now_ms, BREAKER_FAILURE), 1500);
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

    trip(b, now_ms, 5);
    now_ms = 30000;
    ck_assert(breaker_allow(b, now_ms, NULL));
    breaker_record(b, now_ms, BREAKER_SUCCESS);
    ck_assert_int_eq(breaker_state(b, now_ms), BREAKER_CLOSED);
    /* Fresh counters: 4 failures do not reach the threshold (9 in a row without the reset). */
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
        {BREAKER_CLOSED, BREAKER_OPEN,
         "5 consecutive failures, 5 calls in 10000 ms (too few for the rate rule); open for "
         "30000 ms"},
        {BREAKER_OPEN, BREAKER_HALF_OPEN, "open for 30000 ms"},
        {BREAKER_HALF_OPEN, BREAKER_OPEN, "probe failed; open for 30000 ms"},
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
    cfg.first_open_ms = INT64_MAX;
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
    cfg.failure_rate = 0; /* the consecutive rule alone, so that it keeps churning */
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
    cfg.window_ms = 20000; /* the window starts empty; the consecutive count stays */
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
    tcase_add_test(tc, test_breaker_too_few_calls_leave_the_consecutive_rule_alone);
    tcase_add_test(tc, test_breaker_consecutive_failures_among_many_good_calls_do_not_open_it);
    tcase_add_test(tc, test_breaker_rate_without_consecutive_failures_does_not_open_it);
    tcase_add_test(tc, test_breaker_calls_in_flight_dilute_the_failure_rate);
    tcase_add_test(tc, test_breaker_ignored_calls_leave_the_window);
    tcase_add_test(tc, test_breaker_window_slides_with_time);
    tcase_add_test(tc, test_breaker_window_expiry_forgets_old_failures);
    tcase_add_test(tc, test_breaker_success_never_opens_it);
    tcase_add_test(tc, test_breaker_rate_rule_below_threshold_stays_closed);
    tcase_add_test(tc, test_breaker_41_failures_among_10000_calls_never_open_it);
    tcase_add_test(tc, test_breaker_outage_at_low_traffic_opens_after_5_attempts);
    tcase_add_test(tc, test_breaker_outage_at_high_concurrency_opens_within_a_round);
    tcase_add_test(tc, test_breaker_outage_after_steady_traffic_opens_within_half_a_window);
    tcase_add_test(tc, test_breaker_blip_under_load_never_opens_it);
    tcase_add_test(tc, test_breaker_blip_that_opens_it_closes_within_2_s);
    tcase_add_test(tc, test_breaker_open_interval_doubles_per_trip_up_to_open_ms);
    tcase_add_test(tc, test_breaker_first_open_is_clamped_to_open_ms);
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
