/* test_wire.c - batch header encoding/decoding: round trips, exact bytes,
 * truncation, corruption, limits, the domain field and the format-1
 * refusal, and the fuzz seeds (corpus/fuzz_wire/) decoding whole. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dpr/domain.h"
#include "dpr/wire.h"

/* docs/protocol.md's example: domain "default" */
#define DEFAULT_ID UINT64_C(0xebada5168620c5fe)

static dpr_request_hdr sample_request(void)
{
    return (dpr_request_hdr){
        .session = {.hi = 0x0102030405060708ULL, .lo = 0x1112131415161718ULL},
        .domain = DEFAULT_ID, .world_line = 3, .version_lb = 42, .batch_id = 9,
        .op_count = 5};
}

/* Encodes sample_request with deps {(7, 4)} into buf; returns the size. */
static size_t encode_sample_request(uint8_t *buf, size_t cap)
{
    dpr_request_hdr h = sample_request();
    dpr_depset deps = DPR_DEPSET_INIT;
    ssize_t n = -1;
    if (dpr_depset_set(&deps, 7, 4) == 0)
        n = dpr_wire_encode_request(&h, &deps, buf, cap);
    dpr_depset_free(&deps);
    return n < 0 ? 0 : (size_t)n;
}

static size_t encode_sample_response(uint8_t *buf, size_t cap)
{
    static const uint64_t versions[3] = {5, 5, 6};
    dpr_response_hdr h = {.status = DPR_WIRE_EXECUTED, .world_line = 3, .batch_id = 9,
                          .op_count = 3, .version_count = 3, .versions_in = versions};
    ssize_t n = dpr_wire_encode_response(&h, buf, cap);
    return n < 0 ? 0 : (size_t)n;
}

TEST(request_exact_bytes)
{
    static const uint8_t want[80] = {
        0x02, 0x51, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,         /* fmt kind flags ops */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,         /* session hi */
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,         /* session lo */
        0x03, 0, 0, 0, 0, 0, 0, 0,                              /* world-line */
        0x2a, 0, 0, 0, 0, 0, 0, 0,                              /* version lb */
        0x09, 0, 0, 0, 0, 0, 0, 0,                              /* batch id */
        0x01, 0, 0, 0, 0, 0, 0, 0,                              /* dep count, reserved */
        0xfe, 0xc5, 0x20, 0x86, 0x16, 0xa5, 0xad, 0xeb,         /* domain "default" */
        0x07, 0, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0,   /* dep (7, 4) */
    };
    uint8_t buf[128];
    CHECK_EQ_U64(dpr_domain_id("default", 7), DEFAULT_ID);
    CHECK_EQ_U64(encode_sample_request(buf, sizeof(buf)), 80);
    CHECK(memcmp(buf, want, sizeof(want)) == 0);
    CHECK_EQ_U64(dpr_wire_request_size(1), 80);
}

/* The domain travels as it is: any id but 0, which no name has. */
TEST(request_domain)
{
    uint8_t buf[128];
    dpr_request_hdr h = sample_request(), d;
    const uint64_t ids[] = {1, 2, UINT64_MAX, DEFAULT_ID, 0x8000000000000000ULL};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        h.domain = ids[i];
        CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), 64);
        CHECK_EQ_U64(dpr_get_u64(buf + 56), ids[i]);
        CHECK_EQ_INT(dpr_wire_decode_request(buf, 64, &d, NULL), 64);
        CHECK_EQ_U64(d.domain, ids[i]);
    }
    h.domain = 0;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), -EINVAL);
    /* a domain 0 on the wire is malformed, like a batch id 0 */
    h.domain = 5;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), 64);
    dpr_put_u64(buf + 56, 0);
    CHECK_EQ_INT(dpr_wire_decode_request(buf, 64, &d, NULL), -EBADMSG);
}

/* A format-1 request (before domains: 56 bytes, no domain) is refused at its
 * first byte, whatever follows; so is any other format. Responses keep
 * format 1. */
