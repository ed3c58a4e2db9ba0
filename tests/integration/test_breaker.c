/*
 * test_breaker.c — the LLM circuit breaker end to end, under load: the real
 * agentd, with its default breaker and retry settings, driven by a few hundred
 * runs in flight against the fake upstream.
 *
 * - A blip (every LLM request reset for 0.25 s) is covered by the retries:
 *   ≥ 99.5 % of the runs succeed, none is failed fast by the breaker, the
 *   breaker never opens and the upstream sees its full rate again a second
 *   after the blip.
 * - An outage (every LLM request reset until cleared) opens it: runs then fail
 *   fast with a 503 JSON error naming the circuit, the upstream only sees
 *   probes, and once the upstream is back a probe closes it again.
 *
 * The load is a closed loop on one curl multi handle: each of N connections
 * posts a run, and posts the next one as soon as the answer is in (100 ms
 * later after an error, as a client backing off would).
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static struct harness H;
static bool started;

/* Every LLM call takes about a second (the fake's [slow:N] marker, 900..1099 ms depending on the
   connection), so that the clients' runs are really in flight at the same time; the spread keeps
   the connections from moving in step. */
#define RUN_SLOW_MS   900
#define RUN_SPREAD_MS 200

/* The default retry settings (the harness shortens them for the other suites), and no LLM rate
   limit: the breaker, not the token bucket, is under test. */
#define DEFAULT_RETRIES                                                                            \
    "AGENTD_RETRY_INITIAL_MS=1000", "AGENTD_RETRY_MAX_DELAY_MS=60000", "AGENTD_LLM_RATE=100000",   \
        "AGENTD_LLM_BURST=100000", "AGENTD_READY_INTERVAL_MS=3600000"

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void teardown(void)
{
    if (started)
        harness_stop(&H);
    started = false;
}

/* ---- a closed-loop load on a curl multi handle ------------------------------------ */

#define LOAD_MAX_CONNS 256
#define LOAD_MAX_RUNS  20000
#define LOAD_BODY_CAP  2048

struct run_result {
    int64_t start_ms, end_ms; /* harness_now_ms() */
    long status;              /* 0 = transport error */
    char error[96];           /* error.type: error.message of a failed run */
    bool circuit;             /* 503 whose message names the circuit breaker */
    bool json_error;          /* non-2xx with a JSON error.type and error.message */
};

/* A client waits this long after an error before its next run. */
#define LOAD_ERROR_PAUSE_MS 100

struct conn {
    CURL *easy;
    struct load *load;
    int64_t start_ms;
    int64_t next_ms; /* > 0: idle, posts its next run then */
    char request[64];
    char body[LOAD_BODY_CAP];
    size_t len;
};

struct load {
    CURLM *multi;
    struct curl_slist *headers;
    char url[128];
    struct conn conns[LOAD_MAX_CONNS];
    int nconns;
    struct run_result *runs;
    size_t nruns;
};

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
    struct conn *c = p;
    size_t bytes = size * n;
    size_t room = sizeof(c->body) - 1 - c->len;
    size_t take = bytes < room ? bytes : room;
    memcpy(c->body + c->len, data, take);
    c->len += take;
    c->body[c->len] = '\0';
    return bytes;
}

static void conn_post(struct conn *c)
{
    struct load *l = c->load;
    if (!c->easy) {
        c->easy = curl_easy_init();
        ck_assert_ptr_nonnull(c->easy);
    }
    curl_easy_reset(c->easy);
    curl_easy_setopt(c->easy, CURLOPT_URL, l->url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, l->headers);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->request);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    c->len = 0;
    c->body[0] = '\0';
    c->next_ms = 0;
    c->start_ms = harness_now_ms();
    ck_assert_int_eq(curl_multi_add_handle(l->multi, c->easy), CURLM_OK);
}

static void load_init(struct load *l, int nconns)
{
    memset(l, 0, sizeof(*l));
    ck_assert_int_le(nconns, LOAD_MAX_CONNS);
    l->multi = curl_multi_init();
    ck_assert_ptr_nonnull(l->multi);
    l->headers = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(l->url, sizeof(l->url), "%s/v1/agent", H.agentd_url);
    l->runs = calloc(LOAD_MAX_RUNS, sizeof(*l->runs));
    ck_assert_ptr_nonnull(l->runs);
    l->nconns = nconns;
    for (int i = 0; i < nconns; i++) {
        l->conns[i].load = l;
        snprintf(l->conns[i].request, sizeof(l->conns[i].request),
                 "{\"input\":\"[slow:%d] hello\"}", RUN_SLOW_MS + i * 37 % RUN_SPREAD_MS);
    }
}

