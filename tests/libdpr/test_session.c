/*
 * test_session.c - the client session side, alone and end to end.
 *
 * The end-to-end harness ("cluster") wires a dpr_session to dpr_worker
 * objects through the wire format: the session's header is encoded, queued,
 * decoded by the worker, executed, answered with an encoded response,
 * queued, decoded and resolved. A tiny brute-force finder computes the
 * largest dependency-closed durable cut from the workers' reports. A model
 * of every operation (what the session was told, and what the workers
 * really did) checks commit points and rollback results, and above all the
 * DPR guarantee: in strict mode the operations that survive are a prefix.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dpr/domain.h"
#include "dpr/session.h"
#include "dpr/wire.h"
#include "dpr/worker.h"

static const dpr_session_id SID = {0xabcdef0123456789ULL, 42};
/* the sessions' and the workers' domain */
#define DOM dpr_domain_id("orders.eu-1", 11)

/* ======================================================================
 * Session alone
 * ====================================================================== */

/* Resolves batch_id of op_count operations, all in `version`. */
static int answer(dpr_session *s, uint64_t batch_id, uint32_t op_count, uint64_t version)
{
    dpr_response_hdr r = {.status = DPR_WIRE_EXECUTED, .world_line = s->world_line,
                          .batch_id = batch_id, .op_count = op_count,
                          .version_count = 1, .versions_in = &version};
    return dpr_session_resolve(s, &r);
}

static int refuse(dpr_session *s, uint64_t batch_id, uint32_t op_count, uint64_t world_line)
{
    dpr_response_hdr r = {.status = DPR_WIRE_REFUSED, .world_line = world_line,
                          .batch_id = batch_id, .op_count = op_count};
    return dpr_session_resolve(s, &r);
}

/* Starts a batch; returns its batch id (0 on error). */
static uint64_t start(dpr_session *s, uint64_t worker, uint32_t op_count)
{
    dpr_request_hdr h;
    uint64_t first;
    return dpr_session_begin_batch(s, worker, op_count, &h, &first) == 0 ? h.batch_id : 0;
}

static void cut_set(dpr_depset *cut, uint64_t w0, uint64_t w1, uint64_t w2)
{
    dpr_depset_clear(cut);
    (void)dpr_depset_set(cut, 0, w0);
    (void)dpr_depset_set(cut, 1, w1);
    (void)dpr_depset_set(cut, 2, w2);
}

TEST(init_and_headers)
{
    dpr_session s;
    dpr_request_hdr h;
    uint64_t first = 0;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0x8), -EINVAL);
    dpr_session_free(&s);
    CHECK_EQ_INT(dpr_session_init(&s, SID, 0, 1, 0), -EINVAL); /* no name has id 0 */
    dpr_session_free(&s);
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 5, 0), 0);
    CHECK_EQ_U64(s.next_seq, 1);
    CHECK_EQ_U64(s.next_batch_id, 1);
    CHECK_EQ_U64(s.commit_point, 0);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 7, 0, &h, &first), -EINVAL);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 7, DPR_WIRE_MAX_OPS + 1, &h, &first), -EINVAL);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 7, 3, &h, &first), 0);
    CHECK_EQ_U64(first, 1);
    CHECK_EQ_U64(h.session.hi, SID.hi);
    CHECK_EQ_U64(h.session.lo, SID.lo);
    CHECK_EQ_U64(s.domain, DOM);
    CHECK_EQ_U64(h.domain, DOM); /* every batch carries the session's domain */
    CHECK_EQ_U64(h.world_line, 5);
    CHECK_EQ_U64(h.batch_id, 1);
    CHECK_EQ_U64(h.op_count, 3);
    CHECK_EQ_U64(h.dep_count, 0);
    CHECK(h.deps == NULL);
    CHECK_EQ_U64(h.version_lb, 0);
    CHECK_EQ_INT(answer(&s, 1, 3, 4), 0);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 8, 2, &h, &first), 0);
    CHECK_EQ_U64(first, 4);
    CHECK_EQ_U64(h.batch_id, 2);
    CHECK_EQ_U64(h.version_lb, 4); /* highest version in the dependencies */
    CHECK_EQ_U64(dpr_depset_get(&s.deps, 7), 4);
    /* the header encodes with the session's dependencies */
    uint8_t buf[128];
    dpr_request_hdr d;
    CHECK_EQ_INT(dpr_wire_encode_request(&h, &s.deps, buf, sizeof(buf)), 80);
    CHECK_EQ_INT(dpr_wire_decode_request(buf, 80, &d, NULL), 80);
    CHECK_EQ_U64(d.domain, DOM);
    uint64_t w, v;
    dpr_wire_request_dep(&d, 0, &w, &v);
    CHECK_EQ_U64(w, 7);
    CHECK_EQ_U64(v, 4);
    dpr_session_free(&s);
}

TEST(resolve_errors)
{
    dpr_session s;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 2, 0), 0);
    uint64_t b = start(&s, 1, 3);
    CHECK_EQ_INT(answer(&s, b + 1, 3, 1), -ENOENT);
    CHECK_EQ_INT(answer(&s, b, 2, 1), -EBADMSG); /* op count */
    CHECK_EQ_INT(answer(&s, b, 3, 0), -EBADMSG); /* version 0 */
    uint64_t vs[3] = {2, 1, 3};
    dpr_response_hdr r = {.status = DPR_WIRE_EXECUTED, .world_line = 2, .batch_id = b,
                          .op_count = 3, .version_count = 2, .versions_in = vs};
    CHECK_EQ_INT(dpr_session_resolve(&s, &r), -EBADMSG); /* version count */
    r.version_count = 3;
    CHECK_EQ_INT(dpr_session_resolve(&s, &r), -EBADMSG); /* decreasing */
    vs[1] = 2;
    r.world_line = 3;
    CHECK_EQ_INT(dpr_session_resolve(&s, &r), -EBADMSG); /* executed elsewhere */
    r.world_line = 2;
    r.status = (dpr_wire_status)9;
    CHECK_EQ_INT(dpr_session_resolve(&s, &r), -EBADMSG);
    CHECK_EQ_INT(refuse(&s, b, 3, 2), -EBADMSG); /* refusal must name a newer one */
    CHECK_EQ_U64(s.nbatches, 1);                 /* nothing changed so far */
    r.status = DPR_WIRE_EXECUTED;
    CHECK_EQ_INT(dpr_session_resolve(&s, &r), 0);
    CHECK_EQ_U64(s.nbatches, 0);
    CHECK_EQ_U64(dpr_depset_get(&s.deps, 1), 3);
    CHECK_EQ_U64(s.ops[0].version, 2);
    CHECK_EQ_U64(s.ops[2].version, 3);
    CHECK_EQ_INT(answer(&s, b, 3, 3), -ENOENT); /* answered twice */
    CHECK_EQ_INT(dpr_session_abandon_batch(&s, b), -ENOENT);
    dpr_session_free(&s);
}

