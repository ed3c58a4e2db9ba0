/*
 * test_cluster.c — several replicas, one truth: three real agentd processes
 * sharing one real redis-server (started on a free loopback port) in front of
 * one fake upstream. What is checked is what reached the upstream (the fake's
 * request log, with its timestamps): the aggregate LLM rate of all replicas
 * together, a 429 pause that one replica heard holding back the others, and
 * Redis dying and coming back under load without one failed request.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../redis_fixture.h"
#include "agentd/checkpoint.h"
#include "agentd/idempotency.h"
#include "harness.h"

#define REPLICAS 3

static struct harness R[REPLICAS];
static struct redis_fixture redis;
static bool started;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Redis, the fake, then REPLICAS agentd processes with env (plus the Redis URL). */
static void start_cluster(const char *const *env)
{
    char url_var[128];
    const char *all[32];
    size_t n = 0;

    ck_assert_int_eq(redis_fixture_start(&redis), 0);
    snprintf(url_var, sizeof(url_var), "AGENTD_REDIS_URL=%s", redis.url);
    all[n++] = url_var;
    all[n++] = "AGENTD_READY_INTERVAL_MS=200";
    for (size_t i = 0; env && env[i]; i++) {
        ck_assert_uint_lt(n, 31);
        all[n++] = env[i];
    }
    all[n] = NULL;
    memset(R, 0, sizeof(R));
    harness_start_fake(&R[0]);
    started = true;
    for (int i = 0; i < REPLICAS; i++) {
        if (i > 0) {
            R[i] = R[0];
            R[i].fake_pid = 0; /* one fake, owned by R[0] */
        }
        snprintf(R[i].log_path, sizeof(R[i].log_path), "%s/agentd-%d.log", R[0].dir, i);
        harness_start_agentd(&R[i], all);
    }
}

static void teardown(void)
{
    if (!started)
        return;
    started = false;
    int status[REPLICAS];
    for (int i = REPLICAS - 1; i >= 0; i--) {
        if (i > 0)
            R[i].dir[0] = '\0'; /* R[0] removes the shared dir */
        status[i] = harness_stop(&R[i]);
    }
    redis_fixture_stop(&redis);
    /* Exit status 0 also proves a sanitizer build of the daemon found nothing. */
    for (int i = 0; i < REPLICAS; i++)
        ck_assert_int_eq(status[i], 0);
}

/* ---- load ------------------------------------------------------------------------- */

struct load {
    const char *url; /* replica's /v1/agent */
    int64_t until_ms;
    int ok, failed;
    long last_bad_status;
};

static void *load_thread(void *arg)
{
    struct load *l = arg;
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    static const char body[] = "{\"input\":\"hello there\"}";
    while (harness_now_ms() < l->until_ms) {
        struct http_resp r;
        int rc = http_do("POST", l->url, hdrs, body, strlen(body), false, &r);
        if (rc == 0 && r.status == 200) {
            l->ok++;
        } else {
            l->failed++;
            l->last_bad_status = rc == 0 ? r.status : -1;
        }
        http_resp_free(&r);
    }
    return NULL;
}

#define THREADS_PER_REPLICA 6

/* Closed-loop clients on every replica for duration_ms; totals into *ok and *failed. While it
   runs, mid(arg) is called once, mid_at_ms after the start (NULL: none). */
static void run_load(int64_t duration_ms, int64_t mid_at_ms, void (*mid)(void *), void *arg,
                     int *ok, int *failed)
{
    struct load loads[REPLICAS * THREADS_PER_REPLICA];
    pthread_t tids[REPLICAS * THREADS_PER_REPLICA];
    char urls[REPLICAS][128];
    int64_t t0 = harness_now_ms();

    for (int i = 0; i < REPLICAS; i++)
        snprintf(urls[i], sizeof(urls[i]), "%s/v1/agent", R[i].agentd_url);
    for (int i = 0; i < REPLICAS * THREADS_PER_REPLICA; i++) {
        loads[i] = (struct load){.url = urls[i % REPLICAS], .until_ms = t0 + duration_ms};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, load_thread, &loads[i]), 0);
    }
    if (mid) {
        sleep_ms(mid_at_ms);
        mid(arg);
    }
    *ok = *failed = 0;
    long bad = 0;
    for (int i = 0; i < REPLICAS * THREADS_PER_REPLICA; i++) {
        pthread_join(tids[i], NULL);
        *ok += loads[i].ok;
        *failed += loads[i].failed;
        if (loads[i].failed)
            bad = loads[i].last_bad_status;
    }
    if (*failed)
        fprintf(stderr, "load: %d ok, %d failed (last bad status %ld)\n", *ok, *failed, bad);
}

