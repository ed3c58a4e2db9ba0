/*
 * test_api.c — the HTTP contract end to end: the real agentd against the
 * fake upstream on loopback. Covers the agent loop (tools, several intents,
 * idempotent notes, conversations, stop reasons), every 4xx of API.md, the
 * run deadline, and 64 concurrent runs.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "harness.h"

static struct harness H;

static void setup(void)
{
    static const char *env[] = {"AGENTD_MAX_ITERATIONS=5", NULL};
    harness_start(&H, env);
}

static void teardown(void)
{
    /* Exit status 0 also proves a sanitizer build found nothing (leaks included). */
    ck_assert_int_eq(harness_stop(&H), 0);
}

static const char *output_of(json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "output"));
    return s ? s : "";
}

static const char *error_type(json_t *o)
{
    const char *s = json_string_value(json_object_get(json_object_get(o, "error"), "type"));
    return s ? s : "";
}

START_TEST(test_agent_answers_arithmetic_with_calculator)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "What's 15 * 23?", &o), 200);
    ck_assert_ptr_nonnull(strstr(output_of(o), "345"));
    ck_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "end_turn");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "iterations")), 2);
    json_t *calls = json_object_get(o, "tool_calls");
    ck_assert_uint_eq(json_array_size(calls), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(calls, 0), "name")),
                     "calculator");
    ck_assert(json_is_true(json_object_get(json_array_get(calls, 0), "ok")));
    json_t *usage = json_object_get(o, "usage");
    ck_assert_int_eq(json_integer_value(json_object_get(usage, "llm_calls")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(usage, "llm_attempts")), 2);
    ck_assert_int_gt(json_integer_value(json_object_get(usage, "input_tokens")), 0);
    ck_assert_int_gt(json_integer_value(json_object_get(usage, "output_tokens")), 0);
    ck_assert(json_is_string(json_object_get(o, "id")));
    ck_assert(json_is_array(json_object_get(o, "degraded")));
    json_decref(o);
}
END_TEST

START_TEST(test_agent_runs_weather_and_arithmetic_from_one_message)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "What is the weather in Paris and what is 2 + 3?", &o), 200);
    const char *out = output_of(o);
    ck_assert_msg(strstr(out, "Paris") != NULL, "output: %s", out);
    ck_assert_msg(strstr(out, "= 5") != NULL, "output: %s", out);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "tool_calls")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "iterations")), 2);
    json_decref(o);

    /* The second LLM call carried both tool_results first, ids matching. */
    json_t *log = fake_requests(&H);
    json_t *last = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "route")), "messages") == 0)
            last = e;
    }
    ck_assert_ptr_nonnull(last);
    json_t *msgs = json_object_get(json_object_get(last, "body"), "messages");
    json_t *user = json_array_get(msgs, json_array_size(msgs) - 1);
    json_t *asst = json_array_get(msgs, json_array_size(msgs) - 2);
    ck_assert_str_eq(json_string_value(json_object_get(asst, "role")), "assistant");
    json_t *results = json_object_get(user, "content");
    ck_assert_uint_eq(json_array_size(results), 2);
    for (size_t k = 0; k < 2; k++)
        ck_assert_str_eq(json_string_value(json_object_get(json_array_get(results, k), "type")),
                         "tool_result");
    json_decref(log);
}
END_TEST

START_TEST(test_agent_same_note_twice_writes_one_file)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "save note: buy milk and eggs", &o), 200);
    ck_assert_ptr_nonnull(strstr(output_of(o), "saved note"));
    json_decref(o);
    ck_assert_int_eq(agent_ask(&H, "save note: buy milk and eggs", &o), 200);
    ck_assert_ptr_nonnull(strstr(output_of(o), "already saved"));
    json_decref(o);
    ck_assert_uint_eq(harness_count_notes(&H), 1);
}
END_TEST

START_TEST(test_agent_web_search_returns_results)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "search for circuit breakers", &o), 200);
    ck_assert_msg(strstr(output_of(o), "circuit breakers") != NULL, "output: %s", output_of(o));
    ck_assert_uint_eq(json_array_size(json_object_get(o, "degraded")), 0);
    json_decref(o);
}
END_TEST

