/*
 * test_metrics.c — unit tests for the Prometheus registry (metrics.h): totals
 * under concurrent updates, exact exposition lines, one HELP/TYPE pair per
 * family, cumulative histograms, label escaping and label folding.
 *
 * `test_metrics --dump` prints the exposition of a registry in which every
 * family has data, so tests/metrics/check_metrics.sh can run promtool on it.
 */
#include "agentd/metrics.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Does the exposition contain exactly this whole line? */
static bool has_line(const char *text, const char *line)
{
    size_t len = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += len)
        if ((p == text || p[-1] == '\n') && p[len] == '\n')
            return true;
    return false;
}

/* Number of lines starting with prefix. */
static int count_prefix(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; *p;) {
        if (strncmp(p, prefix, len) == 0)
            n++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

/* The value of the line that starts with `series ` (series includes its labels); -1 if absent. */
static double value_of(const char *text, const char *series)
{
    char key[512];
    snprintf(key, sizeof(key), "\n%s ", series);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

static void assert_line(const char *text, const char *line)
{
    ck_assert_msg(has_line(text, line), "missing line: %s", line);
}

#define THREADS     4
#define UPDATES     20000
#define TIGHT_LOOPS 1000000

static pthread_barrier_t start_line;

static void *update_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start_line); /* all threads race from here */
    /* One counter hammered in a tight loop: lost updates show up here first. */
    for (int i = 0; i < TIGHT_LOOPS; i++)
        metrics_degraded_tool_result(TOOL_WEB_SEARCH);
    for (int i = 0; i < UPDATES; i++) {
        metrics_run_started();
        metrics_http_request(METRICS_ROUTE_AGENT, METRICS_METHOD_POST, 200, 0.01);
        metrics_llm_attempt(METRICS_ATTEMPT_HTTP_ERROR, 529);
        metrics_retry(DEP_ANTHROPIC, METRICS_RETRY_HTTP_5XX);
        metrics_tool_call(TOOL_GET_WEATHER, TOOL_SYSTEM_ERROR, 0.25);
        metrics_llm_tokens(3, 5);
        metrics_llm_cost_usd(0.000002);
        metrics_limiter_wait(DEP_WEATHER, 0.002);
        metrics_run_finished(METRICS_RUN_OK);
    }
    return NULL;
}

START_TEST(test_metrics_totals_are_exact_after_concurrent_updates)
{
    pthread_t th[THREADS];

    metrics_init("1.2.3");
    ck_assert_int_eq(pthread_barrier_init(&start_line, NULL, THREADS), 0);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, update_thread, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start_line);

    char *text = metrics_render();
    ck_assert_ptr_nonnull(text);
    /* 4 threads x 20000 updates = 80000 of each (4 x 1000000 in the tight loop). */
    assert_line(text,
                "agentd_http_requests_total{route=\"agent\",method=\"POST\",code=\"200\"} 80000");
    assert_line(text, "agentd_http_request_duration_seconds_count{route=\"agent\"} 80000");
    assert_line(text, "agentd_http_request_duration_seconds_sum{route=\"agent\"} 800");
    assert_line(text, "agentd_runs_in_flight 0");
    assert_line(text, "agentd_runs_total{outcome=\"ok\"} 80000");
    assert_line(text, "agentd_runs_total{outcome=\"internal_error\"} 0");
    assert_line(text, "agentd_llm_attempts_total{outcome=\"http_error\",code=\"529\"} 80000");
    assert_line(text, "agentd_retries_total{dependency=\"anthropic\",reason=\"http_5xx\"} 80000");
    assert_line(text,
                "agentd_tool_calls_total{tool=\"get_weather\",outcome=\"system_error\"} 80000");
    assert_line(text, "agentd_tool_duration_seconds_sum{tool=\"get_weather\"} 20000");
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"get_weather\",le=\"0.1\"} 0");
    assert_line(text,
                "agentd_tool_duration_seconds_bucket{tool=\"get_weather\",le=\"0.25\"} 80000");
    assert_line(text, "agentd_limiter_wait_seconds_count{dependency=\"weather\"} 80000");
    assert_line(text, "agentd_llm_tokens_total{direction=\"input\"} 240000");
    assert_line(text, "agentd_llm_tokens_total{direction=\"output\"} 400000");
    assert_line(text, "agentd_llm_cost_usd_total 0.16");
    assert_line(text, "agentd_build_info{version=\"1.2.3\"} 1");
    assert_line(text, "agentd_degraded_tool_results_total{tool=\"web_search\"} 4000000");
    free(text);
}
END_TEST

