/*
 * peer_limit.c — connections per client address (see peer_limit.h): a chained
 * hash table of addresses with their counts, and the address of each socket
 * number that holds a slot.
 */
#include "agentd/peer_limit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/siphash.h"

#define PEER_BUCKETS 4096

struct peer {
    unsigned char addr[16]; /* IPv6, IPv4 as ::ffff:a.b.c.d */
    unsigned held;
    struct peer *next;
};

struct fd_slot {
    bool used;
    unsigned char addr[16];
};

struct peer_limit {
    pthread_mutex_t lock;
    unsigned max;
    uint64_t key[2];
    struct peer *buckets[PEER_BUCKETS];
    struct fd_slot *fds; /* indexed by socket number */
    size_t n_fds;
};

static bool addr_key(const struct sockaddr *sa, unsigned char out[16])
{
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    if (sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    return false;
}

struct peer_limit *peer_limit_new(unsigned max_per_peer)
{
    struct peer_limit *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->max = max_per_peer ? max_per_peer : 1;
    l->key[0] = (uint64_t)(uintptr_t)l * 0x9E3779B97F4A7C15ULL;
    l->key[1] = (uint64_t)(uintptr_t)&l->key ^ 0xC2B2AE3D27D4EB4FULL;
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

struct peer_limit *peer_limit_free(struct peer_limit *l)
{
    if (!l)
        return NULL;
    for (size_t i = 0; i < PEER_BUCKETS; i++)
        for (struct peer *p = l->buckets[i], *next; p; p = next) {
            next = p->next;
            free(p);
        }
    free(l->fds);
    pthread_mutex_destroy(&l->lock);
    free(l);
    return NULL;
}

static struct peer **find(struct peer_limit *l, const unsigned char addr[16])
{
    struct peer **pp = &l->buckets[siphash24(l->key, (const char *)addr, 16) % PEER_BUCKETS];
    while (*pp && memcmp((*pp)->addr, addr, 16) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Gives back one slot of addr (lock held). */
static void release_addr(struct peer_limit *l, const unsigned char addr[16])
{
    struct peer **pp = find(l, addr);
    if (*pp && --(*pp)->held == 0) {
        struct peer *gone = *pp;
        *pp = gone->next;
        free(gone);
    }
}

/* Gives back fd's slot, if any (lock held). */
static void release_fd(struct peer_limit *l, int fd)
{
    if (fd < 0 || (size_t)fd >= l->n_fds || !l->fds[fd].used)
        return;
    l->fds[fd].used = false;
    release_addr(l, l->fds[fd].addr);
}

bool peer_limit_take(struct peer_limit *l, int fd, const struct sockaddr *addr)
{
    unsigned char key[16];
    if (fd < 0 || !addr_key(addr, key))
        return true; /* nothing to count by (e.g. a Unix socket) */
    pthread_mutex_lock(&l->lock);
    release_fd(l, fd); /* a close we never heard of: the number is free again */
    bool ok = false;
    if ((size_t)fd >= l->n_fds) {
        size_t n = l->n_fds ? l->n_fds : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        struct fd_slot *p = realloc(l->fds, n * sizeof(*p));
        if (!p)
            goto out;
        memset(p + l->n_fds, 0, (n - l->n_fds) * sizeof(*p));
        l->fds = p;
        l->n_fds = n;
    }
    struct peer **pp = find(l, key);
    if (!*pp) {
        *pp = calloc(1, sizeof(**pp));
        if (!*pp)
            goto out;
        memcpy((*pp)->addr, key, 16);
    }
    if ((*pp)->held < l->max) {
        (*pp)->held++;
        l->fds[fd].used = true;
        memcpy(l->fds[fd].addr, key, 16);
        ok = true;
    }
out:
    pthread_mutex_unlock(&l->lock);
    return ok;
}

void peer_limit_give(struct peer_limit *l, int fd)
{
    pthread_mutex_lock(&l->lock);
    release_fd(l, fd);
    pthread_mutex_unlock(&l->lock);
}

unsigned peer_limit_held(struct peer_limit *l, const struct sockaddr *addr)
{
    unsigned char key[16];
    if (!addr_key(addr, key))
        return 0;
    pthread_mutex_lock(&l->lock);
    struct peer **pp = find(l, key);
    unsigned n = *pp ? (*pp)->held : 0;
    pthread_mutex_unlock(&l->lock);
    return n;
}

struct peer_slot {
    unsigned char addr[16];
};

struct peer_slot *peer_limit_adopt(struct peer_limit *l, int fd)
{
    struct peer_slot *slot = NULL;
    pthread_mutex_lock(&l->lock);
    if (fd >= 0 && (size_t)fd < l->n_fds && l->fds[fd].used && (slot = malloc(sizeof(*slot)))) {
        memcpy(slot->addr, l->fds[fd].addr, 16);
        l->fds[fd].used = false;
    }
    pthread_mutex_unlock(&l->lock);
    return slot;
}

void peer_limit_drop(struct peer_limit *l, struct peer_slot *slot)
{
    if (!slot)
        return;
    pthread_mutex_lock(&l->lock);
    release_addr(l, slot->addr);
    pthread_mutex_unlock(&l->lock);
    free(slot);
}
