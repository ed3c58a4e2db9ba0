/*
 * anthropic.c — Messages API request building, response / error-body parsing
 * and conversation-history builders (see include/agentd/anthropic.h).
 *
 * Pure: no I/O, no clock, no logging. Everything the API would reject with a
 * permanent 400 that we can see locally (a system role, an empty assistant
 * message, an empty error tool_result, invalid UTF-8, a body over 32 MB) is
 * refused here, because a retry could never fix it.
 */
#include "agentd/anthropic.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentd/text.h"

enum anth_block {
    ANTH_BLOCK_OTHER,
    ANTH_BLOCK_TEXT,
    ANTH_BLOCK_TOOL_USE,
};

static const char *const anth_stop_names[] = {
    [LLM_STOP_END_TURN] = "end_turn",
    [LLM_STOP_TOOL_USE] = "tool_use",
    [LLM_STOP_MAX_TOKENS] = "max_tokens",
    [LLM_STOP_STOP_SEQUENCE] = "stop_sequence",
    [LLM_STOP_PAUSE_TURN] = "pause_turn",
    [LLM_STOP_REFUSAL] = "refusal",
    [LLM_STOP_CONTEXT_WINDOW_EXCEEDED] = "model_context_window_exceeded",
    [LLM_STOP_UNKNOWN] = "unknown",
};

/* Strict UTF-8 (text.h) — the same rules jansson applies, checked up front so that a later
 * jansson failure can only mean out of memory. */
static bool anth_str_valid(const char *s)
{
    return s && text_utf8_valid(s, strlen(s));
}

/* Ids and tool names must match ^[A-Za-z0-9_-]{1,max}$ or the API rejects the
 * history they are sent back in; they also end up in logs. */
static bool anth_is_token(const char *s, size_t max_bytes)
{
    size_t n = 0;

    if (!s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || n >= max_bytes)
            return false;
    }
    return n > 0;
}

/* Copies src into dst[cap] and cuts an overlong value before the character
 * that would not fit, so the result stays valid UTF-8. */
