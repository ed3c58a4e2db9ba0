/*
 * tracer.c — the OTLP/HTTP span exporter's thread (see tracer.h): waits for
 * a batch to fall due (trace_queue decides), encodes it (trace_encode),
 * asks the breaker, POSTs it with its own blocking curl handle, and counts
 * what happened. Nothing here runs on a worker.
 */
#include "agentd/tracer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "agentd/breaker.h"
#include "agentd/clock.h"
#include "agentd/log.h"
#include "agentd/metrics.h"

struct tracer {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct trace_queue q; /* under mu */
    bool stopping;        /* under mu */
    pthread_t thread;
    /* the exporter thread's own */
    struct breaker *breaker;
    CURL *easy;
    struct curl_slist *headers;
    char *endpoint, *service;
    int64_t timeout_ms;
    size_t batch;
    struct trace_span **spans; /* batch slots */
};

static size_t discard_body(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data;
    (void)arg;
    return size * nmemb;
}

/* One POST of body; true when the collector took it (2xx). */
static bool post(struct tracer *t, const char *body, long *ret_status, char *err)
{
    CURL *e = t->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, t->endpoint);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
    err[0] = '\0';
    CURLcode rc = curl_easy_perform(e);
    *ret_status = 0;
    if (rc != CURLE_OK) {
        if (!err[0])
            snprintf(err, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
        return false;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, ret_status);
    if (*ret_status < 200 || *ret_status > 299) {
        snprintf(err, CURL_ERROR_SIZE, "collector answered HTTP %ld", *ret_status);
        return false;
    }
    return true;
}

static void export_batch(struct tracer *t, struct trace_span **spans, size_t n)
{
    int64_t now = clock_now_ms();
    if (!breaker_allow(t->breaker, now, NULL)) {
        metrics_trace_spans_dropped(METRICS_TRACE_BREAKER_OPEN, n);
        return;
    }
    char *body = trace_encode(spans, n, t->service, AGENTD_VERSION, NULL);
    char err[CURL_ERROR_SIZE];
    long status = 0;
    bool ok = body && post(t, body, &status, err);
    free(body);
    /* 4xx is the collector refusing these spans, not the collector being down. */
    breaker_record(t->breaker, clock_now_ms(),
                   ok                              ? BREAKER_SUCCESS
                   : status >= 400 && status < 500 ? BREAKER_IGNORED
                                                   : BREAKER_FAILURE);
    if (ok) {
        metrics_trace_spans_exported(n);
        return;
    }
    metrics_trace_spans_dropped(METRICS_TRACE_EXPORT_FAILED, n);
    log_warn("span export failed", LF_I("spans", n), LF_I("status", status),
             LF_S("reason", body ? err : "out of memory"));
}

static void log_breaker(struct tracer *t)
{
    struct breaker_transition tr[BREAKER_TRANSITION_RING];
    size_t n = breaker_drain_transitions(t->breaker, tr, BREAKER_TRANSITION_RING);
    for (size_t i = 0; i < n; i++)
        log_warn("span exporter circuit", LF_S("from", breaker_state_name(tr[i].from)),
                 LF_S("to", breaker_state_name(tr[i].to)), LF_S("reason", tr[i].reason));
}

static void wait_until(struct tracer *t, int64_t due_ms)
{
    /* The queue's clock is CLOCK_MONOTONIC, and so is the condition variable's. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t wait = due_ms - now;
    if (wait > 1000)
        wait = 1000; /* re-checks now and then whatever the queue says */
    if (wait <= 0)
        return;
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&t->wake, &t->mu, &ts);
}

static void *exporter_main(void *arg)
{
    struct tracer *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        bool stopping = t->stopping;
        size_t n = trace_queue_take(&t->q, clock_now_ms(), stopping, t->spans, t->batch);
        if (n == 0) {
            if (stopping)
                break;
            wait_until(t, trace_queue_due_ms(&t->q));
            continue;
        }
        pthread_mutex_unlock(&t->mu);
        export_batch(t, t->spans, n);
        log_breaker(t);
        for (size_t i = 0; i < n; i++)
            t->spans[i] = trace_span_free(t->spans[i]);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void tracer_destroy(struct tracer *t)
{
    trace_queue_fini(&t->q);
    breaker_free(t->breaker);
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    free(t->endpoint);
    free(t->service);
    free(t->spans);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

struct tracer *tracer_new(const struct agentd_config *cfg, const struct breaker_config *bc,
                          int *ret_err)
{
    *ret_err = 0;
    if (!cfg->otlp_endpoint || !cfg->otlp_endpoint[0])
        return NULL;
    struct tracer *t = calloc(1, sizeof(*t));
    if (!t) {
        *ret_err = -ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    t->batch = (size_t)cfg->otlp_batch_spans;
    t->timeout_ms = cfg->otlp_timeout_ms;
    t->breaker = breaker_new("otlp", bc);
    t->easy = curl_easy_init();
    t->headers = curl_slist_append(NULL, "content-type: application/json");
    t->endpoint = strdup(cfg->otlp_endpoint);
    t->service = strdup(cfg->otlp_service_name ? cfg->otlp_service_name : "agentd");
    t->spans = calloc(t->batch, sizeof(*t->spans));
    if (trace_queue_init(&t->q, (size_t)cfg->otlp_queue_spans, t->batch, cfg->otlp_interval_ms) <
            0 ||
        !t->breaker || !t->easy || !t->headers || !t->endpoint || !t->service || !t->spans) {
        tracer_destroy(t);
        *ret_err = -ENOMEM;
        return NULL;
    }
    int r = pthread_create(&t->thread, NULL, exporter_main, t);
    if (r != 0) {
        tracer_destroy(t);
        *ret_err = -r;
        return NULL;
    }
    return t;
}

struct tracer *tracer_free(struct tracer *t)
{
    if (!t)
        return NULL;
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    tracer_destroy(t);
    return NULL;
}

void tracer_submit(struct tracer *t, struct trace_span *s)
{
    if (!s)
        return;
    if (!t) {
        trace_span_free(s);
        return;
    }
    int64_t now = clock_now_ms();
    pthread_mutex_lock(&t->mu);
    bool queued = !t->stopping && trace_queue_push(&t->q, s, now);
    /* The thread learns of a new first span (its interval starts) and of a full batch. */
    if (queued && (t->q.len == 1 || trace_queue_due_ms(&t->q) <= now))
        pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
    if (!queued) {
        trace_span_free(s);
        metrics_trace_spans_dropped(METRICS_TRACE_QUEUE_FULL, 1);
    }
}
