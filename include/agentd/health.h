/*
 * health.h — readiness: a background checker that probes the LLM API, the
 * notes disk, the notes directory and the notes quota, and a cached state
 * that GET /health/ready answers from without touching the network.
 *
 * Two halves:
 *  - struct health_state: pure state. Probe results and the shutdown flag go
 *    in, readiness, the JSON body (API.md "GET /health/ready") and readiness
 *    transitions come out. No clock, no I/O, no lock, no logging; unit-tested
 *    with injected results and wall times.
 *  - struct health: the I/O shell. One thread of its own (all signals
 *    blocked) runs every probe with blocking calls (libcurl easy, statvfs,
 *    open) once per interval and records the results in a health_state under
 *    a mutex. Readers take that mutex only to copy or render a few fields, so
 *    a hanging LLM API never delays GET /health/ready. It also recounts the
 *    notes for the quota (notes_usage_scan()) every notes_rescan_ms.
 *
 * Threads: a struct health_state has no lock of its own; one thread at a
 * time, or under the caller's lock (struct health's mutex). health_start()
 * and health_stop() run on the thread that owns the daemon (main);
 * health_set_shutdown(), health_render() and health_is_ready() from any
 * thread. The probes are blocking and reentrant.
 *
 * Readiness = every check ok and not shutting down:
 *  - anthropic_api: GET {base_url}/v1/models?limit=1 (spends no tokens).
 *    A transport failure (connect, DNS, TLS, timeout) or HTTP 401/403 is a
 *    failed probe; any other HTTP answer (2xx, 429, 5xx, other 4xx) proves
 *    the API is reachable with this key and counts as success. The check
 *    fails once failure_threshold probes in a row failed, so one blip does
 *    not flap the pod; one success resets the count. Until the API has been
 *    reached once, a single failure is enough: a pod that never reached the
 *    API has no readiness to protect from flapping.
 *  - disk_space: statvfs(notes_dir) f_bavail * f_frsize >= min_free_bytes.
 *  - notes_writable: a probe file ".ready-probe-<host>-<pid>" can be created
 *    with O_CREAT|O_EXCL, written and removed in notes_dir.
 *  - notes: the notes quota (AGENTD_NOTES_MAX_FILES / AGENTD_NOTES_MAX_BYTES,
 *    notes.h) is not exhausted: fails once no new note fits at all (files >=
 *    max_files, or bytes >= max_bytes), or when the notes cannot be counted.
 *    Nearly full is not a failure: the pod can still serve every request and
 *    save smaller notes, and a save that does not fit is refused with a
 *    message the model relays. The body shows files and bytes next to their
 *    limits, so an alert can fire before the quota is exhausted. With no
 *    limit set (or no usage configured) the check always passes.
 *  - shutdown: fails from health_set_shutdown() on, at once.
 * A check that has not run yet fails with reason "not checked yet".
 *
 * The API key is never stored in the state and never appears in a body or
 * a reason.
 *
 * Conventions: 0 / positive on success, -errno on failure; destructors take
 * NULL and return NULL; "reason" texts are short, human readable and
 * truncated to HEALTH_REASON_BYTES - 1 bytes. Memory: rendered bodies are
 * malloc'd (caller free()s); strings passed in (cfg, reasons) are copied,
 * never kept.
 */
#ifndef AGENTD_HEALTH_H
#define AGENTD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentd/notes.h" /* struct notes_usage, struct notes_usage_snapshot */

/* Buffer size for one check's reason, including the NUL. */
#define HEALTH_REASON_BYTES 128
/* Buffer size for a transition's reason (all failing checks joined), including the NUL. */
#define HEALTH_TRANSITION_REASON_BYTES 512

/*
 * A change of readiness, reported once per change. reason is "all checks ok"
 * when becoming ready, otherwise every failing check as "<check>: <reason>"
 * joined with "; " (e.g. "anthropic_api: connection refused").
 * The first report after creation always counts as a change, so the caller
 * can log the initial readiness.
 */
struct health_transition {
    bool ready;
    char reason[HEALTH_TRANSITION_REASON_BYTES];
};

