/*
 * test_upstream.c — agentd's connections to the LLM API, counted from the
 * other end: HTTP/2 multiplexing through a real HTTP/2 server (nghttpx,
 * started here in front of the fake upstream; its access log names the
 * client port and protocol of every request), the per-host connection cap
 * over HTTP/1.1 and the connect pace (the fake counts the connections that
 * carried upstream requests, see tests/fake/README.md).
 *
 * nghttpx comes from NGHTTPX_BIN and openssl (for a throw-away certificate)
 * from OPENSSL_BIN (meson finds both; scripts/deps.sh --test installs
 * Debian's nghttp2-proxy and openssl). Without them the HTTP/2 tests fail:
 * they must not pass by not running.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct harness H;
static bool started;
static pid_t nghttpx_pid;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void stop_nghttpx(void)
{
    if (nghttpx_pid > 0) {
        kill(nghttpx_pid, SIGTERM);
        int st;
        for (int i = 0; i < 200 && waitpid(nghttpx_pid, &st, WNOHANG) == 0; i++)
            sleep_ms(10);
        if (waitpid(nghttpx_pid, &st, WNOHANG) == 0) {
            kill(nghttpx_pid, SIGKILL);
            waitpid(nghttpx_pid, &st, 0);
        }
        nghttpx_pid = 0;
    }
}

static void teardown(void)
{
    stop_nghttpx();
    bool was_started = started;
    started = false;
    if (was_started)
        ck_assert_int_eq(harness_stop(&H), 0);
}

/* Runs argv to its end (output to DIR/tools.log); its exit status, -1 when it did not exit. */
static int run_tool(const char *path, char *const argv[])
{
    char log[320];
    snprintf(log, sizeof(log), "%s/tools.log", H.dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(path, argv);
        _exit(127);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *tool_bin(const char *var, const char *package)
{
    const char *path = getenv(var);
    ck_assert_msg(path && *path,
                  "%s is not set: install %s (scripts/deps.sh --test) and reconfigure", var,
                  package);
    return path;
}

/* A self-signed certificate for 127.0.0.1: DIR/cert.pem and DIR/key.pem. */
static void make_certificate(void)
{
    char key[320], cert[320];
    snprintf(key, sizeof(key), "%s/key.pem", H.dir);
    snprintf(cert, sizeof(cert), "%s/cert.pem", H.dir);
    char *argv[] = {"openssl",  "req",
                    "-x509",    "-newkey",
                    "rsa:2048", "-nodes",
                    "-keyout",  key,
                    "-out",     cert,
                    "-days",    "1",
                    "-subj",    "/CN=127.0.0.1",
                    "-addext",  "subjectAltName=IP:127.0.0.1",
                    NULL};
    ck_assert_int_eq(run_tool(tool_bin("OPENSSL_BIN", "openssl"), argv), 0);
}

/* Does an HTTP/2 GET of url answer 200 (TLS: trusting ca; cleartext: prior knowledge)? */
static bool h2_ok(const char *url, const char *ca)
{
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     ca ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    if (ca)
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 1000L);
    FILE *sink = fopen("/dev/null", "w");
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
    long status = 0;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    fclose(sink);
    return status == 200;
}

/* Starts nghttpx on a free port, the fake as its backend: HTTP/2 over TLS (ALPN, with
   DIR/key.pem and DIR/cert.pem) when tls, else cleartext HTTP/2. Its access log
   (DIR/access.log) has one line per request: client port, protocol, status, path. Returns the
   port. */
static int start_nghttpx(bool tls)
{
    const char *path = tool_bin("NGHTTPX_BIN", "nghttp2-proxy");
    int port = harness_free_port();
    char frontend[96], backend[96], access[320], errlog[320], key[320], cert[320];
    snprintf(frontend, sizeof(frontend), "--frontend=127.0.0.1,%d%s", port, tls ? "" : ";no-tls");
    snprintf(key, sizeof(key), "%s/key.pem", H.dir);
    snprintf(cert, sizeof(cert), "%s/cert.pem", H.dir);
    snprintf(backend, sizeof(backend), "--backend=127.0.0.1,%d", H.fake_port);
    snprintf(access, sizeof(access), "--accesslog-file=%s/access.log", H.dir);
    snprintf(errlog, sizeof(errlog), "--errorlog-file=%s/nghttpx.log", H.dir);
    char *argv[] = {"nghttpx",
                    "--conf=/dev/null",
                    "--single-process",
                    "--workers=1",
                    frontend,
                    backend,
                    access,
                    "--accesslog-format=$remote_port $alpn $status $path",
                    errlog,
                    "--no-ocsp",
                    tls ? key : NULL,
                    cert,
                    NULL};
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(path, argv);
        _exit(127);
    }
    nghttpx_pid = pid;
    char url[128];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d/_admin/health", tls ? "https" : "http", port);
    int64_t until = harness_now_ms() + 10000;
    while (!h2_ok(url, tls ? cert : NULL)) {
        int st;
        ck_assert_msg(waitpid(pid, &st, WNOHANG) == 0, "nghttpx exited (see %s/nghttpx.log)",
                      H.dir);
        ck_assert_msg(harness_now_ms() < until, "nghttpx did not answer on port %d", port);
        sleep_ms(20);
    }
    return port;
}

