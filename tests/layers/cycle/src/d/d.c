#include "agentd/d.h"
#include "agentd/e.h"
int d_fn(void) { return e_fn(); }
