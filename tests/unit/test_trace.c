/*
 * test_trace.c — W3C traceparent parsing and formatting, spans and their
 * bounds, the OTLP/HTTP JSON encoding, and the exporter queue's drop and
 * batching policy on a fake clock.
 */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/trace.h"

#define TP_VALID "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

START_TEST(test_trace_parse_valid_traceparent)
{
    struct trace_context ctx;
    ck_assert_int_eq(trace_parse_traceparent(TP_VALID, &ctx), 0);
    char hex[33];
    trace_hex(ctx.trace_id, TRACE_ID_BYTES, hex);
    ck_assert_str_eq(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
    trace_hex(ctx.span_id, TRACE_SPAN_ID_BYTES, hex);
    ck_assert_str_eq(hex, "00f067aa0ba902b7");
    ck_assert_int_eq(ctx.flags, 1);
    char out[TRACE_PARENT_LEN + 1];
    trace_format_traceparent(&ctx, out);
    ck_assert_str_eq(out, TP_VALID);
}
END_TEST

START_TEST(test_trace_parse_rejects_invalid_traceparents)
{
    static const char *const bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* 00 with more */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* uppercase */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* not hex */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",  /* flags */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* later version, no '-' */
    };
    struct trace_context ctx;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(trace_parse_traceparent(bad[i], &ctx) < 0, "accepted %s", bad[i]);
    ck_assert_int_lt(trace_parse_traceparent(NULL, &ctx), 0);
}
END_TEST

