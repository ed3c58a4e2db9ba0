/*
 * route_agent.c — POST /v1/agent (see http.h and docs/API.md).
 *
 * The access handler reaches this route three ways: with the headers
 * (bearer token, draining, Content-Type, declared size, in-flight and budget
 * admission are checked here, so bad requests are refused before any body is
 * read), with each body chunk (copied up to AGENTD_MAX_BODY_BYTES, whether the
 * client sent Content-Length or chunked), and once more with no data: the body
 * is validated, an Idempotency-Key is honoured, the conversation is taken, a
 * run is created, the connection is suspended and the run handed to a worker.
 * When the run ends, the worker stores the idempotent answer, gives back the
 * admission and resumes the connection; http.c then queues the answer.
 */
#include "agentd/http.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "agentd/app.h"
#include "agentd/clock.h"
#include "agentd/conversations.h"
#include "agentd/idempotency.h"
#include "agentd/metrics.h"
#include "agentd/request.h"
#include "agentd/run.h"
#include "agentd/spend.h"

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
    const char *tokens = http_conn_app(c)->cfg.auth_tokens;
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

enum MHD_Result route_agent_headers(struct conn *c)
{
    struct app *app = http_conn_app(c);
    if (!authorized(c))
        return http_reply_as(
            c, 401,
            request_error_body("unauthorized",
                               "missing or wrong bearer token (Authorization: Bearer ...)",
                               c->request_id, 0),
            0, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer", HTTP_JSON_CONTENT_TYPE);
    if (atomic_load(&app->draining))
        return http_reply_error(c, 503, "shutting_down", 1000, NULL,
                                "agentd is shutting down; retry on another replica");
    const char *ct = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Content-Type");
    if (!request_content_type_is_json(ct))
        return http_reply_error(c, 415, "unsupported_media_type", 0, NULL,
                                "Content-Type must be application/json, got '%.64s'", ct ? ct : "");
    const char *cl = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && *end == '\0' && n > app->cfg.max_body_bytes)
            return http_reply_error(c, 413, "payload_too_large", 0, NULL,
                                    "request body of %llu bytes exceeds the limit of %zu bytes "
                                    "(AGENTD_MAX_BODY_BYTES)",
                                    n, app->cfg.max_body_bytes);
    }
    if (atomic_load(&app->inflight) >= app->cfg.max_inflight)
        return http_reply_error(c, 429, "overloaded", 1000, NULL,
                                "%d runs in flight (AGENTD_MAX_INFLIGHT); retry later",
                                app->cfg.max_inflight);
    int64_t budget_wait_ms = 0;
    if (!spend_allow(app->spend, clock_now_ms(), &budget_wait_ms)) {
        app_log_spend_transitions(app);
        return http_reply_error(c, 429, "budget_exceeded", budget_wait_ms, NULL,
                                "the hourly LLM budget (AGENTD_BUDGET_USD_PER_HOUR / "
                                "AGENTD_BUDGET_TOKENS_PER_HOUR) is spent; retry in %lld ms",
                                (long long)budget_wait_ms);
    }
    return MHD_YES;
}

