/*
 * harness.c — starts/stops the fake upstream and agentd for integration
 * tests and gives them small HTTP helpers (see harness.h).
 */
#include "harness.h"

#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void note_agentd_url(const char *url);

#define STARTUP_TIMEOUT_MS 10000

int harness_run_suite(Suite *s)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int64_t harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double harness_metric_sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return atof(p + n + 1);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

double harness_metric(struct harness *h, const char *series)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/metrics", h->agentd_url);
    struct http_resp r;
    ck_assert_int_eq(http_do("GET", url, NULL, NULL, 0, false, &r), 0);
    ck_assert_int_eq(r.status, 200);
    double v = harness_metric_sample(r.body, series);
    http_resp_free(&r);
    return v;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A port the kernel just gave out: bind to 0, read it, close. */
int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static const char *bin(const char *var)
{
    const char *p = getenv(var);
    ck_assert_msg(p && *p, "%s is not set (run through meson test)", var);
    return p;
}

static pid_t spawn(const char *path, char *const argv[], char *const envp[], const char *log_path,
                   unsigned nofile)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A failed assertion ends the test process without teardown: take the children along. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        if (null >= 0)
            dup2(null, 0);
        if (nofile > 0)
            setrlimit(RLIMIT_NOFILE, &(struct rlimit){.rlim_cur = nofile, .rlim_max = nofile});
        execve(path, argv, envp);
        dprintf(2, "harness: cannot execute %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

static bool wait_http_ok(const char *url, pid_t pid)
{
    int64_t until = harness_now_ms() + STARTUP_TIMEOUT_MS;
    while (harness_now_ms() < until) {
        struct http_resp r;
        if (http_do("GET", url, NULL, NULL, 0, false, &r) == 0 && r.status == 200) {
            http_resp_free(&r);
            return true;
        }
        http_resp_free(&r);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return false;
        sleep_ms(20);
    }
    return false;
}

void harness_start_fake(struct harness *h)
{
    if (!h->dir[0]) {
        snprintf(h->dir, sizeof(h->dir), "/tmp/agentd-it-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(h->dir));
        snprintf(h->notes_dir, sizeof(h->notes_dir), "%s/notes", h->dir);
        ck_assert_int_eq(mkdir(h->notes_dir, 0755), 0);
        snprintf(h->log_path, sizeof(h->log_path), "%s/agentd.log", h->dir);
    }
    h->fake_port = harness_free_port();
    snprintf(h->fake_url, sizeof(h->fake_url), "http://127.0.0.1:%d", h->fake_port);
    char listen[64], log[300];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", h->fake_port);
    snprintf(log, sizeof(log), "%s/fake.log", h->dir);
    char *argv[] = {"fake_upstream", "--listen", listen, "--quiet", NULL};
    char *envp[] = {NULL};
    h->fake_pid = spawn(bin("FAKE_UPSTREAM_BIN"), argv, envp, log, 0);
    char url[128];
    snprintf(url, sizeof(url), "%s/_admin/health", h->fake_url);
    ck_assert_msg(wait_http_ok(url, h->fake_pid), "fake upstream did not start");
}

/* agentd's environment: the harness defaults (those extra_env does not set), the sanitizer
   settings, then extra_env. envp has room for 96 entries. */
static void agentd_env(struct harness *h, const char *const *extra_env, char **envp)
{
    size_t n = 0;
    static char vars[16][512];
    snprintf(vars[0], sizeof(vars[0]), "AGENTD_LISTEN=%s:%d",
             h->agentd_host ? h->agentd_host : "127.0.0.1", h->agentd_port);
    snprintf(vars[1], sizeof(vars[1]), "ANTHROPIC_BASE_URL=%s", h->fake_url);
    snprintf(vars[2], sizeof(vars[2]), "AGENTD_SEARCH_URL=%s", h->fake_url);
    snprintf(vars[3], sizeof(vars[3]), "AGENTD_WEATHER_GEOCODING_URL=%s", h->fake_url);
    snprintf(vars[4], sizeof(vars[4]), "AGENTD_WEATHER_FORECAST_URL=%s", h->fake_url);
    snprintf(vars[5], sizeof(vars[5]), "AGENTD_NOTES_DIR=%s", h->notes_dir);
    snprintf(vars[6], sizeof(vars[6]), "ANTHROPIC_API_KEY=sk-ant-test-SECRET-0123456789");
    snprintf(vars[7], sizeof(vars[7]), "AGENTD_WORKERS=2");
    snprintf(vars[8], sizeof(vars[8]), "AGENTD_RETRY_INITIAL_MS=20");
    snprintf(vars[9], sizeof(vars[9]), "AGENTD_RETRY_MAX_DELAY_MS=200");
    /* Tests stop agentd often: no drain delay unless a test asks; readiness must not depend on
       this machine's free disk space. */
    snprintf(vars[10], sizeof(vars[10]), "AGENTD_SHUTDOWN_DELAY_MS=0");
    snprintf(vars[11], sizeof(vars[11]), "AGENTD_NOTES_MIN_FREE_BYTES=1");
    snprintf(vars[12], sizeof(vars[12]), "AGENTD_READY_INTERVAL_MS=200");
    snprintf(vars[13], sizeof(vars[13]), "AGENTD_READY_TIMEOUT_MS=500");
    /* extra_env wins: a default is left out when the test sets the same variable. */
    for (size_t i = 0; i < 14; i++) {
        size_t name_len = strcspn(vars[i], "=");
        bool overridden = false;
        for (size_t k = 0; extra_env && extra_env[k]; k++)
            if (strncmp(extra_env[k], vars[i], name_len + 1) == 0)
                overridden = true;
        if (!overridden)
            envp[n++] = vars[i];
    }
    /* Sanitizer settings pass through so the daemon runs instrumented too. */
    static const char *pass[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "PATH", NULL};
    static char passbuf[4][1024];
    for (size_t i = 0; pass[i]; i++) {
        const char *v = getenv(pass[i]);
        if (v) {
            snprintf(passbuf[i], sizeof(passbuf[i]), "%s=%s", pass[i], v);
            envp[n++] = passbuf[i];
        }
    }
    for (size_t i = 0; extra_env && extra_env[i] && n < 94; i++)
        envp[n++] = (char *)extra_env[i];
    envp[n] = NULL;
}

void harness_start_agentd(struct harness *h, const char *const *extra_env)
{
    h->agentd_exit = -1;
    h->agentd_port = harness_free_port();
    snprintf(h->agentd_url, sizeof(h->agentd_url), "http://127.0.0.1:%d", h->agentd_port);
    note_agentd_url(h->agentd_url);
    char *envp[96];
    agentd_env(h, extra_env, envp);
    char *argv[] = {"agentd", NULL};
    h->agentd_pid = spawn(bin("AGENTD_BIN"), argv, envp, h->log_path, h->agentd_nofile);
    char url[128];
    snprintf(url, sizeof(url), "%s/health/live", h->agentd_url);
    ck_assert_msg(wait_http_ok(url, h->agentd_pid), "agentd did not start; log in %s", h->log_path);
}

void harness_start(struct harness *h, const char *const *extra_env)
{
    memset(h, 0, sizeof(*h));
    harness_start_fake(h);
    harness_start_agentd(h, extra_env);
}

int harness_run_agentd(struct harness *h, const char *arg, const char *const *extra_env,
                       int timeout_ms)
{
    char *envp[96];
    char *argv[] = {"agentd", (char *)arg, NULL};
    h->agentd_port = harness_free_port();
    agentd_env(h, extra_env, envp);
    pid_t pid = spawn(bin("AGENTD_BIN"), argv, envp, h->log_path, h->agentd_nofile);
    int64_t until = harness_now_ms() + timeout_ms;
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (harness_now_ms() >= until) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        sleep_ms(10);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int harness_wait_agentd(struct harness *h, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    while (h->agentd_pid > 0 && harness_now_ms() < until) {
        int st;
        pid_t r = waitpid(h->agentd_pid, &st, WNOHANG);
        if (r == h->agentd_pid) {
            h->agentd_pid = 0;
            h->agentd_exit = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return h->agentd_exit;
        }
        sleep_ms(10);
    }
    return -1;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[600];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                rm_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

int harness_stop(struct harness *h)
{
    int status = h->agentd_exit;
    if (h->agentd_pid > 0) {
        kill(h->agentd_pid, SIGTERM);
        status = harness_wait_agentd(h, 30000);
        if (status < 0) {
            kill(h->agentd_pid, SIGKILL);
            waitpid(h->agentd_pid, NULL, 0);
            h->agentd_pid = 0;
        }
    }
    if (h->fake_pid > 0) {
        kill(h->fake_pid, SIGTERM);
        int st;
        int64_t until = harness_now_ms() + 5000;
        while (waitpid(h->fake_pid, &st, WNOHANG) == 0 && harness_now_ms() < until)
            sleep_ms(10);
        if (harness_now_ms() >= until) {
            kill(h->fake_pid, SIGKILL);
            waitpid(h->fake_pid, NULL, 0);
        }
        h->fake_pid = 0;
    }
    if (status != 0 && h->log_path[0]) {
        /* The daemon's last words, for whoever reads a failed CI log. */
        char *log = harness_read_log(h);
        size_t len = log ? strlen(log) : 0, from = len > 6000 ? len - 6000 : 0;
        fprintf(stderr, "agentd exited with status %d; the end of its log:\n%s\n", status,
                log ? log + from : "(none)");
        free(log);
    }
    if (h->dir[0] && !getenv("AGENTD_KEEP_TEST_DIRS"))
        rm_tree(h->dir);
    return status;
}

/* ---- HTTP ------------------------------------------------------------------------- */

struct sink {
    struct http_resp *r;
    size_t hlen;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct http_resp *r = arg;
    size_t len = size * n;
    char *b = realloc(r->body, r->len + len + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, len);
    r->body = b;
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    if (s->hlen + len < sizeof(s->r->headers)) {
        memcpy(s->r->headers + s->hlen, p, len);
        s->hlen += len;
        s->r->headers[s->hlen] = '\0';
    }
    return len;
}

struct upload {
    const char *p;
    size_t left;
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t len = size * n;
    if (len > u->left)
        len = u->left;
    memcpy(buf, u->p, len);
    u->p += len;
    u->left -= len;
    return len;
}

/* ---- response capture for the contract test (tests/contracts/validate_responses.py) ---- */

/* The agentd URLs of this process (several in the cluster tests): only their answers are
   recorded, never the fake's. */
#define MAX_AGENTD_URLS 16
static char agentd_urls[MAX_AGENTD_URLS][64];
static size_t n_agentd_urls;

static void note_agentd_url(const char *url)
{
    for (size_t i = 0; i < n_agentd_urls; i++)
        if (strcmp(agentd_urls[i], url) == 0)
            return;
    if (n_agentd_urls < MAX_AGENTD_URLS)
        snprintf(agentd_urls[n_agentd_urls++], sizeof(agentd_urls[0]), "%s", url);
}

/* The path of url when it is one of agentd's, else NULL. */
static const char *agentd_path(const char *url)
{
    for (size_t i = 0; i < n_agentd_urls; i++) {
        size_t len = strlen(agentd_urls[i]);
        if (strncmp(url, agentd_urls[i], len) == 0 && url[len] == '/')
            return url + len;
    }
    return NULL;
}

/* With AGENTD_RESPONSES_FILE set, appends one JSON line per answer agentd gave: method, path,
   status, the raw header block and the body (null when it is not UTF-8, which the validator
   rejects). One write(2) per line, O_APPEND: test processes may share the file. */
static void record_response(const char *method, const char *url, const struct http_resp *r)
{
    const char *file = getenv("AGENTD_RESPONSES_FILE");
    const char *path = agentd_path(url);
    if (!file || !*file || !path || r->status == 0)
        return;
    json_t *body = json_stringn(r->body ? r->body : "", r->len);
    json_t *rec =
        json_pack("{s:s, s:s, s:i, s:s, s:o}", "method", method, "path", path, "status",
                  (json_int_t)r->status, "headers", r->headers, "body", body ? body : json_null());
    char *line = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!line)
        return;
    size_t len = strlen(line);
    line[len] = '\n'; /* replaces the NUL: written by length */
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, line, len + 1);
        (void)w;
        close(fd);
    }
    free(line);
}

int http_do(const char *method, const char *url, const char *const *headers, const char *body,
            size_t body_len, bool chunked, struct http_resp *ret)
{
    memset(ret, 0, sizeof(*ret));
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    struct sink s = {.r = ret};
    struct curl_slist *hl = NULL;
    struct upload up = {.p = body, .left = body_len};
    bool expect = false;
    for (size_t i = 0; headers && headers[i]; i++) {
        hl = curl_slist_append(hl, headers[i]);
        expect |= strncasecmp(headers[i], "Expect:", 7) == 0;
    }
    if (!expect) /* curl would add Expect: 100-continue to large bodies; tests say when */
        hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, ret);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &s);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (body && chunked) {
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &up);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    int64_t t0 = harness_now_ms();
    CURLcode rc = curl_easy_perform(e);
    ret->seconds = (double)(harness_now_ms() - t0) / 1000.0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &ret->status);
    curl_off_t up_bytes = 0;
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up_bytes);
    ret->uploaded = (long long)up_bytes;
    curl_slist_free_all(hl);
    curl_easy_cleanup(e);
    if (rc == CURLE_OK)
        record_response(method, url, ret);
    return rc == CURLE_OK ? 0 : -1;
}

