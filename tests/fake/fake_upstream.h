/*
 * fake_upstream.h — internal contract between the parts of the fake upstream
 * (tests/fake/): a test double that plays the Anthropic Messages API,
 * Open-Meteo (geocoding + forecast) and SearXNG on one port, with fault
 * injection and a request log driven through an admin API (see README.md).
 *
 * This header is private to the fake; agentd never includes it.
 *
 * Parts:
 *   fake_main.c    argv, listen socket, signals, start/stop order
 *   fake_server.c  libmicrohttpd callbacks, routing, admin API, answers
 *   fake_model.c   the rule-based "model" behind POST /v1/messages (pure)
 *   fake_tools.c   Open-Meteo, SearXNG and /v1/models answers (pure)
 *   fake_faults.c  the fault table (thread-safe)
 *   fake_log.c     the bounded request log (thread-safe)
 *   fake_timer.c   parks suspended connections and resumes them when due
 *   fake_stream.c  a 200 message as the Messages streaming events, with stream faults
 *   fake_util.c    routes, reply and error helpers, UTF-8 clean-up
 *
 * Conventions: 0/positive on success, -errno on failure; ret_* written only
 * on success; destructors accept NULL and return NULL.
 */
#ifndef FAKE_UPSTREAM_H
#define FAKE_UPSTREAM_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest request body accepted on the upstream routes (like the real API). */
#define FAKE_MAX_BODY_BYTES ((size_t)32 * 1024 * 1024)
/* Largest request body accepted on /_admin/ routes. */
#define FAKE_MAX_ADMIN_BODY_BYTES ((size_t)1024 * 1024)
/* Upper bound on every delay (fault delay_ms, [slow:N], --delay-ms). */
#define FAKE_MAX_DELAY_MS 600000
/* Request log bounds: oldest entries are dropped beyond either. */
#define FAKE_LOG_MAX_ENTRIES      100000
#define FAKE_LOG_MAX_STORED_BYTES ((size_t)256 * 1024 * 1024)
/* Longest model name a fault may select, and longest error message it may set. */
#define FAKE_MAX_MODEL_BYTES   128
#define FAKE_MAX_MESSAGE_BYTES 256
/* Most faults kept at once (spent ones are purged first when full). */
#define FAKE_MAX_FAULTS 1024
/* Compact output; 10 significant digits keeps 47.60621 from printing as 47.606209999999997. */
#define FAKE_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))

/* ---- clock ---------------------------------------------------------- */

/* Milliseconds on CLOCK_MONOTONIC since fake_clock_init(). Thread-safe. */
void fake_clock_init(void);
uint64_t fake_clock_ms(void);

/* ---- strings --------------------------------------------------------- */

/* strdup that replaces every non-ASCII byte by '?' when s is not valid UTF-8 (JSON needs UTF-8). */
char *fake_strdup_utf8(const char *s);
/* JSON string of s, cleaned like fake_strdup_utf8; NULL only on OOM. */
json_t *fake_json_string_lossy(const char *s);
/* Parses the whole of s as a decimal integer in [min, max]: 0, or -EINVAL. */
int fake_parse_long(const char *s, long min, long max, long *ret);

/* ---- routes --------------------------------------------------------- */

enum fake_route {
    FAKE_ROUTE_MESSAGES = 0, /* POST /v1/messages */
    FAKE_ROUTE_MODELS,       /* GET /v1/models */
    FAKE_ROUTE_GEOCODING,    /* GET /v1/search (Open-Meteo geocoding) */
    FAKE_ROUTE_FORECAST,     /* GET /v1/forecast (Open-Meteo forecast) */
    FAKE_ROUTE_SEARCH,       /* GET /search (SearXNG) */
    FAKE_ROUTE_ADMIN,        /* /_admin/... */
    FAKE_ROUTE_UNKNOWN,      /* anything else: 404 */
    FAKE_ROUTE_COUNT,
};

