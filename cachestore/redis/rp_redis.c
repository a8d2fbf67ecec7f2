/* rp_redis.c - see rp_redis.h. */
#include "rp_redis.h"

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

/* One PING on a fresh connection: 1 +PONG, 0 not yet (not listening,
 * loading), negative errno otherwise. */
static int ping(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[256];
    int fd, r = 0;
    ssize_t n;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", RP_REDIS_SOCKET);
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

int rp_redis_start(const char *dbfile, uint64_t maxmemory, int timeout_ms, pid_t *out,
                   dpr_err *err)
{
    char maxmem[24];
    const char *prog = getenv("DPR_REDIS_SERVER");
    uint64_t deadline = dpr_deadline_ms(timeout_ms);
    pid_t parent = getpid(), pid;
    int status;

    if (!prog || !*prog)
        prog = "redis-server";
    if (mkdir(RP_REDIS_SOCKET_DIR, 0700) < 0 && errno != EEXIST)
        return dpr_err_set(err, -errno, "cannot create %s: %s", RP_REDIS_SOCKET_DIR,
                           strerror(errno));
    if (chmod(RP_REDIS_SOCKET_DIR, 0700) < 0)
        return dpr_err_set(err, -errno, "cannot chmod %s: %s", RP_REDIS_SOCKET_DIR,
                           strerror(errno));
    unlink(RP_REDIS_SOCKET);
    snprintf(maxmem, sizeof(maxmem), "%" PRIu64, maxmemory);
    pid = fork();
    if (pid < 0)
        return dpr_err_set(err, -errno, "cannot fork: %s", strerror(errno));
    if (pid == 0) {
        char *argv[] = {(char *)prog, "--port", "0", "--unixsocket", RP_REDIS_SOCKET,
                        "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                        "--dir", ".", "--dbfilename", (char *)dbfile, "--daemonize", "no",
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
        int r = ping();
        if (r == 1)
            break;
        if (r < 0) {
            rp_redis_kill(pid);
            return dpr_err_set(err, r, "cannot connect to redis-server: %s", strerror(-r));
        }
        if (waitpid(pid, &status, WNOHANG) == pid)
            return dpr_err_set(err, -ECHILD, "%s exited at start (status 0x%x; its log is above)",
                               prog, status);
        if (dpr_ms_left(deadline) == 0) {
            rp_redis_kill(pid);
            return dpr_err_set(err, -ETIMEDOUT, "%s did not answer PING within %d ms", prog,
                               timeout_ms);
        }
        usleep(5000);
    }
    *out = pid;
    return 0;
}

void rp_redis_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}
