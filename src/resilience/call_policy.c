/*
 * call_policy.c — the decisions of one outbound call (see call_policy.h).
 * The breaker, bucket, budget and backoff modules each answer one question;
 * this file asks them in the right order and turns their answers into the
 * next step of the call.
 */
#include "agentd/call_policy.h"

#include <string.h>

#include "agentd/backoff.h"
#include "agentd/breaker.h"
#include "agentd/bucket.h"
#include "agentd/budget.h"
#include "agentd/ratelimit_headers.h"

static const char *const outcome_names[] = {"ok",           "permanent_error", "retries_exhausted",
                                            "circuit_open", "rate_limited",    "deadline"};

const char *call_outcome_name(enum call_outcome o)
{
    return (unsigned)o < sizeof(outcome_names) / sizeof(outcome_names[0]) ? outcome_names[o]
                                                                          : "unknown";
}

void call_progress_init(struct call_progress *p, int64_t deadline_ms, bool low_priority)
{
    memset(p, 0, sizeof(*p));
    p->deadline_ms = deadline_ms;
    p->low_priority = low_priority;
    p->phase = CALL_PHASE_IDLE;
}

static int64_t or_default(int64_t ms)
{
    return ms > 0 ? ms : CALL_POLICY_DEFAULT_RETRY_AFTER_MS;
}

static void finish(struct call_progress *st, struct call_verdict *v, enum call_outcome outcome,
                   int64_t retry_after_ms, enum call_note note)
{
    st->phase = CALL_PHASE_IDLE;
    v->action = CALL_ACT_FINISH;
    v->outcome = outcome;
    v->retry_after_ms = retry_after_ms;
    v->note = note;
}

static void wait_until(struct call_progress *st, struct call_verdict *v, int64_t at_ms)
{
    st->phase = CALL_PHASE_WAIT;
    v->action = CALL_ACT_WAIT;
    v->at_ms = at_ms;
}

/* Ends this call's role as the throttle probe, local or cluster-wide, if it had it. */
static void end_probe(const struct call_guards *g, struct call_progress *st, bool recovered,
                      struct call_verdict *v)
{
    if (st->probe) {
        bucket_throttle_probe_done(g->bucket, recovered);
        st->probe = false;
    }
    if (st->shared_probe) {
        v->probe_report = recovered ? CALL_PROBE_REPORT_RECOVERED : CALL_PROBE_REPORT_FAILED;
        v->probe_gen = st->shared_gen;
        st->shared_probe = false;
    }
}

/* Held back by a 429 pause (pause > 0: ms left) or by another call's probe (pause < 0): wait
   without an attempt, or give up when that cannot end in time. */
static void held_back(const struct call_guards *g, struct call_progress *st, int64_t pause,
                      int64_t now, uint64_t *rng, struct call_verdict *v)
{
    breaker_record(g->breaker, now, BREAKER_IGNORED);
    int64_t next =
        now + (pause > 0 ? pause
                         : CALL_POLICY_THROTTLE_RECHECK_MS +
                               (int64_t)(backoff_rng_next(rng) % CALL_POLICY_THROTTLE_RECHECK_MS));
    if (st->low_priority || next >= st->deadline_ms)
        finish(st, v, CALL_RATE_LIMITED, pause > 0 ? pause : CALL_POLICY_DEFAULT_RETRY_AFTER_MS,
               CALL_NOTE_THROTTLED);
    else
        wait_until(st, v, next);
}

/* A token is reserved for start in `wait` ms: wait for it, or launch now. */
static void token_granted(struct call_progress *st, int64_t wait, int64_t now,
                          struct call_verdict *v)
{
    v->note = CALL_NOTE_LIMITER_WAIT;
    v->delay_ms = wait;
    if (wait > 0) {
        st->phase = CALL_PHASE_TOKEN_WAIT;
        v->action = CALL_ACT_TOKEN_WAIT;
        v->at_ms = now + wait;
        return;
    }
    st->phase = CALL_PHASE_LAUNCHING;
    v->action = CALL_ACT_LAUNCH;
}

static void limiter_refused(const struct call_guards *g, struct call_progress *st,
                            int64_t retry_after_ms, int64_t now, struct call_verdict *v)
{
    end_probe(g, st, false, v);
    breaker_record(g->breaker, now, BREAKER_IGNORED);
    finish(st, v, CALL_RATE_LIMITED,
           retry_after_ms > 0 ? retry_after_ms : CALL_POLICY_DEFAULT_RETRY_AFTER_MS,
           CALL_NOTE_LIMITER_REFUSED);
}

