/*
 * conversations.h — the in-memory conversation store: message history per
 * conversation_id, bounded in count (LRU eviction), in length (trimmed on
 * save) and in time (idle TTL).
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

/*
 * Creates a store holding at most max_conversations conversations (0 = the
 * feature is disabled: conv_store_acquire() returns -ENOTSUP), each kept
 * until idle for more than ttl_ms and holding at most max_messages messages.
 * Returns NULL when max_conversations < 0 or > 1<<20, ttl_ms < 1,
 * max_messages < 1, or on ENOMEM.
 */
struct conv_store *conv_store_new(int max_conversations, int64_t ttl_ms, int max_messages);

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
 *   -EINVAL   s, id or ret_messages is NULL, or id is not 1..128 bytes;
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
 * replaces the history, trimmed from the front to at most max_messages so
 * that it still starts with a user message whose content is plain text (a
 * string, or an array of only "text" blocks) — never with a dangling
 * tool_result or an assistant message; when no such start exists the history
 * becomes empty. Storing sets the last-use time to now_ms and makes the
 * conversation the most recently used; then, while more than
 * max_conversations histories are stored, the least recently used idle
 * conversation is evicted (the one just stored only when every other one is
 * running).
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

/* Number of conversations, busy ones, not-yet-swept expired ones and new ones
 * whose first run is still going included (so up to max_conversations more
 * than max_conversations); 0 when s is NULL. */
size_t conv_store_count(struct conv_store *s);

#endif
