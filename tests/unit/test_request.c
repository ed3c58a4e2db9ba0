/*
 * test_request.c — unit tests for request.c: POST /v1/agent body validation
 * (every 400 case of docs/API.md), the header validators and the JSON error
 * body. Strict UTF-8 itself is tested in test_text.c.
 */
#include "agentd/request.h"

#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/text.h"

#define ITER_CAP    10
#define TIMEOUT_CAP 120000

/* Parses body with the test caps; err receives the message. */
static int parse(const char *body, size_t len, struct agent_request *ret, char *err, size_t errlen)
{
    return request_parse(body, len, ITER_CAP, TIMEOUT_CAP, ret, err, errlen);
}

/* Returns a malloc'd {"input":"aaa…"} whose input is n bytes long. */
static char *body_with_input_bytes(size_t n)
{
    char *b = malloc(n + 16);

    ck_assert_ptr_nonnull(b);
    memcpy(b, "{\"input\":\"", 10);
    memset(b + 10, 'a', n);
    memcpy(b + 10 + n, "\"}", 3);
    return b;
}

/* --- rejected bodies: every one must fail with a message starting as given --- */

struct bad_case {
    const char *name;
    const char *body; /* NUL-terminated; raw bytes allowed */
    const char *prefix;
};

static const struct bad_case bad_cases[] = {
    {"bad JSON", "{\"input\":", "body: not valid JSON"},
    {"trailing garbage", "{\"input\":\"a\"} x", "body: not valid JSON"},
    {"trailing comma", "{\"input\":\"a\",}", "body: not valid JSON"},
    {"body is an array", "[{\"input\":\"a\"}]", "body: expected a JSON object, got an array"},
    {"body is a string", "\"a\"", "body: expected a JSON object, got a string"},
    {"body is null", "null", "body: expected a JSON object, got null"},
    {"unknown field", "{\"input\":\"a\",\"model\":\"x\"}", "model: unknown field"},
    {"unknown field first", "{\"model\":true,\"input\":\"a\"}", "model: unknown field"},
    {"stream is a string", "{\"input\":\"a\",\"stream\":\"yes\"}",
     "stream: expected true or false"},
    {"stream is null", "{\"input\":\"a\",\"stream\":null}", "stream: expected true or false"},
    {"input is a number", "{\"input\":5}",
     "input: expected a string of 1..100000 bytes, got an integer"},
    {"input is null", "{\"input\":null}", "input: expected a string of 1..100000 bytes, got null"},
    {"input is an array", "{\"input\":[\"a\"]}",
     "input: expected a string of 1..100000 bytes, got an array"},
    {"input invalid UTF-8", "{\"input\":\"caf\xc3\"}", "input: not valid UTF-8"},
    {"input overlong encoding", "{\"input\":\"\xc0\xaf\"}", "input: not valid UTF-8"},
    {"input surrogate", "{\"input\":\"\xed\xa0\x80\"}", "input: not valid UTF-8"},
    {"conversation_id invalid UTF-8", "{\"input\":\"a\",\"conversation_id\":\"c\xff\"}",
     "conversation_id: not valid UTF-8"},
    {"priority invalid UTF-8", "{\"input\":\"a\",\"priority\":\"\xfe\"}",
     "priority: not valid UTF-8"},
    {"field name invalid UTF-8", "{\"inp\xffut\":\"a\"}", "body: a field name is not valid UTF-8"},
    {"invalid UTF-8 outside strings", "{\"input\":\"a\" \xff}", "body: not valid UTF-8"},
    {"missing input", "{}", "input: required field is missing"},
    {"missing input with other fields", "{\"priority\":\"low\"}",
     "input: required field is missing"},
    {"empty input", "{\"input\":\"\"}",
     "input: expected a string of 1..100000 bytes, got an empty string"},
    {"NUL in input", "{\"input\":\"a\\u0000b\"}", "input: must not contain NUL"},
    {"duplicate input", "{\"input\":\"a\",\"input\":\"b\"}", "input: duplicate key"},
    {"duplicate max_iterations", "{\"input\":\"a\",\"max_iterations\":1,\"max_iterations\":2}",
     "max_iterations: duplicate key"},
    {"max_iterations 0", "{\"input\":\"a\",\"max_iterations\":0}",
     "max_iterations: expected an integer 1..10, got 0"},
    {"max_iterations cap+1", "{\"input\":\"a\",\"max_iterations\":11}",
     "max_iterations: expected an integer 1..10, got 11"},
    {"max_iterations negative", "{\"input\":\"a\",\"max_iterations\":-1}",
     "max_iterations: expected an integer 1..10, got -1"},
    {"max_iterations real", "{\"input\":\"a\",\"max_iterations\":5.0}",
     "max_iterations: expected an integer 1..10, got a real number"},
    {"max_iterations string", "{\"input\":\"a\",\"max_iterations\":\"5\"}",
     "max_iterations: expected an integer 1..10, got a string"},
    {"timeout_ms 99", "{\"input\":\"a\",\"timeout_ms\":99}",
     "timeout_ms: expected an integer 100..120000, got 99"},
    {"timeout_ms cap+1", "{\"input\":\"a\",\"timeout_ms\":120001}",
     "timeout_ms: expected an integer 100..120000, got 120001"},
    {"timeout_ms boolean", "{\"input\":\"a\",\"timeout_ms\":true}",
     "timeout_ms: expected an integer 100..120000, got a boolean"},
    {"priority unknown", "{\"input\":\"a\",\"priority\":\"urgent\"}",
     "priority: expected \"high\" or \"low\", got \"urgent\""},
    {"priority wrong case", "{\"input\":\"a\",\"priority\":\"HIGH\"}",
     "priority: expected \"high\" or \"low\", got \"HIGH\""},
    {"priority number", "{\"input\":\"a\",\"priority\":1}",
     "priority: expected \"high\" or \"low\", got an integer"},
    {"conversation_id empty", "{\"input\":\"a\",\"conversation_id\":\"\"}",
     "conversation_id: expected a string of 1..128 characters of [A-Za-z0-9._:-], got an empty "
     "string"},
    {"conversation_id with space", "{\"input\":\"a\",\"conversation_id\":\"a b\"}",
     "conversation_id: expected a string of 1..128 characters of [A-Za-z0-9._:-], got a "
     "character outside that set"},
    {"conversation_id with slash", "{\"input\":\"a\",\"conversation_id\":\"../x\"}",
     "conversation_id: expected"},
    {"conversation_id non-ASCII", "{\"input\":\"a\",\"conversation_id\":\"caf\xc3\xa9\"}",
     "conversation_id: expected"},
    {"conversation_id number", "{\"input\":\"a\",\"conversation_id\":7}",
     "conversation_id: expected a string of 1..128 characters of [A-Za-z0-9._:-], got an "
     "integer"},
    {"conversation_id NUL", "{\"input\":\"a\",\"conversation_id\":\"a\\u0000\"}",
     "conversation_id: must not contain NUL"},
};

