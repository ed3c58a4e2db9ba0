/*
 * fake_stream.c — POST /v1/messages with "stream": true: the planned 200
 * message sent as the Messages streaming events (message_start, ping, one
 * content_block_start / deltas / content_block_stop per block, message_delta,
 * message_stop), with the stream faults of README.md ("stream": {"error_after",
 * "cut_after", "delta_ms"}): an `error` event after N deltas, the connection
 * cut after N deltas, a pause before every delta.
 *
 * The events are rendered up front (pure, fake_stream_events); the content
 * reader hands them out one per call, and parks the connection on the fake's
 * timer (suspend, resumed when due) for a pause, so a slow stream holds no
 * thread.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of text (or tool input JSON) per delta, cut back to a character boundary. */
#define FAKE_STREAM_DELTA_BYTES 8
#define FAKE_STREAM_MAX_N       1000000

struct fake_stream {
    json_t *events; /* array of strings: each one whole SSE event */
    json_t *deltas; /* array of booleans: whether events[i] is a content_block_delta */
    long error_after, cut_after, delta_ms; /* -1 = off */
    size_t next;                           /* event to send */
    size_t offset;                         /* bytes of it sent */
    long deltas_sent;
    bool paused; /* the pause before events[next] is over */
    bool ended;
    struct fake_timer *timer;
    struct fake_parked parked;
};

int fake_stream_spec_check(const json_t *spec, char *err, size_t err_bytes)
{
    static const char *const keys[] = {"error_after", "cut_after", "delta_ms"};
    if (!json_is_object(spec)) {
        snprintf(err, err_bytes, "stream: expected an object");
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)spec, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            known = known || strcmp(key, keys[i]) == 0;
        long max = strcmp(key, "delta_ms") == 0 ? FAKE_MAX_DELAY_MS : FAKE_STREAM_MAX_N;
        if (!known || !json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > max) {
            snprintf(err, err_bytes,
                     "stream.%.32s: expected error_after, cut_after or delta_ms, "
                     "a non-negative integer",
                     key);
            return -EINVAL;
        }
    }
    if (json_object_get(spec, "error_after") && json_object_get(spec, "cut_after")) {
        snprintf(err, err_bytes, "stream: error_after and cut_after are exclusive");
        return -EINVAL;
    }
    return 0;
}

static int push(struct fake_stream *st, const char *name, json_t *data, bool delta)
{
    if (!data)
        return -ENOMEM;
    char *d = json_dumps(data, FAKE_JSON_DUMP_FLAGS);
    json_decref(data);
    if (!d)
        return -ENOMEM;
    size_t n = strlen(name) + strlen(d) + 32;
    char *ev = malloc(n);
    if (!ev) {
        free(d);
        return -ENOMEM;
    }
    snprintf(ev, n, "event: %s\ndata: %s\n\n", name, d);
    free(d);
    int rc = json_array_append_new(st->events, json_string(ev)) < 0 ||
                     json_array_append_new(st->deltas, json_boolean(delta)) < 0
                 ? -ENOMEM
                 : 0;
    free(ev);
    return rc;
}

/* Splits s into deltas of about FAKE_STREAM_DELTA_BYTES, never inside a UTF-8 character. */
static int push_pieces(struct fake_stream *st, size_t index, const char *s, const char *type,
                       const char *field)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = len - i < FAKE_STREAM_DELTA_BYTES ? len - i : FAKE_STREAM_DELTA_BYTES;
        while (i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80)
            n++;
        json_t *delta = json_pack("{s:s, s:s%}", "type", type, field, s + i, n);
        int rc = push(st, "content_block_delta",
                      json_pack("{s:s, s:I, s:o*}", "type", "content_block_delta", "index",
                                (json_int_t)index, "delta", delta),
                      true);
        if (rc < 0)
            return rc;
        i += n;
    }
    return 0;
}

static int push_block(struct fake_stream *st, size_t index, const json_t *block)
{
    const char *type = json_string_value(json_object_get(block, "type"));
    json_t *start = json_deep_copy(block);
    int rc;
    if (!start)
        return -ENOMEM;
    if (type && strcmp(type, "text") == 0)
        json_object_set_new(start, "text", json_string(""));
    else if (type && strcmp(type, "tool_use") == 0)
        json_object_set_new(start, "input", json_object());
    rc = push(st, "content_block_start",
              json_pack("{s:s, s:I, s:o}", "type", "content_block_start", "index",
                        (json_int_t)index, "content_block", start),
              false);
    if (rc == 0 && type && strcmp(type, "text") == 0)
        rc = push_pieces(st, index, json_string_value(json_object_get(block, "text")), "text_delta",
                         "text");
    if (rc == 0 && type && strcmp(type, "tool_use") == 0) {
        char *input = json_dumps(json_object_get(block, "input"), FAKE_JSON_DUMP_FLAGS);
        rc = input ? push_pieces(st, index, input, "input_json_delta", "partial_json") : -ENOMEM;
        free(input);
    }
    if (rc == 0)
        rc = push(st, "content_block_stop",
                  json_pack("{s:s, s:I}", "type", "content_block_stop", "index", (json_int_t)index),
                  false);
    return rc;
}

