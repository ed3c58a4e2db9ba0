/*
 * notes.h — the `save_note` tool: writes a note the model asked to keep as a
 * file in the configured notes directory, atomically and idempotently.
 *
 * A note is published with a no-replace rename of a fully written and
 * fsync'ed temporary file, so a reader sees either no note or the whole note,
 * an existing note is never overwritten, and a retried call with the same
 * content finds its earlier result (NOTES_ALREADY_SAVED) instead of failing.
 * Temporary files are named ".tmp-<host>-<pid>-<seq>-<random>" (which no
 * valid note name can be; host as in notes_host_tag()) and are removed on
 * every failure path; only a crash between create and rename can leave one
 * behind, and notes_remove_stale_temps() clears those at start-up.
 *
 * A quota (struct notes_usage, AGENTD_NOTES_MAX_FILES / AGENTD_NOTES_MAX_BYTES)
 * bounds what the directory holds, and a caller can withdraw a save until the
 * moment it is published (notes_save_ctl()): a save that nobody waits for any
 * more leaves nothing behind.
 *
 * Filenames come from the model, so they are checked against a strict
 * pattern before they reach the filesystem; the directory is always
 * configured by the operator. No function reads the clock (the date for
 * default names and the time for stale temp files are passed in) and none
 * logs.
 *
 * Thread-safety: all functions are safe to call concurrently, also for the
 * same directory and name (one writer wins, the others see its file), except
 * notes_remove_stale_temps() (start-up only, see there). notes_save*(),
 * notes_tool_run(), notes_usage_scan() and notes_remove_stale_temps() block
 * on the disk: the engine runs saves on an io_pool thread, never on a worker.
 *
 * Memory: nothing is kept after a call; err and buf are caller buffers;
 * notes_tool_run() allocates the text of the caller's tool_result, and a
 * struct notes_usage is the caller's until notes_usage_free().
 */
#ifndef AGENTD_NOTES_H
#define AGENTD_NOTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "agentd/tool_result.h"

#define NOTES_MAX_CONTENT_BYTES  (1024 * 1024)
#define NOTES_MAX_NAME_BYTES     128 /* longest valid filename, excluding NUL */
#define NOTES_DEFAULT_NAME_BYTES 64  /* buffer size that fits any default name */
#define NOTES_HOST_TAG_BYTES     65  /* buffer size that fits any notes_host_tag() */
/* A temp file this old is left over by a crash, whoever made it: a save's temp file lives at most
   as long as its tool call (AGENTD_TOOL_TIMEOUT_MS, 10 minutes at most), and a save that outlives
   its call is withdrawn before it publishes. The margin covers clocks of replicas sharing a
   network volume that disagree by a few minutes. */
#define NOTES_STALE_TEMP_AGE_S (15 * 60)

/*
 * filename rule: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ and must not contain ".."
 * → 0, or -EINVAL with a message in err (NUL-terminated, truncated to
 * errlen; err may be NULL) naming the offending character and its 1-based
 * position. The name itself is not echoed, so the message stays short.
 */
int notes_validate_filename(const char *name, char *err, size_t errlen);

/*
 * Writes "note_<YYYYMMDD>_<first 12 hex of SHA-256(content)>.txt" into buf,
 * date = UTC date of now_s (e.g. "note_20240102_2cf24dba5fb0.txt" for
 * "hello"). buflen >= NOTES_DEFAULT_NAME_BYTES (64). content may be NULL
 * when len is 0. The result always passes notes_validate_filename(). Should
 * hashing fail (out of memory inside libcrypto) the hash part is all zeros:
 * that name can only collide, and notes_save() never overwrites on a
 * collision.
 */
void notes_default_name(const char *content, size_t len, time_t now_s, char *buf, size_t buflen);

/*
 * This host's name as it appears in temp file names: gethostname() with
 * every character outside [A-Za-z0-9.-] replaced by '_' ("unknown" if the
 * name cannot be read), cut to buflen - 1 (NOTES_HOST_TAG_BYTES fits any).
 * On Kubernetes the host name is the pod's name, so replicas that share a
 * notes volume tell their temp files apart by it (as the readiness probe
 * file does, health.h).
 */
void notes_host_tag(char *buf, size_t buflen);

