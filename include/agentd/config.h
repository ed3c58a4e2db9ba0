/*
 * config.h — agentd's settings: one table of environment variables, each with
 * a default, a unit, a range and a one-line meaning. config_load() fills a
 * struct agentd_config from an injectable lookup (getenv in production, a
 * table in tests); config_print_help() prints the table for `agentd --help`.
 *
 * Ownership: strings in struct agentd_config are owned by it; free them with
 * config_free(), which also wipes the secrets. A struct copy (struct app
 * keeps one) shares those strings: exactly one copy is freed, last.
 *
 * Threads: config_load() reads the environment (getenv by default) and the
 * key file, so it runs on the main thread (at start, and again for each
 * reload of AGENTD_CONFIG_FILE; nothing in agentd changes the environment);
 * a loaded struct is read-only afterwards and may then be read from any
 * thread. The other functions touch only their arguments (the file ones read
 * the file they are given). The print functions write to `out` only.
 *
 * Value rules (shared by every variable of a kind):
 *  - integers: decimal, whole string, no sign other than '-', no spaces, within
 *    the row's range; set-but-empty is an error.
 *  - URLs: http:// or https://, printable ASCII without spaces, trailing '/'
 *    stripped (so callers append "/v1/messages" etc.); a URL is echoed (errors)
 *    and printed (config_print_effective) redacted, see url.h.
 *  - text (model, system prompt, notes dir): valid UTF-8, length in bytes.
 *  - secrets (ANTHROPIC_API_KEY, ANTHROPIC_API_KEY_FILE, AGENTD_AUTH_TOKENS,
 *    AGENTD_AUTH_TOKENS_FILE): set-but-empty counts as unset; setting a secret
 *    and its file variable both is an error; a missing key is allowed. The
 *    tokens file is only named here: main reads it (auth.h), at start-up and
 *    on reload.
 */
#ifndef AGENTD_CONFIG_H
#define AGENTD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The longest URL a setting may hold. */
#define CONFIG_URL_MAX_BYTES 2048
/* The longest setting name, per-dependency names included. */
#define CONFIG_NAME_MAX_BYTES 64

/*
 * Per-dependency policies. Each target has one struct config_policy, filled from
 * AGENTD_TOOL_<TOOL>_<SETTING> (AGENTD_LLM_<SETTING> for the LLM API), each setting defaulting
 * to its global twin (AGENTD_TOOL_TIMEOUT_MS / AGENTD_LLM_TIMEOUT_MS, AGENTD_RETRY_MAX, ...).
 * The tools are in enum tool_id order (vocab.h), after the LLM.
 */
enum config_target {
    CONFIG_TARGET_LLM = 0,
    CONFIG_TARGET_CALCULATOR,  /* in-process: no setting applies */
    CONFIG_TARGET_SAVE_NOTE,   /* I/O pool: TIMEOUT_MS only */
    CONFIG_TARGET_WEB_SEARCH,  /* HTTP: every setting */
    CONFIG_TARGET_GET_WEATHER, /* HTTP: every setting */
    CONFIG_TARGETS,
};

struct config_policy {
    int64_t timeout_ms;         /* _TIMEOUT_MS: one attempt (LLM) / one tool call (tools) */
    int retry_max;              /* _RETRY_MAX */
    int64_t retry_initial_ms;   /* _RETRY_INITIAL_MS */
    int64_t retry_max_delay_ms; /* _RETRY_MAX_DELAY_MS */
    int breaker_failures;       /* _BREAKER_FAILURES */
    int64_t breaker_open_ms;    /* _BREAKER_OPEN_MS */
    double rate;                /* _RATE, attempts/s */
    double burst;               /* _BURST, attempts */
};

struct agentd_config {
    /* server */
    char *listen_host;                /* AGENTD_LISTEN host part, e.g. "0.0.0.0" */
    int listen_port;                  /* AGENTD_LISTEN port part, 0..65535 (0 = ephemeral) */
    int workers;                      /* AGENTD_WORKERS, 0 in the table = number of CPUs (resolved
                                         at load, so always 1..256 here) */
    int max_inflight;                 /* AGENTD_MAX_INFLIGHT */
    int64_t header_timeout_ms;        /* AGENTD_HEADER_TIMEOUT_MS */
    int max_connections_per_ip;       /* AGENTD_MAX_CONNECTIONS_PER_IP, 0 = no limit */
    int64_t stream_ping_ms;           /* AGENTD_STREAM_PING_MS: ": ping" period of a streamed run */
    size_t stream_max_buffered_bytes; /* AGENTD_STREAM_MAX_BUFFERED_BYTES, per streamed run */
    size_t max_body_bytes;            /* AGENTD_MAX_BODY_BYTES */
    size_t max_buffered_bytes;        /* AGENTD_MAX_BUFFERED_BYTES */
    size_t runs_max_bytes;            /* AGENTD_RUNS_MAX_BYTES */
    int io_threads;                   /* AGENTD_IO_THREADS: blocking file I/O pool */