START_TEST(test_agent_conversation_continues_with_history)
{
    json_t *o = NULL;
    ck_assert_int_eq(
        agent_post(&H, "{\"input\":\"hello there\",\"conversation_id\":\"conv-1\"}", &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "conversation_id")), "conv-1");
    json_decref(o);
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"and again\",\"conversation_id\":\"conv-1\"}", &o),
                     200);
    ck_assert_msg(strstr(output_of(o), "(turn 2)") != NULL, "output: %s", output_of(o));
    json_decref(o);
    /* A different conversation starts fresh. */
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"hi\",\"conversation_id\":\"conv-2\"}", &o), 200);
    ck_assert_ptr_null(strstr(output_of(o), "(turn"));
    json_decref(o);
}
END_TEST

START_TEST(test_agent_conversation_after_tools_stays_valid)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"what is 6*7\",\"conversation_id\":\"t\"}", &o),
                     200);
    json_decref(o);
    /* The stored history ends with an assistant text, so the next turn is accepted. */
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"what is 2*4\",\"conversation_id\":\"t\"}", &o),
                     200);
    ck_assert_msg(strstr(output_of(o), "8") != NULL, "output: %s", output_of(o));
    json_decref(o);
}
END_TEST

START_TEST(test_agent_stop_reasons_are_reported)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "[refuse] do something", &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "refusal");
    json_decref(o);
    ck_assert_int_eq(agent_ask(&H, "[max_tokens] write a lot", &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "max_tokens");
    json_decref(o);
    ck_assert_int_eq(agent_ask(&H, "[pause] think", &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "end_turn");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "iterations")), 2);
    json_decref(o);
    ck_assert_int_eq(agent_ask(&H, "[unknown_block] hi", &o), 200);
    ck_assert_ptr_nonnull(strstr(output_of(o), "You said"));
    json_decref(o);
    ck_assert_int_eq(agent_ask(&H, "[unknown_stop] hi", &o), 200);
    json_decref(o);
}
END_TEST

START_TEST(test_agent_iteration_cap_ends_the_loop)
{
    json_t *o = NULL;
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"[loop] 1+1\",\"max_iterations\":3}", &o), 200);
    ck_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "max_iterations");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "iterations")), 3);
    json_decref(o);
}
END_TEST

START_TEST(test_agent_deadline_answers_504_in_time)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":5000,\"count\":1}");
    json_t *o = NULL;
    int64_t t0 = harness_now_ms();
    ck_assert_int_eq(agent_post(&H, "{\"input\":\"hello\",\"timeout_ms\":300}", &o), 504);
    int64_t took = harness_now_ms() - t0;
    ck_assert_str_eq(error_type(o), "deadline_exceeded");
    ck_assert_msg(took < 3000, "504 took %lld ms", (long long)took);
    json_decref(o);
}
END_TEST

