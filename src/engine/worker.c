/*
 * worker.c — the worker thread loop: drain the inbox, fire due timers, let
 * libcurl move bytes, hand finished transfers to their calls.
 *
 * libcurl runs in its event-driven mode (curl_multi_socket_action): it tells
 * us which sockets to watch and when its own timeout is due, we keep those
 * sockets in one epoll set per worker and tell it only about the sockets
 * that are ready. The cost of a loop turn therefore follows the sockets that
 * moved, not the thousands of transfers in flight. The loop sleeps only in
 * epoll_wait(); an eventfd in the same set wakes it for new work.
 */
#include "agentd/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentd/clock.h"
#include "agentd/conn_pacer.h"

/* Upper bound on one poll so a missed wakeup can never stall a worker. */
#define WORKER_MAX_POLL_MS 1000
#define WORKER_EPOLL_BATCH 256
/* Finished easy handles kept for reuse (each holds a few KiB of buffers). */
#define WORKER_SPARE_EASY 256
/* HTTP/2 streams we allow on one connection (the server's own SETTINGS limit applies too). More
   is not better: libcurl 7.88 spent more CPU per call with 1000 streams per connection than with
   100 (bench/README.md, c_inflight). */
#define WORKER_MAX_STREAMS 100

struct task {
    worker_task_fn fn;
    void *arg;
    struct task *next;
};

struct worker {
    int index;
    pthread_t thread;
    bool started;
    CURLM *multi;
    struct timerheap timers;
    uint64_t rng;
    int64_t now_ms;
    atomic_bool stop;
    int epfd;            /* sockets libcurl asked us to watch, plus wakefd */
    int wakefd;          /* eventfd: worker_post and worker_stop wake the loop */
    int64_t curl_due_ms; /* libcurl's own timeout, -1 when none */
    CURL *spare_easy[WORKER_SPARE_EASY];
    size_t n_spare_easy;

    /* connection discipline (conn_pacer.h) */
    struct worker_upstream up;
    struct conn_lane lanes[WORKER_LANES];
    struct worker_transfer *queue_head[WORKER_LANES], *queue_tail[WORKER_LANES];
    int64_t pace_due_ms; /* when a queued transfer may get its turn; -1 when none waits */

    pthread_mutex_t lock; /* protects the inbox and closed */
    struct task *inbox_head, *inbox_tail;
    bool closed; /* worker_stop has begun: worker_post refuses */
};

/* libcurl: start, change or stop watching socket s. */
static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *arg, void *socketp)
{
    (void)easy;
    struct worker *w = arg;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(w->multi, s, NULL);
        return 0;
    }
    struct epoll_event ev = {
        .events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u),
        .data.fd = s,
    };
    if (socketp) {
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev);
    } else if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev) == 0) {
        curl_multi_assign(w->multi, s, w); /* marks s as registered */
    }
    return 0;
}

/* libcurl: call us back with CURL_SOCKET_TIMEOUT in timeout_ms (-1: never). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    (void)multi;
    struct worker *w = arg;
    w->curl_due_ms = timeout_ms < 0 ? -1 : clock_now_ms() + timeout_ms;
    return 0;
}

struct worker *worker_new(int index, long max_connections)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->index = index;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->multi = curl_multi_init();
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = w->wakefd};
    if (w->epfd < 0 || w->wakefd < 0 || !w->multi ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) < 0) {
        if (w->multi)
            curl_multi_cleanup(w->multi);
        if (w->epfd >= 0)
            close(w->epfd);
        if (w->wakefd >= 0)
            close(w->wakefd);
        free(w);
        return NULL;
    }
    w->curl_due_ms = -1;
    w->pace_due_ms = -1;
    for (int i = 0; i < WORKER_LANES; i++)
        conn_lane_init(&w->lanes[i], 0, 1, 0, false, WORKER_MAX_STREAMS, clock_now_ms());
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, max_connections);
    curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)WORKER_MAX_STREAMS);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
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

/* A transfer leaves the multi handle (ended or cancelled): its lane's counts follow. */
static void leave_lane(struct worker *w, struct worker_transfer *t)
{
    struct conn_lane *l = &w->lanes[t->lane];
    l->active--;
    if (!t->connected)
        l->connecting--;
    t->connected = true;
}

static bool is_connect_failure(const struct worker_transfer *t, CURLcode result)
{
    if (t->connected)
        return false;
    return result == CURLE_COULDNT_CONNECT || result == CURLE_OPERATION_TIMEDOUT;
}

/* What an ended transfer tells about its lane: whether it multiplexes. */
static void learn(struct worker *w, struct worker_transfer *t, CURL *easy, CURLcode result)
{
    long version = 0;
    if (result != CURLE_OK || !w->up.lanes[t->lane].multiplex ||
        curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK || version == 0)
        return;
    w->lanes[t->lane].multiplex = version >= CURL_HTTP_VERSION_2_0;
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
        struct worker_transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        curl_multi_remove_handle(w->multi, easy);
        bool connect_failed = is_connect_failure(t, result);
        leave_lane(w, t);
        t->own_burst =
            connect_failed && conn_lane_own_burst(&w->lanes[t->lane], t->started_ms, t->crowd);
        learn(w, t, easy, result);
        t->done(t, easy, result);
    }
}

