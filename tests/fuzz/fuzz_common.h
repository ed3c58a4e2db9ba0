/*
 * fuzz_common.h — helpers shared by the libFuzzer targets in tests/fuzz/:
 * a property check that aborts (so libFuzzer, ASan and the replay runner all
 * report it as a crash), a NUL-terminated copy of the input, and a reference
 * UTF-8 validator written independently of the daemon's, so that the targets
 * can check what the parsers promise about their output, not only that they
 * do not crash.
 */
#ifndef AGENTD_FUZZ_COMMON_H
#define AGENTD_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise is a bug like a crash: abort so every runner reports it. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* jansson seeds its hash function from /dev/urandom on first use; a fixed
 * seed makes a finding that depends on bucket layout reproducible. */
static inline void fuzz_init_once(void)
{
    static bool done;
    if (!done) {
        json_object_seed(0x5eed1234u);
        done = true;
    }
}

/* A malloc'd NUL-terminated copy of at most max bytes of data (stops at the
 * first NUL, as a C string would). NULL only when out of memory. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size, size_t max)
{
    size_t n = size < max ? size : max;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* A malloc'd copy of exactly size bytes (not NUL-terminated, at least one
 * byte allocated) so ASan sees any read past the end of a body. */
static inline char *fuzz_body(const uint8_t *data, size_t size)
{
    char *b = malloc(size ? size : 1);
    if (b && size)
        memcpy(b, data, size);
    return b;
}

/* Every target's entry: seeds jansson, drops inputs larger than the daemon
 * accepts (cap), and returns a body copy as fuzz_body does (NULL = skip). */
static inline char *fuzz_enter(const uint8_t *data, size_t size, size_t cap)
{
    fuzz_init_once();
    return size > cap ? NULL : fuzz_body(data, size);
}

/*
 * Reference UTF-8 check by decoding: the shortest form for each code point,
 * no surrogates, nothing above U+10FFFF, no truncated sequence; NUL is a
 * code point like any other.
 */
static inline bool fuzz_utf8_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned c = p[i];
        size_t extra;
        uint32_t cp, min;

        if (c <= 0x7f) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= extra)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

/* A NUL-terminated string that fits in cap bytes. */
static inline bool fuzz_terminated(const char *buf, size_t cap)
{
    return memchr(buf, '\0', cap) != NULL;
}

#endif
