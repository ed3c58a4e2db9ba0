/*
 * http.h — private to src/server/: what the HTTP front's files share. No file
 * outside src/server/ includes it; the rest of agentd sees server.h only.
 *
 * http.c owns the daemon, the accepting thread, the connection lifecycle
 * (dispatch by route, completion), request ids, the reply helpers with the
 * "early answer waits for the body" rule, and the list of suspended
 * connections. Each route has its own file and exports one struct
 * http_route (declared below; routes.c lists them for main, which hands the
 * list to server_start). http.c calls a route only through that table, and
 * route files call the http_* functions below, so the dependencies point one
 * way; route files do not reach into struct server.
 *
 * Threads: everything runs on a libmicrohttpd thread, inside the access
 * handler or the completion callback of the connection it is given, except
 * what the worker that finishes a run calls while the connection is
 * suspended: http_conn_app() and http_resume_if_suspended(). While a
 * connection is suspended only that worker touches it, or shutdown once it
 * has taken the connection off the suspended list.
 *
 * Ownership: a body passed to a reply helper is heap memory the helper takes
 * over; it is freed whether or not the answer can be queued. A NULL body
 * means its allocation failed: an out-of-memory error body is sent in its
 * place, with the status given. struct conn is allocated and freed by
 * http.c; route files own the fields marked as theirs.
 */
#ifndef AGENTD_HTTP_H
#define AGENTD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "agentd/metrics.h"
#include "agentd/request.h"

#define HTTP_JSON_CONTENT_TYPE "application/json; charset=utf-8"

struct agent_stream;
struct app;
struct auth;
struct conn;
struct run;
struct run_answer;
struct run_owner;
struct run_result;
struct server;
struct worker;

/* A route: its path, the methods it takes, and its handlers. http.c calls them only through
   these pointers (the table comes from routes.c, through main), so the daemon knows no route by
   name and no route file is called back by name. */
struct http_route {
    const char *path;
    const char *allow; /* the methods it accepts, as the Allow header says them: "GET, HEAD" */
    enum metrics_route metric; /* its route label in the HTTP metrics */
    /* Optional: the headers are in: answer now (http_reply*), or return MHD_YES to read the body.
       An answer queued here closes the connection afterwards (libmicrohttpd cannot know the
       body was empty), so routes without a body answer in complete(). */
    enum MHD_Result (*headers)(struct conn *c);
    /* Optional: a chunk of the body, nothing answered yet (NULL = the body is dropped). */
    enum MHD_Result (*body)(struct conn *c, const char *data, size_t size);
    /* Optional: the whole body is in and nothing answered yet. */
    enum MHD_Result (*complete)(struct conn *c);
    /* Optional: the connection the route suspended (http_suspend) was resumed: answer it. */
    enum MHD_Result (*resumed)(struct conn *c);
    /* Optional: shutdown with the workers stopped: get an answer ready for the suspended
       connection in their place (http.c then resumes it). */
    void (*abort)(struct conn *c);
    /* Optional: the request is over (completion, on every path): free what the route holds. */
    void (*release)(struct conn *c);
};

/* One request on one connection, from its first header to its completion. */
struct conn {
    /* http.c: the connection's lifecycle */
    struct server *srv;
    struct MHD_Connection *mhd;
    char request_id[129];
    char trace_id[33];              /* its run's trace id, for the access line ("" = none) */
    const struct http_route *route; /* NULL: no such path */
    char method[8];
    int64_t start_ms;
    bool answered; /* a response has been queued (or deferred) */
    /* An answer given before the body has been read waits for its end (see drain_first). */
    bool defer;
    struct MHD_Response *deferred;
    unsigned deferred_status;
    size_t discarded; /* body bytes read and dropped after the answer */
    bool suspended;
    bool resume_due; /* suspended by the route: the next call is the route's resumed() */
    struct conn *prev, *next;
    /* for the access log */
    unsigned status;
    size_t bytes;

    /* route_agent.c: POST /v1/agent */
    char *body;
    size_t len, alloc; /* alloc bytes are counted in app->buffered_bytes */
    bool too_large;
    char caller[REQUEST_CALLER_ID_BYTES]; /* the bearer token's caller id; "" without tokens */
    /* The run a suspended connection waits for; the run holds the admission (run.h). */
    struct run *run;
    /* A streamed run ("stream": true): its events on the way to the client (agent_stream.c). */
    struct agent_stream *stream;
};

