/*
 * fake_main.c — entry point of fake_upstream: command line, listen socket,
 * signals, start/stop order.
 *
 * The listen socket is created here rather than by libmicrohttpd so that
 * port 0 works: the kernel picks a free port, we read it back with
 * getsockname(), announce it on stdout and (atomically) in --port-file, and
 * only then do test scripts start talking to us.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAIN_DEFAULT_LISTEN   "127.0.0.1:8081"
#define MAIN_LISTEN_BACKLOG   4096
#define MAIN_CONNS_PER_THREAD 4000u
#define MAIN_RESERVED_FDS     64u

struct options {
    const char *listen;
    const char *port_file;
    const char *api_key;
    long delay_ms;
    long threads;
    bool quiet;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fake_upstream [--listen HOST:PORT] [--port-file FILE] [--api-key KEY]\n"
            "                     [--delay-ms N] [--threads N] [--quiet]\n"
            "\n"
            "Plays the Anthropic Messages API, Open-Meteo and SearXNG on one port, with\n"
            "fault injection and a request log under /_admin/ (see tests/fake/README.md).\n"
            "\n"
            "  --listen HOST:PORT  address to serve (default " MAIN_DEFAULT_LISTEN
            "; port 0 = any free port)\n"
            "  --port-file FILE    write the bound port number to FILE (atomically)\n"
            "  --api-key KEY       require x-api-key == KEY on /v1/messages and /v1/models\n"
            "                      (default: any non-empty key)\n"
            "  --delay-ms N        delay every /v1/messages answer by N ms (0..%d)\n"
            "  --threads N         HTTP worker threads (1..64, default: CPUs clamped to 2..4)\n"
            "  --quiet             no per-request log on stderr\n",
            FAKE_MAX_DELAY_MS);
}

/* Returns the value of --name VALUE / --name=VALUE at argv[*i], advancing *i; NULL if not it. */
static const char *option_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.listen = MAIN_DEFAULT_LISTEN};
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(argv[i], "--quiet") == 0) {
            o->quiet = true;
        } else if ((v = option_value(argc, argv, &i, "--listen", &missing))) {
            o->listen = v;
        } else if ((v = option_value(argc, argv, &i, "--port-file", &missing))) {
            o->port_file = v;
        } else if ((v = option_value(argc, argv, &i, "--api-key", &missing))) {
            o->api_key = v;
        } else if ((v = option_value(argc, argv, &i, "--delay-ms", &missing))) {
            if (fake_parse_long(v, 0, FAKE_MAX_DELAY_MS, &o->delay_ms) < 0) {
                fprintf(stderr, "fake_upstream: --delay-ms: expected 0..%d, got '%s'\n",
                        FAKE_MAX_DELAY_MS, v);
                return -EINVAL;
            }
        } else if ((v = option_value(argc, argv, &i, "--threads", &missing))) {
            if (fake_parse_long(v, 1, 64, &o->threads) < 0) {
                fprintf(stderr, "fake_upstream: --threads: expected 1..64, got '%s'\n", v);
                return -EINVAL;
            }
        } else {
            fprintf(stderr, "fake_upstream: %s '%s'\n",
                    missing ? "missing value for" : "unknown option", argv[i]);
            usage(stderr);
            return -EINVAL;
        }
    }
    if (o->api_key && !*o->api_key) {
        fprintf(stderr, "fake_upstream: --api-key: must not be empty\n");
        return -EINVAL;
    }
    return 0;
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port strings. */
static int split_listen(const char *listen, char *host, size_t host_bytes, char *port,
                        size_t port_bytes)
{
    const char *colon = strrchr(listen, ':');
    long p;
    if (!colon || fake_parse_long(colon + 1, 0, 65535, &p) < 0)
        return -EINVAL;
    const char *h = listen;
    size_t hl = (size_t)(colon - listen);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_bytes)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, port_bytes, "%ld", p);
    return 0;
}

/* Binds and listens on HOST:PORT; returns the socket or -errno. */
static int open_listener(const char *host, const char *port, bool *ret_ipv6, unsigned *ret_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "fake_upstream: --listen %s: %s\n", host, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0) {
            fd = -errno;
            continue;
        }
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(s, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s, MAIN_LISTEN_BACKLOG) < 0) {
            fd = -errno;
            close(s);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(s, (struct sockaddr *)&ss, &sl) < 0) {
            fd = -errno;
            close(s);
            continue;
        }
        *ret_ipv6 = ss.ss_family == AF_INET6;
        *ret_port = ntohs(*ret_ipv6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                    : ((struct sockaddr_in *)&ss)->sin_port);
        fd = s;
        break;
    }
    freeaddrinfo(res);
    return fd;
}

/* Writes the port to path via a temporary file + rename, so readers never see half of it. */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    int ok = fprintf(f, "%u\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) < 0) {
        int err = errno ? errno : EIO;
        unlink(tmp);
        return -err;
    }
    return 0;
}

/* Thousands of concurrent connections need more descriptors than the usual soft limit. */
static unsigned raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 1000000 ? 1000000u : (unsigned)rl.rlim_cur;
}

int main(int argc, char **argv)
{
    struct options o;
    char host[256], port[16];
    if (parse_options(argc, argv, &o) < 0)
        return 2;
    if (split_listen(o.listen, host, sizeof(host), port, sizeof(port)) < 0) {
        fprintf(stderr, "fake_upstream: --listen: expected HOST:PORT, got '%s'\n", o.listen);
        return 2;
    }
    fake_clock_init();
    unsigned nofile = raise_nofile();

    /* Block the stop signals before any thread exists, so only sigwait() sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool ipv6 = false;
    unsigned bound_port = 0;
    int fd = open_listener(host, port, &ipv6, &bound_port);
    if (fd < 0) {
        fprintf(stderr, "fake_upstream: cannot listen on %s: %s\n", o.listen, strerror(-fd));
        return 1;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = o.threads ? (unsigned)o.threads
                                 : (unsigned)(cpus < 2   ? 2
                                              : cpus > 4 ? 4
                                                         : cpus);
    unsigned limit = threads * MAIN_CONNS_PER_THREAD;
    if (nofile > MAIN_RESERVED_FDS * 2 && limit > nofile - MAIN_RESERVED_FDS)
        limit = nofile - MAIN_RESERVED_FDS;
    struct fake_config cfg = {.api_key = o.api_key,
                              .delay_ms = (uint32_t)o.delay_ms,
                              .threads = threads,
                              .connection_limit = limit,
                              .quiet = o.quiet};
    struct fake_server *server = NULL;
    int rc = fake_server_start(&cfg, fd, ipv6, &server);
    if (rc < 0) {
        fprintf(stderr, "fake_upstream: cannot start the HTTP server: %s\n", strerror(-rc));
        return 1;
    }
    bool brackets = strchr(host, ':') != NULL;
    printf("fake_upstream listening on %s%s%s:%u\n", brackets ? "[" : "", host, brackets ? "]" : "",
           bound_port);
    fflush(stdout);
    if (o.port_file && (rc = write_port_file(o.port_file, bound_port)) < 0) {
        fprintf(stderr, "fake_upstream: --port-file %s: %s\n", o.port_file, strerror(-rc));
        fake_server_stop(server);
        return 1;
    }

    int sig = 0;
    sigwait(&stop, &sig);
    if (!o.quiet)
        fprintf(stderr, "fake_upstream: signal %d, stopping\n", sig);
    fake_server_stop(server);
    return 0;
}
