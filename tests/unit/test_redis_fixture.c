/*
 * test_redis_fixture.c — the Redis test fixture itself (tests/redis_fixture.h):
 * that it starts a server of its own and cleans up after it, and that kill,
 * restart, pause and resume do to the server what later tests rely on. Each
 * test starts its own fixture, so the test process is the server's owner.
 */
#include "redis_fixture.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void start(struct redis_fixture *f)
{
    int r = redis_fixture_start(f);
    ck_assert_msg(r == 0, "redis_fixture_start: %s (%d)", f->err, r);
}

static void stop(struct redis_fixture *f)
{
    int r = redis_fixture_stop(f);
    ck_assert_msg(r == 0, "redis_fixture_stop: %s (%d)", f->err, r);
}

/* A command on a fresh connection; the reply's status or string, or "" when nothing answered
   or the answer was nil. */
static void ask(const struct redis_fixture *f, char *ret, size_t len, const char *fmt,
                const char *arg)
{
    redisContext *c = redis_fixture_connect(f);
    ret[0] = '\0';
    if (!c)
        return;
    redisReply *r = redisCommand(c, fmt, arg);
    if (r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING))
        snprintf(ret, len, "%s", r->str);
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

/* CONFIG GET name: the value, or the test fails. */
static void config_get(const struct redis_fixture *f, const char *name, char *ret, size_t len)
{
    redisContext *c = redis_fixture_connect(f);
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "CONFIG GET %s", name);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 2);
    snprintf(ret, len, "%s", r->element[1]->str);
    freeReplyObject(r);
    redisFree(c);
}

static bool answers_ping(const struct redis_fixture *f)
{
    char pong[16];
    ask(f, pong, sizeof(pong), "PING%s", "");
    return strcmp(pong, "PONG") == 0;
}

