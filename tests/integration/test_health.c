/*
 * test_health.c — Kubernetes behaviour end to end: readiness follows API
 * reachability (with a failure threshold), free disk space and a writable
 * notes directory, answers fast while the API hangs; the SIGTERM sequence
 * (not ready at once, serve through the delay, refuse new connections,
 * finish in-flight runs, exit 0).
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "harness.h"

static struct harness H;

static void teardown(void)
{
    ck_assert_int_eq(harness_stop(&H), 0);
}

static long get(const char *path, json_t **ret)
{
    char url[160];
    snprintf(url, sizeof(url), "%s%s", H.agentd_url, path);
    struct http_resp r;
    if (http_do("GET", url, NULL, NULL, 0, false, &r) != 0) {
        http_resp_free(&r);
        if (ret)
            *ret = NULL;
        return -1;
    }
    if (ret)
        *ret = r.body ? json_loads(r.body, 0, NULL) : NULL;
    long st = r.status;
    http_resp_free(&r);
    return st;
}

/* Polls /health/ready until it answers `want` (bounded); returns the last status. */
static long wait_ready_status(long want, int timeout_ms, json_t **ret)
{
    int64_t until = harness_now_ms() + timeout_ms;
    long st = 0;
    for (;;) {
        json_t *o = NULL;
        st = get("/health/ready", &o);
        if (st == want || harness_now_ms() >= until) {
            if (ret)
                *ret = o;
            else
                json_decref(o);
            return st;
        }
        json_decref(o);
        usleep(50 * 1000);
    }
}

static const char *check_status(json_t *o, const char *check)
{
    const char *s = json_string_value(
        json_object_get(json_object_get(json_object_get(o, "checks"), check), "status"));
    return s ? s : "";
}

START_TEST(test_ready_is_ok_with_every_check)
{
    harness_start(&H, NULL);
    json_t *o;
    ck_assert_int_eq(wait_ready_status(200, 5000, &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "status")), "ok");
    ck_assert_str_eq(check_status(o, "anthropic_api"), "ok");
    ck_assert_str_eq(check_status(o, "disk_space"), "ok");
    ck_assert_str_eq(check_status(o, "notes_writable"), "ok");
    ck_assert_str_eq(check_status(o, "shutdown"), "ok");
    char *body = json_dumps(o, 0);
    ck_assert_ptr_null(strstr(body, "SECRET"));
    free(body);
    json_decref(o);
    /* The probe used the cheap models endpoint, never messages. */
    ck_assert_uint_ge(fake_count(&H, "models"), 1);
    ck_assert_uint_eq(fake_count(&H, "messages"), 0);
}
END_TEST

START_TEST(test_ready_fails_after_threshold_when_api_unreachable_and_recovers)
{
    static const char *env[] = {"AGENTD_READY_FAILURE_THRESHOLD=3", NULL};
    harness_start(&H, env);
    ck_assert_int_eq(wait_ready_status(200, 5000, NULL), 200);
    fake_clear_requests(&H);
    fake_add_fault(&H, "{\"route\":\"models\",\"reset\":true}");
    json_t *o;
    ck_assert_int_eq(wait_ready_status(503, 10000, &o), 503);
    /* Not before the threshold: at least three failed probes were needed. */
    ck_assert_uint_ge(fake_count(&H, "models"), 3);
    ck_assert_str_eq(json_string_value(json_object_get(o, "status")), "unavailable");
    ck_assert_str_eq(check_status(o, "anthropic_api"), "fail");
    ck_assert(json_is_string(
        json_object_get(json_object_get(json_object_get(o, "checks"), "anthropic_api"), "reason")));
    json_decref(o);
    /* Liveness does not care. */
    ck_assert_int_eq(get("/health/live", NULL), 200);
    fake_clear_faults(&H);
    ck_assert_int_eq(wait_ready_status(200, 10000, NULL), 200);
}
END_TEST

START_TEST(test_ready_fails_on_401_from_models)
{
    harness_start(&H, NULL);
    fake_add_fault(&H, "{\"route\":\"models\",\"status\":401}");
    json_t *o;
    ck_assert_int_eq(wait_ready_status(503, 10000, &o), 503);
    ck_assert_str_eq(check_status(o, "anthropic_api"), "fail");
    json_decref(o);
}
END_TEST

