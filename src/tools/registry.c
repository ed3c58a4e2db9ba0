/*
 * registry.c — the tool table: the JSON schemas sent to the model and the
 * per-tool criticality parsed from configuration (see tools.h); the names
 * come from vocab.h.
 */
#include "agentd/tools.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Long enough to show a mistyped item, short enough that a huge spec cannot flood a message. */
#define TOOLS_ERR_ITEM_MAX_BYTES 64

static int lookup_n(const char *name, size_t len, enum tool_id *ret_id)
{
    for (int i = 0; i < TOOL__COUNT; i++) {
        const char *known = tool_name((enum tool_id)i);
        if (strlen(known) == len && memcmp(known, name, len) == 0) {
            *ret_id = (enum tool_id)i;
            return 0;
        }
    }
    return -ENOENT;
}

int tool_lookup(const char *name, enum tool_id *ret_id)
{
    if (!name)
        return -ENOENT;
    return lookup_n(name, strlen(name), ret_id);
}

/* One tool whose input is a single required string property. json_pack builds the whole
 * object or returns NULL, having released whatever it had built, if an allocation failed. */
static json_t *simple_tool(const char *name, const char *description, const char *prop,
                           const char *prop_description)
{
    return json_pack("{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}}, s:[s], s:b}}", "name", name,
                     "description", description, "input_schema", "type", "object", "properties",
                     prop, "type", "string", "description", prop_description, "required", prop,
                     "additionalProperties", 0);
}

static json_t *save_note_tool(void)
{
    return json_pack(
        "{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}}, s:[s], s:b}}", "name",
        tool_name(TOOL_SAVE_NOTE), "description",
        "Saves a text note to durable storage on the server. Use it when the user asks you to "
        "write down, save or keep something; it returns a confirmation naming the saved file.",
        "input_schema", "type", "object", "properties", "content", "type", "string", "description",
        "The text of the note.", "filename", "type", "string", "description",
        "Optional file name: letters, digits, '.', '_' and '-', starting with a letter or digit, "
        "at most 128 characters. The server picks a name when it is omitted.",
        "pattern", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", "required", "content",
        "additionalProperties", 0);
}

static int append_tool(json_t *array, json_t *tool)
{
    if (!tool || json_array_append_new(array, tool) < 0)
        return -ENOMEM;
    return 0;
}

json_t *tools_definitions_json(bool include_web_search)
{
    json_t *tools = json_array();
    if (!tools)
        return NULL;

    if (append_tool(tools,
                    simple_tool(tool_name(TOOL_CALCULATOR),
                                "Evaluates an arithmetic expression (numbers, operators and "
                                "parentheses). Use it for any arithmetic instead of "
                                "computing in your head; it returns the result, or an error "
                                "explaining what is wrong with the expression.",
                                "expression", "The arithmetic expression, e.g. (3 + 4) * 2.")) < 0)
        goto fail;
    if (append_tool(tools, save_note_tool()) < 0)
        goto fail;
    if (include_web_search &&
        append_tool(tools,
                    simple_tool(tool_name(TOOL_WEB_SEARCH),
                                "Searches the web. Use it for recent events or facts you are "
                                "not sure of; it returns the top results as a numbered list "
                                "of title, URL and snippet.",
                                "query", "Plain search terms, at most 500 bytes.")) < 0)
        goto fail;
    if (append_tool(tools, simple_tool(tool_name(TOOL_GET_WEATHER),
                                       "Gets the current weather for a place. Use it when the user "
                                       "asks about the weather now; it returns the conditions, "
                                       "temperature and wind speed with units.",
                                       "location",
                                       "A place name such as a city, e.g. Seattle or Paris, "
                                       "France; at most 200 bytes.")) < 0)
        goto fail;
    return tools;

fail:
    json_decref(tools);
    return NULL;
}

/* Length to print of an item quoted in an error message. */
static int shown(size_t len)
{
    return (int)(len < TOOLS_ERR_ITEM_MAX_BYTES ? len : TOOLS_ERR_ITEM_MAX_BYTES);
}

static int __attribute__((format(printf, 3, 4)))
crit_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Narrows [*s, *s + *len) to exclude surrounding whitespace. */
static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*s)[*len - 1]))
        (*len)--;
}

static int parse_level(const char *s, size_t len, enum tool_criticality *ret)
{
    if (len == strlen("critical") && memcmp(s, "critical", len) == 0) {
        *ret = TOOL_CRITICAL;
        return 0;
    }
    if (len == strlen("optional") && memcmp(s, "optional", len) == 0) {
        *ret = TOOL_OPTIONAL;
        return 0;
    }
    return -EINVAL;
}

/* Applies one trimmed "name=level" item to levels; seen catches a tool named twice. */
static int apply_item(const char *item, size_t len, enum tool_criticality levels[TOOL__COUNT],
                      bool seen[TOOL__COUNT], char *err, size_t errlen)
{
    const char *eq = memchr(item, '=', len);
    if (!eq)
        return crit_error(err, errlen, "item '%.*s' is not of the form name=level", shown(len),
                          item);

    const char *name = item, *level = eq + 1;
    size_t name_len = (size_t)(eq - item), level_len = len - name_len - 1;
    trim(&name, &name_len);
    trim(&level, &level_len);

    enum tool_id id;
    if (lookup_n(name, name_len, &id) < 0)
        return crit_error(err, errlen,
                          "item '%.*s': unknown tool '%.*s' (expected calculator, save_note, "
                          "web_search or get_weather)",
                          shown(len), item, shown(name_len), name);
    if (seen[id])
        return crit_error(err, errlen, "item '%.*s': tool '%.*s' is named more than once",
                          shown(len), item, shown(name_len), name);
    if (parse_level(level, level_len, &levels[id]) < 0)
        return crit_error(err, errlen,
                          "item '%.*s': unknown level '%.*s' (expected critical or optional)",
                          shown(len), item, shown(level_len), level);
    seen[id] = true;
    return 0;
}

static int apply_spec(const char *spec, enum tool_criticality levels[TOOL__COUNT], char *err,
                      size_t errlen)
{
    bool seen[TOOL__COUNT] = {false};
    size_t total = strlen(spec);
    const char *all = spec;

    trim(&all, &total);
    if (total == 0)
        return 0;

    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *item = p;

        trim(&item, &len);
        if (len == 0)
            return crit_error(err, errlen, "empty item in tool criticality list");
        int r = apply_item(item, len, levels, seen, err, errlen);
        if (r < 0)
            return r;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

int tools_parse_criticality(const char *spec, enum tool_criticality ret[TOOL__COUNT], char *err,
                            size_t errlen)
{
    enum tool_criticality levels[TOOL__COUNT];
    int r;

    for (int i = 0; i < TOOL__COUNT; i++)
        levels[i] = TOOL_CRITICAL;
    /* The defaults go through the same parser so the documented string is the only table. */
    r = apply_spec(TOOLS_DEFAULT_CRITICALITY, levels, err, errlen);
    if (r < 0)
        return r;
    if (spec) {
        r = apply_spec(spec, levels, err, errlen);
        if (r < 0)
            return r;
    }
    memcpy(ret, levels, sizeof(levels));
    return 0;
}