/* Starts the fake, then agentd with env (NULL-terminated) on top of the harness defaults and
   the settings every test here needs: no limiter in the way, no readiness probes counted. */
static void start_agentd(const char *const *env)
{
    const char *all[32] = {"AGENTD_READY_INTERVAL_MS=3600000", "AGENTD_LLM_RATE=100000",
                           "AGENTD_LLM_BURST=100000"};
    size_t n = 3;
    for (size_t i = 0; env && env[i]; i++) {
        ck_assert_uint_lt(n, 31);
        all[n++] = env[i];
    }
    all[n] = NULL;
    harness_start_agentd(&H, all);
}

/* n concurrent POST /v1/agent runs (one connection each); returns how many answered 200. */
static int run_concurrently(int n)
{
    static const char body[] = "{\"input\":\"hello\"}";
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", H.agentd_url);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    CURL **e = calloc((size_t)n, sizeof(*e));
    ck_assert_ptr_nonnull(e);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    FILE *sink = fopen("/dev/null", "w");
    for (int i = 0; i < n; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 60000L);
        curl_easy_setopt(e[i], CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, sink);
        curl_multi_add_handle(m, e[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        long status = 0;
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &status);
        ok += status == 200;
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
    }
    fclose(sink);
    curl_slist_free_all(hdrs);
    free(e);
    curl_multi_cleanup(m);
    return ok;
}

/* GET /_admin/stats of the fake: field. */
static long fake_stat(const char *field)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/_admin/stats", H.fake_url);
    struct http_resp r;
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    json_t *o = r.body ? json_loads(r.body, 0, NULL) : NULL;
    ck_assert_msg(json_is_integer(json_object_get(o, field)), "no %s in %s", field, r.body);
    long v = (long)json_integer_value(json_object_get(o, field));
    json_decref(o);
    http_resp_free(&r);
    return v;
}

