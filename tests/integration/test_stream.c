/*
 * test_stream.c — POST /v1/agent with "stream": true end to end: a client
 * that parses the event stream strictly (every block is "event: <name>\n" +
 * "data: <JSON object>\n\n" or ": ping\n\n") checks the wire format and the
 * order of events; a failure of the streamed LLM answer after its 200 (an
 * error event, a cut connection) gives llm.retry with discard_text and then
 * the full text once, and run.completed equal to the non-streaming answer; a
 * client that goes away cancels the upstream call; errors decided before the
 * run are plain JSON.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct harness H;

static void setup_with(const char *ping_ms)
{
    char ping[64];
    snprintf(ping, sizeof(ping), "AGENTD_STREAM_PING_MS=%s", ping_ms);
    const char *env[] = {"AGENTD_MAX_ITERATIONS=5", ping, NULL};
    harness_start(&H, env);
}

static void setup(void)
{
    setup_with("15000");
}

static void setup_fast_ping(void)
{
    setup_with("200");
}

static void setup_short_grace(void)
{
    const char *env[] = {"AGENTD_SHUTDOWN_GRACE_MS=300", NULL};
    harness_start(&H, env);
}

static void setup_fallback(void)
{
    const char *env[] = {"AGENTD_MODEL=model-a", "AGENTD_MODEL_FALLBACKS=model-b", NULL};
    harness_start(&H, env);
}

static void setup_small_buffer(void)
{
    const char *env[] = {"AGENTD_STREAM_MAX_BUFFERED_BYTES=4096", NULL};
    harness_start(&H, env);
}

static void teardown(void)
{
    /* Exit status 0 also proves a sanitizer build found nothing (leaks included). */
    ck_assert_int_eq(harness_stop(&H), 0);
}

/* ---- a strict client of the event stream ---------------------------------------------------- */

#define MAX_EVENTS 512

struct sse_event {
    char name[32]; /* "" for a ": ping" comment */
    json_t *data;
};

struct stream {
    long status;
    char content_type[128], cache_control[64], request_id[160];
    struct sse_event ev[MAX_EVENTS];
    size_t n, pings;
};

/* Splits body into events, failing the test on anything that is not the wire format. */
static void parse_events(const char *body, struct stream *s)
{
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        ck_assert_msg(end != NULL, "event without its blank line: %.80s", p);
        ck_assert_uint_lt(s->n, MAX_EVENTS);
        size_t len = (size_t)(end - p);
        if (len == 6 && strncmp(p, ": ping", 6) == 0) {
            s->pings++;
            p = end + 2;
            continue;
        }
        ck_assert_msg(strncmp(p, "event: ", 7) == 0, "block does not start with event: %.80s", p);
        const char *nl = memchr(p, '\n', len);
        ck_assert_ptr_nonnull(nl);
        struct sse_event *e = &s->ev[s->n++];
        size_t nlen = (size_t)(nl - p - 7);
        ck_assert_uint_lt(nlen, sizeof(e->name));
        memcpy(e->name, p + 7, nlen);
        e->name[nlen] = '\0';
        ck_assert_msg(strncmp(nl + 1, "data: ", 6) == 0, "no data line: %.80s", p);
        const char *data = nl + 7;
        ck_assert_msg(memchr(data, '\n', (size_t)(end - data)) == NULL, "data spans lines");
        json_error_t err;
        e->data = json_loadb(data, (size_t)(end - data), JSON_REJECT_DUPLICATES, &err);
        ck_assert_msg(json_is_object(e->data), "data of %s is not a JSON object: %s", e->name,
                      err.text);
        p = end + 2;
    }
}

static void stream_post(const char *body, struct stream *s)
{
    memset(s, 0, sizeof(*s));
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, &r), 0);
    s->status = r.status;
    http_header(&r, "Content-Type", s->content_type, sizeof(s->content_type));
    http_header(&r, "Cache-Control", s->cache_control, sizeof(s->cache_control));
    http_header(&r, "X-Request-Id", s->request_id, sizeof(s->request_id));
    if (r.status == 200 && strncmp(s->content_type, "text/event-stream", 17) == 0)
        parse_events(r.body ? r.body : "", s);
    http_resp_free(&r);
}

