/*
 * idempotency.c — bounded in-memory Idempotency-Key store (see idempotency.h).
 * Entries sit in a hash table (chained) and in a FIFO by first use, which is
 * also expiry order since every entry lives ttl_ms from its first use.
 */
#include "agentd/idempotency.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#define IDEM_BUCKETS      4096
#define IDEM_SECRET_BYTES 16

struct entry {
    char *key;
    unsigned char fp[IDEM_FINGERPRINT_BYTES];
    int64_t created_ms;
    bool done;
    int status;
    char *body;
    struct entry *chain;         /* next in bucket */
    struct entry *older, *newer; /* FIFO */
};

struct idem_store {
    pthread_mutex_t lock;
    size_t max_entries, count;
    int64_t ttl_ms;
    unsigned char secret[IDEM_SECRET_BYTES];
    struct entry *buckets[IDEM_BUCKETS];
    struct entry *oldest, *newest;
};

void idem_fingerprint(const void *body, size_t len, unsigned char ret[IDEM_FINGERPRINT_BYTES])
{
    unsigned int n = 0;
    EVP_Digest(body, len, ret, &n, EVP_sha256(), NULL);
}

static size_t bucket_of(const struct idem_store *s, const char *key)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t b = 0;
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
        EVP_DigestUpdate(ctx, s->secret, sizeof(s->secret)) &&
        EVP_DigestUpdate(ctx, key, strlen(key)) && EVP_DigestFinal_ex(ctx, h, &n) && n >= 8) {
        uint64_t v;
        memcpy(&v, h, sizeof(v));
        b = (size_t)(v % IDEM_BUCKETS);
    }
    EVP_MD_CTX_free(ctx);
    return b;
}

struct idem_store *idem_store_new(size_t max_entries, int64_t ttl_ms)
{
    struct idem_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (getrandom(s->secret, sizeof(s->secret), 0) != (ssize_t)sizeof(s->secret)) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->max_entries = max_entries;
    s->ttl_ms = ttl_ms;
    return s;
}

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e->body);
    free(e);
}

/* Unlinks e from its bucket and the FIFO and frees it. Lock held. */
static void remove_entry(struct idem_store *s, struct entry *e)
{
    struct entry **p = &s->buckets[bucket_of(s, e->key)];
    while (*p && *p != e)
        p = &(*p)->chain;
    if (*p)
        *p = e->chain;
    if (e->older)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    s->count--;
    entry_free(e);
}

struct idem_store *idem_store_free(struct idem_store *s)
{
    if (!s)
        return NULL;
    while (s->oldest)
        remove_entry(s, s->oldest);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

static struct entry *find(struct idem_store *s, const char *key)
{
    for (struct entry *e = s->buckets[bucket_of(s, key)]; e; e = e->chain)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* Drops expired entries (finished ones only: a running request keeps its key). Lock held. */
static void expire(struct idem_store *s, int64_t now_ms)
{
    while (s->oldest && s->oldest->done && now_ms - s->oldest->created_ms >= s->ttl_ms)
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
    pthread_mutex_lock(&s->lock);
    expire(s, now_ms);
    struct entry *e = find(s, key);
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
        if (!s->oldest || !s->oldest->done) {
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
    size_t b = bucket_of(s, key);
    e->chain = s->buckets[b];
    s->buckets[b] = e;
    e->older = s->newest;
    if (s->newest)
        s->newest->newer = e;
    else
        s->oldest = e;
    s->newest = e;
    s->count++;
    pthread_mutex_unlock(&s->lock);
    return IDEM_NEW;
}

void idem_complete(struct idem_store *s, const char *key, int status, const char *body)
{
    char *copy = idem_status_replayable(status) && body ? strdup(body) : NULL;
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, key);
    if (e && !e->done) {
        if (copy) {
            e->done = true;
            e->status = status;
            e->body = copy;
            copy = NULL;
        } else {
            remove_entry(s, e);
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(copy);
}

void idem_abandon(struct idem_store *s, const char *key)
{
    pthread_mutex_lock(&s->lock);
    struct entry *e = find(s, key);
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
