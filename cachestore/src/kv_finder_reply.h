/*
 * kv_finder_reply.h - what the finder's answers to dpr-kv say (pure).
 *
 * dpr-kv reads the finder's replies with hiredis' reader; these functions
 * interpret the reply objects, without I/O, so that the unit suite
 * (tests/cachestore/test_kv_finder.c) and the fuzz target
 * (fuzz_kv_finder_reply.c) call exactly what the link (kv_finder.c) uses:
 *
 *     redisReader *rd;
 *     kv_finder_reader_new(&rd);            (the link's limits)
 *     redisReaderFeed(rd, bytes, n);
 *     redisReaderGetReply(rd, &rep);
 *     r = kv_finder_sync_parse(rep, addr, worker, &ids, &cap, &sync, &err);
 *
 * Numbers: an answer's world-lines, versions and worker ids are RESP
 * integers, or bulk/status strings holding decimal digits, in
 * 0..2^63 - 1 (docs/protocol.md, "Finder commands": more than the finder
 * ever sends, so nothing it says brings a version near overflow). Any
 * other number, a negative one or a wrong shape makes the answer
 * malformed (-EPROTO) and nothing is learned from it. An error reply is
 * -EREMOTEIO (as in libdpr's client). Messages name the finder by the
 * address given (`finder`) and never show a token: the parsers are not
 * given one.
 */
#ifndef KV_FINDER_REPLY_H
#define KV_FINDER_REPLY_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpr/err.h"

/* Arrays in the finder's answers hold at most this many elements (a
 * DPR.SYNC cut of 2^20 workers); a longer one fails the reader before
 * anything is allocated for it (the link drops the connection). */
#define KV_FINDER_MAX_ELEMENTS ((size_t)2 << 20)

/* Applies the link's limits to a reader made by redisReaderCreate() (or a
 * redisContext's reader): arrays of at most KV_FINDER_MAX_ELEMENTS. */
void kv_finder_reader_limit(redisReader *rd);
/* A new reader with the link's limits (the caller frees it with
 * redisReaderFree); -ENOMEM. */
int kv_finder_reader_new(redisReader **out);

/*
 * The answer to DPR.WORKER.ADD <domain> <worker> [<token>] (has_token: one was
 * sent): `*2 :<world-line> :<version-to-restore>`, world-line >= 1. Returns
 * 0 and sets *world_line and *restore; else leaves them alone and returns
 *   -EACCES     the finder refused the token (the worker is registered by
 *               its owner with another one)
 *   -EREMOTEIO  another error reply (err has the finder's text)
 *   -EPROTO     a malformed answer
 */
int kv_finder_add_parse(const redisReply *rep, const char *finder, uint64_t worker, bool has_token,
                        uint64_t *world_line, uint64_t *restore, dpr_err *err);

/* A DPR.SYNC answer. */
typedef struct kv_sync {
    uint64_t world_line;
    uint64_t max_version;
    uint64_t cut;            /* this worker's cut entry (0 if not listed) */
    const uint64_t *workers; /* every registered worker, ascending, no duplicates;
                              * valid during the callback only */
    size_t nworkers;
    uint64_t at_ms; /* dpr_mono_ms() when the answer arrived (set by the link) */
} kv_sync;

/*
 * The answer to DPR.SYNC: `*3 :<world-line> :<max-version> *2n` with the
 * cut as a flat worker, version list. Fills out (all but at_ms) with
 * `worker`'s cut entry (0 when not listed; the last entry if listed twice)
 * and the listed workers, sorted and without duplicates (the finder sends
 * them so; an answer that is not is still accepted), kept in *ids: a buffer
 * of *cap entries that the function grows with realloc as needed and the
 * caller frees (out->workers points into it). Returns 0; else leaves out
 * alone and returns
 *   -EREMOTEIO  an error reply (err has the finder's text)
 *   -EPROTO     a malformed answer
 *   -ENOMEM     (*ids and *cap stay valid)
 */
int kv_finder_sync_parse(const redisReply *rep, const char *finder, uint64_t worker, uint64_t **ids,
                         size_t *cap, kv_sync *out, dpr_err *err);

/* What a DPR.REPORT answer means for the report. */
typedef enum kv_report_outcome {
    KV_REPORT_ACKED,   /* a status reply (+OK): recorded */
    KV_REPORT_KEPT,    /* refused because the finder does not know this
                        * worker or its domain (kv_finder_error_lost_worker):
                        * a finder whose
                        * state is restored needs it, so it is sent again */
    KV_REPORT_DROPPED, /* refused for another reason, or not a status or
                        * error reply: sending it again gets the same answer */
    KV_REPORT_FENCED,  /* "-FENCED ...": the worker belongs to another
                        * incarnation now (it was moved); this one must stop */
    KV_REPORT_NEEDS_AUTH, /* "... DPR.REPORT needs DPR.AUTH ...": the worker is
                        * registered with a token and this connection holds
                        * no grant (kv_finder_error_needs_auth) */
} kv_report_outcome;

/* Classifies a DPR.REPORT answer; *error is the finder's error text for an
 * error reply (pointing into rep), else NULL. */
kv_report_outcome kv_finder_report_classify(const redisReply *rep, const char **error);

/* What the answer to DPR.AUTH <domain> <worker> <token> says (sent first on
 * every connection of a shard that has a token). */
typedef enum kv_auth_outcome {
    KV_AUTH_OK,          /* a status reply (+OK): the connection holds the grant */
    KV_AUTH_FENCED,      /* "-FENCED ...", or an error saying the token is not the
                          * worker's: another incarnation of this worker holds it */
    KV_AUTH_LOST,        /* the finder does not know the worker or its domain
                          * (kv_finder_error_lost_worker) */
    KV_AUTH_UNSUPPORTED, /* "-ERR unknown command ...": a finder from before
                          * DPR.AUTH, whose reports need no grant */
    KV_AUTH_FAILED,      /* another error, or not a status or error reply */
} kv_auth_outcome;

/* Classifies a DPR.AUTH answer; *error as for kv_finder_report_classify. */
kv_auth_outcome kv_finder_auth_classify(const redisReply *rep, const char **error);

/* Does this error say the finder fenced this incarnation ("FENCED ...")? */
bool kv_finder_error_fenced(const char *error);
/* Does this error refuse a report for want of a DPR.AUTH grant on the
 * connection ("ERR worker <id> is registered by its owner: DPR.REPORT needs
 * DPR.AUTH ...")? */
bool kv_finder_error_needs_auth(const char *error);

/* Does this error (to DPR.REPORT or DPR.SYNC) say the finder does not know
 * this worker: not registered, a finder on an older world-line, or one that
 * does not know the worker's domain at all (kv_finder_error_unknown_domain)? */
bool kv_finder_error_lost_worker(const char *error);

/* Does this error say the finder does not know the domain the command
 * named ("ERR unknown domain '<name>'")? After start-up that means it lost
 * the domain (its state was lost or replaced): a case of
 * kv_finder_error_lost_worker. */
bool kv_finder_error_unknown_domain(const char *error);

#endif
