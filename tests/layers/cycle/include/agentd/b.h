#include "agentd/a.h"
int b_fn(void);
