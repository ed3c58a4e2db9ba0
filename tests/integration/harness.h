/*
 * harness.h — integration-test support: starts the fake upstream and the
 * real agentd on ephemeral loopback ports, speaks HTTP to both, and stops
 * them. Binaries come from AGENTD_BIN and FAKE_UPSTREAM_BIN (set by meson).
 */
#ifndef AGENTD_TEST_HARNESS_H
#define AGENTD_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <check.h>
#include <jansson.h>

struct harness {
    pid_t fake_pid, agentd_pid;
    int agentd_exit; /* exit status once reaped by harness_wait_agentd, else -1 */
    int fake_port, agentd_port;
    char dir[256]; /* temp dir: notes/, agentd.log, fake.log */
    char notes_dir[300];
    char log_path[300];
    char fake_url[64];
    char agentd_url[64];
    unsigned agentd_nofile;  /* > 0: agentd's open-file limit (soft and hard), to exhaust it */
    const char *agentd_host; /* AGENTD_LISTEN's host part; NULL = 127.0.0.1 */
};

struct http_resp {
    long status;
    char *body;
    size_t len;
    char headers[4096]; /* raw response headers */
    double seconds;
    long long uploaded; /* request body bytes curl sent */
};

/* Starts both processes; extra_env is a NULL-terminated list of "NAME=value" for agentd
   (applied after the harness defaults, so it can override them). Aborts the test on failure. */
void harness_start(struct harness *h, const char *const *extra_env);
/* SIGTERM to agentd (returns its exit status, or -1), then stops the fake and removes the dir. */
int harness_stop(struct harness *h);
/* Only starts the fake (for tests that start agentd themselves). */
void harness_start_fake(struct harness *h);
void harness_start_agentd(struct harness *h, const char *const *extra_env);
/* Runs agentd with one argument (e.g. "--check-config"; NULL = none) and the environment
   harness_start_agentd() would give it, to its end; its stdout and stderr are appended to the log.
   Returns its exit status, or -1 when it is still running after timeout_ms (it is then killed).
   Needs the temp dir (harness_start_fake() makes it). */
int harness_run_agentd(struct harness *h, const char *arg, const char *const *extra_env,
                       int timeout_ms);
/* Waits for agentd to exit (after a signal the test sent); returns its exit status or -1. */
int harness_wait_agentd(struct harness *h, int timeout_ms);

/* One HTTP request (blocking). headers: NULL-terminated "Name: value" list or NULL.
   body NULL = no body. chunked = send the body with Transfer-Encoding: chunked. */
int http_do(const char *method, const char *url, const char *const *headers, const char *body,
            size_t body_len, bool chunked, struct http_resp *ret);
void http_resp_free(struct http_resp *r);
/* Value of a response header (case-insensitive), copied into buf; false if absent. */
bool http_header(const struct http_resp *r, const char *name, char *buf, size_t buflen);

/* POST /v1/agent with a JSON body; parses the answer into *ret_json (NULL when not JSON). */
long agent_post(struct harness *h, const char *json_body, json_t **ret_json);
/* {"input": input} convenience. */
long agent_ask(struct harness *h, const char *input, json_t **ret_json);

/* Fake admin API. */
void fake_add_fault(struct harness *h, const char *fault_json);
void fake_clear_faults(struct harness *h);
void fake_clear_requests(struct harness *h);
json_t *fake_requests(struct harness *h); /* new reference: array */
/* Number of logged requests on a route ("messages", "models", ...). */
size_t fake_count(struct harness *h, const char *route);
/* Polls the request log until route has at least n requests or timeout_ms passes; returns the
   last count. */
size_t fake_wait_count(struct harness *h, const char *route, size_t n, int timeout_ms);

/* Reads agentd's log so far (malloc'd). */
char *harness_read_log(struct harness *h);
/* Polls agentd's log until it holds text (true) or timeout_ms passes (false). */
bool harness_wait_log(struct harness *h, const char *text, int timeout_ms);
/* Replaces the file at path the way a Kubernetes Secret or ConfigMap update does: a new file
   (path + ".new") renamed over it. Aborts the test on failure. */
void harness_replace_file(const char *path, const char *content);
/* Files in the notes dir (not counting dot files). */
size_t harness_count_notes(struct harness *h);
int64_t harness_now_ms(void);
/* Value of one sample line "name{labels} value" of a /metrics text, or -1 when absent. */
double harness_metric_sample(const char *text, const char *series);
/* GET h's /metrics (asserting 200) and return one sample's value, or -1 when absent. */
double harness_metric(struct harness *h, const char *series);
/* A free 127.0.0.1 TCP port (bound to 0, read, closed): for a server a test starts itself. */
int harness_free_port(void);

/* Runs every test of s (one process per test), with libcurl set up around it; returns the exit
   status for main(). */
int harness_run_suite(Suite *s);

/* A raw TCP connection to agentd (for tests that control every byte); aborts the test on
   failure. */
int harness_connect(struct harness *h);
/* Reads one whole HTTP response (headers and Content-Length body) from fd into buf
   (NUL-terminated); returns its status code, or -1 when the connection fails or ends first. */
int harness_read_response(int fd, char *buf, size_t cap);

#endif