TEST(strict_busy_rules)
{
    dpr_session s;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    uint64_t b1 = start(&s, 0, 1);
    uint64_t b2 = start(&s, 0, 2); /* pipelining to one worker is fine */
    CHECK(b1 && b2);
    dpr_request_hdr h;
    uint64_t first;
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 1, 1, &h, &first), -EBUSY);
    CHECK_EQ_INT(answer(&s, b1, 1, 1), 0);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 1, 1, &h, &first), -EBUSY);
    CHECK_EQ_INT(answer(&s, b2, 2, 1), 0);
    uint64_t b3 = start(&s, 1, 1);
    CHECK(b3 != 0);
    /* an abandoned batch blocks every new batch until the rollback */
    CHECK_EQ_INT(dpr_session_abandon_batch(&s, b3), 0);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 1, 1, &h, &first), -EBUSY);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 0, 1, &h, &first), -EBUSY);
    dpr_depset cut = DPR_DEPSET_INIT;
    cut_set(&cut, 1, 0, 0);
    dpr_rollback_result res;
    CHECK_EQ_INT(dpr_session_rollback(&s, 2, &cut, &res), 0);
    CHECK_EQ_U64(res.lost_from, 4);
    CHECK_EQ_U64(res.lost_count, 1);
    free(res.survived_above);
    CHECK(start(&s, 0, 1) != 0);
    dpr_depset_free(&cut);
    dpr_session_free(&s);

    /* relaxed: batches to different workers may be in flight together */
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, DPR_SESSION_RELAXED), 0);
    CHECK(start(&s, 0, 1) && start(&s, 1, 1) && start(&s, 2, 1));
    b1 = start(&s, 3, 1);
    CHECK_EQ_INT(dpr_session_abandon_batch(&s, b1), 0);
    CHECK(start(&s, 4, 1) != 0);
    dpr_session_free(&s);
}

/* A batch refused as a whole before it ran (-MOVED, -TRYAGAIN) is
 * cancelled: the session is as if it had never begun, and the operations go
 * again, re-routed, under the same sequence numbers. */
TEST(cancel_newest_batch)
{
    dpr_session s;
    dpr_request_hdr h;
    uint64_t first;
    dpr_depset cut = DPR_DEPSET_INIT;

    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    uint64_t b1 = start(&s, 0, 2);
    CHECK_EQ_INT(answer(&s, b1, 2, 3), 0);
    uint64_t b2 = start(&s, 0, 1);
    uint64_t b3 = start(&s, 0, 2);
    CHECK(b2 && b3);
    CHECK_EQ_INT(dpr_session_cancel_batch(&s, b2), -EBUSY); /* b3 came after it */
    CHECK_EQ_INT(dpr_session_cancel_batch(&s, 999), -ENOENT);
    CHECK_EQ_INT(dpr_session_cancel_batch(&s, b3), 0);
    CHECK_EQ_U64(s.next_seq, 4);
    CHECK_EQ_INT(dpr_session_cancel_batch(&s, b3), -ENOENT);
    CHECK_EQ_INT(dpr_session_cancel_batch(&s, b2), 0);  /* now the newest */
    CHECK_EQ_U64(s.next_seq, 3);
    CHECK_EQ_U64(s.nbatches, 0);
    CHECK_EQ_U64(s.ops_len, 2);
    /* not in doubt: another worker may be used at once (strict mode), and
     * the cancelled sequence numbers are issued again */
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 1, 2, &h, &first), 0);
    CHECK_EQ_U64(first, 3);
    CHECK_EQ_U64(h.version_lb, 3); /* the dependencies are unchanged */
    CHECK_EQ_INT(answer(&s, h.batch_id, 2, 4), 0);
    cut_set(&cut, 3, 4, 0);
    CHECK_EQ_U64(dpr_session_commit_point(&s, &cut), 4);
    CHECK(dpr_session_is_committed(&s, 4));
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

/* A refused batch with later batches after it cannot be taken back: its
 * operations are withdrawn, not part of the history (never committed,
 * never lost), and the commit point passes over them. */
TEST(withdraw_batch)
{
    dpr_session s;
    dpr_depset cut = DPR_DEPSET_INIT;
    dpr_rollback_result res;

    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    uint64_t b1 = start(&s, 0, 1);   /* seq 1 */
    uint64_t b2 = start(&s, 0, 2);   /* seq 2, 3: refused (MOVED) */
    uint64_t b3 = start(&s, 0, 1);   /* seq 4: ran */
    uint64_t b4 = start(&s, 0, 1);   /* seq 5: refused, the newest */
    CHECK_EQ_INT(answer(&s, b1, 1, 2), 0);
    CHECK_EQ_INT(dpr_session_withdraw_batch(&s, b2), 0);
    CHECK_EQ_INT(dpr_session_withdraw_batch(&s, b2), -ENOENT);
    CHECK_EQ_INT(answer(&s, b3, 1, 2), 0);
    CHECK_EQ_INT(dpr_session_withdraw_batch(&s, b4), 1); /* cancelled: seq 5 again */
    CHECK_EQ_U64(s.next_seq, 5);
    CHECK(dpr_session_is_withdrawn(&s, 2) && dpr_session_is_withdrawn(&s, 3));
    CHECK(!dpr_session_is_withdrawn(&s, 1) && !dpr_session_is_withdrawn(&s, 4));
    cut_set(&cut, 2, 0, 0);
    CHECK_EQ_U64(dpr_session_commit_point(&s, &cut), 4); /* over 2 and 3 */
    CHECK(dpr_session_is_committed(&s, 1) && dpr_session_is_committed(&s, 4));
    CHECK(!dpr_session_is_committed(&s, 2) && !dpr_session_is_committed(&s, 3));
    /* a rollback reports neither lost: seq 5 and 7 are lost, 6 withdrawn */
    uint64_t b5 = start(&s, 0, 1);   /* seq 5 */
    uint64_t b6 = start(&s, 0, 1);   /* seq 6 */
    uint64_t b7 = start(&s, 0, 1);   /* seq 7 */
    CHECK_EQ_INT(answer(&s, b5, 1, 3), 0);
    CHECK_EQ_INT(dpr_session_withdraw_batch(&s, b6), 0);
    CHECK_EQ_INT(answer(&s, b7, 1, 3), 0);
    cut_set(&cut, 2, 0, 0);
    CHECK_EQ_INT(dpr_session_rollback(&s, 2, &cut, &res), 0);
    CHECK_EQ_U64(res.lost_from, 5);
    CHECK_EQ_U64(res.lost_count, 2);
    CHECK_EQ_U64(res.nsurvived_above, 0);
    free(res.survived_above);
    CHECK(!dpr_session_is_committed(&s, 6) && dpr_session_is_withdrawn(&s, 6));
    CHECK(dpr_session_is_withdrawn(&s, 3));
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

TEST(refusal_and_rollback_rules)
{
    dpr_session s;
    dpr_request_hdr h;
    uint64_t first;
    dpr_rollback_result res;
    dpr_depset cut = DPR_DEPSET_INIT;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 3, 0), 0);
    uint64_t b1 = start(&s, 0, 2);
    CHECK_EQ_INT(answer(&s, b1, 2, 1), 0);
    uint64_t b2 = start(&s, 0, 1);
    uint64_t b3 = start(&s, 0, 1);
    CHECK_EQ_INT(refuse(&s, b2, 1, 4), -ESTALE);
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 0, 1, &h, &first), -ESTALE);
    cut_set(&cut, 1, 0, 0);
    CHECK_EQ_INT(dpr_session_rollback(&s, 4, &cut, &res), -EBUSY); /* b3 unanswered */
    CHECK_EQ_INT(refuse(&s, b3, 1, 4), -ESTALE);
    CHECK_EQ_INT(dpr_session_rollback(&s, 3, &cut, &res), -EINVAL); /* not newer */
    CHECK_EQ_INT(dpr_session_rollback(&s, 4, &cut, &res), 0);
    CHECK_EQ_U64(res.lost_from, 3);
    CHECK_EQ_U64(res.lost_count, 2);
    CHECK_EQ_U64(res.nsurvived_above, 0);
    CHECK(res.survived_above == NULL);
    /* the world-line continues: numbering goes on, dependencies are gone */
    CHECK_EQ_U64(s.world_line, 4);
    CHECK_EQ_U64(s.commit_point, 4);
    CHECK_EQ_U64(dpr_depset_count(&s.deps), 0);
    CHECK(dpr_session_is_committed(&s, 1));
    CHECK(dpr_session_is_committed(&s, 2));
    CHECK(!dpr_session_is_committed(&s, 3));
    CHECK(!dpr_session_is_committed(&s, 4));
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 1, 1, &h, &first), 0);
    CHECK_EQ_U64(first, 5);
    CHECK_EQ_U64(h.world_line, 4);
    CHECK_EQ_U64(h.batch_id, 4);
    CHECK_EQ_INT(answer(&s, h.batch_id, 1, 7), 0);
    cut_set(&cut, 1, 7, 0);
    CHECK_EQ_U64(dpr_session_commit_point(&s, &cut), 5);
    CHECK(dpr_session_is_committed(&s, 5));
    CHECK(!dpr_session_is_committed(&s, 4));
    CHECK(!dpr_session_is_committed(&s, 6));
    CHECK(!dpr_session_is_committed(&s, 0));
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

