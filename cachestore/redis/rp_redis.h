/*
 * rp_redis.h - the redis-server child of dpr-redis: start, wait, stop.
 *
 * The proxy runs in its state directory (chdir) and starts redis-server
 * there with no TCP port (`port 0`), a Unix socket RP_REDIS_SOCKET inside
 * the directory RP_REDIS_SOCKET_DIR (mode 0700, socket mode 0700), no
 * automatic persistence (`save ""`, `appendonly no`) and the checkpoint
 * file to load as its dbfilename. The child gets PR_SET_PDEATHSIG, so it
 * dies with the proxy. The program is redis-server on PATH, or
 * $DPR_REDIS_SERVER.
 */
#ifndef RP_REDIS_H
#define RP_REDIS_H

#include <stdint.h>
#include <sys/types.h>

#include "dpr/err.h"

#define RP_REDIS_SOCKET_DIR "redis"
#define RP_REDIS_SOCKET "redis/redis.sock"

/* Starts redis-server loading dbfile (a file of the current directory;
 * one that does not exist: empty), with maxmemory bytes (0: no limit) and
 * the noeviction policy, and waits until it answers PING with +PONG (it
 * has loaded the file), up to timeout_ms. */
int rp_redis_start(const char *dbfile, uint64_t maxmemory, int timeout_ms, pid_t *pid,
                   dpr_err *err);

/* Kills it (SIGKILL) and reaps it. */
void rp_redis_kill(pid_t pid);

#endif
