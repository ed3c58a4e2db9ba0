/*
 * checkpoint.c — encoding and strict decoding of a durable run's state (see
 * checkpoint.h).
 */
#include "agentd/checkpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checkpoint_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int checkpoint_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static json_t *array_or_empty(json_t *a)
{
    return a ? json_incref(a) : json_array();
}

char *checkpoint_encode(const struct run_checkpoint *cp, size_t max_bytes, size_t *ret_len)
{
    if (!cp || !json_is_array(cp->messages)) {
        errno = EINVAL;
        return NULL;
    }
    json_t *o = json_pack(
        "{s:i, s:O, s:i, s:i, s:i, s:I, s:I, s:o, s:o, s:o, s:s?, s:s?}", "v", CHECKPOINT_VERSION,
        "messages", cp->messages, "iterations", cp->iterations, "llm_calls", cp->llm_calls,
        "llm_attempts", cp->llm_attempts, "input_tokens", (json_int_t)cp->input_tokens,
        "output_tokens", (json_int_t)cp->output_tokens, "tool_calls",
        array_or_empty(cp->tool_calls), "degraded", array_or_empty(cp->degraded), "results",
        array_or_empty(cp->results), "last_text", cp->last_text, "stop_reason", cp->stop_reason);
    if (!o) {
        errno = ENOMEM;
        return NULL;
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text) {
        errno = ENOMEM;
        return NULL;
    }
    size_t len = strlen(text);
    if (len > max_bytes) {
        free(text);
        errno = E2BIG;
        return NULL;
    }
    *ret_len = len;
    return text;
}

static bool get_count(json_t *o, const char *name, int64_t *ret)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_integer(v))
        return false;
    json_int_t n = json_integer_value(v);
    if (n < 0)
        return false;
    *ret = n;
    return true;
}

/* An array of objects whose listed fields have the listed JSON types ('s' string, 'b' boolean,
   'i' integer, 'j' any). */
static bool array_of(json_t *a, const char *const *fields, const char *types)
{
    size_t i;
    json_t *e;
    if (!json_is_array(a))
        return false;
    json_array_foreach(a, i, e)
    {
        if (!json_is_object(e))
            return false;
        for (size_t f = 0; fields[f]; f++) {
            json_t *v = json_object_get(e, fields[f]);
            bool ok = types[f] == 's'   ? json_is_string(v)
                      : types[f] == 'b' ? json_is_boolean(v)
                      : types[f] == 'i' ? json_is_integer(v)
                                        : v != NULL;
            if (!ok)
                return false;
        }
    }
    return true;
}

static bool messages_valid(json_t *messages)
{
    size_t i;
    json_t *m;
    if (!array_of(messages, (const char *const[]){"role", "content", NULL}, "sj"))
        return false;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if ((strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0) ||
            !(json_is_string(content) || json_is_array(content)))
            return false;
    }
    return json_array_size(messages) > 0;
}

int checkpoint_decode(const char *text, size_t len, struct run_checkpoint *ret, char *err,
                      size_t errlen)
{
    json_error_t jerr;
    int64_t v = 0, it = 0, calls = 0, attempts = 0, in = 0, out = 0;
    memset(ret, 0, sizeof(*ret));
    json_t *o = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        return checkpoint_fail(err, errlen, "not a JSON object");
    }
    int r = 0;
    json_t *last = json_object_get(o, "last_text");
    if (json_is_null(last))
        last = NULL; /* no text yet */
    json_t *stop = json_object_get(o, "stop_reason");
    if (json_is_null(stop))
        stop = NULL;
    if (!get_count(o, "v", &v) || v != CHECKPOINT_VERSION)
        r = checkpoint_fail(err, errlen, "unknown checkpoint version");
    else if (!messages_valid(json_object_get(o, "messages")))
        r = checkpoint_fail(err, errlen, "messages: expected a non-empty array of messages");
    else if (!get_count(o, "iterations", &it) || !get_count(o, "llm_calls", &calls) ||
             !get_count(o, "llm_attempts", &attempts) || !get_count(o, "input_tokens", &in) ||
             !get_count(o, "output_tokens", &out) || it > CHECKPOINT_MAX_COUNT ||
             calls > CHECKPOINT_MAX_COUNT || attempts > CHECKPOINT_MAX_COUNT)
        r = checkpoint_fail(err, errlen, "counters: expected non-negative integers in range");
    else if (!array_of(json_object_get(o, "tool_calls"),
                       (const char *const[]){"id", "name", "ok", "duration_ms", NULL}, "ssbi") ||
             !array_of(json_object_get(o, "degraded"),
                       (const char *const[]){"tool", "reason", NULL}, "ss"))
        r = checkpoint_fail(err, errlen, "tool_calls / degraded: malformed records");
    else if (!array_of(json_object_get(o, "results"),
                       (const char *const[]){"id", "text", "is_error", NULL}, "ssb"))
        r = checkpoint_fail(err, errlen, "results: expected [{id, text, is_error}]");
    else if (last && !json_is_string(last))
        r = checkpoint_fail(err, errlen, "last_text: expected a string");
    else if (stop && (!json_is_string(stop) || json_string_length(stop) > 64))
        r = checkpoint_fail(err, errlen, "stop_reason: expected a short string");
    if (r == 0) {
        *ret = (struct run_checkpoint){
            .messages = json_incref(json_object_get(o, "messages")),
            .iterations = (int)it,
            .llm_calls = (int)calls,
            .llm_attempts = (int)attempts,
            .input_tokens = in,
            .output_tokens = out,
            .tool_calls = json_incref(json_object_get(o, "tool_calls")),
            .degraded = json_incref(json_object_get(o, "degraded")),
            .results = json_incref(json_object_get(o, "results")),
            .last_text = last ? strdup(json_string_value(last)) : NULL,
            .stop_reason = stop ? strdup(json_string_value(stop)) : NULL,
        };
        if ((last && !ret->last_text) || (stop && !ret->stop_reason)) {
            checkpoint_clear(ret);
            r = checkpoint_fail(err, errlen, "out of memory");
        }
    }
    json_decref(o);
    return r;
}

void checkpoint_clear(struct run_checkpoint *cp)
{
    if (!cp)
        return;
    json_decref(cp->messages);
    json_decref(cp->tool_calls);
    json_decref(cp->degraded);
    json_decref(cp->results);
    free(cp->last_text);
    free(cp->stop_reason);
    memset(cp, 0, sizeof(*cp));
}
