/*
 * weather.c — the pure parts of the `get_weather` tool over Open-Meteo:
 * input validation, geocoding and forecast URLs, picking the place from the
 * geocoding body and describing the current weather in one sentence (see
 * weather.h).
 *
 * Everything taken from a response is untrusted: strings are cut to fixed
 * caps on a UTF-8 character boundary and control characters are replaced, so
 * a broken backend cannot overflow a buffer or flood the model's context.
 */
#include "agentd/weather.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/text.h"
#include "agentd/tool_input.h"
#include "agentd/urlenc.h"

#define WEATHER_FIELD "location"
/* Unit strings are short ("°C", "km/h", "mp/h"); anything longer is not a unit. */
#define WEATHER_MAX_UNIT_BYTES 16
/* ISO 8601 local time as Open-Meteo sends it, "2026-11-27T12:00", with room to spare. */
#define WEATHER_MAX_TIME_BYTES      32
#define WEATHER_DEFAULT_TEMP_UNIT   "°C"
#define WEATHER_DEFAULT_WIND_UNIT   "km/h"
#define WEATHER_GEOCODING_MALFORMED "weather backend returned a malformed geocoding response"
#define WEATHER_FORECAST_MALFORMED  "weather backend returned a malformed forecast response"

/* Copies s[0..len) into dst (dst_size >= 1 bytes, always NUL-terminated), cut on a UTF-8
 * boundary, with runs of whitespace/control characters folded into one space and trimmed. */
static void copy_clean(char *dst, size_t dst_size, const char *s, size_t len)
{
    size_t cut = text_utf8_prefix_len(s, len, dst_size - 1);
    size_t w = 0;
    bool pending_space = false;

    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (text_is_space_or_control(c)) {
            pending_space = w > 0;
            continue;
        }
        if (pending_space)
            dst[w++] = ' ';
        dst[w++] = (char)c;
        pending_space = false;
    }
    dst[w] = '\0';
}

/* A trimmed, bounded copy of the string member key of obj into dst; false when it is
 * absent, not a string or blank (dst is then ""). */
static bool copy_member(char *dst, size_t dst_size, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    dst[0] = '\0';
    if (!json_is_string(v))
        return false;
    copy_clean(dst, dst_size, json_string_value(v), json_string_length(v));
    return dst[0] != '\0';
}

static int set_error(struct tool_result *ret, enum tool_result_kind kind, const char *msg, int err)
{
    int r = tool_result_setf(ret, kind, "%s", msg);
    return r < 0 ? r : err;
}

int weather_input(const json_t *input, const char **ret_location, struct tool_result *ret)
{
    return tool_input_single_string(input, WEATHER_FIELD, WEATHER_MAX_LOCATION_BYTES, ret_location,
                                    ret);
}

/* Length of base without one trailing '/', as an int for "%.*s". */
static int base_len(const char *base)
{
    size_t len = strlen(base);
    if (len > 0 && base[len - 1] == '/')
        len--;
    return len > INT_MAX ? INT_MAX : (int)len;
}

char *weather_build_geocoding_url(const char *geocoding_base, const char *location)
{
    if (!geocoding_base || !location) {
        errno = EINVAL;
        return NULL;
    }
    char *name = urlenc_component(location);
    if (!name)
        return NULL;

    char *url = NULL;
    if (asprintf(&url, "%.*s/v1/search?name=%s&count=1", base_len(geocoding_base), geocoding_base,
                 name) < 0) {
        url = NULL;
        errno = ENOMEM;
    }
    free(name);
    return url;
}

/* A finite number member of obj within [-limit, limit]; false otherwise. */
static bool coordinate_member(const json_t *obj, const char *key, double limit, double *ret)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!isfinite(d) || d < -limit || d > limit)
        return false;
    *ret = d;
    return true;
}

static int place_from_json(const json_t *result, struct weather_place *place)
{
    if (!json_is_object(result))
        return -EBADMSG;
    if (!copy_member(place->name, sizeof(place->name), result, "name"))
        return -EBADMSG;
    copy_member(place->country, sizeof(place->country), result, "country");
    if (!coordinate_member(result, "latitude", 90.0, &place->latitude) ||
        !coordinate_member(result, "longitude", 180.0, &place->longitude))
        return -EBADMSG;
    return 0;
}

static json_t *load_body(const char *body, size_t len)
{
    if (!body || len > WEATHER_MAX_BODY_BYTES)
        return NULL;
    /* JSON_ALLOW_NUL: strings are read by their length and NULs are flattened like other
     * control characters, so a stray "\u0000" need not void the whole answer. */
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    if (root && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int weather_parse_geocoding(const char *body, size_t len, const char *location,
                            struct weather_place *ret_place, struct tool_result *ret)
{
    struct weather_place place;
    int r;
    json_t *root = load_body(body, len);

    if (!root || json_is_true(json_object_get(root, "error"))) {
        r = set_error(ret, TOOL_SYSTEM_ERROR, WEATHER_GEOCODING_MALFORMED, -EBADMSG);
        goto out;
    }

    /* Open-Meteo leaves the key out altogether when nothing matches. */
    const json_t *results = json_object_get(root, "results");
    if (!results || (json_is_array(results) && json_array_size(results) == 0)) {
        char shown[WEATHER_MAX_LOCATION_BYTES + 1];
        const char *loc = location ? location : "";

        copy_clean(shown, sizeof(shown), loc, strlen(loc));
        r = tool_result_setf(ret, TOOL_INPUT_ERROR, "unknown place '%s': no match found", shown);
        r = r < 0 ? r : -ENOENT;
        goto out;
    }

    if (!json_is_array(results) || place_from_json(json_array_get(results, 0), &place) < 0) {
        r = set_error(ret, TOOL_SYSTEM_ERROR, WEATHER_GEOCODING_MALFORMED, -EBADMSG);
        goto out;
    }
    *ret_place = place;
    r = 0;

out:
    json_decref(root);
    return r;
}

char *weather_build_forecast_url(const char *forecast_base, double latitude, double longitude)
{
    if (!forecast_base || !isfinite(latitude) || !isfinite(longitude)) {
        errno = EINVAL;
        return NULL;
    }
    char *url = NULL;
    if (asprintf(&url,
                 "%.*s/v1/forecast?latitude=%.4f&longitude=%.4f"
                 "&current=temperature_2m,wind_speed_10m,weather_code",
                 base_len(forecast_base), forecast_base, latitude, longitude) < 0) {
        errno = ENOMEM;
        return NULL;
    }
    return url;
}

/* No real temperature or wind speed, in any unit Open-Meteo offers, comes near this: a reading
   beyond it is a broken answer, not weather to tell the model about. */
#define WEATHER_MAX_ABS_READING 1000.0

static bool number_member(const json_t *obj, const char *key, double *ret)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
        fabs(json_number_value(v)) > WEATHER_MAX_ABS_READING)
        return false;
    *ret = json_number_value(v);
    return true;
}

