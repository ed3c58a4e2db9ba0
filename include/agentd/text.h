/*
 * text.h — the byte-level text rules every layer shares (src/core/text.c):
 * agentd's one strict UTF-8 check, cutting a string on a character boundary,
 * and recognising blank text.
 *
 * Strict UTF-8 means: no overlong forms, no surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF, no truncated sequence; NUL bytes are valid code
 * points (callers that refuse NUL check for it themselves). jansson applies
 * the same rule, so text that passes here is never refused by it.
 *
 * Pure: no I/O, no allocation, no global state; safe from any thread at once.
 * Nothing here returns memory; strings are read only, never kept.
 */
#ifndef AGENTD_TEXT_H
#define AGENTD_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence that starts at p, whose buffer holds avail more
   bytes; 0 when the sequence is invalid or truncated, or avail is 0. */
size_t text_utf8_char_len(const char *p, size_t avail);

/* Offset of the first byte of s[0..len) that does not start a valid sequence; len when all of
   s is valid. */
size_t text_utf8_first_invalid(const char *s, size_t len);

/* Whether s[0..len) is strict UTF-8. (s == NULL, len == 0) -> true; s == NULL with
   len > 0 -> false. */
bool text_utf8_valid(const char *s, size_t len);

/* Longest prefix of s[0..len) of at most max bytes that does not split a UTF-8 character
   (s is valid UTF-8): len when len <= max. */
size_t text_utf8_prefix_len(const char *s, size_t len, size_t max);

/* Control characters (below 0x20), space and DEL. */
bool text_is_space_or_control(unsigned char c);

/* True when s[0..len) holds nothing but spaces and control characters (len 0 included). */
bool text_all_blank(const char *s, size_t len);

#endif
