/*
 * checkpoint_cost.c — what checkpointing a durable run costs per step: the
 * time of checkpoint_encode() and the bytes it produces for realistic run
 * states, and (with --redis) the round trip of the EVALSHA of
 * REDIS_SCRIPT_IDEM_CHECKPOINT that carries those bytes to Redis.
 *
 * The states are built the way src/engine/run.c builds a run's state, with
 * the history helpers of anthropic.h and the answers and tool results
 * fake_upstream gives (texts copied from one real run against it):
 *   hello     the run of bench/run.sh (b): input "hello", one answer
 *             "You said: hello" (end_turn); its one checkpoint, after step 1
 *   tools N   a run with tool calls after its N-th step (a step = an LLM answer
 *             or a tool result; run.c checkpoints after each): first the
 *             fake's three-tool answer (get_weather, web_search, calculator)
 *             to "What is the weather in Paris and search for cheap flights
 *             to Lisbon, and what is 12*7+3?", then its three results one by
 *             one, then one tool per answer (the three in turn) with its
 *             result. Steps 1, 3, 10, 20 by default (--steps); 20 is about
 *             where the default AGENTD_MAX_ITERATIONS (10) stops a
 *             one-tool-per-answer run. Mid-batch states carry the results so
 *             far in "results" (the tool_result message is appended to the
 *             history when the batch completes), exactly as run.c does.
 *
 * Output, one line per state (key=value, times in microseconds):
 *   bytes           length of checkpoint_encode()'s text
 *   encode_*        checkpoint_encode() per call (each call timed on its own;
 *                   the text is freed outside the timed region)
 *   rtt_*           with --redis: one EVALSHA of the checkpoint script at a
 *                   time on a synchronous hiredis connection (the key claimed
 *                   first with REDIS_SCRIPT_IDEM_CLAIM, so every checkpoint is
 *                   accepted: answer 1), each round trip timed on its own
 *   redis_usec_per_call / redis_cpu_us_per_call   what Redis says it spent:
 *                   cmdstat_evalsha usec per call (the script) and the server
 *                   process's CPU per call (sockets included)
 * plus a `timer` line (two clock_gettime(), the floor of every per-call figure,
 * not subtracted) and, with --redis, a `claim_complete` line: the other two
 * commands of every durable run, a claim of a fresh key and the completion
 * storing the (b) run's answer (each round trip timed on its own).
 *
 * Usage: bench_checkpoint_cost [--redis HOST:PORT] [--steps N,N,...] [--encode-n N]
 *                              [--redis-n N]
 * Exit: 0 done; 1 an encode or a Redis answer failed; 2 usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "agentd/anthropic.h"
#include "agentd/checkpoint.h"
#include "agentd/redis_scripts.h"
#include "bench_common.h"

#define MAX_N         10000000L
#define MAX_STEPS     200
#define MAX_STATES    16
#define WARMUP_ENCODE 500
#define WARMUP_REDIS  200
/* agentd's defaults: AGENTD_RUN_LEASE_MS, AGENTD_RUN_CHECKPOINT_MAX_BYTES. */
#define LEASE_MS       "10000"
#define CHECKPOINT_MAX (1024 * 1024)
/* The bench's keys expire on their own (a minute). */
#define KEY_TTL_MS "60000"
/* Shaped like agentd's (prefix, {idem:<sha256 hex>}) and its claim owner (replica/run id). */
#define KEY_PREFIX "agentd:{idem:bench-checkpoint-"
#define FP         "3f1c9a4be0d27f6a8c5b1e9d0a7f3c2b6e4d8a1f5c9b3e7d2a6f0c4b8e1d5a9f"
#define OWNER      "agentd-0/12345/9f8e7d6c5b4a3928/run_01a22a196a8b000001"

/* ---- run states ------------------------------------------------------------------------- */

struct tool_step {
    const char *name, *field, *arg, *result;
};

#define WEATHER_PARIS                                                                              \
    "Weather in Paris, France: partly cloudy, 10.2 \xc2\xb0"                                       \
    "C, wind 17.2 km/h (observed 2026-11-27T12:00)."