TEST(request_format_1_refused)
{
    /* the format-1 example of the documentation before issue 9 */
    static const uint8_t v1[72] = {
        0x01, 0x51, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05,
        0x04, 0x03, 0x02, 0x01, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
        0x03, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0,
        0x09, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,
        0x07, 0, 0, 0, 0, 0, 0, 0, 0x04, 0, 0, 0, 0, 0, 0, 0,
    };
    dpr_request_hdr d;
    size_t need = 777;
    for (size_t len = 1; len <= sizeof(v1); len++) {
        CHECK_EQ_INT(dpr_wire_decode_request(v1, len, &d, &need), -EPROTONOSUPPORT);
        CHECK_EQ_U64(need, 777); /* untouched: no size is announced */
    }
    CHECK_EQ_INT(dpr_wire_decode_request(v1, 0, &d, &need), -EAGAIN);
    uint8_t buf[128];
    size_t size = encode_sample_request(buf, sizeof(buf));
    CHECK_EQ_U64(buf[0], DPR_WIRE_REQUEST_FORMAT);
    for (unsigned f = 0; f < 256; f++) {
        buf[0] = (uint8_t)f;
        int want = f == DPR_WIRE_REQUEST_FORMAT ? (int)size : -EPROTONOSUPPORT;
        CHECK_EQ_INT(dpr_wire_decode_request(buf, size, &d, NULL), want);
    }
    CHECK_EQ_U64(DPR_WIRE_REQUEST_FORMAT, 0x02);
    CHECK_EQ_U64(DPR_WIRE_RESPONSE_FORMAT, 0x01);
}

TEST(response_exact_bytes)
{
    static const uint8_t want[56] = {
        0x01, 0x52, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, /* fmt kind status rsv ops */
        0x03, 0, 0, 0, 0, 0, 0, 0,                      /* world-line */
        0x09, 0, 0, 0, 0, 0, 0, 0,                      /* batch id */
        0x03, 0, 0, 0, 0, 0, 0, 0,                      /* version count, reserved */
        0x05, 0, 0, 0, 0, 0, 0, 0, 0x05, 0, 0, 0, 0, 0, 0, 0,
        0x06, 0, 0, 0, 0, 0, 0, 0,
    };
    uint8_t buf[128];
    CHECK_EQ_U64(encode_sample_response(buf, sizeof(buf)), 56);
    CHECK(memcmp(buf, want, sizeof(want)) == 0);
    CHECK_EQ_U64(dpr_wire_response_size(3), 56);
}

TEST(request_round_trip)
{
    for (size_t ndeps = 0; ndeps < 300; ndeps += 1 + ndeps / 2) {
        dpr_depset deps = DPR_DEPSET_INIT;
        for (uint64_t i = 0; i < ndeps; i++)
            CHECK_EQ_INT(dpr_depset_set(&deps, i * 0x100000001ULL + (i % 3 ? 0 : UINT64_MAX / 2),
                                        1 + i * 7),
                         0);
        dpr_request_hdr h = sample_request(), d;
        h.op_count = DPR_WIRE_MAX_OPS;
        h.world_line = UINT64_MAX;
        size_t size = dpr_wire_request_size(ndeps);
        uint8_t *buf = malloc(size + 8);
        CHECK(buf != NULL);
        if (!buf)
            break;
        CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, size + 8), size);
        size_t need = 0;
        CHECK_EQ_INT(dpr_wire_decode_request(buf, size + 8, &d, &need), size);
        CHECK_EQ_U64(d.session.hi, h.session.hi);
        CHECK_EQ_U64(d.session.lo, h.session.lo);
        CHECK_EQ_U64(d.domain, h.domain);
        CHECK_EQ_U64(d.world_line, h.world_line);
        CHECK_EQ_U64(d.version_lb, h.version_lb);
        CHECK_EQ_U64(d.batch_id, h.batch_id);
        CHECK_EQ_U64(d.op_count, h.op_count);
        CHECK_EQ_U64(d.dep_count, ndeps);
        CHECK(ndeps ? d.deps == buf + DPR_WIRE_REQUEST_FIXED : d.deps == NULL);
        dpr_depset back = DPR_DEPSET_INIT;
        for (uint32_t i = 0; i < d.dep_count; i++) {
            uint64_t w, v;
            dpr_wire_request_dep(&d, i, &w, &v);
            CHECK_EQ_U64(dpr_depset_get(&deps, w), v);
            CHECK_EQ_INT(dpr_depset_set(&back, w, v), 0);
        }
        CHECK_EQ_U64(dpr_depset_count(&back), ndeps);
        /* raw re-encode (deps == NULL) reproduces the bytes */
        uint8_t *again = malloc(size);
        CHECK(again != NULL);
        if (again) {
            CHECK_EQ_INT(dpr_wire_encode_request(&d, NULL, again, size), size);
            CHECK(memcmp(again, buf, size) == 0);
        }
        free(again);
        free(buf);
        dpr_depset_free(&back);
        dpr_depset_free(&deps);
    }
}

