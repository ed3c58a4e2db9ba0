/*
 * fake_faults.c — the fault table behind /_admin/faults.
 *
 * A fault says what to do to the next matching requests: answer with a
 * status, add headers, delay, hang, reset the connection or send a truncated
 * body. Faults are checked in insertion order and the first active match
 * wins; spending one use of a counted fault happens under the table lock,
 * so N concurrent requests against "count": 3 see exactly 3 faults.
 * Spent faults stay listed (with their hit count) until cleared, so tests
 * can check how often a fault fired.
 */
#include "fake_upstream.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAULT_MAX_COUNT       1000000000LL
#define FAULT_MAX_DURATION_MS 86400000LL
#define FAULT_MAX_HEADERS     32
#define FAULT_MAX_HEADER_NAME 64
#define FAULT_MAX_HEADER_VAL  1024

struct fault {
    uint64_t id;
    int route; /* enum fake_route, or -1 for "*" */
    int status;
    char error_type[64];
    char model[FAKE_MAX_MODEL_BYTES + 1];     /* "" = any model; else messages with this model */
    char message[FAKE_MAX_MESSAGE_BYTES + 1]; /* "" = the default error message */
    json_t *headers;                          /* object or NULL */
    json_t *body;   /* object answered in place of the normal one, or NULL */
    json_t *stream; /* stream faults (fake_stream.c), or NULL */
    int64_t delay_ms;
    bool hang, reset, malformed;
    int64_t remaining;   /* uses left; -1 = unlimited */
    uint64_t expires_ms; /* 0 = never */
    uint64_t hits;
};

struct fake_faults {
    pthread_mutex_t lock;
    struct fault items[FAKE_MAX_FAULTS];
    size_t len;
    uint64_t next_id;
};

struct fake_faults *fake_faults_new(void)
{
    struct fake_faults *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->next_id = 1;
    return f;
}

size_t fake_faults_clear(struct fake_faults *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->len;
    for (size_t i = 0; i < f->len; i++) {
        json_decref(f->items[i].headers);
        json_decref(f->items[i].body);
        json_decref(f->items[i].stream);
    }
    f->len = 0;
    pthread_mutex_unlock(&f->lock);
    return n;
}

struct fake_faults *fake_faults_free(struct fake_faults *f)
{
    if (!f)
        return NULL;
    fake_faults_clear(f);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return NULL;
}

static bool fault_active(const struct fault *x, uint64_t now_ms)
{
    return x->remaining != 0 && (x->expires_ms == 0 || now_ms < x->expires_ms);
}

static void remove_at(struct fake_faults *f, size_t i)
{
    json_decref(f->items[i].headers);
    json_decref(f->items[i].body);
    json_decref(f->items[i].stream);
    memmove(&f->items[i], &f->items[i + 1], (f->len - i - 1) * sizeof(f->items[0]));
    f->len--;
}

static bool header_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > FAULT_MAX_HEADER_NAME)
        return false;
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    }
    return true;
}

static bool header_value_ok(const char *v)
{
    if (strlen(v) > FAULT_MAX_HEADER_VAL)
        return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        /* CR/LF would let a test smuggle a second header line or a body. */
        if (*p < 0x20 && *p != '\t')
            return false;
    }
    return true;
}

/* Copies the headers object, turning integer values into strings. */
static int parse_headers(const json_t *in, json_t **ret, char *err, size_t err_bytes)
{
    if (!json_is_object(in) || json_object_size(in) > FAULT_MAX_HEADERS) {
        snprintf(err, err_bytes, "headers: expected an object of at most %d strings",
                 FAULT_MAX_HEADERS);
        return -EINVAL;
    }
    json_t *out = json_object();
    if (!out)
        return -ENOMEM;
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)in, name, value)
    {
        char buf[32];
        const char *v = NULL;
        if (json_is_string(value)) {
            v = json_string_value(value);
        } else if (json_is_integer(value)) {
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(value));
            v = buf;
        }
        if (!v || !header_name_ok(name) || !header_value_ok(v)) {
            snprintf(err, err_bytes,
                     "headers.%.64s: expected a header name of [A-Za-z0-9_-] and a string value "
                     "without control characters",
                     name);
            json_decref(out);
            return -EINVAL;
        }
        json_object_set_new(out, name, json_string(v));
    }
    *ret = out;
    return 0;
}

