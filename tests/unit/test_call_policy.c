/*
 * test_call_policy.c — unit tests for the call policy (call_policy.h): the
 * whole life of an outbound call driven event by event with a fake clock,
 * against real breakers, buckets and retry budgets.
 */
#include "agentd/call_policy.h"

#include <check.h>
#include <stdlib.h>

#include "agentd/breaker.h"
#include "agentd/bucket.h"
#include "agentd/budget.h"
#include "agentd/ratelimit_headers.h"

#define T0 1000000

struct fixture {
    struct call_policy policy;
    struct call_guards g;
    struct call_progress st;
    uint64_t rng;
    int64_t now;
};

static struct fixture *fx;

/* Generous defaults: nothing trips unless a test says so. */
static void setup_with(int retry_max, double rate, double burst, double budget_ratio,
                       int budget_min, int breaker_failures)
{
    fx = calloc(1, sizeof(*fx));
    fx->policy = (struct call_policy){.retry_max = retry_max,
                                      .retry_initial_ms = 100,
                                      .retry_max_delay_ms = 1000,
                                      .retry_after_cap_ms = 60000};
    struct breaker_config bc = {.failure_threshold = breaker_failures,
                                .failure_rate = 0,
                                .window_ms = 10000,
                                .min_calls = 10,
                                .first_open_ms = 30000,
                                .open_ms = 30000,
                                .half_open_probes = 1,
                                .enabled = true};
    fx->g.breaker = breaker_new("dep", &bc);
    fx->g.bucket = bucket_new(rate, burst, T0);
    fx->g.budget = retry_budget_new(budget_ratio, 10000, budget_min);
    fx->now = T0;
    fx->rng = 42;
    call_progress_init(&fx->st, T0 + 30000, false);
}

static void setup(void)
{
    setup_with(3, 1000, 1000, 1.0, 100, 100);
}

static void teardown(void)
{
    breaker_free(fx->g.breaker);
    bucket_free(fx->g.bucket);
    retry_budget_free(fx->g.budget);
    free(fx);
}

static struct call_verdict ev(const struct call_event *e)
{
    struct call_verdict v;
    call_policy_step(&fx->policy, &fx->g, &fx->st, e, fx->now, &fx->rng, &v);
    return v;
}

static struct call_verdict ready(void)
{
    return ev(&(struct call_event){.kind = CALL_EV_READY});
}

static void launched(void)
{
    struct call_verdict v = ev(&(struct call_event){.kind = CALL_EV_LAUNCHED});
    ck_assert_int_eq(v.action, CALL_ACT_NONE);
}

static struct call_verdict answered(long status, const char *retry_after)
{
    return ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END,
                                   .transport = CALL_TRANSPORT_ANSWERED,
                                   .status = status,
                                   .retry_after_hdr = retry_after});
}

/* READY must say LAUNCH; the attempt goes out. */
static void start_attempt(void)
{
    struct call_verdict v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);
    launched();
}

START_TEST(test_policy_success_on_first_attempt)
{
    start_attempt();
    struct call_verdict v = answered(200, NULL);
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_OK);
    ck_assert_int_eq(v.note, CALL_NOTE_SUCCESS);
    ck_assert_int_eq(fx->st.attempts, 1);
    ck_assert_int_eq(fx->st.phase, CALL_PHASE_IDLE);
}
END_TEST

START_TEST(test_policy_transient_failures_retry_with_bounded_backoff_then_exhaust)
{
    for (int i = 0; i <= 3; i++) {
        start_attempt();
        struct call_verdict v = answered(503, NULL);
        if (i < 3) {
            ck_assert_int_eq(v.action, CALL_ACT_WAIT);
            ck_assert_int_eq(v.note, CALL_NOTE_RETRY);
            ck_assert_int_eq(v.reason, CALL_RETRY_HTTP_5XX);
            /* full jitter: 0..min(1000, 100 * 2^i) */
            int64_t cap = 100 << i;
            ck_assert_int_ge(v.delay_ms, 0);
            ck_assert_int_le(v.delay_ms, cap);
            ck_assert_int_eq(v.at_ms, fx->now + v.delay_ms);
            fx->now = v.at_ms;
        } else {
            ck_assert_int_eq(v.action, CALL_ACT_FINISH);
            ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
            ck_assert_int_eq(v.note, CALL_NOTE_RETRIES_EXHAUSTED);
            ck_assert_int_eq(v.retry_after_ms, CALL_POLICY_DEFAULT_RETRY_AFTER_MS);
        }
    }
    ck_assert_int_eq(fx->st.attempts, 4);
}
END_TEST

