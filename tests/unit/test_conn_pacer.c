/*
 * test_conn_pacer.c — when a transfer may open a connection, and whose fault a failed connect
 * was (conn_pacer.h), on a fake clock.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "agentd/conn_pacer.h"

#define T0 1000000

/* Admits one transfer that opens a connection: it becomes active and connecting, and its
   socket opens. */
static int64_t admit_opening(struct conn_lane *l, int64_t now)
{
    int64_t wait = conn_lane_admit(l, now);
    if (wait == 0) {
        l->active++;
        l->connecting++;
        l->open++;
    }
    return wait;
}

START_TEST(test_burst_then_one_connection_per_token)
{
    struct conn_lane l;
    /* 10 per second = one per 100 ms, burst 3. */
    conn_lane_init(&l, 10, 3, 0, false, 100, T0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(admit_opening(&l, T0), 0);
    int64_t wait = admit_opening(&l, T0);
    ck_assert_int_ge(wait, 99);
    ck_assert_int_le(wait, 101);
    ck_assert_int_gt(admit_opening(&l, T0 + 50), 0);
    ck_assert_int_eq(admit_opening(&l, T0 + 100), 0);
    ck_assert_int_gt(admit_opening(&l, T0 + 150), 0);
    ck_assert_int_eq(admit_opening(&l, T0 + 200), 0);
    /* Tokens pile up to the burst only. */
    int n = 0;
    while (admit_opening(&l, T0 + 100000) == 0)
        n++;
    ck_assert_int_eq(n, 3);
}
END_TEST

START_TEST(test_reuse_cap_and_multiplex_never_wait)
{
    struct conn_lane l;
    conn_lane_init(&l, 1, 1, 4, false, 100, T0);
    ck_assert_int_eq(admit_opening(&l, T0), 0);
    ck_assert_int_gt(conn_lane_admit(&l, T0), 0); /* a second connection must wait */
    /* The first transfer ends: its connection stays open and idle, so the next one reuses it. */
    l.active--;
    l.connecting--;
    ck_assert_int_eq(conn_lane_admit(&l, T0), 0);
    /* At the cap, libcurl queues the transfer for a connection that frees up: no new one, no
       token. */
    l.active = 4;
    l.open = 4;
    ck_assert_int_eq(conn_lane_admit(&l, T0), 0);
    ck_assert_int_eq(conn_lane_admit(&l, T0), 0);
    /* HTTP/2: transfers share connections; never paced by tokens. */
    struct conn_lane m;
    conn_lane_init(&m, 1, 1, 0, true, 100, T0);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(conn_lane_admit(&m, T0), 0);
        m.active++;
        m.connecting++;
    }
    /* Unpaced (rate 0): always now. */
    struct conn_lane u;
    conn_lane_init(&u, 0, 1, 0, false, 100, T0);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(admit_opening(&u, T0), 0);
}
END_TEST

/* A multiplexing lane hands libcurl what its open connections carry plus one new connection's
   worth; the rest wait (not for a token: they look again shortly). */
START_TEST(test_multiplexing_lane_admits_one_new_connection_worth_at_a_time)
{
    struct conn_lane l;
    conn_lane_init(&l, 1, 1, 0, true, 10, T0);
    int n = 0;
    while (conn_lane_admit(&l, T0) == 0 && n < 1000) {
        l.active++;
        n++;
    }
    ck_assert_int_eq(n, 10); /* no connection yet: the first one's 10 streams */
    ck_assert_int_eq(conn_lane_admit(&l, T0), CONN_PACER_RECHECK_MS);
    l.open = 1; /* libcurl opened it: room for the next connection's worth */
    while (conn_lane_admit(&l, T0) == 0 && n < 1000) {
        l.active++;
        n++;
    }
    ck_assert_int_eq(n, 20);
    l.active -= 5; /* transfers end */
    ck_assert_int_eq(conn_lane_admit(&l, T0), 0);
    /* Answered over HTTP/1.1 after all: paced like any other lane. */
    l.multiplex = false;
    l.active = l.open = 3;
    ck_assert_int_eq(conn_lane_admit(&l, T0), 0);
    ck_assert_int_gt(conn_lane_admit(&l, T0), 0);
}
END_TEST

START_TEST(test_own_burst_needs_a_crowd_and_a_live_upstream)
{
    struct conn_lane l;
    conn_lane_init(&l, 0, 1, 0, false, 100, T0);
    /* Nobody ever connected: the upstream may well be down. */
    l.connecting = 50;
    ck_assert(!conn_lane_own_burst(&l, T0, 50));
    /* Others connected after ours started, and a crowd was connecting: ours. */
    l.last_connected_ms = T0 + 5;
    ck_assert(conn_lane_own_burst(&l, T0, 50));
    /* The crowd at start is enough even when it has thinned since. */
    l.connecting = 0;
    ck_assert(conn_lane_own_burst(&l, T0, CONN_PACER_CROWD));
    ck_assert(!conn_lane_own_burst(&l, T0, CONN_PACER_CROWD - 1));
    /* A connection made only before ours started proves nothing about now. */
    l.connecting = 50;
    ck_assert(!conn_lane_own_burst(&l, T0 + 6, 50));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conn_pacer");
    TCase *tc = tcase_create("conn_pacer");
    tcase_add_test(tc, test_burst_then_one_connection_per_token);
    tcase_add_test(tc, test_reuse_cap_and_multiplex_never_wait);
    tcase_add_test(tc, test_multiplexing_lane_admits_one_new_connection_worth_at_a_time);
    tcase_add_test(tc, test_own_burst_needs_a_crowd_and_a_live_upstream);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