TEST(response_round_trip)
{
    uint64_t versions[64];
    for (int i = 0; i < 64; i++)
        versions[i] = 100 + (uint64_t)i / 3;
    for (uint32_t ops = 1; ops <= 64; ops *= 2) {
        for (int single = 0; single < 2; single++) {
            uint32_t vc = single ? 1 : ops;
            dpr_response_hdr h = {.status = DPR_WIRE_EXECUTED, .world_line = 7,
                                  .batch_id = UINT64_MAX, .op_count = ops,
                                  .version_count = vc, .versions_in = versions},
                             d;
            uint8_t buf[32 + 64 * 8];
            size_t size = dpr_wire_response_size(vc);
            CHECK_EQ_INT(dpr_wire_encode_response(&h, buf, sizeof(buf)), size);
            CHECK_EQ_INT(dpr_wire_decode_response(buf, sizeof(buf), &d, NULL), size);
            CHECK_EQ_INT(d.status, DPR_WIRE_EXECUTED);
            CHECK_EQ_U64(d.world_line, 7);
            CHECK_EQ_U64(d.batch_id, UINT64_MAX);
            CHECK_EQ_U64(d.op_count, ops);
            CHECK_EQ_U64(d.version_count, vc);
            CHECK(d.versions_in == NULL);
            for (uint32_t i = 0; i < ops; i++) {
                CHECK_EQ_U64(dpr_wire_response_version(&d, i), single ? 100 : versions[i]);
                CHECK_EQ_U64(dpr_wire_response_version(&h, i), single ? 100 : versions[i]);
            }
            CHECK_EQ_U64(dpr_wire_response_version(&d, ops), 0); /* out of range */
            uint8_t again[sizeof(buf)];
            CHECK_EQ_INT(dpr_wire_encode_response(&d, again, sizeof(again)), size);
            CHECK(memcmp(again, buf, size) == 0);
        }
    }
    /* refused */
    dpr_response_hdr h = {.status = DPR_WIRE_REFUSED, .world_line = 8, .batch_id = 4,
                          .op_count = 2},
                     d;
    uint8_t buf[64];
    CHECK_EQ_INT(dpr_wire_encode_response(&h, buf, sizeof(buf)), 32);
    CHECK_EQ_U64(buf[2], 1);
    CHECK_EQ_INT(dpr_wire_decode_response(buf, 32, &d, NULL), 32);
    CHECK_EQ_INT(d.status, DPR_WIRE_REFUSED);
    CHECK_EQ_U64(d.world_line, 8);
    CHECK_EQ_U64(d.version_count, 0);
    CHECK(d.versions == NULL);
    CHECK_EQ_U64(dpr_wire_response_version(&d, 0), 0);
}

TEST(request_every_truncation)
{
    uint8_t buf[128];
    size_t size = encode_sample_request(buf, sizeof(buf));
    CHECK_EQ_U64(size, 80);
    for (size_t len = 0; len < size; len++) {
        dpr_request_hdr d;
        size_t need = 12345;
        CHECK_EQ_INT(dpr_wire_decode_request(buf, len, &d, &need), -EAGAIN);
        CHECK_EQ_U64(need, len < DPR_WIRE_REQUEST_FIXED ? DPR_WIRE_REQUEST_FIXED : size);
        CHECK_EQ_INT(dpr_wire_decode_request(buf, len, &d, NULL), -EAGAIN);
    }
    /* extra bytes after the header are not consumed */
    dpr_request_hdr d;
    CHECK_EQ_INT(dpr_wire_decode_request(buf, sizeof(buf), &d, NULL), size);
}