START_TEST(test_policy_timeout_and_connection_error_are_transient)
{
    start_attempt();
    struct call_verdict v =
        ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END, .transport = CALL_TRANSPORT_TIMEOUT});
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.reason, CALL_RETRY_TIMEOUT);
    fx->now = v.at_ms;
    start_attempt();
    v = ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END, .transport = CALL_TRANSPORT_ERROR});
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.reason, CALL_RETRY_CONNECTION_ERROR);
}
END_TEST

START_TEST(test_policy_permanent_status_is_not_retried_nor_held_against_the_breaker)
{
    teardown();
    setup_with(3, 1000, 1000, 1.0, 100, 1);
    start_attempt();
    struct call_verdict v = answered(400, NULL);
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_PERMANENT);
    ck_assert_int_eq(breaker_state(fx->g.breaker, fx->now), BREAKER_CLOSED);
}
END_TEST

START_TEST(test_policy_should_retry_false_overrides_a_transient_status)
{
    start_attempt();
    struct call_verdict v = ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END,
                                                    .transport = CALL_TRANSPORT_ANSWERED,
                                                    .status = 503,
                                                    .should_retry_hdr = "false"});
    ck_assert_int_eq(v.outcome, CALL_PERMANENT);
}
END_TEST

START_TEST(test_policy_throttled_retries_do_not_consume_retry_max)
{
    teardown();
    setup_with(0, 1000, 1000, 1.0, 100, 100);
    for (int i = 0; i < 3; i++) {
        struct call_verdict v = ready();
        /* after a 429 the dependency is paused: the call waits for the pause, then probes */
        while (v.action == CALL_ACT_WAIT) {
            fx->now = v.at_ms;
            v = ready();
        }
        ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);
        launched();
        v = answered(429, "1");
        ck_assert_int_eq(v.action, CALL_ACT_WAIT);
        ck_assert_int_eq(v.note, CALL_NOTE_RETRY);
        ck_assert_int_eq(v.reason, CALL_RETRY_HTTP_429);
        ck_assert_int_eq(v.delay_ms, 1000);
        ck_assert_int_eq(bucket_paused_until(fx->g.bucket), fx->now + 1000);
        fx->now = v.at_ms;
    }
    ck_assert_int_eq(fx->st.throttled_retries, 3);
    /* retry_max is 0: the first plain transient failure ends the call */
    struct call_verdict v = ready();
    while (v.action == CALL_ACT_WAIT) {
        fx->now = v.at_ms;
        v = ready();
    }
    launched();
    v = answered(503, NULL);
    ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
    ck_assert_int_eq(v.note, CALL_NOTE_RETRIES_EXHAUSTED);
}
END_TEST

START_TEST(test_policy_retry_after_beyond_the_deadline_answers_now)
{
    call_progress_init(&fx->st, T0 + 5000, false);
    start_attempt();
    struct call_verdict v = answered(503, "10");
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
    ck_assert_int_eq(v.note, CALL_NOTE_RETRY_PAST_DEADLINE);
    ck_assert_int_eq(v.retry_after_ms, 10000);
}
END_TEST

START_TEST(test_policy_retry_after_is_capped)
{
    fx->policy.retry_after_cap_ms = 2000;
    start_attempt();
    struct call_verdict v = answered(503, "3600");
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.delay_ms, 2000);
}
END_TEST

START_TEST(test_policy_spent_retry_budget_gives_up_but_429_with_retry_after_bypasses_it)
{
    teardown();
    setup_with(3, 1000, 1000, 0.0, 0, 100);
    start_attempt();
    struct call_verdict v = answered(503, NULL);
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
    ck_assert_int_eq(v.note, CALL_NOTE_BUDGET_EXHAUSTED);

    call_progress_init(&fx->st, T0 + 30000, false);
    start_attempt();
    v = answered(429, "1");
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.note, CALL_NOTE_RETRY);
}
END_TEST

static struct call_verdict rejected_200(void)
{
    return ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END,
                                   .transport = CALL_TRANSPORT_ANSWERED,
                                   .status = 200,
                                   .body_rejected = true});
}

