/* test_agent_replstore.c - the copies of other nodes' checkpoints
 * (replstore.h): receiving in pieces, resuming, checking size and CRC,
 * listing, pruning by the cut, dropping. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/bytes.h"
#include "replproto.h"
#include "replstore.h"

static char root[64];

static void make_root(void)
{
    snprintf(root, sizeof(root), "/tmp/dpr-test-replstore-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void remove_root(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
}

TEST(prunable)
{
    uint64_t v[] = { 3, 5, 8, 12 };

    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 0), 0);  /* nothing at or below */
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 2), 0);
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 3), 0);  /* 3 is what a restore needs */
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 7), 1);  /* 5 stays, 3 goes */
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 8), 2);
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 100), 3);
    CHECK_EQ_U64(agent_replstore_prunable(v, 0, 100), 0);
}

/* dpr-kv's change logs: a copy's chain back to its full image stays. */
TEST(prunable_chain)
{
    /* 2 full, 4 log on 2, 5 full, 7 log on 5, 9 log on 7 */
    uint64_t v[] = {2, 4, 5, 7, 9};
    bool starts[] = {true, false, true, false, false};

    CHECK_EQ_U64(agent_replstore_prunable_chain(v, starts, 5, 1), 0);
    CHECK_EQ_U64(agent_replstore_prunable_chain(v, starts, 5, 4), 0); /* 4 needs 2 */
    CHECK_EQ_U64(agent_replstore_prunable_chain(v, starts, 5, 6), 2); /* 5 is full */
    CHECK_EQ_U64(agent_replstore_prunable_chain(v, starts, 5, 8), 2); /* 7 needs 5 */
    CHECK_EQ_U64(agent_replstore_prunable_chain(v, starts, 5, 100), 2);
    CHECK_EQ_U64(agent_replstore_prunable_chain(v, NULL, 5, 8), 3);   /* no chains */
}

/* A checkpoint header as dpr-kv writes it (kv_ckpt.h): a change log on
 * base, or a full image (base 0, format 2). Only the header matters here. */
static void header(unsigned char h[80], uint64_t version, bool delta, uint64_t base)
{
    memset(h, 0, 80);
    memcpy(h, "DPRKVCKP", 8);
    h[8] = delta ? 3 : 2;
    h[12] = delta ? 1 : 0;
    for (int i = 0; i < 8; i++) {
        h[32 + i] = (unsigned char)(version >> (8 * i));
        h[64 + i] = (unsigned char)(base >> (8 * i));
    }
}

/* A copy of version v (only its header) received whole: finished unless
 * part (then a part file of len bytes). 0 or the first error. */
static int copy_in(uint64_t worker, uint64_t v, bool delta, uint64_t base, bool part,
                   size_t len)
{
    unsigned char h[80];
    uint64_t size;
    int rc;

    header(h, v, delta, base);
    rc = agent_replstore_put(root, "kv", worker, v, 0, h, len, &size);
    if (rc == 0 && !part)
        rc = agent_replstore_finish(root, "kv", worker, v, len, dpr_crc32(h, len));
    return rc;
}

TEST(prune_keeps_chains)
{
    static const struct { uint64_t v; bool delta; uint64_t base; } copies[] = {
        {2, false, 0}, {4, true, 2}, {5, true, 4}, {7, true, 5}, {9, false, 0}, {11, true, 9},
    };
    uint64_t *v;
    size_t n;

    make_root();
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++)
        CHECK_EQ_INT(copy_in(3, copies[i].v, copies[i].delta, copies[i].base, false, 80), 0);
    /* cut 8: 7 may be asked for, and needs 5, 4 and 2 */
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 3, 8), 0);
    /* cut 10: 9 is a full image, everything before it goes */
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 3, 10), 4);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 3, &v, &n), 0);
    CHECK(n == 2 && v[0] == 9 && v[1] == 11);
    free(v);
    /* cut 11: 11 needs 9 */
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 3, 11), 0);
    remove_root();
}

/* A rollback: the worker restored version 4 (the cut) and went on at 9, a
 * change log on 4; the copies of 5 and 7 (and a part of 8), of the line it
 * left, go when 9 is finished (a seed is restored from these copies and
 * must be one chain). A full image drops nothing. */
