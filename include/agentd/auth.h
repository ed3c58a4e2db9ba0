/*
 * auth.h — the bearer tokens POST /v1/agent accepts (AGENTD_AUTH_TOKENS, or
 * AGENTD_AUTH_TOKENS_FILE): parsing a token list, checking an Authorization
 * header against it in constant time, and swapping the list for a new one
 * while requests are being checked (SIGHUP, or the file changed).
 *
 * Two types:
 *  - struct auth_tokens: one parsed set, immutable once built. Each token
 *    carries its caller id (request_caller_id(), request.h), computed once at
 *    parse time: it scopes the caller's conversations and Idempotency-Keys.
 *  - struct auth: the live set requests are checked against. main creates
 *    it, the server checks requests with it, main replaces its set on reload
 *    and frees it after the server has stopped.
 *
 * Threads: any number of threads may call auth_check() and auth_count() at
 * once while one thread calls auth_replace(); a check sees the old set or
 * the new one, never a mix, and the old set is freed by auth_replace() once
 * no check holds it (a read-write lock that prefers the writer, so a steady
 * stream of checks cannot hold a reload off). struct auth_tokens functions
 * are safe on a set no one is freeing.
 *
 * Secrets: a set wipes its tokens when freed, and error messages name a bad
 * token's place and length, never its bytes. Nothing here logs: the caller
 * decides. auth_tokens_read_file() and auth_file_stamp_get() read the file
 * system; everything else is pure.
 *
 * Memory: a struct auth_tokens is the caller's until it hands it to
 * auth_new() or auth_replace(), or frees it with auth_tokens_free().
 */
#ifndef AGENTD_AUTH_H
#define AGENTD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agentd/request.h"

#define AUTH_TOKEN_MAX_BYTES 4096          /* one token: printable ASCII, no spaces */
#define AUTH_TOKENS_MAX      1024          /* tokens in one set: each check compares them all */
#define AUTH_FILE_MAX_BYTES  (1024 * 1024) /* a tokens file */

struct auth_tokens;
struct auth;

/* Which version of a file is at a path, as stat(2) describes it: a Kubernetes Secret update
   swaps a symlink (another inode), an edit in place changes mtime, ctime or size. A path that
   cannot be stat'ed has a stamp too (err), so its disappearance is a change as well. */
struct auth_file_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
    int err; /* 0, or the errno stat(2) failed with (then the other fields are 0) */
};

/*
 * Parses a comma-separated list ("tok1,tok2"; empty entries are skipped). Returns 0 with the
 * set in *ret; -EINVAL with a message in err when the list holds no token, more than
 * AUTH_TOKENS_MAX, or one that is not 1..AUTH_TOKEN_MAX_BYTES printable ASCII characters
 * without spaces ("token 2: expected ..."); -ENOMEM ("out of memory"). *ret is written only on
 * success; err may be NULL.
 */
int auth_tokens_parse_list(const char *list, struct auth_tokens **ret, char *err, size_t errlen);

/*
 * Parses the text of a tokens file (len bytes; need not be NUL-terminated): one token per
 * line; trailing spaces, tabs and CRs are stripped; lines holding only those, and lines whose
 * first other character is '#', are skipped. Returns like auth_tokens_parse_list(); a message
 * names the line ("line 3: expected ...").
 */
int auth_tokens_parse_lines(const char *text, size_t len, struct auth_tokens **ret, char *err,
                            size_t errlen);

/*
 * Reads and parses the tokens file at path, a regular file of at most AUTH_FILE_MAX_BYTES.
 * Returns 0 with the set in *ret and the stamp of the file read in *ret_stamp (NULL: not
 * wanted); -errno when it cannot be read (err "cannot read '<path>': <reason>"); -EINVAL when
 * it is not a regular file, is too big or its text does not parse (err "'<path>': line 3:
 * ..."); -ENOMEM. The path is echoed cut to 64 bytes, other than printable ASCII as '?'. The
 * bytes read are wiped before returning.
 */
int auth_tokens_read_file(const char *path, struct auth_tokens **ret,
                          struct auth_file_stamp *ret_stamp, char *err, size_t errlen);

/* Number of tokens in t (0 for NULL). */
size_t auth_tokens_count(const struct auth_tokens *t);

/* Wipes and frees t; NULL is fine. Returns NULL. */
struct auth_tokens *auth_tokens_free(struct auth_tokens *t);

/*
 * Whether the Authorization header value `header` is "Bearer <token>" (the scheme in any
 * case) with a token of t: true and that token's caller id in ret_caller. Every token of t is
 * compared, each in time that depends on its own length only, so the answer's timing says
 * nothing about how close a wrong token came. NULL header or t -> false.
 */
bool auth_tokens_match(const struct auth_tokens *t, const char *header,
                       char ret_caller[REQUEST_CALLER_ID_BYTES]);

/* Fills *ret with the stamp of what is at path now (following symlinks); returns 0, or -errno
   when stat(2) fails (*ret is then the stamp of that failure, err set). */
int auth_file_stamp_get(const char *path, struct auth_file_stamp *ret);
/* Whether a and b describe the same version of a file (or the same failure). */
bool auth_file_stamp_equal(const struct auth_file_stamp *a, const struct auth_file_stamp *b);

/* The live set, holding tokens (taken over, even on failure); NULL tokens = authentication
   off: every check passes. NULL on ENOMEM. */
struct auth *auth_new(struct auth_tokens *tokens);
/* Frees a and its set; no check may be running. NULL is fine. Returns NULL. */
struct auth *auth_free(struct auth *a);

/* Checks one request's Authorization header value (NULL when absent): true when
   authentication is off (ret_caller "") or a token matches (its caller id in ret_caller);
   false otherwise, ret_caller untouched. NULL a: off. */
bool auth_check(struct auth *a, const char *header, char ret_caller[REQUEST_CALLER_ID_BYTES]);

/* Makes tokens (taken over; not NULL) the set later checks use, and frees the old one once
   no check holds it. Returns the number of tokens now accepted. */
size_t auth_replace(struct auth *a, struct auth_tokens *tokens);

/* Reloads from the tokens file at path: reads it (auth_tokens_read_file) and, only when that
   succeeds, replaces the set. Returns 0 with the number of tokens now accepted in *ret_count
   and the stamp of the file read in *ret_stamp (either may be NULL); on failure returns what
   auth_tokens_read_file() did, with its message in err, and checks go on using the set they
   had. */
int auth_reload_file(struct auth *a, const char *path, struct auth_file_stamp *ret_stamp,
                     size_t *ret_count, char *err, size_t errlen);

/* Number of tokens accepted now; 0 = authentication off. */
size_t auth_count(struct auth *a);

#endif
