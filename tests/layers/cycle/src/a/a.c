#include "agentd/a.h"
#include "agentd/b.h"
int a_fn(void) { return b_fn(); }
