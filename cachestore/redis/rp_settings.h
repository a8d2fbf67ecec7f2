/*
 * rp_settings.h - dpr-kv's settings that dpr-redis does not support.
 *
 * dpr-redis reads dpr-kv's flags and DPR_KV_* variables (kv_config), and
 * the agent writes them all into the instance file whatever the `impl`.
 * None is ignored silently: each one given that dpr-redis cannot honour is
 * refused (exit 2: a TLS client port clients would expect to reach) or
 * logged at start-up with what happens instead (docs/dpr-redis.md,
 * "Settings").
 */
#ifndef RP_SETTINGS_H
#define RP_SETTINGS_H

#include "kv_config.h"

/* Logs a line for every setting of cfg dpr-redis does not honour: 0, or
 * -EINVAL when one must be refused (its error logged). */
int rp_settings_check(const kv_config *cfg);

#endif