enum MHD_Result route_agent_body(struct conn *c, const char *data, size_t size)
{
    size_t cap = http_conn_app(c)->cfg.max_body_bytes;
    if (c->too_large || size > cap - c->len) {
        /* Over the cap (chunked upload): stop storing; the 413 waits for the end of the body. */
        c->too_large = true;
        free(c->body);
        c->body = NULL;
        c->len = c->alloc = 0;
        http_reply_error_after_body(
            c, size, 413, "payload_too_large",
            "request body exceeds the limit of %zu bytes (AGENTD_MAX_BODY_BYTES)", cap);
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
    struct app *app = http_conn_app(c);
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
    struct app *app = http_conn_app(c);
    const char *key = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Idempotency-Key");
    *ret_answered = true;
    if (!key || !app->idem) {
        *ret_answered = false;
        return MHD_YES;
    }
    if (!request_idempotency_key_valid(key))
        return http_reply_error(c, 400, "invalid_request", 0, NULL,
                                "Idempotency-Key: expected 1..255 printable ASCII characters");
    unsigned char fp[IDEM_FINGERPRINT_BYTES];
    int status = 0;
    char *body = NULL;
    idem_fingerprint(c->body ? c->body : "", c->len, fp);
    switch (idem_begin(app->idem, key, fp, clock_now_ms(), &status, &body)) {
    case IDEM_IN_PROGRESS:
        return http_reply_error(c, 409, "idempotency_in_progress", 1000, NULL,
                                "a request with this Idempotency-Key is still running");
    case IDEM_MISMATCH:
        return http_reply_error(c, 422, "idempotency_key_reused", 0, NULL,
                                "this Idempotency-Key was used with a different request body");
    case IDEM_FULL:
        return http_reply_error(c, 429, "overloaded", 1000, NULL,
                                "too many idempotent requests in progress; retry later");
    case IDEM_REPLAY:
        return http_reply_as(c, (unsigned)status, body, 0, "Idempotent-Replayed", "true",
                             HTTP_JSON_CONTENT_TYPE);
    case IDEM_NEW:
    default:
        c->idem_key = strdup(key);
        if (!c->idem_key) {
            idem_abandon(app->idem, key);
            return http_reply_error(c, 500, "internal_error", 0, NULL, "out of memory");
        }
        *ret_answered = false;
        return MHD_YES;
    }
}

/* Takes the run's conversation; answers and returns false when it cannot. */
static bool agent_conversation(struct conn *c, const char *id, json_t **ret_history,
                               enum MHD_Result *ret)
{
    struct app *app = http_conn_app(c);
    int r = app->convs ? conv_store_acquire(app->convs, id, clock_now_ms(), ret_history) : -ENOTSUP;
    if (r == 0)
        return true;
    if (r == -EBUSY)
        *ret = http_reply_error(c, 409, "conversation_busy", 1000, NULL,
                                "conversation '%s' has a run in progress; retry when it ends", id);
    else if (r == -ENOTSUP)
        *ret = http_reply_error(c, 400, "invalid_request", 0, NULL,
                                "conversation_id: conversations are disabled "
                                "(AGENTD_CONVERSATIONS_MAX=0)");
    else
        *ret = http_reply_error(c, 429, "overloaded", 1000, NULL,
                                "conversation store is full of running conversations");
    return false;
}

/* Worker thread: the run has its answer; wake the connection. */
static void on_run_finished(struct run *run, void *arg)
{
    struct conn *c = arg;
    struct app *app = http_conn_app(c);
    if (c->idem_key) {
        idem_complete(app->idem, c->idem_key, run->http_status, run->body);
        free(c->idem_key);
        c->idem_key = NULL;
    }
    if (c->counted) {
        atomic_fetch_sub(&app->inflight, 1);
        c->counted = false;
    }
    http_resume_if_suspended(c);
}

enum MHD_Result route_agent_run(struct conn *c)
{
    struct app *app = http_conn_app(c);
    if (c->too_large)
        return http_reply_error(
            c, 413, "payload_too_large", 0, NULL,
            "request body exceeds the limit of %zu bytes (AGENTD_MAX_BODY_BYTES)",
            app->cfg.max_body_bytes);
    struct agent_request req;
    char err[256];
    if (request_parse(c->body ? c->body : "", c->len, app->cfg.max_iterations,
                      app->cfg.total_timeout_ms, &req, err, sizeof(err)) < 0)
        return http_reply_error(c, 400, "invalid_request", 0, NULL, "%s", err);
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
        return http_reply_error(c, 429, "overloaded", 1000, NULL,
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
        return http_reply_error(c, 500, "internal_error", 0, NULL,
                                "out of memory creating the run");
    }
    free(conv_id);
    c->run = run;
    metrics_run_started();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        run_set_client_fd(run, ci->connect_fd);
    http_suspend(c);
    if (run_submit(run, app_pick_worker(app)) < 0) {
        /* Answer as the run would have: it never started. */
        http_untrack_suspended(c);
        unadmit(c);
        run->http_status = 500;
        run->body =
            request_error_body("internal_error", "could not schedule the run", c->request_id, 0);
        MHD_resume_connection(c->mhd);
    }
    return MHD_YES;
}

void route_agent_release(struct conn *c)
{
    unadmit(c);
    free(c->body);
    c->body = NULL;
}