START_TEST(test_policy_malformed_answer_is_a_transient_failure)
{
    teardown();
    setup_with(1, 1000, 1000, 1.0, 100, 100);
    start_attempt();
    struct call_verdict v = rejected_200();
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.reason, CALL_RETRY_MALFORMED);
    fx->now = v.at_ms;
    start_attempt();
    v = rejected_200();
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
    ck_assert_int_eq(v.reason, CALL_RETRY_MALFORMED);
}
END_TEST

/* One attempt, one breaker outcome: a rejected 200 is a failure, not a success and a failure
   (which would reset the consecutive count, so no run of them could ever open the circuit). */
START_TEST(test_policy_malformed_answers_open_the_breaker_like_any_failure)
{
    teardown();
    setup_with(3, 1000, 1000, 1.0, 100, 2);
    start_attempt();
    struct call_verdict v = rejected_200();
    ck_assert_int_eq(breaker_state(fx->g.breaker, fx->now), BREAKER_CLOSED);
    fx->now = v.at_ms;
    start_attempt();
    rejected_200();
    ck_assert_int_eq(breaker_state(fx->g.breaker, fx->now), BREAKER_OPEN);
}
END_TEST

START_TEST(test_policy_deadline_passed_before_an_attempt)
{
    call_progress_init(&fx->st, T0, false);
    struct call_verdict v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_DEADLINE);
    ck_assert_int_eq(v.note, CALL_NOTE_DEADLINE);
    ck_assert_int_eq(fx->st.attempts, 0);
}
END_TEST

START_TEST(test_policy_open_breaker_refuses_with_its_retry_after)
{
    teardown();
    setup_with(3, 1000, 1000, 1.0, 100, 1);
    start_attempt();
    struct call_verdict v =
        ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END, .transport = CALL_TRANSPORT_ERROR});
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    fx->now = v.at_ms;
    v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_BREAKER_OPEN);
    ck_assert_int_eq(v.note, CALL_NOTE_BREAKER_OPEN);
    ck_assert_int_eq(v.retry_after_ms, 30000 - (fx->now - T0));
}
END_TEST

START_TEST(test_policy_limiter_makes_high_priority_wait_and_refuses_low_priority)
{
    teardown();
    setup_with(3, 1, 1, 1.0, 100, 100);
    start_attempt(); /* takes the only token */
    call_progress_init(&fx->st, T0 + 30000, false);
    struct call_verdict v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_TOKEN_WAIT);
    ck_assert_int_eq(v.note, CALL_NOTE_LIMITER_WAIT);
    ck_assert_int_eq(v.at_ms, T0 + 1000);
    fx->now = v.at_ms;
    v = ev(&(struct call_event){.kind = CALL_EV_TOKEN_DUE});
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);

    call_progress_init(&fx->st, T0 + 30000, true);
    v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_RATE_LIMITED);
    ck_assert_int_eq(v.note, CALL_NOTE_LIMITER_REFUSED);
    ck_assert_int_gt(v.retry_after_ms, 0);
}
END_TEST

START_TEST(test_policy_token_due_during_a_429_pause_goes_back_in_line)
{
    teardown();
    setup_with(3, 1, 1, 1.0, 100, 100);
    start_attempt(); /* the only token */
    struct call_progress first = fx->st;
    call_progress_init(&fx->st, T0 + 30000, false);
    ck_assert_int_eq(ready().action, CALL_ACT_TOKEN_WAIT); /* waits for T0 + 1000 */
    struct call_progress second = fx->st;
    /* the first call's answer is a 429 with retry-after 5 s: the dependency pauses */
    fx->st = first;
    fx->now = T0 + 500;
    ck_assert_int_eq(answered(429, "5").action, CALL_ACT_WAIT);
    fx->st = second;
    fx->now = T0 + 1000;
    struct call_verdict v = ev(&(struct call_event){.kind = CALL_EV_TOKEN_DUE});
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_ge(v.at_ms, T0 + 5500);
}
END_TEST

START_TEST(test_policy_throttled_low_priority_is_refused_with_the_pause)
{
    start_attempt();
    struct call_verdict v = answered(429, "2");
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    call_progress_init(&fx->st, T0 + 30000, true);
    v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_RATE_LIMITED);
    ck_assert_int_eq(v.note, CALL_NOTE_THROTTLED);
    ck_assert_int_eq(v.retry_after_ms, 2000);
}
END_TEST

