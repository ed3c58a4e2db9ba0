/*
 * fake_limits.c — what the fake's POST /v1/messages adds on top of the rule-based model, like
 * the real API: a rate limit that answers with the anthropic-ratelimit-requests-* headers (and
 * 429 once spent), and a prompt cache that reports cache_creation_input_tokens /
 * cache_read_input_tokens for requests with cache_control breakpoints. Thread-safe (one mutex
 * each).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_upstream.h"

/* ---- rate limit ------------------------------------------------------ */

struct fake_ratelimit {
    pthread_mutex_t lock;
    int64_t limit;     /* bucket size (requests); 0 = off */
    int64_t window_ms; /* time to refill the whole bucket */
    double tokens;     /* requests available at last_ms */
    int64_t last_ms;   /* wall clock (epoch ms) */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct fake_ratelimit *fake_ratelimit_new(void)
{
    struct fake_ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl)
        pthread_mutex_init(&rl->lock, NULL);
    return rl;
}

struct fake_ratelimit *fake_ratelimit_free(struct fake_ratelimit *rl)
{
    if (rl) {
        pthread_mutex_destroy(&rl->lock);
        free(rl);
    }
    return NULL;
}

void fake_ratelimit_set(struct fake_ratelimit *rl, int64_t requests, int64_t window_ms)
{
    pthread_mutex_lock(&rl->lock);
    rl->limit = requests;
    rl->window_ms = window_ms;
    rl->tokens = (double)requests;
    rl->last_ms = wall_ms();
    pthread_mutex_unlock(&rl->lock);
}

/* RFC 3339 with milliseconds, UTC. */
static json_t *rfc3339(int64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char buf[48];
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

int fake_ratelimit_take(struct fake_ratelimit *rl, json_t **ret_headers)
{
    int64_t now = wall_ms();
    pthread_mutex_lock(&rl->lock);
    if (rl->limit <= 0) {
        pthread_mutex_unlock(&rl->lock);
        return 0;
    }
    /* Refills continuously, limit per window_ms, like the API's token buckets. */
    double rate = (double)rl->limit / (double)rl->window_ms; /* requests per ms */
    rl->tokens += (double)(now - rl->last_ms) * rate;
    if (rl->tokens > (double)rl->limit)
        rl->tokens = (double)rl->limit;
    rl->last_ms = now;
    bool allowed = rl->tokens >= 1;
    if (allowed)
        rl->tokens -= 1;
    int64_t remaining = (int64_t)rl->tokens, limit = rl->limit;
    /* Full again at reset; one more request after wait. */
    int64_t end = now + (int64_t)(((double)limit - rl->tokens) / rate + 0.999);
    int64_t wait = (int64_t)((1 - rl->tokens) / rate + 0.999);
    pthread_mutex_unlock(&rl->lock);
    json_t *h = json_object();
    if (h) {
        json_object_set_new(h, "anthropic-ratelimit-requests-limit",
                            json_sprintf("%" PRId64, limit));
        json_object_set_new(h, "anthropic-ratelimit-requests-remaining",
                            json_sprintf("%" PRId64, remaining));
        json_object_set_new(h, "anthropic-ratelimit-requests-reset", rfc3339(end));
        if (!allowed)
            json_object_set_new(h, "retry-after", json_sprintf("%" PRId64, (wait + 999) / 1000));
    }
    *ret_headers = h;
    return allowed ? 0 : -EAGAIN;
}

/* ---- prompt cache ---------------------------------------------------- */

struct cache_entry {
    uint64_t hash;
    uint64_t expires_ms;
};

struct fake_cache {
    pthread_mutex_t lock;
    struct cache_entry items[FAKE_CACHE_ENTRIES];
    size_t next; /* ring: the oldest entry is overwritten */
};

struct fake_cache *fake_cache_new(void)
{
    struct fake_cache *c = calloc(1, sizeof(*c));
    if (c)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

struct fake_cache *fake_cache_free(struct fake_cache *c)
{
    if (c) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
    return NULL;
}

/* FNV-1a, continued from h. */
static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* One cacheable prefix: its hash and size when a breakpoint ends it. */
struct prefix_walk {
    uint64_t hash;
    size_t bytes;
    uint64_t bp_hash[8];
    size_t bp_bytes[8];
    size_t n_bp;
};

/* Adds one element (a tool, a system block, a message block) to the prefix; its cache_control is
   not part of what is cached, and a string content counts as its text block. */
static void walk_add(struct prefix_walk *w, const char *role, const json_t *el)
{
    json_t *copy = json_is_string(el) ? json_pack("{s:s,s:O}", "type", "text", "text", el)
                                      : json_copy((json_t *)el);
    bool breakpoint = json_is_object(el) && json_object_get(el, "cache_control") &&
                      !json_is_null(json_object_get(el, "cache_control"));
    json_object_del(copy, "cache_control");
    char *s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(copy);
    if (role)
        w->hash = fnv(w->hash, role, strlen(role));
    if (s) {
        w->hash = fnv(w->hash, s, strlen(s));
        w->bytes += strlen(s);
        free(s);
    }
    if (breakpoint && w->n_bp < 8) {
        w->bp_hash[w->n_bp] = w->hash;
        w->bp_bytes[w->n_bp] = w->bytes;
        w->n_bp++;
    }
}

static void walk_content(struct prefix_walk *w, const char *role, const json_t *content)
{
    size_t i;
    const json_t *b;
    if (!json_is_array(content)) {
        if (content)
            walk_add(w, role, content);
        return;
    }
    json_array_foreach(content, i, b) walk_add(w, i == 0 ? role : NULL, b);
}

static bool cache_hit(struct fake_cache *c, uint64_t hash, uint64_t now)
{
    for (size_t i = 0; i < FAKE_CACHE_ENTRIES; i++)
        if (c->items[i].hash == hash && c->items[i].expires_ms > now) {
            c->items[i].expires_ms = now + FAKE_CACHE_TTL_MS; /* a read refreshes it */
            return true;
        }
    return false;
}

void fake_cache_usage(struct fake_cache *c, const json_t *body, int64_t *ret_creation,
                      int64_t *ret_read)
{
    struct prefix_walk w = {.hash = 1469598103934665603ULL};
    size_t i;
    const json_t *el;
    json_array_foreach(json_object_get(body, "tools"), i, el) walk_add(&w, "tool", el);
    walk_content(&w, "system", json_object_get(body, "system"));
    json_array_foreach(json_object_get(body, "messages"), i, el) walk_content(
        &w, json_string_value(json_object_get(el, "role")), json_object_get(el, "content"));
    *ret_creation = *ret_read = 0;
    if (w.n_bp == 0)
        return;
    uint64_t now = fake_clock_ms();
    size_t read_bytes = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t k = 0; k < w.n_bp; k++)
        if (cache_hit(c, w.bp_hash[k], now) && w.bp_bytes[k] > read_bytes)
            read_bytes = w.bp_bytes[k];
    for (size_t k = 0; k < w.n_bp; k++) {
        if (w.bp_bytes[k] <= read_bytes)
            continue;
        c->items[c->next] = (struct cache_entry){w.bp_hash[k], now + FAKE_CACHE_TTL_MS};
        c->next = (c->next + 1) % FAKE_CACHE_ENTRIES;
    }
    pthread_mutex_unlock(&c->lock);
    /* Tokens as the rest of the fake counts them: 4 bytes each. */
    *ret_read = (int64_t)(read_bytes / 4);
    *ret_creation = (int64_t)((w.bp_bytes[w.n_bp - 1] - read_bytes) / 4);
}
