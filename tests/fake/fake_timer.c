/*
 * fake_timer.c — the monotonic clock and the thread that resumes suspended
 * connections.
 *
 * A delayed answer must not cost a thread (2000 answers delayed by 1 s are
 * 2000 suspended connections), so the access handler suspends its
 * connection and parks it here: delayed ones in a min-heap on due time,
 * hanging ones in a list whose sockets are polled for the client closing
 * its end (a suspended connection is invisible to MHD's own event loop, so
 * nobody else would notice). One thread sleeps on a condition variable
 * until the earliest due time and resumes what is due. On stop every parked
 * connection is resumed with FAKE_WAKE_SHUTDOWN, because MHD refuses to
 * stop with suspended connections left.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

/* How often hanging connections are checked for a closed client. */
#define TIMER_HANG_POLL_MS 100

static uint64_t clock_origin_ms;

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void fake_clock_init(void)
{
    clock_origin_ms = monotonic_ms();
}

uint64_t fake_clock_ms(void)
{
    return monotonic_ms() - clock_origin_ms;
}

struct parked_vec {
    struct fake_parked **items;
    size_t len;
    size_t cap;
};

struct fake_timer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool thread_started;
    bool stopping;
    struct parked_vec heap;  /* delayed, min-heap on due_ms */
    struct parked_vec hangs; /* hanging, unordered */
};

static int vec_push(struct parked_vec *v, struct fake_parked *p)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        struct fake_parked **items = realloc(v->items, cap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        v->items = items;
        v->cap = cap;
    }
    p->slot = v->len;
    v->items[v->len++] = p;
    return 0;
}

static void vec_swap(struct parked_vec *v, size_t a, size_t b)
{
    struct fake_parked *t = v->items[a];
    v->items[a] = v->items[b];
    v->items[b] = t;
    v->items[a]->slot = a;
    v->items[b]->slot = b;
}

static void heap_up(struct parked_vec *h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->due_ms <= h->items[i]->due_ms)
            break;
        vec_swap(h, parent, i);
        i = parent;
    }
}

static void heap_down(struct parked_vec *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && h->items[l]->due_ms < h->items[m]->due_ms)
            m = l;
        if (r < h->len && h->items[r]->due_ms < h->items[m]->due_ms)
            m = r;
        if (m == i)
            return;
        vec_swap(h, i, m);
        i = m;
    }
}

static struct fake_parked *heap_pop(struct parked_vec *h)
{
    struct fake_parked *top = h->items[0];
    h->len--;
    if (h->len > 0) {
        h->items[0] = h->items[h->len];
        h->items[0]->slot = 0;
        heap_down(h, 0);
    }
    return top;
}

static void hangs_remove(struct parked_vec *v, size_t i)
{
    v->len--;
    if (i != v->len) {
        v->items[i] = v->items[v->len];
        v->items[i]->slot = i;
    }
}

static void resume_all(struct fake_parked **list, size_t n, enum fake_wake why)
{
    for (size_t i = 0; i < n; i++) {
        atomic_store(&list[i]->wake, why);
        MHD_resume_connection(list[i]->conn);
    }
}

