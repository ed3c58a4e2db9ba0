/*
 * checker.c — readiness (health.h): the pure health_state that turns probe
 * results into readiness, transitions and the /health/ready body, the
 * blocking probes, and the checker thread that runs them once per interval.
 */
#include "agentd/health.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agentd/anthropic.h" /* ANTHROPIC_VERSION */

#define HEALTH_NOT_CHECKED  "not checked yet"
#define HEALTH_MODELS_PATH  "/v1/models?limit=1"
#define HEALTH_PROBE_PREFIX ".ready-probe-"
#define HEALTH_USER_AGENT   "agentd-readiness"
/* "x-api-key: " plus the longest key config.c accepts, with room to spare. */
#define HEALTH_KEY_HEADER_BYTES 600
/* Default period of the notes recount: a scan is one readdir and one fstatat per note, so it
   runs less often than the other checks; between scans the running totals are exact for this
   replica's own saves. */
#define HEALTH_NOTES_RESCAN_MS 60000

/* ---- pure state ------------------------------------------------------- */

struct health_check {
    bool checked;
    bool ok;
    char reason[HEALTH_REASON_BYTES]; /* "" = nothing to say */
};

struct health_state {
    int failure_threshold;
    uint64_t min_free_bytes;
    char *path;

    struct health_check api;
    bool api_reached_once; /* any success so far: only then does the threshold apply */
    int api_failures;
    long api_http_status; /* 0 = no HTTP answer on the last probe */
    int64_t api_latency_ms;
    int64_t api_wall_ms;

    struct health_check disk;
    bool disk_free_known;
    uint64_t disk_free_bytes;

    struct health_check writable;

    struct health_check notes;
    struct notes_usage_snapshot notes_usage;

    bool shutdown;
    enum health_redis redis;

    int reported; /* readiness last handed out: -1 none yet, 0 not ready, 1 ready */
};

static void check_set(struct health_check *c, bool ok, const char *reason)
{
    c->checked = true;
    c->ok = ok;
    snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "");
}

static void check_init(struct health_check *c)
{
    check_set(c, false, HEALTH_NOT_CHECKED);
    c->checked = false;
}

struct health_state *health_state_new(const struct health_config *cfg)
{
    struct health_state *st;

    if (!cfg)
        return NULL;
    st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->path = strdup(cfg->notes_dir ? cfg->notes_dir : "");
    if (!st->path) {
        free(st);
        return NULL;
    }
    st->failure_threshold = cfg->failure_threshold < 1 ? 1 : cfg->failure_threshold;
    st->min_free_bytes = cfg->min_free_bytes;
    check_init(&st->api);
    check_init(&st->disk);
    check_init(&st->writable);
    check_init(&st->notes);
    st->reported = -1;
    return st;
}

struct health_state *health_state_free(struct health_state *st)
{
    if (st) {
        free(st->path);
        free(st);
    }
    return NULL;
}

/* Only a wrong or revoked key is a failure among HTTP answers: the API is up, we cannot use it. */
static bool api_status_fails(long http_status)
{
    return http_status == 401 || http_status == 403;
}

void health_state_record_api(struct health_state *st, long http_status, const char *error,
                             int64_t latency_ms, int64_t wall_ms)
{
    char reason[HEALTH_REASON_BYTES] = "";
    bool failed = error != NULL || api_status_fails(http_status);

    if (error)
        snprintf(reason, sizeof(reason), "%s", error);
    else if (failed)
        snprintf(reason, sizeof(reason), "HTTP %ld", http_status);
    st->api_http_status = error ? 0 : http_status;
    st->api_latency_ms = latency_ms < 0 ? 0 : latency_ms;
    st->api_wall_ms = wall_ms;
    if (failed) {
        if (st->api_failures < INT_MAX)
            st->api_failures++;
    } else {
        st->api_failures = 0;
        st->api_reached_once = true;
    }
    /* reason stays visible below the threshold too: it explains consecutive_failures. */
    check_set(&st->api,
              st->api_failures == 0 ||
                  (st->api_reached_once && st->api_failures < st->failure_threshold),
              reason);
}