static bool dir_exists(const char *dir)
{
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether pid still runs: gone, or a zombie nobody reaped yet, counts as ended. */
static bool process_runs(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

START_TEST(test_redis_fixture_starts_a_private_server_and_stop_removes_everything)
{
    struct redis_fixture f;
    char url[64], dir[sizeof(f.dir)], value[16];
    start(&f);

    ck_assert_int_gt(f.pid, 0);
    ck_assert_int_gt(f.port, 0);
    ck_assert_int_ne(f.port, 6379);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", f.port);
    ck_assert_str_eq(f.url, url);
    ck_assert(dir_exists(f.dir));
    ck_assert(answers_ping(&f));
    ask(&f, value, sizeof(value), "SET k %s", "v");
    ck_assert_str_eq(value, "OK");
    ask(&f, value, sizeof(value), "GET %s", "k");
    ck_assert_str_eq(value, "v");
    /* No persistence (nothing survives a restart), its files in its own dir. */
    config_get(&f, "appendonly", value, sizeof(value));
    ck_assert_str_eq(value, "no");
    config_get(&f, "save", value, sizeof(value));
    ck_assert_str_eq(value, "");
    char dir_value[sizeof(f.dir)];
    config_get(&f, "dir", dir_value, sizeof(dir_value));
    ck_assert_str_eq(dir_value, f.dir);

    pid_t pid = f.pid;
    memcpy(dir, f.dir, sizeof(dir));
    stop(&f);
    ck_assert_int_eq(f.pid, 0);
    ck_assert(!process_runs(pid));
    ck_assert(!dir_exists(dir));
    ck_assert(!answers_ping(&f));
    stop(&f); /* idempotent */
    struct redis_fixture never = {0};
    ck_assert_int_eq(redis_fixture_stop(&never), 0);
}
END_TEST

START_TEST(test_redis_fixture_two_fixtures_get_two_servers)
{
    struct redis_fixture a, b;
    char value[16];
    start(&a);
    start(&b);
    ck_assert_int_ne(a.port, b.port);
    ck_assert_str_ne(a.dir, b.dir);
    ask(&a, value, sizeof(value), "SET k %s", "a");
    ask(&b, value, sizeof(value), "GET %s", "k");
    ck_assert_str_eq(value, "");
    stop(&a);
    ck_assert(answers_ping(&b));
    stop(&b);
}
END_TEST

START_TEST(test_redis_fixture_kill_then_restart_on_the_same_port)
{
    struct redis_fixture f;
    char value[16];
    start(&f);
    ask(&f, value, sizeof(value), "SET k %s", "v");
    int port = f.port;
    pid_t pid = f.pid;

    ck_assert_int_eq(redis_fixture_kill(&f), 0);
    ck_assert_int_eq(f.pid, 0);
    ck_assert(!process_runs(pid));
    ck_assert(dir_exists(f.dir));
    ck_assert(!answers_ping(&f));
    ck_assert_int_eq(redis_fixture_kill(&f), 0); /* nothing to kill */

    int r = redis_fixture_restart(&f);
    ck_assert_msg(r == 0, "redis_fixture_restart: %s (%d)", f.err, r);
    ck_assert_int_eq(f.port, port);
    ck_assert_int_gt(f.pid, 0);
    ck_assert_int_ne(f.pid, pid);
    ck_assert(answers_ping(&f));
    ask(&f, value, sizeof(value), "GET %s", "k");
    ck_assert_str_eq(value, ""); /* what the killed server held is gone */
    ck_assert_int_eq(redis_fixture_restart(&f), -EALREADY);
    stop(&f);
    ck_assert_int_eq(redis_fixture_restart(&f), -ENOENT);
}
END_TEST

START_TEST(test_redis_fixture_restart_waits_for_a_taken_port_then_gives_up)
{
    struct redis_fixture f;
    start(&f);
    ck_assert_int_eq(redis_fixture_kill(&f), 0);

    /* Something else listens on the port meanwhile. */
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)f.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    int64_t t0 = now_ms();
    int r = redis_fixture_restart(&f);
    ck_assert_int_eq(r, -EADDRINUSE);
    ck_assert_int_ge(now_ms() - t0, 4000);
    ck_assert_msg(strstr(f.err, "taken") != NULL, "err: %s", f.err);
    ck_assert_int_eq(f.pid, 0);

    close(fd);
    r = redis_fixture_restart(&f);
    ck_assert_msg(r == 0, "redis_fixture_restart: %s (%d)", f.err, r);
    ck_assert(answers_ping(&f));
    stop(&f);
}
END_TEST

START_TEST(test_redis_fixture_paused_server_hangs_until_resumed)
{
    struct redis_fixture f;
    start(&f);
    redisContext *c = redis_fixture_connect(&f);
    ck_assert_ptr_nonnull(c);

    ck_assert_int_eq(redis_fixture_pause(&f), 0);
    int64_t t0 = now_ms();
    redisReply *r = redisCommand(c, "PING");
    ck_assert_ptr_null(r); /* the 1 s command timeout */
    ck_assert_int_ne(c->err, 0);
    ck_assert_int_ge(now_ms() - t0, 900);
    redisFree(c);

    ck_assert_int_eq(redis_fixture_resume(&f), 0);
    ck_assert(answers_ping(&f));
    /* A paused server still stops at once: SIGTERM is not left pending behind SIGSTOP. */
    ck_assert_int_eq(redis_fixture_pause(&f), 0);
    t0 = now_ms();
    stop(&f);
    ck_assert_int_lt(now_ms() - t0, 2500);
}
END_TEST

START_TEST(test_redis_fixture_server_dies_with_the_process_that_started_it)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    /* The orphaned server comes to this process, which can then see how it ended (and reap
       it, rather than leave that to init). */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        /* A test that crashes before its teardown. */
        struct redis_fixture f;
        close(fds[0]);
        if (redis_fixture_start(&f) == 0 && write(fds[1], &f, sizeof(f)) == (ssize_t)sizeof(f))
            _exit(0);
        _exit(1);
    }
    close(fds[1]);
    struct redis_fixture f;
    ssize_t n = read(fds[0], &f, sizeof(f));
    close(fds[0]);
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert_int_eq(n, (ssize_t)sizeof(f));
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    int64_t until = now_ms() + 3000;
    pid_t w;
    while ((w = waitpid(f.pid, &st, WNOHANG)) == 0 && now_ms() < until)
        sleep_ms(10);
    if (w == 0) { /* leave no server behind when the check below fails */
        kill(f.pid, SIGKILL);
        waitpid(f.pid, NULL, 0);
    }
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    /* Nobody stopped the fixture: its dir is this test's to remove. */
    int removed = nftw(f.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    ck_assert_msg(w == f.pid, "redis-server %d outlived its owner", (int)f.pid);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert(!answers_ping(&f));
    ck_assert_int_eq(removed, 0);
}
END_TEST

