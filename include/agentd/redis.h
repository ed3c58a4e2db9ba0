/*
 * redis.h — agentd's Redis client: one asynchronous connection (a link) per
 * worker, driven by that worker's own epoll loop and timer heap, so no worker
 * ever blocks on Redis. Scripts (redis_scripts.h) are run with EVALSHA and
 * sent again as EVAL when Redis answers NOSCRIPT (a restart, a failover, a
 * SCRIPT FLUSH). Every command has the pool's timeout; a link whose commands
 * keep timing out, or whose connection breaks, is dropped and reconnected
 * with jittered exponential backoff (50 ms doubling up to 1 s), so Redis is
 * used again within about a second of coming back. Host names are resolved
 * on the I/O pool, never on a worker.
 *
 * What a link answers is all the state there is: a caller asks
 * redis_link_up() and, when the link is down or the command fails or times
 * out, uses its own local fallback. Nothing here logs; the pool counts what
 * happens (redis_pool_stats) and its mode changes are drained by the owner
 * for one log line each.
 *
 * The pool also keeps this replica in a small registry of live replicas
 * (redis_pool_replicas()), refreshed every REDIS_BEAT_MS by link 0, so a
 * replica falling back to local limits can take its share of a cluster-wide
 * rate.
 *
 * Threads: redis_pool_new/start/free on the thread that owns the app;
 * redis_pool_start after the workers run, redis_pool_free after they are
 * stopped (it then uses their state from the calling thread, see worker.h).
 * A link, its requests and redis_eval only on the link's worker thread.
 * redis_pool_mode, _replicas, _stats, _drain_mode from any thread.
 *
 * Memory: the pool owns the links; a struct redis_req is the caller's and
 * must stay alive until its done() ran or redis_req_cancel() was called.
 */
#ifndef AGENTD_REDIS_H
#define AGENTD_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "agentd/url.h"

struct worker;
struct io_pool;
struct redis_pool;
struct redis_link;

/* How often link 0 refreshes this replica in the registry, and when a silent one is dropped. */
#define REDIS_BEAT_MS        1000
#define REDIS_REPLICA_TTL_MS 5000
/* Timeouts in a row after which a link is dropped and reconnected. */
#define REDIS_TIMEOUTS_TO_DROP 3
#define REDIS_BACKOFF_MIN_MS   50
#define REDIS_BACKOFF_MAX_MS   1000
/* The longest replica id kept (longer ones are cut). */
#define REDIS_REPLICA_ID_BYTES 128

enum redis_script_id {
    REDIS_LIMIT_TAKE = 0,
    REDIS_LIMIT_PAUSE,
    REDIS_LIMIT_PROBE_DONE,
    REDIS_REGISTRY_BEAT,
    REDIS_SPEND_RESERVE,
    REDIS_SPEND_SETTLE,
    REDIS_IDEM_CLAIM,
    REDIS_IDEM_RENEW,
    REDIS_IDEM_CHECKPOINT,
    REDIS_IDEM_RELEASE,
    REDIS_IDEM_COMPLETE,
    REDIS_IDEM_ABANDON,
    REDIS_CONV_ACQUIRE,
    REDIS_CONV_RENEW,
    REDIS_CONV_COMMIT,
    REDIS_CONV_RELEASE,
    REDIS_SCRIPT__COUNT,
};

struct redis_settings {
    struct url_redis addr;  /* host, port, db, user, password (copied; wiped on free) */
    int64_t timeout_ms;     /* per command, >= 1 */
    const char *prefix;     /* every key starts with it (copied) */
    const char *replica_id; /* this replica in the registry, e.g. the pod name (copied) */
};

enum redis_mode {
    REDIS_MODE_SHARED = 0, /* every link is connected */
    REDIS_MODE_DEGRADED,   /* some or all links are down: their workers use local state */
};

struct redis_stats {
    uint64_t commands; /* answered (any reply, error replies included) */
    uint64_t errors;   /* error replies other than NOSCRIPT, and broken connections */
    uint64_t timeouts;
    uint64_t reconnects; /* links (re)connected */
    int links_up;
};

/* A command's owner. done(req, err, reply) runs on the link's worker, never from inside
   redis_eval(): err 0 with the reply (valid only during the call; an error reply has err
   -EPROTO and reply->str its text), -ETIMEDOUT, or -ENOTCONN (the link broke). */
struct redis_req {
    void (*done)(struct redis_req *req, int err, const redisReply *reply);
    void *pending; /* private */
};

/* NULL on ENOMEM or when a worker is missing (message in err). */
struct redis_pool *redis_pool_new(const struct redis_settings *s, struct worker *const *workers,
                                  int n_workers, struct io_pool *io, char *err, size_t errlen);
/* Connects every link (posted to its worker). */
void redis_pool_start(struct redis_pool *p);
/* After the workers stopped: drops every connection (no done() is called any more) and frees.
   NULL is fine; returns NULL. */
struct redis_pool *redis_pool_free(struct redis_pool *p);

/* Worker-thread only: that worker's link, and whether it is connected now. */
struct redis_link *redis_pool_link(struct redis_pool *p, int worker_index);
bool redis_link_up(const struct redis_link *l);

/* The key prefix (for building keys; "agentd:" by default). */
const char *redis_pool_prefix(const struct redis_pool *p);
/* This replica's id in the registry (also what owns its claims). */
const char *redis_pool_replica_id(const struct redis_pool *p);

/*
 * Runs script id with nkeys keys then the other arguments (argv[0..argc), lengths in lens, all
 * copied). req NULL: fire and forget. 0, or -ENOTCONN (link not up: nothing was sent, done will
 * not run) or -ENOMEM.
 */
int redis_eval(struct redis_link *l, enum redis_script_id id, int nkeys, int argc,
               const char *const *argv, const size_t *lens, struct redis_req *req);
/* The command's answer is no longer wanted: done() will not run. A no-op when none is pending. */
void redis_req_cancel(struct redis_req *req);

/* Any thread. */
enum redis_mode redis_pool_mode(const struct redis_pool *p);
/* Replicas alive at the last registry beat (>= 1; 1 before the first). */
int redis_pool_replicas(const struct redis_pool *p);
void redis_pool_stats(const struct redis_pool *p, struct redis_stats *ret);
/* True once per mode change since the last call, with the mode now in *ret_mode. */
bool redis_pool_drain_mode(struct redis_pool *p, enum redis_mode *ret_mode);
/* Called on link 0's worker after each registry beat with the replicas alive (set before
   redis_pool_start). */
void redis_pool_on_replicas(struct redis_pool *p, void (*fn)(void *arg, int replicas), void *arg);

#endif
