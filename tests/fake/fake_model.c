/*
 * fake_model.c — the deterministic rule-based "model" behind POST
 * /v1/messages.
 *
 * First it validates the request the way the real API does (required
 * fields, user/assistant alternation, one tool_result per tool_use right
 * after it, results first), because those 400s are exactly the agent-loop
 * bugs integration tests must catch. Then it answers from the last message
 * only, with fixed rules (README.md): tool results are quoted back, user
 * text is scanned for intents that become tool_use blocks, and bracketed
 * markers ("[pause]", "[refuse]", ...) produce the rare stop reasons. No
 * clock, no I/O: the same body and seq always give the same answer.
 */
#include "fake_upstream.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most tool_use blocks emitted in one answer. */
#define MODEL_MAX_TOOL_USES 16
#define MODEL_ERR_BYTES     512

struct model_err {
    char msg[MODEL_ERR_BYTES];
};

static int fail(struct model_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct model_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- validation ----------------------------------------------------- */

static const char *block_type(const json_t *block)
{
    return json_string_value(json_object_get(block, "type"));
}

static int check_tool_result_content(const json_t *content, size_t mi, size_t bi,
                                     struct model_err *e)
{
    if (!content || json_is_string(content))
        return 0;
    if (!json_is_array(content))
        return fail(e, "messages.%zu.content.%zu.content: Input should be a valid string or list",
                    mi, bi);
    size_t i;
    const json_t *b;
    json_array_foreach(content, i, b)
    {
        if (!json_is_object(b) || !block_type(b))
            return fail(e,
                        "messages.%zu.content.%zu.content.%zu: Input should be an object with "
                        "a type",
                        mi, bi, i);
        if (strcmp(block_type(b), "text") == 0 && !json_is_string(json_object_get(b, "text")))
            return fail(e, "messages.%zu.content.%zu.content.%zu.text: Field required", mi, bi, i);
    }
    return 0;
}

static int check_block(const json_t *b, const char *role, size_t mi, size_t bi, struct model_err *e)
{
    const char *type = block_type(b);
    if (!json_is_object(b) || !type)
        return fail(e, "messages.%zu.content.%zu.type: Field required", mi, bi);
    if (strcmp(type, "text") == 0) {
        if (!json_is_string(json_object_get(b, "text")))
            return fail(e, "messages.%zu.content.%zu.text: Field required", mi, bi);
    } else if (strcmp(type, "tool_use") == 0) {
        if (strcmp(role, "assistant") != 0)
            return fail(e,
                        "messages.%zu.content.%zu: tool_use blocks are only allowed in "
                        "assistant messages",
                        mi, bi);
        if (!json_is_string(json_object_get(b, "id")) ||
            !json_is_string(json_object_get(b, "name")) ||
            !json_is_object(json_object_get(b, "input")))
            return fail(e,
                        "messages.%zu.content.%zu: tool_use needs string id, string name "
                        "and object input",
                        mi, bi);
    } else if (strcmp(type, "tool_result") == 0) {
        if (strcmp(role, "user") != 0)
            return fail(e,
                        "messages.%zu.content.%zu: tool_result blocks are only allowed in "
                        "user messages",
                        mi, bi);
        if (!json_is_string(json_object_get(b, "tool_use_id")))
            return fail(e, "messages.%zu.content.%zu.tool_use_id: Field required", mi, bi);
        const json_t *is_error = json_object_get(b, "is_error");
        if (is_error && !json_is_boolean(is_error))
            return fail(e, "messages.%zu.content.%zu.is_error: Input should be a valid boolean", mi,
                        bi);
        return check_tool_result_content(json_object_get(b, "content"), mi, bi, e);
    }
    return 0;
}

/* Number of tool_use blocks in an assistant message. */
static size_t count_tool_uses(const json_t *content)
{
    size_t n = 0, i;
    const json_t *b;
    if (!json_is_array(content))
        return 0;
    json_array_foreach(content, i, b)
    {
        const char *type = block_type(b);
        n += type && strcmp(type, "tool_use") == 0;
    }
    return n;
}

static bool has_tool_use_id(const json_t *assistant_content, const char *id)
{
    size_t i;
    const json_t *b;
    json_array_foreach(assistant_content, i, b)
    {
        const char *type = block_type(b);
        if (type && strcmp(type, "tool_use") == 0 &&
            strcmp(json_string_value(json_object_get(b, "id")), id) == 0)
            return true;
    }
    return false;
}

/* Checks the user message at mi against the assistant message before it. */
static int check_results_follow_uses(const json_t *prev_content, const json_t *content, size_t mi,
                                     struct model_err *e)
{
    size_t uses = count_tool_uses(prev_content);
    size_t n = json_is_array(content) ? json_array_size(content) : 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *b = json_array_get(content, i);
        bool is_result = strcmp(block_type(b), "tool_result") == 0;
        const char *id = is_result ? json_string_value(json_object_get(b, "tool_use_id")) : NULL;
        if (i < uses && !is_result)
            break; /* reported below as missing results */
        if (is_result && (i >= uses || !has_tool_use_id(prev_content, id)))
            return fail(e,
                        "messages.%zu.content.%zu: unexpected `tool_use_id` found in "
                        "`tool_result` blocks: %.100s. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message.",
                        mi, i, id);
        for (size_t j = 0; is_result && j < i; j++) {
            const char *other =
                json_string_value(json_object_get(json_array_get(content, j), "tool_use_id"));
            if (strcmp(other, id) == 0)
                return fail(e, "messages.%zu.content.%zu: duplicate `tool_use_id` %.100s", mi, i,
                            id);
        }
    }
    size_t results = 0;
    while (results < n && results < uses &&
           strcmp(block_type(json_array_get(content, results)), "tool_result") == 0)
        results++;
    if (results < uses)
        return fail(e,
                    "messages.%zu: `tool_use` ids were found without `tool_result` blocks "
                    "immediately after. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message, and the `tool_result` blocks "
                    "must come first.",
                    mi - 1);
    return 0;
}

