/*
 * url.c — URL redaction, host extraction and the loopback test (see url.h).
 *
 * One parser of the authority serves all three, so the host a warning is
 * about is the host the redacted URL shows.
 */
#include "agentd/url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* Offsets into a URL: [auth, auth_end) is the authority; with userinfo (has_at), it is
   [auth, at) and url[at] is its '@'; [host, host_end) is the host, brackets included. */
struct url_parts {
    size_t auth, at, host, host_end, auth_end;
    bool has_at;
};

static void url_split(const char *url, struct url_parts *p)
{
    const char *sep = strstr(url, "://");

    p->auth = sep ? (size_t)(sep - url) + 3 : 0;
    p->auth_end = p->auth + strcspn(url + p->auth, "/?#");
    p->has_at = false;
    p->at = p->auth;
    for (size_t i = p->auth; i < p->auth_end; i++)
        if (url[i] == '@') {
            p->at = i;
            p->has_at = true;
        }
    p->host = p->has_at ? p->at + 1 : p->auth;
    if (url[p->host] == '[') {
        const char *close = memchr(url + p->host, ']', p->auth_end - p->host);
        p->host_end = close ? (size_t)(close - url) + 1 : p->auth_end;
    } else {
        const char *colon = memchr(url + p->host, ':', p->auth_end - p->host);
        p->host_end = colon ? (size_t)(colon - url) : p->auth_end;
    }
}

/* snprintf-like appending: counts every byte, stores those that fit. */
struct url_out {
    char *buf;
    size_t cap, len;
};

static void url_put(struct url_out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, o->len++)
        if (o->len + 1 < o->cap)
            o->buf[o->len] = s[i];
}

static void url_put_str(struct url_out *o, const char *s)
{
    url_put(o, s, strlen(s));
}

size_t url_redact(const char *url, char *buf, size_t cap)
{
    struct url_out o = {.buf = buf, .cap = cap, .len = 0};
    struct url_parts p;

    url_split(url, &p);
    url_put(&o, url, p.auth);
    if (p.has_at)
        url_put_str(&o, p.at > p.auth ? "***@" : "@");
    url_put(&o, url + p.host, p.auth_end - p.host);

    const char *rest = url + p.auth_end;
    size_t path = strcspn(rest, "?#");
    url_put(&o, rest, path);
    rest += path;
    if (*rest == '?') {
        size_t query = strcspn(rest + 1, "#");
        url_put_str(&o, query ? "?***" : "?");
        rest += 1 + query;
    }
    if (*rest == '#')
        url_put_str(&o, rest[1] ? "#***" : "#");
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}

bool url_host(const char *url, char *buf, size_t cap)
{
    struct url_parts p;
    size_t from, to;

    if (cap > 0)
        buf[0] = '\0';
    url_split(url, &p);
    from = p.host;
    to = p.host_end;
    if (to > from && url[from] == '[') {
        if (url[to - 1] != ']')
            return false;
        from++;
        to--;
    }
    if (to <= from || to - from >= cap)
        return false;
    memcpy(buf, url + from, to - from);
    buf[to - from] = '\0';
    return true;
}

bool url_is_plain_http(const char *url)
{
    return url && strncasecmp(url, "http://", 7) == 0;
}

bool url_host_is_loopback(const char *host)
{
    char bare[INET6_ADDRSTRLEN + 1];
    size_t len;
    struct in_addr v4;
    struct in6_addr v6;

    if (!host)
        return false;
    len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(bare))
        return false;
    memcpy(bare, host, len);
    bare[len] = '\0';
    if (strcasecmp(bare, "localhost") == 0 || strcasecmp(bare, "localhost.") == 0)
        return true;
    if (inet_pton(AF_INET, bare, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, bare, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return false;
}

static bool url_copy_part(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        return false;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return true;
}

/* Decimal digits only, value within lo..hi. */
static bool url_number(const char *s, size_t n, int lo, int hi, int *ret)
{
    long v = 0;

    if (n == 0 || n > 7)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *ret = (int)v;
    return true;
}

int url_redis_parse(const char *url, struct url_redis *ret)
{
    struct url_redis r = {.port = URL_REDIS_DEFAULT_PORT};
    struct url_parts p;
    size_t len;

    if (!url)
        return -EINVAL;
    if (strncasecmp(url, "rediss://", 9) == 0)
        return -EPROTONOSUPPORT;
    if (strncasecmp(url, "redis://", 8) != 0)
        return -EINVAL;
    len = strlen(url);
    for (size_t i = 0; i < len; i++)
        if (url[i] <= ' ' || url[i] > '~')
            return -EINVAL;
    url_split(url, &p);
    if (url[p.auth_end] == '?' || url[p.auth_end] == '#')
        return -EINVAL;
    if (p.has_at) {
        const char *colon = memchr(url + p.auth, ':', p.at - p.auth);
        size_t user_end = colon ? (size_t)(colon - url) : p.at;

        /* Userinfo without ':' could be a user or a password: refused as ambiguous. */
        if (!colon)
            return -EINVAL;
        if (!url_copy_part(r.user, sizeof(r.user), url + p.auth, user_end - p.auth) ||
            !url_copy_part(r.password, sizeof(r.password), colon + 1, p.at - user_end - 1))
            return -EINVAL;
    }
    size_t from = p.host, to = p.host_end;
    if (to > from && url[from] == '[') {
        if (url[to - 1] != ']')
            return -EINVAL;
        from++;
        to--;
    }
    if (to <= from || !url_copy_part(r.host, sizeof(r.host), url + from, to - from))
        return -EINVAL;
    if (p.host_end < p.auth_end) {
        if (url[p.host_end] != ':' ||
            !url_number(url + p.host_end + 1, p.auth_end - p.host_end - 1, 1, 65535, &r.port))
            return -EINVAL;
    }
    const char *path = url + p.auth_end;
    if (*path == '/' && path[1] != '\0') {
        if (!url_number(path + 1, strlen(path + 1), 0, URL_REDIS_MAX_DB, &r.db))
            return -EINVAL;
    } else if (*path != '\0' && strcmp(path, "/") != 0) {
        return -EINVAL;
    }
    *ret = r;
    explicit_bzero(&r, sizeof(r));
    return 0;
}
