/*
 * test_auth.c — "safe by default" end to end: bearer tokens from
 * AGENTD_AUTH_TOKENS_FILE, re-read on SIGHUP and when the file changes (a bad
 * version keeps the tokens in use, a SIGHUP never stops agentd), the start-up
 * warnings about an unauthenticated non-loopback listener and a plain-http
 * API URL, URLs redacted in the log and in --check-config, and the tokens
 * file validated like any other setting (exit 2).
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define TOKEN_A "tok-A-SECRET-aaaa"
#define TOKEN_B "tok-B-SECRET-bbbb"

static struct harness H;
static char tokens_path[320];
static char tokens_env[400];

static void teardown(void)
{
    ck_assert_int_eq(harness_stop(&H), 0);
}

static void write_tokens(const char *content)
{
    harness_replace_file(tokens_path, content);
}

/* Makes the temp dir (through the fake) and names a tokens file in it. */
static void start_fake_with_tokens(const char *content)
{
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    snprintf(tokens_path, sizeof(tokens_path), "%s/tokens", H.dir);
    snprintf(tokens_env, sizeof(tokens_env), "AGENTD_AUTH_TOKENS_FILE=%s", tokens_path);
    if (content)
        write_tokens(content);
}

static long ask_as(const char *token)
{
    char url[128], h_auth[160];
    static const char body[] = "{\"input\":\"What is 2 * 21?\"}";
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    snprintf(h_auth, sizeof(h_auth), "Authorization: Bearer %s", token);
    const char *hdrs[] = {"Content-Type: application/json", h_auth, NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, &r), 0);
    long status = r.status;
    http_resp_free(&r);
    return status;
}

/* Polls until token gets `status` or timeout_ms passes; returns the last status. */
static long wait_status(const char *token, long status, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    long got;
    while ((got = ask_as(token)) != status && harness_now_ms() < until)
        usleep(100 * 1000);
    return got;
}

static bool wait_log(const char *text, int timeout_ms)
{
    return harness_wait_log(&H, text, timeout_ms);
}

static void assert_log_has_no_token(void)
{
    char *log = harness_read_log(&H);
    ck_assert_ptr_null(strstr(log, "SECRET-aaaa"));
    ck_assert_ptr_null(strstr(log, "SECRET-bbbb"));
    free(log);
}

START_TEST(test_tokens_file_is_reloaded_on_sighup)
{
    start_fake_with_tokens("# agentd tokens\n" TOKEN_A "\n");
    const char *env[] = {tokens_env, NULL};
    harness_start_agentd(&H, env);
    ck_assert_int_eq(ask_as(TOKEN_A), 200);
    ck_assert_int_eq(ask_as(TOKEN_B), 401);

    write_tokens(TOKEN_B "\r\n");
    ck_assert_int_eq(kill(H.agentd_pid, SIGHUP), 0);
    ck_assert_int_eq(wait_status(TOKEN_B, 200, 5000), 200);
    ck_assert_int_eq(ask_as(TOKEN_A), 401);
    ck_assert(
        wait_log("\"msg\":\"auth tokens reloaded\",\"trigger\":\"SIGHUP\",\"count\":1", 2000));
    assert_log_has_no_token();
}
END_TEST

START_TEST(test_bad_tokens_file_keeps_the_tokens_in_use)
{
    start_fake_with_tokens(TOKEN_A "\n");
    const char *env[] = {tokens_env, NULL};
    harness_start_agentd(&H, env);

    write_tokens("# emptied by mistake\n\n");
    ck_assert_int_eq(kill(H.agentd_pid, SIGHUP), 0);
    ck_assert(wait_log("\"msg\":\"auth tokens not reloaded, keeping the current ones\"", 5000));
    ck_assert_int_eq(ask_as(TOKEN_A), 200);

    unlink(tokens_path);
    ck_assert_int_eq(kill(H.agentd_pid, SIGHUP), 0);
    ck_assert(wait_log("No such file or directory", 5000));
    ck_assert_int_eq(ask_as(TOKEN_A), 200);
    ck_assert_int_eq(ask_as(TOKEN_B), 401);
    assert_log_has_no_token();
}
END_TEST

START_TEST(test_changed_tokens_file_is_noticed_without_a_signal)
{
    start_fake_with_tokens(TOKEN_A "\n");
    const char *env[] = {tokens_env, NULL};
    harness_start_agentd(&H, env);
    ck_assert_int_eq(ask_as(TOKEN_B), 401);

    write_tokens(TOKEN_B "\n");
    /* main looks at the file every 10 s. */
    ck_assert_int_eq(wait_status(TOKEN_B, 200, 15000), 200);
    ck_assert_int_eq(ask_as(TOKEN_A), 401);
    ck_assert(wait_log("\"trigger\":\"file changed\"", 2000));
    assert_log_has_no_token();
}
END_TEST