#define SEARCH_LISBON                                                                              \
    "Top results for 'cheap flights to Lisbon':\n"                                                 \
    "1. Result 1 for cheap flights to Lisbon\n   https://example.org/r/e78e701f/1\n"               \
    "   Snippet 1 (e78e701f) about cheap flights to Lisbon.\n"                                     \
    "2. Result 2 for cheap flights to Lisbon\n   https://example.org/r/e78e701f/2\n"               \
    "   Snippet 2 (e78e701f) about cheap flights to Lisbon.\n"                                     \
    "3. Result 3 for cheap flights to Lisbon\n   https://example.org/r/e78e701f/3\n"               \
    "   Snippet 3 (e78e701f) about cheap flights to Lisbon.\n"                                     \
    "4. Result 4 for cheap flights to Lisbon\n   https://example.org/r/e78e701f/4\n"               \
    "   Snippet 4 (e78e701f) about cheap flights to Lisbon.\n"                                     \
    "5. Result 5 for cheap flights to Lisbon\n   https://example.org/r/e78e701f/5\n"               \
    "   Snippet 5 (e78e701f) about cheap flights to Lisbon."
#define SEARCH_HOTELS                                                                              \
    "Top results for 'hotels in Lisbon':\n"                                                        \
    "1. Result 1 for hotels in Lisbon\n   https://example.org/r/5a0c13d2/1\n"                      \
    "   Snippet 1 (5a0c13d2) about hotels in Lisbon.\n"                                            \
    "2. Result 2 for hotels in Lisbon\n   https://example.org/r/5a0c13d2/2\n"                      \
    "   Snippet 2 (5a0c13d2) about hotels in Lisbon.\n"                                            \
    "3. Result 3 for hotels in Lisbon\n   https://example.org/r/5a0c13d2/3\n"                      \
    "   Snippet 3 (5a0c13d2) about hotels in Lisbon.\n"                                            \
    "4. Result 4 for hotels in Lisbon\n   https://example.org/r/5a0c13d2/4\n"                      \
    "   Snippet 4 (5a0c13d2) about hotels in Lisbon.\n"                                            \
    "5. Result 5 for hotels in Lisbon\n   https://example.org/r/5a0c13d2/5\n"                      \
    "   Snippet 5 (5a0c13d2) about hotels in Lisbon."

static const char INPUT[] =
    "What is the weather in Paris and search for cheap flights to Lisbon, and what is 12*7+3?";

/* The first answer: three tools at once. */
static const struct tool_step FIRST_BATCH[] = {
    {"get_weather", "location", "Paris", WEATHER_PARIS},
    {"web_search", "query", "cheap flights to Lisbon", SEARCH_LISBON},
    {"calculator", "expression", "12*7+3", "12*7+3 = 87"},
};

/* Every later answer: one of these, in turn. */
static const struct tool_step LATER[] = {
    {"web_search", "query", "hotels in Lisbon", SEARCH_HOTELS},
    {"get_weather", "location", "Lisbon",
     "Weather in Lisbon, Portugal: clear sky, 16.8 \xc2\xb0"
     "C, wind 9.4 km/h (observed 2026-11-27T12:00)."},
    {"calculator", "expression", "87*2+45.5", "87*2+45.5 = 219.5"},
};

/* A run being replayed: what run.c keeps, and the batch of tools in progress. */
struct sim {
    json_t *messages, *tool_calls, *degraded;
    int iterations, llm_calls, llm_attempts;
    int64_t input_tokens, output_tokens;
    char last_text[64];
    const struct tool_step *batch;
    size_t batch_n, batch_done;
    char ids[3][32];
};

static void sim_clear(struct sim *s)
{
    json_decref(s->messages);
    json_decref(s->tool_calls);
    json_decref(s->degraded);
    memset(s, 0, sizeof(*s));
}