TEST(strict_rollback_prefix)
{
    dpr_session s;
    dpr_rollback_result res;
    dpr_depset cut = DPR_DEPSET_INIT;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    /* ops 1-2 on W0 v1, 3 on W1 v2, 4-5 on W0 v2, 6 on W2 v2 */
    CHECK_EQ_INT(answer(&s, start(&s, 0, 2), 2, 1), 0);
    CHECK_EQ_INT(answer(&s, start(&s, 1, 1), 1, 2), 0);
    CHECK_EQ_INT(answer(&s, start(&s, 0, 2), 2, 2), 0);
    CHECK_EQ_INT(answer(&s, start(&s, 2, 1), 1, 2), 0);
    cut_set(&cut, 1, 0, 0);
    CHECK_EQ_U64(dpr_session_commit_point(&s, &cut), 2);
    CHECK_EQ_U64(dpr_depset_get(&s.deps, 0), 2); /* W0:2 is above the cut: kept */
    cut_set(&cut, 1, 2, 0);
    CHECK_EQ_INT(dpr_session_rollback(&s, 2, &cut, &res), 0);
    CHECK_EQ_U64(res.lost_from, 4);
    CHECK_EQ_U64(res.lost_count, 3);
    CHECK_EQ_U64(res.nsurvived_above, 0);
    CHECK_EQ_U64(s.commit_point, 6);
    CHECK(dpr_session_is_committed(&s, 3));
    CHECK(!dpr_session_is_committed(&s, 4));
    CHECK(!dpr_session_is_committed(&s, 6));
    free(res.survived_above);
    /* nothing lost */
    CHECK_EQ_INT(answer(&s, start(&s, 0, 1), 1, 5), 0);
    cut_set(&cut, 5, 2, 0);
    CHECK_EQ_INT(dpr_session_rollback(&s, 3, &cut, &res), 0);
    CHECK_EQ_U64(res.lost_from, 8);
    CHECK_EQ_U64(res.lost_count, 0);
    CHECK(dpr_session_is_committed(&s, 7));
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

TEST(relaxed_rollback_lists_survivors)
{
    dpr_session s;
    dpr_rollback_result res;
    dpr_depset cut = DPR_DEPSET_INIT;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, DPR_SESSION_RELAXED), 0);
    uint64_t a = start(&s, 0, 1), b = start(&s, 1, 2), c = start(&s, 2, 1), d = start(&s, 0, 1);
    uint64_t e = start(&s, 1, 1);
    CHECK_EQ_INT(answer(&s, a, 1, 1), 0); /* 1: W0 v1 */
    CHECK_EQ_INT(answer(&s, b, 2, 3), 0); /* 2,3: W1 v3 */
    CHECK_EQ_INT(answer(&s, c, 1, 1), 0); /* 4: W2 v1 */
    CHECK_EQ_INT(answer(&s, d, 1, 2), 0); /* 5: W0 v2 */
    CHECK_EQ_INT(dpr_session_abandon_batch(&s, e), 0); /* 6: in doubt */
    cut_set(&cut, 2, 0, 1);
    CHECK_EQ_U64(dpr_session_commit_point(&s, &cut), 1);
    CHECK(dpr_session_is_committed(&s, 1));
    CHECK(!dpr_session_is_committed(&s, 2));
    CHECK(dpr_session_is_committed(&s, 4));
    CHECK(dpr_session_is_committed(&s, 5));
    CHECK(!dpr_session_is_committed(&s, 6));
    CHECK_EQ_INT(dpr_session_rollback(&s, 2, &cut, &res), 0);
    CHECK_EQ_U64(res.lost_from, 2);
    CHECK_EQ_U64(res.lost_count, 3); /* 2, 3, 6 */
    CHECK_EQ_U64(res.nsurvived_above, 2);
    if (res.nsurvived_above == 2) {
        CHECK_EQ_U64(res.survived_above[0], 4);
        CHECK_EQ_U64(res.survived_above[1], 5);
    }
    free(res.survived_above);
    CHECK(dpr_session_is_committed(&s, 4));
    CHECK(!dpr_session_is_committed(&s, 2));
    CHECK(!dpr_session_is_committed(&s, 3));
    CHECK(!dpr_session_is_committed(&s, 6));
    CHECK_EQ_U64(s.commit_point, 6);
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