/* Timestamps (fake's clock, ms) of the LLM calls the fake logged, ascending. */
static size_t llm_times(int64_t *ts, size_t cap)
{
    json_t *reqs = fake_requests(&R[0]);
    size_t n = 0, i;
    json_t *e;
    json_array_foreach(reqs, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        if (route && strcmp(route, "messages") == 0 && n < cap)
            ts[n++] = json_integer_value(json_object_get(e, "ts_ms"));
    }
    json_decref(reqs);
    return n;
}

static json_t *ready_body(struct harness *h, long *ret_status)
{
    char url[128];
    struct http_resp r;
    snprintf(url, sizeof(url), "%s/health/ready", h->agentd_url);
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    *ret_status = r.status;
    json_t *j = r.body ? json_loads(r.body, 0, NULL) : NULL;
    http_resp_free(&r);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* The "redis" check of h's readiness ("ok", "degraded"); asserts readiness stays 200. */
static char *redis_check(struct harness *h)
{
    long status;
    json_t *j = ready_body(h, &status);
    const char *s = json_string_value(
        json_object_get(json_object_get(json_object_get(j, "checks"), "redis"), "status"));
    char *out = strdup(s ? s : "(absent)");
    json_decref(j);
    ck_assert_int_eq(status, 200);
    return out;
}

/* Polls until every replica's redis check says want, or timeout_ms passes. */
static bool wait_redis_check(const char *want, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    for (;;) {
        int matching = 0;
        for (int i = 0; i < REPLICAS; i++) {
            char *s = redis_check(&R[i]);
            matching += strcmp(s, want) == 0;
            free(s);
        }
        if (matching == REPLICAS)
            return true;
        if (harness_now_ms() >= until)
            return false;
        sleep_ms(50);
    }
}

/* ---- tests ------------------------------------------------------------------------ */

#define RATE  20
#define BURST 5

START_TEST(test_three_replicas_share_one_llm_rate)
{
    const char *env[] = {"AGENTD_LLM_RATE=20", "AGENTD_LLM_BURST=5", NULL};
    start_cluster(env);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);

    int ok, failed;
    /* 18 closed-loop clients: each replica alone is offered far more than RATE. */
    run_load(3000, 0, NULL, NULL, &ok, &failed);
    ck_assert_int_eq(failed, 0);

    static int64_t ts[4096];
    size_t n = llm_times(ts, 4096);
    ck_assert_uint_ge(n, 20);
    double span_s = (double)(ts[n - 1] - ts[0]) / 1000.0;
    double limit = BURST + RATE * span_s * 1.05 + 1;
    double floor = RATE * span_s * 0.95;
    fprintf(stderr, "cluster rate: %zu LLM calls in %.3f s (limit %.1f, floor %.1f)\n", n, span_s,
            limit, floor);
    /* Per replica (no sharing) this load would be 3 x RATE. */
    ck_assert_msg(n <= limit, "%zu LLM calls in %.3f s: over the shared rate", n, span_s);
    ck_assert_msg(n >= floor, "%zu LLM calls in %.3f s: under the shared rate", n, span_s);
    ck_assert_int_eq(ok, (int)n);
}
END_TEST

struct ask {
    struct harness *h;
    long status;
};

static void *ask_thread(void *arg)
{
    struct ask *a = arg;
    json_t *j = NULL;
    a->status = agent_ask(a->h, "hello there", &j);
    json_decref(j);
    return NULL;
}

