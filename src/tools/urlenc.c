/*
 * urlenc.c — RFC 3986 percent-encoding of one URL component (see urlenc.h).
 */
#include "agentd/urlenc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Spelled out rather than isalnum() so the result never depends on the locale. */
static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

char *urlenc_component(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    if (!s) {
        errno = EINVAL;
        return NULL;
    }
    size_t len = strlen(s);
    if (len > (SIZE_MAX - 1) / 3) {
        errno = ENOMEM;
        return NULL;
    }
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;

    char *w = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c)) {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 0x0F];
        }
    }
    *w = '\0';
    return out;
}
