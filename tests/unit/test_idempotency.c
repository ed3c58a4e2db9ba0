/*
 * test_idempotency.c — the Idempotency-Key store: first use runs, a
 * concurrent duplicate is in progress, a finished one replays, another body
 * under the same key is a mismatch; transient answers are not kept; bounds
 * by count and age (fake clock).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/idempotency.h"

static unsigned char FP_A[IDEM_FINGERPRINT_BYTES], FP_B[IDEM_FINGERPRINT_BYTES];

static void setup(void)
{
    idem_fingerprint("{\"input\":\"a\"}", 13, FP_A);
    idem_fingerprint("{\"input\":\"b\"}", 13, FP_B);
}

START_TEST(test_idempotency_first_use_runs_then_replays_the_same_bytes)
{
    struct idem_store *s = idem_store_new(10, 1000);
    int status = 0;
    char *body = NULL;
    ck_assert_int_eq(idem_begin(s, "k1", FP_A, 0, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "k1", FP_A, 1, &status, &body), IDEM_IN_PROGRESS);
    idem_complete(s, "k1", 200, "{\"output\":\"x\"}");
    ck_assert_int_eq(idem_begin(s, "k1", FP_A, 2, &status, &body), IDEM_REPLAY);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(body, "{\"output\":\"x\"}");
    free(body);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_same_key_other_body_is_a_mismatch)
{
    struct idem_store *s = idem_store_new(10, 1000);
    int status;
    char *body;
    ck_assert_int_eq(idem_begin(s, "k", FP_A, 0, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "k", FP_B, 0, &status, &body), IDEM_MISMATCH);
    idem_complete(s, "k", 200, "{}");
    ck_assert_int_eq(idem_begin(s, "k", FP_B, 0, &status, &body), IDEM_MISMATCH);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_transient_answers_are_not_stored)
{
    static const int transient[] = {429, 500, 503, 504, 409};
    struct idem_store *s = idem_store_new(10, 1000);
    int status;
    char *body;
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++) {
        ck_assert_int_eq(idem_begin(s, "t", FP_A, 0, &status, &body), IDEM_NEW);
        idem_complete(s, "t", transient[i], "{\"error\":{}}");
        ck_assert_uint_eq(idem_store_count(s), 0);
    }
    ck_assert(idem_status_replayable(502));
    ck_assert(idem_status_replayable(400));
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_abandon_frees_the_key)
{
    struct idem_store *s = idem_store_new(10, 1000);
    int status;
    char *body;
    ck_assert_int_eq(idem_begin(s, "a", FP_A, 0, &status, &body), IDEM_NEW);
    idem_abandon(s, "a");
    ck_assert_int_eq(idem_begin(s, "a", FP_B, 0, &status, &body), IDEM_NEW);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_entries_expire_after_ttl)
{
    struct idem_store *s = idem_store_new(10, 1000);
    int status;
    char *body;
    ck_assert_int_eq(idem_begin(s, "e", FP_A, 0, &status, &body), IDEM_NEW);
    idem_complete(s, "e", 200, "{}");
    ck_assert_int_eq(idem_begin(s, "e", FP_A, 999, &status, &body), IDEM_REPLAY);
    free(body);
    ck_assert_int_eq(idem_begin(s, "e", FP_A, 1000, &status, &body), IDEM_NEW);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_full_store_evicts_oldest_finished_or_refuses)
{
    struct idem_store *s = idem_store_new(2, 100000);
    int status;
    char *body;
    ck_assert_int_eq(idem_begin(s, "1", FP_A, 0, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "2", FP_A, 1, &status, &body), IDEM_NEW);
    /* Both running: nothing can go. */
    ck_assert_int_eq(idem_begin(s, "3", FP_A, 2, &status, &body), IDEM_FULL);
    idem_complete(s, "1", 200, "{}");
    ck_assert_int_eq(idem_begin(s, "3", FP_A, 3, &status, &body), IDEM_NEW);
    ck_assert_uint_eq(idem_store_count(s), 2);
    ck_assert_int_eq(idem_begin(s, "1", FP_A, 4, &status, &body), IDEM_FULL);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_many_keys_are_found_again)
{
    struct idem_store *s = idem_store_new(20000, 100000);
    int status;
    char *body, key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        ck_assert_int_eq(idem_begin(s, key, FP_A, 0, &status, &body), IDEM_NEW);
        idem_complete(s, key, 200, key);
    }
    for (int i = 0; i < 10000; i += 97) {
        snprintf(key, sizeof(key), "key-%d", i);
        ck_assert_int_eq(idem_begin(s, key, FP_A, 1, &status, &body), IDEM_REPLAY);
        ck_assert_str_eq(body, key);
        free(body);
    }
    idem_store_free(s);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("idempotency");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_idempotency_first_use_runs_then_replays_the_same_bytes);
    tcase_add_test(tc, test_idempotency_same_key_other_body_is_a_mismatch);
    tcase_add_test(tc, test_idempotency_transient_answers_are_not_stored);
    tcase_add_test(tc, test_idempotency_abandon_frees_the_key);
    tcase_add_test(tc, test_idempotency_entries_expire_after_ttl);
    tcase_add_test(tc, test_idempotency_full_store_evicts_oldest_finished_or_refuses);
    tcase_add_test(tc, test_idempotency_many_keys_are_found_again);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