TEST(dependencies_pruned_by_cut)
{
    dpr_session s;
    dpr_depset cut = DPR_DEPSET_INIT;
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    CHECK_EQ_INT(answer(&s, start(&s, 0, 1), 1, 3), 0);
    CHECK_EQ_INT(answer(&s, start(&s, 1, 1), 1, 4), 0);
    CHECK_EQ_INT(answer(&s, start(&s, 2, 1), 1, 5), 0);
    CHECK_EQ_U64(dpr_depset_count(&s.deps), 3);
    cut_set(&cut, 3, 4, 4);
    CHECK_EQ_U64(dpr_session_commit_point(&s, &cut), 2);
    CHECK_EQ_U64(dpr_depset_count(&s.deps), 1);
    CHECK_EQ_U64(dpr_depset_get(&s.deps, 2), 5);
    dpr_request_hdr h;
    uint64_t first;
    CHECK_EQ_INT(dpr_session_begin_batch(&s, 2, 1, &h, &first), 0);
    CHECK_EQ_U64(h.version_lb, 5);
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

/* The ring wraps many times: pipelined batches, commits in between. */
TEST(ring_wraps)
{
    dpr_session s;
    dpr_depset cut = DPR_DEPSET_INIT;
    bool ok = dpr_session_init(&s, SID, DOM, 1, 0) == 0;
    uint64_t pending[8];
    size_t np = 0;
    uint64_t version = 1;
    for (int round = 0; round < 5000 && ok; round++) {
        while (np < 8) {
            pending[np] = start(&s, 9, (uint32_t)(1 + round % 5));
            ok = ok && pending[np] != 0;
            np++;
        }
        /* answer the oldest 5, commit them */
        for (size_t i = 0; i < 5; i++)
            ok = ok && answer(&s, pending[i], (uint32_t)s.batches[0].op_count, version) == 0;
        memmove(pending, pending + 5, 3 * sizeof(*pending));
        np = 3;
        dpr_depset_clear(&cut);
        ok = ok && dpr_depset_set(&cut, 9, version) == 0;
        uint64_t cp = dpr_session_commit_point(&s, &cut);
        ok = ok && s.nbatches == 3 && cp == s.batches[0].first_seq - 1;
        ok = ok && s.ops_len == s.next_seq - 1 - cp && s.ops_cap <= 64;
        ok = ok && dpr_session_is_committed(&s, cp) && !dpr_session_is_committed(&s, cp + 1);
        version++;
    }
    CHECK(ok);
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

/* 70,000 workers: one strict session touches each, the header carries all
 * of them, a cut covering them commits everything and empties the set. */
TEST(many_workers)
{
    enum { N = 70000 };
    dpr_session s;
    dpr_depset cut = DPR_DEPSET_INIT;
    bool ok = dpr_session_init(&s, SID, DOM, 1, 0) == 0;
    for (uint64_t w = 0; w < N && ok; w++)
        ok = answer(&s, start(&s, w * 0x10001ULL, 1), 1, 1 + w % 7) == 0;
    ok = ok && dpr_depset_count(&s.deps) == N;
    dpr_request_hdr h;
    uint64_t first;
    ok = ok && dpr_session_begin_batch(&s, 1, 1, &h, &first) == 0;
    size_t size = dpr_wire_request_size(dpr_depset_count(&s.deps));
    uint8_t *buf = malloc(size);
    ok = ok && buf && dpr_wire_encode_request(&h, &s.deps, buf, size) == (ssize_t)size;
    dpr_request_hdr d;
    ok = ok && dpr_wire_decode_request(buf, size, &d, NULL) == (ssize_t)size &&
         d.dep_count == N && d.version_lb == 7;
    free(buf);
    ok = ok && answer(&s, h.batch_id, 1, 9) == 0;
    for (uint64_t w = 0; w < N && ok; w++)
        ok = dpr_depset_set(&cut, w * 0x10001ULL, 7) == 0;
    ok = ok && dpr_depset_set(&cut, 1, 9) == 0;
    ok = ok && dpr_session_commit_point(&s, &cut) == N + 1 && dpr_depset_count(&s.deps) == 0;
    CHECK(ok);
    dpr_depset_free(&cut);
    dpr_session_free(&s);
}

/* ======================================================================
 * The in-memory cluster
 * ====================================================================== */

#define MAXW 4
#define MAX_WL 4096

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

typedef struct msg {
    uint8_t *buf;
    size_t len;
    uint64_t batch_id;
} msg;

typedef struct queue {
    msg *m;
    size_t head, n, cap;
} queue;

enum { B_INFLIGHT, B_DELIVERED, B_DROPPED };

/* What the model knows about one operation. */
typedef struct mop {
    int widx;
    uint64_t batch_id;
    uint64_t version;        /* as answered to the session (0: not answered) */
    uint64_t exec_wl;        /* ground truth: where the worker ran it (0: never) */
    uint64_t exec_version;
    bool lost;               /* reported lost by a rollback */
    bool told;               /* the session said it is committed */
} mop;

typedef struct binfo {
    uint8_t state;
    uint64_t first_seq;
} binfo;

typedef struct frep {
    uint64_t version;
    dpr_depset deps;
} frep;

typedef struct cluster {
    int n;
    uint64_t ids[MAXW];
    dpr_worker w[MAXW];
    queue inbox[MAXW], outbox[MAXW];
    /* the brute-force finder */
    uint64_t wl;
    frep *reps[MAXW];
    size_t nreps[MAXW], capreps[MAXW];
    uint64_t cut[MAXW];
    uint64_t *rb_cut;        /* [wl * MAXW + i]: cut restored when wl was left */
    /* the model */
    mop *ops;
    size_t ops_cap;
    binfo *batch;            /* by batch id */
    size_t bcap;
    bool stale;              /* the session saw a refusal */
    uint64_t wl_first_seq;   /* first operation of the session's world-line */
    int fail_line;
    /* statistics */
    uint64_t n_abandoned, n_rollbacks, n_catch_up, n_refused, n_lost, n_eagain, n_committed;
} cluster;

#define EXPECT(cl, cond)                                                     \
    do {                                                                     \
        if (!(cond) && !(cl)->fail_line) {                                   \
            (cl)->fail_line = __LINE__;                                      \
            fprintf(stderr, "  %s:%d: EXPECT(%s) failed\n", __FILE__,       \
                    __LINE__, #cond);                                        \
        }                                                                    \
    } while (0)

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return false;
    memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *p = q;
    *cap = n;
    return true;
}

static bool q_push(queue *q, uint8_t *buf, size_t len, uint64_t batch_id)
{
    if (q->head + q->n == q->cap) {
        if (q->head) {
            memmove(q->m, q->m + q->head, q->n * sizeof(*q->m));
            q->head = 0;
        } else {
            void *p = q->m;
            if (!grow(&p, &q->cap, q->cap + 1, sizeof(msg)))
                return false;
            q->m = p;
        }
    }
    q->m[q->head + q->n++] = (msg){buf, len, batch_id};
    return true;
}

static bool q_pop(queue *q, msg *out)
{
    if (!q->n)
        return false;
    *out = q->m[q->head++];
    q->n--;
    return true;
}

static int widx_of(const cluster *cl, uint64_t id)
{
    for (int i = 0; i < cl->n; i++)
        if (cl->ids[i] == id)
            return i;
    return -1;
}

static mop *op(cluster *cl, uint64_t seq)
{
    void *p = cl->ops;
    if (!grow(&p, &cl->ops_cap, seq + 1, sizeof(mop)))
        abort();
    cl->ops = p;
    return &cl->ops[seq];
}

static binfo *batch(cluster *cl, uint64_t batch_id)
{
    void *p = cl->batch;
    if (!grow(&p, &cl->bcap, batch_id + 1, sizeof(binfo)))
        abort();
    cl->batch = p;
    return &cl->batch[batch_id];
}

static uint8_t *bstate(cluster *cl, uint64_t batch_id)
{
    return &batch(cl, batch_id)->state;
}

static void cl_init(cluster *cl, int n, uint64_t seed)
{
    static const uint64_t ids[MAXW] = {1, 1ULL << 40, UINT64_MAX, 0};
    memset(cl, 0, sizeof(*cl));
    rnd_state = seed | 1;
    cl->n = n;
    cl->wl = 1;
    cl->wl_first_seq = 1;
    cl->rb_cut = calloc(MAX_WL * MAXW, sizeof(uint64_t));
    EXPECT(cl, cl->rb_cut != NULL);
    for (int i = 0; i < n; i++) {
        cl->ids[i] = ids[i];
        EXPECT(cl, dpr_worker_init(&cl->w[i], ids[i], DOM, 1, 0) == 0);
    }
}

static void q_free(queue *q)
{
    msg m;
    while (q_pop(q, &m))
        free(m.buf);
    free(q->m);
}

static void cl_free(cluster *cl)
{
    for (int i = 0; i < cl->n; i++) {
        dpr_worker_free(&cl->w[i]);
        q_free(&cl->inbox[i]);
        q_free(&cl->outbox[i]);
        for (size_t k = 0; k < cl->nreps[i]; k++)
            dpr_depset_free(&cl->reps[i][k].deps);
        free(cl->reps[i]);
    }
    free(cl->rb_cut);
    free(cl->ops);
    free(cl->batch);
}

/* ---- finder ---------------------------------------------------------------- */

static uint64_t cut_of_id(const cluster *cl, const uint64_t *cut, uint64_t id)
{
    int i = widx_of(cl, id);
    return i < 0 ? 0 : cut[i];
}

static void finder_report(cluster *cl, int i, const dpr_worker_report *rep)
{
    EXPECT(cl, rep->worker == cl->ids[i]);
    if (rep->world_line < cl->wl) { /* from a lagging worker: above the cut, dropped */
        EXPECT(cl, rep->version > cl->cut[i]);
        return;
    }
    EXPECT(cl, rep->world_line == cl->wl);
    EXPECT(cl, cl->nreps[i] == 0 || cl->reps[i][cl->nreps[i] - 1].version < rep->version);
    size_t it = 0;
    dpr_dep d;
    while (dpr_depset_next(rep->deps, &it, &d))
        EXPECT(cl, d.version <= rep->version && d.worker != rep->worker);
    void *p = cl->reps[i];
    if (!grow(&p, &cl->capreps[i], cl->nreps[i] + 1, sizeof(frep)))
        abort();
    cl->reps[i] = p;
    frep *f = &cl->reps[i][cl->nreps[i]++];
    f->version = rep->version;
    dpr_depset_init(&f->deps);
    EXPECT(cl, dpr_depset_copy(&f->deps, rep->deps) == 0);
}

/* Largest dependency-closed cut of reported versions: start from the top,
 * lower a worker below any version (or earlier version, the implicit edge)
 * with an unsatisfied dependency, until nothing changes. Versions at or
 * below the previous cut are closed already (it only grows), so only the
 * reports above it are looked at. */
static void finder_cut(cluster *cl)
{
    uint64_t cut[MAXW];
    size_t from[MAXW];
    for (int i = 0; i < cl->n; i++) {
        cut[i] = cl->nreps[i] ? cl->reps[i][cl->nreps[i] - 1].version : 0;
        if (cut[i] < cl->cut[i])
            cut[i] = cl->cut[i];
        from[i] = 0;
        while (from[i] < cl->nreps[i] && cl->reps[i][from[i]].version <= cl->cut[i])
            from[i]++;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < cl->n; i++) {
            for (size_t k = from[i]; k < cl->nreps[i] && cl->reps[i][k].version <= cut[i]; k++) {
                size_t it = 0;
                dpr_dep d;
                bool bad = false;
                while (!bad && dpr_depset_next(&cl->reps[i][k].deps, &it, &d))
                    bad = cut_of_id(cl, cut, d.worker) < d.version;
                if (bad) {
                    cut[i] = k ? cl->reps[i][k - 1].version : 0;
                    if (cut[i] < cl->cut[i])
                        cut[i] = cl->cut[i];
                    changed = true;
                    break;
                }
            }
        }
    }
    for (int i = 0; i < cl->n; i++) {
        EXPECT(cl, cut[i] >= cl->cut[i]); /* never goes backwards */
        cl->cut[i] = cut[i];
    }
}

static void cut_depset(const cluster *cl, const uint64_t *cut, dpr_depset *out)
{
    dpr_depset_clear(out);
    for (int i = 0; i < cl->n; i++)
        (void)dpr_depset_set(out, cl->ids[i], cut[i]);
}

/* ---- workers ---------------------------------------------------------------- */

static void seal(cluster *cl, int i, uint64_t next)
{
    uint64_t s;
    EXPECT(cl, dpr_worker_checkpoint_begin(&cl->w[i], next, &s) == 0);
}

static void complete_one(cluster *cl, int i)
{
    dpr_worker *w = &cl->w[i];
    for (size_t k = 0; k < w->nsealed; k++) {
        if (w->sealed[k].durable)
            continue;
        dpr_worker_report rep;
        EXPECT(cl, dpr_worker_checkpoint_complete(w, w->sealed[k].version, &rep) == 0);
        finder_report(cl, i, &rep);
        return;
    }
}

static void checkpoint(cluster *cl, int i)
{
    seal(cl, i, 0);
    complete_one(cl, i);
}

static void worker_catch_up(cluster *cl, int i)
{
    EXPECT(cl, dpr_worker_rollback(&cl->w[i], cl->wl, cl->cut[i]) == 0);
    cl->n_catch_up++;
}

static void respond(cluster *cl, int i, const dpr_response_hdr *r)
{
    size_t size = dpr_wire_response_size(r->version_count);
    uint8_t *buf = malloc(size);
    EXPECT(cl, buf && dpr_wire_encode_response(r, buf, size) == (ssize_t)size);
    if (!buf || !q_push(&cl->outbox[i], buf, size, r->batch_id))
        abort();
}

/* Runs the batch one operation at a time, sealing at random in between. */
static void worker_execute(cluster *cl, int i, const dpr_request_hdr *h, uint64_t first_seq)
{
    dpr_worker *w = &cl->w[i];
    uint64_t *versions = calloc(h->op_count, sizeof(uint64_t));
    EXPECT(cl, versions != NULL);
    if (!versions)
        return;
    for (uint32_t k = 0; k < h->op_count; k++) {
        if (k && rnd_below(4) == 0)
            seal(cl, i, 0);
        uint64_t v;
        int rc = dpr_worker_execute(w, h, &v);
        if (rc == -EAGAIN) {
            cl->n_eagain++;
            seal(cl, i, dpr_worker_batch_target(h));
            rc = dpr_worker_execute(w, h, &v);
        }
        EXPECT(cl, rc == 0 && v >= dpr_worker_batch_target(h));
        versions[k] = v;
        mop *o = op(cl, first_seq + k);
        o->exec_wl = w->world_line;
        o->exec_version = v;
    }
    bool same = versions[0] == versions[h->op_count - 1];
    dpr_response_hdr r = {.status = DPR_WIRE_EXECUTED, .world_line = w->world_line,
                          .batch_id = h->batch_id, .op_count = h->op_count,
                          .version_count = same && rnd_below(2) ? 1 : h->op_count,
                          .versions_in = versions};
    respond(cl, i, &r);
    free(versions);
}

static bool worker_process_one(cluster *cl, int i)
{
    msg m;
    if (!q_pop(&cl->inbox[i], &m))
        return false;
    dpr_request_hdr h;
    size_t need;
    EXPECT(cl, dpr_wire_decode_request(m.buf, m.len, &h, &need) == (ssize_t)m.len);
    EXPECT(cl, h.batch_id == m.batch_id);
    EXPECT(cl, h.domain == cl->w[i].domain); /* the session's domain, on every batch */
    dpr_admit a = dpr_worker_admit(&cl->w[i], h.world_line);
    if (a == DPR_ADMIT_CATCH_UP) {
        EXPECT(cl, h.world_line <= cl->wl);
        worker_catch_up(cl, i); /* learns the finder's world-line, rolls back */
        a = dpr_worker_admit(&cl->w[i], h.world_line);
        EXPECT(cl, a != DPR_ADMIT_CATCH_UP);
    }
    if (a == DPR_ADMIT_REFUSE) {
        dpr_response_hdr r = {.status = DPR_WIRE_REFUSED, .world_line = cl->w[i].world_line,
                              .batch_id = h.batch_id, .op_count = h.op_count};
        respond(cl, i, &r);
    } else {
        uint64_t first = batch(cl, h.batch_id)->first_seq;
        EXPECT(cl, first != 0);
        worker_execute(cl, i, &h, first);
    }
    free(m.buf);
    return true;
}

/* ---- the session side --------------------------------------------------------- */

static int issue(cluster *cl, dpr_session *s, int i, uint32_t op_count)
{
    dpr_request_hdr h;
    uint64_t first;
    int rc = dpr_session_begin_batch(s, cl->ids[i], op_count, &h, &first);
    if (rc < 0)
        return rc;
    size_t size = dpr_wire_request_size(dpr_depset_count(&s->deps));
    uint8_t *buf = malloc(size);
    EXPECT(cl, buf && dpr_wire_encode_request(&h, &s->deps, buf, size) == (ssize_t)size);
    if (!buf || !q_push(&cl->inbox[i], buf, size, h.batch_id))
        abort();
    for (uint32_t k = 0; k < op_count; k++) {
        mop *o = op(cl, first + k);
        memset(o, 0, sizeof(*o));
        o->widx = i;
        o->batch_id = h.batch_id;
    }
    *batch(cl, h.batch_id) = (binfo){B_INFLIGHT, first};
    return 0;
}

static bool deliver_one(cluster *cl, dpr_session *s, int i)
{
    msg m;
    if (!q_pop(&cl->outbox[i], &m))
        return false;
    dpr_response_hdr r;
    EXPECT(cl, dpr_wire_decode_response(m.buf, m.len, &r, NULL) == (ssize_t)m.len);
    *bstate(cl, r.batch_id) = B_DELIVERED;
    int rc = dpr_session_resolve(s, &r);
    if (r.status == DPR_WIRE_REFUSED) {
        EXPECT(cl, rc == -ESTALE);
        cl->stale = true;
        cl->n_refused++;
    } else {
        EXPECT(cl, rc == 0);
        uint64_t first = batch(cl, r.batch_id)->first_seq;
        for (uint32_t k = 0; k < r.op_count; k++) {
            mop *o = op(cl, first + k);
            o->version = dpr_wire_response_version(&r, k);
            EXPECT(cl, o->version == o->exec_version && o->exec_wl == s->world_line);
        }
    }
    free(m.buf);
    return true;
}

/* Commit point under the finder's cut; checks it against the model. */
static void session_commit(cluster *cl, dpr_session *s)
{
    dpr_depset cut = DPR_DEPSET_INIT;
    finder_cut(cl);
    cut_depset(cl, cl->cut, &cut);
    for (int i = 0; i < cl->n; i++)
        if (cl->w[i].world_line == cl->wl)
            dpr_worker_observe_cut(&cl->w[i], cl->cut[i]);
    uint64_t cp = dpr_session_commit_point(s, &cut);
    uint64_t expect = 0;
    bool prefix = true, relaxed = s->flags & DPR_SESSION_RELAXED;
    for (uint64_t q = 1; q < s->next_seq; q++) {
        mop *o = op(cl, q);
        bool committed = !o->lost &&
                         (o->told || (o->version && o->version <= cl->cut[o->widx]));
        if (prefix && (o->lost || committed))
            expect = q;
        else
            prefix = false;
        /* strict: nothing above the commit point is committed (the DPR prefix) */
        EXPECT(cl, relaxed || prefix || !committed);
        if (relaxed)
            EXPECT(cl, dpr_session_is_committed(s, q) == committed);
        if (committed && !o->told)
            cl->n_committed++;
        o->told = o->told || committed;
    }
    EXPECT(cl, cp == expect);
    EXPECT(cl, cp == s->commit_point);
    dpr_depset_free(&cut);
}

/* Drops every message queued for or from worker i (a crash). */
static void drop_messages(cluster *cl, int i)
{
    msg m;
    while (q_pop(&cl->inbox[i], &m)) {
        *bstate(cl, m.batch_id) = B_DROPPED;
        free(m.buf);
    }
    while (q_pop(&cl->outbox[i], &m)) {
        *bstate(cl, m.batch_id) = B_DROPPED;
        free(m.buf);
    }
}

/* The session's connection to worker i breaks: the worker runs a prefix of
 * the requests it had received, the rest and every answer are lost, and the
 * session abandons those batches (their operations are in doubt). */
static void connection_lost(cluster *cl, dpr_session *s, int i)
{
    size_t run = (size_t)rnd_below(cl->inbox[i].n + 1);
    for (size_t k = 0; k < run; k++)
        worker_process_one(cl, i);
    drop_messages(cl, i);
    for (size_t k = s->nbatches; k-- > 0;)
        if (*bstate(cl, s->batches[k].batch_id) == B_DROPPED) {
            EXPECT(cl, dpr_session_abandon_batch(s, s->batches[k].batch_id) == 0);
            cl->n_abandoned++;
        }
}

/* Worker i crashes and restarts from its cut version; the finder bumps the
 * world-line; the others roll back now or lag behind. */
static void crash(cluster *cl, int i)
{
    if (cl->wl + 1 >= MAX_WL)
        return;
    finder_cut(cl);
    memcpy(&cl->rb_cut[cl->wl * MAXW], cl->cut, sizeof(cl->cut));
    cl->wl++;
    cl->n_rollbacks++;
    for (int j = 0; j < cl->n; j++) { /* forget uncommitted reports */
        while (cl->nreps[j] && cl->reps[j][cl->nreps[j] - 1].version > cl->cut[j])
            dpr_depset_free(&cl->reps[j][--cl->nreps[j]].deps);
    }
    drop_messages(cl, i);
    dpr_worker_free(&cl->w[i]);
    EXPECT(cl, dpr_worker_init(&cl->w[i], cl->ids[i], DOM, cl->wl, cl->cut[i]) == 0);
    for (int j = 0; j < cl->n; j++)
        if (j != i && cl->w[j].world_line != cl->wl && rnd_below(2))
            worker_catch_up(cl, j);
}

/* The session learnt of a newer world-line: settle every batch, roll back
 * with the cut restored when its world-line was left, check the result. */
static void session_recover(cluster *cl, dpr_session *s)
{
    for (size_t k = s->nbatches; k-- > 0;)
        if (*bstate(cl, s->batches[k].batch_id) == B_DROPPED)
            EXPECT(cl, dpr_session_abandon_batch(s, s->batches[k].batch_id) == 0);
    for (bool more = true; more;) {
        more = false;
        for (int i = 0; i < cl->n; i++) {
            while (worker_process_one(cl, i))
                more = true;
            while (deliver_one(cl, s, i))
                more = true;
        }
    }
    EXPECT(cl, s->nbatches == 0);
    const uint64_t *rb = &cl->rb_cut[s->world_line * MAXW];
    dpr_depset cut = DPR_DEPSET_INIT;
    cut_depset(cl, rb, &cut);
    uint64_t old_wl = s->world_line;
    bool relaxed = s->flags & DPR_SESSION_RELAXED;
    dpr_rollback_result res;
    EXPECT(cl, dpr_session_rollback(s, cl->wl, &cut, &res) == 0);
    uint64_t lost_from = s->next_seq, lost_count = 0;
    size_t nabove = 0;
    bool truth_prefix = true;
    for (uint64_t q = cl->wl_first_seq; q < s->next_seq; q++) {
        mop *o = op(cl, q);
        bool surv = o->version && o->version <= rb[o->widx];
        bool truth = o->exec_wl == old_wl && o->exec_version <= rb[o->widx];
        EXPECT(cl, !surv || truth);        /* reported survivors really survived */
        EXPECT(cl, surv == truth || *bstate(cl, o->batch_id) == B_DROPPED); /* else in doubt */
        EXPECT(cl, !o->told || (surv && truth)); /* nothing committed is lost */
        if (!relaxed) /* the DPR guarantee, on what really happened */
            EXPECT(cl, truth_prefix || !truth);
        truth_prefix = truth_prefix && truth;
        if (!surv) {
            if (lost_count++ == 0)
                lost_from = q;
            o->lost = true;
            cl->n_lost++;
        } else {
            if (q > lost_from) {
                EXPECT(cl, nabove < res.nsurvived_above && res.survived_above[nabove] == q);
                nabove++;
            }
            o->told = true;
        }
    }
    EXPECT(cl, res.lost_from == lost_from);
    EXPECT(cl, res.lost_count == lost_count);
    EXPECT(cl, res.nsurvived_above == nabove);
    EXPECT(cl, relaxed || nabove == 0);
    EXPECT(cl, s->world_line == cl->wl && s->commit_point == s->next_seq - 1);
    for (uint64_t q = 1; q < s->next_seq; q++)
        EXPECT(cl, dpr_session_is_committed(s, q) == !op(cl, q)->lost);
    free(res.survived_above);
    dpr_depset_free(&cut);
    cl->stale = false;
    cl->wl_first_seq = s->next_seq;
}

static void sync_step(cluster *cl, dpr_session *s)
{
    for (int i = 0; i < cl->n; i++) /* lagging workers poll the finder */
        if (cl->w[i].world_line != cl->wl && rnd_below(2))
            worker_catch_up(cl, i);
    if (cl->stale || s->world_line != cl->wl)
        session_recover(cl, s);
    else
        session_commit(cl, s);
}

/* One random run; returns the failing line or 0. */
static int random_run(uint64_t seed, unsigned flags, int steps, cluster *stats)
{
    cluster cl;
    dpr_session s;
    cl_init(&cl, 3, seed);
    EXPECT(&cl, dpr_session_init(&s, SID, DOM, 1, flags) == 0);
    for (int step = 0; step < steps && !cl.fail_line; step++) {
        int i = (int)rnd_below(3);
        uint64_t r = rnd_below(1000);
        if (r < 300)
            (void)issue(&cl, &s, i, (uint32_t)(1 + rnd_below(3)));
        else if (r < 550)
            worker_process_one(&cl, i);
        else if (r < 800)
            deliver_one(&cl, &s, i);
        else if (r < 870)
            seal(&cl, i, rnd_below(3) ? 0 : cl.w[i].version + rnd_below(10));
        else if (r < 950)
            complete_one(&cl, i);
        else if (r < 995)
            sync_step(&cl, &s);
        else if (r < 997)
            connection_lost(&cl, &s, i);
        else
            crash(&cl, i);
    }
    sync_step(&cl, &s);
    if (stats) {
        stats->n_rollbacks += cl.n_rollbacks;
        stats->n_abandoned += cl.n_abandoned;
        stats->n_catch_up += cl.n_catch_up;
        stats->n_refused += cl.n_refused;
        stats->n_lost += cl.n_lost;
        stats->n_eagain += cl.n_eagain;
        stats->n_committed += cl.n_committed;
    }
    int line = cl.fail_line;
    if (line)
        fprintf(stderr, "  seed %llu flags %u failed\n", (unsigned long long)seed, flags);
    dpr_session_free(&s);
    cl_free(&cl);
    return line;
}

/* ---- libDPR's client tracking tests, on the cluster ----------------------- */

/* Sends a batch and runs it to completion (request, execution, answer). */
static int roundtrip(cluster *cl, dpr_session *s, int i, uint32_t op_count)
{
    int rc = issue(cl, s, i, op_count);
    if (rc == 0) {
        worker_process_one(cl, i);
        deliver_one(cl, s, i);
    }
    return rc;
}

static uint64_t commit_point(cluster *cl, dpr_session *s)
{
    session_commit(cl, s);
    return s->commit_point;
}

TEST(single_client_single_worker)
{
    cluster cl;
    dpr_session s;
    cl_init(&cl, 1, 1);
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    for (int k = 0; k < 10; k++)
        CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0);
    CHECK_EQ_U64(commit_point(&cl, &s), 0);
    checkpoint(&cl, 0);
    CHECK_EQ_U64(commit_point(&cl, &s), 10);
    for (uint64_t q = 1; q <= 10; q++)
        CHECK(dpr_session_is_committed(&s, q));
    CHECK_EQ_U64(s.ops_len, 0);
    CHECK_EQ_INT(cl.fail_line, 0);
    dpr_session_free(&s);
    cl_free(&cl);
}

