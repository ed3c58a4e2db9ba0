/*
 * fake_server.c — the HTTP side of the fake upstream: libmicrohttpd
 * callbacks, routing, the admin API, and turning a planned answer into a
 * response (now, after a delay, never, or as a dropped connection).
 *
 * Life of a request: the first handler call creates a fake_req and counts
 * it; body chunks are collected up to a cap; on the final call the request
 * is logged, a fault is taken, and an answer is planned. An answer that
 * must wait (delay, hang) suspends the connection and parks it in the
 * timer; when resumed, the handler is called again and queues the planned
 * answer (or closes on hang/shutdown). The completion callback frees the
 * request, and only ever runs once the connection is no longer parked.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bodies of routes that ignore them are counted, not stored. */
#define BODY_INITIAL_BYTES 4096
/* Most query arguments copied into the request log. */
#define LOG_MAX_QUERY_ARGS 64

struct fake_server {
    struct fake_config cfg;
    char *api_key;
    struct MHD_Daemon *daemon;
    struct fake_timer *timer;
    struct fake_faults *faults;
    struct fake_log *log;
    struct fake_ratelimit *ratelimit;
    struct fake_cache *cache;
    atomic_ullong route_counts[FAKE_ROUTE_COUNT];
    atomic_long in_flight;
    /* Connections that carried an upstream (non-admin) request: open now, most open at once and
       opened in all (the last two since start or DELETE /_admin/stats). */
    atomic_long conns_open;
    atomic_long conns_peak;
    atomic_ullong conns_total;
};

/* Per connection (MHD's socket context): whether it is counted in conns_open. */
struct fake_conn {
    bool upstream;
};

enum req_state { REQ_READING = 0, REQ_PARKED, REQ_DONE };
enum req_action { ACTION_RESPOND = 0, ACTION_HANG, ACTION_RESET };

struct fake_req {
    enum fake_route route;
    enum req_state state;
    bool counted; /* in in_flight */
    char method[16];
    char *body;
    size_t body_bytes;
    size_t body_cap;
    bool too_large;
    uint64_t seq; /* 0 until logged */
    uint64_t fault_id;
    enum req_action action;
    int64_t delay_ms;
    bool malformed;
    json_t *extra_headers; /* from the fault, or NULL */
    bool stream;           /* the body asked for "stream": true */
    json_t *stream_faults; /* the fault's "stream" object, or NULL */
    struct fake_reply reply;
    struct fake_parked parked;
};

static size_t body_cap_for(enum fake_route route)
{
    return route == FAKE_ROUTE_ADMIN ? FAKE_MAX_ADMIN_BODY_BYTES : FAKE_MAX_BODY_BYTES;
}

static bool stores_body(enum fake_route route)
{
    return route == FAKE_ROUTE_MESSAGES || route == FAKE_ROUTE_ADMIN;
}

static bool is_upstream(enum fake_route route)
{
    return route != FAKE_ROUTE_ADMIN && route != FAKE_ROUTE_UNKNOWN;
}

static void req_free(struct fake_req *req)
{
    if (!req)
        return;
    free(req->body);
    json_decref(req->extra_headers);
    json_decref(req->stream_faults);
    fake_reply_clear(&req->reply);
    free(req);
}

static void req_append(struct fake_req *req, const char *data, size_t n)
{
    size_t cap = body_cap_for(req->route);
    if (req->too_large || n > cap - req->body_bytes) {
        req->too_large = true;
        return;
    }
    if (stores_body(req->route) && req->body_bytes + n + 1 > req->body_cap) {
        size_t want = req->body_cap ? req->body_cap : BODY_INITIAL_BYTES;
        while (want < req->body_bytes + n + 1)
            want *= 2;
        char *grown = realloc(req->body, want);
        if (!grown) {
            /* Treat like an oversized body rather than answer from half of it. */
            req->too_large = true;
            return;
        }
        req->body = grown;
        req->body_cap = want;
    }
    if (stores_body(req->route)) {
        memcpy(req->body + req->body_bytes, data, n);
        req->body[req->body_bytes + n] = '\0';
    }
    req->body_bytes += n;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static const char *arg(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    json_t *obj = cls;
    (void)kind;
    if (json_object_size(obj) >= LOG_MAX_QUERY_ARGS)
        return MHD_NO;
    char *k = fake_strdup_utf8(key);
    if (k)
        json_object_set_new(obj, k, value ? fake_json_string_lossy(value) : json_null());
    free(k);
    return MHD_YES;
}

static json_t *query_json(struct MHD_Connection *conn)
{
    json_t *obj = json_object();
    if (obj)
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, obj);
    return obj;
}

