/*
 * redis_fixture.c — starts, stops, kills, restarts and pauses a private
 * redis-server for tests (see redis_fixture.h).
 */
#include "redis_fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REDIS_FIXTURE_START_TIMEOUT_MS   5000
#define REDIS_FIXTURE_STOP_TIMEOUT_MS    3000
#define REDIS_FIXTURE_RESTART_TIMEOUT_MS 5000
#define REDIS_FIXTURE_PAUSE_TIMEOUT_MS   1000
#define REDIS_FIXTURE_PORT_ATTEMPTS      5
#define REDIS_FIXTURE_POLL_MS            10
#define REDIS_FIXTURE_PING_TIMEOUT_MS    200 /* one readiness probe; retried until the deadline */
#define REDIS_FIXTURE_CONNECT_TIMEOUT_MS 1000
#define REDIS_FIXTURE_LOG_TAIL_BYTES     320
#define REDIS_FIXTURE_DEFAULT_BIN        "redis-server"
#define REDIS_FIXTURE_LOG_NAME           "redis.log"
/* What redis-server logs when it cannot listen on the port (then it exits). */
#define REDIS_FIXTURE_ADDR_IN_USE "Address already in use"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static struct timeval timeval_ms(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* Writes the message into f->err and answers r (a -errno), so failures are one line. */
__attribute__((format(printf, 3, 4))) static int fail(struct redis_fixture *f, int r,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err, sizeof(f->err), fmt, ap);
    va_end(ap);
    return r;
}

