/*
 * notes.c — the `save_note` tool (see notes.h): filename policy, default
 * names from a content hash, the atomic, no-overwrite, idempotent write
 * (temp file + fsync + no-replace rename + directory fsync), the quota
 * (counted notes and running totals under one lock) and the start-up
 * removal of temp files a crash left behind.
 *
 * Everything is relative to a directory fd opened once per save, so the
 * model-chosen name is only ever resolved inside that directory, and
 * O_NOFOLLOW keeps a planted symlink from redirecting a write.
 */
#include "agentd/notes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define NOTES_ERR_BYTES 256
/* ".tmp-" host "-" pid "-" seq "-" 16 hex digits, with room to spare. */
#define NOTES_TMP_NAME_BYTES  (NOTES_HOST_TAG_BYTES + 96)
#define NOTES_TMP_PREFIX      ".tmp-"
#define NOTES_TMP_RANDOM_HEX  16
#define NOTES_TMP_ATTEMPTS    16   /* O_EXCL collisions tolerated before giving up */
#define NOTES_CMP_CHUNK_BYTES 8192 /* stack buffer for comparing an existing note */
#define NOTES_HASH_HEX_CHARS  12

/* Makes temp names unique between threads of this process; the host, pid and
 * random part make them unique against other replicas and leftovers of
 * earlier processes (in a container every run may be pid 1). */
static atomic_ulong notes_tmp_counter;

struct notes_usage {
    pthread_mutex_t lock; /* guards everything below; see notes.h for what it is held across */
    char *dir;
    uint64_t max_files, max_bytes;
    bool counted;
    int scan_error;
    uint64_t files, bytes;
};

__attribute__((format(printf, 4, 5))) static int notes_fail(char *err, size_t errlen, int code,
                                                            const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* code is a negative errno; the message is "<operation>: <strerror>". A filesystem quota
 * (EDQUOT) comes back as -ENOSPC, so -EDQUOT always means this module's quota. */
static int notes_fail_errno(char *err, size_t errlen, int code, const char *operation)
{
    char buf[128];
    const char *text = strerror_r(-code, buf, sizeof(buf));
    return notes_fail(err, errlen, code == -EDQUOT ? -ENOSPC : code, "%s: %s", operation, text);
}

static bool notes_is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void notes_describe_byte(char c, char *buf, size_t buflen)
{
    unsigned char u = (unsigned char)c;
    if (u > 0x20 && u < 0x7f)
        snprintf(buf, buflen, "'%c'", u);
    else
        snprintf(buf, buflen, "byte 0x%02x", u);
}

int notes_validate_filename(const char *name, char *err, size_t errlen)
{
    if (!name)
        return notes_fail(err, errlen, -EINVAL, "filename is missing");
    size_t len = strnlen(name, NOTES_MAX_NAME_BYTES + 1);
    if (len == 0)
        return notes_fail(err, errlen, -EINVAL, "filename must not be empty");
    if (len > NOTES_MAX_NAME_BYTES)
        return notes_fail(err, errlen, -EINVAL, "filename too long: more than %d characters",
                          NOTES_MAX_NAME_BYTES);

    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (notes_is_alnum(c) || (i > 0 && (c == '.' || c == '_' || c == '-')))
            continue;
        char what[16];
        notes_describe_byte(c, what, sizeof(what));
        if (i == 0)
            return notes_fail(err, errlen, -EINVAL,
                              "filename must start with a letter or digit, not %s", what);
        return notes_fail(err, errlen, -EINVAL,
                          "filename has %s at position %zu; only letters, digits, '.', '_' and "
                          "'-' are allowed",
                          what, i + 1);
    }
    if (strstr(name, ".."))
        return notes_fail(err, errlen, -EINVAL, "filename must not contain \"..\"");
    return 0;
}

