/* kv_log.c - see kv_log.h. */
#include "kv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_verbose;
static int log_journal; /* stderr is connected to journald: use <N> prefixes */

void kv_log_init(int verbose)
{
    log_verbose = verbose;
    /* systemd sets JOURNAL_STREAM when stderr goes to the journal */
    log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void kv_log(int level, const char *fmt, ...)
{
    char line[1024];
    size_t n = 0;
    va_list ap;

    if (level == KV_LOG_DEBUG && !log_verbose)
        return;
    if (log_journal) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld dpr-kv[%d]: ",
                              ts.tv_nsec / 1000000, (int)getpid());
    }
    if (n < sizeof(line)) {
        va_start(ap, fmt);
        int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (k > 0)
            n += (size_t)k;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* one write(2) per line so lines of parent and checkpoint child never mix */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