START_TEST(test_policy_cancel_while_waiting_for_a_token_gives_it_back)
{
    teardown();
    setup_with(3, 1, 1, 1.0, 100, 100);
    start_attempt();
    call_progress_init(&fx->st, T0 + 30000, false);
    ck_assert_int_eq(ready().action, CALL_ACT_TOKEN_WAIT);
    double before = bucket_tokens(fx->g.bucket, fx->now);
    ev(&(struct call_event){.kind = CALL_EV_CANCEL});
    ck_assert_int_eq(fx->st.phase, CALL_PHASE_IDLE);
    ck_assert(bucket_tokens(fx->g.bucket, fx->now) > before);
}
END_TEST

START_TEST(test_policy_launch_failure_ends_the_call)
{
    ck_assert_int_eq(ready().action, CALL_ACT_LAUNCH);
    struct call_verdict v = ev(&(struct call_event){.kind = CALL_EV_LAUNCH_FAILED});
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
    ck_assert_int_eq(fx->st.attempts, 0);
}
END_TEST

START_TEST(test_policy_events_out_of_phase_change_nothing)
{
    struct call_verdict v = answered(200, NULL); /* nothing in flight */
    ck_assert_int_eq(v.action, CALL_ACT_NONE);
    v = ev(&(struct call_event){.kind = CALL_EV_TOKEN_DUE});
    ck_assert_int_eq(v.action, CALL_ACT_NONE);
    ck_assert_int_eq(fx->st.attempts, 0);
}
END_TEST

START_TEST(test_policy_outcome_names)
{
    ck_assert_str_eq(call_outcome_name(CALL_OK), "ok");
    ck_assert_str_eq(call_outcome_name(CALL_DEADLINE), "deadline");
    ck_assert_str_eq(call_outcome_name((enum call_outcome)99), "unknown");
}
END_TEST

/* ---- the cluster limiter (g.shared) --------------------------------------------------- */

static struct call_verdict shared_answer(enum call_shared_answer a, int64_t ms, bool probe,
                                         int64_t gen)
{
    return ev(&(struct call_event){.kind = CALL_EV_SHARED_ANSWER,
                                   .shared = a,
                                   .shared_ms = ms,
                                   .shared_probe = probe,
                                   .shared_gen = gen});
}

/* READY with the cluster reachable asks it, with the wait the call can afford. */
static void ask(int64_t want_max_wait)
{
    struct call_verdict v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_ASK_SHARED);
    ck_assert_int_eq(v.max_wait_ms, want_max_wait);
    ck_assert_int_eq(fx->st.phase, CALL_PHASE_ASKING);
}

START_TEST(test_policy_shared_grant_launches_or_waits_without_the_local_bucket)
{
    teardown();
    setup_with(3, 1, 1, 1.0, 100, 100); /* a local bucket of one token */
    fx->g.shared = true;
    ask(30000);
    struct call_verdict v = shared_answer(CALL_SHARED_GRANTED, 0, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);
    ck_assert_int_eq(v.note, CALL_NOTE_LIMITER_WAIT);
    launched();
    ck_assert_int_eq(answered(200, NULL).outcome, CALL_OK);
    /* The local token was never touched. */
    ck_assert_int_eq(bucket_reserve(fx->g.bucket, fx->now, 0), 0);

    call_progress_init(&fx->st, fx->now + 30000, false);
    ask(30000);
    v = shared_answer(CALL_SHARED_GRANTED, 250, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_TOKEN_WAIT);
    ck_assert_int_eq(v.at_ms, fx->now + 250);
    ck_assert_int_eq(v.delay_ms, 250);
    /* Cancelled while it waits, the cluster's token is not handed to the local bucket. */
    ev(&(struct call_event){.kind = CALL_EV_CANCEL});
    ck_assert_int_eq(bucket_reserve(fx->g.bucket, fx->now, 0), -1);
    call_progress_init(&fx->st, fx->now + 30000, false);
    ask(30000);
    shared_answer(CALL_SHARED_GRANTED, 250, false, 0);
    fx->now += 250;
    v = ev(&(struct call_event){.kind = CALL_EV_TOKEN_DUE});
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);
}
END_TEST

START_TEST(test_policy_shared_low_priority_asks_for_no_wait_and_refusal_is_rate_limited)
{
    fx->g.shared = true;
    call_progress_init(&fx->st, T0 + 30000, true);
    ask(0);
    struct call_verdict v = shared_answer(CALL_SHARED_REFUSED, 180, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_RATE_LIMITED);
    ck_assert_int_eq(v.note, CALL_NOTE_LIMITER_REFUSED);
    ck_assert_int_eq(v.retry_after_ms, 180);
}
END_TEST

