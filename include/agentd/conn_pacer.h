/*
 * conn_pacer.h — the discipline of one worker's connections to one upstream
 * (a "lane"): whether a transfer may start now or must wait for its turn to
 * open a connection, and whether a failed connect was caused by our own
 * burst rather than by the upstream.
 *
 * The rules (docs/resilience.md, "Upstream connections"):
 *  - A lane that multiplexes (HTTP/2) never waits for a token, but hands
 *    libcurl at most what its open connections carry plus one new
 *    connection's worth ((open + 1) x streams): libcurl sets connections up
 *    one after another and a transfer waiting for one has its connect timeout
 *    running, so the rest wait in the worker's queue instead.
 *  - Otherwise a transfer that will reuse a connection starts at once: fewer
 *    transfers are active than connections are open (an idle one is there),
 *    or the lane is at its connection cap (libcurl queues the transfer until
 *    a connection is free: no new one).
 *  - Any other transfer opens a new connection and needs a token from the
 *    lane's token bucket (rate per ms, burst); without one it waits, and the
 *    answer says for how long.
 *  - A connect failure is "ours" (not the upstream failing) when at least
 *    CONN_PACER_CROWD other transfers of the lane were waiting for a
 *    connection when it failed or when it started, and another transfer of
 *    the lane got a connection after the failed one started (the upstream
 *    was accepting connections: it was our crowd it could not take).
 *
 * Pure: no clock, no I/O; callers pass now_ms (monotonic). One lane belongs
 * to one worker thread; nothing here locks.
 */
#ifndef AGENTD_CONN_PACER_H
#define AGENTD_CONN_PACER_H

#include <stdbool.h>
#include <stdint.h>

/* Other transfers waiting for a connection that make a failed connect our own burst's. */
#define CONN_PACER_CROWD 8
/* How soon a multiplexing lane's queue looks again whether a connection has room. */
#define CONN_PACER_RECHECK_MS 5

struct conn_lane {
    /* settings */
    double rate_per_ms;   /* new connections per ms; 0 = unpaced */
    double burst;         /* tokens the bucket holds at most (>= 1) */
    long max_connections; /* the worker's cap per host; 0 = none */
    bool multiplex;       /* transfers share connections (HTTP/2): never paced */
    int streams;          /* transfers one connection carries when multiplexing (>= 1) */
    /* state, kept by the worker */
    double tokens;
    int64_t refilled_ms;
    int open;                  /* connections (sockets) open now */
    int active;                /* transfers on the multi handle */
    int connecting;            /* of those, still without a connection */
    int64_t last_connected_ms; /* a transfer last got a connection; INT64_MIN: never */
};

/* rate_per_s: new connections per second (0 = unpaced); burst >= 1; streams: per connection when
   multiplexing. The bucket starts full. */
void conn_lane_init(struct conn_lane *l, double rate_per_s, double burst, long max_connections,
                    bool multiplex, int streams, int64_t now_ms);

/* May one more transfer start now? 0: yes (a token taken if it opens a connection; the caller
   then counts it in `active` and `connecting`); > 0: ask again in that many ms. */
int64_t conn_lane_admit(struct conn_lane *l, int64_t now_ms);

/* A transfer's connect failed at now_ms; it started at started_ms and saw crowd_at_start other
   transfers waiting for a connection then. true: our own burst, not the upstream failing. */
bool conn_lane_own_burst(const struct conn_lane *l, int64_t started_ms, int crowd_at_start);

#endif
