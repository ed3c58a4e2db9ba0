/*
 * route_health.c — GET|HEAD /health/live and /health/ready (see http.h and
 * docs/API.md). Liveness says the process answers; readiness serves the body
 * and status the readiness checker (health.h) last computed, with the
 * per-dependency settings in force (app_policies_json) as "policies".
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

/* The checker's body with "policies" added; NULL on ENOMEM (or a body that is not an object). */
static char *with_policies(struct app *app, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL), *policies = app_policies_json(app);
    char *out = NULL;
    if (json_is_object(doc) && policies && json_object_set_new(doc, "policies", policies) == 0) {
        policies = NULL;
        out = json_dumps(doc, JSON_COMPACT);
    }
    json_decref(policies);
    json_decref(doc);
    return out;
}

static enum MHD_Result ready(struct conn *c)
{
    char *body = NULL, *full;
    struct app *app = http_conn_app(c);
    int status = health_render(app->health, &body);
    if (status < 0)
        return http_reply_error(c, 500, "internal_error", 0, NULL, "cannot render readiness");
    full = with_policies(app, body);
    free(body);
    if (!full)
        return http_reply_error(c, 500, "internal_error", 0, NULL, "cannot render readiness");
    return http_reply(c, (unsigned)status, full, 0, NULL);
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
