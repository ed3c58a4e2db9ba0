/*
 * test_health.c — unit tests for readiness (health.h). The pure state is fed
 * injected probe results, notes quota snapshots and wall times; the probes
 * and the checker thread run against a tiny loopback HTTP responder started
 * by the test, a bound but never listening port (connection refused), and
 * mkdtemp directories.
 */
#include "agentd/health.h"

#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define GIB        1073741824ULL
#define NOTES_PATH "/var/lib/agentd/notes"
#define SECRET_KEY "sk-ant-test-SECRET-0123456789"
/* 2026-01-02T03:04:05.678Z */
#define WALL_MS   1767323045678LL
#define WALL_TEXT "2026-01-02T03:04:05.678Z"
/* Upper bound for every wait on the checker thread: generous, only there to stop a hang. */
#define WAIT_LIMIT_MS 10000

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- pure state helpers --------------------------------------------------- */

static struct health_config config(int threshold)
{
    return (struct health_config){
        .base_url = "http://127.0.0.1:1",
        .notes_dir = NOTES_PATH,
        .min_free_bytes = GIB,
        .interval_ms = 10000,
        .probe_timeout_ms = 2000,
        .failure_threshold = threshold,
    };
}

static struct health_state *new_state(int threshold)
{
    struct health_config cfg = config(threshold);
    struct health_state *st = health_state_new(&cfg);
    ck_assert_ptr_nonnull(st);
    return st;
}

/* A notes quota of 100000 files and 1 GiB with room left. */
static const struct notes_usage_snapshot notes_ok = {
    .counted = true, .files = 3, .bytes = 120, .max_files = 100000, .max_bytes = GIB};

/* Records healthy disk, notes directory and notes quota results. */
static void record_local_ok(struct health_state *st)
{
    health_state_record_disk(st, NULL, 2 * GIB);
    health_state_record_writable(st, NULL);
    health_state_record_notes(st, &notes_ok);
}

static struct health_state *ready_state(int threshold)
{
    struct health_state *st = new_state(threshold);
    health_state_record_api(st, 200, NULL, 12, WALL_MS);
    record_local_ok(st);
    ck_assert(health_state_ready(st));
    return st;
}

/* Renders st, checks the status code, returns the parsed body (caller decrefs). */
static json_t *render_json(const struct health_state *st, int want_code)
{
    char *body = NULL;
    int code = health_state_render(st, &body);
    ck_assert_int_eq(code, want_code);
    ck_assert_ptr_nonnull(body);
    json_error_t err;
    json_t *root = json_loads(body, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(root != NULL, "invalid JSON: %s", body);
    free(body);
    return root;
}

static json_t *check_of(json_t *root, const char *name)
{
    json_t *c = json_object_get(json_object_get(root, "checks"), name);
    ck_assert_msg(json_is_object(c), "missing check %s", name);
    return c;
}

static const char *str_of(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_string(v), "missing string %s", key);
    return json_string_value(v);
}

static long long int_of(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_integer(v), "missing integer %s", key);
    return json_integer_value(v);
}

/* The object has exactly these keys (NULL-terminated list). */
static void assert_keys(json_t *obj, const char *const *keys)
{
    size_t n = 0;
    for (; keys[n]; n++)
        ck_assert_msg(json_object_get(obj, keys[n]) != NULL, "missing key %s", keys[n]);
    ck_assert_uint_eq(json_object_size(obj), n);
}

static void assert_api(const struct health_state *st, int want_code, const char *want_status,
                       int want_failures)
{
    json_t *root = render_json(st, want_code);
    json_t *api = check_of(root, "anthropic_api");
    ck_assert_str_eq(str_of(root, "status"), want_code == 200 ? "ok" : "unavailable");
    ck_assert_str_eq(str_of(api, "status"), want_status);
    ck_assert_int_eq(int_of(api, "consecutive_failures"), want_failures);
    ck_assert_int_eq(health_state_api_failures(st), want_failures);
    json_decref(root);
}

/* ---- pure state ------------------------------------------------------------ */

START_TEST(test_health_new_state_is_not_ready_until_checked)
{
    struct health_state *st = new_state(2);
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    ck_assert_str_eq(str_of(root, "status"), "unavailable");
    const char *names[] = {"anthropic_api", "disk_space", "notes_writable", "notes"};
    for (size_t i = 0; i < 4; i++) {
        json_t *c = check_of(root, names[i]);
        ck_assert_str_eq(str_of(c, "status"), "fail");
        ck_assert_str_eq(str_of(c, "reason"), "not checked yet");
    }
    ck_assert_ptr_null(json_object_get(check_of(root, "anthropic_api"), "checked_at"));
    ck_assert_ptr_null(json_object_get(check_of(root, "disk_space"), "free_bytes"));
    ck_assert_str_eq(str_of(check_of(root, "shutdown"), "status"), "ok");
    json_decref(root);
    ck_assert_ptr_null(health_state_free(st));
    ck_assert_ptr_null(health_state_free(NULL));
}
END_TEST

