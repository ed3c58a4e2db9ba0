/*
 * test_shaping.c — LLM traffic shaping end to end, the real agentd against the fake upstream:
 * the model fallback chain (on 529 and on an open breaker; never on 400/401 or a spend-limit
 * 429), waiting for the rate-limit reset the API's headers announce instead of taking a 429,
 * and prompt caching (cache_control on every request, cache usage reported and priced).
 * Each test checks the client's answer and what reached the upstream (the fake's request log).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct harness H;
static bool started;

static const char *const chain_env[] = {"AGENTD_READY_INTERVAL_MS=3600000", "AGENTD_MODEL=model-a",
                                        "AGENTD_MODEL_FALLBACKS=model-b", NULL};

static void start(const char *const *env)
{
    harness_start(&H, env);
    started = true;
}

static void teardown(void)
{
    bool was_started = started;
    started = false;
    /* Exit status 0 also proves a sanitizer build of the daemon found nothing. */
    if (was_started)
        ck_assert_int_eq(harness_stop(&H), 0);
}

/* LLM requests the fake received for model (NULL = all), and how many it answered status. */
static size_t sent_to(const char *model, long status)
{
    json_t *log = fake_requests(&H);
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        const char *m = json_string_value(json_object_get(json_object_get(e, "body"), "model"));
        if (!route || strcmp(route, "messages") != 0 || (model && (!m || strcmp(m, model) != 0)))
            continue;
        if (status == 0 || json_integer_value(json_object_get(e, "status")) == status)
            n++;
    }
    json_decref(log);
    return n;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static const char *error_type(const json_t *o)
{
    return str(json_object_get(o, "error"), "type");
}

static char *metrics_text(void)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/metrics", H.agentd_url);
    struct http_resp r;
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    return r.body;
}

/* ---- model fallback ------------------------------------------------------------------ */

/* The answer o came from model-b after leaving model-a for reason (o is released). */
static void assert_fell_back(json_t *o, const char *reason)
{
    ck_assert_str_eq(str(o, "model"), "model-b");
    const json_t *fb = json_object_get(o, "fallbacks");
    ck_assert_uint_eq(json_array_size(fb), 1);
    ck_assert_str_eq(str(json_array_get(fb, 0), "model"), "model-a");
    ck_assert_str_eq(str(json_array_get(fb, 0), "reason"), reason);
    json_decref(o);
}

START_TEST(test_fallback_on_529_answers_from_the_next_model_at_once)
{
    start(chain_env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":529}");
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
    assert_fell_back(o, "overloaded");
    /* The overloaded model got one attempt (no retries against a 529), the fallback one. */
    ck_assert_uint_eq(sent_to("model-a", 0), 1);
    ck_assert_uint_eq(sent_to("model-b", 200), 1);

    /* A healthy primary answers itself, with no fallbacks reported. */
    fake_clear_faults(&H);
    ck_assert_int_eq(agent_ask(&H, "hello again", &o), 200);
    ck_assert_str_eq(str(o, "model"), "model-a");
    ck_assert_ptr_null(json_object_get(o, "fallbacks"));
    json_decref(o);

    char *m = metrics_text();
    ck_assert(harness_metric_sample(
                  m, "agentd_llm_fallbacks_total{model=\"model-a\",reason=\"overloaded\"}") == 1);
    ck_assert(harness_metric_sample(
                  m, "agentd_llm_model_calls_total{model=\"model-b\",outcome=\"ok\"}") == 1);
    free(m);
}
END_TEST

START_TEST(test_fallback_on_open_breaker_skips_the_broken_model)
{
    static const char *const env[] = {"AGENTD_READY_INTERVAL_MS=3600000",
                                      "AGENTD_MODEL=model-a",
                                      "AGENTD_MODEL_FALLBACKS=model-b",
                                      "AGENTD_BREAKER_FAILURES=2",
                                      "AGENTD_RETRY_MAX=0",
                                      "AGENTD_BREAKER_OPEN_MS=60000",
                                      NULL};
    start(env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":503}");
    json_t *o = NULL;
    /* Two runs: model-a fails (unavailable) and opens its breaker; model-b answers both. */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
        assert_fell_back(o, "unavailable");
    }
    ck_assert_uint_eq(sent_to("model-a", 0), 2);
    /* Open: the next run does not touch model-a at all. */
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
    assert_fell_back(o, "circuit_open");
    ck_assert_uint_eq(sent_to("model-a", 0), 2);
    ck_assert_uint_eq(sent_to("model-b", 200), 3);
    char *m = metrics_text();
    ck_assert(harness_metric_sample(m, "agentd_llm_model_breaker_state{model=\"model-a\"}") == 2);
    ck_assert(harness_metric_sample(m, "agentd_llm_model_breaker_state{model=\"model-b\"}") == 0);
    free(m);
}
END_TEST

