/*
 * kv_layout.h - which keys a shard owns: its deployment's layout (pure, no
 * I/O).
 *
 * A layout is an epoch, the shard count n, every shard's address (in shard
 * order) and this shard's index in it. Shard i owns the keys that
 * dpr_route_shard(key, n) (route.h: hash tags, jump consistent hash) maps
 * to i. Epoch 0 is "no layout": the shard owns every key (a standalone
 * dpr-kv, and every shard until it is given a layout). A shard that is
 * leaving (a resize that removes it) has no index: it owns nothing.
 *
 * A resize moves the shard from its active layout to a pending one with a
 * higher epoch (docs/dpr-kv.md, "Layouts and resizing"); both live in the
 * shard's layout file, which this module encodes and decodes: RESP arrays
 * of bulk strings, so the file reads with the server's own request parser
 * and its fields are checked by the same function as the commands that set
 * them:
 *
 *     *2 "dpr-kv-layout" "1"                        magic, format
 *     *k "active" <epoch> <shard|-> <addr>...       when epoch > 0
 *     *k "pending" <epoch> <shard|-> <addr>...      while a resize runs
 *     *2 "crc32" <8 hex digits>                     of every byte before it
 *
 * Functions return 0 or a negative errno; errors carry a message in *err.
 */
#ifndef KV_LAYOUT_H
#define KV_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "kv_resp.h"

#define KV_LAYOUT_MAX_SHARDS 65536
#define KV_LAYOUT_MAX_ADDR 263        /* "[host]:port" of common/addr.h */
#define KV_LAYOUT_NO_SHARD UINT32_MAX /* the shard owns nothing (leaving) */
#define KV_LAYOUT_FILE_MAX (KV_LAYOUT_MAX_SHARDS * 2 * (KV_LAYOUT_MAX_ADDR + 16) + 4096)

typedef struct kv_layout {
    uint64_t epoch;   /* 0: no layout, every key is owned */
    uint32_t shard;   /* index of this shard, or KV_LAYOUT_NO_SHARD */
    uint32_t nshards; /* 0 when epoch is 0 */
    char **addrs;     /* nshards "host:port", as given */
} kv_layout;

typedef struct kv_layout_state {
    kv_layout active;
    kv_layout pending; /* epoch 0: no resize in progress */
} kv_layout_state;

void kv_layout_free(kv_layout *l);
void kv_layout_state_free(kv_layout_state *st);
/* dst = a deep copy of src (dst's old content freed first). */
int kv_layout_copy(kv_layout *dst, const kv_layout *src);
bool kv_layout_equal(const kv_layout *a, const kv_layout *b);

/*
 * A layout from its fields: argv[0] the epoch (1 .. 2^63 - 1), argv[1] this
 * shard's index or "-" (leaving), argv[2..] the address of every shard
 * ("host:port", 1 .. KV_LAYOUT_MAX_SHARDS of them; the index must be below
 * their count). -EINVAL with a message naming the field.
 */
int kv_layout_parse(size_t argc, const kv_arg *argv, kv_layout *out, dpr_err *err);

/* A layout epoch argument (DPR.LAYOUT COMMIT/MIGRATE/ABORT, DPR.IMPORT):
 * 0 and *epoch, or -1 with the error reply appended to out. */
int kv_layout_epoch_arg(const kv_arg *a, uint64_t *epoch, dpr_buf *out);

/* The shard of key under l (l->epoch > 0). */
uint32_t kv_layout_owner(const kv_layout *l, const char *key, size_t n);
/* Does this shard own key under l? Every key when l->epoch is 0. */
bool kv_layout_owns(const kv_layout *l, const char *key, size_t n);

/* Appends the file image of st to out. -ENOMEM. */
int kv_layout_encode(const kv_layout_state *st, dpr_buf *out);
/*
 * Reads a file image into *out (freed by the caller, also on failure).
 * -EBADMSG with a message for anything but a complete, valid image whose
 * CRC matches (a pending layout must have a higher epoch than the active
 * one).
 */
int kv_layout_decode(const char *data, size_t len, kv_layout_state *out, dpr_err *err);

#endif
