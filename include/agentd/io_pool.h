/*
 * io_pool.h — a few threads for blocking file I/O (save_note's fsyncs), so
 * no worker ever blocks on the disk. A job runs fn(arg) on a pool thread,
 * then complete(w, arg) is posted back to the worker that submitted it
 * (worker_post()). Jobs start in submission order; with several threads they
 * may finish, and complete, in any order.
 *
 * Threads: io_pool_new() and io_pool_free() on the thread that owns the app
 * (app.c); io_pool_submit() from any thread while the pool exists. fn runs
 * on a pool thread and must not touch the worker's state (only what arg
 * holds for it); complete runs on w's thread.
 *
 * Memory: the pool never frees arg. After a successful submit, fn and then
 * complete get arg (complete is where it is released); if submit fails,
 * neither runs and the caller still owns arg.
 */
#ifndef AGENTD_IO_POOL_H
#define AGENTD_IO_POOL_H

#include "agentd/worker.h"

struct io_pool;

typedef void (*io_job_fn)(void *arg);

/* Starts up to `threads` threads (fewer if some cannot be created). NULL on ENOMEM or when no
   thread could start (threads <= 0 included). */
struct io_pool *io_pool_new(int threads);
/* Runs the jobs still queued, posting their completions as usual (so the workers must still be
   running: a completion that worker_post() refuses is lost), then joins the threads and frees p
   (NULL is fine). Returns NULL. */
/* Refuses new jobs (io_pool_submit then answers -ESHUTDOWN), lets the queued ones finish (their
   completions are posted to their workers, which must still run) and joins the threads. The pool
   stays valid for io_pool_submit until io_pool_free. Idempotent; one thread at a time. */
void io_pool_stop(struct io_pool *p);
struct io_pool *io_pool_free(struct io_pool *p);
/* Queues a job. 0 or -ENOMEM / -ESHUTDOWN. */
int io_pool_submit(struct io_pool *p, io_job_fn fn, struct worker *w, worker_task_fn complete,
                   void *arg);

#endif
