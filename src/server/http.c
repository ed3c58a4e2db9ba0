/*
 * http.c — the libmicrohttpd front (see server.h): the daemon and its
 * accepting thread, the connection lifecycle, request ids, the reply helpers
 * and the suspended connections. Each route lives in a file of its own
 * (route_*.c, declared in http.h).
 *
 * Per request the access handler is called several times: once with the
 * headers (route and method are checked here, then the route's own checks
 * run, so bad requests are refused before any body is read), then with body
 * chunks (handed to the route), then once more with no data: the route
 * answers, or (POST /v1/agent) suspends the connection while a worker runs
 * it. When the run ends, the worker resumes the connection and the handler
 * is called again to queue the run's answer.
 */
#include "agentd/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "agentd/app.h"
#include "agentd/clock.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/peer_limit.h"
#include "agentd/request.h"
#include "agentd/server.h"

/* Seconds of inactivity allowed while a request's body is read or its answer written. Waiting
   for or reading headers (a new connection, or a kept-alive one between requests) gets the
   shorter AGENTD_HEADER_TIMEOUT_MS, so a client trickling headers cannot hold a slot for long. */
#define SERVER_IDLE_TIMEOUT_S    60
#define SERVER_EXTRA_CONNECTIONS 1024
#define SERVER_LISTEN_BACKLOG    4096
/* Per-connection pool for the request headers and MHD's buffers (bodies are copied out as they
   arrive). libmicrohttpd zeroes the whole pool between the requests of a kept-alive connection,
   so every byte of it is resident for as long as the connection lives, and thousands wait
   suspended at once: 8 KiB (request headers up to about 7 KiB; more is answered 431 by
   libmicrohttpd, docs/API.md) is 8 KiB of RSS per run in flight less than 16 KiB
   (bench/README.md). */
#define SERVER_CONNECTION_MEMORY_BYTES (8 * 1024)
/* Upper bound on the HTTP threads (one per CPU the process may run on). */
#define SERVER_MAX_THREADS 64

struct server {
    struct app *app;
    struct auth *auth;                      /* bearer tokens (main's); NULL = no authentication */
    const struct http_route *const *routes; /* NULL-terminated */
    struct MHD_Daemon *mhd;
    int port;
    /* Our own listening socket and the thread that accepts on it (see acceptor). */
    int listen_fd;
    pthread_t acceptor;
    bool accepting;
    atomic_bool stop_accepting;
    pthread_mutex_t lock; /* protects the suspended list */
    struct conn *suspended;
    size_t n_suspended;
    struct peer_limit *peers; /* connections per client address; NULL = no limit */
    atomic_size_t n_requests; /* requests between their first header and their completion */
};

/* ---- request ids ---------------------------------------------------------------- */

static uint64_t next_random(void)
{
    static _Thread_local uint64_t state;
    if (state == 0)
        state =
            (uint64_t)clock_wall_ms() ^ ((uint64_t)(uintptr_t)&state << 16) ^ 0x9E3779B97F4A7C15ULL;
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Writes the n low hex digits of v (lower case) to out. */
static void put_hex(char *out, uint64_t v, int n)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = n - 1; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 0xf];
}

/* The client's X-Request-Id when valid, else "req_" and 24 random hex digits (on every request:
   written without printf). */
static void set_request_id(struct conn *c)
{
    const char *given = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "X-Request-Id");
    if (given && request_id_valid(given)) {
        size_t n = strnlen(given, sizeof(c->request_id) - 1);
        memcpy(c->request_id, given, n);
        c->request_id[n] = '\0';
        return;
    }
    memcpy(c->request_id, "req_", 4);
    put_hex(c->request_id + 4, next_random(), 16);
    put_hex(c->request_id + 20, next_random(), 8);
    c->request_id[28] = '\0';
}

/* ---- answers ------------------------------------------------------------------------ */

/* ---- answers before the body ------------------------------------------------------ */

/* Closing a connection while the client is still sending makes the kernel reset it, and the
   reset can destroy an answer the client has not read yet. So an answer decided before the
   request body has been read (401, 404, 413, 415, 429, ...) is held while the body is read and
   dropped, and goes out at its end -- up to this many bytes, after which it goes out at once and
   the connection is closed. */
