/*
 * anthropic.h — the Anthropic Messages API (POST /v1/messages) as pure data
 * transformations: building request bodies, parsing 2xx responses and error
 * bodies, and growing the conversation history the API expects.
 *
 * Nothing here does I/O, reads a clock or logs; the engine owns the HTTP call
 * (headers: x-api-key, anthropic-version: ANTHROPIC_VERSION, content-type:
 * application/json) and decides what to do with what is parsed here.
 *
 * Thread-safety: every function is reentrant. Functions only touch the
 * objects passed to them; borrowed jansson values are never modified, except
 * that their reference count is taken and dropped while a body is serialized
 * (atomic in this jansson build), so a shared tools array may be used by
 * several threads at once. A `messages` array that is being grown must not be
 * used concurrently.
 *
 * Memory: bodies and prefixes are malloc'd (caller free()s); a struct
 * llm_response owns everything it points to (llm_response_clear());
 * struct llm_error is filled in place. json_t arguments are borrowed and
 * nothing here keeps a pointer to them after returning; what is appended to
 * `messages` is a fresh value owned by that array.
 *
 * History shape (what the API requires, and what these builders guarantee for
 * what they append):
 *   - messages alternate user / assistant, starting with user;
 *   - an assistant message that holds tool_use blocks must be followed by a
 *     user message whose content starts with one tool_result per tool_use;
 *   - after stop_reason "pause_turn", the assistant content is appended and
 *     the request is sent again without a new user message (the API
 *     continues the turn), so a history may end with an assistant message;
 *   - an assistant message with empty content is rejected by the API and is
 *     never appended here.
 */
#ifndef AGENTD_ANTHROPIC_H
#define AGENTD_ANTHROPIC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Value of the anthropic-version request header. */
#define ANTHROPIC_VERSION "2023-06-01"

/* The API refuses bodies above 32 MB with 413; anthropic_build_request fails
 * early (E2BIG) instead of sending one. */
#define ANTHROPIC_MAX_REQUEST_BYTES ((size_t)32 * 1024 * 1024)

/* Longest tool_use id accepted from a response or for a tool_result; ids are
 * echoed into logs and the agentd API, so they are bounded. */
#define ANTHROPIC_MAX_ID_BYTES 256

/* Longest tool name the API accepts. */
#define ANTHROPIC_MAX_TOOL_NAME_BYTES 64
/* tool_use blocks one message may carry: each is run at once, so a runaway or hostile answer must
   not fan out without bound. Models ask for a handful; more is a malformed response. */
#define ANTHROPIC_MAX_TOOL_USES 64

struct llm_params {
    const char *model;        /* required, non-empty */
    int max_tokens;           /* >= 1 */
    double temperature;       /* 0.0 .. 1.0, serialized as a JSON number */
    const char *system;       /* NULL or "" = omitted */
    const json_t *tools;      /* borrowed array of {name, description, input_schema};
                                 NULL or empty = omitted; passed through unchanged */
    size_t max_request_bytes; /* largest body to build; 0 = ANTHROPIC_MAX_REQUEST_BYTES */
    /* Prompt caching: cache_control {"type":"ephemeral"} breakpoints on the last tool, the
       system prompt (then sent as one text block) and the conversation prefix (see
       ANTHROPIC_CACHE_BREAKPOINTS). false = the body carries no cache_control. */
    bool prompt_cache;
};

/*
 * Cache breakpoints in one request (the API allows at most 4). With prompt_cache, a request
 * carries one on the last tool definition, one on the system prompt, and one on the last block
 * of each of the last two user messages: the newest ends the prefix this call writes, the one
 * before ends the prefix the previous iteration (or turn) wrote, so that prefix is read back
 * from the cache. The API caches tools → system → messages in that order; the stored history is
 * never changed, the breakpoints are added while the body is serialised.
 */
#define ANTHROPIC_CACHE_BREAKPOINTS 4

