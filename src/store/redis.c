/*
 * redis.c — per-worker asynchronous Redis links (see redis.h): a hiredis
 * async context whose socket sits on the worker's epoll set, timeouts on the
 * worker's timer heap, EVALSHA with an EVAL retry on NOSCRIPT, reconnects
 * with jittered backoff, and link 0's registry beat.
 */
#include "agentd/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <hiredis/async.h>
#include <openssl/evp.h>

#include "agentd/backoff.h"
#include "agentd/clock.h"
#include "agentd/io_pool.h"
#include "agentd/metrics.h"
#include "agentd/redis_scripts.h"
#include "agentd/timerheap.h"
#include "agentd/worker.h"

#define REDIS_SHA_HEX        41
#define REDIS_CONNECT_MIN_MS 500
#define REDIS_IP_MAX         (URL_REDIS_HOST_MAX + 1)
#define REDIS_PREFIX_MAX     64

enum link_state {
    LINK_IDLE = 0,   /* not started, or waiting for the reconnect timer */
    LINK_RESOLVING,  /* the host name is being resolved on the I/O pool */
    LINK_CONNECTING, /* connected or connecting; AUTH/SELECT/ROLE not answered yet */
    LINK_UP,
};

struct redis_pending {
    struct redis_link *l;
    struct redis_req *req; /* NULL once nobody waits for the answer */
    struct timer timer;
    enum redis_script_id script;
    bool retried; /* sent again as EVAL after NOSCRIPT */
    bool timed_out;
    int64_t sent_ns;
    int argc; /* keys and arguments after EVALSHA sha nkeys */
    int nkeys;
    const char **argv;
    size_t *lens;
    struct redis_pending *prev, *next;
};

struct redis_link {
    struct redis_pool *pool;
    struct worker *w;
    int index;
    redisAsyncContext *ac;
    struct worker_fd fdw;
    _Atomic int state;
    struct timer retry_timer;   /* reconnect */
    struct timer connect_timer; /* handshake deadline */
    struct timer beat_timer;    /* link 0 only */
    int failures;               /* connects in a row that failed, for the backoff */
    int timeouts_in_row;
    int handshake_left;
    char ip[REDIS_IP_MAX];
    bool resolve_ok;
    struct redis_pending *pending; /* commands sent and not answered */
    struct redis_req beat;
    bool beat_busy;
};

struct redis_pool {
    struct redis_settings s;
    char prefix[REDIS_PREFIX_MAX + 1];
    char replica_id[REDIS_REPLICA_ID_BYTES];
    char registry_key[REDIS_PREFIX_MAX + 32];
    char sha[REDIS_SCRIPT__COUNT][REDIS_SHA_HEX];
    struct io_pool *io;
    struct redis_link *links;
    int n_links;
    _Atomic int links_up;
    _Atomic int mode;
    _Atomic int mode_reported;
    _Atomic int replicas;
    atomic_uint_fast64_t commands, errors, timeouts, reconnects;
    void (*on_replicas)(void *arg, int replicas);
    void *on_replicas_arg;
};

static const char *const script_text[REDIS_SCRIPT__COUNT] = {
    [REDIS_LIMIT_TAKE] = REDIS_SCRIPT_LIMIT_TAKE,
    [REDIS_LIMIT_PAUSE] = REDIS_SCRIPT_LIMIT_PAUSE,
    [REDIS_LIMIT_PROBE_DONE] = REDIS_SCRIPT_LIMIT_PROBE_DONE,
    [REDIS_REGISTRY_BEAT] = REDIS_SCRIPT_REGISTRY_BEAT,
    [REDIS_SPEND_RESERVE] = REDIS_SCRIPT_SPEND_RESERVE,
    [REDIS_SPEND_SETTLE] = REDIS_SCRIPT_SPEND_SETTLE,
    [REDIS_IDEM_CLAIM] = REDIS_SCRIPT_IDEM_CLAIM,
    [REDIS_IDEM_RENEW] = REDIS_SCRIPT_IDEM_RENEW,
    [REDIS_IDEM_CHECKPOINT] = REDIS_SCRIPT_IDEM_CHECKPOINT,
    [REDIS_IDEM_RELEASE] = REDIS_SCRIPT_IDEM_RELEASE,
    [REDIS_IDEM_COMPLETE] = REDIS_SCRIPT_IDEM_COMPLETE,
    [REDIS_IDEM_ABANDON] = REDIS_SCRIPT_IDEM_ABANDON,
    [REDIS_CONV_ACQUIRE] = REDIS_SCRIPT_CONV_ACQUIRE,
    [REDIS_CONV_RENEW] = REDIS_SCRIPT_CONV_RENEW,
    [REDIS_CONV_COMMIT] = REDIS_SCRIPT_CONV_COMMIT,
    [REDIS_CONV_RELEASE] = REDIS_SCRIPT_CONV_RELEASE,
};

