/*
 * app.h — the daemon's shared state: configuration, the per-dependency
 * resilience objects (breaker, limiter, retry budget), the conversation
 * store, the worker pool and the I/O pool. Created once in main(), read by
 * every thread; the objects it points to carry their own locks. app_fini()
 * frees everything app_init() built; no function here hands memory to the
 * caller.
 */
#ifndef AGENTD_APP_H
#define AGENTD_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agentd/config.h"
#include "agentd/tools.h"
#include "agentd/vocab.h" /* enum dep_id */

struct dependency {
    const char *name; /* "anthropic", "web_search", "weather" */
    struct breaker *breaker;
    struct bucket *bucket;
    struct retry_budget *budget;
};

struct worker;
struct io_pool;
struct conv_store;
struct health;
struct spend;
struct idem_store;

struct app {
    struct agentd_config cfg;
    struct dependency deps[DEP__COUNT];
    enum tool_criticality criticality[TOOL__COUNT];
    json_t *tools_json; /* the `tools` array sent to the model */
    char *llm_prefix;   /* request body up to "messages", serialised once (anthropic.h) */
    struct conv_store *convs;
    struct health *health;   /* readiness checker; NULL until started */
    struct spend *spend;     /* token/cost budget over a sliding hour */
    struct idem_store *idem; /* Idempotency-Key answers; NULL = keys ignored */
    struct io_pool *io;
    struct worker **workers;
    int n_workers;
    atomic_uint next_worker;
    atomic_int inflight;  /* admitted runs not yet answered */
    atomic_bool draining; /* shutting down: new runs are refused with 503 shutting_down */
    atomic_uint_fast64_t run_seq;
};

/* Builds everything but the HTTP server and the threads. 0 or -errno (message in err). */
int app_init(struct app *app, const struct agentd_config *cfg, char *err, size_t errlen);
/* Starts the workers and the I/O pool. */
int app_start(struct app *app);
/* Stops the I/O pool and the worker threads; runs still in flight stay allocated (their requests
   can then be answered by the server) until app_fini. */
void app_stop_threads(struct app *app);
/* Stops threads if still running and frees everything. */
void app_fini(struct app *app);
/* Round-robin worker choice. */
struct worker *app_pick_worker(struct app *app);
/* Drains breaker transitions of one dependency into logs and metrics (called from workers). */
void app_log_breaker_transitions(struct app *app, enum dep_id dep);
/* Same for budget transitions (spent <-> ok). */
void app_log_spend_transitions(struct app *app);

#endif
