/*
 * test_event_queue.c — the bounded queue of a streamed run's events
 * (event_queue.h): wire format, order, text deltas merged while waiting,
 * the byte cap and the final event that passes it, reads of any size.
 */
#include "agentd/event_queue.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Everything queued, read max bytes at a time. */
static char *drain(struct event_queue *q, size_t max)
{
    static char out[8192];
    size_t len = 0;
    char buf[256];
    long n;
    while ((n = event_queue_read(q, buf, max)) > 0) {
        ck_assert_uint_le((size_t)n, max);
        memcpy(out + len, buf, (size_t)n);
        len += (size_t)n;
    }
    ck_assert_int_eq(n, 0);
    out[len] = '\0';
    return out;
}

START_TEST(test_event_queue_wire_format_and_order)
{
    for (size_t max = 1; max <= 200; max += 7) {
        struct event_queue *q = event_queue_new(4096);
        ck_assert(event_queue_empty(q));
        ck_assert_int_eq(event_queue_push(q, "run.started", "{\"id\":\"r\"}", 10, false), 0);
        ck_assert_int_eq(event_queue_push_text(q, 1, "Hel", 3), 0);
        ck_assert_int_eq(event_queue_push_text(q, 1, "lo \"w\"", 6), 0);
        ck_assert_int_eq(event_queue_push_comment(q, "ping"), 0);
        ck_assert_int_eq(event_queue_push_text(q, 1, "!", 1), 0);
        ck_assert_int_eq(event_queue_push_text(q, 2, "x", 1), 0);
        ck_assert_int_eq(event_queue_push(q, "run.completed", "{}", 2, true), 0);
        ck_assert_str_eq(
            drain(q, max),
            "event: run.started\ndata: {\"id\":\"r\"}\n\n"
            "event: text.delta\ndata: {\"iteration\":1,\"text\":\"Hello \\\"w\\\"\"}\n\n"
            ": ping\n\n"
            "event: text.delta\ndata: {\"iteration\":1,\"text\":\"!\"}\n\n"
            "event: text.delta\ndata: {\"iteration\":2,\"text\":\"x\"}\n\n"
            "event: run.completed\ndata: {}\n\n");
        ck_assert(event_queue_empty(q));
        ck_assert_uint_eq(event_queue_bytes(q), 0);
        event_queue_free(q);
    }
}
END_TEST

START_TEST(test_event_queue_delta_being_sent_is_not_merged)
{
    struct event_queue *q = event_queue_new(4096);
    char buf[8];
    ck_assert_int_eq(event_queue_push_text(q, 1, "ab", 2), 0);
    ck_assert_int_eq(event_queue_read(q, buf, 5), 5); /* "event" of the first delta is out */
    ck_assert_int_eq(event_queue_push_text(q, 1, "cd", 2), 0);
    ck_assert_str_eq(drain(q, 64),
                     ": text.delta\ndata: {\"iteration\":1,\"text\":\"ab\"}\n\n"
                     "event: text.delta\ndata: {\"iteration\":1,\"text\":\"cd\"}\n\n");
    event_queue_free(q);
}
END_TEST

START_TEST(test_event_queue_cap_refuses_but_final_passes)
{
    struct event_queue *q = event_queue_new(10);
    ck_assert_int_eq(event_queue_push_text(q, 1, "12345", 5), 0);
    ck_assert_int_eq(event_queue_push_text(q, 1, "67890", 5), 0);
    ck_assert_uint_eq(event_queue_bytes(q), 10);
    ck_assert_int_eq(event_queue_push_text(q, 1, "x", 1), -ENOBUFS);
    ck_assert_int_eq(event_queue_push(q, "tool.started", "{}", 2, false), -ENOBUFS);
    ck_assert_int_eq(event_queue_push_comment(q, "ping"), -ENOBUFS);
    ck_assert_int_eq(event_queue_push(q, "run.failed", "{\"status\":499}", 14, true), 0);
    ck_assert_uint_eq(event_queue_bytes(q), 24);
    ck_assert_str_eq(drain(q, 3),
                     "event: text.delta\ndata: {\"iteration\":1,\"text\":\"1234567890\"}"
                     "\n\nevent: run.failed\ndata: {\"status\":499}\n\n");
    ck_assert_uint_eq(event_queue_bytes(q), 0);
    ck_assert_int_eq(event_queue_push_text(q, 1, "x", 1), 0);
    ck_assert_int_eq(event_queue_push_text(q, 1, "\xC3", 1), -EINVAL);
    event_queue_free(q);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("event_queue");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_event_queue_wire_format_and_order);
    tcase_add_test(tc, test_event_queue_delta_being_sent_is_not_merged);
    tcase_add_test(tc, test_event_queue_cap_refuses_but_final_passes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