static void anth_copy_trunc(char *dst, size_t cap, const char *src, size_t src_len)
{
    size_t n = text_utf8_prefix_len(src, src_len, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

__attribute__((format(printf, 3, 4))) static int anth_bad(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EBADMSG;
}

static int anth_oom(char *err, size_t errlen)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

/* Builds {role, content}; always consumes the content reference. */
static json_t *anth_message_new(const char *role, json_t *content)
{
    json_t *m = json_object();
    int rc;

    if (!m) {
        json_decref(content);
        return NULL;
    }
    /* Both calls run so that content is consumed even if the first fails. */
    rc = json_object_set_new(m, "role", json_string(role));
    rc |= json_object_set_new(m, "content", content);
    if (rc < 0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static int anth_append_message(json_t *messages, const char *role, json_t *content)
{
    json_t *m = anth_message_new(role, content);

    if (!m || json_array_append_new(messages, m) < 0)
        return -ENOMEM;
    return 0;
}

/* ---- request ---------------------------------------------------------- */

static int anth_check_messages(const json_t *messages)
{
    size_t i;
    const json_t *m;

    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return -EINVAL;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");

        if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
            return -EINVAL;
        if (i == 0 && strcmp(role, "user") != 0)
            return -EINVAL;
        if (!json_is_string(content) && !json_is_array(content))
            return -EINVAL;
    }
    return 0;
}

static int anth_check_params(const struct llm_params *p, const json_t *messages)
{
    if (!p || !p->model || !*p->model || !anth_str_valid(p->model))
        return -EINVAL;
    if (p->max_tokens < 1)
        return -EINVAL;
    /* Written this way round so that NaN fails too. */
    if (!(p->temperature >= 0.0 && p->temperature <= 1.0))
        return -EINVAL;
    if (p->system && !anth_str_valid(p->system))
        return -EINVAL;
    if (p->tools && !json_is_array(p->tools))
        return -EINVAL;
    return anth_check_messages(messages);
}

/* ---- prompt caching ---------------------------------------------------- */

static json_t *anth_cache_control(void)
{
    return json_pack("{s:s}", "type", "ephemeral");
}

/* A shallow copy of the object block b with a cache breakpoint; NULL on ENOMEM. */
static json_t *anth_block_with_cache(const json_t *b)
{
    json_t *copy = json_copy((json_t *)b);
    if (!copy || json_object_set_new(copy, "cache_control", anth_cache_control()) < 0) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}

/* tools with a breakpoint on the last definition (the API caches every tool before it). */
static json_t *anth_cached_tools(const json_t *tools)
{
    size_t n = json_array_size(tools);
    json_t *out = json_array();
    int rc = out ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const json_t *t = json_array_get(tools, i);
        rc = i + 1 < n || !json_is_object(t) ? json_array_append(out, (json_t *)t)
                                             : json_array_append_new(out, anth_block_with_cache(t));
    }
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* The system prompt as one text block carrying a breakpoint. */
static json_t *anth_cached_system(const char *system)
{
    return json_pack("[{s:s, s:s, s:o}]", "type", "text", "text", system, "cache_control",
                     anth_cache_control());
}

/* Message m with a breakpoint on its last content block (a string content becomes one text
   block); m itself when it has no block to mark. A new reference either way, NULL on ENOMEM. */
static json_t *anth_message_with_cache(const json_t *m)
{
    const json_t *content = json_object_get(m, "content");
    json_t *blocks;
    if (json_is_string(content)) {
        if (json_string_length(content) == 0)
            return json_incref((json_t *)m);
        blocks = json_pack("[{s:s, s:O, s:o}]", "type", "text", "text", content, "cache_control",
                           anth_cache_control());
        if (!blocks)
            return NULL;
    } else {
        size_t n = json_array_size(content);
        if (n == 0 || !json_is_object(json_array_get(content, n - 1)))
            return json_incref((json_t *)m);
        blocks = json_copy((json_t *)content);
        if (!blocks ||
            json_array_set_new(blocks, n - 1,
                               anth_block_with_cache(json_array_get(content, n - 1))) < 0) {
            json_decref(blocks);
            return NULL;
        }
    }
    json_t *out = json_copy((json_t *)m);
    if (!out || json_object_set_new(out, "content", blocks) < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* messages with breakpoints on the last two user messages (see anthropic.h); the history
   itself is shared, not copied. NULL on ENOMEM. */
static json_t *anth_cached_messages(const json_t *messages)
{
    size_t n = json_array_size(messages), marked = 0;
    size_t mark[2] = {SIZE_MAX, SIZE_MAX};
    for (size_t i = n; i-- > 0 && marked < 2;) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, i), "role"));
        if (role && strcmp(role, "user") == 0)
            mark[marked++] = i;
    }
    json_t *out = json_array();
    int rc = out ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const json_t *m = json_array_get(messages, i);
        rc = i == mark[0] || i == mark[1] ? json_array_append_new(out, anth_message_with_cache(m))
                                          : json_array_append(out, (json_t *)m);
    }
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

char *anthropic_request_prefix(const struct llm_params *p)
{
    json_t *root = json_object();
    if (!root) {
        errno = ENOMEM;
        return NULL;
    }
    /* Every set runs (set_new consumes its value even on failure); the borrowed
     * tools array only gains a reference that json_decref(root) drops. Keys keep
     * their insertion order, so the prefix reads model, max_tokens, system,
     * temperature, tools. */
    int rc = json_object_set_new(root, "model", json_string(p->model));
    rc |= json_object_set_new(root, "max_tokens", json_integer(p->max_tokens));
    if (p->system && *p->system)
        rc |= json_object_set_new(root, "system",
                                  p->prompt_cache ? anth_cached_system(p->system)
                                                  : json_string(p->system));
    rc |= json_object_set_new(root, "temperature", json_real(p->temperature));
    if (p->tools && json_array_size(p->tools) > 0)
        rc |= p->prompt_cache ? json_object_set_new(root, "tools", anth_cached_tools(p->tools))
                              : json_object_set(root, "tools", (json_t *)p->tools);
    char *fixed = rc < 0 ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *prefix = NULL;
    /* "{...}" becomes "{...,\"messages\":" — the object always has a model, so it is never "{}". */
    if (fixed && asprintf(&prefix, "%.*s,\"messages\":", (int)(strlen(fixed) - 1), fixed) < 0)
        prefix = NULL;
    free(fixed);
    if (!prefix)
        errno = ENOMEM;
    return prefix;
}

char *anthropic_build_request_from_prefix(const struct llm_params *p, const char *prefix,
                                          const json_t *messages)
{
    int rc = anth_check_params(p, messages);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    json_t *cached = p->prompt_cache ? anth_cached_messages(messages) : NULL;
    char *msgs =
        !p->prompt_cache || cached ? json_dumps(cached ? cached : messages, JSON_COMPACT) : NULL;
    json_decref(cached);
    char *body = NULL;
    if (!msgs || asprintf(&body, "%s%s}", prefix, msgs) < 0)
        body = NULL;
    free(msgs);
    if (!body) {
        errno = ENOMEM;
        return NULL;
    }
    size_t limit = p->max_request_bytes && p->max_request_bytes < ANTHROPIC_MAX_REQUEST_BYTES
                       ? p->max_request_bytes
                       : ANTHROPIC_MAX_REQUEST_BYTES;
    if (strlen(body) > limit) {
        free(body);
        errno = E2BIG;
        return NULL;
    }
    return body;
}

char *anthropic_build_request(const struct llm_params *p, const json_t *messages)
{
    int rc = anth_check_params(p, messages);
    if (rc < 0) {
        errno = -rc;
        return NULL;
    }
    char *prefix = anthropic_request_prefix(p);
    char *body = prefix ? anthropic_build_request_from_prefix(p, prefix, messages) : NULL;
    free(prefix);
    return body;
}

/* ---- response --------------------------------------------------------- */

const char *llm_stop_name(enum llm_stop s)
{
    if ((unsigned)s > LLM_STOP_UNKNOWN)
        return anth_stop_names[LLM_STOP_UNKNOWN];
    return anth_stop_names[s];
}

static enum llm_stop anth_stop_from_name(const char *name)
{
    for (unsigned s = 0; s < LLM_STOP_UNKNOWN; s++)
        if (strcmp(name, anth_stop_names[s]) == 0)
            return (enum llm_stop)s;
    return LLM_STOP_UNKNOWN;
}

/* Validates block i; returns its enum anth_block or -EBADMSG. */
static int anth_classify_block(const json_t *b, size_t i, char *err, size_t errlen)
{
    const char *type = json_string_value(json_object_get(b, "type"));

    if (!type)
        return anth_bad(err, errlen, "content[%zu] is not an object with a string type", i);
    if (strcmp(type, "text") == 0) {
        if (!json_is_string(json_object_get(b, "text")))
            return anth_bad(err, errlen, "content[%zu]: text block without string text", i);
        return ANTH_BLOCK_TEXT;
    }
    if (strcmp(type, "tool_use") == 0) {
        if (!anth_is_token(json_string_value(json_object_get(b, "id")), ANTHROPIC_MAX_ID_BYTES))
            return anth_bad(err, errlen, "content[%zu]: tool_use without a valid id", i);
        if (!anth_is_token(json_string_value(json_object_get(b, "name")),
                           ANTHROPIC_MAX_TOOL_NAME_BYTES))
            return anth_bad(err, errlen, "content[%zu]: tool_use without a valid name", i);
        if (!json_is_object(json_object_get(b, "input")))
            return anth_bad(err, errlen, "content[%zu]: tool_use input is not an object", i);
        return ANTH_BLOCK_TOOL_USE;
    }
    return ANTH_BLOCK_OTHER;
}

/* Returns a sanitized copy of a text or tool_use block, or NULL (ENOMEM).
 * The input is deep-copied so that history and tool_uses never alias. */
static json_t *anth_sanitized_block(const json_t *b, int kind)
{
    json_t *out = json_object();
    int rc;

    if (!out)
        return NULL;
    rc = json_object_set(out, "type", json_object_get(b, "type"));
    if (kind == ANTH_BLOCK_TEXT) {
        rc |= json_object_set(out, "text", json_object_get(b, "text"));
    } else {
        rc |= json_object_set(out, "id", json_object_get(b, "id"));
        rc |= json_object_set(out, "name", json_object_get(b, "name"));
        rc |= json_object_set_new(out, "input", json_deep_copy(json_object_get(b, "input")));
    }
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static int anth_parse_content(const json_t *content, struct llm_response *out, char *err,
                              size_t errlen)
{
    size_t i, text_len = 0, n_tools = 0, text_at = 0;
    const json_t *b;
    int kind;

    /* Pass 1 validates everything and sizes the outputs exactly. */
    json_array_foreach(content, i, b)
    {
        kind = anth_classify_block(b, i, err, errlen);
        if (kind < 0)
            return kind;
        if (kind == ANTH_BLOCK_TEXT)
            text_len += json_string_length(json_object_get(b, "text"));
        else if (kind == ANTH_BLOCK_TOOL_USE && ++n_tools > ANTHROPIC_MAX_TOOL_USES)
            return anth_bad(err, errlen, "more than %d tool_use blocks in one message",
                            ANTHROPIC_MAX_TOOL_USES);
    }

    out->content = json_array();
    out->text = malloc(text_len + 1);
    if (n_tools > 0)
        out->tool_uses = calloc(n_tools, sizeof(*out->tool_uses));
    if (!out->content || !out->text || (n_tools > 0 && !out->tool_uses))
        return anth_oom(err, errlen);

    json_array_foreach(content, i, b)
    {
        kind = anth_classify_block(b, i, NULL, 0);
        if (kind == ANTH_BLOCK_OTHER)
            continue;
        if (kind == ANTH_BLOCK_TEXT) {
            const json_t *t = json_object_get(b, "text");
            size_t n = json_string_length(t);

            memcpy(out->text + text_at, json_string_value(t), n);
            text_at += n;
            /* The API rejects empty text blocks in a request. */
            if (n == 0)
                continue;
        } else {
            const char *id = json_string_value(json_object_get(b, "id"));

            /* Results are matched to calls by id: two calls with one id cannot be answered. */
            for (size_t k = 0; k < out->n_tool_uses; k++)
                if (strcmp(out->tool_uses[k].id, id) == 0)
                    return anth_bad(err, errlen, "content[%zu]: tool_use id '%.64s' repeated", i,
                                    id);
            struct llm_tool_use *tu = &out->tool_uses[out->n_tool_uses++];

            tu->id = strdup(id);
            tu->name = strdup(json_string_value(json_object_get(b, "name")));
            tu->input = json_incref(json_object_get(b, "input"));
            if (!tu->id || !tu->name)
                return anth_oom(err, errlen);
        }
        if (json_array_append_new(out->content, anth_sanitized_block(b, kind)) < 0)
            return anth_oom(err, errlen);
    }
    out->text[text_at] = '\0';
    return 0;
}

static int64_t anth_count(const json_t *usage, const char *key)
{
    const json_t *v = json_object_get(usage, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    return (int64_t)json_integer_value(v);
}

int64_t llm_tokens_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static char *anth_dup_string_or_empty(const json_t *v)
{
    const char *s = json_string_value(v);

    return strdup(s ? s : "");
}

/* input_tokens counts what was billed as input: plain, cache writes and cache reads. */
static void anth_usage(const json_t *usage, struct llm_usage *ret)
{
    ret->cache_creation_tokens = anth_count(usage, "cache_creation_input_tokens");
    ret->cache_read_tokens = anth_count(usage, "cache_read_input_tokens");
    int64_t in = anth_count(usage, "input_tokens");
    in = llm_tokens_add(in, ret->cache_creation_tokens);
    ret->input_tokens = llm_tokens_add(in, ret->cache_read_tokens);
    ret->output_tokens = anth_count(usage, "output_tokens");
}

int anthropic_parse_usage_detail(const char *body, size_t len, struct llm_usage *ret)
{
    if (!body || len == 0)
        return -EBADMSG;
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *usage = json_object_get(root, "usage");
    int rc = json_is_object(usage) ? 0 : -EBADMSG;
    if (rc == 0)
        anth_usage(usage, ret);
    json_decref(root);
    return rc;
}

int anthropic_parse_usage(const char *body, size_t len, int64_t *ret_in, int64_t *ret_out)
{
    struct llm_usage u;
    int rc = anthropic_parse_usage_detail(body, len, &u);
    if (rc == 0) {
        *ret_in = u.input_tokens;
        *ret_out = u.output_tokens;
    }
    return rc;
}

int anthropic_parse_response(const char *body, size_t len, struct llm_response *ret, char *err,
                             size_t errlen)
{
    struct llm_response out = {0};
    json_error_t jerr;
    json_t *root = NULL;
    const json_t *usage, *stop;
    const char *type;
    int rc;

    if (!ret)
        return -EINVAL;
    if (!body || len == 0)
        return anth_bad(err, errlen, "empty response body");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return anth_oom(err, errlen);
        return anth_bad(err, errlen, "response is not JSON: %s (line %d, column %d)", jerr.text,
                        jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        rc = anth_bad(err, errlen, "response is not a JSON object");
        goto fail;
    }
    type = json_string_value(json_object_get(root, "type"));
    if (!type || strcmp(type, "message") != 0) {
        rc = anth_bad(err, errlen, "response type is not \"message\"");
        goto fail;
    }
    if (!json_is_array(json_object_get(root, "content"))) {
        rc = anth_bad(err, errlen, "response content is not an array");
        goto fail;
    }
    stop = json_object_get(root, "stop_reason");
    if (stop && !json_is_null(stop) && !json_is_string(stop)) {
        rc = anth_bad(err, errlen, "response stop_reason is neither a string nor null");
        goto fail;
    }

    out.id = anth_dup_string_or_empty(json_object_get(root, "id"));
    out.model = anth_dup_string_or_empty(json_object_get(root, "model"));
    out.stop_reason = anth_dup_string_or_empty(stop);
    if (!out.id || !out.model || !out.stop_reason) {
        rc = anth_oom(err, errlen);
        goto fail;
    }
    out.stop = anth_stop_from_name(out.stop_reason);

    rc = anth_parse_content(json_object_get(root, "content"), &out, err, errlen);
    if (rc < 0)
        goto fail;

    usage = json_object_get(root, "usage");
    struct llm_usage u;
    anth_usage(usage, &u);
    out.input_tokens = u.input_tokens;
    out.output_tokens = u.output_tokens;
    out.cache_creation_tokens = u.cache_creation_tokens;
    out.cache_read_tokens = u.cache_read_tokens;

    json_decref(root);
    *ret = out;
    return 0;

fail:
    llm_response_clear(&out);
    json_decref(root);
    return rc;
}

void llm_response_clear(struct llm_response *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->model);
    free(r->stop_reason);
    free(r->text);
    json_decref(r->content);
    for (size_t i = 0; i < r->n_tool_uses; i++) {
        free(r->tool_uses[i].id);
        free(r->tool_uses[i].name);
        json_decref(r->tool_uses[i].input);
    }
    free(r->tool_uses);
    memset(r, 0, sizeof(*r));
}

/* ---- error body ------------------------------------------------------- */

/* Copies the string value of v (if it is one) into dst; returns whether it was. */
static bool anth_take_string(char *dst, size_t cap, const json_t *v)
{
    if (!json_is_string(v))
        return false;
    anth_copy_trunc(dst, cap, json_string_value(v), json_string_length(v));
    return true;
}

int anthropic_parse_error(const char *body, size_t len, struct llm_error *ret)
{
    json_t *root;
    const json_t *error;
    const char *type;
    bool has_type, has_message;

    if (!ret)
        return -EINVAL;
    memset(ret, 0, sizeof(*ret));
    if (!body || len == 0)
        return -EBADMSG;
    /* Best effort: no duplicate-key rejection, take what is there. */
    root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -EBADMSG;
    }
    error = json_object_get(root, "error");
    has_type = anth_take_string(ret->type, sizeof(ret->type), json_object_get(error, "type"));
    has_message =
        anth_take_string(ret->message, sizeof(ret->message), json_object_get(error, "message"));
    anth_take_string(ret->request_id, sizeof(ret->request_id), json_object_get(root, "request_id"));
    type = json_string_value(json_object_get(root, "type"));

    bool matched = type && strcmp(type, "error") == 0 && has_type && has_message;
    json_decref(root);
    return matched ? 0 : -EBADMSG;
}

/* Case-insensitive: does s contain word? */
static bool anth_mentions(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++)
        if (strncasecmp(s, word, n) == 0)
            return true;
    return false;
}

