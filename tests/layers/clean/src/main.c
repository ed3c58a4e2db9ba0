/* Starts with run.h too: run.c, named like it, still owns it. */
#include "agentd/run.h"
#include "agentd/http.h"
int main(void) { return http_serve(); }