static int sim_init(struct sim *s, const char *input)
{
    memset(s, 0, sizeof(*s));
    s->messages = json_array();
    s->tool_calls = json_array();
    s->degraded = json_array();
    if (!s->messages || !s->tool_calls || !s->degraded ||
        anthropic_append_user_text(s->messages, input) < 0)
        return -1;
    return 0;
}

/* Usage as the fake counts it: a quarter of the request's / the content's bytes. */
static void sim_usage(struct sim *s, const json_t *content)
{
    char *h = json_dumps(s->messages, JSON_COMPACT), *c = json_dumps(content, JSON_COMPACT);
    /* The request also carries the system prompt and the tool schemas (about 1.5 KB). */
    s->input_tokens += (int64_t)(1500 + (h ? strlen(h) : 0)) / 4;
    s->output_tokens += (int64_t)(c ? strlen(c) : 0) / 4;
    free(h);
    free(c);
}

/* A step: the model's answer (the next batch of tools, or text only when batch_n is 0). */
static int sim_answer(struct sim *s, const char *text, const struct tool_step *batch, size_t n)
{
    json_t *content = json_array();
    if (!content)
        return -1;
    if (text)
        json_array_append_new(content, json_pack("{s:s, s:s}", "type", "text", "text", text));
    for (size_t i = 0; i < n; i++) {
        snprintf(s->ids[i], sizeof(s->ids[i]), "toolu_%d_%zu", 2 * s->llm_calls + 2, i + 1);
        json_array_append_new(content,
                              json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "tool_use", "id",
                                        s->ids[i], "name", batch[i].name, "input", batch[i].field,
                                        batch[i].arg));
    }
    sim_usage(s, content);
    int rc = anthropic_append_assistant(s->messages, content);
    json_decref(content);
    s->iterations++;
    s->llm_calls++;
    s->llm_attempts++;
    snprintf(s->last_text, sizeof(s->last_text), "%s", text ? text : "");
    s->batch = batch;
    s->batch_n = n;
    s->batch_done = 0;
    return rc;
}

/* A step: the next tool result of the batch; the batch's results join the history when it is
   complete (after the checkpoint of this step: done by sim_close_batch). */
static void sim_tool_result(struct sim *s)
{
    const struct tool_step *t = &s->batch[s->batch_done];
    json_array_append_new(s->tool_calls, json_pack("{s:s, s:s, s:b, s:I}", "id",
                                                   s->ids[s->batch_done], "name", t->name, "ok",
                                                   1, "duration_ms", (json_int_t)12));
    s->batch_done++;
}

static int sim_close_batch(struct sim *s)
{
    struct llm_tool_result r[3];
    for (size_t i = 0; i < s->batch_n; i++)
        r[i] = (struct llm_tool_result){s->ids[i], s->batch[i].result, false};
    int rc = anthropic_append_tool_results(s->messages, r, s->batch_n);
    s->batch_n = s->batch_done = 0;
    return rc;
}

/* The checkpoint run.c would write now (results: the batch's completed tools). The caller
   frees cp->results. */
static int sim_checkpoint(const struct sim *s, struct run_checkpoint *cp)
{
    json_t *results = json_array();
    for (size_t i = 0; results && i < s->batch_done; i++)
        json_array_append_new(results, json_pack("{s:s, s:s, s:b}", "id", s->ids[i], "text",
                                                 s->batch[i].result, "is_error", 0));
    *cp = (struct run_checkpoint){
        .messages = s->messages,
        .iterations = s->iterations,
        .llm_calls = s->llm_calls,
        .llm_attempts = s->llm_attempts,
        .input_tokens = s->input_tokens,
        .output_tokens = s->output_tokens,
        .tool_calls = s->tool_calls,
        .degraded = s->degraded,
        .last_text = (char *)s->last_text,
        .results = results,
    };
    return results ? 0 : -1;
}