void health_state_record_disk(struct health_state *st, const char *error, uint64_t free_bytes)
{
    char reason[HEALTH_REASON_BYTES];

    st->disk_free_known = error == NULL;
    st->disk_free_bytes = error ? 0 : free_bytes;
    if (error) {
        check_set(&st->disk, false, error);
    } else if (free_bytes < st->min_free_bytes) {
        snprintf(reason, sizeof(reason), "free %llu bytes below minimum %llu",
                 (unsigned long long)free_bytes, (unsigned long long)st->min_free_bytes);
        check_set(&st->disk, false, reason);
    } else {
        check_set(&st->disk, true, NULL);
    }
}

void health_state_record_writable(struct health_state *st, const char *error)
{
    check_set(&st->writable, error == NULL, error);
}

void health_state_set_shutdown(struct health_state *st)
{
    st->shutdown = true;
}

void health_state_set_redis(struct health_state *st, enum health_redis mode)
{
    st->redis = mode;
}

void health_state_record_notes(struct health_state *st, const struct notes_usage_snapshot *s)
{
    char reason[HEALTH_REASON_BYTES], errbuf[96];
    struct notes_usage_snapshot u = {0};
    if (s)
        u = *s;
    st->notes_usage = u;
    bool limited = u.max_files > 0 || u.max_bytes > 0;

    if (!limited) {
        check_set(&st->notes, true, NULL);
    } else if (u.scan_error < 0) {
        snprintf(reason, sizeof(reason), "cannot count notes: %s",
                 strerror_r(-u.scan_error, errbuf, sizeof(errbuf)));
        check_set(&st->notes, false, reason);
    } else if (!u.counted) {
        check_set(&st->notes, false, HEALTH_NOT_CHECKED);
    } else if (u.max_files > 0 && u.files >= u.max_files) {
        snprintf(reason, sizeof(reason),
                 "quota exhausted: %llu of %llu files (AGENTD_NOTES_MAX_FILES)",
                 (unsigned long long)u.files, (unsigned long long)u.max_files);
        check_set(&st->notes, false, reason);
    } else if (notes_usage_full(&u)) {
        snprintf(reason, sizeof(reason),
                 "quota exhausted: %llu of %llu bytes (AGENTD_NOTES_MAX_BYTES)",
                 (unsigned long long)u.bytes, (unsigned long long)u.max_bytes);
        check_set(&st->notes, false, reason);
    } else {
        check_set(&st->notes, true, NULL);
    }
}

bool health_state_ready(const struct health_state *st)
{
    return st->api.ok && st->disk.ok && st->writable.ok && st->notes.ok && !st->shutdown;
}

int health_state_api_failures(const struct health_state *st)
{
    return st->api_failures;
}

/* RFC 3339 UTC with milliseconds, like the log timestamps. */
static void format_rfc3339(int64_t wall_ms, char *buf, size_t len)
{
    struct tm tm;
    time_t secs;

    if (wall_ms < 0)
        wall_ms = 0;
    secs = (time_t)(wall_ms / 1000);
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
}

/* jansson's setters accept a NULL value and fail, so one flag catches every allocation. */
static void put(json_t *obj, const char *key, json_t *value, bool *ok)
{
    if (json_object_set_new(obj, key, value) < 0)
        *ok = false;
}

static json_int_t clamp_json_int(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v;
}

static const char *status_text(const struct health_check *c)
{
    return c->ok ? "ok" : "fail";
}

static json_t *render_api(const struct health_state *st, bool *ok)
{
    json_t *o = json_object();
    char when[80]; /* fits any int year, so the compiler can prove no truncation */

    put(o, "status", json_string(status_text(&st->api)), ok);
    if (st->api.checked) {
        format_rfc3339(st->api_wall_ms, when, sizeof(when));
        put(o, "latency_ms", json_integer(st->api_latency_ms), ok);
        put(o, "checked_at", json_string(when), ok);
        if (st->api_http_status > 0)
            put(o, "http_status", json_integer(st->api_http_status), ok);
    }
    if (st->api.reason[0])
        put(o, "reason", json_string(st->api.reason), ok);
    put(o, "consecutive_failures", json_integer(st->api_failures), ok);
    return o;
}