static void reset_fake_stats(void)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/_admin/stats", H.fake_url);
    struct http_resp r;
    ck_assert_int_eq(http_do("DELETE", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}

/* The arrival times (fake ms) of the logged /v1/messages requests: first and last. */
static void messages_span(int64_t *first, int64_t *last)
{
    json_t *a = fake_requests(&H);
    size_t i;
    json_t *e;
    *first = INT64_MAX;
    *last = INT64_MIN;
    json_array_foreach(a, i, e)
    {
        const char *route = json_string_value(json_object_get(e, "route"));
        if (!route || strcmp(route, "messages") != 0)
            continue;
        int64_t ts = (int64_t)json_integer_value(json_object_get(e, "ts_ms"));
        if (ts < *first)
            *first = ts;
        if (ts > *last)
            *last = ts;
    }
    json_decref(a);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Reads nghttpx's access log after it stopped: every /v1/messages request must have been
   answered 200 over `alpn`; returns how many there were and, in *conns, on how many client
   connections (distinct client ports) they came. */
static int read_access_log(const char *alpn, int *conns)
{
    enum { MAX_PORTS = 4096 };
    static int ports[MAX_PORTS];
    char path[320], line[512];
    snprintf(path, sizeof(path), "%s/access.log", H.dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n_ports = 0, messages = 0;
    while (fgets(line, sizeof(line), f)) {
        int cport, status;
        char proto[32], req[256];
        if (sscanf(line, "%d %31s %d %255s", &cport, proto, &status, req) != 4 ||
            strcmp(req, "/v1/messages") != 0)
            continue;
        messages++;
        ck_assert_msg(strcmp(proto, alpn) == 0, "not %s: %s", alpn, line);
        ck_assert_int_eq(status, 200);
        bool seen = false;
        for (int i = 0; i < n_ports && !seen; i++)
            seen = ports[i] == cport;
        if (!seen && n_ports < MAX_PORTS)
            ports[n_ports++] = cport;
    }
    fclose(f);
    *conns = n_ports;
    return messages;
}

/* 200 runs at once against an HTTP/2 server that the LLM URL reaches over TLS (the real API's
   case: ALPN offers h2). Every LLM call goes over HTTP/2, on a few connections (2 workers;
   nghttpx allows 100 streams per connection), not one per run. */
START_TEST(test_http2_over_tls_multiplexes_runs_on_few_connections)
{
    enum { RUNS = 200 };
    harness_start_fake(&H);
    started = true;
    /* Every answer takes 500 ms, so the runs overlap on the wire. */
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":500}");
    make_certificate();
    int port = start_nghttpx(true);
    char base[96], ca[340];
    snprintf(base, sizeof(base), "ANTHROPIC_BASE_URL=https://127.0.0.1:%d", port);
    snprintf(ca, sizeof(ca), "AGENTD_LLM_CA_FILE=%s/cert.pem", H.dir);
    start_agentd((const char *const[]){base, ca, NULL});
    /* The readiness probe of the API trusts the same CA. */
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/health/ready", H.agentd_url);
    long status = 0;
    for (int64_t until = harness_now_ms() + 10000; status != 200 && harness_now_ms() < until;) {
        struct http_resp r;
        ck_assert_int_eq(http_do("GET", ready, NULL, NULL, 0, false, &r), 0);
        status = r.status;
        http_resp_free(&r);
        if (status != 200)
            sleep_ms(50);
    }
    ck_assert_int_eq(status, 200);

    ck_assert_int_eq(run_concurrently(RUNS), RUNS);
    ck_assert_uint_eq(fake_count(&H, "messages"), RUNS);
    stop_nghttpx(); /* flushes the log */
    int conns = 0;
    ck_assert_int_eq(read_access_log("h2", &conns), RUNS);
    /* One connection per worker carries 100 streams; a second may open when the first is full.
       Over HTTP/1.1 it would be one per run. */
    ck_assert_msg(conns >= 1 && conns <= 8, "%d connections for %d runs", conns, RUNS);
}
END_TEST

/* Cleartext HTTP/2 with prior knowledge. libcurl before 8.0.0 fails every stream but the first
   on a new such connection, so agentd refuses the setting there with a message that says so;
   with a fixed libcurl, 200 runs multiplex on a few h2c connections. */
START_TEST(test_http2_prior_knowledge_multiplexes_or_is_refused_on_old_libcurl)
{
    enum { RUNS = 200 };
    harness_start_fake(&H);
    started = true;
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":500}");
    int port = start_nghttpx(false);
    char base[96];
    snprintf(base, sizeof(base), "ANTHROPIC_BASE_URL=http://127.0.0.1:%d", port);
    const char *const env[] = {base, "AGENTD_LLM_HTTP2=prior-knowledge", NULL};
    if (curl_version_info(CURLVERSION_NOW)->version_num < 0x080000) {
        ck_assert_int_ne(harness_run_agentd(&H, "--check-config", env, 10000), 0);
        char *log = harness_read_log(&H);
        ck_assert_msg(strstr(log, "AGENTD_LLM_HTTP2: prior-knowledge needs libcurl 8.0.0"),
                      "no refusal in: %s", log);
        free(log);
        return;
    }
    start_agentd(env);
    ck_assert_int_eq(run_concurrently(RUNS), RUNS);
    stop_nghttpx();
    int conns = 0;
    ck_assert_int_eq(read_access_log("h2c", &conns), RUNS);
    ck_assert_msg(conns >= 1 && conns <= 8, "%d connections for %d runs", conns, RUNS);
}
END_TEST

/* HTTP/1.1 with AGENTD_UPSTREAM_MAX_CONNECTIONS=4 (2 workers, 2 each): 40 runs at once all
   succeed, the fake never sees more than 4 connections, and the runs queue for them (10 rounds
   of a 300 ms answer cannot take less than 3 s). */
START_TEST(test_http1_connection_cap_queues_runs_and_holds)
{
    enum { RUNS = 40, CAP = 4, DELAY_MS = 300 };
    harness_start_fake(&H);
    started = true;
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":300}");
    start_agentd(
        (const char *const[]){"AGENTD_LLM_HTTP2=off", "AGENTD_UPSTREAM_MAX_CONNECTIONS=4", NULL});
    reset_fake_stats();
    int64_t t0 = harness_now_ms();
    ck_assert_int_eq(run_concurrently(RUNS), RUNS);
    int64_t took = harness_now_ms() - t0;
    ck_assert_uint_eq(fake_count(&H, "messages"), RUNS);
    long peak = fake_stat("connections_peak");
    long total = fake_stat("connections_total");
    ck_assert_msg(peak >= 1 && peak <= CAP, "peak %ld connections, cap %d", peak, CAP);
    /* Kept alive and reused, not reopened per run. */
    ck_assert_msg(total <= 2 * CAP, "%ld connections opened for %d runs", total, RUNS);
    ck_assert_msg(took >= (RUNS / CAP) * DELAY_MS - 100, "took only %lld ms", (long long)took);
    ck_assert_msg(took < 30000, "took %lld ms", (long long)took);
}
END_TEST

