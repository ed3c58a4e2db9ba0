/*
 * routes.c — the routes agentd serves, in the order they are matched (see
 * server.h). Listed here rather than in http.c so the daemon calls each
 * route only through its table entry.
 */
#include "agentd/http.h"
#include "agentd/server.h"

const struct http_route *const server_routes[] = {
    &route_agent, &route_health_live, &route_health_ready, &route_metrics, NULL,
};