START_TEST(test_429_heard_by_one_replica_pauses_all)
{
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);
    fake_add_fault(&R[0], "{\"route\":\"messages\",\"status\":429,\"count\":1,"
                          "\"headers\":{\"retry-after-ms\":\"1500\"}}");

    struct ask a[REPLICAS];
    pthread_t tids[REPLICAS];
    a[0] = (struct ask){.h = &R[0]};
    ck_assert_int_eq(pthread_create(&tids[0], NULL, ask_thread, &a[0]), 0);
    /* Replica 0's first call got the 429: the others ask only now. */
    ck_assert_uint_ge(fake_wait_count(&R[0], "messages", 1, 5000), 1);
    sleep_ms(50);
    for (int i = 1; i < REPLICAS; i++) {
        a[i] = (struct ask){.h = &R[i]};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, ask_thread, &a[i]), 0);
    }
    for (int i = 0; i < REPLICAS; i++) {
        pthread_join(tids[i], NULL);
        ck_assert_int_eq(a[i].status, 200);
    }
    int64_t ts[16];
    size_t n = llm_times(ts, 16);
    ck_assert_uint_eq(n, 1 + REPLICAS); /* the 429, then one call per run */
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(ts[i] - ts[0] >= 1400, "call %zu came %lld ms after the 429", i,
                      (long long)(ts[i] - ts[0]));
}
END_TEST

/* The rate-limit headers say the API's budget is spent until a reset: the replica that heard
   them holds the whole cluster until then, so no replica sends a call that would get a 429. */
START_TEST(test_spent_rate_limit_heard_by_one_replica_holds_all)
{
    enum { WINDOW_MS = 2000 };
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);
    char url[128];
    static const char body[] = "{\"requests\":1,\"window_ms\":2000}";
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    snprintf(url, sizeof(url), "%s/_admin/ratelimit", R[0].fake_url);
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    /* Replica 0's call spends the window; the others ask after it answered. */
    struct ask a[REPLICAS];
    pthread_t tids[REPLICAS];
    a[0] = (struct ask){.h = &R[0]};
    ask_thread(&a[0]);
    ck_assert_int_eq(a[0].status, 200);
    for (int i = 1; i < REPLICAS; i++) {
        a[i] = (struct ask){.h = &R[i]};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, ask_thread, &a[i]), 0);
    }
    for (int i = 1; i < REPLICAS; i++) {
        pthread_join(tids[i], NULL);
        ck_assert_int_eq(a[i].status, 200);
    }
    json_t *reqs = fake_requests(&R[0]);
    size_t i, refused = 0;
    json_t *e;
    json_array_foreach(reqs, i, e) refused +=
        json_integer_value(json_object_get(e, "status")) == 429;
    json_decref(reqs);
    ck_assert_uint_eq(refused, 0);
    int64_t ts[16];
    size_t n = llm_times(ts, 16);
    ck_assert_uint_eq(n, REPLICAS);
    for (size_t k = 1; k < n; k++)
        ck_assert_msg(ts[k] - ts[0] >= WINDOW_MS - 200, "call %zu came %lld ms after the first", k,
                      (long long)(ts[k] - ts[0]));
}
END_TEST

/* Six runs at once, two per replica, against a budget the first call's worst case already
   fills: the cluster admits exactly one, and the rest of the cluster refuses even the replicas
   that never saw a call (per replica, three would start). */
START_TEST(test_budget_is_reached_cluster_wide_and_in_flight_calls_reserve)
{
    const char *env[] = {"AGENTD_BUDGET_TOKENS_PER_HOUR=1", NULL};
    start_cluster(env);
    ck_assert(wait_redis_check("ok", 5000));
    fake_add_fault(&R[0], "{\"route\":\"messages\",\"delay_ms\":400}");
    fake_clear_requests(&R[0]);

    struct ask a[2 * REPLICAS];
    pthread_t tids[2 * REPLICAS];
    for (int i = 0; i < 2 * REPLICAS; i++) {
        a[i] = (struct ask){.h = &R[i % REPLICAS]};
        ck_assert_int_eq(pthread_create(&tids[i], NULL, ask_thread, &a[i]), 0);
    }
    int ok = 0, spent = 0;
    for (int i = 0; i < 2 * REPLICAS; i++) {
        pthread_join(tids[i], NULL);
        ok += a[i].status == 200;
        spent += a[i].status == 429;
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(spent, 2 * REPLICAS - 1);
    int64_t ts[16];
    ck_assert_uint_eq(llm_times(ts, 16), 1);
    /* Later runs on any replica are refused too. */
    for (int i = 0; i < REPLICAS; i++) {
        json_t *j = NULL;
        ck_assert_int_eq(agent_ask(&R[i], "hello there", &j), 429);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                         "budget_exceeded");
        json_decref(j);
    }
}
END_TEST

