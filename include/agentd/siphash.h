/*
 * siphash.h — SipHash-2-4, a keyed 64-bit hash: hash tables whose keys come
 * from clients (conversation ids, Idempotency-Keys) keep short chains because
 * a client cannot aim keys at one bucket without the secret key.
 *
 * Pure: no allocation, no state, cannot fail; safe from any thread.
 */
#ifndef AGENTD_SIPHASH_H
#define AGENTD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The hash of data[0..len) under the 128-bit key (key[0] the low half). */
uint64_t siphash24(const uint64_t key[2], const char *data, size_t len);

#endif
