#include "agentd/log.h"
void log_line(enum vocab_level level, const char *s) { (void)level; (void)text_len(s); }