START_TEST(test_trace_parse_later_version_reads_its_prefix)
{
    struct trace_context ctx;
    ck_assert_int_eq(
        trace_parse_traceparent(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", &ctx),
        0);
    ck_assert_int_eq(ctx.flags, 1);
}
END_TEST

START_TEST(test_trace_state_bounds)
{
    ck_assert(trace_state_ok("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
    ck_assert(!trace_state_ok(""));
    ck_assert(!trace_state_ok(NULL));
    ck_assert(!trace_state_ok("a=b\nc=d"));
    char big[TRACE_STATE_MAX_BYTES + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert(!trace_state_ok(big));
    big[TRACE_STATE_MAX_BYTES] = '\0';
    ck_assert(trace_state_ok(big));
}
END_TEST

START_TEST(test_trace_random_ids_differ_and_are_not_zero)
{
    uint8_t a[TRACE_ID_BYTES], b[TRACE_ID_BYTES], zero[TRACE_ID_BYTES] = {0};
    trace_random_id(a, sizeof(a));
    trace_random_id(b, sizeof(b));
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    ck_assert(memcmp(a, zero, sizeof(a)) != 0);
}
END_TEST

static struct trace_span *new_span(void)
{
    struct trace_context ctx;
    ck_assert_int_eq(trace_parse_traceparent(TP_VALID, &ctx), 0);
    struct trace_span *s = trace_span_new(&ctx, true, "chat m", TRACE_KIND_CLIENT, 1000);
    ck_assert_ptr_nonnull(s);
    return s;
}

START_TEST(test_trace_span_child_context_and_parent)
{
    struct trace_span *s = new_span();
    ck_assert_str_eq(trace_span_trace_id(s), "4bf92f3577b34da6a3ce929d0e0e4736");
    struct trace_context child;
    trace_span_context(s, &child);
    ck_assert(memcmp(child.span_id, s->span_id, TRACE_SPAN_ID_BYTES) == 0);
    ck_assert(s->has_parent);
    char hex[17];
    trace_hex(s->parent_id, TRACE_SPAN_ID_BYTES, hex);
    ck_assert_str_eq(hex, "00f067aa0ba902b7");
    ck_assert_ptr_null(trace_span_trace_id(NULL));
    trace_span_free(s);
}
END_TEST

START_TEST(test_trace_span_attributes_are_bounded_and_counted)
{
    struct trace_span *s = new_span();
    static const char *const keys[TRACE_MAX_ATTRS + 3] = {
        "k0",  "k1",  "k2",  "k3",  "k4",  "k5",  "k6",  "k7",  "k8",
        "k9",  "k10", "k11", "k12", "k13", "k14", "k15", "k16", "k17",
        "k18", "k19", "k20", "k21", "k22", "k23", "k24", "k25", "k26"};
    for (int i = 0; i < TRACE_MAX_ATTRS + 3; i++)
        trace_span_set_int(s, keys[i], i);
    ck_assert_uint_eq(s->n_attrs, TRACE_MAX_ATTRS);
    ck_assert_uint_eq(s->dropped_attrs, 3);
    trace_span_set_int(s, "k0", 42); /* same key: replaced, not added */
    ck_assert_uint_eq(s->n_attrs, TRACE_MAX_ATTRS);
    ck_assert_int_eq(s->attrs[0].v.i, 42);
    trace_span_free(s);

    s = new_span();
    char big[TRACE_SPAN_TEXT_BYTES];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    trace_span_set_str(s, "a", "short");
    trace_span_set_str(s, "b", big); /* does not fit after "short" */
    ck_assert_uint_eq(s->n_attrs, 1);
    ck_assert_uint_eq(s->dropped_attrs, 1);
    trace_span_set_str(s, "c", NULL); /* no value: nothing */
    ck_assert_uint_eq(s->n_attrs, 1);
    trace_span_free(s);
}
END_TEST

/* trace_encode's output, which must be one strict JSON object. */
static json_t *encode_parsed(struct trace_span *const *spans, size_t n, const char *service,
                             const char *version)
{
    size_t len = 0;
    char *text = trace_encode(spans, n, service, version, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, strlen(text));
    json_error_t e;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    ck_assert_msg(o != NULL, "not JSON (%s): %s", e.text, text);
    free(text);
    return o;
}

/* resourceSpans[0].scopeSpans[0].spans[0] (borrowed). */
static json_t *first_span(json_t *req)
{
    json_t *rs = json_array_get(json_object_get(req, "resourceSpans"), 0);
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    return json_array_get(json_object_get(ss, "spans"), 0);
}

static json_t *attr_value(json_t *attrs, const char *key)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

START_TEST(test_trace_encode_follows_the_otlp_json_mapping)
{
    struct trace_span *s = new_span();
    trace_span_set_str(s, "gen_ai.operation.name", "chat");
    trace_span_set_int(s, "gen_ai.usage.input_tokens", 1234567890123LL);
    trace_span_set_bool(s, "agentd.tool.degraded", true);
    trace_span_set_double(s, "x.ratio", 0.5);
    trace_span_set_str_array1(s, "gen_ai.response.finish_reasons", "end_turn");
    static const char *const keys[] = {"agentd.attempt"};
    const int64_t values[] = {1};
    trace_span_add_event(s, "agentd.attempt", 1500, keys, values, 1, "error.type", "timeout");
    trace_span_set_error(s, "timeout");
    trace_span_end(s, 2000);
    json_t *req = encode_parsed(&s, 1, "svc", "1.2.3");
    json_t *rs = json_array_get(json_object_get(req, "resourceSpans"), 0);
    json_t *res_attrs = json_object_get(json_object_get(rs, "resource"), "attributes");
    ck_assert_str_eq(
        json_string_value(json_object_get(attr_value(res_attrs, "service.name"), "stringValue")),
        "svc");
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ss, "scope"), "name")),
                     "agentd");
    json_t *sp = json_array_get(json_object_get(ss, "spans"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(sp, "traceId")),
                     "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(json_string_value(json_object_get(sp, "parentSpanId")), "00f067aa0ba902b7");
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(sp, "spanId"))), 16);
    ck_assert_int_eq(json_integer_value(json_object_get(sp, "kind")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(sp, "startTimeUnixNano")), "1000");
    ck_assert_str_eq(json_string_value(json_object_get(sp, "endTimeUnixNano")), "2000");
    json_t *attrs = json_object_get(sp, "attributes");
    ck_assert_str_eq(json_string_value(json_object_get(
                         attr_value(attrs, "gen_ai.usage.input_tokens"), "intValue")),
                     "1234567890123");
    ck_assert(
        json_is_true(json_object_get(attr_value(attrs, "agentd.tool.degraded"), "boolValue")));
    ck_assert(json_real_value(json_object_get(attr_value(attrs, "x.ratio"), "doubleValue")) == 0.5);
    json_t *fr = json_object_get(
        json_object_get(attr_value(attrs, "gen_ai.response.finish_reasons"), "arrayValue"),
        "values");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(fr, 0), "stringValue")),
                     "end_turn");
    ck_assert_str_eq(
        json_string_value(json_object_get(attr_value(attrs, "error.type"), "stringValue")),
        "timeout");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(sp, "status"), "code")), 2);
    json_t *ev = json_array_get(json_object_get(sp, "events"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(ev, "name")), "agentd.attempt");
    ck_assert_str_eq(json_string_value(json_object_get(ev, "timeUnixNano")), "1500");
    ck_assert_str_eq(
        json_string_value(json_object_get(
            attr_value(json_object_get(ev, "attributes"), "error.type"), "stringValue")),
        "timeout");
    json_decref(req);
    trace_span_free(s);
}
END_TEST

