#include "agentd/text.h"
#include "agentd/vocab.h"
void log_line(enum vocab_level level, const char *s);
