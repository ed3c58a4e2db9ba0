/*
 * conversations.c — in-memory conversation store (see conversations.h).
 *
 * A chained hash table keyed by id plus an LRU list. An entry is either
 * stored (a run stored its history: it is on the LRU list, ordered by the
 * time that history was stored) or pending (created by an acquire whose run
 * has not stored anything yet: on no list, always busy). A stored entry
 * keeps its place on the list while a run holds it, so a run that fails
 * leaves it exactly where it was; eviction and sweep step over the busy
 * ones, which costs O(running conversations) at worst and O(1) usually.
 *
 * Histories are immutable once stored: a release swaps in a fresh copy. That
 * is what lets acquire copy the history after dropping the mutex — while an
 * entry is busy only its holder may replace it.
 */
#include "agentd/conversations.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "agentd/siphash.h"

#define CONV_ID_MAX_BYTES      192
#define CONV_MAX_CONVERSATIONS (1 << 20)
#define CONV_MIN_BUCKETS       16

struct conv_entry {
    char *id;
    uint64_t hash;
    json_t *messages;     /* owned, never modified in place */
    size_t bytes;         /* of messages, see message_bytes() */
    int64_t last_used_ms; /* when its history was stored */
    bool busy;
    bool stored; /* holds a history a run stored; on the LRU list exactly when set */
    struct conv_entry *chain_next;
    struct conv_entry *lru_prev, *lru_next;
};

struct conv_store {
    pthread_mutex_t lock;
    struct conv_entry **buckets;
    size_t bucket_mask;
    struct conv_entry *lru_head; /* most recently stored */
    struct conv_entry *lru_tail; /* least recently stored */
    size_t count;                /* entries, pending ones included */
    size_t n_stored;             /* entries with a stored history: at most max_conversations */
    size_t n_busy;               /* entries a run holds */
    size_t total_bytes;          /* bytes summed over stored entries */
    size_t max_conversations;
    size_t max_messages;
    size_t max_history_bytes; /* never above max_total_bytes: one history always fits */
    size_t max_total_bytes;
    int64_t ttl_ms;
    uint64_t hash_key[2]; /* random, so clients cannot pick ids that share a chain */
};

struct conv_store *conv_store_new(const struct conv_store_limits *limits)
{
    struct conv_store *s;
    size_t nbuckets = CONV_MIN_BUCKETS;

    if (!limits || limits->max_conversations < 0 ||
        limits->max_conversations > CONV_MAX_CONVERSATIONS || limits->ttl_ms < 1 ||
        limits->max_messages < 1 || limits->max_history_bytes < 1 || limits->max_total_bytes < 1)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    while (nbuckets < (size_t)limits->max_conversations) /* load factor <= 1 */
        nbuckets *= 2;
    s->buckets = calloc(nbuckets, sizeof(*s->buckets));
    if (!s->buckets || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s->buckets);
        free(s);
        return NULL;
    }
    s->bucket_mask = nbuckets - 1;
    s->max_conversations = (size_t)limits->max_conversations;
    s->max_messages = (size_t)limits->max_messages;
    s->max_total_bytes = limits->max_total_bytes;
    s->max_history_bytes = limits->max_history_bytes < limits->max_total_bytes
                               ? limits->max_history_bytes
                               : limits->max_total_bytes;
    s->ttl_ms = limits->ttl_ms;
    if (getrandom(s->hash_key, sizeof(s->hash_key), GRND_NONBLOCK) != sizeof(s->hash_key)) {
        /* No entropy yet (early boot): still correct, only less collision-resistant. */
        s->hash_key[0] = (uint64_t)(uintptr_t)s ^ 0x9e3779b97f4a7c15ULL;
        s->hash_key[1] = (uint64_t)(uintptr_t)s->buckets;
    }
    return s;
}

static void entry_free(struct conv_entry *e)
{
    if (!e)
        return;
    json_decref(e->messages);
    free(e->id);
    free(e);
}