static void link_connect(struct redis_link *l);
static void link_drop(struct redis_link *l);

/* ---- pool state ------------------------------------------------------------------------ */

static void pool_update_mode(struct redis_pool *p)
{
    int mode = atomic_load(&p->links_up) == p->n_links ? REDIS_MODE_SHARED : REDIS_MODE_DEGRADED;
    atomic_store(&p->mode, mode);
}

static void link_set_state(struct redis_link *l, enum link_state st)
{
    int was = atomic_exchange(&l->state, (int)st);
    if ((was == LINK_UP) == (st == LINK_UP))
        return;
    atomic_fetch_add(&l->pool->links_up, st == LINK_UP ? 1 : -1);
    pool_update_mode(l->pool);
}

/* ---- hiredis event hooks: the socket on the worker's epoll set -------------------------- */

static void link_watch(struct redis_link *l, uint32_t add, uint32_t del)
{
    if (!l->ac)
        return;
    l->fdw.fd = l->ac->c.fd;
    worker_fd_set(l->w, &l->fdw, ((l->fdw.added ? l->fdw.events : 0) & ~del) | add);
}

static void ev_add_read(void *arg)
{
    link_watch(arg, EPOLLIN, 0);
}

static void ev_del_read(void *arg)
{
    link_watch(arg, 0, EPOLLIN);
}

static void ev_add_write(void *arg)
{
    link_watch(arg, EPOLLOUT, 0);
}

static void ev_del_write(void *arg)
{
    link_watch(arg, 0, EPOLLOUT);
}

static void ev_cleanup(void *arg)
{
    struct redis_link *l = arg;
    worker_fd_remove(l->w, &l->fdw);
}

