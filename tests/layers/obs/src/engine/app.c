#include "agentd/app.h"
int app_count(void) { return 0; }
