/*
 * test_obs.c — observability end to end: every log line of a retry scenario
 * is one JSON object and the lines of one run share its request_id; the API
 * key and a bearer token never appear in any output; /metrics from the real
 * daemon passes promtool and its counters move through retries and a breaker
 * opening; the hourly budget refuses new runs with 429 budget_exceeded.
 */
#include <check.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define AUTH_TOKEN "tok-SECRET-abcdef"

static struct harness H;

static void teardown(void)
{
    ck_assert_int_eq(harness_stop(&H), 0);
}

/* Stops agentd (exit 0 required) but keeps its log; teardown cleans up. */
static void stop_agentd_keep_log(void)
{
    ck_assert_int_eq(kill(H.agentd_pid, SIGTERM), 0);
    ck_assert_int_eq(harness_wait_agentd(&H, 30000), 0);
}

static long ask_with(const char *rid, const char *token, const char *body, struct http_resp *r)
{
    char url[128], h_rid[160], h_auth[160];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    snprintf(h_rid, sizeof(h_rid), "X-Request-Id: %s", rid);
    snprintf(h_auth, sizeof(h_auth), "Authorization: Bearer %s", token);
    const char *hdrs[] = {"Content-Type: application/json", h_rid, h_auth, NULL};
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, r), 0);
    return r->status;
}

static char *fetch_metrics(void)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/metrics", H.agentd_url);
    struct http_resp r;
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    char ct[128];
    ck_assert(http_header(&r, "Content-Type", ct, sizeof(ct)));
    ck_assert_ptr_nonnull(strstr(ct, "version=0.0.4"));
    return r.body;
}

START_TEST(test_logs_are_json_and_share_the_request_id)
{
    static const char *env[] = {"AGENTD_AUTH_TOKENS=other-token," AUTH_TOKEN, NULL};
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"status\":503,\"count\":2}");
    struct http_resp r;
    ck_assert_int_eq(ask_with("obs-run-1", AUTH_TOKEN, "{\"input\":\"What is 2 * 21?\"}", &r), 200);
    http_resp_free(&r);
    /* Without the token: 401 with WWW-Authenticate. */
    ck_assert_int_eq(ask_with("obs-run-2", "wrong", "{\"input\":\"hi\"}", &r), 401);
    char www[64];
    ck_assert(http_header(&r, "WWW-Authenticate", www, sizeof(www)));
    ck_assert_str_eq(www, "Bearer");
    http_resp_free(&r);
    stop_agentd_keep_log();

    char *log = harness_read_log(&H);
    size_t lines = 0, of_run = 0;
    bool saw_retry = false, saw_start = false, saw_end = false, saw_access = false;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &e);
        ck_assert_msg(o != NULL, "not JSON: %s", line);
        ck_assert(json_is_string(json_object_get(o, "ts")));
        ck_assert(json_is_string(json_object_get(o, "level")));
        ck_assert(json_is_string(json_object_get(o, "msg")));
        const char *rid = json_string_value(json_object_get(o, "request_id"));
        const char *msg = json_string_value(json_object_get(o, "msg"));
        if (rid && strcmp(rid, "obs-run-1") == 0) {
            of_run++;
            saw_retry |= strcmp(msg, "retry scheduled") == 0;
            saw_start |= strcmp(msg, "run start") == 0;
            saw_end |= strcmp(msg, "run end") == 0;
            saw_access |= strcmp(msg, "http request") == 0;
        }
        json_decref(o);
        lines++;
    }
    ck_assert_uint_gt(lines, 5);
    ck_assert_uint_ge(of_run, 5);
    ck_assert(saw_retry && saw_start && saw_end && saw_access);
    free(log);
}
END_TEST

START_TEST(test_secrets_never_appear_in_any_output)
{
    /* Info level: request input (which may carry note content) is logged only at debug. */
    static const char *env[] = {"AGENTD_AUTH_TOKENS=" AUTH_TOKEN, NULL};
    harness_start(&H, env);
    struct http_resp r;
    ask_with("s1", AUTH_TOKEN, "{\"input\":\"save note: the secret plan\"}", &r);
    http_resp_free(&r);
    ask_with("s2", "nope", "{\"input\":\"hi\"}", &r);
    http_resp_free(&r);
    fake_add_fault(&H, "{\"route\":\"messages\",\"status\":401,\"count\":1}");
    ask_with("s3", AUTH_TOKEN, "{\"input\":\"hi\"}", &r);
    ck_assert_ptr_null(strstr(r.body, "SECRET"));
    http_resp_free(&r);
    char *metrics = fetch_metrics();
    ck_assert_ptr_null(strstr(metrics, "SECRET"));
    free(metrics);
    stop_agentd_keep_log();
    char *log = harness_read_log(&H);
    ck_assert_ptr_null(strstr(log, "sk-ant-test-SECRET"));
    ck_assert_ptr_null(strstr(log, AUTH_TOKEN));
    ck_assert_ptr_null(strstr(log, "the secret plan"));
    free(log);
}
END_TEST

