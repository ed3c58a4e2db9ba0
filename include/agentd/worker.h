/*
 * worker.h — a worker thread: owns one curl multi handle and one timer heap
 * and advances many runs at once. Nothing on a worker ever blocks on the
 * network or sleeps; other threads hand it work with worker_post().
 */
#ifndef AGENTD_WORKER_H
#define AGENTD_WORKER_H

#include <stdint.h>

#include <curl/curl.h>

#include "agentd/timerheap.h"

struct app;
struct worker;

typedef void (*worker_task_fn)(struct worker *w, void *arg);

struct worker *worker_new(struct app *app, int index);
int worker_start(struct worker *w);
/* Asks the thread to stop and joins it. Runs still in flight are not answered. */
void worker_stop(struct worker *w);
struct worker *worker_free(struct worker *w);

/* After worker_stop: runs the tasks still queued, on the calling thread. */
void worker_run_pending(struct worker *w);

/* Thread-safe: queues fn(w, arg) to run on the worker's thread and wakes it. 0 or -ENOMEM. */
int worker_post(struct worker *w, worker_task_fn fn, void *arg);

/* Worker-thread only. */
struct app *worker_app(struct worker *w);
int worker_index(struct worker *w);
CURLM *worker_multi(struct worker *w);
struct timerheap *worker_timers(struct worker *w);
uint64_t *worker_rng(struct worker *w);
/* Watches a suspended client connection's socket for the peer going away; gone(w, arg) runs on
   the worker when it does. The socket must stay open until worker_unwatch_client(). */
typedef void (*worker_client_gone_fn)(struct worker *w, void *arg);
int worker_watch_client(struct worker *w, int fd, worker_client_gone_fn gone, void *arg);
void worker_unwatch_client(struct worker *w, int fd);

/* A cleared easy handle (reused when one is free, else new; NULL on ENOMEM), and its return. */
CURL *worker_take_easy(struct worker *w);
void worker_give_easy(struct worker *w, CURL *easy);
/* Monotonic time read at the top of the current loop iteration (refreshed by worker_refresh_now).
 */
int64_t worker_now_ms(struct worker *w);
int64_t worker_refresh_now(struct worker *w);

#endif