START_TEST(test_agent_request_id_is_echoed_or_generated)
{
    char url[128], rid[160];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", "X-Request-Id: my-req.42", NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, "{\"input\":\"hi\"}", 14, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert(http_header(&r, "X-Request-Id", rid, sizeof(rid)));
    ck_assert_str_eq(rid, "my-req.42");
    ck_assert_ptr_nonnull(strstr(r.body, "\"request_id\":\"my-req.42\""));
    http_resp_free(&r);
    const char *bad[] = {"Content-Type: application/json", "X-Request-Id: bad id!", NULL};
    ck_assert_int_eq(http_do("POST", url, bad, "{\"input\":\"hi\"}", 14, false, &r), 0);
    ck_assert(http_header(&r, "X-Request-Id", rid, sizeof(rid)));
    ck_assert_str_ne(rid, "bad id!");
    /* A generated id: "req_" and 24 lower-case hex digits, new for every request. */
    ck_assert_uint_eq(strlen(rid), 28);
    ck_assert_int_eq(strncmp(rid, "req_", 4), 0);
    ck_assert_uint_eq(strspn(rid + 4, "0123456789abcdef"), 24);
    http_resp_free(&r);
    char again[160];
    ck_assert_int_eq(http_do("POST", url, bad, "{\"input\":\"hi\"}", 14, false, &r), 0);
    ck_assert(http_header(&r, "X-Request-Id", again, sizeof(again)));
    ck_assert_str_ne(again, rid);
    http_resp_free(&r);
}
END_TEST

/* Request headers: about 7 KiB in all are served (docs/API.md); far more gets libmicrohttpd's 431,
   not a crash or a hang. */
START_TEST(test_api_request_header_limit)
{
    char url[128], big[12 * 1024 + 16];
    snprintf(url, sizeof(url), "%s/health/live", H.agentd_url);
    struct http_resp r;
    size_t sizes[] = {6 * 1024, 12 * 1024};
    for (size_t i = 0; i < 2; i++) {
        int n = snprintf(big, sizeof(big), "X-Big: ");
        memset(big + n, 'a', sizes[i]);
        big[(size_t)n + sizes[i]] = '\0';
        const char *hdrs[] = {big, NULL};
        ck_assert_int_eq(http_do("GET", url, hdrs, NULL, 0, false, &r), 0);
        ck_assert_int_eq(r.status, i == 0 ? 200 : 431);
        http_resp_free(&r);
    }
}
END_TEST

START_TEST(test_every_request_body_sent_validates_against_openapi)
{
    /* A spread of turns: tools, several tool_use blocks, an is_error result, a continuation
       after pause_turn, a conversation's second turn. */
    static const char *inputs[] = {
        "What's 15 * 23?",
        "What is the weather in Paris and what is 2 + 3?",
        "what is 1/0",
        "[pause] think",
        "save note: contract test",
        "weather in Atlantis",
    };
    json_t *o = NULL;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        ck_assert_int_eq(agent_ask(&H, inputs[i], &o), 200);
        json_decref(o);
    }
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(agent_post(&H, "{\"input\":\"6*7\",\"conversation_id\":\"k\"}", &o), 200);
        json_decref(o);
    }
    json_t *log = fake_requests(&H);
    char path[320];
    snprintf(path, sizeof(path), "%s/bodies.jsonl", H.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(log, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        if (route && strcmp(route, "messages") == 0) {
            char *body = json_dumps(json_object_get(e, "body"), JSON_COMPACT);
            fprintf(f, "%s\n", body);
            free(body);
            n++;
        }
    }
    fclose(f);
    json_decref(log);
    ck_assert_uint_ge(n, 14);
    const char *py = getenv("VALIDATE_REQUESTS_PY"), *spec = getenv("OPENAPI_JSON");
    ck_assert_msg(py && spec, "VALIDATE_REQUESTS_PY / OPENAPI_JSON not set");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s %s", py, spec, path);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- 4xx ----------------------------------------------------------------------- */

static long post_raw(const char *ctype, const char *body, size_t len, bool chunked, json_t **ret)
{
    char url[128], ct[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
    const char *hdrs[] = {ct, NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, body, len, chunked, &r), 0);
    *ret = r.body ? json_loads(r.body, 0, NULL) : NULL;
    ck_assert_msg(*ret != NULL, "error body is not JSON: %s", r.body ? r.body : "(none)");
    char rid[160];
    ck_assert(http_header(&r, "X-Request-Id", rid, sizeof(rid)));
    long st = r.status;
    http_resp_free(&r);
    return st;
}

START_TEST(test_api_400_for_bad_bodies)
{
    static const char *bodies[] = {
        "{not json",
        "[1,2]",
        "{}",
        "{\"input\":\"\"}",
        "{\"input\":42}",
        "{\"input\":\"hi\",\"extra\":1}",
        "{\"input\":\"hi\",\"input\":\"again\"}",
        "{\"input\":\"hi\",\"max_iterations\":0}",
        "{\"input\":\"hi\",\"max_iterations\":6}",
        "{\"input\":\"hi\",\"timeout_ms\":99}",
        "{\"input\":\"hi\",\"priority\":\"urgent\"}",
        "{\"input\":\"hi\",\"conversation_id\":\"bad id\"}",
        "{\"input\":\"\xc3\x28\"}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *o;
        long st = post_raw("application/json", bodies[i], strlen(bodies[i]), false, &o);
        ck_assert_msg(st == 400, "body %zu: status %ld", i, st);
        ck_assert_str_eq(error_type(o), "invalid_request");
        ck_assert(json_is_string(json_object_get(json_object_get(o, "error"), "message")));
        ck_assert(json_is_string(json_object_get(o, "request_id")));
        json_decref(o);
    }
}
END_TEST

START_TEST(test_api_404_and_405_with_allow)
{
    char url[128], allow[64];
    struct http_resp r;
    snprintf(url, sizeof(url), "%s/v1/nothing", H.agentd_url);
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_ptr_nonnull(strstr(r.body, "\"not_found\""));
    http_resp_free(&r);
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_ptr_nonnull(strstr(r.body, "\"method_not_allowed\""));
    ck_assert(http_header(&r, "Allow", allow, sizeof(allow)));
    ck_assert_str_eq(allow, "POST");
    http_resp_free(&r);
    snprintf(url, sizeof(url), "%s/health/live", H.agentd_url);
    ck_assert_int_eq(http_do("DELETE", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 405);
    http_resp_free(&r);
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    http_resp_free(&r);
}
END_TEST

START_TEST(test_api_413_for_content_length_and_chunked)
{
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n + 32);
    memcpy(big, "{\"input\":\"", 10);
    memset(big + 10, 'a', n);
    memcpy(big + 10 + n, "\"}", 3);
    json_t *o;
    ck_assert_int_eq(post_raw("application/json", big, n + 12, false, &o), 413);
    ck_assert_str_eq(error_type(o), "payload_too_large");
    json_decref(o);
    ck_assert_int_eq(post_raw("application/json", big, n + 12, true, &o), 413);
    ck_assert_str_eq(error_type(o), "payload_too_large");
    json_decref(o);
    /* A client that asks for 100-continue is answered before it sends the body. */
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", "Expect: 100-continue", NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, big, n + 12, false, &r), 0);
    ck_assert_int_eq(r.status, 413);
    ck_assert_int_lt(r.uploaded, (long long)n);
    http_resp_free(&r);
    free(big);
    /* A small chunked body is fine. */
    ck_assert_int_eq(post_raw("application/json", "{\"input\":\"hi\"}", 14, true, &o), 200);
    json_decref(o);
}
END_TEST

START_TEST(test_api_415_for_non_json)
{
    json_t *o;
    ck_assert_int_eq(post_raw("text/plain", "{\"input\":\"hi\"}", 14, false, &o), 415);
    ck_assert_str_eq(error_type(o), "unsupported_media_type");
    json_decref(o);
}
END_TEST

START_TEST(test_api_502_when_llm_refuses_permanently)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"status\":401,\"count\":1}");
    fake_clear_requests(&H);
    json_t *o = NULL;
    ck_assert_int_eq(agent_ask(&H, "hello", &o), 502);
    ck_assert_str_eq(error_type(o), "upstream_error");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "upstream_status")), 401);
    ck_assert_uint_eq(fake_count(&H, "messages"), 1);
    json_decref(o);
}
END_TEST

