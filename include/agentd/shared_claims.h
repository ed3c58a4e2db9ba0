/*
 * shared_claims.h — what a run claims in Redis so the claim holds on every
 * replica: its Idempotency-Key (claimed, renewed while it runs, then completed
 * with the answer to replay or abandoned) and its conversation (one turn at a
 * time, the history read at the start and committed at the end with a version
 * check). The scripts are redis_scripts.h's; this file builds their keys and
 * arguments and reads their answers.
 *
 * Keys: prefix + "{idem:<sha256 of the caller-scoped key>}", and prefix +
 * "{conv:<sha256 of the caller-scoped id>}:h" / ":lock" (one hash tag per
 * conversation, so its two keys live together on Redis Cluster too).
 *
 * Threads: every function on the worker whose index it is given. Nothing here
 * logs. Memory: *ret_body and *ret_history are the caller's.
 */
#ifndef AGENTD_SHARED_CLAIMS_H
#define AGENTD_SHARED_CLAIMS_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "agentd/idempotency.h" /* IDEM_FINGERPRINT_BYTES */
#include "agentd/redis.h"

/* A claim lasts this long unless renewed; a running claim is renewed every SHARED_RENEW_MS, so
   a replica that dies frees its keys and conversations within SHARED_LEASE_MS. */
#define SHARED_LEASE_MS  15000
#define SHARED_RENEW_MS  5000
#define SHARED_KEY_MAX   (64 + 80)
#define SHARED_OWNER_MAX (REDIS_REPLICA_ID_BYTES + 48)

struct shared_conv_keys {
    char history[SHARED_KEY_MAX];
    char lock[SHARED_KEY_MAX];
};

void shared_idem_key(struct redis_pool *p, const char *scoped_key, char ret[SHARED_KEY_MAX]);
void shared_conv_keys(struct redis_pool *p, const char *scoped_id, struct shared_conv_keys *ret);

/* 0: req->done() follows; < 0: nothing was asked (use the local store). */
int shared_idem_claim(struct redis_pool *p, int worker_index, const char *key,
                      const unsigned char fp[IDEM_FINGERPRINT_BYTES], const char *owner,
                      int64_t lease_ms, int64_t ttl_ms, struct redis_req *req);
enum shared_idem_verdict {
    SHARED_IDEM_CLAIMED,     /* the run goes on, holding the key */
    SHARED_IDEM_RUNNING,     /* *ret_retry_after_ms: the claim's lease left */
    SHARED_IDEM_MISMATCH,    /* used with another body */
    SHARED_IDEM_REPLAY,      /* *ret_status, *ret_body (malloc'd; NULL on ENOMEM) */
    SHARED_IDEM_TAKEOVER,    /* the owner's lease lapsed: the run is ours from *ret_body, its
                                checkpoint (malloc'd, "" when none; NULL on ENOMEM) */
    SHARED_IDEM_UNAVAILABLE, /* no usable answer: use the local store */
};
enum shared_idem_verdict shared_idem_answer(int err, const redisReply *reply,
                                            int64_t *ret_retry_after_ms, int *ret_status,
                                            char **ret_body);
void shared_idem_renew(struct redis_pool *p, int worker_index, const char *key, const char *owner,
                       int64_t lease_ms);
/* A completed step's checkpoint (and the lease renewed). 0 sent (fire and forget), < 0 not. */
int shared_idem_checkpoint(struct redis_pool *p, int worker_index, const char *key,
                           const char *owner, int64_t lease_ms, const char *checkpoint, size_t len);
/* Lets go of a running key now (shutdown): the next request takes the run over at once. 0:
   req->done() follows; < 0: not sent. */
int shared_idem_release(struct redis_pool *p, int worker_index, const char *key, const char *owner,
                        struct redis_req *req);
/* body NULL: abandon (the key runs again); else store status/body for ttl_ms. req NULL: fire and
   forget; else 0 means req->done() follows (the answer is stored, or could not be). */
int shared_idem_finish(struct redis_pool *p, int worker_index, const char *key, const char *owner,
                       int status, const char *body, int64_t ttl_ms, struct redis_req *req);

int shared_conv_acquire(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                        const char *owner, int64_t lease_ms, struct redis_req *req);
enum shared_conv_verdict {
    SHARED_CONV_ACQUIRED,    /* *ret_version, *ret_history (a new array, maybe empty) */
    SHARED_CONV_BUSY,        /* *ret_version: ms until the other run's lease ends */
    SHARED_CONV_UNAVAILABLE, /* no usable answer (or a stored history that is not an array) */
};
enum shared_conv_verdict shared_conv_answer(int err, const redisReply *reply, int64_t *ret_version,
                                            json_t **ret_history);
void shared_conv_renew(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                       const char *owner, int64_t lease_ms);
/* history: the turn's trimmed history, JSON text. 0: req->done() follows (read it with
   shared_conv_committed); < 0: not sent. */
int shared_conv_commit(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                       const char *owner, int64_t version, const char *history, int64_t ttl_ms,
                       struct redis_req *req);
/* 1 committed, 0 the lock had been lost, -1 another turn committed first, -2 no answer. */
int shared_conv_committed(int err, const redisReply *reply);
void shared_conv_release(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                         const char *owner);

#endif
