/* kv_redis.c - see kv_redis.h. */
#include "kv_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "replyreader.h"

/* One PING on a fresh connection: 1 +PONG, 0 not yet (not listening,
 * loading), negative errno otherwise. */
static int ping(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[256];
    int fd, r = 0;
    ssize_t n;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out;
    if (write(fd, "PING\r\n", 6) != 6)
        goto out;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 1000) <= 0)
        goto out;
    n = read(fd, buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = 0;
        r = strncmp(buf, "+PONG", 5) == 0;
    }
out:
    close(fd);
    return r;
}

int kv_redis_start(const kv_redis_opts *o, pid_t *out, dpr_err *err)
{
    char maxmem[24];
    const char *prog = getenv("DPR_REDIS_SERVER");
    uint64_t deadline = dpr_deadline_ms(o->timeout_ms);
    struct sockaddr_un sa;
    pid_t parent = getpid(), pid;
    int status;

    if (!prog || !*prog)
        prog = "redis-server";
    if (strlen(o->socket) >= sizeof(sa.sun_path))
        return dpr_err_set(err, -ENAMETOOLONG, "socket path too long: %s", o->socket);
    if (mkdir(o->sockdir, 0700) < 0 && errno != EEXIST)
        return dpr_err_set(err, -errno, "cannot create %s: %s", o->sockdir, strerror(errno));
    if (chmod(o->sockdir, 0700) < 0)
        return dpr_err_set(err, -errno, "cannot chmod %s: %s", o->sockdir, strerror(errno));
    unlink(o->socket);
    snprintf(maxmem, sizeof(maxmem), "%" PRIu64, o->maxmemory);
    pid = fork();
    if (pid < 0)
        return dpr_err_set(err, -errno, "cannot fork: %s", strerror(errno));
    if (pid == 0) {
        char *argv[] = {(char *)prog, "--port", "0", "--unixsocket", (char *)o->socket,
                        "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                        "--dir", (char *)o->dir, "--dbfilename", (char *)o->dbfile,
                        "--daemonize", "no",
                        "--loglevel", "warning", "--logfile", "", "--protected-mode", "yes",
                        "--stop-writes-on-bgsave-error", "yes", "--rdbchecksum", "yes",
                        "--enable-protected-configs", "local", "--maxmemory", maxmem,
                        "--maxmemory-policy", "noeviction", NULL};
        /* systemd talks to the proxy only (NotifyAccess=main, the watchdog) */
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execvp(prog, argv);
        fprintf(stderr, "dpr-redis: cannot run %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    for (;;) {
        int r = ping(o->socket);
        if (r == 1)
            break;
        if (r < 0) {
            kv_redis_kill(pid);
            return dpr_err_set(err, r, "cannot connect to redis-server: %s", strerror(-r));
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            return dpr_err_set(err, -ECHILD, "%s exited at start (status 0x%x; its log is above)",
                               prog, status);
        if (dpr_ms_left(deadline) == 0) {
            kv_redis_kill(pid);
            return dpr_err_set(err, -ETIMEDOUT, "%s did not answer PING within %d ms", prog,
                               o->timeout_ms);
        }
        usleep(5000);
    }
    *out = pid;
    return 0;
}

void kv_redis_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

redisContext *kv_redis_connect(const char *socket, int timeout_ms, size_t max_elements,
                               dpr_err *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectUnixWithTimeout(socket, tv);
    redisReader *bounded;

    if (!rc || rc->err) {
        dpr_err_set(err, -ECONNREFUSED, "cannot connect to redis-server at %s: %s", socket,
                    rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    if (redisSetTimeout(rc, tv) != REDIS_OK) {
        dpr_err_set(err, -EIO, "cannot set a timeout on the redis-server connection");
        redisFree(rc);
        return NULL;
    }
    bounded = dpr_replyreader_new(max_elements);
    if (!bounded) {
        dpr_err_set(err, -ENOMEM, "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisReaderFree(rc->reader);
    rc->reader = bounded;
    return rc;
}

int kv_redis_reply(redisContext *rc, redisReply **out, dpr_err *err)
{
    void *reply = NULL;

    *out = NULL;
    if (redisGetReply(rc, &reply) != REDIS_OK || !reply)
        return dpr_err_set(err, rc->err == REDIS_ERR_PROTOCOL || rc->err == REDIS_ERR_OOM
                                    ? -EPROTO : -EIO,
                           "reading redis-server's reply: %s", rc->errstr[0] ? rc->errstr
                                                                           : "no reply");
    dpr_replyreader_reply_done(rc->reader);
    *out = reply;
    return 0;
}

void kv_redis_close(redisContext *rc)
{
    if (!rc)
        return;
    dpr_replyreader_free(rc->reader);
    rc->reader = NULL; /* (redisFree takes a NULL reader) */
    redisFree(rc);
}
