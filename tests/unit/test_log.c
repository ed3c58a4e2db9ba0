/*
 * test_log.c — log lines: valid JSON with the fixed fields, escaping,
 * truncation that still yields one JSON object, the text format, and
 * buffers of every size.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/log.h"

/* 2026-11-27T12:34:56.789Z */
#define WALL_MS 1795782896789LL

static json_t *parse_line(const char *line)
{
    json_error_t e;
    return json_loads(line, JSON_REJECT_DUPLICATES, &e);
}

START_TEST(test_log_json_line_has_ts_level_msg_and_fields)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("request_id", "req_1"), LF_I("status", 429), LF_B("ok", 0),
                            LF_S("reason", NULL)};
    size_t n = log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, WALL_MS, LOG_WARN, "retry", f, 4);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_int_eq(buf[n - 1], '\n');
    json_t *o = parse_line(buf);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "ts")), "2026-11-27T12:34:56.789Z");
    ck_assert_str_eq(json_string_value(json_object_get(o, "level")), "warn");
    ck_assert_str_eq(json_string_value(json_object_get(o, "msg")), "retry");
    ck_assert_str_eq(json_string_value(json_object_get(o, "request_id")), "req_1");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "status")), 429);
    ck_assert(json_is_false(json_object_get(o, "ok")));
    ck_assert(json_is_null(json_object_get(o, "reason")));
    json_decref(o);
}
END_TEST

START_TEST(test_log_json_escapes_quotes_and_control_bytes)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("reason", "say \"hi\"\\\n\x01 end")};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, WALL_MS, LOG_INFO, "m", f, 1);
    ck_assert_ptr_null(strchr(buf, '\n') == buf + strlen(buf) - 1 ? NULL : buf);
    json_t *o = parse_line(buf);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "reason")), "say \"hi\"\\\n\x01 end");
    json_decref(o);
}
END_TEST

START_TEST(test_log_overlong_line_is_still_one_json_object)
{
    char buf[256];
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct log_field f[] = {LF_S("reason", big)};
    size_t n = log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, WALL_MS, LOG_INFO, "m", f, 1);
    ck_assert_uint_lt(n, sizeof(buf));
    json_t *o = parse_line(buf);
    ck_assert_ptr_nonnull(o);
    ck_assert(json_is_true(json_object_get(o, "truncated")));
    json_decref(o);
}
END_TEST

START_TEST(test_log_text_format_quotes_values_with_spaces)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("reason", "two words"), LF_I("status", 503)};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_ERROR, "failed", f, 2);
    ck_assert_str_eq(buf,
                     "2026-11-27T12:34:56.789Z error failed reason=\"two words\" status=503\n");
}
END_TEST

START_TEST(test_log_json_replaces_invalid_utf8_and_non_finite_numbers)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("reason", "a\xff\xc3(b\xe2\x82"), LF_D("ratio", NAN),
                            LF_D("rate", INFINITY), LF_S("ok", "\xc3\xa9\xe2\x82\xac")};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, WALL_MS, LOG_INFO, "m\xfe", f, 4);
    json_t *o = parse_line(buf);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "msg")), "m\xef\xbf\xbd");
    ck_assert_str_eq(json_string_value(json_object_get(o, "reason")),
                     "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert(json_is_null(json_object_get(o, "ratio")));
    ck_assert(json_is_null(json_object_get(o, "rate")));
    ck_assert_str_eq(json_string_value(json_object_get(o, "ok")), "\xc3\xa9\xe2\x82\xac");
    json_decref(o);
}
END_TEST

START_TEST(test_log_json_line_is_valid_at_every_buffer_size)
{
    char big[300];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct log_field f[] = {LF_S("request_id", "req_1"), LF_S("reason", big)};
    for (size_t cap = LOG_LINE_MIN_BYTES; cap < 400; cap++) {
        char buf[400];
        size_t n = log_format_line(buf, cap, LOG_FORMAT_JSON, WALL_MS, LOG_ERROR, "m", f, 2);
        ck_assert_uint_gt(n, 0);
        ck_assert_uint_lt(n, cap);
        ck_assert_uint_eq(n, strlen(buf));
        ck_assert_ptr_eq(strchr(buf, '\n'), buf + n - 1);
        json_t *o = parse_line(buf);
        ck_assert_msg(o != NULL, "buflen %zu: not JSON: %s", cap, buf);
        json_decref(o);
    }
}
END_TEST

START_TEST(test_log_format_line_never_writes_past_buflen)
{
    enum log_format formats[] = {LOG_FORMAT_JSON, LOG_FORMAT_TEXT};
    struct log_field f[] = {LF_S("reason", "some reason")};
    for (size_t k = 0; k < 2; k++) {
        for (size_t cap = 0; cap < 200; cap++) {
            char mem[256];
            memset(mem, 'X', sizeof(mem));
            size_t n = log_format_line(mem, cap, formats[k], WALL_MS, LOG_INFO, "m", f, 1);
            for (size_t i = cap; i < sizeof(mem); i++)
                ck_assert_msg(mem[i] == 'X', "format %zu buflen %zu wrote byte %zu", k, cap, i);
            if (cap == 0) {
                ck_assert_uint_eq(n, 0);
                continue;
            }
            ck_assert_uint_lt(n, cap);
            ck_assert_uint_eq(n, strlen(mem));
            if (cap >= LOG_LINE_MIN_BYTES)
                ck_assert_uint_gt(n, 0);
            if (n > 0)
                ck_assert_ptr_eq(strchr(mem, '\n'), mem + n - 1);
        }
    }
}
END_TEST

START_TEST(test_log_parse_level_accepts_names_only)
{
    enum log_level l;
    ck_assert_int_eq(log_parse_level("debug", &l), 0);
    ck_assert_int_eq(l, LOG_DEBUG);
    ck_assert_int_eq(log_parse_level("WARN", &l), 0);
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert_int_lt(log_parse_level("verbose", &l), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_log_json_line_has_ts_level_msg_and_fields);
    tcase_add_test(tc, test_log_json_escapes_quotes_and_control_bytes);
    tcase_add_test(tc, test_log_overlong_line_is_still_one_json_object);
    tcase_add_test(tc, test_log_text_format_quotes_values_with_spaces);
    tcase_add_test(tc, test_log_json_replaces_invalid_utf8_and_non_finite_numbers);
    tcase_add_test(tc, test_log_json_line_is_valid_at_every_buffer_size);
    tcase_add_test(tc, test_log_format_line_never_writes_past_buflen);
    tcase_add_test(tc, test_log_parse_level_accepts_names_only);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
