/*
 * bucket_cost.c — what one limiter token costs an attempt: the local bucket
 * (bucket_reserve(), a mutex and a few operations) next to the cluster-wide
 * one in Redis (EVALSHA of REDIS_SCRIPT_LIMIT_TAKE, a round trip).
 *
 * Modes, one output line each (key=value, times in microseconds):
 *   timer     two clock_gettime() calls back to back: the floor of every
 *             per-call figure below (not subtracted from them)
 *   local     bucket_reserve() on a bucket whose rate and burst are so large
 *             that it never waits; each call timed on its own
 *   shared    with --redis: one EVALSHA at a time on a synchronous hiredis
 *             connection, each round trip timed on its own
 *   pipelined with --redis: DEPTH commands in flight (DEPTH appends, then
 *             DEPTH replies), calls per second over the whole run
 * The shared modes also report what Redis says it spent: usec_per_call of
 * cmdstat_evalsha (the script inside Redis) and redis_cpu_us_per_call (the
 * server process's user + system CPU, socket work included).
 *
 * Usage: bench_bucket_cost [--redis HOST:PORT] [--local-n N] [--shared-n N]
 *                          [--pipelined-n N] [--depth D]
 * Exit: 0 done; 1 an answer was not an immediate grant or Redis failed; 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "agentd/bucket.h"
#include "agentd/redis_scripts.h"
#include "bench_common.h"

#define WARMUP_LOCAL  1000
#define WARMUP_SHARED 200
#define MAX_N         10000000L
#define MAX_DEPTH     1024
/* The key agentd would use for the LLM dependency with the default prefix. */
#define LIMIT_KEY "agentd:{limit:anthropic}"
/* Rate and burst far above what a single connection can take: every answer is a grant now. */
#define SHARED_RATE  "100000000.000000"
#define SHARED_BURST "100000000.000000"
#define MAX_WAIT_MS  "30000"
#define LEASE_MS     "30000"

static void print_latencies(const char *mode, int64_t *v, long n, const char *extra)
{
    struct bench_lat l = bench_lat_summary(v, n);
    printf("%-9s n=%ld p50_us=%.3f p99_us=%.3f mean_us=%.3f max_us=%.3f%s\n", mode, n, l.p50_us,
           l.p99_us, l.mean_us, l.max_us, extra);
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
    print_latencies("timer", lat, n, "");
    free(lat);
    return 0;
}

static int measure_local(long n)
{
    int64_t *lat = malloc((size_t)n * sizeof(*lat));
    struct bucket *b = bucket_new(BUCKET_MAX_RATE_PER_S, 1e12, bench_now_ns() / 1000000);
    long waited = 0;
    if (!lat || !b) {
        free(lat);
        bucket_free(b);
        return 1;
    }
    for (long i = 0; i < WARMUP_LOCAL; i++)
        waited += bucket_reserve(b, bench_now_ns() / 1000000, 30000) != 0;
    for (long i = 0; i < n; i++) {
        int64_t t0 = bench_now_ns();
        int64_t w = bucket_reserve(b, t0 / 1000000, 30000);
        lat[i] = bench_now_ns() - t0;
        waited += w != 0;
    }
    print_latencies("local", lat, n, "");
    free(lat);
    bucket_free(b);
    if (waited) {
        fprintf(stderr, "bench_bucket_cost: %ld local reservations were not immediate\n", waited);
        return 1;
    }
    return 0;
}

/* ---- Redis ------------------------------------------------------------------------------ */

static int server_stats(redisContext *c, struct bench_redis_stats *st)
{
    return bench_redis_stats(c, "evalsha", st);
}

static void server_extra(const struct bench_redis_stats *a, const struct bench_redis_stats *b,
                         long n, char *out, size_t size)
{
    double usec, cpu;
    bench_redis_per_call(a, b, n, &usec, &cpu);
    snprintf(out, size, " redis_usec_per_call=%.3f redis_cpu_us_per_call=%.3f", usec, cpu);
}

/* An immediate grant: {0, 0, 0}. */
static bool granted_now(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
           r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 0 &&
           r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer == 0;
}

/* hiredis 0.14 takes argv as const char ** (not const char *const *): callers pass it mutable. */
struct take_cmd {
    const char *argv[8];
    size_t lens[8];
};

static void take_cmd_init(struct take_cmd *t, const char *sha)
{
    const char *argv[8] = {"EVALSHA",   sha,          "1",         LIMIT_KEY,
                           SHARED_RATE, SHARED_BURST, MAX_WAIT_MS, LEASE_MS};
    for (int i = 0; i < 8; i++) {
        t->argv[i] = argv[i];
        t->lens[i] = strlen(argv[i]);
    }
}