/* Stable lower-case name ("messages", ..., "admin", "unknown"). */
const char *fake_route_name(enum fake_route route);
/* Route of a (decoded) URL path. */
enum fake_route fake_route_of_path(const char *path);
/* Parses a route name as used by faults and log filters; "*" is not a route. Returns 0 or -EINVAL.
 */
int fake_route_parse(const char *name, enum fake_route *ret_route);

/* ---- replies -------------------------------------------------------- */

/* One planned HTTP answer body, produced by the pure route handlers. */
struct fake_reply {
    int status;               /* HTTP status */
    json_t *json;             /* owned JSON body, or NULL when text is used */
    const char *text;         /* static non-JSON body (e.g. SearXNG's 403 page) */
    const char *content_type; /* static; NULL = application/json */
    const char *allow;        /* static Allow header value for 405, or NULL */
    int64_t delay_ms;         /* delay the body asked for ("[slow:N]"), -1 when none */
};

/* Sets r to status + json (ownership of json moves to r; NULL json = out of memory → 500). */
void fake_reply_set(struct fake_reply *r, int status, json_t *json);
/* Releases what r owns and resets it to an empty reply. r may be NULL. */
void fake_reply_clear(struct fake_reply *r);

/* Anthropic error type for an HTTP status (400 → "invalid_request_error", ...). */
const char *fake_anthropic_error_type(int status);
/* {"type":"error","error":{"type","message"},"request_id":"req_fake_<seq>"}; NULL on OOM. */
json_t *fake_anthropic_error(const char *type, const char *message, uint64_t seq);
/* Sets r to an Anthropic-style error; type NULL = derived from the status. */
void fake_reply_anthropic_error(struct fake_reply *r, int status, const char *type,
                                const char *message, uint64_t seq);
/* Sets r to an Open-Meteo style error {"error":true,"reason":message}. */
void fake_reply_plain_error(struct fake_reply *r, int status, const char *message);

/* ---- the rule-based model (fake_model.c, pure) ---------------------- */

/*
 * Answers one POST /v1/messages body (already authenticated): validates it
 * like the real API (400 invalid_request_error) and otherwise answers with
 * the deterministic rules in README.md. body is the parsed request (NULL if
 * it did not parse), body_bytes its size on the wire, seq the request's
 * sequence number (ids "msg_fake_<seq>", "toolu_<seq>_<n>"). Never fails:
 * out of memory becomes a 500 reply.
 */
void fake_model_answer(const json_t *body, size_t body_bytes, uint64_t seq,
                       struct fake_reply *ret_reply);

/* ---- tool APIs and models list (fake_tools.c, pure) ----------------- */

/* Arguments are the decoded query parameters, NULL when absent. */
void fake_tools_geocoding(const char *name, const char *count, struct fake_reply *ret_reply);
void fake_tools_forecast(const char *latitude, const char *longitude, const char *current,
                         struct fake_reply *ret_reply);
void fake_tools_search(const char *q, const char *format, struct fake_reply *ret_reply);
void fake_tools_models(const char *limit, uint64_t seq, struct fake_reply *ret_reply);

/* ---- faults (fake_faults.c, thread-safe) ---------------------------- */

struct fake_faults;

/* What one matched fault asks for; owned by the caller, release with fake_fault_hit_clear(). */
struct fake_fault_hit {
    uint64_t id;
    int status;                               /* 0 = answer normally */
    char error_type[64];                      /* "" = derived from status */
    char message[FAKE_MAX_MESSAGE_BYTES + 1]; /* "" = "injected fault <id>: HTTP <status>" */
    json_t *headers;                          /* object of string values to add, or NULL */
    int64_t delay_ms;                         /* -1 = not set */
    bool hang;                                /* never answer */
    bool reset;                               /* close without an answer */
    bool malformed;                           /* 200 with a truncated JSON body */
    json_t *body;   /* this object as the answer (with status, or 200), or NULL */
    json_t *stream; /* {"error_after","cut_after","delta_ms"} for a streamed answer, or NULL */
};