START_TEST(test_no_fallback_on_permanent_errors_or_a_spend_limit)
{
    static const char *const env[] = {"AGENTD_READY_INTERVAL_MS=3600000", "AGENTD_MODEL=model-a",
                                      "AGENTD_MODEL_FALLBACKS=model-b", "AGENTD_RETRY_MAX=0", NULL};
    start(env);
    json_t *o = NULL;
    static const char *const permanent[] = {
        "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":400}",
        "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":401}"};
    for (int i = 0; i < 2; i++) {
        fake_clear_faults(&H);
        fake_add_fault(&H, permanent[i]);
        ck_assert_int_eq(agent_ask(&H, "hello", &o), 502);
        ck_assert_str_eq(error_type(o), "upstream_error");
        json_decref(o);
    }
    fake_clear_faults(&H);
    fake_add_fault(&H, "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":429,"
                       "\"message\":\"This request would exceed your organization's monthly "
                       "spend limit.\"}");
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 503);
    ck_assert_str_eq(error_type(o), "upstream_unavailable");
    json_decref(o);
    ck_assert_uint_eq(sent_to("model-a", 0), 3);
    ck_assert_uint_eq(sent_to("model-b", 0), 0);

    /* The same 429 as a plain rate limit does move on: the spend limit is what held it. */
    fake_clear_faults(&H);
    fake_add_fault(&H, "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":429}");
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
    assert_fell_back(o, "rate_limited");
    ck_assert_uint_eq(sent_to("model-b", 0), 1);
}
END_TEST

/* ---- rate-limit headers -------------------------------------------------------------- */

START_TEST(test_waits_for_the_rate_limit_reset_instead_of_taking_a_429)
{
    enum { LIMIT = 2, WINDOW_MS = 1500, RUNS = 5 };
    static const char *const env[] = {"AGENTD_READY_INTERVAL_MS=3600000", NULL};
    start(env);
    char url[128], body[96];
    snprintf(url, sizeof(url), "%s/_admin/ratelimit", H.fake_url);
    snprintf(body, sizeof(body), "{\"requests\":%d,\"window_ms\":%d}", LIMIT, WINDOW_MS);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    int64_t t0 = harness_now_ms();
    json_t *o = NULL;
    for (int i = 0; i < RUNS; i++) {
        ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
        json_decref(o);
    }
    int64_t took = harness_now_ms() - t0;
    /* Every call was sent within the limit: the spent budget was refilled, never refused. */
    ck_assert_uint_eq(sent_to(NULL, 0), RUNS);
    ck_assert_uint_eq(sent_to(NULL, 429), 0);
    /* Two calls from the full bucket, then one per refill of 1.5 s / 2 = 750 ms. */
    ck_assert_msg(took >= (RUNS - LIMIT) * WINDOW_MS / LIMIT - 250, "took %lld ms",
                  (long long)took);
    ck_assert_msg(took < 20000, "took %lld ms", (long long)took);
}
END_TEST

/* ---- prompt caching ------------------------------------------------------------------ */

static bool has_breakpoint(const json_t *block)
{
    return strcmp(str(json_object_get(block, "cache_control"), "type"), "ephemeral") == 0;
}

/* The last block of the last message that is a user message. */
static const json_t *last_user_block(const json_t *messages)
{
    for (size_t i = json_array_size(messages); i-- > 0;) {
        const json_t *m = json_array_get(messages, i);
        if (strcmp(str(m, "role"), "user") == 0) {
            const json_t *c = json_object_get(m, "content");
            return json_array_get(c, json_array_size(c) - 1);
        }
    }
    return NULL;
}