void notes_default_name(const char *content, size_t len, time_t now_s, char *buf, size_t buflen)
{
    if (!buf || buflen == 0)
        return;
    if (!content)
        len = 0;

    static const char hexdigits[] = "0123456789abcdef";
    char hex[NOTES_HASH_HEX_CHARS + 1] = "000000000000";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(content ? content : "", len, md, &md_len, EVP_sha256(), NULL) == 1 &&
        md_len * 2 >= NOTES_HASH_HEX_CHARS) {
        for (size_t i = 0; i < NOTES_HASH_HEX_CHARS / 2; i++) {
            hex[2 * i] = hexdigits[md[i] >> 4];
            hex[2 * i + 1] = hexdigits[md[i] & 0x0f];
        }
    }

    /* Sized for any int so the compiler can prove no truncation; years
     * outside 0..9999 fall back to zeros to keep the name's fixed shape. */
    char date[40] = "00000000";
    struct tm tm;
    if (gmtime_r(&now_s, &tm) && tm.tm_year >= -1900 && tm.tm_year <= 9999 - 1900)
        snprintf(date, sizeof(date), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);

    snprintf(buf, buflen, "note_%s_%s.txt", date, hex);
}

/*
 * Returns 1 when dir/name is a regular file holding exactly content, 0 when
 * something else occupies the name, or a negative errno (-ENOENT: nothing
 * there). The type is checked before opening so a FIFO or device planted
 * under that name is never opened.
 */
static int notes_compare_existing(int dfd, const char *name, const char *content, size_t len)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != len)
        return 0;

    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? 0 : -errno;

    char chunk[NOTES_CMP_CHUNK_BYTES];
    size_t off = 0;
    int r = 1;
    /* Read one byte past len so a file that grew after fstatat() differs. */
    while (off <= len) {
        size_t want = len - off < sizeof(chunk) ? len - off + 1 : sizeof(chunk);
        ssize_t n = read(fd, chunk, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0) {
            r = off == len ? 1 : 0;
            break;
        }
        if ((size_t)n > len - off || memcmp(chunk, content + off, (size_t)n) != 0) {
            r = 0;
            break;
        }
        off += (size_t)n;
    }
    close(fd);
    return r;
}

void notes_host_tag(char *buf, size_t buflen)
{
    char host[NOTES_HOST_TAG_BYTES] = "";
    if (!buf || buflen == 0)
        return;
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "unknown");
    for (char *p = host; *p; p++)
        if (!notes_is_alnum(*p) && *p != '-' && *p != '.')
            *p = '_';
    snprintf(buf, buflen, "%s", host);
}

