/*
 * tool_input.c — shared input validation of the tools (see tool_input.h).
 */
#include "agentd/tool_input.h"

#include <errno.h>
#include <string.h>

#include "agentd/text.h"

/* Enough of an unexpected key to recognise it in an error message. */
#define TOOL_INPUT_KEY_SHOWN_BYTES 64

static int input_error(struct tool_result *ret, const char *fmt, const char *a, size_t n)
{
    int r = tool_result_setf(ret, TOOL_INPUT_ERROR, fmt, (int)n, a);
    return r < 0 ? r : -EINVAL;
}

int tool_input_single_string(const json_t *input, const char *field, size_t max_bytes,
                             const char **ret_value, struct tool_result *ret)
{
    size_t flen = strlen(field);
    if (!json_is_object(input))
        return input_error(ret, "input must be a JSON object with a string field '%.*s'", field,
                           flen);
    /* jansson's iterator API takes a non-const pointer but does not modify the object. */
    for (void *it = json_object_iter((json_t *)input); it;
         it = json_object_iter_next((json_t *)input, it)) {
        const char *key = json_object_iter_key(it);
        if (strcmp(key, field) != 0) {
            int r = tool_result_setf(
                ret, TOOL_INPUT_ERROR, "unknown field '%.*s' (only '%s' is accepted)",
                (int)text_utf8_prefix_len(key, strlen(key), TOOL_INPUT_KEY_SHOWN_BYTES), key,
                field);
            return r < 0 ? r : -EINVAL;
        }
    }
    const json_t *v = json_object_get(input, field);
    if (!v)
        return input_error(ret, "missing required field '%.*s'", field, flen);
    if (!json_is_string(v))
        return input_error(ret, "'%.*s' must be a string", field, flen);
    const char *value = json_string_value(v);
    size_t len = json_string_length(v);
    if (len > max_bytes) {
        int r = tool_result_setf(ret, TOOL_INPUT_ERROR,
                                 "'%s' is %zu bytes long; the limit is %zu bytes", field, len,
                                 max_bytes);
        return r < 0 ? r : -EINVAL;
    }
    if (memchr(value, '\0', len))
        return input_error(ret, "'%.*s' must not contain NUL characters", field, flen);
    if (text_all_blank(value, len))
        return input_error(ret, "'%.*s' must not be empty", field, flen);
    *ret_value = value;
    return 0;
}