TEST(single_client_multi_worker)
{
    cluster cl;
    dpr_session s;
    cl_init(&cl, 3, 2);
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0);
    CHECK_EQ_INT(roundtrip(&cl, &s, 1, 1), 0);
    CHECK_EQ_INT(roundtrip(&cl, &s, 2, 1), 0);
    CHECK_EQ_U64(commit_point(&cl, &s), 0);
    checkpoint(&cl, 0);
    checkpoint(&cl, 2); /* W2's version depends on W1's: not in the cut yet */
    CHECK_EQ_U64(commit_point(&cl, &s), 1);
    CHECK_EQ_U64(cl.cut[2], 0);
    checkpoint(&cl, 1);
    CHECK_EQ_U64(commit_point(&cl, &s), 3);
    CHECK(dpr_session_is_committed(&s, 3));
    CHECK_EQ_INT(cl.fail_line, 0);
    dpr_session_free(&s);
    cl_free(&cl);
}

/* A later operation on another worker commits before an earlier one: the
 * commit point stays, is_committed shows the exception. */
TEST(relaxed_commit_exceptions)
{
    cluster cl;
    dpr_session s;
    cl_init(&cl, 3, 3);
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, DPR_SESSION_RELAXED), 0);
    CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0); /* 1: W0 v1 */
    checkpoint(&cl, 0);                        /* W0 seals 1, opens 2 */
    CHECK_EQ_INT(issue(&cl, &s, 0, 1), 0);     /* 2: W0 v2 */
    CHECK_EQ_INT(issue(&cl, &s, 1, 1), 0);     /* 3: W1, depends on W0:1 only */
    CHECK_EQ_INT(issue(&cl, &s, 2, 1), 0);     /* 4: W2, depends on W0:1 only */
    for (int i = 0; i < 3; i++) {
        worker_process_one(&cl, i);
        deliver_one(&cl, &s, i);
    }
    CHECK_EQ_U64(cl.ops[2].version, 2);
    checkpoint(&cl, 1);
    checkpoint(&cl, 2);
    CHECK_EQ_U64(commit_point(&cl, &s), 1);
    CHECK(dpr_session_is_committed(&s, 1));
    CHECK(!dpr_session_is_committed(&s, 2));
    CHECK(dpr_session_is_committed(&s, 3));
    CHECK(dpr_session_is_committed(&s, 4));
    complete_one(&cl, 0); /* nothing pending on W0 */
    checkpoint(&cl, 0);   /* now W0:2 */
    CHECK_EQ_U64(commit_point(&cl, &s), 4);
    CHECK_EQ_INT(cl.fail_line, 0);
    dpr_session_free(&s);
    cl_free(&cl);
}

