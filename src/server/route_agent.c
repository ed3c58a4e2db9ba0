/*
 * route_agent.c — POST /v1/agent (see http.h and docs/API.md).
 *
 * The access handler reaches this route three ways: with the headers
 * (bearer token (auth.h), draining, Content-Type, declared size, in-flight and budget
 * admission are checked here, so bad requests are refused before any body is
 * read), with each body chunk (copied up to AGENTD_MAX_BODY_BYTES, whether the
 * client sent Content-Length or chunked), and once more with no data: the body
 * is validated and the run admitted (run_admit takes the in-flight unit, the
 * Idempotency-Key claim and the conversation, and the run gives them back),
 * the connection is suspended and the run handed to a worker. The engine
 * ends the run with a typed outcome; this file alone says which HTTP status
 * and JSON body each outcome is (render_answer, called where the run ends),
 * and answers when the worker resumes the connection. A request with
 * "stream": true is admitted the same way and then answered as events by
 * agent_stream.c.
 */
#include "agentd/http.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agentd/app.h"
#include "agentd/auth.h"
#include "agentd/clock.h"
#include "agentd/idempotency.h"
#include "agentd/request.h"
#include "agentd/run.h"
#include "agentd/spend.h"

/* With bearer tokens configured (AGENTD_AUTH_TOKENS or AGENTD_AUTH_TOKENS_FILE), a request needs
   "Authorization: Bearer <one of them>"; the caller id of the token it gave then scopes its
   conversations and Idempotency-Keys. */
static bool authorized(struct conn *c)
{
    const char *h = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Authorization");
    return auth_check(http_conn_auth(c), h, c->caller);
}

static enum MHD_Result agent_headers(struct conn *c)
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
    if (cl) {
        unsigned long long n = strtoull(cl, NULL, 10);
        if (atomic_load(&app->buffered_bytes) + n > app->cfg.max_buffered_bytes)
            return http_reply_error(c, 503, "overloaded", 1000, NULL,
                                    "request bodies in memory are at their limit "
                                    "(AGENTD_MAX_BUFFERED_BYTES); retry later");
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

/* Takes more bytes of AGENTD_MAX_BUFFERED_BYTES for c's body; false when they are not there. */
static bool charge_upload(struct conn *c, size_t more)
{
    struct app *app = http_conn_app(c);
    size_t before = atomic_fetch_add(&app->buffered_bytes, more);
    if (before + more > app->cfg.max_buffered_bytes) {
        atomic_fetch_sub(&app->buffered_bytes, more);
        return false;
    }
    return true;
}

/* Frees c's body and gives its bytes back. */
static void drop_upload(struct conn *c)
{
    atomic_fetch_sub(&http_conn_app(c)->buffered_bytes, c->alloc);
    free(c->body);
    c->body = NULL;
    c->len = c->alloc = 0;
}

static enum MHD_Result agent_body(struct conn *c, const char *data, size_t size)
{
    size_t cap = http_conn_app(c)->cfg.max_body_bytes;
    if (c->too_large || size > cap - c->len) {
        /* Over the cap (chunked upload): stop storing; the 413 waits for the end of the body. */
        c->too_large = true;
        drop_upload(c);
        http_reply_error_after_body(
            c, size, 413, "payload_too_large", 0,
            "request body exceeds the limit of %zu bytes (AGENTD_MAX_BODY_BYTES)", cap);
        return MHD_YES;
    }
    if (c->len + size + 1 > c->alloc) {
        /* Grow geometrically up to the cap (+1 for a terminating NUL), within the bytes all
           uploads together may hold. */
        size_t want = c->alloc ? c->alloc : 4096;
        while (want < c->len + size + 1)
            want *= 2;
        if (want > cap + 1)
            want = cap + 1;
        if (!charge_upload(c, want - c->alloc)) {
            drop_upload(c);
            http_reply_error_after_body(c, size, 503, "overloaded", 1000,
                                        "request bodies in memory are at their limit "
                                        "(AGENTD_MAX_BUFFERED_BYTES); retry later");
            return MHD_YES;
        }
        char *p = realloc(c->body, want);
        if (!p) {
            atomic_fetch_sub(&http_conn_app(c)->buffered_bytes, want - c->alloc);
            return MHD_NO;
        }
        c->body = p;
        c->alloc = want;
    }
    memcpy(c->body + c->len, data, size);
    c->len += size;
    return MHD_YES;
}

/* ---- the run's answer ----------------------------------------------------------------- */

/* The 200 body of docs/API.md. */
static char *answer_body(const struct run_result *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(r->run_id));
    json_object_set_new(o, "request_id", json_string(r->request_id));
    if (r->conversation_id)
        json_object_set_new(o, "conversation_id", json_string(r->conversation_id));
    json_object_set_new(o, "output", json_string(r->output));
    json_object_set_new(o, "stop_reason", json_string(r->stop_reason));
    json_object_set_new(o, "iterations", json_integer(r->iterations));
    if (r->resumed)
        json_object_set_new(o, "resumed", json_true());
    json_object_set(o, "degraded", (json_t *)r->degraded);
    json_object_set(o, "tool_calls", (json_t *)r->tool_calls);
    if (r->model)
        json_object_set_new(o, "model", json_string(r->model));
    if (json_array_size(r->fallbacks) > 0)
        json_object_set(o, "fallbacks", (json_t *)r->fallbacks);
    json_t *usage = json_pack("{s:I, s:I, s:i, s:i}", "input_tokens", (json_int_t)r->input_tokens,
                              "output_tokens", (json_int_t)r->output_tokens, "llm_calls",
                              r->llm_calls, "llm_attempts", r->llm_attempts);
    if (usage && r->prompt_cache) {
        json_object_set_new(usage, "cache_creation_input_tokens",
                            json_integer((json_int_t)r->cache_creation_tokens));
        json_object_set_new(usage, "cache_read_input_tokens",
                            json_integer((json_int_t)r->cache_read_tokens));
    }
    json_object_set_new(o, "usage", usage);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return body;
}