static int int_field(const json_t *spec, const char *key, long long min, long long max,
                     long long *ret, char *err, size_t err_bytes)
{
    const json_t *v = json_object_get(spec, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, err_bytes, "%s: expected an integer %lld..%lld", key, min, max);
        return -EINVAL;
    }
    *ret = json_integer_value(v);
    return 1;
}

static int bool_field(const json_t *spec, const char *key, bool *ret, char *err, size_t err_bytes)
{
    const json_t *v = json_object_get(spec, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        snprintf(err, err_bytes, "%s: expected true or false", key);
        return -EINVAL;
    }
    *ret = json_is_true(v);
    return 0;
}

/* An optional non-empty string of at most cap - 1 bytes: 1 when set, 0 when absent. */
static int string_field(const json_t *spec, const char *name, char *dst, size_t cap, char *err,
                        size_t err_bytes)
{
    const json_t *v = json_object_get(spec, name);
    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap) {
        snprintf(err, err_bytes, "%s: expected a string of 1..%zu bytes", name, cap - 1);
        return -EINVAL;
    }
    snprintf(dst, cap, "%s", json_string_value(v));
    return 1;
}

static int check_keys(const json_t *spec, char *err, size_t err_bytes)
{
    static const char *const known[] = {"route", "status", "error_type", "headers", "delay_ms",
                                        "hang",  "reset",  "malformed",  "count",   "duration_ms",
                                        "body",  "model",  "message",    "stream"};
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)spec, key, value)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            /* A typo ("delay": 100) must not silently become a no-op fault. */
            snprintf(err, err_bytes, "unknown field '%.64s'", key);
            return -EINVAL;
        }
        (void)value;
    }
    return 0;
}

static int parse_route(const json_t *spec, int *ret, char *err, size_t err_bytes)
{
    const char *name = json_string_value(json_object_get(spec, "route"));
    enum fake_route r;
    if (name && strcmp(name, "*") == 0) {
        *ret = -1;
        return 0;
    }
    if (!name || fake_route_parse(name, &r) < 0 || r == FAKE_ROUTE_ADMIN ||
        r == FAKE_ROUTE_UNKNOWN) {
        snprintf(err, err_bytes,
                 "route: expected \"messages\", \"models\", \"geocoding\", \"forecast\", "
                 "\"search\" or \"*\"");
        return -EINVAL;
    }
    *ret = (int)r;
    return 0;
}

