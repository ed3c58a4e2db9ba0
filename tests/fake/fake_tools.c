/*
 * fake_tools.c — deterministic stand-ins for the APIs behind agentd's tools
 * (Open-Meteo geocoding and forecast, SearXNG) and for GET /v1/models.
 *
 * Shapes follow the real services closely enough for agentd's parsers:
 * geocoding leaves out "results" when nothing matches, Open-Meteo errors
 * are {"error":true,"reason":...}, SearXNG answers 403 when JSON output is
 * not requested. Values are derived from the inputs only, so a test can
 * predict them.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct city {
    int id;
    const char *name;
    double latitude;
    double longitude;
    const char *country;
    const char *country_code;
    const char *timezone;
};

static const struct city cities[] = {
    {5809844, "Seattle", 47.60621, -122.33207, "United States", "US", "America/Los_Angeles"},
    {2988507, "Paris", 48.85341, 2.3488, "France", "FR", "Europe/Paris"},
    {2643743, "London", 51.50853, -0.12574, "United Kingdom", "GB", "Europe/London"},
    {2950159, "Berlin", 52.52437, 13.41053, "Germany", "DE", "Europe/Berlin"},
    {1850147, "Tokyo", 35.6895, 139.69171, "Japan", "JP", "Asia/Tokyo"},
    {5128581, "New York", 40.71427, -74.00597, "United States", "US", "America/New_York"},
    {2147714, "Sydney", -33.86785, 151.20732, "Australia", "AU", "Australia/Sydney"},
    {3117735, "Madrid", 40.4165, -3.70256, "Spain", "ES", "Europe/Madrid"},
    {360630, "Cairo", 30.06263, 31.24967, "Egypt", "EG", "Africa/Cairo"},
    {6167865, "Toronto", 43.70011, -79.4163, "Canada", "CA", "America/Toronto"},
};

/* Case-insensitive comparison that ignores leading and trailing spaces in s. */
static bool name_matches(const char *s, const char *name)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        n--;
    return n == strlen(name) && strncasecmp(s, name, n) == 0;
}

void fake_tools_geocoding(const char *name, const char *count, struct fake_reply *ret_reply)
{
    long n = 10;
    if (!name || !*name) {
        fake_reply_plain_error(ret_reply, 400, "Parameter 'name' is required");
        return;
    }
    if (count && fake_parse_long(count, 1, 100, &n) < 0) {
        fake_reply_plain_error(ret_reply, 400, "Parameter 'count' must be an integer 1..100");
        return;
    }
    (void)n; /* every city is unique, so any valid count yields the same one result */
    json_t *out = json_object();
    for (size_t i = 0; out && i < sizeof(cities) / sizeof(cities[0]); i++) {
        const struct city *c = &cities[i];
        if (!name_matches(name, c->name))
            continue;
        json_object_set_new(out, "results",
                            json_pack("[{s:i,s:s,s:f,s:f,s:s,s:s,s:s}]", "id", c->id, "name",
                                      c->name, "latitude", c->latitude, "longitude", c->longitude,
                                      "country", c->country, "country_code", c->country_code,
                                      "timezone", c->timezone));
        break;
    }
    if (out)
        json_object_set_new(out, "generationtime_ms", json_real(0.1));
    fake_reply_set(ret_reply, 200, out);
}