static long post_with_key(const char *key, const char *body, struct http_resp *r)
{
    char url[128], hk[300];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    snprintf(hk, sizeof(hk), "Idempotency-Key: %s", key);
    const char *hdrs[] = {"Content-Type: application/json", hk, NULL};
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, r), 0);
    return r->status;
}

START_TEST(test_idempotency_key_replays_byte_identical_answer)
{
    struct http_resp a, b;
    char replayed[16];
    ck_assert_int_eq(post_with_key("order-17", "{\"input\":\"What is 4 * 4?\"}", &a), 200);
    ck_assert(!http_header(&a, "Idempotent-Replayed", replayed, sizeof(replayed)));
    size_t calls = fake_count(&H, "messages");
    ck_assert_int_eq(post_with_key("order-17", "{\"input\":\"What is 4 * 4?\"}", &b), 200);
    ck_assert(http_header(&b, "Idempotent-Replayed", replayed, sizeof(replayed)));
    ck_assert_str_eq(replayed, "true");
    ck_assert_uint_eq(a.len, b.len);
    ck_assert_int_eq(memcmp(a.body, b.body, a.len), 0);
    ck_assert_uint_eq(fake_count(&H, "messages"), calls); /* nothing ran again */
    http_resp_free(&b);
    /* Same key, another body. */
    ck_assert_int_eq(post_with_key("order-17", "{\"input\":\"What is 5 * 5?\"}", &b), 422);
    ck_assert_ptr_nonnull(strstr(b.body, "idempotency_key_reused"));
    http_resp_free(&b);
    ck_assert_int_eq(post_with_key("bad key \x01", "{\"input\":\"x\"}", &b), 400);
    http_resp_free(&b);
    http_resp_free(&a);
}
END_TEST

