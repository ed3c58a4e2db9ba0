/*
 * route_metrics.c — GET|HEAD /metrics: the Prometheus exposition of
 * metrics.h (see http.h and docs/API.md).
 */
#include "agentd/http.h"

#include "agentd/metrics.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static enum MHD_Result render(struct conn *c)
{
    return http_reply_as(c, 200, metrics_render(), 0, NULL, NULL, METRICS_CONTENT_TYPE);
}

const struct http_route route_metrics = {
    .path = "/metrics",
    .metric = METRICS_ROUTE_METRICS,
    .allow = "GET, HEAD",
    .complete = render, /* at the request's end, so the connection stays open (route_health.c) */
};
