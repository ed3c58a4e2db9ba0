/*
 * tools_exec.h — executes one tool_use block on a worker: calculator inline,
 * save_note on the I/O pool, web_search and get_weather as resilient HTTP
 * calls (call.h) on the worker's curl multi handle.
 *
 * The owner (a run) embeds one struct tool_exec per tool_use block, starts
 * it with tool_exec_start(), and gets done(t, arg) exactly once with
 * t->result filled in — possibly from inside tool_exec_start() for tools
 * that finish at once — unless it calls tool_exec_cancel() first. The tool
 * knows nothing of its owner beyond that callback. Worker thread only
 * (tool_exec_clear also after the worker has stopped).
 */
#ifndef AGENTD_TOOLS_EXEC_H
#define AGENTD_TOOLS_EXEC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agentd/call.h"
#include "agentd/tool_result.h"
#include "agentd/tools.h"
#include "agentd/weather.h"

struct dependency;
struct io_pool;
struct note_job;
struct notes_usage;
struct worker;

/* What the tools need from the daemon: borrowed, outlives every tool call. */
struct tool_exec_env {
    struct io_pool *io;
    struct dependency *web_search, *weather;
    const char *search_url; /* NULL or "" = web_search not configured */
    const char *geocoding_url, *forecast_url;
    const char *notes_dir;
    struct notes_usage *notes_usage; /* the notes quota; NULL = none */
    /* Per tool (enum tool_id): the time one call may take. A reload may change it at any time
       (app_reconfigure): read with atomic_load, once per call. */
    _Atomic int64_t timeout_ms[TOOL__COUNT];
};

struct tool_exec;
typedef void (*tool_exec_done_fn)(struct tool_exec *t, void *arg);

struct tool_exec {
    /* the tool_use block (owned) */
    char *id;
    char *name;
    json_t *input;
    enum tool_id tool;
    bool known;
    /* result, valid in done() */
    bool done;
    int64_t started_ms, duration_ms;
    struct tool_result result;

    /* internal */
    const struct tool_exec_env *env;
    struct worker *w;
    int64_t deadline_ms;
    int64_t timeout_ms; /* this call's, read from env->timeout_ms at start */
    bool low_priority;
    const char *request_id;
    tool_exec_done_fn on_done;
    void *arg;
    struct call call;            /* HTTP tools */
    struct weather_place *place; /* get_weather: the geocoded place, owned */
    struct timer timer;          /* save_note: its timeout (the write is then never published) */
    struct note_job *job;        /* save_note: the job on the I/O pool, NULL when none */
    /* Its span (trace.h), set by the owner before tool_exec_start; owned: freed by
       tool_exec_clear unless the owner took it. Its HTTP calls carry it. NULL = untraced. */
    struct trace_span *span;
};

/* Takes copies of the block's id, name and input. 0 or -ENOMEM (then clear t). */
int tool_exec_init(struct tool_exec *t, const char *id, const char *name, const json_t *input);

/* Starts the tool on worker w. The tool ends by min(now + env->timeout_ms[tool], run_deadline_ms).
   request_id is borrowed for logs. */
void tool_exec_start(struct tool_exec *t, struct worker *w, const struct tool_exec_env *env,
                     int64_t run_deadline_ms, bool low_priority, const char *request_id,
                     tool_exec_done_fn done, void *arg);

/* Stops the tool wherever it is; done() is not called. A note write already on the disk finishes
   on its own but is not published (its temp file is removed). Safe when not started or done. */
void tool_exec_cancel(struct tool_exec *t);

/* Cancels and frees what t holds. */
void tool_exec_clear(struct tool_exec *t);

#endif