/* ---- quota --------------------------------------------------------------
 *
 * struct notes_usage counts the notes of one directory against two limits:
 * files (AGENTD_NOTES_MAX_FILES) and bytes (AGENTD_NOTES_MAX_BYTES); 0 means
 * no limit. A note is any regular file whose name does not start with '.',
 * counted at its st_size (content bytes, not disk blocks); temp files and
 * the readiness probe file do not count.
 *
 * Accounting is cheap: notes_usage_scan() counts the directory once (one
 * readdir and one fstatat per entry), and from then on every note published
 * through notes_save_ctl() with this usage adds itself to running totals. The
 * readiness checker rescans now and then (health.h), so notes deleted by an
 * operator, or written by other replicas sharing the volume, are seen
 * without a restart. With neither limit set nothing is counted at all.
 *
 * Correct across concurrent writers: one mutex guards the totals. A save
 * checks the quota and publishes (the rename) under it, so two writers can
 * never both take the last free slot, and a scan holds it for its whole pass,
 * so a note this process publishes is never missed or counted twice. The
 * lock is held for a rename and for a scan, never across writing or syncing
 * a note's data. Other processes' saves are not under this lock: replicas
 * sharing a volume may together overshoot a limit by what they save between
 * two scans; each limit is exact for one replica on its own directory.
 *
 * Re-saving a note that is already there (NOTES_ALREADY_SAVED) costs no
 * quota and succeeds even when the quota is full.
 *
 * Threads: any thread; notes_usage_free() when no other thread uses it.
 */

struct notes_usage;

struct notes_usage_snapshot {
    bool counted;       /* a scan succeeded: files and bytes are meaningful */
    int scan_error;     /* -errno of the last scan when it failed, else 0 */
    uint64_t files;     /* notes counted */
    uint64_t bytes;     /* their total size */
    uint64_t max_files; /* limits; 0 = no limit */
    uint64_t max_bytes;
};

/* A usage of dir (copied) with these limits, nothing counted yet. NULL on ENOMEM or bad dir. */
struct notes_usage *notes_usage_new(const char *dir, uint64_t max_files, uint64_t max_bytes);

/* Frees u (NULL is fine); returns NULL. */
struct notes_usage *notes_usage_free(struct notes_usage *u);

/*
 * (Re)counts the notes of the directory and replaces the totals, holding the
 * lock throughout (saves wait at their publish step meanwhile). Does nothing
 * and returns 0 when neither limit is set. Returns 0, or -errno of opening
 * or reading the directory (the totals then stay as they were, and the
 * error is in the snapshot until a scan succeeds). Blocking.
 */
int notes_usage_scan(struct notes_usage *u);

/* Copies the current totals and limits into *ret. Never blocks on the disk (it may wait for a
   scan in progress to finish). */
void notes_usage_get(struct notes_usage *u, struct notes_usage_snapshot *ret);

/* True when no new note fits: files >= max_files, or bytes >= max_bytes (a limit of 0 never
   fills). False when nothing has been counted. */
bool notes_usage_full(const struct notes_usage_snapshot *s);

/* ---- saving ----------------------------------------------------------- */

enum notes_outcome { NOTES_CREATED, NOTES_ALREADY_SAVED };

/* Asked whether the save has been withdrawn; true = do not publish. Called from the saving
   thread, so it must be thread-safe against whoever withdraws (e.g. read an atomic flag). */
typedef bool (*notes_cancelled_fn)(void *arg);

/* What a save is checked against besides the filesystem; every member may be NULL. */
struct notes_save_ctl {
    struct notes_usage *usage;    /* the directory's quota; NULL = no quota */
    notes_cancelled_fn cancelled; /* asked before any write and right before publishing */
    void *cancelled_arg;
};

/*
 * Atomically saves content (len bytes, any bytes) as dir/name:
 * open dir (O_DIRECTORY|O_NOFOLLOW), write a temp file in that dir (openat
 * O_CREAT|O_EXCL|O_NOFOLLOW, mode 0640, unique name starting with ".tmp-" so
 * it is never mistaken for a note), write all, fsync, then publish with
 * renameat2(RENAME_NOREPLACE) (fall back to linkat+unlinkat if unsupported),
 * then fsync the directory. If the target exists: same bytes →
 * *ret_outcome = NOTES_ALREADY_SAVED (0 returned, nothing written; this is
 * what makes the tool idempotent under retries); different bytes, or not a
 * regular file → -EEXIST (never overwritten). On every failure the temp file
 * is removed, so no reader ever sees half a note.
 *
 * Returns 0 and sets *ret_outcome (when not NULL), or a negative errno with a
 * message in err (err may be NULL; *ret_outcome untouched):
 *   -EINVAL   dir NULL/empty, invalid name (see notes_validate_filename),
 *             content NULL with len > 0
 *   -E2BIG    len > NOTES_MAX_CONTENT_BYTES
 *   -EEXIST   a different file (or a non-regular file) already has that name
 *   -EAGAIN   the name was removed again while we saved, or no unique temp
 *             name could be created; retrying is safe
 *   other     -errno of the failed I/O operation (ENOSPC, EACCES, EROFS, EIO,
 *             ENOENT for a missing dir, ENOTDIR if dir is a file or a symlink…);
 *             the message names the operation, never the note content or the
 *             directory path. A filesystem's own quota (EDQUOT from the
 *             kernel) is reported as -ENOSPC: to the caller the disk is full.
 * A failure of the final directory fsync is reported as an error even though
 * the note is already visible; a retry then returns NOTES_ALREADY_SAVED.
 *
 * Blocking (fsync). umask still applies to the 0640 mode.
 */
