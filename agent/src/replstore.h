/*
 * replstore.h - the copies of other nodes' checkpoints this node holds
 * (checkpoint replication, replica.h).
 *
 * Layout under root (<state_directory>/replicas):
 *
 *   <deployment>/<worker>/ckpt-<version>.kv        a finished copy
 *   <deployment>/<worker>/ckpt-<version>.kv.part   one being received
 *
 * The file name is the cache-store's own (dpr-kv's ckpt-<v>.kv), so that an
 * instance started here from these copies finds them where it looks. A copy
 * is finished only once its size and CRC-32 match what the sender says, it
 * is fsync'd, renamed and its directory fsync'd: a finished copy is
 * durable and whole.
 *
 * The file operations block: the replication server runs them on libuv's
 * thread pool. agent_replstore_prunable is pure.
 */
#ifndef AGENT_REPLSTORE_H
#define AGENT_REPLSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* "<root>/<deployment>/<worker>[/ckpt-<version>.kv[.part]]": 0 or
 * -ENAMETOOLONG. version 0: the worker's directory. */
int agent_replstore_path(char *out, size_t cap, const char *root, const char *deployment,
                         uint64_t worker, uint64_t version, bool part);

/* What the sender has of a copy: its size and CRC-32. */
typedef struct agent_replstore_sum {
    uint64_t size;
    uint32_t crc;
} agent_replstore_sum;

/* What this node has of a copy: *complete when the finished copy exists
 * and, when want is given, has want's size and CRC-32 (dpr-kv's compaction
 * replaces a version's change log by a full image: a finished copy that
 * differs is sent again and replaced by agent_replstore_finish); else
 * *size the bytes of the part received so far (0: none). 0 or -errno. */
int agent_replstore_have(const char *root, const char *deployment, uint64_t worker,
                         uint64_t version, const agent_replstore_sum *want, uint64_t *size,
                         bool *complete);

/* From now on, directories and files made in the tree get group gid (the
 * cache-store instances', replica.h; set once, before any copy arrives;
 * the agent needs CAP_CHOWN). Default: the agent's group. */
void agent_replstore_set_group(gid_t gid);

/* Appends data at offset to the copy being received (offset 0 starts it
 * afresh): 0; -ESPIPE when offset is not the bytes received so far
 * (*size says how many); -errno (-ENOSPC: the disk is full). */
int agent_replstore_put(const char *root, const char *deployment, uint64_t worker,
                        uint64_t version, uint64_t offset, const void *data, size_t len,
                        uint64_t *size);

/* Finishes a copy of size bytes with CRC-32 crc, replacing a finished copy
 * of that version if any: 0; -EBADMSG when what was received differs (the
 * part is removed: send it again); -ENOENT when nothing was received;
 * -errno. */
int agent_replstore_finish(const char *root, const char *deployment, uint64_t worker,
                           uint64_t version, uint64_t size, uint32_t crc);

/* The versions of the finished copies of (deployment, worker), ascending
 * (*v NULL when none): 0, or -errno (-ENOENT: none at all). */
int agent_replstore_list(const char *root, const char *deployment, uint64_t worker,
                         uint64_t **v, size_t *n);

/* How many of the sorted versions v[0..n) may go, from the front, when the
 * worker's cut entry is cut: every one below the newest at or below the
 * cut (that one is what a restore needs; newer ones may become the cut).
 * Pure. */
size_t agent_replstore_prunable(const uint64_t *v, size_t n, uint64_t cut);

/*
 * The same with dpr-kv's change logs (docs/dpr-kv.md, "Incremental
 * checkpoints"): a copy that is a change log needs every copy back to the
 * full image its chain starts at. starts[i]: copy i starts a chain (a full
 * image, a change log on the empty keyspace, or anything that is not a
 * change log). Every copy before the chain start of the newest one at or
 * below the cut may go. Pure.
 */
size_t agent_replstore_prunable_chain(const uint64_t *v, const bool *starts, size_t n,
                                      uint64_t cut);

/* Removes what agent_replstore_prunable_chain allows (each copy's header
 * says whether it is a change log and on what), and part files of versions
 * at or below the cut unless they replace a copy that stays (a compacted
 * image being received): the number removed, or -errno. */
int agent_replstore_prune(const char *root, const char *deployment, uint64_t worker,
                          uint64_t cut);

/* Removes every copy of (deployment, worker) and its directory: 0 or
 * -errno (missing is fine). */
int agent_replstore_drop(const char *root, const char *deployment, uint64_t worker);

#endif