struct keyed {
    long status;
};

static void *keyed_slow(void *p)
{
    struct keyed *k = p;
    struct http_resp r;
    k->status = post_with_key("slow-1", "{\"input\":\"hello\"}", &r);
    http_resp_free(&r);
    return NULL;
}

START_TEST(test_idempotency_key_in_progress_is_409)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":1500,\"count\":1}");
    pthread_t th;
    struct keyed k = {0};
    pthread_create(&th, NULL, keyed_slow, &k);
    fake_wait_count(&H, "messages", 1, 5000);
    struct http_resp r;
    ck_assert_int_eq(post_with_key("slow-1", "{\"input\":\"hello\"}", &r), 409);
    ck_assert_ptr_nonnull(strstr(r.body, "idempotency_in_progress"));
    char ra[16];
    ck_assert(http_header(&r, "Retry-After", ra, sizeof(ra)));
    http_resp_free(&r);
    pthread_join(th, NULL);
    ck_assert_int_eq(k.status, 200);
}
END_TEST

START_TEST(test_api_413_reaches_a_client_that_sends_the_whole_body_first)
{
    /* A plain client writes its whole request before it reads. Were agentd to answer and close
       with the body still unread, the kernel would reset the connection: the write fails or the
       413 is lost. The reset is a race, so several tries. */
    size_t n = 3 * 1024 * 1024, hlen;
    char *req = malloc(n + 256);
    hlen =
        (size_t)sprintf(req,
                        "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        n);
    memset(req + hlen, 'a', n);
    for (int i = 0; i < 6; i++) {
        int fd = harness_connect(&H);
        size_t off = 0;
        while (off < hlen + n) {
            ssize_t w = send(fd, req + off, hlen + n - off, MSG_NOSIGNAL);
            ck_assert_msg(w > 0, "try %d: send failed after %zu bytes: %s", i, off,
                          strerror(errno));
            off += (size_t)w;
        }
        char resp[2048];
        ck_assert_int_eq(harness_read_response(fd, resp, sizeof(resp)), 413);
        /* The body was read, so the connection is still good for the next request. */
        const char *next = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
        ck_assert_int_eq(send(fd, next, strlen(next), MSG_NOSIGNAL), (ssize_t)strlen(next));
        ck_assert_int_eq(harness_read_response(fd, resp, sizeof(resp)), 200);
        close(fd);
    }
    free(req);
}
END_TEST

/* Probes and scrapers reuse their connection: GET answers keep it open. */
START_TEST(test_get_routes_keep_the_connection_alive)
{
    /* One connection for every route, in mixed order: each answer leaves it open for the next. */
    int fd = harness_connect(&H);
    static const char agent_body[] = "{\"input\":\"What is 2 * 3?\"}";
    const char *paths[] = {"/health/live",  "/v1/agent", "/metrics",    "/v1/agent",
                           "/health/ready", "/v1/agent", "/health/live"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char req[512], resp[65536];
        bool agent = strcmp(paths[i], "/v1/agent") == 0;
        int n = agent ? snprintf(req, sizeof(req),
                                 "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                 "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                                 strlen(agent_body), agent_body)
                      : snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        ck_assert_int_eq(write(fd, req, (size_t)n), n);
        int status = harness_read_response(fd, resp, sizeof(resp));
        if (agent)
            ck_assert_msg(status == 200 && strstr(resp, "6"), "request %zu: status %d", i, status);
        else
            ck_assert_msg(status == 200 || status == 503, "%s: status %d", paths[i], status);
        ck_assert_msg(!strcasestr(resp, "\r\nConnection: close"), "%s closed the connection",
                      paths[i]);
    }
    close(fd);
}
END_TEST

START_TEST(test_run_is_cancelled_when_the_client_goes_away)
{
    /* The first LLM call asks for a tool, slowly; the client gives up before it answers. */
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":1500,\"count\":1}");
    int fd = harness_connect(&H);
    const char *body = "{\"input\":\"What is 2 * 3?\"}";
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "X-Request-Id: gone-1\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    fake_wait_count(&H, "messages", 1, 5000);
    close(fd);
    /* The run ends without waiting for the slow answer's follow-up calls. */
    char *log = NULL;
    int64_t until = harness_now_ms() + 5000;
    do {
        free(log);
        usleep(50 * 1000);
        log = harness_read_log(&H);
    } while (!strstr(log, "client went away") && harness_now_ms() < until);
    ck_assert_ptr_nonnull(strstr(log, "client went away"));
    free(log);
    usleep(2000 * 1000); /* past the slow answer: no second LLM call was made */
    ck_assert_uint_eq(fake_count(&H, "messages"), 1);
}
END_TEST

