/*
 * event_queue.c — the bounded queue of a streamed run's events (see
 * include/agentd/event_queue.h). A singly linked list of events; an event is
 * framed (turned into its wire bytes) only when it reaches the head, so the
 * text deltas behind it can still be merged.
 */
#include "agentd/event_queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agentd/text.h"

enum eq_kind {
    EQ_EVENT,
    EQ_TEXT,
    EQ_COMMENT,
};

struct eq_item {
    struct eq_item *next;
    enum eq_kind kind;
    int iteration;     /* EQ_TEXT */
    char name[32];     /* EQ_EVENT */
    char *payload;     /* JSON data, raw text, or the comment */
    size_t len, alloc; /* bytes of payload */
};

struct event_queue {
    size_t max_bytes, bytes;
    struct eq_item *head, *tail;
    char *wire; /* the head, framed; being sent */
    size_t wire_len, wire_off;
};

struct event_queue *event_queue_new(size_t max_bytes)
{
    struct event_queue *q = calloc(1, sizeof(*q));
    if (q)
        q->max_bytes = max_bytes ? max_bytes : 1;
    return q;
}

static void eq_item_free(struct eq_item *it)
{
    free(it->payload);
    free(it);
}

struct event_queue *event_queue_free(struct event_queue *q)
{
    if (!q)
        return NULL;
    while (q->head) {
        struct eq_item *n = q->head->next;
        eq_item_free(q->head);
        q->head = n;
    }
    free(q->wire);
    free(q);
    return NULL;
}

static bool eq_fits(const struct event_queue *q, size_t more)
{
    return more <= q->max_bytes && q->bytes <= q->max_bytes - more;
}

static int eq_append(struct event_queue *q, enum eq_kind kind, const char *name, int iteration,
                     const char *payload, size_t len, bool final)
{
    if (!final && !eq_fits(q, len))
        return -ENOBUFS;
    struct eq_item *it = calloc(1, sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->payload = malloc(len + 1);
    if (!it->payload) {
        free(it);
        return -ENOMEM;
    }
    memcpy(it->payload, payload, len);
    it->payload[len] = '\0';
    it->len = it->alloc = len;
    it->kind = kind;
    it->iteration = iteration;
    if (name)
        snprintf(it->name, sizeof(it->name), "%s", name);
    q->bytes += len;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    return 0;
}

int event_queue_push(struct event_queue *q, const char *name, const char *data, size_t len,
                     bool final)
{
    return eq_append(q, EQ_EVENT, name, 0, data, len, final);
}

int event_queue_push_comment(struct event_queue *q, const char *text)
{
    return eq_append(q, EQ_COMMENT, NULL, 0, text, strlen(text), false);
}

int event_queue_push_text(struct event_queue *q, int iteration, const char *text, size_t len)
{
    if (!text_utf8_valid(text, len))
        return -EINVAL;
    struct eq_item *t = q->tail;
    /* The head is being framed or sent once wire is set: only an item behind it may grow. */
    bool mergeable =
        t && t->kind == EQ_TEXT && t->iteration == iteration && !(t == q->head && q->wire);
    if (!mergeable)
        return eq_append(q, EQ_TEXT, NULL, iteration, text, len, false);
    if (!eq_fits(q, len))
        return -ENOBUFS;
    if (t->len + len + 1 > t->alloc) {
        size_t want = (t->len + len + 1) * 2;
        char *p = realloc(t->payload, want);
        if (!p)
            return -ENOMEM;
        t->payload = p;
        t->alloc = want;
    }
    memcpy(t->payload + t->len, text, len);
    t->len += len;
    t->payload[t->len] = '\0';
    q->bytes += len;
    return 0;
}

/* The head's wire bytes (malloc'd), or NULL when out of memory. */
static char *eq_frame(const struct eq_item *it, size_t *ret_len)
{
    char *out = NULL;
    int n = -1;
    if (it->kind == EQ_COMMENT) {
        n = asprintf(&out, ": %s\n\n", it->payload);
    } else if (it->kind == EQ_EVENT) {
        n = asprintf(&out, "event: %s\ndata: %s\n\n", it->name, it->payload);
    } else {
        json_t *d =
            json_pack("{s:i, s:s%}", "iteration", it->iteration, "text", it->payload, it->len);
        char *data = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        if (data)
            n = asprintf(&out, "event: text.delta\ndata: %s\n\n", data);
        free(data);
    }
    if (n < 0)
        return NULL;
    *ret_len = (size_t)n;
    return out;
}

static void eq_pop(struct event_queue *q)
{
    struct eq_item *it = q->head;
    q->head = it->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= it->len;
    eq_item_free(it);
    free(q->wire);
    q->wire = NULL;
    q->wire_len = q->wire_off = 0;
}

long event_queue_read(struct event_queue *q, char *buf, size_t max)
{
    size_t done = 0;
    while (q->head && done < max) {
        if (!q->wire) {
            q->wire = eq_frame(q->head, &q->wire_len);
            if (!q->wire) {
                eq_pop(q);
                return done ? (long)done : -ENOMEM;
            }
            q->wire_off = 0;
        }
        size_t n = q->wire_len - q->wire_off;
        if (n > max - done)
            n = max - done;
        memcpy(buf + done, q->wire + q->wire_off, n);
        done += n;
        q->wire_off += n;
        if (q->wire_off == q->wire_len)
            eq_pop(q);
    }
    return (long)done;
}

bool event_queue_empty(const struct event_queue *q)
{
    return q->head == NULL;
}

size_t event_queue_bytes(const struct event_queue *q)
{
    return q->bytes;
}