/* Returns a new empty table, or NULL on OOM. */
struct fake_faults *fake_faults_new(void);
struct fake_faults *fake_faults_free(struct fake_faults *faults);
/*
 * Adds a fault from its JSON description (README.md). On a bad description
 * returns -EINVAL with a message in err; -ENOSPC when the table is full of
 * active faults.
 */
int fake_faults_add(struct fake_faults *faults, const json_t *spec, uint64_t now_ms, char *err,
                    size_t err_bytes, uint64_t *ret_id);
/*
 * Finds the first active fault (insertion order) matching route (and, for a
 * fault that names a model, the request's model: NULL = none) and spends one
 * use of it atomically. Returns 1 and fills ret_hit on a match, 0 when none
 * matches, -ENOMEM.
 */
int fake_faults_take(struct fake_faults *faults, enum fake_route route, const char *model,
                     uint64_t now_ms, struct fake_fault_hit *ret_hit);
void fake_fault_hit_clear(struct fake_fault_hit *hit);
/* JSON array describing every fault (active or spent); NULL on OOM. */
json_t *fake_faults_list(struct fake_faults *faults, uint64_t now_ms);
/* Removes every fault; returns how many there were. */
size_t fake_faults_clear(struct fake_faults *faults);
/* Removes one fault; 0 or -ENOENT. */
int fake_faults_remove(struct fake_faults *faults, uint64_t id);

/* ---- request log (fake_log.c, thread-safe) -------------------------- */

struct fake_log;

/* One received request as handed to fake_log_append (everything borrowed). */
struct fake_log_record {
    uint64_t ts_ms;
    const char *method;
    enum fake_route route;
    const char *path;
    const json_t *query; /* object of decoded query arguments */
    uint64_t fault_id;   /* 0 = none */
    const char *anthropic_version;
    const char *content_type;
    const char *traceparent, *tracestate; /* W3C Trace Context headers (NULL = absent) */
    bool api_key_present;
    const json_t *body; /* parsed body (messages only) or NULL */
};

struct fake_log *fake_log_new(size_t max_entries, size_t max_stored_bytes);
struct fake_log *fake_log_free(struct fake_log *log);
/* Appends a record with status 0 and returns its sequence number (≥ 1, never reused). */
uint64_t fake_log_append(struct fake_log *log, const struct fake_log_record *rec);
/* Records what was answered for seq (no-op when it was already dropped or cleared). */
void fake_log_set_status(struct fake_log *log, uint64_t seq, int status);
/* JSON array of the kept entries in order; route < 0 = all routes; only seq > since_seq. */
json_t *fake_log_dump(struct fake_log *log, int route, uint64_t since_seq);
/* Drops every entry; returns how many there were. */
size_t fake_log_clear(struct fake_log *log);

/* ---- parking suspended connections (fake_timer.c) ------------------- */

enum fake_wake {
    FAKE_WAKE_NONE = 0,
    FAKE_WAKE_DUE,         /* the delay is over: answer */
    FAKE_WAKE_CLIENT_GONE, /* a hanging request's client closed its end */
    FAKE_WAKE_SHUTDOWN,    /* the server is stopping: close */
};

/*
 * A connection waiting in the timer. Embedded in the request; the timer owns
 * it from fake_timer_park() until it sets wake and resumes the connection.
 */
struct fake_parked {
    struct MHD_Connection *conn;
    uint64_t due_ms; /* fake_clock_ms() time to resume (ignored when hang) */
    int fd;          /* client socket, watched for close while hanging */
    bool hang;
    size_t slot;     /* index in the timer's heap or hang list */
    atomic_int wake; /* enum fake_wake, written before the resume */
};

struct fake_timer;

/* Starts the timer thread. Returns 0 or -errno. */
int fake_timer_new(struct fake_timer **ret_timer);
/*
 * Suspends p->conn (must be called from its access handler) and schedules
 * its resume. Returns 0, -ESHUTDOWN once stopping, -ENOMEM.
 */
