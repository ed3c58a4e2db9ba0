/*
 * auth.c — bearer tokens (see auth.h): parsing a list or a file into an
 * immutable set, the constant-time match, the stamp that tells a changed
 * file, and the live set behind a writer-preferring read-write lock.
 */
#include "agentd/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A path is echoed in messages cut to this many bytes. */
#define AUTH_ECHO_MAX_BYTES 64

struct auth_token {
    char *value;
    size_t len;
    char caller[REQUEST_CALLER_ID_BYTES];
};

struct auth_tokens {
    size_t count, alloc;
    struct auth_token *v;
};

struct auth {
    pthread_rwlock_t lock;
    struct auth_tokens *tokens; /* NULL = authentication off */
};

static int auth_fail(char *err, size_t errlen, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int auth_fail(char *err, size_t errlen, int r, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return r;
}

static void auth_echo(char out[static AUTH_ECHO_MAX_BYTES + 4], const char *s)
{
    size_t i;

    for (i = 0; i < AUTH_ECHO_MAX_BYTES && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (s[i] != '\0') {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

/* A token must be a valid header value and never split on a space by a client. */
static bool auth_token_valid(const char *s, size_t len)
{
    if (len < 1 || len > AUTH_TOKEN_MAX_BYTES)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

size_t auth_tokens_count(const struct auth_tokens *t)
{
    return t ? t->count : 0;
}

struct auth_tokens *auth_tokens_free(struct auth_tokens *t)
{
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->count; i++) {
        explicit_bzero(t->v[i].value, t->v[i].len);
        free(t->v[i].value);
    }
    free(t->v);
    free(t);
    return NULL;
}

/* Appends s[0..len) (already validated) to t. */
static int auth_tokens_add(struct auth_tokens *t, const char *s, size_t len)
{
    if (t->count == t->alloc) {
        size_t n = t->alloc ? 2 * t->alloc : 8;
        struct auth_token *v = realloc(t->v, n * sizeof(*v));
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->alloc = n;
    }
    struct auth_token *tok = &t->v[t->count];
    tok->value = strndup(s, len);
    if (!tok->value)
        return -ENOMEM;
    tok->len = len;
    request_caller_id(s, len, tok->caller);
    t->count++;
    return 0;
}

/* One token of a list or a file, found at `where` ("token 2", "line 3"): validated and added. */
static int auth_tokens_take(struct auth_tokens *t, const char *s, size_t len, const char *what,
                            size_t where, char *err, size_t errlen)
{
    if (!auth_token_valid(s, len))
        return auth_fail(err, errlen, -EINVAL,
                         "%s %zu: expected 1..%d printable ASCII characters without spaces, got "
                         "%zu bytes (value not shown)",
                         what, where, AUTH_TOKEN_MAX_BYTES, len);
    if (t->count >= AUTH_TOKENS_MAX)
        return auth_fail(err, errlen, -EINVAL, "%s %zu: more than %d tokens", what, where,
                         AUTH_TOKENS_MAX);
    if (auth_tokens_add(t, s, len) < 0)
        return auth_fail(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

/* The end of parsing: the set when it holds a token, else the error `none`. */
static int auth_tokens_finish(struct auth_tokens *t, int r, const char *none,
                              struct auth_tokens **ret, char *err, size_t errlen)
{
    if (r == 0 && t->count == 0)
        r = auth_fail(err, errlen, -EINVAL, "%s", none);
    if (r < 0) {
        auth_tokens_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

int auth_tokens_parse_list(const char *list, struct auth_tokens **ret, char *err, size_t errlen)
{
    struct auth_tokens *t = calloc(1, sizeof(*t));
    size_t n = 0;
    int r = 0;

    if (!t)
        return auth_fail(err, errlen, -ENOMEM, "out of memory");
    for (const char *p = list ? list : ""; *p && r == 0;) {
        size_t len = strcspn(p, ",");
        n++;
        if (len > 0)
            r = auth_tokens_take(t, p, len, "token", n, err, errlen);
        p += len;
        if (*p == ',')
            p++;
    }
    return auth_tokens_finish(t, r, "no token in the list", ret, err, errlen);
}

static bool auth_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int auth_tokens_parse_lines(const char *text, size_t len, struct auth_tokens **ret, char *err,
                            size_t errlen)
{
    struct auth_tokens *t = calloc(1, sizeof(*t));
    size_t line = 0, at = 0;
    int r = 0;

    if (!t)
        return auth_fail(err, errlen, -ENOMEM, "out of memory");
    while (at < len && r == 0) {
        const char *s = text + at;
        const char *nl = memchr(s, '\n', len - at);
        size_t n = nl ? (size_t)(nl - s) : len - at, first = 0;

        at += n + (nl ? 1 : 0);
        line++;
        while (n > 0 && auth_is_blank(s[n - 1]))
            n--;
        while (first < n && auth_is_blank(s[first]))
            first++;
        if (first == n || s[first] == '#')
            continue;
        r = auth_tokens_take(t, s, n, "line", line, err, errlen);
    }
    return auth_tokens_finish(t, r, "no token in the file (one per line)", ret, err, errlen);
}

static int64_t auth_ns(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void auth_stamp_of(const struct stat *st, struct auth_file_stamp *ret)
{
    *ret = (struct auth_file_stamp){
        .dev = st->st_dev,
        .ino = st->st_ino,
        .size = st->st_size,
        .mtime_ns = auth_ns(st->st_mtim),
        .ctime_ns = auth_ns(st->st_ctim),
    };
}

int auth_file_stamp_get(const char *path, struct auth_file_stamp *ret)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        *ret = (struct auth_file_stamp){.err = errno};
        return -ret->err;
    }
    auth_stamp_of(&st, ret);
    return 0;
}

bool auth_file_stamp_equal(const struct auth_file_stamp *a, const struct auth_file_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns && a->err == b->err;
}

/* Reads all of fd, at most cap bytes; the buffer is malloc'd (one byte more, so a file over
   the cap shows as len == cap + 1). */
static int auth_read_all(int fd, size_t cap, char **ret, size_t *ret_len)
{
    char *buf = malloc(cap + 1);
    size_t len = 0;

    if (!buf)
        return -ENOMEM;
    while (len < cap + 1) {
        ssize_t n = read(fd, buf + len, cap + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            explicit_bzero(buf, len);
            free(buf);
            return r;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

int auth_tokens_read_file(const char *path, struct auth_tokens **ret,
                          struct auth_file_stamp *ret_stamp, char *err, size_t errlen)
{
    char shown[AUTH_ECHO_MAX_BYTES + 4], reason[128], sub[256];
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, r;

    auth_echo(shown, path);
    /* O_NONBLOCK: a FIFO put there by mistake must not hang the reload. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0) {
        r = -errno;
        if (fd >= 0)
            close(fd);
        return auth_fail(err, errlen, r, "cannot read '%s': %s", shown,
                         strerror_r(-r, reason, sizeof(reason)));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return auth_fail(err, errlen, -EINVAL, "'%s' is not a regular file", shown);
    }
    r = auth_read_all(fd, AUTH_FILE_MAX_BYTES, &buf, &len);
    close(fd);
    if (r == -ENOMEM)
        return auth_fail(err, errlen, r, "out of memory");
    if (r < 0)
        return auth_fail(err, errlen, r, "cannot read '%s': %s", shown,
                         strerror_r(-r, reason, sizeof(reason)));
    if (len > AUTH_FILE_MAX_BYTES) {
        r = auth_fail(err, errlen, -EINVAL, "'%s' is larger than %d bytes", shown,
                      AUTH_FILE_MAX_BYTES);
    } else {
        struct auth_tokens *t = NULL;
        r = auth_tokens_parse_lines(buf, len, &t, sub, sizeof(sub));
        if (r < 0) {
            auth_fail(err, errlen, r, "'%s': %s", shown, sub);
        } else {
            *ret = t;
            if (ret_stamp)
                auth_stamp_of(&st, ret_stamp);
        }
    }
    explicit_bzero(buf, len);
    free(buf);
    return r;
}

/* Constant time in the token's length, so a wrong guess says nothing about how close it was. */
static bool auth_token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
    unsigned char diff = given_len != want_len;
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned char)(want[i] ^ (i < given_len ? given[i] : 0));
    return diff == 0;
}

bool auth_tokens_match(const struct auth_tokens *t, const char *header,
                       char ret_caller[REQUEST_CALLER_ID_BYTES])
{
    const struct auth_token *found = NULL;

    if (!t || !header || strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    const char *given = header + 7;
    size_t given_len = strlen(given);
    /* No early exit: every token is compared whichever matches. */
    for (size_t i = 0; i < t->count; i++)
        if (auth_token_equal(given, given_len, t->v[i].value, t->v[i].len))
            found = &t->v[i];
    if (!found)
        return false;
    memcpy(ret_caller, found->caller, REQUEST_CALLER_ID_BYTES);
    return true;
}

struct auth *auth_new(struct auth_tokens *tokens)
{
    struct auth *a = calloc(1, sizeof(*a));
    pthread_rwlockattr_t attr;

    if (!a) {
        auth_tokens_free(tokens);
        return NULL;
    }
    pthread_rwlockattr_init(&attr);
    /* glibc prefers readers by default: checks arriving without pause could delay a reload
       indefinitely. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&a->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    a->tokens = tokens;
    return a;
}

struct auth *auth_free(struct auth *a)
{
    if (!a)
        return NULL;
    auth_tokens_free(a->tokens);
    pthread_rwlock_destroy(&a->lock);
    free(a);
    return NULL;
}

bool auth_check(struct auth *a, const char *header, char ret_caller[REQUEST_CALLER_ID_BYTES])
{
    bool ok;

    if (!a) {
        ret_caller[0] = '\0';
        return true;
    }
    pthread_rwlock_rdlock(&a->lock);
    if (!a->tokens) {
        ret_caller[0] = '\0';
        ok = true;
    } else {
        ok = auth_tokens_match(a->tokens, header, ret_caller);
    }
    pthread_rwlock_unlock(&a->lock);
    return ok;
}

size_t auth_replace(struct auth *a, struct auth_tokens *tokens)
{
    struct auth_tokens *old;
    size_t n = auth_tokens_count(tokens);

    pthread_rwlock_wrlock(&a->lock);
    old = a->tokens;
    a->tokens = tokens;
    pthread_rwlock_unlock(&a->lock);
    /* No check can hold the old set now: they all took the lock to read it. */
    auth_tokens_free(old);
    return n;
}

int auth_reload_file(struct auth *a, const char *path, struct auth_file_stamp *ret_stamp,
                     size_t *ret_count, char *err, size_t errlen)
{
    struct auth_tokens *t = NULL;
    struct auth_file_stamp stamp;
    int r = auth_tokens_read_file(path, &t, &stamp, err, errlen);

    if (r < 0)
        return r;
    size_t n = auth_replace(a, t);
    if (ret_stamp)
        *ret_stamp = stamp;
    if (ret_count)
        *ret_count = n;
    return 0;
}

size_t auth_count(struct auth *a)
{
    size_t n;

    if (!a)
        return 0;
    pthread_rwlock_rdlock(&a->lock);
    n = auth_tokens_count(a->tokens);
    pthread_rwlock_unlock(&a->lock);
    return n;
}
