/*
 * conversations.h — the in-memory conversation store: message history per
 * conversation_id, bounded in count and in bytes of all histories together
 * (LRU eviction), in length and bytes per history (oldest turns trimmed on
 * save) and in time (idle TTL).
 *
 * Bytes of a history: its messages' compact JSON serializations summed (the
 * form they take in an LLM request; no array brackets or commas).
 *
 * Trimming: a history over max_messages or max_history_bytes loses whole
 * messages from the front, and then more until it starts with a user turn
 * whose content is plain text (a string, or only "text" blocks). So a stored
 * history is always valid for the Messages API: it starts with a user turn,
 * its roles alternate as they did, and it never holds a tool_result whose
 * tool_use was cut away (tool_results travel in user turns that are not
 * plain text, so no history starts with one). When the last such turn alone
 * is too large, the history is stored empty: the conversation goes on, its
 * earlier turns forgotten.
 *
 * Only a successful run counts as use: a conversation exists once a run has
 * stored its history, and "recently used" and "idle" are measured from the
 * last history stored. A run that fails or is cancelled changes nothing: a
 * conversation its acquire created goes again, an existing one keeps its
 * history, idle time and LRU position. So requests that fail cheaply with
 * fresh ids cannot evict or outlive real conversations.
 *
 * One run at a time per conversation: a second run on a conversation that is
 * already running gets -EBUSY (the server answers 409 conversation_busy with
 * Retry-After: 1) and the client retries. This keeps each history linear —
 * two concurrent runs would each append to the same starting point and one
 * answer would be lost — without queueing unbounded work in the daemon.
 *
 * Thread-safety: every function but conv_store_free() may be called from
 * any thread at once; one mutex guards the table and is held only for
 * pointer work, never while copying JSON. Time: now_ms is a monotonic
 * millisecond clock supplied by the caller; the store never reads a clock
 * and never logs. All operations are O(1) apart from the JSON copies
 * (O(history)), conv_store_sweep (O(expired entries)) and eviction, which
 * steps over conversations a run holds (O(running conversations) at worst).
 *
 * Memory: the store owns its histories and copies on the way in and out:
 * conv_store_acquire() hands the caller a new array (json_decref() it),
 * conv_store_release() copies what it is given and keeps no reference.
 *
 * History format: a JSON array of Messages API messages
 * ({"role": "user"|"assistant", "content": string | [blocks]}).
 */
#ifndef AGENTD_CONVERSATIONS_H
#define AGENTD_CONVERSATIONS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct conv_store;

struct conv_store_limits {
    int max_conversations;    /* stored histories; 0 = the feature is disabled
                                 (conv_store_acquire() returns -ENOTSUP); 0..1<<20 */
    int64_t ttl_ms;           /* idle time after which a conversation is forgotten; >= 1 */
    int max_messages;         /* messages per history; >= 1 */
    size_t max_history_bytes; /* bytes per history; >= 1, applied as at most max_total_bytes */
    size_t max_total_bytes;   /* bytes of all stored histories together; >= 1 */
};

/*
 * Creates a store with the given limits (copied). Returns NULL when limits is
 * NULL or a limit is out of its range, or on ENOMEM.
 */
struct conv_store *conv_store_new(const struct conv_store_limits *limits);

/* Frees the store and every history, busy or not; s may be NULL. Returns NULL. No other
   thread may still use s. */
struct conv_store *conv_store_free(struct conv_store *s);

/*
 * Starts a run on conversation `id` (a valid conversation_id, see request.h).
 * On success marks it busy and returns 0 with *ret_messages = a new JSON array
 * owned by the caller: a deep copy of the history, empty when the
 * conversation is new or expired (idle for more than ttl_ms).
 * Errors (nothing changed, *ret_messages untouched):
 *   -ENOTSUP  the store was created with max_conversations == 0;
 *   -EINVAL   s, id or ret_messages is NULL, or id is not 1..192 bytes (a caller's
 *             namespace, "/", and a conversation_id of up to 128);
 *   -EBUSY    another run holds this conversation;
 *   -ENOSPC   the id is new and max_conversations runs hold conversations;
 *   -ENOMEM   (as after a failed run: an expired conversation is gone).
 * A new id evicts no live conversation: its run may still fail. Only
 * expired idle conversations make room here; the count bound is enforced
 * when its history is stored (conv_store_release()). Every successful
 * acquire must be followed by exactly one conv_store_release() for the
 * same id.
 */
int conv_store_acquire(struct conv_store *s, const char *id, int64_t now_ms, json_t **ret_messages);

/*
 * Ends the run on `id` that conv_store_acquire() started. messages != NULL
 * (a JSON array; the store copies it, the caller keeps its reference)
 * replaces the history, trimmed from the front to at most max_messages and
 * max_history_bytes (see Trimming above). Storing sets the last-use time to
 * now_ms and makes the conversation the most recently used; then, while more
 * than max_conversations histories are stored or they hold more than
 * max_total_bytes, the least recently used idle conversation is evicted (the
 * one just stored only when every other one is running: the bounds hold
 * after every release).
 * messages == NULL, a non-array, or ENOMEM while copying mean the run
 * failed: a conversation created (or found expired) by its acquire is
 * removed; an existing one keeps its history, last-use time and LRU
 * position as before the acquire. Clears busy either way. An unknown id, or
 * one that is not busy, is a no-op.
 */
void conv_store_release(struct conv_store *s, const char *id, const json_t *messages,
                        int64_t now_ms);

/* Drops idle conversations whose history was stored more than ttl_ms before
 * now_ms; returns how many. Called periodically by main's serve loop; busy
 * conversations are kept. */
size_t conv_store_sweep(struct conv_store *s, int64_t now_ms);

/*
 * The history `messages` trimmed as the store trims what it keeps (see Trimming above): a new
 * array, the caller's; NULL on ENOMEM. For histories kept elsewhere (shared through Redis).
 */
json_t *conv_history_trimmed(const json_t *messages, size_t max_messages, size_t max_bytes);

/* Number of conversations, busy ones, not-yet-swept expired ones and new ones
 * whose first run is still going included (so up to max_conversations more
 * than max_conversations); 0 when s is NULL. */
size_t conv_store_count(struct conv_store *s);

#endif
