#include "agentd/log.h"
#include "agentd/clock.h"
void log_line(const char *s) { (void)s; (void)clock_now(); }