START_TEST(test_request_rejects_bad_body_with_message_naming_the_field)
{
    const struct bad_case *c = &bad_cases[_i];
    struct agent_request req = {.input = (char *)"untouched"};
    char err[256] = "";

    int r = parse(c->body, strlen(c->body), &req, err, sizeof(err));

    ck_assert_msg(r == -EINVAL, "%s: rc %d", c->name, r);
    ck_assert_msg(strncmp(err, c->prefix, strlen(c->prefix)) == 0, "%s: got '%s', want '%s…'",
                  c->name, err, c->prefix);
    ck_assert_msg(text_utf8_valid(err, strlen(err)), "%s: message not UTF-8", c->name);
    ck_assert_msg(strcmp(req.input, "untouched") == 0, "%s: ret written on failure", c->name);
}
END_TEST

START_TEST(test_request_rejects_empty_body)
{
    struct agent_request req;
    char err[128];

    ck_assert_int_eq(parse("", 0, &req, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "body: expected a JSON object, got an empty body");
}
END_TEST

START_TEST(test_request_input_of_100000_bytes_is_accepted)
{
    char *body = body_with_input_bytes(AGENT_INPUT_MAX_BYTES);
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(req.input), AGENT_INPUT_MAX_BYTES);
    agent_request_clear(&req);
    free(body);
}
END_TEST