static void stream_free(struct stream *s)
{
    for (size_t i = 0; i < s->n; i++)
        json_decref(s->ev[i].data);
}

static const struct sse_event *last(const struct stream *s)
{
    ck_assert_uint_gt(s->n, 0);
    return &s->ev[s->n - 1];
}

/* The text of the iteration's text.delta events a client keeps: llm.retry for the iteration
   drops what came before it. */
static void kept_text(const struct stream *s, int iteration, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < s->n; i++) {
        const struct sse_event *e = &s->ev[i];
        if (json_integer_value(json_object_get(e->data, "iteration")) != iteration)
            continue;
        if (strcmp(e->name, "llm.retry") == 0)
            buf[0] = '\0';
        else if (strcmp(e->name, "text.delta") == 0)
            strncat(buf, json_string_value(json_object_get(e->data, "text")),
                    cap - strlen(buf) - 1);
    }
}

static size_t count(const struct stream *s, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += strcmp(s->ev[i].name, name) == 0;
    return n;
}

/* What a streamed run's answer must share with the non-streaming one of the same input (ids,
   and input tokens, which count the request's bytes in the fake, differ). A failed attempt that
   got as far as message_start was billed: its tokens count too (retried). */
static int64_t usage_of(const json_t *answer, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(answer, "usage"), key));
}

static void assert_same_answer(const json_t *streamed, const json_t *plain, bool retried)
{
    static const char *const keys[] = {"output", "stop_reason", "iterations", "degraded"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        ck_assert_msg(
            json_equal(json_object_get(streamed, keys[i]), json_object_get(plain, keys[i])),
            "%s differs", keys[i]);
    json_t *a = json_object_get(streamed, "tool_calls"), *b = json_object_get(plain, "tool_calls");
    ck_assert_uint_eq(json_array_size(a), json_array_size(b));
    ck_assert_int_eq(usage_of(streamed, "llm_calls"), usage_of(plain, "llm_calls"));
    if (retried)
        ck_assert_int_gt(usage_of(streamed, "output_tokens"), usage_of(plain, "output_tokens"));
    else
        ck_assert_int_eq(usage_of(streamed, "output_tokens"), usage_of(plain, "output_tokens"));
}

/* Sends POST /v1/agent with body on a raw connection. */
static void send_agent_post(int fd, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     strlen(body));
    ck_assert_int_eq(send(fd, head, (size_t)n, MSG_NOSIGNAL), n);
    ck_assert_int_eq(send(fd, body, strlen(body), MSG_NOSIGNAL), (ssize_t)strlen(body));
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_stream_wire_format_and_event_order)
{
    const char *input = "What is the weather in Paris and what is 2 + 3?";
    char body[256];
    snprintf(body, sizeof(body), "{\"input\":\"%s\",\"stream\":true}", input);
    struct stream s;
    stream_post(body, &s);
    ck_assert_int_eq(s.status, 200);
    ck_assert_str_eq(s.content_type, "text/event-stream");
    ck_assert_str_eq(s.cache_control, "no-store");
    ck_assert(s.request_id[0] != '\0');

    /* run.started first, with the run's ids; the answer last. */
    ck_assert_str_eq(s.ev[0].name, "run.started");
    ck_assert_str_eq(json_string_value(json_object_get(s.ev[0].data, "request_id")), s.request_id);
    const struct sse_event *end = last(&s);
    ck_assert_str_eq(end->name, "run.completed");
    ck_assert_str_eq(json_string_value(json_object_get(end->data, "id")),
                     json_string_value(json_object_get(s.ev[0].data, "id")));
    ck_assert_uint_eq(count(&s, "run.started"), 1);
    ck_assert_uint_eq(count(&s, "run.completed"), 1);
    ck_assert_uint_eq(count(&s, "llm.retry"), 0);

    /* Two tools: each starts before it finishes; iterations never go back; text comes in
       several deltas. */
    ck_assert_uint_eq(count(&s, "tool.started"), 2);
    ck_assert_uint_eq(count(&s, "tool.finished"), 2);
    int iteration = 0;
    for (size_t i = 1; i + 1 < s.n; i++) {
        const struct sse_event *e = &s.ev[i];
        if (strcmp(e->name, "text.delta") == 0) {
            int it = (int)json_integer_value(json_object_get(e->data, "iteration"));
            ck_assert_int_ge(it, iteration);
            iteration = it;
        } else if (strcmp(e->name, "tool.finished") == 0) {
            const char *id = json_string_value(json_object_get(e->data, "id"));
            bool started = false;
            for (size_t k = 1; k < i; k++)
                started = started ||
                          (strcmp(s.ev[k].name, "tool.started") == 0 &&
                           strcmp(json_string_value(json_object_get(s.ev[k].data, "id")), id) == 0);
            ck_assert_msg(started, "tool %s finished before it started", id);
            ck_assert(json_is_true(json_object_get(e->data, "ok")));
            ck_assert(json_is_integer(json_object_get(e->data, "duration_ms")));
        } else {
            ck_assert_msg(strcmp(e->name, "tool.started") == 0, "unexpected event %s", e->name);
        }
    }
    ck_assert_int_eq(iteration, 2);
    /* Deltas that wait together are merged, so a fast model may give one per iteration. */
    ck_assert_uint_ge(count(&s, "text.delta"), 2);

    /* The text streamed for the last iteration is the output, and the answer is the one a
       non-streaming client gets. */
    char text[4096];
    kept_text(&s, 2, text, sizeof(text));
    ck_assert_str_eq(text, json_string_value(json_object_get(end->data, "output")));
    json_t *plain = NULL;
    ck_assert_int_eq(agent_ask(&H, input, &plain), 200);
    assert_same_answer(end->data, plain, false);
    json_decref(plain);

    /* The LLM calls of the streamed run asked for a stream; the plain run's did not. */
    json_t *reqs = fake_requests(&H);
    size_t streamed = 0, plain_calls = 0;
    for (size_t i = 0; i < json_array_size(reqs); i++) {
        json_t *b = json_object_get(json_array_get(reqs, i), "body");
        if (!json_is_object(b))
            continue;
        if (json_is_true(json_object_get(b, "stream")))
            streamed++;
        else
            plain_calls++;
    }
    ck_assert_uint_eq(streamed, 2);
    ck_assert_uint_eq(plain_calls, 2);
    json_decref(reqs);
    stream_free(&s);
}
END_TEST

