#include "agentd/a.h"
#include "agentd/b.h"
int a_count = 1;
int a_value(void) { return b_helper() + a_count; }