START_TEST(test_health_ready_body_is_exactly_the_api_shape)
{
    struct health_state *st = ready_state(2);
    char *body = NULL;
    ck_assert_int_eq(health_state_render(st, &body), 200);
    ck_assert_str_eq(body, "{\"status\":\"ok\",\"checks\":{"
                           "\"anthropic_api\":{\"status\":\"ok\",\"latency_ms\":12,"
                           "\"checked_at\":\"" WALL_TEXT "\",\"http_status\":200,"
                           "\"consecutive_failures\":0},"
                           "\"disk_space\":{\"status\":\"ok\",\"free_bytes\":2147483648,"
                           "\"min_free_bytes\":1073741824,\"path\":\"" NOTES_PATH "\"},"
                           "\"notes_writable\":{\"status\":\"ok\"},"
                           "\"notes\":{\"status\":\"ok\",\"files\":3,\"bytes\":120,"
                           "\"max_files\":100000,\"max_bytes\":1073741824},"
                           "\"shutdown\":{\"status\":\"ok\"}}}");
    free(body);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_failing_body_has_status_fail_and_reason_everywhere)
{
    struct health_state *st = new_state(2);
    health_state_record_api(st, 0, "connection refused", 3, WALL_MS);
    health_state_record_disk(st, NULL, 5);
    health_state_record_writable(st, "create probe file: Read-only file system");
    health_state_record_notes(
        st, &(struct notes_usage_snapshot){
                .counted = true, .files = 7, .bytes = 70, .max_files = 7, .max_bytes = GIB});
    health_state_set_shutdown(st);
    json_t *root = render_json(st, 503);
    assert_keys(root, (const char *[]){"status", "checks", NULL});
    assert_keys(json_object_get(root, "checks"),
                (const char *[]){"anthropic_api", "disk_space", "notes_writable", "notes",
                                 "shutdown", NULL});
    json_t *api = check_of(root, "anthropic_api");
    assert_keys(api, (const char *[]){"status", "latency_ms", "checked_at", "reason",
                                      "consecutive_failures", NULL});
    ck_assert_str_eq(str_of(api, "reason"), "connection refused");
    ck_assert_str_eq(str_of(api, "checked_at"), WALL_TEXT);
    json_t *disk = check_of(root, "disk_space");
    assert_keys(disk,
                (const char *[]){"status", "free_bytes", "min_free_bytes", "path", "reason", NULL});
    json_t *wr = check_of(root, "notes_writable");
    assert_keys(wr, (const char *[]){"status", "reason", NULL});
    ck_assert_str_eq(str_of(wr, "reason"), "create probe file: Read-only file system");
    json_t *notes = check_of(root, "notes");
    assert_keys(notes, (const char *[]){"status", "files", "bytes", "max_files", "max_bytes",
                                        "reason", NULL});
    ck_assert_str_eq(str_of(notes, "reason"),
                     "quota exhausted: 7 of 7 files (AGENTD_NOTES_MAX_FILES)");
    json_t *sd = check_of(root, "shutdown");
    assert_keys(sd, (const char *[]){"status", "reason", NULL});
    const char *names[] = {"anthropic_api", "disk_space", "notes_writable", "notes", "shutdown"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_str_eq(str_of(check_of(root, names[i]), "status"), "fail");
    json_decref(root);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_api_threshold_needs_two_failures_and_one_success_resets)
{
    struct health_state *st = ready_state(2);

    health_state_record_api(st, 0, "timeout", 2000, WALL_MS + 10000);
    ck_assert(health_state_ready(st));
    assert_api(st, 200, "ok", 1);
    json_t *root = render_json(st, 200);
    ck_assert_str_eq(str_of(check_of(root, "anthropic_api"), "reason"), "timeout");
    json_decref(root);

    health_state_record_api(st, 0, "timeout", 2000, WALL_MS + 20000);
    ck_assert(!health_state_ready(st));
    assert_api(st, 503, "fail", 2);

    health_state_record_api(st, 0, "connection refused", 1, WALL_MS + 30000);
    assert_api(st, 503, "fail", 3);

    health_state_record_api(st, 200, NULL, 15, WALL_MS + 40000);
    ck_assert(health_state_ready(st));
    assert_api(st, 200, "ok", 0);
    root = render_json(st, 200);
    ck_assert_ptr_null(json_object_get(check_of(root, "anthropic_api"), "reason"));
    json_decref(root);

    /* The count restarts: one new failure is again tolerated. */
    health_state_record_api(st, 0, "timeout", 2000, WALL_MS + 50000);
    assert_api(st, 200, "ok", 1);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_api_threshold_three_tolerates_two_failures)
{
    struct health_state *st = ready_state(3);
    health_state_record_api(st, 503, NULL, 1, WALL_MS);
    health_state_record_api(st, 0, "timeout", 1, WALL_MS);
    health_state_record_api(st, 0, "timeout", 1, WALL_MS);
    assert_api(st, 200, "ok", 2);
    health_state_record_api(st, 0, "timeout", 1, WALL_MS);
    assert_api(st, 503, "fail", 3);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_api_threshold_below_one_is_one)
{
    struct health_state *st = ready_state(0);
    health_state_record_api(st, 0, "timeout", 1, WALL_MS);
    assert_api(st, 503, "fail", 1);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_api_never_reached_fails_on_first_failure)
{
    struct health_state *st = new_state(2);
    record_local_ok(st);
    health_state_record_api(st, 0, "DNS resolution failed", 5, WALL_MS);
    ck_assert(!health_state_ready(st));
    assert_api(st, 503, "fail", 1);
    health_state_record_api(st, 204, NULL, 5, WALL_MS);
    assert_api(st, 200, "ok", 0);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_api_429_and_5xx_count_as_reachable)
{
    const long statuses[] = {200, 204, 429, 500, 502, 503, 529, 404};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        struct health_state *st = new_state(1);
        record_local_ok(st);
        health_state_record_api(st, statuses[i], NULL, 40, WALL_MS);
        ck_assert_msg(health_state_ready(st), "status %ld should count as reachable", statuses[i]);
        json_t *root = render_json(st, 200);
        json_t *api = check_of(root, "anthropic_api");
        ck_assert_str_eq(str_of(api, "status"), "ok");
        ck_assert_int_eq(int_of(api, "http_status"), statuses[i]);
        ck_assert_int_eq(int_of(api, "latency_ms"), 40);
        ck_assert_ptr_null(json_object_get(api, "reason"));
        json_decref(root);
        health_state_free(st);
    }
}
END_TEST

