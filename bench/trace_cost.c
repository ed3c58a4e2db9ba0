/*
 * trace_cost.c — what tracing costs per span: recording a chat span the way
 * src/engine/run_trace.c does (new span, its GenAI attributes, one attempt
 * event, end) and encoding a batch of them as OTLP/HTTP JSON (trace_encode,
 * the exporter thread's work), with the bytes per span.
 *
 * Output (key=value, times in microseconds per span, each the median of
 * --rounds rounds of one batch):
 *   record_us  trace_span_new + 16 attributes + 1 event + trace_span_end
 *   encode_us  trace_encode of the batch, divided by its spans
 *   bytes      JSON bytes per span
 *
 * Usage: bench_trace_cost [--batch N] [--rounds N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/trace.h"
#include "bench_common.h"

static struct trace_span *chat_span(const struct trace_context *ctx)
{
    static const char *const keys[] = {"agentd.attempt", "http.response.status_code",
                                       "agentd.duration_ms"};
    const int64_t values[] = {1, 200, 412};
    struct trace_span *s =
        trace_span_new(ctx, true, "chat claude-sonnet-4-20250514", TRACE_KIND_CLIENT, 1);
    if (!s)
        return NULL;
    trace_span_set_str(s, "agentd.request_id", "req_0123456789abcdef01234567");
    trace_span_set_str(s, "gen_ai.operation.name", "chat");
    trace_span_set_str(s, "gen_ai.provider.name", "anthropic");
    trace_span_set_str(s, "gen_ai.request.model", "claude-sonnet-4-20250514");
    trace_span_set_int(s, "agentd.retry.count", 0);
    trace_span_set_int(s, "http.response.status_code", 200);
    trace_span_set_str(s, "agentd.breaker.state", "closed");
    trace_span_set_str(s, "gen_ai.response.model", "claude-sonnet-4-20250514");
    trace_span_set_str(s, "gen_ai.response.id", "msg_01XFDUDYJgAACzvnptvVoYEL");
    trace_span_set_str_array1(s, "gen_ai.response.finish_reasons", "end_turn");
    trace_span_set_int(s, "gen_ai.usage.input_tokens", 525);
    trace_span_set_int(s, "gen_ai.usage.output_tokens", 54);
    trace_span_set_int(s, "gen_ai.usage.cache_read.input_tokens", 0);
    trace_span_set_int(s, "gen_ai.usage.cache_creation.input_tokens", 0);
    trace_span_add_event(s, "agentd.attempt", 2, keys, values, 3, "agentd.error", NULL);
    trace_span_end(s, 3);
    return s;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long batch = 512, rounds = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if ((strcmp(argv[i], "--batch") == 0 && bench_parse_long(argv[i + 1], 1, 100000, &batch)) ||
            (strcmp(argv[i], "--rounds") == 0 && bench_parse_long(argv[i + 1], 1, 10000, &rounds)))
            continue;
        fprintf(stderr, "usage: bench_trace_cost [--batch N] [--rounds N]\n");
        return 2;
    }
    struct trace_context ctx;
    trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx);
    struct trace_span **spans = calloc((size_t)batch, sizeof(*spans));
    int64_t *rec = calloc((size_t)rounds, sizeof(*rec)),
            *enc = calloc((size_t)rounds, sizeof(*enc));
    size_t bytes = 0;
    if (!spans || !rec || !enc)
        return 2;
    for (long r = 0; r < rounds; r++) {
        int64_t t0 = bench_now_ns();
        for (long i = 0; i < batch; i++)
            if (!(spans[i] = chat_span(&ctx)))
                return 2;
        int64_t t1 = bench_now_ns();
        char *body = trace_encode(spans, (size_t)batch, "agentd", "0.1.0", &bytes);
        int64_t t2 = bench_now_ns();
        if (!body)
            return 2;
        free(body);
        for (long i = 0; i < batch; i++)
            spans[i] = trace_span_free(spans[i]);
        rec[r] = t1 - t0;
        enc[r] = t2 - t1;
    }
    qsort(rec, (size_t)rounds, sizeof(*rec), cmp_i64);
    qsort(enc, (size_t)rounds, sizeof(*enc), cmp_i64);
    printf("batch=%ld rounds=%ld record_us=%.2f encode_us=%.2f bytes=%.0f\n", batch, rounds,
           (double)rec[rounds / 2] / 1e3 / (double)batch,
           (double)enc[rounds / 2] / 1e3 / (double)batch, (double)bytes / (double)batch);
    free(spans);
    free(rec);
    free(enc);
    return 0;
}
