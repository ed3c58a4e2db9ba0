/*
 * config.c — agentd's settings. One static table lists every environment
 * variable with its kind, default (as text), range, unit, meaning and place in
 * struct agentd_config; loading, validation, `--help` and the effective-config
 * printout are all driven by it, so a new setting is one row + one field.
 */
#include "agentd/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentd/text.h"
#include "agentd/url.h"

enum config_kind {
    CONFIG_INT,      /* int field; range min..max */
    CONFIG_MS,       /* int64_t field, milliseconds; range min..max */
    CONFIG_BYTES,    /* size_t field; range min..max */
    CONFIG_DOUBLE,   /* double field; range min..max */
    CONFIG_TEXT,     /* char * field; UTF-8, length min..max bytes */
    CONFIG_URL,      /* char * field; http(s) URL up to max bytes; min 0 allows "" */
    CONFIG_SECRET,   /* char * field; printable ASCII, 1..max bytes, never echoed */
    CONFIG_KEY_FILE, /* char * path at offset; the key it holds goes to aux_offset */
    /* char * path at offset, of a file its user reads (and may re-read); an alternative to the
       secret at aux_offset, so setting both is an error */
    CONFIG_SECRET_PATH,
    CONFIG_HOST_PORT, /* char * host at offset, int port (min..max) at aux_offset */
    CONFIG_REDIS_URL, /* char * field; a redis:// URL (url.h) up to max bytes, or "" */
};

struct config_row {
    const char *name;
    enum config_kind kind;
    const char *default_text; /* parsed like a user value; NULL = unset */
    /* Every bound in the table is far below 2^53, so a double holds it exactly. */
    double min;
    double max;
    const char *unit;
    const char *meaning;
    size_t offset;
    size_t aux_offset;
    bool live; /* CONFIG_LIVE: a reload applies it to the running daemon */
};

#define CONFIG_LIVE true

#define CONFIG_FIELD(f) offsetof(struct agentd_config, f)

/* Largest hostname DNS allows; the listen host is passed on verbatim. */
#define CONFIG_HOST_MAX_BYTES 255
/* Echoed values are cut so one bad variable cannot flood a log line. */
#define CONFIG_ECHO_MAX_BYTES 64
/* A key file is tiny; anything bigger is almost certainly the wrong file. */
#define CONFIG_KEY_FILE_MAX_BYTES 4096
/* Text longer than this is cut in the effective-config printout. */
#define CONFIG_PRINT_MAX_BYTES 256
#define CONFIG_HELP_COLUMNS    100
#define CONFIG_HELP_INDENT     2
#define CONFIG_HELP_GAP        2
#define CONFIG_HELP_MEANING_AT 6

