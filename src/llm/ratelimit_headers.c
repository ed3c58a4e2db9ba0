/*
 * ratelimit_headers.c — reads the Anthropic rate-limit headers (see ratelimit_headers.h).
 */
#include "agentd/ratelimit_headers.h"

#include "agentd/clock.h"

#include <string.h>
#include <strings.h>

#define RATELIMIT_PREFIX "anthropic-ratelimit-"

static const char *const kind_names[RATELIMIT__COUNT] = {
    [RATELIMIT_REQUESTS] = "requests",
    [RATELIMIT_TOKENS] = "tokens",
    [RATELIMIT_INPUT_TOKENS] = "input-tokens",
    [RATELIMIT_OUTPUT_TOKENS] = "output-tokens",
};

void ratelimit_headers_clear(struct ratelimit_headers *h)
{
    memset(h, 0, sizeof(*h));
}

/* Copies the trimmed value into dst; overlong values are dropped, not cut. */
static void take_value(char *dst, const char *v, const char *end)
{
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t n = (size_t)(end - v);
    if (n >= RATELIMIT_VALUE_MAX)
        n = 0;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

bool ratelimit_headers_capture(struct ratelimit_headers *h, const char *line, size_t len)
{
    size_t plen = strlen(RATELIMIT_PREFIX);
    const char *colon = memchr(line, ':', len);
    if (!colon || (size_t)(colon - line) <= plen || strncasecmp(line, RATELIMIT_PREFIX, plen) != 0)
        return false;
    const char *name = line + plen;
    size_t name_len = (size_t)(colon - name);
    for (int k = 0; k < RATELIMIT__COUNT; k++) {
        size_t klen = strlen(kind_names[k]);
        if (name_len <= klen + 1 || strncasecmp(name, kind_names[k], klen) != 0 ||
            name[klen] != '-')
            continue;
        const char *field = name + klen + 1;
        size_t field_len = name_len - klen - 1;
        char *dst = NULL;
        if (field_len == 5 && strncasecmp(field, "limit", 5) == 0)
            dst = h->limit[k];
        else if (field_len == 9 && strncasecmp(field, "remaining", 9) == 0)
            dst = h->remaining[k];
        else if (field_len == 5 && strncasecmp(field, "reset", 5) == 0)
            dst = h->reset[k];
        if (!dst)
            continue;
        take_value(dst, colon + 1, line + len);
        return true;
    }
    return false;
}

/* Reads exactly n digits at *p into *ret. */
static bool digits(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *ret = v;
    return true;
}

static bool expect(const char **p, const char *any_of)
{
    if (!**p || !strchr(any_of, **p))
        return false;
    (*p)++;
    return true;
}

int64_t ratelimit_parse_rfc3339_ms(const char *s)
{
    int y, mo, d, h, mi, sec, oh = 0, om = 0;
    const char *p = s;
    if (!s || !digits(&p, 4, &y) || !expect(&p, "-") || !digits(&p, 2, &mo) || !expect(&p, "-") ||
        !digits(&p, 2, &d) || !expect(&p, "Tt ") || !digits(&p, 2, &h) || !expect(&p, ":") ||
        !digits(&p, 2, &mi) || !expect(&p, ":") || !digits(&p, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t ms = 0;
    if (*p == '.') {
        p++;
        int scale = 100, n = 0;
        for (; *p >= '0' && *p <= '9'; p++, n++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
        if (n == 0)
            return -1;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (!digits(&p, 2, &oh) || !expect(&p, ":") || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    int64_t t = clock_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (oh * 3600 + om * 60);
    /* A reset is never before 1970: -1 stays the one "not a time" answer. */
    return t < 0 ? -1 : t * 1000 + ms;
}

/* A non-negative decimal count, or -1. */
static int64_t parse_count(const char *s)
{
    int64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > INT64_MAX / 10 - 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

int64_t ratelimit_wait_ms(const struct ratelimit_headers *h, int64_t now_wall_ms,
                          int64_t output_tokens_per_call, int64_t cap_ms)
{
    int64_t wait = 0;
    for (int k = 0; k < RATELIMIT__COUNT; k++) {
        int64_t left = parse_count(h->remaining[k]);
        int64_t need =
            k == RATELIMIT_OUTPUT_TOKENS && output_tokens_per_call > 0 ? output_tokens_per_call : 1;
        if (left < 0 || left >= need)
            continue;
        int64_t reset = ratelimit_parse_rfc3339_ms(h->reset[k]);
        if (reset < 0 || reset <= now_wall_ms)
            continue;
        /* The bucket refills (limit - left) by the reset; one call needs (need - left) of it. */
        double full_ms = (double)(reset - now_wall_ms);
        int64_t size = parse_count(h->limit[k]);
        double ms = size > left && need < size
                        ? full_ms * (double)(need - left) / (double)(size - left)
                        : full_ms;
        int64_t w = ms >= (double)cap_ms ? cap_ms : (int64_t)ms + ((double)(int64_t)ms < ms);
        if (w > wait)
            wait = w;
    }
    return wait < cap_ms ? wait : cap_ms;
}
