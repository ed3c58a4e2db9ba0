/*
 * test_url.c — unit tests for url.c: what a redacted URL keeps and replaces,
 * the snprintf-like cut, the host a URL names, and which hosts count as
 * loopback.
 */
#include "agentd/url.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* --- redaction --- */

static const struct {
    const char *url;
    const char *redacted;
} redact_cases[] = {
    {"https://api.anthropic.com", "https://api.anthropic.com"},
    {"http://127.0.0.1:8081/v1", "http://127.0.0.1:8081/v1"},
    {"https://user:pw@host/path?key=secret", "https://***@host/path?***"},
    {"https://user:pw@host:8443/v1?key=k#top", "https://***@host:8443/v1?***#***"},
    {"https://token@host", "https://***@host"},
    {"https://u:p@ss@host/x", "https://***@host/x"}, /* the last '@' ends the userinfo */
    {"https://host/a@b", "https://host/a@b"},        /* an '@' in the path is not userinfo */
    {"https://host?q=1", "https://host?***"},
    {"https://host/p#frag", "https://host/p#***"},
    {"https://host/p?#", "https://host/p?#"}, /* empty parts stay as they are */
    {"https://@host", "https://@host"},
    {"http://u:p@[::1]:8080/v1?a=b", "http://***@[::1]:8080/v1?***"},
    {"", ""},
    {"host:80/x?y", "host:80/x?***"}, /* no scheme: starts at the authority */
};

START_TEST(test_url_redact_replaces_userinfo_query_and_fragment_only)
{
    char buf[128];
    size_t n = url_redact(redact_cases[_i].url, buf, sizeof(buf));

    ck_assert_str_eq(buf, redact_cases[_i].redacted);
    ck_assert_uint_eq(n, strlen(redact_cases[_i].redacted));
}
END_TEST

START_TEST(test_url_redact_never_shows_the_secret_parts)
{
    char buf[256];

    url_redact("https://alice:S3CRET@example.com:443/v1/messages?api_key=S3CRET#S3CRET", buf,
               sizeof(buf));
    ck_assert_ptr_null(strstr(buf, "S3CRET"));
    ck_assert_ptr_null(strstr(buf, "alice"));
    ck_assert_str_eq(buf, "https://***@example.com:443/v1/messages?***#***");
}
END_TEST

START_TEST(test_url_redact_cuts_like_snprintf)
{
    char buf[12];
    const char *url = "https://user:pw@host/path?x=1";
    size_t n = url_redact(url, buf, sizeof(buf));

    ck_assert_uint_eq(n, strlen("https://***@host/path?***"));
    ck_assert_str_eq(buf, "https://***");
    ck_assert_uint_eq(url_redact(url, NULL, 0), n);
    ck_assert_uint_eq(url_redact(url, buf, 1), n);
    ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_url_redact_adds_at_most_the_documented_bytes)
{
    char buf[64];
    const char *worst = "http://@h?#"; /* none of these empty parts grows */
    const char *grows = "http://u@h?q#f";

    ck_assert_uint_le(url_redact(worst, buf, sizeof(buf)), strlen(worst) + URL_REDACT_EXTRA_BYTES);
    ck_assert_uint_le(url_redact(grows, buf, sizeof(buf)), strlen(grows) + URL_REDACT_EXTRA_BYTES);
    ck_assert_str_eq(buf, "http://***@h?***#***");
}
END_TEST

/* --- host --- */

static const struct {
    const char *url;
    const char *host; /* NULL: no host */
} host_cases[] = {
    {"https://api.anthropic.com", "api.anthropic.com"},
    {"http://127.0.0.1:8081/v1", "127.0.0.1"},
    {"http://user:pw@Example.COM:80?x", "Example.COM"},
    {"http://[::1]:8080/", "::1"},
    {"http://[fe80::1]", "fe80::1"},
    {"http://u@[::1]", "::1"},
    {"http://localhost#x", "localhost"},
    {"http://", NULL},
    {"http://:80/", NULL},
    {"http://user@/", NULL},
    {"http://[::1", NULL},
};

START_TEST(test_url_host_strips_userinfo_port_and_brackets)
{
    char buf[64];
    bool ok = url_host(host_cases[_i].url, buf, sizeof(buf));

    if (host_cases[_i].host) {
        ck_assert_msg(ok, "%s", host_cases[_i].url);
        ck_assert_str_eq(buf, host_cases[_i].host);
    } else {
        ck_assert_msg(!ok, "%s gave '%s'", host_cases[_i].url, buf);
        ck_assert_str_eq(buf, "");
    }
}
END_TEST

START_TEST(test_url_host_that_does_not_fit_is_refused)
{
    char buf[5];

    ck_assert(url_host("http://abcd:1", buf, sizeof(buf)));
    ck_assert_str_eq(buf, "abcd");
    ck_assert(!url_host("http://abcde:1", buf, sizeof(buf)));
    ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_url_plain_http_is_recognised_in_any_case)
{
    ck_assert(url_is_plain_http("http://x"));
    ck_assert(url_is_plain_http("HTTP://x"));
    ck_assert(!url_is_plain_http("https://x"));
    ck_assert(!url_is_plain_http("httpx://x"));
    ck_assert(!url_is_plain_http(NULL));
}
END_TEST

