/*
 * call.c — executes one outbound HTTP call (see call.h): asks the call
 * policy what to do next, then arms the timer or starts the transfer it
 * says, and reports what happened in logs and metrics.
 */
#include "agentd/call.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentd/clock.h"
#include "agentd/dependency.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/trace.h"

#define CALL_CONNECT_TIMEOUT_MS 5000
/* libcurl's minimum receive buffer: each transfer in flight holds one (curl keeps it per easy
   handle), and an answer of a few KiB takes a few more reads — see bench/README.md. */
#define CALL_RECV_BUFFER_BYTES 1024
/* libcurl's minimum upload buffer (default 64 KiB), allocated when a body is sent in pieces
   rather than with the request head (HTTP/2 streams, bodies over 64 KiB). */
#define CALL_UPLOAD_BUFFER_BYTES (16L * 1024)
/* First allocation of a response body; it then doubles up to max_response_bytes. */
#define CALL_RESP_INITIAL_BYTES 4096
/* A traced call's log lines carry its trace id beside the request id. */
#define LF_TRACE_ID(c) LF_SO("trace_id", trace_span_trace_id((c)->span))

static void step(struct call *c, const struct call_event *ev);

void call_init(struct call *c)
{
    memset(c, 0, sizeof(*c));
    timer_init(&c->timer, NULL, c);
}

/* The GenAI operation metric's error_type for how an LLM call ended. */
static enum metrics_gen_ai_outcome gen_ai_outcome(enum call_outcome o)
{
    switch (o) {
    case CALL_OK:
        return METRICS_GEN_AI_OK;
    case CALL_PERMANENT:
        return METRICS_GEN_AI_PERMANENT_ERROR;
    case CALL_EXHAUSTED:
        return METRICS_GEN_AI_RETRIES_EXHAUSTED;
    case CALL_BREAKER_OPEN:
        return METRICS_GEN_AI_CIRCUIT_OPEN;
    case CALL_RATE_LIMITED:
        return METRICS_GEN_AI_RATE_LIMITED;
    case CALL_DEADLINE:
    default:
        return METRICS_GEN_AI_DEADLINE;
    }
}

static void on_finish_timer(struct timer *t, void *arg)
{
    (void)t;
    struct call *c = arg;
    c->finishing = false;
    if (dependency_id(c->dep) == DEP_ANTHROPIC)
        metrics_gen_ai_operation(gen_ai_outcome(c->outcome),
                                 (double)(worker_now_ms(c->w) - c->started_ms) / 1000.0);
    c->done(c, c->arg);
}

static void on_ready_timer(struct timer *t, void *arg)
{
    (void)t;
    step(arg, &(struct call_event){.kind = CALL_EV_READY});
}

static void on_token_timer(struct timer *t, void *arg)
{
    (void)t;
    step(arg, &(struct call_event){.kind = CALL_EV_TOKEN_DUE});
}

static void arm(struct call *c, timer_fn fn, int64_t at_ms)
{
    c->timer.fn = fn;
    timerheap_arm(worker_timers(c->w), &c->timer, at_ms);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct call *c = arg;
    size_t n = size * nmemb;
    if (c->stream) {
        long status = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (c->stream(c, c->arg, data, n))
                return n;
            c->stream_refused = true;
            return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
        }
    }
    if (n > c->max_response_bytes - c->resp_len) {
        c->resp_overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (c->resp_len + n + 1 > c->resp_alloc) {
        size_t want = c->resp_alloc ? c->resp_alloc : CALL_RESP_INITIAL_BYTES;
        while (want < c->resp_len + n + 1)
            want *= 2;
        if (want > c->max_response_bytes + 1)
            want = c->max_response_bytes + 1;
        char *p = realloc(c->resp, want);
        if (!p)
            return 0;
        c->resp = p;
        c->resp_alloc = want;
    }
    memcpy(c->resp + c->resp_len, data, n);
    c->resp_len += n;
    c->resp[c->resp_len] = '\0';
    return n;
}

