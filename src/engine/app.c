/*
 * app.c — builds and tears down the shared state (see app.h).
 */
#include "agentd/app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "agentd/anthropic.h"
#include "agentd/clock.h"
#include "agentd/conversations.h"
#include "agentd/idempotency.h"
#include "agentd/io_pool.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/notes.h"
#include "agentd/redis.h"
#include "agentd/spend.h"
#include "agentd/tracer.h"
#include "agentd/worker.h"

/* Idle upstream connections kept per worker beyond its share of AGENTD_MAX_INFLIGHT. */
#define APP_SPARE_CONNECTIONS 64

/* The per-dependency policy (config.h) of a dependency and of a tool. */
static enum config_target dep_target(enum dep_id id)
{
    switch (id) {
    case DEP_WEB_SEARCH:
        return CONFIG_TARGET_WEB_SEARCH;
    case DEP_WEATHER:
        return CONFIG_TARGET_GET_WEATHER;
    default:
        return CONFIG_TARGET_LLM;
    }
}

_Static_assert(CONFIG_TARGET_CALCULATOR + TOOL_CALCULATOR == CONFIG_TARGET_CALCULATOR &&
                   CONFIG_TARGET_CALCULATOR + TOOL_SAVE_NOTE == CONFIG_TARGET_SAVE_NOTE &&
                   CONFIG_TARGET_CALCULATOR + TOOL_WEB_SEARCH == CONFIG_TARGET_WEB_SEARCH &&
                   CONFIG_TARGET_CALCULATOR + TOOL_GET_WEATHER == CONFIG_TARGET_GET_WEATHER &&
                   CONFIG_TARGETS == CONFIG_TARGET_CALCULATOR + TOOL__COUNT,
               "config targets follow enum tool_id");

static enum config_target tool_target(enum tool_id t)
{
    return (enum config_target)(CONFIG_TARGET_CALCULATOR + (int)t);
}

/* model: -1 for a tool; else the chain index of the LLM model this dependency is (its name in
   app->models). */
static struct dependency_config dependency_config_of(const struct app *app,
                                                     const struct agentd_config *cfg,
                                                     enum dep_id id, int model)
{
    const struct config_policy *p = &cfg->policy[dep_target(id)];
    return (struct dependency_config){
        .id = id,
        .breaker =
            {
                .failure_threshold = p->breaker_failures,
                .failure_rate = cfg->breaker_failure_rate,
                .window_ms = cfg->breaker_window_ms,
                .min_calls = cfg->breaker_min_calls,
                .first_open_ms = cfg->breaker_first_open_ms,
                .open_ms = p->breaker_open_ms,
                .half_open_probes = cfg->breaker_half_open_probes,
                .enabled = cfg->breaker_enabled != 0,
            },
        .rate_per_s = p->rate,
        .burst = p->burst,
        .budget_ratio = cfg->retry_budget_ratio,
        .budget_window_ms = cfg->retry_budget_window_ms,
        .budget_min = cfg->retry_budget_min,
        .retry =
            {
                .retry_max = p->retry_max,
                .retry_initial_ms = p->retry_initial_ms,
                .retry_max_delay_ms = p->retry_max_delay_ms,
                .retry_after_cap_ms = cfg->retry_after_cap_ms,
            },
        .model = model >= 0 ? app->models.names[model] : NULL,
        .model_index = model,
    };
}

static struct dependency *new_dependency(struct app *app, enum dep_id id, int model)
{
    struct dependency_config dc = dependency_config_of(app, &app->cfg, id, model);
    return dependency_new(&dc, clock_now_ms());
}

static int init_dependency(struct app *app, enum dep_id id)
{
    app->deps[id] = new_dependency(app, id, id == DEP_ANTHROPIC ? 0 : -1);
    return app->deps[id] ? 0 : -ENOMEM;
}

/* The fallback models: their dependencies and request prefixes (model 0 is the primary's). */
static int init_models(struct app *app)
{
    const char *names[MODEL_CHAIN_MAX];
    for (size_t i = 0; i < app->models.n; i++)
        names[i] = app->models.names[i];
    metrics_set_models(names, (int)app->models.n);
    app->model_deps[0] = app->deps[DEP_ANTHROPIC];
    app->model_prefixes[0] = app->llm_prefix;
    for (size_t i = 1; i < app->models.n; i++) {
        struct llm_params p = app->llm_params;
        p.model = app->models.names[i];
        app->model_deps[i] = new_dependency(app, DEP_ANTHROPIC, (int)i);
        app->model_prefixes[i] = anthropic_request_prefix(&p);
        if (!app->model_deps[i] || !app->model_prefixes[i])
            return -ENOMEM;
    }
    return 0;
}

