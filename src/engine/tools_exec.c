/*
 * tools_exec.c — runs tool_use blocks (see tools_exec.h). The pure parts
 * (parsing, URL building, formatting) live in src/tools/; this file only
 * moves data between them and the worker's I/O.
 */
#include "agentd/tools_exec.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentd/calculator.h"
#include "agentd/clock.h"
#include "agentd/io_pool.h"
#include "agentd/notes.h"
#include "agentd/trace.h"
#include "agentd/weather.h"
#include "agentd/web_search.h"
#include "agentd/worker.h"

#define TOOL_MAX_RESPONSE_BYTES (2u * 1024 * 1024)

int tool_exec_init(struct tool_exec *t, const char *id, const char *name, const json_t *input)
{
    memset(t, 0, sizeof(*t));
    call_init(&t->call);
    timer_init(&t->timer, NULL, t);
    t->id = strdup(id);
    t->name = strdup(name);
    t->input = json_incref((json_t *)input);
    t->known = tool_lookup(name, &t->tool) == 0;
    return t->id && t->name ? 0 : -ENOMEM;
}

static void finished(struct tool_exec *t)
{
    if (t->done)
        return;
    t->done = true;
    t->duration_ms = worker_refresh_now(t->w) - t->started_ms;
    t->on_done(t, t->arg);
}

/* ---- HTTP tools ---------------------------------------------------------- */

static void http_tool_failed(struct tool_exec *t)
{
    struct call *c = &t->call;
    switch (c->outcome) {
    case CALL_BREAKER_OPEN:
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "circuit open");
        break;
    case CALL_RATE_LIMITED:
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "rate limited");
        break;
    case CALL_DEADLINE:
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "timed out");
        break;
    default:
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "%s", c->error[0] ? c->error : "failed");
        break;
    }
}

static void start_http(struct tool_exec *t, struct dependency *dep, char *url, call_done_fn done)
{
    struct call *c = &t->call;
    call_reset(c);
    c->dep = dep;
    c->url = url;
    c->headers = curl_slist_append(NULL, "accept: application/json");
    c->max_response_bytes = TOOL_MAX_RESPONSE_BYTES;
    c->attempt_timeout_ms = t->timeout_ms;
    c->deadline_ms = t->deadline_ms;
    c->low_priority = t->low_priority;
    c->request_id = t->request_id;
    c->span = t->span;
    c->done = done;
    c->arg = t;
    if (!url || !c->headers) {
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        finished(t);
        return;
    }
    call_start(t->w, c);
}

static void on_search_done(struct call *c, void *arg)
{
    struct tool_exec *t = arg;
    if (c->outcome != CALL_OK) {
        http_tool_failed(t);
    } else {
        const char *query = json_string_value(json_object_get(t->input, "query"));
        web_search_parse(c->resp, c->resp_len, query ? query : "", &t->result);
    }
    finished(t);
}

static void start_web_search(struct tool_exec *t)
{
    const char *query;
    if (!t->env->search_url || !t->env->search_url[0]) {
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "web search is not configured");
        finished(t);
        return;
    }
    if (web_search_input(t->input, &query, &t->result) < 0) {
        finished(t);
        return;
    }
    start_http(t, t->env->web_search, web_search_build_url(t->env->search_url, query),
               on_search_done);
}

static void on_forecast_done(struct call *c, void *arg)
{
    struct tool_exec *t = arg;
    if (c->outcome != CALL_OK)
        http_tool_failed(t);
    else
        weather_parse_forecast(c->resp, c->resp_len, t->place, &t->result);
    finished(t);
}

static void on_geocoding_done(struct call *c, void *arg)
{
    struct tool_exec *t = arg;
    struct weather_place place;
    if (c->outcome != CALL_OK) {
        http_tool_failed(t);
        finished(t);
        return;
    }
    const char *location = json_string_value(json_object_get(t->input, "location"));
    if (weather_parse_geocoding(c->resp, c->resp_len, location ? location : "", &place,
                                &t->result) < 0) {
        finished(t);
        return;
    }
    /* The forecast needs the place again to word the answer. */
    t->place = malloc(sizeof(place));
    if (!t->place) {
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        finished(t);
        return;
    }
    *t->place = place;
    start_http(t, t->env->weather,
               weather_build_forecast_url(t->env->forecast_url, place.latitude, place.longitude),
               on_forecast_done);
}

static void start_get_weather(struct tool_exec *t)
{
    const char *location;
    if (weather_input(t->input, &location, &t->result) < 0) {
        finished(t);
        return;
    }
    start_http(t, t->env->weather, weather_build_geocoding_url(t->env->geocoding_url, location),
               on_geocoding_done);
}

/* ---- save_note on the I/O pool --------------------------------------------- */

/* Self-contained so the pool thread never touches the tool. `owner` links job and tool while
   both care about each other; it is read and cleared on the worker's thread only (the
   completion runs there), so a cancelled tool simply lets go of its job. Letting go also sets
   `cancelled`, the one field both threads touch: the pool thread asks it right before the
   rename that publishes the note (notes_save_ctl), so a note whose call has already been
   answered (timed out, or its run ended) is never published — its temp file is removed
   instead. A write already in fsync cannot be stopped; it is only not published. */