START_TEST(test_request_input_of_100001_bytes_is_rejected)
{
    char *body = body_with_input_bytes(AGENT_INPUT_MAX_BYTES + 1);
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "input: expected a string of 1..100000 bytes, got 100001 bytes");
    free(body);
}
END_TEST

START_TEST(test_request_minimal_body_gets_defaults)
{
    const char body[] = " {\"input\" : \"hello\"} \n";
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    ck_assert_str_eq(req.input, "hello");
    ck_assert_ptr_null(req.conversation_id);
    ck_assert_int_eq(req.max_iterations, 0);
    ck_assert_int_eq(req.timeout_ms, 0);
    ck_assert_int_eq(req.priority, AGENT_PRIORITY_HIGH);
    ck_assert(!req.stream);
    agent_request_clear(&req);
}
END_TEST

START_TEST(test_request_accepts_every_field_at_its_lower_bound)
{
    const char body[] = "{\"input\":\"x\",\"conversation_id\":\"c-1.a_b:Z\",\"max_iterations\":1,"
                        "\"timeout_ms\":100,\"priority\":\"low\",\"stream\":true}";
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    ck_assert_str_eq(req.conversation_id, "c-1.a_b:Z");
    ck_assert_int_eq(req.max_iterations, 1);
    ck_assert_int_eq(req.timeout_ms, 100);
    ck_assert_int_eq(req.priority, AGENT_PRIORITY_LOW);
    ck_assert(req.stream);
    agent_request_clear(&req);
}
END_TEST

START_TEST(test_request_accepts_integers_at_the_caps)
{
    const char body[] = "{\"priority\":\"high\",\"timeout_ms\":120000,\"max_iterations\":10,"
                        "\"input\":\"x\"}";
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    ck_assert_int_eq(req.max_iterations, ITER_CAP);
    ck_assert_int_eq(req.timeout_ms, TIMEOUT_CAP);
    ck_assert_int_eq(req.priority, AGENT_PRIORITY_HIGH);
    agent_request_clear(&req);
}
END_TEST

START_TEST(test_request_decodes_escapes_and_keeps_multibyte_input)
{
    const char body[] = "{\"input\":\"caf\\u00e9 \xe2\x82\xac \xf0\x9d\x84\x9e \\\"q\\\"\"}";
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    ck_assert_str_eq(req.input, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e \"q\"");
    agent_request_clear(&req);
}
END_TEST

START_TEST(test_request_conversation_id_of_128_ok_and_129_rejected)
{
    char body[256], id[130], err[256] = "";
    struct agent_request req;

    memset(id, 'k', 128);
    id[128] = '\0';
    snprintf(body, sizeof(body), "{\"input\":\"a\",\"conversation_id\":\"%s\"}", id);
    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    ck_assert_str_eq(req.conversation_id, id);
    agent_request_clear(&req);

    strcat(id, "k");
    snprintf(body, sizeof(body), "{\"input\":\"a\",\"conversation_id\":\"%s\"}", id);
    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "conversation_id: expected"));
    ck_assert_ptr_nonnull(strstr(err, "got 129 bytes"));
}
END_TEST

START_TEST(test_request_duplicate_long_key_is_named)
{
    const char body[] = "{\"input\":\"a\",\"a_rather_long_unknown_key\":1,"
                        "\"a_rather_long_unknown_key\":2}";
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "a_rather_long_unknown_key: duplicate key (each field may appear once)");
}
END_TEST

START_TEST(test_request_unknown_field_name_is_quoted_bounded)
{
    char body[400], key[301], err[256] = "";
    struct agent_request req;

    memset(key, 'z', 300);
    key[300] = '\0';
    snprintf(body, sizeof(body), "{\"input\":\"a\",\"%s\":1}", key);
    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "zzz...: unknown field"));
    ck_assert_uint_lt(strlen(err), 160);
}
END_TEST

START_TEST(test_request_cap_below_minimum_rejects_the_field)
{
    const char body[] = "{\"input\":\"a\",\"max_iterations\":1}";
    struct agent_request req;
    char err[128] = "";

    ck_assert_int_eq(request_parse(body, strlen(body), 0, TIMEOUT_CAP, &req, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "max_iterations: "));
}
END_TEST