/* A failure after the 200 (fault_json) is retried: llm.retry with discard_text, then the full
   text once, and the answer a non-streaming client gets. */
static void check_mid_stream_failure(const char *fault_json, const char *reason_part, bool billed)
{
    const char *input = "hello there my friend, how are you today?";
    char body[256];
    snprintf(body, sizeof(body), "{\"input\":\"%s\",\"stream\":true}", input);
    fake_add_fault(&H, fault_json);
    struct stream s;
    stream_post(body, &s);
    ck_assert_int_eq(s.status, 200);
    ck_assert_uint_eq(count(&s, "llm.retry"), 1);
    size_t retry = 0;
    while (strcmp(s.ev[retry].name, "llm.retry") != 0)
        retry++;
    const json_t *r = s.ev[retry].data;
    ck_assert(json_is_true(json_object_get(r, "discard_text")));
    ck_assert_int_eq(json_integer_value(json_object_get(r, "iteration")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "attempt")), 1);
    ck_assert_msg(strstr(json_string_value(json_object_get(r, "reason")), reason_part),
                  "reason: %s", json_string_value(json_object_get(r, "reason")));
    ck_assert_uint_gt(retry, 1); /* some text came before it */
    ck_assert_str_eq(s.ev[retry - 1].name, "text.delta");

    const struct sse_event *end = last(&s);
    ck_assert_str_eq(end->name, "run.completed");
    const char *output = json_string_value(json_object_get(end->data, "output"));
    char text[4096];
    kept_text(&s, 1, text, sizeof(text));
    ck_assert_str_eq(text, output);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(end->data, "usage"), "llm_attempts")),
        2);
    json_t *plain = NULL;
    ck_assert_int_eq(agent_ask(&H, input, &plain), 200);
    assert_same_answer(end->data, plain, billed);
    json_decref(plain);
    stream_free(&s);
}