/* A row that does not end in CONFIG_LIVE needs a restart to change (the field defaults to false):
   new rows are safe by default. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct config_row config_table[] = {
    {"AGENTD_LISTEN", CONFIG_HOST_PORT, "0.0.0.0:8080", 0, 65535, "host:port",
     "address to listen on (IPv4 literal, [IPv6 literal] or hostname; port 0 = ephemeral)",
     CONFIG_FIELD(listen_host), CONFIG_FIELD(listen_port)},
    {"AGENTD_WORKERS", CONFIG_INT, "0", 0, 256, "threads",
     "worker threads driving runs; 0 = number of online CPUs", CONFIG_FIELD(workers), 0},
    {"AGENTD_MAX_INFLIGHT", CONFIG_INT, "4096", 1, 1000000, "runs",
     "admission limit; runs above it are answered 429 overloaded", CONFIG_FIELD(max_inflight), 0},
    {"AGENTD_MAX_BODY_BYTES", CONFIG_BYTES, "1048576", 1024, 67108864, "bytes",
     "largest request body accepted; bigger bodies get 413", CONFIG_FIELD(max_body_bytes), 0},
    {"AGENTD_MAX_BUFFERED_BYTES", CONFIG_BYTES, "67108864", 1048576, 17179869184.0, "bytes",
     "request bodies held in memory at once, all connections; past it 503 overloaded",
     CONFIG_FIELD(max_buffered_bytes), 0},
    {"AGENTD_RUNS_MAX_BYTES", CONFIG_BYTES, "268435456", 1048576, 68719476736.0, "bytes",
     "conversation JSON held by the runs in flight; past it new runs get 503 overloaded",
     CONFIG_FIELD(runs_max_bytes), 0},
    {"AGENTD_HEADER_TIMEOUT_MS", CONFIG_MS, "10000", 1000, 300000, "ms",
     "inactivity allowed while waiting for or reading a request's headers (whole seconds)",
     CONFIG_FIELD(header_timeout_ms), 0},
    {"AGENTD_MAX_CONNECTIONS_PER_IP", CONFIG_INT, "0", 0, 1000000, "connections",
     "connections one client address may hold at once; 0 = no limit (behind a proxy: keep 0)",
     CONFIG_FIELD(max_connections_per_ip), 0},
    {"AGENTD_STREAM_PING_MS", CONFIG_MS, "15000", 100, 15000, "ms",
     "a streamed run (\"stream\": true) sends \": ping\" this often, so proxies keep it open",
     CONFIG_FIELD(stream_ping_ms), 0},
    {"AGENTD_STREAM_MAX_BUFFERED_BYTES", CONFIG_BYTES, "1048576", 4096, 67108864, "bytes",
     "events one streamed run may hold for a slow reader; past it the run is cancelled",
     CONFIG_FIELD(stream_max_buffered_bytes), 0},
    {"AGENTD_AUTH_TOKENS", CONFIG_SECRET, NULL, 1, 4096, "tokens",
     "comma-separated bearer tokens accepted on /v1/agent; unset (and no AGENTD_AUTH_TOKENS_FILE) "
     "= no authentication",
     CONFIG_FIELD(auth_tokens), 0},
    {"AGENTD_AUTH_TOKENS_FILE", CONFIG_SECRET_PATH, NULL, 1, 4096, "path",
     "file of bearer tokens instead, one per line ('#' comments); re-read on SIGHUP and when it "
     "changes (checked every 10 s)",
     CONFIG_FIELD(auth_tokens_file), CONFIG_FIELD(auth_tokens)},
    {"AGENTD_IO_THREADS", CONFIG_INT, "2", 1, 64, "threads",
     "threads for blocking file I/O (note writes with fsync)", CONFIG_FIELD(io_threads), 0},
    {"ANTHROPIC_API_KEY", CONFIG_SECRET, NULL, 1, 512, "secret",
     "Anthropic API key (printable ASCII, no spaces); unset = send none", CONFIG_FIELD(api_key), 0},
    {"ANTHROPIC_API_KEY_FILE", CONFIG_KEY_FILE, NULL, 1, 4096, "path",
     "file holding the API key instead (trailing whitespace stripped)", CONFIG_FIELD(api_key_file),
     CONFIG_FIELD(api_key)},
    {"ANTHROPIC_BASE_URL", CONFIG_URL, "https://api.anthropic.com", 1, CONFIG_URL_MAX_BYTES, "URL",
     "Anthropic API base URL (trailing '/' stripped)", CONFIG_FIELD(anthropic_base_url), 0},
    {"AGENTD_MODEL", CONFIG_TEXT, "claude-sonnet-4-20250514", 1, 256, "bytes",
     "model name sent with every LLM call", CONFIG_FIELD(model), 0},
    {"AGENTD_MODEL_FALLBACKS", CONFIG_TEXT, "", 0, 1024, "model,...",
     "models tried in order when the current one is overloaded or unavailable (max 4; empty = "
     "off)",
     CONFIG_FIELD(model_fallbacks), 0},
    {"AGENTD_PROMPT_CACHE", CONFIG_INT, "1", 0, 1, "0/1",
     "prompt caching: cache breakpoints on tools, system prompt and conversation (1) or none (0)",
     CONFIG_FIELD(prompt_cache), 0},
    {"AGENTD_MAX_TOKENS", CONFIG_INT, "4096", 1, 128000, "tokens", "max_tokens for each LLM call",
     CONFIG_FIELD(max_tokens), 0},
    {"AGENTD_LLM_MAX_REQUEST_BYTES", CONFIG_BYTES, "33554432", 65536, 33554432, "bytes",
     "largest LLM request body (the API's is 32 MiB; lower for a gateway); past it 422",
     CONFIG_FIELD(llm_max_request_bytes), 0},
    {"AGENTD_TEMPERATURE", CONFIG_DOUBLE, "1.0", 0.0, 1.0, "", "sampling temperature",
     CONFIG_FIELD(temperature), 0},
    {"AGENTD_MAX_ITERATIONS", CONFIG_INT, "10", 1, 100, "iterations",
     "LLM round trips per run (cap for the request's max_iterations)", CONFIG_FIELD(max_iterations),
     0},
    {"AGENTD_SYSTEM_PROMPT", CONFIG_TEXT,
     "You are a helpful assistant. Use the tools when they help; answer concisely.", 0, 100000,
     "bytes", "system prompt sent with every LLM call; empty = no system prompt",
     CONFIG_FIELD(system_prompt), 0},
    {"AGENTD_LLM_TIMEOUT_MS", CONFIG_MS, "30000", 100, 600000, "ms",
     "time allowed for one LLM attempt", CONFIG_FIELD(llm_timeout_ms), 0, CONFIG_LIVE},
    {"AGENTD_TOOL_TIMEOUT_MS", CONFIG_MS, "10000", 100, 600000, "ms",
     "time allowed for one tool call", CONFIG_FIELD(tool_timeout_ms), 0, CONFIG_LIVE},
    {"AGENTD_TOTAL_TIMEOUT_MS", CONFIG_MS, "120000", 100, 3600000, "ms",
     "deadline for a whole run (cap for the request's timeout_ms)", CONFIG_FIELD(total_timeout_ms),
     0},
    {"AGENTD_LLM_HTTP2", CONFIG_TEXT, "auto", 1, 16, "mode",
     "HTTP/2 to the LLM API: auto = when TLS offers it (ALPN), else HTTP/1.1; prior-knowledge = "
     "also cleartext h2c without asking (needs libcurl >= 8.0.0); off = HTTP/1.1 only",
     CONFIG_FIELD(llm_http2), 0},
    {"AGENTD_LLM_CA_FILE", CONFIG_TEXT, "", 0, 4096, "path",
     "PEM file of the CAs trusted for the LLM API's TLS certificate (a gateway with a private CA); "
     "empty = the system's",
     CONFIG_FIELD(llm_ca_file), 0},
    {"AGENTD_UPSTREAM_MAX_CONNECTIONS", CONFIG_INT, "0", 0, 1000000, "connections",
     "connections to one upstream host, whole process (split evenly across workers, at least 1 "
     "each); calls beyond it wait for a free connection; 0 = no cap",
     CONFIG_FIELD(upstream_max_connections), 0},
    {"AGENTD_UPSTREAM_CONNECT_RATE", CONFIG_DOUBLE, "20000", 0, 1000000, "conns/s",
     "new upstream connections opened per second, whole process (split across workers); a call "
     "that needs one waits for its turn; 0 = unpaced",
     CONFIG_FIELD(upstream_connect_rate), 0},
    {"AGENTD_UPSTREAM_CONNECT_BURST", CONFIG_INT, "256", 1, 1000000, "connections",
     "new upstream connections that may open at once before AGENTD_UPSTREAM_CONNECT_RATE applies",
     CONFIG_FIELD(upstream_connect_burst), 0},
    {"AGENTD_NOTES_DIR", CONFIG_TEXT, "/var/lib/agentd/notes", 1, 4096, "bytes",
     "directory where save_note writes", CONFIG_FIELD(notes_dir), 0},
    {"AGENTD_NOTES_MAX_BYTES", CONFIG_BYTES, "1073741824", 0, 1099511627776.0, "bytes",
     "total size of the notes in AGENTD_NOTES_DIR; save_note refuses a note past it (0 = no limit)",
     CONFIG_FIELD(notes_max_bytes), 0},
    {"AGENTD_NOTES_MAX_FILES", CONFIG_INT, "100000", 0, 100000000, "files",
     "notes kept in AGENTD_NOTES_DIR; save_note refuses a new note past it (0 = no limit)",
     CONFIG_FIELD(notes_max_files), 0},
    {"AGENTD_SEARCH_URL", CONFIG_URL, "", 0, CONFIG_URL_MAX_BYTES, "URL",
     "SearXNG base URL; empty = web_search unavailable (not offered to the model)",
     CONFIG_FIELD(search_url), 0},
    {"AGENTD_WEATHER_GEOCODING_URL", CONFIG_URL, "https://geocoding-api.open-meteo.com", 1,
     CONFIG_URL_MAX_BYTES, "URL", "Open-Meteo geocoding API base URL",
     CONFIG_FIELD(weather_geocoding_url), 0},
    {"AGENTD_WEATHER_FORECAST_URL", CONFIG_URL, "https://api.open-meteo.com", 1,
     CONFIG_URL_MAX_BYTES, "URL", "Open-Meteo forecast API base URL",
     CONFIG_FIELD(weather_forecast_url), 0},
    {"AGENTD_CONVERSATIONS_MAX", CONFIG_INT, "10000", 0, 1000000, "conversations",
     "conversations kept in memory, least recently used evicted first; 0 = conversations off",
     CONFIG_FIELD(conversations_max), 0},
    {"AGENTD_CONVERSATIONS_MAX_BYTES", CONFIG_BYTES, "268435456", 1024, 68719476736.0, "bytes",
     "all stored histories together (compact JSON), least recently used evicted first",
     CONFIG_FIELD(conversations_max_bytes), 0},
    {"AGENTD_CONVERSATION_TTL_MS", CONFIG_MS, "3600000", 1000, 604800000, "ms",
     "idle time after which a conversation is forgotten", CONFIG_FIELD(conversation_ttl_ms), 0},
    {"AGENTD_CONVERSATION_MAX_MESSAGES", CONFIG_INT, "200", 2, 10000, "messages",
     "history kept per conversation (oldest turns dropped first)",
     CONFIG_FIELD(conversation_max_messages), 0},
    {"AGENTD_CONVERSATION_MAX_BYTES", CONFIG_BYTES, "1048576", 1024, 33554432, "bytes",
     "history kept per conversation, as compact JSON (oldest turns dropped first)",
     CONFIG_FIELD(conversation_max_bytes), 0},
    {"AGENTD_IDEMPOTENCY_MAX", CONFIG_INT, "10000", 0, 1000000, "keys",
     "Idempotency-Key answers kept for replay (0 = the header is ignored)",
     CONFIG_FIELD(idempotency_max), 0},
    {"AGENTD_IDEMPOTENCY_MAX_BYTES", CONFIG_BYTES, "67108864", 65536, 17179869184.0, "bytes",
     "bytes of stored answers in all, the first finished evicted first; an answer over 1/16 of "
     "this is not stored (its key runs again)",
     CONFIG_FIELD(idempotency_max_bytes), 0},
    {"AGENTD_IDEMPOTENCY_TTL_MS", CONFIG_MS, "86400000", 1000, 604800000, "ms",
     "how long a key's answer is replayed", CONFIG_FIELD(idempotency_ttl_ms), 0},
    {"AGENTD_RUN_LEASE_MS", CONFIG_MS, "10000", 1000, 600000, "ms",
     "with Redis: how long a keyed run's claim outlives its replica (renewed every third); "
     "then a retry takes the run over from its last checkpoint",
     CONFIG_FIELD(run_lease_ms), 0},
    {"AGENTD_RUN_CHECKPOINT_MAX_BYTES", CONFIG_BYTES, "1048576", 4096, 67108864, "bytes",
     "with Redis: largest checkpoint of a keyed run; a run that outgrows it goes on non-durably",
     CONFIG_FIELD(run_checkpoint_max_bytes), 0},
    {"AGENTD_REDIS_URL", CONFIG_REDIS_URL, "", 0, CONFIG_URL_MAX_BYTES, "redis URL",
     "redis://[user:password@]host[:port][/db] shared by all replicas (limits, 429 pauses); "
     "\"\" = single replica, all state in memory",
     CONFIG_FIELD(redis_url), 0},
    {"AGENTD_REDIS_PASSWORD_FILE", CONFIG_KEY_FILE, NULL, 1, 4096, "path",
     "file holding the Redis password (trailing whitespace stripped); overrides one in the URL",
     CONFIG_FIELD(redis_password_file), CONFIG_FIELD(redis_password)},
    {"AGENTD_REDIS_TIMEOUT_MS", CONFIG_MS, "50", 1, 10000, "ms",
     "timeout of one Redis command; past it the call falls back to this replica's own state",
     CONFIG_FIELD(redis_timeout_ms), 0},
    {"AGENTD_REDIS_PREFIX", CONFIG_TEXT, "agentd:", 1, 64, "bytes",
     "prefix of every Redis key (one per deployment sharing a Redis); no '{' or '}'",
     CONFIG_FIELD(redis_prefix), 0},
    {"AGENTD_RETRY_MAX", CONFIG_INT, "3", 0, 20, "retries",
     "retries after the first attempt of one outbound call (transient errors only)",
     CONFIG_FIELD(retry_max), 0, CONFIG_LIVE},
    {"AGENTD_RETRY_INITIAL_MS", CONFIG_MS, "1000", 1, 600000, "ms",
     "base of the full-jitter backoff: delay = random(0, min(max, initial * 2^retry))",
     CONFIG_FIELD(retry_initial_ms), 0, CONFIG_LIVE},
    {"AGENTD_RETRY_MAX_DELAY_MS", CONFIG_MS, "60000", 1, 3600000, "ms", "cap of one backoff delay",
     CONFIG_FIELD(retry_max_delay_ms), 0, CONFIG_LIVE},
    {"AGENTD_RETRY_AFTER_CAP_MS", CONFIG_MS, "60000", 0, 3600000, "ms",
     "cap on a server's retry-after / retry-after-ms", CONFIG_FIELD(retry_after_cap_ms), 0,
     CONFIG_LIVE},
    {"AGENTD_RETRY_BUDGET_RATIO", CONFIG_DOUBLE, "0.2", 0.0, 10.0, "retries/request",
     "retries allowed per first attempt over the window, per dependency",
     CONFIG_FIELD(retry_budget_ratio), 0},
    {"AGENTD_RETRY_BUDGET_WINDOW_MS", CONFIG_MS, "10000", 1000, 3600000, "ms",
     "sliding window of the retry budget", CONFIG_FIELD(retry_budget_window_ms), 0},
    {"AGENTD_RETRY_BUDGET_MIN", CONFIG_INT, "10", 0, 1000000, "retries",
     "retries always allowed per window (the budget's floor)", CONFIG_FIELD(retry_budget_min), 0},
    {"AGENTD_BREAKER_ENABLED", CONFIG_INT, "1", 0, 1, "0/1", "circuit breakers on (1) or off (0)",
     CONFIG_FIELD(breaker_enabled), 0, CONFIG_LIVE},
    {"AGENTD_BREAKER_FAILURES", CONFIG_INT, "5", 1, 10000, "failures",
     "consecutive transient failures needed to open a dependency's circuit (with the rate rule)",
     CONFIG_FIELD(breaker_failures), 0, CONFIG_LIVE},
    {"AGENTD_BREAKER_FAILURE_RATE", CONFIG_DOUBLE, "0.5", 0.0, 1.0, "ratio",
     "and failures / calls over the window at least this (0 = rate rule off: consecutive alone)",
     CONFIG_FIELD(breaker_failure_rate), 0, CONFIG_LIVE},
    {"AGENTD_BREAKER_WINDOW", CONFIG_INT, "20", 1, 10000, "calls",
     "no longer used (the window is AGENTD_BREAKER_WINDOW_MS); accepted for old configurations",
     CONFIG_FIELD(breaker_window), 0},
    {"AGENTD_BREAKER_WINDOW_MS", CONFIG_MS, "10000", 1000, 600000, "ms",
     "sliding time window of the rate rule (20 buckets); calls started in it count as calls",
     CONFIG_FIELD(breaker_window_ms), 0, CONFIG_LIVE},
    {"AGENTD_BREAKER_MIN_CALLS", CONFIG_INT, "10", 1, 10000, "calls",
     "calls in the window before the rate rule applies (fewer: the consecutive rule alone)",
     CONFIG_FIELD(breaker_min_calls), 0, CONFIG_LIVE},
    {"AGENTD_BREAKER_FIRST_OPEN_MS", CONFIG_MS, "1000", 1, 3600000, "ms",
     "open interval of a first trip; doubles per trip until a close holds for a window (at "
     "most AGENTD_BREAKER_OPEN_MS)",
     CONFIG_FIELD(breaker_first_open_ms), 0, CONFIG_LIVE},
    {"AGENTD_BREAKER_OPEN_MS", CONFIG_MS, "30000", 1, 3600000, "ms",
     "longest time a circuit stays open before half-open probes", CONFIG_FIELD(breaker_open_ms), 0,
     CONFIG_LIVE},
    {"AGENTD_BREAKER_HALF_OPEN_PROBES", CONFIG_INT, "1", 1, 1000, "calls",
     "concurrent probes admitted while half-open", CONFIG_FIELD(breaker_half_open_probes), 0,
     CONFIG_LIVE},
    {"AGENTD_LLM_RATE", CONFIG_DOUBLE, "50", 0.001, 100000, "calls/s",
     "token-bucket refill rate for LLM attempts", CONFIG_FIELD(llm_rate), 0, CONFIG_LIVE},
    {"AGENTD_LLM_BURST", CONFIG_DOUBLE, "100", 1, 1000000, "calls",
     "token-bucket size for LLM attempts", CONFIG_FIELD(llm_burst), 0, CONFIG_LIVE},
    {"AGENTD_TOOL_RATE", CONFIG_DOUBLE, "100", 0.001, 100000, "calls/s",
     "token-bucket refill rate per HTTP tool (web_search, get_weather)", CONFIG_FIELD(tool_rate), 0,
     CONFIG_LIVE},
    {"AGENTD_TOOL_BURST", CONFIG_DOUBLE, "200", 1, 1000000, "calls",
     "token-bucket size per HTTP tool", CONFIG_FIELD(tool_burst), 0, CONFIG_LIVE},
    {"AGENTD_TOOL_CRITICALITY", CONFIG_TEXT,
     "calculator=critical,save_note=critical,web_search=optional,get_weather=optional", 1, 1024,
     "tool=level,...",
     "critical tools fail the run (503); optional ones degrade to an is_error result",
     CONFIG_FIELD(tool_criticality), 0, CONFIG_LIVE},
    {"AGENTD_READY_INTERVAL_MS", CONFIG_MS, "10000", 100, 3600000, "ms",
     "period of the background readiness checks", CONFIG_FIELD(ready_interval_ms), 0},
    {"AGENTD_READY_TIMEOUT_MS", CONFIG_MS, "2000", 100, 60000, "ms",
     "timeout of the readiness probe of the LLM API", CONFIG_FIELD(ready_timeout_ms), 0},
    {"AGENTD_READY_FAILURE_THRESHOLD", CONFIG_INT, "2", 1, 100, "checks",
     "consecutive failed API checks before the pod reports not ready",
     CONFIG_FIELD(ready_failure_threshold), 0},
    {"AGENTD_NOTES_MIN_FREE_BYTES", CONFIG_BYTES, "1073741824", 0, 1099511627776.0, "bytes",
     "free space the notes directory needs for readiness", CONFIG_FIELD(notes_min_free_bytes), 0},
    {"AGENTD_SHUTDOWN_DELAY_MS", CONFIG_MS, "5000", 0, 600000, "ms",
     "after SIGTERM: keep serving (readiness 503) this long before refusing connections",
     CONFIG_FIELD(shutdown_delay_ms), 0},
    {"AGENTD_SHUTDOWN_GRACE_MS", CONFIG_MS, "20000", 0, 3600000, "ms",
     "then let in-flight runs finish this long; the rest get 503 shutting_down",
     CONFIG_FIELD(shutdown_grace_ms), 0},
    {"AGENTD_PRICE_INPUT_PER_MTOK", CONFIG_DOUBLE, "3", 0, 1000000, "USD/Mtok",
     "price of a million input tokens, for the cost estimate and budget",
     CONFIG_FIELD(price_input_per_mtok), 0},
    {"AGENTD_PRICE_OUTPUT_PER_MTOK", CONFIG_DOUBLE, "15", 0, 1000000, "USD/Mtok",
     "price of a million output tokens", CONFIG_FIELD(price_output_per_mtok), 0},
    {"AGENTD_PRICE_CACHE_WRITE_PER_MTOK", CONFIG_DOUBLE, "-1", -1, 1000000, "USD/Mtok",
     "price of a million input tokens written to the prompt cache; -1 = 1.25 x the input price",
     CONFIG_FIELD(price_cache_write_per_mtok), 0},
    {"AGENTD_PRICE_CACHE_READ_PER_MTOK", CONFIG_DOUBLE, "-1", -1, 1000000, "USD/Mtok",
     "price of a million input tokens read from the prompt cache; -1 = 0.1 x the input price",
     CONFIG_FIELD(price_cache_read_per_mtok), 0},
    {"AGENTD_BUDGET_USD_PER_HOUR", CONFIG_DOUBLE, "0", 0, 1000000000, "USD",
     "estimated spend allowed per sliding hour; then 429 budget_exceeded (0 = off)",
     CONFIG_FIELD(budget_usd_per_hour), 0, CONFIG_LIVE},
    {"AGENTD_BUDGET_TOKENS_PER_HOUR", CONFIG_MS, "0", 0, 1000000000000.0, "tokens",
     "LLM tokens allowed per sliding hour (0 = off)", CONFIG_FIELD(budget_tokens_per_hour), 0,
     CONFIG_LIVE},
    {"AGENTD_MAX_RUN_TOKENS", CONFIG_MS, "0", 0, 1000000000, "tokens",
     "tokens one run may use; the run then ends with stop_reason max_tokens (0 = off)",
     CONFIG_FIELD(max_run_tokens), 0, CONFIG_LIVE},
    {"AGENTD_LOG_FORMAT", CONFIG_TEXT, "json", 1, 16, "json|text", "log line format on stderr",
     CONFIG_FIELD(log_format), 0},
    {"AGENTD_LOG_LEVEL", CONFIG_TEXT, "info", 1, 16, "debug|info|warn|error",
     "least severe level logged", CONFIG_FIELD(log_level), 0, CONFIG_LIVE},
    {"AGENTD_CONFIG_FILE", CONFIG_TEXT, NULL, 1, 4096, "path",
     "file of NAME=value lines with these names (the environment wins); re-read on SIGHUP and when "
     "it changes (checked every second)",
     CONFIG_FIELD(config_file), 0},
    {"AGENTD_OTLP_ENDPOINT", CONFIG_URL, "", 0, CONFIG_URL_MAX_BYTES, "URL",
     "OTLP/HTTP JSON traces URL, e.g. http://collector:4318/v1/traces; empty = no spans exported",
     CONFIG_FIELD(otlp_endpoint), 0},
    {"AGENTD_OTLP_TIMEOUT_MS", CONFIG_MS, "5000", 100, 60000, "ms",
     "timeout of one span export POST", CONFIG_FIELD(otlp_timeout_ms), 0},
    {"AGENTD_OTLP_QUEUE_SPANS", CONFIG_INT, "4096", 1, 1000000, "spans",
     "finished spans waiting for export; a span past it is dropped and counted",
     CONFIG_FIELD(otlp_queue_spans), 0},
    {"AGENTD_OTLP_BATCH_SPANS", CONFIG_INT, "512", 1, 100000, "spans", "spans sent in one export",
     CONFIG_FIELD(otlp_batch_spans), 0},
    {"AGENTD_OTLP_INTERVAL_MS", CONFIG_MS, "1000", 10, 600000, "ms",
     "longest a finished span waits for its batch to fill", CONFIG_FIELD(otlp_interval_ms), 0},
    {"AGENTD_OTLP_SERVICE_NAME", CONFIG_TEXT, "agentd", 1, 128, "bytes",
     "service.name of the exported spans", CONFIG_FIELD(otlp_service_name), 0},
};

#pragma GCC diagnostic pop

#define CONFIG_ROWS (sizeof(config_table) / sizeof(config_table[0]))

static void *config_at(struct agentd_config *cfg, size_t offset)
{
    return (char *)cfg + offset;
}

static const void *config_at_const(const struct agentd_config *cfg, size_t offset)
{
    return (const char *)cfg + offset;
}

static char **config_str_at(struct agentd_config *cfg, size_t offset)
{
    return config_at(cfg, offset);
}

static int config_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int config_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Copies a user value for an error message: cut, and made safe for a terminal or log. */
static void config_echo(char out[static CONFIG_ECHO_MAX_BYTES + 4], const char *value)
{
    size_t i;

    for (i = 0; i < CONFIG_ECHO_MAX_BYTES && value[i] != '\0'; i++) {
        unsigned char c = (unsigned char)value[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (value[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

/* "%g" drops the ".0" of whole numbers; keep it so ranges read "0.0..1.0". */
static void config_format_double(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%g", v);
    if (!strpbrk(buf, ".eni"))
        strncat(buf, ".0", len - strlen(buf) - 1);
}

static bool config_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Decimal only: strtoll alone would accept leading spaces, '+' and stop at junk. */
static int config_parse_int64(const char *s, int64_t *ret_value)
{
    char *end = NULL;
    long long v;

    if (!(config_is_digit(s[0]) || (s[0] == '-' && config_is_digit(s[1]))))
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -EINVAL;
    *ret_value = v;
    return 0;
}

static int config_parse_integer(const struct config_row *row, const char *value,
                                struct agentd_config *cfg, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4];
    int64_t v;

    if (config_parse_int64(value, &v) < 0 || v < (int64_t)row->min || v > (int64_t)row->max) {
        config_echo(shown, value);
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected an integer %lld..%lld (%s), got '%s'", row->name,
                           (long long)row->min, (long long)row->max, row->unit, shown);
    }
    if (row->kind == CONFIG_INT)
        *(int *)config_at(cfg, row->offset) = (int)v;
    else if (row->kind == CONFIG_MS)
        *(int64_t *)config_at(cfg, row->offset) = v;
    else
        *(size_t *)config_at(cfg, row->offset) = (size_t)v;
    return 0;
}

static int config_parse_double(const struct config_row *row, const char *value,
                               struct agentd_config *cfg, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4], lo[32], hi[32];
    char *end = NULL;
    double v = 0.0;
    /* Rejecting a non-digit start keeps out spaces, "nan" and "inf" spelled out. */
    bool ok = config_is_digit(value[0]) || value[0] == '-' || value[0] == '.';

    if (ok) {
        errno = 0;
        v = strtod(value, &end);
        ok = errno == 0 && end != value && *end == '\0' && isfinite(v) && v >= row->min &&
             v <= row->max;
    }
    if (!ok) {
        config_echo(shown, value);
        config_format_double(lo, sizeof(lo), row->min);
        config_format_double(hi, sizeof(hi), row->max);
        return config_fail(err, errlen, -EINVAL, "%s: expected a number %s..%s, got '%s'",
                           row->name, lo, hi, shown);
    }
    *(double *)config_at(cfg, row->offset) = v;
    return 0;
}

static int config_store_string(struct agentd_config *cfg, size_t offset, const char *value,
                               size_t len, char *err, size_t errlen)
{
    char *copy = strndup(value, len);

    if (!copy)
        return config_fail(err, errlen, -ENOMEM, "out of memory");
    *config_str_at(cfg, offset) = copy;
    return 0;
}

static int config_parse_text(const struct config_row *row, const char *value,
                             struct agentd_config *cfg, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4];
    size_t len = strlen(value);

    config_echo(shown, value);
    if (len < (size_t)row->min || len > (size_t)row->max)
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected %lld..%lld bytes, got %zu bytes '%s'", row->name,
                           (long long)row->min, (long long)row->max, len, shown);
    /* jansson refuses invalid UTF-8, so a bad prompt would otherwise fail every run. */
    if (!text_utf8_valid(value, len))
        return config_fail(err, errlen, -EINVAL, "%s: expected valid UTF-8 text, got '%s'",
                           row->name, shown);
    return config_store_string(cfg, row->offset, value, len, err, errlen);
}