int fake_timer_park(struct fake_timer *timer, struct fake_parked *p);
/* Number of connections currently parked. */
size_t fake_timer_parked(struct fake_timer *timer);
/* Resumes every parked connection with FAKE_WAKE_SHUTDOWN and joins the thread. Idempotent. */
void fake_timer_stop(struct fake_timer *timer);
/* Stops if needed and frees. */
struct fake_timer *fake_timer_free(struct fake_timer *timer);

/* ---- streamed answers (fake_stream.c) ------------------------------- */

struct fake_stream;

/* Checks a fault's "stream" object: 0, or -EINVAL with a message in err. */
int fake_stream_spec_check(const json_t *spec, char *err, size_t err_bytes);
/*
 * The events of message (a 200 Messages body, borrowed) under the stream faults of spec (NULL =
 * none); pauses park conn on timer. NULL on OOM. Used as the cls of an MHD callback response:
 * fake_stream_read is its reader, fake_stream_free its free callback.
 */
struct fake_stream *fake_stream_new(const json_t *message, const json_t *spec,
                                    struct fake_timer *timer, struct MHD_Connection *conn);
ssize_t fake_stream_read(void *cls, uint64_t pos, char *buf, size_t max);
void fake_stream_free(void *cls);

/* ---- rate limit and prompt cache (fake_limits.c, thread-safe) ------- */

struct fake_ratelimit;
struct fake_ratelimit *fake_ratelimit_new(void);
struct fake_ratelimit *fake_ratelimit_free(struct fake_ratelimit *rl);
/* A bucket of `requests` that refills continuously, all of it in window_ms; 0 = off. */
void fake_ratelimit_set(struct fake_ratelimit *rl, int64_t requests, int64_t window_ms);
/*
 * Counts one /v1/messages request. Off: 0 and *ret_headers untouched. On: *ret_headers is a new
 * object of anthropic-ratelimit-requests-{limit,remaining,reset} (reset: when the bucket is full
 * again, in RFC 3339, UTC, ms) to
 * answer with; 0 when the request is within the limit, -EAGAIN when it is over (answer 429; the
 * headers then carry retry-after too).
 */
int fake_ratelimit_take(struct fake_ratelimit *rl, json_t **ret_headers);

/* Prefixes remembered by the prompt cache, and how long an unread one lives. */
#define FAKE_CACHE_ENTRIES 4096
#define FAKE_CACHE_TTL_MS  300000

struct fake_cache;
struct fake_cache *fake_cache_new(void);
struct fake_cache *fake_cache_free(struct fake_cache *c);
/*
 * The cache usage of a request body (tools → system → messages, cached up to each cache_control
 * breakpoint): *ret_read = tokens of the longest prefix found in the cache, *ret_creation =
 * tokens written after it up to the last breakpoint (4 bytes of canonical JSON per token). Both
 * 0 without breakpoints. Remembers the prefixes it wrote.
 */
void fake_cache_usage(struct fake_cache *c, const json_t *body, int64_t *ret_creation,
                      int64_t *ret_read);

/* ---- the server (fake_server.c) ------------------------------------- */

struct fake_config {
    const char *api_key;       /* required x-api-key, or NULL = any non-empty key */
    uint32_t delay_ms;         /* default delay before every /v1/messages answer */
    unsigned threads;          /* MHD thread pool size */
    unsigned connection_limit; /* most simultaneous connections */
    bool quiet;                /* no access log on stderr */
};

struct fake_server;

/*
 * Starts serving on listen_fd (bound and listening; ownership moves to the
 * server even on failure). Returns 0 or -errno.
 */
int fake_server_start(const struct fake_config *cfg, int listen_fd, bool ipv6,
                      struct fake_server **ret_server);
/* Resumes parked connections, stops MHD, frees. Accepts NULL. */
struct fake_server *fake_server_stop(struct fake_server *server);

#endif
