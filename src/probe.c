/*
 * probe.c — `agentd probe live|ready` (probe.h): one GET against a running
 * daemon's health endpoint, mapped to an exit status for container probes.
 */
#include "agentd/probe.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define PROBE_DEFAULT_HOST       "127.0.0.1"
#define PROBE_DEFAULT_PORT       8080
#define PROBE_DEFAULT_TIMEOUT_MS 2000L
#define PROBE_MAX_TIMEOUT_MS     600000L
/* Same cap as config.c's URLs; the health path is appended to it. */
#define PROBE_URL_MAX_BYTES    2048
#define PROBE_FULL_URL_BYTES   (PROBE_URL_MAX_BYTES + 32)
#define PROBE_HOST_MAX_BYTES   255
#define PROBE_BODY_LIMIT_BYTES (64 * 1024)

static int help(void)
{
    printf("usage: agentd probe live|ready [--url URL] [--timeout-ms N]\n"
           "  GETs URL/health/live or URL/health/ready; exit 0 on HTTP 200, 1 otherwise,\n"
           "  2 on a usage error. URL defaults to http://<AGENTD_LISTEN> (0.0.0.0 and ::\n"
           "  become 127.0.0.1; unset = 127.0.0.1:8080); --timeout-ms 1..600000 "
           "(default 2000).\n");
    return PROBE_EXIT_OK;
}

/* One line, like every other failure, so probe logs stay readable. */
static int usage_error(const char *what)
{
    fprintf(stderr,
            "agentd probe: %s (usage: agentd probe live|ready [--url URL] [--timeout-ms N])\n",
            what);
    return PROBE_EXIT_USAGE;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Decimal in [min, max] with nothing else around it; -1 otherwise. */
static long parse_bounded(const char *s, long min, long max)
{
    long v;

    if (!all_digits(s) || strlen(s) > 9)
        return -1;
    v = strtol(s, NULL, 10);
    return v >= min && v <= max ? v : -1;
}

static bool is_wildcard(const char *host)
{
    return !*host || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

/*
 * AGENTD_LISTEN ("host:port", "[v6]:port") -> "http://host:port". A wildcard
 * host cannot be connected to, so the loopback address stands in for it.
 * 0 or -1.
 */
static int url_from_listen(const char *listen, char *buf, size_t len)
{
    char host[PROBE_HOST_MAX_BYTES + 1];
    const char *port_text = NULL;
    const char *host_start = listen;
    size_t host_len;
    long port = PROBE_DEFAULT_PORT;

    if (!listen || !*listen) {
        snprintf(buf, len, "http://%s:%d", PROBE_DEFAULT_HOST, PROBE_DEFAULT_PORT);
        return 0;
    }
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || (close[1] != '\0' && close[1] != ':'))
            return -1;
        host_start = listen + 1;
        host_len = (size_t)(close - host_start);
        port_text = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strrchr(listen, ':');
        host_len = colon ? (size_t)(colon - listen) : strlen(listen);
        port_text = colon ? colon + 1 : NULL;
    }
    if (host_len > PROBE_HOST_MAX_BYTES)
        return -1;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    if (port_text) {
        /* Port 0 (ephemeral) names no port a probe could reach. */
        port = parse_bounded(port_text, 1, 65535);
        if (port < 0)
            return -1;
    }
    if (is_wildcard(host))
        snprintf(buf, len, "http://%s:%ld", PROBE_DEFAULT_HOST, port);
    else if (strchr(host, ':'))
        snprintf(buf, len, "http://[%s]:%ld", host, port);
    else
        snprintf(buf, len, "http://%s:%ld", host, port);
    return 0;
}

/* Keeps the body from growing without bound; only the status matters. */
static size_t discard_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    size_t *seen = userdata;
    (void)data;
    *seen += size * nmemb;
    return *seen > PROBE_BODY_LIMIT_BYTES ? 0 : size * nmemb;
}

static int fetch(const char *url, long timeout_ms, const char *what)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    size_t body_bytes = 0;
    long status = 0;
    CURLcode rc;
    CURL *curl = curl_easy_init();

    if (!curl) {
        fprintf(stderr, "agentd probe %s: out of memory\n", what);
        return PROBE_EXIT_FAIL;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    /* An empty proxy overrides http_proxy & co: the daemon is reached directly. */
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "agentd-probe");
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body_bytes);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    rc = curl_easy_perform(curl);
    if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);

    if (status == 200)
        return PROBE_EXIT_OK;
    if (status > 0)
        fprintf(stderr, "agentd probe %s: HTTP %ld from %s\n", what, status, url);
    else if (errbuf[0]) /* libcurl's message already names host and port */
        fprintf(stderr, "agentd probe %s: %s\n", what, errbuf);
    else
        fprintf(stderr, "agentd probe %s: %s (%s)\n", what, curl_easy_strerror(rc), url);
    return PROBE_EXIT_FAIL;
}

int probe_main(int argc, char **argv)
{
    const char *what = NULL, *url_arg = NULL;
    long timeout_ms = PROBE_DEFAULT_TIMEOUT_MS;
    char base[PROBE_URL_MAX_BYTES + 1], url[PROBE_FULL_URL_BYTES];
    size_t n;
    int r;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return help();
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--url") == 0) {
            if (!has_value)
                return usage_error("--url needs a value");
            url_arg = argv[++i];
        } else if (strcmp(argv[i], "--timeout-ms") == 0) {
            if (!has_value)
                return usage_error("--timeout-ms needs a value");
            timeout_ms = parse_bounded(argv[++i], 1, PROBE_MAX_TIMEOUT_MS);
            if (timeout_ms < 0)
                return usage_error("--timeout-ms: expected an integer 1..600000");
        } else if (!what && (strcmp(argv[i], "live") == 0 || strcmp(argv[i], "ready") == 0)) {
            what = argv[i];
        } else {
            char what_arg[96];
            snprintf(what_arg, sizeof(what_arg), "unexpected argument '%.64s'", argv[i]);
            return usage_error(what_arg);
        }
    }
    if (!what)
        return usage_error("say which endpoint: live or ready");

    if (url_arg) {
        if (strncmp(url_arg, "http://", 7) != 0 && strncmp(url_arg, "https://", 8) != 0)
            return usage_error("--url: expected an http:// or https:// URL");
        if (strlen(url_arg) > PROBE_URL_MAX_BYTES)
            return usage_error("--url: longer than 2048 bytes");
        snprintf(base, sizeof(base), "%s", url_arg);
    } else if (url_from_listen(getenv("AGENTD_LISTEN"), base, sizeof(base)) < 0) {
        return usage_error("AGENTD_LISTEN: expected host:port with port 1..65535 "
                           "(an ephemeral port 0 cannot be probed); or pass --url");
    }
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        base[--n] = '\0';
    snprintf(url, sizeof(url), "%s/health/%s", base, what);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "agentd probe %s: cannot initialise libcurl\n", what);
        return PROBE_EXIT_FAIL;
    }
    r = fetch(url, timeout_ms, what);
    curl_global_cleanup();
    return r;
}