static int log_path(const struct redis_fixture *f, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", f->dir, REDIS_FIXTURE_LOG_NAME);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static off_t log_size(const struct redis_fixture *f)
{
    char path[sizeof(f->dir) + 16];
    struct stat st;
    if (log_path(f, path, sizeof(path)) < 0 || stat(path, &st) < 0)
        return 0;
    return st.st_size;
}

/* The log written since offset `from` (at most its last tail_max - 1 bytes) into tail. */
static void log_since(const struct redis_fixture *f, off_t from, char *tail, size_t tail_max)
{
    char path[sizeof(f->dir) + 16];
    tail[0] = '\0';
    if (log_path(f, path, sizeof(path)) < 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    if (end > from + (off_t)tail_max - 1)
        from = end - (off_t)tail_max + 1;
    ssize_t n = end > from ? pread(fd, tail, tail_max - 1, from) : 0;
    tail[n > 0 ? n : 0] = '\0';
    close(fd);
}

/* f->err = what, then the end of what redis-server logged since offset from. */
static int fail_with_log(struct redis_fixture *f, int r, off_t from, const char *what)
{
    char tail[REDIS_FIXTURE_LOG_TAIL_BYTES + 1];
    log_since(f, from, tail, sizeof(tail));
    return fail(f, r, "%s; %s: %s", what, REDIS_FIXTURE_LOG_NAME, tail[0] ? tail : "(empty)");
}

/* The binary: $REDIS_SERVER_BIN (a path, or a name looked up in PATH), else redis-server. */
static int find_server(struct redis_fixture *f, char *buf, size_t len)
{
    const char *name = getenv("REDIS_SERVER_BIN");
    bool from_env = name && *name;
    if (!from_env)
        name = REDIS_FIXTURE_DEFAULT_BIN;
    if (strchr(name, '/')) {
        if (access(name, X_OK) < 0)
            return fail(f, -errno, "REDIS_SERVER_BIN=%s: %s", name, strerror(errno));
        if (snprintf(buf, len, "%s", name) >= (int)len)
            return fail(f, -ENAMETOOLONG, "REDIS_SERVER_BIN=%s: path too long", name);
        return 0;
    }
    const char *path = getenv("PATH");
    for (const char *p = path ? path : ""; *p;) {
        size_t dir_len = strcspn(p, ":");
        int n = snprintf(buf, len, "%.*s/%s", (int)dir_len, p, name);
        if (dir_len > 0 && n > 0 && (size_t)n < len && access(buf, X_OK) == 0)
            return 0;
        p += dir_len + (p[dir_len] == ':');
    }
    return fail(f, -ENOENT,
                "%s%s not found in PATH: install redis-server (scripts/deps.sh --test) or set "
                "REDIS_SERVER_BIN to its path",
                from_env ? "REDIS_SERVER_BIN=" : "", name);
}

/* A port the kernel just gave out on 127.0.0.1: bind to 0, read it, close. */
static int free_port(struct redis_fixture *f, int *ret_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(f, -errno, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int r = -errno;
        close(fd);
        return fail(f, r, "a free port on 127.0.0.1: %s", strerror(-r));
    }
    close(fd);
    *ret_port = ntohs(a.sin_port);
    return 0;
}

static int make_dir(struct redis_fixture *f)
{
    const char *tmp = getenv("TMPDIR");
    char templ[sizeof(f->dir)];
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(templ, sizeof(templ), "%s/agentd-redis-XXXXXX", tmp) >= (int)sizeof(templ))
        return fail(f, -ENAMETOOLONG, "TMPDIR=%s: path too long", tmp);
    if (!mkdtemp(templ))
        return fail(f, -errno, "mkdtemp %s: %s", templ, strerror(errno));
    /* redis-server changes into --dir before it opens --logfile: both must be absolute. */
    char abs[PATH_MAX];
    int r = realpath(templ, abs) ? 0 : -errno;
    if (r == 0 && snprintf(f->dir, sizeof(f->dir), "%s", abs) >= (int)sizeof(f->dir))
        r = -ENAMETOOLONG;
    if (r < 0) {
        f->dir[0] = '\0';
        rmdir(templ);
        return fail(f, r, "temp dir %s: %s", templ, strerror(-r));
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

/* Removes the temp dir (unless AGENTD_KEEP_TEST_DIRS is set): 0 or -errno. */
static int remove_dir(struct redis_fixture *f)
{
    if (!f->dir[0])
        return 0;
    if (!getenv("AGENTD_KEEP_TEST_DIRS") && nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 &&
        errno != ENOENT)
        return -errno;
    f->dir[0] = '\0';
    return 0;
}

/* Waits up to timeout_ms (< 0: for ever) for pid to end and reaps it: 0, or -ETIMEDOUT. A pid
   that is no longer our child (reaped elsewhere) counts as ended. */
static int reap(pid_t pid, int timeout_ms, int *ret_status)
{
    int64_t until = now_ms() + timeout_ms;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, timeout_ms < 0 ? 0 : WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            break;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r == 0) {
            if (now_ms() >= until)
                return -ETIMEDOUT;
            sleep_ms(REDIS_FIXTURE_POLL_MS);
        }
    }
    if (ret_status)
        *ret_status = st;
    return 0;
}

static void kill_and_reap(struct redis_fixture *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        reap(f->pid, -1, NULL);
        f->pid = 0;
    }
}

/* Forks and execs redis-server on f->port; f->pid is the child. */
static int spawn(struct redis_fixture *f, const char *bin)
{
    char port[16], logfile[sizeof(f->dir) + 16];
    snprintf(port, sizeof(port), "%d", f->port);
    int r = log_path(f, logfile, sizeof(logfile));
    if (r < 0)
        return fail(f, r, "%s/%s: path too long", f->dir, REDIS_FIXTURE_LOG_NAME);
    char *argv[] = {(char *)bin, "--port",       port,    "--bind", "127.0.0.1", "--save",
                    "",          "--appendonly", "no",    "--dir",  f->dir,      "--daemonize",
                    "no",        "--logfile",    logfile, NULL};
    pid_t parent = getpid();
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = fork();
    if (pid < 0)
        return fail(f, -errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The server must not outlive a test that crashes or fails an assertion before its
           teardown; if the parent is already gone, the signal would never come. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int log = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0)
            dup2(null, 0);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
        }
        /* Nothing of the test's (pipes to the runner, sockets) stays open in the server. */
        if (close_range(3, ~0U, 0) < 0)
            for (int fd = 3; fd < 1024; fd++)
                close(fd);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(bin, argv);
        dprintf(2, "redis_fixture: cannot execute %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    f->pid = pid;
    return 0;
}

