/*
 * server.h — the HTTP front: a libmicrohttpd daemon (epoll, internal thread
 * pool) that routes requests, caps and validates bodies, admits runs,
 * suspends each agent request while a worker runs it, and resumes it with
 * the JSON answer. agentd owns the listening socket and an accepting thread
 * that hands connections to the daemon.
 */
#ifndef AGENTD_SERVER_H
#define AGENTD_SERVER_H

#include <stddef.h>

struct app;
struct auth;
struct http_route;
struct server;

/* The routes agentd serves (routes.c), NULL-terminated; what main passes to server_start. */
extern const struct http_route *const server_routes[];

/* Binds and starts serving the given routes (NULL-terminated, static), checking bearer tokens
   against auth (auth.h; borrowed until server_stop, NULL = no authentication). NULL with a
   message in err on failure. */
struct server *server_start(struct app *app, const struct http_route *const *routes,
                            struct auth *auth, char *err, size_t errlen);
/* The bound TCP port (useful with port 0). */
int server_port(const struct server *s);
/* Stops accepting new connections (listening socket closed); idempotent. */
void server_quiesce(struct server *s);
/* Answers every still-suspended request with 503 shutting_down; returns how many. */
size_t server_abort_suspended(struct server *s);
/* Number of suspended (running) requests. */
size_t server_suspended_count(struct server *s);
/* Requests in progress: from their headers to their completion, whether their body is still
   arriving, their run is going or their answer is being sent (any thread). */
size_t server_requests_in_progress(struct server *s);
/* Stops the daemon and frees it (after the workers have stopped: requests still suspended are
   answered first, as server_abort_suspended does); NULL is fine. Returns NULL. */
struct server *server_stop(struct server *s);

#endif