static void on_ready(struct worker *w, struct worker_fd *f, uint32_t events)
{
    (void)w;
    struct redis_link *l = (struct redis_link *)((char *)f - offsetof(struct redis_link, fdw));
    if (l->ac && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        redisAsyncHandleRead(l->ac);
    if (l->ac && (events & EPOLLOUT))
        redisAsyncHandleWrite(l->ac);
}

/* ---- commands ---------------------------------------------------------------------------- */

static void pending_unlink(struct redis_pending *pd)
{
    struct redis_link *l = pd->l;
    if (pd->prev)
        pd->prev->next = pd->next;
    else
        l->pending = pd->next;
    if (pd->next)
        pd->next->prev = pd->prev;
    timerheap_cancel(worker_timers(l->w), &pd->timer);
    if (pd->req)
        pd->req->pending = NULL;
}

/* Hands the answer to its owner, if one still waits; the owner may free itself in done(). */
static void pending_deliver(struct redis_pending *pd, int err, const redisReply *reply)
{
    struct redis_req *req = pd->req;
    if (!req)
        return;
    pd->req = NULL;
    req->pending = NULL;
    req->done(req, err, reply);
}

static int pending_send(struct redis_pending *pd);

/* Error replies that say this server cannot serve writes now (a failover demoted it, or it is
   loading its data set). */
static bool server_not_primary(const char *err)
{
    return strncmp(err, "READONLY", 8) == 0 || strncmp(err, "LOADING", 7) == 0 ||
           strncmp(err, "MASTERDOWN", 10) == 0;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    struct redis_pending *pd = privdata;
    struct redis_link *l = pd->l;
    redisReply *reply = r;

    if (reply && reply->type == REDIS_REPLY_ERROR && !pd->retried &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* Redis lost the script (restart, failover, SCRIPT FLUSH): send the text, which also
           caches it for the next EVALSHA. */
        pd->retried = true;
        if (pending_send(pd) == 0)
            return;
    }
    pending_unlink(pd);
    if (!reply) {
        /* The connection went away (hiredis is freeing the context). */
        if (!pd->timed_out)
            metrics_redis_command(METRICS_REDIS_DISCONNECTED, 0);
        pending_deliver(pd, -ENOTCONN, NULL);
    } else {
        bool error = reply->type == REDIS_REPLY_ERROR;
        l->timeouts_in_row = 0;
        /* The backoff starts over only once the server answers commands, so a server that
           accepts connections but cannot serve (READONLY) is retried ever more slowly. */
        if (!error)
            l->failures = 0;
        atomic_fetch_add(&l->pool->commands, 1);
        if (error)
            atomic_fetch_add(&l->pool->errors, 1);
        if (!pd->timed_out)
            metrics_redis_command(error ? METRICS_REDIS_ERROR : METRICS_REDIS_OK,
                                  (double)(clock_now_ns() - pd->sent_ns) / 1e9);
        bool stale = error && server_not_primary(reply->str);
        pending_deliver(pd, error ? -EPROTO : 0, reply);
        /* A demoted primary, or one still loading: this connection will not be useful again.
           Reconnecting finds the current primary behind the same address. */
        if (stale)
            link_drop(l);
    }
    free(pd);
}

static void on_command_timeout(struct timer *t, void *arg)
{
    (void)t;
    struct redis_pending *pd = arg;
    struct redis_link *l = pd->l;

    atomic_fetch_add(&l->pool->timeouts, 1);
    metrics_redis_command(METRICS_REDIS_TIMEOUT, 0);
    pd->timed_out = true;
    /* The answer may still come; it will find nobody waiting. */
    pending_deliver(pd, -ETIMEDOUT, NULL);
    if (++l->timeouts_in_row >= REDIS_TIMEOUTS_TO_DROP)
        link_drop(l);
}

static int pending_send(struct redis_pending *pd)
{
    struct redis_link *l = pd->l;
    struct redis_pool *p = l->pool;
    int n = pd->argc + 3;
    const char *argv[n];
    size_t lens[n];
    char nkeys[16];

    argv[0] = pd->retried ? "EVAL" : "EVALSHA";
    argv[1] = pd->retried ? script_text[pd->script] : p->sha[pd->script];
    snprintf(nkeys, sizeof(nkeys), "%d", pd->nkeys);
    argv[2] = nkeys;
    for (int i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (int i = 0; i < pd->argc; i++) {
        argv[3 + i] = pd->argv[i];
        lens[3 + i] = pd->lens[i];
    }
    return redisAsyncCommandArgv(l->ac, on_reply, pd, n, argv, lens) == REDIS_OK ? 0 : -ENOTCONN;
}

int redis_eval(struct redis_link *l, enum redis_script_id id, int nkeys, int argc,
               const char *const *argv, const size_t *lens, struct redis_req *req)
{
    if (!l || !l->ac || atomic_load(&l->state) != LINK_UP)
        return -ENOTCONN;
    size_t bytes = sizeof(struct redis_pending) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
    for (int i = 0; i < argc; i++)
        bytes += lens[i] + 1;
    struct redis_pending *pd = calloc(1, bytes);
    if (!pd)
        return -ENOMEM;
    pd->l = l;
    pd->script = id;
    pd->argc = argc;
    pd->nkeys = nkeys;
    pd->argv = (const char **)(pd + 1);
    pd->lens = (size_t *)(pd->argv + argc);
    char *at = (char *)(pd->lens + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(at, argv[i], lens[i]);
        at[lens[i]] = '\0';
        pd->argv[i] = at;
        pd->lens[i] = lens[i];
        at += lens[i] + 1;
    }
    pd->sent_ns = clock_now_ns();
    if (pending_send(pd) < 0) {
        free(pd);
        return -ENOTCONN;
    }
    pd->req = req;
    if (req)
        req->pending = pd;
    pd->next = l->pending;
    if (l->pending)
        l->pending->prev = pd;
    l->pending = pd;
    timer_init(&pd->timer, on_command_timeout, pd);
    if (req)
        timerheap_arm(worker_timers(l->w), &pd->timer,
                      worker_refresh_now(l->w) + l->pool->s.timeout_ms);
    return 0;
}

void redis_req_cancel(struct redis_req *req)
{
    struct redis_pending *pd = req ? req->pending : NULL;
    if (!pd)
        return;
    timerheap_cancel(worker_timers(pd->l->w), &pd->timer);
    pd->req = NULL;
    req->pending = NULL;
}

/* ---- connection ------------------------------------------------------------------------ */

static void link_retry_later(struct redis_link *l)
{
    int64_t base = REDIS_BACKOFF_MIN_MS;
    for (int i = 0; i < l->failures && base < REDIS_BACKOFF_MAX_MS; i++)
        base *= 2;
    if (base > REDIS_BACKOFF_MAX_MS)
        base = REDIS_BACKOFF_MAX_MS;
    l->failures++;
    /* Jitter in [base/2, base]: replicas that lost Redis together do not return in step. */
    int64_t delay =
        base / 2 + (int64_t)(backoff_rng_next(worker_rng(l->w)) % (uint64_t)(base / 2 + 1));
    link_set_state(l, LINK_IDLE);
    timerheap_arm(worker_timers(l->w), &l->retry_timer, worker_now_ms(l->w) + delay);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct redis_link *l = ac->data;
    l->ac = NULL;
    timerheap_cancel(worker_timers(l->w), &l->connect_timer);
    if (atomic_load(&l->state) == LINK_UP)
        atomic_fetch_add(&l->pool->errors, 1);
    link_retry_later(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *l = ac->data;
    if (status == REDIS_OK)
        return; /* the handshake's answers decide */
    /* hiredis frees a context that failed to connect without calling on_disconnect. */
    l->ac = NULL;
    timerheap_cancel(worker_timers(l->w), &l->connect_timer);
    link_retry_later(l);
}

static void on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)privdata;
    struct redis_link *l = ac->data;
    redisReply *reply = r;

    if (!reply)
        return;                         /* the context is going away; on_disconnect follows */
    bool last = l->handshake_left == 1; /* ROLE */
    if (reply->type == REDIS_REPLY_ERROR && !last) {
        atomic_fetch_add(&l->pool->errors, 1);
        link_drop(l); /* wrong password or db: try again later, maybe fixed by then */
        return;
    }
    /* A replica (a primary demoted by a failover, or the wrong address) cannot take the
       scripts' writes. A server that will not say its role (ACL, a proxy) is given the
       benefit of the doubt: its error replies will tell. */
    if (last && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(reply->element[0]->str, "master") != 0) {
        atomic_fetch_add(&l->pool->errors, 1);
        link_drop(l);
        return;
    }
    if (--l->handshake_left > 0)
        return;
    timerheap_cancel(worker_timers(l->w), &l->connect_timer);
    l->timeouts_in_row = 0;
    atomic_fetch_add(&l->pool->reconnects, 1);
    metrics_redis_reconnect();
    link_set_state(l, LINK_UP);
}

static void on_connect_timeout(struct timer *t, void *arg)
{
    (void)t;
    link_drop(arg);
}

/* Forgets the connection now; every pending owner hears -ENOTCONN. */
static void link_drop(struct redis_link *l)
{
    if (l->ac) {
        redisAsyncContext *ac = l->ac;
        /* redisAsyncFree calls on_disconnect only for a connected context. */
        bool connected = ac->c.flags & REDIS_CONNECTED;
        redisAsyncFree(ac);
        if (!connected && l->ac) {
            l->ac = NULL;
            link_retry_later(l);
        }
        return;
    }
    link_retry_later(l);
}

static void link_open(struct redis_link *l)
{
    const struct url_redis *a = &l->pool->s.addr;
    redisAsyncContext *ac = redisAsyncConnect(l->ip, a->port);

    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        link_retry_later(l);
        return;
    }
    l->ac = ac;
    ac->data = l;
    ac->ev.data = l;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    link_set_state(l, LINK_CONNECTING);
    l->handshake_left = 0;
    if (a->password[0]) {
        if (a->user[0])
            redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s %s", a->user, a->password);
        else
            redisAsyncCommand(ac, on_handshake, NULL, "AUTH %s", a->password);
        l->handshake_left++;
    }
    if (a->db != 0) {
        redisAsyncCommand(ac, on_handshake, NULL, "SELECT %d", a->db);
        l->handshake_left++;
    }
    redisAsyncCommand(ac, on_handshake, NULL, "ROLE");
    l->handshake_left++;
    int64_t limit = l->pool->s.timeout_ms * 10;
    if (limit < REDIS_CONNECT_MIN_MS)
        limit = REDIS_CONNECT_MIN_MS;
    timerheap_arm(worker_timers(l->w), &l->connect_timer, worker_now_ms(l->w) + limit);
}

