/*
 * main.c — agentd's entry point: command line, configuration, signals, and
 * the start/stop order of the pieces.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "agentd/app.h"
#include "agentd/auth.h"
#include "agentd/clock.h"
#include "agentd/config.h"
#include "agentd/conversations.h"
#include "agentd/health.h"
#include "agentd/log.h"
#include "agentd/metrics.h"
#include "agentd/notes.h"
#include "agentd/probe.h"
#include "agentd/redis.h"
#include "agentd/reload.h"
#include "agentd/run.h"
#include "agentd/server.h"
#include "agentd/url.h"
#include "agentd/worker.h"

#define EXIT_BAD_CONFIG 2
/* Housekeeping period of the main thread (conversation expiry, the Redis mode into readiness and
   metrics: a change shows within this). */
#define MAIN_TICK_MS 250
/* How often main looks at AGENTD_AUTH_TOKENS_FILE for a new version (as --help says): a
   Kubernetes Secret update reaches the mounted file without any signal. */
#define MAIN_TOKENS_CHECK_MS 10000
/* How long shutdown waits for durable runs to be handed over (a Redis round trip each). */
#define MAIN_HAND_OVER_MS 1000
/* At most one heap trim per this many ms, and only when idle after runs. */
#define MAIN_TRIM_INTERVAL_MS 10000
/* A URL setting as logged: redacted (url.h), whatever its length. */
#define MAIN_URL_SHOWN_BYTES (CONFIG_URL_MAX_BYTES + URL_REDACT_EXTRA_BYTES + 1)
/* Time the server threads get to write the last answers before the daemon stops. */
#define FINAL_FLUSH_MS 200

static void usage(FILE *out)
{
    fprintf(out, "agentd %s — LLM agent runs behind an HTTP API\n\n", AGENTD_VERSION);
    config_print_help(out);
}

/* Every thread inherits a mask that blocks the signals main handles; main waits for them: the
   stop signals, and SIGHUP (re-read the config file and the tokens file). */
static void block_main_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Thousands of concurrent connections need more descriptors than the usual soft limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int setup_logging(const struct agentd_config *cfg)
{
    enum log_level level;
    enum log_format format;
    if (log_parse_level(cfg->log_level, &level) < 0) {
        fprintf(stderr, "AGENTD_LOG_LEVEL: expected one of debug|info|warn|error, got '%.32s'\n",
                cfg->log_level);
        return -EINVAL;
    }
    if (strcmp(cfg->log_format, "json") == 0) {
        format = LOG_FORMAT_JSON;
    } else if (strcmp(cfg->log_format, "text") == 0) {
        format = LOG_FORMAT_TEXT;
    } else {
        fprintf(stderr, "AGENTD_LOG_FORMAT: expected json or text, got '%.32s'\n", cfg->log_format);
        return -EINVAL;
    }
    log_setup(level, format, STDERR_FILENO);
    return 0;
}

/* Waits up to ms for a signal of set; returns it, or 0 on timeout. */
static int wait_signal(const sigset_t *set, int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);
    return sig > 0 ? sig : 0;
}

/* Waits up to ms for a stop signal: true when one came. A SIGHUP meanwhile is taken and ignored
   (shutting down, the tokens in use stay). */
static bool stop_signal_within(const sigset_t *set, int64_t ms)
{
    int64_t until = clock_now_ms() + ms, left = ms;
    do {
        int sig = wait_signal(set, left);
        if (sig == SIGTERM || sig == SIGINT)
            return true;
        left = until - clock_now_ms();
    } while (left > 0);
    return false;
}

/* AGENTD_AUTH_TOKENS_FILE as main watches it: re-read on SIGHUP, and when what is at its path
   changes (looked at every MAIN_TOKENS_CHECK_MS). */
struct tokens_file {
    struct auth *auth;
    const char *path;             /* NULL: tokens from the environment or none, nothing to read */
    struct auth_file_stamp stamp; /* the version last read, or last found unusable */
    int64_t checked_ms;
};

