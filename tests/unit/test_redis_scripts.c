/*
 * test_redis_scripts.c — the Lua scripts of redis_scripts.h run in a real
 * redis-server (tests/redis_fixture.h, started once in main(); Check forks each
 * test, and the tests only connect to it): the limiter's GCRA arithmetic, its
 * 429 pause and single probe, the keys' TTLs and the replica registry.
 *
 * The scripts read Redis TIME, which moves between calls. A wait the script
 * computes for a token due D ms after the first call of a sequence is
 * ceil(D - d), d the Redis time between that first call and this one; d is at
 * most the time the test saw pass around both calls. So each expected wait is
 * checked within [ceil(D - elapsed), ceil(D)], elapsed measured by the test in
 * microseconds: tight on an idle machine (tight enough to tell a wait rounded
 * up from one rounded down), still right on a loaded one.
 */
#include "agentd/redis_scripts.h"
#include "redis_fixture.h"

#include <check.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEASE_MS     1000 /* a probe's lease where the test does not let it run out */
#define LONG_WAIT_MS 1000000
/* Short pauses and leases the tests sleep through; long enough that two calls in a row on a
   loaded machine still fall inside them. */
#define PAUSE_MS       100
#define PAST_PAUSE_MS  150
#define SHORT_LEASE_MS 200
#define PAST_LEASE_MS  250

static struct redis_fixture redis; /* started by main() before the tests are forked */

