/*
 * test_run.c — what a run takes it gives back (run.h): the in-flight unit,
 * the Idempotency-Key claim and the conversation slot, on every path that
 * ends a run without a worker running it — refused admission, a failed
 * submit, an abort at shutdown, a release before the start. A real app is
 * built (no threads started); the workers are stopped so that a submit fails
 * the way it does during shutdown.
 */
#include "agentd/run.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/app.h"
#include "agentd/config.h"
#include "agentd/conversations.h"
#include "agentd/idempotency.h"
#include "agentd/metrics.h"
#include "agentd/worker.h"

static const char *lookup(const char *name, void *ctx)
{
    (void)ctx;
    if (strcmp(name, "AGENTD_WORKERS") == 0)
        return "1";
    if (strcmp(name, "AGENTD_MAX_INFLIGHT") == 0)
        return "2";
    if (strcmp(name, "AGENTD_RUNS_MAX_BYTES") == 0)
        return "1048576";
    return NULL;
}

static struct agentd_config cfg;
static struct app app;
static int renders, finishes;

static void render(const struct run_result *r, void *arg, struct run_answer *ret)
{
    (void)arg;
    renders++;
    ret->status = r->outcome == RUN_SHUTTING_DOWN ? 503 : 500;
    ret->body = strdup(r->outcome == RUN_SHUTTING_DOWN ? "{\"shutting_down\":1}" : "{\"x\":1}");
    ret->retry_after_ms = r->retry_after_ms;
}

static void finished(struct run *run, void *arg)
{
    (void)run;
    (void)arg;
    finishes++;
}

static const struct run_owner owner = {.render = render, .finished = finished};
static const unsigned char fp[IDEM_FINGERPRINT_BYTES] = {1, 2, 3};

static void setup(void)
{
    char err[256];
    metrics_init("test");
    ck_assert_int_eq(config_load(&cfg, lookup, NULL, err, sizeof(err)), 0);
    ck_assert_int_eq(app_init(&app, &cfg, err, sizeof(err)), 0);
    /* Stopped workers refuse new work, as during shutdown. */
    for (int i = 0; i < app.n_workers; i++)
        worker_stop(app.workers[i]);
    renders = finishes = 0;
}

static void teardown(void)
{
    app_fini(&app);
    config_free(&cfg);
}

static enum run_admission admit_input(const char *input, const char *conv, const char *key,
                                      struct run **ret)
{
    struct agent_request req = {.input = strdup(input),
                                .conversation_id = conv ? strdup(conv) : NULL};
    struct run_answer replay = {0};
    struct run_spec spec = {.req = &req,
                            .request_id = "req_test",
                            .idem_key = key,
                            .idem_fingerprint = fp,
                            .owner = &owner};
    enum run_admission a = run_admit(&app, &spec, ret, &replay);
    agent_request_clear(&req); /* zeroed when admitted; still ours when refused */
    free(replay.body);
    return a;
}

static enum run_admission admit(const char *conv, const char *key, struct run **ret)
{
    return admit_input("hello", conv, key, ret);
}

/* Everything is free again: the conversation can be taken, the key is new, no run counts. */
static void assert_nothing_held(const char *conv, const char *key)
{
    ck_assert_int_eq(atomic_load(&app.inflight), 0);
    char *text = metrics_render();
    ck_assert_ptr_nonnull(strstr(text, "\nagentd_runs_in_flight 0\n"));
    free(text);
    if (conv) {
        json_t *history = NULL;
        ck_assert_int_eq(conv_store_acquire(app.convs, conv, 0, &history), 0);
        json_decref(history);
        conv_store_release(app.convs, conv, NULL, 0);
    }
    if (key) {
        int status = 0;
        char *body = NULL;
        enum idem_begin_result b = idem_begin(app.idem, key, fp, 0, &status, &body);
        free(body);
        /* a failed submit is a 5xx: never stored, so the key starts over */
        ck_assert_int_eq(b, IDEM_NEW);
        idem_abandon(app.idem, key);
    }
}

START_TEST(test_run_failed_submit_gives_back_everything_and_answers)
{
    struct run *run = NULL;
    ck_assert_int_eq(admit("chat-1", "key-1", &run), RUN_ADMITTED);
    ck_assert_int_eq(atomic_load(&app.inflight), 1);
    ck_assert_int_eq(run_submit(run, app.workers[0]), -ESHUTDOWN);
    struct run_answer a;
    run_take_answer(run, &a);
    ck_assert_int_eq(a.status, 503);
    ck_assert_str_eq(a.body, "{\"shutting_down\":1}");
    ck_assert_int_gt(a.retry_after_ms, 0);
    free(a.body);
    run_release(run);
    ck_assert_int_eq(renders, 1);
    ck_assert_int_eq(finishes, 0);
    assert_nothing_held("chat-1", "key-1");
}
END_TEST