struct note_job {
    struct tool_exec *owner;
    json_t *input;
    char *dir;
    struct notes_usage *usage; /* borrowed from the app, which outlives the I/O pool */
    time_t now_s;
    atomic_bool cancelled;
    struct tool_result result;
};

static void note_job_free(struct note_job *j)
{
    json_decref(j->input);
    free(j->dir);
    tool_result_clear(&j->result);
    free(j);
}

static bool note_job_cancelled(void *arg)
{
    struct note_job *j = arg;
    return atomic_load(&j->cancelled);
}

static void note_job_run(void *arg)
{
    struct note_job *j = arg;
    struct notes_save_ctl ctl = {
        .usage = j->usage,
        .cancelled = note_job_cancelled,
        .cancelled_arg = j,
    };
    if (notes_tool_run(j->input, j->dir, j->now_s, &ctl, &j->result) < 0)
        tool_result_setf(&j->result, TOOL_SYSTEM_ERROR, "out of memory");
}

/* The tool no longer waits for its job (timeout, cancel): the job must not publish. */
static void detach_job(struct tool_exec *t)
{
    if (t->job) {
        atomic_store(&t->job->cancelled, true);
        t->job->owner = NULL;
        t->job = NULL;
    }
}

static void note_job_complete(struct worker *w, void *arg)
{
    (void)w;
    struct note_job *j = arg;
    struct tool_exec *t = j->owner;
    if (t) {
        t->job = NULL;
        timerheap_cancel(worker_timers(t->w), &t->timer);
        t->result = j->result;
        j->result.text = NULL;
        finished(t);
    }
    note_job_free(j);
}

static void on_note_timeout(struct timer *timer, void *arg)
{
    (void)timer;
    struct tool_exec *t = arg;
    detach_job(t);
    tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "timed out writing the note");
    finished(t);
}

static void start_save_note(struct tool_exec *t)
{
    struct note_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->dir = strdup(t->env->notes_dir))) {
        if (j)
            note_job_free(j);
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        finished(t);
        return;
    }
    j->owner = t;
    j->usage = t->env->notes_usage;
    atomic_init(&j->cancelled, false);
    j->input = json_deep_copy(t->input);
    j->now_s = (time_t)(clock_wall_ms() / 1000);
    t->job = j;
    if (io_pool_submit(t->env->io, note_job_run, t->w, note_job_complete, j) < 0) {
        t->job = NULL;
        note_job_free(j);
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "I/O pool unavailable");
        finished(t);
        return;
    }
    t->timer.fn = on_note_timeout;
    t->timer.arg = t;
    timerheap_arm(worker_timers(t->w), &t->timer, t->deadline_ms);
}

/* ---- dispatch ---------------------------------------------------------------- */

void tool_exec_start(struct tool_exec *t, struct worker *w, const struct tool_exec_env *env,
                     int64_t run_deadline_ms, bool low_priority, const char *request_id,
                     tool_exec_done_fn done, void *arg)
{
    t->w = w;
    t->env = env;
    t->on_done = done;
    t->arg = arg;
    t->low_priority = low_priority;
    t->request_id = request_id;
    t->started_ms = worker_now_ms(w);
    /* Read once: a reload changes it for the next call, not halfway through this one. */
    t->timeout_ms = t->known ? atomic_load(&env->timeout_ms[t->tool]) : 0;
    int64_t tool_deadline = t->started_ms + t->timeout_ms;
    t->deadline_ms = tool_deadline < run_deadline_ms ? tool_deadline : run_deadline_ms;
    if (!t->known) {
        tool_result_setf(&t->result, TOOL_INPUT_ERROR, "unknown tool '%s'", t->name);
        finished(t);
        return;
    }
    switch (t->tool) {
    case TOOL_CALCULATOR:
        if (calculator_tool_run(t->input, &t->result) < 0)
            tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        finished(t);
        break;
    case TOOL_SAVE_NOTE:
        start_save_note(t);
        break;
    case TOOL_WEB_SEARCH:
        start_web_search(t);
        break;
    case TOOL_GET_WEATHER:
        start_get_weather(t);
        break;
    default:
        tool_result_setf(&t->result, TOOL_INPUT_ERROR, "unknown tool '%s'", t->name);
        finished(t);
        break;
    }
}

void tool_exec_cancel(struct tool_exec *t)
{
    call_cancel(&t->call);
    if (t->w)
        timerheap_cancel(worker_timers(t->w), &t->timer);
    detach_job(t);
}

void tool_exec_clear(struct tool_exec *t)
{
    tool_exec_cancel(t);
    call_reset(&t->call);
    free(t->id);
    free(t->name);
    free(t->place);
    trace_span_free(t->span);
    json_decref(t->input);
    tool_result_clear(&t->result);
    memset(t, 0, sizeof(*t));
}
