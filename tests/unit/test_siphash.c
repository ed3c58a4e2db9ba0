/*
 * test_siphash.c — SipHash-2-4 against the reference test vectors (key 00..0f, messages 00,
 * 00 01, ... of every length), and the key changing the hash.
 */
#include "agentd/siphash.h"

#include <check.h>
#include <stdlib.h>

static const uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

START_TEST(test_siphash_matches_the_reference_vectors)
{
    char msg[16];
    for (int i = 0; i < 16; i++)
        msg[i] = (char)i;
    ck_assert_uint_eq(siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
    ck_assert_uint_eq(siphash24(key, msg, 1), 0x74f839c593dc67fdULL);
    ck_assert_uint_eq(siphash24(key, msg, 8), 0x93f5f5799a932462ULL);
    ck_assert_uint_eq(siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
}
END_TEST

START_TEST(test_siphash_depends_on_the_key)
{
    const uint64_t other[2] = {key[0] ^ 1, key[1]};
    ck_assert_uint_ne(siphash24(key, "conversation-1", 14), siphash24(other, "conversation-1", 14));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("siphash");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_siphash_matches_the_reference_vectors);
    tcase_add_test(tc, test_siphash_depends_on_the_key);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