START_TEST(test_policy_shared_pause_and_probe_out_hold_the_call_back)
{
    fx->g.shared = true;
    ask(30000);
    struct call_verdict v = shared_answer(CALL_SHARED_PAUSED, 1200, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.at_ms, fx->now + 1200);
    fx->now += 1200;
    ask(30000 - 1200);
    v = shared_answer(CALL_SHARED_PROBE_OUT, 0, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_ge(v.at_ms, fx->now + CALL_POLICY_THROTTLE_RECHECK_MS);
    ck_assert_int_lt(v.at_ms, fx->now + 2 * CALL_POLICY_THROTTLE_RECHECK_MS);
    /* A pause that outlasts the deadline ends the call now, with the pause as Retry-After. */
    fx->now = v.at_ms;
    ask(T0 + 30000 - fx->now);
    v = shared_answer(CALL_SHARED_PAUSED, 60000, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_RATE_LIMITED);
    ck_assert_int_eq(v.note, CALL_NOTE_THROTTLED);
    ck_assert_int_eq(v.retry_after_ms, 60000);
}
END_TEST

START_TEST(test_policy_shared_unavailable_falls_back_to_the_local_bucket)
{
    teardown();
    setup_with(3, 1, 1, 1.0, 100, 100);
    fx->g.shared = true;
    ask(30000);
    struct call_verdict v = shared_answer(CALL_SHARED_UNAVAILABLE, 0, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH); /* the local token */
    launched();
    ck_assert_int_eq(answered(200, NULL).outcome, CALL_OK);
    call_progress_init(&fx->st, fx->now + 30000, false);
    ask(30000);
    v = shared_answer(CALL_SHARED_UNAVAILABLE, 0, false, 0);
    ck_assert_int_eq(v.action, CALL_ACT_TOKEN_WAIT); /* the local bucket is empty: 1 s */
    ck_assert_int_eq(v.at_ms, fx->now + 1000);
}
END_TEST

START_TEST(test_policy_shared_probe_reports_how_it_ended)
{
    fx->g.shared = true;
    /* Recovered: a non-429 answer. */
    ask(30000);
    struct call_verdict v = shared_answer(CALL_SHARED_GRANTED, 0, true, 7);
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);
    ck_assert_int_eq(v.probe_report, CALL_PROBE_REPORT_NONE);
    launched();
    v = answered(503, NULL);
    ck_assert_int_eq(v.probe_report, CALL_PROBE_REPORT_RECOVERED);
    ck_assert_int_eq(v.probe_gen, 7);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT); /* the 503 itself is retried */
    /* Failed: a transport error hands the probe on. */
    fx->now = v.at_ms;
    ask(T0 + 30000 - fx->now);
    v = shared_answer(CALL_SHARED_GRANTED, 0, true, 8);
    launched();
    v = ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END, .transport = CALL_TRANSPORT_ERROR});
    ck_assert_int_eq(v.probe_report, CALL_PROBE_REPORT_FAILED);
    ck_assert_int_eq(v.probe_gen, 8);
    /* Cancelled while it waits for its token: failed too. */
    fx->now = v.at_ms;
    ask(T0 + 30000 - fx->now);
    shared_answer(CALL_SHARED_GRANTED, 40, true, 9);
    v = ev(&(struct call_event){.kind = CALL_EV_CANCEL});
    ck_assert_int_eq(v.probe_report, CALL_PROBE_REPORT_FAILED);
    ck_assert_int_eq(v.probe_gen, 9);
}
END_TEST

START_TEST(test_policy_shared_429_with_retry_after_pauses_the_cluster_not_the_probe)
{
    fx->g.shared = true;
    ask(30000);
    shared_answer(CALL_SHARED_GRANTED, 0, true, 3);
    launched();
    struct call_verdict v = answered(429, "2");
    ck_assert_int_eq(v.shared_pause_ms, 2000);
    /* The pause starts a new probe number: the old probe owes no report. */
    ck_assert_int_eq(v.probe_report, CALL_PROBE_REPORT_NONE);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.at_ms, fx->now + 2000);
    /* The local bucket is paused too, for when the cluster cannot be reached. */
    ck_assert_int_eq(bucket_paused_until(fx->g.bucket), fx->now + 2000);
    /* Without the cluster a 429 publishes nothing. */
    fx->g.shared = false;
    fx->now += 2000;
    v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH); /* the local probe */
    launched();
    v = answered(429, "1");
    ck_assert_int_eq(v.shared_pause_ms, 0);
}
END_TEST