static json_t *render_disk(const struct health_state *st, bool *ok)
{
    json_t *o = json_object();

    put(o, "status", json_string(status_text(&st->disk)), ok);
    if (st->disk.checked && st->disk_free_known)
        put(o, "free_bytes", json_integer(clamp_json_int(st->disk_free_bytes)), ok);
    put(o, "min_free_bytes", json_integer(clamp_json_int(st->min_free_bytes)), ok);
    put(o, "path", json_string(st->path), ok);
    if (!st->disk.ok)
        put(o, "reason", json_string(st->disk.reason), ok);
    return o;
}

static json_t *render_notes(const struct health_state *st, bool *ok)
{
    json_t *o = json_object();
    const struct notes_usage_snapshot *u = &st->notes_usage;

    put(o, "status", json_string(status_text(&st->notes)), ok);
    if (st->notes.checked && u->counted) {
        put(o, "files", json_integer(clamp_json_int(u->files)), ok);
        put(o, "bytes", json_integer(clamp_json_int(u->bytes)), ok);
    }
    put(o, "max_files", json_integer(clamp_json_int(u->max_files)), ok);
    put(o, "max_bytes", json_integer(clamp_json_int(u->max_bytes)), ok);
    if (!st->notes.ok)
        put(o, "reason", json_string(st->notes.reason), ok);
    return o;
}

static json_t *render_simple(bool check_ok, const char *reason, bool *ok)
{
    json_t *o = json_object();

    put(o, "status", json_string(check_ok ? "ok" : "fail"), ok);
    if (!check_ok)
        put(o, "reason", json_string(reason), ok);
    return o;
}

int health_state_render(const struct health_state *st, char **ret_body)
{
    bool ready = health_state_ready(st);
    bool ok = true;
    json_t *root = json_object();
    json_t *checks = json_object();
    char *body = NULL;

    put(checks, "anthropic_api", render_api(st, &ok), &ok);
    put(checks, "disk_space", render_disk(st, &ok), &ok);
    put(checks, "notes_writable", render_simple(st->writable.ok, st->writable.reason, &ok), &ok);
    put(checks, "notes", render_notes(st, &ok), &ok);
    put(checks, "shutdown", render_simple(!st->shutdown, "draining", &ok), &ok);
    if (st->redis != HEALTH_REDIS_OFF) {
        json_t *r = json_object();
        bool shared = st->redis == HEALTH_REDIS_SHARED;
        put(r, "status", json_string(shared ? "ok" : "degraded"), &ok);
        if (!shared)
            put(r, "reason",
                json_string("Redis unreachable: rate limits, budgets, Idempotency-Keys and "
                            "conversations are this replica's own until it is back"),
                &ok);
        put(checks, "redis", r, &ok);
    }
    put(root, "status", json_string(ready ? "ok" : "unavailable"), &ok);
    put(root, "checks", checks, &ok);
    if (ok)
        body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!body)
        return -ENOMEM;
    *ret_body = body;
    return ready ? 200 : 503;
}

static void append_reason(char *buf, size_t len, const char *name, const char *reason)
{
    size_t used = strlen(buf);

    if (used + 1 >= len)
        return;
    snprintf(buf + used, len - used, "%s%s: %s", used ? "; " : "", name, reason);
}

bool health_state_poll_transition(struct health_state *st, struct health_transition *ret)
{
    bool ready = health_state_ready(st);

    if (st->reported == (ready ? 1 : 0))
        return false;
    st->reported = ready ? 1 : 0;
    memset(ret, 0, sizeof(*ret));
    ret->ready = ready;
    if (ready) {
        snprintf(ret->reason, sizeof(ret->reason), "all checks ok");
        return true;
    }
    if (!st->api.ok)
        append_reason(ret->reason, sizeof(ret->reason), "anthropic_api", st->api.reason);
    if (!st->disk.ok)
        append_reason(ret->reason, sizeof(ret->reason), "disk_space", st->disk.reason);
    if (!st->writable.ok)
        append_reason(ret->reason, sizeof(ret->reason), "notes_writable", st->writable.reason);
    if (!st->notes.ok)
        append_reason(ret->reason, sizeof(ret->reason), "notes", st->notes.reason);
    if (st->shutdown)
        append_reason(ret->reason, sizeof(ret->reason), "shutdown", "draining");
    return true;
}

