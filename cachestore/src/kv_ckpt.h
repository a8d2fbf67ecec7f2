/*
 * kv_ckpt.h - checkpoint files and the state directory.
 *
 * A checkpoint of version v is the file `ckpt-<v>.kv` (v in decimal) in the
 * state directory. It is written as `ckpt-<v>.kv.tmp`, fsynced, renamed into
 * place and the directory is fsynced, so a file with the final name is
 * always complete. It is one of two kinds:
 *
 *  - a full image: every key and value of version v (format 2);
 *  - a change log (format 3, flag KV_CKPT_F_DELTA): the writes of the
 *    versions after `base` up to v, in execution order. Applied to the
 *    keyspace of version `base` (the previous file of the directory; base 0:
 *    the empty keyspace) it gives version v. kv_chain.h restores a version
 *    from a full image and the change logs after it.
 *
 * Layout (little-endian):
 *
 *   offset size
 *   0      8    magic "DPRKVCKP"
 *   8      4    format (2: full image, 3: full image or change log; 1 is
 *                still read)
 *   12     4    flags (0, or KV_CKPT_F_DELTA in format 3)
 *   16     8    worker id
 *   24     8    world-line the version was sealed in
 *   32     8    version
 *   40     8    number of records
 *   48     8    creation time (Unix ms)
 *   56     8    committed: this worker's cut as the server knew it when it
 *                sealed the version (0: nothing seen committed yet).
 *                Format 1 ends the header before it (read as 0).
 *   64     8    format 3 only: base, the version a change log applies to
 *                (0 in a full image)
 *   64 (72)     full image records: klen u32, vlen u32, key bytes, value
 *               bytes (every key once)
 *   72          change log records: op u8 (KV_CKPT_OP_*), klen u32, vlen
 *               u32, key bytes, value bytes (vlen 0 for DEL)
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "kv_dict.h"

#define KV_CKPT_MAGIC "DPRKVCKP"
#define KV_CKPT_END "DPRKVEND"
#define KV_CKPT_FORMAT 2       /* full images */
#define KV_CKPT_FORMAT_DELTA 3 /* change logs */
#define KV_CKPT_HEADER 64      /* format 2 */
#define KV_CKPT_HEADER_V1 56   /* format 1 */
#define KV_CKPT_HEADER_V3 72   /* format 3 */
#define KV_CKPT_TRAILER 12
#define KV_CKPT_F_DELTA 1u

/* Operations of a change log record. */
enum kv_ckpt_op {
    KV_CKPT_OP_SET = 1,    /* key := value */
    KV_CKPT_OP_DEL = 2,    /* key removed (vlen 0; absent is fine) */
    KV_CKPT_OP_APPEND = 3, /* value appended to key's (created when absent) */
};
#define KV_CKPT_REC_HEADER 9 /* op, klen, vlen */

typedef struct kv_ckpt_meta {
    uint64_t worker;
    uint64_t world_line;
    uint64_t version;
    uint64_t count;
    uint64_t created_ms;
    uint64_t committed; /* the worker's cut when sealed (0 in format 1) */
    bool delta;         /* a change log (else a full image) */
    uint64_t base;      /* a change log's base version (< version); 0 in a full image */
} kv_ckpt_meta;

/*
 * A change log being collected in memory (the writes of the open version):
 * records appended with kv_ckpt_log_add, in the file's record format. Out
 * of memory is sticky (buf.failed): check it once, before writing.
 */
typedef struct kv_ckpt_log {
    dpr_buf buf;
    uint64_t count;
} kv_ckpt_log;

#define KV_CKPT_LOG_INIT { DPR_BUF_INIT, 0 }

/* 0, -E2BIG (key or value above KV_DICT_MAX_LEN), -EINVAL (DEL with a value,
 * unknown op) or -ENOMEM (also remembered in l->buf.failed). */
int kv_ckpt_log_add(kv_ckpt_log *l, enum kv_ckpt_op op, const char *key, size_t klen,
                    const char *val, size_t vlen);