/* POST /v1/agent to h with body and an optional Idempotency-Key; 0 when *ret holds an answer.
   Safe from any thread (no assertions). */
static int post_raw(struct harness *h, const char *body, const char *key, struct http_resp *ret)
{
    char url[128], key_hdr[300];
    const char *hdrs[3] = {"Content-Type: application/json", NULL, NULL};
    snprintf(url, sizeof(url), "%s/v1/agent", h->agentd_url);
    if (key) {
        snprintf(key_hdr, sizeof(key_hdr), "Idempotency-Key: %s", key);
        hdrs[1] = key_hdr;
    }
    return http_do("POST", url, hdrs, body, strlen(body), false, ret);
}

static void post_to(struct harness *h, const char *body, const char *key, struct http_resp *ret)
{
    ck_assert_int_eq(post_raw(h, body, key, ret), 0);
}

static const char *error_type(const struct http_resp *r, char *buf, size_t cap)
{
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(json_object_get(j, "error"), "type"));
    snprintf(buf, cap, "%s", t ? t : "(none)");
    json_decref(j);
    return buf;
}

START_TEST(test_idempotent_retry_through_another_replica_replays_byte_for_byte)
{
    static const char body[] = "{\"input\":\"What is 6 * 7?\"}";
    char buf[64];
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);

    struct http_resp first, again, other;
    post_to(&R[0], body, "order-42", &first);
    ck_assert_int_eq(first.status, 200);
    size_t calls = fake_count(&R[0], "messages");
    ck_assert_uint_ge(calls, 1);
    /* The retry lands on another replica: the same bytes, marked replayed, nothing runs. */
    post_to(&R[1], body, "order-42", &again);
    ck_assert_int_eq(again.status, 200);
    ck_assert_uint_eq(again.len, first.len);
    ck_assert_mem_eq(again.body, first.body, first.len);
    ck_assert(http_header(&again, "Idempotent-Replayed", buf, sizeof(buf)));
    ck_assert_str_eq(buf, "true");
    ck_assert(!http_header(&first, "Idempotent-Replayed", buf, sizeof(buf)));
    ck_assert_uint_eq(fake_count(&R[0], "messages"), calls);
    /* The same key with another body, on a third replica. */
    post_to(&R[2], "{\"input\":\"What is 6 * 8?\"}", "order-42", &other);
    ck_assert_int_eq(other.status, 422);
    ck_assert_str_eq(error_type(&other, buf, sizeof(buf)), "idempotency_key_reused");
    http_resp_free(&first);
    http_resp_free(&again);
    http_resp_free(&other);
}
END_TEST

struct keyed {
    struct harness *h;
    const char *body, *key;
    struct http_resp resp;
};

static void *keyed_thread(void *arg)
{
    struct keyed *k = arg;
    if (post_raw(k->h, k->body, k->key, &k->resp) != 0)
        k->resp.status = -1;
    return NULL;
}

START_TEST(test_key_still_running_on_one_replica_is_409_on_another)
{
    static const char body[] = "{\"input\":\"hello there\"}";
    char buf[64];
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_add_fault(&R[0], "{\"route\":\"messages\",\"delay_ms\":1000,\"count\":1}");
    fake_clear_requests(&R[0]);

    struct keyed k = {.h = &R[0], .body = body, .key = "slow-1"};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, keyed_thread, &k), 0);
    ck_assert_uint_ge(fake_wait_count(&R[0], "messages", 1, 5000), 1);
    struct http_resp busy;
    post_to(&R[1], body, "slow-1", &busy);
    ck_assert_int_eq(busy.status, 409);
    ck_assert_str_eq(error_type(&busy, buf, sizeof(buf)), "idempotency_in_progress");
    ck_assert(http_header(&busy, "Retry-After", buf, sizeof(buf)));
    pthread_join(tid, NULL);
    ck_assert_int_eq(k.resp.status, 200);
    /* Done: now the other replica replays it. */
    struct http_resp again;
    post_to(&R[1], body, "slow-1", &again);
    ck_assert_int_eq(again.status, 200);
    ck_assert_mem_eq(again.body, k.resp.body, k.resp.len);
    http_resp_free(&busy);
    http_resp_free(&again);
    http_resp_free(&k.resp);
}
END_TEST