static int notes_open_temp(int dfd, char *name_buf, size_t name_buf_len)
{
    char host[NOTES_HOST_TAG_BYTES];
    notes_host_tag(host, sizeof(host));
    for (int attempt = 0; attempt < NOTES_TMP_ATTEMPTS; attempt++) {
        unsigned long long rnd = 0;
        /* Best effort: host + pid + counter alone are unique within this process. */
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
            rnd = 0;
        unsigned long seq = atomic_fetch_add(&notes_tmp_counter, 1);
        snprintf(name_buf, name_buf_len, NOTES_TMP_PREFIX "%s-%ld-%lu-%016llx", host,
                 (long)getpid(), seq, rnd);
        int fd = openat(dfd, name_buf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return -errno;
    }
    /* Not -EEXIST: that would read as "the note exists" to callers. */
    return -EAGAIN;
}

static int notes_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Publishes tmp as name without ever replacing an existing name. On success
 * tmp no longer exists (best effort in the link fallback, where the note is
 * already complete and a stray extra link is harmless). -EEXIST: name taken. */
static int notes_publish(int dfd, const char *tmp, const char *name)
{
    if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    /* Filesystems without RENAME_NOREPLACE say EINVAL; old kernels ENOSYS.
     * link() also refuses to replace, which gives the same guarantee. */
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -errno;
    if (linkat(dfd, tmp, dfd, name, 0) < 0)
        return -errno;
    (void)unlinkat(dfd, tmp, 0);
    return 0;
}

/* Turns the result of notes_compare_existing() for an occupied name into
 * the save's result: same bytes is success, anything else is never touched. */
static int notes_decide_existing(int cmp, const char *name, enum notes_outcome *outcome, char *err,
                                 size_t errlen)
{
    if (cmp == 1) {
        *outcome = NOTES_ALREADY_SAVED;
        return 0;
    }
    if (cmp == 0)
        return notes_fail(err, errlen, -EEXIST,
                          "a different note named '%s' already exists; choose another filename",
                          name);
    return notes_fail_errno(err, errlen, cmp, "read existing note");
}

/* ---- quota --------------------------------------------------------------- */

struct notes_usage *notes_usage_new(const char *dir, uint64_t max_files, uint64_t max_bytes)
{
    if (!dir || !*dir)
        return NULL;
    struct notes_usage *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->dir = strdup(dir);
    if (!u->dir) {
        free(u);
        return NULL;
    }
    pthread_mutex_init(&u->lock, NULL);
    u->max_files = max_files;
    u->max_bytes = max_bytes;
    return u;
}

struct notes_usage *notes_usage_free(struct notes_usage *u)
{
    if (u) {
        pthread_mutex_destroy(&u->lock);
        free(u->dir);
        free(u);
    }
    return NULL;
}

static bool notes_usage_limited(const struct notes_usage *u)
{
    return u->max_files > 0 || u->max_bytes > 0;
}

static uint64_t notes_add_saturating(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Opens dir (not through a symlink) for reading its entries: 0 and *ret, or -errno. */
static int open_notes_dir(const char *dir, DIR **ret)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    *ret = fdopendir(dfd);
    if (!*ret) {
        int r = -errno;
        close(dfd);
        return r;
    }
    return 0;
}

/* Counts the notes of dir: regular files whose names do not start with '.'. */
static int notes_count(const char *dir, uint64_t *ret_files, uint64_t *ret_bytes)
{
    DIR *d;
    int opened = open_notes_dir(dir, &d);
    if (opened < 0)
        return opened;
    uint64_t files = 0, bytes = 0;
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            r = errno ? -errno : 0;
            break;
        }
        /* d_type spares the fstatat of subdirectories on filesystems that report it. */
        if (e->d_name[0] == '.' || (e->d_type != DT_REG && e->d_type != DT_UNKNOWN))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) /* removed since readdir saw it */
                continue;
            r = -errno;
            break;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        files++;
        bytes = notes_add_saturating(bytes, (uint64_t)st.st_size);
    }
    closedir(d);
    if (r == 0) {
        *ret_files = files;
        *ret_bytes = bytes;
    }
    return r;
}

static int notes_usage_scan_locked(struct notes_usage *u)
{
    uint64_t files, bytes;
    int r = notes_count(u->dir, &files, &bytes);
    u->scan_error = r;
    if (r == 0) {
        u->counted = true;
        u->files = files;
        u->bytes = bytes;
    }
    return r;
}

int notes_usage_scan(struct notes_usage *u)
{
    if (!u)
        return -EINVAL;
    if (!notes_usage_limited(u))
        return 0;
    pthread_mutex_lock(&u->lock);
    int r = notes_usage_scan_locked(u);
    pthread_mutex_unlock(&u->lock);
    return r;
}

void notes_usage_get(struct notes_usage *u, struct notes_usage_snapshot *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!u)
        return;
    pthread_mutex_lock(&u->lock);
    *ret = (struct notes_usage_snapshot){
        .counted = u->counted,
        .scan_error = u->scan_error,
        .files = u->files,
        .bytes = u->bytes,
        .max_files = u->max_files,
        .max_bytes = u->max_bytes,
    };
    pthread_mutex_unlock(&u->lock);
}

bool notes_usage_full(const struct notes_usage_snapshot *s)
{
    if (!s || !s->counted)
        return false;
    return (s->max_files > 0 && s->files >= s->max_files) ||
           (s->max_bytes > 0 && s->bytes >= s->max_bytes);
}

/* Under u->lock: 0 when one more note of len bytes fits, else -EDQUOT with the message the model
   relays. The first use counts the directory. */
