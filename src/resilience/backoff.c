/*
 * backoff.c — retry classification, full-jitter backoff and retry-after
 * parsing (see backoff.h). Header values come from the network, so every
 * parser here is strict, bounded and free of locale and floating point:
 * delays are computed in exact integer arithmetic and saturate instead of
 * overflowing.
 */
#include "agentd/backoff.h"

#include "agentd/clock.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

enum backoff_class backoff_classify_status(long status, int x_should_retry)
{
    if (x_should_retry == 0)
        return BACKOFF_PERMANENT;
    if (x_should_retry == 1)
        return BACKOFF_TRANSIENT;
    if (status <= 0)
        return BACKOFF_TRANSIENT;
    if (status >= 500 && status <= 599)
        return BACKOFF_TRANSIENT;
    switch (status) {
    case 408: /* request timeout */
    case 409: /* conflict: the upstream asks to try again (lock/contention) */
    case 429: /* rate limited */
        return BACKOFF_TRANSIENT;
    default:
        return BACKOFF_PERMANENT;
    }
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Bounds and trims a header value. Returns false when absent, too long or empty. */
static bool header_trim(const char *value, const char **ret_start, size_t *ret_len)
{
    if (!value)
        return false;
    size_t len = strnlen(value, BACKOFF_RETRY_AFTER_MAX_HDR_BYTES + 1);
    if (len > BACKOFF_RETRY_AFTER_MAX_HDR_BYTES)
        return false;
    const char *s = value;
    while (len > 0 && is_ows(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_ows(s[len - 1]))
        len--;
    if (len == 0)
        return false;
    *ret_start = s;
    *ret_len = len;
    return true;
}

int backoff_parse_should_retry(const char *value)
{
    const char *s;
    size_t len;

    if (!header_trim(value, &s, &len))
        return -1;
    if (len == 4 && strncasecmp(s, "true", 4) == 0)
        return 1;
    if (len == 5 && strncasecmp(s, "false", 5) == 0)
        return 0;
    return -1;
}

uint64_t backoff_rng_next(uint64_t *rng_state)
{
    uint64_t z = (*rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias: rejects the short last cycle of 2^64 mod n values. */
static uint64_t rng_below(uint64_t *rng_state, uint64_t n)
{
    uint64_t threshold = (0 - n) % n;
    uint64_t r;
    do {
        r = backoff_rng_next(rng_state);
    } while (r < threshold);
    return r % n;
}

int64_t backoff_full_jitter_ms(int retry_index, int64_t initial_ms, int64_t max_delay_ms,
                               uint64_t *rng_state)
{
    if (initial_ms <= 0 || max_delay_ms <= 0)
        return 0;
    if (retry_index < 0)
        retry_index = 0;

    /* initial * 2^i <= max  <=>  initial <= max >> i, so the shift below never overflows. */
    int64_t cap;
    if (retry_index >= 63 || initial_ms > (max_delay_ms >> retry_index))
        cap = max_delay_ms;
    else
        cap = initial_ms << retry_index;
    return (int64_t)rng_below(rng_state, (uint64_t)cap + 1);
}

/*
 * Parses "DIGITS[.DIGITS]" as a count of units where one unit is
 * 10^frac_digits ms (0 for milliseconds, 3 for seconds). Digits beyond the
 * ms resolution round up, so the server never sees us come back early.
 */
static bool parse_delay(const char *s, size_t len, int frac_digits, int64_t *ret_ms)
{
    size_t i = 0;
    int64_t whole = 0;
    bool saturated = false;

    while (i < len && is_digit(s[i])) {
        if (!saturated) {
            whole = whole * 10 + (s[i] - '0');
            saturated = whole > BACKOFF_RETRY_AFTER_MAX_MS;
        }
        i++;
    }
    if (i == 0)
        return false;

    int64_t frac = 0;
    int frac_seen = 0;
    bool round_up = false;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && is_digit(s[i])) {
            if (frac_seen < frac_digits) {
                frac = frac * 10 + (s[i] - '0');
                frac_seen++;
            } else if (s[i] != '0') {
                round_up = true;
            }
            i++;
        }
        if (i == start)
            return false;
    }
    if (i != len)
        return false;

    for (; frac_seen < frac_digits; frac_seen++)
        frac *= 10;
    /* whole <= 2^40 here unless saturated, so * 1000 stays far below INT64_MAX. */
    int64_t ms = whole;
    for (int k = 0; k < frac_digits && !saturated; k++)
        ms *= 10;
    ms += frac + (round_up ? 1 : 0);
    if (saturated || ms > BACKOFF_RETRY_AFTER_MAX_MS)
        ms = BACKOFF_RETRY_AFTER_MAX_MS;
    *ret_ms = ms;
    return true;
}

static bool parse_2digits(const char *s, int *ret)
{
    if (!is_digit(s[0]) || !is_digit(s[1]))
        return false;
    *ret = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

static int find_name(const char *s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (memcmp(s, names[i], 3) == 0)
            return i;
    return -1;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT", exactly 29 bytes. */
static bool parse_imf_fixdate(const char *s, size_t len, int64_t *ret_epoch_ms)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int day, hour, min, sec, year_hi, year_lo;

    if (len != 29)
        return false;
    if (find_name(s, days, 7) < 0 || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return false;
    int month = find_name(s + 8, months, 12) + 1;
    if (month == 0 || !parse_2digits(s + 5, &day) || !parse_2digits(s + 12, &year_hi) ||
        !parse_2digits(s + 14, &year_lo) || !parse_2digits(s + 17, &hour) ||
        !parse_2digits(s + 20, &min) || !parse_2digits(s + 23, &sec))
        return false;

    int64_t year = year_hi * 100 + year_lo;
    int mdays = month_days[month - 1] + (month == 2 && is_leap(year) ? 1 : 0);
    /* sec 60 is a leap second; it simply lands on the next minute. */
    if (day < 1 || day > mdays || hour > 23 || min > 59 || sec > 60)
        return false;
    int64_t secs = clock_days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;
    *ret_epoch_ms = secs * 1000;
    return true;
}

int64_t backoff_retry_after_ms(const char *retry_after_ms_hdr, const char *retry_after_hdr,
                               int64_t now_epoch_ms)
{
    const char *s;
    size_t len;
    int64_t ms;

    if (header_trim(retry_after_ms_hdr, &s, &len) && parse_delay(s, len, 0, &ms))
        return ms;
    if (!header_trim(retry_after_hdr, &s, &len))
        return -1;
    if (parse_delay(s, len, 3, &ms))
        return ms;

    int64_t date_ms, delay;
    if (!parse_imf_fixdate(s, len, &date_ms))
        return -1;
    /* The date is within a few centuries of 1970; only a hostile now can overflow. */
    if (__builtin_sub_overflow(date_ms, now_epoch_ms, &delay))
        delay = now_epoch_ms < 0 ? BACKOFF_RETRY_AFTER_MAX_MS : 0;
    if (delay < 0)
        return 0;
    return delay > BACKOFF_RETRY_AFTER_MAX_MS ? BACKOFF_RETRY_AFTER_MAX_MS : delay;
}