/* ---- sending -------------------------------------------------------- */

static void access_log(const struct fake_server *s, const struct fake_req *req, const char *url,
                       int status)
{
    if (s->cfg.quiet || req->route == FAKE_ROUTE_ADMIN)
        return;
    char fault[32] = "";
    if (req->fault_id)
        snprintf(fault, sizeof(fault), " fault=%" PRIu64, req->fault_id);
    fprintf(stderr, "fake_upstream: #%" PRIu64 " %s %s -> %d%s\n", req->seq, req->method,
            url ? url : "", status, fault);
}

static enum MHD_Result add_extra_headers(struct MHD_Response *resp, const json_t *headers)
{
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)headers, name, value)
    {
        if (MHD_add_response_header(resp, name, json_string_value(value)) != MHD_YES)
            return MHD_NO;
    }
    return MHD_YES;
}

/* A 200 message asked for with "stream": true goes out as streaming events (fake_stream.c). */
static bool streams(const struct fake_req *req)
{
    const struct fake_reply *r = &req->reply;
    const char *type = json_string_value(json_object_get(r->json, "type"));
    return req->stream && !req->malformed && r->status == 200 && type &&
           strcmp(type, "message") == 0;
}

static struct MHD_Response *stream_response(struct fake_server *s, struct MHD_Connection *conn,
                                            struct fake_req *req)
{
    struct fake_stream *st = fake_stream_new(req->reply.json, req->stream_faults, s->timer, conn);
    if (!st)
        return NULL;
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, fake_stream_read, st, fake_stream_free);
    if (!resp) {
        fake_stream_free(st);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return resp;
}

/* Queues req->reply; the body is dumped here so a delayed answer holds only the tree. */
static enum MHD_Result send_reply(struct fake_server *s, struct MHD_Connection *conn,
                                  struct fake_req *req, const char *url)
{
    struct fake_reply *r = &req->reply;
    char *body = NULL;
    size_t len = 0;
    struct MHD_Response *resp = NULL;
    int status = r->status;
    if (streams(req)) {
        resp = stream_response(s, conn, req);
        if (!resp)
            return MHD_NO;
        goto headers;
    }
    if (r->json)
        body = json_dumps(r->json, FAKE_JSON_DUMP_FLAGS);
    else if (r->text)
        body = strdup(r->text);
    if (!body) {
        body = strdup("{\"error\":\"out of memory\"}");
        r->status = 500;
        if (!body)
            return MHD_NO;
    }
    len = strlen(body);
    if (req->malformed) {
        /* Half an object is never valid JSON: the closing brace is missing. */
        len /= 2;
        status = 200;
    }
    resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            r->content_type ? r->content_type : "application/json");
headers:
    if (req->route != FAKE_ROUTE_ADMIN && req->seq) {
        char rid[48];
        snprintf(rid, sizeof(rid), "req_fake_%" PRIu64, req->seq);
        MHD_add_response_header(resp, "request-id", rid);
    }
    if (r->allow)
        MHD_add_response_header(resp, "Allow", r->allow);
    if (req->extra_headers && add_extra_headers(resp, req->extra_headers) != MHD_YES)
        MHD_add_response_header(resp, "X-Fake-Warning", "a fault header was refused");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->state = REQ_DONE;
    if (req->seq)
        fake_log_set_status(s->log, req->seq, status);
    access_log(s, req, url, status);
    return ok;
}

/* Carries out the planned action now. */
static enum MHD_Result execute(struct fake_server *s, struct MHD_Connection *conn,
                               struct fake_req *req, const char *url)
{
    if (req->action == ACTION_RESPOND)
        return send_reply(s, conn, req, url);
    req->state = REQ_DONE;
    access_log(s, req, url, 0);
    /* Reset (and a hang that ends): close without any HTTP answer. */
    return MHD_NO;
}

