/*
 * worker.c — the worker thread loop: drain the inbox, fire due timers, let
 * libcurl move bytes, hand finished transfers to their calls. The loop
 * sleeps only in curl_multi_poll(), which curl_multi_wakeup() interrupts.
 */
#include "agentd/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "agentd/app.h"
#include "agentd/call.h"
#include "agentd/clock.h"
#include "agentd/log.h"

/* Upper bound on one poll so a missed wakeup can never stall a worker. */
#define WORKER_MAX_POLL_MS 1000

struct task {
    worker_task_fn fn;
    void *arg;
    struct task *next;
};

struct worker {
    struct app *app;
    int index;
    pthread_t thread;
    bool started;
    CURLM *multi;
    struct timerheap timers;
    uint64_t rng;
    int64_t now_ms;
    atomic_bool stop;

    pthread_mutex_t lock; /* protects the inbox only */
    struct task *inbox_head, *inbox_tail;
};

struct worker *worker_new(struct app *app, int index)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->app = app;
    w->index = index;
    w->multi = curl_multi_init();
    if (!w->multi) {
        free(w);
        return NULL;
    }
    /* Many runs share a few upstream hosts: keep enough warm connections. */
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, 512L);
    timerheap_init(&w->timers);
    pthread_mutex_init(&w->lock, NULL);
    w->rng = (uint64_t)clock_wall_ms() * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)index + 1) << 32 ^
             (uint64_t)(uintptr_t)w;
    atomic_init(&w->stop, false);
    return w;
}

static struct task *take_inbox(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    struct task *t = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    return t;
}

static void run_tasks(struct worker *w)
{
    struct task *t = take_inbox(w);
    while (t) {
        struct task *next = t->next;
        t->fn(w, t->arg);
        free(t);
        t = next;
    }
}

static void drain_transfers(struct worker *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        curl_multi_remove_handle(w->multi, easy);
        call_on_transfer_done(easy, result);
    }
}

static int poll_timeout_ms(struct worker *w)
{
    int64_t next = timerheap_next_due(&w->timers);
    if (next < 0)
        return WORKER_MAX_POLL_MS;
    int64_t wait = next - clock_now_ms();
    if (wait < 0)
        return 0;
    return wait > WORKER_MAX_POLL_MS ? WORKER_MAX_POLL_MS : (int)wait;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int running = 0;
    while (!atomic_load(&w->stop)) {
        worker_refresh_now(w);
        run_tasks(w);
        timerheap_run_due(&w->timers, worker_refresh_now(w));
        curl_multi_perform(w->multi, &running);
        drain_transfers(w);
        curl_multi_poll(w->multi, NULL, 0, poll_timeout_ms(w), NULL);
        curl_multi_perform(w->multi, &running);
        drain_transfers(w);
    }
    return NULL;
}

int worker_start(struct worker *w)
{
    int r = pthread_create(&w->thread, NULL, worker_main, w);
    if (r != 0)
        return -r;
    w->started = true;
    return 0;
}

void worker_stop(struct worker *w)
{
    if (!w || !w->started)
        return;
    atomic_store(&w->stop, true);
    curl_multi_wakeup(w->multi);
    pthread_join(w->thread, NULL);
    w->started = false;
}

struct worker *worker_free(struct worker *w)
{
    if (!w)
        return NULL;
    worker_stop(w);
    struct task *t = take_inbox(w);
    while (t) {
        struct task *next = t->next;
        free(t);
        t = next;
    }
    timerheap_fini(&w->timers);
    curl_multi_cleanup(w->multi);
    pthread_mutex_destroy(&w->lock);
    free(w);
    return NULL;
}

void worker_run_pending(struct worker *w)
{
    worker_refresh_now(w);
    run_tasks(w);
}

int worker_post(struct worker *w, worker_task_fn fn, void *arg)
{
    struct task *t = malloc(sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->inbox_tail)
        w->inbox_tail->next = t;
    else
        w->inbox_head = t;
    w->inbox_tail = t;
    pthread_mutex_unlock(&w->lock);
    curl_multi_wakeup(w->multi);
    return 0;
}

struct app *worker_app(struct worker *w)
{
    return w->app;
}

int worker_index(struct worker *w)
{
    return w->index;
}

CURLM *worker_multi(struct worker *w)
{
    return w->multi;
}

struct timerheap *worker_timers(struct worker *w)
{
    return &w->timers;
}

uint64_t *worker_rng(struct worker *w)
{
    return &w->rng;
}

int64_t worker_now_ms(struct worker *w)
{
    return w->now_ms;
}

int64_t worker_refresh_now(struct worker *w)
{
    w->now_ms = clock_now_ms();
    return w->now_ms;
}