START_TEST(test_health_api_401_and_403_fail)
{
    const long statuses[] = {401, 403};
    for (size_t i = 0; i < 2; i++) {
        struct health_state *st = ready_state(2);
        health_state_record_api(st, statuses[i], NULL, 7, WALL_MS);
        assert_api(st, 200, "ok", 1);
        health_state_record_api(st, statuses[i], NULL, 7, WALL_MS);
        assert_api(st, 503, "fail", 2);
        json_t *root = render_json(st, 503);
        json_t *api = check_of(root, "anthropic_api");
        char want[16];
        snprintf(want, sizeof(want), "HTTP %ld", statuses[i]);
        ck_assert_str_eq(str_of(api, "reason"), want);
        ck_assert_int_eq(int_of(api, "http_status"), statuses[i]);
        json_decref(root);
        health_state_free(st);
    }
}
END_TEST

START_TEST(test_health_transport_error_hides_http_status_and_clamps_latency)
{
    struct health_state *st = ready_state(2);
    health_state_record_api(st, 200, "timeout", -5, 0);
    json_t *root = render_json(st, 200);
    json_t *api = check_of(root, "anthropic_api");
    ck_assert_ptr_null(json_object_get(api, "http_status"));
    ck_assert_int_eq(int_of(api, "latency_ms"), 0);
    ck_assert_str_eq(str_of(api, "checked_at"), "1970-01-01T00:00:00.000Z");
    json_decref(root);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_disk_below_minimum_fails)
{
    struct health_state *st = ready_state(2);
    health_state_record_disk(st, NULL, GIB - 1);
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    json_t *disk = check_of(root, "disk_space");
    ck_assert_str_eq(str_of(disk, "status"), "fail");
    ck_assert_int_eq(int_of(disk, "free_bytes"), (long long)(GIB - 1));
    ck_assert_int_eq(int_of(disk, "min_free_bytes"), (long long)GIB);
    ck_assert_str_eq(str_of(disk, "reason"), "free 1073741823 bytes below minimum 1073741824");
    ck_assert_str_eq(str_of(check_of(root, "anthropic_api"), "status"), "ok");
    json_decref(root);

    health_state_record_disk(st, NULL, GIB);
    ck_assert(health_state_ready(st));
    health_state_free(st);
}
END_TEST

START_TEST(test_health_disk_error_fails_without_free_bytes)
{
    struct health_state *st = ready_state(2);
    health_state_record_disk(st, "statvfs: No such file or directory", 12345);
    json_t *root = render_json(st, 503);
    json_t *disk = check_of(root, "disk_space");
    ck_assert_str_eq(str_of(disk, "status"), "fail");
    ck_assert_str_eq(str_of(disk, "reason"), "statvfs: No such file or directory");
    ck_assert_ptr_null(json_object_get(disk, "free_bytes"));
    ck_assert_str_eq(str_of(disk, "path"), NOTES_PATH);
    json_decref(root);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_notes_not_writable_fails)
{
    struct health_state *st = ready_state(2);
    health_state_record_writable(st, "create probe file: Permission denied");
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    json_t *wr = check_of(root, "notes_writable");
    ck_assert_str_eq(str_of(wr, "status"), "fail");
    ck_assert_str_eq(str_of(wr, "reason"), "create probe file: Permission denied");
    json_decref(root);
    health_state_record_writable(st, NULL);
    ck_assert(health_state_ready(st));
    health_state_free(st);
}
END_TEST

START_TEST(test_health_notes_quota_exhausted_in_files_fails_and_recovers)
{
    struct health_state *st = ready_state(2);
    struct notes_usage_snapshot u = notes_ok;
    u.files = u.max_files - 1; /* nearly full: one more note fits, so still ready */
    health_state_record_notes(st, &u);
    ck_assert(health_state_ready(st));

    u.files = u.max_files;
    health_state_record_notes(st, &u);
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    json_t *notes = check_of(root, "notes");
    ck_assert_str_eq(str_of(notes, "status"), "fail");
    ck_assert_int_eq(int_of(notes, "files"), 100000);
    ck_assert_int_eq(int_of(notes, "bytes"), 120);
    ck_assert_int_eq(int_of(notes, "max_files"), 100000);
    ck_assert_int_eq(int_of(notes, "max_bytes"), (long long)GIB);
    ck_assert_str_eq(str_of(notes, "reason"),
                     "quota exhausted: 100000 of 100000 files (AGENTD_NOTES_MAX_FILES)");
    ck_assert_str_eq(str_of(check_of(root, "disk_space"), "status"), "ok");
    json_decref(root);

    /* Notes deleted, the next count sees it. */
    health_state_record_notes(st, &notes_ok);
    ck_assert(health_state_ready(st));
    health_state_free(st);
}
END_TEST

