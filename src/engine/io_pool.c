/*
 * io_pool.c — fixed pool of threads for blocking file I/O (see io_pool.h).
 */
#include "agentd/io_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct io_job {
    io_job_fn fn;
    struct worker *w;
    worker_task_fn complete;
    void *arg;
    struct io_job *next;
};

struct io_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct io_job *head, *tail;
    bool stopping;
    int n_threads;
    pthread_t *threads;
};

static void *io_main(void *arg)
{
    struct io_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        struct io_job *j = p->head;
        if (j) {
            p->head = j->next;
            if (!p->head)
                p->tail = NULL;
        }
        bool stop = !j && p->stopping;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            return NULL;
        j->fn(j->arg);
        worker_post(j->w, j->complete, j->arg);
        free(j);
    }
}

struct io_pool *io_pool_new(int threads)
{
    struct io_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->threads = calloc((size_t)threads, sizeof(*p->threads));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, io_main, p) != 0)
            break;
        p->n_threads++;
    }
    if (p->n_threads == 0)
        return io_pool_free(p);
    return p;
}

void io_pool_stop(struct io_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

struct io_pool *io_pool_free(struct io_pool *p)
{
    if (!p)
        return NULL;
    io_pool_stop(p);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
    return NULL;
}

int io_pool_submit(struct io_pool *p, io_job_fn fn, struct worker *w, worker_task_fn complete,
                   void *arg)
{
    struct io_job *j = malloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (struct io_job){.fn = fn, .w = w, .complete = complete, .arg = arg};
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        free(j);
        return -ESHUTDOWN;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}
