/*
 * respread.h - reads RESP replies with hiredis' reader (redisReader, not
 * its async API) within a bound: one reply may take at most max bytes of
 * input, and its arrays at most max/3 elements in all (each element takes
 * three bytes at least), so a peer cannot make the agent hold more than
 * that for one reply. Pure: bytes in, replies out (respconn.h puts it on a
 * connection; tests/agent/fuzz_agent_respread.c fuzzes it).
 *
 *     agent_respread_feed(&rd, bytes, n);
 *     while ((rc = agent_respread_next(&rd, &reply)) == 1) { ...; freeReplyObject(reply); }
 *     if (rc < 0) ...the peer sent what cannot be read: drop the connection
 */
#ifndef AGENT_RESPREAD_H
#define AGENT_RESPREAD_H

#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <stdbool.h>
#include <stddef.h>

#include "dpr/err.h"

typedef struct agent_respread {
    redisReader *r;
    redisReplyObjectFunctions fn; /* hiredis' own, arrays counted */
    void *(*array)(const redisReadTask *task, int elements); /* hiredis' */
    size_t max;       /* bytes of one reply */
    size_t partial;   /* bytes fed since the last whole reply */
    size_t elements;  /* array elements of the reply in progress */
    bool too_big;
} agent_respread;

/* max: bytes of one reply (> 0). 0 or -ENOMEM. */
int agent_respread_init(agent_respread *rd, size_t max);
/* NULL-safe; replies handed out stay the caller's. */
void agent_respread_free(agent_respread *rd);
/* Bytes read from the peer. 0 or -ENOMEM. */
int agent_respread_feed(agent_respread *rd, const void *data, size_t n);
/* The next whole reply: 1 and *out (free it with freeReplyObject), 0 (none
 * yet), or -EPROTO (not RESP) / -EMSGSIZE (a reply over the bound), with
 * the reason in err. After an error the reader gives nothing more. */
int agent_respread_next(agent_respread *rd, redisReply **out, dpr_err *err);

#endif
