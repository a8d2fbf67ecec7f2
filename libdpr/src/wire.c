/*
 * wire.c - DPR batch header encoding and decoding (see wire.h and
 * docs/protocol.md, "Batch headers").
 *
 * Decoders check, in this order: format byte, kind byte (both as soon as
 * they are present, so a stream reader can drop garbage early), then, once
 * the fixed part is complete, reserved fields, count limits, count rules
 * (with the batch id and, for requests, the domain), the total length, and
 * finally the entries of the variable part.
 */
#include "dpr/wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Request layout (byte offsets). */
enum {
    RQ_FORMAT = 0,
    RQ_KIND = 1,
    RQ_FLAGS = 2,
    RQ_OP_COUNT = 4,
    RQ_SESSION_HI = 8,
    RQ_SESSION_LO = 16,
    RQ_WORLD_LINE = 24,
    RQ_VERSION_LB = 32,
    RQ_BATCH_ID = 40,
    RQ_DEP_COUNT = 48,
    RQ_RESERVED = 52,
    RQ_DOMAIN = 56,
};

/* Response layout (byte offsets). */
enum {
    RS_FORMAT = 0,
    RS_KIND = 1,
    RS_STATUS = 2,
    RS_RESERVED8 = 3,
    RS_OP_COUNT = 4,
    RS_WORLD_LINE = 8,
    RS_BATCH_ID = 16,
    RS_VERSION_COUNT = 24,
    RS_RESERVED32 = 28,
};

size_t dpr_wire_request_size(size_t dep_count)
{
    if (dep_count > (SIZE_MAX - DPR_WIRE_REQUEST_FIXED) / DPR_WIRE_DEP_SIZE)
        return SIZE_MAX;
    return DPR_WIRE_REQUEST_FIXED + dep_count * DPR_WIRE_DEP_SIZE;
}