START_TEST(test_metrics_in_flight_gauge_follows_runs)
{
    metrics_init("x");
    metrics_run_started();
    metrics_run_started();
    metrics_run_started();
    metrics_run_finished(METRICS_RUN_DEADLINE_EXCEEDED);

    char *text = metrics_render();
    assert_line(text, "agentd_runs_in_flight 2");
    assert_line(text, "agentd_runs_total{outcome=\"deadline_exceeded\"} 1");
    assert_line(text, "agentd_runs_total{outcome=\"ok\"} 0");
    free(text);
}
END_TEST

static const char *const families[][2] = {
    {"agentd_http_requests_total", "counter"},
    {"agentd_http_request_duration_seconds", "histogram"},
    {"agentd_runs_in_flight", "gauge"},
    {"agentd_runs_total", "counter"},
    {"agentd_llm_attempts_total", "counter"},
    {"agentd_retries_total", "counter"},
    {"agentd_retry_budget_exhausted_total", "counter"},
    {"agentd_breaker_state", "gauge"},
    {"agentd_breaker_transitions_total", "counter"},
    {"agentd_limiter_wait_seconds", "histogram"},
    {"agentd_limiter_refusals_total", "counter"},
    {"agentd_tool_calls_total", "counter"},
    {"agentd_tool_duration_seconds", "histogram"},
    {"agentd_degraded_tool_results_total", "counter"},
    {"agentd_llm_tokens_total", "counter"},
    {"agentd_llm_cost_usd_total", "counter"},
    {"agentd_llm_model_calls_total", "counter"},
    {"agentd_llm_fallbacks_total", "counter"},
    {"agentd_llm_model_breaker_state", "gauge"},
    {"agentd_llm_cache_tokens_total", "counter"},
    {"agentd_budget_exhausted", "gauge"},
    {"agentd_budget_limit_per_hour", "gauge"},
    {"agentd_budget_transitions_total", "counter"},
    {"gen_ai_client_token_usage", "histogram"},
    {"gen_ai_client_operation_duration_seconds", "histogram"},
    {"agentd_ready", "gauge"},
    {"agentd_redis_mode", "gauge"},
    {"agentd_redis_replicas", "gauge"},
    {"agentd_redis_commands_total", "counter"},
    {"agentd_redis_command_duration_seconds", "histogram"},
    {"agentd_durable_runs_total", "counter"},
    {"agentd_redis_reconnects_total", "counter"},
    {"agentd_config_reloads_total", "counter"},
    {"agentd_trace_spans_exported_total", "counter"},
    {"agentd_trace_spans_dropped_total", "counter"},
    {"agentd_process_resident_memory_bytes", "gauge"},
    {"agentd_process_open_fds", "gauge"},
    {"agentd_process_start_time_seconds", "gauge"},
    {"agentd_build_info", "gauge"},
};
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

/* The family a sample line belongs to: the longest known family name it starts with. */
static int family_of(const char *line)
{
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        size_t len = strlen(families[i][0]);
        if (strncmp(line, families[i][0], len) == 0 && len > best_len && strchr("{ _", line[len])) {
            best = (int)i;
            best_len = len;
        }
    }
    return best;
}

START_TEST(test_metrics_redis_mode_commands_and_latency)
{
    metrics_init("x");
    metrics_redis_mode(2, 3);
    metrics_redis_command(METRICS_REDIS_OK, 0.0004);
    metrics_redis_command(METRICS_REDIS_TIMEOUT, 0);
    metrics_redis_command(METRICS_REDIS__COUNT, 0); /* out of range: ignored */
    metrics_redis_reconnect();

    char *text = metrics_render();
    assert_line(text, "agentd_redis_mode{mode=\"off\"} 0");
    assert_line(text, "agentd_redis_mode{mode=\"degraded\"} 1");
    assert_line(text, "agentd_redis_replicas 3");
    assert_line(text, "agentd_redis_commands_total{result=\"ok\"} 1");
    assert_line(text, "agentd_redis_commands_total{result=\"timeout\"} 1");
    assert_line(text, "agentd_redis_command_duration_seconds_bucket{le=\"0.001\"} 1");
    assert_line(text, "agentd_redis_command_duration_seconds_count 1");
    assert_line(text, "agentd_redis_reconnects_total 1");
    free(text);
}
END_TEST

