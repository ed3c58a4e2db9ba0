/*
 * breaker.c — circuit breaker (see breaker.h). The rate rule's window is a
 * fixed ring of BREAKER_BUCKETS time buckets inside the breaker, so nothing
 * allocates after breaker_new(); transition reasons are formatted into fixed
 * buffers.
 */
#include "agentd/breaker.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One slice of the window: what happened during [index * width, (index + 1) * width). */
struct breaker_bucket {
    int64_t index; /* now_ms / width when the bucket was (re)started */
    int64_t started, successes, failures;
};

struct breaker {
    pthread_mutex_t lock;
    char *dependency;
    struct breaker_config cfg; /* clamped copy */
    int64_t bucket_ms;         /* cfg.window_ms / BREAKER_BUCKETS */

    enum breaker_state state;
    int64_t open_until_ms;    /* meaningful while OPEN */
    int64_t open_interval_ms; /* of the current (or last) open state */
    int trips;                /* opens since the last close that held for a whole window */
    int64_t closed_at_ms;     /* when it last closed after a probe; meaningful when trips > 0 */
    int probes_in_flight;     /* meaningful while HALF_OPEN */
    int consecutive_failures;

    struct breaker_bucket buckets[BREAKER_BUCKETS]; /* CLOSED state only */

    struct breaker_transition ring[BREAKER_TRANSITION_RING];
    size_t ring_head; /* oldest queued entry */
    size_t ring_len;
    uint64_t transitions_total;
    uint64_t transitions_dropped;
};

/* What the window holds at some instant. */
struct breaker_counts {
    int64_t started, successes, failures;
};

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int64_t clamp_i64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void clamp_config(struct breaker_config *c)
{
    c->failure_threshold = clamp_int(c->failure_threshold, 1, INT32_MAX);
    c->min_calls = clamp_int(c->min_calls, 1, INT32_MAX);
    c->half_open_probes = clamp_int(c->half_open_probes, 1, INT32_MAX);
    c->window_ms = clamp_i64(c->window_ms, BREAKER_MIN_WINDOW_MS, BREAKER_MAX_WINDOW_MS);
    if (c->open_ms < 0)
        c->open_ms = 0;
    /* Unset (0): a fixed interval, open_ms every time. */
    c->first_open_ms =
        c->first_open_ms <= 0 ? c->open_ms : clamp_i64(c->first_open_ms, 1, c->open_ms);
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
    b->bucket_ms = b->cfg.window_ms / BREAKER_BUCKETS;
    b->dependency = strdup(dependency ? dependency : "");
    if (!b->dependency)
        goto fail;
    if (pthread_mutex_init(&b->lock, NULL) != 0)
        goto fail;
    b->state = BREAKER_CLOSED;
    b->open_interval_ms = b->cfg.first_open_ms;
    for (int i = 0; i < BREAKER_BUCKETS; i++)
        b->buckets[i].index = INT64_MIN;
    return b;
fail:
    free(b->dependency);
    free(b);
    return NULL;
}

struct breaker *breaker_free(struct breaker *b)
{
    if (!b)
        return NULL;
    pthread_mutex_destroy(&b->lock);
    free(b->dependency);
    free(b);
    return NULL;
}

/* ---- the window ---- */

/* Floor division, so a negative now_ms (a test's fake clock) still maps to one bucket. */
static int64_t bucket_index(const struct breaker *b, int64_t now_ms)
{
    int64_t q = now_ms / b->bucket_ms;
    return (now_ms % b->bucket_ms < 0) ? q - 1 : q;
}

static size_t bucket_slot(int64_t index)
{
    int64_t r = index % BREAKER_BUCKETS;
    return (size_t)(r < 0 ? r + BREAKER_BUCKETS : r);
}

/* The bucket now_ms falls in, emptied first if it still holds an older slice. */
static struct breaker_bucket *bucket_now(struct breaker *b, int64_t now_ms)
{
    int64_t index = bucket_index(b, now_ms);
    struct breaker_bucket *k = &b->buckets[bucket_slot(index)];
    if (k->index != index)
        *k = (struct breaker_bucket){.index = index};
    return k;
}

/* Whether bucket k belongs to the window that ends in bucket `index`. */
static bool bucket_live(const struct breaker_bucket *k, int64_t index)
{
    return k->index != INT64_MIN && k->index <= index && k->index > index - BREAKER_BUCKETS;
}

static struct breaker_counts window_counts(const struct breaker *b, int64_t now_ms)
{
    struct breaker_counts c = {0, 0, 0};
    int64_t index = bucket_index(b, now_ms);
    for (int i = 0; i < BREAKER_BUCKETS; i++) {
        const struct breaker_bucket *k = &b->buckets[i];
        if (bucket_live(k, index)) {
            c.started += k->started;
            c.successes += k->successes;
            c.failures += k->failures;
        }
    }
    return c;
}

/* An IGNORED call leaves the window's started calls: taken from the newest bucket that has one
   (the call may have started in an earlier bucket than the one it ends in). */
static void window_unstart(struct breaker *b, int64_t now_ms)
{
    int64_t index = bucket_index(b, now_ms);
    for (int64_t i = index; i > index - BREAKER_BUCKETS; i--) {
        struct breaker_bucket *k = &b->buckets[bucket_slot(i)];
        if (k->index == i && k->started > 0) {
            k->started--;
            return;
        }
    }
}