/* How each outcome is answered: the status and error.type of docs/API.md. */
static void outcome_status(enum run_outcome o, int *ret_status, const char **ret_type)
{
    static const struct {
        int status;
        const char *type;
    } map[] = {
        [RUN_OK] = {200, NULL},
        [RUN_UPSTREAM_ERROR] = {502, "upstream_error"},
        [RUN_UPSTREAM_UNAVAILABLE] = {503, "upstream_unavailable"},
        [RUN_TOOL_UNAVAILABLE] = {503, "tool_unavailable"},
        [RUN_RATE_LIMITED] = {429, "rate_limited"},
        [RUN_BUDGET_EXCEEDED] = {429, "budget_exceeded"},
        [RUN_DEADLINE_EXCEEDED] = {504, "deadline_exceeded"},
        [RUN_HISTORY_TOO_LARGE] = {422, "history_too_large"},
        /* nginx's "client closed request": logged and counted, never read by the client */
        [RUN_CLIENT_CLOSED] = {499, "client_closed"},
        [RUN_SHUTTING_DOWN] = {503, "shutting_down"},
        [RUN_INTERNAL_ERROR] = {500, "internal_error"},
        [RUN_IDEM_REPLAYED] = {200, NULL}, /* the stored answer, see render_answer */
        [RUN_IDEM_IN_PROGRESS] = {409, "idempotency_in_progress"},
        [RUN_IDEM_MISMATCH] = {422, "idempotency_key_reused"},
        [RUN_CONVERSATION_BUSY] = {409, "conversation_busy"},
        [RUN_OVERLOADED] = {429, "overloaded"},
    };
    if ((unsigned)o >= sizeof(map) / sizeof(map[0]))
        o = RUN_INTERNAL_ERROR;
    *ret_status = map[o].status;
    *ret_type = map[o].type;
}

/* Where the run ends (its worker): the answer to send, and to store for its Idempotency-Key. */
static void render_answer(const struct run_result *r, void *arg, struct run_answer *ret)
{
    (void)arg;
    const char *type;
    if (r->outcome == RUN_IDEM_REPLAYED) {
        *ret = (struct run_answer){
            .status = r->replay_status, .body = strdup(r->replay_body), .replayed = true};
        return;
    }
    outcome_status(r->outcome, &ret->status, &type);
    ret->retry_after_ms = r->retry_after_ms;
    ret->body = type ? request_error_body(type, r->message, r->request_id,
                                          r->outcome == RUN_UPSTREAM_ERROR ? r->upstream_status : 0)
                     : answer_body(r);
}

/* Worker thread: the run has its answer; wake the connection. */
static void on_run_finished(struct run *run, void *arg)
{
    (void)run;
    http_resume_if_suspended(arg);
}

/* ---- admission ---------------------------------------------------------------------------- */

static enum MHD_Result reply_refusal(struct conn *c, enum run_admission a,
                                     struct run_answer *replay, const char *conversation_id)
{
    struct app *app = http_conn_app(c);
    switch (a) {
    case RUN_REPLAYED:
        return http_reply_as(c, (unsigned)replay->status, replay->body, 0, "Idempotent-Replayed",
                             "true", HTTP_JSON_CONTENT_TYPE);
    case RUN_REFUSED_MEMORY:
        return http_reply_error(
            c, 503, "overloaded", 1000, NULL,
            "the runs in flight hold their memory limit (AGENTD_RUNS_MAX_BYTES); "
            "retry later");
    case RUN_REFUSED_OVERLOADED:
        return http_reply_error(c, 429, "overloaded", 1000, NULL,
                                "%d runs in flight (AGENTD_MAX_INFLIGHT); retry later",
                                app->cfg.max_inflight);
    case RUN_REFUSED_IDEM_IN_PROGRESS:
        return http_reply_error(c, 409, "idempotency_in_progress", 1000, NULL,
                                "a request with this Idempotency-Key is still running");
    case RUN_REFUSED_IDEM_MISMATCH:
        return http_reply_error(c, 422, "idempotency_key_reused", 0, NULL,
                                "this Idempotency-Key was used with a different request body");
    case RUN_REFUSED_IDEM_FULL:
        return http_reply_error(c, 429, "overloaded", 1000, NULL,
                                "too many idempotent requests in progress; retry later");
    case RUN_REFUSED_CONVERSATION_BUSY:
        return http_reply_error(c, 409, "conversation_busy", 1000, NULL,
                                "conversation '%s' has a run in progress; retry when it ends",
                                conversation_id);
    case RUN_REFUSED_CONVERSATIONS_OFF:
        return http_reply_error(c, 400, "invalid_request", 0, NULL,
                                "conversation_id: conversations are disabled "
                                "(AGENTD_CONVERSATIONS_MAX=0)");
    case RUN_REFUSED_CONVERSATIONS_FULL:
        return http_reply_error(c, 429, "overloaded", 1000, NULL,
                                "conversation store is full of running conversations");
    default:
        return http_reply_error(c, 500, "internal_error", 0, NULL,
                                "out of memory creating the run");
    }
}