/*
 * Called by the checker on each readiness change, outside the state mutex,
 * one call at a time, in order. It runs on the thread that caused the change:
 * health_start()'s caller (first check), the checker thread, or
 * health_set_shutdown()'s caller. It may call health_render() and
 * health_is_ready(), nothing else of this module. t is valid during the call.
 */
typedef void (*health_transition_fn)(const struct health_transition *t, void *userdata);

/*
 * Settings; config.c validates them (AGENTD_READY_INTERVAL_MS,
 * AGENTD_NOTES_MIN_FREE_BYTES, AGENTD_READY_FAILURE_THRESHOLD,
 * AGENTD_READY_TIMEOUT_MS). Out-of-range numbers are clamped: interval_ms
 * and probe_timeout_ms to >= 1, failure_threshold to >= 1; notes_rescan_ms
 * <= 0 means the default.
 */
struct health_config {
    const char *base_url;               /* ANTHROPIC_BASE_URL, no trailing '/' needed; required */
    const char *api_key;                /* sent as x-api-key; NULL or "" = send none */
    const char *ca_file;                /* AGENTD_LLM_CA_FILE: CAs for the API's TLS certificate
                                           (copied); NULL or "" = the system's */
    const char *notes_dir;              /* AGENTD_NOTES_DIR; required */
    uint64_t min_free_bytes;            /* disk_space fails below this (1 GiB) */
    int64_t interval_ms;                /* time between the end of one check and the next (10000) */
    int64_t probe_timeout_ms;           /* whole LLM API probe, connect included (2000) */
    int failure_threshold;              /* consecutive failed API probes that fail the check (2) */
    struct notes_usage *notes_usage;    /* the notes quota; borrowed, must outlive the checker;
                                           NULL = the notes check always passes */
    int64_t notes_rescan_ms;            /* how often the notes are recounted (60000): the
                                           running totals miss deletions and other replicas */
    health_transition_fn on_transition; /* NULL = nobody is told */
    void *userdata;                     /* passed to on_transition */
};

/* ---- pure state ------------------------------------------------------- */

struct health_state;

/*
 * New state with nothing checked yet (not ready). Uses failure_threshold,
 * min_free_bytes and notes_dir (copied; shown as disk_space.path) from cfg;
 * NULL notes_dir shows as "". Returns NULL on ENOMEM or cfg == NULL.
 */
struct health_state *health_state_new(const struct health_config *cfg);

/* Frees st (NULL is fine); returns NULL. */
struct health_state *health_state_free(struct health_state *st);

/*
 * Records one LLM API probe that ended at wall_ms (ms since the epoch; shown
 * as checked_at). error != NULL: no HTTP answer arrived, error is the reason
 * ("connection refused", "timeout", "DNS resolution failed: ...",
 * "TLS failure: ...") and http_status is ignored. error == NULL: the API
 * answered http_status; 401 and 403 fail with reason "HTTP 401"/"HTTP 403",
 * everything else succeeds. latency_ms is shown as is (negative -> 0).
 */
void health_state_record_api(struct health_state *st, long http_status, const char *error,
                             int64_t latency_ms, int64_t wall_ms);

/*
 * Records a disk check: error != NULL means statvfs failed (reason; free
 * bytes then unknown and left out of the body); otherwise the check fails
 * when free_bytes < min_free_bytes.
 */
void health_state_record_disk(struct health_state *st, const char *error, uint64_t free_bytes);

/* Records a writability check: NULL = ok, otherwise the reason it failed. */
void health_state_record_writable(struct health_state *st, const char *error);

/*
 * Records the notes quota (s copied; NULL = no quota). Fails with reason
 * "cannot count notes: <strerror>" when the last count failed, "not checked
 * yet" when a limit is set but nothing was counted, and "quota exhausted:
 * <files> of <max> files (AGENTD_NOTES_MAX_FILES)" / "... bytes
 * (AGENTD_NOTES_MAX_BYTES)" when notes_usage_full(s).
 */
void health_state_record_notes(struct health_state *st, const struct notes_usage_snapshot *s);

/* From now on the shutdown check fails (reason "draining"). Irreversible. */
void health_state_set_shutdown(struct health_state *st);

/* The "redis" check: informational, it never makes the replica unready (without Redis a replica
   serves with its own state). Absent from the body while HEALTH_REDIS_OFF (no AGENTD_REDIS_URL);
   "degraded" while some worker cannot reach Redis. */