static bool config_printable_no_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int config_parse_url(const struct config_row *row, const char *value,
                            struct agentd_config *cfg, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4], redacted[CONFIG_ECHO_MAX_BYTES + 2];
    size_t len = strlen(value), scheme_len = 0;

    if (len == 0 && row->min == 0)
        return config_store_string(cfg, row->offset, value, 0, err, errlen);
    if (strncmp(value, "http://", 7) == 0)
        scheme_len = 7;
    else if (strncmp(value, "https://", 8) == 0)
        scheme_len = 8;
    /* One byte more than is echoed, so a cut still shows as "...". */
    url_redact(value, redacted, sizeof(redacted));
    config_echo(shown, redacted);
    if (scheme_len == 0 || len <= scheme_len || value[scheme_len] == '/' ||
        !config_printable_no_space(value, len))
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected an http:// or https:// URL, got '%s'", row->name, shown);
    if (len > (size_t)row->max)
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected an http:// or https:// URL of at most %lld bytes, got %zu "
                           "bytes '%s'",
                           row->name, (long long)row->max, len, shown);
    /* Callers append paths like "/v1/messages"; the host after the scheme stops this. */
    while (value[len - 1] == '/')
        len--;
    return config_store_string(cfg, row->offset, value, len, err, errlen);
}

