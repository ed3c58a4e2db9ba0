/*
 * anthropic_stream.c — a streamed Messages API answer put back together
 * (see include/agentd/anthropic_stream.h). The SSE framing is sse.c's; this
 * file gives each event its meaning and keeps the blocks as plain buffers
 * (text grows by appending, never by rebuilding a JSON string), turning them
 * into the non-streaming message body only at the end.
 */
#include "agentd/anthropic_stream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agentd/sse.h"
#include "agentd/text.h"

enum as_kind {
    AS_TEXT,
    AS_TOOL_USE,
    AS_OTHER,
};

struct as_block {
    enum as_kind kind;
    json_t *start; /* the content_block of content_block_start (owned) */
    char *buf;     /* text, or the tool_use input's JSON so far */
    size_t len, alloc;
    json_t *input; /* tool_use: the parsed input, at content_block_stop */
    bool stopped;
};

struct anthropic_stream {
    size_t max_bytes, fed;
    struct sse_parser sse;
    json_t *message; /* message_start's message; NULL until then */
    struct as_block *blocks;
    size_t n_blocks, blocks_alloc;
    bool complete;
    int failed; /* 0, or the error every later feed returns */
    char why[256];
    struct llm_error error;
    /* the current feed's consumer */
    anthropic_text_fn text_fn;
    void *text_arg;
};

__attribute__((format(printf, 2, 3))) static int as_bad(struct anthropic_stream *s, const char *fmt,
                                                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    return -EBADMSG;
}

struct anthropic_stream *anthropic_stream_new(size_t max_bytes)
{
    struct anthropic_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->max_bytes = max_bytes ? max_bytes : 1;
    sse_parser_init(&s->sse, s->max_bytes);
    return s;
}

static void as_clear_blocks(struct anthropic_stream *s)
{
    for (size_t i = 0; i < s->n_blocks; i++) {
        json_decref(s->blocks[i].start);
        json_decref(s->blocks[i].input);
        free(s->blocks[i].buf);
    }
    s->n_blocks = 0;
}

void anthropic_stream_reset(struct anthropic_stream *s)
{
    as_clear_blocks(s);
    json_decref(s->message);
    s->message = NULL;
    s->fed = 0;
    s->complete = false;
    s->failed = 0;
    s->why[0] = '\0';
    memset(&s->error, 0, sizeof(s->error));
    sse_parser_reset(&s->sse);
}

struct anthropic_stream *anthropic_stream_free(struct anthropic_stream *s)
{
    if (!s)
        return NULL;
    anthropic_stream_reset(s);
    free(s->blocks);
    sse_parser_clear(&s->sse);
    free(s);
    return NULL;
}

bool anthropic_stream_complete(const struct anthropic_stream *s)
{
    return s->complete && !s->failed;
}

/* ---- events ------------------------------------------------------------------------------ */

static int as_message_start(struct anthropic_stream *s, json_t *ev)
{
    json_t *m = json_object_get(ev, "message");
    if (s->message)
        return as_bad(s, "message_start: a second one");
    if (!json_is_object(m))
        return as_bad(s, "message_start: message is not an object");
    s->message = json_deep_copy(m);
    if (!s->message)
        return -ENOMEM;
    json_object_del(s->message, "content");
    return 0;
}

/* The block an event at "index" is about: open, within what was started. */
static struct as_block *as_block_at(struct anthropic_stream *s, json_t *ev, const char *what)
{
    json_t *ix = json_object_get(ev, "index");
    if (!json_is_integer(ix) || json_integer_value(ix) < 0 ||
        (size_t)json_integer_value(ix) >= s->n_blocks) {
        as_bad(s, "%s: index is not a started block", what);
        return NULL;
    }
    struct as_block *b = &s->blocks[json_integer_value(ix)];
    if (b->stopped) {
        as_bad(s, "%s: block %lld already stopped", what, (long long)json_integer_value(ix));
        return NULL;
    }
    return b;
}