START_TEST(test_health_notes_quota_exhausted_in_bytes_fails)
{
    struct health_state *st = ready_state(2);
    struct notes_usage_snapshot u = notes_ok;
    u.bytes = GIB - 1;
    health_state_record_notes(st, &u);
    ck_assert(health_state_ready(st));
    u.bytes = GIB;
    health_state_record_notes(st, &u);
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    ck_assert_str_eq(str_of(check_of(root, "notes"), "reason"),
                     "quota exhausted: 1073741824 of 1073741824 bytes (AGENTD_NOTES_MAX_BYTES)");
    json_decref(root);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_notes_without_limits_always_passes)
{
    struct health_state *st = ready_state(2);
    health_state_record_notes(st, NULL);
    ck_assert(health_state_ready(st));
    json_t *root = render_json(st, 200);
    json_t *notes = check_of(root, "notes");
    assert_keys(notes, (const char *[]){"status", "max_files", "max_bytes", NULL});
    ck_assert_int_eq(int_of(notes, "max_files"), 0);
    json_decref(root);

    health_state_record_notes(
        st, &(struct notes_usage_snapshot){.counted = true, .files = 1000000, .bytes = 10 * GIB});
    ck_assert(health_state_ready(st));
    health_state_free(st);
}
END_TEST

START_TEST(test_health_notes_that_cannot_be_counted_fail)
{
    struct health_state *st = ready_state(2);
    struct notes_usage_snapshot u = {.scan_error = -EACCES, .max_files = 10};
    health_state_record_notes(st, &u);
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    json_t *notes = check_of(root, "notes");
    ck_assert_str_eq(str_of(notes, "reason"), "cannot count notes: Permission denied");
    ck_assert_ptr_null(json_object_get(notes, "files"));
    json_decref(root);

    u = (struct notes_usage_snapshot){.max_files = 10};
    health_state_record_notes(st, &u);
    ck_assert(!health_state_ready(st));
    root = render_json(st, 503);
    ck_assert_str_eq(str_of(check_of(root, "notes"), "reason"), "not checked yet");
    json_decref(root);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_shutdown_fails_at_once_and_stays)
{
    struct health_state *st = ready_state(2);
    health_state_set_shutdown(st);
    ck_assert(!health_state_ready(st));
    json_t *root = render_json(st, 503);
    json_t *sd = check_of(root, "shutdown");
    ck_assert_str_eq(str_of(sd, "status"), "fail");
    ck_assert_str_eq(str_of(sd, "reason"), "draining");
    ck_assert_str_eq(str_of(check_of(root, "anthropic_api"), "status"), "ok");
    json_decref(root);
    health_state_record_api(st, 200, NULL, 1, WALL_MS);
    record_local_ok(st);
    ck_assert(!health_state_ready(st));
    health_state_free(st);
}
END_TEST

START_TEST(test_health_reason_and_path_are_json_escaped)
{
    struct health_config cfg = config(2);
    cfg.notes_dir = "/data/\"odd\"\\dir";
    struct health_state *st = health_state_new(&cfg);
    ck_assert_ptr_nonnull(st);
    health_state_record_api(st, 0, "bad \"quote\"\n", 1, WALL_MS);
    record_local_ok(st);
    json_t *root = render_json(st, 503);
    ck_assert_str_eq(str_of(check_of(root, "disk_space"), "path"), "/data/\"odd\"\\dir");
    ck_assert_str_eq(str_of(check_of(root, "anthropic_api"), "reason"), "bad \"quote\"\n");
    json_decref(root);
    health_state_free(st);
}
END_TEST

START_TEST(test_health_transitions_are_reported_once_per_change)
{
    struct health_state *st = new_state(2);
    struct health_transition t;

    /* The first poll reports the initial readiness, whatever it is. */
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(!t.ready);
    ck_assert_str_eq(t.reason, "anthropic_api: not checked yet; disk_space: not checked yet; "
                               "notes_writable: not checked yet; notes: not checked yet");
    ck_assert(!health_state_poll_transition(st, &t));

    health_state_record_api(st, 200, NULL, 1, WALL_MS);
    record_local_ok(st);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(t.ready);
    ck_assert_str_eq(t.reason, "all checks ok");
    ck_assert(!health_state_poll_transition(st, &t));

    /* Below the threshold: no change, nothing to report. */
    health_state_record_api(st, 0, "timeout", 1, WALL_MS);
    ck_assert(!health_state_poll_transition(st, &t));
    health_state_record_api(st, 0, "timeout", 1, WALL_MS);
    health_state_record_disk(st, NULL, 1);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(!t.ready);
    ck_assert_str_eq(t.reason, "anthropic_api: timeout; disk_space: free 1 bytes below minimum "
                               "1073741824");
    ck_assert(!health_state_poll_transition(st, &t));

    /* A change that reverted before the poll is not a transition. */
    health_state_record_api(st, 200, NULL, 1, WALL_MS);
    record_local_ok(st);
    health_state_record_writable(st, "x");
    ck_assert(!health_state_poll_transition(st, &t));
    health_state_record_writable(st, NULL);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(t.ready);
    health_state_record_writable(st, "x");
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(!t.ready);
    ck_assert_str_eq(t.reason, "notes_writable: x");
    health_state_record_writable(st, NULL);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(t.ready);

    struct notes_usage_snapshot full = notes_ok;
    full.files = full.max_files;
    health_state_record_notes(st, &full);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(!t.ready);
    ck_assert_str_eq(t.reason, "notes: quota exhausted: 100000 of 100000 files "
                               "(AGENTD_NOTES_MAX_FILES)");
    health_state_record_notes(st, &notes_ok);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(t.ready);

    health_state_set_shutdown(st);
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert(!t.ready);
    ck_assert_str_eq(t.reason, "shutdown: draining");
    ck_assert(!health_state_poll_transition(st, &t));
    health_state_free(st);
}
END_TEST

