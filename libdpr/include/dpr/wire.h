/*
 * wire.h - the DPR batch header wire format (byte layout: docs/protocol.md).
 *
 * Every DPR batch sent to a worker starts with a request header; every
 * answer starts with a response header. All integers are little-endian;
 * byte 0 is the header's format version (DPR_WIRE_REQUEST_FORMAT,
 * DPR_WIRE_RESPONSE_FORMAT; any other value is refused: an older or newer
 * peer is never half understood). Decoders never read
 * outside the buffer they are given and never allocate: the dependency
 * list and the version list of a decoded header point into that buffer.
 *
 * Return values of the decoders:
 *   > 0           bytes the header occupies (consumed)
 *   -EAGAIN       buffer holds only a prefix of a valid header; *need (if not
 *                 NULL) is set to the total size needed when it is known
 *   -EPROTONOSUPPORT  unknown format byte (e.g. a request of format 0x01,
 *                 from before domains)
 *   -EBADMSG      malformed (wrong kind, reserved bits set, bad counts,
 *                 batch id 0, domain 0, a dependency with version 0, an executed
 *                 response with a version 0 or decreasing versions)
 *   -E2BIG        a count is above the limits below (checked before the
 *                 length, so a huge count is rejected without waiting)
 * The format and kind bytes are checked as soon as they are present, so
 * even a short prefix of garbage is rejected. *need is set on -EAGAIN: to the
 * fixed size while the fixed part is incomplete, then to the total size.
 * A request may list a worker twice (tolerated; the worker max-merges);
 * encoders built from a depset never do.
 * Encoders return bytes written, or -ENOBUFS if cap is too small, -EINVAL
 * for a header that breaks the rules, -E2BIG above the limits.
 *
 * Format history: requests 0x01 (56-byte fixed part, no domain), 0x02 (64
 * bytes: the session's domain id appended, issue 9). Responses are 0x01.
 */
#ifndef DPR_WIRE_H
#define DPR_WIRE_H

#include "dpr/export.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dpr/depset.h"

#define DPR_WIRE_REQUEST_FORMAT 0x02  /* byte 0 of a request (with the domain) */
#define DPR_WIRE_RESPONSE_FORMAT 0x01 /* byte 0 of a response */
#define DPR_WIRE_KIND_REQUEST 0x51  /* 'Q' */
#define DPR_WIRE_KIND_RESPONSE 0x52 /* 'R' */

#define DPR_WIRE_REQUEST_FIXED 64   /* bytes before the dependency list */
#define DPR_WIRE_DEP_SIZE 16        /* worker u64 + version u64 */
#define DPR_WIRE_RESPONSE_FIXED 32  /* bytes before the version list */
#define DPR_WIRE_VERSION_SIZE 8

#define DPR_WIRE_MAX_DEPS (1u << 20) /* 1,048,576 workers in one header */
#define DPR_WIRE_MAX_OPS (1u << 24)

typedef struct dpr_session_id {
    uint64_t hi, lo;
} dpr_session_id;

typedef struct dpr_request_hdr {
    dpr_session_id session;
    uint64_t domain;      /* the session's domain: dpr_domain_id (domain.h); never 0 */
    uint64_t world_line;
    uint64_t version_lb;  /* execute in a version >= this */
    uint64_t batch_id;
    uint32_t op_count;
    uint32_t dep_count;   /* set by the decoder; the encoder takes it from the depset */
    const uint8_t *deps;  /* decoder: dep_count * 16 bytes inside the buffer;
                           * NULL when dep_count is 0 */
} dpr_request_hdr;

typedef enum dpr_wire_status {
    DPR_WIRE_EXECUTED = 0, /* operations ran; versions[] tells where */
    DPR_WIRE_REFUSED = 1,  /* batch from an older world-line; world_line is the newer one */
} dpr_wire_status;

typedef struct dpr_response_hdr {
    dpr_wire_status status;
    uint64_t world_line;
    uint64_t batch_id;
    uint32_t op_count;
    /* 0 when refused; 1 when every operation ran in the same version;
     * otherwise op_count (one version per operation). */
    uint32_t version_count;
    const uint8_t *versions;   /* decoder: points into the buffer */
    const uint64_t *versions_in; /* encoder: version_count values */
} dpr_response_hdr;

/* Encoded sizes (SIZE_MAX if the count is absurd). */
DPR_EXPORT size_t dpr_wire_request_size(size_t dep_count);
DPR_EXPORT size_t dpr_wire_response_size(size_t version_count);

/* Encodes h with the dependencies of `deps`; with deps == NULL it copies
 * h->dep_count raw entries from h->deps instead (re-encoding a decoded
 * header byte for byte). -EINVAL for op_count 0, batch_id 0, domain 0 or a
 * raw dependency with version 0. */
DPR_EXPORT ssize_t dpr_wire_encode_request(const dpr_request_hdr *h, const dpr_depset *deps,
                                uint8_t *buf, size_t cap);
DPR_EXPORT ssize_t dpr_wire_decode_request(const uint8_t *buf, size_t len, dpr_request_hdr *out,
                                size_t *need);
/* i-th dependency of a decoded request (i < dep_count). */
DPR_EXPORT void dpr_wire_request_dep(const dpr_request_hdr *h, uint32_t i, uint64_t *worker,
                          uint64_t *version);

/* Takes the versions from versions_in, or (if NULL) from the raw `versions`
 * bytes of a decoded header. -EINVAL when the header breaks the rules the
 * decoder checks. */
DPR_EXPORT ssize_t dpr_wire_encode_response(const dpr_response_hdr *h, uint8_t *buf, size_t cap);
DPR_EXPORT ssize_t dpr_wire_decode_response(const uint8_t *buf, size_t len, dpr_response_hdr *out,
                                 size_t *need);
/* Version operation i (i < op_count) of an executed response ran in (decoded,
 * or built with versions_in); 0 for a refusal or i out of range. */
DPR_EXPORT uint64_t dpr_wire_response_version(const dpr_response_hdr *h, uint32_t i);

/* Little-endian helpers, shared by the encoders and other wire code. */
static inline void dpr_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t dpr_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline void dpr_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t dpr_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

#endif
