/*
 * tracer.h — the OTLP/HTTP span exporter: finished spans (trace.h) go into a
 * bounded queue, and one thread of its own POSTs them in batches, as OTLP
 * JSON, to AGENTD_OTLP_ENDPOINT.
 *
 * A run never waits on export: tracer_submit() takes a mutex for a queue
 * push and returns; a full queue (AGENTD_OTLP_QUEUE_SPANS) drops the new
 * span and counts it (agentd_trace_spans_dropped_total{reason="queue_full"}).
 * Each POST has its own timeout (AGENTD_OTLP_TIMEOUT_MS) and goes through the
 * exporter's own circuit breaker (breaker.h, the AGENTD_BREAKER_* settings):
 * while it is open, batches are dropped and counted, not sent. A batch the
 * collector does not take is dropped (no retry): traces are best effort and
 * must not pile up in memory.
 *
 * Threads: tracer_new/tracer_free on the thread that owns the app;
 * tracer_submit from any thread while the tracer exists.
 */
#ifndef AGENTD_TRACER_H
#define AGENTD_TRACER_H

#include "agentd/breaker.h"
#include "agentd/config.h"
#include "agentd/trace.h"

struct tracer;

/* bc: the exporter's breaker (copied). NULL with *ret_err = 0 when tracing is off
   (AGENTD_OTLP_ENDPOINT empty); NULL with a negative errno in *ret_err when it cannot start (no
   memory, no thread). */
struct tracer *tracer_new(const struct agentd_config *cfg, const struct breaker_config *bc,
                          int *ret_err);
/* Stops the thread after one last export of what is queued (bounded by the timeout), frees
   what is left. NULL is fine; returns NULL. */
struct tracer *tracer_free(struct tracer *t);
/* Hands a finished span over (t owns it from now on, even when it is dropped). t NULL: the span
   is freed (a trace context without export: ids for propagation and logs only). */
void tracer_submit(struct tracer *t, struct trace_span *s);

#endif
