#include "agentd/b.h"
int b_fn(void) { return 1; }
