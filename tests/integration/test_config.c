/*
 * test_config.c — operator control against the real daemon and the fake
 * upstream: per-tool timeouts and retries, AGENTD_CONFIG_FILE reloaded on
 * SIGHUP and when it changes (under load, and with an invalid version), the
 * unknown-setting warning, and --check-config on a file.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct harness H;
static char cfg_path[320];
static char cfg_env[400];

static void teardown(void)
{
    ck_assert_int_eq(harness_stop(&H), 0);
}

static void write_config(const char *content)
{
    harness_replace_file(cfg_path, content);
}

/* Makes the temp dir (through the fake), writes the config file there and names it. */
static void start_fake_with_config(const char *content)
{
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    snprintf(cfg_path, sizeof(cfg_path), "%s/agentd.env", H.dir);
    snprintf(cfg_env, sizeof(cfg_env), "AGENTD_CONFIG_FILE=%s", cfg_path);
    write_config(content);
}

static bool wait_log(const char *text, int timeout_ms)
{
    return harness_wait_log(&H, text, timeout_ms);
}

/* The policies /health/ready shows (new reference). */
static json_t *ready_policies(void)
{
    char url[128];
    struct http_resp r;
    snprintf(url, sizeof(url), "%s/health/ready", H.agentd_url);
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    json_t *doc = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(doc);
    json_t *p = json_incref(json_object_get(doc, "policies"));
    json_decref(doc);
    ck_assert_ptr_nonnull(p);
    return p;
}

static long ready_status(void)
{
    char url[128];
    struct http_resp r;
    snprintf(url, sizeof(url), "%s/health/ready", H.agentd_url);
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    long status = r.status;
    http_resp_free(&r);
    return status;
}

static json_int_t policy_value(const char *dep, const char *key)
{
    json_t *p = ready_policies();
    json_t *v = json_object_get(json_object_get(p, dep), key);
    ck_assert_msg(json_is_integer(v), "%s.%s missing", dep, key);
    json_int_t n = json_integer_value(v);
    json_decref(p);
    return n;
}

/* The one tool call of an answer: whether it succeeded. */
static bool tool_ok(json_t *o)
{
    json_t *calls = json_object_get(o, "tool_calls");
    ck_assert_uint_eq(json_array_size(calls), 1);
    return json_is_true(json_object_get(json_array_get(calls, 0), "ok"));
}

/* ---- per-dependency policies ------------------------------------------------------------ */

START_TEST(test_slow_tools_time_out_at_their_own_bound)
{
    /* web_search: 500 ms and no retries; get_weather keeps 10 s (and 3 retries). */
    static const char *env[] = {"AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS=500",
                                "AGENTD_TOOL_WEB_SEARCH_RETRY_MAX=0",
                                "AGENTD_TOOL_GET_WEATHER_TIMEOUT_MS=10000", NULL};
    json_t *o = NULL;
    harness_start(&H, env);
    ck_assert_int_eq(policy_value("web_search", "timeout_ms"), 500);
    ck_assert_int_eq(policy_value("get_weather", "timeout_ms"), 10000);
    ck_assert_int_eq(policy_value("get_weather", "retry_max"), 3);
    /* Both upstreams answer after 1.5 s. */
    fake_add_fault(&H, "{\"route\":\"search\",\"delay_ms\":1500}");
    fake_add_fault(&H, "{\"route\":\"geocoding\",\"delay_ms\":1500}");

    int64_t t0 = harness_now_ms();
    ck_assert_int_eq(agent_ask(&H, "search for slow things", &o), 200);
    int64_t search_ms = harness_now_ms() - t0;
    ck_assert(!tool_ok(o)); /* optional tool: degraded to an error result */
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(o, "output")), "timed out"));
    json_decref(o);
    ck_assert_msg(search_ms < 1400, "web_search waited %lld ms", (long long)search_ms);
    ck_assert_uint_eq(fake_count(&H, "search"), 1); /* no retry */

    t0 = harness_now_ms();
    ck_assert_int_eq(agent_ask(&H, "What is the weather in Paris?", &o), 200);
    int64_t weather_ms = harness_now_ms() - t0;
    ck_assert(tool_ok(o)); /* waited longer than web_search's bound, and got the answer */
    json_decref(o);
    ck_assert_msg(weather_ms >= 1500, "get_weather took only %lld ms", (long long)weather_ms);
}
END_TEST

