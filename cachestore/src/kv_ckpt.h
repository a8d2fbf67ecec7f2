/*
 * kv_ckpt.h - checkpoint files and the state directory.
 *
 * A checkpoint of version v is the file `ckpt-<v>.kv` (v in decimal) in the
 * state directory. It is written as `ckpt-<v>.kv.tmp`, fsynced, renamed into
 * place and the directory is fsynced, so a file with the final name is
 * always complete. Layout (little-endian):
 *
 *   offset size
 *   0      8    magic "DPRKVCKP"
 *   8      4    format (2; 1 is still read)
 *   12     4    flags (0)
 *   16     8    worker id
 *   24     8    world-line the version was sealed in
 *   32     8    version
 *   40     8    number of records
 *   48     8    creation time (Unix ms)
 *   56     8    committed: this worker's cut as the server knew it when it
 *                sealed the version (0: nothing seen committed yet).
 *                Format 1 ends the header before it (read as 0).
 *   64          records: klen u32, vlen u32, key bytes, value bytes
 *   end-12 8    trailer magic "DPRKVEND"
 *   end-4  4    CRC-32 (zlib) of every byte before it
 *
 * `committed` lets start-up tell a finder that lost its state from one that
 * rolled this worker back to nothing: a cut never goes back, so a finder
 * whose cut for this worker is below a committed value it recorded does
 * not know this worker's data (kv_recover.c).
 *
 * Readers check every length against the file and the CRC before trusting
 * anything; a damaged file is -EBADMSG with a readable message, never an
 * empty store. Functions return 0 or a negative errno; those with a
 * dpr_err (may be NULL) say which file and what is wrong.
 */
#ifndef KV_CKPT_H
#define KV_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"
#include "kv_dict.h"

#define KV_CKPT_MAGIC "DPRKVCKP"
#define KV_CKPT_END "DPRKVEND"
#define KV_CKPT_FORMAT 2
#define KV_CKPT_HEADER 64    /* format 2 */
#define KV_CKPT_HEADER_V1 56 /* format 1 */
#define KV_CKPT_TRAILER 12

typedef struct kv_ckpt_meta {
    uint64_t worker;
    uint64_t world_line;
    uint64_t version;
    uint64_t count;
    uint64_t created_ms;
    uint64_t committed; /* the worker's cut when sealed (0 in format 1) */
} kv_ckpt_meta;

/* "<dir>/ckpt-<v>.kv" (tmp: with ".tmp"); -ENAMETOOLONG if it does not fit. */
int kv_ckpt_path(char *buf, size_t cap, const char *dir, uint64_t version, int tmp);

/*
 * Writes the dict as checkpoint m->version (m->count is taken from the
 * dict): temporary file, fsync, rename, directory fsync. On failure the
 * temporary file is removed. Used by the snapshot child.
 */
int kv_ckpt_write(const char *dir, const kv_ckpt_meta *m, const kv_dict *d, dpr_err *err);

/* Reads only and checks the header (not the CRC): for decisions at start-up. */
int kv_ckpt_read_meta(const char *path, kv_ckpt_meta *m, dpr_err *err);

/*
 * Loads a checkpoint into d (which should be empty): checks size, magic,
 * format, CRC, that it belongs to `worker` and holds `version`, and every
 * record's bounds. On failure d may hold part of the data (free it).
 */
int kv_ckpt_load(const char *path, uint64_t worker, uint64_t version, kv_dict *d, kv_ckpt_meta *m,
                 dpr_err *err);
/* The same checks as kv_ckpt_load, without building a dict: is the file
 * whole and usable? (start-up validates every checkpoint this way before it
 * registers with the finder.) */
int kv_ckpt_verify(const char *path, uint64_t worker, uint64_t version, kv_ckpt_meta *m,
                   dpr_err *err);

/* --- the state directory ---------------------------------------------- */

/* Versions of the complete checkpoint files in dir, ascending (*v malloc'd,
 * free it; NULL when *n == 0). */
int kv_ckpt_list(const char *dir, uint64_t **v, size_t *n);
/* Removes leftover temporary files (an interrupted checkpoint). */
int kv_ckpt_remove_tmp(const char *dir);
/* Removes checkpoint `version` (a missing file is fine); dpr_fsync_dir
 * (common/fs.h) makes removals durable. */
int kv_ckpt_remove(const char *dir, uint64_t version);

/*
 * Copies every checkpoint file of seed (a complete `ckpt-<v>.kv`; other
 * names, temporary files included, are skipped) into dir: each to
 * `ckpt-<v>.kv.tmp`, fsync, rename, then one fsync of dir. For a worker
 * moved to another node: seed holds its checkpoints as copied there from
 * its previous node (the agent's replica copies). The files are not read
 * here (start-up checks every checkpoint in dir as usual). *copied gets
 * how many were copied. A seed directory that does not exist is -ENOENT
 * (nothing copied); one that cannot be read, or a copy that fails, is an
 * error with err saying which file (temporary files are removed, copies
 * already renamed stay).
 */
int kv_ckpt_seed(const char *dir, const char *seed, size_t *copied, dpr_err *err);

#endif