/* Moves the hanging connections whose client closed into out (lock held). */
static int collect_gone(struct fake_timer *t, struct parked_vec *out)
{
    size_t n = t->hangs.len;
    struct pollfd *pfds = calloc(n, sizeof(*pfds));
    if (!pfds)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        pfds[i].fd = t->hangs.items[i]->fd;
        pfds[i].events = POLLRDHUP;
    }
    int rc = poll(pfds, n, 0);
    /* Walk backwards so swap-removal does not skip entries. */
    for (size_t i = n; rc > 0 && i-- > 0;) {
        if (!(pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            continue;
        struct fake_parked *p = t->hangs.items[i];
        if (vec_push(out, p) < 0)
            break;
        hangs_remove(&t->hangs, i);
    }
    free(pfds);
    return 0;
}

static void wait_until(struct fake_timer *t, uint64_t now_ms, uint64_t wake_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t wait_ms = wake_ms > now_ms ? wake_ms - now_ms : 0;
    ts.tv_sec += (time_t)(wait_ms / 1000u);
    ts.tv_nsec += (long)(wait_ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&t->cond, &t->lock, &ts);
}

static void *timer_main(void *arg)
{
    struct fake_timer *t = arg;
    struct parked_vec batch = {0};

    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        uint64_t now = fake_clock_ms();
        batch.len = 0;
        while (t->heap.len > 0 && t->heap.items[0]->due_ms <= now) {
            struct fake_parked *p = heap_pop(&t->heap);
            if (vec_push(&batch, p) < 0) {
                /* Put it back and retry on the next round rather than lose it. */
                vec_push(&t->heap, p);
                heap_up(&t->heap, p->slot);
                break;
            }
        }
        size_t due = batch.len;
        if (t->hangs.len > 0)
            collect_gone(t, &batch);
        if (batch.len > 0) {
            /* Resume outside the lock: handlers park while holding it. */
            pthread_mutex_unlock(&t->lock);
            resume_all(batch.items, due, FAKE_WAKE_DUE);
            resume_all(batch.items + due, batch.len - due, FAKE_WAKE_CLIENT_GONE);
            pthread_mutex_lock(&t->lock);
            continue;
        }
        uint64_t wake = UINT64_MAX;
        if (t->heap.len > 0)
            wake = t->heap.items[0]->due_ms;
        if (t->hangs.len > 0 && now + TIMER_HANG_POLL_MS < wake)
            wake = now + TIMER_HANG_POLL_MS;
        if (wake == UINT64_MAX)
            pthread_cond_wait(&t->cond, &t->lock);
        else
            wait_until(t, now, wake);
    }
    pthread_mutex_unlock(&t->lock);
    free(batch.items);
    return NULL;
}

int fake_timer_new(struct fake_timer **ret_timer)
{
    struct fake_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    /* Due times are monotonic; a wall-clock jump must not delay or release answers. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&t->lock, NULL);
    int rc = pthread_create(&t->thread, NULL, timer_main, t);
    if (rc != 0) {
        fake_timer_free(t);
        return -rc;
    }
    t->thread_started = true;
    *ret_timer = t;
    return 0;
}

int fake_timer_park(struct fake_timer *t, struct fake_parked *p)
{
    int rc;
    atomic_store(&p->wake, FAKE_WAKE_NONE);
    pthread_mutex_lock(&t->lock);
    if (t->stopping) {
        rc = -ESHUTDOWN;
        goto out;
    }
    struct parked_vec *v = p->hang ? &t->hangs : &t->heap;
    rc = vec_push(v, p);
    if (rc < 0)
        goto out;
    /*
     * Suspend while holding the lock: the connection must be suspended
     * before the timer thread can see it and resume it.
     */
    MHD_suspend_connection(p->conn);
    if (!p->hang) {
        heap_up(v, p->slot);
        if (p->slot == 0)
            pthread_cond_signal(&t->cond);
    } else if (t->hangs.len == 1) {
        pthread_cond_signal(&t->cond);
    }
out:
    pthread_mutex_unlock(&t->lock);
    return rc;
}

size_t fake_timer_parked(struct fake_timer *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->heap.len + t->hangs.len;
    pthread_mutex_unlock(&t->lock);
    return n;
}

void fake_timer_stop(struct fake_timer *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (t->thread_started) {
        pthread_join(t->thread, NULL);
        t->thread_started = false;
    }
    /* The thread is gone and parking is refused: the lists are ours now. */
    resume_all(t->heap.items, t->heap.len, FAKE_WAKE_SHUTDOWN);
    resume_all(t->hangs.items, t->hangs.len, FAKE_WAKE_SHUTDOWN);
    t->heap.len = 0;
    t->hangs.len = 0;
}

struct fake_timer *fake_timer_free(struct fake_timer *t)
{
    if (!t)
        return NULL;
    fake_timer_stop(t);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t->heap.items);
    free(t->hangs.items);
    free(t);
    return NULL;
}