size_t dpr_wire_response_size(size_t version_count)
{
    if (version_count > (SIZE_MAX - DPR_WIRE_RESPONSE_FIXED) / DPR_WIRE_VERSION_SIZE)
        return SIZE_MAX;
    return DPR_WIRE_RESPONSE_FIXED + version_count * DPR_WIRE_VERSION_SIZE;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void set_need(size_t *need, size_t n)
{
    if (need)
        *need = n;
}

/* Format and kind bytes of a possibly partial header. */
static int check_prefix(const uint8_t *buf, size_t len, uint8_t format, uint8_t kind)
{
    if (len >= 1 && buf[0] != format)
        return -EPROTONOSUPPORT;
    if (len >= 2 && buf[1] != kind)
        return -EBADMSG;
    return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* Rules shared by the encoder and the decoder; limits first. */
static int check_request_counts(uint32_t op_count, uint64_t dep_count)
{
    if (op_count > DPR_WIRE_MAX_OPS || dep_count > DPR_WIRE_MAX_DEPS)
        return -E2BIG;
    if (op_count == 0)
        return -EBADMSG;
    return 0;
}

static bool dep_ok(uint64_t version)
{
    return version != 0;
}

ssize_t dpr_wire_decode_request(const uint8_t *buf, size_t len, dpr_request_hdr *out,
                                size_t *need)
{
    ssize_t r = check_prefix(buf, len, DPR_WIRE_REQUEST_FORMAT, DPR_WIRE_KIND_REQUEST);
    if (r < 0)
        goto out;
    if (len < DPR_WIRE_REQUEST_FIXED) {
        set_need(need, DPR_WIRE_REQUEST_FIXED);
        r = -EAGAIN;
        goto out;
    }
    if (get_u16(buf + RQ_FLAGS) != 0 || dpr_get_u32(buf + RQ_RESERVED) != 0) {
        r = -EBADMSG;
        goto out;
    }
    uint32_t op_count = dpr_get_u32(buf + RQ_OP_COUNT);
    uint32_t dep_count = dpr_get_u32(buf + RQ_DEP_COUNT);
    r = check_request_counts(op_count, dep_count);
    if (r < 0)
        goto out;
    if (dpr_get_u64(buf + RQ_BATCH_ID) == 0 || dpr_get_u64(buf + RQ_DOMAIN) == 0) {
        r = -EBADMSG;
        goto out;
    }
    size_t total = dpr_wire_request_size(dep_count); /* no overflow: dep_count <= 2^20 */
    if (len < total) {
        set_need(need, total);
        r = -EAGAIN;
        goto out;
    }
    const uint8_t *deps = buf + DPR_WIRE_REQUEST_FIXED;
    for (uint32_t i = 0; i < dep_count; i++) {
        if (!dep_ok(dpr_get_u64(deps + (size_t)i * DPR_WIRE_DEP_SIZE + 8))) {
            r = -EBADMSG;
            goto out;
        }
    }
    out->session.hi = dpr_get_u64(buf + RQ_SESSION_HI);
    out->session.lo = dpr_get_u64(buf + RQ_SESSION_LO);
    out->domain = dpr_get_u64(buf + RQ_DOMAIN);
    out->world_line = dpr_get_u64(buf + RQ_WORLD_LINE);
    out->version_lb = dpr_get_u64(buf + RQ_VERSION_LB);
    out->batch_id = dpr_get_u64(buf + RQ_BATCH_ID);
    out->op_count = op_count;
    out->dep_count = dep_count;
    out->deps = dep_count ? deps : NULL;
    r = (ssize_t)total;
out:
    return r;
}

void dpr_wire_request_dep(const dpr_request_hdr *h, uint32_t i, uint64_t *worker,
                          uint64_t *version)
{
    const uint8_t *p = h->deps + (size_t)i * DPR_WIRE_DEP_SIZE;
    *worker = dpr_get_u64(p);
    *version = dpr_get_u64(p + 8);
}

static void put_request_fixed(const dpr_request_hdr *h, uint32_t dep_count, uint8_t *buf)
{
    buf[RQ_FORMAT] = DPR_WIRE_REQUEST_FORMAT;
    buf[RQ_KIND] = DPR_WIRE_KIND_REQUEST;
    put_u16(buf + RQ_FLAGS, 0);
    dpr_put_u32(buf + RQ_OP_COUNT, h->op_count);
    dpr_put_u64(buf + RQ_SESSION_HI, h->session.hi);
    dpr_put_u64(buf + RQ_SESSION_LO, h->session.lo);
    dpr_put_u64(buf + RQ_WORLD_LINE, h->world_line);
    dpr_put_u64(buf + RQ_VERSION_LB, h->version_lb);
    dpr_put_u64(buf + RQ_BATCH_ID, h->batch_id);
    dpr_put_u32(buf + RQ_DEP_COUNT, dep_count);
    dpr_put_u32(buf + RQ_RESERVED, 0);
    dpr_put_u64(buf + RQ_DOMAIN, h->domain);
}

/* Dependencies from a depset (no duplicates, no version 0 by construction). */
static void put_deps_from_set(const dpr_depset *deps, uint8_t *p)
{
    size_t it = 0;
    dpr_dep d;
    while (dpr_depset_next(deps, &it, &d)) {
        dpr_put_u64(p, d.worker);
        dpr_put_u64(p + 8, d.version);
        p += DPR_WIRE_DEP_SIZE;
    }
}

ssize_t dpr_wire_encode_request(const dpr_request_hdr *h, const dpr_depset *deps,
                                uint8_t *buf, size_t cap)
{
    ssize_t r;
    uint64_t n = deps ? dpr_depset_count(deps) : h->dep_count;
    if (n > DPR_WIRE_MAX_DEPS || h->op_count > DPR_WIRE_MAX_OPS) {
        r = -E2BIG;
        goto out;
    }
    if (h->op_count == 0 || h->batch_id == 0 || h->domain == 0 || (!deps && n && !h->deps)) {
        r = -EINVAL;
        goto out;
    }
    if (!deps) {
        for (uint32_t i = 0; i < n; i++) {
            if (!dep_ok(dpr_get_u64(h->deps + (size_t)i * DPR_WIRE_DEP_SIZE + 8))) {
                r = -EINVAL;
                goto out;
            }
        }
    }
    size_t total = dpr_wire_request_size(n);
    if (cap < total) {
        r = -ENOBUFS;
        goto out;
    }
    put_request_fixed(h, (uint32_t)n, buf);
    if (deps)
        put_deps_from_set(deps, buf + DPR_WIRE_REQUEST_FIXED);
    else if (n)
        memcpy(buf + DPR_WIRE_REQUEST_FIXED, h->deps, n * DPR_WIRE_DEP_SIZE);
    r = (ssize_t)total;
out:
    return r;
}

/* ---- responses ----------------------------------------------------------- */

/* Count rules of a response; limits first. */
static int check_response_counts(unsigned status, uint32_t op_count, uint32_t version_count)
{
    if (op_count > DPR_WIRE_MAX_OPS || version_count > DPR_WIRE_MAX_OPS)
        return -E2BIG;
    if (op_count == 0)
        return -EBADMSG;
    if (status == DPR_WIRE_REFUSED)
        return version_count == 0 ? 0 : -EBADMSG;
    if (status != DPR_WIRE_EXECUTED)
        return -EBADMSG;
    if (version_count != 1 && version_count != op_count)
        return -EBADMSG;
    return 0;
}

/* Versions must be non-zero and non-decreasing (a worker's version only
 * grows while it runs one batch). get(i) reads the i-th version. */
static bool versions_ok_bytes(const uint8_t *p, uint32_t n)
{
    uint64_t prev = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = dpr_get_u64(p + (size_t)i * DPR_WIRE_VERSION_SIZE);
        if (v < prev)
            return false;
        prev = v;
    }
    return true;
}

static bool versions_ok_array(const uint64_t *v, uint32_t n)
{
    uint64_t prev = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (v[i] < prev)
            return false;
        prev = v[i];
    }
    return true;
}

