/*
 * test_text.c — unit tests for text.c: the one strict UTF-8 rule (valid,
 * invalid, overlong, surrogate, truncated, above U+10FFFF), cutting a string
 * on a character boundary, and blank text.
 */
#include "agentd/text.h"

#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* --- strict UTF-8 --- */

struct utf8_case {
    const char *bytes;
    size_t len;
    bool valid;
};

static const struct utf8_case utf8_cases[] = {
    {"", 0, true},
    {"plain ascii", 11, true},
    {"a\0b", 3, true},
    {"\xc3\xa9", 2, true},          /* U+00E9 */
    {"\xe2\x82\xac", 3, true},      /* U+20AC */
    {"\xed\x9f\xbf", 3, true},      /* U+D7FF, last before surrogates */
    {"\xee\x80\x80", 3, true},      /* U+E000, first after surrogates */
    {"\xf0\x9f\x98\x80", 4, true},  /* U+1F600 */
    {"\xf4\x8f\xbf\xbf", 4, true},  /* U+10FFFF, the maximum */
    {"\xc0\xaf", 2, false},         /* overlong '/' */
    {"\xc1\xbf", 2, false},         /* overlong */
    {"\xe0\x80\xaf", 3, false},     /* overlong 3-byte */
    {"\xf0\x80\x80\xaf", 4, false}, /* overlong 4-byte */
    {"\xed\xa0\x80", 3, false},     /* U+D800 surrogate */
    {"\xed\xbf\xbf", 3, false},     /* U+DFFF surrogate */
    {"\xf4\x90\x80\x80", 4, false}, /* U+110000 */
    {"\xf5\x80\x80\x80", 4, false}, /* lead byte beyond U+10FFFF */
    {"\xff", 1, false},
    {"\x80", 1, false},             /* lone continuation */
    {"\xc3", 1, false},             /* truncated 2-byte */
    {"\xe2\x82", 2, false},         /* truncated 3-byte */
    {"\xf0\x9f\x98", 3, false},     /* truncated 4-byte */
    {"\xe2\x28\xa1", 3, false},     /* bad continuation */
    {"ok\xc3\xa9ok\xc3", 8, false}, /* truncated at the end after valid text */
};

START_TEST(test_text_utf8_valid_vectors)
{
    const struct utf8_case *c = &utf8_cases[_i];

    ck_assert_msg(text_utf8_valid(c->bytes, c->len) == c->valid, "case %d", _i);
    ck_assert_msg((text_utf8_first_invalid(c->bytes, c->len) == c->len) == c->valid, "case %d", _i);
}
END_TEST

START_TEST(test_text_utf8_valid_null_pointer)
{
    ck_assert(text_utf8_valid(NULL, 0));
    ck_assert(!text_utf8_valid(NULL, 1));
}
END_TEST

START_TEST(test_text_utf8_first_invalid_names_the_offending_byte)
{
    ck_assert_uint_eq(text_utf8_first_invalid("ab\xc3\xa9xy\xffzz", 9), 6);
    ck_assert_uint_eq(text_utf8_first_invalid("\xe2\x82\xac\xed\xa0\x80", 6), 3);
    ck_assert_uint_eq(text_utf8_first_invalid("ok\xf0\x9f\x98", 5), 2);
    ck_assert_uint_eq(text_utf8_first_invalid("ok", 2), 2);
}
END_TEST

START_TEST(test_text_utf8_char_len_of_each_width)
{
    ck_assert_uint_eq(text_utf8_char_len("a", 1), 1);
    ck_assert_uint_eq(text_utf8_char_len("\0", 1), 1);
    ck_assert_uint_eq(text_utf8_char_len("\xc3\xa9", 2), 2);
    ck_assert_uint_eq(text_utf8_char_len("\xe2\x82\xac", 3), 3);
    ck_assert_uint_eq(text_utf8_char_len("\xf0\x9f\x98\x80", 4), 4);
    ck_assert_uint_eq(text_utf8_char_len("\xf0\x9f\x98\x80", 3), 0); /* truncated by avail */
    ck_assert_uint_eq(text_utf8_char_len("\x80", 1), 0);
    ck_assert_uint_eq(text_utf8_char_len("a", 0), 0);
}
END_TEST