START_TEST(test_metrics_model_label_takes_only_the_configured_chain)
{
    metrics_init("x");
    const char *names[] = {"claude-a", "claude-b"};
    metrics_set_models(names, 2);
    metrics_llm_model_call(0, false);
    metrics_llm_model_call(1, true);
    metrics_llm_model_call(2, true); /* no such model: dropped */
    metrics_llm_fallback(0, METRICS_FALLBACK_OVERLOADED);
    metrics_llm_fallback(-1, METRICS_FALLBACK_OVERLOADED);
    metrics_llm_model_breaker_state(0, BREAKER_OPEN);
    metrics_llm_cache_tokens(20, 3000);
    metrics_llm_cache_tokens(-5, 0);

    char *text = metrics_render();
    assert_line(text, "agentd_llm_model_calls_total{model=\"claude-a\",outcome=\"error\"} 1");
    assert_line(text, "agentd_llm_model_calls_total{model=\"claude-b\",outcome=\"ok\"} 1");
    assert_line(text, "agentd_llm_fallbacks_total{model=\"claude-a\",reason=\"overloaded\"} 1");
    assert_line(text, "agentd_llm_fallbacks_total{model=\"claude-b\",reason=\"circuit_open\"} 0");
    assert_line(text, "agentd_llm_model_breaker_state{model=\"claude-a\"} 2");
    assert_line(text, "agentd_llm_cache_tokens_total{kind=\"write\"} 20");
    assert_line(text, "agentd_llm_cache_tokens_total{kind=\"read\"} 3000");
    ck_assert_ptr_null(strstr(text, "outcome=\"ok\"} 2"));
    free(text);
}
END_TEST

START_TEST(test_metrics_help_and_type_once_per_family_before_its_samples)
{
    metrics_init("x");
    metrics_http_request(METRICS_ROUTE_METRICS, METRICS_METHOD_GET, 200, 0.001);
    metrics_llm_attempt(METRICS_ATTEMPT_SUCCESS, 200);

    char *text = metrics_render();
    char buf[256];
    bool typed[N_FAMILIES] = {false};

    for (size_t i = 0; i < N_FAMILIES; i++) {
        snprintf(buf, sizeof(buf), "# HELP %s ", families[i][0]);
        ck_assert_int_eq(count_prefix(text, buf), 1);
        snprintf(buf, sizeof(buf), "# TYPE %s %s", families[i][0], families[i][1]);
        assert_line(text, buf);
        snprintf(buf, sizeof(buf), "# TYPE %s ", families[i][0]);
        ck_assert_int_eq(count_prefix(text, buf), 1);
    }
    ck_assert_int_eq(count_prefix(text, "# TYPE "), (int)N_FAMILIES);
    ck_assert_int_eq(count_prefix(text, "# HELP "), (int)N_FAMILIES);

    /* Every sample follows its own family's TYPE line, and belongs to a known family. */
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128];
        if (sscanf(line, "# TYPE %127s", name) == 1) {
            int f = family_of(name);
            ck_assert_int_ge(f, 0);
            typed[f] = true;
            continue;
        }
        if (line[0] == '#')
            continue;
        int f = family_of(line);
        ck_assert_msg(f >= 0, "sample of no known family: %s", line);
        ck_assert_msg(typed[f], "sample before its TYPE line: %s", line);
    }
    free(text);
}
END_TEST

