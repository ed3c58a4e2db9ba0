/*
 * fuzz_stream.c — libFuzzer target for a streamed Messages API answer:
 * sse.c's framing and anthropic_stream.c's assembly (≤ 16 MiB, the engine's
 * LLM_MAX_RESPONSE_BYTES).
 *
 * Input: byte 0 picks the chunk size (1..256) the rest is fed in; the rest is
 * the body. Checked: the outcome does not depend on how the body is cut (the
 * same return code, the same text reported, the same message, compared with a
 * feed in one piece); text reported is valid UTF-8 of the stated length; a
 * message given is JSON, and when anthropic_parse_response accepts it, its
 * text is exactly the text reported while streaming; a failed stream gives
 * no message; a reset stream takes a fresh body; the usage read back is never
 * negative.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/anthropic_stream.h"
#include "agentd/text.h"
#include "fuzz_common.h"

#define FUZZ_STREAM_MAX_BYTES (16u * 1024 * 1024)

struct text_acc {
    char *buf;
    size_t len, cap;
};

static int on_text(void *arg, size_t index, const char *text, size_t len)
{
    struct text_acc *a = arg;
    FUZZ_CHECK(index < ANTHROPIC_STREAM_MAX_BLOCKS);
    FUZZ_CHECK(strlen(text) == len);
    FUZZ_CHECK(text_utf8_valid(text, len));
    if (a->len + len + 1 > a->cap) {
        size_t want = (a->len + len + 1) * 2;
        char *p = realloc(a->buf, want);
        if (!p)
            return -ENOMEM;
        a->buf = p;
        a->cap = want;
    }
    memcpy(a->buf + a->len, text, len);
    a->len += len;
    a->buf[a->len] = '\0';
    return 0;
}

struct outcome {
    int rc, msg_rc;
    struct text_acc text;
    char *message;
};

static void run(struct anthropic_stream *s, const char *body, size_t size, size_t step,
                struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < size && o->rc == 0; i += step) {
        size_t n = size - i < step ? size - i : step;
        o->rc = anthropic_stream_feed(s, body + i, n, on_text, &o->text, NULL, NULL, 0);
    }
    char why[160] = "";
    o->msg_rc = anthropic_stream_message(s, &o->message, NULL, why, sizeof(why));
    FUZZ_CHECK(o->msg_rc == 0 || o->msg_rc == -EBADMSG || o->msg_rc == -ENOMEM);
    FUZZ_CHECK(o->msg_rc == 0 || why[0] != '\0');
    if (o->rc != 0)
        FUZZ_CHECK(o->msg_rc != 0);
    /* Usage: never negative (absent when the message carried none). */
    struct llm_usage usage;
    int u = anthropic_stream_usage(s, &usage);
    FUZZ_CHECK(u == 0 || u == -ENODATA || u == -ENOMEM);
    FUZZ_CHECK(u != 0 || (usage.input_tokens >= 0 && usage.output_tokens >= 0 &&
                          usage.cache_creation_tokens >= 0 && usage.cache_read_tokens >= 0));
}

static void clear(struct outcome *o)
{
    free(o->text.buf);
    free(o->message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *body = fuzz_enter(data + 1, size - 1, FUZZ_STREAM_MAX_BYTES);
    if (!body)
        return 0;
    size_t len = size - 1, step = (size_t)data[0] + 1;
    struct anthropic_stream *s = anthropic_stream_new(FUZZ_STREAM_MAX_BYTES);
    if (!s) {
        free(body);
        return 0;
    }
    struct outcome whole, cut;
    run(s, body, len, len ? len : 1, &whole);
    anthropic_stream_reset(s);
    run(s, body, len, step, &cut);
    FUZZ_CHECK(whole.rc == cut.rc);
    FUZZ_CHECK(whole.msg_rc == cut.msg_rc);
    /* The text reported before a failure may stop at a different place; on success it is all. */
    if (whole.rc == 0) {
        FUZZ_CHECK(whole.text.len == cut.text.len);
        FUZZ_CHECK(whole.text.len == 0 ||
                   memcmp(whole.text.buf, cut.text.buf, whole.text.len) == 0);
    }
    if (whole.msg_rc == 0) {
        FUZZ_CHECK(strcmp(whole.message, cut.message) == 0);
        json_error_t e;
        json_t *m = json_loads(whole.message, JSON_REJECT_DUPLICATES, &e);
        FUZZ_CHECK(json_is_object(m));
        json_decref(m);
        struct llm_response r;
        if (anthropic_parse_response(whole.message, strlen(whole.message), &r, NULL, 0) == 0) {
            FUZZ_CHECK(strlen(r.text) == whole.text.len);
            FUZZ_CHECK(whole.text.len == 0 || memcmp(r.text, whole.text.buf, whole.text.len) == 0);
            llm_response_clear(&r);
        }
    }
    clear(&whole);
    clear(&cut);
    anthropic_stream_free(s);
    free(body);
    return 0;
}
