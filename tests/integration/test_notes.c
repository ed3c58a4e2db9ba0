/*
 * test_notes.c — the notes quota and the notes directory's housekeeping end
 * to end: the real agentd with AGENTD_NOTES_MAX_FILES=1 saves one note
 * through a run, refuses a second one with an is_error tool result the model
 * sees (the fake's request log shows it) while the run still answers 200,
 * re-saves the first one, and reports the exhausted quota on /health/ready.
 * At start-up agentd removes stale temp files of a crash, leaves a fresh one
 * of another replica alone, and counts the notes already there.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct harness H;

static void teardown(void)
{
    /* Exit status 0 also proves a sanitizer build found nothing (leaks included). */
    ck_assert_int_eq(harness_stop(&H), 0);
}

static const char *output_of(json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "output"));
    return s ? s : "";
}

static long get_ready(json_t **ret)
{
    char url[160];
    snprintf(url, sizeof(url), "%s/health/ready", H.agentd_url);
    struct http_resp r;
    *ret = NULL;
    if (http_do("GET", url, NULL, NULL, 0, false, &r) != 0) {
        http_resp_free(&r);
        return -1;
    }
    *ret = r.body ? json_loads(r.body, 0, NULL) : NULL;
    long st = r.status;
    http_resp_free(&r);
    return st;
}

/* Polls /health/ready until it answers `want` (bounded); returns the last status and body. */
static long wait_ready_status(long want, int timeout_ms, json_t **ret)
{
    int64_t until = harness_now_ms() + timeout_ms;
    for (;;) {
        json_t *o = NULL;
        long st = get_ready(&o);
        if (st == want || harness_now_ms() >= until) {
            *ret = o;
            return st;
        }
        json_decref(o);
        usleep(50 * 1000);
    }
}

static json_t *notes_check(json_t *ready)
{
    json_t *c = json_object_get(json_object_get(ready, "checks"), "notes");
    ck_assert_msg(json_is_object(c), "no notes check in /health/ready");
    return c;
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The text of the tool_result in the last LLM call, which must be flagged is_error. */
static char *last_error_result_text(void)
{
    json_t *log = fake_requests(&H);
    json_t *last = NULL, *e;
    size_t i;
    json_array_foreach(log, i, e)
    {
        if (!strcmp(str_of(e, "route"), "messages"))
            last = e;
    }
    ck_assert_ptr_nonnull(last);
    json_t *msgs = json_object_get(json_object_get(last, "body"), "messages");
    json_t *content = json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "content");
    char *text = NULL;
    json_array_foreach(content, i, e)
    {
        if (strcmp(str_of(e, "type"), "tool_result") != 0)
            continue;
        ck_assert_msg(json_is_true(json_object_get(e, "is_error")), "tool_result not is_error");
        json_t *c = json_object_get(e, "content");
        if (json_is_array(c))
            c = json_object_get(json_array_get(c, 0), "text");
        ck_assert(json_is_string(c));
        text = strdup(json_string_value(c));
    }
    json_decref(log);
    ck_assert_msg(text != NULL, "no tool_result in the last LLM call");
    return text;
}

static json_t *only_tool_call(json_t *o)
{
    json_t *calls = json_object_get(o, "tool_calls");
    ck_assert_uint_eq(json_array_size(calls), 1);
    json_t *call = json_array_get(calls, 0);
    ck_assert_str_eq(str_of(call, "name"), "save_note");
    return call;
}

