/*
 * sse.c — incremental text/event-stream parser (see include/agentd/sse.h).
 *
 * Byte by byte on purpose: chunks split lines, line ends and the byte order
 * mark anywhere, and the per-byte state machine is the one place that has to
 * get that right. Buffers grow geometrically up to max_event_bytes.
 */
#include "agentd/sse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

void sse_parser_init(struct sse_parser *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof(*p));
    p->max_event_bytes = max_event_bytes ? max_event_bytes : 1;
}

void sse_parser_reset(struct sse_parser *p)
{
    p->line_len = p->data_len = 0;
    p->has_data = false;
    p->event[0] = '\0';
    p->after_cr = p->started = p->failed = false;
    p->bom_len = 0;
}

void sse_parser_clear(struct sse_parser *p)
{
    free(p->line);
    free(p->data);
    sse_parser_init(p, p->max_event_bytes);
}

/* Makes room for need bytes plus a NUL in *buf, never past max + 1. */
static int sse_reserve(char **buf, size_t *alloc, size_t need, size_t max)
{
    if (need > max)
        return -E2BIG;
    if (need + 1 <= *alloc)
        return 0;
    size_t want = *alloc ? *alloc : 256;
    while (want < need + 1)
        want *= 2;
    if (want > max + 1)
        want = max + 1;
    char *n = realloc(*buf, want);
    if (!n)
        return -ENOMEM;
    *buf = n;
    *alloc = want;
    return 0;
}

static int sse_dispatch(struct sse_parser *p, sse_event_fn fn, void *arg)
{
    if (!p->has_data) {
        p->event[0] = '\0';
        return 0;
    }
    int r = sse_reserve(&p->data, &p->data_alloc, p->data_len, p->max_event_bytes);
    if (r < 0)
        return r;
    p->data[p->data_len] = '\0';
    r = fn(arg, p->event[0] ? p->event : "message", p->data, p->data_len);
    p->data_len = 0;
    p->has_data = false;
    p->event[0] = '\0';
    return r;
}

/* A complete line (without its end). */
static int sse_line(struct sse_parser *p, sse_event_fn fn, void *arg)
{
    const char *l = p->line ? p->line : "";
    size_t n = p->line_len;
    p->line_len = 0;
    if (n == 0)
        return sse_dispatch(p, fn, arg);
    if (l[0] == ':')
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *value = colon ? colon + 1 : l + n;
    size_t value_len = (size_t)(l + n - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 5 && memcmp(l, "event", 5) == 0) {
        size_t k = value_len < SSE_EVENT_NAME_MAX ? value_len : SSE_EVENT_NAME_MAX;
        memcpy(p->event, value, k);
        p->event[k] = '\0';
        return 0;
    }
    if (name_len == 4 && memcmp(l, "data", 4) == 0) {
        size_t extra = (p->has_data ? 1 : 0) + value_len;
        if (extra > p->max_event_bytes - p->data_len)
            return -E2BIG;
        int r = sse_reserve(&p->data, &p->data_alloc, p->data_len + extra, p->max_event_bytes);
        if (r < 0)
            return r;
        if (p->has_data)
            p->data[p->data_len++] = '\n';
        memcpy(p->data + p->data_len, value, value_len);
        p->data_len += value_len;
        p->has_data = true;
    }
    return 0; /* id, retry and unknown fields */
}

static int sse_byte(struct sse_parser *p, char ch, sse_event_fn fn, void *arg)
{
    if (ch == '\n' && p->after_cr) {
        p->after_cr = false;
        return 0;
    }
    p->after_cr = ch == '\r';
    if (ch == '\n' || ch == '\r')
        return sse_line(p, fn, arg);
    int r = sse_reserve(&p->line, &p->line_alloc, p->line_len + 1, p->max_event_bytes);
    if (r < 0)
        return r;
    p->line[p->line_len++] = ch;
    return 0;
}

int sse_parser_feed(struct sse_parser *p, const char *bytes, size_t len, sse_event_fn fn, void *arg)
{
    if (p->failed)
        return -EINVAL;
    size_t i = 0;
    while (!p->started && i < len) {
        if ((unsigned char)bytes[i] == sse_bom[p->bom_len]) {
            i++;
            if (++p->bom_len == sizeof(sse_bom))
                p->started = true;
            continue;
        }
        /* Not a byte order mark: the bytes taken for one were data. */
        p->started = true;
        for (size_t k = 0; k < p->bom_len; k++) {
            int r = sse_byte(p, (char)sse_bom[k], fn, arg);
            if (r < 0) {
                p->failed = true;
                return r;
            }
        }
    }
    for (; i < len; i++) {
        int r = sse_byte(p, bytes[i], fn, arg);
        if (r < 0) {
            p->failed = true;
            return r;
        }
    }
    return 0;
}