START_TEST(test_health_long_reasons_are_truncated)
{
    char longer[HEALTH_REASON_BYTES * 3];
    memset(longer, 'r', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    struct health_state *st = new_state(1);
    health_state_record_api(st, 0, longer, 1, WALL_MS);
    health_state_record_disk(st, longer, 0);
    health_state_record_writable(st, longer);
    health_state_set_shutdown(st);
    json_t *root = render_json(st, 503);
    ck_assert_uint_eq(strlen(str_of(check_of(root, "anthropic_api"), "reason")),
                      HEALTH_REASON_BYTES - 1);
    json_decref(root);
    struct health_transition t;
    ck_assert(health_state_poll_transition(st, &t));
    ck_assert_uint_lt(strlen(t.reason), sizeof(t.reason));
    ck_assert_ptr_nonnull(strstr(t.reason, "anthropic_api: rrr"));
    health_state_free(st);
}
END_TEST

/* ---- loopback HTTP responder ----------------------------------------------- */

/*
 * Answers GET requests with a settable status; after answer_limit requests it
 * accepts connections but never answers them (a hanging API). Records the
 * last request head.
 */
struct responder {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int status;
    atomic_int answer_limit;
    atomic_int requests;
    pthread_mutex_t lock;
    char last_request[2048];
    int held[64]; /* connections left unanswered, closed at stop */
    int n_held;
};

static int read_head(int fd, char *buf, size_t len)
{
    size_t used = 0;
    int64_t until = mono_ms() + 2000;
    buf[0] = '\0';
    while (used + 1 < len && !strstr(buf, "\r\n\r\n") && mono_ms() < until) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + used, len - 1 - used);
        if (n <= 0)
            return -1;
        used += (size_t)n;
        buf[used] = '\0';
    }
    return strstr(buf, "\r\n\r\n") ? 0 : -1;
}

