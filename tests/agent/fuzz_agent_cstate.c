/*
 * fuzz_agent_cstate.c - the replicated cluster state's decoders (cstate.h)
 * on arbitrary bytes, as Raft entries and as snapshots: nothing may crash
 * or leak, a refusal leaves the state as it was, and what is taken encodes
 * back to an entry that applies to the same state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cstate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_cstate cs, again;
    dpr_buf b;

    agent_cstate_init(&cs);
    agent_cstate_init(&again);
    dpr_buf_init(&b);
    if (agent_cstate_apply(&cs, data, size, NULL) == 0) {
        if (cs.changes != 1)
            abort();
        if (data[5] == AGENT_CSTATE_ENTRY_FINDER &&
            (!cs.finder ||
             agent_cstate_entry_encode(AGENT_CSTATE_ENTRY_FINDER, cs.finder, cs.finder_len,
                                       &b) != 0 ||
             agent_cstate_apply(&again, b.data, b.len, NULL) != 0 ||
             again.finder_len != cs.finder_len ||
             memcmp(again.finder, cs.finder, cs.finder_len) != 0))
            abort();
        if (data[5] == AGENT_CSTATE_ENTRY_NODE &&
            (cs.nnodes != 1 || !agent_cstate_node_valid(&cs.nodes[0]) ||
             agent_cstate_node_payload(&cs.nodes[0], &b) != 0))
            abort();
    } else if (cs.finder || cs.changes || cs.nnodes) {
        abort();
    }
    if (agent_cstate_restore(&cs, data, size, NULL) == 0) {
        for (size_t i = 0; i < cs.nnodes; i++)
            if (!agent_cstate_node_valid(&cs.nodes[i]) ||
                (i > 0 && cs.nodes[i - 1].id >= cs.nodes[i].id))
                abort();
        /* a format 4 image is canonical: it comes back byte for byte */
        if (data[4] == 4 &&
            (agent_cstate_snapshot(&cs, &b) != 0 || b.len != size || memcmp(b.data, data, size)))
            abort();
    }
    dpr_buf_free(&b);
    agent_cstate_free(&cs);
    agent_cstate_free(&again);
    return 0;
}
