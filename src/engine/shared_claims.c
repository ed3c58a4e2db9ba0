/*
 * shared_claims.c — Idempotency-Keys and conversations in Redis (see
 * shared_claims.h).
 */
#include "agentd/shared_claims.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Hex SHA-256 of s: keys of a bounded size whatever the client sent. */
static void sha_hex(const char *s, char out[2 * IDEM_FINGERPRINT_BYTES + 1])
{
    unsigned char md[IDEM_FINGERPRINT_BYTES];
    idem_fingerprint(s, strlen(s), md);
    for (int i = 0; i < IDEM_FINGERPRINT_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void shared_idem_key(struct redis_pool *p, const char *scoped_key, char ret[SHARED_KEY_MAX])
{
    char h[2 * IDEM_FINGERPRINT_BYTES + 1];
    sha_hex(scoped_key, h);
    snprintf(ret, SHARED_KEY_MAX, "%s{idem:%s}", redis_pool_prefix(p), h);
}

void shared_conv_keys(struct redis_pool *p, const char *scoped_id, struct shared_conv_keys *ret)
{
    char h[2 * IDEM_FINGERPRINT_BYTES + 1];
    sha_hex(scoped_id, h);
    snprintf(ret->history, sizeof(ret->history), "%s{conv:%s}:h", redis_pool_prefix(p), h);
    snprintf(ret->lock, sizeof(ret->lock), "%s{conv:%s}:lock", redis_pool_prefix(p), h);
}

/* Runs script id with nkeys keys then the other arguments of argv (NULL-terminated). */
static int eval(struct redis_pool *p, int worker_index, enum redis_script_id id, int nkeys,
                const char *const *argv, struct redis_req *req)
{
    size_t lens[12];
    int argc = 0;
    for (; argv[argc] && argc < 12; argc++)
        lens[argc] = strlen(argv[argc]);
    if (!p)
        return -ENOTCONN;
    return redis_eval(redis_pool_link(p, worker_index), id, nkeys, argc, argv, lens, req);
}

static void num(char *buf, size_t cap, int64_t v)
{
    snprintf(buf, cap, "%lld", (long long)v);
}

int shared_idem_claim(struct redis_pool *p, int worker_index, const char *key,
                      const unsigned char fp[IDEM_FINGERPRINT_BYTES], const char *owner,
                      int64_t lease_ms, int64_t ttl_ms, struct redis_req *req)
{
    char fph[2 * IDEM_FINGERPRINT_BYTES + 1], lease[24], ttl[24];
    for (int i = 0; i < IDEM_FINGERPRINT_BYTES; i++)
        snprintf(fph + 2 * i, 3, "%02x", fp[i]);
    num(lease, sizeof(lease), lease_ms);
    num(ttl, sizeof(ttl), ttl_ms > 0 ? ttl_ms : 1);
    return eval(p, worker_index, REDIS_IDEM_CLAIM, 1,
                (const char *[]){key, fph, owner, lease, ttl, NULL}, req);
}

static bool is_int(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER;
}

enum shared_idem_verdict shared_idem_answer(int err, const redisReply *reply,
                                            int64_t *ret_retry_after_ms, int *ret_status,
                                            char **ret_body)
{
    if (err != 0 || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        !is_int(reply->element[0]))
        return SHARED_IDEM_UNAVAILABLE;
    switch (reply->element[0]->integer) {
    case 0:
        return SHARED_IDEM_CLAIMED;
    case 1:
        if (reply->elements != 2 || !is_int(reply->element[1]))
            return SHARED_IDEM_UNAVAILABLE;
        *ret_retry_after_ms = reply->element[1]->integer > 0 ? reply->element[1]->integer : 1;
        return SHARED_IDEM_RUNNING;
    case 2:
        return SHARED_IDEM_MISMATCH;
    case 3:
        if (reply->elements != 3 || !is_int(reply->element[1]) ||
            reply->element[2]->type != REDIS_REPLY_STRING)
            return SHARED_IDEM_UNAVAILABLE;
        *ret_status = (int)reply->element[1]->integer;
        *ret_body = strndup(reply->element[2]->str, reply->element[2]->len);
        return SHARED_IDEM_REPLAY;
    case 4:
        if (reply->elements != 2 || reply->element[1]->type != REDIS_REPLY_STRING)
            return SHARED_IDEM_UNAVAILABLE;
        *ret_body = strndup(reply->element[1]->str, reply->element[1]->len);
        return SHARED_IDEM_TAKEOVER;
    default:
        return SHARED_IDEM_UNAVAILABLE;
    }
}

void shared_idem_renew(struct redis_pool *p, int worker_index, const char *key, const char *owner,
                       int64_t lease_ms)
{
    char lease[24];
    num(lease, sizeof(lease), lease_ms);
    eval(p, worker_index, REDIS_IDEM_RENEW, 1, (const char *[]){key, owner, lease, NULL}, NULL);
}

int shared_idem_checkpoint(struct redis_pool *p, int worker_index, const char *key,
                           const char *owner, int64_t lease_ms, const char *checkpoint, size_t len)
{
    char lease[24];
    num(lease, sizeof(lease), lease_ms);
    const char *argv[] = {key, owner, lease, checkpoint};
    size_t lens[] = {strlen(key), strlen(owner), strlen(lease), len};
    if (!p)
        return -ENOTCONN;
    return redis_eval(redis_pool_link(p, worker_index), REDIS_IDEM_CHECKPOINT, 1, 4, argv, lens,
                      NULL);
}

int shared_idem_release(struct redis_pool *p, int worker_index, const char *key, const char *owner,
                        struct redis_req *req)
{
    return eval(p, worker_index, REDIS_IDEM_RELEASE, 1, (const char *[]){key, owner, NULL}, req);
}

int shared_idem_finish(struct redis_pool *p, int worker_index, const char *key, const char *owner,
                       int status, const char *body, int64_t ttl_ms, struct redis_req *req)
{
    char st[16], ttl[24];
    if (!body)
        return eval(p, worker_index, REDIS_IDEM_ABANDON, 1, (const char *[]){key, owner, NULL},
                    req);
    num(st, sizeof(st), status);
    num(ttl, sizeof(ttl), ttl_ms > 0 ? ttl_ms : 1);
    return eval(p, worker_index, REDIS_IDEM_COMPLETE, 1,
                (const char *[]){key, owner, st, body, ttl, NULL}, req);
}

int shared_conv_acquire(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                        const char *owner, int64_t lease_ms, struct redis_req *req)
{
    char lease[24];
    num(lease, sizeof(lease), lease_ms);
    return eval(p, worker_index, REDIS_CONV_ACQUIRE, 2,
                (const char *[]){k->history, k->lock, owner, lease, NULL}, req);
}

enum shared_conv_verdict shared_conv_answer(int err, const redisReply *reply, int64_t *ret_version,
                                            json_t **ret_history)
{
    if (err != 0 || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        !is_int(reply->element[0]) || !is_int(reply->element[1]))
        return SHARED_CONV_UNAVAILABLE;
    *ret_version = reply->element[1]->integer;
    if (reply->element[0]->integer == 1) {
        if (*ret_version < 1)
            *ret_version = 1;
        return SHARED_CONV_BUSY;
    }
    if (reply->element[0]->integer != 0 || reply->elements != 3 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return SHARED_CONV_UNAVAILABLE;
    json_t *h = reply->element[2]->len == 0
                    ? json_array()
                    : json_loadb(reply->element[2]->str, reply->element[2]->len, 0, NULL);
    if (!json_is_array(h)) {
        json_decref(h);
        return SHARED_CONV_UNAVAILABLE;
    }
    *ret_history = h;
    return SHARED_CONV_ACQUIRED;
}

void shared_conv_renew(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                       const char *owner, int64_t lease_ms)
{
    char lease[24];
    num(lease, sizeof(lease), lease_ms);
    eval(p, worker_index, REDIS_CONV_RENEW, 1, (const char *[]){k->lock, owner, lease, NULL}, NULL);
}

int shared_conv_commit(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                       const char *owner, int64_t version, const char *history, int64_t ttl_ms,
                       struct redis_req *req)
{
    char v[24], ttl[24];
    num(v, sizeof(v), version);
    num(ttl, sizeof(ttl), ttl_ms > 0 ? ttl_ms : 1);
    return eval(p, worker_index, REDIS_CONV_COMMIT, 2,
                (const char *[]){k->history, k->lock, owner, v, history, ttl, NULL}, req);
}

int shared_conv_committed(int err, const redisReply *reply)
{
    if (err != 0 || !is_int(reply))
        return -2;
    return reply->integer == 1 ? 1 : reply->integer == 0 ? 0 : -1;
}

void shared_conv_release(struct redis_pool *p, int worker_index, const struct shared_conv_keys *k,
                         const char *owner)
{
    eval(p, worker_index, REDIS_CONV_RELEASE, 1, (const char *[]){k->lock, owner, NULL}, NULL);
}