TEST(response_every_truncation)
{
    uint8_t buf[128];
    size_t size = encode_sample_response(buf, sizeof(buf));
    CHECK_EQ_U64(size, 56);
    for (size_t len = 0; len < size; len++) {
        dpr_response_hdr d;
        size_t need = 12345;
        CHECK_EQ_INT(dpr_wire_decode_response(buf, len, &d, &need), -EAGAIN);
        CHECK_EQ_U64(need, len < DPR_WIRE_RESPONSE_FIXED ? DPR_WIRE_RESPONSE_FIXED : size);
        CHECK_EQ_INT(dpr_wire_decode_response(buf, len, &d, NULL), -EAGAIN);
    }
    /* extra bytes after the header are not consumed */
    dpr_response_hdr d;
    CHECK_EQ_INT(dpr_wire_decode_response(buf, sizeof(buf), &d, NULL), size);
}

/* Decodes a copy of a valid request with byte `off` of a little-endian
 * field of `width` bytes set to `val`. */
static int corrupt_request(size_t off, unsigned width, uint64_t val, size_t len_cut)
{
    uint8_t buf[128];
    size_t size = encode_sample_request(buf, sizeof(buf));
    for (unsigned i = 0; i < width; i++)
        buf[off + i] = (uint8_t)(val >> (8 * i));
    dpr_request_hdr d;
    return (int)dpr_wire_decode_request(buf, size - len_cut, &d, NULL);
}

static int corrupt_response(size_t off, unsigned width, uint64_t val)
{
    uint8_t buf[128];
    size_t size = encode_sample_response(buf, sizeof(buf));
    for (unsigned i = 0; i < width; i++)
        buf[off + i] = (uint8_t)(val >> (8 * i));
    dpr_response_hdr d;
    return (int)dpr_wire_decode_response(buf, size, &d, NULL);
}

TEST(request_corruption)
{
    CHECK_EQ_INT(corrupt_request(0, 1, 0x01, 0), -EPROTONOSUPPORT);  /* format 1 */
    CHECK_EQ_INT(corrupt_request(0, 1, 0x03, 0), -EPROTONOSUPPORT);
    CHECK_EQ_INT(corrupt_request(0, 1, 0x00, 0), -EPROTONOSUPPORT);
    CHECK_EQ_INT(corrupt_request(0, 1, 0x01, 79), -EPROTONOSUPPORT); /* 1 byte only */
    CHECK_EQ_INT(corrupt_request(1, 1, 0x52, 0), -EBADMSG);          /* a response */
    CHECK_EQ_INT(corrupt_request(1, 1, 0x52, 78), -EBADMSG);         /* 2 bytes only */
    CHECK_EQ_INT(corrupt_request(2, 2, 0x0100, 0), -EBADMSG);        /* flags */
    CHECK_EQ_INT(corrupt_request(2, 1, 0x01, 0), -EBADMSG);
    CHECK_EQ_INT(corrupt_request(52, 4, 0x80000000, 0), -EBADMSG);   /* reserved */
    CHECK_EQ_INT(corrupt_request(4, 4, 0, 0), -EBADMSG);             /* op count 0 */
    CHECK_EQ_INT(corrupt_request(40, 8, 0, 0), -EBADMSG);            /* batch id 0 */
    CHECK_EQ_INT(corrupt_request(56, 8, 0, 0), -EBADMSG);            /* domain 0 */
    CHECK_EQ_INT(corrupt_request(72, 8, 0, 0), -EBADMSG);            /* dep version 0 */
    CHECK_EQ_INT(corrupt_request(4, 4, DPR_WIRE_MAX_OPS + 1, 0), -E2BIG);
    CHECK_EQ_INT(corrupt_request(4, 4, UINT32_MAX, 0), -E2BIG);
    CHECK_EQ_INT(corrupt_request(4, 4, DPR_WIRE_MAX_OPS, 0), 80);    /* at the limit */
    /* a huge dependency count is refused at once, without waiting for data */
    CHECK_EQ_INT(corrupt_request(48, 4, DPR_WIRE_MAX_DEPS + 1, 16), -E2BIG);
    CHECK_EQ_INT(corrupt_request(48, 4, UINT32_MAX, 0), -E2BIG);
    /* ... but only once the fixed part (with the domain) is complete */
    CHECK_EQ_INT(corrupt_request(48, 4, DPR_WIRE_MAX_DEPS + 1, 17), -EAGAIN);
    /* a larger (valid) count than the data: a prefix */
    CHECK_EQ_INT(corrupt_request(48, 4, 2, 0), -EAGAIN);
    CHECK_EQ_INT(corrupt_request(48, 4, 0, 0), 64); /* shorter header, trailing bytes */
    /* fields with no rule accept any value */
    CHECK_EQ_INT(corrupt_request(24, 8, 0, 0), 80);            /* world-line 0 */
    CHECK_EQ_INT(corrupt_request(32, 8, UINT64_MAX, 0), 80);   /* version lb */
    CHECK_EQ_INT(corrupt_request(56, 8, UINT64_MAX, 0), 80);   /* any domain but 0 */
    CHECK_EQ_INT(corrupt_request(64, 8, 0, 0), 80);            /* dep worker 0 */
}