/* The live settings that are plain values: timeouts, criticality, the run token limit. */
static void store_live_values(struct app *app, const struct agentd_config *cfg,
                              const enum tool_criticality crit[TOOL__COUNT])
{
    atomic_store(&app->llm_timeout_ms, cfg->policy[CONFIG_TARGET_LLM].timeout_ms);
    atomic_store(&app->max_run_tokens, cfg->max_run_tokens);
    for (int t = 0; t < TOOL__COUNT; t++) {
        atomic_store(&app->tool_env.timeout_ms[t], cfg->policy[tool_target(t)].timeout_ms);
        atomic_store(&app->criticality[t], (int)crit[t]);
    }
}

static int parse_criticality(const struct agentd_config *cfg,
                             enum tool_criticality ret[TOOL__COUNT], char *err, size_t errlen)
{
    char detail[256];
    if (tools_parse_criticality(cfg->tool_criticality, ret, detail, sizeof(detail)) < 0) {
        snprintf(err, errlen, "AGENTD_TOOL_CRITICALITY: %s", detail);
        return -EINVAL;
    }
    return 0;
}

int app_reconfigure(struct app *app, const struct agentd_config *cfg, char *err, size_t errlen)
{
    enum tool_criticality crit[TOOL__COUNT];
    int64_t now = clock_now_ms();
    int r = parse_criticality(cfg, crit, err, errlen);
    if (r < 0)
        return r;
    /* Every dependency: deps[] (the primary model is deps[DEP_ANTHROPIC]), then the fallback
       models, which take the LLM's policy too. */
    struct dependency *deps[DEP__COUNT + MODEL_CHAIN_MAX];
    struct dependency_change changes[DEP__COUNT + MODEL_CHAIN_MAX];
    size_t n = 0;
    for (int i = 0; i < DEP__COUNT; i++) {
        struct dependency_config dc =
            dependency_config_of(app, cfg, (enum dep_id)i, i == DEP_ANTHROPIC ? 0 : -1);
        deps[n] = app->deps[i];
        r = dependency_prepare(deps[n], &dc, &changes[n]);
        if (r < 0)
            break;
        n++;
    }
    for (size_t m = 1; r >= 0 && m < app->models.n; m++) {
        struct dependency_config dc = dependency_config_of(app, cfg, DEP_ANTHROPIC, (int)m);
        deps[n] = app->model_deps[m];
        r = dependency_prepare(deps[n], &dc, &changes[n]);
        if (r >= 0)
            n++;
    }
    if (r < 0) {
        while (n-- > 0)
            dependency_change_discard(&changes[n]);
        snprintf(err, errlen, "out of memory");
        return r;
    }
    /* Nothing below fails: every setting changes, or (above) none. */
    for (size_t i = 0; i < n; i++)
        dependency_commit(deps[i], &changes[i], now);
    spend_set_budgets(app->spend, cfg->budget_usd_per_hour, cfg->budget_tokens_per_hour);
    store_live_values(app, cfg, crit);
    return 0;
}

json_t *app_policies_json(struct app *app)
{
    json_t *all = json_object();
    for (int t = 0; all && t < CONFIG_TARGETS; t++) {
        json_t *o = json_object();
        struct dependency *d = NULL;
        if (t == CONFIG_TARGET_LLM) {
            d = app->deps[DEP_ANTHROPIC];
            json_object_set_new(o, "timeout_ms", json_integer(atomic_load(&app->llm_timeout_ms)));
        } else if (config_target_applies((enum config_target)t, "TIMEOUT_MS")) {
            enum tool_id tool = (enum tool_id)(t - CONFIG_TARGET_CALCULATOR);
            json_object_set_new(o, "timeout_ms",
                                json_integer(atomic_load(&app->tool_env.timeout_ms[tool])));
            d = tool == TOOL_WEB_SEARCH    ? app->deps[DEP_WEB_SEARCH]
                : tool == TOOL_GET_WEATHER ? app->deps[DEP_WEATHER]
                                           : NULL;
        }
        if (d) {
            struct dependency_config dc;
            dependency_current_config(d, &dc);
            json_object_set_new(o, "retry_max", json_integer(dc.retry.retry_max));
            json_object_set_new(o, "retry_initial_ms", json_integer(dc.retry.retry_initial_ms));
            json_object_set_new(o, "retry_max_delay_ms", json_integer(dc.retry.retry_max_delay_ms));
            json_object_set_new(o, "breaker_failures", json_integer(dc.breaker.failure_threshold));
            json_object_set_new(o, "breaker_open_ms", json_integer(dc.breaker.open_ms));
            json_object_set_new(o, "rate", json_real(dc.rate_per_s));
            json_object_set_new(o, "burst", json_real(dc.burst));
        }
        if (!o || json_object_set_new(all, config_target_name((enum config_target)t), o) < 0) {
            json_decref(all);
            return NULL;
        }
    }
    return all;
}

