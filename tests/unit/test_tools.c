/*
 * test_tools.c — unit tests for the tool registry (names, schemas sent to the
 * model, criticality parsing) and for URL component encoding.
 */
#include <check.h>
#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/tools.h"
#include "agentd/urlenc.h"

/* The tool object named name in a tools array, or NULL. */
static json_t *find_tool(json_t *tools, const char *name)
{
    size_t i;
    json_t *tool;

    json_array_foreach(tools, i, tool)
    {
        if (strcmp(json_string_value(json_object_get(tool, "name")), name) == 0)
            return tool;
    }
    return NULL;
}

/* Checks the shape shared by every tool: top-level keys, a non-trivial description and an
 * object schema that forbids extra properties; returns the schema. */
static json_t *check_common_shape(json_t *tool)
{
    ck_assert_ptr_nonnull(tool);
    ck_assert_uint_eq(json_object_size(tool), 3);
    ck_assert(json_is_string(json_object_get(tool, "name")));
    const char *description = json_string_value(json_object_get(tool, "description"));
    ck_assert_ptr_nonnull(description);
    ck_assert_uint_gt(strlen(description), 40);

    json_t *schema = json_object_get(tool, "input_schema");
    ck_assert(json_is_object(schema));
    ck_assert_uint_eq(json_object_size(schema), 4);
    ck_assert_str_eq(json_string_value(json_object_get(schema, "type")), "object");
    ck_assert(json_is_false(json_object_get(schema, "additionalProperties")));
    ck_assert(json_is_object(json_object_get(schema, "properties")));
    ck_assert(json_is_array(json_object_get(schema, "required")));
    return schema;
}

/* Checks that property prop is a described string and returns it. */
static json_t *check_string_property(json_t *schema, const char *prop)
{
    json_t *p = json_object_get(json_object_get(schema, "properties"), prop);
    ck_assert_msg(json_is_object(p), "property %s missing", prop);
    ck_assert_str_eq(json_string_value(json_object_get(p, "type")), "string");
    ck_assert(json_is_string(json_object_get(p, "description")));
    return p;
}

static void check_required(json_t *schema, const char *only)
{
    json_t *required = json_object_get(schema, "required");
    ck_assert_uint_eq(json_array_size(required), 1);
    ck_assert_str_eq(json_string_value(json_array_get(required, 0)), only);
}

/* A tool whose whole input is one required string property. */
static void check_single_string_tool(json_t *tools, const char *name, const char *prop)
{
    json_t *schema = check_common_shape(find_tool(tools, name));
    ck_assert_uint_eq(json_object_size(json_object_get(schema, "properties")), 1);
    json_t *p = check_string_property(schema, prop);
    ck_assert_uint_eq(json_object_size(p), 2);
    check_required(schema, prop);
}

START_TEST(test_tool_names_are_the_ones_the_model_sees)
{
    ck_assert_str_eq(tool_name(TOOL_CALCULATOR), "calculator");
    ck_assert_str_eq(tool_name(TOOL_SAVE_NOTE), "save_note");
    ck_assert_str_eq(tool_name(TOOL_WEB_SEARCH), "web_search");
    ck_assert_str_eq(tool_name(TOOL_GET_WEATHER), "get_weather");
    ck_assert_ptr_null(tool_name(TOOL__COUNT));
    ck_assert_ptr_null(tool_name((enum tool_id) - 1));
}
END_TEST

START_TEST(test_tool_lookup_round_trips_every_name)
{
    for (int i = 0; i < TOOL__COUNT; i++) {
        enum tool_id id = TOOL__COUNT;
        ck_assert_int_eq(tool_lookup(tool_name((enum tool_id)i), &id), 0);
        ck_assert_int_eq(id, i);
    }
}
END_TEST

START_TEST(test_tool_lookup_rejects_unknown_names_without_writing)
{
    enum tool_id id = TOOL_GET_WEATHER;
    ck_assert_int_eq(tool_lookup("Calculator", &id), -ENOENT);
    ck_assert_int_eq(tool_lookup("calc", &id), -ENOENT);
    ck_assert_int_eq(tool_lookup("calculatorx", &id), -ENOENT);
    ck_assert_int_eq(tool_lookup("", &id), -ENOENT);
    ck_assert_int_eq(tool_lookup(NULL, &id), -ENOENT);
    ck_assert_int_eq(id, TOOL_GET_WEATHER);
}
END_TEST