START_TEST(test_metrics_histogram_buckets_are_cumulative_and_inf_equals_count)
{
    metrics_init("x");
    metrics_tool_call(TOOL_CALCULATOR, TOOL_OK, 0);             /* first bucket */
    metrics_tool_call(TOOL_CALCULATOR, TOOL_OK, 0.001);         /* bounds are inclusive (le) */
    metrics_tool_call(TOOL_CALCULATOR, TOOL_OK, 0.0011);        /* 0.005 */
    metrics_tool_call(TOOL_CALCULATOR, TOOL_OK, 3);             /* 5 */
    metrics_tool_call(TOOL_CALCULATOR, TOOL_INPUT_ERROR, 1000); /* only +Inf */
    metrics_tool_call(TOOL_CALCULATOR, TOOL_OK, -1);            /* clamped to 0 */

    char *text = metrics_render();
    const char *pre = "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=";
    const char *le[] = {"0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                        "1",     "2.5",   "5",    "10",    "30",   "60",  "120",  "+Inf"};
    double prev = 0;
    char series[160];

    for (size_t i = 0; i < sizeof(le) / sizeof(le[0]); i++) {
        snprintf(series, sizeof(series), "%s\"%s\"}", pre, le[i]);
        double v = value_of(text, series);
        ck_assert_msg(v >= prev, "bucket le=%s is %g, below the previous %g", le[i], v, prev);
        prev = v;
    }
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=\"0.001\"} 3");
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=\"0.005\"} 4");
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=\"2.5\"} 4");
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=\"5\"} 5");
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=\"120\"} 5");
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"calculator\",le=\"+Inf\"} 6");
    assert_line(text, "agentd_tool_duration_seconds_count{tool=\"calculator\"} 6");
    assert_line(text, "agentd_tool_duration_seconds_sum{tool=\"calculator\"} 1003.0021");
    assert_line(text, "agentd_tool_calls_total{tool=\"calculator\",outcome=\"ok\"} 5");
    assert_line(text, "agentd_tool_calls_total{tool=\"calculator\",outcome=\"input_error\"} 1");
    /* Other tools are exported with zeros. */
    assert_line(text, "agentd_tool_duration_seconds_bucket{tool=\"save_note\",le=\"+Inf\"} 0");
    assert_line(text, "agentd_tool_duration_seconds_sum{tool=\"save_note\"} 0");
    free(text);
}
END_TEST

START_TEST(test_metrics_label_values_are_escaped)
{
    metrics_init("v1\"q\\b\nn");
    char *text = metrics_render();
    assert_line(text, "agentd_build_info{version=\"v1\\\"q\\\\b\\nn\"} 1");
    free(text);

    metrics_init(NULL);
    text = metrics_render();
    assert_line(text, "agentd_build_info{version=\"unknown\"} 1");
    free(text);
}
END_TEST

START_TEST(test_metrics_status_labels_fold_into_classes)
{
    ck_assert_str_eq(metrics_status_label(200), "200");
    ck_assert_str_eq(metrics_status_label(503), "503");
    ck_assert_str_eq(metrics_status_label(529), "529");
    ck_assert_str_eq(metrics_status_label(201), "2xx");
    ck_assert_str_eq(metrics_status_label(101), "1xx");
    ck_assert_str_eq(metrics_status_label(302), "3xx");
    ck_assert_str_eq(metrics_status_label(418), "4xx");
    ck_assert_str_eq(metrics_status_label(599), "5xx");
    ck_assert_str_eq(metrics_status_label(600), "other");
    ck_assert_str_eq(metrics_status_label(99), "other");
    ck_assert_str_eq(metrics_status_label(-1), "other");
    ck_assert_str_eq(metrics_status_label(0), "none");
}
END_TEST

START_TEST(test_metrics_cross_product_families_show_only_seen_series)
{
    metrics_init("x");
    char *text = metrics_render();
    ck_assert_int_eq(count_prefix(text, "agentd_http_requests_total{"), 0);
    ck_assert_int_eq(count_prefix(text, "agentd_llm_attempts_total{"), 0);
    free(text);

    metrics_http_request(METRICS_ROUTE_HEALTH_READY, METRICS_METHOD_HEAD, 503, 0.0001);
    metrics_http_request(METRICS_ROUTE_OTHER, METRICS_METHOD_GET, 418, 0.0001);
    metrics_llm_attempt(METRICS_ATTEMPT_TIMEOUT, 0);
    text = metrics_render();
    ck_assert_int_eq(count_prefix(text, "agentd_http_requests_total{"), 2);
    assert_line(
        text, "agentd_http_requests_total{route=\"health_ready\",method=\"HEAD\",code=\"503\"} 1");
    assert_line(text, "agentd_http_requests_total{route=\"other\",method=\"GET\",code=\"4xx\"} 1");
    assert_line(text, "agentd_llm_attempts_total{outcome=\"timeout\",code=\"none\"} 1");
    ck_assert_int_eq(count_prefix(text, "agentd_llm_attempts_total{"), 1);
    free(text);
}
END_TEST