START_TEST(test_stream_error_event_mid_stream_is_retried_with_discard)
{
    check_mid_stream_failure("{\"route\":\"messages\",\"count\":1,\"stream\":{\"error_after\":2}}",
                             "overloaded_error", true);
}
END_TEST

START_TEST(test_stream_cut_mid_stream_is_retried_with_discard)
{
    /* A cut connection leaves no answer to read usage from. */
    check_mid_stream_failure("{\"route\":\"messages\",\"count\":1,\"stream\":{\"cut_after\":3}}",
                             "", false);
}
END_TEST

/* Nothing to say while the model streams slowly: ": ping" comes at the configured period. */
START_TEST(test_stream_pings_while_waiting)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"count\":1,\"stream\":{\"delta_ms\":450}}");
    struct stream s;
    stream_post("{\"input\":\"say hello slowly please\",\"stream\":true}", &s);
    ck_assert_int_eq(s.status, 200);
    ck_assert_str_eq(last(&s)->name, "run.completed");
    /* 4 deltas of 450 ms: about 1.8 s, at least 4 pings at 200 ms (generous lower bound). */
    ck_assert_uint_ge(s.pings, 4);
    stream_free(&s);
}
END_TEST

/* A client that goes away mid-stream cancels the run and its upstream call. */
START_TEST(test_stream_client_disconnect_cancels_the_upstream_call)
{
    /* 60 deltas of 250 ms: the stream would last 15 s. */
    fake_add_fault(&H, "{\"route\":\"messages\",\"count\":1,\"stream\":{\"delta_ms\":250}}");
    char input[600] = "";
    for (int i = 0; i < 12; i++)
        strcat(input, "a long sentence to echo back, ");
    char body[800];
    snprintf(body, sizeof(body), "{\"input\":\"%s\",\"stream\":true}", input);
    int fd = harness_connect(&H);
    send_agent_post(fd, body);
    /* Read until the first text.delta has arrived. */
    char buf[8192] = "";
    size_t got = 0;
    int64_t until = harness_now_ms() + 10000;
    while (!strstr(buf, "event: text.delta") && harness_now_ms() < until) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        ck_assert_int_gt(r, 0);
        got += (size_t)r;
        buf[got] = '\0';
    }
    ck_assert_ptr_nonnull(strstr(buf, "HTTP/1.1 200"));
    ck_assert_ptr_nonnull(strstr(buf, "event: text.delta"));
    int64_t closed_at = harness_now_ms();
    close(fd);

    /* The fake sees its streaming request end long before the stream would have. */
    char url[128];
    snprintf(url, sizeof(url), "%s/_admin/stats", H.fake_url);
    long in_flight = -1;
    while (harness_now_ms() < closed_at + 5000) {
        struct http_resp r;
        ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
        json_t *o = json_loads(r.body, 0, NULL);
        in_flight = (long)json_integer_value(json_object_get(o, "in_flight"));
        json_decref(o);
        http_resp_free(&r);
        if (in_flight == 0)
            break;
        usleep(50 * 1000);
    }
    ck_assert_int_eq(in_flight, 0);
    ck_assert_int_lt(harness_now_ms() - closed_at, 5000);
    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(strstr(log, "client went away: run cancelled"));
    free(log);
    /* The cancelled call was not tried again. */
    ck_assert_uint_eq(fake_count(&H, "messages"), 1);
}
END_TEST

/* Polls the fake until no request is in flight; returns how long that took from since_ms. */
static int64_t wait_fake_idle(int64_t since_ms, int64_t within_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/_admin/stats", H.fake_url);
    while (harness_now_ms() < since_ms + within_ms) {
        struct http_resp r;
        ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
        json_t *o = json_loads(r.body, 0, NULL);
        long in_flight = (long)json_integer_value(json_object_get(o, "in_flight"));
        json_decref(o);
        http_resp_free(&r);
        if (in_flight == 0)
            return harness_now_ms() - since_ms;
        usleep(50 * 1000);
    }
    return -1;
}

