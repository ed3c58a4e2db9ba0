/*
 * breaker.c — circuit breaker (see breaker.h). The window of recent outcomes
 * is a fixed ring allocated once in breaker_new(), so nothing under the lock
 * allocates; transition reasons are formatted into fixed buffers.
 */
#include "agentd/breaker.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct breaker {
    pthread_mutex_t lock;
    char *dependency;
    struct breaker_config cfg; /* clamped copy */

    enum breaker_state state;
    int64_t open_until_ms; /* meaningful while OPEN */
    int probes_in_flight;  /* meaningful while HALF_OPEN */
    int consecutive_failures;

    /* Last cfg.window outcomes of the CLOSED state: 1 = failure, 0 = success. */
    unsigned char *window;
    int window_pos;
    int window_count;
    int window_failures;

    struct breaker_transition ring[BREAKER_TRANSITION_RING];
    size_t ring_head; /* oldest queued entry */
    size_t ring_len;
    uint64_t transitions_total;
    uint64_t transitions_dropped;
};

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void clamp_config(struct breaker_config *c)
{
    c->failure_threshold = clamp_int(c->failure_threshold, 1, INT32_MAX);
    c->window = clamp_int(c->window, 1, BREAKER_MAX_WINDOW);
    c->min_calls = clamp_int(c->min_calls, 1, c->window);
    c->half_open_probes = clamp_int(c->half_open_probes, 1, INT32_MAX);
    if (c->open_ms < 0)
        c->open_ms = 0;
    if (!(c->failure_rate > 0.0 && c->failure_rate <= 1.0))
        c->failure_rate = 0.0;
}

struct breaker *breaker_new(const char *dependency, const struct breaker_config *cfg)
{
    struct breaker *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->cfg = *cfg;
    clamp_config(&b->cfg);
    b->dependency = strdup(dependency ? dependency : "");
    b->window = calloc((size_t)b->cfg.window, 1);
    if (!b->dependency || !b->window)
        goto fail;
    if (pthread_mutex_init(&b->lock, NULL) != 0)
        goto fail;
    b->state = BREAKER_CLOSED;
    return b;
fail:
    free(b->window);
    free(b->dependency);
    free(b);
    return NULL;
}

struct breaker *breaker_free(struct breaker *b)
{
    if (!b)
        return NULL;
    pthread_mutex_destroy(&b->lock);
    free(b->window);
    free(b->dependency);
    free(b);
    return NULL;
}

static void window_reset(struct breaker *b)
{
    memset(b->window, 0, (size_t)b->cfg.window);
    b->window_pos = 0;
    b->window_count = 0;
    b->window_failures = 0;
    b->consecutive_failures = 0;
}

static void window_push(struct breaker *b, bool failed)
{
    if (b->window_count == b->cfg.window)
        b->window_failures -= b->window[b->window_pos];
    else
        b->window_count++;
    b->window[b->window_pos] = failed ? 1 : 0;
    b->window_failures += failed ? 1 : 0;
    b->window_pos = (b->window_pos + 1) % b->cfg.window;
}

