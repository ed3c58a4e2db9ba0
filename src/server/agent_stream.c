/*
 * agent_stream.c — POST /v1/agent with "stream": true: the run's events
 * (docs/API.md "Streaming") go to the client as text/event-stream while the
 * run goes, and its answer as the last event (run.completed / run.failed).
 *
 * No thread waits on a stream. The worker pushes events into a bounded queue
 * (event_queue.h) and wakes the connection; libmicrohttpd's content reader
 * hands out what is queued and, when nothing is, suspends the connection
 * (the only place libmicrohttpd allows it besides the access handler) until
 * the next push resumes it. The decision to suspend and the decision to
 * resume are both made under the stream's lock, so no wake-up is lost.
 *
 * Three parties hold the stream (refs): the connection (until its
 * completion), the libmicrohttpd response (its free callback) and the run
 * (until owner->finished, or the abort at shutdown). The run is released by
 * whoever sees it last: the connection's completion when the run is over by
 * then, else the worker once the run ends (posted behind the cancellation,
 * so that never runs on a freed run).
 *
 * A client that goes away is noticed by the run's worker, which watches a
 * duplicate of the socket (libmicrohttpd does not look at a suspended
 * connection), and by libmicrohttpd when a write fails; either cancels the run.
 *
 * Slow readers: past AGENTD_STREAM_MAX_BUFFERED_BYTES of waiting events the
 * run is cancelled like one whose client went away, and the stream ends with
 * run.failed (client_closed, 499): memory per stream stays bounded.
 */
#include "agentd/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "agentd/app.h"
#include "agentd/event_queue.h"
#include "agentd/request.h"
#include "agentd/run.h"
#include "agentd/worker.h"

/* Bytes handed to libmicrohttpd per read at most (it asks for what its buffer can take). */
#define STREAM_BLOCK_BYTES 4096

struct agent_stream {
    atomic_int refs;
    pthread_mutex_t lock;
    struct event_queue *q;
    struct conn *c; /* NULL once the connection is over */
    struct run *run;
    struct worker *w; /* the run's worker */
    /* A duplicate of the connection's socket that the run's worker watches for the client going
       away while nothing is being written (libmicrohttpd does not look at a suspended
       connection). Its own descriptor, so libmicrohttpd closing its one never leaves the worker
       watching a number that a new connection may reuse; closed once the run has stopped
       watching it. -1 when none. */
    int watch_fd;
    agent_render_fn render;
    char request_id[129];
    size_t max_bytes;
    bool waiting;  /* the reader found nothing and suspended the connection */
    bool run_over; /* owner->finished came (or the abort): the run is done with the stream */
    bool ended;    /* the last event is queued: nothing more is */
};