static int64_t max_token_wait(const struct call_progress *st, int64_t now)
{
    return st->low_priority ? 0 : st->deadline_ms - now;
}

/* This replica's own limiter: throttle (a 429 pause) → bucket. */
static void local_limit(const struct call_guards *g, struct call_progress *st, int64_t now,
                        uint64_t *rng, struct call_verdict *v)
{
    /* While the dependency is paused by a 429, calls wait without attempts until the pause ends
       and one probe has answered. */
    bool probe = false;
    int64_t pause = bucket_throttle_gate(g->bucket, now, &probe);
    st->probe = probe;
    if (pause != 0) {
        held_back(g, st, pause, now, rng, v);
        return;
    }
    int64_t wait = bucket_reserve(g->bucket, now, max_token_wait(st, now));
    if (wait < 0) {
        int64_t until = bucket_paused_until(g->bucket); /* INT64_MIN when never paused */
        limiter_refused(g, st, until > now ? until - now : 0, now, v);
        return;
    }
    token_granted(st, wait, now, v);
}

/* Deadline → breaker → limiter (the cluster's when reachable, else this replica's) → launch. */
static void gate(const struct call_guards *g, struct call_progress *st, int64_t now, uint64_t *rng,
                 struct call_verdict *v)
{
    if (now >= st->deadline_ms) {
        finish(st, v, CALL_DEADLINE, 0, CALL_NOTE_DEADLINE);
        return;
    }
    int64_t breaker_wait = 0;
    if (!breaker_allow(g->breaker, now, &breaker_wait)) {
        finish(st, v, CALL_BREAKER_OPEN, breaker_wait, CALL_NOTE_BREAKER_OPEN);
        return;
    }
    st->shared_token = false;
    if (g->shared) {
        st->phase = CALL_PHASE_ASKING;
        v->action = CALL_ACT_ASK_SHARED;
        v->max_wait_ms = max_token_wait(st, now);
        return;
    }
    local_limit(g, st, now, rng, v);
}

static void shared_answer(const struct call_guards *g, struct call_progress *st,
                          const struct call_event *ev, int64_t now, uint64_t *rng,
                          struct call_verdict *v)
{
    switch (ev->shared) {
    case CALL_SHARED_GRANTED:
        st->shared_token = true;
        st->shared_probe = ev->shared_probe;
        st->shared_gen = ev->shared_gen;
        token_granted(st, ev->shared_ms > 0 ? ev->shared_ms : 0, now, v);
        break;
    case CALL_SHARED_REFUSED:
        limiter_refused(g, st, ev->shared_ms, now, v);
        break;
    case CALL_SHARED_PAUSED:
        held_back(g, st, ev->shared_ms > 0 ? ev->shared_ms : 1, now, rng, v);
        break;
    case CALL_SHARED_PROBE_OUT:
        held_back(g, st, -1, now, rng, v);
        break;
    case CALL_SHARED_UNAVAILABLE:
        /* The deadline and the breaker were checked when the question was asked. */
        local_limit(g, st, now, rng, v);
        break;
    }
}

static void token_due(const struct call_guards *g, struct call_progress *st, int64_t now,
                      uint64_t *rng, struct call_verdict *v)
{
    /* A 429 may have paused the dependency while we waited: get back in line behind the pause
       instead of all firing at once when it ends. */
    if (bucket_paused_until(g->bucket) > now) {
        end_probe(g, st, false, v);
        if (!st->shared_token)
            bucket_cancel(g->bucket, now);
        breaker_record(g->breaker, now, BREAKER_IGNORED);
        gate(g, st, now, rng, v);
        return;
    }
    st->phase = CALL_PHASE_LAUNCHING;
    v->action = CALL_ACT_LAUNCH;
}

static enum call_retry_reason reason_of(const struct call_progress *st, enum call_transport t)
{
    if (st->last_status == 429)
        return CALL_RETRY_HTTP_429;
    if (st->last_status >= 200 && st->last_status < 300)
        return CALL_RETRY_MALFORMED;
    if (st->last_status > 0)
        return CALL_RETRY_HTTP_5XX;
    return t == CALL_TRANSPORT_TIMEOUT ? CALL_RETRY_TIMEOUT : CALL_RETRY_CONNECTION_ERROR;
}