START_TEST(test_redis_fixture_only_its_owner_reaps_it)
{
    struct redis_fixture f;
    start(&f);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        int stop_r = redis_fixture_stop(&f), kill_r = redis_fixture_kill(&f);
        _exit(stop_r == -ECHILD && kill_r == -ECHILD && strstr(f.err, "not this one") ? 0 : 1);
    }
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert(answers_ping(&f));
    ck_assert(dir_exists(f.dir));
    stop(&f);
}
END_TEST

START_TEST(test_redis_fixture_missing_or_broken_server_is_reported)
{
    struct redis_fixture f;
    const char *was = getenv("REDIS_SERVER_BIN");
    char *saved = was ? strdup(was) : NULL;

    setenv("REDIS_SERVER_BIN", "/nonexistent/redis-server", 1);
    ck_assert_int_eq(redis_fixture_start(&f), -ENOENT);
    ck_assert_msg(strstr(f.err, "REDIS_SERVER_BIN=/nonexistent/redis-server"), "err: %s", f.err);
    ck_assert_int_eq(f.pid, 0);

    setenv("REDIS_SERVER_BIN", "no-such-redis-server", 1);
    ck_assert_int_eq(redis_fixture_start(&f), -ENOENT);
    ck_assert_msg(strstr(f.err, "not found in PATH"), "err: %s", f.err);

    /* A binary that exits at once: its status and its words, and no temp dir left. */
    setenv("REDIS_SERVER_BIN", "/bin/false", 1);
    ck_assert_int_eq(redis_fixture_start(&f), -EIO);
    ck_assert_msg(strstr(f.err, "exited (status 1)"), "err: %s", f.err);
    ck_assert_int_eq(f.pid, 0);
    ck_assert_str_eq(f.dir, "");
    stop(&f);

    if (saved)
        setenv("REDIS_SERVER_BIN", saved, 1);
    else
        unsetenv("REDIS_SERVER_BIN");
    free(saved);
}
END_TEST

static Suite *redis_fixture_suite(void)
{
    Suite *s = suite_create("redis_fixture");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_redis_fixture_starts_a_private_server_and_stop_removes_everything);
    tcase_add_test(tc, test_redis_fixture_two_fixtures_get_two_servers);
    tcase_add_test(tc, test_redis_fixture_kill_then_restart_on_the_same_port);
    tcase_add_test(tc, test_redis_fixture_restart_waits_for_a_taken_port_then_gives_up);
    tcase_add_test(tc, test_redis_fixture_paused_server_hangs_until_resumed);
    tcase_add_test(tc, test_redis_fixture_server_dies_with_the_process_that_started_it);
    tcase_add_test(tc, test_redis_fixture_only_its_owner_reaps_it);
    tcase_add_test(tc, test_redis_fixture_missing_or_broken_server_is_reported);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Writing to a killed server must fail the test, not end the process. */
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(redis_fixture_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