/* A run with an Idempotency-Key is not cancelled when its client leaves: the client's retry (same
   key) waits for it (409 while it runs) and then gets its real answer, replayed, without a second
   run. A client-gone outcome is never stored under the key. */
START_TEST(test_keyed_run_survives_its_client_and_the_retry_gets_the_answer)
{
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":1000,\"count\":1}");
    int fd = harness_connect(&H);
    const char *body = "{\"input\":\"What is 6 * 7?\"}";
    char req[320];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/agent HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Idempotency-Key: gone-key-1\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    fake_wait_count(&H, "messages", 1, 5000);
    close(fd);
    struct http_resp r;
    long st = post_with_key("gone-key-1", body, &r);
    int64_t until = harness_now_ms() + 10000;
    while (st == 409 && harness_now_ms() < until) {
        http_resp_free(&r);
        usleep(100 * 1000);
        st = post_with_key("gone-key-1", body, &r);
    }
    ck_assert_int_eq(st, 200);
    char replayed[16];
    ck_assert(http_header(&r, "Idempotent-Replayed", replayed, sizeof(replayed)));
    ck_assert_ptr_nonnull(strstr(r.body, "42"));
    http_resp_free(&r);
    /* One run: the tool round trip's two LLM calls, nothing more. */
    ck_assert_uint_eq(fake_count(&H, "messages"), 2);
    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(strstr(log, "run goes on for its Idempotency-Key"));
    free(log);
}
END_TEST

/* ---- concurrency ------------------------------------------------------------------ */

struct worker_arg {
    int n;
    int ok;
};

static void *concurrent_one(void *p)
{
    struct worker_arg *a = p;
    char input[64], want[32];
    snprintf(input, sizeof(input), "What is %d * 7?", a->n);
    snprintf(want, sizeof(want), "%d", a->n * 7);
    json_t *o = NULL;
    long st = agent_ask(&H, input, &o);
    a->ok = st == 200 && strstr(output_of(o), want) != NULL;
    json_decref(o);
    return NULL;
}

START_TEST(test_agent_64_concurrent_requests_all_correct)
{
    enum { N = 64 };
    pthread_t th[N];
    struct worker_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct worker_arg){.n = 100 + i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, concurrent_one, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
    }
    ck_assert_int_eq(ok, N);
}
END_TEST