/* ---- probes ------------------------------------------------------------ */

static int64_t read_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The body proves nothing beyond the status line; it is dropped as it arrives. */
static size_t discard_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    (void)data;
    (void)userdata;
    return size * nmemb;
}

/* Lets health_stop() cut a probe short instead of waiting out its timeout. */
static int abort_check(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_bool *aborting = userdata;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return aborting && atomic_load(aborting) ? 1 : 0;
}

static bool is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

static void describe_curl_error(CURL *curl, CURLcode rc, char *buf, size_t len)
{
    long os_errno = 0;
    char errbuf[96];

    if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(buf, len, "timeout");
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY) {
        snprintf(buf, len, "DNS resolution failed");
    } else if (rc == CURLE_COULDNT_CONNECT) {
        curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno == ECONNREFUSED)
            snprintf(buf, len, "connection refused");
        else if (os_errno > 0)
            snprintf(buf, len, "cannot connect: %s",
                     strerror_r((int)os_errno, errbuf, sizeof(errbuf)));
        else
            snprintf(buf, len, "cannot connect");
    } else if (is_tls_error(rc)) {
        snprintf(buf, len, "TLS failure: %s", curl_easy_strerror(rc));
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(buf, len, "aborted: checker stopping");
    } else {
        snprintf(buf, len, "%s", curl_easy_strerror(rc));
    }
}

static int set_api_options(CURL *curl, const char *url, struct curl_slist *headers,
                           int64_t timeout_ms, const atomic_bool *aborting)
{
    long t = timeout_ms < 1 ? 1 : timeout_ms > LONG_MAX ? LONG_MAX : (long)timeout_ms;
    bool ok = true;

    ok &= curl_easy_setopt(curl, CURLOPT_URL, url) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_USERAGENT, HEALTH_USER_AGENT) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, t) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, t) == CURLE_OK;
    /* Several threads use libcurl; signals must not be its timeout mechanism. */
    ok &= curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    /* Readiness must prove that a new connection (DNS, connect, TLS) works right now. */
    ok &= curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, abort_check) == CURLE_OK;
    ok &= curl_easy_setopt(curl, CURLOPT_XFERINFODATA, (void *)aborting) == CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    ok &= curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
#endif
    return ok ? 0 : -EINVAL;
}

static void api_probe_run(CURL *curl, const char *url, struct curl_slist *headers,
                          int64_t timeout_ms, const atomic_bool *aborting,
                          struct health_api_probe *ret)
{
    int64_t start = read_clock_ms(CLOCK_MONOTONIC);
    CURLcode rc;

    memset(ret, 0, sizeof(*ret));
    if (set_api_options(curl, url, headers, timeout_ms, aborting) < 0) {
        snprintf(ret->error, sizeof(ret->error), "cannot configure the HTTP client");
        return;
    }
    rc = curl_easy_perform(curl);
    ret->latency_ms = read_clock_ms(CLOCK_MONOTONIC) - start;
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &ret->http_status);
    else
        describe_curl_error(curl, rc, ret->error, sizeof(ret->error));
}

static char *models_url(const char *base_url)
{
    size_t n = strlen(base_url);
    char *url;

    while (n > 0 && base_url[n - 1] == '/')
        n--;
    url = malloc(n + sizeof(HEALTH_MODELS_PATH));
    if (url) {
        memcpy(url, base_url, n);
        memcpy(url + n, HEALTH_MODELS_PATH, sizeof(HEALTH_MODELS_PATH));
    }
    return url;
}

static struct curl_slist *api_headers(const char *api_key)
{
    char key_header[HEALTH_KEY_HEADER_BYTES];
    struct curl_slist *list = curl_slist_append(NULL, "anthropic-version: " ANTHROPIC_VERSION);
    struct curl_slist *next;

