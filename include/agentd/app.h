/*
 * app.h — the engine's composition root: configuration, the outbound
 * dependencies, the stores (conversations, idempotency keys, spend), the
 * worker pool and the I/O pool. Created once in main() and read by every
 * thread; the objects it points to carry their own locks. Its fields are
 * read by the engine's own files (run.c) and, for configuration and
 * admission counters, by the server; everything else goes through functions.
 */
#ifndef AGENTD_APP_H
#define AGENTD_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agentd/anthropic.h"
#include "agentd/config.h"
#include "agentd/dependency.h"
#include "agentd/model_chain.h"
#include "agentd/tools.h"
#include "agentd/tools_exec.h"
#include "agentd/vocab.h" /* enum dep_id */

struct worker;
struct io_pool;
struct redis_pool;
struct conv_store;
struct health;
struct spend;
struct idem_store;
struct notes_usage;

struct app {
    struct agentd_config cfg; /* as at start; what a reload changes is in the fields below */
    struct dependency *deps[DEP__COUNT];
    /* Live settings (app_reconfigure): read with atomic_load by the workers, per call. */
    atomic_int criticality[TOOL__COUNT]; /* enum tool_criticality */
    _Atomic int64_t llm_timeout_ms;      /* one LLM attempt */
    _Atomic int64_t max_run_tokens;      /* AGENTD_MAX_RUN_TOKENS, 0 = off */
    json_t *tools_json;                  /* the `tools` array sent to the model */
    struct llm_params llm_params;        /* what every LLM request carries besides the messages */
    char *llm_prefix;                    /* request body up to "messages", serialised once */
    /* The model fallback chain (AGENTD_MODEL, AGENTD_MODEL_FALLBACKS). Model 0 is
       deps[DEP_ANTHROPIC] with llm_prefix; each fallback i >= 1 has its own dependency and
       prefix in model_deps[i] / model_prefixes[i] (use app_model_dep / app_model_prefix). */
    struct model_chain models;
    struct dependency *model_deps[MODEL_CHAIN_MAX];
    char *model_prefixes[MODEL_CHAIN_MAX];
    struct tool_exec_env tool_env; /* what tool calls borrow (complete after app_start) */
    struct conv_store *convs;
    struct health *health;           /* readiness checker; NULL until started */
    struct spend *spend;             /* token/cost budget over a sliding hour */
    struct idem_store *idem;         /* Idempotency-Key answers; NULL = keys ignored */
    struct notes_usage *notes_usage; /* the notes quota (notes.h); outlives the I/O pool */
    struct io_pool *io;
    struct redis_pool *redis; /* AGENTD_REDIS_URL: state shared by the replicas; NULL = none */
    struct tracer *tracer;    /* AGENTD_OTLP_ENDPOINT: the span exporter; NULL = off */
    struct worker **workers;
    struct run **durable_runs; /* per worker: its runs holding a key in Redis (run.c's list) */
    int n_workers;
    atomic_uint next_worker;
    atomic_int inflight; /* admitted runs not yet answered */
    atomic_size_t
        buffered_bytes;      /* request bodies held by the server (AGENTD_MAX_BUFFERED_BYTES) */
    atomic_size_t run_bytes; /* conversation JSON held by runs (AGENTD_RUNS_MAX_BYTES) */
    atomic_bool shared_budget_spent; /* the cluster's budget refused the last reservation */
    atomic_bool draining; /* shutting down: new runs are refused with 503 shutting_down */
    atomic_uint_fast64_t run_seq;
};

/* Builds everything but the HTTP server and the threads. 0 or -errno (message in err). */
int app_init(struct app *app, const struct agentd_config *cfg, char *err, size_t errlen);
/* Starts the I/O pool, the Redis links (when configured) and the workers. 0 or -errno
   (message in err). */
int app_start(struct app *app, char *err, size_t errlen);
/* Stops the I/O pool and the worker threads; runs still in flight stay allocated (their requests
   can then be answered by the server) until app_fini. */
void app_stop_threads(struct app *app);
/* Stops threads if still running and frees everything. */
void app_fini(struct app *app);
/*
 * A reload: applies cfg's live settings (per-dependency timeouts, retry, breaker and limiter
 * settings, tool criticality, budgets) to calls and runs from now on; nothing in flight is
 * dropped. Everything else in cfg is ignored (main reports it as needing a restart). Checks
 * first: -EINVAL (message in err) or -ENOMEM leaves every setting as it was. Any thread, one at
 * a time.
 */
int app_reconfigure(struct app *app, const struct agentd_config *cfg, char *err, size_t errlen);
/* The per-dependency settings in force, as {"anthropic": {"timeout_ms": ..., "retry_max": ...,
   ...}, "calculator": {}, "save_note": {"timeout_ms": ...}, ...} (new reference, NULL on
   ENOMEM). Any thread. */
json_t *app_policies_json(struct app *app);
/* Round-robin worker choice. */
struct worker *app_pick_worker(struct app *app);
/* Model i of the chain (i < app->models.n): its dependency and its request prefix (borrowed,
   the app's lifetime). Any thread. */
struct dependency *app_model_dep(struct app *app, size_t i);
const char *app_model_prefix(const struct app *app, size_t i);
/* Logs a change of the Redis mode (shared <-> degraded) since the last call (any thread). */
void app_report_redis(struct app *app);
/* The cluster-wide budget answered a reservation: one log line per change between spent and
   available (any thread). */
void app_note_shared_budget(struct app *app, bool exhausted, int64_t retry_after_ms);
/* Drains budget transitions (spent <-> ok) into logs and metrics (any thread). */
void app_log_spend_transitions(struct app *app);

#endif
