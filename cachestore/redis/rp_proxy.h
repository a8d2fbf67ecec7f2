/*
 * rp_proxy.h - dpr-redis' proxy: clients, the Redis link, DPR.
 *
 * Clients speak RESP2 (plain commands and DPR.BATCH frames, exactly as with
 * dpr-kv, docs/protocol.md). Every command goes to the one redis-server
 * child over one pipelined Unix-socket connection, so Redis executes them
 * in the order the proxy sends them, and the proxy hands each reply (found
 * by rp_reply_len) back to the client whose command it answers. Replies the
 * proxy makes itself (batch headers, refusals) take their place in the same
 * queue, so every client gets its replies in request order.
 *
 * Versions: a batch runs in the worker's open version (dpr_worker_execute);
 * a checkpoint seals it and, in the same position of Redis' command stream,
 * sends `CONFIG SET dbfilename <tmp>` and `BGSAVE`: Redis forks exactly
 * there, so the file holds every command sent before and none after. INFO
 * persistence is polled until the save is done; the file is renamed to
 * ckpt-<version>.w<world-line>.rdb, the directory fsynced, and the version
 * reported to the finder. One BGSAVE at a time.
 *
 * A newer world-line from the finder (a rollback): Redis is killed and
 * started again from the checkpoint of the cut, every client with replies
 * in flight is disconnected.
 */
#ifndef RP_PROXY_H
#define RP_PROXY_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/tls.h"
#include "kv_config.h"
#include "kv_rdb.h"

/* A checkpoint file's name (ckpt-<version>.w<world-line>.rdb) */
#define RP_CKPT_FMT KV_RDB_FMT

/* Runs the proxy until it stops; returns the exit status. The current
 * directory is the state directory; tls is the TLS port's context (NULL:
 * none; the proxy's from now on); redis_pid is the child already started;
 * ckpts are the checkpoint versions on disk (ascending). */
int rp_proxy_run(const kv_config *cfg, dpr_tls_ctx *tls, uint64_t world_line, uint64_t restored,
                 pid_t redis_pid, const uint64_t *ckpts, size_t nckpts);

/* The checkpoints in the current directory: versions ascending and their
 * world-lines; removes temporary files. */
int rp_ckpt_list(uint64_t **versions, uint64_t **world_lines, size_t *n);

/* The file name of checkpoint `version` (searched in the directory), or ""
 * when there is none; out has room for 64 bytes. */
void rp_ckpt_name(uint64_t version, char *out, size_t cap);

#endif