TEST(response_corruption)
{
    CHECK_EQ_INT(corrupt_response(0, 1, 0xff), -EPROTONOSUPPORT);
    CHECK_EQ_INT(corrupt_response(1, 1, 0x51), -EBADMSG);
    CHECK_EQ_INT(corrupt_response(2, 1, 2), -EBADMSG);                /* status */
    CHECK_EQ_INT(corrupt_response(2, 1, 1), -EBADMSG);                /* refused + versions */
    CHECK_EQ_INT(corrupt_response(3, 1, 1), -EBADMSG);                /* reserved u8 */
    CHECK_EQ_INT(corrupt_response(28, 4, 1), -EBADMSG);               /* reserved u32 */
    CHECK_EQ_INT(corrupt_response(4, 4, 0), -EBADMSG);                /* op count 0 */
    CHECK_EQ_INT(corrupt_response(4, 4, 2), -EBADMSG);                /* 3 versions, 2 ops */
    CHECK_EQ_INT(corrupt_response(24, 4, 0), -EBADMSG);               /* executed, none */
    CHECK_EQ_INT(corrupt_response(24, 4, 2), -EBADMSG);               /* neither 1 nor ops */
    CHECK_EQ_INT(corrupt_response(24, 4, 1), 40);                     /* one for all */
    CHECK_EQ_INT(corrupt_response(16, 8, 0), -EBADMSG);               /* batch id 0 */
    CHECK_EQ_INT(corrupt_response(32, 8, 0), -EBADMSG);               /* version 0 */
    CHECK_EQ_INT(corrupt_response(48, 8, 4), -EBADMSG);               /* decreasing */
    CHECK_EQ_INT(corrupt_response(4, 4, DPR_WIRE_MAX_OPS + 1), -E2BIG);
    CHECK_EQ_INT(corrupt_response(24, 4, UINT32_MAX), -E2BIG);
    /* a valid refusal */
    uint8_t buf[64];
    encode_sample_response(buf, sizeof(buf));
    buf[2] = 1;
    dpr_put_u32(buf + 24, 0);
    dpr_response_hdr d;
    CHECK_EQ_INT(dpr_wire_decode_response(buf, 32, &d, NULL), 32);
}

