/*
 * test_log.c — log lines: valid JSON with the fixed fields, escaping,
 * truncation that still yields one JSON object, the text format's escaping
 * (one line per call, every pair parses back), and buffers of every size.
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

/* A text line taken apart by the rules log.h documents: "TS LEVEL MSG KEY=VALUE...\n". */
#define TEXT_MAX_PAIRS 8
struct text_line {
    char msg[LOG_LINE_MAX_BYTES];
    size_t n;
    struct {
        char key[LOG_LINE_MAX_BYTES];
        char value[LOG_LINE_MAX_BYTES];
    } pairs[TEXT_MAX_PAIRS];
};

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes one token at p into out: a quoted string with the escapes \\ \" \n \r \t \xHH, or a
   bare run of printable ASCII other than '"', '\\' and '=' that ends at a space, '=' or the
   newline. Returns the byte after the token; NULL when the token is malformed. */
static const char *text_token(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p != '"') {
        for (; *p != ' ' && *p != '=' && *p != '\n'; p++) {
            unsigned char c = (unsigned char)*p;
            if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || n + 1 >= cap)
                return NULL;
            out[n++] = (char)c;
        }
        out[n] = '\0';
        return n ? p : NULL;
    }
    for (p++; *p != '"'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || n + 1 >= cap)
            return NULL;
        if (c == '\\') {
            p++;
            if (*p == '\\' || *p == '"')
                c = (unsigned char)*p;
            else if (*p == 'n')
                c = '\n';
            else if (*p == 'r')
                c = '\r';
            else if (*p == 't')
                c = '\t';
            else if (*p == 'x' && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0) {
                c = (unsigned char)(hex_digit(p[1]) * 16 + hex_digit(p[2]));
                p += 2;
            } else
                return NULL;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return p + 1;
}

/* 0 when line is exactly one well-formed text line (ts, level, msg, pairs, one '\n' at the end,
   then the NUL), its parts decoded into *ret; -1 otherwise. */
static int parse_text_line(const char *line, struct text_line *ret)
{
    char level[16];
    const char *p = line;
    if (strlen(line) < 25 || line[24] != ' ')
        return -1;
    p = text_token(line + 25, level, sizeof(level));
    if (!p || *p != ' ')
        return -1;
    p = text_token(p + 1, ret->msg, sizeof(ret->msg));
    for (ret->n = 0; p && *p == ' ' && ret->n < TEXT_MAX_PAIRS; ret->n++) {
        p = text_token(p + 1, ret->pairs[ret->n].key, sizeof(ret->pairs[0].key));
        if (!p || *p != '=')
            return -1;
        p = text_token(p + 1, ret->pairs[ret->n].value, sizeof(ret->pairs[0].value));
    }
    return p && p[0] == '\n' && p[1] == '\0' ? 0 : -1;
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

START_TEST(test_log_optional_string_is_left_out_when_null)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("request_id", "req_1"), LF_SO("trace_id", NULL),
                            LF_SO("span", "abc"), LF_I("n", 1)};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, WALL_MS, LOG_INFO, "m", f, 4);
    json_t *o = parse_line(buf);
    ck_assert_ptr_nonnull(o);
    ck_assert_ptr_null(json_object_get(o, "trace_id"));
    ck_assert_str_eq(json_string_value(json_object_get(o, "span")), "abc");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "n")), 1);
    json_decref(o);
    log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, "m", f, 4);
    ck_assert_ptr_null(strstr(buf, "trace_id"));
    ck_assert_ptr_nonnull(strstr(buf, " request_id=req_1 span=abc n=1\n"));
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

START_TEST(test_log_text_newline_and_quote_cannot_forge_a_line_or_field)
{
    const char *evil = "\"\n level=error msg=forged";
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("reason", evil), LF_I("status", 200)};
    size_t n = log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, "m", f, 2);
    ck_assert_ptr_eq(strchr(buf, '\n'), buf + n - 1);
    ck_assert_str_eq(buf, "2026-11-27T12:34:56.789Z info m "
                          "reason=\"\\\"\\n level=error msg=forged\" status=200\n");
    struct text_line t;
    ck_assert_int_eq(parse_text_line(buf, &t), 0);
    ck_assert_uint_eq(t.n, 2);
    ck_assert_str_eq(t.pairs[0].key, "reason");
    ck_assert_str_eq(t.pairs[0].value, evil);
    ck_assert_str_eq(t.pairs[1].key, "status");
}
END_TEST

START_TEST(test_log_text_backslash_before_quote_cannot_close_the_value)
{
    const char *evil = "a\\\" level=error msg=forged";
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("reason", evil)};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, "m", f, 1);
    struct text_line t;
    ck_assert_int_eq(parse_text_line(buf, &t), 0);
    ck_assert_uint_eq(t.n, 1);
    ck_assert_str_eq(t.pairs[0].value, evil);
}
END_TEST

START_TEST(test_log_text_backslashes_quotes_and_separators_round_trip)
{
    static const char *const values[] = {
        "C:\\dir\\", "say \"hi\"", "\\\\\"", "a=b", "=", "", "-", "\\x41", "tab\there", "ok",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char buf[LOG_LINE_MAX_BYTES];
        struct log_field f[] = {LF_S("k", values[i]), LF_S("after", "x")};
        log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, values[i], f, 2);
        struct text_line t;
        ck_assert_msg(parse_text_line(buf, &t) == 0, "value %zu: %s", i, buf);
        ck_assert_str_eq(t.msg, values[i]);
        ck_assert_uint_eq(t.n, 2);
        ck_assert_str_eq(t.pairs[0].value, values[i]);
        ck_assert_str_eq(t.pairs[1].value, "x");
    }
}
END_TEST