static void stream_unref(struct agent_stream *st)
{
    if (atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    event_queue_free(st->q);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Under the lock: whether the reader must be woken (the caller resumes c after unlocking). */
static bool take_wake(struct agent_stream *st)
{
    bool wake = st->waiting && st->c;
    st->waiting = false;
    return wake;
}

/* The answer as the last event: run.completed with the 200 body, or run.failed with the error
   body plus "status". Under the lock. */
static void push_answer(struct agent_stream *st, const struct run_answer *a)
{
    char *data = NULL;
    if (a->body && a->status == 200) {
        data = strdup(a->body);
    } else if (a->body) {
        json_t *o = json_loads(a->body, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_object(o) && json_object_set_new(o, "status", json_integer(a->status)) == 0)
            data = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    const char *name = a->status == 200 ? "run.completed" : "run.failed";
    if (data)
        event_queue_push(st->q, name, data, strlen(data), true);
    free(data); /* out of memory: the stream ends without its last event, which the client sees */
    st->ended = true;
}

/* The reader is too slow: stop the run, end the stream. Under the lock. */
static void overflow(struct agent_stream *st)
{
    char msg[256];
    snprintf(msg, sizeof(msg),
             "the client read the event stream too slowly: more than %zu bytes of events were "
             "waiting (AGENTD_STREAM_MAX_BUFFERED_BYTES); the run was cancelled",
             st->max_bytes);
    char *body = request_error_body("client_closed", msg, st->request_id, 0);
    struct run_answer a = {.status = 499, .body = body};
    push_answer(st, &a);
    free(body);
    run_client_gone(st->run);
}

/* ---- the run's side (its worker) ----------------------------------------------------------- */

static void on_event(const struct run_event *ev, void *arg)
{
    struct agent_stream *st = arg;
    pthread_mutex_lock(&st->lock);
    if (st->ended || !st->c) {
        pthread_mutex_unlock(&st->lock);
        return;
    }
    int r;
    if (ev->kind == RUN_EVENT_TEXT_DELTA)
        r = event_queue_push_text(st->q, ev->iteration, ev->text, ev->text_len);
    else if (ev->kind == RUN_EVENT_KEEPALIVE)
        r = event_queue_push_comment(st->q, "ping");
    else
        r = event_queue_push(st->q, ev->name, ev->data, strlen(ev->data), false);
    if (r == -ENOBUFS)
        overflow(st);
    struct conn *c = st->c;
    bool wake = take_wake(st);
    pthread_mutex_unlock(&st->lock);
    if (wake)
        http_resume_if_suspended(c);
}

/* The run no longer watches the duplicate socket (it has ended): close it. */
static void close_watch(struct agent_stream *st)
{
    if (st->watch_fd >= 0)
        close(st->watch_fd);
    st->watch_fd = -1;
}

static void release_run_task(struct worker *w, void *arg)
{
    (void)w;
    run_release(arg);
}

static void on_finished(struct run *run, void *arg)
{
    struct agent_stream *st = arg;
    struct run_answer a;
    run_take_answer(run, &a);
    close_watch(st);
    pthread_mutex_lock(&st->lock);
    st->run_over = true;
    if (!st->ended)
        push_answer(st, &a);
    struct conn *c = st->c;
    bool wake = take_wake(st);
    /* The connection is gone: nobody else will release the run. Posted, so it runs after a
       cancellation posted by agent_stream_release (same worker, in order). */
    if (!c)
        worker_post(st->w, release_run_task, run);
    pthread_mutex_unlock(&st->lock);
    free(a.body);
    if (wake)
        http_resume_if_suspended(c);
    stream_unref(st);
}

/* ---- the connection's side (libmicrohttpd threads) ----------------------------------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct agent_stream *st = cls;
    pthread_mutex_lock(&st->lock);
    long n = event_queue_read(st->q, buf, max);
    ssize_t ret = (ssize_t)n;
    if (n > 0 && st->c)
        st->c->bytes += (size_t)n; /* for the access log */
    if (n < 0) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (n == 0 && (st->ended || !st->c)) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (n == 0) {
        /* Nothing yet: park the connection until the worker has something. */
        st->waiting = true;
        http_suspend_writer(st->c);
    }
    pthread_mutex_unlock(&st->lock);
    return ret;
}

static void stream_response_done(void *cls)
{
    stream_unref(cls);
}

struct agent_stream *agent_stream_new(struct conn *c, agent_render_fn render)
{
    struct app *app = http_conn_app(c);
    struct agent_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->max_bytes = app->cfg.stream_max_buffered_bytes;
    st->q = event_queue_new(st->max_bytes);
    if (!st->q) {
        free(st);
        return NULL;
    }
    pthread_mutex_init(&st->lock, NULL);
    atomic_init(&st->refs, 1);
    st->watch_fd = -1;
    st->c = c;
    st->render = render;
    snprintf(st->request_id, sizeof(st->request_id), "%s", c->request_id);
    c->stream = st;
    return st;
}

void agent_stream_owner(struct agent_stream *st, struct run_owner *ret)
{
    *ret = (struct run_owner){
        .render = st->render, .finished = on_finished, .event = on_event, .arg = st};
}

enum MHD_Result agent_stream_start(struct agent_stream *st, struct run *run, struct worker *w)
{
    st->run = run;
    st->w = w;
    atomic_fetch_add(&st->refs, 1); /* the run's */
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, STREAM_BLOCK_BYTES, stream_read, st, stream_response_done);
    if (r) {
        atomic_fetch_add(&st->refs, 1); /* the response's, dropped by stream_response_done */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        /* Proxies such as nginx buffer responses unless told otherwise. */
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
    }
    enum MHD_Result ret = r ? http_reply_response(st->c, 200, r) : MHD_NO;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->watch_fd = ci ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (st->watch_fd >= 0)
        run_set_client_fd(run, st->watch_fd);
    if (run_submit(run, w) < 0) {
        /* The run ended at once with an answer (owner->finished is not called): queue it. */
        struct run_answer a;
        run_take_answer(run, &a);
        close_watch(st);
        pthread_mutex_lock(&st->lock);
        st->run_over = true;
        push_answer(st, &a);
        pthread_mutex_unlock(&st->lock);
        free(a.body);
        stream_unref(st);
    }
    return ret;
}

void agent_stream_abort(struct agent_stream *st)
{
    pthread_mutex_lock(&st->lock);
    bool over = st->run_over;
    st->waiting = false; /* http.c resumes the connection */
    pthread_mutex_unlock(&st->lock);
    if (over)
        return;
    run_abort(st->run);
    struct run_answer a;
    run_take_answer(st->run, &a);
    close_watch(st);
    pthread_mutex_lock(&st->lock);
    st->run_over = true;
    if (!st->ended)
        push_answer(st, &a);
    pthread_mutex_unlock(&st->lock);
    free(a.body);
    stream_unref(st); /* the run's: owner->finished will not come */
}

void agent_stream_release(struct agent_stream *st)
{
    pthread_mutex_lock(&st->lock);
    st->c = NULL;
    st->waiting = false;
    struct run *run = st->run;
    bool over = st->run_over;
    if (run && !over)
        run_client_gone(run); /* the worker releases it once it has ended (on_finished) */
    pthread_mutex_unlock(&st->lock);
    if (run && over)
        run_release(run);
    stream_unref(st);
}