struct take {
    long long code, ms, gen;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Whole ms, rounded up (us may be negative). */
static long long ceil_ms(int64_t us)
{
    return us >= 0 ? (us + 999) / 1000 : -(-us / 1000);
}

/* Microseconds since t0_us, with room for the clocks: Redis TIME is the wall clock (whole
   microseconds, its rate slewed by at most 500 ppm), the test's the monotonic one. */
static int64_t elapsed_us(int64_t t0_us)
{
    int64_t us = now_us() - t0_us;
    return us + us / 1000 + 5;
}

/* The wait answered for a token due due_us after the first call of a sequence that started at
   t0_us: ceil(due_us - d) with 0 <= d <= elapsed (+ slack_us for what the script rounds away). */
#define ck_assert_wait_us(wait_ms, due_us, slack_us, t0_us)                                        \
    do {                                                                                           \
        long long w_ = (wait_ms);                                                                  \
        int64_t d_ = (due_us), e_ = elapsed_us(t0_us) + (slack_us);                                \
        ck_assert_msg(w_ <= ceil_ms(d_) && w_ >= ceil_ms(d_ - e_),                                 \
                      "wait %lld ms, expected %lld ms less at most the %.3f ms that passed", w_,   \
                      ceil_ms(d_), (double)e_ / 1000);                                             \
    } while (0)
#define ck_assert_wait(wait_ms, due_ms, t0_us)                                                     \
    ck_assert_wait_us(wait_ms, (int64_t)(due_ms)*1000, 0, t0_us)

#define ck_assert_take(t, want_code, want_ms, want_gen)                                            \
    do {                                                                                           \
        struct take t_ = (t);                                                                      \
        ck_assert_msg(t_.code == (want_code) && t_.ms == (want_ms) && t_.gen == (want_gen),        \
                      "take answered {%lld, %lld, %lld}, expected {%lld, %lld, %lld}", t_.code,    \
                      t_.ms, t_.gen, (long long)(want_code), (long long)(want_ms),                 \
                      (long long)(want_gen));                                                      \
    } while (0)

static redisContext *connect_redis(void)
{
    redisContext *c = redis_fixture_connect(&redis);
    ck_assert_msg(c != NULL, "cannot connect to redis-server at %s", redis.url);
    return c;
}

/* Every key of a test shares its hash tag, the test's name: tests never see each other's. */
static void test_key(char *buf, size_t len, const char *test, const char *what)
{
    ck_assert_int_lt(snprintf(buf, len, "agentd:test:{%s}:%s", test, what), (int)len);
}

/* One command; the reply is never NULL and never an error. */
static redisReply *command(redisContext *c, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    ck_assert_msg(r != NULL, "%s: %s", argv[0], c->errstr);
    ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s: %s", argv[0], r->str);
    return r;
}

/* EVAL (or, with sha, EVALSHA) of a script on one key with up to 5 arguments. */
static redisReply *eval(redisContext *c, const char *script, const char *sha, const char *key,
                        int argc, const char *const *args)
{
    const char *argv[9] = {sha ? "EVALSHA" : "EVAL", sha ? sha : script, "1", key};
    ck_assert_int_le(argc, 5);
    for (int i = 0; i < argc; i++)
        argv[4 + i] = args[i];
    return command(c, 4 + argc, argv);
}

static long long integer_reply(redisReply *r)
{
    ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "expected an integer, got reply type %d",
                  r->type);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static struct take take_with(redisContext *c, const char *sha, const char *key, double rate_per_s,
                             double burst, long long max_wait_ms, long long lease_ms)
{
    char rate[32], b[32], max_wait[32], lease[32];
    snprintf(rate, sizeof(rate), "%.17g", rate_per_s);
    snprintf(b, sizeof(b), "%.17g", burst);
    snprintf(max_wait, sizeof(max_wait), "%lld", max_wait_ms);
    snprintf(lease, sizeof(lease), "%lld", lease_ms);
    const char *args[] = {rate, b, max_wait, lease};
    redisReply *r = eval(c, REDIS_SCRIPT_LIMIT_TAKE, sha, key, 4, args);
    ck_assert_msg(r->type == REDIS_REPLY_ARRAY && r->elements == 3,
                  "take: expected 3 elements, got reply type %d", r->type);
    for (size_t i = 0; i < 3; i++)
        ck_assert_msg(r->element[i]->type == REDIS_REPLY_INTEGER,
                      "take: element %zu has reply type %d", i, r->element[i]->type);
    struct take t = {r->element[0]->integer, r->element[1]->integer, r->element[2]->integer};
    freeReplyObject(r);
    return t;
}

static struct take take(redisContext *c, const char *key, double rate_per_s, double burst,
                        long long max_wait_ms, long long lease_ms)
{
    return take_with(c, NULL, key, rate_per_s, burst, max_wait_ms, lease_ms);
}

static long long pause_for(redisContext *c, const char *key, long long pause_ms)
{
    char ms[32];
    snprintf(ms, sizeof(ms), "%lld", pause_ms);
    const char *args[] = {ms};
    return integer_reply(eval(c, REDIS_SCRIPT_LIMIT_PAUSE, NULL, key, 1, args));
}

static long long probe_done(redisContext *c, const char *key, long long gen, int recovered)
{
    char g[32];
    snprintf(g, sizeof(g), "%lld", gen);
    const char *args[] = {g, recovered ? "1" : "0"};
    return integer_reply(eval(c, REDIS_SCRIPT_LIMIT_PROBE_DONE, NULL, key, 2, args));
}

static long long beat(redisContext *c, const char *key, const char *replica, long long ttl_ms)
{
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%lld", ttl_ms);
    const char *args[] = {replica, ttl};
    return integer_reply(eval(c, REDIS_SCRIPT_REGISTRY_BEAT, NULL, key, 2, args));
}

static long long pttl(redisContext *c, const char *key)
{
    const char *argv[] = {"PTTL", key};
    return integer_reply(command(c, 2, argv));
}

/* Pauses key for PAUSE_MS and sleeps past it; answers the pause's number: the next probe gets the
   one after it. */
static long long pause_and_sleep_through(redisContext *c, const char *key)
{
    ck_assert_int_eq(pause_for(c, key, PAUSE_MS), PAUSE_MS);
    const char *argv[] = {"HGET", key, "gen"};
    redisReply *r = command(c, 3, argv);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    long long gen = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    sleep_ms(PAST_PAUSE_MS);
    return gen;
}

START_TEST(test_limit_take_grants_the_burst_then_one_token_per_interval)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    for (int i = 0; i < 3; i++)
        ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), 0, 0, 0);
    struct take t = take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 100, t0);
    ck_assert_int_gt(t.ms, 0);
    t = take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 200, t0);
    ck_assert_int_eq(t.gen, 0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_take_refusal_over_max_wait_reserves_nothing)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    for (int i = 0; i < 3; i++) {
        struct take t = take(c, key, 10, 3, 150, LEASE_MS);
        ck_assert_int_eq(t.code, REDIS_LIMIT_REFUSED);
        ck_assert_wait(t.ms, 200, t0);
        ck_assert_int_eq(t.gen, 0);
    }
    /* Had a refusal reserved anything this would be 300 or more. */
    struct take t = take(c, key, 10, 3, 1000, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 200, t0);
    t = take(c, key, 10, 3, 1000, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 300, t0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_take_max_wait_zero_or_less_takes_only_a_free_token)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    ck_assert_take(take(c, key, 10, 1, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    for (long long max_wait = 0; max_wait >= -2; max_wait--) {
        struct take t = take(c, key, 10, 1, max_wait, LEASE_MS);
        ck_assert_int_eq(t.code, REDIS_LIMIT_REFUSED);
        ck_assert_wait(t.ms, 100, t0);
        ck_assert_int_gt(t.ms, 0);
    }
    struct take t = take(c, key, 10, 1, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 100, t0);
    /* A wait of max_wait or less is granted (time only shortens it between the two calls). */
    long long next_wait = take(c, key, 10, 1, -1, LEASE_MS).ms;
    ck_assert_int_gt(next_wait, 100);
    ck_assert_int_eq(take(c, key, 10, 1, next_wait, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_take_idle_bucket_refills_to_burst_not_beyond)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(take(c, key, 10, 2, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    sleep_ms(400); /* the last token was due at 100 ms: 300 ms of idle time, 3 tokens' worth */
    int64_t t0 = now_us();
    for (int i = 0; i < 2; i++)
        ck_assert_take(take(c, key, 10, 2, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    struct take t = take(c, key, 10, 2, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 100, t0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_take_fractional_interval_does_not_drift)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    ck_assert_take(take(c, key, 3, 1, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    /* One token per 333.33 ms: the k-th reservation is due at k * 1000 / 3 ms (the script keeps
       its time to the microsecond: up to 1 us less per token). */
    for (int64_t k = 1; k <= 300; k++) {
        struct take t = take(c, key, 3, 1, LONG_WAIT_MS, LEASE_MS);
        ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
        ck_assert_wait_us(t.ms, k * 1000000 / 3, k, t0);
    }
    redisFree(c);
}
END_TEST

START_TEST(test_limit_take_rounds_a_fractional_wait_up)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    /* One token per 1000.999 ms: right after the first, the next is 1000.99x ms away, which
       rounded down would let the caller start before its token is there. */
    int64_t t0 = now_us();
    ck_assert_take(take(c, key, 1000 / 1000.999, 1, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    struct take t = take(c, key, 1000 / 1000.999, 1, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait_us(t.ms, 1000999, 0, t0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_pause_answers_the_pause_and_take_the_time_left)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    ck_assert_int_eq(pause_for(c, key, 500), 500);
    for (int i = 0; i < 3; i++) {
        struct take t = take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS);
        ck_assert_int_eq(t.code, REDIS_LIMIT_PAUSED);
        ck_assert_wait(t.ms, 500, t0);
        ck_assert_int_gt(t.ms, 400);
        ck_assert_int_eq(t.gen, 0);
    }
    redisFree(c);
}
END_TEST

START_TEST(test_limit_pause_shorter_does_not_shorten_a_longer_one)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    ck_assert_int_eq(pause_for(c, key, 500), 500);
    ck_assert_wait(pause_for(c, key, 100), 500, t0);
    struct take t = take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_PAUSED);
    ck_assert_wait(t.ms, 500, t0);
    /* A longer one extends it. */
    t0 = now_us();
    ck_assert_int_eq(pause_for(c, key, 2000), 2000);
    t = take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_PAUSED);
    ck_assert_wait(t.ms, 2000, t0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_after_the_pause_one_caller_probes_and_the_rest_wait)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    ck_assert_int_eq(pause_for(c, key, PAUSE_MS), PAUSE_MS);
    ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_PAUSED);
    sleep_ms(PAST_PAUSE_MS);
    /* The pause took number 1, the probe takes 2. */
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE, 0, 2);
    for (int i = 0; i < 3; i++)
        ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE_OUT, 0, 0);
    ck_assert_int_eq(probe_done(c, key, 2, 1), 1);
    /* The callers turned away while the probe was out took no token: the probe took 1 of 3. */
    for (int i = 0; i < 2; i++)
        ck_assert_take(take(c, key, 10, 3, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    ck_assert_int_eq(take(c, key, 10, 3, 0, LEASE_MS).code, REDIS_LIMIT_REFUSED);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_recovered_probe_ends_the_throttle)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    long long gen = pause_and_sleep_through(c, key) + 1;
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE, 0, gen);
    ck_assert_int_eq(probe_done(c, key, gen, 1), 1);
    for (int i = 0; i < 2; i++)
        ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    /* The throttle is over: a second report of the same probe is ignored. */
    ck_assert_int_eq(probe_done(c, key, gen, 0), 0);
    ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_failed_probe_lets_the_next_caller_probe)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    long long gen = pause_and_sleep_through(c, key) + 1;
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE, 0, gen);
    ck_assert_int_eq(probe_done(c, key, gen, 0), 1);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE, 0, gen + 1);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE_OUT, 0, 0);
    ck_assert_int_eq(probe_done(c, key, gen, 1), 0); /* the first probe's number is spent */
    ck_assert_int_eq(probe_done(c, key, gen + 1, 1), 1);
    ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_probe_report_of_a_stale_generation_changes_nothing)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    long long old = pause_and_sleep_through(c, key) + 1;
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE, 0, old);
    /* Another 429 while the probe is out: a new number, then its own probe. */
    long long gen = pause_and_sleep_through(c, key) + 1;
    ck_assert_int_eq(gen, old + 2);
    ck_assert_int_eq(probe_done(c, key, old, 1), 0);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE, 0, gen);
    ck_assert_int_eq(probe_done(c, key, old, 0), 0);
    ck_assert_int_eq(probe_done(c, key, gen + 1, 1), 0);
    ck_assert_int_eq(probe_done(c, key, 0, 1), 0);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS), REDIS_LIMIT_PROBE_OUT, 0, 0);
    ck_assert_int_eq(probe_done(c, key, gen, 1), 1);
    ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_pause_holds_whatever_a_probe_reports)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    ck_assert_int_eq(pause_for(c, key, 500), 500);
    ck_assert_int_eq(probe_done(c, key, 0, 1), 0);
    ck_assert_int_eq(probe_done(c, key, 1, 1), 1); /* the current generation: the throttle ends */
    struct take t = take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_PAUSED);
    ck_assert_wait(t.ms, 500, t0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_probe_whose_lease_ran_out_lets_another_probe)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    long long gen = pause_and_sleep_through(c, key) + 1;
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, SHORT_LEASE_MS), REDIS_LIMIT_PROBE, 0, gen);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, SHORT_LEASE_MS), REDIS_LIMIT_PROBE_OUT, 0, 0);
    sleep_ms(PAST_LEASE_MS);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, SHORT_LEASE_MS), REDIS_LIMIT_PROBE, 0,
                   gen + 1);
    /* The first probe's late report frees nothing: the second one still holds the slot. */
    ck_assert_int_eq(probe_done(c, key, gen, 0), 0);
    ck_assert_int_eq(probe_done(c, key, gen, 1), 0);
    ck_assert_take(take(c, key, 10, 3, LONG_WAIT_MS, SHORT_LEASE_MS), REDIS_LIMIT_PROBE_OUT, 0, 0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_probe_lease_starts_when_its_wait_ends)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    int64_t t0 = now_us();
    ck_assert_take(take(c, key, 1, 1, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    long long gen = pause_and_sleep_through(c, key) + 1;
    /* The next token is due at 1000 ms: a probe that must wait longer than max_wait is refused
       and holds nothing. */
    struct take t = take(c, key, 1, 1, 100, SHORT_LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_REFUSED);
    ck_assert_wait(t.ms, 1000, t0);
    t = take(c, key, 1, 1, LONG_WAIT_MS, SHORT_LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_PROBE);
    ck_assert_wait(t.ms, 1000, t0);
    ck_assert_int_eq(t.gen, gen);
    /* Its lease runs from the end of its ~850 ms wait, not from now. */
    sleep_ms(PAST_LEASE_MS);
    ck_assert_take(take(c, key, 1, 1, LONG_WAIT_MS, SHORT_LEASE_MS), REDIS_LIMIT_PROBE_OUT, 0, 0);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_key_expires_a_minute_after_its_last_reservation)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    long long ttl = pttl(c, key);
    ck_assert_int_gt(ttl, 59000);
    ck_assert_int_le(ttl, 60100);
    /* A reservation far ahead: the key outlives it by the minute. */
    char far[128];
    test_key(far, sizeof(far), __func__, "far");
    ck_assert_int_eq(take(c, far, 0.01, 1, 0, LEASE_MS).code, REDIS_LIMIT_GRANTED);
    struct take t = take(c, far, 0.01, 1, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_int_gt(t.ms, 99000);
    ttl = pttl(c, far);
    ck_assert_int_gt(ttl, 200000 + 60000 - 1000);
    ck_assert_int_le(ttl, 200000 + 60000);
    redisFree(c);
}
END_TEST

START_TEST(test_limit_key_outlives_its_pause_and_is_never_shortened)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "limiter");

    ck_assert_int_eq(pause_for(c, key, 600000), 600000);
    long long ttl = pttl(c, key);
    ck_assert_int_gt(ttl, 600000 + 60000 - 1000);
    ck_assert_int_le(ttl, 600000 + 60000);
    /* A take (paused), a shorter pause and a probe report leave the longer TTL alone. */
    ck_assert_int_eq(take(c, key, 10, 3, LONG_WAIT_MS, LEASE_MS).code, REDIS_LIMIT_PAUSED);
    pause_for(c, key, 100);
    probe_done(c, key, 2, 1);
    ck_assert_int_gt(pttl(c, key), 600000 + 60000 - 1000);
    redisFree(c);
}
END_TEST