/* A file that cannot be read or holds no token leaves the tokens in use alone: a half-written
   or emptied file must not lock every client out (or let everyone in). */
static void tokens_reload(struct tokens_file *tf, const char *trigger)
{
    struct auth_file_stamp before;
    char err[384];
    size_t count = 0;
    /* Taken before reading: if the file changes while it is read, the next check sees that. */
    auth_file_stamp_get(tf->path, &before);
    if (auth_reload_file(tf->auth, tf->path, &tf->stamp, &count, err, sizeof(err)) < 0) {
        tf->stamp = before; /* reported once, not at every check while it stays so */
        log_warn("auth tokens not reloaded, keeping the current ones", LF_S("trigger", trigger),
                 LF_S("reason", err), LF_I("count", (int64_t)auth_count(tf->auth)));
        return;
    }
    log_info("auth tokens reloaded", LF_S("trigger", trigger), LF_I("count", (int64_t)count));
}

static void tokens_check(struct tokens_file *tf, int64_t now)
{
    struct auth_file_stamp stamp;
    if (!tf->path || now - tf->checked_ms < MAIN_TOKENS_CHECK_MS)
        return;
    tf->checked_ms = now;
    auth_file_stamp_get(tf->path, &stamp);
    if (!auth_file_stamp_equal(&stamp, &tf->stamp))
        tokens_reload(tf, "file changed");
}

static void on_sighup(struct tokens_file *tf, struct reload *rl)
{
    if (tf->path)
        tokens_reload(tf, "SIGHUP");
    if (reload_has_file(rl))
        reload_now(rl, "SIGHUP");
    if (!tf->path && !reload_has_file(rl))
        log_info("SIGHUP ignored: no AGENTD_CONFIG_FILE or AGENTD_AUTH_TOKENS_FILE to reload");
}

/* The shared-state mode into logs, readiness and metrics. */
static void report_redis(struct app *app)
{
    if (!app->redis)
        return;
    app_report_redis(app);
    bool shared = redis_pool_mode(app->redis) == REDIS_MODE_SHARED;
    if (app->health)
        health_set_redis(app->health, shared ? HEALTH_REDIS_SHARED : HEALTH_REDIS_DEGRADED);
    metrics_redis_mode(shared ? 1 : 2, redis_pool_replicas(app->redis));
}

/* Serves until a stop signal, expiring idle conversations on the way, re-reading the config and
   tokens files when asked or changed, and giving memory back to the system once a burst is over:
   glibc keeps freed heap (per-thread arenas) mapped, so without a trim a pod's RSS would stay at
   its peak long after the load has gone. */
static int serve(struct app *app, struct tokens_file *tf, struct reload *rl, const sigset_t *set)
{
    uint_fast64_t runs_at_trim = atomic_load(&app->run_seq);
    int64_t trimmed_at = clock_now_ms();
    tf->checked_ms = trimmed_at;
    for (;;) {
        int sig = wait_signal(set, MAIN_TICK_MS);
        if (sig == SIGHUP)
            on_sighup(tf, rl);
        else if (sig)
            return sig;
        int64_t now = clock_now_ms();
        tokens_check(tf, now);
        reload_check(rl, now);
        report_redis(app);
        if (app->convs)
            conv_store_sweep(app->convs, now);
        uint_fast64_t runs = atomic_load(&app->run_seq);
        if (runs != runs_at_trim && atomic_load(&app->inflight) == 0 &&
            now - trimmed_at >= MAIN_TRIM_INTERVAL_MS) {
            malloc_trim(0);
            runs_at_trim = runs;
            trimmed_at = now;
        }
    }
}

/* The Kubernetes-friendly stop: not ready at once, keep serving while endpoints are removed, stop
   accepting, let runs finish, answer the rest. Returns false when a second signal asked to stop
   now. */