/*
 * Serializes {model, max_tokens, system?, temperature, tools?, messages}
 * (with p->prompt_cache, the cache breakpoints above)
 * compactly, in that key order. `messages` (borrowed) is the conversation: a
 * non-empty array of {role, content} objects, role "user" or "assistant",
 * the first one "user", content a string or an array; it may end with an
 * assistant message (pause_turn continuation).
 *
 * Returns a malloc'd NUL-terminated body (caller frees) or NULL with errno:
 * EINVAL (p/messages/tools do not meet the rules above), E2BIG (body would
 * exceed p->max_request_bytes, at most ANTHROPIC_MAX_REQUEST_BYTES), ENOMEM.
 */
char *anthropic_build_request(const struct llm_params *p, const json_t *messages);

/*
 * The part of every request that never changes (model, max_tokens, system,
 * temperature, tools), serialised once: a malloc'd prefix ending in
 * "\"messages\":" (caller frees; NULL with errno ENOMEM). p is not validated
 * here. anthropic_build_request_from_prefix() then only has to serialise the
 * messages; given a prefix built from the same p, it returns the same body as
 * anthropic_build_request(p, messages), with the same checks and errno.
 */
char *anthropic_request_prefix(const struct llm_params *p);
char *anthropic_build_request_from_prefix(const struct llm_params *p, const char *prefix,
                                          const json_t *messages);

enum llm_stop {
    LLM_STOP_END_TURN,
    LLM_STOP_TOOL_USE,
    LLM_STOP_MAX_TOKENS,
    LLM_STOP_STOP_SEQUENCE,
    LLM_STOP_PAUSE_TURN,
    LLM_STOP_REFUSAL,
    LLM_STOP_CONTEXT_WINDOW_EXCEEDED, /* "model_context_window_exceeded" */
    LLM_STOP_UNKNOWN,                 /* missing, null or a reason added after this code */
};

/* The API's spelling of s ("end_turn", …, "model_context_window_exceeded");
 * "unknown" for LLM_STOP_UNKNOWN or an out-of-range value. Static string. */
const char *llm_stop_name(enum llm_stop s);

struct llm_tool_use {
    char *id;      /* owned; 1..ANTHROPIC_MAX_ID_BYTES of [A-Za-z0-9_-] */
    char *name;    /* owned; 1..ANTHROPIC_MAX_TOOL_NAME_BYTES of [A-Za-z0-9_-] */
    json_t *input; /* owned reference; always an object; not shared with content */
};

struct llm_response {
    char *id;    /* owned; "" when absent */
    char *model; /* owned; "" when absent */
    enum llm_stop stop;
    char *stop_reason; /* owned; raw string as received ("" if null or absent) */
    /* Owned array: the sanitized assistant content to keep in history. Only
     * text {type,text} and tool_use {type,id,name,input} blocks, in response
     * order; unknown block types are dropped, and so are text blocks with
     * empty text (the API rejects those in a request). May be empty (then do
     * not append it: anthropic_append_assistant returns -EINVAL). */
    json_t *content;
    char *text; /* owned; all text blocks concatenated, no separator ("" when none) */
    struct llm_tool_use *tool_uses; /* owned array of n_tool_uses, response order; NULL if 0 */
    size_t n_tool_uses;
    /* input_tokens already includes cache_creation_input_tokens and
     * cache_read_input_tokens; missing/invalid counts are 0; sums saturate. */
    int64_t input_tokens, output_tokens;
    /* The part of input_tokens written to / read from the prompt cache. */
    int64_t cache_creation_tokens, cache_read_tokens;
};

/* What the API billed for one answer (usage). input_tokens includes the two cache counts. */
struct llm_usage {
    int64_t input_tokens, cache_creation_tokens, cache_read_tokens, output_tokens;
};

/* Sum of two non-negative token counts, saturating at INT64_MAX: counts come from the upstream,
   and a hostile or broken answer must not overflow a run's totals. */
int64_t llm_tokens_add(int64_t a, int64_t b);

