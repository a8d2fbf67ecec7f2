/*
 * rp_reply.h - where one RESP2 reply of redis-server ends (pure).
 *
 * dpr-redis forwards Redis' replies to its clients byte for byte; it only
 * needs to know where each one ends to hand it to the client whose command
 * it answers. rp_reply_len scans one reply (status, error, integer, bulk
 * string, array, nested arrays; nil bulk and nil array) without copying.
 */
#ifndef RP_REPLY_H
#define RP_REPLY_H

#include <stddef.h>
#include <sys/types.h>

/* Arrays may announce at most this many elements (Redis' own replies stay far below). */
#define RP_REPLY_MAX_ELEMENTS (1L << 31)

/* The bytes of the reply that starts at buf (> 0), 0 when more bytes are
 * needed, -EPROTO when buf does not start with a well-formed RESP2 reply. */
ssize_t rp_reply_len(const char *buf, size_t len);

#endif
