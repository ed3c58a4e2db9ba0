#include "agentd/f.h"
#include "agentd/d.h"
int f_fn(void) { return 0; }
