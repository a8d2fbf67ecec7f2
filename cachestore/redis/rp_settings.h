/*
 * rp_settings.h - dpr-kv's settings that dpr-redis does not support.
 *
 * dpr-redis reads dpr-kv's flags and DPR_KV_* variables (kv_config), and
 * the agent writes them all into the instance file whatever the `impl`.
 * None is ignored silently: each one given that dpr-redis cannot honour is
 * logged at start-up with what happens instead (docs/dpr-redis.md,
 * "Settings").
 */
#ifndef RP_SETTINGS_H
#define RP_SETTINGS_H

#include "dpr/err.h"
#include "kv_config.h"

/* Logs a line for every setting of cfg dpr-redis does not honour. */
void rp_settings_check(const kv_config *cfg);

/* dpr-redis works in its state directory (chdir): the TLS files' names
 * (--tls-*-file, read again on SIGHUP) are made absolute against the
 * directory it started in. 0, or -ENAMETOOLONG / the errno of getcwd with
 * err set. */
int rp_settings_absolute(kv_config *cfg, dpr_err *err);

#endif
