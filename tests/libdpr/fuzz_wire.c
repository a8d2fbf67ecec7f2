/*
 * fuzz_wire.c - libFuzzer target for the batch header decoders.
 *
 * Feeds the input to both decoders. Checks: only documented return codes;
 * a decoded header never extends past the input; on -EAGAIN the announced
 * size is larger than what was given; a shorter prefix of a decoded header
 * is -EAGAIN; and a decoded header re-encodes to exactly the same bytes (and,
 * for requests, round-trips through a depset with max-merged duplicates).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dpr/depset.h"
#include "dpr/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                           \
    do {                                                                     \
        if (!(c))                                                            \
            __builtin_trap();                                                \
    } while (0)

static bool documented(ssize_t r)
{
    return r == -EAGAIN || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -E2BIG;
}

/* The decoded dependencies as a set (duplicates max-merged). */
static void deps_to_set(const dpr_request_hdr *h, dpr_depset *set)
{
    for (uint32_t i = 0; i < h->dep_count; i++) {
        uint64_t w, v;
        dpr_wire_request_dep(h, i, &w, &v);
        REQUIRE(v != 0);
        REQUIRE(dpr_depset_put_max(set, w, v) == 0);
    }
}

static void check_request_set_round_trip(const dpr_request_hdr *h)
{
    dpr_depset set = DPR_DEPSET_INIT, back = DPR_DEPSET_INIT;
    deps_to_set(h, &set);
    size_t size = dpr_wire_request_size(dpr_depset_count(&set));
    uint8_t *buf = malloc(size);
    REQUIRE(buf != NULL);
    REQUIRE(dpr_wire_encode_request(h, &set, buf, size) == (ssize_t)size);
    dpr_request_hdr d;
    REQUIRE(dpr_wire_decode_request(buf, size, &d, NULL) == (ssize_t)size);
    REQUIRE(d.session.hi == h->session.hi && d.session.lo == h->session.lo);
    REQUIRE(d.domain == h->domain && d.domain != 0);
    REQUIRE(d.world_line == h->world_line && d.version_lb == h->version_lb);
    REQUIRE(d.batch_id == h->batch_id && d.op_count == h->op_count);
    REQUIRE(d.dep_count == dpr_depset_count(&set));
    deps_to_set(&d, &back);
    REQUIRE(dpr_depset_count(&back) == dpr_depset_count(&set));
    size_t it = 0;
    dpr_dep e;
    while (dpr_depset_next(&set, &it, &e))
        REQUIRE(dpr_depset_get(&back, e.worker) == e.version);
    free(buf);
    dpr_depset_free(&set);
    dpr_depset_free(&back);
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    dpr_request_hdr h;
    size_t need = 0;
    ssize_t n = dpr_wire_decode_request(data, size, &h, &need);
    if (n <= 0) {
        REQUIRE(documented(n));
        if (n == -EAGAIN)
            REQUIRE(need > size);
        return;
    }
    REQUIRE((size_t)n <= size);
    REQUIRE((size_t)n == dpr_wire_request_size(h.dep_count));
    REQUIRE(h.domain != 0 && data[0] == DPR_WIRE_REQUEST_FORMAT);
    REQUIRE(dpr_wire_decode_request(data, (size_t)n - 1, &h, NULL) == -EAGAIN);
    REQUIRE(dpr_wire_decode_request(data, size % (size_t)n, &h, NULL) == -EAGAIN);
    REQUIRE(dpr_wire_decode_request(data, size, &h, NULL) == n);
    uint8_t *buf = malloc((size_t)n);
    REQUIRE(buf != NULL);
    REQUIRE(dpr_wire_encode_request(&h, NULL, buf, (size_t)n) == n);
    REQUIRE(memcmp(buf, data, (size_t)n) == 0);
    REQUIRE(dpr_wire_encode_request(&h, NULL, buf, (size_t)n - 1) == -ENOBUFS);
    free(buf);
    check_request_set_round_trip(&h);
}

static void fuzz_response(const uint8_t *data, size_t size)
{
    dpr_response_hdr h;
    size_t need = 0;
    ssize_t n = dpr_wire_decode_response(data, size, &h, &need);
    if (n <= 0) {
        REQUIRE(documented(n));
        if (n == -EAGAIN)
            REQUIRE(need > size);
        return;
    }
    REQUIRE((size_t)n <= size);
    REQUIRE((size_t)n == dpr_wire_response_size(h.version_count));
    REQUIRE(dpr_wire_decode_response(data, (size_t)n - 1, &h, NULL) == -EAGAIN);
    REQUIRE(dpr_wire_decode_response(data, size, &h, NULL) == n);
    /* every operation has a version when executed, none when refused */
    uint64_t prev = 0;
    for (uint32_t i = 0; i < h.op_count && i < 4096; i++) {
        uint64_t v = dpr_wire_response_version(&h, i);
        REQUIRE(h.status == DPR_WIRE_EXECUTED ? v >= prev && v != 0 : v == 0);
        prev = v;
    }
    uint8_t *buf = malloc((size_t)n);
    REQUIRE(buf != NULL);
    REQUIRE(dpr_wire_encode_response(&h, buf, (size_t)n) == n);
    REQUIRE(memcmp(buf, data, (size_t)n) == 0);
    /* the same through an array of versions */
    uint64_t *vs = malloc((h.version_count ? h.version_count : 1) * sizeof(uint64_t));
    REQUIRE(vs != NULL);
    for (uint32_t i = 0; i < h.version_count; i++)
        vs[i] = dpr_get_u64(h.versions + (size_t)i * DPR_WIRE_VERSION_SIZE);
    dpr_response_hdr e = h;
    e.versions = NULL;
    e.versions_in = vs;
    memset(buf, 0, (size_t)n);
    REQUIRE(dpr_wire_encode_response(&e, buf, (size_t)n) == n);
    REQUIRE(memcmp(buf, data, (size_t)n) == 0);
    free(vs);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size heap copy so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    fuzz_request(copy, size);
    fuzz_response(copy, size);
    /* the same bytes with the header bytes forced valid, to get deeper
     * (requests and responses have formats of their own) */
    if (size >= 2) {
        copy[0] = DPR_WIRE_REQUEST_FORMAT;
        copy[1] = DPR_WIRE_KIND_REQUEST;
        fuzz_request(copy, size);
        copy[0] = DPR_WIRE_RESPONSE_FORMAT;
        copy[1] = DPR_WIRE_KIND_RESPONSE;
        fuzz_response(copy, size);
    }
    free(copy);
    return 0;
}