static int config_parse_redis_url(const struct config_row *row, const char *value,
                                  struct agentd_config *cfg, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4], redacted[CONFIG_ECHO_MAX_BYTES + 2];
    struct url_redis parsed;
    size_t len = strlen(value);
    int r;

    if (len == 0)
        return config_store_string(cfg, row->offset, value, 0, err, errlen);
    url_redact(value, redacted, sizeof(redacted));
    config_echo(shown, redacted);
    r = len > (size_t)row->max ? -EINVAL : url_redis_parse(value, &parsed);
    explicit_bzero(&parsed, sizeof(parsed));
    if (r == -EPROTONOSUPPORT)
        return config_fail(err, errlen, -EINVAL,
                           "%s: rediss:// (TLS) is not supported; reach Redis over a private "
                           "network or a TLS sidecar, got '%s'",
                           row->name, shown);
    if (r < 0)
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected redis://[user:password@]host[:port][/db] of at most "
                           "%lld bytes, got '%s'",
                           row->name, (long long)row->max, shown);
    return config_store_string(cfg, row->offset, value, len, err, errlen);
}

/* The key must be a valid header value; the message never includes it. */
static bool config_key_valid(const struct config_row *row, const char *key, size_t len)
{
    return len >= (size_t)row->min && len <= (size_t)row->max &&
           config_printable_no_space(key, len);
}

static int config_parse_secret(const struct config_row *row, const char *value,
                               struct agentd_config *cfg, char *err, size_t errlen)
{
    size_t len = strlen(value);

    if (!config_key_valid(row, value, len))
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected 1..%lld printable ASCII characters without spaces, got "
                           "%zu bytes (value not shown)",
                           row->name, (long long)row->max, len);
    return config_store_string(cfg, row->offset, value, len, err, errlen);
}

/* Reads at most cap bytes; callers pass one more than they accept so an oversized file shows. */
static int config_read_small_file(const char *path, char *buf, size_t cap, size_t *ret_len)
{
    struct stat st;
    size_t len = 0;
    int fd, r = 0;

    /* O_NONBLOCK: a FIFO must not hang startup before the S_ISREG check. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto out;
    }
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret_len = len;
out:
    close(fd);
    return r;
}

/* The secret row a file row stands in for (its aux_offset); NULL when the table has none. */
static const struct config_row *config_secret_row_of(const struct config_row *row)
{
    for (size_t i = 0; i < CONFIG_ROWS; i++)
        if (config_table[i].kind == CONFIG_SECRET && config_table[i].offset == row->aux_offset)
            return &config_table[i];
    return NULL;
}

/* A file row: its secret must not be set as well (the table lists the secret first), and the
   path must fit the row. */
static int config_check_path(const struct config_row *row, const char *value,
                             const struct agentd_config *cfg, char *err, size_t errlen)
{
    const struct config_row *secret_row = config_secret_row_of(row);
    char shown[CONFIG_ECHO_MAX_BYTES + 4];
    size_t path_len = strlen(value);

    if (*(char *const *)config_at_const(cfg, row->aux_offset) != NULL)
        return config_fail(err, errlen, -EINVAL, "set only one of %s and %s",
                           secret_row ? secret_row->name : "the secret", row->name);
    if (path_len > (size_t)row->max) {
        config_echo(shown, value);
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected a path of 1..%lld bytes, got %zu bytes '%s'", row->name,
                           (long long)row->max, path_len, shown);
    }
    return 0;
}

static int config_parse_secret_path(const struct config_row *row, const char *value,
                                    struct agentd_config *cfg, char *err, size_t errlen)
{
    int r = config_check_path(row, value, cfg, err, errlen);