static size_t body_discard_max(size_t cap)
{
    size_t floor = 16u * 1024 * 1024;
    return cap > SIZE_MAX / 4 ? SIZE_MAX : (cap * 4 > floor ? cap * 4 : floor);
}

/* Whether an answer decided now should wait for the request body. Not when there is none, nor
   for a client waiting for 100-continue (it has sent nothing), nor for a body announced larger
   than we are willing to drain. */
static bool drain_first(struct conn *c)
{
    struct MHD_Connection *m = c->mhd;
    const char *expect = MHD_lookup_connection_value(m, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    if (expect && strcasecmp(expect, "100-continue") == 0)
        return false;
    if (MHD_lookup_connection_value(m, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return true;
    const char *cl =
        MHD_lookup_connection_value(m, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return false;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno == 0 && *end == '\0' && n > 0 &&
           n <= body_discard_max(c->srv->app->cfg.max_body_bytes);
}

static enum MHD_Result send_deferred(struct conn *c)
{
    struct MHD_Response *r = c->deferred;
    c->deferred = NULL;
    enum MHD_Result ret = MHD_queue_response(c->mhd, c->deferred_status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Adds the common headers to r (len body bytes) and queues it; or holds it (see drain_first). */
static enum MHD_Result queue_reply(struct conn *c, unsigned status, struct MHD_Response *r,
                                   size_t len, int64_t retry_after_ms, const char *hdr_name,
                                   const char *hdr_value, const char *content_type)
{
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, "X-Request-Id", c->request_id);
    if (retry_after_ms > 0) {
        char secs[24];
        snprintf(secs, sizeof(secs), "%" PRId64, (retry_after_ms + 999) / 1000);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    if (hdr_name)
        MHD_add_response_header(r, hdr_name, hdr_value);
    if (c->defer) {
        c->deferred = r;
        c->deferred_status = status;
        c->answered = true;
        c->status = status;
        c->bytes = len;
        return MHD_YES;
    }
    enum MHD_Result ret = MHD_queue_response(c->mhd, status, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) {
        c->answered = true;
        c->status = status;
        c->bytes = len;
    }
    return ret;
}

/* Queues body (owned, freed here) with the common headers; or holds it (see drain_first). */
enum MHD_Result http_reply_as(struct conn *c, unsigned status, char *body, int64_t retry_after_ms,
                              const char *hdr_name, const char *hdr_value, const char *content_type)
{
    if (!body)
        body = strdup("{\"error\":{\"type\":\"internal_error\",\"message\":\"out of memory\"}}");
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    return queue_reply(c, status, r, len, retry_after_ms, hdr_name, hdr_value, content_type);
}

enum MHD_Result http_reply_static(struct conn *c, unsigned status, const char *body, size_t len)
{
    /* MHD only reads a persistent buffer (the const is cast away for its older signature). */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    return queue_reply(c, status, r, len, 0, NULL, NULL, HTTP_JSON_CONTENT_TYPE);
}

enum MHD_Result http_reply(struct conn *c, unsigned status, char *body, int64_t retry_after_ms,
                           const char *allow)
{
    return http_reply_as(c, status, body, retry_after_ms, allow ? MHD_HTTP_HEADER_ALLOW : NULL,
                         allow, HTTP_JSON_CONTENT_TYPE);
}

static enum MHD_Result reply_error_v(struct conn *c, unsigned status, const char *type,
                                     int64_t retry_after_ms, const char *allow, const char *fmt,
                                     va_list ap) __attribute__((format(printf, 6, 0)));
static enum MHD_Result reply_error_v(struct conn *c, unsigned status, const char *type,
                                     int64_t retry_after_ms, const char *allow, const char *fmt,
                                     va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return http_reply(c, status, request_error_body(type, msg, c->request_id, 0), retry_after_ms,
                      allow);
}

enum MHD_Result http_reply_error(struct conn *c, unsigned status, const char *type,
                                 int64_t retry_after_ms, const char *allow, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = reply_error_v(c, status, type, retry_after_ms, allow, fmt, ap);
    va_end(ap);
    return ret;
}

/* A body over its cap is only found out while it arrives: its answer, too, waits for the end. */
enum MHD_Result http_reply_error_after_body(struct conn *c, size_t dropped, unsigned status,
                                            const char *type, int64_t retry_after_ms,
                                            const char *fmt, ...)
{
    va_list ap;
    c->discarded += dropped;
    c->defer = true;
    va_start(ap, fmt);
    enum MHD_Result ret = reply_error_v(c, status, type, retry_after_ms, NULL, fmt, ap);
    va_end(ap);
    c->defer = false;
    return ret;
}

/* ---- what the route files may read ---------------------------------------------------- */

struct app *http_conn_app(const struct conn *c)
{
    return c->srv->app;
}

struct auth *http_conn_auth(const struct conn *c)
{
    return c->srv->auth;
}

/* ---- suspended requests --------------------------------------------------------------- */

static void track_suspended(struct conn *c)
{
    struct server *s = c->srv;
    pthread_mutex_lock(&s->lock);
    c->suspended = true;
    c->prev = NULL;
    c->next = s->suspended;
    if (s->suspended)
        s->suspended->prev = c;
    s->suspended = c;
    s->n_suspended++;
    pthread_mutex_unlock(&s->lock);
}

/* Removes c from the list; false if it was not there (someone else resumed it). */
bool http_untrack_suspended(struct conn *c)
{
    struct server *s = c->srv;
    pthread_mutex_lock(&s->lock);
    bool was = c->suspended;
    if (was) {
        if (c->prev)
            c->prev->next = c->next;
        else
            s->suspended = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->suspended = false;
        s->n_suspended--;
    }
    pthread_mutex_unlock(&s->lock);
    return was;
}

void http_suspend(struct conn *c)
{
    c->resume_due = true;
    MHD_suspend_connection(c->mhd);
    track_suspended(c);
}

void http_resume_if_suspended(struct conn *c)
{
    if (http_untrack_suspended(c))
        MHD_resume_connection(c->mhd);
}

void http_suspend_writer(struct conn *c)
{
    MHD_suspend_connection(c->mhd);
    track_suspended(c);
}

enum MHD_Result http_reply_response(struct conn *c, unsigned status, struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Request-Id", c->request_id);
    enum MHD_Result ret = MHD_queue_response(c->mhd, status, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) {
        c->answered = true;
        c->status = status;
    }
    return ret;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static const struct http_route *find_route(const struct server *s, const char *url)
{
    for (const struct http_route *const *r = s->routes; *r; r++)
        if (strcmp(url, (*r)->path) == 0)
            return *r;
    return NULL;
}

static const char *route_path(const struct http_route *r)
{
    return r ? r->path : "other";
}

/* Whether method is one of the route's Allow list ("GET, HEAD"). */
static bool method_allowed(const struct http_route *r, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = r->allow; *p;) {
        size_t len = strcspn(p, ", ");
        if (len == n && strncmp(p, method, n) == 0)
            return true;
        p += len;
        p += strspn(p, ", ");
    }
    return false;
}

static enum MHD_Result first_call(struct conn *c, const char *url, const char *method)
{
    const struct http_route *r = find_route(c->srv, url);
    if (!r)
        return http_reply_error(c, 404, "not_found", 0, NULL, "no such endpoint: %.128s", url);
    c->route = r;
    if (!method_allowed(r, method))
        return http_reply_error(c, 405, "method_not_allowed", 0, r->allow,
                                "%s is not allowed on %s; use %s", method, r->path, r->allow);
    return r->headers ? r->headers(c) : MHD_YES;
}

/* libmicrohttpd counts timeouts in whole seconds: round up. */
static unsigned header_timeout_s(const struct server *s)
{
    return (unsigned)((s->app->cfg.header_timeout_ms + 999) / 1000);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct server *s = cls;
    struct conn *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return MHD_NO;
        c->srv = s;
        c->mhd = mc;
        atomic_fetch_add(&s->n_requests, 1);
        c->start_ms = clock_now_ms();
        size_t mlen = strnlen(method, sizeof(c->method) - 1);
        memcpy(c->method, method, mlen); /* calloc'ed: stays terminated */
        set_request_id(c);
        *con_cls = c;
        /* The headers are in: the request's own, longer inactivity allowance from here on. */
        MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned)SERVER_IDLE_TIMEOUT_S);
        c->defer = drain_first(c);
        enum MHD_Result ret = first_call(c, url, method);
        c->defer = false;
        return ret;
    }
    if (c->resume_due) {
        c->resume_due = false;
        return c->route->resumed(c);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->answered) { /* refused already: drop the rest */
            c->discarded += n;
            if (c->deferred && c->discarded > body_discard_max(c->srv->app->cfg.max_body_bytes))
                return send_deferred(c);
            return MHD_YES;
        }
        return c->route->body ? c->route->body(c, upload_data, n) : MHD_YES;
    }
    if (c->deferred)
        return send_deferred(c);
    if (c->answered)
        return MHD_YES;
    if (c->route && c->route->complete)
        return c->route->complete(c);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    struct conn *c = *con_cls;
    if (!c)
        return;
    *con_cls = NULL;
    /* Back to waiting for headers (keep-alive). */
    MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, header_timeout_s(c->srv));
    int64_t duration_ms = clock_now_ms() - c->start_ms;
    metrics_http_request(c->route ? c->route->metric : METRICS_ROUTE_OTHER,
                         metrics_method_from_string(c->method), (int)c->status,
                         (double)duration_ms / 1000.0);
    log_info("http request", LF_S("request_id", c->request_id),
             LF_SO("trace_id", c->trace_id[0] ? c->trace_id : NULL), LF_S("method", c->method),
             LF_S("path", route_path(c->route)), LF_I("status", c->status), LF_I("bytes", c->bytes),
             LF_I("duration_ms", duration_ms),
             LF_S("reason",
                  toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL : "connection closed early"));
    if (c->deferred)
        MHD_destroy_response(c->deferred);
    if (c->route && c->route->release)
        c->route->release(c);
    atomic_fetch_sub(&c->srv->n_requests, 1);
    free(c);
}

/* A connection started or closed: the slot its address holds goes with it (peer_limit.h). */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct server *s = cls;
    if (!s->peers)
        return;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        /* Before this connection's socket can be closed: its number still names it. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? peer_limit_adopt(s->peers, ci->connect_fd) : NULL;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        peer_limit_drop(s->peers, *socket_context);
        *socket_context = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http server", LF_S("reason", msg));
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static int resolve(const char *host, int port, struct sockaddr_storage *ret, char *err,
                   size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portbuf[8];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    int r = getaddrinfo(host, portbuf, &hints, &res);
    if (r != 0 || !res) {
        snprintf(err, errlen, "AGENTD_LISTEN: cannot resolve '%s': %s", host, gai_strerror(r));
        return -EINVAL;
    }
    memset(ret, 0, sizeof(*ret));
    memcpy(ret, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* ---- accepting ----------------------------------------------------------------- */

/* agentd accepts connections itself and hands them to libmicrohttpd with MHD_add_connection.
   MHD_quiesce_daemon, the library's way to stop accepting, races with the library's own epoll
   thread over the listening socket and can abort the process (an open libmicrohttpd defect);
   owning the socket makes "stop accepting" a matter of ending this thread and closing it. */
static void *acceptor(void *arg)
{
    struct server *s = arg;
    bool starved = false; /* out of descriptors or memory: logged once until accept works again */
    while (!atomic_load(&s->stop_accepting)) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd =
            accept4(s->listen_fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (!starved)
                    log_warn("cannot accept connections; retrying every 20 ms",
                             LF_S("reason", strerror(errno)));
                starved = true;
                nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000L}, NULL);
            }
            continue; /* EINTR, ECONNABORTED, ...; EINVAL after shutdown ends the loop */
        }
        if (starved)
            log_info("accepting connections again");
        starved = false;
        if (s->peers && !peer_limit_take(s->peers, fd, (struct sockaddr *)&peer)) {
            /* This address holds AGENTD_MAX_CONNECTIONS_PER_IP connections already. */
            close(fd);
            continue;
        }
        /* At the connection limit MHD refuses the socket and closes it. */
        MHD_add_connection(s->mhd, fd, (struct sockaddr *)&peer, plen);
    }
    return NULL;
}