int notes_save(const char *dir, const char *name, const char *content, size_t len,
               enum notes_outcome *ret_outcome, char *err, size_t errlen);

/*
 * notes_save() checked against ctl (NULL = notes_save()):
 *  - quota: with ctl->usage (which must count dir), a note that is not there
 *    yet is refused with -EDQUOT when it does not fit: one more file than
 *    max_files, or its len on top of bytes more than max_bytes. The message
 *    says so for the model to relay: "the notes quota is full: <files> files
 *    / <bytes> bytes (AGENTD_NOTES_MAX_FILES is <max>); this note was not
 *    saved" (or the AGENTD_NOTES_MAX_BYTES variant). Checked cheaply before
 *    writing and again, authoritatively, while publishing. A note already
 *    saved with the same content is NOTES_ALREADY_SAVED whatever the quota.
 *    When nothing has been counted yet the first save counts (a scan error
 *    is returned as the save's error).
 *  - withdrawal: ctl->cancelled is asked before anything is written and
 *    again right before the rename that publishes the note (with the quota
 *    lock held, so nothing is published after a true answer). True → the
 *    temp file is removed and -ECANCELED returned; nothing is left behind.
 */
int notes_save_ctl(const char *dir, const char *name, const char *content, size_t len,
                   const struct notes_save_ctl *ctl, enum notes_outcome *ret_outcome, char *err,
                   size_t errlen);

/*
 * Removes the temp files a crashed process left in dir: every regular file
 * named ".tmp-*" that either
 *  - carries this host's tag (".tmp-<notes_host_tag()>-<pid>-<seq>-<rnd>")
 *    with the pid of this process or of no live process (kill(pid, 0) says
 *    ESRCH): on Kubernetes a restarted container keeps its pod's name and
 *    runs as the same pid 1, so its predecessor's leftovers go at once; or
 *  - was last modified NOTES_STALE_TEMP_AGE_S or more before now_s, whoever
 *    made it (another replica sharing the volume, an older agentd whose temp
 *    names carried no host).
 * A fresh temp file of another host may be a save in progress of a replica
 * sharing the volume, so it is left alone. Host names must be unique among
 * the replicas sharing a volume (pod names are; pods on the host network
 * share the node's name and should not share a notes volume).
 *
 * Call it before this process saves anything (start-up): this process's own
 * temp files would match. Returns the number of files removed (a file that
 * cannot be removed is skipped), or -errno when dir cannot be read. Blocking.
 */
int notes_remove_stale_temps(const char *dir, time_t now_s);

/*
 * Tool glue. input = {"content": string (required, non-empty), "filename":
 * string (optional; null means absent)}; other members are ignored. The
 * save goes through notes_save_ctl() with ctl (NULL = no quota, never
 * withdrawn).
 * Bad/missing fields, invalid filename, content too large, or existing file
 * with different content → TOOL_INPUT_ERROR (the model can fix it). I/O
 * failures (ENOSPC, EACCES, EROFS, EIO, missing dir…), a NULL/empty dir and
 * a withdrawn save → TOOL_SYSTEM_ERROR.
 * A full quota (-EDQUOT) → TOOL_INPUT_ERROR with the quota message: it is the
 * operator's limit working as configured, not an outage. The model can still
 * answer and tell the user the note was not kept; as a TOOL_SYSTEM_ERROR it
 * would fail every run that tries to save (save_note is critical by default)
 * with a 503 and a Retry-After that no retry soon can honour, losing the
 * rest of the answer.
 * Success: TOOL_OK with text "saved note <name> (<n> bytes)" or
 * "note <name> already saved (<n> bytes, same content)". now_s gives the
 * date for the default name. input and ctl are borrowed; ret must be
 * zero-initialised or hold a previous result (its text is replaced), freed
 * by the caller with tool_result_clear().
 * Returns 0, or -ENOMEM (ret unchanged). Blocking (fsync): the engine calls
 * it from an I/O thread. Thread-safe.
 */
int notes_tool_run(const json_t *input, const char *dir, time_t now_s,
                   const struct notes_save_ctl *ctl, struct tool_result *ret);

#endif
