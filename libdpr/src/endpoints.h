/*
 * endpoints.h - private to libdpr: the answer of an agent to
 * DPR.CLUSTER.ENDPOINTS <deployment> (docs/protocol.md), as a client builds
 * its shard list from it.
 *
 *     *3 :<layout epoch>
 *        *n <endpoint of shard i: "HOST:PORT", or nil while unknown (not
 *            published yet, or its node is down)>
 *        *n :<worker id of shard i>
 *
 * dpr_endpoints_parse is pure (no I/O): it checks the shape and every value
 * of a hiredis reply and copies what it holds. Error replies are classified
 * too, so that the caller knows whether to ask another agent.
 */
#ifndef DPR_ENDPOINTS_H
#define DPR_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"

struct redisReply;

/* The most shards an answer may name (the client's limit too). */
#define DPR_ENDPOINTS_MAX_SHARDS 65536

typedef struct dpr_endpoints_shard {
    char *host;      /* NULL: no endpoint known (nil) */
    uint16_t port;   /* 0 when host is NULL */
    uint64_t worker;
} dpr_endpoints_shard;

typedef struct dpr_endpoints {
    uint64_t epoch;  /* the deployment's layout epoch (0: none given yet) */
    size_t n;        /* shards, >= 1 */
    dpr_endpoints_shard *shard;
} dpr_endpoints;

/*
 * Parses an agent's reply into *out (initialised here; free it with
 * dpr_endpoints_free, also after a failure). 0 on success: n >= 1, every
 * known endpoint a valid "HOST:PORT" / "[IPv6]:PORT" with a port 1..65535,
 * worker ids distinct. Errors, with a message in err:
 *   -ENOENT    an error reply "ERR no deployment ..." (the cluster's spec has
 *              no such deployment, or the agent runs alone)
 *   -EAGAIN    an error reply NOTLEADER / TRYAGAIN (ask another agent)
 *   -EREMOTEIO another error reply (its text in the message)
 *   -EPROTO    an answer of another shape, a bad endpoint or worker id,
 *              two shards with one worker id
 *   -ENOMEM
 */
int dpr_endpoints_parse(const struct redisReply *r, dpr_endpoints *out, dpr_err *err);
void dpr_endpoints_free(dpr_endpoints *e);
/* How many shards have no endpoint; their indexes (ascending) go to
 * missing[0 .. min(count, cap)). */
size_t dpr_endpoints_missing(const dpr_endpoints *e, size_t *missing, size_t cap);

#endif