    if (r < 0)
        return r;
    return config_store_string(cfg, row->offset, value, strlen(value), err, errlen);
}

static int config_parse_key_file(const struct config_row *row, const char *value,
                                 struct agentd_config *cfg, char *err, size_t errlen)
{
    const struct config_row *key_row = config_secret_row_of(row);
    char shown[CONFIG_ECHO_MAX_BYTES + 4], errbuf[128];
    char buf[CONFIG_KEY_FILE_MAX_BYTES + 1];
    size_t len = 0, path_len = strlen(value);
    int r;

    r = config_check_path(row, value, cfg, err, errlen);
    if (r < 0)
        return r;
    config_echo(shown, value);
    r = config_read_small_file(value, buf, sizeof(buf), &len);
    if (r == -EINVAL) {
        r = config_fail(err, errlen, -EINVAL, "%s: '%s' is not a regular file", row->name, shown);
        goto out;
    }
    if (r < 0) {
        r = config_fail(err, errlen, -EINVAL, "%s: cannot read '%s': %s", row->name, shown,
                        strerror_r(-r, errbuf, sizeof(errbuf)));
        goto out;
    }
    if (len > CONFIG_KEY_FILE_MAX_BYTES) {
        r = config_fail(err, errlen, -EINVAL, "%s: '%s' is larger than %d bytes", row->name, shown,
                        CONFIG_KEY_FILE_MAX_BYTES);
        goto out;
    }
    /* Editors and `echo` add a newline; secret mounts sometimes add spaces. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                       buf[len - 1] == '\t'))
        len--;
    /* A file with no environment twin (the Redis password) only has to be a non-empty,
       printable line. */
    bool valid = key_row ? config_key_valid(key_row, buf, len)
                         : len >= 1 && config_printable_no_space(buf, len);
    if (!valid) {
        r = config_fail(err, errlen, -EINVAL,
                        "%s: the key in '%s' must be 1..%lld printable ASCII characters without "
                        "spaces, got %zu bytes (value not shown)",
                        row->name, shown,
                        key_row ? (long long)key_row->max : (long long)CONFIG_KEY_FILE_MAX_BYTES,
                        len);
        goto out;
    }
    r = config_store_string(cfg, row->aux_offset, buf, len, err, errlen);
    if (r < 0)
        goto out;
    r = config_store_string(cfg, row->offset, value, path_len, err, errlen);
out:
    explicit_bzero(buf, sizeof(buf));
    return r;
}

static bool config_host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || config_is_digit(c) || c == '.' ||
           c == '-' || c == '_';
}

static int config_parse_host_port(const struct config_row *row, const char *value,
                                  struct agentd_config *cfg, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4];
    /* "[v6 literal]:port" or "host:port". */
    bool v6 = value[0] == '[';
    const char *close = v6 ? strchr(value, ']') : NULL;
    const char *colon = v6 ? (close && close[1] == ':' ? close + 1 : NULL) : strrchr(value, ':');
    const char *host = v6 ? value + 1 : value;
    size_t host_len = colon ? (size_t)((v6 ? close : colon) - host) : 0;
    const char *port_text = colon ? colon + 1 : "";
    size_t port_len = strlen(port_text);
    bool ok = host_len >= 1 && host_len <= CONFIG_HOST_MAX_BYTES && port_len >= 1 && port_len <= 5;
    int64_t port = -1;
    int r;

    for (size_t i = 0; ok && i < host_len; i++)
        ok = v6 ? (isxdigit((unsigned char)host[i]) || host[i] == ':' || host[i] == '.')
                : config_host_char_ok(host[i]);
    for (size_t i = 0; ok && i < port_len; i++)
        ok = config_is_digit(port_text[i]);
    if (ok)
        ok = config_parse_int64(port_text, &port) == 0 && port >= (int64_t)row->min &&
             port <= (int64_t)row->max;
    if (!ok) {
        config_echo(shown, value);
        return config_fail(err, errlen, -EINVAL,
                           "%s: expected host:port or [IPv6]:port (host 1..%d chars of "
                           "[A-Za-z0-9._-], port %lld..%lld), got '%s'",
                           row->name, CONFIG_HOST_MAX_BYTES, (long long)row->min,
                           (long long)row->max, shown);
    }
    r = config_store_string(cfg, row->offset, host, host_len, err, errlen);
    if (r < 0)
        return r;
    *(int *)config_at(cfg, row->aux_offset) = (int)port;
    return 0;
}

static int config_parse_row(const struct config_row *row, const char *value,
                            struct agentd_config *cfg, char *err, size_t errlen)
{
    switch (row->kind) {
    case CONFIG_INT:
    case CONFIG_MS:
    case CONFIG_BYTES:
        return config_parse_integer(row, value, cfg, err, errlen);
    case CONFIG_DOUBLE:
        return config_parse_double(row, value, cfg, err, errlen);
    case CONFIG_TEXT:
        return config_parse_text(row, value, cfg, err, errlen);
    case CONFIG_URL:
        return config_parse_url(row, value, cfg, err, errlen);
    case CONFIG_REDIS_URL:
        return config_parse_redis_url(row, value, cfg, err, errlen);
    case CONFIG_SECRET:
        return config_parse_secret(row, value, cfg, err, errlen);
    case CONFIG_KEY_FILE:
        return config_parse_key_file(row, value, cfg, err, errlen);
    case CONFIG_SECRET_PATH:
        return config_parse_secret_path(row, value, cfg, err, errlen);
    case CONFIG_HOST_PORT:
        return config_parse_host_port(row, value, cfg, err, errlen);
    }
    return config_fail(err, errlen, -EINVAL, "%s: unknown setting kind", row->name);
}

/* ---- per-dependency policies ----------------------------------------------------------- */

#define CONFIG_POLICY_FIELD(f) offsetof(struct config_policy, f)

/* The per-dependency settings: AGENTD_LLM_<SUFFIX> and AGENTD_TOOL_<TOOL>_<SUFFIX>, each parsed
   like its global row (kind, range, unit) and defaulting to that row's value. A new
   per-dependency setting is one line here and one field of struct config_policy. */
static const struct config_policy_setting {
    const char *suffix;
    const char *llm_global;  /* the LLM's default; when it is AGENTD_LLM_<SUFFIX>, that row is it */
    const char *tool_global; /* a tool's default */
    size_t offset;           /* in struct config_policy; the field's type is the row kind's */
} config_policy_settings[] = {
    {"TIMEOUT_MS", "AGENTD_LLM_TIMEOUT_MS", "AGENTD_TOOL_TIMEOUT_MS",
     CONFIG_POLICY_FIELD(timeout_ms)},
    {"RETRY_MAX", "AGENTD_RETRY_MAX", "AGENTD_RETRY_MAX", CONFIG_POLICY_FIELD(retry_max)},
    {"RETRY_INITIAL_MS", "AGENTD_RETRY_INITIAL_MS", "AGENTD_RETRY_INITIAL_MS",
     CONFIG_POLICY_FIELD(retry_initial_ms)},
    {"RETRY_MAX_DELAY_MS", "AGENTD_RETRY_MAX_DELAY_MS", "AGENTD_RETRY_MAX_DELAY_MS",
     CONFIG_POLICY_FIELD(retry_max_delay_ms)},
    {"BREAKER_FAILURES", "AGENTD_BREAKER_FAILURES", "AGENTD_BREAKER_FAILURES",
     CONFIG_POLICY_FIELD(breaker_failures)},
    {"BREAKER_OPEN_MS", "AGENTD_BREAKER_OPEN_MS", "AGENTD_BREAKER_OPEN_MS",
     CONFIG_POLICY_FIELD(breaker_open_ms)},
    {"RATE", "AGENTD_LLM_RATE", "AGENTD_TOOL_RATE", CONFIG_POLICY_FIELD(rate)},
    {"BURST", "AGENTD_LLM_BURST", "AGENTD_TOOL_BURST", CONFIG_POLICY_FIELD(burst)},
};

#define CONFIG_POLICY_SETTINGS (sizeof(config_policy_settings) / sizeof(config_policy_settings[0]))

enum config_applies {
    CONFIG_APPLIES_ALL,     /* an upstream: timeouts, retries, breaker, limiter */
    CONFIG_APPLIES_TIMEOUT, /* local work with a deadline */
    CONFIG_APPLIES_NONE,    /* in-process, done at once */
};

static const struct config_target_info {
    const char *prefix;
    const char *name;
    const char *upper; /* <TOOL> in the names; NULL for the LLM */
    enum config_applies applies;
} config_targets[CONFIG_TARGETS] = {
    [CONFIG_TARGET_LLM] = {"AGENTD_LLM_", "anthropic", NULL, CONFIG_APPLIES_ALL},
    [CONFIG_TARGET_CALCULATOR] = {"AGENTD_TOOL_CALCULATOR_", "calculator", "CALCULATOR",
                                  CONFIG_APPLIES_NONE},
    [CONFIG_TARGET_SAVE_NOTE] = {"AGENTD_TOOL_SAVE_NOTE_", "save_note", "SAVE_NOTE",
                                 CONFIG_APPLIES_TIMEOUT},
    [CONFIG_TARGET_WEB_SEARCH] = {"AGENTD_TOOL_WEB_SEARCH_", "web_search", "WEB_SEARCH",
                                  CONFIG_APPLIES_ALL},
    [CONFIG_TARGET_GET_WEATHER] = {"AGENTD_TOOL_GET_WEATHER_", "get_weather", "GET_WEATHER",
                                   CONFIG_APPLIES_ALL},
};