/* The messages of the last LLM request the fake logged. */
static json_t *last_llm_messages(void)
{
    json_t *reqs = fake_requests(&R[0]), *found = NULL, *e;
    size_t i;
    json_array_foreach(reqs, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        if (route && strcmp(route, "messages") == 0)
            found = json_object_get(json_object_get(e, "body"), "messages");
    }
    json_incref(found);
    json_decref(reqs);
    return found;
}

START_TEST(test_conversation_continues_on_another_replica)
{
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    struct http_resp r1, r2;
    post_to(&R[0], "{\"input\":\"my name is Ada\",\"conversation_id\":\"c-1\"}", NULL, &r1);
    ck_assert_int_eq(r1.status, 200);
    fake_clear_requests(&R[0]);
    post_to(&R[2], "{\"input\":\"what is my name?\",\"conversation_id\":\"c-1\"}", NULL, &r2);
    ck_assert_int_eq(r2.status, 200);
    /* Replica 2's first LLM request carried turn 1: user, assistant, then the new user turn. */
    json_t *reqs = fake_requests(&R[0]), *e, *msgs = NULL;
    size_t i;
    json_array_foreach(reqs, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        if (!msgs && route && strcmp(route, "messages") == 0)
            msgs = json_object_get(json_object_get(e, "body"), "messages");
    }
    ck_assert_ptr_nonnull(msgs);
    ck_assert_uint_eq(json_array_size(msgs), 3);
    /* With prompt caching (the default) the message carries a breakpoint: one text block. */
    const json_t *first = json_object_get(json_array_get(msgs, 0), "content");
    if (json_is_array(first))
        first = json_object_get(json_array_get(first, 0), "text");
    ck_assert_str_eq(json_string_value(first), "my name is Ada");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 1), "role")),
                     "assistant");
    json_decref(reqs);
    http_resp_free(&r1);
    http_resp_free(&r2);
}
END_TEST

START_TEST(test_two_turns_at_once_on_two_replicas_one_runs_one_409)
{
    static const char turn[] = "{\"input\":\"hello there\",\"conversation_id\":\"c-2\"}";
    char buf[64];
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_add_fault(&R[0], "{\"route\":\"messages\",\"delay_ms\":1000,\"count\":1}");
    fake_clear_requests(&R[0]);

    struct keyed k = {.h = &R[0], .body = turn};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, keyed_thread, &k), 0);
    ck_assert_uint_ge(fake_wait_count(&R[0], "messages", 1, 5000), 1);
    struct http_resp busy;
    post_to(&R[1], turn, NULL, &busy);
    ck_assert_int_eq(busy.status, 409);
    ck_assert_str_eq(error_type(&busy, buf, sizeof(buf)), "conversation_busy");
    pthread_join(tid, NULL);
    ck_assert_int_eq(k.resp.status, 200);
    /* The next turn sees exactly the one that ran: never a lost or doubled turn. */
    struct http_resp next;
    post_to(&R[1], turn, NULL, &next);
    ck_assert_int_eq(next.status, 200);
    json_t *msgs = last_llm_messages();
    ck_assert_ptr_nonnull(msgs);
    ck_assert_uint_eq(json_array_size(msgs), 3);
    json_decref(msgs);
    http_resp_free(&busy);
    http_resp_free(&next);
    http_resp_free(&k.resp);
}
END_TEST

/* ---- durable runs ------------------------------------------------------------------ */