/* Copies a header value (trimmed, bounded) into dst when the name matches. */
static void capture_header(const char *line, size_t len, const char *name, char *dst, size_t cap)
{
    size_t nlen = strlen(name);
    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
        return;
    const char *v = line + nlen + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t n = (size_t)(end - v);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct call *c = arg;
    size_t len = size * nmemb;
    capture_header(line, len, "request-id", c->upstream_request_id, sizeof(c->upstream_request_id));
    capture_header(line, len, "retry-after", c->hdr_retry_after, sizeof(c->hdr_retry_after));
    capture_header(line, len, "retry-after-ms", c->hdr_retry_after_ms,
                   sizeof(c->hdr_retry_after_ms));
    capture_header(line, len, "x-should-retry", c->hdr_should_retry, sizeof(c->hdr_should_retry));
    if (c->read_ratelimit)
        ratelimit_headers_capture(&c->ratelimit, line, len);
    return len;
}

static void clear_attempt_result(struct call *c)
{
    free(c->resp);
    c->resp = NULL;
    c->resp_len = c->resp_alloc = 0;
    c->resp_overflow = false;
    c->stream_refused = false;
    c->status = 0;
    c->hdr_retry_after[0] = c->hdr_retry_after_ms[0] = c->hdr_should_retry[0] = '\0';
    c->upstream_request_id[0] = '\0';
    ratelimit_headers_clear(&c->ratelimit);
}

static void on_transfer_done(struct worker_transfer *x, CURL *easy, CURLcode result);

static CURL *configure(struct call *c, int64_t now)
{
    int64_t left = c->deadline_ms - now;
    int64_t timeout = c->attempt_timeout_ms < left ? c->attempt_timeout_ms : left;
    if (timeout < 1)
        timeout = 1;
    CURL *e = worker_take_easy(c->w);
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout < CALL_CONNECT_TIMEOUT_MS ? timeout : CALL_CONNECT_TIMEOUT_MS));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->error);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Thousands of transfers wait at once; answers arrive in a few reads anyway. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)CALL_RECV_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, CALL_UPLOAD_BUFFER_BYTES);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
    if (c->headers)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    if (c->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(c->body));
    }
    return e;
}

static void launch(struct call *c)
{
    int64_t now = worker_now_ms(c->w);
    clear_attempt_result(c);
    c->error[0] = '\0';
    CURL *e = configure(c, now);
    c->xfer.done = on_transfer_done;
    if (!e || worker_add_transfer(c->w, e, (int)dependency_id(c->dep), &c->xfer) < 0) {
        if (e)
            worker_give_easy(c->w, e);
        snprintf(c->error, sizeof(c->error), "%s",
                 e ? "could not start a transfer" : "out of memory creating a transfer");
        step(c, &(struct call_event){.kind = CALL_EV_LAUNCH_FAILED});
        return;
    }
    c->easy = e;
    c->attempt_started_ms = now;
    step(c, &(struct call_event){.kind = CALL_EV_LAUNCHED});
    c->attempts = c->progress.attempts;
}

static enum metrics_retry_reason metrics_reason(enum call_retry_reason r)
{
    switch (r) {
    case CALL_RETRY_HTTP_429:
        return METRICS_RETRY_HTTP_429;
    case CALL_RETRY_HTTP_5XX:
        return METRICS_RETRY_HTTP_5XX;
    case CALL_RETRY_TIMEOUT:
        return METRICS_RETRY_TIMEOUT;
    case CALL_RETRY_MALFORMED:
        return METRICS_RETRY_MALFORMED;
    default:
        return METRICS_RETRY_CONNECTION_ERROR;
    }
}

static void reason_text(const struct call *c, enum call_retry_reason r, char *buf, size_t cap)
{
    switch (r) {
    case CALL_RETRY_TIMEOUT:
        snprintf(buf, cap, "timeout");
        break;
    case CALL_RETRY_CONNECTION_ERROR:
        snprintf(buf, cap, "connection error");
        break;
    case CALL_RETRY_MALFORMED:
        snprintf(buf, cap, "malformed response");
        break;
    default:
        snprintf(buf, cap, "http %ld", c->status);
        break;
    }
}