static bool shut_down(struct app *app, struct server *srv, const sigset_t *set)
{
    health_set_shutdown(app->health);
    log_info("shutdown: not ready, still serving", LF_S("reason", "stop signal"),
             LF_I("delay_ms", app->cfg.shutdown_delay_ms));
    if (stop_signal_within(set, app->cfg.shutdown_delay_ms))
        return false;
    server_quiesce(srv);
    atomic_store(&app->draining, true);
    log_info("shutdown: stopped accepting, draining",
             LF_I("in_flight", (int64_t)server_requests_in_progress(srv)),
             LF_I("grace_ms", app->cfg.shutdown_grace_ms));
    int64_t until = clock_now_ms() + app->cfg.shutdown_grace_ms;
    /* Everything accepted finishes if it can: runs in flight, and requests whose body is still
       arriving (they were admitted at their headers, before draining began). */
    while (server_requests_in_progress(srv) > 0 && clock_now_ms() < until)
        if (stop_signal_within(set, 50))
            return false;
    /* Durable runs still going are handed over: released with their checkpoints, their clients
       told to retry now (another replica resumes them). */
    if (server_requests_in_progress(srv) > 0 && app->redis) {
        run_hand_over(app);
        until = clock_now_ms() + MAIN_HAND_OVER_MS;
        while (server_requests_in_progress(srv) > 0 && clock_now_ms() < until)
            if (stop_signal_within(set, 20))
                return false;
    }
    return true;
}

/* Before serving: clears the temp files a crash left in the notes directory (notes.h says which
   are safe to remove when replicas share the volume), then counts the notes for the quota. A
   directory that cannot be read is no reason not to start: readiness reports it, and the first
   save counts again. */
static void prepare_notes(struct app *app)
{
    const char *dir = app->cfg.notes_dir;
    char errbuf[96];
    int removed = notes_remove_stale_temps(dir, (time_t)(clock_wall_ms() / 1000));
    if (removed < 0)
        log_warn("cannot look for stale note temp files", LF_S("path", dir),
                 LF_S("reason", strerror_r(-removed, errbuf, sizeof(errbuf))));
    else
        log_info("removed stale note temp files", LF_S("path", dir), LF_I("count", removed));

    int r = notes_usage_scan(app->notes_usage);
    struct notes_usage_snapshot s;
    notes_usage_get(app->notes_usage, &s);
    if (r < 0)
        log_warn("cannot count notes for the quota", LF_S("path", dir),
                 LF_S("reason", strerror_r(-r, errbuf, sizeof(errbuf))));
    else if (s.counted)
        log_info("notes counted", LF_S("path", dir), LF_I("files", (int64_t)s.files),
                 LF_I("bytes", (int64_t)s.bytes), LF_I("max_files", (int64_t)s.max_files),
                 LF_I("max_bytes", (int64_t)s.max_bytes));
}

/* The bearer tokens: from AGENTD_AUTH_TOKENS or AGENTD_AUTH_TOKENS_FILE, or none (then every
   request is let in). At start-up a file that cannot be read or holds no token is a
   configuration error like any other: -EINVAL with the message in err (-ENOMEM too). */
static int load_auth(const struct agentd_config *cfg, struct auth **ret,
                     struct auth_file_stamp *ret_stamp, char *err, size_t errlen)
{
    struct auth_tokens *tokens = NULL;
    char why[384];
    int r = 0;
    if (cfg->auth_tokens_file) {
        r = auth_tokens_read_file(cfg->auth_tokens_file, &tokens, ret_stamp, why, sizeof(why));
        if (r < 0)
            snprintf(err, errlen, "AGENTD_AUTH_TOKENS_FILE: %s", why);
    } else if (cfg->auth_tokens) {
        r = auth_tokens_parse_list(cfg->auth_tokens, &tokens, why, sizeof(why));
        if (r < 0)
            snprintf(err, errlen, "AGENTD_AUTH_TOKENS: %s", why);
    }
    if (r < 0)
        return r == -ENOMEM ? r : -EINVAL;
    struct auth *a = auth_new(tokens);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *ret = a;
    return 0;
}

/* Settings that expose the API key, one warning line each (also under --check-config, on stderr):
   start-up is when an operator reads the log. */