START_TEST(test_definitions_list_every_tool_in_id_order)
{
    json_t *tools = tools_definitions_json(true);
    ck_assert(json_is_array(tools));
    ck_assert_uint_eq(json_array_size(tools), TOOL__COUNT);
    for (size_t i = 0; i < TOOL__COUNT; i++)
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(tools, i), "name")),
                         tool_name((enum tool_id)i));
    json_decref(tools);
}
END_TEST

START_TEST(test_definitions_have_exact_single_field_schemas)
{
    json_t *tools = tools_definitions_json(true);
    check_single_string_tool(tools, "calculator", "expression");
    check_single_string_tool(tools, "web_search", "query");
    check_single_string_tool(tools, "get_weather", "location");
    json_decref(tools);
}
END_TEST

START_TEST(test_definitions_save_note_requires_content_and_patterns_filename)
{
    json_t *tools = tools_definitions_json(true);
    json_t *schema = check_common_shape(find_tool(tools, "save_note"));

    ck_assert_uint_eq(json_object_size(json_object_get(schema, "properties")), 2);
    ck_assert_uint_eq(json_object_size(check_string_property(schema, "content")), 2);
    json_t *filename = check_string_property(schema, "filename");
    ck_assert_uint_eq(json_object_size(filename), 3);
    ck_assert_str_eq(json_string_value(json_object_get(filename, "pattern")),
                     "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    check_required(schema, "content");
    json_decref(tools);
}
END_TEST

static bool pattern_matches(const char *pattern, const char *s)
{
    regex_t re;
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

START_TEST(test_definitions_filename_pattern_accepts_safe_names_only)
{
    json_t *tools = tools_definitions_json(true);
    json_t *schema = json_object_get(find_tool(tools, "save_note"), "input_schema");
    const char *pattern = json_string_value(json_object_get(
        json_object_get(json_object_get(schema, "properties"), "filename"), "pattern"));
    char longest[129], too_long[130];
    memset(longest, 'a', 128);
    longest[128] = '\0';
    memset(too_long, 'a', 129);
    too_long[129] = '\0';

    ck_assert(pattern_matches(pattern, "shopping-list_2026.txt"));
    ck_assert(pattern_matches(pattern, longest));
    ck_assert(!pattern_matches(pattern, too_long));
    ck_assert(!pattern_matches(pattern, ".hidden"));
    ck_assert(!pattern_matches(pattern, "../etc/passwd"));
    ck_assert(!pattern_matches(pattern, "a/b"));
    ck_assert(!pattern_matches(pattern, ""));
    json_decref(tools);
}
END_TEST

START_TEST(test_definitions_omit_web_search_when_disabled)
{
    json_t *tools = tools_definitions_json(false);
    ck_assert_uint_eq(json_array_size(tools), TOOL__COUNT - 1);
    ck_assert_ptr_null(find_tool(tools, "web_search"));
    ck_assert_ptr_nonnull(find_tool(tools, "calculator"));
    ck_assert_ptr_nonnull(find_tool(tools, "save_note"));
    ck_assert_ptr_nonnull(find_tool(tools, "get_weather"));
    json_decref(tools);
}
END_TEST

static void check_levels(const enum tool_criticality got[TOOL__COUNT], enum tool_criticality calc,
                         enum tool_criticality note, enum tool_criticality search,
                         enum tool_criticality weather)
{
    ck_assert_int_eq(got[TOOL_CALCULATOR], calc);
    ck_assert_int_eq(got[TOOL_SAVE_NOTE], note);
    ck_assert_int_eq(got[TOOL_WEB_SEARCH], search);
    ck_assert_int_eq(got[TOOL_GET_WEATHER], weather);
}

START_TEST(test_criticality_defaults_from_documented_string)
{
    enum tool_criticality levels[TOOL__COUNT];
    char err[128];

    ck_assert_int_eq(tools_parse_criticality(TOOLS_DEFAULT_CRITICALITY, levels, err, sizeof(err)),
                     0);
    check_levels(levels, TOOL_CRITICAL, TOOL_CRITICAL, TOOL_OPTIONAL, TOOL_OPTIONAL);
}
END_TEST

START_TEST(test_criticality_null_or_blank_spec_yields_defaults)
{
    enum tool_criticality levels[TOOL__COUNT] = {TOOL_OPTIONAL, TOOL_OPTIONAL, TOOL_CRITICAL,
                                                 TOOL_CRITICAL};
    ck_assert_int_eq(tools_parse_criticality(NULL, levels, NULL, 0), 0);
    check_levels(levels, TOOL_CRITICAL, TOOL_CRITICAL, TOOL_OPTIONAL, TOOL_OPTIONAL);

    enum tool_criticality again[TOOL__COUNT] = {TOOL_OPTIONAL, TOOL_OPTIONAL, TOOL_CRITICAL,
                                                TOOL_CRITICAL};
    ck_assert_int_eq(tools_parse_criticality(" \t ", again, NULL, 0), 0);
    check_levels(again, TOOL_CRITICAL, TOOL_CRITICAL, TOOL_OPTIONAL, TOOL_OPTIONAL);
}
END_TEST

START_TEST(test_criticality_override_keeps_other_defaults)
{
    enum tool_criticality levels[TOOL__COUNT];
    char err[128];

    ck_assert_int_eq(tools_parse_criticality("web_search=critical,calculator=optional", levels, err,
                                             sizeof(err)),
                     0);
    check_levels(levels, TOOL_OPTIONAL, TOOL_CRITICAL, TOOL_CRITICAL, TOOL_OPTIONAL);
}
END_TEST

START_TEST(test_criticality_tolerates_whitespace_around_items)
{
    enum tool_criticality levels[TOOL__COUNT];
    char err[128];

    ck_assert_int_eq(tools_parse_criticality("  get_weather = critical ,\tsave_note=optional\n",
                                             levels, err, sizeof(err)),
                     0);
    check_levels(levels, TOOL_CRITICAL, TOOL_OPTIONAL, TOOL_OPTIONAL, TOOL_CRITICAL);
}
END_TEST

/* Parses spec expecting -EINVAL, an untouched ret and a message containing needle. */
static void check_rejected(const char *spec, const char *needle)
{
    enum tool_criticality levels[TOOL__COUNT] = {TOOL_OPTIONAL, TOOL_OPTIONAL, TOOL_OPTIONAL,
                                                 TOOL_OPTIONAL};
    char err[256] = "";

    ck_assert_int_eq(tools_parse_criticality(spec, levels, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, needle) != NULL, "'%s' lacks '%s'", err, needle);
    check_levels(levels, TOOL_OPTIONAL, TOOL_OPTIONAL, TOOL_OPTIONAL, TOOL_OPTIONAL);
}

START_TEST(test_criticality_rejects_unknown_tool_naming_it)
{
    check_rejected("calculator=critical,web_serch=optional", "unknown tool 'web_serch'");
}
END_TEST

START_TEST(test_criticality_rejects_unknown_level_naming_it)
{
    check_rejected("calculator=critical, save_note = sometimes", "unknown level 'sometimes'");
    check_rejected("calculator=Critical", "unknown level 'Critical'");
    check_rejected("calculator=", "unknown level ''");
}
END_TEST

START_TEST(test_criticality_rejects_malformed_lists)
{
    check_rejected("calculator", "item 'calculator' is not of the form name=level");
    check_rejected("calculator=critical,,save_note=optional", "empty item");
    check_rejected("calculator=critical,", "empty item");
    check_rejected("calculator=critical,calculator=optional", "named more than once");
}
END_TEST

START_TEST(test_criticality_error_message_is_bounded)
{
    char spec[1000];
    memset(spec, 'x', sizeof(spec) - 1);
    spec[sizeof(spec) - 1] = '\0';
    enum tool_criticality levels[TOOL__COUNT];
    char err[400] = "";

    ck_assert_int_eq(tools_parse_criticality(spec, levels, err, sizeof(err)), -EINVAL);
    ck_assert_uint_lt(strlen(err), 300);
    ck_assert_ptr_nonnull(strstr(err, "not of the form"));
    /* A tiny buffer is still NUL-terminated rather than overrun. */
    char tiny[8];
    ck_assert_int_eq(tools_parse_criticality("nope=critical", levels, tiny, sizeof(tiny)), -EINVAL);
    ck_assert_uint_eq(strlen(tiny), sizeof(tiny) - 1);
}
END_TEST

static void check_encoded(const char *in, const char *want)
{
    char *got = urlenc_component(in);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    free(got);
}

START_TEST(test_urlenc_encodes_spaces_as_percent_20)
{
    check_encoded("new york city", "new%20york%20city");
    check_encoded(" ", "%20");
    check_encoded("", "");
}
END_TEST

START_TEST(test_urlenc_leaves_unreserved_characters_alone)
{
    check_encoded("AZaz09-._~", "AZaz09-._~");
}
END_TEST

START_TEST(test_urlenc_encodes_reserved_characters)
{
    check_encoded(":/?#[]@!$&'()*+,;=%",
                  "%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25");
    check_encoded("a=1&b=2", "a%3D1%26b%3D2");
    check_encoded("\"<>\\^`{|}\n\x7f", "%22%3C%3E%5C%5E%60%7B%7C%7D%0A%7F");
}
END_TEST

START_TEST(test_urlenc_encodes_utf8_bytes_one_by_one_uppercase)
{
    check_encoded("Zürich", "Z%C3%BCrich");
    check_encoded("東京", "%E6%9D%B1%E4%BA%AC");
    check_encoded("\xff", "%FF");
}
END_TEST

START_TEST(test_urlenc_rejects_null)
{
    errno = 0;
    ck_assert_ptr_null(urlenc_component(NULL));
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST

static Suite *tools_suite(void)
{
    Suite *s = suite_create("tools");
    TCase *registry = tcase_create("registry");
    tcase_add_test(registry, test_tool_names_are_the_ones_the_model_sees);
    tcase_add_test(registry, test_tool_lookup_round_trips_every_name);
    tcase_add_test(registry, test_tool_lookup_rejects_unknown_names_without_writing);
    tcase_add_test(registry, test_definitions_list_every_tool_in_id_order);
    tcase_add_test(registry, test_definitions_have_exact_single_field_schemas);
    tcase_add_test(registry, test_definitions_save_note_requires_content_and_patterns_filename);
    tcase_add_test(registry, test_definitions_filename_pattern_accepts_safe_names_only);
    tcase_add_test(registry, test_definitions_omit_web_search_when_disabled);
    suite_add_tcase(s, registry);

    TCase *crit = tcase_create("criticality");
    tcase_add_test(crit, test_criticality_defaults_from_documented_string);
    tcase_add_test(crit, test_criticality_null_or_blank_spec_yields_defaults);
    tcase_add_test(crit, test_criticality_override_keeps_other_defaults);
    tcase_add_test(crit, test_criticality_tolerates_whitespace_around_items);
    tcase_add_test(crit, test_criticality_rejects_unknown_tool_naming_it);
    tcase_add_test(crit, test_criticality_rejects_unknown_level_naming_it);
    tcase_add_test(crit, test_criticality_rejects_malformed_lists);
    tcase_add_test(crit, test_criticality_error_message_is_bounded);
    suite_add_tcase(s, crit);

    TCase *urlenc = tcase_create("urlenc");
    tcase_add_test(urlenc, test_urlenc_encodes_spaces_as_percent_20);
    tcase_add_test(urlenc, test_urlenc_leaves_unreserved_characters_alone);
    tcase_add_test(urlenc, test_urlenc_encodes_reserved_characters);
    tcase_add_test(urlenc, test_urlenc_encodes_utf8_bytes_one_by_one_uppercase);
    tcase_add_test(urlenc, test_urlenc_rejects_null);
    suite_add_tcase(s, urlenc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tools_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