START_TEST(test_metrics_out_of_range_enums_fold_or_drop)
{
    metrics_init("x");
    metrics_http_request((enum metrics_route)99, (enum metrics_method) - 1, 200, 0);
    metrics_run_started();
    metrics_run_finished((enum metrics_run_outcome)1000);
    metrics_tool_call((enum tool_id)7, TOOL_OK, 1);
    metrics_retry((enum dep_id) - 3, METRICS_RETRY_TIMEOUT);
    metrics_breaker_transition(DEP_WEATHER, (enum breaker_state)5);
    metrics_llm_tokens(-5, -1);
    metrics_llm_cost_usd(-1);

    char *text = metrics_render();
    assert_line(text,
                "agentd_http_requests_total{route=\"other\",method=\"other\",code=\"200\"} 1");
    assert_line(text, "agentd_runs_total{outcome=\"internal_error\"} 1");
    assert_line(text, "agentd_breaker_state{dependency=\"weather\"} 0");
    assert_line(text, "agentd_llm_tokens_total{direction=\"input\"} 0");
    assert_line(text, "agentd_llm_cost_usd_total 0");
    ck_assert(!strstr(text, "reason=\"timeout\"} 1"));
    free(text);
}
END_TEST

START_TEST(test_metrics_breaker_budget_and_ready_gauges)
{
    metrics_init("x");
    metrics_breaker_transition(DEP_ANTHROPIC, BREAKER_OPEN);
    metrics_breaker_transition(DEP_ANTHROPIC, BREAKER_HALF_OPEN);
    metrics_breaker_transition(DEP_ANTHROPIC, BREAKER_OPEN);
    metrics_breaker_state(DEP_WEB_SEARCH, BREAKER_HALF_OPEN);
    metrics_budget_transition(METRICS_BUDGET_USD, true);
    metrics_budget_transition(METRICS_BUDGET_TOKENS, true);
    metrics_budget_transition(METRICS_BUDGET_TOKENS, false);
    metrics_budget_limits(12.75, -5);
    metrics_set_ready(true);
    metrics_retry_budget_exhausted(DEP_WEB_SEARCH);
    metrics_limiter_refusal(DEP_ANTHROPIC, AGENT_PRIORITY_LOW);
    metrics_degraded_tool_result(TOOL_WEB_SEARCH);

    char *text = metrics_render();
    assert_line(text, "agentd_breaker_state{dependency=\"anthropic\"} 2");
    assert_line(text, "agentd_breaker_state{dependency=\"web_search\"} 1");
    assert_line(text, "agentd_breaker_transitions_total{dependency=\"anthropic\",to=\"open\"} 2");
    assert_line(text,
                "agentd_breaker_transitions_total{dependency=\"anthropic\",to=\"half_open\"} 1");
    assert_line(text, "agentd_breaker_transitions_total{dependency=\"anthropic\",to=\"closed\"} 0");
    assert_line(text, "agentd_budget_exhausted{kind=\"usd\"} 1");
    assert_line(text, "agentd_budget_exhausted{kind=\"tokens\"} 0");
    assert_line(text, "agentd_budget_transitions_total{kind=\"tokens\"} 2");
    assert_line(text, "agentd_budget_limit_per_hour{kind=\"usd\"} 12.75");
    assert_line(text, "agentd_budget_limit_per_hour{kind=\"tokens\"} 0");
    assert_line(text, "agentd_ready 1");
    assert_line(text, "agentd_retry_budget_exhausted_total{dependency=\"web_search\"} 1");
    assert_line(text, "agentd_limiter_refusals_total{dependency=\"anthropic\",priority=\"low\"} 1");
    assert_line(text,
                "agentd_limiter_refusals_total{dependency=\"anthropic\",priority=\"high\"} 0");
    assert_line(text, "agentd_degraded_tool_results_total{tool=\"web_search\"} 1");
    free(text);

    metrics_set_ready(false);
    text = metrics_render();
    assert_line(text, "agentd_ready 0");
    free(text);
}
END_TEST

