/*
 * log.h - the agent's log: structured journald entries when stderr is the
 * journal (JOURNAL_STREAM set, as under systemd), timestamped stderr lines
 * otherwise. Entries about one instance carry DPR_INSTANCE=.
 */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdbool.h>

enum { AGENT_LOG_ERR = 3, AGENT_LOG_WARN = 4, AGENT_LOG_NOTICE = 5, AGENT_LOG_INFO = 6,
       AGENT_LOG_DEBUG = 7 };

/* cluster and node are added to every journal entry (copied). */
void agent_log_init(bool verbose, const char *cluster, const char *node);
void agent_log_set_verbose(bool verbose);
/* instance may be NULL. */
void agent_logi(int level, const char *instance, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define agent_err(...) agent_logi(AGENT_LOG_ERR, NULL, __VA_ARGS__)
#define agent_warn(...) agent_logi(AGENT_LOG_WARN, NULL, __VA_ARGS__)
#define agent_info(...) agent_logi(AGENT_LOG_INFO, NULL, __VA_ARGS__)
#define agent_debug(...) agent_logi(AGENT_LOG_DEBUG, NULL, __VA_ARGS__)

#endif