void http_resp_free(struct http_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

bool http_header(const struct http_resp *r, const char *name, char *buf, size_t buflen)
{
    size_t nlen = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = (size_t)(line + len - v);
            if (vlen >= buflen)
                vlen = buflen - 1;
            memcpy(buf, v, vlen);
            buf[vlen] = '\0';
            return true;
        }
        line = eol ? eol + 2 : NULL;
    }
    return false;
}

long agent_post(struct harness *h, const char *json_body, json_t **ret_json)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/v1/agent", h->agentd_url);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    int rc = http_do("POST", url, hdrs, json_body, strlen(json_body), false, &r);
    ck_assert_msg(rc == 0, "POST /v1/agent failed at the transport level");
    if (ret_json)
        *ret_json = r.body ? json_loads(r.body, 0, NULL) : NULL;
    long status = r.status;
    http_resp_free(&r);
    return status;
}

long agent_ask(struct harness *h, const char *input, json_t **ret_json)
{
    json_t *o = json_pack("{s:s}", "input", input);
    char *body = json_dumps(o, JSON_COMPACT);
    long status = agent_post(h, body, ret_json);
    free(body);
    json_decref(o);
    return status;
}

static void admin(struct harness *h, const char *method, const char *path, const char *body,
                  struct http_resp *r)
{
    char url[160];
    snprintf(url, sizeof(url), "%s%s", h->fake_url, path);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(http_do(method, url, hdrs, body, body ? strlen(body) : 0, false, r), 0);
}

