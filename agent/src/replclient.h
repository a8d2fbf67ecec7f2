/*
 * replclient.h - sends one checkpoint file to another agent's replication
 * server (replserver.h): DPR.REPL.HAVE with the file's size and CRC-32 (the
 * peer's finished copy counts only if it is this file: a compacted image
 * replaces a change log of the same version; an older agent that refuses
 * this is asked the short HAVE), then DPR.REPL.PUT of 256 KiB chunks from
 * what the peer has already (a broken transfer resumes), at most four
 * chunks in flight, then DPR.REPL.DONE with the size and CRC-32 the file
 * had when the transfer began (a mismatch, e.g. a part of another file of
 * that version left by a broken transfer, is sent once more from the
 * start). The file is read on libuv's thread pool. With a TLS context the
 * connection is TLS, and the peer must show a node certificate of the
 * cluster before anything is sent. Loop thread only.
 */
#ifndef AGENT_REPLCLIENT_H
#define AGENT_REPLCLIENT_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "common/tls.h"

typedef struct agent_replclient agent_replclient;

/* The end of a transfer: status 0 (the peer holds the whole copy, fsync'd),
 * or a negative errno with error: what went wrong ("node2: -ERR ... No space
 * left on device", "cannot connect to ...: connection refused"). */
typedef void (*agent_replclient_done_fn)(void *arg, int status, const char *error);

/* What to send, and where. The strings are copied. */
typedef struct agent_replclient_job {
    const char *peer;        /* "HOST:PORT" of its replication server */
    const char *peer_name;   /* its node name, for messages */
    const char *cluster;
    const char *deployment;
    uint64_t worker, version;
    const char *path;        /* the checkpoint file */
    uid_t owner;             /* path must belong to this uid (the cache-store
                              * that named it), unless it is 0 (root) */
    unsigned timeout_ms;     /* for the whole transfer */
    dpr_tls_ctx *tls;        /* the agent's connecting context (TLS on; the
                              * connection takes a reference), or NULL */
} agent_replclient_job;

/* Starts it: 0 and *out (for cancelling), or -ENOMEM / -ENAMETOOLONG.
 * done is called once, on a later loop turn, unless cancelled first. */
int agent_replclient_send(uv_loop_t *loop, const agent_replclient_job *job,
                          agent_replclient_done_fn done, void *arg, agent_replclient **out);
/* done is never called; the memory goes once the handles closed and the
 * thread pool finished with it. NULL: no-op. */
void agent_replclient_cancel(agent_replclient *q);

#endif
