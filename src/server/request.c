/*
 * request.c — validation of POST /v1/agent bodies and request headers, and the
 * JSON error body (see request.h and docs/API.md).
 *
 * UTF-8 is checked on the raw bytes before jansson sees them so that the
 * client gets "input: not valid UTF-8" instead of a lexer message, and so the
 * rule is ours (strict) rather than whatever the JSON library accepts.
 */
#include "agentd/request.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentd/text.h"

#include <openssl/evp.h>

/* Client-supplied names quoted in messages are cut to this many bytes so an
 * error body never echoes a large part of the request. */
#define REQUEST_NAME_SHOW_MAX_BYTES 40
#define REQUEST_NAME_BUF_BYTES      (REQUEST_NAME_SHOW_MAX_BYTES + 8)

static const char *const request_fields[] = {
    "input", "conversation_id", "max_iterations", "timeout_ms", "priority", "stream",
};

/* Replaces, in place, every invalid UTF-8 byte with '?': used on messages that
 * may have been cut mid-character by a fixed-size buffer. */
static void utf8_repair_in_place(char *s)
{
    size_t len = strlen(s);
    size_t i = 0;

    while (i < len) {
        size_t n = text_utf8_char_len(s + i, len - i);
        if (n == 0) {
            s[i] = '?';
            n = 1;
        }
        i += n;
    }
}

/* Copies a client-supplied name for quoting in a message: bounded, control
 * characters shown as '?', "..." when cut. src must be valid UTF-8. */