/* The connect pace: 20 new connections per second for the process (2 workers), burst 2, and 20
   runs that each need their own connection (every answer takes 1 s): the first two start at
   once, the rest one by one, so the last request reaches the fake at least ~0.9 s after the
   first (unpaced, all 20 arrive within a few ms). Every run still succeeds. */
START_TEST(test_http1_new_connections_are_paced)
{
    enum { RUNS = 20 };
    harness_start_fake(&H);
    started = true;
    fake_add_fault(&H, "{\"route\":\"messages\",\"delay_ms\":1000}");
    start_agentd((const char *const[]){"AGENTD_LLM_HTTP2=off", "AGENTD_UPSTREAM_CONNECT_RATE=20",
                                       "AGENTD_UPSTREAM_CONNECT_BURST=2", NULL});
    reset_fake_stats();
    fake_clear_requests(&H);
    ck_assert_int_eq(run_concurrently(RUNS), RUNS);
    ck_assert_uint_eq(fake_count(&H, "messages"), RUNS);
    ck_assert_int_eq(fake_stat("connections_total"), RUNS);
    int64_t first, last;
    messages_span(&first, &last);
    /* 18 paced connections at 10/s per worker, 9 each: the last at ~0.9 s. */
    ck_assert_msg(last - first >= 700, "20 connections opened within %lld ms",
                  (long long)(last - first));
    ck_assert_msg(last - first < 10000, "spread %lld ms", (long long)(last - first));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("upstream");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_http2_over_tls_multiplexes_runs_on_few_connections);
    tcase_add_test(tc, test_http2_prior_knowledge_multiplexes_or_is_refused_on_old_libcurl);
    tcase_add_test(tc, test_http1_connection_cap_queues_runs_and_holds);
    tcase_add_test(tc, test_http1_new_connections_are_paced);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
