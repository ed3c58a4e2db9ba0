/*
 * call.c — executes one outbound HTTP call under the resilience policies
 * (see call.h). The decisions come from the pure modules (breaker, bucket,
 * budget, backoff); this file only arms timers and drives libcurl.
 *
 * States: GATE (deciding) → TOKEN_WAIT (timer) → IN_FLIGHT (easy handle on
 * the multi) → BACKOFF (timer) → GATE … → FINISHING (zero-delay timer that
 * delivers done() from the loop) → IDLE.
 */
#include "agentd/call.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentd/backoff.h"
#include "agentd/breaker.h"
#include "agentd/bucket.h"
#include "agentd/budget.h"
#include "agentd/clock.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/worker.h"

enum call_state { ST_IDLE = 0, ST_TOKEN_WAIT, ST_IN_FLIGHT, ST_BACKOFF, ST_FINISHING };

/* Fallback Retry-After for the client when the limiter cannot say better. */
#define CALL_DEFAULT_RETRY_AFTER_MS 1000
/* How often calls held back by a throttled dependency look whether its probe came back. */
#define CALL_THROTTLE_RECHECK_MS 25
#define CALL_CONNECT_TIMEOUT_MS  5000
#define CALL_RECV_BUFFER_BYTES   4096

static const char *const outcome_names[] = {"ok",           "permanent_error", "retries_exhausted",
                                            "circuit_open", "rate_limited",    "deadline"};

const char *call_outcome_name(enum call_outcome o)
{
    return outcome_names[o];
}

static void gate(struct call *c);

static struct dependency *dep_of(struct call *c)
{
    return &worker_app(c->w)->deps[c->dep];
}

static const struct agentd_config *cfg_of(struct call *c)
{
    return &worker_app(c->w)->cfg;
}

void call_init(struct call *c)
{
    memset(c, 0, sizeof(*c));
    timer_init(&c->timer, NULL, c);
}

static void on_finish_timer(struct timer *t, void *arg)
{
    (void)t;
    struct call *c = arg;
    c->state = ST_IDLE;
    c->done(c, c->arg);
}

/* Ends the call; done() runs from the loop on the next timer pass. */
static void finish(struct call *c, enum call_outcome outcome)
{
    c->outcome = outcome;
    c->state = ST_FINISHING;
    c->timer.fn = on_finish_timer;
    timerheap_arm(worker_timers(c->w), &c->timer, worker_now_ms(c->w));
}

static void on_gate_timer(struct timer *t, void *arg)
{
    (void)t;
    gate(arg);
}

/* Ends this call's role as the throttle probe, if it had it. */
static void end_probe(struct call *c, bool recovered)
{
    if (c->probe) {
        bucket_throttle_probe_done(dep_of(c)->bucket, recovered);
        c->probe = false;
    }
}

/* While the dependency is throttled by a 429, calls wait without attempts (a timer, bounded by
   their deadline) until the pause ends and one probe has answered. false = wait or refused. */
