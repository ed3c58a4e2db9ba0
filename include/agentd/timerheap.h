/*
 * timerheap.h — an intrusive binary min-heap of timers, keyed by due time.
 *
 * Each worker owns one heap (not thread-safe: one thread only). A timer is
 * embedded in the object it belongs to (a run, a call), so moving and
 * cancelling never allocate, and cancelling is O(log n); arming allocates
 * only when the heap's array grows. Times are monotonic milliseconds
 * supplied by the caller; nothing here reads a clock or logs.
 *
 * Memory: the heap owns only its array of pointers. Timers are the caller's:
 * the heap never frees one, and an armed timer must be cancelled before the
 * object holding it is freed.
 */
#ifndef AGENTD_TIMERHEAP_H
#define AGENTD_TIMERHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMER_NOT_ARMED ((size_t)-1)

struct timer;
typedef void (*timer_fn)(struct timer *t, void *arg);

struct timer {
    int64_t due_ms;
    size_t idx; /* position in the heap, TIMER_NOT_ARMED when not armed */
    timer_fn fn;
    void *arg;
};

struct timerheap {
    struct timer **items;
    size_t len, cap;
};

/* Prepares t (not armed). */
void timer_init(struct timer *t, timer_fn fn, void *arg);
static inline bool timer_armed(const struct timer *t)
{
    return t->idx != TIMER_NOT_ARMED;
}

void timerheap_init(struct timerheap *h);
void timerheap_fini(struct timerheap *h); /* frees the array; armed timers are simply forgotten */

/* Arms t at due_ms (re-arms it if it was armed). Returns 0 or -ENOMEM (t then not armed). */
int timerheap_arm(struct timerheap *h, struct timer *t, int64_t due_ms);
/* Disarms t; a no-op when it is not armed. */
void timerheap_cancel(struct timerheap *h, struct timer *t);
/* Due time of the earliest timer, or -1 when the heap is empty. */
int64_t timerheap_next_due(const struct timerheap *h);
/* Removes and returns the earliest timer if it is due at now_ms, else NULL. */
struct timer *timerheap_pop_due(struct timerheap *h, int64_t now_ms);
/* Pops and fires every timer due at now_ms; returns how many fired. A callback may arm or cancel
   timers (including re-arming itself); one armed at or before now_ms fires again in this call. */
size_t timerheap_run_due(struct timerheap *h, int64_t now_ms);

#endif