static void name_copy(char out[REQUEST_NAME_BUF_BYTES], const char *src, size_t len)
{
    size_t i = 0, o = 0;

    while (i < len) {
        size_t n = text_utf8_char_len(src + i, len - i);
        if (n == 0)
            n = 1;
        if (o + n > REQUEST_NAME_SHOW_MAX_BYTES) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)src[i];
        if (n == 1 && (c < 0x20 || c == 0x7f))
            out[o] = '?';
        else
            memcpy(out + o, src + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the message (always valid UTF-8) and returns -EINVAL. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    utf8_repair_in_place(err);
    return -EINVAL;
}

/* Decodes a raw JSON string token (quotes included) into a quotable name. */
static void name_from_token(char out[REQUEST_NAME_BUF_BYTES], const char *tok, size_t len)
{
    json_t *s = json_loadb(tok, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    if (json_is_string(s))
        name_copy(out, json_string_value(s), json_string_length(s));
    else
        name_copy(out, tok, len);
    json_decref(s);
}

/*
 * Writes the error for invalid UTF-8 at offset `bad`, naming the top-level
 * field whose value holds it. A light scan (strings, escapes, nesting) is
 * enough: everything before `bad` is valid UTF-8, and when the JSON is
 * malformed the worst outcome is a less precise field name.
 */
static int fail_utf8(const char *body, size_t bad, char *err, size_t errlen)
{
    int depth = 0;
    bool top_is_object = false, in_str = false, esc = false;
    bool str_is_key = false, expect_key = false, have_key = false;
    size_t str_start = 0, key_start = 0, key_len = 0;
    char name[REQUEST_NAME_BUF_BYTES];

    for (size_t i = 0; i < bad; i++) {
        char c = body[i];
        if (in_str) {
            if (esc) {
                esc = false;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
                if (str_is_key) {
                    key_start = str_start;
                    key_len = i + 1 - str_start;
                    have_key = true;
                } else if (depth == 1) {
                    have_key = false; /* the field's value is complete */
                }
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = true;
            str_start = i;
            str_is_key = depth == 1 && top_is_object && expect_key;
            expect_key = false;
            break;
        case '{':
        case '[':
            if (depth == 0)
                top_is_object = c == '{';
            depth++;
            if (depth == 1 && top_is_object) {
                expect_key = true;
                have_key = false;
            }
            break;
        case '}':
        case ']':
            depth--;
            break;
        case ',':
            if (depth == 1 && top_is_object) {
                expect_key = true;
                have_key = false;
            }
            break;
        default:
            break;
        }
    }
    if (in_str && str_is_key)
        return fail(err, errlen, "body: a field name is not valid UTF-8");
    if (depth >= 1 && top_is_object && have_key) {
        name_from_token(name, body + key_start, key_len);
        return fail(err, errlen, "%s: not valid UTF-8", name);
    }
    return fail(err, errlen, "body: not valid UTF-8");
}

/*
 * jansson reports a duplicate key right after lexing it, with error.position
 * just past its closing quote; walk back to the opening quote to name the key
 * whatever its length (jansson's own text quotes only short tokens).
 */
static int fail_duplicate(const char *body, size_t len, const json_error_t *jerr, char *err,
                          size_t errlen)
{
    size_t end = jerr->position > 0 ? (size_t)jerr->position : 0;
    char name[REQUEST_NAME_BUF_BYTES];

    if (end >= 2 && end <= len && body[end - 1] == '"') {
        for (size_t j = end - 1; j-- > 0;) {
            if (body[j] != '"')
                continue;
            size_t slashes = 0;
            while (slashes < j && body[j - 1 - slashes] == '\\')
                slashes++;
            if (slashes % 2 == 0) {
                name_from_token(name, body + j, end - j);
                return fail(err, errlen, "%s: duplicate key (each field may appear once)", name);
            }
        }
    }
    return fail(err, errlen, "body: duplicate key (%s)", jerr->text);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

static bool field_known(const char *key)
{
    for (size_t i = 0; i < sizeof(request_fields) / sizeof(request_fields[0]); i++)
        if (strcmp(key, request_fields[i]) == 0)
            return true;
    return false;
}

/* Rejects the first unknown field in body order. jansson keys cannot hold NUL
 * (it refuses them), so strlen is the key's length. */
static int check_unknown_fields(json_t *obj, char *err, size_t errlen)
{
    const char *key;
    json_t *value;
    char name[REQUEST_NAME_BUF_BYTES];

    json_object_foreach(obj, key, value)
    {
        (void)value;
        if (!field_known(key)) {
            name_copy(name, key, strlen(key));
            return fail(err, errlen,
                        "%s: unknown field (allowed: input, conversation_id, "
                        "max_iterations, timeout_ms, priority, stream)",
                        name);
        }
    }
    return 0;
}

/* Fetches an optional string field; *ret_s stays NULL when absent. Rejects
 * other types and embedded NUL. */
static int get_string(json_t *obj, const char *field, const char *expected, const char **ret_s,
                      size_t *ret_len, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, field);

    *ret_s = NULL;
    *ret_len = 0;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, "%s: expected %s, got %s", field, expected, type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(s, '\0', len))
        return fail(err, errlen, "%s: must not contain NUL characters (\\u0000)", field);
    *ret_s = s;
    *ret_len = len;
    return 0;
}

/* Fetches an optional integer field in min..max; *ret_value = 0 when absent. */
static int get_int(json_t *obj, const char *field, long long min, long long max,
                   long long *ret_value, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, field);

    *ret_value = 0;
    if (!v)
        return 0;
    if (max < min)
        return fail(err, errlen, "%s: not accepted by this server (its cap is %lld)", field, max);
    if (!json_is_integer(v))
        return fail(err, errlen, "%s: expected an integer %lld..%lld, got %s", field, min, max,
                    type_name(v));
    long long n = json_integer_value(v);
    if (n < min || n > max)
        return fail(err, errlen, "%s: expected an integer %lld..%lld, got %lld", field, min, max,
                    n);
    *ret_value = n;
    return 0;
}

static int check_input(json_t *obj, const char **ret_s, size_t *ret_len, char *err, size_t errlen)
{
    const char *s;
    size_t len;
    int r = get_string(obj, "input", "a string of 1..100000 bytes", &s, &len, err, errlen);

    if (r < 0)
        return r;
    if (!s)
        return fail(err, errlen,
                    "input: required field is missing (expected a string of 1..%d bytes)",
                    AGENT_INPUT_MAX_BYTES);
    if (len == 0)
        return fail(err, errlen, "input: expected a string of 1..%d bytes, got an empty string",
                    AGENT_INPUT_MAX_BYTES);
    if (len > AGENT_INPUT_MAX_BYTES)
        return fail(err, errlen, "input: expected a string of 1..%d bytes, got %zu bytes",
                    AGENT_INPUT_MAX_BYTES, len);
    *ret_s = s;
    *ret_len = len;
    return 0;
}

static int check_conversation_id(json_t *obj, const char **ret_s, char *err, size_t errlen)
{
    static const char expected[] = "a string of 1..128 characters of [A-Za-z0-9._:-]";
    const char *s;
    size_t len;
    int r = get_string(obj, "conversation_id", expected, &s, &len, err, errlen);

    if (r < 0)
        return r;
    if (s && len == 0)
        return fail(err, errlen, "conversation_id: expected %s, got an empty string", expected);
    if (s && len > AGENT_ID_MAX_BYTES)
        return fail(err, errlen, "conversation_id: expected %s, got %zu bytes", expected, len);
    if (s && !request_conversation_id_valid(s))
        return fail(err, errlen, "conversation_id: expected %s, got a character outside that set",
                    expected);
    *ret_s = s;
    return 0;
}

static int check_priority(json_t *obj, enum agent_priority *ret_priority, char *err, size_t errlen)
{
    static const char expected[] = "\"high\" or \"low\"";
    const char *s;
    size_t len;
    char name[REQUEST_NAME_BUF_BYTES];
    int r = get_string(obj, "priority", expected, &s, &len, err, errlen);

    if (r < 0)
        return r;
    if (!s || strcmp(s, "high") == 0) {
        *ret_priority = AGENT_PRIORITY_HIGH;
        return 0;
    }
    if (strcmp(s, "low") == 0) {
        *ret_priority = AGENT_PRIORITY_LOW;
        return 0;
    }
    name_copy(name, s, len);
    return fail(err, errlen, "priority: expected %s, got \"%s\"", expected, name);
}

/* The optional boolean "stream" (false when absent). */
static int check_stream(json_t *obj, bool *ret_stream, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, "stream");
    if (v && !json_is_boolean(v))
        return fail(err, errlen, "stream: expected true or false");
    *ret_stream = json_is_true(v);
    return 0;
}

