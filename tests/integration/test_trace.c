/*
 * test_trace.c — traces end to end: agentd exports OTLP/HTTP JSON to a
 * receiver in this test, and tests/contracts/validate_otlp.py checks what it
 * got: decoded with the official opentelemetry-proto definitions
 * (tests/contracts/otlp-decode.sh, protobufjs), then the parent/child links
 * (client span -> invoke_agent -> chat / execute_tool), the GenAI attributes
 * and the traceparent every upstream call carried. An invalid traceparent
 * starts a new trace; a collector that fails costs the run nothing and its
 * spans are counted as dropped; request_id and trace_id share log lines.
 */
#include <check.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define TRACE_ID  "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT_ID "00f067aa0ba902b7"
#define STATE     "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"

static struct harness H;

/* ---- the OTLP receiver: POST /v1/traces bodies, kept in order ---------------------------- */

#define RECEIVER_MAX_BODY (4u << 20)

static struct receiver {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    char *bodies; /* JSON lines */
    size_t len;
    int posts;
    int fail_status; /* 0 = answer 200 */
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct upload {
    char *buf;
    size_t len;
    bool too_big;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **state)
{
    (void)cls;
    (void)version;
    struct upload *u = *state;
    if (!u) {
        *state = calloc(1, sizeof(struct upload));
        return *state ? MHD_YES : MHD_NO;
    }
    if (*size) {
        if (u->len + *size > RECEIVER_MAX_BODY) {
            u->too_big = true;
        } else {
            char *nb = realloc(u->buf, u->len + *size + 1);
            if (!nb)
                return MHD_NO;
            u->buf = nb;
            memcpy(u->buf + u->len, data, *size);
            u->len += *size;
        }
        *size = 0;
        return MHD_YES;
    }
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    bool ok = strcmp(method, "POST") == 0 && strcmp(url, "/v1/traces") == 0 && u->buf &&
              !u->too_big && ct && strncmp(ct, "application/json", 16) == 0;
    pthread_mutex_lock(&R.mu);
    int status = ok ? (R.fail_status ? R.fail_status : 200) : 400;
    R.posts++;
    if (ok && !R.fail_status) {
        u->buf[u->len] = '\0';
        /* One body per line: JSON has no raw newline outside strings, and compact JSON none. */
        char *nb = realloc(R.bodies, R.len + u->len + 2);
        if (nb) {
            R.bodies = nb;
            memcpy(R.bodies + R.len, u->buf, u->len);
            R.len += u->len;
            R.bodies[R.len++] = '\n';
            R.bodies[R.len] = '\0';
        }
    }
    pthread_mutex_unlock(&R.mu);
    static const char answer[] = "{}";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(2, (void *)answer, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    enum MHD_Result r = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct upload *u = *state;
    if (u) {
        free(u->buf);
        free(u);
    }
    *state = NULL;
}

static void receiver_start(int fail_status)
{
    R.fail_status = fail_status;
    R.posts = 0;
    R.len = 0;
    R.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                           on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                           MHD_OPTION_END);
    ck_assert_ptr_nonnull(R.d);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(R.d, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert_ptr_nonnull(di);
    R.port = di->port;
}

static void receiver_stop(void)
{
    if (R.d)
        MHD_stop_daemon(R.d);
    R.d = NULL;
    free(R.bodies);
    R.bodies = NULL;
    R.len = 0;
}

/* Waits until a received body holds needle (true) or timeout_ms passes (false). */
static bool receiver_wait_for(const char *needle, int timeout_ms)
{
    int64_t end = harness_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&R.mu);
        bool found = R.bodies && strstr(R.bodies, needle);
        pthread_mutex_unlock(&R.mu);
        if (found)
            return true;
        if (harness_now_ms() > end)
            return false;
        usleep(20000);
    }
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void start_traced(int fail_status, const char *extra)
{
    receiver_start(fail_status);
    static char endpoint[96];
    snprintf(endpoint, sizeof(endpoint), "AGENTD_OTLP_ENDPOINT=http://127.0.0.1:%d/v1/traces",
             R.port);
    const char *env[] = {endpoint, "AGENTD_OTLP_INTERVAL_MS=50", "AGENTD_OTLP_TIMEOUT_MS=1000",
                         extra, NULL};
    harness_start(&H, env);
}

static void teardown(void)
{
    ck_assert_int_eq(harness_stop(&H), 0);
    receiver_stop();
}

static long ask_traced(const char *rid, const char *traceparent, const char *tracestate,
                       const char *input, struct http_resp *r)
{
    char url[128], h_rid[160], h_tp[160], h_ts[600], body[512];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    snprintf(h_rid, sizeof(h_rid), "X-Request-Id: %s", rid);
    snprintf(h_tp, sizeof(h_tp), "traceparent: %s", traceparent);
    snprintf(h_ts, sizeof(h_ts), "tracestate: %s", tracestate);
    snprintf(body, sizeof(body), "{\"input\":\"%s\"}", input);
    const char *hdrs[5] = {"Content-Type: application/json", h_rid};
    size_t n = 2;
    if (traceparent)
        hdrs[n++] = h_tp;
    if (tracestate)
        hdrs[n++] = h_ts;
    ck_assert_int_eq(http_do("POST", url, hdrs, body, strlen(body), false, r), 0);
    return r->status;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs validate_otlp.py on what the receiver got (and the fake's request log); its exit. */
static int validate(const char *args)
{
    char bodies[400], upstream[400], cmd[2048];
    snprintf(bodies, sizeof(bodies), "%s/otlp-bodies.jsonl", H.dir);
    snprintf(upstream, sizeof(upstream), "%s/upstream.json", H.dir);
    pthread_mutex_lock(&R.mu);
    write_file(bodies, R.bodies ? R.bodies : "");
    pthread_mutex_unlock(&R.mu);
    json_t *reqs = fake_requests(&H);
    ck_assert_int_eq(json_dump_file(reqs, upstream, 0), 0);
    json_decref(reqs);
    const char *py = getenv("VALIDATE_OTLP_PY");
    ck_assert_ptr_nonnull(py);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s' --upstream '%s' %s", py, bodies,
             upstream, args);
    return system(cmd);
}

/* The series' value once it is above 0, or its last value after 10 s (the exporter's thread
   counts on its own schedule). */
static double metric_when_positive(const char *series)
{
    int64_t end = harness_now_ms() + 10000;
    double v;
    while ((v = harness_metric(&H, series)) <= 0 && harness_now_ms() < end)
        usleep(50000);
    return v;
}

/* ---- tests --------------------------------------------------------------------------------- */

START_TEST(test_trace_links_client_run_chat_and_tools_with_genai_attributes)
{
    start_traced(0, NULL);
    /* One LLM attempt fails first: the chat span carries both attempts. */
    fake_add_fault(&H, "{\"route\":\"messages\",\"status\":503,\"count\":1}");
    struct http_resp r;
    ck_assert_int_eq(ask_traced("trace-run-1", "00-" TRACE_ID "-" PARENT_ID "-01", STATE,
                                "What is 6 * 7 and the weather in Paris?", &r),
                     200);
    http_resp_free(&r);
    ck_assert_msg(receiver_wait_for("invoke_agent", 10000), "no run span exported");
    ck_assert_int_eq(validate("--trace-id " TRACE_ID " --parent " PARENT_ID " --tracestate '" STATE
                              "' --expect-tools 2 --expect-retry"),
                     0);
    ck_assert_double_gt(harness_metric(&H, "agentd_trace_spans_exported_total"), 3);

    /* The run's log lines carry its trace id beside its request id. */
    ck_assert_int_eq(kill(H.agentd_pid, SIGTERM), 0);
    ck_assert_int_eq(harness_wait_agentd(&H, 30000), 0);
    char *log = harness_read_log(&H);
    size_t with_rid = 0, with_both = 0;
    bool saw_access = false;
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *rid = json_string_value(json_object_get(o, "request_id"));
        const char *tid = json_string_value(json_object_get(o, "trace_id"));
        const char *msg = json_string_value(json_object_get(o, "msg"));
        saw_access |= rid && strcmp(rid, "trace-run-1") == 0 && strcmp(msg, "http request") == 0;
        if (rid && strcmp(rid, "trace-run-1") == 0) {
            with_rid++;
            with_both += tid && strcmp(tid, TRACE_ID) == 0;
        }
        json_decref(o);
    }
    free(log);
    ck_assert_uint_ge(with_rid, 4);
    ck_assert_uint_eq(with_both, with_rid);
    ck_assert(saw_access); /* the access line too */
}
END_TEST

START_TEST(test_trace_invalid_traceparent_starts_a_new_trace)
{
    start_traced(0, NULL);
    struct http_resp r;
    /* Uppercase hex is not W3C: ignored, not an error, and its tracestate goes with it. */
    ck_assert_int_eq(ask_traced("trace-run-2",
                                "00-"
                                "4BF92F3577B34DA6A3CE929D0E0E4736"
                                "-" PARENT_ID "-01",
                                STATE, "What is 1 + 1?", &r),
                     200);
    http_resp_free(&r);
    ck_assert(receiver_wait_for("invoke_agent", 10000));
    pthread_mutex_lock(&R.mu);
    json_t *body = json_loads(R.bodies, JSON_DISABLE_EOF_CHECK, NULL);
    pthread_mutex_unlock(&R.mu);
    ck_assert_ptr_nonnull(body);
    json_t *sp = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(body, "resourceSpans"), 0),
                                       "scopeSpans"),
                       0),
        "spans");
    const char *tid = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(sp, i, s)
    {
        if (strncmp(json_string_value(json_object_get(s, "name")), "invoke_agent", 12) == 0)
            tid = json_string_value(json_object_get(s, "traceId"));
    }
    ck_assert_ptr_nonnull(tid);
    ck_assert_str_ne(tid, "4bf92f3577b34da6a3ce929d0e0e4736");
    char args[128];
    snprintf(args, sizeof(args), "--trace-id %s", tid);
    ck_assert_int_eq(validate(args), 0); /* a root run span, and the upstream saw this trace */
    json_t *reqs = fake_requests(&H);
    json_array_foreach(reqs, i, s)
    {
        ck_assert(json_is_null(json_object_get(json_object_get(s, "headers"), "tracestate")));
    }
    json_decref(reqs);
    json_decref(body);
}
END_TEST

