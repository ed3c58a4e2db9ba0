#include "agentd/run.h"
int run_start(void) { return 0; }
