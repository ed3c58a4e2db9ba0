/*
 * url.h — pure helpers on the URLs and hosts of agentd's settings: a URL
 * redacted for printing (its credentials and query never reach a log line or
 * the --check-config output), the host a URL names, and whether a host is
 * loopback (the start-up warnings about exposure).
 *
 * A URL here is "scheme://[userinfo@]host[:port][/path][?query][#fragment]",
 * as config.c accepts it; nothing is percent-decoded. A string without
 * "://" is read as starting at its authority.
 *
 * Pure: no I/O, no allocation, no global state; safe from any thread at once.
 * Strings are read only, never kept.
 */
#ifndef AGENTD_URL_H
#define AGENTD_URL_H

#include <stdbool.h>
#include <stddef.h>

/* url_redact() adds at most this many bytes to a URL ("@" -> "***@", "?" -> "?***", ...). */
#define URL_REDACT_EXTRA_BYTES 9

/*
 * Writes url with its userinfo, query and fragment each replaced by "***" when not empty, so
 * "https://user:pw@host:8443/v1?key=k#top" is printed with "***@host:8443/v1?***#***" after
 * its scheme. The scheme, host, port and path are kept. The userinfo ends at the authority's
 * last '@' (a password may hold an unencoded '@'). Like snprintf: returns the length of the whole
 * redacted URL, writes at most cap - 1 bytes of it and a NUL when cap > 0 (a return >= cap means
 * it was cut).
 */
size_t url_redact(const char *url, char *buf, size_t cap);

/* Copies the host of url (no userinfo, port or IPv6 brackets) into buf: true, or false when the
   URL names no host or it does not fit in cap - 1 bytes (buf then holds ""). */
bool url_host(const char *url, char *buf, size_t cap);

/* Whether url starts with "http://" (any case): plain text on the wire. */
bool url_is_plain_http(const char *url);

/* Whether host names this machine's loopback interface: "localhost" (any case, optional
   trailing dot), an IPv4 literal in 127.0.0.0/8, "::1" or an IPv4-mapped 127.0.0.0/8 IPv6
   literal, with or without brackets. Any other name is not loopback, whatever it resolves
   to. NULL -> false. */
bool url_host_is_loopback(const char *host);

/* A Redis address, as AGENTD_REDIS_URL gives it. */
#define URL_REDIS_HOST_MAX     255
#define URL_REDIS_CRED_MAX     512
#define URL_REDIS_DEFAULT_PORT 6379
#define URL_REDIS_MAX_DB       1000000
struct url_redis {
    char host[URL_REDIS_HOST_MAX + 1];     /* without IPv6 brackets */
    int port;                              /* 1..65535, 6379 when not given */
    int db;                                /* 0..URL_REDIS_MAX_DB, 0 when not given */
    char user[URL_REDIS_CRED_MAX + 1];     /* "" when none (the default user) */
    char password[URL_REDIS_CRED_MAX + 1]; /* "" when none */
};

/*
 * Parses "redis://[[user]:password@]host[:port][/db]" (no query, no fragment, printable ASCII
 * without spaces; nothing is percent-decoded; the password ends at the authority's last '@').
 * 0, -EPROTONOSUPPORT for "rediss://" (TLS is not supported), or -EINVAL. *ret is written on
 * success only; callers wipe it when done (it may hold a password).
 */
int url_redis_parse(const char *url, struct url_redis *ret);

#endif
