/*
 * metrics.c — the process-wide Prometheus registry (see metrics.h).
 *
 * Every series is a slot in a fixed array indexed by enum values, so an
 * update is one relaxed atomic operation and the set of series can never
 * grow. Durations and money are accumulated as integers (nanoseconds,
 * nano-USD): integer fetch_add is lock-free everywhere and exact, where a
 * floating-point sum would need a compare-and-swap loop under contention.
 * They are printed as exact decimals.
 */
#include "agentd/metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ULL

/* ---- label value tables (index = enum value); the shared enums are named by vocab.h ---- */

static const char *const route_names[METRICS_ROUTE__COUNT] = {
    "agent", "health_live", "health_ready", "metrics", "other",
};
static const char *const method_names[METRICS_METHOD__COUNT] = {"GET", "POST", "HEAD", "other"};
static const char *const run_outcome_names[METRICS_RUN__COUNT] = {
    "ok",
    "upstream_error",
    "upstream_unavailable",
    "tool_unavailable",
    "rate_limited",
    "budget_exceeded",
    "deadline_exceeded",
    "shutting_down",
    "internal_error",
    "client_closed",
    "history_too_large",
    "replayed",
    "refused",
};
static const char *const attempt_names[METRICS_ATTEMPT__COUNT] = {"success", "http_error",
                                                                  "timeout", "connection_error"};
static const char *const retry_reason_names[METRICS_RETRY__COUNT] = {
    "http_429", "http_5xx", "timeout", "connection_error", "malformed"};
static const char *const budget_kind_names[METRICS_BUDGET__COUNT] = {"usd", "tokens"};
static const char *const direction_names[] = {"input", "output"};
static const char *const redis_result_names[METRICS_REDIS__COUNT] = {"ok", "error", "timeout",
                                                                     "disconnected"};
static const char *const redis_mode_names[] = {"off", "shared", "degraded"};
static const char *const durable_names[METRICS_DURABLE__COUNT] = {"checkpoint", "resumed",
                                                                  "too_large", "unavailable"};

/* Status codes with a label of their own; the rest fold into a class. */
static const int exact_codes[] = {200, 400, 401, 403, 404, 405, 408, 409, 413,
                                  415, 422, 429, 500, 502, 503, 504, 529};
#define N_EXACT   (sizeof(exact_codes) / sizeof(exact_codes[0]))
#define N_CODES   (N_EXACT + 5 + 2) /* exact, 1xx..5xx, "other", "none" */
#define CODE_NONE (N_CODES - 1)
#define CODE_ANY  (N_CODES - 2)

static const char *const exact_code_names[N_EXACT] = {"200", "400", "401", "403", "404", "405",
                                                      "408", "409", "413", "415", "422", "429",
                                                      "500", "502", "503", "504", "529"};