static void warn_unsafe_settings(const struct agentd_config *cfg, size_t auth_tokens)
{
    char host[CONFIG_URL_MAX_BYTES + 1], shown[MAIN_URL_SHOWN_BYTES];
    if (auth_tokens == 0 && !url_host_is_loopback(cfg->listen_host))
        log_warn("no bearer tokens on a non-loopback address: anyone who can reach it can run "
                 "agents on your API key (set AGENTD_AUTH_TOKENS or AGENTD_AUTH_TOKENS_FILE)",
                 LF_S("host", cfg->listen_host), LF_I("port", cfg->listen_port));
    const char *base = cfg->anthropic_base_url;
    if (url_is_plain_http(base) &&
        !(url_host(base, host, sizeof(host)) && url_host_is_loopback(host))) {
        url_redact(base, shown, sizeof(shown));
        log_warn("ANTHROPIC_BASE_URL is plain http:// to a host that is not loopback: the API key "
                 "would travel in clear",
                 LF_S("anthropic_base_url", shown), LF_B("api_key_set", cfg->api_key != NULL));
    }
}

static void on_ready_change(const struct health_transition *t, void *arg)
{
    (void)arg;
    metrics_set_ready(t->ready);
    log_at(t->ready ? LOG_INFO : LOG_WARN, "readiness changed", LF_B("ready", t->ready),
           LF_S("reason", t->reason));
}

static void warn_unknown(const char *message, void *arg)
{
    (void)arg;
    log_warn(message);
}

static void print_unknown(const char *message, void *arg)
{
    (void)arg;
    fprintf(stderr, "agentd: %s\n", message);
}