START_TEST(test_run_held_conversation_refuses_a_second_run_until_given_back)
{
    struct run *first = NULL, *second = NULL;
    ck_assert_int_eq(admit("chat-2", NULL, &first), RUN_ADMITTED);
    ck_assert_int_eq(admit("chat-2", "key-2", &second), RUN_REFUSED_CONVERSATION_BUSY);
    /* the refused run gave back its key and its in-flight unit at once */
    ck_assert_int_eq(atomic_load(&app.inflight), 1);
    run_abort(first);
    run_release(first);
    assert_nothing_held("chat-2", "key-2");
}
END_TEST

START_TEST(test_run_release_before_start_gives_back_everything)
{
    struct run *run = NULL;
    ck_assert_int_eq(admit("chat-3", "key-3", &run), RUN_ADMITTED);
    run_release(run);
    assert_nothing_held("chat-3", "key-3");
}
END_TEST

START_TEST(test_run_abort_answers_shutting_down_and_gives_back_everything)
{
    struct run *run = NULL;
    ck_assert_int_eq(admit("chat-4", "key-4", &run), RUN_ADMITTED);
    run_abort(run);
    struct run_answer a;
    run_take_answer(run, &a);
    ck_assert_int_eq(a.status, 503);
    free(a.body);
    run_release(run);
    assert_nothing_held("chat-4", "key-4");
}
END_TEST

START_TEST(test_run_admission_stops_at_max_inflight_and_recovers)
{
    struct run *a = NULL, *b = NULL, *c = NULL;
    ck_assert_int_eq(admit(NULL, NULL, &a), RUN_ADMITTED);
    ck_assert_int_eq(admit(NULL, NULL, &b), RUN_ADMITTED);
    ck_assert_int_eq(admit(NULL, "key-5", &c), RUN_REFUSED_OVERLOADED);
    ck_assert_int_eq(atomic_load(&app.inflight), 2);
    run_release(a);
    ck_assert_int_eq(admit(NULL, "key-5", &c), RUN_ADMITTED);
    run_release(b);
    run_release(c);
    assert_nothing_held(NULL, "key-5");
}
END_TEST

START_TEST(test_run_same_key_in_progress_is_refused)
{
    struct run *a = NULL, *b = NULL;
    ck_assert_int_eq(admit(NULL, "key-6", &a), RUN_ADMITTED);
    ck_assert_int_eq(admit(NULL, "key-6", &b), RUN_REFUSED_IDEM_IN_PROGRESS);
    run_release(a);
    assert_nothing_held(NULL, "key-6");
}
END_TEST

/* The conversation JSON of the runs in flight is bounded (AGENTD_RUNS_MAX_BYTES, 1 MiB here). */
START_TEST(test_run_admission_stops_at_the_memory_limit_and_recovers)
{
    char *big = malloc(400001);
    memset(big, 'x', 400000);
    big[400000] = '\0';
    struct run *a = NULL, *b = NULL, *c = NULL;
    ck_assert_int_eq(admit_input(big, NULL, NULL, &a), RUN_ADMITTED);
    ck_assert_uint_ge(atomic_load(&app.run_bytes), 400000);
    ck_assert_int_eq(admit_input(big, NULL, NULL, &b), RUN_ADMITTED);
    run_release(a);
    a = NULL;
    ck_assert_int_eq(admit_input(big, NULL, NULL, &a), RUN_ADMITTED);
    /* two in flight is also AGENTD_MAX_INFLIGHT here: free one unit by hand for the third */
    ck_assert_int_eq(admit_input(big, "chat-7", "key-7", &c), RUN_REFUSED_OVERLOADED);
    app.cfg.max_inflight = 10;
    ck_assert_int_eq(admit_input(big, "chat-7", "key-7", &c), RUN_REFUSED_MEMORY);
    run_release(a);
    ck_assert_int_eq(admit_input(big, "chat-7", "key-7", &c), RUN_ADMITTED);
    run_release(b);
    run_release(c);
    ck_assert_uint_eq(atomic_load(&app.run_bytes), 0);
    assert_nothing_held("chat-7", "key-7");
    free(big);
}
END_TEST

static Suite *run_suite(void)
{
    Suite *s = suite_create("run");
    TCase *tc = tcase_create("ownership");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_run_failed_submit_gives_back_everything_and_answers);
    tcase_add_test(tc, test_run_held_conversation_refuses_a_second_run_until_given_back);
    tcase_add_test(tc, test_run_release_before_start_gives_back_everything);
    tcase_add_test(tc, test_run_abort_answers_shutting_down_and_gives_back_everything);
    tcase_add_test(tc, test_run_admission_stops_at_max_inflight_and_recovers);
    tcase_add_test(tc, test_run_same_key_in_progress_is_refused);
    tcase_add_test(tc, test_run_admission_stops_at_the_memory_limit_and_recovers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(run_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
