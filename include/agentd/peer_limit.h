/*
 * peer_limit.h — how many connections each client address holds, so one
 * address cannot take every connection slot (AGENTD_MAX_CONNECTIONS_PER_IP).
 *
 * The accepting thread takes a slot for each accepted socket and the
 * connection's close gives it back, by socket number: a socket whose close
 * was never reported (its set-up failed) is settled when the kernel hands the
 * same number out again, since one number cannot be open twice. IPv4 and
 * IPv4-mapped IPv6 addresses count as the same client.
 *
 * Thread-safe (one mutex). Library code: no logging, no clock.
 */
#ifndef AGENTD_PEER_LIMIT_H
#define AGENTD_PEER_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct peer_limit;

/* max_per_peer >= 1. NULL on ENOMEM. */
struct peer_limit *peer_limit_new(unsigned max_per_peer);
/* NULL is fine; returns NULL. */
struct peer_limit *peer_limit_free(struct peer_limit *l);

/* Socket fd from addr was accepted: true and a slot taken, or false when addr holds
   max_per_peer slots already (or on ENOMEM) and nothing was taken. */
bool peer_limit_take(struct peer_limit *l, int fd, const struct sockaddr *addr);
/* Socket fd is closed: gives back its slot, if it had one. */
void peer_limit_give(struct peer_limit *l, int fd);
/* The connection on socket fd has started: its slot moves from the socket number to the returned
   handle (NULL when fd held none), so that a close reported after the number was handed out again
   gives back the right slot. Release it with peer_limit_drop (NULL is fine). */
struct peer_slot;
struct peer_slot *peer_limit_adopt(struct peer_limit *l, int fd);
void peer_limit_drop(struct peer_limit *l, struct peer_slot *slot);

/* Slots held by addr's client (tests, logs). */
unsigned peer_limit_held(struct peer_limit *l, const struct sockaddr *addr);

#endif