    char *auth_tokens;      /* AGENTD_AUTH_TOKENS: comma-separated bearer tokens; secret */
    char *auth_tokens_file; /* AGENTD_AUTH_TOKENS_FILE path (not secret), read by auth.h; both
                               NULL = authentication off */

    /* LLM */
    char *api_key;            /* ANTHROPIC_API_KEY or contents of ANTHROPIC_API_KEY_FILE; secret;
                                 NULL when neither is set */
    char *api_key_file;       /* ANTHROPIC_API_KEY_FILE path (not secret), NULL when unset */
    char *anthropic_base_url; /* ANTHROPIC_BASE_URL, no trailing slash */
    char *model;              /* AGENTD_MODEL */
    int max_tokens;           /* AGENTD_MAX_TOKENS */
    size_t llm_max_request_bytes; /* AGENTD_LLM_MAX_REQUEST_BYTES */
    double temperature;           /* AGENTD_TEMPERATURE 0..1 */
    int max_iterations;           /* AGENTD_MAX_ITERATIONS */
    char *system_prompt;          /* AGENTD_SYSTEM_PROMPT ("" = none) */

    /* timeouts, milliseconds */
    int64_t llm_timeout_ms;   /* AGENTD_LLM_TIMEOUT_MS */
    int64_t tool_timeout_ms;  /* AGENTD_TOOL_TIMEOUT_MS */
    int64_t total_timeout_ms; /* AGENTD_TOTAL_TIMEOUT_MS */

    /* upstream connections */
    char *llm_http2;              /* AGENTD_LLM_HTTP2 auto|prior-knowledge|off */
    char *llm_ca_file;            /* AGENTD_LLM_CA_FILE, "" = the system's CAs */
    int upstream_max_connections; /* AGENTD_UPSTREAM_MAX_CONNECTIONS per host, process; 0 = none */
    double upstream_connect_rate; /* AGENTD_UPSTREAM_CONNECT_RATE connections/s, 0 = unpaced */
    int upstream_connect_burst;   /* AGENTD_UPSTREAM_CONNECT_BURST */

    /* tools */
    char *notes_dir;             /* AGENTD_NOTES_DIR */
    size_t notes_max_bytes;      /* AGENTD_NOTES_MAX_BYTES, 0 = no limit */
    int notes_max_files;         /* AGENTD_NOTES_MAX_FILES, 0 = no limit */
    char *search_url;            /* AGENTD_SEARCH_URL ("" = web_search unavailable) */
    char *weather_geocoding_url; /* AGENTD_WEATHER_GEOCODING_URL */
    char *weather_forecast_url;  /* AGENTD_WEATHER_FORECAST_URL */

    /* conversations */
    int conversations_max;          /* AGENTD_CONVERSATIONS_MAX */
    size_t conversations_max_bytes; /* AGENTD_CONVERSATIONS_MAX_BYTES: all histories */
    int64_t conversation_ttl_ms;    /* AGENTD_CONVERSATION_TTL_MS */
    int conversation_max_messages;  /* AGENTD_CONVERSATION_MAX_MESSAGES */
    size_t conversation_max_bytes;  /* AGENTD_CONVERSATION_MAX_BYTES: one history */

    /* idempotency keys */
    int idempotency_max;          /* AGENTD_IDEMPOTENCY_MAX, 0 = off */
    size_t idempotency_max_bytes; /* AGENTD_IDEMPOTENCY_MAX_BYTES: stored answer bodies */
    int64_t idempotency_ttl_ms;   /* AGENTD_IDEMPOTENCY_TTL_MS */

    /* shared state (Redis) */
    int64_t run_lease_ms;            /* AGENTD_RUN_LEASE_MS */
    size_t run_checkpoint_max_bytes; /* AGENTD_RUN_CHECKPOINT_MAX_BYTES */
    char *redis_url;           /* AGENTD_REDIS_URL, "" = single replica; may hold a password */
    char *redis_password_file; /* AGENTD_REDIS_PASSWORD_FILE path, NULL when unset */
    char *redis_password;      /* the file's password (secret), NULL when no file */
    int64_t redis_timeout_ms;  /* AGENTD_REDIS_TIMEOUT_MS */
    char *redis_prefix;        /* AGENTD_REDIS_PREFIX */