/* 1: redis-server with process id pid answers PING on port; 0: nothing (or another) answers. */
static int answers(int port, pid_t pid)
{
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", port, timeval_ms(REDIS_FIXTURE_PING_TIMEOUT_MS));
    int ok = 0;
    if (!c || c->err || redisSetTimeout(c, timeval_ms(REDIS_FIXTURE_PING_TIMEOUT_MS)) != REDIS_OK)
        goto out;
    redisReply *pong = redisCommand(c, "PING");
    ok = pong && pong->type == REDIS_REPLY_STATUS && strcmp(pong->str, "PONG") == 0;
    if (pong)
        freeReplyObject(pong);
    if (!ok)
        goto out;
    /* A server that was already on the port would answer too: it must be the one we started. */
    redisReply *info = redisCommand(c, "INFO server");
    const char *id =
        info && info->type == REDIS_REPLY_STRING ? strstr(info->str, "\nprocess_id:") : NULL;
    ok = id && strtol(id + strlen("\nprocess_id:"), NULL, 10) == (long)pid;
    if (info)
        freeReplyObject(info);
out:
    if (c)
        redisFree(c);
    return ok;
}

/* Starts redis-server on f->port and waits until it answers. -EADDRINUSE when the port was
   taken (the server is then gone); on any failure no server is left running. */
static int launch(struct redis_fixture *f, const char *bin)
{
    off_t log_from = log_size(f);
    int r = spawn(f, bin);
    if (r < 0)
        return r;
    int64_t until = now_ms() + REDIS_FIXTURE_START_TIMEOUT_MS;
    for (;;) {
        int st = 0;
        pid_t w = waitpid(f->pid, &st, WNOHANG);
        /* ECHILD: reaped behind our back (SIGCHLD ignored); kill(0) tells whether it lives. */
        if (w == f->pid || (w < 0 && errno == ECHILD && kill(f->pid, 0) < 0)) {
            char what[sizeof(f->err)], log[2048];
            f->pid = 0;
            log_since(f, log_from, log, sizeof(log));
            if (strstr(log, REDIS_FIXTURE_ADDR_IN_USE))
                return fail(f, -EADDRINUSE, "port %d is taken", f->port);
            snprintf(what, sizeof(what), "%s exited (%s %d) before answering PING", bin,
                     WIFSIGNALED(st) ? "signal" : "status",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            return fail_with_log(f, -EIO, log_from, what);
        }
        if (answers(f->port, f->pid))
            return 0;
        if (now_ms() >= until) {
            kill_and_reap(f);
            return fail_with_log(f, -ETIMEDOUT, log_from,
                                 "redis-server did not answer PING within 5 s");
        }
        sleep_ms(REDIS_FIXTURE_POLL_MS);
    }
}

static void set_url(struct redis_fixture *f)
{
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d/0", f->port);
}

/* Stop, kill and restart reap the server: only the process that started it can. */
static int check_owner(struct redis_fixture *f, const char *what)
{
    if (f->owner > 0 && f->owner != getpid())
        return fail(f, -ECHILD, "%s: redis-server was started by process %d, not this one (%d)",
                    what, (int)f->owner, (int)getpid());
    return 0;
}

int redis_fixture_start(struct redis_fixture *f)
{
    char bin[PATH_MAX];
    memset(f, 0, sizeof(*f));
    f->owner = getpid();
    int r = find_server(f, bin, sizeof(bin));
    if (r < 0 || (r = make_dir(f)) < 0)
        return r;
    for (int attempt = 0; attempt < REDIS_FIXTURE_PORT_ATTEMPTS; attempt++) {
        if ((r = free_port(f, &f->port)) < 0)
            break;
        set_url(f);
        r = launch(f, bin);
        if (r != -EADDRINUSE)
            break;
    }
    if (r == -EADDRINUSE)
        fail(f, r, "every port tried was taken before redis-server could listen (%d tries)",
             REDIS_FIXTURE_PORT_ATTEMPTS);
    if (r < 0)
        remove_dir(f); /* the first failure is the one to report */
    return r;
}

int redis_fixture_stop(struct redis_fixture *f)
{
    int r = check_owner(f, "redis_fixture_stop");
    if (r < 0)
        return r;
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        kill(f->pid, SIGCONT); /* a paused server would never see the SIGTERM */
        if (reap(f->pid, REDIS_FIXTURE_STOP_TIMEOUT_MS, NULL) < 0)
            kill_and_reap(f);
        f->pid = 0;
    }
    char dir[sizeof(f->dir)];
    memcpy(dir, f->dir, sizeof(dir));
    if ((r = remove_dir(f)) < 0)
        return fail(f, r, "removing %s: %s", dir, strerror(-r));
    return 0;
}

