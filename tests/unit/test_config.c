/*
 * test_config.c — unit tests for config.c: defaults, parsing of every kind of
 * value, range boundaries, garbage, exact error messages, the API key file,
 * secrets never leaking, and the --help / effective-config printouts. The
 * environment is a static table handed to config_load, never the real one.
 */
#include "agentd/config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct env_pair {
    const char *name;
    const char *value;
};

static const char *env_lookup(const char *name, void *ctx)
{
    for (const struct env_pair *p = ctx; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p->value;
    return NULL;
}

static const struct env_pair env_empty[] = {{NULL, NULL}};

/* Loads with a single variable set; the usual shape of a validation test. */
static int load_one(const char *name, const char *value, struct agentd_config *cfg, char *err,
                    size_t errlen)
{
    struct env_pair env[] = {{name, value}, {NULL, NULL}};
    return config_load(cfg, env_lookup, env, err, errlen);
}

static char *capture_effective(const struct agentd_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    config_print_effective(cfg, f);
    fclose(f);
    return buf;
}

static char *capture_help(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    config_print_help(f);
    fclose(f);
    return buf;
}

/* Writes `content` to a fresh temporary file; the caller unlinks `path`. */
static void write_temp_file(char *path, const char *content)
{
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static const char *all_names[] = {
    "AGENTD_LISTEN",
    "AGENTD_WORKERS",
    "AGENTD_MAX_INFLIGHT",
    "AGENTD_MAX_BODY_BYTES",
    "AGENTD_MAX_BUFFERED_BYTES",
    "AGENTD_RUNS_MAX_BYTES",
    "AGENTD_HEADER_TIMEOUT_MS",
    "AGENTD_MAX_CONNECTIONS_PER_IP",
    "AGENTD_STREAM_PING_MS",
    "AGENTD_STREAM_MAX_BUFFERED_BYTES",
    "AGENTD_AUTH_TOKENS",
    "AGENTD_AUTH_TOKENS_FILE",
    "AGENTD_IO_THREADS",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_API_KEY_FILE",
    "ANTHROPIC_BASE_URL",
    "AGENTD_MODEL",
    "AGENTD_MODEL_FALLBACKS",
    "AGENTD_PROMPT_CACHE",
    "AGENTD_MAX_TOKENS",
    "AGENTD_LLM_MAX_REQUEST_BYTES",
    "AGENTD_TEMPERATURE",
    "AGENTD_MAX_ITERATIONS",
    "AGENTD_SYSTEM_PROMPT",
    "AGENTD_LLM_TIMEOUT_MS",
    "AGENTD_TOOL_TIMEOUT_MS",
    "AGENTD_TOTAL_TIMEOUT_MS",
    "AGENTD_LLM_HTTP2",
    "AGENTD_LLM_CA_FILE",
    "AGENTD_UPSTREAM_MAX_CONNECTIONS",
    "AGENTD_UPSTREAM_CONNECT_RATE",
    "AGENTD_UPSTREAM_CONNECT_BURST",
    "AGENTD_NOTES_DIR",
    "AGENTD_NOTES_MAX_BYTES",
    "AGENTD_NOTES_MAX_FILES",
    "AGENTD_SEARCH_URL",
    "AGENTD_WEATHER_GEOCODING_URL",
    "AGENTD_WEATHER_FORECAST_URL",
    "AGENTD_CONVERSATIONS_MAX",
    "AGENTD_CONVERSATIONS_MAX_BYTES",
    "AGENTD_CONVERSATION_TTL_MS",
    "AGENTD_CONVERSATION_MAX_MESSAGES",
    "AGENTD_CONVERSATION_MAX_BYTES",
    "AGENTD_IDEMPOTENCY_MAX",
    "AGENTD_IDEMPOTENCY_MAX_BYTES",
    "AGENTD_IDEMPOTENCY_TTL_MS",
    "AGENTD_RUN_LEASE_MS",
    "AGENTD_RUN_CHECKPOINT_MAX_BYTES",
    "AGENTD_REDIS_URL",
    "AGENTD_REDIS_PASSWORD_FILE",
    "AGENTD_REDIS_TIMEOUT_MS",
    "AGENTD_REDIS_PREFIX",
    "AGENTD_RETRY_MAX",
    "AGENTD_RETRY_INITIAL_MS",
    "AGENTD_RETRY_MAX_DELAY_MS",
    "AGENTD_RETRY_AFTER_CAP_MS",
    "AGENTD_RETRY_BUDGET_RATIO",
    "AGENTD_RETRY_BUDGET_WINDOW_MS",
    "AGENTD_RETRY_BUDGET_MIN",
    "AGENTD_BREAKER_ENABLED",
    "AGENTD_BREAKER_FAILURES",
    "AGENTD_BREAKER_FAILURE_RATE",
    "AGENTD_BREAKER_WINDOW",
    "AGENTD_BREAKER_WINDOW_MS",
    "AGENTD_BREAKER_MIN_CALLS",
    "AGENTD_BREAKER_FIRST_OPEN_MS",
    "AGENTD_BREAKER_OPEN_MS",
    "AGENTD_BREAKER_HALF_OPEN_PROBES",
    "AGENTD_LLM_RATE",
    "AGENTD_LLM_BURST",
    "AGENTD_TOOL_RATE",
    "AGENTD_TOOL_BURST",
    "AGENTD_TOOL_CRITICALITY",
    "AGENTD_READY_INTERVAL_MS",
    "AGENTD_READY_TIMEOUT_MS",
    "AGENTD_READY_FAILURE_THRESHOLD",
    "AGENTD_NOTES_MIN_FREE_BYTES",
    "AGENTD_SHUTDOWN_DELAY_MS",
    "AGENTD_SHUTDOWN_GRACE_MS",
    "AGENTD_PRICE_INPUT_PER_MTOK",
    "AGENTD_PRICE_OUTPUT_PER_MTOK",
    "AGENTD_PRICE_CACHE_WRITE_PER_MTOK",
    "AGENTD_PRICE_CACHE_READ_PER_MTOK",
    "AGENTD_BUDGET_USD_PER_HOUR",
    "AGENTD_BUDGET_TOKENS_PER_HOUR",
    "AGENTD_MAX_RUN_TOKENS",
    "AGENTD_LOG_FORMAT",
    "AGENTD_LOG_LEVEL",
    "AGENTD_CONFIG_FILE",
    "AGENTD_OTLP_ENDPOINT",
    "AGENTD_OTLP_TIMEOUT_MS",
    "AGENTD_OTLP_QUEUE_SPANS",
    "AGENTD_OTLP_BATCH_SPANS",
    "AGENTD_OTLP_INTERVAL_MS",
    "AGENTD_OTLP_SERVICE_NAME",
};

#define ALL_NAMES (sizeof(all_names) / sizeof(all_names[0]))

/* The per-dependency lines of the effective printout, after the table's: every setting that
   applies and is not a row of its own. */
static const char *policy_names[] = {
    "AGENTD_LLM_RETRY_MAX",
    "AGENTD_LLM_RETRY_INITIAL_MS",
    "AGENTD_LLM_RETRY_MAX_DELAY_MS",
    "AGENTD_LLM_BREAKER_FAILURES",
    "AGENTD_LLM_BREAKER_OPEN_MS",
    "AGENTD_TOOL_SAVE_NOTE_TIMEOUT_MS",
    "AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS",
    "AGENTD_TOOL_WEB_SEARCH_RETRY_MAX",
    "AGENTD_TOOL_WEB_SEARCH_RETRY_INITIAL_MS",
    "AGENTD_TOOL_WEB_SEARCH_RETRY_MAX_DELAY_MS",
    "AGENTD_TOOL_WEB_SEARCH_BREAKER_FAILURES",
    "AGENTD_TOOL_WEB_SEARCH_BREAKER_OPEN_MS",
    "AGENTD_TOOL_WEB_SEARCH_RATE",
    "AGENTD_TOOL_WEB_SEARCH_BURST",
    "AGENTD_TOOL_GET_WEATHER_TIMEOUT_MS",
    "AGENTD_TOOL_GET_WEATHER_RETRY_MAX",
    "AGENTD_TOOL_GET_WEATHER_RETRY_INITIAL_MS",
    "AGENTD_TOOL_GET_WEATHER_RETRY_MAX_DELAY_MS",
    "AGENTD_TOOL_GET_WEATHER_BREAKER_FAILURES",
    "AGENTD_TOOL_GET_WEATHER_BREAKER_OPEN_MS",
    "AGENTD_TOOL_GET_WEATHER_RATE",
    "AGENTD_TOOL_GET_WEATHER_BURST",
};

#define POLICY_NAMES (sizeof(policy_names) / sizeof(policy_names[0]))

START_TEST(test_config_defaults_apply_when_nothing_is_set)
{
    struct agentd_config cfg;
    char err[256];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env_empty, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.listen_host, "0.0.0.0");
    ck_assert_int_eq(cfg.listen_port, 8080);
    ck_assert_int_eq(cfg.workers, cpus < 1 ? 1 : (cpus > 256 ? 256 : cpus));
    ck_assert_int_eq(cfg.max_inflight, 4096);
    ck_assert_uint_eq(cfg.max_body_bytes, 1048576);
    ck_assert_int_eq(cfg.io_threads, 2);
    ck_assert_ptr_null(cfg.api_key);
    ck_assert_ptr_null(cfg.api_key_file);
    ck_assert_str_eq(cfg.anthropic_base_url, "https://api.anthropic.com");
    ck_assert_str_eq(cfg.model, "claude-sonnet-4-20250514");
    ck_assert_int_eq(cfg.max_tokens, 4096);
    ck_assert_double_eq(cfg.temperature, 1.0);
    ck_assert_int_eq(cfg.max_iterations, 10);
    ck_assert_str_eq(
        cfg.system_prompt,
        "You are a helpful assistant. Use the tools when they help; answer concisely.");
    ck_assert_int_eq(cfg.llm_timeout_ms, 30000);
    ck_assert_int_eq(cfg.tool_timeout_ms, 10000);
    ck_assert_int_eq(cfg.total_timeout_ms, 120000);
    ck_assert_str_eq(cfg.notes_dir, "/var/lib/agentd/notes");
    ck_assert_uint_eq(cfg.notes_max_bytes, 1073741824);
    ck_assert_int_eq(cfg.notes_max_files, 100000);
    ck_assert_str_eq(cfg.search_url, "");
    ck_assert_str_eq(cfg.weather_geocoding_url, "https://geocoding-api.open-meteo.com");
    ck_assert_str_eq(cfg.weather_forecast_url, "https://api.open-meteo.com");
    ck_assert_int_eq(cfg.conversations_max, 10000);
    ck_assert_int_eq(cfg.conversation_ttl_ms, 3600000);
    ck_assert_int_eq(cfg.conversation_max_messages, 200);
    ck_assert_uint_eq(cfg.conversation_max_bytes, 1048576);
    ck_assert_uint_eq(cfg.conversations_max_bytes, 268435456);
    ck_assert_uint_eq(cfg.idempotency_max_bytes, 67108864);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_parses_a_value_of_every_kind)
{
    static const struct env_pair env[] = {
        {"AGENTD_LISTEN", "127.0.0.1:9000"},
        {"AGENTD_WORKERS", "3"},
        {"AGENTD_MAX_INFLIGHT", "12"},
        {"AGENTD_MAX_BODY_BYTES", "2048"},
        {"AGENTD_IO_THREADS", "4"},
        {"ANTHROPIC_API_KEY", "sk-ant-test-key"},
        {"ANTHROPIC_BASE_URL", "http://127.0.0.1:7000/"},
        {"AGENTD_MODEL", "claude-test"},
        {"AGENTD_MAX_TOKENS", "128000"},
        {"AGENTD_TEMPERATURE", "0.25"},
        {"AGENTD_MAX_ITERATIONS", "3"},
        {"AGENTD_SYSTEM_PROMPT", ""},
        {"AGENTD_LLM_TIMEOUT_MS", "1500"},
        {"AGENTD_TOOL_TIMEOUT_MS", "250"},
        {"AGENTD_TOTAL_TIMEOUT_MS", "3600000"},
        {"AGENTD_NOTES_DIR", "/tmp/notes"},
        {"AGENTD_NOTES_MAX_BYTES", "0"},
        {"AGENTD_NOTES_MAX_FILES", "7"},
        {"AGENTD_SEARCH_URL", "http://searx:8888"},
        {"AGENTD_WEATHER_GEOCODING_URL", "http://fake:1/geo//"},
        {"AGENTD_WEATHER_FORECAST_URL", "https://fake:2"},
        {"AGENTD_CONVERSATIONS_MAX", "0"},
        {"AGENTD_CONVERSATION_TTL_MS", "1000"},
        {"AGENTD_CONVERSATION_MAX_MESSAGES", "2"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256] = "";

    ck_assert_msg(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(cfg.listen_host, "127.0.0.1");
    ck_assert_int_eq(cfg.listen_port, 9000);
    ck_assert_int_eq(cfg.workers, 3);
    ck_assert_int_eq(cfg.max_inflight, 12);
    ck_assert_uint_eq(cfg.max_body_bytes, 2048);
    ck_assert_int_eq(cfg.io_threads, 4);
    ck_assert_str_eq(cfg.api_key, "sk-ant-test-key");
    ck_assert_str_eq(cfg.anthropic_base_url, "http://127.0.0.1:7000");
    ck_assert_str_eq(cfg.model, "claude-test");
    ck_assert_int_eq(cfg.max_tokens, 128000);
    ck_assert_double_eq(cfg.temperature, 0.25);
    ck_assert_int_eq(cfg.max_iterations, 3);
    ck_assert_str_eq(cfg.system_prompt, "");
    ck_assert_int_eq(cfg.llm_timeout_ms, 1500);
    ck_assert_int_eq(cfg.tool_timeout_ms, 250);
    ck_assert_int_eq(cfg.total_timeout_ms, 3600000);
    ck_assert_str_eq(cfg.notes_dir, "/tmp/notes");
    ck_assert_uint_eq(cfg.notes_max_bytes, 0);
    ck_assert_int_eq(cfg.notes_max_files, 7);
    ck_assert_str_eq(cfg.search_url, "http://searx:8888");
    ck_assert_str_eq(cfg.weather_geocoding_url, "http://fake:1/geo");
    ck_assert_str_eq(cfg.weather_forecast_url, "https://fake:2");
    ck_assert_int_eq(cfg.conversations_max, 0);
    ck_assert_int_eq(cfg.conversation_ttl_ms, 1000);
    ck_assert_int_eq(cfg.conversation_max_messages, 2);
    config_free(&cfg);
}
END_TEST

static const struct {
    const char *name;
    const char *value;
    int ok;
} boundary_cases[] = {
    {"AGENTD_LLM_TIMEOUT_MS", "100", 1},
    {"AGENTD_LLM_TIMEOUT_MS", "600000", 1},
    {"AGENTD_LLM_TIMEOUT_MS", "99", 0},
    {"AGENTD_LLM_TIMEOUT_MS", "600001", 0},
    {"AGENTD_MAX_BODY_BYTES", "1024", 1},
    {"AGENTD_MAX_BODY_BYTES", "67108864", 1},
    {"AGENTD_MAX_BODY_BYTES", "1023", 0},
    {"AGENTD_MAX_BODY_BYTES", "67108865", 0},
    {"AGENTD_WORKERS", "0", 1},
    {"AGENTD_WORKERS", "256", 1},
    {"AGENTD_WORKERS", "-1", 0},
    {"AGENTD_WORKERS", "257", 0},
    {"AGENTD_CONVERSATIONS_MAX", "0", 1},
    {"AGENTD_CONVERSATIONS_MAX", "1000000", 1},
    {"AGENTD_CONVERSATIONS_MAX", "-1", 0},
    {"AGENTD_CONVERSATIONS_MAX", "1000001", 0},
    {"AGENTD_CONVERSATION_MAX_MESSAGES", "2", 1},
    {"AGENTD_CONVERSATION_MAX_MESSAGES", "10000", 1},
    {"AGENTD_CONVERSATION_MAX_MESSAGES", "1", 0},
    {"AGENTD_CONVERSATION_MAX_MESSAGES", "10001", 0},
    {"AGENTD_CONVERSATION_TTL_MS", "1000", 1},
    {"AGENTD_CONVERSATION_TTL_MS", "604800000", 1},
    {"AGENTD_CONVERSATION_TTL_MS", "999", 0},
    {"AGENTD_CONVERSATION_TTL_MS", "604800001", 0},
    {"AGENTD_CONVERSATION_MAX_BYTES", "1024", 1},
    {"AGENTD_CONVERSATION_MAX_BYTES", "33554432", 1},
    {"AGENTD_CONVERSATION_MAX_BYTES", "1023", 0},
    {"AGENTD_CONVERSATION_MAX_BYTES", "33554433", 0},
    {"AGENTD_CONVERSATIONS_MAX_BYTES", "1024", 1},
    {"AGENTD_CONVERSATIONS_MAX_BYTES", "68719476736", 1},
    {"AGENTD_CONVERSATIONS_MAX_BYTES", "1023", 0},
    {"AGENTD_CONVERSATIONS_MAX_BYTES", "68719476737", 0},
    {"AGENTD_IDEMPOTENCY_MAX_BYTES", "65536", 1},
    {"AGENTD_IDEMPOTENCY_MAX_BYTES", "17179869184", 1},
    {"AGENTD_IDEMPOTENCY_MAX_BYTES", "65535", 0},
    {"AGENTD_IDEMPOTENCY_MAX_BYTES", "17179869185", 0},
    {"AGENTD_TEMPERATURE", "0.0", 1},
    {"AGENTD_TEMPERATURE", "1.0", 1},
    {"AGENTD_TEMPERATURE", "1", 1},
    {"AGENTD_TEMPERATURE", "-0.01", 0},
    {"AGENTD_TEMPERATURE", "1.01", 0},
    {"AGENTD_MAX_ITERATIONS", "1", 1},
    {"AGENTD_MAX_ITERATIONS", "100", 1},
    {"AGENTD_MAX_ITERATIONS", "0", 0},
    {"AGENTD_MAX_ITERATIONS", "101", 0},
    {"AGENTD_NOTES_MAX_BYTES", "0", 1},
    {"AGENTD_NOTES_MAX_BYTES", "1099511627776", 1},
    {"AGENTD_NOTES_MAX_BYTES", "-1", 0},
    {"AGENTD_NOTES_MAX_BYTES", "1099511627777", 0},
    {"AGENTD_NOTES_MAX_FILES", "0", 1},
    {"AGENTD_NOTES_MAX_FILES", "100000000", 1},
    {"AGENTD_NOTES_MAX_FILES", "-1", 0},
    {"AGENTD_NOTES_MAX_FILES", "100000001", 0},
};

START_TEST(test_config_accepts_range_ends_and_rejects_one_past_them)
{
    struct agentd_config cfg;
    char err[256] = "";
    int r = load_one(boundary_cases[_i].name, boundary_cases[_i].value, &cfg, err, sizeof(err));

    if (boundary_cases[_i].ok) {
        ck_assert_msg(r == 0, "%s=%s: %s", boundary_cases[_i].name, boundary_cases[_i].value, err);
        config_free(&cfg);
    } else {
        ck_assert_msg(r == -EINVAL, "%s=%s accepted", boundary_cases[_i].name,
                      boundary_cases[_i].value);
        ck_assert_ptr_nonnull(strstr(err, boundary_cases[_i].name));
    }
}
END_TEST

static const char *integer_garbage[] = {
    "abc", "12abc", "", " 5", "5 ", "+5", "0x10", "1e3", "99999999999999999999", "-", "1.5",
};

START_TEST(test_config_rejects_garbage_integers)
{
    static const char *names[] = {"AGENTD_LLM_TIMEOUT_MS", "AGENTD_MAX_BODY_BYTES",
                                  "AGENTD_WORKERS"};
    struct agentd_config cfg;

    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        char err[256] = "";
        ck_assert_msg(load_one(names[n], integer_garbage[_i], &cfg, err, sizeof(err)) == -EINVAL,
                      "%s='%s' accepted", names[n], integer_garbage[_i]);
        ck_assert_ptr_nonnull(strstr(err, names[n]));
        ck_assert_ptr_nonnull(strstr(err, "expected an integer"));
    }
}
END_TEST

static const char *double_garbage[] = {
    "abc", "", " 0.5", "0.5 ", "0.5x", "nan", "inf", "-inf", "1e999", ".", "--1",
};

START_TEST(test_config_rejects_garbage_numbers)
{
    struct agentd_config cfg;
    char err[256] = "";

    ck_assert_msg(load_one("AGENTD_TEMPERATURE", double_garbage[_i], &cfg, err, sizeof(err)) ==
                      -EINVAL,
                  "'%s' accepted", double_garbage[_i]);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_TEMPERATURE: expected a number 0.0..1.0"));
}
END_TEST

START_TEST(test_config_error_messages_have_the_documented_form)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(load_one("AGENTD_LLM_TIMEOUT_MS", "abc", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "AGENTD_LLM_TIMEOUT_MS: expected an integer 100..600000 (ms), got 'abc'");
    ck_assert_int_eq(load_one("AGENTD_TEMPERATURE", "2", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "AGENTD_TEMPERATURE: expected a number 0.0..1.0, got '2'");
    ck_assert_int_eq(load_one("ANTHROPIC_BASE_URL", "ftp://x", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "ANTHROPIC_BASE_URL: expected an http:// or https:// URL, got 'ftp://x'");
    ck_assert_int_eq(load_one("AGENTD_MAX_BODY_BYTES", "", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err,
                     "AGENTD_MAX_BODY_BYTES: expected an integer 1024..67108864 (bytes), got ''");
}
END_TEST

START_TEST(test_config_error_cuts_long_values_and_masks_control_bytes)
{
    struct agentd_config cfg;
    char value[201], err[512];
    char expect64[65];

    memset(value, '7', 200);
    value[200] = '\0';
    memset(expect64, '7', 64);
    expect64[64] = '\0';
    ck_assert_int_eq(load_one("AGENTD_WORKERS", value, &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, expect64));
    ck_assert_ptr_null(strstr(err, value + 135)); /* 65 sevens */
    ck_assert_ptr_nonnull(strstr(err, "...'"));

    ck_assert_int_eq(load_one("AGENTD_WORKERS", "1\n\x1b[2J", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_ptr_null(strchr(err, '\x1b'));
}
END_TEST

START_TEST(test_config_error_fits_a_small_buffer_and_tolerates_null)
{
    struct agentd_config cfg;
    char err[8];

    ck_assert_int_eq(load_one("AGENTD_WORKERS", "x", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "AGENTD_");
    ck_assert_int_eq(load_one("AGENTD_WORKERS", "x", &cfg, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_config_failure_leaves_the_output_untouched)
{
    static const struct env_pair env[] = {
        {"AGENTD_LISTEN", "127.0.0.1:1"}, /* parsed and allocated before the bad row */
        {"AGENTD_MODEL", "m"},
        {"AGENTD_CONVERSATION_MAX_MESSAGES", "1"},
        {NULL, NULL},
    };
    struct agentd_config cfg, before;
    char err[256];

    memset(&cfg, 0x5a, sizeof(cfg));
    memcpy(&before, &cfg, sizeof(cfg));
    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(memcmp(&cfg, &before, sizeof(cfg)), 0);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_CONVERSATION_MAX_MESSAGES"));
}
END_TEST

static const struct {
    const char *value;
    const char *host;
    int port;
} listen_cases[] = {
    {"0.0.0.0:8080", "0.0.0.0", 8080},
    {"localhost:0", "localhost", 0},
    {"agentd-1.svc.cluster.local:65535", "agentd-1.svc.cluster.local", 65535},
    {"[::]:8080", "::", 8080},
    {"[::1]:0", "::1", 0},
    {"[fd00::10.0.0.1]:80", "fd00::10.0.0.1", 80},
    {"[::1]", NULL, 0},
    {"[::1]8080", NULL, 0},
    {"[]:80", NULL, 0},
    {"[::g]:80", NULL, 0},
    {"[::1:80", NULL, 0},
    {"8080", NULL, 0},
    {":8080", NULL, 0},
    {"host:", NULL, 0},
    {"host:99999", NULL, 0},
    {"host:65536", NULL, 0},
    {"host:abc", NULL, 0},
    {"host:-1", NULL, 0},
    {"host:+80", NULL, 0},
    {"host: 80", NULL, 0},
    {"a b:80", NULL, 0},
    {"", NULL, 0},
};

START_TEST(test_config_listen_splits_host_and_port)
{
    struct agentd_config cfg;
    char err[256] = "";
    int r = load_one("AGENTD_LISTEN", listen_cases[_i].value, &cfg, err, sizeof(err));

    if (listen_cases[_i].host) {
        ck_assert_msg(r == 0, "'%s': %s", listen_cases[_i].value, err);
        ck_assert_str_eq(cfg.listen_host, listen_cases[_i].host);
        ck_assert_int_eq(cfg.listen_port, listen_cases[_i].port);
        config_free(&cfg);
    } else {
        ck_assert_msg(r == -EINVAL, "'%s' accepted", listen_cases[_i].value);
        ck_assert_ptr_nonnull(strstr(err, "AGENTD_LISTEN: expected host:port"));
    }
}
END_TEST

START_TEST(test_config_listen_host_length_is_bounded)
{
    struct agentd_config cfg;
    char value[300], err[256];

    memset(value, 'h', 255);
    strcpy(value + 255, ":80");
    ck_assert_int_eq(load_one("AGENTD_LISTEN", value, &cfg, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(cfg.listen_host), 255);
    config_free(&cfg);
    memset(value, 'h', 256);
    strcpy(value + 256, ":80");
    ck_assert_int_eq(load_one("AGENTD_LISTEN", value, &cfg, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_config_urls_need_a_scheme_and_a_host)
{
    static const char *bad[] = {"api.anthropic.com", "https://", "http:///x",  "HTTPS://x",
                                "https://a b",       "",         "https://x\n"};
    struct agentd_config cfg;
    char err[256], longurl[2100];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(load_one("ANTHROPIC_BASE_URL", bad[i], &cfg, err, sizeof(err)) == -EINVAL,
                      "'%s' accepted", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "ANTHROPIC_BASE_URL: expected an http:// or https://"));
    }
    strcpy(longurl, "https://");
    memset(longurl + 8, 'a', 2040);
    longurl[2048] = '\0';
    ck_assert_int_eq(load_one("ANTHROPIC_BASE_URL", longurl, &cfg, err, sizeof(err)), 0);
    config_free(&cfg);
    strcat(longurl, "a");
    ck_assert_int_eq(load_one("ANTHROPIC_BASE_URL", longurl, &cfg, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_config_search_url_may_be_empty_but_others_may_not)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(load_one("AGENTD_SEARCH_URL", "", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.search_url, "");
    config_free(&cfg);
    ck_assert_int_eq(load_one("AGENTD_SEARCH_URL", "searx", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(load_one("AGENTD_WEATHER_FORECAST_URL", "", &cfg, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_config_text_checks_length_and_utf8)
{
    struct agentd_config cfg;
    char err[256], model[258];

    memset(model, 'm', 256);
    model[256] = '\0';
    ck_assert_int_eq(load_one("AGENTD_MODEL", model, &cfg, err, sizeof(err)), 0);
    config_free(&cfg);
    model[256] = 'm';
    model[257] = '\0';
    ck_assert_int_eq(load_one("AGENTD_MODEL", model, &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_MODEL: expected 1..256 bytes, got 257 bytes"));
    ck_assert_int_eq(load_one("AGENTD_MODEL", "", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(load_one("AGENTD_NOTES_DIR", "", &cfg, err, sizeof(err)), -EINVAL);

    ck_assert_int_eq(
        load_one("AGENTD_SYSTEM_PROMPT", "Réponds en français. 日本", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.system_prompt, "Réponds en français. 日本");
    config_free(&cfg);
    ck_assert_int_eq(load_one("AGENTD_SYSTEM_PROMPT", "bad \xff byte", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_SYSTEM_PROMPT: expected valid UTF-8"));
    /* overlong '/' and a UTF-16 surrogate are not UTF-8 either */
    ck_assert_int_eq(load_one("AGENTD_SYSTEM_PROMPT", "\xc0\xaf", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(load_one("AGENTD_SYSTEM_PROMPT", "\xed\xa0\x80", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(load_one("AGENTD_SYSTEM_PROMPT", "cut \xe6\x97", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(load_one("AGENTD_SYSTEM_PROMPT", "\xf0\x82\x82\xac", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(load_one("AGENTD_SYSTEM_PROMPT", "\xf4\x90\x80\x80", &cfg, err, sizeof(err)),
                     -EINVAL);
}
END_TEST

START_TEST(test_config_key_file_content_is_read_and_stripped)
{
    char path[] = "/tmp/agentd_test_keyXXXXXX";
    struct agentd_config cfg;
    char err[256] = "";

    write_temp_file(path, "sk-ant-from-file \n\r\n");
    struct env_pair env[] = {{"ANTHROPIC_API_KEY_FILE", path}, {NULL, NULL}};
    int r = config_load(&cfg, env_lookup, env, err, sizeof(err));
    unlink(path);
    ck_assert_msg(r == 0, "%s", err);
    ck_assert_str_eq(cfg.api_key, "sk-ant-from-file");
    ck_assert_str_eq(cfg.api_key_file, path);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_missing_key_file_names_the_variable_and_reason)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(
        load_one("ANTHROPIC_API_KEY_FILE", "/nonexistent/agentd/key", &cfg, err, sizeof(err)),
        -EINVAL);
    ck_assert_str_eq(err, "ANTHROPIC_API_KEY_FILE: cannot read '/nonexistent/agentd/key': No such "
                          "file or directory");
    ck_assert_int_eq(load_one("ANTHROPIC_API_KEY_FILE", "/tmp", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "ANTHROPIC_API_KEY_FILE: '/tmp' is not a regular file");
}
END_TEST

START_TEST(test_config_oversized_key_file_is_rejected)
{
    char path[] = "/tmp/agentd_test_keyXXXXXX";
    char content[5000];
    struct agentd_config cfg;
    char err[256];

    memset(content, 'k', sizeof(content) - 1);
    content[sizeof(content) - 1] = '\0';
    write_temp_file(path, content);
    int r = load_one("ANTHROPIC_API_KEY_FILE", path, &cfg, err, sizeof(err));
    unlink(path);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "is larger than 4096 bytes"));
    ck_assert_ptr_null(strstr(err, "kkkk"));
}
END_TEST

START_TEST(test_config_key_and_key_file_together_are_rejected)
{
    static const struct env_pair env[] = {
        {"ANTHROPIC_API_KEY", "sk-ant-env"},
        {"ANTHROPIC_API_KEY_FILE", "/nonexistent/agentd/key"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "set only one of ANTHROPIC_API_KEY and ANTHROPIC_API_KEY_FILE");
}
END_TEST

START_TEST(test_config_tokens_and_tokens_file_together_are_rejected)
{
    static const struct env_pair env[] = {
        {"AGENTD_AUTH_TOKENS", "tok-SECRET-1"},
        {"AGENTD_AUTH_TOKENS_FILE", "/etc/agentd/tokens"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "set only one of AGENTD_AUTH_TOKENS and AGENTD_AUTH_TOKENS_FILE");
}
END_TEST

START_TEST(test_config_tokens_file_is_a_path_read_later)
{
    static const struct env_pair env[] = {
        {"AGENTD_AUTH_TOKENS", ""},
        {"AGENTD_AUTH_TOKENS_FILE", "/nonexistent/agentd/tokens"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256] = "", path[5000];
    char *out;

    /* The file is read by main (auth.h), so a missing one is not config_load's error. */
    ck_assert_msg(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_null(cfg.auth_tokens);
    ck_assert_str_eq(cfg.auth_tokens_file, "/nonexistent/agentd/tokens");
    out = capture_effective(&cfg);
    ck_assert_ptr_nonnull(strstr(out, "\nAGENTD_AUTH_TOKENS=(unset)\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nAGENTD_AUTH_TOKENS_FILE=/nonexistent/agentd/tokens\n"));
    free(out);
    config_free(&cfg);

    ck_assert_int_eq(load_one("AGENTD_AUTH_TOKENS_FILE", "", &cfg, err, sizeof(err)), 0);
    ck_assert_ptr_null(cfg.auth_tokens_file);
    config_free(&cfg);

    memset(path, 'p', 4097);
    path[4097] = '\0';
    ck_assert_int_eq(load_one("AGENTD_AUTH_TOKENS_FILE", path, &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(
        strstr(err, "AGENTD_AUTH_TOKENS_FILE: expected a path of 1..4096 bytes, got 4097 bytes"));
}
END_TEST

START_TEST(test_config_empty_key_counts_as_unset)
{
    static const struct env_pair env[] = {
        {"ANTHROPIC_API_KEY", ""},
        {"ANTHROPIC_API_KEY_FILE", ""},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256] = "";

    ck_assert_msg(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)) == 0, "%s", err);
    ck_assert_ptr_null(cfg.api_key);
    ck_assert_ptr_null(cfg.api_key_file);
    config_free(&cfg);
}
END_TEST

#define SECRET "sk-ant-TOPSECRET-4242"

START_TEST(test_config_secret_never_appears_in_errors)
{
    static const struct env_pair valid_key_other_error[] = {
        {"ANTHROPIC_API_KEY", SECRET},
        {"AGENTD_MAX_TOKENS", "0"},
        {NULL, NULL},
    };
    char path[] = "/tmp/agentd_test_keyXXXXXX";
    struct agentd_config cfg;
    char err[512];
    char big_key[600];

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)valid_key_other_error, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_null(strstr(err, "TOPSECRET"));

    ck_assert_int_eq(load_one("ANTHROPIC_API_KEY", SECRET " x", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "ANTHROPIC_API_KEY:"));
    ck_assert_ptr_null(strstr(err, "TOPSECRET"));

    memset(big_key, 'K', 513);
    big_key[513] = '\0';
    ck_assert_int_eq(load_one("ANTHROPIC_API_KEY", big_key, &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(strstr(err, "KKKK"));

    write_temp_file(path, SECRET " with space\n");
    int r = load_one("ANTHROPIC_API_KEY_FILE", path, &cfg, err, sizeof(err));
    unlink(path);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "ANTHROPIC_API_KEY_FILE"));
    ck_assert_ptr_null(strstr(err, "TOPSECRET"));
}
END_TEST

START_TEST(test_config_effective_output_hides_the_key)
{
    struct agentd_config cfg;
    char err[256];
    char *out;

    ck_assert_int_eq(load_one("ANTHROPIC_API_KEY", SECRET, &cfg, err, sizeof(err)), 0);
    out = capture_effective(&cfg);
    ck_assert_ptr_null(strstr(out, "TOPSECRET"));
    ck_assert_ptr_nonnull(strstr(out, "\nANTHROPIC_API_KEY=(set)\n"));
    free(out);
    config_free(&cfg);

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env_empty, err, sizeof(err)), 0);
    out = capture_effective(&cfg);
    ck_assert_ptr_nonnull(strstr(out, "\nANTHROPIC_API_KEY=(unset)\n"));
    free(out);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_effective_output_redacts_credentials_and_queries_in_urls)
{
    static const struct env_pair env[] = {
        {"ANTHROPIC_BASE_URL", "https://proxy-user:PASSWORD1@llm.example.com:8443/anthropic/"},
        {"AGENTD_SEARCH_URL", "http://searx:8888/base?token=QUERYTOKEN"},
        {"AGENTD_WEATHER_GEOCODING_URL", "https://geo.example.com/v1#FRAGMENT"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256];
    char *out;

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)), 0);
    /* The loaded values are the real ones; only the printout is redacted. */
    ck_assert_str_eq(cfg.anthropic_base_url,
                     "https://proxy-user:PASSWORD1@llm.example.com:8443/anthropic");
    out = capture_effective(&cfg);
    ck_assert_ptr_nonnull(
        strstr(out, "\nANTHROPIC_BASE_URL=https://***@llm.example.com:8443/anthropic\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nAGENTD_SEARCH_URL=http://searx:8888/base?***\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\nAGENTD_WEATHER_GEOCODING_URL=https://geo.example.com/v1#***\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\nAGENTD_WEATHER_FORECAST_URL=https://api.open-meteo.com\n"));
    ck_assert_ptr_null(strstr(out, "PASSWORD1"));
    ck_assert_ptr_null(strstr(out, "proxy-user"));
    ck_assert_ptr_null(strstr(out, "QUERYTOKEN"));
    ck_assert_ptr_null(strstr(out, "FRAGMENT"));
    free(out);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_bad_url_is_echoed_redacted)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(load_one("ANTHROPIC_BASE_URL", "https://u:PASSWORD2@host/a b?k=QUERY2", &cfg,
                              err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "ANTHROPIC_BASE_URL: expected an http:// or https:// URL, got "
                          "'https://***@host/a b?***'");
}
END_TEST

START_TEST(test_config_redis_url_is_checked_and_never_echoed_with_its_password)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(
        load_one("AGENTD_REDIS_URL", "redis://:PASS3@cache:6379/2", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.redis_url, "redis://:PASS3@cache:6379/2");
    ck_assert_int_eq(cfg.redis_timeout_ms, 50);
    ck_assert_str_eq(cfg.redis_prefix, "agentd:");
    config_free(&cfg);
    ck_assert_int_eq(load_one("AGENTD_REDIS_URL", "", &cfg, err, sizeof(err)), 0);
    ck_assert_str_eq(cfg.redis_url, "");
    config_free(&cfg);

    ck_assert_int_eq(
        load_one("AGENTD_REDIS_URL", "redis://:PASS4@cache:99999", &cfg, err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_null(strstr(err, "PASS4"));
    ck_assert_str_eq(err, "AGENTD_REDIS_URL: expected redis://[user:password@]host[:port][/db] "
                          "of at most 2048 bytes, got 'redis://***@cache:99999'");
    ck_assert_int_eq(
        load_one("AGENTD_REDIS_URL", "rediss://:PASS5@cache:6380", &cfg, err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_null(strstr(err, "PASS5"));
    ck_assert_ptr_nonnull(strstr(err, "rediss:// (TLS) is not supported"));
}
END_TEST

START_TEST(test_config_redis_password_file_is_read_printed_as_a_path_and_freed)
{
    char path[] = "/tmp/agentd_test_redisXXXXXX";
    struct agentd_config cfg;
    char err[256] = "";

    write_temp_file(path, "redis-pass-6\n");
    struct env_pair env[] = {
        {"AGENTD_REDIS_URL", "redis://cache"}, {"AGENTD_REDIS_PASSWORD_FILE", path}, {NULL, NULL}};
    int r = config_load(&cfg, env_lookup, env, err, sizeof(err));
    ck_assert_msg(r == 0, "%s", err);
    ck_assert_str_eq(cfg.redis_password, "redis-pass-6");
    ck_assert_str_eq(cfg.redis_password_file, path);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_print_effective(&cfg, f);
    fclose(f);
    ck_assert_ptr_null(strstr(out, "redis-pass-6"));
    free(out);
    config_free(&cfg);
    ck_assert_ptr_null(cfg.redis_password);

    /* A file holding nothing usable is refused without showing it. */
    FILE *w = fopen(path, "w");
    ck_assert_ptr_nonnull(w);
    fputs(" \n", w);
    fclose(w);
    r = config_load(&cfg, env_lookup, env, err, sizeof(err));
    unlink(path);
    ck_assert_int_eq(r, -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_REDIS_PASSWORD_FILE: the key in"));
}
END_TEST

START_TEST(test_config_effective_output_is_one_line_per_variable)
{
    static const struct env_pair env[] = {
        {"AGENTD_SYSTEM_PROMPT", "line one\nline two\ttab"},
        {"AGENTD_TEMPERATURE", "0.5"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256];
    char *out, *line, *save = NULL;
    size_t lines = 0;

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)), 0);
    out = capture_effective(&cfg);
    ck_assert_ptr_nonnull(strstr(out, "AGENTD_LISTEN=0.0.0.0:8080\n"));
    ck_assert_ptr_nonnull(strstr(out, "AGENTD_SYSTEM_PROMPT=line one\\nline two\\ttab\n"));
    ck_assert_ptr_nonnull(strstr(out, "AGENTD_TEMPERATURE=0.5\n"));
    ck_assert_ptr_nonnull(strstr(out, "AGENTD_LLM_TIMEOUT_MS=30000\n"));
    ck_assert_ptr_nonnull(strstr(out, "AGENTD_SEARCH_URL=\n"));
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *name = lines < ALL_NAMES ? all_names[lines] : policy_names[lines - ALL_NAMES];
        ck_assert_uint_lt(lines, ALL_NAMES + POLICY_NAMES);
        ck_assert_msg(strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == '=',
                      "line %zu: %s", lines, line);
        lines++;
    }
    ck_assert_uint_eq(lines, ALL_NAMES + POLICY_NAMES);
    free(out);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_help_lists_every_variable_within_100_columns)
{
    char *help = capture_help();
    char *line, *save = NULL;

    ck_assert_ptr_nonnull(strstr(help, "agentd [--help|--version|--check-config [FILE]]"));
    /* The per-dependency names as two patterns, not every combination. */
    ck_assert_ptr_nonnull(strstr(help, "  AGENTD_TOOL_<TOOL>_<SETTING> "));
    ck_assert_ptr_nonnull(strstr(help, "  AGENTD_LLM_<SETTING> "));
    ck_assert_ptr_null(strstr(help, "AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS"));
    ck_assert_ptr_nonnull(strstr(help, "(reloads live)"));
    ck_assert_ptr_nonnull(strstr(help, "--check-config "));
    for (size_t i = 0; i < ALL_NAMES; i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "  %s ", all_names[i]);
        ck_assert_msg(strstr(help, needle), "%s missing from help", all_names[i]);
    }
    ck_assert_ptr_nonnull(strstr(help, "100..600000 ms"));
    ck_assert_ptr_nonnull(strstr(help, "0.0..1.0"));
    for (line = strtok_r(help, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        ck_assert_msg(strlen(line) <= 100, "too wide: %s", line);
    free(help);
}
END_TEST

START_TEST(test_config_free_accepts_null_and_repeats)
{
    struct agentd_config cfg;
    char err[256];

    config_free(NULL);
    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env_empty, err, sizeof(err)), 0);
    config_free(&cfg);
    ck_assert_ptr_null(cfg.model);
    config_free(&cfg);
}
END_TEST

/* ---- per-dependency policies ---------------------------------------------------------- */

START_TEST(test_config_tool_policy_overrides_one_tool_and_keeps_the_globals_for_others)
{
    /* The example: web_search 500 ms and no retries, get_weather 10 s and 3 retries. */
    static const struct env_pair env[] = {
        {"AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS", "500"},
        {"AGENTD_TOOL_WEB_SEARCH_RETRY_MAX", "0"},
        {"AGENTD_TOOL_GET_WEATHER_RATE", "2.5"},
        {"AGENTD_LLM_RETRY_MAX", "1"},
        {"AGENTD_TOOL_RATE", "7"},
        {NULL, NULL},
    };
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(config_load(&cfg, env_lookup, (void *)env, err, sizeof(err)), 0);
    const struct config_policy *ws = &cfg.policy[CONFIG_TARGET_WEB_SEARCH];
    const struct config_policy *gw = &cfg.policy[CONFIG_TARGET_GET_WEATHER];
    const struct config_policy *llm = &cfg.policy[CONFIG_TARGET_LLM];
    ck_assert_int_eq(ws->timeout_ms, 500);
    ck_assert_int_eq(ws->retry_max, 0);
    ck_assert_double_eq(ws->rate, 7.0); /* the global AGENTD_TOOL_RATE */
    ck_assert_int_eq(gw->timeout_ms, 10000);
    ck_assert_int_eq(gw->retry_max, 3);
    ck_assert_double_eq(gw->rate, 2.5);
    ck_assert_int_eq(cfg.policy[CONFIG_TARGET_SAVE_NOTE].timeout_ms, 10000);
    /* The LLM takes AGENTD_LLM_TIMEOUT_MS / _RATE, and its own retry override. */
    ck_assert_int_eq(llm->timeout_ms, 30000);
    ck_assert_double_eq(llm->rate, 50.0);
    ck_assert_int_eq(llm->retry_max, 1);
    ck_assert_int_eq(cfg.retry_max, 3);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_tool_policy_bad_value_names_the_setting_range_and_value)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(load_one("AGENTD_TOOL_GET_WEATHER_TIMEOUT_MS", "5", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err,
                     "AGENTD_TOOL_GET_WEATHER_TIMEOUT_MS: expected an integer 100..600000 (ms), "
                     "got '5'");
    ck_assert_int_eq(load_one("AGENTD_LLM_RETRY_MAX", "many", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "AGENTD_LLM_RETRY_MAX: expected an integer 0..20 (retries), got 'many'");
    ck_assert_int_eq(load_one("AGENTD_TOOL_WEB_SEARCH_BURST", "0", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "AGENTD_TOOL_WEB_SEARCH_BURST: expected a number 1.0..1e+06, got '0'");
}
END_TEST

START_TEST(test_config_tool_policy_that_cannot_apply_is_refused)
{
    struct agentd_config cfg;
    char err[256];

    ck_assert_int_eq(load_one("AGENTD_TOOL_CALCULATOR_TIMEOUT_MS", "1000", &cfg, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_TOOL_CALCULATOR_TIMEOUT_MS: calculator runs"));
    ck_assert_int_eq(load_one("AGENTD_TOOL_SAVE_NOTE_RATE", "3", &cfg, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "AGENTD_TOOL_SAVE_NOTE_RATE: save_note makes no upstream call; only "
                          "AGENTD_TOOL_SAVE_NOTE_TIMEOUT_MS applies to it");
    ck_assert_int_eq(load_one("AGENTD_TOOL_SAVE_NOTE_TIMEOUT_MS", "2000", &cfg, err, sizeof(err)),
                     0);
    ck_assert_int_eq(cfg.policy[CONFIG_TARGET_SAVE_NOTE].timeout_ms, 2000);
    config_free(&cfg);
}
END_TEST

START_TEST(test_config_unknown_name_names_the_closest_setting)
{
    char msg[256];

    ck_assert(config_name_known("AGENTD_LLM_TIMEOUT_MS"));
    ck_assert(config_name_known("AGENTD_TOOL_GET_WEATHER_BREAKER_OPEN_MS"));
    ck_assert(config_name_known("AGENTD_LLM_RETRY_MAX"));
    ck_assert(!config_name_known("AGENTD_LLM_TIMEOUT"));
    ck_assert(!config_name_known("AGENTD_TOOL_WEBSEARCH_TIMEOUT_MS"));
    config_unknown_message("AGENTD_LLM_TIMEOUT", msg, sizeof(msg));
    ck_assert_str_eq(msg,
                     "AGENTD_LLM_TIMEOUT: unknown setting; did you mean AGENTD_LLM_TIMEOUT_MS?");
    config_unknown_message("AGENTD_TOOL_WEBSEARCH_TIMEOUT_MS", msg, sizeof(msg));
    ck_assert_str_eq(msg, "AGENTD_TOOL_WEBSEARCH_TIMEOUT_MS: unknown setting; did you mean "
                          "AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS?");
    config_unknown_message("agentd_workers", msg, sizeof(msg));
    ck_assert_str_eq(msg, "agentd_workers: unknown setting; did you mean AGENTD_WORKERS?");
    /* Kubernetes service links are not settings. */
    ck_assert(config_env_ignored("AGENTD_SERVICE_HOST"));
    ck_assert(config_env_ignored("AGENTD_SERVICE_PORT_HTTP"));
    ck_assert(config_env_ignored("AGENTD_PORT"));
    ck_assert(config_env_ignored("AGENTD_PORT_8080_TCP_ADDR"));
    ck_assert(!config_env_ignored("AGENTD_LLM_TIMEOUT"));
}
END_TEST

/* ---- the config file ---------------------------------------------------------------------- */

START_TEST(test_config_file_parses_names_values_comments_and_blanks)
{
    static const char text[] = "# policy\n"
                               "\n"
                               "  AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS = 500  \r\n"
                               "AGENTD_SYSTEM_PROMPT=a = b # not a comment\n"
                               "AGENTD_LOG_LEVEL=debug";
    struct config_file *f = NULL;
    char err[256];

    ck_assert_int_eq(config_file_parse("f", text, strlen(text), &f, err, sizeof(err)), 0);
    ck_assert_uint_eq(config_file_count(f), 3);
    ck_assert_str_eq(config_file_name(f, 0), "AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS");
    ck_assert_str_eq(config_file_get(f, "AGENTD_TOOL_WEB_SEARCH_TIMEOUT_MS"), "500");
    ck_assert_str_eq(config_file_get(f, "AGENTD_SYSTEM_PROMPT"), "a = b # not a comment");
    ck_assert_str_eq(config_file_get(f, "AGENTD_LOG_LEVEL"), "debug");
    ck_assert_ptr_null(config_file_get(f, "AGENTD_WORKERS"));
    f = config_file_free(f);
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_config_file_errors_name_the_line)
{
    struct config_file *f = NULL;
    char err[256];

    ck_assert_int_eq(config_file_parse("f", "A=1\nnonsense\n", 12, &f, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "f: line 2: expected NAME=value");
    ck_assert_int_eq(config_file_parse("f", "agentd_x=1\n", 11, &f, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "f: line 1: expected a setting name of 1..63 characters [A-Z0-9_], got "
                          "'agentd_x'");
    ck_assert_int_eq(config_file_parse("f", "A=1\n# c\nA=2\n", 12, &f, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "f: line 3: A is set twice");
    ck_assert_int_eq(config_file_parse("f", "A=1\0B=2", 7, &f, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(test_config_file_is_read_and_the_environment_wins)
{
    static const struct env_pair env[] = {{"AGENTD_TOOL_RATE", "9"}, {NULL, NULL}};
    char path[] = "/tmp/agentd-config-XXXXXX", err[256];
    struct config_file *f = NULL;
    struct agentd_config cfg;

    write_temp_file(path, "AGENTD_TOOL_RATE=3\nAGENTD_TOOL_GET_WEATHER_RETRY_MAX=0\n");
    ck_assert_int_eq(config_file_read(path, &f, err, sizeof(err)), 0);
    unlink(path);
    struct config_source src = {.env = env_lookup, .env_ctx = (void *)env, .file = f};
    ck_assert_int_eq(config_load(&cfg, config_source_lookup, &src, err, sizeof(err)), 0);
    ck_assert_double_eq(cfg.tool_rate, 9.0);
    ck_assert_int_eq(cfg.policy[CONFIG_TARGET_GET_WEATHER].retry_max, 0);
    config_free(&cfg);
    config_file_free(f);
    ck_assert_int_eq(config_file_read("/nonexistent/agentd.env", &f, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "AGENTD_CONFIG_FILE: cannot read '/nonexistent/agentd.env'"));
}
END_TEST

struct diff_seen {
    char names[512];
};

static void diff_collect(const char *name, bool live, void *arg)
{
    struct diff_seen *d = arg;
    size_t used = strlen(d->names);
    snprintf(d->names + used, sizeof(d->names) - used, "%s%s=%s", used ? " " : "", name,
             live ? "live" : "restart");
}

START_TEST(test_config_diff_tells_live_settings_from_restart_ones)
{
    static const struct env_pair a_env[] = {{NULL, NULL}};
    static const struct env_pair b_env[] = {
        {"AGENTD_WORKERS", "3"},
        {"AGENTD_TOOL_WEB_SEARCH_RATE", "1"},
        {"AGENTD_LOG_LEVEL", "debug"},
        {NULL, NULL},
    };
    struct agentd_config a, b;
    struct diff_seen seen = {""};
    char err[256];

    ck_assert_int_eq(config_load(&a, env_lookup, (void *)a_env, err, sizeof(err)), 0);
    ck_assert_int_eq(config_load(&b, env_lookup, (void *)b_env, err, sizeof(err)), 0);
    ck_assert_uint_eq(config_diff(&a, &a, diff_collect, &seen), 0);
    a.workers = 2; /* resolved from the CPUs otherwise */
    ck_assert_uint_eq(config_diff(&a, &b, diff_collect, &seen), 3);
    ck_assert_str_eq(seen.names, "AGENTD_WORKERS=restart AGENTD_LOG_LEVEL=live "
                                 "AGENTD_TOOL_WEB_SEARCH_RATE=live");
    config_free(&a);
    config_free(&b);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_config_defaults_apply_when_nothing_is_set);
    tcase_add_test(tc, test_config_parses_a_value_of_every_kind);
    tcase_add_loop_test(tc, test_config_accepts_range_ends_and_rejects_one_past_them, 0,
                        sizeof(boundary_cases) / sizeof(boundary_cases[0]));
    tcase_add_loop_test(tc, test_config_rejects_garbage_integers, 0,
                        sizeof(integer_garbage) / sizeof(integer_garbage[0]));
    tcase_add_loop_test(tc, test_config_rejects_garbage_numbers, 0,
                        sizeof(double_garbage) / sizeof(double_garbage[0]));
    tcase_add_test(tc, test_config_error_messages_have_the_documented_form);
    tcase_add_test(tc, test_config_error_cuts_long_values_and_masks_control_bytes);
    tcase_add_test(tc, test_config_error_fits_a_small_buffer_and_tolerates_null);
    tcase_add_test(tc, test_config_failure_leaves_the_output_untouched);
    tcase_add_loop_test(tc, test_config_listen_splits_host_and_port, 0,
                        sizeof(listen_cases) / sizeof(listen_cases[0]));
    tcase_add_test(tc, test_config_listen_host_length_is_bounded);
    tcase_add_test(tc, test_config_urls_need_a_scheme_and_a_host);
    tcase_add_test(tc, test_config_search_url_may_be_empty_but_others_may_not);
    tcase_add_test(tc, test_config_text_checks_length_and_utf8);
    tcase_add_test(tc, test_config_key_file_content_is_read_and_stripped);
    tcase_add_test(tc, test_config_missing_key_file_names_the_variable_and_reason);
    tcase_add_test(tc, test_config_oversized_key_file_is_rejected);
    tcase_add_test(tc, test_config_key_and_key_file_together_are_rejected);
    tcase_add_test(tc, test_config_tokens_and_tokens_file_together_are_rejected);
    tcase_add_test(tc, test_config_tokens_file_is_a_path_read_later);
    tcase_add_test(tc, test_config_empty_key_counts_as_unset);
    tcase_add_test(tc, test_config_secret_never_appears_in_errors);
    tcase_add_test(tc, test_config_effective_output_hides_the_key);
    tcase_add_test(tc, test_config_effective_output_redacts_credentials_and_queries_in_urls);
    tcase_add_test(tc, test_config_bad_url_is_echoed_redacted);
    tcase_add_test(tc, test_config_redis_url_is_checked_and_never_echoed_with_its_password);
    tcase_add_test(tc, test_config_redis_password_file_is_read_printed_as_a_path_and_freed);
    tcase_add_test(tc, test_config_effective_output_is_one_line_per_variable);
    tcase_add_test(tc, test_config_help_lists_every_variable_within_100_columns);
    tcase_add_test(tc, test_config_free_accepts_null_and_repeats);
    tcase_add_test(tc, test_config_tool_policy_overrides_one_tool_and_keeps_the_globals_for_others);
    tcase_add_test(tc, test_config_tool_policy_bad_value_names_the_setting_range_and_value);
    tcase_add_test(tc, test_config_tool_policy_that_cannot_apply_is_refused);
    tcase_add_test(tc, test_config_unknown_name_names_the_closest_setting);
    tcase_add_test(tc, test_config_file_parses_names_values_comments_and_blanks);
    tcase_add_test(tc, test_config_file_errors_name_the_line);
    tcase_add_test(tc, test_config_file_is_read_and_the_environment_wins);
    tcase_add_test(tc, test_config_diff_tells_live_settings_from_restart_ones);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