static void load_free(struct load *l)
{
    for (int i = 0; i < l->nconns; i++) {
        if (l->conns[i].easy) {
            curl_multi_remove_handle(l->multi, l->conns[i].easy);
            curl_easy_cleanup(l->conns[i].easy);
        }
    }
    curl_multi_cleanup(l->multi);
    curl_slist_free_all(l->headers);
    free(l->runs);
}

/* Records c's answer; returns whether it was a success. */
static bool record(struct load *l, struct conn *c, CURLcode rc)
{
    ck_assert_uint_lt(l->nruns, LOAD_MAX_RUNS);
    struct run_result *r = &l->runs[l->nruns++];
    r->start_ms = c->start_ms;
    r->end_ms = harness_now_ms();
    if (rc == CURLE_OK)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->status >= 200 && r->status < 300)
        return true;
    json_t *o = json_loads(c->body, 0, NULL);
    json_t *err = json_object_get(o, "error");
    const char *type = json_string_value(json_object_get(err, "type"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    r->json_error = type && *type && msg && *msg;
    snprintf(r->error, sizeof(r->error), "%s: %s", type ? type : "-", msg ? msg : "-");
    r->circuit = r->status == 503 && msg && strstr(msg, "circuit") != NULL;
    json_decref(o);
    return false;
}

/* Schedules every connection's first run, spread over the first second. */
static void load_start(struct load *l)
{
    int64_t now = harness_now_ms();
    for (int i = 0; i < l->nconns; i++)
        l->conns[i].next_ms = now + 1 + i * 1000 / l->nconns;
}

/* Drives the load until until_ms; a connection whose run ends posts its next one while
   now < post_until_ms. Returns the number of runs still in flight. */
static int load_drive(struct load *l, int64_t until_ms, int64_t post_until_ms)
{
    int running = 1;
    while (harness_now_ms() < until_ms) {
        ck_assert_int_eq(curl_multi_perform(l->multi, &running), CURLM_OK);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(l->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct conn *c = NULL;
            CURLcode rc = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            bool ok = record(l, c, rc);
            curl_multi_remove_handle(l->multi, c->easy);
            c->next_ms = harness_now_ms() + (ok ? 0 : LOAD_ERROR_PAUSE_MS);
        }
        int64_t now = harness_now_ms();
        int idle = 0;
        for (int i = 0; i < l->nconns; i++) {
            struct conn *c = &l->conns[i];
            if (c->next_ms > 0 && now < post_until_ms && c->next_ms <= now)
                conn_post(c);
            idle += c->next_ms > 0;
        }
        ck_assert_int_eq(curl_multi_perform(l->multi, &running), CURLM_OK);
        if (running == 0 && now >= post_until_ms)
            return 0;
        int n;
        curl_multi_poll(l->multi, NULL, 0, idle > 0 ? 10 : 50, &n);
    }
    return running;
}

/* ---- metrics and the fake's log ---------------------------------------------------- */

/* LLM requests that reached the fake: arrival times (fake clock), and the span of those that
   the fault hit. */
struct upstream_log {
    int64_t *ts;
    size_t n;
    int64_t fault_first, fault_last; /* -1 = none hit */
    size_t fault_hits;
};

static void upstream_log_read(struct upstream_log *u)
{
    json_t *a = fake_requests(&H);
    memset(u, 0, sizeof(*u));
    u->fault_first = u->fault_last = -1;
    u->ts = calloc(json_array_size(a) + 1, sizeof(int64_t));
    ck_assert_ptr_nonnull(u->ts);
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        if (!route || strcmp(route, "messages") != 0)
            continue;
        int64_t ts = json_integer_value(json_object_get(e, "ts_ms"));
        u->ts[u->n++] = ts;
        if (json_is_integer(json_object_get(e, "fault"))) {
            if (u->fault_first < 0)
                u->fault_first = ts;
            u->fault_last = ts;
            u->fault_hits++;
        }
    }
    json_decref(a);
}