static void window_reset(struct breaker *b)
{
    for (int i = 0; i < BREAKER_BUCKETS; i++)
        b->buckets[i] = (struct breaker_bucket){.index = INT64_MIN};
    b->consecutive_failures = 0;
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

/* The interval of the next open state: first_open_ms doubled per trip since the last close
   that held, at most open_ms. */
static int64_t next_open_interval(const struct breaker *b)
{
    int64_t ms = b->cfg.first_open_ms;
    for (int i = 0; i < b->trips && ms < b->cfg.open_ms; i++)
        ms = ms > b->cfg.open_ms / 2 ? b->cfg.open_ms : ms * 2;
    return ms < b->cfg.open_ms ? ms : b->cfg.open_ms;
}

/* Caller transitions to OPEN after this (the reason quotes open_interval_ms). */
static void open_now(struct breaker *b, int64_t now_ms)
{
    b->open_interval_ms = next_open_interval(b);
    b->trips = b->trips < INT32_MAX ? b->trips + 1 : b->trips;
    b->open_until_ms = add_sat(now_ms, b->open_interval_ms);
    b->probes_in_flight = 0;
}

/* The lazy OPEN -> HALF_OPEN step; caller holds the lock. */
static void maybe_half_open(struct breaker *b, int64_t now_ms)
{
    if (b->state == BREAKER_OPEN && now_ms >= b->open_until_ms) {
        b->probes_in_flight = 0;
        transition(b, BREAKER_HALF_OPEN, "open for %lld ms", (long long)b->open_interval_ms);
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
        bucket_now(b, now_ms)->started++;
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

/* Percent, rounded, of part in whole (whole > 0). */
static int64_t percent(int64_t part, int64_t whole)
{
    return (200 * part + whole) / (2 * whole);
}

/* A failure while CLOSED with the consecutive rule met: opens it when the rate rule agrees. */
static void maybe_trip(struct breaker *b, int64_t now_ms)
{
    int n = b->consecutive_failures;
    struct breaker_counts c = window_counts(b, now_ms);
    int64_t outcomes = c.successes + c.failures;
    int64_t calls = c.started > outcomes ? c.started : outcomes; /* in flight ones count */
    char why[160];

    if (b->cfg.failure_rate == 0.0) {
        snprintf(why, sizeof(why), "%d consecutive failures", n);
    } else if (calls < b->cfg.min_calls) {
        snprintf(why, sizeof(why),
                 "%d consecutive failures, %lld calls in %lld ms (too few for the rate rule)", n,
                 (long long)calls, (long long)b->cfg.window_ms);
    } else if ((double)c.failures >= b->cfg.failure_rate * (double)calls) {
        snprintf(why, sizeof(why),
                 "%d consecutive failures and %lld%% of %lld calls in %lld ms failed", n,
                 (long long)percent(c.failures, calls), (long long)calls,
                 (long long)b->cfg.window_ms);
    } else {
        return; /* a burst of failures among many good calls: not an outage */
    }
    /* A close that held for a whole window forgives the earlier trips. */
    if (b->trips > 0 && now_ms - b->closed_at_ms >= b->cfg.window_ms)
        b->trips = 0;
    window_reset(b);
    open_now(b, now_ms);
    transition(b, BREAKER_OPEN, "%s; open for %lld ms", why, (long long)b->open_interval_ms);
}

static void record_closed(struct breaker *b, int64_t now_ms, enum breaker_outcome outcome)
{
    switch (outcome) {
    case BREAKER_IGNORED:
        window_unstart(b, now_ms);
        return;
    case BREAKER_SUCCESS:
        b->consecutive_failures = 0;
        bucket_now(b, now_ms)->successes++;
        return; /* a success can trip neither rule */
    case BREAKER_FAILURE:
        if (b->consecutive_failures < INT32_MAX)
            b->consecutive_failures++;
        bucket_now(b, now_ms)->failures++;
        if (b->consecutive_failures >= b->cfg.failure_threshold)
            maybe_trip(b, now_ms);
        return;
    }
}

static void record_half_open(struct breaker *b, int64_t now_ms, enum breaker_outcome outcome)
{
    if (b->probes_in_flight > 0)
        b->probes_in_flight--;
    if (outcome == BREAKER_SUCCESS) {
        window_reset(b);
        b->closed_at_ms = now_ms;
        transition(b, BREAKER_CLOSED, "probe succeeded");
    } else if (outcome == BREAKER_FAILURE) {
        open_now(b, now_ms);
        transition(b, BREAKER_OPEN, "probe failed; open for %lld ms",
                   (long long)b->open_interval_ms);
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

    clamp_config(&c);
    pthread_mutex_lock(&b->lock);
    if (c.window_ms != b->cfg.window_ms) {
        /* Buckets of another width: what they hold cannot be cut anew, so the window starts
           empty (the consecutive count stays). */
        int consecutive = b->consecutive_failures;
        window_reset(b);
        b->consecutive_failures = consecutive;
        b->bucket_ms = c.window_ms / BREAKER_BUCKETS;
    }
    b->cfg = c;
    pthread_mutex_unlock(&b->lock);
}
