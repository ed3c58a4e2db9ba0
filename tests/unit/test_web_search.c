/*
 * test_web_search.c — unit tests for the pure parts of the web_search tool:
 * input validation, SearXNG URL building and response parsing.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/web_search.h"

/* Shaped like a real SearXNG /search?format=json answer (fields trimmed, order kept). */
static const char SEARXNG_BODY[] =
    "{\"query\": \"libcurl multi interface\", \"number_of_results\": 0, \"results\": ["
    "{\"url\": \"https://curl.se/libcurl/c/libcurl-multi.html\", \"title\": \"libcurl - multi "
    "interface overview\", \"content\": \"The multi interface offers several abilities that the "
    "easy interface does not.\", \"engine\": \"duckduckgo\", \"parsed_url\": [\"https\", "
    "\"curl.se\", \"/libcurl/c/libcurl-multi.html\", \"\", \"\", \"\"], \"template\": "
    "\"default.html\", \"engines\": [\"duckduckgo\", \"brave\"], \"positions\": [1, 2], "
    "\"score\": 3.0, \"category\": \"general\"},"
    "{\"url\": \"https://everything.curl.dev/transfers/drive/multi\", \"title\": \"Drive with "
    "multi - everything curl\", \"content\": \"The multi API is the asynchronous API.\", "
    "\"engine\": \"brave\", \"score\": 1.0, \"category\": \"general\", \"publishedDate\": null}"
    "], \"answers\": [], \"corrections\": [], \"infoboxes\": [], \"suggestions\": [\"curl "
    "multi example\"], \"unresponsive_engines\": []}";

static struct tool_result result;

static void setup(void)
{
    result = (struct tool_result){0};
}

static void teardown(void)
{
    tool_result_clear(&result);
}

static int parse_str(const char *body, const char *query)
{
    return web_search_parse(body, strlen(body), query, &result);
}

/* Validates the JSON text input; returns what web_search_input returned. */
static int validate(const char *input_json, const char **ret_query, json_t **ret_input)
{
    json_t *input = json_loads(input_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    ck_assert_ptr_nonnull(input);
    *ret_input = input;
    return web_search_input(input, ret_query, &result);
}

static void check_input_rejected(const char *input_json, const char *needle)
{
    const char *query = "untouched";
    json_t *input;

    ck_assert_int_eq(validate(input_json, &query, &input), -EINVAL);
    ck_assert_int_eq(result.kind, TOOL_INPUT_ERROR);
    ck_assert_msg(strstr(result.text, needle) != NULL, "'%s' lacks '%s'", result.text, needle);
    ck_assert_str_eq(query, "untouched");
    json_decref(input);
}

static size_t count_substr(const char *haystack, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        int extra = *s < 0x80             ? 0
                    : (*s & 0xE0) == 0xC0 ? 1
                    : (*s & 0xF0) == 0xE0 ? 2
                    : (*s & 0xF8) == 0xF0 ? 3
                                          : -1;
        if (extra < 0)
            return false;
        s++;
        for (int i = 0; i < extra; i++, s++)
            if ((*s & 0xC0) != 0x80)
                return false;
    }
    return true;
}

START_TEST(test_input_accepts_query_and_borrows_it)
{
    const char *query = NULL;
    json_t *input;

    ck_assert_int_eq(validate("{\"query\": \"weather in Paris\"}", &query, &input), 0);
    ck_assert_str_eq(query, "weather in Paris");
    ck_assert_ptr_eq(query, json_string_value(json_object_get(input, "query")));
    ck_assert_ptr_null(result.text);
    json_decref(input);
}
END_TEST

START_TEST(test_input_accepts_query_at_the_byte_limit)
{
    char json[WEB_SEARCH_MAX_QUERY_BYTES + 32];
    const char *query = NULL;
    json_t *input;

    int n = snprintf(json, sizeof(json), "{\"query\": \"%0*d\"}", WEB_SEARCH_MAX_QUERY_BYTES, 0);
    ck_assert_int_lt(n, (int)sizeof(json));
    ck_assert_int_eq(validate(json, &query, &input), 0);
    ck_assert_uint_eq(strlen(query), WEB_SEARCH_MAX_QUERY_BYTES);
    json_decref(input);
}
END_TEST

