/*
 * timerheap.c — intrusive binary min-heap (see timerheap.h). Ties are broken
 * by nothing in particular: callers never rely on the order of equal times.
 */
#include "agentd/timerheap.h"

#include <errno.h>
#include <stdlib.h>

void timer_init(struct timer *t, timer_fn fn, void *arg)
{
    t->due_ms = 0;
    t->idx = TIMER_NOT_ARMED;
    t->fn = fn;
    t->arg = arg;
}

void timerheap_init(struct timerheap *h)
{
    h->items = NULL;
    h->len = 0;
    h->cap = 0;
}

void timerheap_fini(struct timerheap *h)
{
    for (size_t i = 0; i < h->len; i++)
        h->items[i]->idx = TIMER_NOT_ARMED;
    free(h->items);
    timerheap_init(h);
}

static void place(struct timerheap *h, size_t i, struct timer *t)
{
    h->items[i] = t;
    t->idx = i;
}

static void sift_up(struct timerheap *h, size_t i)
{
    struct timer *t = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->due_ms <= t->due_ms)
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct timerheap *h, size_t i)
{
    struct timer *t = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && h->items[child + 1]->due_ms < h->items[child]->due_ms)
            child++;
        if (t->due_ms <= h->items[child]->due_ms)
            break;
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, t);
}

static void remove_at(struct timerheap *h, size_t i)
{
    struct timer *t = h->items[i];
    struct timer *last = h->items[--h->len];
    t->idx = TIMER_NOT_ARMED;
    if (i == h->len)
        return;
    place(h, i, last);
    sift_down(h, i);
    sift_up(h, last->idx);
}

int timerheap_arm(struct timerheap *h, struct timer *t, int64_t due_ms)
{
    if (timer_armed(t))
        remove_at(h, t->idx);
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct timer **items = realloc(h->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    t->due_ms = due_ms;
    place(h, h->len++, t);
    sift_up(h, t->idx);
    return 0;
}

void timerheap_cancel(struct timerheap *h, struct timer *t)
{
    if (timer_armed(t))
        remove_at(h, t->idx);
}

int64_t timerheap_next_due(const struct timerheap *h)
{
    return h->len ? h->items[0]->due_ms : -1;
}

struct timer *timerheap_pop_due(struct timerheap *h, int64_t now_ms)
{
    if (!h->len || h->items[0]->due_ms > now_ms)
        return NULL;
    struct timer *t = h->items[0];
    remove_at(h, 0);
    return t;
}

size_t timerheap_run_due(struct timerheap *h, int64_t now_ms)
{
    size_t fired = 0;
    struct timer *t;
    while ((t = timerheap_pop_due(h, now_ms))) {
        fired++;
        t->fn(t, t->arg);
    }
    return fired;
}
