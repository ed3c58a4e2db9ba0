#include "agentd/req.h"
int req_parse(const char *s) { return s != 0; }
