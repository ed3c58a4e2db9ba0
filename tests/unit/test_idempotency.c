/*
 * test_idempotency.c — the Idempotency-Key store: first use runs, a
 * concurrent duplicate is in progress, a finished one replays, another body
 * under the same key is a mismatch; transient answers are not kept; bounds
 * by count and age (fake clock); what happens when OpenSSL or pthreads fail
 * (the failures are injected by interposing those functions in this binary).
 */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "agentd/idempotency.h"

/* --- failure injection: each flag makes the next calls of one function fail --- */

static bool fail_md_ctx_new, fail_digest, fail_mutex_init;

/* The next definition of `name` after this binary's, i.e. the library's. */
static void *next_symbol(const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    ck_assert_msg(sym != NULL, "dlsym(%s): %s", name, dlerror());
    return sym;
}

EVP_MD_CTX *EVP_MD_CTX_new(void)
{
    EVP_MD_CTX *(*real)(void);
    void *sym;

    if (fail_md_ctx_new)
        return NULL;
    sym = next_symbol("EVP_MD_CTX_new");
    memcpy(&real, &sym, sizeof(real));
    return real();
}

int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, ENGINE *impl)
{
    int (*real)(const void *, size_t, unsigned char *, unsigned int *, const EVP_MD *, ENGINE *);
    void *sym;

    if (fail_digest)
        return 0;
    sym = next_symbol("EVP_Digest");
    memcpy(&real, &sym, sizeof(real));
    return real(data, count, md, size, type, impl);
}

int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *attr)
{
    int (*real)(pthread_mutex_t *, const pthread_mutexattr_t *);
    void *sym;

    if (fail_mutex_init)
        return ENOMEM;
    sym = next_symbol("pthread_mutex_init");
    memcpy(&real, &sym, sizeof(real));
    return real(m, attr);
}

/* A byte budget that never binds. */
#define BIG ((size_t)1 << 30)

static unsigned char FP_A[IDEM_FINGERPRINT_BYTES], FP_B[IDEM_FINGERPRINT_BYTES];

static void setup(void)
{
    idem_fingerprint("{\"input\":\"a\"}", 13, FP_A);
    idem_fingerprint("{\"input\":\"b\"}", 13, FP_B);
}