/* --- cutting on a character boundary --- */

START_TEST(test_text_utf8_prefix_len_keeps_short_strings_whole)
{
    ck_assert_uint_eq(text_utf8_prefix_len("abc", 3, 3), 3);
    ck_assert_uint_eq(text_utf8_prefix_len("abc", 3, 10), 3);
    ck_assert_uint_eq(text_utf8_prefix_len("", 0, 0), 0);
}
END_TEST

START_TEST(test_text_utf8_prefix_len_cuts_before_a_split_character)
{
    const char s[] = "ab\xe2\x82\xacxy"; /* "ab€xy": € is bytes 2..4 */

    ck_assert_uint_eq(text_utf8_prefix_len(s, 7, 2), 2);
    ck_assert_uint_eq(text_utf8_prefix_len(s, 7, 3), 2);
    ck_assert_uint_eq(text_utf8_prefix_len(s, 7, 4), 2);
    ck_assert_uint_eq(text_utf8_prefix_len(s, 7, 5), 5);
    ck_assert_uint_eq(text_utf8_prefix_len(s, 7, 6), 6);
    ck_assert_uint_eq(text_utf8_prefix_len(s, 7, 0), 0);
}
END_TEST

START_TEST(test_text_utf8_prefix_len_result_is_always_valid)
{
    const char s[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80x"; /* é € 😀 x */
    size_t len = strlen(s);

    for (size_t max = 0; max <= len; max++) {
        size_t n = text_utf8_prefix_len(s, len, max);
        ck_assert_uint_le(n, max);
        ck_assert_msg(text_utf8_valid(s, n), "max %zu cut at %zu", max, n);
    }
    ck_assert_uint_eq(text_utf8_prefix_len(s, len, 8), 5); /* not inside the 4-byte 😀 */
}
END_TEST

/* --- blank text --- */

START_TEST(test_text_space_or_control_is_ascii_only)
{
    ck_assert(text_is_space_or_control(' '));
    ck_assert(text_is_space_or_control('\t'));
    ck_assert(text_is_space_or_control('\n'));
    ck_assert(text_is_space_or_control('\0'));
    ck_assert(text_is_space_or_control(0x7f));
    ck_assert(!text_is_space_or_control('a'));
    ck_assert(!text_is_space_or_control(0xc3));
}
END_TEST

START_TEST(test_text_all_blank)
{
    ck_assert(text_all_blank("", 0));
    ck_assert(text_all_blank(" \t\r\n", 4));
    ck_assert(text_all_blank("\0\0", 2));
    ck_assert(!text_all_blank("  x ", 4));
    ck_assert(!text_all_blank("\xc2\xa0", 2)); /* U+00A0 is not ASCII blank */
}
END_TEST

static Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *utf8 = tcase_create("utf8");
    TCase *cut = tcase_create("prefix");
    TCase *blank = tcase_create("blank");

    tcase_add_loop_test(utf8, test_text_utf8_valid_vectors, 0,
                        (int)(sizeof(utf8_cases) / sizeof(utf8_cases[0])));
    tcase_add_test(utf8, test_text_utf8_valid_null_pointer);
    tcase_add_test(utf8, test_text_utf8_first_invalid_names_the_offending_byte);
    tcase_add_test(utf8, test_text_utf8_char_len_of_each_width);
    suite_add_tcase(s, utf8);

    tcase_add_test(cut, test_text_utf8_prefix_len_keeps_short_strings_whole);
    tcase_add_test(cut, test_text_utf8_prefix_len_cuts_before_a_split_character);
    tcase_add_test(cut, test_text_utf8_prefix_len_result_is_always_valid);
    suite_add_tcase(s, cut);

    tcase_add_test(blank, test_text_space_or_control_is_ascii_only);
    tcase_add_test(blank, test_text_all_blank);
    suite_add_tcase(s, blank);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(text_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