START_TEST(test_policy_shared_cancel_while_asking_and_stale_answers)
{
    fx->g.shared = true;
    ask(30000);
    struct call_verdict v = ev(&(struct call_event){.kind = CALL_EV_CANCEL});
    ck_assert_int_eq(v.action, CALL_ACT_NONE);
    ck_assert_int_eq(fx->st.phase, CALL_PHASE_IDLE);
    /* An answer that arrives after the call moved on changes nothing. */
    v = shared_answer(CALL_SHARED_GRANTED, 0, true, 1);
    ck_assert_int_eq(v.action, CALL_ACT_NONE);
    ck_assert(!fx->st.shared_probe);
}
END_TEST

/* ---- model fallback and rate-limit headers ------------------------------------------------ */

/* Epoch ms the fake wall clock reads (2026-11-30T03:00:00Z). */
#define WALL0 1796007600000LL

static struct call_verdict answered_with_limits(long status, const char *retry_after,
                                                const struct ratelimit_headers *h)
{
    return ev(&(struct call_event){.kind = CALL_EV_ATTEMPT_END,
                                   .transport = CALL_TRANSPORT_ANSWERED,
                                   .status = status,
                                   .retry_after_hdr = retry_after,
                                   .ratelimit = h,
                                   .ratelimit_output_tokens = 1024,
                                   .now_wall_ms = WALL0});
}

/* requests-remaining: 0 until 1.5 s after WALL0. */
static struct ratelimit_headers spent_requests(void)
{
    struct ratelimit_headers h;
    ratelimit_headers_clear(&h);
    const char a[] = "anthropic-ratelimit-requests-remaining: 0\r\n";
    const char b[] = "anthropic-ratelimit-requests-reset: 2026-11-30T03:00:01.500Z\r\n";
    ck_assert(ratelimit_headers_capture(&h, a, sizeof(a) - 1));
    ck_assert(ratelimit_headers_capture(&h, b, sizeof(b) - 1));
    return h;
}

START_TEST(test_policy_529_ends_the_call_at_once_when_another_model_waits)
{
    fx->st.overload_ends = true;
    start_attempt();
    struct call_verdict v = answered(529, NULL);
    ck_assert_int_eq(v.action, CALL_ACT_FINISH);
    ck_assert_int_eq(v.outcome, CALL_EXHAUSTED);
    ck_assert_int_eq(v.note, CALL_NOTE_OVERLOADED);
    ck_assert_int_eq(fx->st.attempts, 1);
}
END_TEST

START_TEST(test_policy_529_is_retried_without_another_model)
{
    start_attempt();
    struct call_verdict v = answered(529, NULL);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.note, CALL_NOTE_RETRY);
}
END_TEST

START_TEST(test_policy_spent_rate_limit_pauses_until_the_reset)
{
    struct ratelimit_headers h = spent_requests();
    start_attempt();
    struct call_verdict v = answered_with_limits(200, NULL, &h);
    ck_assert_int_eq(v.outcome, CALL_OK);
    ck_assert_int_eq(v.reset_wait_ms, 1500);
    ck_assert_int_eq(bucket_paused_until(fx->g.bucket), T0 + 1500);
    /* The next call waits for the reset instead of being sent. */
    call_progress_init(&fx->st, T0 + 30000, false);
    v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.at_ms, T0 + 1500);
    fx->now = T0 + 1500;
    ck_assert_int_eq(ready().action, CALL_ACT_LAUNCH);
}
END_TEST

START_TEST(test_policy_spent_rate_limit_is_shared_with_the_cluster)
{
    struct ratelimit_headers h = spent_requests();
    fx->g.shared = true;
    struct call_verdict v = ready();
    ck_assert_int_eq(v.action, CALL_ACT_ASK_SHARED);
    v = ev(&(struct call_event){.kind = CALL_EV_SHARED_ANSWER, .shared = CALL_SHARED_GRANTED});
    ck_assert_int_eq(v.action, CALL_ACT_LAUNCH);
    launched();
    v = answered_with_limits(200, NULL, &h);
    ck_assert_int_eq(v.shared_pause_ms, 1500);
}
END_TEST