static long spec_long(const json_t *spec, const char *key)
{
    json_t *v = json_object_get(spec, key);
    return v ? (long)json_integer_value(v) : -1;
}

struct fake_stream *fake_stream_new(const json_t *message, const json_t *spec,
                                    struct fake_timer *timer, struct MHD_Connection *conn)
{
    struct fake_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->events = json_array();
    st->deltas = json_array();
    st->timer = timer;
    st->parked.conn = conn;
    st->error_after = spec_long(spec, "error_after");
    st->cut_after = spec_long(spec, "cut_after");
    st->delta_ms = spec_long(spec, "delta_ms");
    json_t *head = json_deep_copy(message);
    json_t *usage = json_object_get(message, "usage");
    const json_t *content = json_object_get(message, "content");
    int rc = st->events && st->deltas && head ? 0 : -ENOMEM;
    if (rc == 0) {
        json_object_set_new(head, "content", json_array());
        json_object_set_new(head, "stop_reason", json_null());
        json_object_set_new(head, "stop_sequence", json_null());
        json_object_set_new(head, "usage",
                            json_pack("{s:O*, s:i}", "input_tokens",
                                      json_object_get(usage, "input_tokens"), "output_tokens", 1));
        rc = push(st, "message_start",
                  json_pack("{s:s, s:O}", "type", "message_start", "message", head), false);
        if (rc == 0)
            rc = push(st, "ping", json_pack("{s:s}", "type", "ping"), false);
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(content); i++)
        rc = push_block(st, i, json_array_get(content, i));
    if (rc == 0)
        rc = push(st, "message_delta",
                  json_pack("{s:s, s:{s:O*, s:O*}, s:{s:O*}}", "type", "message_delta", "delta",
                            "stop_reason", json_object_get(message, "stop_reason"), "stop_sequence",
                            json_object_get(message, "stop_sequence"), "usage", "output_tokens",
                            json_object_get(usage, "output_tokens")),
                  false);
    if (rc == 0)
        rc = push(st, "message_stop", json_pack("{s:s}", "type", "message_stop"), false);
    json_decref(head);
    if (rc < 0) {
        fake_stream_free(st);
        return NULL;
    }
    return st;
}

void fake_stream_free(void *cls)
{
    struct fake_stream *st = cls;
    if (!st)
        return;
    json_decref(st->events);
    json_decref(st->deltas);
    free(st);
}

static const char k_error_event[] =
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
    "\"message\":\"Overloaded (injected after the stream began)\"}}\n\n";

static ssize_t copy_out(const char *s, size_t len, size_t *offset, char *buf, size_t max)
{
    size_t n = len - *offset < max ? len - *offset : max;
    memcpy(buf, s + *offset, n);
    *offset += n;
    return (ssize_t)n;
}

ssize_t fake_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct fake_stream *st = cls;
    (void)pos;
    if (atomic_load(&st->parked.wake) == FAKE_WAKE_SHUTDOWN)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (st->ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (st->next >= json_array_size(st->events))
        return MHD_CONTENT_READER_END_OF_STREAM;
    bool delta = json_is_true(json_array_get(st->deltas, st->next));
    if (delta && st->offset == 0) {
        if (st->cut_after >= 0 && st->deltas_sent >= st->cut_after)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* no terminating chunk: a broken body */
        if (st->error_after >= 0 && st->deltas_sent >= st->error_after) {
            size_t off = 0;
            ssize_t n = copy_out(k_error_event, sizeof(k_error_event) - 1, &off, buf, max);
            st->ended = off == sizeof(k_error_event) - 1;
            return st->ended ? n : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (st->delta_ms > 0 && !st->paused && st->timer) {
            st->paused = true;
            st->parked.due_ms = fake_clock_ms() + (uint64_t)st->delta_ms;
            st->parked.hang = false;
            st->parked.fd = -1;
            if (fake_timer_park(st->timer, &st->parked) < 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            return 0; /* suspended: called again once resumed */
        }
    }
    const char *ev = json_string_value(json_array_get(st->events, st->next));
    size_t len = strlen(ev);
    ssize_t n = copy_out(ev, len, &st->offset, buf, max);
    if (st->offset == len) {
        st->next++;
        st->offset = 0;
        st->paused = false;
        if (delta)
            st->deltas_sent++;
    }
    return n;
}