START_TEST(test_cache_breakpoints_on_every_request_and_cost_at_cache_prices)
{
    static const char *const env[] = {"AGENTD_READY_INTERVAL_MS=3600000",
                                      "AGENTD_PRICE_INPUT_PER_MTOK=3",
                                      "AGENTD_PRICE_OUTPUT_PER_MTOK=15", NULL};
    start(env);
    json_t *o = NULL;
    /* Two LLM calls (a tool round trip), then a second turn of the conversation. */
    ck_assert_int_eq(
        agent_post(&H, "{\"input\":\"What is the weather in Paris?\",\"conversation_id\":\"c\"}",
                   &o),
        200);
    json_t *usage = json_object_get(o, "usage");
    ck_assert_int_gt(json_integer_value(json_object_get(usage, "cache_creation_input_tokens")), 0);
    /* The second call read back the prefix the first one wrote. */
    ck_assert_int_gt(json_integer_value(json_object_get(usage, "cache_read_input_tokens")), 0);
    json_t *o2 = NULL;
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"thanks\",\"conversation_id\":\"c\"}", &o2), 200);
    json_t *usage2 = json_object_get(o2, "usage");
    ck_assert_int_gt(json_integer_value(json_object_get(usage2, "cache_read_input_tokens")), 0);

    json_t *log = fake_requests(&H);
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        const json_t *b = json_object_get(e, "body");
        if (strcmp(str(e, "route"), "messages") != 0)
            continue;
        n++;
        const json_t *tools = json_object_get(b, "tools");
        ck_assert(has_breakpoint(json_array_get(tools, json_array_size(tools) - 1)));
        ck_assert(has_breakpoint(json_array_get(json_object_get(b, "system"), 0)));
        ck_assert(has_breakpoint(last_user_block(json_object_get(b, "messages"))));
    }
    json_decref(log);
    ck_assert_uint_eq(n, 3);

    /* The cost estimate prices writes at 1.25 x and reads at 0.1 x the input price. */
    double in = 0, cw = 0, cr = 0, out = 0;
    const json_t *us[] = {usage, usage2};
    json_t *first = NULL;
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"hi\"}", &first), 200); /* a third run, uncached */
    const json_t *u3 = json_object_get(first, "usage");
    const json_t *all[] = {us[0], us[1], u3};
    for (int k = 0; k < 3; k++) {
        in += (double)json_integer_value(json_object_get(all[k], "input_tokens"));
        cw += (double)json_integer_value(json_object_get(all[k], "cache_creation_input_tokens"));
        cr += (double)json_integer_value(json_object_get(all[k], "cache_read_input_tokens"));
        out += (double)json_integer_value(json_object_get(all[k], "output_tokens"));
    }
    double want = ((in - cw - cr) * 3 + cw * 3.75 + cr * 0.3 + out * 15) / 1e6;
    double uncached = (in * 3 + out * 15) / 1e6;
    char *m = metrics_text();
    double got = harness_metric_sample(m, "agentd_llm_cost_usd_total");
    ck_assert_msg(got > want - 1e-9 && got < want + 1e-9, "cost %.9f, want %.9f (uncached %.9f)",
                  got, want, uncached);
    ck_assert(uncached - want > 1e-7);
    ck_assert(harness_metric_sample(m, "agentd_llm_cache_tokens_total{kind=\"read\"}") == cr);
    free(m);
    json_decref(first);
    json_decref(o2);
    json_decref(o);
}
END_TEST

START_TEST(test_prompt_cache_off_sends_no_cache_control)
{
    static const char *const env[] = {"AGENTD_READY_INTERVAL_MS=3600000", "AGENTD_PROMPT_CACHE=0",
                                      NULL};
    start(env);
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "What is 6 * 7?", &o), 200);
    ck_assert_ptr_null(json_object_get(json_object_get(o, "usage"), "cache_read_input_tokens"));
    json_decref(o);
    json_t *log = fake_requests(&H);
    char *dump = json_dumps(log, JSON_COMPACT);
    ck_assert_ptr_null(strstr(dump, "cache_control"));
    free(dump);
    json_decref(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shaping");
    TCase *tc = tcase_create("shaping");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_fallback_on_529_answers_from_the_next_model_at_once);
    tcase_add_test(tc, test_fallback_on_open_breaker_skips_the_broken_model);
    tcase_add_test(tc, test_no_fallback_on_permanent_errors_or_a_spend_limit);
    tcase_add_test(tc, test_waits_for_the_rate_limit_reset_instead_of_taking_a_429);
    tcase_add_test(tc, test_cache_breakpoints_on_every_request_and_cost_at_cache_prices);
    tcase_add_test(tc, test_prompt_cache_off_sends_no_cache_control);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