/* How long the loop may sleep: until the next timer of ours or of libcurl, at most a second. */
static int poll_timeout_ms(struct worker *w)
{
    int64_t next = timerheap_next_due(&w->timers);
    if (w->curl_due_ms >= 0 && (next < 0 || w->curl_due_ms < next))
        next = w->curl_due_ms;
    if (w->pace_due_ms >= 0 && (next < 0 || w->pace_due_ms < next))
        next = w->pace_due_ms;
    if (next < 0)
        return WORKER_MAX_POLL_MS;
    int64_t wait = next - clock_now_ms();
    if (wait < 0)
        return 0;
    return wait > WORKER_MAX_POLL_MS ? WORKER_MAX_POLL_MS : (int)wait;
}

static void wake(struct worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->wakefd, &one, sizeof(one));
    (void)r; /* the counter saturating still leaves the fd readable */
}

static void curl_timeout_if_due(struct worker *w)
{
    int running;
    if (w->curl_due_ms >= 0 && w->curl_due_ms <= worker_refresh_now(w)) {
        w->curl_due_ms = -1;
        curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        drain_transfers(w);
    }
}

/* epoll tags: curl sockets are stored as their fd; watched client connections as a pointer with
   the top bit set (user-space pointers never have it). */
#define WORKER_CLIENT_TAG (1ULL << 63)
/* A caller's socket (struct worker_fd): the pointer with bit 62 set. */
#define WORKER_FD_TAG (1ULL << 62)

int worker_fd_set(struct worker *w, struct worker_fd *f, uint32_t events)
{
    if (f->added && f->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.u64 = WORKER_FD_TAG | (uint64_t)(uintptr_t)f};
    if (epoll_ctl(w->epfd, f->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, f->fd, &ev) < 0)
        return -errno;
    f->added = true;
    f->events = events;
    return 0;
}

void worker_fd_remove(struct worker *w, struct worker_fd *f)
{
    if (f->added)
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, f->fd, NULL);
    f->added = false;
    f->events = 0;
}

int worker_watch_client(struct worker *w, struct worker_watch *watch)
{
    struct epoll_event ev = {.events = EPOLLRDHUP,
                             .data.u64 = WORKER_CLIENT_TAG | (uint64_t)(uintptr_t)watch};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, watch->fd, &ev) < 0 ? -errno : 0;
}

void worker_unwatch_client(struct worker *w, struct worker_watch *watch)
{
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, watch->fd, NULL);
}

void worker_configure_upstream(struct worker *w, const struct worker_upstream *u)
{
    w->up = *u;
    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, u->max_host_connections);
    int64_t now = clock_now_ms();
    for (int i = 0; i < WORKER_LANES; i++)
        conn_lane_init(&w->lanes[i], u->connect_rate_per_s, u->connect_burst,
                       u->max_host_connections, u->lanes[i].multiplex, WORKER_MAX_STREAMS, now);
}

/* libcurl opens every socket through these, so a lane knows its open connections. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    struct conn_lane *l = arg;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    l->open++;
    return fd;
}

static int on_close_socket(void *arg, curl_socket_t fd)
{
    struct conn_lane *l = arg;
    l->open--;
    return close(fd);
}

/* libcurl: the transfer has its connection (new or reused) and is about to send. */
static int on_connected(void *arg, char *primary_ip, char *local_ip, int primary_port,
                        int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    struct worker_transfer *t = arg;
    struct conn_lane *l = &t->w->lanes[t->lane];
    if (!t->connected) {
        t->connected = true;
        l->connecting--;
    }
    l->last_connected_ms = t->w->now_ms;
    return CURL_PREREQFUNC_OK;
}

/* Puts t on the multi handle now. 0 or -EIO. */
static int start(struct worker *w, struct worker_transfer *t)
{
    struct conn_lane *l = &w->lanes[t->lane];
    t->waiting = false;
    t->connected = false;
    t->crowd = l->connecting;
    t->started_ms = w->now_ms;
    if (curl_multi_add_handle(w->multi, t->easy) != CURLM_OK)
        return -EIO;
    l->active++;
    l->connecting++;
    return 0;
}

static void enqueue(struct worker *w, struct worker_transfer *t)
{
    int lane = t->lane;
    t->waiting = true;
    t->next = NULL;
    t->prev = w->queue_tail[lane];
    if (t->prev)
        t->prev->next = t;
    else
        w->queue_head[lane] = t;
    w->queue_tail[lane] = t;
}

static void dequeue(struct worker *w, struct worker_transfer *t)
{
    int lane = t->lane;
    if (t->prev)
        t->prev->next = t->next;
    else
        w->queue_head[lane] = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        w->queue_tail[lane] = t->prev;
    t->prev = t->next = NULL;
    t->waiting = false;
}