START_TEST(test_policy_rate_limit_with_budget_left_does_not_pause)
{
    struct ratelimit_headers h = spent_requests();
    const char a[] = "anthropic-ratelimit-requests-remaining: 3\r\n";
    ck_assert(ratelimit_headers_capture(&h, a, sizeof(a) - 1));
    start_attempt();
    answered_with_limits(200, NULL, &h);
    ck_assert(bucket_paused_until(fx->g.bucket) <= T0);
}
END_TEST

START_TEST(test_policy_429_waits_for_the_reset_but_retry_after_wins)
{
    struct ratelimit_headers h = spent_requests();
    start_attempt();
    struct call_verdict v = answered_with_limits(429, NULL, &h);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.at_ms, T0 + 1500);
    fx->now = T0 + 1500;
    start_attempt();
    v = answered_with_limits(429, "4", &h);
    ck_assert_int_eq(v.action, CALL_ACT_WAIT);
    ck_assert_int_eq(v.at_ms, T0 + 1500 + 4000);
}
END_TEST

static Suite *call_policy_suite(void)
{
    Suite *s = suite_create("call_policy");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_policy_success_on_first_attempt);
    tcase_add_test(tc, test_policy_transient_failures_retry_with_bounded_backoff_then_exhaust);
    tcase_add_test(tc, test_policy_timeout_and_connection_error_are_transient);
    tcase_add_test(tc, test_policy_permanent_status_is_not_retried_nor_held_against_the_breaker);
    tcase_add_test(tc, test_policy_should_retry_false_overrides_a_transient_status);
    tcase_add_test(tc, test_policy_throttled_retries_do_not_consume_retry_max);
    tcase_add_test(tc, test_policy_retry_after_beyond_the_deadline_answers_now);
    tcase_add_test(tc, test_policy_retry_after_is_capped);
    tcase_add_test(tc,
                   test_policy_spent_retry_budget_gives_up_but_429_with_retry_after_bypasses_it);
    tcase_add_test(tc, test_policy_malformed_answer_is_a_transient_failure);
    tcase_add_test(tc, test_policy_malformed_answers_open_the_breaker_like_any_failure);
    tcase_add_test(tc, test_policy_deadline_passed_before_an_attempt);
    tcase_add_test(tc, test_policy_open_breaker_refuses_with_its_retry_after);
    tcase_add_test(tc, test_policy_limiter_makes_high_priority_wait_and_refuses_low_priority);
    tcase_add_test(tc, test_policy_token_due_during_a_429_pause_goes_back_in_line);
    tcase_add_test(tc, test_policy_throttled_low_priority_is_refused_with_the_pause);
    tcase_add_test(tc, test_policy_cancel_while_waiting_for_a_token_gives_it_back);
    tcase_add_test(tc, test_policy_launch_failure_ends_the_call);
    tcase_add_test(tc, test_policy_events_out_of_phase_change_nothing);
    tcase_add_test(tc, test_policy_outcome_names);
    tcase_add_test(tc, test_policy_shared_grant_launches_or_waits_without_the_local_bucket);
    tcase_add_test(tc,
                   test_policy_shared_low_priority_asks_for_no_wait_and_refusal_is_rate_limited);
    tcase_add_test(tc, test_policy_shared_pause_and_probe_out_hold_the_call_back);
    tcase_add_test(tc, test_policy_shared_unavailable_falls_back_to_the_local_bucket);
    tcase_add_test(tc, test_policy_shared_probe_reports_how_it_ended);
    tcase_add_test(tc, test_policy_shared_429_with_retry_after_pauses_the_cluster_not_the_probe);
    tcase_add_test(tc, test_policy_shared_cancel_while_asking_and_stale_answers);
    tcase_add_test(tc, test_policy_529_ends_the_call_at_once_when_another_model_waits);
    tcase_add_test(tc, test_policy_529_is_retried_without_another_model);
    tcase_add_test(tc, test_policy_spent_rate_limit_pauses_until_the_reset);
    tcase_add_test(tc, test_policy_spent_rate_limit_is_shared_with_the_cluster);
    tcase_add_test(tc, test_policy_rate_limit_with_budget_left_does_not_pause);
    tcase_add_test(tc, test_policy_429_waits_for_the_reset_but_retry_after_wins);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(call_policy_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
