/*
 * fuzz_tools.c — libFuzzer target for what the tool backends and the LLM API
 * send back besides message bodies: SearXNG result bodies (web_search_parse),
 * Open-Meteo geocoding and forecast bodies (weather_parse_geocoding, then
 * weather_parse_forecast with the place it found, as src/engine/tools_exec.c
 * chains them), and the retry-after / retry-after-ms / x-should-retry header
 * values (src/resilience/backoff.c).
 *
 * The model's own tool input goes through here too: web_search_input and
 * weather_input, then the URLs built from what they accept.
 *
 * Every input is fed to every parser: the whole input as a body and as a
 * tool_use input object, and its first three lines as header values
 * (retry-after-ms, retry-after, x-should-retry), each cut as
 * src/engine/call.c cuts captured headers. So a seed can be a real body, a
 * tool input or a few header lines, and the fuzzer can grow either. Checks
 * the promises of the headers: result kinds matching return codes, text for
 * the model that is valid UTF-8 (with no control characters but newlines
 * where the header says they are replaced), places with finite in-range
 * coordinates, URLs whose encoded part decodes back to the input, delays in
 * range.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agentd/backoff.h"
#include "agentd/tool_result.h"
#include "agentd/urlenc.h"
#include "agentd/weather.h"
#include "agentd/web_search.h"
#include "fuzz_common.h"

/* TOOL_MAX_RESPONSE_BYTES in src/engine/tools_exec.c: downloads stop there. */
#define FUZZ_BODY_CAP ((size_t)2 * 1024 * 1024)
/* src/engine/call.c keeps header values in CALL_HDR_VALUE_MAX (128) bytes and
 * x-should-retry in 16, NUL included (include/agentd/call.h). */
#define FUZZ_HDR_CAP    ((size_t)127)
#define FUZZ_SHOULD_CAP ((size_t)15)
/* Where the engine's tool calls go in the integration tests (tests/fake). */
#define FUZZ_BASE "http://127.0.0.1:8081"
/* A wall clock of late 2025, and the epoch, as now_epoch_ms. */
#define FUZZ_NOW_MS ((int64_t)1764288000000)

/* Text for the model: valid UTF-8, bounded, no control characters except the
 * newlines the list format itself uses. */
static void check_model_text(const struct tool_result *r, size_t max)
{
    FUZZ_CHECK(r->text != NULL);
    size_t n = strlen(r->text);
    FUZZ_CHECK(n <= max);
    FUZZ_CHECK(fuzz_utf8_ok(r->text, n));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r->text[i];
        FUZZ_CHECK((c >= 0x20 && c != 0x7f) || c == '\n');
    }
}

/* A message about the model's input: bounded, valid UTF-8 (it may quote a
 * key with control characters; the engine sends it JSON-escaped). */
static void check_input_error(const struct tool_result *r)
{
    FUZZ_CHECK(r->kind == TOOL_INPUT_ERROR && r->text != NULL);
    size_t n = strlen(r->text);
    FUZZ_CHECK(n <= 512);
    FUZZ_CHECK(fuzz_utf8_ok(r->text, n));
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lowercase hex is not what urlenc.h promises */
}

/* url is prefix + urlenc(value) + suffix: the middle holds only unreserved
 * characters and %XX and decodes back to value, so no byte of the value can
 * change the URL's structure. */
static void check_url(const char *url, const char *prefix, const char *value, const char *suffix)
{
    size_t ulen = strlen(url), plen = strlen(prefix), slen = strlen(suffix);
    FUZZ_CHECK(ulen >= plen + slen);
    FUZZ_CHECK(memcmp(url, prefix, plen) == 0);
    FUZZ_CHECK(memcmp(url + ulen - slen, suffix, slen) == 0);
    const char *v = value;
    for (size_t i = plen; i < ulen - slen; i++, v++) {
        char c = url[i];
        FUZZ_CHECK(*v != '\0'); /* more encoded characters than the value has */
        if (c == '%') {
            FUZZ_CHECK(i + 2 < ulen - slen);
            int hi = hex_value(url[i + 1]), lo = hex_value(url[i + 2]);
            FUZZ_CHECK(hi >= 0 && lo >= 0);
            FUZZ_CHECK((unsigned char)*v == (unsigned)(hi * 16 + lo));
            i += 2;
        } else {
            FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~');
            FUZZ_CHECK(*v == c);
        }
    }
    FUZZ_CHECK(*v == '\0');
}