TEST(encoder_errors)
{
    uint8_t buf[128];
    dpr_request_hdr h = sample_request();
    dpr_depset deps = DPR_DEPSET_INIT;
    CHECK_EQ_INT(dpr_depset_set(&deps, 1, 1), 0);
    CHECK_EQ_INT(dpr_depset_set(&deps, 2, 2), 0);
    for (size_t cap = 0; cap < 96; cap++)
        CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, cap), -ENOBUFS);
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, 96), 96);
    h.op_count = 0;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, sizeof(buf)), -EINVAL);
    h.op_count = DPR_WIRE_MAX_OPS + 1;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, sizeof(buf)), -E2BIG);
    h = sample_request();
    h.batch_id = 0;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, sizeof(buf)), -EINVAL);
    h = sample_request();
    h.domain = 0;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, sizeof(buf)), -EINVAL);
    h = sample_request();
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), 64); /* no deps */
    h.dep_count = 1; /* raw list missing */
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), -EINVAL);
    uint8_t raw[16] = {1}; /* worker 1, version 0 */
    h.deps = raw;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), -EINVAL);
    h.dep_count = DPR_WIRE_MAX_DEPS + 1;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), -E2BIG);
    dpr_depset_free(&deps);

    uint64_t v[3] = {1, 2, 3};
    dpr_response_hdr r = {.status = DPR_WIRE_EXECUTED, .world_line = 1, .batch_id = 1,
                          .op_count = 3, .version_count = 3, .versions_in = v};
    for (size_t cap = 0; cap < 56; cap++)
        CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, cap), -ENOBUFS);
    r.version_count = 2;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    r.version_count = 0;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    r.version_count = 3;
    r.versions_in = NULL; /* no versions at all */
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    r.versions_in = v;
    v[1] = 0;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    v[1] = 4; /* 1, 4, 3: decreasing */
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    v[1] = 2;
    r.batch_id = 0;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    r.batch_id = 1;
    r.status = DPR_WIRE_REFUSED;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    r.version_count = 0;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), 32);
    r.status = (dpr_wire_status)7;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
    r.status = DPR_WIRE_EXECUTED;
    r.op_count = DPR_WIRE_MAX_OPS + 1;
    r.version_count = 1;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -E2BIG);
    r.op_count = 0;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, buf, sizeof(buf)), -EINVAL);
}

TEST(size_overflow)
{
    CHECK_EQ_U64(dpr_wire_request_size(0), 64);
    CHECK_EQ_U64(dpr_wire_response_size(0), 32);
    CHECK_EQ_U64(dpr_wire_request_size(SIZE_MAX / 8), SIZE_MAX);
    CHECK_EQ_U64(dpr_wire_request_size((SIZE_MAX - 64) / 16), SIZE_MAX - 15);
    CHECK_EQ_U64(dpr_wire_request_size((SIZE_MAX - 64) / 16 + 1), SIZE_MAX);
    CHECK_EQ_U64(dpr_wire_response_size(SIZE_MAX / 4), SIZE_MAX);
    CHECK_EQ_U64(dpr_wire_request_size(DPR_WIRE_MAX_DEPS), 64 + 16 * (uint64_t)DPR_WIRE_MAX_DEPS);
}

TEST(duplicate_workers_tolerated)
{
    uint8_t buf[128];
    dpr_request_hdr h = sample_request(), d;
    uint8_t raw[32];
    dpr_put_u64(raw, 5);
    dpr_put_u64(raw + 8, 3);
    dpr_put_u64(raw + 16, 5);
    dpr_put_u64(raw + 24, 9);
    h.deps = raw;
    h.dep_count = 2;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, NULL, buf, sizeof(buf)), 96);
    CHECK_EQ_INT(dpr_wire_decode_request(buf, 96, &d, NULL), 96);
    CHECK_EQ_U64(d.dep_count, 2);
}

/* The largest header: 2^20 dependencies (16 MiB) decodes; one more does not
 * encode; a response for 2^24 operations with one version is fine. */
TEST(limits)
{
    size_t size = dpr_wire_request_size(DPR_WIRE_MAX_DEPS);
    uint8_t *buf = calloc(1, size);
    dpr_depset deps = DPR_DEPSET_INIT;
    CHECK(buf != NULL);
    if (!buf)
        return;
    for (uint64_t i = 0; i < DPR_WIRE_MAX_DEPS; i++)
        CHECK_EQ_INT(dpr_depset_set(&deps, i, i + 1), 0);
    dpr_request_hdr h = sample_request(), d;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, size), size);
    CHECK_EQ_INT(dpr_wire_decode_request(buf, size, &d, NULL), size);
    CHECK_EQ_U64(d.dep_count, DPR_WIRE_MAX_DEPS);
    uint64_t w, v;
    dpr_wire_request_dep(&d, DPR_WIRE_MAX_DEPS - 1, &w, &v);
    CHECK_EQ_U64(v, w + 1);
    CHECK_EQ_INT(dpr_depset_set(&deps, DPR_WIRE_MAX_DEPS, 1), 0);
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &deps, buf, size), -E2BIG);
    dpr_depset_free(&deps);
    free(buf);

    uint64_t one = 3;
    uint8_t rb[64];
    dpr_response_hdr r = {.status = DPR_WIRE_EXECUTED, .world_line = 1, .batch_id = 1,
                          .op_count = DPR_WIRE_MAX_OPS, .version_count = 1,
                          .versions_in = &one},
                     rd;
    CHECK_EQ_INT(dpr_wire_encode_response(&r, rb, sizeof(rb)), 40);
    CHECK_EQ_INT(dpr_wire_decode_response(rb, 40, &rd, NULL), 40);
    CHECK_EQ_U64(dpr_wire_response_version(&rd, DPR_WIRE_MAX_OPS - 1), 3);
}

