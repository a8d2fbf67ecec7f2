/*
 * cstate.h - the cluster's replicated state: what the agents' Raft log
 * holds (raftnode.h applies its entries), its entries and its snapshot
 * image. Pure: no I/O, no Raft; the bytes come from the network and from
 * disk, so every decoder checks everything (tests/agent/fuzz_agent_cstate.c).
 *
 * Today the state is the finder's durable state (store.h's image, every
 * domain); an entry replaces it whole (one per finder commit: the group
 * commit of one loop turn). Later kinds of entries (the spec and its
 * generation, the instance table with each instance's node) are new entry
 * types and new snapshot sections.
 *
 * Entry, little-endian:   magic "DPRE" (4), format 1 (1), type (1),
 *                         payload length (8), payload, CRC-32 (4) of all before,
 *                         zero bytes up to a multiple of 8 (c-raft's log wants
 *                         entries of such sizes).
 *   type 1 (finder):      payload = a finder state image (store.h).
 * Snapshot:               magic "DPRS" (4), format 1 (1),
 *                         finder image length (8, 0: none), the image,
 *                         CRC-32 (4) of all before.
 * An entry of an unknown type or format is an error (-EPROTONOSUPPORT): a
 * node must never skip what a newer peer wrote.
 */
#ifndef AGENT_CSTATE_H
#define AGENT_CSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dpr/err.h"

#define AGENT_CSTATE_ENTRY_FINDER 1

typedef struct agent_cstate {
    unsigned char *finder;  /* the finder's state image, NULL: none yet */
    size_t finder_len;
    uint64_t changes;       /* entries applied and snapshots restored: changes when the state does */
} agent_cstate;

void agent_cstate_init(agent_cstate *cs);
void agent_cstate_free(agent_cstate *cs);

/* An entry of type with payload into out (replacing its content): 0 or
 * -ENOMEM. */
int agent_cstate_entry_encode(int type, const void *payload, size_t len, dpr_buf *out);
/*
 * Checks an entry and applies it to cs: 0; -EBADMSG (damaged: length or
 * checksum), -EPROTONOSUPPORT (unknown format or type), -ENOMEM. cs is left
 * unchanged on failure; err says what.
 */
int agent_cstate_apply(agent_cstate *cs, const void *entry, size_t len, dpr_err *err);

/* The snapshot image of cs into out (replacing its content): 0 or -ENOMEM. */
int agent_cstate_snapshot(const agent_cstate *cs, dpr_buf *out);
/* Replaces cs with a snapshot image: 0, -EBADMSG, -EPROTONOSUPPORT,
 * -ENOMEM (cs unchanged on failure; err says what). */
int agent_cstate_restore(agent_cstate *cs, const void *image, size_t len, dpr_err *err);

#endif
