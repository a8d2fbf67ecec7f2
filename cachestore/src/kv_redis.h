/*
 * kv_redis.h - a private redis-server child: start, wait, stop, and a
 * blocking connection to it whose replies are bounded.
 *
 * dpr-redis runs its redis-server this way (rp_redis.h), and dpr-kv runs
 * one for a moment to read a dpr-redis checkpoint (kv_rdb.h). The child
 * has no TCP port (`port 0`), one Unix socket (mode 0700) in a directory of
 * mode 0700, no automatic persistence (`save ""`, `appendonly no`), loads
 * `dbfile` from `dir`, and gets PR_SET_PDEATHSIG: it dies with its parent.
 * It does not see systemd's NOTIFY_SOCKET, watchdog or socket variables.
 * The program is redis-server on PATH, or $DPR_REDIS_SERVER.
 */
#ifndef KV_REDIS_H
#define KV_REDIS_H

#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "dpr/err.h"

typedef struct kv_redis_opts {
    const char *sockdir; /* created (mode 0700) when missing */
    const char *socket;  /* the socket's path (inside sockdir; < 108 bytes) */
    const char *dir;     /* redis-server's working directory (--dir) */
    const char *dbfile;  /* the RDB to load, in dir (absent: start empty) */
    uint64_t maxmemory;  /* 0: no limit (noeviction policy either way) */
    int timeout_ms;      /* to answer PING (it has loaded dbfile) */
} kv_redis_opts;

/* Starts it and waits until it answers PING with +PONG; *pid. */
int kv_redis_start(const kv_redis_opts *o, pid_t *pid, dpr_err *err);

/* Kills it (SIGKILL) and reaps it; pid <= 0: nothing. */
void kv_redis_kill(pid_t pid);

/*
 * A blocking connection to the socket with a timeout on every read and
 * write, whose reader is libdpr's bounded one (replyreader.h: a reply's
 * arrays hold at most max_elements elements together). Take every reply
 * with kv_redis_reply, which keeps the bound per reply. NULL and err on
 * failure; kv_redis_close it (not redisFree: the bound's state).
 */
redisContext *kv_redis_connect(const char *socket, int timeout_ms, size_t max_elements,
                               dpr_err *err);
void kv_redis_close(redisContext *rc);
/* The next reply (redisGetReply, then the bound starts again); 0, or
 * -EPROTO/-EIO with err (the context's error). */
int kv_redis_reply(redisContext *rc, redisReply **out, dpr_err *err);

#endif
