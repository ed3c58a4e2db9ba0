/*
 * worker.h — a worker thread: owns one curl multi handle, one epoll set and
 * one timer heap, and advances many runs at once. Nothing on a worker ever
 * blocks on the network or sleeps; other threads hand it work with
 * worker_post(). The worker knows nothing of runs or calls: finished
 * transfers and departed clients are handed back through the small callback
 * structs their owners embed (struct worker_transfer, struct worker_watch).
 *
 * Thread-safety: worker_new/start/stop/free from the thread that owns the
 * pool (app.c); worker_post from any thread; everything else only on the
 * worker's own thread (or after worker_stop, on the thread that stopped it).
 */
#ifndef AGENTD_WORKER_H
#define AGENTD_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "agentd/timerheap.h"

struct worker;

typedef void (*worker_task_fn)(struct worker *w, void *arg);

/* max_connections: idle upstream connections kept for reuse. NULL on failure. */
struct worker *worker_new(int index, long max_connections);
int worker_start(struct worker *w);
/* Asks the thread to stop and joins it. Runs still in flight are not answered. */
void worker_stop(struct worker *w);
struct worker *worker_free(struct worker *w);

/* After worker_stop: runs the tasks still queued, on the calling thread. */
void worker_run_pending(struct worker *w);

/* Thread-safe: queues fn(w, arg) to run on the worker's thread and wakes it. 0, -ENOMEM, or
   -ESHUTDOWN once worker_stop() has begun (fn will then never run). */
int worker_post(struct worker *w, worker_task_fn fn, void *arg);

/* Worker-thread only. */
int worker_index(struct worker *w);
struct timerheap *worker_timers(struct worker *w);
uint64_t *worker_rng(struct worker *w);

/* A transfer on the worker's multi handle. done(t, easy, result) runs on the worker when the
   transfer ends; the easy handle has been removed from the multi handle and belongs to done. */
struct worker_transfer {
    void (*done)(struct worker_transfer *t, CURL *easy, CURLcode result);
};
/* Starts easy (configured by the caller) on the multi handle; 0 or -EIO. */
int worker_add_transfer(struct worker *w, CURL *easy, struct worker_transfer *t);
/* Stops a transfer still in flight (done is not called) and frees easy. */
void worker_cancel_transfer(struct worker *w, CURL *easy);

/* Watches a suspended client connection's socket for the peer going away; gone(w, arg) runs on
   the worker when it does. Caller-owned, one per watched socket; the socket and the struct must
   stay alive until worker_unwatch_client(). */
struct worker_watch {
    int fd;
    void (*gone)(struct worker *w, void *arg);
    void *arg;
};
int worker_watch_client(struct worker *w, struct worker_watch *watch);
void worker_unwatch_client(struct worker *w, struct worker_watch *watch);

/* A socket of the caller's (e.g. a Redis connection) on the worker's epoll set. ready(w, f,
   events) runs on the worker with the EPOLL* bits that fired. Caller-owned; the struct must stay
   alive until worker_fd_remove(). */
struct worker_fd {
    int fd;
    uint32_t events; /* what is watched now (EPOLLIN, EPOLLOUT) */
    bool added;
    void (*ready)(struct worker *w, struct worker_fd *f, uint32_t events);
};
/* Watches exactly `events` (0 keeps it registered but silent). 0 or -errno. */
int worker_fd_set(struct worker *w, struct worker_fd *f, uint32_t events);
void worker_fd_remove(struct worker *w, struct worker_fd *f);

/* A cleared easy handle (reused when one is free, else new; NULL on ENOMEM), and its return. */
CURL *worker_take_easy(struct worker *w);
void worker_give_easy(struct worker *w, CURL *easy);
/* Monotonic time read at the top of the current loop iteration (refreshed by worker_refresh_now).
 */
int64_t worker_now_ms(struct worker *w);
int64_t worker_refresh_now(struct worker *w);

#endif
