/*
 * tool_input.h — what the HTTP tools share: validating a tool_use input that
 * is an object with exactly one non-empty string field, and the UTF-8-safe
 * text helpers used to bound and clean strings from the network. Pure.
 */
#ifndef AGENTD_TOOL_INPUT_H
#define AGENTD_TOOL_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "agentd/tool_result.h"

/* Longest prefix of s[0..len) of at most max bytes that does not split a UTF-8 character
   (s is valid UTF-8). */
size_t text_utf8_prefix_len(const char *s, size_t len, size_t max);
/* Control characters, space and DEL. */
bool text_is_space_or_control(unsigned char c);
/* True when s[0..len) holds nothing but spaces and control characters. */
bool text_all_blank(const char *s, size_t len);

/* Validates {"<field>": string} (no other field; 1..max_bytes bytes; no NUL; not blank).
   On success *ret_value is borrowed from input and 0 is returned; otherwise ret is set to
   TOOL_INPUT_ERROR with a message naming the field and -EINVAL (or -ENOMEM) is returned. */
int tool_input_single_string(const json_t *input, const char *field, size_t max_bytes,
                             const char **ret_value, struct tool_result *ret);

#endif