START_TEST(test_retries_differ_per_tool)
{
    static const char *env[] = {"AGENTD_TOOL_WEB_SEARCH_RETRY_MAX=0",
                                "AGENTD_TOOL_GET_WEATHER_RETRY_MAX=3", NULL};
    json_t *o = NULL;
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"search\",\"status\":503,\"count\":1}");
    fake_add_fault(&H, "{\"route\":\"geocoding\",\"status\":503,\"count\":1}");
    ck_assert_int_eq(agent_ask(&H, "search for retries", &o), 200);
    ck_assert(!tool_ok(o));
    json_decref(o);
    ck_assert_uint_eq(fake_count(&H, "search"), 1);
    ck_assert_int_eq(agent_ask(&H, "What is the weather in Paris?", &o), 200);
    ck_assert(tool_ok(o));
    json_decref(o);
    ck_assert_uint_eq(fake_count(&H, "geocoding"), 2); /* the 503, then the retry */
}
END_TEST

/* ---- reload ------------------------------------------------------------------------------ */

#define LOAD_CLIENTS 4

static atomic_bool load_stop;
static atomic_int load_ok, load_failed;

static void *load_client(void *arg)
{
    (void)arg;
    while (!atomic_load(&load_stop)) {
        json_t *o = NULL;
        long status = agent_ask(&H, "What is 2 * 21?", &o); /* two LLM calls */
        json_decref(o);
        if (status == 200)
            atomic_fetch_add(&load_ok, 1);
        else
            atomic_fetch_add(&load_failed, 1);
    }
    return NULL;
}

/* LLM calls the fake saw during the next ms. */
static size_t llm_calls_during(int ms)
{
    size_t before = fake_count(&H, "messages");
    usleep((useconds_t)ms * 1000);
    return fake_count(&H, "messages") - before;
}

START_TEST(test_reload_under_load_changes_the_rate_within_a_second)
{
    start_fake_with_config("# the LLM limiter\nAGENTD_LLM_RATE=10\nAGENTD_LLM_BURST=1\n");
    const char *env[] = {cfg_env, NULL};
    pthread_t clients[LOAD_CLIENTS];
    harness_start_agentd(&H, env);
    for (int i = 0; i < LOAD_CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&clients[i], NULL, load_client, NULL), 0);
    usleep(500 * 1000); /* the bucket's burst is spent, the clients queue */
    size_t slow = llm_calls_during(2000);
    ck_assert_msg(slow <= 2 * 10 + 6, "%zu LLM calls in 2 s at 10/s", slow);

    write_config("# the LLM limiter\nAGENTD_LLM_RATE=100\nAGENTD_LLM_BURST=1\n");
    ck_assert_int_eq(kill(H.agentd_pid, SIGHUP), 0);
    size_t fast = llm_calls_during(1000);
    atomic_store(&load_stop, true);
    for (int i = 0; i < LOAD_CLIENTS; i++)
        pthread_join(clients[i], NULL);
    /* The calls queued at the old rate (at most one per client, 0.4 s) go first, then 100/s:
       three times the old rate at least, or the reload did not take. */
    ck_assert_msg(fast >= 30, "%zu LLM calls in the second after the reload (was %zu in 2 s)", fast,
                  slow);
    ck_assert_int_eq(atomic_load(&load_failed), 0);
    ck_assert_int_gt(atomic_load(&load_ok), 0);
    ck_assert(wait_log("\"msg\":\"configuration reloaded\",\"trigger\":\"SIGHUP\"", 2000));
    ck_assert(wait_log("\"changed\":\"AGENTD_LLM_RATE\"", 0));
}
END_TEST

