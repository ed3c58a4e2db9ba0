/*
 * io_pool.h — a few threads for blocking file I/O (save_note's fsyncs), so
 * no worker ever blocks on the disk. A job runs fn(arg) on a pool thread,
 * then complete(w, arg) is posted back to the worker that submitted it.
 */
#ifndef AGENTD_IO_POOL_H
#define AGENTD_IO_POOL_H

#include "agentd/worker.h"

struct io_pool;

typedef void (*io_job_fn)(void *arg);

struct io_pool *io_pool_new(int threads);
/* Stops the threads after the queued jobs finish; their completions are dropped. */
struct io_pool *io_pool_free(struct io_pool *p);
/* Queues a job. 0 or -ENOMEM / -ESHUTDOWN. */
int io_pool_submit(struct io_pool *p, io_job_fn fn, struct worker *w, worker_task_fn complete,
                   void *arg);

#endif