static void check_forecast_url(const struct weather_place *p)
{
    char *url = weather_build_forecast_url(FUZZ_BASE "/", p->latitude, p->longitude);
    if (!url)
        return; /* ENOMEM */
    static const char prefix[] = FUZZ_BASE "/v1/forecast?";
    double lat, lon;
    int end = -1;
    FUZZ_CHECK(strncmp(url, prefix, sizeof(prefix) - 1) == 0);
    FUZZ_CHECK(sscanf(url + sizeof(prefix) - 1,
                      "latitude=%lf&longitude=%lf&current=temperature_2m,wind_speed_10m,"
                      "weather_code%n",
                      &lat, &lon, &end) == 2);
    FUZZ_CHECK(end > 0 && url[sizeof(prefix) - 1 + (size_t)end] == '\0');
    FUZZ_CHECK(fabs(lat - p->latitude) <= 0.00005 + 1e-9);
    FUZZ_CHECK(fabs(lon - p->longitude) <= 0.00005 + 1e-9);
    free(url);
}

/* The whole input as the tool_use "input" object the model sent (parsed the
 * way anthropic_parse_response parses it). */
static void fuzz_tool_inputs(const char *body, size_t len)
{
    json_t *in = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!in)
        return;
    for (int k = 0; k < 2; k++) {
        struct tool_result r = {0};
        const char *v = NULL;
        int rc = k == 0 ? web_search_input(in, &v, &r) : weather_input(in, &v, &r);
        FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
        if (rc == -EINVAL)
            check_input_error(&r);
        if (rc != 0) {
            tool_result_clear(&r);
            continue;
        }
        /* Exactly one member, a string of 1..max bytes, no NUL, not blank. */
        FUZZ_CHECK(r.text == NULL && v != NULL);
        FUZZ_CHECK(json_object_size(in) == 1);
        size_t n = strlen(v);
        FUZZ_CHECK(n >= 1 &&
                   n <= (k == 0 ? WEB_SEARCH_MAX_QUERY_BYTES : WEATHER_MAX_LOCATION_BYTES));
        FUZZ_CHECK(json_string_length(json_object_get(in, k == 0 ? "query" : "location")) == n);
        bool blank = true;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)v[i] > 0x20 && v[i] != 0x7f)
                blank = false;
        FUZZ_CHECK(!blank);
        char *url = k == 0 ? web_search_build_url(FUZZ_BASE "/", v)
                           : weather_build_geocoding_url(FUZZ_BASE, v);
        if (url) {
            if (k == 0)
                check_url(url, FUZZ_BASE "/search?q=", v, "&format=json");
            else
                check_url(url, FUZZ_BASE "/v1/search?name=", v, "&count=1");
            free(url);
        }
        /* What the model sees about an unknown place quotes the location. */
        struct weather_place place;
        rc = weather_parse_geocoding("{}", 2, v, &place, &r);
        FUZZ_CHECK(rc == -ENOENT || rc == -ENOMEM);
        if (rc == -ENOENT)
            check_model_text(&r, 1024);
        tool_result_clear(&r);
    }
    json_decref(in);
}

static void check_place(const struct weather_place *p)
{
    FUZZ_CHECK(fuzz_terminated(p->name, sizeof(p->name)));
    FUZZ_CHECK(fuzz_terminated(p->country, sizeof(p->country)));
    FUZZ_CHECK(p->name[0] != '\0');
    FUZZ_CHECK(fuzz_utf8_ok(p->name, strlen(p->name)));
    FUZZ_CHECK(fuzz_utf8_ok(p->country, strlen(p->country)));
    for (const char *s = p->name; *s; s++)
        FUZZ_CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
    for (const char *s = p->country; *s; s++)
        FUZZ_CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
    FUZZ_CHECK(isfinite(p->latitude) && p->latitude >= -90.0 && p->latitude <= 90.0);
    FUZZ_CHECK(isfinite(p->longitude) && p->longitude >= -180.0 && p->longitude <= 180.0);
}

