/*
 * test_weather.c — unit tests for the pure parts of the get_weather tool:
 * input validation, Open-Meteo URLs, geocoding and forecast parsing, and the
 * WMO weather-code table.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/weather.h"

/* Shaped like a real answer of geocoding-api.open-meteo.com/v1/search?name=Seattle&count=1. */
static const char GEOCODING_SEATTLE[] =
    "{\"results\":[{\"id\":5809844,\"name\":\"Seattle\",\"latitude\":47.60621,"
    "\"longitude\":-122.33207,\"elevation\":56.0,\"feature_code\":\"PPLA2\","
    "\"country_code\":\"US\",\"admin1_id\":5815135,\"admin2_id\":5799783,"
    "\"timezone\":\"America/Los_Angeles\",\"population\":737015,\"country_id\":6252001,"
    "\"country\":\"United States\",\"admin1\":\"Washington\",\"admin2\":\"King\"}],"
    "\"generationtime_ms\":0.72}";

/* Shaped like a real answer of api.open-meteo.com/v1/forecast?...&current=... */
static const char FORECAST_SEATTLE[] =
    "{\"latitude\":47.595562,\"longitude\":-122.32443,\"generationtime_ms\":0.03,"
    "\"utc_offset_seconds\":0,\"timezone\":\"GMT\",\"timezone_abbreviation\":\"GMT\","
    "\"elevation\":59.0,\"current_units\":{\"time\":\"iso8601\",\"interval\":\"seconds\","
    "\"temperature_2m\":\"°C\",\"wind_speed_10m\":\"km/h\",\"weather_code\":\"wmo code\"},"
    "\"current\":{\"time\":\"2026-11-27T12:00\",\"interval\":900,\"temperature_2m\":12.3,"
    "\"wind_speed_10m\":8.5,\"weather_code\":3}}";

static const struct weather_place SEATTLE = {"Seattle", "United States", 47.60621, -122.33207};

static struct tool_result result;

static void setup(void)
{
    result = (struct tool_result){0};
}

static void teardown(void)
{
    tool_result_clear(&result);
}

static int geocode(const char *body, const char *location, struct weather_place *place)
{
    return weather_parse_geocoding(body, strlen(body), location, place, &result);
}

static int forecast(const char *body, const struct weather_place *place)
{
    return weather_parse_forecast(body, strlen(body), place, &result);
}