static enum MHD_Result deliver(struct fake_server *s, struct MHD_Connection *conn,
                               struct fake_req *req, const char *url)
{
    if (req->action != ACTION_HANG && req->delay_ms <= 0)
        return execute(s, conn, req, url);
    req->parked.conn = conn;
    req->parked.hang = req->action == ACTION_HANG;
    req->parked.due_ms = fake_clock_ms() + (uint64_t)(req->delay_ms > 0 ? req->delay_ms : 0);
    req->parked.fd = -1;
    if (req->parked.hang) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        req->parked.fd = info ? info->connect_fd : -1;
    }
    req->state = REQ_PARKED;
    if (fake_timer_park(s->timer, &req->parked) < 0) {
        req->state = REQ_DONE;
        return MHD_NO; /* stopping (or out of memory): close */
    }
    return MHD_YES;
}

/* ---- planning upstream answers -------------------------------------- */

static bool api_key_ok(const struct fake_server *s, struct MHD_Connection *conn, uint64_t seq,
                       struct fake_reply *r)
{
    const char *key = header(conn, "x-api-key");
    if (!key || !*key) {
        fake_reply_anthropic_error(r, 401, NULL, "x-api-key header is required", seq);
        return false;
    }
    if (s->api_key && strcmp(key, s->api_key) != 0) {
        fake_reply_anthropic_error(r, 401, NULL, "invalid x-api-key", seq);
        return false;
    }
    return true;
}

static bool version_ok(struct MHD_Connection *conn, uint64_t seq, struct fake_reply *r)
{
    const char *v = header(conn, "anthropic-version");
    if (!v) {
        fake_reply_anthropic_error(r, 400, NULL, "anthropic-version: header is required", seq);
        return false;
    }
    if (strcmp(v, "2023-06-01") != 0) {
        fake_reply_anthropic_error(r, 400, NULL, "anthropic-version: invalid version", seq);
        return false;
    }
    return true;
}

static bool method_ok(struct fake_req *req, const char *want, struct fake_reply *r)
{
    if (strcmp(req->method, want) == 0)
        return true;
    if (req->route == FAKE_ROUTE_MESSAGES || req->route == FAKE_ROUTE_MODELS)
        fake_reply_anthropic_error(r, 405, "invalid_request_error", "Method not allowed", req->seq);
    else
        fake_reply_plain_error(r, 405, "Method not allowed");
    r->allow = want;
    return false;
}

/* The model's answer, under the rate limit (when set) and with the prompt cache's usage. */
static void plan_messages(struct fake_server *s, struct fake_req *req, const json_t *body)
{
    struct fake_reply *r = &req->reply;
    if (fake_ratelimit_take(s->ratelimit, &req->extra_headers) < 0) {
        fake_reply_anthropic_error(r, 429, "rate_limit_error",
                                   "Number of requests has exceeded your per-minute rate limit",
                                   req->seq);
        return;
    }
    fake_model_answer(body, req->body_bytes, req->seq, r);
    json_t *usage = json_object_get(r->json, "usage");
    if (r->status != 200 || !usage)
        return;
    int64_t creation = 0, read = 0;
    fake_cache_usage(s->cache, body, &creation, &read);
    json_int_t in = json_integer_value(json_object_get(usage, "input_tokens")) - creation - read;
    json_object_set_new(usage, "input_tokens", json_integer(in > 1 ? in : 1));
    json_object_set_new(usage, "cache_creation_input_tokens", json_integer(creation));
    json_object_set_new(usage, "cache_read_input_tokens", json_integer(read));
}