static void kill_replica(struct harness *h)
{
    ck_assert_int_eq(kill(h->agentd_pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(h->agentd_pid, NULL, 0), h->agentd_pid);
    h->agentd_pid = 0;
    h->agentd_exit = 0; /* killed on purpose: teardown expects nothing more of it */
}

static json_t *parse(const struct http_resp *r)
{
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    ck_assert_msg(j != NULL, "not JSON: %s", r->body ? r->body : "(none)");
    return j;
}

/* Retries body with key on h until the answer is not 409 (at most timeout_ms); the first answer
   must be a 409 with Retry-After when want_409_first. */
static void retry_until_done(struct harness *h, const char *body, const char *key,
                             bool want_409_first, int timeout_ms, struct http_resp *ret)
{
    char buf[64];
    int64_t until = harness_now_ms() + timeout_ms;
    bool first = true;
    for (;;) {
        post_to(h, body, key, ret);
        if (ret->status != 409 || harness_now_ms() > until)
            break;
        ck_assert_str_eq(error_type(ret, buf, sizeof(buf)), "idempotency_in_progress");
        ck_assert(http_header(ret, "Retry-After", buf, sizeof(buf)));
        ck_assert_int_ge(atoi(buf), 1);
        first = false;
        http_resp_free(ret);
        sleep_ms(200);
    }
    ck_assert_msg(!want_409_first || !first, "the retry was not refused while the lease lived");
}

START_TEST(test_owner_killed_during_a_tool_call_resumes_elsewhere_without_repeating_steps)
{
    static const char body[] = "{\"input\":\"search for rust and weather in Paris\"}";
    const char *env[] = {"AGENTD_RUN_LEASE_MS=1500", NULL};
    start_cluster(env);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);
    fake_add_fault(&R[0], "{\"route\":\"geocoding\",\"hang\":true,\"count\":1}");

    struct keyed k = {.h = &R[1], .body = body, .key = "durable-1"};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, keyed_thread, &k), 0);
    /* The search completed, the weather's geocoding hangs: the owner dies now. */
    ck_assert_uint_ge(fake_wait_count(&R[0], "geocoding", 1, 5000), 1);
    ck_assert_uint_eq(fake_count(&R[0], "search"), 1);
    sleep_ms(100); /* the search result's checkpoint */
    kill_replica(&R[1]);
    pthread_join(tid, NULL);
    http_resp_free(&k.resp);
    fake_clear_faults(&R[0]);

    struct http_resp r;
    retry_until_done(&R[2], body, "durable-1", true, 10000, &r);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    ck_assert(json_is_true(json_object_get(j, "resumed")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "stop_reason")), "end_turn");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "tool_calls")), 2);
    json_decref(j);
    /* The first LLM call and the search ran once; the geocoding in flight ran again. */
    ck_assert_uint_eq(fake_count(&R[0], "messages"), 2);
    ck_assert_uint_eq(fake_count(&R[0], "search"), 1);
    ck_assert_uint_eq(fake_count(&R[0], "geocoding"), 2);
    /* Then it replays like any answer. */
    struct http_resp again;
    post_to(&R[0], body, "durable-1", &again);
    ck_assert_int_eq(again.status, 200);
    ck_assert_mem_eq(again.body, r.body, r.len);
    http_resp_free(&again);
    http_resp_free(&r);
}
END_TEST

START_TEST(test_owner_killed_during_an_llm_call_costs_one_extra_call)
{
    static const char body[] = "{\"input\":\"hello there\"}";
    const char *env[] = {"AGENTD_RUN_LEASE_MS=1500", NULL};
    start_cluster(env);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);
    fake_add_fault(&R[0], "{\"route\":\"messages\",\"hang\":true,\"count\":1}");

    struct keyed k = {.h = &R[1], .body = body, .key = "durable-2"};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, keyed_thread, &k), 0);
    ck_assert_uint_ge(fake_wait_count(&R[0], "messages", 1, 5000), 1);
    kill_replica(&R[1]);
    pthread_join(tid, NULL);
    http_resp_free(&k.resp);

    struct http_resp r;
    retry_until_done(&R[0], body, "durable-2", true, 10000, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(fake_count(&R[0], "messages"), 2);
    http_resp_free(&r);
}
END_TEST

