/*
 * agent_request.c — the destructor of struct agent_request (see agent_request.h).
 */
#include "agentd/agent_request.h"

#include <stdlib.h>

void agent_request_clear(struct agent_request *r)
{
    if (!r)
        return;
    free(r->input);
    free(r->conversation_id);
    *r = (struct agent_request){0};
}