START_TEST(test_metrics_pass_promtool_and_move_through_retries_and_breaker)
{
    static const char *env[] = {"AGENTD_BREAKER_FAILURES=3", "AGENTD_RETRY_MAX=1",
                                "AGENTD_BREAKER_OPEN_MS=60000",
                                "AGENTD_BREAKER_FIRST_OPEN_MS=60000", NULL};
    harness_start(&H, env);
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "What is 3 * 3?", &o), 200);
    json_decref(o);
    fake_add_fault(&H, "{\"route\":\"messages\",\"status\":503}");
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(agent_ask(&H, "hello", &o), 503);
        json_decref(o);
    }
    char *m = fetch_metrics();
    ck_assert_double_eq(harness_metric_sample(m, "agentd_runs_total{outcome=\"ok\"}"), 1);
    ck_assert_double_ge(
        harness_metric_sample(m, "agentd_runs_total{outcome=\"upstream_unavailable\"}"), 2);
    ck_assert_double_ge(
        harness_metric_sample(m,
                              "agentd_retries_total{dependency=\"anthropic\",reason=\"http_5xx\"}"),
        1);
    ck_assert_double_ge(
        harness_metric_sample(m, "agentd_llm_attempts_total{outcome=\"http_error\",code=\"503\"}"),
        3);
    ck_assert_double_eq(harness_metric_sample(m, "agentd_breaker_state{dependency=\"anthropic\"}"),
                        2);
    ck_assert_double_ge(
        harness_metric_sample(m, "agentd_tool_calls_total{tool=\"calculator\",outcome=\"ok\"}"), 1);
    ck_assert_double_gt(harness_metric_sample(m, "agentd_llm_tokens_total{direction=\"input\"}"),
                        0);
    ck_assert_double_eq(harness_metric_sample(m, "agentd_ready"), 1);
    /* The GenAI families: the good run's two calls, then calls that failed (retries spent, or
       the circuit open once the breaker tripped), each one operation; tokens per answer. */
#define CHAT "gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"anthropic\""
    ck_assert_double_eq(
        harness_metric_sample(m, "gen_ai_client_operation_duration_seconds_count{" CHAT "}"), 2);
    ck_assert_double_eq(
        harness_metric_sample(m, "gen_ai_client_operation_duration_seconds_count{" CHAT
                                 ",error_type=\"retries_exhausted\"}") +
            harness_metric_sample(m, "gen_ai_client_operation_duration_seconds_count{" CHAT
                                     ",error_type=\"circuit_open\"}"),
        3);
    ck_assert_double_eq(harness_metric_sample(m, "gen_ai_client_token_usage_count{" CHAT
                                                 ",gen_ai_token_type=\"input\"}"),
                        2);
#undef CHAT
    free(m);

    const char *script = getenv("CHECK_METRICS_SH");
    ck_assert_msg(script != NULL, "CHECK_METRICS_SH not set");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s/metrics", script, H.agentd_url);
    int rc = system(cmd);
    ck_assert_msg(WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 77, "promtool rejected /metrics");
    ck_assert_msg(WEXITSTATUS(rc) == 0, "promtool missing (apt-get install prometheus)");

    /* Every metric a panel of the Grafana dashboard uses is in this live /metrics. */
    const char *check = getenv("CHECK_DASHBOARD_PY"), *dash = getenv("DASHBOARD_JSON");
    ck_assert_msg(check && dash, "CHECK_DASHBOARD_PY or DASHBOARD_JSON not set");
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s --metrics %s/metrics", check, dash,
             H.agentd_url);
    rc = system(cmd);
    ck_assert_msg(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
                  "a dashboard metric is missing from /metrics");
}
END_TEST

START_TEST(test_budget_refuses_new_runs_when_spent)
{
    static const char *env[] = {"AGENTD_BUDGET_TOKENS_PER_HOUR=10", NULL};
    harness_start(&H, env);
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
    json_decref(o);
    char url[128], ra[16];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, "{\"input\":\"hi\"}", 14, false, &r), 0);
    ck_assert_int_eq(r.status, 429);
    ck_assert_ptr_nonnull(strstr(r.body, "\"budget_exceeded\""));
    ck_assert(http_header(&r, "Retry-After", ra, sizeof(ra)));
    ck_assert_int_gt(atoi(ra), 0);
    http_resp_free(&r);
    char *m = fetch_metrics();
    ck_assert_double_eq(harness_metric_sample(m, "agentd_budget_exhausted{kind=\"tokens\"}"), 1);
    free(m);
    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(strstr(log, "budget exhausted"));
    free(log);
}
END_TEST