static void *responder_main(void *arg)
{
    struct responder *r = arg;
    /* Bounded: the test stops it, and it gives up on its own after a minute. */
    int64_t until = mono_ms() + 60000;
    while (!atomic_load(&r->stop) && mono_ms() < until) {
        struct pollfd p = {.fd = r->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(r->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        char head[2048];
        if (read_head(fd, head, sizeof(head)) < 0) {
            close(fd);
            continue;
        }
        pthread_mutex_lock(&r->lock);
        snprintf(r->last_request, sizeof(r->last_request), "%s", head);
        pthread_mutex_unlock(&r->lock);
        int n = atomic_fetch_add(&r->requests, 1) + 1;
        if (n > atomic_load(&r->answer_limit) && r->n_held < 64) {
            r->held[r->n_held++] = fd;
            continue;
        }
        char resp[256];
        int len = snprintf(resp, sizeof(resp),
                           "HTTP/1.1 %d Test\r\nContent-Type: application/json\r\n"
                           "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                           atomic_load(&r->status));
        /* A short write shows up in the test as a failed probe. */
        if (write(fd, resp, (size_t)len) != len)
            atomic_store(&r->stop, atomic_load(&r->stop));
        close(fd);
    }
    return NULL;
}

static void responder_start(struct responder *r, int status, int answer_limit)
{
    memset(r, 0, sizeof(*r));
    atomic_init(&r->stop, false);
    atomic_init(&r->status, status);
    atomic_init(&r->answer_limit, answer_limit);
    atomic_init(&r->requests, 0);
    pthread_mutex_init(&r->lock, NULL);
    r->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(r->listen_fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(r->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(r->listen_fd, 16), 0);
    socklen_t alen = sizeof(a);
    ck_assert_int_eq(getsockname(r->listen_fd, (struct sockaddr *)&a, &alen), 0);
    r->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, responder_main, r), 0);
}

static void responder_stop(struct responder *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    for (int i = 0; i < r->n_held; i++)
        close(r->held[i]);
    close(r->listen_fd);
    pthread_mutex_destroy(&r->lock);
}

static void responder_url(const struct responder *r, char *buf, size_t len)
{
    snprintf(buf, len, "http://127.0.0.1:%d", r->port);
}

/* Waits (bounded) until the responder has seen at least n requests. */
static void wait_requests(struct responder *r, int n)
{
    int64_t until = mono_ms() + WAIT_LIMIT_MS;
    while (atomic_load(&r->requests) < n && mono_ms() < until)
        sleep_ms(5);
    ck_assert_int_ge(atomic_load(&r->requests), n);
}

/* A port that is bound but not listening: connecting to it is refused, and nobody can take it. */
static int closed_port(int *ret_fd)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t alen = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *ret_fd = fd;
    return ntohs(a.sin_port);
}

/* ---- probes ------------------------------------------------------------------ */

static char g_dir[64];

static void dir_setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/agentd-test-health-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

/* The probe file's expected name: host name and pid, so replicas on one volume never share it. */
static void probe_file_path(char *buf, size_t len)
{
    char host[65] = "";
    ck_assert_int_eq(gethostname(host, sizeof(host) - 1), 0);
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            *p = '_';
    snprintf(buf, len, "%s/.ready-probe-%s-%ld", g_dir, host, (long)getpid());
}

static void dir_teardown(void)
{
    char path[256];
    probe_file_path(path, sizeof(path));
    unlink(path);
    snprintf(path, sizeof(path), "%s/file", g_dir);
    unlink(path);
    rmdir(g_dir);
}

static bool probe_file_exists(void)
{
    char path[256];
    probe_file_path(path, sizeof(path));
    return access(path, F_OK) == 0;
}

START_TEST(test_health_probe_api_closed_port_is_connection_refused)
{
    int fd;
    int port = closed_port(&fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct health_api_probe p;
    ck_assert_int_eq(health_probe_api(url, SECRET_KEY, 2000, &p), 0);
    ck_assert_str_eq(p.error, "connection refused");
    ck_assert_int_eq(p.http_status, 0);
    ck_assert_int_ge(p.latency_ms, 0);
    close(fd);
}
END_TEST

START_TEST(test_health_probe_api_sends_models_request_with_headers)
{
    struct responder r;
    responder_start(&r, 429, 100);
    char url[80];
    responder_url(&r, url, sizeof(url));
    strcat(url, "/"); /* a trailing slash must not double up */
    struct health_api_probe p;
    ck_assert_int_eq(health_probe_api(url, SECRET_KEY, 2000, &p), 0);
    ck_assert_str_eq(p.error, "");
    ck_assert_int_eq(p.http_status, 429);
    pthread_mutex_lock(&r.lock);
    const char *line = "GET /v1/models?limit=1 HTTP/1.1\r\n";
    ck_assert_msg(strncmp(r.last_request, line, strlen(line)) == 0, "%s", r.last_request);
    ck_assert_ptr_nonnull(strstr(r.last_request, "\r\nx-api-key: " SECRET_KEY "\r\n"));
    ck_assert_ptr_nonnull(strstr(r.last_request, "\r\nanthropic-version: 2023-06-01\r\n"));
    pthread_mutex_unlock(&r.lock);

    ck_assert_int_eq(health_probe_api(url, NULL, 2000, &p), 0);
    ck_assert_int_eq(p.http_status, 429);
    pthread_mutex_lock(&r.lock);
    ck_assert_ptr_null(strstr(r.last_request, "x-api-key"));
    ck_assert_ptr_nonnull(strstr(r.last_request, "\r\nanthropic-version: 2023-06-01\r\n"));
    pthread_mutex_unlock(&r.lock);
    responder_stop(&r);
}
END_TEST

START_TEST(test_health_probe_api_hanging_server_is_timeout)
{
    struct responder r;
    responder_start(&r, 200, 0);
    char url[64];
    responder_url(&r, url, sizeof(url));
    struct health_api_probe p;
    int64_t start = mono_ms();
    ck_assert_int_eq(health_probe_api(url, NULL, 200, &p), 0);
    ck_assert_str_eq(p.error, "timeout");
    ck_assert_int_eq(p.http_status, 0);
    ck_assert_int_lt(mono_ms() - start, 5000);
    responder_stop(&r);
}
END_TEST

START_TEST(test_health_probe_api_rejects_null_arguments)
{
    struct health_api_probe p;
    ck_assert_int_eq(health_probe_api(NULL, NULL, 100, &p), -EINVAL);
    ck_assert_int_eq(health_probe_api("http://127.0.0.1:1", NULL, 100, NULL), -EINVAL);
}
END_TEST

START_TEST(test_health_probe_disk_reads_statvfs_of_tmp)
{
    uint64_t free_bytes = 0;
    ck_assert_int_eq(health_probe_disk("/tmp", &free_bytes), 0);
    struct statvfs v;
    ck_assert_int_eq(statvfs("/tmp", &v), 0);
    uint64_t expect = (uint64_t)v.f_bavail * v.f_frsize;
    ck_assert_uint_gt(free_bytes, 0);
    /* Other processes write meanwhile; the two readings agree to within 1 GiB. */
    uint64_t diff = free_bytes > expect ? free_bytes - expect : expect - free_bytes;
    ck_assert_uint_lt(diff, GIB);
    ck_assert_int_eq(health_probe_disk("/nonexistent/agentd-health", &free_bytes), -ENOENT);
}
END_TEST

START_TEST(test_health_probe_writable_creates_and_removes_probe_file)
{
    const char *step = NULL;
    ck_assert_int_eq(health_probe_writable(g_dir, &step), 0);
    ck_assert_ptr_null(step);
    ck_assert(!probe_file_exists());
}
END_TEST

START_TEST(test_health_probe_writable_replaces_a_leftover_probe_file)
{
    char path[256];
    probe_file_path(path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(health_probe_writable(g_dir, NULL), 0);
    ck_assert(!probe_file_exists());
}
END_TEST

START_TEST(test_health_probe_writable_reports_failing_step)
{
    const char *step = NULL;
    char missing[128], file[128];
    snprintf(missing, sizeof(missing), "%s/missing", g_dir);
    ck_assert_int_eq(health_probe_writable(missing, &step), -ENOENT);
    ck_assert_str_eq(step, "create");

    /* A file where the directory should be fails for root too. */
    snprintf(file, sizeof(file), "%s/file", g_dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    step = NULL;
    ck_assert_int_eq(health_probe_writable(file, &step), -ENOTDIR);
    ck_assert_str_eq(step, "create");
}
END_TEST

/* ---- the checker thread ---------------------------------------------------- */

struct seen {
    pthread_mutex_t lock;
    int calls;
    bool last_ready;
    char last_reason[HEALTH_TRANSITION_REASON_BYTES];
};

static void on_transition(const struct health_transition *t, void *userdata)
{
    struct seen *s = userdata;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    s->last_ready = t->ready;
    snprintf(s->last_reason, sizeof(s->last_reason), "%s", t->reason);
    pthread_mutex_unlock(&s->lock);
}

static void seen_get(struct seen *s, int *calls, bool *ready, char *reason, size_t len)
{
    pthread_mutex_lock(&s->lock);
    *calls = s->calls;
    *ready = s->last_ready;
    snprintf(reason, len, "%s", s->last_reason);
    pthread_mutex_unlock(&s->lock);
}

static struct health_config live_config(const char *url, struct seen *s)
{
    return (struct health_config){
        .base_url = url,
        .api_key = SECRET_KEY,
        .notes_dir = g_dir,
        .min_free_bytes = 1,
        .interval_ms = 20,
        .probe_timeout_ms = 2000,
        .failure_threshold = 2,
        .on_transition = on_transition,
        .userdata = s,
    };
}

static char *render_body(struct health *h, int want_code)
{
    char *body = NULL;
    ck_assert_int_eq(health_render(h, &body), want_code);
    ck_assert_ptr_nonnull(body);
    return body;
}

START_TEST(test_health_start_against_closed_port_is_unavailable_at_once)
{
    int fd;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", closed_port(&fd));
    struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct health_config cfg = live_config(url, &s);
    cfg.interval_ms = 60000;
    struct health *h = health_start(&cfg);
    ck_assert_ptr_nonnull(h);

    /* The first check ran inside health_start(): no waiting needed. */
    ck_assert(!health_is_ready(h));
    char *body = render_body(h, 503);
    ck_assert_ptr_null(strstr(body, SECRET_KEY));
    json_t *root = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(root);
    json_t *api = check_of(root, "anthropic_api");
    ck_assert_str_eq(str_of(api, "status"), "fail");
    ck_assert_str_eq(str_of(api, "reason"), "connection refused");
    ck_assert_int_eq(int_of(api, "consecutive_failures"), 1);
    json_t *disk = check_of(root, "disk_space");
    ck_assert_str_eq(str_of(disk, "status"), "ok");
    ck_assert_str_eq(str_of(disk, "path"), g_dir);
    ck_assert_int_gt(int_of(disk, "free_bytes"), 0);
    ck_assert_str_eq(str_of(check_of(root, "notes_writable"), "status"), "ok");
    json_decref(root);
    free(body);
    ck_assert(!probe_file_exists());

    int calls;
    bool ready;
    char reason[HEALTH_TRANSITION_REASON_BYTES];
    seen_get(&s, &calls, &ready, reason, sizeof(reason));
    ck_assert_int_eq(calls, 1);
    ck_assert(!ready);
    ck_assert_str_eq(reason, "anthropic_api: connection refused");
    ck_assert_ptr_null(health_stop(h));
    ck_assert_ptr_null(health_stop(NULL));
    close(fd);
}
END_TEST

START_TEST(test_health_checker_follows_the_api_and_reports_transitions)
{
    struct responder r;
    responder_start(&r, 200, 1000);
    char url[64];
    responder_url(&r, url, sizeof(url));
    struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct health_config cfg = live_config(url, &s);
    struct health *h = health_start(&cfg);
    ck_assert_ptr_nonnull(h);
    ck_assert(health_is_ready(h));
    char *body = render_body(h, 200);
    ck_assert_ptr_null(strstr(body, SECRET_KEY));
    ck_assert_ptr_nonnull(strstr(body, "\"http_status\":200"));
    free(body);

    int calls;
    bool ready;
    char reason[HEALTH_TRANSITION_REASON_BYTES];
    seen_get(&s, &calls, &ready, reason, sizeof(reason));
    ck_assert_int_eq(calls, 1);
    ck_assert(ready);
    ck_assert_str_eq(reason, "all checks ok");

    /* The thread keeps probing every interval. */
    wait_requests(&r, 4);

    /* A revoked key: unavailable after two probes in a row. */
    atomic_store(&r.status, 401);
    int64_t until = mono_ms() + WAIT_LIMIT_MS;
    while (health_is_ready(h) && mono_ms() < until)
        sleep_ms(5);
    ck_assert(!health_is_ready(h));
    body = render_body(h, 503);
    ck_assert_ptr_nonnull(strstr(body, "\"reason\":\"HTTP 401\""));
    ck_assert_ptr_null(strstr(body, SECRET_KEY));
    free(body);
    seen_get(&s, &calls, &ready, reason, sizeof(reason));
    ck_assert_int_eq(calls, 2);
    ck_assert(!ready);
    ck_assert_str_eq(reason, "anthropic_api: HTTP 401");

    atomic_store(&r.status, 503);
    until = mono_ms() + WAIT_LIMIT_MS;
    while (!health_is_ready(h) && mono_ms() < until)
        sleep_ms(5);
    ck_assert(health_is_ready(h));

    health_set_shutdown(h);
    ck_assert(!health_is_ready(h));
    seen_get(&s, &calls, &ready, reason, sizeof(reason));
    ck_assert_int_eq(calls, 4);
    ck_assert(!ready);
    ck_assert_str_eq(reason, "shutdown: draining");
    body = render_body(h, 503);
    ck_assert_ptr_nonnull(
        strstr(body, "\"shutdown\":{\"status\":\"fail\",\"reason\":\"draining\"}"));
    free(body);

    health_stop(h);
    responder_stop(&r);
}
END_TEST

START_TEST(test_health_render_and_stop_do_not_wait_for_a_hanging_probe)
{
    struct responder r;
    responder_start(&r, 200, 1); /* answers health_start()'s probe, then hangs */
    char url[64];
    responder_url(&r, url, sizeof(url));
    struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct health_config cfg = live_config(url, &s);
    cfg.probe_timeout_ms = 30000;
    struct health *h = health_start(&cfg);
    ck_assert_ptr_nonnull(h);
    wait_requests(&r, 2); /* the thread's probe is now stuck */

    int64_t start = mono_ms();
    for (int i = 0; i < 100; i++) {
        char *body = render_body(h, 200);
        free(body);
    }
    ck_assert_int_lt(mono_ms() - start, 1000);

    start = mono_ms();
    health_stop(h);
    ck_assert_int_lt(mono_ms() - start, 5000);
    responder_stop(&r);
}
END_TEST

START_TEST(test_health_checker_reports_an_exhausted_notes_quota_and_recounts)
{
    struct responder r;
    responder_start(&r, 200, 1000);
    char url[64];
    responder_url(&r, url, sizeof(url));
    char note[256];
    snprintf(note, sizeof(note), "%s/file", g_dir);
    FILE *f = fopen(note, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs("a note", f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    struct notes_usage *u = notes_usage_new(g_dir, 1, 0);
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(notes_usage_scan(u), 0);

    struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct health_config cfg = live_config(url, &s);
    cfg.notes_usage = u;
    cfg.notes_rescan_ms = 20;
    struct health *h = health_start(&cfg);
    ck_assert_ptr_nonnull(h);
    ck_assert(!health_is_ready(h));
    char *body = render_body(h, 503);
    ck_assert_ptr_nonnull(strstr(body, "\"notes\":{\"status\":\"fail\",\"files\":1,\"bytes\":6,"
                                       "\"max_files\":1,\"max_bytes\":0,\"reason\":\"quota "
                                       "exhausted: 1 of 1 files (AGENTD_NOTES_MAX_FILES)\"}"));
    free(body);
    int calls;
    bool ready;
    char reason[HEALTH_TRANSITION_REASON_BYTES];
    seen_get(&s, &calls, &ready, reason, sizeof(reason));
    ck_assert_str_eq(reason, "notes: quota exhausted: 1 of 1 files (AGENTD_NOTES_MAX_FILES)");

    /* An operator removes the note: a later count sees it without any save. */
    ck_assert_int_eq(unlink(note), 0);
    int64_t until = mono_ms() + WAIT_LIMIT_MS;
    while (!health_is_ready(h) && mono_ms() < until)
        sleep_ms(5);
    ck_assert(health_is_ready(h));
    body = render_body(h, 200);
    ck_assert_ptr_nonnull(strstr(body, "\"notes\":{\"status\":\"ok\",\"files\":0,\"bytes\":0,"));
    free(body);

    health_stop(h);
    notes_usage_free(u);
    responder_stop(&r);
}
END_TEST

START_TEST(test_health_start_rejects_missing_settings)
{
    struct health_config cfg = config(2);
    cfg.base_url = NULL;
    errno = 0;
    ck_assert_ptr_null(health_start(&cfg));
    ck_assert_int_eq(errno, EINVAL);
    cfg = config(2);
    cfg.notes_dir = NULL;
    ck_assert_ptr_null(health_start(&cfg));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(health_start(NULL));
}
END_TEST

static Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("state");
    tcase_add_test(tc, test_health_new_state_is_not_ready_until_checked);
    tcase_add_test(tc, test_health_ready_body_is_exactly_the_api_shape);
    tcase_add_test(tc, test_health_failing_body_has_status_fail_and_reason_everywhere);
    tcase_add_test(tc, test_health_api_threshold_needs_two_failures_and_one_success_resets);
    tcase_add_test(tc, test_health_api_threshold_three_tolerates_two_failures);
    tcase_add_test(tc, test_health_api_threshold_below_one_is_one);
    tcase_add_test(tc, test_health_api_never_reached_fails_on_first_failure);
    tcase_add_test(tc, test_health_api_429_and_5xx_count_as_reachable);
    tcase_add_test(tc, test_health_api_401_and_403_fail);
    tcase_add_test(tc, test_health_transport_error_hides_http_status_and_clamps_latency);
    tcase_add_test(tc, test_health_disk_below_minimum_fails);
    tcase_add_test(tc, test_health_disk_error_fails_without_free_bytes);
    tcase_add_test(tc, test_health_notes_not_writable_fails);
    tcase_add_test(tc, test_health_notes_quota_exhausted_in_files_fails_and_recovers);
    tcase_add_test(tc, test_health_notes_quota_exhausted_in_bytes_fails);
    tcase_add_test(tc, test_health_notes_without_limits_always_passes);
    tcase_add_test(tc, test_health_notes_that_cannot_be_counted_fail);
    tcase_add_test(tc, test_health_shutdown_fails_at_once_and_stays);
    tcase_add_test(tc, test_health_reason_and_path_are_json_escaped);
    tcase_add_test(tc, test_health_transitions_are_reported_once_per_change);
    tcase_add_test(tc, test_health_long_reasons_are_truncated);
    suite_add_tcase(s, tc);

    TCase *io = tcase_create("probes");
    tcase_add_checked_fixture(io, dir_setup, dir_teardown);
    tcase_add_test(io, test_health_probe_api_closed_port_is_connection_refused);
    tcase_add_test(io, test_health_probe_api_sends_models_request_with_headers);
    tcase_add_test(io, test_health_probe_api_hanging_server_is_timeout);
    tcase_add_test(io, test_health_probe_api_rejects_null_arguments);
    tcase_add_test(io, test_health_probe_disk_reads_statvfs_of_tmp);
    tcase_add_test(io, test_health_probe_writable_creates_and_removes_probe_file);
    tcase_add_test(io, test_health_probe_writable_replaces_a_leftover_probe_file);
    tcase_add_test(io, test_health_probe_writable_reports_failing_step);
    tcase_add_test(io, test_health_start_against_closed_port_is_unavailable_at_once);
    tcase_add_test(io, test_health_checker_follows_the_api_and_reports_transitions);
    tcase_add_test(io, test_health_render_and_stop_do_not_wait_for_a_hanging_probe);
    tcase_add_test(io, test_health_checker_reports_an_exhausted_notes_quota_and_recounts);
    tcase_add_test(io, test_health_start_rejects_missing_settings);
    tcase_set_timeout(io, 60);
    suite_add_tcase(s, io);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(health_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