void fake_add_fault(struct harness *h, const char *fault_json)
{
    struct http_resp r;
    admin(h, "POST", "/_admin/faults", fault_json, &r);
    ck_assert_msg(r.status == 201, "fault not accepted (%ld): %s", r.status, r.body);
    http_resp_free(&r);
}

void fake_clear_faults(struct harness *h)
{
    struct http_resp r;
    admin(h, "DELETE", "/_admin/faults", NULL, &r);
    http_resp_free(&r);
}

void fake_clear_requests(struct harness *h)
{
    struct http_resp r;
    admin(h, "DELETE", "/_admin/requests", NULL, &r);
    http_resp_free(&r);
}

json_t *fake_requests(struct harness *h)
{
    struct http_resp r;
    admin(h, "GET", "/_admin/requests", NULL, &r);
    json_t *a = r.body ? json_loads(r.body, 0, NULL) : NULL;
    http_resp_free(&r);
    ck_assert_msg(json_is_array(a), "request log is not an array");
    return a;
}

size_t fake_count(struct harness *h, const char *route)
{
    json_t *a = fake_requests(h);
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        const char *r = json_string_value(json_object_get(e, "route"));
        if (r && strcmp(r, route) == 0)
            n++;
    }
    json_decref(a);
    return n;
}

size_t fake_wait_count(struct harness *h, const char *route, size_t n, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    size_t got;
    while ((got = fake_count(h, route)) < n && harness_now_ms() < until)
        sleep_ms(10);
    return got;
}

bool harness_wait_log(struct harness *h, const char *text, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    for (;;) {
        char *log = harness_read_log(h);
        bool found = log && strstr(log, text);
        free(log);
        if (found || harness_now_ms() >= until)
            return found;
        sleep_ms(50);
    }
}

void harness_replace_file(const char *path, const char *content)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(content, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

char *harness_read_log(struct harness *h)
{
    FILE *f = fopen(h->log_path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

size_t harness_count_notes(struct harness *h)
{
    DIR *d = opendir(h->notes_dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

int harness_connect(struct harness *h)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)h->agentd_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

int harness_read_response(int fd, char *buf, size_t cap)
{
    size_t got = 0, want = 0;
    for (;;) {
        char *end = memmem(buf, got, "\r\n\r\n", 4);
        if (end && !want) {
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            want = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
        }
        if (want && got >= want)
            break;
        if (got == cap - 1)
            return -1;
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
    }
    buf[got] = '\0';
    return strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
}
