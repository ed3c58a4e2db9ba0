#include "agentd/http.h"
#include "agentd/run.h"
int http_serve(void) { return run_start(); }