START_TEST(test_registry_counts_each_replica_once)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "replicas");

    ck_assert_int_eq(beat(c, key, "replica-a", 10000), 1);
    ck_assert_int_eq(beat(c, key, "replica-b", 10000), 2);
    ck_assert_int_eq(beat(c, key, "replica-a", 10000), 2);
    ck_assert_int_eq(beat(c, key, "replica-b", 10000), 2);
    long long ttl = pttl(c, key);
    ck_assert_int_gt(ttl, 19000);
    ck_assert_int_le(ttl, 20000);
    redisFree(c);
}
END_TEST

START_TEST(test_registry_forgets_a_replica_not_seen_for_ttl)
{
    redisContext *c = connect_redis();
    char key[128], kept[128];
    test_key(key, sizeof(key), __func__, "replicas");
    test_key(kept, sizeof(kept), __func__, "kept");

    ck_assert_int_eq(beat(c, key, "replica-a", 50), 1);
    ck_assert_int_eq(beat(c, kept, "replica-a", 10000), 1);
    sleep_ms(80);
    ck_assert_int_eq(beat(c, key, "replica-b", 50), 1);
    ck_assert_int_eq(beat(c, kept, "replica-b", 10000), 2);
    const char *argv[] = {"ZSCORE", key, "replica-a"};
    redisReply *r = command(c, 3, argv);
    ck_assert_int_eq(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    /* A registry nobody beats into goes away by itself. */
    sleep_ms(120);
    const char *exists[] = {"EXISTS", key};
    ck_assert_int_eq(integer_reply(command(c, 2, exists)), 0);
    redisFree(c);
}
END_TEST

static void sha1_hex(const char *text, char hex[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    ck_assert(EVP_Digest(text, strlen(text), md, &md_len, EVP_sha1(), NULL) == 1);
    ck_assert_uint_eq(md_len, 20);
    for (unsigned i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

START_TEST(test_scripts_load_under_the_sha1_of_their_text)
{
    static const char *const scripts[] = {REDIS_SCRIPT_LIMIT_TAKE, REDIS_SCRIPT_LIMIT_PAUSE,
                                          REDIS_SCRIPT_LIMIT_PROBE_DONE,
                                          REDIS_SCRIPT_REGISTRY_BEAT};
    redisContext *c = connect_redis();

    /* So a client can EVALSHA without loading first, and fall back to EVAL on NOSCRIPT. */
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        char sha[41];
        sha1_hex(scripts[i], sha);
        const char *argv[] = {"SCRIPT", "LOAD", scripts[i]};
        redisReply *r = command(c, 3, argv);
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(r->str, sha);
        freeReplyObject(r);
    }
    redisFree(c);
}
END_TEST

START_TEST(test_limit_take_by_evalsha_answers_as_eval)
{
    redisContext *c = connect_redis();
    char key[128], sha[41];
    test_key(key, sizeof(key), __func__, "limiter");
    const char *load[] = {"SCRIPT", "LOAD", REDIS_SCRIPT_LIMIT_TAKE};
    redisReply *r = command(c, 3, load);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(r->len, 40);
    memcpy(sha, r->str, sizeof(sha));
    freeReplyObject(r);

    int64_t t0 = now_us();
    for (int i = 0; i < 2; i++)
        ck_assert_take(take_with(c, sha, key, 10, 2, 0, LEASE_MS), REDIS_LIMIT_GRANTED, 0, 0);
    struct take t = take_with(c, sha, key, 10, 2, 0, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_REFUSED);
    ck_assert_wait(t.ms, 100, t0);
    /* EVAL and EVALSHA share the key's state. */
    t = take(c, key, 10, 2, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 100, t0);
    t = take_with(c, sha, key, 10, 2, LONG_WAIT_MS, LEASE_MS);
    ck_assert_int_eq(t.code, REDIS_LIMIT_GRANTED);
    ck_assert_wait(t.ms, 200, t0);
    redisFree(c);
}
END_TEST

/* ---- the shared hourly budget ------------------------------------------------------- */

struct reserve {
    long long ok, value; /* {1, minute} or {0, retry_after_ms} */
};

static struct reserve spend_reserve(redisContext *c, const char *key, long long limit_nano,
                                    long long limit_tokens, long long nano, long long tokens)
{
    char a[4][32];
    snprintf(a[0], sizeof(a[0]), "%lld", limit_nano);
    snprintf(a[1], sizeof(a[1]), "%lld", limit_tokens);
    snprintf(a[2], sizeof(a[2]), "%lld", nano);
    snprintf(a[3], sizeof(a[3]), "%lld", tokens);
    const char *args[] = {a[0], a[1], a[2], a[3]};
    redisReply *r = eval(c, REDIS_SCRIPT_SPEND_RESERVE, NULL, key, 4, args);
    ck_assert_msg(r->type == REDIS_REPLY_ARRAY && r->elements == 2, "reserve: reply type %d",
                  r->type);
    struct reserve v = {r->element[0]->integer, r->element[1]->integer};
    freeReplyObject(r);
    return v;
}

static void spend_settle(redisContext *c, const char *key, long long minute, long long held_nano,
                         long long held_tokens, long long nano, long long tokens)
{
    char a[5][32];
    snprintf(a[0], sizeof(a[0]), "%lld", minute);
    snprintf(a[1], sizeof(a[1]), "%lld", held_nano);
    snprintf(a[2], sizeof(a[2]), "%lld", held_tokens);
    snprintf(a[3], sizeof(a[3]), "%lld", nano);
    snprintf(a[4], sizeof(a[4]), "%lld", tokens);
    const char *args[] = {a[0], a[1], a[2], a[3], a[4]};
    ck_assert_int_eq(integer_reply(eval(c, REDIS_SCRIPT_SPEND_SETTLE, NULL, key, 5, args)), 1);
}

static long long hget_ll(redisContext *c, const char *key, const char *field)
{
    const char *argv[] = {"HGET", key, field};
    redisReply *r = command(c, 3, argv);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

static void hset_ll(redisContext *c, const char *key, const char *field, long long v)
{
    char num[32];
    snprintf(num, sizeof(num), "%lld", v);
    const char *argv[] = {"HSET", key, field, num};
    freeReplyObject(command(c, 4, argv));
}

/* The minute Redis is in now (as the scripts count it). */
static long long redis_minute(redisContext *c)
{
    const char *argv[] = {"TIME"};
    redisReply *r = command(c, 1, argv);
    long long ms =
        strtoll(r->element[0]->str, NULL, 10) * 1000 + strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms / 60000;
}

START_TEST(test_spend_reservations_count_until_settled)
{
    redisContext *c = connect_redis();
    char key[128], field[32];
    test_key(key, sizeof(key), __func__, "spend");

    struct reserve a = spend_reserve(c, key, 0, 1000, 7000, 600);
    ck_assert_int_eq(a.ok, 1);
    snprintf(field, sizeof(field), "t%lld", a.value);
    ck_assert_int_eq(hget_ll(c, key, field), 600);
    snprintf(field, sizeof(field), "u%lld", a.value);
    ck_assert_int_eq(hget_ll(c, key, field), 7000);
    /* 600 < 1000: one more may start, then the budget is spent while both run. */
    struct reserve b = spend_reserve(c, key, 0, 1000, 7000, 600);
    ck_assert_int_eq(b.ok, 1);
    struct reserve refused = spend_reserve(c, key, 0, 1000, 1, 1);
    ck_assert_int_eq(refused.ok, 0);
    /* Everything was counted in the current minute: it leaves 59 to 60 minutes from now. */
    ck_assert_int_gt(refused.value, 59 * 60000 - 2000);
    ck_assert_int_le(refused.value, 60 * 60000);
    /* The calls used 100 and 50: the worst cases are replaced by that. */
    spend_settle(c, key, a.value, 7000, 600, 1000, 100);
    spend_settle(c, key, b.value, 7000, 600, 500, 50);
    long long m = redis_minute(c);
    long long tokens = 0;
    for (long long j = a.value; j <= m; j++) {
        snprintf(field, sizeof(field), "t%lld", j);
        long long v = hget_ll(c, key, field);
        tokens += v > 0 ? v : 0;
    }
    ck_assert_int_eq(tokens, 150);
    ck_assert_int_eq(spend_reserve(c, key, 0, 1000, 1, 1).ok, 1);
    ck_assert_int_gt(pttl(c, key), 3600000);
    redisFree(c);
}
END_TEST

START_TEST(test_spend_usd_budget_and_settle_without_a_reservation)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "spend");

    /* Recorded usage alone (minute -1: nothing held) counts toward the USD budget. */
    spend_settle(c, key, -1, 0, 0, 30000000, 10);
    ck_assert_int_eq(spend_reserve(c, key, 30000000, 0, 1, 1).ok, 0);
    ck_assert_int_eq(spend_reserve(c, key, 30000001, 0, 1, 1).ok, 1);
    /* Both budgets off: always allowed. */
    ck_assert_int_eq(spend_reserve(c, key, 0, 0, 1000000000, 1000000000).ok, 1);
    redisFree(c);
}
END_TEST

START_TEST(test_spend_old_minutes_leave_the_window_and_are_dropped)
{
    redisContext *c = connect_redis();
    char key[128], old[32], oldest_kept[32];
    test_key(key, sizeof(key), __func__, "spend");

    long long m = redis_minute(c);
    snprintf(old, sizeof(old), "t%lld", m - 60);
    hset_ll(c, key, old, 5000);
    /* A minute an hour old counts for nothing and the next reservation drops it. */
    ck_assert_int_eq(spend_reserve(c, key, 0, 1000, 0, 1).ok, 1);
    ck_assert_int_eq(hget_ll(c, key, old), -1);
    /* The window's oldest minute still counts; the budget frees up when it leaves, within the
       minute (the test may straddle a minute: allow one more). */
    snprintf(oldest_kept, sizeof(oldest_kept), "t%lld", m - 58);
    hset_ll(c, key, oldest_kept, 5000);
    struct reserve r = spend_reserve(c, key, 0, 1000, 0, 1);
    ck_assert_int_eq(r.ok, 0);
    ck_assert_int_le(r.value, 2 * 60000);
    ck_assert_int_ge(r.value, 1);
    /* Settling against a minute already gone takes nothing back from another. */
    spend_settle(c, key, m - 70, 0, 4000, 0, 0);
    ck_assert_int_eq(hget_ll(c, key, oldest_kept), 5000);
    redisFree(c);
}
END_TEST

/* ---- Idempotency-Keys and conversations across replicas ------------------------------ */

/* EVAL of script with nkeys keys then the arguments, all in argv (NULL-terminated). */
static redisReply *evalv(redisContext *c, const char *script, int nkeys, const char *const *argv)
{
    const char *all[16] = {"EVAL", script};
    char n[8];
    int argc = 3;
    snprintf(n, sizeof(n), "%d", nkeys);
    all[2] = n;
    for (int i = 0; argv[i]; i++) {
        ck_assert_int_lt(argc, 16);
        all[argc++] = argv[i];
    }
    return command(c, argc, all);
}

static long long evalv_int(redisContext *c, const char *script, int nkeys, const char *const *argv)
{
    return integer_reply(evalv(c, script, nkeys, argv));
}

START_TEST(test_idem_claim_runs_once_replays_and_refuses_another_body)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "idem");

    redisReply *r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
                          (const char *[]){key, "fp1", "A", "15000", "86400000", NULL});
    ck_assert_int_eq(r->elements, 1);
    ck_assert_int_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
    /* Same body while it runs: in progress, for about the lease. */
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp1", "B", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 1);
    ck_assert_int_gt(r->element[1]->integer, 14000);
    ck_assert_int_le(r->element[1]->integer, 15000);
    freeReplyObject(r);
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp2", "B", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 2);
    freeReplyObject(r);
    /* Only the owner renews and completes. */
    ck_assert_int_eq(
        evalv_int(c, REDIS_SCRIPT_IDEM_RENEW, 1, (const char *[]){key, "B", "60000", NULL}), 0);
    ck_assert_int_eq(
        evalv_int(c, REDIS_SCRIPT_IDEM_RENEW, 1, (const char *[]){key, "A", "60000", NULL}), 1);
    ck_assert_int_gt(pttl(c, key), 80000000);
    /* The lease is the renewed one, the key lives for its TTL. */
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp1", "B", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 1);
    ck_assert_int_gt(r->element[1]->integer, 50000);
    freeReplyObject(r);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_COMPLETE, 1,
                               (const char *[]){key, "B", "200", "{\"x\":1}", "60000", NULL}),
                     0);
    ck_assert_int_eq(
        evalv_int(c, REDIS_SCRIPT_IDEM_COMPLETE, 1,
                  (const char *[]){key, "A", "200", "{\"output\":\"\\u00e9\"}", "60000", NULL}),
        1);
    /* Finished: the same body gets the stored bytes, another body still 422. */
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp1", "C", "15000", "86400000", NULL});
    ck_assert_int_eq(r->elements, 3);
    ck_assert_int_eq(r->element[0]->integer, 3);
    ck_assert_int_eq(r->element[1]->integer, 200);
    ck_assert_str_eq(r->element[2]->str, "{\"output\":\"\\u00e9\"}");
    freeReplyObject(r);
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp2", "C", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 2);
    freeReplyObject(r);
    /* A finished key is not abandoned by its old owner. */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_ABANDON, 1, (const char *[]){key, "A", NULL}),
                     0);
    redisFree(c);
}
END_TEST