static void fuzz_search(const char *body, size_t len)
{
    struct tool_result r = {0};
    int rc = web_search_parse(body, len, "weather in paris", &r);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(r.kind == TOOL_OK);
        /* 5 results of title + url + snippet at their caps, plus the framing. */
        check_model_text(&r, 16384);
    } else if (rc == -EBADMSG) {
        FUZZ_CHECK(r.kind == TOOL_SYSTEM_ERROR && r.text != NULL);
    }
    tool_result_clear(&r);
}

static void fuzz_weather(const char *body, size_t len)
{
    static const struct weather_place fallback = {"Seattle", "United States", 47.6062, -122.3321};
    struct weather_place place;
    struct tool_result r = {0};

    memset(&place, 'X', sizeof(place));
    int rc = weather_parse_geocoding(body, len, "Seattle", &place, &r);
    FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EBADMSG || rc == -ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(r.text == NULL); /* ret untouched on success */
        check_place(&place);
        check_forecast_url(&place);
    } else if (rc == -ENOENT) {
        FUZZ_CHECK(r.kind == TOOL_INPUT_ERROR);
        check_model_text(&r, 1024);
    } else if (rc == -EBADMSG) {
        FUZZ_CHECK(r.kind == TOOL_SYSTEM_ERROR && r.text != NULL);
    }
    tool_result_clear(&r);

    /* The engine only asks for a forecast once it has a place. */
    r = (struct tool_result){0};
    rc = weather_parse_forecast(body, len, rc == 0 ? &place : &fallback, &r);
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(r.kind == TOOL_OK);
        /* Bounded by the place, units and time caps and two %.1f readings
         * (|value| <= 1000, src/tools/weather.c). */
        check_model_text(&r, 2048);
    } else if (rc == -EBADMSG) {
        FUZZ_CHECK(r.kind == TOOL_SYSTEM_ERROR && r.text != NULL);
    }
    tool_result_clear(&r);
}

/* Line i (0-based) of the input, cut to cap bytes, as a C string; NULL when
 * the input has fewer lines (the header was absent). */
static char *header_line(const uint8_t *data, size_t size, int i, size_t cap)
{
    const uint8_t *p = data, *end = data + size;
    for (; i > 0; i--) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n == 0 && !nl && p == end)
        return NULL;
    return fuzz_cstr(p, n, cap);
}

static void check_delay(int64_t d)
{
    FUZZ_CHECK(d == -1 || (d >= 0 && d <= BACKOFF_RETRY_AFTER_MAX_MS));
}

static void fuzz_headers(const uint8_t *data, size_t size)
{
    char *ms = header_line(data, size, 0, FUZZ_HDR_CAP);
    char *ra = header_line(data, size, 1, FUZZ_HDR_CAP);
    char *sr = header_line(data, size, 2, FUZZ_SHOULD_CAP);

    check_delay(backoff_retry_after_ms(ms, ra, FUZZ_NOW_MS));
    check_delay(backoff_retry_after_ms(NULL, ms, FUZZ_NOW_MS));
    check_delay(backoff_retry_after_ms(NULL, ms, 0));
    check_delay(backoff_retry_after_ms(NULL, ra, FUZZ_NOW_MS));
    /* A valid retry-after-ms wins over retry-after. */
    int64_t only_ms = backoff_retry_after_ms(ms, NULL, FUZZ_NOW_MS);
    if (only_ms >= 0)
        FUZZ_CHECK(backoff_retry_after_ms(ms, ra, FUZZ_NOW_MS) == only_ms);
    for (int k = 0; k < 3; k++) {
        const char *v = k == 0 ? ms : k == 1 ? ra : sr;
        int s = backoff_parse_should_retry(v);
        FUZZ_CHECK(s >= -1 && s <= 1);
    }
    free(ms);
    free(ra);
    free(sr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_enter(data, size, FUZZ_BODY_CAP);
    if (!body)
        return 0;
    fuzz_search(body, size);
    fuzz_weather(body, size);
    fuzz_tool_inputs(body, size);
    free(body);
    fuzz_headers(data, size);
    return 0;
}