/* LLM requests that arrived in [from, to) (fake clock). */
static size_t upstream_in(const struct upstream_log *u, int64_t from, int64_t to)
{
    size_t n = 0;
    for (size_t i = 0; i < u->n; i++)
        n += u->ts[i] >= from && u->ts[i] < to;
    return n;
}

/* Starts agentd (default breaker and retry settings) and the fake, then drives a load of conns
   connections for warm_ms. */
static void start_and_warm_up(struct load *l, int conns, int64_t warm_ms)
{
    static const char *env[] = {DEFAULT_RETRIES, NULL};
    harness_start(&H, env);
    started = true;
    load_init(l, conns);
    int64_t t0 = harness_now_ms();
    load_start(l);
    load_drive(l, t0 + warm_ms, INT64_MAX);
}

/* ---- 1. a blip ---------------------------------------------------------------------- */

START_TEST(test_blip_under_load_is_covered_by_retries_and_the_breaker_stays_closed)
{
    enum { CONNS = 200, WARM_MS = 4000, BLIP_MS = 250, AFTER_MS = 4000 };
    struct load l;
    int64_t t0 = harness_now_ms();
    start_and_warm_up(&l, CONNS, WARM_MS);
    /* The blip: every LLM request that arrives in the next 0.25 s is reset. */
    char fault[128];
    snprintf(fault, sizeof(fault), "{\"route\":\"messages\",\"reset\":true,\"duration_ms\":%d}",
             BLIP_MS);
    fake_add_fault(&H, fault);
    int64_t blip_end = harness_now_ms() + BLIP_MS;
    load_drive(&l, blip_end + AFTER_MS, blip_end + AFTER_MS);
    /* Runs still retrying finish (bounded: 3 retries of at most 1, 2 and 4 s, plus 1 s each). */
    int left = load_drive(&l, harness_now_ms() + 30000, 0);
    ck_assert_msg(left == 0, "%d runs still in flight 30 s after the load stopped", left);

    size_t ok = 0, circuit = 0, other = 0;
    for (size_t i = 0; i < l.nruns; i++) {
        const struct run_result *r = &l.runs[i];
        if (r->status >= 200 && r->status < 300) {
            ok++;
        } else {
            circuit += r->circuit;
            other += !r->circuit;
            fprintf(stderr, "blip: run at +%lld ms failed after %lld ms: %ld %s\n",
                    (long long)(r->start_ms - t0), (long long)(r->end_ms - r->start_ms), r->status,
                    r->error);
            ck_assert_msg(r->status == 0 || r->json_error, "a %ld answer without a JSON error",
                          r->status);
        }
    }
    struct upstream_log u;
    upstream_log_read(&u);
    fprintf(stderr,
            "blip: %zu runs, %zu ok (%.2f%%), %zu failed fast by the breaker, %zu other failures, "
            "%zu LLM requests reset over %lld ms\n",
            l.nruns, ok, 100.0 * (double)ok / (double)l.nruns, circuit, other, u.fault_hits,
            (long long)(u.fault_last - u.fault_first));

    /* The test means something only if the load was real and the blip hit it. */
    ck_assert_uint_ge(l.nruns, 2 * CONNS);
    ck_assert_msg(u.fault_hits >= 10, "the blip reset only %zu LLM requests", u.fault_hits);
    ck_assert_msg(ok * 1000 >= l.nruns * 995, "%zu of %zu runs succeeded (< 99.5%%)", ok, l.nruns);
    ck_assert_uint_eq(circuit, 0);
    ck_assert_double_eq(harness_metric(&H, "agentd_breaker_state{dependency=\"anthropic\"}"), 0);
    ck_assert_double_eq(
        harness_metric(&H,
                       "agentd_breaker_transitions_total{dependency=\"anthropic\",to=\"open\"}"),
        0);

    /* A second after the blip the upstream sees (at least) its rate from before the blip. */
    int64_t before = upstream_in(&u, u.fault_first - 2000, u.fault_first - 1000);
    int64_t after = upstream_in(&u, u.fault_last + 1000, u.fault_last + 2000);
    fprintf(stderr, "blip: LLM requests per second, 1-2 s before it: %lld, 1-2 s after it: %lld\n",
            (long long)before, (long long)after);
    ck_assert_int_gt(before, CONNS / 4);
    ck_assert_msg(after * 10 >= before * 8, "upstream rate after the blip %lld/s, before %lld/s",
                  (long long)after, (long long)before);
    free(u.ts);
    load_free(&l);
}
END_TEST