/* --- loopback --- */

static const struct {
    const char *host;
    bool loopback;
} loopback_cases[] = {
    {"127.0.0.1", true},
    {"127.255.0.9", true},
    {"localhost", true},
    {"LocalHost", true},
    {"localhost.", true},
    {"::1", true},
    {"[::1]", true},
    {"0:0:0:0:0:0:0:1", true},
    {"::ffff:127.0.0.1", true},
    {"0.0.0.0", false},
    {"::", false},
    {"[::]", false},
    {"128.0.0.1", false},
    {"10.0.0.1", false},
    {"::ffff:10.0.0.1", false},
    {"localhost.example.com", false},
    {"my-localhost", false},
    {"127.0.0.1.nip.io", false},
    {"api.anthropic.com", false},
    {"", false},
    {"[]", false},
};

START_TEST(test_url_loopback_hosts)
{
    ck_assert_msg(url_host_is_loopback(loopback_cases[_i].host) == loopback_cases[_i].loopback,
                  "%s", loopback_cases[_i].host);
}
END_TEST

START_TEST(test_url_loopback_null_is_false)
{
    ck_assert(!url_host_is_loopback(NULL));
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

START_TEST(test_url_redis_parses_every_part)
{
    struct url_redis r;

    ck_assert_int_eq(url_redis_parse("redis://u:p@w@cache.svc:6380/3", &r), 0);
    ck_assert_str_eq(r.host, "cache.svc");
    ck_assert_int_eq(r.port, 6380);
    ck_assert_int_eq(r.db, 3);
    ck_assert_str_eq(r.user, "u");
    ck_assert_str_eq(r.password, "p@w");
    ck_assert_int_eq(url_redis_parse("redis://:secret@[::1]", &r), 0);
    ck_assert_str_eq(r.host, "::1");
    ck_assert_int_eq(r.port, URL_REDIS_DEFAULT_PORT);
    ck_assert_int_eq(r.db, 0);
    ck_assert_str_eq(r.user, "");
    ck_assert_str_eq(r.password, "secret");
    ck_assert_int_eq(url_redis_parse("REDIS://127.0.0.1:1/", &r), 0);
    ck_assert_int_eq(r.port, 1);
    ck_assert_str_eq(r.password, "");
}
END_TEST

static const char *const redis_bad[] = {
    "",
    "http://h:6379",
    "redis://",
    "redis://:6379",
    "redis://h:0",
    "redis://h:65536",
    "redis://h:63a9",
    "redis://h/x",
    "redis://h/1/2",
    "redis://h/-1",
    "redis://h?db=1",
    "redis://h#f",
    "redis://pw@h",
    "redis://h h",
    "redis://[::1",
};

START_TEST(test_url_redis_refuses_malformed)
{
    struct url_redis r = {.port = -7};

    ck_assert_msg(url_redis_parse(redis_bad[_i], &r) == -EINVAL, "accepted '%s'", redis_bad[_i]);
    ck_assert_int_eq(r.port, -7); /* untouched */
}
END_TEST

START_TEST(test_url_redis_tls_is_refused_by_name)
{
    struct url_redis r;

    ck_assert_int_eq(url_redis_parse("rediss://h:6379", &r), -EPROTONOSUPPORT);
    ck_assert_int_eq(url_redis_parse(NULL, &r), -EINVAL);
}
END_TEST

static Suite *url_suite(void)
{
    Suite *s = suite_create("url");
    TCase *redact = tcase_create("redact");
    TCase *host = tcase_create("host");
    TCase *loopback = tcase_create("loopback");

    tcase_add_loop_test(redact, test_url_redact_replaces_userinfo_query_and_fragment_only, 0,
                        N(redact_cases));
    tcase_add_test(redact, test_url_redact_never_shows_the_secret_parts);
    tcase_add_test(redact, test_url_redact_cuts_like_snprintf);
    tcase_add_test(redact, test_url_redact_adds_at_most_the_documented_bytes);
    suite_add_tcase(s, redact);

    tcase_add_loop_test(host, test_url_host_strips_userinfo_port_and_brackets, 0, N(host_cases));
    tcase_add_test(host, test_url_host_that_does_not_fit_is_refused);
    tcase_add_test(host, test_url_plain_http_is_recognised_in_any_case);
    suite_add_tcase(s, host);

    tcase_add_loop_test(loopback, test_url_loopback_hosts, 0, N(loopback_cases));
    tcase_add_test(loopback, test_url_loopback_null_is_false);
    suite_add_tcase(s, loopback);

    TCase *redis = tcase_create("redis");
    tcase_add_test(redis, test_url_redis_parses_every_part);
    tcase_add_loop_test(redis, test_url_redis_refuses_malformed, 0, N(redis_bad));
    tcase_add_test(redis, test_url_redis_tls_is_refused_by_name);
    suite_add_tcase(s, redis);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(url_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