static int parse_fault(const json_t *spec, uint64_t now_ms, struct fault *x, char *err,
                       size_t err_bytes)
{
    long long v;
    int rc;
    if (!json_is_object(spec)) {
        snprintf(err, err_bytes, "expected a JSON object");
        return -EINVAL;
    }
    if ((rc = check_keys(spec, err, err_bytes)) < 0 ||
        (rc = parse_route(spec, &x->route, err, err_bytes)) < 0)
        return rc;
    x->delay_ms = -1;
    x->remaining = -1;
    if ((rc = int_field(spec, "status", 100, 599, &v, err, err_bytes)) < 0)
        return rc;
    x->status = rc ? (int)v : 0;
    if ((rc = int_field(spec, "delay_ms", 0, FAKE_MAX_DELAY_MS, &v, err, err_bytes)) < 0)
        return rc;
    x->delay_ms = rc ? v : -1;
    if ((rc = int_field(spec, "count", 1, FAULT_MAX_COUNT, &v, err, err_bytes)) < 0)
        return rc;
    x->remaining = rc ? v : -1;
    if ((rc = int_field(spec, "duration_ms", 1, FAULT_MAX_DURATION_MS, &v, err, err_bytes)) < 0)
        return rc;
    x->expires_ms = rc ? now_ms + (uint64_t)v : 0;
    if ((rc = bool_field(spec, "hang", &x->hang, err, err_bytes)) < 0 ||
        (rc = bool_field(spec, "reset", &x->reset, err, err_bytes)) < 0 ||
        (rc = bool_field(spec, "malformed", &x->malformed, err, err_bytes)) < 0)
        return rc;
    if (x->remaining > 0 && x->expires_ms != 0) {
        snprintf(err, err_bytes, "count and duration_ms are exclusive");
        return -EINVAL;
    }
    if ((x->status != 0) + x->hang + x->reset + x->malformed > 1) {
        snprintf(err, err_bytes, "status, hang, reset and malformed are exclusive");
        return -EINVAL;
    }
    const json_t *et = json_object_get(spec, "error_type");
    if (et) {
        if (!json_is_string(et) || json_string_length(et) == 0 ||
            json_string_length(et) >= sizeof(x->error_type) || x->status == 0) {
            snprintf(err, err_bytes, "error_type: expected a short string, together with status");
            return -EINVAL;
        }
        snprintf(x->error_type, sizeof(x->error_type), "%s", json_string_value(et));
    }
    if ((rc = string_field(spec, "model", x->model, sizeof(x->model), err, err_bytes)) < 0 ||
        (rc = string_field(spec, "message", x->message, sizeof(x->message), err, err_bytes)) < 0)
        return rc;
    if (x->model[0] && x->route != FAKE_ROUTE_MESSAGES) {
        snprintf(err, err_bytes, "model: only with route \"messages\"");
        return -EINVAL;
    }
    if (x->message[0] && x->status == 0) {
        snprintf(err, err_bytes, "message: only together with status");
        return -EINVAL;
    }
    const json_t *body = json_object_get(spec, "body");
    if (body) {
        if (!json_is_object(body) || x->hang || x->reset || x->malformed) {
            snprintf(err, err_bytes, "body: expected an object, without hang, reset or malformed");
            return -EINVAL;
        }
        if (!(x->body = json_deep_copy(body))) {
            snprintf(err, err_bytes, "out of memory");
            return -ENOMEM;
        }
    }
    const json_t *stream = json_object_get(spec, "stream");
    if (stream) {
        if ((rc = fake_stream_spec_check(stream, err, err_bytes)) < 0)
            return rc;
        if (!(x->stream = json_deep_copy(stream))) {
            snprintf(err, err_bytes, "out of memory");
            return -ENOMEM;
        }
    }
    const json_t *headers = json_object_get(spec, "headers");
    if (headers)
        return parse_headers(headers, &x->headers, err, err_bytes);
    return 0;
}

int fake_faults_add(struct fake_faults *f, const json_t *spec, uint64_t now_ms, char *err,
                    size_t err_bytes, uint64_t *ret_id)
{
    struct fault x = {0};
    int rc = parse_fault(spec, now_ms, &x, err, err_bytes);
    if (rc < 0) {
        json_decref(x.headers);
        json_decref(x.body);
        json_decref(x.stream);
        return rc;
    }
    pthread_mutex_lock(&f->lock);
    if (f->len == FAKE_MAX_FAULTS) {
        for (size_t i = f->len; i-- > 0;) {
            if (!fault_active(&f->items[i], now_ms))
                remove_at(f, i);
        }
    }
    if (f->len == FAKE_MAX_FAULTS) {
        pthread_mutex_unlock(&f->lock);
        json_decref(x.headers);
        json_decref(x.body);
        json_decref(x.stream);
        snprintf(err, err_bytes, "too many active faults (%d); DELETE /_admin/faults",
                 FAKE_MAX_FAULTS);
        return -ENOSPC;
    }
    x.id = f->next_id++;
    f->items[f->len++] = x;
    pthread_mutex_unlock(&f->lock);
    *ret_id = x.id;
    return 0;
}

