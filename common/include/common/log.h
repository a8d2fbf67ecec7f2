/*
 * common/log.h - the one logger of every DPR daemon.
 *
 * When stderr is the journal (systemd connected it: JOURNAL_STREAM names
 * it), every entry goes to journald as a structured record: MESSAGE,
 * PRIORITY, SYSLOG_IDENTIFIER, the process-wide fields added with
 * dpr_log_add_field (e.g. DPR_CLUSTER=), and the entry's own fields (e.g.
 * DPR_INSTANCE=, MESSAGE_ID=). Otherwise it is one plain line on stderr,
 * written with a single write(2) so that lines of a parent and its forked
 * children never mix:
 *
 *     2026-12-06 03:04:05.678 dpr-kv[4242]: warning: finder not reachable
 *
 * Debug entries are dropped unless dpr_log_open was asked to be verbose.
 * Safe in a forked child. Not thread-safe to configure; logging itself only
 * reads the configuration.
 *
 *     dpr_log_open("dpr-kv", verbose);
 *     log_info("listening on %s", addr);
 *     log_error("cannot write %s: %s", path, strerror(-r));
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdbool.h>
#include <stdint.h>

/* syslog priorities */
enum {
    DPR_LOG_ERR = 3,
    DPR_LOG_WARNING = 4,
    DPR_LOG_NOTICE = 5,
    DPR_LOG_INFO = 6,
    DPR_LOG_DEBUG = 7,
};

/*
 * A rate limit for a log line that input can provoke at will (a forged
 * request): at most one per `every_ms`.
 *
 *     if (dpr_log_limit_pass(&s->bad_limit, dpr_mono_ms(), 1000, &held))
 *         log_warning("... (and %" PRIu64 " more)", held);
 */
typedef struct dpr_log_limit {
    uint64_t last_ms; /* when the last line was let through; 0: never */
    uint64_t held;    /* lines held back since */
} dpr_log_limit;

/* Whether a line may be logged at now_ms; if so, *held is how many were
 * held back since the last one (and the count starts again). */
bool dpr_log_limit_pass(dpr_log_limit *l, uint64_t now_ms, uint64_t every_ms, uint64_t *held);

/* ident is the program name (SYSLOG_IDENTIFIER, and the line prefix). */
void dpr_log_open(const char *ident, bool verbose);
/* Adds "KEY=value" to every journal entry from now on (copied; up to 8).
 * 0, -EINVAL for a field without '=' , -ENOSPC when full. */
int dpr_log_add_field(const char *field);

void dpr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* With extra journal fields: a NULL-terminated list of "KEY=value" strings
 * (fields may be NULL). On stderr the fields are not shown. */
void dpr_log_fields(int level, const char *const *fields, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) dpr_log(DPR_LOG_ERR, __VA_ARGS__)
#define log_warning(...) dpr_log(DPR_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) dpr_log(DPR_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) dpr_log(DPR_LOG_INFO, __VA_ARGS__)
#define log_debug(...) dpr_log(DPR_LOG_DEBUG, __VA_ARGS__)

#endif