static int as_block_start(struct anthropic_stream *s, json_t *ev)
{
    json_t *ix = json_object_get(ev, "index");
    json_t *cb = json_object_get(ev, "content_block");
    if (!json_is_integer(ix) || json_integer_value(ix) != (json_int_t)s->n_blocks)
        return as_bad(s, "content_block_start: index %s, expected %zu",
                      json_is_integer(ix) ? "out of order" : "missing", s->n_blocks);
    const char *type = json_string_value(json_object_get(cb, "type"));
    if (!json_is_object(cb) || !type)
        return as_bad(s, "content_block_start: content_block without a type");
    if (s->n_blocks >= ANTHROPIC_STREAM_MAX_BLOCKS)
        return as_bad(s, "more than %d content blocks", ANTHROPIC_STREAM_MAX_BLOCKS);
    if (s->n_blocks == s->blocks_alloc) {
        size_t want = s->blocks_alloc ? s->blocks_alloc * 2 : 4;
        struct as_block *n = realloc(s->blocks, want * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->blocks = n;
        s->blocks_alloc = want;
    }
    struct as_block *b = &s->blocks[s->n_blocks];
    memset(b, 0, sizeof(*b));
    b->kind = strcmp(type, "text") == 0       ? AS_TEXT
              : strcmp(type, "tool_use") == 0 ? AS_TOOL_USE
                                              : AS_OTHER;
    b->start = json_deep_copy(cb);
    if (!b->start)
        return -ENOMEM;
    s->n_blocks++;
    /* A text block may start with text already (the API sends ""): it is the block's first. */
    const char *t = json_string_value(json_object_get(cb, "text"));
    if (b->kind == AS_TEXT && t && *t) {
        size_t n = json_string_length(json_object_get(cb, "text"));
        b->buf = strdup(t);
        if (!b->buf)
            return -ENOMEM;
        b->len = b->alloc = n;
        if (s->text_fn)
            return s->text_fn(s->text_arg, s->n_blocks - 1, t, n);
    }
    return 0;
}

static int as_append(struct as_block *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->alloc) {
        size_t want = b->alloc ? b->alloc : 256;
        while (want < b->len + n + 1)
            want *= 2;
        char *q = realloc(b->buf, want);
        if (!q)
            return -ENOMEM;
        b->buf = q;
        b->alloc = want;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return 0;
}

static int as_block_delta(struct anthropic_stream *s, json_t *ev)
{
    struct as_block *b = as_block_at(s, ev, "content_block_delta");
    if (!b)
        return -EBADMSG;
    json_t *d = json_object_get(ev, "delta");
    const char *type = json_string_value(json_object_get(d, "type"));
    if (!type)
        return as_bad(s, "content_block_delta: delta without a type");
    if (strcmp(type, "text_delta") == 0) {
        json_t *t = json_object_get(d, "text");
        if (b->kind != AS_TEXT || !json_is_string(t))
            return as_bad(s, "text_delta: not a text block, or no text");
        size_t n = json_string_length(t);
        int r = as_append(b, json_string_value(t), n);
        if (r < 0)
            return r;
        if (n > 0 && s->text_fn)
            return s->text_fn(s->text_arg, (size_t)(b - s->blocks), json_string_value(t), n);
        return 0;
    }
    if (strcmp(type, "input_json_delta") == 0) {
        json_t *pj = json_object_get(d, "partial_json");
        if (b->kind != AS_TOOL_USE || !json_is_string(pj))
            return as_bad(s, "input_json_delta: not a tool_use block, or no partial_json");
        return as_append(b, json_string_value(pj), json_string_length(pj));
    }
    return 0; /* thinking, signature, citations and later kinds: not kept */
}

static int as_block_stop(struct anthropic_stream *s, json_t *ev)
{
    struct as_block *b = as_block_at(s, ev, "content_block_stop");
    if (!b)
        return -EBADMSG;
    b->stopped = true;
    if (b->kind != AS_TOOL_USE)
        return 0;
    if (b->len == 0) {
        b->input = json_object();
        return b->input ? 0 : -ENOMEM;
    }
    json_error_t jerr;
    b->input = json_loadb(b->buf, b->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!b->input)
        return as_bad(s, "tool_use input is not JSON: %s", jerr.text);
    return 0;
}

static int as_message_delta(struct anthropic_stream *s, json_t *ev)
{
    json_t *d = json_object_get(ev, "delta");
    json_t *u = json_object_get(ev, "usage");
    if (!json_is_object(d))
        return as_bad(s, "message_delta: delta is not an object");
    const char *key;
    json_t *v;
    json_object_foreach(d, key, v)
    {
        if (json_object_set(s->message, key, v) < 0)
            return -ENOMEM;
    }
    if (json_is_object(u)) {
        json_t *mu = json_object_get(s->message, "usage");
        if (!json_is_object(mu)) {
            mu = json_object();
            if (!mu || json_object_set_new(s->message, "usage", mu) < 0)
                return -ENOMEM;
        }
        if (json_object_update(mu, u) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int as_error(struct anthropic_stream *s, const char *data, size_t len)
{
    anthropic_parse_error(data, len, &s->error);
    /* The message is cut on a character boundary: reasons end up in JSON. */
    const char *m = s->error.message;
    int n = (int)text_utf8_prefix_len(m, strlen(m), 120);
    snprintf(s->why, sizeof(s->why), "error event after the 200: %.40s: %.*s",
             s->error.type[0] ? s->error.type : "unknown", n, m);
    return -EPROTO;
}

static int as_event(void *arg, const char *name, const char *data, size_t len)
{
    struct anthropic_stream *s = arg;
    (void)name; /* the data's own "type" says the same and is what is trusted */
    if (s->complete)
        return 0; /* nothing follows message_stop that changes the message */
    json_error_t jerr;
    json_t *ev = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!ev)
        return as_bad(s, "event data is not JSON: %s", jerr.text);
    const char *type = json_string_value(json_object_get(ev, "type"));
    int r = 0;
    if (!json_is_object(ev) || !type)
        r = as_bad(s, "event data without a type");
    else if (strcmp(type, "error") == 0)
        r = as_error(s, data, len);
    else if (strcmp(type, "ping") == 0)
        r = 0;
    else if (strcmp(type, "message_start") == 0)
        r = as_message_start(s, ev);
    else if (!s->message)
        r = as_bad(s, "%.40s before message_start", type);
    else if (strcmp(type, "content_block_start") == 0)
        r = as_block_start(s, ev);
    else if (strcmp(type, "content_block_delta") == 0)
        r = as_block_delta(s, ev);
    else if (strcmp(type, "content_block_stop") == 0)
        r = as_block_stop(s, ev);
    else if (strcmp(type, "message_delta") == 0)
        r = as_message_delta(s, ev);
    else if (strcmp(type, "message_stop") == 0)
        s->complete = true;
    json_decref(ev);
    return r;
}

int anthropic_stream_feed(struct anthropic_stream *s, const char *bytes, size_t len,
                          anthropic_text_fn text_fn, void *arg, struct llm_error *ret_error,
                          char *err, size_t errlen)
{
    int r = s->failed;
    if (!r && len > s->max_bytes - s->fed) {
        snprintf(s->why, sizeof(s->why), "streamed answer larger than %zu bytes", s->max_bytes);
        r = -E2BIG;
    }
    if (!r) {
        s->fed += len;
        s->text_fn = text_fn;
        s->text_arg = arg;
        r = sse_parser_feed(&s->sse, bytes, len, as_event, s);
        s->text_fn = NULL;
        s->text_arg = NULL;
        if (r == -E2BIG && !s->why[0])
            snprintf(s->why, sizeof(s->why), "a streamed event larger than %zu bytes",
                     s->max_bytes);
        if (r == -ENOMEM && !s->why[0])
            snprintf(s->why, sizeof(s->why), "out of memory");
        s->failed = r;
    }
    if (r == -EPROTO && ret_error)
        *ret_error = s->error;
    if (r && err && errlen)
        snprintf(err, errlen, "%s", s->why[0] ? s->why : "stream failed");
    return r;
}

/* ---- the message ------------------------------------------------------------------------- */

static json_t *as_block_json(const struct as_block *b)
{
    switch (b->kind) {
    case AS_TEXT:
        return json_pack("{s:s, s:s%}", "type", "text", "text", b->buf ? b->buf : "", b->len);
    case AS_TOOL_USE: {
        json_t *o = json_deep_copy(b->start);
        if (o && json_object_set(o, "input", b->input ? b->input : json_null()) < 0) {
            json_decref(o);
            return NULL;
        }
        return o;
    }
    default:
        return json_deep_copy(b->start);
    }
}

int anthropic_stream_message(const struct anthropic_stream *s, char **ret_body, size_t *ret_len,
                             char *err, size_t errlen)
{
    const char *why = s->failed      ? (s->why[0] ? s->why : "stream failed")
                      : !s->message  ? "stream ended before message_start"
                      : !s->complete ? "stream ended before message_stop"
                                     : NULL;
    if (why) {
        if (err && errlen)
            snprintf(err, errlen, "%s", why);
        return -EBADMSG;
    }
    json_t *m = json_deep_copy(s->message);
    json_t *content = json_array();
    if (!m || !content || json_object_set(m, "content", content) < 0)
        goto oom;
    for (size_t i = 0; i < s->n_blocks; i++) {
        if (!s->blocks[i].stopped) {
            json_decref(m);
            json_decref(content);
            if (err && errlen)
                snprintf(err, errlen, "content block %zu never stopped", i);
            return -EBADMSG;
        }
        json_t *b = as_block_json(&s->blocks[i]);
        if (!b || json_array_append_new(content, b) < 0)
            goto oom;
    }
    json_decref(content);
    char *body = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (!body)
        return -ENOMEM;
    if (ret_len)
        *ret_len = strlen(body);
    *ret_body = body;
    return 0;
oom:
    json_decref(m);
    json_decref(content);
    return -ENOMEM;
}

int anthropic_stream_usage(const struct anthropic_stream *s, struct llm_usage *ret)
{
    if (!s->message)
        return -ENODATA;
    char *m = json_dumps(s->message, JSON_COMPACT);
    if (!m)
        return -ENOMEM;
    int r = anthropic_parse_usage_detail(m, strlen(m), ret) == 0 ? 0 : -ENODATA;
    free(m);
    return r;
}

char *anthropic_stream_request(const char *body)
{
    static const char member[] = "\"stream\":true";
    size_t len = body ? strlen(body) : 0;
    if (len < 2 || body[0] != '{' || body[len - 1] != '}') {
        errno = EINVAL;
        return NULL;
    }
    bool empty = len == 2;
    char *out = malloc(len + sizeof(member) + 1);
    if (!out) {
        errno = ENOMEM;
        return NULL;
    }
    snprintf(out, len + sizeof(member) + 1, "{%s%s%s", member, empty ? "" : ",", body + 1);
    return out;
}