static int notes_usage_admit_locked(struct notes_usage *u, size_t len, char *err, size_t errlen)
{
    if (!notes_usage_limited(u))
        return 0;
    if (!u->counted) {
        int r = notes_usage_scan_locked(u);
        if (r < 0)
            return notes_fail_errno(err, errlen, r, "count notes");
    }
    unsigned long long files = u->files, bytes = u->bytes;
    if (u->max_files > 0 && u->files >= u->max_files)
        return notes_fail(err, errlen, -EDQUOT,
                          "the notes quota is full: %llu files / %llu bytes "
                          "(AGENTD_NOTES_MAX_FILES is %llu); this note was not saved",
                          files, bytes, (unsigned long long)u->max_files);
    if (u->max_bytes > 0 && (u->bytes >= u->max_bytes || len > u->max_bytes - u->bytes))
        return notes_fail(err, errlen, -EDQUOT,
                          "the notes quota is full: %llu files / %llu bytes "
                          "(AGENTD_NOTES_MAX_BYTES is %llu, this note needs %zu more); this note "
                          "was not saved",
                          files, bytes, (unsigned long long)u->max_bytes, len);
    return 0;
}

/* The cheap early check, so a full quota costs no write. */
static int notes_usage_admit(struct notes_usage *u, size_t len, char *err, size_t errlen)
{
    if (!u)
        return 0;
    pthread_mutex_lock(&u->lock);
    int r = notes_usage_admit_locked(u, len, err, errlen);
    pthread_mutex_unlock(&u->lock);
    return r;
}

/* ---- saving ---------------------------------------------------------------- */

static bool notes_withdrawn(const struct notes_save_ctl *ctl)
{
    return ctl && ctl->cancelled && ctl->cancelled(ctl->cancelled_arg);
}

/*
 * The commit point: publishes tmp as name unless the save was withdrawn or no longer fits, and
 * charges the quota. The quota lock is held from the last withdrawal check to the charge, so a
 * withdrawn save never publishes, concurrent savers cannot both take the last slot, and a scan
 * sees every note of this process exactly once. Returns 0, -EEXIST (name taken; no message), or
 * another negative errno with a message.
 */
static int notes_commit(int dfd, const char *tmp, const char *name, size_t len,
                        const struct notes_save_ctl *ctl, char *err, size_t errlen)
{
    struct notes_usage *u = ctl ? ctl->usage : NULL;
    int r;
    if (u)
        pthread_mutex_lock(&u->lock);
    if (notes_withdrawn(ctl)) {
        r = notes_fail(err, errlen, -ECANCELED, "the save was withdrawn before it was published");
    } else if (!u || (r = notes_usage_admit_locked(u, len, err, errlen)) == 0) {
        r = notes_publish(dfd, tmp, name);
        if (r == 0 && u && u->counted) {
            u->files = notes_add_saturating(u->files, 1);
            u->bytes = notes_add_saturating(u->bytes, len);
        }
        if (r < 0 && r != -EEXIST)
            r = notes_fail_errno(err, errlen, r, "publish note");
    }
    if (u)
        pthread_mutex_unlock(&u->lock);
    return r;
}

int notes_save(const char *dir, const char *name, const char *content, size_t len,
               enum notes_outcome *ret_outcome, char *err, size_t errlen)
{
    return notes_save_ctl(dir, name, content, len, NULL, ret_outcome, err, errlen);
}

