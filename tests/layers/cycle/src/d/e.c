#include "agentd/e.h"
#include "agentd/f.h"
int e_fn(void) { return f_fn(); }
