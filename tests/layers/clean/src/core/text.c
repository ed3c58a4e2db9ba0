#include "agentd/text.h"
int text_len(const char *s) { int n = 0; while (s[n]) n++; return n; }