/* A crash: the worker restarts from its cut version and reuses version
 * numbers of lost versions; the session must use the rollback cut. */
TEST(rollback_after_crash_reusing_numbers)
{
    cluster cl;
    dpr_session s;
    cl_init(&cl, 2, 4);
    CHECK_EQ_INT(dpr_session_init(&s, SID, DOM, 1, 0), 0);
    CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0); /* 1: W0 v1 */
    CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0); /* 2: W0 v1 */
    checkpoint(&cl, 0);
    CHECK_EQ_INT(roundtrip(&cl, &s, 1, 1), 0); /* 3: W1 v1 */
    CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0); /* 4: W0 v2 */
    CHECK_EQ_U64(commit_point(&cl, &s), 2);
    crash(&cl, 1); /* W1 never checkpointed: op 3 and everything after is lost */
    CHECK_EQ_U64(cl.wl, 2);
    if (cl.w[0].world_line != 2)
        worker_catch_up(&cl, 0);
    /* the new world-line runs on and W1 reports version 1 again */
    dpr_session other;
    CHECK_EQ_INT(dpr_session_init(&other, (dpr_session_id){1, 1}, DOM, 2, 0), 0);
    dpr_request_hdr h;
    uint64_t first;
    CHECK_EQ_INT(dpr_session_begin_batch(&other, cl.ids[1], 1, &h, &first), 0);
    uint64_t v;
    CHECK_EQ_INT(dpr_worker_execute(&cl.w[1], &h, &v), 0);
    CHECK_EQ_U64(v, 1);
    checkpoint(&cl, 1);
    checkpoint(&cl, 0);
    finder_cut(&cl);
    CHECK_EQ_U64(cl.cut[1], 1); /* a later cut would count op 3 as a survivor */
    /* the session finds out through a refusal */
    CHECK_EQ_INT(roundtrip(&cl, &s, 0, 1), 0);
    CHECK(cl.stale);
    session_recover(&cl, &s);
    CHECK(!dpr_session_is_committed(&s, 3));
    CHECK(!dpr_session_is_committed(&s, 4));
    CHECK(dpr_session_is_committed(&s, 2));
    CHECK_EQ_U64(s.world_line, 2);
    CHECK_EQ_INT(roundtrip(&cl, &s, 1, 1), 0); /* continues on world-line 2 */
    CHECK_EQ_U64(s.ops[s.ops_head].version, 2);
    CHECK_EQ_INT(cl.fail_line, 0);
    dpr_session_free(&other);
    dpr_session_free(&s);
    cl_free(&cl);
}

