/*
 * http.c — the libmicrohttpd front (see server.h).
 *
 * Per request the access handler is called several times: once with the
 * headers (route, method, content type, declared size and admission are
 * checked here, so bad requests are refused before any body is read), then
 * with body chunks (copied up to AGENTD_MAX_BODY_BYTES, whether the client
 * sent Content-Length or chunked), then once more with no data: the body is
 * validated, a run is created, the connection is suspended and the run handed
 * to a worker. When the run ends, the worker resumes the connection and the
 * handler is called again to queue the answer.
 */
#include "agentd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
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
#include "agentd/conversations.h"
#include "agentd/health.h"
#include "agentd/idempotency.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/spend.h"
#include "agentd/request.h"
#include "agentd/run.h"

#define JSON_CONTENT_TYPE "application/json; charset=utf-8"
/* Seconds a kept-alive connection may idle between requests. */
#define SERVER_IDLE_TIMEOUT_S    60
#define SERVER_EXTRA_CONNECTIONS 1024
#define SERVER_LISTEN_BACKLOG    4096
/* Per-connection pool for headers and MHD's buffers (bodies are copied out as they arrive):
   half the default, since thousands of connections wait suspended at once. */
#define SERVER_CONNECTION_MEMORY_BYTES (16 * 1024)

enum route { ROUTE_NONE = 0, ROUTE_AGENT, ROUTE_LIVE, ROUTE_READY, ROUTE_METRICS };

struct route_def {
    const char *path;
    enum route route;
    const char *allow; /* the Allow header */
};

static const struct route_def routes[] = {
    {"/v1/agent", ROUTE_AGENT, "POST"},
    {"/health/live", ROUTE_LIVE, "GET, HEAD"},
    {"/health/ready", ROUTE_READY, "GET, HEAD"},
    {"/metrics", ROUTE_METRICS, "GET, HEAD"},
};

struct conn;

struct server {
    struct app *app;
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
};

