/*
 * fuzz_request.c — libFuzzer target for what a client controls on
 * POST /v1/agent: the body (request_parse) and the header values the
 * server validates (X-Request-Id, Idempotency-Key, Content-Type), plus the
 * error body that quotes them back. Besides crashes it checks the promises of
 * include/agentd/request.h: a valid request only holds values in range, the
 * error message is always NUL-terminated valid UTF-8, the header validators
 * accept exactly their documented sets, and request_error_body() is valid JSON.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "agentd/request.h"
#include "agentd/text.h"
#include "fuzz_common.h"

/* AGENTD_MAX_BODY_BYTES default: larger bodies get 413 before they are parsed. */
#define FUZZ_BODY_CAP ((size_t)1048576)
/* Header values come from libmicrohttpd, whose per-connection memory pool
 * (32 KiB by default) bounds a whole header block. */
#define FUZZ_HEADER_CAP ((size_t)32768)

struct caps {
    int max_iterations;
    int64_t timeout_ms;
};

/* The daemon's defaults, the largest caps the configuration allows, and caps
 * below each field's minimum (which must reject every value of the field). */
static const struct caps fuzz_caps[] = {
    {10, 120000},
    {100, 3600000},
    {0, 99},
};

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

static bool ref_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > AGENT_ID_MAX_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i]))
            return false;
    return true;
}

static bool ref_idem_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > AGENT_IDEM_KEY_MAX_BYTES)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static void check_parse(const char *body, size_t len, const struct caps *caps, size_t errlen)
{
    struct agent_request req;
    char err[256];

    memset(&req, 0xa5, sizeof(req));
    memset(err, 'X', sizeof(err));
    int r = request_parse(body, len, caps->max_iterations, caps->timeout_ms, &req, err, errlen);
    FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
    if (r == -EINVAL) {
        FUZZ_CHECK(fuzz_terminated(err, errlen));
        FUZZ_CHECK(fuzz_utf8_ok(err, strlen(err)));
        return;
    }
    if (r != 0)
        return;

    size_t in_len = strlen(req.input);
    FUZZ_CHECK(in_len >= 1 && in_len <= AGENT_INPUT_MAX_BYTES);
    FUZZ_CHECK(fuzz_utf8_ok(req.input, in_len));
    FUZZ_CHECK(req.conversation_id == NULL || request_conversation_id_valid(req.conversation_id));
    FUZZ_CHECK(req.max_iterations == 0 ||
               (req.max_iterations >= 1 && req.max_iterations <= caps->max_iterations));
    FUZZ_CHECK(req.timeout_ms == 0 ||
               (req.timeout_ms >= AGENT_TIMEOUT_MIN_MS && req.timeout_ms <= caps->timeout_ms));
    FUZZ_CHECK(req.priority == AGENT_PRIORITY_HIGH || req.priority == AGENT_PRIORITY_LOW);
    agent_request_clear(&req);
    FUZZ_CHECK(req.input == NULL && req.conversation_id == NULL);
}

static void check_error_body(const char *message, const char *request_id, long status)
{
    char *out = request_error_body("invalid_request", message, request_id, status);
    if (!out)
        return; /* ENOMEM */
    json_error_t jerr;
    json_t *root = json_loads(out, JSON_REJECT_DUPLICATES, &jerr);
    FUZZ_CHECK(json_is_object(root));
    json_t *error = json_object_get(root, "error");
    FUZZ_CHECK(json_is_string(json_object_get(error, "type")));
    const char *msg = json_string_value(json_object_get(error, "message"));
    FUZZ_CHECK(msg != NULL);
    /* Valid UTF-8 passes through unchanged; anything else is repaired. */
    if (fuzz_utf8_ok(message, strlen(message)))
        FUZZ_CHECK(strcmp(msg, message) == 0);
    FUZZ_CHECK((json_object_get(root, "request_id") != NULL) == (request_id != NULL));
    FUZZ_CHECK((json_object_get(root, "upstream_status") != NULL) == (status > 0));
    json_decref(root);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_enter(data, size, FUZZ_BODY_CAP);
    if (!body)
        return 0;
    for (size_t i = 0; i < sizeof(fuzz_caps) / sizeof(fuzz_caps[0]); i++)
        check_parse(body, size, &fuzz_caps[i], 256);
    /* A short buffer cuts the message, possibly inside a character. */
    check_parse(body, size, &fuzz_caps[0], 13);
    FUZZ_CHECK(text_utf8_valid(body, size) == fuzz_utf8_ok(body, size));
    free(body);

    char *s = fuzz_cstr(data, size, FUZZ_HEADER_CAP);
    if (!s)
        return 0;
    FUZZ_CHECK(request_id_valid(s) == ref_id_valid(s));
    FUZZ_CHECK(request_conversation_id_valid(s) == ref_id_valid(s));
    FUZZ_CHECK(request_idempotency_key_valid(s) == ref_idem_valid(s));
    if (request_content_type_is_json(s)) {
        const char *p = s + strspn(s, " \t");
        FUZZ_CHECK(strncasecmp(p, "application/json", 16) == 0);
    }
    check_error_body(s, s, 0);
    check_error_body(s, NULL, 502);
    free(s);
    return 0;
}
