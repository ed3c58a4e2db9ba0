/*
 * dependency.c — what one outbound dependency is (see dependency.h).
 */
#include "agentd/dependency.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/bucket.h"
#include "agentd/budget.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/redis.h"
#include "agentd/redis_scripts.h"

/* prefix + "{limit:" + name + ":" + model + "}" */
#define DEPENDENCY_KEY_MAX 600
/* model_chain.h's MODEL_NAME_MAX */
#define DEPENDENCY_MODEL_MAX 256

/* One version of the retry settings. Calls hold a pointer to the version they started with, so a
   version is immutable and kept until the dependency is freed (a few dozen bytes per reload that
   changes it). */
struct retry_version {
    struct call_policy policy;
    struct retry_version *older;
};

struct dependency {
    enum dep_id id;
    struct breaker *breaker;
    struct bucket *bucket;
    struct retry_budget *budget;
    _Atomic(struct retry_version *) retry; /* newest; read by the workers without a lock */
    pthread_mutex_t lock;                  /* guards cfg and replicas */
    struct dependency_config cfg;          /* as last set (dependency_new / _reconfigure) */
    int replicas;                          /* last seen alive, >= 1 */
    struct redis_pool *shared;             /* NULL: this replica's bucket only */
    char key[DEPENDENCY_KEY_MAX];
    char model[DEPENDENCY_MODEL_MAX + 1]; /* "" = not a model */
    int model_index;
};

struct dependency *dependency_new(const struct dependency_config *cfg, int64_t now_ms)
{
    struct dependency *d = calloc(1, sizeof(*d));
    struct retry_version *v = calloc(1, sizeof(*v));
    if (!d || !v || pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d);
        free(v);
        return NULL;
    }
    d->id = cfg->id;
    d->cfg = *cfg;
    d->replicas = 1;
    v->policy = cfg->retry;
    atomic_init(&d->retry, v);
    d->model_index = -1;
    if (cfg->model) {
        snprintf(d->model, sizeof(d->model), "%s", cfg->model);
        d->model_index = cfg->model_index;
    }
    d->breaker = breaker_new(d->model[0] ? d->model : dep_name(cfg->id), &cfg->breaker);
    d->bucket = bucket_new(cfg->rate_per_s, cfg->burst, now_ms);
    d->budget = retry_budget_new(cfg->budget_ratio, cfg->budget_window_ms, cfg->budget_min);
    if (!d->breaker || !d->bucket || !d->budget)
        return dependency_free(d);
    return d;
}

struct dependency *dependency_free(struct dependency *d)
{
    if (!d)
        return NULL;
    breaker_free(d->breaker);
    bucket_free(d->bucket);
    retry_budget_free(d->budget);
    for (struct retry_version *v = atomic_load(&d->retry), *older; v; v = older) {
        older = v->older;
        free(v);
    }
    pthread_mutex_destroy(&d->lock);
    free(d);
    return NULL;
}

/* Caller holds d->lock. */
static void dependency_apply_rate(struct dependency *d, int64_t now_ms)
{
    double n = d->replicas;
    bucket_set_rate(d->bucket, d->cfg.rate_per_s / n, d->cfg.burst / n, now_ms);
}

int dependency_prepare(struct dependency *d, const struct dependency_config *cfg,
                       struct dependency_change *ret)
{
    struct retry_version *cur = atomic_load(&d->retry);

    ret->cfg = *cfg;
    ret->version = NULL;
    if (memcmp(&cur->policy, &cfg->retry, sizeof(cfg->retry)) == 0)
        return 0;
    ret->version = calloc(1, sizeof(*ret->version));
    if (!ret->version)
        return -ENOMEM;
    ret->version->policy = cfg->retry;
    return 0;
}

void dependency_change_discard(struct dependency_change *ch)
{
    free(ch->version);
    ch->version = NULL;
}

void dependency_commit(struct dependency *d, struct dependency_change *ch, int64_t now_ms)
{
    pthread_mutex_lock(&d->lock);
    d->cfg.breaker = ch->cfg.breaker;
    d->cfg.rate_per_s = ch->cfg.rate_per_s;
    d->cfg.burst = ch->cfg.burst;
    d->cfg.retry = ch->cfg.retry;
    breaker_set_config(d->breaker, &ch->cfg.breaker);
    dependency_apply_rate(d, now_ms);
    if (ch->version) {
        ch->version->older = atomic_load(&d->retry);
        atomic_store(&d->retry, ch->version);
        ch->version = NULL;
    }
    pthread_mutex_unlock(&d->lock);
}

void dependency_current_config(struct dependency *d, struct dependency_config *ret)
{
    pthread_mutex_lock(&d->lock);
    *ret = d->cfg;
    pthread_mutex_unlock(&d->lock);
}

enum dep_id dependency_id(const struct dependency *d)
{
    return d->id;
}

const char *dependency_name(const struct dependency *d)
{
    return dep_name(d->id);
}

const struct call_policy *dependency_retry_policy(const struct dependency *d)
{
    return &atomic_load(&((struct dependency *)d)->retry)->policy;
}

const char *dependency_model(const struct dependency *d)
{
    return d->model[0] ? d->model : NULL;
}

int dependency_model_index(const struct dependency *d)
{
    return d->model_index;
}

struct call_guards dependency_guards(struct dependency *d)
{
    return (struct call_guards){.breaker = d->breaker, .bucket = d->bucket, .budget = d->budget};
}

