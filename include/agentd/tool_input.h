/*
 * tool_input.h — what the HTTP tools share: validating a tool_use input that
 * is an object with exactly one non-empty string field. The UTF-8-safe text
 * helpers they use to bound and clean strings from the network are in text.h
 * (included here for the files that reach them through this header).
 *
 * Pure: no I/O, no global state; safe from any thread at once. The value it
 * returns is borrowed from the input (valid while input lives); the message
 * goes into the caller's struct tool_result (see tool_result.h for who frees
 * it).
 */
#ifndef AGENTD_TOOL_INPUT_H
#define AGENTD_TOOL_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "agentd/text.h"
#include "agentd/tool_result.h"

/* Validates {"<field>": string} (no other field; 1..max_bytes bytes; no NUL; not blank).
   On success *ret_value is borrowed from input and 0 is returned; otherwise ret is set to
   TOOL_INPUT_ERROR with a message naming the field and -EINVAL (or -ENOMEM) is returned. */
int tool_input_single_string(const json_t *input, const char *field, size_t max_bytes,
                             const char **ret_value, struct tool_result *ret);

#endif