struct conn {
    struct server *srv;
    struct MHD_Connection *mhd;
    char request_id[129];
    enum route route;
    char method[8];
    int64_t start_ms;
    /* body */
    char *body;
    size_t len, alloc;
    bool too_large;
    bool answered; /* a response has been queued (or deferred) */
    /* An answer given before the body has been read waits for its end (see drain_first). */
    bool defer;
    struct MHD_Response *deferred;
    unsigned deferred_status;
    size_t discarded; /* body bytes read and dropped after the answer */
    /* run */
    struct run *run;
    char *idem_key; /* Idempotency-Key whose answer this request will store */
    bool suspended;
    bool counted; /* holds one unit of app->inflight */
    struct conn *prev, *next;
    /* for the access log */
    unsigned status;
    size_t bytes;
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

static void set_request_id(struct conn *c)
{
    const char *given = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "X-Request-Id");
    if (given && request_id_valid(given)) {
        snprintf(c->request_id, sizeof(c->request_id), "%s", given);
        return;
    }
    snprintf(c->request_id, sizeof(c->request_id), "req_%016" PRIx64 "%08" PRIx64, next_random(),
             (uint64_t)(next_random() & 0xffffffffULL));
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

/* Queues body (owned, freed here) with the common headers; or holds it (see drain_first). */
static enum MHD_Result reply_as(struct conn *c, unsigned status, char *body, int64_t retry_after_ms,
                                const char *hdr_name, const char *hdr_value,
                                const char *content_type)
{
    if (!body)
        body = strdup("{\"error\":{\"type\":\"internal_error\",\"message\":\"out of memory\"}}");
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
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

static enum MHD_Result reply(struct conn *c, unsigned status, char *body, int64_t retry_after_ms,
                             const char *allow)
{
    return reply_as(c, status, body, retry_after_ms, allow ? MHD_HTTP_HEADER_ALLOW : NULL, allow,
                    JSON_CONTENT_TYPE);
}

static enum MHD_Result reply_error(struct conn *c, unsigned status, const char *type,
                                   int64_t retry_after_ms, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result reply_error(struct conn *c, unsigned status, const char *type,
                                   int64_t retry_after_ms, const char *allow, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return reply(c, status, request_error_body(type, msg, c->request_id, 0), retry_after_ms, allow);
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
static bool untrack_suspended(struct conn *c)
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

/* Worker thread: the run has its answer; wake the connection. */
static void on_run_finished(struct run *run, void *arg)
{
    struct conn *c = arg;
    if (c->idem_key) {
        idem_complete(c->srv->app->idem, c->idem_key, run->http_status, run->body);
        free(c->idem_key);
        c->idem_key = NULL;
    }
    if (c->counted) {
        atomic_fetch_sub(&c->srv->app->inflight, 1);
        c->counted = false;
    }
    if (untrack_suspended(c))
        MHD_resume_connection(c->mhd);
}

/* ---- POST /v1/agent --------------------------------------------------------------------- */

/* Constant time in the token's length, so a wrong guess says nothing about how close it was. */
static bool token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
    unsigned char diff = given_len != want_len;
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned char)(want[i] ^ (i < given_len ? given[i] : 0));
    return diff == 0;
}

/* With AGENTD_AUTH_TOKENS set, a request needs "Authorization: Bearer <one of them>". */
static bool authorized(struct conn *c)
{
    const char *tokens = c->srv->app->cfg.auth_tokens;
    if (!tokens || !*tokens)
        return true;
    const char *h = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *given = h + 7;
    size_t given_len = strlen(given);
    bool ok = false;
    for (const char *p = tokens; *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && token_equal(given, given_len, p, len))
            ok = true;
        p += len;
        if (*p == ',')
            p++;
    }
    return ok;
}

static enum MHD_Result agent_headers(struct conn *c)
{
    struct app *app = c->srv->app;
    if (!authorized(c))
        return reply_as(
            c, 401,
            request_error_body("unauthorized",
                               "missing or wrong bearer token (Authorization: Bearer ...)",
                               c->request_id, 0),
            0, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer", JSON_CONTENT_TYPE);
    if (atomic_load(&app->draining))
        return reply_error(c, 503, "shutting_down", 1000, NULL,
                           "agentd is shutting down; retry on another replica");
    const char *ct = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Content-Type");
    if (!request_content_type_is_json(ct))
        return reply_error(c, 415, "unsupported_media_type", 0, NULL,
                           "Content-Type must be application/json, got '%.64s'", ct ? ct : "");
    const char *cl = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && *end == '\0' && n > app->cfg.max_body_bytes)
            return reply_error(c, 413, "payload_too_large", 0, NULL,
                               "request body of %llu bytes exceeds the limit of %zu bytes "
                               "(AGENTD_MAX_BODY_BYTES)",
                               n, app->cfg.max_body_bytes);
    }
    if (atomic_load(&app->inflight) >= app->cfg.max_inflight)
        return reply_error(c, 429, "overloaded", 1000, NULL,
                           "%d runs in flight (AGENTD_MAX_INFLIGHT); retry later",
                           app->cfg.max_inflight);
    int64_t budget_wait_ms = 0;
    if (!spend_allow(app->spend, clock_now_ms(), &budget_wait_ms)) {
        app_log_spend_transitions(app);
        return reply_error(c, 429, "budget_exceeded", budget_wait_ms, NULL,
                           "the hourly LLM budget (AGENTD_BUDGET_USD_PER_HOUR / "
                           "AGENTD_BUDGET_TOKENS_PER_HOUR) is spent; retry in %lld ms",
                           (long long)budget_wait_ms);
    }
    return MHD_YES;
}

static enum MHD_Result agent_body_chunk(struct conn *c, const char *data, size_t size)
{
    size_t cap = c->srv->app->cfg.max_body_bytes;
    if (c->too_large || size > cap - c->len) {
        /* Over the cap (chunked upload): stop storing; the 413 waits for the end of the body. */
        c->too_large = true;
        free(c->body);
        c->body = NULL;
        c->len = c->alloc = 0;
        c->discarded += size;
        c->defer = true;
        reply_error(c, 413, "payload_too_large", 0, NULL,
                    "request body exceeds the limit of %zu bytes (AGENTD_MAX_BODY_BYTES)", cap);
        c->defer = false;
        return MHD_YES;
    }
    if (c->len + size + 1 > c->alloc) {
        /* Grow geometrically up to the cap (+1 for a terminating NUL). */
        size_t want = c->alloc ? c->alloc : 4096;
        while (want < c->len + size + 1)
            want *= 2;
        if (want > cap + 1)
            want = cap + 1;
        char *p = realloc(c->body, want);
        if (!p)
            return MHD_NO;
        c->body = p;
        c->alloc = want;
    }
    memcpy(c->body + c->len, data, size);
    c->len += size;
    return MHD_YES;
}

/* Gives back what admission took when the run does not start. */
static void unadmit(struct conn *c)
{
    struct app *app = c->srv->app;
    if (c->counted) {
        atomic_fetch_sub(&app->inflight, 1);
        c->counted = false;
    }
    if (c->idem_key) {
        idem_abandon(app->idem, c->idem_key);
        free(c->idem_key);
        c->idem_key = NULL;
    }
}