    if (!list || !api_key || !api_key[0])
        return list;
    snprintf(key_header, sizeof(key_header), "x-api-key: %s", api_key);
    next = curl_slist_append(list, key_header);
    explicit_bzero(key_header, sizeof(key_header));
    if (!next)
        curl_slist_free_all(list);
    return next;
}

int health_probe_api(const char *base_url, const char *api_key, int64_t timeout_ms,
                     struct health_api_probe *ret)
{
    char *url;
    struct curl_slist *headers;
    CURL *curl;
    int r = -ENOMEM;

    if (!base_url || !ret)
        return -EINVAL;
    url = models_url(base_url);
    headers = api_headers(api_key);
    curl = curl_easy_init();
    if (url && headers && curl) {
        api_probe_run(curl, url, headers, timeout_ms, NULL, ret);
        r = 0;
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
    free(url);
    return r;
}

int health_probe_disk(const char *dir, uint64_t *ret_free_bytes)
{
    struct statvfs vfs;
    uint64_t avail, frsize;

    if (!dir || !ret_free_bytes)
        return -EINVAL;
    if (statvfs(dir, &vfs) < 0)
        return -errno;
    avail = vfs.f_bavail;
    frsize = vfs.f_frsize;
    *ret_free_bytes = frsize && avail > UINT64_MAX / frsize ? UINT64_MAX : avail * frsize;
    return 0;
}

/* <dir>/.ready-probe-<host>-<pid>: replicas sharing one notes volume each run as pid 1 in their
   container, so the host name (the pod's name on Kubernetes) keeps their probe files apart. */
static int probe_path(const char *dir, char *buf, size_t len)
{
    char host[65] = "";
    if (gethostname(host, sizeof(host) - 1) < 0)
        host[0] = '\0';
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            *p = '_';
    int n = snprintf(buf, len, "%s/" HEALTH_PROBE_PREFIX "%s-%ld", dir, host, (long)getpid());
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int create_probe_file(const char *path)
{
    for (int attempt = 0;; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 || errno != EEXIST || attempt > 0)
            return fd >= 0 ? fd : -errno;
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
    }
}

static int fail_step(int r, const char *step, const char **ret_step)
{
    if (ret_step)
        *ret_step = step;
    return r;
}

int health_probe_writable(const char *dir, const char **ret_step)
{
    char path[PATH_MAX];
    const char *step = "write";
    ssize_t n;
    int fd, r;

    if (!dir)
        return fail_step(-EINVAL, "create", ret_step);
    r = probe_path(dir, path, sizeof(path));
    if (r < 0)
        return fail_step(r, "create", ret_step);
    fd = create_probe_file(path);
    if (fd < 0)
        return fail_step(fd, "create", ret_step);
    do
        n = write(fd, "r", 1);
    while (n < 0 && errno == EINTR);
    r = n == 1 ? 0 : n < 0 ? -errno : -EIO;
    /* close() reports delayed write errors (NFS); EINTR still released the descriptor. */
    if (close(fd) < 0 && errno != EINTR && r == 0) {
        r = -errno;
        step = "close";
    }
    /* A replica sharing the directory and our pid may have removed it already. */
    if (unlink(path) < 0 && errno != ENOENT && r == 0) {
        r = -errno;
        step = "remove";
    }
    return r < 0 ? fail_step(r, step, ret_step) : 0;
}

/* ---- the checker -------------------------------------------------------- */

struct health {
    pthread_mutex_t lock; /* guards st; held for record/render only, never during a probe */
    struct health_state *st;

    pthread_mutex_t notify_lock; /* one on_transition call at a time, in order */
    health_transition_fn on_transition;
    void *userdata;

    pthread_mutex_t wait_lock; /* guards stop_requested; wake is signalled under it */
    pthread_cond_t wake;
    bool wake_ready; /* wake was initialised */
    bool stop_requested;
    atomic_bool aborting; /* read by libcurl's progress callback */
    pthread_t thread;
    bool thread_started;

    CURL *curl; /* used by one thread at a time: health_start's, then the checker's */
    struct curl_slist *headers;
    char *url;
    char *notes_dir;
    int64_t interval_ms;
    int64_t probe_timeout_ms;