/* On an I/O pool thread: a blocking lookup of the host name. */
static void resolve_job(void *arg)
{
    struct redis_link *l = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;

    l->resolve_ok = false;
    if (getaddrinfo(l->pool->s.addr.host, NULL, &hints, &res) != 0 || !res)
        return;
    const void *addr = res->ai_family == AF_INET6
                           ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                           : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    l->resolve_ok = inet_ntop(res->ai_family, addr, l->ip, sizeof(l->ip)) != NULL;
    freeaddrinfo(res);
}

static void resolve_done(struct worker *w, void *arg)
{
    (void)w;
    struct redis_link *l = arg;
    if (l->resolve_ok)
        link_open(l);
    else
        link_retry_later(l);
}

static bool host_is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void link_connect(struct redis_link *l)
{
    const char *host = l->pool->s.addr.host;
    if (host_is_numeric(host)) {
        snprintf(l->ip, sizeof(l->ip), "%s", host);
        link_open(l);
        return;
    }
    link_set_state(l, LINK_RESOLVING);
    if (io_pool_submit(l->pool->io, resolve_job, l->w, resolve_done, l) < 0)
        link_retry_later(l);
}

static void on_retry_timer(struct timer *t, void *arg)
{
    (void)t;
    link_connect(arg);
}

/* ---- the registry beat (link 0) ---------------------------------------------------------- */