int main(int argc, char **argv)
{
    bool check_only = false;
    const char *check_file = NULL;
    if (argc > 1 && strcmp(argv[1], "probe") == 0)
        return probe_main(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("agentd %s\n", AGENTD_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
            if (i + 1 < argc && argv[i + 1][0] != '-')
                check_file = argv[++i];
        } else {
            fprintf(stderr, "agentd: unknown argument '%s'\n\n", argv[i]);
            usage(stderr);
            return EXIT_BAD_CONFIG;
        }
    }

    struct agentd_config cfg;
    struct config_file *cfg_file = NULL;
    char err[512];
    metrics_init(AGENTD_VERSION);
    const char *cfg_path = check_file ? check_file : getenv("AGENTD_CONFIG_FILE");
    if (reload_load(cfg_path, &cfg, &cfg_file, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentd: invalid configuration: %s\n", err);
        return EXIT_BAD_CONFIG;
    }

    struct tokens_file tokens = {.path = cfg.auth_tokens_file};
    int r = load_auth(&cfg, &tokens.auth, &tokens.stamp, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "agentd: invalid configuration: %s\n", err);
        config_file_free(cfg_file);
        config_free(&cfg);
        return r == -EINVAL ? EXIT_BAD_CONFIG : EXIT_FAILURE;
    }
    if (setup_logging(&cfg) < 0) {
        tokens.auth = auth_free(tokens.auth);
        config_file_free(cfg_file);
        config_free(&cfg);
        return EXIT_BAD_CONFIG;
    }
    warn_unsafe_settings(&cfg, auth_count(tokens.auth));
    /* A typo warns and starts (a rolling update must not stop on a stray variable), but
       --check-config fails on it, so CI catches it before it ships. */
    size_t unknown =
        reload_report_unknown(cfg_file, true, check_only ? print_unknown : warn_unknown, NULL);
    cfg_file = config_file_free(cfg_file);
    /* Before any curl handle exists (app_init creates the workers' multi handles). */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct app app;
    r = app_init(&app, &cfg, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "agentd: %s\n", err);
        app_fini(&app);
        curl_global_cleanup();
        tokens.auth = auth_free(tokens.auth);
        config_free(&cfg);
        return r == -EINVAL ? EXIT_BAD_CONFIG : EXIT_FAILURE;
    }
    if (check_only) {
        config_print_effective(&cfg, stdout);
        if (unknown == 0)
            printf("configuration ok\n");
        else
            fprintf(stderr, "agentd: %zu unknown setting%s (see above)\n", unknown,
                    unknown == 1 ? "" : "s");
        app_fini(&app);
        curl_global_cleanup();
        tokens.auth = auth_free(tokens.auth);
        config_free(&cfg);
        return unknown == 0 ? 0 : EXIT_BAD_CONFIG;
    }

    sigset_t signals;
    block_main_signals(&signals);
    raise_fd_limit();
    prepare_notes(&app);

    char start_err[256] = "";
    if (app_start(&app, start_err, sizeof(start_err)) < 0) {
        log_error("cannot start", LF_S("reason", start_err));
        return EXIT_FAILURE;
    }
    struct health_config hc = {
        .base_url = cfg.anthropic_base_url,
        .api_key = cfg.api_key,
        .notes_dir = cfg.notes_dir,
        .min_free_bytes = cfg.notes_min_free_bytes,
        .interval_ms = cfg.ready_interval_ms,
        .probe_timeout_ms = cfg.ready_timeout_ms,
        .failure_threshold = cfg.ready_failure_threshold,
        .notes_usage = app.notes_usage,
        .on_transition = on_ready_change,
    };
    app.health = health_start(&hc);
    struct server *srv =
        app.health ? server_start(&app, server_routes, tokens.auth, err, sizeof(err)) : NULL;
    if (!srv) {
        log_error("cannot start the HTTP server", LF_S("reason", app.health ? err : "readiness"));
        app.health = health_stop(app.health);
        app_fini(&app);
        tokens.auth = auth_free(tokens.auth);
        config_free(&cfg);
        return EXIT_FAILURE;
    }
    char base_url[MAIN_URL_SHOWN_BYTES];
    url_redact(cfg.anthropic_base_url, base_url, sizeof(base_url));
    log_info("agentd started", LF_S("version", AGENTD_VERSION), LF_S("host", cfg.listen_host),
             LF_I("port", server_port(srv)), LF_I("workers", app.n_workers),
             LF_S("anthropic_base_url", base_url), LF_S("model", cfg.model),
             LF_B("api_key_set", cfg.api_key != NULL), LF_I("max_inflight", cfg.max_inflight),
             LF_I("llm_timeout_ms", cfg.llm_timeout_ms),
             LF_I("total_timeout_ms", cfg.total_timeout_ms), LF_S("notes_dir", cfg.notes_dir),
             LF_B("web_search", cfg.search_url && cfg.search_url[0]),
             LF_I("auth_tokens", (int64_t)auth_count(tokens.auth)));

    struct reload *rl = reload_new(&app, &cfg, cfg_path);
    if (!rl) {
        log_error("cannot start", LF_S("reason", "out of memory"));
        return EXIT_FAILURE;
    }
    int sig = serve(&app, &tokens, rl, &signals);
    rl = reload_free(rl);
    log_info("shutdown: stop signal", LF_I("signal", sig),
             LF_I("in_flight", (int64_t)server_suspended_count(srv)));
    if (!shut_down(&app, srv, &signals)) {
        log_warn("shutdown: second stop signal, exiting now", LF_I("signal", sig));
        server_quiesce(srv);
        atomic_store(&app.draining, true);
    }
    app_stop_threads(&app); /* nothing else touches the suspended requests now */
    size_t aborted = server_abort_suspended(srv);
    if (aborted)
        log_warn("shutdown: answered unfinished runs", LF_I("count", (int64_t)aborted),
                 LF_S("reason", "shutting_down"));
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = FINAL_FLUSH_MS * 1000000L}, NULL);
    server_stop(srv);
    tokens.auth = auth_free(tokens.auth); /* no request is checked any more */
    /* The checker reads the notes quota, which app_fini() frees. */
    app.health = health_stop(app.health);
    app_fini(&app);
    curl_global_cleanup();
    config_free(&cfg);
    log_info("shutdown: done", LF_I("signal", sig));
    return 0;
}