/* Parses a coordinate like Open-Meteo does; fills reason on failure. */
static int parse_coord(const char *s, const char *what, double limit, double *ret, char *reason,
                       size_t reason_bytes)
{
    char *end;
    if (!s || !*s) {
        snprintf(reason, reason_bytes, "Parameter '%s' is required", what);
        return -EINVAL;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v)) {
        snprintf(reason, reason_bytes,
                 "Cannot initialize Float from invalid String value %.40s "
                 "for key %s",
                 s, what);
        return -EINVAL;
    }
    if (v < -limit || v > limit) {
        snprintf(reason, reason_bytes, "%c%s must be in range of -%g to %g\xc2\xb0. Given: %g.",
                 what[0] - 32, what + 1, limit, limit, v);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static double round1(double v)
{
    return round(v * 10.0) / 10.0;
}

/* Adds the requested "current" variables; fills reason and fails on an unknown one. */
static int add_current(json_t *out, const char *current, double lat, double lon, char *reason,
                       size_t reason_bytes)
{
    static const int codes[] = {0, 1, 2, 3, 45, 61, 63, 71, 80, 95};
    json_t *units = json_pack("{s:s,s:s}", "time", "iso8601", "interval", "seconds");
    json_t *cur = json_pack("{s:s,s:i}", "time", "2026-11-27T12:00", "interval", 900);
    char *list = strdup(current);
    int rc = (units && cur && list) ? 0 : -ENOMEM;
    char *save = NULL;
    for (char *v = list ? strtok_r(list, ",", &save) : NULL; rc == 0 && v;
         v = strtok_r(NULL, ",", &save)) {
        if (strcmp(v, "temperature_2m") == 0) {
            json_object_set_new(units, v,
                                json_string("\xc2\xb0"
                                            "C"));
            json_object_set_new(cur, v,
                                json_real(round1(fmod(fabs(lat * 1.7 + lon * 0.9), 35.0) - 5.0)));
        } else if (strcmp(v, "wind_speed_10m") == 0) {
            json_object_set_new(units, v, json_string("km/h"));
            json_object_set_new(cur, v, json_real(round1(fmod(fabs(lat - lon) * 0.37, 40.0))));
        } else if (strcmp(v, "weather_code") == 0) {
            unsigned idx = (unsigned)(fabs(lat) * 10.0 + fabs(lon) * 10.0) % 10u;
            json_object_set_new(units, v, json_string("wmo code"));
            json_object_set_new(cur, v, json_integer(codes[idx]));
        } else {
            snprintf(reason, reason_bytes,
                     "Cannot initialize ForecastVariable from invalid String value %.40s.", v);
            rc = -EINVAL;
        }
    }
    free(list);
    if (rc == 0) {
        json_object_set_new(out, "current_units", units);
        json_object_set_new(out, "current", cur);
        return 0;
    }
    json_decref(units);
    json_decref(cur);
    return rc;
}

void fake_tools_forecast(const char *latitude, const char *longitude, const char *current,
                         struct fake_reply *ret_reply)
{
    char reason[160];
    double lat, lon;
    if (parse_coord(latitude, "latitude", 90.0, &lat, reason, sizeof(reason)) < 0 ||
        parse_coord(longitude, "longitude", 180.0, &lon, reason, sizeof(reason)) < 0) {
        fake_reply_plain_error(ret_reply, 400, reason);
        return;
    }
    json_t *out = json_pack("{s:f,s:f,s:f,s:i,s:s,s:s,s:f}", "latitude", lat, "longitude", lon,
                            "generationtime_ms", 0.1, "utc_offset_seconds", 0, "timezone", "GMT",
                            "timezone_abbreviation", "GMT", "elevation", 10.0);
    if (out && current && *current) {
        int rc = add_current(out, current, lat, lon, reason, sizeof(reason));
        if (rc == -EINVAL) {
            json_decref(out);
            fake_reply_plain_error(ret_reply, 400, reason);
            return;
        }
        if (rc < 0) {
            json_decref(out);
            out = NULL;
        }
    }
    fake_reply_set(ret_reply, 200, out);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

void fake_tools_search(const char *q, const char *format, struct fake_reply *ret_reply)
{
    static const char *const engines[] = {"duckduckgo", "bing",      "brave", "wikipedia",
                                          "qwant",      "startpage", "mojeek"};
    enum { N_RESULTS = 7 };
    if (!format || strcmp(format, "json") != 0) {
        /* What SearXNG does when the instance has JSON output disabled. */
        fake_reply_clear(ret_reply);
        ret_reply->status = 403;
        ret_reply->content_type = "text/html; charset=utf-8";
        ret_reply->text = "<!DOCTYPE html><title>403 Forbidden</title><h1>Forbidden</h1>\n";
        return;
    }
    if (!q || !*q) {
        fake_reply_plain_error(ret_reply, 400, "Parameter 'q' is required");
        return;
    }
    uint32_t h = fnv1a(q);
    json_t *qj = fake_json_string_lossy(q);
    json_t *results = json_array();
    for (int k = 0; qj && results && k < N_RESULTS; k++) {
        char url[96];
        char *title = NULL, *snippet = NULL;
        snprintf(url, sizeof(url), "https://example.org/r/%08x/%d", (unsigned)h, k + 1);
        /* Titles and snippets quote the query so tests can see it arrived intact. */
        if (asprintf(&title, "Result %d for %s", k + 1, q) < 0)
            title = NULL;
        if (asprintf(&snippet, "Snippet %d (%08x) about %s.", k + 1, (unsigned)h, q) < 0)
            snippet = NULL;
        json_array_append_new(results,
                              json_pack("{s:o*,s:s,s:o*,s:s}", "title",
                                        title ? fake_json_string_lossy(title) : NULL, "url", url,
                                        "content", snippet ? fake_json_string_lossy(snippet) : NULL,
                                        "engine", engines[(h + (unsigned)k) % 7u]));
        free(title);
        free(snippet);
    }
    json_t *out = qj && results ? json_pack("{s:O,s:i,s:O}", "query", qj, "number_of_results",
                                            N_RESULTS, "results", results)
                                : NULL;
    json_decref(qj);
    json_decref(results);
    fake_reply_set(ret_reply, 200, out);
}

void fake_tools_models(const char *limit, uint64_t seq, struct fake_reply *ret_reply)
{
    long n;
    /* One model exists, so every valid limit lists it. */
    if (limit && fake_parse_long(limit, 1, 1000, &n) < 0) {
        fake_reply_anthropic_error(ret_reply, 400, NULL, "limit: Input should be 1..1000", seq);
        return;
    }
    const char *id = "claude-sonnet-4-20250514";
    fake_reply_set(ret_reply, 200,
                   json_pack("{s:[{s:s,s:s,s:s,s:s}],s:b,s:s,s:s}", "data", "type", "model", "id",
                             id, "display_name", "Claude Sonnet 4", "created_at",
                             "2025-05-14T00:00:00Z", "has_more", 0, "first_id", id, "last_id", id));
}