/* Says what the verdict means: the client-facing error text, log lines and metrics. */
static void report(struct call *c, const struct call_verdict *v)
{
    const char *name = dependency_name(c->dep);
    enum dep_id dep = dependency_id(c->dep);
    enum agent_priority prio = c->low_priority ? AGENT_PRIORITY_LOW : AGENT_PRIORITY_HIGH;
    char reason[64];
    reason_text(c, v->reason, reason, sizeof(reason));
    if (v->reset_wait_ms > 0)
        log_info("rate limit spent: holding calls until the reset",
                 LF_S("request_id", c->request_id), LF_TRACE_ID(c), LF_S("dependency", name),
                 LF_S("model", dependency_model(c->dep)), LF_I("wait_ms", v->reset_wait_ms));
    switch (v->note) {
    case CALL_NOTE_DEADLINE:
        snprintf(c->error, sizeof(c->error), "deadline passed before the attempt could start");
        break;
    case CALL_NOTE_BREAKER_OPEN:
        snprintf(c->error, sizeof(c->error), "circuit open for %s", name);
        break;
    case CALL_NOTE_THROTTLED:
        snprintf(c->error, sizeof(c->error), "%s is rate limiting us (429)", name);
        metrics_limiter_refusal(dep, prio);
        break;
    case CALL_NOTE_LIMITER_REFUSED:
        snprintf(c->error, sizeof(c->error), "%s rate limit: no token %s", name,
                 c->low_priority ? "available now (low priority never waits)"
                                 : "before the deadline");
        metrics_limiter_refusal(dep, prio);
        log_info("limiter refused", LF_S("request_id", c->request_id), LF_TRACE_ID(c),
                 LF_S("dependency", name), LF_S("priority", c->low_priority ? "low" : "high"));
        break;
    case CALL_NOTE_LIMITER_WAIT:
        metrics_limiter_wait(dep, (double)v->delay_ms / 1000.0);
        if (v->delay_ms > 0)
            log_debug("limiter wait", LF_S("request_id", c->request_id), LF_TRACE_ID(c),
                      LF_S("dependency", name), LF_I("delay_ms", v->delay_ms));
        break;
    case CALL_NOTE_PERMANENT:
        snprintf(c->error, sizeof(c->error), "%s answered HTTP %ld", name, c->status);
        break;
    case CALL_NOTE_OVERLOADED:
        snprintf(c->error, sizeof(c->error), "%s is overloaded (HTTP %ld)", name, c->status);
        break;
    case CALL_NOTE_RETRY:
        metrics_retry(dep, metrics_reason(v->reason));
        log_info("retry scheduled", LF_S("request_id", c->request_id), LF_TRACE_ID(c),
                 LF_S("dependency", name), LF_I("attempt", c->attempts),
                 LF_I("delay_ms", v->delay_ms), LF_S("reason", reason));
        break;
    case CALL_NOTE_RETRY_PAST_DEADLINE:
        log_info("retry skipped: would pass deadline", LF_S("request_id", c->request_id),
                 LF_TRACE_ID(c), LF_S("dependency", name), LF_I("delay_ms", v->delay_ms),
                 LF_S("reason", reason));
        break;
    case CALL_NOTE_BUDGET_EXHAUSTED:
        metrics_retry_budget_exhausted(dep);
        log_warn("retry budget exhausted", LF_S("request_id", c->request_id), LF_TRACE_ID(c),
                 LF_S("dependency", name), LF_S("reason", reason));
        break;
    default:
        break;
    }
}

static void on_shared_answer(struct redis_req *req, int err, const redisReply *reply)
{
    struct call *c = (struct call *)((char *)req - offsetof(struct call, shared_req));
    struct call_event ev;
    dependency_shared_answer(err, reply, &ev);
    worker_refresh_now(c->w);
    step(c, &ev);
}

/* Asks the cluster limiter; when the question cannot even be sent, the answer is "unavailable"
   at once. */
static void ask_shared(struct call *c, const struct call_verdict *v)
{
    c->shared_req.done = on_shared_answer;
    if (dependency_shared_take(c->dep, worker_index(c->w), v->max_wait_ms, c->attempt_timeout_ms,
                               &c->shared_req) == 0)
        return;
    struct call_event ev;
    dependency_shared_answer(-ENOTCONN, NULL, &ev);
    step(c, &ev);
}

static struct call_guards guards_of(struct call *c)
{
    struct call_guards g = dependency_guards(c->dep);
    g.shared = dependency_shared_ready(c->dep, worker_index(c->w));
    return g;
}