const char *config_target_name(enum config_target t)
{
    return t >= 0 && t < CONFIG_TARGETS ? config_targets[t].name : NULL;
}

bool config_target_applies(enum config_target t, const char *suffix)
{
    if (t < 0 || t >= CONFIG_TARGETS || !suffix)
        return false;
    switch (config_targets[t].applies) {
    case CONFIG_APPLIES_ALL:
        return true;
    case CONFIG_APPLIES_TIMEOUT:
        return strcmp(suffix, "TIMEOUT_MS") == 0;
    case CONFIG_APPLIES_NONE:
        return false;
    }
    return false;
}

static const struct config_row *config_row_named(const char *name)
{
    for (size_t i = 0; i < CONFIG_ROWS; i++)
        if (strcmp(config_table[i].name, name) == 0)
            return &config_table[i];
    return NULL;
}

static size_t config_kind_size(enum config_kind kind)
{
    switch (kind) {
    case CONFIG_INT:
        return sizeof(int);
    case CONFIG_MS:
        return sizeof(int64_t);
    case CONFIG_BYTES:
        return sizeof(size_t);
    case CONFIG_DOUBLE:
        return sizeof(double);
    default:
        return 0;
    }
}

/* The row of setting k of target t: its global row with the per-dependency name and field.
   Returns the global row (never NULL: the lists above name rows of the table). */
static const struct config_row *config_policy_row(enum config_target t, size_t k,
                                                  struct config_row *ret,
                                                  char name[static CONFIG_NAME_MAX_BYTES])
{
    const struct config_policy_setting *s = &config_policy_settings[k];
    const struct config_row *global =
        config_row_named(t == CONFIG_TARGET_LLM ? s->llm_global : s->tool_global);

    snprintf(name, CONFIG_NAME_MAX_BYTES, "%s%s", config_targets[t].prefix, s->suffix);
    *ret = *global;
    ret->name = name;
    ret->default_text = NULL;
    ret->live = CONFIG_LIVE;
    ret->offset = CONFIG_FIELD(policy) + (size_t)t * sizeof(struct config_policy) + s->offset;
    return global;
}

/* Setting k of target t as a name of its own that does something (not the LLM's row, not one
   that cannot apply): fills row and name and returns true. */
static bool config_policy_listed(enum config_target t, size_t k, struct config_row *row,
                                 char name[static CONFIG_NAME_MAX_BYTES])
{
    const struct config_row *global = config_policy_row(t, k, row, name);

    return strcmp(name, global->name) != 0 &&
           config_target_applies(t, config_policy_settings[k].suffix);
}

static int config_policy_refuse(enum config_target t, const char *name, char *err, size_t errlen)
{
    if (config_targets[t].applies == CONFIG_APPLIES_NONE)
        return config_fail(err, errlen, -EINVAL,
                           "%s: %s runs in-process with no upstream; no per-tool setting applies "
                           "to it",
                           name, config_targets[t].name);
    return config_fail(err, errlen, -EINVAL,
                       "%s: %s makes no upstream call; only %sTIMEOUT_MS applies to it", name,
                       config_targets[t].name, config_targets[t].prefix);
}

/* Every policy starts as its globals, then takes the per-dependency variables that are set. */
static int config_load_policies(struct agentd_config *cfg, config_lookup_fn lookup, void *ctx,
                                char *err, size_t errlen)
{
    for (int t = 0; t < CONFIG_TARGETS; t++) {
        for (size_t k = 0; k < CONFIG_POLICY_SETTINGS; k++) {
            char name[CONFIG_NAME_MAX_BYTES];
            struct config_row row;
            const struct config_row *global = config_policy_row(t, k, &row, name);
            const char *value;
            int r;

            memcpy(config_at(cfg, row.offset), config_at_const(cfg, global->offset),
                   config_kind_size(global->kind));
            if (strcmp(name, global->name) == 0)
                continue; /* the LLM's own row (AGENTD_LLM_TIMEOUT_MS, ...) */
            value = lookup(name, ctx);
            if (!value)
                continue;
            if (!config_target_applies(t, config_policy_settings[k].suffix))
                return config_policy_refuse(t, name, err, errlen);
            r = config_parse_row(&row, value, cfg, err, errlen);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* ---- the config file -------------------------------------------------------------------- */

/* A settings file is small; past this many entries it is not one. */
#define CONFIG_FILE_MAX_ENTRIES 1024

struct config_file_entry {
    char *name;
    char *value;
};

struct config_file {
    size_t count;
    struct config_file_entry entries[];
};

struct config_file *config_file_free(struct config_file *f)
{
    if (!f)
        return NULL;
    for (size_t i = 0; i < f->count; i++) {
        /* A file may hold a secret (ANTHROPIC_API_KEY): wipe what it held. */
        explicit_bzero(f->entries[i].value, strlen(f->entries[i].value));
        free(f->entries[i].name);
        free(f->entries[i].value);
    }
    free(f);
    return NULL;
}

const char *config_file_get(const struct config_file *f, const char *name)
{
    for (size_t i = 0; f && i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0)
            return f->entries[i].value;
    return NULL;
}

size_t config_file_count(const struct config_file *f)
{
    return f ? f->count : 0;
}

const char *config_file_name(const struct config_file *f, size_t i)
{
    return f && i < f->count ? f->entries[i].name : NULL;
}

static bool config_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static bool config_name_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || config_is_digit(c) || c == '_';
}

/* One "NAME=value" line, trimmed, into f (which has room). */
static int config_file_add(struct config_file *f, const char *what, size_t line_no,
                           const char *line, size_t len, char *err, size_t errlen)
{
    const char *eq = memchr(line, '=', len);
    size_t name_len, value_start;
    char shown[CONFIG_ECHO_MAX_BYTES + 4], name[CONFIG_ECHO_MAX_BYTES + 1];

    if (!eq)
        return config_fail(err, errlen, -EINVAL, "%s: line %zu: expected NAME=value", what,
                           line_no);
    name_len = (size_t)(eq - line);
    while (name_len > 0 && config_is_space(line[name_len - 1]))
        name_len--;
    bool ok = name_len > 0 && name_len < CONFIG_NAME_MAX_BYTES;
    for (size_t i = 0; ok && i < name_len; i++)
        ok = config_name_char_ok(line[i]);
    snprintf(name, sizeof(name), "%.*s",
             (int)(name_len < CONFIG_ECHO_MAX_BYTES ? name_len : CONFIG_ECHO_MAX_BYTES), line);
    if (!ok) {
        config_echo(shown, name);
        return config_fail(err, errlen, -EINVAL,
                           "%s: line %zu: expected a setting name of 1..%d characters "
                           "[A-Z0-9_], got '%s'",
                           what, line_no, CONFIG_NAME_MAX_BYTES - 1, shown);
    }
    if (config_file_get(f, name))
        return config_fail(err, errlen, -EINVAL, "%s: line %zu: %s is set twice", what, line_no,
                           name);
    if (f->count == CONFIG_FILE_MAX_ENTRIES)
        return config_fail(err, errlen, -EINVAL, "%s: more than %d settings", what,
                           CONFIG_FILE_MAX_ENTRIES);
    value_start = (size_t)(eq - line) + 1;
    while (value_start < len && config_is_space(line[value_start]))
        value_start++;
    struct config_file_entry *e = &f->entries[f->count];
    e->name = strndup(line, name_len);
    e->value = strndup(line + value_start, len - value_start);
    if (!e->name || !e->value) {
        free(e->name);
        free(e->value);
        return config_fail(err, errlen, -ENOMEM, "out of memory");
    }
    f->count++;
    return 0;
}

int config_file_parse(const char *what, const char *text, size_t len, struct config_file **ret,
                      char *err, size_t errlen)
{
    struct config_file *f;
    size_t line_no = 0, pos = 0;
    int r = 0;

    if (err && errlen > 0)
        err[0] = '\0';
    if (len > CONFIG_FILE_MAX_BYTES)
        return config_fail(err, errlen, -EINVAL, "%s: larger than %d bytes", what,
                           CONFIG_FILE_MAX_BYTES);
    if (memchr(text, '\0', len))
        return config_fail(err, errlen, -EINVAL, "%s: holds a NUL byte (not a text file)", what);
    f = calloc(1, sizeof(*f) + CONFIG_FILE_MAX_ENTRIES * sizeof(f->entries[0]));
    if (!f)
        return config_fail(err, errlen, -ENOMEM, "out of memory");
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, start = pos;

        line_no++;
        pos = end + 1;
        while (start < end && config_is_space(text[start]))
            start++;
        while (end > start && config_is_space(text[end - 1]))
            end--;
        if (start == end || text[start] == '#')
            continue;
        r = config_file_add(f, what, line_no, text + start, end - start, err, errlen);
        if (r < 0) {
            config_file_free(f);
            return r;
        }
    }
    *ret = f;
    return 0;
}

int config_file_read(const char *path, struct config_file **ret, char *err, size_t errlen)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4], errbuf[128];
    char *buf = malloc(CONFIG_FILE_MAX_BYTES + 1);
    size_t len = 0;
    int r;

    if (!buf)
        return config_fail(err, errlen, -ENOMEM, "out of memory");
    config_echo(shown, path);
    r = config_read_small_file(path, buf, CONFIG_FILE_MAX_BYTES + 1, &len);
    if (r == -EINVAL)
        r = config_fail(err, errlen, -EINVAL, "AGENTD_CONFIG_FILE: '%s' is not a regular file",
                        shown);
    else if (r < 0)
        r = config_fail(err, errlen, r == -ENOMEM ? -ENOMEM : -EINVAL,
                        "AGENTD_CONFIG_FILE: cannot read '%s': %s", shown,
                        strerror_r(-r, errbuf, sizeof(errbuf)));
    else
        r = config_file_parse(shown, buf, len, ret, err, errlen);
    explicit_bzero(buf, len);
    free(buf);
    return r;
}