void dependency_report_transitions(struct dependency *d)
{
    struct breaker_transition tr[8];
    size_t n;
    while ((n = breaker_drain_transitions(d->breaker, tr, 8)) > 0) {
        for (size_t i = 0; i < n; i++) {
            /* A fallback model has its own series (model label); the dependency's series stay
               the primary model's. */
            if (d->model_index <= 0) {
                metrics_breaker_transition(d->id, tr[i].to);
                metrics_breaker_state(d->id, tr[i].to);
            }
            if (d->model[0])
                metrics_llm_model_breaker_state(d->model_index, tr[i].to);
            log_warn("circuit breaker transition", LF_S("dependency", dep_name(d->id)),
                     LF_S("model", d->model[0] ? d->model : NULL),
                     LF_S("from", breaker_state_name(tr[i].from)),
                     LF_S("to", breaker_state_name(tr[i].to)), LF_S("reason", tr[i].reason));
        }
    }
}

void dependency_share(struct dependency *d, struct redis_pool *pool)
{
    d->shared = pool;
    /* The primary model keeps the dependency's key; a fallback model's limiter is its own. */
    if (pool && d->model_index > 0)
        snprintf(d->key, sizeof(d->key), "%s{limit:%s:%s}", redis_pool_prefix(pool),
                 dep_name(d->id), d->model);
    else if (pool)
        snprintf(d->key, sizeof(d->key), "%s{limit:%s}", redis_pool_prefix(pool), dep_name(d->id));
}

bool dependency_shared_ready(struct dependency *d, int worker_index)
{
    return d->shared && redis_link_up(redis_pool_link(d->shared, worker_index));
}

static int dependency_eval(struct dependency *d, int worker_index, enum redis_script_id id,
                           const char *const *args, int nargs, struct redis_req *req)
{
    const char *argv[8];
    size_t lens[8];

    if (!d->shared || nargs > 7)
        return -ENOTCONN;
    argv[0] = d->key;
    for (int i = 0; i < nargs; i++)
        argv[1 + i] = args[i];
    for (int i = 0; i <= nargs; i++)
        lens[i] = strlen(argv[i]);
    return redis_eval(redis_pool_link(d->shared, worker_index), id, 1, nargs + 1, argv, lens, req);
}

int dependency_shared_take(struct dependency *d, int worker_index, int64_t max_wait_ms,
                           int64_t probe_lease_ms, struct redis_req *req)
{
    char rate[32], burst[32], wait[24], lease[24];

    pthread_mutex_lock(&d->lock);
    double rate_per_s = d->cfg.rate_per_s, size = d->cfg.burst;
    pthread_mutex_unlock(&d->lock);
    snprintf(rate, sizeof(rate), "%.6f", rate_per_s > 0 ? rate_per_s : 1e-6);
    snprintf(burst, sizeof(burst), "%.6f", size);
    snprintf(wait, sizeof(wait), "%lld", (long long)max_wait_ms);
    snprintf(lease, sizeof(lease), "%lld", (long long)probe_lease_ms);
    const char *args[] = {rate, burst, wait, lease};
    return dependency_eval(d, worker_index, REDIS_LIMIT_TAKE, args, 4, req);
}

void dependency_shared_answer(int err, const redisReply *reply, struct call_event *ev)
{
    ev->kind = CALL_EV_SHARED_ANSWER;
    ev->shared = CALL_SHARED_UNAVAILABLE;
    ev->shared_ms = 0;
    ev->shared_probe = false;
    ev->shared_gen = 0;
    if (err != 0 || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    for (size_t i = 0; i < 3; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return;
    long long code = reply->element[0]->integer, ms = reply->element[1]->integer;
    ev->shared_ms = ms > 0 ? ms : 0;
    switch (code) {
    case REDIS_LIMIT_GRANTED:
        ev->shared = CALL_SHARED_GRANTED;
        break;
    case REDIS_LIMIT_PROBE:
        ev->shared = CALL_SHARED_GRANTED;
        ev->shared_probe = true;
        ev->shared_gen = reply->element[2]->integer;
        break;
    case REDIS_LIMIT_REFUSED:
        ev->shared = CALL_SHARED_REFUSED;
        break;
    case REDIS_LIMIT_PAUSED:
        ev->shared = CALL_SHARED_PAUSED;
        break;
    case REDIS_LIMIT_PROBE_OUT:
        ev->shared = CALL_SHARED_PROBE_OUT;
        break;
    default:
        break;
    }
}

void dependency_shared_report(struct dependency *d, int worker_index, const struct call_verdict *v)
{
    char a[24], b[4];

    if (!d->shared)
        return;
    if (v->shared_pause_ms > 0) {
        snprintf(a, sizeof(a), "%lld", (long long)v->shared_pause_ms);
        const char *args[] = {a};
        dependency_eval(d, worker_index, REDIS_LIMIT_PAUSE, args, 1, NULL);
    }
    if (v->probe_report != CALL_PROBE_REPORT_NONE) {
        snprintf(a, sizeof(a), "%lld", (long long)v->probe_gen);
        snprintf(b, sizeof(b), "%d", v->probe_report == CALL_PROBE_REPORT_RECOVERED);
        const char *args[] = {a, b};
        dependency_eval(d, worker_index, REDIS_LIMIT_PROBE_DONE, args, 2, NULL);
    }
}

void dependency_set_replicas(struct dependency *d, int replicas, int64_t now_ms)
{
    pthread_mutex_lock(&d->lock);
    d->replicas = replicas > 1 ? replicas : 1;
    dependency_apply_rate(d, now_ms);
    pthread_mutex_unlock(&d->lock);
}