START_TEST(test_log_text_null_value_differs_from_a_dash)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("a", NULL), LF_S("b", "-"), LF_S("c", "")};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, "m", f, 3);
    ck_assert_str_eq(buf, "2026-11-27T12:34:56.789Z info m a=- b=\"-\" c=\"\"\n");
}
END_TEST

START_TEST(test_log_text_control_bytes_and_invalid_utf8_are_escaped)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {
        LF_S("ctl", "\x01\t\r\n\x1b[31m\x7f"),
        LF_S("bad", "\xff\xc3(\xe2\x82"),
        LF_S("c1", "\xc2\x85\xe2\x80\xa8"), /* NEL, LINE SEPARATOR */
        LF_S("utf8", "\xc3\xa9t\xc3\xa9"),
    };
    size_t n = log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, "m", f, 4);
    for (size_t i = 0; i + 1 < n; i++)
        ck_assert_msg((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f, "byte %zu", i);
    ck_assert_str_eq(buf, "2026-11-27T12:34:56.789Z info m "
                          "ctl=\"\\x01\\t\\r\\n\\x1b[31m\\x7f\" bad=\"\\xff\\xc3(\\xe2\\x82\" "
                          "c1=\"\\xc2\\x85\\xe2\\x80\\xa8\" utf8=\"\xc3\xa9t\xc3\xa9\"\n");
    struct text_line t;
    ck_assert_int_eq(parse_text_line(buf, &t), 0);
    for (size_t i = 0; i < 4; i++)
        ck_assert_str_eq(t.pairs[i].value, f[i].v.s);
}
END_TEST

START_TEST(test_log_text_msg_and_keys_are_escaped_like_values)
{
    char buf[LOG_LINE_MAX_BYTES];
    struct log_field f[] = {LF_S("k ey=\n", "v"), LF_I("", 1)};
    log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_INFO, "two words=x\n", f, 2);
    ck_assert_str_eq(buf, "2026-11-27T12:34:56.789Z info \"two words=x\\n\" "
                          "\"k ey=\\n\"=v \"\"=1\n");
    struct text_line t;
    ck_assert_int_eq(parse_text_line(buf, &t), 0);
    ck_assert_str_eq(t.msg, "two words=x\n");
    ck_assert_str_eq(t.pairs[0].key, "k ey=\n");
    ck_assert_str_eq(t.pairs[1].key, "");
}
END_TEST

START_TEST(test_log_text_truncated_line_is_one_well_formed_line)
{
    /* Quotes, backslashes and newlines in the long value put escapes at every cut point. */
    char big[600];
    for (size_t i = 0; i < sizeof(big) - 1; i++)
        big[i] = "a\"\\\n "[i % 5];
    big[sizeof(big) - 1] = '\0';
    struct log_field f[] = {LF_S("request_id", "req_1"), LF_S("reason", big), LF_I("status", 1)};
    char buf[256];
    size_t n = log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, WALL_MS, LOG_WARN, "m", f, 3);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_str_eq(buf, "2026-11-27T12:34:56.789Z warn m request_id=req_1 truncated=true\n");

    /* At every size: nothing, or one line whose pairs are a prefix of the fields, then
       truncated=true when any was dropped. */
    for (size_t cap = 0; cap < 1400; cap++) {
        char line[1400];
        n = log_format_line(line, cap, LOG_FORMAT_TEXT, WALL_MS, LOG_WARN, big, f, 3);
        if (cap >= LOG_LINE_MIN_BYTES)
            ck_assert_uint_gt(n, 0);
        if (n == 0)
            continue;
        ck_assert_uint_lt(n, cap);
        struct text_line t;
        ck_assert_msg(parse_text_line(line, &t) == 0, "buflen %zu: %s", cap, line);
        ck_assert_uint_gt(t.n, 0);
        bool cut = strcmp(t.pairs[t.n - 1].key, "truncated") == 0;
        size_t kept = cut ? t.n - 1 : t.n;
        if (cut)
            ck_assert_str_eq(t.pairs[t.n - 1].value, "true");
        else
            ck_assert_uint_eq(t.n, 3);
        ck_assert(strcmp(t.msg, big) == 0 ||
                  (kept == 0 && strcmp(t.msg, "log line truncated") == 0));
        for (size_t i = 0; i < kept; i++) {
            ck_assert_str_eq(t.pairs[i].key, f[i].key);
            if (f[i].type == LOGF_STR)
                ck_assert_str_eq(t.pairs[i].value, f[i].v.s);
        }
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
    tcase_add_test(tc, test_log_optional_string_is_left_out_when_null);
    tcase_add_test(tc, test_log_overlong_line_is_still_one_json_object);
    tcase_add_test(tc, test_log_text_format_quotes_values_with_spaces);
    tcase_add_test(tc, test_log_json_replaces_invalid_utf8_and_non_finite_numbers);
    tcase_add_test(tc, test_log_json_line_is_valid_at_every_buffer_size);
    tcase_add_test(tc, test_log_text_newline_and_quote_cannot_forge_a_line_or_field);
    tcase_add_test(tc, test_log_text_backslash_before_quote_cannot_close_the_value);
    tcase_add_test(tc, test_log_text_backslashes_quotes_and_separators_round_trip);
    tcase_add_test(tc, test_log_text_null_value_differs_from_a_dash);
    tcase_add_test(tc, test_log_text_control_bytes_and_invalid_utf8_are_escaped);
    tcase_add_test(tc, test_log_text_msg_and_keys_are_escaped_like_values);
    tcase_add_test(tc, test_log_text_truncated_line_is_one_well_formed_line);
    tcase_add_test(tc, test_log_format_line_never_writes_past_buflen);
    tcase_add_test(tc, test_log_parse_level_accepts_names_only);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