START_TEST(test_idem_abandoned_key_runs_again)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "idem");

    freeReplyObject(evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
                          (const char *[]){key, "fp", "A", "15000", "86400000", NULL}));
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_ABANDON, 1, (const char *[]){key, "B", NULL}),
                     0);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_ABANDON, 1, (const char *[]){key, "A", NULL}),
                     1);
    redisReply *r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
                          (const char *[]){key, "fp", "B", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

START_TEST(test_idem_lapsed_lease_hands_the_run_over_with_its_checkpoint)
{
    redisContext *c = connect_redis();
    char key[128];
    test_key(key, sizeof(key), __func__, "idem");

    redisReply *r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
                          (const char *[]){key, "fp", "A", "150", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 0);
    freeReplyObject(r);
    /* Only the owner checkpoints; a checkpoint renews the lease. */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_CHECKPOINT, 1,
                               (const char *[]){key, "B", "150", "cpB", NULL}),
                     0);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_CHECKPOINT, 1,
                               (const char *[]){key, "A", "150", "cp1", NULL}),
                     1);
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp", "B", "150", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 1);
    ck_assert_int_le(r->element[1]->integer, 150);
    freeReplyObject(r);
    /* A dies: its lease lapses, the next claim takes the run over from its checkpoint. */
    sleep_ms(200);
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp", "B", "10000", "86400000", NULL});
    ck_assert_int_eq(r->elements, 2);
    ck_assert_int_eq(r->element[0]->integer, 4);
    ck_assert_str_eq(r->element[1]->str, "cp1");
    freeReplyObject(r);
    /* A, back from a pause, owns nothing any more. */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_CHECKPOINT, 1,
                               (const char *[]){key, "A", "150", "cp2", NULL}),
                     0);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_COMPLETE, 1,
                               (const char *[]){key, "A", "200", "a", "60000", NULL}),
                     0);
    /* B lets go (shutdown): C takes over at once. */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_RELEASE, 1, (const char *[]){key, "A", NULL}),
                     0);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_RELEASE, 1, (const char *[]){key, "B", NULL}),
                     1);
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp", "C", "10000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 4);
    freeReplyObject(r);
    /* Completed, the checkpoint is gone and the answer replays. */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_IDEM_COMPLETE, 1,
                               (const char *[]){key, "C", "200", "done", "60000", NULL}),
                     1);
    ck_assert_int_eq(hget_ll(c, key, "cp"), -1);
    r = evalv(c, REDIS_SCRIPT_IDEM_CLAIM, 1,
              (const char *[]){key, "fp", "D", "10000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 3);
    ck_assert_str_eq(r->element[2]->str, "done");
    freeReplyObject(r);
    ck_assert_int_le(pttl(c, key), 60000);
    redisFree(c);
}
END_TEST

START_TEST(test_conv_one_turn_at_a_time_and_versions_never_interleave)
{
    redisContext *c = connect_redis();
    char h[128], lock[128];
    test_key(h, sizeof(h), __func__, "h");
    test_key(lock, sizeof(lock), __func__, "lock");

    redisReply *r = evalv(c, REDIS_SCRIPT_CONV_ACQUIRE, 2,
                          (const char *[]){h, lock, "A", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 0);
    ck_assert_int_eq(r->element[1]->integer, 0);
    ck_assert_str_eq(r->element[2]->str, "");
    freeReplyObject(r);
    r = evalv(c, REDIS_SCRIPT_CONV_ACQUIRE, 2,
              (const char *[]){h, lock, "B", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 1);
    ck_assert_int_gt(r->element[1]->integer, 14000);
    freeReplyObject(r);
    ck_assert_int_eq(
        evalv_int(c, REDIS_SCRIPT_CONV_RENEW, 1, (const char *[]){lock, "B", "60000", NULL}), 0);
    ck_assert_int_eq(
        evalv_int(c, REDIS_SCRIPT_CONV_RENEW, 1, (const char *[]){lock, "A", "60000", NULL}), 1);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_CONV_COMMIT, 2,
                               (const char *[]){h, lock, "B", "0", "[1]", "60000", NULL}),
                     0);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_CONV_COMMIT, 2,
                               (const char *[]){h, lock, "A", "0", "[1]", "60000", NULL}),
                     1);
    ck_assert_int_gt(pttl(c, h), 50000);
    /* The next turn, from any replica, sees it. */
    r = evalv(c, REDIS_SCRIPT_CONV_ACQUIRE, 2,
              (const char *[]){h, lock, "B", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 0);
    ck_assert_int_eq(r->element[1]->integer, 1);
    ck_assert_str_eq(r->element[2]->str, "[1]");
    freeReplyObject(r);
    /* A commit against an older version writes nothing (and frees the lock). */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_CONV_COMMIT, 2,
                               (const char *[]){h, lock, "B", "0", "[2]", "60000", NULL}),
                     -1);
    r = evalv(c, REDIS_SCRIPT_CONV_ACQUIRE, 2,
              (const char *[]){h, lock, "C", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 0);
    ck_assert_str_eq(r->element[2]->str, "[1]");
    freeReplyObject(r);
    /* A failed run lets go without touching the history. */
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_CONV_RELEASE, 1, (const char *[]){lock, "A", NULL}),
                     0);
    ck_assert_int_eq(evalv_int(c, REDIS_SCRIPT_CONV_RELEASE, 1, (const char *[]){lock, "C", NULL}),
                     1);
    r = evalv(c, REDIS_SCRIPT_CONV_ACQUIRE, 2,
              (const char *[]){h, lock, "D", "15000", "86400000", NULL});
    ck_assert_int_eq(r->element[0]->integer, 0);
    ck_assert_int_eq(r->element[1]->integer, 1);
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

