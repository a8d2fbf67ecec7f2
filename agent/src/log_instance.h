/*
 * log_instance.h - log entries about one cache-store instance.
 *
 * The agent logs through common/log.h (log_error ... log_debug). An entry
 * about one instance reads "<instance>: <message>" and carries the journal
 * fields DPR_INSTANCE=<instance> and DPR_UNIT=dpr-cachestore@<instance>.service,
 * so that `journalctl DPR_INSTANCE=kv-0` shows the agent's side of kv-0:
 *
 *     agent_log_instance(DPR_LOG_WARNING, "kv-0", "cannot start: %s", why);
 */
#ifndef AGENT_LOG_INSTANCE_H
#define AGENT_LOG_INSTANCE_H

#include "common/log.h"

/* level: DPR_LOG_ERR ... DPR_LOG_DEBUG (common/log.h). */
void agent_log_instance(int level, const char *instance, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with MESSAGE_ID=msgid (common/msgid.h; NULL: none). */
void agent_log_instance_id(int level, const char *instance, const char *msgid,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
