/*
 * test_timerheap.c — the worker's timer heap: order, cancel, re-arm, and
 * callbacks that arm timers while the heap fires.
 */
#include <check.h>
#include <stdlib.h>

#include "agentd/timerheap.h"

struct rec {
    int order[64];
    int n;
};

struct item {
    struct timer t;
    int id;
    struct rec *rec;
};

static void record(struct timer *t, void *arg)
{
    (void)t;
    struct item *it = arg;
    it->rec->order[it->rec->n++] = it->id;
}

START_TEST(test_timerheap_fires_in_due_order)
{
    struct timerheap h;
    struct rec rec = {0};
    struct item items[6];
    int64_t due[6] = {50, 10, 40, 20, 60, 30};
    timerheap_init(&h);
    for (int i = 0; i < 6; i++) {
        items[i] = (struct item){.id = (int)due[i], .rec = &rec};
        timer_init(&items[i].t, record, &items[i]);
        ck_assert_int_eq(timerheap_arm(&h, &items[i].t, due[i]), 0);
    }
    ck_assert_int_eq(timerheap_next_due(&h), 10);
    ck_assert_uint_eq(timerheap_run_due(&h, 35), 3);
    ck_assert_int_eq(rec.n, 3);
    ck_assert_int_eq(rec.order[0], 10);
    ck_assert_int_eq(rec.order[1], 20);
    ck_assert_int_eq(rec.order[2], 30);
    ck_assert_uint_eq(timerheap_run_due(&h, 1000), 3);
    ck_assert_int_eq(rec.order[5], 60);
    ck_assert_int_eq(timerheap_next_due(&h), -1);
    timerheap_fini(&h);
}
END_TEST

START_TEST(test_timerheap_cancel_removes_only_that_timer)
{
    struct timerheap h;
    struct rec rec = {0};
    struct item items[5];
    timerheap_init(&h);
    for (int i = 0; i < 5; i++) {
        items[i] = (struct item){.id = i, .rec = &rec};
        timer_init(&items[i].t, record, &items[i]);
        timerheap_arm(&h, &items[i].t, 100 + i);
    }
    timerheap_cancel(&h, &items[2].t);
    ck_assert(!timer_armed(&items[2].t));
    timerheap_cancel(&h, &items[2].t); /* second cancel is a no-op */
    timerheap_cancel(&h, &items[0].t);
    ck_assert_int_eq(timerheap_next_due(&h), 101);
    timerheap_run_due(&h, 1000);
    ck_assert_int_eq(rec.n, 3);
    ck_assert_int_eq(rec.order[0], 1);
    ck_assert_int_eq(rec.order[1], 3);
    ck_assert_int_eq(rec.order[2], 4);
    timerheap_fini(&h);
}
END_TEST

START_TEST(test_timerheap_rearm_moves_a_timer)
{
    struct timerheap h;
    struct rec rec = {0};
    struct item a = {.id = 1, .rec = &rec}, b = {.id = 2, .rec = &rec};
    timerheap_init(&h);
    timer_init(&a.t, record, &a);
    timer_init(&b.t, record, &b);
    timerheap_arm(&h, &a.t, 10);
    timerheap_arm(&h, &b.t, 20);
    timerheap_arm(&h, &a.t, 30); /* later than b now */
    ck_assert_uint_eq(h.len, 2);
    ck_assert_ptr_null(timerheap_pop_due(&h, 15));
    timerheap_run_due(&h, 100);
    ck_assert_int_eq(rec.order[0], 2);
    ck_assert_int_eq(rec.order[1], 1);
    timerheap_fini(&h);
}
END_TEST

struct rearming {
    struct timer t;
    struct timerheap *h;
    int fired;
};

static void rearm_self(struct timer *t, void *arg)
{
    struct rearming *r = arg;
    if (++r->fired < 3)
        timerheap_arm(r->h, t, t->due_ms + 10);
}

START_TEST(test_timerheap_callback_may_rearm_itself)
{
    struct timerheap h;
    timerheap_init(&h);
    struct rearming r = {.h = &h};
    timer_init(&r.t, rearm_self, &r);
    timerheap_arm(&h, &r.t, 0);
    timerheap_run_due(&h, 5);
    ck_assert_int_eq(r.fired, 1);
    timerheap_run_due(&h, 100);
    ck_assert_int_eq(r.fired, 3);
    ck_assert(!timer_armed(&r.t));
    timerheap_fini(&h);
}
END_TEST

START_TEST(test_timerheap_random_order_matches_sort)
{
    enum { N = 500 };
    struct timerheap h;
    static struct timer ts[N];
    unsigned seed = 12345;
    timerheap_init(&h);
    for (int i = 0; i < N; i++) {
        timer_init(&ts[i], NULL, NULL);
        seed = seed * 1103515245u + 12345u;
        timerheap_arm(&h, &ts[i], (int64_t)(seed % 10000));
    }
    for (int i = 0; i < N; i += 3)
        timerheap_cancel(&h, &ts[i]);
    int64_t last = -1;
    size_t popped = 0;
    struct timer *t;
    while ((t = timerheap_pop_due(&h, 1 << 30))) {
        ck_assert_int_ge(t->due_ms, last);
        last = t->due_ms;
        popped++;
    }
    ck_assert_uint_eq(popped, N - (N + 2) / 3);
    timerheap_fini(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("timerheap");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_timerheap_fires_in_due_order);
    tcase_add_test(tc, test_timerheap_cancel_removes_only_that_timer);
    tcase_add_test(tc, test_timerheap_rearm_moves_a_timer);
    tcase_add_test(tc, test_timerheap_callback_may_rearm_itself);
    tcase_add_test(tc, test_timerheap_random_order_matches_sort);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
