#include "agentd/run.h"
#include "agentd/log.h"
int run_start(enum id_kind kind) { log_line(VOCAB_LOW, "run"); return (int)kind; }