START_TEST(test_idempotency_first_use_runs_then_replays_the_same_bytes)
{
    struct idem_store *s = idem_store_new(10, BIG, 1000);
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
    struct idem_store *s = idem_store_new(10, BIG, 1000);
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
    struct idem_store *s = idem_store_new(10, BIG, 1000);
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
    struct idem_store *s = idem_store_new(10, BIG, 1000);
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
    struct idem_store *s = idem_store_new(10, BIG, 1000);
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
    struct idem_store *s = idem_store_new(2, BIG, 100000);
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

START_TEST(test_idempotency_running_entry_does_not_block_eviction_of_finished_ones)
{
    struct idem_store *s = idem_store_new(3, BIG, 100000);
    int status;
    char *body = NULL;
    ck_assert_int_eq(idem_begin(s, "slow", FP_A, 0, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "f1", FP_A, 1, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "f2", FP_A, 2, &status, &body), IDEM_NEW);
    idem_complete(s, "f1", 200, "1");
    idem_complete(s, "f2", 200, "2");
    /* "slow" is the oldest and still running: the oldest finished answer goes instead. */
    ck_assert_int_eq(idem_begin(s, "n1", FP_A, 3, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "slow", FP_A, 4, &status, &body), IDEM_IN_PROGRESS);
    ck_assert_int_eq(idem_begin(s, "f2", FP_A, 5, &status, &body), IDEM_REPLAY);
    ck_assert_str_eq(body, "2");
    free(body);
    body = NULL;
    ck_assert_int_eq(idem_begin(s, "n2", FP_A, 6, &status, &body), IDEM_NEW); /* evicts f2 */
    /* Now every entry runs: only then is the store full. */
    ck_assert_int_eq(idem_begin(s, "f1", FP_A, 7, &status, &body), IDEM_FULL);
    ck_assert_uint_eq(idem_store_count(s), 3);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_finished_entries_are_evicted_in_the_order_they_finished)
{
    struct idem_store *s = idem_store_new(3, BIG, 100000);
    int status;
    char *body = NULL;
    ck_assert_int_eq(idem_begin(s, "a", FP_A, 0, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "b", FP_A, 1, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "c", FP_A, 2, &status, &body), IDEM_NEW);
    idem_complete(s, "b", 200, "b");
    idem_complete(s, "c", 200, "c");
    idem_complete(s, "a", 200, "a");
    ck_assert_int_eq(idem_begin(s, "d", FP_A, 3, &status, &body), IDEM_NEW); /* evicts b */
    idem_complete(s, "d", 200, "d");
    ck_assert_int_eq(idem_begin(s, "e", FP_A, 4, &status, &body), IDEM_NEW); /* evicts c */
    idem_abandon(s, "e");
    ck_assert_int_eq(idem_begin(s, "a", FP_A, 5, &status, &body), IDEM_REPLAY);
    ck_assert_str_eq(body, "a");
    free(body);
    ck_assert_int_eq(idem_begin(s, "d", FP_A, 6, &status, &body), IDEM_REPLAY);
    ck_assert_str_eq(body, "d");
    free(body);
    ck_assert_int_eq(idem_begin(s, "b", FP_A, 7, &status, &body), IDEM_NEW);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_stored_answers_are_bounded_by_bytes)
{
    /* 1600 bytes: answers of up to 1600 / IDEM_MAX_ANSWER_SHARE = 100 bytes are kept. */
    struct idem_store *s = idem_store_new(100, 1600, 100000);
    char body100[101], key[16], *body = NULL;
    int status;
    ck_assert_int_eq(IDEM_MAX_ANSWER_SHARE, 16);
    memset(body100, 'x', 100);
    body100[100] = '\0';
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(idem_begin(s, key, FP_A, i, &status, &body), IDEM_NEW);
        idem_complete(s, key, 200, body100);
    }
    ck_assert_uint_eq(idem_store_count(s), 16); /* exactly 1600 bytes */
    ck_assert_int_eq(idem_begin(s, "k16", FP_A, 16, &status, &body), IDEM_NEW);
    idem_complete(s, "k16", 200, body100); /* 1700 bytes: k0 goes */
    ck_assert_uint_eq(idem_store_count(s), 16);
    ck_assert_int_eq(idem_begin(s, "k1", FP_A, 17, &status, &body), IDEM_REPLAY);
    ck_assert_str_eq(body, body100);
    free(body);
    body = NULL;
    ck_assert_int_eq(idem_begin(s, "k0", FP_A, 18, &status, &body), IDEM_NEW);
    /* A small answer makes room for itself only: k1 goes. */
    idem_complete(s, "k0", 200, "{}");
    ck_assert_uint_eq(idem_store_count(s), 16);
    ck_assert_int_eq(idem_begin(s, "k1", FP_A, 19, &status, &body), IDEM_NEW);
    idem_abandon(s, "k1");
    ck_assert_int_eq(idem_begin(s, "k2", FP_A, 20, &status, &body), IDEM_REPLAY);
    free(body);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_an_answer_over_its_share_of_the_bytes_is_not_stored)
{
    struct idem_store *s = idem_store_new(100, 1600, 100000);
    char body101[102], *body = NULL;
    int status;
    memset(body101, 'x', 101);
    body101[101] = '\0';
    ck_assert_int_eq(idem_begin(s, "small", FP_A, 0, &status, &body), IDEM_NEW);
    idem_complete(s, "small", 200, "{}");
    ck_assert_int_eq(idem_begin(s, "big", FP_A, 1, &status, &body), IDEM_NEW);
    idem_complete(s, "big", 200, body101);
    /* Dropped like a transient answer: the key runs again; nothing else was evicted. */
    ck_assert_uint_eq(idem_store_count(s), 1);
    ck_assert_int_eq(idem_begin(s, "big", FP_A, 2, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "small", FP_A, 3, &status, &body), IDEM_REPLAY);
    free(body);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_many_keys_are_found_again)
{
    struct idem_store *s = idem_store_new(20000, BIG, 100000);
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

START_TEST(test_idempotency_finished_entry_expires_while_an_older_request_runs)
{
    struct idem_store *s = idem_store_new(10, BIG, 1000);
    int status;
    char *body = NULL;
    ck_assert_int_eq(idem_begin(s, "old", FP_A, 0, &status, &body), IDEM_NEW);
    ck_assert_int_eq(idem_begin(s, "done", FP_A, 10, &status, &body), IDEM_NEW);
    idem_complete(s, "done", 200, "{}");
    ck_assert_int_eq(idem_begin(s, "done", FP_A, 1009, &status, &body), IDEM_REPLAY);
    free(body);
    body = NULL;
    /* "old" still runs and is older, but "done" is past its own ttl: it runs again. */
    ck_assert_int_eq(idem_begin(s, "done", FP_B, 1010, &status, &body), IDEM_NEW);
    ck_assert_ptr_null(body);
    ck_assert_int_eq(idem_begin(s, "old", FP_A, 5000, &status, &body), IDEM_IN_PROGRESS);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_keys_stay_findable_when_sha256_setup_fails)
{
    struct idem_store *s = idem_store_new(100, BIG, 1000);
    int status;
    char *body, key[16];
    /* The key's bucket must not depend on an allocation that can fail. */
    fail_md_ctx_new = true;
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(idem_begin(s, key, FP_A, 0, &status, &body), IDEM_NEW);
    }
    fail_md_ctx_new = false;
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(idem_begin(s, key, FP_A, 1, &status, &body), IDEM_IN_PROGRESS);
        idem_abandon(s, key);
        ck_assert_uint_eq(idem_store_count(s), (size_t)(7 - i));
    }
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_fingerprint_failure_is_reported_and_refused)
{
    struct idem_store *s = idem_store_new(10, BIG, 1000);
    unsigned char fp[IDEM_FINGERPRINT_BYTES], zero[IDEM_FINGERPRINT_BYTES] = {0};
    int status;
    char *body;
    memset(fp, 0xa5, sizeof(fp));
    fail_digest = true;
    ck_assert_int_lt(idem_fingerprint("{}", 2, fp), 0);
    fail_digest = false;
    /* Never stale bytes that could match another body's fingerprint. */
    ck_assert_int_eq(memcmp(fp, zero, sizeof(fp)), 0);
    /* A zeroed fingerprint cannot tell bodies apart: refused like out of memory. */
    ck_assert_int_eq(idem_begin(s, "k", fp, 0, &status, &body), IDEM_FULL);
    ck_assert_uint_eq(idem_store_count(s), 0);
    ck_assert_int_eq(idem_fingerprint("{}", 2, fp), 0);
    ck_assert_int_ne(memcmp(fp, zero, sizeof(fp)), 0);
    idem_store_free(s);
}
END_TEST

START_TEST(test_idempotency_store_new_fails_when_the_mutex_cannot_be_made)
{
    fail_mutex_init = true;
    struct idem_store *s = idem_store_new(10, BIG, 1000);
    fail_mutex_init = false;
    ck_assert_ptr_null(s);
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
    tcase_add_test(tc, test_idempotency_running_entry_does_not_block_eviction_of_finished_ones);
    tcase_add_test(tc, test_idempotency_finished_entries_are_evicted_in_the_order_they_finished);
    tcase_add_test(tc, test_idempotency_stored_answers_are_bounded_by_bytes);
    tcase_add_test(tc, test_idempotency_an_answer_over_its_share_of_the_bytes_is_not_stored);
    tcase_add_test(tc, test_idempotency_many_keys_are_found_again);
    tcase_add_test(tc, test_idempotency_finished_entry_expires_while_an_older_request_runs);
    tcase_add_test(tc, test_idempotency_keys_stay_findable_when_sha256_setup_fails);
    tcase_add_test(tc, test_idempotency_fingerprint_failure_is_reported_and_refused);
    tcase_add_test(tc, test_idempotency_store_new_fails_when_the_mutex_cannot_be_made);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