START_TEST(test_request_truncated_message_stays_valid_utf8)
{
    const char body[] = "{\"input\":\"a\",\"priority\":\"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}";
    struct agent_request req;
    char err[80];

    for (size_t errlen = 1; errlen <= sizeof(err); errlen++) {
        memset(err, 'X', sizeof(err));
        ck_assert_int_eq(parse(body, strlen(body), &req, err, errlen), -EINVAL);
        ck_assert_uint_lt(strlen(err), errlen);
        ck_assert_msg(text_utf8_valid(err, strlen(err)), "errlen %zu: '%s'", errlen, err);
    }
}
END_TEST

START_TEST(test_request_null_err_buffer_is_allowed)
{
    struct agent_request req;

    ck_assert_int_eq(request_parse("{}", 2, ITER_CAP, TIMEOUT_CAP, &req, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_request_clear_zeroes_and_accepts_null)
{
    struct agent_request req;
    char err[64];

    const char body[] = "{\"input\":\"a\",\"conversation_id\":\"c\",\"priority\":\"low\"}";

    ck_assert_int_eq(parse(body, strlen(body), &req, err, sizeof(err)), 0);
    agent_request_clear(&req);
    ck_assert_ptr_null(req.input);
    ck_assert_ptr_null(req.conversation_id);
    ck_assert_int_eq(req.priority, 0);
    agent_request_clear(&req); /* twice is fine */
    agent_request_clear(NULL);
}
END_TEST

/* --- header validators --- */

START_TEST(test_request_id_valid_table)
{
    char max[130];

    memset(max, '9', 128);
    max[128] = '\0';
    ck_assert(request_id_valid("abc"));
    ck_assert(request_id_valid("A-z_0.9:x"));
    ck_assert(request_id_valid(max));
    strcat(max, "9");
    ck_assert(!request_id_valid(max));
    ck_assert(!request_id_valid(""));
    ck_assert(!request_id_valid(NULL));
    ck_assert(!request_id_valid("a b"));
    ck_assert(!request_id_valid("a/b"));
    ck_assert(!request_id_valid("a\n"));
    ck_assert(!request_id_valid("caf\xc3\xa9"));
    ck_assert(request_conversation_id_valid("conv:42"));
    ck_assert(!request_conversation_id_valid("conv 42"));
    ck_assert(!request_conversation_id_valid(NULL));
}
END_TEST

START_TEST(test_request_idempotency_key_valid_table)
{
    char key[257];

    memset(key, '~', 255);
    key[255] = '\0';
    ck_assert(request_idempotency_key_valid("k"));
    ck_assert(request_idempotency_key_valid("order 42 / retry #1"));
    ck_assert(request_idempotency_key_valid(key));
    strcat(key, "~");
    ck_assert(!request_idempotency_key_valid(key));
    ck_assert(!request_idempotency_key_valid(""));
    ck_assert(!request_idempotency_key_valid(NULL));
    ck_assert(!request_idempotency_key_valid("tab\there"));
    ck_assert(!request_idempotency_key_valid("del\x7f"));
    ck_assert(!request_idempotency_key_valid("caf\xc3\xa9"));
}
END_TEST

struct ct_case {
    const char *value;
    bool json;
};

static const struct ct_case ct_cases[] = {
    {"application/json", true},
    {"APPLICATION/JSON", true},
    {"Application/Json", true},
    {"application/json; charset=utf-8", true},
    {"application/json;charset=UTF-8", true},
    {"application/json; charset=utf8", true},
    {"application/json ; charset=\"utf-8\"", true},
    {"  application/json\t", true},
    {"application/json; foo=bar; charset=utf-8", true},
    {"application/json;", true},
    {"application/json; charset=iso-8859-1", false},
    {"application/json; charset=\"utf-8", false},
    {"application/json; charset", false},
    {"application/json garbage", false},
    {"application/jsonx", false},
    {"application/json-patch+json", false},
    {"text/json", false},
    {"text/plain", false},
    {"application/x-www-form-urlencoded", false},
    {"", false},
    {"application/", false},
};

START_TEST(test_request_content_type_is_json_table)
{
    const struct ct_case *c = &ct_cases[_i];

    ck_assert_msg(request_content_type_is_json(c->value) == c->json, "'%s'", c->value);
}
END_TEST

START_TEST(test_request_content_type_null_is_not_json)
{
    ck_assert(!request_content_type_is_json(NULL));
}
END_TEST

/* --- error body --- */

START_TEST(test_request_error_body_exact_shape)
{
    char *b = request_error_body("invalid_request", "input: required", "req-1", 0);

    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(b, "{\"error\":{\"type\":\"invalid_request\",\"message\":\"input: required\"},"
                        "\"request_id\":\"req-1\"}");
    free(b);
}
END_TEST

START_TEST(test_request_error_body_adds_upstream_status_when_positive)
{
    char *b = request_error_body("upstream_error", "the LLM API refused the request", "r", 401);
    json_t *root;

    ck_assert_ptr_nonnull(b);
    root = json_loads(b, 0, NULL);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "error"), "type")),
                     "upstream_error");
    ck_assert_str_eq(json_string_value(json_object_get(root, "request_id")), "r");
    ck_assert(json_is_integer(json_object_get(root, "upstream_status")));
    ck_assert_int_eq(json_integer_value(json_object_get(root, "upstream_status")), 401);
    ck_assert_uint_eq(json_object_size(root), 3);
    json_decref(root);
    free(b);
}
END_TEST

