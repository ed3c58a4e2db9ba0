/*
 * budget.c — retry budget over a sliding window of fixed sub-windows (see
 * budget.h). Each slot remembers which sub-window it holds, so a slot left
 * over from an earlier lap is recognised as stale and cleared on reuse
 * instead of needing a timer to expire it.
 */
#include "agentd/budget.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

struct budget_slot {
    int64_t index; /* sub-window number (now_ms / slot_ms) this slot counts */
    uint64_t requests;
    uint64_t retries;
};

struct retry_budget {
    pthread_mutex_t lock;
    double ratio;
    int64_t slot_ms;
    int min_retries;
    int64_t newest_index;
    struct budget_slot slots[RETRY_BUDGET_SLOTS];
    uint64_t exhausted_total;
};

struct retry_budget *retry_budget_new(double ratio, int64_t window_ms, int min_retries)
{
    struct retry_budget *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        return NULL;
    }
    b->ratio = ratio > 0 ? ratio : 0; /* also maps NaN to 0 */
    b->slot_ms = window_ms / RETRY_BUDGET_SLOTS;
    if (b->slot_ms < 1)
        b->slot_ms = 1;
    b->min_retries = min_retries > 0 ? min_retries : 0;
    b->newest_index = INT64_MIN;
    for (int i = 0; i < RETRY_BUDGET_SLOTS; i++)
        b->slots[i].index = INT64_MIN;
    return b;
}

struct retry_budget *retry_budget_free(struct retry_budget *b)
{
    if (!b)
        return NULL;
    pthread_mutex_destroy(&b->lock);
    free(b);
    return NULL;
}

/* Rounds toward minus infinity, so negative times map to sub-windows consistently. */
static int64_t floor_div(int64_t a, int64_t d)
{
    int64_t q = a / d;
    return (a % d != 0 && (a < 0) != (d < 0)) ? q - 1 : q;
}

/* Returns the slot for now_ms, cleared if it held an older lap; caller holds the lock. */
static struct budget_slot *current_slot(struct retry_budget *b, int64_t now_ms)
{
    int64_t index = floor_div(now_ms, b->slot_ms);
    if (index < b->newest_index)
        index = b->newest_index;
    b->newest_index = index;

    int64_t pos = index % RETRY_BUDGET_SLOTS;
    struct budget_slot *s = &b->slots[pos < 0 ? pos + RETRY_BUDGET_SLOTS : pos];
    if (s->index != index) {
        s->index = index;
        s->requests = 0;
        s->retries = 0;
    }
    return s;
}

void retry_budget_on_request(struct retry_budget *b, int64_t now_ms)
{
    pthread_mutex_lock(&b->lock);
    current_slot(b, now_ms)->requests++;
    pthread_mutex_unlock(&b->lock);
}

bool retry_budget_try_spend(struct retry_budget *b, int64_t now_ms)
{
    uint64_t requests = 0, retries = 0;
    bool ok;

    pthread_mutex_lock(&b->lock);
    struct budget_slot *cur = current_slot(b, now_ms);
    for (int i = 0; i < RETRY_BUDGET_SLOTS; i++) {
        const struct budget_slot *s = &b->slots[i];
        /* Every slot index is <= newest; unsigned distance cannot overflow. */
        if ((uint64_t)b->newest_index - (uint64_t)s->index < RETRY_BUDGET_SLOTS) {
            requests += s->requests;
            retries += s->retries;
        }
    }
    /* The epsilon keeps e.g. 0.29 * 100 = 28.999... from losing a whole retry. */
    double allowed = floor((double)b->min_retries + b->ratio * (double)requests + 1e-9);
    ok = (double)retries + 1 <= allowed;
    if (ok)
        cur->retries++;
    else
        b->exhausted_total++;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

uint64_t retry_budget_exhausted_total(struct retry_budget *b)
{
    pthread_mutex_lock(&b->lock);
    uint64_t n = b->exhausted_total;
    pthread_mutex_unlock(&b->lock);
    return n;
}