static void check_input_rejected(const char *input_json, const char *needle)
{
    const char *location = "untouched";
    json_t *input = json_loads(input_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    ck_assert_ptr_nonnull(input);
    ck_assert_int_eq(weather_input(input, &location, &result), -EINVAL);
    ck_assert_int_eq(result.kind, TOOL_INPUT_ERROR);
    ck_assert_msg(strstr(result.text, needle) != NULL, "'%s' lacks '%s'", result.text, needle);
    ck_assert_str_eq(location, "untouched");
    json_decref(input);
}

static void check_geocoding_malformed(const char *body)
{
    struct weather_place place = {"untouched", "", 1.0, 2.0};

    ck_assert_int_eq(geocode(body, "Seattle", &place), -EBADMSG);
    ck_assert_int_eq(result.kind, TOOL_SYSTEM_ERROR);
    ck_assert_ptr_nonnull(strstr(result.text, "malformed geocoding response"));
    ck_assert_str_eq(place.name, "untouched");
}

static void check_forecast_malformed(const char *body)
{
    ck_assert_int_eq(forecast(body, &SEATTLE), -EBADMSG);
    ck_assert_int_eq(result.kind, TOOL_SYSTEM_ERROR);
    ck_assert_str_eq(result.text, "weather backend returned a malformed forecast response");
}

START_TEST(test_input_accepts_location_and_borrows_it)
{
    json_t *input = json_pack("{s:s}", "location", "Paris, France");
    const char *location = NULL;

    ck_assert_int_eq(weather_input(input, &location, &result), 0);
    ck_assert_ptr_eq(location, json_string_value(json_object_get(input, "location")));
    ck_assert_ptr_null(result.text);
    json_decref(input);
}
END_TEST

START_TEST(test_input_enforces_the_location_byte_limit)
{
    char at_limit[WEATHER_MAX_LOCATION_BYTES + 2];
    memset(at_limit, 'a', sizeof(at_limit) - 1);
    at_limit[WEATHER_MAX_LOCATION_BYTES] = '\0';
    json_t *input = json_pack("{s:s}", "location", at_limit);
    const char *location = NULL;
    ck_assert_int_eq(weather_input(input, &location, &result), 0);
    json_decref(input);

    char json[WEATHER_MAX_LOCATION_BYTES + 32];
    snprintf(json, sizeof(json), "{\"location\": \"%0*d\"}", WEATHER_MAX_LOCATION_BYTES + 1, 0);
    check_input_rejected(json, "201 bytes");
}
END_TEST

START_TEST(test_input_rejects_bad_shapes)
{
    check_input_rejected("{}", "missing required field 'location'");
    check_input_rejected("{\"location\": [\"Paris\"]}", "'location' must be a string");
    check_input_rejected("{\"location\": \"\"}", "must not be empty");
    check_input_rejected("{\"location\": \"   \"}", "must not be empty");
    check_input_rejected("{\"location\": \"Pa\\u0000ris\"}", "NUL");
    check_input_rejected("{\"location\": \"Paris\", \"units\": \"F\"}", "unknown field 'units'");
    check_input_rejected("42", "must be a JSON object");
}
END_TEST

START_TEST(test_geocoding_url_encodes_the_name_and_asks_for_one_match)
{
    char *url = weather_build_geocoding_url("https://geocoding-api.open-meteo.com", "São Paulo");
    ck_assert_str_eq(url, "https://geocoding-api.open-meteo.com/v1/search?name=S%C3%A3o%20Paulo"
                          "&count=1");
    free(url);
    url = weather_build_geocoding_url("http://127.0.0.1:9000/", "a&count=100");
    ck_assert_str_eq(url, "http://127.0.0.1:9000/v1/search?name=a%26count%3D100&count=1");
    free(url);
    ck_assert_ptr_null(weather_build_geocoding_url(NULL, "x"));
    ck_assert_ptr_null(weather_build_geocoding_url("http://x", NULL));
}
END_TEST

START_TEST(test_forecast_url_prints_four_decimals_and_current_fields)
{
    char *url = weather_build_forecast_url("https://api.open-meteo.com", 47.60621, -122.33207);
    ck_assert_str_eq(url, "https://api.open-meteo.com/v1/forecast?latitude=47.6062"
                          "&longitude=-122.3321"
                          "&current=temperature_2m,wind_speed_10m,weather_code");
    free(url);
    url = weather_build_forecast_url("http://127.0.0.1:9000/", 0, 180);
    ck_assert_str_eq(url, "http://127.0.0.1:9000/v1/forecast?latitude=0.0000&longitude=180.0000"
                          "&current=temperature_2m,wind_speed_10m,weather_code");
    free(url);
}
END_TEST

START_TEST(test_forecast_url_rejects_non_finite_coordinates)
{
    errno = 0;
    ck_assert_ptr_null(weather_build_forecast_url("http://x", NAN, 1.0));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(weather_build_forecast_url("http://x", 1.0, INFINITY));
    ck_assert_ptr_null(weather_build_forecast_url(NULL, 1.0, 1.0));
}
END_TEST

START_TEST(test_geocoding_takes_the_first_real_result)
{
    struct weather_place place;

    ck_assert_int_eq(geocode(GEOCODING_SEATTLE, "Seattle", &place), 0);
    ck_assert_str_eq(place.name, "Seattle");
    ck_assert_str_eq(place.country, "United States");
    ck_assert_double_eq_tol(place.latitude, 47.60621, 1e-9);
    ck_assert_double_eq_tol(place.longitude, -122.33207, 1e-9);
    ck_assert_ptr_null(result.text);
}
END_TEST

START_TEST(test_geocoding_without_results_key_is_an_unknown_place)
{
    struct weather_place place = {"untouched", "", 0, 0};

    ck_assert_int_eq(geocode("{\"generationtime_ms\":0.5}", "Atlantis", &place), -ENOENT);
    ck_assert_int_eq(result.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(result.text, "unknown place 'Atlantis': no match found");
    ck_assert_str_eq(place.name, "untouched");
}
END_TEST

START_TEST(test_geocoding_with_empty_results_is_an_unknown_place)
{
    struct weather_place place;

    ck_assert_int_eq(geocode("{\"results\":[]}", "Xyzzy\nville", &place), -ENOENT);
    ck_assert_int_eq(result.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(result.text, "unknown place 'Xyzzy ville': no match found");
}
END_TEST

START_TEST(test_geocoding_tolerates_a_missing_country)
{
    struct weather_place place;

    ck_assert_int_eq(
        geocode("{\"results\":[{\"name\":\"Null Island\",\"latitude\":0,\"longitude\":0}]}",
                "Null Island", &place),
        0);
    ck_assert_str_eq(place.name, "Null Island");
    ck_assert_str_eq(place.country, "");
    ck_assert_double_eq(place.latitude, 0.0);
}
END_TEST

START_TEST(test_geocoding_malformed_bodies_are_system_errors)
{
    check_geocoding_malformed("not json");
    check_geocoding_malformed("[]");
    check_geocoding_malformed("{\"results\":{}}");
    check_geocoding_malformed("{\"results\":[42]}");
    check_geocoding_malformed("{\"results\":[{\"latitude\":1,\"longitude\":2}]}");
    check_geocoding_malformed("{\"results\":[{\"name\":\"X\",\"longitude\":2}]}");
    check_geocoding_malformed(
        "{\"results\":[{\"name\":\"X\",\"latitude\":\"1\",\"longitude\":2}]}");
    check_geocoding_malformed("{\"results\":[{\"name\":\"X\",\"latitude\":91,\"longitude\":2}]}");
    check_geocoding_malformed("{\"results\":[{\"name\":\"X\",\"latitude\":1,\"longitude\":-181}]}");
    check_geocoding_malformed("{\"error\":true,\"reason\":\"Parameter count must be between 1 and "
                              "100.\"}");
}
END_TEST

START_TEST(test_geocoding_cuts_long_names_on_a_utf8_boundary)
{
    /* 100 three-byte characters (300 bytes) cannot fit name[128]: the cut must keep whole
     * characters, i.e. 42 of them (126 bytes). */
    char body[1024];
    int n = snprintf(body, sizeof(body), "{\"results\":[{\"name\":\"");
    for (int i = 0; i < 100; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "東");
    snprintf(body + n, sizeof(body) - (size_t)n,
             "\",\"country\":\"%0150d\",\"latitude\":35.68,\"longitude\":139.69}]}", 7);
    struct weather_place place;

    ck_assert_int_eq(geocode(body, "Tokyo", &place), 0);
    ck_assert_uint_eq(strlen(place.name), 126);
    ck_assert_int_eq(memcmp(place.name, "東東", 6), 0);
    ck_assert_uint_eq(strlen(place.country), sizeof(place.country) - 1);
}
END_TEST

START_TEST(test_forecast_describes_real_body_in_words_with_units)
{
    ck_assert_int_eq(forecast(FORECAST_SEATTLE, &SEATTLE), 0);
    ck_assert_int_eq(result.kind, TOOL_OK);
    ck_assert_str_eq(result.text, "Weather in Seattle, United States: overcast, 12.3 °C, wind "
                                  "8.5 km/h (observed 2026-11-27T12:00).");
}
END_TEST

START_TEST(test_forecast_uses_units_from_current_units)
{
    ck_assert_int_eq(forecast("{\"current_units\":{\"temperature_2m\":\"°F\","
                              "\"wind_speed_10m\":\"mp/h\"},\"current\":{\"time\":"
                              "\"2026-07-01T09:15\",\"temperature_2m\":71.6,"
                              "\"wind_speed_10m\":3,\"weather_code\":0}}",
                              &SEATTLE),
                     0);
    ck_assert_str_eq(result.text, "Weather in Seattle, United States: clear sky, 71.6 °F, wind "
                                  "3.0 mp/h (observed 2026-07-01T09:15).");
}
END_TEST

START_TEST(test_forecast_defaults_units_and_omits_missing_time_and_country)
{
    struct weather_place place = {"Null Island", "", 0, 0};

    ck_assert_int_eq(forecast("{\"current\":{\"temperature_2m\":-0.04,\"wind_speed_10m\":20.26,"
                              "\"weather_code\":63},\"current_units\":{\"temperature_2m\":42}}",
                              &place),
                     0);
    ck_assert_str_eq(result.text, "Weather in Null Island: moderate rain, 0.0 °C, wind 20.3 km/h.");
}
END_TEST

START_TEST(test_forecast_unknown_code_still_reports_numbers)
{
    ck_assert_int_eq(forecast("{\"current\":{\"temperature_2m\":1,\"wind_speed_10m\":2,"
                              "\"weather_code\":12345678901}}",
                              &SEATTLE),
                     0);
    ck_assert_str_eq(result.text, "Weather in Seattle, United States: unknown conditions, 1.0 °C, "
                                  "wind 2.0 km/h.");
}
END_TEST

START_TEST(test_forecast_malformed_bodies_are_system_errors)
{
    check_forecast_malformed("");
    check_forecast_malformed("<html>");
    check_forecast_malformed("{\"hourly\":{}}");
    check_forecast_malformed("{\"current\":[]}");
    check_forecast_malformed(
        "{\"current\":{\"temperature_2m\":null,\"wind_speed_10m\":2,\"weather_code\":3}}");
    check_forecast_malformed("{\"current\":{\"temperature_2m\":1,\"weather_code\":3}}");
    check_forecast_malformed(
        "{\"current\":{\"temperature_2m\":1,\"wind_speed_10m\":2,\"weather_code\":\"3\"}}");
    check_forecast_malformed(
        "{\"current\":{\"temperature_2m\":1,\"wind_speed_10m\":2,\"weather_code\":3.5}}");
    /* Readings no unit makes real are a broken answer, not text for the model. */
    check_forecast_malformed(
        "{\"current\":{\"temperature_2m\":1e300,\"wind_speed_10m\":2,\"weather_code\":3}}");
    check_forecast_malformed(
        "{\"current\":{\"temperature_2m\":1,\"wind_speed_10m\":-1001,\"weather_code\":3}}");
}
END_TEST

START_TEST(test_forecast_bounds_untrusted_unit_and_time_strings)
{
    char body[2200];
    char junk[1001];
    memset(junk, 'z', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"current_units\":{\"temperature_2m\":\"%s\"},\"current\":{\"time\":\"%s\","
             "\"temperature_2m\":1,\"wind_speed_10m\":2,\"weather_code\":1}}",
             junk, junk);

    ck_assert_int_eq(forecast(body, &SEATTLE), 0);
    ck_assert_uint_lt(strlen(result.text), 150);
    ck_assert_ptr_nonnull(strstr(result.text, "mainly clear"));
}
END_TEST

START_TEST(test_forecast_refuses_oversized_body_and_null_place)
{
    ck_assert_int_eq(
        weather_parse_forecast(FORECAST_SEATTLE, WEATHER_MAX_BODY_BYTES + 1, &SEATTLE, &result),
        -EBADMSG);
    ck_assert_int_eq(result.kind, TOOL_SYSTEM_ERROR);
    ck_assert_int_eq(forecast(FORECAST_SEATTLE, NULL), -EINVAL);
}
END_TEST

START_TEST(test_weather_code_table_spot_check)
{
    ck_assert_str_eq(weather_code_text(0), "clear sky");
    ck_assert_str_eq(weather_code_text(1), "mainly clear");
    ck_assert_str_eq(weather_code_text(2), "partly cloudy");
    ck_assert_str_eq(weather_code_text(3), "overcast");
    ck_assert_str_eq(weather_code_text(45), "fog");
    ck_assert_str_eq(weather_code_text(53), "moderate drizzle");
    ck_assert_str_eq(weather_code_text(65), "heavy rain");
    ck_assert_str_eq(weather_code_text(75), "heavy snow");
    ck_assert_str_eq(weather_code_text(81), "moderate rain showers");
    ck_assert_str_eq(weather_code_text(95), "thunderstorm");
    ck_assert_str_eq(weather_code_text(99), "thunderstorm with heavy hail");
}
END_TEST

START_TEST(test_weather_code_unknown_values_read_as_unknown)
{
    ck_assert_str_eq(weather_code_text(4), "unknown conditions");
    ck_assert_str_eq(weather_code_text(100), "unknown conditions");
    ck_assert_str_eq(weather_code_text(-1), "unknown conditions");
}
END_TEST

static Suite *weather_suite(void)
{
    Suite *s = suite_create("weather");
    TCase *input = tcase_create("input");
    tcase_add_checked_fixture(input, setup, teardown);
    tcase_add_test(input, test_input_accepts_location_and_borrows_it);
    tcase_add_test(input, test_input_enforces_the_location_byte_limit);
    tcase_add_test(input, test_input_rejects_bad_shapes);
    suite_add_tcase(s, input);

    TCase *urls = tcase_create("urls");
    tcase_add_test(urls, test_geocoding_url_encodes_the_name_and_asks_for_one_match);
    tcase_add_test(urls, test_forecast_url_prints_four_decimals_and_current_fields);
    tcase_add_test(urls, test_forecast_url_rejects_non_finite_coordinates);
    suite_add_tcase(s, urls);

    TCase *geo = tcase_create("geocoding");
    tcase_add_checked_fixture(geo, setup, teardown);
    tcase_add_test(geo, test_geocoding_takes_the_first_real_result);
    tcase_add_test(geo, test_geocoding_without_results_key_is_an_unknown_place);
    tcase_add_test(geo, test_geocoding_with_empty_results_is_an_unknown_place);
    tcase_add_test(geo, test_geocoding_tolerates_a_missing_country);
    tcase_add_test(geo, test_geocoding_malformed_bodies_are_system_errors);
    tcase_add_test(geo, test_geocoding_cuts_long_names_on_a_utf8_boundary);
    suite_add_tcase(s, geo);

    TCase *fc = tcase_create("forecast");
    tcase_add_checked_fixture(fc, setup, teardown);
    tcase_add_test(fc, test_forecast_describes_real_body_in_words_with_units);
    tcase_add_test(fc, test_forecast_uses_units_from_current_units);
    tcase_add_test(fc, test_forecast_defaults_units_and_omits_missing_time_and_country);
    tcase_add_test(fc, test_forecast_unknown_code_still_reports_numbers);
    tcase_add_test(fc, test_forecast_malformed_bodies_are_system_errors);
    tcase_add_test(fc, test_forecast_bounds_untrusted_unit_and_time_strings);
    tcase_add_test(fc, test_forecast_refuses_oversized_body_and_null_place);
    tcase_add_test(fc, test_weather_code_table_spot_check);
    tcase_add_test(fc, test_weather_code_unknown_values_read_as_unknown);
    suite_add_tcase(s, fc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(weather_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