START_TEST(test_notes_quota_full_is_an_error_result_and_fails_readiness)
{
    static const char *env[] = {"AGENTD_NOTES_MAX_FILES=1", NULL};
    harness_start(&H, env);
    json_t *ready;
    ck_assert_int_eq(wait_ready_status(200, 5000, &ready), 200);
    ck_assert_str_eq(str_of(notes_check(ready), "status"), "ok");
    ck_assert_int_eq(json_integer_value(json_object_get(notes_check(ready), "files")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(notes_check(ready), "max_files")), 1);
    json_decref(ready);

    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "save note: buy milk", &o), 200);
    ck_assert_ptr_nonnull(strstr(output_of(o), "saved note"));
    ck_assert(json_is_true(json_object_get(only_tool_call(o), "ok")));
    json_decref(o);
    ck_assert_uint_eq(harness_count_notes(&H), 1);

    /* A different note: refused, and the run still answers (save_note is critical by
       default, yet a full quota is no outage: the model gets the reason and relays it). */
    fake_clear_requests(&H);
    ck_assert_int_eq(agent_ask(&H, "save note: call the plumber", &o), 200);
    ck_assert(json_is_false(json_object_get(only_tool_call(o), "ok")));
    ck_assert_uint_eq(json_array_size(json_object_get(o, "degraded")), 0);
    ck_assert_msg(strstr(output_of(o), "error: cannot save note: the notes quota is full"),
                  "output: %s", output_of(o));
    json_decref(o);
    char *text = last_error_result_text();
    ck_assert_msg(strstr(text, "the notes quota is full: 1 files / 8 bytes") &&
                      strstr(text, "AGENTD_NOTES_MAX_FILES"),
                  "tool result: %s", text);
    free(text);
    ck_assert_uint_eq(harness_count_notes(&H), 1);

    /* The note already saved can still be saved again. */
    ck_assert_int_eq(agent_ask(&H, "save note: buy milk", &o), 200);
    ck_assert_ptr_nonnull(strstr(output_of(o), "already saved"));
    json_decref(o);

    ck_assert_int_eq(wait_ready_status(503, 5000, &ready), 503);
    json_t *notes = notes_check(ready);
    ck_assert_str_eq(str_of(notes, "status"), "fail");
    ck_assert_int_eq(json_integer_value(json_object_get(notes, "files")), 1);
    ck_assert_str_eq(str_of(notes, "reason"),
                     "quota exhausted: 1 of 1 files (AGENTD_NOTES_MAX_FILES)");
    ck_assert_str_eq(
        str_of(json_object_get(json_object_get(ready, "checks"), "anthropic_api"), "status"), "ok");
    json_decref(ready);
}
END_TEST

static void make_file(const char *name, time_t mtime_s)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", H.notes_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "abc", 3), 3);
    close(fd);
    struct timespec times[2] = {{.tv_sec = mtime_s}, {.tv_sec = mtime_s}};
    ck_assert_int_eq(utimensat(AT_FDCWD, path, times, 0), 0);
}

static bool notes_file_exists(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", H.notes_dir, name);
    return access(path, F_OK) == 0;
}

START_TEST(test_start_removes_stale_temp_files_and_counts_existing_notes)
{
    static const char *env[] = {"AGENTD_NOTES_MAX_FILES=1", NULL};
    const char *fresh = ".tmp-other-replica-1-1-0123456789abcdef";
    const char *stale = ".tmp-other-replica-1-2-0123456789abcdef";
    time_t now = time(NULL);
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    make_file(fresh, now);             /* another replica's save in progress */
    make_file(stale, now - 2 * 3600);  /* a crash's leftover */
    make_file("kept.txt", now - 7200); /* a note, however old */
    harness_start_agentd(&H, env);

    ck_assert(!notes_file_exists(stale));
    ck_assert(notes_file_exists(fresh));
    ck_assert(notes_file_exists("kept.txt"));
    char *log = harness_read_log(&H);
    ck_assert_msg(strstr(log, "removed stale note temp files") && strstr(log, "\"count\":1"),
                  "log: %s", log);
    free(log);

    /* The note already there fills the quota of one. */
    json_t *ready;
    ck_assert_int_eq(wait_ready_status(503, 5000, &ready), 503);
    ck_assert_str_eq(str_of(notes_check(ready), "status"), "fail");
    json_decref(ready);
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "save note: one too many", &o), 200);
    ck_assert(json_is_false(json_object_get(only_tool_call(o), "ok")));
    json_decref(o);
    ck_assert_uint_eq(harness_count_notes(&H), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("it_notes");
    TCase *tc = tcase_create("notes");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_notes_quota_full_is_an_error_result_and_fails_readiness);
    tcase_add_test(tc, test_start_removes_stale_temp_files_and_counts_existing_notes);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