/* Nothing is being written (the model has not begun to answer, no ping for 15 s): a client
   that goes away is still noticed at once, and the upstream call cancelled. */
START_TEST(test_stream_client_disconnect_while_waiting_cancels_at_once)
{
    /* The model never answers (the fake notices when agentd drops the call). */
    fake_add_fault(&H, "{\"route\":\"messages\",\"count\":1,\"hang\":true}");
    int fd = harness_connect(&H);
    send_agent_post(fd, "{\"input\":\"hello\",\"stream\":true}");
    char buf[4096] = "";
    size_t got = 0;
    while (!strstr(buf, "event: run.started")) {
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        ck_assert_int_gt(r, 0);
        got += (size_t)r;
        buf[got] = '\0';
    }
    ck_assert_uint_eq(fake_wait_count(&H, "messages", 1, 5000), 1);
    int64_t closed_at = harness_now_ms();
    close(fd);
    int64_t took = wait_fake_idle(closed_at, 3000);
    ck_assert_msg(took >= 0, "the upstream call was still in flight 3 s after the client left");
    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(strstr(log, "client went away: run cancelled"));
    free(log);
}
END_TEST

/* A streamed run with an Idempotency-Key stores its answer like any run: the same key and body
   again is the stored JSON answer, replayed (decided before a run starts). */
START_TEST(test_stream_idempotency_key_replays_the_json_answer)
{
    const char *body = "{\"input\":\"remember this\",\"stream\":true}";
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", "Idempotency-Key: stream-key-1", NULL};
    struct http_resp first, again;
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, &first), 0);
    ck_assert_int_eq(first.status, 200);
    struct stream s = {0};
    parse_events(first.body, &s);
    const struct sse_event *end = last(&s);
    ck_assert_str_eq(end->name, "run.completed");
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, &again), 0);
    ck_assert_int_eq(again.status, 200);
    char v[64];
    ck_assert(http_header(&again, "Idempotent-Replayed", v, sizeof(v)));
    ck_assert_str_eq(v, "true");
    ck_assert(http_header(&again, "Content-Type", v, sizeof(v)));
    ck_assert_str_eq(v, "application/json; charset=utf-8");
    json_t *replayed = json_loads(again.body, 0, NULL);
    ck_assert(json_equal(replayed, end->data));
    json_decref(replayed);
    ck_assert_uint_eq(fake_count(&H, "messages"), 1);
    stream_free(&s);
    http_resp_free(&first);
    http_resp_free(&again);
}
END_TEST

/* Errors found before the run starts are JSON; a run that fails says so as its last event. */
START_TEST(test_stream_errors_before_the_run_are_json_and_failures_are_run_failed)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"hi\",\"stream\":\"yes\"}", &o), 400);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "type")),
                     "invalid_request");
    json_decref(o);
    o = NULL;
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"hi\",\"stream\":true,\"max_iterations\":0}", &o),
                     400);
    json_decref(o);

    fake_add_fault(&H, "{\"route\":\"messages\",\"count\":1,\"status\":400}");
    struct stream s;
    stream_post("{\"input\":\"hello\",\"stream\":true}", &s);
    ck_assert_int_eq(s.status, 200);
    ck_assert_str_eq(s.ev[0].name, "run.started");
    const struct sse_event *end = last(&s);
    ck_assert_str_eq(end->name, "run.failed");
    ck_assert_int_eq(json_integer_value(json_object_get(end->data, "status")), 502);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(end->data, "error"), "type")),
        "upstream_error");
    ck_assert_str_eq(json_string_value(json_object_get(end->data, "request_id")), s.request_id);
    stream_free(&s);
}
END_TEST

/* The body of a chunked HTTP/1.1 response in raw (headers included), malloc'd. */
static char *dechunk(const char *raw)
{
    const char *p = strstr(raw, "\r\n\r\n");
    ck_assert_ptr_nonnull(p);
    p += 4;
    char *out = malloc(strlen(p) + 1);
    size_t len = 0;
    for (;;) {
        char *end;
        unsigned long n = strtoul(p, &end, 16);
        ck_assert_msg(end != p && strncmp(end, "\r\n", 2) == 0, "bad chunk header: %.20s", p);
        if (n == 0)
            break;
        p = end + 2;
        ck_assert_uint_ge(strlen(p), n + 2);
        memcpy(out + len, p, n);
        len += n;
        p += n + 2;
    }
    out[len] = '\0';
    return out;
}