START_TEST(test_checkpoints_failing_leave_the_run_answering_non_durably)
{
    static const char body[] = "{\"input\":\"search for rust\"}";
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_add_fault(&R[0], "{\"route\":\"messages\",\"delay_ms\":600,\"count\":1}");
    fake_clear_requests(&R[0]);

    struct keyed k = {.h = &R[0], .body = body, .key = "durable-3"};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, keyed_thread, &k), 0);
    /* Claimed in Redis; Redis goes away before the first checkpoint. */
    ck_assert_uint_ge(fake_wait_count(&R[0], "messages", 1, 5000), 1);
    ck_assert_int_eq(redis_fixture_kill(&redis), 0);
    pthread_join(tid, NULL);
    ck_assert_int_eq(k.resp.status, 200);
    http_resp_free(&k.resp);
    char *log = harness_read_log(&R[0]);
    ck_assert_ptr_nonnull(strstr(log, "run not durable"));
    free(log);
}
END_TEST

START_TEST(test_grace_running_out_hands_a_durable_run_to_another_replica)
{
    static const char body[] = "{\"input\":\"search for rust and weather in Paris\"}";
    char buf[64];
    const char *env[] = {"AGENTD_SHUTDOWN_GRACE_MS=300", NULL};
    start_cluster(env);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);
    fake_add_fault(&R[0], "{\"route\":\"geocoding\",\"hang\":true,\"count\":1}");

    struct keyed k = {.h = &R[1], .body = body, .key = "durable-4"};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, keyed_thread, &k), 0);
    ck_assert_uint_ge(fake_wait_count(&R[0], "geocoding", 1, 5000), 1);
    sleep_ms(100);
    ck_assert_int_eq(kill(R[1].agentd_pid, SIGTERM), 0);
    pthread_join(tid, NULL);
    ck_assert_int_eq(k.resp.status, 503);
    ck_assert_str_eq(error_type(&k.resp, buf, sizeof(buf)), "shutting_down");
    ck_assert(http_header(&k.resp, "Retry-After", buf, sizeof(buf)));
    ck_assert_str_eq(buf, "0");
    http_resp_free(&k.resp);
    ck_assert_int_eq(harness_wait_agentd(&R[1], 10000), 0);
    fake_clear_faults(&R[0]);

    /* Retried at once elsewhere: resumed, nothing that completed runs again. */
    struct http_resp r;
    post_to(&R[2], body, "durable-4", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    ck_assert(json_is_true(json_object_get(j, "resumed")));
    json_decref(j);
    ck_assert_uint_eq(fake_count(&R[0], "messages"), 2);
    ck_assert_uint_eq(fake_count(&R[0], "search"), 1);
    http_resp_free(&r);
}
END_TEST

/* A replica that died after its run's last LLM answer was checkpointed, before the answer was
   stored: the takeover answers from the checkpoint and never calls the model again. The state is
   written into Redis as that replica would have left it. */
