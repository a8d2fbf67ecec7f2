/* log.c - see common/log.h. */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#define MAX_FIELDS 8
#define MAX_JOURNAL_FIELDS 24
#define MSG_MAX 2048

static struct {
    char ident[64];
    bool verbose;
    bool journal;
    char *fields[MAX_FIELDS];
    int nfields;
} log_cfg = { "dpr", false, false, { NULL }, 0 };

/* systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected to
 * stderr; it only counts while stderr still is that stream (a shell started
 * from a service inherits the variable with another stderr). */
static bool stderr_is_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat sb;

    if (!v || sscanf(v, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &sb) < 0)
        return false;
    return (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino;
}

void dpr_log_open(const char *ident, bool verbose)
{
    snprintf(log_cfg.ident, sizeof(log_cfg.ident), "%s", ident ? ident : "dpr");
    log_cfg.verbose = verbose;
    log_cfg.journal = stderr_is_journal();
}

int dpr_log_add_field(const char *field)
{
    char *copy;

    if (!field || !strchr(field, '=') || field[0] == '=')
        return -EINVAL;
    if (log_cfg.nfields == MAX_FIELDS)
        return -ENOSPC;
    copy = strdup(field);
    if (!copy)
        return -ENOMEM;
    log_cfg.fields[log_cfg.nfields++] = copy;
    return 0;
}

static void to_journal(int level, const char *const *fields, const char *msg)
{
    char prio[16], ident[sizeof(log_cfg.ident) + 20];
    char *message;
    struct iovec iov[MAX_JOURNAL_FIELDS];
    int n = 0;

    if (asprintf(&message, "MESSAGE=%s", msg) < 0)
        return;
    snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
    if (snprintf(ident, sizeof(ident), "SYSLOG_IDENTIFIER=%s", log_cfg.ident) < 0)
        ident[0] = '\0';
    iov[n++] = (struct iovec){ message, strlen(message) };
    iov[n++] = (struct iovec){ prio, strlen(prio) };
    iov[n++] = (struct iovec){ ident, strlen(ident) };
    for (int i = 0; i < log_cfg.nfields && n < MAX_JOURNAL_FIELDS; i++)
        iov[n++] = (struct iovec){ log_cfg.fields[i], strlen(log_cfg.fields[i]) };
    for (int i = 0; fields && fields[i] && n < MAX_JOURNAL_FIELDS; i++)
        iov[n++] = (struct iovec){ (void *)fields[i], strlen(fields[i]) };
    sd_journal_sendv(iov, n);
    free(message);
}

static void to_stderr(int level, const char *msg)
{
    char line[MSG_MAX + 160];
    struct timespec ts;
    struct tm tm;
    size_t n;
    ssize_t w;

    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(line + n, sizeof(line) - n, ".%03ld %s[%d]: %s%s", ts.tv_nsec / 1000000,
             log_cfg.ident, (int)getpid(),
             level <= DPR_LOG_ERR       ? "error: "
             : level == DPR_LOG_WARNING ? "warning: "
                                        : "",
             msg);
    n = strlen(line);
    line[n++] = '\n';
    /* one write per line; nowhere else to report a failure */
    w = write(STDERR_FILENO, line, n);
    (void)w;
}

static void logv_fields(int level, const char *const *fields, const char *fmt, va_list ap)
{
    char msg[MSG_MAX];

    if (level >= DPR_LOG_DEBUG && !log_cfg.verbose)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (log_cfg.journal)
        to_journal(level, fields, msg);
    else
        to_stderr(level, msg);
}

void dpr_log_fields(int level, const char *const *fields, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    logv_fields(level, fields, fmt, ap);
    va_end(ap);
}

void dpr_log(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    logv_fields(level, NULL, fmt, ap);
    va_end(ap);
}

bool dpr_log_limit_pass(dpr_log_limit *l, uint64_t now_ms, uint64_t every_ms, uint64_t *held)
{
    if (l->last_ms && now_ms - l->last_ms < every_ms) {
        l->held++;
        return false;
    }
    *held = l->held;
    l->held = 0;
    l->last_ms = now_ms;
    return true;
}