/* The model is overloaded: the run moves to the next one of the chain and says so
   (llm.fallback) before that model's text. */
START_TEST(test_stream_fallback_is_an_event)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"model\":\"model-a\",\"status\":529}");
    struct stream s;
    stream_post("{\"input\":\"hello there\",\"stream\":true}", &s);
    ck_assert_int_eq(s.status, 200);
    ck_assert_uint_eq(count(&s, "llm.fallback"), 1);
    size_t i = 0;
    while (strcmp(s.ev[i].name, "llm.fallback") != 0)
        i++;
    const json_t *f = s.ev[i].data;
    ck_assert_str_eq(json_string_value(json_object_get(f, "from")), "model-a");
    ck_assert_str_eq(json_string_value(json_object_get(f, "to")), "model-b");
    ck_assert(json_is_string(json_object_get(f, "reason")));
    ck_assert_uint_eq(count(&s, "llm.retry"), 0); /* the 529 streamed no text */
    ck_assert_str_eq(s.ev[i + 1].name, "text.delta");
    const struct sse_event *end = last(&s);
    ck_assert_str_eq(end->name, "run.completed");
    ck_assert_str_eq(json_string_value(json_object_get(end->data, "model")), "model-b");
    stream_free(&s);
}
END_TEST

/* Reads a streamed answer on a raw connection to the chunked body's end (or the connection's);
   returns its body, malloc'd. */
static char *read_stream_to_end(int fd)
{
    size_t rcap = (size_t)64 << 20, got = 0;
    char *raw = malloc(rcap);
    ssize_t r;
    raw[0] = '\0';
    while (got < rcap - 1 && (r = recv(fd, raw + got, rcap - 1 - got, 0)) > 0) {
        got += (size_t)r;
        raw[got] = '\0';
        if (got >= 7 && memcmp(raw + got - 7, "\r\n0\r\n\r\n", 7) == 0)
            break;
    }
    ck_assert_ptr_nonnull(strstr(raw, "HTTP/1.1 200"));
    char *body = dechunk(raw);
    free(raw);
    return body;
}

/* The last "event: " block of a stream's body. */
static const char *last_event(const char *body)
{
    const char *last = strncmp(body, "event: ", 7) == 0 ? body : NULL;
    for (const char *p = strstr(body, "\nevent: "); p; p = strstr(p + 1, "\nevent: "))
        last = p + 1;
    ck_assert_ptr_nonnull(last);
    return last;
}

/* Shutdown with a run still streaming: once the grace is over, its stream ends with run.failed
   (503 shutting_down) and agentd exits cleanly. */
START_TEST(test_stream_shutdown_ends_the_stream_with_run_failed)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"count\":1,\"hang\":true}");
    int fd = harness_connect(&H);
    send_agent_post(fd, "{\"input\":\"hello\",\"stream\":true}");
    ck_assert_uint_eq(fake_wait_count(&H, "messages", 1, 5000), 1);
    kill(H.agentd_pid, SIGTERM);
    char *body = read_stream_to_end(fd);
    close(fd);
    ck_assert_ptr_nonnull(strstr(body, "event: run.started"));
    const char *last = last_event(body);
    ck_assert_msg(strncmp(last, "event: run.failed\ndata: ", 24) == 0, "last event: %.80s", last);
    ck_assert_ptr_nonnull(strstr(last, "\"status\":503"));
    ck_assert_ptr_nonnull(strstr(last, "shutting_down"));
    free(body);
    ck_assert_int_eq(harness_wait_agentd(&H, 30000), 0);
}
END_TEST

/* A client that stops reading: its events pile up to AGENTD_STREAM_MAX_BUFFERED_BYTES, then its
   run is cancelled and the stream ends with run.failed (499), so memory stays bounded. */