START_TEST(test_takeover_after_the_final_answer_does_not_call_the_model)
{
    static const char body[] = "{\"input\":\"hello there\"}";
    start_cluster(NULL);
    ck_assert(wait_redis_check("ok", 5000));
    fake_clear_requests(&R[0]);

    unsigned char fp[IDEM_FINGERPRINT_BYTES], kh[IDEM_FINGERPRINT_BYTES];
    char fph[2 * IDEM_FINGERPRINT_BYTES + 1], khh[2 * IDEM_FINGERPRINT_BYTES + 1], key[160];
    idem_fingerprint(body, strlen(body), fp);
    idem_fingerprint("durable-5", 9, kh);
    for (int i = 0; i < IDEM_FINGERPRINT_BYTES; i++) {
        snprintf(fph + 2 * i, 3, "%02x", fp[i]);
        snprintf(khh + 2 * i, 3, "%02x", kh[i]);
    }
    snprintf(key, sizeof(key), "agentd:{idem:%s}", khh);
    struct run_checkpoint cp = {
        .messages = json_pack("[{s:s, s:s}, {s:s, s:[{s:s, s:s}]}]", "role", "user", "content",
                              "hello there", "role", "assistant", "content", "type", "text", "text",
                              "Hi from the first replica"),
        .iterations = 1,
        .llm_calls = 1,
        .llm_attempts = 1,
        .input_tokens = 10,
        .output_tokens = 5,
        .last_text = "Hi from the first replica",
        .stop_reason = "end_turn",
    };
    size_t len = 0;
    char *text = checkpoint_encode(&cp, 1 << 20, &len);
    json_decref(cp.messages);
    ck_assert_ptr_nonnull(text);
    redisContext *rc = redis_fixture_connect(&redis);
    ck_assert_ptr_nonnull(rc);
    redisReply *rr = redisCommand(rc, "HSET %s state running fp %s owner dead/run lease 0 cp %b",
                                  key, fph, text, len);
    ck_assert_ptr_nonnull(rr);
    ck_assert_int_eq(rr->type, REDIS_REPLY_INTEGER);
    freeReplyObject(rr);
    redisFree(rc);
    free(text);

    struct http_resp r;
    post_to(&R[1], body, "durable-5", &r);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    ck_assert(json_is_true(json_object_get(j, "resumed")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "output")), "Hi from the first replica");
    ck_assert_str_eq(json_string_value(json_object_get(j, "stop_reason")), "end_turn");
    json_decref(j);
    ck_assert_uint_eq(fake_count(&R[0], "messages"), 0);
    http_resp_free(&r);
}
END_TEST

static void kill_redis(void *arg)
{
    (void)arg;
    ck_assert_int_eq(redis_fixture_kill(&redis), 0);
}

START_TEST(test_redis_lost_under_load_fails_nothing_and_comes_back)
{
    const char *env[] = {"AGENTD_LLM_RATE=1000", "AGENTD_LLM_BURST=100", NULL};
    start_cluster(env);
    ck_assert(wait_redis_check("ok", 5000));

    int ok, failed;
    run_load(2500, 800, kill_redis, NULL, &ok, &failed);
    ck_assert_int_eq(failed, 0);
    ck_assert_int_gt(ok, 0);
    ck_assert_msg(wait_redis_check("degraded", 3000), "readiness did not report redis degraded");

    /* Still serving without Redis, then shared again within 2 s of its return. */
    run_load(500, 0, NULL, NULL, &ok, &failed);
    ck_assert_int_eq(failed, 0);
    ck_assert_int_eq(redis_fixture_restart(&redis), 0);
    int64_t back = harness_now_ms();
    /* The reconnect backoff is at most 1 s, readiness follows within 250 ms. */
    ck_assert_msg(wait_redis_check("ok", 2000), "not shared again within 2 s of Redis's return");
    fprintf(stderr, "shared again %lld ms after Redis returned\n",
            (long long)(harness_now_ms() - back));
    char *log = harness_read_log(&R[1]);
    ck_assert_ptr_nonnull(strstr(log, "redis: degraded"));
    free(log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_three_replicas_share_one_llm_rate);
    tcase_add_test(tc, test_429_heard_by_one_replica_pauses_all);
    tcase_add_test(tc, test_spent_rate_limit_heard_by_one_replica_holds_all);
    tcase_add_test(tc, test_redis_lost_under_load_fails_nothing_and_comes_back);
    tcase_add_test(tc, test_budget_is_reached_cluster_wide_and_in_flight_calls_reserve);
    tcase_add_test(tc, test_idempotent_retry_through_another_replica_replays_byte_for_byte);
    tcase_add_test(tc, test_key_still_running_on_one_replica_is_409_on_another);
    tcase_add_test(tc, test_conversation_continues_on_another_replica);
    tcase_add_test(tc, test_two_turns_at_once_on_two_replicas_one_runs_one_409);
    tcase_add_test(tc,
                   test_owner_killed_during_a_tool_call_resumes_elsewhere_without_repeating_steps);
    tcase_add_test(tc, test_owner_killed_during_an_llm_call_costs_one_extra_call);
    tcase_add_test(tc, test_checkpoints_failing_leave_the_run_answering_non_durably);
    tcase_add_test(tc, test_grace_running_out_hands_a_durable_run_to_another_replica);
    tcase_add_test(tc, test_takeover_after_the_final_answer_does_not_call_the_model);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
