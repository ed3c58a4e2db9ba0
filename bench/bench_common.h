/*
 * bench_common.h — what the C micro-benchmarks in bench/ share: a monotonic
 * clock in nanoseconds, latency summaries (nearest-rank percentiles), option
 * parsing, a bounded synchronous hiredis connection to HOST:PORT, and the
 * server-side cost of a command read from Redis INFO (commandstats, CPU).
 */
#ifndef AGENTD_BENCH_COMMON_H
#define AGENTD_BENCH_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

int64_t bench_now_ns(void);

struct bench_lat {
    long n;
    double p50_us, p99_us, mean_us, max_us;
};

/* Sorts v[0..n) (n >= 1) and summarises it. */
struct bench_lat bench_lat_summary(int64_t *v, long n);

/* strtol of the whole of s within [min, max]. */
bool bench_parse_long(const char *s, long min, long max, long *out);

/*
 * A synchronous connection to "HOST:PORT" whose connect and every command are bounded by
 * timeout_s. NULL (and a message on stderr naming prog) when it cannot be had: errno EINVAL
 * when hostport is not HOST:PORT, ECONNREFUSED otherwise.
 */
redisContext *bench_redis_connect(const char *prog, const char *hostport, int timeout_s);

/* SCRIPT LOAD of text: its SHA1 into sha (41 bytes). 0, or -1 with a message on stderr. */
int bench_redis_load(const char *prog, redisContext *c, const char *text, char sha[41]);

struct bench_redis_stats {
    double cmd_usec;      /* cmdstat_<command> usec (total) */
    long long cmd_calls;  /* cmdstat_<command> calls */
    double cpu_s;         /* used_cpu_user + used_cpu_sys of the server */
};

/* INFO all: the totals of command (lower case, e.g. "evalsha") and the server's CPU. 0 or -1. */
int bench_redis_stats(redisContext *c, const char *command, struct bench_redis_stats *st);

/* Between two snapshots, over n calls: Redis' own time per call of the command
   (cmdstat usec / calls) and the server process's CPU per call. */
void bench_redis_per_call(const struct bench_redis_stats *a, const struct bench_redis_stats *b,
                          long n, double *ret_usec_per_call, double *ret_cpu_us_per_call);

#endif
