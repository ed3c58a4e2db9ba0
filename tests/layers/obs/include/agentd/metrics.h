#include "agentd/vocab.h"
#include "agentd/clock.h"
#include "agentd/app.h"
#include "agentd/ids.h"
void metrics_tick(void);