ssize_t dpr_wire_decode_response(const uint8_t *buf, size_t len, dpr_response_hdr *out,
                                 size_t *need)
{
    ssize_t r = check_prefix(buf, len, DPR_WIRE_RESPONSE_FORMAT, DPR_WIRE_KIND_RESPONSE);
    if (r < 0)
        goto out;
    if (len < DPR_WIRE_RESPONSE_FIXED) {
        set_need(need, DPR_WIRE_RESPONSE_FIXED);
        r = -EAGAIN;
        goto out;
    }
    if (buf[RS_RESERVED8] != 0 || dpr_get_u32(buf + RS_RESERVED32) != 0) {
        r = -EBADMSG;
        goto out;
    }
    unsigned status = buf[RS_STATUS];
    uint32_t op_count = dpr_get_u32(buf + RS_OP_COUNT);
    uint32_t version_count = dpr_get_u32(buf + RS_VERSION_COUNT);
    r = check_response_counts(status, op_count, version_count);
    if (r < 0)
        goto out;
    if (dpr_get_u64(buf + RS_BATCH_ID) == 0) {
        r = -EBADMSG;
        goto out;
    }
    size_t total = dpr_wire_response_size(version_count); /* <= 2^24 entries */
    if (len < total) {
        set_need(need, total);
        r = -EAGAIN;
        goto out;
    }
    const uint8_t *versions = buf + DPR_WIRE_RESPONSE_FIXED;
    if (!versions_ok_bytes(versions, version_count)) {
        r = -EBADMSG;
        goto out;
    }
    out->status = status == DPR_WIRE_REFUSED ? DPR_WIRE_REFUSED : DPR_WIRE_EXECUTED;
    out->world_line = dpr_get_u64(buf + RS_WORLD_LINE);
    out->batch_id = dpr_get_u64(buf + RS_BATCH_ID);
    out->op_count = op_count;
    out->version_count = version_count;
    out->versions = version_count ? versions : NULL;
    out->versions_in = NULL;
    r = (ssize_t)total;
out:
    return r;
}

static bool response_versions_ok(const dpr_response_hdr *h)
{
    if (h->version_count == 0)
        return true;
    if (h->versions_in)
        return versions_ok_array(h->versions_in, h->version_count);
    if (h->versions)
        return versions_ok_bytes(h->versions, h->version_count);
    return false;
}

ssize_t dpr_wire_encode_response(const dpr_response_hdr *h, uint8_t *buf, size_t cap)
{
    ssize_t r = check_response_counts((unsigned)h->status, h->op_count, h->version_count);
    if (r == -EBADMSG)
        r = -EINVAL;
    if (r < 0)
        goto out;
    if (h->batch_id == 0 || !response_versions_ok(h)) {
        r = -EINVAL;
        goto out;
    }
    size_t total = dpr_wire_response_size(h->version_count);
    if (cap < total) {
        r = -ENOBUFS;
        goto out;
    }
    buf[RS_FORMAT] = DPR_WIRE_RESPONSE_FORMAT;
    buf[RS_KIND] = DPR_WIRE_KIND_RESPONSE;
    buf[RS_STATUS] = (uint8_t)h->status;
    buf[RS_RESERVED8] = 0;
    dpr_put_u32(buf + RS_OP_COUNT, h->op_count);
    dpr_put_u64(buf + RS_WORLD_LINE, h->world_line);
    dpr_put_u64(buf + RS_BATCH_ID, h->batch_id);
    dpr_put_u32(buf + RS_VERSION_COUNT, h->version_count);
    dpr_put_u32(buf + RS_RESERVED32, 0);
    uint8_t *p = buf + DPR_WIRE_RESPONSE_FIXED;
    for (uint32_t i = 0; i < h->version_count; i++)
        dpr_put_u64(p + (size_t)i * DPR_WIRE_VERSION_SIZE,
                    h->versions_in ? h->versions_in[i]
                                   : dpr_get_u64(h->versions + (size_t)i * 8));
    r = (ssize_t)total;
out:
    return r;
}

uint64_t dpr_wire_response_version(const dpr_response_hdr *h, uint32_t i)
{
    if (h->status != DPR_WIRE_EXECUTED || h->version_count == 0 || i >= h->op_count)
        return 0;
    uint32_t k = h->version_count == 1 ? 0 : i;
    if (h->versions_in)
        return h->versions_in[k];
    if (h->versions)
        return dpr_get_u64(h->versions + (size_t)k * DPR_WIRE_VERSION_SIZE);
    return 0;
}