START_TEST(test_request_error_body_repairs_invalid_utf8_message)
{
    char *b = request_error_body("invalid_request", "bad \xff byte", NULL, 0);
    json_t *root;

    ck_assert_ptr_nonnull(b);
    root = json_loads(b, 0, NULL);
    ck_assert_ptr_nonnull(root);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "error"), "message")),
                     "bad \xef\xbf\xbd byte");
    ck_assert_ptr_null(json_object_get(root, "request_id"));
    ck_assert_ptr_null(json_object_get(root, "upstream_status"));
    json_decref(root);
    free(b);
}
END_TEST

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *body = tcase_create("body");
    TCase *hdr = tcase_create("headers");
    TCase *err = tcase_create("error_body");

    tcase_add_loop_test(body, test_request_rejects_bad_body_with_message_naming_the_field, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(body, test_request_rejects_empty_body);
    tcase_add_test(body, test_request_input_of_100000_bytes_is_accepted);
    tcase_add_test(body, test_request_input_of_100001_bytes_is_rejected);
    tcase_add_test(body, test_request_minimal_body_gets_defaults);
    tcase_add_test(body, test_request_accepts_every_field_at_its_lower_bound);
    tcase_add_test(body, test_request_accepts_integers_at_the_caps);
    tcase_add_test(body, test_request_decodes_escapes_and_keeps_multibyte_input);
    tcase_add_test(body, test_request_conversation_id_of_128_ok_and_129_rejected);
    tcase_add_test(body, test_request_duplicate_long_key_is_named);
    tcase_add_test(body, test_request_unknown_field_name_is_quoted_bounded);
    tcase_add_test(body, test_request_cap_below_minimum_rejects_the_field);
    tcase_add_test(body, test_request_truncated_message_stays_valid_utf8);
    tcase_add_test(body, test_request_null_err_buffer_is_allowed);
    tcase_add_test(body, test_request_clear_zeroes_and_accepts_null);
    suite_add_tcase(s, body);

    tcase_add_test(hdr, test_request_id_valid_table);
    tcase_add_test(hdr, test_request_idempotency_key_valid_table);
    tcase_add_loop_test(hdr, test_request_content_type_is_json_table, 0,
                        (int)(sizeof(ct_cases) / sizeof(ct_cases[0])));
    tcase_add_test(hdr, test_request_content_type_null_is_not_json);
    suite_add_tcase(s, hdr);

    tcase_add_test(err, test_request_error_body_exact_shape);
    tcase_add_test(err, test_request_error_body_adds_upstream_status_when_positive);
    tcase_add_test(err, test_request_error_body_repairs_invalid_utf8_message);
    suite_add_tcase(s, err);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(request_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
