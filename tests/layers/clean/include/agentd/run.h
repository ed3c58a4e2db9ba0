#include "agentd/ids.h"
int run_start(enum id_kind kind);
