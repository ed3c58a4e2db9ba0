/*
 * urlenc.h — RFC 3986 percent-encoding of one URL component (a query value or
 * a path segment), used to put untrusted text such as a search query or a
 * place name into a URL without letting it change the URL's structure.
 *
 * Pure and reentrant; safe from any thread.
 */
#ifndef AGENTD_URLENC_H
#define AGENTD_URLENC_H

/*
 * Returns a malloc'd copy of the NUL-terminated string s in which every byte
 * except the unreserved characters A-Z a-z 0-9 - . _ ~ is written as %XX
 * (uppercase hex), so a space becomes "%20" and UTF-8 bytes are encoded one by
 * one. The caller free()s the result. Returns NULL with errno = EINVAL when s
 * is NULL, or NULL with errno = ENOMEM.
 */
char *urlenc_component(const char *s);

#endif