/*
 * Parses a 2xx body of len bytes (the caller bounds len). Malformed input —
 * not JSON (incl. duplicate keys or a U+0000 escape), not an object,
 * type != "message", content not an array, a block that is not an object
 * with a string type, a text block without string text, a tool_use without a
 * valid id / name / object input, a repeated tool_use id, more than
 * ANTHROPIC_MAX_TOOL_USES tool_use blocks, stop_reason neither string nor
 * null, an empty body — gives -EBADMSG and a one-line reason in err (if
 * err && errlen > 0). Unknown block types and unknown stop reasons never
 * fail (LLM_STOP_UNKNOWN). A stop_reason of "tool_use" without tool_use
 * blocks is not checked here.
 *
 * Returns 0 and fills *ret (release with llm_response_clear), -EBADMSG, or
 * -ENOMEM. *ret is written only on success.
 */
int anthropic_parse_response(const char *body, size_t len, struct llm_response *ret, char *err,
                             size_t errlen);

/* Frees everything r owns and zeroes it; r may be NULL. */
void llm_response_clear(struct llm_response *r);

/* The usage of an answer that anthropic_parse_response() rejected but that may still have been
   billed: 0 and the token counts (input includes cache writes and reads) when body is a JSON
   object with a "usage" object, else -EBADMSG and nothing written. */
int anthropic_parse_usage(const char *body, size_t len, int64_t *ret_in, int64_t *ret_out);
/* The same, with the cache counts: 0 and *ret filled, or -EBADMSG and nothing written. */
int anthropic_parse_usage_detail(const char *body, size_t len, struct llm_usage *ret);

struct llm_error {
    char type[64];        /* error.type, e.g. "rate_limit_error"; the list grows */
    char message[512];    /* error.message */
    char request_id[128]; /* top-level request_id */
};

/*
 * Parses {"type":"error","error":{"type","message"},"request_id"} of len
 * bytes. Best effort: always fills *ret (ret must not be NULL), with "" for
 * what is missing or not a string; overlong values are truncated on a UTF-8
 * character boundary. Returns 0 if the shape matched (type == "error" and
 * error.type and error.message are strings; request_id is optional), or
 * -EBADMSG otherwise (not JSON, HTML from a proxy, other shapes); classify
 * such errors by HTTP status.
 */
int anthropic_parse_error(const char *body, size_t len, struct llm_error *ret);

/* A 429 whose error says a spend (usage) limit was reached rather than a rate limit: no other
   model and no wait within a run will help. */
bool anthropic_error_is_spend_limit(long status, const struct llm_error *e);

/*
 * History builders. `messages` is the array being grown; on any failure it is
 * left unchanged. All return 0, -EINVAL (bad arguments, described per
 * function) or -ENOMEM.
 */

/* Appends {role:"user", content:text}. text must be non-empty valid UTF-8. */
int anthropic_append_user_text(json_t *messages, const char *text);

/* Appends {role:"assistant", content:<deep copy of content>}. content must be
 * a non-empty array of objects (e.g. llm_response.content); an empty one gives
 * -EINVAL because the API rejects an empty assistant message. */
int anthropic_append_assistant(json_t *messages, const json_t *content);

struct llm_tool_result {
    const char *tool_use_id; /* the llm_tool_use.id being answered */
    const char *text;        /* valid UTF-8; non-empty when is_error (the API requires it) */
    bool is_error;
};

/*
 * Appends ONE user message whose content is the n (>= 1) tool_result blocks,
 * in the given order: {type:"tool_result", tool_use_id, content:text} plus
 * is_error:true only when set. -EINVAL when n == 0, an id is not 1..
 * ANTHROPIC_MAX_ID_BYTES of [A-Za-z0-9_-] or repeats, text is NULL or not
 * valid UTF-8, or is_error is set with empty text.
 */
int anthropic_append_tool_results(json_t *messages, const struct llm_tool_result *results,
                                  size_t n);

#endif