/* An answer agentd rejects (here two tool_use blocks with one id) was still billed: its tokens
   count toward the hourly budget. The retry gets a good answer, so the run itself succeeds. */
START_TEST(test_tokens_of_a_rejected_answer_count_toward_the_budget)
{
    static const char *env[] = {"AGENTD_BUDGET_TOKENS_PER_HOUR=1500", NULL};
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"count\":1,\"body\":{\"id\":\"msg_x\","
                       "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\","
                       "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":"
                       "\"calculator\",\"input\":{}},{\"type\":\"tool_use\",\"id\":\"toolu_1\","
                       "\"name\":\"calculator\",\"input\":{}}],\"stop_reason\":\"tool_use\","
                       "\"usage\":{\"input_tokens\":1000,\"output_tokens\":1000}}}");
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 200);
    json_decref(o);
    ck_assert_uint_eq(fake_count(&H, "messages"), 2); /* the rejected answer, then its retry */
    struct http_resp r;
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(http_do("POST", url, hdrs, "{\"input\":\"hi\"}", 14, false, &r), 0);
    ck_assert_int_eq(r.status, 429);
    ck_assert_ptr_nonnull(strstr(r.body, "\"budget_exceeded\""));
    http_resp_free(&r);
    char *m = fetch_metrics();
    ck_assert_double_ge(harness_metric_sample(m, "agentd_llm_tokens_total{direction=\"input\"}"),
                        1000);
    free(m);
}
END_TEST

/* ---- callers --------------------------------------------------------------------- */

static long ask_as(const char *token, const char *key, const char *body, struct http_resp *r)
{
    char url[128], h_auth[160], h_key[160];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    snprintf(h_auth, sizeof(h_auth), "Authorization: Bearer %s", token);
    snprintf(h_key, sizeof(h_key), "Idempotency-Key: %s", key ? key : "");
    const char *hdrs[] = {"Content-Type: application/json", h_auth, key ? h_key : NULL, NULL};
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, r), 0);
    return r->status;
}

/* With bearer tokens, conversations and Idempotency-Keys belong to the token that made them:
   another token with the same conversation_id or key gets its own, and never sees, continues,
   blocks or replays the first one's. */
START_TEST(test_conversations_and_keys_are_scoped_to_the_caller)
{
    static const char *env[] = {"AGENTD_AUTH_TOKENS=token-alice," AUTH_TOKEN, NULL};
    harness_start(&H, env);
    struct http_resp r;
    const char *turn = "{\"input\":\"hello\",\"conversation_id\":\"shared-1\"}";
    ck_assert_int_eq(ask_as("token-alice", NULL, turn, &r), 200);
    http_resp_free(&r);
    ck_assert_int_eq(ask_as("token-alice", NULL, turn, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "(turn 2)")); /* alice's history is there */
    http_resp_free(&r);
    ck_assert_int_eq(ask_as(AUTH_TOKEN, NULL, turn, &r), 200);
    ck_assert_ptr_null(strstr(r.body, "(turn")); /* not for the other caller */
    http_resp_free(&r);

    const char *q = "{\"input\":\"What is 3 * 3?\"}";
    ck_assert_int_eq(ask_as("token-alice", "order-1", q, &r), 200);
    char replayed[16];
    ck_assert(!http_header(&r, "Idempotent-Replayed", replayed, sizeof(replayed)));
    http_resp_free(&r);
    ck_assert_int_eq(ask_as(AUTH_TOKEN, "order-1", q, &r), 200);
    ck_assert(!http_header(&r, "Idempotent-Replayed", replayed, sizeof(replayed)));
    http_resp_free(&r);
    ck_assert_int_eq(ask_as(AUTH_TOKEN, "order-1", "{\"input\":\"What is 4 * 4?\"}", &r), 422);
    http_resp_free(&r);
    ck_assert_int_eq(ask_as("token-alice", "order-1", q, &r), 200);
    ck_assert(http_header(&r, "Idempotent-Replayed", replayed, sizeof(replayed)));
    http_resp_free(&r);
    /* The token itself is never what the stores or the logs hold. */
    stop_agentd_keep_log();
    char *log = harness_read_log(&H);
    ck_assert_ptr_null(strstr(log, "token-alice"));
    free(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("obs");
    TCase *tc = tcase_create("obs");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_logs_are_json_and_share_the_request_id);
    tcase_add_test(tc, test_secrets_never_appear_in_any_output);
    tcase_add_test(tc, test_metrics_pass_promtool_and_move_through_retries_and_breaker);
    tcase_add_test(tc, test_budget_refuses_new_runs_when_spent);
    tcase_add_test(tc, test_tokens_of_a_rejected_answer_count_toward_the_budget);
    tcase_add_test(tc, test_conversations_and_keys_are_scoped_to_the_caller);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
