/*
 * kv_log.h - logging to stderr (journald adds its own timestamps; we add a
 * syslog priority prefix "<N>" when stderr is the journal, else a wall-clock
 * time), and the process-wide program tag.
 */
#ifndef KV_LOG_H
#define KV_LOG_H

enum kv_log_level { KV_LOG_ERR = 3, KV_LOG_WARN = 4, KV_LOG_INFO = 6, KV_LOG_DEBUG = 7 };

void kv_log_init(int verbose);
void kv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kv_err(...) kv_log(KV_LOG_ERR, __VA_ARGS__)
#define kv_warn(...) kv_log(KV_LOG_WARN, __VA_ARGS__)
#define kv_info(...) kv_log(KV_LOG_INFO, __VA_ARGS__)
#define kv_debug(...) kv_log(KV_LOG_DEBUG, __VA_ARGS__)

#endif