    struct notes_usage *notes_usage; /* borrowed; NULL = no quota */
    int64_t notes_rescan_ms;
    int64_t notes_counted_ms; /* monotonic time of the last recount (checker thread only) */
};

static void notify(struct health *h)
{
    struct health_transition t;
    bool got;

    pthread_mutex_lock(&h->notify_lock);
    for (;;) {
        pthread_mutex_lock(&h->lock);
        got = health_state_poll_transition(h->st, &t);
        pthread_mutex_unlock(&h->lock);
        if (!got)
            break;
        if (h->on_transition)
            h->on_transition(&t, h->userdata);
    }
    pthread_mutex_unlock(&h->notify_lock);
}

/* The quota as counted now; recounted when due, or when nothing could be counted yet. */
static void probe_notes(struct health *h, struct notes_usage_snapshot *ret)
{
    int64_t now = read_clock_ms(CLOCK_MONOTONIC);

    notes_usage_get(h->notes_usage, ret);
    if (!h->notes_usage || (ret->counted && now - h->notes_counted_ms < h->notes_rescan_ms))
        return;
    (void)notes_usage_scan(h->notes_usage); /* a failure shows in the snapshot */
    h->notes_counted_ms = now;
    notes_usage_get(h->notes_usage, ret);
}

static void check_once(struct health *h)
{
    struct health_api_probe api;
    struct notes_usage_snapshot notes;
    char disk_error[HEALTH_REASON_BYTES], writable_error[HEALTH_REASON_BYTES], errbuf[96];
    const char *step = "create";
    uint64_t free_bytes = 0;
    int64_t wall_ms;
    int disk_r, writable_r;

    api_probe_run(h->curl, h->url, h->headers, h->probe_timeout_ms, &h->aborting, &api);
    wall_ms = read_clock_ms(CLOCK_REALTIME);
    disk_r = health_probe_disk(h->notes_dir, &free_bytes);
    if (disk_r < 0)
        snprintf(disk_error, sizeof(disk_error), "statvfs: %s",
                 strerror_r(-disk_r, errbuf, sizeof(errbuf)));
    writable_r = health_probe_writable(h->notes_dir, &step);
    if (writable_r < 0)
        snprintf(writable_error, sizeof(writable_error), "%s probe file: %s", step,
                 strerror_r(-writable_r, errbuf, sizeof(errbuf)));
    probe_notes(h, &notes);
    /* A probe cut short by health_stop() says nothing about the API. */
    if (atomic_load(&h->aborting))
        return;

    pthread_mutex_lock(&h->lock);
    health_state_record_api(h->st, api.http_status, api.error[0] ? api.error : NULL, api.latency_ms,
                            wall_ms);
    health_state_record_disk(h->st, disk_r < 0 ? disk_error : NULL, free_bytes);
    health_state_record_writable(h->st, writable_r < 0 ? writable_error : NULL);
    health_state_record_notes(h->st, &notes);
    pthread_mutex_unlock(&h->lock);
    notify(h);
}

static struct timespec mono_deadline(int64_t after_ms)
{
    int64_t at = read_clock_ms(CLOCK_MONOTONIC) + after_ms;
    return (struct timespec){.tv_sec = at / 1000, .tv_nsec = (at % 1000) * 1000000};
}

static void *checker_main(void *arg)
{
    struct health *h = arg;

    pthread_mutex_lock(&h->wait_lock);
    while (!h->stop_requested) {
        struct timespec until = mono_deadline(h->interval_ms);
        int rc = 0;
        while (!h->stop_requested && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&h->wake, &h->wait_lock, &until);
        if (h->stop_requested)
            break;
        pthread_mutex_unlock(&h->wait_lock);
        check_once(h);
        pthread_mutex_lock(&h->wait_lock);
    }
    pthread_mutex_unlock(&h->wait_lock);
    return NULL;
}

/* Frees everything but the thread; h must be fully zeroed or initialised by health_start(). */
static void health_free(struct health *h)
{
    curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    free(h->url);
    free(h->notes_dir);
    health_state_free(h->st);
    if (h->wake_ready)
        pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->wait_lock);
    pthread_mutex_destroy(&h->notify_lock);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static int init_sync(struct health *h)
{
    pthread_condattr_t attr;
    int r;

    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->notify_lock, NULL);
    pthread_mutex_init(&h->wait_lock, NULL);
    r = pthread_condattr_init(&attr);
    if (r != 0)
        return -r;
    /* The interval must not stretch or shrink when the wall clock is set. */
    r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (r == 0)
        r = pthread_cond_init(&h->wake, &attr);
    pthread_condattr_destroy(&attr);
    h->wake_ready = r == 0;
    return -r;
}