/* Validates every field of a parsed top-level object into *ret. */
static int request_from_object(json_t *obj, int max_iterations_cap, int64_t timeout_cap_ms,
                               struct agent_request *ret, char *err, size_t errlen)
{
    const char *input = NULL, *conv = NULL;
    size_t input_len = 0;
    long long iters, timeout;
    enum agent_priority priority = AGENT_PRIORITY_HIGH;
    bool stream = false;
    struct agent_request req = {0};
    int r;

    if ((r = check_unknown_fields(obj, err, errlen)) < 0 ||
        (r = check_input(obj, &input, &input_len, err, errlen)) < 0 ||
        (r = check_conversation_id(obj, &conv, err, errlen)) < 0 ||
        (r = get_int(obj, "max_iterations", 1, max_iterations_cap, &iters, err, errlen)) < 0 ||
        (r = get_int(obj, "timeout_ms", AGENT_TIMEOUT_MIN_MS, timeout_cap_ms, &timeout, err,
                     errlen)) < 0 ||
        (r = check_priority(obj, &priority, err, errlen)) < 0 ||
        (r = check_stream(obj, &stream, err, errlen)) < 0)
        return r;

    req.input = strndup(input, input_len);
    req.conversation_id = conv ? strdup(conv) : NULL;
    if (!req.input || (conv && !req.conversation_id)) {
        agent_request_clear(&req);
        fail(err, errlen, "out of memory");
        return -ENOMEM;
    }
    req.max_iterations = (int)iters;
    req.timeout_ms = timeout;
    req.priority = priority;
    req.stream = stream;
    *ret = req;
    return 0;
}