START_TEST(test_trace_encode_escapes_any_bytes)
{
    struct trace_span *s = new_span();
    trace_span_set_str(s, "q", "a\"b\\c\n\x01 \xff\xc3\xa9 end");
    json_t *req = encode_parsed(&s, 1, "s\"v\nc", "v");
    json_t *sp = first_span(req);
    ck_assert_str_eq(json_string_value(json_object_get(
                         attr_value(json_object_get(sp, "attributes"), "q"), "stringValue")),
                     "a\"b\\c\n\x01 \xef\xbf\xbd\xc3\xa9 end");
    json_decref(req);
    trace_span_free(s);
}
END_TEST

START_TEST(test_trace_events_are_bounded)
{
    struct trace_span *s = new_span();
    for (int i = 0; i < TRACE_MAX_EVENTS + 2; i++)
        trace_span_add_event(s, "e", i, NULL, NULL, 0, NULL, NULL);
    ck_assert_uint_eq(s->n_events, TRACE_MAX_EVENTS);
    ck_assert_uint_eq(s->dropped_events, 2);
    json_t *req = encode_parsed(&s, 1, "svc", "v");
    json_t *sp = first_span(req);
    ck_assert_int_eq(json_integer_value(json_object_get(sp, "droppedEventsCount")), 2);
    ck_assert(json_object_get(sp, "parentSpanId") != NULL);
    json_decref(req);
    trace_span_free(s);
}
END_TEST

START_TEST(test_trace_queue_full_drops_the_new_span)
{
    struct trace_queue q;
    ck_assert_int_eq(trace_queue_init(&q, 2, 10, 1000), 0);
    struct trace_span *a = new_span(), *b = new_span(), *c = new_span();
    ck_assert(trace_queue_push(&q, a, 0));
    ck_assert(trace_queue_push(&q, b, 0));
    ck_assert(!trace_queue_push(&q, c, 0)); /* the caller keeps, frees and counts it */
    trace_span_free(c);
    struct trace_span *out[4];
    ck_assert_uint_eq(trace_queue_take(&q, 0, true, out, 4), 2);
    ck_assert_ptr_eq(out[0], a); /* oldest first: queued spans are never the ones dropped */
    ck_assert_ptr_eq(out[1], b);
    trace_span_free(a);
    trace_span_free(b);
    trace_queue_fini(&q);
}
END_TEST

START_TEST(test_trace_queue_batch_due_by_size_or_interval)
{
    struct trace_queue q;
    struct trace_span *out[8];
    ck_assert_int_eq(trace_queue_init(&q, 16, 3, 1000), 0);
    ck_assert_int_eq(trace_queue_due_ms(&q), INT64_MAX);
    ck_assert(trace_queue_push(&q, new_span(), 100));
    ck_assert(trace_queue_push(&q, new_span(), 500));
    ck_assert_int_eq(trace_queue_due_ms(&q), 1100); /* the oldest's interval */
    ck_assert_uint_eq(trace_queue_take(&q, 1099, false, out, 8), 0);
    ck_assert_uint_eq(trace_queue_take(&q, 1100, false, out, 8), 2);
    trace_span_free(out[0]);
    trace_span_free(out[1]);
    for (int i = 0; i < 4; i++)
        ck_assert(trace_queue_push(&q, new_span(), 2000));
    ck_assert_int_le(trace_queue_due_ms(&q), 2000); /* a full batch is due at once */
    ck_assert_uint_eq(trace_queue_take(&q, 2000, false, out, 8), 3); /* one batch at most */
    for (int i = 0; i < 3; i++)
        trace_span_free(out[i]);
    ck_assert_uint_eq(trace_queue_take(&q, 2000, false, out, 8), 0); /* one left, not due */
    ck_assert_uint_eq(trace_queue_take(&q, 3000, false, out, 8), 1);
    trace_span_free(out[0]);
    trace_queue_fini(&q);
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_trace_parse_valid_traceparent);
    tcase_add_test(tc, test_trace_parse_rejects_invalid_traceparents);
    tcase_add_test(tc, test_trace_parse_later_version_reads_its_prefix);
    tcase_add_test(tc, test_trace_state_bounds);
    tcase_add_test(tc, test_trace_random_ids_differ_and_are_not_zero);
    tcase_add_test(tc, test_trace_span_child_context_and_parent);
    tcase_add_test(tc, test_trace_span_attributes_are_bounded_and_counted);
    tcase_add_test(tc, test_trace_encode_follows_the_otlp_json_mapping);
    tcase_add_test(tc, test_trace_encode_escapes_any_bytes);
    tcase_add_test(tc, test_trace_events_are_bounded);
    tcase_add_test(tc, test_trace_queue_full_drops_the_new_span);
    tcase_add_test(tc, test_trace_queue_batch_due_by_size_or_interval);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(trace_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