START_TEST(test_stream_slow_reader_is_cut_off_at_the_buffer_cap)
{
    /* The model answers 900 000 bytes of text (112 500 deltas): framed one by one while the
       client reads, that is far more than the socket buffers between agentd and the client can
       hold (a few MB on loopback), so a client that reads nothing leaves events waiting. */
    size_t text_len = 900000, cap = text_len + 512;
    char *fault = malloc(cap);
    int n = snprintf(fault, cap,
                     "{\"route\":\"messages\",\"count\":1,\"body\":{\"id\":\"msg_big\","
                     "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\","
                     "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":"
                     "{\"input_tokens\":1,\"output_tokens\":1},\"content\":[{\"type\":\"text\","
                     "\"text\":\"");
    for (size_t i = 0; i < text_len; i += 5)
        memcpy(fault + n + i, "word ", 5);
    snprintf(fault + n + text_len, cap - (size_t)n - text_len, "\"}]}}");
    fake_add_fault(&H, fault);
    free(fault);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)H.agentd_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    send_agent_post(fd, "{\"input\":\"tell me everything\",\"stream\":true}");
    /* Not reading: the run is cancelled once the queue is full. */
    bool cancelled = false;
    /* How much the socket buffers take varies (from kilobytes to megabytes on loopback), and a
       sanitizer build relays deltas slowly: a generous bound. */
    for (int64_t until = harness_now_ms() + 90000; !cancelled && harness_now_ms() < until;) {
        usleep(100 * 1000);
        char *log = harness_read_log(&H);
        cancelled = strstr(log, "client went away: run cancelled") != NULL;
        free(log);
    }
    ck_assert_msg(cancelled, "the run of a client that does not read was not cancelled");
    /* Now read it all: the stream ends with run.failed (499). */
    char *buf = read_stream_to_end(fd);
    close(fd);
    const char *last = last_event(buf);
    ck_assert_msg(strncmp(last, "event: run.failed\ndata: ", 24) == 0, "last event: %.80s", last);
    ck_assert_ptr_nonnull(strstr(last, "\"status\":499"));
    ck_assert_ptr_nonnull(strstr(last, "AGENTD_STREAM_MAX_BUFFERED_BYTES"));
    ck_assert_ptr_null(strstr(buf, "event: run.completed"));
    free(buf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stream_wire_format_and_event_order);
    tcase_add_test(tc, test_stream_error_event_mid_stream_is_retried_with_discard);
    tcase_add_test(tc, test_stream_cut_mid_stream_is_retried_with_discard);
    tcase_add_test(tc, test_stream_client_disconnect_cancels_the_upstream_call);
    tcase_add_test(tc, test_stream_client_disconnect_while_waiting_cancels_at_once);
    tcase_add_test(tc, test_stream_idempotency_key_replays_the_json_answer);
    tcase_add_test(tc, test_stream_errors_before_the_run_are_json_and_failures_are_run_failed);
    suite_add_tcase(s, tc);
    TCase *ping = tcase_create("ping");
    tcase_add_checked_fixture(ping, setup_fast_ping, teardown);
    tcase_set_timeout(ping, 60);
    tcase_add_test(ping, test_stream_pings_while_waiting);
    suite_add_tcase(s, ping);
    TCase *shutdown = tcase_create("shutdown");
    tcase_add_checked_fixture(shutdown, setup_short_grace, teardown);
    tcase_set_timeout(shutdown, 60);
    tcase_add_test(shutdown, test_stream_shutdown_ends_the_stream_with_run_failed);
    suite_add_tcase(s, shutdown);
    TCase *fallback = tcase_create("fallback");
    tcase_add_checked_fixture(fallback, setup_fallback, teardown);
    tcase_set_timeout(fallback, 60);
    tcase_add_test(fallback, test_stream_fallback_is_an_event);
    suite_add_tcase(s, fallback);
    TCase *slow = tcase_create("slow_reader");
    tcase_add_checked_fixture(slow, setup_small_buffer, teardown);
    tcase_set_timeout(slow, 200);
    tcase_add_test(slow, test_stream_slow_reader_is_cut_off_at_the_buffer_cap);
    suite_add_tcase(s, slow);
    return s;
}

int main(void)
{
    return harness_run_suite(suite());
}