/* ---- http.c, for the route files ---- */

/* The daemon's shared state (any thread). */
struct app *http_conn_app(const struct conn *c);
/* The bearer tokens requests are checked against (auth.h); NULL = no authentication. */
struct auth *http_conn_auth(const struct conn *c);

/* Queues body (taken over, see above) with the common headers (Content-Type, X-Request-Id,
   Retry-After when retry_after_ms > 0, and hdr_name: hdr_value when hdr_name is not NULL); an
   answer decided before the body has been read is held until its end. */
enum MHD_Result http_reply_as(struct conn *c, unsigned status, char *body, int64_t retry_after_ms,
                              const char *hdr_name, const char *hdr_value,
                              const char *content_type);
/* http_reply_as() with JSON and a body that is not copied: body must stay valid and unchanged
   for the life of the process (a static string). */
enum MHD_Result http_reply_static(struct conn *c, unsigned status, const char *body, size_t len);
/* http_reply_as() with JSON, and an Allow header when allow is not NULL. */
enum MHD_Result http_reply(struct conn *c, unsigned status, char *body, int64_t retry_after_ms,
                           const char *allow);
/* The error body of docs/API.md with a printf-formatted message (cut to 511 bytes). */
enum MHD_Result http_reply_error(struct conn *c, unsigned status, const char *type,
                                 int64_t retry_after_ms, const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* For a refusal decided while the body is still arriving: the dropped bytes just received are
   counted as drained, and the error answer waits for the body's end like one decided before
   it. */
enum MHD_Result http_reply_error_after_body(struct conn *c, size_t dropped, unsigned status,
                                            const char *type, int64_t retry_after_ms,
                                            const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Suspends c until its run ends and tracks it, so shutdown can answer it in the run's place. */
void http_suspend(struct conn *c);
/* Stops tracking c; false when it was not tracked (someone else resumed it). */
bool http_untrack_suspended(struct conn *c);
/* Any thread: resumes c unless someone else already has. */
void http_resume_if_suspended(struct conn *c);
/* From the content reader of c's streamed answer, when it has nothing to send: suspends c and
   tracks it like http_suspend (shutdown calls the route's abort() for it), but a resume goes back
   to the content reader, not to the route's resumed(). */
void http_suspend_writer(struct conn *c);
/* Queues r (taken over: destroyed here) as c's 200 answer with X-Request-Id. */
enum MHD_Result http_reply_response(struct conn *c, unsigned status, struct MHD_Response *r);

/* ---- agent_stream.c: a run answered as events (POST /v1/agent with "stream": true) ---- */

/* How the route renders a run's result (route_agent.c), used for the run's last event. */
typedef void (*agent_render_fn)(const struct run_result *r, void *arg, struct run_answer *ret);

/* A stream for c (NULL when out of memory); it holds a reference for c, dropped by
   agent_stream_release(). c->stream is set. */
struct agent_stream *agent_stream_new(struct conn *c, agent_render_fn render);
/* The owner to admit the run with: events and its end go to the stream. */
void agent_stream_owner(struct agent_stream *st, struct run_owner *ret);
/* The run was admitted: answers c 200 text/event-stream and submits the run to w. */
enum MHD_Result agent_stream_start(struct agent_stream *st, struct run *run, struct worker *w);
/* Shutdown, workers stopped, c suspended: ends the run in the worker's place and queues its
   last event (http.c resumes c afterwards). */
void agent_stream_abort(struct agent_stream *st);
/* c is over (completion, on every path): a run still going is cancelled; the stream goes once
   the run and the response are done with it too. */
void agent_stream_release(struct agent_stream *st);

/* ---- the routes (route_*.c), listed by routes.c ---- */

extern const struct http_route route_agent;        /* POST /v1/agent */
extern const struct http_route route_health_live;  /* GET|HEAD /health/live */
extern const struct http_route route_health_ready; /* GET|HEAD /health/ready */
extern const struct http_route route_metrics;      /* GET|HEAD /metrics */

#endif
