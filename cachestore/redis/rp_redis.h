/*
 * rp_redis.h - the redis-server child of dpr-redis (kv_redis.h): in the
 * state directory, the proxy's current directory (chdir), with the Unix
 * socket RP_REDIS_SOCKET inside RP_REDIS_SOCKET_DIR.
 */
#ifndef RP_REDIS_H
#define RP_REDIS_H

#include <stdint.h>
#include <sys/types.h>

#include "dpr/err.h"
#include "kv_redis.h"

#define RP_REDIS_SOCKET_DIR "redis"
#define RP_REDIS_SOCKET "redis/redis.sock"

/* Starts redis-server loading dbfile (a file of the current directory;
 * one that does not exist: empty), with maxmemory bytes (0: no limit),
 * and waits until it has loaded it, up to timeout_ms. */
static inline int rp_redis_start(const char *dbfile, uint64_t maxmemory, int timeout_ms,
                                 pid_t *pid, dpr_err *err)
{
    kv_redis_opts o = {.sockdir = RP_REDIS_SOCKET_DIR, .socket = RP_REDIS_SOCKET, .dir = ".",
                       .dbfile = dbfile, .maxmemory = maxmemory, .timeout_ms = timeout_ms};
    return kv_redis_start(&o, pid, err);
}

static inline void rp_redis_kill(pid_t pid) { kv_redis_kill(pid); }

#endif