static enum MHD_Result agent_run(struct conn *c)
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
    const char *key = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Idempotency-Key");
    unsigned char fp[IDEM_FINGERPRINT_BYTES];
    if (!app->idem) {
        key = NULL; /* keys are off (AGENTD_IDEMPOTENCY_MAX=0): the header is ignored */
    } else if (key) {
        if (!request_idempotency_key_valid(key)) {
            agent_request_clear(&req);
            return http_reply_error(c, 400, "invalid_request", 0, NULL,
                                    "Idempotency-Key: expected 1..255 printable ASCII characters");
        }
        idem_fingerprint(c->body ? c->body : "", c->len, fp);
    }
    struct run_owner owner = {.render = render_answer, .finished = on_run_finished, .arg = c};
    if (req.stream) {
        /* Answered as events (agent_stream.c); refusals below stay JSON answers. */
        if (!agent_stream_new(c, render_answer)) {
            agent_request_clear(&req);
            return http_reply_error(c, 500, "internal_error", 0, NULL,
                                    "out of memory creating the event stream");
        }
        agent_stream_owner(c->stream, &owner);
    }
    struct run_spec spec = {
        .req = &req,
        .request_id = c->request_id,
        .caller = c->caller,
        .idem_key = key,
        .idem_fingerprint = fp,
        .owner = &owner,
        .traceparent = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "traceparent"),
        .tracestate = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "tracestate")};
    struct run_answer replay = {0};
    struct run *run = NULL;
    enum run_admission a = run_admit(app, &spec, &run, &replay);
    if (a != RUN_ADMITTED) {
        enum MHD_Result ret = reply_refusal(c, a, &replay, req.conversation_id);
        agent_request_clear(&req);
        return ret;
    }
    /* The body is the run's now (parsed into it): no need to hold the upload any longer. */
    drop_upload(c);
    if (c->stream)
        return agent_stream_start(c->stream, run, app_pick_worker(app));
    c->run = run;
    if (run_trace_hex(run))
        snprintf(c->trace_id, sizeof(c->trace_id), "%s", run_trace_hex(run));
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        run_set_client_fd(run, ci->connect_fd);
    http_suspend(c);
    if (run_submit(run, app_pick_worker(app)) < 0) {
        /* The run has ended at once, with an answer: give it. */
        http_untrack_suspended(c);
        MHD_resume_connection(c->mhd);
    }
    return MHD_YES;
}

static enum MHD_Result agent_resumed(struct conn *c)
{
    struct run_answer a;
    run_take_answer(c->run, &a);
    run_release(c->run);
    c->run = NULL;
    if (a.replayed)
        return http_reply_as(c, (unsigned)a.status, a.body, 0, "Idempotent-Replayed", "true",
                             HTTP_JSON_CONTENT_TYPE);
    if (a.retry_after_ms == RUN_RETRY_AFTER_NOW)
        return http_reply_as(c, (unsigned)a.status, a.body, 0, "Retry-After", "0",
                             HTTP_JSON_CONTENT_TYPE);
    return http_reply(c, (unsigned)a.status, a.body, a.retry_after_ms, NULL);
}

static void agent_abort(struct conn *c)
{
    if (c->stream)
        agent_stream_abort(c->stream);
    else if (c->run)
        run_abort(c->run);
}

static void agent_release(struct conn *c)
{
    if (c->stream) {
        agent_stream_release(c->stream);
        c->stream = NULL;
    }
    if (c->run) {
        run_release(c->run);
        c->run = NULL;
    }
    drop_upload(c);
}

const struct http_route route_agent = {
    .path = "/v1/agent",
    .metric = METRICS_ROUTE_AGENT,
    .allow = "POST",
    .headers = agent_headers,
    .body = agent_body,
    .complete = agent_run,
    .resumed = agent_resumed,
    .abort = agent_abort,
    .release = agent_release,
};
