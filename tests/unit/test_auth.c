/*
 * test_auth.c — unit tests for auth.c: token lists and tokens files parsed
 * (comments, blank lines, CRs, bad lines named without their bytes), the
 * Authorization header matched against every token with the matched token's
 * caller id, the file stamp that tells a changed file, and the live set: off
 * without tokens, replaced at once, kept when a reload finds a bad file, and
 * swapped while other threads check.
 */
#include "agentd/auth.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentd/request.h"

static char dir[] = "/tmp/agentd_test_authXXXXXX";
static char path[sizeof(dir) + 16];

static void setup(void)
{
    strcpy(dir, "/tmp/agentd_test_authXXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tokens", dir);
}

static void teardown(void)
{
    char other[sizeof(path) + 8];

    snprintf(other, sizeof(other), "%s.new", path);
    unlink(other);
    unlink(path);
    rmdir(dir);
}

/* Replaces the file at `at` the way a Secret update or an editor does: write aside, rename. */
static void write_file(const char *at, const char *content)
{
    char tmp[sizeof(path) + 8];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.new", at);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(content, 1, strlen(content), f), strlen(content));
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, at), 0);
}

static bool check_as(struct auth *a, const char *token, char caller[REQUEST_CALLER_ID_BYTES])
{
    char header[256];

    snprintf(header, sizeof(header), "Bearer %s", token);
    return auth_check(a, header, caller);
}

static void assert_caller_of(const char *caller, const char *token)
{
    char want[REQUEST_CALLER_ID_BYTES];

    request_caller_id(token, strlen(token), want);
    ck_assert_str_eq(caller, want);
}

/* --- parsing --- */

START_TEST(test_auth_list_skips_empty_entries)
{
    struct auth_tokens *t = NULL;
    char err[256] = "";
    char caller[REQUEST_CALLER_ID_BYTES];

    ck_assert_int_eq(auth_tokens_parse_list("alpha,,beta,gamma,", &t, err, sizeof(err)), 0);
    ck_assert_uint_eq(auth_tokens_count(t), 3);
    ck_assert(auth_tokens_match(t, "Bearer beta", caller));
    assert_caller_of(caller, "beta");
    ck_assert(auth_tokens_match(t, "Bearer gamma", caller));
    assert_caller_of(caller, "gamma");
    auth_tokens_free(t);
}
END_TEST