START_TEST(test_ready_stays_ok_on_429_and_5xx)
{
    harness_start(&H, NULL);
    ck_assert_int_eq(wait_ready_status(200, 5000, NULL), 200);
    fake_clear_requests(&H);
    fake_add_fault(&H, "{\"route\":\"models\",\"status\":503}");
    /* Several probe periods pass; the API answered, so the pod stays ready. */
    ck_assert_uint_ge(fake_wait_count(&H, "models", 4, 5000), 4);
    ck_assert_int_eq(get("/health/ready", NULL), 200);
}
END_TEST

START_TEST(test_ready_fails_when_free_space_below_threshold)
{
    static const char *env[] = {"AGENTD_NOTES_MIN_FREE_BYTES=1099511627776", NULL};
    harness_start(&H, env);
    json_t *o;
    ck_assert_int_eq(wait_ready_status(503, 5000, &o), 503);
    ck_assert_str_eq(check_status(o, "disk_space"), "fail");
    ck_assert_str_eq(check_status(o, "anthropic_api"), "ok");
    json_decref(o);
}
END_TEST

START_TEST(test_ready_fails_when_notes_dir_not_writable)
{
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    if (mount("tmpfs", H.notes_dir, "tmpfs", MS_RDONLY, "size=1m") != 0) {
        fprintf(stderr, "skipping: cannot mount a read-only tmpfs (%s)\n", strerror(errno));
        harness_start_agentd(&H, NULL);
        return;
    }
    harness_start_agentd(&H, NULL);
    json_t *o;
    long st = wait_ready_status(503, 5000, &o);
    umount(H.notes_dir);
    ck_assert_int_eq(st, 503);
    ck_assert_str_eq(check_status(o, "notes_writable"), "fail");
    json_decref(o);
}
END_TEST

START_TEST(test_ready_answers_fast_while_api_hangs)
{
    /* Every check hangs for 3 s: an endpoint that waited on the checker or the network would
       take seconds, far above the bound below. */
    static const char *env[] = {"AGENTD_READY_TIMEOUT_MS=3000", NULL};
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"models\",\"hang\":true}");
    fake_add_fault(&H, "{\"route\":\"messages\",\"hang\":true}");
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        char url[160];
        snprintf(url, sizeof(url), "%s/health/ready", H.agentd_url);
        struct http_resp r;
        ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
        if (r.seconds > worst)
            worst = r.seconds;
        http_resp_free(&r);
        usleep(50 * 1000);
    }
    /* Generous bound (sanitizers, a loaded CI host); waiting on the network would take 3 s. */
    ck_assert_msg(worst < 1.0, "slowest /health/ready took %.3f s", worst);
    fake_clear_faults(&H);
}
END_TEST

/* ---- shutdown ------------------------------------------------------------------------ */

struct slow_run {
    long status;
    char output[256];
};

static void *slow_run_main(void *p)
{
    struct slow_run *s = p;
    json_t *o = NULL;
    s->status = agent_ask(&H, "What is 6 * 7?", &o);
    const char *out = json_string_value(json_object_get(o, "output"));
    snprintf(s->output, sizeof(s->output), "%s", out ? out : "");
    json_decref(o);
    return NULL;
}

START_TEST(test_sigterm_drains_in_flight_runs_then_exits_zero)
{
    static const char *env[] = {"AGENTD_SHUTDOWN_DELAY_MS=1000", "AGENTD_SHUTDOWN_GRACE_MS=10000",
                                NULL};
    harness_start(&H, env);
    ck_assert_int_eq(wait_ready_status(200, 5000, NULL), 200);
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":2500,\"count\":1}");
    pthread_t th;
    struct slow_run run = {0};
    pthread_create(&th, NULL, slow_run_main, &run);
    fake_wait_count(&H, "messages", 1, 5000);
    ck_assert_int_eq(kill(H.agentd_pid, SIGTERM), 0);
    /* Not ready at once, while still serving (liveness answers during the delay). */
    json_t *o;
    ck_assert_int_eq(wait_ready_status(503, 500, &o), 503);
    ck_assert_str_eq(check_status(o, "shutdown"), "fail");
    json_decref(o);
    ck_assert_int_eq(get("/health/live", NULL), 200);
    /* After the delay, new connections are refused. */
    usleep(1500 * 1000);
    ck_assert_int_eq(get("/health/live", NULL), -1);
    /* The in-flight run still completes. */
    pthread_join(th, NULL);
    ck_assert_int_eq(run.status, 200);
    ck_assert_ptr_nonnull(strstr(run.output, "42"));
    ck_assert_int_eq(harness_wait_agentd(&H, 15000), 0);
    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(strstr(log, "shutdown: stopped accepting"));
    free(log);
}
END_TEST