TEST(rollback_drops_abandoned)
{
    uint64_t size, *v;
    size_t n;
    bool complete;

    make_root();
    CHECK_EQ_INT(copy_in(3, 2, false, 0, false, 80), 0);
    CHECK_EQ_INT(copy_in(3, 4, true, 2, false, 80), 0);
    CHECK_EQ_INT(copy_in(3, 5, true, 4, false, 80), 0);
    CHECK_EQ_INT(copy_in(3, 7, true, 5, false, 80), 0);
    CHECK_EQ_INT(copy_in(3, 8, true, 7, true, 40), 0);   /* a part */
    CHECK_EQ_INT(copy_in(3, 11, false, 0, true, 80), 0); /* a part above */
    CHECK_EQ_INT(copy_in(3, 9, true, 4, false, 80), 0);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 3, &v, &n), 0);
    CHECK(n == 3 && v[0] == 2 && v[1] == 4 && v[2] == 9);
    free(v);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 3, 8, NULL, &size, &complete), 0);
    CHECK_EQ_U64(size, 0); /* the part of 8 went too */
    /* a full image (10) is not on anything: 9 stays; the part of 11 too */
    CHECK_EQ_INT(copy_in(3, 10, false, 0, false, 80), 0);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 3, &v, &n), 0);
    CHECK(n == 4 && v[3] == 10);
    free(v);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 3, 11, NULL, &size, &complete), 0);
    CHECK_EQ_U64(size, 80);
    remove_root();
}

TEST(receive_resume_finish)
{
    const char data[] = "0123456789abcdefghij";
    uint32_t crc = dpr_crc32(data, 20);
    uint64_t size;
    bool complete;
    uint64_t *v;
    size_t n;

    make_root();
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, NULL, &size, &complete), 0);
    CHECK(size == 0 && !complete);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 0, data, 8, &size), 0);
    CHECK_EQ_U64(size, 8);
    /* a resend at the wrong place is refused with what there is */
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 4, data + 4, 4, &size), -ESPIPE);
    CHECK_EQ_U64(size, 8);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, NULL, &size, &complete), 0);
    CHECK(size == 8 && !complete);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 8, data + 8, 12, &size), 0);
    /* not finished before it is whole, nor with another CRC */
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 3, 21, crc), -EBADMSG);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, NULL, &size, &complete), 0);
    CHECK(size == 0 && !complete); /* (the bad part was removed) */
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 0, data, 20, &size), 0);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 3, 20, crc), 0);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, NULL, &size, &complete), 0);
    CHECK(size == 20 && complete);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 3, 20, crc), 0); /* (said twice) */
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 4, 20, crc), -ENOENT);
    /* more versions; listing; pruning keeps the newest at or below the cut */
    for (uint64_t ver = 5; ver <= 9; ver += 2) {
        CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, ver, 0, data, 20, &size), 0);
        CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, ver, 20, crc), 0);
    }
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 6, 0, data, 5, &size), 0); /* a part */
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 7, &v, &n), 0);
    CHECK(n == 4 && v[0] == 3 && v[3] == 9);
    free(v);
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 7, 8), 3); /* 3, 5 and part 6 */
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 7, &v, &n), 0);
    CHECK(n == 2 && v[0] == 7 && v[1] == 9);
    free(v);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 8, &v, &n), -ENOENT);
    CHECK_EQ_INT(agent_replstore_drop(root, "kv", 7), 0);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 7, &v, &n), -ENOENT);
    CHECK_EQ_INT(agent_replstore_drop(root, "kv", 7), 0); /* (missing is fine) */
    remove_root();
}

/* A compaction turns a copied change log into a full image of the same
 * version: HAVE with the sender's size and CRC-32 says the copy differs,
 * the image is received beside it and replaces it; then the chain rule
 * prunes everything before it. Protocol 1's HAVE still says "finished". */
