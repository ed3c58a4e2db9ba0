#include "agentd/t.h"
#include "agentd/req.h"
int t_call(void) { return req_parse("x"); }