bool anthropic_error_is_spend_limit(long status, const struct llm_error *e)
{
    if (status != 429 || !e)
        return false;
    /* The API words these as a spend or usage limit of the organisation or workspace (and a
       billing error type where it uses one); rate limits speak of rates and tokens per minute. */
    return strcmp(e->type, "billing_error") == 0 || anth_mentions(e->message, "spend limit") ||
           anth_mentions(e->message, "spending limit") || anth_mentions(e->message, "usage limit");
}

/* ---- history builders ------------------------------------------------- */

int anthropic_append_user_text(json_t *messages, const char *text)
{
    json_t *content;

    if (!json_is_array(messages) || !text || !*text || !anth_str_valid(text))
        return -EINVAL;
    content = json_string(text);
    if (!content)
        return -ENOMEM;
    return anth_append_message(messages, "user", content);
}

int anthropic_append_assistant(json_t *messages, const json_t *content)
{
    size_t i;
    const json_t *b;
    json_t *copy;

    if (!json_is_array(messages) || !json_is_array(content) || json_array_size(content) == 0)
        return -EINVAL;
    json_array_foreach(content, i, b)
    {
        if (!json_is_object(b))
            return -EINVAL;
    }
    copy = json_deep_copy(content);
    if (!copy)
        return -ENOMEM;
    return anth_append_message(messages, "assistant", copy);
}