int fake_faults_take(struct fake_faults *f, enum fake_route route, const char *model,
                     uint64_t now_ms, struct fake_fault_hit *ret_hit)
{
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->len; i++) {
        struct fault *x = &f->items[i];
        if ((x->route != -1 && x->route != (int)route) || !fault_active(x, now_ms))
            continue;
        if (x->model[0] && (!model || strcmp(x->model, model) != 0))
            continue;
        struct fake_fault_hit hit = {.id = x->id,
                                     .status = x->status,
                                     .delay_ms = x->delay_ms,
                                     .hang = x->hang,
                                     .reset = x->reset,
                                     .malformed = x->malformed};
        snprintf(hit.error_type, sizeof(hit.error_type), "%s", x->error_type);
        snprintf(hit.message, sizeof(hit.message), "%s", x->message);
        if ((x->headers && !(hit.headers = json_deep_copy(x->headers))) ||
            (x->body && !(hit.body = json_deep_copy(x->body))) ||
            (x->stream && !(hit.stream = json_deep_copy(x->stream)))) {
            json_decref(hit.headers);
            json_decref(hit.body);
            rc = -ENOMEM;
            break;
        }
        if (x->remaining > 0)
            x->remaining--;
        x->hits++;
        *ret_hit = hit;
        rc = 1;
        break;
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

void fake_fault_hit_clear(struct fake_fault_hit *hit)
{
    if (!hit)
        return;
    json_decref(hit->headers);
    json_decref(hit->body);
    json_decref(hit->stream);
    memset(hit, 0, sizeof(*hit));
    hit->delay_ms = -1;
}

static json_t *fault_json(const struct fault *x, uint64_t now_ms)
{
    json_t *o = json_pack("{s:I,s:s}", "id", (json_int_t)x->id, "route",
                          x->route < 0 ? "*" : fake_route_name((enum fake_route)x->route));
    if (!o)
        return NULL;
    json_object_set_new(o, "status", x->status ? json_integer(x->status) : json_null());
    json_object_set_new(o, "error_type",
                        x->error_type[0] ? json_string(x->error_type) : json_null());
    json_object_set_new(o, "model", x->model[0] ? json_string(x->model) : json_null());
    json_object_set_new(o, "message", x->message[0] ? json_string(x->message) : json_null());
    json_object_set_new(o, "headers", x->headers ? json_deep_copy(x->headers) : json_object());
    json_object_set_new(o, "delay_ms", x->delay_ms >= 0 ? json_integer(x->delay_ms) : json_null());
    json_object_set_new(o, "hang", json_boolean(x->hang));
    json_object_set_new(o, "reset", json_boolean(x->reset));
    json_object_set_new(o, "malformed", json_boolean(x->malformed));
    json_object_set_new(o, "stream", x->stream ? json_deep_copy(x->stream) : json_null());
    json_object_set_new(o, "remaining",
                        x->remaining >= 0 ? json_integer(x->remaining) : json_null());
    json_object_set_new(o, "expires_in_ms",
                        x->expires_ms == 0 ? json_null()
                        : x->expires_ms > now_ms
                            ? json_integer((json_int_t)(x->expires_ms - now_ms))
                            : json_integer(0));
    json_object_set_new(o, "hits", json_integer((json_int_t)x->hits));
    json_object_set_new(o, "active", json_boolean(fault_active(x, now_ms)));
    return o;
}

json_t *fake_faults_list(struct fake_faults *f, uint64_t now_ms)
{
    json_t *out = json_array();
    if (!out)
        return NULL;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->len; i++) {
        if (json_array_append_new(out, fault_json(&f->items[i], now_ms)) < 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return out;
}

int fake_faults_remove(struct fake_faults *f, uint64_t id)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->len; i++) {
        if (f->items[i].id == id) {
            remove_at(f, i);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}
