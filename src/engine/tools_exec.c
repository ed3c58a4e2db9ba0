/*
 * tools_exec.c — runs tool_use blocks (see tools_exec.h). The pure parts
 * (parsing, URL building, formatting) live in src/tools/; this file only
 * moves data between them and the worker's I/O.
 */
#include "agentd/tools_exec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentd/app.h"
#include "agentd/calculator.h"
#include "agentd/clock.h"
#include "agentd/io_pool.h"
#include "agentd/log.h"
#include "agentd/notes.h"
#include "agentd/weather.h"
#include "agentd/web_search.h"
#include "agentd/worker.h"

#define TOOL_MAX_RESPONSE_BYTES (2u * 1024 * 1024)

/* ---- HTTP tools ---------------------------------------------------------- */

static void http_tool_failed(struct run_tool *t)
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

static void start_http(struct run_tool *t, enum dep_id dep, char *url, call_done_fn done)
{
    struct call *c = &t->call;
    call_reset(c);
    c->dep = dep;
    c->url = url;
    c->headers = curl_slist_append(NULL, "accept: application/json");
    c->max_response_bytes = TOOL_MAX_RESPONSE_BYTES;
    c->attempt_timeout_ms = t->run->app->cfg.tool_timeout_ms;
    c->deadline_ms = run_tool_deadline_ms(t);
    c->low_priority = t->run->req.priority == AGENT_PRIORITY_LOW;
    c->request_id = t->run->request_id;
    c->done = done;
    c->arg = t;
    if (!url || !c->headers) {
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        run_tool_finished(t);
        return;
    }
    call_start(t->run->w, c);
}

static void on_search_done(struct call *c, void *arg)
{
    struct run_tool *t = arg;
    if (c->outcome != CALL_OK) {
        http_tool_failed(t);
    } else {
        const char *query = json_string_value(json_object_get(t->input, "query"));
        web_search_parse(c->resp, c->resp_len, query ? query : "", &t->result);
    }
    run_tool_finished(t);
}

static void start_web_search(struct run_tool *t)
{
    const struct agentd_config *cfg = &t->run->app->cfg;
    const char *query;
    if (!cfg->search_url || !cfg->search_url[0]) {
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "web search is not configured");
        run_tool_finished(t);
        return;
    }
    if (web_search_input(t->input, &query, &t->result) < 0) {
        run_tool_finished(t);
        return;
    }
    start_http(t, DEP_WEB_SEARCH, web_search_build_url(cfg->search_url, query), on_search_done);
}

static void on_forecast_done(struct call *c, void *arg);

static void on_geocoding_done(struct call *c, void *arg)
{
    struct run_tool *t = arg;
    const struct agentd_config *cfg = &t->run->app->cfg;
    struct weather_place place;
    if (c->outcome != CALL_OK) {
        http_tool_failed(t);
        run_tool_finished(t);
        return;
    }
    const char *location = json_string_value(json_object_get(t->input, "location"));
    if (weather_parse_geocoding(c->resp, c->resp_len, location ? location : "", &place,
                                &t->result) < 0) {
        run_tool_finished(t);
        return;
    }
    /* The forecast needs the place again to word the answer. */
    t->place = malloc(sizeof(place));
    if (!t->place) {
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        run_tool_finished(t);
        return;
    }
    *t->place = place;
    t->step = 1;
    start_http(
        t, DEP_WEATHER,
        weather_build_forecast_url(cfg->weather_forecast_url, place.latitude, place.longitude),
        on_forecast_done);
}

static void on_forecast_done(struct call *c, void *arg)
{
    struct run_tool *t = arg;
    if (c->outcome != CALL_OK)
        http_tool_failed(t);
    else
        weather_parse_forecast(c->resp, c->resp_len, t->place, &t->result);
    run_tool_finished(t);
}

static void start_get_weather(struct run_tool *t)
{
    const struct agentd_config *cfg = &t->run->app->cfg;
    const char *location;
    if (weather_input(t->input, &location, &t->result) < 0) {
        run_tool_finished(t);
        return;
    }
    t->step = 0;
    start_http(t, DEP_WEATHER, weather_build_geocoding_url(cfg->weather_geocoding_url, location),
               on_geocoding_done);
}

/* ---- save_note on the I/O pool --------------------------------------------- */

/* Self-contained so the pool thread never touches the run; the run is kept
   alive by the reference the job holds. */
struct note_job {
    struct run *run;
    char *tool_use_id;
    json_t *input;
    char *dir;
    time_t now_s;
    struct tool_result result;
};

static void note_job_free(struct note_job *j)
{
    free(j->tool_use_id);
    json_decref(j->input);
    free(j->dir);
    tool_result_clear(&j->result);
    free(j);
}

static void note_job_run(void *arg)
{
    struct note_job *j = arg;
    if (notes_tool_run(j->input, j->dir, j->now_s, &j->result) < 0)
        tool_result_setf(&j->result, TOOL_SYSTEM_ERROR, "out of memory");
}

static struct run_tool *find_pending_tool(struct run *run, const char *id)
{
    for (size_t i = 0; i < run->n_tools; i++) {
        struct run_tool *t = &run->tools[i];
        if (t->io_pending && !t->done && strcmp(t->id, id) == 0)
            return t;
    }
    return NULL;
}

static void note_job_complete(struct worker *w, void *arg)
{
    (void)w;
    struct note_job *j = arg;
    struct run *run = j->run;
    struct run_tool *t = run->finished ? NULL : find_pending_tool(run, j->tool_use_id);
    if (t) {
        t->io_pending = false;
        timerheap_cancel(worker_timers(run->w), &t->timer);
        t->result = j->result;
        j->result.text = NULL;
        run_tool_finished(t);
    }
    note_job_free(j);
    run_release(run);
}

static void on_note_timeout(struct timer *timer, void *arg)
{
    (void)timer;
    struct run_tool *t = arg;
    t->io_pending = false;
    tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "timed out writing the note");
    run_tool_finished(t);
}

static void start_save_note(struct run_tool *t)
{
    struct run *run = t->run;
    struct note_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->tool_use_id = strdup(t->id)) || !(j->dir = strdup(run->app->cfg.notes_dir))) {
        if (j)
            note_job_free(j);
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        run_tool_finished(t);
        return;
    }
    j->run = run;
    j->input = json_deep_copy(t->input);
    j->now_s = (time_t)(clock_wall_ms() / 1000);
    atomic_fetch_add(&run->refs, 1);
    t->io_pending = true;
    if (io_pool_submit(run->app->io, note_job_run, run->w, note_job_complete, j) < 0) {
        t->io_pending = false;
        atomic_fetch_sub(&run->refs, 1);
        note_job_free(j);
        tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "I/O pool unavailable");
        run_tool_finished(t);
        return;
    }
    t->timer.fn = on_note_timeout;
    t->timer.arg = t;
    timerheap_arm(worker_timers(run->w), &t->timer, run_tool_deadline_ms(t));
}

/* ---- dispatch ---------------------------------------------------------------- */

void tools_exec_start(struct run_tool *t)
{
    if (!t->known) {
        tool_result_setf(&t->result, TOOL_INPUT_ERROR, "unknown tool '%s'", t->name);
        run_tool_finished(t);
        return;
    }
    switch (t->tool) {
    case TOOL_CALCULATOR:
        if (calculator_tool_run(t->input, &t->result) < 0)
            tool_result_setf(&t->result, TOOL_SYSTEM_ERROR, "out of memory");
        run_tool_finished(t);
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
        run_tool_finished(t);
        break;
    }
}
