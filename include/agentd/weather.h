/*
 * weather.h — the pure parts of the `get_weather` tool, backed by Open-Meteo:
 * validate the model's input, build the geocoding URL, pick the place from the
 * geocoding body, build the forecast URL and turn the forecast body into one
 * sentence for the model.
 *
 * The engine does the two HTTP GETs (geocoding, then forecast) and maps
 * transport or HTTP-status failures to TOOL_SYSTEM_ERROR itself; these
 * functions never do I/O, read a clock or log. Numbers are printed with '.'
 * as the decimal separator because the daemon never calls setlocale().
 * Pure and reentrant; safe from any thread.
 *
 * Memory: URLs are malloc'd (caller free()s); results and messages go into
 * the caller's struct tool_result (tool_result.h); bodies and inputs are
 * only read during the call, apart from *ret_location, borrowed from input.
 */
#ifndef AGENTD_WEATHER_H
#define AGENTD_WEATHER_H

#include <stddef.h>

#include <jansson.h>

#include "agentd/tool_result.h"

#define WEATHER_MAX_LOCATION_BYTES 200
/* Bodies larger than this are refused by the parsers; the engine should cap its download
 * at this size too. */
#define WEATHER_MAX_BODY_BYTES (256 * 1024)

/* A geocoded place. Strings are NUL-terminated UTF-8, cut on a character boundary to fit,
 * with runs of spaces and control characters folded into one space and trimmed; country is ""
 * when the backend gave none. */
struct weather_place {
    char name[128];
    char country[96];
    double latitude, longitude; /* degrees, WGS84; finite, within +-90 / +-180 */
};

/*
 * Validates the tool_use input: an object with exactly one member "location", a
 * string of 1..WEATHER_MAX_LOCATION_BYTES bytes that is not all whitespace and
 * contains no NUL.
 * On success returns 0, sets *ret_location (borrowed from input) and leaves ret
 * untouched. On a bad input sets ret to TOOL_INPUT_ERROR with a message naming
 * the problem and returns -EINVAL (-ENOMEM if the message could not be allocated).
 */
int weather_input(const json_t *input, const char **ret_location, struct tool_result *ret);

/*
 * Returns "{geocoding_base}/v1/search?name=<urlenc(location)>&count=1" (malloc'd;
 * caller free()s). One trailing '/' on the base is tolerated. NULL with
 * errno = EINVAL when an argument is NULL, or NULL with errno = ENOMEM.
 */
char *weather_build_geocoding_url(const char *geocoding_base, const char *location);

/*
 * Parses a geocoding body {"results":[{"name","latitude","longitude","country",...}]}
 * (len bytes, need not be NUL-terminated) and takes the first result.
 *   - 0: *ret_place filled; ret untouched.
 *   - -ENOENT: no "results" key, or an empty array: ret = TOOL_INPUT_ERROR
 *     "unknown place '<location>': no match found" (the model can try another spelling).
 *   - -EBADMSG: not JSON, "error": true, "results" not an array, first result
 *     without a string name or with missing/out-of-range coordinates, or body over
 *     WEATHER_MAX_BODY_BYTES: ret = TOOL_SYSTEM_ERROR.
 *   - -ENOMEM: out of memory.
 * *ret_place is written only on success. location may be NULL (message only).
 */
int weather_parse_geocoding(const char *body, size_t len, const char *location,
                            struct weather_place *ret_place, struct tool_result *ret);

/*
 * Returns "{forecast_base}/v1/forecast?latitude=<%.4f>&longitude=<%.4f>
 * &current=temperature_2m,wind_speed_10m,weather_code" (one line; malloc'd; caller
 * free()s). One trailing '/' on the base is tolerated. NULL with errno = EINVAL
 * when the base is NULL or a coordinate is not finite, or NULL with errno = ENOMEM.
 */
char *weather_build_forecast_url(const char *forecast_base, double latitude, double longitude);

/*
 * Turns a forecast body {"current":{"time","temperature_2m","wind_speed_10m",
 * "weather_code"},"current_units":{...}} into a TOOL_OK sentence, e.g.
 * "Weather in Seattle, United States: overcast, 12.3 °C, wind 8.5 km/h (observed
 * 2026-11-27T12:00)." Units come from current_units when present as short strings (default "°C" and
 * "km/h"); the "(observed ...)" part is left out when current.time is missing; ", <country>" is
 * left out when place->country is empty. Returns 0 on success; -EBADMSG with ret =
 * TOOL_SYSTEM_ERROR when the body is not JSON, has no "current" object, a missing or non-numeric
 * temperature_2m, wind_speed_10m or weather_code (a weather_code must be an integer), a reading
 * beyond +-1000, or is over WEATHER_MAX_BODY_BYTES; -EINVAL (ret untouched) when place is NULL;
 * -ENOMEM when out of memory.
 */
int weather_parse_forecast(const char *body, size_t len, const struct weather_place *place,
                           struct tool_result *ret);

/* WMO weather interpretation code (as used by Open-Meteo) in words, e.g. 0 "clear sky",
 * 3 "overcast", 45 "fog", 63 "moderate rain", 95 "thunderstorm"; "unknown conditions" for
 * any other code. Static storage. */
const char *weather_code_text(int code);

#endif