TEST(random_strict)
{
    cluster stats;
    memset(&stats, 0, sizeof(stats));
    int failed = 0;
    for (uint64_t seed = 1; seed <= 100; seed++)
        if (random_run(seed * 0x9e3779b97f4a7c15ULL, 0, 10000, &stats))
            failed++;
    CHECK_EQ_INT(failed, 0);
    /* the runs did exercise what they claim to */
    CHECK(stats.n_rollbacks > 20 && stats.n_lost > 20 && stats.n_refused > 5);
    CHECK(stats.n_catch_up > 5 && stats.n_eagain > 20 && stats.n_committed > 1000);
    CHECK(stats.n_abandoned > 100);
    printf("     strict: %llu rollbacks, %llu ops lost, %llu refusals, %llu committed, %llu catch-ups, %llu EAGAIN\n",
           (unsigned long long)stats.n_rollbacks, (unsigned long long)stats.n_lost,
           (unsigned long long)stats.n_refused, (unsigned long long)stats.n_committed,
           (unsigned long long)stats.n_catch_up, (unsigned long long)stats.n_eagain);
}

TEST(random_relaxed)
{
    cluster stats;
    memset(&stats, 0, sizeof(stats));
    int failed = 0;
    for (uint64_t seed = 1; seed <= 100; seed++)
        if (random_run(seed * 0xbf58476d1ce4e5b9ULL, DPR_SESSION_RELAXED, 10000, &stats))
            failed++;
    CHECK_EQ_INT(failed, 0);
    CHECK(stats.n_rollbacks > 20 && stats.n_lost > 20 && stats.n_committed > 1000);
    CHECK(stats.n_catch_up > 5 && stats.n_eagain > 20 && stats.n_refused > 5);
    printf("     relaxed: %llu rollbacks, %llu ops lost, %llu refusals, %llu committed, %llu catch-ups, %llu EAGAIN\n",
           (unsigned long long)stats.n_rollbacks, (unsigned long long)stats.n_lost,
           (unsigned long long)stats.n_refused, (unsigned long long)stats.n_committed,
           (unsigned long long)stats.n_catch_up, (unsigned long long)stats.n_eagain);
}

int main(void)
{
    RUN(init_and_headers);
    RUN(resolve_errors);
    RUN(strict_busy_rules);
    RUN(cancel_newest_batch);
    RUN(withdraw_batch);
    RUN(refusal_and_rollback_rules);
    RUN(strict_rollback_prefix);
    RUN(relaxed_rollback_lists_survivors);
    RUN(dependencies_pruned_by_cut);
    RUN(ring_wraps);
    RUN(many_workers);
    RUN(single_client_single_worker);
    RUN(single_client_multi_worker);
    RUN(relaxed_commit_exceptions);
    RUN(rollback_after_crash_reusing_numbers);
    RUN(random_strict);
    RUN(random_relaxed);
    return check_summary("session");
}