    /* resilience (rows added with the resilience layer) */
    int retry_max;                  /* AGENTD_RETRY_MAX: retries after the first attempt */
    int64_t retry_initial_ms;       /* AGENTD_RETRY_INITIAL_MS */
    int64_t retry_max_delay_ms;     /* AGENTD_RETRY_MAX_DELAY_MS */
    int64_t retry_after_cap_ms;     /* AGENTD_RETRY_AFTER_CAP_MS */
    double retry_budget_ratio;      /* AGENTD_RETRY_BUDGET_RATIO */
    int64_t retry_budget_window_ms; /* AGENTD_RETRY_BUDGET_WINDOW_MS */
    int retry_budget_min;           /* AGENTD_RETRY_BUDGET_MIN: floor of retries per window */
    int breaker_enabled;            /* AGENTD_BREAKER_ENABLED 0/1 */
    int breaker_failures;           /* AGENTD_BREAKER_FAILURES */
    double breaker_failure_rate;    /* AGENTD_BREAKER_FAILURE_RATE */
    int breaker_window;             /* AGENTD_BREAKER_WINDOW (calls; no longer used) */
    int64_t breaker_window_ms;      /* AGENTD_BREAKER_WINDOW_MS */
    int breaker_min_calls;          /* AGENTD_BREAKER_MIN_CALLS */
    int64_t breaker_first_open_ms;  /* AGENTD_BREAKER_FIRST_OPEN_MS */
    int64_t breaker_open_ms;        /* AGENTD_BREAKER_OPEN_MS */
    int breaker_half_open_probes;   /* AGENTD_BREAKER_HALF_OPEN_PROBES */
    double llm_rate;                /* AGENTD_LLM_RATE tokens/s */
    double llm_burst;               /* AGENTD_LLM_BURST */
    double tool_rate;               /* AGENTD_TOOL_RATE tokens/s (per HTTP tool) */
    double tool_burst;              /* AGENTD_TOOL_BURST */
    char *tool_criticality;         /* AGENTD_TOOL_CRITICALITY */

    /* health and shutdown */
    int64_t ready_interval_ms;   /* AGENTD_READY_INTERVAL_MS */
    int64_t ready_timeout_ms;    /* AGENTD_READY_TIMEOUT_MS */
    int ready_failure_threshold; /* AGENTD_READY_FAILURE_THRESHOLD */
    size_t notes_min_free_bytes; /* AGENTD_NOTES_MIN_FREE_BYTES */
    int64_t shutdown_delay_ms;   /* AGENTD_SHUTDOWN_DELAY_MS */
    int64_t shutdown_grace_ms;   /* AGENTD_SHUTDOWN_GRACE_MS */

    /* cost guard */
    double price_input_per_mtok;       /* AGENTD_PRICE_INPUT_PER_MTOK, USD */
    double price_output_per_mtok;      /* AGENTD_PRICE_OUTPUT_PER_MTOK, USD */
    double price_cache_write_per_mtok; /* AGENTD_PRICE_CACHE_WRITE_PER_MTOK, USD; < 0 = derived */
    double price_cache_read_per_mtok;  /* AGENTD_PRICE_CACHE_READ_PER_MTOK, USD; < 0 = derived */
    char *model_fallbacks;             /* AGENTD_MODEL_FALLBACKS, "" = none */
    int prompt_cache;                  /* AGENTD_PROMPT_CACHE 0/1 */
    double budget_usd_per_hour;        /* AGENTD_BUDGET_USD_PER_HOUR, 0 = off */
    int64_t budget_tokens_per_hour;    /* AGENTD_BUDGET_TOKENS_PER_HOUR, 0 = off */
    int64_t max_run_tokens;            /* AGENTD_MAX_RUN_TOKENS, 0 = off */

    /* logging */
    char *log_format; /* AGENTD_LOG_FORMAT json|text */
    char *log_level;  /* AGENTD_LOG_LEVEL debug|info|warn|error */

    char *config_file; /* AGENTD_CONFIG_FILE path, NULL when unset */

    /* effective per-dependency policies (globals where no override is set) */
    struct config_policy policy[CONFIG_TARGETS];

    /* tracing (tracer.h) */
    char *otlp_endpoint;      /* AGENTD_OTLP_ENDPOINT: OTLP/HTTP traces URL, "" = off */
    int64_t otlp_timeout_ms;  /* AGENTD_OTLP_TIMEOUT_MS: one export POST */
    int otlp_queue_spans;     /* AGENTD_OTLP_QUEUE_SPANS: spans waiting; more are dropped */
    int otlp_batch_spans;     /* AGENTD_OTLP_BATCH_SPANS: spans per export */
    int64_t otlp_interval_ms; /* AGENTD_OTLP_INTERVAL_MS: longest a span waits for a batch */
    char *otlp_service_name;  /* AGENTD_OTLP_SERVICE_NAME: resource service.name */
};