/* Random bytes never make a decoder read past len (checked under ASan with
 * exact-size heap copies) and only return the documented codes. */
TEST(random_garbage)
{
    uint64_t x = 88172645463325252ULL;
    bool ok = true;
    for (int iter = 0; iter < 20000 && ok; iter++) {
        size_t len = (size_t)(iter % 97);
        uint8_t *p = malloc(len ? len : 1);
        if (!p)
            break;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[i] = (uint8_t)x;
        }
        if (len > 1 && iter % 4 == 1) {
            p[0] = DPR_WIRE_REQUEST_FORMAT;
            p[1] = DPR_WIRE_KIND_REQUEST;
        }
        if (len > 1 && iter % 4 == 3) {
            p[0] = DPR_WIRE_RESPONSE_FORMAT;
            p[1] = DPR_WIRE_KIND_RESPONSE;
        }
        dpr_request_hdr q;
        dpr_response_hdr s;
        ssize_t a = dpr_wire_decode_request(p, len, &q, NULL);
        ssize_t b = dpr_wire_decode_response(p, len, &s, NULL);
        ok = (a > 0 && (size_t)a <= len) || a == -EAGAIN || a == -EBADMSG ||
             a == -EPROTONOSUPPORT || a == -E2BIG;
        ok = ok && ((b > 0 && (size_t)b <= len) || b == -EAGAIN || b == -EBADMSG ||
                    b == -EPROTONOSUPPORT || b == -E2BIG);
        free(p);
    }
    CHECK(ok);
}

/* Reads a whole file (at most cap bytes); its size, or -1. */
static long read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    bool whole = feof(f) && !ferror(f);
    fclose(f);
    return whole ? (long)n : -1;
}

/* Every seed of fuzz_wire decodes whole (request-* as a request, response-*
 * as a response): the seeds reach the checks behind a successful decode,
 * not only the format byte. */
TEST(fuzz_seeds_decode)
{
    static const char dir[] = "tests/libdpr/corpus/fuzz_wire";
    DIR *d = opendir(dir);
    struct dirent *e;
    int requests = 0, responses = 0;
    CHECK(d != NULL);
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[512];
        uint8_t buf[4096];
        bool req = strncmp(e->d_name, "request-", 8) == 0;
        bool resp = strncmp(e->d_name, "response-", 9) == 0;
        if (!req && !resp)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        long n = read_file(path, buf, sizeof(buf));
        CHECK(n > 0);
        if (n <= 0)
            continue;
        if (req) {
            dpr_request_hdr h;
            ssize_t got = dpr_wire_decode_request(buf, (size_t)n, &h, NULL);
            if (got != n)
                printf("     %s: %zd of %ld bytes\n", e->d_name, got, n);
            CHECK_EQ_INT(got, n);
            requests++;
        } else {
            dpr_response_hdr h;
            CHECK_EQ_INT(dpr_wire_decode_response(buf, (size_t)n, &h, NULL), n);
            responses++;
        }
    }
    closedir(d);
    CHECK(requests >= 5 && responses >= 3);
}

int main(void)
{
    RUN(request_exact_bytes);
    RUN(request_domain);
    RUN(request_format_1_refused);
    RUN(response_exact_bytes);
    RUN(request_round_trip);
    RUN(response_round_trip);
    RUN(request_every_truncation);
    RUN(response_every_truncation);
    RUN(request_corruption);
    RUN(response_corruption);
    RUN(encoder_errors);
    RUN(size_overflow);
    RUN(duplicate_workers_tolerated);
    RUN(limits);
    RUN(random_garbage);
    RUN(fuzz_seeds_decode);
    return check_summary("wire");
}
