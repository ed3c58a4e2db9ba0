/*
 * route_health.c — GET|HEAD /health/live and /health/ready (see http.h and
 * docs/API.md). Liveness says the process answers; readiness serves the body
 * and status the readiness checker (health.h) last computed.
 */
#include "agentd/http.h"

#include <stdlib.h>
#include <string.h>

#include "agentd/app.h"
#include "agentd/health.h"

static const char live_body[] = "{\"status\":\"ok\"}";

static enum MHD_Result live(struct conn *c)
{
    return http_reply_static(c, 200, live_body, sizeof(live_body) - 1);
}

static enum MHD_Result ready(struct conn *c)
{
    char *body = NULL;
    int status = health_render(http_conn_app(c)->health, &body);
    if (status < 0)
        return http_reply_error(c, 500, "internal_error", 0, NULL, "cannot render readiness");
    return http_reply(c, (unsigned)status, body, 0, NULL);
}

/* Answered at the end of the request, not from its headers: libmicrohttpd closes a connection
   whose answer was queued on the first call, and probes and scrapers reuse theirs. */
const struct http_route route_health_live = {
    .path = "/health/live",
    .metric = METRICS_ROUTE_HEALTH_LIVE,
    .allow = "GET, HEAD",
    .complete = live,
};

const struct http_route route_health_ready = {
    .path = "/health/ready",
    .metric = METRICS_ROUTE_HEALTH_READY,
    .allow = "GET, HEAD",
    .complete = ready,
};