static void pace_at(struct worker *w, int64_t at_ms)
{
    if (w->pace_due_ms < 0 || at_ms < w->pace_due_ms)
        w->pace_due_ms = at_ms;
}

/* Starts the queued transfers whose turn has come, oldest first. */
static void start_queued(struct worker *w)
{
    int64_t now = w->now_ms;
    if (w->pace_due_ms < 0 || w->pace_due_ms > now) {
        /* Not due yet; but an ended transfer may have freed a connection to reuse. */
        bool any = false;
        for (int i = 0; i < WORKER_LANES && !any; i++)
            any = w->queue_head[i] && w->lanes[i].active < w->lanes[i].open;
        if (!any)
            return;
    }
    w->pace_due_ms = -1;
    for (int i = 0; i < WORKER_LANES; i++) {
        struct worker_transfer *t;
        while ((t = w->queue_head[i])) {
            int64_t wait = conn_lane_admit(&w->lanes[i], now);
            if (wait > 0) {
                pace_at(w, now + wait);
                break;
            }
            dequeue(w, t);
            if (start(w, t) < 0)
                t->done(t, t->easy, CURLE_OUT_OF_MEMORY);
        }
    }
}

int worker_add_transfer(struct worker *w, CURL *easy, int lane, struct worker_transfer *t)
{
    if (lane < 0 || lane >= WORKER_LANES)
        lane = WORKER_LANES - 1;
    t->w = w;
    t->easy = easy;
    t->lane = lane;
    t->own_burst = false;
    t->prev = t->next = NULL;
    struct conn_lane *l = &w->lanes[lane];
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, l);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, l);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_connected);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);
    if (w->up.lanes[lane].http_version)
        curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, w->up.lanes[lane].http_version);
    if (w->up.lanes[lane].multiplex)
        curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    if (w->up.lanes[lane].ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, w->up.lanes[lane].ca_file);
    /* First come, first served: nobody overtakes a transfer that waits for its turn. */
    int64_t wait = w->queue_head[lane] ? 1 : conn_lane_admit(l, w->now_ms);
    if (wait > 0) {
        enqueue(w, t);
        pace_at(w, w->now_ms + wait);
        return 0;
    }
    return start(w, t);
}

void worker_cancel_transfer(struct worker *w, CURL *easy)
{
    struct worker_transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    if (t && t->waiting) {
        dequeue(w, t);
    } else {
        curl_multi_remove_handle(w->multi, easy);
        if (t)
            leave_lane(w, t);
    }
    curl_easy_cleanup(easy);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[WORKER_EPOLL_BATCH];
    int running;
    while (!atomic_load(&w->stop)) {
        worker_refresh_now(w);
        run_tasks(w);
        timerheap_run_due(&w->timers, worker_refresh_now(w));
        curl_timeout_if_due(w);
        int n = epoll_wait(w->epfd, evs, WORKER_EPOLL_BATCH, poll_timeout_ms(w));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 & WORKER_CLIENT_TAG) {
                struct worker_watch *watch =
                    (struct worker_watch *)(uintptr_t)(evs[i].data.u64 & ~WORKER_CLIENT_TAG);
                watch->gone(w, watch->arg);
                continue;
            }
            if (evs[i].data.u64 & WORKER_FD_TAG) {
                struct worker_fd *f =
                    (struct worker_fd *)(uintptr_t)(evs[i].data.u64 & ~WORKER_FD_TAG);
                f->ready(w, f, evs[i].events);
                continue;
            }
            if (evs[i].data.fd == w->wakefd) {
                uint64_t v;
                ssize_t r = read(w->wakefd, &v, sizeof(v));
                (void)r;
                continue;
            }
            int flags = (evs[i].events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & EPOLLERR ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(w->multi, evs[i].data.fd, flags, &running);
        }
        drain_transfers(w);
        curl_timeout_if_due(w);
        worker_refresh_now(w);
        start_queued(w);
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
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->closed = true;
    pthread_mutex_unlock(&w->lock);
    if (!w->started)
        return;
    atomic_store(&w->stop, true);
    wake(w);
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
    while (w->n_spare_easy)
        curl_easy_cleanup(w->spare_easy[--w->n_spare_easy]);
    close(w->epfd);
    close(w->wakefd);
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
    if (w->closed) {
        pthread_mutex_unlock(&w->lock);
        free(t);
        return -ESHUTDOWN;
    }
    if (w->inbox_tail)
        w->inbox_tail->next = t;
    else
        w->inbox_head = t;
    w->inbox_tail = t;
    pthread_mutex_unlock(&w->lock);
    wake(w);
    return 0;
}

CURL *worker_take_easy(struct worker *w)
{
    return w->n_spare_easy ? w->spare_easy[--w->n_spare_easy] : curl_easy_init();
}

void worker_give_easy(struct worker *w, CURL *easy)
{
    if (w->n_spare_easy < WORKER_SPARE_EASY) {
        curl_easy_reset(easy);
        w->spare_easy[w->n_spare_easy++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

int worker_index(struct worker *w)
{
    return w->index;
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
