/*
 * tool_result.c — constructors for struct tool_result (see tool_result.h).
 */
#include "agentd/tool_result.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int tool_result_setf(struct tool_result *r, enum tool_result_kind kind, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    free(r->text);
    r->text = text;
    r->kind = kind;
    return 0;
}

void tool_result_clear(struct tool_result *r)
{
    if (!r)
        return;
    free(r->text);
    r->text = NULL;
    r->kind = TOOL_OK;
}
