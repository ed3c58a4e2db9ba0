#include "agentd/metrics.h"
void metrics_tick(void) { (void)app_count(); }