/* Rounds away "-0.0": a reading of -0.04 reads better as 0.0. */
static double tidy(double d)
{
    return (d > -0.05 && d < 0.05) ? 0.0 : d;
}

struct forecast {
    double temperature, wind_speed;
    int code; /* -1 when outside int range: reads as "unknown conditions" */
    char temp_unit[WEATHER_MAX_UNIT_BYTES + 1];
    char wind_unit[WEATHER_MAX_UNIT_BYTES + 1];
    char time[WEATHER_MAX_TIME_BYTES + 1]; /* "" when missing */
};

static int forecast_from_json(const json_t *root, struct forecast *fc)
{
    const json_t *current = json_object_get(root, "current");
    const json_t *units = json_object_get(root, "current_units");
    const json_t *code = json_object_get(current, "weather_code");

    if (!json_is_object(current) || !json_is_integer(code) ||
        !number_member(current, "temperature_2m", &fc->temperature) ||
        !number_member(current, "wind_speed_10m", &fc->wind_speed))
        return -EBADMSG;

    json_int_t c = json_integer_value(code);
    fc->code = (c < INT_MIN || c > INT_MAX) ? -1 : (int)c;
    copy_member(fc->time, sizeof(fc->time), current, "time");
    /* json_object_get() on a non-object answers NULL, so a bad current_units means defaults. */
    if (!copy_member(fc->temp_unit, sizeof(fc->temp_unit), units, "temperature_2m"))
        snprintf(fc->temp_unit, sizeof(fc->temp_unit), "%s", WEATHER_DEFAULT_TEMP_UNIT);
    if (!copy_member(fc->wind_unit, sizeof(fc->wind_unit), units, "wind_speed_10m"))
        snprintf(fc->wind_unit, sizeof(fc->wind_unit), "%s", WEATHER_DEFAULT_WIND_UNIT);
    return 0;
}

int weather_parse_forecast(const char *body, size_t len, const struct weather_place *place,
                           struct tool_result *ret)
{
    struct forecast fc;
    int r;

    if (!place)
        return -EINVAL;
    json_t *root = load_body(body, len);
    if (!root || forecast_from_json(root, &fc) < 0) {
        r = set_error(ret, TOOL_SYSTEM_ERROR, WEATHER_FORECAST_MALFORMED, -EBADMSG);
        goto out;
    }

    /* strnlen: a caller-filled place need not be NUL-terminated; never read past its arrays. */
    r = tool_result_setf(
        ret, TOOL_OK, "Weather in %.*s%s%.*s: %s, %.1f %s, wind %.1f %s%s%s%s.",
        (int)strnlen(place->name, sizeof(place->name)), place->name, place->country[0] ? ", " : "",
        (int)strnlen(place->country, sizeof(place->country)), place->country,
        weather_code_text(fc.code), tidy(fc.temperature), fc.temp_unit, tidy(fc.wind_speed),
        fc.wind_unit, fc.time[0] ? " (observed " : "", fc.time, fc.time[0] ? ")" : "");

out:
    json_decref(root);
    return r;
}

const char *weather_code_text(int code)
{
    switch (code) {
    case 0:
        return "clear sky";
    case 1:
        return "mainly clear";
    case 2:
        return "partly cloudy";
    case 3:
        return "overcast";
    case 45:
        return "fog";
    case 48:
        return "depositing rime fog";
    case 51:
        return "light drizzle";
    case 53:
        return "moderate drizzle";
    case 55:
        return "dense drizzle";
    case 56:
        return "light freezing drizzle";
    case 57:
        return "dense freezing drizzle";
    case 61:
        return "slight rain";
    case 63:
        return "moderate rain";
    case 65:
        return "heavy rain";
    case 66:
        return "light freezing rain";
    case 67:
        return "heavy freezing rain";
    case 71:
        return "slight snow";
    case 73:
        return "moderate snow";
    case 75:
        return "heavy snow";
    case 77:
        return "snow grains";
    case 80:
        return "slight rain showers";
    case 81:
        return "moderate rain showers";
    case 82:
        return "violent rain showers";
    case 85:
        return "slight snow showers";
    case 86:
        return "heavy snow showers";
    case 95:
        return "thunderstorm";
    case 96:
        return "thunderstorm with slight hail";
    case 99:
        return "thunderstorm with heavy hail";
    default:
        return "unknown conditions";
    }
}