void kv_ckpt_log_reset(kv_ckpt_log *l);
void kv_ckpt_log_free(kv_ckpt_log *l);

/* "<dir>/ckpt-<v>.kv" (tmp: with ".tmp"); -ENAMETOOLONG if it does not fit. */
int kv_ckpt_path(char *buf, size_t cap, const char *dir, uint64_t version, int tmp);

/*
 * Writes the dict as checkpoint m->version (m->count is taken from the
 * dict): temporary file, fsync, rename, directory fsync. On failure the
 * temporary file is removed. Used by the snapshot child.
 */
int kv_ckpt_write(const char *dir, const kv_ckpt_meta *m, const kv_dict *d, dpr_err *err);
/*
 * Writes log as change log m->version on base m->base (m->delta is implied;
 * m->count is taken from the log): the same steps as kv_ckpt_write. -EINVAL
 * when base is not below the version, -ENOMEM when the log is incomplete
 * (l->buf.failed).
 */
int kv_ckpt_write_delta(const char *dir, const kv_ckpt_meta *m, const kv_ckpt_log *l,
                        dpr_err *err);

/*
 * Compaction (--checkpoint-log): a full image of version v written beside
 * its change log, as `ckpt-<v>.kv.full` (through `.full.tmp`, fsync, rename,
 * directory fsync), then renamed over `ckpt-<v>.kv` once that change log is
 * on disk (same version, same keyspace), the directory fsynced. Leftovers
 * of either name are removed by kv_ckpt_remove_tmp (start-up) and
 * kv_ckpt_remove_compaction (a rollback, a failed child). Its writing is
 * paced: each MiB is sent to the disk (sync_file_range) and the one before
 * waited for, so the change logs' fsyncs never queue behind gigabytes.
 */
#define KV_CKPT_COMPACT_SUFFIX ".kv.full"
int kv_ckpt_write_compaction(const char *dir, const kv_ckpt_meta *m, const kv_dict *d,
                             dpr_err *err);
int kv_ckpt_install_compaction(const char *dir, uint64_t version, dpr_err *err);
int kv_ckpt_remove_compaction(const char *dir, uint64_t version);

/* Reads only and checks the header (not the CRC): for decisions at start-up. */
int kv_ckpt_read_meta(const char *path, kv_ckpt_meta *m, dpr_err *err);

/*
 * Loads a full image into d (which should be empty): checks size, magic,
 * format, CRC, that it belongs to `worker` and holds `version`, and every
 * record's bounds. A change log is -EBADMSG (kv_ckpt_apply takes both). On
 * failure d may hold part of the data (free it).
 */
int kv_ckpt_load(const char *path, uint64_t worker, uint64_t version, kv_dict *d, kv_ckpt_meta *m,
                 dpr_err *err);
/*
 * Either kind: a full image is loaded into d (which must be empty: else
 * -EINVAL), a change log is applied to d (which must hold its base version:
 * the caller knows, kv_chain.c). The checks of kv_ckpt_load, and a change
 * log's records are checked (op, lengths) before the first is applied. On
 * failure d may be half changed (free it).
 */
int kv_ckpt_apply(const char *path, uint64_t worker, uint64_t version, kv_dict *d, kv_ckpt_meta *m,
                  dpr_err *err);
/* The same checks as kv_ckpt_apply, without touching a dict: is the file
 * (either kind) whole and usable? (start-up validates every checkpoint this
 * way before it registers with the finder.) */
int kv_ckpt_verify(const char *path, uint64_t worker, uint64_t version, kv_ckpt_meta *m,
                   dpr_err *err);

/* --- the state directory ---------------------------------------------- */

/* Versions of the complete checkpoint files in dir, ascending (*v malloc'd,
 * free it; NULL when *n == 0). */
int kv_ckpt_list(const char *dir, uint64_t **v, size_t *n);
/* Removes leftover temporary files (an interrupted checkpoint) and
 * compactions not installed. */
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