START_TEST(test_trace_failing_collector_costs_the_run_nothing_and_counts_drops)
{
    /* Two failed exports open the exporter's own breaker: later batches are dropped unsent. */
    start_traced(503, "AGENTD_BREAKER_FAILURES=2");
    for (int i = 0; i < 6; i++) {
        struct http_resp r;
        char rid[32];
        snprintf(rid, sizeof(rid), "trace-drop-%d", i);
        ck_assert_int_eq(ask_traced(rid, NULL, NULL, "What is 2 + 2?", &r), 200);
        ck_assert_double_lt(r.seconds, 5.0);
        http_resp_free(&r);
        usleep(200000); /* past AGENTD_OTLP_INTERVAL_MS: each run's spans are a batch */
    }
    ck_assert_double_gt(
        metric_when_positive("agentd_trace_spans_dropped_total{reason=\"export_failed\"}"), 0);
    ck_assert_double_gt(
        metric_when_positive("agentd_trace_spans_dropped_total{reason=\"breaker_open\"}"), 0);
    ck_assert_double_eq(harness_metric(&H, "agentd_trace_spans_exported_total"), 0);
    pthread_mutex_lock(&R.mu);
    ck_assert_int_eq(R.posts, 2); /* then the circuit stayed open (AGENTD_BREAKER_OPEN_MS) */
    pthread_mutex_unlock(&R.mu);
}
END_TEST

