/*
 * reload.h — the configuration of a running daemon: AGENTD_CONFIG_FILE read
 * at start next to the environment, re-read on SIGHUP and when the file
 * changes (a mounted Kubernetes ConfigMap is replaced through a symlink: a
 * new inode), every version checked whole before any of it applies.
 *
 * A valid version applies its live settings at once (app_reconfigure: timeouts,
 * retry, breaker and limiter settings, criticality, budgets; and the log
 * level) and names the settings that changed but need a restart in one log
 * line, without applying them. An invalid version (unreadable file, bad value,
 * bad criticality) changes nothing: the reason is logged and counted
 * (agentd_config_reloads_total{result="invalid"}); readiness is untouched.
 * The environment wins over the file for a name set in both, always.
 *
 * Threads: main thread only (reload_* and the unknown-name scan); what a
 * reload changes is read by the workers through app.h's atomic fields and the
 * dependencies' own locks.
 */
#ifndef AGENTD_RELOAD_H
#define AGENTD_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agentd/config.h"

struct app;
struct reload;

/* The configuration at start: the environment, then the file at `path` (NULL or "" = none).
   0, or -EINVAL/-ENOMEM with the message in err; *ret_file (NULL without a file) is the file
   as read, for reload_report_unknown. */
int reload_load(const char *path, struct agentd_config *ret, struct config_file **ret_file,
                char *err, size_t errlen);

/* Calls report(message, arg) once per name of `file` and (env true) per AGENTD_* variable of the
   environment that is no setting ("NAME: unknown setting; did you mean CLOSEST?", the name's
   origin appended); returns how many. Kubernetes service-link variables are skipped. */
typedef void (*reload_report_fn)(const char *message, void *arg);
size_t reload_report_unknown(const struct config_file *file, bool env, reload_report_fn report,
                             void *arg);

/* Watches `path` (NULL or "" = nothing to reload; the object is still made). start is the
   configuration the daemon runs with (borrowed, outlives the object). NULL on ENOMEM. */
struct reload *reload_new(struct app *app, const struct agentd_config *start, const char *path);
struct reload *reload_free(struct reload *r);
/* Whether there is a file to reload. */
bool reload_has_file(const struct reload *r);
/* Re-reads and applies the file now (a SIGHUP); trigger names the cause in the log. */
void reload_now(struct reload *r, const char *trigger);
/* Re-reads it when what is at its path changed, at most once per RELOAD_CHECK_MS. */
#define RELOAD_CHECK_MS 1000
void reload_check(struct reload *r, int64_t now_ms);

#endif
