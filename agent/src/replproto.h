/*
 * replproto.h - the commands of checkpoint replication (replserver.h):
 * from other agents DPR.REPL.HAVE / PUT / DONE, from this node's
 * cache-stores DPR.REPLICA.SHIP. Checks one request's arguments. Pure: no
 * I/O (fuzzed: tests/agent/fuzz_agent_repl.c).
 */
#ifndef AGENT_REPLPROTO_H
#define AGENT_REPLPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spec.h"

#define AGENT_REPL_CHUNK_MAX (1u << 20)

typedef enum { AGENT_REPL_HAVE, AGENT_REPL_PUT, AGENT_REPL_DONE, AGENT_REPL_SHIP } agent_repl_op;

typedef struct agent_repl_cmd {
    agent_repl_op op;
    /* HAVE, PUT, DONE */
    char deployment[AGENT_DEPLOY_NAME_MAX + 1];
    uint64_t worker, version;  /* (SHIP: version too) */
    uint64_t offset;           /* PUT */
    const char *data;          /* PUT: borrowed from the request */
    size_t len;
    uint64_t size;             /* DONE; HAVE with sum */
    uint32_t crc;
    bool sum;                  /* HAVE: size and crc given (protocol 2) */
    /* SHIP */
    char instance[64], token[80], path[4096];
} agent_repl_cmd;

/*
 * Reads one request (argv[0..argc), argvlen each): a peer's command (local
 * false; naming cluster first) or a cache-store's (local true). NULL and
 * *out filled, or a one-line description of what is wrong (for a -ERR).
 */
const char *agent_repl_parse(int argc, char *const *argv, const size_t *argvlen, bool local,
                             const char *cluster, agent_repl_cmd *out);

#endif