START_TEST(test_trace_full_queue_drops_and_counts)
{
    /* A queue of one span, taken only every 50 ms, never holds a whole run's spans. */
    start_traced(0, "AGENTD_OTLP_QUEUE_SPANS=1");
    struct http_resp r;
    ck_assert_int_eq(ask_traced("trace-q", NULL, NULL, "What is 6 * 7?", &r), 200);
    http_resp_free(&r);
    ck_assert_double_gt(
        metric_when_positive("agentd_trace_spans_dropped_total{reason=\"queue_full\"}"), 0);
}
END_TEST

START_TEST(test_trace_without_exporter_passes_the_client_context_on)
{
    /* No AGENTD_OTLP_ENDPOINT: nothing is recorded, but the client's trace goes on unchanged
       to every upstream, and the run's log lines name it. */
    harness_start(&H, NULL);
    struct http_resp r;
    ck_assert_int_eq(ask_traced("trace-off", "00-" TRACE_ID "-" PARENT_ID "-01", STATE,
                                "What is 6 * 7 and the weather in Paris?", &r),
                     200);
    http_resp_free(&r);
    json_t *reqs = fake_requests(&H);
    size_t i, traced = 0;
    json_t *e;
    json_array_foreach(reqs, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "route")), "models") == 0)
            continue;
        json_t *h = json_object_get(e, "headers");
        ck_assert_str_eq(json_string_value(json_object_get(h, "traceparent")),
                         "00-" TRACE_ID "-" PARENT_ID "-01");
        ck_assert_str_eq(json_string_value(json_object_get(h, "tracestate")), STATE);
        traced++;
    }
    json_decref(reqs);
    ck_assert_uint_ge(traced, 4); /* two LLM calls, geocoding, forecast */
    ck_assert_double_eq(harness_metric(&H, "agentd_trace_spans_exported_total"), 0);
    char *log = harness_read_log(&H);
    ck_assert_ptr_nonnull(
        strstr(log, "\"request_id\":\"trace-off\",\"trace_id\":\"" TRACE_ID "\""));
    free(log);
}
END_TEST

