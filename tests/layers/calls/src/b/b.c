#include "agentd/b.h"
int a_value(void);
extern int a_count;
int b_helper(void) { return a_count > 1 ? a_value() : 0; }