static void arm_beat(struct redis_link *l)
{
    timerheap_arm(worker_timers(l->w), &l->beat_timer, worker_now_ms(l->w) + REDIS_BEAT_MS);
}

static void on_beat_reply(struct redis_req *req, int err, const redisReply *reply)
{
    struct redis_link *l = (struct redis_link *)((char *)req - offsetof(struct redis_link, beat));
    struct redis_pool *p = l->pool;
    l->beat_busy = false;
    if (err == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 1) {
        int n = reply->integer > 1000000 ? 1000000 : (int)reply->integer;
        atomic_store(&p->replicas, n);
        if (p->on_replicas)
            p->on_replicas(p->on_replicas_arg, n);
    }
}

static void on_beat_timer(struct timer *t, void *arg)
{
    (void)t;
    struct redis_link *l = arg;
    struct redis_pool *p = l->pool;
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", REDIS_REPLICA_TTL_MS);
    const char *argv[] = {p->registry_key, p->replica_id, ttl};
    size_t lens[] = {strlen(argv[0]), strlen(argv[1]), strlen(argv[2])};

    if (!l->beat_busy && redis_eval(l, REDIS_REGISTRY_BEAT, 1, 3, argv, lens, &l->beat) == 0)
        l->beat_busy = true;
    arm_beat(l);
}

/* ---- the pool ---------------------------------------------------------------------------- */

