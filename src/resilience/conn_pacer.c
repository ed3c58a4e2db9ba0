/*
 * conn_pacer.c — when a transfer may open a connection, and whose fault a
 * failed connect was (see conn_pacer.h).
 */
#include "agentd/conn_pacer.h"

void conn_lane_init(struct conn_lane *l, double rate_per_s, double burst, long max_connections,
                    bool multiplex, int streams, int64_t now_ms)
{
    *l = (struct conn_lane){
        .rate_per_ms = rate_per_s > 0 ? rate_per_s / 1000.0 : 0,
        .burst = burst >= 1 ? burst : 1,
        .max_connections = max_connections > 0 ? max_connections : 0,
        .multiplex = multiplex,
        .streams = streams >= 1 ? streams : 1,
        .refilled_ms = now_ms,
        .last_connected_ms = INT64_MIN,
    };
    l->tokens = l->burst;
}

static bool opens_connection(const struct conn_lane *l)
{
    if (l->active < l->open)
        return false;
    return l->max_connections == 0 || l->active < l->max_connections;
}

int64_t conn_lane_admit(struct conn_lane *l, int64_t now_ms)
{
    if (l->multiplex)
        return (int64_t)l->active < ((int64_t)l->open + 1) * l->streams ? 0 : CONN_PACER_RECHECK_MS;
    if (l->rate_per_ms <= 0 || !opens_connection(l))
        return 0;
    if (now_ms > l->refilled_ms) {
        l->tokens += (double)(now_ms - l->refilled_ms) * l->rate_per_ms;
        if (l->tokens > l->burst)
            l->tokens = l->burst;
        l->refilled_ms = now_ms;
    }
    if (l->tokens >= 1) {
        l->tokens -= 1;
        return 0;
    }
    int64_t wait = (int64_t)((1 - l->tokens) / l->rate_per_ms);
    return wait < 1 ? 1 : wait + 1;
}

bool conn_lane_own_burst(const struct conn_lane *l, int64_t started_ms, int crowd_at_start)
{
    int crowd = l->connecting > crowd_at_start ? l->connecting : crowd_at_start;
    return crowd >= CONN_PACER_CROWD && l->last_connected_ms >= started_ms;
}