static int check_message(const json_t *m, size_t mi, const json_t *prev, struct model_err *e)
{
    if (!json_is_object(m))
        return fail(e, "messages.%zu: Input should be an object", mi);
    const char *role = json_string_value(json_object_get(m, "role"));
    const json_t *content = json_object_get(m, "content");
    if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0))
        return fail(e, "messages.%zu.role: Input should be 'user' or 'assistant'", mi);
    if (!json_is_string(content) && !json_is_array(content))
        return fail(e, "messages.%zu.content: Input should be a valid string or list", mi);
    if (mi == 0 && strcmp(role, "user") != 0)
        return fail(e, "messages: first message must use the \"user\" role");
    const char *prev_role = prev ? json_string_value(json_object_get(prev, "role")) : NULL;
    if (prev_role && strcmp(prev_role, role) == 0)
        return fail(e,
                    "messages: roles must alternate between \"user\" and \"assistant\", but found "
                    "multiple \"%s\" roles in a row",
                    role);
    size_t bi;
    const json_t *b;
    if (json_is_array(content)) {
        json_array_foreach(content, bi, b)
        {
            int rc = check_block(b, role, mi, bi, e);
            if (rc < 0)
                return rc;
        }
    }
    if (strcmp(role, "user") == 0)
        return check_results_follow_uses(prev ? json_object_get(prev, "content") : NULL, content,
                                         mi, e);
    return 0;
}

static int check_tools(const json_t *tools, struct model_err *e)
{
    if (!tools)
        return 0;
    if (!json_is_array(tools))
        return fail(e, "tools: Input should be a valid list");
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        const json_t *schema = json_object_get(t, "input_schema");
        const char *stype = json_string_value(json_object_get(schema, "type"));
        if (!json_is_object(t) || !name || !*name || strlen(name) > 128)
            return fail(e, "tools.%zu.name: Field required (1..128 characters)", i);
        if (!json_is_object(schema) || !stype || strcmp(stype, "object") != 0)
            return fail(e, "tools.%zu.input_schema.type: Input should be 'object'", i);
    }
    return 0;
}