TEST(replace_compacted)
{
    unsigned char logh[80], full[200];
    agent_replstore_sum want;
    uint64_t size, *v;
    size_t n;
    bool complete;

    make_root();
    /* 2 full, 4 log on 2, 6 log on 4 */
    header(logh, 2, false, 0);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 5, 2, 0, logh, sizeof(logh), &size), 0);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 5, 2, 80, dpr_crc32(logh, 80)), 0);
    header(logh, 4, true, 2);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 5, 4, 0, logh, sizeof(logh), &size), 0);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 5, 4, 80, dpr_crc32(logh, 80)), 0);
    header(logh, 6, true, 4);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 5, 6, 0, logh, sizeof(logh), &size), 0);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 5, 6, 80, dpr_crc32(logh, 80)), 0);
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 5, 6), 0); /* 6 needs 4 and 2 */

    /* the same file: finished; protocol 1: finished whatever it holds */
    want.size = 80;
    want.crc = dpr_crc32(logh, 80);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 6, &want, &size, &complete), 0);
    CHECK(complete && size == 80);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 4, NULL, &size, &complete), 0);
    CHECK(complete);
    /* same size, other bytes: not finished */
    want.crc ^= 1;
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 6, &want, &size, &complete), 0);
    CHECK(!complete && size == 0);

    /* version 4 compacted: a full image of another size */
    header(full, 4, false, 0);
    memset(full + 80, 'x', sizeof(full) - 80);
    want.size = sizeof(full);
    want.crc = dpr_crc32(full, sizeof(full));
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 4, &want, &size, &complete), 0);
    CHECK(!complete && size == 0);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 5, 4, 0, full, 100, &size), 0);
    /* the part of a copy that stays is not pruned by the cut meanwhile */
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 5, 6), 0);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 4, &want, &size, &complete), 0);
    CHECK(!complete && size == 100); /* (resumes) */
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 5, 4, 100, full + 100, 100, &size), 0);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 5, 4, want.size, want.crc), 0);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 4, &want, &size, &complete), 0);
    CHECK(complete && size == sizeof(full));
    /* 4 is a chain start now: 2 goes at cut 6, 4 and 6 stay */
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 5, 6), 1);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 5, &v, &n), 0);
    CHECK(n == 2 && v[0] == 4 && v[1] == 6);
    free(v);

    /* a part at or below the cut of a copy that is pruned goes with it */
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 5, 3, 0, full, 10, &size), 0);
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 5, 6), 1);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 5, 3, NULL, &size, &complete), 0);
    CHECK(!complete && size == 0);
    remove_root();
}

/* HAVE of protocol 1 (no sum) and 2 (the sender's size and CRC-32). */
TEST(parse_have)
{
    char *v1[] = {"DPR.REPL.HAVE", "demo", "kv", "3", "17"};
    size_t l1[] = {13, 4, 2, 1, 2};
    char *v2[] = {"DPR.REPL.HAVE", "demo", "kv", "3", "17", "200", "4294967295"};
    size_t l2[] = {13, 4, 2, 1, 2, 3, 10};
    char *bad[] = {"DPR.REPL.HAVE", "demo", "kv", "3", "17", "200", "4294967296"};
    size_t lb[] = {13, 4, 2, 1, 2, 3, 10};
    agent_repl_cmd c;

    CHECK(agent_repl_parse(5, v1, l1, false, "demo", &c) == NULL);
    CHECK(c.op == AGENT_REPL_HAVE && !c.sum && c.worker == 3 && c.version == 17);
    CHECK(agent_repl_parse(7, v2, l2, false, "demo", &c) == NULL);
    CHECK(c.op == AGENT_REPL_HAVE && c.sum && c.size == 200 && c.crc == 4294967295u);
    CHECK(agent_repl_parse(7, bad, lb, false, "demo", &c) != NULL); /* (CRC-32 too big) */
    CHECK(strcmp(agent_repl_parse(6, v2, l2, false, "demo", &c),
                 "wrong number of arguments") == 0);
}

int main(void)
{
    RUN(prunable);
    RUN(prunable_chain);
    RUN(prune_keeps_chains);
    RUN(rollback_drops_abandoned);
    RUN(receive_resume_finish);
    RUN(replace_compacted);
    RUN(parse_have);
    return check_summary("test_agent_replstore");
}