const char *config_source_lookup(const char *name, void *source)
{
    const struct config_source *src = source;
    const char *v = src->env ? src->env(name, src->env_ctx) : getenv(name);

    return v ? v : config_file_get(src->file, name);
}

/* ---- names: known, closest, ignored ----------------------------------------------------- */

bool config_name_known(const char *name)
{
    char buf[CONFIG_NAME_MAX_BYTES];
    struct config_row row;

    if (!name)
        return false;
    if (config_row_named(name))
        return true;
    for (int t = 0; t < CONFIG_TARGETS; t++)
        for (size_t k = 0; k < CONFIG_POLICY_SETTINGS; k++) {
            config_policy_row(t, k, &row, buf);
            if (strcmp(buf, name) == 0)
                return true;
        }
    return false;
}

/* Levenshtein distance, case-insensitive, over the first CONFIG_NAME_MAX_BYTES bytes. */
static size_t config_edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, CONFIG_NAME_MAX_BYTES), lb = strnlen(b, CONFIG_NAME_MAX_BYTES);
    size_t prev[CONFIG_NAME_MAX_BYTES + 1], cur[CONFIG_NAME_MAX_BYTES + 1];

    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = toupper((unsigned char)a[i - 1]) != toupper((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + cost;
            best = prev[j] + 1 < best ? prev[j] + 1 : best;
            best = cur[j - 1] + 1 < best ? cur[j - 1] + 1 : best;
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(prev[0]));
    }
    return prev[lb];
}

void config_unknown_message(const char *name, char *buf, size_t len)
{
    char shown[CONFIG_ECHO_MAX_BYTES + 4], cand[CONFIG_NAME_MAX_BYTES];
    char best[CONFIG_NAME_MAX_BYTES] = "";
    size_t best_d = SIZE_MAX;
    struct config_row row;

    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        size_t d = config_edit_distance(name, config_table[i].name);
        if (d < best_d) {
            best_d = d;
            snprintf(best, sizeof(best), "%s", config_table[i].name);
        }
    }
    /* Only names that do something are suggested. */
    for (int t = 0; t < CONFIG_TARGETS; t++)
        for (size_t k = 0; k < CONFIG_POLICY_SETTINGS; k++) {
            config_policy_row(t, k, &row, cand);
            if (!config_target_applies(t, config_policy_settings[k].suffix))
                continue;
            size_t d = config_edit_distance(name, cand);
            if (d < best_d) {
                best_d = d;
                snprintf(best, sizeof(best), "%s", cand);
            }
        }
    config_echo(shown, name);
    snprintf(buf, len, "%s: unknown setting; did you mean %s?", shown, best);
}

static bool config_has_suffix(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

bool config_env_ignored(const char *name)
{
    /* Kubernetes service links: <SVC>_SERVICE_HOST, <SVC>_SERVICE_PORT[_<NAME>], <SVC>_PORT,
       <SVC>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]. */
    const char *p;

    if (strstr(name, "_SERVICE_HOST") || strstr(name, "_SERVICE_PORT") ||
        config_has_suffix(name, "_PORT"))
        return true;
    p = strstr(name, "_PORT_");
    if (!p || !config_is_digit(p[6]))
        return false;
    p += 6;
    while (config_is_digit(*p))
        p++;
    return strncmp(p, "_TCP", 4) == 0 || strncmp(p, "_UDP", 4) == 0 || strncmp(p, "_SCTP", 5) == 0;
}

/* ---- what changed ----------------------------------------------------------------------- */

static bool config_str_equal(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool config_row_equal(const struct config_row *row, const struct agentd_config *a,
                             const struct agentd_config *b)
{
    const void *fa = config_at_const(a, row->offset), *fb = config_at_const(b, row->offset);
    const char *const *sa = fa, *const *sb = fb;

    switch (row->kind) {
    case CONFIG_INT:
    case CONFIG_MS:
    case CONFIG_BYTES:
    case CONFIG_DOUBLE:
        return memcmp(fa, fb, config_kind_size(row->kind)) == 0;
    case CONFIG_HOST_PORT:
        return config_str_equal(*sa, *sb) && *(const int *)config_at_const(a, row->aux_offset) ==
                                                 *(const int *)config_at_const(b, row->aux_offset);
    case CONFIG_KEY_FILE:
        /* The key it holds counts too: a rotated key is a change. */
        if (!config_str_equal(*(char *const *)config_at_const(a, row->aux_offset),
                              *(char *const *)config_at_const(b, row->aux_offset)))
            return false;
        return config_str_equal(*sa, *sb);
    default:
        return config_str_equal(*sa, *sb);
    }
}

size_t config_diff(const struct agentd_config *a, const struct agentd_config *b, config_diff_fn fn,
                   void *arg)
{
    size_t n = 0;

    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        if (config_row_equal(&config_table[i], a, b))
            continue;
        n++;
        if (fn)
            fn(config_table[i].name, config_table[i].live, arg);
    }
    for (int t = 0; t < CONFIG_TARGETS; t++)
        for (size_t k = 0; k < CONFIG_POLICY_SETTINGS; k++) {
            char name[CONFIG_NAME_MAX_BYTES];
            struct config_row row;

            if (!config_policy_listed(t, k, &row, name) || config_row_equal(&row, a, b))
                continue;
            n++;
            if (fn)
                fn(name, true, arg);
        }
    return n;
}

static const char *config_getenv(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

static int config_resolve_workers(struct agentd_config *cfg)
{
    const struct config_row *row = NULL;
    long cpus;

    if (cfg->workers != 0)
        return 0;
    for (size_t i = 0; i < CONFIG_ROWS; i++)
        if (config_table[i].offset == CONFIG_FIELD(workers))
            row = &config_table[i];
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (row && cpus > (long)row->max)
        cpus = (long)row->max;
    cfg->workers = (int)cpus;
    return 0;
}

int config_load(struct agentd_config *ret, config_lookup_fn lookup, void *ctx, char *err,
                size_t errlen)
{
    struct agentd_config tmp = {0};
    int r = 0;

    if (err && errlen > 0)
        err[0] = '\0';
    if (!ret)
        return config_fail(err, errlen, -EINVAL, "no configuration to fill");
    if (!lookup)
        lookup = config_getenv;
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];
        const char *value = lookup(row->name, ctx);

        /* Templates often expand a missing secret to ""; that means "not set". */
        bool secret_like = row->kind == CONFIG_SECRET || row->kind == CONFIG_KEY_FILE ||
                           row->kind == CONFIG_SECRET_PATH;
        if (!value || (secret_like && value[0] == '\0'))
            value = row->default_text;
        if (!value)
            continue;
        r = config_parse_row(row, value, &tmp, err, errlen);
        if (r < 0)
            goto fail;
    }
    r = config_resolve_workers(&tmp);
    if (r < 0)
        goto fail;
    r = config_load_policies(&tmp, lookup, ctx, err, errlen);
    if (r < 0)
        goto fail;
    *ret = tmp;
    return 0;
fail:
    config_free(&tmp);
    return r;
}

void config_free(struct agentd_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];
        char **s;

        if (row->kind == CONFIG_INT || row->kind == CONFIG_MS || row->kind == CONFIG_BYTES ||
            row->kind == CONFIG_DOUBLE)
            continue;
        s = config_str_at(cfg, row->offset);
        /* Wipe the key so it does not linger in freed heap memory or core dumps. */
        if (*s && (row->kind == CONFIG_SECRET || row->kind == CONFIG_REDIS_URL))
            explicit_bzero(*s, strlen(*s));
        free(*s);
        *s = NULL;
        /* A file's secret with no row of its own (the Redis password) is freed here. */
        if (row->kind == CONFIG_KEY_FILE && !config_secret_row_of(row)) {
            s = config_str_at(cfg, row->aux_offset);
            if (*s)
                explicit_bzero(*s, strlen(*s));
            free(*s);
            *s = NULL;
        }
    }
}

/* Range/unit column of the help table. */
static void config_format_range(const struct config_row *row, char *buf, size_t len)
{
    char lo[32], hi[32];

    switch (row->kind) {
    case CONFIG_INT:
    case CONFIG_MS:
    case CONFIG_BYTES:
    case CONFIG_TEXT:
        snprintf(buf, len, "%lld..%lld %s", (long long)row->min, (long long)row->max, row->unit);
        break;
    case CONFIG_DOUBLE:
        config_format_double(lo, sizeof(lo), row->min);
        config_format_double(hi, sizeof(hi), row->max);
        snprintf(buf, len, "%s..%s%s%s", lo, hi, row->unit[0] ? " " : "", row->unit);
        break;
    case CONFIG_URL:
        snprintf(buf, len, "%s", row->min == 0 ? "http(s) URL or empty" : "http(s) URL");
        break;
    case CONFIG_REDIS_URL:
        snprintf(buf, len, "redis URL or empty");
        break;
    case CONFIG_SECRET:
    case CONFIG_KEY_FILE:
    case CONFIG_SECRET_PATH:
    case CONFIG_HOST_PORT:
        snprintf(buf, len, "%s", row->unit);
        break;
    }
}

