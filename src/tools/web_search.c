/*
 * web_search.c — the pure parts of the `web_search` tool over SearXNG's JSON
 * API: input validation, URL building and turning the response into a short
 * numbered list for the model (see web_search.h).
 *
 * Everything taken from the response is untrusted: every field is cut to a
 * byte cap on a UTF-8 character boundary and control characters are replaced,
 * so a hostile or broken backend cannot flood the model's context or forge
 * structure in the list.
 */
#include "agentd/web_search.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/text.h"
#include "agentd/tool_input.h"
#include "agentd/urlenc.h"

#define WEB_SEARCH_FIELD     "query"
#define WEB_SEARCH_MALFORMED "search backend returned a malformed response"

/* Writes s[0..len) cut to max bytes, with runs of whitespace/control characters (including
 * NUL, newlines and tabs) folded into one space and trimmed, then "..." if it was cut. */
static void put_clean(FILE *f, const char *s, size_t len, size_t max)
{
    size_t cut = text_utf8_prefix_len(s, len, max);
    bool pending_space = false, wrote = false;

    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (text_is_space_or_control(c)) {
            pending_space = wrote;
            continue;
        }
        if (pending_space)
            fputc(' ', f);
        fputc(c, f);
        pending_space = false;
        wrote = true;
    }
    if (cut < len)
        fputs("...", f);
}

/* The string value of member key of obj, or NULL when absent or not a string. */
static const char *string_member(const json_t *obj, const char *key, size_t *ret_len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return NULL;
    *ret_len = json_string_length(v);
    return json_string_value(v);
}

int web_search_input(const json_t *input, const char **ret_query, struct tool_result *ret)
{
    return tool_input_single_string(input, WEB_SEARCH_FIELD, WEB_SEARCH_MAX_QUERY_BYTES, ret_query,
                                    ret);
}

char *web_search_build_url(const char *base_url, const char *query)
{
    if (!base_url || !query) {
        errno = EINVAL;
        return NULL;
    }
    char *q = urlenc_component(query);
    if (!q)
        return NULL;

    int base_len = (int)strlen(base_url);
    if (base_len > 0 && base_url[base_len - 1] == '/')
        base_len--;

    char *url = NULL;
    if (asprintf(&url, "%.*s/search?q=%s&format=json", base_len, base_url, q) < 0) {
        url = NULL;
        errno = ENOMEM;
    }
    free(q);
    return url;
}

struct search_hit {
    const char *title, *url, *content; /* NULL when missing, not a string or blank */
    size_t title_len, url_len, content_len;
};

/* The usable fields of one result; returns false when it carries nothing worth showing. */
static bool hit_from_json(const json_t *result, struct search_hit *hit)
{
    if (!json_is_object(result))
        return false;
    *hit = (struct search_hit){0};
    hit->title = string_member(result, "title", &hit->title_len);
    hit->url = string_member(result, "url", &hit->url_len);
    hit->content = string_member(result, "content", &hit->content_len);
    if (hit->title && text_all_blank(hit->title, hit->title_len))
        hit->title = NULL;
    if (hit->url && text_all_blank(hit->url, hit->url_len))
        hit->url = NULL;
    if (hit->content && text_all_blank(hit->content, hit->content_len))
        hit->content = NULL;
    return hit->title || hit->url || hit->content;
}

static void put_hit(FILE *f, int number, const struct search_hit *hit)
{
    fprintf(f, "\n%d. ", number);
    if (hit->title)
        put_clean(f, hit->title, hit->title_len, WEB_SEARCH_MAX_TITLE_BYTES);
    else
        fputs("(untitled)", f);
    if (hit->url) {
        fputs("\n   ", f);
        put_clean(f, hit->url, hit->url_len, WEB_SEARCH_MAX_URL_BYTES);
    }
    if (hit->content) {
        fputs("\n   ", f);
        put_clean(f, hit->content, hit->content_len, WEB_SEARCH_MAX_SNIPPET_BYTES);
    }
}

/* Formats the list (or the no-results sentence) into a malloc'd string; NULL on ENOMEM. */
static char *format_results(const json_t *results, const char *query)
{
    struct search_hit hits[WEB_SEARCH_MAX_RESULTS];
    int count = 0;
    size_t i;
    const json_t *item;

    json_array_foreach(results, i, item)
    {
        if (count == WEB_SEARCH_MAX_RESULTS)
            break;
        if (hit_from_json(item, &hits[count]))
            count++;
    }

    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (!f)
        return NULL;

    fputs(count > 0 ? "Top results for '" : "No results for '", f);
    put_clean(f, query, strlen(query), WEB_SEARCH_MAX_QUERY_BYTES);
    fputs(count > 0 ? "':" : "'.", f);
    for (int n = 0; n < count; n++)
        put_hit(f, n + 1, &hits[n]);

    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(text);
        return NULL;
    }
    return text;
}

int web_search_parse(const char *body, size_t len, const char *query, struct tool_result *ret)
{
    json_t *root = NULL;
    char *text = NULL;
    int r;

    /* JSON_ALLOW_NUL: one "\u0000" in a snippet should not void the whole answer; every
     * field is read by its length and NULs are flattened like other control characters. */
    if (body && len <= WEB_SEARCH_MAX_BODY_BYTES)
        root = json_loadb(body, len, JSON_ALLOW_NUL, NULL);

    const json_t *results = json_object_get(root, "results");
    if (!json_is_array(results)) {
        r = tool_result_setf(ret, TOOL_SYSTEM_ERROR, WEB_SEARCH_MALFORMED);
        r = r < 0 ? r : -EBADMSG;
        goto out;
    }

    text = format_results(results, query ? query : "");
    if (!text) {
        r = -ENOMEM;
        goto out;
    }
    r = tool_result_setf(ret, TOOL_OK, "%s", text);
    free(text);

out:
    json_decref(root);
    return r;
}