static Suite *redis_scripts_suite(void)
{
    Suite *s = suite_create("redis_scripts");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_limit_take_grants_the_burst_then_one_token_per_interval);
    tcase_add_test(tc, test_limit_take_refusal_over_max_wait_reserves_nothing);
    tcase_add_test(tc, test_limit_take_max_wait_zero_or_less_takes_only_a_free_token);
    tcase_add_test(tc, test_limit_take_idle_bucket_refills_to_burst_not_beyond);
    tcase_add_test(tc, test_limit_take_fractional_interval_does_not_drift);
    tcase_add_test(tc, test_limit_take_rounds_a_fractional_wait_up);
    tcase_add_test(tc, test_limit_pause_answers_the_pause_and_take_the_time_left);
    tcase_add_test(tc, test_limit_pause_shorter_does_not_shorten_a_longer_one);
    tcase_add_test(tc, test_limit_after_the_pause_one_caller_probes_and_the_rest_wait);
    tcase_add_test(tc, test_limit_recovered_probe_ends_the_throttle);
    tcase_add_test(tc, test_limit_failed_probe_lets_the_next_caller_probe);
    tcase_add_test(tc, test_limit_probe_report_of_a_stale_generation_changes_nothing);
    tcase_add_test(tc, test_limit_pause_holds_whatever_a_probe_reports);
    tcase_add_test(tc, test_limit_probe_whose_lease_ran_out_lets_another_probe);
    tcase_add_test(tc, test_limit_probe_lease_starts_when_its_wait_ends);
    tcase_add_test(tc, test_limit_key_expires_a_minute_after_its_last_reservation);
    tcase_add_test(tc, test_limit_key_outlives_its_pause_and_is_never_shortened);
    tcase_add_test(tc, test_registry_counts_each_replica_once);
    tcase_add_test(tc, test_registry_forgets_a_replica_not_seen_for_ttl);
    tcase_add_test(tc, test_scripts_load_under_the_sha1_of_their_text);
    tcase_add_test(tc, test_limit_take_by_evalsha_answers_as_eval);
    tcase_add_test(tc, test_spend_reservations_count_until_settled);
    tcase_add_test(tc, test_spend_usd_budget_and_settle_without_a_reservation);
    tcase_add_test(tc, test_spend_old_minutes_leave_the_window_and_are_dropped);
    tcase_add_test(tc, test_idem_claim_runs_once_replays_and_refuses_another_body);
    tcase_add_test(tc, test_idem_abandoned_key_runs_again);
    tcase_add_test(tc, test_idem_lapsed_lease_hands_the_run_over_with_its_checkpoint);
    tcase_add_test(tc, test_conv_one_turn_at_a_time_and_versions_never_interleave);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    int r = redis_fixture_start(&redis);
    if (r < 0) {
        fprintf(stderr, "test_redis_scripts: cannot start redis-server: %s\n", redis.err);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(redis_scripts_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if ((r = redis_fixture_stop(&redis)) < 0) {
        fprintf(stderr, "test_redis_scripts: stopping redis-server: %s\n", redis.err);
        failed++;
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