static void plan_normal(struct fake_server *s, struct MHD_Connection *conn, struct fake_req *req,
                        const char *url, const json_t *body)
{
    struct fake_reply *r = &req->reply;
    switch (req->route) {
    case FAKE_ROUTE_MESSAGES:
        if (!method_ok(req, "POST", r))
            return;
        if (req->too_large) {
            fake_reply_anthropic_error(r, 413, NULL, "Request exceeds the maximum allowed size",
                                       req->seq);
            return;
        }
        if (api_key_ok(s, conn, req->seq, r) && version_ok(conn, req->seq, r))
            plan_messages(s, req, body);
        return;
    case FAKE_ROUTE_MODELS:
        if (method_ok(req, "GET", r) && api_key_ok(s, conn, req->seq, r) &&
            version_ok(conn, req->seq, r))
            fake_tools_models(arg(conn, "limit"), req->seq, r);
        return;
    case FAKE_ROUTE_GEOCODING:
        if (method_ok(req, "GET", r))
            fake_tools_geocoding(arg(conn, "name"), arg(conn, "count"), r);
        return;
    case FAKE_ROUTE_FORECAST:
        if (method_ok(req, "GET", r))
            fake_tools_forecast(arg(conn, "latitude"), arg(conn, "longitude"), arg(conn, "current"),
                                r);
        return;
    case FAKE_ROUTE_SEARCH:
        if (method_ok(req, "GET", r))
            fake_tools_search(arg(conn, "q"), arg(conn, "format"), r);
        return;
    default:
        if (strncmp(url, "/v1/", 4) == 0) {
            fake_reply_anthropic_error(r, 404, NULL, "Not found", req->seq);
        } else {
            json_t *path = fake_json_string_lossy(url);
            fake_reply_set(r, 404, json_pack("{s:s,s:o*}", "error", "not found", "path", path));
        }
        return;
    }
}

static void plan_fault_error(struct fake_req *req, const struct fake_fault_hit *hit)
{
    char msg[FAKE_MAX_MESSAGE_BYTES + 1];
    if (hit->message[0])
        snprintf(msg, sizeof(msg), "%s", hit->message);
    else
        snprintf(msg, sizeof(msg), "injected fault %" PRIu64 ": HTTP %d", hit->id, hit->status);
    if (req->route == FAKE_ROUTE_MESSAGES || req->route == FAKE_ROUTE_MODELS)
        fake_reply_anthropic_error(&req->reply, hit->status,
                                   hit->error_type[0] ? hit->error_type : NULL, msg, req->seq);
    else
        fake_reply_plain_error(&req->reply, hit->status, msg);
}

static void plan(struct fake_server *s, struct MHD_Connection *conn, struct fake_req *req,
                 const char *url, const json_t *body, struct fake_fault_hit *hit)
{
    bool fault_delay = hit && hit->delay_ms >= 0;
    req->delay_ms = req->route == FAKE_ROUTE_MESSAGES && !req->too_large ? s->cfg.delay_ms : 0;
    if (fault_delay)
        req->delay_ms = hit->delay_ms;
    req->action = ACTION_RESPOND;
    if (hit && hit->hang) {
        req->action = ACTION_HANG;
    } else if (hit && hit->reset) {
        req->action = ACTION_RESET;
    } else if (hit && hit->body) {
        fake_reply_set(&req->reply, hit->status ? hit->status : 200, hit->body);
        hit->body = NULL;
    } else if (hit && hit->status) {
        plan_fault_error(req, hit);
    } else {
        plan_normal(s, conn, req, url, body);
        if (req->reply.delay_ms >= 0 && !fault_delay)
            req->delay_ms = req->reply.delay_ms;
        req->malformed = hit && hit->malformed;
    }
    req->stream =
        req->route == FAKE_ROUTE_MESSAGES && json_is_true(json_object_get(body, "stream"));
    if (hit) {
        req->fault_id = hit->id;
        if (req->extra_headers && hit->headers)
            json_object_update(req->extra_headers, hit->headers); /* the fault's win */
        else if (hit->headers)
            req->extra_headers = json_incref(hit->headers);
        json_decref(hit->headers);
        hit->headers = NULL;
        req->stream_faults = hit->stream;
        hit->stream = NULL;
    }
}

/* ---- admin API ------------------------------------------------------ */

static void admin_error(struct fake_reply *r, int status, const char *message)
{
    json_t *msg = fake_json_string_lossy(message);
    fake_reply_set(r, status, json_pack("{s:o*}", "error", msg));
}

