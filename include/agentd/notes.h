/*
 * notes.h — the `save_note` tool: writes a note the model asked to keep as a
 * file in the configured notes directory, atomically and idempotently.
 *
 * A note is published with a no-replace rename of a fully written and
 * fsync'ed temporary file, so a reader sees either no note or the whole note,
 * an existing note is never overwritten, and a retried call with the same
 * content finds its earlier result (NOTES_ALREADY_SAVED) instead of failing.
 * Temporary files are named ".tmp-..." (which no valid note name can be) and
 * are removed on every failure path; only a crash between create and rename
 * can leave one behind.
 *
 * Filenames come from the model, so they are checked against a strict
 * pattern before they reach the filesystem; the directory is always
 * configured by the operator. No function reads the clock (the date for
 * default names is passed in) and none logs.
 *
 * Thread-safety: all functions are safe to call concurrently, also for the
 * same directory and name (one writer wins, the others see its file).
 * notes_save() and notes_tool_run() block on the disk: the engine runs them
 * on an io_pool thread, never on a worker.
 *
 * Memory: nothing is kept after a call; err and buf are caller buffers, and
 * only notes_tool_run() allocates (the text of the caller's tool_result).
 */
#ifndef AGENTD_NOTES_H
#define AGENTD_NOTES_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

#include "agentd/tool_result.h"

#define NOTES_MAX_CONTENT_BYTES  (1024 * 1024)
#define NOTES_MAX_NAME_BYTES     128 /* longest valid filename, excluding NUL */
#define NOTES_DEFAULT_NAME_BYTES 64  /* buffer size that fits any default name */

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

enum notes_outcome { NOTES_CREATED, NOTES_ALREADY_SAVED };

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
 *             directory path.
 * A failure of the final directory fsync is reported as an error even though
 * the note is already visible; a retry then returns NOTES_ALREADY_SAVED.
 *
 * Blocking (fsync). umask still applies to the 0640 mode.
 */
int notes_save(const char *dir, const char *name, const char *content, size_t len,
               enum notes_outcome *ret_outcome, char *err, size_t errlen);

/*
 * Tool glue. input = {"content": string (required, non-empty), "filename":
 * string (optional; null means absent)}; other members are ignored.
 * Bad/missing fields, invalid filename, content too large, or existing file
 * with different content → TOOL_INPUT_ERROR (the model can fix it). I/O
 * failures (ENOSPC, EACCES, EROFS, EIO, missing dir…) and a NULL/empty dir
 * → TOOL_SYSTEM_ERROR.
 * Success: TOOL_OK with text "saved note <name> (<n> bytes)" or
 * "note <name> already saved (<n> bytes, same content)". now_s gives the
 * date for the default name. input is borrowed; ret must be zero-initialised
 * or hold a previous result (its text is replaced), freed by the caller with
 * tool_result_clear().
 * Returns 0, or -ENOMEM (ret unchanged). Blocking (fsync): the engine calls
 * it from an I/O thread. Thread-safe.
 */
int notes_tool_run(const json_t *input, const char *dir, time_t now_s, struct tool_result *ret);

#endif