int notes_save_ctl(const char *dir, const char *name, const char *content, size_t len,
                   const struct notes_save_ctl *ctl, enum notes_outcome *ret_outcome, char *err,
                   size_t errlen)
{
    enum notes_outcome outcome = NOTES_CREATED;
    char tmp[NOTES_TMP_NAME_BYTES];
    bool tmp_exists = false;
    int tfd = -1;
    int r;

    if (!dir || !*dir)
        return notes_fail(err, errlen, -EINVAL, "notes directory is not configured");
    r = notes_validate_filename(name, err, errlen);
    if (r < 0)
        return r;
    if (!content && len > 0)
        return notes_fail(err, errlen, -EINVAL, "note content is missing");
    if (len > NOTES_MAX_CONTENT_BYTES)
        return notes_fail(err, errlen, -E2BIG, "note too large: %zu bytes (at most %d)", len,
                          NOTES_MAX_CONTENT_BYTES);

    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return notes_fail_errno(err, errlen, -errno, "open notes directory");

    /* Checked first so a retry of a saved note costs no write at all, and no quota. */
    r = notes_compare_existing(dfd, name, content, len);
    if (r != -ENOENT) {
        r = notes_decide_existing(r, name, &outcome, err, errlen);
        goto out;
    }

    if (notes_withdrawn(ctl)) {
        r = notes_fail(err, errlen, -ECANCELED, "the save was withdrawn before it started");
        goto out;
    }
    r = notes_usage_admit(ctl ? ctl->usage : NULL, len, err, errlen);
    if (r < 0)
        goto out;

    tfd = notes_open_temp(dfd, tmp, sizeof(tmp));
    if (tfd < 0) {
        r = notes_fail_errno(err, errlen, tfd, "create temporary file");
        goto out;
    }
    tmp_exists = true;

    r = notes_write_all(tfd, content, len);
    if (r < 0) {
        r = notes_fail_errno(err, errlen, r, "write temporary file");
        goto out;
    }
    if (fsync(tfd) < 0) {
        r = notes_fail_errno(err, errlen, -errno, "sync temporary file");
        goto out;
    }
    /* close() can report a deferred write error (e.g. on NFS); never retried. */
    r = close(tfd);
    tfd = -1;
    if (r < 0) {
        r = notes_fail_errno(err, errlen, -errno, "close temporary file");
        goto out;
    }

    r = notes_commit(dfd, tmp, name, len, ctl, err, errlen);
    if (r == -EEXIST || r == -EDQUOT) {
        /* Someone published the same name while we were writing: the same note is saved
           whatever the quota says. */
        int cmp = notes_compare_existing(dfd, name, content, len);
        if (r == -EDQUOT && cmp != 1)
            goto out;       /* the quota message stands */
        if (cmp == -ENOENT) /* and removed it again: the name is being changed */
            r = notes_fail(err, errlen, -EAGAIN, "note '%s' changed while saving; try again", name);
        else
            r = notes_decide_existing(cmp, name, &outcome, err, errlen);
        goto out;
    }
    if (r < 0)
        goto out;
    tmp_exists = false;

    /* Makes the new directory entry durable, not just the file's bytes. */
    if (fsync(dfd) < 0) {
        r = notes_fail_errno(err, errlen, -errno, "sync notes directory");
        goto out;
    }
    r = 0;

out:
    if (tfd >= 0)
        close(tfd);
    if (tmp_exists)
        (void)unlinkat(dfd, tmp, 0);
    close(dfd);
    if (r == 0 && ret_outcome)
        *ret_outcome = outcome;
    return r;
}

/* ---- stale temp files ------------------------------------------------------- */