static int sha1_hex(const char *text, char out[REDIS_SHA_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

struct redis_pool *redis_pool_new(const struct redis_settings *s, struct worker *const *workers,
                                  int n_workers, struct io_pool *io, char *err, size_t errlen)
{
    struct redis_pool *p = calloc(1, sizeof(*p));
    if (!p || n_workers < 1 || !s->prefix || strlen(s->prefix) > REDIS_PREFIX_MAX ||
        strchr(s->prefix, '{') || strchr(s->prefix, '}')) {
        snprintf(err, errlen, "%s",
                 p ? "bad Redis settings (prefix: 1..64 bytes, no braces)" : "out of memory");
        free(p);
        return NULL;
    }
    p->s = *s;
    snprintf(p->prefix, sizeof(p->prefix), "%s", s->prefix);
    snprintf(p->replica_id, sizeof(p->replica_id), "%s", s->replica_id ? s->replica_id : "agentd");
    snprintf(p->registry_key, sizeof(p->registry_key), "%s{replicas}", p->prefix);
    p->s.prefix = p->prefix;
    p->s.replica_id = p->replica_id;
    p->io = io;
    atomic_store(&p->replicas, 1);
    atomic_store(&p->mode, REDIS_MODE_DEGRADED);
    atomic_store(&p->mode_reported, -1);
    for (int i = 0; i < REDIS_SCRIPT__COUNT; i++)
        if (sha1_hex(script_text[i], p->sha[i]) < 0) {
            snprintf(err, errlen, "cannot compute SHA-1 (OpenSSL)");
            return redis_pool_free(p);
        }
    p->links = calloc((size_t)n_workers, sizeof(*p->links));
    if (!p->links) {
        snprintf(err, errlen, "out of memory");
        return redis_pool_free(p);
    }
    p->n_links = n_workers;
    for (int i = 0; i < n_workers; i++) {
        struct redis_link *l = &p->links[i];
        l->pool = p;
        l->w = workers[i];
        l->index = i;
        l->fdw.fd = -1;
        l->fdw.ready = on_ready;
        l->beat.done = on_beat_reply;
        timer_init(&l->retry_timer, on_retry_timer, l);
        timer_init(&l->connect_timer, on_connect_timeout, l);
        timer_init(&l->beat_timer, on_beat_timer, l);
    }
    return p;
}

static void start_link(struct worker *w, void *arg)
{
    (void)w;
    struct redis_link *l = arg;
    link_connect(l);
    if (l->index == 0) {
        /* The first beat as soon as the link is up, then every REDIS_BEAT_MS. */
        timerheap_arm(worker_timers(l->w), &l->beat_timer, worker_now_ms(l->w) + 100);
    }
}

void redis_pool_start(struct redis_pool *p)
{
    for (int i = 0; i < p->n_links; i++)
        worker_post(p->links[i].w, start_link, &p->links[i]);
}

struct redis_pool *redis_pool_free(struct redis_pool *p)
{
    if (!p)
        return NULL;
    for (int i = 0; p->links && i < p->n_links; i++) {
        struct redis_link *l = &p->links[i];
        struct timerheap *th = worker_timers(l->w);
        timerheap_cancel(th, &l->retry_timer);
        timerheap_cancel(th, &l->connect_timer);
        timerheap_cancel(th, &l->beat_timer);
        /* Nobody hears the answers any more. */
        for (struct redis_pending *pd = l->pending; pd; pd = pd->next) {
            timerheap_cancel(th, &pd->timer);
            if (pd->req)
                pd->req->pending = NULL;
            pd->req = NULL;
        }
        if (l->ac) {
            redisAsyncContext *ac = l->ac;
            ac->onDisconnect = NULL;
            ac->onConnect = NULL;
            l->ac = NULL;
            redisAsyncFree(ac); /* frees the pendings through on_reply(NULL) */
        }
    }
    free(p->links);
    explicit_bzero(&p->s.addr, sizeof(p->s.addr));
    free(p);
    return NULL;
}

struct redis_link *redis_pool_link(struct redis_pool *p, int worker_index)
{
    return p && worker_index >= 0 && worker_index < p->n_links ? &p->links[worker_index] : NULL;
}

bool redis_link_up(const struct redis_link *l)
{
    return l && atomic_load(&l->state) == LINK_UP;
}

const char *redis_pool_prefix(const struct redis_pool *p)
{
    return p->prefix;
}

const char *redis_pool_replica_id(const struct redis_pool *p)
{
    return p->replica_id;
}

enum redis_mode redis_pool_mode(const struct redis_pool *p)
{
    return (enum redis_mode)atomic_load(&p->mode);
}

int redis_pool_replicas(const struct redis_pool *p)
{
    return atomic_load(&p->replicas);
}

void redis_pool_stats(const struct redis_pool *p, struct redis_stats *ret)
{
    ret->commands = atomic_load(&p->commands);
    ret->errors = atomic_load(&p->errors);
    ret->timeouts = atomic_load(&p->timeouts);
    ret->reconnects = atomic_load(&p->reconnects);
    ret->links_up = atomic_load(&p->links_up);
}

bool redis_pool_drain_mode(struct redis_pool *p, enum redis_mode *ret_mode)
{
    int now = atomic_load(&p->mode);
    int was = atomic_exchange(&p->mode_reported, now);
    *ret_mode = (enum redis_mode)now;
    return was != now;
}

void redis_pool_on_replicas(struct redis_pool *p, void (*fn)(void *arg, int replicas), void *arg)
{
    p->on_replicas = fn;
    p->on_replicas_arg = arg;
}
