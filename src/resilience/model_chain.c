/*
 * model_chain.c — the model fallback chain and its one decision (see model_chain.h).
 */
#include "agentd/model_chain.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const reason_names[] = {
    [MODEL_FALLBACK_NONE] = "none",
    [MODEL_FALLBACK_OVERLOADED] = "overloaded",
    [MODEL_FALLBACK_UNAVAILABLE] = "unavailable",
    [MODEL_FALLBACK_RATE_LIMITED] = "rate_limited",
    [MODEL_FALLBACK_CIRCUIT_OPEN] = "circuit_open",
};

const char *model_fallback_reason_name(enum model_fallback_reason r)
{
    return (unsigned)r <= MODEL_FALLBACK_CIRCUIT_OPEN ? reason_names[r] : "none";
}

static bool name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("._:@/-", c) != NULL;
}

/* Adds name[0..len) to the chain after checking it. A fallback's name also becomes part of a
   Redis key (its own limiter), so it is held to a safe alphabet; the primary model is taken as
   AGENTD_MODEL gives it. */
static int add(struct model_chain *c, const char *name, size_t len, bool strict, char *err,
               size_t errlen)
{
    if (len == 0 || len > MODEL_NAME_MAX) {
        snprintf(err, errlen, "model names are 1..%d bytes, got %zu", MODEL_NAME_MAX, len);
        return -EINVAL;
    }
    for (size_t i = 0; strict && i < len; i++) {
        if (!name_char(name[i])) {
            snprintf(err, errlen, "model '%.*s': only letters, digits and ._:@/- are allowed",
                     (int)(len < 64 ? len : 64), name);
            return -EINVAL;
        }
    }
    if (c->n == MODEL_CHAIN_MAX) {
        snprintf(err, errlen, "at most %d fallback models", MODEL_CHAIN_MAX - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (strlen(c->names[i]) == len && memcmp(c->names[i], name, len) == 0) {
            snprintf(err, errlen, "model '%.*s' appears twice in the chain", (int)len, name);
            return -EINVAL;
        }
    }
    memcpy(c->names[c->n], name, len);
    c->names[c->n][len] = '\0';
    c->n++;
    return 0;
}

int model_chain_parse(const char *primary, const char *fallbacks, struct model_chain *ret,
                      char *err, size_t errlen)
{
    struct model_chain c = {0};
    int rc = add(&c, primary ? primary : "", primary ? strlen(primary) : 0, false, err, errlen);
    for (const char *p = fallbacks && *fallbacks ? fallbacks : NULL; rc == 0 && p;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p;
        while (b < end && *b == ' ')
            b++;
        while (end > b && end[-1] == ' ')
            end--;
        rc = add(&c, b, (size_t)(end - b), true, err, errlen);
        p = comma ? comma + 1 : NULL;
    }
    if (rc == 0)
        *ret = c;
    return rc;
}

enum model_fallback_reason model_chain_reason(const struct model_failure *f)
{
    switch (f->outcome) {
    case CALL_BREAKER_OPEN:
        return MODEL_FALLBACK_CIRCUIT_OPEN;
    case CALL_EXHAUSTED:
        if (f->last_status == 529)
            return MODEL_FALLBACK_OVERLOADED;
        if (f->last_status == 429)
            return f->spend_limit ? MODEL_FALLBACK_NONE : MODEL_FALLBACK_RATE_LIMITED;
        /* 5xx, 408/409, timeouts and connection errors (0); a 2xx the engine could not use is
           the model's failure too. */
        return MODEL_FALLBACK_UNAVAILABLE;
    default:
        /* ok, a permanent 4xx, this replica's own limiter, the deadline. */
        return MODEL_FALLBACK_NONE;
    }
}

int model_chain_next(const struct model_chain *c, size_t current)
{
    return current + 1 < c->n ? (int)(current + 1) : -1;
}