/* ---- 2. an outage ------------------------------------------------------------------- */

START_TEST(test_outage_under_load_opens_the_breaker_and_runs_fail_fast_with_503)
{
    enum { CONNS = 50, WARM_MS = 2000, OUTAGE_MS = 8000 };
    struct load l;
    start_and_warm_up(&l, CONNS, WARM_MS);
    size_t warm_runs = l.nruns;
    fake_add_fault(&H, "{\"route\":\"messages\",\"reset\":true}");
    int64_t outage = harness_now_ms();
    load_drive(&l, outage + OUTAGE_MS, outage + OUTAGE_MS);
    int left = load_drive(&l, harness_now_ms() + 30000, 0);
    ck_assert_msg(left == 0, "%d runs still in flight 30 s after the load stopped", left);

    /* The breaker opened, and from then on most runs were answered at once from it. */
    ck_assert_double_ge(
        harness_metric(&H,
                       "agentd_breaker_transitions_total{dependency=\"anthropic\",to=\"open\"}"),
        1);
    size_t circuit = 0, fast = 0, first_circuit = 0;
    for (size_t i = warm_runs; i < l.nruns; i++) {
        const struct run_result *r = &l.runs[i];
        if (r->start_ms >= outage && r->status != 0)
            ck_assert_msg(r->status == 503 && r->json_error, "during the outage: %ld", r->status);
        if (r->circuit) {
            if (circuit++ == 0)
                first_circuit = i;
            fast += r->end_ms - r->start_ms < 500;
        }
    }
    fprintf(stderr, "outage: %zu runs, %zu failed fast by the breaker (%zu in < 500 ms)\n",
            l.nruns - warm_runs, circuit, fast);
    ck_assert_msg(circuit > 0, "no run was failed by the breaker");
    ck_assert_msg(l.runs[first_circuit].end_ms - outage < 6000,
                  "the breaker opened %lld ms into the outage",
                  (long long)(l.runs[first_circuit].end_ms - outage));
    ck_assert_msg(fast * 2 >= circuit, "only %zu of %zu breaker answers in < 500 ms", fast,
                  circuit);
    ck_assert_msg(circuit * 2 >= l.nruns - warm_runs, "only %zu of %zu runs failed fast", circuit,
                  l.nruns - warm_runs);

    /* While open, the upstream saw the probes, not the load: far fewer LLM requests in the
       outage's last 2 s than runs answered. */
    struct upstream_log u;
    upstream_log_read(&u);
    size_t late = upstream_in(&u, u.fault_last - 2000, u.fault_last + 1);
    size_t late_runs = 0;
    for (size_t i = warm_runs; i < l.nruns; i++)
        late_runs += l.runs[i].end_ms >= outage + OUTAGE_MS - 2000;
    fprintf(stderr, "outage: LLM requests in its last 2 s: %zu, runs answered then: %zu\n", late,
            late_runs);
    ck_assert_msg(late * 10 <= late_runs, "%zu LLM requests for %zu runs while open", late,
                  late_runs);
    free(u.ts);

    /* The upstream is back: within the (doubled) open interval a probe closes it again. */
    fake_clear_faults(&H);
    json_t *o = NULL;
    long status = 0;
    int64_t until = harness_now_ms() + 40000;
    while (harness_now_ms() < until) {
        status = agent_post(&H, "{\"input\":\"hello\"}", &o);
        json_decref(o);
        o = NULL;
        if (status == 200)
            break;
        sleep_ms(200);
    }
    ck_assert_int_eq(status, 200);
    ck_assert_double_eq(harness_metric(&H, "agentd_breaker_state{dependency=\"anthropic\"}"), 0);
    load_free(&l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("breaker");
    TCase *tc = tcase_create("breaker");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_blip_under_load_is_covered_by_retries_and_the_breaker_stays_closed);
    tcase_add_test(tc, test_outage_under_load_opens_the_breaker_and_runs_fail_fast_with_503);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
