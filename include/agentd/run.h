/*
 * run.h — one agent run: the state machine that calls the LLM, executes the
 * tool_use blocks, sends the tool_results back, and repeats until the model
 * ends its turn, the iteration cap, or the run's deadline.
 *
 * A run lives on one worker; every function here is called on that worker's
 * thread, except run_new() (server thread, before the hand-off). When the run
 * ends, finish(run, finish_arg) is called once with the HTTP status and body
 * filled in; the owner then calls run_release() when it no longer needs them.
 */
#ifndef AGENTD_RUN_H
#define AGENTD_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "agentd/anthropic.h"
#include "agentd/call.h"
#include "agentd/request.h"
#include "agentd/tool_result.h"
#include "agentd/tools.h"
#include "agentd/weather.h"

struct run;
typedef void (*run_finish_fn)(struct run *run, void *arg);

/* One tool_use being executed. */
struct run_tool {
    struct run *run;
    size_t index;
    char *id;
    char *name;
    json_t *input;
    enum tool_id tool;
    bool known;
    bool done;
    int64_t started_ms, duration_ms;
    struct tool_result result;
    /* HTTP tools */
    struct call call;
    int step;                    /* get_weather: 0 = geocoding, 1 = forecast */
    struct weather_place *place; /* get_weather: the geocoded place, owned */
    /* blocking tools (io pool) */
    struct timer timer; /* tool timeout for jobs that cannot be cancelled */
    bool io_pending;
};

struct run {
    struct app *app;
    struct worker *w;
    char id[40];
    char request_id[129];
    struct agent_request req;
    int max_iterations;
    int64_t started_ms, deadline_ms;
    json_t *messages; /* the conversation sent to the model */

    /* progress */
    int iterations, llm_calls, llm_attempts;
    int64_t input_tokens, output_tokens;
    char *last_text;
    json_t *tool_calls; /* [{id, name, ok, duration_ms}] */
    json_t *degraded;   /* [{tool, reason}] */
    struct call llm;
    struct run_tool *tools;
    size_t n_tools, n_tools_done;
    struct timer deadline_timer;
    struct timer finish_timer; /* hands the result over from the loop, after the current step */
    atomic_int refs;           /* 1 for the owner + 1 per outstanding io job */
    bool finished;

    /* result */
    int http_status;
    char *body;             /* JSON, owned */
    int64_t retry_after_ms; /* > 0 → Retry-After header */
    const char *outcome;    /* "ok", "error type" — for logs */

    run_finish_fn finish;
    void *finish_arg;
    int client_fd; /* the client's socket, watched for it going away; -1 = not watched */
    bool client_watched;
};

/* Creates a run from a validated request (moved into the run: *req is zeroed) and the conversation
   history to continue (moved; NULL = new). Server thread. NULL on ENOMEM. */
struct run *run_new(struct app *app, struct agent_request *req, const char *request_id,
                    json_t *history, run_finish_fn finish, void *finish_arg);
/* Lets the run be cancelled when the client behind socket fd goes away (set before run_submit). */
void run_set_client_fd(struct run *run, int fd);
/* Hands the run to worker w (thread-safe). 0 or -ENOMEM (then the run is untouched). */
int run_submit(struct run *run, struct worker *w);
/* The owner is done with the result; frees the run once no job refers to it. Any thread. */
void run_release(struct run *run);

/* Ends a run whose worker is stopped (shutdown): cancels its timers and transfers, releases its
   conversation, and sets the given answer (body owned). The finish callback is not called. */
void run_abort(struct run *run, int status, char *body, int64_t retry_after_ms);

/* Used by tools_exec.c (worker thread). */
void run_tool_finished(struct run_tool *t);
int64_t run_tool_deadline_ms(const struct run_tool *t);

#endif
