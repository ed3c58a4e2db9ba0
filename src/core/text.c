/*
 * text.c — strict UTF-8, character-boundary cuts and blank text (see text.h).
 *
 * One decoder serves every check so that the server, the LLM request builder
 * and the configuration cannot disagree about what valid text is.
 */
#include "agentd/text.h"

size_t text_utf8_char_len(const char *p, size_t avail)
{
    const unsigned char *u = (const unsigned char *)p;

    if (avail == 0)
        return 0;
    unsigned char c = u[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2 || c > 0xf4) /* continuation byte, overlong 2-byte lead, > U+10FFFF */
        return 0;
    size_t need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (avail < need)
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((u[i] & 0xc0) != 0x80)
            return 0;
    if (c == 0xe0 && u[1] < 0xa0) /* overlong 3-byte form */
        return 0;
    if (c == 0xed && u[1] >= 0xa0) /* UTF-16 surrogates */
        return 0;
    if (c == 0xf0 && u[1] < 0x90) /* overlong 4-byte form */
        return 0;
    if (c == 0xf4 && u[1] >= 0x90) /* above U+10FFFF */
        return 0;
    return need;
}

size_t text_utf8_first_invalid(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t n = text_utf8_char_len(s + i, len - i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

bool text_utf8_valid(const char *s, size_t len)
{
    if (!s)
        return len == 0;
    return text_utf8_first_invalid(s, len) == len;
}

size_t text_utf8_prefix_len(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
        cut--;
    return cut;
}

bool text_is_space_or_control(unsigned char c)
{
    return c < 0x20 || c == ' ' || c == 0x7f;
}

bool text_all_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!text_is_space_or_control((unsigned char)s[i]))
            return false;
    return true;
}
