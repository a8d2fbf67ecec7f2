/*
 * cutreply.h - private to libdpr: the cuts in the finder's answers as the
 * client reads them (docs/protocol.md): DPR.SYNC's third element and
 * DPR.PREFIX's whole answer, a flat array
 *
 *     *2n :<worker> :<version> :<worker> :<version> ...
 *
 * Pure (no I/O): it checks the shape and every value of a hiredis reply.
 */
#ifndef DPR_CUTREPLY_H
#define DPR_CUTREPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "dpr/depset.h"

struct redisReply;

/* A non-negative integer reply into *out: true; false for anything else
 * (NULL too). */
bool dpr_cutreply_u64(const struct redisReply *r, uint64_t *out);

/* The flat cut into out (cleared first; a worker named twice keeps its
 * highest version): 0, -EPROTO (not an array of an even number of
 * non-negative integers; out may hold part of it) or -ENOMEM. */
int dpr_cutreply_flat(const struct redisReply *r, dpr_depset *out);

#endif