int request_parse(const char *body, size_t len, int max_iterations_cap, int64_t timeout_cap_ms,
                  struct agent_request *ret, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int r;

    if (!ret)
        return -EINVAL;
    if (!body && len > 0)
        return fail(err, errlen, "body: missing");
    if (len == 0)
        return fail(err, errlen, "body: expected a JSON object, got an empty body");
    size_t bad = text_utf8_first_invalid(body, len);
    if (bad < len)
        return fail_utf8(body, bad, err, errlen);

    /* JSON_ALLOW_NUL so that "\u0000" reaches get_string(), which names the field. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return fail_duplicate(body, len, &jerr, err, errlen);
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return -ENOMEM;
        return fail(err, errlen, "body: not valid JSON (line %d, column %d): %s", jerr.line,
                    jerr.column, jerr.text);
    }
    if (!json_is_object(root))
        r = fail(err, errlen, "body: expected a JSON object, got %s", type_name(root));
    else
        r = request_from_object(root, max_iterations_cap, timeout_cap_ms, ret, err, errlen);
    json_decref(root);
    return r;
}

bool request_id_valid(const char *s)
{
    size_t i;

    if (!s)
        return false;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || i >= AGENT_ID_MAX_BYTES)
            return false;
    }
    return i > 0;
}

bool request_conversation_id_valid(const char *s)
{
    return request_id_valid(s);
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool charset_is_utf8(const char *v, size_t len)
{
    return (len == 5 && strncasecmp(v, "utf-8", 5) == 0) ||
           (len == 4 && strncasecmp(v, "utf8", 4) == 0);
}

/* Parses one ";"-introduced parameter at p (just past the ';'). Returns the
 * position after it, or NULL when it is malformed or a non-UTF-8 charset. */
static const char *content_type_param(const char *p)
{
    const char *name = p, *value = NULL;
    size_t name_len, value_len = 0;

    while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t')
        p++;
    name_len = (size_t)(p - name);
    p = skip_ows(p);
    if (name_len == 0)
        return *p == ';' || *p == '\0' ? p : NULL; /* empty parameter: "…json;" */
    if (*p != '=')
        return NULL;
    p = skip_ows(p + 1);
    if (*p == '"') {
        value = ++p;
        while (*p && *p != '"')
            p++;
        if (*p != '"')
            return NULL;
        value_len = (size_t)(p - value);
        p++;
    } else {
        value = p;
        while (*p && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        value_len = (size_t)(p - value);
    }
    if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 && !charset_is_utf8(value, value_len))
        return NULL;
    return skip_ows(p);
}

bool request_content_type_is_json(const char *value)
{
    static const char type[] = "application/json";
    const char *p;

    if (!value)
        return false;
    p = skip_ows(value);
    if (strncasecmp(p, type, sizeof(type) - 1) != 0)
        return false;
    p = skip_ows(p + sizeof(type) - 1);
    while (*p == ';') {
        p = content_type_param(skip_ows(p + 1));
        if (!p)
            return false;
    }
    return *p == '\0';
}

/* json_string() of s with invalid UTF-8 replaced by U+FFFD; NULL on ENOMEM. */
static json_t *json_string_repaired(const char *s)
{
    size_t len = strlen(s);
    char *buf;
    size_t i = 0, o = 0;
    json_t *js;

    if (text_utf8_valid(s, len))
        return json_stringn(s, len);
    buf = malloc(len * 3 + 1); /* each bad byte grows to the 3-byte U+FFFD */
    if (!buf)
        return NULL;
    while (i < len) {
        size_t n = text_utf8_char_len(s + i, len - i);
        if (n == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        }
    }
    js = json_stringn(buf, o);
    free(buf);
    return js;
}

char *request_error_body(const char *type, const char *message, const char *request_id,
                         long upstream_status)
{
    json_t *root = json_object();
    json_t *error = json_object();
    char *out = NULL;

    if (!root || !error)
        goto out;
    if (json_object_set_new(error, "type", json_string_repaired(type)) < 0 ||
        json_object_set_new(error, "message", json_string_repaired(message)) < 0)
        goto out;
    if (json_object_set(root, "error", error) < 0)
        goto out;
    if (request_id && json_object_set_new(root, "request_id", json_string_repaired(request_id)) < 0)
        goto out;
    if (upstream_status > 0 &&
        json_object_set_new(root, "upstream_status", json_integer(upstream_status)) < 0)
        goto out;
    out = json_dumps(root, JSON_COMPACT);
out:
    json_decref(error);
    json_decref(root);
    return out;
}

bool request_idempotency_key_valid(const char *s)
{
    size_t i;

    if (!s)
        return false;
    for (i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || i >= AGENT_IDEM_KEY_MAX_BYTES)
            return false;
    }
    return i > 0;
}

void request_caller_id(const char *token, size_t len, char ret[REQUEST_CALLER_ID_BYTES])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(token, len, md, &n, EVP_sha256(), NULL) != 1 || n < 8)
        memset(md, 0, sizeof(md));
    ret[0] = 'c';
    for (int i = 0; i < 8; i++) {
        ret[1 + 2 * i] = hex[md[i] >> 4];
        ret[2 + 2 * i] = hex[md[i] & 15];
    }
    ret[REQUEST_CALLER_ID_BYTES - 1] = '\0';
}
