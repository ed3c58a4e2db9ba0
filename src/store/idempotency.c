/*
 * idempotency.c — bounded in-memory Idempotency-Key store (see idempotency.h).
 * Every entry sits in a hash table (chained). Finished entries also sit in a
 * list in the order they finished: the next to evict is its head, O(1), and
 * running entries are on no list, so they can never stand in the way of
 * eviction. That order is expiry order too, up to the length of a run (an
 * entry lives ttl_ms from its first use), which is why lookups also check
 * each entry's own age.
 */
#include "agentd/idempotency.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "agentd/siphash.h"

#define IDEM_BUCKETS      4096
#define IDEM_SECRET_BYTES 16

struct entry {
    char *key;
    size_t bucket; /* of key, computed once */
    unsigned char fp[IDEM_FINGERPRINT_BYTES];
    int64_t created_ms;
    bool done;
    int status;
    char *body;
    size_t body_bytes;           /* strlen(body) */
    struct entry *chain;         /* next in bucket */
    struct entry *older, *newer; /* finished list; both NULL while running */
};

struct idem_store {
    pthread_mutex_t lock;
    size_t max_entries, count;
    size_t max_bytes, bytes; /* bytes: body_bytes summed over finished entries */
    int64_t ttl_ms;
    uint64_t secret[IDEM_SECRET_BYTES / sizeof(uint64_t)];
    struct entry *buckets[IDEM_BUCKETS];
    struct entry *oldest, *newest; /* finished entries, in the order they finished */
};

int idem_fingerprint(const void *body, size_t len, unsigned char ret[IDEM_FINGERPRINT_BYTES])
{
    unsigned int n = 0;
    if (EVP_Digest(body, len, ret, &n, EVP_sha256(), NULL) != 1 || n != IDEM_FINGERPRINT_BYTES) {
        memset(ret, 0, IDEM_FINGERPRINT_BYTES);
        return -ENOMEM;
    }
    return 0;
}

static bool fingerprint_is_zero(const unsigned char fp[IDEM_FINGERPRINT_BYTES])
{
    unsigned char any = 0;
    for (size_t i = 0; i < IDEM_FINGERPRINT_BYTES; i++)
        any |= fp[i];
    return any == 0;
}

static size_t bucket_of(const struct idem_store *s, const char *key)
{
    return (size_t)(siphash24(s->secret, key, strlen(key)) % IDEM_BUCKETS);
}

struct idem_store *idem_store_new(size_t max_entries, size_t max_bytes, int64_t ttl_ms)
{
    struct idem_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (getrandom(s->secret, sizeof(s->secret), 0) != (ssize_t)sizeof(s->secret)) {
        free(s);
        return NULL;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->max_entries = max_entries;
    s->max_bytes = max_bytes;
    s->ttl_ms = ttl_ms;
    return s;
}

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e->body);
    free(e);
}

/* Appends a newly finished entry to the finished list. Lock held. */
static void finished_push(struct idem_store *s, struct entry *e)
{
    e->older = s->newest;
    e->newer = NULL;
    if (s->newest)
        s->newest->newer = e;
    else
        s->oldest = e;
    s->newest = e;
    s->bytes += e->body_bytes;
}

/* Unlinks e from its bucket and, when finished, from the finished list, and frees it. Lock
 * held. */
static void remove_entry(struct idem_store *s, struct entry *e)
{
    struct entry **p = &s->buckets[e->bucket];
    while (*p && *p != e)
        p = &(*p)->chain;
    if (*p)
        *p = e->chain;
    if (e->done) {
        if (e->older)
            e->older->newer = e->newer;
        else
            s->oldest = e->newer;
        if (e->newer)
            e->newer->older = e->older;
        else
            s->newest = e->older;
        s->bytes -= e->body_bytes;
    }
    s->count--;
    entry_free(e);
}

