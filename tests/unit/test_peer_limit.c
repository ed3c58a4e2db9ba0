/*
 * test_peer_limit.c — connections per client address (peer_limit.h).
 */
#include "agentd/peer_limit.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1234)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

#define SA(x) ((const struct sockaddr *)&(x))

START_TEST(test_peer_limit_refuses_past_the_limit_and_gives_back_on_close)
{
    struct peer_limit *l = peer_limit_new(3);
    struct sockaddr_in a = v4("10.0.0.1"), b = v4("10.0.0.2");
    ck_assert(peer_limit_take(l, 10, SA(a)));
    ck_assert(peer_limit_take(l, 11, SA(a)));
    ck_assert(peer_limit_take(l, 12, SA(a)));
    ck_assert(!peer_limit_take(l, 13, SA(a)));
    ck_assert(peer_limit_take(l, 14, SA(b))); /* another address has its own slots */
    ck_assert_uint_eq(peer_limit_held(l, SA(a)), 3);
    peer_limit_give(l, 11);
    peer_limit_give(l, 11); /* twice: nothing more */
    ck_assert_uint_eq(peer_limit_held(l, SA(a)), 2);
    ck_assert(peer_limit_take(l, 13, SA(a)));
    peer_limit_give(l, 10);
    peer_limit_give(l, 12);
    peer_limit_give(l, 13);
    peer_limit_give(l, 14);
    ck_assert_uint_eq(peer_limit_held(l, SA(a)), 0);
    ck_assert_uint_eq(peer_limit_held(l, SA(b)), 0);
    peer_limit_free(l);
}
END_TEST

START_TEST(test_peer_limit_counts_ipv4_mapped_ipv6_as_the_same_client)
{
    struct peer_limit *l = peer_limit_new(1);
    struct sockaddr_in a = v4("192.0.2.7");
    struct sockaddr_in6 m = v6("::ffff:192.0.2.7"), other = v6("2001:db8::7");
    ck_assert(peer_limit_take(l, 5, SA(a)));
    ck_assert(!peer_limit_take(l, 6, SA(m)));
    ck_assert(peer_limit_take(l, 7, SA(other)));
    peer_limit_free(l);
}
END_TEST

/* A socket whose close was never reported: its number coming back settles it. */
START_TEST(test_peer_limit_settles_a_socket_number_handed_out_again)
{
    struct peer_limit *l = peer_limit_new(1);
    struct sockaddr_in a = v4("10.0.0.1"), b = v4("10.0.0.2");
    ck_assert(peer_limit_take(l, 9, SA(a)));
    ck_assert(peer_limit_take(l, 9, SA(b))); /* fd 9 was closed without a word */
    ck_assert_uint_eq(peer_limit_held(l, SA(a)), 0);
    ck_assert(peer_limit_take(l, 4000, SA(a))); /* and the table grows for large numbers */
    peer_limit_free(l);
}
END_TEST

/* A close reported after the socket number was handed out again gives back the right slot. */
START_TEST(test_peer_limit_adopted_slot_survives_the_number_being_reused)
{
    struct peer_limit *l = peer_limit_new(2);
    struct sockaddr_in a = v4("10.0.0.1"), b = v4("10.0.0.2");
    ck_assert(peer_limit_take(l, 9, SA(a)));
    struct peer_slot *slot = peer_limit_adopt(l, 9);
    ck_assert_ptr_nonnull(slot);
    ck_assert(peer_limit_take(
        l, 9, SA(b))); /* 9 was closed, then reused, before the close was reported */
    peer_limit_drop(l, slot);
    ck_assert_uint_eq(peer_limit_held(l, SA(a)), 0);
    ck_assert_uint_eq(peer_limit_held(l, SA(b)), 1);
    ck_assert_ptr_null(peer_limit_adopt(l, 1234));
    peer_limit_drop(l, NULL);
    peer_limit_free(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("peer_limit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_peer_limit_refuses_past_the_limit_and_gives_back_on_close);
    tcase_add_test(tc, test_peer_limit_counts_ipv4_mapped_ipv6_as_the_same_client);
    tcase_add_test(tc, test_peer_limit_settles_a_socket_number_handed_out_again);
    tcase_add_test(tc, test_peer_limit_adopted_slot_survives_the_number_being_reused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
