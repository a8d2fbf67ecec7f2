/*
 * cstate.h - the cluster's replicated state: what the agents' Raft log
 * holds (raftnode.h applies its entries), its entries and its snapshot
 * image. Pure: no I/O, no Raft; the bytes come from the network and from
 * disk, so every decoder checks everything (tests/agent/fuzz_agent_cstate.c).
 *
 * The state is the finder's durable state (store.h's image, every domain;
 * an entry replaces it whole: one per finder commit, the group commit of
 * one loop turn) and the node table (each member's name and addresses, as
 * the leader recorded them when the node joined or said hello). Later
 * kinds of entries (the spec and its generation, the instance table with
 * each instance's node) are new entry types and snapshot sections.
 *
 * Entry, little-endian:   magic "DPRE" (4), format 1 (1), type (1),
 *                         payload length (8), payload, CRC-32 (4) of all before,
 *                         zero bytes up to a multiple of 8 (c-raft's log wants
 *                         entries of such sizes).
 *   type 1 (finder):      payload = a finder state image (store.h).
 *   type 2 (node):        payload = a node record: id (8), then name, Raft
 *                         address and finder address, each a length byte and
 *                         its bytes; it adds or replaces the node of that id.
 *   type 3 (node gone):   payload = id (8): the node is no member any more.
 *   type 4 (spec):        payload = the cluster's desired spec record, JSON:
 *                         {"generation": N, "spec": {...} (as dprctl applied it),
 *                          "placement": where each instance runs and its worker
 *                         id, placement.h}.
 *   type 5 (instances):   payload = one node's instance record, JSON: {"node":
 *                         NAME, "deployments": [...]}; it replaces that node's.
 *                         A node gone takes its record along.
 * Snapshot:               magic "DPRS" (4), format 2 (1),
 *                         finder image length (8, 0: none), the image,
 *                         node count (8), the node records (as in entries),
 *                         spec record length (8, 0: none), the record,
 *                         instance record count (8), each its length (8) and
 *                         text (node names rising),
 *                         CRC-32 (4) of all before. Formats 1 (no nodes), 2
 *                         (no spec) and 3 (no instance records) are read too.
 * An entry of an unknown type or format is an error (-EPROTONOSUPPORT): a
 * node must never skip what a newer peer wrote.
 */
#ifndef AGENT_CSTATE_H
#define AGENT_CSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "common/buf.h"
#include "dpr/err.h"

#define AGENT_CSTATE_ENTRY_FINDER 1
#define AGENT_CSTATE_ENTRY_NODE 2
#define AGENT_CSTATE_ENTRY_NODE_GONE 3
#define AGENT_CSTATE_ENTRY_SPEC 4
#define AGENT_CSTATE_ENTRY_INSTANCES 5
#define AGENT_CSTATE_NAME_MAX 63
#define AGENT_CSTATE_ADDR_MAX 63
#define AGENT_CSTATE_MAX_NODES 1024

/* A member as the leader recorded it. */
typedef struct agent_cstate_node {
    uint64_t id;                               /* its Raft id */
    char name[AGENT_CSTATE_NAME_MAX + 1];      /* node.name */
    char raft[AGENT_CSTATE_ADDR_MAX + 1];      /* raft.address */
    char finder[AGENT_CSTATE_ADDR_MAX + 1];    /* its finder, "HOST:PORT" */
} agent_cstate_node;

/* One node's instance record: the JSON text {"node": NAME, "deployments":
 * [...], ...} (what it holds: clusterspec.c). */
typedef struct agent_cstate_insts {
    char node[AGENT_CSTATE_NAME_MAX + 1];
    char *json;
    size_t len;
} agent_cstate_insts;

typedef struct agent_cstate {
    unsigned char *finder;  /* the finder's state image, NULL: none yet */
    size_t finder_len;
    agent_cstate_node *nodes; /* sorted by id */
    size_t nnodes;
    /* the cluster's desired spec: the JSON text {"generation": N, "spec":
     * {...}, "placement": {...} (placement.h)}, NULL: none applied yet */
    char *spec;
    size_t spec_len;
    uint64_t spec_generation;
    /* each node's instances as it published them, sorted by node name */
    struct agent_cstate_insts *insts;
    size_t ninsts;
    uint64_t changes;       /* entries applied and snapshots restored (it
                             * changes whenever the state does) */
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

/* The payload of a node entry for n (replacing out's content): 0, -EINVAL
 * (a name or address that agent_cstate_node_valid refuses), -ENOMEM. */
int agent_cstate_node_payload(const agent_cstate_node *n, dpr_buf *out);
/* A name of 1..63 letters, digits, '-', '.', '_' and addresses of 1..63
 * visible ASCII characters. */
bool agent_cstate_node_valid(const agent_cstate_node *n);
/* The payload of a spec entry (replacing out's content): 0, -EINVAL (a
 * generation below 1, or placement values that are not node names),
 * -ENOMEM. spec and placement are borrowed. */
int agent_cstate_spec_payload(uint64_t generation, const json_t *spec, const json_t *placement,
                              dpr_buf *out);
/* The instance record node published (JSON text), or NULL. */
const char *agent_cstate_insts_of(const agent_cstate *cs, const char *node);
/* The node of id, or NULL. */
const agent_cstate_node *agent_cstate_node_find(const agent_cstate *cs, uint64_t id);
/* The node named name, or NULL. */
const agent_cstate_node *agent_cstate_node_named(const agent_cstate *cs, const char *name);

/* The snapshot image of cs into out (replacing its content): 0 or -ENOMEM. */
int agent_cstate_snapshot(const agent_cstate *cs, dpr_buf *out);
/* Replaces cs with a snapshot image: 0, -EBADMSG, -EPROTONOSUPPORT,
 * -ENOMEM (cs unchanged on failure; err says what). */
int agent_cstate_restore(agent_cstate *cs, const void *image, size_t len, dpr_err *err);

#endif