int redis_fixture_kill(struct redis_fixture *f)
{
    int r = check_owner(f, "redis_fixture_kill");
    if (r < 0)
        return r;
    kill_and_reap(f);
    return 0;
}

int redis_fixture_restart(struct redis_fixture *f)
{
    char bin[PATH_MAX];
    int r = check_owner(f, "redis_fixture_restart");
    if (r < 0)
        return r;
    if (f->pid > 0)
        return fail(f, -EALREADY, "redis-server (pid %d) is running", (int)f->pid);
    if (!f->dir[0] || f->port <= 0)
        return fail(f, -ENOENT, "redis_fixture_restart: the fixture was stopped or never started");
    if ((r = find_server(f, bin, sizeof(bin))) < 0)
        return r;
    /* The port was ours a moment ago, but anything may have taken it since (even a client's
       ephemeral source port): wait for it a while rather than move. */
    int64_t until = now_ms() + REDIS_FIXTURE_RESTART_TIMEOUT_MS;
    while ((r = launch(f, bin)) == -EADDRINUSE && now_ms() < until)
        sleep_ms(100);
    if (r == -EADDRINUSE)
        fail(f, r, "port %d is still taken after %d ms", f->port, REDIS_FIXTURE_RESTART_TIMEOUT_MS);
    return r;
}

/* The state letter of /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), or 0. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* the command name may hold anything */
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

static int send_signal(struct redis_fixture *f, int sig, const char *what)
{
    if (f->pid <= 0)
        return fail(f, -ESRCH, "%s: redis-server is not running", what);
    if (kill(f->pid, sig) < 0)
        return fail(f, -errno, "%s: kill %d: %s", what, (int)f->pid, strerror(errno));
    return 0;
}

int redis_fixture_pause(struct redis_fixture *f)
{
    int r = send_signal(f, SIGSTOP, "redis_fixture_pause");
    if (r < 0)
        return r;
    /* The signal is asynchronous: return once the server has really stopped. */
    int64_t until = now_ms() + REDIS_FIXTURE_PAUSE_TIMEOUT_MS;
    while (proc_state(f->pid) != 'T') {
        if (now_ms() >= until)
            return fail(f, -ETIMEDOUT, "redis_fixture_pause: pid %d did not stop", (int)f->pid);
        sleep_ms(1);
    }
    return 0;
}

int redis_fixture_resume(struct redis_fixture *f)
{
    return send_signal(f, SIGCONT, "redis_fixture_resume");
}

redisContext *redis_fixture_connect(const struct redis_fixture *f)
{
    struct timeval tv = timeval_ms(REDIS_FIXTURE_CONNECT_TIMEOUT_MS);
    redisContext *c = redisConnectWithTimeout("127.0.0.1", f->port, tv);
    if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK)
        return c;
    if (c)
        redisFree(c);
    return NULL;
}