/* Returns the value of environment variable `name`, or NULL when unset. */
typedef const char *(*config_lookup_fn)(const char *name, void *ctx);

/*
 * Fills *ret from `lookup` (NULL = getenv). On success returns 0 and *ret owns
 * its strings. On a bad value returns -EINVAL, writes a message that names the
 * variable, the accepted range and the value given into err (e.g.
 * "AGENTD_LLM_TIMEOUT_MS: expected an integer 100..600000 (ms), got 'abc'"), and
 * leaves *ret untouched. Secrets are never copied into err; echoed values are
 * cut to 64 bytes with non-printable bytes shown as '?'. err may be NULL.
 * Returns -ENOMEM (err "out of memory") when an allocation fails. Reads the
 * key file named by ANTHROPIC_API_KEY_FILE (regular file, at most 4096 bytes).
 */
int config_load(struct agentd_config *ret, config_lookup_fn lookup, void *ctx, char *err,
                size_t errlen);

/* Frees the strings of cfg (cfg itself is caller-owned); NULL is fine. */
void config_free(struct agentd_config *cfg);

/* Prints the usage lines, then the settings table (variable, default,
 * range/unit, meaning); every line fits in 100 columns. */
void config_print_help(FILE *out);

/* Prints the effective configuration, one "NAME=value" line per variable in
 * table order (secrets shown as "(set)"/"(unset)"; URLs with their userinfo,
 * query and fragment replaced by "***" (url_redact, url.h); control bytes
 * escaped; text longer than 256 bytes cut with its length noted). NULL cfg
 * prints nothing. */
void config_print_effective(const struct agentd_config *cfg, FILE *out);

/* "anthropic", "calculator", "save_note", "web_search", "get_weather"; NULL outside the enum. */
const char *config_target_name(enum config_target t);
/* Whether a per-dependency setting of target t has any effect (calculator: none, save_note:
   TIMEOUT_MS only); suffix as in AGENTD_TOOL_<TOOL>_<SUFFIX>. */
bool config_target_applies(enum config_target t, const char *suffix);

/*
 * The config file (AGENTD_CONFIG_FILE): NAME=value lines, '#' comments and blank lines; spaces
 * around the line are ignored, the value is the rest of the line after the first '=' (no quotes,
 * no escapes). A name set twice, a line without '=', a name that is not [A-Z0-9_]+, a file over
 * CONFIG_FILE_MAX_BYTES or not regular are errors. The parsed file is immutable and owns its
 * strings; reading does no other I/O and never logs.
 */
#define CONFIG_FILE_MAX_BYTES (1024 * 1024)
struct config_file;
/* 0 and *ret (free with config_file_free); -EINVAL / -errno with a message naming the path and
   the line in err; -ENOMEM. */
int config_file_read(const char *path, struct config_file **ret, char *err, size_t errlen);
/* Parses text (len bytes) as above; `what` names it in messages. */
int config_file_parse(const char *what, const char *text, size_t len, struct config_file **ret,
                      char *err, size_t errlen);
struct config_file *config_file_free(struct config_file *f);
/* The value of name in f, NULL when absent (or f is NULL). */
const char *config_file_get(const struct config_file *f, const char *name);
size_t config_file_count(const struct config_file *f);
/* The i-th name of f, in file order. */
const char *config_file_name(const struct config_file *f, size_t i);

/* A lookup for config_load(): `env` first (NULL = getenv), then the file (may be NULL). The
   environment wins for a name set in both, at start and on every reload. */
struct config_source {
    config_lookup_fn env;
    void *env_ctx;
    const struct config_file *file;
};
const char *config_source_lookup(const char *name, void *source);

/*
 * No silent typos. config_name_known() is true for every table row and every per-dependency
 * name (AGENTD_LLM_<SETTING>, AGENTD_TOOL_<TOOL>_<SETTING>). config_unknown_message() writes
 * "NAME: unknown setting; did you mean CLOSEST?" (the known name at the least edit distance,
 * case-insensitive) into buf. config_env_ignored() is true for the AGENTD_* names Kubernetes
 * service links inject (AGENTD_SERVICE_HOST, AGENTD_PORT_8080_TCP, ...).
 */
bool config_name_known(const char *name);
void config_unknown_message(const char *name, char *buf, size_t len);
bool config_env_ignored(const char *name);

/*
 * What a reload changes: fn(name, live, arg) for every setting whose value differs between a
 * and b, in table order then per-dependency; live = the daemon applies it without a restart
 * (the "(reloads live)" rows of --help, and every per-dependency setting). Returns the count.
 */
typedef void (*config_diff_fn)(const char *name, bool live, void *arg);
size_t config_diff(const struct agentd_config *a, const struct agentd_config *b, config_diff_fn fn,
                   void *arg);

#endif
