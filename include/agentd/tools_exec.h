/*
 * tools_exec.h — executes one tool_use block of a run on the run's worker:
 * calculator inline, save_note on the I/O pool, web_search and get_weather
 * as resilient HTTP calls on the worker's curl multi. Each path ends in
 * run_tool_finished() with t->result filled in.
 */
#ifndef AGENTD_TOOLS_EXEC_H
#define AGENTD_TOOLS_EXEC_H

#include "agentd/run.h"

void tools_exec_start(struct run_tool *t);

#endif
