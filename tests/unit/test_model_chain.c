/*
 * test_model_chain.c — unit tests for the model fallback chain (model_chain.h): parsing, the
 * fallback decision, and per-model breakers driven by a fake clock (now_ms is a variable).
 */
#include "agentd/model_chain.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/breaker.h"

START_TEST(test_chain_parses_primary_then_fallbacks_in_order)
{
    struct model_chain c;
    char err[256];
    ck_assert_int_eq(
        model_chain_parse("claude-a", " claude-b , us.anthropic.claude-c:0", &c, err, sizeof(err)),
        0);
    ck_assert_uint_eq(c.n, 3);
    ck_assert_str_eq(c.names[0], "claude-a");
    ck_assert_str_eq(c.names[1], "claude-b");
    ck_assert_str_eq(c.names[2], "us.anthropic.claude-c:0");
    ck_assert_int_eq(model_chain_next(&c, 0), 1);
    ck_assert_int_eq(model_chain_next(&c, 1), 2);
    ck_assert_int_eq(model_chain_next(&c, 2), -1);
    ck_assert_int_eq(model_chain_parse("claude-a", "", &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.n, 1);
    ck_assert_int_eq(model_chain_next(&c, 0), -1);
}
END_TEST

START_TEST(test_chain_rejects_bad_names_repeats_and_long_chains)
{
    struct model_chain c = {.n = 9};
    char err[256];
    ck_assert_int_eq(model_chain_parse("a", "b,,c", &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(model_chain_parse("a", "b,a", &c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "twice"));
    ck_assert_int_eq(model_chain_parse("a", "b{x}", &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(model_chain_parse("a", "b,c,d,e,f", &c, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "at most 4"));
    ck_assert_int_eq(model_chain_parse("a", "b,c,d,e", &c, err, sizeof(err)), 0);
    ck_assert_uint_eq(c.n, MODEL_CHAIN_MAX);
}
END_TEST

static enum model_fallback_reason why(enum call_outcome o, long status, bool spend)
{
    return model_chain_reason(
        &(struct model_failure){.outcome = o, .last_status = status, .spend_limit = spend});
}

START_TEST(test_fallback_on_overload_unavailability_and_open_breaker)
{
    ck_assert_int_eq(why(CALL_EXHAUSTED, 529, false), MODEL_FALLBACK_OVERLOADED);
    ck_assert_int_eq(why(CALL_EXHAUSTED, 503, false), MODEL_FALLBACK_UNAVAILABLE);
    ck_assert_int_eq(why(CALL_EXHAUSTED, 0, false), MODEL_FALLBACK_UNAVAILABLE);
    ck_assert_int_eq(why(CALL_EXHAUSTED, 429, false), MODEL_FALLBACK_RATE_LIMITED);
    ck_assert_int_eq(why(CALL_BREAKER_OPEN, 0, false), MODEL_FALLBACK_CIRCUIT_OPEN);
    ck_assert_str_eq(model_fallback_reason_name(MODEL_FALLBACK_OVERLOADED), "overloaded");
    ck_assert_str_eq(model_fallback_reason_name(MODEL_FALLBACK_CIRCUIT_OPEN), "circuit_open");
}
END_TEST

START_TEST(test_no_fallback_on_permanent_errors_spend_limits_or_own_limits)
{
    ck_assert_int_eq(why(CALL_PERMANENT, 400, false), MODEL_FALLBACK_NONE);
    ck_assert_int_eq(why(CALL_PERMANENT, 401, false), MODEL_FALLBACK_NONE);
    ck_assert_int_eq(why(CALL_EXHAUSTED, 429, true), MODEL_FALLBACK_NONE);
    ck_assert_int_eq(why(CALL_RATE_LIMITED, 0, false), MODEL_FALLBACK_NONE);
    ck_assert_int_eq(why(CALL_DEADLINE, 0, false), MODEL_FALLBACK_NONE);
    ck_assert_int_eq(why(CALL_OK, 200, false), MODEL_FALLBACK_NONE);
}
END_TEST

/* Each model has its own breaker: an overloaded model opens its circuit (so later runs skip it
   at once, as circuit_open) and leaves the next model's closed; after open_ms it is probed. */
START_TEST(test_per_model_breakers_open_independently_on_a_fake_clock)
{
    struct breaker_config bc = {.failure_threshold = 3,
                                .failure_rate = 0,
                                .window_ms = 10000,
                                .min_calls = 10,
                                .open_ms = 5000,
                                .half_open_probes = 1,
                                .enabled = true};
    struct breaker *b[2] = {breaker_new("claude-a", &bc), breaker_new("claude-b", &bc)};
    int64_t now_ms = 1000;
    for (int run = 0; run < 5; run++, now_ms += 100) {
        /* Each run tries model 0 first, then moves on. */
        int64_t wait = 0;
        enum model_fallback_reason r;
        if (breaker_allow(b[0], now_ms, &wait)) {
            breaker_record(b[0], now_ms, BREAKER_FAILURE); /* a 529 */
            r = why(CALL_EXHAUSTED, 529, false);
            ck_assert_int_eq(r, MODEL_FALLBACK_OVERLOADED);
        } else {
            r = why(CALL_BREAKER_OPEN, 0, false);
            ck_assert_int_eq(r, MODEL_FALLBACK_CIRCUIT_OPEN);
            ck_assert_int_ge(run, 3);
        }
        ck_assert(breaker_allow(b[1], now_ms, NULL));
        breaker_record(b[1], now_ms, BREAKER_SUCCESS);
    }
    ck_assert_int_eq(breaker_state(b[0], now_ms), BREAKER_OPEN);
    ck_assert_int_eq(breaker_state(b[1], now_ms), BREAKER_CLOSED);
    now_ms += 5000;
    ck_assert_int_eq(breaker_state(b[0], now_ms), BREAKER_HALF_OPEN);
    breaker_free(b[0]);
    breaker_free(b[1]);
}
END_TEST

static Suite *model_chain_suite(void)
{
    Suite *s = suite_create("model_chain");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_chain_parses_primary_then_fallbacks_in_order);
    tcase_add_test(tc, test_chain_rejects_bad_names_repeats_and_long_chains);
    tcase_add_test(tc, test_fallback_on_overload_unavailability_and_open_breaker);
    tcase_add_test(tc, test_no_fallback_on_permanent_errors_spend_limits_or_own_limits);
    tcase_add_test(tc, test_per_model_breakers_open_independently_on_a_fake_clock);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_chain_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