enum health_redis { HEALTH_REDIS_OFF = 0, HEALTH_REDIS_SHARED, HEALTH_REDIS_DEGRADED };
void health_state_set_redis(struct health_state *st, enum health_redis mode);

/* True when every check is ok. */
bool health_state_ready(const struct health_state *st);

/* The anthropic_api check's consecutive failed probes (0 after a success). */
int health_state_api_failures(const struct health_state *st);

/*
 * Renders the /health/ready body (compact JSON, API.md) into *ret_body
 * (malloc'd, caller free()s it; written only on success). Returns 200 when
 * ready, 503 when not, -ENOMEM when out of memory.
 */
int health_state_render(const struct health_state *st, char **ret_body);

/*
 * If readiness differs from what was last handed out (or nothing was handed
 * out yet), writes the change to *ret and returns true; otherwise false.
 * Level-triggered: a change that reverted before this call is not reported,
 * so call it after every complete set of records.
 */
bool health_state_poll_transition(struct health_state *st, struct health_transition *ret);

/* ---- probes (blocking I/O; the checker thread uses them) ----------------- */

/* Result of one LLM API probe. */
struct health_api_probe {
    long http_status;                /* 0 when no HTTP answer arrived */
    int64_t latency_ms;              /* from the start of the request to its end */
    char error[HEALTH_REASON_BYTES]; /* "" when an HTTP answer arrived, else the reason */
};

/*
 * One GET {base_url}/v1/models?limit=1 with x-api-key (when api_key is set)
 * and anthropic-version: 2023-06-01, blocking up to timeout_ms; the body is
 * read and discarded. Fills *ret and returns 0, or returns -ENOMEM / -EINVAL
 * (NULL argument) without touching *ret. curl_global_init() must have run.
 */
int health_probe_api(const char *base_url, const char *api_key, int64_t timeout_ms,
                     struct health_api_probe *ret);

/* statvfs(dir): *ret_free_bytes = f_bavail * f_frsize (saturating). 0 or -errno. */
int health_probe_disk(const char *dir, uint64_t *ret_free_bytes);

/*
 * Creates dir/.ready-probe-<host>-<pid> (host: gethostname(), characters
 * outside [A-Za-z0-9.-] as '_') with O_CREAT|O_EXCL, writes one byte and
 * removes it. A leftover probe file (from a crashed process that had the
 * same pid, common with pid 1 in containers) is removed and the create
 * retried once; a probe file that someone else already removed counts as
 * removed. Returns 0, or -errno of the step that failed and, if ret_step is
 * not NULL, that step's name ("create", "write", "close", "remove"; static).
 */
int health_probe_writable(const char *dir, const char **ret_step);

/* ---- the checker -------------------------------------------------------- */

struct health;

/*
 * Copies cfg (strings included), runs the first check synchronously (so
 * readiness means something from the start; bounded by probe_timeout_ms plus
 * the disk calls; on_transition is called from here with the initial
 * readiness), then starts the checker thread. curl_global_init() must have
 * run. Returns NULL with errno set (EINVAL: missing base_url/notes_dir,
 * ENOMEM, or pthread_create's error).
 */
struct health *health_start(const struct health_config *cfg);

/* Readiness turns false at once (shutdown check fails); on_transition is called from here. */
void health_set_shutdown(struct health *h);
/* health_state_set_redis, from any thread. */
void health_set_redis(struct health *h, enum health_redis mode);

/*
 * The cached /health/ready body: 200 (ready) or 503, *ret_body malloc'd
 * (free() it; written only on success); -ENOMEM. Never waits for a probe.
 * Thread-safe.
 */
int health_render(struct health *h, char **ret_body);

/* Cached readiness. Thread-safe. */
bool health_is_ready(struct health *h);

/*
 * Stops the checker: wakes it from its interval wait and aborts a probe in
 * flight (libcurl checks at least once a second), joins it, frees h (NULL is
 * fine). Returns NULL. No other thread may use h during or after the call.
 * A filesystem call that hangs (e.g. a dead NFS mount) delays the join.
 */
struct health *health_stop(struct health *h);

#endif