static void admin_stats(struct fake_server *s, struct fake_reply *r)
{
    json_t *o = json_object();
    for (int i = 0; o && i < FAKE_ROUTE_COUNT; i++)
        json_object_set_new(o, fake_route_name((enum fake_route)i),
                            json_integer((json_int_t)atomic_load(&s->route_counts[i])));
    if (o) {
        json_object_set_new(o, "in_flight", json_integer(atomic_load(&s->in_flight)));
        json_object_set_new(o, "parked", json_integer((json_int_t)fake_timer_parked(s->timer)));
        json_object_set_new(o, "connections_open", json_integer(atomic_load(&s->conns_open)));
        json_object_set_new(o, "connections_peak", json_integer(atomic_load(&s->conns_peak)));
        json_object_set_new(o, "connections_total",
                            json_integer((json_int_t)atomic_load(&s->conns_total)));
    }
    fake_reply_set(r, 200, o);
}

static void admin_add_fault(struct fake_server *s, struct fake_req *req, struct fake_reply *r)
{
    json_error_t jerr;
    char err[256] = "";
    uint64_t id;
    json_t *spec =
        req->body ? json_loadb(req->body, req->body_bytes, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!spec) {
        admin_error(r, 400, "body: expected a JSON object describing the fault");
        return;
    }
    int rc = fake_faults_add(s->faults, spec, fake_clock_ms(), err, sizeof(err), &id);
    json_decref(spec);
    if (rc == -EINVAL || rc == -ENOSPC)
        admin_error(r, rc == -EINVAL ? 400 : 409, err);
    else if (rc < 0)
        admin_error(r, 500, "out of memory");
    else
        fake_reply_set(r, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

/* {"requests": N, "window_ms": W}: N requests per W ms (N = 0: off). */
static void admin_ratelimit(struct fake_server *s, struct fake_req *req, struct fake_reply *r)
{
    json_t *spec = req->body ? json_loadb(req->body, req->body_bytes, 0, NULL) : NULL;
    json_t *n = json_object_get(spec, "requests"), *w = json_object_get(spec, "window_ms");
    if (!json_is_integer(n) || !json_is_integer(w) || json_integer_value(n) < 0 ||
        json_integer_value(n) > 1000000 || json_integer_value(w) < 1 ||
        json_integer_value(w) > 3600000) {
        json_decref(spec);
        admin_error(r, 400, "expected {\"requests\": 0..1000000, \"window_ms\": 1..3600000}");
        return;
    }
    fake_ratelimit_set(s->ratelimit, json_integer_value(n), json_integer_value(w));
    fake_reply_set(r, 200, json_pack("{s:O,s:O}", "requests", n, "window_ms", w));
    json_decref(spec);
}

static void admin_requests(struct fake_server *s, struct MHD_Connection *conn, struct fake_reply *r)
{
    const char *route_name = arg(conn, "route");
    const char *since = arg(conn, "since");
    enum fake_route route = FAKE_ROUTE_UNKNOWN;
    unsigned long long since_seq = 0;
    char *end = NULL;
    if (route_name && fake_route_parse(route_name, &route) < 0) {
        admin_error(r, 400, "route: unknown route name");
        return;
    }
    if (since && (since_seq = strtoull(since, &end, 10), end == since || *end != '\0')) {
        admin_error(r, 400, "since: expected a sequence number");
        return;
    }
    fake_reply_set(r, 200, fake_log_dump(s->log, route_name ? (int)route : -1, since_seq));
}

static bool admin_method(struct fake_req *req, const char *allowed, struct fake_reply *r)
{
    /* allowed is a ", "-separated list, also used as the Allow header. */
    const char *p = strstr(allowed, req->method);
    size_t n = strlen(req->method);
    if (p && (p[n] == '\0' || p[n] == ','))
        return true;
    admin_error(r, 405, "method not allowed");
    r->allow = allowed;
    return false;
}

static void admin(struct fake_server *s, struct MHD_Connection *conn, struct fake_req *req,
                  const char *url)
{
    struct fake_reply *r = &req->reply;
    const char *path = url + strlen("/_admin");
    const char *m = req->method;
    if (req->too_large) {
        admin_error(r, 413, "admin body too large");
    } else if (strcmp(path, "/health") == 0) {
        if (admin_method(req, "GET", r))
            fake_reply_set(r, 200, json_pack("{s:s}", "status", "ok"));
    } else if (strcmp(path, "/faults") == 0) {
        if (!admin_method(req, "GET, POST, DELETE", r))
            return;
        if (strcmp(m, "GET") == 0)
            fake_reply_set(r, 200, fake_faults_list(s->faults, fake_clock_ms()));
        else if (strcmp(m, "POST") == 0)
            admin_add_fault(s, req, r);
        else
            fake_reply_set(r, 200,
                           json_pack("{s:I}", "cleared", (json_int_t)fake_faults_clear(s->faults)));
    } else if (strncmp(path, "/faults/", 8) == 0) {
        char *end;
        unsigned long long id = strtoull(path + 8, &end, 10);
        if (!admin_method(req, "DELETE", r))
            return;
        if (end == path + 8 || *end != '\0' || fake_faults_remove(s->faults, id) < 0)
            admin_error(r, 404, "no such fault");
        else
            fake_reply_set(r, 200, json_pack("{s:I}", "removed", (json_int_t)id));
    } else if (strcmp(path, "/requests") == 0) {
        if (!admin_method(req, "GET, DELETE", r))
            return;
        if (strcmp(m, "GET") == 0)
            admin_requests(s, conn, r);
        else
            fake_reply_set(r, 200,
                           json_pack("{s:I}", "cleared", (json_int_t)fake_log_clear(s->log)));
    } else if (strcmp(path, "/ratelimit") == 0) {
        if (admin_method(req, "POST", r))
            admin_ratelimit(s, req, r);
    } else if (strcmp(path, "/stats") == 0) {
        if (!admin_method(req, "GET, DELETE", r))
            return;
        if (strcmp(m, "DELETE") == 0) {
            for (int i = 0; i < FAKE_ROUTE_COUNT; i++)
                atomic_store(&s->route_counts[i], 0);
            atomic_store(&s->conns_peak, atomic_load(&s->conns_open));
            atomic_store(&s->conns_total, 0);
        }
        admin_stats(s, r);
    } else {
        admin_error(r, 404, "no such admin endpoint");
    }
}

/* ---- MHD callbacks -------------------------------------------------- */

static enum MHD_Result dispatch(struct fake_server *s, struct MHD_Connection *conn,
                                struct fake_req *req, const char *url)
{
    if (req->route == FAKE_ROUTE_ADMIN) {
        admin(s, conn, req, url);
        return send_reply(s, conn, req, url);
    }
    json_t *query = query_json(conn);
    json_t *body = NULL;
    if (req->route == FAKE_ROUTE_MESSAGES && !req->too_large && req->body)
        body = json_loadb(req->body, req->body_bytes, JSON_REJECT_DUPLICATES, NULL);
    struct fake_fault_hit hit = {.delay_ms = -1};
    int matched = 0;
    if (is_upstream(req->route) && !req->too_large)
        matched = fake_faults_take(s->faults, req->route,
                                   json_string_value(json_object_get(body, "model")),
                                   fake_clock_ms(), &hit);
    struct fake_log_record rec = {
        .ts_ms = fake_clock_ms(),
        .method = req->method,
        .route = req->route,
        .path = url,
        .query = query,
        .fault_id = matched > 0 ? hit.id : 0,
        .anthropic_version = header(conn, "anthropic-version"),
        .content_type = header(conn, "content-type"),
        .traceparent = header(conn, "traceparent"),
        .tracestate = header(conn, "tracestate"),
        .api_key_present = header(conn, "x-api-key") != NULL,
        .body = body,
    };
    req->seq = fake_log_append(s->log, &rec);
    plan(s, conn, req, url, body, matched > 0 ? &hit : NULL);
    fake_fault_hit_clear(&hit);
    json_decref(query);
    json_decref(body);
    return deliver(s, conn, req, url);
}

/* The first upstream request on a connection counts the connection. */
static void count_connection(struct fake_server *s, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct fake_conn *fc = ci ? ci->socket_context : NULL;
    if (!fc || fc->upstream)
        return;
    fc->upstream = true;
    atomic_fetch_add(&s->conns_total, 1);
    long open = atomic_fetch_add(&s->conns_open, 1) + 1;
    long peak = atomic_load(&s->conns_peak);
    while (open > peak && !atomic_compare_exchange_weak(&s->conns_peak, &peak, open))
        ;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct fake_server *s = cls;
    (void)conn;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(struct fake_conn));
        return;
    }
    struct fake_conn *fc = *socket_context;
    if (fc && fc->upstream)
        atomic_fetch_sub(&s->conns_open, 1);
    free(fc);
    *socket_context = NULL;
}

