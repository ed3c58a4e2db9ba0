/*
 * tool_result.h — the outcome of one tool call, shared by every tool.
 *
 * A tool either succeeds (text for the model), fails because of its *input*
 * (TOOL_INPUT_ERROR: the model can read the message and recover, e.g.
 * "division by zero"), or fails because of the *system* behind it (timeout,
 * HTTP or I/O error, circuit open): then kind is TOOL_SYSTEM_ERROR and the
 * engine applies the tool's criticality (degrade an optional tool, fail the
 * run on a critical one). An error the model does see (an input error, a
 * degraded optional tool) is sent to it as an is_error tool_result.
 *
 * The functions are reentrant and do not log: any thread may call them on
 * its own struct. A struct tool_result belongs to whoever declared it (one
 * thread at a time) and starts zeroed ({0}); its text is heap memory owned
 * by the struct until tool_result_clear().
 */
#ifndef AGENTD_TOOL_RESULT_H
#define AGENTD_TOOL_RESULT_H

#include <stdbool.h>

#include "agentd/vocab.h" /* enum tool_result_kind: ok, input_error, system_error */

struct tool_result {
    enum tool_result_kind kind;
    char *text; /* heap, owned by the struct; never NULL after tool_result_set*() */
};

/* Sets r to kind + a printf-formatted text (replacing any previous text). Returns 0, or -ENOMEM
   with r unchanged. */
int tool_result_setf(struct tool_result *r, enum tool_result_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Frees r->text and leaves r zeroed (kind TOOL_OK, text NULL); r may be NULL. */
void tool_result_clear(struct tool_result *r);

#endif
