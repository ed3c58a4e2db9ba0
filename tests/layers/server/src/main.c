#include "agentd/http.h"
#include "agentd/req.h"
int main(void) { return http_serve(); }
