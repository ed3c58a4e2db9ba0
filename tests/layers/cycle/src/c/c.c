#include "agentd/c.h"
#include "agentd/a.h"
int c_fn(void) { return a_fn(); }