START_TEST(test_metrics_process_metrics_track_the_process)
{
    int fds[2];

    metrics_init("x");
    char *before = metrics_render();
    ck_assert_int_eq(pipe(fds), 0);
    char *after = metrics_render();
    close(fds[0]);
    close(fds[1]);

    ck_assert_double_gt(value_of(before, "agentd_process_resident_memory_bytes"), 0);
    ck_assert_double_eq(value_of(after, "agentd_process_open_fds"),
                        value_of(before, "agentd_process_open_fds") + 2);
    double start = value_of(before, "agentd_process_start_time_seconds");
    ck_assert_double_gt(start, 1.6e9); /* after 2020 */
    ck_assert_double_le(start, (double)time(NULL) + 1);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_metrics_label_helpers_map_exact_names)
{
    ck_assert_int_eq(metrics_method_from_string("GET"), METRICS_METHOD_GET);
    ck_assert_int_eq(metrics_method_from_string("POST"), METRICS_METHOD_POST);
    ck_assert_int_eq(metrics_method_from_string("HEAD"), METRICS_METHOD_HEAD);
    ck_assert_int_eq(metrics_method_from_string("get"), METRICS_METHOD_OTHER);
    ck_assert_int_eq(metrics_method_from_string("DELETE"), METRICS_METHOD_OTHER);
    ck_assert_str_eq(metrics_run_outcome_name(METRICS_RUN_OK), "ok");
    ck_assert_str_eq(metrics_run_outcome_name(METRICS_RUN_HISTORY_TOO_LARGE), "history_too_large");
    ck_assert_str_eq(metrics_run_outcome_name((enum metrics_run_outcome)99), "internal_error");
}
END_TEST

/* Asserts the line prefix + rest. */
static void assert_line2(const char *text, const char *prefix, const char *rest)
{
    char line[512];
    snprintf(line, sizeof(line), "%s%s", prefix, rest);
    assert_line(text, line);
}

START_TEST(test_metrics_gen_ai_histograms_follow_the_conventions)
{
    metrics_init("x");
    metrics_llm_tokens(1200, 4);
    metrics_llm_tokens(3, 0);   /* 0 output tokens: still one observation */
    metrics_llm_tokens(-1, -1); /* nothing reported: no observation */
    metrics_gen_ai_operation(METRICS_GEN_AI_OK, 0.015);
    metrics_gen_ai_operation(METRICS_GEN_AI_OK, 100);
    metrics_gen_ai_operation(METRICS_GEN_AI_RETRIES_EXHAUSTED, 2.5);
    metrics_gen_ai_operation(METRICS_GEN_AI__COUNT, 1); /* out of range: dropped */

    char *text = metrics_render();
    const char *tok = "gen_ai_client_token_usage_";
    const char *chat = "{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"anthropic\",";
    char in[256], out[256], dur[256];
    snprintf(in, sizeof(in), "%sbucket%sgen_ai_token_type=\"input\",le=", tok, chat);
    snprintf(out, sizeof(out), "%sbucket%sgen_ai_token_type=\"output\",le=", tok, chat);
    snprintf(dur, sizeof(dur), "gen_ai_client_operation_duration_seconds_bucket%s", chat);

    assert_line2(text, in, "\"1\"} 0");
    assert_line2(text, in, "\"4\"} 1");
    assert_line2(text, in, "\"1024\"} 1");
    assert_line2(text, in, "\"4096\"} 2");
    assert_line2(text, out, "\"1\"} 1");
    assert_line(text, "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\","
                      "gen_ai_provider_name=\"anthropic\",gen_ai_token_type=\"input\"} 1203");
    assert_line(text, "gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\","
                      "gen_ai_provider_name=\"anthropic\",gen_ai_token_type=\"output\"} 2");
    /* Success carries no error_type; each failure kind has its own series. */
    assert_line2(text, dur, "le=\"0.01\"} 0");
    assert_line2(text, dur, "le=\"0.02\"} 1");
    assert_line2(text, dur, "le=\"81.92\"} 1");
    assert_line2(text, dur, "le=\"+Inf\"} 2");
    assert_line2(text, dur, "error_type=\"retries_exhausted\",le=\"2.56\"} 1");
    assert_line2(text, dur, "error_type=\"circuit_open\",le=\"+Inf\"} 0");
    assert_line(text, "gen_ai_client_operation_duration_seconds_sum{gen_ai_operation_name="
                      "\"chat\",gen_ai_provider_name=\"anthropic\"} 100.015");
    ck_assert_int_eq(count_prefix(text, "gen_ai_client_operation_duration_seconds_count{"),
                     METRICS_GEN_AI__COUNT);
    free(text);
}
END_TEST

