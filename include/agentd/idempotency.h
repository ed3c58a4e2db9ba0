/*
 * idempotency.h — Idempotency-Key support: the first request with a key runs,
 * a concurrent one with the same key gets 409 idempotency_in_progress, a later
 * one replays the stored answer byte for byte, and the same key with another
 * body gets 422 idempotency_key_reused.
 *
 * In memory, bounded by count, by the bytes of the stored answers and by age
 * (first use + ttl_ms). A new key in a full store evicts the entry that
 * finished first; only when every entry is still running does it get
 * IDEM_FULL. Storing an answer that would go over max_bytes evicts finished
 * entries the same way; an answer larger than max_bytes /
 * IDEM_MAX_ANSWER_SHARE is not stored at all (its key runs again, as after a
 * transient answer), so one huge answer cannot flush every other key.
 *
 * One mutex with short critical sections; thread-safe (every function but
 * idem_store_free() from any thread at once). Keys are hashed with a per-store random secret so
 * clients cannot aim many keys at one bucket. Answers that a retry could
 * change (429, 5xx but 502, 409) are not stored: the entry is dropped and the
 * next request with that key runs again.
 *
 * The caller passes now_ms (monotonic clock, ms); nothing here reads a clock
 * or logs. Memory: keys and bodies are copied in; the body handed out on
 * IDEM_REPLAY is the caller's to free(). A finished entry expires ttl_ms
 * after first use whatever older requests are still running: every lookup
 * checks the entry's own age.
 */
#ifndef AGENTD_IDEMPOTENCY_H
#define AGENTD_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

#define IDEM_FINGERPRINT_BYTES 32
/* An answer is stored only when it takes at most 1/IDEM_MAX_ANSWER_SHARE of max_bytes. */
#define IDEM_MAX_ANSWER_SHARE 16

struct idem_store;

enum idem_begin_result {
    IDEM_NEW = 0,     /* caller runs the request, then calls idem_complete or idem_abandon */
    IDEM_IN_PROGRESS, /* same key and body still running → 409 */
    IDEM_MISMATCH,    /* same key, different body → 422 */
    IDEM_REPLAY,      /* finished before: *ret_status / *ret_body hold the stored answer */
    IDEM_FULL,        /* store full of running requests → 429 overloaded */
};

/* A store of at most max_entries keys whose stored answer bodies take at most max_bytes
   (strlen of each), each answer replayed until ttl_ms after its key's first use. NULL on ENOMEM,
   when getrandom() fails (it may block until the kernel has entropy) or when the mutex cannot
   be initialised. */
struct idem_store *idem_store_new(size_t max_entries, size_t max_bytes, int64_t ttl_ms);
/* Frees s and every entry (NULL is fine); returns NULL. No other thread may still use s. */
struct idem_store *idem_store_free(struct idem_store *s);

/* SHA-256 of the request body: what "same request" means. Returns 0, or -ENOMEM when OpenSSL
   fails; ret is then all zeros, which idem_begin() refuses with IDEM_FULL, so a failed digest
   can never make two bodies look the same. */
int idem_fingerprint(const void *body, size_t len, unsigned char ret[IDEM_FINGERPRINT_BYTES]);

/* Looks key up at now_ms. On IDEM_REPLAY, *ret_body is a malloc'd copy of the stored body
   (NULL on ENOMEM) and *ret_status its status; neither is written otherwise. A finished
   entry older than ttl_ms counts as absent. Out of memory while adding a new key, and an
   all-zero fingerprint (a failed idem_fingerprint()), also give IDEM_FULL. */
enum idem_begin_result idem_begin(struct idem_store *s, const char *key,
                                  const unsigned char fp[IDEM_FINGERPRINT_BYTES], int64_t now_ms,
                                  int *ret_status, char **ret_body);
/* Stores the answer of a request that got IDEM_NEW (body copied), evicting the entries that
   finished first until the stored bodies fit in max_bytes; or drops the entry when the answer
   should not be replayed (see above), is larger than max_bytes / IDEM_MAX_ANSWER_SHARE, body
   is NULL or the copy fails. */
void idem_complete(struct idem_store *s, const char *key, int status, const char *body);
/* Drops the entry of a request that got IDEM_NEW and was not run (e.g. refused at admission). */
void idem_abandon(struct idem_store *s, const char *key);
/* True when an answer with this status is stored for replay. */
int idem_status_replayable(int status);
size_t idem_store_count(struct idem_store *s);

#endif