/* Frees a list of entries linked through chain_next. */
static void entry_list_free(struct conv_entry *e)
{
    while (e) {
        struct conv_entry *next = e->chain_next;
        entry_free(e);
        e = next;
    }
}

struct conv_store *conv_store_free(struct conv_store *s)
{
    if (!s)
        return NULL;
    for (size_t b = 0; b <= s->bucket_mask; b++)
        entry_list_free(s->buckets[b]);
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

/* --- table and LRU primitives; callers hold s->lock --- */

static struct conv_entry *table_find(struct conv_store *s, uint64_t hash, const char *id)
{
    struct conv_entry *e = s->buckets[hash & s->bucket_mask];

    while (e && (e->hash != hash || strcmp(e->id, id) != 0))
        e = e->chain_next;
    return e;
}

static void table_insert(struct conv_store *s, struct conv_entry *e)
{
    struct conv_entry **head = &s->buckets[e->hash & s->bucket_mask];

    e->chain_next = *head;
    *head = e;
    s->count++;
}

static void table_remove(struct conv_store *s, struct conv_entry *e)
{
    struct conv_entry **pp = &s->buckets[e->hash & s->bucket_mask];

    while (*pp && *pp != e)
        pp = &(*pp)->chain_next;
    if (*pp) {
        *pp = e->chain_next;
        e->chain_next = NULL;
        s->count--;
    }
}

static void lru_unlink(struct conv_store *s, struct conv_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else if (s->lru_head == e)
        s->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else if (s->lru_tail == e)
        s->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_head(struct conv_store *s, struct conv_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = e;
    s->lru_head = e;
    if (!s->lru_tail)
        s->lru_tail = e;
}

static bool entry_expired(const struct conv_store *s, const struct conv_entry *e, int64_t now_ms)
{
    return now_ms - e->last_used_ms > s->ttl_ms;
}

/* The least recently stored conversation no run holds, or NULL. */
static struct conv_entry *lru_oldest_idle(struct conv_store *s)
{
    struct conv_entry *e = s->lru_tail;

    while (e && e->busy)
        e = e->lru_prev;
    return e;
}

/* Makes a stored entry pending again: off the list, no longer counted as stored. */
static void entry_unstore(struct conv_store *s, struct conv_entry *e)
{
    if (!e->stored)
        return;
    lru_unlink(s, e);
    e->stored = false;
    s->n_stored--;
    s->total_bytes -= e->bytes;
}

/* Takes e out of the store and onto *garbage (linked through chain_next), to free unlocked. */
static void entry_drop(struct conv_store *s, struct conv_entry *e, struct conv_entry **garbage)
{
    entry_unstore(s, e);
    table_remove(s, e);
    e->chain_next = *garbage;
    *garbage = e;
}

/* Allocated before taking the lock so the critical section does no malloc. */
static struct conv_entry *entry_new(const char *id, uint64_t hash, int64_t now_ms)
{
    struct conv_entry *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    e->id = strdup(id);
    e->messages = json_array();
    if (!e->id || !e->messages) {
        entry_free(e);
        return NULL;
    }
    e->hash = hash;
    e->last_used_ms = now_ms;
    return e;
}

/*
 * Under the lock: marks id busy and returns the entry, or NULL with *ret_err.
 * Takes from *spare (a fresh empty entry) when it needs a new entry or an
 * empty history; leaves what must be freed after unlocking in *ret_garbage
 * (entries linked through chain_next) and *ret_old_messages.
 *
 * A new id evicts nothing that is still alive: until its run stores a
 * history it may fail, and a failed run must not cost a real conversation
 * its place. Only expired conversations make room here; release() enforces
 * max_conversations when the new history arrives.
 */
static struct conv_entry *acquire_locked(struct conv_store *s, const char *id, uint64_t hash,
                                         int64_t now_ms, struct conv_entry **spare,
                                         struct conv_entry **ret_garbage, json_t **ret_old_messages,
                                         int *ret_err)
{
    struct conv_entry *e = table_find(s, hash, id), *victim;

    if (e) {
        if (e->busy) {
            *ret_err = -EBUSY;
            return NULL;
        }
        if (entry_expired(s, e, now_ms)) {
            /* Treated as absent: the run starts from an empty history, like a new id. */
            entry_unstore(s, e);
            *ret_old_messages = e->messages;
            e->messages = (*spare)->messages;
            (*spare)->messages = NULL;
            e->bytes = 0;
        }
        e->busy = true;
        s->n_busy++;
        return e;
    }
    if (s->n_busy >= s->max_conversations) {
        *ret_err = -ENOSPC;
        return NULL;
    }
    while (s->count >= s->max_conversations && (victim = lru_oldest_idle(s)) &&
           entry_expired(s, victim, now_ms))
        entry_drop(s, victim, ret_garbage);
    e = *spare;
    *spare = NULL;
    e->busy = true;
    s->n_busy++;
    table_insert(s, e);
    return e;
}

int conv_store_acquire(struct conv_store *s, const char *id, int64_t now_ms, json_t **ret_messages)
{
    struct conv_entry *e, *spare, *garbage = NULL;
    json_t *old_messages = NULL, *copy;
    size_t id_len;
    uint64_t hash;
    int err = 0;

    if (!s || !id || !ret_messages)
        return -EINVAL;
    if (s->max_conversations == 0)
        return -ENOTSUP;
    id_len = strnlen(id, CONV_ID_MAX_BYTES + 1);
    if (id_len == 0 || id_len > CONV_ID_MAX_BYTES)
        return -EINVAL;
    hash = siphash24(s->hash_key, id, id_len);
    spare = entry_new(id, hash, now_ms);
    if (!spare)
        return -ENOMEM;

    pthread_mutex_lock(&s->lock);
    e = acquire_locked(s, id, hash, now_ms, &spare, &garbage, &old_messages, &err);
    pthread_mutex_unlock(&s->lock);

    entry_free(spare);
    entry_list_free(garbage);
    json_decref(old_messages);
    if (!e)
        return err;

    /* Safe without the lock: nobody replaces a busy entry's history but us. */
    copy = json_deep_copy(e->messages);
    if (!copy) {
        conv_store_release(s, id, NULL, now_ms);
        return -ENOMEM;
    }
    *ret_messages = copy;
    return 0;
}

/* A user message whose content is a string or only text blocks: the one kind
 * of message a history may start with (the API rejects a leading tool_result
 * whose tool_use was trimmed away, and expects user first). */
static bool message_is_user_text(const json_t *m)
{
    const json_t *role = json_object_get(m, "role");
    const json_t *content = json_object_get(m, "content");
    const json_t *block;
    size_t i;

    if (!json_is_string(role) || strcmp(json_string_value(role), "user") != 0)
        return false;
    if (json_is_string(content))
        return true;
    if (!json_is_array(content) || json_array_size(content) == 0)
        return false;
    json_array_foreach(content, i, block)
    {
        const json_t *type = json_object_get(block, "type");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0)
            return false;
    }
    return true;
}

static int count_bytes(const char *buffer, size_t size, void *data)
{
    (void)buffer;
    *(size_t *)data += size;
    return 0;
}

/* What a message counts for against the byte caps: its compact JSON serialization, the form
 * it takes in an LLM request. SIZE_MAX when it cannot be serialized (ENOMEM). */
static size_t message_bytes(const json_t *m)
{
    size_t n = 0;

    if (json_dump_callback(m, count_bytes, &n, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        return SIZE_MAX;
    return n;
}

/*
 * Deep copy of the longest tail of `messages` that holds at most max_messages
 * messages and max_bytes bytes (message_bytes() summed) and starts at a user
 * text message — possibly empty. The byte rule cuts whole messages from the
 * front exactly as the count rule does, so the same start rule keeps the
 * history valid for the Messages API: user first, roles alternating as they
 * did, no tool_result whose tool_use was cut. *ret_bytes = the copy's bytes.
 * NULL on ENOMEM.
 */
static json_t *history_trimmed_copy(const json_t *messages, size_t max_messages, size_t max_bytes,
                                    size_t *ret_bytes)
{
    size_t n = json_array_size(messages);
    size_t first = n > max_messages ? n - max_messages : 0;
    size_t start = n, bytes = 0, m;
    json_t *out;

    /* Grow the tail backwards while it fits, then move its start forward to a user text. */
    while (start > first) {
        m = message_bytes(json_array_get(messages, start - 1));
        if (m == SIZE_MAX)
            return NULL;
        if (m > max_bytes - bytes)
            break;
        bytes += m;
        start--;
    }
    while (start < n && !message_is_user_text(json_array_get(messages, start))) {
        bytes -= message_bytes(json_array_get(messages, start));
        start++;
    }
    out = json_array();
    if (!out)
        return NULL;
    for (size_t i = start; i < n; i++) {
        if (json_array_append_new(out, json_deep_copy(json_array_get(messages, i))) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    *ret_bytes = bytes;
    return out;
}

/* Under the lock: ends the run on e, storing `fresh` (taken, may be NULL) as its history. */
static void release_locked(struct conv_store *s, struct conv_entry *e, json_t **fresh,
                           size_t fresh_bytes, int64_t now_ms, json_t **ret_old,
                           struct conv_entry **garbage)
{
    struct conv_entry *victim;

    e->busy = false;
    s->n_busy--;
    if (!*fresh) {
        /* A failed run: a conversation it created goes again; an existing one keeps its
         * history, its last use and its place in the LRU order, as if the run never was. */
        if (!e->stored)
            entry_drop(s, e, garbage);
        return;
    }
    *ret_old = e->messages;
    e->messages = *fresh;
    *fresh = NULL;
    e->last_used_ms = now_ms;
    entry_unstore(s, e);
    e->bytes = fresh_bytes;
    e->stored = true;
    s->n_stored++;
    s->total_bytes += fresh_bytes;
    lru_push_head(s, e);
    /* e is the most recent, so it goes last, only when every other one is running. */
    while ((s->n_stored > s->max_conversations || s->total_bytes > s->max_total_bytes) &&
           (victim = lru_oldest_idle(s)))
        entry_drop(s, victim, garbage);
}

void conv_store_release(struct conv_store *s, const char *id, const json_t *messages,
                        int64_t now_ms)
{
    struct conv_entry *e, *garbage = NULL;
    json_t *fresh = NULL, *old = NULL;
    size_t fresh_bytes = 0;

    if (!s || !id || s->max_conversations == 0)
        return;
    if (json_is_array(messages))
        fresh = history_trimmed_copy(messages, s->max_messages, s->max_history_bytes, &fresh_bytes);

    pthread_mutex_lock(&s->lock);
    e = table_find(s, siphash24(s->hash_key, id, strnlen(id, CONV_ID_MAX_BYTES + 1)), id);
    if (e && e->busy)
        release_locked(s, e, &fresh, fresh_bytes, now_ms, &old, &garbage);
    pthread_mutex_unlock(&s->lock);

    entry_list_free(garbage);
    json_decref(old);
    json_decref(fresh);
}

size_t conv_store_sweep(struct conv_store *s, int64_t now_ms)
{
    struct conv_entry *garbage = NULL, *e, *prev;
    size_t n = 0;

    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    /* The list is in the order histories were stored, so the expired entries are a tail run
     * (exactly so while callers pass a monotonic now_ms), with running ones in between. */
    for (e = s->lru_tail; e; e = prev) {
        prev = e->lru_prev;
        if (e->busy)
            continue;
        if (!entry_expired(s, e, now_ms))
            break;
        entry_drop(s, e, &garbage);
        n++;
    }
    pthread_mutex_unlock(&s->lock);

    entry_list_free(garbage);
    return n;
}

size_t conv_store_count(struct conv_store *s)
{
    size_t n;

    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

json_t *conv_history_trimmed(const json_t *messages, size_t max_messages, size_t max_bytes)
{
    size_t bytes;
    return history_trimmed_copy(messages, max_messages, max_bytes, &bytes);
}