/* The tool run replayed up to its step `steps`. */
static int build_tools_state(int steps, struct sim *s)
{
    if (sim_init(s, INPUT) < 0)
        return -1;
    size_t later = 0;
    for (int step = 1; step <= steps; step++) {
        int rc = 0;
        if (s->batch_n > 0 && s->batch_done == s->batch_n)
            rc = sim_close_batch(s);
        if (rc == 0 && s->batch_n == 0) {
            if (s->llm_calls == 0)
                rc = sim_answer(s, "I'll use 3 tools.", FIRST_BATCH, 3);
            else
                rc = sim_answer(s, NULL, &LATER[later++ % 3], 1);
        } else if (rc == 0) {
            sim_tool_result(s);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The run of bench/run.sh (b) after its one step. */
static int build_hello_state(struct sim *s)
{
    if (sim_init(s, "hello") < 0)
        return -1;
    return sim_answer(s, "You said: hello", NULL, 0);
}

/* ---- measuring -------------------------------------------------------------------------- */

struct redis_ctx {
    redisContext *c;
    char claim_sha[41], checkpoint_sha[41], complete_sha[41];
};

static bool reply_int(const redisReply *r, long long want)
{
    return r && r->type == REDIS_REPLY_INTEGER && r->integer == want;
}

/* A fresh claim of key for OWNER: {0}. */
static bool claim(struct redis_ctx *rc, const char *key)
{
    const char *argv[] = {"EVALSHA", rc->claim_sha, "1", key, FP, OWNER, LEASE_MS, KEY_TTL_MS};
    redisReply *r = redisCommandArgv(rc->c, 8, argv, NULL);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
              reply_int(r->element[0], 0);
    if (r)
        freeReplyObject(r);
    return ok;
}

static bool send_checkpoint(struct redis_ctx *rc, const char *key, const char *text, size_t len)
{
    const char *argv[] = {"EVALSHA", rc->checkpoint_sha, "1", key, OWNER, LEASE_MS, text};
    size_t lens[] = {7, 40, 1, strlen(key), strlen(OWNER), strlen(LEASE_MS), len};
    redisReply *r = redisCommandArgv(rc->c, 7, argv, lens);
    bool ok = reply_int(r, 1);
    if (r)
        freeReplyObject(r);
    return ok;
}

static bool complete(struct redis_ctx *rc, const char *key, const char *body)
{
    const char *argv[] = {"EVALSHA", rc->complete_sha, "1", key, OWNER, "200", body, KEY_TTL_MS};
    redisReply *r = redisCommandArgv(rc->c, 8, argv, NULL);
    bool ok = reply_int(r, 1);
    if (r)
        freeReplyObject(r);
    return ok;
}

static void del_key(struct redis_ctx *rc, const char *key)
{
    redisReply *r = redisCommand(rc->c, "DEL %s", key);
    if (r)
        freeReplyObject(r);
}

static int measure_state(const char *state, int steps, const struct sim *s, long encode_n,
                         struct redis_ctx *rc, long redis_n)
{
    struct run_checkpoint cp;
    int64_t *lat = malloc((size_t)(encode_n > redis_n ? encode_n : redis_n) * sizeof(*lat));
    size_t len = 0, bad = 0;
    if (!lat || sim_checkpoint(s, &cp) < 0) {
        free(lat);
        return 1;
    }
    char *text = checkpoint_encode(&cp, CHECKPOINT_MAX, &len);
    if (!text) {
        fprintf(stderr, "bench_checkpoint_cost: %s %d: checkpoint_encode: %s\n", state, steps,
                strerror(errno));
        json_decref(cp.results);
        free(lat);
        return 1;
    }
    for (long i = 0; i < WARMUP_ENCODE; i++) {
        size_t l;
        char *t = checkpoint_encode(&cp, CHECKPOINT_MAX, &l);
        bad += !t || l != len;
        free(t);
    }
    for (long i = 0; i < encode_n; i++) {
        size_t l;
        int64_t t0 = bench_now_ns();
        char *t = checkpoint_encode(&cp, CHECKPOINT_MAX, &l);
        lat[i] = bench_now_ns() - t0;
        bad += !t || l != len;
        free(t);
    }
    struct bench_lat enc = bench_lat_summary(lat, encode_n);
    printf("state=%-5s steps=%-2d messages=%zu tool_calls=%zu results=%zu bytes=%zu "
           "encode_p50_us=%.3f encode_p99_us=%.3f encode_mean_us=%.3f",
           state, steps, json_array_size(cp.messages), json_array_size(cp.tool_calls),
           json_array_size(cp.results), len, enc.p50_us, enc.p99_us, enc.mean_us);
    json_decref(cp.results);
    if (rc && bad == 0) {
        char key[128];
        struct bench_redis_stats a, b;
        snprintf(key, sizeof(key), KEY_PREFIX "%s-%d-%ld}", state, steps, (long)getpid());
        del_key(rc, key);
        bad += !claim(rc, key);
        for (long i = 0; bad == 0 && i < WARMUP_REDIS; i++)
            bad += !send_checkpoint(rc, key, text, len);
        bad += bench_redis_stats(rc->c, "evalsha", &a) != 0;
        for (long i = 0; bad == 0 && i < redis_n; i++) {
            int64_t t0 = bench_now_ns();
            bool ok = send_checkpoint(rc, key, text, len);
            lat[i] = bench_now_ns() - t0;
            bad += !ok;
        }
        bad += bench_redis_stats(rc->c, "evalsha", &b) != 0;
        del_key(rc, key);
        if (bad == 0) {
            double usec, cpu;
            struct bench_lat rtt = bench_lat_summary(lat, redis_n);
            bench_redis_per_call(&a, &b, redis_n, &usec, &cpu);
            printf(" rtt_p50_us=%.3f rtt_p99_us=%.3f rtt_mean_us=%.3f redis_usec_per_call=%.3f "
                   "redis_cpu_us_per_call=%.3f",
                   rtt.p50_us, rtt.p99_us, rtt.mean_us, usec, cpu);
        }
    }
    printf("\n");
    fflush(stdout);
    free(text);
    free(lat);
    if (bad) {
        fprintf(stderr, "bench_checkpoint_cost: %s %d: %zu failed encodes or Redis answers%s%s\n",
                state, steps, bad, rc && rc->c->err ? ": " : "", rc && rc->c->err ? rc->c->errstr : "");
        return 1;
    }
    return 0;
}

/* The claim and the completion of n fresh keys, each with the (b) run's answer as its body. */
static int measure_claim_complete(struct redis_ctx *rc, long n)
{
    static const char body[] =
        "{\"id\":\"run_01a22a196ac2000002\",\"request_id\":\"req_5dfc918072facfc487ebd073\","
        "\"output\":\"You said: hello\",\"stop_reason\":\"end_turn\",\"iterations\":1,"
        "\"degraded\":[],\"tool_calls\":[],\"usage\":{\"input_tokens\":516,\"output_tokens\":10,"
        "\"llm_calls\":1,\"llm_attempts\":1}}";
    int64_t *lat_claim = malloc((size_t)n * sizeof(int64_t)),
            *lat_complete = malloc((size_t)n * sizeof(int64_t));
    struct bench_redis_stats a, b;
    long bad = 0;
    char key[128];
    if (!lat_claim || !lat_complete) {
        free(lat_claim);
        free(lat_complete);
        return 1;
    }
    bad += bench_redis_stats(rc->c, "evalsha", &a) != 0;
    for (long i = 0; bad == 0 && i < n; i++) {
        snprintf(key, sizeof(key), KEY_PREFIX "run-%ld-%ld}", (long)getpid(), i);
        int64_t t0 = bench_now_ns();
        bool ok = claim(rc, key);
        int64_t t1 = bench_now_ns();
        ok = ok && complete(rc, key, body);
        lat_claim[i] = t1 - t0;
        lat_complete[i] = bench_now_ns() - t1;
        bad += !ok;
    }
    bad += bench_redis_stats(rc->c, "evalsha", &b) != 0;
    if (bad == 0) {
        double usec, cpu;
        struct bench_lat cl = bench_lat_summary(lat_claim, n),
                         co = bench_lat_summary(lat_complete, n);
        /* Two commands per key. */
        bench_redis_per_call(&a, &b, 2 * n, &usec, &cpu);
        printf("claim_complete n=%ld claim_p50_us=%.3f claim_p99_us=%.3f claim_mean_us=%.3f "
               "complete_p50_us=%.3f complete_p99_us=%.3f complete_mean_us=%.3f "
               "redis_usec_per_call=%.3f redis_cpu_us_per_call=%.3f\n",
               n, cl.p50_us, cl.p99_us, cl.mean_us, co.p50_us, co.p99_us, co.mean_us, usec, cpu);
    }
    free(lat_claim);
    free(lat_complete);
    if (bad) {
        fprintf(stderr, "bench_checkpoint_cost: claim/complete failed%s%s\n",
                rc->c->err ? ": " : "", rc->c->err ? rc->c->errstr : "");
        return 1;
    }
    return 0;
}

static int measure_timer(long n)
{
    int64_t *lat = malloc((size_t)n * sizeof(*lat));
    if (!lat)
        return 1;
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        lat[i] = bench_now_ns() - t0;
    }
    struct bench_lat l = bench_lat_summary(lat, n);
    printf("timer n=%ld p50_us=%.3f p99_us=%.3f mean_us=%.3f\n", n, l.p50_us, l.p99_us,
           l.mean_us);
    free(lat);
    return 0;
}

/* "1,3,10" → steps[]; false when malformed. */
static bool parse_steps(const char *s, int *steps, int *n)
{
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return false;
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (*n >= MAX_STATES || !bench_parse_long(tok, 1, MAX_STEPS, &v))
            return false;
        steps[(*n)++] = (int)v;
    }
    return *n > 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_checkpoint_cost [--redis HOST:PORT] [--steps N,N,...]"
                    " [--encode-n N] [--redis-n N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *redis = NULL;
    long encode_n = 20000, redis_n = 5000;
    int steps[MAX_STATES] = {1, 3, 10, 20}, n_steps = 4;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = val != NULL;
        if (!strcmp(opt, "--redis"))
            redis = val;
        else if (!strcmp(opt, "--steps"))
            ok = ok && parse_steps(val, steps, &n_steps);
        else if (!strcmp(opt, "--encode-n"))
            ok = ok && bench_parse_long(val, 1, MAX_N, &encode_n);
        else if (!strcmp(opt, "--redis-n"))
            ok = ok && bench_parse_long(val, 1, MAX_N, &redis_n);
        else
            ok = false;
        if (!ok)
            return usage();
        i++;
    }
    struct redis_ctx rc_store = {0}, *rc = NULL;
    if (redis) {
        rc_store.c = bench_redis_connect("bench_checkpoint_cost", redis, 5);
        if (!rc_store.c)
            return errno == EINVAL ? 2 : 1;
        rc = &rc_store;
        if (bench_redis_load("bench_checkpoint_cost", rc->c, REDIS_SCRIPT_IDEM_CLAIM,
                             rc->claim_sha) < 0 ||
            bench_redis_load("bench_checkpoint_cost", rc->c, REDIS_SCRIPT_IDEM_CHECKPOINT,
                             rc->checkpoint_sha) < 0 ||
            bench_redis_load("bench_checkpoint_cost", rc->c, REDIS_SCRIPT_IDEM_COMPLETE,
                             rc->complete_sha) < 0) {
            redisFree(rc->c);
            return 1;
        }
    }
    int r = measure_timer(encode_n);
    struct sim s;
    if (r == 0) {
        r = build_hello_state(&s) < 0 ? 1 : measure_state("hello", 1, &s, encode_n, rc, redis_n);
        sim_clear(&s);
    }
    for (int i = 0; r == 0 && i < n_steps; i++) {
        r = build_tools_state(steps[i], &s) < 0
                ? 1
                : measure_state("tools", steps[i], &s, encode_n, rc, redis_n);
        sim_clear(&s);
    }
    if (r == 0 && rc)
        r = measure_claim_complete(rc, redis_n);
    if (rc)
        redisFree(rc->c);
    return r;
}