START_TEST(test_sighup_without_a_tokens_file_does_not_stop_agentd)
{
    harness_start(&H, NULL);
    ck_assert_int_eq(kill(H.agentd_pid, SIGHUP), 0);
    ck_assert(wait_log("SIGHUP ignored: no AGENTD_CONFIG_FILE or AGENTD_AUTH_TOKENS_FILE to reload",
                       5000));
    ck_assert_int_eq(ask_as("anything"), 200);
}
END_TEST

START_TEST(test_startup_warns_about_exposure_and_logs_urls_redacted)
{
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    H.agentd_host = "0.0.0.0"; /* not loopback; the harness still reaches it on 127.0.0.1 */
    static const char *env[] = {
        "ANTHROPIC_BASE_URL=http://proxy:PASSWORD9@agentd-it.invalid:9/llm?key=QUERY9", NULL};
    harness_start_agentd(&H, env);
    ck_assert_int_eq(kill(H.agentd_pid, SIGTERM), 0);
    ck_assert_int_eq(harness_wait_agentd(&H, 30000), 0);

    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(strstr(log, "\"level\":\"warn\",\"msg\":\"no bearer tokens on a "
                                      "non-loopback address: anyone who can reach it can run "
                                      "agents on your API key"));
    ck_assert_ptr_nonnull(strstr(log, "\"host\":\"0.0.0.0\""));
    ck_assert_ptr_nonnull(strstr(log, "\"level\":\"warn\",\"msg\":\"ANTHROPIC_BASE_URL is plain "
                                      "http:// to a host that is not loopback"));
    ck_assert_ptr_nonnull(
        strstr(log, "\"anthropic_base_url\":\"http://***@agentd-it.invalid:9/llm?***\""));
    char *started = strstr(log, "\"msg\":\"agentd started\"");
    ck_assert_ptr_nonnull(started);
    ck_assert_ptr_nonnull(strstr(started, "http://***@agentd-it.invalid:9/llm?***"));
    ck_assert_ptr_null(strstr(log, "PASSWORD9"));
    ck_assert_ptr_null(strstr(log, "QUERY9"));
    free(log);
}
END_TEST

START_TEST(test_startup_is_quiet_with_tokens_and_a_loopback_api)
{
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    H.agentd_host = "0.0.0.0";
    static const char *env[] = {"AGENTD_AUTH_TOKENS=" TOKEN_A, NULL};
    harness_start_agentd(&H, env);
    ck_assert_int_eq(ask_as(TOKEN_A), 200);
    ck_assert(wait_log("\"auth_tokens\":1", 2000));
    char *log = harness_read_log(&H);
    ck_assert_ptr_null(strstr(log, "non-loopback"));
    ck_assert_ptr_null(strstr(log, "plain http://"));
    free(log);
}
END_TEST

START_TEST(test_check_config_validates_the_tokens_file_and_redacts_urls)
{
    start_fake_with_tokens(NULL);
    const char *missing[] = {tokens_env, NULL};
    ck_assert_int_eq(harness_run_agentd(&H, "--check-config", missing, 10000), 2);
    ck_assert(wait_log("agentd: invalid configuration: AGENTD_AUTH_TOKENS_FILE: cannot read '", 0));

    const char *both[] = {tokens_env, "AGENTD_AUTH_TOKENS=" TOKEN_A, NULL};
    ck_assert_int_eq(harness_run_agentd(&H, "--check-config", both, 10000), 2);
    ck_assert(wait_log("set only one of AGENTD_AUTH_TOKENS and AGENTD_AUTH_TOKENS_FILE", 0));

    write_tokens("# no token yet\n");
    ck_assert_int_eq(harness_run_agentd(&H, "--check-config", missing, 10000), 2);
    ck_assert(wait_log("no token in the file (one per line)", 0));

    write_tokens(TOKEN_A "\n");
    const char *good[] = {tokens_env,
                          "AGENTD_SEARCH_URL=https://searx:SECRET-PW@searx.example/?k=v", NULL};
    ck_assert_int_eq(harness_run_agentd(&H, "--check-config", good, 10000), 0);
    ck_assert(wait_log("\nAGENTD_SEARCH_URL=https://***@searx.example/?***\n", 0));
    ck_assert(wait_log("configuration ok\n", 0));
    char *log = harness_read_log(&H);
    ck_assert_ptr_null(strstr(log, "SECRET-PW"));
    ck_assert_ptr_null(strstr(log, "SECRET-aaaa"));
    free(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_tokens_file_is_reloaded_on_sighup);
    tcase_add_test(tc, test_bad_tokens_file_keeps_the_tokens_in_use);
    tcase_add_test(tc, test_changed_tokens_file_is_noticed_without_a_signal);
    tcase_add_test(tc, test_sighup_without_a_tokens_file_does_not_stop_agentd);
    tcase_add_test(tc, test_startup_warns_about_exposure_and_logs_urls_redacted);
    tcase_add_test(tc, test_startup_is_quiet_with_tokens_and_a_loopback_api);
    tcase_add_test(tc, test_check_config_validates_the_tokens_file_and_redacts_urls);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
