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

/* Lanes: the upstreams a worker keeps apart for connection discipline (the caller's dependency
   ids); a lane out of range is treated as the last one. */
#define WORKER_LANES 4

/* How a worker's transfers use connections (conn_pacer.h has the rules). */
struct worker_upstream {
    long max_host_connections; /* this worker's cap per host (CURLMOPT_MAX_HOST_CONNECTIONS);
                                  0 = none. Transfers beyond it wait inside libcurl. */
    double connect_rate_per_s; /* this worker's new connections per second; 0 = unpaced */
    double connect_burst;      /* new connections it may open at once (>= 1) */
    struct {
        long http_version;   /* CURL_HTTP_VERSION_* for the lane's transfers */
        bool multiplex;      /* HTTP/2 is expected: transfers wait for a connection to share
                                (CURLOPT_PIPEWAIT) and are never paced */
        const char *ca_file; /* CURLOPT_CAINFO (borrowed, outlives the worker); NULL = default */
    } lanes[WORKER_LANES];
};
/* Before worker_start: applies u (copied). Without it: no cap, unpaced, libcurl's HTTP version. */
void worker_configure_upstream(struct worker *w, const struct worker_upstream *u);

/* A transfer on the worker's multi handle. done(t, easy, result) runs on the worker when the
   transfer ends; the easy handle has been removed from the multi handle and belongs to done.
   The fields after done are the worker's. */
struct worker_transfer {
    void (*done)(struct worker_transfer *t, CURL *easy, CURLcode result);
    /* Valid in done(): the transfer never got a connection, and conn_pacer.h judges that our
       own burst of connects, not the upstream, made it fail. */
    bool own_burst;

    struct worker *w;
    CURL *easy;
    int lane;
    bool waiting;   /* in the worker's queue: its turn to open a connection has not come */
    bool connected; /* it got a connection */
    int crowd;      /* other transfers of its lane waiting for a connection when it started */
    int64_t started_ms;
    struct worker_transfer *prev, *next; /* the queue */
};
/* Starts easy (configured by the caller) on the multi handle, on `lane` (its HTTP version and
   pace); it may first wait in the worker's queue for its turn to open a connection. 0 or -EIO. */
int worker_add_transfer(struct worker *w, CURL *easy, int lane, struct worker_transfer *t);
/* Stops a transfer still in flight or queued (done is not called) and frees easy. */
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