START_TEST(test_auth_list_without_a_token_is_refused)
{
    struct auth_tokens *t = NULL;
    char err[256];

    ck_assert_int_eq(auth_tokens_parse_list(",,", &t, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "no token in the list");
    ck_assert_ptr_null(t);
    ck_assert_int_eq(auth_tokens_parse_list("", &t, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(auth_tokens_parse_list(NULL, &t, NULL, 0), -EINVAL);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_auth_list_bad_token_is_named_by_place_not_bytes)
{
    struct auth_tokens *t = NULL;
    char err[256];

    ck_assert_int_eq(auth_tokens_parse_list("good,SEC RET", &t, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "token 2: expected 1..4096 printable ASCII characters without spaces, "
                          "got 7 bytes (value not shown)");
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_auth_lines_skip_comments_blanks_and_trailing_whitespace)
{
    static const char text[] = "# agentd bearer tokens\n"
                               "\n"
                               "tok-one\r\n"
                               "   \t\r\n"
                               "tok-two  \t\n"
                               "  # an indented comment\n"
                               "tok#three"; /* no final newline; '#' inside a token is kept */
    struct auth_tokens *t = NULL;
    char err[256] = "";
    char caller[REQUEST_CALLER_ID_BYTES];

    ck_assert_msg(auth_tokens_parse_lines(text, strlen(text), &t, err, sizeof(err)) == 0, "%s",
                  err);
    ck_assert_uint_eq(auth_tokens_count(t), 3);
    ck_assert(auth_tokens_match(t, "Bearer tok-one", caller));
    assert_caller_of(caller, "tok-one");
    ck_assert(auth_tokens_match(t, "Bearer tok-two", caller));
    assert_caller_of(caller, "tok-two");
    ck_assert(auth_tokens_match(t, "Bearer tok#three", caller));
    ck_assert(!auth_tokens_match(t, "Bearer tok-two  ", caller));
    auth_tokens_free(t);
}
END_TEST

START_TEST(test_auth_lines_bad_line_is_named_by_number_not_bytes)
{
    static const char leading_space[] = "ok\n\n  SECRETVALUE\n";
    static const char nul_byte[] = "ok\nSECRET\0VALUE\n";
    struct auth_tokens *t = NULL;
    char err[256];

    ck_assert_int_eq(
        auth_tokens_parse_lines(leading_space, strlen(leading_space), &t, err, sizeof(err)),
        -EINVAL);
    ck_assert_str_eq(err, "line 3: expected 1..4096 printable ASCII characters without spaces, "
                          "got 13 bytes (value not shown)");
    ck_assert_int_eq(auth_tokens_parse_lines(nul_byte, sizeof(nul_byte) - 1, &t, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "line 2: "));
    ck_assert_ptr_null(strstr(err, "SECRET"));
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_auth_lines_without_a_token_are_refused)
{
    static const char text[] = "# nothing here yet\n\n   \r\n";
    struct auth_tokens *t = NULL;
    char err[256];

    ck_assert_int_eq(auth_tokens_parse_lines(text, strlen(text), &t, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "no token in the file (one per line)");
    ck_assert_int_eq(auth_tokens_parse_lines("", 0, &t, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_auth_token_length_and_count_are_bounded)
{
    size_t big = (AUTH_TOKENS_MAX + 1) * 3;
    char *text = malloc(big + AUTH_TOKEN_MAX_BYTES + 2);
    struct auth_tokens *t = NULL;
    char err[256];

    ck_assert_ptr_nonnull(text);
    memset(text, 'k', AUTH_TOKEN_MAX_BYTES + 1);
    ck_assert_int_eq(auth_tokens_parse_lines(text, AUTH_TOKEN_MAX_BYTES, &t, err, sizeof(err)), 0);
    t = auth_tokens_free(t);
    ck_assert_int_eq(auth_tokens_parse_lines(text, AUTH_TOKEN_MAX_BYTES + 1, &t, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "got 4097 bytes"));

    /* AUTH_TOKENS_MAX + 1 lines "tN" (t + one letter + newline). */
    for (size_t i = 0; i <= AUTH_TOKENS_MAX; i++) {
        text[3 * i] = 't';
        text[3 * i + 1] = (char)('a' + i % 26);
        text[3 * i + 2] = '\n';
    }
    ck_assert_int_eq(auth_tokens_parse_lines(text, 3 * AUTH_TOKENS_MAX, &t, err, sizeof(err)), 0);
    ck_assert_uint_eq(auth_tokens_count(t), AUTH_TOKENS_MAX);
    t = auth_tokens_free(t);
    ck_assert_int_eq(auth_tokens_parse_lines(text, big, &t, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "line 1025: more than 1024 tokens");
    free(text);
}
END_TEST

/* --- files --- */

START_TEST(test_auth_file_is_read_with_its_stamp)
{
    struct auth_tokens *t = NULL;
    struct auth_file_stamp read_stamp, now;
    char err[256] = "";

    write_file(path, "# tokens\nfile-token-1\nfile-token-2\n");
    ck_assert_msg(auth_tokens_read_file(path, &t, &read_stamp, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(auth_tokens_count(t), 2);
    ck_assert_int_eq(auth_file_stamp_get(path, &now), 0);
    ck_assert(auth_file_stamp_equal(&read_stamp, &now));
    auth_tokens_free(t);
}
END_TEST

START_TEST(test_auth_file_errors_name_the_path_and_reason)
{
    struct auth_tokens *t = NULL;
    char err[256];
    char *big;

    ck_assert_int_eq(
        auth_tokens_read_file("/nonexistent/agentd/tokens", &t, NULL, err, sizeof(err)), -ENOENT);
    ck_assert_str_eq(err, "cannot read '/nonexistent/agentd/tokens': No such file or directory");
    ck_assert_int_eq(auth_tokens_read_file(dir, &t, NULL, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "' is not a regular file"));

    write_file(path, "ok\n bad\n");
    ck_assert_int_eq(auth_tokens_read_file(path, &t, NULL, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "/tokens': line 2: expected"));

    big = malloc(AUTH_FILE_MAX_BYTES + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, 'k', AUTH_FILE_MAX_BYTES + 1);
    big[AUTH_FILE_MAX_BYTES + 1] = '\0';
    write_file(path, big);
    free(big);
    ck_assert_int_eq(auth_tokens_read_file(path, &t, NULL, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "' is larger than 1048576 bytes"));
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_auth_file_stamp_changes_with_the_file)
{
    struct auth_file_stamp a, b, gone1, gone2;

    write_file(path, "one\n");
    ck_assert_int_eq(auth_file_stamp_get(path, &a), 0);
    ck_assert_int_eq(auth_file_stamp_get(path, &b), 0);
    ck_assert(auth_file_stamp_equal(&a, &b));
    write_file(path, "one\n"); /* same bytes, new inode: a Secret update looks like this */
    ck_assert_int_eq(auth_file_stamp_get(path, &b), 0);
    ck_assert(!auth_file_stamp_equal(&a, &b));
    unlink(path);
    ck_assert_int_eq(auth_file_stamp_get(path, &gone1), -ENOENT);
    ck_assert_int_eq(gone1.err, ENOENT);
    ck_assert(!auth_file_stamp_equal(&b, &gone1));
    ck_assert_int_eq(auth_file_stamp_get(path, &gone2), -ENOENT);
    ck_assert(auth_file_stamp_equal(&gone1, &gone2));
}
END_TEST

/* --- matching --- */

START_TEST(test_auth_match_needs_the_bearer_scheme_and_the_whole_token)
{
    struct auth_tokens *t = NULL;
    char caller[REQUEST_CALLER_ID_BYTES] = "untouched";

    ck_assert_int_eq(auth_tokens_parse_list("tok-A,tok-B", &t, NULL, 0), 0);
    ck_assert(auth_tokens_match(t, "Bearer tok-A", caller));
    assert_caller_of(caller, "tok-A");
    ck_assert(auth_tokens_match(t, "bearer tok-B", caller));
    assert_caller_of(caller, "tok-B");

    strcpy(caller, "untouched");
    static const char *const refused[] = {
        "Bearer tok-",   "Bearer tok-AB", "Bearer tok-a",
        "Bearer  tok-A", "Bearer ",       "Bearer",
        "tok-A",         "Basic tok-A",   "",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        ck_assert_msg(!auth_tokens_match(t, refused[i], caller), "'%s'", refused[i]);
    ck_assert(!auth_tokens_match(t, NULL, caller));
    ck_assert(!auth_tokens_match(NULL, "Bearer tok-A", caller));
    ck_assert_str_eq(caller, "untouched");
    auth_tokens_free(t);
}
END_TEST

START_TEST(test_auth_caller_id_is_the_tokens_not_the_token)
{
    struct auth_tokens *t = NULL;
    char caller[REQUEST_CALLER_ID_BYTES];

    ck_assert_int_eq(auth_tokens_parse_list("tok-SECRET-1", &t, NULL, 0), 0);
    ck_assert(auth_tokens_match(t, "Bearer tok-SECRET-1", caller));
    ck_assert_uint_eq(strlen(caller), REQUEST_CALLER_ID_BYTES - 1);
    ck_assert_int_eq(caller[0], 'c');
    ck_assert_ptr_null(strstr(caller, "SECRET"));
    assert_caller_of(caller, "tok-SECRET-1");
    auth_tokens_free(t);
}
END_TEST

/* --- the live set --- */

START_TEST(test_auth_without_tokens_lets_every_request_in)
{
    struct auth *a = auth_new(NULL);
    char caller[REQUEST_CALLER_ID_BYTES] = "x";

    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(auth_count(a), 0);
    ck_assert(auth_check(a, NULL, caller));
    ck_assert_str_eq(caller, "");
    strcpy(caller, "x");
    ck_assert(auth_check(NULL, "Bearer whatever", caller));
    ck_assert_str_eq(caller, "");
    auth_free(a);
    ck_assert_ptr_null(auth_free(NULL));
}
END_TEST

START_TEST(test_auth_replace_takes_effect_for_the_next_check)
{
    struct auth_tokens *t = NULL;
    struct auth *a;
    char caller[REQUEST_CALLER_ID_BYTES];

    ck_assert_int_eq(auth_tokens_parse_list("token-A", &t, NULL, 0), 0);
    a = auth_new(t);
    ck_assert_uint_eq(auth_count(a), 1);
    ck_assert(check_as(a, "token-A", caller));
    ck_assert(!check_as(a, "token-B", caller));
    ck_assert(!auth_check(a, NULL, caller));

    ck_assert_int_eq(auth_tokens_parse_list("token-B,token-C", &t, NULL, 0), 0);
    ck_assert_uint_eq(auth_replace(a, t), 2);
    ck_assert_uint_eq(auth_count(a), 2);
    ck_assert(!check_as(a, "token-A", caller));
    ck_assert(check_as(a, "token-B", caller));
    assert_caller_of(caller, "token-B");
    auth_free(a);
}
END_TEST

START_TEST(test_auth_reload_replaces_the_set_from_the_file)
{
    struct auth_tokens *t = NULL;
    struct auth_file_stamp stamp, now;
    struct auth *a;
    size_t count = 0;
    char err[256] = "", caller[REQUEST_CALLER_ID_BYTES];

    write_file(path, "token-A\n");
    ck_assert_int_eq(auth_tokens_read_file(path, &t, NULL, err, sizeof(err)), 0);
    a = auth_new(t);
    write_file(path, "token-B\ntoken-C\n");
    ck_assert_msg(auth_reload_file(a, path, &stamp, &count, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(count, 2);
    ck_assert_int_eq(auth_file_stamp_get(path, &now), 0);
    ck_assert(auth_file_stamp_equal(&stamp, &now));
    ck_assert(!check_as(a, "token-A", caller));
    ck_assert(check_as(a, "token-C", caller));
    auth_free(a);
}
END_TEST

START_TEST(test_auth_reload_keeps_the_old_set_when_the_file_is_bad)
{
    static const char *const bad[] = {"# emptied by mistake\n\n", "token-B\n bad line\n"};
    struct auth_tokens *t = NULL;
    struct auth_file_stamp stamp = {.ino = 42};
    struct auth *a;
    size_t count = 99;
    char err[256], caller[REQUEST_CALLER_ID_BYTES];

    ck_assert_int_eq(auth_tokens_parse_list("token-A", &t, NULL, 0), 0);
    a = auth_new(t);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i]);
        ck_assert_int_eq(auth_reload_file(a, path, &stamp, &count, err, sizeof(err)), -EINVAL);
        ck_assert(check_as(a, "token-A", caller));
        ck_assert(!check_as(a, "token-B", caller));
    }
    unlink(path);
    ck_assert_int_eq(auth_reload_file(a, path, &stamp, &count, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "cannot read '"));
    ck_assert(check_as(a, "token-A", caller));
    ck_assert_uint_eq(auth_count(a), 1);
    /* Outputs are written only on success. */
    ck_assert_uint_eq(count, 99);
    ck_assert_uint_eq(stamp.ino, 42);
    auth_free(a);
}
END_TEST

/* Checkers run while the set flips between {A} and {B}: each check sees one whole set. */
struct flip {
    struct auth *a;
    atomic_bool stop;
    atomic_int bad;
};

static void *checker(void *arg)
{
    struct flip *f = arg;
    char caller[REQUEST_CALLER_ID_BYTES];

    while (!atomic_load(&f->stop)) {
        bool a = check_as(f->a, "flip-A", caller);
        if (a && strlen(caller) != REQUEST_CALLER_ID_BYTES - 1)
            atomic_fetch_add(&f->bad, 1);
        if (check_as(f->a, "neither", caller))
            atomic_fetch_add(&f->bad, 1);
    }
    return NULL;
}

START_TEST(test_auth_checks_run_safely_while_the_set_is_swapped)
{
    struct auth_tokens *t = NULL;
    struct flip f = {.stop = false, .bad = 0};
    pthread_t th[3];

    ck_assert_int_eq(auth_tokens_parse_list("flip-A", &t, NULL, 0), 0);
    f.a = auth_new(t);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, checker, &f), 0);
    for (int i = 0; i < 2000; i++) {
        ck_assert_int_eq(auth_tokens_parse_list(i % 2 ? "flip-A" : "flip-B", &t, NULL, 0), 0);
        auth_replace(f.a, t);
    }
    atomic_store(&f.stop, true);
    for (size_t i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&f.bad), 0);
    ck_assert_uint_eq(auth_count(f.a), 1);
    auth_free(f.a);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *parse = tcase_create("parse");
    TCase *file = tcase_create("file");
    TCase *match = tcase_create("match");
    TCase *live = tcase_create("live");

    tcase_add_test(parse, test_auth_list_skips_empty_entries);
    tcase_add_test(parse, test_auth_list_without_a_token_is_refused);
    tcase_add_test(parse, test_auth_list_bad_token_is_named_by_place_not_bytes);
    tcase_add_test(parse, test_auth_lines_skip_comments_blanks_and_trailing_whitespace);
    tcase_add_test(parse, test_auth_lines_bad_line_is_named_by_number_not_bytes);
    tcase_add_test(parse, test_auth_lines_without_a_token_are_refused);
    tcase_add_test(parse, test_auth_token_length_and_count_are_bounded);
    suite_add_tcase(s, parse);

    tcase_add_checked_fixture(file, setup, teardown);
    tcase_add_test(file, test_auth_file_is_read_with_its_stamp);
    tcase_add_test(file, test_auth_file_errors_name_the_path_and_reason);
    tcase_add_test(file, test_auth_file_stamp_changes_with_the_file);
    suite_add_tcase(s, file);

    tcase_add_test(match, test_auth_match_needs_the_bearer_scheme_and_the_whole_token);
    tcase_add_test(match, test_auth_caller_id_is_the_tokens_not_the_token);
    suite_add_tcase(s, match);

    tcase_add_checked_fixture(live, setup, teardown);
    tcase_add_test(live, test_auth_without_tokens_lets_every_request_in);
    tcase_add_test(live, test_auth_replace_takes_effect_for_the_next_check);
    tcase_add_test(live, test_auth_reload_replaces_the_set_from_the_file);
    tcase_add_test(live, test_auth_reload_keeps_the_old_set_when_the_file_is_bad);
    tcase_add_test(live, test_auth_checks_run_safely_while_the_set_is_swapped);
    suite_add_tcase(s, live);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(auth_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
