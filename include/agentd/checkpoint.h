/*
 * checkpoint.h — a durable run's state as it is written to Redis after every
 * completed step (each LLM answer, each tool result), and read back by the
 * replica that takes the run over: the history (with the assistant's
 * tool_use blocks), the tool results of the batch in progress, the counters,
 * and the records the answer reports.
 *
 * The encoding is compact JSON with a version ("v":1). Decoding checks every
 * field's type and range and refuses anything else with a message, so a
 * corrupted or foreign value can never become a half-restored run.
 *
 * Pure: no I/O, no clock, no logging; thread-safe (nothing shared).
 * Memory: a struct run_checkpoint owns its JSON and strings
 * (checkpoint_clear() frees them); checkpoint_encode()'s text is the
 * caller's to free().
 */
#ifndef AGENTD_CHECKPOINT_H
#define AGENTD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CHECKPOINT_VERSION 1
/* Counters above this are refused as corrupt (no run gets near). */
#define CHECKPOINT_MAX_COUNT 1000000

struct run_checkpoint {
    json_t *messages; /* the history sent to the model so far: [{role, content}] */
    int iterations, llm_calls, llm_attempts;
    int64_t input_tokens, output_tokens;
    json_t *tool_calls; /* [{id, name, ok, duration_ms}] */
    json_t *degraded;   /* [{tool, reason}] */
    char *last_text;    /* the model's last text, NULL when none yet */
    char *stop_reason;  /* why the last LLM answer stopped (end_turn, tool_use, pause_turn, ...);
                           NULL when no answer yet */
    /* Results obtained so far for the tool_use blocks of the last assistant message:
       [{id, text, is_error}]; empty when no batch is in progress. */
    json_t *results;
};

/*
 * The checkpoint as text (NUL-terminated, malloc'd; *ret_len its length). NULL with errno E2BIG
 * when it would be longer than max_bytes, EINVAL when cp lacks messages, ENOMEM.
 */
char *checkpoint_encode(const struct run_checkpoint *cp, size_t max_bytes, size_t *ret_len);

/* Reads text (len bytes) into *ret (zeroed first). 0, or -EINVAL with a message in err. */
int checkpoint_decode(const char *text, size_t len, struct run_checkpoint *ret, char *err,
                      size_t errlen);

/* Frees what cp holds and zeroes it (NULL is fine). */
void checkpoint_clear(struct run_checkpoint *cp);

#endif