/* Puts data in every family, so a format checker sees every kind of line. */
static int dump(void)
{
    metrics_init(AGENTD_VERSION);
    for (int r = 0; r < METRICS_ROUTE__COUNT; r++)
        metrics_http_request((enum metrics_route)r, METRICS_METHOD_GET, 200 + r * 101, 0.02 * r);
    metrics_run_started();
    metrics_run_started();
    metrics_run_finished(METRICS_RUN_UPSTREAM_UNAVAILABLE);
    metrics_llm_attempt(METRICS_ATTEMPT_SUCCESS, 200);
    metrics_llm_attempt(METRICS_ATTEMPT_CONNECTION_ERROR, 0);
    metrics_retry(DEP_ANTHROPIC, METRICS_RETRY_HTTP_429);
    metrics_retry_budget_exhausted(DEP_ANTHROPIC);
    metrics_breaker_transition(DEP_ANTHROPIC, BREAKER_OPEN);
    metrics_limiter_wait(DEP_ANTHROPIC, 0.3);
    metrics_limiter_refusal(DEP_WEATHER, AGENT_PRIORITY_LOW);
    metrics_tool_call(TOOL_SAVE_NOTE, TOOL_OK, 0.004);
    metrics_degraded_tool_result(TOOL_GET_WEATHER);
    metrics_llm_tokens(1200, 340);
    metrics_llm_cost_usd(0.0087);
    metrics_gen_ai_operation(METRICS_GEN_AI_OK, 1.7);
    metrics_gen_ai_operation(METRICS_GEN_AI_CIRCUIT_OPEN, 0.001);
    metrics_budget_transition(METRICS_BUDGET_USD, true);
    metrics_budget_limits(2.5, 100000);
    metrics_set_ready(true);

    char *text = metrics_render();
    if (!text)
        return EXIT_FAILURE;
    fputs(text, stdout);
    free(text);
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_metrics_totals_are_exact_after_concurrent_updates);
    tcase_add_test(tc, test_metrics_in_flight_gauge_follows_runs);
    tcase_add_test(tc, test_metrics_help_and_type_once_per_family_before_its_samples);
    tcase_add_test(tc, test_metrics_redis_mode_commands_and_latency);
    tcase_add_test(tc, test_metrics_histogram_buckets_are_cumulative_and_inf_equals_count);
    tcase_add_test(tc, test_metrics_label_values_are_escaped);
    tcase_add_test(tc, test_metrics_status_labels_fold_into_classes);
    tcase_add_test(tc, test_metrics_cross_product_families_show_only_seen_series);
    tcase_add_test(tc, test_metrics_out_of_range_enums_fold_or_drop);
    tcase_add_test(tc, test_metrics_breaker_budget_and_ready_gauges);
    tcase_add_test(tc, test_metrics_process_metrics_track_the_process);
    tcase_add_test(tc, test_metrics_label_helpers_map_exact_names);
    tcase_add_test(tc, test_metrics_model_label_takes_only_the_configured_chain);
    tcase_add_test(tc, test_metrics_gen_ai_histograms_follow_the_conventions);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--dump") == 0)
        return dump();

    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