START_TEST(test_api_429_overloaded_above_max_inflight)
{
    /* Restart agentd with room for one run, then hold that run with a slow answer. */
    harness_stop(&H);
    static const char *env[] = {"AGENTD_MAX_INFLIGHT=1", NULL};
    harness_start(&H, env);
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":1500,\"count\":1}");
    pthread_t th;
    struct worker_arg a = {.n = 3};
    pthread_create(&th, NULL, concurrent_one, &a);
    /* Wait until the slow run is admitted (the fake has seen its call). */
    fake_wait_count(&H, "messages", 1, 5000);
    json_t *o;
    char ra[16];
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    ck_assert_int_eq(http_do("POST", url, hdrs, "{\"input\":\"hi\"}", 14, false, &r), 0);
    ck_assert_int_eq(r.status, 429);
    ck_assert(http_header(&r, "Retry-After", ra, sizeof(ra)));
    o = json_loads(r.body, 0, NULL);
    ck_assert_str_eq(error_type(o), "overloaded");
    json_decref(o);
    http_resp_free(&r);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.ok, 1);
}
END_TEST

START_TEST(test_agentd_exits_zero_on_sigterm)
{
    ck_assert_int_eq(harness_stop(&H), 0);
    memset(&H, 0, sizeof(H));
    harness_start(&H, NULL);
}
END_TEST

START_TEST(test_agentd_listens_dual_stack_on_the_ipv6_wildcard)
{
    if (access("/proc/net/if_inet6", F_OK) != 0) {
        fprintf(stderr, "no IPv6 on this host: dual-stack listening not checked\n");
        return;
    }
    ck_assert_int_eq(harness_stop(&H), 0);
    memset(&H, 0, sizeof(H));
    harness_start_fake(&H);
    H.agentd_host = "[::]";
    harness_start_agentd(&H, NULL); /* waits for 200 on 127.0.0.1: IPv4 is served */
    char url[96];
    snprintf(url, sizeof(url), "http://[::1]:%d/health/live", H.agentd_port);
    struct http_resp r;
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_agent_answers_arithmetic_with_calculator);
    tcase_add_test(tc, test_agent_runs_weather_and_arithmetic_from_one_message);
    tcase_add_test(tc, test_agent_same_note_twice_writes_one_file);
    tcase_add_test(tc, test_agent_web_search_returns_results);
    tcase_add_test(tc, test_agent_conversation_continues_with_history);
    tcase_add_test(tc, test_agent_conversation_after_tools_stays_valid);
    tcase_add_test(tc, test_agent_stop_reasons_are_reported);
    tcase_add_test(tc, test_agent_iteration_cap_ends_the_loop);
    tcase_add_test(tc, test_agent_deadline_answers_504_in_time);
    tcase_add_test(tc, test_agent_request_id_is_echoed_or_generated);
    tcase_add_test(tc, test_api_request_header_limit);
    tcase_add_test(tc, test_every_request_body_sent_validates_against_openapi);
    tcase_add_test(tc, test_run_is_cancelled_when_the_client_goes_away);
    tcase_add_test(tc, test_get_routes_keep_the_connection_alive);
    tcase_add_test(tc, test_keyed_run_survives_its_client_and_the_retry_gets_the_answer);
    tcase_add_test(tc, test_idempotency_key_replays_byte_identical_answer);
    tcase_add_test(tc, test_idempotency_key_in_progress_is_409);
    tcase_add_test(tc, test_api_400_for_bad_bodies);
    tcase_add_test(tc, test_api_404_and_405_with_allow);
    tcase_add_test(tc, test_api_413_for_content_length_and_chunked);
    tcase_add_test(tc, test_api_413_reaches_a_client_that_sends_the_whole_body_first);
    tcase_add_test(tc, test_api_415_for_non_json);
    tcase_add_test(tc, test_api_502_when_llm_refuses_permanently);
    tcase_add_test(tc, test_agent_64_concurrent_requests_all_correct);
    tcase_add_test(tc, test_api_429_overloaded_above_max_inflight);
    tcase_add_test(tc, test_agentd_exits_zero_on_sigterm);
    tcase_add_test(tc, test_agentd_listens_dual_stack_on_the_ipv6_wildcard);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