static enum MHD_Result begin(struct fake_server *s, struct MHD_Connection *conn, const char *url,
                             const char *method, void **con_cls)
{
    struct fake_req *req = calloc(1, sizeof(*req));
    if (!req)
        return MHD_NO;
    req->route = fake_route_of_path(url);
    req->reply.delay_ms = -1;
    snprintf(req->method, sizeof(req->method), "%s", method);
    atomic_fetch_add(&s->route_counts[req->route], 1);
    if (req->route != FAKE_ROUTE_ADMIN) {
        atomic_fetch_add(&s->in_flight, 1);
        req->counted = true;
        count_connection(s, conn);
    }
    *con_cls = req;
    /* Refuse an announced oversized body before reading any of it. */
    const char *cl = header(conn, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == ERANGE || n > body_cap_for(req->route)) {
            req->too_large = true;
            return dispatch(s, conn, req, url);
        }
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct fake_server *s = cls;
    struct fake_req *req = *con_cls;
    (void)version;
    if (!req)
        return begin(s, conn, url, method, con_cls);
    switch (req->state) {
    case REQ_READING:
        if (*upload_data_size != 0) {
            req_append(req, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        return dispatch(s, conn, req, url);
    case REQ_PARKED:
        if (atomic_load(&req->parked.wake) != FAKE_WAKE_DUE || req->action == ACTION_HANG) {
            req->state = REQ_DONE;
            access_log(s, req, url, 0);
            return MHD_NO;
        }
        return execute(s, conn, req, url);
    default:
        return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct fake_server *s = cls;
    struct fake_req *req = *con_cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    if (req->counted)
        atomic_fetch_sub(&s->in_flight, 1);
    req_free(req);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("fake_upstream: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int fake_server_start(const struct fake_config *cfg, int listen_fd, bool ipv6,
                      struct fake_server **ret_server)
{
    int rc;
    struct fake_server *s = calloc(1, sizeof(*s));
    if (!s) {
        rc = -ENOMEM;
        goto fail;
    }
    s->cfg = *cfg;
    s->api_key = cfg->api_key ? strdup(cfg->api_key) : NULL;
    s->cfg.api_key = s->api_key;
    s->faults = fake_faults_new();
    s->log = fake_log_new(FAKE_LOG_MAX_ENTRIES, FAKE_LOG_MAX_STORED_BYTES);
    s->ratelimit = fake_ratelimit_new();
    s->cache = fake_cache_new();
    if ((cfg->api_key && !s->api_key) || !s->faults || !s->log || !s->ratelimit || !s->cache) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = fake_timer_new(&s->timer)) < 0)
        goto fail;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (!cfg->quiet)
        flags |= MHD_USE_ERROR_LOG;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    unsigned threads = cfg->threads ? cfg->threads : 2;
    /* The logger goes first so that MHD reports option errors through it too. */
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                                 mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                 MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)cfg->connection_limit, MHD_OPTION_CONNECTION_TIMEOUT,
                                 300u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    if (!s->daemon) {
        rc = -EIO;
        goto fail;
    }
    *ret_server = s;
    return 0;
fail:
    if (!s || !s->daemon)
        close(listen_fd);
    fake_server_stop(s);
    return rc;
}

struct fake_server *fake_server_stop(struct fake_server *s)
{
    if (!s)
        return NULL;
    /* MHD refuses to stop while connections are suspended: resume them first. */
    fake_timer_stop(s->timer);
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    s->timer = fake_timer_free(s->timer);
    s->faults = fake_faults_free(s->faults);
    s->ratelimit = fake_ratelimit_free(s->ratelimit);
    s->cache = fake_cache_free(s->cache);
    s->log = fake_log_free(s->log);
    free(s->api_key);
    free(s);
    return NULL;
}