START_TEST(test_trace_unsampled_parent_is_passed_on_not_recorded)
{
    start_traced(0, NULL);
    struct http_resp r;
    ck_assert_int_eq(ask_traced("trace-unsampled", "00-" TRACE_ID "-" PARENT_ID "-00", NULL,
                                "What is 1 + 1?", &r),
                     200);
    http_resp_free(&r);
    /* A sampled run after it: once its spans are in, the unsampled run's would have been too. */
    ck_assert_int_eq(ask_traced("trace-sampled", NULL, NULL, "What is 2 + 2?", &r), 200);
    http_resp_free(&r);
    ck_assert(receiver_wait_for("trace-sampled", 10000));
    pthread_mutex_lock(&R.mu);
    ck_assert_ptr_null(strstr(R.bodies, TRACE_ID));
    pthread_mutex_unlock(&R.mu);
    json_t *reqs = fake_requests(&H);
    json_t *first = NULL, *e;
    size_t i;
    json_array_foreach(reqs, i, e)
    {
        if (!first && strcmp(json_string_value(json_object_get(e, "route")), "messages") == 0)
            first = e;
    }
    ck_assert_ptr_nonnull(first);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(first, "headers"), "traceparent")),
        "00-" TRACE_ID "-" PARENT_ID "-00");
    json_decref(reqs);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("otlp");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_trace_links_client_run_chat_and_tools_with_genai_attributes);
    tcase_add_test(tc, test_trace_invalid_traceparent_starts_a_new_trace);
    tcase_add_test(tc, test_trace_failing_collector_costs_the_run_nothing_and_counts_drops);
    tcase_add_test(tc, test_trace_full_queue_drops_and_counts);
    tcase_add_test(tc, test_trace_without_exporter_passes_the_client_context_on);
    tcase_add_test(tc, test_trace_unsampled_parent_is_passed_on_not_recorded);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
