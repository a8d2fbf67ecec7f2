/*
 * kv_chain.h - a version of the keyspace from the state directory's files:
 * a full image and the change logs after it (kv_ckpt.h, the two kinds).
 *
 * The checkpoint files of the directory, ascending by version, form chains:
 * a chain starts at a full image (or at a change log on base 0, the empty
 * keyspace), and every change log's base is the version of the file just
 * before it. Version v is restored from the newest file t <= v (the
 * versions between t and v held no writes): the newest chain start s <= t
 * is loaded, then the change logs s+1..t are applied in order.
 *
 *   kv_chain_scan     the headers of the listed files (no CRC check)
 *   kv_chain_check    every change log's base is the file before it
 *   kv_chain_restore  builds one version
 *   kv_chain_prunable what garbage collection may delete for a cut
 *
 * Functions return 0 or a negative errno; err (may be NULL) says which file
 * and what is wrong. A missing or damaged link is -EBADMSG, never a
 * silently older or emptier keyspace.
 */
#ifndef KV_CHAIN_H
#define KV_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"
#include "kv_ckpt.h"
#include "kv_dict.h"

typedef struct kv_chain_file {
    uint64_t version;
    uint64_t base;      /* a change log's base; 0 for a full image */
    bool delta;
    uint64_t committed; /* kv_ckpt_meta.committed */
    uint64_t world_line;
} kv_chain_file;

/* Does f start a chain (a full image, or a change log on the empty keyspace)? */
static inline bool kv_chain_starts(const kv_chain_file *f)
{
    return !f->delta || f->base == 0;
}

/* Reads the headers of the files of versions v[0..n) (ascending) in dir:
 * *out (malloc'd, n entries; free it; NULL when n == 0). A header that
 * cannot be read, or that names another worker or version, is an error. */
int kv_chain_scan(const char *dir, uint64_t worker, const uint64_t *v, size_t n,
                  kv_chain_file **out, dpr_err *err);

/* Every change log's base is the version of the file before it, or 0 when
 * it is the first (-EBADMSG naming the file and the missing version). */
int kv_chain_check(const kv_chain_file *f, size_t n, const char *dir, dpr_err *err);

/* Index of the chain start for file idx (the newest start <= idx); n when
 * there is none (a broken chain: kv_chain_check says so). */
size_t kv_chain_start(const kv_chain_file *f, size_t n, size_t idx);

/* Index of the newest file at or below version v; -1 when none. */
ssize_t kv_chain_at_or_below(const kv_chain_file *f, size_t n, uint64_t v);

/*
 * Builds the version of file idx into d (empty): its chain start, then the
 * change logs up to idx, each fully checked (kv_ckpt_apply) before it is
 * applied. *m (may be NULL) gets idx's header. On failure d may hold part of
 * the data (free it).
 */
int kv_chain_restore(const char *dir, uint64_t worker, const kv_chain_file *f, size_t n,
                     size_t idx, kv_dict *d, kv_ckpt_meta *m, dpr_err *err);

/*
 * How many files may be deleted from the front when this worker's cut is
 * `cut`: the finder may ask for any version >= cut, i.e. any file from the
 * newest one at or below the cut on, and each of those needs its chain from
 * its start. So everything before the chain start of the newest file <=
 * cut goes (nothing when no file is at or below the cut). With full images
 * only this is "keep the newest file <= cut and everything above". Pure.
 */
size_t kv_chain_prunable(const kv_chain_file *f, size_t n, uint64_t cut);

#endif
