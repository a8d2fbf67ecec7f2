/* log.c - see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

static bool log_verbose;
static bool log_journal;
static char log_cluster[64] = "";
static char log_node[256] = "";

/* systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it connected to
 * stderr; it only counts when stderr still is that stream (a shell started
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

void agent_log_init(bool verbose, const char *cluster, const char *node)
{
    log_verbose = verbose;
    log_journal = stderr_is_journal();
    snprintf(log_cluster, sizeof(log_cluster), "%s", cluster ? cluster : "");
    snprintf(log_node, sizeof(log_node), "%s", node ? node : "");
}

void agent_log_set_verbose(bool verbose)
{
    log_verbose = verbose;
}

void agent_logi(int level, const char *instance, const char *fmt, ...)
{
    char msg[2048], line[2400];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;

    if (level == AGENT_LOG_DEBUG && !log_verbose)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_journal) {
        if (instance)
            sd_journal_send("MESSAGE=%s: %s", instance, msg, "PRIORITY=%d", level,
                            "SYSLOG_IDENTIFIER=dpr-agent", "DPR_CLUSTER=%s", log_cluster,
                            "DPR_NODE=%s", log_node, "DPR_INSTANCE=%s", instance,
                            "DPR_UNIT=dpr-cachestore@%s.service", instance, NULL);
        else
            sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level,
                            "SYSLOG_IDENTIFIER=dpr-agent", "DPR_CLUSTER=%s", log_cluster,
                            "DPR_NODE=%s", log_node, NULL);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(line + n, sizeof(line) - n, ".%03ld dpr-agent[%d]: %s%s%s%s\n",
             ts.tv_nsec / 1000000, (int)getpid(),
             level <= AGENT_LOG_ERR ? "error: " : level == AGENT_LOG_WARN ? "warning: " : "",
             instance ? instance : "", instance ? ": " : "", msg);
    /* one write per line */
    n = strlen(line);
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere else to report it */
    }
}