/* Asks the policy, reports its verdict, and executes it. */
static void step(struct call *c, const struct call_event *ev)
{
    struct call_guards g = guards_of(c);
    struct call_verdict v;
    call_policy_step(dependency_retry_policy(c->dep), &g, &c->progress, ev, worker_now_ms(c->w),
                     worker_rng(c->w), &v);
    dependency_report_transitions(c->dep);
    dependency_shared_report(c->dep, worker_index(c->w), &v);
    report(c, &v);
    switch (v.action) {
    case CALL_ACT_ASK_SHARED:
        ask_shared(c, &v);
        break;
    case CALL_ACT_LAUNCH:
        launch(c);
        break;
    case CALL_ACT_WAIT:
        arm(c, on_ready_timer, v.at_ms);
        break;
    case CALL_ACT_TOKEN_WAIT:
        arm(c, on_token_timer, v.at_ms);
        break;
    case CALL_ACT_FINISH:
        /* done() runs from the loop on the next timer pass, never from inside the caller. */
        c->outcome = v.outcome;
        c->retry_after_ms = v.retry_after_ms;
        c->finishing = true;
        arm(c, on_finish_timer, worker_now_ms(c->w));
        break;
    case CALL_ACT_NONE:
        break;
    }
}

/* ---- tracing (trace.h): no decision here, only what a traced call carries and records ---- */

/* W3C Trace Context on every attempt: the call's span is the parent of what it calls. */
static void trace_headers(struct call *c)
{
    char h[sizeof("tracestate: ") + TRACE_STATE_MAX_BYTES];
    struct trace_context ctx;
    struct curl_slist *l;
    trace_span_context(c->span, &ctx);
    memcpy(h, "traceparent: ", 13);
    trace_format_traceparent(&ctx, h + 13);
    if ((l = curl_slist_append(c->headers, h)))
        c->headers = l;
    if (c->span->tracestate) {
        snprintf(h, sizeof(h), "tracestate: %s", c->span->tracestate);
        if ((l = curl_slist_append(c->headers, h)))
            c->headers = l;
    }
}

static void trace_attempt(struct call *c, long status, int64_t duration_ms, const char *error)
{
    static const char *const keys[] = {"agentd.attempt", "http.response.status_code",
                                       "agentd.duration_ms"};
    const int64_t values[] = {c->attempts, status, duration_ms};
    if (c->span)
        trace_span_add_event(c->span, "agentd.attempt", clock_wall_ns(), keys, values, 3,
                             "agentd.error", error);
}

void call_start(struct worker *w, struct call *c)
{
    c->w = w;
    c->attempts = 0;
    c->retry_after_ms = 0;
    c->outcome = CALL_OK;
    c->finishing = false;
    c->timer.arg = c;
    c->started_ms = worker_now_ms(w);
    if (c->span)
        trace_headers(c);
    call_progress_init(&c->progress, c->deadline_ms, c->low_priority);
    c->progress.overload_ends = c->overload_ends;
    /* The first step runs from the loop so done() is never called from inside call_start. */
    c->progress.phase = CALL_PHASE_WAIT;
    arm(c, on_ready_timer, worker_now_ms(w));
}