/* Stop signals belong to main's sigwait loop, not to this thread. */
static int start_thread(struct health *h)
{
    sigset_t all, old;
    int r;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&h->thread, NULL, checker_main, h);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -r;
}

struct health *health_start(const struct health_config *cfg)
{
    struct health *h;
    int r;

    if (!cfg || !cfg->base_url || !cfg->notes_dir) {
        errno = EINVAL;
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (!h) {
        errno = ENOMEM;
        return NULL;
    }
    r = init_sync(h);
    if (r < 0) {
        health_free(h);
        errno = -r;
        return NULL;
    }
    atomic_init(&h->aborting, false);
    h->on_transition = cfg->on_transition;
    h->userdata = cfg->userdata;
    h->interval_ms = cfg->interval_ms < 1 ? 1 : cfg->interval_ms;
    h->probe_timeout_ms = cfg->probe_timeout_ms < 1 ? 1 : cfg->probe_timeout_ms;
    h->notes_usage = cfg->notes_usage;
    h->notes_rescan_ms = cfg->notes_rescan_ms > 0 ? cfg->notes_rescan_ms : HEALTH_NOTES_RESCAN_MS;
    /* The daemon counted the notes just before (main.c); a first count that failed is retried
       at once, as probe_notes() recounts whenever nothing is counted. */
    h->notes_counted_ms = read_clock_ms(CLOCK_MONOTONIC);
    h->st = health_state_new(cfg);
    h->url = models_url(cfg->base_url);
    h->headers = api_headers(cfg->api_key);
    h->notes_dir = strdup(cfg->notes_dir);
    h->curl = curl_easy_init();
    if (h->curl && cfg->ca_file && cfg->ca_file[0] &&
        curl_easy_setopt(h->curl, CURLOPT_CAINFO, cfg->ca_file) != CURLE_OK) {
        curl_easy_cleanup(h->curl);
        h->curl = NULL;
    }
    if (!h->st || !h->url || !h->headers || !h->notes_dir || !h->curl) {
        health_free(h);
        errno = ENOMEM;
        return NULL;
    }
    check_once(h);
    r = start_thread(h);
    if (r < 0) {
        health_free(h);
        errno = -r;
        return NULL;
    }
    h->thread_started = true;
    return h;
}

void health_set_shutdown(struct health *h)
{
    pthread_mutex_lock(&h->lock);
    health_state_set_shutdown(h->st);
    pthread_mutex_unlock(&h->lock);
    notify(h);
}

void health_set_redis(struct health *h, enum health_redis mode)
{
    pthread_mutex_lock(&h->lock);
    health_state_set_redis(h->st, mode);
    pthread_mutex_unlock(&h->lock);
}

int health_render(struct health *h, char **ret_body)
{
    int r;

    pthread_mutex_lock(&h->lock);
    r = health_state_render(h->st, ret_body);
    pthread_mutex_unlock(&h->lock);
    return r;
}

bool health_is_ready(struct health *h)
{
    bool ready;

    pthread_mutex_lock(&h->lock);
    ready = health_state_ready(h->st);
    pthread_mutex_unlock(&h->lock);
    return ready;
}

struct health *health_stop(struct health *h)
{
    if (!h)
        return NULL;
    if (h->thread_started) {
        pthread_mutex_lock(&h->wait_lock);
        h->stop_requested = true;
        atomic_store(&h->aborting, true);
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->wait_lock);
        pthread_join(h->thread, NULL);
    }
    health_free(h);
    return NULL;
}