/* Idempotency-Key: answers a replay, a duplicate in progress or a reused key here (*ret_answered),
   otherwise remembers the key so the run's answer is stored when it ends. */
static enum MHD_Result agent_idempotency(struct conn *c, bool *ret_answered)
{
    struct app *app = c->srv->app;
    const char *key = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Idempotency-Key");
    *ret_answered = true;
    if (!key || !app->idem) {
        *ret_answered = false;
        return MHD_YES;
    }
    if (!request_idempotency_key_valid(key))
        return reply_error(c, 400, "invalid_request", 0, NULL,
                           "Idempotency-Key: expected 1..255 printable ASCII characters");
    unsigned char fp[IDEM_FINGERPRINT_BYTES];
    int status = 0;
    char *body = NULL;
    idem_fingerprint(c->body ? c->body : "", c->len, fp);
    switch (idem_begin(app->idem, key, fp, clock_now_ms(), &status, &body)) {
    case IDEM_IN_PROGRESS:
        return reply_error(c, 409, "idempotency_in_progress", 1000, NULL,
                           "a request with this Idempotency-Key is still running");
    case IDEM_MISMATCH:
        return reply_error(c, 422, "idempotency_key_reused", 0, NULL,
                           "this Idempotency-Key was used with a different request body");
    case IDEM_FULL:
        return reply_error(c, 429, "overloaded", 1000, NULL,
                           "too many idempotent requests in progress; retry later");
    case IDEM_REPLAY:
        return reply_as(c, (unsigned)status, body, 0, "Idempotent-Replayed", "true",
                        JSON_CONTENT_TYPE);
    case IDEM_NEW:
    default:
        c->idem_key = strdup(key);
        if (!c->idem_key) {
            idem_abandon(app->idem, key);
            return reply_error(c, 500, "internal_error", 0, NULL, "out of memory");
        }
        *ret_answered = false;
        return MHD_YES;
    }
}

/* Takes the run's conversation; answers and returns false when it cannot. */
static bool agent_conversation(struct conn *c, const char *id, json_t **ret_history,
                               enum MHD_Result *ret)
{
    struct app *app = c->srv->app;
    int r = app->convs ? conv_store_acquire(app->convs, id, clock_now_ms(), ret_history) : -ENOTSUP;
    if (r == 0)
        return true;
    if (r == -EBUSY)
        *ret = reply_error(c, 409, "conversation_busy", 1000, NULL,
                           "conversation '%s' has a run in progress; retry when it ends", id);
    else if (r == -ENOTSUP)
        *ret = reply_error(c, 400, "invalid_request", 0, NULL,
                           "conversation_id: conversations are disabled "
                           "(AGENTD_CONVERSATIONS_MAX=0)");
    else
        *ret = reply_error(c, 429, "overloaded", 1000, NULL,
                           "conversation store is full of running conversations");
    return false;
}

static enum MHD_Result agent_run(struct conn *c)
{
    struct app *app = c->srv->app;
    if (c->too_large)
        return reply_error(c, 413, "payload_too_large", 0, NULL,
                           "request body exceeds the limit of %zu bytes (AGENTD_MAX_BODY_BYTES)",
                           app->cfg.max_body_bytes);
    struct agent_request req;
    char err[256];
    if (request_parse(c->body ? c->body : "", c->len, app->cfg.max_iterations,
                      app->cfg.total_timeout_ms, &req, err, sizeof(err)) < 0)
        return reply_error(c, 400, "invalid_request", 0, NULL, "%s", err);
    bool answered;
    enum MHD_Result ret = agent_idempotency(c, &answered);
    if (answered) {
        agent_request_clear(&req);
        return ret;
    }
    c->counted = true;
    if (atomic_fetch_add(&app->inflight, 1) >= app->cfg.max_inflight) {
        unadmit(c);
        agent_request_clear(&req);
        return reply_error(c, 429, "overloaded", 1000, NULL,
                           "%d runs in flight (AGENTD_MAX_INFLIGHT); retry later",
                           app->cfg.max_inflight);
    }
    json_t *history = NULL;
    if (req.conversation_id && !agent_conversation(c, req.conversation_id, &history, &ret)) {
        unadmit(c);
        agent_request_clear(&req);
        return ret;
    }
    char *conv_id = req.conversation_id ? strdup(req.conversation_id) : NULL;
    struct run *run = run_new(app, &req, c->request_id, history, on_run_finished, c);
    if (!run) {
        if (conv_id)
            conv_store_release(app->convs, conv_id, NULL, clock_now_ms());
        free(conv_id);
        agent_request_clear(&req);
        unadmit(c);
        return reply_error(c, 500, "internal_error", 0, NULL, "out of memory creating the run");
    }
    free(conv_id);
    c->run = run;
    metrics_run_started();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        run_set_client_fd(run, ci->connect_fd);
    MHD_suspend_connection(c->mhd);
    track_suspended(c);
    if (run_submit(run, app_pick_worker(app)) < 0) {
        /* Answer as the run would have: it never started. */
        untrack_suspended(c);
        unadmit(c);
        run->http_status = 500;
        run->body =
            request_error_body("internal_error", "could not schedule the run", c->request_id, 0);
        MHD_resume_connection(c->mhd);
    }
    return MHD_YES;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static const struct route_def *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(url, routes[i].path) == 0)
            return &routes[i];
    return NULL;
}