START_TEST(test_input_rejects_query_over_the_byte_limit)
{
    char json[WEB_SEARCH_MAX_QUERY_BYTES + 32];
    snprintf(json, sizeof(json), "{\"query\": \"%0*d\"}", WEB_SEARCH_MAX_QUERY_BYTES + 1, 0);
    check_input_rejected(json, "501 bytes");
}
END_TEST

START_TEST(test_input_rejects_missing_wrong_type_and_empty_query)
{
    check_input_rejected("{}", "missing required field 'query'");
    check_input_rejected("{\"query\": 42}", "'query' must be a string");
    check_input_rejected("{\"query\": null}", "'query' must be a string");
    check_input_rejected("{\"query\": \"\"}", "must not be empty");
    check_input_rejected("{\"query\": \" \\t\\n \"}", "must not be empty");
    check_input_rejected("{\"query\": \"a\\u0000b\"}", "NUL");
}
END_TEST

START_TEST(test_input_rejects_non_objects_and_unknown_fields)
{
    check_input_rejected("[\"query\"]", "must be a JSON object");
    check_input_rejected("\"just text\"", "must be a JSON object");
    check_input_rejected("{\"query\": \"x\", \"limit\": 3}", "unknown field 'limit'");
}
END_TEST

START_TEST(test_input_rejects_null_input)
{
    const char *query = "untouched";
    ck_assert_int_eq(web_search_input(NULL, &query, &result), -EINVAL);
    ck_assert_int_eq(result.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(query, "untouched");
}
END_TEST

START_TEST(test_build_url_encodes_query_and_asks_for_json)
{
    char *url = web_search_build_url("http://searxng:8080", "c++ & rust?");
    ck_assert_str_eq(url, "http://searxng:8080/search?q=c%2B%2B%20%26%20rust%3F&format=json");
    free(url);
}
END_TEST

START_TEST(test_build_url_tolerates_one_trailing_slash)
{
    char *url = web_search_build_url("https://search.example/", "Zürich");
    ck_assert_str_eq(url, "https://search.example/search?q=Z%C3%BCrich&format=json");
    free(url);
}
END_TEST

START_TEST(test_build_url_rejects_null_arguments)
{
    errno = 0;
    ck_assert_ptr_null(web_search_build_url(NULL, "q"));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(web_search_build_url("http://x", NULL));
}
END_TEST

START_TEST(test_parse_lists_real_results_numbered)
{
    ck_assert_int_eq(parse_str(SEARXNG_BODY, "libcurl multi interface"), 0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_str_eq(result.text,
                     "Top results for 'libcurl multi interface':\n"
                     "1. libcurl - multi interface overview\n"
                     "   https://curl.se/libcurl/c/libcurl-multi.html\n"
                     "   The multi interface offers several abilities that the easy interface "
                     "does not.\n"
                     "2. Drive with multi - everything curl\n"
                     "   https://everything.curl.dev/transfers/drive/multi\n"
                     "   The multi API is the asynchronous API.");
}
END_TEST

START_TEST(test_parse_keeps_only_the_first_five_results)
{
    char body[4096];
    int n = snprintf(body, sizeof(body), "{\"query\":\"q\",\"results\":[");
    for (int i = 1; i <= 8; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n,
                      "%s{\"title\":\"Title %d\",\"url\":\"https://e.example/%d\",\"content\":"
                      "\"Snippet %d\"}",
                      i > 1 ? "," : "", i, i, i);
    snprintf(body + n, sizeof(body) - (size_t)n, "]}");

    ck_assert_int_eq(parse_str(body, "q"), 0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_ptr_nonnull(strstr(result.text, "5. Title 5\n   https://e.example/5\n   Snippet 5"));
    ck_assert_ptr_null(strstr(result.text, "Title 6"));
    ck_assert_ptr_null(strstr(result.text, "6."));
    ck_assert_uint_eq(count_substr(result.text, "https://"), WEB_SEARCH_MAX_RESULTS);
}
END_TEST

START_TEST(test_parse_empty_results_says_no_results)
{
    ck_assert_int_eq(parse_str("{\"query\":\"zxqv\",\"results\":[],\"answers\":[]}", "zxqv"), 0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_str_eq(result.text, "No results for 'zxqv'.");
}
END_TEST

START_TEST(test_parse_results_without_usable_fields_count_as_none)
{
    ck_assert_int_eq(
        parse_str("{\"results\":[1, \"x\", null, {}, {\"title\":\"  \",\"engine\":\"b\"}]}", "odd"),
        0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_str_eq(result.text, "No results for 'odd'.");
}
END_TEST

START_TEST(test_parse_tolerates_missing_fields)
{
    ck_assert_int_eq(parse_str("{\"results\":[{\"url\":\"https://a.example/\"},"
                               "{\"title\":\"Only a title\"},"
                               "{\"title\":7,\"content\":\"Only content\"}]}",
                               "q"),
                     0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_str_eq(result.text, "Top results for 'q':\n"
                                  "1. (untitled)\n   https://a.example/\n"
                                  "2. Only a title\n"
                                  "3. (untitled)\n   Only content");
}
END_TEST

START_TEST(test_parse_truncates_long_snippet_on_utf8_boundary)
{
    /* 400 two-byte characters: a cut at exactly 300 bytes would fall mid-character for an
     * odd offset, so the content starts with one ASCII byte to make it odd. */
    char body[2048];
    int n = snprintf(body, sizeof(body), "{\"results\":[{\"title\":\"t\",\"content\":\"x");
    for (int i = 0; i < 400; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "é");
    snprintf(body + n, sizeof(body) - (size_t)n, "\"}]}");

    ck_assert_int_eq(parse_str(body, "q"), 0);
    ck_assert(valid_utf8((const unsigned char *)result.text));
    const char *snippet = strstr(result.text, "\n   x");
    ck_assert_ptr_nonnull(snippet);
    snippet += 4;
    size_t len = strlen(snippet);
    ck_assert_uint_le(len, WEB_SEARCH_MAX_SNIPPET_BYTES + 3);
    ck_assert_uint_ge(len, WEB_SEARCH_MAX_SNIPPET_BYTES - 3);
    ck_assert_str_eq(snippet + len - 3, "...");
}
END_TEST

START_TEST(test_parse_flattens_control_characters_in_fields)
{
    ck_assert_int_eq(parse_str("{\"results\":[{\"title\":\"Line one\\n2. Fake result\","
                               "\"url\":\"https://a.example/\",\"content\":\"tab\\there\\u0000"
                               "nul\\r\\n\"}]}",
                               "q"),
                     0);
    ck_assert_str_eq(result.text, "Top results for 'q':\n"
                                  "1. Line one 2. Fake result\n"
                                  "   https://a.example/\n"
                                  "   tab here nul");
}
END_TEST

START_TEST(test_parse_bounds_a_huge_title_and_url)
{
    size_t big = 50000;
    char *body = malloc(2 * big + 64);
    ck_assert_ptr_nonnull(body);
    int n = sprintf(body, "{\"results\":[{\"title\":\"");
    memset(body + n, 'T', big);
    n += (int)big;
    n += sprintf(body + n, "\",\"url\":\"https://");
    memset(body + n, 'u', big);
    n += (int)big;
    sprintf(body + n, "\"}]}");

    ck_assert_int_eq(parse_str(body, "q"), 0);
    ck_assert_uint_lt(strlen(result.text),
                      WEB_SEARCH_MAX_TITLE_BYTES + WEB_SEARCH_MAX_URL_BYTES + 100);
    free(body);
}
END_TEST

START_TEST(test_parse_malformed_json_is_a_system_error)
{
    ck_assert_int_eq(parse_str("<html>502 Bad Gateway</html>", "q"), -EBADMSG);
    ck_assert_int_eq(result.kind, TOOL_SYSTEM_ERROR);
    ck_assert_str_eq(result.text, "search backend returned a malformed response");
}
END_TEST

START_TEST(test_parse_missing_or_wrong_results_is_a_system_error)
{
    static const char *const bodies[] = {"{\"query\":\"q\"}",  "{\"results\":{}}",
                                         "{\"results\":null}", "[]",
                                         "\"results\"",        "{\"results\":["};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        ck_assert_int_eq(parse_str(bodies[i], "q"), -EBADMSG);
        ck_assert_int_eq(result.kind, TOOL_SYSTEM_ERROR);
        ck_assert_str_eq(result.text, "search backend returned a malformed response");
    }
}
END_TEST

START_TEST(test_parse_uses_only_len_bytes_of_body)
{
    /* The valid document ends early; the trailing garbage is outside len. */
    const char body[] = "{\"results\":[]}GARBAGE";
    ck_assert_int_eq(web_search_parse(body, strlen("{\"results\":[]}"), "q", &result), 0);
    ck_assert_str_eq(result.text, "No results for 'q'.");
    ck_assert_int_eq(web_search_parse(body, strlen(body), "q", &result), -EBADMSG);
}
END_TEST

START_TEST(test_parse_refuses_oversized_body)
{
    /* Only the length is examined before refusing, so the buffer need not be that big. */
    const char body[] = "{\"results\":[]}";
    ck_assert_int_eq(web_search_parse(body, WEB_SEARCH_MAX_BODY_BYTES + 1, "q", &result), -EBADMSG);
    ck_assert_int_eq(result.kind, TOOL_SYSTEM_ERROR);
    ck_assert_int_eq(web_search_parse(NULL, 0, "q", &result), -EBADMSG);
}
END_TEST

START_TEST(test_parse_replaces_previous_result_text)
{
    ck_assert_int_eq(parse_str("nope", "q"), -EBADMSG);
    ck_assert_int_eq(parse_str("{\"results\":[]}", NULL), 0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_str_eq(result.text, "No results for ''.");
}
END_TEST

static Suite *web_search_suite(void)
{
    Suite *s = suite_create("web_search");
    TCase *input = tcase_create("input");
    tcase_add_checked_fixture(input, setup, teardown);
    tcase_add_test(input, test_input_accepts_query_and_borrows_it);
    tcase_add_test(input, test_input_accepts_query_at_the_byte_limit);
    tcase_add_test(input, test_input_rejects_query_over_the_byte_limit);
    tcase_add_test(input, test_input_rejects_missing_wrong_type_and_empty_query);
    tcase_add_test(input, test_input_rejects_non_objects_and_unknown_fields);
    tcase_add_test(input, test_input_rejects_null_input);
    suite_add_tcase(s, input);

    TCase *url = tcase_create("url");
    tcase_add_test(url, test_build_url_encodes_query_and_asks_for_json);
    tcase_add_test(url, test_build_url_tolerates_one_trailing_slash);
    tcase_add_test(url, test_build_url_rejects_null_arguments);
    suite_add_tcase(s, url);

    TCase *parse = tcase_create("parse");
    tcase_add_checked_fixture(parse, setup, teardown);
    tcase_add_test(parse, test_parse_lists_real_results_numbered);
    tcase_add_test(parse, test_parse_keeps_only_the_first_five_results);
    tcase_add_test(parse, test_parse_empty_results_says_no_results);
    tcase_add_test(parse, test_parse_results_without_usable_fields_count_as_none);
    tcase_add_test(parse, test_parse_tolerates_missing_fields);
    tcase_add_test(parse, test_parse_truncates_long_snippet_on_utf8_boundary);
    tcase_add_test(parse, test_parse_flattens_control_characters_in_fields);
    tcase_add_test(parse, test_parse_bounds_a_huge_title_and_url);
    tcase_add_test(parse, test_parse_malformed_json_is_a_system_error);
    tcase_add_test(parse, test_parse_missing_or_wrong_results_is_a_system_error);
    tcase_add_test(parse, test_parse_uses_only_len_bytes_of_body);
    tcase_add_test(parse, test_parse_refuses_oversized_body);
    tcase_add_test(parse, test_parse_replaces_previous_result_text);
    suite_add_tcase(s, parse);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(web_search_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