static int check_request(const json_t *body, struct model_err *e)
{
    if (!json_is_object(body))
        return fail(e, "There was an error parsing the body: expected a JSON object");
    const json_t *model = json_object_get(body, "model");
    const json_t *max_tokens = json_object_get(body, "max_tokens");
    const json_t *messages = json_object_get(body, "messages");
    if (!model)
        return fail(e, "model: Field required");
    if (!json_is_string(model) || json_string_length(model) == 0)
        return fail(e, "model: Input should be a non-empty string");
    if (!max_tokens)
        return fail(e, "max_tokens: Field required");
    if (!json_is_integer(max_tokens) || json_integer_value(max_tokens) < 1)
        return fail(e, "max_tokens: Input should be an integer greater than or equal to 1");
    if (!messages)
        return fail(e, "messages: Field required");
    if (!json_is_array(messages))
        return fail(e, "messages: Input should be a valid list");
    if (json_array_size(messages) == 0)
        return fail(e, "messages: at least one message is required");
    int rc = check_tools(json_object_get(body, "tools"), e);
    if (rc < 0)
        return rc;
    const json_t *prev = NULL, *m;
    size_t mi;
    json_array_foreach(messages, mi, m)
    {
        if ((rc = check_message(m, mi, prev, e)) < 0)
            return rc;
        prev = m;
    }
    if (count_tool_uses(json_object_get(prev, "content")) > 0)
        return fail(e,
                    "messages.%zu: `tool_use` ids were found without `tool_result` blocks "
                    "immediately after. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message.",
                    mi - 1);
    return 0;
}

/* ---- reading the conversation --------------------------------------- */

/* A growable string; on OOM it stays NULL and the answer becomes a 500. */
struct sbuf {
    char *s;
    size_t len;
    bool oom;
};

static void sb_addn(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    char *grown = realloc(b->s, b->len + n + 1);
    if (!grown) {
        b->oom = true;
        return;
    }
    memcpy(grown + b->len, s, n);
    b->len += n;
    grown[b->len] = '\0';
    b->s = grown;
}

static void sb_add(struct sbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

static bool content_has(const json_t *content, const char *type)
{
    size_t i;
    const json_t *b;
    if (!json_is_array(content))
        return false;
    json_array_foreach(content, i, b)
    {
        if (strcmp(block_type(b), type) == 0)
            return true;
    }
    return false;
}

/* A content value's text: the string itself, or its text blocks joined by sep. */
static void content_text(const json_t *content, const char *sep, struct sbuf *out)
{
    size_t i, n = 0;
    const json_t *b;
    if (json_is_string(content)) {
        sb_add(out, json_string_value(content));
        return;
    }
    json_array_foreach(content, i, b)
    {
        if (strcmp(block_type(b), "text") != 0)
            continue;
        if (n++ > 0)
            sb_add(out, sep);
        sb_add(out, json_string_value(json_object_get(b, "text")));
    }
}

/* The text of a message: its string content, or its text blocks joined by newlines. */
static void message_text(const json_t *m, struct sbuf *out)
{
    sb_add(out, "");
    content_text(json_object_get(m, "content"), "\n", out);
}

static bool is_user_text_message(const json_t *m)
{
    const json_t *content = json_object_get(m, "content");
    if (strcmp(json_string_value(json_object_get(m, "role")), "user") != 0)
        return false;
    if (json_is_string(content))
        return true;
    return content_has(content, "text") && !content_has(content, "tool_result");
}

static void tool_result_text(const json_t *block, struct sbuf *out)
{
    if (json_is_true(json_object_get(block, "is_error")))
        sb_add(out, "error: ");
    content_text(json_object_get(block, "content"), " ", out);
}

/* Whether the request lets the model call this tool (declared, tool_choice not "none"). */
static bool tool_allowed(const json_t *body, const char *name)
{
    const json_t *tools = json_object_get(body, "tools");
    const char *choice =
        json_string_value(json_object_get(json_object_get(body, "tool_choice"), "type"));
    size_t i;
    const json_t *t;
    if (choice && strcmp(choice, "none") == 0)
        return false;
    if (!tools)
        return true; /* README: without a tools list every tool counts as declared */
    json_array_foreach(tools, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            return true;
    }
    return false;
}

/* ---- intents -------------------------------------------------------- */

struct intent {
    size_t start;     /* where the trigger phrase starts */
    size_t arg_start; /* argument, trimmed */
    size_t arg_end;
    const char *tool;  /* tool name */
    const char *field; /* input field */
};

struct intents {
    struct intent items[MODEL_MAX_TOOL_USES];
    size_t len;
    char calc[256]; /* the calculator expression, "" when none */
};

static bool is_space(char c)
{
    return isspace((unsigned char)c) != 0;
}

/* End of a "weather in X" / "search for X" argument: '?', '!', '.', ',', " and " or the end. */
static size_t short_arg_end(const char *text, size_t i)
{
    for (; text[i]; i++) {
        if (strchr("?!.,", text[i]) || strncasecmp(text + i, " and ", 5) == 0)
            break;
    }
    return i;
}

static void trim(const char *text, size_t *a, size_t *b)
{
    while (*a < *b && is_space(text[*a]))
        (*a)++;
    while (*b > *a && is_space(text[*b - 1]))
        (*b)--;
}

static void add_candidate(struct intent *cands, size_t *n, size_t max, struct intent c)
{
    if (*n < max && c.arg_end > c.arg_start)
        cands[(*n)++] = c;
}

/* Finds every "weather in X", "search for X" and the first "save note: X". */
static size_t find_candidates(const char *text, struct intent *cands, size_t max)
{
    static const struct {
        const char *phrase;
        const char *tool;
        const char *field;
        bool to_end;
    } rules[] = {
        {"weather in", "get_weather", "location", false},
        {"search for", "web_search", "query", false},
        {"save note:", "save_note", "content", true},
    };
    size_t n = 0;
    for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
        size_t plen = strlen(rules[r].phrase);
        const char *p = text;
        const char *hit;
        while ((hit = strcasestr(p, rules[r].phrase)) != NULL) {
            size_t start = (size_t)(hit - text), a = start + plen;
            p = hit + plen;
            /* "weather inside" is not "weather in <place>". */
            if (!rules[r].to_end && !is_space(text[a]))
                continue;
            size_t b = rules[r].to_end ? strlen(text) : short_arg_end(text, a);
            trim(text, &a, &b);
            add_candidate(cands, &n, max,
                          (struct intent){start, a, b, rules[r].tool, rules[r].field});
            if (rules[r].to_end)
                break;
        }
    }
    return n;
}