static const char *route_path(enum route r)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (routes[i].route == r)
            return routes[i].path;
    return "other";
}

static bool method_allowed(const struct route_def *r, const char *method)
{
    if (r->route == ROUTE_AGENT)
        return strcmp(method, "POST") == 0;
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

static enum MHD_Result first_call(struct conn *c, const char *url, const char *method)
{
    const struct route_def *r = find_route(url);
    if (!r)
        return reply_error(c, 404, "not_found", 0, NULL, "no such endpoint: %.128s", url);
    c->route = r->route;
    if (!method_allowed(r, method))
        return reply_error(c, 405, "method_not_allowed", 0, r->allow,
                           "%s is not allowed on %s; use %s", method, r->path, r->allow);
    switch (r->route) {
    case ROUTE_AGENT:
        return agent_headers(c);
    case ROUTE_LIVE:
        return reply(c, 200, strdup("{\"status\":\"ok\"}"), 0, NULL);
    case ROUTE_METRICS:
        return reply_as(c, 200, metrics_render(), 0, NULL, NULL,
                        "text/plain; version=0.0.4; charset=utf-8");
    case ROUTE_READY: {
        char *body = NULL;
        int status = health_render(c->srv->app->health, &body);
        if (status < 0)
            return reply_error(c, 500, "internal_error", 0, NULL, "cannot render readiness");
        return reply(c, (unsigned)status, body, 0, NULL);
    }
    default:
        return reply_error(c, 404, "not_found", 0, NULL, "no such endpoint");
    }
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
        c->start_ms = clock_now_ms();
        snprintf(c->method, sizeof(c->method), "%s", method);
        set_request_id(c);
        *con_cls = c;
        c->defer = drain_first(c);
        enum MHD_Result ret = first_call(c, url, method);
        c->defer = false;
        return ret;
    }
    if (c->run) {
        /* Resumed: the run has its answer. */
        struct run *run = c->run;
        enum MHD_Result ret =
            reply(c, (unsigned)run->http_status, run->body, run->retry_after_ms, NULL);
        run->body = NULL;
        c->run = NULL;
        run_release(run);
        return ret;
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
        return agent_body_chunk(c, upload_data, n);
    }
    if (c->deferred)
        return send_deferred(c);
    if (c->answered)
        return MHD_YES;
    if (c->route == ROUTE_AGENT)
        return agent_run(c);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)mc;
    struct conn *c = *con_cls;
    if (!c)
        return;
    *con_cls = NULL;
    int64_t duration_ms = clock_now_ms() - c->start_ms;
    metrics_http_request(metrics_route_from_path(route_path(c->route)),
                         metrics_method_from_string(c->method), (int)c->status,
                         (double)duration_ms / 1000.0);
    log_info("http request", LF_S("request_id", c->request_id), LF_S("method", c->method),
             LF_S("path", route_path(c->route)), LF_I("status", c->status), LF_I("bytes", c->bytes),
             LF_I("duration_ms", duration_ms),
             LF_S("reason",
                  toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL : "connection closed early"));
    if (c->run)
        run_release(c->run);
    if (c->deferred)
        MHD_destroy_response(c->deferred);
    unadmit(c);
    free(c->body);
    free(c);
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

struct server *server_start(struct app *app, char *err, size_t errlen)
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
    unsigned pool = app->cfg.workers < 2 ? 1 : 2;
    /* The logger option must come first so MHD never writes to stderr by itself. */
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(app->cfg.max_inflight + SERVER_EXTRA_CONNECTIONS),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVER_CONNECTION_MEMORY_BYTES,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVER_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_END);
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
        run_abort(c->run, 503,
                  request_error_body("shutting_down",
                                     "agentd is shutting down; retry on another replica",
                                     c->request_id, 0),
                  1000);
        MHD_resume_connection(c->mhd);
        n++;
    }
}

struct server *server_stop(struct server *s)
{
    if (!s)
        return NULL;
    server_quiesce(s);
    MHD_stop_daemon(s->mhd);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}
