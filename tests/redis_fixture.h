/*
 * redis_fixture.h — a private redis-server for tests: a free loopback port, a
 * temp dir for its log, no persistence. Plain C (no Check inside), so unit and
 * integration tests alike can use it; every function returns 0 or -errno and
 * leaves a message a reader can act on in f->err.
 *
 * The binary is $REDIS_SERVER_BIN (meson sets it), else `redis-server` from PATH.
 *
 * Processes: redis-server is a child of the process that called
 * redis_fixture_start() (the owner) and gets SIGKILL when the owner's starting
 * thread ends (PR_SET_PDEATHSIG), so a test that crashes or fails an assertion
 * leaves no server behind; it stays in the caller's process group, so a test
 * runner that kills the group (meson on timeout) takes it too. Only the owner
 * can reap it: redis_fixture_stop/kill/restart called from another process
 * (e.g. a test Check forked after the server started) answer -ECHILD and do
 * nothing. pause/resume only send signals and work from any process.
 *
 * A test that kills or pauses the server while a hiredis connection is open
 * should ignore SIGPIPE (hiredis writes with write(2)).
 */
#ifndef AGENTD_TEST_REDIS_FIXTURE_H
#define AGENTD_TEST_REDIS_FIXTURE_H

#include <sys/types.h>

#include <hiredis/hiredis.h>

struct redis_fixture {
    pid_t pid;     /* redis-server; 0 when not running */
    pid_t owner;   /* the process that started it (the only one that can reap it) */
    int port;      /* 127.0.0.1 port; kept by redis_fixture_kill for a restart */
    char dir[256]; /* temp dir: --dir and redis.log; "" once removed */
    char url[64];  /* "redis://127.0.0.1:<port>/0" */
    char err[512]; /* why the last call failed (with the end of redis.log when it helps) */
};

/* Zeroes *f, makes the temp dir and starts redis-server on a free port (a few ports are tried
   when the chosen one is taken meanwhile), then waits up to 5 s until it answers PING with PONG
   and reports its own pid in INFO. On failure everything it made is gone again. */
int redis_fixture_start(struct redis_fixture *f);

/* SIGTERM, up to 3 s for it to exit, then SIGKILL; reaps it and removes the temp dir (kept when
   AGENTD_KEEP_TEST_DIRS is set). Idempotent: a stopped fixture answers 0. */
int redis_fixture_stop(struct redis_fixture *f);

/* SIGKILL and reap, as a crash would end it: the temp dir and the port are kept for
   redis_fixture_restart. Answers 0 when it was not running. */
int redis_fixture_kill(struct redis_fixture *f);

/* Starts redis-server again on the same port (retrying for up to 5 s while the port is still
   taken) and waits for PING as redis_fixture_start does. The data is gone (no persistence).
   -EALREADY when it is running; -ENOENT after redis_fixture_stop. */
int redis_fixture_restart(struct redis_fixture *f);

/* SIGSTOP / SIGCONT: a hung server (connections are accepted by the kernel, nothing answers). */
int redis_fixture_pause(struct redis_fixture *f);
int redis_fixture_resume(struct redis_fixture *f);

/* A synchronous hiredis connection with a 1 s connect and command timeout, or NULL (the reason
   in f->err is not written: f is const; use redisFree on the result). */
redisContext *redis_fixture_connect(const struct redis_fixture *f);

#endif
