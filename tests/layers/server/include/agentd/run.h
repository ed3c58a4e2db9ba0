#include "agentd/req.h"
int run_start(void);