static int open_listener(const struct sockaddr_storage *addr, char *err, size_t errlen)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "AGENTD_LISTEN: socket: %s", strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->ss_family == AF_INET6) /* "[::]" serves IPv4 too, whatever the host's default */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)addr, len) < 0 || listen(fd, SERVER_LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "AGENTD_LISTEN: cannot listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    if (a.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
    return ntohs(((struct sockaddr_in *)&a)->sin_port);
}

/* One HTTP thread per CPU this process may run on (its affinity mask, which container CPU sets
   narrow), so the front can use every core; at least 1, at most SERVER_MAX_THREADS. */
static unsigned server_threads(void)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    return n > SERVER_MAX_THREADS ? SERVER_MAX_THREADS : (unsigned)n;
}

struct server *server_start(struct app *app, const struct http_route *const *routes,
                            struct auth *auth, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    if (resolve(app->cfg.listen_host, app->cfg.listen_port, &addr, err, errlen) < 0)
        return NULL;
    struct server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->app = app;
    s->auth = auth;
    s->routes = routes;
    if (app->cfg.max_connections_per_ip > 0 &&
        !(s->peers = peer_limit_new((unsigned)app->cfg.max_connections_per_ip))) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->listen_fd = open_listener(&addr, err, errlen);
    if (s->listen_fd < 0) {
        snprintf(err + strlen(err), errlen - strlen(err), " (%s:%d)", app->cfg.listen_host,
                 app->cfg.listen_port);
        goto fail;
    }
    s->port = bound_port(s->listen_fd);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG;
    unsigned pool = server_threads();
    /* The logger option must come first so MHD never writes to stderr by itself. */
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(app->cfg.max_inflight + SERVER_EXTRA_CONNECTIONS),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVER_CONNECTION_MEMORY_BYTES,
        MHD_OPTION_CONNECTION_TIMEOUT, header_timeout_s(s), MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot start the HTTP server (libmicrohttpd)");
        goto fail;
    }
    if (pthread_create(&s->acceptor, NULL, acceptor, s) != 0) {
        snprintf(err, errlen, "cannot start the accepting thread");
        goto fail;
    }
    s->accepting = true;
    return s;