struct idem_store *idem_store_free(struct idem_store *s)
{
    if (!s)
        return NULL;
    for (size_t b = 0; b < IDEM_BUCKETS; b++)
        while (s->buckets[b])
            remove_entry(s, s->buckets[b]);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

static struct entry *find(struct idem_store *s, size_t bucket, const char *key)
{
    for (struct entry *e = s->buckets[bucket]; e; e = e->chain)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Finished and past its ttl (a running request keeps its key however old). */
static bool expired(const struct idem_store *s, const struct entry *e, int64_t now_ms)
{
    return e->done && now_ms - e->created_ms >= s->ttl_ms;
}

/* Drops the expired entries at the old end of the finished list. The list is in the order
 * entries finished, not started, so an expired entry can sit behind one that is not yet:
 * lookups check each entry's own expiry too. Lock held. */
static void expire(struct idem_store *s, int64_t now_ms)
{
    while (s->oldest && expired(s, s->oldest, now_ms))
        remove_entry(s, s->oldest);
}

int idem_status_replayable(int status)
{
    return (status >= 200 && status < 300) ||
           (status >= 400 && status < 500 && status != 409 && status != 429) || status == 502;
}

enum idem_begin_result idem_begin(struct idem_store *s, const char *key,
                                  const unsigned char fp[IDEM_FINGERPRINT_BYTES], int64_t now_ms,
                                  int *ret_status, char **ret_body)
{
    enum idem_begin_result r;
    /* All zeros is what idem_fingerprint() leaves when it fails: it cannot tell bodies apart. */
    if (fingerprint_is_zero(fp))
        return IDEM_FULL;
    size_t b = bucket_of(s, key);
    pthread_mutex_lock(&s->lock);
    expire(s, now_ms);
    struct entry *e = find(s, b, key);
    if (e && expired(s, e, now_ms)) {
        remove_entry(s, e);
        e = NULL;
    }
    if (e) {
        if (memcmp(e->fp, fp, IDEM_FINGERPRINT_BYTES) != 0) {
            r = IDEM_MISMATCH;
        } else if (!e->done) {
            r = IDEM_IN_PROGRESS;
        } else {
            r = IDEM_REPLAY;
            *ret_status = e->status;
            *ret_body = e->body ? strdup(e->body) : NULL;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    if (s->count >= s->max_entries) {
        /* Only when every entry is still running is there nothing to give up. */
        if (!s->oldest) {
            pthread_mutex_unlock(&s->lock);
            return IDEM_FULL;
        }
        remove_entry(s, s->oldest);
    }
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key))) {
        free(e);
        pthread_mutex_unlock(&s->lock);
        return IDEM_FULL;
    }
    memcpy(e->fp, fp, IDEM_FINGERPRINT_BYTES);
    e->created_ms = now_ms;
    e->bucket = b;
    e->chain = s->buckets[b];
    s->buckets[b] = e;
    s->count++;
    pthread_mutex_unlock(&s->lock);
    return IDEM_NEW;
}

/* The answer of a request that got IDEM_NEW, copied when it is to be replayed; NULL otherwise
 * (including ENOMEM). */
static char *replay_copy(const struct idem_store *s, int status, const char *body, size_t len)
{
    if (!body || !idem_status_replayable(status) || len > s->max_bytes / IDEM_MAX_ANSWER_SHARE)
        return NULL;
    return strndup(body, len);
}

void idem_complete(struct idem_store *s, const char *key, int status, const char *body)
{
    size_t len = body ? strlen(body) : 0;
    char *copy = replay_copy(s, status, body, len);
    size_t b = bucket_of(s, key);
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, b, key);
    if (e && !e->done) {
        if (copy) {
            /* Ends: the answer is at most a share of max_bytes, an empty list holds 0. */
            while (s->oldest && s->bytes + len > s->max_bytes)
                remove_entry(s, s->oldest);
            e->done = true;
            e->status = status;
            e->body = copy;
            e->body_bytes = len;
            copy = NULL;
            finished_push(s, e);
        } else {
            remove_entry(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(copy);
}

void idem_abandon(struct idem_store *s, const char *key)
{
    size_t b = bucket_of(s, key);
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, b, key);
    if (e && !e->done)
        remove_entry(s, e);
    pthread_mutex_unlock(&s->lock);
}

size_t idem_store_count(struct idem_store *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}