/* A transient failure: another attempt after a delay, or give up. server_delay_ms: the server's
   retry-after (capped), -1 when it gave none; told_when: it was a 429 that said when. */
static void retry_or_give_up(const struct call_policy *p, const struct call_guards *g,
                             struct call_progress *st, int64_t server_delay_ms, bool told_when,
                             int64_t now, uint64_t *rng, struct call_verdict *v)
{
    int retries_done = st->attempts - 1 - st->throttled_retries;
    if (retries_done >= p->retry_max) {
        finish(st, v, CALL_EXHAUSTED, or_default(server_delay_ms), CALL_NOTE_RETRIES_EXHAUSTED);
        return;
    }
    int64_t delay = server_delay_ms >= 0 ? server_delay_ms
                                         : backoff_full_jitter_ms(retries_done, p->retry_initial_ms,
                                                                  p->retry_max_delay_ms, rng);
    v->delay_ms = delay;
    if (now + delay >= st->deadline_ms) {
        /* The wait would end past the deadline: answer now, tell the client when to come back. */
        finish(st, v, CALL_EXHAUSTED, or_default(delay), CALL_NOTE_RETRY_PAST_DEADLINE);
        return;
    }
    if (!told_when && !retry_budget_try_spend(g->budget, now)) {
        finish(st, v, CALL_EXHAUSTED, or_default(delay), CALL_NOTE_BUDGET_EXHAUSTED);
        return;
    }
    v->note = CALL_NOTE_RETRY;
    wait_until(st, v, now + delay);
}

/* The rate-limit headers said a budget is spent for wait_ms: hold every call of the
   dependency (here and, when shared, in the cluster) until it refills. */
static void pause_for_reset(const struct call_guards *g, struct call_progress *st, int64_t wait_ms,
                            int64_t now, struct call_verdict *v)
{
    bucket_pause_until(g->bucket, now + wait_ms);
    st->probe = false;
    st->shared_probe = false;
    v->reset_wait_ms = wait_ms;
    if (g->shared)
        v->shared_pause_ms = wait_ms;
}

static int64_t reset_wait(const struct call_policy *p, const struct call_event *ev)
{
    if (!ev->ratelimit)
        return 0;
    return ratelimit_wait_ms(ev->ratelimit, ev->now_wall_ms, ev->ratelimit_output_tokens,
                             p->retry_after_cap_ms);
}

static void attempt_end(const struct call_policy *p, const struct call_guards *g,
                        struct call_progress *st, const struct call_event *ev, int64_t now,
                        uint64_t *rng, struct call_verdict *v)
{
    if (ev->transport != CALL_TRANSPORT_ANSWERED) {
        st->last_status = 0;
        v->reason = reason_of(st, ev->transport);
        end_probe(g, st, false, v);
        breaker_record(g->breaker, now, BREAKER_FAILURE);
        retry_or_give_up(p, g, st, -1, false, now, rng, v);
        return;
    }
    long status = ev->status;
    st->last_status = status;
    /* The throttle probe is over unless a new 429 pause (below) takes its place. */
    if (status != 429)
        end_probe(g, st, true, v);
    int64_t reset = reset_wait(p, ev);
    if (status != 429 && reset > 0)
        pause_for_reset(g, st, reset, now, v);
    if (status >= 200 && status < 300 && !ev->body_rejected) {
        breaker_record(g->breaker, now, BREAKER_SUCCESS);
        finish(st, v, CALL_OK, 0, CALL_NOTE_SUCCESS);
        return;
    }
    if (status >= 200 && status < 300) {
        /* Answered, but unusable: a failure of the dependency, worth another attempt. */
        v->reason = CALL_RETRY_MALFORMED;
        breaker_record(g->breaker, now, BREAKER_FAILURE);
        retry_or_give_up(p, g, st, -1, false, now, rng, v);
        return;
    }
    int should = backoff_parse_should_retry(ev->should_retry_hdr);
    if (backoff_classify_status(status, should) == BACKOFF_PERMANENT) {
        breaker_record(g->breaker, now, BREAKER_IGNORED);
        finish(st, v, CALL_PERMANENT, 0, CALL_NOTE_PERMANENT);
        return;
    }
    /* Transient. 429 is the limiter's business, not the breaker's. */
    v->reason = reason_of(st, ev->transport);
    breaker_record(g->breaker, now, status == 429 ? BREAKER_IGNORED : BREAKER_FAILURE);
    if (status == 529 && st->overload_ends) {
        end_probe(g, st, false, v);
        finish(st, v, CALL_EXHAUSTED, CALL_POLICY_DEFAULT_RETRY_AFTER_MS, CALL_NOTE_OVERLOADED);
        return;
    }
    int64_t server_delay =
        backoff_retry_after_ms(ev->retry_after_ms_hdr, ev->retry_after_hdr, ev->now_wall_ms);
    if (server_delay > p->retry_after_cap_ms)
        server_delay = p->retry_after_cap_ms;
    /* A 429 without retry-after: the rate-limit headers' reset says when. */
    if (status == 429 && server_delay <= 0 && reset > 0)
        server_delay = reset;
    bool told_when = status == 429 && server_delay > 0;
    if (told_when) {
        bucket_pause_until(g->bucket, now + server_delay); /* also re-arms the probe */
        st->probe = false;
        /* The cluster's pause starts a new probe generation: the old probe owes no report. */
        st->shared_probe = false;
        if (g->shared)
            v->shared_pause_ms = server_delay;
        st->throttled_retries++;
    } else {
        end_probe(g, st, false, v);
    }
    retry_or_give_up(p, g, st, server_delay, told_when, now, rng, v);
}

