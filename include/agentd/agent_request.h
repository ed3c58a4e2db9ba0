/*
 * agent_request.h — the engine's vocabulary for what a client asked of one
 * run: a validated POST /v1/agent body. The server builds it (request.h
 * parses and validates the body); the engine consumes it (run_admit() moves
 * it into the run and zeroes the caller's copy, but only when the run is
 * admitted; otherwise the caller still owns it), so the engine needs this
 * header, not the server's.
 *
 * Pure data and its destructor: no I/O, no global state. A struct
 * agent_request belongs to one thread at a time; its strings are heap memory
 * owned by the struct, released with agent_request_clear().
 */
#ifndef AGENTD_AGENT_REQUEST_H
#define AGENTD_AGENT_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "agentd/vocab.h" /* enum agent_priority */

/* The bounds are the parser's (request.h: AGENT_INPUT_MAX_BYTES, AGENT_TIMEOUT_MIN_MS). */
struct agent_request {
    char *input;           /* valid UTF-8, 1..AGENT_INPUT_MAX_BYTES bytes, no NUL */
    char *conversation_id; /* NULL or 1..128 of [A-Za-z0-9._:-] */
    int max_iterations;    /* 0 = not given; else 1..max_iterations_cap */
    int64_t timeout_ms;    /* 0 = not given; else 100..timeout_cap_ms */
    enum agent_priority priority;
    bool stream; /* the client reads the run as events (docs/API.md "Streaming") */
};

/* Frees r's strings and leaves *r zeroed; r may be NULL. */
void agent_request_clear(struct agent_request *r);

#endif