fail:
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    peer_limit_free(s->peers);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

int server_port(const struct server *s)
{
    return s->port;
}

void server_quiesce(struct server *s)
{
    if (!s->accepting)
        return;
    /* shutdown() wakes the blocked accept4() (EINVAL); closing the socket then refuses new
       connections. */
    atomic_store(&s->stop_accepting, true);
    shutdown(s->listen_fd, SHUT_RDWR);
    pthread_join(s->acceptor, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
    s->accepting = false;
}

size_t server_requests_in_progress(struct server *s)
{
    return atomic_load(&s->n_requests);
}

size_t server_suspended_count(struct server *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->n_suspended;
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t server_abort_suspended(struct server *s)
{
    size_t n = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        struct conn *c = s->suspended;
        if (c) {
            s->suspended = c->next;
            if (c->next)
                c->next->prev = NULL;
            c->suspended = false;
            s->n_suspended--;
        }
        pthread_mutex_unlock(&s->lock);
        if (!c)
            return n;
        /* The worker that owned the run is stopped: answer in its place. */
        c->route->abort(c);
        MHD_resume_connection(c->mhd);
        n++;
    }
}

struct server *server_stop(struct server *s)
{
    if (!s)
        return NULL;
    server_quiesce(s);
    /* libmicrohttpd panics when stopped with a suspended connection. A streamed answer that was
       being written when shutdown answered the suspended ones may have suspended since (its
       queue ran dry): answer those too. */
    server_abort_suspended(s);
    MHD_stop_daemon(s->mhd);
    peer_limit_free(s->peers);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}