static void on_transfer_done(struct worker_transfer *x, CURL *easy, CURLcode result)
{
    struct call *c = (struct call *)((char *)x - offsetof(struct call, xfer));
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    worker_give_easy(c->w, easy);
    c->easy = NULL;
    c->status = status;
    int64_t now = worker_refresh_now(c->w);
    int64_t duration = now - c->attempt_started_ms;
    const char *name = dependency_name(c->dep);
    bool llm = dependency_id(c->dep) == DEP_ANTHROPIC;
    struct call_event ev = {.kind = CALL_EV_ATTEMPT_END, .now_wall_ms = clock_wall_ms()};

    if (result != CURLE_OK) {
        if (c->resp_overflow)
            snprintf(c->error, sizeof(c->error), "response larger than %zu bytes",
                     c->max_response_bytes);
        else if (c->stream_refused)
            snprintf(c->error, sizeof(c->error), "streamed answer over its bounds");
        else if (!c->error[0])
            snprintf(c->error, sizeof(c->error), "%s", curl_easy_strerror(result));
        log_warn("upstream attempt failed", LF_S("request_id", c->request_id), LF_TRACE_ID(c),
                 LF_S("dependency", name), LF_I("attempt", c->attempts),
                 LF_I("duration_ms", duration), LF_S("reason", c->error),
                 LF_B("own_burst", x->own_burst));
        c->status = 0;
        trace_attempt(c, 0, duration, c->error);
        ev.transport =
            result == CURLE_OPERATION_TIMEDOUT ? CALL_TRANSPORT_TIMEOUT : CALL_TRANSPORT_ERROR;
        ev.own_burst = x->own_burst;
        if (llm)
            metrics_llm_attempt(ev.transport == CALL_TRANSPORT_TIMEOUT
                                    ? METRICS_ATTEMPT_TIMEOUT
                                    : METRICS_ATTEMPT_CONNECTION_ERROR,
                                0);
        if (c->attempt_failed)
            c->attempt_failed(c, c->arg);
        step(c, &ev);
        return;
    }
    bool ok = status >= 200 && status < 300;
    log_at(ok ? LOG_INFO : LOG_WARN, "upstream attempt", LF_S("request_id", c->request_id),
           LF_TRACE_ID(c), LF_S("dependency", name), LF_I("attempt", c->attempts),
           LF_I("status", status), LF_I("duration_ms", duration),
           LF_S("upstream_request_id", c->upstream_request_id[0] ? c->upstream_request_id : NULL));
    if (llm)
        metrics_llm_attempt(ok ? METRICS_ATTEMPT_SUCCESS : METRICS_ATTEMPT_HTTP_ERROR, (int)status);
    if (!ok)
        snprintf(c->error, sizeof(c->error), "%s answered HTTP %ld", name, status);
    if (ok && c->accept && !c->accept(c, c->arg, c->error, sizeof(c->error))) {
        log_warn(
            "malformed answer", LF_S("request_id", c->request_id), LF_TRACE_ID(c),
            LF_S("dependency", name), LF_S("reason", c->error),
            LF_S("upstream_request_id", c->upstream_request_id[0] ? c->upstream_request_id : NULL));
        ev.body_rejected = true;
    }
    trace_attempt(c, status, duration, ev.body_rejected || !ok ? c->error : NULL);
    if ((!ok || ev.body_rejected) && c->attempt_failed)
        c->attempt_failed(c, c->arg);
    ev.transport = CALL_TRANSPORT_ANSWERED;
    ev.status = status;
    ev.retry_after_ms_hdr = c->hdr_retry_after_ms[0] ? c->hdr_retry_after_ms : NULL;
    ev.retry_after_hdr = c->hdr_retry_after[0] ? c->hdr_retry_after : NULL;
    ev.should_retry_hdr = c->hdr_should_retry[0] ? c->hdr_should_retry : NULL;
    ev.ratelimit = c->read_ratelimit ? &c->ratelimit : NULL;
    ev.ratelimit_output_tokens = c->ratelimit_output_tokens;
    step(c, &ev);
}

void call_cancel(struct call *c)
{
    /* Nothing armed, nothing in flight: nothing of the worker's to touch (a finished run is
       freed from another thread). */
    if (!c->w || (c->progress.phase == CALL_PHASE_IDLE && !c->easy && !timer_armed(&c->timer)))
        return;
    timerheap_cancel(worker_timers(c->w), &c->timer);
    redis_req_cancel(&c->shared_req);
    if (c->easy) {
        worker_cancel_transfer(c->w, c->easy);
        c->easy = NULL;
    }
    struct call_guards g = guards_of(c);
    struct call_verdict v;
    call_policy_step(dependency_retry_policy(c->dep), &g, &c->progress,
                     &(struct call_event){.kind = CALL_EV_CANCEL}, worker_now_ms(c->w),
                     worker_rng(c->w), &v);
    dependency_shared_report(c->dep, worker_index(c->w), &v);
    c->finishing = false;
}

void call_reset(struct call *c)
{
    call_cancel(c);
    free(c->url);
    free(c->body);
    curl_slist_free_all(c->headers);
    free(c->resp);
    call_init(c);
}
