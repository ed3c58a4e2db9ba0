/*
 * fake_util.c — small shared pieces of the fake upstream: route names,
 * reply helpers, the Anthropic error body, and UTF-8 clean-up for strings
 * that come off the wire and must go into JSON.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[FAKE_ROUTE_COUNT] = {
    [FAKE_ROUTE_MESSAGES] = "messages",   [FAKE_ROUTE_MODELS] = "models",
    [FAKE_ROUTE_GEOCODING] = "geocoding", [FAKE_ROUTE_FORECAST] = "forecast",
    [FAKE_ROUTE_SEARCH] = "search",       [FAKE_ROUTE_ADMIN] = "admin",
    [FAKE_ROUTE_UNKNOWN] = "unknown",
};

const char *fake_route_name(enum fake_route route)
{
    if ((unsigned)route >= FAKE_ROUTE_COUNT)
        return "unknown";
    return route_names[route];
}

enum fake_route fake_route_of_path(const char *path)
{
    if (strcmp(path, "/v1/messages") == 0)
        return FAKE_ROUTE_MESSAGES;
    if (strcmp(path, "/v1/models") == 0)
        return FAKE_ROUTE_MODELS;
    if (strcmp(path, "/v1/search") == 0)
        return FAKE_ROUTE_GEOCODING;
    if (strcmp(path, "/v1/forecast") == 0)
        return FAKE_ROUTE_FORECAST;
    if (strcmp(path, "/search") == 0)
        return FAKE_ROUTE_SEARCH;
    if (strcmp(path, "/_admin") == 0 || strncmp(path, "/_admin/", 8) == 0)
        return FAKE_ROUTE_ADMIN;
    return FAKE_ROUTE_UNKNOWN;
}

int fake_route_parse(const char *name, enum fake_route *ret_route)
{
    for (int r = 0; r < FAKE_ROUTE_COUNT; r++) {
        if (strcmp(name, route_names[r]) == 0) {
            *ret_route = (enum fake_route)r;
            return 0;
        }
    }
    return -EINVAL;
}

char *fake_strdup_utf8(const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    json_t *probe = json_string(copy);
    if (probe) {
        json_decref(probe);
        return copy;
    }
    for (char *p = copy; *p; p++) {
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    }
    return copy;
}

json_t *fake_json_string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *clean = fake_strdup_utf8(s);
    if (!clean)
        return NULL;
    j = json_string(clean);
    free(clean);
    return j;
}

void fake_reply_set(struct fake_reply *r, int status, json_t *json)
{
    json_decref(r->json);
    r->json = json;
    r->text = NULL;
    r->content_type = NULL;
    r->status = status;
    if (!json) {
        /* Out of memory while building the body: say so without allocating. */
        r->status = 500;
        r->text = "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"out of "
                  "memory\"}}";
    }
}

void fake_reply_clear(struct fake_reply *r)
{
    if (!r)
        return;
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
    r->delay_ms = -1;
}

const char *fake_anthropic_error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 409:
        return "conflict_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

json_t *fake_anthropic_error(const char *type, const char *message, uint64_t seq)
{
    char request_id[48];
    snprintf(request_id, sizeof(request_id), "req_fake_%llu", (unsigned long long)seq);
    json_t *msg = fake_json_string_lossy(message);
    if (!msg)
        return NULL;
    return json_pack("{s:s,s:{s:s,s:o},s:s}", "type", "error", "error", "type", type, "message",
                     msg, "request_id", request_id);
}

void fake_reply_anthropic_error(struct fake_reply *r, int status, const char *type,
                                const char *message, uint64_t seq)
{
    if (!type)
        type = fake_anthropic_error_type(status);
    fake_reply_set(r, status, fake_anthropic_error(type, message, seq));
}

void fake_reply_plain_error(struct fake_reply *r, int status, const char *message)
{
    json_t *msg = fake_json_string_lossy(message);
    fake_reply_set(r, status, msg ? json_pack("{s:b,s:o}", "error", 1, "reason", msg) : NULL);
}

int fake_parse_long(const char *s, long min, long max, long *ret)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}