/* Skips "<digits><sep>" at *p; false when that is not what is there. */
static bool notes_skip_number(const char **p, char sep, unsigned long long *ret_value)
{
    char *end;
    if (**p < '0' || **p > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(*p, &end, 10);
    if (errno || *end != sep)
        return false;
    *ret_value = v;
    *p = end + 1;
    return true;
}

/* name is ".tmp-<host>-<pid>-<seq>-<16 hex>" of this host, and no live process made it. */
static bool notes_temp_of_dead_local_process(const char *name, const char *host)
{
    const char *p = name + strlen(NOTES_TMP_PREFIX);
    size_t host_len = strlen(host);
    unsigned long long pid, seq;
    if (strncmp(p, host, host_len) != 0 || p[host_len] != '-')
        return false;
    p += host_len + 1;
    if (!notes_skip_number(&p, '-', &pid) || !notes_skip_number(&p, '-', &seq))
        return false;
    if (strlen(p) != NOTES_TMP_RANDOM_HEX || strspn(p, "0123456789abcdef") != NOTES_TMP_RANDOM_HEX)
        return false;
    if (pid == 0 || pid > (unsigned long long)INT32_MAX)
        return false;
    if ((pid_t)pid == getpid())
        return true;
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int notes_remove_stale_temps(const char *dir, time_t now_s)
{
    if (!dir || !*dir)
        return -EINVAL;
    DIR *d;
    int opened = open_notes_dir(dir, &d);
    if (opened < 0)
        return opened;
    char host[NOTES_HOST_TAG_BYTES];
    notes_host_tag(host, sizeof(host));
    int removed = 0, r = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            r = errno ? -errno : 0;
            break;
        }
        if (strncmp(e->d_name, NOTES_TMP_PREFIX, strlen(NOTES_TMP_PREFIX)) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        bool stale = notes_temp_of_dead_local_process(e->d_name, host) ||
                     now_s - st.st_mtime >= NOTES_STALE_TEMP_AGE_S;
        if (stale && unlinkat(dirfd(d), e->d_name, 0) == 0 && removed < INT32_MAX)
            removed++;
    }
    closedir(d);
    return r < 0 ? r : removed;
}

int notes_tool_run(const json_t *input, const char *dir, time_t now_s,
                   const struct notes_save_ctl *ctl, struct tool_result *ret)
{
    if (!json_is_object(input))
        return tool_result_setf(ret, TOOL_INPUT_ERROR,
                                "input must be an object with a string field \"content\"");

    const json_t *jcontent = json_object_get(input, "content");
    if (!jcontent)
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "missing required field \"content\"");
    if (!json_is_string(jcontent))
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "field \"content\" must be a string");
    const char *content = json_string_value(jcontent);
    size_t len = json_string_length(jcontent);
    if (len == 0)
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "field \"content\" must not be empty");
    if (len > NOTES_MAX_CONTENT_BYTES)
        return tool_result_setf(ret, TOOL_INPUT_ERROR,
                                "field \"content\" is too large: %zu bytes (at most %d)", len,
                                NOTES_MAX_CONTENT_BYTES);

    char err[NOTES_ERR_BYTES];
    char default_name[NOTES_DEFAULT_NAME_BYTES];
    const char *name;
    const json_t *jname = json_object_get(input, "filename");
    if (jname && !json_is_null(jname)) {
        if (!json_is_string(jname))
            return tool_result_setf(ret, TOOL_INPUT_ERROR, "field \"filename\" must be a string");
        name = json_string_value(jname);
        /* An embedded NUL would make the checked name differ from the JSON one. */
        if (strlen(name) != json_string_length(jname))
            return tool_result_setf(ret, TOOL_INPUT_ERROR,
                                    "field \"filename\" must not contain NUL characters");
        if (notes_validate_filename(name, err, sizeof(err)) < 0)
            return tool_result_setf(ret, TOOL_INPUT_ERROR, "invalid \"filename\": %s", err);
    } else {
        notes_default_name(content, len, now_s, default_name, sizeof(default_name));
        name = default_name;
    }

    if (!dir || !*dir)
        return tool_result_setf(ret, TOOL_SYSTEM_ERROR,
                                "cannot save note: notes directory is not configured");

    enum notes_outcome outcome;
    int r = notes_save_ctl(dir, name, content, len, ctl, &outcome, err, sizeof(err));
    if (r == 0 && outcome == NOTES_ALREADY_SAVED)
        return tool_result_setf(ret, TOOL_OK, "note %s already saved (%zu bytes, same content)",
                                name, len);
    if (r == 0)
        return tool_result_setf(ret, TOOL_OK, "saved note %s (%zu bytes)", name, len);
    /* Name and size were checked above, so only a taken name is the model's
     * to fix, and a full quota the model's to relay (notes.h says why);
     * anything else (even an EINVAL from fsync on an odd filesystem) is the
     * system's fault. */
    if (r == -EEXIST)
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "%s", err);
    if (r == -EDQUOT)
        return tool_result_setf(ret, TOOL_INPUT_ERROR, "cannot save note: %s", err);
    return tool_result_setf(ret, TOOL_SYSTEM_ERROR, "cannot save note: %s", err);
}