START_TEST(test_invalid_reload_keeps_the_running_policy)
{
    start_fake_with_config("AGENTD_TOOL_WEB_SEARCH_RETRY_MAX=0\n");
    const char *env[] = {cfg_env, NULL};
    json_t *o = NULL;
    harness_start_agentd(&H, env);
    ck_assert_int_eq(policy_value("web_search", "retry_max"), 0);
    int64_t until = harness_now_ms() + 5000;
    while (ready_status() != 200 && harness_now_ms() < until)
        usleep(50 * 1000);
    ck_assert_int_eq(ready_status(), 200);

    /* One bad value spoils the whole version: the good line in it is not applied either. */
    write_config("AGENTD_TOOL_WEB_SEARCH_RETRY_MAX=2\nAGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS=abc\n");
    ck_assert_int_eq(kill(H.agentd_pid, SIGHUP), 0);
    ck_assert(wait_log("\"msg\":\"configuration not reloaded, keeping the running one\"", 3000));
    ck_assert(wait_log("AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS: expected an integer 100..600000 (ms), "
                       "got 'abc'",
                       0));
    ck_assert_double_eq(harness_metric(&H, "agentd_config_reloads_total{result=\"invalid\"}"), 1);
    ck_assert_double_eq(harness_metric(&H, "agentd_config_reloads_total{result=\"applied\"}"), 0);
    ck_assert_int_eq(policy_value("web_search", "retry_max"), 0);
    ck_assert_int_eq(ready_status(), 200); /* readiness stays as it was */
    fake_add_fault(&H, "{\"route\":\"search\",\"status\":503,\"count\":1}");
    ck_assert_int_eq(agent_ask(&H, "search for policies", &o), 200);
    json_decref(o);
    ck_assert_uint_eq(fake_count(&H, "search"), 1); /* still no retry */

    /* A valid version is picked up when the file changes, without a signal. */
    write_config("AGENTD_TOOL_WEB_SEARCH_RETRY_MAX=2\nAGENTD_MAX_INFLIGHT=100\n");
    ck_assert(wait_log("\"trigger\":\"file changed\"", 5000));
    ck_assert(wait_log("\"msg\":\"configuration: needs restart, not applied\","
                       "\"settings\":\"AGENTD_MAX_INFLIGHT\"",
                       0));
    ck_assert_int_eq(policy_value("web_search", "retry_max"), 2);
    ck_assert_double_eq(harness_metric(&H, "agentd_config_reloads_total{result=\"applied\"}"), 1);
    fake_clear_requests(&H);
    fake_add_fault(&H, "{\"route\":\"search\",\"status\":503,\"count\":1}");
    ck_assert_int_eq(agent_ask(&H, "search for policies", &o), 200);
    ck_assert(tool_ok(o));
    json_decref(o);
    ck_assert_uint_eq(fake_count(&H, "search"), 2);
}
END_TEST

/* ---- no silent typos --------------------------------------------------------------------- */

START_TEST(test_unknown_setting_is_reported_with_the_closest_name_and_agentd_starts)
{
    static const char *env[] = {"AGENTD_LLM_TIMEOUT=5", NULL};
    json_t *o = NULL;
    harness_start(&H, env);
    ck_assert(wait_log("AGENTD_LLM_TIMEOUT: unknown setting; did you mean AGENTD_LLM_TIMEOUT_MS? "
                       "(environment)",
                       0));
    ck_assert_int_eq(agent_ask(&H, "What is 2 * 21?", &o), 200);
    json_decref(o);
}
END_TEST

/* Runs `agentd --check-config path` with only the harness's environment; output to the log. */
static int check_config_file(const char *path)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(H.log_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        char notes[400];
        snprintf(notes, sizeof(notes), "AGENTD_NOTES_DIR=%s", H.notes_dir);
        char *envp[] = {notes, "AGENTD_LISTEN=127.0.0.1:0", NULL};
        execle(getenv("AGENTD_BIN"), "agentd", "--check-config", path, (char *)NULL, envp);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_check_config_validates_a_file)
{
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    snprintf(cfg_path, sizeof(cfg_path), "%s/agentd.env", H.dir);

    write_config("# deploy/configmap\nAGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS=500\n"
                 "AGENTD_TOOL_WEB_SEARCH_RETRY_MAX=0\n");
    ck_assert_int_eq(check_config_file(cfg_path), 0);
    ck_assert(wait_log("AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS=500\n", 0));
    ck_assert(wait_log("AGENTD_TOOL_GET_WEATHER_TIMEOUT_MS=10000\n", 0));
    ck_assert(wait_log("configuration ok\n", 0));

    write_config("AGENTD_TOOL_WEB_SEARCH_TIMEOUT=500\n");
    ck_assert_int_eq(check_config_file(cfg_path), 2);
    ck_assert(wait_log("AGENTD_TOOL_WEB_SEARCH_TIMEOUT: unknown setting; did you mean "
                       "AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS? (AGENTD_CONFIG_FILE)",
                       0));

    write_config("AGENTD_TOOL_GET_WEATHER_BURST=0\n");
    ck_assert_int_eq(check_config_file(cfg_path), 2);
    ck_assert(wait_log("AGENTD_TOOL_GET_WEATHER_BURST: expected a number 1.0..1e+06, got '0'", 0));

    write_config("AGENTD_WORKERS\n");
    ck_assert_int_eq(check_config_file(cfg_path), 2);
    ck_assert(wait_log("line 1: expected NAME=value", 0));
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_slow_tools_time_out_at_their_own_bound);
    tcase_add_test(tc, test_retries_differ_per_tool);
    tcase_add_test(tc, test_reload_under_load_changes_the_rate_within_a_second);
    tcase_add_test(tc, test_invalid_reload_keeps_the_running_policy);
    tcase_add_test(tc, test_unknown_setting_is_reported_with_the_closest_name_and_agentd_starts);
    tcase_add_test(tc, test_check_config_validates_a_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(config_suite());
}
