/*
 * bucket.c — token bucket with reservations (see bucket.h).
 *
 * State is the balance `tokens` at time `last_ms`, where last_ms is the start
 * time of the latest reservation (or the latest refill). Every new
 * reservation starts no earlier than last_ms, which is what serves callers in
 * arrival order; refilling to the actual start time (capped at burst) keeps
 * the bucket exact even when that start lies in the future after a pause.
 * Time differences are taken in double, so extreme int64 times cannot
 * overflow. Start times are whole ms, rounded up; when burst is below
 * 1 + rate * 1 ms the sliver accrued in that rounding is capped away, so a
 * tiny bucket runs slightly slow, never fast.
 */
#include "agentd/bucket.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

struct bucket {
    pthread_mutex_t lock;
    double rate_per_ms; /* 0 = no refill */
    double burst;
    double tokens; /* balance at last_ms; negative = reservations beyond the tokens */
    int64_t last_ms;
    int64_t paused_until_ms;
    bool throttled; /* a 429 pause was set and no probe has answered otherwise since */
    bool probe_out; /* the one probe call is in flight */
};

static void clamp_rate(double *rate_per_s, double *burst)
{
    if (!(*rate_per_s > 0)) /* also catches NaN */
        *rate_per_s = 0;
    if (*rate_per_s > BUCKET_MAX_RATE_PER_S)
        *rate_per_s = BUCKET_MAX_RATE_PER_S;
    if (!(*burst >= 1))
        *burst = 1;
}

struct bucket *bucket_new(double rate_per_s, double burst, int64_t now_ms)
{
    struct bucket *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    clamp_rate(&rate_per_s, &burst);
    b->rate_per_ms = rate_per_s / 1000.0;
    b->burst = burst;
    b->tokens = burst;
    b->last_ms = now_ms;
    b->paused_until_ms = INT64_MIN;
    return b;
}

struct bucket *bucket_free(struct bucket *b)
{
    if (!b)
        return NULL;
    pthread_mutex_destroy(&b->lock);
    free(b);
    return NULL;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Balance at t >= b->last_ms. */
static double tokens_at(const struct bucket *b, int64_t t)
{
    double v = b->tokens + b->rate_per_ms * ((double)t - (double)b->last_ms);
    return v > b->burst ? b->burst : v;
}

void bucket_set_rate(struct bucket *b, double rate_per_s, double burst, int64_t now_ms)
{
    clamp_rate(&rate_per_s, &burst);
    pthread_mutex_lock(&b->lock);
    /* Settle the balance at the old rate up to now (or the latest reservation's start). */
    int64_t at = max64(now_ms, b->last_ms);
    b->tokens = tokens_at(b, at);
    b->last_ms = at;
    b->rate_per_ms = rate_per_s / 1000.0;
    b->burst = burst;
    if (b->tokens > burst)
        b->tokens = burst;
    pthread_mutex_unlock(&b->lock);
}

int64_t bucket_reserve(struct bucket *b, int64_t now_ms, int64_t max_wait_ms)
{
    int64_t wait_ms = -1;

    if (max_wait_ms < 0)
        max_wait_ms = 0;
    pthread_mutex_lock(&b->lock);
    int64_t start_ms = max64(now_ms, max64(b->last_ms, b->paused_until_ms));
    double queued_ms = (double)start_ms - (double)now_ms; /* pause or earlier reservations */
    if (queued_ms > (double)max_wait_ms)
        goto out;

    double avail = tokens_at(b, start_ms);
    if (avail < 1) {
        if (b->rate_per_ms <= 0)
            goto out;
        double need_ms = (1 - avail) / b->rate_per_ms;
        /* Both sides are whole ms except need_ms, so this also bounds ceil(need_ms). */
        if (queued_ms + need_ms > (double)max_wait_ms)
            goto out;
        int64_t grant_ms;
        if (need_ms >= 0x1p62 ||
            __builtin_add_overflow(start_ms, (int64_t)ceil(need_ms), &grant_ms))
            goto out;
        avail = tokens_at(b, grant_ms);
        start_ms = grant_ms;
    }
    int64_t w;
    /* Re-checked in integers: the double comparisons above round near INT64_MAX. */
    if (__builtin_sub_overflow(start_ms, now_ms, &w) || w > max_wait_ms)
        goto out;
    b->tokens = avail - 1;
    b->last_ms = start_ms;
    wait_ms = w;
out:
    pthread_mutex_unlock(&b->lock);
    return wait_ms;
}

void bucket_cancel(struct bucket *b, int64_t now_ms)
{
    pthread_mutex_lock(&b->lock);
    int64_t t = max64(now_ms, b->last_ms);
    double v = tokens_at(b, t) + 1;
    b->tokens = v > b->burst ? b->burst : v;
    b->last_ms = t;
    pthread_mutex_unlock(&b->lock);
}

void bucket_pause_until(struct bucket *b, int64_t until_ms)
{
    pthread_mutex_lock(&b->lock);
    b->paused_until_ms = max64(b->paused_until_ms, until_ms);
    b->throttled = true;
    b->probe_out = false;
    pthread_mutex_unlock(&b->lock);
}

int64_t bucket_throttle_gate(struct bucket *b, int64_t now_ms, bool *ret_probe)
{
    int64_t r = 0;
    *ret_probe = false;
    pthread_mutex_lock(&b->lock);
    if (b->throttled) {
        if (now_ms < b->paused_until_ms)
            r = b->paused_until_ms - now_ms;
        else if (b->probe_out)
            r = -1;
        else
            b->probe_out = *ret_probe = true;
    }
    pthread_mutex_unlock(&b->lock);
    return r;
}

void bucket_throttle_probe_done(struct bucket *b, bool recovered)
{
    pthread_mutex_lock(&b->lock);
    b->probe_out = false;
    if (recovered)
        b->throttled = false;
    pthread_mutex_unlock(&b->lock);
}

int64_t bucket_paused_until(struct bucket *b)
{
    pthread_mutex_lock(&b->lock);
    int64_t until_ms = b->paused_until_ms;
    pthread_mutex_unlock(&b->lock);
    return until_ms;
}

double bucket_tokens(struct bucket *b, int64_t now_ms)
{
    double v;

    pthread_mutex_lock(&b->lock);
    if (now_ms >= b->last_ms)
        v = tokens_at(b, now_ms);
    else
        v = b->tokens - b->rate_per_ms * ((double)b->last_ms - (double)now_ms);
    pthread_mutex_unlock(&b->lock);
    return v;
}