START_TEST(test_second_signal_answers_unfinished_runs_and_exits)
{
    static const char *env[] = {"AGENTD_SHUTDOWN_DELAY_MS=0", "AGENTD_SHUTDOWN_GRACE_MS=20000",
                                NULL};
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"hang\":true}");
    pthread_t th;
    struct slow_run run = {0};
    pthread_create(&th, NULL, slow_run_main, &run);
    fake_wait_count(&H, "messages", 1, 5000);
    kill(H.agentd_pid, SIGTERM);
    usleep(300 * 1000);
    int64_t t0 = harness_now_ms();
    kill(H.agentd_pid, SIGTERM);
    ck_assert_int_eq(harness_wait_agentd(&H, 10000), 0);
    ck_assert_msg(harness_now_ms() - t0 < 3000, "second signal did not stop agentd promptly");
    pthread_join(th, NULL);
    ck_assert_int_eq(run.status, 503);
}
END_TEST

/* A request admitted at its headers before the stop signal, whose body is still arriving, is
   part of what the grace period waits for: it runs and is answered. */
START_TEST(test_sigterm_waits_for_an_upload_in_progress)
{
    static const char *env[] = {"AGENTD_SHUTDOWN_DELAY_MS=0", "AGENTD_SHUTDOWN_GRACE_MS=10000",
                                NULL};
    harness_start(&H, env);
    const char *body = "{\"input\":\"What is 6 * 7?\"}";
    size_t len = strlen(body);
    char head[256];
    int hn = snprintf(head, sizeof(head),
                      "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      len);
    int fd = harness_connect(&H);
    ck_assert_int_eq(write(fd, head, (size_t)hn), hn);
    ck_assert_int_eq(write(fd, body, 10), 10);
    usleep(200 * 1000);
    ck_assert_int_eq(kill(H.agentd_pid, SIGTERM), 0);
    usleep(500 * 1000); /* well into the grace period, nothing suspended yet */
    ck_assert_int_eq(write(fd, body + 10, len - 10), (ssize_t)(len - 10));
    char resp[8192];
    ck_assert_int_eq(harness_read_response(fd, resp, sizeof(resp)), 200);
    ck_assert_ptr_nonnull(strstr(resp, "42"));
    close(fd);
    ck_assert_int_eq(harness_wait_agentd(&H, 15000), 0);
}
END_TEST

/* A run still going when the grace period ends is answered 503 shutting_down with Retry-After,
   and agentd exits 0. */
START_TEST(test_runs_past_the_grace_period_get_503_shutting_down)
{
    static const char *env[] = {"AGENTD_SHUTDOWN_DELAY_MS=0", "AGENTD_SHUTDOWN_GRACE_MS=500", NULL};
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"hang\":true}");
    int fd = harness_connect(&H);
    const char *req = "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 17\r\n\r\n{\"input\":\"hello\"}";
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    fake_wait_count(&H, "messages", 1, 5000);
    ck_assert_int_eq(kill(H.agentd_pid, SIGTERM), 0);
    char resp[8192];
    ck_assert_int_eq(harness_read_response(fd, resp, sizeof(resp)), 503);
    ck_assert_ptr_nonnull(strstr(resp, "shutting_down"));
    ck_assert_ptr_nonnull(strcasestr(resp, "\r\nRetry-After:"));
    close(fd);
    ck_assert_int_eq(harness_wait_agentd(&H, 15000), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("health");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_ready_is_ok_with_every_check);
    tcase_add_test(tc, test_ready_fails_after_threshold_when_api_unreachable_and_recovers);
    tcase_add_test(tc, test_ready_fails_on_401_from_models);
    tcase_add_test(tc, test_ready_stays_ok_on_429_and_5xx);
    tcase_add_test(tc, test_ready_fails_when_free_space_below_threshold);
    tcase_add_test(tc, test_ready_fails_when_notes_dir_not_writable);
    tcase_add_test(tc, test_ready_answers_fast_while_api_hangs);
    tcase_add_test(tc, test_sigterm_drains_in_flight_runs_then_exits_zero);
    tcase_add_test(tc, test_second_signal_answers_unfinished_runs_and_exits);
    tcase_add_test(tc, test_sigterm_waits_for_an_upload_in_progress);
    tcase_add_test(tc, test_runs_past_the_grace_period_get_503_shutting_down);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
