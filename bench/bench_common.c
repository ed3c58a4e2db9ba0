/*
 * bench_common.c — helpers of the C micro-benchmarks (see bench_common.h).
 */
#include "bench_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double pct_us(const int64_t *v, long n, double p)
{
    long rank = (long)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1000.0;
}

struct bench_lat bench_lat_summary(int64_t *v, long n)
{
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += (double)v[i];
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    return (struct bench_lat){.n = n,
                              .p50_us = pct_us(v, n, 50),
                              .p99_us = pct_us(v, n, 99),
                              .mean_us = sum / (double)n / 1000.0,
                              .max_us = (double)v[n - 1] / 1000.0};
}

bool bench_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

redisContext *bench_redis_connect(const char *prog, const char *hostport, int timeout_s)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    long port;
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host) ||
        !bench_parse_long(colon + 1, 1, 65535, &port)) {
        fprintf(stderr, "%s: --redis wants HOST:PORT, got '%s'\n", prog, hostport);
        errno = EINVAL;
        return NULL;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
    redisContext *c = redisConnectWithTimeout(host, (int)port, tv);
    if (!c || c->err) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, hostport,
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        errno = ECONNREFUSED;
        return NULL;
    }
    /* Every call is bounded: a stalled server fails the benchmark instead of hanging it. */
    redisSetTimeout(c, tv);
    return c;
}

int bench_redis_load(const char *prog, redisContext *c, const char *text, char sha[41])
{
    redisReply *r = redisCommand(c, "SCRIPT LOAD %s", text);
    int rc = -1;
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(sha, r->str, 41);
        rc = 0;
    } else {
        fprintf(stderr, "%s: SCRIPT LOAD failed: %s\n", prog,
                r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

static double info_field(const char *info, const char *name)
{
    const char *p = strstr(info, name);
    return p ? strtod(p + strlen(name), NULL) : 0.0;
}

int bench_redis_stats(redisContext *c, const char *command, struct bench_redis_stats *st)
{
    char name[64];
    redisReply *r = redisCommand(c, "INFO all");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    memset(st, 0, sizeof(*st));
    snprintf(name, sizeof(name), "cmdstat_%s:", command);
    const char *line = strstr(r->str, name);
    if (line) {
        const char *calls = strstr(line, "calls=");
        const char *usec = strstr(line, "usec=");
        if (calls)
            st->cmd_calls = strtoll(calls + 6, NULL, 10);
        if (usec)
            st->cmd_usec = strtod(usec + 5, NULL);
    }
    st->cpu_s = info_field(r->str, "used_cpu_user:") + info_field(r->str, "used_cpu_sys:");
    freeReplyObject(r);
    return 0;
}

void bench_redis_per_call(const struct bench_redis_stats *a, const struct bench_redis_stats *b,
                          long n, double *ret_usec_per_call, double *ret_cpu_us_per_call)
{
    long long calls = b->cmd_calls - a->cmd_calls;
    *ret_usec_per_call = calls > 0 ? (b->cmd_usec - a->cmd_usec) / (double)calls : 0.0;
    *ret_cpu_us_per_call = n > 0 ? (b->cpu_s - a->cpu_s) * 1e6 / (double)n : 0.0;
}
