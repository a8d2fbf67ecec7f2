/*
 * replyreader.h - private to libdpr: hiredis' reader with a bound on the
 * array elements of the reply in progress. hiredis 0.14 allocates an
 * array's element pointers when it reads the header, so "*2000000000\r\n"
 * from a peer (a shard, a finder) would ask for 16 GB before a byte of the
 * elements arrived; with the bound the reader fails instead (a protocol
 * error of the connection).
 *
 *     redisReader *r = dpr_replyreader_new(DPR_REPLYREADER_MAX_ELEMENTS);
 *     redisReaderFeed(r, bytes, n);
 *     if (redisReaderGetReply(r, &reply) == REDIS_OK && reply)
 *         dpr_replyreader_reply_done(r); (the next reply has the whole bound)
 *     dpr_replyreader_free(r);
 */
#ifndef DPR_REPLYREADER_H
#define DPR_REPLYREADER_H

#include <stddef.h>

#include <hiredis/hiredis.h>

/* Elements (of all the arrays of one reply together): above what a
 * request of dpr-kv's largest size (64 MiB, at least 8 bytes an operation)
 * can be answered with; 64 MiB of pointers at most. */
#define DPR_REPLYREADER_MAX_ELEMENTS ((size_t)1 << 23)

/* A reader (NULL: out of memory). */
redisReader *dpr_replyreader_new(size_t max_elements);
/* A reply was taken out: the next one starts from a zero count. */
void dpr_replyreader_reply_done(redisReader *r);
/* NULL: no-op. */
void dpr_replyreader_free(redisReader *r);

#endif