static bool pass_throttle(struct call *c, struct dependency *d, int64_t now)
{
    bool probe = false;
    int64_t wait = bucket_throttle_gate(d->bucket, now, &probe);
    c->probe = probe;
    if (wait == 0)
        return true;
    breaker_record(d->breaker, now, BREAKER_IGNORED);
    int64_t next =
        now + (wait > 0 ? wait
                        : CALL_THROTTLE_RECHECK_MS + (int64_t)(backoff_rng_next(worker_rng(c->w)) %
                                                               CALL_THROTTLE_RECHECK_MS));
    if (c->low_priority || next >= c->deadline_ms) {
        c->retry_after_ms = wait > 0 ? wait : CALL_DEFAULT_RETRY_AFTER_MS;
        snprintf(c->error, sizeof(c->error), "%s is rate limiting us (429)", d->name);
        metrics_limiter_refusal(c->dep, c->low_priority ? AGENT_PRIORITY_LOW : AGENT_PRIORITY_HIGH);
        finish(c, CALL_RATE_LIMITED);
        return false;
    }
    c->state = ST_BACKOFF;
    c->timer.fn = on_gate_timer;
    timerheap_arm(worker_timers(c->w), &c->timer, next);
    return false;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct call *c = arg;
    size_t n = size * nmemb;
    if (c->resp_len + n > c->max_response_bytes) {
        c->resp_overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    char *p = realloc(c->resp, c->resp_len + n + 1);
    if (!p)
        return 0;
    memcpy(p + c->resp_len, data, n);
    c->resp = p;
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
    return len;
}

static void clear_attempt_result(struct call *c)
{
    free(c->resp);
    c->resp = NULL;
    c->resp_len = 0;
    c->resp_overflow = false;
    c->status = 0;
    c->hdr_retry_after[0] = c->hdr_retry_after_ms[0] = c->hdr_should_retry[0] = '\0';
    c->upstream_request_id[0] = '\0';
}

static void launch(struct call *c)
{
    int64_t now = worker_now_ms(c->w);
    int64_t left = c->deadline_ms - now;
    int64_t timeout = c->attempt_timeout_ms < left ? c->attempt_timeout_ms : left;
    if (timeout < 1)
        timeout = 1;

    clear_attempt_result(c);
    c->error[0] = '\0';
    CURL *e = worker_take_easy(c->w);
    if (!e) {
        snprintf(c->error, sizeof(c->error), "out of memory creating a transfer");
        breaker_record(dep_of(c)->breaker, now, BREAKER_IGNORED);
        finish(c, CALL_EXHAUSTED);
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
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
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
    if (c->headers)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    if (c->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(c->body));
    }
    if (curl_multi_add_handle(worker_multi(c->w), e) != CURLM_OK) {
        worker_give_easy(c->w, e);
        snprintf(c->error, sizeof(c->error), "could not start a transfer");
        breaker_record(dep_of(c)->breaker, now, BREAKER_IGNORED);
        finish(c, CALL_EXHAUSTED);
        return;
    }
    c->easy = e;
    c->state = ST_IN_FLIGHT;
    c->attempts++;
    c->attempt_started_ms = now;
    if (!c->counted_request) {
        c->counted_request = true;
        retry_budget_on_request(dep_of(c)->budget, now);
    }
}

static void on_token_timer(struct timer *t, void *arg)
{
    (void)t;
    struct call *c = arg;
    int64_t now = worker_now_ms(c->w);
    struct dependency *d = dep_of(c);
    /* A 429 may have paused the dependency while we waited: get back in line
       behind the pause instead of all firing at once when it ends. */
    if (bucket_paused_until(d->bucket) > now) {
        end_probe(c, false);
        bucket_cancel(d->bucket, now);
        breaker_record(d->breaker, now, BREAKER_IGNORED);
        gate(c);
        return;
    }
    launch(c);
}

/* Deadline → breaker → limiter → attempt. */
static void gate(struct call *c)
{
    int64_t now = worker_now_ms(c->w);
    struct dependency *d = dep_of(c);
    int64_t retry_after = 0;

    if (now >= c->deadline_ms) {
        snprintf(c->error, sizeof(c->error), "deadline passed before the attempt could start");
        finish(c, CALL_DEADLINE);
        return;
    }
    bool allowed = breaker_allow(d->breaker, now, &retry_after);
    app_log_breaker_transitions(worker_app(c->w), c->dep); /* open -> half-open happens here */
    if (!allowed) {
        c->retry_after_ms = retry_after;
        snprintf(c->error, sizeof(c->error), "circuit open for %s", d->name);
        finish(c, CALL_BREAKER_OPEN);
        return;
    }
    if (!pass_throttle(c, d, now))
        return;
    int64_t max_wait = c->low_priority ? 0 : c->deadline_ms - now;
    int64_t wait = bucket_reserve(d->bucket, now, max_wait);
    if (wait < 0) {
        end_probe(c, false);
        breaker_record(d->breaker, now, BREAKER_IGNORED);
        int64_t until = bucket_paused_until(d->bucket); /* INT64_MIN when never paused */
        c->retry_after_ms = until > now ? until - now : CALL_DEFAULT_RETRY_AFTER_MS;
        snprintf(c->error, sizeof(c->error), "%s rate limit: no token %s", d->name,
                 c->low_priority ? "available now (low priority never waits)"
                                 : "before the deadline");
        metrics_limiter_refusal(c->dep, c->low_priority ? AGENT_PRIORITY_LOW : AGENT_PRIORITY_HIGH);
        log_info("limiter refused", LF_S("request_id", c->request_id), LF_S("dependency", d->name),
                 LF_S("priority", c->low_priority ? "low" : "high"));
        finish(c, CALL_RATE_LIMITED);
        return;
    }
    metrics_limiter_wait(c->dep, (double)wait / 1000.0);
    if (wait > 0) {
        log_debug("limiter wait", LF_S("request_id", c->request_id), LF_S("dependency", d->name),
                  LF_I("delay_ms", wait));
        c->state = ST_TOKEN_WAIT;
        c->timer.fn = on_token_timer;
        timerheap_arm(worker_timers(c->w), &c->timer, now + wait);
        return;
    }
    launch(c);
}

void call_start(struct worker *w, struct call *c)
{
    c->w = w;
    c->attempts = 0;
    c->counted_request = false;
    c->retry_after_ms = 0;
    c->probe = false;
    c->throttled_retries = 0;
    c->outcome = CALL_OK;
    c->timer.arg = c;
    c->timer.fn = on_gate_timer;
    c->state = ST_BACKOFF;
    /* Deferred to the loop so done() is never called from inside call_start. */
    timerheap_arm(worker_timers(w), &c->timer, worker_now_ms(w));
}

/* Transient failure: schedule another attempt or give up. */
static void retry_or_give_up(struct call *c, int64_t server_delay_ms, const char *reason)
{
    const struct agentd_config *cfg = cfg_of(c);
    struct dependency *d = dep_of(c);
    int64_t now = worker_now_ms(c->w);
    int retries_done = c->attempts - 1 - c->throttled_retries;

    if (retries_done >= cfg->retry_max) {
        c->retry_after_ms = server_delay_ms > 0 ? server_delay_ms : CALL_DEFAULT_RETRY_AFTER_MS;
        finish(c, CALL_EXHAUSTED);
        return;
    }
    int64_t delay = server_delay_ms >= 0
                        ? server_delay_ms
                        : backoff_full_jitter_ms(retries_done, cfg->retry_initial_ms,
                                                 cfg->retry_max_delay_ms, worker_rng(c->w));
    if (now + delay >= c->deadline_ms) {
        /* The wait would end past the deadline: answer now, tell the client when to come back. */
        c->retry_after_ms = delay > 0 ? delay : CALL_DEFAULT_RETRY_AFTER_MS;
        log_info("retry skipped: would pass deadline", LF_S("request_id", c->request_id),
                 LF_S("dependency", d->name), LF_I("delay_ms", delay), LF_S("reason", reason));
        finish(c, CALL_EXHAUSTED);
        return;
    }
    bool told_when = c->status == 429 && server_delay_ms > 0;
    if (!told_when && !retry_budget_try_spend(d->budget, now)) {
        metrics_retry_budget_exhausted(c->dep);
        c->retry_after_ms = delay > 0 ? delay : CALL_DEFAULT_RETRY_AFTER_MS;
        log_warn("retry budget exhausted", LF_S("request_id", c->request_id),
                 LF_S("dependency", d->name), LF_S("reason", reason));
        finish(c, CALL_EXHAUSTED);
        return;
    }
    metrics_retry(c->dep, c->status == 429                      ? METRICS_RETRY_HTTP_429
                          : c->status >= 200 && c->status < 300 ? METRICS_RETRY_MALFORMED
                          : c->status > 0                       ? METRICS_RETRY_HTTP_5XX
                          : strcmp(reason, "timeout") == 0      ? METRICS_RETRY_TIMEOUT
                                                                : METRICS_RETRY_CONNECTION_ERROR);
    log_info("retry scheduled", LF_S("request_id", c->request_id), LF_S("dependency", d->name),
             LF_I("attempt", c->attempts), LF_I("delay_ms", delay), LF_S("reason", reason));
    c->state = ST_BACKOFF;
    c->timer.fn = on_gate_timer;
    timerheap_arm(worker_timers(c->w), &c->timer, now + delay);
}

void call_on_transfer_done(CURL *easy, CURLcode result)
{
    struct call *c = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    worker_give_easy(c->w, easy);
    c->easy = NULL;
    c->status = status;

    struct dependency *d = dep_of(c);
    const struct agentd_config *cfg = cfg_of(c);
    int64_t now = worker_refresh_now(c->w);
    int64_t duration = now - c->attempt_started_ms;
    char reason[64];

    /* The throttle probe is over unless a new 429 pause (below) takes its place. */
    if (result != CURLE_OK || status != 429)
        end_probe(c, result == CURLE_OK);
    if (result != CURLE_OK) {
        if (c->resp_overflow)
            snprintf(c->error, sizeof(c->error), "response larger than %zu bytes",
                     c->max_response_bytes);
        else if (!c->error[0])
            snprintf(c->error, sizeof(c->error), "%s", curl_easy_strerror(result));
        snprintf(reason, sizeof(reason), "%s",
                 result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection error");
        log_warn("upstream attempt failed", LF_S("request_id", c->request_id),
                 LF_S("dependency", d->name), LF_I("attempt", c->attempts),
                 LF_I("duration_ms", duration), LF_S("reason", c->error));
        c->status = 0;
        if (c->dep == DEP_ANTHROPIC)
            metrics_llm_attempt(result == CURLE_OPERATION_TIMEDOUT
                                    ? METRICS_ATTEMPT_TIMEOUT
                                    : METRICS_ATTEMPT_CONNECTION_ERROR,
                                0);
        breaker_record(d->breaker, now, BREAKER_FAILURE);
        app_log_breaker_transitions(worker_app(c->w), c->dep);
        retry_or_give_up(c, -1, reason);
        return;
    }
    log_at(status >= 200 && status < 300 ? LOG_INFO : LOG_WARN, "upstream attempt",
           LF_S("request_id", c->request_id), LF_S("dependency", d->name),
           LF_I("attempt", c->attempts), LF_I("status", status), LF_I("duration_ms", duration),
           LF_S("upstream_request_id", c->upstream_request_id[0] ? c->upstream_request_id : NULL));
    if (c->dep == DEP_ANTHROPIC)
        metrics_llm_attempt(status >= 200 && status < 300 ? METRICS_ATTEMPT_SUCCESS
                                                          : METRICS_ATTEMPT_HTTP_ERROR,
                            (int)status);
    if (status >= 200 && status < 300) {
        breaker_record(d->breaker, now, BREAKER_SUCCESS);
        app_log_breaker_transitions(worker_app(c->w), c->dep);
        finish(c, CALL_OK);
        return;
    }
    int should = backoff_parse_should_retry(c->hdr_should_retry[0] ? c->hdr_should_retry : NULL);
    if (backoff_classify_status(status, should) == BACKOFF_PERMANENT) {
        breaker_record(d->breaker, now, BREAKER_IGNORED);
        snprintf(c->error, sizeof(c->error), "%s answered HTTP %ld", d->name, status);
        finish(c, CALL_PERMANENT);
        return;
    }
    /* Transient. 429 is the limiter's business, not the breaker's. */
    breaker_record(d->breaker, now, status == 429 ? BREAKER_IGNORED : BREAKER_FAILURE);
    app_log_breaker_transitions(worker_app(c->w), c->dep);
    int64_t server_delay =
        backoff_retry_after_ms(c->hdr_retry_after_ms[0] ? c->hdr_retry_after_ms : NULL,
                       c->hdr_retry_after[0] ? c->hdr_retry_after : NULL, clock_wall_ms());
    if (server_delay > cfg->retry_after_cap_ms)
        server_delay = cfg->retry_after_cap_ms;
    if (status == 429 && server_delay > 0) {
        bucket_pause_until(d->bucket, now + server_delay); /* also re-arms the probe */
        c->probe = false;
        c->throttled_retries++;
    } else {
        end_probe(c, false);
    }
    snprintf(c->error, sizeof(c->error), "%s answered HTTP %ld", d->name, status);
    snprintf(reason, sizeof(reason), "http %ld", status);
    retry_or_give_up(c, server_delay, reason);
}

void call_retry_malformed(struct call *c, const char *why)
{
    struct dependency *d = dep_of(c);
    int64_t now = worker_refresh_now(c->w);
    snprintf(c->error, sizeof(c->error), "%s", why);
    /* The attempt was recorded as a success at the HTTP level; a broken body
       is still a failure of the dependency. */
    breaker_record(d->breaker, now, BREAKER_FAILURE);
    c->outcome = CALL_EXHAUSTED;
    retry_or_give_up(c, -1, "malformed response");
}

void call_cancel(struct call *c)
{
    if (!c->w)
        return;
    struct dependency *d = dep_of(c);
    int64_t now = worker_now_ms(c->w);
    timerheap_cancel(worker_timers(c->w), &c->timer);
    switch ((enum call_state)c->state) {
    case ST_TOKEN_WAIT:
        end_probe(c, false);
        bucket_cancel(d->bucket, now);
        breaker_record(d->breaker, now, BREAKER_IGNORED);
        break;
    case ST_IN_FLIGHT:
        if (c->easy) {
            curl_multi_remove_handle(worker_multi(c->w), c->easy);
            curl_easy_cleanup(c->easy);
            c->easy = NULL;
        }
        end_probe(c, false);
        breaker_record(d->breaker, now, BREAKER_IGNORED);
        break;
    default:
        break;
    }
    c->state = ST_IDLE;
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