struct dependency *app_model_dep(struct app *app, size_t i)
{
    return app->model_deps[i < app->models.n ? i : 0];
}

const char *app_model_prefix(const struct app *app, size_t i)
{
    return app->model_prefixes[i < app->models.n ? i : 0];
}

int app_init(struct app *app, const struct agentd_config *cfg, char *err, size_t errlen)
{
    memset(app, 0, sizeof(*app));
    app->cfg = *cfg;
    atomic_init(&app->next_worker, 0);
    atomic_init(&app->inflight, 0);
    atomic_init(&app->buffered_bytes, 0);
    atomic_init(&app->run_bytes, 0);
    atomic_init(&app->draining, false);
    atomic_init(&app->run_seq, 1);

    enum tool_criticality crit[TOOL__COUNT];
    if (parse_criticality(cfg, crit, err, errlen) < 0)
        return -EINVAL;
    if (model_chain_parse(cfg->model, cfg->model_fallbacks, &app->models, err, errlen) < 0) {
        char detail[256];
        snprintf(detail, sizeof(detail), "%s", err);
        snprintf(err, errlen, "AGENTD_MODEL_FALLBACKS: %s", detail);
        return -EINVAL;
    }
    for (int i = 0; i < DEP__COUNT; i++) {
        if (init_dependency(app, (enum dep_id)i) < 0) {
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
    }
    app->spend = spend_new(cfg->price_input_per_mtok, cfg->price_output_per_mtok,
                           cfg->budget_usd_per_hour, cfg->budget_tokens_per_hour);
    if (app->spend)
        spend_set_cache_prices(app->spend, cfg->price_cache_write_per_mtok,
                               cfg->price_cache_read_per_mtok);
    metrics_budget_limits(cfg->budget_usd_per_hour, cfg->budget_tokens_per_hour);
    if (cfg->idempotency_max > 0)
        app->idem = idem_store_new((size_t)cfg->idempotency_max, cfg->idempotency_max_bytes,
                                   cfg->idempotency_ttl_ms);
    app->tools_json = tools_definitions_json(cfg->search_url && cfg->search_url[0]);
    /* Nothing is counted here: app_init does no I/O (--check-config runs it too). */
    app->notes_usage = notes_usage_new(cfg->notes_dir, (uint64_t)cfg->notes_max_files,
                                       (uint64_t)cfg->notes_max_bytes);
    if (cfg->conversations_max > 0)
        app->convs = conv_store_new(&(struct conv_store_limits){
            .max_conversations = cfg->conversations_max,
            .ttl_ms = cfg->conversation_ttl_ms,
            .max_messages = cfg->conversation_max_messages,
            .max_history_bytes = cfg->conversation_max_bytes,
            .max_total_bytes = cfg->conversations_max_bytes,
        });
    app->llm_params = (struct llm_params){
        .model = app->cfg.model,
        .max_tokens = app->cfg.max_tokens,
        .temperature = app->cfg.temperature,
        .system = app->cfg.system_prompt,
        .tools = app->tools_json,
        .max_request_bytes = app->cfg.llm_max_request_bytes,
        .prompt_cache = app->cfg.prompt_cache != 0,
    };
    if (app->tools_json)
        app->llm_prefix = anthropic_request_prefix(&app->llm_params);
    if (app->llm_prefix && init_models(app) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    app->tool_env = (struct tool_exec_env){
        .web_search = app->deps[DEP_WEB_SEARCH],
        .weather = app->deps[DEP_WEATHER],
        .search_url = app->cfg.search_url,
        .geocoding_url = app->cfg.weather_geocoding_url,
        .forecast_url = app->cfg.weather_forecast_url,
        .notes_dir = app->cfg.notes_dir,
        .notes_usage = app->notes_usage,
    };
    store_live_values(app, cfg, crit);
    if (cfg->redis_url && cfg->redis_url[0] &&
        (!cfg->redis_prefix || strpbrk(cfg->redis_prefix, "{}"))) {
        snprintf(err, errlen, "AGENTD_REDIS_PREFIX: no '{' or '}' (they mark Redis hash tags)");
        return -EINVAL;
    }
    app->n_workers = cfg->workers;
    app->workers = calloc((size_t)app->n_workers, sizeof(*app->workers));
    app->durable_runs = calloc((size_t)app->n_workers, sizeof(*app->durable_runs));
    if (!app->llm_prefix || !app->spend || !app->notes_usage ||
        (cfg->idempotency_max > 0 && !app->idem) || !app->tools_json ||
        (cfg->conversations_max > 0 && !app->convs) || !app->workers || !app->durable_runs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Keep a warm connection for every run a worker may have in flight: below that, finished
       transfers close connections that the next run has to open again. */
    long conns =
        cfg->max_inflight / (app->n_workers > 0 ? app->n_workers : 1) + APP_SPARE_CONNECTIONS;
    for (int i = 0; i < app->n_workers; i++) {
        app->workers[i] = worker_new(i, conns);
        if (!app->workers[i]) {
            snprintf(err, errlen, "cannot create worker %d", i);
            return -ENOMEM;
        }
    }
    return 0;
}

static void app_on_replicas(void *arg, int replicas)
{
    struct app *app = arg;
    int64_t now = clock_now_ms();
    for (int i = 0; i < DEP__COUNT; i++)
        dependency_set_replicas(app->deps[i], replicas, now);
    for (size_t i = 1; i < app->models.n; i++)
        dependency_set_replicas(app->model_deps[i], replicas, now);
    spend_set_share(app->spend, replicas);
}

/* The Redis pool, when AGENTD_REDIS_URL is set: every dependency's limiter becomes the
   cluster's. */
static int app_share(struct app *app, char *err, size_t errlen)
{
    const struct agentd_config *cfg = &app->cfg;
    struct redis_settings rs = {.timeout_ms = cfg->redis_timeout_ms, .prefix = cfg->redis_prefix};
    char id[REDIS_REPLICA_ID_BYTES], host[64] = "agentd";
    uint64_t nonce = 0;

    if (!cfg->redis_url || !cfg->redis_url[0])
        return 0;
    if (url_redis_parse(cfg->redis_url, &rs.addr) < 0) {
        snprintf(err, errlen, "AGENTD_REDIS_URL: not a redis:// URL");
        return -EINVAL;
    }
    if (cfg->redis_password)
        snprintf(rs.addr.password, sizeof(rs.addr.password), "%s", cfg->redis_password);
    /* The pod name, told apart from a restarted process with the same name. */
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) < 0)
        nonce = (uint64_t)clock_wall_ms();
    snprintf(id, sizeof(id), "%s/%d/%016llx", host, (int)getpid(), (unsigned long long)nonce);
    rs.replica_id = id;
    app->redis = redis_pool_new(&rs, app->workers, app->n_workers, app->io, err, errlen);
    explicit_bzero(&rs.addr, sizeof(rs.addr));
    if (!app->redis)
        return -ENOMEM;
    redis_pool_on_replicas(app->redis, app_on_replicas, app);
    for (int i = 0; i < DEP__COUNT; i++)
        dependency_share(app->deps[i], app->redis);
    for (size_t i = 1; i < app->models.n; i++)
        dependency_share(app->model_deps[i], app->redis);
    return 0;
}

int app_start(struct app *app, char *err, size_t errlen)
{
    app->io = io_pool_new(app->cfg.io_threads);
    if (!app->io) {
        snprintf(err, errlen, "cannot start the I/O threads");
        return -ENOMEM;
    }
    app->tool_env.io = app->io;
    int r = 0;
    /* The span exporter's breaker: the global AGENTD_BREAKER_* settings (no per-dependency ones).
     */
    struct breaker_config bc = dependency_config_of(app, &app->cfg, DEP_ANTHROPIC, -1).breaker;
    bc.failure_threshold = app->cfg.breaker_failures;
    bc.open_ms = app->cfg.breaker_open_ms;
    app->tracer = tracer_new(&app->cfg, &bc, &r);
    if (r < 0) {
        snprintf(err, errlen, "cannot start the span exporter");
        return r;
    }
    r = app_share(app, err, errlen);
    if (r < 0)
        return r;
    for (int i = 0; i < app->n_workers; i++) {
        r = worker_start(app->workers[i]);
        if (r < 0) {
            snprintf(err, errlen, "cannot start worker %d", i);
            return r;
        }
    }
    if (app->redis)
        redis_pool_start(app->redis);
    return 0;
}

void app_stop_threads(struct app *app)
{
    /* Pool first: its completions go to workers that still run. It stays allocated (refusing
       jobs) until app_fini, since a worker may still try to submit one until it stops. */
    io_pool_stop(app->io);
    for (int i = 0; app->workers && i < app->n_workers; i++)
        worker_stop(app->workers[i]);
    /* Completions that arrived too late still release what they hold. */
    for (int i = 0; app->workers && i < app->n_workers; i++)
        if (app->workers[i])
            worker_run_pending(app->workers[i]);
}

void app_fini(struct app *app)
{
    app_stop_threads(app);
    /* The links live on the stopped workers' loops: dropped before the workers go. */
    app->redis = redis_pool_free(app->redis);
    app->io = io_pool_free(app->io);
    app->tool_env.io = NULL;
    for (int i = 0; app->workers && i < app->n_workers; i++)
        app->workers[i] = worker_free(app->workers[i]);
    free(app->workers);
    app->workers = NULL;
    free(app->durable_runs);
    app->durable_runs = NULL;
    for (int i = 0; i < DEP__COUNT; i++)
        app->deps[i] = dependency_free(app->deps[i]);
    /* Model 0 is deps[DEP_ANTHROPIC] and llm_prefix, freed with them. */
    for (size_t i = 1; i < MODEL_CHAIN_MAX; i++) {
        app->model_deps[i] = dependency_free(app->model_deps[i]);
        free(app->model_prefixes[i]);
        app->model_prefixes[i] = NULL;
    }
    app->model_deps[0] = NULL;
    app->model_prefixes[0] = NULL;
    app->convs = conv_store_free(app->convs);
    app->spend = spend_free(app->spend);
    app->idem = idem_store_free(app->idem);
    app->notes_usage = notes_usage_free(app->notes_usage);
    json_decref(app->tools_json);
    free(app->llm_prefix);
    app->llm_prefix = NULL;
    app->tools_json = NULL;
    /* Last: runs ended at shutdown (run_abort) hand their spans over until here. */
    app->tracer = tracer_free(app->tracer);
}

struct worker *app_pick_worker(struct app *app)
{
    unsigned i = atomic_fetch_add(&app->next_worker, 1);
    return app->workers[i % (unsigned)app->n_workers];
}

void app_log_spend_transitions(struct app *app)
{
    struct spend_transition tr[SPEND_TRANSITION_RING];
    size_t n = spend_drain_transitions(app->spend, tr, SPEND_TRANSITION_RING);
    for (size_t i = 0; i < n; i++) {
        metrics_budget_transition((enum metrics_budget_kind)tr[i].kind, tr[i].exhausted);
        log_warn(tr[i].exhausted ? "budget exhausted: refusing LLM calls"
                                 : "budget available again",
                 LF_S("dependency", "anthropic"),
                 LF_S("reason", tr[i].kind == SPEND_USD ? "usd per hour" : "tokens per hour"),
                 LF_D("used", tr[i].used));
    }
}

void app_report_redis(struct app *app)
{
    enum redis_mode mode;
    if (!app->redis || !redis_pool_drain_mode(app->redis, &mode))
        return;
    struct redis_stats st;
    redis_pool_stats(app->redis, &st);
    if (mode == REDIS_MODE_SHARED)
        log_info("redis: shared state", LF_I("links_up", st.links_up),
                 LF_I("replicas", redis_pool_replicas(app->redis)));
    else
        log_warn("redis: degraded, falling back to this replica's own state",
                 LF_I("links_up", st.links_up), LF_I("links", app->n_workers));
}

void app_note_shared_budget(struct app *app, bool exhausted, int64_t retry_after_ms)
{
    if (atomic_exchange(&app->shared_budget_spent, exhausted) == exhausted)
        return;
    if (exhausted)
        log_warn("budget exhausted across replicas: refusing LLM calls",
                 LF_S("dependency", "anthropic"), LF_I("retry_after_ms", retry_after_ms));
    else
        log_info("budget available again across replicas", LF_S("dependency", "anthropic"));
}
