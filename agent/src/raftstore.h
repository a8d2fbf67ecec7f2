/*
 * raftstore.h - the finder's store (dpr/store.h) in the agents' Raft log
 * (raftnode.h), on the leader: save_async appends the state's image
 * (store.h) as one entry (cstate.h type finder) and ends once a quorum
 * committed it; a confirmation (st NULL) is a Raft barrier, so no reply
 * leaves a node that lost its quorum. Both end in -ENOTCONN once this
 * node is no longer the leader. load() reads the state as applied here.
 *
 * dpr_store_close with requests in flight: their callbacks are never
 * called (the store's memory goes when the last one ends).
 */
#ifndef AGENT_RAFTSTORE_H
#define AGENT_RAFTSTORE_H

#include "dpr/store.h"
#include "raftnode.h"

/* 0 or -ENOMEM. */
int agent_raftstore_open(agent_raft *raft, dpr_store **out);

#endif