static void cancel(const struct call_guards *g, struct call_progress *st, int64_t now,
                   struct call_verdict *v)
{
    switch (st->phase) {
    case CALL_PHASE_TOKEN_WAIT:
        end_probe(g, st, false, v);
        /* A cluster token is not given back: the cluster errs on the slow side. */
        if (!st->shared_token)
            bucket_cancel(g->bucket, now);
        breaker_record(g->breaker, now, BREAKER_IGNORED);
        break;
    case CALL_PHASE_LAUNCHING:
    case CALL_PHASE_IN_FLIGHT:
    case CALL_PHASE_ASKING:
        end_probe(g, st, false, v);
        breaker_record(g->breaker, now, BREAKER_IGNORED);
        break;
    default:
        break;
    }
    st->phase = CALL_PHASE_IDLE;
}

void call_policy_step(const struct call_policy *p, const struct call_guards *g,
                      struct call_progress *st, const struct call_event *ev, int64_t now_ms,
                      uint64_t *rng, struct call_verdict *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->action = CALL_ACT_NONE;
    switch (ev->kind) {
    case CALL_EV_READY:
        if (st->phase == CALL_PHASE_IDLE || st->phase == CALL_PHASE_WAIT)
            gate(g, st, now_ms, rng, ret);
        break;
    case CALL_EV_TOKEN_DUE:
        if (st->phase == CALL_PHASE_TOKEN_WAIT)
            token_due(g, st, now_ms, rng, ret);
        break;
    case CALL_EV_LAUNCHED:
        if (st->phase != CALL_PHASE_LAUNCHING)
            break;
        st->phase = CALL_PHASE_IN_FLIGHT;
        st->attempts++;
        if (!st->counted_request) {
            st->counted_request = true;
            retry_budget_on_request(g->budget, now_ms);
        }
        break;
    case CALL_EV_LAUNCH_FAILED:
        if (st->phase != CALL_PHASE_LAUNCHING)
            break;
        end_probe(g, st, false, ret);
        breaker_record(g->breaker, now_ms, BREAKER_IGNORED);
        finish(st, ret, CALL_EXHAUSTED, CALL_POLICY_DEFAULT_RETRY_AFTER_MS,
               CALL_NOTE_LAUNCH_FAILED);
        break;
    case CALL_EV_ATTEMPT_END:
        if (st->phase == CALL_PHASE_IN_FLIGHT)
            attempt_end(p, g, st, ev, now_ms, rng, ret);
        break;
    case CALL_EV_CANCEL:
        cancel(g, st, now_ms, ret);
        break;
    case CALL_EV_SHARED_ANSWER:
        if (st->phase == CALL_PHASE_ASKING)
            shared_answer(g, st, ev, now_ms, rng, ret);
        break;
    }
}
