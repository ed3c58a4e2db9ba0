/*
 * dependency.c — what one outbound dependency is (see dependency.h).
 */
#include "agentd/dependency.h"

#include <stdlib.h>

#include "agentd/bucket.h"
#include "agentd/budget.h"
#include "agentd/log.h"
#include "agentd/metrics.h"

struct dependency {
    enum dep_id id;
    struct breaker *breaker;
    struct bucket *bucket;
    struct retry_budget *budget;
    struct call_policy retry;
};

struct dependency *dependency_new(const struct dependency_config *cfg, int64_t now_ms)
{
    struct dependency *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->id = cfg->id;
    d->retry = cfg->retry;
    d->breaker = breaker_new(dep_name(cfg->id), &cfg->breaker);
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
    free(d);
    return NULL;
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
    return &d->retry;
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
            metrics_breaker_transition(d->id, tr[i].to);
            metrics_breaker_state(d->id, tr[i].to);
            log_warn("circuit breaker transition", LF_S("dependency", dep_name(d->id)),
                     LF_S("from", breaker_state_name(tr[i].from)),
                     LF_S("to", breaker_state_name(tr[i].to)), LF_S("reason", tr[i].reason));
        }
    }
}
