/*
 * reload.c — AGENTD_CONFIG_FILE at start and on reload (see reload.h).
 */
#include "agentd/reload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentd/app.h"
#include "agentd/auth.h"
#include "agentd/log.h"
#include "agentd/metrics.h"

extern char **environ;

/* The settings named in one log line: the line stays bounded whatever changed. */
#define RELOAD_NAMES_MAX_BYTES 2048

struct reload {
    struct app *app;
    const struct agentd_config *start; /* what the daemon started with */
    struct agentd_config applied;      /* the last version applied, once there is one */
    bool have_applied;
    char *path;                   /* NULL: nothing to reload */
    struct auth_file_stamp stamp; /* the version last read, or last found unusable */
    int64_t checked_ms;
};

int reload_load(const char *path, struct agentd_config *ret, struct config_file **ret_file,
                char *err, size_t errlen)
{
    struct config_file *file = NULL;
    int r;

    if (path && path[0]) {
        r = config_file_read(path, &file, err, errlen);
        if (r < 0)
            return r;
    }
    struct config_source src = {.file = file};
    r = config_load(ret, config_source_lookup, &src, err, errlen);
    if (r < 0) {
        config_file_free(file);
        return r;
    }
    *ret_file = file;
    return 0;
}

static void report_one(const char *name, size_t name_len, const char *origin,
                       reload_report_fn report, void *arg)
{
    char copy[CONFIG_NAME_MAX_BYTES * 2], msg[512];

    snprintf(copy, sizeof(copy), "%.*s", (int)name_len, name);
    config_unknown_message(copy, msg, sizeof(msg));
    size_t used = strlen(msg);
    snprintf(msg + used, sizeof(msg) - used, " (%s)", origin);
    report(msg, arg);
}

size_t reload_report_unknown(const struct config_file *file, bool env, reload_report_fn report,
                             void *arg)
{
    size_t n = 0;

    for (char **e = environ; env && e && *e; e++) {
        size_t len = strcspn(*e, "=");
        char name[CONFIG_NAME_MAX_BYTES * 2];

        if (strncmp(*e, "AGENTD_", 7) != 0)
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)len, *e);
        if (config_name_known(name) || config_env_ignored(name))
            continue;
        report_one(*e, len, "environment", report, arg);
        n++;
    }
    for (size_t i = 0; i < config_file_count(file); i++) {
        const char *name = config_file_name(file, i);
        if (config_name_known(name))
            continue;
        report_one(name, strlen(name), "AGENTD_CONFIG_FILE", report, arg);
        n++;
    }
    return n;
}

struct reload *reload_new(struct app *app, const struct agentd_config *start, const char *path)
{
    struct reload *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->app = app;
    r->start = start;
    if (path && path[0]) {
        r->path = strdup(path);
        if (!r->path) {
            free(r);
            return NULL;
        }
        /* The version read at start, as far as one can tell: a change after that reloads. */
        auth_file_stamp_get(r->path, &r->stamp);
    }
    return r;
}

struct reload *reload_free(struct reload *r)
{
    if (!r)
        return NULL;
    if (r->have_applied)
        config_free(&r->applied);
    free(r->path);
    free(r);
    return NULL;
}

bool reload_has_file(const struct reload *r)
{
    return r && r->path;
}

/* Collects setting names into a comma-separated list for one log line. */
struct name_list {
    bool live; /* which kind this list collects */
    char text[RELOAD_NAMES_MAX_BYTES];
    size_t count;
};

static void collect_name(const char *name, bool live, void *arg)
{
    struct name_list *l = arg;
    size_t used = strlen(l->text);

    if (live != l->live)
        return;
    l->count++;
    if (used + strlen(name) + 6 < sizeof(l->text))
        snprintf(l->text + used, sizeof(l->text) - used, "%s%s", used ? "," : "", name);
    else if (!strstr(l->text, ",..."))
        snprintf(l->text + used, sizeof(l->text) - used, ",...");
}

static void warn_unknown(const char *message, void *arg)
{
    (void)arg;
    log_warn(message);
}

/* Checks next whole and applies its live part; 0, or -errno with the reason in err. */
static int apply(struct reload *r, struct agentd_config *next, char *err, size_t errlen)
{
    enum log_level level;

    if (log_parse_level(next->log_level, &level) < 0) {
        snprintf(err, errlen,
                 "AGENTD_LOG_LEVEL: expected one of debug|info|warn|error, got '%.32s'",
                 next->log_level);
        return -EINVAL;
    }
    if (strcmp(next->log_format, "json") != 0 && strcmp(next->log_format, "text") != 0) {
        snprintf(err, errlen, "AGENTD_LOG_FORMAT: expected json or text, got '%.32s'",
                 next->log_format);
        return -EINVAL;
    }
    int rc = app_reconfigure(r->app, next, err, errlen);
    if (rc < 0)
        return rc;
    log_set_level(level);
    return 0;
}

void reload_now(struct reload *r, const char *trigger)
{
    struct config_file *file = NULL;
    struct agentd_config next;
    char err[512];
    int rc;

    if (!r->path)
        return;
    /* Taken before reading: if the file changes while it is read, the next check sees that. An
       unusable version is reported once, not at every check while it stays. */
    auth_file_stamp_get(r->path, &r->stamp);
    rc = reload_load(r->path, &next, &file, err, sizeof(err));
    if (rc == 0) {
        rc = apply(r, &next, err, sizeof(err));
        if (rc < 0)
            config_free(&next);
    }
    if (rc < 0) {
        metrics_config_reload(false);
        log_warn("configuration not reloaded, keeping the running one", LF_S("trigger", trigger),
                 LF_S("path", r->path), LF_S("reason", err));
        config_file_free(file);
        return;
    }
    metrics_config_reload(true);
    reload_report_unknown(file, false, warn_unknown, NULL); /* the environment was at start */
    file = config_file_free(file);

    struct name_list changed = {.live = true}, restart = {.live = false};
    config_diff(r->have_applied ? &r->applied : r->start, &next, collect_name, &changed);
    config_diff(r->start, &next, collect_name, &restart);
    if (restart.count > 0)
        log_warn("configuration: needs restart, not applied", LF_S("settings", restart.text),
                 LF_I("count", (int64_t)restart.count));
    log_info("configuration reloaded", LF_S("trigger", trigger), LF_S("path", r->path),
             LF_S("changed", changed.text), LF_I("count", (int64_t)changed.count));
    if (r->have_applied)
        config_free(&r->applied);
    r->applied = next;
    r->have_applied = true;
}

void reload_check(struct reload *r, int64_t now_ms)
{
    struct auth_file_stamp stamp;

    if (!r->path || now_ms - r->checked_ms < RELOAD_CHECK_MS)
        return;
    r->checked_ms = now_ms;
    auth_file_stamp_get(r->path, &stamp);
    if (!auth_file_stamp_equal(&stamp, &r->stamp))
        reload_now(r, "file changed");
}