static int by_start(const void *x, const void *y)
{
    const struct intent *a = x, *b = y;
    return (a->start > b->start) - (a->start < b->start);
}

static bool is_calc_char(char c)
{
    return isdigit((unsigned char)c) || (c != '\0' && strchr(" .+-*/%^()", c));
}

/* Whether [a, b) has a digit and an operator with an operand before it. */
static bool is_expression(const char *s, size_t a, size_t b)
{
    bool digit = false, binary = false;
    for (size_t i = a; i < b; i++) {
        digit = digit || isdigit((unsigned char)s[i]);
        if (!strchr("+-*/%^", s[i]))
            continue;
        size_t j = i;
        while (j > a && s[j - 1] == ' ')
            j--;
        if (j > a && (isdigit((unsigned char)s[j - 1]) || s[j - 1] == '.' || s[j - 1] == ')'))
            binary = true;
    }
    return digit && binary;
}

/* The longest arithmetic run of masked text (other intents' phrases blanked out). */
static void find_expression(const char *masked, char *out, size_t out_bytes)
{
    size_t best_a = 0, best_b = 0;
    out[0] = '\0';
    for (size_t i = 0; masked[i];) {
        if (!is_calc_char(masked[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (masked[j] && is_calc_char(masked[j]))
            j++;
        size_t a = i, b = j;
        trim(masked, &a, &b);
        /* A sentence's full stop ("What is 2+2.") is not part of the expression. */
        while (b > a && masked[b - 1] == '.')
            b--;
        trim(masked, &a, &b);
        if (b - a > best_b - best_a && is_expression(masked, a, b)) {
            best_a = a;
            best_b = b;
        }
        i = j;
    }
    if (best_b > best_a && best_b - best_a < out_bytes) {
        memcpy(out, masked + best_a, best_b - best_a);
        out[best_b - best_a] = '\0';
    }
}

static int detect_intents(const char *text, struct intents *out)
{
    struct intent cands[3 * MODEL_MAX_TOOL_USES];
    size_t n = find_candidates(text, cands, sizeof(cands) / sizeof(cands[0]));
    char *masked = strdup(text);
    if (!masked)
        return -ENOMEM;
    qsort(cands, n, sizeof(cands[0]), by_start);
    size_t covered_to = 0;
    out->len = 0;
    for (size_t i = 0; i < n; i++) {
        /* A phrase inside another intent's argument belongs to that argument. */
        if (cands[i].start < covered_to)
            continue;
        covered_to = cands[i].arg_end;
        memset(masked + cands[i].start, '\x01', cands[i].arg_end - cands[i].start);
        if (out->len < MODEL_MAX_TOOL_USES - 1)
            out->items[out->len++] = cands[i];
    }
    find_expression(masked, out->calc, sizeof(out->calc));
    free(masked);
    return 0;
}

/* ---- building the answer -------------------------------------------- */

struct answer {
    json_t *content;
    const char *stop_reason;
    size_t tool_uses;
    uint64_t seq;
};

static void add_text(struct answer *a, const char *text)
{
    json_t *t = fake_json_string_lossy(text);
    json_array_append_new(a->content, json_pack("{s:s,s:o*}", "type", "text", "text", t));
}

static void add_tool_use(struct answer *a, const char *name, const char *field, const char *value)
{
    char id[64];
    snprintf(id, sizeof(id), "toolu_%llu_%zu", (unsigned long long)a->seq, ++a->tool_uses);
    json_t *v = fake_json_string_lossy(value);
    json_array_append_new(a->content, json_pack("{s:s,s:s,s:s,s:{s:o*}}", "type", "tool_use", "id",
                                                id, "name", name, "input", field, v));
}

/* Answer to a user message that carries tool results. */
static void answer_tool_results(const json_t *body, const json_t *messages, const json_t *last,
                                struct answer *a)
{
    struct sbuf first = {0};
    message_text(json_array_get(messages, 0), &first);
    bool loop = first.s && strcasestr(first.s, "[loop]") && tool_allowed(body, "calculator");
    free(first.s);
    if (loop) {
        add_tool_use(a, "calculator", "expression", "1+1");
        a->stop_reason = "tool_use";
        return;
    }
    struct sbuf out = {0};
    size_t i, n = 0;
    const json_t *b;
    sb_add(&out, "Here is what I found: ");
    json_array_foreach(json_object_get(last, "content"), i, b)
    {
        if (strcmp(block_type(b), "tool_result") != 0)
            continue;
        if (n++ > 0)
            sb_add(&out, " | ");
        tool_result_text(b, &out);
    }
    if (out.s)
        add_text(a, out.s);
    free(out.s);
    a->stop_reason = "end_turn";
}

static size_t count_user_texts(const json_t *messages)
{
    size_t i, n = 0;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        n += is_user_text_message(m);
    }
    return n;
}

static void answer_intents_or_echo(const json_t *body, const json_t *messages, const char *text,
                                   struct answer *a)
{
    struct intents in = {0};
    struct intent calls[MODEL_MAX_TOOL_USES];
    size_t n = 0;
    if (detect_intents(text, &in) < 0)
        return;
    for (size_t i = 0; i < in.len; i++) {
        if (tool_allowed(body, in.items[i].tool))
            calls[n++] = in.items[i];
    }
    bool calc = in.calc[0] && tool_allowed(body, "calculator");
    size_t total = n + calc;
    if (total == 0) {
        char suffix[48] = "";
        if (json_array_size(messages) > 1)
            snprintf(suffix, sizeof(suffix), " (turn %zu)", count_user_texts(messages));
        struct sbuf out = {0};
        sb_add(&out, "You said: ");
        sb_add(&out, text);
        sb_add(&out, suffix);
        if (out.s)
            add_text(a, out.s);
        free(out.s);
        a->stop_reason = "end_turn";
        return;
    }
    if (total > 1) {
        char intro[48];
        snprintf(intro, sizeof(intro), "I'll use %zu tools.", total);
        add_text(a, intro);
    }
    for (size_t i = 0; i < n; i++) {
        char *arg = strndup(text + calls[i].arg_start, calls[i].arg_end - calls[i].arg_start);
        if (arg)
            add_tool_use(a, calls[i].tool, calls[i].field, arg);
        free(arg);
    }
    if (calc)
        add_tool_use(a, "calculator", "expression", in.calc);
    a->stop_reason = "tool_use";
}

/* "[slow:N]" → N (capped), or -1. */
static int64_t slow_marker(const char *text)
{
    const char *m = strcasestr(text, "[slow:");
    if (!m)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(m + 6, &end, 10);
    if (end == m + 6 || *end != ']' || errno != 0)
        return -1;
    return v > FAKE_MAX_DELAY_MS ? FAKE_MAX_DELAY_MS : (int64_t)v;
}

/* Answer to a user message with text; returns the delay asked for, or -1. */
static int64_t answer_text(const json_t *body, const json_t *messages, const char *text,
                           struct answer *a)
{
    if (strcasestr(text, "[pause]")) {
        add_text(a, "thinking\xe2\x80\xa6");
        a->stop_reason = "pause_turn";
    } else if (strcasestr(text, "[refuse]")) {
        add_text(a, "I can't help with that.");
        a->stop_reason = "refusal";
    } else if (strcasestr(text, "[max_tokens]")) {
        add_text(a, "truncated");
        a->stop_reason = "max_tokens";
    } else {
        if (strcasestr(text, "[unknown_block]"))
            json_array_append_new(a->content,
                                  json_pack("{s:s,s:i}", "type", "mystery_block", "data", 1));
        answer_intents_or_echo(body, messages, text, a);
        if (strcasestr(text, "[unknown_stop]"))
            a->stop_reason = "brand_new_reason";
    }
    return slow_marker(text);
}

static json_t *response_json(const json_t *body, size_t body_bytes, struct answer *a)
{
    char id[48];
    snprintf(id, sizeof(id), "msg_fake_%llu", (unsigned long long)a->seq);
    char *content_text = json_dumps(a->content, FAKE_JSON_DUMP_FLAGS);
    if (!content_text)
        return NULL;
    size_t in_tokens = body_bytes / 4, out_tokens = strlen(content_text) / 4;
    free(content_text);
    json_t *resp =
        json_pack("{s:s,s:s,s:s,s:O,s:O,s:s,s:n,s:{s:I,s:I}}", "id", id, "type", "message", "role",
                  "assistant", "model", json_object_get(body, "model"), "content", a->content,
                  "stop_reason", a->stop_reason, "stop_sequence", "usage", "input_tokens",
                  (json_int_t)(in_tokens ? in_tokens : 1), "output_tokens",
                  (json_int_t)(out_tokens ? out_tokens : 1));
    return resp;
}

void fake_model_answer(const json_t *body, size_t body_bytes, uint64_t seq,
                       struct fake_reply *ret_reply)
{
    struct model_err err;
    if (!body) {
        fake_reply_anthropic_error(ret_reply, 400, NULL,
                                   "There was an error parsing the body: invalid JSON", seq);
        return;
    }
    if (check_request(body, &err) < 0) {
        fake_reply_anthropic_error(ret_reply, 400, NULL, err.msg, seq);
        return;
    }
    const json_t *messages = json_object_get(body, "messages");
    const json_t *last = json_array_get(messages, json_array_size(messages) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    struct answer a = {.content = json_array(), .stop_reason = "end_turn", .seq = seq};
    int64_t delay_ms = -1;
    if (!a.content) {
        fake_reply_set(ret_reply, 500, NULL);
        return;
    }
    if (strcmp(role, "assistant") == 0) {
        add_text(&a, "continued.");
    } else if (content_has(json_object_get(last, "content"), "tool_result")) {
        answer_tool_results(body, messages, last, &a);
    } else {
        struct sbuf text = {0};
        message_text(last, &text);
        if (text.s)
            delay_ms = answer_text(body, messages, text.s, &a);
        free(text.s);
    }
    fake_reply_set(ret_reply, 200, response_json(body, body_bytes, &a));
    ret_reply->delay_ms = delay_ms;
    json_decref(a.content);
}
