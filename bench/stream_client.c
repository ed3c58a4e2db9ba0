/*
 * stream_client.c — bench_stream_client: N concurrent POST /v1/agent runs on
 * one curl multi handle, all started at once, streamed ("stream": true) or
 * not, and what each took: for a stream, the time to its first text.delta
 * and to its end; for a plain run, the time to its answer. A run counts as an
 * error unless it answered 200 and (streamed) ended with run.completed.
 *
 * Usage: bench_stream_client URL N stream|plain BODY_JSON
 * Prints key=value lines (ok, errors, first_delta_* and total_* in ms:
 * p50, p99, mean, max). Exit status 0 when every run succeeded, 1 otherwise,
 * 2 on bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "bench_common.h"

struct run {
    CURL *easy;
    int64_t start_ns, first_delta_ns, end_ns;
    char tail[64]; /* the last bytes received: is the last event run.completed? */
    size_t tail_len;
    char window[32]; /* the bytes before this chunk, to find "event: text.delta" across chunks */
    size_t window_len;
    long status;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct run *r = arg;
    size_t n = size * nmemb;
    static const char marker[] = "event: text.delta";
    if (!r->first_delta_ns) {
        char buf[32 + 4096];
        size_t take = n < 4096 ? n : 4096;
        memcpy(buf, r->window, r->window_len);
        memcpy(buf + r->window_len, data, take);
        buf[r->window_len + take] = '\0';
        if (strstr(buf, marker))
            r->first_delta_ns = bench_now_ns();
        size_t keep = take < sizeof(r->window) ? take : sizeof(r->window) - 1;
        memcpy(r->window, data + take - keep, keep);
        r->window_len = keep;
    }
    /* Keep the last bytes only. */
    if (n >= sizeof(r->tail)) {
        memcpy(r->tail, data + n - sizeof(r->tail), sizeof(r->tail));
        r->tail_len = sizeof(r->tail);
    } else {
        size_t keep = sizeof(r->tail) - n < r->tail_len ? sizeof(r->tail) - n : r->tail_len;
        memmove(r->tail, r->tail + r->tail_len - keep, keep);
        memcpy(r->tail + keep, data, n);
        r->tail_len = keep + n;
    }
    return n;
}

static void print_lat(const char *name, int64_t *v, long n)
{
    if (n == 0) {
        printf("%s_p50_ms=\n%s_p99_ms=\n%s_mean_ms=\n%s_max_ms=\n", name, name, name, name);
        return;
    }
    struct bench_lat l = bench_lat_summary(v, n);
    printf("%s_p50_ms=%.1f\n%s_p99_ms=%.1f\n%s_mean_ms=%.1f\n%s_max_ms=%.1f\n", name,
           l.p50_us / 1000, name, l.p99_us / 1000, name, l.mean_us / 1000, name,
           l.max_us / 1000);
}

int main(int argc, char **argv)
{
    long n;
    if (argc != 5 || !bench_parse_long(argv[2], 1, 100000, &n) ||
        (strcmp(argv[3], "stream") != 0 && strcmp(argv[3], "plain") != 0)) {
        fprintf(stderr, "usage: %s URL N stream|plain BODY_JSON\n", argv[0]);
        return 2;
    }
    bool stream = strcmp(argv[3], "stream") == 0;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    struct run *runs = calloc((size_t)n, sizeof(*runs));
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    for (long i = 0; i < n; i++) {
        CURL *e = curl_easy_init();
        runs[i].easy = e;
        curl_easy_setopt(e, CURLOPT_URL, argv[1]);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, argv[4]);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &runs[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &runs[i]);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 120000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        runs[i].start_ns = bench_now_ns();
        curl_multi_add_handle(m, e);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct run *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            r->end_ns = bench_now_ns();
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    long ok = 0, errors = 0, nd = 0;
    int64_t *first = calloc((size_t)n, sizeof(*first)), *total = calloc((size_t)n, sizeof(*total));
    for (long i = 0; i < n; i++) {
        struct run *r = &runs[i];
        char tail[sizeof(r->tail) + 1];
        memcpy(tail, r->tail, r->tail_len);
        tail[r->tail_len] = '\0';
        /* The answer body of run.completed is long: its event line is not in the tail, but the
           end of every stream is "}\n\n" after a data line, and only run.completed/run.failed
           end it; run.failed carries "status". */
        bool good = r->status == 200 && (!stream || (r->first_delta_ns && r->tail_len >= 3 &&
                                                     strcmp(tail + r->tail_len - 3, "}\n\n") == 0 &&
                                                     !strstr(tail, "\"status\":")));
        if (!good) {
            errors++;
            continue;
        }
        ok++;
        total[ok - 1] = r->end_ns - r->start_ns;
        if (stream)
            first[nd++] = r->first_delta_ns - r->start_ns;
        curl_multi_remove_handle(m, r->easy);
        curl_easy_cleanup(r->easy);
    }
    printf("mode=%s\nruns=%ld\nok=%ld\nerrors=%ld\n", argv[3], n, ok, errors);
    print_lat("first_delta", first, nd);
    print_lat("total", total, ok);
    return errors ? 1 : 0;
}