static void config_format_default(const struct config_row *row, char *buf, size_t len, size_t width)
{
    if (!row->default_text)
        snprintf(buf, len, "(unset)");
    else if (row->default_text[0] == '\0')
        snprintf(buf, len, "\"\"");
    else if (strlen(row->default_text) > width && width > 3)
        snprintf(buf, len, "%.*s...", (int)(width - 3), row->default_text);
    else
        snprintf(buf, len, "%s", row->default_text);
}

/* Word-wraps `text` at CONFIG_HELP_COLUMNS, every line indented by `indent`. */
static void config_print_wrapped(FILE *out, const char *text, size_t indent)
{
    size_t width = CONFIG_HELP_COLUMNS - indent, col = 0;
    const char *p = text;

    while (*p) {
        size_t word = strcspn(p, " ");

        if (col > 0 && col + 1 + word > width) {
            fputc('\n', out);
            col = 0;
        }
        if (col == 0) {
            fprintf(out, "%*s", (int)indent, "");
        } else {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", (int)word, p);
        col += word;
        p += word;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

/* The per-dependency names, once each as a pattern (rows of the help table). */
static void config_print_help_patterns(FILE *out, size_t name_w, size_t default_w)
{
    char text[1024], llm[256] = "", all[256] = "", tools[128] = "", partial[256] = "";
    size_t k;

    for (k = 0; k < CONFIG_POLICY_SETTINGS; k++) {
        const struct config_policy_setting *ps = &config_policy_settings[k];
        size_t used = strlen(all);
        snprintf(all + used, sizeof(all) - used, "%s%s", k ? ", " : "", ps->suffix);
        if (strncmp(ps->llm_global, "AGENTD_LLM_", 11) != 0) {
            used = strlen(llm);
            snprintf(llm + used, sizeof(llm) - used, "%s%s", llm[0] ? ", " : "", ps->suffix);
        }
    }
    for (int t = CONFIG_TARGET_LLM + 1; t < CONFIG_TARGETS; t++) {
        size_t used = strlen(tools);
        snprintf(tools + used, sizeof(tools) - used, "%s%s", used ? ", " : "",
                 config_targets[t].upper);
        used = strlen(partial);
        if (config_targets[t].applies == CONFIG_APPLIES_TIMEOUT)
            snprintf(partial + used, sizeof(partial) - used, " %s takes TIMEOUT_MS only.",
                     config_targets[t].upper);
        else if (config_targets[t].applies == CONFIG_APPLIES_NONE)
            snprintf(partial + used, sizeof(partial) - used, " %s takes none.",
                     config_targets[t].upper);
    }
    fprintf(out, "%*s%-*s%*s%-*s%*s%s\n", CONFIG_HELP_INDENT, "", (int)name_w,
            "AGENTD_LLM_<SETTING>", CONFIG_HELP_GAP, "", (int)default_w, "(global)",
            CONFIG_HELP_GAP, "", "as the global");
    snprintf(text, sizeof(text),
             "the LLM API's own policy, <SETTING> one of %s (its TIMEOUT_MS, RATE and BURST are "
             "the rows above); defaults to the global AGENTD_<SETTING> (reloads live)",
             llm);
    config_print_wrapped(out, text, CONFIG_HELP_MEANING_AT);
    fprintf(out, "%*s%-*s%*s%-*s%*s%s\n", CONFIG_HELP_INDENT, "", (int)name_w,
            "AGENTD_TOOL_<TOOL>_<SETTING>", CONFIG_HELP_GAP, "", (int)default_w, "(global)",
            CONFIG_HELP_GAP, "", "as the global");
    snprintf(text, sizeof(text),
             "one tool's policy, <TOOL> one of %s, <SETTING> one of %s; defaults to the global "
             "AGENTD_TOOL_TIMEOUT_MS, AGENTD_RETRY_*, AGENTD_BREAKER_*, AGENTD_TOOL_RATE, "
             "AGENTD_TOOL_BURST (reloads live).%s",
             tools, all, partial);
    config_print_wrapped(out, text, CONFIG_HELP_MEANING_AT);
}

void config_print_help(FILE *out)
{
    size_t name_w = strlen("VARIABLE"), range_w = strlen("RANGE/UNIT"), default_w = 0;
    char range[128], def[128], meaning[1024];

    if (!out)
        return;
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        size_t n = strlen(config_table[i].name);
        name_w = n > name_w ? n : name_w;
        config_format_range(&config_table[i], range, sizeof(range));
        range_w = strlen(range) > range_w ? strlen(range) : range_w;
    }
    default_w = CONFIG_HELP_COLUMNS - CONFIG_HELP_INDENT - name_w - range_w - 2 * CONFIG_HELP_GAP;
    if (default_w >= sizeof(def))
        default_w = sizeof(def) - 1;

    fputs("usage: agentd [--help|--version|--check-config [FILE]]\n"
          "  --help          print this help and exit\n"
          "  --version       print the version and exit\n"
          "  --check-config  validate the settings (with FILE as AGENTD_CONFIG_FILE), print the\n"
          "                  effective configuration, exit (2 on an error or an unknown setting)\n"
          "\n"
          "Settings are read from the environment, then from AGENTD_CONFIG_FILE:\n\n",
          out);
    fprintf(out, "%*s%-*s%*s%-*s%*s%s\n", CONFIG_HELP_INDENT, "", (int)name_w, "VARIABLE",
            CONFIG_HELP_GAP, "", (int)default_w, "DEFAULT", CONFIG_HELP_GAP, "", "RANGE/UNIT");
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];

        config_format_range(row, range, sizeof(range));
        config_format_default(row, def, sizeof(def), default_w);
        fprintf(out, "%*s%-*s%*s%-*s%*s%s\n", CONFIG_HELP_INDENT, "", (int)name_w, row->name,
                CONFIG_HELP_GAP, "", (int)default_w, def, CONFIG_HELP_GAP, "", range);
        snprintf(meaning, sizeof(meaning), "%s%s", row->meaning,
                 row->live ? " (reloads live)" : "");
        config_print_wrapped(out, meaning, CONFIG_HELP_MEANING_AT);
    }
    config_print_help_patterns(out, name_w, default_w);
}

/* Keeps the printout one line per variable whatever the value holds. */
static void config_print_escaped(FILE *out, const char *s)
{
    size_t len = strlen(s), shown = len > CONFIG_PRINT_MAX_BYTES ? CONFIG_PRINT_MAX_BYTES : len;

    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\\')
            fputs("\\\\", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    if (shown < len)
        fprintf(out, "... (%zu bytes)", len);
}

static void config_print_number(FILE *out, enum config_kind kind, const void *field)
{
    char num[32];

    switch (kind) {
    case CONFIG_INT:
        fprintf(out, "%d", *(const int *)field);
        break;
    case CONFIG_MS:
        fprintf(out, "%lld", (long long)*(const int64_t *)field);
        break;
    case CONFIG_BYTES:
        fprintf(out, "%zu", *(const size_t *)field);
        break;
    case CONFIG_DOUBLE:
        config_format_double(num, sizeof(num), *(const double *)field);
        fputs(num, out);
        break;
    default:
        break;
    }
}

void config_print_effective(const struct agentd_config *cfg, FILE *out)
{
    char url[CONFIG_URL_MAX_BYTES + URL_REDACT_EXTRA_BYTES + 1];

    if (!cfg || !out)
        return;
    for (size_t i = 0; i < CONFIG_ROWS; i++) {
        const struct config_row *row = &config_table[i];
        const void *field = config_at_const(cfg, row->offset);
        const char *s = NULL;

        fprintf(out, "%s=", row->name);
        switch (row->kind) {
        case CONFIG_INT:
        case CONFIG_MS:
        case CONFIG_BYTES:
        case CONFIG_DOUBLE:
            config_print_number(out, row->kind, field);
            break;
        case CONFIG_SECRET:
            fputs(*(char *const *)field ? "(set)" : "(unset)", out);
            break;
        case CONFIG_HOST_PORT:
            s = *(char *const *)field;
            config_print_escaped(out, s ? s : "");
            fprintf(out, ":%d", *(const int *)config_at_const(cfg, row->aux_offset));
            break;
        case CONFIG_URL:
        case CONFIG_REDIS_URL:
            /* Credentials or a key in the query must not end up in a CI log or a ticket. */
            s = *(char *const *)field;
            url_redact(s ? s : "", url, sizeof(url));
            config_print_escaped(out, url);
            break;
        case CONFIG_TEXT:
        case CONFIG_KEY_FILE:
        case CONFIG_SECRET_PATH:
            s = *(char *const *)field;
            config_print_escaped(out, s ? s : "");
            break;
        }
        fputc('\n', out);
    }
    for (int t = 0; t < CONFIG_TARGETS; t++)
        for (size_t k = 0; k < CONFIG_POLICY_SETTINGS; k++) {
            char name[CONFIG_NAME_MAX_BYTES];
            struct config_row row;

            if (!config_policy_listed(t, k, &row, name))
                continue;
            fprintf(out, "%s=", name);
            config_print_number(out, row.kind, config_at_const(cfg, row.offset));
            fputc('\n', out);
        }
}