static void transition(struct breaker *b, enum breaker_state to, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Changes state and queues the change; the ring drops its oldest entry rather than grow. */
static void transition(struct breaker *b, enum breaker_state to, const char *fmt, ...)
{
    struct breaker_transition *t;
    va_list ap;

    if (b->ring_len == BREAKER_TRANSITION_RING) {
        b->ring_head = (b->ring_head + 1) % BREAKER_TRANSITION_RING;
        b->ring_len--;
        b->transitions_dropped++;
    }
    t = &b->ring[(b->ring_head + b->ring_len) % BREAKER_TRANSITION_RING];
    b->ring_len++;
    b->transitions_total++;

    t->from = b->state;
    t->to = to;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof(t->reason), fmt, ap);
    va_end(ap);
    b->state = to;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static void open_now(struct breaker *b, int64_t now_ms)
{
    b->open_until_ms = add_sat(now_ms, b->cfg.open_ms);
    b->probes_in_flight = 0;
}

/* The lazy OPEN -> HALF_OPEN step; caller holds the lock. */
static void maybe_half_open(struct breaker *b, int64_t now_ms)
{
    if (b->state == BREAKER_OPEN && now_ms >= b->open_until_ms) {
        b->probes_in_flight = 0;
        transition(b, BREAKER_HALF_OPEN, "open for %lld ms", (long long)b->cfg.open_ms);
    }
}

bool breaker_allow(struct breaker *b, int64_t now_ms, int64_t *ret_retry_after_ms)
{
    bool allowed = true;
    int64_t retry_after_ms = 0;

    pthread_mutex_lock(&b->lock);
    if (!b->cfg.enabled)
        goto out;
    maybe_half_open(b, now_ms);
    switch (b->state) {
    case BREAKER_CLOSED:
        break;
    case BREAKER_OPEN:
        allowed = false;
        retry_after_ms = b->open_until_ms - now_ms; /* >= 1: maybe_half_open saw now < until */
        break;
    case BREAKER_HALF_OPEN:
        if (b->probes_in_flight < b->cfg.half_open_probes) {
            b->probes_in_flight++;
        } else {
            allowed = false;
            retry_after_ms = BREAKER_PROBES_BUSY_RETRY_MS;
        }
        break;
    }
out:
    pthread_mutex_unlock(&b->lock);
    if (!allowed && ret_retry_after_ms)
        *ret_retry_after_ms = retry_after_ms;
    return allowed;
}

static void record_closed(struct breaker *b, int64_t now_ms, enum breaker_outcome outcome)
{
    if (outcome == BREAKER_IGNORED)
        return;
    bool failed = outcome == BREAKER_FAILURE;
    b->consecutive_failures = failed ? b->consecutive_failures + 1 : 0;
    window_push(b, failed);
    if (!failed)
        return; /* a success can trip neither rule */

    if (b->consecutive_failures >= b->cfg.failure_threshold) {
        int n = b->consecutive_failures;
        window_reset(b);
        open_now(b, now_ms);
        transition(b, BREAKER_OPEN, "%d consecutive failures", n);
        return;
    }
    if (b->cfg.failure_rate > 0.0 && b->window_count >= b->cfg.min_calls &&
        (double)b->window_failures >= b->cfg.failure_rate * b->window_count) {
        int fails = b->window_failures, calls = b->window_count;
        int pct = (200 * fails + calls) / (2 * calls); /* rounded */
        window_reset(b);
        open_now(b, now_ms);
        transition(b, BREAKER_OPEN, "failure rate %d%% over last %d calls", pct, calls);
    }
}

static void record_half_open(struct breaker *b, int64_t now_ms, enum breaker_outcome outcome)
{
    if (b->probes_in_flight > 0)
        b->probes_in_flight--;
    if (outcome == BREAKER_SUCCESS) {
        window_reset(b);
        transition(b, BREAKER_CLOSED, "probe succeeded");
    } else if (outcome == BREAKER_FAILURE) {
        open_now(b, now_ms);
        transition(b, BREAKER_OPEN, "probe failed");
    }
}

void breaker_record(struct breaker *b, int64_t now_ms, enum breaker_outcome outcome)
{
    pthread_mutex_lock(&b->lock);
    if (b->cfg.enabled) {
        switch (b->state) {
        case BREAKER_CLOSED:
            record_closed(b, now_ms, outcome);
            break;
        case BREAKER_HALF_OPEN:
            record_half_open(b, now_ms, outcome);
            break;
        case BREAKER_OPEN:
            break;
        }
    }
    pthread_mutex_unlock(&b->lock);
}

enum breaker_state breaker_state(struct breaker *b, int64_t now_ms)
{
    pthread_mutex_lock(&b->lock);
    if (b->cfg.enabled)
        maybe_half_open(b, now_ms);
    enum breaker_state s = b->state;
    pthread_mutex_unlock(&b->lock);
    return s;
}

size_t breaker_drain_transitions(struct breaker *b, struct breaker_transition *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&b->lock);
    while (n < cap && b->ring_len > 0) {
        out[n++] = b->ring[b->ring_head];
        b->ring_head = (b->ring_head + 1) % BREAKER_TRANSITION_RING;
        b->ring_len--;
    }
    pthread_mutex_unlock(&b->lock);
    return n;
}

uint64_t breaker_transitions_total(struct breaker *b)
{
    pthread_mutex_lock(&b->lock);
    uint64_t n = b->transitions_total;
    pthread_mutex_unlock(&b->lock);
    return n;
}

uint64_t breaker_transitions_dropped(struct breaker *b)
{
    pthread_mutex_lock(&b->lock);
    uint64_t n = b->transitions_dropped;
    pthread_mutex_unlock(&b->lock);
    return n;
}

const char *breaker_dependency(const struct breaker *b)
{
    return b->dependency;
}

void breaker_set_config(struct breaker *b, const struct breaker_config *cfg)
{
    struct breaker_config c = *cfg;

    pthread_mutex_lock(&b->lock);
    c.window = b->cfg.window; /* the ring was allocated for it */
    clamp_config(&c);
    b->cfg = c;
    pthread_mutex_unlock(&b->lock);
}