static const char *const class_names[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

static const char *const bucket_le[METRICS_N_BUCKETS] = {METRICS_DURATION_BUCKETS};
static const uint64_t bucket_ns[METRICS_N_BUCKETS] = {
    1000000,      5000000,       10000000,      25000000,      50000000,
    100000000,    250000000,     500000000,     1 * NS_PER_S,  2500000000ULL,
    5 * NS_PER_S, 10 * NS_PER_S, 30 * NS_PER_S, 60 * NS_PER_S, 120 * NS_PER_S,
};

/* The OpenTelemetry GenAI conventions' advisory boundaries (14 each). */
#define GEN_AI_N_BUCKETS 14
static const char *const gen_ai_duration_le[GEN_AI_N_BUCKETS] = {
    "0.01", "0.02", "0.04", "0.08",  "0.16",  "0.32",  "0.64",
    "1.28", "2.56", "5.12", "10.24", "20.48", "40.96", "81.92"};
static const uint64_t gen_ai_duration_ns[GEN_AI_N_BUCKETS] = {
    10000000,       20000000,       40000000,       80000000,      160000000,
    320000000,      640000000,      1280000000,     2560000000ULL, 5120000000ULL,
    10240000000ULL, 20480000000ULL, 40960000000ULL, 81920000000ULL};
static const char *const gen_ai_tokens_le[GEN_AI_N_BUCKETS] = {
    "1",     "4",     "16",     "64",      "256",     "1024",     "4096",
    "16384", "65536", "262144", "1048576", "4194304", "16777216", "67108864"};
static const uint64_t gen_ai_tokens_bound[GEN_AI_N_BUCKETS] = {
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};
static const char *const gen_ai_error_names[METRICS_GEN_AI__COUNT] = {
    NULL, "permanent_error", "retries_exhausted", "circuit_open", "rate_limited", "deadline"};

_Static_assert(sizeof(bucket_le) / sizeof(bucket_le[0]) == METRICS_N_BUCKETS,
               "METRICS_DURATION_BUCKETS has METRICS_N_BUCKETS entries");

/* ---- the registry ---- */

typedef atomic_uint_fast64_t counter_t;

/* Non-cumulative: each observation lands in one slot (the last one is +Inf only). */
struct histogram {
    counter_t slot[METRICS_N_BUCKETS + 1];
    counter_t sum_ns;
};

/* Non-cumulative as well, on a family's own GEN_AI_N_BUCKETS boundaries. */
struct gen_ai_histogram {
    counter_t slot[GEN_AI_N_BUCKETS + 1];
    counter_t sum;
};

static struct registry {
    counter_t http_requests[METRICS_ROUTE__COUNT][METRICS_METHOD__COUNT][N_CODES];
    struct histogram http_duration[METRICS_ROUTE__COUNT];
    atomic_int_fast64_t runs_in_flight;
    counter_t runs[METRICS_RUN__COUNT];
    counter_t llm_attempts[METRICS_ATTEMPT__COUNT][N_CODES];
    counter_t retries[DEP__COUNT][METRICS_RETRY__COUNT];
    counter_t retry_budget_exhausted[DEP__COUNT];
    atomic_int breaker_state[DEP__COUNT];
    counter_t breaker_transitions[DEP__COUNT][BREAKER_STATE_COUNT];
    struct histogram limiter_wait[DEP__COUNT];
    counter_t limiter_refusals[DEP__COUNT][AGENT_PRIORITY_COUNT];
    counter_t tool_calls[TOOL__COUNT][TOOL_RESULT_KIND_COUNT];
    struct histogram tool_duration[TOOL__COUNT];
    counter_t degraded_tool_results[TOOL__COUNT];
    counter_t llm_tokens[2];
    struct gen_ai_histogram gen_ai_tokens[2];                       /* sum in tokens */
    struct gen_ai_histogram gen_ai_duration[METRICS_GEN_AI__COUNT]; /* sum in ns */
    counter_t llm_cost_nano_usd;
    counter_t llm_cache_tokens[2];                /* write, read */
    counter_t model_calls[METRICS_MODELS_MAX][2]; /* ok, error */
    counter_t fallbacks[METRICS_MODELS_MAX][METRICS_FALLBACK__COUNT];
    atomic_int model_breaker_state[METRICS_MODELS_MAX];
    int n_models; /* written by metrics_set_models() only, before other threads exist */
    char models[METRICS_MODELS_MAX][METRICS_MODEL_NAME_MAX + 1];
    atomic_int budget_exhausted[METRICS_BUDGET__COUNT];
    counter_t budget_limit_nano[METRICS_BUDGET__COUNT]; /* per hour, in 1e-9 of the unit */
    counter_t budget_transitions[METRICS_BUDGET__COUNT];
    atomic_int ready;
    counter_t redis_commands[METRICS_REDIS__COUNT];
    struct histogram redis_duration;
    counter_t redis_reconnects;
    counter_t config_reloads[2]; /* [0] applied, [1] invalid */
    atomic_int redis_mode;
    atomic_int redis_replicas;
    counter_t durable[METRICS_DURABLE__COUNT];
    counter_t trace_exported;
    counter_t trace_dropped[METRICS_TRACE__COUNT];
    /* written by metrics_init() only, before other threads exist */
    uint64_t start_time_ns;
    char version[64];
} reg;

#define INC(c)    atomic_fetch_add_explicit(&(c), 1, memory_order_relaxed)
#define ADD(c, n) atomic_fetch_add_explicit(&(c), (n), memory_order_relaxed)
#define GET(c)    atomic_load_explicit(&(c), memory_order_relaxed)
#define SET(c, v) atomic_store_explicit(&(c), (v), memory_order_relaxed)

void metrics_init(const char *version)
{
    struct timespec ts;

    /* The registry is plain atomics: zero bytes are a valid zero state. */
    memset(&reg, 0, sizeof(reg));
    snprintf(reg.version, sizeof(reg.version), "%s", version ? version : "unknown");
    clock_gettime(CLOCK_REALTIME, &ts);
    reg.start_time_ns = (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- label helpers ---- */

const char *metrics_run_outcome_name(enum metrics_run_outcome outcome)
{
    return (unsigned)outcome < METRICS_RUN__COUNT ? run_outcome_names[outcome] : "internal_error";
}

enum metrics_method metrics_method_from_string(const char *method)
{
    for (int i = 0; method && i < METRICS_METHOD_OTHER; i++)
        if (strcmp(method, method_names[i]) == 0)
            return (enum metrics_method)i;
    return METRICS_METHOD_OTHER;
}

static size_t code_index(int status)
{
    if (status == 0)
        return CODE_NONE;
    for (size_t i = 0; i < N_EXACT; i++)
        if (exact_codes[i] == status)
            return i;
    if (status >= 100 && status <= 599)
        return N_EXACT + (size_t)(status / 100 - 1);
    return CODE_ANY;
}

static const char *code_name(size_t index)
{
    if (index < N_EXACT)
        return exact_code_names[index];
    if (index < N_EXACT + 5)
        return class_names[index - N_EXACT];
    return index == CODE_NONE ? "none" : "other";
}

const char *metrics_status_label(int status)
{
    return code_name(code_index(status));
}

/* Enum arguments come from callers' switch statements; a stray value must not write out of
 * bounds, so each family clamps (to its "other" value) or drops it. */
static bool in_range(int v, int n)
{
    return v >= 0 && v < n;
}

/* ---- updates ---- */

static uint64_t seconds_to_ns(double seconds)
{
    if (!(seconds > 0)) /* also NaN */
        return 0;
    if (seconds > 1e9) /* ~31 years: keeps the conversion defined */
        seconds = 1e9;
    return (uint64_t)llround(seconds * (double)NS_PER_S);
}

static void observe(struct histogram *h, double seconds)
{
    uint64_t ns = seconds_to_ns(seconds);
    size_t i = 0;

    while (i < METRICS_N_BUCKETS && ns > bucket_ns[i])
        i++;
    INC(h->slot[i]);
    ADD(h->sum_ns, ns);
}

void metrics_http_request(enum metrics_route route, enum metrics_method method, int status,
                          double seconds)
{
    if (!in_range((int)route, METRICS_ROUTE__COUNT))
        route = METRICS_ROUTE_OTHER;
    if (!in_range((int)method, METRICS_METHOD__COUNT))
        method = METRICS_METHOD_OTHER;
    INC(reg.http_requests[route][method][code_index(status)]);
    observe(&reg.http_duration[route], seconds);
}

void metrics_run_started(void)
{
    INC(reg.runs_in_flight);
}

void metrics_run_finished(enum metrics_run_outcome outcome)
{
    atomic_fetch_sub_explicit(&reg.runs_in_flight, 1, memory_order_relaxed);
    if (!in_range((int)outcome, METRICS_RUN__COUNT))
        outcome = METRICS_RUN_INTERNAL_ERROR;
    INC(reg.runs[outcome]);
}

void metrics_llm_attempt(enum metrics_attempt_outcome outcome, int http_status)
{
    if (in_range((int)outcome, METRICS_ATTEMPT__COUNT))
        INC(reg.llm_attempts[outcome][code_index(http_status)]);
}

void metrics_retry(enum dep_id dep, enum metrics_retry_reason reason)
{
    if (in_range((int)dep, DEP__COUNT) && in_range((int)reason, METRICS_RETRY__COUNT))
        INC(reg.retries[dep][reason]);
}

void metrics_retry_budget_exhausted(enum dep_id dep)
{
    if (in_range((int)dep, DEP__COUNT))
        INC(reg.retry_budget_exhausted[dep]);
}

void metrics_breaker_state(enum dep_id dep, enum breaker_state state)
{
    if (in_range((int)dep, DEP__COUNT) && in_range((int)state, BREAKER_STATE_COUNT))
        SET(reg.breaker_state[dep], (int)state);
}

void metrics_breaker_transition(enum dep_id dep, enum breaker_state to)
{
    if (!in_range((int)dep, DEP__COUNT) || !in_range((int)to, BREAKER_STATE_COUNT))
        return;
    INC(reg.breaker_transitions[dep][to]);
    SET(reg.breaker_state[dep], (int)to);
}

void metrics_limiter_wait(enum dep_id dep, double seconds)
{
    if (in_range((int)dep, DEP__COUNT))
        observe(&reg.limiter_wait[dep], seconds);
}

void metrics_limiter_refusal(enum dep_id dep, enum agent_priority priority)
{
    if (in_range((int)dep, DEP__COUNT) && in_range((int)priority, AGENT_PRIORITY_COUNT))
        INC(reg.limiter_refusals[dep][priority]);
}

void metrics_tool_call(enum tool_id tool, enum tool_result_kind outcome, double seconds)
{
    if (!in_range((int)tool, TOOL__COUNT) || !in_range((int)outcome, TOOL_RESULT_KIND_COUNT))
        return;
    INC(reg.tool_calls[tool][outcome]);
    observe(&reg.tool_duration[tool], seconds);
}

void metrics_degraded_tool_result(enum tool_id tool)
{
    if (in_range((int)tool, TOOL__COUNT))
        INC(reg.degraded_tool_results[tool]);
}

static void observe_gen_ai(struct gen_ai_histogram *h, const uint64_t *bounds, uint64_t v)
{
    size_t i = 0;

    while (i < GEN_AI_N_BUCKETS && v > bounds[i])
        i++;
    INC(h->slot[i]);
    ADD(h->sum, v);
}

void metrics_llm_tokens(int64_t input_tokens, int64_t output_tokens)
{
    int64_t v[2] = {input_tokens, output_tokens};

    for (int d = 0; d < 2; d++) {
        if (v[d] < 0)
            continue;
        ADD(reg.llm_tokens[d], (uint64_t)v[d]);
        observe_gen_ai(&reg.gen_ai_tokens[d], gen_ai_tokens_bound, (uint64_t)v[d]);
    }
}

void metrics_gen_ai_operation(enum metrics_gen_ai_outcome outcome, double seconds)
{
    if (in_range((int)outcome, METRICS_GEN_AI__COUNT))
        observe_gen_ai(&reg.gen_ai_duration[outcome], gen_ai_duration_ns, seconds_to_ns(seconds));
}

void metrics_llm_cost_usd(double usd)
{
    if (usd > 0 && usd < 1e9) /* also rejects NaN; 1e9 USD keeps the nano count in range */
        ADD(reg.llm_cost_nano_usd, (uint64_t)llround(usd * 1e9));
}

void metrics_budget_transition(enum metrics_budget_kind kind, bool exhausted)
{
    if (!in_range((int)kind, METRICS_BUDGET__COUNT))
        return;
    SET(reg.budget_exhausted[kind], exhausted ? 1 : 0);
    INC(reg.budget_transitions[kind]);
}

void metrics_budget_limits(double usd_per_hour, int64_t tokens_per_hour)
{
    /* 1e9 USD (or tokens) per hour keeps the nano count in range. */
    double v[METRICS_BUDGET__COUNT] = {usd_per_hour, (double)tokens_per_hour};
    for (int k = 0; k < METRICS_BUDGET__COUNT; k++)
        SET(reg.budget_limit_nano[k],
            v[k] > 0 ? (uint64_t)llround((v[k] < 1e9 ? v[k] : 1e9) * 1e9) : 0);
}

void metrics_set_ready(bool ready)
{
    SET(reg.ready, ready ? 1 : 0);
}

/* ---- rendering ---- */

struct label {
    const char *name, *value;
};

/* Label value escaping of the text format: backslash, double quote and newline. */
static void put_label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            fputs("\\\\", f);
        else if (*v == '"')
            fputs("\\\"", f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void put_series(FILE *f, const char *name, const char *suffix, const struct label *l,
                       size_t n, const struct label *extra)
{
    fputs(name, f);
    fputs(suffix, f);
    if (n == 0 && !extra)
        return;
    fputc('{', f);
    for (size_t i = 0; i < n + (extra ? 1 : 0); i++) {
        const struct label *li = i < n ? &l[i] : extra;
        fprintf(f, "%s%s=\"", i ? "," : "", li->name);
        put_label_value(f, li->value);
        fputc('"', f);
    }
    fputc('}', f);
}

/* An exact decimal of v / 1e9 without trailing zeros: 1500000000 -> "1.5". */
static void put_nanos(FILE *f, uint64_t v)
{
    char frac[16];
    int len = snprintf(frac, sizeof(frac), "%09llu", (unsigned long long)(v % NS_PER_S));

    while (len > 0 && frac[len - 1] == '0')
        frac[--len] = '\0';
    fprintf(f, "%llu%s%s", (unsigned long long)(v / NS_PER_S), len ? "." : "", frac);
}

static void put_u64(FILE *f, const char *name, const struct label *l, size_t n, uint64_t v)
{
    put_series(f, name, "", l, n, NULL);
    fprintf(f, " %llu\n", (unsigned long long)v);
}

static void put_i64(FILE *f, const char *name, const struct label *l, size_t n, int64_t v)
{
    put_series(f, name, "", l, n, NULL);
    fprintf(f, " %lld\n", (long long)v);
}

static void put_header(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Cumulative buckets, _sum and _count of one series of a histogram kept in nb + 1
   non-cumulative slots (the last one +Inf); sum_nanos: the sum is in nanoseconds. */
static void put_buckets(FILE *f, const char *name, const struct label *l, size_t n, counter_t *slot,
                        size_t nb, const char *const *le_names, uint64_t sum, bool sum_nanos)
{
    uint64_t cumulative = 0;

    for (size_t i = 0; i <= nb; i++) {
        struct label le = {"le", i < nb ? le_names[i] : "+Inf"};
        cumulative += GET(slot[i]);
        put_series(f, name, "_bucket", l, n, &le);
        fprintf(f, " %llu\n", (unsigned long long)cumulative);
    }
    put_series(f, name, "_sum", l, n, NULL);
    fputc(' ', f);
    if (sum_nanos)
        put_nanos(f, sum);
    else
        fprintf(f, "%llu", (unsigned long long)sum);
    fputc('\n', f);
    put_series(f, name, "_count", l, n, NULL);
    fprintf(f, " %llu\n", (unsigned long long)cumulative);
}

static void put_histogram(FILE *f, const char *name, const struct label *l, size_t n,
                          struct histogram *h)
{
    put_buckets(f, name, l, n, h->slot, METRICS_N_BUCKETS, bucket_le, GET(h->sum_ns), true);
}

static void render_gen_ai(FILE *f)
{
    const char *name = "gen_ai_client_token_usage";

    put_header(f, name, "histogram",
               "OpenTelemetry gen_ai.client.token.usage: tokens of one LLM answer, by type.");
    for (int d = 0; d < 2; d++) {
        struct label l[] = {{"gen_ai_operation_name", "chat"},
                            {"gen_ai_provider_name", "anthropic"},
                            {"gen_ai_token_type", direction_names[d]}};
        struct gen_ai_histogram *h = &reg.gen_ai_tokens[d];
        put_buckets(f, name, l, 3, h->slot, GEN_AI_N_BUCKETS, gen_ai_tokens_le, GET(h->sum), false);
    }
    name = "gen_ai_client_operation_duration_seconds";
    put_header(f, name, "histogram",
               "OpenTelemetry gen_ai.client.operation.duration: one LLM call, retries included.");
    for (int o = 0; o < METRICS_GEN_AI__COUNT; o++) {
        struct label l[] = {{"gen_ai_operation_name", "chat"},
                            {"gen_ai_provider_name", "anthropic"},
                            {"error_type", gen_ai_error_names[o]}};
        struct gen_ai_histogram *h = &reg.gen_ai_duration[o];
        put_buckets(f, name, l, gen_ai_error_names[o] ? 3 : 2, h->slot, GEN_AI_N_BUCKETS,
                    gen_ai_duration_le, GET(h->sum), true);
    }
}

static void render_http(FILE *f)
{
    const char *name = "agentd_http_requests_total";

    put_header(f, name, "counter", "HTTP requests answered, by route, method and status code.");
    for (int r = 0; r < METRICS_ROUTE__COUNT; r++)
        for (int m = 0; m < METRICS_METHOD__COUNT; m++)
            for (size_t c = 0; c < N_CODES; c++) {
                uint64_t v = GET(reg.http_requests[r][m][c]);
                struct label l[] = {
                    {"route", route_names[r]}, {"method", method_names[m]}, {"code", code_name(c)}};
                if (v)
                    put_u64(f, name, l, 3, v);
            }
    name = "agentd_http_request_duration_seconds";
    put_header(f, name, "histogram", "Time from request start to response queued, by route.");
    for (int r = 0; r < METRICS_ROUTE__COUNT; r++)
        put_histogram(f, name, &(struct label){"route", route_names[r]}, 1, &reg.http_duration[r]);
}

static void render_runs(FILE *f)
{
    const char *name = "agentd_runs_in_flight";

    put_header(f, name, "gauge", "Agent runs admitted and not yet answered.");
    put_i64(f, name, NULL, 0, GET(reg.runs_in_flight));
    name = "agentd_runs_total";
    put_header(f, name, "counter", "Agent runs finished, by outcome (ok or the API error type).");
    for (int o = 0; o < METRICS_RUN__COUNT; o++)
        put_u64(f, name, &(struct label){"outcome", run_outcome_names[o]}, 1, GET(reg.runs[o]));
}

static void render_llm_calls(FILE *f)
{
    const char *name = "agentd_llm_attempts_total";

    put_header(f, name, "counter", "LLM API attempts, by outcome and HTTP status code.");
    for (int o = 0; o < METRICS_ATTEMPT__COUNT; o++)
        for (size_t c = 0; c < N_CODES; c++) {
            uint64_t v = GET(reg.llm_attempts[o][c]);
            struct label l[] = {{"outcome", attempt_names[o]}, {"code", code_name(c)}};
            if (v)
                put_u64(f, name, l, 2, v);
        }
    name = "agentd_retries_total";
    put_header(f, name, "counter",
               "Retries scheduled for outbound calls, by dependency and reason.");
    for (int d = 0; d < DEP__COUNT; d++)
        for (int r = 0; r < METRICS_RETRY__COUNT; r++) {
            struct label l[] = {{"dependency", dep_name((enum dep_id)d)},
                                {"reason", retry_reason_names[r]}};
            put_u64(f, name, l, 2, GET(reg.retries[d][r]));
        }
    name = "agentd_retry_budget_exhausted_total";
    put_header(f, name, "counter",
               "Retries refused because the dependency's retry budget was spent.");
    for (int d = 0; d < DEP__COUNT; d++)
        put_u64(f, name, &(struct label){"dependency", dep_name((enum dep_id)d)}, 1,
                GET(reg.retry_budget_exhausted[d]));
}

static void render_breakers_limiters(FILE *f)
{
    const char *name = "agentd_breaker_state";

    put_header(f, name, "gauge", "Circuit breaker state: 0 closed, 1 half-open, 2 open.");
    for (int d = 0; d < DEP__COUNT; d++)
        put_i64(f, name, &(struct label){"dependency", dep_name((enum dep_id)d)}, 1,
                GET(reg.breaker_state[d]));
    name = "agentd_breaker_transitions_total";
    put_header(f, name, "counter", "Circuit breaker state changes, by dependency and new state.");
    for (int d = 0; d < DEP__COUNT; d++)
        for (int s = 0; s < BREAKER_STATE_COUNT; s++) {
            struct label l[] = {{"dependency", dep_name((enum dep_id)d)},
                                {"to", breaker_state_name((enum breaker_state)s)}};
            put_u64(f, name, l, 2, GET(reg.breaker_transitions[d][s]));
        }
    name = "agentd_limiter_wait_seconds";
    put_header(f, name, "histogram", "Time outbound calls waited for a rate-limiter token.");
    for (int d = 0; d < DEP__COUNT; d++)
        put_histogram(f, name, &(struct label){"dependency", dep_name((enum dep_id)d)}, 1,
                      &reg.limiter_wait[d]);
    name = "agentd_limiter_refusals_total";
    put_header(f, name, "counter",
               "Calls refused by a rate limiter (no token in time), by dependency and priority.");
    for (int d = 0; d < DEP__COUNT; d++)
        for (int p = 0; p < AGENT_PRIORITY_COUNT; p++) {
            struct label l[] = {{"dependency", dep_name((enum dep_id)d)},
                                {"priority", agent_priority_name((enum agent_priority)p)}};
            put_u64(f, name, l, 2, GET(reg.limiter_refusals[d][p]));
        }
}

static void render_tools(FILE *f)
{
    const char *name = "agentd_tool_calls_total";

    put_header(f, name, "counter", "Tool calls finished, by tool and outcome.");
    for (int t = 0; t < TOOL__COUNT; t++)
        for (int o = 0; o < TOOL_RESULT_KIND_COUNT; o++) {
            struct label l[] = {{"tool", tool_name((enum tool_id)t)},
                                {"outcome", tool_result_kind_name((enum tool_result_kind)o)}};
            put_u64(f, name, l, 2, GET(reg.tool_calls[t][o]));
        }
    name = "agentd_tool_duration_seconds";
    put_header(f, name, "histogram", "Tool call duration, by tool.");
    for (int t = 0; t < TOOL__COUNT; t++)
        put_histogram(f, name, &(struct label){"tool", tool_name((enum tool_id)t)}, 1,
                      &reg.tool_duration[t]);
    name = "agentd_degraded_tool_results_total";
    put_header(f, name, "counter",
               "System failures of optional tools reported to the model as unavailable.");
    for (int t = 0; t < TOOL__COUNT; t++)
        put_u64(f, name, &(struct label){"tool", tool_name((enum tool_id)t)}, 1,
                GET(reg.degraded_tool_results[t]));
}

static const char *const cache_kind_names[2] = {"write", "read"};
static const char *const fallback_reason_names[METRICS_FALLBACK__COUNT] = {
    "overloaded", "unavailable", "rate_limited", "circuit_open"};

void metrics_llm_cache_tokens(int64_t write_tokens, int64_t read_tokens)
{
    if (write_tokens > 0)
        ADD(reg.llm_cache_tokens[0], (uint64_t)write_tokens);
    if (read_tokens > 0)
        ADD(reg.llm_cache_tokens[1], (uint64_t)read_tokens);
}

void metrics_set_models(const char *const *names, int n)
{
    reg.n_models = 0;
    for (int i = 0; i < n && i < METRICS_MODELS_MAX; i++) {
        snprintf(reg.models[i], sizeof(reg.models[i]), "%s", names[i]);
        reg.n_models = i + 1;
    }
}

void metrics_llm_model_call(int model, bool ok)
{
    if (in_range(model, reg.n_models))
        INC(reg.model_calls[model][ok ? 0 : 1]);
}

void metrics_llm_fallback(int model, enum metrics_fallback_reason reason)
{
    if (in_range(model, reg.n_models) && in_range((int)reason, METRICS_FALLBACK__COUNT))
        INC(reg.fallbacks[model][reason]);
}

void metrics_llm_model_breaker_state(int model, enum breaker_state state)
{
    if (in_range(model, reg.n_models))
        SET(reg.model_breaker_state[model], (int)state);
}

static void render_models(FILE *f)
{
    const char *name = "agentd_llm_model_calls_total";
    put_header(f, name, "counter", "LLM calls ended, by model of the fallback chain and outcome.");
    for (int m = 0; m < reg.n_models; m++)
        for (int o = 0; o < 2; o++) {
            struct label l[] = {{"model", reg.models[m]}, {"outcome", o == 0 ? "ok" : "error"}};
            put_u64(f, name, l, 2, GET(reg.model_calls[m][o]));
        }
    name = "agentd_llm_fallbacks_total";
    put_header(f, name, "counter", "Runs that moved away from a model, by that model and reason.");
    for (int m = 0; m < reg.n_models; m++)
        for (int r = 0; r < METRICS_FALLBACK__COUNT; r++) {
            struct label l[] = {{"model", reg.models[m]}, {"reason", fallback_reason_names[r]}};
            put_u64(f, name, l, 2, GET(reg.fallbacks[m][r]));
        }
    name = "agentd_llm_model_breaker_state";
    put_header(f, name, "gauge", "Circuit breaker state per model: 0 closed, 1 half-open, 2 open.");
    for (int m = 0; m < reg.n_models; m++)
        put_i64(f, name, &(struct label){"model", reg.models[m]}, 1,
                GET(reg.model_breaker_state[m]));
    name = "agentd_llm_cache_tokens_total";
    put_header(f, name, "counter", "Input tokens written to and read from the prompt cache.");
    for (int k = 0; k < 2; k++)
        put_u64(f, name, &(struct label){"kind", cache_kind_names[k]}, 1,
                GET(reg.llm_cache_tokens[k]));
}

static void render_spend(FILE *f)
{
    const char *name = "agentd_llm_tokens_total";

    put_header(f, name, "counter", "Tokens reported by the LLM API, by direction.");
    for (int d = 0; d < 2; d++)
        put_u64(f, name, &(struct label){"direction", direction_names[d]}, 1,
                GET(reg.llm_tokens[d]));
    name = "agentd_llm_cost_usd_total";
    put_header(f, name, "counter", "Estimated LLM spend in US dollars at the configured prices.");
    fprintf(f, "%s ", name);
    put_nanos(f, GET(reg.llm_cost_nano_usd));
    fputc('\n', f);
    name = "agentd_budget_exhausted";
    put_header(f, name, "gauge", "1 while the hourly budget of this kind is spent, else 0.");
    for (int k = 0; k < METRICS_BUDGET__COUNT; k++)
        put_i64(f, name, &(struct label){"kind", budget_kind_names[k]}, 1,
                GET(reg.budget_exhausted[k]));
    name = "agentd_budget_limit_per_hour";
    put_header(f, name, "gauge",
               "The configured budget per sliding hour (US dollars or tokens), 0 when off.");
    for (int k = 0; k < METRICS_BUDGET__COUNT; k++) {
        put_series(f, name, "", &(struct label){"kind", budget_kind_names[k]}, 1, NULL);
        fputc(' ', f);
        put_nanos(f, GET(reg.budget_limit_nano[k]));
        fputc('\n', f);
    }
    name = "agentd_budget_transitions_total";
    put_header(f, name, "counter", "Hourly budget changes between spent and available, by kind.");
    for (int k = 0; k < METRICS_BUDGET__COUNT; k++)
        put_u64(f, name, &(struct label){"kind", budget_kind_names[k]}, 1,
                GET(reg.budget_transitions[k]));
}

void metrics_redis_command(enum metrics_redis_result result, double seconds)
{
    if (!in_range((int)result, METRICS_REDIS__COUNT))
        return;
    INC(reg.redis_commands[result]);
    if (result == METRICS_REDIS_OK || result == METRICS_REDIS_ERROR)
        observe(&reg.redis_duration, seconds);
}

void metrics_durable(enum metrics_durable event)
{
    if (in_range((int)event, METRICS_DURABLE__COUNT))
        INC(reg.durable[event]);
}

void metrics_config_reload(bool applied)
{
    INC(reg.config_reloads[applied ? 0 : 1]);
}

void metrics_redis_reconnect(void)
{
    INC(reg.redis_reconnects);
}

void metrics_redis_mode(int mode, int replicas)
{
    SET(reg.redis_mode, in_range(mode, 3) ? mode : 0);
    SET(reg.redis_replicas, replicas);
}

static void render_redis(FILE *f)
{
    const char *name = "agentd_redis_mode";

    put_header(f, name, "gauge",
               "1 for the shared-state mode in effect: off (no Redis), shared, or degraded (some "
               "worker falls back to local state).");
    for (int m = 0; m < 3; m++)
        put_i64(f, name, &(struct label){"mode", redis_mode_names[m]}, 1, GET(reg.redis_mode) == m);
    name = "agentd_redis_replicas";
    put_header(f, name, "gauge", "Replicas alive in the Redis registry at its last beat.");
    fprintf(f, "%s %d\n", name, (int)GET(reg.redis_replicas));
    name = "agentd_redis_commands_total";
    put_header(f, name, "counter", "Redis commands, by how they ended.");
    for (int r = 0; r < METRICS_REDIS__COUNT; r++)
        put_u64(f, name, &(struct label){"result", redis_result_names[r]}, 1,
                GET(reg.redis_commands[r]));
    name = "agentd_redis_command_duration_seconds";
    put_header(f, name, "histogram", "Round trip of answered Redis commands.");
    put_histogram(f, name, NULL, 0, &reg.redis_duration);
    name = "agentd_durable_runs_total";
    put_header(
        f, name, "counter",
        "Durable runs: checkpoints sent, runs resumed, runs that went non-durable (too_large, "
        "unavailable).");
    for (int e = 0; e < METRICS_DURABLE__COUNT; e++)
        put_u64(f, name, &(struct label){"event", durable_names[e]}, 1, GET(reg.durable[e]));
    name = "agentd_redis_reconnects_total";
    put_header(f, name, "counter", "Redis connections (re)established.");
    fprintf(f, "%s %llu\n", name, (unsigned long long)GET(reg.redis_reconnects));
    name = "agentd_config_reloads_total";
    put_header(f, name, "counter",
               "Reloads of AGENTD_CONFIG_FILE: applied, or invalid (the running configuration "
               "kept).");
    put_u64(f, name, &(struct label){"result", "applied"}, 1, GET(reg.config_reloads[0]));
    put_u64(f, name, &(struct label){"result", "invalid"}, 1, GET(reg.config_reloads[1]));
}

void metrics_trace_spans_exported(uint64_t n)
{
    ADD(reg.trace_exported, n);
}

void metrics_trace_spans_dropped(enum metrics_trace_drop reason, uint64_t n)
{
    if (in_range((int)reason, METRICS_TRACE__COUNT))
        ADD(reg.trace_dropped[reason], n);
}

static const char *const trace_drop_names[METRICS_TRACE__COUNT] = {"queue_full", "export_failed",
                                                                   "breaker_open"};

static void render_trace(FILE *f)
{
    const char *name = "agentd_trace_spans_exported_total";

    put_header(f, name, "counter", "Spans the OTLP collector accepted.");
    fprintf(f, "%s %llu\n", name, (unsigned long long)GET(reg.trace_exported));
    name = "agentd_trace_spans_dropped_total";
    put_header(f, name, "counter",
               "Spans never exported: queue full, export failed, or the exporter's circuit open.");
    for (int r = 0; r < METRICS_TRACE__COUNT; r++)
        put_u64(f, name, &(struct label){"reason", trace_drop_names[r]}, 1,
                GET(reg.trace_dropped[r]));
}

/* Resident set size from /proc/self/statm (second field, in pages); -1 when unreadable. */
static int64_t resident_bytes(void)
{
    FILE *statm = fopen("/proc/self/statm", "re");
    unsigned long long size, resident;
    int n;

    if (!statm)
        return -1;
    n = fscanf(statm, "%llu %llu", &size, &resident);
    fclose(statm);
    return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

/* Entries of /proc/self/fd, minus the descriptor the listing itself holds; -1 when unreadable. */
static int64_t open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    int64_t n = 0;
    struct dirent *e;

    if (!dir)
        return -1;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n > 0 ? n - 1 : 0;
}

static void render_process(FILE *f)
{
    const char *name = "agentd_ready";
    int64_t rss = resident_bytes(), fds = open_fds();

    put_header(f, name, "gauge", "1 when the readiness checks pass, else 0.");
    put_i64(f, name, NULL, 0, GET(reg.ready));
    name = "agentd_process_resident_memory_bytes";
    put_header(f, name, "gauge", "Resident memory size in bytes.");
    if (rss >= 0)
        put_i64(f, name, NULL, 0, rss);
    name = "agentd_process_open_fds";
    put_header(f, name, "gauge", "Open file descriptors.");
    if (fds >= 0)
        put_i64(f, name, NULL, 0, fds);
    name = "agentd_process_start_time_seconds";
    put_header(f, name, "gauge", "Start time of the process since the Unix epoch in seconds.");
    fprintf(f, "%s ", name);
    put_nanos(f, reg.start_time_ns);
    fputc('\n', f);
    name = "agentd_build_info";
    put_header(f, name, "gauge", "Always 1; the version label names the running build.");
    put_u64(f, name, &(struct label){"version", reg.version}, 1, 1);
}

char *metrics_render(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    bool failed;

    if (!f)
        return NULL;
    render_http(f);
    render_runs(f);
    render_llm_calls(f);
    render_breakers_limiters(f);
    render_tools(f);
    render_spend(f);
    render_models(f);
    render_gen_ai(f);
    render_redis(f);
    render_trace(f);
    render_process(f);
    failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}
