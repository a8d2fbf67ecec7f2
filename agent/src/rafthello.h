/*
 * rafthello.h - c-raft's connection handshake, as its TCP transport writes
 * it (pure; rafttls.c sends it inside TLS): three little-endian 64-bit
 * words, the protocol (1), the sender's member ID and the length of the
 * address field, then the address, NUL-terminated and padded with NULs to
 * a multiple of 8 bytes.
 */
#ifndef AGENT_RAFTHELLO_H
#define AGENT_RAFTHELLO_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "dpr/err.h"

#define AGENT_RAFT_HELLO_PROTOCOL 1
#define AGENT_RAFT_HELLO_ADDRESS_MAX 256 /* the address field, padding included */

/* Appends the handshake of id and address (shorter than
 * AGENT_RAFT_HELLO_ADDRESS_MAX). 0, -EINVAL (too long) or -ENOMEM. */
int agent_raft_hello_encode(uint64_t id, const char *address, dpr_buf *out);

/* Reads a handshake from the first n bytes of p: the number of bytes it
 * took (the rest is Raft's), 0 while it is not whole, or -EINVAL with the
 * reason (another protocol, an address field that is empty, too long, not
 * a multiple of 8 bytes or not terminated). address gets the address (cap >=
 * AGENT_RAFT_HELLO_ADDRESS_MAX). */
long agent_raft_hello_parse(const void *p, size_t n, uint64_t *id, char *address, size_t cap,
                            dpr_err *err);

#endif