static int measure_shared(redisContext *c, struct take_cmd *t, long n)
{
    int64_t *lat = malloc((size_t)n * sizeof(*lat));
    long bad = 0;
    struct bench_redis_stats a, b;
    if (!lat)
        return 1;
    for (long i = 0; i < WARMUP_SHARED; i++) {
        redisReply *r = redisCommandArgv(c, 8, t->argv, t->lens);
        bad += !granted_now(r);
        if (r)
            freeReplyObject(r);
    }
    if (server_stats(c, &a) != 0)
        bad++;
    for (long i = 0; i < n && c->err == 0; i++) {
        int64_t t0 = bench_now_ns();
        redisReply *r = redisCommandArgv(c, 8, t->argv, t->lens);
        lat[i] = bench_now_ns() - t0;
        bad += !granted_now(r);
        if (r)
            freeReplyObject(r);
    }
    if (c->err || server_stats(c, &b) != 0) {
        fprintf(stderr, "bench_bucket_cost: redis: %s\n", c->errstr);
        free(lat);
        return 1;
    }
    char extra[128];
    server_extra(&a, &b, n, extra, sizeof(extra));
    print_latencies("shared", lat, n, extra);
    free(lat);
    if (bad) {
        fprintf(stderr, "bench_bucket_cost: %ld shared answers were not an immediate grant\n", bad);
        return 1;
    }
    return 0;
}

static int measure_pipelined(redisContext *c, struct take_cmd *t, long n, int depth)
{
    long bad = 0, done = 0;
    struct bench_redis_stats a, b;
    if (server_stats(c, &a) != 0)
        return 1;
    int64_t t0 = bench_now_ns();
    while (done < n && c->err == 0) {
        int k = n - done < depth ? (int)(n - done) : depth;
        for (int i = 0; i < k; i++)
            if (redisAppendCommandArgv(c, 8, t->argv, t->lens) != REDIS_OK)
                return 1;
        for (int i = 0; i < k; i++) {
            void *reply = NULL;
            if (redisGetReply(c, &reply) != REDIS_OK)
                break;
            bad += !granted_now(reply);
            freeReplyObject(reply);
            done++;
        }
    }
    int64_t elapsed = bench_now_ns() - t0;
    if (c->err || server_stats(c, &b) != 0) {
        fprintf(stderr, "bench_bucket_cost: redis: %s\n", c->errstr);
        return 1;
    }
    char extra[128];
    server_extra(&a, &b, done, extra, sizeof(extra));
    printf("%-9s n=%ld depth=%d calls_per_s=%.0f mean_us_per_call=%.3f%s\n", "pipelined", done,
           depth, (double)done * 1e9 / (double)elapsed, (double)elapsed / 1000.0 / (double)done,
           extra);
    if (bad) {
        fprintf(stderr, "bench_bucket_cost: %ld pipelined answers were not an immediate grant\n",
                bad);
        return 1;
    }
    return 0;
}

static int measure_redis(const char *hostport, long shared_n, long pipelined_n, int depth)
{
    redisContext *c = bench_redis_connect("bench_bucket_cost", hostport, 5);
    if (!c)
        return errno == EINVAL ? 2 : 1;
    int rc = 1;
    char sha[41];
    if (bench_redis_load("bench_bucket_cost", c, REDIS_SCRIPT_LIMIT_TAKE, sha) == 0) {
        struct take_cmd t;
        take_cmd_init(&t, sha);
        rc = measure_shared(c, &t, shared_n);
        if (rc == 0)
            rc = measure_pipelined(c, &t, pipelined_n, depth);
    }
    redisFree(c);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_bucket_cost [--redis HOST:PORT] [--local-n N] [--shared-n N]"
                    " [--pipelined-n N] [--depth D]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *redis = NULL;
    long local_n = 200000, shared_n = 20000, pipelined_n = 200000, depth = 16;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = val != NULL;
        if (!strcmp(opt, "--redis"))
            redis = val;
        else if (!strcmp(opt, "--local-n"))
            ok = ok && bench_parse_long(val, 1, MAX_N, &local_n);
        else if (!strcmp(opt, "--shared-n"))
            ok = ok && bench_parse_long(val, 1, MAX_N, &shared_n);
        else if (!strcmp(opt, "--pipelined-n"))
            ok = ok && bench_parse_long(val, 1, MAX_N, &pipelined_n);
        else if (!strcmp(opt, "--depth"))
            ok = ok && bench_parse_long(val, 1, MAX_DEPTH, &depth);
        else
            ok = false;
        if (!ok)
            return usage();
        i++;
    }
    if (measure_timer(local_n) || measure_local(local_n))
        return 1;
    if (redis)
        return measure_redis(redis, shared_n, pipelined_n, (int)depth);
    return 0;
}
