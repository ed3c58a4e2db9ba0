/*
 * dependency.h — one outbound dependency (the LLM API, web_search, weather):
 * its name, circuit breaker, token bucket (with the 429 pause and its probe),
 * retry budget and retry settings, and the reporting of its breaker
 * transitions as log lines and metrics.
 *
 * Built once by app_init() and shared by every worker. A reload changes the
 * retry, breaker and limiter settings with dependency_reconfigure(); the
 * retry budget's settings never change after dependency_new(). The breaker,
 * bucket and budget carry their own locks and the retry settings are
 * immutable versions swapped atomically, so every function here is safe from
 * any thread. Calls hold a pointer to their dependency (borrowed: the
 * dependency outlives them).
 */
#ifndef AGENTD_DEPENDENCY_H
#define AGENTD_DEPENDENCY_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "agentd/breaker.h"
#include "agentd/call_policy.h"
#include "agentd/vocab.h" /* enum dep_id */

struct dependency;

struct dependency_config {
    enum dep_id id;
    struct breaker_config breaker;
    double rate_per_s; /* limiter refill (attempts/s) */
    double burst;      /* limiter size (attempts) */
    double budget_ratio;
    int64_t budget_window_ms;
    int budget_min;
    struct call_policy retry;
    /* The LLM API's models (model_chain.h): each model of the chain is its own dependency, so
       its breaker, limiter and retry budget are its own. NULL: not a model (a tool). */
    const char *model;
    int model_index; /* its place in the chain (0 = the primary model), with model */
};

/* NULL on ENOMEM. now_ms: monotonic, fills the bucket's start. */
struct dependency *dependency_new(const struct dependency_config *cfg, int64_t now_ms);
/* NULL is fine; returns NULL. */
struct dependency *dependency_free(struct dependency *d);

enum dep_id dependency_id(const struct dependency *d);
/* "anthropic", "web_search", "weather" (static). */
const char *dependency_name(const struct dependency *d);
/* The retry settings in force (borrowed, valid for the dependency's lifetime and never changed:
   a reload publishes a new version, so a call may keep the one it read). */
const struct call_policy *dependency_retry_policy(const struct dependency *d);
/*
 * A reload, in two steps so that several dependencies change all together or not at all:
 * dependency_prepare() allocates what cfg needs (0, or -ENOMEM with nothing allocated) and
 * changes nothing; dependency_commit() applies cfg's breaker, limiter (rate, burst; divided by
 * the replicas as before) and retry settings to calls from now on, cannot fail, and consumes the
 * change; dependency_change_discard() drops a prepared change instead. cfg's id and retry-budget
 * fields are ignored. Any thread; prepare and commit of one dependency from one thread at a time.
 */
struct retry_version;
struct dependency_change {
    struct dependency_config cfg;
    struct retry_version *version; /* owned until committed or discarded; NULL = retry unchanged */
};
int dependency_prepare(struct dependency *d, const struct dependency_config *cfg,
                       struct dependency_change *ret);
void dependency_commit(struct dependency *d, struct dependency_change *ch, int64_t now_ms);
void dependency_change_discard(struct dependency_change *ch);
/* The settings in force (any thread). */
void dependency_current_config(struct dependency *d, struct dependency_config *ret);
/* The model this dependency is (static for its lifetime), or NULL; and its chain index (-1). */
const char *dependency_model(const struct dependency *d);
int dependency_model_index(const struct dependency *d);
/* The shared objects the call policy consults (borrowed for the dependency's lifetime). */
struct call_guards dependency_guards(struct dependency *d);

/* Logs and counts the breaker's state changes since the last call (any thread). */
void dependency_report_transitions(struct dependency *d);

/*
 * The cluster-wide limiter. With a Redis pool (set once, before the workers run), every attempt
 * takes its token from one bucket in Redis that all replicas share, and a 429 pause and its probe
 * are shared too. When this worker's link is down or an answer does not come, the call uses the
 * local bucket, which then holds this replica's share: rate and burst divided by the replicas
 * last seen alive (dependency_set_replicas).
 */
struct redis_pool;
struct redis_req;
void dependency_share(struct dependency *d, struct redis_pool *pool);
/* Worker thread only, like the functions below taking worker_index. */
bool dependency_shared_ready(struct dependency *d, int worker_index);
/* Asks for a token. 0: req->done() follows, read it with dependency_shared_answer(); < 0:
   nothing was asked (answer CALL_SHARED_UNAVAILABLE). probe_lease_ms: how long a probe's slot
   holds if this replica never reports (its attempt timeout). */
int dependency_shared_take(struct dependency *d, int worker_index, int64_t max_wait_ms,
                           int64_t probe_lease_ms, struct redis_req *req);
/* Turns the answer (redis.h: err, reply) into a CALL_EV_SHARED_ANSWER event. */
void dependency_shared_answer(int err, const redisReply *reply, struct call_event *ev);
/* What a verdict owes the cluster (call_policy.h: shared_pause_ms, probe_report); fire and
   forget, dropped when the link is down. */
void dependency_shared_report(struct dependency *d, int worker_index, const struct call_verdict *v);
/* Any thread: the local bucket takes rate / replicas and burst / replicas (at least 1). */
void dependency_set_replicas(struct dependency *d, int replicas, int64_t now_ms);

#endif