static int anth_check_tool_results(const struct llm_tool_result *results, size_t n)
{
    if (!results || n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        const struct llm_tool_result *r = &results[i];

        if (!anth_is_token(r->tool_use_id, ANTHROPIC_MAX_ID_BYTES) || !anth_str_valid(r->text))
            return -EINVAL;
        /* The API answers 400 to an error result without content. */
        if (r->is_error && !*r->text)
            return -EINVAL;
        for (size_t k = 0; k < i; k++)
            if (strcmp(results[k].tool_use_id, r->tool_use_id) == 0)
                return -EINVAL;
    }
    return 0;
}

static json_t *anth_tool_result_block(const struct llm_tool_result *r)
{
    json_t *b = json_object();
    int rc;

    if (!b)
        return NULL;
    rc = json_object_set_new(b, "type", json_string("tool_result"));
    rc |= json_object_set_new(b, "tool_use_id", json_string(r->tool_use_id));
    rc |= json_object_set_new(b, "content", json_string(r->text));
    if (r->is_error)
        rc |= json_object_set_new(b, "is_error", json_true());
    if (rc < 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

int anthropic_append_tool_results(json_t *messages, const struct llm_tool_result *results, size_t n)
{
    json_t *blocks;
    int rc;

    if (!json_is_array(messages))
        return -EINVAL;
    rc = anth_check_tool_results(results, n);
    if (rc < 0)
        return rc;
    blocks = json_array();
    if (!blocks)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(blocks, anth_tool_result_block(&results[i])) < 0) {
            json_decref(blocks);
            return -ENOMEM;
        }
    }
    return anth_append_message(messages, "user", blocks);
}
